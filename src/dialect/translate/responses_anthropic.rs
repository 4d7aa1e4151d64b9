//! The Responses API ⇄ Anthropic messages: requests both ways and non-streaming answers.
//!
//! Requests, and answers from a Responses backend, go through chat completions: the two
//! translations that already exist, composed (one more JSON round trip, on a path that parses
//! whole bodies anyway). Chat has no web search, so the one thing both sides run themselves
//! — the web search tool — is taken out before and put back after: Responses `web_search` ⇄
//! Anthropic's `web_search_20250305` server tool (allowed domains and the user's location
//! carried over). An Anthropic answer to a Responses client is translated directly, because
//! its web search calls and citations (`server_tool_use`, `web_search_tool_result`,
//! `citations`) have no chat form: they become `web_search_call` items and `url_citation`
//! annotations.
//!
//! What cannot cross is listed in the README's mapping table; built-in tools the backend
//! cannot run are dropped when merely offered (their names are returned for the
//! `x-switchyard-dropped-tools` header) and refused when `tool_choice` forces one.

use serde_json::{json, Value};

use super::common::{take, to_bytes, type_of, unix_now, Lossy, Obj, Tokens};
use super::responses_chat::{
    custom_input, custom_tool_call_item, function_call_item, id_suffix, reasoning_item,
    response_object, responses_to_chat_via, BuiltIns, Via,
};
use super::{chat_responses, request, response, Options, TranslateError};

/// Anthropic's web search server tool version sent for a Responses `web_search`.
const ANTHROPIC_WEB_SEARCH: &str = "web_search_20250305";

fn bad(msg: impl Into<String>) -> TranslateError {
    TranslateError::InvalidResponse(msg.into())
}

fn parse_object(body: &[u8], what: fn(String) -> TranslateError) -> Result<Obj, TranslateError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(what("the body must be a JSON object".into())),
        Err(e) => Err(what(format!("the body is not valid JSON: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// Responses request (client) → Anthropic messages request (backend), and the built-in tools
/// dropped.
pub(super) fn responses_to_anthropic(
    body: &[u8],
    model: &str,
    opts: &Options,
) -> Result<(Value, Vec<String>), TranslateError> {
    let (chat, built_ins) = responses_to_chat_via(body, model, opts, Via::Anthropic)?;
    let mut out = request::openai_to_anthropic(&to_bytes(&chat), model, opts)?;
    let BuiltIns {
        dropped,
        web_search,
        web_search_forced,
    } = built_ins;
    if let Some(tool) = web_search {
        let lossy = Lossy {
            strict: opts.strict,
            backend: "Anthropic messages",
        };
        push_tool(&mut out, anthropic_web_search(&tool, lossy)?);
        if web_search_forced {
            out["tool_choice"] = json!({"type": "tool", "name": "web_search"});
        }
    }
    Ok((out, dropped))
}

fn push_tool(req: &mut Value, tool: Value) {
    match req.get_mut("tools") {
        Some(Value::Array(tools)) => tools.push(tool),
        _ => req["tools"] = Value::Array(vec![tool]),
    }
}

/// A Responses `web_search` tool → Anthropic's web search server tool.
fn anthropic_web_search(t: &Value, lossy: Lossy) -> Result<Value, TranslateError> {
    let mut tool = json!({"type": ANTHROPIC_WEB_SEARCH, "name": "web_search"});
    if let Some(domains) = t
        .pointer("/filters/allowed_domains")
        .filter(|d| d.is_array())
    {
        tool["allowed_domains"] = domains.clone();
    }
    if let Some(location) = t.get("user_location").filter(|l| l.is_object()) {
        tool["user_location"] = location_of(location);
    }
    if t.get("search_context_size").is_some_and(|s| !s.is_null()) {
        lossy.note("`web_search.search_context_size`");
    }
    Ok(tool)
}

/// An approximate user location, as both APIs write it (`type`, `city`, `region`, `country`,
/// `timezone`; nothing else is carried).
fn location_of(l: &Value) -> Value {
    let mut out = json!({"type": "approximate"});
    for key in ["city", "region", "country", "timezone"] {
        if let Some(v) = l.get(key).filter(|v| v.is_string()) {
            out[key] = v.clone();
        }
    }
    out
}

/// The typed (server or Anthropic-defined) tools of an Anthropic request, by label.
fn typed_tools(req: &Obj) -> impl Iterator<Item = (&Value, String)> {
    req.get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| !matches!(type_of(t), "" | "custom"))
        .map(|t| {
            let label = match t.get("name").and_then(Value::as_str) {
                Some(name) => format!("{}:{name}", type_of(t)),
                None => type_of(t).to_owned(),
            };
            (t, label)
        })
}

/// The tool an Anthropic `tool_choice` forces by name.
fn forced_name(req: &Obj) -> Option<&str> {
    let c = req.get("tool_choice")?;
    (type_of(c) == "tool")
        .then(|| c.get("name").and_then(Value::as_str))
        .flatten()
}

/// The typed tools an Anthropic request offers that an OpenAI backend cannot run; refused
/// when `tool_choice` forces one. `keep` says which of them the backend runs after all.
fn anthropic_built_ins(
    req: &Obj,
    keep: impl Fn(&Value) -> bool,
    api: &str,
) -> Result<Vec<String>, TranslateError> {
    let forced = forced_name(req);
    let mut dropped = Vec::new();
    for (t, label) in typed_tools(req) {
        if keep(t) {
            continue;
        }
        if forced.is_some() && t.get("name").and_then(Value::as_str) == forced {
            return Err(TranslateError::Unsupported(format!(
                "`tool_choice` forces the tool {label}, which the {api} backend cannot run"
            )));
        }
        dropped.push(label);
    }
    if !dropped.is_empty() {
        tracing::info!(
            backend = api,
            dropped_tools = %dropped.join(","),
            "translation: built-in tools the backend cannot run were dropped"
        );
    }
    Ok(dropped)
}

/// Anthropic request → chat completions request: the built-in tools dropped, for the header
/// (the translation itself is [`request::anthropic_to_openai`]).
pub(super) fn anthropic_to_chat(
    body: &[u8],
    model: &str,
    opts: &Options,
) -> Result<(Value, Vec<String>), TranslateError> {
    let req = parse_object(body, TranslateError::Invalid)?;
    let dropped = anthropic_built_ins(&req, |_| false, "OpenAI chat completions")?;
    Ok((request::anthropic_to_openai(body, model, opts)?, dropped))
}

/// Anthropic messages request (client) → Responses request (backend), and the built-in
/// tools dropped.
pub(super) fn anthropic_to_responses(
    body: &[u8],
    model: &str,
    opts: &Options,
) -> Result<(Value, Vec<String>), TranslateError> {
    let mut req = parse_object(body, TranslateError::Invalid)?;
    let web_search = |t: &Value| type_of(t).starts_with("web_search_2");
    let dropped = anthropic_built_ins(&req, web_search, "OpenAI Responses")?;
    // Take the web search out (chat has no such tool) and put it back after.
    let mut search = None;
    if let Some(Value::Array(tools)) = req.get_mut("tools") {
        if let Some(i) = tools.iter().position(web_search) {
            search = Some(tools.remove(i));
        }
    }
    let forced = search.as_ref().is_some_and(|s| {
        s.get("name").and_then(Value::as_str).is_some() && forced_name(&req) == s["name"].as_str()
    });
    if forced {
        take(&mut req, "tool_choice");
    }
    let chat = request::anthropic_to_openai(&to_bytes(&Value::Object(req)), model, opts)?;
    let mut out = chat_responses::chat_to_responses(&to_bytes(&chat), model, opts)?;
    if let Some(s) = search {
        let lossy = Lossy {
            strict: opts.strict,
            backend: "OpenAI Responses",
        };
        push_tool(&mut out, responses_web_search(&s, lossy)?);
        if forced {
            out["tool_choice"] = json!({"type": "web_search"});
        }
    }
    Ok((out, dropped))
}

/// Anthropic's web search server tool → the Responses `web_search` tool.
fn responses_web_search(t: &Value, lossy: Lossy) -> Result<Value, TranslateError> {
    let mut tool = json!({"type": "web_search"});
    if let Some(domains) = t.get("allowed_domains").filter(|d| d.is_array()) {
        tool["filters"] = json!({ "allowed_domains": domains });
    }
    if let Some(location) = t.get("user_location").filter(|l| l.is_object()) {
        tool["user_location"] = location_of(location);
    }
    if t.get("blocked_domains").is_some_and(|d| !d.is_null()) {
        lossy.drop("`blocked_domains` of the web search tool")?;
    }
    if t.get("max_uses").is_some_and(|d| !d.is_null()) {
        lossy.note("`max_uses` of the web search tool");
    }
    Ok(tool)
}

// ---------------------------------------------------------------------------------------------
// Non-streaming answers
// ---------------------------------------------------------------------------------------------

/// A Responses backend's answer → an Anthropic `message` (through chat completions; web
/// search calls leave only their effect on the text).
pub(super) fn responses_answer_to_anthropic(
    body: &[u8],
    client_model: &str,
) -> Result<Value, TranslateError> {
    let chat = chat_responses::responses_to_chat(body, client_model)?;
    response::openai_to_anthropic(&to_bytes(&chat), client_model)
}

/// Responses `status` and `incomplete_details` for an Anthropic `stop_reason`.
pub(super) fn status_of_stop(stop: Option<&str>) -> (&'static str, Value) {
    match stop {
        Some("max_tokens") | Some("model_context_window_exceeded") => {
            ("incomplete", json!({"reason": "max_output_tokens"}))
        }
        Some("refusal") => ("incomplete", json!({"reason": "content_filter"})),
        // end_turn, tool_use, stop_sequence, pause_turn and anything new.
        _ => ("completed", Value::Null),
    }
}

/// Responses `usage` from Anthropic token counts (`input_tokens` counts cache reads and
/// writes, as OpenAI's do).
pub(super) fn usage_of_tokens(t: &Tokens) -> Value {
    let input = t.prompt_tokens();
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": t.cache_read, "cache_write_tokens": t.cache_creation},
        "output_tokens": t.output,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input.saturating_add(t.output),
    })
}

/// A `url_citation` annotation for an Anthropic web search citation covering
/// `start..end` of the part's text; other citation kinds (documents) have no Responses form.
pub(super) fn annotation_of(citation: &Value, start: usize, end: usize) -> Option<Value> {
    if type_of(citation) != "web_search_result_location" {
        return None;
    }
    let url = citation.get("url").and_then(Value::as_str)?;
    Some(json!({
        "type": "url_citation",
        "start_index": start,
        "end_index": end,
        "url": url,
        "title": citation.get("title").and_then(Value::as_str).unwrap_or(""),
    }))
}

/// A `web_search_call` item for an Anthropic `server_tool_use` block.
pub(super) fn web_search_item(id: &str, status: &str, query: &str, sources: &[Value]) -> Value {
    let mut action = json!({"type": "search", "query": query});
    if !sources.is_empty() {
        action["sources"] = Value::Array(sources.to_vec());
    }
    json!({"type": "web_search_call", "id": id, "status": status, "action": action})
}

/// The sources of a `web_search_tool_result` block (`{type: url, url}` each), or `None` when
/// the search failed.
pub(super) fn sources_of(result: &Value) -> Option<Vec<Value>> {
    match result.get("content") {
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(|r| r.get("url").and_then(Value::as_str))
                .map(|url| json!({"type": "url", "url": url}))
                .collect(),
        ),
        _ => None,
    }
}

/// The length of `s` in the units Responses annotation indexes count (characters).
pub(super) fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// An Anthropic `message` (backend) → a Response (client).
pub(super) fn anthropic_answer_to_responses(
    body: &[u8],
    client_model: &str,
    custom: &[String],
) -> Result<Value, TranslateError> {
    let v = Value::Object(parse_object(body, TranslateError::InvalidResponse)?);
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the message has no `content` list"))?;
    let upstream_id = v.get("id").and_then(Value::as_str);
    let suffix = id_suffix(upstream_id.map(|id| id.strip_prefix("msg_").unwrap_or(id)));
    let mut output: Vec<Value> = Vec::new();
    // The open message item: its text and annotations (consecutive text blocks join it).
    let mut message: Option<(String, Vec<Value>)> = None;
    let flush = |output: &mut Vec<Value>, message: &mut Option<(String, Vec<Value>)>| {
        if let Some((text, annotations)) = message.take() {
            let n = output.len();
            output.push(json!({
                "type": "message", "id": format!("msg_{suffix}_{n}"), "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "annotations": annotations, "logprobs": [],
                             "text": text}],
            }));
        }
    };
    for b in blocks {
        match type_of(b) {
            "text" => {
                let t = b.get("text").and_then(Value::as_str).unwrap_or("");
                let (text, annotations) = message.get_or_insert_with(Default::default);
                let start = char_len(text);
                text.push_str(t);
                let end = char_len(text);
                for c in b
                    .get("citations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    annotations.extend(annotation_of(c, start, end));
                }
            }
            "thinking" => {
                flush(&mut output, &mut message);
                let t = b.get("thinking").and_then(Value::as_str).unwrap_or("");
                let n = output.len();
                output.push(reasoning_item(&format!("rs_{suffix}_{n}"), t));
            }
            "tool_use" => {
                flush(&mut output, &mut message);
                let n = output.len();
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                let name = b.get("name").and_then(Value::as_str).unwrap_or("");
                let call_id = b.get("id").and_then(Value::as_str).unwrap_or("");
                output.push(if custom.iter().any(|c| c == name) {
                    custom_tool_call_item(
                        &format!("ctc_{suffix}_{n}"),
                        "completed",
                        call_id,
                        name,
                        &custom_input(&input.to_string()),
                    )
                } else {
                    function_call_item(
                        &format!("fc_{suffix}_{n}"),
                        "completed",
                        call_id,
                        name,
                        &input.to_string(),
                    )
                });
            }
            "server_tool_use" if b.get("name").and_then(Value::as_str) == Some("web_search") => {
                flush(&mut output, &mut message);
                let n = output.len();
                let query = b
                    .pointer("/input/query")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let mut item =
                    web_search_item(&format!("ws_{suffix}_{n}"), "completed", query, &[]);
                item["_tool_use_id"] = b.get("id").cloned().unwrap_or(Value::Null);
                output.push(item);
            }
            "web_search_tool_result" => {
                let id = b.get("tool_use_id");
                let call = output
                    .iter_mut()
                    .rev()
                    .find(|i| i.get("_tool_use_id").is_some() && i.get("_tool_use_id") == id);
                if let Some(call) = call {
                    match sources_of(b) {
                        Some(sources) if !sources.is_empty() => {
                            call["action"]["sources"] = Value::Array(sources)
                        }
                        Some(_) => {}
                        None => call["status"] = json!("failed"),
                    }
                }
            }
            other => tracing::debug!(block = other, "translation: dropped a response block"),
        }
    }
    flush(&mut output, &mut message);
    for item in &mut output {
        if let Value::Object(o) = item {
            o.remove("_tool_use_id");
        }
    }
    let mut tokens = Tokens::default();
    if let Some(u) = v.get("usage") {
        tokens.update_from_anthropic(u);
    }
    let now = unix_now();
    Ok(response_object(
        &format!("resp_{suffix}"),
        now,
        Some(now),
        client_model,
        status_of_stop(v.get("stop_reason").and_then(Value::as_str)),
        Value::Array(output),
        usage_of_tokens(&tokens),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_search_locations_carry_only_the_fields_both_apis_know() {
        let l = json!({"type": "approximate", "city": "Paris", "country": "FR", "zip": "75001"});
        assert_eq!(
            location_of(&l),
            json!({"type": "approximate", "city": "Paris", "country": "FR"})
        );
    }

    #[test]
    fn a_refusal_or_a_cut_answer_is_incomplete_anything_else_completed() {
        assert_eq!(status_of_stop(Some("max_tokens")).0, "incomplete");
        assert_eq!(status_of_stop(Some("refusal")).0, "incomplete");
        for s in [Some("end_turn"), Some("tool_use"), Some("pause_turn"), None] {
            assert_eq!(status_of_stop(s), ("completed", Value::Null), "{s:?}");
        }
    }
}
