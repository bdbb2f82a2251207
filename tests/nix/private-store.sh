# Sourced, not run: points Nix at a private, empty store under $1, as
# nixpkgs' own lib tests do inside the build sandbox. The flake's
# module-eval check (nix/module-eval.nix) sources it before running
# tests/nix_eval.rs, and tests/run.sh runs that suite a second time under
# it, so CI evaluates the scenarios exactly as `nix flake check` does
# (builtins.storeDir is then $1/store, not /nix/store).
#
#   . tests/nix/private-store.sh "$(mktemp -d)"
TEST_ROOT=${1:?usage: . tests/nix/private-store.sh DIR}
export TEST_ROOT
# Cargo and rustup find their homes through $HOME, which changes below.
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
export HOME=$TEST_ROOT/home
export NIX_CONF_DIR=$TEST_ROOT/etc
export NIX_LOCALSTATE_DIR=$TEST_ROOT/var
export NIX_LOG_DIR=$TEST_ROOT/var/log/nix
export NIX_STATE_DIR=$TEST_ROOT/var/nix
export NIX_STORE_DIR=$TEST_ROOT/store
mkdir -p "$HOME"
nix-store --init
