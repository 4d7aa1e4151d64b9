//! The admin API: backend health for operators (`GET /admin/backends`, `POST
//! /admin/backends/{name}/reset`) and the `switchyard status` table built from it.
//!
//! Protection: with `admin.key_env` set, every admin call needs that key (Bearer or
//! x-api-key). Without it, admin calls are accepted only from loopback clients, so a gateway
//! listening on a public address never exposes them by accident.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::failover::Gateway;

/// The peer address of the connection, inserted by the server's accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/admin/backends", get(backends))
        .route("/admin/backends/{name}/reset", post(reset))
}

/// `Some(refusal)` unless the caller may use the admin API.
fn refusal(gw: &Gateway, headers: &HeaderMap, peer: Option<Peer>) -> Option<Response> {
    refusal_with_query(gw, headers, None, peer)
}

/// As [`refusal`], also accepting the key as a `?key=` parameter (for EventSource).
pub fn refusal_with_query(
    gw: &Gateway,
    headers: &HeaderMap,
    query_key: Option<&str>,
    peer: Option<Peer>,
) -> Option<Response> {
    let deny = |status: StatusCode, msg: &str| {
        (
            status,
            Json(json!({"error": {"message": msg, "type": "admin_auth"}})),
        )
            .into_response()
    };
    match &gw.config.admin_key {
        Some(key) => {
            let offered = headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .or_else(|| {
                    headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                })
                .or(query_key);
            match offered {
                Some(k)
                    if crate::server::constant_time_eq(
                        k.trim().as_bytes(),
                        key.expose().as_bytes(),
                    ) =>
                {
                    None
                }
                _ => Some(deny(
                    StatusCode::UNAUTHORIZED,
                    "admin key required (admin.key_env)",
                )),
            }
        }
        None if peer.is_some_and(|p| p.0.ip().is_loopback()) => None,
        None => Some(deny(
            StatusCode::FORBIDDEN,
            "admin API is loopback-only unless admin.key_env is set",
        )),
    }
}

async fn backends(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Response {
    if let Some(r) = refusal(&gw, &headers, peer.map(|p| p.0)) {
        return r;
    }
    Json(backends_json(&gw)).into_response()
}

/// The health snapshot as served by `/admin/backends`, details scrubbed.
pub fn backends_json(gw: &Gateway) -> Value {
    let now = Instant::now();
    let wall = SystemTime::now();
    let scopes: Vec<Value> = gw
        .health
        .snapshot(now)
        .into_iter()
        .map(|s| {
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            if let Some(left) = s.cooldown_remaining_s {
                let until = wall + Duration::from_secs_f64(left);
                v["cooldown_until_ms"] = json!(until
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64);
            }
            v["last_detail"] = json!(gw.scrubber.scrub(&s.last_detail));
            v
        })
        .collect();
    let backends: Vec<Value> = gw
        .config
        .backends
        .iter()
        .map(|b| {
            json!({
                "name": &*b.name,
                "api": b.api.as_str(),
                "base_url": gw.scrubber.scrub(&b.base_url),
                "credentials": b.credentials.iter().map(|c| &*c.label).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (turns, sticky) = gw.sessions.tracked();
    json!({
        "backends": backends,
        "scopes": scopes,
        "store": format!("{:?}", gw.config.health.store).to_lowercase(),
        "sessions": {"turns_tracked": turns, "sticky_tracked": sticky},
    })
}

async fn reset(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Response {
    if let Some(r) = refusal(&gw, &headers, peer.map(|p| p.0)) {
        return r;
    }
    if gw.health.reset_backend(&name) {
        tracing::info!(backend = %name, "health reset by operator");
        Json(json!({"reset": name})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": format!("no backend named {name:?}"), "type": "not_found"}})),
        )
            .into_response()
    }
}

/// Renders `/admin/backends` JSON as a terminal table.
pub fn render_table(v: &Value) -> String {
    let mut rows = vec![[
        "BACKENDS".to_string(),
        "SCOPE".to_string(),
        "STATE".to_string(),
        "STREAK".to_string(),
        "EJECTIONS".to_string(),
        "OK/FAIL".to_string(),
        "LAST FAILURE".to_string(),
    ]];
    for s in v["scopes"].as_array().into_iter().flatten() {
        let scope = match s["kind"].as_str().unwrap_or("") {
            "model" => format!("model {}", s["model"].as_str().unwrap_or("")),
            "credential" => format!("key {}", s["credential"].as_str().unwrap_or("")),
            _ => "backend".to_string(),
        };
        let state = match (
            s["state"].as_str().unwrap_or(""),
            s["cooldown_remaining_s"].as_f64(),
        ) {
            ("cooling_down", Some(left)) => format!("cooling down {left:.0}s"),
            (st, _) => st.replace('_', "-"),
        };
        let last = match s["last_reason"].as_str() {
            Some(r) => {
                let d: String = s["last_detail"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(50)
                    .collect();
                format!("{r}: {d}")
            }
            None => "-".into(),
        };
        let names: Vec<&str> = s["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        rows.push([
            names.join(","),
            scope,
            state,
            s["streak"].to_string(),
            s["ejections"].to_string(),
            format!("{}/{}", s["successes"], s["failures"]),
            last,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
