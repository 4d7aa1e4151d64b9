//! Responses client → chat-completions backend: golden requests (real Codex CLI bodies),
//! mapping rules, the non-streaming answer, and the stream (golden, split anywhere, and a
//! property: any chat stream becomes a well-formed Responses event sequence).

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::dialect::translate::{response, TranslateError};

fn codex_body(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures/agents/codex")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap();
    v["body"].clone()
}

fn to_chat_with(body: &Value, opts: &Options) -> Result<Value, TranslateError> {
    let bytes = super::super::request(
        Dialect::Responses,
        Dialect::OpenAi,
        body.to_string().as_bytes(),
        "gpt-4o",
        opts,
    )?;
    Ok(serde_json::from_slice(&bytes).unwrap())
}

/// Responses request → chat request, checked against the Chat Completions API's rules.
fn to_chat(body: &Value) -> Value {
    let v = to_chat_with(body, &opts()).unwrap();
    assert_valid_openai(&v);
    v
}

fn strict() -> Options {
    Options {
        strict: true,
        ..opts()
    }
}

fn unsupported(r: Result<Value, TranslateError>) -> String {
    match r {
        Err(TranslateError::Unsupported(m)) => m,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn codex_first_turn_becomes_a_valid_chat_request() {
    let body = codex_body("03_tool_loop_first.json");
    let out = to_chat(&body);
    // The prompts are long: the golden keeps the shape and the beginning of each text.
    let mut shown = out.clone();
    for m in shown["messages"].as_array_mut().unwrap() {
        if let Some(s) = m["content"].as_str() {
            m["content"] = json!(s.chars().take(60).collect::<String>());
        }
    }
    for t in shown["tools"].as_array_mut().unwrap() {
        t["function"]["description"] = json!("…");
        t["function"]["parameters"] = json!("…");
    }
    golden_json("codex_03.chat.json", &shown);
    assert_eq!(out["stream"], true);
    assert_eq!(out["stream_options"], json!({"include_usage": true}));
    assert_eq!(out["reasoning_effort"], "medium");
    assert_eq!(out["tool_choice"], "auto");
    assert_eq!(out["parallel_tool_calls"], true);
    let names: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"exec_command"), "{names:?}");
    // `tool_search` and `web_search` are Responses-only; the freeform `apply_patch` becomes a
    // function taking its input as one string, its grammar in the description.
    assert!(names.contains(&"apply_patch"), "{names:?}");
    let patch = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "apply_patch")
        .unwrap();
    assert_eq!(
        patch["function"]["parameters"]["required"],
        json!(["input"])
    );
    assert!(patch["function"]["description"]
        .as_str()
        .unwrap()
        .contains("*** Begin Patch"));
    for key in [
        "store",
        "include",
        "prompt_cache_key",
        "client_metadata",
        "text",
        "reasoning",
    ] {
        assert!(
            out.get(key).is_none(),
            "{key} must not reach a chat backend"
        );
    }
    let roles: Vec<&str> = out["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "system", "user", "user"]);
}

#[test]
fn codex_function_output_turn_pairs_the_call_and_its_result() {
    let body = codex_body("04_tool_loop_function_output.json");
    let out = to_chat(&body);
    let messages = out["messages"].as_array().unwrap();
    let n = messages.len();
    assert_eq!(
        messages[n - 2],
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_2cbdc292c3d6440f8ddc0bc7", "type": "function",
            "function": {"name": "exec_command", "arguments": "{\"cmd\": \"echo hi\"}"}}]})
    );
    assert_eq!(messages[n - 1]["role"], "tool");
    assert_eq!(
        messages[n - 1]["tool_call_id"],
        "call_2cbdc292c3d6440f8ddc0bc7"
    );
    assert!(messages[n - 1]["content"]
        .as_str()
        .unwrap()
        .ends_with("Output:\nhi\n"));
}

#[test]
fn string_input_instructions_and_parameters() {
    let out = to_chat(&json!({
        "model": "route", "input": "Hi", "instructions": "Be brief.",
        "max_output_tokens": 256, "temperature": 0.5, "top_p": 0.9, "user": "u1",
        "text": {"format": {"type": "json_schema", "name": "answer", "strict": true,
                            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
                 "verbosity": "low"},
        "reasoning": {"effort": "high", "summary": "auto"},
        "store": true, "metadata": {"k": "v"}, "truncation": "auto", "stream": false
    }));
    assert_eq!(
        out,
        json!({
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "max_tokens": 256, "temperature": 0.5, "top_p": 0.9, "stream": false, "user": "u1",
            "reasoning_effort": "high",
            "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true,
                "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}
        })
    );
    let json_object =
        to_chat(&json!({"model": "r", "input": "x", "text": {"format": {"type": "json_object"}}}));
    assert_eq!(
        json_object["response_format"],
        json!({"type": "json_object"})
    );
    let text = to_chat(&json!({"model": "r", "input": "x", "text": {"format": {"type": "text"}}}));
    assert!(text.get("response_format").is_none());
}

#[test]
fn items_become_chat_messages() {
    let out = to_chat(&json!({"model": "r", "input": [
        {"role": "developer", "content": "Rules."},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "Look:"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
            {"type": "input_image", "file_id": "file-1"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"a\":1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]},
        {"type": "custom_tool_call", "call_id": "c3", "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "custom_tool_call_output", "call_id": "c3", "output": "done"},
        {"role": "user", "content": "Thanks"}
    ]}));
    assert_eq!(
        out["messages"],
        json!([
            {"role": "system", "content": "Rules."},
            {"role": "user", "content": [{"type": "text", "text": "Look:"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "one"},
            {"role": "tool", "tool_call_id": "c2", "content": "two"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c3", "type": "function", "function": {"name": "apply_patch",
                 "arguments": "{\"input\":\"*** Begin Patch\"}"}}]},
            {"role": "tool", "tool_call_id": "c3", "content": "done"},
            {"role": "user", "content": "Thanks"}
        ])
    );
    // Strict: an image by file id cannot be sent.
    let m = unsupported(to_chat_with(
        &json!({"model": "r", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}),
        &strict(),
    ));
    assert!(m.contains("file_id"), "{m}");
}

#[test]
fn tools_and_tool_choice() {
    let tools = json!([
        {"type": "function", "name": "get_weather", "description": "Weather", "strict": true,
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"type": "web_search"}, {"type": "file_search", "vector_store_ids": ["vs"]},
        {"type": "custom", "name": "apply_patch"}, {"type": "local_shell"}
    ]);
    let out = to_chat(&json!({"model": "r", "input": "x", "tools": tools,
                              "tool_choice": {"type": "function", "name": "get_weather"},
                              "parallel_tool_calls": false}));
    assert_eq!(
        out["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
               {"type": "function", "function": {"name": "apply_patch", "description": "",
                "parameters": {"type": "object", "properties": {"input": {"type": "string",
                    "description": "The tool's freeform input, verbatim"}}, "required": ["input"]}}}])
    );
    // Forcing the freeform tool forces its function.
    let forced = to_chat(&json!({"model": "r", "input": "x", "tools": tools,
                                 "tool_choice": {"type": "custom", "name": "apply_patch"}}));
    assert_eq!(
        forced["tool_choice"],
        json!({"type": "function", "function": {"name": "apply_patch"}})
    );
    assert_eq!(
        out["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(out["parallel_tool_calls"], false);
    // Merely offered built-in tools are dropped even when strict; forcing one is refused.
    assert!(to_chat_with(
        &json!({"model": "r", "input": "x", "tools": tools}),
        &strict()
    )
    .is_ok());
    for (choice, named) in [
        (json!({"type": "web_search_preview"}), "web_search_preview"),
        (json!({"type": "file_search"}), "file_search"),
        (json!({"type": "mcp", "server_label": "deepwiki"}), "mcp"),
    ] {
        let m = unsupported(to_chat_with(
            &json!({"model": "r", "input": "x", "tools": tools, "tool_choice": choice}),
            &opts(),
        ));
        assert!(m.contains(named), "{m}");
    }
    // Only built-in tools: no tools, no tool_choice, no parallel_tool_calls.
    let out = to_chat(
        &json!({"model": "r", "input": "x", "tools": [{"type": "web_search"}],
                              "tool_choice": "auto", "parallel_tool_calls": true}),
    );
    for key in ["tools", "tool_choice", "parallel_tool_calls"] {
        assert!(out.get(key).is_none(), "{key}: {out}");
    }
    for c in ["none", "required"] {
        let out = to_chat(&json!({"model": "r", "input": "x", "tools": tools, "tool_choice": c}));
        assert_eq!(out["tool_choice"], c);
    }
}

#[test]
fn stored_state_is_refused_with_a_clear_message() {
    let m = unsupported(to_chat_with(
        &json!({"model": "r", "input": "x", "previous_response_id": "resp_1"}),
        &opts(),
    ));
    assert!(m.contains("previous_response_id"), "{m}");
    assert!(m.contains("does not hold"), "{m}");
    let m = unsupported(to_chat_with(
        &json!({"model": "r", "input": [{"type": "item_reference", "id": "msg_1"}]}),
        &opts(),
    ));
    assert!(m.contains("item_reference"), "{m}");
    assert!(matches!(
        to_chat_with(&json!({"model": "r"}), &opts()),
        Err(TranslateError::Invalid(_))
    ));
    // Unknown fields: dropped, refused when strict.
    assert!(to_chat_with(
        &json!({"model": "r", "input": "x", "max_tool_calls": 3}),
        &opts()
    )
    .is_ok());
    unsupported(to_chat_with(
        &json!({"model": "r", "input": "x", "max_tool_calls": 3}),
        &strict(),
    ));
}

fn normalize_response(v: &mut Value) {
    v["created_at"] = json!(CREATED);
    if !v["completed_at"].is_null() {
        v["completed_at"] = json!(CREATED);
    }
}

#[test]
fn chat_completion_becomes_a_response_object() {
    let body = read_json("openai_response_tools.json");
    let bytes = response(
        Dialect::OpenAi,
        Dialect::Responses,
        body.to_string().as_bytes(),
        "route-model",
    )
    .unwrap();
    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
    normalize_response(&mut v);
    golden_json("openai_response_tools.responses.json", &v);
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "route-model");
    let kinds: Vec<&str> = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["reasoning", "message", "function_call", "function_call"]
    );
    assert_eq!(
        v["output"][2]["call_id"],
        body["choices"][0]["message"]["tool_calls"][0]["id"]
    );
    assert!(v["output"][2]["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(v["usage"]["input_tokens"], body["usage"]["prompt_tokens"]);
    assert_eq!(v["usage"]["total_tokens"], body["usage"]["total_tokens"]);

    // length and content_filter: incomplete, with the reason.
    for (finish, reason) in [
        ("length", "max_output_tokens"),
        ("content_filter", "content_filter"),
    ] {
        let body = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "g",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "cut"}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                      "prompt_tokens_details": {"cached_tokens": 1},
                      "completion_tokens_details": {"reasoning_tokens": 1}}});
        let bytes = response(
            Dialect::OpenAi,
            Dialect::Responses,
            body.to_string().as_bytes(),
            "r",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], "resp_1");
        assert_eq!(v["status"], "incomplete");
        assert_eq!(v["incomplete_details"], json!({"reason": reason}));
        assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 1);
        assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 1);
    }
    assert!(matches!(
        response(
            Dialect::OpenAi,
            Dialect::Responses,
            b"{\"choices\":[]}",
            "r"
        ),
        Err(TranslateError::InvalidResponse(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

fn stream(chunks: &[&[u8]]) -> Vec<u8> {
    translate_chunks(Dialect::OpenAi, Dialect::Responses, chunks, false)
}

/// The events of a Responses stream, checked for well-formedness the way a client's
/// accumulator relies on it; returns (name, data) pairs.
pub(super) fn check_events(bytes: &[u8]) -> Vec<(String, Value)> {
    let events: Vec<(String, Value)> = parse_sse(bytes)
        .into_iter()
        .filter_map(|e| {
            let data = e.data?;
            let name = e.event.expect("every Responses event is named");
            let v: Value = serde_json::from_slice(&data).unwrap();
            assert_eq!(v["type"], name.as_str(), "type repeats the event name");
            Some((name, v))
        })
        .collect();
    for (i, (_, v)) in events.iter().enumerate() {
        assert_eq!(
            v["sequence_number"],
            json!(i),
            "sequence numbers count from 0"
        );
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..2], ["response.created", "response.in_progress"]);
    let last = *names.last().unwrap();
    assert!(
        last == "response.completed" || last == "response.incomplete",
        "{names:?}"
    );
    let terminal = names
        .iter()
        .filter(|n| matches!(**n, "response.completed" | "response.incomplete"))
        .count();
    assert_eq!(terminal, 1, "{names:?}");

    // Per output item: added → (part added) → deltas → (part/text done) → item done.
    #[derive(Default, Debug)]
    struct Seen {
        added: bool,
        part: bool,
        text: String,
        done: bool,
        kind: String,
        id: String,
    }
    let mut items: HashMap<u64, Seen> = HashMap::new();
    for (name, v) in &events[2..events.len() - 1] {
        let index = v["output_index"].as_u64().expect("output_index");
        let s = items.entry(index).or_default();
        assert!(!s.done, "{name} after output_item.done");
        match name.as_str() {
            "response.output_item.added" => {
                assert!(!s.added, "added twice");
                assert_eq!(
                    index as usize,
                    items.len() - 1,
                    "items are numbered in order"
                );
                let s = items.get_mut(&index).unwrap();
                s.added = true;
                s.kind = v["item"]["type"].as_str().unwrap().to_owned();
                s.id = v["item"]["id"].as_str().unwrap().to_owned();
                continue;
            }
            _ => assert!(s.added, "{name} before output_item.added"),
        }
        if let Some(id) = v.get("item_id") {
            assert_eq!(id, s.id.as_str());
        }
        match name.as_str() {
            "response.web_search_call.in_progress"
            | "response.web_search_call.searching"
            | "response.web_search_call.completed" => {
                assert_eq!(s.kind, "web_search_call");
            }
            "response.output_text.annotation.added" => {
                assert_eq!(s.kind, "message");
                assert!(s.part, "{name} before its part was added");
            }
            "response.content_part.added" | "response.reasoning_summary_part.added" => {
                assert!(!s.part);
                s.part = true;
            }
            "response.output_text.delta" | "response.reasoning_summary_text.delta" => {
                assert!(s.part, "{name} before its part was added");
                s.text.push_str(v["delta"].as_str().unwrap());
            }
            "response.function_call_arguments.delta" => {
                assert_eq!(s.kind, "function_call");
                s.text.push_str(v["delta"].as_str().unwrap());
            }
            "response.output_text.done" | "response.reasoning_summary_text.done" => {
                assert_eq!(v["text"], s.text.as_str());
            }
            "response.function_call_arguments.done" => {
                assert_eq!(v["arguments"], s.text.as_str());
            }
            "response.custom_tool_call_input.delta" => {
                assert_eq!(s.kind, "custom_tool_call");
                s.text.push_str(v["delta"].as_str().unwrap());
            }
            "response.custom_tool_call_input.done" => {
                assert_eq!(v["input"], s.text.as_str());
            }
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                assert_eq!(v["part"]["text"], s.text.as_str());
            }
            "response.output_item.done" => {
                s.done = true;
                assert_eq!(v["item"]["id"], s.id.as_str());
            }
            other => panic!("unexpected event {other}"),
        }
    }
    let final_response = &events.last().unwrap().1["response"];
    let output = final_response["output"].as_array().unwrap();
    assert_eq!(output.len(), items.len());
    for (i, item) in output.iter().enumerate() {
        let s = &items[&(i as u64)];
        assert!(s.done, "item {i} never done");
        assert_eq!(item["id"], s.id.as_str());
        let text = match s.kind.as_str() {
            "message" => &item["content"][0]["text"],
            "reasoning" => &item["summary"][0]["text"],
            "web_search_call" => continue,
            "custom_tool_call" => &item["input"],
            _ => &item["arguments"],
        };
        assert_eq!(
            text,
            s.text.as_str(),
            "final item {i} agrees with its deltas"
        );
    }
    events
}

#[test]
fn chat_stream_becomes_responses_events() {
    let src = read("openai_stream_tools.sse");
    let out = stream(&[src.as_bytes()]);
    let events = check_events(&out);
    let shown: Vec<Value> = events.iter().map(|(_, v)| v.clone()).collect();
    golden_json("openai_stream_tools.responses.json", &Value::Array(shown));
    // The first thing after the envelopes is the reasoning, then the first text delta.
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[2..5],
        [
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta"
        ]
    );
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert!(done["usage"]["input_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn chat_stream_split_anywhere_gives_the_same_events() {
    let src = read("openai_stream_tools.sse");
    let bytes = src.as_bytes();
    let whole = stream(&[bytes]);
    for i in 0..=bytes.len() {
        let split = stream(&[&bytes[..i], &bytes[i..]]);
        assert!(
            split == whole,
            "split at byte {i} changed the output:\n{}",
            String::from_utf8_lossy(&split)
        );
    }
}

#[test]
fn text_only_stream_and_a_length_cut() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": "g",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let src = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(json!({}), json!("length")),
        "data: [DONE]\n\n".to_owned(),
    ]
    .concat();
    let out = stream(&[src.as_bytes()]);
    let events = check_events(&out);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete"
        ]
    );
    let r = &events.last().unwrap().1["response"];
    assert_eq!(r["id"], "resp_t");
    assert_eq!(
        r["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(r["output"][0]["content"][0]["text"], "Hello");
    // The upstream closing before [DONE]: `finish` still completes the response.
    let cut = stream(&[src.trim_end_matches("data: [DONE]\n\n").as_bytes()]);
    assert_eq!(cut, out);
}

// Property: any chat stream (reasoning, text and tool calls interleaved by index, any finish
// reason, usage or not) becomes a well-formed event sequence carrying the same content.

#[derive(Debug, Clone)]
enum Piece {
    Reasoning(String),
    Text(String),
    /// (tool index, arguments fragment); the first fragment of an index carries id and name.
    Args(usize, String),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        "\\PC{1,8}".prop_map(Piece::Reasoning),
        "\\PC{1,8}".prop_map(Piece::Text),
        (0..3usize, "[a-z{}\":,0-9]{0,6}").prop_map(|(i, a)| Piece::Args(i, a)),
    ]
}

fn chat_sse(pieces: &[Piece], finish: &str, usage: bool, done: bool) -> String {
    let mut s = String::new();
    let mut chunk = |delta: Value, finish: Value| {
        let v = json!({"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": "g",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        s.push_str(&format!("data: {v}\n\n"));
    };
    chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    let mut started = [false; 3];
    for p in pieces {
        match p {
            Piece::Reasoning(t) => chunk(json!({"reasoning_content": t}), Value::Null),
            Piece::Text(t) => chunk(json!({"content": t}), Value::Null),
            Piece::Args(i, a) if !started[*i] => {
                started[*i] = true;
                chunk(
                    json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function",
                                           "function": {"name": format!("tool_{i}"), "arguments": a}}]}),
                    Value::Null,
                )
            }
            Piece::Args(i, a) => chunk(
                json!({"tool_calls": [{"index": i, "function": {"arguments": a}}]}),
                Value::Null,
            ),
        }
    }
    chunk(json!({}), json!(finish));
    if usage {
        s.push_str("data: {\"id\":\"chatcmpl-p\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n");
    }
    if done {
        s.push_str("data: [DONE]\n\n");
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_chat_stream_becomes_a_well_formed_responses_stream(
        pieces in prop::collection::vec(piece(), 0..12),
        finish in prop::sample::select(vec!["stop", "length", "tool_calls", "content_filter"]),
        usage in any::<bool>(),
        done in any::<bool>(),
        a in any::<prop::sample::Index>(),
    ) {
        let src = chat_sse(&pieces, finish, usage, done);
        let whole = stream(&[src.as_bytes()]);
        let i = a.index(src.len() + 1);
        prop_assert_eq!(&stream(&[&src.as_bytes()[..i], &src.as_bytes()[i..]]), &whole);
        let events = check_events(&whole);
        let r = &events.last().unwrap().1["response"];
        let incomplete = matches!(finish, "length" | "content_filter");
        prop_assert_eq!(r["status"].as_str(), Some(if incomplete { "incomplete" } else { "completed" }));
        prop_assert_eq!(&r["usage"]["input_tokens"], &json!(if usage { 7 } else { 0 }));
        // Content intact: texts and reasoning in order, each call's arguments.
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut args: Vec<(String, String)> = Vec::new();
        for item in r["output"].as_array().unwrap() {
            match item["type"].as_str().unwrap() {
                "message" => text.push_str(item["content"][0]["text"].as_str().unwrap()),
                "reasoning" => reasoning.push_str(item["summary"][0]["text"].as_str().unwrap()),
                _ => args.push((item["call_id"].as_str().unwrap().to_owned(),
                                item["arguments"].as_str().unwrap().to_owned())),
            }
        }
        let want_text: String = pieces.iter().filter_map(|p| match p { Piece::Text(t) => Some(t.as_str()), _ => None }).collect();
        let want_reasoning: String = pieces.iter().filter_map(|p| match p { Piece::Reasoning(t) => Some(t.as_str()), _ => None }).collect();
        prop_assert_eq!(text, want_text);
        prop_assert_eq!(reasoning, want_reasoning);
        let mut want_args: Vec<(String, String)> = Vec::new();
        for p in &pieces {
            if let Piece::Args(i, a) = p {
                let id = format!("call_{i}");
                match want_args.iter_mut().find(|(c, _)| *c == id) {
                    Some((_, s)) => s.push_str(a),
                    None => want_args.push((id, a.clone())),
                }
            }
        }
        prop_assert_eq!(args, want_args);
    }
}
