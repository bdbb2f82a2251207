#!/usr/bin/env python3
"""Status benchmark driver (run by benches/status-bench.sh; see benches/README.md).

Boots systemd as PID 1 in systemd-nspawn (the recipe of
/work/shared/REAL-SYSTEMD.md, without container engines), installs N cheap
units (Type=simple, `sleep infinity`) named as a rendered spec names them,
and a manifest rendered by nixarr-units from an N-service spec whose every
service has an HTTP probe on its own port of a listener in this process
(most answer at once, --hanging accept and never answer). Then, alternating,
times:

  - `systemctl show -p LoadState,ActiveState,SubState,NRestarts,MainPID <units>`
  - `nixarr-units status --json --no-probe`
  - `nixarr-units status --json` (all N probes, default 1 s probe timeout)

all inside the machine (nsenter, timed alone too), plus `status --no-probe`
from the host through --bus-address. Reports medians and PASS/MISS.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MASKS = [
    "systemd.mask=systemd-networkd.service",
    "systemd.mask=systemd-networkd.socket",
    "systemd.mask=systemd-networkd-wait-online.service",
    "systemd.mask=nftables.service",
    "systemd.mask=console-getty.service",
    "systemd.mask=docker.service",
    "systemd.mask=docker.socket",
    "systemd.mask=containerd.service",
]
PROPS = "LoadState,ActiveState,SubState,NRestarts,MainPID"


def log(msg):
    print(f"== {msg}", file=sys.stderr, flush=True)


class Listener:
    """N HTTP endpoints on 127.0.0.1; the `hanging` first ones accept and
    never answer."""

    def __init__(self, n, hanging):
        self.n, self.hanging = n, hanging
        self.ports = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError("the probe listener did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self):
        self.servers = []
        for i in range(self.n):
            hang = i < self.hanging
            server = await asyncio.start_server(
                self._hang if hang else self._answer, "127.0.0.1", 0, backlog=64
            )
            self.servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])

    async def _answer(self, reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
            await writer.drain()
        except Exception:
            pass
        finally:
            writer.close()

    async def _hang(self, reader, writer):
        await asyncio.sleep(3600)


class Machine:
    def __init__(self, work, bindir):
        self.name = f"nixarr-bench-{os.getpid()}"
        self.log = open(os.path.join(work, "nspawn.log"), "w")
        env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-D", "/", "--volatile=yes", "--register=no",
             "--keep-unit", "--boot", f"--machine={self.name}",
             f"--bind={work}", f"--bind-ro={bindir}",
             "--", "systemd.firstboot=off", *MASKS],
            env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True)
        self.leader = None
        deadline = time.monotonic() + 30
        while self.leader is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn did not start; see {self.log.name}")
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
                self.leader = int(kids[0]) if kids else None
            except OSError:
                pass
            time.sleep(0.1)
        deadline = time.monotonic() + 90
        while True:
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"systemd did not finish booting ({state})")
            time.sleep(0.25)
        log(f"machine {self.name} booted ({state}), systemd pid {self.leader}")

    def enter(self, argv):
        return ["nsenter", "-t", str(self.leader), "-a", "--", *argv]

    def run(self, argv, check=True):
        return subprocess.run(self.enter(argv), check=check, text=True,
                              stdin=subprocess.DEVNULL, capture_output=True)

    @property
    def root(self):
        return f"/proc/{self.leader}/root"

    @property
    def bus(self):
        return f"unix:path={self.root}/run/dbus/system_bus_socket"

    def close(self):
        subprocess.run(self.enter(["systemctl", "--no-block", "poweroff"]),
                       stdin=subprocess.DEVNULL, capture_output=True)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # the nspawn we started, by its PID
            self.proc.wait()
        self.log.close()


def render_manifest(bin_, work, ports):
    services = {
        f"s{i:03}": {
            "image": "localhost/bench:1",
            "ports": [{"host": p, "container": 8080, "address": "127.0.0.1"}],
            "health": {"http": "/ping", "port": 8080},
        }
        for i, p in enumerate(ports)
    }
    spec = {"version": 1, "backend": "podman", "prefix": "bench",
            "engine": {"path": "/usr/bin/podman"}, "services": services}
    with open(os.path.join(work, "spec.json"), "w") as f:
        json.dump(spec, f)
    out = os.path.join(work, "rendered")
    subprocess.run([bin_, "render", "--spec", os.path.join(work, "spec.json"), "--out", out],
                   check=True, stdout=subprocess.DEVNULL)
    manifest = os.path.join(out, "share/nixarr-units/manifest.json")
    with open(manifest) as f:
        m = json.load(f)
    units = [s["unit"] for s in m["stacks"][0]["services"].values()]
    return manifest, units


def timed(argv, env=None):
    start = time.monotonic()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env)
    ms = (time.monotonic() - start) * 1000
    if r.returncode not in (0, 1):
        raise RuntimeError(f"{argv[:8]}... exited {r.returncode}: {r.stderr.decode()[-2000:]}")
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--hanging", type=int, default=20)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    bin_ = os.path.realpath(a.bin)
    work = tempfile.mkdtemp(prefix="nixarr-bench-status.")
    machine = None
    try:
        listener = Listener(a.units, a.hanging)
        manifest, units = render_manifest(bin_, work, listener.ports)
        log(f"{len(units)} units, {a.hanging} probe endpoints hang; scratch {work}")
        machine = Machine(work, os.path.dirname(bin_))
        unit_dir = os.path.join(machine.root, "etc/systemd/system")
        for u in units:
            with open(os.path.join(unit_dir, u), "w") as f:
                f.write(f"[Unit]\nDescription=bench {u}\n[Service]\nType=simple\n"
                        "ExecStart=/usr/bin/sleep infinity\n")
        machine.run(["systemctl", "daemon-reload"])
        machine.run(["systemctl", "start", *units])

        ours = machine.enter([bin_, "status", "--json", "--no-probe", "--manifest", manifest])
        ours_probes = machine.enter([bin_, "status", "--json", "--manifest", manifest])
        ours_host = [bin_, "status", "--json", "--no-probe", "--manifest", manifest,
                     "--bus-address", machine.bus]
        systemctl = machine.enter(["systemctl", "--no-pager", "show", "-p", PROPS, *units])
        nsenter = machine.enter(["true"])

        # Check once that every command sees what it should.
        r = subprocess.run(ours, capture_output=True, text=True, check=False)
        rows = json.loads(r.stdout)["services"]
        active = sum(1 for x in rows if x["activeState"] == "active")
        assert r.returncode == 0 and len(rows) == len(units) and active == len(units), (
            r.returncode, len(rows), active, r.stderr)
        r = subprocess.run(systemctl, capture_output=True, text=True, check=True)
        assert r.stdout.count("ActiveState=active") == len(units), r.stdout[:500]
        r = subprocess.run(ours_probes, capture_output=True, text=True, check=False)
        health = [x["health"]["state"] for x in json.loads(r.stdout)["services"]]
        healthy = health.count("healthy")
        reasons = sorted({x["health"]["reason"] for x in json.loads(r.stdout)["services"]
                          if x["health"]["state"] != "healthy"})
        assert healthy == len(units) - a.hanging, (healthy, reasons, r.stderr)
        log(f"with probes: {healthy} healthy, {len(units) - healthy} unhealthy ({', '.join(reasons)})")

        cmds = [
            ("nsenter alone", nsenter),
            ("systemctl show (5 properties)", systemctl),
            ("status --json --no-probe", ours),
            ("  same, from the host (--bus-address)", ours_host),
            (f"status --json, {len(units)} probes", ours_probes),
        ]
        times = {name: [] for name, _ in cmds}
        for _ in range(a.runs):
            for name, argv in cmds:
                times[name].append(timed(argv))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"\n{len(units)} units on systemd in nspawn, median of {a.runs} runs "
              f"(min-max in brackets), wall ms")
        for name, _ in cmds:
            v = times[name]
            print(f"  {name:42} {med[name]:8.1f} [{min(v):7.1f}-{max(v):7.1f}]")
        sysctl = med["systemctl show (5 properties)"]
        no_probe = med["status --json --no-probe"]
        probes = med[f"status --json, {len(units)} probes"]
        ratio = no_probe / sysctl
        ok_ratio = ratio <= 0.5
        ok_probes = probes < 1500
        print(f"  ratio status --no-probe / systemctl show: {ratio:.2f} "
              f"(target <= 0.50: {'PASS' if ok_ratio else 'MISS'})")
        print(f"  status with probes ({a.hanging} hanging): {probes:.0f} ms "
              f"(target < 1500: {'PASS' if ok_probes else 'MISS'})")
        return 0 if ok_ratio and ok_probes else 3
    finally:
        if machine is not None:
            machine.close()
        if a.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
