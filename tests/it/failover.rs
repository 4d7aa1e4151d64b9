//! The failover engine end to end: the gateway and two mock upstreams on ephemeral ports.
//! One test per failure class and per decision, streaming and not, in both dialects.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn overloaded_primary_fails_over_to_the_fallback_in_every_mode() {
    let h = start(FAST, "").await;
    for dialect in Dialect::BOTH {
        for stream in [false, true] {
            h.new_case().await;
            h.primary_always(status(529)).await;
            let r = h.ask(dialect, stream).await;
            // retries: 2 → three attempts on the primary, then one on the fallback.
            assert_served_by(&r, &dialect.backend("fallback"), 4);
            assert_eq!(h.primary_requests().await, 3);
            let text = if stream {
                r.streamed_text()
            } else {
                r.answer_text()
            };
            assert_eq!(text, "Hello from fallback", "{dialect} stream={stream}");
        }
    }
}

#[tokio::test]
async fn server_errors_and_malformed_replies_are_retried_then_failed_over() {
    let h = start(FAST, "").await;
    for failure in [
        status(500),
        behavior(json!({"kind": "malformed"})),
        behavior(json!({"kind": "empty"})),
    ] {
        h.new_case().await;
        h.primary_always(failure.clone()).await;
        let r = h.ask(Dialect::Anthropic, false).await;
        assert_eq!(r.status, 200, "{failure}: {}", r.text);
        assert_eq!(r.backend(), Some("fallback"), "{failure}");
        assert_eq!(h.primary_requests().await, 3, "{failure}");
    }
}

#[tokio::test]
async fn a_transient_500_is_retried_on_the_same_backend() {
    let h = start(FAST, "").await;
    h.primary_then([status(500)], ok()).await;
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_served_by(&r, "oa-primary", 2);
    assert_eq!(h.fallback_requests().await, 0);
}

#[tokio::test]
async fn rate_limit_with_short_retry_after_is_retried_on_the_same_backend() {
    let h = start(FAST, "").await;
    h.primary_then([status(429).header("retry-after", "1")], ok())
        .await;
    let started = Instant::now();
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_served_by(&r, "primary", 2);
    assert_eq!(h.fallback_requests().await, 0);
    // One-sided: a timer never fires early, so this cannot flake (the upper side is the
    // engine's paused-time tests').
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
}

#[tokio::test]
async fn rate_limit_with_long_retry_after_fails_over_at_once() {
    let h = start(FAST, "").await;
    h.primary_always(status(429).header("retry-after", "120"))
        .await;
    let started = Instant::now();
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_served_by(&r, "oa-fallback", 2);
    assert!(started.elapsed() < PROMPTLY, "waited for the Retry-After");
}

#[tokio::test]
async fn auth_quota_and_model_not_found_fail_over_without_retrying() {
    let h = start(FAST, "").await;
    for code in [401, 403, 402, 404] {
        h.new_case().await;
        h.primary_always(status(code)).await;
        let r = h.ask(Dialect::Anthropic, false).await;
        assert_eq!(r.status, 200, "{code}");
        assert_eq!(r.backend(), Some("fallback"), "{code}");
        assert_eq!(h.primary_requests().await, 1, "status {code} was retried");
    }
}

#[tokio::test]
async fn client_errors_come_back_unchanged_and_no_other_backend_is_hit() {
    let h = start(FAST, "").await;
    let cases = [
        (
            Dialect::Anthropic,
            400,
            json!({"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}),
            "context_overflow",
        ),
        (
            Dialect::OpenAi,
            400,
            json!({"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}),
            "context_overflow",
        ),
        (
            Dialect::Anthropic,
            413,
            json!({"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}),
            "payload_too_large",
        ),
        (
            Dialect::OpenAi,
            400,
            json!({"error":{"message":"Invalid value for 'temperature'.","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}),
            "invalid_request",
        ),
        (
            Dialect::OpenAi,
            400,
            json!({"error":{"message":"Your request was rejected as a result of our safety system.","type":"invalid_request_error","param":null,"code":"content_policy_violation"}}),
            "content_policy",
        ),
    ];
    for (dialect, code, body, reason) in cases {
        h.new_case().await;
        h.primary_always(status(code).body(body.clone())).await;
        let r = h.ask(dialect, false).await;
        assert_eq!(r.status, code, "{reason}");
        assert_eq!(
            r.json(),
            body,
            "{reason}: body must be the upstream's, unchanged"
        );
        assert_eq!(r.header("x-switchyard-reason"), Some(reason));
        assert_eq!(h.primary_requests().await, 1, "{reason}");
        assert_eq!(
            h.fallback_requests().await,
            0,
            "{reason}: fallback must not be hit"
        );
    }
}

#[tokio::test]
async fn stall_before_first_token_with_heartbeats_fails_over_within_ttft() {
    let h = start(FAST, "").await;
    for dialect in Dialect::BOTH {
        h.new_case().await;
        h.primary_always(stall_after(0, 100)).await;
        let started = Instant::now();
        let r = h.ask(dialect, true).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200);
        assert_eq!(r.streamed_text(), "Hello from fallback");
        // Heartbeats are not tokens: the stall is caught by ttft_timeout (1 s), no earlier.
        assert!(took >= Duration::from_secs(1), "{dialect}: {took:?}");
        assert!(took < PROMPTLY, "{dialect}: failover took {took:?}");
        // Eager failover: one stall costs one ttft, not retries × ttft.
        assert_eq!(
            h.primary_requests().await,
            1,
            "{dialect}: the stall was retried"
        );
    }
}

#[tokio::test]
async fn silent_upstream_without_headers_is_caught_by_ttft() {
    let h = start(FAST, "").await;
    for stream in [false, true] {
        h.new_case().await;
        h.primary_always(silence()).await;
        let started = Instant::now();
        let r = h.ask(Dialect::OpenAi, stream).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), Some("oa-fallback"));
        assert!(started.elapsed() < PROMPTLY, "stream={stream}");
        // Eager failover: one silent attempt costs one ttft, not retries × ttft.
        assert_eq!(h.primary_requests().await, 1, "stream={stream}: retried");
    }
}

#[tokio::test]
async fn connection_reset_before_the_response_fails_over_at_once() {
    let h = start(FAST, "").await;
    for stream in [false, true] {
        h.new_case().await;
        h.primary_always(reset_after(0)).await;
        let r = h.ask(Dialect::Anthropic, stream).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.backend(), Some("fallback"));
        assert_eq!(
            h.primary_requests().await,
            1,
            "connection failures fail over eagerly"
        );
    }
}

#[tokio::test]
async fn refused_connection_fails_over_at_once() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let h = start(FAST, "").await;
    // A second gateway whose primary points at a closed port.
    let yaml = format!(
        "backends:\n  dead: {{ api: openai_chat, base_url: \"http://127.0.0.1:{port}/v1\" }}\n  ok: {{ api: openai_chat, base_url: \"{}/v1\" }}\nroutes:\n  gpt: {{ chain: [ {{ backend: dead, model: m1 }}, {{ backend: ok, model: m2 }} ] }}\n",
        h.fallback.url()
    );
    let (gateway, server) = serve_yaml(&yaml).await;
    let started = Instant::now();
    let resp = h
        .http
        .post(format!("{gateway}/v1/chat/completions"))
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-backend"], "ok");
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
    assert!(started.elapsed() < PROMPTLY);
    server.abort();
}

#[tokio::test]
async fn error_event_inside_a_200_stream_before_content_fails_over() {
    let h = start(FAST, "").await;
    for dialect in Dialect::BOTH {
        h.new_case().await;
        h.primary_always(behavior(
            json!({"kind": "stream_error", "after_chunks": 0, "error_type": "overloaded_error"}),
        ))
        .await;
        let r = h.ask(dialect, true).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.streamed_text(),
            "Hello from fallback",
            "{dialect}: {}",
            r.text
        );
        assert!(
            !r.text.contains("overloaded_error"),
            "{dialect}: the primary's error leaked into the stream"
        );
    }
}

#[tokio::test]
async fn reset_mid_stream_ends_the_clients_stream_with_an_error_event() {
    let h = start(FAST, "").await;
    for dialect in Dialect::BOTH {
        h.new_case().await;
        h.primary_always(reset_after(2)).await;
        let r = h.ask(dialect, true).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.backend(), Some(dialect.backend("primary").as_str()));
        let text = r.streamed_text();
        assert!(
            !text.is_empty() && "Hello from primary".starts_with(&text),
            "{dialect}: partial content {text:?}"
        );
        let last = r.text.trim_end().rsplit("\n\n").next().unwrap();
        if dialect == Dialect::Anthropic {
            assert!(last.starts_with("event: error\ndata: "), "{last}");
        } else {
            assert!(last.starts_with("data: {\"error\""), "{last}");
        }
        assert!(last.contains("connection"), "{last}");
        assert_eq!(
            h.fallback_requests().await,
            0,
            "no failover after content: it would duplicate"
        );
    }
}

#[tokio::test]
async fn stall_mid_stream_ends_with_an_error_event_after_stall_timeout() {
    let h = start(FAST, "").await;
    h.primary_always(stall_after(1, 100)).await;
    let started = Instant::now();
    let r = h.ask(Dialect::Anthropic, true).await;
    let took = started.elapsed();
    // Heartbeats do not reset the stall clock (stall_timeout: 1 s); the exact moment is the
    // engine's paused-time tests'.
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < PROMPTLY, "{took:?}");
    let last = r.text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: error"), "{last}");
    assert!(last.contains("timeout_error"), "{last}");
}

#[tokio::test]
async fn exhausted_chain_answers_502_listing_every_attempt() {
    let h = start(FAST, "").await;
    h.primary_always(status(529)).await;
    h.fallback_always(status(401)).await;
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_eq!(r.status, 502);
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(
        v["error"]["message"],
        "All 2 backends failed: primary (claude-opus-4-7) overloaded 529 after 3 attempts; fallback (claude-sonnet-4-5) auth 401"
    );
    let failures = v["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0]["reason"], "overloaded");
    assert_eq!(failures[0]["attempts"], 3);
    assert_eq!(failures[1]["reason"], "auth");
    assert_eq!(failures[1]["status"], 401);

    let r = h.ask(Dialect::OpenAi, true).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "fallback_exhausted");
}

#[tokio::test]
async fn all_timeouts_answer_504() {
    let h = start(FAST, "").await;
    h.primary_always(silence()).await;
    h.fallback_always(silence()).await;
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_eq!(r.status, 504, "{}", r.text);
}

#[tokio::test]
async fn spent_retry_budget_fails_over_instead_of_retrying() {
    let h = start(
        &format!("{FAST}\nretry_budget: {{ ratio: 0.0, min_per_sec: 0 }}"),
        "",
    )
    .await;
    h.primary_always(status(529)).await;
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_served_by(&r, "fallback", 2);
    assert_eq!(h.primary_requests().await, 1, "no budget, no retry");
}

#[tokio::test]
async fn upstream_gets_the_rewritten_model_and_its_own_key_never_the_clients() {
    let h = start(FAST, "").await;
    let body = json!({"model": "claude", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],
                      "x_custom": {"keep": [1, "two", null]}, "metadata": {"user_id": "u-1"}});
    let r = post_raw(
        &h,
        "/v1/messages?beta=true",
        body.to_string(),
        &[
            ("content-type", "application/json"),
            ("x-api-key", "sk-ant-client-secret"),
            ("authorization", "Bearer sk-client-secret"),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "tools-2024-04-04"),
            ("x-request-id", "client-req-1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-request-id"), Some("client-req-1"));
    let log = request_log(&h, &h.primary).await;
    let seen = &log[0];
    assert_eq!(seen["path"], "/v1/messages");
    assert_eq!(seen["body"]["model"], "claude-opus-4-7");
    assert_eq!(
        seen["body"]["x_custom"],
        json!({"keep": [1, "two", null]}),
        "unknown fields preserved"
    );
    assert_eq!(seen["headers"]["x-api-key"], PRIMARY_KEY);
    assert_eq!(seen["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(seen["headers"]["anthropic-beta"], "tools-2024-04-04");
    assert!(
        seen["headers"].get("authorization").is_none(),
        "client credentials forwarded"
    );
    assert!(!seen.to_string().contains("client-secret"));

    let r = post_raw(
        &h,
        "/v1/chat/completions",
        openai_body(false).to_string(),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer sk-client-secret"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let log = request_log(&h, &h.primary).await;
    let seen = log
        .iter()
        .find(|r| r["path"] == "/v1/chat/completions")
        .unwrap();
    assert_eq!(
        seen["headers"]["authorization"],
        format!("Bearer {PRIMARY_KEY}")
    );
    assert_eq!(seen["body"]["model"], "gpt-4o");
    assert!(!seen.to_string().contains("client-secret"));
}

#[tokio::test]
async fn same_dialect_body_is_forwarded_byte_for_byte_except_model() {
    let h = start(FAST, "").await;
    let raw = r#"{"messages":[{"role":"user","content":"h\u00e9llo \"quoted\""}],  "model" : "gpt", "temperature":0.70, "zzz":[1e3]}"#;
    let r = post_raw(
        &h,
        "/v1/chat/completions",
        raw.to_string(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let log = request_log(&h, &h.primary).await;
    let body = &log[0]["body"];
    // The mock logs the parsed JSON; the exact number formatting survived the trip.
    assert_eq!(body["temperature"], json!(0.70));
    assert_eq!(body["zzz"], json!([1000.0]));
    assert_eq!(body["messages"][0]["content"], "héllo \"quoted\"");
}

#[tokio::test]
async fn early_headers_keep_a_slow_stream_alive_and_failover_still_works() {
    let h = start(&format!("{FAST}\nearly_headers_after: 200ms"), "").await;
    h.primary_always(stall_after(0, 100)).await;
    let resp = h
        .http
        .post(format!("{}/v1/messages", h.gateway))
        .json(&anthropic_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    assert!(text.starts_with(": switchyard"), "{text}");
    let reply = Reply {
        status: 200,
        headers: Default::default(),
        text,
    };
    assert_eq!(reply.streamed_text(), "Hello from fallback");
}

#[tokio::test]
async fn client_disconnect_mid_stream_aborts_the_upstream_request() {
    let h = start(FAST, "").await;
    h.primary_always(ok().with("chunks", 50).with("chunk_interval_ms", 100))
        .await;
    let mut resp = h
        .http
        .post(format!("{}/v1/messages", h.gateway))
        .json(&anthropic_body(true))
        .send()
        .await
        .unwrap();
    let first = resp.chunk().await.unwrap();
    assert!(first.is_some());
    drop(resp);
    eventually(
        "the upstream stream is cancelled after the client left",
        Duration::from_secs(5),
        || async { stats(&h, &h.primary).await["cancelled"] == 1 },
    )
    .await;
}

#[tokio::test]
async fn client_disconnect_before_the_first_token_aborts_the_upstream_request() {
    let h = start("ttft_timeout: 30s\nstall_timeout: 30s", "").await;
    h.primary_always(stall_after(0, 50)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = client
        .post(format!("{}/v1/messages", h.gateway))
        .json(&anthropic_body(true))
        .send()
        .await;
    assert!(
        err.is_err(),
        "the gateway answered while the primary stalled"
    );
    eventually(
        "the stalled upstream request is cancelled",
        Duration::from_secs(5),
        || async { stats(&h, &h.primary).await["cancelled"] == 1 },
    )
    .await;
    assert_eq!(h.fallback_requests().await, 0);
}

#[tokio::test]
async fn overall_deadline_bounds_the_whole_request() {
    // A ttft far beyond PROMPTLY: only the 1 s deadline can end the request in time.
    let h = start("retries: 0\nttft_timeout: 25s\ndeadline: 1s", "").await;
    h.primary_always(silence()).await;
    let started = Instant::now();
    let r = h.ask(Dialect::Anthropic, false).await;
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    assert_eq!(r.status, 504, "{}", r.text);
    let v: Value = r.json();
    assert_eq!(v["failures"][1]["skipped"], true, "{v}");
}

#[tokio::test]
async fn nothing_in_a_request_can_redirect_the_upstream() {
    let h = start(FAST, "").await;
    let decoy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let decoy_url = format!("http://{}", decoy.local_addr().unwrap());
    decoy.set_nonblocking(true).unwrap();
    let body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}],
                      "api_base": decoy_url, "base_url": decoy_url, "api_key": "sk-client-override"});
    let r = post_raw(
        &h,
        "/v1/chat/completions",
        body.to_string(),
        &[
            ("content-type", "application/json"),
            ("x-forwarded-host", "evil.example"),
            ("x-switchyard-upstream", &decoy_url),
            ("host", "evil.example"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-switchyard-backend"), Some("oa-primary"));
    assert!(
        decoy.accept().is_err(),
        "the gateway connected to a URL taken from the request"
    );
    let seen = &request_log(&h, &h.primary).await[0];
    assert_eq!(
        seen["headers"]["authorization"],
        format!("Bearer {PRIMARY_KEY}")
    );
    assert_ne!(seen["headers"]["host"], "evil.example");
}
