#!/usr/bin/env bash
# Update check benchmark (issue 16): `nixarr-units update --all --check` for
# N services (default 50) against a local registry (Debian's docker-registry
# on 127.0.0.1, plain HTTP), beside a sequential `skopeo inspect` loop over
# the same image references. See benches/README.md.
#
# Usage: benches/update-bench.sh [--runs N] [--services N] [--keep]
#   --runs N       timed runs of each (default 5; medians reported)
#   --services N   services, each with an image of its own (default 50)
#   --keep         keep the scratch directory (registry, spec, manifest)
# Needs root, skopeo (the peer, and the pushes), docker-registry and podman
# (which builds the image and answers update's `podman ps`, in storage of
# the scratch directory's own). The registry is made insecure (plain HTTP)
# for both sides by a registries.conf bind-mounted over the host's in a
# mount namespace of the benchmark's own. Exit status: 0 when the target
# (ours <= 0.2x the loop's wall time) is met, 3 when missed, other on error.
set -euo pipefail
self=$(realpath "$0")
source "$(dirname "$self")/lib.sh"

runs=5 services=50 keep=0
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --services) services=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) bench_help "$0"; exit 0 ;;
        *) echo "update-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for tool in skopeo docker-registry podman busybox; do
    command -v "$tool" >/dev/null || {
        echo "update-bench: $tool is missing (apt-get install skopeo docker-registry podman busybox-static)" >&2
        exit 2
    }
done

bench_need_root update-bench "a mount namespace for registries.conf"
if [[ -z ${NIXARR_UPDATE_BENCH_BIN:-} ]]; then
    bench_build_release
    export NIXARR_UPDATE_BENCH_BIN=$bin
    exec unshare --mount --propagation private -- "$self" --runs "$runs" --services "$services" \
        $( ((keep)) && echo --keep)
fi
bin=$NIXARR_UPDATE_BENCH_BIN
scratch=$(mktemp -d /tmp/nixarr-update-bench.XXXXXX)
# podman (the import, update's `podman ps`) and skopeo use storage of the
# scratch directory's own, not the host's (whatever other runs left there
# cannot fail or slow the benchmark).
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' \
    "$scratch/storage" "$scratch/run" >"$scratch/storage.conf"
export CONTAINERS_STORAGE_CONF=$scratch/storage.conf
registry_pid=""
cleanup() {
    if [[ -n $registry_pid ]]; then
        kill "$registry_pid" 2>/dev/null || true
        wait "$registry_pid" 2>/dev/null || true
    fi
    podman rmi -a -f >/dev/null 2>&1 || true
    if ((keep)); then echo "== kept $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$scratch/data" "$scratch/rootfs/bin"
cat >"$scratch/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $scratch/data
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$scratch/config.yml" >"$scratch/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done
# Plain HTTP to this registry only, for skopeo on both sides, in this mount
# namespace only (the host's registries.conf is not changed).
printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$port" >"$scratch/registries.conf"
mount --bind "$scratch/registries.conf" /etc/containers/registries.conf

echo "== pushing one small image as $services repositories" >&2
cp "$(command -v busybox)" "$scratch/rootfs/bin/busybox"
tar -C "$scratch/rootfs" -cf "$scratch/image.tar" .
podman import "$scratch/image.tar" localhost/bench:1 >/dev/null
source="containers-storage:localhost/bench:1"
refs=()
for i in $(seq "$services"); do
    ref="127.0.0.1:$port/bench/svc$i:latest"
    skopeo copy --quiet "$source" "docker://$ref"
    refs+=("$ref")
done

python3 - "$scratch/spec.json" "${refs[@]}" <<'PY'
import json, sys
out, refs = sys.argv[1], sys.argv[2:]
spec = {"version": 1, "prefix": "bench",
        "engine": {"path": "/usr/bin/podman", "version": "4.3.1"},
        "services": {f"svc{i}": {"image": r} for i, r in enumerate(refs, 1)}}
json.dump(spec, open(out, "w"))
PY
"$bin" render --spec "$scratch/spec.json" --out "$scratch/out" >/dev/null
manifest=$scratch/out/share/nixarr-units/manifest.json

echo "== $("$bin" --version), $(skopeo --version), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
status=0
python3 - "$runs" "$bin" "$manifest" "${refs[@]}" <<'PY' || status=$?
import statistics, subprocess, sys, time

runs, bin_, manifest, refs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]

def ours():
    p = subprocess.run([bin_, "--manifest", manifest, "update", "--all", "--check", "--json"],
                       capture_output=True)
    # 100: updates available (the containers do not run, so every image is
    # "new"); anything else is a failure of the benchmark.
    if p.returncode != 100:
        sys.exit(f"update --check exited {p.returncode}: {p.stderr.decode()}")

def loop():
    for r in refs:
        subprocess.run(["skopeo", "inspect", f"docker://{r}"], check=True, capture_output=True)

def timed(f):
    t = time.monotonic()
    f()
    return time.monotonic() - t

ours(); loop()  # warm-up, checked
a, b = [], []
for _ in range(runs):
    a.append(timed(ours))
    b.append(timed(loop))
ma, mb = statistics.median(a), statistics.median(b)
print(f"{len(refs)} services, median of {runs} runs (min-max in brackets)")
print(f"  update --all --check   {ma*1000:8.0f} ms [{min(a)*1000:.0f}-{max(a)*1000:.0f}]")
print(f"  skopeo inspect loop    {mb*1000:8.0f} ms [{min(b)*1000:.0f}-{max(b)*1000:.0f}]")
ratio = ma / mb
print(f"  ratio ours/loop: {ratio:.2f}x (target <= 0.2x): {'PASS' if ratio <= 0.2 else 'MISS'}")
sys.exit(0 if ratio <= 0.2 else 3)
PY
# Not exec: the EXIT trap stops the registry and removes the scratch directory.
exit "$status"
