//! What `update` last did to each service, for `status`: the last update
//! and the last rollback, with when and which digests. Kept in
//! [`HISTORY`] (by unit name, which no two stacks share), written
//! atomically after each update that changed something.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::images::update::{Outcome, UpdateResult};

/// Where the history is kept.
pub const HISTORY: &str = "/var/lib/nixarr-units/image-updates.json";

/// [`HISTORY`], or `$NIXARR_UNITS_UPDATE_HISTORY`.
pub fn path() -> PathBuf {
    std::env::var_os("NIXARR_UNITS_UPDATE_HISTORY")
        .map_or_else(|| PathBuf::from(HISTORY), PathBuf::from)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<Event>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rollback: Option<Event>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// RFC 3339, UTC.
    pub at: String,
    pub image: String,
    /// The digest before (and, after a rollback, again).
    pub from: Option<String>,
    /// The digest updated to (or tried, for a rollback).
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// By unit name.
pub type History = BTreeMap<String, Record>;

/// The history at `path` (empty when there is none or it cannot be read:
/// it only informs `status`).
pub fn load(path: &Path) -> History {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// `history` with `outcomes` at time `at` recorded.
pub fn with(mut history: History, outcomes: &[Outcome], at: &str) -> History {
    for o in outcomes {
        let event = Event {
            at: at.to_owned(),
            image: o.image.clone(),
            from: o.from.clone(),
            to: o.to.clone(),
            detail: o.detail.clone(),
        };
        let rec = history.entry(o.unit.clone()).or_default();
        match o.result {
            UpdateResult::Updated | UpdateResult::Recorded => rec.last_update = Some(event),
            UpdateResult::RolledBack | UpdateResult::RollbackFailed => {
                rec.last_rollback = Some(event);
            }
        }
    }
    history
}

/// Record `outcomes` now in the history at `path`.
pub fn record(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let history = with(load(path), outcomes, &now);
    let mut text = serde_json::to_string_pretty(&history)?;
    text.push('\n');
    crate::output::write_atomic(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn outcome(unit: &str, result: UpdateResult) -> Outcome {
        Outcome {
            service: "a".into(),
            unit: unit.into(),
            image: "r/a:1".into(),
            from: Some("sha256:1".into()),
            to: "sha256:2".into(),
            result,
            detail: None,
        }
    }

    #[test]
    fn updates_and_rollbacks_are_kept_apart_and_survive_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.json");
        assert!(load(&p).is_empty());
        record(&p, &[outcome("x-a.service", UpdateResult::Updated)]).unwrap();
        record(&p, &[outcome("x-a.service", UpdateResult::RolledBack)]).unwrap();
        let h = load(&p);
        let r = &h["x-a.service"];
        assert_eq!(r.last_update.as_ref().unwrap().to, "sha256:2");
        assert_eq!(
            r.last_rollback.as_ref().unwrap().from.as_deref(),
            Some("sha256:1")
        );
        let h2 = with(
            h.clone(),
            &[outcome("x-b.service", UpdateResult::Updated)],
            "t",
        );
        assert_eq!(h2.len(), 2);
        assert_eq!(h2["x-a.service"], h["x-a.service"]);
    }
}
