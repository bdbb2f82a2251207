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
        cmd.arg("--follow");
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
    // The child travels with the stream: dropped (and killed) with it.
    let stream = futures_util::stream::unfold((stdout, child), |(mut out, child)| async move {
        let mut buf = vec![0u8; 8192];
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), (out, child)))
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}
