//! Classification of every failed attempt into a [`FailureReason`], in one place.
//!
//! Inputs are whatever the upstream gave us: a status with headers and body, a transport error,
//! a timeout of ours, a 2xx body that is an error or not an answer, an answer of the wrong kind
//! (JSON to a stream request), or an event inside a 2xx stream ([`events`]). Output is the
//! reason, a short human detail and any Retry-After. What to *do* about a reason is
//! `failover::policy`'s job.

pub mod events;
pub mod rules;

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde_json::Value;

pub use crate::failure::{Blame, Classified, FailureReason, TimeoutKind};
use crate::provider::Provider;
use crate::scrub::truncate_chars;

const DETAIL_MAX_CHARS: usize = 300;

/// Classifies an upstream error response (status outside 2xx, or a 2xx body that is an error)
/// with the generic rules only (the backend's provider unknown).
pub fn classify_response(status: u16, headers: &HeaderMap, body: &[u8]) -> Classified {
    classify_response_from(None, status, headers, body)
}

/// Classifies an upstream error response of a backend of `provider`: that provider's error
/// rules ([`rules`]) apply besides the generic ones.
pub fn classify_response_from(
    provider: Option<Provider>,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> Classified {
    let err = ErrorFields::parse(body);
    let reason = reason_for(provider, Some(status), &err);
    Classified {
        reason,
        detail: err.detail(status),
        retry_after: retry_after_for(reason, headers, &err, SystemTime::now()),
    }
}

/// Classifies the JSON of an error event that arrived inside a 200 stream (Anthropic
/// `event: error`, an OpenAI chunk with an `error` object).
pub fn classify_stream_error(data: &[u8]) -> Classified {
    let err = ErrorFields::parse(data);
    let reason = reason_for(None, None, &err);
    Classified {
        reason,
        detail: err.detail(0),
        retry_after: err.retry_delay,
    }
}

/// Classifies a transport-level failure of the upstream request or its body.
pub fn classify_transport(err: &(dyn std::error::Error + 'static)) -> Classified {
    // Refused, reset, DNS, TLS and a body cut mid-way are all the connection's fault; the
    // gateway's own clocks (connect, TTFT, stall, deadline) are classified where they fire.
    Classified {
        reason: FailureReason::Connection,
        detail: transport_detail(err),
        retry_after: None,
    }
}

pub fn timeout(kind: TimeoutKind, after: Duration) -> Classified {
    Classified {
        reason: FailureReason::Timeout,
        detail: format!("{} ({:?})", kind.describe(), after),
        retry_after: None,
    }
}

pub fn invalid_response(detail: impl Into<String>) -> Classified {
    Classified {
        reason: FailureReason::InvalidResponse,
        detail: detail.into(),
        retry_after: None,
    }
}

/// The error and its chain of causes ("connect error: tcp connect error: Connection refused").
/// No URL is in it: the client reports neither the URL nor the request.
fn transport_detail(err: &(dyn std::error::Error + 'static)) -> String {
    use std::error::Error;
    let mut detail = err.to_string();
    let mut cur: Option<&dyn Error> = err.source();
    while let Some(e) = cur {
        let text = e.to_string();
        // hyper-util's own layer says only "client error (Connect)": its cause says more.
        if !text.starts_with("client error") {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        cur = e.source();
    }
    truncate_chars(&detail, DETAIL_MAX_CHARS)
}

/// The fields providers put in their error bodies, whichever dialect.
#[derive(Debug, Default)]
struct ErrorFields {
    /// OpenAI `error.type` or Anthropic `error.type`.
    kind: Option<String>,
    /// OpenAI `error.code` (a string or a number in some compatible servers).
    code: Option<String>,
    message: Option<String>,
    /// The raw body when it is not JSON, for the detail.
    text: Option<String>,
    /// Google's `error.status` (`RESOURCE_EXHAUSTED`).
    google_status: Option<String>,
    /// Structured details: Google `details[].reason` and quota ids, Azure `innererror.code`.
    details: Vec<String>,
    /// OpenRouter's `metadata.raw`: what the provider behind it answered.
    upstream_raw: Option<String>,
    /// OpenRouter's `metadata.provider_name`.
    upstream_name: Option<String>,
    /// Google's `RetryInfo.retryDelay` ("47s"), capped.
    retry_delay: Option<Duration>,
}

impl ErrorFields {
    fn parse(body: &[u8]) -> ErrorFields {
        let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
            let text = String::from_utf8_lossy(body).trim().to_string();
            return ErrorFields {
                text: (!text.is_empty()).then_some(text),
                ..Default::default()
            };
        };
        // Gemini's OpenAI-compatible endpoint wraps its error in a one-element array.
        if let Value::Array(items) = &mut v {
            if items.len() == 1 {
                v = items.pop().unwrap_or(Value::Null);
            }
        }
        // Both dialects nest under "error"; some servers put an error string there directly.
        // A Responses `response.failed` event carries it as the response's `error`.
        match v.get("error").or_else(|| v.pointer("/response/error")) {
            Some(Value::Object(e)) => {
                let mut fields = ErrorFields {
                    kind: as_string(e.get("type")),
                    code: as_string(e.get("code")),
                    message: as_string(e.get("message")),
                    google_status: e.get("status").and_then(Value::as_str).map(str::to_string),
                    ..Default::default()
                };
                fields.read_details(e);
                fields
            }
            Some(Value::String(s)) => ErrorFields {
                message: Some(s.clone()),
                ..Default::default()
            },
            _ => ErrorFields {
                kind: as_string(v.get("type")),
                code: as_string(v.get("code")),
                message: as_string(v.get("message")).or_else(|| as_string(v.get("detail"))),
                ..Default::default()
            },
        }
    }

    /// Google `details`, Azure `innererror`, OpenRouter `metadata`.
    fn read_details(&mut self, e: &serde_json::Map<String, Value>) {
        for d in e
            .get("details")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = d.get("reason").and_then(Value::as_str) {
                self.details.push(r.to_string());
            }
            for violation in d
                .get("violations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(id) = violation.get("quotaId").and_then(Value::as_str) {
                    self.details.push(id.to_string());
                }
            }
            if let Some(delay) = d.get("retryDelay").and_then(Value::as_str) {
                self.retry_delay = go_duration(delay);
            }
        }
        if let Some(code) = e
            .get("innererror")
            .and_then(|i| i.get("code"))
            .and_then(Value::as_str)
        {
            self.details.push(code.to_string());
        }
        if let Some(meta) = e.get("metadata") {
            self.upstream_raw = match meta.get("raw") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(v @ Value::Object(_)) => Some(v.to_string()),
                _ => None,
            };
            self.upstream_name = as_string(meta.get("provider_name"));
        }
    }

    fn detail(&self, status: u16) -> String {
        let base = match (&self.message, &self.text) {
            (Some(m), _) => m.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) if status > 0 => format!("HTTP {status} with no error message"),
            (None, None) => "error event with no message".to_string(),
        };
        // OpenRouter's own message is often just "Provider returned error": the provider's
        // answer says what happened.
        let base = match (&self.upstream_name, &self.upstream_raw) {
            (Some(name), Some(raw)) => format!("{base} ({name}): {raw}"),
            (None, Some(raw)) => format!("{base}: {raw}"),
            (Some(name), None) => format!("{base} ({name})"),
            (None, None) => base,
        };
        truncate_chars(&base, DETAIL_MAX_CHARS)
    }

    fn has(&self, needle: &str) -> bool {
        [&self.kind, &self.code]
            .into_iter()
            .flatten()
            .any(|s| s.eq_ignore_ascii_case(needle))
    }

    /// The message, the raw text and the upstream's raw answer, lowercased.
    fn lowered_text(&self) -> String {
        let mut text = self
            .message
            .as_deref()
            .or(self.text.as_deref())
            .unwrap_or("")
            .to_ascii_lowercase();
        if let Some(raw) = &self.upstream_raw {
            text.push('\n');
            text.push_str(&raw.to_ascii_lowercase());
        }
        text
    }

    fn says(&self, phrases: &[&str]) -> bool {
        let msg = self.lowered_text();
        phrases.iter().any(|p| msg.contains(p))
    }

    /// A numeric `error.code` that is an HTTP status (Google, OpenRouter, Azure put one there).
    fn status_code(&self) -> Option<u16> {
        let code: u16 = self.code.as_deref()?.parse().ok()?;
        (100..=599).contains(&code).then_some(code)
    }
}

fn as_string(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// The status a provider would have used for an error type seen without one (stream errors).
fn implied_status(err: &ErrorFields) -> Option<u16> {
    // OpenRouter reports a provider's failure inside a 200 with the status as `error.code`.
    if let Some(code) = err.status_code() {
        return Some(code);
    }
    // A Responses `error` event's type is just "error": its code says what it was.
    [err.kind.as_deref(), err.code.as_deref()]
        .into_iter()
        .flatten()
        .find_map(status_of_type)
}

fn status_of_type(t: &str) -> Option<u16> {
    Some(match t {
        "overloaded_error" | "overloaded" => 529,
        // Mistral types its rate limits `rate_limited`.
        "rate_limit_error" | "rate_limit_exceeded" | "rate_limited" | "requests" | "tokens" => 429,
        "insufficient_quota" | "billing_error" => 402,
        "authentication_error" | "invalid_api_key" => 401,
        "permission_error" => 403,
        "not_found_error" | "model_not_found" => 404,
        "request_too_large" => 413,
        "timeout_error" => 504,
        "invalid_request_error"
        | "invalid_prompt"
        | "previous_response_not_found"
        | "context_length_exceeded" => 400,
        // Responses `response.failed` codes for a bad image input: the request's problem.
        t if t.starts_with("invalid_image") || t.starts_with("image_") => 400,
        "vector_store_timeout" => 504,
        "api_error" | "server_error" | "internal_error" => 500,
        _ => return None,
    })
}

const CONTEXT_OVERFLOW_PHRASES: &[&str] = &[
    "prompt is too long",
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "exceed context limit",
    "exceeds the context",
    "too many tokens",
    "reduce the length of the messages",
    "input is too long",
    "exceeds the maximum number of tokens",
];

const QUOTA_PHRASES: &[&str] = &[
    "insufficient_quota",
    "exceeded your current quota",
    "credit balance is too low",
    "insufficient credits",
    "billing",
    "payment required",
];

const MODEL_NOT_FOUND_PHRASES: &[&str] = &[
    "model_not_found",
    "not a valid model",
    "model not found",
    "unknown model",
    "no such model",
    "does not exist or you do not have access",
];

const CONTENT_POLICY_PHRASES: &[&str] = &[
    "content policy",
    "content management policy",
    "content_filter",
    "safety system",
    "blocked by content filtering",
];

/// The index of the provider rule that decides this error, if one does.
fn rule_for(provider: Option<Provider>, status: Option<u16>, err: &ErrorFields) -> Option<usize> {
    let text = err.lowered_text();
    rules::first_match_at(&rules::Facts {
        provider,
        status,
        google_status: err.google_status.as_deref(),
        codes: [err.kind.as_deref(), err.code.as_deref()],
        details: &err.details,
        message: &text,
    })
}

fn reason_for(provider: Option<Provider>, status: Option<u16>, err: &ErrorFields) -> FailureReason {
    use FailureReason::*;
    let status = status.or_else(|| implied_status(err));
    // The provider's own dialect first: its meaning of a status beats the generic one.
    if let Some(i) = rule_for(provider, status, err) {
        return rules::RULES[i].reason;
    }
    let Some(status) = status else {
        // An error event with neither status nor known type: the upstream failed, somehow.
        return ServerError;
    };
    let client_error = (400..500).contains(&status);

    // Responses state another provider keeps (`previous_response_id`): the request must
    // change, and a 404 for it says nothing about the model.
    if client_error && err.has("previous_response_not_found") {
        return InvalidRequest;
    }

    // The client's own problems first: a fallback would fail the same way.
    if client_error
        && (err.has("context_length_exceeded")
            || err.has("string_above_max_length")
            || err.says(CONTEXT_OVERFLOW_PHRASES))
    {
        return ContextOverflow;
    }
    if status == 413 || err.has("request_too_large") {
        return PayloadTooLarge;
    }
    if status == 402 || err.has("insufficient_quota") || err.has("billing_error") {
        return Quota;
    }
    if (status == 429 || status == 400 || status == 403) && err.says(QUOTA_PHRASES) {
        return Quota;
    }
    if status == 429 || err.has("rate_limit_error") {
        return RateLimit;
    }
    if status == 401 || status == 403 {
        return Auth;
    }
    if status == 404
        || err.has("model_not_found")
        || (client_error && err.says(MODEL_NOT_FOUND_PHRASES))
    {
        return ModelNotFound;
    }
    if client_error
        && (err.has("content_policy_violation")
            || err.has("image_content_policy_violation")
            || err.has("content_filter")
            || err.says(CONTENT_POLICY_PHRASES))
    {
        return ContentPolicy;
    }
    if status == 529 || status == 503 || err.has("overloaded_error") {
        return Overloaded;
    }
    if status == 408 || status == 504 {
        return Timeout;
    }
    if status >= 500 {
        return ServerError;
    }
    if client_error {
        return InvalidRequest;
    }
    Unknown
}

/// The longest wait any upstream number is taken at face value for. Anything longer (or
/// unparseable as a finite number, like `1e400`) is read as this: far beyond any sane
/// `max_retry_after`, so the engine fails over instead of waiting, and no later arithmetic
/// on it can overflow.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(86_400);

/// Retry-After in every form providers and SDKs use: `retry-after-ms` (milliseconds, fractions
/// allowed), `retry-after` as seconds (fractions allowed) or as an HTTP-date. Every value is
/// capped at [`RETRY_AFTER_CEILING`]; negative values and garbage are ignored.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| capped_seconds(v, 1000.0))
    {
        return Some(ms);
    }
    let value = headers.get("retry-after")?;
    if let Some(secs) = capped_seconds(value, 1.0) {
        return Some(secs);
    }
    let at = httpdate::parse_http_date(value.to_str().ok()?.trim()).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(RETRY_AFTER_CEILING),
    )
}

/// The wait an error response asks for: its Retry-After headers; else Google's `RetryInfo` in
/// the body; else, for a rate limit, the provider's own reset headers, or the wait its message
/// names.
fn retry_after_for(
    reason: FailureReason,
    headers: &HeaderMap,
    err: &ErrorFields,
    now: SystemTime,
) -> Option<Duration> {
    if reason != FailureReason::RateLimit {
        return retry_after(headers, now).or(err.retry_delay);
    }
    retry_after(headers, now)
        .or(err.retry_delay)
        .or_else(|| rate_limit_reset(headers, now))
        .or_else(|| wait_in_message(err.message.as_deref()?))
}

/// "Please try again in 9m38.016s." — OpenAI and Groq say how long in the rate limit's
/// message, sometimes only there.
fn wait_in_message(message: &str) -> Option<Duration> {
    let at = message.find("try again in ")? + "try again in ".len();
    let word = message[at..].split_whitespace().next()?;
    go_duration(word.trim_end_matches(['.', ',']))
}

/// Rate-limit reset headers in the providers' own formats: OpenAI and Groq
/// `x-ratelimit-reset-{requests,tokens}` as Go durations (`2m59.56s`, `7.66s`, `20ms`),
/// Anthropic `anthropic-ratelimit-*-reset` as RFC 3339 instants. A limit whose `remaining` is 0
/// is the one that bit; when none says so, the longest reset is the safe guess. Capped at
/// [`RETRY_AFTER_CEILING`] like every other upstream number.
pub fn rate_limit_reset(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    const PAIRS: &[(&str, &str)] = &[
        (
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ),
        ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
        (
            "anthropic-ratelimit-requests-remaining",
            "anthropic-ratelimit-requests-reset",
        ),
        (
            "anthropic-ratelimit-tokens-remaining",
            "anthropic-ratelimit-tokens-reset",
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-input-tokens-reset",
        ),
        (
            "anthropic-ratelimit-output-tokens-remaining",
            "anthropic-ratelimit-output-tokens-reset",
        ),
    ];
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let mut exhausted = None::<Duration>;
    let mut any = None::<Duration>;
    for (remaining, reset) in PAIRS {
        let Some(value) = text(reset) else { continue };
        let Some(wait) = go_duration(value).or_else(|| {
            let at = humantime::parse_rfc3339_weak(value).ok()?;
            Some(at.duration_since(now).unwrap_or(Duration::ZERO))
        }) else {
            continue;
        };
        let wait = wait.min(RETRY_AFTER_CEILING);
        any = any.max(Some(wait));
        if text(remaining) == Some("0") {
            exhausted = exhausted.max(Some(wait));
        }
    }
    exhausted.or(any)
}

/// A Go-style duration as OpenAI, Groq and Google write them (`1h2m3.5s`, `59.56s`, `20ms`,
/// `47s`), capped at [`RETRY_AFTER_CEILING`]; `None` for anything else.
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut secs = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = [
            ("ms", 1e-3),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ns", 1e-9),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, per)| (per, u.len()))?;
        secs += number * unit;
        rest = &rest[len..];
    }
    if !secs.is_finite() || secs >= RETRY_AFTER_CEILING.as_secs_f64() {
        return Some(RETRY_AFTER_CEILING);
    }
    Some(Duration::from_secs_f64(secs))
}

/// A non-negative decimal number of `1/per_second` units as a duration, capped at
/// [`RETRY_AFTER_CEILING`]. Overflowing numbers (`1e22`, `1e400`, 30 digits) are the cap;
/// negative numbers, NaN and non-numbers are `None`.
fn capped_seconds(value: &http::HeaderValue, per_second: f64) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    // Rust's float parser accepts `inf`, `nan` and `infinity`: no provider means those.
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
        || text.is_empty()
    {
        return None;
    }
    let v: f64 = text.parse().ok()?;
    if v.is_nan() || v < 0.0 || (v == 0.0 && text.starts_with('-')) {
        return None;
    }
    let secs = v / per_second;
    if secs >= RETRY_AFTER_CEILING.as_secs_f64() {
        return Some(RETRY_AFTER_CEILING);
    }
    Some(Duration::from_secs_f64(secs))
}

/// A 2xx answer that could not be translated for the client: the upstream's fault when the
/// body is not a valid answer in its dialect, the gateway's when translating it failed inside
/// the gateway (then the backend is not ejected for it).
pub fn untranslatable_answer(e: &crate::dialect::translate::TranslateError) -> Classified {
    use crate::dialect::translate::TranslateError;
    let reason = match e {
        TranslateError::Bug(_) => FailureReason::Internal,
        _ => FailureReason::InvalidResponse,
    };
    Classified {
        reason,
        detail: e.to_string(),
        retry_after: None,
    }
}

/// Whether a response is an event stream (`text/event-stream`, any parameters).
pub fn is_event_stream(content_type: Option<&http::HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// A JSON answer to a streaming request: it would break the client's SSE parser.
pub fn json_answer_to_a_stream_request() -> Classified {
    invalid_response("expected an event stream, got a JSON body")
}

/// A 2xx JSON body is an answer, or a failure: empty, not a JSON object, or an `error` object
/// with no answer (some providers report errors with status 200).
pub fn answer_or_error(body: &[u8]) -> Result<(), Classified> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid_response("empty response body"));
    }
    // A Responses answer has `output` and `"error": null`; a failed one a non-null `error`.
    match crate::body::top_level_keys(body, &["error", "choices", "content"]) {
        None => Err(invalid_response("response body is not a JSON object")),
        Some(0b001) => Err(classify_stream_error(body)),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::FailureReason::*;
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn reason(status: u16, body: &str) -> FailureReason {
        classify_response(status, &HeaderMap::new(), body.as_bytes()).reason
    }

    /// A 2xx body is an answer unless it is an error object: a Responses answer carries
    /// `"error": null` and is an answer; a failed Response (`"error": {…}`, no output to speak
    /// of) is a failure.
    #[test]
    fn a_responses_answer_with_a_null_error_is_an_answer() {
        assert!(answer_or_error(
            br#"{"id":"resp_1","object":"response","status":"completed","error":null,"output":[]}"#
        )
        .is_ok());
        let failed = answer_or_error(
            br#"{"id":"resp_1","object":"response","status":"failed","error":{"code":"server_error","message":"boom"},"output":[]}"#,
        )
        .unwrap_err();
        assert_eq!(failed.reason, ServerError);
        assert_eq!(failed.detail, "boom");
        assert!(answer_or_error(br#"{"choices":[{"message":{"content":"hi"}}]}"#).is_ok());
        assert!(answer_or_error(br#"{"error":{"message":"x","type":"server_error"}}"#).is_err());
    }

    /// Real error bodies from the providers' API references, one row per reason.
    #[test]
    fn classifies_real_provider_error_bodies() {
        let table: &[(u16, &str, FailureReason)] = &[
            // OpenAI Responses: state another provider keeps is the request's problem, not a
            // missing model (whatever status carries it).
            (
                400,
                r#"{"error":{"message":"Previous response with id 'resp_abc' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}"#,
                InvalidRequest,
            ),
            (
                404,
                r#"{"error":{"message":"Previous response with id 'resp_abc' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}"#,
                InvalidRequest,
            ),
            // OpenAI
            (
                429,
                r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 500, Used 500, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
                RateLimit,
            ),
            (
                429,
                r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
                Quota,
            ),
            (
                401,
                r#"{"error":{"message":"Incorrect API key provided: sk-abc. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
                Auth,
            ),
            (
                404,
                r#"{"error":{"message":"The model `gpt-5-turbo` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
                ModelNotFound,
            ),
            (
                400,
                r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130532 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
                ContextOverflow,
            ),
            (
                400,
                r#"{"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}"#,
                ContentPolicy,
            ),
            (
                400,
                r#"{"error":{"message":"Missing required parameter: 'messages'.","type":"invalid_request_error","param":"messages","code":"missing_required_parameter"}}"#,
                InvalidRequest,
            ),
            (
                500,
                r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
                ServerError,
            ),
            (
                503,
                r#"{"error":{"message":"The server is overloaded or not ready yet.","type":"server_error","param":null,"code":null}}"#,
                Overloaded,
            ),
            // Anthropic
            (
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#,
                Overloaded,
            ),
            (
                429,
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
                RateLimit,
            ),
            (
                401,
                r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
                Auth,
            ),
            (
                403,
                r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}"#,
                Auth,
            ),
            (
                402,
                r#"{"type":"error","error":{"type":"billing_error","message":"Payment required"}}"#,
                Quota,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#,
                Quota,
            ),
            (
                404,
                r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-opus-9"}}"#,
                ModelNotFound,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215733 tokens > 200000 maximum"}}"#,
                ContextOverflow,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000, decrease input length or `max_tokens` and try again"}}"#,
                ContextOverflow,
            ),
            (
                413,
                r#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}"#,
                PayloadTooLarge,
            ),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#,
                InvalidRequest,
            ),
            (
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
                ServerError,
            ),
            (
                504,
                r#"{"type":"error","error":{"type":"timeout_error","message":"Request timed out"}}"#,
                Timeout,
            ),
            // OpenAI-compatible servers and proxies
            (
                400,
                r#"{"object":"error","message":"This model's maximum context length is 32768 tokens. However, you requested 40000 tokens.","type":"BadRequestError","param":null,"code":400}"#,
                ContextOverflow,
            ),
            (
                400,
                r#"{"error":{"message":"anthropic/claude-sonnet-5 is not a valid model ID","code":400}}"#,
                ModelNotFound,
            ),
            (502, "<html><body>Bad gateway</body></html>", ServerError),
            (418, "", InvalidRequest),
            (302, "", Unknown),
        ];
        for (status, body, want) in table {
            assert_eq!(reason(*status, body), *want, "status {status}: {body}");
        }
    }

    /// Every provider fixture (a real body with its source, in tests/it/fixtures/providers/)
    /// classifies to its expected reason and wait, and every provider rule is pinned by at
    /// least one of them.
    #[test]
    fn provider_fixtures_classify_as_expected_and_pin_every_rule() {
        use crate::provider::Provider;
        let root =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/providers");
        let mut files = Vec::new();
        for dir in std::fs::read_dir(&root).unwrap() {
            for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
                files.push(f.unwrap().path());
            }
        }
        files.sort();
        assert!(files.len() >= 25, "{} fixtures", files.len());
        let mut pinned = vec![false; rules::RULES.len()];
        let now = SystemTime::now();
        for path in &files {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            let fx: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            assert!(
                fx["_source"].as_str().unwrap().starts_with("https://"),
                "{name}: every fixture names its source"
            );
            let provider = match fx["backend_provider"].as_str().unwrap() {
                "" => None,
                p => Some(Provider::parse(p).unwrap_or_else(|| panic!("{name}: {p}"))),
            };
            let status = fx["status"].as_u64().unwrap() as u16;
            let body = match &fx["body"] {
                Value::String(raw) => raw.clone().into_bytes(),
                v => serde_json::to_vec(v).unwrap(),
            };
            let mut h = HeaderMap::new();
            for (k, v) in fx["headers"].as_object().into_iter().flatten() {
                let mut v = v.as_str().unwrap().to_string();
                // An instant relative to now, for reset headers written as RFC 3339 times.
                if let Some(secs) = v.strip_prefix("NOW+").and_then(|s| s.strip_suffix('S')) {
                    let at = now + Duration::from_secs(secs.parse().unwrap());
                    v = humantime::format_rfc3339(at).to_string();
                }
                h.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            let got = if status == 200 {
                answer_or_error(&body).expect_err(&name)
            } else {
                classify_response_from(provider, status, &h, &body)
            };
            let want = fx["expect"]["reason"].as_str().unwrap();
            assert_eq!(got.reason.as_str(), want, "{name}: {}", got.detail);
            let want_wait = fx["expect"]["retry_after_ms"].as_u64();
            match (got.retry_after, want_wait) {
                (None, None) => {}
                // A wait counted from an instant loses the time the test took to get here.
                (Some(d), Some(ms)) => assert!(
                    d <= Duration::from_millis(ms)
                        && d + Duration::from_secs(2) > Duration::from_millis(ms),
                    "{name}: waited {d:?}, wanted {ms} ms"
                ),
                (got, want) => panic!("{name}: retry_after {got:?}, wanted {want:?} ms"),
            }
            let err = ErrorFields::parse(&body);
            let status = (status != 200)
                .then_some(status)
                .or_else(|| implied_status(&err));
            if let Some(i) = rule_for(provider, status, &err) {
                pinned[i] = true;
            }
        }
        for (i, p) in pinned.iter().enumerate() {
            assert!(p, "rule {i} ({:?}) has no fixture", rules::RULES[i]);
        }
    }

    #[test]
    fn classifies_error_events_inside_200_streams() {
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(classify_stream_error(anthropic).reason, Overloaded);
        assert_eq!(classify_stream_error(anthropic).detail, "Overloaded");
        let openai =
            br#"{"error":{"message":"Rate limit","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(classify_stream_error(openai).reason, RateLimit);
        assert_eq!(
            classify_stream_error(b"{\"error\":{\"message\":\"boom\"}}").reason,
            ServerError
        );
    }

    /// OpenRouter reports a provider's failure mid-stream as a chunk whose `error.code` is the
    /// status; the detail names the provider and what it said.
    #[test]
    fn an_openrouter_error_chunk_reads_by_its_code_and_names_the_provider() {
        let chunk = br#"{"id":"gen-1","object":"chat.completion.chunk","error":{"code":429,"message":"Provider returned error","metadata":{"raw":"rate-limited upstream","provider_name":"BaseTen"}}}"#;
        let c = classify_stream_error(chunk);
        assert_eq!(c.reason, RateLimit);
        assert_eq!(
            c.detail,
            "Provider returned error (BaseTen): rate-limited upstream"
        );
        let chunk = br#"{"error":{"code":502,"message":"Provider returned error"}}"#;
        assert_eq!(classify_stream_error(chunk).reason, ServerError);
        // A code that is not an HTTP status says nothing about one (Mistral's `1300`); the
        // type still does.
        let chunk =
            br#"{"error":{"code":1300,"message":"Rate limit exceeded","type":"rate_limited"}}"#;
        assert_eq!(classify_stream_error(chunk).reason, RateLimit);
        let chunk = br#"{"error":{"code":1300,"message":"Something"}}"#;
        assert_eq!(classify_stream_error(chunk).reason, ServerError);
    }

    #[test]
    fn retry_after_in_every_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "1500")]), now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")]), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")]), now),
            Some(Duration::from_millis(500))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &date)]), now),
            Some(Duration::from_secs(120))
        );
        // ms wins over seconds, as in the official SDKs.
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "100"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(100))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")]), now), None);
    }

    /// Found by a hostile upstream: `retry-after-ms: 1e22` panicked the request task while
    /// converting to a duration. Every absurd number is the ceiling (fail over), never a panic.
    #[test]
    fn absurd_retry_after_values_are_capped_never_panic() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let cap = Some(RETRY_AFTER_CEILING);
        let table: &[(&str, &str, Option<Duration>)] = &[
            ("retry-after-ms", "1e22", cap),
            ("retry-after-ms", "1e400", cap),
            ("retry-after-ms", "18446744073709551616000", cap),
            ("retry-after", "999999", cap),
            ("retry-after", "99999999999999999999", cap),
            ("retry-after", "1e400", cap),
            ("retry-after", "1.7976931348623157e308", cap),
            ("retry-after", "inf", None),
            ("retry-after", "NaN", None),
            ("retry-after", "-0", None),
            ("retry-after", "-1e400", None),
            ("retry-after-ms", "-5", None),
            ("retry-after", "", None),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT", cap),
            (
                "retry-after",
                "Thu, 01 Jan 1970 00:00:00 GMT",
                Some(Duration::ZERO),
            ),
            ("retry-after", "0", Some(Duration::ZERO)),
            ("retry-after-ms", "0.5", Some(Duration::from_micros(500))),
        ];
        for (name, value, want) in table {
            assert_eq!(
                retry_after(&headers(&[(*name, *value)]), now),
                *want,
                "{name}: {value}"
            );
        }
    }

    /// Providers' own duration formats, capped like every upstream number.
    #[test]
    fn provider_wait_formats_parse_and_are_capped() {
        let ms = |v: u64| Some(Duration::from_millis(v));
        assert_eq!(go_duration("2m59.56s"), ms(179_560));
        assert_eq!(go_duration("7.66s"), ms(7_660));
        assert_eq!(go_duration("20ms"), ms(20));
        assert_eq!(go_duration("1h0m0s"), ms(3_600_000));
        assert_eq!(go_duration("6m0s"), ms(360_000));
        assert_eq!(go_duration("99999999h"), Some(RETRY_AFTER_CEILING));
        assert_eq!(go_duration("1e400s"), None);
        for bad in ["", "5", "s", "5x", "-5s", "5 s", "NaNs"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
        assert_eq!(
            wait_in_message("Please try again in 3.89s. Visit https://x"),
            ms(3_890)
        );
        assert_eq!(wait_in_message("Please try again later."), None);
        // A reset far in the future is the ceiling, one in the past is no wait.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = headers(&[("anthropic-ratelimit-tokens-reset", "9999-12-31T23:59:59Z")]);
        assert_eq!(rate_limit_reset(&h, now), Some(RETRY_AFTER_CEILING));
        let h = headers(&[("anthropic-ratelimit-tokens-reset", "2001-01-01T00:00:00Z")]);
        assert_eq!(rate_limit_reset(&h, now), Some(Duration::ZERO));
        // With no limit at zero, the longest reset is the guess.
        let h = headers(&[
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        assert_eq!(rate_limit_reset(&h, now), ms(360_000));
        // Retry-After wins over every provider format; other reasons ignore reset headers.
        let h = headers(&[("retry-after", "2"), ("x-ratelimit-reset-tokens", "6m0s")]);
        let c = classify_response(429, &h, b"{}");
        assert_eq!(c.retry_after, ms(2_000));
        let h = headers(&[("x-ratelimit-reset-tokens", "6m0s")]);
        assert_eq!(classify_response(500, &h, b"{}").retry_after, None);
    }

    #[test]
    fn detail_is_the_message_cut_on_a_char_boundary() {
        let long = "é".repeat(400);
        let body = format!(r#"{{"error":{{"message":"{long}"}}}}"#);
        let c = classify_response(500, &HeaderMap::new(), body.as_bytes());
        assert_eq!(c.detail.chars().count(), 301);
        assert!(c.detail.ends_with('…'));
    }

    #[test]
    fn client_errors_are_blamed_on_the_client() {
        for r in FailureReason::ALL {
            let client = matches!(
                r,
                ContextOverflow | PayloadTooLarge | ContentPolicy | InvalidRequest
            );
            assert_eq!(r.blame() == Blame::Client, client, "{r}");
        }
    }

    mod no_panic {
        //! Nothing an upstream sends can panic a parser: arbitrary header values, status codes
        //! and bodies. `cargo test` runs a few thousand cases; a longer run:
        //! `PROPTEST_CASES=1000000 cargo test --lib classify::tests::no_panic`.
        use super::*;
        use proptest::prelude::*;

        fn number_like() -> impl Strategy<Value = String> {
            prop_oneof![
                "[-+]?[0-9]{0,40}(\\.[0-9]{0,40})?([eE][-+]?[0-9]{0,5})?",
                any::<f64>().prop_map(|f| f.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                "(inf|-inf|NaN|infinity|1e400|-0|0x10| 1 |1,5)",
                "[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} [0-9]{1,6} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
                ".{0,40}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            #[test]
            fn retry_after_never_panics_and_never_exceeds_the_ceiling(
                ms in proptest::option::of(number_like()),
                secs in proptest::option::of(number_like()),
                now_secs in 0u64..=u64::from(u32::MAX) * 4,
            ) {
                let mut h = HeaderMap::new();
                if let Some(v) = ms.as_deref().and_then(|v| http::HeaderValue::from_str(v).ok()) {
                    h.insert("retry-after-ms", v);
                }
                if let Some(v) = secs.as_deref().and_then(|v| http::HeaderValue::from_str(v).ok()) {
                    h.insert("retry-after", v);
                }
                let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now_secs);
                if let Some(d) = retry_after(&h, now) {
                    prop_assert!(d <= RETRY_AFTER_CEILING);
                }
            }

            #[test]
            fn classifying_any_status_and_body_never_panics(
                status in any::<u16>(),
                body in proptest::collection::vec(any::<u8>(), 0..512),
                json_ish in "\\{\"(error|type|message|code)\":.{0,60}\\}",
            ) {
                let h = HeaderMap::new();
                for b in [&body[..], json_ish.as_bytes()] {
                    let c = classify_response(status, &h, b);
                    prop_assert!(c.detail.chars().count() <= DETAIL_MAX_CHARS + 1);
                    let _ = classify_stream_error(b);
                }
            }
        }
    }

    #[test]
    fn an_untranslatable_answer_is_the_upstreams_fault_unless_the_gateway_broke() {
        use crate::dialect::translate::TranslateError;
        let bad = untranslatable_answer(&TranslateError::InvalidResponse("no content".into()));
        assert_eq!(bad.reason, InvalidResponse);
        assert_eq!(bad.reason.blame(), Blame::Upstream);
        let ours = untranslatable_answer(&TranslateError::Bug("index out of bounds".into()));
        assert_eq!(ours.reason, Internal);
        assert_eq!(ours.reason.blame(), Blame::Gateway);
    }
}
