//! A chat completions client served by Responses API backends (`api: openai_responses`): the
//! request translated into a Responses request (the mocks validate it as the API does, at
//! `{mock}/v1/responses`), the answer and the stream translated back, failover included.

use serde_json::{json, Value};

use crate::support::*;

const RESPONSES: &str = r#"
backends:
  resp-a: { api: openai_responses, base_url: "PRIMARY_URL/v1", api_key_env: PRIMARY_KEY }
  resp-b: { api: openai_responses, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }
routes:
  codex-chat: { chain: [ { backend: resp-a, model: gpt-5 }, { backend: resp-b, model: gpt-5-mini } ] }
failover: { retries: 0, ttft_timeout: 2s }
health: { failure_threshold: { default: 1000, connection: 1000, timeout: 1000 } }
"#;

fn chat(stream: bool) -> Value {
    json!({"model": "codex-chat", "stream": stream,
           "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
           "max_tokens": 8,
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "What is the weather in Paris?"}],
           "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]})
}

fn chunks(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

#[tokio::test]
async fn a_chat_client_fails_over_to_a_responses_backend_streaming_and_not() {
    let h = start_yaml(RESPONSES).await;
    h.primary_always(status(529)).await;

    let r = post(&h, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.backend(), Some("resp-b"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "codex-chat");
    assert!(
        v["id"].as_str().unwrap().starts_with("chatcmpl-resp_"),
        "{v}"
    );
    assert_eq!(v["choices"][0]["message"]["content"], "Hello from fallback");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{v}");
    let sent = &request_log(&h, &h.fallback).await[0];
    assert_eq!(sent["path"], "/v1/responses");
    assert_eq!(sent["body"]["model"], "gpt-5-mini");
    assert_eq!(sent["body"]["instructions"], "Be brief.");
    assert_eq!(sent["body"]["store"], false);
    assert_eq!(
        sent["body"]["max_output_tokens"], 16,
        "raised to the minimum"
    );
    assert_eq!(sent["body"]["tools"][0]["name"], "get_weather");

    let r = post(&h, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.backend(), Some("resp-b"));
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(r.streamed_text(), "Hello from fallback");
    let c = chunks(&r.text);
    assert_eq!(c[0]["choices"][0]["delta"]["role"], "assistant");
    let finishes: Vec<&Value> = c
        .iter()
        .filter_map(|c| c.pointer("/choices/0/finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    assert!(
        c.last().unwrap()["usage"]["completion_tokens"]
            .as_u64()
            .is_some(),
        "include_usage honoured: {}",
        r.text
    );
    assert!(r.text.trim_end().ends_with("data: [DONE]"), "{}", r.text);
    assert!(!r.text.contains("event: "), "no Responses event names leak");
}

#[tokio::test]
async fn a_responses_function_call_comes_back_as_chat_tool_calls() {
    let h = start_yaml(RESPONSES).await;
    h.primary_always(ok().with(
        "tool_call",
        json!({"name": "get_weather", "arguments": {"city": "Paris"}}),
    ))
    .await;

    let v = post(&h, "/v1/chat/completions", &chat(false)).await.json();
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{v}");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    let r = post(&h, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = chunks(&r.text);
    let opened: Vec<&Value> = c
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
        .filter(|t| t.get("id").is_some())
        .collect();
    assert_eq!(opened.len(), 1, "{}", r.text);
    assert_eq!(opened[0]["function"]["name"], "get_weather");
    let args: String = c
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
    assert!(c
        .iter()
        .any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("tool_calls"))));

    // The tool's result goes back as a function_call_output answering the call.
    let mut next = chat(false);
    next["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": null, "tool_calls": [call]}),
        json!({"role": "tool", "tool_call_id": call["id"], "content": "18 °C, cloudy"}),
    ]);
    h.primary_always(ok()).await;
    let r = post(&h, "/v1/chat/completions", &next).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let log = request_log(&h, &h.primary).await;
    let input = &log.last().unwrap()["body"]["input"];
    assert_eq!(input[1]["type"], "function_call");
    assert_eq!(input[2]["type"], "function_call_output");
    assert_eq!(input[2]["call_id"], call["id"]);
}

/// A chain may mix `openai_responses` and `openai_chat` backends: each client dialect crosses
/// to whichever the failover lands on — a Responses client (Codex CLI) from a Responses primary
/// to a chat fallback, a chat client from a chat primary to a Responses fallback.
#[tokio::test]
async fn a_mixed_chain_fails_over_across_the_responses_and_chat_apis_both_ways() {
    let h = start_yaml(
        r#"
backends:
  resp-a: { api: openai_responses, base_url: "PRIMARY_URL/v1", api_key_env: PRIMARY_KEY }
  chat-a: { api: openai_chat, base_url: "PRIMARY_URL/v1", api_key_env: PRIMARY_KEY }
  resp-b: { api: openai_responses, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }
  chat-b: { api: openai_chat, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }
routes:
  codex: { chain: [ { backend: resp-a, model: gpt-5 }, { backend: chat-b, model: gpt-4o-mini } ] }
  app: { chain: [ { backend: chat-a, model: gpt-4o }, { backend: resp-b, model: gpt-5-mini } ] }
failover: { retries: 0, ttft_timeout: 2s }
health: { failure_threshold: { default: 1000, connection: 1000, timeout: 1000 } }
"#,
    )
    .await;
    h.primary_always(status(529)).await;
    for stream in [false, true] {
        let r = post(
            &h,
            "/v1/responses",
            &json!({"model": "codex", "stream": stream, "store": false, "input": "Say hello"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.backend(), Some("chat-b"));
        let text = if stream {
            r.text
                .split("\n\n")
                .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("data: ")))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter(|v| v["type"] == "response.output_text.delta")
                .map(|v| v["delta"].as_str().unwrap().to_string())
                .collect::<String>()
        } else {
            r.json()["output"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["type"] == "message")
                .map(|i| i["content"][0]["text"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(text, "Hello from fallback", "stream={stream}");

        let mut body = chat(stream);
        body["model"] = "app".into();
        let r = post(&h, "/v1/chat/completions", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.backend(), Some("resp-b"));
        let text = if stream {
            chunks(&r.text)
                .iter()
                .filter_map(|c| {
                    c["choices"][0]["delta"]["content"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect::<String>()
        } else {
            r.json()["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(text, "Hello from fallback", "stream={stream}");
        h.forget_health().await;
    }
}
