//! Request validation, mirroring what the real APIs reject and how they word it.
//!
//! The gateway's tests rely on the mock refusing what the real provider would
//! refuse (missing fields, bad roles, orphaned tool results), so a translation bug
//! shows up as a 400 in a test instead of in production. Only fields the mock
//! knows are checked; everything else passes, as unknown-but-valid input should.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// Why an OpenAI request is invalid, in the API's `{message, param, code}` terms.
#[derive(Debug, PartialEq)]
pub(crate) struct OpenAiInvalid {
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

fn oa(message: String, param: Option<String>, code: Option<&'static str>) -> OpenAiInvalid {
    OpenAiInvalid {
        message,
        param,
        code,
    }
}

/// How OpenAI names a JSON type in "expected X, but got Y instead".
fn oa_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn oa_missing(param: String) -> OpenAiInvalid {
    oa(
        format!("Missing required parameter: '{param}'."),
        Some(param),
        Some("missing_required_parameter"),
    )
}

fn oa_type(param: String, expected: &str, got: &Value) -> OpenAiInvalid {
    oa(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            oa_kind(got)
        ),
        Some(param),
        Some("invalid_type"),
    )
}

const OPENAI_ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Validates a Chat Completions request body.
pub(crate) fn openai(body: &Value) -> Result<(), OpenAiInvalid> {
    let Some(obj) = body.as_object() else {
        return Err(oa(
            format!(
                "Invalid type for body: expected an object, but got {} instead.",
                oa_kind(body)
            ),
            None,
            Some("invalid_type"),
        ));
    };
    match obj.get("model") {
        None | Some(Value::Null) => {
            return Err(oa(
                "you must provide a model parameter".to_owned(),
                None,
                None,
            ))
        }
        Some(Value::String(_)) => {}
        Some(other) => return Err(oa_type("model".to_owned(), "a string", other)),
    }
    let messages = match obj.get("messages") {
        None => return Err(oa_missing("messages".to_owned())),
        Some(Value::Array(m)) => m,
        Some(other) => return Err(oa_type("messages".to_owned(), "an array of objects", other)),
    };
    if messages.is_empty() {
        return Err(oa(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got \
             an empty array instead."
                .to_owned(),
            Some("messages".to_owned()),
            Some("empty_array"),
        ));
    }
    for (i, m) in messages.iter().enumerate() {
        openai_message(messages, i, m)?;
    }
    if let Some(stream) = obj.get("stream") {
        if !stream.is_boolean() && !stream.is_null() {
            return Err(oa_type("stream".to_owned(), "a boolean", stream));
        }
    }
    Ok(())
}

fn openai_message(messages: &[Value], i: usize, m: &Value) -> Result<(), OpenAiInvalid> {
    let Some(m) = m.as_object() else {
        return Err(oa_type(format!("messages[{i}]"), "an object", m));
    };
    let role = match m.get("role") {
        None => return Err(oa_missing(format!("messages[{i}].role"))),
        Some(Value::String(r)) => r.as_str(),
        Some(other) => return Err(oa_type(format!("messages[{i}].role"), "a string", other)),
    };
    if !OPENAI_ROLES.contains(&role) {
        return Err(oa(
            format!(
                "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', \
                 'function', 'tool', and 'developer'."
            ),
            Some(format!("messages[{i}].role")),
            Some("invalid_value"),
        ));
    }
    let content = m.get("content");
    match content {
        None | Some(Value::Null) if role != "assistant" => {
            return Err(oa_missing(format!("messages[{i}].content")))
        }
        None | Some(Value::Null) | Some(Value::String(_)) | Some(Value::Array(_)) => {}
        Some(other) => {
            return Err(oa_type(
                format!("messages[{i}].content"),
                "one of a string or array of objects",
                other,
            ))
        }
    }
    if role == "assistant" {
        let tool_calls = match m.get("tool_calls") {
            None | Some(Value::Null) => None,
            Some(Value::Array(calls)) => Some(calls),
            Some(other) => {
                return Err(oa_type(
                    format!("messages[{i}].tool_calls"),
                    "an array",
                    other,
                ))
            }
        };
        let has_content = !matches!(content, None | Some(Value::Null));
        if !has_content && tool_calls.is_none() && m.get("function_call").is_none() {
            return Err(oa(
                "Invalid value for 'content': expected a string, got null.".to_owned(),
                Some(format!("messages.[{i}].content")),
                None,
            ));
        }
        if let Some(calls) = tool_calls {
            openai_tool_calls(messages, i, calls)?;
        }
    }
    if role == "tool" {
        if !m.get("tool_call_id").is_some_and(Value::is_string) {
            return Err(oa(
                "Missing parameter 'tool_call_id': messages with role 'tool' must have a \
                 'tool_call_id'."
                    .to_owned(),
                Some(format!("messages.[{i}].tool_call_id")),
                None,
            ));
        }
        // A tool message must answer the nearest preceding non-tool message's tool_calls.
        let answered = messages[..i]
            .iter()
            .rev()
            .find(|p| p.get("role").and_then(Value::as_str) != Some("tool"))
            .is_some_and(|p| {
                p.get("role").and_then(Value::as_str) == Some("assistant")
                    && p.get("tool_calls").is_some_and(Value::is_array)
            });
        if !answered {
            return Err(oa(
                "Invalid parameter: messages with role 'tool' must be a response to a preceeding \
                 message with 'tool_calls'."
                    .to_owned(),
                Some(format!("messages.[{i}].role")),
                None,
            ));
        }
    }
    Ok(())
}

fn openai_tool_calls(messages: &[Value], i: usize, calls: &[Value]) -> Result<(), OpenAiInvalid> {
    let mut ids = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let p = format!("messages[{i}].tool_calls[{j}]");
        let Some(call) = call.as_object() else {
            return Err(oa_type(p, "an object", call));
        };
        match call.get("id") {
            Some(Value::String(id)) => ids.push(id.as_str()),
            None => return Err(oa_missing(format!("{p}.id"))),
            Some(other) => return Err(oa_type(format!("{p}.id"), "a string", other)),
        }
        match call.get("type") {
            Some(Value::String(t)) if t == "function" => {}
            None => return Err(oa_missing(format!("{p}.type"))),
            Some(other) => {
                return Err(oa(
                    format!("Invalid value: {other}. Supported values are: 'function'."),
                    Some(format!("{p}.type")),
                    Some("invalid_value"),
                ))
            }
        }
        let Some(function) = call.get("function") else {
            return Err(oa_missing(format!("{p}.function")));
        };
        let Some(function) = function.as_object() else {
            return Err(oa_type(format!("{p}.function"), "an object", function));
        };
        match function.get("name") {
            Some(Value::String(_)) => {}
            None => return Err(oa_missing(format!("{p}.function.name"))),
            Some(other) => return Err(oa_type(format!("{p}.function.name"), "a string", other)),
        }
        match function.get("arguments") {
            Some(Value::String(_)) => {}
            None => return Err(oa_missing(format!("{p}.function.arguments"))),
            Some(other) => {
                return Err(oa_type(
                    format!("{p}.function.arguments"),
                    "a string",
                    other,
                ))
            }
        }
    }
    // Once the conversation goes on, every call must have been answered by the tool
    // messages right after it.
    let following = &messages[i + 1..];
    if following.is_empty() {
        return Ok(());
    }
    let answered: HashSet<&str> = following
        .iter()
        .take_while(|m| m.get("role").and_then(Value::as_str) == Some("tool"))
        .filter_map(|m| m.get("tool_call_id").and_then(Value::as_str))
        .collect();
    let missing: Vec<&str> = ids
        .into_iter()
        .filter(|id| !answered.contains(id))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(oa(
            format!(
                "An assistant message with 'tool_calls' must be followed by tool messages \
                 responding to each 'tool_call_id'. The following tool_call_ids did not have \
                 response messages: {}",
                missing.join(", ")
            ),
            Some(format!("messages.[{i}].role")),
            None,
        ))
    }
}

/// The top-level parameters of `POST /v1/responses`: openai-python's
/// `ResponseCreateParams` (3.51.0), `stream`, and `client_metadata`, which Codex CLI
/// 0.171.0 sends on every request (tests/it/fixtures/agents/codex). Anything else is
/// refused as the API refuses it (`Unknown parameter: 'reasoning'.` with code
/// `unknown_parameter`, quoted in teabranch/open-responses-server#41 and
/// 1jehuang/jcode#1028).
const RESPONSES_PARAMS: [&str; 34] = [
    "access_programs",
    "background",
    "client_metadata",
    "context_management",
    "conversation",
    "image",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "moderation",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

/// The `type`s of openai-python's `ResponseInputItemParam` union (3.51.0).
const RESPONSES_ITEM_TYPES: [&str; 31] = [
    "message",
    "reasoning",
    "function_call",
    "function_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "item_reference",
    "compaction",
    "compaction_trigger",
    "additional_tools",
    "apply_patch_call",
    "apply_patch_call_output",
    "code_interpreter_call",
    "computer_call",
    "computer_call_output",
    "configuration_update",
    "file_search_call",
    "image_generation_call",
    "local_shell_call",
    "local_shell_call_output",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "mcp_list_tools",
    "program",
    "program_output",
    "shell_call",
    "shell_call_output",
    "tool_search_call",
    "tool_search_output",
    "web_search_call",
];

/// `'a', 'b', and 'c'`: how the API lists supported values.
fn supported(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{}, and {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

fn require_string(item: &Map<String, Value>, path: &str, field: &str) -> Result<(), OpenAiInvalid> {
    match item.get(field) {
        Some(Value::String(_)) => Ok(()),
        None | Some(Value::Null) => Err(oa_missing(format!("{path}.{field}"))),
        Some(other) => Err(oa_type(format!("{path}.{field}"), "a string", other)),
    }
}

/// Validates a Responses request body. The messages follow the platform's validator
/// (the same `Missing required parameter` / `Invalid type` / `Invalid value` forms as
/// Chat Completions); the Responses-specific ones are quoted from real answers:
/// `max_output_tokens` below 16 (vectorize-io/hindsight#58), an unknown
/// `previous_response_id` (bigduu/Bamboo-agent#513, maximhq/bifrost#2441: the mock keeps
/// no responses, so every id is unknown), and a `function_call_output` answering no
/// `function_call` of the input (james-6-23/codex2api#414).
pub(crate) fn responses(body: &Value) -> Result<(), OpenAiInvalid> {
    let Some(obj) = body.as_object() else {
        return Err(oa(
            format!(
                "Invalid type for body: expected an object, but got {} instead.",
                oa_kind(body)
            ),
            None,
            Some("invalid_type"),
        ));
    };
    if let Some(key) = obj.keys().find(|k| !RESPONSES_PARAMS.contains(&k.as_str())) {
        return Err(oa(
            format!("Unknown parameter: '{key}'."),
            Some(key.clone()),
            Some("unknown_parameter"),
        ));
    }
    match obj.get("model") {
        None | Some(Value::Null) => return Err(oa_missing("model".to_owned())),
        Some(Value::String(_)) => {}
        Some(other) => return Err(oa_type("model".to_owned(), "a string", other)),
    }
    match obj.get("previous_response_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(id)) => {
            return Err(oa(
                format!("Previous response with id '{id}' not found."),
                Some("previous_response_id".to_owned()),
                Some("previous_response_not_found"),
            ))
        }
        Some(other) => {
            return Err(oa_type(
                "previous_response_id".to_owned(),
                "a string",
                other,
            ))
        }
    }
    match obj.get("input") {
        // A stored prompt template may stand in for the input.
        None | Some(Value::Null) if obj.get("prompt").is_some_and(|p| !p.is_null()) => {}
        None | Some(Value::Null) => return Err(oa_missing("input".to_owned())),
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                responses_item(i, item)?;
            }
            responses_tool_pairing(items)?;
        }
        Some(other) => {
            return Err(oa_type(
                "input".to_owned(),
                "one of a string or array of objects",
                other,
            ))
        }
    }
    match obj.get("max_output_tokens") {
        None | Some(Value::Null) => {}
        Some(v) => match v.as_i64() {
            Some(n) if n < 16 => {
                return Err(oa(
                    format!(
                        "Invalid 'max_output_tokens': integer below minimum value. Expected a \
                         value >= 16, but got {n} instead."
                    ),
                    Some("max_output_tokens".to_owned()),
                    Some("integer_below_min_value"),
                ))
            }
            Some(_) => {}
            None if v.is_u64() => {}
            None => return Err(oa_type("max_output_tokens".to_owned(), "an integer", v)),
        },
    }
    if let Some(stream) = obj.get("stream") {
        if !stream.is_boolean() && !stream.is_null() {
            return Err(oa_type("stream".to_owned(), "a boolean", stream));
        }
    }
    Ok(())
}

const RESPONSES_ROLES: [&str; 4] = ["assistant", "system", "developer", "user"];

fn responses_item(i: usize, item: &Value) -> Result<(), OpenAiInvalid> {
    let path = format!("input[{i}]");
    let Some(obj) = item.as_object() else {
        return Err(oa_type(path, "an object", item));
    };
    let kind = match obj.get("type") {
        // An "easy" input message: `{role, content}` without a type.
        None | Some(Value::Null) => "message",
        Some(Value::String(t)) if RESPONSES_ITEM_TYPES.contains(&t.as_str()) => t.as_str(),
        Some(Value::String(t)) => {
            return Err(oa(
                format!(
                    "Invalid value: '{t}'. Supported values are: {}.",
                    supported(&RESPONSES_ITEM_TYPES)
                ),
                Some(format!("{path}.type")),
                Some("invalid_value"),
            ))
        }
        Some(other) => return Err(oa_type(format!("{path}.type"), "a string", other)),
    };
    match kind {
        "message" => {
            match obj.get("role") {
                None | Some(Value::Null) => return Err(oa_missing(format!("{path}.role"))),
                Some(Value::String(r)) if RESPONSES_ROLES.contains(&r.as_str()) => {}
                Some(Value::String(r)) => {
                    return Err(oa(
                        format!(
                            "Invalid value: '{r}'. Supported values are: {}.",
                            supported(&RESPONSES_ROLES)
                        ),
                        Some(format!("{path}.role")),
                        Some("invalid_value"),
                    ))
                }
                Some(other) => return Err(oa_type(format!("{path}.role"), "a string", other)),
            }
            match obj.get("content") {
                None | Some(Value::Null) => return Err(oa_missing(format!("{path}.content"))),
                Some(Value::String(_) | Value::Array(_)) => {}
                Some(other) => {
                    return Err(oa_type(
                        format!("{path}.content"),
                        "one of a string or array of objects",
                        other,
                    ))
                }
            }
        }
        "function_call" => {
            require_string(obj, &path, "call_id")?;
            require_string(obj, &path, "name")?;
            require_string(obj, &path, "arguments")?;
        }
        "function_call_output" => {
            require_string(obj, &path, "call_id")?;
            match obj.get("output") {
                None | Some(Value::Null) => return Err(oa_missing(format!("{path}.output"))),
                Some(Value::String(_) | Value::Array(_)) => {}
                Some(other) => {
                    return Err(oa_type(
                        format!("{path}.output"),
                        "one of a string or array of objects",
                        other,
                    ))
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Each `function_call_output` must answer a `function_call` earlier in the input.
fn responses_tool_pairing(items: &[Value]) -> Result<(), OpenAiInvalid> {
    let mut calls = HashSet::new();
    for item in items {
        let call_id = item.get("call_id").and_then(Value::as_str);
        match (item.get("type").and_then(Value::as_str), call_id) {
            (Some("function_call"), Some(id)) => {
                calls.insert(id);
            }
            (Some("function_call_output"), Some(id)) if !calls.contains(id) => {
                return Err(oa(
                    format!("No tool call found for function call output with call_id {id}."),
                    Some("input".to_owned()),
                    None,
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Validates a Messages request body; the error is the API's `path: problem` message.
/// `system_turns`: the `mid-conversation-system` beta (sent by Claude Code) lets `system`
/// messages appear inside `messages`.
pub(crate) fn anthropic(body: &Value, system_turns: bool) -> Result<(), String> {
    let Some(obj) = body.as_object() else {
        return Err("Input should be a valid dictionary".to_owned());
    };
    match obj.get("model") {
        None => return Err("model: Field required".to_owned()),
        Some(Value::String(_)) => {}
        Some(_) => return Err("model: Input should be a valid string".to_owned()),
    }
    match obj.get("max_tokens") {
        None => return Err("max_tokens: Field required".to_owned()),
        Some(v) => {
            let n = v
                .as_i64()
                .or_else(|| v.as_u64().map(|_| i64::MAX))
                .or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64));
            match n {
                None => return Err("max_tokens: Input should be a valid integer".to_owned()),
                Some(n) if n < 1 => {
                    return Err("max_tokens: Input should be greater than or equal to 1".to_owned())
                }
                Some(_) => {}
            }
        }
    }
    let messages = match obj.get("messages") {
        None => return Err("messages: Field required".to_owned()),
        Some(Value::Array(m)) => m,
        Some(_) => return Err("messages: Input should be a valid list".to_owned()),
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".to_owned());
    }
    for (i, m) in messages.iter().enumerate() {
        anthropic_message(messages, i, m, system_turns)?;
    }
    match obj.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (k, b) in blocks.iter().enumerate() {
                let Some(b) = b.as_object() else {
                    return Err(format!("system.{k}: Input should be a valid dictionary"));
                };
                match b.get("type") {
                    None => return Err(format!("system.{k}.type: Field required")),
                    Some(Value::String(t)) if t == "text" => {}
                    Some(_) => return Err(format!("system.{k}.type: Input should be 'text'")),
                }
                if !b.get("text").is_some_and(Value::is_string) {
                    return Err(format!("system.{k}.text: Field required"));
                }
            }
        }
        Some(_) => return Err("system: Input should be a valid list".to_owned()),
    }
    if let Some(stream) = obj.get("stream") {
        if !stream.is_boolean() {
            return Err("stream: Input should be a valid boolean".to_owned());
        }
    }
    if let Some(tools) = obj.get("tools") {
        anthropic_tools(tools)?;
    }
    Ok(())
}

/// Custom tools need a name and an `input_schema`; Anthropic-defined tools (server tools
/// such as web search, and client tools such as bash) are named by a dated `type`.
fn anthropic_tools(tools: &Value) -> Result<(), String> {
    let Some(tools) = tools.as_array() else {
        return Err("tools: Input should be a valid list".to_owned());
    };
    for (k, t) in tools.iter().enumerate() {
        let Some(t) = t.as_object() else {
            return Err(format!("tools.{k}: Input should be a valid dictionary"));
        };
        if !t.get("name").is_some_and(Value::is_string) {
            return Err(format!("tools.{k}.name: Field required"));
        }
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {
                if !t.get("input_schema").is_some_and(Value::is_object) {
                    return Err(format!("tools.{k}.custom.input_schema: Field required"));
                }
            }
            Some(kind) => {
                let dated = kind
                    .rsplit_once('_')
                    .is_some_and(|(_, d)| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()));
                if !dated {
                    return Err(format!(
                        "tools.{k}: Input tag '{kind}' found using 'type' does not match any of the expected tags"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Ids of the `tool_use` (or `tool_result`'s `tool_use_id`) blocks of a message.
fn block_ids<'a>(message: &'a Value, block_type: &str, id_field: &str) -> Vec<&'a str> {
    message
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some(block_type))
                .filter_map(|b| b.get(id_field).and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

fn anthropic_message(
    messages: &[Value],
    i: usize,
    m: &Value,
    system_turns: bool,
) -> Result<(), String> {
    let Some(obj) = m.as_object() else {
        return Err(format!("messages.{i}: Input should be a valid dictionary"));
    };
    match obj.get("role") {
        None => return Err(format!("messages.{i}.role: Field required")),
        Some(Value::String(r)) if r == "user" || r == "assistant" => {}
        Some(Value::String(r)) if r == "system" && system_turns => {}
        Some(_) => {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ))
        }
    }
    match obj.get("content") {
        None => return Err(format!("messages.{i}.content: Field required")),
        Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                anthropic_block(i, j, b)?;
            }
        }
        Some(_) => {
            return Err(format!(
                "messages.{i}.content: Input should be a valid list"
            ))
        }
    }
    // tool_result blocks must answer tool_use blocks of the previous message...
    let results = block_ids(m, "tool_result", "tool_use_id");
    if !results.is_empty() {
        let uses = if i == 0 {
            Vec::new()
        } else {
            block_ids(&messages[i - 1], "tool_use", "id")
        };
        let orphans: Vec<&str> = results
            .into_iter()
            .filter(|id| !uses.contains(id))
            .collect();
        if !orphans.is_empty() {
            return Err(format!(
                "messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: \
                 {}. Each `tool_result` block must have a corresponding `tool_use` block in the \
                 previous message.",
                orphans.join(", ")
            ));
        }
    }
    // ...and tool_use blocks must be answered by the next message, if there is one.
    if let Some(next) = messages.get(i + 1) {
        let uses = block_ids(m, "tool_use", "id");
        if !uses.is_empty() {
            let results = block_ids(next, "tool_result", "tool_use_id");
            let unanswered: Vec<&str> = uses
                .into_iter()
                .filter(|id| !results.contains(id))
                .collect();
            if !unanswered.is_empty() {
                return Err(format!(
                    "messages.{}: `tool_use` ids were found without `tool_result` blocks \
                     immediately after: {}. Each `tool_use` block must have a corresponding \
                     `tool_result` block in the next message.",
                    i + 1,
                    unanswered.join(", ")
                ));
            }
        }
    }
    Ok(())
}

fn require(block: &Map<String, Value>, path: &str, field: &str) -> Result<(), String> {
    if block.contains_key(field) {
        Ok(())
    } else {
        Err(format!("{path}.{field}: Field required"))
    }
}

fn anthropic_block(i: usize, j: usize, b: &Value) -> Result<(), String> {
    let path = format!("messages.{i}.content.{j}");
    let Some(block) = b.as_object() else {
        return Err(format!("{path}: Input should be a valid dictionary"));
    };
    let kind = match block.get("type") {
        None => return Err(format!("{path}.type: Field required")),
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(format!("{path}.type: Input should be a valid string")),
    };
    // Pydantic-style paths name the union member: messages.0.content.1.tool_use.id
    let tagged = format!("{path}.{kind}");
    match kind {
        "text" => {
            require(block, &tagged, "text")?;
            if !block.get("text").is_some_and(Value::is_string) {
                return Err(format!("{tagged}.text: Input should be a valid string"));
            }
        }
        "image" | "document" => require(block, &tagged, "source")?,
        "tool_use" => {
            require(block, &tagged, "id")?;
            require(block, &tagged, "name")?;
            require(block, &tagged, "input")?;
            if !block.get("input").is_some_and(Value::is_object) {
                return Err(format!(
                    "{tagged}.input: Input should be a valid dictionary"
                ));
            }
        }
        "tool_result" => require(block, &tagged, "tool_use_id")?,
        "thinking" => {
            require(block, &tagged, "thinking")?;
            require(block, &tagged, "signature")?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anthropic_messages() {
        let ok = json!({"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]});
        assert_eq!(anthropic(&ok, false), Ok(()));
        // Claude Code's mid-conversation system turns are valid under their beta only.
        let system_turn = json!({"model":"m","max_tokens":1,"messages":[{"role":"user","content":"a"},{"role":"system","content":"b"}]});
        assert!(anthropic(&system_turn, false).is_err());
        assert_eq!(anthropic(&system_turn, true), Ok(()));
        let cases = [
            (
                json!({"model":"m","messages":[]}),
                "max_tokens: Field required",
            ),
            (
                json!({"max_tokens":1,"messages":[]}),
                "model: Field required",
            ),
            (
                json!({"model":"m","max_tokens":0,"messages":[]}),
                "max_tokens: Input should be greater than or equal to 1",
            ),
            (
                json!({"model":"m","max_tokens":"x","messages":[]}),
                "max_tokens: Input should be a valid integer",
            ),
            (
                json!({"model":"m","max_tokens":1}),
                "messages: Field required",
            ),
            (
                json!({"model":"m","max_tokens":1,"messages":[]}),
                "messages: at least one message is required",
            ),
            (
                json!({"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}),
                "messages.0.role: Input should be 'user' or 'assistant'",
            ),
            (
                json!({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"text":"x"}]}]}),
                "messages.0.content.0.type: Field required",
            ),
            (
                json!({"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f"}]}]}),
                "messages.0.content.0.tool_use.input: Field required",
            ),
            (
                json!({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]}),
                "messages.0.content.0.tool_result.tool_use_id: Field required",
            ),
            (
                json!({"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image"}]}]}),
                "messages.0.content.0.image.source: Field required",
            ),
            (
                json!({"model":"m","max_tokens":1,"system":[{"type":"image"}],"messages":[{"role":"user","content":"x"}]}),
                "system.0.type: Input should be 'text'",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(anthropic(&body, false).unwrap_err(), want, "{body}");
        }
    }

    #[test]
    fn anthropic_tool_pairing() {
        let good = json!({"model":"m","max_tokens":5,"messages":[
            {"role":"user","content":"weather?"},
            {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"w","input":{}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]}
        ]});
        assert_eq!(anthropic(&good, false), Ok(()));
        let orphan = json!({"model":"m","max_tokens":5,"messages":[
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_9"}]}
        ]});
        assert!(anthropic(&orphan, false).unwrap_err().contains("toolu_9"));
        let unanswered = json!({"model":"m","max_tokens":5,"messages":[
            {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"w","input":{}}]},
            {"role":"user","content":"nevermind"}
        ]});
        assert!(anthropic(&unanswered, false)
            .unwrap_err()
            .starts_with("messages.1: `tool_use` ids were found without `tool_result`"));
    }

    #[test]
    fn openai_messages() {
        let ok = json!({"model":"m","messages":[{"role":"user","content":"hi"}]});
        assert_eq!(openai(&ok), Ok(()));
        let e = openai(&json!({"model":"m"})).unwrap_err();
        assert_eq!(e.message, "Missing required parameter: 'messages'.");
        assert_eq!(e.param.as_deref(), Some("messages"));
        assert_eq!(e.code, Some("missing_required_parameter"));
        let e = openai(&json!({"messages":[]})).unwrap_err();
        assert_eq!(e.message, "you must provide a model parameter");
        let e = openai(&json!({"model":"m","messages":[]})).unwrap_err();
        assert_eq!(e.code, Some("empty_array"));
        let e =
            openai(&json!({"model":"m","messages":[{"role":"robot","content":"x"}]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        assert_eq!(e.code, Some("invalid_value"));
        let e = openai(&json!({"model":"m","messages":["x"]})).unwrap_err();
        assert_eq!(e.code, Some("invalid_type"));
        let e = openai(&json!({"model":"m","messages":[{"content":"x"}]})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn responses_table() {
        let ok = json!({"model":"m","input":"hi"});
        assert_eq!(responses(&ok), Ok(()));
        let items = json!({"model":"m","input":[
            {"role":"user","content":"weather?"},
            {"type":"message","role":"developer","content":[{"type":"input_text","text":"x"}]},
            {"type":"reasoning","id":"rs_1","summary":[]},
            {"type":"function_call","call_id":"call_1","name":"w","arguments":"{}"},
            {"type":"function_call_output","call_id":"call_1","output":"sunny"}
        ],"max_output_tokens":16,"stream":true,"store":false,"client_metadata":{"a":"b"}});
        assert_eq!(responses(&items), Ok(()));
        let cases: [(Value, &str, Option<&str>, Option<&str>); 12] = [
            (json!({"input":"x"}), "Missing required parameter: 'model'.", Some("model"),
             Some("missing_required_parameter")),
            (json!({"model":"m"}), "Missing required parameter: 'input'.", Some("input"),
             Some("missing_required_parameter")),
            (json!({"model":"m","input":5}),
             "Invalid type for 'input': expected one of a string or array of objects, but got an integer instead.",
             Some("input"), Some("invalid_type")),
            (json!({"model":"m","input":"x","messages":[]}), "Unknown parameter: 'messages'.",
             Some("messages"), Some("unknown_parameter")),
            (json!({"model":"m","input":"x","previous_response_id":"resp_9"}),
             "Previous response with id 'resp_9' not found.", Some("previous_response_id"),
             Some("previous_response_not_found")),
            (json!({"model":"m","input":"x","max_output_tokens":10}),
             "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 10 instead.",
             Some("max_output_tokens"), Some("integer_below_min_value")),
            (json!({"model":"m","input":[{"type":"function_call_output","call_id":"call_9","output":"x"}]}),
             "No tool call found for function call output with call_id call_9.", Some("input"), None),
            (json!({"model":"m","input":[{"role":"robot","content":"x"}]}),
             "Invalid value: 'robot'. Supported values are: 'assistant', 'system', 'developer', and 'user'.",
             Some("input[0].role"), Some("invalid_value")),
            (json!({"model":"m","input":[{"content":"x"}]}), "Missing required parameter: 'input[0].role'.",
             Some("input[0].role"), Some("missing_required_parameter")),
            (json!({"model":"m","input":[{"type":"function_call","call_id":"c","name":"w"}]}),
             "Missing required parameter: 'input[0].arguments'.", Some("input[0].arguments"),
             Some("missing_required_parameter")),
            (json!({"model":"m","input":["x"]}),
             "Invalid type for 'input[0]': expected an object, but got a string instead.",
             Some("input[0]"), Some("invalid_type")),
            (json!({"model":"m","input":"x","stream":"yes"}),
             "Invalid type for 'stream': expected a boolean, but got a string instead.",
             Some("stream"), Some("invalid_type")),
        ];
        for (body, message, param, code) in cases {
            let e = responses(&body).expect_err("invalid");
            assert_eq!(e.message, message, "{body}");
            assert_eq!(e.param.as_deref(), param, "{body}");
            assert_eq!(e.code, code, "{body}");
        }
        let e = responses(&json!({"model":"m","input":[{"type":"chat"}]})).expect_err("invalid");
        assert!(e
            .message
            .starts_with("Invalid value: 'chat'. Supported values are: 'message', "));
        assert_eq!(e.param.as_deref(), Some("input[0].type"));
        // A prompt template stands in for the input.
        assert_eq!(
            responses(&json!({"model":"m","prompt":{"id":"pmpt_1"}})),
            Ok(())
        );
    }

    #[test]
    fn openai_tool_pairing() {
        let call =
            json!({"id":"call_1","type":"function","function":{"name":"w","arguments":"{}"}});
        let good = json!({"model":"m","messages":[
            {"role":"user","content":"weather?"},
            {"role":"assistant","content":null,"tool_calls":[call]},
            {"role":"tool","tool_call_id":"call_1","content":"sunny"}
        ]});
        assert_eq!(openai(&good), Ok(()));
        let stray = json!({"model":"m","messages":[
            {"role":"user","content":"x"},
            {"role":"tool","tool_call_id":"call_1","content":"sunny"}
        ]});
        assert!(openai(&stray).unwrap_err().message.contains("preceeding"));
        let unanswered = json!({"model":"m","messages":[
            {"role":"assistant","tool_calls":[call]},
            {"role":"user","content":"x"}
        ]});
        assert!(openai(&unanswered).unwrap_err().message.contains("call_1"));
        let bad_args = json!({"model":"m","messages":[
            {"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"w","arguments":{}}}]}
        ]});
        assert_eq!(
            openai(&bad_args).unwrap_err().param.as_deref(),
            Some("messages[0].tool_calls[0].function.arguments")
        );
    }
}
