//! Chat completions client → Responses API backend: golden request, answer and stream,
//! focused mappings, split-anywhere and well-formedness properties.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::streams::read_openai;
use super::*;
use crate::dialect::translate::{request, response, TranslateError};

fn to_responses_with(body: &Value, opts: &Options) -> Result<Value, TranslateError> {
    let bytes = request(
        Dialect::OpenAi,
        Dialect::Responses,
        body.to_string().as_bytes(),
        "gpt-5",
        opts,
    )?;
    Ok(serde_json::from_slice(&bytes).unwrap())
}

/// Chat request → Responses request, checked against the Responses API's rules.
fn to_responses(body: &Value) -> Value {
    let v = to_responses_with(body, &opts()).unwrap();
    if let Err(e) = validate::responses(&v) {
        panic!(
            "not a valid Responses request: {e:?}\n{}",
            serde_json::to_string_pretty(&v).unwrap()
        );
    }
    v
}

fn strict() -> Options {
    Options {
        strict: true,
        ..opts()
    }
}

fn chat_answer(body: &Value) -> Value {
    let bytes = response(
        Dialect::Responses,
        Dialect::OpenAi,
        body.to_string().as_bytes(),
        "route-model",
    )
    .unwrap();
    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
    v["created"] = CREATED.into();
    v
}

fn stream(src: &[u8], include_usage: bool) -> Vec<u8> {
    translate_chunks(Dialect::Responses, Dialect::OpenAi, &[src], include_usage)
}

#[test]
fn chat_request_with_tools_tool_history_and_images() {
    let body = read_json("openai_request_tools.json");
    let out = to_responses(&body);
    golden_json("openai_request_tools.responses.json", &out);
    // `stop` has no Responses equivalent: refused when strict.
    let err = to_responses_with(&body, &strict()).unwrap_err();
    assert!(
        matches!(err, TranslateError::Unsupported(ref m) if m.contains("`stop`")),
        "{err}"
    );
}

#[test]
fn leading_system_messages_are_instructions_later_ones_developer_messages() {
    let out = to_responses(&json!({"model": "m", "messages": [
        {"role": "system", "content": "A"},
        {"role": "developer", "content": [{"type": "text", "text": "B"}]},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "C"},
    ]}));
    assert_eq!(out["instructions"], "A\n\nB");
    assert_eq!(
        out["input"],
        json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "C"}]},
        ])
    );
    assert_eq!(out["store"], false, "the gateway keeps no state");
    let only_system = to_responses_with(
        &json!({"model": "m", "messages": [{"role": "system", "content": "A"}]}),
        &opts(),
    );
    assert!(matches!(only_system, Err(TranslateError::Invalid(_))));
}

#[test]
fn parameters_map_to_their_responses_fields() {
    let out = to_responses(
        &json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 5, "reasoning_effort": "low", "verbosity": "low",
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "strict": true,
            "schema": {"type": "object", "properties": {}, "additionalProperties": false}}},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "strict": true}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "user": "u1", "safety_identifier": "s1", "store": true, "stream_options": {"include_usage": true}}),
    );
    assert_eq!(
        out["max_output_tokens"], 16,
        "raised to the Responses minimum"
    );
    assert_eq!(out["reasoning"], json!({"effort": "low"}));
    assert_eq!(
        out["text"],
        json!({"verbosity": "low", "format": {"type": "json_schema", "name": "w", "strict": true,
            "schema": {"type": "object", "properties": {}, "additionalProperties": false}}})
    );
    assert_eq!(
        out["tools"],
        json!([{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": true}])
    );
    assert_eq!(out["tool_choice"], json!({"type": "function", "name": "f"}));
    assert_eq!(
        (&out["user"], &out["safety_identifier"]),
        (&json!("u1"), &json!("s1"))
    );
    assert_eq!(out["store"], false);
    assert!(out.get("stream_options").is_none());
    let allowed = to_responses(
        &json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required",
            "tools": [{"type": "function", "function": {"name": "f"}}]}}}),
    );
    assert_eq!(
        allowed["tool_choice"],
        json!({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "f"}]})
    );
    assert_eq!(
        allowed["tools"][0]["strict"], false,
        "chat's default is non-strict"
    );
}

#[test]
fn features_without_a_responses_equivalent_are_dropped_or_refused_when_strict() {
    for (key, value) in [
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("logit_bias", json!({"50256": -100})),
        ("audio", json!({"voice": "alloy", "format": "wav"})),
        ("modalities", json!(["text", "audio"])),
        ("seed", json!(7)),
        ("presence_penalty", json!(0.5)),
    ] {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        body[key] = value;
        let out = to_responses(&body);
        assert!(out.get(key).is_none(), "{key}");
        let err = to_responses_with(&body, &strict()).unwrap_err();
        assert!(
            matches!(err, TranslateError::Unsupported(_)),
            "{key}: {err}"
        );
    }
    // Defaults are no loss.
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "n": 1, "logprobs": false, "modalities": ["text"], "frequency_penalty": 0});
    to_responses_with(&body, &strict()).unwrap();
}

#[test]
fn responses_answer_with_reasoning_text_and_two_function_calls() {
    let body = read_json("responses_response_tools.json");
    golden_json("responses_response_tools.openai.json", &chat_answer(&body));
}

#[test]
fn incomplete_and_filtered_answers_finish_as_chat_does() {
    let base = |status: &str, reason: Option<&str>| {
        json!({"id": "resp_1", "object": "response", "status": status,
            "incomplete_details": reason.map(|r| json!({"reason": r})),
            "output": [{"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "partial"}]}],
            "usage": {"input_tokens": 3, "output_tokens": 16, "total_tokens": 19}})
    };
    let length = chat_answer(&base("incomplete", Some("max_output_tokens")));
    assert_eq!(length["choices"][0]["finish_reason"], "length");
    assert_eq!(length["choices"][0]["message"]["content"], "partial");
    assert_eq!(length["id"], "chatcmpl-resp_1");
    assert_eq!(length["usage"]["total_tokens"], 19);
    let filtered = chat_answer(&base("incomplete", Some("content_filter")));
    assert_eq!(filtered["choices"][0]["finish_reason"], "content_filter");
    let stop = chat_answer(&base("completed", None));
    assert_eq!(stop["choices"][0]["finish_reason"], "stop");
    let refusal = chat_answer(&json!({"id": "resp_2", "status": "completed", "output": [
        {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}]}));
    assert_eq!(refusal["choices"][0]["message"]["refusal"], "No.");
    let not_a_response = response(Dialect::Responses, Dialect::OpenAi, b"[]", "m");
    assert!(matches!(
        not_a_response,
        Err(TranslateError::InvalidResponse(_))
    ));
}

#[test]
fn responses_stream_with_reasoning_text_and_two_function_calls() {
    let src = read("responses_stream_tools.sse");
    let out = stream(src.as_bytes(), true);
    golden_text(
        "responses_stream_tools.openai.sse",
        std::str::from_utf8(&out).unwrap(),
    );
    let acc = read_openai(&out);
    assert_eq!(acc.finish.as_deref(), Some("tool_calls"));
    assert_eq!(acc.tools.len(), 2);
    assert_eq!(
        acc.usage.unwrap()["prompt_tokens_details"]["cached_tokens"],
        256
    );
}

#[test]
fn responses_stream_split_anywhere_gives_the_same_chat_stream() {
    let src = read("responses_stream_tools.sse");
    let src = src.as_bytes();
    let whole = stream(src, true);
    for i in 0..=src.len() {
        let split = translate_chunks(
            Dialect::Responses,
            Dialect::OpenAi,
            &[&src[..i], &src[i..]],
            true,
        );
        assert!(split == whole, "split at byte {i} changed the output");
    }
    let bytes: Vec<&[u8]> = src.chunks(1).collect();
    assert_eq!(
        translate_chunks(Dialect::Responses, Dialect::OpenAi, &bytes, true),
        whole,
        "byte by byte"
    );
}

#[test]
fn usage_chunk_only_when_asked_and_failures_emit_nothing() {
    let src = read("responses_stream_tools.sse");
    let without = stream(src.as_bytes(), false);
    assert!(read_openai(&without).usage.is_none());
    // The gateway classifies failure events before translating; the translator adds nothing.
    let failed = b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"id\":\"resp_x\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"boom\"}}}\n\nevent: error\ndata: {\"type\":\"error\",\"code\":\"x\",\"message\":\"y\"}\n\n";
    let mut parser = crate::sse::SseParser::default();
    let mut events = Vec::new();
    parser.feed(failed, &mut events).unwrap();
    let mut t = StreamTranslator::new(Dialect::Responses, Dialect::OpenAi, "m", true);
    let mut out = Vec::new();
    for ev in &events {
        t.push(ev, &mut out);
    }
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
}

#[test]
fn incomplete_stream_finishes_with_length_and_arguments_sent_whole_go_out_once() {
    let src = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_9\"}}\n\n",
        // A function call whose arguments come whole at `done`, never as deltas.
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_1\",\"name\":\"f\",\"arguments\":\"\"}}\n\n",
        "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"output_index\":0,\"item\":{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_1\",\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}\n\n",
        "event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{\"id\":\"resp_9\",\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"}}}\n\n",
    );
    let acc = read_openai(&stream(src.as_bytes(), false));
    assert_eq!(acc.finish.as_deref(), Some("length"));
    assert_eq!(
        acc.tools,
        vec![("call_1".into(), "f".into(), "{\"a\":1}".into())]
    );
}

/// A Responses stream as the API sends it, for a reply of reasoning, text and calls.
pub(super) fn responses_sse(
    reasoning: &[String],
    text: &[String],
    tools: &[(String, Vec<String>)],
    incomplete: bool,
) -> String {
    let mut s = String::new();
    let mut ev = |name: &str, mut body: Value| {
        body["type"] = json!(name);
        s.push_str(&format!("event: {name}\ndata: {body}\n\n"));
    };
    ev(
        "response.created",
        json!({"response": {"id": "resp_p", "status": "in_progress"}}),
    );
    let mut oi = 0;
    if !reasoning.is_empty() {
        ev(
            "response.output_item.added",
            json!({"output_index": oi, "item": {"type": "reasoning", "id": "rs_1", "summary": []}}),
        );
        for d in reasoning {
            ev(
                "response.reasoning_summary_text.delta",
                json!({"output_index": oi, "item_id": "rs_1", "delta": d}),
            );
        }
        oi += 1;
    }
    if !text.is_empty() {
        ev(
            "response.output_item.added",
            json!({"output_index": oi, "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}}),
        );
        for d in text {
            ev(
                "response.output_text.delta",
                json!({"output_index": oi, "item_id": "msg_1", "content_index": 0, "delta": d}),
            );
        }
        oi += 1;
    }
    for (k, (name, args)) in tools.iter().enumerate() {
        let id = format!("fc_{k}");
        ev(
            "response.output_item.added",
            json!({"output_index": oi, "item": {"type": "function_call", "id": id, "call_id": format!("call_{k}"), "name": name, "arguments": ""}}),
        );
        for d in args {
            ev(
                "response.function_call_arguments.delta",
                json!({"output_index": oi, "item_id": id, "delta": d}),
            );
        }
        ev(
            "response.output_item.done",
            json!({"output_index": oi, "item": {"type": "function_call", "id": id, "call_id": format!("call_{k}"), "name": name, "arguments": args.concat()}}),
        );
        oi += 1;
    }
    let (name, status, details) = if incomplete {
        (
            "response.incomplete",
            "incomplete",
            json!({"reason": "max_output_tokens"}),
        )
    } else {
        ("response.completed", "completed", Value::Null)
    };
    ev(
        name,
        json!({"response": {"id": "resp_p", "status": status, "incomplete_details": details,
        "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}}}),
    );
    s
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Role first, `[DONE]` last, one finish_reason, content intact, whatever the splits.
    #[test]
    fn responses_streams_translate_into_well_formed_chat_streams(
        reasoning in prop::collection::vec("\\PC{1,10}", 0..3),
        text in prop::collection::vec("\\PC{1,10}", 0..4),
        tools in prop::collection::vec(("[a-z_]{1,10}", prop::collection::vec("\\PC{1,8}", 0..4)), 0..3),
        incomplete in any::<bool>(),
        usage in any::<bool>(),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let src = responses_sse(&reasoning, &text, &tools, incomplete);
        let bytes = src.as_bytes();
        let whole = stream(bytes, usage);
        let (i, j) = {
            let (x, y) = (a.index(bytes.len() + 1), b.index(bytes.len() + 1));
            (x.min(y), x.max(y))
        };
        let split = translate_chunks(Dialect::Responses, Dialect::OpenAi, &[&bytes[..i], &bytes[i..j], &bytes[j..]], usage);
        prop_assert_eq!(&split, &whole);
        let acc = read_openai(&whole);
        prop_assert_eq!(acc.text, text.concat());
        prop_assert_eq!(acc.reasoning, reasoning.concat());
        let want: Vec<(String, String, String)> = tools.iter().enumerate()
            .map(|(k, (n, args))| (format!("call_{k}"), n.clone(), args.concat())).collect();
        prop_assert_eq!(acc.tools, want);
        let finish = if incomplete { "length" } else if tools.is_empty() { "stop" } else { "tool_calls" };
        prop_assert_eq!(acc.finish.as_deref(), Some(finish));
        prop_assert_eq!(acc.usage.is_some(), usage);
    }
}

#[test]
fn reasoning_history_is_dropped_even_when_strict_and_files_and_refusals_keep_their_shape() {
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": [
            {"type": "text", "text": "Read this"},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            {"type": "file", "file": {"file_id": "file-abc"}}]},
        {"role": "assistant", "content": null, "refusal": "I can't.", "reasoning_content": "hmm"},
        {"role": "user", "content": "Please"},
    ]});
    let out = to_responses_with(&body, &strict()).unwrap();
    validate::responses(&out).unwrap();
    assert_eq!(
        out["input"][0]["content"][1],
        json!({"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"})
    );
    assert_eq!(
        out["input"][0]["content"][2],
        json!({"type": "input_file", "file_id": "file-abc"})
    );
    assert_eq!(
        out["input"][1],
        json!({"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]})
    );
    let audio = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]});
    assert!(matches!(
        to_responses_with(&audio, &strict()),
        Err(TranslateError::Unsupported(_))
    ));
    let bad_tool = json!({"model": "m", "messages": [
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]});
    assert!(matches!(
        to_responses_with(&bad_tool, &opts()),
        Err(TranslateError::Invalid(_))
    ));
}
