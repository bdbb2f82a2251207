//! How a container unit stops: the `ExecStop=` and `ExecStopPost=` helpers.
//!
//! A stop that systemd asks for (stop, restart, a NixOS switch) must end
//! `inactive (dead)` whatever the image does with SIGTERM: the engine's own
//! stop sends the image's stop signal, waits the grace (`stopTimeout`) and
//! kills, and the unit's main process (conmon, or `docker run` in the
//! foreground) then exits 137. The units therefore count 137 and 143 as
//! success (`SuccessExitStatus=`), and [`container_stopped`] turns them back
//! into a failure when systemd did not ask for the stop: a crash, an OOM
//! kill or podman's `--health-on-failure=kill` still fails the unit and
//! `Restart=` still restarts it.
//!
//! The two helpers tell the cases apart with a marker file: `ExecStop=`
//! runs both for a stop systemd asked for and after the main process ended
//! on its own with a success status, and only in the first case is
//! `$MAINPID` still alive.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::engine::Engine;

/// Where [`stop_container`] leaves a marker per container for the stop
/// systemd asked for.
pub const MARKER_DIR: &str = "/run/nixarr-units/stopping";

fn marker(dir: &Path, container: &str) -> PathBuf {
    dir.join(container)
}

/// Whether `$MAINPID` (which systemd passes to `ExecStop=`) names a live
/// process: then systemd asked for this stop.
fn main_process_alive(main_pid: Option<&str>) -> bool {
    main_pid
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|pid| pid > 0 && Path::new(&format!("/proc/{pid}")).exists())
}

/// `ExecStop=`: stop the container with the engine's own stop (its stop
/// signal, `grace` seconds, then SIGKILL) and say in one line when it had to
/// be killed. A container that is already gone is not an error.
pub fn stop_container(
    engine: &Engine,
    grace: u64,
    container: &str,
    main_pid: Option<&str>,
    marker_dir: &Path,
) -> Result<()> {
    if main_process_alive(main_pid) {
        fs_err::create_dir_all(marker_dir)?;
        fs_err::write(marker(marker_dir, container), b"")?;
    }
    // Nothing to stop when the engine does not know the container, or
    // cannot say (ExecStop= of a unit whose engine is down is not a failed
    // stop).
    if !matches!(engine.container_status(container), Ok(Some(_))) {
        return Ok(());
    }
    let start = Instant::now();
    // The engine's warning about the kill is replaced by the one line
    // below; its output is shown only when the stop fails.
    let stop = engine.stop(container, grace);
    let out = stop.output()?;
    let took = start.elapsed();
    if !out.status.success() {
        if !matches!(engine.container_status(container), Ok(Some(_))) {
            return Ok(());
        }
        bail!("{}", stop.failure(&out));
    }
    if took >= Duration::from_secs(grace) {
        tracing::warn!("{container} did not stop within {grace}s; killed");
    }
    Ok(())
}

/// What ended the unit's main process, as systemd tells `ExecStopPost=`
/// (`$SERVICE_RESULT`, `$EXIT_CODE`, `$EXIT_STATUS`).
#[derive(Debug, Default)]
pub struct Exit<'a> {
    pub service_result: Option<&'a str>,
    pub exit_code: Option<&'a str>,
    pub exit_status: Option<&'a str>,
}

/// `ExecStopPost=`: after a stop systemd asked for, nothing to do; when the
/// container was killed or got SIGTERM from elsewhere while running, fail
/// (the unit's `SuccessExitStatus=` let it pass) so `Restart=` applies and
/// `systemctl status` shows it.
pub fn container_stopped(container: &str, exit: &Exit<'_>, marker_dir: &Path) -> Result<()> {
    let asked = match fs_err::remove_file(marker(marker_dir, container)) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    if asked || exit.service_result != Some("success") || exit.exit_code != Some("exited") {
        return Ok(());
    }
    match exit.exit_status {
        Some("137") => bail!(
            "{container} was killed while running (exit status 137: out of memory, a failed \
             health check, or SIGKILL from outside systemd); see journalctl -u and dmesg"
        ),
        Some("143") => bail!(
            "{container} was stopped by a SIGTERM that systemd did not send (exit status 143); \
             stop it with systemctl or nixarr-units stop, not with the engine"
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn false_engine() -> Engine {
        Engine::from_path("/bin/false")
    }

    fn exit<'a>(result: &'a str, code: &'a str, status: &'a str) -> Exit<'a> {
        Exit {
            service_result: Some(result),
            exit_code: Some(code),
            exit_status: Some(status),
        }
    }

    #[test]
    fn a_kill_while_running_fails_the_unit() {
        let t = tempfile::tempdir().unwrap();
        let e = container_stopped("c", &exit("success", "exited", "137"), t.path());
        assert!(format!("{:#}", e.unwrap_err()).contains("killed while running"));
        let e = container_stopped("c", &exit("success", "exited", "143"), t.path());
        assert!(format!("{:#}", e.unwrap_err()).contains("SIGTERM"));
        // A clean end, or one systemd already counts as a failure.
        container_stopped("c", &exit("success", "exited", "0"), t.path()).unwrap();
        container_stopped("c", &exit("exit-code", "exited", "1"), t.path()).unwrap();
        container_stopped("c", &exit("success", "killed", "TERM"), t.path()).unwrap();
    }

    #[test]
    fn a_stop_systemd_asked_for_is_clean_once() {
        let t = tempfile::tempdir().unwrap();
        let me = std::process::id().to_string();
        // No such container: nothing to stop, but the marker is written
        // because the "main process" (this test) is alive.
        stop_container(&false_engine(), 10, "c", Some(&me), t.path()).unwrap();
        assert!(t.path().join("c").exists());
        container_stopped("c", &exit("success", "exited", "137"), t.path()).unwrap();
        assert!(!t.path().join("c").exists(), "the marker is used once");
        // The next kill is a crash again.
        assert!(container_stopped("c", &exit("success", "exited", "137"), t.path()).is_err());
    }

    #[test]
    fn no_marker_after_the_main_process_ended_on_its_own() {
        let t = tempfile::tempdir().unwrap();
        stop_container(&false_engine(), 10, "c", None, t.path()).unwrap();
        stop_container(&false_engine(), 10, "c", Some("999999999"), t.path()).unwrap();
        assert!(!t.path().join("c").exists());
    }
}
