//! Dialect-neutral pieces of a reply: the request context, what the reply says and
//! how it is cut into deltas, ids, and SSE framing.
//!
//! Both dialect modules render the same [`Content`], so a behaviour means the same
//! thing whichever API was called, and the streamed deltas always concatenate to the
//! non-streamed text (tests compare the two).

use std::ops::Range;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value};

use super::plan::ToolCall;

/// Which provider API a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
    /// OpenAI's Responses API (`POST /v1/responses`).
    Responses,
}

/// What the handler learned from the request, needed to shape any answer.
pub(crate) struct Ctx {
    pub dialect: Dialect,
    /// The request's `model`, echoed back.
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    pub input_tokens: u64,
    /// Sent as `x-request-id` / `request-id` and inside Anthropic error bodies.
    pub request_id: String,
    pub started: Instant,
    /// Responses: the `resp_…` id, shared by every event of a stream (its failure too).
    pub response_id: String,
    /// Responses: `created_at`, the same in every event of a stream.
    pub created_at: u64,
    /// Responses: `include` asks for `reasoning.encrypted_content`.
    pub include_encrypted: bool,
    /// Responses: delta events carry an `obfuscation` field unless
    /// `stream_options.include_obfuscation` is false.
    pub obfuscation: bool,
    /// Responses: the request parameters a Response object echoes back, defaults filled in.
    pub echo: Map<String, Value>,
}

impl Ctx {
    pub(crate) fn new(dialect: Dialect, started: Instant) -> Ctx {
        let request_id = match dialect {
            Dialect::OpenAi | Dialect::Responses => random_id("req_", 32, HEX),
            Dialect::Anthropic => random_id("req_011C", 20, BASE62),
        };
        let (response_id, created_at) = if dialect == Dialect::Responses {
            (random_id("resp_", 48, HEX), unix_now())
        } else {
            (String::new(), 0)
        };
        Ctx {
            dialect,
            model: String::new(),
            stream: false,
            include_usage: false,
            input_tokens: 1,
            request_id,
            started,
            response_id,
            created_at,
            include_encrypted: false,
            obfuscation: true,
            echo: Map::new(),
        }
    }

    /// Fills in what a (parsed, valid) request body tells.
    pub(crate) fn read_body(&mut self, body: &Value, body_len: usize) {
        if let Some(m) = body.get("model").and_then(Value::as_str) {
            m.clone_into(&mut self.model);
        }
        self.stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        self.include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.input_tokens = (body_len as u64 / 4).max(1);
        self.include_encrypted = body
            .get("include")
            .and_then(Value::as_array)
            .is_some_and(|i| i.iter().any(|v| v == "reasoning.encrypted_content"));
        self.obfuscation = body
            .pointer("/stream_options/include_obfuscation")
            .and_then(Value::as_bool)
            .unwrap_or(true);
    }
}

/// A tool call as rendered: the id both dialects need and the arguments as the JSON
/// text that OpenAI sends (and Anthropic streams as `partial_json`).
pub(crate) struct RenderedTool {
    pub id: String,
    pub name: String,
    pub input: Value,
    pub arguments: String,
    pub pieces: Vec<Range<usize>>,
}

/// What a successful reply says, cut into the pieces a stream sends.
pub(crate) struct Content {
    pub text: Option<String>,
    pub text_pieces: Vec<Range<usize>>,
    pub thinking: Option<String>,
    pub thinking_pieces: Vec<Range<usize>>,
    pub signature: String,
    pub tool: Option<RenderedTool>,
}

impl Content {
    /// `text` None means the default text; with a tool call and no explicit text the
    /// reply has no text part at all (as the real APIs do).
    pub(crate) fn new(
        dialect: Dialect,
        default_text: impl FnOnce() -> String,
        text: Option<&str>,
        chunks: usize,
        tool_call: Option<&ToolCall>,
        thinking: Option<&str>,
    ) -> Content {
        let text = match (text, tool_call) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some(default_text()),
            (None, Some(_)) => None,
        };
        let text_pieces = text.as_deref().map_or_else(Vec::new, |t| split(t, chunks));
        let thinking = thinking.map(str::to_owned);
        let thinking_pieces = thinking
            .as_deref()
            .map_or_else(Vec::new, |t| split(t, chunks));
        let signature = if thinking.is_some() {
            random_id("Eq", 86, BASE62)
        } else {
            String::new()
        };
        let tool = tool_call.map(|t| {
            let arguments = t.arguments.to_string();
            let pieces = split(&arguments, chunks);
            let id = match dialect {
                Dialect::OpenAi | Dialect::Responses => random_id("call_", 24, BASE62),
                Dialect::Anthropic => random_id("toolu_01", 22, BASE62),
            };
            RenderedTool {
                id,
                name: t.name.clone(),
                input: t.arguments.clone(),
                arguments,
                pieces,
            }
        });
        Content {
            text,
            text_pieces,
            thinking,
            thinking_pieces,
            signature,
            tool,
        }
    }

    pub(crate) fn text_pieces(&self) -> impl Iterator<Item = &str> {
        let text = self.text.as_deref().unwrap_or("");
        self.text_pieces.iter().map(move |r| &text[r.clone()])
    }

    pub(crate) fn thinking_pieces(&self) -> impl Iterator<Item = &str> {
        let text = self.thinking.as_deref().unwrap_or("");
        self.thinking_pieces.iter().map(move |r| &text[r.clone()])
    }

    /// One "token" per streamed piece, so stream and non-stream usage agree.
    pub(crate) fn output_tokens(&self) -> u64 {
        let tool = self.tool.as_ref().map_or(0, |t| t.pieces.len());
        ((self.text_pieces.len() + self.thinking_pieces.len() + tool) as u64).max(1)
    }
}

/// Splits `s` into `n` pieces of near-equal character count, on char boundaries
/// (fewer when `s` has fewer than `n` characters; one empty piece for "").
pub(crate) fn split(s: &str, n: usize) -> Vec<Range<usize>> {
    let chars = s.chars().count();
    if chars == 0 {
        // One empty piece, so even an empty text streams one delta.
        return std::iter::once(0..0).collect();
    }
    let n = n.clamp(1, chars);
    let mut bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).collect();
    bounds.push(s.len());
    (0..n)
        .map(|i| bounds[i * chars / n]..bounds[(i + 1) * chars / n])
        .collect()
}

/// One SSE event of a scripted stream. `content` marks the deltas that carry reply
/// content: faults are injected "after N content chunks".
pub(crate) struct Frame {
    pub bytes: Bytes,
    pub content: bool,
}

impl Frame {
    pub(crate) fn envelope(bytes: Bytes) -> Frame {
        Frame {
            bytes,
            content: false,
        }
    }

    pub(crate) fn content(bytes: Bytes) -> Frame {
        Frame {
            bytes,
            content: true,
        }
    }
}

/// `data: JSON\n\n`
pub(crate) fn sse_data<T: Serialize + ?Sized>(value: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(128).writer();
    buf.get_mut().put_slice(b"data: ");
    // Serializing a serde_json::Value or plain struct to memory cannot fail.
    let _ = serde_json::to_writer(&mut buf, value);
    buf.get_mut().put_slice(b"\n\n");
    buf.into_inner().freeze()
}

/// `event: NAME\ndata: JSON\n\n`
pub(crate) fn sse_event<T: Serialize + ?Sized>(name: &str, value: &T) -> Bytes {
    let mut buf = BytesMut::with_capacity(160).writer();
    buf.get_mut().put_slice(b"event: ");
    buf.get_mut().put_slice(name.as_bytes());
    buf.get_mut().put_slice(b"\ndata: ");
    let _ = serde_json::to_writer(&mut buf, value);
    buf.get_mut().put_slice(b"\n\n");
    buf.into_inner().freeze()
}

pub(crate) fn json_bytes<T: Serialize + ?Sized>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
pub(crate) const HEX: &[u8] = b"0123456789abcdef";

/// `prefix` followed by `len` random characters of `alphabet`, like the providers' ids.
pub(crate) fn random_id(prefix: &str, len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(alphabet[rng.random_range(0..alphabet.len())] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &str, n: usize) -> Vec<&str> {
        split(s, n).into_iter().map(|r| &s[r]).collect()
    }

    #[test]
    fn split_keeps_text_and_char_boundaries() {
        assert_eq!(pieces("Hello from a", 4).concat(), "Hello from a");
        assert_eq!(pieces("Hello from a", 4).len(), 4);
        assert_eq!(pieces("ab", 5), vec!["a", "b"]);
        assert_eq!(pieces("", 3), vec![""]);
        let s = "é—ü—x";
        let p = pieces(s, 3);
        assert_eq!(p.len(), 3);
        assert_eq!(p.concat(), s);
    }

    #[test]
    fn sse_framing() {
        assert_eq!(&sse_data(&[1])[..], b"data: [1]\n\n");
        assert_eq!(&sse_event("ping", &[1])[..], b"event: ping\ndata: [1]\n\n");
        let id = random_id("msg_01", 22, BASE62);
        assert_eq!(id.len(), 28);
        assert!(id.starts_with("msg_01"));
    }
}
