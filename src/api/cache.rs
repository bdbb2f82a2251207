//! The status rows the read routes answer from: refreshed when systemd
//! signals a change of a unit (one subscription: PropertiesChanged and
//! JobRemoved) and at the probe interval, so a read costs no D-Bus round
//! trip.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Notify, RwLock, broadcast};

use crate::control::{self, Selected};
use crate::manifest::Manifest;
use crate::status::{self, Report};
use crate::systemd::{self, Systemd};

pub struct Cache {
    pub manifest: Arc<Manifest>,
    /// The last report, or why systemd could not be read.
    report: RwLock<Result<Arc<Report>, String>>,
    /// Wakes the refresher (after a job this API ran).
    poke: Notify,
    /// One JSON row per change of a service's state or health (`/events`).
    events: broadcast::Sender<String>,
    /// How long the last round of probes took, in seconds.
    pub probe_seconds: std::sync::Mutex<f64>,
}

impl Cache {
    /// Read the state once, then keep it fresh in a task.
    pub async fn start(
        manifest: Arc<Manifest>,
        bus_address: Option<String>,
        every: Duration,
        probe_timeout: Duration,
    ) -> Result<Arc<Self>> {
        let sd = Systemd::connect(bus_address.as_deref()).await?;
        sd.subscribe().await?;
        let conn = systemd::connect(bus_address.as_deref()).await?;
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender("org.freedesktop.systemd1")
            .build()
            .context("building the signal match rule")?;
        let changes =
            zbus::MessageStream::for_match_rule(rule, &conn, std::num::NonZeroUsize::new(256))
                .await
                .context("subscribing to systemd's signals")?;
        let selected = control::select(&manifest, &[])?;
        let cache = Arc::new(Cache {
            report: RwLock::new(Err("not read yet".to_owned())),
            manifest,
            poke: Notify::new(),
            events: broadcast::channel(256).0,
            probe_seconds: std::sync::Mutex::new(0.0),
        });
        cache.refresh(&sd, &selected, probe_timeout).await;
        let c = cache.clone();
        tokio::spawn(async move {
            c.keep_fresh(sd, changes, selected, every, probe_timeout)
                .await;
        });
        Ok(cache)
    }

    /// The current report, or the D-Bus error that stopped its refresh.
    pub async fn report(&self) -> Result<Arc<Report>, String> {
        self.report.read().await.clone()
    }

    /// The changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    /// Ask for a refresh now.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    async fn refresh(&self, sd: &Systemd, selected: &[Selected], probe_timeout: Duration) {
        let units = control::units_of(&self.manifest, selected);
        let next = match sd.unit_states(&units).await {
            Err(e) => Err(format!("systemd: {e:#}")),
            Ok(states) => {
                let manifest = self.manifest.clone();
                let selected = selected.to_vec();
                let began = std::time::Instant::now();
                // Probes block (one thread each): off the async workers.
                let r = tokio::task::spawn_blocking(move || {
                    status::build_report(&manifest, &selected, states, true, probe_timeout)
                })
                .await
                .map(Arc::new)
                .map_err(|e| format!("probing: {e}"));
                if let Ok(mut s) = self.probe_seconds.lock() {
                    *s = began.elapsed().as_secs_f64();
                }
                r
            }
        };
        let mut current = self.report.write().await;
        if let (Ok(old), Ok(new)) = (&*current, &next) {
            self.announce(old, new);
        }
        *current = next;
    }

    async fn keep_fresh(
        &self,
        sd: Systemd,
        mut changes: zbus::MessageStream,
        selected: Vec<Selected>,
        every: Duration,
        probe_timeout: Duration,
    ) {
        loop {
            tokio::select! {
                _ = changes.next() => {
                    // Let a burst of changes (a restart sends several) settle.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while let Some(Some(_)) = changes.next().now_or_never() {}
                }
                _ = self.poke.notified() => {}
                _ = tokio::time::sleep(every) => {}
            }
            self.refresh(&sd, &selected, probe_timeout).await;
        }
    }

    /// Send one event per row whose state or health changed.
    fn announce(&self, old: &Report, new: &Report) {
        for row in &new.services {
            let before = old.services.iter().find(|r| r.service == row.service);
            let same = before.is_some_and(|b| {
                b.state.active_state == row.state.active_state
                    && b.state.sub_state == row.state.sub_state
                    && b.state.main_pid == row.state.main_pid
                    && b.state.n_restarts == row.state.n_restarts
                    && b.health == row.health
            });
            if !same && let Ok(json) = serde_json::to_string(&super::routes::container(row)) {
                // No receiver is no error: nobody is listening.
                let _ = self.events.send(json);
            }
        }
    }
}
