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
import json
import os
import statistics
import subprocess
import sys
import time

from benchlib import Listener, Machine, log, render_manifest, scratch

PROPS = "LoadState,ActiveState,SubState,NRestarts,MainPID"


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
    with scratch("status", a.keep) as work:
        listener = Listener(a.units, a.hanging)
        manifest, units = render_manifest(bin_, work, listener.ports)
        log(f"{len(units)} units, {a.hanging} probe endpoints hang; scratch {work}")
        machine = Machine(work, os.path.dirname(bin_))
        try:
            machine.install_sleep_units(units)

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
            machine.close()


if __name__ == "__main__":
    sys.exit(main())
