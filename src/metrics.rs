//! Prometheus metrics (SPEC §9), encoded by prometheus-client: the series names and labels
//! are a contract.

use crate::probe::Observation;
use crate::store::IncidentRow;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    target: String,
    probe: String,
    category: String,
    error_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    target: String,
    probe: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncidentLabels {
    target: String,
    category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    target: String,
    /// The model asked for (the probe kind for `models` probes).
    model: String,
    /// `requests` or `tokens`.
    kind: String,
}

/// The outcome of one delivery attempt, the `result` label of `openai_watch_alerts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertResult {
    Sent,
    /// Failed for now; it is tried again.
    Retry,
    /// Given up on.
    Failed,
}

impl AlertResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertResult::Sent => "sent",
            AlertResult::Retry => "retry",
            AlertResult::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    channel: String,
    result: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    probes: Family<ProbeLabels, Counter>,
    duration: Family<DurationLabels, Histogram>,
    up: Family<TargetLabels, Gauge>,
    incident_open: Family<IncidentLabels, Gauge>,
    ratelimit_remaining: Family<RateLimitLabels, Gauge>,
    ratelimit_limit: Family<RateLimitLabels, Gauge>,
    alerts: Family<AlertLabels, Counter>,
    upstream_indicator: Gauge,
    probes_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let probes = Family::<ProbeLabels, Counter>::default();
        let duration = Family::<DurationLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let up = Family::<TargetLabels, Gauge>::default();
        let incident_open = Family::<IncidentLabels, Gauge>::default();
        let ratelimit_remaining = Family::<RateLimitLabels, Gauge>::default();
        let ratelimit_limit = Family::<RateLimitLabels, Gauge>::default();
        let alerts = Family::<AlertLabels, Counter>::default();
        let upstream_indicator = Gauge::default();
        let probes_dropped = Counter::default();
        registry.register(
            "openai_watch_probes_dropped",
            "Probes made but never stored: the database could not be written for so long that the oldest unwritten ones were dropped",
            probes_dropped.clone(),
        );
        registry.register(
            "openai_watch_upstream_indicator",
            "OpenAI's status page: 0 none, 1 minor, 2 major, 3 critical, -1 unavailable",
            upstream_indicator.clone(),
        );
        registry.register(
            "openai_watch_probes",
            "Probes by target, probe kind, category and catalog id",
            probes.clone(),
        );
        registry.register(
            "openai_watch_probe_duration_seconds",
            "Probe latency",
            duration.clone(),
        );
        registry.register(
            "openai_watch_target_up",
            "1 when the target's latest probe was healthy",
            up.clone(),
        );
        registry.register(
            "openai_watch_incident_open",
            "1 while an incident of this category is open",
            incident_open.clone(),
        );
        registry.register(
            "openai_watch_ratelimit_remaining",
            "x-ratelimit-remaining-{requests,tokens} of the latest answer, by model",
            ratelimit_remaining.clone(),
        );
        registry.register(
            "openai_watch_ratelimit_limit",
            "x-ratelimit-limit-{requests,tokens} of the latest answer, by model",
            ratelimit_limit.clone(),
        );
        registry.register(
            "openai_watch_alerts",
            "Alert deliveries by channel and result (sent, retry, failed)",
            alerts.clone(),
        );
        Metrics {
            registry,
            probes,
            duration,
            up,
            incident_open,
            ratelimit_remaining,
            ratelimit_limit,
            alerts,
            upstream_indicator,
            probes_dropped,
        }
    }

    /// Counts probes dropped unwritten.
    pub fn probes_dropped(&self, n: usize) {
        self.probes_dropped.inc_by(n as u64);
    }

    /// Counts a probe.
    pub fn observe(&self, o: &Observation) {
        let target = o.target.to_string();
        self.probes
            .get_or_create(&ProbeLabels {
                target: target.clone(),
                probe: o.kind.as_str().into(),
                category: o.entry.category.as_str().into(),
                error_id: o.entry.id.into(),
            })
            .inc();
        self.duration
            .get_or_create(&DurationLabels {
                target: target.clone(),
                probe: o.kind.as_str().into(),
            })
            .observe(o.latency_ms as f64 / 1000.0);
        self.up
            .get_or_create(&TargetLabels {
                target: target.clone(),
            })
            .set(i64::from(o.entry.is_ok()));
        let model = crate::leading::model_of(o);
        let rl = &o.rate_limits;
        for (kind, remaining, limit) in [
            ("requests", rl.remaining_requests, rl.limit_requests),
            ("tokens", rl.remaining_tokens, rl.limit_tokens),
        ] {
            let labels = RateLimitLabels {
                target: target.clone(),
                model: model.clone(),
                kind: kind.into(),
            };
            if let Some(v) = remaining {
                self.ratelimit_remaining.get_or_create(&labels).set(v);
            }
            if let Some(v) = limit {
                self.ratelimit_limit.get_or_create(&labels).set(v);
            }
        }
    }

    /// Sets the status page's indicator.
    pub fn set_upstream_indicator(&self, level: i64) {
        self.upstream_indicator.set(level);
    }

    /// Counts an alert delivery outcome: `sent`, `retry` or `failed`.
    pub fn alert(&self, channel: &str, result: AlertResult) {
        self.alerts
            .get_or_create(&AlertLabels {
                channel: channel.into(),
                result: result.as_str().into(),
            })
            .inc();
    }

    /// Sets the open-incident gauges to exactly the open incidents given.
    pub fn set_open_incidents(&self, open: &[IncidentRow]) {
        self.incident_open.clear();
        for i in open {
            self.incident_open
                .get_or_create(&IncidentLabels {
                    target: i.target.clone(),
                    category: i.category.as_str().into(),
                })
                .set(1);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
