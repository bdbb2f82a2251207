//! The host lock: one e2e machine at a time on this host, across every
//! test process.

use std::time::Instant;

use anyhow::{Context, Result};

/// Where every machine of every test process on this host takes its turn.
pub const HOST_LOCK: &str = "/run/nixarr-e2e.lock";

/// Wait until no other machine runs on this host, in any test process.
/// Machines share the host's network (netavark's bridges, subnets and
/// iptables rules, the fixed ports of tests/vm/scenario.py) and by default
/// its podman storage, so two at once, e.g. two people's `cargo test` on one
/// development machine, break each other in ways that look like product
/// bugs. [`MACHINES`] serialises them within one process; this lock across
/// processes.
pub fn lock_host() -> Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(HOST_LOCK)
        .with_context(|| format!("opening {HOST_LOCK}"))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let start = Instant::now();
            eprintln!("e2e: another e2e machine runs on this host; waiting for {HOST_LOCK}");
            f.lock().with_context(|| format!("locking {HOST_LOCK}"))?;
            eprintln!(
                "e2e: got {HOST_LOCK} after {:.0}s",
                start.elapsed().as_secs_f32()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {HOST_LOCK}"));
        }
    }
    Ok(f)
}
