#!/usr/bin/env bash
# Migration snapshot benchmark (issue 8): nixarr-migrate's snapshot step
# (inventory, faithful copy and NAR hash of the native tree, the functions
# `migrate` calls, through examples/migrate_snapshot.rs) against `cp -a`
# followed by `nix-hash --type sha256 --base32`, on a generated tree of
# mixed files in a scratch directory on the disk (not a tmpfs), the page
# cache dropped before every run. See benches/README.md.
#
# Usage: benches/migrate-bench.sh [--runs N] [--size-mib N] [--dir DIR] [--keep]
#   --runs N      timed runs of each side, alternating (default 3)
#   --size-mib N  size of the tree (default 1024)
#   --dir DIR     scratch directory on the file system to measure (default
#                 a new directory under /var/tmp)
#   --keep        keep the scratch directory (tree and logs)
# Exit status: 0 when ours takes at most 0.7 of the pair's wall time, 3 when
# it takes more, other on error.
set -euo pipefail

runs=3
size_mib=1024
scratch=""
keep=0
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --size-mib) size_mib=$2; shift 2 ;;
        --dir) scratch=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "migrate-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v nix-hash >/dev/null || { echo "migrate-bench: nix-hash is missing (apt-get install nix-bin)" >&2; exit 1; }
cd "$(dirname "$0")/.."
cargo build --release --locked --example migrate_snapshot >&2
ours_bin=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/migrate_snapshot

if [[ -z $scratch ]]; then
    scratch=$(mktemp -d /var/tmp/nixarr-migrate-bench.XXXXXX)
else
    mkdir -p "$scratch"
fi
cleanup() {
    if ((keep)); then echo "kept $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
fstype=$(stat -f -c %T "$scratch")
if [[ $fstype == tmpfs || $fstype == ramfs ]]; then
    echo "migrate-bench: $scratch is on $fstype; give --dir on a disk file system" >&2
    exit 2
fi

# The tree (kept and reused with --dir and --keep): many small files (1-32 KiB, 100 per directory) for about half the
# bytes, a few large ones for the rest, plus what app data has besides:
# empty files, executables, symlinks, a nested directory.
if [[ -e $scratch/src.done && $(cat "$scratch/src.done") == "$size_mib" ]]; then
    echo "reusing the tree in $scratch/src" >&2
else
rm -rf "$scratch/src" "$scratch/src.done"
python3 - "$scratch/src" "$size_mib" <<'EOF'
import os, random, sys
root, size = sys.argv[1], int(sys.argv[2]) << 20
rng = random.Random(8)
os.makedirs(root)
small_budget, written, n = size // 2, 0, 0
while written < small_budget:
    d = os.path.join(root, "MediaCover", f"{n // 100:04d}")
    if n % 100 == 0:
        os.makedirs(d)
    k = rng.randint(1024, 32768)
    with open(os.path.join(d, f"poster-{n:06d}.jpg"), "wb") as f:
        f.write(rng.randbytes(k))
    written, n = written + k, n + 1
rest = size - written
for i, share in enumerate([0.45, 0.3, 0.15, 0.1]):
    with open(os.path.join(root, f"sonarr-{i}.db"), "wb") as f:
        left = int(rest * share)
        while left > 0:
            chunk = min(left, 8 << 20)
            f.write(rng.randbytes(chunk))
            left -= chunk
os.makedirs(os.path.join(root, "logs/a/b"))
for i in range(20):
    open(os.path.join(root, f"logs/a/b/empty-{i}"), "w").close()
with open(os.path.join(root, "run.sh"), "w") as f:
    f.write("#!/bin/sh\n")
os.chmod(os.path.join(root, "run.sh"), 0o755)
os.symlink("sonarr-0.db", os.path.join(root, "db-link"))
os.symlink("/nonexistent", os.path.join(root, "dangling"))
print(f"tree: {n} small files, 4 large, {size >> 20} MiB", file=sys.stderr)
EOF
echo "$size_mib" >"$scratch/src.done"
fi

# ext4 steps over inodes deleted in the last few seconds when it creates
# files (recently_deleted() in perf), which made a run right after the
# previous one's rm -rf up to twice as slow: wait that out, untimed.
settle() { sleep 6; }
drop_caches() {
    sync
    if ! echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
        echo "migrate-bench: cannot drop the page cache (not root?); runs after the first are warm" >&2
        caches=warm
    fi
}
caches=cold
now() { date +%s.%N; }

expected=$(nix-hash --type sha256 --base32 "$scratch/src")
ours_times=()
pair_times=()
cp_times=()
run_ours() {
    drop_caches
    local t0 t1 h
    t0=$(now)
    h=$("$ours_bin" "$scratch/src" "$scratch/ours")
    t1=$(now)
    [[ $h == "$expected" ]] || { echo "migrate-bench: ours hashed $h, nix-hash $expected" >&2; exit 1; }
    ours_times+=("$(echo "$t1 - $t0" | bc)")
    rm -rf "$scratch/ours"
    settle
}
run_pair() {
    drop_caches
    local t0 t1 t2 h
    t0=$(now)
    cp -a "$scratch/src" "$scratch/pair"
    t1=$(now)
    h=$(nix-hash --type sha256 --base32 "$scratch/pair")
    t2=$(now)
    [[ $h == "$expected" ]] || { echo "migrate-bench: cp -a copy hashes to $h, not $expected" >&2; exit 1; }
    pair_times+=("$(echo "$t2 - $t0" | bc)")
    cp_times+=("$(echo "$t1 - $t0" | bc)")
    rm -rf "$scratch/pair"
    settle
}
# One untimed run of each first (files, inodes and allocator in their
# steady state), then alternate which side goes first.
run_ours; run_pair
ours_times=(); pair_times=(); cp_times=()
for ((i = 0; i < runs; i++)); do
    if ((i % 2)); then run_pair; run_ours; else run_ours; run_pair; fi
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
range() { printf '%s\n' "$@" | sort -n | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.2f-%.2f", lo, hi}'; }
o=$(median "${ours_times[@]}")
p=$(median "${pair_times[@]}")
c=$(median "${cp_times[@]}")
ratio=$(echo "scale=3; $o / $p" | bc)
echo
echo "snapshot + NAR hash of a ${size_mib} MiB tree on $fstype, page cache $caches, median of $runs runs"
printf '  %-36s %7.2f s  [%s]\n' "ours (copy and hash at once)" "$o" "$(range "${ours_times[@]}")"
printf '  %-36s %7.2f s  [%s]  (cp -a %.2f s)\n' "cp -a, then nix-hash --base32" "$p" "$(range "${pair_times[@]}")" "$c"
printf '  ratio ours/pair: %s (target <= 0.7)\n' "$ratio"
if (($(echo "$ratio <= 0.7" | bc))); then
    echo "  PASS"
else
    echo "  MISS"
    exit 3
fi
