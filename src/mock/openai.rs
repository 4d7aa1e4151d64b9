//! OpenAI Chat Completions wire shapes: completion bodies, `chat.completion.chunk`
//! streams, and the error bodies the real API sends.
//!
//! Shapes are serde structs rather than `json!` so fields keep the API's order and
//! rendering stays allocation-light on the hot path.

use bytes::Bytes;
use serde::Serialize;

use super::content::{json_bytes, random_id, sse_data, unix_now, Content, Ctx, Frame, BASE62};

/// Sent while stalled: an SSE comment, which clients must ignore.
pub(crate) const HEARTBEAT: &[u8] = b": keep-alive\n\n";

const DONE: &[u8] = b"data: [DONE]\n\n";

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

fn usage(ctx: &Ctx, c: &Content) -> Usage {
    let out = c.output_tokens();
    Usage {
        prompt_tokens: ctx.input_tokens,
        completion_tokens: out,
        total_tokens: ctx.input_tokens + out,
    }
}

#[derive(Serialize)]
struct Function<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
    refusal: Option<()>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
}

fn finish_reason(c: &Content) -> &'static str {
    if c.tool.is_some() {
        "tool_calls"
    } else {
        "stop"
    }
}

/// The non-streaming `chat.completion` body.
pub(crate) fn completion(ctx: &Ctx, c: &Content) -> Bytes {
    let id = random_id("chatcmpl-", 29, BASE62);
    let tool_calls = c.tool.as_ref().map(|t| {
        [ToolCallOut {
            id: &t.id,
            kind: "function",
            function: Function {
                name: &t.name,
                arguments: &t.arguments,
            },
        }]
    });
    json_bytes(&Completion {
        id: &id,
        object: "chat.completion",
        created: unix_now(),
        model: &ctx.model,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content: c.text.as_deref(),
                reasoning_content: c.thinking.as_deref(),
                tool_calls,
                refusal: None,
            },
            logprobs: None,
            finish_reason: finish_reason(c),
        }],
        usage: usage(ctx, c),
    })
}

#[derive(Serialize)]
struct ChunkChoice<D> {
    index: u32,
    delta: D,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Chunk<'a, D> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChunkChoice<D>; 1],
}

#[derive(Serialize)]
struct UsageChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [(); 0],
    usage: Usage,
}

#[derive(Serialize)]
struct RoleDelta {
    role: &'static str,
    content: &'static str,
}

#[derive(Serialize)]
struct ContentDelta<'a> {
    content: &'a str,
}

#[derive(Serialize)]
struct ReasoningDelta<'a> {
    reasoning_content: &'a str,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolDeltaItem<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct ToolDelta<'a> {
    tool_calls: [ToolDeltaItem<'a>; 1],
}

#[derive(Serialize)]
struct EmptyDelta {}

/// Renders chunks that share the stream's id, timestamp and model.
struct ChunkWriter<'a> {
    id: String,
    created: u64,
    model: &'a str,
}

impl ChunkWriter<'_> {
    fn chunk<D: Serialize>(&self, delta: D, finish_reason: Option<&'static str>) -> Bytes {
        sse_data(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            choices: [ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }],
        })
    }
}

/// The whole `chat.completion.chunk` stream of a successful reply, `[DONE]` included.
pub(crate) fn stream_frames(ctx: &Ctx, c: &Content) -> Vec<Frame> {
    let w = ChunkWriter {
        id: random_id("chatcmpl-", 29, BASE62),
        created: unix_now(),
        model: &ctx.model,
    };
    let mut frames = Vec::with_capacity(8 + c.text_pieces.len() + c.thinking_pieces.len());
    frames.push(Frame::envelope(w.chunk(
        RoleDelta {
            role: "assistant",
            content: "",
        },
        None,
    )));
    for piece in c.thinking_pieces() {
        frames.push(Frame::content(w.chunk(
            ReasoningDelta {
                reasoning_content: piece,
            },
            None,
        )));
    }
    if c.text.is_some() {
        for piece in c.text_pieces() {
            frames.push(Frame::content(
                w.chunk(ContentDelta { content: piece }, None),
            ));
        }
    }
    if let Some(t) = &c.tool {
        frames.push(Frame::envelope(w.chunk(
            ToolDelta {
                tool_calls: [ToolDeltaItem {
                    index: 0,
                    id: Some(&t.id),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(&t.name),
                        arguments: "",
                    },
                }],
            },
            None,
        )));
        for r in &t.pieces {
            frames.push(Frame::content(w.chunk(
                ToolDelta {
                    tool_calls: [ToolDeltaItem {
                        index: 0,
                        id: None,
                        kind: None,
                        function: FunctionDelta {
                            name: None,
                            arguments: &t.arguments[r.clone()],
                        },
                    }],
                },
                None,
            )));
        }
    }
    frames.push(Frame::envelope(
        w.chunk(EmptyDelta {}, Some(finish_reason(c))),
    ));
    if ctx.include_usage {
        frames.push(Frame::envelope(sse_data(&UsageChunk {
            id: &w.id,
            object: "chat.completion.chunk",
            created: w.created,
            model: w.model,
            choices: [],
            usage: usage(ctx, c),
        })));
    }
    frames.push(Frame::envelope(Bytes::from_static(DONE)));
    frames
}

#[derive(Serialize)]
pub(crate) struct ErrorBody<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

#[derive(Serialize)]
struct ErrorEnvelope<E> {
    error: E,
}

/// `{"error":{"message","type","param","code"}}`
pub(crate) fn error(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    json_bytes(&ErrorEnvelope {
        error: ErrorBody {
            message,
            kind,
            param,
            code,
        },
    })
}

#[derive(Serialize)]
struct BareError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
}

const OVERLOADED: &str = "The server is overloaded or not ready yet.";

/// The body the real API sends with `status`.
pub(crate) fn status_body(ctx: &Ctx, status: u16) -> Bytes {
    match status {
        401 => error(
            "Incorrect API key provided: sk-mock****. You can find your API key at \
             https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        ),
        403 => error(
            "Country, region, or territory not supported",
            "request_forbidden",
            None,
            Some("unsupported_country_region_territory"),
        ),
        404 => error(
            &format!(
                "The model `{}` does not exist or you do not have access to it.",
                ctx.model
            ),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        ),
        429 => error(
            &format!(
                "Rate limit reached for {} in organization org-mock on requests per min (RPM): \
                 Limit 60, Used 60, Requested 1. Please try again in 1s. Visit \
                 https://platform.openai.com/account/rate-limits to learn more.",
                ctx.model
            ),
            "requests",
            None,
            Some("rate_limit_exceeded"),
        ),
        500 => error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        503 | 529 => json_bytes(&ErrorEnvelope {
            error: BareError {
                message: OVERLOADED,
                kind: "server_error",
            },
        }),
        s if s >= 500 => error(
            &format!("The server had an error processing your request (status {s})."),
            "server_error",
            None,
            None,
        ),
        s => error(
            &format!("Request failed with status {s}."),
            "invalid_request_error",
            None,
            None,
        ),
    }
}

/// What OpenAI sends for an error condition named by `error_type`. Anthropic type
/// names are mapped to OpenAI's equivalent; OpenAI names pass through.
fn typed_error(error_type: &str) -> (&str, &'static str, Option<&'static str>) {
    match error_type {
        "overloaded_error" => ("server_error", OVERLOADED, None),
        "api_error" | "server_error" => (
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
            None,
        ),
        "rate_limit_error" | "requests" | "rate_limit_exceeded" => (
            "requests",
            "Rate limit reached. Please try again later.",
            Some("rate_limit_exceeded"),
        ),
        "insufficient_quota" | "billing_error" => (
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details. For \
             more information on this error, read the docs: \
             https://platform.openai.com/docs/guides/error-codes/api-errors.",
            Some("insufficient_quota"),
        ),
        "context_length_exceeded" => (
            "invalid_request_error",
            "Your input exceeds the context window of this model. Please adjust your input and \
             try again.",
            Some("context_length_exceeded"),
        ),
        "timeout_error" => ("timeout", "Request timed out.", None),
        "authentication_error" => (
            "invalid_request_error",
            "Incorrect API key provided.",
            Some("invalid_api_key"),
        ),
        "not_found_error" => (
            "invalid_request_error",
            "The model does not exist or you do not have access to it.",
            Some("model_not_found"),
        ),
        other => (
            other,
            "An error occurred while processing your request.",
            None,
        ),
    }
}

/// The in-stream error chunk: `data: {"error":{...}}`.
pub(crate) fn stream_error_frame(error_type: &str, message: Option<&str>) -> Bytes {
    let (kind, default_message, code) = typed_error(error_type);
    sse_data(&ErrorEnvelope {
        error: ErrorBody {
            message: message.unwrap_or(default_message),
            kind,
            param: None,
            code,
        },
    })
}

/// The same error as a plain response body (for non-streaming requests).
pub(crate) fn typed_error_body(error_type: &str, message: Option<&str>) -> Bytes {
    let (kind, default_message, code) = typed_error(error_type);
    error(message.unwrap_or(default_message), kind, None, code)
}

/// The 400 for a body that is not JSON.
pub(crate) fn invalid_json() -> Bytes {
    error(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't \
         using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was \
         sent was not valid JSON. If you have trouble figuring out how to fix this, please \
         contact us through our help center at help.openai.com.)",
        "invalid_request_error",
        None,
        None,
    )
}

/// The 404 for any path the mock does not serve.
pub(crate) fn not_found(method: &str, path: &str) -> Bytes {
    error(
        &format!("Invalid URL ({method} {path})"),
        "invalid_request_error",
        None,
        None,
    )
}

/// A 200 body cut off mid-object.
pub(crate) fn malformed_body(ctx: &Ctx) -> Bytes {
    Bytes::from(format!(
        "{{\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion\",\"model\":\"{}\",\"choices\":[{{\"index\":0,\"mess",
        ctx.model.escape_default()
    ))
}

/// SSE events whose data lines are not JSON.
pub(crate) fn malformed_frames() -> Vec<Bytes> {
    vec![
        Bytes::from_static(b"data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"choices\":[{\n\n"),
        Bytes::from_static(b"data: this is not json\n\n"),
        Bytes::from_static(DONE),
    ]
}
