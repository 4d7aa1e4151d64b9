//! Property: a random valid OpenAI request translated to Anthropic (valid there) and back
//! (valid again) keeps its messages, tools and parameters, modulo the documented merges.

use proptest::option;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::*;

const TOOL_NAMES: [&str; 3] = ["get_weather", "search_docs", "run_code"];

fn text() -> impl Strategy<Value = String> {
    // Non-blank (Anthropic refuses blank text; blank texts are dropped, tested elsewhere).
    "[A-Za-z0-9éü日本\"\\\\{][A-Za-z0-9éü日本 ,.!?\"\\\\{}\n]{0,24}"
}

fn part() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => text().prop_map(|t| json!({"type": "text", "text": t})),
        1 => "[a-z]{1,8}".prop_map(|p| json!({"type": "image_url", "image_url": {"url": format!("https://example.com/{p}.png")}})),
        1 => ("(png|jpeg|gif|webp)", "[A-Za-z0-9+/]{4,16}").prop_map(|(m, d)| json!({"type": "image_url",
            "image_url": {"url": format!("data:image/{m};base64,{d}")}})),
    ]
}

fn user_content() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::String),
        prop::collection::vec(part(), 1..4).prop_map(Value::Array),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(Value::from),
        text().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(Value::from),
    ]
}

fn args() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z_]{1,6}", leaf(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn tool_output() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => text().prop_map(Value::String),
        1 => Just(Value::String(String::new())),
        1 => prop::collection::vec(text(), 1..3).prop_map(|ts| {
            Value::Array(ts.into_iter().map(|t| json!({"type": "text", "text": t})).collect())
        }),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    User(Value),
    Assistant(String),
    Tools(Option<String>, Vec<(usize, Value, Value)>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        user_content().prop_map(Step::User),
        text().prop_map(Step::Assistant),
        (
            option::of(text()),
            prop::collection::vec((0..TOOL_NAMES.len(), args(), tool_output()), 1..4)
        )
            .prop_map(|(t, calls)| Step::Tools(t, calls)),
    ]
}

fn tool_def(name: &str, description: &str) -> Value {
    json!({"type": "function", "function": {"name": name, "description": description,
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}})
}

prop_compose! {
    fn openai_request()(
        system in option::of((text(), option::of(text()))),
        first in user_content(),
        steps in prop::collection::vec(step(), 0..7),
        tool_count in 0..=TOOL_NAMES.len(),
        description in text(),
        temperature in option::of(prop::sample::select(vec![0.0, 0.25, 0.5, 1.0])),
        top_p in option::of(prop::sample::select(vec![0.1, 0.5, 0.9, 1.0])),
        stop in option::of(prop_oneof![
            text().prop_map(Value::from),
            prop::collection::vec(text(), 1..5).prop_map(Value::from),
        ]),
        max in option::of((any::<bool>(), 1..100_000u32)),
        stream in option::of(any::<bool>()),
        user in option::of("[a-z0-9-]{1,12}"),
        choice in option::of(0..4usize),
        parallel in option::of(any::<bool>()),
    ) -> Value {
        let mut messages = Vec::new();
        if let Some((s, d)) = system {
            messages.push(json!({"role": "system", "content": s}));
            if let Some(d) = d {
                messages.push(json!({"role": "developer", "content": [{"type": "text", "text": d}]}));
            }
        }
        messages.push(json!({"role": "user", "content": first}));
        let mut next_id = 0;
        let mut has_tool_steps = false;
        for s in steps {
            match s {
                Step::User(c) => messages.push(json!({"role": "user", "content": c})),
                Step::Assistant(t) => messages.push(json!({"role": "assistant", "content": t})),
                Step::Tools(t, calls) => {
                    has_tool_steps = true;
                    let ids: Vec<String> = calls.iter().map(|_| { next_id += 1; format!("call_{next_id}") }).collect();
                    let tool_calls: Vec<Value> = calls.iter().zip(&ids).map(|((n, a, _), id)| json!({
                        "id": id, "type": "function",
                        "function": {"name": TOOL_NAMES[*n], "arguments": a.to_string()}})).collect();
                    messages.push(json!({"role": "assistant", "content": t, "tool_calls": tool_calls}));
                    for ((_, _, out), id) in calls.into_iter().zip(ids) {
                        messages.push(json!({"role": "tool", "tool_call_id": id, "content": out}));
                    }
                }
            }
        }
        let mut req = json!({"model": "gpt-4o", "messages": messages});
        let tool_count = if has_tool_steps { TOOL_NAMES.len() } else { tool_count };
        if tool_count > 0 {
            req["tools"] = TOOL_NAMES[..tool_count].iter().map(|n| tool_def(n, &description)).collect();
            if let Some(c) = choice {
                req["tool_choice"] = match c {
                    0 => json!("auto"),
                    1 => json!("none"),
                    2 => json!("required"),
                    _ => json!({"type": "function", "function": {"name": TOOL_NAMES[0]}}),
                };
            }
            if let Some(p) = parallel {
                req["parallel_tool_calls"] = json!(p);
            }
        }
        if let Some(t) = temperature { req["temperature"] = json!(t); }
        if let Some(p) = top_p { req["top_p"] = json!(p); }
        if let Some(s) = stop { req["stop"] = s; }
        if let Some((new_name, n)) = max {
            req[if new_name { "max_completion_tokens" } else { "max_tokens" }] = json!(n);
        }
        if let Some(s) = stream {
            req["stream"] = json!(s);
            if s { req["stream_options"] = json!({"include_usage": true}); }
        }
        if let Some(u) = user { req["user"] = json!(u); }
        req
    }
}

fn texts_of(content: &Value) -> Vec<String> {
    match content {
        Value::String(s) => vec![s.clone()],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Messages in a comparable form, with the documented merges applied: system messages
/// hoisted and joined, consecutive user / assistant messages merged, user content as parts,
/// tool output as one string, tool arguments as parsed JSON.
fn canonical_messages(messages: &Value) -> Vec<Value> {
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for m in messages.as_array().unwrap() {
        let role = m["role"].as_str().unwrap();
        let item = match role {
            "system" | "developer" => {
                system.extend(texts_of(&m["content"]));
                continue;
            }
            "user" => {
                let parts = match &m["content"] {
                    Value::String(s) => vec![json!({"type": "text", "text": s})],
                    Value::Array(p) => p.clone(),
                    other => panic!("{other}"),
                };
                json!({"role": "user", "parts": parts})
            }
            "assistant" => {
                let calls: Vec<Value> = m["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        let args: Value =
                            serde_json::from_str(c["function"]["arguments"].as_str().unwrap())
                                .unwrap();
                        json!([c["id"], c["function"]["name"], args])
                    })
                    .collect();
                json!({"role": "assistant", "text": texts_of(&m["content"]).concat(), "calls": calls})
            }
            "tool" => json!({"role": "tool", "id": m["tool_call_id"],
                             "content": texts_of(&m["content"]).join("\n")}),
            other => panic!("{other}"),
        };
        match out.last_mut() {
            Some(last) if last["role"] == role && role == "user" => {
                let more = item["parts"].as_array().unwrap().clone();
                last["parts"].as_array_mut().unwrap().extend(more);
            }
            Some(last) if last["role"] == role && role == "assistant" => {
                let text = format!(
                    "{}{}",
                    last["text"].as_str().unwrap(),
                    item["text"].as_str().unwrap()
                );
                last["text"] = text.into();
                let more = item["calls"].as_array().unwrap().clone();
                last["calls"].as_array_mut().unwrap().extend(more);
            }
            _ => out.push(item),
        }
    }
    if !system.is_empty() {
        out.insert(0, json!({"role": "system", "content": system.join("\n\n")}));
    }
    out
}

/// Parameters as the round trip leaves them.
fn canonical_params(req: &Value, original: bool) -> Map<String, Value> {
    let mut p = Map::new();
    let get = |k: &str| req.get(k).filter(|v| !v.is_null()).cloned();
    let max = get("max_completion_tokens")
        .or_else(|| get("max_tokens"))
        .unwrap_or(json!(4096));
    p.insert("max_tokens".into(), max);
    if let Some(t) = get("temperature") {
        p.insert("temperature".into(), t);
    }
    // Anthropic gets top_p only without temperature.
    if let Some(t) = get("top_p").filter(|_| !original || get("temperature").is_none()) {
        p.insert("top_p".into(), t);
    }
    if let Some(s) = get("stop") {
        let list = if s.is_string() { json!([s]) } else { s };
        p.insert("stop".into(), list);
    }
    for k in ["stream", "user", "tools"] {
        if let Some(v) = get(k) {
            p.insert(k.into(), v);
        }
    }
    if get("tools").is_some() {
        // "auto" is the default with tools.
        if let Some(c) = get("tool_choice").filter(|c| c != "auto") {
            p.insert("tool_choice".into(), c);
        }
        // parallel_tool_calls: true is the default; none has no parallelism to disable.
        if get("parallel_tool_calls") == Some(json!(false))
            && get("tool_choice") != Some(json!("none"))
        {
            p.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        // Failures are reported in the output; nothing is written outside the module.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn openai_to_anthropic_and_back_keeps_the_request(req in openai_request()) {
        assert_valid_openai(&req);
        let anthropic = to_anthropic(&req); // asserts Anthropic validity
        let back = to_openai(&anthropic); // asserts OpenAI validity
        prop_assert_eq!(&back["model"], "gpt-4o");
        prop_assert_eq!(canonical_messages(&back["messages"]), canonical_messages(&req["messages"]));
        prop_assert_eq!(canonical_params(&back, false), canonical_params(&req, true));
        if req["stream"] == true {
            prop_assert_eq!(&back["stream_options"], &json!({"include_usage": true}));
        }
    }

    #[test]
    fn anthropic_to_openai_and_back_keeps_the_request(req in openai_request()) {
        // Start from the Anthropic side: a valid Anthropic request (made by the translator),
        // through OpenAI and back, is the same request.
        let anthropic = to_anthropic(&req);
        let again = to_anthropic(&to_openai(&anthropic));
        prop_assert_eq!(normalize_anthropic(&again), normalize_anthropic(&anthropic));
    }
}

/// Anthropic requests compared with string content as a text block and tool results'
/// text blocks joined (OpenAI tool messages are one string).
fn normalize_anthropic(v: &Value) -> Value {
    let mut v = v.clone();
    for m in v["messages"].as_array_mut().unwrap() {
        if let Value::String(s) = &m["content"] {
            m["content"] = json!([{"type": "text", "text": s}]);
        }
        if m["role"] == "assistant" {
            // An assistant turn's text blocks are concatenated (before its tool calls).
            let blocks = m["content"].as_array().unwrap();
            let text: String = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
            let mut merged: Vec<Value> = blocks
                .iter()
                .filter(|b| b["type"] != "text")
                .cloned()
                .collect();
            if !text.is_empty() {
                merged.insert(0, json!({"type": "text", "text": text}));
            }
            m["content"] = Value::Array(merged);
        }
        for b in m["content"].as_array_mut().unwrap() {
            if b["type"] == "tool_result" {
                if let Value::Array(inner) = &b["content"] {
                    let joined = texts_of(&Value::Array(inner.clone())).join("\n");
                    b["content"] = json!(joined);
                }
            }
        }
    }
    if let Value::String(s) = &v["system"] {
        v["system"] = json!([{"type": "text", "text": s}]);
    }
    if let Value::Array(blocks) = &v["system"] {
        let joined = texts_of(&Value::Array(blocks.clone())).join("\n\n");
        v["system"] = json!(joined);
    }
    v
}
