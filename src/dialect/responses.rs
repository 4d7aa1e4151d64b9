//! OpenAI Responses wire shapes the gateway writes itself. Error bodies, the exhaustion report
//! and the models list are chat completions' (`{"error":{…}}`, the same API family); streams
//! differ: an error is an `event: error` (`{type, code, message, param, sequence_number}`,
//! OpenAI's `ResponseErrorEvent`), and a stream that fails after content also gets the
//! `event: response.failed` that Responses clients (Codex CLI, the SDKs' stream helpers) wait
//! for, carrying the gateway's report as the response's `error`.
//!
//! The gateway writes its closing events with `sequence_number: 0`; on a relayed stream,
//! [`ClosingNumbers`] renumbers them to follow the last event the client received.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ErrorKind;
use crate::body::FieldSpans;

/// The longest response id the gateway reads or remembers; longer ones are ignored.
pub const MAX_RESPONSE_ID_LEN: usize = 256;

/// The id of the `response.failed` the gateway writes (the upstream's id is not parsed).
const FAILED_RESPONSE_ID: &str = "resp_switchyard_failed";

fn code_of(kind: ErrorKind, code: &str) -> String {
    if code.is_empty() {
        match kind {
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::Overloaded => "server_is_overloaded".into(),
            _ => "server_error".into(),
        }
    } else {
        code.to_string()
    }
}

fn event(name: &str, v: &serde_json::Value) -> String {
    format!("event: {name}\ndata: {v}\n\n")
}

/// `event: error` then `event: response.failed`, both carrying `code` and `message`;
/// `extra` (the failures report) rides along in the error event.
fn failure(code: &str, message: &str, extra: Option<serde_json::Value>) -> Bytes {
    let mut error = json!({
        "type": "error",
        "code": code,
        "message": message,
        "param": null,
        "sequence_number": 0,
    });
    if let Some(failures) = extra {
        error["failures"] = failures;
    }
    let failed = json!({
        "type": "response.failed",
        "sequence_number": 0,
        "response": {
            "id": FAILED_RESPONSE_ID,
            "object": "response",
            "status": "failed",
            "error": {"code": code, "message": message},
            "incomplete_details": null,
            "output": [],
        },
    });
    Bytes::from(event("error", &error) + &event("response.failed", &failed))
}

pub fn stream_error_event(kind: ErrorKind, code: &str, message: &str) -> Bytes {
    failure(&code_of(kind, code), message, None)
}

/// The report as stream events, for a chain exhausted after early headers went out.
pub fn exhausted_event(summary: &str, failures: &impl Serialize) -> Bytes {
    failure(
        "fallback_exhausted",
        summary,
        Some(serde_json::to_value(failures).unwrap_or_default()),
    )
}

/// The events that end a stream cut after commit: `reason` is the code.
pub fn cut_stream_event(reason: &str, summary: &str, failures: &impl Serialize) -> Bytes {
    failure(
        reason,
        summary,
        Some(serde_json::to_value(failures).unwrap_or_default()),
    )
}

/// Renumbers the gateway's own closing events (`error`, `response.failed`) on a Responses
/// stream so they follow the last `sequence_number` the client received. Fed every chunk in
/// order; costs one backwards search per chunk.
#[derive(Debug, Default)]
pub struct ClosingNumbers {
    next: u64,
}

const SEQUENCE_KEY: &[u8] = b"\"sequence_number\":";

impl ClosingNumbers {
    pub fn pass(&mut self, chunk: Bytes) -> Bytes {
        if memchr::memmem::find(&chunk, FAILED_RESPONSE_ID.as_bytes()).is_some() {
            let zero = b"\"sequence_number\":0";
            let mut out = Vec::with_capacity(chunk.len() + 16);
            let mut rest = &chunk[..];
            while let Some(i) = memchr::memmem::find(rest, zero) {
                out.extend_from_slice(&rest[..i]);
                out.extend_from_slice(SEQUENCE_KEY);
                out.extend_from_slice(self.next.to_string().as_bytes());
                self.next += 1;
                rest = &rest[i + zero.len()..];
            }
            out.extend_from_slice(rest);
            return Bytes::from(out);
        }
        if let Some(i) = memchr::memmem::rfind(&chunk, SEQUENCE_KEY) {
            let digits: &[u8] = &chunk[i + SEQUENCE_KEY.len()..];
            let digits = digits.trim_ascii_start();
            let end = digits
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(digits.len());
            // Capped like every number from outside: a bogus value cannot overflow.
            if let Some(n) = std::str::from_utf8(&digits[..end.min(18)])
                .ok()
                .and_then(|d| d.parse::<u64>().ok())
            {
                self.next = n + 1;
            }
        }
        chunk
    }
}

/// The stored response a request continues (`previous_response_id`), if it names one.
pub fn previous_response_id(body: &[u8], spans: &FieldSpans) -> Option<Box<str>> {
    let id: Cow<'_, str> =
        serde_json::from_slice(&body[spans.previous_response_id.clone()?]).ok()?;
    let id = id.trim();
    (!id.is_empty() && id.len() <= MAX_RESPONSE_ID_LEN).then(|| id.into())
}

/// Whether the provider stores the answer: `store` defaults to true in the Responses API.
pub fn stores(body: &[u8], spans: &FieldSpans) -> bool {
    spans
        .store
        .clone()
        .is_none_or(|r| body[r].trim_ascii() != b"false")
}

/// The `id` of a Response object (a non-stream answer).
pub fn response_id_of_body(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
    }
    serde_json::from_slice::<Response<'_>>(body)
        .ok()
        .map(|r| r.id.into_owned())
}

/// The response id in a stream's first bytes: `response.created` carries the Response.
pub fn response_id_of_stream(held: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Inner<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
    }
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        response: Inner<'a>,
    }
    held.split(|b| *b == b'\n')
        .filter_map(|line| line.strip_prefix(b"data:"))
        .find_map(|data| serde_json::from_slice::<Event<'_>>(data.trim_ascii()).ok())
        .map(|e| e.response.id.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_ids_are_read_from_an_answer_and_from_a_streams_first_event() {
        assert_eq!(
            response_id_of_body(br#"{"id":"resp_1","object":"response","output":[]}"#).as_deref(),
            Some("resp_1")
        );
        let held = b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_2\",\"status\":\"in_progress\"}}\n\nevent: response.in_progress\n";
        assert_eq!(response_id_of_stream(held).as_deref(), Some("resp_2"));
        assert_eq!(response_id_of_stream(b"event: x\ndata: {}\n\n"), None);
        let body = br#"{"model":"m","previous_response_id":"resp_9","store":false,"input":"hi"}"#;
        let spans = crate::body::scan(body).unwrap().spans;
        assert_eq!(
            previous_response_id(body, &spans).as_deref(),
            Some("resp_9")
        );
        assert!(!stores(body, &spans));
        let body = br#"{"model":"m","input":"hi"}"#;
        let spans = crate::body::scan(body).unwrap().spans;
        assert_eq!(previous_response_id(body, &spans), None);
        assert!(stores(body, &spans), "store defaults to true");
    }

    #[test]
    fn closing_events_follow_the_last_sequence_number_the_client_saw() {
        let mut n = ClosingNumbers::default();
        let relayed = Bytes::from_static(b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":7,\"delta\":\"Hi\"}\n\n");
        assert_eq!(
            n.pass(relayed.clone()),
            relayed,
            "upstream events pass unchanged"
        );
        let closing =
            String::from_utf8(n.pass(cut_stream_event("timeout", "s", &[0u8; 0])).to_vec())
                .unwrap();
        assert!(
            closing.contains("\"sequence_number\":8,\"type\":\"error\""),
            "{closing}"
        );
        assert!(
            closing.contains("\"sequence_number\":9,\"type\":\"response.failed\""),
            "{closing}"
        );
        let mut fresh = ClosingNumbers::default();
        let alone = String::from_utf8(
            fresh
                .pass(cut_stream_event("timeout", "s", &[0u8; 0]))
                .to_vec(),
        )
        .unwrap();
        assert!(alone.contains("\"sequence_number\":0,"), "{alone}");
        assert!(alone.contains("\"sequence_number\":1,"), "{alone}");
    }

    #[test]
    fn a_failed_stream_ends_with_an_error_event_then_response_failed() {
        let b = cut_stream_event("timeout", "s", &[json!({"backend": "a"})]);
        let text = String::from_utf8(b.to_vec()).unwrap();
        assert_eq!(
            text,
            "event: error\ndata: {\"code\":\"timeout\",\"failures\":[{\"backend\":\"a\"}],\"message\":\"s\",\"param\":null,\"sequence_number\":0,\"type\":\"error\"}\n\n\
             event: response.failed\ndata: {\"response\":{\"error\":{\"code\":\"timeout\",\"message\":\"s\"},\"id\":\"resp_switchyard_failed\",\"incomplete_details\":null,\"object\":\"response\",\"output\":[],\"status\":\"failed\"},\"sequence_number\":0,\"type\":\"response.failed\"}\n\n"
        );
        let e = stream_error_event(ErrorKind::Overloaded, "", "busy");
        assert!(String::from_utf8(e.to_vec())
            .unwrap()
            .contains("\"code\":\"server_is_overloaded\""));
    }
}
