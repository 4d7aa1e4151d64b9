//! OpenAI chat completions client → OpenAI Responses API backend: the request and the
//! non-streaming answer (the stream is [`super::stream_responses`]).
//!
//! # Choices worth knowing
//!
//! - **Instructions.** The system and developer messages that open the conversation become
//!   `instructions` (joined with a blank line); later ones stay in place as `developer`
//!   input messages.
//! - **History.** User content becomes `input_text` / `input_image` / `input_file` parts;
//!   assistant text becomes an assistant message with `output_text` parts; assistant
//!   `tool_calls` become `function_call` items (`call_id` = the chat id) and `tool` messages
//!   `function_call_output` items. Assistant `reasoning_content` is dropped (a Responses
//!   reasoning item needs the id or encrypted content the backend made; a chat client has
//!   neither).
//! - **Tools.** Chat `{type: function, function: {…}}` → the flat Responses function tool.
//!   `strict` is sent as `false` when the chat tool did not set it: chat's default is
//!   non-strict, the Responses API's is strict (which refuses most hand-written schemas).
//! - **Tokens.** `max_completion_tokens` (else `max_tokens`) → `max_output_tokens`, raised
//!   to the Responses minimum of 16 when smaller (the API refuses smaller values).
//! - **State.** `store: false` always: the gateway keeps no state for the client, and a
//!   response stored upstream could only be continued at that one backend — a chat client
//!   resends the whole conversation anyway, so storing would only keep data upstream.
//! - **`user`.** Sent as `user` (the Responses API still takes it, with the same deprecated
//!   meaning as in chat); `safety_identifier`, `prompt_cache_key`, `prompt_cache_retention`,
//!   `service_tier` and `metadata` pass through (the same fields exist there).
//! - **Dropped** (debug log; [`super::Options::strict`] refuses them): `n` > 1, `stop`,
//!   `logprobs`/`top_logprobs`, `logit_bias`, `frequency_penalty`/`presence_penalty`
//!   (non-zero), `seed`, `audio`, `modalities` other than text, `prediction`,
//!   `web_search_options`, legacy `functions`/`function_call`, non-function tools, input
//!   audio parts.
//! - **Answer.** `output` → one choice: `output_text` parts concatenated into `content`,
//!   `refusal` parts into `refusal`, `function_call` items → `tool_calls` (id = `call_id`),
//!   reasoning summaries (or reasoning text) → `reasoning_content`. `completed` → `stop`, or
//!   `tool_calls` when the model called functions; `incomplete` for `max_output_tokens` →
//!   `length`, for `content_filter` → `content_filter`. Usage: `input_tokens` (which, as
//!   `prompt_tokens`, includes cached tokens) → `prompt_tokens`, `output_tokens` →
//!   `completion_tokens`, with cached and reasoning token details. Id `chatcmpl-<resp id>`.

use serde_json::{json, Map, Value};

use super::common::{openai_id, take, type_of, unix_now, Lossy, Obj};
use super::{Options, TranslateError};

fn invalid(msg: impl Into<String>) -> TranslateError {
    TranslateError::Invalid(msg.into())
}

fn bad(msg: impl Into<String>) -> TranslateError {
    TranslateError::InvalidResponse(msg.into())
}

/// The Responses API refuses `max_output_tokens` below this.
pub(super) const MIN_OUTPUT_TOKENS: u64 = 16;

/// Chat fields that pass to the Responses API unchanged (same name, same meaning).
const SAME_FIELDS: &[&str] = &[
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
    "metadata",
];

/// Chat fields without effect on a Responses answer: dropped silently (debug log).
const HINTS: &[&str] = &["store", "stream_options"];

// ---------------------------------------------------------------------------------------------
// Request: chat → Responses
// ---------------------------------------------------------------------------------------------

pub(super) fn chat_to_responses(
    body: &[u8],
    model: &str,
    opts: &Options,
) -> Result<Value, TranslateError> {
    let mut req: Obj = match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err(invalid("the request body must be a JSON object")),
        Err(e) => return Err(invalid(format!("the request body is not valid JSON: {e}"))),
    };
    let lossy = Lossy {
        strict: opts.strict,
        backend: "OpenAI Responses",
    };
    let mut out = Obj::new();
    out.insert("model".into(), Value::String(model.into()));

    let messages = match take(&mut req, "messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(invalid("`messages` must not be empty")),
        Some(_) => return Err(invalid("`messages` must be an array")),
        None => return Err(invalid("`messages` is required")),
    };
    let (instructions, input) = messages_to_input(messages, lossy)?;
    if let Some(i) = instructions {
        out.insert("instructions".into(), Value::String(i));
    }
    out.insert("input".into(), Value::Array(input));

    let max = match take(&mut req, "max_completion_tokens") {
        Some(v) => {
            req.remove("max_tokens");
            Some(positive_int(&v, "max_completion_tokens")?)
        }
        None => match take(&mut req, "max_tokens") {
            Some(v) => Some(positive_int(&v, "max_tokens")?),
            None => None,
        },
    };
    if let Some(max) = max {
        if max < MIN_OUTPUT_TOKENS {
            lossy.note("a token limit below the Responses minimum of 16 (raised to 16)");
        }
        out.insert(
            "max_output_tokens".into(),
            max.max(MIN_OUTPUT_TOKENS).into(),
        );
    }

    for key in SAME_FIELDS {
        if let Some(v) = take(&mut req, key) {
            out.insert((*key).into(), v);
        }
    }
    if let Some(stream) = take(&mut req, "stream") {
        if !stream.is_boolean() {
            return Err(invalid("`stream` must be a boolean"));
        }
        out.insert("stream".into(), stream);
    }
    // The gateway keeps no state on the client's behalf (see the module docs).
    out.insert("store".into(), Value::Bool(false));

    if let Some(effort) = take(&mut req, "reasoning_effort") {
        out.insert("reasoning".into(), json!({ "effort": effort }));
    }
    let mut text = Obj::new();
    if let Some(verbosity) = take(&mut req, "verbosity") {
        text.insert("verbosity".into(), verbosity);
    }
    if let Some(format) = take(&mut req, "response_format") {
        if let Some(f) = text_format(format, lossy)? {
            text.insert("format".into(), f);
        }
    }
    if !text.is_empty() {
        out.insert("text".into(), Value::Object(text));
    }

    let mut tools = Vec::new();
    if let Some(list) = take(&mut req, "tools") {
        let Value::Array(list) = list else {
            return Err(invalid("`tools` must be an array"));
        };
        for t in list {
            if let Some(t) = function_tool(t, lossy)? {
                tools.push(t);
            }
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = take(&mut req, "tool_choice") {
        if let Some(c) = tool_choice(c, lossy)? {
            out.insert("tool_choice".into(), c);
        }
    }

    for (key, value) in req {
        if key == "model" || value.is_null() || HINTS.contains(&key.as_str()) {
            continue;
        }
        let default = match key.as_str() {
            "n" => value.as_u64() == Some(1),
            "frequency_penalty" | "presence_penalty" => value.as_f64() == Some(0.0),
            "logprobs" => value == Value::Bool(false),
            "top_logprobs" => value.as_u64() == Some(0),
            "logit_bias" => value.as_object().is_some_and(|o| o.is_empty()),
            "modalities" => value == json!(["text"]),
            _ => false,
        };
        if !default {
            lossy.drop(&format!("`{key}`"))?;
        }
    }
    Ok(Value::Object(out))
}

fn positive_int(v: &Value, field: &str) -> Result<u64, TranslateError> {
    v.as_u64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f as u64)
        })
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(format!("`{field}` must be a positive integer")))
}

fn message(role: &str, content: Vec<Value>) -> Value {
    json!({"type": "message", "role": role, "content": content})
}

/// Chat `messages` → (`instructions`, `input` items).
fn messages_to_input(
    messages: Vec<Value>,
    lossy: Lossy,
) -> Result<(Option<String>, Vec<Value>), TranslateError> {
    let mut instructions: Vec<String> = Vec::new();
    let mut input = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let Value::Object(mut m) = m else {
            return Err(invalid(format!("messages[{i}] must be an object")));
        };
        let role = match take(&mut m, "role") {
            Some(Value::String(r)) => r,
            _ => return Err(invalid(format!("messages[{i}].role is required"))),
        };
        if take(&mut m, "name").is_some() {
            lossy.note("a message `name`");
        }
        let content = take(&mut m, "content");
        match role.as_str() {
            "system" | "developer" => {
                let texts = system_texts(content, i, lossy)?;
                if input.is_empty() {
                    instructions.extend(texts);
                } else if !texts.is_empty() {
                    let parts = texts
                        .into_iter()
                        .map(|t| json!({"type": "input_text", "text": t}))
                        .collect();
                    input.push(message("developer", parts));
                }
            }
            "user" => {
                let parts = user_parts(content, i, lossy)?;
                input.push(message("user", parts));
            }
            "assistant" => assistant_items(m, content, i, lossy, &mut input)?,
            "tool" => {
                let call_id = match take(&mut m, "tool_call_id") {
                    Some(Value::String(id)) => id,
                    _ => return Err(invalid(format!("messages[{i}].tool_call_id is required"))),
                };
                let output = match content {
                    Some(Value::String(s)) => s,
                    Some(Value::Array(parts)) => {
                        let mut s = String::new();
                        for p in parts {
                            match type_of(&p) {
                                "text" => s.push_str(&part_text(&p, i)?),
                                other => {
                                    lossy.drop(&format!("a tool content part of type {other:?}"))?
                                }
                            }
                        }
                        s
                    }
                    None => String::new(),
                    Some(_) => {
                        return Err(invalid(format!(
                            "messages[{i}].content must be a string or an array"
                        )))
                    }
                };
                input.push(
                    json!({"type": "function_call_output", "call_id": call_id, "output": output}),
                );
            }
            "function" => lossy.drop("a legacy `function` message")?,
            other => {
                return Err(invalid(format!(
                    "messages[{i}].role {other:?} is not a chat role"
                )))
            }
        }
    }
    if input.is_empty() {
        return Err(invalid(
            "no message besides system and developer messages: the Responses API needs input",
        ));
    }
    let instructions = (!instructions.is_empty()).then(|| instructions.join("\n\n"));
    Ok((instructions, input))
}

fn part_text(p: &Value, i: usize) -> Result<String, TranslateError> {
    match p.get("text") {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(invalid(format!(
            "messages[{i}]: a text part needs a string `text`"
        ))),
    }
}

fn system_texts(
    content: Option<Value>,
    i: usize,
    lossy: Lossy,
) -> Result<Vec<String>, TranslateError> {
    match content {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(vec![s]),
        Some(Value::String(_)) | None => Ok(Vec::new()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for p in parts {
                match type_of(&p) {
                    "text" => texts.push(part_text(&p, i)?),
                    other => lossy.drop(&format!("a system content part of type {other:?}"))?,
                }
            }
            Ok(texts)
        }
        Some(_) => Err(invalid(format!(
            "messages[{i}].content must be a string or an array"
        ))),
    }
}

fn user_parts(
    content: Option<Value>,
    i: usize,
    lossy: Lossy,
) -> Result<Vec<Value>, TranslateError> {
    match content {
        Some(Value::String(s)) => Ok(vec![json!({"type": "input_text", "text": s})]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                match type_of(&p) {
                    "text" => out.push(json!({"type": "input_text", "text": part_text(&p, i)?})),
                    "image_url" => {
                        let image = p.get("image_url");
                        let url = image
                            .and_then(|u| u.get("url").or(Some(u)))
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                invalid(format!("messages[{i}]: an image_url part needs a `url`"))
                            })?;
                        let detail = image
                            .and_then(|u| u.get("detail"))
                            .and_then(Value::as_str)
                            .unwrap_or("auto");
                        out.push(
                            json!({"type": "input_image", "image_url": url, "detail": detail}),
                        );
                    }
                    "file" => {
                        let mut f = Map::new();
                        f.insert("type".into(), json!("input_file"));
                        if let Some(Value::Object(file)) = p.get("file") {
                            for key in ["file_id", "file_data", "filename"] {
                                if let Some(v) = file.get(key).filter(|v| v.is_string()) {
                                    f.insert(key.into(), v.clone());
                                }
                            }
                        }
                        if f.len() == 1 {
                            return Err(invalid(format!(
                                "messages[{i}]: a file part needs `file_id` or `file_data`"
                            )));
                        }
                        out.push(Value::Object(f));
                    }
                    other => lossy.drop(&format!("a content part of type {other:?}"))?,
                }
            }
            Ok(out)
        }
        _ => Err(invalid(format!(
            "messages[{i}].content must be a string or an array"
        ))),
    }
}

fn assistant_items(
    mut m: Obj,
    content: Option<Value>,
    i: usize,
    lossy: Lossy,
    input: &mut Vec<Value>,
) -> Result<(), TranslateError> {
    if take(&mut m, "reasoning_content").is_some() || take(&mut m, "reasoning").is_some() {
        lossy.note("assistant reasoning history (a Responses reasoning item needs its id)");
    }
    for key in ["function_call", "audio"] {
        if take(&mut m, key).is_some() {
            lossy.drop(&format!("assistant `{key}`"))?;
        }
    }
    let mut parts = Vec::new();
    match content {
        Some(Value::String(s)) if !s.is_empty() => {
            parts.push(json!({"type": "output_text", "text": s}))
        }
        Some(Value::String(_)) | None => {}
        Some(Value::Array(list)) => {
            for p in list {
                match type_of(&p) {
                    "text" => parts.push(json!({"type": "output_text", "text": part_text(&p, i)?})),
                    "refusal" => match p.get("refusal") {
                        Some(Value::String(r)) => {
                            parts.push(json!({"type": "refusal", "refusal": r}))
                        }
                        _ => {
                            return Err(invalid(format!(
                                "messages[{i}]: a refusal part needs its `refusal`"
                            )))
                        }
                    },
                    other => lossy.drop(&format!("an assistant content part of type {other:?}"))?,
                }
            }
        }
        Some(_) => {
            return Err(invalid(format!(
                "messages[{i}].content must be a string or an array"
            )))
        }
    }
    if let Some(Value::String(r)) = take(&mut m, "refusal") {
        if parts.is_empty() && !r.is_empty() {
            parts.push(json!({"type": "refusal", "refusal": r}));
        }
    }
    if !parts.is_empty() {
        input.push(message("assistant", parts));
    }
    let calls = match take(&mut m, "tool_calls") {
        Some(Value::Array(c)) => c,
        None => Vec::new(),
        Some(_) => {
            return Err(invalid(format!(
                "messages[{i}].tool_calls must be an array"
            )))
        }
    };
    for (j, call) in calls.into_iter().enumerate() {
        let wrong = || {
            invalid(format!(
                "messages[{i}].tool_calls[{j}] is not a valid function call"
            ))
        };
        match type_of(&call) {
            "function" | "" => {}
            other => {
                lossy.drop(&format!("a tool call of type {other:?}"))?;
                continue;
            }
        }
        let id = call.get("id").and_then(Value::as_str).ok_or_else(wrong)?;
        let f = call.get("function").ok_or_else(wrong)?;
        let name = f.get("name").and_then(Value::as_str).ok_or_else(wrong)?;
        let arguments = match f.get("arguments") {
            Some(Value::String(s)) => s.clone(),
            Some(v @ Value::Object(_)) => v.to_string(),
            None | Some(Value::Null) => "{}".to_owned(),
            Some(_) => return Err(wrong()),
        };
        input.push(
            json!({"type": "function_call", "call_id": id, "name": name, "arguments": arguments}),
        );
    }
    Ok(())
}

fn function_tool(t: Value, lossy: Lossy) -> Result<Option<Value>, TranslateError> {
    let Some(f) = super::request::chat_function(t, lossy)? else {
        return Ok(None);
    };
    let mut tool = Obj::new();
    tool.insert("type".into(), json!("function"));
    tool.insert("name".into(), Value::String(f.name));
    if let Some(d) = f.description {
        tool.insert("description".into(), d);
    }
    tool.insert("parameters".into(), f.schema);
    // Chat's default is non-strict; the Responses API's is strict.
    tool.insert("strict".into(), f.strict.unwrap_or(Value::Bool(false)));
    Ok(Some(Value::Object(tool)))
}

/// `{type: function, function: {name}}` → `{type: function, name}`.
fn named_function(c: &Value) -> Result<Value, TranslateError> {
    let name = c
        .pointer("/function/name")
        .or_else(|| c.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a function `tool_choice` needs `function.name`"))?;
    Ok(json!({"type": "function", "name": name}))
}

fn tool_choice(c: Value, lossy: Lossy) -> Result<Option<Value>, TranslateError> {
    Ok(match &c {
        Value::String(s) => match s.as_str() {
            "auto" | "none" | "required" => Some(c),
            other => return Err(invalid(format!("unknown `tool_choice` {other:?}"))),
        },
        Value::Object(_) if type_of(&c) == "function" => Some(named_function(&c)?),
        Value::Object(_) if type_of(&c) == "allowed_tools" => {
            let allowed = c.get("allowed_tools").unwrap_or(&Value::Null);
            let mode = allowed.get("mode").cloned().unwrap_or(json!("auto"));
            let tools = allowed
                .get("tools")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("`tool_choice.allowed_tools.tools` is required"))?
                .iter()
                .map(named_function)
                .collect::<Result<Vec<_>, _>>()?;
            Some(json!({"type": "allowed_tools", "mode": mode, "tools": tools}))
        }
        _ => {
            lossy.drop(&format!("`tool_choice` {c}"))?;
            None
        }
    })
}

/// Chat `response_format` → Responses `text.format`.
fn text_format(format: Value, lossy: Lossy) -> Result<Option<Value>, TranslateError> {
    Ok(match type_of(&format) {
        "text" => Some(json!({"type": "text"})),
        "json_object" => Some(json!({"type": "json_object"})),
        "json_schema" => {
            let Some(Value::Object(js)) = format.get("json_schema") else {
                return Err(invalid("`response_format.json_schema` is required"));
            };
            let mut f = Obj::new();
            f.insert("type".into(), json!("json_schema"));
            f.insert(
                "name".into(),
                js.get("name").cloned().unwrap_or(json!("response")),
            );
            for key in ["schema", "strict", "description"] {
                if let Some(v) = js.get(key).filter(|v| !v.is_null()) {
                    f.insert(key.into(), v.clone());
                }
            }
            if !f.contains_key("schema") {
                f.insert("schema".into(), json!({"type": "object"}));
            }
            Some(Value::Object(f))
        }
        other => {
            lossy.drop(&format!("`response_format` of type {other:?}"))?;
            None
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Non-streaming answer: Responses → chat
// ---------------------------------------------------------------------------------------------

/// Responses `usage` → chat `usage` (with cached and reasoning token details).
pub(super) fn chat_usage(usage: Option<&Value>) -> Value {
    let n = |p: &str| {
        usage
            .and_then(|u| u.pointer(p))
            .and_then(Value::as_u64)
            .map_or(0, |n| n.min(1_000_000_000_000))
    };
    let prompt = n("/input_tokens");
    let completion = n("/output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": n("/input_tokens_details/cached_tokens")},
        "completion_tokens_details": {
            "reasoning_tokens": n("/output_tokens_details/reasoning_tokens")
        },
    })
}

/// The chat `finish_reason` for a Responses `status` and `incomplete_details.reason`.
pub(super) fn finish_reason(
    status: Option<&str>,
    reason: Option<&str>,
    calls: bool,
) -> &'static str {
    match (status, reason) {
        (_, Some("content_filter")) => "content_filter",
        (Some("incomplete"), _) | (_, Some("max_output_tokens")) => "length",
        _ if calls => "tool_calls",
        _ => "stop",
    }
}

pub(super) fn responses_to_chat(body: &[u8], client_model: &str) -> Result<Value, TranslateError> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Err(bad("the response body is not a JSON object")),
        Err(e) => return Err(bad(format!("the response body is not valid JSON: {e}"))),
    };
    let output = v
        .get("output")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the response has no `output` list"))?;
    let mut text = String::new();
    let mut has_text = false;
    let mut refusal = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in output {
        match type_of(item) {
            "message" => {
                for part in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    match type_of(part) {
                        "output_text" => {
                            has_text = true;
                            text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""));
                        }
                        "refusal" => refusal
                            .push_str(part.get("refusal").and_then(Value::as_str).unwrap_or("")),
                        other => {
                            tracing::debug!(part = other, "translation: dropped an output part")
                        }
                    }
                }
            }
            "reasoning" => {
                // Summaries (OpenAI), else the reasoning text itself (open-weight servers).
                let mut pieces = item
                    .get("summary")
                    .and_then(Value::as_array)
                    .filter(|s| !s.is_empty())
                    .or_else(|| item.get("content").and_then(Value::as_array))
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get("text").and_then(Value::as_str));
                if let Some(first) = pieces.next() {
                    if !reasoning.is_empty() {
                        reasoning.push_str("\n\n");
                    }
                    reasoning.push_str(first);
                    for p in pieces {
                        reasoning.push_str("\n\n");
                        reasoning.push_str(p);
                    }
                }
            }
            "function_call" => {
                let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("");
                calls.push(json!({
                    "id": s("call_id"),
                    "type": "function",
                    "function": {"name": s("name"), "arguments": s("arguments")},
                }));
            }
            other => tracing::debug!(item = other, "translation: dropped an output item"),
        }
    }
    let mut message = json!({"role": "assistant"});
    message["content"] = if has_text || calls.is_empty() {
        Value::String(text)
    } else {
        Value::Null
    };
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let finish = finish_reason(
        v.get("status").and_then(Value::as_str),
        v.pointer("/incomplete_details/reason")
            .and_then(Value::as_str),
        !calls.is_empty(),
    );
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message["refusal"] = if refusal.is_empty() {
        Value::Null
    } else {
        Value::String(refusal)
    };
    Ok(json!({
        "id": openai_id(v.get("id").and_then(Value::as_str)),
        "object": "chat.completion",
        "created": v.get("created_at").and_then(Value::as_u64).unwrap_or_else(unix_now),
        "model": client_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": chat_usage(v.get("usage")),
    }))
}
