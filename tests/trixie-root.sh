#!/usr/bin/env bash
# Builds (once) the Debian trixie root file system that the podman 5
# end-to-end machine boots: podman 5.4, systemd 257, what the suites run
# inside. NixOS ships podman 5; Debian 12, the host, has podman 4.3.
#
# The root is cached outside the clone and rebuilt only when it is missing or
# when RECIPE below changes (its stamp is a file inside the root). It is built
# into a temporary directory and renamed into place, so a build that is killed
# never leaves a half root behind; concurrent runs wait for each other. The
# machines boot it through an overlay (tests/e2e/harness/machine.rs), so the
# cache is never written to by a test.
#
#     bash tests/trixie-root.sh [ROOT]     # default: $NIXARR_TRIXIE_ROOT or
#                                          # /var/cache/nixarr-units/trixie-root
# Prints the root's path on its last line.
set -euo pipefail

ROOT="${1:-${NIXARR_TRIXIE_ROOT:-/var/cache/nixarr-units/trixie-root}}"
# Change RECIPE (bump the number) whenever the package list or the steps
# below change: every cache built by an older recipe is then rebuilt.
PACKAGES=podman,systemd,systemd-sysv,dbus,netavark,aardvark-dns,iptables,nftables,runc,busybox-static,curl,util-linux,mount,iproute2,procps,nix-bin,libdbi-perl
RECIPE="1 trixie minbase $PACKAGES"
STAMP=.nixarr-units-recipe

if [ -f "$ROOT/$STAMP" ] && [ "$(cat "$ROOT/$STAMP")" = "$RECIPE" ]; then
  echo "$ROOT"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/trixie-root.sh: run it as root (debootstrap must build $ROOT)" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "tests/trixie-root.sh: debootstrap is missing (apt-get install debootstrap)" >&2
  exit 1
}

parent="$(dirname "$ROOT")"
mkdir -p "$parent"
exec 9>"$ROOT.lock"
flock 9
# Another run may have built it while we waited.
if [ -f "$ROOT/$STAMP" ] && [ "$(cat "$ROOT/$STAMP")" = "$RECIPE" ]; then
  echo "$ROOT"
  exit 0
fi

# Leftovers of killed builds (we hold the lock: nobody else is building).
rm -rf "$ROOT".tmp.* "$ROOT".old.*
tmp="$(mktemp -d "$ROOT.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "== building the trixie root in $tmp (a few minutes; cached in $ROOT)" >&2
# The trixie keys ship with bookworm's debian-archive-keyring.
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if ! debootstrap --variant=minbase --include="$PACKAGES" --keyring="$keyring" \
  trixie "$tmp" >"$tmp.log" 2>&1; then
  tail -40 "$tmp.log" >&2
  [ -f "$tmp/debootstrap/debootstrap.log" ] && tail -40 "$tmp/debootstrap/debootstrap.log" >&2
  rm -f "$tmp.log"
  echo "tests/trixie-root.sh: debootstrap failed (see above)" >&2
  exit 1
fi
rm -f "$tmp.log"
# Engine configuration for these machines (see REAL-SYSTEMD.md): runc and
# ulimits at or below the VM's hard limits, no pids controller. The harness
# binds its own copy over /etc/containers; this one is for booting by hand.
cat >"$tmp/etc/containers/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1000:1000"]
pids_limit = 0
[engine]
runtime = "runc"
EOF
# Nothing in the tests needs the package cache; a machine-id is made at boot.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
: >"$tmp/etc/machine-id"
echo "$RECIPE" >"$tmp/$STAMP"

if [ -e "$ROOT" ]; then
  mv "$ROOT" "$ROOT.old.$$"
fi
mv "$tmp" "$ROOT"
trap - EXIT
rm -rf "$ROOT.old.$$"
echo "== trixie root built in $(($(date +%s) - start))s: $ROOT" >&2
echo "$ROOT"
