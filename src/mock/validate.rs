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
