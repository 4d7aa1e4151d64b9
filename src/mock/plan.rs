//! The scripted behaviours of the mock and the plan that sequences them.
//!
//! Owns the wire format of `POST /_mock/plan` (the serde types tests write) and the
//! queue that hands one behaviour to each API request. Field names are the contract
//! with the test suites, so every struct denies unknown fields: a typo in a test's
//! plan must be a loud 400, not a silently ignored option.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A script for the next API requests: `steps` are consumed one per request, in
/// order, across both dialects; afterwards `then` answers every request (`ok` when
/// absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    #[serde(default)]
    pub steps: Vec<Behavior>,
    #[serde(default)]
    pub then: Option<Behavior>,
}

impl Plan {
    pub fn new(steps: Vec<Behavior>, then: Option<Behavior>) -> Plan {
        Plan { steps, then }
    }

    /// A plan that answers every request with `behavior`.
    pub fn always(behavior: Behavior) -> Plan {
        Plan {
            steps: Vec::new(),
            then: Some(behavior),
        }
    }

    /// Semantic checks serde cannot express (status ranges, header syntax).
    pub fn check(&self) -> Result<(), String> {
        for (i, step) in self.steps.iter().enumerate() {
            step.check().map_err(|e| format!("steps[{i}]: {e}"))?;
        }
        if let Some(then) = &self.then {
            then.check().map_err(|e| format!("then: {e}"))?;
        }
        Ok(())
    }
}

/// A tool call the reply should make instead of (or besides) answering in text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub name: String,
    /// The call's arguments; must be a JSON object (Anthropic's `input`).
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn default_chunks() -> usize {
    4
}

fn default_heartbeat_ms() -> u64 {
    1000
}

fn default_true() -> bool {
    true
}

fn default_trickle_interval_ms() -> u64 {
    50
}

fn default_piece_bytes() -> usize {
    3
}

fn default_error_type() -> String {
    "overloaded_error".to_owned()
}

/// What the reply says. Shared by every behaviour that produces a (possibly
/// interrupted) successful reply, so a fault can be injected into any content shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Milliseconds to wait before the response headers.
    #[serde(default)]
    pub delay_ms: u64,
    /// Number of content deltas the text (and thinking, and tool arguments) is split into.
    #[serde(default = "default_chunks")]
    pub chunks: usize,
    /// Milliseconds between content deltas of a stream.
    #[serde(default)]
    pub chunk_interval_ms: u64,
    /// Overrides the reply text (default `Hello from NAME`).
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub tool_call: Option<ToolCall>,
    /// Reasoning to emit before the answer (Anthropic `thinking`, OpenAI `reasoning_content`,
    /// a Responses `reasoning` item's summary).
    #[serde(default)]
    pub thinking: Option<String>,
    /// Extra response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl Default for Reply {
    fn default() -> Self {
        Reply {
            delay_ms: 0,
            chunks: default_chunks(),
            chunk_interval_ms: 0,
            text: None,
            tool_call: None,
            thinking: None,
            headers: BTreeMap::new(),
        }
    }
}

/// One scripted answer. Tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Behavior {
    /// A normal successful reply.
    Ok(Reply),
    /// An HTTP error status with the dialect's real error body (or `body` verbatim).
    Status(StatusFault),
    /// A 200 stream that turns into an in-stream error event after `after_chunks`
    /// content deltas (a plain status error for non-streaming requests).
    StreamError(StreamErrorFault),
    /// Headers and `after_chunks` deltas, then only heartbeats until the client leaves.
    Stall(StallFault),
    /// TCP RST after `after_chunks` deltas of a stream (before any byte otherwise).
    Reset(ResetFault),
    /// A 200 whose body is not valid JSON / whose SSE data lines are not JSON.
    Malformed(MalformedFault),
    /// A normal reply dribbled out a few bytes at a time.
    Trickle(TrickleFault),
    /// A 200 with an empty body.
    Empty(EmptyFault),
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior::Ok(Reply::default())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusFault {
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent verbatim instead of the dialect's body: a JSON string is sent as raw
    /// text, any other JSON value is serialized.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
    #[serde(default)]
    pub delay_ms: u64,
    /// Answer in this provider's error dialect (`gemini`, `groq`, …) instead of the mock's
    /// default (`switchyard mock --provider`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Which of the provider's errors (`quota`, `tpm`, …); it sets the status too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamErrorFault {
    #[serde(default)]
    pub after_chunks: usize,
    /// Anthropic error type (`overloaded_error`, `api_error`, …) or an OpenAI one
    /// (`server_error`, `insufficient_quota`, …); also picks the status for non-streaming
    /// requests and the `code` of a Responses `response.failed`.
    #[serde(default = "default_error_type")]
    pub error_type: String,
    /// Overrides the error message.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub delay_ms: u64,
    /// Content deltas of the reply; default: enough to reach `after_chunks` (at least 4).
    #[serde(default)]
    pub chunks: Option<usize>,
    #[serde(default)]
    pub chunk_interval_ms: u64,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StallFault {
    #[serde(default)]
    pub after_chunks: usize,
    /// Interval of keep-alive events once stalled; 0 sends none.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// false: hold the request without sending a single response byte.
    #[serde(default = "default_true")]
    pub headers: bool,
    #[serde(default)]
    pub delay_ms: u64,
    /// Content deltas of the reply; default: enough to reach `after_chunks` (at least 4).
    #[serde(default)]
    pub chunks: Option<usize>,
    #[serde(default)]
    pub chunk_interval_ms: u64,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetFault {
    #[serde(default)]
    pub after_chunks: usize,
    #[serde(default)]
    pub delay_ms: u64,
    /// Content deltas of the reply; default: enough to reach `after_chunks` (at least 4).
    #[serde(default)]
    pub chunks: Option<usize>,
    #[serde(default)]
    pub chunk_interval_ms: u64,
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MalformedFault {
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrickleFault {
    /// Milliseconds between byte pieces.
    #[serde(default = "default_trickle_interval_ms")]
    pub chunk_interval_ms: u64,
    /// Bytes per piece (small on purpose: pieces split SSE lines and UTF-8 characters).
    #[serde(default = "default_piece_bytes")]
    pub piece_bytes: usize,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default = "default_chunks")]
    pub chunks: usize,
    /// Overrides the reply text (default `Hello from NAME — ok`, with a multi-byte char).
    #[serde(default)]
    pub text: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyFault {
    #[serde(default)]
    pub delay_ms: u64,
}

impl Behavior {
    /// `{"kind":"ok"}` with every default.
    pub fn ok() -> Behavior {
        Behavior::default()
    }

    /// `{"kind":"status","status":STATUS}`: the dialect's real error body.
    pub fn status(status: u16) -> Behavior {
        Behavior::Status(StatusFault {
            status,
            headers: BTreeMap::new(),
            body: None,
            delay_ms: 0,
            provider: None,
            error: None,
        })
    }

    /// Checks what serde cannot: real status codes, sendable headers, sane sizes.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Behavior::Ok(r) => {
                check_headers(&r.headers)?;
                check_chunks(r.chunks)?;
                if let Some(t) = &r.tool_call {
                    if !t.arguments.is_object() {
                        return Err("tool_call.arguments must be a JSON object".to_owned());
                    }
                }
                Ok(())
            }
            Behavior::Status(s) => {
                if !(200..=599).contains(&s.status) {
                    return Err(format!("status {} is not in 200..=599", s.status));
                }
                if let Some(name) = &s.provider {
                    let Some(p) = super::providers::MockProvider::parse(name) else {
                        return Err(format!(
                            "unknown provider {name:?}; one of: {}",
                            super::providers::MockProvider::NAMES.join(", ")
                        ));
                    };
                    if let Some(e) = s
                        .error
                        .as_deref()
                        .filter(|e| !super::providers::known_error(p, e))
                    {
                        return Err(format!("{name} has no error {e:?}"));
                    }
                }
                check_headers(&s.headers)
            }
            Behavior::StreamError(s) => check_chunks(s.chunks.unwrap_or(1)),
            Behavior::Stall(s) => check_chunks(s.chunks.unwrap_or(1)),
            Behavior::Reset(s) => check_chunks(s.chunks.unwrap_or(1)),
            Behavior::Trickle(t) => {
                check_chunks(t.chunks)?;
                if t.piece_bytes == 0 {
                    return Err("piece_bytes must be at least 1".to_owned());
                }
                Ok(())
            }
            Behavior::Malformed(_) | Behavior::Empty(_) => Ok(()),
        }
    }

    /// Milliseconds to wait before the first response byte.
    pub(crate) fn delay_ms(&self) -> u64 {
        match self {
            Behavior::Ok(r) => r.delay_ms,
            Behavior::Status(s) => s.delay_ms,
            Behavior::StreamError(s) => s.delay_ms,
            Behavior::Stall(s) => s.delay_ms,
            Behavior::Reset(s) => s.delay_ms,
            Behavior::Malformed(m) => m.delay_ms,
            Behavior::Trickle(t) => t.delay_ms,
            Behavior::Empty(e) => e.delay_ms,
        }
    }
}

/// Deltas of a faulty reply: as asked, or enough to reach the fault point.
pub(crate) fn fault_chunks(chunks: Option<usize>, after_chunks: usize) -> usize {
    chunks.unwrap_or_else(|| after_chunks.saturating_add(1).max(default_chunks()))
}

fn check_chunks(chunks: usize) -> Result<(), String> {
    if chunks == 0 {
        return Err("chunks must be at least 1".to_owned());
    }
    Ok(())
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in headers {
        http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        http::HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header {name:?}"))?;
    }
    Ok(())
}

/// The live queue behind a [`Plan`]. Behaviours are shared (`Arc`) so that handing
/// `then` to every request costs a refcount, not a deep clone.
#[derive(Debug, Default)]
pub(crate) struct PlanQueue {
    steps: VecDeque<Arc<Behavior>>,
    then: Option<Arc<Behavior>>,
}

impl PlanQueue {
    pub(crate) fn set(&mut self, plan: Plan) {
        self.steps = plan.steps.into_iter().map(Arc::new).collect();
        self.then = plan.then.map(Arc::new);
    }

    /// The behaviour for the next API request; `None` means the default `ok`.
    pub(crate) fn next(&mut self) -> Option<Arc<Behavior>> {
        self.steps.pop_front().or_else(|| self.then.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_kinds_with_defaults() {
        let plan: Plan = serde_json::from_str(
            r#"{"steps":[{"kind":"ok"},{"kind":"status","status":529},
                {"kind":"stream_error"},{"kind":"stall"},{"kind":"reset","after_chunks":2},
                {"kind":"malformed"},{"kind":"trickle"},{"kind":"empty"}],
                "then":{"kind":"ok","text":"hi","chunks":2}}"#,
        )
        .expect("valid plan");
        assert_eq!(plan.steps.len(), 8);
        assert_eq!(plan.steps[0], Behavior::Ok(Reply::default()));
        match &plan.steps[3] {
            Behavior::Stall(s) => {
                assert_eq!(s.heartbeat_ms, 1000);
                assert!(s.headers);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(plan.check().is_ok());
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        let err = serde_json::from_str::<Plan>(r#"{"steps":[{"kind":"ok","dleay_ms":5}]}"#)
            .expect_err("typo must fail");
        assert!(err.to_string().contains("dleay_ms"), "{err}");
        let err = serde_json::from_str::<Plan>(r#"{"steps":[{"kind":"explode"}]}"#)
            .expect_err("unknown kind must fail");
        assert!(err.to_string().contains("explode"), "{err}");
        assert!(serde_json::from_str::<Plan>(r#"{"step":[]}"#).is_err());
        let plan = Plan::always(Behavior::Status(StatusFault {
            status: 99,
            headers: BTreeMap::new(),
            body: None,
            delay_ms: 0,
            provider: None,
            error: None,
        }));
        assert!(plan.check().unwrap_err().contains("status 99"));
    }

    #[test]
    fn queue_consumes_steps_then_repeats_then() {
        let mut q = PlanQueue::default();
        assert!(q.next().is_none());
        q.set(Plan {
            steps: vec![Behavior::Empty(EmptyFault::default())],
            then: Some(Behavior::Malformed(MalformedFault::default())),
        });
        assert!(matches!(q.next().as_deref(), Some(Behavior::Empty(_))));
        assert!(matches!(q.next().as_deref(), Some(Behavior::Malformed(_))));
        assert!(matches!(q.next().as_deref(), Some(Behavior::Malformed(_))));
    }
}
