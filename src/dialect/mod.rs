//! The two API dialects: their paths, their error shapes and their stream error events.
//!
//! Each dialect owns its wire formats; the rest of the gateway asks this module for bytes in
//! the client's dialect instead of formatting provider JSON itself.

pub mod anthropic;
pub mod leg;
pub mod openai;
pub mod translate;

use bytes::Bytes;
use http::StatusCode;

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
