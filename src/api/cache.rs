//! The server's one D-Bus connection and the status rows the read routes
//! answer from.
//!
//! One connection (on the server's Tokio runtime) carries everything: the
//! reads, the jobs of the POST routes and the signals. Its match rules name
//! our units only: `JobRemoved` whose unit argument is one of the
//! manifest's units, and `PropertiesChanged` on those units' object paths.
//! A signal refreshes the unit it is about, not the whole cache; the probe
//! interval refreshes everything. A bus that cannot be reached (at start or
//! later) leaves the server up: the D-Bus routes answer `500 systemd: …`
//! while it reconnects with a bounded backoff.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{FutureExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{RwLock, broadcast, oneshot};

use crate::control::{self, Selected};
use crate::manifest::Manifest;
use crate::status::{self, Report};
use crate::systemd::Systemd;

const SYSTEMD: &str = "org.freedesktop.systemd1";
/// The first wait before connecting again; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A bus that takes longer than this to accept us counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Signals queued per match rule before the oldest are dropped (a dropped
/// one costs nothing: the next signal or the interval refreshes the unit).
const QUEUED: NonZeroUsize = NonZeroUsize::new(64).expect("64 is not zero");

/// What made the cache read systemd (`nixarr_api_cache_refreshes_total`).
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// A (re)connection to the bus: every unit.
    Connect,
    /// A signal about some of our units: those units.
    Signal,
    /// A job this API ran: its units.
    Job,
    /// The probe interval: every unit.
    Interval,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Connect => "connect",
            Trigger::Signal => "signal",
            Trigger::Job => "job",
            Trigger::Interval => "interval",
        }
    }
}

pub type Labels = Vec<(&'static str, String)>;

/// The unit names the signals of one connection are about, as they come.
type Changes = SelectAll<BoxStream<'static, String>>;

pub struct Cache {
    pub manifest: Arc<Manifest>,
    /// Every service of the manifest.
    selected: Vec<Selected>,
    /// Their units, in the same order.
    units: Vec<String>,
    probe_timeout: Duration,
    /// The last report, or why systemd could not be read.
    report: RwLock<Result<Arc<Report>, String>>,
    /// The connection to systemd, while there is one.
    bus: RwLock<Option<Systemd>>,
    /// One JSON row per change of a service's state or health (`/events`).
    events: broadcast::Sender<String>,
    /// How long the last round of probes took, in seconds.
    pub probe_seconds: std::sync::Mutex<f64>,
    /// Refreshes by their [`Trigger`].
    pub refreshes: Family<Labels, Counter>,
}

impl Cache {
    /// Connect and read the state once (or fail to, which leaves the
    /// server up), then keep both in a task: signals, the interval,
    /// reconnections.
    pub async fn start(
        manifest: Arc<Manifest>,
        bus_address: Option<String>,
        every: Duration,
        probe_timeout: Duration,
    ) -> Result<Arc<Self>> {
        let selected = control::select(&manifest, &[])?;
        let units = control::units_of(&manifest, &selected);
        let cache = Arc::new(Cache {
            manifest,
            selected,
            units,
            probe_timeout,
            report: RwLock::new(Err("systemd: not connected yet".to_owned())),
            bus: RwLock::new(None),
            events: broadcast::channel(256).0,
            probe_seconds: std::sync::Mutex::new(0.0),
            refreshes: Family::default(),
        });
        let (first, tried) = oneshot::channel();
        let c = cache.clone();
        tokio::spawn(async move { c.run(bus_address, every, first).await });
        // The first request (which socket activation is for) finds the
        // rows read, or the reason they are not.
        let _ = tried.await;
        Ok(cache)
    }

    /// The current report, or the D-Bus error that stopped its refresh.
    pub async fn report(&self) -> Result<Arc<Report>, String> {
        self.report.read().await.clone()
    }

    /// The connection to systemd, or why there is none (`systemd: …`).
    pub async fn systemd(&self) -> Result<Systemd, String> {
        if let Some(sd) = &*self.bus.read().await {
            return Ok(sd.clone());
        }
        Err(match &*self.report.read().await {
            Err(e) => e.clone(),
            Ok(_) => "systemd: not connected to the bus; reconnecting".to_owned(),
        })
    }

    /// The changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }

    /// Connect, watch until the connection is gone, again; forever.
    async fn run(&self, address: Option<String>, every: Duration, first: oneshot::Sender<()>) {
        let mut first = Some(first);
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.connect(address.as_deref()).await {
                Err(e) => {
                    *self.report.write().await = Err(format!(
                        "systemd: {e:#} (connecting again in {} ms)",
                        backoff.as_millis()
                    ));
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Ok((sd, changes)) => {
                    backoff = MIN_BACKOFF;
                    *self.bus.write().await = Some(sd.clone());
                    self.refresh(&sd, None, Trigger::Connect).await;
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                    self.watch(&sd, changes, every).await;
                    *self.bus.write().await = None;
                    *self.report.write().await =
                        Err("systemd: the connection to the bus was lost; reconnecting".to_owned());
                    tracing::warn!("the D-Bus connection was lost; reconnecting");
                }
            }
        }
    }

    /// One connection to the bus, subscribed to systemd's signals with
    /// match rules for our units only.
    async fn connect(&self, address: Option<&str>) -> Result<(Systemd, Changes)> {
        let sd = tokio::time::timeout(CONNECT_TIMEOUT, Systemd::connect(address))
            .await
            .context("the bus did not answer within 10 s")??;
        sd.subscribe().await?;
        let listed = sd.list_units(&self.units).await?;
        let conn = sd.connection();
        let mut changes = SelectAll::new();
        for unit in &self.units {
            let jobs = zbus::MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .sender(SYSTEMD)
                .path("/org/freedesktop/systemd1")
                .interface("org.freedesktop.systemd1.Manager")
                .member("JobRemoved")
                .arg(2, unit.as_str())
                .build()
                .context("building the JobRemoved match rule")?;
            changes.push(about(unit, jobs, conn).await?);
            // A unit systemd does not list has no object to watch (yet):
            // its JobRemoved and the interval still see it.
            if let Some(l) = listed.get(unit) {
                let props = zbus::MatchRule::builder()
                    .msg_type(zbus::message::Type::Signal)
                    .sender(SYSTEMD)
                    .path(l.path.as_ref())
                    .interface("org.freedesktop.DBus.Properties")
                    .member("PropertiesChanged")
                    .build()
                    .context("building the PropertiesChanged match rule")?;
                changes.push(about(unit, props, conn).await?);
            }
        }
        Ok((sd, changes))
    }

    /// Refresh on signals and at the interval until the connection closes
    /// (every signal stream ends with it).
    async fn watch(&self, sd: &Systemd, mut changes: Changes, every: Duration) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                unit = changes.next() => {
                    let Some(unit) = unit else { return };
                    // Let a burst of changes (a restart sends several) settle.
                    let mut units = BTreeSet::from([unit]);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    while let Some(next) = changes.next().now_or_never() {
                        match next {
                            Some(u) => units.insert(u),
                            None => return,
                        };
                    }
                    self.refresh(sd, Some(&units), Trigger::Signal).await;
                }
                _ = tick.tick() => self.refresh(sd, None, Trigger::Interval).await,
            }
        }
    }

    /// Read `units` (every unit: `None`) after a job this API ran, so the
    /// answer to the POST and the reads after it agree.
    pub async fn refresh_after_job(&self, units: &[String]) {
        let Ok(sd) = self.systemd().await else { return };
        let units: BTreeSet<String> = units.iter().cloned().collect();
        self.refresh(&sd, Some(&units), Trigger::Job).await;
    }

    /// Read the state of `only` (every unit: `None`), probe those that are
    /// active, and put their rows in the report.
    async fn refresh(&self, sd: &Systemd, only: Option<&BTreeSet<String>>, why: Trigger) {
        self.refreshes
            .get_or_create(&vec![("trigger", why.name().to_owned())])
            .inc();
        let (selected, units): (Vec<Selected>, Vec<String>) = self
            .selected
            .iter()
            .zip(&self.units)
            .filter(|(_, u)| only.is_none_or(|o| o.contains(*u)))
            .map(|(s, u)| (s.clone(), u.clone()))
            .unzip();
        let fresh = match sd.unit_states(&units).await {
            Err(e) => Err(format!("systemd: {e:#}")),
            Ok(states) => {
                let manifest = self.manifest.clone();
                let timeout = self.probe_timeout;
                let began = std::time::Instant::now();
                // Probes block (one thread each): off the async workers.
                let r = tokio::task::spawn_blocking(move || {
                    status::build_report(&manifest, &selected, states, true, timeout)
                })
                .await
                .map_err(|e| format!("probing: {e}"));
                if only.is_none()
                    && let Ok(mut s) = self.probe_seconds.lock()
                {
                    *s = began.elapsed().as_secs_f64();
                }
                r
            }
        };
        let mut current = self.report.write().await;
        let Some(next) = next_report(&current, fresh, only.is_some()) else {
            return;
        };
        let next = next.map(Arc::new);
        if let (Ok(old), Ok(new)) = (&*current, &next) {
            self.announce(old, new);
        }
        *current = next;
    }

    /// Send one event per row whose state or health changed.
    fn announce(&self, old: &Report, new: &Report) {
        for row in &new.services {
            let before = old
                .services
                .iter()
                .find(|r| r.service == row.service && r.stack == row.stack);
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

/// The unit name, once per signal matching `rule` on `conn`.
async fn about(
    unit: &str,
    rule: zbus::MatchRule<'_>,
    conn: &zbus::Connection,
) -> Result<BoxStream<'static, String>> {
    let stream = zbus::MessageStream::for_match_rule(rule, conn, Some(QUEUED))
        .await
        .with_context(|| format!("subscribing to systemd's signals about {unit}"))?;
    let unit = unit.to_owned();
    Ok(stream.map(move |_| unit.clone()).boxed())
}

/// `old` with the rows of `part` in place of its own (same service, same
/// stack), and `ok` worked out again.
/// What the cache holds after a read (`None`: what it holds now).
fn next_report(
    current: &Result<Arc<Report>, String>,
    fresh: Result<Report, String>,
    partial: bool,
) -> Option<Result<Report, String>> {
    match (current, fresh) {
        // A partial read that failed leaves the other rows' report; a
        // lost connection, or the next full read, says what is wrong.
        (Ok(_), Err(e)) if partial => {
            tracing::warn!("reading the units of a signal or a job: {e}");
            None
        }
        (_, Err(e)) => Some(Err(e)),
        // A partial read on top of a full report: its rows replace theirs.
        (Ok(old), Ok(part)) if partial => Some(Ok(splice(old, part))),
        // A partial read with no report to put it in waits for a full one.
        (Err(_), Ok(_)) if partial => None,
        (_, Ok(all)) => Some(Ok(all)),
    }
}

fn splice(old: &Report, part: Report) -> Report {
    let mut next = old.clone();
    for row in part.services {
        if let Some(r) = next
            .services
            .iter_mut()
            .find(|r| r.service == row.service && r.stack == row.stack)
        {
            *r = row;
        }
    }
    next.ok = status::all_ok(&next.services);
    next
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::status::{Health, HealthState, Row};
    use crate::systemd::{ActiveState, LoadState, UnitState};

    /// A healthy row of the stack `media` (the API's tests' fixture).
    pub(in crate::api) fn row(name: &str, active: ActiveState) -> Row {
        Row {
            service: name.to_owned(),
            stack: "media".to_owned(),
            state: UnitState {
                unit: format!("media-{name}.service"),
                load_state: LoadState::Loaded,
                active_state: active,
                sub_state: "running".to_owned(),
                result: None,
                n_restarts: None,
                main_pid: None,
                since_usec: None,
                memory_bytes: None,
            },
            health: Health {
                state: HealthState::Healthy,
                reason: None,
            },
            since: None,
            ports: Vec::new(),
            image_update: None,
        }
    }

    fn report(services: Vec<Row>) -> Report {
        Report {
            version: 1,
            ok: status::all_ok(&services),
            services,
            reconcile: vec![],
        }
    }

    /// A refresh of one unit replaces its row only, keeps the order, and
    /// `ok` follows.
    #[test]
    fn a_partial_refresh_replaces_its_rows_only() {
        let old = report(vec![
            row("sonarr", ActiveState::Active),
            row("radarr", ActiveState::Active),
        ]);
        assert!(old.ok);
        let next = splice(&old, report(vec![row("radarr", ActiveState::Failed)]));
        assert_eq!(next.services.len(), 2);
        assert_eq!(next.services[0], old.services[0]);
        assert_eq!(next.services[1].service, "radarr");
        assert_eq!(next.services[1].state.active_state, ActiveState::Failed);
        assert!(!next.ok);
    }

    /// A partial read that fails keeps the report (every read route used
    /// to answer 500 until the next full read); a full one that fails
    /// replaces it.
    #[test]
    fn only_a_full_read_that_fails_replaces_the_report() {
        let old: Result<Arc<Report>, String> =
            Ok(Arc::new(report(vec![row("sonarr", ActiveState::Active)])));
        assert_eq!(
            next_report(&old, Err("systemd: refused".into()), true),
            None
        );
        assert_eq!(
            next_report(&old, Err("systemd: refused".into()), false),
            Some(Err("systemd: refused".to_owned()))
        );
        let part = report(vec![row("sonarr", ActiveState::Failed)]);
        let Some(Ok(spliced)) = next_report(&old, Ok(part.clone()), true) else {
            panic!("a partial read on a report is spliced in");
        };
        assert_eq!(spliced.services, part.services);
        let lost: Result<Arc<Report>, String> = Err("systemd: lost".into());
        assert_eq!(next_report(&lost, Ok(part.clone()), true), None);
        assert_eq!(next_report(&lost, Ok(part.clone()), false), Some(Ok(part)));
    }
}
