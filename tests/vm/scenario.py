# The NixOS VM test's scenario (nix/vm-test.nix reads this file as its
# testScript). It uses only the test driver's machine API -- start,
# wait_for_unit, wait_for_open_port, succeed, fail, wait_until_succeeds,
# execute -- so that a stand-in driver (an nspawn container instead of a VM)
# can run the very same file. The driver provides `machine`.
#
# The stack (see nix/vm-test.nix): sonarr (8989), radarr (7878, depends on
# sonarr) and a second Sonarr instance sonarr-4k (8990), all from a tiny
# busybox image that answers /ping like the real apps.

PREFIX = "nixarr"
SERVICES = {"sonarr": 8989, "sonarr-4k": 8990, "radarr": 7878}


def unit(svc):
    return f"{PREFIX}-{svc}.service"


machine.start()
machine.wait_for_unit("multi-user.target")

# Started at boot through <prefix>.target, each one healthy: with
# --sdnotify=healthy (podman 5) the unit is active only once the probe passes.
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

# The manifest the status tools read, installed by the module.
manifest = machine.succeed("cat /etc/nixarr-units/manifest.json")
for svc in SERVICES:
    assert f'"{unit(svc)}"' in manifest, f"{svc} missing from the manifest"

# Config directories exist with the container's owner (568:169 by default).
machine.succeed("test \"$(stat -c %u:%g /var/lib/nixarr/sonarr)\" = 568:169")
machine.succeed("test \"$(stat -c %a /data)\" = 2775")

# Ordering: radarr waits for sonarr, so stopping sonarr stops radarr.
machine.succeed(f"systemctl stop {unit('sonarr')}")
machine.fail(f"systemctl is-active {unit('radarr')}")
machine.fail(f"systemctl is-failed {unit('sonarr')}")
machine.fail(f"curl -fsS http://127.0.0.1:{SERVICES['sonarr']}/ping")

# A clean stop of the whole stack ends inactive, never failed; start brings
# every container back.
machine.succeed(f"systemctl stop {PREFIX}.target")
for svc in SERVICES:
    machine.fail(f"systemctl is-active {unit(svc)}")
    machine.fail(f"systemctl is-failed {unit(svc)}")
status, out = machine.execute(f"podman ps --format '{{{{.Names}}}}'")
assert status == 0 and out.strip() == "", f"containers left running: {out}"

machine.succeed(f"systemctl start {PREFIX}.target")
for svc, port in SERVICES.items():
    machine.wait_for_unit(unit(svc))
    machine.wait_until_succeeds(f"curl -fsS http://127.0.0.1:{port}/ping | grep -q OK")

# A container killed behind systemd's back is restarted (Restart=on-failure).
machine.succeed(f"podman kill {PREFIX}-radarr")
machine.wait_until_succeeds(f"systemctl is-active {unit('radarr')}")
machine.wait_until_succeeds(f"curl -fsS http://127.0.0.1:{SERVICES['radarr']}/ping | grep -q OK")
