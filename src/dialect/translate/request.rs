//! Request bodies: OpenAI chat completions ⇄ Anthropic messages.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::common::{take, tool_id, type_of, Lossy, Obj};
use super::{Options, TranslateError};

fn invalid(msg: impl Into<String>) -> TranslateError {
    TranslateError::Invalid(msg.into())
}

fn parse_object(body: &[u8]) -> Result<Obj, TranslateError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(invalid("the request body must be a JSON object")),
        Err(e) => Err(invalid(format!("the request body is not valid JSON: {e}"))),
    }
}

fn take_messages(req: &mut Obj) -> Result<Vec<Value>, TranslateError> {
    match take(req, "messages") {
        Some(Value::Array(m)) if !m.is_empty() => Ok(m),
        Some(Value::Array(_)) => Err(invalid("`messages` must not be empty")),
        Some(_) => Err(invalid("`messages` must be an array")),
        None => Err(invalid("`messages` is required")),
    }
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

fn number(v: Value, field: &str) -> Result<Value, TranslateError> {
    if v.is_number() {
        Ok(v)
    } else {
        Err(invalid(format!("`{field}` must be a number")))
    }
}

fn string(v: Value, what: &str) -> Result<String, TranslateError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(invalid(format!("{what} must be a string"))),
    }
}

/// Anthropic refuses empty and whitespace-only text blocks.
fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

fn text_block(text: String) -> Value {
    json!({"type": "text", "text": text})
}

/// A request for a backend of the client's own dialect: only `model` changes.
pub(super) fn same_dialect(body: &[u8], model: &str) -> Result<Value, TranslateError> {
    let mut req = parse_object(body)?;
    req.insert("model".into(), Value::String(model.into()));
    Ok(Value::Object(req))
}

// ---------------------------------------------------------------------------------------------
// OpenAI → Anthropic
// ---------------------------------------------------------------------------------------------

/// OpenAI fields with no effect on the output: dropped without complaint even when strict.
const OPENAI_HINTS: &[&str] = &[
    "store",
    "metadata",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "stream_options",
    "safety_identifier",
];

pub(super) fn openai_to_anthropic(
    body: &[u8],
    model: &str,
    opts: &Options,
) -> Result<Value, TranslateError> {
    let mut req = parse_object(body)?;
    let lossy = Lossy {
        strict: opts.strict,
        backend: "Anthropic messages",
    };
    let mut out = Obj::new();
    out.insert("model".into(), Value::String(model.into()));

    let messages = take_messages(&mut req)?;
    let (system, turns) = openai_messages(messages, lossy)?;
    if let Some(system) = system {
        out.insert("system".into(), system);
    }

    let max = match take(&mut req, "max_completion_tokens") {
        Some(v) => {
            req.remove("max_tokens");
            positive_int(&v, "max_completion_tokens")?
        }
        None => match take(&mut req, "max_tokens") {
            Some(v) => positive_int(&v, "max_tokens")?,
            None => u64::from(opts.default_max_tokens.max(1)),
        },
    };
    out.insert("max_tokens".into(), max.into());

    if let Some(t) = take(&mut req, "temperature") {
        let t = number(t, "temperature")?;
        // OpenAI's range is 0..2, Anthropic's 0..1.
        if t.as_f64().is_some_and(|f| f > 1.0) {
            lossy.drop("a temperature above 1 (clamped to 1)")?;
            out.insert("temperature".into(), json!(1.0));
        } else {
            out.insert("temperature".into(), t);
        }
    }
    if let Some(p) = take(&mut req, "top_p") {
        let p = number(p, "top_p")?;
        // Recent Claude models refuse `temperature` and `top_p` together.
        if !out.contains_key("temperature") {
            out.insert("top_p".into(), p);
        } else if p.as_f64() == Some(1.0) {
            lossy.note("`top_p: 1` next to `temperature`");
        } else {
            lossy.drop("`top_p` next to `temperature`")?;
        }
    }
    if let Some(stop) = take(&mut req, "stop") {
        let list = match stop {
            Value::String(s) => vec![s],
            Value::Array(a) => a
                .into_iter()
                .map(|s| string(s, "each `stop` entry"))
                .collect::<Result<_, _>>()?,
            _ => return Err(invalid("`stop` must be a string or an array of strings")),
        };
        let mut kept = Vec::with_capacity(list.len());
        for s in list {
            if blank(&s) {
                // Anthropic: "each stop sequence must contain non-whitespace".
                lossy.drop("a whitespace-only stop sequence")?;
            } else {
                kept.push(Value::String(s));
            }
        }
        if !kept.is_empty() {
            out.insert("stop_sequences".into(), Value::Array(kept));
        }
    }
    if let Some(stream) = take(&mut req, "stream") {
        if !stream.is_boolean() {
            return Err(invalid("`stream` must be a boolean"));
        }
        out.insert("stream".into(), stream);
    }
    let user = take(&mut req, "user").or_else(|| take(&mut req, "safety_identifier"));
    if let Some(user) = user {
        out.insert(
            "metadata".into(),
            json!({"user_id": string(user, "`user`")?}),
        );
    }

    // Tools and tool choice.
    let mut tools = Vec::new();
    if let Some(list) = take(&mut req, "tools") {
        let Value::Array(list) = list else {
            return Err(invalid("`tools` must be an array"));
        };
        for t in list {
            if let Some(t) = openai_tool(t, lossy)? {
                tools.push(t);
            }
        }
    }
    let mut choice = match take(&mut req, "tool_choice") {
        Some(c) => openai_tool_choice(c, lossy)?,
        None => None,
    };
    let parallel = take(&mut req, "parallel_tool_calls");
    if parallel.as_ref().is_some_and(|p| !p.is_boolean()) {
        return Err(invalid("`parallel_tool_calls` must be a boolean"));
    }
    if tools.is_empty() {
        let used = tool_names_in(&turns);
        if !used.is_empty() || turns.iter().any(Turn::has_tool_result) {
            // "Requests which include tool_use or tool_result blocks must define tools."
            lossy.note("no tools with tool history: placeholder tool definitions added");
            let placeholder = |name: &str| {
                json!({"name": name, "description": "(no longer available)",
                       "input_schema": {"type": "object"}})
            };
            tools = used.iter().map(|n| placeholder(n)).collect();
            if tools.is_empty() {
                tools.push(placeholder("unavailable_tool"));
            }
            choice = Some(json!({"type": "none"}));
        } else {
            choice = None;
        }
    } else if parallel == Some(Value::Bool(false)) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if type_of(c) != "none" {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }

    if let Some(format) = take(&mut req, "response_format") {
        match type_of(&format) {
            "text" => {}
            "json_schema" => match format.pointer("/json_schema/schema") {
                Some(schema) if schema.is_object() => {
                    out.insert(
                        "output_config".into(),
                        json!({"format": {"type": "json_schema", "schema": schema}}),
                    );
                }
                _ => lossy.drop("`response_format` json_schema without a schema")?,
            },
            other => lossy.drop(&format!("`response_format` of type {other:?}"))?,
        }
    }

    out.insert(
        "messages".into(),
        Value::Array(turns.into_iter().map(Turn::into_value).collect()),
    );

    for (key, value) in req {
        if key == "model" || value.is_null() || OPENAI_HINTS.contains(&key.as_str()) {
            continue;
        }
        let default = match key.as_str() {
            "n" => value.as_u64() == Some(1),
            "frequency_penalty" | "presence_penalty" => value.as_f64() == Some(0.0),
            "logprobs" => value == Value::Bool(false),
            "logit_bias" => value.as_object().is_some_and(|o| o.is_empty()),
            "modalities" => value == json!(["text"]),
            _ => false,
        };
        if default {
            continue;
        }
        lossy.drop(&format!("`{key}`"))?;
    }
    Ok(Value::Object(out))
}

/// One Anthropic message being built.
struct Turn {
    role: &'static str,
    content: TurnContent,
}

enum TurnContent {
    Text(String),
    Blocks(Vec<Value>),
}

impl Turn {
    fn blocks(&self) -> &[Value] {
        match &self.content {
            TurnContent::Text(_) => &[],
            TurnContent::Blocks(b) => b,
        }
    }

    fn has_tool_result(&self) -> bool {
        self.blocks().iter().any(|b| type_of(b) == "tool_result")
    }

    fn into_value(self) -> Value {
        let content = match self.content {
            TurnContent::Text(s) => Value::String(s),
            TurnContent::Blocks(b) => Value::Array(b),
        };
        json!({"role": self.role, "content": content})
    }
}

fn tool_names_in(turns: &[Turn]) -> BTreeSet<String> {
    turns
        .iter()
        .flat_map(Turn::blocks)
        .filter(|b| type_of(b) == "tool_use")
        .filter_map(|b| b.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Consecutive same-role messages merge (Anthropic wants alternating turns).
#[derive(Default)]
struct Turns(Vec<Turn>);

impl Turns {
    fn push(&mut self, role: &'static str, content: TurnContent, lossy: Lossy) {
        match &content {
            TurnContent::Text(s) if blank(s) => {
                lossy.note("a message with empty text content");
                return;
            }
            TurnContent::Blocks(b) if b.is_empty() => {
                lossy.note("a message without content");
                return;
            }
            _ => {}
        }
        match self.0.last_mut() {
            Some(last) if last.role == role => {
                let mut blocks =
                    match std::mem::replace(&mut last.content, TurnContent::Blocks(vec![])) {
                        TurnContent::Text(s) => vec![text_block(s)],
                        TurnContent::Blocks(b) => b,
                    };
                match content {
                    TurnContent::Text(s) => blocks.push(text_block(s)),
                    TurnContent::Blocks(b) => blocks.extend(b),
                }
                last.content = TurnContent::Blocks(blocks);
            }
            _ => self.0.push(Turn { role, content }),
        }
    }
}

type System = Option<Value>;

fn openai_messages(
    messages: Vec<Value>,
    lossy: Lossy,
) -> Result<(System, Vec<Turn>), TranslateError> {
    let mut system: Vec<String> = Vec::new();
    let mut system_is_one_string = true;
    let mut turns = Turns::default();
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
                if !turns.0.is_empty() {
                    lossy.note("the position of a mid-conversation system message (hoisted)");
                }
                match content {
                    Some(Value::String(s)) if !blank(&s) => system.push(s),
                    Some(Value::String(_)) => {}
                    Some(Value::Array(parts)) => {
                        system_is_one_string = false;
                        for p in parts {
                            match type_of(&p) {
                                "text" => {
                                    let t = part_text(p, i)?;
                                    if !blank(&t) {
                                        system.push(t);
                                    }
                                }
                                other => lossy
                                    .drop(&format!("a system content part of type {other:?}"))?,
                            }
                        }
                    }
                    None => {}
                    Some(_) => {
                        return Err(invalid(format!(
                            "messages[{i}].content must be a string or an array"
                        )))
                    }
                }
            }
            "user" => {
                let content = match content {
                    Some(Value::String(s)) => TurnContent::Text(s),
                    Some(Value::Array(parts)) => {
                        TurnContent::Blocks(openai_parts(parts, i, lossy)?)
                    }
                    _ => {
                        return Err(invalid(format!(
                            "messages[{i}].content must be a string or an array"
                        )))
                    }
                };
                turns.push("user", content, lossy);
            }
            "assistant" => {
                let content = openai_assistant(m, content, i, lossy)?;
                turns.push("assistant", content, lossy);
            }
            "tool" => {
                let id = match take(&mut m, "tool_call_id") {
                    Some(Value::String(id)) => id,
                    _ => return Err(invalid(format!("messages[{i}].tool_call_id is required"))),
                };
                let mut block = json!({"type": "tool_result", "tool_use_id": tool_id(&id)});
                match content {
                    Some(Value::String(s)) if !s.is_empty() => {
                        block["content"] = Value::String(s);
                    }
                    Some(Value::String(_)) => {}
                    Some(Value::Array(parts)) => {
                        let blocks = openai_parts(parts, i, lossy)?;
                        if !blocks.is_empty() {
                            block["content"] = Value::Array(blocks);
                        }
                    }
                    None => {}
                    Some(_) => {
                        return Err(invalid(format!(
                            "messages[{i}].content must be a string or an array"
                        )))
                    }
                }
                turns.push("user", TurnContent::Blocks(vec![block]), lossy);
            }
            "function" => lossy.drop("a legacy `function` message")?,
            other => {
                return Err(invalid(format!(
                    "messages[{i}].role {other:?} is not a chat role"
                )))
            }
        }
    }
    if turns.0.is_empty() {
        return Err(invalid("no message has any content"));
    }
    let system = match system.len() {
        0 => None,
        1 if system_is_one_string => system.pop().map(Value::String),
        _ => Some(Value::Array(system.into_iter().map(text_block).collect())),
    };
    Ok((system, turns.0))
}

fn part_text(mut p: Value, i: usize) -> Result<String, TranslateError> {
    match p.get_mut("text").map(Value::take) {
        Some(Value::String(s)) => Ok(s),
        _ => Err(invalid(format!(
            "messages[{i}]: a text part needs a string `text`"
        ))),
    }
}

/// User (and tool) content parts → Anthropic blocks.
fn openai_parts(parts: Vec<Value>, i: usize, lossy: Lossy) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for p in parts {
        match type_of(&p) {
            "text" => {
                let t = part_text(p, i)?;
                if blank(&t) {
                    lossy.note("an empty text part");
                } else {
                    blocks.push(text_block(t));
                }
            }
            "image_url" => blocks.push(image_block(&p, i, lossy)?),
            "file" => {
                if let Some(b) = file_block(&p, lossy)? {
                    blocks.push(b);
                }
            }
            other => lossy.drop(&format!("a content part of type {other:?}"))?,
        }
    }
    Ok(blocks)
}

/// `data:<media type>;base64,<data>` → (media type, data).
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

fn image_block(p: &Value, i: usize, lossy: Lossy) -> Result<Value, TranslateError> {
    let image = p.get("image_url");
    let url = image
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("messages[{i}]: an image_url part needs a `url`")))?;
    if image.and_then(|u| u.get("detail")).is_some() {
        lossy.note("image `detail`");
    }
    if let Some((media_type, data)) = data_url(url) {
        Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}),
        )
    } else if url.starts_with("data:") {
        Err(invalid(format!(
            "messages[{i}]: image data URLs must be base64"
        )))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type": "image", "source": {"type": "url", "url": url}}))
    } else {
        Err(invalid(format!("messages[{i}]: unsupported image URL")))
    }
}

/// OpenAI `file` parts: base64 PDFs become `document` blocks; file ids cannot be sent.
fn file_block(p: &Value, lossy: Lossy) -> Result<Option<Value>, TranslateError> {
    let file = p.get("file");
    let data = file
        .and_then(|f| f.get("file_data"))
        .and_then(Value::as_str);
    match data.and_then(data_url) {
        Some(("application/pdf", data)) => {
            let mut doc = json!({"type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": data}});
            if let Some(name) = file.and_then(|f| f.get("filename")).and_then(Value::as_str) {
                doc["title"] = Value::String(name.into());
            }
            Ok(Some(doc))
        }
        _ => {
            lossy.drop("a file part that is not an inline PDF")?;
            Ok(None)
        }
    }
}

fn openai_assistant(
    mut m: Obj,
    content: Option<Value>,
    i: usize,
    lossy: Lossy,
) -> Result<TurnContent, TranslateError> {
    if take(&mut m, "reasoning_content").is_some() || take(&mut m, "reasoning").is_some() {
        lossy.note("assistant reasoning history (no signature Anthropic would accept)");
    }
    for key in ["function_call", "audio"] {
        if take(&mut m, key).is_some() {
            lossy.drop(&format!("assistant `{key}`"))?;
        }
    }
    let refusal = take(&mut m, "refusal");
    let calls = match take(&mut m, "tool_calls") {
        Some(Value::Array(c)) => c,
        None => Vec::new(),
        Some(_) => {
            return Err(invalid(format!(
                "messages[{i}].tool_calls must be an array"
            )))
        }
    };
    let mut blocks = Vec::with_capacity(1 + calls.len());
    match content {
        Some(Value::String(s)) => {
            if calls.is_empty() && refusal.is_none() {
                return Ok(TurnContent::Text(s));
            }
            if !blank(&s) {
                blocks.push(text_block(s));
            }
        }
        Some(Value::Array(parts)) => {
            for mut p in parts {
                let text = match type_of(&p) {
                    "text" => p.get_mut("text").map(Value::take),
                    "refusal" => p.get_mut("refusal").map(Value::take),
                    other => {
                        lossy.drop(&format!("an assistant content part of type {other:?}"))?;
                        continue;
                    }
                };
                match text {
                    Some(Value::String(t)) if !blank(&t) => blocks.push(text_block(t)),
                    Some(Value::String(_)) => {}
                    _ => {
                        return Err(invalid(format!(
                            "messages[{i}]: a content part needs its text"
                        )))
                    }
                }
            }
        }
        None => {}
        Some(_) => {
            return Err(invalid(format!(
                "messages[{i}].content must be a string or an array"
            )))
        }
    }
    if let Some(Value::String(r)) = refusal {
        if blocks.is_empty() && !blank(&r) {
            blocks.push(text_block(r));
        }
    }
    for (j, call) in calls.into_iter().enumerate() {
        if let Some(b) = tool_use_block(call, i, j, lossy)? {
            blocks.push(b);
        }
    }
    Ok(TurnContent::Blocks(blocks))
}

/// `arguments` (a JSON string) → an `input` object.
pub(super) fn arguments_to_input(arguments: &str, lossy: Lossy) -> Result<Value, TranslateError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => {
            lossy.drop("tool-call arguments that are not a JSON object (sent as {})")?;
            Ok(json!({}))
        }
    }
}

fn tool_use_block(
    call: Value,
    i: usize,
    j: usize,
    lossy: Lossy,
) -> Result<Option<Value>, TranslateError> {
    let bad = || {
        invalid(format!(
            "messages[{i}].tool_calls[{j}] is not a valid function call"
        ))
    };
    match type_of(&call) {
        "function" | "" => {}
        other => {
            lossy.drop(&format!("a tool call of type {other:?}"))?;
            return Ok(None);
        }
    }
    let id = call.get("id").and_then(Value::as_str).ok_or_else(bad)?;
    let f = call.get("function").ok_or_else(bad)?;
    let name = f.get("name").and_then(Value::as_str).ok_or_else(bad)?;
    let args = match f.get("arguments") {
        Some(Value::String(s)) => arguments_to_input(s, lossy)?,
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => json!({}),
        Some(_) => return Err(bad()),
    };
    Ok(Some(
        json!({"type": "tool_use", "id": tool_id(id), "name": name, "input": args}),
    ))
}

/// A chat-completions function tool, read: the parts every other API's tools are made of.
pub(super) struct ChatFunction {
    pub name: String,
    pub description: Option<Value>,
    /// `parameters`, or an empty object schema when the tool has none.
    pub schema: Value,
    pub strict: Option<Value>,
}

/// Reads a chat tool; `None` for a tool of another type (dropped, refused when strict).
pub(super) fn chat_function(
    t: Value,
    lossy: Lossy,
) -> Result<Option<ChatFunction>, TranslateError> {
    match type_of(&t) {
        "function" => {}
        other => {
            lossy.drop(&format!("a tool of type {other:?}"))?;
            return Ok(None);
        }
    }
    let Some(Value::Object(mut f)) = t.get("function").cloned() else {
        return Err(invalid("each function tool needs a `function` object"));
    };
    let name = match take(&mut f, "name") {
        Some(Value::String(n)) => n,
        _ => return Err(invalid("each function tool needs a `name`")),
    };
    let schema = match take(&mut f, "parameters") {
        Some(s @ Value::Object(_)) => s,
        Some(_) => return Err(invalid("function `parameters` must be an object")),
        None => json!({"type": "object", "properties": {}}),
    };
    Ok(Some(ChatFunction {
        name,
        description: take(&mut f, "description"),
        schema,
        strict: take(&mut f, "strict"),
    }))
}

fn openai_tool(t: Value, lossy: Lossy) -> Result<Option<Value>, TranslateError> {
    let Some(f) = chat_function(t, lossy)? else {
        return Ok(None);
    };
    let mut tool = Obj::new();
    tool.insert("name".into(), Value::String(f.name));
    if let Some(d) = f.description {
        tool.insert("description".into(), d);
    }
    tool.insert("input_schema".into(), f.schema);
    if f.strict.is_some() {
        lossy.note("function `strict`");
    }
    Ok(Some(Value::Object(tool)))
}

fn openai_tool_choice(c: Value, lossy: Lossy) -> Result<Option<Value>, TranslateError> {
    Ok(match &c {
        Value::String(s) => match s.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            other => return Err(invalid(format!("unknown `tool_choice` {other:?}"))),
        },
        Value::Object(_) if type_of(&c) == "function" => {
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("`tool_choice.function.name` is required"))?;
            Some(json!({"type": "tool", "name": name}))
        }
        _ => {
            lossy.drop(&format!("`tool_choice` {c}"))?;
            None
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Anthropic → OpenAI
// ---------------------------------------------------------------------------------------------

/// Anthropic fields with no effect on the output.
const ANTHROPIC_HINTS: &[&str] = &["service_tier", "cache_control", "inference_geo"];

pub(super) fn anthropic_to_openai(
    body: &[u8],
    model: &str,
    opts: &Options,
) -> Result<Value, TranslateError> {
    let mut req = parse_object(body)?;
    let lossy = Lossy {
        strict: opts.strict,
        backend: "OpenAI chat completions",
    };
    let mut out = Obj::new();
    out.insert("model".into(), Value::String(model.into()));

    let mut messages = Vec::new();
    if let Some(system) = take(&mut req, "system") {
        let text = match system {
            Value::String(s) => s,
            Value::Array(blocks) => {
                let mut texts = Vec::with_capacity(blocks.len());
                for b in blocks {
                    if type_of(&b) != "text" {
                        return Err(invalid("`system` blocks must be text blocks"));
                    }
                    texts.push(block_text(&b)?.to_owned());
                }
                texts.join("\n\n")
            }
            _ => {
                return Err(invalid(
                    "`system` must be a string or an array of text blocks",
                ))
            }
        };
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, m) in take_messages(&mut req)?.into_iter().enumerate() {
        anthropic_message(m, i, &mut messages, lossy)?;
    }
    out.insert("messages".into(), Value::Array(messages));

    if let Some(max) = take(&mut req, "max_tokens") {
        out.insert(
            "max_tokens".into(),
            positive_int(&max, "max_tokens")?.into(),
        );
    }
    for key in ["temperature", "top_p"] {
        if let Some(v) = take(&mut req, key) {
            out.insert(key.into(), number(v, key)?);
        }
    }
    if let Some(stops) = take(&mut req, "stop_sequences") {
        let Value::Array(mut stops) = stops else {
            return Err(invalid("`stop_sequences` must be an array"));
        };
        if stops.len() > 4 {
            lossy.drop("stop sequences beyond the 4 OpenAI accepts")?;
            stops.truncate(4);
        }
        if !stops.is_empty() {
            out.insert("stop".into(), Value::Array(stops));
        }
    }
    if let Some(stream) = take(&mut req, "stream") {
        if !stream.is_boolean() {
            return Err(invalid("`stream` must be a boolean"));
        }
        if stream == Value::Bool(true) {
            // Anthropic streams always end with usage; ask the OpenAI backend for it.
            out.insert("stream_options".into(), json!({"include_usage": true}));
        }
        out.insert("stream".into(), stream);
    }
    if let Some(Value::Object(mut meta)) = take(&mut req, "metadata") {
        if let Some(user) = take(&mut meta, "user_id") {
            out.insert(
                "user".into(),
                Value::String(string(user, "`metadata.user_id`")?),
            );
        }
    }

    let mut tools = Vec::new();
    if let Some(list) = take(&mut req, "tools") {
        let Value::Array(list) = list else {
            return Err(invalid("`tools` must be an array"));
        };
        for t in list {
            if let Some(t) = anthropic_tool(t, lossy)? {
                tools.push(t);
            }
        }
    }
    let choice = take(&mut req, "tool_choice");
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            let mapped = match type_of(&c) {
                "auto" => Some(json!("auto")),
                "any" => Some(json!("required")),
                "none" => Some(json!("none")),
                "tool" => {
                    let name = c
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("`tool_choice.name` is required"))?;
                    Some(json!({"type": "function", "function": {"name": name}}))
                }
                other => return Err(invalid(format!("unknown `tool_choice` type {other:?}"))),
            };
            if let Some(m) = mapped {
                out.insert("tool_choice".into(), m);
            }
            if c.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
                out.insert("parallel_tool_calls".into(), Value::Bool(false));
            }
        }
    }

    if let Some(thinking) = take(&mut req, "thinking") {
        if type_of(&thinking) != "disabled" {
            lossy.drop("`thinking` (extended thinking settings)")?;
        }
    }
    if let Some(Value::Object(mut config)) = take(&mut req, "output_config") {
        if let Some(format) = take(&mut config, "format") {
            match format.get("schema") {
                Some(schema) if type_of(&format) == "json_schema" => {
                    out.insert(
                        "response_format".into(),
                        json!({"type": "json_schema",
                               "json_schema": {"name": "output", "schema": schema, "strict": true}}),
                    );
                }
                _ => lossy.drop("`output_config.format`")?,
            }
        }
        for (key, value) in config {
            if !value.is_null() {
                lossy.drop(&format!("`output_config.{key}`"))?;
            }
        }
    }

    for (key, value) in req {
        if key == "model" || value.is_null() || ANTHROPIC_HINTS.contains(&key.as_str()) {
            continue;
        }
        lossy.drop(&format!("`{key}`"))?;
    }
    Ok(Value::Object(out))
}

fn block_text(b: &Value) -> Result<&str, TranslateError> {
    b.get("text")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a text block needs a string `text`"))
}

fn anthropic_message(
    m: Value,
    i: usize,
    out: &mut Vec<Value>,
    lossy: Lossy,
) -> Result<(), TranslateError> {
    let Value::Object(mut m) = m else {
        return Err(invalid(format!("messages.{i} must be an object")));
    };
    let role = match take(&mut m, "role") {
        Some(Value::String(r)) => r,
        _ => return Err(invalid(format!("messages.{i}.role is required"))),
    };
    if !matches!(role.as_str(), "user" | "assistant" | "system") {
        return Err(invalid(format!(
            "messages.{i}.role {role:?} is not 'user' or 'assistant'"
        )));
    }
    let blocks = match take(&mut m, "content") {
        Some(Value::String(s)) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Some(Value::Array(b)) => b,
        _ => {
            return Err(invalid(format!(
                "messages.{i}.content must be a string or a list"
            )))
        }
    };
    match role.as_str() {
        "user" => anthropic_user(blocks, i, out, lossy),
        "assistant" => anthropic_assistant(blocks, out, lossy),
        // Claude Code's mid-conversation system turns (a beta): an OpenAI system message here.
        "system" => {
            let texts = blocks
                .iter()
                .filter(|b| type_of(b) == "text")
                .map(block_text)
                .collect::<Result<Vec<_>, _>>()?;
            out.push(json!({"role": "system", "content": texts.join("\n\n")}));
            Ok(())
        }
        _ => Ok(()),
    }
}

fn note_hints(b: &Value, lossy: Lossy) {
    if b.get("cache_control").is_some() {
        lossy.note("`cache_control`");
    }
    if b.get("citations").is_some_and(|c| !c.is_null()) {
        lossy.note("`citations`");
    }
}

fn anthropic_user(
    blocks: Vec<Value>,
    i: usize,
    out: &mut Vec<Value>,
    lossy: Lossy,
) -> Result<(), TranslateError> {
    let mut parts = Vec::with_capacity(blocks.len());
    // Images returned by tools: OpenAI tool messages are text-only, so they join the user
    // message that follows the tool messages.
    let mut moved = Vec::new();
    for b in blocks {
        note_hints(&b, lossy);
        match type_of(&b) {
            "tool_result" => {
                let id = b
                    .get("tool_use_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(format!("messages.{i}: a tool_result needs `tool_use_id`"))
                    })?;
                if b.get("is_error") == Some(&Value::Bool(true)) {
                    lossy.note("tool_result `is_error` (the content is kept)");
                }
                let content = match b.get("content") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(inner)) => {
                        let mut texts = Vec::new();
                        for c in inner {
                            match type_of(c) {
                                "text" => texts.push(block_text(c)?),
                                "image" | "document" => {
                                    lossy.note(
                                        "an image in a tool result (moved to a user message)",
                                    );
                                    if let Some(p) = media_part(c, lossy)? {
                                        moved.push(p);
                                    }
                                }
                                other => {
                                    lossy.drop(&format!("a tool result block of type {other:?}"))?
                                }
                            }
                        }
                        texts.join("\n")
                    }
                    Some(_) => {
                        return Err(invalid(format!(
                            "messages.{i}: tool_result content must be a string or a list"
                        )))
                    }
                };
                out.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
            }
            "text" => parts.push(json!({"type": "text", "text": block_text(&b)?})),
            "image" | "document" => {
                if let Some(p) = media_part(&b, lossy)? {
                    parts.push(p);
                }
            }
            "thinking" | "redacted_thinking" => lossy.note("a thinking block in a user turn"),
            other => lossy.drop(&format!("a content block of type {other:?}"))?,
        }
    }
    moved.extend(parts);
    if !moved.is_empty() {
        out.push(json!({"role": "user", "content": moved}));
    }
    Ok(())
}

/// Anthropic `image` / `document` blocks → OpenAI `image_url` / `file` / `text` parts.
fn media_part(b: &Value, lossy: Lossy) -> Result<Option<Value>, TranslateError> {
    let source = b
        .get("source")
        .ok_or_else(|| invalid("an image or document needs a `source`"))?;
    let field = |k: &str| source.get(k).and_then(Value::as_str);
    let image = type_of(b) == "image";
    Ok(match (image, type_of(source)) {
        (true, "base64") => {
            let url = format!(
                "data:{};base64,{}",
                field("media_type").unwrap_or("image/png"),
                field("data").unwrap_or("")
            );
            Some(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        (true, "url") => {
            Some(json!({"type": "image_url", "image_url": {"url": field("url").unwrap_or("")}}))
        }
        (false, "base64") if field("media_type") == Some("application/pdf") => {
            let name = b
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("document.pdf");
            let data = format!(
                "data:application/pdf;base64,{}",
                field("data").unwrap_or("")
            );
            Some(json!({"type": "file", "file": {"filename": name, "file_data": data}}))
        }
        (false, "text") => {
            lossy.note("a plain-text document (sent as a text part)");
            Some(json!({"type": "text", "text": field("data").unwrap_or("")}))
        }
        (_, kind) => {
            let what = if image { "an image" } else { "a document" };
            lossy.drop(&format!("{what} with a {kind:?} source"))?;
            None
        }
    })
}

fn anthropic_assistant(
    blocks: Vec<Value>,
    out: &mut Vec<Value>,
    lossy: Lossy,
) -> Result<(), TranslateError> {
    let mut text = String::new();
    let mut has_text = false;
    let mut calls = Vec::new();
    for b in blocks {
        note_hints(&b, lossy);
        match type_of(&b) {
            "text" => {
                text.push_str(block_text(&b)?);
                has_text = true;
            }
            "thinking" | "redacted_thinking" => lossy.note("assistant thinking history"),
            "tool_use" => {
                let field = |k: &str| b.get(k).and_then(Value::as_str);
                let (Some(id), Some(name)) = (field("id"), field("name")) else {
                    return Err(invalid("a tool_use block needs `id` and `name`"));
                };
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": id, "type": "function",
                                  "function": {"name": name, "arguments": input.to_string()}}));
            }
            other => lossy.drop(&format!("an assistant block of type {other:?}"))?,
        }
    }
    if calls.is_empty() {
        if has_text {
            out.push(json!({"role": "assistant", "content": text}));
        } else {
            lossy.note("an assistant turn with nothing but thinking");
        }
    } else {
        let content = if has_text {
            Value::String(text)
        } else {
            Value::Null
        };
        out.push(json!({"role": "assistant", "content": content, "tool_calls": calls}));
    }
    Ok(())
}

fn anthropic_tool(t: Value, lossy: Lossy) -> Result<Option<Value>, TranslateError> {
    match type_of(&t) {
        "" | "custom" => {}
        other => {
            lossy.drop(&format!("the server tool {other:?}"))?;
            return Ok(None);
        }
    }
    let Value::Object(mut t) = t else {
        return Err(invalid("each tool must be an object"));
    };
    let name = match take(&mut t, "name") {
        Some(Value::String(n)) => n,
        _ => return Err(invalid("each tool needs a `name`")),
    };
    let mut f = Obj::new();
    f.insert("name".into(), Value::String(name));
    if let Some(d) = take(&mut t, "description") {
        f.insert("description".into(), d);
    }
    f.insert(
        "parameters".into(),
        take(&mut t, "input_schema").unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    );
    if t.contains_key("cache_control") || t.contains_key("strict") {
        lossy.note("tool `cache_control` / `strict`");
    }
    Ok(Some(json!({"type": "function", "function": f})))
}
