#!/usr/bin/env python3
"""API benchmark driver (run by benches/api-bench.sh; see benches/README.md).

Boots systemd as PID 1 in systemd-nspawn, installs N cheap units (`sleep
infinity`) under the names of a rendered N-service spec (every service with an
HTTP probe on an endpoint of this process, all answering), starts
`nixarr-units serve` in the machine on a loopback TCP port, and then,
alternating, --runs times:

  - wrk: `GET /containers` with the read token, --clients connections, for
    --duration seconds (throughput, p50/p99 latency, errors);
  - the CLI way: `nixarr-units status --json --no-probe` run once per request
    for --duration seconds, by --cli-clients loops at once in the machine
    (throughput, p50/p99 wall time, peak RSS of one run).

serve's peak RSS is its VmHWM at the end (it ran through every load run).
Reports medians and PASS/MISS against the targets of issue 15.

`api-bench.py --cli-loop ...` is the CLI side's inner loop, run inside the
machine.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

from benchlib import Listener, Machine, log, render_manifest, scratch

TOKEN = "bench-read-token-0123456789abcdef"
TARGET_P99_MS = 20.0
TARGET_RATIO = 20.0
TARGET_RSS_MIB = 30.0

# wrk prints its own report, then this line: the figures as JSON.
WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, '
    .. '"p99_us": %d, "max_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def cli_loop(a):
    """Inside the machine: run `status --json --no-probe` back to back in
    --clients threads for --duration seconds; print the figures as JSON."""
    argv = [a.bin, "--manifest", a.manifest, "status", "--json", "--no-probe"]
    walls, rss, failed = [], [], []
    lock = threading.Lock()
    began = time.monotonic()
    end = began + a.duration

    def worker():
        while time.monotonic() < end:
            t0 = time.monotonic()
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - t0
            with lock:
                walls.append(wall)
                rss.append(ru.ru_maxrss)
                if p.returncode != 0:
                    failed.append(p.returncode)

    threads = [threading.Thread(target=worker) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    walls.sort()
    print(json.dumps({
        "requests": len(walls), "elapsed": elapsed, "failed": len(failed),
        "p50_ms": walls[len(walls) // 2] * 1000,
        "p99_ms": walls[min(len(walls) - 1, int(len(walls) * 0.99))] * 1000,
        "maxrss_kib": max(rss),
    }))


def free_port():
    # The machine shares the host's network namespace.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, token=None, timeout=5):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def proc_status(pid):
    """/proc/PID/status as a dict (VmHWM, VmRSS, Threads...)."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Serve:
    """`nixarr-units serve` in the machine, on 127.0.0.1:PORT."""

    def __init__(self, machine, bin_, manifest, work):
        self.port = free_port()
        token_file = os.path.join(work, "read-token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.log = open(os.path.join(work, "serve.log"), "w")
        self.nsenter = subprocess.Popen(
            machine.enter([bin_, "--manifest", manifest, "serve",
                           "--listen", f"127.0.0.1:{self.port}",
                           "--read-token-file", token_file]),
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            if self.nsenter.poll() is not None:
                raise RuntimeError(f"serve exited {self.nsenter.returncode}; see {self.log.name}")
            try:
                if get(self.url + "/health", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve did not answer /health in 30 s; see {self.log.name}")
            time.sleep(0.2)
        # nsenter forks (it enters a PID namespace): serve is its only child.
        with open(f"/proc/{self.nsenter.pid}/task/{self.nsenter.pid}/children") as f:
            self.pid = int(f.read().split()[0])

    def close(self):
        try:
            os.kill(self.pid, signal.SIGTERM)  # serve, which this object started
        except ProcessLookupError:
            pass
        try:
            self.nsenter.wait(10)
        except subprocess.TimeoutExpired:
            self.nsenter.kill()
            self.nsenter.wait()
        self.log.close()


def wrk(url, a, lua):
    r = subprocess.run(
        ["wrk", "-t2", f"-c{a.clients}", f"-d{a.duration}s", "--timeout", "5s",
         "-s", lua, "-H", f"Authorization: Bearer {TOKEN}", url + "/containers"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, check=True)
    line = [x for x in r.stdout.splitlines() if x.startswith("{")][-1]
    w = json.loads(line)
    w["errors"] = sum(w[k] for k in ("connect", "read", "write", "status", "timeout"))
    w["rps"] = w["requests"] / (w["duration_us"] / 1e6)
    return w


def run_cli(machine, bin_, manifest, script, a):
    r = machine.run(["/usr/bin/python3", script, "--cli-loop", "--bin", bin_,
                     "--manifest", manifest, "--clients", str(a.cli_clients),
                     "--duration", str(a.duration)])
    c = json.loads(r.stdout)
    c["rps"] = c["requests"] / c["elapsed"]
    return c


def check_once(serve, n):
    status, body = get(serve.url + "/containers", TOKEN)
    rows = json.loads(body)["containers"]
    running = sum(1 for r in rows if r["status"] == "running")
    assert status == 200 and len(rows) == n and running == n, (status, len(rows), running)
    return len(body)


def spread(v, fmt):
    return f"{fmt.format(statistics.median(v))} [{fmt.format(min(v))}-{fmt.format(max(v))}]"


def report(a, n, body_bytes, serves, clis, hwm_kib, rss_kib, threads, cpu_per_req_us):
    def col(runs, key, scale=1.0):
        return [r[key] * scale for r in runs]

    print(f"\nGET /containers, {n} services on systemd in nspawn ({body_bytes} bytes), "
          f"{a.duration} s per run, median of {a.runs} runs [min-max]")
    print(f"  {'':38} {'req/s':>20} {'p50 ms':>20} {'p99 ms':>20}")
    print(f"  {f'serve, wrk {a.clients} connections':38} {spread(col(serves, 'rps'), '{:.0f}'):>20} "
          f"{spread(col(serves, 'p50_us', 1e-3), '{:.2f}'):>20} "
          f"{spread(col(serves, 'p99_us', 1e-3), '{:.2f}'):>20}")
    print(f"  {f'status --json --no-probe, {a.cli_clients} at once':38} "
          f"{spread(col(clis, 'rps'), '{:.1f}'):>20} "
          f"{spread(col(clis, 'p50_ms'), '{:.1f}'):>20} {spread(col(clis, 'p99_ms'), '{:.1f}'):>20}")
    errors = sum(r["errors"] for r in serves)
    print(f"  serve: {errors} errors in {sum(r['requests'] for r in serves)} requests; "
          f"{cpu_per_req_us:.0f} us CPU per request; {threads} threads")
    print(f"  serve peak RSS (VmHWM) {hwm_kib / 1024:.1f} MiB, RSS at the end "
          f"{rss_kib / 1024:.1f} MiB; one status run peaks at "
          f"{max(c['maxrss_kib'] for c in clis) / 1024:.1f} MiB")
    p99 = statistics.median(col(serves, "p99_us", 1e-3))
    ratio = statistics.median(col(serves, "rps")) / statistics.median(col(clis, "rps"))
    rss = hwm_kib / 1024
    ok = [p99 <= TARGET_P99_MS, ratio >= TARGET_RATIO, rss <= TARGET_RSS_MIB, errors == 0]
    word = ["PASS" if x else "MISS" for x in ok]
    print(f"  p99 {p99:.2f} ms (target <= {TARGET_P99_MS:.0f}: {word[0]})")
    print(f"  throughput serve/CLI {ratio:.0f}x (target >= {TARGET_RATIO:.0f}x: {word[1]})")
    print(f"  serve peak RSS {rss:.1f} MiB (target <= {TARGET_RSS_MIB:.0f}: {word[2]})")
    if errors:
        print(f"  {errors} wrk errors (non-2xx, timeouts, socket errors): MISS")
    return 0 if all(ok) else 3


def bench(a, work):
    bin_ = os.path.realpath(a.bin)
    listener = Listener(a.services, 0)
    manifest, units = render_manifest(bin_, work, listener.ports)
    script = os.path.join(work, "api-bench.py")
    # The CLI loop runs this script in the machine, which sees only `work`.
    for f in (__file__, os.path.join(os.path.dirname(__file__), "benchlib.py")):
        shutil.copy(f, work)
    lua = os.path.join(work, "figures.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    log(f"{len(units)} units, {a.clients} clients, {a.duration} s x {a.runs} runs; scratch {work}")
    machine = Machine(work, os.path.dirname(bin_))
    serve = None
    try:
        machine.install_sleep_units(units)
        serve = Serve(machine, bin_, manifest, work)
        # The first refresh (with probes) is done before /health answers;
        # wait until every row is running anyway.
        deadline = time.monotonic() + 30
        while True:
            try:
                body_bytes = check_once(serve, len(units))
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        log(f"serve pid {serve.pid} on {serve.url}: {len(units)} containers running")
        serves, clis, cpu, requests = [], [], 0.0, 0
        for i in range(a.runs):
            c0 = cpu_seconds(serve.pid)
            serves.append(wrk(serve.url, a, lua))
            cpu += cpu_seconds(serve.pid) - c0
            requests += serves[-1]["requests"]
            clis.append(run_cli(machine, bin_, manifest, script, a))
            log(f"run {i + 1}: serve {serves[-1]['rps']:.0f} req/s, "
                f"p99 {serves[-1]['p99_us'] / 1000:.2f} ms, {serves[-1]['errors']} errors; "
                f"CLI {clis[-1]['rps']:.1f} req/s, {clis[-1]['failed']} failed")
        st = proc_status(serve.pid)
        kib = lambda k: int(st[k].split()[0])  # noqa: E731
        status = report(a, len(units), body_bytes, serves, clis, kib("VmHWM"), kib("VmRSS"),
                        st["Threads"].strip(), cpu / max(requests, 1) * 1e6)
        if any(c["failed"] for c in clis):
            raise RuntimeError("a status run failed; run it in the machine to see why")
        return status
    finally:
        if serve is not None:
            serve.close()
        machine.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--cli-clients", type=int, default=os.cpu_count())
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--cli-loop", action="store_true")
    ap.add_argument("--manifest")
    a = ap.parse_args()
    if a.cli_loop:
        cli_loop(a)
        return 0
    with scratch("api", a.keep) as work:
        return bench(a, work)


if __name__ == "__main__":
    sys.exit(main())
