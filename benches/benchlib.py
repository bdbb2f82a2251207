"""What the benchmarks on real systemd share (benches/status-bench.py,
benches/api-bench.py; see benches/README.md): systemd as PID 1 in
systemd-nspawn (the recipe of /work/shared/REAL-SYSTEMD.md, without container
engines), HTTP endpoints for health probes, and a rendered N-service spec.
"""

import asyncio
import contextlib
import json
import os
import shutil
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


def log(msg):
    print(f"== {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def scratch(kind, keep):
    """A scratch directory for one run, removed afterwards unless `keep`."""
    work = tempfile.mkdtemp(prefix=f"nixarr-bench-{kind}.")
    try:
        yield work
    finally:
        if keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


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
        try:
            self._boot()
        except BaseException:
            # Not left running: the caller never gets a machine to close.
            self.close()
            raise

    def _boot(self):
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

    def install_sleep_units(self, units):
        """Install and start `units`: cheap services (`sleep infinity`) under
        the names a rendered spec gives them."""
        unit_dir = os.path.join(self.root, "etc/systemd/system")
        for u in units:
            with open(os.path.join(unit_dir, u), "w") as f:
                f.write(f"[Unit]\nDescription=bench {u}\n[Service]\nType=simple\n"
                        "ExecStart=/usr/bin/sleep infinity\n")
        self.run(["systemctl", "daemon-reload"])
        self.run(["systemctl", "start", *units])

    def close(self):
        if self.leader is not None:
            subprocess.run(self.enter(["systemctl", "--no-block", "poweroff"]),
                           stdin=subprocess.DEVNULL, capture_output=True)
        try:
            self.proc.wait(30 if self.leader is not None else 0)
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
