//! Token usage as the providers report it, read from non-streaming answers and from streams'
//! usage-carrying events, in each dialect, and normalized: what the operator's bill is made of.
//!
//! A leaf. Reading is cheap by design: a non-streaming body is searched from its end for its
//! `"usage"` object (only that object is parsed), and a stream's events are parsed only when
//! they can carry usage (Anthropic `message_start` / `message_delta`, an OpenAI chunk whose
//! data mentions `"usage"`, the Responses API's final `response.*` event).

use serde::Deserialize;

use crate::dialect::Dialect;
use crate::sse::SseEvent;

/// Tokens one request cost, normalized across dialects.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// All prompt tokens, cached ones included (OpenAI's `prompt_tokens`; Anthropic's
    /// `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`).
    pub input: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: u64,
    pub output: u64,
    /// Output tokens spent on reasoning, where the provider says.
    pub reasoning: u64,
}

/// A provider's absurd number is capped so sums never overflow (a trillion tokens).
const MAX: u64 = 1_000_000_000_000;

#[derive(Deserialize, Default)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// Every dialect's usage fields; absent ones stay `None`.
#[derive(Deserialize, Default)]
struct RawUsage {
    // OpenAI chat completions.
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<Details>,
    completion_tokens_details: Option<Details>,
    // Anthropic messages and the Responses API.
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    // Anthropic.
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    // Responses API.
    input_tokens_details: Option<Details>,
    output_tokens_details: Option<Details>,
}

impl Usage {
    fn capped(self) -> Usage {
        Usage {
            input: self.input.min(MAX),
            cached_input: self.cached_input.min(MAX),
            output: self.output.min(MAX),
            reasoning: self.reasoning.min(MAX),
        }
    }

    /// Folds a usage object of `dialect` in: fields it carries replace what was known (usage in
    /// streams is cumulative, and Anthropic splits it between two events).
    fn merge(&mut self, dialect: Dialect, u: &RawUsage) {
        let cap = |v: Option<u64>| v.map(|n| n.min(MAX));
        match dialect {
            Dialect::OpenAi => {
                if let Some(n) = cap(u.prompt_tokens) {
                    self.input = n;
                }
                if let Some(n) = cap(u.completion_tokens) {
                    self.output = n;
                }
                if let Some(n) = cap(u
                    .prompt_tokens_details
                    .as_ref()
                    .and_then(|d| d.cached_tokens))
                {
                    self.cached_input = n;
                }
                if let Some(n) = cap(u
                    .completion_tokens_details
                    .as_ref()
                    .and_then(|d| d.reasoning_tokens))
                {
                    self.reasoning = n;
                }
            }
            Dialect::Anthropic => {
                let parts = [
                    u.input_tokens,
                    u.cache_read_input_tokens,
                    u.cache_creation_input_tokens,
                ];
                if parts.iter().any(Option::is_some) {
                    let (fresh, read, written) = (
                        cap(u.input_tokens).unwrap_or(0),
                        cap(u.cache_read_input_tokens),
                        cap(u.cache_creation_input_tokens).unwrap_or(0),
                    );
                    // message_delta may repeat input_tokens without the cache fields.
                    let read = read.unwrap_or(self.cached_input);
                    self.input = fresh + read + written;
                    self.cached_input = read;
                }
                if let Some(n) = cap(u.output_tokens) {
                    self.output = n;
                }
            }
            Dialect::Responses => {
                if let Some(n) = cap(u.input_tokens) {
                    self.input = n;
                }
                if let Some(n) = cap(u.output_tokens) {
                    self.output = n;
                }
                if let Some(n) = cap(u
                    .input_tokens_details
                    .as_ref()
                    .and_then(|d| d.cached_tokens))
                {
                    self.cached_input = n;
                }
                if let Some(n) = cap(u
                    .output_tokens_details
                    .as_ref()
                    .and_then(|d| d.reasoning_tokens))
                {
                    self.reasoning = n;
                }
            }
        }
        *self = self.capped();
    }

    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// The usage of a non-streaming answer in `dialect`, found from the body's end (where every
/// provider puts it); `None` when it carries none.
pub fn from_body(dialect: Dialect, body: &[u8]) -> Option<Usage> {
    let at = memchr::memmem::rfind(body, b"\"usage\"")?;
    let rest = &body[at + b"\"usage\"".len()..];
    let start = rest.iter().position(|b| !b" \t\r\n:".contains(b))?;
    let mut de = serde_json::Deserializer::from_slice(&rest[start..]).into_iter::<RawUsage>();
    let raw = de.next()?.ok()?;
    let mut u = Usage::default();
    u.merge(dialect, &raw);
    Some(u)
}

/// Collects a stream's usage from its events (the backend's dialect).
#[derive(Debug, Clone, Copy)]
pub struct StreamUsage {
    dialect: Dialect,
    usage: Option<Usage>,
}

impl StreamUsage {
    pub fn new(dialect: Dialect) -> StreamUsage {
        StreamUsage {
            dialect,
            usage: None,
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Reads `ev` when it can carry usage.
    pub fn observe(&mut self, ev: &SseEvent) {
        let Some(data) = ev.data.as_deref() else {
            return;
        };
        let name = ev.event.as_deref();
        let raw = match self.dialect {
            Dialect::Anthropic => match name {
                Some("message_start") => {
                    #[derive(Deserialize)]
                    struct Start {
                        message: Inner,
                    }
                    #[derive(Deserialize)]
                    struct Inner {
                        #[serde(default)]
                        usage: Option<RawUsage>,
                    }
                    serde_json::from_slice::<Start>(data)
                        .ok()
                        .and_then(|s| s.message.usage)
                }
                Some("message_delta") => with_usage(data),
                _ => None,
            },
            Dialect::OpenAi => {
                if memchr::memmem::find(data, b"\"usage\"").is_none() {
                    return;
                }
                with_usage(data)
            }
            Dialect::Responses => match name {
                Some("response.completed" | "response.incomplete" | "response.failed") => {
                    #[derive(Deserialize)]
                    struct Done {
                        response: Inner,
                    }
                    #[derive(Deserialize)]
                    struct Inner {
                        #[serde(default)]
                        usage: Option<RawUsage>,
                    }
                    serde_json::from_slice::<Done>(data)
                        .ok()
                        .and_then(|d| d.response.usage)
                }
                _ => None,
            },
        };
        if let Some(raw) = raw {
            self.usage
                .get_or_insert_with(Usage::default)
                .merge(self.dialect, &raw);
        }
    }
}

fn with_usage(data: &[u8]) -> Option<RawUsage> {
    #[derive(Deserialize)]
    struct WithUsage {
        #[serde(default)]
        usage: Option<RawUsage>,
    }
    serde_json::from_slice::<WithUsage>(data)
        .ok()
        .and_then(|w| w.usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::SseParser;

    fn stream(dialect: Dialect, text: &str) -> Option<Usage> {
        let mut events = Vec::new();
        SseParser::default()
            .feed(text.as_bytes(), &mut events)
            .unwrap();
        let mut u = StreamUsage::new(dialect);
        events.iter().for_each(|e| u.observe(e));
        u.usage()
    }

    fn u(input: u64, cached_input: u64, output: u64, reasoning: u64) -> Option<Usage> {
        Some(Usage {
            input,
            cached_input,
            output,
            reasoning,
        })
    }

    #[test]
    fn every_dialects_answer_gives_its_usage() {
        // (dialect, body, usage)
        let cases = [
            (
                Dialect::OpenAi,
                r#"{"id":"x","choices":[{"message":{"content":"the word \"usage\" here"}}],"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,"prompt_tokens_details":{"cached_tokens":100},"completion_tokens_details":{"reasoning_tokens":12}}}"#,
                u(120, 100, 30, 12),
            ),
            (
                Dialect::Anthropic,
                r#"{"id":"msg","content":[],"usage":{"input_tokens":20,"cache_read_input_tokens":100,"cache_creation_input_tokens":5,"output_tokens":30}}"#,
                u(125, 100, 30, 0),
            ),
            (
                Dialect::Responses,
                r#"{"id":"resp","output":[],"usage":{"input_tokens":120,"input_tokens_details":{"cached_tokens":100},"output_tokens":30,"output_tokens_details":{"reasoning_tokens":12},"total_tokens":150}}"#,
                u(120, 100, 30, 12),
            ),
            (Dialect::OpenAi, r#"{"id":"x","choices":[]}"#, None),
            (
                Dialect::OpenAi,
                r#"{"usage": {"prompt_tokens": 99999999999999999}}"#,
                u(MAX, 0, 0, 0),
            ),
            (Dialect::OpenAi, r#"{"usage": nonsense"#, None),
        ];
        for (dialect, body, want) in cases {
            assert_eq!(from_body(dialect, body.as_bytes()), want, "{body}");
        }
    }

    #[test]
    fn every_dialects_stream_gives_its_usage() {
        let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"usage\"}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30}}\n\n";
        assert_eq!(stream(Dialect::Anthropic, anthropic), u(120, 100, 30, 0));
        let openai = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
            data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
        assert_eq!(stream(Dialect::OpenAi, openai), u(7, 0, 3, 0));
        let no_usage = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(stream(Dialect::OpenAi, no_usage), None);
        let responses = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n\
            event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":4,\"output_tokens_details\":{\"reasoning_tokens\":2}}}}\n\n";
        assert_eq!(stream(Dialect::Responses, responses), u(9, 0, 4, 2));
    }
}
