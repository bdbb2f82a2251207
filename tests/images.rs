//! Image pins on the command line: a lock beside the spec (or named by
//! `imageLock`) makes the units run `repo@sha256:…` with the tag in a
//! label; an image file is not pinned; the generator reads the lock and
//! does not take it for a spec; a broken lock is a usage error naming the
//! entry. The commands' usage errors (`update`, `pull`, `login`).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

fn bin() -> Command {
    Command::cargo_bin("nixarr-units").unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const SPEC: &str = r#"{"version":1,"engine":{"path":"/usr/bin/podman","version":"4.3.1"},
  "services":{
    "web":{"image":"127.0.0.1:5000/app:v","ports":[{"host":8088,"container":80}]},
    "other":{"image":"127.0.0.1:5000/other:v"},
    "built":{"image":"127.0.0.1:5000/app:v","imageFile":"/nix/store/x-image.tar"}}}"#;

fn lock(images: &[(&str, &str)]) -> String {
    let images: serde_json::Map<String, serde_json::Value> = images
        .iter()
        .map(|(i, d)| {
            (
                (*i).to_owned(),
                serde_json::json!({"digest": d, "platform": "linux/amd64",
                    "resolved": "2026-12-01T12:00:00Z", "services": ["web"]}),
            )
        })
        .collect();
    serde_json::json!({"version": 1, "images": images}).to_string()
}

fn render(spec: &Path, out: &Path) -> assert_cmd::assert::Assert {
    bin()
        .args(["render", "--self-exe", "/x/nixarr-units", "--spec"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .assert()
}

fn unit(out: &Path, svc: &str) -> String {
    std::fs::read_to_string(out.join(format!("lib/systemd/system/nixarr-{svc}.service"))).unwrap()
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("share/nixarr-units/manifest.json")).unwrap())
        .unwrap()
}

#[test]
fn a_lock_beside_the_spec_pins_the_units() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(t.path(), "stack.json", SPEC);
    // Without a lock: the tag, no label, nothing in the manifest.
    render(&spec, &t.path().join("plain")).success();
    let plain = unit(&t.path().join("plain"), "web");
    let run = plain.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(run.ends_with(" 127.0.0.1:5000/app:v"), "{run}");
    assert!(!plain.contains("io.nixarr.image.tag"), "{plain}");
    assert!(
        manifest(&t.path().join("plain"))["stacks"][0]
            .get("imageLock")
            .is_none()
    );

    let lock_path = write(
        t.path(),
        "images.lock.json",
        &lock(&[("127.0.0.1:5000/app:v", D1)]),
    );
    let out = t.path().join("out");
    render(&spec, &out).success();
    let web = unit(&out, "web");
    let run = web.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    assert!(run.ends_with(&format!(" 127.0.0.1:5000/app@{D1}")), "{run}");
    assert!(
        web.contains("--label=io.nixarr.image.tag=127.0.0.1:5000/app:v"),
        "{web}"
    );
    // Another image with no entry runs its tag; an image file is loaded
    // and run as built, whatever the lock says about its tag.
    let other = unit(&out, "other");
    assert!(other.contains("127.0.0.1:5000/other:v"), "{other}");
    assert!(!other.contains("io.nixarr.image.tag"), "{other}");
    let built = unit(&out, "built");
    assert!(!built.contains('@'), "{built}");
    assert!(built.contains("--pull=never"), "{built}");
    // The pin changes the unit, so its config hash: `reload` restarts it.
    assert_ne!(
        plain.lines().find(|l| l.contains("config-hash")),
        web.lines().find(|l| l.contains("config-hash"))
    );
    let m = manifest(&out);
    let stack = &m["stacks"][0];
    assert_eq!(stack["imageLock"], lock_path.display().to_string());
    assert_eq!(stack["services"]["web"]["imageDigest"], D1);
    assert!(stack["services"]["built"].get("imageDigest").is_none());
    assert!(stack["services"]["other"].get("imageDigest").is_none());
}

#[test]
fn image_lock_names_another_file_created_by_update() {
    let t = tempfile::tempdir().unwrap();
    let elsewhere = t.path().join("pins.json");
    let spec_text = SPEC.replacen(
        "{\"version\":1,",
        &format!("{{\"version\":1,\"imageLock\":\"{}\",", elsewhere.display()),
        1,
    );
    let spec = write(t.path(), "stack.json", &spec_text);
    // Not there yet: the tags, and the manifest says where `update`
    // writes it.
    render(&spec, &t.path().join("a")).success();
    assert!(unit(&t.path().join("a"), "other").contains("127.0.0.1:5000/other:v"));
    assert_eq!(
        manifest(&t.path().join("a"))["stacks"][0]["imageLock"],
        elsewhere.display().to_string()
    );
    std::fs::write(&elsewhere, lock(&[("127.0.0.1:5000/other:v", D1)])).unwrap();
    render(&spec, &t.path().join("b")).success();
    assert!(unit(&t.path().join("b"), "other").contains(&format!("127.0.0.1:5000/other@{D1}")));
    // A relative imageLock is refused like any relative path.
    let rel = SPEC.replacen(
        "{\"version\":1,",
        "{\"version\":1,\"imageLock\":\"pins.json\",",
        1,
    );
    let spec = write(t.path(), "rel.json", &rel);
    render(&spec, &t.path().join("c"))
        .code(2)
        .stderr(predicate::str::contains(
            "imageLock: `pins.json` is a relative path",
        ));
}

#[test]
fn a_broken_lock_is_a_usage_error_naming_the_entry() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(t.path(), "stack.json", SPEC);
    write(
        t.path(),
        "images.lock.json",
        &lock(&[("127.0.0.1:5000/app:v", "sha256:abc")]),
    );
    render(&spec, &t.path().join("out"))
        .code(2)
        .stderr(predicate::str::contains(r#"images.lock.json: images."127.0.0.1:5000/app:v".digest: `sha256:abc` is not a digest"#));
    assert!(!t.path().join("out").exists());
}

#[test]
fn the_generator_reads_the_lock_and_does_not_take_it_for_a_spec() {
    let t = tempfile::tempdir().unwrap();
    let specs = t.path().join("etc");
    std::fs::create_dir(&specs).unwrap();
    write(&specs, "stack.json", SPEC);
    write(
        &specs,
        "images.lock.json",
        &lock(&[("127.0.0.1:5000/app:v", D1)]),
    );
    let normal = t.path().join("normal");
    std::fs::create_dir(&normal).unwrap();
    bin()
        .arg("generator")
        .arg(&normal)
        .env("NIXARR_UNITS_SPEC_DIR", &specs)
        .env("NIXARR_UNITS_MANIFEST", t.path().join("manifest.json"))
        .assert()
        .success();
    let web = std::fs::read_to_string(normal.join("nixarr-web.service")).unwrap();
    assert!(web.contains(&format!("127.0.0.1:5000/app@{D1}")), "{web}");
}

#[test]
fn auto_update_renders_a_timer_and_a_hardened_service() {
    let t = tempfile::tempdir().unwrap();
    let spec_text = SPEC.replacen(
        "{\"version\":1,",
        "{\"version\":1,\"autoUpdate\":{\"schedule\":\"Sun 04:00\",\"services\":[\"web\",\"other\"]},",
        1,
    );
    let spec = write(t.path(), "stack.json", &spec_text);
    write(
        t.path(),
        "images.lock.json",
        &lock(&[("127.0.0.1:5000/app:v", D1)]),
    );
    let out = t.path().join("out");
    render(&spec, &out).success();
    let dir = out.join("lib/systemd/system");
    let timer = std::fs::read_to_string(dir.join("nixarr-update.timer")).unwrap();
    assert!(timer.contains("OnCalendar=Sun 04:00\n"), "{timer}");
    assert!(timer.contains("Persistent=true"), "{timer}");
    let service = std::fs::read_to_string(dir.join("nixarr-update.service")).unwrap();
    assert!(
        service
            .contains("ExecStart=/x/nixarr-units update nixarr-other.service nixarr-web.service\n"),
        "{service}"
    );
    assert!(service.contains("NoNewPrivileges=yes"), "{service}");
    assert!(service.contains("ProtectSystem=full"), "{service}");
    assert!(
        service.contains(&format!(
            "ReadWritePaths=-/etc/containers -{}\n",
            t.path().display()
        )),
        "{service}"
    );
    let target = std::fs::read_to_string(dir.join("nixarr.target")).unwrap();
    assert!(target.contains("nixarr-update.timer"), "{target}");
    // Without autoUpdate, neither unit.
    let plain = write(t.path(), "plain.json", SPEC);
    render(&plain, &t.path().join("plain")).success();
    assert!(
        !t.path()
            .join("plain/lib/systemd/system/nixarr-update.timer")
            .exists()
    );
}

#[test]
fn auto_update_mistakes_name_their_path() {
    let t = tempfile::tempdir().unwrap();
    for (au, needle) in [
        (
            r#"{"services":["nope"]}"#,
            "autoUpdate.services[0]: `nope` is not a service of this stack",
        ),
        (
            r#"{"services":["web","built"]}"#,
            "autoUpdate.services[1]: `built` runs an image file",
        ),
        (r#"{"services":[]}"#, "autoUpdate.services: is empty"),
        (
            r#"{"schedule":" ","services":["web"]}"#,
            "autoUpdate.schedule: is empty",
        ),
        (
            r#"{"services":["web"],"when":"x"}"#,
            "autoUpdate.when: unknown key",
        ),
    ] {
        let text = SPEC.replacen(
            "{\"version\":1,",
            &format!("{{\"version\":1,\"autoUpdate\":{au},"),
            1,
        );
        let spec = write(t.path(), "stack.json", &text);
        render(&spec, &t.path().join("out"))
            .code(2)
            .stderr(predicate::str::contains(needle));
    }
    // A service named `update` would be the timer's unit.
    let text = r#"{"version":1,"services":{"update":{"image":"x:1"}}}"#;
    let spec = write(t.path(), "u.json", text);
    render(&spec, &t.path().join("u"))
        .code(2)
        .stderr(predicate::str::contains("services.update"));
}

/// A manifest with one service, for the commands' usage errors.
fn manifest_file(dir: &Path) -> PathBuf {
    let spec = write(dir, "stack.json", SPEC);
    let out = dir.join("m");
    render(&spec, &out).success();
    out.join("share/nixarr-units/manifest.json")
}

#[test]
fn update_pull_and_login_usage_errors_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let m = manifest_file(t.path());
    let run = |args: &[&str]| bin().arg("--manifest").arg(&m).args(args).assert();
    run(&["update"])
        .code(2)
        .stderr(predicate::str::contains("<SERVICES>"));
    run(&["update", "--check", "nope"])
        .code(2)
        .stderr(predicate::str::contains("nope"));
    run(&["pull"]).code(2);
    run(&["update", "--all", "web"]).code(2);
    run(&[
        "login",
        "https://127.0.0.1:5000/x",
        "-u",
        "me",
        "--password-file",
        "/nonexistent",
    ])
    .code(2)
    .stderr(predicate::str::contains("no scheme, no path"));
    run(&[
        "login",
        "127.0.0.1:5000",
        "-u",
        "me",
        "--password-file",
        "/nonexistent/pw",
    ])
    .code(2)
    .stderr(predicate::str::contains(
        "cannot read the password file /nonexistent/pw",
    ));
    let empty = write(t.path(), "empty", "\n");
    run(&[
        "login",
        "127.0.0.1:5000",
        "-u",
        "me",
        "--password-file",
        empty.to_str().unwrap(),
    ])
    .code(2)
    .stderr(predicate::str::contains("is empty"));
    run(&["login", "127.0.0.1:5000", "-u", "me"]).code(2);
}

#[test]
fn login_hands_the_password_to_the_engine_on_stdin_only() {
    // A stand-in engine that records its argv and standard input.
    let t = tempfile::tempdir().unwrap();
    let engine = t.path().join("podman");
    let log = t.path().join("log");
    std::fs::write(
        &engine,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {0}.argv\ncat > {0}.stdin\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&engine, std::fs::Permissions::from_mode(0o755)).unwrap();
    let spec_text = SPEC.replace("/usr/bin/podman", engine.to_str().unwrap());
    let spec = write(t.path(), "stack.json", &spec_text);
    render(&spec, &t.path().join("m")).success();
    let pw = write(t.path(), "pw", "s3cret-pw\n");
    let out = bin()
        .arg("--manifest")
        .arg(t.path().join("m/share/nixarr-units/manifest.json"))
        .args([
            "login",
            "127.0.0.1:5000",
            "--username",
            "me",
            "--password-file",
        ])
        .arg(&pw)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned()
        + &String::from_utf8_lossy(&out.get_output().stderr);
    assert!(text.contains("logged in to 127.0.0.1:5000 as me"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    let argv = std::fs::read_to_string(format!("{}.argv", log.display())).unwrap();
    assert_eq!(
        argv,
        "login\n--username=me\n--password-stdin\n127.0.0.1:5000\n"
    );
    let stdin = std::fs::read_to_string(format!("{}.stdin", log.display())).unwrap();
    assert_eq!(stdin, "s3cret-pw");
}
