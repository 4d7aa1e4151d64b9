//! Health-aware routing end to end: cooldowns, probes, primary restoration, turn exclusions,
//! credential pools, sticky sessions and the admin API, asserted through the mocks' counters.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const FAST_HEALTH: &str = "health: { cooldown: { base: 1s, max: 4s } }";

async fn admin(h: &Harness) -> Value {
    h.http
        .get(format!("{}/admin/backends", h.gateway))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn scope<'a>(v: &'a Value, backend: &str, kind: &str) -> &'a Value {
    v["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["kind"] == kind
                && s["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b == backend)
        })
        .unwrap_or_else(|| panic!("no {kind} scope for {backend}: {v}"))
}

#[tokio::test]
async fn a_failed_primary_is_not_touched_again_while_it_cools_down() {
    let h = start(FAST, "health: { cooldown: { base: 30s } }").await;
    plan(
        &h,
        &h.primary,
        json!([]),
        json!({"kind": "reset", "after_chunks": 0}),
    )
    .await;
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.header("x-switchyard-backend"), Some("fallback"));
    for i in 0..25 {
        let r = post(&h, "/v1/messages", &anthropic_body(i % 2 == 0)).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-switchyard-backend"), Some("fallback"));
        assert_eq!(r.header("x-switchyard-attempts"), Some("1"));
    }
    assert_eq!(
        requests_seen(&h, &h.primary).await,
        1,
        "a cooling primary was touched"
    );
    let v = admin(&h).await;
    let s = scope(&v, "primary", "backend");
    assert_eq!(s["state"], "cooling_down");
    assert_eq!(s["last_reason"], "connection");
    assert!(s["cooldown_remaining_s"].as_f64().unwrap() > 25.0);
}

#[tokio::test]
async fn retries_count_toward_the_threshold_so_the_next_call_skips_the_backend() {
    // Default threshold 3 = the first request's three attempts (retries: 2).
    let h = start(FAST, "health: { cooldown: { base: 30s } }").await;
    plan(
        &h,
        &h.primary,
        json!([]),
        json!({"kind": "status", "status": 529}),
    )
    .await;
    let r = post(&h, "/v1/chat/completions", &openai_body(false)).await;
    assert_eq!(r.header("x-switchyard-attempts"), Some("4"));
    let r = post(&h, "/v1/chat/completions", &openai_body(false)).await;
    assert_eq!(
        r.header("x-switchyard-attempts"),
        Some("1"),
        "the title call touched the primary again"
    );
    assert_eq!(requests_seen(&h, &h.primary).await, 3);
}

#[tokio::test]
async fn after_the_cooldown_one_probe_goes_first_then_traffic_returns() {
    let h = start(FAST, FAST_HEALTH).await;
    plan(
        &h,
        &h.primary,
        json!([{"kind": "reset", "after_chunks": 0}, {"kind": "ok", "delay_ms": 600}]),
        json!({"kind": "ok"}),
    )
    .await;
    post(&h, "/v1/messages", &anthropic_body(false)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Ten concurrent requests once the cooldown has ended: one probes (slowly), nine go on.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let http = h.http.clone();
        let url = format!("{}/v1/messages", h.gateway);
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&anthropic_body(false))
                .send()
                .await
                .unwrap();
            r.headers()["x-switchyard-backend"]
                .to_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut served = Vec::new();
    for t in tasks {
        served.push(t.await.unwrap());
    }
    assert_eq!(
        served.iter().filter(|b| *b == "primary").count(),
        1,
        "{served:?}"
    );
    assert_eq!(
        requests_seen(&h, &h.primary).await,
        2,
        "more than one probe reached the primary"
    );
    // The probe succeeded: the primary is healthy and gets the traffic again.
    for _ in 0..5 {
        let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
        assert_eq!(r.header("x-switchyard-backend"), Some("primary"));
    }
    assert_eq!(
        scope(&admin(&h).await, "primary", "backend")["state"],
        "healthy"
    );
}

#[tokio::test]
async fn a_turns_follow_up_call_skips_the_backend_that_failed_in_that_turn() {
    let h = start(
        FAST,
        "health: { cooldown: { base: 1s }, failure_threshold: { default: 1 } }",
    )
    .await;
    plan(
        &h,
        &h.primary,
        json!([{"kind": "status", "status": 500}]),
        json!({"kind": "ok"}),
    )
    .await;
    let turn = [
        ("content-type", "application/json"),
        ("x-switchyard-session", "sess-1"),
        ("x-switchyard-turn", "7"),
    ];
    let main_call = post_raw(&h, "/v1/messages", anthropic_body(false).to_string(), &turn).await;
    assert_eq!(main_call.header("x-switchyard-backend"), Some("fallback"));
    // The cooldown has expired by now, but the turn remembers.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let title_call = post_raw(&h, "/v1/messages", anthropic_body(false).to_string(), &turn).await;
    assert_eq!(title_call.header("x-switchyard-backend"), Some("fallback"));
    assert_eq!(
        requests_seen(&h, &h.primary).await,
        1,
        "the title call retried the failed backend"
    );
    // The next turn goes back to the (now probed, healthy) primary.
    let next = [
        ("content-type", "application/json"),
        ("x-switchyard-session", "sess-1"),
        ("x-switchyard-turn", "8"),
    ];
    let r = post_raw(&h, "/v1/messages", anthropic_body(false).to_string(), &next).await;
    assert_eq!(r.header("x-switchyard-backend"), Some("primary"));
}

#[tokio::test]
async fn client_errors_never_take_a_backend_out() {
    let h = start(FAST, "health: { failure_threshold: { default: 1 } }").await;
    let overflow = json!({"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 300000 tokens > 200000 maximum"}});
    plan(
        &h,
        &h.primary,
        json!([]),
        json!({"kind": "status", "status": 400, "body": overflow}),
    )
    .await;
    for _ in 0..5 {
        let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
        assert_eq!(r.status, 400);
    }
    plan(&h, &h.primary, json!([]), json!({"kind": "ok"})).await;
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.header("x-switchyard-backend"), Some("primary"));
    assert_eq!(scope(&admin(&h).await, "primary", "backend")["failures"], 0);
}

#[tokio::test]
async fn a_long_retry_after_cools_the_scope_that_long() {
    let h = start(FAST, "").await;
    plan(
        &h,
        &h.primary,
        json!([{"kind": "status", "status": 429, "headers": {"retry-after": "120"}}]),
        json!({"kind": "ok"}),
    )
    .await;
    post(&h, "/v1/messages", &anthropic_body(false)).await;
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.header("x-switchyard-backend"), Some("fallback"));
    let s = scope(&admin(&h).await, "primary", "credential").clone();
    assert_eq!(s["state"], "cooling_down");
    assert!(s["cooldown_remaining_s"].as_f64().unwrap() > 100.0, "{s}");
    assert_eq!(requests_seen(&h, &h.primary).await, 1);
}

#[tokio::test]
async fn when_everything_is_cooling_the_soonest_ending_entry_is_tried() {
    let h = start(FAST, "health: { cooldown: { base: 30s } }").await;
    for m in [&h.primary, &h.fallback] {
        plan(
            &h,
            m,
            json!([{"kind": "reset", "after_chunks": 0}]),
            json!({"kind": "ok"}),
        )
        .await;
    }
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.status, 502);
    // Both are out for 30 s; the primary's cooldown started first, so it ends soonest.
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("x-switchyard-backend"), Some("primary"));
}

#[tokio::test]
async fn admin_reset_and_skipped_entries_in_the_report() {
    let h = start(FAST, "health: { cooldown: { base: 30s } }").await;
    plan(
        &h,
        &h.primary,
        json!([]),
        json!({"kind": "reset", "after_chunks": 0}),
    )
    .await;
    plan(
        &h,
        &h.fallback,
        json!([]),
        json!({"kind": "status", "status": 401}),
    )
    .await;
    post(&h, "/v1/messages", &anthropic_body(false)).await;
    // The primary is cooling down: the next exhausted report lists it as skipped with its
    // last failure.
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.status, 502, "{}", r.text);
    let f = &r.json()["failures"];
    assert_eq!(f[0]["skipped"], true, "{f}");
    assert_eq!(f[0]["reason"], "connection");
    assert_eq!(f[1]["reason"], "auth");
    let reset = h
        .http
        .post(format!("{}/admin/backends/primary/reset", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert_eq!(
        scope(&admin(&h).await, "primary", "backend")["state"],
        "healthy"
    );
    let missing = h
        .http
        .post(format!("{}/admin/backends/nope/reset", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn admin_key_protects_the_admin_api() {
    let h = start(FAST, "admin: { key_env: GATEWAY_KEY }").await;
    let r = h
        .http
        .get(format!("{}/admin/backends", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .http
        .get(format!("{}/admin/backends", h.gateway))
        .bearer_auth("gw-secret-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(
        !v.to_string().contains(PRIMARY_KEY),
        "a key leaked into /admin/backends"
    );
}

#[tokio::test]
async fn sticky_sessions_stay_on_the_fallback() {
    let h = start(
        FAST,
        "health: { sticky_sessions: true, cooldown: { base: 200ms } }",
    )
    .await;
    plan(
        &h,
        &h.primary,
        json!([{"kind": "reset", "after_chunks": 0}]),
        json!({"kind": "ok"}),
    )
    .await;
    let sess = [
        ("content-type", "application/json"),
        ("x-switchyard-session", "sticky-1"),
    ];
    let r = post_raw(
        &h,
        "/v1/chat/completions",
        openai_body(false).to_string(),
        &sess,
    )
    .await;
    assert_eq!(r.header("x-switchyard-backend"), Some("oa-fallback"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let r = post_raw(
            &h,
            "/v1/chat/completions",
            openai_body(false).to_string(),
            &sess,
        )
        .await;
        assert_eq!(
            r.header("x-switchyard-backend"),
            Some("oa-fallback"),
            "sticky session ping-ponged"
        );
    }
    let other = post(&h, "/v1/chat/completions", &openai_body(false)).await;
    assert_eq!(other.header("x-switchyard-backend"), Some("oa-primary"));
}

/// A gateway whose `primary` backend has a credential pool or a key file.
async fn start_with_keys(backend_keys: &str) -> (Harness, String) {
    let h = start_yaml(&format!(
        "backends:\n  primary: {{ api: anthropic_messages, base_url: \"PRIMARY_URL\", {backend_keys} }}\n  fallback: {{ api: anthropic_messages, base_url: \"FALLBACK_URL\" }}\nroutes:\n  claude: {{ chain: [ {{ backend: primary, model: m1 }}, {{ backend: fallback, model: m2 }} ] }}\nfailover: {{ backoff: {{ base: 5ms, max: 10ms }} }}\n"
    ))
    .await;
    let gw = h.gateway.clone();
    (h, gw)
}

#[tokio::test]
async fn a_rate_limited_key_moves_to_the_next_key_of_the_same_backend() {
    let (h, gw) = start_with_keys("api_key_env: [KEY_ONE, KEY_TWO]").await;
    plan(
        &h,
        &h.primary,
        json!([{"kind": "status", "status": 429, "headers": {"retry-after": "30"}}]),
        json!({"kind": "ok"}),
    )
    .await;
    let r = h
        .http
        .post(format!("{gw}/v1/messages"))
        .json(&anthropic_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-backend"], "primary");
    let keys: Vec<String> = request_log(&h, &h.primary)
        .await
        .iter()
        .map(|r| r["headers"]["x-api-key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["sk-key-one-111111", "sk-key-two-222222"]);
    assert_eq!(requests_seen(&h, &h.fallback).await, 0);
    // Key one is cooling down; the next request starts with key two.
    let _ = h
        .http
        .post(format!("{gw}/v1/messages"))
        .json(&anthropic_body(false))
        .send()
        .await
        .unwrap();
    let last = request_log(&h, &h.primary).await;
    assert_eq!(
        last.last().unwrap()["headers"]["x-api-key"],
        "sk-key-two-222222"
    );
}

#[tokio::test]
async fn a_401_rereads_a_rotated_key_file_and_retries_the_same_backend() {
    let dir = std::env::temp_dir().join(format!("switchyard-keyfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "old-oauth-token-1\n").unwrap();
    let (h, gw) = start_with_keys(&format!("api_key_file: {:?}", file.display().to_string())).await;
    plan(
        &h,
        &h.primary,
        json!([{"kind": "status", "status": 401}]),
        json!({"kind": "ok"}),
    )
    .await;
    // Another process rotates the token.
    std::fs::write(&file, "new-oauth-token-2\n").unwrap();
    let started = Instant::now();
    let r = h
        .http
        .post(format!("{gw}/v1/messages"))
        .json(&anthropic_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-backend"], "primary");
    let keys: Vec<String> = request_log(&h, &h.primary)
        .await
        .iter()
        .map(|r| r["headers"]["x-api-key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys, ["old-oauth-token-1", "new-oauth-token-2"]);
    assert_eq!(requests_seen(&h, &h.fallback).await, 0);
    assert!(started.elapsed() < Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_active_probe_ends_a_cooldown_early_without_a_user_request() {
    let h = start(
        FAST,
        "health: { cooldown: { base: 60s }, probe: { interval: 200ms } }",
    )
    .await;
    plan(
        &h,
        &h.primary,
        json!([{"kind": "reset", "after_chunks": 0}]),
        json!({"kind": "ok"}),
    )
    .await;
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.header("x-switchyard-backend"), Some("fallback"));
    let mut healed = false;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if scope(&admin(&h).await, "primary", "backend")["state"] == "healthy" {
            healed = true;
            break;
        }
    }
    assert!(healed, "the active probe did not heal the primary");
    let probe = request_log(&h, &h.primary).await.last().cloned().unwrap();
    assert_eq!(probe["body"]["max_tokens"], 1);
    assert_eq!(probe["body"]["model"], "claude-opus-4-7");
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.header("x-switchyard-backend"), Some("primary"));
}
