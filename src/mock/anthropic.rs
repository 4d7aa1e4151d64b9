//! Anthropic Messages wire shapes: message bodies, the named-event SSE sequence
//! (`message_start` … `message_stop`), and the error bodies the real API sends.
//!
//! Shapes are serde structs rather than `json!` so fields keep the API's order and
//! rendering stays allocation-light on the hot path.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::content::{json_bytes, random_id, sse_event, Content, Ctx, Frame, BASE62};

/// The real API's keep-alive event (note the space: that is how it is sent).
pub(crate) const HEARTBEAT: &[u8] = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: &'a Value,
    },
}

#[derive(Serialize)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: Usage,
}

fn stop_reason(c: &Content) -> &'static str {
    if c.tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    }
}

/// The non-streaming `message` body.
pub(crate) fn message(ctx: &Ctx, c: &Content) -> Bytes {
    let id = random_id("msg_01", 22, BASE62);
    let mut content = Vec::with_capacity(3);
    if let Some(thinking) = &c.thinking {
        content.push(Block::Thinking {
            thinking,
            signature: &c.signature,
        });
    }
    if let Some(text) = &c.text {
        content.push(Block::Text { text });
    }
    if let Some(t) = &c.tool {
        content.push(Block::ToolUse {
            id: &t.id,
            name: &t.name,
            input: &t.input,
        });
    }
    json_bytes(&Message {
        id: &id,
        kind: "message",
        role: "assistant",
        model: &ctx.model,
        content,
        stop_reason: Some(stop_reason(c)),
        stop_sequence: None,
        usage: Usage {
            input_tokens: ctx.input_tokens,
            output_tokens: c.output_tokens(),
        },
    })
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: Message<'a>,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    content_block: StartBlock<'a>,
}

/// Blocks as announced by `content_block_start`: empty, filled by deltas.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    Text {
        text: &'static str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: Delta<'a>,
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct OutputUsage {
    output_tokens: u64,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: OutputUsage,
}

#[derive(Serialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: &'static str,
}

fn block_start(index: usize, block: StartBlock<'_>) -> Bytes {
    sse_event(
        "content_block_start",
        &BlockStart {
            kind: "content_block_start",
            index,
            content_block: block,
        },
    )
}

fn block_delta(index: usize, delta: Delta<'_>) -> Bytes {
    sse_event(
        "content_block_delta",
        &BlockDelta {
            kind: "content_block_delta",
            index,
            delta,
        },
    )
}

fn block_stop(index: usize) -> Bytes {
    sse_event(
        "content_block_stop",
        &BlockStop {
            kind: "content_block_stop",
            index,
        },
    )
}

/// The whole event sequence of a successful reply, as the real API orders it:
/// message_start, then per block start/deltas/stop (ping after the first start),
/// then message_delta and message_stop.
pub(crate) fn stream_frames(ctx: &Ctx, c: &Content) -> Vec<Frame> {
    let id = random_id("msg_01", 22, BASE62);
    let mut frames = Vec::with_capacity(12 + c.text_pieces.len() + c.thinking_pieces.len());
    frames.push(Frame::envelope(sse_event(
        "message_start",
        &MessageStart {
            kind: "message_start",
            message: Message {
                id: &id,
                kind: "message",
                role: "assistant",
                model: &ctx.model,
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: Usage {
                    input_tokens: ctx.input_tokens,
                    output_tokens: 1,
                },
            },
        },
    )));
    let mut index = 0;
    // The real API sends one ping right after the first content_block_start.
    let start = |frames: &mut Vec<Frame>, index: usize, block: StartBlock<'_>| {
        frames.push(Frame::envelope(block_start(index, block)));
        if index == 0 {
            frames.push(Frame::envelope(Bytes::from_static(HEARTBEAT)));
        }
    };
    if c.thinking.is_some() {
        start(
            &mut frames,
            index,
            StartBlock::Thinking {
                thinking: "",
                signature: "",
            },
        );
        for piece in c.thinking_pieces() {
            frames.push(Frame::content(block_delta(
                index,
                Delta::Thinking { thinking: piece },
            )));
        }
        frames.push(Frame::envelope(block_delta(
            index,
            Delta::Signature {
                signature: &c.signature,
            },
        )));
        frames.push(Frame::envelope(block_stop(index)));
        index += 1;
    }
    if c.text.is_some() {
        start(&mut frames, index, StartBlock::Text { text: "" });
        for piece in c.text_pieces() {
            frames.push(Frame::content(block_delta(
                index,
                Delta::Text { text: piece },
            )));
        }
        frames.push(Frame::envelope(block_stop(index)));
        index += 1;
    }
    if let Some(t) = &c.tool {
        start(
            &mut frames,
            index,
            StartBlock::ToolUse {
                id: &t.id,
                name: &t.name,
                input: EmptyObject {},
            },
        );
        // The real API opens every tool input with an empty fragment.
        frames.push(Frame::envelope(block_delta(
            index,
            Delta::InputJson { partial_json: "" },
        )));
        for r in &t.pieces {
            frames.push(Frame::content(block_delta(
                index,
                Delta::InputJson {
                    partial_json: &t.arguments[r.clone()],
                },
            )));
        }
        frames.push(Frame::envelope(block_stop(index)));
    }
    frames.push(Frame::envelope(sse_event(
        "message_delta",
        &MessageDelta {
            kind: "message_delta",
            delta: StopDelta {
                stop_reason: stop_reason(c),
                stop_sequence: None,
            },
            usage: OutputUsage {
                output_tokens: c.output_tokens(),
            },
        },
    )));
    frames.push(Frame::envelope(sse_event(
        "message_stop",
        &TypeOnly {
            kind: "message_stop",
        },
    )));
    frames
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorDetail<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// `{"type":"error","error":{"type","message"},"request_id"}`
pub(crate) fn error(ctx: &Ctx, kind: &str, message: &str) -> Bytes {
    json_bytes(&ErrorBody {
        kind: "error",
        error: ErrorDetail { kind, message },
        request_id: Some(&ctx.request_id),
    })
}

/// The error type the real API uses for `status`.
pub(crate) fn error_type_for(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        500 => "api_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The message the real API pairs with an error type.
fn default_message(ctx: &Ctx, kind: &str) -> String {
    match kind {
        "invalid_request_error" => {
            "There was an issue with the format or content of your request.".to_owned()
        }
        "authentication_error" => "invalid x-api-key".to_owned(),
        "billing_error" => "Your credit balance is too low to access the Anthropic API. Please \
                            go to Plans & Billing to upgrade or purchase credits."
            .to_owned(),
        "permission_error" => {
            "Your API key does not have permission to use the specified resource.".to_owned()
        }
        "not_found_error" => format!("model: {}", ctx.model),
        "request_too_large" => "Request exceeds the maximum allowed number of bytes.".to_owned(),
        "rate_limit_error" => "Number of requests has exceeded your rate limit \
                               (https://docs.claude.com/en/api/rate-limits). Please try again \
                               later or contact sales at https://www.anthropic.com/contact-sales \
                               to discuss your options for a rate limit increase."
            .to_owned(),
        "api_error" => "Internal server error".to_owned(),
        "timeout_error" => "Request timed out".to_owned(),
        "overloaded_error" => "Overloaded".to_owned(),
        other => format!("Error ({other})"),
    }
}

/// The body the real API sends with `status`.
pub(crate) fn status_body(ctx: &Ctx, status: u16) -> Bytes {
    let kind = error_type_for(status);
    error(ctx, kind, &default_message(ctx, kind))
}

/// Anthropic's name for an error type given in either vocabulary.
fn anthropic_type(error_type: &str) -> &str {
    match error_type {
        "server_error" => "api_error",
        "requests" | "rate_limit_exceeded" => "rate_limit_error",
        "invalid_api_key" => "authentication_error",
        "timeout" => "timeout_error",
        other => other,
    }
}

/// The in-stream `event: error` (no request_id inside, as the real API sends it).
pub(crate) fn stream_error_frame(ctx: &Ctx, error_type: &str, message: Option<&str>) -> Bytes {
    let kind = anthropic_type(error_type);
    let default;
    let message = match message {
        Some(m) => m,
        None => {
            default = default_message(ctx, kind);
            &default
        }
    };
    sse_event(
        "error",
        &ErrorBody {
            kind: "error",
            error: ErrorDetail { kind, message },
            request_id: None,
        },
    )
}

/// The same error as a plain response body (for non-streaming requests).
pub(crate) fn typed_error_body(ctx: &Ctx, error_type: &str, message: Option<&str>) -> Bytes {
    let kind = anthropic_type(error_type);
    match message {
        Some(m) => error(ctx, kind, m),
        None => error(ctx, kind, &default_message(ctx, kind)),
    }
}

/// A 200 body cut off mid-object.
pub(crate) fn malformed_body(ctx: &Ctx) -> Bytes {
    Bytes::from(format!(
        "{{\"id\":\"msg_01mock\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"{}\",\"content\":[{{\"type\":\"te",
        ctx.model.escape_default()
    ))
}

/// Named SSE events whose data lines are not JSON.
pub(crate) fn malformed_frames() -> Vec<Bytes> {
    vec![
        Bytes::from_static(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\n\n",
        ),
        Bytes::from_static(b"event: content_block_delta\ndata: this is not json\n\n"),
        Bytes::from_static(b"event: message_stop\ndata: {\"type\":\"message_st\n\n"),
    ]
}
