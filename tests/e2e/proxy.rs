//! End-to-end: the reverse proxy configuration `render` writes for a spec
//! with `proxy` (share/nixarr-units/proxy/), run by Debian's nginx and
//! Caddy in the machine in front of two fake apps, on podman 4.3 and
//! Docker. The machine has a network of its own, so the proxies listen on
//! its port 80, not the host's.
//!
//! For each proxy: an app at a subdomain and one at a sub-path answer
//! through it (with the security headers), a WebSocket upgrade passes
//! through both ways, and a stopped app is a 502.
//!
//! Runs as root only (CI does); otherwise prints SKIPPED loudly.

use std::path::Path;
use std::time::Duration;

use crate::harness;
use crate::harness::{Backend, BootOptions, IMAGE, Scenario, ScenarioFn, free_port, wait_for};
use anyhow::{Context, Result, ensure};
use serde_json::json;

const SCENARIOS: &[(&str, ScenarioFn)] = &[(
    "nginx and Caddy: subdomain and sub-path routes, a WebSocket upgrade, 502 for a stopped app",
    nginx_and_caddy,
)];

fn run(backend: Backend) {
    let missing = ["/usr/sbin/nginx", "/usr/bin/caddy", "/usr/bin/curl"]
        .iter()
        .find(|p| !Path::new(p).exists())
        .map(|p| format!("{p} is missing (apt-get install nginx-light caddy curl)"));
    harness::run_suite_booted(
        "proxy end-to-end tests",
        backend,
        BootOptions {
            private_network: true,
            ..BootOptions::default()
        },
        SCENARIOS,
        missing,
        |_| Ok(()),
        |_| {},
    );
}

#[test]
fn podman() {
    run(Backend::Podman);
}

#[test]
fn docker() {
    run(Backend::Docker);
}

const DOMAIN: &str = "media.test";

fn app(port: u16, url_base: Option<&str>) -> serde_json::Value {
    let mut env = json!({ "FAKE_STYLE": "arr" });
    if let Some(b) = url_base {
        env["FAKE_URL_BASE"] = json!(b);
    }
    json!({
        "image": IMAGE,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": env,
        "health": { "http": "/ping", "port": 8080, "expectStatus": 200, "interval": "2s" },
        "stopTimeout": 5,
    })
}

/// `curl` in the machine: (status, headers and body).
fn curl(sc: &Scenario, host: &str, path: &str) -> Result<(u16, String)> {
    let out = sc.m.exec(&[
        "curl",
        "-s",
        "-i",
        "--max-time",
        "10",
        "-H",
        &format!("Host: {host}"),
        &format!("http://127.0.0.1{path}"),
    ])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("curl {host}{path}: no status in {text:?}"))?;
    Ok((status, text))
}

/// A WebSocket handshake through the proxy, then a line sent and echoed.
fn websocket(sc: &Scenario, host: &str, path: &str) -> Result<String> {
    let script = format!(
        "(printf 'GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nUpgrade: websocket\\r\\n\
         Connection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\
         Sec-WebSocket-Version: 13\\r\\n\\r\\n'; sleep 1; echo through-the-proxy; sleep 1) \
         | busybox nc 127.0.0.1 80"
    );
    let out = sc.m.exec(&["sh", "-c", &script])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Both routes answer, with the security headers; the WebSocket passes;
/// the stopped app is a 502 (started again afterwards).
fn check_routes(sc: &Scenario, proxy: &str) -> Result<()> {
    let (status, text) = wait_for(
        &format!("{proxy} to answer for a.{DOMAIN}"),
        Duration::from_secs(30),
        || {
            Ok(curl(sc, &format!("a.{DOMAIN}"), "/ping")
                .ok()
                .filter(|(s, _)| *s == 200))
        },
    )?;
    ensure!(
        status == 200 && text.contains(r#"{"status":"OK"}"#),
        "{proxy}: a.{DOMAIN}/ping: {text}"
    );
    let lower = text.to_ascii_lowercase();
    ensure!(
        lower.contains("x-content-type-options: nosniff")
            && lower.contains("x-frame-options: sameorigin"),
        "{proxy}: no security headers:\n{text}"
    );
    let (status, text) = curl(sc, DOMAIN, "/b/ping")?;
    ensure!(
        status == 200 && text.contains(r#"{"status":"OK"}"#),
        "{proxy}: {DOMAIN}/b/ping: {text}"
    );
    // a is not at a sub-path (nginx answers 404, Caddy an empty 200).
    let (_, text) = curl(sc, DOMAIN, "/a/ping")?;
    ensure!(
        !text.contains(r#""status""#),
        "{proxy}: {DOMAIN}/a/ping reached an app:\n{text}"
    );
    for (host, path) in [
        (format!("a.{DOMAIN}"), "/socket"),
        (DOMAIN.to_owned(), "/b/socket"),
    ] {
        let ws = websocket(sc, &host, path)?;
        ensure!(
            ws.contains("101 Switching Protocols")
                && ws.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                && ws.contains("through-the-proxy"),
            "{proxy}: WebSocket through {host}{path}:\n{ws}"
        );
    }
    sc.m.systemctl(&["stop", &sc.unit("a")])?;
    let (status, _) = curl(sc, &format!("a.{DOMAIN}"), "/ping")?;
    ensure!(
        status == 502,
        "{proxy}: a stopped app gives {status}, not 502"
    );
    sc.m.systemctl(&["start", &sc.unit("a")])?;
    Ok(())
}

fn nginx_and_caddy(sc: &mut Scenario) -> Result<()> {
    let (pa, pb) = (free_port()?, free_port()?);
    let mut a = app(pa, None);
    a["proxy"] = json!({ "subdomain": "a" });
    let mut b = app(pb, Some("/b"));
    b["proxy"] = json!({ "path": "/b" });
    let mut spec = sc.spec(json!({ "a": a, "b": b }));
    spec["proxy"] = json!({ "domain": DOMAIN });
    sc.install(&spec)?;
    sc.start_target()?;
    // What `render` writes for this spec (the generator wrote the units).
    let dir = format!("{}/proxy-{}", sc.m.dir.path().display(), sc.prefix);
    sc.render_installed(&format!("{dir}/out"))?;
    let conf = format!("{dir}/out/share/nixarr-units/proxy");
    fs_err::write(
        format!("{dir}/nginx.conf"),
        format!(
            "pid {dir}/nginx.pid;\nerror_log stderr;\nevents {{}}\nhttp {{\n    access_log off;\n    \
             include {conf}/nginx.conf;\n}}\n"
        ),
    )?;
    // Debian's nginx keeps its temporary files in /var/lib/nginx, which the
    // machine's fresh /var lacks.
    sc.m.ok(&["mkdir", "-p", "/var/lib/nginx", "/root/.local/share"])?;
    let nginx = format!("{}-nginx", sc.prefix);
    sc.m.ok(&[
        "systemd-run",
        &format!("--unit={nginx}"),
        "nginx",
        "-g",
        "daemon off;",
        "-c",
        &format!("{dir}/nginx.conf"),
    ])?;
    let checked = check_routes(sc, "nginx");
    sc.m.ok(&["systemctl", "stop", &nginx])?;
    checked?;

    let caddy = format!("{}-caddy", sc.prefix);
    sc.m.ok(&[
        "systemd-run",
        &format!("--unit={caddy}"),
        "--setenv=HOME=/root",
        "--setenv=XDG_DATA_HOME=/root/.local/share",
        "caddy",
        "run",
        "--adapter",
        "caddyfile",
        "--config",
        &format!("{conf}/Caddyfile"),
    ])?;
    // The app's health gate may still hold its start.
    wait_for("a to run again", Duration::from_secs(60), || {
        Ok((sc.m.active_state(&sc.unit("a"))? == "active").then_some(()))
    })?;
    let checked = check_routes(sc, "Caddy");
    sc.m.ok(&["systemctl", "stop", &caddy])?;
    checked
}
