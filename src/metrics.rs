//! Prometheus metrics. Every label comes from config names or fixed enums, never from a
//! request, so cardinality is bounded by the config.
//!
//! Each gateway owns its recorder (not the process-global one), so several gateways in one
//! process (tests, the demo) keep separate counts; `/metrics` renders it in text format.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use metrics::{counter, gauge, histogram, with_local_recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::time::Instant;

use crate::health::{HealthRegistry, Scope};

const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    in_flight: AtomicI64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Decrements the in-flight gauge when the request (or its stream) is done.
pub struct InFlight(std::sync::Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let n = self.0.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0
            .with(|| gauge!("switchyard_in_flight_requests").set(n as f64));
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        let m = Metrics {
            recorder,
            handle,
            in_flight: AtomicI64::new(0),
        };
        m.with(|| {
            metrics::describe_counter!(
                "switchyard_requests_total",
                "Client requests by route, serving backend and outcome"
            );
            metrics::describe_counter!(
                "switchyard_attempts_total",
                "Upstream attempts by backend and result (ok or the failure reason)"
            );
            metrics::describe_counter!(
                "switchyard_failovers_total",
                "Moves from one chain entry to another, by route, from and to backend"
            );
            metrics::describe_gauge!(
                "switchyard_backend_state",
                "Health per scope: 0 healthy, 1 half-open, 2 cooling down"
            );
            metrics::describe_histogram!(
                "switchyard_ttft_seconds",
                "Time from sending an upstream stream request to its first content event"
            );
            metrics::describe_histogram!(
                "switchyard_upstream_duration_seconds",
                "Duration of upstream attempts"
            );
            metrics::describe_gauge!(
                "switchyard_in_flight_requests",
                "Client requests being served"
            );
            metrics::describe_counter!(
                "switchyard_alerts_total",
                "Alerts by sink and result (sent, suppressed, dropped, failed)"
            );
            gauge!("switchyard_in_flight_requests").set(0.0);
        });
        m
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        with_local_recorder(&self.recorder, f)
    }

    pub fn in_flight(self: &std::sync::Arc<Self>) -> InFlight {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.with(|| gauge!("switchyard_in_flight_requests").set(n as f64));
        InFlight(self.clone())
    }

    /// `outcome`: served, returned (client error passed back), exhausted, rejected.
    pub fn request(&self, route: &str, backend: &str, outcome: &'static str) {
        self.with(|| {
            counter!("switchyard_requests_total", "route" => route.to_string(), "backend" => backend.to_string(), "outcome" => outcome)
                .increment(1)
        });
    }

    /// `result`: "ok" or a `FailureReason` name.
    pub fn attempt(&self, backend: &str, result: &'static str) {
        self.with(|| {
            counter!("switchyard_attempts_total", "backend" => backend.to_string(), "result" => result).increment(1)
        });
    }

    /// How long an upstream attempt took (a stream: until its last byte).
    pub fn upstream_duration(&self, backend: &str, duration: Duration) {
        self.with(|| {
            histogram!("switchyard_upstream_duration_seconds", "backend" => backend.to_string())
                .record(duration.as_secs_f64())
        });
    }

    pub fn ttft(&self, backend: &str, ttft: Duration) {
        self.with(|| {
            histogram!("switchyard_ttft_seconds", "backend" => backend.to_string())
                .record(ttft.as_secs_f64())
        });
    }

    pub fn failover(&self, route: &str, from: &str, to: &str) {
        self.with(|| {
            counter!("switchyard_failovers_total", "route" => route.to_string(), "from" => from.to_string(), "to" => to.to_string())
                .increment(1)
        });
    }

    /// `result`: sent, suppressed, dropped, failed.
    pub fn alert(&self, sink: &str, result: &'static str) {
        self.with(|| {
            counter!("switchyard_alerts_total", "sink" => sink.to_string(), "result" => result)
                .increment(1)
        });
    }

    /// The text exposition, with the backend-state gauges refreshed from the registry.
    pub fn render(&self, health: &HealthRegistry) -> String {
        let now = Instant::now();
        self.with(|| {
            for s in health.snapshot(now) {
                let scope = match &s.scope {
                    Scope::Backend => "backend".to_string(),
                    Scope::Model { model } => format!("model:{model}"),
                    Scope::Credential { credential } => format!("credential:{credential}"),
                };
                let value = match s.state {
                    "healthy" => 0.0,
                    "half_open" => 1.0,
                    _ => 2.0,
                };
                for b in &s.backends {
                    gauge!("switchyard_backend_state", "backend" => b.clone(), "scope" => scope.clone()).set(value);
                }
            }
        });
        self.handle.render()
    }
}
