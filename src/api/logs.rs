//! `GET /container/<name>/logs?lines=N&follow=1`: the journal of the unit
//! and of its secret bridge, as text; with `follow` the answer streams
//! until the client goes away (journalctl is killed then).

use std::process::Stdio;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

use super::routes::{Api, error, unit_of};

#[derive(Deserialize)]
pub struct LogQuery {
    lines: Option<String>,
    follow: Option<String>,
}

const MAX_LINES: u64 = 10_000;

pub async fn logs(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    Query(q): Query<LogQuery>,
) -> Response {
    let Some(unit) = unit_of(&api, &name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("Container not found: {name}"),
        );
    };
    let lines = match q.lines.as_deref().map(str::parse::<u64>) {
        None => 100,
        Some(Ok(n)) if n <= MAX_LINES => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("lines: a whole number from 0 to {MAX_LINES}"),
            );
        }
    };
    let follow = match q.follow.as_deref() {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(_) => return error(StatusCode::BAD_REQUEST, "follow: 1 or 0"),
    };
    let secrets = api
        .cache
        .manifest
        .services()
        .find(|(_, n, _)| n.as_str() == name)
        .and_then(|(_, _, s)| s.secrets_unit.clone());
    let mut cmd = tokio::process::Command::new("journalctl");
    // --quiet: no "-- No entries --" or journal header lines.
    cmd.args([
        "--no-pager",
        "--quiet",
        "-o",
        "short-iso",
        "-n",
        &lines.to_string(),
        "-u",
        &unit,
    ]);
    if let Some(s) = &secrets {
        cmd.args(["-u", s]);
    }
    if follow {
        // --follow implies --boot: journalctl then keeps only entries whose
        // _BOOT_ID is the one it reads from /proc/sys/kernel/random/boot_id.
        // The service's sandbox (ProtectKernelTunables=, ProtectProc=,
        // ProtectControlGroups=) mounts its own /proc, where a container's
        // boot ID (systemd-nspawn and other managers put their own over
        // that file, and journald stamps entries with it) reads as the
        // kernel's: no entry matched, and follow sent nothing, not even
        // the backlog. --merge is the one switch that turns the implied
        // --boot off; without -u's units it would also show other
        // machines' journals, which -u keeps out in practice.
        cmd.args(["--follow", "--merge"]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("running journalctl: {e}"),
            );
        }
    };
    let Some(stdout) = child.stdout.take() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "journalctl has no output",
        );
    };
    // journalctl lives as long as the body: when the body is dropped (the
    // client went away, or the answer is complete), `gone` fires and the
    // process is killed and reaped (not left a zombie until the next child
    // of the server ends).
    let (gone, body_dropped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let ended = tokio::select! {
            _ = child.wait() => true,
            _ = body_dropped => false,
        };
        if !ended {
            let _ = child.kill().await;
        }
    });
    let stream = futures_util::stream::unfold((stdout, gone), |(mut out, gone)| async move {
        let mut buf = vec![0u8; 8192];
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), (out, gone)))
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}
