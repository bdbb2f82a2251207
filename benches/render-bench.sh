#!/usr/bin/env bash
# Render benchmark (issue 3): render a generated 1,000-service spec into an
# empty directory and report wall time and peak memory, next to Podman's
# Quadlet generator on 1,000 equivalent .container files when a Debian trixie
# root with podman is available. See benches/README.md.
#
# Usage: benches/render-bench.sh [--runs N] [--services N] [--setup-quadlet] [--keep] [--no-tmpfs]
#   --setup-quadlet  create the trixie root for the peer (debootstrap + podman), then bench
#   --keep           keep the scratch directory (spec, .container files, logs)
#   --no-tmpfs       as root, write outputs to the disk file system instead of a tmpfs
# Environment: QUADLET_ROOT (default /var/cache/nixarr-units/trixie-root)
# Exit status: 0 when both targets are met, 3 when one is missed, other on error.
set -euo pipefail

runs=5
services=1000
setup=0
keep=0
tmpfs=1
while (($#)); do
    case $1 in
        --runs) runs=$2; shift 2 ;;
        --services) services=$2; shift 2 ;;
        --setup-quadlet) setup=1; shift ;;
        --keep) keep=1; shift ;;
        --no-tmpfs) tmpfs=0; shift ;;
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "render-bench: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
root=${QUADLET_ROOT:-/var/cache/nixarr-units/trixie-root}
quadlet=/usr/libexec/podman/quadlet

setup_quadlet() {
    if [[ $(id -u) != 0 ]]; then
        echo "render-bench: --setup-quadlet needs root (debootstrap, chroot)" >&2
        exit 2
    fi
    if ! command -v debootstrap >/dev/null; then
        apt-get install -y debootstrap
    fi
    # The same root as the podman 5 end-to-end machine (it has podman 5).
    bash tests/trixie-root.sh "$root" >/dev/null
    chroot "$root" dpkg-query -W podman
}

((setup)) && setup_quadlet

echo "== building the release binary" >&2
cargo build --release --locked >&2
bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/nixarr-units")

have_quadlet=0
if [[ -x $root$quadlet ]]; then
    if [[ $(id -u) == 0 ]]; then
        have_quadlet=1
    else
        echo "render-bench: $root$quadlet exists but chroot needs root; measuring ours only" >&2
    fi
else
    cat >&2 <<EOF
render-bench: no Quadlet peer at $root$quadlet.
  To measure against it, create a Debian trixie root with podman (needs root,
  a few minutes and ~600 MB):  sudo benches/render-bench.sh --setup-quadlet
  (or set QUADLET_ROOT to an existing root that has podman 5 installed).
EOF
fi

# Keep everything on one file system: inside the root's /tmp when there is a
# peer (so the chroot sees the .container files and its output directory).
# As root, that directory is a private tmpfs, like systemd's generator
# directories: a disk file system adds its own noise (see measure.py).
if ((have_quadlet)); then
    work=$(mktemp -d "$root/tmp/nixarr-bench.XXXXXX")
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/nixarr-bench.XXXXXX")
fi
mounted=0
cleanup() {
    if ((keep)); then
        ((mounted)) && echo "render-bench: $work is a tmpfs; umount it when done" >&2
        echo "render-bench: kept $work" >&2
        return
    fi
    ((mounted)) && umount "$work"
    rm -rf "$work"
}
trap cleanup EXIT
if ((tmpfs)) && [[ $(id -u) == 0 ]]; then
    mount -t tmpfs -o size=1g,mode=0755 nixarr-bench "$work"
    mounted=1
fi
echo "== scratch: $work ($(stat -f -c %T "$work"))" >&2

echo "== generating $services services (spec and Quadlet files)" >&2
python3 benches/gen_inputs.py --services "$services" --spec "$work/spec.json" --quadlet-dir "$work/quadlet"

echo "== $("$bin" --version 2>/dev/null || echo nixarr-units)$( ((have_quadlet)) && echo ", quadlet $(chroot "$root" "$quadlet" -version)")" >&2
echo "== $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

args=(--runs "$runs" --services "$services" --work "$work" --bin "$bin" --spec "$work/spec.json")
if ((have_quadlet)); then
    args+=(--quadlet-root "$root" --quadlet-bin "$quadlet" --quadlet-units "${work#"$root"}/quadlet")
fi
python3 benches/measure.py "${args[@]}"
