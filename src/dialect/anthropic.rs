//! Anthropic messages wire shapes: `{"type":"error","error":{"type","message"}}` and the
//! `event: error` SSE event the official SDK raises mid-stream.

use bytes::Bytes;
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

pub fn error_body(kind: ErrorKind, message: &str) -> Bytes {
    Bytes::from(error_object(kind, message).to_string())
}

pub fn stream_error_event(kind: ErrorKind, message: &str) -> Bytes {
    Bytes::from(format!(
        "event: error\ndata: {}\n\n",
        error_object(kind, message)
    ))
}
