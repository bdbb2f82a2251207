//! The NixOS VM test's scenario (tests/vm/scenario.py, the testScript of
//! nix/vm-test.nix) run here, on real systemd in systemd-nspawn, through the
//! stand-in driver tests/vm/nspawn_driver.py. Only the Nix glue that builds
//! the VM is not exercised.
//!
//! The machine is configured from the VM's own NixOS configuration: the
//! stack of tests/vm/stack.nix (sonarr, radarr depending on sonarr, the
//! instance sonarr-4k on 8990), evaluated with the module
//! (tests/nix/e2e/vm.nix) and installed the way NixOS installs it, behind
//! the NixOS firewall (the NixOS end-to-end mode,
//! tests/e2e/harness/nixos.rs). The fake *arr image of tests/vm/fake-arr/
//! is loaded from an image archive, as the VM's dockerTools image is. The
//! switch to that configuration starts multi-user.target, which stands for
//! the boot that starts the stack in the VM. The machine has a network of its own, so the scenario's fixed
//! ports (8989, 7878, 8990) never meet the host's.
//!
//! Runs as root with nix-instantiate and NIXPKGS_LIB (tests/run.sh);
//! otherwise prints SKIPPED loudly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness;
use crate::harness::nixos::Generation;
use crate::harness::{Backend, BootOptions, Machine, host};
use anyhow::{Context, Result, bail};

/// The VM test's image name (nix/vm-test.nix), here imported from the same
/// files.
const FAKE_ARR: &str = "localhost/fake-arr:test";
const FAKE_ARR_FILES: &[(&str, &str, u32)] = &[
    ("bin/fake-arr", include_str!("../vm/fake-arr/run"), 0o755),
    ("bin/curl", include_str!("../vm/fake-arr/curl"), 0o755),
    ("www/ping", include_str!("../vm/fake-arr/www/ping"), 0o644),
];
const PREFIX: &str = "nixarr";
/// Upper bound of the whole scenario; each wait inside has its own.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(20 * 60);

#[test]
fn podman() {
    if let Some(why) = skip_reason() {
        eprintln!("\n!!!!!!!! SKIPPED: the VM scenario on nspawn not run: {why} !!!!!!!!\n");
        return;
    }
    let _serial = harness::MACHINES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    harness::clean_leftovers();
    let started = Instant::now();
    // Its own podman storage: other e2e runs on the host (a colleague's
    // `cargo test`) would otherwise reset our containers' state.
    // It imports the VM test's own image, not the fake app.
    // A network of its own: the scenario's fixed ports and the firewall.
    let opts = BootOptions {
        private_storage: true,
        no_fake_app: true,
        private_network: true,
        ..BootOptions::default()
    };
    let machine = Machine::boot_with(Backend::Podman, opts).expect("booting the e2e machine");
    let outcome = prepare(&machine).and_then(|g| {
        let r = run_scenario(&machine);
        let removed = g.remove(&machine);
        r.and(removed)
    });
    if outcome.is_err() {
        eprintln!("{}", machine.diagnostics(&format!("{PREFIX}*")));
    }
    cleanup(&machine);
    drop(machine);
    eprintln!(
        "vm_scenario: {} in {:.1}s",
        if outcome.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f32()
    );
    if let Err(e) = outcome {
        panic!("{e:#}");
    }
}

fn skip_reason() -> Option<String> {
    if let Some(why) = harness::skip_reason().or_else(|| harness::nixos::nixpkgs_lib().err()) {
        return Some(why);
    }
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !python.is_ok_and(|s| s.success()) {
        return Some("python3 is missing (it runs tests/vm/nspawn_driver.py)".to_owned());
    }
    None
}

/// The fake *arr root file system (busybox plus tests/vm/fake-arr/), as a
/// tarball with deterministic bytes.
fn fake_arr_tar(dir: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let root = dir.join("fake-arr-rootfs");
    fs_err::create_dir_all(root.join("bin"))?;
    fs_err::copy("/usr/bin/busybox", root.join("bin/busybox"))
        .context("copying busybox (apt-get install busybox-static)")?;
    let list = host(Command::new("/usr/bin/busybox").arg("--list"))?;
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        fs_err::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    for (path, text, mode) in FAKE_ARR_FILES {
        let p = root.join(path);
        fs_err::create_dir_all(p.parent().context("no parent")?)?;
        // The shim replaces busybox's own applet of that name, if any.
        let _ = fs_err::remove_file(&p);
        fs_err::write(&p, text)?;
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
    }
    let tar = dir.join("fake-arr-rootfs.tar");
    harness::image::tar_root(&root, &tar)?;
    Ok(tar)
}

/// The VM's image, and its NixOS configuration switched to (which starts
/// multi-user.target, as the VM's boot does).
fn prepare(m: &Machine) -> Result<Generation> {
    let d = m.dir.path();
    let tar = fake_arr_tar(d)?;
    let tar = tar.to_str().context("temp path is not UTF-8")?;
    m.ok(&[
        "podman",
        "import",
        "--change",
        r#"CMD ["/bin/fake-arr"]"#,
        tar,
        FAKE_ARR,
    ])
    .context("importing the fake *arr image")?;
    // The VM loads its dockerTools image from a file before each start
    // (`imageFile`); do the same with an archive of the imported image.
    let archive = d.join("fake-arr-image.tar");
    let archive = archive.to_str().context("temp path is not UTF-8")?;
    m.ok(&[
        "podman",
        "save",
        "--format=docker-archive",
        "--output",
        archive,
        FAKE_ARR,
    ])
    .context("saving the fake *arr image as an archive")?;
    // A NixOS host runs no generator: the units are the module's.
    let generator = m
        .root()
        .join("etc/systemd/system-generators/nixarr-units-generator");
    if generator.symlink_metadata().is_ok() {
        fs_err::remove_file(&generator)?;
    }
    let export = harness::nixos::evaluate(m, "vm", PREFIX, "default", &[("imageFile", archive)])?;
    let g = Generation::build(export, &d.join("vm-generation"))?;
    g.switch(m, None)?;
    Ok(g)
}

fn run_scenario(m: &Machine) -> Result<()> {
    let root = env!("CARGO_MANIFEST_DIR");
    let log_path = m.dir.path().join("vm-scenario.log");
    let log = fs_err::File::create(&log_path)?;
    let mut child = Command::new("python3")
        .current_dir(root)
        .arg("tests/vm/nspawn_driver.py")
        .arg(format!("--pid={}", m.leader))
        .arg("tests/vm/scenario.py")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?.into_parts().0)
        .stderr(log.into_parts().0)
        .spawn()
        .context("starting python3 tests/vm/nspawn_driver.py")?;
    let status = harness::wait_child(&mut child, SCENARIO_TIMEOUT)?;
    let output = fs_err::read_to_string(&log_path).unwrap_or_default();
    eprintln!("---- tests/vm/scenario.py through tests/vm/nspawn_driver.py\n{output}----");
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => bail!("tests/vm/scenario.py failed ({s}):\n{output}"),
        None => bail!("tests/vm/scenario.py did not finish within {SCENARIO_TIMEOUT:?}:\n{output}"),
    }
}

/// Stop the stack and remove it, so the machine's poweroff is quick.
fn cleanup(m: &Machine) {
    let _ = m.exec(&["systemctl", "stop", &format!("{PREFIX}.target")]);
    let _ = m.exec(&["podman", "network", "rm", PREFIX]);
}
