//! The OpenAI Responses API as a client dialect and a backend API (issue 15, same-dialect):
//! two hostile upstreams speaking it byte by byte, so every event boundary is the test's.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::hostile::{responses_sse as rs, Hostile, Script};
use crate::support::*;

struct Pair {
    gateway: String,
    primary: Hostile,
    fallback: Hostile,
    http: reqwest::Client,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn pair() -> Pair {
    let primary = Hostile::start(Script::json(
        500,
        &[],
        r#"{"error":{"message":"no script"}}"#,
    ))
    .await;
    let fallback = Hostile::start(Script::sse(&[rs::whole("Hello from fallback")])).await;
    let yaml = format!(
        r#"
backends:
  primary: {{ api: openai_responses, base_url: "{}/v1", api_key_env: PRIMARY_KEY }}
  fallback: {{ api: openai_responses, base_url: "{}/v1", api_key_env: FALLBACK_KEY }}
routes:
  codex: {{ chain: [ {{ backend: primary, model: gpt-5 }}, {{ backend: fallback, model: gpt-5-mini }} ] }}
failover: {{ retries: 1, backoff: {{ base: 5ms, max: 10ms }}, ttft_timeout: 1s, stall_timeout: 1s }}
health: {{ failure_threshold: {{ default: 1000, connection: 1000, timeout: 1000 }} }}
"#,
        primary.url(),
        fallback.url()
    );
    let (gateway, server) = serve_yaml(&yaml).await;
    Pair {
        gateway,
        primary,
        fallback,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        _server: server,
    }
}

struct Answer {
    status: u16,
    backend: Option<String>,
    text: String,
}

impl Answer {
    /// The text of every `response.output_text.delta`, in order.
    fn streamed_text(&self) -> String {
        events(&self.text)
            .iter()
            .filter(|(name, _)| name == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn event_names(&self) -> Vec<String> {
        events(&self.text).into_iter().map(|(n, _)| n).collect()
    }
}

/// (event name, data) of every SSE event.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .filter_map(|block| {
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))?
                .to_string();
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name, serde_json::from_str(data).ok()?))
        })
        .collect()
}

impl Pair {
    async fn ask_at(&self, path: &str, stream: bool) -> Answer {
        let body = json!({"model": "codex", "stream": stream, "store": false,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}]});
        let r = self
            .http
            .post(format!("{}{path}", self.gateway))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let backend = r
            .headers()
            .get("x-switchyard-backend")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap_or_default();
        Answer {
            status,
            backend,
            text,
        }
    }

    async fn ask(&self, stream: bool) -> Answer {
        self.ask_at("/v1/responses", stream).await
    }

    async fn forget_health(&self) {
        for b in ["primary", "fallback"] {
            self.http
                .post(format!("{}/admin/backends/{b}/reset", self.gateway))
                .send()
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_responses_stream_passes_through_and_its_aliases_route_the_same() {
    let p = pair().await;
    p.primary
        .set_default(Script::sse(&[rs::whole("Hello from primary")]));
    for path in [
        "/v1/responses",
        "/responses",
        "/v1/responses/",
        "/v1/responses?trace=1",
    ] {
        let a = p.ask_at(path, true).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        assert_eq!(a.backend.as_deref(), Some("primary"), "{path}");
        assert_eq!(a.streamed_text(), "Hello from primary", "{path}");
        assert_eq!(
            a.text,
            rs::whole("Hello from primary"),
            "{path}: byte for byte"
        );
    }
    // Only `model` was rewritten on the way up.
    let sent: Value = serde_json::from_str(&p.primary.requests()[0].body_text()).unwrap();
    assert_eq!(sent["model"], "gpt-5");
    assert_eq!(sent["input"][0]["content"][0]["text"], "Say hello");
    assert_eq!(p.primary.requests()[0].path, "/v1/responses");
    assert_eq!(
        p.primary.requests()[0].header("authorization"),
        Some(format!("Bearer {PRIMARY_KEY}").as_str())
    );
}

/// Envelope events do not commit: a failure after them, before any delta, fails over
/// invisibly; so does a stall after them (the TTFT clock).
#[tokio::test]
async fn envelope_events_do_not_commit_and_a_failure_after_them_fails_over() {
    let p = pair().await;
    let cases = [
        (
            "response.failed after the envelope",
            Script::sse(&[rs::preamble(), rs::failed("server_error", "boom")]),
        ),
        (
            "error event after the envelope",
            Script::sse(&[rs::preamble() + &rs::error("rate_limit_exceeded", "slow down")]),
        ),
        (
            "stall after the envelope",
            Script::sse_open(&[rs::preamble()]).pause(Duration::from_secs(5)),
        ),
        (
            "cut before response.completed",
            Script::sse_open(&[rs::preamble()]).close(),
        ),
    ];
    for (case, script) in cases {
        p.forget_health().await;
        p.primary.set_default(script);
        let a = p.ask(true).await;
        assert_eq!(a.status, 200, "{case}: {}", a.text);
        assert_eq!(a.backend.as_deref(), Some("fallback"), "{case}");
        assert_eq!(a.streamed_text(), "Hello from fallback", "{case}");
        let names = a.event_names();
        assert_eq!(
            names.first().map(String::as_str),
            Some("response.created"),
            "{case}"
        );
        assert_eq!(
            names.iter().filter(|n| *n == "response.created").count(),
            1,
            "{case}: the primary's envelope reached the client: {names:?}"
        );
    }
}

/// After the first delta there is no failover: the stream ends with the dialect's own
/// closing events, an `error` and a `response.failed` carrying the gateway's report.
#[tokio::test]
async fn a_stream_that_dies_after_content_ends_with_error_and_response_failed() {
    let p = pair().await;
    p.primary
        .set_default(Script::sse_open(&[rs::preamble() + &rs::text("Hel")]).reset());
    let a = p.ask(true).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.backend.as_deref(), Some("primary"));
    assert_eq!(a.streamed_text(), "Hel");
    let evs = events(&a.text);
    let tail: Vec<&str> = evs.iter().rev().take(2).map(|(n, _)| n.as_str()).collect();
    assert_eq!(tail, ["response.failed", "error"], "{}", a.text);
    let (_, failed) = &evs[evs.len() - 1];
    assert_eq!(failed["response"]["status"], "failed");
    assert_eq!(failed["response"]["error"]["code"], "connection");
    let (_, error) = &evs[evs.len() - 2];
    assert_eq!(error["failures"][0]["backend"], "primary");
    // They follow the last event the client received (the delta, number 4).
    assert_eq!(error["sequence_number"], 5);
    assert_eq!(failed["sequence_number"], 6);
    assert_eq!(p.fallback.request_count(), 0, "no failover after content");
}

#[tokio::test]
async fn non_stream_answers_fail_over_and_stored_state_errors_come_back_unchanged() {
    let p = pair().await;
    p.fallback
        .set_default(Script::json(200, &[], rs::body("Hello from fallback")));
    p.primary.set_default(Script::json(
        500,
        &[],
        r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":"server_error"}}"#,
    ));
    let a = p.ask(false).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.backend.as_deref(), Some("fallback"));
    let v: Value = serde_json::from_str(&a.text).unwrap();
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello from fallback");

    // State kept by one provider: the request must change; no failover, no ejection.
    p.forget_health().await;
    let not_found = r#"{"error":{"message":"Previous response with id 'resp_abc' not found.","type":"invalid_request_error","param":"previous_response_id","code":"previous_response_not_found"}}"#;
    p.primary.set_default(Script::json(404, &[], not_found));
    let before = p.fallback.request_count();
    let a = p.ask(false).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.text, not_found);
    assert_eq!(p.fallback.request_count(), before);
    let admin: Value = p
        .http
        .get(format!("{}/admin/backends", p.gateway))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        admin["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "healthy"),
        "{admin}"
    );
}

#[tokio::test]
async fn an_exhausted_responses_chain_reports_in_the_openai_error_shape() {
    let p = pair().await;
    p.fallback.set_default(Script::json(
        503,
        &[],
        r#"{"error":{"message":"overloaded","type":"server_error","param":null,"code":"server_is_overloaded"}}"#,
    ));
    p.primary.set_default(Script::json(
        401,
        &[],
        r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    ));
    for stream in [false, true] {
        p.forget_health().await;
        let a = p.ask(stream).await;
        assert_eq!(a.status, 502, "{}", a.text);
        let v: Value = serde_json::from_str(&a.text).unwrap();
        assert_eq!(v["error"]["type"], "fallback_exhausted");
        assert_eq!(v["error"]["failures"].as_array().unwrap().len(), 2);
    }
}

/// `previous_response_id` continues state one provider keeps: the gateway remembers which
/// backend served (and stored) each response, and sends a continuation only there. When that
/// backend cannot serve, the client gets a report saying so, not an answer from a backend that
/// never saw the conversation. `store: false` requests, and ids the gateway never served, go
/// down the chain as usual.
#[tokio::test]
async fn a_continued_response_goes_only_to_the_backend_that_stored_it() {
    let p = pair().await;
    let stored_on_primary = rs::body("Hello from primary").replace("resp_hostile", "resp_p1");
    p.fallback
        .set_default(Script::json(200, &[], rs::body("Hello from fallback")));
    p.primary.set_default(Script::json(
        529,
        &[],
        r#"{"error":{"message":"Overloaded","type":"server_error","param":null,"code":null}}"#,
    ));
    let continued = |previous: &str, store: bool| {
        json!({"model": "codex", "stream": false, "store": store, "previous_response_id": previous,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "And now?"}]}]})
    };
    let send = |body: Value| {
        let http = p.http.clone();
        let url = format!("{}/v1/responses", p.gateway);
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let backend = r
                .headers()
                .get("x-switchyard-backend")
                .map(|v| v.to_str().unwrap().to_string());
            (status, backend, r.text().await.unwrap())
        }
    };
    // The first answer is stored by the primary (`store` defaults to true).
    p.primary.push(Script::json(200, &[], &stored_on_primary));
    let first = json!({"model": "codex", "input": "Say hello"});
    let (status, backend, text) = send(first).await;
    assert_eq!(
        (status, backend.as_deref()),
        (200, Some("primary")),
        "{text}"
    );
    let fallback_before = p.fallback.request_count();
    let (status, _, text) = send(continued("resp_p1", true)).await;
    assert_eq!(status, 502, "{text}");
    assert_eq!(
        p.fallback.request_count(),
        fallback_before,
        "the continuation went to a backend that does not hold resp_p1"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    let skipped = &v["error"]["failures"][1];
    assert_eq!(skipped["backend"], "fallback", "{v}");
    assert_eq!(skipped["skipped"], true, "{v}");
    assert!(
        skipped["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("does not hold the stored response resp_p1")
            || skipped
                .to_string()
                .contains("does not hold the stored response resp_p1"),
        "{v}"
    );

    // An id the gateway never served: the chain as usual.
    p.forget_health().await;
    let (status, backend, text) = send(continued("resp_elsewhere", true)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(backend.as_deref(), Some("fallback"));
}

#[tokio::test]
async fn a_responses_request_to_a_chat_route_is_translated_unless_it_continues_a_stored_response() {
    let h = start(FAST, "").await;
    let r = post(
        &h,
        "/v1/responses",
        &json!({"model": "gpt", "input": "Say hello"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["object"], "response");
    // A continuation lives on a Responses provider: a chat backend never held it.
    let before = h.primary_requests().await;
    let r = post(
        &h,
        "/v1/responses",
        &json!({"model": "gpt", "input": "Say hello", "previous_response_id": "resp_1"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not hold it"),
        "{v}"
    );
    assert_eq!(h.primary_requests().await, before);
}
