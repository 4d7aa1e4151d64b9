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
