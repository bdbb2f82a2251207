//! nixarr-units: a media stack (or any container) as podman or Docker
//! containers under systemd. See DESIGN in the repository for the data flow:
//! spec → [`spec`] → [`resolve`] (catalog presets, validation) → [`render`]
//! (pure) → [`output`] / [`generator`] (files).

pub mod api;
pub mod backup;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod control;
pub mod diff;
pub mod duration;
pub mod engine;
pub mod error;
pub mod generator;
pub mod genlog;
pub mod graph;
pub mod heal;
pub mod health;
pub mod host;
pub mod images;
pub mod init;
pub mod limits;
pub mod manifest;
pub mod migrate;
pub mod model;
pub mod naming;
pub mod nixfmt;
pub mod output;
pub mod pipeline;
pub mod profiles;
pub mod provenance;
pub mod reconcile;
pub mod reload;
pub mod render;
pub mod resolve;
pub mod secrets;
pub mod spec;
pub mod status;
pub mod stop;
pub mod systemd;
pub mod wizard;
