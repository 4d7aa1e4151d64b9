//! Incremental stream translation: one backend SSE event in, the client's SSE bytes out.
//!
//! Each event is translated as it arrives; state is only what the next events need (the
//! open content block, tool-call indexes, the stop reason and usage seen so far). Input
//! events are parsed into small borrowed structs and output is serialized straight into the
//! caller's buffer, so the per-event cost is one JSON parse and one JSON write.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{
    anthropic_id, chunk_prefix, event_json, fallback_tool_id, finish_reason, openai_id,
    stop_reason, tool_id, unix_now, write_chunk, write_json, ContentDelta, EmptyDelta,
    FunctionDelta, ReasoningDelta, RoleDelta, Tokens, ToolCallDelta, ToolCallsDelta, UsageChunk,
};
use crate::dialect::Dialect;
use crate::sse::SseEvent;

/// Translates a backend's event stream into the client's dialect, event by event.
pub struct StreamTranslator {
    inner: Inner,
}

enum Inner {
    ToOpenAi(Box<AnthropicToOpenAi>),
    ToAnthropic(Box<OpenAiToAnthropic>),
    /// Chat-completions backend → Responses client.
    ChatToResponses(Box<super::responses_stream::ChatToResponses>),
    /// Responses API backend → chat completions client.
    ResponsesToChat(Box<super::stream_responses::ResponsesToOpenAi>),
    /// Anthropic backend → Responses client.
    AnthropicToResponses(Box<super::responses_stream::AnthropicToResponses>),
    /// Responses API backend → Anthropic client: through chat chunks.
    ResponsesToAnthropic(Box<ResponsesToAnthropic>),
    /// Same dialect on both sides (not used by the gateway): events are re-framed unchanged.
    Passthrough,
}

impl StreamTranslator {
    pub fn new(from: Dialect, to: Dialect, client_model: &str, include_usage: bool) -> Self {
        let inner = match (from, to) {
            (Dialect::Anthropic, Dialect::OpenAi) => Inner::ToOpenAi(Box::new(
                AnthropicToOpenAi::new(client_model, include_usage),
            )),
            (Dialect::OpenAi, Dialect::Anthropic) => {
                Inner::ToAnthropic(Box::new(OpenAiToAnthropic::new(client_model)))
            }
            (Dialect::OpenAi, Dialect::Responses) => Inner::ChatToResponses(Box::new(
                super::responses_stream::ChatToResponses::new(client_model),
            )),
            (Dialect::Responses, Dialect::OpenAi) => Inner::ResponsesToChat(Box::new(
                super::stream_responses::ResponsesToOpenAi::new(client_model, include_usage),
            )),
            (Dialect::Anthropic, Dialect::Responses) => Inner::AnthropicToResponses(Box::new(
                super::responses_stream::AnthropicToResponses::new(client_model),
            )),
            (Dialect::Responses, Dialect::Anthropic) => {
                Inner::ResponsesToAnthropic(Box::new(ResponsesToAnthropic::new(client_model)))
            }
            _ => Inner::Passthrough,
        };
        StreamTranslator { inner }
    }

    /// For a Responses client: calls of these freeform (`custom`) tools become
    /// `custom_tool_call` items.
    pub fn with_custom_tools(mut self, names: Vec<String>) -> Self {
        match &mut self.inner {
            Inner::ChatToResponses(t) => t.custom = names,
            Inner::AnthropicToResponses(t) => t.w.custom = names,
            _ => {}
        }
        self
    }

    /// Translated SSE bytes for one backend event (may be empty: pings, envelopes not yet
    /// needed, events after the end).
    pub fn push(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        match &mut self.inner {
            Inner::ToOpenAi(t) => t.push(ev, out),
            Inner::ToAnthropic(t) => t.push(ev, out),
            Inner::ChatToResponses(t) => t.push(ev, out),
            Inner::ResponsesToChat(t) => t.push(ev, out),
            Inner::AnthropicToResponses(t) => t.push(ev, out),
            Inner::ResponsesToAnthropic(t) => t.push(ev, out),
            Inner::Passthrough => reframe(ev, out),
        }
    }

    /// At the backend stream's clean end: whatever closes the client's stream and was not
    /// sent yet (OpenAI final chunk, usage chunk, `[DONE]`; Anthropic `content_block_stop`,
    /// `message_delta`, `message_stop`). Idempotent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match &mut self.inner {
            Inner::ToOpenAi(t) => t.close(out),
            Inner::ToAnthropic(t) => t.close(out),
            Inner::ChatToResponses(t) => t.end(out),
            Inner::ResponsesToChat(t) => t.close(out),
            Inner::AnthropicToResponses(t) => t.end(out),
            Inner::ResponsesToAnthropic(t) => t.close(out),
            Inner::Passthrough => {}
        }
    }

    /// Fixes the `created` timestamp of OpenAI chunks (tests compare byte for byte).
    #[cfg(test)]
    pub(crate) fn set_created(&mut self, created: u64) {
        match &mut self.inner {
            Inner::ToOpenAi(t) => t.created = created,
            Inner::ChatToResponses(t) => {
                t.created = created;
                t.fixed_clock = true;
            }
            Inner::ResponsesToChat(t) => t.created = created,
            Inner::AnthropicToResponses(t) => {
                t.w.created = created;
                t.w.fixed_clock = true;
            }
            Inner::ResponsesToAnthropic(t) => t.first.created = created,
            _ => {}
        }
    }
}

/// A Responses backend's events → chat chunks → Anthropic events: the two translators
/// composed, the chunks between them parsed back as events. One more JSON write and parse per
/// event than a direct translation; what chat cannot carry (web search calls) is not carried.
struct ResponsesToAnthropic {
    first: super::stream_responses::ResponsesToOpenAi,
    second: OpenAiToAnthropic,
    chunks: Vec<u8>,
    parser: crate::sse::SseParser,
    events: Vec<SseEvent>,
}

impl ResponsesToAnthropic {
    fn new(client_model: &str) -> Self {
        ResponsesToAnthropic {
            // The usage chunk carries the token counts on to message_delta.
            first: super::stream_responses::ResponsesToOpenAi::new(client_model, true),
            second: OpenAiToAnthropic::new(client_model),
            chunks: Vec::new(),
            // Each chunk is as large as the backend event it came from, which the gateway's own
            // parser already bounded.
            parser: crate::sse::SseParser::with_limit(usize::MAX),
            events: Vec::new(),
        }
    }

    fn relay(&mut self, out: &mut Vec<u8>) {
        // The chunks are the first translator's own output: well-formed and unlimited here.
        let _ = self.parser.feed(&self.chunks, &mut self.events);
        self.chunks.clear();
        for ev in self.events.drain(..) {
            self.second.push(&ev, out);
        }
    }

    fn push(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        self.first.push(ev, &mut self.chunks);
        self.relay(out);
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        self.first.close(&mut self.chunks);
        self.relay(out);
        self.second.close(out);
    }
}

fn reframe(ev: &SseEvent, out: &mut Vec<u8>) {
    let Some(data) = &ev.data else { return };
    if let Some(name) = &ev.event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// A JSON string field that tolerates other types (some servers send objects or numbers
/// where others send strings): those read as absent.
#[derive(Deserialize)]
#[serde(untagged)]
enum MaybeStr<'a> {
    Str(#[serde(borrow)] Cow<'a, str>),
    Other(IgnoredAny),
}

impl MaybeStr<'_> {
    fn non_empty(&self) -> Option<&str> {
        match self {
            MaybeStr::Str(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

fn non_empty<'s>(v: &'s Option<MaybeStr<'_>>) -> Option<&'s str> {
    v.as_ref().and_then(MaybeStr::non_empty)
}

// ---------------------------------------------------------------------------------------------
// Anthropic backend → OpenAI client
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct AEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    index: usize,
    #[serde(borrow, default)]
    message: Option<AMessage<'a>>,
    #[serde(borrow, default)]
    content_block: Option<AContentBlock<'a>>,
    #[serde(borrow, default)]
    delta: Option<ADelta<'a>>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct AMessage<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct AContentBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<MaybeStr<'a>>,
    #[serde(borrow, default)]
    thinking: Option<MaybeStr<'a>>,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize)]
struct ADelta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<MaybeStr<'a>>,
    #[serde(borrow, default)]
    thinking: Option<MaybeStr<'a>>,
    #[serde(borrow, default)]
    partial_json: Option<MaybeStr<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

/// What an Anthropic content block index carries.
#[derive(Clone, Copy, PartialEq)]
enum ABlock {
    Text,
    Thinking,
    /// The OpenAI `tool_calls[i]` index.
    Tool(u32),
    /// Server tools, redacted thinking and anything new: not forwarded.
    Other,
}

struct AnthropicToOpenAi {
    model: String,
    include_usage: bool,
    created: u64,
    id: String,
    /// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":[{"index":0,"delta":`
    prefix: Vec<u8>,
    started: bool,
    blocks: Vec<(usize, ABlock)>,
    tools: u32,
    stop: Option<&'static str>,
    tokens: Tokens,
    finish_sent: bool,
    done: bool,
}

impl AnthropicToOpenAi {
    fn new(model: &str, include_usage: bool) -> Self {
        AnthropicToOpenAi {
            model: model.to_owned(),
            include_usage,
            created: unix_now(),
            id: String::new(),
            prefix: Vec::new(),
            started: false,
            blocks: Vec::new(),
            tools: 0,
            stop: None,
            tokens: Tokens::default(),
            finish_sent: false,
            done: false,
        }
    }

    /// Sends the role chunk the first time anything is to be sent.
    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = openai_id(upstream_id);
        self.prefix = chunk_prefix(&self.id, self.created, &self.model);
        self.chunk(
            out,
            &RoleDelta {
                role: "assistant",
                content: "",
            },
            None,
        );
    }

    fn chunk<D: Serialize>(&self, out: &mut Vec<u8>, delta: &D, finish: Option<&str>) {
        write_chunk(&self.prefix, out, delta, finish);
    }

    fn block(&self, index: usize) -> ABlock {
        self.blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map_or(ABlock::Other, |(_, b)| *b)
    }

    fn tool_args(&self, out: &mut Vec<u8>, index: u32, args: &str) {
        self.chunk(
            out,
            &ToolCallsDelta {
                tool_calls: [ToolCallDelta {
                    index,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: args,
                    },
                }],
            },
            None,
        );
    }

    fn push(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Some(data) = &ev.data else { return };
        let Some(e) = event_json::<AEvent>(data) else {
            return;
        };
        let name = ev.event.as_deref().or(e.kind.as_deref()).unwrap_or("");
        match name {
            "message_start" => {
                let message = e.message.as_ref();
                if let Some(u) = message.and_then(|m| m.usage.as_ref()) {
                    self.tokens.update_from_anthropic(u);
                }
                self.start(message.and_then(|m| m.id.as_deref()), out);
            }
            "content_block_start" => {
                self.start(None, out);
                let Some(block) = &e.content_block else {
                    return;
                };
                let kind = match block.kind.as_ref() {
                    "text" => {
                        if let Some(t) = non_empty(&block.text) {
                            self.chunk(out, &ContentDelta { content: t }, None);
                        }
                        ABlock::Text
                    }
                    "thinking" => {
                        if let Some(t) = non_empty(&block.thinking) {
                            self.chunk(
                                out,
                                &ReasoningDelta {
                                    reasoning_content: t,
                                },
                                None,
                            );
                        }
                        ABlock::Thinking
                    }
                    "tool_use" => {
                        let index = self.tools;
                        self.tools += 1;
                        let id = match block.id.as_deref().filter(|s| !s.is_empty()) {
                            Some(id) => Cow::Borrowed(id),
                            None => Cow::Owned(fallback_tool_id(&self.id, index as usize)),
                        };
                        self.chunk(
                            out,
                            &ToolCallsDelta {
                                tool_calls: [ToolCallDelta {
                                    index,
                                    id: Some(&id),
                                    kind: Some("function"),
                                    function: FunctionDelta {
                                        name: Some(block.name.as_deref().unwrap_or("")),
                                        arguments: "",
                                    },
                                }],
                            },
                            None,
                        );
                        // The API starts with `input: {}` and streams the input; a proxy may
                        // send it whole instead.
                        if let Some(input) = block
                            .input
                            .as_ref()
                            .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                        {
                            self.tool_args(out, index, &input.to_string());
                        }
                        ABlock::Tool(index)
                    }
                    _ => ABlock::Other,
                };
                self.blocks.push((e.index, kind));
            }
            "content_block_delta" => {
                let Some(delta) = &e.delta else { return };
                match (self.block(e.index), delta.kind.as_deref()) {
                    (_, Some("text_delta")) => {
                        if let Some(t) = non_empty(&delta.text) {
                            self.start(None, out);
                            self.chunk(out, &ContentDelta { content: t }, None);
                        }
                    }
                    (_, Some("thinking_delta")) => {
                        if let Some(t) = non_empty(&delta.thinking) {
                            self.start(None, out);
                            self.chunk(
                                out,
                                &ReasoningDelta {
                                    reasoning_content: t,
                                },
                                None,
                            );
                        }
                    }
                    (ABlock::Tool(i), Some("input_json_delta")) => {
                        if let Some(j) = non_empty(&delta.partial_json) {
                            self.start(None, out);
                            self.tool_args(out, i, j);
                        }
                    }
                    // signature_delta, citations_delta, server tool input: nothing to say.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = &e.usage {
                    self.tokens.update_from_anthropic(u);
                }
                if let Some(s) = e.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                    self.stop = Some(finish_reason(s));
                    self.start(None, out);
                    if !self.finish_sent {
                        self.finish_sent = true;
                        self.chunk(out, &EmptyDelta {}, self.stop);
                    }
                }
            }
            "message_stop" => self.close(out),
            // ping, content_block_stop, error (the gateway handles those) and anything new.
            _ => {}
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(None, out);
        if !self.finish_sent {
            self.finish_sent = true;
            self.chunk(out, &EmptyDelta {}, Some(self.stop.unwrap_or("stop")));
        }
        if self.include_usage {
            out.extend_from_slice(b"data: ");
            write_json(
                out,
                &UsageChunk {
                    id: &self.id,
                    object: "chat.completion.chunk",
                    created: self.created,
                    model: &self.model,
                    choices: [],
                    usage: self.tokens.openai(),
                },
            );
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.done = true;
    }
}

// ---------------------------------------------------------------------------------------------
// OpenAI backend → Anthropic client
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct OChunk<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Option<Vec<OChoice<'a>>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct OChoice<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    delta: Option<ODelta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ODelta<'a> {
    #[serde(borrow, default)]
    content: Option<MaybeStr<'a>>,
    #[serde(borrow, default)]
    reasoning_content: Option<MaybeStr<'a>>,
    #[serde(borrow, default)]
    reasoning: Option<MaybeStr<'a>>,
    #[serde(borrow, default)]
    refusal: Option<MaybeStr<'a>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<OToolCall<'a>>>,
    #[serde(borrow, default)]
    function_call: Option<OFunction<'a>>,
}

#[derive(Deserialize)]
struct OToolCall<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    function: Option<OFunction<'a>>,
}

#[derive(Deserialize)]
struct OFunction<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    arguments: Option<MaybeStr<'a>>,
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartMessage<'a>,
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: StartUsage,
}

#[derive(Serialize)]
struct StartUsage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    content_block: StartBlock<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text {
        text: &'static str,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyDelta,
    },
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: Delta<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct IndexOnly {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: super::common::AnthropicUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: &'static str,
}

fn event<T: Serialize>(out: &mut Vec<u8>, name: &str, value: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    write_json(out, value);
    out.extend_from_slice(b"\n\n");
}

#[derive(Clone, Copy, PartialEq)]
enum Open {
    Text,
    Thinking,
    Tool,
}

/// A tool call seen in the stream: its OpenAI index, Anthropic block index and upstream id.
struct SeenTool {
    openai: u32,
    block: usize,
    upstream_id: String,
}

struct OpenAiToAnthropic {
    model: String,
    started: bool,
    id: String,
    next_block: usize,
    open: Option<(usize, Open)>,
    tools: Vec<SeenTool>,
    finish: Option<&'static str>,
    refusal: bool,
    tokens: Option<Tokens>,
    delta_sent: bool,
    done: bool,
}

impl OpenAiToAnthropic {
    fn new(model: &str) -> Self {
        OpenAiToAnthropic {
            model: model.to_owned(),
            started: false,
            id: String::new(),
            next_block: 0,
            open: None,
            tools: Vec::new(),
            finish: None,
            refusal: false,
            tokens: None,
            delta_sent: false,
            done: false,
        }
    }

    fn start(&mut self, upstream_id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = anthropic_id(upstream_id);
        event(
            out,
            "message_start",
            &MessageStart {
                kind: "message_start",
                message: StartMessage {
                    id: &self.id,
                    kind: "message",
                    role: "assistant",
                    model: &self.model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    // Known only at the end (OpenAI sends usage last): see message_delta.
                    usage: StartUsage {
                        input_tokens: 0,
                        output_tokens: 0,
                    },
                },
            },
        );
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            event(
                out,
                "content_block_stop",
                &IndexOnly {
                    kind: "content_block_stop",
                    index,
                },
            );
        }
    }

    fn open_block(&mut self, kind: Open, block: StartBlock<'_>, out: &mut Vec<u8>) -> usize {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        event(
            out,
            "content_block_start",
            &BlockStart {
                kind: "content_block_start",
                index,
                content_block: block,
            },
        );
        self.open = Some((index, kind));
        index
    }

    /// The open text or thinking block, opened if needed.
    fn text_like(&mut self, kind: Open, out: &mut Vec<u8>) -> usize {
        match self.open {
            Some((index, k)) if k == kind => index,
            _ => {
                let block = match kind {
                    Open::Thinking => StartBlock::Thinking {
                        thinking: "",
                        signature: "",
                    },
                    _ => StartBlock::Text { text: "" },
                };
                self.open_block(kind, block, out)
            }
        }
    }

    fn delta(out: &mut Vec<u8>, index: usize, delta: Delta<'_>) {
        event(
            out,
            "content_block_delta",
            &BlockDelta {
                kind: "content_block_delta",
                index,
                delta,
            },
        );
    }

    fn tool_call(&mut self, call: &OToolCall<'_>, out: &mut Vec<u8>) {
        let upstream_id = call.id.as_deref().filter(|s| !s.is_empty());
        let last = self.tools.last();
        let openai = match (call.index, upstream_id, last) {
            (Some(i), _, _) => i,
            // No index (some servers): a new id starts a new call.
            (None, Some(id), Some(last)) if last.upstream_id != id => self.tools.len() as u32,
            (None, _, Some(last)) => last.openai,
            (None, _, None) => 0,
        };
        let function = call.function.as_ref();
        let block = match self.tools.iter().find(|t| t.openai == openai) {
            Some(t) => t.block,
            None => {
                let id = match upstream_id {
                    Some(id) => tool_id(id).into_owned(),
                    None => fallback_tool_id(&self.id, self.tools.len()),
                };
                let name = function.and_then(|f| f.name.as_deref()).unwrap_or("");
                let block = self.open_block(
                    Open::Tool,
                    StartBlock::ToolUse {
                        id: &id,
                        name,
                        input: EmptyDelta {},
                    },
                    out,
                );
                self.tools.push(SeenTool {
                    openai,
                    block,
                    upstream_id: upstream_id.unwrap_or("").to_owned(),
                });
                block
            }
        };
        if let Some(args) = function.and_then(|f| non_empty(&f.arguments)) {
            // Interleaved calls (rare) keep going to their own block index.
            Self::delta(out, block, Delta::InputJson { partial_json: args });
        }
    }

    fn push(&mut self, ev: &SseEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        let Some(data) = &ev.data else { return };
        if data.trim_ascii() == b"[DONE]" {
            self.close(out);
            return;
        }
        let Some(chunk) = event_json::<OChunk>(data) else {
            return;
        };
        if chunk.error.is_some() {
            // In-stream errors are the gateway's business, not translated here.
            return;
        }
        self.start(chunk.id.as_deref(), out);
        let choices = chunk.choices.as_deref().unwrap_or_default();
        // Nothing may follow message_delta but message_stop.
        let choice = choices.iter().find(|c| c.index.unwrap_or(0) == 0);
        if let Some(choice) = choice.filter(|_| !self.delta_sent) {
            if let Some(d) = &choice.delta {
                if let Some(r) = non_empty(&d.reasoning_content).or_else(|| non_empty(&d.reasoning))
                {
                    let index = self.text_like(Open::Thinking, out);
                    Self::delta(out, index, Delta::Thinking { thinking: r });
                }
                if let Some(t) = non_empty(&d.content) {
                    let index = self.text_like(Open::Text, out);
                    Self::delta(out, index, Delta::Text { text: t });
                }
                if let Some(t) = non_empty(&d.refusal) {
                    self.refusal = true;
                    let index = self.text_like(Open::Text, out);
                    Self::delta(out, index, Delta::Text { text: t });
                }
                for call in d.tool_calls.iter().flatten() {
                    self.tool_call(call, out);
                }
                if let Some(f) = &d.function_call {
                    let call = OToolCall {
                        index: Some(0),
                        id: None,
                        function: Some(OFunction {
                            name: f.name.clone(),
                            arguments: match &f.arguments {
                                Some(MaybeStr::Str(s)) => Some(MaybeStr::Str(Cow::Borrowed(s))),
                                _ => None,
                            },
                        }),
                    };
                    self.tool_call(&call, out);
                }
            }
            if let Some(f) = &choice.finish_reason {
                self.finish = Some(stop_reason(f));
                self.close_block(out);
            }
        }
        if let Some(u) = chunk.usage.as_ref().filter(|u| u.is_object()) {
            self.tokens = Some(Tokens::from_openai(u));
        }
        if self.finish.is_some() && self.tokens.is_some() {
            self.message_delta(out);
        }
    }

    fn message_delta(&mut self, out: &mut Vec<u8>) {
        if self.delta_sent {
            return;
        }
        self.delta_sent = true;
        let stop_reason = match self.finish {
            _ if self.refusal => "refusal",
            Some("max_tokens") => "max_tokens",
            // Some servers say "stop" when the model called tools.
            _ if !self.tools.is_empty() => "tool_use",
            Some(s) => s,
            None => "end_turn",
        };
        event(
            out,
            "message_delta",
            &MessageDelta {
                kind: "message_delta",
                delta: StopDelta {
                    stop_reason,
                    stop_sequence: None,
                },
                usage: self.tokens.unwrap_or_default().anthropic(),
            },
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(None, out);
        self.close_block(out);
        self.message_delta(out);
        event(
            out,
            "message_stop",
            &TypeOnly {
                kind: "message_stop",
            },
        );
        self.done = true;
    }
}
