//! OpenAI chat-completions wire shapes: `{"error":{"message","type","param","code"}}` and the
//! stream error chunk (`data: {"error":{…}}`), which the official SDK raises as an APIError.

use bytes::Bytes;
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

pub fn error_body(kind: ErrorKind, code: &str, message: &str) -> Bytes {
    Bytes::from(error_object(kind, code, message).to_string())
}

pub fn stream_error_event(kind: ErrorKind, code: &str, message: &str) -> Bytes {
    Bytes::from(format!("data: {}\n\n", error_object(kind, code, message)))
}
