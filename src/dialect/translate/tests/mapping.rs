//! One mapping at a time, both directions.

use serde_json::{json, Value};

use super::*;
use crate::dialect::translate::{response, wants_usage, TranslateError};
use crate::dialect::ErrorKind;

fn oa(messages: Value) -> Value {
    json!({"model": "gpt-4o", "messages": messages})
}

fn an(messages: Value) -> Value {
    json!({"model": "claude", "max_tokens": 100, "messages": messages})
}

fn strict() -> Options {
    Options {
        default_max_tokens: 4096,
        strict: true,
    }
}

#[test]
fn max_tokens_default_and_precedence() {
    let base = oa(json!([{"role": "user", "content": "hi"}]));
    let custom = Options {
        default_max_tokens: 321,
        strict: false,
    };
    assert_eq!(
        to_anthropic_with(&base, &custom).unwrap()["max_tokens"],
        321
    );
    let mut b = base.clone();
    b["max_tokens"] = json!(50);
    assert_eq!(to_anthropic(&b)["max_tokens"], 50);
    b["max_completion_tokens"] = json!(70);
    assert_eq!(to_anthropic(&b)["max_tokens"], 70);
    b["max_completion_tokens"] = json!(0);
    assert!(matches!(
        to_anthropic_with(&b, &opts()),
        Err(TranslateError::Invalid(_))
    ));
    let back = to_openai(&an(json!([{"role": "user", "content": "hi"}])));
    assert_eq!(back["max_tokens"], 100);
}

#[test]
fn sampling_parameters() {
    let mut b = oa(json!([{"role": "user", "content": "hi"}]));
    b["temperature"] = json!(0.3);
    b["stop"] = json!("###");
    let a = to_anthropic(&b);
    assert_eq!(a["temperature"], 0.3);
    assert_eq!(a["stop_sequences"], json!(["###"]));
    // Recent Claude models refuse temperature and top_p together: top_p goes.
    b["top_p"] = json!(1.0);
    assert!(to_anthropic(&b).get("top_p").is_none());
    assert!(to_anthropic_with(&b, &strict()).is_ok());
    b["top_p"] = json!(0.5);
    assert!(to_anthropic(&b).get("top_p").is_none());
    assert!(matches!(
        to_anthropic_with(&b, &strict()),
        Err(TranslateError::Unsupported(_))
    ));
    b.as_object_mut().unwrap().remove("temperature");
    assert_eq!(to_anthropic(&b)["top_p"], 0.5);
    // OpenAI temperatures go to 2; Anthropic's stop at 1.
    b["temperature"] = json!(1.6);
    b.as_object_mut().unwrap().remove("top_p");
    assert_eq!(to_anthropic(&b)["temperature"], 1.0);
    assert!(matches!(
        to_anthropic_with(&b, &strict()),
        Err(TranslateError::Unsupported(_))
    ));
    // Whitespace-only stop sequences are refused by Anthropic.
    b["temperature"] = json!(1);
    b["stop"] = json!(["\n", "END"]);
    assert_eq!(to_anthropic(&b)["stop_sequences"], json!(["END"]));

    let mut a = an(json!([{"role": "user", "content": "hi"}]));
    a["temperature"] = json!(0.5);
    a["top_p"] = json!(0.9);
    a["stop_sequences"] = json!(["a", "b", "c", "d", "e"]);
    let o = to_openai(&a);
    assert_eq!(
        (o["temperature"].clone(), o["top_p"].clone()),
        (json!(0.5), json!(0.9))
    );
    assert_eq!(o["stop"], json!(["a", "b", "c", "d"]));
    assert!(matches!(
        to_openai_with(&a, &strict()),
        Err(TranslateError::Unsupported(_))
    ));
    a["top_k"] = json!(40);
    a["stop_sequences"] = json!(["a"]);
    assert!(to_openai(&a).get("top_k").is_none());
    assert!(matches!(
        to_openai_with(&a, &strict()),
        Err(TranslateError::Unsupported(m)) if m.contains("top_k")
    ));
}

#[test]
fn stream_and_usage_options() {
    let mut b = oa(json!([{"role": "user", "content": "hi"}]));
    b["stream"] = json!(true);
    b["stream_options"] = json!({"include_usage": true});
    let a = to_anthropic_with(&b, &strict()).unwrap();
    assert_eq!(a["stream"], true);
    assert!(a.get("stream_options").is_none());
    assert!(wants_usage(b.to_string().as_bytes()));
    b["stream_options"] = json!({"include_usage": false});
    assert!(!wants_usage(b.to_string().as_bytes()));
    assert!(!wants_usage(br#"{"stream":true}"#));
    assert!(!wants_usage(b"not json"));

    let mut a = an(json!([{"role": "user", "content": "hi"}]));
    a["stream"] = json!(true);
    let o = to_openai(&a);
    assert_eq!(o["stream"], true);
    assert_eq!(o["stream_options"], json!({"include_usage": true}));
    a["stream"] = json!(false);
    assert!(to_openai(&a).get("stream_options").is_none());
}

#[test]
fn user_and_metadata() {
    let mut b = oa(json!([{"role": "user", "content": "hi"}]));
    b["user"] = json!("u-1");
    assert_eq!(to_anthropic(&b)["metadata"], json!({"user_id": "u-1"}));
    let mut a = an(json!([{"role": "user", "content": "hi"}]));
    a["metadata"] = json!({"user_id": "u-2"});
    assert_eq!(to_openai(&a)["user"], "u-2");
}

#[test]
fn system_prompts() {
    let one = to_anthropic(&oa(json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"}
    ])));
    assert_eq!(one["system"], "Be brief.");
    // Mid-conversation system messages are hoisted, in order.
    let many = to_anthropic(&oa(json!([
        {"role": "developer", "content": "A"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": [{"type": "text", "text": "B"}]},
        {"role": "user", "content": "again"}
    ])));
    assert_eq!(
        many["system"],
        json!([{"type": "text", "text": "A"}, {"type": "text", "text": "B"}])
    );
    assert_eq!(many["messages"].as_array().unwrap().len(), 3);

    let mut a = an(json!([{"role": "user", "content": "hi"}]));
    a["system"] = json!([{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                         {"type": "text", "text": "B"}]);
    let o = to_openai_with(&a, &strict()).unwrap();
    assert_eq!(
        o["messages"][0],
        json!({"role": "system", "content": "A\n\nB"})
    );
    a["system"] = json!("Just this.");
    assert_eq!(to_openai(&a)["messages"][0]["content"], "Just this.");
}

#[test]
fn consecutive_roles_merge_for_anthropic() {
    let a = to_anthropic(&oa(json!([
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "three"},
        {"role": "assistant", "content": "four"},
        {"role": "user", "content": ""},
        {"role": "user", "content": "five"}
    ])));
    assert_eq!(
        a["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}]},
            {"role": "user", "content": "five"}
        ])
    );
}

#[test]
fn tool_choice_both_ways() {
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let cases = [
        (json!("auto"), json!({"type": "auto"})),
        (json!("none"), json!({"type": "none"})),
        (json!("required"), json!({"type": "any"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ];
    for (openai, anthropic) in cases {
        let mut b = oa(json!([{"role": "user", "content": "hi"}]));
        b["tools"] = tools.clone();
        b["tool_choice"] = openai.clone();
        let a = to_anthropic(&b);
        assert_eq!(a["tool_choice"], anthropic);
        let o = to_openai(&a);
        assert_eq!(o["tool_choice"], openai);
        assert_eq!(o["tools"], tools);
    }
    // parallel_tool_calls: false ⇄ disable_parallel_tool_use: true
    let mut b = oa(json!([{"role": "user", "content": "hi"}]));
    b["tools"] = tools.clone();
    b["parallel_tool_calls"] = json!(false);
    let a = to_anthropic(&b);
    assert_eq!(
        a["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert_eq!(to_openai(&a)["parallel_tool_calls"], false);
    // Without tools, tool_choice means nothing (and OpenAI refuses it alone).
    let mut b = oa(json!([{"role": "user", "content": "hi"}]));
    b["tool_choice"] = json!("required");
    assert!(to_anthropic(&b).get("tool_choice").is_none());
    let mut a = an(json!([{"role": "user", "content": "hi"}]));
    a["tool_choice"] = json!({"type": "any"});
    assert!(to_openai(&a).get("tool_choice").is_none());
}

#[test]
fn tools_schema_defaults_and_server_tools() {
    let mut b = oa(json!([{"role": "user", "content": "hi"}]));
    b["tools"] = json!([{"type": "function", "function": {"name": "now"}}]);
    assert_eq!(
        to_anthropic(&b)["tools"],
        json!([{"name": "now", "input_schema": {"type": "object", "properties": {}}}])
    );
    let mut a = an(json!([{"role": "user", "content": "hi"}]));
    a["tools"] = json!([
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
        {"name": "f", "input_schema": {"type": "object"}}
    ]);
    assert_eq!(
        to_openai(&a)["tools"],
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])
    );
    assert!(matches!(
        to_openai_with(&a, &strict()),
        Err(TranslateError::Unsupported(_))
    ));
}

#[test]
fn tool_history_without_tools_gets_placeholders() {
    let b = oa(json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "Summarize the conversation."}
    ]));
    let a = to_anthropic(&b);
    assert_eq!(a["tools"][0]["name"], "get_weather");
    assert_eq!(a["tool_choice"], json!({"type": "none"}));
}

#[test]
fn tool_call_ids_are_made_acceptable_to_anthropic() {
    let b = oa(json!([
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "functions.lookup:0", "type": "function",
            "function": {"name": "lookup", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "functions.lookup:0", "content": "ok"}
    ]));
    let a = to_anthropic(&b);
    assert_eq!(a["messages"][1]["content"][0]["id"], "functions_lookup_0");
    assert_eq!(a["messages"][1]["content"][0]["input"], json!({}));
    assert_eq!(
        a["messages"][2]["content"][0]["tool_use_id"],
        "functions_lookup_0"
    );
    assert!(matches!(
        to_anthropic_with(&b, &strict()),
        Err(TranslateError::Unsupported(_))
    ));
}

#[test]
fn images_both_ways() {
    let b = oa(json!([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    ]}]));
    let a = to_anthropic(&b);
    assert_eq!(
        a["messages"][0]["content"],
        json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklGRg=="}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
        ])
    );
    let o = to_openai(&a);
    assert_eq!(o["messages"][0]["content"], b["messages"][0]["content"]);
    let bad = oa(json!([{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}]));
    assert!(matches!(
        to_anthropic_with(&bad, &opts()),
        Err(TranslateError::Invalid(_))
    ));
}

#[test]
fn pdf_documents_both_ways() {
    let a = an(json!([{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}, "title": "report.pdf"},
        {"type": "text", "text": "Summarize."}
    ]}]));
    let o = to_openai(&a);
    assert_eq!(
        o["messages"][0]["content"][0],
        json!({"type": "file", "file": {"filename": "report.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"}})
    );
    let back = to_anthropic(&o);
    assert_eq!(
        back["messages"][0]["content"][0],
        a["messages"][0]["content"][0]
    );
}

#[test]
fn reasoning_history_is_dropped_both_ways() {
    let b = oa(json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "reasoning_content": "greet back"},
        {"role": "user", "content": "bye"}
    ]));
    // Even when strict: documented, not a feature loss of the request.
    let a = to_anthropic_with(&b, &strict()).unwrap();
    assert_eq!(
        a["messages"][1],
        json!({"role": "assistant", "content": "hello"})
    );
    let a = an(json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "greet back", "signature": "sig"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "text", "text": "hello"}]},
        {"role": "user", "content": "bye"}
    ]));
    let o = to_openai_with(&a, &strict()).unwrap();
    assert_eq!(
        o["messages"][1],
        json!({"role": "assistant", "content": "hello"})
    );
    // Thinking *settings* are a feature OpenAI backends may lack.
    let mut a = a;
    a["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    assert!(to_openai(&a).get("thinking").is_none());
    assert!(matches!(
        to_openai_with(&a, &strict()),
        Err(TranslateError::Unsupported(_))
    ));
}

#[test]
fn structured_output_both_ways() {
    let schema = json!({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"], "additionalProperties": false});
    let mut b = oa(json!([{"role": "user", "content": "hi"}]));
    b["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": true}});
    let a = to_anthropic(&b);
    assert_eq!(
        a["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    let o = to_openai(&a);
    assert_eq!(o["response_format"]["json_schema"]["schema"], schema);
    b["response_format"] = json!({"type": "json_object"});
    assert!(matches!(
        to_anthropic_with(&b, &strict()),
        Err(TranslateError::Unsupported(_))
    ));
}

#[test]
fn untranslatable_fields_are_dropped_or_refused_when_strict() {
    let mut b = oa(json!([{"role": "user", "content": "hi"}]));
    for (k, v) in [
        ("n", json!(1)),
        ("frequency_penalty", json!(0)),
        ("presence_penalty", json!(0.0)),
        ("logprobs", json!(false)),
        ("store", json!(true)),
        ("metadata", json!({"a": "b"})),
        ("service_tier", json!("auto")),
        ("seed", Value::Null),
    ] {
        b[k] = v;
    }
    assert!(
        to_anthropic_with(&b, &strict()).is_ok(),
        "defaults and hints pass"
    );
    for (k, v) in [
        ("n", json!(2)),
        ("frequency_penalty", json!(0.5)),
        ("seed", json!(7)),
        ("logit_bias", json!({"50256": -100})),
        ("reasoning_effort", json!("high")),
        ("some_future_field", json!(true)),
    ] {
        let mut b = b.clone();
        b[k] = v;
        let a = to_anthropic(&b);
        assert!(a.get(k).is_none());
        match to_anthropic_with(&b, &strict()) {
            Err(TranslateError::Unsupported(m)) => assert!(m.contains(k), "{m}"),
            other => panic!("{k}: {other:?}"),
        }
    }
}

#[test]
fn invalid_bodies() {
    let cases: [&[u8]; 6] = [
        b"not json",
        b"[1,2]",
        br#"{"model":"m"}"#,
        br#"{"model":"m","messages":[]}"#,
        br#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#,
        br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
    ];
    for body in cases {
        let e = crate::dialect::translate::request(
            Dialect::OpenAi,
            Dialect::Anthropic,
            body,
            "c",
            &opts(),
        )
        .unwrap_err();
        assert!(matches!(e, TranslateError::Invalid(_)), "{e:?}");
        assert_eq!(e.error_kind(), ErrorKind::InvalidRequest);
    }
    let e = crate::dialect::translate::request(
        Dialect::Anthropic,
        Dialect::OpenAi,
        br#"{"model":"m","max_tokens":5,"messages":[{"role":"robot","content":"x"}]}"#,
        "c",
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(e, TranslateError::Invalid(_)));
    let e = response(
        Dialect::OpenAi,
        Dialect::Anthropic,
        b"{\"choices\":[]}",
        "m",
    )
    .unwrap_err();
    assert!(matches!(e, TranslateError::InvalidResponse(_)));
    assert_eq!(e.error_kind(), ErrorKind::Upstream);
}

fn an_response(stop_reason: &str) -> Value {
    json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
           "content": [{"type": "text", "text": "hi"}], "stop_reason": stop_reason,
           "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 4}})
}

fn oa_response(finish_reason: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": finish_reason}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
}

fn translate_response(from: Dialect, to: Dialect, v: &Value) -> Value {
    let out = response(from, to, v.to_string().as_bytes(), "route").unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn stop_reasons_both_ways() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ] {
        let o = translate_response(Dialect::Anthropic, Dialect::OpenAi, &an_response(stop));
        assert_eq!(o["choices"][0]["finish_reason"], finish, "{stop}");
    }
    for (finish, stop) in [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("function_call", "tool_use"),
    ] {
        let a = translate_response(Dialect::OpenAi, Dialect::Anthropic, &oa_response(finish));
        assert_eq!(a["stop_reason"], stop, "{finish}");
    }
}

#[test]
fn response_ids_model_and_usage() {
    let o = translate_response(
        Dialect::Anthropic,
        Dialect::OpenAi,
        &an_response("end_turn"),
    );
    assert_eq!(o["id"], "chatcmpl-1");
    assert_eq!(o["model"], "route");
    assert_eq!(o["object"], "chat.completion");
    assert_eq!(o["choices"][0]["message"]["content"], "hi");
    assert_eq!(
        o["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7,
               "prompt_tokens_details": {"cached_tokens": 0}})
    );
    let a = translate_response(Dialect::OpenAi, Dialect::Anthropic, &oa_response("stop"));
    assert_eq!(a["id"], "msg_1");
    assert_eq!(a["model"], "route");
    assert_eq!(a["content"], json!([{"type": "text", "text": "hi"}]));
    assert_eq!(
        a["usage"],
        json!({"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 0,
               "cache_creation_input_tokens": 0})
    );
    // Without an upstream id, one is made up in the right shape.
    let mut v = oa_response("stop");
    v.as_object_mut().unwrap().remove("id");
    let a = translate_response(Dialect::OpenAi, Dialect::Anthropic, &v);
    assert!(a["id"].as_str().unwrap().starts_with("msg_"));
}

#[test]
fn openai_refusal_and_tool_calls_under_stop() {
    let mut v = oa_response("stop");
    v["choices"][0]["message"] =
        json!({"role": "assistant", "content": null, "refusal": "I can't help with that."});
    let a = translate_response(Dialect::OpenAi, Dialect::Anthropic, &v);
    assert_eq!(a["stop_reason"], "refusal");
    assert_eq!(
        a["content"],
        json!([{"type": "text", "text": "I can't help with that."}])
    );
    // Some servers report "stop" for a tool call; some send no id.
    v["choices"][0]["message"] = json!({"role": "assistant", "content": null,
        "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": ""}}]});
    let a = translate_response(Dialect::OpenAi, Dialect::Anthropic, &v);
    assert_eq!(a["stop_reason"], "tool_use");
    assert_eq!(
        a["content"],
        json!([{"type": "tool_use", "id": "toolu_1_0", "name": "f", "input": {}}])
    );
}

#[test]
fn anthropic_tool_only_response_has_null_content() {
    let v = json!({"id": "msg_2", "type": "message", "role": "assistant", "model": "c",
        "content": [{"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": [1, 2]}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}});
    let o = translate_response(Dialect::Anthropic, Dialect::OpenAi, &v);
    let m = &o["choices"][0]["message"];
    assert_eq!(m["content"], Value::Null);
    assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":[1,2]}");
    assert_eq!(m["tool_calls"][0]["id"], "toolu_9");
}
