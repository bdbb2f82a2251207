//! The end-to-end tests: one test binary (`cargo test --test e2e`), the
//! harness in [`harness`] and one module per suite. Each suite has one test
//! per backend, named `<suite>::<backend>` (`podman`: podman 4.3 on the
//! host's Debian 12; `podman5`: the trixie root; `docker`: the host's
//! dockerd), which boots one machine and runs the suite's scenarios on it.
//! Machines run one at a time (the host lock, [`harness::lock`]), so a libtest
//! filter picks what runs: `cargo test --test e2e stop::` one suite,
//! `cargo test --test e2e -- --exact stop::podman` one suite on one
//! backend, and `NIXARR_E2E_ONLY=<substring>` the scenarios whose name
//! contains it.
//!
//! Runs as root only (CI does); otherwise each test prints SKIPPED loudly.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod harness;

mod api;
mod api_browser;
mod backup;
mod basic;
mod images;
mod migrate;
mod nixos;
mod proxy;
mod reconcile;
mod secrets;
mod status;
mod stop;
mod vm_scenario;
