//! Every way the gateway itself refuses or fails a request, as one typed error that renders
//! itself in the client's dialect: the status, a machine-readable code and a message that says
//! what to fix.

use std::time::Duration;

use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode};

use super::headers::{json_response, set_attempts, set_header, H_REQUEST_ID};
use crate::body::BodyError;
use crate::dialect::{self, Dialect, ErrorKind};

/// A request the gateway answers itself, without asking any backend.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("missing gateway key; send it as `Authorization: Bearer KEY` or `x-api-key: KEY`")]
    MissingGatewayKey,
    #[error("the gateway key is not valid; send one of the keys configured in auth.keys_env")]
    InvalidGatewayKey,
    #[error(
        "content type {content_type:?} is not supported; send a JSON body with \
         `Content-Type: application/json`"
    )]
    UnsupportedMediaType { content_type: String },
    #[error(
        "request body is larger than the gateway's limit of {limit} bytes (limits.max_body_bytes)"
    )]
    PayloadTooLarge { limit: usize },
    #[error("the request body did not arrive within {after:?} (limits.body_read_timeout)")]
    BodyReadTimeout { after: Duration },
    /// The connection failed while the body was being read; `0` is the transport's words.
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error(transparent)]
    InvalidBody(#[from] BodyError),
    /// `model` names no route and there is no default route. `model` is already truncated.
    #[error("model {model:?} is not a route of this gateway; available: {}", .available.join(", "))]
    UnknownRoute {
        model: String,
        available: Vec<String>,
    },
    /// A side endpoint (count_tokens, embeddings) on a route with no backend of its API.
    #[error(
        "route {route:?} has no {api} backend, and only {api} backends serve {operation}; \
         add one to the route's chain or call this endpoint on another route"
    )]
    OperationNotServed {
        route: String,
        operation: &'static str,
        api: &'static str,
    },
    #[error(
        "no such endpoint: {method} {path}; Switchyard serves POST /v1/chat/completions, \
         POST /v1/messages, POST /v1/responses, POST /v1/messages/count_tokens and \
         POST /v1/embeddings"
    )]
    UnknownEndpoint { method: Method, path: String },
    #[error("{method} is not allowed on {path}; use POST")]
    MethodNotAllowed { method: Method, path: String },
    /// The request handler panicked: a bug of ours.
    #[error("the gateway failed while handling this request (a bug; it has been logged)")]
    Internal,
    /// Relaying a committed stream panicked: a bug of ours, reported as the stream's last event.
    #[error("the gateway failed while relaying this stream (a bug; it has been logged)")]
    RelayInternal,
    /// The shutdown grace ran out before any backend answered this request.
    #[error("the gateway is shutting down and could not finish this request in time; retry it")]
    ShuttingDown,
}

impl GatewayError {
    /// What kind of error this is, which each dialect names in its own way.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::MissingGatewayKey | GatewayError::InvalidGatewayKey => {
                ErrorKind::Authentication
            }
            GatewayError::UnsupportedMediaType { .. } => ErrorKind::UnsupportedMediaType,
            GatewayError::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            GatewayError::BodyReadTimeout { .. }
            | GatewayError::BodyRead(_)
            | GatewayError::InvalidBody(_)
            | GatewayError::OperationNotServed { .. }
            | GatewayError::MethodNotAllowed { .. } => ErrorKind::InvalidRequest,
            GatewayError::UnknownRoute { .. } | GatewayError::UnknownEndpoint { .. } => {
                ErrorKind::NotFound
            }
            GatewayError::Internal | GatewayError::RelayInternal => ErrorKind::Internal,
            GatewayError::ShuttingDown => ErrorKind::Overloaded,
        }
    }

    /// The machine-readable code (OpenAI's `code`; logged for both dialects).
    pub fn code(&self) -> &'static str {
        match self {
            // One code for both: telling a prober which of the two it hit helps nobody.
            GatewayError::MissingGatewayKey | GatewayError::InvalidGatewayKey => {
                "invalid_gateway_key"
            }
            GatewayError::UnsupportedMediaType { .. } => "unsupported_content_type",
            GatewayError::PayloadTooLarge { .. } => "request_too_large",
            GatewayError::BodyReadTimeout { .. } => "body_read_timeout",
            GatewayError::BodyRead(_) => "body_read_error",
            GatewayError::InvalidBody(e) => e.code(),
            GatewayError::UnknownRoute { .. } => "model_not_found",
            GatewayError::UnknownEndpoint { .. } => "unknown_endpoint",
            GatewayError::OperationNotServed { .. } => "operation_not_served",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::Internal | GatewayError::RelayInternal => "internal_error",
            GatewayError::ShuttingDown => "shutting_down",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            // No error kind of either dialect means 405; the body says invalid request.
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            _ => dialect::status_of(self.kind()),
        }
    }

    /// The error body in `dialect`'s shape.
    pub fn body(&self, dialect: Dialect) -> Bytes {
        dialect::error_body(dialect, self.kind(), self.code(), &self.to_string())
    }

    /// The error as the event that ends a stream in `dialect`.
    pub fn stream_event(&self, dialect: Dialect) -> Bytes {
        dialect::stream_error_event(dialect, self.kind(), self.code(), &self.to_string())
    }

    /// The complete response: no backend was attempted, so `x-switchyard-attempts: 0`.
    pub fn response(&self, dialect: Dialect, request_id: Option<&str>) -> Response {
        let mut r = json_response(self.status(), self.body(dialect));
        set_attempts(r.headers_mut(), 0);
        if let Some(id) = request_id {
            set_header(r.headers_mut(), &H_REQUEST_ID, id);
        }
        r
    }
}

/// What a caught panic said, for the log line.
pub(super) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Each variant: status, code, both dialects' error types, and the words that tell the
    /// client what to fix.
    #[test]
    fn every_variant_renders_its_status_code_and_a_fix_in_both_dialects() {
        let rows: Vec<(GatewayError, u16, &str, &str, &str, &str)> = vec![
            (
                GatewayError::MissingGatewayKey,
                401,
                "invalid_gateway_key",
                "authentication_error",
                "authentication_error",
                "`Authorization: Bearer KEY`",
            ),
            (
                GatewayError::InvalidGatewayKey,
                401,
                "invalid_gateway_key",
                "authentication_error",
                "authentication_error",
                "auth.keys_env",
            ),
            (
                GatewayError::UnsupportedMediaType {
                    content_type: "text/plain".into(),
                },
                415,
                "unsupported_content_type",
                "invalid_request_error",
                "invalid_request_error",
                "`Content-Type: application/json`",
            ),
            (
                GatewayError::PayloadTooLarge { limit: 1024 },
                413,
                "request_too_large",
                "invalid_request_error",
                "request_too_large",
                "limit of 1024 bytes (limits.max_body_bytes)",
            ),
            (
                GatewayError::BodyReadTimeout {
                    after: Duration::from_secs(3),
                },
                400,
                "body_read_timeout",
                "invalid_request_error",
                "invalid_request_error",
                "within 3s (limits.body_read_timeout)",
            ),
            (
                GatewayError::BodyRead("connection reset".into()),
                400,
                "body_read_error",
                "invalid_request_error",
                "invalid_request_error",
                "connection reset",
            ),
            (
                GatewayError::InvalidBody(BodyError::MissingModel),
                400,
                "missing_model",
                "invalid_request_error",
                "invalid_request_error",
                "name one of the gateway's routes",
            ),
            (
                GatewayError::InvalidBody(BodyError::StreamNotBool),
                400,
                "invalid_stream",
                "invalid_request_error",
                "invalid_request_error",
                "must be a boolean",
            ),
            (
                GatewayError::UnknownRoute {
                    model: "gpt-5".into(),
                    available: vec!["claude".into(), "gpt".into()],
                },
                404,
                "model_not_found",
                "invalid_request_error",
                "not_found_error",
                "model \"gpt-5\" is not a route of this gateway; available: claude, gpt",
            ),
            (
                GatewayError::UnknownEndpoint {
                    method: Method::GET,
                    path: "/v2/chat".into(),
                },
                404,
                "unknown_endpoint",
                "invalid_request_error",
                "not_found_error",
                "GET /v2/chat; Switchyard serves POST /v1/chat/completions, POST /v1/messages, POST /v1/responses",
            ),
            (
                GatewayError::OperationNotServed {
                    route: "gpt".into(),
                    operation: "count_tokens",
                    api: "anthropic_messages",
                },
                400,
                "operation_not_served",
                "invalid_request_error",
                "invalid_request_error",
                "route \"gpt\" has no anthropic_messages backend, and only anthropic_messages backends serve count_tokens",
            ),
            (
                GatewayError::MethodNotAllowed {
                    method: Method::PUT,
                    path: "/v1/messages".into(),
                },
                405,
                "method_not_allowed",
                "invalid_request_error",
                "invalid_request_error",
                "PUT is not allowed on /v1/messages; use POST",
            ),
            (
                GatewayError::Internal,
                500,
                "internal_error",
                "server_error",
                "api_error",
                "a bug; it has been logged",
            ),
            (
                GatewayError::RelayInternal,
                500,
                "internal_error",
                "server_error",
                "api_error",
                "relaying this stream (a bug",
            ),
        ];
        for (error, status, code, openai_type, anthropic_type, fix) in rows {
            let message = error.to_string();
            assert!(message.contains(fix), "{error:?}: {message}");
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");

            let openai: Value = serde_json::from_slice(&error.body(Dialect::OpenAi)).unwrap();
            assert_eq!(
                openai,
                serde_json::json!({"error": {"message": message, "type": openai_type, "param": null, "code": code}}),
            );
            let anthropic: Value = serde_json::from_slice(&error.body(Dialect::Anthropic)).unwrap();
            assert_eq!(
                anthropic,
                serde_json::json!({"type": "error", "error": {"type": anthropic_type, "message": message}}),
            );

            let response = error.response(Dialect::Anthropic, Some("req_1"));
            assert_eq!(response.status().as_u16(), status, "{error:?}");
            assert_eq!(response.headers()["x-switchyard-attempts"], "0");
            assert_eq!(response.headers()["x-request-id"], "req_1");
            assert_eq!(response.headers()["content-type"], "application/json");
        }
    }

    #[test]
    fn stream_events_carry_the_same_error_in_each_dialects_framing() {
        let e = GatewayError::RelayInternal;
        let openai = e.stream_event(Dialect::OpenAi);
        let data = openai
            .strip_prefix(b"data: ")
            .unwrap()
            .strip_suffix(b"\n\n")
            .unwrap();
        assert_eq!(data, &e.body(Dialect::OpenAi)[..]);
        let anthropic = e.stream_event(Dialect::Anthropic);
        let data = anthropic
            .strip_prefix(b"event: error\ndata: ")
            .unwrap()
            .strip_suffix(b"\n\n")
            .unwrap();
        assert_eq!(data, &e.body(Dialect::Anthropic)[..]);
    }
}
