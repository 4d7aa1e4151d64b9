//! OpenAI chat-completions wire shapes the gateway writes itself: the error body
//! `{"error":{"message","type","param","code"}}`, the stream error chunk (`data: {"error":{…}}`,
//! which the official SDK raises as an APIError), the exhaustion report and the models list.

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use super::ErrorKind;

fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidRequest
        | ErrorKind::NotFound
        | ErrorKind::PayloadTooLarge
        | ErrorKind::UnsupportedMediaType => "invalid_request_error",
        ErrorKind::Authentication => "authentication_error",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Overloaded | ErrorKind::Upstream | ErrorKind::Internal => "server_error",
    }
}

fn error_object(kind: ErrorKind, code: &str, message: &str) -> serde_json::Value {
    json!({"error": {"message": message, "type": error_type(kind), "param": null, "code": code}})
}

/// A stream event: OpenAI streams carry errors as an unnamed `data:` line.
fn event(v: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

pub fn error_body(kind: ErrorKind, code: &str, message: &str) -> Bytes {
    Bytes::from(error_object(kind, code, message).to_string())
}

pub fn stream_error_event(kind: ErrorKind, code: &str, message: &str) -> Bytes {
    event(&error_object(kind, code, message))
}

/// The 502/504 body when every backend failed: the summary as the message SDKs show, and the
/// per-backend `failures` beside it.
pub fn exhausted_body(summary: &str, failures: &impl Serialize) -> Bytes {
    let v = json!({"error": {
        "message": summary,
        "type": "fallback_exhausted",
        "param": null,
        "code": "fallback_exhausted",
        "failures": failures,
    }});
    Bytes::from(v.to_string())
}

/// The same report as a stream event, for a chain exhausted after early headers went out.
pub fn exhausted_event(summary: &str, failures: &impl Serialize) -> Bytes {
    event(&json!({"error": {
        "message": summary,
        "type": "fallback_exhausted",
        "code": "fallback_exhausted",
        "error_type": "fallback_exhausted",
        "failures": failures,
    }}))
}

/// The event that ends a stream cut after commit: `reason` is both the type and the code.
pub fn cut_stream_event(reason: &str, summary: &str, failures: &impl Serialize) -> Bytes {
    event(&json!({"error": {
        "message": summary,
        "type": reason,
        "code": reason,
        "error_type": reason,
        "failures": failures,
    }}))
}

fn model(name: &str) -> serde_json::Value {
    json!({"id": name, "object": "model", "created": 0, "owned_by": "switchyard"})
}

/// `GET /v1/models/{id}`: one route as a `model` object.
pub fn model_object(name: &str) -> Bytes {
    Bytes::from(model(name).to_string())
}

/// `GET /v1/models`: one `model` object per route name.
pub fn models_list(names: &[&str]) -> Bytes {
    let v = json!({
        "object": "list",
        "data": names.iter().map(|n| model(n)).collect::<Vec<_>>(),
    });
    Bytes::from(v.to_string())
}
