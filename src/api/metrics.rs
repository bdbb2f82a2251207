//! `/metrics`: the rows as Prometheus metrics, and the API's own request
//! counters (prometheus-client encodes them).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::status::{HealthState, Report};

use super::cache::Labels;

/// Requests answered, by method, route and status.
#[derive(Default)]
pub struct Requests {
    pub family: Family<Labels, Counter>,
}

impl Requests {
    pub fn count(&self, method: &str, route: &str, status: u16) {
        self.family
            .get_or_create(&vec![
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("code", status.to_string()),
            ])
            .inc();
    }
}

/// The states `nixarr_unit_state` has a series for (one of them is 1).
const STATES: &[&str] = &[
    "active",
    "reloading",
    "inactive",
    "failed",
    "activating",
    "deactivating",
];

/// The text exposition of `report` and the request counters.
pub fn render(
    report: &Report,
    probe_seconds: f64,
    requests: &Requests,
    refreshes: &Family<Labels, Counter>,
) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::default();
    let active = Family::<Labels, Gauge>::default();
    let state = Family::<Labels, Gauge>::default();
    let health = Family::<Labels, Gauge>::default();
    let restarts = Family::<Labels, Counter>::default();
    let memory = Family::<Labels, Gauge>::default();
    let probe = Gauge::<f64, AtomicU64>::default();
    for row in &report.services {
        let id = || {
            vec![
                ("service", row.service.clone()),
                ("stack", row.stack.clone()),
            ]
        };
        let now = row.state.active_state.to_string();
        active.get_or_create(&id()).set(i64::from(now == "active"));
        for s in STATES {
            let mut l = id();
            l.push(("state", (*s).to_owned()));
            state.get_or_create(&l).set(i64::from(now == *s));
        }
        let h = match row.health.state {
            HealthState::Healthy => 1,
            HealthState::Unhealthy => 0,
            HealthState::Starting | HealthState::Unknown => -1,
        };
        health.get_or_create(&id()).set(h);
        restarts
            .get_or_create(&id())
            .inc_by(u64::from(row.state.n_restarts.unwrap_or(0)));
        if let Some(m) = row.state.memory_bytes {
            memory
                .get_or_create(&id())
                .set(i64::try_from(m).unwrap_or(i64::MAX));
        }
    }
    probe.set(probe_seconds);
    reg.register("nixarr_unit_active", "1 when the unit is active", active);
    reg.register(
        "nixarr_unit_state",
        "1 for the unit's ActiveState, 0 for the others",
        state,
    );
    reg.register(
        "nixarr_health_status",
        "1 healthy, 0 unhealthy, -1 starting or unknown",
        health,
    );
    reg.register(
        "nixarr_restarts",
        "Restarts systemd counted (NRestarts)",
        restarts,
    );
    reg.register(
        "nixarr_memory_bytes",
        "Memory the unit uses (MemoryCurrent)",
        memory,
    );
    reg.register(
        "nixarr_probe_duration_seconds",
        "How long the last round of health probes took",
        probe,
    );
    reg.register(
        "nixarr_api_requests",
        "Requests the API answered",
        requests.family.clone(),
    );
    reg.register(
        "nixarr_api_cache_refreshes",
        "Reads of systemd into the cache, by what triggered them (connect, \
         signal about one of our units, job, interval)",
        refreshes.clone(),
    );
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(to_text_format(&out))
}

/// OpenMetrics (what prometheus-client writes) as Prometheus' text format
/// 0.0.4, which every scraper and `promtool check metrics` read: a
/// counter's HELP and TYPE name its `_total` samples, and no `# EOF`.
fn to_text_format(open_metrics: &str) -> String {
    let counters: Vec<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len() + 64);
    for line in open_metrics.lines().filter(|l| *l != "# EOF") {
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|kind| {
            let rest = line.strip_prefix(kind)?;
            let name = counters
                .iter()
                .find(|c| rest.strip_prefix(**c).is_some_and(|r| r.starts_with(' ')))?;
            Some(format!("{kind}{name}_total{}", &rest[name.len()..]))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::ActiveState;

    fn report() -> Report {
        let row = |name: &str, active: ActiveState, memory: Option<u64>| {
            let mut r = crate::api::cache::tests::row(name, active);
            r.state.result = Some("success".to_owned());
            r.state.n_restarts = Some(2);
            r.state.main_pid = Some(42);
            r.state.since_usec = Some(1);
            r.state.memory_bytes = memory;
            r
        };
        Report {
            version: 1,
            ok: false,
            services: vec![
                row("sonarr", ActiveState::Active, Some(1 << 20)),
                row("radarr", ActiveState::Failed, None),
            ],
            reconcile: vec![],
        }
    }

    #[test]
    fn counters_are_named_by_their_samples_and_states_are_one_hot() {
        let requests = Requests::default();
        requests.count("GET", "/containers", 200);
        let refreshes = Family::<Labels, Counter>::default();
        refreshes
            .get_or_create(&vec![("trigger", "signal".to_owned())])
            .inc();
        let text = render(&report(), 0.25, &requests, &refreshes).expect("encode");
        assert!(
            text.contains("# TYPE nixarr_restarts_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP nixarr_api_requests_total "), "{text}");
        assert!(
            text.contains("nixarr_api_cache_refreshes_total{trigger=\"signal\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains(
            "nixarr_unit_state{service=\"radarr\",stack=\"media\",state=\"failed\"} 1\n"
        ));
        assert!(text.contains("nixarr_memory_bytes{service=\"sonarr\",stack=\"media\"} 1048576\n"));
        assert!(
            text.contains("nixarr_probe_duration_seconds 0.25\n"),
            "{text}"
        );
    }

    /// promtool (Debian's prometheus package; tests/run.sh installs it)
    /// accepts the output.
    #[test]
    fn promtool_accepts_the_metrics() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let requests = Requests::default();
        requests.count("POST", "/container/{name}/start", 409);
        let refreshes = Family::<Labels, Counter>::default();
        refreshes
            .get_or_create(&vec![("trigger", "interval".to_owned())])
            .inc_by(3);
        let text = render(&report(), 0.5, &requests, &refreshes).expect("encode");
        let Ok(mut child) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            panic!("promtool is missing: install Debian's prometheus package (tests/run.sh does)");
        };
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("promtool");
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
