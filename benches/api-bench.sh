#!/usr/bin/env bash
# API benchmark (issue 15): `GET /containers` of `nixarr-units serve` for 50
# services at 100 concurrent clients (wrk), beside `nixarr-units status --json
# --no-probe` run once per request, on a real systemd (PID 1 in
# systemd-nspawn). See benches/README.md.
#
# Usage: benches/api-bench.sh [--services N] [--clients N] [--cli-clients N]
#                             [--duration S] [--runs N] [--keep]
#   --services N     managed units (default 50)
#   --clients N      wrk's concurrent connections (default 100)
#   --cli-clients N  status runs at once on the CLI side (default: the cores)
#   --duration S     seconds of load per run and side (default 10)
#   --runs N         runs per side, alternating (default 3; medians reported)
#   --keep           keep the scratch directory (spec, manifest, serve.log)
# Needs root (systemd-nspawn, nsenter) and wrk. Exit status: 0 when every
# target is met, 3 when one is missed, other on error.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

args=()
while (($#)); do
    case $1 in
        --services | --clients | --cli-clients | --duration | --runs) args+=("$1" "$2"); shift 2 ;;
        --keep) args+=("$1"); shift ;;
        -h | --help) bench_help "$0"; exit 0 ;;
        *) echo "api-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
bench_need_root api-bench "it boots systemd in systemd-nspawn"
if ! command -v wrk >/dev/null; then
    echo "api-bench: needs wrk (Debian's wrk package; tests/run.sh installs it)" >&2
    exit 2
fi

bench_build_release
echo "== $(systemctl --version | head -1), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)" >&2
exec python3 benches/api-bench.py --bin "$bin" "${args[@]}"
