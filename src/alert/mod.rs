//! Alerts: operators learn from their phone that the primary died.
//!
//! Requests never wait on an alert. [`Alerter::emit`] pushes into a bounded queue (when full,
//! the oldest alert is dropped and counted) and returns; a background task throttles per
//! (session or route or backend scope, event) — the first alert of a window goes out at once,
//! the rest are counted and summarized in one digest when the window closes ("and 41 more in
//! the last 5 min") — then fans out to the sinks, each with its own event filter, a per-sink
//! rate limit against storms, a bounded timeout and one retry. Session tables are bounded.
//!
//! Across replicas (`health.store: redis`), the dispatcher takes a cluster-wide claim before it
//! sends the first alert of a window or a digest (`SET {prefix}:alert:{key}:{event} 1 NX PX
//! throttle`): one message per burst however many replicas saw it; a replica that loses the
//! claim counts the alert as suppressed. A session new to this replica has its first backend
//! checked against the cluster's (`{prefix}:first:{session}`), so a replica that never saw the
//! session start still reports the switch. All of it runs in the dispatcher, never on a
//! request's path; when Redis is unreachable each replica decides alone (duplicates possible).

pub mod sinks;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{broadcast, Notify, Semaphore};
use tokio::time::Instant;

use crate::config::{AlertEvent, AlertsConfig, Config};
use crate::health::redis_store::{digest, Shared};
use crate::health::sessions::BoundedMap;
use crate::health::{HealthEvent, HealthEventKind, HealthRegistry};
use crate::metrics::Metrics;
use crate::scrub::Scrubber;

/// A backend and model, as named in the config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub backend: String,
    pub model: String,
}

/// One alert. Every text field is scrubbed before it gets here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub event: AlertEvent,
    pub route: Option<String>,
    pub session: Option<String>,
    pub primary: Option<Target>,
    pub serving: Option<Target>,
    pub reason: Option<String>,
    pub detail: String,
    pub request_id: Option<String>,
    /// The client product (`claude-cli`, …), for fallback alerts.
    pub platform: Option<String>,
    /// The finish reason of the answer that triggered a fallback alert (`end_turn`, `stop`…).
    pub finish_reason: Option<String>,
    /// Backends of the scope, for backend_down / backend_recovered.
    pub backends: Vec<String>,
    pub scope: Option<String>,
    /// The tokens the serving backend reported for the request (a fallback alert); in a
    /// digest, the sum over the alerts the window held back: what the fallback is costing.
    pub tokens: Option<Tokens>,
    /// When this is a digest: how many alerts the throttle held back in the window.
    pub suppressed: u32,
    #[serde(skip)]
    pub window: Duration,
    #[serde(skip)]
    pub at: SystemTime,
}

impl Alert {
    pub fn new(event: AlertEvent) -> Alert {
        Alert {
            event,
            route: None,
            session: None,
            primary: None,
            serving: None,
            reason: None,
            detail: String::new(),
            request_id: None,
            platform: None,
            finish_reason: None,
            backends: Vec::new(),
            scope: None,
            tokens: None,
            suppressed: 0,
            window: Duration::ZERO,
            at: SystemTime::now(),
        }
    }

    /// The throttle key: the session when known, else the route, else the backend scope.
    fn throttle_key(&self) -> String {
        match (&self.session, &self.route, &self.scope) {
            (Some(s), _, _) => format!("session:{s}"),
            (None, Some(r), _) => format!("route:{r}"),
            (None, None, Some(sc)) => format!("scope:{sc}"),
            _ => "global".into(),
        }
    }

    pub fn title(&self) -> &'static str {
        match self.event {
            AlertEvent::FallbackActivated => "fallback activated",
            AlertEvent::BackendDown => "backend down",
            AlertEvent::BackendRecovered => "backend recovered",
            AlertEvent::FallbackExhausted => "every backend failed",
            AlertEvent::ConfigRejected => "config reload refused",
        }
    }

    /// Label/value lines shared by every rendering.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = Vec::new();
        if let Some(r) = &self.route {
            f.push(("Route", r.clone()));
        }
        if let Some(s) = &self.session {
            f.push(("Session", s.clone()));
        }
        if let Some(p) = &self.platform {
            f.push(("Platform", p.clone()));
        }
        if !self.backends.is_empty() {
            f.push(("Backend", self.backends.join(", ")));
        }
        if let Some(sc) = &self.scope {
            f.push(("Scope", sc.clone()));
        }
        if let Some(p) = &self.primary {
            f.push(("Primary", format!("{} ({})", p.backend, p.model)));
        }
        if let Some(s) = &self.serving {
            f.push(("Now serving", format!("{} ({})", s.backend, s.model)));
        }
        if let Some(r) = &self.reason {
            f.push(("Reason", r.clone()));
        }
        if !self.detail.is_empty() {
            f.push(("Detail", self.detail.clone()));
        }
        if let Some(r) = &self.finish_reason {
            f.push(("Finish reason", r.clone()));
        }
        if let Some(t) = &self.tokens {
            let label = if self.suppressed > 0 {
                "Tokens (held back)"
            } else {
                "Tokens"
            };
            f.push((label, format!("{} in / {} out", t.input, t.output)));
        }
        if let Some(id) = &self.request_id {
            f.push(("Request", id.clone()));
        }
        f
    }

    pub fn suppressed_line(&self) -> Option<String> {
        (self.suppressed > 0).then(|| {
            format!(
                "and {} more in the last {}",
                self.suppressed,
                human_window(self.window)
            )
        })
    }

    /// One plain line, for logs and the webhook's `text`.
    pub fn text(&self) -> String {
        let mut s = format!("Switchyard: {}", self.title());
        for (k, v) in self.fields() {
            s.push_str(&format!("; {k}: {v}"));
        }
        if let Some(l) = self.suppressed_line() {
            s.push_str(&format!("; {l}"));
        }
        s
    }
}

fn human_window(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// A bounded queue that drops its oldest entry when full (new alerts matter more).
struct DropOldest {
    items: Mutex<VecDeque<Alert>>,
    cap: usize,
    notify: Notify,
}

impl DropOldest {
    /// True when an older alert was dropped to make room.
    fn push(&self, alert: Alert) -> bool {
        let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = if q.len() >= self.cap {
            q.pop_front();
            true
        } else {
            false
        };
        q.push_back(alert);
        drop(q);
        self.notify.notify_one();
        dropped
    }

    fn drain(&self) -> Vec<Alert> {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }
}

/// Input and output tokens, as an alert reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    suppressed: u32,
    /// Tokens of the alerts held back in this window.
    tokens: Tokens,
    /// Whether this window's first alert went out.
    sent: bool,
}

/// A session's first serving backend, and whether its switch away was announced.
type FirstServed = (Arc<str>, bool);

/// What a session's serving backend means for this replica's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSeen {
    /// First request of the session here: its backend is recorded as the first.
    New,
    /// Served by its first backend, or the switch was announced already.
    Same,
    /// Served by another backend than its first: announce it (once).
    Switched,
}

/// A session new to this replica, to check against the cluster's first backend.
struct FirstCheck {
    session: Box<str>,
    backend: Arc<str>,
    /// The alert to raise if the cluster's first backend differs (None: record only).
    alert: Option<Alert>,
}

/// Sends alerts without ever making a request wait.
pub struct Alerter {
    config: AlertsConfig,
    queue: DropOldest,
    /// Deliveries under way (for a shutdown that waits for them).
    delivering: Arc<std::sync::atomic::AtomicUsize>,
    metrics: Arc<Metrics>,
    scrubber: Arc<Scrubber>,
    sessions: Mutex<BoundedMap<Box<str>, FirstServed>>,
    /// Cluster-wide throttle claims and sessions' first backends (`health.store: redis`).
    shared: Option<Shared>,
    first_checks: Mutex<VecDeque<FirstCheck>>,
}

impl Alerter {
    pub fn new(config: &Config, metrics: Arc<Metrics>, scrubber: Arc<Scrubber>) -> Alerter {
        let a = &config.alerts;
        for sink in &a.sinks {
            if let Some(why) = &sink.disabled {
                tracing::warn!(sink = %sink.name, "alert sink disabled: {why}; it will send nothing");
            }
        }
        Alerter {
            queue: DropOldest {
                items: Mutex::new(VecDeque::new()),
                cap: a.queue,
                notify: Notify::new(),
            },
            delivering: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            sessions: Mutex::new(BoundedMap::new(a.max_sessions, a.session_ttl)),
            config: a.clone(),
            metrics,
            scrubber,
            shared: None,
            first_checks: Mutex::new(VecDeque::new()),
        }
    }

    /// Shares throttling and sessions' first backends with the other replicas.
    pub fn share(&mut self, shared: Shared) {
        self.shared = Some(shared);
    }

    /// Nothing queued and nothing being delivered: a shutdown may exit without losing an
    /// alert.
    pub fn idle(&self) -> bool {
        let queued = self
            .queue
            .items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        queued == 0 && self.delivering.load(std::sync::atomic::Ordering::Relaxed) == 0
    }

    pub fn enabled(&self) -> bool {
        self.config.sinks.iter().any(|s| s.disabled.is_none())
    }

    /// Queues an alert; never blocks, never fails.
    pub fn emit(&self, mut alert: Alert) {
        if !self.enabled() {
            return;
        }
        alert.detail = self.scrubber.detail(&alert.detail, 300);
        if self.queue.push(alert) {
            self.metrics.alert("queue", "dropped");
        }
    }

    /// Whether a request's serving backend is a switch for its session (first seen differs).
    pub fn session_switched(&self, session: &str, backend: &Arc<str>) -> bool {
        self.session_seen(session, backend) == SessionSeen::Switched
    }

    /// Looks the session up in this replica's table (recording it when new).
    pub fn session_seen(&self, session: &str, backend: &Arc<str>) -> SessionSeen {
        let now = Instant::now();
        let mut table = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let key: Box<str> = session.into();
        let Some(entry) = table.get_mut(&key, now) else {
            table.entry(key, now, || (backend.clone(), false));
            return SessionSeen::New;
        };
        if entry.0 != *backend && !entry.1 {
            entry.1 = true;
            return SessionSeen::Switched;
        }
        SessionSeen::Same
    }

    /// Whether sessions' first backends are checked across replicas.
    pub fn shares_sessions(&self) -> bool {
        self.shared.is_some() && self.enabled()
    }

    /// Queues (never blocks) a check of a session new to this replica against the cluster's
    /// first backend; `alert` goes out if they differ. Bounded: the oldest check is dropped.
    pub fn check_first_backend(&self, session: &str, backend: &Arc<str>, alert: Option<Alert>) {
        if !self.shares_sessions() {
            return;
        }
        let mut q = self.first_checks.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.config.queue {
            q.pop_front();
            self.metrics.alert("first_backend", "dropped");
        }
        q.push_back(FirstCheck {
            session: session.into(),
            backend: backend.clone(),
            alert: alert.map(|mut a| {
                a.detail = self.scrubber.detail(&a.detail, 300);
                a
            }),
        });
        drop(q);
        self.queue.notify.notify_one();
    }

    /// Takes a cluster-wide claim on (throttle key, event); true when this replica may send.
    /// Without a shared store, or when it does not answer, every replica decides alone.
    async fn claim(&self, throttle_key: &str, event: AlertEvent, what: &str) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let key = shared.key(
            "alert",
            &format!("{}:{}{what}", digest(throttle_key), event.as_str()),
        );
        match shared.claim(&key, self.config.throttle).await {
            Ok(won) => won,
            Err(e) => {
                tracing::debug!(error = %e, "alert claim failed; deciding locally");
                true
            }
        }
    }

    /// Checks the queued sessions against the cluster's first backends (one round trip) and
    /// raises the alerts of those that switched.
    async fn check_firsts(&self) {
        let checks: Vec<FirstCheck> = self
            .first_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let Some(shared) = &self.shared else { return };
        if checks.is_empty() {
            return;
        }
        let pairs: Vec<(&str, &str)> = checks.iter().map(|c| (&*c.session, &*c.backend)).collect();
        let firsts = match shared.first_backends(&pairs, self.config.session_ttl).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "session first-backend check failed; local only");
                return;
            }
        };
        let now = Instant::now();
        for (check, first) in checks.into_iter().zip(firsts) {
            let Some(first) = first.filter(|f| **f != *check.backend) else {
                continue;
            };
            {
                let mut table = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(entry) = table.get_mut(&check.session, now) {
                    if entry.1 {
                        continue;
                    }
                    *entry = (first.as_str().into(), true);
                }
            }
            if let Some(mut alert) = check.alert {
                alert.reason = Some(format!(
                    "the session's first backend ({first}, on another replica) is not the one serving now"
                ));
                if self.queue.push(alert) {
                    self.metrics.alert("queue", "dropped");
                }
            }
        }
    }

    pub fn tracked_sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The dispatcher: throttles, digests, rate-limits and fans out. Also turns health
    /// changes into backend_down / backend_recovered alerts.
    pub async fn run(self: Arc<Self>, health: Arc<HealthRegistry>) {
        let mut health_rx = health.subscribe();
        let client = sinks::client();
        let sinks: Vec<Arc<sinks::Sink>> = self
            .config
            .sinks
            .iter()
            .filter(|s| s.disabled.is_none())
            .map(|s| Arc::new(sinks::Sink::new(s.clone(), self.config.per_sink_per_minute)))
            .collect();
        let mut windows: BoundedMap<(String, AlertEvent), Window> =
            BoundedMap::new(self.config.max_sessions, self.config.throttle * 2);
        let mut pending_digests: VecDeque<(String, AlertEvent, Alert)> = VecDeque::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.queue.notify.notified() => {}
                _ = tick.tick() => {}
                ev = health_rx.recv() => match ev {
                    Ok(ev) => self.emit(health_alert(&health, &ev)),
                    Err(broadcast::error::RecvError::Lagged(n)) => self.metrics_dropped(n),
                    Err(broadcast::error::RecvError::Closed) => {}
                },
            }
            // A reload replaced this gateway generation and its last request is done: what
            // was queued has gone out (below, last round), so the dispatcher ends.
            let alone = Arc::strong_count(&self) == 1;
            self.check_firsts().await;
            let now = Instant::now();
            let queued = self.queue.drain();
            if alone && queued.is_empty() && pending_digests.is_empty() {
                return;
            }
            for alert in queued {
                let key = (alert.throttle_key(), alert.event);
                let w = windows.entry(key.clone(), now, || Window {
                    started: now,
                    suppressed: 0,
                    tokens: Tokens::default(),
                    sent: false,
                });
                let opens =
                    !w.sent || now.saturating_duration_since(w.started) >= self.config.throttle;
                if opens {
                    *w = Window {
                        started: now,
                        suppressed: 0,
                        tokens: Tokens::default(),
                        sent: true,
                    };
                }
                // Another replica sent this burst's first alert: held back here like the rest.
                if opens && self.claim(&key.0, key.1, "").await {
                    self.fan_out(&client, &sinks, alert);
                    continue;
                }
                let Some(w) = windows.get_mut(&key, now) else {
                    continue;
                };
                let tokens = alert.tokens;
                if w.suppressed == 0 {
                    pending_digests.push_back((key.0, key.1, alert));
                    if pending_digests.len() > self.config.max_sessions {
                        pending_digests.pop_front();
                    }
                }
                w.suppressed += 1;
                if let Some(t) = tokens {
                    w.tokens.input = w.tokens.input.saturating_add(t.input);
                    w.tokens.output = w.tokens.output.saturating_add(t.output);
                }
                self.metrics.alert("throttle", "suppressed");
            }
            // Windows that closed with alerts held back: one digest each.
            while let Some((k, e, _)) = pending_digests.front() {
                let key = (k.clone(), *e);
                let Some(w) = windows.get_mut(&key, now).copied() else {
                    pending_digests.pop_front();
                    continue;
                };
                if now.saturating_duration_since(w.started) < self.config.throttle {
                    break;
                }
                let (_, _, mut digest) = pending_digests.pop_front().expect("front exists");
                digest.suppressed = w.suppressed;
                digest.tokens = (w.tokens != Tokens::default()).then_some(w.tokens);
                digest.window = self.config.throttle;
                digest.at = SystemTime::now();
                if let Some(w) = windows.get_mut(&key, now) {
                    *w = Window {
                        started: now,
                        suppressed: 0,
                        tokens: Tokens::default(),
                        sent: true,
                    };
                }
                // One digest per window cluster-wide; it counts the sending replica's alerts.
                if self.claim(&key.0, key.1, ":digest").await {
                    self.fan_out(&client, &sinks, digest);
                }
            }
        }
    }

    fn metrics_dropped(&self, n: u64) {
        for _ in 0..n.min(1000) {
            self.metrics.alert("health_events", "dropped");
        }
    }

    fn fan_out(&self, client: &reqwest::Client, sinks: &[Arc<sinks::Sink>], alert: Alert) {
        let alert = Arc::new(alert);
        for sink in sinks {
            if !sink.spec.events.contains(&alert.event) {
                continue;
            }
            if !sink.take_token() {
                self.metrics.alert(&sink.spec.name, "dropped");
                continue;
            }
            let Ok(permit) = sink.in_flight.clone().try_acquire_owned() else {
                self.metrics.alert(&sink.spec.name, "dropped");
                continue;
            };
            let (client, sink, alert, metrics) = (
                client.clone(),
                sink.clone(),
                alert.clone(),
                self.metrics.clone(),
            );
            let delivering = self.delivering.clone();
            delivering.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                let result = sink.deliver(&client, &alert).await;
                metrics.alert(&sink.spec.name, if result { "sent" } else { "failed" });
                drop(permit);
                delivering.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    }
}

/// Caps concurrent deliveries per sink, so a hanging sink cannot pile up tasks.
pub(crate) fn in_flight_limit() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(16))
}

fn health_alert(health: &HealthRegistry, ev: &HealthEvent) -> Alert {
    let info = health.scope_info(ev.scope);
    let (event, detail) = match &ev.kind {
        HealthEventKind::Down { cooldown, ejection } => (
            AlertEvent::BackendDown,
            format!(
                "cooling down for {} (ejection {ejection}){}",
                human_window(Duration::from_secs(cooldown.as_secs().max(1))),
                if ev.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", ev.detail)
                }
            ),
        ),
        HealthEventKind::Recovered => (AlertEvent::BackendRecovered, "serving again".into()),
    };
    let mut a = Alert::new(event);
    a.backends = info.backends.iter().map(|b| b.to_string()).collect();
    a.scope = Some(match &info.scope {
        crate::health::Scope::Backend => format!("backend {}", info.identity.as_str()),
        crate::health::Scope::Model { model } => format!("model {model}"),
        crate::health::Scope::Credential { credential } => format!("key {credential}"),
    });
    a.reason = ev.reason.map(|r| r.as_str().to_string());
    a.detail = detail;
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_carries_every_field_and_the_suppressed_count() {
        let mut a = Alert::new(AlertEvent::FallbackActivated);
        a.route = Some("main".into());
        a.primary = Some(Target {
            backend: "claude-local".into(),
            model: "opus".into(),
        });
        a.serving = Some(Target {
            backend: "openrouter".into(),
            model: "sonnet".into(),
        });
        a.reason = Some("overloaded".into());
        a.detail = "Overloaded".into();
        a.request_id = Some("req_1".into());
        a.suppressed = 41;
        a.window = Duration::from_secs(300);
        assert_eq!(
            a.text(),
            "Switchyard: fallback activated; Route: main; Primary: claude-local (opus); Now serving: openrouter (sonnet); Reason: overloaded; Detail: Overloaded; Request: req_1; and 41 more in the last 5 min"
        );
    }

    #[test]
    fn the_queue_drops_the_oldest_when_full() {
        let q = DropOldest {
            items: Mutex::new(VecDeque::new()),
            cap: 2,
            notify: Notify::new(),
        };
        let mk = |r: &str| {
            let mut a = Alert::new(AlertEvent::BackendDown);
            a.route = Some(r.into());
            a
        };
        assert!(!q.push(mk("a")));
        assert!(!q.push(mk("b")));
        assert!(q.push(mk("c")));
        let left: Vec<String> = q.drain().into_iter().map(|a| a.route.unwrap()).collect();
        assert_eq!(left, ["b", "c"]);
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    #[tokio::test]
    async fn session_table_stays_bounded_under_100k_sessions() {
        let yaml = "backends:\n  a: { api: openai_chat, base_url: \"http://a/v1\" }\nroutes:\n  r: { chain: [ { backend: a, model: m } ] }\nalerts: { max_sessions: 1000, sinks: [ { kind: log } ] }\n";
        let config = Config::from_yaml(yaml, "t.yaml", &|_| None).unwrap();
        let alerter = Alerter::new(
            &config,
            Arc::new(Metrics::new()),
            Arc::new(Scrubber::new::<&str>(&[])),
        );
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        for i in 0..100_000 {
            let s = format!("session-{i}");
            assert!(!alerter.session_switched(&s, &a));
        }
        assert_eq!(alerter.tracked_sessions(), 1000);
        // A recent session still remembers its first backend and reports the switch once.
        assert!(alerter.session_switched("session-99999", &b));
        assert!(!alerter.session_switched("session-99999", &b));
    }
}
