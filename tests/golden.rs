//! Golden files of rendered units: every catalog app on both backends (and
//! podman 4, which gets the ExecStartPost health gate instead of
//! --sdnotify=healthy), plus the bundled example stack with VPN and
//! dependencies. `systemd-analyze verify` checks every one of them.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::path::Path;
use std::process::Command;

use nixarr_units::catalog;
use nixarr_units::manifest::Manifest;
use nixarr_units::render::{self, Entry, Options, Rendered};
use nixarr_units::resolve::resolve;
use nixarr_units::spec;

const SELF_EXE: &str = "/usr/bin/nixarr-units";

fn render_json(json: &str) -> Rendered {
    let spec = spec::parse(json, "test.json").unwrap();
    let stack = resolve(&spec, "test.json").unwrap();
    render::render(
        &stack,
        &Options {
            self_exe: SELF_EXE.to_owned(),
            source_path: None,
        },
    )
    .unwrap()
}

/// (snapshot name, spec) for every golden case.
fn cases() -> Vec<(String, String)> {
    let mut cases = Vec::new();
    for app in catalog::app_names() {
        for (variant, backend, version) in [
            ("podman", "podman", "5.4.2"),
            ("podman4", "podman", "4.3.1"),
            ("docker", "docker", "20.10.24"),
        ] {
            let json = format!(
                r#"{{"version":1,"backend":"{backend}",
                    "engine":{{"path":"/usr/bin/{backend}","version":"{version}"}},
                    "services":{{"{app}":{{"app":"{app}"}}}}}}"#
            );
            cases.push((format!("{app}-{variant}"), json));
        }
    }
    let example = include_str!("../examples/stack.json");
    cases.push(("stack-podman".to_owned(), example.to_owned()));
    let docker = example
        .replace(r#""backend": "podman""#, r#""backend": "docker""#)
        .replace(
            r#""engine": { "path": "/usr/bin/podman" }"#,
            r#""engine": { "path": "/usr/bin/docker", "version": "20.10.24" }"#,
        );
    assert_ne!(
        docker, example,
        "example stack layout changed; update this test"
    );
    cases.push(("stack-docker".to_owned(), docker));
    cases
}

/// All files of a render, concatenated with headers, as one snapshot.
fn snapshot_text(r: &Rendered) -> String {
    let mut s = String::new();
    for (name, entry) in &r.units {
        match entry {
            Entry::File(text) => {
                s.push_str(&format!("===== {name}\n{text}"));
            }
            Entry::Symlink(target) => s.push_str(&format!("===== {name} -> {target}\n")),
        }
    }
    let manifest = Manifest::new(vec![r.manifest.clone()]).to_json().unwrap();
    s.push_str(&format!("===== manifest.json\n{manifest}"));
    s
}

#[test]
fn golden_units() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_snapshot_path("golden");
    settings.bind(|| {
        for (name, json) in cases() {
            let rendered = render_json(&json);
            insta::assert_snapshot!(name.clone(), snapshot_text(&rendered));
        }
    });
}

#[test]
fn output_is_independent_of_json_key_order() {
    let example = include_str!("../examples/stack.json");
    let value: serde_json::Value = serde_json::from_str(example).unwrap();
    // serde_json's Map is sorted; write keys in reverse order by hand.
    fn reversed(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::Object(m) => {
                let parts: Vec<String> = m
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), reversed(v)))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            serde_json::Value::Array(a) => {
                format!("[{}]", a.iter().map(reversed).collect::<Vec<_>>().join(","))
            }
            other => other.to_string(),
        }
    }
    let shuffled = reversed(&value);
    assert_ne!(shuffled, example);
    let a = snapshot_text(&render_json(example));
    let b = snapshot_text(&render_json(&shuffled));
    assert_eq!(a, b);
    // And the same input twice gives the same bytes.
    assert_eq!(a, snapshot_text(&render_json(example)));
}

fn systemd_analyze() -> Option<&'static str> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// `systemd-analyze verify` over every golden unit: it exits 0 even for
/// unknown keys, so any output at all is a failure. The only change to the
/// golden text is the path of nixarr-units, pointed at the binary under test
/// so systemd can check that it is executable.
#[test]
fn systemd_analyze_verify_every_golden_unit() {
    let Some(analyze) = systemd_analyze() else {
        eprintln!("SKIPPED: systemd-analyze is not installed (apt-get install systemd)");
        return;
    };
    for engine in ["/usr/bin/podman", "/usr/bin/docker"] {
        if !Path::new(engine).exists() {
            eprintln!("SKIPPED: {engine} is missing; tests/run.sh installs it");
            return;
        }
    }
    let exe = env!("CARGO_BIN_EXE_nixarr-units");
    let mut failures = Vec::new();
    for (name, json) in cases() {
        let rendered = render_json(&json);
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (file, entry) in &rendered.units {
            if let Entry::File(text) = entry {
                let path = dir.path().join(file);
                std::fs::write(&path, text.replace(SELF_EXE, exe)).unwrap();
                files.push(path);
            }
        }
        let out = Command::new(analyze)
            .arg("verify")
            .arg("--man=no")
            .args(&files)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || !text.trim().is_empty() {
            failures.push(format!("{name}: exit {:?}\n{text}", out.status.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The stack network's bridge gets a fixed name (a firewall opens DNS on
/// it) where the engine can name it: podman ≥ 4.5 and Docker.
#[test]
fn network_bridge_is_named_where_the_engine_can() {
    for (backend, version, expected) in [
        ("podman", "4.4.4", None),
        ("podman", "4.5.0", Some("--interface-name=media0")),
        ("podman", "5.4.2", Some("--interface-name=media0")),
        (
            "docker",
            "20.10.24",
            Some("--opt=com.docker.network.bridge.name=media0"),
        ),
    ] {
        let r = render_json(&format!(
            r#"{{"version":1,"backend":"{backend}","network":{{"interface":"media0"}},
                "engine":{{"path":"/usr/bin/{backend}","version":"{version}"}},
                "services":{{"a":{{"image":"x"}}}}}}"#
        ));
        let Entry::File(unit) = &r.units["nixarr-network.service"] else {
            panic!("network unit is not a file");
        };
        let create = unit
            .lines()
            .find(|l| l.contains(" network create "))
            .unwrap();
        match expected {
            Some(flag) => assert!(
                create.contains(&format!(" {flag} nixarr")),
                "{backend} {version}: {create}"
            ),
            None => assert!(!create.contains("media0"), "{backend} {version}: {create}"),
        }
    }
}

/// `reconcile` in the spec renders `<prefix>-reconcile.timer` and its
/// service (wanted by the target); without it there is none. `prune` adds
/// `--prune` to the pass.
#[test]
fn reconcile_timer_only_when_asked() {
    let spec = |reconcile: &str| {
        format!(
            r#"{{"version":1,"backend":"docker","prefix":"media",{reconcile}
                "engine":{{"path":"/usr/bin/docker","version":"20.10.24"}},
                "services":{{"a":{{"image":"x"}}}}}}"#
        )
    };
    let none = render_json(&spec(""));
    assert!(!none.units.keys().any(|k| k.contains("reconcile")));
    let file = |r: &Rendered, name: &str| match &r.units[name] {
        Entry::File(text) => text.clone(),
        Entry::Symlink(_) => panic!("{name} is a link"),
    };
    let on = render_json(&spec(r#""reconcile":{"interval":"90s","prune":true},"#));
    let service = file(&on, "media-reconcile.service");
    assert!(
        service.contains(
            "ExecStart=/usr/bin/nixarr-units reconcile --stack=media --summary --prune\n"
        ),
        "{service}"
    );
    assert!(service.contains("After=docker.service"), "{service}");
    let timer = file(&on, "media-reconcile.timer");
    assert!(timer.contains("OnUnitActiveSec=90s"), "{timer}");
    assert!(
        file(&on, "media.target").contains("media-reconcile.timer"),
        "the target wants the timer"
    );
    let default = render_json(&spec(r#""reconcile":{},"#));
    let service = file(&default, "media-reconcile.service");
    assert!(service.contains("--summary\n"), "no --prune: {service}");
    assert!(file(&default, "media-reconcile.timer").contains("OnUnitActiveSec=300s"));
}
