//! The live status page (`GET /`, `/status`) and its server-sent-events feed
//! (`GET /admin/events`): routes and where their traffic goes, each backend's state with a
//! countdown, request and error rates, and the recent failovers.
//!
//! The page is one self-contained HTML file embedded in the binary (no build step, no external
//! assets). The page and its feed are admin surfaces, behind [`crate::admin::refusal`] (the
//! key may be given as `?key=`, since EventSource cannot set headers: open `/?key=KEY`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::admin::{refusal, Peer};
use crate::config::{BackendId, Config};
use crate::failover::Gateway;
use crate::health::{HealthRegistry, Scope};

const PAGE: &str = include_str!("page.html");
const WINDOW: usize = 60;
const FAILOVERS_KEPT: usize = 100;

/// Per-second request and error counts over the last minute.
struct Buckets {
    second: [u64; WINDOW],
    requests: [u32; WINDOW],
    errors: [u32; WINDOW],
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            second: [0; WINDOW],
            requests: [0; WINDOW],
            errors: [0; WINDOW],
        }
    }
}

impl Buckets {
    fn record(&mut self, now: u64, ok: bool) {
        let i = (now % WINDOW as u64) as usize;
        if self.second[i] != now {
            self.second[i] = now;
            self.requests[i] = 0;
            self.errors[i] = 0;
        }
        self.requests[i] += 1;
        if !ok {
            self.errors[i] += 1;
        }
    }

    fn per_minute(&self, now: u64) -> (u32, u32) {
        (0..WINDOW)
            .filter(|&i| now.saturating_sub(self.second[i]) < WINDOW as u64 && self.second[i] != 0)
            .fold((0, 0), |(r, e), i| {
                (r + self.requests[i], e + self.errors[i])
            })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverRecord {
    pub at_ms: u64,
    pub route: String,
    pub from: String,
    /// None when the whole chain failed.
    pub to: Option<String>,
    pub reason: String,
}

/// Recent activity, for the status page. Cheap to record: one small lock per backend.
pub struct Activity {
    backends: Vec<Mutex<Buckets>>,
    /// Per route, the backend that served last: its index + 1, 0 for none yet. An atomic, so
    /// recording it on every request takes no lock.
    serving: HashMap<Arc<str>, AtomicUsize>,
    failovers: Mutex<VecDeque<FailoverRecord>>,
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Activity {
    pub fn new(config: &Config) -> Activity {
        Activity {
            backends: config.backends.iter().map(|_| Mutex::default()).collect(),
            serving: config
                .route_names
                .iter()
                .map(|r| (r.clone(), AtomicUsize::new(0)))
                .collect(),
            failovers: Mutex::new(VecDeque::new()),
        }
    }

    pub fn attempt(&self, backend: BackendId, ok: bool) {
        let now = unix_now().as_secs();
        self.backends[backend.0]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(now, ok);
    }

    pub fn served(&self, route: &str, backend: BackendId) {
        if let Some(s) = self.serving.get(route) {
            s.store(backend.0 + 1, Ordering::Relaxed);
        }
    }

    pub fn failover(&self, route: &str, from: &str, to: Option<&str>, reason: &str) {
        let mut f = self.failovers.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() >= FAILOVERS_KEPT {
            f.pop_front();
        }
        f.push_back(FailoverRecord {
            at_ms: unix_now().as_millis() as u64,
            route: route.to_string(),
            from: from.to_string(),
            to: to.map(str::to_string),
            reason: reason.to_string(),
        });
    }
}

fn rank(state: &str) -> u8 {
    match state {
        "cooling_down" => 2,
        "half_open" => 1,
        _ => 0,
    }
}

/// Everything the page shows, as one JSON document.
pub fn snapshot(gw: &Gateway) -> Value {
    let config = &gw.config;
    let health: &HealthRegistry = &gw.health;
    let now = Instant::now();
    let secs = unix_now().as_secs();
    // Per backend name: the worst state among the scopes it belongs to.
    let mut worst: HashMap<&str, (&'static str, f64, Option<&'static str>, String)> =
        HashMap::new();
    let snaps = health.snapshot(now);
    for s in &snaps {
        for b in &s.backends {
            let e = worst
                .entry(b.as_str())
                .or_insert(("healthy", 0.0, None, String::new()));
            if rank(s.state) > rank(e.0) {
                e.0 = s.state;
            }
            e.1 = e.1.max(s.cooldown_remaining_s.unwrap_or(0.0));
            if s.last_reason.is_some() && (e.2.is_none() || matches!(s.scope, Scope::Backend)) {
                e.2 = s.last_reason;
                e.3 = gw.scrubber.detail(&s.last_detail, 200);
            }
        }
    }
    let backends: Vec<Value> = config
        .backends
        .iter()
        .map(|b| {
            let (state, left, reason, detail) =
                worst
                    .get(&*b.name)
                    .cloned()
                    .unwrap_or(("healthy", 0.0, None, String::new()));
            let (req, err) = gw.activity.backends[b.id.0]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .per_minute(secs);
            json!({
                "name": &*b.name, "api": b.api.as_str(), "state": state,
                "cooldown_remaining_s": (state == "cooling_down").then_some(left),
                "requests_per_min": req, "errors_per_min": err,
                "last_reason": reason, "last_detail": detail,
            })
        })
        .collect();
    let routes: Vec<Value> = config
        .route_names
        .iter()
        .map(|name| {
            let route = &config.routes[name];
            let serving =
                gw.activity
                    .serving
                    .get(name)
                    .and_then(|s| match s.load(Ordering::Relaxed) {
                        0 => None,
                        i => config.backends.get(i - 1).map(|b| b.name.to_string()),
                    });
            json!({
                "name": &**name,
                "chain": route.chain.iter().map(|e| json!({
                    "backend": &*config.backend(e.backend).name, "model": &*e.model,
                })).collect::<Vec<_>>(),
                "serving": serving,
            })
        })
        .collect();
    let failovers: Vec<FailoverRecord> = gw
        .activity
        .failovers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    json!({"routes": routes, "backends": backends, "failovers": failovers})
}

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/", get(page).head(page))
        .route("/status", get(page))
        .route("/admin/events", get(events))
}

async fn page(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Response {
    if let Some(r) = refusal(&gw, &method, &uri, &headers, peer.map(|p| p.0)) {
        return r;
    }
    let mut r = Html(PAGE).into_response();
    let h = r.headers_mut();
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    // The URL may carry `?key=`: no Referer may take it elsewhere, and no other site may frame
    // the page.
    h.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn events(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Response {
    if let Some(r) = refusal(&gw, &method, &uri, &headers, peer.map(|p| p.0)) {
        return r;
    }
    let body = async_stream::stream! {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let data = snapshot(&gw).to_string();
            yield Ok::<Bytes, std::io::Error>(Bytes::from(format!("event: snapshot\ndata: {data}\n\n")));
        }
    };
    let mut r = Response::new(axum::body::Body::from_stream(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    r
}
