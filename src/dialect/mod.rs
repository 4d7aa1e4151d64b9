//! The three API dialects: their paths and every wire shape the gateway writes itself (error
//! bodies, stream error events, the exhaustion report, the models list), plus the RFC 9457
//! problem document that any client may ask for instead.
//!
//! Each dialect owns its wire formats; the rest of the gateway asks this module for bytes in
//! the client's dialect instead of formatting provider JSON itself.

pub mod anthropic;
pub mod leg;
pub mod openai;
pub mod responses;
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
    /// OpenAI Responses (`POST {base_url}/responses`): Codex CLI, the newer OpenAI agents.
    Responses,
}

impl Dialect {
    pub const ALL: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Responses];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai_chat",
            Dialect::Anthropic => "anthropic_messages",
            Dialect::Responses => "openai_responses",
        }
    }

    /// Appended to a backend's `base_url`, following each official SDK's convention: OpenAI
    /// base URLs end in `/v1`, Anthropic ones do not.
    pub fn upstream_path(self) -> &'static str {
        match self {
            Dialect::OpenAi => "/chat/completions",
            Dialect::Anthropic => "/v1/messages",
            Dialect::Responses => "/responses",
        }
    }
}

/// What a client request asks a backend to do. Generating is the gateway's purpose; the
/// others are the side endpoints agents call on the same base URL, served same-dialect only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Chat completions, messages, responses: the dialect's own endpoint.
    Generate,
    /// Anthropic's `POST /v1/messages/count_tokens` (Claude Code calls it).
    CountTokens,
    /// OpenAI's `POST /v1/embeddings`.
    Embeddings,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Generate => "generate",
            Operation::CountTokens => "count_tokens",
            Operation::Embeddings => "embeddings",
        }
    }

    /// The only API that serves this operation, for the side endpoints.
    pub fn only_api(self) -> Option<Dialect> {
        match self {
            Operation::Generate => None,
            Operation::CountTokens => Some(Dialect::Anthropic),
            Operation::Embeddings => Some(Dialect::OpenAi),
        }
    }

    /// Appended to a backend's `base_url` for this operation on a backend of `api`, when
    /// that API serves it.
    pub fn upstream_path(self, api: Dialect) -> Option<&'static str> {
        match (self, api) {
            (Operation::Generate, api) => Some(api.upstream_path()),
            (Operation::CountTokens, Dialect::Anthropic) => Some("/v1/messages/count_tokens"),
            (Operation::Embeddings, Dialect::OpenAi) => Some("/embeddings"),
            _ => None,
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
        Dialect::OpenAi | Dialect::Responses => openai::error_body(kind, code, message),
        Dialect::Anthropic => anthropic::error_body(kind, message),
    }
}

/// The SSE event that ends a stream with an error, in `dialect`'s shape.
pub fn stream_error_event(dialect: Dialect, kind: ErrorKind, code: &str, message: &str) -> Bytes {
    match dialect {
        Dialect::OpenAi => openai::stream_error_event(kind, code, message),
        Dialect::Anthropic => anthropic::stream_error_event(kind, message),
        Dialect::Responses => responses::stream_error_event(kind, code, message),
    }
}

impl ErrorKind {
    /// The error kind a client is shown for an upstream failure that ended its stream.
    pub fn of_failure(reason: crate::failure::FailureReason) -> ErrorKind {
        use crate::failure::FailureReason::*;
        match reason {
            Timeout => ErrorKind::Timeout,
            Overloaded | RateLimit => ErrorKind::Overloaded,
            _ => ErrorKind::Upstream,
        }
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
        Dialect::OpenAi | Dialect::Responses => openai::exhausted_body(summary, failures),
        Dialect::Anthropic => anthropic::exhausted_body(summary, failures),
    }
}

/// The stream event for a chain exhausted after the response headers went out.
pub fn exhausted_event(dialect: Dialect, summary: &str, failures: &impl Serialize) -> Bytes {
    match dialect {
        Dialect::OpenAi => openai::exhausted_event(summary, failures),
        Dialect::Anthropic => anthropic::exhausted_event(summary, failures),
        Dialect::Responses => responses::exhausted_event(summary, failures),
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
        Dialect::Responses => responses::cut_stream_event(reason, summary, failures),
    }
}

/// `GET /v1/models` in `dialect`'s list format.
pub fn models_list(dialect: Dialect, names: &[&str]) -> Bytes {
    match dialect {
        Dialect::OpenAi | Dialect::Responses => openai::models_list(names),
        Dialect::Anthropic => anthropic::models_list(names),
    }
}

/// `GET /v1/models/{id}` in `dialect`'s model object shape.
pub fn model_object(dialect: Dialect, name: &str) -> Bytes {
    match dialect {
        Dialect::OpenAi | Dialect::Responses => openai::model_object(name),
        Dialect::Anthropic => anthropic::model_object(name),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact bytes each dialect's SDKs and the e2e suite read: a change here is a change on
    /// the wire.
    #[test]
    fn gateway_written_shapes_keep_their_exact_bytes() {
        let failures = [json!({"backend": "a"})];
        let text = |b: Bytes| String::from_utf8(b.to_vec()).unwrap();
        #[rustfmt::skip]
        let rows: [(&str, Bytes, &str); 13] = [
            ("openai error", error_body(Dialect::OpenAi, ErrorKind::NotFound, "model_not_found", "m"),
             r#"{"error":{"code":"model_not_found","message":"m","param":null,"type":"invalid_request_error"}}"#),
            ("anthropic error", error_body(Dialect::Anthropic, ErrorKind::NotFound, "model_not_found", "m"),
             r#"{"error":{"message":"m","type":"not_found_error"},"type":"error"}"#),
            ("openai stream error", stream_error_event(Dialect::OpenAi, ErrorKind::Timeout, "timeout", "m"),
             "data: {\"error\":{\"code\":\"timeout\",\"message\":\"m\",\"param\":null,\"type\":\"timeout\"}}\n\n"),
            ("anthropic stream error", stream_error_event(Dialect::Anthropic, ErrorKind::Overloaded, "overloaded", "m"),
             "event: error\ndata: {\"error\":{\"message\":\"m\",\"type\":\"overloaded_error\"},\"type\":\"error\"}\n\n"),
            ("openai exhausted", exhausted_body(Dialect::OpenAi, "s", &failures),
             r#"{"error":{"code":"fallback_exhausted","failures":[{"backend":"a"}],"message":"s","param":null,"type":"fallback_exhausted"}}"#),
            ("anthropic exhausted", exhausted_body(Dialect::Anthropic, "s", &failures),
             r#"{"error":{"message":"s","type":"api_error"},"failures":[{"backend":"a"}],"type":"error"}"#),
            ("openai exhausted event", exhausted_event(Dialect::OpenAi, "s", &failures),
             "data: {\"error\":{\"code\":\"fallback_exhausted\",\"error_type\":\"fallback_exhausted\",\"failures\":[{\"backend\":\"a\"}],\"message\":\"s\",\"type\":\"fallback_exhausted\"}}\n\n"),
            ("anthropic exhausted event", exhausted_event(Dialect::Anthropic, "s", &failures),
             "event: error\ndata: {\"error\":{\"error_type\":\"fallback_exhausted\",\"message\":\"s\",\"type\":\"api_error\"},\"failures\":[{\"backend\":\"a\"}],\"type\":\"error\"}\n\n"),
            ("openai cut stream", cut_stream_event(Dialect::OpenAi, ErrorKind::Timeout, "timeout", "s", &failures),
             "data: {\"error\":{\"code\":\"timeout\",\"error_type\":\"timeout\",\"failures\":[{\"backend\":\"a\"}],\"message\":\"s\",\"type\":\"timeout\"}}\n\n"),
            ("anthropic cut stream", cut_stream_event(Dialect::Anthropic, ErrorKind::Timeout, "timeout", "s", &failures),
             "event: error\ndata: {\"error\":{\"error_type\":\"timeout\",\"message\":\"s\",\"type\":\"timeout_error\"},\"failures\":[{\"backend\":\"a\"}],\"type\":\"error\"}\n\n"),
            ("problem", exhausted_problem(StatusCode::GATEWAY_TIMEOUT, "s", "req_1", &failures),
             r#"{"code":"FALLBACK_EXHAUSTED","detail":"s","failures":[{"backend":"a"}],"request_id":"req_1","status":504,"title":"Every backend of the route failed","type":"urn:switchyard:problem:fallback-exhausted"}"#),
            ("openai models", models_list(Dialect::OpenAi, &["claude", "gpt"]),
             r#"{"data":[{"created":0,"id":"claude","object":"model","owned_by":"switchyard"},{"created":0,"id":"gpt","object":"model","owned_by":"switchyard"}],"object":"list"}"#),
            ("anthropic models", models_list(Dialect::Anthropic, &["claude", "gpt"]),
             r#"{"data":[{"created_at":"1970-01-01T00:00:00Z","display_name":"claude","id":"claude","type":"model"},{"created_at":"1970-01-01T00:00:00Z","display_name":"gpt","id":"gpt","type":"model"}],"first_id":"claude","has_more":false,"last_id":"gpt"}"#),
        ];
        for (what, bytes, expected) in rows {
            assert_eq!(text(bytes), expected, "{what}");
        }
    }

    #[test]
    fn an_empty_models_list_has_null_ends() {
        let b = models_list(Dialect::Anthropic, &[]);
        assert_eq!(
            &b[..],
            br#"{"data":[],"first_id":null,"has_more":false,"last_id":null}"#
        );
    }
}
