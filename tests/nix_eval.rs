//! The NixOS module, evaluated with nixpkgs' lib alone (`NIXPKGS_LIB`, see
//! tests/run.sh) and `nix-instantiate`: every scenario in tests/nix/scenarios
//! either produces a spec that this very binary validates and renders, fails
//! exactly the assertions it expects, or fails evaluation naming the option.
//! Also: every .nix file parses, and docs/options.md is current.
//!
//! Without `nix-instantiate` or `NIXPKGS_LIB` these tests print a loud
//! "SKIPPED: ..." line and pass (the Nix build sandbox has neither).

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

#[path = "support/tmux.rs"]
mod tmux;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_nixarr-units");

fn skipped(why: &str) {
    // Both streams, so it shows with and without --nocapture.
    println!("SKIPPED: {why}");
    eprintln!("SKIPPED: {why}");
}

fn have_nix_instantiate() -> bool {
    Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// nixpkgs' lib directory, or None (after saying so) when it cannot run here.
fn nixpkgs_lib(test: &str) -> Option<PathBuf> {
    if !have_nix_instantiate() {
        skipped(&format!("{test}: nix-instantiate is not installed"));
        return None;
    }
    match std::env::var_os("NIXPKGS_LIB") {
        Some(p) if Path::new(&p).join("default.nix").is_file() => Some(PathBuf::from(p)),
        Some(p) => {
            skipped(&format!(
                "{test}: NIXPKGS_LIB={} has no default.nix (point it at nixpkgs' lib/ directory)",
                Path::new(&p).display()
            ));
            None
        }
        None => {
            skipped(&format!(
                "{test}: NIXPKGS_LIB is unset (tests/run.sh sets it to a copy of nixpkgs' lib/)"
            ));
            None
        }
    }
}

fn nix_eval(lib: &Path, file: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("nix-instantiate");
    cmd.current_dir(ROOT)
        .args(["--eval", "--strict", "--json", file])
        .arg("--arg")
        .arg("nixpkgsLib")
        .arg(lib)
        .args(args);
    cmd.output().unwrap()
}

fn json(out: &Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what}: nix-instantiate failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Evaluate `attr` of a scenario: `which` is `["--argstr", "scenario",
/// NAME]` or `["--arg", "scenarioFile", PATH]`.
fn eval_scenario(lib: &Path, which: &[&str], attr: &str) -> Output {
    let mut args = which.to_vec();
    args.extend(["-A", attr]);
    nix_eval(lib, "tests/nix/eval.nix", &args)
}

fn run_bin(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn scenario(name: &str) {
    let Some(lib) = nixpkgs_lib(&format!("scenario {name}")) else {
        return;
    };
    scenario_from(&lib, name, &["--argstr", "scenario", name]);
}

/// Evaluate a scenario (see [`eval_scenario`] for `which`) and check it:
/// its assertions, checks and warnings, and that its spec renders.
// One pass over a scenario's outcomes in the order they are decided.
#[allow(clippy::too_many_lines)]
fn scenario_from(lib: &Path, name: &str, which: &[&str]) {
    let lib = lib.to_path_buf();
    let meta = json(&eval_scenario(&lib, which, "meta"), name);
    println!("scenario {name}: {}", meta["description"].as_str().unwrap());

    let out = eval_scenario(&lib, which, "result");
    if let Some(expected) = meta["evalError"].as_str() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: evaluation should fail naming `{expected}` but succeeded"
        );
        assert!(
            stderr.contains(expected),
            "{name}: the evaluation error should name `{expected}`:\n{stderr}"
        );
        return;
    }
    let result = json(&out, name);

    let failed: Vec<&str> = result["failedAssertions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = meta["expectedAssertions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for e in &expected {
        assert!(
            failed.iter().any(|f| f.contains(e)),
            "{name}: expected a failed assertion containing\n  {e}\nfailed assertions:\n  {}",
            failed.join("\n  ")
        );
    }
    for f in &failed {
        assert!(
            expected.iter().any(|e| f.contains(e)),
            "{name}: unexpected failed assertion:\n  {f}"
        );
    }
    if !expected.is_empty() {
        return;
    }

    let checks = result["checks"].as_object().unwrap();
    let bad: Vec<&String> = checks
        .iter()
        .filter(|(_, ok)| ok.as_bool() != Some(true))
        .map(|(k, _)| k)
        .collect();
    assert!(bad.is_empty(), "{name}: checks failed: {bad:?}");
    println!("scenario {name}: {} checks passed", checks.len());

    // Warnings, like assertions: each expected one given, no other.
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_owned())
            .collect()
    };
    let warnings = strs(&result["warnings"]);
    let expected_warnings = strs(&meta["expectedWarnings"]);
    for e in &expected_warnings {
        assert!(
            warnings.iter().any(|w| w.contains(e.as_str())),
            "{name}: expected a warning containing\n  {e}\nwarnings:\n  {}",
            warnings.join("\n  ")
        );
    }
    for w in &warnings {
        assert!(
            expected_warnings.iter().any(|e| w.contains(e.as_str())),
            "{name}: unexpected warning:\n  {w}"
        );
    }

    // The spec the module produced must be accepted by the binary and render.
    let spec = &result["spec"];
    if meta["noSpec"].as_bool() == Some(true) {
        assert!(spec.is_null(), "{name}: expected no spec (stack disabled)");
        return;
    }
    assert!(spec.is_object(), "{name}: no spec");
    secrets_are_paths_only(name, spec);
    let spec = &with_local_lock(spec);
    let dir = tempfile::tempdir().unwrap();
    let spec_file = dir.path().join(format!("{name}.json"));
    std::fs::write(&spec_file, serde_json::to_vec_pretty(spec).unwrap()).unwrap();
    let spec_arg = spec_file.to_str().unwrap();
    let v = run_bin(&["validate", "--spec", spec_arg]);
    assert!(
        v.status.success(),
        "{name}: the binary rejects the module's spec:\n{}\n{}",
        String::from_utf8_lossy(&v.stderr),
        serde_json::to_string_pretty(spec).unwrap()
    );
    let out_dir = dir.path().join("out");
    let r = run_bin(&[
        "render",
        "--spec",
        spec_arg,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        r.status.success(),
        "{name}: render failed:\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let prefix = spec["prefix"].as_str().unwrap();
    let units = out_dir.join("lib/systemd/system");
    for svc in spec["services"].as_object().unwrap().keys() {
        let unit = units.join(format!("{prefix}-{svc}.service"));
        assert!(
            unit.is_file(),
            "{name}: {} was not rendered",
            unit.display()
        );
    }
    assert!(units.join(format!("{prefix}.target")).is_file());
    assert!(out_dir.join("share/nixarr-units/manifest.json").is_file());
}

/// The spec with its `imageLock` store path (which `nix-instantiate
/// --eval` computes without adding the file to the store) replaced by the
/// fixture it was made from (`tests/nix/fixtures/<name>`), as the units'
/// derivation would read it.
fn with_local_lock(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Some(lock) = spec["imageLock"].as_str() {
        let name = lock.rsplit('/').next().unwrap();
        let name = name.split_once('-').map_or(name, |(_, n)| n);
        spec["imageLock"] = format!("{ROOT}/tests/nix/fixtures/{name}").into();
    }
    spec
}

/// Every string anywhere in a value, with its JSON path.
fn strings<'a>(v: &'a Value, path: String, acc: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => acc.push((path, s)),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                strings(x, format!("{path}[{i}]"), acc);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                strings(x, format!("{path}.{k}"), acc);
            }
        }
        _ => {}
    }
}

/// A spec (which lands in the world-readable Nix store) names secrets by
/// their files only: each secret is `{ file, mode?, podmanSecretType?,
/// fileEnv?, allowEnvironmentValue? }`
/// with an absolute path outside the store, and no string anywhere in the
/// spec is a sops-nix placeholder (the stub's `<SOPS:…>`) or a value.
fn secrets_are_paths_only(name: &str, spec: &Value) {
    for (svc, s) in spec["services"].as_object().unwrap() {
        let Some(secrets) = s.get("secrets") else {
            continue;
        };
        for (var, secret) in secrets.as_object().unwrap() {
            let where_ = format!("{name}: services.{svc}.secrets.{var}");
            let obj = secret.as_object().unwrap();
            for key in obj.keys() {
                assert!(
                    matches!(
                        key.as_str(),
                        "file" | "mode" | "podmanSecretType" | "fileEnv" | "allowEnvironmentValue"
                    ),
                    "{where_}: unexpected key `{key}` (only file, mode, podmanSecretType, fileEnv, allowEnvironmentValue)"
                );
            }
            let file = obj["file"].as_str().unwrap();
            assert!(
                file.starts_with('/') && !file.starts_with("/nix/store/"),
                "{where_}.file = {file:?} is not a path outside the store"
            );
            if let Some(m) = obj.get("mode") {
                assert!(
                    matches!(
                        m.as_str(),
                        Some("file" | "env" | "envFile" | "podmanSecret")
                    ),
                    "{where_}.mode = {m}"
                );
            }
            if let Some(t) = obj.get("podmanSecretType") {
                assert!(
                    matches!(t.as_str(), Some("env" | "mount")),
                    "{where_}.podmanSecretType = {t}"
                );
            }
        }
    }
    let mut all = Vec::new();
    strings(spec, String::new(), &mut all);
    for (path, s) in all {
        assert!(
            !s.contains("<SOPS:") && !s.contains("PLACEHOLDER"),
            "{name}: spec{path} holds a secret placeholder: {s:?}"
        );
    }
}

macro_rules! scenarios {
    ($($test:ident => $file:literal,)*) => {
        $(
            #[test]
            fn $test() {
                scenario($file);
            }
        )*

        const SCENARIOS: &[&str] = &[$($file),*];
    };
}

scenarios! {
    one_app => "one-app",
    full_stack_with_vpn_and_secrets => "full-stack",
    two_sonarr_instances_docker_generic_container => "two-sonarr",
    migration_allows_native_service => "migrate",
    disabled_stack_installs_nothing => "disabled",
    assertion_native_and_container => "assert-native",
    assertion_port_clash => "assert-port",
    assertion_vpn_disabled => "assert-vpn",
    file_secrets_without_sops => "file-secrets-without-sops",
    assertion_sops_secret_without_sops => "assert-sops-missing",
    assertion_secret_rules => "assert-secrets",
    assertion_podman_secret_with_docker => "assert-podman-secret-docker",
    assertion_names_dependencies_environment => "assert-names",
    assertion_cycle_and_health_port => "assert-cycle",
    type_error_port_string => "type-port",
    type_error_port_range => "type-port-range",
    type_error_umask => "type-umask",
    type_error_unknown_app => "type-app",
    type_error_volume_path => "type-volume",
    type_error_device_permissions => "type-device",
    type_error_secret_in_store => "type-secret-store",
    flake_modules_imported_together => "flake-both-modules",
    non_flake_import_builds_the_package => "non-flake",
    non_flake_import_with_overlay => "non-flake-overlay",
    dns_open_on_the_stack_bridge_podman => "dns-firewall",
    dns_docker_needs_no_firewall_rule => "dns-firewall-docker",
    assertion_sops_secret_not_declared => "assert-sops-undeclared",
    sops_secret_with_own_file_without_default => "sops-no-default-file",
    closed_firewall_publishes_on_loopback => "firewall-closed",
    closed_firewall_publishes_on_bind_address => "firewall-bind-address",
    assertion_native_plain_systemd_unit => "assert-native-unit",
    container_ids_declared_as_system_users => "users-allocated",
    assertion_uid_collision => "assert-uid-collision",
    container_ids_not_declared_when_asked => "users-not-created",
    migration_seerr_from_nixpkgs_config_dir => "migrate-seerr-nixpkgs",
    image_lock_reaches_the_spec => "image-lock",
    backups_scheduled_and_prepared_for_restic => "backup",
    proxy_nginx_virtual_hosts => "proxy-nginx",
    proxy_caddy_virtual_hosts => "proxy-caddy",
    assertion_proxy_not_enabled => "assert-proxy",
    auto_update_reaches_the_spec => "auto-update",
    assertion_auto_update_of_a_pinned_service => "assert-auto-update-pinned",
    api_reaches_the_spec => "api",
    api_as_root_has_no_polkit_rule => "api-root",
    reconcile_timer_asked_by_the_module => "reconcile",
}

/// Evaluate `scenario` and render its spec: the evaluation's `result` and
/// the render's directory (kept while the `TempDir` lives).
fn render_scenario(lib: &Path, scenario: &str) -> (Value, tempfile::TempDir, PathBuf) {
    let result = json(
        &eval_scenario(lib, &["--argstr", "scenario", scenario], "result"),
        scenario,
    );
    let (dir, out) = render_spec(
        &result["spec"],
        &["--self-exe", "/run/current-system/sw/bin/nixarr-units"],
    );
    (result, dir, out)
}

/// Render `spec` with the binary (plus `extra` arguments) into a fresh
/// directory: the `TempDir` and its `out`.
fn render_spec(spec: &Value, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.json");
    std::fs::write(&path, serde_json::to_vec(spec).unwrap()).unwrap();
    let out = dir.path().join("out");
    let mut args = vec![
        "render",
        "--spec",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = run_bin(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    (dir, out)
}

/// The polkit rule the module sets (`security.polkit.extraConfig`) is the
/// file `render` writes for the module's spec, byte for byte.
#[test]
fn api_polkit_rule_is_the_rendered_one() {
    let Some(lib) = nixpkgs_lib("api_polkit_rule_is_the_rendered_one") else {
        return;
    };
    let (result, _dir, out) = render_scenario(&lib, "api");
    let rendered =
        std::fs::read_to_string(out.join("share/polkit-1/rules.d/50-nixarr-api.rules")).unwrap();
    let module = result["polkitRules"].as_str().unwrap();
    assert!(
        rendered.contains("subject.user == \"nixarr-api\""),
        "{rendered}"
    );
    assert_eq!(module, rendered);
}

/// `reconcile.enable`: the module's spec renders the reconcile timer and a
/// service running the pass with `--prune`.
#[test]
fn reconcile_option_renders_the_timer() {
    let Some(lib) = nixpkgs_lib("reconcile_option_renders_the_timer") else {
        return;
    };
    let (_, _dir, out) = render_scenario(&lib, "reconcile");
    let unit =
        |name: &str| std::fs::read_to_string(out.join("lib/systemd/system").join(name)).unwrap();
    let service = unit("media-reconcile.service");
    assert!(
        service.contains(
            "ExecStart=/run/current-system/sw/bin/nixarr-units reconcile --stack=media --summary --prune\n"
        ),
        "{service}"
    );
    assert!(unit("media-reconcile.timer").contains("OnUnitActiveSec=600s"));
    assert!(unit("media.target").contains("media-reconcile.timer"));
}

/// `imageLock`: the units the module's spec renders run Sonarr at the
/// locked digest (the tag in a label) and Radarr, which has no entry, by
/// its tag.
#[test]
fn image_lock_pins_the_rendered_units() {
    let Some(lib) = nixpkgs_lib("image_lock_pins_the_rendered_units") else {
        return;
    };
    let result = json(
        &eval_scenario(&lib, &["--argstr", "scenario", "image-lock"], "result"),
        "image-lock",
    );
    assert!(
        result["spec"]["imageLock"]
            .as_str()
            .unwrap()
            .ends_with("-images.lock.json")
    );
    let (_dir, out) = render_spec(&with_local_lock(&result["spec"]), &[]);
    let unit = |svc: &str| {
        std::fs::read_to_string(out.join(format!("lib/systemd/system/nixarr-{svc}.service")))
            .unwrap()
    };
    let exec_start = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("ExecStart="))
            .unwrap()
            .to_owned()
    };
    let sonarr = unit("sonarr");
    assert!(
        exec_start(&sonarr).ends_with(
            " lscr.io/linuxserver/sonarr@sha256:1111111111111111111111111111111111111111111111111111111111111111"
        ),
        "{sonarr}"
    );
    assert!(sonarr.contains("--label=io.nixarr.image.tag=lscr.io/linuxserver/sonarr:latest"));
    assert!(exec_start(&unit("radarr")).ends_with(" lscr.io/linuxserver/radarr:latest"));
}

/// A scenario file without a test here would silently not run.
#[test]
fn every_scenario_file_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("tests/nix/scenarios"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|f| f.strip_suffix(".nix").map(str::to_owned))
        .collect();
    files.sort();
    let mut listed: Vec<String> = SCENARIOS.iter().map(|s| (*s).to_owned()).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "tests/nix/scenarios and the scenarios! list differ"
    );
}

fn nix_files(dir: &Path, acc: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type().unwrap().is_dir() {
            if !matches!(name.as_ref(), ".git" | "target" | "out" | "result") {
                nix_files(&path, acc);
            }
        } else if name.ends_with(".nix") {
            acc.push(path);
        }
    }
}

#[test]
fn every_nix_file_parses() {
    if !have_nix_instantiate() {
        skipped("every_nix_file_parses: nix-instantiate is not installed");
        return;
    }
    let mut files = Vec::new();
    nix_files(Path::new(ROOT), &mut files);
    assert!(files.len() >= 5, "found only {files:?}");
    for f in &files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not parse:\n{}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    println!("{} .nix files parse", files.len());
}

#[test]
fn options_doc_is_current() {
    let Some(lib) = nixpkgs_lib("options_doc_is_current") else {
        return;
    };
    let doc = json(&nix_eval(&lib, "nix/options-doc.nix", &[]), "options doc");
    let doc = doc.as_str().unwrap();
    let path = Path::new(ROOT).join("docs/options.md");
    if std::env::var_os("UPDATE_OPTIONS_DOC").is_some() {
        std::fs::write(&path, doc).unwrap();
        println!("wrote {}", path.display());
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == doc,
        "docs/options.md is stale; regenerate it with\n  UPDATE_OPTIONS_DOC=1 cargo test --test nix_eval options_doc"
    );
}

/// The module's limits and reserved names are the binary's: each side is
/// written once (modules/lib.nix, src/limits.rs and src/naming.rs), and
/// this fails when one changes without the other. Option types take their
/// bounds from `limits` (through `between`), never from numbers of their own.
#[test]
fn module_limits_are_the_binarys() {
    let Some(lib) = nixpkgs_lib("module_limits_are_the_binarys") else {
        return;
    };
    let nix = json(&nix_eval(&lib, "tests/nix/limits.nix", &[]), "limits");
    let rust: serde_json::Map<String, Value> = nixarr_units::limits::ALL
        .iter()
        .map(|(name, range)| {
            let bounds = serde_json::json!({"min": range.start(), "max": range.end()});
            ((*name).to_owned(), bounds)
        })
        .collect();
    assert_eq!(
        nix["limits"],
        Value::Object(rust),
        "modules/lib.nix `limits`"
    );
    assert_eq!(
        nix["reservedNames"],
        serde_json::json!(nixarr_units::naming::reserved_service_names()),
        "modules/lib.nix `reservedNames`"
    );
    assert_eq!(
        nix["reservedSuffixes"],
        serde_json::json!(nixarr_units::naming::reserved_suffixes()),
        "modules/lib.nix `reservedSuffixes`"
    );
    assert_eq!(nix["labelPrefix"], nixarr_units::model::LABEL_PREFIX);

    let mut files = Vec::new();
    nix_files(&Path::new(ROOT).join("modules"), &mut files);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            assert!(
                !line.contains("ints.between") || line.contains("limits.${limit}"),
                "{}:{}: an option bound of its own; add it to `limits` in modules/lib.nix \
                 and src/limits.rs and use `between`:\n{line}",
                file.display(),
                i + 1
            );
        }
    }
}

/// Run `script` in bash in `dir` as stdenv runs a phase: `$out` set, and
/// each of `hooks` (read from `phases`) as a variable.
fn bash_phase(dir: &Path, script: &str, out: &Path, phases: &Value, hooks: &[&str]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(script).current_dir(dir).env("out", out);
    for h in hooks {
        cmd.env(h, phases[*h].as_str().unwrap());
    }
    cmd.output().unwrap()
}

/// The flake's module-eval check installs nothing but `$out` (a file): its
/// install phase, with every hook nix/package.nix adds, must succeed the
/// way stdenv runs it (the package's `ln -s … $out/bin/nixarr-migrate`
/// once failed there with "Not a directory").
#[test]
fn module_eval_check_install_phase_runs() {
    let Some(lib) = nixpkgs_lib("module_eval_check_install_phase_runs") else {
        return;
    };
    let phases = json(
        &nix_eval(&lib, "tests/nix/module-eval-phases.nix", &[]),
        "module-eval phases",
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // stdenv's runHook runs a hook variable's text as shell code.
    let script = r#"set -eu
runHook() { eval "${!1:-}"; }
eval "$installPhase"
test -e "$out"
"#;
    let run = bash_phase(
        dir.path(),
        script,
        &out,
        &phases,
        &["installPhase", "preInstall", "postInstall"],
    );
    assert!(
        run.status.success(),
        "the module-eval check's install phase fails:\n{}\ninstallPhase:\n{}\npostInstall:\n{}",
        String::from_utf8_lossy(&run.stderr),
        phases["installPhase"],
        phases["postInstall"]
    );
}

/// The module's tmpfiles rules, applied twice by the real systemd-tmpfiles
/// (on a scratch root): the first run creates every directory with the
/// module's owner and mode; after the user changes them, the second run
/// leaves the user's trees (dataDir, stateDir) alone and puts the
/// container's config directory back to the container's owner.
#[test]
fn tmpfiles_rules_keep_the_users_choice() {
    let Some(lib) = nixpkgs_lib("tmpfiles_rules_keep_the_users_choice") else {
        return;
    };
    if !is_root() {
        skipped("tmpfiles_rules_keep_the_users_choice: needs root (chown)");
        return;
    }
    let result = json(
        &eval_scenario(&lib, &["--argstr", "scenario", "one-app"], "result"),
        "one-app",
    );
    let rules: Vec<&str> = result["tmpfilesRules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc/tmpfiles.d")).unwrap();
    std::fs::write(r.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\nmedia:x:169:\n").unwrap();
    std::fs::write(
        r.join("etc/tmpfiles.d/nixarr-units.conf"),
        rules.join("\n") + "\n",
    )
    .unwrap();
    let apply = || {
        let out = Command::new("systemd-tmpfiles")
            .arg("--create")
            .arg(format!("--root={}", r.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "systemd-tmpfiles failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let stat = |p: &str| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(r.join(p)).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    apply();
    assert_eq!(stat("data"), (0o2775, 0, 169), "dataDir on creation");
    assert_eq!(
        stat("var/lib/nixarr"),
        (0o755, 0, 0),
        "stateDir on creation"
    );
    assert_eq!(stat("var/lib/nixarr/sonarr"), (0o750, 568, 169));

    for p in ["data", "var/lib/nixarr", "var/lib/nixarr/sonarr"] {
        std::os::unix::fs::chown(r.join(p), Some(1000), Some(1000)).unwrap();
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        std::fs::set_permissions(r.join(p), perms).unwrap();
    }
    apply();
    assert_eq!(stat("data"), (0o700, 1000, 1000), "the user's dataDir");
    assert_eq!(
        stat("var/lib/nixarr"),
        (0o700, 1000, 1000),
        "the user's stateDir"
    );
    assert_eq!(
        stat("var/lib/nixarr/sonarr"),
        (0o750, 568, 169),
        "the container's config directory follows its uid"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `nixarr-units init` in a real terminal writes a NixOS block: imported
/// as a module, it evaluates without assertions or warnings, and its spec
/// validates and renders (as every scenario's).
#[test]
fn init_wizard_nix_block_evaluates() {
    let Some(lib) = nixpkgs_lib("init_wizard_nix_block_evaluates") else {
        return;
    };
    if !tmux::Tmux::available() {
        skipped("init_wizard_nix_block_evaluates: tmux is not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let block = t.path().join("nixarr-units.nix");
    let term = tmux::Tmux::start(
        t.path(),
        t.path(),
        &[BIN, "init", "--format", "nix", "--backend", "docker"],
    );
    // Core is picked; add lidarr (4th) and transmission (the last, 10th).
    term.wait_for("transmission");
    term.keys(&["Down", "Down", "Down", "Space"]);
    for _ in 0..6 {
        term.keys(&["Down"]);
    }
    term.keys(&["Space", "Enter"]);
    term.answer("Which container engine?", &["Enter"]);
    term.answer("Route transmission through a VPN", &["y", "Enter"]);
    term.answer("VPN provider", &["Enter"]);
    term.answer("VPN type?", &["Enter"]);
    term.wait_for("File that holds WIREGUARD_PRIVATE_KEY?");
    term.type_text("/run/agenix/wg-key");
    term.keys(&["Enter"]);
    term.wait_for("Time zone");
    term.type_text("America/New_York");
    term.keys(&["Enter"]);
    term.answer("User id", &["Enter"]);
    term.wait_for("Group id");
    term.type_text("1234");
    term.keys(&["Enter"]);
    term.answer("configuration?", &["Enter"]);
    term.answer("media tree", &["Enter"]);
    term.answer("Write nixarr-units.nix?", &["Enter"]);
    let done = term.wait_for("EXIT=");
    assert!(done.contains("EXIT=0"), "{done}");
    assert!(done.contains("imports = [ ./nixarr-units.nix ];"), "{done}");

    let text = std::fs::read_to_string(&block).unwrap();
    assert!(
        text.contains("secrets.WIREGUARD_PRIVATE_KEY.file = \"/run/agenix/wg-key\";"),
        "{text}"
    );
    let scenario = t.path().join("scenario.nix");
    std::fs::write(
        &scenario,
        format!(
            "{{ lib }}:\n{{\n  description = \"the block nixarr-units init wrote\";\n  \
             sops = false;\n  config = import {};\n  checks = config: let spec = \
             config.services.nixarr-units.spec; in {{\n    \
             apps = builtins.attrNames spec.services == [ \"gluetun\" \"lidarr\" \"prowlarr\" \
             \"radarr\" \"sonarr\" \"transmission\" ];\n    \
             vpn = spec.services.transmission.vpn && !(spec.services.sonarr.vpn or false);\n    \
             key = spec.services.gluetun.secrets.WIREGUARD_PRIVATE_KEY.file == \"/run/agenix/wg-key\";\n    \
             tz = spec.defaults.tz == \"America/New_York\" && spec.defaults.pgid == 1234;\n    \
             docker = spec.backend == \"docker\";\n  }};\n}}\n",
            block.display()
        ),
    )
    .unwrap();
    scenario_from(
        &lib,
        "init",
        &["--arg", "scenarioFile", scenario.to_str().unwrap()],
    );
}

/// The package's postInstall (the `nixarr-migrate` link, completions and
/// man pages for both names) run as stdenv runs it, with stand-ins for
/// installShellFiles' two functions that keep what they are given: every
/// completion script loads in bash and every man page is there.
#[test]
fn package_installs_completions_and_man_pages() {
    let Some(lib) = nixpkgs_lib("package_installs_completions_and_man_pages") else {
        return;
    };
    let phases = json(
        &nix_eval(&lib, "tests/nix/package-phases.nix", &[]),
        "package phases",
    );
    assert_eq!(
        phases["nativeBuildInputs"],
        serde_json::json!(["installShellFiles"])
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("bin")).unwrap();
    std::fs::copy(BIN, out.join("bin/nixarr-units")).unwrap();
    // installShellFiles' functions, reduced to what they install where.
    let script = r#"set -eu
installShellCompletion() {
  local cmd=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --cmd) cmd="$2"; shift 2 ;;
      --bash|--fish|--zsh) mkdir -p "$out/share/$1"; cat "$2" > "$out/share/$1/$cmd"; shift 2 ;;
      *) echo "unexpected argument $1" >&2; return 1 ;;
    esac
  done
}
installManPage() { mkdir -p "$out/share/man/man1"; cp "$@" "$out/share/man/man1/"; }
eval "$postInstall"
"#;
    let run = bash_phase(dir.path(), script, &out, &phases, &["postInstall"]);
    assert!(
        run.status.success(),
        "postInstall fails:\n{}\n{}",
        String::from_utf8_lossy(&run.stderr),
        phases["postInstall"]
    );
    assert!(out.join("bin/nixarr-migrate").is_symlink());
    for name in ["nixarr-units", "nixarr-migrate"] {
        for shell in ["--fish", "--zsh"] {
            let f = out.join(format!("share/{shell}/{name}"));
            assert!(std::fs::metadata(&f).unwrap().len() > 0, "{}", f.display());
        }
        let bash = out.join(format!("share/--bash/{name}"));
        let loaded = Command::new("bash")
            .arg("-c")
            .arg(format!("source '{}' && complete -p {name}", bash.display()))
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&loaded.stdout).contains(name),
            "{name}: {}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        assert!(out.join(format!("share/man/man1/{name}.1")).is_file());
    }
}
