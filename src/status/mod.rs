//! The live status page (`GET /`, `/status`) and its server-sent-events feed
//! (`GET /admin/events`): routes and where their traffic goes, each backend's state with a
//! countdown, request and error rates, and the recent failovers.
//!
//! The page is one self-contained HTML file embedded in the binary (no build step, no external
//! assets). The page and its feed are admin surfaces, behind [`crate::admin::refusal`] (the
//! key may be given as `?key=`, since EventSource cannot set headers: open `/?key=KEY`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::admin::{refusal, Peer};
use crate::app::Gateway;
use crate::health::{HealthRegistry, Scope};

pub mod activity;

use activity::unix_now;
pub use activity::{Activity, FailoverRecord};

const PAGE: &str = include_str!("page.html");
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
            let (tokens_in, tokens_cached, tokens_out) = gw.activity.token_totals(b.id);
            json!({
                "name": &*b.name, "api": b.api.as_str(), "state": state,
                "cooldown_remaining_s": (state == "cooling_down").then_some(left),
                "requests_per_min": req, "errors_per_min": err,
                "tokens": {"input": tokens_in, "cached_input": tokens_cached, "output": tokens_out},
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
    json!({
        "routes": routes,
        "summary": summary(&backends),
        "backends": backends,
        "failovers": failovers,
    })
}

/// The page's headline counts. A half-open backend has served out its cooldown and is being
/// probed: it is recovering, not down, and is counted apart so the page does not cry outage
/// while a backend comes back.
fn summary(backends: &[Value]) -> Value {
    let count = |state: &str| backends.iter().filter(|b| b["state"] == state).count();
    json!({
        "healthy": count("healthy"),
        "recovering": count("half_open"),
        "down": count("cooling_down"),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_open_backends_count_as_recovering_not_down() {
        let b = |state: &str| json!({"name": "x", "state": state});
        let all = [
            b("healthy"),
            b("half_open"),
            b("cooling_down"),
            b("half_open"),
        ];
        assert_eq!(
            summary(&all),
            json!({"healthy": 1, "recovering": 2, "down": 1})
        );
        assert_eq!(
            summary(&[b("healthy")]),
            json!({"healthy": 1, "recovering": 0, "down": 0})
        );
    }
}
