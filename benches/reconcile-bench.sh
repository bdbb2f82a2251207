#!/usr/bin/env bash
# Reconcile benchmark (issue 17): one `nixarr-units reconcile` pass over 500
# labelled containers (cheap sleeping ones) and their units, on real systemd
# and podman in systemd-nspawn, next to the floor: `podman ps --filter
# label=… --format json` + `systemctl show` of the same units. See
# benches/README.md.
#
# Usage: benches/reconcile-bench.sh [--runs N] [--units N] [--batch N] [--engine podman4|podman5]
#   --runs N       timed runs per command after one warm-up (default 5; medians reported)
#   --units N      services, each a unit and a container (default 500)
#   --batch N      units started per `systemctl start` (default 25)
#   --engine E     podman4 (the host's Debian 12, default) or podman5 (the trixie root)
# Needs root (systemd-nspawn, nsenter). Exit status: 0 when both targets are
# met (ours <= 1.2x the floor and <= 1.5 s), 3 when one is missed, other on error.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

args=()
while (($#)); do
    case $1 in
        --runs | --units | --batch | --engine) args+=("$1" "$2"); shift 2 ;;
        -h | --help) bench_help "$0"; exit 0 ;;
        *) echo "reconcile-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
bench_need_root reconcile-bench "it boots systemd in systemd-nspawn"
bench_build_release --bin nixarr-units
if [[ " ${args[*]} " == *" podman5 "* ]]; then
    bash tests/trixie-root.sh >/dev/null
fi
# The driver (the end-to-end harness) in the dev profile: it only boots the
# machine and times commands, and shares the end-to-end tests' build.
exec cargo test --locked --bench reconcile -- --bench --bin "$bin" "${args[@]}"
