//! Providers as they really are, end to end: a gateway whose primary is configured with a
//! provider preset, in front of a mock speaking that provider's error dialect. Each test pins
//! what the gateway does with one of the provider's real errors: retry, fail over at once, or
//! hand the answer back to the client.

use serde_json::Value;

use crate::support::*;

/// A gateway whose route `gpt` tries `p` (the preset `provider`, pointed at the primary mock
/// with `extra` backend keys) and then `f` (a plain OpenAI backend on the fallback mock).
async fn with_primary(provider: &str, extra: &str, failover: &str) -> Harness {
    start_yaml(&format!(
        r#"
listen: 127.0.0.1:0
backends:
  p: {{ provider: {provider}, base_url: "PRIMARY_URL{path}", api_key_env: PRIMARY_KEY {extra} }}
  f: {{ api: openai_chat, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }}
routes:
  gpt:
    chain:
      - {{ backend: p, model: some-model }}
      - {{ backend: f, model: gpt-4o-mini }}
failover:
  retries: 2
  backoff: {{ base: 5ms, max: 20ms }}
  ttft_timeout: 2s
  stall_timeout: 2s
  connect_timeout: 1s
  deadline: 20s
{failover}
health: {{ failure_threshold: {{ default: 1000, connection: 1000, timeout: 1000 }} }}
"#,
        path = if provider == "azure_openai" {
            ""
        } else {
            "/v1"
        },
    ))
    .await
}

/// The primary answers `fault` (in its provider's dialect), the fallback answers 401: the
/// exhausted chain's report names the primary's reason and how many attempts it got.
async fn primary_failure(h: &Harness, fault: Behavior) -> (String, u64) {
    h.new_case().await;
    h.primary_always(fault).await;
    h.fallback_always(status(401)).await;
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_eq!(r.status, 502, "{}", r.text);
    let v = r.json()["error"].clone();
    let first = &v["failures"][0];
    assert_eq!(first["backend"], "p", "{v}");
    // The fallback was tried: the primary's failure was not handed to the client.
    assert_eq!(v["failures"][1]["backend"], "f", "{v}");
    (
        first["reason"].as_str().unwrap().to_string(),
        first["attempts"].as_u64().unwrap(),
    )
}

fn fault(provider: &str, code: u16, error: Option<&str>) -> Behavior {
    let b = status(code).with("provider", provider);
    match error {
        Some(e) => b.with("error", e),
        None => b,
    }
}

#[tokio::test]
async fn gemini_quota_fails_over_at_once_and_its_rate_limit_is_retried() {
    let h = with_primary("gemini", "", "").await;
    // The array-wrapped RESOURCE_EXHAUSTED with a daily quota: waiting will not help.
    assert_eq!(
        primary_failure(&h, fault("gemini", 429, Some("quota"))).await,
        ("quota".to_string(), 1)
    );
    // The per-minute kind ("check quota") passes: retried, then failed over.
    assert_eq!(
        primary_failure(&h, fault("gemini", 429, Some("rate_limit"))).await,
        ("rate_limit".to_string(), 3)
    );
    // A bad key is a 400 INVALID_ARGUMENT: the backend's key, not the client's request.
    assert_eq!(
        primary_failure(&h, fault("gemini", 400, Some("invalid_key"))).await,
        ("auth".to_string(), 1)
    );
    assert_eq!(
        primary_failure(&h, fault("gemini", 403, Some("permission"))).await,
        ("auth".to_string(), 1)
    );
    assert_eq!(
        primary_failure(&h, fault("gemini", 503, Some("overloaded"))).await,
        ("overloaded".to_string(), 3)
    );
    // And with the fallback up, the client gets its answer.
    h.new_case().await;
    h.primary_always(fault("gemini", 429, Some("quota"))).await;
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_served_by(&r, "f", 2);
    assert_eq!(h.primary_requests().await, 1);
}

#[tokio::test]
async fn groq_413_over_the_tokens_per_minute_is_a_rate_limit_not_the_clients_fault() {
    let h = with_primary("groq", "", "").await;
    assert_eq!(
        primary_failure(&h, fault("groq", 413, Some("tpm"))).await,
        ("rate_limit".to_string(), 3)
    );
}

#[tokio::test]
async fn groq_rate_limit_waits_are_read_from_its_headers() {
    // Retry-After: 8 is past a 5 s max_retry_after: fail over at once.
    let h = with_primary("groq", "", "  max_retry_after: 5s").await;
    assert_eq!(
        primary_failure(&h, fault("groq", 429, Some("rate_limit"))).await,
        ("rate_limit".to_string(), 1)
    );
    // Without Retry-After (a proxy dropped it), x-ratelimit-reset-tokens: 7.66s with no
    // tokens left is the wait: still past 5 s, still no blind retry.
    let no_retry_after = fault("groq", 429, Some("rate_limit")).header("retry-after", "");
    assert_eq!(
        primary_failure(&h, no_retry_after).await,
        ("rate_limit".to_string(), 1)
    );
    // And with no wait anywhere, a rate limit is retried with backoff.
    let h = with_primary("groq", "", "").await;
    let bare = status(429).body(serde_json::json!({"error": {
        "message": "Rate limit reached", "type": "tokens", "code": "rate_limit_exceeded"
    }}));
    assert_eq!(
        primary_failure(&h, bare).await,
        ("rate_limit".to_string(), 3)
    );
}

#[tokio::test]
async fn deepseek_insufficient_balance_fails_over_at_once() {
    let h = with_primary("deepseek", "", "").await;
    assert_eq!(
        primary_failure(&h, fault("deepseek", 402, None)).await,
        ("quota".to_string(), 1)
    );
}

#[tokio::test]
async fn openrouter_credits_upstream_errors_and_moderation() {
    let h = with_primary("openrouter", "", "").await;
    assert_eq!(
        primary_failure(&h, fault("openrouter", 402, Some("credits"))).await,
        ("quota".to_string(), 1)
    );
    assert_eq!(
        primary_failure(&h, fault("openrouter", 429, Some("upstream_rate_limit"))).await,
        ("rate_limit".to_string(), 3)
    );
    assert_eq!(
        primary_failure(&h, fault("openrouter", 502, Some("upstream_down"))).await,
        ("server_error".to_string(), 3)
    );
    // Flagged input is the client's to fix: its 403 goes back unchanged, no fallback.
    h.new_case().await;
    h.primary_always(fault("openrouter", 403, Some("moderation")))
        .await;
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.header("x-switchyard-reason"), Some("content_policy"));
    assert!(r.text.contains("flagged"), "{}", r.text);
    assert_eq!(h.fallback_requests().await, 0);
}

#[tokio::test]
async fn xai_out_of_credits_fails_over_at_once() {
    let h = with_primary("xai", "", "").await;
    assert_eq!(
        primary_failure(&h, fault("xai", 429, Some("credits"))).await,
        ("quota".to_string(), 1)
    );
}

#[tokio::test]
async fn together_and_mistral_rate_limits_are_rate_limits() {
    // Together's says "billing" and is typed `credit_limit`: still a rate limit, retried.
    let h = with_primary("together", "", "").await;
    assert_eq!(
        primary_failure(&h, fault("together", 429, None)).await,
        ("rate_limit".to_string(), 3)
    );
    let h = with_primary("mistral", "", "").await;
    assert_eq!(
        primary_failure(&h, fault("mistral", 429, None)).await,
        ("rate_limit".to_string(), 3)
    );
}

#[tokio::test]
async fn azure_openai_deployment_path_api_key_and_content_filter() {
    let h = with_primary("azure_openai", ", deployment: gpt-4o-prod", "").await;
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_served_by(&r, "p", 1);
    let log = request_log(&h, &h.primary).await;
    let seen = log.last().unwrap();
    assert_eq!(
        seen["path"],
        "/openai/deployments/gpt-4o-prod/chat/completions"
    );
    assert_eq!(seen["query"], "api-version=2024-10-21");
    assert_eq!(seen["headers"]["api-key"], PRIMARY_KEY);
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    // The admin surface says which provider's rules read each backend's answers.
    let admin = h.admin_backends().await;
    let provider_of = |name: &str| {
        admin["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == name)
            .unwrap()["provider"]
            .clone()
    };
    assert_eq!(provider_of("p"), "azure_openai");
    assert_eq!(provider_of("f"), Value::Null);

    // The content filter is the prompt's problem: back to the client, no fallback.
    h.new_case().await;
    h.primary_always(fault("azure_openai", 400, Some("content_filter")))
        .await;
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-switchyard-reason"), Some("content_policy"));
    assert_eq!(h.fallback_requests().await, 0);

    // A rejected key fails over; a day-long Retry-After is past max_retry_after.
    assert_eq!(
        primary_failure(&h, fault("azure_openai", 401, Some("invalid_key"))).await,
        ("auth".to_string(), 1)
    );
    assert_eq!(
        primary_failure(&h, fault("azure_openai", 429, Some("rate_limit"))).await,
        ("rate_limit".to_string(), 1)
    );
}

/// `headers:`, `query:` and `auth:` reach the upstream as configured, and a client's own
/// headers of those names do not.
#[tokio::test]
async fn static_headers_query_and_auth_style_reach_the_upstream() {
    let h = with_primary(
        "openrouter",
        ", auth: x-api-key, headers: { HTTP-Referer: \"https://example.com\", X-Title: switchyard tests }, query: { trace: \"on\" }",
        "",
    )
    .await;
    let r = post_raw(
        &h,
        "/v1/chat/completions",
        openai_body(false).to_string(),
        &[("x-title", "from the client"), ("x-api-key", "client-key")],
    )
    .await;
    assert_served_by(&r, "p", 1);
    let log = request_log(&h, &h.primary).await;
    let seen: &Value = log.last().unwrap();
    assert_eq!(seen["path"], "/v1/chat/completions");
    assert_eq!(seen["query"], "trace=on");
    let headers = &seen["headers"];
    assert_eq!(headers["http-referer"], "https://example.com");
    assert_eq!(headers["x-title"], "switchyard tests");
    assert_eq!(headers["x-api-key"], PRIMARY_KEY);
    assert!(headers.get("authorization").is_none(), "{headers}");
}

/// `switchyard mock --provider NAME` speaks that dialect for every status fault.
#[tokio::test]
async fn a_mock_started_for_a_provider_answers_its_faults_in_that_dialect() {
    let mock = spawn_mock_as("gemini-mock", "gemini").await;
    mock.set_plan(mock_plan::Plan::always(mock_plan::Behavior::status(429)));
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", mock.url()))
        .json(&openai_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["error"]["status"], "RESOURCE_EXHAUSTED", "{v}");
}

/// A static header value that names itself a token is redacted like a key when an upstream
/// echoes it back; one that does not is left alone.
#[tokio::test]
async fn a_static_credential_header_echoed_by_the_upstream_is_scrubbed() {
    let h = with_primary(
        "ollama",
        ", headers: { x-tenant-token: tok-a1b2c3d4e5f6, x-tenant-name: acme-corp-tenant }",
        "",
    )
    .await;
    let echo = serde_json::json!({"error": {
        "message": "rejected x-tenant-token tok-a1b2c3d4e5f6 for x-tenant-name acme-corp-tenant",
        "type": "invalid_request_error"
    }});
    h.primary_always(status(400).body(echo)).await;
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(!r.text.contains("tok-a1b2c3d4e5f6"), "{}", r.text);
    assert!(r.text.contains("acme-corp-tenant"), "{}", r.text);
}
