#!/usr/bin/env python3
"""Time `nixarr-units render` and (when available) Podman's Quadlet generator
side by side, and print one table.

Each run starts the program into a fresh, empty output directory and waits for
it with wait4(2), the call GNU time uses: wall time is measured around
spawn→exit with a monotonic clock (millisecond resolution, where
`/usr/bin/time -f %e` only gives centiseconds), peak memory is the child's
ru_maxrss (what `/usr/bin/time -f %M` prints). The two programs alternate
run by run so that load from other users of the machine hits both alike. One
untimed warm-up run of each comes first and its output is checked.

Every run gets its own output directory and all are deleted only at the end:
on an ext4 file system without a journal, creating files right after deleting
thousands makes the kernel skip over the recently deleted inodes
(`recently_deleted()` in ext4's inode allocator), which costs more system time
than the whole render and would depend on what ran in the last minutes.
render-bench.sh therefore puts the scratch directory on a tmpfs (where
systemd's generator directories live, too) when it runs as root.
"""

import argparse
import os
import shutil
import statistics
import sys
import time


def run_once(argv, env, out_dir, log_path):
    """Run argv once into the new, empty out_dir; return (wall_ms, peak_kib, cpu_ms)."""
    os.makedirs(out_dir)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, fd, 1),
        (os.POSIX_SPAWN_DUP2, fd, 2),
    ]
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    t1 = time.perf_counter_ns()
    os.close(fd)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(log_path, errors="replace") as fh:
            sys.exit(f"{' '.join(argv)} failed with exit code {code}:\n{fh.read()}")
    return (t1 - t0) / 1e6, ru.ru_maxrss, (ru.ru_utime + ru.ru_stime) * 1e3


def count_services(d):
    # One unit per service plus the network unit; template units (our
    # <prefix>-migrate@.service) have no Quadlet counterpart.
    return sum(1 for f in os.listdir(d) if f.endswith(".service") and "@." not in f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--services", type=int, required=True)
    ap.add_argument("--work", required=True, help="scratch directory (outputs go below it)")
    ap.add_argument("--bin", required=True, help="the nixarr-units binary")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--quadlet-root", help="chroot holding /usr/libexec/podman/quadlet")
    ap.add_argument("--quadlet-bin", default="/usr/libexec/podman/quadlet")
    ap.add_argument("--quadlet-units", help="directory of .container files, as seen inside the root")
    ap.add_argument("--target-ms", type=float, default=300)
    ap.add_argument("--target-mib", type=float, default=30)
    args = ap.parse_args()

    base_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    sides = {}
    sides["ours"] = dict(
        argv=lambda out: [args.bin, "render", "--spec", args.spec, "--out", out,
                          "--self-exe", "/usr/bin/nixarr-units"],
        env=base_env,
        units="lib/systemd/system",
    )
    if args.quadlet_root:
        root = os.path.abspath(args.quadlet_root)
        if not os.path.abspath(args.work).startswith(root + "/"):
            sys.exit(f"--work {args.work} must be inside the quadlet root {root}")
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        sides["quadlet"] = dict(
            argv=lambda out: [chroot, root, args.quadlet_bin, "-no-kmsg-log", out[len(root):]],
            env=dict(base_env, QUADLET_UNIT_DIRS=args.quadlet_units),
            units="",
        )
    outs = os.path.join(os.path.abspath(args.work), "out")
    os.makedirs(outs)
    seq = iter(range(1_000_000))

    def out_dir(name):
        return os.path.join(outs, f"{name}-{next(seq)}")

    # Warm-up (page cache, binary loading) and a check that each side did the job.
    for name, s in sides.items():
        log = os.path.join(args.work, f"{name}.log")
        out = out_dir(name)
        run_once(s["argv"](out), s["env"], out, log)
        n = count_services(os.path.join(out, s["units"]))
        # ours: one unit per service + the network unit; quadlet: the same.
        if n != args.services + 1:
            with open(log, errors="replace") as fh:
                sys.exit(f"{name}: expected {args.services + 1} .service files, got {n}\n{fh.read()}")
        with open(log, errors="replace") as fh:
            noise = fh.read().strip()
        if name == "quadlet" and noise:
            sys.exit(f"quadlet reported problems with the generated files:\n{noise[:2000]}")

    results = {name: [] for name in sides}
    for _ in range(args.runs):
        for name, s in sides.items():
            out = out_dir(name)
            log = os.path.join(args.work, f"{name}.log")
            results[name].append(run_once(s["argv"](out), s["env"], out, log))
    shutil.rmtree(outs, ignore_errors=True)

    def med(name, i):
        return statistics.median(r[i] for r in results[name])

    print()
    print(f"{args.services} services, median of {args.runs} runs (min-max in brackets)")
    print(f"{'':9} {'wall ms':>20} {'peak MiB':>18} {'cpu ms':>8}")
    for name in sides:
        walls = [r[0] for r in results[name]]
        mibs = [r[1] / 1024 for r in results[name]]
        print(f"{name:9} {med(name, 0):8.1f} [{min(walls):4.0f}-{max(walls):4.0f}] "
              f"{med(name, 1) / 1024:7.1f} [{min(mibs):3.0f}-{max(mibs):3.0f}] {med(name, 2):8.0f}")
    wall, mib = med("ours", 0), med("ours", 1) / 1024
    if "quadlet" in sides:
        print(f"ratio (quadlet/ours): wall {med('quadlet', 0) / wall:.1f}x, "
              f"peak memory {med('quadlet', 1) / med('ours', 1):.1f}x, cpu {med('quadlet', 2) / med('ours', 2):.1f}x")
    else:
        print("quadlet: not available (no ratio); run benches/render-bench.sh --setup-quadlet")
    ok_wall, ok_mib = wall < args.target_ms, mib < args.target_mib
    print(f"target wall < {args.target_ms:.0f} ms: {'PASS' if ok_wall else 'MISS'} ({wall:.1f} ms)")
    print(f"target peak < {args.target_mib:.0f} MiB: {'PASS' if ok_mib else 'MISS'} ({mib:.1f} MiB)")
    sys.exit(0 if ok_wall and ok_mib else 3)


if __name__ == "__main__":
    main()
