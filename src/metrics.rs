//! Prometheus metrics. Every label comes from config names or fixed enums, never from a
//! request, so cardinality is bounded by the config.
//!
//! Each gateway owns its recorder (not the process-global one), so several gateways in one
//! process (tests, the demo) keep separate counts; `/metrics` renders it in text format.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram, with_local_recorder, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio::time::Instant;

use crate::config::Config;
use crate::failure::FailureReason;
use crate::health::{HealthRegistry, Scope};

const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

pub struct Metrics {
    /// Shared by the generations of a reloaded gateway: counts carry over a reload.
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    in_flight: Arc<AtomicI64>,
    in_flight_gauge: OnceLock<Gauge>,
    /// Handles for the per-request series, looked up by name in maps fixed at startup and
    /// registered on first use: the hot path neither allocates label strings nor hashes a
    /// label set into the recorder's registry (that was ~4.5 % of a request's instructions).
    backends: HashMap<Arc<str>, BackendHandles>,
    routes: HashMap<Arc<str>, RouteHandles>,
}

const OUTCOMES: [&str; 4] = ["served", "returned", "exhausted", "rejected"];
/// "ok", then every failure reason in `FailureReason::ALL` order.
const RESULTS: usize = 1 + FailureReason::ALL.len();

#[derive(Default)]
struct BackendHandles {
    attempts: [OnceLock<Counter>; RESULTS],
    upstream_duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
}

struct RouteHandles {
    /// One row per backend of the chain, then "-" (no backend served).
    requests: Vec<(Arc<str>, [OnceLock<Counter>; OUTCOMES.len()])>,
    /// Per backend of the chain (same order): token counters by [`TOKEN_TYPES`].
    tokens: Vec<[OnceLock<Counter>; TOKEN_TYPES.len()]>,
}

/// The `type` label of `switchyard_tokens_total`.
const TOKEN_TYPES: [&str; 4] = ["input", "cached_input", "output", "reasoning"];

/// Uses the cached handle (registering it on first use), or, for a name outside the config,
/// a handle made for this one call.
fn use_handle<T>(cell: Option<&OnceLock<T>>, make: impl FnOnce() -> T, f: impl FnOnce(&T)) {
    match cell {
        Some(cell) => f(cell.get_or_init(make)),
        None => f(&make()),
    }
}

fn result_index(result: Option<FailureReason>) -> usize {
    match result {
        None => 0,
        Some(r) => 1 + FailureReason::ALL.iter().position(|&x| x == r).unwrap_or(0),
    }
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
        self.0.in_flight_gauge().set(n as f64);
    }
}

impl Metrics {
    /// Metrics with handle caches for the config's routes and backends.
    pub fn for_config(config: &Config) -> Metrics {
        Metrics::for_config_with(config, Metrics::new())
    }

    /// Metrics for a reloaded config that keep counting where `previous` left off (the same
    /// recorder and in-flight count; handle caches for the new config's names).
    pub fn reloaded(config: &Config, previous: &Metrics) -> Metrics {
        let m = Metrics {
            recorder: previous.recorder.clone(),
            handle: previous.handle.clone(),
            in_flight: previous.in_flight.clone(),
            in_flight_gauge: OnceLock::new(),
            backends: HashMap::new(),
            routes: HashMap::new(),
        };
        Metrics::for_config_with(config, m)
    }

    fn for_config_with(config: &Config, mut m: Metrics) -> Metrics {
        m.backends = config
            .backends
            .iter()
            .map(|b| (b.name.clone(), BackendHandles::default()))
            .collect();
        m.routes = config
            .routes
            .values()
            .map(|r| {
                let mut names: Vec<Arc<str>> = Vec::new();
                for e in &r.chain {
                    let name = &config.backend(e.backend).name;
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
                names.push("-".into());
                let tokens = names.iter().map(|_| Default::default()).collect();
                let requests = names.into_iter().map(|n| (n, Default::default())).collect();
                (r.name.clone(), RouteHandles { requests, tokens })
            })
            .collect();
        m
    }

    pub fn new() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("static buckets are valid")
            .build_recorder();
        let handle = recorder.handle();
        let m = Metrics {
            recorder: Arc::new(recorder),
            handle,
            in_flight: Arc::new(AtomicI64::new(0)),
            in_flight_gauge: OnceLock::new(),
            backends: HashMap::new(),
            routes: HashMap::new(),
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
            metrics::describe_counter!(
                "switchyard_tokens_total",
                "Tokens the backends reported, by route, backend and type (input counts cached input; reasoning counts within output)"
            );
            metrics::describe_counter!(
                "switchyard_redis_commands_total",
                "Commands sent to the shared health store (Redis), by command"
            );
            metrics::describe_counter!(
                "switchyard_trace_spans_dropped_total",
                "Trace spans not exported: the queue was full, or the collector refused a batch"
            );
            gauge!("switchyard_in_flight_requests").set(0.0);
        });
        m
    }

    fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        with_local_recorder(&self.recorder, f)
    }

    fn in_flight_gauge(&self) -> &Gauge {
        self.in_flight_gauge
            .get_or_init(|| self.with(|| gauge!("switchyard_in_flight_requests")))
    }

    pub fn in_flight(self: &Arc<Self>) -> InFlight {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.in_flight_gauge().set(n as f64);
        InFlight(self.clone())
    }

    /// `outcome`: served, returned (client error passed back), exhausted, rejected.
    pub fn request(&self, route: &str, backend: &str, outcome: &'static str) {
        let cached = OUTCOMES.iter().position(|&o| o == outcome).and_then(|i| {
            let row = self
                .routes
                .get(route)?
                .requests
                .iter()
                .find(|(b, _)| &**b == backend)?;
            Some(&row.1[i])
        });
        let make = || {
            self.with(|| {
                counter!("switchyard_requests_total", "route" => route.to_string(), "backend" => backend.to_string(), "outcome" => outcome)
            })
        };
        use_handle(cached, make, |c| c.increment(1));
    }

    /// The tokens one served request cost (as its backend reported them).
    pub fn tokens(&self, route: &str, backend: &str, usage: &crate::usage::Usage) {
        let row = self.routes.get(route).and_then(|r| {
            let i = r.requests.iter().position(|(b, _)| &**b == backend)?;
            r.tokens.get(i)
        });
        let counts = [
            usage.input,
            usage.cached_input,
            usage.output,
            usage.reasoning,
        ];
        for (i, (kind, n)) in TOKEN_TYPES.iter().zip(counts).enumerate() {
            if n == 0 {
                continue;
            }
            let make = || {
                self.with(|| {
                    counter!("switchyard_tokens_total", "route" => route.to_string(), "backend" => backend.to_string(), "type" => *kind)
                })
            };
            use_handle(row.map(|r| &r[i]), make, |c| c.increment(n));
        }
    }

    /// `result`: `None` for "ok", else the failure reason.
    pub fn attempt(&self, backend: &str, result: Option<FailureReason>) {
        let make = || {
            let result = result.map_or("ok", FailureReason::as_str);
            self.with(|| {
                counter!("switchyard_attempts_total", "backend" => backend.to_string(), "result" => result)
            })
        };
        let cell = self
            .backends
            .get(backend)
            .map(|h| &h.attempts[result_index(result)]);
        use_handle(cell, make, |c| c.increment(1));
    }

    /// How long an upstream attempt took (a stream: until its last byte).
    pub fn upstream_duration(&self, backend: &str, duration: Duration) {
        let make = || {
            self.with(|| {
                histogram!("switchyard_upstream_duration_seconds", "backend" => backend.to_string())
            })
        };
        let cell = self.backends.get(backend).map(|h| &h.upstream_duration);
        use_handle(cell, make, |h| h.record(duration.as_secs_f64()));
    }

    pub fn ttft(&self, backend: &str, ttft: Duration) {
        let make = || {
            self.with(|| histogram!("switchyard_ttft_seconds", "backend" => backend.to_string()))
        };
        let cell = self.backends.get(backend).map(|h| &h.ttft);
        use_handle(cell, make, |h| h.record(ttft.as_secs_f64()));
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

    /// `n` Redis commands named `op` (mget, incrby, set, del, …) were sent. Called by the
    /// background tasks only, per batch: never on a request's path.
    pub fn redis_commands(&self, op: &'static str, n: u64) {
        if n > 0 {
            self.with(|| counter!("switchyard_redis_commands_total", "op" => op).increment(n));
        }
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
            // Process-wide (the exporter is): present only while traces are exported.
            if let Some((queue_full, export_failed)) = crate::telemetry::dropped_spans() {
                counter!("switchyard_trace_spans_dropped_total", "reason" => "queue_full")
                    .absolute(queue_full);
                counter!("switchyard_trace_spans_dropped_total", "reason" => "export_failed")
                    .absolute(export_failed);
            }
        });
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_count_the_same_series_as_names_outside_the_config() {
        let yaml = "backends:\n  a: { api: openai_chat, base_url: \"http://127.0.0.1:1\" }\n\
                    routes:\n  r: { chain: [{ backend: a, model: m }] }\n";
        let config = Config::from_yaml(yaml, "t.yaml", &|_| None).unwrap();
        let health = HealthRegistry::new(&config, None);
        let m = Metrics::for_config(&config);
        for _ in 0..2 {
            m.request("r", "a", "served");
            m.attempt("a", None);
            m.attempt("a", Some(FailureReason::Overloaded));
            m.upstream_duration("a", Duration::from_millis(3));
        }
        // Outside the config (a route or backend the caches do not know): still counted.
        m.request("r", "zz", "served");
        m.request("other", "-", "rejected");
        m.attempt("zz", Some(FailureReason::Timeout));
        let text = m.render(&health);
        for line in [
            r#"switchyard_requests_total{route="r",backend="a",outcome="served"} 2"#,
            r#"switchyard_requests_total{route="r",backend="zz",outcome="served"} 1"#,
            r#"switchyard_requests_total{route="other",backend="-",outcome="rejected"} 1"#,
            r#"switchyard_attempts_total{backend="a",result="ok"} 2"#,
            r#"switchyard_attempts_total{backend="a",result="overloaded"} 2"#,
            r#"switchyard_attempts_total{backend="zz",result="timeout"} 1"#,
            r#"switchyard_upstream_duration_seconds_count{backend="a"} 2"#,
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        // Nothing is pre-registered: a reason never seen has no series.
        assert!(!text.contains(r#"result="quota""#), "{text}");
    }
}
