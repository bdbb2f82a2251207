# The module evaluation tests (tests/nix_eval.rs, scenarios in tests/nix/)
# inside the build sandbox, with the real nixpkgs lib and nix-instantiate on
# a private store, so `nix flake check` runs exactly what tests/run.sh runs.
{
  lib,
  pkgs,
  package,
}:

package.overrideAttrs (old: {
  pname = "nixarr-units-module-eval";

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../src
      ../templates
      ../modules
      ../nix
      ../tests
      ../docs/options.md
      ../flake.nix
      (lib.fileset.maybeMissing ../README.md)
      (lib.fileset.maybeMissing ../clippy.toml)
    ];
  };

  nativeCheckInputs = (old.nativeCheckInputs or [ ]) ++ [ pkgs.nix ];

  # nix-instantiate needs a store of its own in the sandbox (as nixpkgs'
  # lib tests do); evaluation only reads files, it builds nothing.
  preCheck = (old.preCheck or "") + ''
    export TEST_ROOT=$(mktemp -d)
    export HOME=$TEST_ROOT/home
    export NIX_CONF_DIR=$TEST_ROOT/etc
    export NIX_LOCALSTATE_DIR=$TEST_ROOT/var
    export NIX_LOG_DIR=$TEST_ROOT/var/log/nix
    export NIX_STATE_DIR=$TEST_ROOT/var/nix
    export NIX_STORE_DIR=$TEST_ROOT/store
    mkdir -p $HOME
    nix-store --init
    export NIXPKGS_LIB=${pkgs.path}/lib
  '';

  cargoTestFlags = [
    "--test"
    "nix_eval"
  ];

  # Nothing to install: the check is the product.
  installPhase = ''
    runHook preInstall
    touch $out
    runHook postInstall
  '';
  doInstallCheck = false;
})
