//! The response headers every server path sets, and the plain JSON response they start from.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

pub const HDR_BACKEND: &str = "x-switchyard-backend";
pub const HDR_ATTEMPTS: &str = "x-switchyard-attempts";
pub const HDR_REASON: &str = "x-switchyard-reason";
pub const HDR_REQUEST_ID: &str = "x-request-id";
pub const HDR_DROPPED_TOOLS: &str = "x-switchyard-dropped-tools";

// Built once: inserting by `&'static str` would validate the name on every response.
pub(super) static H_BACKEND: HeaderName = HeaderName::from_static(HDR_BACKEND);
static H_ATTEMPTS: HeaderName = HeaderName::from_static(HDR_ATTEMPTS);
pub(super) static H_REQUEST_ID: HeaderName = HeaderName::from_static(HDR_REQUEST_ID);
pub(super) static H_REASON: HeaderName = HeaderName::from_static(HDR_REASON);
pub(super) static H_DROPPED_TOOLS: HeaderName = HeaderName::from_static(HDR_DROPPED_TOOLS);

/// Sets `name` unless `value` cannot be a header value (then the header is left out).
pub(super) fn set_header(h: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name.clone(), v);
    }
}

pub(super) fn set_attempts(h: &mut HeaderMap, attempts: u32) {
    h.insert(H_ATTEMPTS.clone(), HeaderValue::from(attempts));
}

pub(super) fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
