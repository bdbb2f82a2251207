#!/usr/bin/env bash
# Status benchmark (issue 6): `nixarr-units status` for 200 managed units on a
# real systemd (PID 1 in systemd-nspawn), next to `systemctl show` for the
# same units, and `status` with 200 health probes of which some hang.
# See benches/README.md.
#
# Usage: benches/status-bench.sh [--runs N] [--units N] [--hanging N] [--keep]
#   --runs N      timed runs per command (default 10; medians reported)
#   --units N     managed units (default 200)
#   --hanging N   probe endpoints that accept and never answer (default 20)
#   --keep        keep the scratch directory (spec, manifest, units, logs)
# Needs root (systemd-nspawn, nsenter). Exit status: 0 when both targets are
# met, 3 when one is missed, other on error.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

args=()
while (($#)); do
    case $1 in
        --runs | --units | --hanging) args+=("$1" "$2"); shift 2 ;;
        --keep) args+=("$1"); shift ;;
        -h | --help) bench_help "$0"; exit 0 ;;
        *) echo "status-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
bench_need_root status-bench "it boots systemd in systemd-nspawn"
bench_build_release
echo "== $(systemctl --version | head -1)" >&2
exec python3 benches/status-bench.py --bin "$bin" "${args[@]}"
