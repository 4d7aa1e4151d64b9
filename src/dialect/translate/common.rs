//! Pieces shared by requests, responses and streams: lossy-drop policy, ids, stop reasons,
//! usage.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::dialect::ErrorKind;

pub(super) type Obj = Map<String, Value>;

pub(super) fn to_bytes(v: &Value) -> Bytes {
    // Serializing a Value to memory cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// What happens to a feature the backend's dialect cannot express.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lossy {
    pub strict: bool,
    /// The backend's API, for messages.
    pub backend: &'static str,
}

impl Lossy {
    /// Dropped with a debug line, or refused when strict.
    pub fn drop(&self, what: &str) -> Result<(), TranslateError> {
        if self.strict {
            Err(TranslateError::Unsupported(format!(
                "{what} cannot be expressed in the {} API",
                self.backend
            )))
        } else {
            tracing::debug!(
                backend = self.backend,
                dropped = what,
                "translation: dropped"
            );
            Ok(())
        }
    }

    /// Dropped with a debug line even when strict: hints without effect on the output, or
    /// documented merges.
    pub fn note(&self, what: &str) {
        tracing::debug!(
            backend = self.backend,
            dropped = what,
            "translation: dropped"
        );
    }
}

/// Removes `key`, treating `null` as absent.
pub(super) fn take(obj: &mut Obj, key: &str) -> Option<Value> {
    obj.remove(key).filter(|v| !v.is_null())
}

pub(super) fn type_of(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("")
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh id suffix for responses whose upstream sent none.
fn generated_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(40);
    // splitmix64: spread the bits so consecutive ids do not look alike.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let mut s = String::from("sy");
    for _ in 0..11 {
        s.push(BASE62[(x % 62) as usize] as char);
        x /= 62;
    }
    s
}

/// `chatcmpl-…` from an Anthropic `msg_…` id.
pub(super) fn openai_id(upstream: Option<&str>) -> String {
    match upstream.filter(|s| !s.is_empty()) {
        Some(id) => format!("chatcmpl-{}", id.strip_prefix("msg_").unwrap_or(id)),
        None => format!("chatcmpl-{}", generated_suffix()),
    }
}

/// `msg_…` from an OpenAI `chatcmpl-…` id.
pub(super) fn anthropic_id(upstream: Option<&str>) -> String {
    match upstream.filter(|s| !s.is_empty()) {
        Some(id) => format!("msg_{}", id.strip_prefix("chatcmpl-").unwrap_or(id)),
        None => format!("msg_{}", generated_suffix()),
    }
}

/// A tool-call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`): other characters become `_`.
/// Applied to calls and results alike, so pairs keep matching.
pub(super) fn tool_id(id: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if id.is_empty() {
        Cow::Borrowed("toolu_empty")
    } else if id.chars().all(ok) {
        Cow::Borrowed(id)
    } else {
        Cow::Owned(id.chars().map(|c| if ok(c) { c } else { '_' }).collect())
    }
}

/// An id for a tool call the upstream sent without one, stable for a given message.
pub(super) fn fallback_tool_id(message_id: &str, index: usize) -> String {
    let base = message_id
        .strip_prefix("msg_")
        .or_else(|| message_id.strip_prefix("chatcmpl-"))
        .unwrap_or(message_id);
    format!("toolu_{}_{index}", tool_id(base))
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
pub(super) fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn and anything new.
        _ => "stop",
    }
}

/// OpenAI `finish_reason` → Anthropic `stop_reason`.
pub(super) fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        // stop (OpenAI does not say whether a stop sequence matched) and anything new.
        _ => "end_turn",
    }
}

/// Token counts in Anthropic's terms (`input` excludes cache reads and writes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
}

/// Token counts above this are not real (a trillion tokens); an upstream's absurd number is
/// capped here so that sums of counts never overflow.
const MAX_TOKENS: u64 = 1_000_000_000_000;

fn u64_at(v: &Value, key: &str) -> Option<u64> {
    v.get(key)
        .and_then(Value::as_u64)
        .map(|n| n.min(MAX_TOKENS))
}

impl Tokens {
    /// From an Anthropic `usage` object; fields it lacks stay as they were (message_delta
    /// usage is cumulative and partial).
    pub fn update_from_anthropic(&mut self, usage: &Value) {
        if let Some(n) = u64_at(usage, "input_tokens") {
            self.input = n;
        }
        if let Some(n) = u64_at(usage, "output_tokens") {
            self.output = n;
        }
        if let Some(n) = u64_at(usage, "cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = u64_at(usage, "cache_creation_input_tokens") {
            self.cache_creation = n;
        }
    }

    /// From an OpenAI `usage` object.
    pub fn from_openai(usage: &Value) -> Tokens {
        let prompt = u64_at(usage, "prompt_tokens").unwrap_or(0);
        let cached = usage
            .get("prompt_tokens_details")
            .and_then(|d| u64_at(d, "cached_tokens"))
            .unwrap_or(0)
            .min(prompt);
        Tokens {
            input: prompt - cached,
            output: u64_at(usage, "completion_tokens").unwrap_or(0),
            cache_read: cached,
            cache_creation: 0,
        }
    }

    pub fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_creation)
    }

    pub fn openai(&self) -> OpenAiUsage {
        let prompt = self.prompt_tokens();
        OpenAiUsage {
            prompt_tokens: prompt,
            completion_tokens: self.output,
            total_tokens: prompt.saturating_add(self.output),
            prompt_tokens_details: CachedTokens {
                cached_tokens: self.cache_read,
            },
        }
    }

    pub fn anthropic(&self) -> AnthropicUsage {
        AnthropicUsage {
            input_tokens: self.input,
            cache_creation_input_tokens: self.cache_creation,
            cache_read_input_tokens: self.cache_read,
            output_tokens: self.output,
        }
    }
}

#[derive(Debug, Serialize)]
pub(super) struct CachedTokens {
    pub cached_tokens: u64,
}

#[derive(Debug, Serialize)]
pub(super) struct OpenAiUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: CachedTokens,
}

#[derive(Debug, Serialize)]
pub(super) struct AnthropicUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

/// `value` as JSON, for `json!` bodies built from the usage structs.
pub(super) fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Why a translation could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TranslateError {
    /// The client's body is not a valid request in its own dialect.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The request uses a feature the backend's dialect lacks (only with `strict`).
    #[error("not supported when translating for this backend: {0}")]
    Unsupported(String),
    /// The backend's success body is not a valid response in its dialect.
    #[error("invalid upstream response: {0}")]
    InvalidResponse(String),
    /// Translating failed inside the gateway (a panic, caught): our bug, not the backend's.
    #[error("the gateway failed to translate the answer: {0}")]
    Bug(String),
}

impl TranslateError {
    /// How to report this error to the client: the first two are the client's fault (400),
    /// a bad upstream body is the backend's.
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            TranslateError::Invalid(_) | TranslateError::Unsupported(_) => {
                ErrorKind::InvalidRequest
            }
            TranslateError::InvalidResponse(_) => ErrorKind::Upstream,
            TranslateError::Bug(_) => ErrorKind::Internal,
        }
    }
}

/// Writes `value` as JSON into `out`.
pub(super) fn write_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Writing plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The bytes every OpenAI chunk of one stream starts with, up to its `delta` value: written
/// once per stream (the id, `created` and `model` do not change).
pub(super) fn chunk_prefix(id: &str, created: u64, model: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Head<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        model: &'a str,
    }
    let mut prefix = b"data: ".to_vec();
    write_json(
        &mut prefix,
        &Head {
            id,
            object: "chat.completion.chunk",
            created,
            model,
        },
    );
    prefix.pop(); // the closing brace
    prefix.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
    prefix
}

/// One OpenAI chunk: `prefix` (see [`chunk_prefix`]), the delta, the finish reason.
pub(super) fn write_chunk<D: Serialize>(
    prefix: &[u8],
    out: &mut Vec<u8>,
    delta: &D,
    finish: Option<&str>,
) {
    out.extend_from_slice(prefix);
    write_json(out, delta);
    out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
    match finish {
        Some(f) => write_json(out, &f),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}]}\n\n");
}

/// One backend event's JSON data, read into `T`; an unreadable event is skipped (debug log):
/// a translator never fails a stream the gateway already classified as good.
pub(super) fn event_json<'a, T: serde::Deserialize<'a>>(data: &'a [u8]) -> Option<T> {
    match serde_json::from_slice(data) {
        Ok(v) => Some(v),
        Err(err) => {
            tracing::debug!(error = %err, "translation: skipped an unreadable stream event");
            None
        }
    }
}

// The chat-completions chunk deltas the stream translators write (serialized straight into
// the output buffer, no `Value` in between).

#[derive(Serialize)]
pub(super) struct RoleDelta {
    pub role: &'static str,
    pub content: &'static str,
}

#[derive(Serialize)]
pub(super) struct ContentDelta<'a> {
    pub content: &'a str,
}

#[derive(Serialize)]
pub(super) struct RefusalDelta<'a> {
    pub refusal: &'a str,
}

#[derive(Serialize)]
pub(super) struct ReasoningDelta<'a> {
    pub reasoning_content: &'a str,
}

#[derive(Serialize)]
pub(super) struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

#[derive(Serialize)]
pub(super) struct ToolCallDelta<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionDelta<'a>,
}

#[derive(Serialize)]
pub(super) struct ToolCallsDelta<'a> {
    pub tool_calls: [ToolCallDelta<'a>; 1],
}

#[derive(Serialize)]
pub(super) struct EmptyDelta {}

/// The usage chunk that ends a chat stream when the client asked for it (no choices).
#[derive(Serialize)]
pub(super) struct UsageChunk<'a, U> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: [(); 0],
    pub usage: U,
}

#[cfg(test)]
mod token_tests {
    use super::*;

    /// Found by a hostile upstream review: absurd usage numbers must not overflow a sum.
    #[test]
    fn absurd_token_counts_are_capped_and_never_overflow() {
        let max = serde_json::json!({
            "input_tokens": u64::MAX, "output_tokens": u64::MAX,
            "cache_read_input_tokens": u64::MAX, "cache_creation_input_tokens": u64::MAX
        });
        let mut t = Tokens::default();
        t.update_from_anthropic(&max);
        assert_eq!(t.prompt_tokens(), 3 * MAX_TOKENS);
        assert_eq!(t.openai().total_tokens, 4 * MAX_TOKENS);
        let o = Tokens::from_openai(&serde_json::json!({
            "prompt_tokens": u64::MAX, "completion_tokens": 1e30,
            "prompt_tokens_details": {"cached_tokens": u64::MAX}
        }));
        assert_eq!(o.prompt_tokens(), MAX_TOKENS);
        assert_eq!(o.output, 0, "a float is not a token count");
    }
}
