#!/usr/bin/env bash
# Runs every test of nixarr-units on a Debian/Ubuntu machine: formatting,
# lints, unit and property tests, golden files, `systemd-analyze verify`, CLI
# tests, NixOS module evaluation, and the end-to-end tests on real systemd,
# podman and dockerd. Run it as root (as another user it needs sudo for the
# packages, and the end-to-end tests skip). .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(systemd systemd-container podman runc netavark aardvark-dns iptables
  docker.io dbus busybox-static nix-bin sqlite3 uidmap btrfs-progs e2fsprogs
  util-linux procps git python3 iproute2 curl debootstrap
  skopeo docker-registry apache2-utils tmux man-db groff-base
  nginx-light caddy prometheus wrk polkitd chromium chromium-driver python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "tests/run.sh: run it as root (apt-get must install: ${missing[*]})" >&2; exit 1; }
    SUDO="sudo"
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Selenium and schemathesis for the api_browser end-to-end suite (pinned in
# tests/e2e/requirements.txt), in a venv outside the clone that later runs
# reuse (pip installs nothing when the pins are there). Debian's python3:
# python3-venv is its.
if [ "$(id -u)" -eq 0 ]; then
  e2e_venv=/var/cache/nixarr-units/e2e-venv
  [ -x "$e2e_venv/bin/python3" ] || /usr/bin/python3 -m venv "$e2e_venv"
  "$e2e_venv/bin/pip" install -q --disable-pip-version-check -r tests/e2e/requirements.txt
fi

# The module evaluation tests need nixpkgs' lib/ (never part of this repo).
if [ -z "${NIXPKGS_LIB:-}" ]; then
  for candidate in /work/.mirror/nix-community+nixpkgs.lib/repo /work/.mirror/nix-community+nixpkgs.lib \
    /var/cache/nixarr-units/nixpkgs.lib; do
    if [ -d "$candidate/lib" ]; then export NIXPKGS_LIB="$candidate/lib"; break; fi
    if [ -f "$candidate/HEAD" ]; then
      dest="${TMPDIR:-/tmp}/nixarr-units-nixpkgs-lib"
      if [ ! -d "$dest/lib" ]; then
        mkdir -p "$dest" && git --git-dir="$candidate" archive HEAD lib | tar -x -C "$dest"
      fi
      export NIXPKGS_LIB="$dest/lib"; break
    fi
  done
fi

# The toolchain's lint and format components (rustup's minimal profile
# lacks them).
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
# The podman 5 machine's root (Debian trixie: podman 5.4, systemd 257, what
# NixOS ships), built once and cached outside the clone (tests/trixie-root.sh).
if [ "$(id -u)" -eq 0 ]; then
  echo "== trixie root for the podman 5 machine"
  bash tests/trixie-root.sh >/dev/null
fi

# Every test binary, the end-to-end one (tests/e2e/main.rs: every suite on
# podman 4, podman 5 and Docker, see the README) among them. Its machines
# boot one at a time whatever --test-threads says (the host lock
# /run/nixarr-e2e.lock), so other runs on this host wait for each other.
# One suite or machine: `cargo test --test e2e stop::` (README).
echo "== cargo test"
cargo test --all-targets --locked --no-fail-fast -- --test-threads=2
# The module evaluation once more as the flake's module-eval check runs it
# (nix/module-eval.nix): on a private, empty store, so builtins.storeDir is
# not /nix/store. A scenario that assumes /nix/store fails here, not only
# in `nix flake check`.
if [ -n "${NIXPKGS_LIB:-}" ] && command -v nix-store >/dev/null; then
  echo "== cargo test --test nix_eval (private store, as nix flake check)"
  private_store=$(mktemp -d)
  (
    # shellcheck source=tests/nix/private-store.sh
    . tests/nix/private-store.sh "$private_store"
    cargo test --test nix_eval --locked -- --test-threads=2
  )
  rm -rf "$private_store"
fi
