//! Health probes: the engine's own check (`podman healthcheck run`, or the
//! same command through `docker exec`), an HTTP request or a TCP connect
//! from the host, and the start-up gate that waits for one of them.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::engine::Engine;
use crate::manifest::{Probe, ServiceManifest, StackManifest};

/// One check, as the health gate, `status`, `heal` and the migration run
/// it: the container's own health command, or the manifest's host probe.
#[derive(Debug, Clone)]
pub enum Check {
    /// The container's health command, run by the engine.
    Exec {
        engine: Engine,
        container: String,
        cmd: String,
    },
    /// A probe from the host against a published port (HTTP or TCP).
    Host(Probe),
}

impl From<&Probe> for Check {
    fn from(p: &Probe) -> Self {
        Check::Host(p.clone())
    }
}

impl Check {
    /// The service's host probe, if it has one.
    pub fn probe(svc: &ServiceManifest) -> Option<Check> {
        svc.health.as_ref()?.probe.as_ref().map(Check::from)
    }

    /// The service's health command, run in its container by the engine.
    pub fn exec(stack: &StackManifest, svc: &ServiceManifest) -> Option<Check> {
        Some(Check::Exec {
            engine: Engine::from(stack),
            container: svc.container.clone(),
            cmd: svc.health.as_ref()?.cmd.clone()?,
        })
    }

    /// What the start-up gate waits for: the container's own health
    /// command (what the engine will judge the container by), else the
    /// host probe.
    pub fn gate(stack: &StackManifest, svc: &ServiceManifest) -> Option<Check> {
        Check::exec(stack, svc).or_else(|| Check::probe(svc))
    }
}

/// Run a check once. `Err` carries a short reason ("HTTP 503", "connection
/// refused", "timed out after 2s").
pub fn check_once(check: &Check, timeout: Duration) -> Result<(), String> {
    match check {
        Check::Exec {
            engine,
            container,
            cmd,
        } => {
            // The same command the engine's own health check runs, through
            // `exec` on both engines. Not `podman healthcheck run`: that
            // records each failure in the container's health log, so a gate
            // polling every few hundred milliseconds would use up
            // --health-retries during start-up and --health-on-failure=kill
            // would kill a container that is merely slow to start.
            let out = engine
                .exec_shell(container, cmd)
                .output()
                .map_err(|e| format!("{e:#}"))?;
            if out.status.success() {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&out.stderr);
                let first = text.lines().next().unwrap_or("").trim();
                Err(match out.status.code() {
                    Some(code) if first.is_empty() => format!("health command exited {code}"),
                    Some(code) => format!("health command exited {code}: {first}"),
                    None => "health command killed by a signal".to_owned(),
                })
            }
        }
        Check::Host(Probe::Http {
            url,
            method,
            expect_status,
            expect_body,
        }) => http_check(url, method, *expect_status, expect_body.as_deref(), timeout),
        Check::Host(Probe::Tcp { address }) => {
            let addrs: Vec<_> = address
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {address}: {e}"))?
                .collect();
            let mut last = format!("no address for {address}");
            for a in addrs {
                match TcpStream::connect_timeout(&a, timeout) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = io_reason(&e, timeout),
                }
            }
            Err(last)
        }
    }
}

fn io_reason(e: &std::io::Error, timeout: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        // A port proxy (Docker's) accepts and hangs up when nothing listens
        // behind it.
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
            "connection closed before an answer".to_owned()
        }
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            format!("timed out after {}s", timeout.as_secs_f32())
        }
        _ => e.to_string(),
    }
}

/// The size of each of a probe's two buffers (request out, response in).
/// ureq's default (128 KiB each, zero-filled on first use) made every round
/// of probes touch 256 KiB per service at once: 12.5 MiB of serve's peak
/// for 50 services (benches/README.md, API benchmark).
const PROBE_BUFFER: usize = 16 * 1024;
/// The largest response header a probe reads (a health endpoint's is a few
/// hundred bytes). Below [`PROBE_BUFFER`], so that a larger one is reported
/// as such rather than as a read that stalls on a full buffer.
const PROBE_MAX_HEADER: usize = 8 * 1024;

fn http_check(
    url: &str,
    method: &str,
    expect_status: Option<u16>,
    expect_body: Option<&str>,
    timeout: Duration,
) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .input_buffer_size(PROBE_BUFFER)
        .max_response_header_size(PROBE_MAX_HEADER)
        .output_buffer_size(PROBE_BUFFER)
        .build()
        .into();
    let result = match method {
        "POST" => agent.post(url).send_empty(),
        "HEAD" => agent.head(url).call(),
        _ => agent.get(url).call(),
    };
    let mut resp = result.map_err(|e| match e {
        ureq::Error::Io(io) => io_reason(&io, timeout),
        ureq::Error::Timeout(_) => format!("timed out after {}s", timeout.as_secs_f32()),
        other => other.to_string(),
    })?;
    let status = resp.status().as_u16();
    let status_ok = match expect_status {
        Some(s) => status == s,
        None => (200..400).contains(&status),
    };
    if !status_ok {
        return Err(format!("HTTP {status}"));
    }
    if let Some(needle) = expect_body {
        let mut body = String::new();
        resp.body_mut()
            .as_reader()
            .take(64 * 1024)
            .read_to_string(&mut body)
            .map_err(|e| format!("reading the body: {e}"))?;
        if !body.contains(needle) {
            return Err(format!("HTTP {status} but the body lacks {needle:?}"));
        }
    }
    Ok(())
}

/// Which container a gate watches, so that it gives up as soon as the
/// container is gone instead of polling until its timeout.
#[derive(Debug, Clone)]
pub struct Watched {
    pub engine: Engine,
    pub container: String,
    /// The unit's main process (systemd passes `$MAINPID` to
    /// `ExecStartPost=`): when it is gone (`docker run` failed, conmon
    /// exited), the container will never become healthy.
    pub main_pid: Option<u32>,
}

/// Poll `check` until it passes or `timeout` runs out; used as the
/// `ExecStartPost=` health gate. Logs each change of the failure reason.
/// With `watched`, fails at once when the container, once seen, has stopped
/// or disappeared (it died during start-up; systemd will restart the unit).
pub fn wait_healthy(
    check: &Check,
    timeout: Duration,
    what: &str,
    watched: Option<&Watched>,
) -> Result<()> {
    wait_healthy_unless(check, timeout, what, watched, None).map(drop)
}

/// [`wait_healthy`] that also gives up as soon as `cancel` is set (the
/// gate got SIGTERM: systemd stops the unit while it starts). Returns
/// whether the container became healthy.
pub fn wait_healthy_unless(
    check: &Check,
    timeout: Duration,
    what: &str,
    watched: Option<&Watched>,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<bool> {
    let cancelled = || cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed));
    let start = Instant::now();
    let mut last: Option<String> = None;
    let mut seen_running = false;
    let mut tries = 0u64;
    loop {
        if cancelled() {
            return Ok(false);
        }
        let per_try = Duration::from_secs(5).min(timeout);
        tries += 1;
        match check_once(check, per_try) {
            Ok(()) => {
                let took = start.elapsed().as_secs_f32();
                tracing::info!("{what} is healthy after {took:.1}s");
                sd_notify_status(&format!("healthy after {took:.1}s"));
                return Ok(true);
            }
            Err(reason) => {
                // `systemctl status` shows why the unit is still activating.
                sd_notify_status(&format!(
                    "waiting for health: try {tries}, {}s of {}s, last: {reason}",
                    start.elapsed().as_secs(),
                    timeout.as_secs()
                ));
                if last.as_deref() != Some(reason.as_str()) {
                    tracing::info!("{what} not healthy yet: {reason}");
                    last = Some(reason);
                }
            }
        }
        // A stop asked during the try ends the wait before anything read
        // since counts: systemd's SIGTERM reaches the whole unit, so the
        // engine commands of that try may have been killed by it, and the
        // container may be stopping because of it.
        if cancelled() {
            return Ok(false);
        }
        if let Some(w) = watched {
            if let Some(pid) = w.main_pid
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                bail!(
                    "{what}: the unit's main process ({pid}) exited before the container became \
                     healthy (last result: {}); see journalctl -u",
                    last.unwrap_or_default()
                );
            }
            let status = w.engine.container_status(&w.container);
            if cancelled() {
                return Ok(false);
            }
            match status.as_ref().map(Option::as_deref) {
                Ok(Some("running")) => seen_running = true,
                // Not created yet (docker run in the foreground may still
                // be pulling or creating it), or starting.
                Ok(Some("created" | "configured" | "initialized" | "restarting")) => {}
                Ok(None) if !seen_running => {}
                // A read that failed says nothing of the container: the
                // next try reads again, and the timeout still holds.
                Err(e) => tracing::info!("{what}: could not read the container's state: {e:#}"),
                Ok(state) => bail!(
                    "{what} stopped before it became healthy (container {}; last result: {}); \
                     see its logs with journalctl -u",
                    state.unwrap_or("gone"),
                    last.unwrap_or_default()
                ),
            }
        }
        if start.elapsed() >= timeout {
            bail!(
                "{what} did not become healthy within {}s (last result: {}); see its logs with \
                 journalctl -u and check the health probe in the spec",
                timeout.as_secs(),
                last.unwrap_or_default()
            );
        }
        let until = Instant::now() + poll_delay(start.elapsed());
        while Instant::now() < until {
            if cancelled() {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Send `STATUS=<text>` to systemd (sd_notify(3)) when `$NOTIFY_SOCKET`
/// says where; the unit needs `NotifyAccess=` for it to count. Best effort:
/// a status line is never worth failing the gate.
pub fn sd_notify_status(text: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    notify_status_to(&socket, text);
}

fn notify_status_to(socket: &std::ffi::OsStr, text: &str) {
    let message = format!("STATUS={}", text.replace('\n', " "));
    let sent = (|| -> std::io::Result<()> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let bytes = socket.as_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(std::path::Path::new(socket))?,
        };
        UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::debug!("sd_notify to {}: {e}", socket.to_string_lossy());
    }
}

/// The pause between two tries of [`wait_healthy`]: an eighth of the time
/// waited so far, between 250 ms and 2 s. It is the gate of every
/// dependency level on Docker and podman 4, so the time it adds after the
/// app is ready stays small against the app's own start-up (≤ 1/8 of it, or
/// 250 ms), while a slow app is not probed more than every 2 s.
pub fn poll_delay(waited: Duration) -> Duration {
    (waited / 8).clamp(Duration::from_millis(250), Duration::from_secs(2))
}

/// Create each directory that does not exist yet, owned by `uid:gid` with
/// `mode`; parents are created root-owned 0755. An existing directory is
/// never touched (it may hold data a migration put there).
pub fn ensure_dirs(paths: &[std::path::PathBuf], uid: u32, gid: u32, mode: u32) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    for path in paths {
        if !path.is_absolute() {
            bail!("{}: not an absolute path", path.display());
        }
        match fs_err::metadata(path) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => bail!(
                "{} exists but is not a directory; move it away so the container can mount a directory there",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Ok(()) => {}
            // Another unit that mounts the same tree made it a moment ago.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("chown {uid}:{gid} {}", path.display()))?;
        // The process umask may have narrowed the mode given at creation.
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        tracing::info!("created {} ({uid}:{gid}, {mode:04o})", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;

    fn serve_once(response: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(response.as_bytes());
            }
        });
        format!("http://{addr}/ping")
    }

    /// A probe reads a response header of up to 8 KiB and says so of a
    /// larger one.
    #[test]
    fn http_probe_reads_a_header_up_to_8_kib() {
        let answer = |header_bytes: usize| -> &'static str {
            let filler = "x".repeat(header_bytes);
            let text =
                format!("HTTP/1.1 200 OK\r\nX-Filler: {filler}\r\nContent-Length: 0\r\n\r\n");
            Box::leak(text.into_boxed_str())
        };
        let t = Duration::from_secs(5);
        let ok = serve_once(answer(6 * 1024));
        assert_eq!(http_check(&ok, "GET", None, None, t), Ok(()));
        let big = serve_once(answer(12 * 1024));
        let err = http_check(&big, "GET", None, None, t).expect_err("a 12 KiB header");
        assert!(err.contains("response header is too big"), "{err}");
    }

    #[test]
    fn poll_delay_is_an_eighth_of_the_wait_between_250ms_and_2s() {
        assert_eq!(poll_delay(Duration::ZERO), Duration::from_millis(250));
        assert_eq!(
            poll_delay(Duration::from_secs(2)),
            Duration::from_millis(250)
        );
        assert_eq!(
            poll_delay(Duration::from_secs(4)),
            Duration::from_millis(500)
        );
        assert_eq!(poll_delay(Duration::from_secs(8)), Duration::from_secs(1));
        assert_eq!(poll_delay(Duration::from_secs(600)), Duration::from_secs(2));
    }

    /// The gate of every dependency level on Docker and podman 4: an app
    /// that answers 2 s after start is seen within a poll of it (the old
    /// doubling backoff tried at 1.75 s and next at 3.75 s).
    #[test]
    fn gate_sees_an_app_soon_after_it_is_ready() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = l.local_addr().unwrap().to_string();
        drop(l);
        let listen_at = address.clone();
        let start = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            let l = TcpListener::bind(&listen_at).unwrap();
            for s in l.incoming() {
                drop(s);
            }
        });
        let check = Check::Host(Probe::Tcp { address });
        wait_healthy(&check, Duration::from_secs(20), "app", None).unwrap();
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(2900),
            "the gate saw a port that opened after 2 s only after {took:?}"
        );
    }

    #[test]
    fn http_status_and_body_are_checked() {
        let url = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"OK\"}");
        let ok = Check::Host(Probe::Http {
            url,
            method: "GET".into(),
            expect_status: Some(200),
            expect_body: Some("OK".into()),
        });
        assert_eq!(check_once(&ok, Duration::from_secs(2)), Ok(()));

        let url = serve_once("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        let bad = Check::Host(Probe::Http {
            url,
            method: "GET".into(),
            expect_status: None,
            expect_body: None,
        });
        assert_eq!(
            check_once(&bad, Duration::from_secs(2)),
            Err("HTTP 503".into())
        );
    }

    #[test]
    fn status_reaches_the_notify_socket_on_one_line() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify_status_to(
            path.as_os_str(),
            "waiting for health: try 3\nlast: HTTP 503",
        );
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "STATUS=waiting for health: try 3 last: HTTP 503"
        );
    }

    #[test]
    fn refused_tcp_says_so() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let r = check_once(
            &Check::Host(Probe::Tcp { address: addr }),
            Duration::from_secs(1),
        );
        assert_eq!(r, Err("connection refused".into()));
    }

    #[test]
    fn ensure_dirs_creates_but_never_touches_existing() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let new = t.path().join("a/b/config");
        let existing = t.path().join("old");
        std::fs::create_dir(&existing).unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o700)).unwrap();
        let uid = nix_uid();
        ensure_dirs(&[new.clone(), existing.clone()], uid, uid, 0o750).unwrap();
        let mode =
            |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&new), 0o750);
        assert_eq!(mode(&existing), 0o700);
    }

    fn nix_uid() -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid()
    }

    /// A health gate watching a container through a fake engine: a script
    /// that answers `running` to its first `inspect`, then runs `then`.
    fn gate_with_engine(
        then: &str,
        timeout: Duration,
        cancel: Option<&std::sync::atomic::AtomicBool>,
    ) -> (tempfile::TempDir, Result<bool>) {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let seen = t.path().join("seen");
        let script = t.path().join("docker");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nif [ ! -e {seen} ]; then : > {seen}; echo running; exit 0; fi\n{then}\n",
                seen = seen.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = l.local_addr().unwrap().to_string();
        drop(l);
        let watched = Watched {
            engine: Engine::new(crate::spec::Backend::Docker, script.display().to_string()),
            container: "app".into(),
            main_pid: None,
        };
        let check = Check::Host(Probe::Tcp { address });
        let r = wait_healthy_unless(&check, timeout, "app", Some(&watched), cancel);
        (t, r)
    }

    /// systemd's SIGTERM to a unit that is still starting reaches the
    /// gate's `docker inspect` too: a read that failed is not a container
    /// that is gone (the gate used to end at once "container gone").
    #[test]
    fn a_failed_engine_read_is_not_a_gone_container() {
        let (_t, r) = gate_with_engine("kill -TERM $$", Duration::from_secs(2), None);
        let e = format!("{:#}", r.unwrap_err());
        assert!(e.contains("did not become healthy within 2s"), "{e}");

        let (_t, r) = gate_with_engine(
            "echo 'Error: No such container: app' >&2; exit 1",
            Duration::from_secs(20),
            None,
        );
        let e = format!("{:#}", r.unwrap_err());
        assert!(
            e.contains("stopped before it became healthy (container gone"),
            "{e}"
        );
    }

    /// A stop asked while the gate reads the container's state wins over
    /// what the read finds (the container is stopping because of it).
    #[test]
    fn a_stop_during_the_state_read_ends_the_wait_quietly() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let t = tempfile::tempdir().unwrap();
        let reading = t.path().join("reading");
        let cancel = std::sync::Arc::new(AtomicBool::new(false));
        let (flag, watch) = (cancel.clone(), reading.clone());
        std::thread::spawn(move || {
            while !watch.exists() {
                std::thread::sleep(Duration::from_millis(10));
            }
            flag.store(true, Ordering::Relaxed);
        });
        let then = format!(": > {}; sleep 1; echo exited", reading.display());
        let (_t, r) = gate_with_engine(&then, Duration::from_secs(20), Some(&cancel));
        assert!(!r.unwrap(), "a cancelled gate is not healthy");
    }
}
