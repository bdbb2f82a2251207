//! End-to-end harness: real systemd as PID 1 in systemd-nspawn over the
//! host's /usr (or the cached trixie root), nixarr-units installed inside as
//! a systemd generator, real podman (inside) and a real dockerd (started
//! here, on the host). See /work/shared/REAL-SYSTEMD.md for why each piece
//! looks the way it does.
//!
//! - [`machine`]: [`Machine`], one booted nspawn machine per backend, and
//!   what a test asks of it (exec, systemctl, engine, unit properties);
//! - [`lock`]: the host lock, one machine at a time on the host;
//! - [`dockerd`], [`net`], [`image`]: what a machine needs around it (the
//!   host's dockerd, a network of its own, the fake app's image);
//! - [`leftovers`]: machines and directories of crashed runs;
//! - [`scenario`]: what a scenario gets ([`Scenario`]: its prefix, its spec);
//! - [`runner`]: run a suite's scenarios on one machine per backend;
//! - [`host`]: host commands, polling, HTTP, command results;
//! - [`nixos`], [`nixos_fw`]: the NixOS mode (a machine configured from an
//!   evaluated NixOS configuration, behind the emulated NixOS firewall).
//!
//! Everything started here is stopped by PID in `Drop`, and everything
//! created lives under one temporary directory that `Drop` removes.

pub mod dockerd;
pub mod host;
pub mod image;
pub mod leftovers;
pub mod lock;
pub mod machine;
pub mod net;
pub mod nixos;
pub mod nixos_fw;
pub mod runner;
pub mod scenario;

pub use host::{
    Run, free_port, host, http_get, output_text, parse_environ, run_id, wait_child, wait_for,
};
pub use leftovers::clean_leftovers;
pub use machine::{Backend, BootOptions, Machine};
pub use net::{NET_CLIENT_ADDR, NET_HOST_NAME, NET_MACHINE_ADDR};
pub use runner::{MACHINES, PODMAN5, run_suite, run_suite_booted, run_suite_podman5, skip_reason};
pub use scenario::{Scenario, ScenarioFn};

/// Every machine name, temp dir and dockerd of this harness carries it.
pub const MARKER: &str = "nixarr-e2e";
pub const IMAGE: &str = "localhost/nixarr-fake-app:test";
/// A label on every test container: which scenario made it.
pub const SCENARIO_LABEL: &str = "org.nixarr-e2e.scenario";
pub const BIN: &str = env!("CARGO_BIN_EXE_nixarr-units");
/// Where the machine sees the binary's directory for the generator (and so
/// for every unit it renders).
pub const MACHINE_BIN_DIR: &str = "/run/nixarr-e2e-bin";

/// A cheap service: the fake app's busybox sleeping, with no ports,
/// volumes or probes, stopped at once; given `start_timeout` seconds (a
/// machine starting hundreds of them at once is slow).
pub fn sleeping_app(start_timeout: u64) -> serde_json::Value {
    serde_json::json!({
        "image": IMAGE,
        "entrypoint": "/bin/sleep",
        "cmd": ["1000000"],
        "stopTimeout": 1,
        "startTimeout": start_timeout,
    })
}

/// The fake app answering its probe from the host on `port` (the Jellyfin
/// style: GET /health → Healthy), stopped within `stop_timeout` seconds.
pub fn probed_app(port: u16, stop_timeout: u64) -> serde_json::Value {
    serde_json::json!({
        "image": IMAGE,
        "ports": [{ "host": port, "container": 8080, "address": "127.0.0.1" }],
        "environment": { "FAKE_STYLE": "health" },
        "health": { "http": "/health", "port": 8080, "expectStatus": 200, "expectBody": "Healthy" },
        "stopTimeout": stop_timeout,
        "startTimeout": 120,
    })
}
