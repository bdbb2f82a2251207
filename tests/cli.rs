//! The command line as a user meets it: bad input gets one clear error with
//! the JSON path, exit status 2 and nothing written; render and the
//! generator write the same bytes.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn bin() -> Command {
    Command::cargo_bin("nixarr-units").unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Render `spec` and expect exit 2, an error containing every `needle`,
/// and no output directory.
fn rejects(spec: &str, needles: &[&str]) {
    let t = tempfile::tempdir().unwrap();
    let file = write(t.path(), "spec.json", spec);
    let out = t.path().join("out");
    let assert = render_cmd(&file, &out).assert().code(2).stdout("");
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    for n in needles {
        assert!(stderr.contains(n), "expected {n:?} in:\n{stderr}");
    }
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one error line expected:\n{stderr}"
    );
    assert!(!out.exists(), "nothing may be written on error");
    // No staging directory left behind either.
    let leftovers: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "spec.json")
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    // validate agrees.
    bin()
        .args(["validate", "--spec"])
        .arg(&file)
        .assert()
        .code(2);
}

#[test]
fn malformed_json_gives_line_and_column() {
    rejects(
        "{\n  \"version\": 1,\n  \"services\": {,}\n}",
        &["spec.json: invalid JSON at line 3, column 16"],
    );
}

#[test]
fn unknown_key_suggests_the_nearest() {
    rejects(
        r#"{"version":1,"services":{"sonarr":{"app":"sonarr","dependOn":[]}}}"#,
        &["services.sonarr.dependOn: unknown key; did you mean `dependsOn`?"],
    );
    rejects(
        r#"{"version":1,"backend":"podman","servics":{}}"#,
        &["servics: unknown key; did you mean `services`?"],
    );
}

#[test]
fn unknown_app_lists_the_catalog() {
    rejects(
        r#"{"version":1,"services":{"tv":{"app":"sonar"}}}"#,
        &[
            "services.tv.app: unknown app `sonar`; did you mean `sonarr`?",
            "known apps:",
        ],
    );
}

#[test]
fn bad_service_name() {
    rejects(
        r#"{"version":1,"services":{"Sonarr":{"app":"sonarr"}}}"#,
        &["services.Sonarr: `Sonarr` is not a valid service name"],
    );
    rejects(
        r#"{"version":1,"services":{"network":{"image":"x"}}}"#,
        &["services.network: `network` is reserved"],
    );
}

#[test]
fn host_port_used_twice_names_both_services() {
    rejects(
        r#"{"version":1,"services":{
            "qbittorrent":{"app":"qbittorrent"},
            "sabnzbd":{"app":"sabnzbd","ports":[{"host":8080,"container":8080}]}}}"#,
        &[
            "services.sabnzbd.ports[0].host: host port 8080/tcp is also used by services.qbittorrent.ports[0]",
        ],
    );
}

#[test]
fn dependency_cycle_is_named() {
    rejects(
        r#"{"version":1,"services":{
            "sonarr":{"app":"sonarr","dependsOn":["prowlarr"]},
            "prowlarr":{"app":"prowlarr","dependsOn":["bazarr"]},
            "bazarr":{"app":"bazarr","dependsOn":["sonarr"]}}}"#,
        &["dependency cycle bazarr -> sonarr -> prowlarr -> bazarr"],
    );
}

#[test]
fn missing_dependency() {
    rejects(
        r#"{"version":1,"services":{"sonarr":{"app":"sonarr","dependsOn":["prowlar"]},
            "prowlarr":{"app":"prowlarr"}}}"#,
        &[
            "services.sonarr.dependsOn[0]: depends on `prowlar`",
            "Did you mean `prowlarr`?",
        ],
    );
}

#[test]
fn relative_host_path() {
    rejects(
        r#"{"version":1,"services":{"web":{"image":"nginx",
            "volumes":[{"host":"data/web","container":"/usr/share/nginx/html"}]}}}"#,
        &["services.web.volumes[0].host: `data/web` is a relative path; use an absolute path"],
    );
}

#[test]
fn unsupported_spec_version() {
    rejects(
        r#"{"version":7,"services":{}}"#,
        &["version: unsupported spec version 7"],
    );
    rejects(r#"{"services":{}}"#, &["version: missing"]);
}

#[test]
fn port_out_of_range() {
    rejects(
        r#"{"version":1,"services":{"web":{"image":"nginx","ports":[{"host":70000,"container":80}]}}}"#,
        &["services.web.ports[0].host: port 70000 is out of range 1-65535"],
    );
}

#[test]
fn newline_in_a_value_is_refused_with_its_path() {
    rejects(
        r#"{"version":1,"services":{"web":{"image":"nginx",
            "environment":{"GREETING":"hi\nExecStartPre=/bin/evil"}}}}"#,
        &["services.web.environment.GREETING: contains a newline"],
    );
    rejects(
        r#"{"version":1,"services":{"web":{"image":"nginx","cmd":["a\u0000b"]}}}"#,
        &["services.web.cmd[0]: contains a NUL byte"],
    );
}

#[test]
fn wrong_type_names_the_field() {
    rejects(
        r#"{"version":1,"services":{"web":{"image":"nginx","ports":[{"container":"80"}]}}}"#,
        &["services.web.ports[0].container: invalid type: string \"80\", expected u64"],
    );
    rejects(
        r#"{"version":1,"backend":"lxc","services":{}}"#,
        &["backend: unknown value `lxc`"],
    );
}

#[test]
fn vpn_service_without_vpn_container() {
    rejects(
        r#"{"version":1,"services":{"qbittorrent":{"app":"qbittorrent","vpn":true}}}"#,
        &["services.qbittorrent.vpn: is true but the stack has no VPN service `gluetun`"],
    );
}

#[test]
fn missing_spec_file_is_a_clear_error() {
    bin()
        .args([
            "render",
            "--spec",
            "/nonexistent/spec.json",
            "--out",
            "/tmp/x",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read the spec"));
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stack.json")
}

/// Render `spec` into `dir/out` with the binary's path fixed to
/// /x/nixarr-units (so unit lines can be compared) and return that directory.
fn render_with_self_exe(spec: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("out");
    bin()
        .args(["render", "--self-exe", "/x/nixarr-units", "--spec"])
        .arg(spec)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    out
}

/// The text of the rendered unit of service `svc` (prefix nixarr).
fn unit_text(out: &Path, svc: &str) -> String {
    std::fs::read_to_string(out.join(format!("lib/systemd/system/nixarr-{svc}.service"))).unwrap()
}

/// Every one of `lines` is a whole line of `text` (a unit file).
fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            text.lines().any(|l| l == *line),
            "{line:?} missing in:\n{text}"
        );
    }
}

/// `nixarr-units render --spec SPEC --out OUT`, to run.
fn render_cmd(spec: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.args(["render", "--spec"]).arg(spec).arg("--out").arg(out);
    c
}

/// Render the bundled example into `dir/out` and return that directory.
fn render_example(dir: &Path) -> PathBuf {
    let out = dir.join("out");
    render_cmd(&example(), &out).assert().success();
    out
}

fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.file_type().is_symlink() {
                out.push((
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                ));
            } else if meta.is_dir() {
                walk(base, &p, out);
            } else {
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// `devices` in its three spellings renders the same `--device=` argument
/// on podman and Docker: host and container paths, permissions when given.
#[test]
fn devices_render_as_device_arguments_on_both_engines() {
    for backend in ["podman", "docker"] {
        let t = tempfile::tempdir().unwrap();
        let spec = write(
            t.path(),
            "spec.json",
            &format!(
                r#"{{"version":1,"backend":"{backend}","services":{{"media":{{
                    "image":"docker.io/library/nginx:1.27",
                    "devices":["/dev/dri/renderD128",
                               "/dev/ttyUSB0:/dev/zigbee:rw",
                               {{"host":"/dev/snd","permissions":"mrw"}},
                               {{"host":"/dev/fuse","container":"/dev/fuse"}}]}}}}}}"#
            ),
        );
        let out = render_with_self_exe(&spec, t.path());
        let unit = unit_text(&out, "media");
        let exec = unit
            .lines()
            .find(|l| l.starts_with("ExecStart=") && l.contains(" run "))
            .unwrap();
        let devices: Vec<&str> = exec
            .split(' ')
            .filter(|a| a.starts_with("--device="))
            .collect();
        assert_eq!(
            devices,
            [
                "--device=/dev/dri/renderD128:/dev/dri/renderD128",
                "--device=/dev/ttyUSB0:/dev/zigbee:rw",
                "--device=/dev/snd:/dev/snd:rwm",
                "--device=/dev/fuse:/dev/fuse",
            ],
            "{backend}: {exec}"
        );
    }
}

#[test]
fn bad_devices_are_named() {
    let spec = |devices: &str| {
        format!(
            r#"{{"version":1,"services":{{"media":{{"image":"docker.io/library/nginx:1.27",
                "devices":[{devices}]}}}}}}"#
        )
    };
    rejects(
        &spec(r#""/dev/dri:/dev/dri:rwx""#),
        &["services.media.devices[0].permissions: `rwx` is not a set of device permissions"],
    );
    rejects(
        &spec(r#"{"host":"/dev/snd","permissions":"rr"}"#),
        &["services.media.devices[0].permissions: `rr` is not"],
    );
    rejects(
        &spec(r#""/dev/null", {"host":"/dev/../etc/shadow"}"#),
        &["services.media.devices[1].host: `/dev/../etc/shadow` contains `..`"],
    );
    rejects(
        &spec(r#""dev/dri""#),
        &["services.media.devices[0].host: `dev/dri` is a relative path"],
    );
    rejects(
        &spec(r#"{"host":"/dev/dri","container":"renderD128"}"#),
        &["services.media.devices[0].container: `renderD128` is a relative path"],
    );
    rejects(
        &spec(r#"{"host":"/dev/dri","perms":"rw"}"#),
        &["services.media.devices[0].perms: unknown key; did you mean `permissions`?"],
    );
}

#[test]
fn render_writes_units_and_manifest_and_replaces_an_earlier_render() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    for _ in 0..2 {
        bin()
            .args(["render", "--self-exe", "/usr/bin/nixarr-units", "--spec"])
            .arg(example())
            .arg("--out")
            .arg(&out)
            .assert()
            .success()
            .stdout(predicate::str::contains("rendered 12 services (podman)"));
    }
    let files = tree(&out);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"lib/systemd/system/nixarr-sonarr.service"));
    assert!(names.contains(&"lib/systemd/system/nixarr.target"));
    assert!(names.contains(&"lib/systemd/system/multi-user.target.wants/nixarr.target"));
    assert!(names.contains(&"share/nixarr-units/manifest.json"));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("share/nixarr-units/manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["stacks"][0]["services"]["sonarr"]["migration"]["legacyDataDir"],
        "/var/lib/sonarr/.config/NzbDrone"
    );
    // Nothing but the output directory in its parent.
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
}

#[test]
fn render_refuses_a_foreign_non_empty_directory() {
    let t = tempfile::tempdir().unwrap();
    write(t.path(), "precious.txt", "keep me");
    render_cmd(&example(), t.path())
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "is not empty and holds no earlier render",
        ));
    assert_eq!(
        std::fs::read_to_string(t.path().join("precious.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn validate_summarises() {
    bin()
        .args(["validate", "--spec"])
        .arg(example())
        .assert()
        .success()
        .stdout(predicate::str::contains("valid; 12 services on podman"));
}

/// `--json` is a global flag: before or after the subcommand, the same
/// result as a JSON document instead of a line of text.
#[test]
fn validate_json_anywhere_on_the_line() {
    for args in [
        vec!["--json", "validate", "--spec"],
        vec!["validate", "--json", "--spec"],
    ] {
        let out = bin().args(&args).arg(example()).assert().success();
        let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON: {e}"));
        assert_eq!(v["backend"], "podman", "{v}");
        assert_eq!(v["services"].as_array().map(Vec::len), Some(12), "{v}");
        assert!(v["unitFiles"].as_u64().is_some_and(|n| n > 12), "{v}");
    }
}

/// The units' health gate names only its stack and service: the check (here
/// a TCP probe, no health command) comes from the manifest. It passes once
/// the port answers; a service the manifest does not have is a usage error.
#[test]
fn wait_healthy_reads_its_check_from_the_manifest() {
    let t = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let spec = write(
        t.path(),
        "web.json",
        &format!(
            r#"{{"version":1,"prefix":"web","backend":"docker","engine":{{"path":"/bin/false"}},
            "services":{{"site":{{"image":"docker.io/library/nginx:1.27",
            "ports":[{{"host":{port},"container":80,"address":"127.0.0.1"}}],
            "health":{{"tcp":true,"port":80}}}}}}}}"#
        ),
    );
    let out = render_with_self_exe(&spec, t.path());
    let unit = std::fs::read_to_string(out.join("lib/systemd/system/web-site.service")).unwrap();
    assert!(
        unit.contains("ExecStartPost=/x/nixarr-units wait-healthy --stack=web --timeout="),
        "{unit}"
    );
    let manifest = out.join("share/nixarr-units/manifest.json");
    bin()
        .args([
            "wait-healthy",
            "--stack=web",
            "--timeout=10",
            "site",
            "--manifest",
        ])
        .arg(&manifest)
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .success();
    bin()
        .args([
            "wait-healthy",
            "--stack=web",
            "--timeout=10",
            "sight",
            "--manifest",
        ])
        .arg(&manifest)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no service `sight`"));
    drop(listener);
}

/// A bad `--owner` for the units' ensure-dir step is a usage error
/// (exit status 2) that says the form.
#[test]
fn ensure_dir_bad_owner_is_a_usage_error() {
    bin()
        .args(["ensure-dir", "--owner", "me", "/nonexistent/x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--owner me: write it as UID:GID"));
}

/// systemd.generator(7): nothing on stdout, one broken spec does not stop
/// the others, non-zero exit when anything failed — and the units are
/// byte-identical to what `render` writes for the same spec.
#[test]
fn generator_renders_every_good_spec_and_reports_the_bad_one() {
    let t = tempfile::tempdir().unwrap();
    let specs = t.path().join("etc");
    std::fs::create_dir(&specs).unwrap();
    std::fs::copy(example(), specs.join("media.json")).unwrap();
    write(
        &specs,
        "web.json",
        r#"{"version":1,"prefix":"web","engine":{"version":"5.0"},
            "services":{"nginx":{"image":"docker.io/library/nginx:1.27",
            "ports":[{"host":8088,"container":80}]}}}"#,
    );
    write(
        &specs,
        "broken.json",
        r#"{"version":1,"services":{"x":{"app":"nope"}}}"#,
    );
    write(&specs, "manifest.json", r#"{"not":"a spec"}"#);
    write(&specs, "notes.txt", "ignored");
    let normal = t.path().join("normal");
    std::fs::create_dir(&normal).unwrap();
    let manifest = t.path().join("run/manifest.json");

    // Called the way systemd calls it: through a symlink, three directories.
    let link = t.path().join("nixarr-units-generator");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nixarr-units"), &link).unwrap();
    let assert = Command::new(&link)
        .arg(&normal)
        .arg(t.path().join("early"))
        .arg(t.path().join("late"))
        .env("NIXARR_UNITS_SPEC_DIR", &specs)
        .env("NIXARR_UNITS_MANIFEST", &manifest)
        .assert()
        .code(1)
        .stdout("");
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains("broken.json: services.x.app: unknown app"),
        "{stderr}"
    );

    let generated = tree(&normal);
    let names: Vec<&str> = generated.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"nixarr-sonarr.service"), "{names:?}");
    assert!(names.contains(&"web-nginx.service"), "{names:?}");
    assert!(
        names.contains(&"multi-user.target.wants/web.target"),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.contains("-x.")), "{names:?}");

    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(m["stacks"].as_array().unwrap().len(), 2);

    // Byte-identical to render for the same spec and the same binary.
    let out = t.path().join("out");
    bin()
        .args([
            "render",
            "--self-exe",
            env!("CARGO_BIN_EXE_nixarr-units"),
            "--spec",
        ])
        .arg(example())
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    // … but for SourcePath=, which only the generator knows: systemd then
    // says when the spec changed since the last daemon-reload.
    let source = format!(
        "[Unit]\nSourcePath={}\n",
        specs.join("media.json").display()
    );
    for (name, text) in tree(&out.join("lib/systemd/system")) {
        if name.contains(".wants/") {
            continue;
        }
        let generated_text = generated
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("{name} not generated"));
        assert!(generated_text.contains(&source), "{name}: no {source:?}");
        assert_eq!(
            generated_text.replacen(&source, "[Unit]\n", 1),
            text,
            "{name} differs"
        );
    }
}

#[test]
fn generator_with_no_specs_writes_an_empty_manifest() {
    let t = tempfile::tempdir().unwrap();
    let manifest = t.path().join("manifest.json");
    bin()
        .arg("generator")
        .arg(t.path().join("normal"))
        .env("NIXARR_UNITS_SPEC_DIR", t.path().join("missing"))
        .env("NIXARR_UNITS_MANIFEST", &manifest)
        .assert()
        .success()
        .stdout("");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    assert_eq!(m["stacks"], serde_json::json!([]));
}

#[test]
fn secret_mistakes_are_named() {
    rejects(
        r#"{"version":1,"backend":"docker","services":{"web":{"image":"nginx",
            "secrets":{"TOKEN":{"file":"/run/secrets/t","mode":"podmanSecret"}}}}}"#,
        &["services.web.secrets.TOKEN.mode: `podmanSecret` needs the podman backend"],
    );
    rejects(
        r#"{"version":1,"services":{"web":{"image":"nginx",
            "secrets":{"TOKEN":{"file":"run/secrets/t"}}}}}"#,
        &["services.web.secrets.TOKEN.file: `run/secrets/t` is a relative path"],
    );
    rejects(
        r#"{"version":1,"services":{"sonarr":{"app":"sonarr","environment":{"API":"x"},
            "secrets":{"API":{"file":"/run/secrets/a"}}}}}"#,
        &["services.sonarr.secrets.API: `API` is also set in `environment`"],
    );
    rejects(
        r#"{"version":1,"services":{"sonarr":{"app":"sonarr","secrets":{
            "A":{"file":"/run/secrets/a"},
            "B":{"file":"/run/secrets/b","mode":"podmanSecret","podmanSecretType":"mount"}}}}}"#,
        &["services.sonarr.secrets.B: a mounted podman secret and `file` secrets"],
    );
}

#[test]
fn secrets_never_reach_a_rendered_file() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "spec.json",
        r#"{"version":1,"services":{"sonarr":{"app":"sonarr",
            "secrets":{"SONARR__AUTH__APIKEY":{"file":"/run/secrets/sonarr-api-key"}}}}}"#,
    );
    let out = t.path().join("out");
    render_cmd(&spec, &out).assert().success();
    let files = tree(&out);
    let unit = &files
        .iter()
        .find(|(n, _)| n.ends_with("nixarr-sonarr.service"))
        .unwrap()
        .1;
    assert!(unit.contains("Requires=nixarr-network.service nixarr-sonarr-secrets.service"));
    assert!(unit.contains("--env=FILE__SONARR__AUTH__APIKEY=/run/secrets/SONARR__AUTH__APIKEY"));
    assert!(unit.contains("--volume=/run/nixarr-units/secrets/nixarr-sonarr:/run/secrets:ro"));
    let bridge = &files
        .iter()
        .find(|(n, _)| n.ends_with("nixarr-sonarr-secrets.service"))
        .unwrap()
        .1;
    assert!(bridge.contains("secrets install --stack=nixarr sonarr"));
}

#[test]
fn podman_env_secrets_need_podman_5_3() {
    let spec = |version: &str, kind: &str| {
        format!(
            r#"{{"version":1,"engine":{{"version":"{version}"}},"services":{{"web":{{"image":"nginx",
                "secrets":{{"TOKEN":{{"file":"/run/secrets/t","mode":"podmanSecret"{kind}}}}}}}}}}}"#
        )
    };
    rejects(
        &spec("4.3.1", r#","podmanSecretType":"env""#),
        &[
            "services.web.secrets.TOKEN.podmanSecretType: podman 4.3 shows the values of type=env secrets",
        ],
    );
    let t = tempfile::tempdir().unwrap();
    for (version, kind, expect) in [
        (
            "5.4.2",
            r#","podmanSecretType":"env""#,
            "type=env,target=TOKEN",
        ),
        ("4.3.1", "", "type=mount,target=TOKEN"),
    ] {
        let file = write(t.path(), "spec.json", &spec(version, kind));
        let out = t.path().join(format!("out-{version}"));
        render_cmd(&file, &out).assert().success();
        let unit = unit_text(&out, "web");
        assert!(unit.contains(expect), "{unit}");
    }
}

#[test]
fn nixarr_migrate_speaks_under_its_own_name() {
    let t = tempfile::tempdir().unwrap();
    let link = t.path().join("nixarr-migrate");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nixarr-units"), &link).unwrap();
    Command::new(&link)
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Usage: nixarr-migrate [OPTIONS] <COMMAND>",
        ));
    Command::new(&link)
        .args(["migrate", "--bogus"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "Usage: nixarr-migrate migrate [OPTIONS] [SERVICES]...",
        ));
    // The same subcommands stay reachable under the main name.
    bin()
        .args(["migration", "plan", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Usage: nixarr-units migration plan",
        ));
}

/// Log lines reaching a pipe or the journal are plain text: no colour
/// codes (journald would store such a line as binary data).
#[test]
fn logs_are_plain_text_off_a_terminal() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("made");
    let owner = format!("{}:{}", own_ids().0, own_ids().1);
    let assert = bin()
        .args(["ensure-dir", "--owner", &owner])
        .arg(&dir)
        .env_remove("NO_COLOR")
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(stderr.contains("INFO created"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "colour codes: {stderr:?}");
}

/// This process's uid and gid (the owner of a file it creates).
fn own_ids() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::NamedTempFile::new().unwrap();
    let m = t.as_file().metadata().unwrap();
    (m.uid(), m.gid())
}

// ---- Refuse what is dangerous (issue 13) ----

#[test]
fn a_prefix_that_would_shadow_a_systemd_unit_is_refused() {
    rejects(
        r#"{"version":1,"prefix":"multi-user","services":{"a":{"image":"x"}}}"#,
        &[
            "prefix: `multi-user` would name the unit multi-user.target, which is a special unit of systemd",
        ],
    );
    rejects(
        r#"{"version":1,"prefix":"systemd-media","services":{"a":{"image":"x"}}}"#,
        &["prefix: `systemd-media`", "`systemd-*`"],
    );
    rejects(
        r#"{"version":1,"prefix":"dbus","services":{}}"#,
        &["prefix: `dbus` would name the unit dbus.target", "`dbus*`"],
    );
}

#[test]
fn duplicate_keys_are_refused_not_silently_merged() {
    rejects(
        r#"{"version":1,"services":{
            "sonarr":{"app":"sonarr"},
            "sonarr":{"app":"radarr"}}}"#,
        &["services.sonarr: the key `sonarr` appears twice (line 3)"],
    );
    rejects(
        r#"{"version":1,"services":{"a":{"image":"x","labels":{"k":"1","k":"2"}}}}"#,
        &["services.a.labels.k: the key `k` appears twice"],
    );
}

#[test]
fn the_host_root_and_system_trees_are_never_mounted() {
    rejects(
        r#"{"version":1,"paths":{"dataDir":"/"},"services":{"sonarr":{"app":"sonarr"}}}"#,
        &["paths.dataDir: `/` is the root of the host"],
    );
    rejects(
        r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/etc","container":"/etc"}]}}}"#,
        &["services.a.volumes[0].host: `/etc` is the host's system tree /etc"],
    );
    rejects(
        r#"{"version":1,"services":{"a":{"image":"x","volumes":[{"host":"/srv/x/..","container":"/x"}]}}}"#,
        &[
            "services.a.volumes[0].host: `/srv/x/..` contains `..`; write the path without it, e.g. `/srv`",
        ],
    );
    rejects(
        r#"{"version":1,"services":{"a":{"image":"x","volumes":[
            {"host":"/srv/a","container":"/x"},{"host":"/srv/b","container":"/x/"}]}}}"#,
        &["services.a.volumes[1].container: `/x/` ends with `/`"],
    );
}

#[test]
fn an_error_blames_the_key_the_user_wrote() {
    rejects(
        r#"{"version":1,"paths":{"dataDir":"/config"},"services":{"sonarr":{"app":"sonarr"}}}"#,
        &[
            "paths.dataDir: `/config` is where the catalog app `sonarr` of service sonarr keeps its config",
        ],
    );
}

#[test]
fn invalid_image_references_are_refused() {
    for (image, why) in [
        ("Docker.io/Library/Nginx", "uppercase"),
        ("nginx@sha256:abc", "digest has the wrong length"),
        ("nginx:", "tag is empty"),
    ] {
        rejects(
            &format!(r#"{{"version":1,"services":{{"a":{{"image":"{image}"}}}}}}"#),
            &[
                &format!("services.a.image: `{image}` is not a valid image reference"),
                why,
            ],
        );
    }
}

/// Every usage error exits 2 (docs/status.md), not 1.
#[test]
fn usage_errors_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "spec.json",
        r#"{"version":1,"services":{"a":{"image":"x"}}}"#,
    );
    let spec = spec.to_str().unwrap();
    let missing = t.path().join("missing.json");
    let missing = missing.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["validate", "--spec", missing],
            "check the path given to --spec",
        ),
        (
            vec!["render", "--spec", missing, "--out", "/nonexistent/out"],
            "check the path given to --spec",
        ),
        (
            vec!["status", "--probe-timeout", "0"],
            "not a positive number of seconds",
        ),
        (
            vec!["start", "--all", "--timeout", "0"],
            "not a positive whole number of seconds",
        ),
        (
            vec!["reload", "--timeout", "0"],
            "not a positive whole number of seconds",
        ),
        (
            vec!["migration", "--timeout", "0", "status"],
            "not a positive whole number of seconds",
        ),
        (
            vec!["status", "--bus-address", "garbage"],
            "`garbage` is not a D-Bus address",
        ),
        (
            vec!["status", "--manifest", spec],
            "is a spec, not a manifest; render it first",
        ),
        (vec!["status", "--manifest", missing], "no such file"),
    ] {
        let out = bin()
            .args(&args)
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: expected {needle:?} in {stderr}"
        );
    }
}

/// In generator mode a unit the host already has (any name, not only
/// systemd's) is not generated over: that spec is refused, the others
/// still render. A mask (symlink to /dev/null) is the host's choice and
/// does not count.
#[test]
fn generator_refuses_a_unit_the_host_already_has() {
    let t = tempfile::tempdir().unwrap();
    let specs = t.path().join("etc");
    std::fs::create_dir(&specs).unwrap();
    write(
        &specs,
        "clash.json",
        r#"{"version":1,"prefix":"web","services":{"nginx":{"image":"nginx"}}}"#,
    );
    write(
        &specs,
        "fine.json",
        r#"{"version":1,"prefix":"app","services":{"a":{"image":"x"}}}"#,
    );
    write(
        &specs,
        "masked.json",
        r#"{"version":1,"prefix":"m","services":{"a":{"image":"x"}}}"#,
    );
    let sys = t.path().join("usr-lib-systemd-system");
    std::fs::create_dir(&sys).unwrap();
    write(
        &sys,
        "web-nginx.service",
        "[Service]\nExecStart=/bin/true\n",
    );
    std::os::unix::fs::symlink("/dev/null", sys.join("m-a.service")).unwrap();
    let normal = t.path().join("normal");
    let assert = bin()
        .arg("generator")
        .arg(&normal)
        .arg("--system-unit-dirs")
        .arg(format!("/nonexistent:{}", sys.display()))
        .env("NIXARR_UNITS_SPEC_DIR", &specs)
        .env("NIXARR_UNITS_MANIFEST", t.path().join("manifest.json"))
        .assert()
        .code(1)
        .stdout("");
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains("clash.json: unit web-nginx.service already exists as"),
        "{stderr}"
    );
    let names: Vec<String> = tree(&normal).into_iter().map(|(n, _)| n).collect();
    assert!(!names.iter().any(|n| n.starts_with("web")), "{names:?}");
    assert!(names.contains(&"app-a.service".to_owned()), "{names:?}");
    assert!(names.contains(&"m-a.service".to_owned()), "{names:?}");
}

/// Every nixarr-migrate subcommand checks the service name against the
/// manifest before it builds a path from it: `../escaped` never becomes
/// JOURNAL_DIR/../escaped/lock, and a typo gets the nearest name.
#[test]
fn nixarr_migrate_checks_the_service_before_building_a_path() {
    let t = tempfile::tempdir().unwrap();
    let out = render_example(t.path());
    let manifest = out.join("share/nixarr-units/manifest.json");
    let journals = t.path().join("journals");
    std::fs::create_dir(&journals).unwrap();
    let link = t.path().join("nixarr-migrate");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nixarr-units"), &link).unwrap();
    for sub in [
        vec!["finalize"],
        vec!["rollback"],
        vec!["migrate"],
        vec!["plan"],
    ] {
        for (name, needle) in [
            ("../escaped", "no such service `../escaped` in the manifest"),
            (
                "sonar",
                "no such service `sonar` in the manifest. Did you mean `sonarr`?",
            ),
        ] {
            let assert = Command::new(&link)
                .args(&sub)
                .arg(name)
                .arg("--journal-dir")
                .arg(&journals)
                .arg("--manifest")
                .arg(&manifest)
                .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
                .assert()
                .code(2);
            let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
            assert!(stderr.contains(needle), "{sub:?} {name}: {stderr}");
        }
    }
    assert!(
        !t.path().join("escaped").exists(),
        "a path was built from ../escaped"
    );
    assert_eq!(
        std::fs::read_dir(&journals).unwrap().count(),
        0,
        "nothing in the journal dir"
    );
}

// ---- No secret value in any container's environment (issue 13) ----

/// A service without a catalog app gets its secret as a mounted file and
/// only the path in its environment; no --env-file.
#[test]
fn a_generic_service_gets_its_secret_as_a_file() {
    let t = tempfile::tempdir().unwrap();
    for backend in ["podman", "docker"] {
        let file = write(
            t.path(),
            &format!("{backend}.json"),
            &format!(
                r#"{{"version":1,"backend":"{backend}","services":{{"web":{{"image":"nginx",
                "secrets":{{"TOKEN":{{"file":"/run/secrets/t"}},
                            "DB_PASSWORD":{{"file":"/run/secrets/db","fileEnv":"DB_PASSWORD_FILE"}}}}}}}}}}"#
            ),
        );
        let out = t.path().join(format!("out-{backend}"));
        let assert = render_cmd(&file, &out).assert().success();
        let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
        assert!(!stderr.contains("warning"), "{stderr}");
        let unit = unit_text(&out, "web");
        assert!(
            unit.contains("--env=FILE__TOKEN=/run/secrets/TOKEN"),
            "{unit}"
        );
        assert!(
            unit.contains("--env=DB_PASSWORD_FILE=/run/secrets/DB_PASSWORD"),
            "{unit}"
        );
        assert!(
            unit.contains("--volume=/run/nixarr-units/secrets/nixarr-web:/run/secrets:ro"),
            "{unit}"
        );
        assert!(!unit.contains("--env-file"), "{unit}");
    }
}

/// An environment value on an engine that shows it in inspect: refused
/// without the acknowledgement, and with it `render` warns naming the
/// service and the secret.
#[test]
fn an_exposed_environment_value_needs_an_acknowledgement_and_warns() {
    rejects(
        r#"{"version":1,"backend":"docker","services":{"web":{"image":"nginx",
            "secrets":{"TOKEN":{"file":"/run/secrets/t","mode":"env"}}}}}"#,
        &[
            "services.web.secrets.TOKEN.mode: `env` would put the value of TOKEN in the container's environment",
            "\"allowEnvironmentValue\": true",
        ],
    );
    let t = tempfile::tempdir().unwrap();
    let file = write(
        t.path(),
        "spec.json",
        r#"{"version":1,"backend":"docker","services":{"web":{"image":"nginx",
            "secrets":{"TOKEN":{"file":"/run/secrets/t","mode":"env","allowEnvironmentValue":true}}}}}"#,
    );
    let assert = render_cmd(&file, &t.path().join("out")).assert().success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert!(
        stderr.contains("warning: ") && stderr.contains("services.web.secrets.TOKEN: the value is delivered as an environment variable, which `docker inspect` shows"),
        "{stderr}"
    );
}

/// The two files are easy to mix up: each says what it is.
#[test]
fn a_manifest_passed_as_a_spec_says_so() {
    let t = tempfile::tempdir().unwrap();
    let out = render_example(t.path());
    bin()
        .args(["validate", "--spec"])
        .arg(out.join("share/nixarr-units/manifest.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "stacks: this is a manifest (written by `render` or the generator), not a spec",
        ));
}

/// A directory holding only a fake `podman` that prints `version`.
fn fake_podman(dir: &Path, version: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let podman = bin.join("podman");
    std::fs::write(
        &podman,
        format!("#!/bin/sh\n[ \"$1\" = --version ] && echo 'podman version {version}'\n"),
    )
    .unwrap();
    std::fs::set_permissions(&podman, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// `render` of a spec that names no engine version, with `PATH`; returns
/// stderr and the sonarr unit.
fn render_with_path(path: &Path) -> (String, String) {
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "spec.json",
        r#"{"version":1,"services":{"sonarr":{"app":"sonarr"}}}"#,
    );
    let out = t.path().join("out");
    let assert = render_cmd(&spec, &out).env("PATH", path).assert().success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    let unit = unit_text(&out, "sonarr");
    (stderr, unit)
}

/// Debian 12's podman 4.3 has no --sdnotify=healthy: `render` asks the
/// installed podman, as the generator does, instead of assuming podman 5
/// (whose units die there with status 125).
#[test]
fn render_asks_the_installed_podman_for_its_version() {
    let t = tempfile::tempdir().unwrap();
    let bin_dir = fake_podman(t.path(), "4.3.1");
    let (stderr, unit) = render_with_path(&bin_dir);
    assert_eq!(stderr, "", "nothing to say when the engine answered");
    let podman = bin_dir.join("podman");
    assert!(
        unit.contains(&format!("ExecStart={} run ", podman.display())),
        "{unit}"
    );
    assert!(unit.contains("--sdnotify=conmon"), "{unit}");
    assert!(!unit.contains("--sdnotify=healthy"), "{unit}");
    assert!(unit.contains("wait-healthy"), "the health gate: {unit}");

    let bin_dir = fake_podman(&t.path().join("5"), "5.4.2");
    let (_, unit) = render_with_path(&bin_dir);
    assert!(unit.contains("--sdnotify=healthy"), "{unit}");
}

/// Rendering on one machine for another: no engine to ask, so the newest
/// supported version, and a note that says so and how to choose.
#[test]
fn render_without_an_engine_says_what_it_assumed() {
    let t = tempfile::tempdir().unwrap();
    let (stderr, unit) = render_with_path(t.path());
    assert!(stderr.contains("no podman found on PATH"), "{stderr}");
    assert!(stderr.contains("newest supported version"), "{stderr}");
    assert!(stderr.contains(r#""engine": {"version""#), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(unit.contains("ExecStart=/usr/bin/podman run "), "{unit}");
    assert!(unit.contains("--sdnotify=healthy"), "{unit}");
}

/// examples/minimal.json runs as is on a fresh host: nothing to decrypt,
/// no VPN provider account, and it pins no engine version.
#[test]
fn minimal_example_needs_no_keys() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/minimal.json");
    let text = std::fs::read_to_string(&example).unwrap();
    for word in [
        "secrets",
        "vpn",
        "gluetun",
        "\"version\": \"",
        "environmentFiles",
    ] {
        assert!(!text.contains(word), "minimal.json mentions {word}");
    }
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    render_cmd(&example, &out)
        .assert()
        .success()
        .stdout(predicate::str::contains("rendered 3 services (podman)"));
    let units: Vec<String> = tree(&out.join("lib/systemd/system"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(!units.iter().any(|n| n.contains("secrets")), "{units:?}");
}

/// A service without a catalog app gets the engines' own grace (10 s),
/// a catalog app a minute, `stopTimeout` whatever it says; systemd waits
/// 30 s beyond it. The stop goes through the helper that logs a kill.
#[test]
fn stop_grace_defaults() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "spec.json",
        r#"{"version":1,"engine":{"version":"5.4.2"},"services":{
            "web":{"image":"nginx"},
            "slow":{"image":"nginx","stopTimeout":120},
            "sonarr":{"app":"sonarr"}}}"#,
    );
    let out = render_with_self_exe(&spec, t.path());
    for (svc, grace) in [("web", 10), ("slow", 120), ("sonarr", 60)] {
        let unit = unit_text(&out, svc);
        assert!(
            unit.contains(&format!(" --stop-timeout={grace} ")),
            "{unit}"
        );
        assert!(
            unit.contains(&format!(
                "ExecStop=/x/nixarr-units stop-container --engine=/usr/bin/podman --time={grace} nixarr-{svc}\n"
            )),
            "{unit}"
        );
        assert!(
            unit.contains(&format!("\nTimeoutStopSec={}\n", grace + 30)),
            "{unit}"
        );
        assert!(unit.contains("\nSuccessExitStatus=137 143\n"), "{unit}");
        assert!(
            unit.contains(&format!(
                "\nExecStopPost=/x/nixarr-units container-stopped nixarr-{svc}\n"
            )),
            "{unit}"
        );
    }
}

/// Every host path a container mounts is mounted before it starts (a /data
/// on ZFS, NFS or a USB disk); a path the directive cannot carry plainly
/// is represented by its nearest plain ancestor, `%` escaped.
#[test]
fn units_require_the_mounts_of_their_volumes() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "spec.json",
        r#"{"version":1,"engine":{"version":"5.4.2"},
            "paths":{"dataDir":"/srv/media"},
            "defaults":{"pgid":169},
            "services":{
            "web":{"image":"nginx","volumes":[
                {"host":"/srv/www","container":"/www"},
                {"host":"/mnt/my disk/films","container":"/films","readOnly":true},
                {"host":"/mnt/100%","container":"/p"}]},
            "sonarr":{"app":"sonarr"}}}"#,
    );
    let out = render_with_self_exe(&spec, t.path());
    let unit = |svc: &str| unit_text(&out, svc);
    let web = unit("web");
    assert!(
        web.contains("\nRequiresMountsFor=/mnt /mnt/100%% /srv/www\n"),
        "{web}"
    );
    // No data tree in that service: nothing to create.
    assert!(!web.contains("--mode=2775"), "{web}");
    let sonarr = unit("sonarr");
    assert!(
        sonarr.contains("\nRequiresMountsFor=/srv/media /var/lib/nixarr/sonarr\n"),
        "{sonarr}"
    );
    // The data tree as the NixOS module's tmpfiles rule makes it, before
    // the config directory and before the container.
    let data = sonarr
        .find("ExecStartPre=/x/nixarr-units ensure-dir --owner=0:169 --mode=2775 /srv/media\n")
        .unwrap_or_else(|| panic!("{sonarr}"));
    let config = sonarr
        .find("ensure-dir --owner=568:169 --mode=0750")
        .unwrap();
    assert!(data < config && config < sonarr.find("ExecStart=").unwrap());
}

/// What `ensure-dir` makes of the data tree: root:<gid>, setgid 2775; an
/// existing directory keeps its owner and mode.
#[test]
fn ensure_dir_makes_a_setgid_data_tree_and_leaves_an_existing_one() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = tempfile::tempdir().unwrap();
    let (uid, gid) = own_ids();
    let data = t.path().join("srv/data");
    bin()
        .args(["ensure-dir", &format!("--owner={uid}:{gid}"), "--mode=2775"])
        .arg(&data)
        .assert()
        .success();
    let m = std::fs::metadata(&data).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o2775);
    assert_eq!((m.uid(), m.gid()), (uid, gid));
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    bin()
        .args(["ensure-dir", &format!("--owner={uid}:{gid}"), "--mode=2775"])
        .arg(&data)
        .assert()
        .success();
    let m = std::fs::metadata(&data).unwrap();
    assert_eq!(
        m.permissions().mode() & 0o7777,
        0o700,
        "an existing one is left alone"
    );
}

/// `backup` and `restore` refuse what they cannot do before touching
/// systemd or any data: exit 2 and what to do.
#[test]
fn backup_and_restore_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let out = render_example(t.path());
    let manifest = out.join("share/nixarr-units/manifest.json");
    let manifest = manifest.to_str().unwrap();
    let to = t.path().join("backups");
    let to = to.to_str().unwrap();
    let journals = t.path().join("journals");
    let journals = journals.to_str().unwrap();
    // A backup of another service, as `backup` would write it.
    let foreign = t.path().join("radarr-backup");
    std::fs::create_dir_all(foreign.join("data")).unwrap();
    std::fs::write(
        foreign.join("manifest.json"),
        r#"{"version":1,"service":"radarr","app":"radarr","image":"x","imageId":null,
        "imageDigest":null,"created":"2026-12-01T03:30:00Z",
        "facts":{"root":"/var/lib/nixarr/radarr","databases":[]},"method":"offline",
        "databases":[],"files":[{"path":"","kind":"directory","uid":0,"gid":0,"mode":448,"size":0}]}"#,
    )
    .unwrap();
    let foreign = foreign.to_str().unwrap();
    let j = ["--journal-dir", journals];
    for (args, needle) in [
        (vec!["backup", "--to", to], "required"),
        (
            vec!["backup", "sonarr", "--to", to, "--keep", "0"],
            "--keep",
        ),
        (
            vec!["backup", "sonar", "--to", to],
            "Did you mean `sonarr`?",
        ),
        (
            vec!["backup", "gluetun", "--to", to],
            "gluetun has nothing to back up",
        ),
        (
            vec!["backup", "--all", "--stack", "media", "--to", to],
            "has no such stack (it has: nixarr); give one of them",
        ),
        (vec!["restore", "sonarr"], "--from"),
        (
            [
                &["restore", "sonarr", "--from", "/nonexistent/backup"][..],
                &j,
            ]
            .concat(),
            "give a backup directory DIR/<service>/<timestamp>",
        ),
        (
            [&["restore", "sonarr", "--from", foreign][..], &j].concat(),
            "is a backup of radarr, not of sonarr",
        ),
        (
            [&["restore", "sonarr", "--finalize"][..], &j].concat(),
            "no restore of sonarr to finalize",
        ),
    ] {
        let out = bin()
            .args(&args)
            .args(["--manifest", manifest])
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{args:?}: expected {needle:?} in {stderr}"
        );
    }
    assert!(!Path::new(to).exists(), "a refused backup wrote {to}");
}

/// The commands that take `SERVICE…|--all` say so in the same words: one
/// shared argument group, not a copy per command.
#[test]
fn commands_taking_services_share_their_help() {
    let services_lines = |cmd: &str| -> Vec<String> {
        // -h: the one-line form, whatever length the command's own help has.
        let out = bin().args([cmd, "-h"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{cmd} -h");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.contains("[SERVICES]...  ") || l.trim_start().starts_with("--all "))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    let pull = services_lines("pull");
    assert_eq!(pull.len(), 2, "{pull:?}");
    for cmd in ["update", "backup"] {
        assert_eq!(services_lines(cmd), pull, "{cmd} -h");
    }
}

/// A spec with `proxy`: `render` writes an nginx snippet and a Caddyfile
/// that nginx and Caddy themselves accept (checked when installed).
#[test]
fn render_writes_proxy_configs_nginx_and_caddy_accept() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "spec.json",
        r#"{"version":1,"prefix":"media","engine":{"path":"/usr/bin/podman","version":"4.3.1"},
        "proxy":{"domain":"media.test"},"services":{
        "sonarr":{"app":"sonarr","proxy":{"path":"/sonarr"}},
        "jellyfin":{"app":"jellyfin","proxy":{"subdomain":"tv"}}}}"#,
    );
    let out = t.path().join("out");
    render_cmd(&spec, &out).assert().success();
    let dir = out.join("share/nixarr-units/proxy");
    let nginx = std::fs::read_to_string(dir.join("nginx.conf")).unwrap();
    assert!(nginx.contains("location /sonarr {"), "{nginx}");
    let caddy = std::fs::read_to_string(dir.join("Caddyfile")).unwrap();
    assert!(caddy.contains("http://tv.media.test {"), "{caddy}");
    // Sonarr is told its URL base.
    let unit =
        std::fs::read_to_string(out.join("lib/systemd/system/media-sonarr.service")).unwrap();
    assert!(unit.contains("SONARR__SERVER__URLBASE=/sonarr"), "{unit}");
    if Path::new("/usr/sbin/nginx").exists() {
        let wrapper = write(
            t.path(),
            "nginx.conf",
            &format!(
                "pid {}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n access_log off;\n include {}/nginx.conf;\n}}\n",
                t.path().display(),
                dir.display()
            ),
        );
        accepts(
            std::process::Command::new("/usr/sbin/nginx")
                .arg("-t")
                .arg("-c")
                .arg(&wrapper),
        );
    } else {
        eprintln!("SKIPPED: nginx -t (apt-get install nginx-light)");
    }
    if Path::new("/usr/bin/caddy").exists() {
        accepts(
            std::process::Command::new("/usr/bin/caddy")
                .args(["validate", "--adapter", "caddyfile", "--config"])
                .arg(dir.join("Caddyfile"))
                .env("HOME", t.path()),
        );
    } else {
        eprintln!("SKIPPED: caddy validate (apt-get install caddy)");
    }
    // Without `proxy`, no proxy files.
    let plain = render_example(&t.path().join("plain"));
    assert!(!plain.join("share/nixarr-units/proxy").exists());
}

/// Run a checker; it must succeed (its stderr in the message otherwise).
fn accepts(cmd: &mut std::process::Command) {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

// ------------------------------------------------------------ the API

const API_SPEC: &str = r#"{"version":1,"prefix":"media","services":{"web":{"image":"x:1","ports":[{"host":8080,"container":80,"address":"192.168.1.5"}]}},
 "api":{"enable":true,"listen":["127.0.0.1:8089","[::1]:8089"],"tokenFile":"/run/secrets/api-token","readTokenFile":"/run/secrets/api-read","group":"media"}}"#;

#[test]
fn api_renders_a_socket_and_a_hardened_service() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(t.path(), "spec.json", API_SPEC);
    let out = render_with_self_exe(&spec, t.path());
    let dir = out.join("lib/systemd/system");
    let socket = std::fs::read_to_string(dir.join("media-api.socket")).unwrap();
    assert_lines(
        &socket,
        &[
            "ListenStream=/run/nixarr-units/api.sock",
            "SocketMode=0660",
            "SocketGroup=media",
            "ListenStream=127.0.0.1:8089",
            "ListenStream=[::1]:8089",
            "Service=media-api.service",
        ],
    );
    let service = std::fs::read_to_string(dir.join("media-api.service")).unwrap();
    assert_lines(
        &service,
        &[
            "ExecStart=/x/nixarr-units serve --token-file %d/token --read-token-file %d/read-token",
            "LoadCredential=token:/run/secrets/api-token",
            "LoadCredential=read-token:/run/secrets/api-read",
            "Requires=media-api.socket",
            "ProtectSystem=strict",
            "CapabilityBoundingSet=",
            "NoNewPrivileges=yes",
        ],
    );
    let target = std::fs::read_to_string(dir.join("media.target")).unwrap();
    assert!(target.contains("media-api.socket"), "{target}");
    // Without api (or with enable false), neither unit.
    let plain = write(
        t.path(),
        "plain.json",
        &API_SPEC.replace("\"enable\":true", "\"enable\":false"),
    );
    let plain_out = t.path().join("plain");
    render_cmd(&plain, &plain_out).assert().success();
    assert!(
        !plain_out
            .join("lib/systemd/system/media-api.socket")
            .exists()
    );
}

/// `api.user`: the service runs as that user with the journal's group, and
/// `render` writes the polkit rule granting it the stack's units only;
/// without it, root and no rule.
#[test]
fn api_user_gets_user_lines_and_the_polkit_rule() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "spec.json",
        &API_SPEC.replace(
            "\"group\":\"media\"",
            "\"group\":\"media\",\"user\":\"nixarr-api\"",
        ),
    );
    let out = render_with_self_exe(&spec, t.path());
    let service =
        std::fs::read_to_string(out.join("lib/systemd/system/media-api.service")).unwrap();
    assert_lines(
        &service,
        &[
            "User=nixarr-api",
            "SupplementaryGroups=systemd-journal",
            "NoNewPrivileges=yes",
        ],
    );
    let rule =
        std::fs::read_to_string(out.join("share/polkit-1/rules.d/50-media-api.rules")).unwrap();
    for part in [
        "action.id == \"org.freedesktop.systemd1.manage-units\"",
        "subject.user == \"nixarr-api\"",
        "unit.indexOf(\"media-\") == 0",
        "[\"start\", \"stop\", \"restart\"].indexOf(action.lookup(\"verb\")) >= 0",
    ] {
        assert!(rule.contains(part), "{part} missing in:\n{rule}");
    }
    let root_out = t.path().join("root");
    render_cmd(&write(t.path(), "root.json", API_SPEC), &root_out)
        .assert()
        .success();
    let root =
        std::fs::read_to_string(root_out.join("lib/systemd/system/media-api.service")).unwrap();
    assert!(!root.contains("User="), "{root}");
    assert!(!root_out.join("share/polkit-1").exists());
}

#[test]
fn api_mistakes_name_their_path() {
    let spec = |api: &str| {
        format!(r#"{{"version":1,"services":{{"web":{{"image":"x:1"}}}},"api":{api}}}"#)
    };
    rejects(
        &spec(r#"{"enable":true,"listen":["8089"],"tokenFile":"/t"}"#),
        &["api.listen[0]", "127.0.0.1:8089"],
    );
    rejects(
        &spec(r#"{"enable":true,"listen":["127.0.0.1:8089"]}"#),
        &["api.tokenFile", "needs a token"],
    );
    rejects(
        &spec(r#"{"enable":true,"tokenFile":"run/t"}"#),
        &["api.tokenFile", "relative path"],
    );
    rejects(
        &spec(r#"{"enable":true,"socket":"/run/../api.sock"}"#),
        &["api.socket", "`..`"],
    );
    rejects(
        &spec(r#"{"enable":true,"group":"me dia"}"#),
        &["api.group", "not a group name"],
    );
    rejects(
        &spec(r#"{"enable":true,"user":"nixarr api"}"#),
        &["api.user", "not a user name"],
    );
    rejects(&spec(r#"{"enable":true,"port":1}"#), &["port"]);
    rejects(
        r#"{"version":1,"services":{"api":{"image":"x:1"}}}"#,
        &["services.api"],
    );
}

#[test]
fn serve_refuses_short_tokens_and_bad_addresses() {
    let t = tempfile::tempdir().unwrap();
    let manifest = write(t.path(), "manifest.json", r#"{"version":1,"stacks":[]}"#);
    let short = write(t.path(), "short", "abc\n");
    bin()
        .args(["serve", "--listen", "127.0.0.1:1", "--token-file"])
        .arg(&short)
        .arg("--manifest")
        .arg(&manifest)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("at least 16 characters"));
    bin()
        .args(["serve", "--listen", "not-an-address"])
        .arg("--manifest")
        .arg(&manifest)
        .assert()
        .code(2);
}

#[test]
fn serve_refuses_tcp_without_a_token() {
    bin()
        .args(["serve", "--listen", "127.0.0.1:1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("needs a token"));
}

/// reconcile: a pass whose reads fail (an engine that does not answer, no
/// D-Bus) classifies nothing and acts on nothing, says so and exits 1; a
/// stack the manifest lacks and --summary with --json are usage errors.
#[test]
fn reconcile_with_failed_reads_does_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let hang = write(t.path(), "hang", "#!/bin/sh\nexec sleep 30\n");
    std::fs::set_permissions(&hang, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec = write(
        t.path(),
        "spec.json",
        &format!(
            r#"{{"version":1,"engine":{{"path":"{}","version":"4.3.1"}},
                "services":{{"a":{{"image":"x"}}}}}}"#,
            hang.display()
        ),
    );
    let out = t.path().join("out");
    render_cmd(&spec, &out).assert().success();
    let manifest = out.join("share/nixarr-units/manifest.json");
    let records = t.path().join("records");
    let run = |extra: &[&str]| {
        let mut c = bin();
        c.arg("reconcile")
            .arg("--manifest")
            .arg(&manifest)
            .args(["--bus-address", "unix:path=/nonexistent/bus"])
            .args(["--engine-timeout", "1", "--prune", "--record-dir"])
            .arg(&records)
            .args(extra);
        c
    };
    let start = std::time::Instant::now();
    let o = run(&["--json"]).assert().code(1).get_output().clone();
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let failed: Vec<&str> = v["failedReads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 2, "{v}");
    assert!(failed[0].starts_with("systemd: cannot connect"), "{v}");
    assert!(failed[1].contains("did not answer within 1s"), "{v}");
    assert_eq!(v["containers"], serde_json::json!([]));
    assert_eq!(v["units"], serde_json::json!([]));
    assert_eq!(
        (v["ok"].as_bool(), v["acted"].as_u64()),
        (Some(false), Some(0))
    );
    assert!(!records.exists(), "a failed pass records nothing");
    run(&["--summary"])
        .assert()
        .code(1)
        .stdout(predicate::str::starts_with(
            "reconcile nixarr: nothing done: a read failed: systemd:",
        ));
    run(&["--stack", "media"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "has no such stack (it has: nixarr)",
        ));
    run(&["--summary", "--json"]).assert().code(2);
    run(&["--engine-timeout", "0"]).assert().code(2);
}
