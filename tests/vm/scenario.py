# The NixOS VM test's scenario (nix/vm-test.nix reads this file as its
# testScript). It uses only the test driver's machine API -- start,
# wait_for_unit, wait_for_open_port, succeed, fail, wait_until_succeeds,
# execute -- and its `subtest`, so that a stand-in driver (an nspawn container
# instead of a VM, tests/vm/nspawn_driver.py, run by tests/e2e/vm_scenario.rs)
# can run the very same file. The driver provides `machine` and `subtest`.
#
# The stack (see nix/vm-test.nix): sonarr (8989), radarr (7878, depends on
# sonarr) and a second Sonarr instance sonarr-4k (8990), all from a tiny
# busybox image that answers /ping like the real apps (tests/vm/fake-arr/).
#
# What differs between the two kinds of host, and is allowed to:
# - the manifest is /etc/nixarr-units/manifest.json on NixOS (installed by
#   the module) and /run/nixarr-units/manifest.json where the generator
#   writes it;
# - the health gate is podman 5's --sdnotify=healthy in the VM and an
#   ExecStartPost= that waits for the probe on podman 4 (Debian 12 here);
#   either way the unit is active only once the container is healthy.

PREFIX = "nixarr"
SERVICES = {"sonarr": 8989, "sonarr-4k": 8990, "radarr": 7878}
MANIFESTS = ["/etc/nixarr-units/manifest.json", "/run/nixarr-units/manifest.json"]


def unit(svc):
    return f"{PREFIX}-{svc}.service"


def n_restarts(svc):
    return int(machine.succeed(f"systemctl show -P NRestarts {unit(svc)}").strip())


machine.start()
machine.wait_for_unit("multi-user.target")

with subtest("the stack starts at boot, every container healthy"):
    machine.wait_for_unit(f"{PREFIX}.target")
    for svc, port in SERVICES.items():
        machine.wait_for_unit(unit(svc))
        machine.wait_for_open_port(port)
        machine.succeed(f"systemctl status {unit(svc)}")
        machine.wait_until_succeeds(f"curl -fsS http://127.0.0.1:{port}/ping | grep -q OK")
        machine.succeed(f"podman healthcheck run {PREFIX}-{svc}")
        labels = machine.succeed(f"podman inspect --format '{{{{json .Config.Labels}}}}' {PREFIX}-{svc}")
        assert '"io.nixarr.managed":"true"' in labels, labels
        assert f'"io.nixarr.service":"{svc}"' in labels, labels

with subtest("the manifest lists every service"):
    # The first that exists: the module's (NixOS) or the generator's.
    manifest = machine.succeed(
        " || ".join(f"cat {m} 2>/dev/null" for m in MANIFESTS)
    )
    for svc in SERVICES:
        assert f'"{unit(svc)}"' in manifest, f"{svc} missing from the manifest"

with subtest("config and data directories have the container's owner"):
    # 568:169 by default; /data is root:169, setgid, group-writable.
    machine.succeed("test \"$(stat -c %u:%g /var/lib/nixarr/sonarr)\" = 568:169")
    machine.succeed("test \"$(stat -c %a /data)\" = 2775")

with subtest("stopping a dependency stops its dependent, cleanly"):
    machine.succeed(f"systemctl stop {unit('sonarr')}")
    machine.fail(f"systemctl is-active {unit('radarr')}")
    machine.fail(f"systemctl is-failed {unit('sonarr')}")
    machine.fail(f"curl -fsS http://127.0.0.1:{SERVICES['sonarr']}/ping")

with subtest("stopping the target stops the whole stack, never failed"):
    machine.succeed(f"systemctl stop {PREFIX}.target")
    for svc in SERVICES:
        machine.fail(f"systemctl is-active {unit(svc)}")
        machine.fail(f"systemctl is-failed {unit(svc)}")
    status, out = machine.execute(f"podman ps --format '{{{{.Names}}}}'")
    assert status == 0 and out.strip() == "", f"containers left running: {out}"

with subtest("starting the target brings every container back"):
    machine.succeed(f"systemctl start {PREFIX}.target")
    for svc, port in SERVICES.items():
        machine.wait_for_unit(unit(svc))
        machine.wait_until_succeeds(f"curl -fsS http://127.0.0.1:{port}/ping | grep -q OK")

with subtest("a container killed behind systemd's back is restarted"):
    # Restart=on-failure: the unit's restart counter goes up (an `is-active`
    # alone would pass before systemd even noticed the kill).
    before = n_restarts("radarr")
    machine.succeed(f"podman kill {PREFIX}-radarr")
    machine.wait_until_succeeds(
        f"test \"$(systemctl show -P NRestarts {unit('radarr')})\" -gt {before}"
    )
    machine.wait_for_unit(unit("radarr"))
    machine.wait_until_succeeds(f"curl -fsS http://127.0.0.1:{SERVICES['radarr']}/ping | grep -q OK")
