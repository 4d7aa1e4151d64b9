//! Cross-dialect translation between all three dialects: OpenAI chat completions ⇄ Anthropic
//! messages, OpenAI chat completions ⇄ the OpenAI Responses API (`responses_chat` and
//! `responses_stream`: a Responses client over a chat backend; `chat_responses` and
//! `stream_responses`: a chat client over a Responses backend), and the Responses API ⇄
//! Anthropic messages (`responses_anthropic`: mostly the two chat pairs composed, with the web
//! search tool carried across; an Anthropic stream reaches a Responses client directly through
//! `responses_stream`): requests, responses and streams.
//!
//! Only used when a client's dialect differs from the backend's; same-dialect traffic never
//! comes here. Request and non-streaming response translation parse the whole body (they are
//! small and rare next to streams); [`StreamTranslator`] works event by event, emitting the
//! client's bytes as soon as each backend event arrives, and never holds the stream.
//!
//! # Choices worth knowing
//!
//! - **System prompts.** OpenAI `system` and `developer` messages, wherever they appear, are
//!   hoisted into Anthropic's top-level `system` (a plain string for one string message, text
//!   blocks otherwise). Anthropic's `system` becomes one leading OpenAI `system` message whose
//!   content is the text blocks joined with a blank line (many OpenAI-compatible servers only
//!   accept string system content). Claude Code's mid-conversation `system` turns stay in place.
//! - **Roles.** Consecutive same-role messages are merged for Anthropic (string content becomes
//!   text blocks); OpenAI `tool` messages become `tool_result` blocks at the head of the next
//!   user turn. Back to OpenAI, a user turn's `tool_result` blocks become `tool` messages (in
//!   order, before the rest of the turn, which stays a `user` message with content parts).
//!   Images inside a `tool_result` (OpenAI tool messages are text-only) move to that user
//!   message. Several text blocks of an assistant turn are concatenated.
//! - **Tool calls.** `arguments` (a JSON string) ⇄ `input` (an object); arguments that are not
//!   a JSON object become `{}` (lossy). Tool-call ids are kept as they are, except characters
//!   Anthropic refuses in ids (anything outside `[A-Za-z0-9_-]`), which become `_` the same way
//!   in calls and results, so pairs still match. An Anthropic request whose history holds tool
//!   blocks but no `tools` gets placeholder definitions for the names used and
//!   `tool_choice: none` (the Messages API refuses tool blocks without tool definitions).
//! - **Reasoning.** Anthropic `thinking` blocks ⇄ OpenAI `reasoning_content` (the field vLLM,
//!   DeepSeek, llama.cpp and others use; `reasoning`, as sent by OpenRouter, is read too), in
//!   responses and streams (`thinking_delta` ⇄ `delta.reasoning_content`). Thinking produced by
//!   an OpenAI backend reaches Anthropic clients as `thinking` blocks with an empty
//!   `signature` (there is none to give): if such a turn is later replayed to a real Anthropic
//!   backend as the latest assistant turn, that API may refuse it. In requests, reasoning
//!   history is dropped both ways (debug log): OpenAI clients' `reasoning_content` has no
//!   signature Anthropic would accept, and OpenAI backends take no reasoning input. Request-side
//!   reasoning *settings* (`thinking`, `output_config.effort` ⇄ `reasoning_effort`) are not
//!   translated: the other side's models may not support them and reject the request.
//! - **Parameters.** `max_completion_tokens` (else `max_tokens`, else
//!   [`Options::default_max_tokens`]) → `max_tokens`; Anthropic's `max_tokens` goes out as
//!   OpenAI `max_tokens`, which every OpenAI-compatible server reads (OpenAI's own reasoning
//!   models want `max_completion_tokens`). Temperatures above Anthropic's maximum of 1 are
//!   clamped; `top_p` is dropped when `temperature` is also set (recent Claude models refuse
//!   both); whitespace-only stop sequences are dropped (Anthropic refuses them) and OpenAI
//!   takes at most 4. `response_format` `json_schema` ⇄ `output_config.format`.
//! - **Usage.** OpenAI `prompt_tokens` counts cached tokens, Anthropic `input_tokens` does not:
//!   `prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens` and
//!   `prompt_tokens_details.cached_tokens = cache_read_input_tokens` (and back, cache creation
//!   being unknown on the OpenAI side, so 0).
//! - **Ids.** Response ids are derived from the upstream id (`msg_X` ⇄ `chatcmpl-X`); the
//!   response `model` is the client's route name.
//! - **Dropped.** Whatever one side cannot express is dropped with a `debug` log line, or with
//!   [`Options::strict`] rejected as [`TranslateError::Unsupported`]. Hints without effect on
//!   the output (`cache_control`, image `detail`, `store`, `service_tier`, …) are always
//!   dropped silently (debug log only).
//!
//! - **Responses client → chat backend.** `input` items become chat messages
//!   (`function_call` items join the assistant message before them, `function_call_output`
//!   items become `tool` messages); encrypted `reasoning` items are dropped (only the provider
//!   that wrote them can read them); built-in tools are dropped when offered and refused when
//!   `tool_choice` forces one; stored state (`previous_response_id`, `conversation`,
//!   `item_reference`, `prompt`) is always refused. Answers become Response objects, streams
//!   `response.*` events numbered from 0, ending with `response.completed` (or
//!   `response.incomplete`) carrying the whole Response.
//!
//! - **Built-in tools.** Tools only the client's provider runs are dropped when offered and
//!   named ([`Translated::dropped_tools`], the `x-switchyard-dropped-tools` header), refused
//!   when `tool_choice` forces one; a web search crosses between the Responses API and
//!   Anthropic, which both run one.
//!
//! The full table is in the README ("Cross-dialect translation").

mod chat_responses;
mod common;
mod request;
mod response;
mod responses_anthropic;
mod responses_chat;
mod responses_stream;
mod stream;
mod stream_responses;

// The tests check translated requests with the mock's validator (the independent oracle).
#[cfg(all(test, feature = "mock"))]
mod tests;

use bytes::Bytes;

use super::Dialect;

pub use common::TranslateError;
pub use stream::StreamTranslator;

/// Per-backend translation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `max_tokens` sent to an Anthropic backend when the OpenAI client sent neither
    /// `max_tokens` nor `max_completion_tokens` (Anthropic requires it).
    pub default_max_tokens: u32,
    /// Reject requests using a feature the backend's API lacks instead of dropping it.
    pub strict: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            default_max_tokens: 4096,
            strict: false,
        }
    }
}

/// A translated request: the body for the backend, and the built-in tools the client offered
/// that the backend cannot run (dropped; the gateway names them in a response header).
#[derive(Debug)]
pub struct Translated {
    pub body: Bytes,
    pub dropped_tools: Vec<String>,
}

/// A client request body in `from` dialect → the body for a `to` backend, with `model` set to
/// `model` (the chain entry's model). `from != to` (with `from == to` only `model` changes).
pub fn request(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    model: &str,
    opts: &Options,
) -> Result<Bytes, TranslateError> {
    translate_request(from, to, body, model, opts).map(|t| t.body)
}

/// [`request`], saying which offered built-in tools were dropped.
pub fn translate_request(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    model: &str,
    opts: &Options,
) -> Result<Translated, TranslateError> {
    let (value, dropped_tools) = match (from, to) {
        (Dialect::OpenAi, Dialect::Anthropic) => {
            (request::openai_to_anthropic(body, model, opts)?, Vec::new())
        }
        (Dialect::Anthropic, Dialect::OpenAi) => {
            responses_anthropic::anthropic_to_chat(body, model, opts)?
        }
        (Dialect::Responses, Dialect::OpenAi) => {
            let via = responses_chat::Via::Chat;
            let (v, b) = responses_chat::responses_to_chat_via(body, model, opts, via)?;
            (v, b.dropped)
        }
        (Dialect::OpenAi, Dialect::Responses) => (
            chat_responses::chat_to_responses(body, model, opts)?,
            Vec::new(),
        ),
        (Dialect::Responses, Dialect::Anthropic) => {
            responses_anthropic::responses_to_anthropic(body, model, opts)?
        }
        (Dialect::Anthropic, Dialect::Responses) => {
            responses_anthropic::anthropic_to_responses(body, model, opts)?
        }
        (_, _) => (request::same_dialect(body, model)?, Vec::new()),
    };
    Ok(Translated {
        body: common::to_bytes(&value),
        dropped_tools,
    })
}

/// A backend's successful non-streaming response body in `from` (backend) dialect → `to`
/// (client) dialect. `client_model` is what the client asked for (the route name); it becomes
/// the response's `model`.
pub fn response(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    client_model: &str,
) -> Result<Bytes, TranslateError> {
    response_for(from, to, body, client_model, &[])
}

/// The names of the freeform (`custom`) tools a Responses client's request offers (its calls
/// of them go back as `custom_tool_call` items). Parses the body: only for translated legs.
pub fn custom_tools(body: &[u8]) -> Vec<String> {
    responses_chat::custom_tool_names(body)
}

/// [`response`], for a Responses client whose request offered the freeform tools `custom`.
pub fn response_for(
    from: Dialect,
    to: Dialect,
    body: &[u8],
    client_model: &str,
    custom: &[String],
) -> Result<Bytes, TranslateError> {
    let value = match (from, to) {
        (Dialect::Anthropic, Dialect::OpenAi) => response::anthropic_to_openai(body, client_model)?,
        (Dialect::OpenAi, Dialect::Anthropic) => response::openai_to_anthropic(body, client_model)?,
        (Dialect::OpenAi, Dialect::Responses) => {
            responses_chat::chat_to_responses(body, client_model, custom)?
        }
        (Dialect::Responses, Dialect::OpenAi) => {
            chat_responses::responses_to_chat(body, client_model)?
        }
        (Dialect::Anthropic, Dialect::Responses) => {
            responses_anthropic::anthropic_answer_to_responses(body, client_model, custom)?
        }
        (Dialect::Responses, Dialect::Anthropic) => {
            responses_anthropic::responses_answer_to_anthropic(body, client_model)?
        }
        (_, _) => response::same_dialect(body, client_model)?,
    };
    Ok(common::to_bytes(&value))
}

/// Whether `stream_options.include_usage` was requested (OpenAI client bodies), for
/// [`StreamTranslator::new`].
pub fn wants_usage(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct StreamOptions {
        include_usage: Option<bool>,
    }
    #[derive(serde::Deserialize)]
    struct Body {
        stream_options: Option<StreamOptions>,
    }
    serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.stream_options)
        .and_then(|o| o.include_usage)
        .unwrap_or(false)
}
