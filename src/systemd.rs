//! D-Bus client for systemd (org.freedesktop.systemd1), on zbus with the
//! ready-made proxies of zbus_systemd: unit states in one batch call plus
//! concurrent property reads, and jobs (start/stop/restart) that wait for
//! their own JobRemoved signal.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures_util::StreamExt;
use serde::{Serialize, Serializer};
use zbus::Connection;
use zbus::{OwnedObjectPath, OwnedVariant};
use zbus_systemd::systemd1::ManagerProxy;

const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";

/// Property reads one connection keeps in flight at most, whoever asks
/// (every clone of a [`Systemd`] shares them: the API's refreshes run side
/// by side). The system bus refuses a connection more pending replies than
/// its `max_replies_per_connection` (128 in dbus's system.conf; the rest is
/// left to other calls), and a refused `Properties.Get` reads as an absent
/// property: with every unit read at once, a stack of 26 services or more
/// lost properties silently (the reconcile benchmark: 449 of 500
/// containers without their cgroup).
pub const PENDING_REPLIES: usize = 96;

/// The system bus, or the one at `address` (`--bus-address`, or
/// `DBUS_SYSTEM_BUS_ADDRESS`, which zbus honours by itself).
pub async fn connect(address: Option<&str>) -> Result<Connection> {
    match address {
        Some(a) => zbus::connection::Builder::address(a)
            .build()
            .await
            .with_context(|| format!("cannot connect to the D-Bus bus at {a}")),
        None => Connection::system().await.context(
            "cannot connect to the system D-Bus bus (is dbus running? \
             pass --bus-address to reach another one)",
        ),
    }
}

/// A unit's ActiveState; a value this version does not know is kept as
/// systemd wrote it.
#[derive(Debug, Clone, PartialEq, Eq, strum::EnumString, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum ActiveState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Maintenance,
    Refreshing,
    #[strum(default)]
    Other(String),
}

/// A unit's LoadState; unknown values kept.
#[derive(Debug, Clone, PartialEq, Eq, strum::EnumString, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum LoadState {
    Stub,
    Loaded,
    NotFound,
    BadSetting,
    Error,
    Merged,
    Masked,
    #[strum(default)]
    Other(String),
}

/// How systemd says a job ended (the JobRemoved signal's result); unknown
/// values kept.
#[derive(Debug, Clone, PartialEq, Eq, strum::EnumString, strum::Display)]
#[strum(serialize_all = "kebab-case")]
pub enum JobResult {
    Done,
    Canceled,
    /// systemd's job timeout, or ours: we stopped waiting.
    Timeout,
    Failed,
    Dependency,
    Skipped,
    Invalid,
    #[strum(default)]
    Other(String),
}

/// Parse a D-Bus state string; never fails (unknown values become `Other`).
macro_rules! from_dbus {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn from_dbus(s: &str) -> Self {
                s.parse().unwrap_or_else(|_| Self::Other(s.to_owned()))
            }
        }
    )*};
}
from_dbus!(ActiveState, LoadState, JobResult);

/// Serialize a state as the string systemd uses for it.
fn as_str<S: Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// What systemd says about one unit.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitState {
    pub unit: String,
    #[serde(serialize_with = "as_str")]
    pub load_state: LoadState,
    #[serde(serialize_with = "as_str")]
    pub active_state: ActiveState,
    /// Depends on the unit type (`running`, `exited`, `dead`, …): shown,
    /// never compared, so kept as systemd's string.
    pub sub_state: String,
    /// The service's Result= ("success", "exit-code", "signal", …).
    pub result: Option<String>,
    pub n_restarts: Option<u32>,
    pub main_pid: Option<u32>,
    /// When the unit last changed state, µs since the epoch.
    pub since_usec: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// A unit as ListUnitsByNames lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedUnit {
    pub load_state: LoadState,
    pub active_state: ActiveState,
    pub sub_state: String,
    pub path: OwnedObjectPath,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobOutcome {
    pub unit: String,
    /// systemd's job result ("timeout" too when we gave up waiting).
    #[serde(serialize_with = "as_str")]
    pub result: JobResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Start,
    Stop,
    Restart,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Start => "start",
            Verb::Stop => "stop",
            Verb::Restart => "restart",
        }
    }
}

/// A connection to systemd; a clone shares the connection.
#[derive(Clone)]
pub struct Systemd {
    conn: Connection,
    manager: ManagerProxy<'static>,
    /// [`PENDING_REPLIES`] permits, one per property read in flight.
    reads: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Turn a D-Bus permission error into advice.
///
/// zbus reports errors of the org.freedesktop.DBus.Error namespace (where
/// AccessDenied and InteractiveAuthorizationRequired live) as `Error::FDO`,
/// other names as `Error::MethodError`: both are looked at.
fn explain(e: zbus::Error, what: &str) -> anyhow::Error {
    use zbus::fdo::Error as Fdo;
    let denied = match &e {
        zbus::Error::FDO(f) => match f.as_ref() {
            Fdo::AccessDenied(_) => Some("AccessDenied"),
            Fdo::InteractiveAuthorizationRequired(_) => Some("InteractiveAuthorizationRequired"),
            _ => None,
        },
        zbus::Error::MethodError(name, _, _) => {
            let n = name.as_str();
            (n.ends_with(".AccessDenied") || n.ends_with(".InteractiveAuthorizationRequired"))
                .then(|| n.rsplit('.').next().unwrap_or(n))
        }
        _ => None,
    };
    if let Some(why) = denied {
        return anyhow!(
            "{what}: not permitted ({why}: systemd refused this user); run as root (sudo), or \
             grant your user polkit's org.freedesktop.systemd1.manage-units for these units"
        );
    }
    anyhow::Error::new(e).context(what.to_owned())
}

impl Systemd {
    /// Connect to the bus at `address` (see [`connect`]) and reach systemd.
    pub async fn connect(address: Option<&str>) -> Result<Self> {
        Self::new(connect(address).await?).await
    }

    pub async fn new(conn: Connection) -> Result<Self> {
        let manager = ManagerProxy::new(&conn)
            .await
            .context("cannot reach systemd's manager object over D-Bus")?;
        Ok(Systemd {
            conn,
            manager,
            reads: std::sync::Arc::new(tokio::sync::Semaphore::new(PENDING_REPLIES)),
        })
    }

    /// The bus connection (for match rules of the caller's own).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Ask systemd to send its unit signals (JobRemoved, PropertiesChanged):
    /// it emits them only while at least one client is subscribed, and
    /// keeps this subscription until our connection closes.
    pub async fn subscribe(&self) -> Result<()> {
        self.manager
            .subscribe()
            .await
            .map_err(|e| explain(e, "subscribing to systemd's signals"))
    }

    /// One unit's state (`NotFound` when systemd does not know it).
    pub async fn unit_state(&self, unit: &str) -> Result<UnitState> {
        self.unit_states(&[unit.to_owned()])
            .await?
            .pop()
            .with_context(|| format!("systemd said nothing of {unit}"))
    }

    /// One ListUnitsByNames call for all units, then the service properties
    /// of every loaded unit, read concurrently ([`Self::get`] keeps within
    /// [`PENDING_REPLIES`]), in the units' order.
    pub async fn unit_states(&self, units: &[String]) -> Result<Vec<UnitState>> {
        let by_name = &self.list_units(units).await?;
        let reads = units.iter().map(|name| async move {
            let Some(listed) = by_name.get(name) else {
                return UnitState {
                    unit: name.clone(),
                    load_state: LoadState::NotFound,
                    active_state: ActiveState::Inactive,
                    sub_state: "dead".to_owned(),
                    result: None,
                    n_restarts: None,
                    main_pid: None,
                    since_usec: None,
                    memory_bytes: None,
                };
            };
            let path = &listed.path;
            let (result, n_restarts, main_pid, since, memory) =
                if listed.load_state == LoadState::Loaded {
                    futures_util::future::join5(
                        self.get::<String>(path, SERVICE_IFACE, "Result"),
                        self.get::<u32>(path, SERVICE_IFACE, "NRestarts"),
                        self.get::<u32>(path, SERVICE_IFACE, "MainPID"),
                        self.get::<u64>(path, UNIT_IFACE, "StateChangeTimestamp"),
                        self.get::<u64>(path, SERVICE_IFACE, "MemoryCurrent"),
                    )
                    .await
                } else {
                    (None, None, None, None, None)
                };
            UnitState {
                unit: name.clone(),
                load_state: listed.load_state.clone(),
                active_state: listed.active_state.clone(),
                sub_state: listed.sub_state.clone(),
                result,
                n_restarts,
                main_pid: main_pid.filter(|p| *p != 0),
                since_usec: since.filter(|t| *t != 0),
                // systemd reports u64::MAX when memory accounting is off.
                memory_bytes: memory.filter(|m| *m != u64::MAX),
            }
        });
        Ok(futures_util::future::join_all(reads).await)
    }

    /// One ListUnitsByNames call and nothing else: each unit's load,
    /// active and sub state and its object path (for [`Self::get`]). A unit
    /// systemd does not list is absent from the map.
    pub async fn list_units(&self, units: &[String]) -> Result<BTreeMap<String, ListedUnit>> {
        if units.is_empty() {
            return Ok(BTreeMap::new());
        }
        let listed = self
            .manager
            .list_units_by_names(units.to_vec())
            .await
            .map_err(|e| explain(e, "listing units"))?;
        Ok(listed
            .into_iter()
            .map(|(name, _, load, active, sub, _, path, ..)| {
                (
                    name,
                    ListedUnit {
                        load_state: LoadState::from_dbus(&load),
                        active_state: ActiveState::from_dbus(&active),
                        sub_state: sub,
                        path,
                    },
                )
            })
            .collect())
    }

    /// A service's property (`SERVICE_IFACE`), `None` when it is absent.
    pub async fn service_property<T>(&self, unit: &ListedUnit, prop: &str) -> Option<T>
    where
        T: TryFrom<OwnedVariant>,
    {
        self.get(&unit.path, SERVICE_IFACE, prop).await
    }

    /// One property through org.freedesktop.DBus.Properties.Get; `None`
    /// when it is absent (e.g. a target has no Service interface).
    async fn get<T>(&self, path: &OwnedObjectPath, iface: &str, prop: &str) -> Option<T>
    where
        T: TryFrom<OwnedVariant>,
    {
        // Within the bus's pending replies (see PENDING_REPLIES); the
        // semaphore is never closed.
        let _permit = self.reads.acquire().await.ok()?;
        // A plain method call: no proxy object to build per read.
        let reply = self
            .conn
            .call_method(
                Some("org.freedesktop.systemd1"),
                path,
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(iface, prop),
            )
            .await
            .ok()?;
        let value: OwnedVariant = reply.body().deserialize().ok()?;
        T::try_from(value).ok()
    }

    /// Mask (or unmask) a unit until the next boot (`/run/systemd/system`)
    /// and make systemd see it, as `systemctl mask --runtime` does.
    pub async fn mask_runtime(&self, unit: &str, mask: bool) -> Result<()> {
        let what = format!("{} {unit}", if mask { "mask" } else { "unmask" });
        if mask {
            self.manager
                .mask_unit_files(vec![unit.to_owned()], true, true)
                .await
                .map_err(|e| explain(e, &what))?;
        } else {
            self.manager
                .unmask_unit_files(vec![unit.to_owned()], true)
                .await
                .map_err(|e| explain(e, &what))?;
        }
        self.manager
            .reload()
            .await
            .map_err(|e| explain(e, "daemon-reload"))?;
        Ok(())
    }

    /// `systemctl reset-failed UNIT`: forget the unit's failed state and
    /// its start rate counter (`StartLimitBurst=`). Best effort: a unit
    /// that is not loaded has nothing to forget.
    pub async fn reset_failed(&self, unit: &str) {
        if let Err(e) = self.manager.reset_failed_unit(unit.to_owned()).await {
            tracing::debug!("reset-failed {unit}: {e}");
        }
    }

    /// `systemctl daemon-reload`: returns once systemd has reloaded (and
    /// rerun its generators).
    pub async fn daemon_reload(&self) -> Result<()> {
        self.manager
            .reload()
            .await
            .map_err(|e| explain(e, "daemon-reload"))
    }

    /// Queue a restart and return without waiting for it (the watchdog must
    /// not block on a slow start).
    pub async fn queue_restart(&self, unit: &str) -> Result<()> {
        self.manager
            .restart_unit(unit.to_owned(), "replace".into())
            .await
            .map_err(|e| explain(e, &format!("restart {unit}")))?;
        Ok(())
    }

    /// Queue `verb` for every unit ("replace" mode) and wait until each job
    /// is removed, subscribing before the calls so no signal is missed.
    pub async fn run_jobs(
        &self,
        verb: Verb,
        units: &[String],
        timeout: Duration,
    ) -> Result<Vec<JobOutcome>> {
        let mut removed = self
            .manager
            .receive_job_removed()
            .await
            .context("subscribing to systemd's JobRemoved signal")?;
        // Signals are only sent to subscribed clients on some versions.
        let _ = self.manager.subscribe().await;
        let mut pending: BTreeMap<String, String> = BTreeMap::new();
        for unit in units {
            let what = format!("{} {unit}", verb.name());
            let job = match verb {
                Verb::Start => {
                    self.manager
                        .start_unit(unit.clone(), "replace".into())
                        .await
                }
                Verb::Stop => self.manager.stop_unit(unit.clone(), "replace".into()).await,
                Verb::Restart => {
                    self.manager
                        .restart_unit(unit.clone(), "replace".into())
                        .await
                }
            }
            .map_err(|e| explain(e, &what))?;
            pending.insert(job.to_string(), unit.clone());
        }
        let mut outcomes = Vec::new();
        let deadline = futures_util::future::select(
            Box::pin(async {
                while let Some(signal) = removed.next().await {
                    let Ok(args) = signal.args() else { continue };
                    if let Some(unit) = pending.remove(args.job.as_str()) {
                        outcomes.push(JobOutcome {
                            unit,
                            result: JobResult::from_dbus(args.result.as_str()),
                        });
                        if pending.is_empty() {
                            break;
                        }
                    }
                }
            }),
            Box::pin(sleep(timeout)),
        );
        deadline.await;
        // Jobs we stopped waiting for.
        outcomes.extend(pending.into_values().map(|unit| JobOutcome {
            unit,
            result: JobResult::Timeout,
        }));
        outcomes.sort_by(|a, b| a.unit.cmp(&b.unit));
        Ok(outcomes)
    }
}

/// A timer future that needs no particular async runtime: a thread wakes it.
pub async fn sleep(d: Duration) {
    let (pending, handle) = futures_util::future::abortable(futures_util::future::pending::<()>());
    std::thread::spawn(move || {
        std::thread::sleep(d);
        handle.abort();
    });
    let _ = pending.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_from_dbus_and_keep_unknown_values() {
        assert_eq!(ActiveState::from_dbus("active"), ActiveState::Active);
        assert_eq!(
            ActiveState::from_dbus("deactivating"),
            ActiveState::Deactivating
        );
        assert_eq!(
            ActiveState::from_dbus("frobbing"),
            ActiveState::Other("frobbing".into())
        );
        assert_eq!(LoadState::from_dbus("not-found"), LoadState::NotFound);
        assert_eq!(LoadState::from_dbus("bad-setting"), LoadState::BadSetting);
        assert_eq!(JobResult::from_dbus("done"), JobResult::Done);
        assert_eq!(JobResult::from_dbus("dependency"), JobResult::Dependency);
        assert_eq!(
            JobResult::from_dbus("frozen"),
            JobResult::Other("frozen".into())
        );
        for s in [
            "active",
            "inactive",
            "failed",
            "activating",
            "refreshing",
            "x-y",
        ] {
            assert_eq!(ActiveState::from_dbus(s).to_string(), s);
        }
        for s in ["loaded", "not-found", "bad-setting", "masked", "weird"] {
            assert_eq!(LoadState::from_dbus(s).to_string(), s);
        }
        for s in ["done", "canceled", "timeout", "skipped", "once"] {
            assert_eq!(JobResult::from_dbus(s).to_string(), s);
        }
    }

    #[test]
    fn states_serialize_as_systemd_writes_them() {
        let o = JobOutcome {
            unit: "a.service".into(),
            result: JobResult::Other("collected".into()),
        };
        let json = serde_json::to_string(&o).expect("json");
        assert_eq!(json, r#"{"unit":"a.service","result":"collected"}"#);
        let s = UnitState {
            unit: "a.service".into(),
            load_state: LoadState::NotFound,
            active_state: ActiveState::Inactive,
            sub_state: "dead".into(),
            result: None,
            n_restarts: None,
            main_pid: None,
            since_usec: None,
            memory_bytes: None,
        };
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["loadState"], "not-found");
        assert_eq!(json["activeState"], "inactive");
    }
}
