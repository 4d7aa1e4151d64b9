//! A Responses API client served by a chat-completions backend: the request (Responses →
//! chat) and the non-streaming answer (chat `chat.completion` → Responses `response`). The
//! stream is in `responses_stream.rs`.
//!
//! What cannot cross: stored state (`previous_response_id`, `conversation`, `item_reference`,
//! `prompt` templates — the backend never held them: always refused), encrypted reasoning
//! items (only the provider that wrote them can read them: dropped), built-in tools
//! (`web_search`, `file_search`, `mcp`… — dropped when merely offered, refused when
//! `tool_choice` forces one), `input_image` by `file_id` (dropped, refused when strict).
//! Freeform (`custom`) tools cross as functions taking one string, `input`; their calls go
//! back as `custom_tool_call` items.

use serde_json::{json, Value};

use super::common::{take, type_of, unix_now, Lossy, Obj};
use super::{Options, TranslateError};

fn invalid(msg: impl Into<String>) -> TranslateError {
    TranslateError::Invalid(msg.into())
}

fn unsupported(msg: impl Into<String>) -> TranslateError {
    TranslateError::Unsupported(msg.into())
}

fn parse_object(body: &[u8]) -> Result<Obj, TranslateError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(invalid("the request body must be a JSON object")),
        Err(e) => Err(invalid(format!("the request body is not valid JSON: {e}"))),
    }
}

/// Responses fields with no effect on the chat backend's output, dropped even when strict.
const RESPONSES_HINTS: &[&str] = &[
    "store",
    "include",
    "prompt_cache_key",
    "prompt_cache_retention",
    "client_metadata",
    "truncation",
    "metadata",
    "service_tier",
    "safety_identifier",
    "stream_options",
    "background",
    "top_logprobs",
];

/// Fields that name state the chat backend does not hold: never translatable.
const STORED_STATE: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "`previous_response_id` continues a response stored by a Responses API provider; a chat-completions backend does not hold it (resend the whole input with `store: false`, as Codex CLI does, to fail over)",
    ),
    (
        "conversation",
        "`conversation` names a conversation stored by a Responses API provider; a chat-completions backend does not hold it",
    ),
    (
        "prompt",
        "`prompt` names a prompt template stored by a Responses API provider; a chat-completions backend does not hold it",
    ),
];

/// Built-in tool types whose calls only a Responses API provider can make.
fn tool_label(t: &Value) -> String {
    match (type_of(t), t.get("name").and_then(Value::as_str)) {
        ("", _) => "(untyped)".to_owned(),
        (kind, Some(name)) => format!("{kind}:{name}"),
        (kind, None) => kind.to_owned(),
    }
}

/// Where a Responses request is going: straight to a chat-completions backend, or through
/// chat completions on to an Anthropic backend (which runs a web search of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    Chat,
    Anthropic,
}

impl Via {
    fn api(self) -> &'static str {
        match self {
            Via::Chat => "OpenAI chat completions",
            Via::Anthropic => "Anthropic messages",
        }
    }
}

/// What became of the request's built-in tools.
#[derive(Debug, Default)]
pub(super) struct BuiltIns {
    /// Offered tools the backend cannot run, dropped (labels such as `custom:apply_patch`).
    pub dropped: Vec<String>,
    /// The `web_search` tool, when the backend has its own (Anthropic's server tool).
    pub web_search: Option<Value>,
    /// `tool_choice` forces that web search.
    pub web_search_forced: bool,
}

/// The Responses web search tool types (current, dated and preview names).
pub(super) fn is_web_search(kind: &str) -> bool {
    kind == "web_search" || kind.starts_with("web_search_")
}

/// Responses request (client) → chat completions request, for `via`'s backend, saying what
/// became of built-in tools (the names of those dropped are logged at info).
pub(super) fn responses_to_chat_via(
    body: &[u8],
    model: &str,
    opts: &Options,
    via: Via,
) -> Result<(Value, BuiltIns), TranslateError> {
    let mut req = parse_object(body)?;
    let lossy = Lossy {
        strict: opts.strict,
        backend: via.api(),
    };
    for (key, why) in STORED_STATE {
        if take(&mut req, key).is_some() {
            return Err(unsupported(*why));
        }
    }
    let mut out = Obj::new();
    out.insert("model".into(), Value::String(model.into()));

    let mut messages = Vec::new();
    if let Some(instructions) = take(&mut req, "instructions") {
        match instructions {
            Value::String(s) if !s.is_empty() => {
                messages.push(json!({"role": "system", "content": s}))
            }
            Value::String(_) => {}
            // Instructions of a stored prompt come back as items; a client sends a string.
            Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    input_item(item, i, &mut messages, lossy)?;
                }
            }
            _ => return Err(invalid("`instructions` must be a string")),
        }
    }
    match take(&mut req, "input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                input_item(item, i, &mut messages, lossy)?;
            }
        }
        Some(_) => return Err(invalid("`input` must be a string or an array of items")),
        None => return Err(invalid("`input` is required")),
    }
    if messages.is_empty() {
        return Err(invalid(
            "the input holds no message a chat-completions backend can take",
        ));
    }
    out.insert("messages".into(), Value::Array(messages));

    if let Some(max) = take(&mut req, "max_output_tokens") {
        let n = max
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid("`max_output_tokens` must be a positive integer"))?;
        out.insert("max_tokens".into(), n.into());
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = take(&mut req, key) {
            if !v.is_number() {
                return Err(invalid(format!("`{key}` must be a number")));
            }
            out.insert(key.into(), v);
        }
    }
    let stream = take(&mut req, "stream");
    if let Some(stream) = stream {
        if !stream.is_boolean() {
            return Err(invalid("`stream` must be a boolean"));
        }
        if stream == Value::Bool(true) {
            // `response.completed` always carries usage: ask the chat backend for it.
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
        out.insert("stream".into(), stream);
    }
    if let Some(user) = take(&mut req, "user") {
        match user {
            Value::String(_) => {
                out.insert("user".into(), user);
            }
            _ => return Err(invalid("`user` must be a string")),
        }
    }
    if let Some(reasoning) = take(&mut req, "reasoning") {
        let Value::Object(mut reasoning) = reasoning else {
            return Err(invalid("`reasoning` must be an object"));
        };
        if let Some(effort) = take(&mut reasoning, "effort") {
            match effort {
                Value::String(_) => {
                    out.insert("reasoning_effort".into(), effort);
                }
                _ => return Err(invalid("`reasoning.effort` must be a string")),
            }
        }
        for (key, value) in reasoning {
            if !value.is_null() {
                // `summary`, `generate_summary`: the backend's reasoning comes back as it is.
                lossy.note(&format!("`reasoning.{key}`"));
            }
        }
    }
    if let Some(text) = take(&mut req, "text") {
        let Value::Object(mut text) = text else {
            return Err(invalid("`text` must be an object"));
        };
        if let Some(format) = take(&mut text, "format") {
            if let Some(f) = text_format(format, lossy)? {
                out.insert("response_format".into(), f);
            }
        }
        for (key, value) in text {
            if !value.is_null() {
                // `verbosity`: not every chat-completions server knows it.
                lossy.note(&format!("`text.{key}`"));
            }
        }
    }

    // Tools and tool choice.
    let mut tools = Vec::new();
    let mut built_ins = BuiltIns::default();
    if let Some(list) = take(&mut req, "tools") {
        let Value::Array(list) = list else {
            return Err(invalid("`tools` must be an array"));
        };
        for t in list {
            let kind = type_of(&t);
            if kind == "function" {
                tools.push(function_tool(t)?);
            } else if kind == "custom" {
                tools.push(custom_tool(t)?);
            } else if via == Via::Anthropic && is_web_search(kind) && live_search_allowed(&t) {
                built_ins.web_search = Some(t);
            } else {
                built_ins.dropped.push(tool_label(&t));
            }
        }
    }
    if !built_ins.dropped.is_empty() {
        tracing::info!(
            backend = via.api(),
            dropped_tools = %built_ins.dropped.join(","),
            "translation: built-in tools the backend cannot run were dropped"
        );
    }
    let choice = match take(&mut req, "tool_choice") {
        Some(c) if built_ins.web_search.is_some() && is_web_search(type_of(&c)) => {
            built_ins.web_search_forced = true;
            None
        }
        Some(c) => tool_choice(c, via)?,
        None => None,
    };
    let parallel = take(&mut req, "parallel_tool_calls");
    if parallel.as_ref().is_some_and(|p| !p.is_boolean()) {
        return Err(invalid("`parallel_tool_calls` must be a boolean"));
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            out.insert("tool_choice".into(), c);
        }
        if let Some(p) = parallel {
            out.insert("parallel_tool_calls".into(), p);
        }
    } else if matches!(&choice, Some(c) if c != "none" && c != "auto") {
        // `required` or a named function with no function tools left.
        return Err(unsupported(format!(
            "`tool_choice` requires a tool call but no function tools remain for the {} backend",
            via.api()
        )));
    }

    for (key, value) in req {
        if key == "model" || value.is_null() {
            continue;
        }
        if RESPONSES_HINTS.contains(&key.as_str()) {
            lossy.note(&format!("`{key}`"));
            continue;
        }
        lossy.drop(&format!("`{key}`"))?;
    }
    Ok((Value::Object(out), built_ins))
}

/// Codex offers `web_search` with `external_web_access: false`: OpenAI's cached index only.
/// Another provider's search is live, so such a tool is dropped rather than widened.
fn live_search_allowed(t: &Value) -> bool {
    t.get("external_web_access") != Some(&Value::Bool(false))
}

/// `text.format` → `response_format`.
fn text_format(format: Value, lossy: Lossy) -> Result<Option<Value>, TranslateError> {
    Ok(match type_of(&format) {
        "text" => None,
        "json_object" => Some(json!({"type": "json_object"})),
        "json_schema" => {
            let mut schema = Obj::new();
            schema.insert(
                "name".into(),
                format
                    .get("name")
                    .cloned()
                    .unwrap_or_else(|| json!("output")),
            );
            for key in ["schema", "strict", "description"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            if !schema.contains_key("schema") {
                return Err(invalid("`text.format.schema` is required for json_schema"));
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        other => {
            lossy.drop(&format!("`text.format` of type {other:?}"))?;
            None
        }
    })
}

/// The one parameter a freeform (`custom`) tool becomes: its whole input, as a string.
pub(super) const CUSTOM_INPUT: &str = "input";

/// A freeform (`custom`) tool, such as Codex's `apply_patch` → a function tool taking its
/// text as one string parameter, the grammar (when given) in the description. Its calls go
/// back to the client as `custom_tool_call` items (see [`custom_tool_names`]).
fn custom_tool(t: Value) -> Result<Value, TranslateError> {
    let name = t
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("each custom tool needs a `name`"))?;
    let mut description = t
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some(grammar) = t.pointer("/format/definition").and_then(Value::as_str) {
        let syntax = t
            .pointer("/format/syntax")
            .and_then(Value::as_str)
            .unwrap_or("grammar");
        description.push_str(&format!(
            "\n\nPass the tool's whole freeform input as `{CUSTOM_INPUT}`; it must match this {syntax} grammar:\n{grammar}"
        ));
    }
    Ok(json!({"type": "function", "function": {
        "name": name,
        "description": description,
        "parameters": {"type": "object",
                       "properties": {CUSTOM_INPUT: {"type": "string", "description": "The tool's freeform input, verbatim"}},
                       "required": [CUSTOM_INPUT]},
    }}))
}

/// The names of the freeform (`custom`) tools a Responses request offers: their calls are
/// given back as `custom_tool_call` items when the backend speaks another dialect.
pub(super) fn custom_tool_names(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Tool {
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        name: String,
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    v.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| serde_json::from_value::<Tool>(t.clone()).ok())
        .filter(|t| t.kind == "custom" && !t.name.is_empty())
        .map(|t| t.name)
        .collect()
}

/// The `{"input": …}` arguments of a freeform tool's call → its input (the arguments as they
/// are when they are not that shape).
pub(super) fn custom_input(arguments: &str) -> String {
    serde_json::from_str::<Value>(arguments)
        .ok()
        .and_then(|v| {
            v.get(CUSTOM_INPUT)
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| arguments.to_owned())
}

pub(super) fn custom_tool_call_item(
    id: &str,
    status: &str,
    call_id: &str,
    name: &str,
    input: &str,
) -> Value {
    json!({"type": "custom_tool_call", "id": id, "status": status, "call_id": call_id,
           "name": name, "input": input})
}

/// A flat Responses function tool → a chat tool.
fn function_tool(t: Value) -> Result<Value, TranslateError> {
    let Value::Object(mut t) = t else {
        return Err(invalid("each tool must be an object"));
    };
    let name = match take(&mut t, "name") {
        Some(Value::String(n)) => n,
        _ => return Err(invalid("each function tool needs a `name`")),
    };
    let mut f = Obj::new();
    f.insert("name".into(), Value::String(name));
    if let Some(d) = take(&mut t, "description") {
        f.insert("description".into(), d);
    }
    f.insert(
        "parameters".into(),
        take(&mut t, "parameters").unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    if let Some(s) = take(&mut t, "strict") {
        f.insert("strict".into(), s);
    }
    Ok(json!({"type": "function", "function": f}))
}

/// `tool_choice`: a built-in tool forced is refused (the backend cannot call it).
fn tool_choice(c: Value, via: Via) -> Result<Option<Value>, TranslateError> {
    match &c {
        Value::String(s) => match s.as_str() {
            "auto" | "none" | "required" => Ok(Some(c)),
            other => Err(invalid(format!("unknown `tool_choice` {other:?}"))),
        },
        Value::Object(_) => match type_of(&c) {
            "function" | "custom" => {
                let name = c
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("`tool_choice.name` is required"))?;
                Ok(Some(
                    json!({"type": "function", "function": {"name": name}}),
                ))
            }
            // Restricting to a subset is lost; the mode stays.
            "allowed_tools" => match c.get("mode").and_then(Value::as_str) {
                Some("required") => Ok(Some(json!("required"))),
                _ => Ok(Some(json!("auto"))),
            },
            _ => Err(unsupported(format!(
                "`tool_choice` forces the built-in tool {}, which the {} backend cannot call",
                tool_label(&c),
                via.api()
            ))),
        },
        _ => Err(invalid("`tool_choice` must be a string or an object")),
    }
}

/// The text of `input_text` / `output_text` / `refusal` parts, or a plain string.
fn text_of(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| match type_of(p) {
                    "input_text" | "output_text" | "text" => p.get("text").and_then(Value::as_str),
                    "refusal" => p.get("refusal").and_then(Value::as_str),
                    _ => None,
                })
                .collect();
            Some(texts.join("\n"))
        }
        _ => None,
    }
}

/// Responses content parts → chat user content parts.
fn user_parts(parts: Vec<Value>, lossy: Lossy) -> Result<Vec<Value>, TranslateError> {
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match type_of(&p) {
            "input_text" | "output_text" | "text" => {
                let t = p
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("a text part needs a string `text`"))?;
                out.push(json!({"type": "text", "text": t}));
            }
            "input_image" => match p.get("image_url").and_then(Value::as_str) {
                Some(url) => {
                    let mut image = json!({"url": url});
                    if let Some(d) = p.get("detail").filter(|d| d.is_string()) {
                        image["detail"] = d.clone();
                    }
                    out.push(json!({"type": "image_url", "image_url": image}));
                }
                None => lossy.drop("an `input_image` by `file_id` (a provider's stored file)")?,
            },
            "input_file" => match p.get("file_data").and_then(Value::as_str) {
                Some(data) => {
                    let name = p
                        .get("filename")
                        .and_then(Value::as_str)
                        .unwrap_or("file.pdf");
                    out.push(
                        json!({"type": "file", "file": {"filename": name, "file_data": data}}),
                    );
                }
                None => lossy.drop("an `input_file` by `file_id` or `file_url`")?,
            },
            other => lossy.drop(&format!("a content part of type {other:?}"))?,
        }
    }
    Ok(out)
}

/// The open assistant message at the end of `messages`, created if needed (function calls
/// join the assistant message before them, as chat wants).
fn assistant_tail(messages: &mut Vec<Value>) -> &mut Obj {
    let open = messages.last().is_some_and(|m| m["role"] == "assistant");
    if !open {
        messages.push(json!({"role": "assistant", "content": null}));
    }
    match messages.last_mut() {
        Some(Value::Object(m)) => m,
        _ => unreachable!("an assistant message was just pushed"),
    }
}

fn push_call(messages: &mut Vec<Value>, call_id: &str, name: &str, arguments: String) {
    let m = assistant_tail(messages);
    let call = json!({"id": call_id, "type": "function",
                      "function": {"name": name, "arguments": arguments}});
    match m.get_mut("tool_calls") {
        Some(Value::Array(calls)) => calls.push(call),
        _ => {
            m.insert("tool_calls".into(), Value::Array(vec![call]));
        }
    }
}

fn str_field<'a>(item: &'a Value, key: &str, i: usize) -> Result<&'a str, TranslateError> {
    item.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("input[{i}].{key} must be a string")))
}

/// A tool output (a string, or content parts of which the text is kept).
fn output_text_of(output: Option<&Value>, lossy: Lossy) -> Result<String, TranslateError> {
    Ok(match output {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            if parts
                .iter()
                .any(|p| !matches!(type_of(p), "input_text" | "output_text" | "text"))
            {
                lossy.drop("a non-text part of a tool output (chat tool messages are text)")?;
            }
            text_of(&Value::Array(parts.clone())).unwrap_or_default()
        }
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    })
}

/// One `input` item → chat messages appended to `messages`.
fn input_item(
    item: Value,
    i: usize,
    messages: &mut Vec<Value>,
    lossy: Lossy,
) -> Result<(), TranslateError> {
    if !item.is_object() {
        return Err(invalid(format!("input[{i}] must be an object")));
    }
    match type_of(&item) {
        "" | "message" => {
            let role = str_field(&item, "role", i)?.to_owned();
            let content = item.get("content").cloned().unwrap_or(Value::Null);
            match role.as_str() {
                "system" | "developer" => {
                    let text = text_of(&content).ok_or_else(|| {
                        invalid(format!("input[{i}].content must be a string or an array"))
                    })?;
                    if !text.is_empty() {
                        messages.push(json!({"role": "system", "content": text}));
                    }
                }
                "user" => {
                    let content = match content {
                        Value::String(s) => Value::String(s),
                        Value::Array(parts) => {
                            let parts = user_parts(parts, lossy)?;
                            if parts.iter().all(|p| p["type"] == "text") {
                                let texts: Vec<&str> =
                                    parts.iter().filter_map(|p| p["text"].as_str()).collect();
                                Value::String(texts.join("\n"))
                            } else {
                                Value::Array(parts)
                            }
                        }
                        _ => {
                            return Err(invalid(format!(
                                "input[{i}].content must be a string or an array"
                            )))
                        }
                    };
                    messages.push(json!({"role": "user", "content": content}));
                }
                "assistant" => {
                    let text = text_of(&content).ok_or_else(|| {
                        invalid(format!("input[{i}].content must be a string or an array"))
                    })?;
                    // Text after this turn's calls starts a new assistant message.
                    let reuse = messages
                        .last()
                        .is_some_and(|m| m["role"] == "assistant" && m.get("tool_calls").is_none());
                    if reuse {
                        if let Some(Value::Object(m)) = messages.last_mut() {
                            let joined = match m.get("content").and_then(Value::as_str) {
                                Some(prev) => format!("{prev}{text}"),
                                None => text,
                            };
                            m.insert("content".into(), Value::String(joined));
                        }
                    } else {
                        messages.push(json!({"role": "assistant", "content": text}));
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "input[{i}].role {other:?} is not user, assistant, system or developer"
                    )))
                }
            }
        }
        "function_call" => {
            let call_id = str_field(&item, "call_id", i)?;
            let name = str_field(&item, "name", i)?;
            let args = str_field(&item, "arguments", i)?;
            push_call(messages, call_id, name, args.to_owned());
        }
        "function_call_output" | "custom_tool_call_output" => {
            let call_id = str_field(&item, "call_id", i)?;
            let content = output_text_of(item.get("output"), lossy)?;
            messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
        }
        // A freeform tool's call from a Responses backend's earlier turn (Codex's
        // apply_patch): kept in the history as a function call, so its output still pairs.
        "custom_tool_call" => {
            let call_id = str_field(&item, "call_id", i)?;
            let name = str_field(&item, "name", i)?;
            let input = item.get("input").and_then(Value::as_str).unwrap_or("");
            lossy.note("a custom tool call in the history (sent as a function call)");
            push_call(messages, call_id, name, json!({"input": input}).to_string());
        }
        "reasoning" => lossy.note("a reasoning item (encrypted reasoning only its provider reads)"),
        "item_reference" => {
            return Err(unsupported(
                "an `item_reference` names an item stored by a Responses API provider; a chat-completions backend does not hold it",
            ))
        }
        other => lossy.drop(&format!("an input item of type {other:?}"))?,
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Non-streaming answer: chat completion (backend) → Response (client)
// ---------------------------------------------------------------------------------------------

fn bad(msg: impl Into<String>) -> TranslateError {
    TranslateError::InvalidResponse(msg.into())
}

/// The id suffix shared by the response and its items (`chatcmpl-X` → `X`).
pub(super) fn id_suffix(upstream: Option<&str>) -> String {
    match upstream.filter(|s| !s.is_empty()) {
        Some(id) => id
            .strip_prefix("chatcmpl-")
            .unwrap_or(id)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
        None => super::common::anthropic_id(None)["msg_".len()..].to_owned(),
    }
}

/// Status and `incomplete_details` from a chat `finish_reason`.
pub(super) fn status_of(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// Responses `usage` from a chat `usage` object.
pub(super) fn usage_of(usage: Option<&Value>) -> Value {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0).min(1 << 40);
    let u = usage.filter(|u| u.is_object());
    let input = n(u.and_then(|u| u.get("prompt_tokens")));
    let output = n(u.and_then(|u| u.get("completion_tokens")));
    let cached = n(u.and_then(|u| u.pointer("/prompt_tokens_details/cached_tokens")));
    let reasoning = n(u.and_then(|u| u.pointer("/completion_tokens_details/reasoning_tokens")));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": cached.min(input), "cache_write_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": reasoning.min(output)},
        "total_tokens": input + output,
    })
}

/// The Response object around `output` (the fields the SDKs expect, as the mock writes them;
/// request parameters are not echoed: the API's defaults stand in).
pub(super) fn response_object(
    id: &str,
    created_at: u64,
    completed_at: Option<u64>,
    model: &str,
    (status, incomplete): (&str, Value),
    output: Value,
    usage: Value,
) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": false,
        "completed_at": completed_at,
        "error": null,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": null,
        "max_tool_calls": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "prompt_cache_key": null,
        "reasoning": {"effort": null, "summary": null},
        "safety_identifier": null,
        "service_tier": "default",
        "store": false,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

pub(super) fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [{"type": "summary_text", "text": text}]})
}

pub(super) fn message_item(id: &str, status: &str, text: Option<&str>) -> Value {
    let content = match text {
        Some(t) => json!([{"type": "output_text", "annotations": [], "logprobs": [], "text": t}]),
        None => json!([]),
    };
    json!({"type": "message", "id": id, "status": status, "content": content, "role": "assistant"})
}

pub(super) fn function_call_item(
    id: &str,
    status: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
) -> Value {
    json!({"type": "function_call", "id": id, "status": status, "arguments": arguments,
           "call_id": call_id, "name": name})
}

/// Chat completion (backend) → Response (client). Calls of the client's freeform tools
/// (`custom`) become `custom_tool_call` items.
pub(super) fn chat_to_responses(
    body: &[u8],
    client_model: &str,
    custom: &[String],
) -> Result<Value, TranslateError> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Err(bad("the response body is not a JSON object")),
        Err(e) => return Err(bad(format!("the response body is not valid JSON: {e}"))),
    };
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| bad("the completion has no choices"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| bad("the choice has no `message`"))?;
    let suffix = id_suffix(v.get("id").and_then(Value::as_str));
    let mut output = Vec::new();
    let reasoning = ["reasoning_content", "reasoning"].iter().find_map(|k| {
        message
            .get(*k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    });
    if let Some(r) = reasoning {
        output.push(reasoning_item(&format!("rs_{suffix}"), r));
    }
    let mut text = String::new();
    match message.get("content") {
        Some(Value::String(s)) => text.push_str(s),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .for_each(|t| text.push_str(t)),
        _ => {}
    }
    if let Some(r) = message.get("refusal").and_then(Value::as_str) {
        text.push_str(r);
    }
    if !text.is_empty() {
        output.push(message_item(
            &format!("msg_{suffix}"),
            "completed",
            Some(&text),
        ));
    }
    let calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (n, call) in calls.iter().enumerate() {
        let f = call.get("function").unwrap_or(call);
        let call_id = match call.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => format!("call_{suffix}_{n}"),
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        let arguments = f.get("arguments").and_then(Value::as_str).unwrap_or("");
        output.push(if custom.iter().any(|c| c == name) {
            custom_tool_call_item(
                &format!("ctc_{suffix}_{n}"),
                "completed",
                &call_id,
                name,
                &custom_input(arguments),
            )
        } else {
            function_call_item(
                &format!("fc_{suffix}_{n}"),
                "completed",
                &call_id,
                name,
                arguments,
            )
        });
    }
    Ok(response_object(
        &format!("resp_{suffix}"),
        v.get("created")
            .and_then(Value::as_u64)
            .unwrap_or_else(unix_now),
        Some(unix_now()),
        client_model,
        status_of(choice.get("finish_reason").and_then(Value::as_str)),
        Value::Array(output),
        usage_of(v.get("usage")),
    ))
}
