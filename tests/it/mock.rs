//! The mock over real sockets: each test starts one with [`spawn_mock`] and talks to it with
//! reqwest or hand-written HTTP/1.1, checking the shapes a real provider sends. No gateway is
//! involved: these tests pin down the oracle the rest of the suite trusts.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::mock_plan::{
    Behavior, EmptyFault, Plan, Reply, StallFault, StatusFault, ToolCall,
};
use crate::support::{eventually, spawn_mock, MockHandle, PROMPTLY};

fn anthropic_body(stream: bool) -> Value {
    json!({"model":"claude-test","max_tokens":64,"stream":stream,
           "messages":[{"role":"user","content":"Hi"}]})
}

fn openai_body(stream: bool) -> Value {
    json!({"model":"gpt-test","stream":stream,
           "messages":[{"role":"user","content":"Hi"}]})
}

async fn post(mock: &MockHandle, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{}", mock.url(), path))
        .json(body)
        .send()
        .await
        .expect("request")
}

/// SSE events as (event name, data) pairs.
fn parse_sse(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                } else if line.starts_with(':') {
                    data.push_str(line);
                }
            }
            (name, data)
        })
        .collect()
}

fn json_of(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|e| panic!("not JSON ({e}): {data}"))
}

/// Waits until the mock's stats show `key` at `want` (counters land as connections wind down).
async fn wait_for(mock: &MockHandle, key: &str, want: u64) {
    eventually(
        &format!("the mock's {key} reaches {want}"),
        PROMPTLY,
        || async { mock.stats()[key] == want },
    )
    .await;
}

/// Writes one HTTP/1.1 POST on a raw socket.
async fn raw_post(mock: &MockHandle, path: &str, body: &Value) -> TcpStream {
    let mut s = TcpStream::connect(mock.addr).await.expect("connect");
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    s
}

/// Reads until `needle` has been seen `times` times (or panics after [`PROMPTLY`]).
async fn read_until(s: &mut TcpStream, needle: &str, times: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PROMPTLY;
    while String::from_utf8_lossy(&got).matches(needle).count() < times {
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("timed out reading: {}", String::from_utf8_lossy(&got)))
            .expect("read");
        assert!(
            n > 0,
            "EOF before {needle:?} x{times}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn anthropic_events(text: &str) -> Vec<String> {
    parse_sse(text)
        .into_iter()
        .map(|(name, _)| name.unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn openai_ok_non_stream() {
    let mock = spawn_mock("alpha").await;
    let resp = post(&mock, "/v1/chat/completions", &openai_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers()["x-request-id"]
        .to_str()
        .is_ok_and(|v| v.starts_with("req_")));
    assert!(resp.headers().contains_key("openai-processing-ms"));
    let v: Value = resp.json().await.expect("json");
    assert!(v["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-test");
    assert_eq!(
        v["choices"][0],
        json!({"index":0,"message":{"role":"assistant","content":"Hello from alpha","refusal":null},
               "logprobs":null,"finish_reason":"stop"})
    );
    let usage = &v["usage"];
    assert!(usage["prompt_tokens"].as_u64() >= Some(1));
    assert_eq!(usage["completion_tokens"], 4);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + 4)
    );
}

#[tokio::test]
async fn anthropic_ok_non_stream_with_query() {
    let mock = spawn_mock("beta").await;
    let resp = post(&mock, "/v1/messages?beta=true", &anthropic_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["request-id"]
        .to_str()
        .is_ok_and(|v| v.starts_with("req_")));
    let v: Value = resp.json().await.expect("json");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-test");
    assert_eq!(
        v["content"],
        json!([{"type":"text","text":"Hello from beta"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    assert_eq!(v["usage"]["output_tokens"], 4);
    assert_eq!(mock.requests()[0]["query"], "beta=true");
}

#[tokio::test]
async fn openai_stream_sequence() {
    let mock = spawn_mock("alpha").await;
    let mut body = openai_body(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = post(&mock, "/v1/chat/completions", &body).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.expect("body");
    let events = parse_sse(&text);
    assert!(events.iter().all(|(name, _)| name.is_none()));
    assert_eq!(events.len(), 1 + 4 + 1 + 1 + 1, "{text}");
    let first = json_of(&events[0].1);
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["model"], "gpt-test");
    assert_eq!(
        first["choices"][0],
        json!({"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null})
    );
    let id = first["id"].clone();
    let mut joined = String::new();
    for (_, data) in &events[1..5] {
        let chunk = json_of(data);
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
        joined.push_str(
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .expect("content"),
        );
    }
    assert_eq!(joined, "Hello from alpha");
    let finish = json_of(&events[5].1);
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = json_of(&events[6].1);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    assert_eq!(events[7].1, "[DONE]");
}

#[tokio::test]
async fn openai_stream_without_usage_and_custom_chunks() {
    let mock = spawn_mock("alpha").await;
    mock.set_plan(Plan::always(Behavior::Ok(Reply {
        chunks: 7,
        ..Reply::default()
    })));
    let text = post(&mock, "/v1/chat/completions", &openai_body(true))
        .await
        .text()
        .await
        .expect("body");
    let events = parse_sse(&text);
    // role + 7 deltas + finish + [DONE]
    assert_eq!(events.len(), 10, "{text}");
    assert_eq!(events[9].1, "[DONE]");
}

#[tokio::test]
async fn anthropic_stream_sequence() {
    let mock = spawn_mock("beta").await;
    let resp = post(&mock, "/v1/messages", &anthropic_body(true)).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.expect("body");
    assert_eq!(
        anthropic_events(&text),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(text.contains("event: ping\ndata: {\"type\": \"ping\"}\n\n"));
    let events = parse_sse(&text);
    let start = json_of(&events[0].1);
    assert_eq!(start["type"], "message_start");
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["model"], "claude-test");
    assert_eq!(start["message"]["usage"]["output_tokens"], 1);
    assert!(start["message"]["usage"]["input_tokens"].as_u64() >= Some(1));
    assert_eq!(
        json_of(&events[1].1),
        json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}})
    );
    let joined: String = events[3..7]
        .iter()
        .map(|(_, d)| {
            let v = json_of(d);
            assert_eq!(v["delta"]["type"], "text_delta");
            v["delta"]["text"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(joined, "Hello from beta");
    assert_eq!(
        json_of(&events[8].1),
        json!({"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},
               "usage":{"output_tokens":4}})
    );
    assert_eq!(json_of(&events[9].1), json!({"type":"message_stop"}));
}

fn tool_plan() -> Plan {
    Plan::always(Behavior::Ok(Reply {
        tool_call: Some(ToolCall {
            name: "get_weather".into(),
            arguments: json!({"city":"Paris"}),
        }),
        thinking: Some("some reasoning".into()),
        ..Reply::default()
    }))
}

#[tokio::test]
async fn tool_call_and_thinking_anthropic() {
    let mock = spawn_mock("beta").await;
    mock.set_plan(tool_plan());
    let v: Value = post(&mock, "/v1/messages", &anthropic_body(false))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][0]["type"], "thinking");
    assert_eq!(v["content"][0]["thinking"], "some reasoning");
    assert!(v["content"][0]["signature"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert_eq!(v["content"][1]["type"], "tool_use");
    assert!(v["content"][1]["id"]
        .as_str()
        .is_some_and(|s| s.starts_with("toolu_")));
    assert_eq!(v["content"][1]["name"], "get_weather");
    assert_eq!(v["content"][1]["input"], json!({"city":"Paris"}));
    assert_eq!(v["content"].as_array().map(Vec::len), Some(2));

    let text = post(&mock, "/v1/messages", &anthropic_body(true))
        .await
        .text()
        .await
        .expect("body");
    let events = parse_sse(&text);
    let mut thinking = String::new();
    let mut partial = String::new();
    let mut signature = false;
    for (name, data) in &events {
        let v = json_of(data);
        assert_eq!(
            Some(v["type"].as_str().unwrap_or_default()),
            name.as_deref()
        );
        match v["delta"]["type"].as_str() {
            Some("thinking_delta") => {
                thinking.push_str(v["delta"]["thinking"].as_str().unwrap_or(""))
            }
            Some("signature_delta") => signature = true,
            Some("input_json_delta") => {
                assert_eq!(v["index"], 1);
                partial.push_str(v["delta"]["partial_json"].as_str().unwrap_or(""));
            }
            _ => {}
        }
    }
    assert_eq!(thinking, "some reasoning");
    assert!(signature);
    assert_eq!(json_of(&partial), json!({"city":"Paris"}));
    let names = anthropic_events(&text);
    assert_eq!(
        &names[..3],
        ["message_start", "content_block_start", "ping"]
    );
    let tool_start = events
        .iter()
        .map(|(_, d)| json_of(d))
        .find(|v| v["content_block"]["type"] == "tool_use")
        .expect("tool_use start");
    assert_eq!(tool_start["content_block"]["input"], json!({}));
    assert_eq!(tool_start["content_block"]["name"], "get_weather");
    let delta = json_of(&events[events.len() - 2].1);
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn tool_call_and_thinking_openai() {
    let mock = spawn_mock("alpha").await;
    mock.set_plan(tool_plan());
    let v: Value = post(&mock, "/v1/chat/completions", &openai_body(false))
        .await
        .json()
        .await
        .expect("json");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    assert_eq!(choice["message"]["reasoning_content"], "some reasoning");
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().is_some_and(|s| s.starts_with("call_")));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args = call["function"]["arguments"]
        .as_str()
        .expect("string arguments");
    assert_eq!(json_of(args), json!({"city":"Paris"}));

    let text = post(&mock, "/v1/chat/completions", &openai_body(true))
        .await
        .text()
        .await
        .expect("body");
    let mut reasoning = String::new();
    let mut args = String::new();
    let mut first_tool = None;
    let mut finish = None;
    for (_, data) in parse_sse(&text) {
        if data == "[DONE]" {
            continue;
        }
        let v = json_of(&data);
        let delta = &v["choices"][0]["delta"];
        reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
        if let Some(call) = delta["tool_calls"].get(0) {
            assert_eq!(call["index"], 0);
            if first_tool.is_none() {
                first_tool = Some(call.clone());
            }
            args.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(reasoning, "some reasoning");
    let first_tool = first_tool.expect("tool delta");
    assert_eq!(first_tool["function"]["name"], "get_weather");
    assert_eq!(first_tool["function"]["arguments"], "");
    assert_eq!(first_tool["type"], "function");
    assert_eq!(json_of(&args), json!({"city":"Paris"}));
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn status_bodies_fit_the_dialect() {
    let mock = spawn_mock("alpha").await;
    let plan: Plan = serde_json::from_value(json!({"steps":[
        {"kind":"status","status":529,"headers":{"retry-after":"2"}},
        {"kind":"status","status":429},
        {"kind":"status","status":503},
        {"kind":"status","status":502,"body":"<html>bad gateway</html>"},
        {"kind":"status","status":500,"body":{"custom":true}}
    ]}))
    .expect("plan");
    mock.set_plan(plan);

    let resp = post(&mock, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(resp.headers()["retry-after"], "2");
    let header_id = resp.headers()["request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(
        v["error"],
        json!({"type":"overloaded_error","message":"Overloaded"})
    );
    assert_eq!(v["request_id"], header_id.as_str());

    let resp = post(&mock, "/v1/chat/completions", &openai_body(false)).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "requests");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["param"], Value::Null);

    let v: Value = post(&mock, "/v1/chat/completions", &openai_body(false))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        v,
        json!({"error":{"message":"The server is overloaded or not ready yet.","type":"server_error"}})
    );

    let resp = post(&mock, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.text().await.expect("text"), "<html>bad gateway</html>");

    let resp = post(&mock, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"custom":true})
    );

    // Plan exhausted: back to ok.
    assert_eq!(
        post(&mock, "/v1/messages", &anthropic_body(false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn anthropic_status_types() {
    let mock = spawn_mock("beta").await;
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (504, "timeout_error"),
    ] {
        mock.set_plan(Plan::always(Behavior::Status(StatusFault {
            status,
            headers: Default::default(),
            body: None,
            delay_ms: 0,
            provider: None,
            error: None,
        })));
        let resp = post(&mock, "/v1/messages", &anthropic_body(false)).await;
        assert_eq!(resp.status(), status);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["type"], kind, "{status}");
        assert!(v["request_id"]
            .as_str()
            .is_some_and(|s| s.starts_with("req_")));
    }
}

#[tokio::test]
async fn validation_errors() {
    let mock = spawn_mock("alpha").await;
    let resp = post(
        &mock,
        "/v1/messages",
        &json!({"model":"m","messages":[{"role":"user","content":"x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["type"], "error");
    assert_eq!(
        v["error"],
        json!({"type":"invalid_request_error","message":"max_tokens: Field required"})
    );
    assert!(v["request_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("req_")));

    let resp = post(&mock, "/v1/chat/completions", &json!({"model":"m"})).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"error":{"message":"Missing required parameter: 'messages'.",
               "type":"invalid_request_error","param":"messages","code":"missing_required_parameter"}})
    );

    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v1/chat/completions", mock.url()))
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("We could not parse the JSON body")));
    let resp = client
        .post(format!("{}/v1/messages", mock.url()))
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("The request body is not valid JSON")));

    // Invalid requests do not consume plan steps.
    mock.set_plan(Plan {
        steps: vec![Behavior::Empty(EmptyFault::default())],
        then: None,
    });
    assert_eq!(
        post(&mock, "/v1/chat/completions", &json!({"model":"m"}))
            .await
            .status(),
        400
    );
    let resp = post(&mock, "/v1/chat/completions", &openai_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("body").len(), 0);
}

#[tokio::test]
async fn plan_steps_then_across_endpoints() {
    let mock = spawn_mock("alpha").await;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/_mock/plan", mock.url()))
        .json(
            &json!({"steps":[{"kind":"status","status":500},{"kind":"status","status":503}],
                      "then":{"kind":"ok","text":"later"}}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        post(&mock, "/v1/messages", &anthropic_body(false))
            .await
            .status(),
        500
    );
    assert_eq!(
        post(&mock, "/v1/chat/completions", &openai_body(false))
            .await
            .status(),
        503
    );
    for _ in 0..2 {
        let v: Value = post(&mock, "/v1/messages", &anthropic_body(false))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(v["content"][0]["text"], "later");
    }
}

#[tokio::test]
async fn bad_plan_is_a_clear_400() {
    let mock = spawn_mock("alpha").await;
    let client = reqwest::Client::new();
    for (plan, needle) in [
        (json!({"steps":[{"kind":"ok","dleay_ms":5}]}), "dleay_ms"),
        (json!({"steps":[{"kind":"explode"}]}), "explode"),
        (json!({"then":{"kind":"status","status":42}}), "status 42"),
        (json!({"then":{"kind":"status"}}), "status"),
    ] {
        let resp = client
            .post(format!("{}/_mock/plan", mock.url()))
            .json(&plan)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "{plan}");
        let v: Value = resp.json().await.expect("json");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{msg}");
    }
}

#[tokio::test]
async fn stats_requests_and_reset() {
    let mock = spawn_mock("alpha").await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}/v1/messages?beta=true", mock.url()))
        .header("X-Api-Key", "secret")
        .json(&anthropic_body(false))
        .send()
        .await
        .expect("send");
    post(&mock, "/v1/chat/completions", &openai_body(false)).await;
    post(&mock, "/v1/chat/completions", &openai_body(false)).await;
    let resp = client
        .get(format!("{}/v1/models", mock.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["message"], "Invalid URL (GET /v1/models)");
    assert_eq!(v["error"]["type"], "invalid_request_error");

    wait_for(&mock, "completed", 4).await;
    let stats: Value = client
        .get(format!("{}/_mock/stats", mock.url()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(stats, mock.stats());
    assert_eq!(stats["requests"], 4);
    assert_eq!(
        stats["by_path"],
        json!({"/v1/messages":1,"/v1/chat/completions":2,"/v1/models":1})
    );
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["cancelled"], 0);

    let log: Value = client
        .get(format!("{}/_mock/requests", mock.url()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(log, Value::Array(mock.requests()));
    assert_eq!(log.as_array().map(Vec::len), Some(4));
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["path"], "/v1/messages");
    assert_eq!(log[0]["query"], "beta=true");
    assert_eq!(log[0]["headers"]["x-api-key"], "secret");
    assert_eq!(log[0]["body"], anthropic_body(false));
    assert_eq!(log[1]["query"], Value::Null);

    let resp = client
        .post(format!("{}/_mock/reset", mock.url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        mock.stats(),
        json!({"requests":0,"by_path":{},"in_flight":0,"completed":0,"cancelled":0})
    );
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn request_log_keeps_last_hundred() {
    let mock = spawn_mock("alpha").await;
    let client = reqwest::Client::new();
    for i in 0..105 {
        client
            .post(format!("{}/v1/chat/completions?i={i}", mock.url()))
            .json(&openai_body(false))
            .send()
            .await
            .expect("send");
    }
    let log = mock.requests();
    assert_eq!(log.len(), 100);
    assert_eq!(log[0]["query"], "i=5");
    assert_eq!(log[99]["query"], "i=104");
    assert_eq!(mock.stats()["requests"], 105);
}

#[tokio::test]
async fn stall_sends_heartbeats_then_counts_cancel() {
    let mock = spawn_mock("alpha").await;
    let plan: Plan =
        serde_json::from_value(json!({"then":{"kind":"stall","after_chunks":1,"heartbeat_ms":20}}))
            .expect("plan");
    mock.set_plan(plan);

    let mut s = raw_post(&mock, "/v1/chat/completions", &openai_body(true)).await;
    let got = read_until(&mut s, ": keep-alive\n\n", 2).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.contains("\"role\":\"assistant\""));
    assert_eq!(got.matches("\"content\":\"Hell\"").count(), 1, "{got}");
    assert!(!got.contains("finish_reason\":\"stop"));
    assert_eq!(mock.stats()["in_flight"], 1);
    drop(s);
    wait_for(&mock, "cancelled", 1).await;
    wait_for(&mock, "in_flight", 0).await;

    let mut s = raw_post(&mock, "/v1/messages", &anthropic_body(true)).await;
    let got = read_until(&mut s, "event: ping", 3).await;
    assert!(got.contains("event: message_start"));
    assert_eq!(got.matches("event: content_block_delta").count(), 1);
    drop(s);
    wait_for(&mock, "cancelled", 2).await;
}

#[tokio::test]
async fn stall_without_headers_holds_silently() {
    let mock = spawn_mock("alpha").await;
    mock.set_plan(Plan::always(Behavior::Stall(StallFault {
        after_chunks: 0,
        heartbeat_ms: 10,
        headers: false,
        delay_ms: 0,
        chunks: None,
        chunk_interval_ms: 0,
        text: None,
    })));
    let mut s = raw_post(&mock, "/v1/messages", &anthropic_body(true)).await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await;
    assert!(read.is_err(), "expected silence, got {read:?}");
    wait_for(&mock, "in_flight", 1).await;
    drop(s);
    wait_for(&mock, "cancelled", 1).await;
    wait_for(&mock, "in_flight", 0).await;
}

#[tokio::test]
async fn reset_mid_stream_and_before_response() {
    let mock = spawn_mock("alpha").await;
    let plan: Plan = serde_json::from_value(json!({"steps":[
        {"kind":"reset","after_chunks":2},
        {"kind":"reset"}
    ]}))
    .expect("plan");
    mock.set_plan(plan);

    let mut s = raw_post(&mock, "/v1/messages", &anthropic_body(true)).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let err = loop {
        match tokio::time::timeout(PROMPTLY, s.read(&mut buf))
            .await
            .expect("no reset in time")
        {
            Ok(0) => panic!("clean EOF instead of RST"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let got = String::from_utf8_lossy(&got);
    assert_eq!(
        got.matches("event: content_block_delta").count(),
        2,
        "{got}"
    );
    assert!(!got.contains("message_stop"));

    let mut s = raw_post(&mock, "/v1/chat/completions", &openai_body(false)).await;
    let r = tokio::time::timeout(PROMPTLY, s.read(&mut buf))
        .await
        .expect("no reset in time");
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    // Deliberate resets are the mock doing its job, not client cancellations.
    wait_for(&mock, "completed", 2).await;
    assert_eq!(mock.stats()["cancelled"], 0);

    // The server is fine afterwards.
    assert_eq!(
        post(&mock, "/v1/messages", &anthropic_body(false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn client_disconnect_counts_cancelled() {
    let mock = spawn_mock("alpha").await;
    mock.set_plan(Plan::always(Behavior::Ok(Reply {
        chunk_interval_ms: 200,
        ..Reply::default()
    })));
    let mut resp = post(&mock, "/v1/chat/completions", &openai_body(true)).await;
    let first = resp.chunk().await.expect("chunk");
    assert!(first.is_some());
    drop(resp);
    wait_for(&mock, "cancelled", 1).await;
    assert_eq!(mock.stats()["completed"], 0);

    // Leaving during delay_ms (before headers) counts too.
    mock.set_plan(Plan::always(Behavior::Ok(Reply {
        delay_ms: 5_000,
        ..Reply::default()
    })));
    let s = raw_post(&mock, "/v1/messages", &anthropic_body(false)).await;
    wait_for(&mock, "in_flight", 1).await;
    drop(s);
    wait_for(&mock, "cancelled", 2).await;
}

#[tokio::test]
async fn stream_error_in_both_dialects() {
    let mock = spawn_mock("alpha").await;
    let plan: Plan = serde_json::from_value(json!({"then":
        {"kind":"stream_error","after_chunks":1,"error_type":"overloaded_error"}}))
    .expect("plan");
    mock.set_plan(plan);

    let resp = post(&mock, "/v1/messages", &anthropic_body(true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert_eq!(
        anthropic_events(&text),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "error"
        ]
    );
    assert!(text.ends_with(
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"
    ));

    let text = post(&mock, "/v1/chat/completions", &openai_body(true))
        .await
        .text()
        .await
        .expect("body");
    let events = parse_sse(&text);
    assert_eq!(events.len(), 3, "{text}");
    let err = json_of(&events[2].1);
    assert_eq!(err["error"]["type"], "server_error");
    assert!(err["error"]["message"].is_string());

    // Non-streaming: the matching status error.
    let resp = post(&mock, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(resp.status(), 529);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn malformed_empty_and_trickle() {
    let mock = spawn_mock("gamma").await;
    let plan: Plan = serde_json::from_value(json!({"steps":[
        {"kind":"malformed"},
        {"kind":"malformed"},
        {"kind":"empty"},
        {"kind":"trickle","chunk_interval_ms":1},
        {"kind":"trickle","chunk_interval_ms":0}
    ]}))
    .expect("plan");
    mock.set_plan(plan);

    let resp = post(&mock, "/v1/chat/completions", &openai_body(false)).await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    let text = post(&mock, "/v1/messages", &anthropic_body(true))
        .await
        .text()
        .await
        .expect("body");
    let events = parse_sse(&text);
    assert!(!events.is_empty());
    assert!(events
        .iter()
        .all(|(_, d)| serde_json::from_str::<Value>(d).is_err()));

    let resp = post(&mock, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.expect("body").is_empty());

    // Trickle (streaming): many tiny reads that reassemble into a normal stream.
    let mut resp = post(&mock, "/v1/messages", &anthropic_body(true)).await;
    let mut bytes = Vec::new();
    let mut reads = 0;
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        reads += 1;
        bytes.extend_from_slice(&chunk);
    }
    assert!(reads > 50, "only {reads} reads");
    let text = String::from_utf8(bytes).expect("utf-8 once reassembled");
    assert_eq!(anthropic_events(&text).len(), 10);
    let joined: String = parse_sse(&text)
        .iter()
        .filter_map(|(_, d)| json_of(d)["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(joined, "Hello from gamma — ok");

    // Trickle (non-streaming) keeps a valid JSON body with content-length.
    let resp = post(&mock, "/v1/chat/completions", &openai_body(false)).await;
    assert!(resp.headers().contains_key("content-length"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from gamma — ok"
    );
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let mock = spawn_mock("alpha").await;
    let body = openai_body(false).to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(mock.addr).await.expect("connect");
    for _ in 0..3 {
        s.write_all(req.as_bytes()).await.expect("write");
        let got = read_until(&mut s, "Hello from alpha", 1).await;
        assert!(got.contains("HTTP/1.1 200"));
    }
    assert_eq!(mock.stats()["requests"], 3);
}

#[tokio::test]
async fn delay_and_chunk_interval() {
    let mock = spawn_mock("alpha").await;
    mock.set_plan(Plan::always(Behavior::Ok(Reply {
        delay_ms: 60,
        chunk_interval_ms: 20,
        ..Reply::default()
    })));
    let t = Instant::now();
    let resp = post(&mock, "/v1/messages", &anthropic_body(true)).await;
    assert!(t.elapsed() >= Duration::from_millis(60));
    resp.text().await.expect("body");
    // 4 deltas, 3 gaps of 20 ms.
    assert!(t.elapsed() >= Duration::from_millis(120));
}

#[tokio::test]
async fn unknown_control_path_and_dropped_handle() {
    let mock = spawn_mock("alpha").await;
    let resp = reqwest::get(format!("{}/_mock/nope", mock.url()))
        .await
        .expect("send");
    assert_eq!(resp.status(), 404);
    assert_eq!(mock.stats()["requests"], 0);
    let addr = mock.addr;
    drop(mock);
    eventually(
        "the dropped mock's port refuses connections",
        PROMPTLY,
        || async { TcpStream::connect(addr).await.is_err() },
    )
    .await;
}

/// Rough per-request cost of a plain `ok` over one keep-alive connection.
/// Run: cargo test --release --test it mock::throughput -- --ignored --nocapture
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn throughput() {
    let mock = spawn_mock("alpha").await;
    for (path, body) in [
        ("/v1/chat/completions", openai_body(false)),
        ("/v1/messages", anthropic_body(false)),
        ("/v1/messages", anthropic_body(true)),
    ] {
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nhost: mock\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut s = TcpStream::connect(mock.addr).await.expect("connect");
        let n = 20_000;
        let mut buf = vec![0u8; 16 * 1024];
        let t = Instant::now();
        for _ in 0..n {
            s.write_all(req.as_bytes()).await.expect("write");
            // Each reply ends with "}" (JSON) or the last chunk of chunked encoding (SSE).
            loop {
                let k = s.read(&mut buf).await.expect("read");
                assert!(k > 0);
                if buf[..k].ends_with(b"}") || buf[..k].ends_with(b"\r\n0\r\n\r\n") {
                    break;
                }
            }
        }
        let per = t.elapsed() / n;
        println!(
            "{path} stream={}: {per:?} per request (round trip)",
            body.contains("true")
        );
    }
}

// --- OpenAI Responses API (`POST /v1/responses`) ---

fn responses_body(stream: bool) -> Value {
    json!({"model":"gpt-test","stream":stream,"input":"Hi"})
}

/// The body of a captured Codex CLI request (`tests/it/fixtures/agents/codex/{name}.json`).
fn codex_body(name: &str) -> Value {
    let path = format!(
        "{}/tests/it/fixtures/agents/codex/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    json_of(&text)["body"].clone()
}

/// Checks a Responses stream is a valid event sequence and returns its (name, data) events:
/// every event named, its data's `type` the same name, `sequence_number` counting from 0,
/// one response id throughout, no `[DONE]`.
fn responses_events(text: &str) -> Vec<(String, Value)> {
    let events: Vec<(String, Value)> = parse_sse(text)
        .into_iter()
        .enumerate()
        .map(|(i, (name, data))| {
            let name = name.unwrap_or_else(|| panic!("unnamed event {data} in {text}"));
            let v = json_of(&data);
            assert_eq!(v["type"], name.as_str(), "{text}");
            assert_eq!(v["sequence_number"], i, "{text}");
            (name, v)
        })
        .collect();
    assert!(!text.contains("[DONE]"));
    assert_eq!(events[0].0, "response.created", "{text}");
    assert_eq!(events[1].0, "response.in_progress", "{text}");
    let id = &events[0].1["response"]["id"];
    assert!(id.as_str().is_some_and(|s| s.starts_with("resp_")), "{id}");
    for (_, v) in &events {
        if let Some(r) = v.get("response") {
            assert_eq!(&r["id"], id);
        }
    }
    events
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// The streamed text deltas, joined.
fn streamed_text(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, v)| v["delta"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn responses_replay_codex_requests() {
    let mock = spawn_mock("alpha").await;
    for name in ["01_exec_main", "04_tool_loop_function_output"] {
        let body = codex_body(name);
        let resp = post(&mock, "/v1/responses", &body).await;
        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        assert!(resp.headers()["x-request-id"]
            .to_str()
            .is_ok_and(|v| v.starts_with("req_")));
        let text = resp.text().await.expect("body");
        let events = responses_events(&text);
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ],
            "{name}"
        );
        assert_eq!(streamed_text(&events), "Hello from alpha");
        let item = &events[2].1["item"];
        assert_eq!(item["type"], "message");
        assert_eq!(item["status"], "in_progress");
        assert_eq!(item["content"], json!([]));
        assert_eq!(
            events[3].1["part"],
            json!({"type":"output_text","annotations":[],"logprobs":[],"text":""})
        );
        for (_, v) in &events[4..10] {
            assert_eq!(v["item_id"], item["id"]);
            assert_eq!(v["output_index"], 0);
        }
        let done = &events[11].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["model"], "gpt-5.5");
        assert_eq!(done["store"], false);
        assert_eq!(done["tools"], body["tools"]);
        assert_eq!(done["prompt_cache_key"], body["prompt_cache_key"]);
        assert_eq!(done["output"][0], events[10].1["item"]);
        assert_eq!(done["usage"]["output_tokens"], 4);
        assert!(done["usage"]["input_tokens"].as_u64() > Some(1000));
    }
    // The same API without the /v1 prefix.
    let resp = post(&mock, "/responses", &codex_body("01_exec_main")).await;
    assert_eq!(resp.status(), 200);
    responses_events(&resp.text().await.expect("body"));
    assert_eq!(
        mock.stats()["by_path"],
        json!({"/v1/responses":2,"/responses":1})
    );
}

#[tokio::test]
async fn responses_ok_non_stream() {
    let mock = spawn_mock("alpha").await;
    let mut body = responses_body(false);
    body["instructions"] = json!("be brief");
    body["metadata"] = json!({"k":"v"});
    let resp = post(&mock, "/v1/responses", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().contains_key("openai-processing-ms"));
    let v: Value = resp.json().await.expect("json");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("resp_")));
    assert_eq!(v["object"], "response");
    assert!(v["created_at"].as_u64() > Some(1_700_000_000));
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-test");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["incomplete_details"], Value::Null);
    assert_eq!(v["instructions"], "be brief");
    assert_eq!(v["metadata"], json!({"k":"v"}));
    assert_eq!(v["parallel_tool_calls"], true);
    assert_eq!(v["tool_choice"], "auto");
    assert_eq!(v["tools"], json!([]));
    assert_eq!(v["temperature"], 1.0);
    assert_eq!(v["top_p"], 1.0);
    assert_eq!(v["truncation"], "disabled");
    assert_eq!(v["text"]["format"], json!({"type":"text"}));
    let output = v["output"].as_array().expect("output");
    assert_eq!(output.len(), 1);
    assert!(output[0]["id"]
        .as_str()
        .is_some_and(|s| s.starts_with("msg_")));
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[0]["status"], "completed");
    assert_eq!(output[0]["role"], "assistant");
    assert_eq!(
        output[0]["content"],
        json!([{"type":"output_text","annotations":[],"logprobs":[],"text":"Hello from alpha"}])
    );
    let usage = &v["usage"];
    assert!(usage["input_tokens"].as_u64() >= Some(1));
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens"], 4);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["input_tokens"].as_u64().unwrap_or(0) + 4)
    );
}

#[tokio::test]
async fn responses_tool_call_and_reasoning() {
    let mock = spawn_mock("alpha").await;
    mock.set_plan(tool_plan());
    let mut body = responses_body(false);
    body["include"] = json!(["reasoning.encrypted_content"]);
    let v: Value = post(&mock, "/v1/responses", &body)
        .await
        .json()
        .await
        .expect("json");
    let output = v["output"].as_array().expect("output");
    assert_eq!(output.len(), 2, "{v}");
    assert_eq!(output[0]["type"], "reasoning");
    assert!(output[0]["id"]
        .as_str()
        .is_some_and(|s| s.starts_with("rs_")));
    assert_eq!(
        output[0]["summary"],
        json!([{"type":"summary_text","text":"some reasoning"}])
    );
    assert!(output[0]["encrypted_content"].is_string());
    let call = &output[1];
    assert_eq!(call["type"], "function_call");
    assert!(call["id"].as_str().is_some_and(|s| s.starts_with("fc_")));
    assert!(call["call_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("call_")));
    assert_eq!(call["name"], "get_weather");
    assert_eq!(call["status"], "completed");
    assert_eq!(
        json_of(call["arguments"].as_str().expect("string arguments")),
        json!({"city":"Paris"})
    );
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 4);

    let text = post(&mock, "/v1/responses", &responses_body(true))
        .await
        .text()
        .await
        .expect("body");
    let events = responses_events(&text);
    let n = names(&events);
    assert_eq!(
        &n[2..5],
        [
            "response.output_item.added",
            "response.reasoning_summary_part.added",
            "response.reasoning_summary_text.delta"
        ]
    );
    assert!(!n.contains(&"response.output_text.delta"));
    let mut summary = String::new();
    let mut args = String::new();
    for (name, v) in &events {
        match name.as_str() {
            "response.reasoning_summary_text.delta" => {
                assert_eq!(v["output_index"], 0);
                summary.push_str(v["delta"].as_str().unwrap_or(""));
            }
            "response.function_call_arguments.delta" => {
                assert_eq!(v["output_index"], 1);
                args.push_str(v["delta"].as_str().unwrap_or(""));
            }
            _ => {}
        }
    }
    assert_eq!(summary, "some reasoning");
    assert_eq!(json_of(&args), json!({"city":"Paris"}));
    let added = events
        .iter()
        .find(|(n, v)| n == "response.output_item.added" && v["item"]["type"] == "function_call")
        .map(|(_, v)| v["item"].clone())
        .expect("function_call added");
    assert_eq!(added["arguments"], "");
    assert_eq!(added["status"], "in_progress");
    assert_eq!(added["name"], "get_weather");
    let args_done = events
        .iter()
        .find(|(n, _)| n == "response.function_call_arguments.done")
        .map(|(_, v)| v.clone())
        .expect("arguments done");
    assert_eq!(args_done["item_id"], added["id"]);
    assert_eq!(
        json_of(args_done["arguments"].as_str().unwrap_or("")),
        json!({"city":"Paris"})
    );
    let completed = &events.last().expect("completed").1;
    assert_eq!(completed["type"], "response.completed");
    assert_eq!(
        completed["response"]["output"][1]["call_id"],
        added["call_id"]
    );
    // No encrypted reasoning when `include` does not ask for it.
    assert!(completed["response"]["output"][0]
        .get("encrypted_content")
        .is_none());
}

#[tokio::test]
async fn responses_status_and_stream_error() {
    let mock = spawn_mock("alpha").await;
    let plan: Plan = serde_json::from_value(json!({"steps":[
        {"kind":"status","status":429},
        {"kind":"status","status":401},
        {"kind":"status","status":500},
        {"kind":"status","status":503},
        {"kind":"status","status":429,"body":{"error":{"message":"quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}},
        {"kind":"stream_error","after_chunks":2,"error_type":"rate_limit_error"},
        {"kind":"stream_error","error_type":"insufficient_quota"},
        {"kind":"stream_error","after_chunks":0,"error_type":"overloaded_error","message":"busy"}
    ]}))
    .expect("plan");
    mock.set_plan(plan);
    for (status, kind, code) in [
        (429, "requests", Some("rate_limit_exceeded")),
        (401, "invalid_request_error", Some("invalid_api_key")),
        (500, "server_error", None),
        (503, "server_error", None),
    ] {
        let resp = post(&mock, "/v1/responses", &responses_body(true)).await;
        assert_eq!(resp.status(), status);
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["type"], kind, "{status}");
        assert_eq!(v["error"]["code"].as_str(), code, "{status}");
        assert!(v["error"]["message"].is_string());
    }
    let resp = post(&mock, "/v1/responses", &responses_body(false)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"]["code"],
        "insufficient_quota"
    );

    // In a stream: response.failed after two deltas, numbered after them.
    let resp = post(&mock, "/v1/responses", &responses_body(true)).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    let events = responses_events(&text);
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.failed"
        ]
    );
    let failed = &events[6].1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "rate_limit_exceeded");
    assert!(failed["error"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("Rate limit reached for gpt-test")));

    // Not streaming: the matching status error, insufficient_quota's own body.
    let resp = post(&mock, "/v1/responses", &responses_body(false)).await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["type"], "insufficient_quota");
    assert_eq!(v["error"]["code"], "insufficient_quota");

    let text = post(&mock, "/v1/responses", &responses_body(true))
        .await
        .text()
        .await
        .expect("body");
    let events = responses_events(&text);
    assert_eq!(events.len(), 5, "{text}");
    assert_eq!(
        events[4].1["response"]["error"],
        json!({"code":"server_is_overloaded","message":"busy"})
    );
}

#[tokio::test]
async fn responses_stall_reset_and_cancel() {
    let mock = spawn_mock("alpha").await;
    let plan: Plan = serde_json::from_value(json!({"steps":[
        {"kind":"stall","after_chunks":1,"heartbeat_ms":20},
        {"kind":"reset","after_chunks":2},
        {"kind":"ok","chunk_interval_ms":200}
    ]}))
    .expect("plan");
    mock.set_plan(plan);

    let mut s = raw_post(&mock, "/v1/responses", &responses_body(true)).await;
    let got = read_until(&mut s, ": keep-alive\n\n", 2).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(got.matches("event: response.output_text.delta").count(), 1);
    assert!(!got.contains("response.completed"));
    drop(s);
    wait_for(&mock, "cancelled", 1).await;

    let mut s = raw_post(&mock, "/v1/responses", &responses_body(true)).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let err = loop {
        match tokio::time::timeout(PROMPTLY, s.read(&mut buf))
            .await
            .expect("no reset in time")
        {
            Ok(0) => panic!("clean EOF instead of RST"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let got = String::from_utf8_lossy(&got);
    assert_eq!(got.matches("event: response.output_text.delta").count(), 2);
    assert!(!got.contains("response.completed"));

    // A client leaving mid-stream counts as cancelled.
    let mut resp = post(&mock, "/v1/responses", &responses_body(true)).await;
    assert!(resp.chunk().await.expect("chunk").is_some());
    drop(resp);
    wait_for(&mock, "cancelled", 2).await;
    assert_eq!(mock.stats()["by_path"], json!({"/v1/responses":3}));
}

#[tokio::test]
async fn responses_malformed_empty_trickle() {
    let mock = spawn_mock("gamma").await;
    let plan: Plan = serde_json::from_value(json!({"steps":[
        {"kind":"malformed"},
        {"kind":"malformed"},
        {"kind":"empty"},
        {"kind":"trickle","chunk_interval_ms":0},
        {"kind":"trickle","chunk_interval_ms":0}
    ]}))
    .expect("plan");
    mock.set_plan(plan);

    let resp = post(&mock, "/v1/responses", &responses_body(false)).await;
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.expect("body");
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert!(body.starts_with(b"{\"id\":\"resp_"));

    let text = post(&mock, "/v1/responses", &responses_body(true))
        .await
        .text()
        .await
        .expect("body");
    let events = parse_sse(&text);
    assert!(!events.is_empty());
    assert!(events
        .iter()
        .all(|(name, d)| name.is_some() && serde_json::from_str::<Value>(d).is_err()));

    let resp = post(&mock, "/v1/responses", &responses_body(true)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.expect("body").is_empty());

    let mut resp = post(&mock, "/v1/responses", &responses_body(true)).await;
    let mut bytes = Vec::new();
    let mut reads = 0;
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        reads += 1;
        bytes.extend_from_slice(&chunk);
    }
    assert!(reads > 50, "only {reads} reads");
    let text = String::from_utf8(bytes).expect("utf-8 once reassembled");
    assert_eq!(
        streamed_text(&responses_events(&text)),
        "Hello from gamma — ok"
    );

    let resp = post(&mock, "/v1/responses", &responses_body(false)).await;
    assert!(resp.headers().contains_key("content-length"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "Hello from gamma — ok"
    );
}

#[tokio::test]
async fn responses_validation_errors() {
    let mock = spawn_mock("alpha").await;
    // Invalid requests do not consume plan steps.
    mock.set_plan(Plan {
        steps: vec![Behavior::Empty(EmptyFault::default())],
        then: None,
    });
    let mut orphan = codex_body("04_tool_loop_function_output");
    let input = orphan["input"].as_array_mut().expect("input");
    input.retain(|item| item["type"] != "function_call");
    let call_id = input.last().expect("output item")["call_id"]
        .as_str()
        .expect("call_id")
        .to_owned();
    for (body, message, param, code) in [
        (
            json!({"input":"x"}),
            "Missing required parameter: 'model'.".to_owned(),
            json!("model"),
            json!("missing_required_parameter"),
        ),
        (
            json!({"model":"m","input":{"role":"user"}}),
            "Invalid type for 'input': expected one of a string or array of objects, but got an \
             object instead."
                .to_owned(),
            json!("input"),
            json!("invalid_type"),
        ),
        (
            json!({"model":"m","input":"x","previous_response_id":"resp_abc"}),
            "Previous response with id 'resp_abc' not found.".to_owned(),
            json!("previous_response_id"),
            json!("previous_response_not_found"),
        ),
        (
            json!({"model":"m","input":"x","max_output_tokens":8}),
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, \
             but got 8 instead."
                .to_owned(),
            json!("max_output_tokens"),
            json!("integer_below_min_value"),
        ),
        (
            json!({"model":"m","input":"x","max_tokens":100}),
            "Unknown parameter: 'max_tokens'.".to_owned(),
            json!("max_tokens"),
            json!("unknown_parameter"),
        ),
        (
            orphan,
            format!("No tool call found for function call output with call_id {call_id}."),
            json!("input"),
            Value::Null,
        ),
    ] {
        let resp = post(&mock, "/v1/responses", &body).await;
        assert_eq!(resp.status(), 400, "{message}");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(
            v,
            json!({"error":{"message":message,"type":"invalid_request_error","param":param,"code":code}})
        );
    }
    let resp = post(
        &mock,
        "/v1/responses",
        &json!({"model":"m","input":[{"type":"chat_message","content":"x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["error"]["param"], "input[0].type");
    assert_eq!(v["error"]["code"], "invalid_value");

    let resp = reqwest::Client::new()
        .post(format!("{}/v1/responses", mock.url()))
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.expect("json");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("We could not parse the JSON body")));

    let resp = post(&mock, "/v1/responses", &responses_body(false)).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.expect("body").is_empty());
    assert_eq!(mock.stats()["by_path"]["/v1/responses"], 9);
}
