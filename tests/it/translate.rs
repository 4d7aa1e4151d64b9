//! Cross-dialect chains end to end: an OpenAI client served by an Anthropic backend and the
//! reverse, streaming and not, tools included, and failover across dialects. The mocks
//! validate every upstream request the way the real APIs do, so a 200 proves the translated
//! request was valid in the backend's dialect.

use serde_json::{json, Value};

use crate::support::*;

const MIXED: &str = r#"
backends:
  claude: { api: anthropic_messages, base_url: "PRIMARY_URL", api_key_env: PRIMARY_KEY, default_max_tokens: 1024 }
  gpt:    { api: openai_chat, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }
  claude-b: { api: anthropic_messages, base_url: "FALLBACK_URL", api_key_env: FALLBACK_KEY }
  gpt-a:  { api: openai_chat, base_url: "PRIMARY_URL/v1", api_key_env: PRIMARY_KEY }
routes:
  to-claude:     { chain: [ { backend: claude, model: claude-opus-4-7 } ] }
  to-gpt:        { chain: [ { backend: gpt, model: gpt-4o } ] }
  claude-then-gpt: { chain: [ { backend: claude, model: claude-opus-4-7 }, { backend: gpt, model: gpt-4o } ] }
  gpt-then-claude: { chain: [ { backend: gpt-a, model: gpt-4o }, { backend: claude-b, model: claude-sonnet-4-5 } ] }
failover: { retries: 0, ttft_timeout: 2s }
health: { failure_threshold: { default: 1000, connection: 1000, timeout: 1000 } }
"#;

fn oa(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
           "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather in Paris?"}],
           "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]})
}

fn an(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 256, "stream": stream, "system": "Be brief.",
           "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
           "tools": [{"name": "get_weather", "description": "Weather by city",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]})
}

fn sse_data(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

#[tokio::test]
async fn an_openai_client_is_served_by_an_anthropic_backend() {
    let h = start_yaml(MIXED).await;
    let r = post(&h, "/v1/chat/completions", &oa("to-claude", false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "to-claude");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from primary");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let sent = &request_log(&h, &h.primary).await[0];
    assert_eq!(sent["path"], "/v1/messages");
    assert_eq!(sent["body"]["model"], "claude-opus-4-7");
    assert_eq!(sent["body"]["max_tokens"], 1024);
    assert_eq!(sent["body"]["system"], "Be brief.");
    assert_eq!(
        sent["body"]["tools"][0]["input_schema"]["required"][0],
        "city"
    );
    assert_eq!(sent["headers"]["x-api-key"], PRIMARY_KEY);
}

#[tokio::test]
async fn tool_calls_cross_dialects_with_arguments_intact_streaming_and_not() {
    let h = start_yaml(MIXED).await;
    let tool = ok().with(
        "tool_call",
        json!({"name": "get_weather", "arguments": {"city": "Paris"}}),
    );
    h.primary_always(tool.clone()).await;
    h.fallback_always(tool).await;

    // OpenAI client ← Anthropic backend.
    let v = post(&h, "/v1/chat/completions", &oa("to-claude", false))
        .await
        .json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let r = post(&h, "/v1/chat/completions", &oa("to-claude", true)).await;
    let chunks = sse_data(&r.text);
    let args: String = chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls/0/function/arguments")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"}),
        "{}",
        r.text
    );
    assert!(chunks
        .iter()
        .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));
    assert!(
        chunks.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .is_some(),
        "include_usage honoured: {}",
        r.text
    );
    assert!(r.text.trim_end().ends_with("data: [DONE]"));

    // Anthropic client ← OpenAI backend.
    let v = post(&h, "/v1/messages", &an("to-gpt", false)).await.json();
    let block = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap()
        .clone();
    assert_eq!(block["name"], "get_weather");
    assert_eq!(block["input"], json!({"city": "Paris"}));
    assert_eq!(v["stop_reason"], "tool_use");
    let r = post(&h, "/v1/messages", &an("to-gpt", true)).await;
    let events = sse_data(&r.text);
    let partial: String = events
        .iter()
        .filter(|e| e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&partial).unwrap(),
        json!({"city": "Paris"}),
        "{}",
        r.text
    );
    assert_eq!(events.first().unwrap()["type"], "message_start");
    assert_eq!(events.last().unwrap()["type"], "message_stop");
}

#[tokio::test]
async fn streams_translate_text_both_ways() {
    let h = start_yaml(MIXED).await;
    let r = post(&h, "/v1/chat/completions", &oa("to-claude", true)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.streamed_text(), "Hello from primary");
    let r = post(&h, "/v1/messages", &an("to-gpt", true)).await;
    assert_eq!(r.streamed_text(), "Hello from fallback");
    assert!(
        r.text.contains("event: message_start") && r.text.contains("event: message_stop"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn failover_crosses_dialects_in_both_directions() {
    let h = start_yaml(MIXED).await;
    // OpenAI client: Anthropic primary fails, OpenAI fallback answers natively.
    h.primary_always(status(529)).await;
    let r = post(&h, "/v1/chat/completions", &oa("claude-then-gpt", true)).await;
    assert_eq!(r.backend(), Some("gpt"));
    assert_eq!(r.streamed_text(), "Hello from fallback");
    // Anthropic client: OpenAI primary fails, Anthropic fallback answers natively.
    let r = post(&h, "/v1/messages", &an("gpt-then-claude", false)).await;
    assert_eq!(r.backend(), Some("claude-b"));
    assert_eq!(r.answer_text(), "Hello from fallback");
    // And the other way: the native primary fails, the translated fallback answers (both
    // healthy again first: the engine ejected the primaries it gave up on above; and a new
    // conversation, as the one above keeps its turn off the primary that failed in it).
    h.forget_health().await;
    h.fallback_always(status(500)).await;
    h.primary_always(ok()).await;
    let mut other_conversation = an("gpt-then-claude", true);
    other_conversation["messages"][0]["content"] = "And in Rome?".into();
    let r = post(&h, "/v1/messages", &other_conversation).await;
    assert_eq!(r.backend(), Some("gpt-a"));
    assert_eq!(r.streamed_text(), "Hello from primary");
}

#[tokio::test]
async fn a_translated_backends_client_error_comes_back_in_the_clients_dialect() {
    let h = start_yaml(MIXED).await;
    let overflow = json!({"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}});
    h.primary_always(status(400).body(overflow)).await;
    let r = post(&h, "/v1/chat/completions", &oa("claude-then-gpt", false)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-switchyard-reason"), Some("context_overflow"));
    let v = r.json();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("prompt is too long"),
        "{v}"
    );
    assert_eq!(v["error"]["code"], "context_overflow");
    assert_eq!(h.fallback_requests().await, 0);
}

// ---------------------------------------------------------------------------------------------
// A Responses client (Codex CLI) over chat-completions backends.
// ---------------------------------------------------------------------------------------------

const CHAT_ONLY: &str = r#"
backends:
  gpt-a: { api: openai_chat, base_url: "PRIMARY_URL/v1", api_key_env: PRIMARY_KEY }
  gpt-b: { api: openai_chat, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }
routes:
  chat-pair: { chain: [ { backend: gpt-a, model: gpt-4o }, { backend: gpt-b, model: gpt-4o-mini } ] }
failover: { retries: 0, ttft_timeout: 2s }
health: { failure_threshold: { default: 1000, connection: 1000, timeout: 1000 } }
"#;

fn rs(stream: bool) -> Value {
    json!({"model": "chat-pair", "stream": stream, "store": false,
           "instructions": "Be brief.", "include": ["reasoning.encrypted_content"],
           "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}],
           "tools": [{"type": "function", "name": "get_weather", "description": "Weather by city", "strict": false,
                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
                     {"type": "web_search"}],
           "tool_choice": "auto", "parallel_tool_calls": true, "reasoning": {"effort": "low"}})
}

/// (event name, data) of a Responses stream.
fn rs_events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = Some(n.to_owned());
        } else if let Some(d) = line.strip_prefix("data: ") {
            let v: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"));
            out.push((name.take().expect("every event is named"), v));
        }
    }
    out
}

#[tokio::test]
async fn a_responses_client_fails_over_between_chat_backends() {
    let h = start_yaml(CHAT_ONLY).await;
    h.primary_always(status(529)).await;

    // Not streaming: the fallback's chat completion as a Response object.
    let r = post(&h, "/v1/responses", &rs(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.backend(), Some("gpt-b"));
    let v = r.json();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "chat-pair");
    assert!(v["id"].as_str().unwrap().starts_with("resp_"), "{v}");
    let message = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "message")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(message["content"][0]["text"], "Hello from fallback");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{v}");
    // What the chat backend was sent (the mock validated it as the real API would).
    let sent = &request_log(&h, &h.fallback).await[0];
    assert_eq!(sent["path"], "/v1/chat/completions");
    assert_eq!(sent["body"]["model"], "gpt-4o-mini");
    assert_eq!(
        sent["body"]["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(
        sent["body"]["tools"].as_array().unwrap().len(),
        1,
        "web_search dropped"
    );
    assert_eq!(sent["body"]["reasoning_effort"], "low");
    assert!(sent["body"].get("include").is_none());

    // Streaming: Responses events, numbered, ending with response.completed.
    let r = post(&h, "/v1/responses", &rs(true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.backend(), Some("gpt-b"));
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = rs_events(&r.text);
    for (i, (name, v)) in events.iter().enumerate() {
        assert_eq!(v["type"], name.as_str());
        assert_eq!(v["sequence_number"], json!(i), "{}", r.text);
    }
    assert_eq!(events[0].0, "response.created");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "response.completed", "{}", r.text);
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello from fallback");
    assert!(
        done["response"]["usage"]["output_tokens"].as_u64().unwrap() > 0,
        "{done}"
    );
    assert!(!r.text.contains("[DONE]"));
    let sent = &request_log(&h, &h.fallback).await[1];
    assert_eq!(
        sent["body"]["stream_options"],
        json!({"include_usage": true})
    );
}

#[tokio::test]
async fn a_chat_backends_tool_call_reaches_a_responses_client_as_a_function_call() {
    let h = start_yaml(CHAT_ONLY).await;
    h.primary_always(status(529)).await;
    h.fallback_always(ok().with(
        "tool_call",
        json!({"name": "get_weather", "arguments": {"city": "Paris"}}),
    ))
    .await;
    let r = post(&h, "/v1/responses", &rs(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let call = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(call["name"], "get_weather");
    assert!(call["id"].as_str().unwrap().starts_with("fc_"));
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let call_id = call["call_id"].as_str().unwrap().to_owned();

    let r = post(&h, "/v1/responses", &rs(true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let events = rs_events(&r.text);
    let done = events
        .iter()
        .find(|(n, v)| n == "response.output_item.done" && v["item"]["type"] == "function_call")
        .unwrap_or_else(|| panic!("{}", r.text));
    let args: String = events
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap())
        .collect();
    assert_eq!(done.1["item"]["arguments"], args.as_str());
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );

    // The round trip: the call and its output go back as chat tool_calls + a tool message.
    let mut next = rs(false);
    let items = next["input"].as_array_mut().unwrap();
    items.push(
        json!({"type": "function_call", "call_id": call_id, "name": "get_weather",
                      "arguments": "{\"city\":\"Paris\"}"}),
    );
    items
        .push(json!({"type": "function_call_output", "call_id": call_id, "output": "18°C, sunny"}));
    h.fallback_always(ok()).await;
    let r = post(&h, "/v1/responses", &next).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let log = request_log(&h, &h.fallback).await;
    let sent = &log.last().unwrap()["body"]["messages"];
    let n = sent.as_array().unwrap().len();
    assert_eq!(sent[n - 1]["role"], "tool");
    assert_eq!(sent[n - 1]["tool_call_id"], call_id.as_str());
    assert_eq!(sent[n - 2]["tool_calls"][0]["id"], call_id.as_str());
}

#[tokio::test]
async fn a_continued_response_cannot_go_to_a_chat_backend() {
    let h = start_yaml(CHAT_ONLY).await;
    let mut body = rs(false);
    body["previous_response_id"] = json!("resp_abc");
    let r = post(&h, "/v1/responses", &body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let m = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(m.contains("previous_response_id"), "{m}");
    assert_eq!(h.primary_requests().await, 0);
}
