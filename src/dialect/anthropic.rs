//! Anthropic messages wire shapes the gateway writes itself: the error body
//! `{"type":"error","error":{"type","message"}}`, the `event: error` SSE event the official SDK
//! raises mid-stream, the exhaustion report and the models list.

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use super::ErrorKind;

/// Anthropic's documented error types, by what went wrong.
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest | ErrorKind::UnsupportedMediaType => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::NotFound => "not_found_error",
        ErrorKind::PayloadTooLarge => "request_too_large",
        ErrorKind::Timeout => "timeout_error",
        ErrorKind::Overloaded => "overloaded_error",
        ErrorKind::Upstream | ErrorKind::Internal => "api_error",
    }
}

fn error_object(kind: ErrorKind, message: &str) -> serde_json::Value {
    json!({"type": "error", "error": {"type": error_type(kind), "message": message}})
}

/// A named `error` event, as Anthropic streams carry errors.
fn event(v: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: error\ndata: {v}\n\n"))
}

pub fn error_body(kind: ErrorKind, message: &str) -> Bytes {
    Bytes::from(error_object(kind, message).to_string())
}

pub fn stream_error_event(kind: ErrorKind, message: &str) -> Bytes {
    event(&error_object(kind, message))
}

/// The 502/504 body when every backend failed: an `api_error` whose message is the summary,
/// with the per-backend `failures` beside the error object.
pub fn exhausted_body(summary: &str, failures: &impl Serialize) -> Bytes {
    let v = json!({
        "type": "error",
        "error": {"type": "api_error", "message": summary},
        "failures": failures,
    });
    Bytes::from(v.to_string())
}

/// The same report as a stream event, for a chain exhausted after early headers went out.
pub fn exhausted_event(summary: &str, failures: &impl Serialize) -> Bytes {
    event(&json!({
        "type": "error",
        "error": {"type": "api_error", "message": summary, "error_type": "fallback_exhausted"},
        "failures": failures,
    }))
}

/// The event that ends a stream cut after commit: Anthropic's type for `kind`, and the
/// gateway's `reason` as `error_type`.
pub fn cut_stream_event(
    kind: ErrorKind,
    reason: &str,
    summary: &str,
    failures: &impl Serialize,
) -> Bytes {
    event(&json!({
        "type": "error",
        "error": {"type": error_type(kind), "message": summary, "error_type": reason},
        "failures": failures,
    }))
}

/// `GET /v1/models` for an Anthropic SDK: one `model` object per route name.
fn model(name: &str) -> serde_json::Value {
    json!({"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"})
}

/// `GET /v1/models/{id}`: one route as a model object.
pub fn model_object(name: &str) -> Bytes {
    Bytes::from(model(name).to_string())
}

pub fn models_list(names: &[&str]) -> Bytes {
    let v = json!({
        "data": names.iter().map(|n| model(n)).collect::<Vec<_>>(),
        "has_more": false,
        "first_id": names.first(),
        "last_id": names.last(),
    });
    Bytes::from(v.to_string())
}
