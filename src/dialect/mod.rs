//! The two API dialects: their paths and every wire shape the gateway writes itself (error
//! bodies, stream error events, the exhaustion report, the models list), plus the RFC 9457
//! problem document that any client may ask for instead.
//!
//! Each dialect owns its wire formats; the rest of the gateway asks this module for bytes in
//! the client's dialect instead of formatting provider JSON itself.

pub mod anthropic;
pub mod leg;
pub mod openai;
pub mod translate;

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;
use serde_json::json;

/// The API dialect a client speaks or a backend serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI chat completions (`POST {base_url}/chat/completions`).
    OpenAi,
    /// Anthropic messages (`POST {base_url}/v1/messages`).
    Anthropic,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai_chat",
            Dialect::Anthropic => "anthropic_messages",
        }
    }

    /// Appended to a backend's `base_url`, following each official SDK's convention: OpenAI
    /// base URLs end in `/v1`, Anthropic ones do not.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Dialect::OpenAi => "/chat/completions",
            Dialect::Anthropic => "/v1/messages",
        }
    }
}

/// What kind of gateway-side error this is; each dialect maps it onto its own type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    Timeout,
    Overloaded,
    Upstream,
    Internal,
}

/// A complete error response body in `dialect`'s shape. `code` is the machine-readable code
/// (OpenAI's `code`; Anthropic has no such field, so it is only used there for the type).
pub fn error_body(dialect: Dialect, kind: ErrorKind, code: &str, message: &str) -> Bytes {
    match dialect {
        Dialect::OpenAi => openai::error_body(kind, code, message),
        Dialect::Anthropic => anthropic::error_body(kind, message),
    }
}

/// The SSE event that ends a stream with an error, in `dialect`'s shape.
pub fn stream_error_event(dialect: Dialect, kind: ErrorKind, code: &str, message: &str) -> Bytes {
    match dialect {
        Dialect::OpenAi => openai::stream_error_event(kind, code, message),
        Dialect::Anthropic => anthropic::stream_error_event(kind, message),
    }
}

/// The HTTP status that goes with a gateway-side error kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The 502/504 body for an exhausted chain: `summary` as the message SDKs show, `failures` (one
/// entry per chain entry) beside it.
pub fn exhausted_body(dialect: Dialect, summary: &str, failures: &impl Serialize) -> Bytes {
    match dialect {
        Dialect::OpenAi => openai::exhausted_body(summary, failures),
        Dialect::Anthropic => anthropic::exhausted_body(summary, failures),
    }
}

/// The stream event for a chain exhausted after the response headers went out.
pub fn exhausted_event(dialect: Dialect, summary: &str, failures: &impl Serialize) -> Bytes {
    match dialect {
        Dialect::OpenAi => openai::exhausted_event(summary, failures),
        Dialect::Anthropic => anthropic::exhausted_event(summary, failures),
    }
}

/// The event that ends a stream whose backend failed after content reached the client.
pub fn cut_stream_event(
    dialect: Dialect,
    kind: ErrorKind,
    reason: &str,
    summary: &str,
    failures: &impl Serialize,
) -> Bytes {
    match dialect {
        Dialect::OpenAi => openai::cut_stream_event(reason, summary, failures),
        Dialect::Anthropic => anthropic::cut_stream_event(kind, reason, summary, failures),
    }
}

/// `GET /v1/models` in `dialect`'s list format.
pub fn models_list(dialect: Dialect, names: &[&str]) -> Bytes {
    match dialect {
        Dialect::OpenAi => openai::models_list(names),
        Dialect::Anthropic => anthropic::models_list(names),
    }
}

/// The RFC 9457 problem document for an exhausted chain, for clients of either dialect that
/// `Accept: application/problem+json`.
pub fn exhausted_problem(
    status: StatusCode,
    summary: &str,
    request_id: &str,
    failures: &impl Serialize,
) -> Bytes {
    let v = json!({
        "type": "urn:switchyard:problem:fallback-exhausted",
        "title": "Every backend of the route failed",
        "status": status.as_u16(),
        "detail": summary,
        "code": "FALLBACK_EXHAUSTED",
        "request_id": request_id,
        "failures": failures,
    });
    Bytes::from(v.to_string())
}

/// The media type of [`exhausted_problem`].
pub const PROBLEM_JSON: &str = "application/problem+json";
