//! Runs a suite: one machine per backend (one at a time in a process,
//! [`MACHINES`], and on the host, [`super::lock`]), its scenarios in
//! sequence, each with its own prefix and cleanup, then a summary.
//! `NIXARR_E2E_ONLY` picks scenarios by name.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;

use super::host::run_id;
use super::leftovers::clean_leftovers;
use super::machine::{Backend, BootOptions, Machine, label, trixie_missing};
use super::scenario::{Scenario, ScenarioFn};

/// Serialises machines across the test threads of one process.
pub static MACHINES: Mutex<()> = Mutex::new(());

/// Why the end-to-end tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY-free check of the effective uid: /proc/self is owned by it.
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if uid != 0 {
        return Some("not running as root".to_owned());
    }
    if !Path::new("/usr/bin/systemd-nspawn").exists() {
        return Some("systemd-nspawn is missing (apt-get install systemd-container)".to_owned());
    }
    None
}

/// Run scenarios in sequence on one machine, each with its own prefix and
/// its own cleanup; print what failed with systemd's view of it, then a
/// summary. Returns the names of failed scenarios.
pub fn run_scenarios(m: &Machine, scenarios: &[(&str, ScenarioFn)]) -> Vec<String> {
    let id = run_id();
    let mut failed = Vec::new();
    let mut summary = Vec::new();
    // NIXARR_E2E_ONLY=text runs only the scenarios whose name contains it
    // (for working on one scenario; CI runs them all).
    let only = std::env::var("NIXARR_E2E_ONLY").ok();
    for (i, (name, f)) in scenarios.iter().enumerate() {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let letter = if m.trixie {
            "5"
        } else {
            &m.backend.name()[..1]
        };
        let mut sc = Scenario {
            m,
            prefix: format!("e{i}{letter}{id}"),
            notes: Vec::new(),
        };
        eprintln!("==== e2e [{}] {name} (prefix {})", m.label(), sc.prefix);
        let start = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut sc)));
        let outcome = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(p) => Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panic".to_owned())),
        };
        let secs = start.elapsed().as_secs_f32();
        match &outcome {
            Ok(()) => eprintln!("==== e2e [{}] {name}: ok ({secs:.1}s)", m.label()),
            Err(e) => {
                eprintln!(
                    "==== e2e [{}] {name}: FAILED ({secs:.1}s): {e}\n{}",
                    m.label(),
                    m.diagnostics(&format!("{}*", sc.prefix))
                );
                failed.push(format!("{}: {name}", m.label()));
            }
        }
        for n in &sc.notes {
            eprintln!("     note: {n}");
        }
        summary.push(format!(
            "{:7} {:6} {name} ({secs:.1}s){}",
            m.label(),
            if outcome.is_ok() { "ok" } else { "FAILED" },
            sc.notes
                .iter()
                .map(|n| format!("\n                 note: {n}"))
                .collect::<String>()
        ));
        sc.cleanup();
    }
    eprintln!("==== e2e summary\n{}", summary.join("\n"));
    failed
}

/// One test function of a suite on one backend: skip loudly when the
/// end-to-end tests cannot run here (or `missing` says what else is
/// missing), else boot a machine (one at a time per process), `prepare` it,
/// run the scenarios, `finish`, and fail naming the failed scenarios.
pub fn run_suite_with(
    what: &str,
    backend: Backend,
    scenarios: &[(&str, ScenarioFn)],
    missing: Option<String>,
    prepare: impl FnOnce(&Machine) -> Result<()>,
    finish: impl FnOnce(&Machine),
) {
    run_suite_booted(
        what,
        backend,
        BootOptions::default(),
        scenarios,
        missing,
        prepare,
        finish,
    );
}

/// [`run_suite_with`] on a machine booted with `opts` (e.g. the podman 5
/// machine, [`BootOptions::trixie`]).
pub fn run_suite_booted(
    what: &str,
    backend: Backend,
    opts: BootOptions,
    scenarios: &[(&str, ScenarioFn)],
    missing: Option<String>,
    prepare: impl FnOnce(&Machine) -> Result<()>,
    finish: impl FnOnce(&Machine),
) {
    let missing = missing.or_else(|| opts.trixie.then(trixie_missing).flatten());
    if let Some(why) = skip_reason().or(missing) {
        eprintln!(
            "\n!!!!!!!! SKIPPED: {what} on {} not run: {why} !!!!!!!!\n",
            label(backend, opts.trixie)
        );
        return;
    }
    let _serial = MACHINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    clean_leftovers();
    let machine = Machine::boot_with(backend, opts).expect("booting the e2e machine");
    prepare(&machine).expect("preparing the e2e machine");
    let failed = run_scenarios(&machine, scenarios);
    finish(&machine);
    drop(machine);
    assert!(failed.is_empty(), "failed scenarios: {failed:#?}");
}

/// [`run_suite_with`] with nothing to prepare.
pub fn run_suite(what: &str, backend: Backend, scenarios: &[(&str, ScenarioFn)]) {
    run_suite_with(what, backend, scenarios, None, |_| Ok(()), |_| {});
}

/// The podman 5 machine's options: the trixie root.
pub const PODMAN5: BootOptions = BootOptions {
    private_storage: true,
    no_fake_app: false,
    private_network: false,
    trixie: true,
};

/// [`run_suite`] on the podman 5 machine (podman 5.4, systemd 257).
pub fn run_suite_podman5(what: &str, scenarios: &[(&str, ScenarioFn)]) {
    run_suite_booted(
        what,
        Backend::Podman,
        PODMAN5,
        scenarios,
        None,
        |_| Ok(()),
        |_| {},
    );
}
