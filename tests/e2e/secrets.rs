//! The no-leak rule of secret bridges (issue 7), end to end on real systemd
//! with podman and with Docker (one machine per backend, see harness/).
//!
//! Secrets get random values, unique per secret and run, in sources laid
//! out as sops-nix does (`/run/secrets` → `/run/secrets.d/<generation>`,
//! mode 0400). Each mode is delivered and checked from inside the container;
//! then every place a value must never reach is searched for it (and for its
//! base64 form): rendered units, manifest, spec, the machine's /run, /tmp and
//! /etc/systemd, every process's argv (and the environment of every process
//! outside the containers) on the host and in the machine — sampled in a
//! loop while the bridges run —, `inspect`, the journal, dockerd's and the
//! console's output, and nixarr-units' own output. A hit fails the scenario
//! and says where, showing only a prefix of the value. Places where the
//! engine itself keeps values (its container config and secret store, and
//! `inspect` for env-file variables, documented in docs/spec.md) are
//! reported as notes, not failures.
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness;
use crate::harness::{
    Backend, BootOptions, IMAGE, Machine, Scenario, ScenarioFn, free_port, http_get, wait_for,
};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

const SCENARIOS: &[(&str, ScenarioFn)] = &[
    (
        "1 every mode delivers the exact value, nothing leaks, stop removes the copies",
        delivers_without_leaks,
    ),
    (
        "2 missing secret keeps the container down and says which",
        missing_secret,
    ),
    ("3 rotated secret arrives after a restart", rotated_secret),
    (
        "4 symlink to a directory or to /dev/zero is refused",
        bad_link_targets,
    ),
    (
        "5 group/world-readable source is delivered with a warning",
        readable_source_warns,
    ),
];

fn run_backend(backend: Backend, opts: BootOptions) {
    harness::run_suite_booted(
        "end-to-end secret tests",
        backend,
        opts,
        SCENARIOS,
        None,
        sops_layout,
        |m| {
            if backend == Backend::Podman {
                remove_test_podman_secrets(m);
            }
        },
    );
}

#[test]
fn podman() {
    run_backend(Backend::Podman, BootOptions::default());
}

/// On podman 5 (the trixie machine): `podman secret` with type=env hidden
/// from inspect (podman ≥ 5.3).
#[test]
fn podman5() {
    run_backend(Backend::Podman, harness::PODMAN5);
}

#[test]
fn docker() {
    run_backend(Backend::Docker, BootOptions::default());
}

// ------------------------------------------------------------ the values

/// Label of the control value that the leak search must find.
const CANARY: &str = "CANARY (control value)";

/// 32 random hex characters.
fn random_value() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a failure may show of a value.
fn shown(value: &str) -> String {
    format!("{}…", &value[..6])
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        for _ in chunk.len()..3 {
            out.push('=');
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// No `mode` in the spec: the default, a file for every service.
    Default,
    /// `"mode": "env"`; `true` where the engine would show the value (Docker,
    /// podman < 5.3), so the spec acknowledges it.
    Env(bool),
    File,
    EnvFile,
    PodmanEnv,
    PodmanMount,
}

/// One secret of the test: the service and variable it is for, its value
/// and where its source is.
#[derive(Clone)]
struct Sec {
    svc: String,
    var: String,
    mode: Mode,
    value: String,
    /// The variable holding the path, for `file` mode.
    path_env: Option<String>,
    /// File name under /run/secrets.
    source_name: String,
    /// The secret's own `fileEnv` in the spec.
    file_env: Option<String>,
}

impl Sec {
    fn label(&self) -> String {
        format!(
            "{}/{} ({:?}, {})",
            self.svc,
            self.var,
            self.mode,
            shown(&self.value)
        )
    }
    fn source(&self) -> String {
        format!("/run/secrets/{}", self.source_name)
    }
    fn spec(&self) -> Value {
        let mut s = json!({ "file": self.source() });
        if let Some(v) = &self.file_env {
            s["fileEnv"] = json!(v);
        }
        match self.mode {
            Mode::Default => {}
            Mode::Env(exposed) => {
                s["mode"] = json!("env");
                if exposed {
                    s["allowEnvironmentValue"] = json!(true);
                }
            }
            Mode::File => s["mode"] = json!("file"),
            Mode::EnvFile => {
                // Shown by inspect: only with the acknowledgement.
                s["mode"] = json!("envFile");
                s["allowEnvironmentValue"] = json!(true);
            }
            Mode::PodmanEnv => {
                s["mode"] = json!("podmanSecret");
                s["podmanSecretType"] = json!("env");
            }
            Mode::PodmanMount => {
                s["mode"] = json!("podmanSecret");
                s["podmanSecretType"] = json!("mount");
            }
        }
        s
    }
    /// The strings that must not appear where they must not: the value and
    /// its base64 form.
    fn needles(&self) -> Vec<(String, Vec<u8>)> {
        vec![
            (self.label(), self.value.as_bytes().to_vec()),
            (
                format!("{} as base64", self.label()),
                base64(self.value.as_bytes()).into_bytes(),
            ),
        ]
    }
}

fn sec(sc: &Scenario, svc: &str, var: &str, mode: Mode, path_env: Option<&str>) -> Sec {
    Sec {
        svc: svc.to_owned(),
        var: var.to_owned(),
        mode,
        value: random_value(),
        path_env: path_env.map(|p| p.replace("{name}", var)),
        source_name: format!("{}-{svc}-{}", sc.prefix, var.to_lowercase()),
        file_env: None,
    }
}

// ---------------------------------------------- sources, sops-nix layout

/// `/run/secrets` → `/run/secrets.d/1` in the machine.
fn sops_layout(m: &Machine) -> Result<()> {
    let root = m.root();
    fs_err::create_dir_all(root.join("run/secrets.d/1"))?;
    set_mode(&root.join("run/secrets.d"), 0o751)?;
    set_mode(&root.join("run/secrets.d/1"), 0o751)?;
    fs_err::os::unix::fs::symlink("/run/secrets.d/1", root.join("run/secrets"))?;
    Ok(())
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The generation directory /run/secrets points at, as a host path. (The
/// link is absolute in the machine's namespace: never follow it from here.)
fn current_generation(m: &Machine) -> Result<PathBuf> {
    let target = fs_err::read_link(m.root().join("run/secrets"))?;
    let rel = target
        .strip_prefix("/")
        .context("/run/secrets is not absolute")?;
    Ok(m.root().join(rel))
}

/// Write a source as sops-nix does: root, 0400 (or `mode`).
fn write_source(m: &Machine, name: &str, value: &[u8], mode: u32) -> Result<()> {
    let p = current_generation(m)?.join(name);
    let _ = fs_err::remove_file(&p);
    fs_err::write(&p, value)?;
    set_mode(&p, mode)
}

fn write_sources(m: &Machine, secrets: &[Sec]) -> Result<()> {
    for s in secrets {
        write_source(m, &s.source_name, s.value.as_bytes(), 0o400)?;
    }
    Ok(())
}

/// A new sops-nix generation: copy the current one, apply `changes`, then
/// swap the /run/secrets link atomically.
fn new_generation(m: &Machine, changes: &[Sec]) -> Result<()> {
    let root = m.root();
    let old = current_generation(m)?;
    let n: u32 = old
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.parse().ok())
        .context("generation is not a number")?;
    let new = root.join(format!("run/secrets.d/{}", n + 1));
    fs_err::create_dir_all(&new)?;
    set_mode(&new, 0o751)?;
    for e in fs_err::read_dir(&old)? {
        let e = e?;
        let meta = fs_err::symlink_metadata(e.path())?;
        if meta.is_file() {
            fs_err::copy(e.path(), new.join(e.file_name()))?;
        }
    }
    for s in changes {
        let p = new.join(&s.source_name);
        let _ = fs_err::remove_file(&p);
        fs_err::write(&p, s.value.as_bytes())?;
        set_mode(&p, 0o400)?;
    }
    let tmp = root.join("run/secrets.tmp");
    let _ = fs_err::remove_file(&tmp);
    fs_err::os::unix::fs::symlink(format!("/run/secrets.d/{}", n + 1), &tmp)?;
    fs_err::rename(&tmp, root.join("run/secrets"))?;
    Ok(())
}

// ---------------------------------------------------------------- services

/// A fake app answering /ping when ready, with `secrets`.
fn service(port: u16, secrets: &[&Sec], secret_file_env: Option<&str>) -> Value {
    let mut map = serde_json::Map::new();
    for s in secrets {
        map.insert(s.var.clone(), s.spec());
    }
    let mut v = json!({
        "image": IMAGE,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": { "FAKE_STYLE": "arr" },
        "health": { "http": "/ping", "port": 8080, "expectBody": "OK" },
        "secrets": map,
        "stopTimeout": 10,
        "startTimeout": 120,
    });
    if let Some(p) = secret_file_env {
        v["secretFileEnv"] = json!(p);
    }
    v
}

fn environ(port: u16) -> Result<std::collections::BTreeMap<String, String>> {
    let (status, head, body) = http_get(port, "/environ")?;
    ensure!(status == 200, "GET /environ: {head}");
    Ok(harness::parse_environ(&body))
}

fn cat(port: u16, path: &str) -> Result<Option<Vec<u8>>> {
    let (status, head, body) = http_get(port, &format!("/cat{path}"))?;
    match status {
        200 => Ok(Some(body)),
        404 => Ok(None),
        _ => bail!("GET /cat{path}: {head}"),
    }
}

/// The container sees exactly the value, in the way its mode promises.
fn check_delivered(port: u16, s: &Sec) -> Result<()> {
    let env = environ(port)?;
    let in_container = format!("/run/secrets/{}", s.var);
    match s.mode {
        Mode::Default | Mode::File | Mode::PodmanMount => {
            ensure!(
                !env.values().any(|v| v.contains(&s.value)),
                "{}: the value is in the container's environment",
                s.label()
            );
            let got = cat(port, &in_container)?;
            ensure!(
                got.as_deref() == Some(s.value.as_bytes()),
                "{}: {in_container} in the container holds {}, not the value",
                s.label(),
                match &got {
                    None => "nothing (no such file)".to_owned(),
                    Some(b) => format!("{} bytes starting {:?}", b.len(), shown_bytes(b)),
                }
            );
        }
        Mode::EnvFile | Mode::PodmanEnv | Mode::Env(_) => {
            let got = env.get(&s.var);
            ensure!(
                got.map(String::as_str) == Some(s.value.as_str()),
                "{}: the container's {} is {:?}, not the value",
                s.label(),
                s.var,
                got.map(|g| shown_bytes(g.as_bytes()))
            );
        }
    }
    if let Some(var) = &s.path_env {
        ensure!(
            env.get(var) == Some(&in_container),
            "{}: the container's {var} is {:?}, not {in_container}",
            s.label(),
            env.get(var)
        );
    }
    Ok(())
}

fn shown_bytes(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(6).collect::<String>() + "…"
}

// ------------------------------------------------------------ leak search

/// Hits of `needles` in `hay`: the labels found.
fn hits<'a>(hay: &[u8], needles: &'a [(String, Vec<u8>)]) -> Vec<&'a str> {
    needles
        .iter()
        .filter(|(_, n)| hay.windows(n.len()).any(|w| w == n.as_slice()))
        .map(|(l, _)| l.as_str())
        .collect()
}

/// Where a value was found: failures, and notes for the engine's own state.
#[derive(Default)]
struct Findings {
    leaks: Vec<String>,
    notes: BTreeSet<String>,
}

impl Findings {
    fn scan(&mut self, place: &str, hay: &[u8], needles: &[(String, Vec<u8>)]) {
        for l in hits(hay, needles) {
            self.leaks.push(format!("{l} in {place}"));
        }
    }
    fn record(&mut self, place: &str, hay: &[u8], needles: &[(String, Vec<u8>)]) {
        for l in hits(hay, needles) {
            self.notes
                .insert(format!("{l} kept by the engine in {place}"));
        }
    }
    fn result(self, sc: &mut Scenario) -> Result<()> {
        sc.notes.extend(self.notes);
        if self.leaks.is_empty() {
            Ok(())
        } else {
            bail!(
                "secret values leaked ({}):\n  {}",
                self.leaks.len(),
                self.leaks.join("\n  ")
            )
        }
    }
}

/// Every regular file below `dir` (host path), not following symlinks and
/// skipping `skip` (host paths) and files over 16 MiB.
fn walk(dir: &Path, skip: &[PathBuf], f: &mut dyn FnMut(&Path, &[u8])) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if skip.iter().any(|s| p.starts_with(s)) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            walk(&p, skip, f);
        } else if meta.is_file()
            && meta.len() <= 16 << 20
            && let Ok(bytes) = std::fs::read(&p)
        {
            f(&p, &bytes);
        }
    }
}

/// Files in the machine that must never hold a value: all of /run (but the
/// sources, the bridge's copies and the engine's run state), /tmp, /var/tmp,
/// /etc/systemd and /etc/nixarr-units. Engine state is searched too, and
/// reported as notes.
fn scan_files(m: &Machine, needles: &[(String, Vec<u8>)], found: &mut Findings) {
    let root = m.root();
    let in_machine = |p: &Path| format!("/{}", p.strip_prefix(&root).unwrap_or(p).display());
    // Where values belong: the sources and the bridge's copies.
    let allowed = [
        root.join("run/secrets.d"),
        root.join("run/nixarr-units/secrets"),
        root.join("run/nixarr-units/env"),
    ];
    let engine_run = [
        root.join("run/containers"),
        root.join("run/libpod"),
        root.join("run/docker"),
        root.join("run/crun"),
        root.join("run/runc"),
    ];
    let mut skip: Vec<PathBuf> = allowed.to_vec();
    skip.extend(engine_run.iter().cloned());
    // The harness's directory, bound in at its host path (under /tmp): the
    // shared /run/nixarr-units and dockerd's state, searched on their own.
    let harness_dir = m.dir.path();
    skip.push(root.join(harness_dir.strip_prefix("/").unwrap_or(harness_dir)));
    // The build directory holding the binary, bound in for the generator
    // and at its own path (under /tmp when the checkout is there).
    skip.push(root.join(harness::MACHINE_BIN_DIR.trim_start_matches('/')));
    if let Some(exe_dir) = Path::new(harness::BIN).parent() {
        skip.push(root.join(exe_dir.strip_prefix("/").unwrap_or(exe_dir)));
    }
    for d in ["run", "tmp", "var/tmp", "etc/systemd", "etc/nixarr-units"] {
        walk(&root.join(d), &skip, &mut |p, b| {
            found.scan(&format!("file {}", in_machine(p)), b, needles);
        });
    }
    for d in &engine_run {
        walk(d, &[], &mut |p, b| {
            found.record(&format!("{} (machine)", in_machine(p)), b, needles);
        });
    }
    // The engine's storage on the host.
    match m.backend {
        Backend::Podman => {
            for d in ["storage/secrets", "storage/overlay-containers"] {
                walk(&m.storage.join(d), &[], &mut |p, b| {
                    found.record(&p.display().to_string(), b, needles);
                });
            }
        }
        Backend::Docker => {
            let d = m.dir.path();
            for sub in ["docker-data/containers", "docker-data/containerd", "dx"] {
                walk(&d.join(sub), &[], &mut |p, b| {
                    let rel = p.strip_prefix(d).unwrap_or(p);
                    found.record(&format!("dockerd's {}", rel.display()), b, needles);
                });
            }
        }
    }
}

/// The pid namespace of a process (host view).
fn pid_ns(proc_dir: &Path) -> Option<PathBuf> {
    std::fs::read_link(proc_dir.join("ns/pid")).ok()
}

/// One pass over every process: argv always; the environment of processes
/// outside containers (in the host's or the machine's pid namespace).
fn scan_processes(
    procfs: &Path,
    where_: &str,
    outside: &[PathBuf],
    needles: &[(String, Vec<u8>)],
    found: &mut Vec<String>,
    bridges: &mut BTreeSet<String>,
) {
    let Ok(entries) = std::fs::read_dir(procfs) else {
        return;
    };
    let me = std::process::id().to_string();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = e.path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let argv = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if argv.contains("secrets install") || argv.contains("secret create") {
            bridges.insert(format!("{pid}: {}", argv.trim()));
        }
        for l in hits(&cmdline, needles) {
            found.push(format!(
                "{l} in argv of pid {pid} ({where_}): {}",
                argv.trim()
            ));
        }
        let ns = pid_ns(&dir);
        if ns.as_ref().is_some_and(|n| outside.contains(n))
            && let Ok(env) = std::fs::read(dir.join("environ"))
        {
            for l in hits(&env, needles) {
                found.push(format!(
                    "{l} in the environment of pid {pid} ({where_}): {}",
                    argv.trim()
                ));
            }
        }
    }
}

/// What a [`ProcWatch`] saw: leaks, bridge processes caught, passes.
type Sampled = (Vec<String>, BTreeSet<String>, u64);

/// Samples every process's argv (host and machine) in a loop until stopped.
struct ProcWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Sampled>>,
}

impl ProcWatch {
    fn start(m: &Machine, needles: Vec<(String, Vec<u8>)>) -> ProcWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let machine_proc = m.root().join("proc");
        let outside: Vec<PathBuf> = [Path::new("/proc/self"), &m.root().join("proc/1")]
            .iter()
            .filter_map(|p| pid_ns(p))
            .collect();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut found = Vec::new();
            let mut bridges = BTreeSet::new();
            let mut passes = 0u64;
            loop {
                let last = flag.load(Ordering::Relaxed);
                scan_processes(
                    Path::new("/proc"),
                    "host /proc",
                    &outside,
                    &needles,
                    &mut found,
                    &mut bridges,
                );
                scan_processes(
                    &machine_proc,
                    "machine /proc",
                    &outside,
                    &needles,
                    &mut found,
                    &mut bridges,
                );
                passes += 1;
                if last {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            found.sort();
            found.dedup();
            (found, bridges, passes)
        });
        ProcWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop; the leaks found and a note on what was sampled.
    fn finish(mut self, found: &mut Findings, notes: &mut Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (leaks, bridges, passes) = self.thread.take().unwrap().join().unwrap();
        found.leaks.extend(leaks);
        notes.push(format!(
            "argv/environ sampled in {passes} passes; caught {} bridge or `secret create` \
             process(es) running{}",
            bridges.len(),
            bridges
                .iter()
                .take(3)
                .map(|b| format!("\n                   {b}"))
                .collect::<String>()
        ));
    }
}

impl Drop for ProcWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Output of commands in the machine that must not show a value.
fn scan_outputs(sc: &Scenario, svcs: &[&str], needles: &[(String, Vec<u8>)], found: &mut Findings) {
    let m = sc.m;
    let pattern = format!("{}*", sc.prefix);
    let mut cmds: Vec<Vec<String>> = vec![
        vec!["journalctl", "--no-pager", "-b", "-o", "export"],
        vec!["journalctl", "--no-pager", "-b", "--all", "-o", "cat"],
        vec![
            "systemctl",
            "--no-pager",
            "-l",
            "-n",
            "100",
            "status",
            &pattern,
        ],
        vec!["systemctl", "--no-pager", "show", "--all", &pattern],
        vec!["systemctl", "--no-pager", "cat", &pattern],
        vec![harness::BIN, "status"],
        vec![harness::BIN, "status", "--json"],
        vec![harness::BIN, "validate", "--spec"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(str::to_owned).collect())
    .collect();
    // validate takes the spec file.
    if let Some(v) = cmds.last_mut() {
        v.push(format!("/etc/nixarr-units/{}.json", sc.prefix));
    }
    for svc in svcs {
        cmds.push(vec![
            harness::BIN.to_owned(),
            "logs".to_owned(),
            "-n".to_owned(),
            "200".to_owned(),
            (*svc).to_owned(),
        ]);
    }
    if m.backend == Backend::Podman {
        cmds.push(vec!["podman".into(), "secret".into(), "ls".into()]);
    }
    for argv in cmds {
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        match m.exec(&a) {
            Ok(o) => {
                let mut all = o.stdout;
                all.extend(o.stderr);
                found.scan(
                    &format!("the output of `{}`", argv.join(" ")),
                    &all,
                    needles,
                );
            }
            Err(e) => {
                found.notes.insert(format!("could not run {argv:?}: {e:#}"));
            }
        };
    }
    if m.backend == Backend::Podman
        && let Ok(names) = m.engine(&["secret", "ls", "--format", "{{.Name}}"])
    {
        for n in names.lines().filter(|n| n.starts_with(&sc.prefix)) {
            if let Ok(o) = m.exec(&["podman", "secret", "inspect", n]) {
                found.scan(&format!("`podman secret inspect {n}`"), &o.stdout, needles);
            }
        }
    }
    for log in ["dockerd.log", "nspawn.log"] {
        if let Ok(b) = std::fs::read(m.dir.path().join(log)) {
            found.scan(&format!("the harness's {log}"), &b, needles);
        }
    }
}

/// `inspect` of each container: no value of a `file` or `podmanSecret`
/// secret; `envFile` values are shown by the engines (documented), noted.
fn scan_inspect(sc: &Scenario, secrets: &[Sec], found: &mut Findings) -> Result<()> {
    let svcs: BTreeSet<&str> = secrets.iter().map(|s| s.svc.as_str()).collect();
    let masks_env_secrets = podman_masks_env_secrets(sc.m)?;
    for svc in svcs {
        let out = sc.m.engine(&["inspect", &sc.container(svc)])?;
        for s in secrets {
            let needles = s.needles();
            if s.mode == Mode::PodmanEnv && !masks_env_secrets {
                for l in hits(out.as_bytes(), &needles) {
                    found.notes.insert(format!(
                        "KNOWN ENGINE LEAK (podman < 5.3 shows type=env secrets in \
                         Config.Env, containers/podman#23788): {l} shown by `podman inspect {}`",
                        sc.container(svc)
                    ));
                }
            } else if matches!(s.mode, Mode::EnvFile | Mode::Env(true)) {
                for l in hits(out.as_bytes(), &needles) {
                    found.notes.insert(format!(
                        "FINDING (inherent to env files, documented): {l} shown by \
                         `{} inspect {}`",
                        sc.m.backend.name(),
                        sc.container(svc)
                    ));
                }
            } else {
                found.scan(
                    &format!("`{} inspect {}`", sc.m.backend.name(), sc.container(svc)),
                    out.as_bytes(),
                    &needles,
                );
            }
        }
    }
    Ok(())
}

/// Whether `podman inspect` hides the values of type=env secrets: podman
/// 5.3 and later (containers/podman#23959). Before, Config.Env shows them.
fn podman_masks_env_secrets(m: &Machine) -> Result<bool> {
    if m.backend != Backend::Podman {
        return Ok(true);
    }
    let v = m.engine(&["version", "--format", "{{.Client.Version}}"])?;
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok((major, minor) >= (5, 3))
}

fn all_needles(secrets: &[Sec]) -> Vec<(String, Vec<u8>)> {
    secrets.iter().flat_map(Sec::needles).collect()
}

// -------------------------------------------------------------- helpers

fn host_path(m: &Machine, p: &str) -> PathBuf {
    m.root().join(p.trim_start_matches('/'))
}

/// Start the target; every one of `svcs` must be active (the target only
/// wants them, so its start succeeds either way).
fn start_all(sc: &Scenario, svcs: &[&str]) -> Result<()> {
    sc.start_target()?;
    for svc in svcs {
        let unit = sc.unit(svc);
        let state = sc.m.active_state(&unit)?;
        if state != "active" {
            let bridge = sc.names().secrets_unit(svc);
            let out = sc.m.exec(&[
                "systemctl",
                "--no-pager",
                "-l",
                "-n",
                "10",
                "status",
                &bridge,
            ])?;
            bail!(
                "{unit} is {state} after starting the target; its bridge:\n{}",
                harness::output_text(&out)
            );
        }
    }
    Ok(())
}

/// `systemd-analyze security UNIT`: the exposure number.
fn exposure(m: &Machine, unit: &str) -> Result<String> {
    let out = m.exec(&["systemd-analyze", "security", "--no-pager", unit])?;
    let text = harness::output_text(&out);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .with_context(|| format!("systemd-analyze security {unit}:\n{text}"))?;
    Ok(line
        .rsplit(':')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}

/// `systemctl status` of `unit` once it shows every one of `needles`.
fn status_showing(sc: &Scenario, unit: &str, needles: &[&str]) -> Result<String> {
    wait_for(
        &format!("systemctl status {unit} to show {needles:?}"),
        Duration::from_secs(30),
        || {
            let out =
                sc.m.exec(&["systemctl", "--no-pager", "-l", "-n", "30", "status", unit])?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            Ok(needles.iter().all(|n| text.contains(n)).then_some(text))
        },
    )
}

/// The bridge failed and the container did not start; `why[0]` is the
/// reason, whose line of `systemctl status` is returned.
fn assert_refused(sc: &Scenario, svc: &str, why: &[&str]) -> Result<String> {
    let unit = sc.unit(svc);
    let bridge = sc.names().secrets_unit(svc);
    let state = sc.m.active_state(&bridge)?;
    ensure!(state == "failed", "{bridge} is {state}, not failed");
    let state = sc.m.active_state(&unit)?;
    ensure!(
        state != "active" && state != "activating",
        "{unit} is {state} although its bridge failed"
    );
    ensure!(
        !container_exists(sc, svc)?,
        "container {} exists although its bridge failed",
        sc.container(svc)
    );
    let status = status_showing(sc, &bridge, why)?;
    let line = status
        .lines()
        .rfind(|l| l.contains(why[0]))
        .unwrap_or("")
        .trim()
        .to_owned();
    Ok(line)
}

/// Whether the container exists, asked about it alone (`ps -a` syncs every
/// container in the storage, which other machines on this host share).
fn container_exists(sc: &Scenario, svc: &str) -> Result<bool> {
    let name = sc.container(svc);
    let argv = match sc.m.backend {
        Backend::Podman => vec!["podman", "container", "exists", &name],
        Backend::Docker => vec![
            "docker",
            "container",
            "inspect",
            "--format={{.Name}}",
            &name,
        ],
    };
    Ok(sc.m.exec(&argv)?.status.success())
}

fn copies_gone(sc: &Scenario, svc: &str) -> Result<()> {
    let c = sc.container(svc);
    for d in [
        format!("run/nixarr-units/secrets/{c}"),
        format!("run/nixarr-units/env/{c}"),
    ] {
        let p = sc.m.root().join(&d);
        ensure!(!p.exists(), "/{d} still exists");
    }
    if sc.m.backend == Backend::Podman {
        let names = sc.m.engine(&["secret", "ls", "--format", "{{.Name}}"])?;
        let left: Vec<&str> = names.lines().filter(|n| n.starts_with(&c)).collect();
        ensure!(left.is_empty(), "podman secrets left: {left:?}");
    }
    Ok(())
}

fn remove_test_podman_secrets(m: &Machine) {
    let Ok(names) = m.engine(&["secret", "ls", "--format", "{{.Name}}"]) else {
        return;
    };
    for n in names.lines() {
        // Scenario prefixes: e<digit>p<4 hex>.
        let b = n.as_bytes();
        if b.len() > 7 && b[0] == b'e' && b[1].is_ascii_digit() && b[2] == b'p' {
            let _ = m.engine(&["secret", "rm", n]);
        }
    }
}

// -------------------------------------------------------------- scenarios

fn delivers_without_leaks(sc: &mut Scenario) -> Result<()> {
    let podman = sc.m.backend == Backend::Podman;
    let lsio = "FILE__{name}";
    let gluetun = "{name}_SECRETFILE";
    // "d": a generic service (image only, no secretFileEnv) whose secrets
    // name no mode: files, FILE__<name> or the secret's own fileEnv, and
    // never a value in the environment.
    let mut own_var = sec(sc, "d", "GENERIC_PASSWORD", Mode::Default, None);
    own_var.file_env = Some("GENERIC_PASSWORD_FILE".to_owned());
    own_var.path_env = own_var.file_env.clone();
    let mut secrets = vec![
        sec(sc, "f", "API_KEY", Mode::File, Some(lsio)),
        sec(sc, "f", "DB_PASS", Mode::File, Some(lsio)),
        sec(sc, "g", "WIREGUARD_PRIVATE_KEY", Mode::File, Some(gluetun)),
        sec(sc, "e", "TOKEN", Mode::EnvFile, None),
        sec(sc, "e", "OTHER_TOKEN", Mode::EnvFile, None),
        sec(sc, "d", "GENERIC_TOKEN", Mode::Default, Some(lsio)),
        own_var,
    ];
    // `"mode": "env"`: a hidden podman secret on podman >= 5.3, elsewhere
    // an acknowledged env file.
    let env_hidden = podman && podman_masks_env_secrets(sc.m)?;
    secrets.push(sec(sc, "e", "ENV_TOKEN", Mode::Env(!env_hidden), None));
    // podman < 5.3 shows env secrets in inspect: the renderer refuses them
    // there (tests/cli.rs: podman_env_secrets_need_podman_5_3).
    let env_secrets = podman && podman_masks_env_secrets(sc.m)?;
    if env_secrets {
        secrets.push(sec(sc, "p", "PS_ENV", Mode::PodmanEnv, None));
    }
    if podman {
        secrets.push(sec(sc, "p", "PS_MOUNT", Mode::PodmanMount, None));
    }
    write_sources(sc.m, &secrets)?;
    let svcs: Vec<&str> = if podman {
        vec!["f", "g", "e", "d", "p"]
    } else {
        vec!["f", "g", "e", "d"]
    };
    let mut ports = std::collections::BTreeMap::new();
    let mut services = serde_json::Map::new();
    for svc in &svcs {
        let port = free_port()?;
        ports.insert(*svc, port);
        let mine: Vec<&Sec> = secrets.iter().filter(|s| s.svc == *svc).collect();
        let file_env = match *svc {
            "f" => Some(lsio),
            "g" => Some(gluetun),
            _ => None,
        };
        services.insert((*svc).to_owned(), service(port, &mine, file_env));
    }
    // A control value, put where the search must find it (a process's argv
    // in the machine, hence the journal): proof that the search sees.
    let canary = random_value();
    let mut needles = all_needles(&secrets);
    needles.push((CANARY.to_owned(), canary.as_bytes().to_vec()));
    let mut found = Findings::default();

    let watch = ProcWatch::start(sc.m, needles.clone());
    sc.m.ok(&[
        "systemd-run",
        "--no-block",
        "--quiet",
        &format!("--unit={}-canary", sc.prefix),
        "/bin/sh",
        "-c",
        "sleep 3",
        &canary,
    ])?;
    sc.install(&sc.spec(Value::Object(services)))?;
    start_all(sc, &svcs)?;
    for s in &secrets {
        check_delivered(ports[s.svc.as_str()], s)?;
    }
    // The bridges once more, while the services run.
    for svc in &svcs {
        sc.m.systemctl(&["restart", &sc.unit(svc)])?;
    }
    for svc in &svcs {
        sc.m.wait_active(&sc.unit(svc), Duration::from_secs(60))?;
    }
    for s in &secrets {
        check_delivered(ports[s.svc.as_str()], s)?;
    }
    watch.finish(&mut found, &mut sc.notes);

    // The copies are private.
    for s in secrets
        .iter()
        .filter(|s| matches!(s.mode, Mode::File | Mode::Default))
    {
        use std::os::unix::fs::PermissionsExt;
        let p = host_path(
            sc.m,
            &format!(
                "/run/nixarr-units/secrets/{}/{}",
                sc.container(&s.svc),
                s.var
            ),
        );
        let mode = fs_err::metadata(&p)?.permissions().mode() & 0o7777;
        ensure!(mode == 0o400, "{} is mode {mode:04o}", p.display());
        let dir = fs_err::metadata(p.parent().unwrap())?.permissions().mode() & 0o7777;
        ensure!(dir == 0o700, "its directory is mode {dir:04o}");
    }

    // Exposure of the bridges.
    let strict = [("f", "file"), ("e", "envFile"), ("d", "default")];
    for (svc, what) in strict {
        let unit = sc.names().secrets_unit(svc);
        let e = exposure(sc.m, &unit)?;
        eprintln!("     exposure of the {what} bridge {unit}: {e}");
        sc.notes
            .push(format!("systemd-analyze security, {what} bridge: {e}"));
        let n: f64 = e
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("exposure {e:?}"))?;
        ensure!(
            n <= 2.0,
            "the {what} bridge {unit} has exposure {n}, above 2.0"
        );
    }
    if podman {
        let unit = sc.names().secrets_unit("p");
        let e = exposure(sc.m, &unit)?;
        eprintln!("     exposure of the podmanSecret bridge {unit}: {e}");
        sc.notes.push(format!(
            "systemd-analyze security, podmanSecret bridge: {e}"
        ));
    }

    scan_inspect(sc, &secrets, &mut found)?;
    scan_files(sc.m, &needles, &mut found);
    scan_outputs(sc, &svcs, &needles, &mut found);

    // Stopping removes every copy.
    sc.m.systemctl(&["stop", &sc.target()])?;
    for svc in &svcs {
        let bridge = sc.names().secrets_unit(svc);
        wait_for(
            &format!("{bridge} to stop"),
            Duration::from_secs(60),
            || {
                let s = sc.m.active_state(&bridge)?;
                Ok((s == "inactive").then_some(()))
            },
        )?;
        copies_gone(sc, svc)?;
    }
    // The journal of the stop, too.
    scan_outputs(sc, &svcs, &needles, &mut found);
    let (control, leaks): (Vec<String>, Vec<String>) =
        found.leaks.into_iter().partition(|l| l.starts_with(CANARY));
    found.leaks = leaks;
    for (place, what) in [
        ("in argv of pid", "argv sampler"),
        ("journalctl", "journal search"),
    ] {
        ensure!(
            control.iter().any(|l| l.contains(place)),
            "the {what} did not find the control value; its silence proves nothing:\n{control:#?}"
        );
    }
    sc.notes.push(format!(
        "control value found {} times (argv, journal, unit properties): the search sees",
        control.len()
    ));
    found.result(sc)
}

fn missing_secret(sc: &mut Scenario) -> Result<()> {
    let good = sec(sc, "a", "API_KEY", Mode::File, Some("FILE__{name}"));
    let missing = sec(sc, "a", "MISSING_KEY", Mode::File, Some("FILE__{name}"));
    write_sources(sc.m, std::slice::from_ref(&good))?;
    let port = free_port()?;
    sc.install(&sc.spec(json!({
        "a": service(port, &[&good, &missing], Some("FILE__{name}"))
    })))?;
    let unit = sc.unit("a");
    let out = sc.m.exec(&["systemctl", "start", &unit])?;
    ensure!(
        !out.status.success(),
        "starting {unit} succeeded without its secret"
    );
    let line = assert_refused(
        sc,
        "a",
        &["does not exist", "MISSING_KEY", &missing.source()],
    )?;
    sc.notes.push(format!("status says: {line}"));
    // Nothing of the good secret was placed either.
    copies_gone(sc, "a")?;
    let mut found = Findings::default();
    scan_outputs(sc, &["a"], &good.needles(), &mut found);
    found.result(sc)
}

fn rotated_secret(sc: &mut Scenario) -> Result<()> {
    let podman = sc.m.backend == Backend::Podman;
    let mut secrets = vec![
        sec(sc, "a", "API_KEY", Mode::File, Some("FILE__{name}")),
        sec(sc, "a", "TOKEN", Mode::EnvFile, None),
    ];
    if podman && podman_masks_env_secrets(sc.m)? {
        secrets.push(sec(sc, "a", "PS_ENV", Mode::PodmanEnv, None));
    }
    write_sources(sc.m, &secrets)?;
    let port = free_port()?;
    let refs: Vec<&Sec> = secrets.iter().collect();
    sc.install(&sc.spec(json!({ "a": service(port, &refs, Some("FILE__{name}")) })))?;
    start_all(sc, &["a"])?;
    for s in &secrets {
        check_delivered(port, s)?;
    }
    let old = secrets.clone();
    for s in &mut secrets {
        s.value = random_value();
    }
    new_generation(sc.m, &secrets)?;
    let mut needles = all_needles(&old);
    needles.extend(all_needles(&secrets));
    let mut found = Findings::default();
    let watch = ProcWatch::start(sc.m, needles.clone());
    sc.m.systemctl(&["restart", &sc.unit("a")])?;
    sc.m.wait_active(&sc.unit("a"), Duration::from_secs(60))?;
    watch.finish(&mut found, &mut sc.notes);
    for s in &secrets {
        check_delivered(port, s)?;
    }
    scan_files(sc.m, &needles, &mut found);
    scan_outputs(sc, &["a"], &needles, &mut found);
    found.result(sc)
}

fn bad_link_targets(sc: &mut Scenario) -> Result<()> {
    let s = sec(sc, "a", "API_KEY", Mode::File, Some("FILE__{name}"));
    write_sources(sc.m, std::slice::from_ref(&s))?;
    let port = free_port()?;
    sc.install(&sc.spec(json!({ "a": service(port, &[&s], Some("FILE__{name}")) })))?;
    start_all(sc, &["a"])?;
    check_delivered(port, &s)?;
    let unit = sc.unit("a");
    let link = current_generation(sc.m)?.join(&s.source_name);
    for (target, why) in [
        ("/run/secrets.d", "is a directory"),
        ("/dev/zero", "not a regular file"),
    ] {
        fs_err::remove_file(&link)?;
        fs_err::os::unix::fs::symlink(target, &link)?;
        let out = sc.m.exec(&["systemctl", "restart", &unit])?;
        ensure!(
            !out.status.success(),
            "restarting {unit} with its secret a symlink to {target} succeeded"
        );
        let line = assert_refused(sc, "a", &[why, "API_KEY", &s.source()])?;
        sc.notes.push(format!("→ {target}: status says: {line}"));
        copies_gone(sc, "a")?;
        sc.m.systemctl(&["reset-failed", &format!("{}*", sc.prefix)])?;
    }
    Ok(())
}

fn readable_source_warns(sc: &mut Scenario) -> Result<()> {
    let s = sec(sc, "a", "API_KEY", Mode::File, Some("FILE__{name}"));
    write_source(sc.m, &s.source_name, s.value.as_bytes(), 0o644)?;
    let port = free_port()?;
    sc.install(&sc.spec(json!({ "a": service(port, &[&s], Some("FILE__{name}")) })))?;
    start_all(sc, &["a"])?;
    check_delivered(port, &s)?;
    let bridge = sc.names().secrets_unit("a");
    let journal = wait_for(
        &format!("a warning in the journal of {bridge}"),
        Duration::from_secs(30),
        || {
            let j = sc.m.ok(&["journalctl", "--no-pager", "-u", &bridge])?;
            Ok(j.contains("readable by group or others").then_some(j))
        },
    )?;
    let line = journal
        .lines()
        .find(|l| l.contains("readable by group or others"))
        .unwrap_or("")
        .trim()
        .to_owned();
    ensure!(
        line.contains("API_KEY") && line.contains(&s.source()),
        "the warning does not name the secret and its source: {line}"
    );
    sc.notes.push(format!("journal says: {line}"));
    let mut found = Findings::default();
    found.scan(
        &format!("the journal of {bridge}"),
        journal.as_bytes(),
        &s.needles(),
    );
    found.result(sc)
}
