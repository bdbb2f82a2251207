#!/usr/bin/env bash
# Start-up benchmark (issue 12): cold start of a dependency chain four deep
# whose apps answer 2 s after they start, `systemctl start <prefix>.target`
# until every service is healthy, on podman 4, podman 5 and Docker, beside
# the critical path (4 x 2 s). See benches/README.md.
#
# Usage: benches/startup-bench.sh [--runs N] [--engines podman4,podman5,docker]
#   --runs N       cold starts per engine (default 3; medians reported)
#   --engines L    which machines (default all three)
# Needs root (systemd-nspawn) and, for podman 5, the trixie root (built here
# by tests/trixie-root.sh when missing). Exit status: 0 when every engine
# meets the target (critical path + 1 s per level), 3 when one misses it.
set -euo pipefail
if [[ $(id -u) != 0 ]]; then
    echo "startup-bench: needs root (it boots systemd in systemd-nspawn)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
if [[ " $* " != *" --engines "* || " $* " == *podman5* ]]; then
    bash tests/trixie-root.sh >/dev/null
fi
echo "== $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exec cargo bench --locked --bench startup -- "$@"
