#!/usr/bin/env python3
"""Run a NixOS VM test script against a systemd-nspawn machine instead of a VM.

The NixOS test driver gives a test script a `machine` object (and a few
globals: `start_all`, `subtest`, `machines`); this stand-in gives the same
names, with the same signatures and semantics for the subset our scenario
uses, mapped onto `nsenter` into a booted nspawn machine whose PID 1 is
given. tests/e2e/vm_scenario.rs boots that machine, installs the stack and
calls:

    python3 tests/vm/nspawn_driver.py --pid PID1 tests/vm/scenario.py

so the logic of the VM test (nix/vm-test.nix) runs on every CI run, and only
the Nix glue that builds the VM does not.

Semantics kept from the NixOS driver (nixos/lib/test-driver):
- commands run in bash with `set -euo pipefail` (the VM's /bin/sh is bash),
  under `timeout`, and `execute` returns (status, stdout) -- stderr is only
  logged;
- `succeed`/`fail` take several commands and check each;
- `wait_for_unit` fails at once when the unit is `failed`, or `inactive`
  with no job pending, instead of waiting out its timeout.
`wait_for_open_port` connects from inside the machine, as the VM's driver
does (`nc -z` there; bash's /dev/tcp here).
"""

import argparse
import contextlib
import os
import shlex
import subprocess
import sys
import time
import traceback

# The environment commands see inside the machine: not this process's (a
# test runner's variables must not leak into systemctl or podman).
MACHINE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Machine:
    def __init__(self, pid, default_timeout=300, name="machine"):
        self.pid = pid
        self.name = name
        self.default_timeout = default_timeout

    def log(self, msg):
        log(f"{self.name}: {msg}")

    def __getattr__(self, attr):
        # Only called for names not defined here: say so plainly rather
        # than with a bare AttributeError deep in the scenario.
        raise AttributeError(
            f"the nspawn stand-in driver has no machine.{attr}(); "
            "implement it in tests/vm/nspawn_driver.py with the NixOS driver's semantics"
        )

    # -- commands ---------------------------------------------------------

    def execute(self, command, check_return=True, timeout=900):
        """Run `command` in bash inside the machine; (status, stdout)."""
        timeout = self.default_timeout if timeout is None else timeout
        inner = f"set -euo pipefail; {command}"
        argv = ["nsenter", "-t", str(self.pid), "-a", "--"]
        argv += ["timeout", str(timeout), "/usr/bin/bash", "-c", inner]
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=MACHINE_ENV,
                text=True,
                errors="replace",
                # `timeout` inside ends the command; this only guards
                # against nsenter itself hanging.
                timeout=timeout + 30,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"nsenter did not return: {command}") from e
        if proc.stderr.strip():
            self.log(f"  stderr of {command!r}:\n{indent(proc.stderr)}")
        return proc.returncode, proc.stdout

    def succeed(self, *commands, timeout=None):
        output = ""
        for command in commands:
            self.log(f"must succeed: {command}")
            status, out = self.execute(command, timeout=timeout)
            if status != 0:
                raise AssertionError(
                    f"command `{command}` failed (exit code {status}); stdout:\n{indent(out)}"
                )
            output += out
        return output

    def fail(self, *commands, timeout=None):
        output = ""
        for command in commands:
            self.log(f"must fail: {command}")
            status, out = self.execute(command, timeout=timeout)
            if status == 0:
                raise AssertionError(
                    f"command `{command}` unexpectedly succeeded; stdout:\n{indent(out)}"
                )
            output += out
        return output

    def wait_until_succeeds(self, command, timeout=900):
        self.log(f"wait until succeeds: {command}")

        def attempt():
            status, out = self.execute(command, timeout=timeout)
            return status == 0, out

        return self._retry(command, attempt, timeout)

    def wait_until_fails(self, command, timeout=900):
        self.log(f"wait until fails: {command}")

        def attempt():
            status, out = self.execute(command, timeout=timeout)
            return status != 0, out

        return self._retry(command, attempt, timeout)

    # -- units and ports ----------------------------------------------------

    def get_unit_info(self, unit):
        status, out = self.execute(f"systemctl --no-pager show {shlex.quote(unit)}")
        if status != 0:
            raise AssertionError(f'retrieving systemctl info for unit "{unit}" failed ({status})')
        info = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                info[key] = value
        return info

    def wait_for_unit(self, unit, timeout=900):
        self.log(f"wait for unit {unit}")

        def attempt():
            state = self.get_unit_info(unit)["ActiveState"]
            if state == "failed":
                raise AssertionError(f'unit "{unit}" reached state "failed":\n{self._status(unit)}')
            if state == "inactive":
                _, jobs = self.execute("systemctl --no-pager list-jobs --full 2>&1")
                if "No jobs" in jobs and self.get_unit_info(unit)["ActiveState"] == "inactive":
                    raise AssertionError(
                        f'unit "{unit}" is inactive and there are no pending jobs:\n{self._status(unit)}'
                    )
            return state == "active", state

        return self._retry(f"unit {unit}", attempt, timeout)

    def _status(self, unit):
        _, out = self.execute(f"systemctl --no-pager -l status {shlex.quote(unit)} 2>&1 || true")
        return indent(out)

    def wait_for_open_port(self, port, addr="localhost", timeout=900):
        self.log(f"wait for open port {addr}:{port}")

        def attempt():
            # Inside, as the VM's driver does (`nc -z`): the machine has a
            # network of its own.
            status, out = self.execute(
                f"timeout 2 bash -c 'exec 3<>/dev/tcp/{addr}/{port}' 2>/dev/null"
            )
            return status == 0, out or f"status {status}"

        return self._retry(f"port {addr}:{port}", attempt, timeout)

    def wait_for_closed_port(self, port, addr="localhost", timeout=900):
        self.log(f"wait for closed port {addr}:{port}")

        def attempt():
            status, out = self.execute(
                f"timeout 2 bash -c 'exec 3<>/dev/tcp/{addr}/{port}' 2>/dev/null"
            )
            return status != 0, out or f"status {status}"

        return self._retry(f"closed port {addr}:{port}", attempt, timeout)

    # -- lifecycle ----------------------------------------------------------

    def start(self):
        # The harness booted the machine already; make sure it is there.
        if not os.path.exists(f"/proc/{self.pid}"):
            raise AssertionError(f"the nspawn machine (PID 1 = {self.pid}) is not running")
        self.log(f"started (nspawn, systemd pid {self.pid})")

    def _retry(self, what, attempt, timeout):
        timeout = self.default_timeout if timeout is None else min(timeout, self.default_timeout)
        deadline = time.monotonic() + timeout
        last = None
        while True:
            ok, last = attempt()
            if ok:
                return last
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
            time.sleep(1)


def indent(text):
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())


@contextlib.contextmanager
def subtest(name):
    log(f"subtest: {name}")
    start = time.monotonic()
    try:
        yield
    except Exception:
        log(f"subtest FAILED: {name} ({time.monotonic() - start:.1f}s)")
        raise
    log(f"subtest ok: {name} ({time.monotonic() - start:.1f}s)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, required=True, help="PID 1 of the nspawn machine")
    parser.add_argument(
        "--timeout",
        type=int,
        default=300,
        help="upper bound in seconds of every wait (the VM driver's default is 900)",
    )
    parser.add_argument("script")
    args = parser.parse_args()
    machine = Machine(args.pid, args.timeout)
    with open(args.script, encoding="utf-8") as f:
        code = compile(f.read(), args.script, "exec")
    env = {
        "__name__": "__vm_test__",
        "machine": machine,
        "machines": [machine],
        "start_all": machine.start,
        "subtest": subtest,
        "log": log,
    }
    start = time.monotonic()
    try:
        exec(code, env)
    except Exception as e:
        # Name the scenario's line that failed, then the whole traceback.
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == args.script]
        where = f"{args.script}:{frames[-1].lineno}: {frames[-1].line}" if frames else args.script
        log(f"\n{args.script}: FAILED after {time.monotonic() - start:.1f}s at {where}")
        traceback.print_exc()
        sys.exit(1)
    log(f"{args.script}: passed in {time.monotonic() - start:.1f}s")


if __name__ == "__main__":
    main()
