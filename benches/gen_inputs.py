#!/usr/bin/env python3
"""Generate the inputs of benches/render-bench.sh from one model of a stack:

* a nixarr-units spec (JSON) with N services, and
* the equivalent Podman Quadlet files (one .container per service plus one
  .network), for the peer measurement.

The mix is meant to look like a large real deployment: ~40 % catalog apps
(`"app": "sonarr"` …, several instances of each, every instance on its own
host ports), ~60 % generic containers with image, ports, volumes, environment,
environment files, labels, a health command and dependsOn chains.

Catalog presets are expanded here (from modules/catalog/*.json) so that the
Quadlet side gets the same image, ports, volumes, environment, capabilities,
devices and health settings that nixarr-units derives from the preset.

Deterministic: the same arguments always give the same files.
"""

import argparse
import json
import os
import random
import sys

PREFIX = "nixarr"
NETWORK = "nixarr"
STATE_DIR = "/var/lib/nixarr"
DATA_DIR = "/data"
DEFAULTS = {"puid": 568, "pgid": 169, "tz": "Europe/Berlin", "umask": "002"}
SELF_EXE = "/usr/bin/nixarr-units"

# One "media group" of catalog services and its dependency wiring; the group
# is repeated with a numeric suffix (sonarr-7 depends on prowlarr-7 …).
GROUP = [
    ("prowlarr", []),
    ("sonarr", ["prowlarr"]),
    ("radarr", ["prowlarr"]),
    ("lidarr", ["prowlarr"]),
    ("bazarr", ["sonarr", "radarr"]),
    ("jellyfin", []),
    ("seerr", ["jellyfin", "sonarr", "radarr"]),
    ("sabnzbd", []),
    ("qbittorrent", []),
    ("transmission", []),
]
CATALOG_SHARE = 0.4
CHAIN = 10  # generic services form dependsOn chains of this length


def load_catalog(path):
    cat = {}
    for f in sorted(os.listdir(path)):
        if f.endswith(".json"):
            with open(os.path.join(path, f)) as fh:
                cat[f[: -len(".json")]] = json.load(fh)
    return cat


class Ports:
    """Hands out host ports so that no two services share one."""

    def __init__(self, start=20000):
        self.next = start

    def take(self):
        p = self.next
        self.next += 1
        return p


def catalog_service(name, app, preset, deps, ports):
    """Spec entry and resolved model of one catalog instance."""
    port_specs = []
    by_container = {}
    for p in preset["ports"]:
        key = p["container"]
        if key not in by_container:  # tcp and udp of one port share a host port
            by_container[key] = ports.take()
        ps = {"host": by_container[key], "container": p["container"]}
        if p.get("protocol", "tcp") != "tcp":
            ps["protocol"] = p["protocol"]
        if "address" in p:
            ps["address"] = p["address"]
        port_specs.append(ps)
    spec = {"app": app, "ports": port_specs}
    if deps:
        spec["dependsOn"] = deps
    env = {}
    uid = preset.get("uid", DEFAULTS["puid"])
    gid = preset.get("gid", DEFAULTS["pgid"])
    if preset.get("linuxserver"):
        env.update({"PUID": str(uid), "PGID": str(gid), "UMASK": DEFAULTS["umask"]})
    env["TZ"] = DEFAULTS["tz"]
    env.update(preset.get("environment", {}))
    volumes = [{"host": f"{STATE_DIR}/{name}", "container": preset["configDir"], "create": True}]
    if preset.get("mountsData"):
        volumes.append({"host": DATA_DIR, "container": DATA_DIR})
    h = preset["health"]
    model = {
        "name": name,
        "description": preset["description"],
        "documentation": [preset["homepage"], preset["documentation"]],
        "image": preset["image"],
        "ports": port_specs,
        "volumes": volumes,
        "environment": env,
        "environmentFiles": [],
        "labels": {},
        "dependsOn": sorted(deps),
        "capAdd": preset.get("capAdd", []),
        "devices": preset.get("devices", []),
        "init": preset.get("init", False),
        "uid": uid,
        "gid": gid,
        "health": {
            "cmd": h["cmd"],
            "interval": h.get("interval", "30s"),
            "timeout": h.get("timeout", "5s"),
            "retries": h.get("retries", 3),
            "startPeriod": h.get("startPeriod", "0s"),
        },
        "restart": "on-failure",
        "stopTimeout": 60,
    }
    return spec, model


def generic_service(i, name, deps, ports, rnd):
    """Spec entry and model of one generic container."""
    web = rnd.choice([80, 3000, 5000, 8000, 8080, 9000])
    port_specs = [{"host": ports.take(), "container": web}]
    if i % 3 == 0:
        port_specs[0]["address"] = "127.0.0.1"
    if i % 5 == 0:
        port_specs.append({"host": ports.take(), "container": 9100, "protocol": "udp"})
    volumes = [
        {"host": f"/srv/{name}/data", "container": "/data", "create": True},
        {"host": f"/srv/{name}/config", "container": "/etc/app", "readOnly": True},
    ]
    if i % 4 == 0:
        volumes.append({"host": "/srv/shared/media", "container": "/media", "readOnly": True})
    env = {
        "APP_NAME": name,
        "APP_ENV": "production",
        "LOG_LEVEL": rnd.choice(["debug", "info", "warn"]),
        "LISTEN_PORT": str(web),
        "DATABASE_URL": f"postgres://{name}@db.internal:5432/{name.replace('-', '_')}",
        "GREETING": f"Hello from {name}",
    }
    for k in range(rnd.randint(0, 4)):
        env[f"FEATURE_FLAG_{k}"] = rnd.choice(["true", "false"])
    labels = {
        "org.example.team": f"team-{i % 17}",
        "org.example.tier": rnd.choice(["frontend", "backend", "batch"]),
        "org.example.cost-center": f"cc-{1000 + i % 23}",
    }
    env_files = [f"/run/secrets/rendered/{name}.env"] if i % 2 == 0 else []
    health = {
        "cmd": f"wget -qO /dev/null http://127.0.0.1:{web}/healthz",
        "interval": "15s",
        "timeout": "3s",
        "retries": 5,
        "startPeriod": "20s",
    }
    image = f"registry.example.org/apps/{name}:1.{i % 40}.{i % 7}"
    description = f"Generic service {name}"
    spec = {
        "image": image,
        "description": description,
        "ports": port_specs,
        "volumes": volumes,
        "environment": env,
        "labels": labels,
        "health": health,
        "restart": "always" if i % 2 else "on-failure",
        "stopTimeout": 30,
    }
    if env_files:
        spec["environmentFiles"] = env_files
    if deps:
        spec["dependsOn"] = deps
    model = dict(spec)
    model.update(
        {
            "name": name,
            "documentation": [],
            "environmentFiles": env_files,
            "dependsOn": sorted(deps),
            "capAdd": [],
            "devices": [],
            "init": False,
            "uid": DEFAULTS["puid"],
            "gid": DEFAULTS["pgid"],
        }
    )
    return spec, model


def build(n):
    cat_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "modules", "catalog")
    cat = load_catalog(cat_dir)
    rnd = random.Random(1000)
    ports = Ports()
    services, models = {}, []
    n_catalog = int(n * CATALOG_SHARE) // len(GROUP) * len(GROUP)
    for g in range(n_catalog // len(GROUP)):
        for app, deps in GROUP:
            name = f"{app}-{g}"
            spec, model = catalog_service(name, app, cat[app], [f"{d}-{g}" for d in deps], ports)
            services[name] = spec
            models.append(model)
    for i in range(n - n_catalog):
        name = f"app-{i:04d}"
        deps = []
        if i % CHAIN:
            deps.append(f"app-{i - 1:04d}")  # a chain: app-0001 after app-0000 …
        if i % CHAIN == 0 and n_catalog:
            deps.append(f"prowlarr-{(i // CHAIN) % (n_catalog // len(GROUP))}")
        spec, model = generic_service(i, name, deps, ports, rnd)
        services[name] = spec
        models.append(model)
    spec = {
        "version": 1,
        "backend": "podman",
        "prefix": PREFIX,
        "engine": {"path": "/usr/bin/podman", "version": "5.4.2"},
        "network": {"name": NETWORK},
        "defaults": DEFAULTS,
        "paths": {"stateDir": STATE_DIR, "dataDir": DATA_DIR},
        "services": services,
    }
    return spec, models


def q(word):
    """Quote one word for a Quadlet/systemd list value (Environment=, Label=)."""
    if word and not any(c in word for c in ' \t"\'\\'):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def publish(p):
    addr = f"{p['address']}:" if "address" in p else ""
    return f"{addr}{p['host']}:{p['container']}/{p.get('protocol', 'tcp')}"


def quadlet_container(m):
    unit = lambda s: f"{PREFIX}-{s}.service"  # noqa: E731
    lines = ["[Unit]", f"Description={m['description']}"]
    lines += [f"Documentation={d}" for d in m["documentation"]]
    if m["dependsOn"]:
        deps = " ".join(unit(d) for d in m["dependsOn"])
        lines += [f"After={deps}", f"Requires={deps}"]
    lines += [f"PartOf={PREFIX}.target", "StartLimitIntervalSec=300", "StartLimitBurst=5", ""]
    lines += [
        "[Container]",
        f"ContainerName={PREFIX}-{m['name']}",
        f"Image={m['image']}",
        f"Network={NETWORK}.network",
        f"NetworkAlias={m['name']}",
    ]
    if m["init"]:
        lines.append("RunInit=true")
    lines += [f"AddCapability={c}" for c in m["capAdd"]]
    lines += [f"AddDevice={d}" for d in m["devices"]]
    lines += [f"PublishPort={publish(p)}" for p in m["ports"]]
    for v in m["volumes"]:
        ro = ":ro" if v.get("readOnly") else ""
        lines.append(f"Volume={q(v['host'] + ':' + v['container'] + ro)}")
    lines += [f"Environment={q(k + '=' + v)}" for k, v in sorted(m["environment"].items())]
    lines += [f"EnvironmentFile={f}" for f in m["environmentFiles"]]
    labels = dict(m["labels"])
    labels["io.nixarr.managed"] = "true"
    labels["io.nixarr.service"] = m["name"]
    lines += [f"Label={q(k + '=' + v)}" for k, v in sorted(labels.items())]
    h = m["health"]
    lines += [
        f"HealthCmd={h['cmd']}",
        f"HealthInterval={h['interval']}",
        f"HealthRetries={h['retries']}",
        f"HealthStartPeriod={h['startPeriod']}",
        f"HealthTimeout={h['timeout']}",
        "HealthOnFailure=kill",
        "Notify=healthy",
        f"StopTimeout={m['stopTimeout']}",
        "",
        "[Service]",
    ]
    create = [v["host"] for v in m["volumes"] if v.get("create")]
    if create:
        args = " ".join(q(c) for c in create)
        lines.append(f"ExecStartPre={SELF_EXE} ensure-dir --owner={m['uid']}:{m['gid']} --mode=0750 {args}")
    lines += [
        f"Restart={m['restart']}",
        "RestartSec=5s",
        "TimeoutStartSec=900",
        f"TimeoutStopSec={m['stopTimeout'] + 30}",
        "",
        "[Install]",
        f"WantedBy={PREFIX}.target",
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--spec", required=True, help="where to write the nixarr-units spec")
    ap.add_argument("--quadlet-dir", required=True, help="directory for the Quadlet files")
    args = ap.parse_args()

    spec, models = build(args.services)
    with open(args.spec, "w") as fh:
        json.dump(spec, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.makedirs(args.quadlet_dir, exist_ok=True)
    with open(os.path.join(args.quadlet_dir, f"{NETWORK}.network"), "w") as fh:
        fh.write(f"[Unit]\nDescription=Network {NETWORK}\n\n[Network]\nNetworkName={NETWORK}\n\n"
                 f"[Install]\nWantedBy={PREFIX}.target\n")
    for m in models:
        with open(os.path.join(args.quadlet_dir, f"{PREFIX}-{m['name']}.container"), "w") as fh:
            fh.write(quadlet_container(m))
    n_cat = sum(1 for s in spec["services"].values() if "app" in s)
    print(f"generated {len(models)} services ({n_cat} catalog, {len(models) - n_cat} generic)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
