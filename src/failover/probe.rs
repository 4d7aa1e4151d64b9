//! Active health probes (`health.probe.interval` > 0): end a cooldown early without spending a
//! user's request. Every interval, each scope that is cooling down gets one small request (the
//! configured `health.probe.request`, or a one-token "ping" in the backend's dialect) on a chain
//! entry that uses it; a 2xx heals the scope at once. A failed probe changes nothing: the
//! cooldown runs out and live traffic probes as usual.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::app::Gateway;
use crate::config::BackendId;
use crate::dialect::Dialect;
use crate::health::ScopeId;
use crate::upstream::{Call, ForwardHeaders};

/// Runs while its gateway generation does (`gw` is weak: a reload's new generation has its own
/// prober).
pub async fn run(gw: std::sync::Weak<Gateway>, interval: Duration, template: Option<Value>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(gw) = gw.upgrade() else { return };
        for id in gw.health.cooling_scopes(Instant::now()) {
            let Some((backend, model, credential)) = target(&gw, id) else {
                continue;
            };
            if probe(&gw, backend, &model, credential, template.as_ref()).await {
                gw.health.heal(id, Instant::now());
            }
        }
    }
}

/// A chain entry (backend, model, credential) whose attempt would touch scope `id`.
fn target(gw: &Gateway, id: ScopeId) -> Option<(BackendId, Arc<str>, Option<usize>)> {
    for route in gw.config.routes.values() {
        for entry in &route.chain {
            for cred in gw.config.backend(entry.backend).credential_choices() {
                let scopes = gw.health.scopes_for(entry.backend, &entry.model, cred);
                if scopes.all_ids().any(|s| s == id) {
                    return Some((entry.backend, entry.model.clone(), cred));
                }
            }
        }
    }
    None
}

async fn probe(
    gw: &Gateway,
    backend_id: BackendId,
    model: &str,
    credential: Option<usize>,
    template: Option<&Value>,
) -> bool {
    let backend = gw.config.backend(backend_id);
    let mut body = template.cloned().unwrap_or_else(
        || json!({"max_tokens": 1, "messages": [{"role": "user", "content": "ping"}]}),
    );
    if let Some(obj) = body.as_object_mut() {
        obj.insert("model".into(), Value::String(model.to_string()));
        if backend.api == Dialect::Anthropic {
            obj.entry("max_tokens").or_insert(json!(1));
        }
    }
    let auth = credential.map(|c| backend.credentials[c].auth_header());
    let policy = &gw.config.failover;
    let fwd = ForwardHeaders::default();
    let request = gw.upstream().send(Call {
        backend,
        uri: &backend.endpoint_uri,
        auth,
        body: Bytes::from(body.to_string()),
        stream: false,
        leg: crate::dialect::leg::Leg::new(backend.api, backend.api),
        fwd: &fwd,
        connect_timeout: policy.connect_timeout,
    });
    let deadline = tokio::time::Instant::now() + policy.ttft_timeout.base;
    // Healthy means a real answer: a `200 {"error": …}` is as down as a 500.
    let ok = match tokio::time::timeout_at(deadline, request).await {
        Ok(Ok(resp)) if resp.status().is_success() => {
            match crate::upstream::read_body(
                resp.into_body(),
                gw.config.limits.max_response_body_bytes,
                policy.stall_timeout.base,
                deadline,
                false,
            )
            .await
            {
                Ok((body, _)) => crate::classify::answer_or_error(&body).is_ok(),
                Err(_) => false,
            }
        }
        _ => false,
    };
    tracing::info!(backend = %backend.name, model, ok, "active health probe");
    ok
}
