//! OpenAI Responses API wire shapes: the Response object, its `response.*` SSE event
//! sequence, and how a stream fails.
//!
//! Shapes follow the types of the official SDK (openai-python
//! `src/openai/types/responses/`: `response.py`, `response_usage.py`,
//! `response_output_message.py`, `response_function_tool_call.py`,
//! `response_reasoning_item.py` and the `response_*_event.py` files) and the API
//! reference's examples. Every event is a named SSE event (`event: TYPE`) whose data
//! repeats `type` and carries a `sequence_number` counting from 0; the stream ends
//! with `response.completed` and no `data: [DONE]`. HTTP error bodies are the
//! platform's `{"error":{"message","type","param","code"}}`, rendered by `openai`.

use bytes::Bytes;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::content::{
    json_bytes, random_id, sse_event, unix_now, Content, Ctx, Frame, BASE62, HEX,
};

static NULL: Value = Value::Null;

/// The request parameters a Response object echoes back, with the API's defaults for
/// the ones the request left out (the API reference's Response example).
pub(crate) fn echo(body: &Value) -> Map<String, Value> {
    let given = |k: &str| body.get(k).filter(|v| !v.is_null()).cloned();
    let mut m = Map::new();
    let defaults = [
        ("instructions", Value::Null),
        ("max_output_tokens", Value::Null),
        ("max_tool_calls", Value::Null),
        ("parallel_tool_calls", Value::Bool(true)),
        ("prompt_cache_key", Value::Null),
        ("prompt_cache_retention", Value::Null),
        ("safety_identifier", Value::Null),
        ("store", Value::Bool(true)),
        ("temperature", json!(1.0)),
        ("tool_choice", json!("auto")),
        ("tools", json!([])),
        ("top_logprobs", json!(0)),
        ("top_p", json!(1.0)),
        ("truncation", json!("disabled")),
        ("user", Value::Null),
        ("metadata", json!({})),
    ];
    for (k, default) in defaults {
        m.insert(k.to_owned(), given(k).unwrap_or(default));
    }
    // `auto` is answered with the tier that served the request.
    let tier = match body.get("service_tier").and_then(Value::as_str) {
        None | Some("auto") => "default",
        Some(t) => t,
    };
    m.insert("service_tier".to_owned(), json!(tier));
    let reasoning = body.get("reasoning");
    let field = |k: &str| {
        reasoning
            .and_then(|r| r.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    m.insert(
        "reasoning".to_owned(),
        json!({"effort": field("effort"), "summary": field("summary")}),
    );
    let mut text = json!({"format": {"type": "text"}, "verbosity": "medium"});
    if let (Some(Value::Object(asked)), Some(out)) = (body.get("text"), text.as_object_mut()) {
        for (k, v) in asked {
            out.insert(k.clone(), v.clone());
        }
    }
    m.insert("text".to_owned(), text);
    m
}

#[derive(Serialize)]
struct TokensIn {
    cached_tokens: u64,
    /// Required by the SDK's `InputTokensDetails` since openai-python 2.45.0.
    cache_write_tokens: u64,
}

#[derive(Serialize)]
struct TokensOut {
    reasoning_tokens: u64,
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    input_tokens_details: TokensIn,
    output_tokens: u64,
    output_tokens_details: TokensOut,
    total_tokens: u64,
}

fn usage(ctx: &Ctx, c: &Content) -> Usage {
    let out = c.output_tokens();
    Usage {
        input_tokens: ctx.input_tokens,
        input_tokens_details: TokensIn {
            cached_tokens: 0,
            cache_write_tokens: 0,
        },
        output_tokens: out,
        output_tokens_details: TokensOut {
            reasoning_tokens: c.thinking_pieces.len() as u64,
        },
        total_tokens: ctx.input_tokens + out,
    }
}

#[derive(Serialize, Clone, Copy)]
struct SummaryText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

fn summary_text(text: &str) -> SummaryText<'_> {
    SummaryText {
        kind: "summary_text",
        text,
    }
}

#[derive(Serialize, Clone, Copy)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    annotations: [(); 0],
    logprobs: [(); 0],
    text: &'a str,
}

fn output_text(text: &str) -> OutputText<'_> {
    OutputText {
        kind: "output_text",
        annotations: [],
        logprobs: [],
        text,
    }
}

/// An output item, as announced (`in_progress`, empty) or finished.
#[derive(Serialize, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Item<'a> {
    Reasoning {
        id: &'a str,
        summary: Vec<SummaryText<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<&'a str>,
    },
    Message {
        id: &'a str,
        status: &'static str,
        content: Vec<OutputText<'a>>,
        role: &'static str,
    },
    FunctionCall {
        id: &'a str,
        status: &'static str,
        arguments: &'a str,
        call_id: &'a str,
        name: &'a str,
    },
}

#[derive(Serialize)]
struct Failure<'a> {
    code: &'a str,
    message: &'a str,
}

/// The Response object, fields in the order of the API reference's example.
#[derive(Serialize)]
struct ResponseObj<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    completed_at: Option<u64>,
    error: Option<Failure<'a>>,
    incomplete_details: Option<()>,
    instructions: &'a Value,
    max_output_tokens: &'a Value,
    max_tool_calls: &'a Value,
    model: &'a str,
    output: &'a [Item<'a>],
    parallel_tool_calls: &'a Value,
    previous_response_id: Option<()>,
    prompt_cache_key: &'a Value,
    prompt_cache_retention: &'a Value,
    reasoning: &'a Value,
    safety_identifier: &'a Value,
    service_tier: &'a Value,
    store: &'a Value,
    temperature: &'a Value,
    text: &'a Value,
    tool_choice: &'a Value,
    tools: &'a Value,
    top_logprobs: &'a Value,
    top_p: &'a Value,
    truncation: &'a Value,
    usage: Option<Usage>,
    user: &'a Value,
    metadata: &'a Value,
}

fn response_obj<'a>(
    ctx: &'a Ctx,
    status: &'static str,
    output: &'a [Item<'a>],
    usage: Option<Usage>,
    error: Option<Failure<'a>>,
) -> ResponseObj<'a> {
    let e = |k: &str| ctx.echo.get(k).unwrap_or(&NULL);
    ResponseObj {
        id: &ctx.response_id,
        object: "response",
        created_at: ctx.created_at,
        status,
        background: false,
        completed_at: (status == "completed").then(unix_now),
        error,
        incomplete_details: None,
        instructions: e("instructions"),
        max_output_tokens: e("max_output_tokens"),
        max_tool_calls: e("max_tool_calls"),
        model: &ctx.model,
        output,
        parallel_tool_calls: e("parallel_tool_calls"),
        previous_response_id: None,
        prompt_cache_key: e("prompt_cache_key"),
        prompt_cache_retention: e("prompt_cache_retention"),
        reasoning: e("reasoning"),
        safety_identifier: e("safety_identifier"),
        service_tier: e("service_tier"),
        store: e("store"),
        temperature: e("temperature"),
        text: e("text"),
        tool_choice: e("tool_choice"),
        tools: e("tools"),
        top_logprobs: e("top_logprobs"),
        top_p: e("top_p"),
        truncation: e("truncation"),
        usage,
        user: e("user"),
        metadata: e("metadata"),
    }
}

/// The ids of one reply's items, made once so every event about an item agrees.
struct Ids {
    reasoning: String,
    message: String,
    function_call: String,
    encrypted: Option<String>,
}

impl Ids {
    fn new(ctx: &Ctx, c: &Content) -> Ids {
        Ids {
            reasoning: random_id("rs_", 48, HEX),
            message: random_id("msg_", 48, HEX),
            function_call: random_id("fc_", 48, HEX),
            // Opaque to clients; the real ones are Fernet tokens (`gAAAAA…`).
            encrypted: (ctx.include_encrypted && c.thinking.is_some())
                .then(|| random_id("gAAAAAB", 120, BASE62)),
        }
    }
}

/// The finished output items, in output order: reasoning, message, function call.
fn final_items<'a>(ids: &'a Ids, c: &'a Content) -> Vec<Item<'a>> {
    let mut items = Vec::with_capacity(3);
    if let Some(thinking) = &c.thinking {
        items.push(Item::Reasoning {
            id: &ids.reasoning,
            summary: vec![summary_text(thinking)],
            encrypted_content: ids.encrypted.as_deref(),
        });
    }
    if let Some(text) = &c.text {
        items.push(Item::Message {
            id: &ids.message,
            status: "completed",
            content: vec![output_text(text)],
            role: "assistant",
        });
    }
    if let Some(t) = &c.tool {
        items.push(Item::FunctionCall {
            id: &ids.function_call,
            status: "completed",
            arguments: &t.arguments,
            call_id: &t.id,
            name: &t.name,
        });
    }
    items
}

/// The non-streaming Response body.
pub(crate) fn response(ctx: &Ctx, c: &Content) -> Bytes {
    let ids = Ids::new(ctx, c);
    let output = final_items(&ids, c);
    json_bytes(&response_obj(
        ctx,
        "completed",
        &output,
        Some(usage(ctx, c)),
        None,
    ))
}

/// `{"type", "sequence_number", ...body}`: every event's data.
#[derive(Serialize)]
struct Event<'a, T> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: usize,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct ResponseEv<'a> {
    response: ResponseObj<'a>,
}

#[derive(Serialize)]
struct ItemEv<'a> {
    output_index: usize,
    item: Item<'a>,
}

#[derive(Serialize)]
struct PartEv<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    part: OutputText<'a>,
}

#[derive(Serialize)]
struct TextDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    delta: &'a str,
    logprobs: [(); 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    obfuscation: Option<String>,
}

#[derive(Serialize)]
struct TextDone<'a> {
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    text: &'a str,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct SummaryPartEv<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: usize,
    part: SummaryText<'a>,
}

#[derive(Serialize)]
struct SummaryDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: usize,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    obfuscation: Option<String>,
}

#[derive(Serialize)]
struct SummaryDone<'a> {
    item_id: &'a str,
    output_index: usize,
    summary_index: usize,
    text: &'a str,
}

#[derive(Serialize)]
struct ArgsDelta<'a> {
    item_id: &'a str,
    output_index: usize,
    delta: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    obfuscation: Option<String>,
}

#[derive(Serialize)]
struct ArgsDone<'a> {
    item_id: &'a str,
    output_index: usize,
    name: &'a str,
    arguments: &'a str,
}

/// Numbers the events of one stream as it renders them.
struct Events {
    frames: Vec<Frame>,
    obfuscation: bool,
}

impl Events {
    fn push<T: Serialize>(&mut self, kind: &str, content: bool, body: T) {
        let bytes = sse_event(
            kind,
            &Event {
                kind,
                sequence_number: self.frames.len(),
                body,
            },
        );
        self.frames.push(Frame { bytes, content });
    }

    /// The random padding the API adds to delta events (on by default,
    /// `stream_options.include_obfuscation: false` turns it off).
    fn pad(&self, delta: &str) -> Option<String> {
        if !self.obfuscation {
            return None;
        }
        let len = 16usize
            .saturating_sub(delta.len())
            .max(rand::rng().random_range(1..4));
        Some(random_id("", len, BASE62))
    }
}

/// The whole event sequence of a successful reply: response.created,
/// response.in_progress, then per output item added / deltas / done, then
/// response.completed with the full Response and its usage.
pub(crate) fn stream_frames(ctx: &Ctx, c: &Content) -> Vec<Frame> {
    let ids = Ids::new(ctx, c);
    let mut ev = Events {
        frames: Vec::with_capacity(
            12 + c.text_pieces.len()
                + c.thinking_pieces.len()
                + c.tool.as_ref().map_or(0, |t| t.pieces.len()),
        ),
        obfuscation: ctx.obfuscation,
    };
    for kind in ["response.created", "response.in_progress"] {
        ev.push(
            kind,
            false,
            ResponseEv {
                response: response_obj(ctx, "in_progress", &[], None, None),
            },
        );
    }
    let mut index = 0;
    if let Some(thinking) = &c.thinking {
        let id = ids.reasoning.as_str();
        ev.push(
            "response.output_item.added",
            false,
            ItemEv {
                output_index: index,
                item: Item::Reasoning {
                    id,
                    summary: Vec::new(),
                    encrypted_content: None,
                },
            },
        );
        ev.push(
            "response.reasoning_summary_part.added",
            false,
            SummaryPartEv {
                item_id: id,
                output_index: index,
                summary_index: 0,
                part: summary_text(""),
            },
        );
        for piece in c.thinking_pieces() {
            let obfuscation = ev.pad(piece);
            ev.push(
                "response.reasoning_summary_text.delta",
                true,
                SummaryDelta {
                    item_id: id,
                    output_index: index,
                    summary_index: 0,
                    delta: piece,
                    obfuscation,
                },
            );
        }
        ev.push(
            "response.reasoning_summary_text.done",
            false,
            SummaryDone {
                item_id: id,
                output_index: index,
                summary_index: 0,
                text: thinking,
            },
        );
        ev.push(
            "response.reasoning_summary_part.done",
            false,
            SummaryPartEv {
                item_id: id,
                output_index: index,
                summary_index: 0,
                part: summary_text(thinking),
            },
        );
        ev.push(
            "response.output_item.done",
            false,
            ItemEv {
                output_index: index,
                item: Item::Reasoning {
                    id,
                    summary: vec![summary_text(thinking)],
                    encrypted_content: ids.encrypted.as_deref(),
                },
            },
        );
        index += 1;
    }
    if let Some(text) = &c.text {
        let id = ids.message.as_str();
        ev.push(
            "response.output_item.added",
            false,
            ItemEv {
                output_index: index,
                item: Item::Message {
                    id,
                    status: "in_progress",
                    content: Vec::new(),
                    role: "assistant",
                },
            },
        );
        ev.push(
            "response.content_part.added",
            false,
            PartEv {
                item_id: id,
                output_index: index,
                content_index: 0,
                part: output_text(""),
            },
        );
        for piece in c.text_pieces() {
            let obfuscation = ev.pad(piece);
            ev.push(
                "response.output_text.delta",
                true,
                TextDelta {
                    item_id: id,
                    output_index: index,
                    content_index: 0,
                    delta: piece,
                    logprobs: [],
                    obfuscation,
                },
            );
        }
        ev.push(
            "response.output_text.done",
            false,
            TextDone {
                item_id: id,
                output_index: index,
                content_index: 0,
                text,
                logprobs: [],
            },
        );
        ev.push(
            "response.content_part.done",
            false,
            PartEv {
                item_id: id,
                output_index: index,
                content_index: 0,
                part: output_text(text),
            },
        );
        ev.push(
            "response.output_item.done",
            false,
            ItemEv {
                output_index: index,
                item: Item::Message {
                    id,
                    status: "completed",
                    content: vec![output_text(text)],
                    role: "assistant",
                },
            },
        );
        index += 1;
    }
    if let Some(t) = &c.tool {
        let id = ids.function_call.as_str();
        ev.push(
            "response.output_item.added",
            false,
            ItemEv {
                output_index: index,
                item: Item::FunctionCall {
                    id,
                    status: "in_progress",
                    arguments: "",
                    call_id: &t.id,
                    name: &t.name,
                },
            },
        );
        for r in &t.pieces {
            let piece = &t.arguments[r.clone()];
            let obfuscation = ev.pad(piece);
            ev.push(
                "response.function_call_arguments.delta",
                true,
                ArgsDelta {
                    item_id: id,
                    output_index: index,
                    delta: piece,
                    obfuscation,
                },
            );
        }
        ev.push(
            "response.function_call_arguments.done",
            false,
            ArgsDone {
                item_id: id,
                output_index: index,
                name: &t.name,
                arguments: &t.arguments,
            },
        );
        ev.push(
            "response.output_item.done",
            false,
            ItemEv {
                output_index: index,
                item: Item::FunctionCall {
                    id,
                    status: "completed",
                    arguments: &t.arguments,
                    call_id: &t.id,
                    name: &t.name,
                },
            },
        );
    }
    let output = final_items(&ids, c);
    ev.push(
        "response.completed",
        false,
        ResponseEv {
            response: response_obj(ctx, "completed", &output, Some(usage(ctx, c)), None),
        },
    );
    ev.frames
}

/// The `response.error` code and message the API reports for an error condition named
/// by `error_type` (Anthropic or OpenAI vocabulary). Codes are those of the SDK's
/// `ResponseError.code` plus `server_is_overloaded`/`context_length_exceeded`, which
/// Codex CLI handles in `response.failed` (codex-rs `process_responses_event`).
fn failure(ctx: &Ctx, error_type: &str) -> (String, String) {
    let (code, message) = match error_type {
        "overloaded_error" | "server_is_overloaded" | "service_unavailable_error" => (
            "server_is_overloaded",
            "Our servers are currently overloaded. Please try again later.".to_owned(),
        ),
        "rate_limit_error" | "requests" | "tokens" | "rate_limit_exceeded" => (
            "rate_limit_exceeded",
            format!(
                "Rate limit reached for {} in organization org-mock on tokens per min (TPM): \
                 Limit 30000, Used 30000, Requested 1. Please try again in 1s. Visit \
                 https://platform.openai.com/account/rate-limits to learn more.",
                ctx.model
            ),
        ),
        "insufficient_quota" | "billing_error" => (
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details. For \
             more information on this error, read the docs: \
             https://platform.openai.com/docs/guides/error-codes/api-errors."
                .to_owned(),
        ),
        "context_length_exceeded" => (
            "context_length_exceeded",
            "Your input exceeds the context window of this model. Please adjust your input and \
             try again."
                .to_owned(),
        ),
        "invalid_prompt" => (
            "invalid_prompt",
            "Invalid prompt: your prompt was flagged as potentially violating our usage policy."
                .to_owned(),
        ),
        other => {
            let code = match other {
                "api_error" | "server_error" | "timeout_error" | "timeout" => "server_error",
                other => other,
            };
            return (
                code.to_owned(),
                format!(
                    "An error occurred while processing your request. You can retry your \
                     request, or contact us through our help center at help.openai.com if the \
                     error persists. Please include the request ID {} in your message.",
                    ctx.request_id
                ),
            );
        }
    };
    (code.to_owned(), message)
}

/// How a Responses stream fails after it started: `event: response.failed` carrying
/// the Response with `status: "failed"` and `error: {code, message}`. That is what
/// the API sends when generation fails mid-stream: the SDK's `ResponseFailedEvent`,
/// Azure's in-stream rate limit quoted in earendil-works/pi#1458, and Codex CLI's
/// retry of `response.failed` with `rate_limit_exceeded` (openai/codex#40931). The
/// separate `event: error` (`ResponseErrorEvent`) is the Realtime/WebSocket-mode
/// shape; an HTTP stream ends on `response.failed`. `sequence_number` continues the
/// stream's numbering: `seq` events were sent before it.
pub(crate) fn stream_error_frame(
    ctx: &Ctx,
    error_type: &str,
    message: Option<&str>,
    seq: usize,
) -> Bytes {
    let (code, default_message) = failure(ctx, error_type);
    sse_event(
        "response.failed",
        &Event {
            kind: "response.failed",
            sequence_number: seq,
            body: ResponseEv {
                response: response_obj(
                    ctx,
                    "failed",
                    &[],
                    None,
                    Some(Failure {
                        code: &code,
                        message: message.unwrap_or(&default_message),
                    }),
                ),
            },
        },
    )
}

/// A 200 body cut off mid-object.
pub(crate) fn malformed_body(ctx: &Ctx) -> Bytes {
    Bytes::from(format!(
        "{{\"id\":\"{}\",\"object\":\"response\",\"created_at\":{},\"status\":\"completed\",\"model\":\"{}\",\"output\":[{{\"type\":\"mess",
        ctx.response_id,
        ctx.created_at,
        ctx.model.escape_default()
    ))
}

/// Named SSE events whose data lines are not JSON.
pub(crate) fn malformed_frames() -> Vec<Bytes> {
    vec![
        Bytes::from_static(
            b"event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\n\n",
        ),
        Bytes::from_static(b"event: response.output_text.delta\ndata: this is not json\n\n"),
        Bytes::from_static(b"event: response.completed\ndata: {\"type\":\"response.compl\n\n"),
    ]
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::mock::content::Dialect;
    use crate::mock::plan::ToolCall;

    fn ctx(body: Value) -> Ctx {
        let mut ctx = Ctx::new(Dialect::Responses, Instant::now());
        ctx.read_body(&body, body.to_string().len());
        ctx.echo = echo(&body);
        ctx
    }

    fn content(tool: bool, thinking: bool) -> Content {
        let call = ToolCall {
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        };
        Content::new(
            Dialect::Responses,
            || "Hello from alpha".to_owned(),
            None,
            3,
            tool.then_some(&call),
            thinking.then_some("some reasoning"),
        )
    }

    /// (event name, data) of each frame; the name must repeat the data's `type`.
    fn events(frames: &[Frame]) -> Vec<(String, Value)> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(&f.bytes).expect("utf-8");
                let (head, data) = text.split_once("\ndata: ").expect("event + data");
                let name = head.strip_prefix("event: ").expect("event line");
                let v: Value = serde_json::from_str(data.trim_end()).expect("json");
                assert_eq!(v["type"], name);
                (name.to_owned(), v)
            })
            .collect()
    }

    #[test]
    fn text_stream_sequence() {
        let ctx = ctx(json!({"model": "gpt-test", "input": "hi", "stream": true}));
        let c = content(false, false);
        let evs = events(&stream_frames(&ctx, &c));
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (i, (_, v)) in evs.iter().enumerate() {
            assert_eq!(v["sequence_number"], i, "{v}");
        }
        let created = &evs[0].1["response"];
        assert_eq!(created["status"], "in_progress");
        assert_eq!(created["output"], json!([]));
        assert_eq!(created["usage"], Value::Null);
        assert_eq!(created["id"], ctx.response_id.as_str());
        let item_id = evs[2].1["item"]["id"].as_str().expect("id").to_owned();
        assert!(item_id.starts_with("msg_"));
        let joined: String = evs[4..7]
            .iter()
            .map(|(_, v)| {
                assert_eq!(v["item_id"], item_id.as_str());
                assert!(v["obfuscation"].is_string());
                v["delta"].as_str().expect("delta").to_owned()
            })
            .collect();
        assert_eq!(joined, "Hello from alpha");
        assert_eq!(evs[7].1["text"], "Hello from alpha");
        let done = &evs[10].1["response"];
        assert_eq!(done["id"], created["id"]);
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0], evs[9].1["item"]);
        assert_eq!(done["usage"]["output_tokens"], 3);
        assert_eq!(
            done["usage"]["total_tokens"].as_u64(),
            Some(ctx.input_tokens + 3)
        );
    }

    #[test]
    fn reasoning_and_tool_call_stream() {
        let ctx = ctx(
            json!({"model": "m", "input": "hi", "include": ["reasoning.encrypted_content"],
                             "stream_options": {"include_obfuscation": false}}),
        );
        let c = content(true, true);
        let evs = events(&stream_frames(&ctx, &c));
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[2], "response.output_item.added");
        assert_eq!(names[3], "response.reasoning_summary_part.added");
        assert!(names.contains(&"response.reasoning_summary_text.done"));
        assert!(names.contains(&"response.function_call_arguments.done"));
        assert!(!names.contains(&"response.output_text.delta"));
        let mut args = String::new();
        for (n, v) in &evs {
            assert!(v.get("obfuscation").is_none(), "{v}");
            if n == "response.function_call_arguments.delta" {
                assert_eq!(v["output_index"], 1);
                args.push_str(v["delta"].as_str().unwrap_or_default());
            }
        }
        assert_eq!(
            serde_json::from_str::<Value>(&args).ok(),
            Some(json!({"city": "Paris"}))
        );
        let added_call = &evs
            .iter()
            .find(|(n, v)| n == "response.output_item.added" && v["output_index"] == 1)
            .expect("call added")
            .1["item"];
        assert_eq!(added_call["arguments"], "");
        assert_eq!(added_call["status"], "in_progress");
        let out = &evs.last().expect("completed").1["response"]["output"];
        assert_eq!(out[0]["type"], "reasoning");
        assert!(out[0]["encrypted_content"].is_string());
        assert_eq!(
            out[0]["summary"],
            json!([{"type": "summary_text", "text": "some reasoning"}])
        );
        assert_eq!(out[1]["type"], "function_call");
        assert_eq!(out[1]["call_id"], added_call["call_id"]);
        assert_eq!(out.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn response_object_shape() {
        let ctx = ctx(
            json!({"model": "gpt-test", "input": "hi", "instructions": "be brief",
                             "tools": [{"type": "function", "name": "f", "parameters": {}}],
                             "text": {"verbosity": "low"}, "service_tier": "auto"}),
        );
        let v: Value =
            serde_json::from_slice(&response(&ctx, &content(false, false))).expect("json");
        assert!(v["id"].as_str().is_some_and(|id| id.starts_with("resp_")));
        assert_eq!(v["object"], "response");
        assert_eq!(v["status"], "completed");
        assert_eq!(v["model"], "gpt-test");
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["incomplete_details"], Value::Null);
        assert_eq!(v["instructions"], "be brief");
        assert_eq!(v["parallel_tool_calls"], true);
        assert_eq!(v["tool_choice"], "auto");
        assert_eq!(v["tools"][0]["name"], "f");
        assert_eq!(
            v["text"],
            json!({"format": {"type": "text"}, "verbosity": "low"})
        );
        assert_eq!(v["service_tier"], "default");
        assert_eq!(v["truncation"], "disabled");
        assert_eq!(v["metadata"], json!({}));
        let msg = &v["output"][0];
        assert!(msg["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
        assert_eq!(
            msg["content"],
            json!([{"type": "output_text", "annotations": [], "logprobs": [], "text": "Hello from alpha"}])
        );
        assert_eq!(msg["role"], "assistant");
        assert_eq!(msg["status"], "completed");
        assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 0);
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
        // No encrypted reasoning unless `include` asks for it.
        let v: Value = serde_json::from_slice(&response(&ctx, &content(true, true))).expect("json");
        assert!(v["output"][0].get("encrypted_content").is_none());
        assert_eq!(v["output"][0]["id"].as_str().map(|s| &s[..3]), Some("rs_"));
        assert_eq!(v["output"][1]["type"], "function_call");
        assert!(v["output"][1]["id"]
            .as_str()
            .is_some_and(|s| s.starts_with("fc_")));
        assert!(v["output"][1]["call_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("call_")));
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
    }

    #[test]
    fn failure_event_continues_the_numbering() {
        let ctx = ctx(json!({"model": "gpt-test", "input": "hi"}));
        let f = stream_error_frame(&ctx, "rate_limit_error", None, 5);
        let text = std::str::from_utf8(&f).expect("utf-8");
        assert!(text.starts_with("event: response.failed\ndata: "));
        let v: Value =
            serde_json::from_str(text["event: response.failed\ndata: ".len()..].trim_end())
                .expect("json");
        assert_eq!(v["sequence_number"], 5);
        assert_eq!(v["response"]["id"], ctx.response_id.as_str());
        assert_eq!(v["response"]["status"], "failed");
        assert_eq!(v["response"]["error"]["code"], "rate_limit_exceeded");
        let f = stream_error_frame(&ctx, "overloaded_error", Some("busy"), 0);
        assert!(std::str::from_utf8(&f).is_ok_and(
            |t| t.contains(r#""error":{"code":"server_is_overloaded","message":"busy"}"#)
        ));
    }
}
