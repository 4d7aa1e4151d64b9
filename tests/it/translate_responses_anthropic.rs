//! Chains that mix the Responses API with Anthropic messages: a Responses client (Codex CLI's
//! own requests) failing over to an Anthropic backend, and an Anthropic client (Claude Code's
//! shape) failing over to a Responses backend — answers, streams, tool calls, the built-in
//! tools dropped on the way, and a failure after the first content byte.

use serde_json::{json, Value};

use crate::support::*;

const MIXED: &str = r#"
backends:
  resp-a: { api: openai_responses, base_url: "PRIMARY_URL/v1", api_key_env: PRIMARY_KEY }
  claude-a: { api: anthropic_messages, base_url: "PRIMARY_URL", api_key_env: PRIMARY_KEY }
  claude-b: { api: anthropic_messages, base_url: "FALLBACK_URL", api_key_env: FALLBACK_KEY }
  resp-b: { api: openai_responses, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }
routes:
  codex: { chain: [ { backend: resp-a, model: gpt-5 }, { backend: claude-b, model: claude-sonnet-4-5 } ] }
  claude: { chain: [ { backend: claude-a, model: claude-opus-4-1 }, { backend: resp-b, model: gpt-5-mini } ] }
failover: { retries: 0, ttft_timeout: 2s }
health: { failure_threshold: { default: 1000, connection: 1000, timeout: 1000 } }
"#;

/// (name, data) of each SSE event.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter_map(|b| {
            let name = b.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = b.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_string(), serde_json::from_str(data).ok()?))
        })
        .collect()
}

fn responses_text(stream: bool, r: &Reply) -> String {
    if stream {
        events(&r.text)
            .iter()
            .filter(|(n, _)| n == "response.output_text.delta")
            .map(|(_, v)| v["delta"].as_str().unwrap().to_string())
            .collect()
    } else {
        r.json()["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "message")
            .map(|i| i["content"][0]["text"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Codex CLI's real first turn (tools: functions, apply_patch, tool_search, a cached-only
/// web search), sent unchanged but for the route.
fn codex_turn(stream: bool) -> Value {
    let mut body = captured_request("codex/03_tool_loop_first").body;
    body["model"] = json!("codex");
    body["stream"] = json!(stream);
    body
}

#[tokio::test]
async fn a_responses_client_fails_over_to_an_anthropic_backend_streaming_and_not() {
    let h = start_yaml(MIXED).await;
    h.primary_always(status(529)).await;
    for stream in [false, true] {
        let r = post(&h, "/v1/responses", &codex_turn(stream)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.backend(), Some("claude-b"));
        assert_eq!(
            responses_text(stream, &r),
            "Hello from fallback",
            "stream={stream}"
        );
        assert_eq!(
            r.header("x-switchyard-dropped-tools"),
            Some("tool_search,web_search"),
            "the tools the Anthropic backend cannot run are named"
        );
        if stream {
            let names: Vec<String> = events(&r.text).into_iter().map(|(n, _)| n).collect();
            assert_eq!(names[..2], ["response.created", "response.in_progress"]);
            assert_eq!(names.last().unwrap(), "response.completed", "{names:?}");
        } else {
            let v = r.json();
            assert_eq!(v["object"], "response");
            assert_eq!(v["model"], "codex");
            assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{v}");
        }
        // The mock validated the request as the Messages API does; what it received:
        let sent = request_log(&h, &h.fallback).await.pop().unwrap();
        assert_eq!(sent["path"], "/v1/messages");
        assert_eq!(sent["body"]["model"], "claude-sonnet-4-5");
        let tools = sent["body"]["tools"].as_array().unwrap();
        assert!(tools.iter().all(|t| t.get("type").is_none()));
        assert!(
            tools.iter().any(|t| t["name"] == "apply_patch"),
            "the freeform apply_patch offered as a tool"
        );
        h.forget_health().await;
    }
}

#[tokio::test]
async fn an_anthropic_tool_call_reaches_a_responses_client_and_its_output_goes_back() {
    let h = start_yaml(MIXED).await;
    h.primary_always(status(529)).await;
    h.fallback_always(ok().with(
        "tool_call",
        json!({"name": "exec_command", "arguments": {"cmd": "ls"}}),
    ))
    .await;
    let r = post(&h, "/v1/responses", &codex_turn(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let call = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap_or_else(|| panic!("no function call: {v}"))
        .clone();
    assert_eq!(call["name"], "exec_command");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"cmd": "ls"})
    );

    let r = post(&h, "/v1/responses", &codex_turn(true)).await;
    let ev = events(&r.text);
    let args: String = ev
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"cmd": "ls"}),
        "{}",
        r.text
    );

    // Codex sends the call and its output back: tool_use / tool_result upstream.
    let mut next = codex_turn(false);
    next["input"].as_array_mut().unwrap().extend([
        json!({"type": "function_call", "call_id": call["call_id"], "name": "exec_command",
               "arguments": call["arguments"]}),
        json!({"type": "function_call_output", "call_id": call["call_id"], "output": "README.md"}),
    ]);
    h.fallback_always(ok()).await;
    let r = post(&h, "/v1/responses", &next).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = request_log(&h, &h.fallback).await.pop().unwrap();
    let messages = sent["body"]["messages"].as_array().unwrap();
    let result = &messages.last().unwrap()["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], call["call_id"]);
}

#[tokio::test]
async fn an_anthropic_client_fails_over_to_a_responses_backend_streaming_and_not() {
    let h = start_yaml(MIXED).await;
    h.primary_always(status(529)).await;
    for stream in [false, true] {
        let mut body = anthropic_body(stream);
        body["model"] = json!("claude");
        body["tools"] = json!([
            {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
            {"type": "bash_20250124", "name": "bash"}]);
        let r = post(&h, "/v1/messages", &body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.backend(), Some("resp-b"));
        assert_eq!(
            r.header("x-switchyard-dropped-tools"),
            Some("bash_20250124:bash")
        );
        if stream {
            assert_eq!(r.streamed_text(), "Hello from fallback");
            let names: Vec<String> = events(&r.text).into_iter().map(|(n, _)| n).collect();
            assert_eq!(names.first().map(String::as_str), Some("message_start"));
            assert_eq!(names.last().map(String::as_str), Some("message_stop"));
        } else {
            let v = r.json();
            assert_eq!(v["type"], "message");
            assert_eq!(v["content"][0]["text"], "Hello from fallback");
            assert_eq!(v["stop_reason"], "end_turn");
        }
        let sent = request_log(&h, &h.fallback).await.pop().unwrap();
        assert_eq!(sent["path"], "/v1/responses");
        let tools: Vec<&str> = sent["body"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        assert_eq!(tools, ["function", "web_search"], "the search carried over");
        h.forget_health().await;
    }
}

/// After the first content byte the answer cannot move: an Anthropic backend that dies
/// mid-stream ends the Responses client's stream with `error` and `response.failed`.
#[tokio::test]
async fn a_translated_stream_that_dies_after_content_ends_with_the_responses_error_events() {
    let h = start_yaml(MIXED).await;
    h.primary_always(status(529)).await;
    h.fallback_always(reset_after(4)).await;
    let r = post(&h, "/v1/responses", &codex_turn(true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ev = events(&r.text);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"response.output_text.delta"), "{names:?}");
    assert_eq!(
        names[names.len() - 2..],
        ["error", "response.failed"],
        "{names:?}"
    );
    let numbers: Vec<u64> = ev
        .iter()
        .map(|(_, v)| v["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..ev.len() as u64).collect::<Vec<_>>(),
        "one numbering to the end"
    );
}
