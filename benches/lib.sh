# What the benchmark scripts share (sourced, not run): their help, the root
# check, and the release build they measure. See benches/README.md.

# Print the script's leading comment block (from its second line to the
# first line that is not a comment) without the comment marks.
bench_help() {
    sed -n '2,/^[^#]/p' "$1" | sed '$d' | sed 's/^# \{0,1\}//'
}

# Exit 2 unless root: `bench_need_root NAME WHY`.
bench_need_root() {
    if [[ $(id -u) != 0 ]]; then
        echo "$1: needs root ($2)" >&2
        exit 2
    fi
}

# Build the release binary (extra cargo arguments pass through) from the
# repository root, set `bin` to it, and print what runs where.
bench_build_release() {
    cd "$(dirname "${BASH_SOURCE[0]}")/.."
    echo "== building the release binary" >&2
    cargo build --release --locked "$@" >&2
    bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/nixarr-units")
    echo "== $("$bin" --version 2>/dev/null || echo nixarr-units), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
}
