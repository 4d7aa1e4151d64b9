//! Non-streaming response bodies: Anthropic `message` ⇄ OpenAI `chat.completion`.

use serde_json::{json, Value};

use super::common::{
    anthropic_id, fallback_tool_id, finish_reason, json, openai_id, stop_reason, tool_id, type_of,
    unix_now, Lossy, Tokens,
};
use super::request::arguments_to_input;
use super::TranslateError;

fn bad(msg: impl Into<String>) -> TranslateError {
    TranslateError::InvalidResponse(msg.into())
}

fn parse(body: &[u8]) -> Result<Value, TranslateError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(bad("the response body is not a JSON object")),
        Err(e) => Err(bad(format!("the response body is not valid JSON: {e}"))),
    }
}

/// Same dialect: only `model` changes.
pub(super) fn same_dialect(body: &[u8], client_model: &str) -> Result<Value, TranslateError> {
    let mut v = parse(body)?;
    v["model"] = Value::String(client_model.into());
    Ok(v)
}

/// Anthropic `message` (backend) → OpenAI `chat.completion` (client).
pub(super) fn anthropic_to_openai(
    body: &[u8],
    client_model: &str,
) -> Result<Value, TranslateError> {
    let v = parse(body)?;
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the message has no `content` list"))?;
    let mut text = String::new();
    let mut has_text = false;
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match type_of(b) {
            "text" => {
                text.push_str(b.get("text").and_then(Value::as_str).unwrap_or(""));
                has_text = true;
            }
            "thinking" => {
                reasoning.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or(""))
            }
            "tool_use" => {
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({
                    "id": b.get("id").and_then(Value::as_str).unwrap_or(""),
                    "type": "function",
                    "function": {
                        "name": b.get("name").and_then(Value::as_str).unwrap_or(""),
                        "arguments": input.to_string(),
                    },
                }));
            }
            other => tracing::debug!(block = other, "translation: dropped a response block"),
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
    let stop = v.get("stop_reason").and_then(Value::as_str);
    let finish = match stop {
        Some(s) => finish_reason(s),
        None if !calls.is_empty() => "tool_calls",
        None => "stop",
    };
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    message["refusal"] = Value::Null;
    let mut tokens = Tokens::default();
    if let Some(u) = v.get("usage") {
        tokens.update_from_anthropic(u);
    }
    Ok(json!({
        "id": openai_id(v.get("id").and_then(Value::as_str)),
        "object": "chat.completion",
        "created": unix_now(),
        "model": client_model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": json(&tokens.openai()),
    }))
}

/// The text of an OpenAI message `content` (a string, or — from some servers — text parts).
fn content_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// OpenAI `chat.completion` (backend) → Anthropic `message` (client).
pub(super) fn openai_to_anthropic(
    body: &[u8],
    client_model: &str,
) -> Result<Value, TranslateError> {
    let v = parse(body)?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| bad("the completion has no choices"))?;
    let message = choice
        .get("message")
        .ok_or_else(|| bad("the choice has no `message`"))?;
    let id = anthropic_id(v.get("id").and_then(Value::as_str));
    let mut content = Vec::new();
    let reasoning = ["reasoning_content", "reasoning"].iter().find_map(|k| {
        message
            .get(*k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    });
    if let Some(r) = reasoning {
        // No signature exists for reasoning from an OpenAI backend.
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    let text = content_text(message.get("content"));
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let refusal = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(r) = refusal {
        content.push(json!({"type": "text", "text": r}));
    }
    let lossy = Lossy {
        strict: false,
        backend: "Anthropic messages (response)",
    };
    let mut calls: Vec<&Value> = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    if let Some(fc) = message.get("function_call").filter(|f| f.is_object()) {
        calls.push(fc);
    }
    let has_calls = !calls.is_empty();
    for (i, call) in calls.into_iter().enumerate() {
        let f = call.get("function").unwrap_or(call);
        let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
        let call_id = match call
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            Some(c) => tool_id(c).into_owned(),
            None => fallback_tool_id(&id, i),
        };
        content.push(json!({
            "type": "tool_use",
            "id": call_id,
            "name": f.get("name").and_then(Value::as_str).unwrap_or(""),
            "input": arguments_to_input(args, lossy)?,
        }));
    }
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    let stop = match finish {
        _ if refusal.is_some() => "refusal",
        Some("length") => "max_tokens",
        // Some servers say "stop" when the model called tools.
        _ if has_calls => "tool_use",
        Some(f) => stop_reason(f),
        None => "end_turn",
    };
    let tokens = v.get("usage").map(Tokens::from_openai).unwrap_or_default();
    Ok(json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": client_model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": json(&tokens.anthropic()),
    }))
}
