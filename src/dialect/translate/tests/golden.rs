//! Golden translations of realistic payloads, both directions.

use serde_json::Value;

use super::*;
use crate::dialect::translate::{response, wants_usage};

#[test]
fn openai_request_with_tools_images_and_several_turns() {
    let body = read_json("openai_request_tools.json");
    let out = to_anthropic(&body);
    golden_json("openai_request_tools.anthropic.json", &out);
    assert!(wants_usage(body.to_string().as_bytes()));
}

#[test]
fn anthropic_request_with_tools_images_and_thinking_history() {
    let body = read_json("anthropic_request_tools.json");
    let out = to_openai(&body);
    golden_json("anthropic_request_tools.openai.json", &out);
}

fn response_json(from: Dialect, to: Dialect, body: &Value) -> Value {
    let bytes = response(from, to, body.to_string().as_bytes(), "route-model").unwrap();
    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
    if v.get("created").is_some() {
        v["created"] = CREATED.into();
    }
    v
}

#[test]
fn anthropic_response_with_thinking_and_two_tool_calls() {
    let body = read_json("anthropic_response_tools.json");
    let out = response_json(Dialect::Anthropic, Dialect::OpenAi, &body);
    golden_json("anthropic_response_tools.openai.json", &out);
}

#[test]
fn openai_response_with_reasoning_and_two_tool_calls() {
    let body = read_json("openai_response_tools.json");
    let out = response_json(Dialect::OpenAi, Dialect::Anthropic, &body);
    golden_json("openai_response_tools.anthropic.json", &out);
}

#[test]
fn anthropic_stream_with_thinking_text_and_two_tool_calls() {
    let src = read("anthropic_stream_tools.sse");
    let out = translate_chunks(Dialect::Anthropic, Dialect::OpenAi, &[src.as_bytes()], true);
    golden_text(
        "anthropic_stream_tools.openai.sse",
        std::str::from_utf8(&out).unwrap(),
    );
}

#[test]
fn openai_stream_with_reasoning_text_and_two_tool_calls() {
    let src = read("openai_stream_tools.sse");
    let out = translate_chunks(
        Dialect::OpenAi,
        Dialect::Anthropic,
        &[src.as_bytes()],
        false,
    );
    golden_text(
        "openai_stream_tools.anthropic.sse",
        std::str::from_utf8(&out).unwrap(),
    );
}
