//! The operator's commands as a user meets them: `init` (in a real
//! terminal and for scripts), `config show`, `catalog`, `diff`, shell
//! completions and man pages.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

#[path = "support/tmux.rs"]
mod tmux;

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use assert_cmd::Command;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nixarr-units");

fn bin() -> Command {
    Command::cargo_bin("nixarr-units").unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn stdout_json(args: &[&str]) -> Value {
    let out = bin().args(args).assert().success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

fn stdout_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

/// `render --spec SPEC --out OUT`, which must succeed.
fn render(spec: &Path, out: &Path) {
    bin()
        .args(["render", "--spec"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stack.json")
}

#[test]
fn catalog_json_lists_every_app_with_its_facts() {
    let all = stdout_json(&["catalog", "--json"]);
    let apps = all.as_array().unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "bazarr",
            "gluetun",
            "jellyfin",
            "lidarr",
            "prowlarr",
            "qbittorrent",
            "radarr",
            "sabnzbd",
            "seerr",
            "sonarr",
            "transmission"
        ]
    );
    for a in apps {
        let name = a["name"].as_str().unwrap();
        assert!(
            nixarr_units::profiles::CATALOG_PROFILES.contains(&a["profile"].as_str().unwrap()),
            "{name}: {}",
            a["profile"]
        );
        for key in ["image", "description", "homepage", "configDir"] {
            assert!(a[key].is_string(), "{name}.{key}: {}", a[key]);
        }
        for p in a["ports"].as_array().unwrap() {
            assert!(
                p["name"].is_string() && p["container"].is_u64(),
                "{name}: {p}"
            );
            assert!(["tcp", "udp"].contains(&p["protocol"].as_str().unwrap()));
        }
        let volumes = a["volumes"].as_array().unwrap();
        assert_eq!(volumes[0]["container"], a["configDir"], "{name}");
        assert_eq!(
            volumes[0]["host"],
            format!("/var/lib/nixarr/{name}"),
            "{name}"
        );
        assert!(a["health"].is_object() || a["health"].is_null());
        assert!(a["legacy"].is_object() || a["legacy"].is_null());
    }
    let sonarr = stdout_json(&["catalog", "sonarr", "--json"]);
    assert_eq!(sonarr["profile"], "core");
    assert_eq!(sonarr["ports"][0]["container"], 8989);
    assert_eq!(sonarr["health"]["http"], "/ping");
    assert_eq!(sonarr["legacy"]["units"][0], "sonarr.service");
    assert_eq!(sonarr["volumes"][1]["host"], "/data");

    let text = bin().args(["catalog", "lidarr"]).assert().success();
    let text = stdout_of(&text);
    assert!(text.contains("profile:  music"), "{text}");
    assert!(text.contains("native:   lidarr.service"), "{text}");
    let table = stdout_of(&bin().arg("catalog").assert().success());
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("qbittorrent") && l.contains("downloads")),
        "{table}"
    );

    let a = bin().args(["catalog", "sonar"]).assert().code(2).stdout("");
    let e = stderr_of(&a);
    assert!(e.contains("did you mean `sonarr`?"), "{e}");
}

#[test]
fn config_show_says_where_each_value_came_from_and_shows_secrets_as_paths() {
    let spec = example();
    let spec = spec.to_str().unwrap();
    let v = stdout_json(&["config", "show", "--spec", spec, "--json"]);
    let values = v[0]["values"].as_array().unwrap();
    let at = |p: &str| {
        values
            .iter()
            .find(|e| e["path"] == p)
            .unwrap_or_else(|| panic!("no {p}"))
    };
    assert_eq!(at("services.sonarr.image")["source"], "catalog");
    assert_eq!(at("services.sonarr.image")["from"], "catalog app sonarr");
    assert_eq!(at("services.homepage.image")["source"], "spec");
    assert_eq!(at("defaults.tz")["source"], "spec");
    assert_eq!(at("services.sonarr.environment.TZ")["source"], "defaults");
    assert_eq!(
        at("services.sonarr.environment.TZ")["value"],
        "Europe/Berlin"
    );
    assert_eq!(at("network.name")["source"], "defaults");
    assert_eq!(at("services.sonarr-4k.ports[0]")["source"], "spec");
    assert_eq!(
        at("services.gluetun.secrets.WIREGUARD_PRIVATE_KEY")["value"]["file"],
        "/run/secrets/wireguard-private-key"
    );
    for e in values {
        assert!(
            ["spec", "catalog", "defaults"].contains(&e["source"].as_str().unwrap()),
            "{e}"
        );
    }
    let text = stdout_of(
        &bin()
            .args(["config", "show", "--spec", spec])
            .assert()
            .success(),
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("services.sonarr.image "))
        .unwrap();
    assert!(
        line.contains("lscr.io/linuxserver/sonarr:latest")
            && line.contains("catalog (catalog app sonarr)"),
        "{line}"
    );
    // `config validate` is `validate`.
    let a = bin()
        .args(["config", "validate", "--spec", spec])
        .assert()
        .success();
    assert!(
        stdout_of(&a).contains(": valid; 12 services"),
        "{}",
        stdout_of(&a)
    );
    let t = tempfile::tempdir().unwrap();
    let bad = write(
        t.path(),
        "bad.json",
        r#"{"version":1,"services":{"x":{"app":"nope"}}}"#,
    );
    for cmd in [["config", "show"], ["config", "validate"]] {
        let a = bin()
            .args(cmd)
            .arg("--spec")
            .arg(&bad)
            .assert()
            .code(2)
            .stdout("");
        assert!(stderr_of(&a).contains("services.x.app: unknown app"));
    }
}

/// `init --yes` with `args` into `file`; the assertion.
fn init(args: &[&str], file: &Path) -> assert_cmd::assert::Assert {
    bin()
        .args(["init", "--yes"])
        .args(args)
        .arg("--out")
        .arg(file)
        .env("TZ", "UTC")
        .assert()
}

#[test]
fn init_for_scripts_writes_a_spec_that_renders_and_never_overwrites() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("stack.json");
    let a = init(
        &[
            "--apps",
            "sonarr,radarr,qbittorrent",
            "--vpn",
            "wireguard",
            "--format",
            "json",
            "--backend",
            "docker",
            "--tz",
            "Europe/Berlin",
        ],
        &file,
    )
    .success();
    let out = stdout_of(&a);
    assert!(out.contains("wrote"), "{out}");
    assert!(out.contains("4 services on docker"), "{out}");
    assert!(out.contains("behind the VPN: qbittorrent"), "{out}");
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(spec["backend"], "docker");
    assert_eq!(spec["defaults"]["tz"], "Europe/Berlin");
    assert_eq!(spec["services"]["qbittorrent"]["vpn"], true);
    assert_eq!(
        spec["services"]["gluetun"]["environment"]["VPN_TYPE"],
        "wireguard"
    );
    assert_eq!(
        spec["services"]["gluetun"]["secrets"]["WIREGUARD_PRIVATE_KEY"]["file"],
        "/run/secrets/wireguard-private-key"
    );
    assert!(spec["services"]["sonarr"].get("vpn").is_none());
    // It renders.
    render(&file, &t.path().join("out"));

    // Never over an existing file without --force; the file stays as it was.
    let before = std::fs::read(&file).unwrap();
    let a = init(&["--apps", "lidarr", "--format", "json"], &file)
        .code(2)
        .stdout("");
    let e = stderr_of(&a);
    assert!(e.contains("exists; pass --force"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    init(&["--apps", "lidarr", "--format", "json", "--force"], &file).success();
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        spec["services"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["lidarr"]
    );
    // No temporary file left beside it.
    let names: Vec<String> = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".nixarr-init")),
        "{names:?}"
    );
}

#[test]
fn init_refuses_bad_answers_with_exit_2_and_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("s.json");
    let cases: &[(&[&str], &str)] = &[
        (&["--apps", "sonar"], "did you mean `sonarr`?"),
        (&["--apps", "gluetun"], "comes with --vpn"),
        (&["--apps", "sonarr", "--vpn", "wireguard"], "has none"),
        (&["--apps", "sonarr", "--tz", "Not A Zone"], "defaults.tz"),
        (&["--apps", "sonarr", "--data-dir", "data"], "paths.dataDir"),
        (
            &["--apps", "qbittorrent", "--vpn", "openvpn", "--secret", "X"],
            "VAR=PATH",
        ),
    ];
    for (args, needle) in cases {
        let a = init(args, &file).code(2).stdout("");
        let e = stderr_of(&a);
        assert!(e.contains(needle), "{args:?}: {e}");
        assert!(!file.exists(), "{args:?} wrote a file");
    }
    // Without --yes and without a terminal it says what to do.
    let a = bin()
        .args(["init", "--out"])
        .arg(&file)
        .write_stdin("")
        .assert()
        .code(2);
    assert!(stderr_of(&a).contains("pass --yes"), "{}", stderr_of(&a));
}

#[test]
fn init_writes_a_nix_block_that_nix_parses() {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("nixarr-units.nix");
    init(
        &[
            "--apps",
            "sonarr,transmission",
            "--vpn",
            "openvpn",
            "--format",
            "nix",
        ],
        &file,
    )
    .success();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("services.nixarr-units = {"), "{text}");
    assert!(
        text.contains("OPENVPN_PASSWORD.file = \"/run/secrets/openvpn-password\";"),
        "{text}"
    );
    match Process::new("nix-instantiate")
        .args(["--parse"])
        .arg(&file)
        .output()
    {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => eprintln!("SKIPPED the parse: nix-instantiate is not installed"),
    }
}

/// The generator's run into `normal`, from the specs in `specs`; as
/// systemd does, into an emptied directory (where another generator's
/// unit is not ours to compare).
fn generate(specs: &Path, normal: &Path, manifest: &Path) {
    let _ = std::fs::remove_dir_all(normal);
    std::fs::create_dir(normal).unwrap();
    write(normal, "other.service", "[Unit]\n");
    bin()
        .arg("generator")
        .arg(normal)
        .arg("--spec-dir")
        .arg(specs)
        .arg("--manifest")
        .arg(manifest)
        .arg("--system-unit-dirs")
        .arg(specs.join("none"))
        .assert()
        .success();
}

#[test]
fn diff_against_the_generator_directory_shows_a_change_per_unit() {
    let t = tempfile::tempdir().unwrap();
    let specs = t.path().join("etc");
    std::fs::create_dir(&specs).unwrap();
    let spec = |extra: &str| {
        format!(
            r#"{{"version":1,"engine":{{"version":"5.4"}},"services":{{
                "prowlarr":{{"app":"prowlarr"}},
                "sonarr":{{"app":"sonarr","dependsOn":["prowlarr"]{extra}}}}}}}"#
        )
    };
    write(&specs, "media.json", &spec(""));
    let normal = t.path().join("generator");
    let manifest = t.path().join("manifest.json");
    generate(&specs, &normal, &manifest);

    let diff = |args: &[&str]| {
        bin()
            .arg("diff")
            .arg("--spec-dir")
            .arg(&specs)
            .arg("--against")
            .arg(&normal)
            .args(args)
            .assert()
    };
    let a = diff(&[]).code(0);
    assert!(stdout_of(&a).contains("no change"), "{}", stdout_of(&a));

    write(
        &specs,
        "media.json",
        &spec(r#","environment":{"SONARR__LOG__LEVEL":"debug"}"#),
    );
    let a = diff(&[]).code(1);
    let out = stdout_of(&a);
    assert!(
        out.contains(&format!(
            "--- {}",
            normal.join("nixarr-sonarr.service").display()
        )),
        "{out}"
    );
    assert!(out.contains("+++ rendered/nixarr-sonarr.service"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with('+') && l.contains("SONARR__LOG__LEVEL=debug")),
        "{out}"
    );
    assert!(!out.contains("nixarr-prowlarr.service"), "{out}");
    assert!(!out.contains("other.service"), "{out}");
    assert!(out.contains("1 unit would change"), "{out}");
    let v: Value = serde_json::from_slice(&diff(&["--json"]).code(1).get_output().stdout).unwrap();
    assert_eq!(v["changed"], true);
    let changes = v["specs"][0]["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["unit"], "nixarr-sonarr.service");
    assert_eq!(changes[0]["kind"], "changed");
    // Not running here: it would not be restarted, but it changed.
    let s = &v["specs"][0];
    assert!(s["restart"].as_array().unwrap().is_empty(), "{s}");
    assert_eq!(s["changedNotRunning"][0], "sonarr", "{s}");

    // After the generator ran again, nothing is left to change.
    generate(&specs, &normal, &manifest);
    diff(&[]).code(0);

    // A spec given by another path compares as the same spec.
    let copy = write(
        t.path(),
        "copy.json",
        &std::fs::read_to_string(specs.join("media.json")).unwrap(),
    );
    bin()
        .args(["diff", "--spec"])
        .arg(&copy)
        .arg("--against")
        .arg(&normal)
        .assert()
        .code(0);
}

#[test]
fn diff_against_a_render_directory() {
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "s.json",
        r#"{"version":1,"engine":{"version":"5.4"},"services":{"sonarr":{"app":"sonarr"}}}"#,
    );
    let out = t.path().join("out");
    render(&spec, &out);
    let diff = || {
        bin()
            .args(["diff", "--spec"])
            .arg(&spec)
            .arg("--against")
            .arg(&out)
            .assert()
    };
    diff().code(0);
    write(
        t.path(),
        "s.json",
        r#"{"version":1,"engine":{"version":"5.4"},"services":{"sonarr":{"app":"sonarr"},
            "radarr":{"app":"radarr"}}}"#,
    );
    let text = stdout_of(&diff().code(1));
    assert!(text.contains("--- /dev/null"), "{text}");
    assert!(
        text.contains("+++ rendered/nixarr-radarr.service"),
        "{text}"
    );
    assert!(text.contains("(1 added, 0 removed, 1 changed)"), "{text}");
}

#[test]
fn completion_scripts_load_in_bash_for_both_names() {
    for name in ["nixarr-units", "nixarr-migrate"] {
        let script = stdout_of(
            &bin()
                .args(["completions", "bash", "--bin", name])
                .assert()
                .success(),
        );
        let t = tempfile::tempdir().unwrap();
        let file = write(t.path(), "c.bash", &script);
        let out = Process::new("bash")
            .arg("-c")
            .arg(format!("source '{}' && complete -p {name}", file.display()))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.contains(name) && said.starts_with("complete "),
            "{name}: {said}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for shell in ["zsh", "fish"] {
        let s = stdout_of(&bin().args(["completions", shell]).assert().success());
        assert!(s.contains("nixarr-units"), "{shell}");
        assert!(s.contains("init") && s.contains("catalog"), "{shell}");
    }
    bin().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn man_pages_render_with_man() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man1");
    let a = bin().args(["man", "--out"]).arg(&dir).assert().success();
    assert!(
        stdout_of(&a).contains("man pages into"),
        "{}",
        stdout_of(&a)
    );
    for page in [
        "nixarr-units.1",
        "nixarr-units-init.1",
        "nixarr-units-config-show.1",
        "nixarr-migrate.1",
        "nixarr-migrate-migrate.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} missing");
    }
    // Internal commands have no page.
    assert!(!dir.join("nixarr-units-wait-healthy.1").exists());
    if Process::new("man").arg("--version").output().is_err() {
        eprintln!("SKIPPED man -l: man is not installed (apt-get install man-db)");
        return;
    }
    for page in ["nixarr-units.1", "nixarr-units-diff.1", "nixarr-migrate.1"] {
        let out = Process::new("man")
            .arg("-l")
            .arg(dir.join(page))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{page}: {err}");
        assert!(err.trim().is_empty(), "{page}: man warned: {err}");
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{page}:\n{text}"
        );
    }
}

/// Answer the wizard's questions in a real terminal; returns the final
/// screen.
#[test]
fn init_wizard_in_a_terminal_writes_a_spec_that_renders() {
    if !tmux::Tmux::available() {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("stack.json");
    let term = tmux::Tmux::start(
        t.path(),
        t.path(),
        &[
            BIN,
            "init",
            "--format",
            "json",
            "--out",
            file.to_str().unwrap(),
            "--backend",
            "podman",
        ],
    );
    // The host comes first.
    let first = term.wait_for("Which apps?");
    assert!(first.contains("system: "), "{first}");
    assert!(first.contains("time zone: "), "{first}");
    // Core is picked; add qbittorrent (the 8th line: after core, music,
    // subtitles, media, requests).
    let apps = term.wait_for("qbittorrent");
    assert!(apps.contains("downloads"), "{apps}");
    for _ in 0..7 {
        term.keys(&["Down"]);
    }
    term.keys(&["Space"]);
    term.answer("transmission", &["Enter"]);
    term.answer("Which container engine?", &["Enter"]);
    term.answer("Route qbittorrent through a VPN", &["y", "Enter"]);
    term.wait_for("VPN provider");
    term.type_text("protonvpn");
    term.keys(&["Enter"]);
    term.answer("VPN type?", &["Down", "Enter"]);
    // Its default offered, taken.
    let s = term.answer("File that holds OPENVPN_USER?", &["Enter"]);
    assert!(s.contains("(/run/secrets/openvpn-user)"), "{s}");
    term.wait_for("File that holds OPENVPN_PASSWORD?");
    // A relative path is refused on the spot.
    term.type_text("vpn-pass");
    term.keys(&["Enter"]);
    term.wait_for("give an absolute path");
    for _ in 0.."vpn-pass".len() {
        term.keys(&["BSpace"]);
    }
    term.type_text("/run/secrets/vpn-pass");
    term.keys(&["Enter"]);
    term.wait_for("Time zone");
    term.type_text("Europe/Berlin");
    term.keys(&["Enter"]);
    term.answer("User id", &["Enter"]);
    term.answer("Group id", &["Enter"]);
    term.answer("configuration?", &["Enter"]);
    term.wait_for("media tree");
    term.type_text("/srv/media");
    term.keys(&["Enter"]);
    let summary = term.answer("Write ", &["Enter"]);
    assert!(
        summary.contains("checked: 5 services on podman"),
        "{summary}"
    );
    let done = term.wait_for("EXIT=");
    assert!(done.contains("EXIT=0"), "{done}");
    assert!(done.contains("behind the VPN: qbittorrent"), "{done}");

    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let services: Vec<&String> = spec["services"].as_object().unwrap().keys().collect();
    assert_eq!(
        services,
        ["gluetun", "prowlarr", "qbittorrent", "radarr", "sonarr"]
    );
    let g = &spec["services"]["gluetun"];
    assert_eq!(g["environment"]["VPN_SERVICE_PROVIDER"], "protonvpn");
    assert_eq!(g["environment"]["VPN_TYPE"], "openvpn");
    assert_eq!(
        g["secrets"]["OPENVPN_PASSWORD"]["file"],
        "/run/secrets/vpn-pass"
    );
    assert_eq!(
        g["secrets"]["OPENVPN_USER"]["file"],
        "/run/secrets/openvpn-user"
    );
    assert_eq!(spec["services"]["qbittorrent"]["vpn"], true);
    assert_eq!(spec["defaults"]["tz"], "Europe/Berlin");
    assert_eq!(spec["paths"]["dataDir"], "/srv/media");
    assert_eq!(spec["backend"], "podman");
    bin()
        .args(["validate", "--spec"])
        .arg(&file)
        .assert()
        .success();
    render(&file, &t.path().join("out"));
}

#[test]
fn profile_and_vpn_mistakes_are_usage_errors_before_systemd_is_asked() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    render(&example(), &out);
    let manifest = out.join("share/nixarr-units/manifest.json");
    let m = manifest.to_str().unwrap();
    let bus = "unix:path=/nonexistent/bus";
    for verb in ["start", "stop", "restart", "status"] {
        let a = bin()
            .args([
                verb,
                "--profile",
                "dowloads",
                "--manifest",
                m,
                "--bus-address",
                bus,
            ])
            .assert()
            .code(2)
            .stdout("");
        let e = stderr_of(&a);
        assert!(e.contains("did you mean `downloads`?"), "{verb}: {e}");
        assert!(
            e.contains("profiles here: core, downloads, media, music, requests, subtitles, vpn"),
            "{verb}: {e}"
        );
    }
    bin()
        .args(["start", "--profile", "core", "--all", "--manifest", m])
        .assert()
        .code(2);
    bin().args(["start", "--manifest", m]).assert().code(2);
    // A stack without Gluetun has no VPN to start or stop.
    let spec = write(
        t.path(),
        "novpn.json",
        r#"{"version":1,"engine":{"version":"5.4"},"services":{"sonarr":{"app":"sonarr"}}}"#,
    );
    let out2 = t.path().join("out2");
    render(&spec, &out2);
    let m2 = out2.join("share/nixarr-units/manifest.json");
    for verb in ["start", "stop"] {
        let a = bin()
            .args([
                "vpn",
                verb,
                "--manifest",
                m2.to_str().unwrap(),
                "--bus-address",
                bus,
            ])
            .assert()
            .code(2);
        assert!(
            stderr_of(&a).contains("no VPN service"),
            "{}",
            stderr_of(&a)
        );
    }
}

#[test]
fn one_vocabulary_counts_and_hidden_internal_commands() {
    let help = stdout_of(&bin().arg("--help").assert().success());
    for shown in [
        "init",
        "config",
        "catalog",
        "diff",
        "completions",
        "man",
        "status",
        "vpn",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{shown} "))),
            "{shown} not in --help:\n{help}"
        );
    }
    for hidden in ["generator", "secrets", "heal", "wait-healthy", "ensure-dir"] {
        assert!(
            !help
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{hidden} "))),
            "{hidden} in --help:\n{help}"
        );
    }
    let t = tempfile::tempdir().unwrap();
    let spec = write(
        t.path(),
        "one.json",
        r#"{"version":1,"engine":{"version":"5.4"},"services":{"sonarr":{"app":"sonarr"}}}"#,
    );
    let v = stdout_of(
        &bin()
            .args(["validate", "--spec"])
            .arg(&spec)
            .assert()
            .success(),
    );
    assert!(v.contains("valid; 1 service on podman ("), "{v}");
    let r = stdout_of(
        &bin()
            .args(["render", "--spec"])
            .arg(&spec)
            .arg("--out")
            .arg(t.path().join("out"))
            .assert()
            .success(),
    );
    assert!(r.starts_with("rendered 1 service (podman)"), "{r}");
}

#[test]
fn logs_of_several_services_since_a_time() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    render(&example(), &out);
    // A journalctl that prints the arguments it was given.
    let bindir = t.path().join("bin");
    std::fs::create_dir(&bindir).unwrap();
    let fake = write(&bindir, "journalctl", "#!/bin/sh\necho \"$@\"\n");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap());
    let a = bin()
        .args([
            "logs",
            "sonarr",
            "radarr",
            "--since",
            "-1h",
            "-n",
            "5",
            "--manifest",
        ])
        .arg(out.join("share/nixarr-units/manifest.json"))
        .env("PATH", path)
        .assert()
        .success();
    let args = stdout_of(&a);
    for want in [
        "-u nixarr-sonarr.service -u nixarr-sonarr-secrets.service",
        "-u nixarr-radarr.service -n 5",
        "--since -1h",
    ] {
        assert!(args.contains(want), "{want:?} not in {args}");
    }
    // The bridge units come from the manifest: radarr has no secrets, so no
    // bridge (a name made up by string replacement would be asked for).
    assert!(!args.contains("nixarr-radarr-secrets"), "{args}");
    bin().arg("logs").assert().code(2);
}
