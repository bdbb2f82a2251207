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
