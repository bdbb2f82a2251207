//! Machines, dockerds and directories of earlier (crashed) runs, told
//! apart from those of test processes that still run.

use std::process::Command;
use std::time::Duration;

use super::MARKER;
use super::host::parse_environ;
use super::net::{LAN_DNS_NAME, Net};

/// Kill leftovers of earlier (crashed) runs: nspawn machines and dockerds
/// whose command line carries [`MARKER`], then their temporary directories.
/// Runs once per test process, before its first machine.
///
/// Machines and directories of a test process that is still running (another
/// `cargo test` on the same host, e.g. a colleague's) are left alone: each
/// carries its owner ([`OWNER_ENV`] in the environment of nspawn and dockerd,
/// an `owner` file in the directory), and only those whose owner is gone are
/// leftovers.
pub fn clean_leftovers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(clean_leftovers_now);
}

/// Environment variable naming the test process that started a machine or
/// dockerd: `PID:STARTTIME` (start time from /proc/PID/stat, so a reused PID
/// does not count).
pub const OWNER_ENV: &str = "NIXARR_E2E_OWNER";

/// `PID:STARTTIME` of a process, if it runs.
fn process_tag(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime), counted after the parenthesised command name.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19)?;
    Some(format!("{pid}:{start}"))
}

/// This test process, as [`OWNER_ENV`] names it.
pub fn owner_tag() -> String {
    process_tag(std::process::id()).unwrap_or_else(|| format!("{}:?", std::process::id()))
}

/// Whether the owner named by a tag still runs.
fn owner_alive(tag: &str) -> bool {
    let Some(pid) = tag.split(':').next().and_then(|p| p.parse().ok()) else {
        return false;
    };
    process_tag(pid).as_deref() == Some(tag.trim())
}

fn clean_leftovers_now() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let exe = args.first().map(String::as_str).unwrap_or("");
        let ours = args.iter().any(|a| a.contains(MARKER));
        let kind = exe.ends_with("systemd-nspawn")
            || exe.ends_with("dockerd")
            || args.iter().any(|a| a.ends_with(LAN_DNS_NAME));
        if !(ours && kind) {
            continue;
        }
        let owner = std::fs::read(format!("/proc/{pid}/environ"))
            .ok()
            .and_then(|env| parse_environ(&env).remove(OWNER_ENV));
        if let Some(owner) = owner.filter(|o| owner_alive(o)) {
            eprintln!(
                "e2e: {exe} (pid {pid}) belongs to test process {owner}, still running; left alone"
            );
            continue;
        }
        eprintln!("e2e: killing leftover {exe} (pid {pid}) of an earlier run");
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    std::thread::sleep(Duration::from_millis(500));
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with(MARKER) {
                continue;
            }
            let in_use = match std::fs::read_to_string(e.path().join("owner")) {
                Ok(owner) => owner_alive(&owner),
                // No owner file: a run from before owners were recorded, or
                // one that is creating its directory right now.
                Err(_) => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < Duration::from_secs(600))),
            };
            if !in_use {
                Net::delete_recorded(&e.path());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
