//! The Responses API ⇄ Anthropic messages: requests both ways (real Codex CLI bodies, the web
//! search tool mapped, built-in tools dropped or refused), answers both ways (golden, web
//! search calls and citations), streams both ways (golden, split anywhere, properties).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::chat_responses::responses_sse;
use super::responses::check_events;
use super::streams::{all_splits_agree, anthropic_sse, read_anthropic, reply};
use super::*;
use crate::dialect::translate::{response, translate_request, TranslateError, Translated};

fn codex_body(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures/agents/codex")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str::<Value>(&text).unwrap()["body"].clone()
}

fn translate(
    from: Dialect,
    to: Dialect,
    body: &Value,
    opts: &Options,
) -> Result<(Value, Vec<String>), TranslateError> {
    let model = if to == Dialect::Anthropic {
        "claude-sonnet-4-5"
    } else {
        "gpt-5"
    };
    let Translated {
        body,
        dropped_tools,
    } = translate_request(from, to, body.to_string().as_bytes(), model, opts)?;
    Ok((serde_json::from_slice(&body).unwrap(), dropped_tools))
}

/// Responses request → Anthropic request, checked against the Messages API's rules.
fn to_anthropic(body: &Value) -> (Value, Vec<String>) {
    let (v, dropped) = translate(Dialect::Responses, Dialect::Anthropic, body, &opts()).unwrap();
    assert_valid_anthropic(&v);
    (v, dropped)
}

/// Anthropic request → Responses request, checked against the Responses API's rules.
fn to_responses(body: &Value) -> (Value, Vec<String>) {
    let (v, dropped) = translate(Dialect::Anthropic, Dialect::Responses, body, &opts()).unwrap();
    if let Err(e) = validate::responses(&v) {
        panic!("not a valid Responses request: {e:?}\n{v:#}");
    }
    (v, dropped)
}

fn unsupported(r: Result<(Value, Vec<String>), TranslateError>) -> String {
    match r {
        Err(TranslateError::Unsupported(m)) => m,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

fn tool_names(req: &Value) -> Vec<String> {
    req["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| match t.get("name").and_then(Value::as_str) {
            Some(n) => n.to_owned(),
            None => t["type"].as_str().unwrap().to_owned(),
        })
        .collect()
}

#[test]
fn codex_turns_become_valid_anthropic_requests_and_say_which_tools_were_dropped() {
    let (v, dropped) = to_anthropic(&codex_body("03_tool_loop_first.json"));
    assert_eq!(v["model"], "claude-sonnet-4-5");
    let system = match &v["system"] {
        Value::String(s) => s.len(),
        blocks => blocks
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["text"].as_str().unwrap().len())
            .sum(),
    };
    assert!(
        system > 1000,
        "instructions and developer messages → system"
    );
    assert!(v["max_tokens"].as_u64().unwrap() > 0);
    let names = tool_names(&v);
    assert!(
        names.contains(&"exec_command".to_owned()) || names.contains(&"shell".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "web_search"),
        "cached-only search is not widened to a live one: {names:?}"
    );
    assert_eq!(dropped, ["tool_search", "web_search"]);
    assert!(
        names.contains(&"apply_patch".to_owned()),
        "the freeform tool as a function: {names:?}"
    );

    // The next turn: the call and its output pair up as tool_use / tool_result.
    let (v, _) = to_anthropic(&codex_body("04_tool_loop_function_output.json"));
    let messages = v["messages"].as_array().unwrap();
    let uses: Vec<&Value> = messages
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter(|b| b["type"] == "tool_use")
        .collect();
    let results: Vec<&Value> = messages
        .iter()
        .flat_map(|m| m["content"].as_array().into_iter().flatten())
        .filter(|b| b["type"] == "tool_result")
        .collect();
    assert_eq!(uses.len(), 1, "{v:#}");
    assert_eq!(results.len(), 1, "{v:#}");
    assert_eq!(uses[0]["id"], results[0]["tool_use_id"]);
}

#[test]
fn a_live_web_search_maps_to_anthropics_server_tool() {
    let body = json!({"model": "codex", "input": "news?", "tools": [
        {"type": "function", "name": "now", "parameters": {"type": "object", "properties": {}}},
        {"type": "web_search", "filters": {"allowed_domains": ["example.com"]},
         "user_location": {"type": "approximate", "country": "FR", "city": "Paris"},
         "search_context_size": "high"}]});
    let (v, dropped) = to_anthropic(&body);
    assert!(dropped.is_empty(), "{dropped:?}");
    assert_eq!(
        v["tools"][1],
        json!({"type": "web_search_20250305", "name": "web_search", "allowed_domains": ["example.com"],
               "user_location": {"type": "approximate", "country": "FR", "city": "Paris"}})
    );
    assert!(v.get("tool_choice").is_none());

    // Forcing it: Anthropic's tool choice by name; forcing a search the backend cannot run
    // (cached-only, or any other built-in tool) refuses this entry.
    let mut forced = body.clone();
    forced["tool_choice"] = json!({"type": "web_search"});
    let (v, _) = to_anthropic(&forced);
    assert_eq!(
        v["tool_choice"],
        json!({"type": "tool", "name": "web_search"})
    );
    forced["tools"][1]["external_web_access"] = json!(false);
    let e = unsupported(translate(
        Dialect::Responses,
        Dialect::Anthropic,
        &forced,
        &opts(),
    ));
    assert!(
        e.contains("web_search") && e.contains("Anthropic messages"),
        "{e}"
    );
    let mut file = body.clone();
    file["tools"] = json!([{"type": "file_search", "vector_store_ids": ["vs_1"]}]);
    file["tool_choice"] = json!({"type": "file_search"});
    unsupported(translate(
        Dialect::Responses,
        Dialect::Anthropic,
        &file,
        &opts(),
    ));

    // Over chat completions there is no search at all: dropped, named.
    let (_, dropped) = translate(Dialect::Responses, Dialect::OpenAi, &body, &opts()).unwrap();
    assert_eq!(dropped, ["web_search"]);
}

#[test]
fn anthropic_requests_become_valid_responses_requests_with_the_web_search_carried() {
    let body = json!({
        "model": "claude", "max_tokens": 100, "system": "Be brief.",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}],
        "tools": [
            {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 3,
             "allowed_domains": ["example.com"], "user_location": {"type": "approximate", "city": "Paris"}},
            {"type": "bash_20250124", "name": "bash"}]});
    let (v, dropped) = to_responses(&body);
    assert_eq!(dropped, ["bash_20250124:bash"]);
    assert_eq!(v["instructions"], "Be brief.");
    assert_eq!(v["max_output_tokens"], 100);
    assert_eq!(v["store"], false);
    let kinds: Vec<&str> = v["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap_or("message"))
        .collect();
    assert_eq!(
        kinds,
        [
            "message",
            "message",
            "function_call",
            "function_call_output"
        ],
        "{v:#}"
    );
    assert_eq!(v["input"][2]["call_id"], v["input"][3]["call_id"]);
    assert_eq!(tool_names(&v), ["get_weather", "web_search"]);
    assert_eq!(
        v["tools"][1],
        json!({"type": "web_search", "filters": {"allowed_domains": ["example.com"]},
               "user_location": {"type": "approximate", "city": "Paris"}})
    );

    let mut forced = body.clone();
    forced["tool_choice"] = json!({"type": "tool", "name": "web_search"});
    let (v, _) = to_responses(&forced);
    assert_eq!(v["tool_choice"], json!({"type": "web_search"}));
    forced["tool_choice"] = json!({"type": "tool", "name": "bash"});
    let e = unsupported(translate(
        Dialect::Anthropic,
        Dialect::Responses,
        &forced,
        &opts(),
    ));
    assert!(e.contains("bash"), "{e}");

    // Over chat completions the search is dropped and named; forcing it is refused.
    let (_, dropped) = translate(Dialect::Anthropic, Dialect::OpenAi, &body, &opts()).unwrap();
    assert_eq!(
        dropped,
        ["web_search_20250305:web_search", "bash_20250124:bash"]
    );
    forced["tool_choice"] = json!({"type": "tool", "name": "web_search"});
    unsupported(translate(
        Dialect::Anthropic,
        Dialect::OpenAi,
        &forced,
        &opts(),
    ));
    // blocked_domains has no Responses form: refused when strict.
    let mut blocked = body.clone();
    blocked["tools"][1]["blocked_domains"] = json!(["spam.example"]);
    blocked["tools"].as_array_mut().unwrap().pop();
    let strict = Options {
        strict: true,
        ..opts()
    };
    unsupported(translate(
        Dialect::Anthropic,
        Dialect::Responses,
        &blocked,
        &strict,
    ));
}

fn answer(from: Dialect, to: Dialect, body: &Value) -> Value {
    let bytes = response(from, to, body.to_string().as_bytes(), "route-model").unwrap();
    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
    for key in ["created_at", "completed_at", "created"] {
        if v.get(key).is_some_and(|c| !c.is_null()) {
            v[key] = CREATED.into();
        }
    }
    v
}

#[test]
fn anthropic_answers_become_response_objects() {
    let v = answer(
        Dialect::Anthropic,
        Dialect::Responses,
        &read_json("anthropic_response_tools.json"),
    );
    golden_json("anthropic_response_tools.responses.json", &v);
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
    assert_eq!(v["output"][2]["call_id"], "toolu_01A09q90qw90lq917835lq9");
    assert_eq!(
        v["usage"]["input_tokens"],
        472 + 100 + 2048,
        "cache reads and writes count as input"
    );
    assert_eq!(v["usage"]["input_tokens_details"]["cached_tokens"], 2048);

    let v = answer(
        Dialect::Anthropic,
        Dialect::Responses,
        &read_json("anthropic_response_web_search.json"),
    );
    golden_json("anthropic_response_web_search.responses.json", &v);
    let output = v["output"].as_array().unwrap();
    assert_eq!(output[1]["type"], "web_search_call");
    assert_eq!(output[1]["action"]["query"], "claude shannon birth date");
    assert_eq!(
        output[1]["action"]["sources"][0]["url"],
        "https://en.wikipedia.org/wiki/Claude_Shannon"
    );
    let part = &output[2]["content"][0];
    let text = part["text"].as_str().unwrap();
    let a = &part["annotations"][0];
    assert_eq!(a["type"], "url_citation");
    let cited: String = text
        .chars()
        .skip(a["start_index"].as_u64().unwrap() as usize)
        .take((a["end_index"].as_u64().unwrap() - a["start_index"].as_u64().unwrap()) as usize)
        .collect();
    assert_eq!(
        cited,
        "Claude Shannon was born on April 30, 1916, in Petoskey, Michigan"
    );

    let mut cut = read_json("anthropic_response_tools.json");
    cut["stop_reason"] = json!("max_tokens");
    let v = answer(Dialect::Anthropic, Dialect::Responses, &cut);
    assert_eq!(
        (v["status"].as_str(), &v["incomplete_details"]),
        (Some("incomplete"), &json!({"reason": "max_output_tokens"}))
    );
}

#[test]
fn responses_answers_become_anthropic_messages() {
    let v = answer(
        Dialect::Responses,
        Dialect::Anthropic,
        &read_json("responses_response_tools.json"),
    );
    golden_json("responses_response_tools.anthropic.json", &v);
    assert_eq!(v["type"], "message");
    assert_eq!(v["model"], "route-model");
    assert_eq!(v["stop_reason"], "tool_use");
    let kinds: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["thinking", "text", "tool_use", "tool_use"]);
}

fn stream(from: Dialect, to: Dialect, src: &str) -> Vec<u8> {
    translate_chunks(from, to, &[src.as_bytes()], false)
}

#[test]
fn anthropic_streams_become_responses_events() {
    let src = read("anthropic_stream_tools.sse");
    let out = all_splits_agree(
        Dialect::Anthropic,
        Dialect::Responses,
        src.as_bytes(),
        false,
    );
    let events = check_events(&out);
    let shown: Vec<Value> = events.iter().map(|(_, v)| v.clone()).collect();
    golden_json(
        "anthropic_stream_tools.responses.json",
        &Value::Array(shown),
    );
    let r = &events.last().unwrap().1["response"];
    let kinds: Vec<&str> = r["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["reasoning", "message", "function_call", "function_call"]
    );
    assert_eq!(r["status"], "completed");

    // A web search: the call with its query and sources, then text with its citation.
    let src = read("anthropic_stream_web_search.sse");
    let out = all_splits_agree(
        Dialect::Anthropic,
        Dialect::Responses,
        src.as_bytes(),
        false,
    );
    let events = check_events(&out);
    let shown: Vec<Value> = events.iter().map(|(_, v)| v.clone()).collect();
    golden_json(
        "anthropic_stream_web_search.responses.json",
        &Value::Array(shown),
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    for n in [
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_text.annotation.added",
    ] {
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }
    let r = &events.last().unwrap().1["response"];
    let search = &r["output"][1];
    assert_eq!(search["type"], "web_search_call");
    assert_eq!(search["status"], "completed");
    assert_eq!(search["action"]["query"], "weather NYC today");
    assert_eq!(search["action"]["sources"].as_array().unwrap().len(), 2);
    let part = &r["output"][2]["content"][0];
    assert_eq!(part["text"], "It is mostly sunny with a high of 72°F.");
    assert_eq!(part["annotations"][0]["start_index"], 0);
    assert_eq!(part["annotations"][0]["end_index"], 39);
    assert_eq!(r["usage"]["output_tokens"], 510);
}

#[test]
fn responses_streams_become_anthropic_events() {
    let src = read("responses_stream_tools.sse");
    let out = all_splits_agree(
        Dialect::Responses,
        Dialect::Anthropic,
        src.as_bytes(),
        false,
    );
    golden_text(
        "responses_stream_tools.anthropic.sse",
        std::str::from_utf8(&out).unwrap(),
    );
    let acc = read_anthropic(&out);
    assert_eq!(acc.finish.as_deref(), Some("tool_use"));
    assert_eq!(acc.tools.len(), 2);
    assert!(acc.usage.unwrap()["output_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn streams_cut_short_still_close_in_the_clients_dialect() {
    // No message_stop / response.completed: finish() closes the client's stream.
    let src = read("anthropic_stream_tools.sse");
    let cut = &src[..src.find("event: message_delta").unwrap()];
    check_events(&stream(Dialect::Anthropic, Dialect::Responses, cut));
    let src = read("responses_stream_tools.sse");
    let cut = &src[..src.find("event: response.completed").unwrap()];
    read_anthropic(&stream(Dialect::Responses, Dialect::Anthropic, cut));
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 150,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any Anthropic stream becomes a well-formed Responses stream with its content intact,
    /// wherever the bytes are cut.
    #[test]
    fn any_anthropic_stream_becomes_a_well_formed_responses_stream(r in reply(), a in any::<prop::sample::Index>()) {
        let src = anthropic_sse(&r);
        let bytes = src.as_bytes();
        let whole = translate_chunks(Dialect::Anthropic, Dialect::Responses, &[bytes], false);
        let i = a.index(bytes.len() + 1);
        prop_assert_eq!(&translate_chunks(Dialect::Anthropic, Dialect::Responses, &[&bytes[..i], &bytes[i..]], false), &whole);
        let events = check_events(&whole);
        let resp = &events.last().unwrap().1["response"];
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut calls = Vec::new();
        for item in resp["output"].as_array().unwrap() {
            match item["type"].as_str().unwrap() {
                "message" => text.push_str(item["content"][0]["text"].as_str().unwrap()),
                "reasoning" => reasoning.push_str(item["summary"][0]["text"].as_str().unwrap()),
                _ => calls.push((item["name"].as_str().unwrap().to_owned(), item["arguments"].as_str().unwrap().to_owned())),
            }
        }
        prop_assert_eq!(text, r.text.concat());
        prop_assert_eq!(reasoning, r.reasoning.concat());
        let want: Vec<(String, String)> = r.tools.iter().map(|(n, a)| (n.clone(), a.concat())).collect();
        prop_assert_eq!(calls, want);
    }

    /// Any Responses stream becomes a well-formed Anthropic stream with its content intact.
    #[test]
    fn any_responses_stream_becomes_a_well_formed_anthropic_stream(
        reasoning in prop::collection::vec("\\PC{1,10}", 0..3),
        text in prop::collection::vec("\\PC{1,10}", 0..4),
        tools in prop::collection::vec(("[a-z_]{1,10}", prop::collection::vec("\\PC{1,8}", 0..4)), 0..3),
        incomplete in any::<bool>(),
        a in any::<prop::sample::Index>(),
    ) {
        let src = responses_sse(&reasoning, &text, &tools, incomplete);
        let bytes = src.as_bytes();
        let whole = translate_chunks(Dialect::Responses, Dialect::Anthropic, &[bytes], false);
        let i = a.index(bytes.len() + 1);
        prop_assert_eq!(&translate_chunks(Dialect::Responses, Dialect::Anthropic, &[&bytes[..i], &bytes[i..]], false), &whole);
        let acc = read_anthropic(&whole);
        prop_assert_eq!(acc.text, text.concat());
        prop_assert_eq!(acc.reasoning, reasoning.concat());
        let want: Vec<(String, String, String)> = tools.iter().enumerate()
            .map(|(k, (n, args))| (format!("call_{k}"), n.clone(), args.concat())).collect();
        prop_assert_eq!(acc.tools, want);
        let stop = if incomplete { "max_tokens" } else if tools.is_empty() { "end_turn" } else { "tool_use" };
        prop_assert_eq!(acc.finish.as_deref(), Some(stop));
        prop_assert_eq!(&acc.usage.unwrap()["output_tokens"], &json!(7));
    }
}

/// Codex's freeform `apply_patch`, offered to another API as a function taking `{input}`:
/// its calls come back to the Responses client as `custom_tool_call` items with the raw
/// input, answers and streams, from chat and Anthropic backends alike (Codex refuses a
/// `function_call` of a tool it registered as freeform).
#[test]
fn calls_of_freeform_tools_come_back_as_custom_tool_calls() {
    let patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n";
    let args = json!({"input": patch}).to_string();
    let custom = vec!["apply_patch".to_owned()];
    let chat = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "g",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_p", "type": "function", "function": {"name": "apply_patch", "arguments": args}},
                           {"id": "call_s", "type": "function", "function": {"name": "shell", "arguments": "{}"}}]}}]});
    let anthropic = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "stop_reason": "tool_use",
        "content": [{"type": "tool_use", "id": "toolu_p", "name": "apply_patch", "input": {"input": patch}},
                    {"type": "tool_use", "id": "toolu_s", "name": "shell", "input": {}}],
        "usage": {"input_tokens": 1, "output_tokens": 1}});
    for (from, body) in [(Dialect::OpenAi, chat), (Dialect::Anthropic, anthropic)] {
        let bytes = crate::dialect::translate::response_for(
            from,
            Dialect::Responses,
            body.to_string().as_bytes(),
            "codex",
            &custom,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let out = v["output"].as_array().unwrap();
        assert_eq!(out[0]["type"], "custom_tool_call", "{from:?}: {v}");
        assert_eq!(out[0]["name"], "apply_patch");
        assert_eq!(out[0]["input"], patch);
        assert!(out[0]["call_id"].as_str().unwrap().ends_with("_p"));
        assert_eq!(
            out[1]["type"], "function_call",
            "other tools stay functions"
        );
    }

    // Streams: the input is held and goes out whole when the call closes.
    let chunk = |delta: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        )
    };
    let half = args.len() / 2;
    let chat_sse = [
        chunk(json!({"role": "assistant", "content": ""})),
        chunk(json!({"tool_calls": [{"index": 0, "id": "call_p", "type": "function", "function": {"name": "apply_patch", "arguments": &args[..half]}}]})),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": &args[half..]}}]})),
        "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n".to_owned(),
        "data: [DONE]\n\n".to_owned(),
    ].concat();
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let anthropic_sse = [
        ev("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 1, "output_tokens": 1}}})),
        ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_p", "name": "apply_patch", "input": {}}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": &args[..half]}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": &args[half..]}})),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})),
        ev("message_stop", json!({"type": "message_stop"})),
    ].concat();
    for (from, src) in [
        (Dialect::OpenAi, chat_sse),
        (Dialect::Anthropic, anthropic_sse),
    ] {
        let mut parser = crate::sse::SseParser::default();
        let mut events = Vec::new();
        parser.feed(src.as_bytes(), &mut events).unwrap();
        let mut t = StreamTranslator::new(from, Dialect::Responses, "codex", false)
            .with_custom_tools(custom.clone());
        let mut out = Vec::new();
        for e in &events {
            t.push(e, &mut out);
        }
        t.finish(&mut out);
        let checked = check_events(&out);
        let names: Vec<&str> = checked.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            !names.contains(&"response.function_call_arguments.delta"),
            "{from:?}: {names:?}"
        );
        let done = &checked
            .iter()
            .find(|(n, _)| n == "response.custom_tool_call_input.done")
            .unwrap()
            .1;
        assert_eq!(done["input"], patch, "{from:?}");
        let final_item = &checked.last().unwrap().1["response"]["output"][0];
        assert_eq!(final_item["type"], "custom_tool_call");
        assert_eq!(final_item["input"], patch);
    }
}
