//! The webhook's own metrics (names fixed by docs/metrics.md), kept in a
//! `prometheus` crate Registry of their own and rendered with its TextEncoder.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Every family the webhook exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `result`: `success` or `error`.
    pub duration: HistogramVec,
    pub downtime: HistogramVec,
    pub started: IntCounter,
    pub succeeded: IntCounter,
    pub failed: IntCounter,
    pub in_flight: IntGauge,
    pub unplaced: IntCounter,
    pub requests: IntCounterVec,
    pub ignored: IntCounterVec,
    pub alert_to_start: Histogram,
    /// Attempts repeated after a failed migration left the domain running on its source.
    pub retries: IntCounter,
    /// Domains found paused on their source after a failed migration, and resumed.
    pub resumed: IntCounter,
    /// Failed migrations that left the domain `crashed`, `shutdown`, `gone` or `paused` (not resumable).
    pub domain_faults: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let dur = HistogramVec::new(
            HistogramOpts::new(
                "xentinel_migration_duration_seconds",
                "Duration of migrations run by the webhook, by result.",
            )
            .buckets(vec![
                0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ]),
            &["result"],
        )
        .expect("valid");
        let down = HistogramVec::new(
            HistogramOpts::new(
                "xentinel_migration_downtime_seconds",
                "Downtime of migrations run by the webhook, by result (when the executor knows it).",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["result"],
        )
        .expect("valid");
        let counter = |n: &str, h: &str| IntCounter::new(n, h).expect("valid");
        let m = Metrics {
            duration: dur,
            downtime: down,
            started: counter(
                "xentinel_evacuations_started_total",
                "Evacuation jobs started (one per alert occurrence or CLI run).",
            ),
            succeeded: counter(
                "xentinel_evacuations_succeeded_total",
                "Evacuation jobs whose every step succeeded.",
            ),
            failed: counter(
                "xentinel_evacuations_failed_total",
                "Evacuation jobs with a failed or unplaced step.",
            ),
            in_flight: IntGauge::new("xentinel_migrations_in_flight", "Migrations running now.")
                .expect("valid"),
            unplaced: counter(
                "xentinel_migrations_unplaced_total",
                "Domains for which no target host had room.",
            ),
            requests: IntCounterVec::new(
                Opts::new(
                    "xentinel_webhook_requests_total",
                    "Webhook requests on /alerts, by HTTP status code.",
                ),
                &["code"],
            )
            .expect("valid"),
            ignored: IntCounterVec::new(
                Opts::new(
                    "xentinel_alerts_ignored_total",
                    "Alerts received and not acted on, by reason.",
                ),
                &["reason"],
            )
            .expect("valid"),
            alert_to_start: Histogram::with_opts(
                HistogramOpts::new(
                    "xentinel_alert_to_migration_start_seconds",
                    "From an alert's startsAt to its job's first migration start.",
                )
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
            )
            .expect("valid"),
            retries: counter(
                "xentinel_migration_retries_total",
                "Migration attempts repeated because a failed one left the domain running on its source.",
            ),
            resumed: counter(
                "xentinel_migration_domains_resumed_total",
                "Domains a failed migration left paused on their source, resumed by the webhook.",
            ),
            domain_faults: IntCounterVec::new(
                Opts::new(
                    "xentinel_migration_domain_faults_total",
                    "Failed migrations after which the domain was crashed, shut down, gone from its source, or paused and not resumable, by state.",
                ),
                &["state"],
            )
            .expect("valid"),
            registry,
        };
        let r = &m.registry;
        let reg: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.duration.clone()),
            Box::new(m.downtime.clone()),
            Box::new(m.started.clone()),
            Box::new(m.succeeded.clone()),
            Box::new(m.failed.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.unplaced.clone()),
            Box::new(m.requests.clone()),
            Box::new(m.ignored.clone()),
            Box::new(m.alert_to_start.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.resumed.clone()),
            Box::new(m.domain_faults.clone()),
        ];
        for c in reg {
            r.register(c).expect("unique names");
        }
        // Every label value exists from the start at 0, so `increase()` in the
        // alert rules sees the first failure or ignored alert too.
        for result in ["success", "error"] {
            m.duration.with_label_values(&[result]);
            m.downtime.with_label_values(&[result]);
        }
        for reason in ["not_evacuate", "duplicate", "resolved_without_job"] {
            m.ignored.with_label_values(&[reason]);
        }
        for state in ["crashed", "shutdown", "gone", "paused"] {
            m.domain_faults.with_label_values(&[state]);
        }
        m
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Records a finished migration.
    pub fn observe_migration(&self, ok: bool, duration: Option<f64>, downtime: Option<f64>) {
        let result = if ok { "success" } else { "error" };
        if let Some(d) = duration {
            self.duration.with_label_values(&[result]).observe(d);
        }
        if let Some(d) = downtime {
            self.downtime.with_label_values(&[result]).observe(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_contract_names() {
        let m = Metrics::new();
        m.requests.with_label_values(&["200"]).inc();
        m.ignored.with_label_values(&["not_evacuate"]).inc();
        m.observe_migration(true, Some(1.0), Some(0.05));
        let t = m.render();
        for name in [
            "xentinel_migration_duration_seconds_bucket{result=\"success\"",
            "xentinel_migration_downtime_seconds_count{result=\"success\"} 1",
            "xentinel_evacuations_started_total 0",
            "xentinel_evacuations_succeeded_total 0",
            "xentinel_evacuations_failed_total 0",
            "xentinel_migrations_in_flight 0",
            "xentinel_migrations_unplaced_total 0",
            "xentinel_webhook_requests_total{code=\"200\"} 1",
            "xentinel_alerts_ignored_total{reason=\"not_evacuate\"} 1",
            "xentinel_alert_to_migration_start_seconds_count 0",
            "xentinel_migration_retries_total 0",
            "xentinel_migration_domains_resumed_total 0",
            "xentinel_migration_domain_faults_total{state=\"crashed\"} 0",
            "xentinel_migration_domain_faults_total{state=\"paused\"} 0",
        ] {
            assert!(t.contains(name), "{name} missing from\n{t}");
        }
    }
}
