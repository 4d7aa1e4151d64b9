//! Round trips through `switchyard mock`: translated requests must pass the mock's request
//! checks (what the real API would refuse), and the mock's real-shaped replies (tool calls,
//! thinking / reasoning_content, streams) must translate into what the client's SDK expects.

use serde_json::{json, Value};

use super::streams::{read_anthropic, read_openai};
use super::*;
use crate::dialect::translate::{request, response, wants_usage};
use crate::mock::{Behavior, Plan, Reply, ToolCall};

const THINKING: &str = "The user wants the weather in Paris — call get_weather.";
const TEXT: &str = "Checking the weather in Paris… 🌧️";

async fn mock() -> crate::mock::MockHandle {
    let mock = crate::mock::spawn("translate").await.unwrap();
    mock.set_plan(Plan::always(Behavior::Ok(Reply {
        text: Some(TEXT.into()),
        thinking: Some(THINKING.into()),
        tool_call: Some(ToolCall {
            name: "get_weather".into(),
            arguments: json!({"city": "Paris", "days": 3}),
        }),
        chunks: 5,
        ..Reply::default()
    })));
    mock
}

async fn post(mock: &crate::mock::MockHandle, path: &str, body: bytes::Bytes) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", mock.url()))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-test")
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

/// Feeds a byte stream in uneven pieces (so SSE lines split) through a translator.
fn translate_in_pieces(from: Dialect, to: Dialect, bytes: &[u8], include_usage: bool) -> Vec<u8> {
    let mut pieces = Vec::new();
    let mut rest = bytes;
    let mut n = 1;
    while !rest.is_empty() {
        let k = n.min(rest.len());
        pieces.push(&rest[..k]);
        rest = &rest[k..];
        n = n * 7 % 61 + 1;
    }
    let split = translate_chunks(from, to, &pieces, include_usage);
    assert_eq!(split, translate_chunks(from, to, &[bytes], include_usage));
    split
}

fn openai_client_body(stream: bool) -> Value {
    json!({
        "model": "route-model",
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris for 3 days?"}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}],
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

fn anthropic_client_body(stream: bool) -> Value {
    json!({
        "model": "route-model",
        "max_tokens": 1024,
        "system": "You are a weather bot.",
        "messages": [{"role": "user", "content": "Weather in Paris for 3 days?"}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}],
        "stream": stream,
    })
}

#[tokio::test]
async fn openai_client_with_an_anthropic_backend() {
    let mock = mock().await;
    // Streaming.
    let client = openai_client_body(true);
    let client_bytes = client.to_string();
    let upstream = request(
        Dialect::OpenAi,
        Dialect::Anthropic,
        client_bytes.as_bytes(),
        "claude-x",
        &opts(),
    )
    .unwrap();
    let (status, body) = post(&mock, "/v1/messages", upstream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let out = translate_in_pieces(
        Dialect::Anthropic,
        Dialect::OpenAi,
        &body,
        wants_usage(client_bytes.as_bytes()),
    );
    let acc = read_openai(&out);
    assert_eq!(acc.text, TEXT);
    assert_eq!(acc.reasoning, THINKING);
    assert_eq!(acc.tools.len(), 1);
    assert_eq!(acc.tools[0].1, "get_weather");
    assert!(acc.tools[0].0.starts_with("toolu_"));
    let args: Value = serde_json::from_str(&acc.tools[0].2).unwrap();
    assert_eq!(args, json!({"city": "Paris", "days": 3}));
    assert_eq!(acc.finish.as_deref(), Some("tool_calls"));
    assert!(acc.usage.unwrap()["prompt_tokens"].as_u64().unwrap() > 0);

    // Not streaming.
    let client = openai_client_body(false);
    let upstream = request(
        Dialect::OpenAi,
        Dialect::Anthropic,
        client.to_string().as_bytes(),
        "claude-x",
        &opts(),
    )
    .unwrap();
    let (status, body) = post(&mock, "/v1/messages", upstream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(
        &response(Dialect::Anthropic, Dialect::OpenAi, &body, "route-model").unwrap(),
    )
    .unwrap();
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], TEXT);
    assert_eq!(m["reasoning_content"], THINKING);
    let args: Value = serde_json::from_str(
        m["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(args, json!({"city": "Paris", "days": 3}));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["model"], "route-model");

    // The tool result goes back as the next turn: still valid for the backend.
    let mut next = openai_client_body(false);
    let call = m["tool_calls"][0].clone();
    let messages = next["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": m["content"], "reasoning_content": THINKING, "tool_calls": [call.clone()]}));
    messages.push(
        json!({"role": "tool", "tool_call_id": call["id"], "content": "{\"forecast\":\"rain\"}"}),
    );
    let upstream = request(
        Dialect::OpenAi,
        Dialect::Anthropic,
        next.to_string().as_bytes(),
        "claude-x",
        &opts(),
    )
    .unwrap();
    let (status, body) = post(&mock, "/v1/messages", upstream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn anthropic_client_with_an_openai_backend() {
    let mock = mock().await;
    let client = anthropic_client_body(true);
    let upstream = request(
        Dialect::Anthropic,
        Dialect::OpenAi,
        client.to_string().as_bytes(),
        "gpt-x",
        &opts(),
    )
    .unwrap();
    let (status, body) = post(&mock, "/v1/chat/completions", upstream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let out = translate_in_pieces(Dialect::OpenAi, Dialect::Anthropic, &body, false);
    let acc = read_anthropic(&out);
    assert_eq!(acc.text, TEXT);
    assert_eq!(acc.reasoning, THINKING);
    assert_eq!(acc.tools.len(), 1);
    assert!(acc.tools[0].0.starts_with("call_"));
    let args: Value = serde_json::from_str(&acc.tools[0].2).unwrap();
    assert_eq!(args, json!({"city": "Paris", "days": 3}));
    assert_eq!(acc.finish.as_deref(), Some("tool_use"));
    let usage = acc.usage.unwrap();
    assert!(
        usage["input_tokens"].as_u64().unwrap() > 0,
        "usage requested upstream: {usage}"
    );
    assert!(usage["output_tokens"].as_u64().unwrap() > 0);

    let client = anthropic_client_body(false);
    let upstream = request(
        Dialect::Anthropic,
        Dialect::OpenAi,
        client.to_string().as_bytes(),
        "gpt-x",
        &opts(),
    )
    .unwrap();
    let (status, body) = post(&mock, "/v1/chat/completions", upstream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(
        &response(Dialect::OpenAi, Dialect::Anthropic, &body, "route-model").unwrap(),
    )
    .unwrap();
    let kinds: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["thinking", "text", "tool_use"]);
    assert_eq!(
        v["content"][2]["input"],
        json!({"city": "Paris", "days": 3})
    );
    assert_eq!(v["stop_reason"], "tool_use");

    // Next turn with the tool result (and the thinking block, dropped for OpenAI).
    let mut next = anthropic_client_body(false);
    let messages = next["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": v["content"]}));
    messages.push(json!({"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": v["content"][2]["id"], "content": "rain"}]}));
    let upstream = request(
        Dialect::Anthropic,
        Dialect::OpenAi,
        next.to_string().as_bytes(),
        "gpt-x",
        &opts(),
    )
    .unwrap();
    let (status, body) = post(&mock, "/v1/chat/completions", upstream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn golden_requests_are_accepted_by_the_mock() {
    let mock = mock().await;
    let mut oa = read_json("openai_request_tools.json");
    oa["stream"] = json!(false);
    let upstream = request(
        Dialect::OpenAi,
        Dialect::Anthropic,
        oa.to_string().as_bytes(),
        "claude-x",
        &opts(),
    )
    .unwrap();
    let (status, body) = post(&mock, "/v1/messages", upstream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut an = read_json("anthropic_request_tools.json");
    an["stream"] = json!(false);
    let upstream = request(
        Dialect::Anthropic,
        Dialect::OpenAi,
        an.to_string().as_bytes(),
        "gpt-x",
        &opts(),
    )
    .unwrap();
    let (status, body) = post(&mock, "/v1/chat/completions", upstream).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
}
