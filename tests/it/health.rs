//! Health-aware routing end to end: cooldowns, probes, primary restoration, turn exclusions,
//! credential pools, sticky sessions and the admin API, asserted through the mocks' counters.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

const FAST_HEALTH: &str = "health: { cooldown: { base: 1s, max: 4s } }";

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
    h.primary_always(reset_after(0)).await;
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_eq!(r.backend(), Some("fallback"));
    for i in 0..25 {
        let r = h.ask(Dialect::Anthropic, i % 2 == 0).await;
        assert_served_by(&r, "fallback", 1);
    }
    assert_eq!(
        h.primary_requests().await,
        1,
        "a cooling primary was touched"
    );
    let v = h.admin_backends().await;
    let s = scope(&v, "primary", "backend");
    assert_eq!(s["state"], "cooling_down");
    assert_eq!(s["last_reason"], "connection");
    assert!(s["cooldown_remaining_s"].as_f64().unwrap() > 25.0);
}

#[tokio::test]
async fn retries_count_toward_the_threshold_so_the_next_call_skips_the_backend() {
    // Default threshold 3 = the first request's three attempts (retries: 2).
    let h = start(FAST, "health: { cooldown: { base: 30s } }").await;
    h.primary_always(status(529)).await;
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_eq!(r.attempts(), Some(4));
    let r = h.ask(Dialect::OpenAi, false).await;
    assert_eq!(
        r.attempts(),
        Some(1),
        "the title call touched the primary again"
    );
    assert_eq!(h.primary_requests().await, 3);
}

#[tokio::test]
async fn after_the_cooldown_one_probe_goes_first_then_traffic_returns() {
    let h = start(FAST, FAST_HEALTH).await;
    h.primary_then([reset_after(0), ok().with("delay_ms", 600)], ok())
        .await;
    h.ask(Dialect::Anthropic, false).await;
    h.until_cooldown_ends("primary").await;
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
        h.primary_requests().await,
        2,
        "more than one probe reached the primary"
    );
    // The probe succeeded: the primary is healthy and gets the traffic again.
    for _ in 0..5 {
        let r = h.ask(Dialect::Anthropic, false).await;
        assert_eq!(r.backend(), Some("primary"));
    }
    assert_eq!(
        scope(&h.admin_backends().await, "primary", "backend")["state"],
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
    h.primary_then([status(500)], ok()).await;
    let turn = [
        ("content-type", "application/json"),
        ("x-switchyard-session", "sess-1"),
        ("x-switchyard-turn", "7"),
    ];
    let main_call = post_raw(&h, "/v1/messages", anthropic_body(false).to_string(), &turn).await;
    assert_eq!(main_call.header("x-switchyard-backend"), Some("fallback"));
    // Once the cooldown has expired, the turn still remembers.
    h.until_cooldown_ends("primary").await;
    let title_call = post_raw(&h, "/v1/messages", anthropic_body(false).to_string(), &turn).await;
    assert_eq!(title_call.header("x-switchyard-backend"), Some("fallback"));
    assert_eq!(
        h.primary_requests().await,
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
    h.primary_always(status(400).body(overflow)).await;
    for _ in 0..5 {
        let r = h.ask(Dialect::Anthropic, false).await;
        assert_eq!(r.status, 400);
    }
    h.primary_always(ok()).await;
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_eq!(r.backend(), Some("primary"));
    assert_eq!(
        scope(&h.admin_backends().await, "primary", "backend")["failures"],
        0
    );
}

#[tokio::test]
async fn a_long_retry_after_cools_the_scope_that_long() {
    let h = start(FAST, "").await;
    h.primary_then([status(429).header("retry-after", "120")], ok())
        .await;
    h.ask(Dialect::Anthropic, false).await;
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_eq!(r.backend(), Some("fallback"));
    let s = scope(&h.admin_backends().await, "primary", "credential").clone();
    assert_eq!(s["state"], "cooling_down");
    assert!(s["cooldown_remaining_s"].as_f64().unwrap() > 100.0, "{s}");
    assert_eq!(h.primary_requests().await, 1);
}

#[tokio::test]
async fn when_everything_is_cooling_the_soonest_ending_entry_is_tried() {
    let h = start(FAST, "health: { cooldown: { base: 30s } }").await;
    h.primary_then([reset_after(0)], ok()).await;
    h.fallback_then([reset_after(0)], ok()).await;
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_eq!(r.status, 502);
    // Both are out for 30 s; the primary's cooldown started first, so it ends soonest.
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.backend(), Some("primary"));
}

#[tokio::test]
async fn admin_reset_and_skipped_entries_in_the_report() {
    let h = start(FAST, "health: { cooldown: { base: 30s } }").await;
    h.primary_always(reset_after(0)).await;
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_eq!(r.backend(), Some("fallback"));
    h.fallback_always(status(401)).await;
    // The primary is cooling down: the next exhausted report lists it as skipped with its
    // last failure.
    let r = h.ask(Dialect::Anthropic, false).await;
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
        scope(&h.admin_backends().await, "primary", "backend")["state"],
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
    h.primary_then([reset_after(0)], ok()).await;
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
    assert_eq!(r.backend(), Some("oa-fallback"));
    h.until_cooldown_ends("oa-primary").await;
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
    let other = h.ask(Dialect::OpenAi, false).await;
    assert_eq!(other.backend(), Some("oa-primary"));
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
    h.primary_then([status(429).header("retry-after", "30")], ok())
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
    assert_eq!(h.fallback_requests().await, 0);
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
    h.primary_then([status(401)], ok()).await;
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
    assert_eq!(h.fallback_requests().await, 0);
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_active_probe_ends_a_cooldown_early_without_a_user_request() {
    let h = start(
        FAST,
        "health: { cooldown: { base: 60s }, probe: { interval: 200ms } }",
    )
    .await;
    h.primary_then([reset_after(0)], ok()).await;
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_eq!(r.backend(), Some("fallback"));
    // The cooldown is 60 s: only the probe can heal the primary this soon.
    eventually(
        "the active probe heals the primary",
        Duration::from_secs(5),
        || async { h.backend_state("primary").await == "healthy" },
    )
    .await;
    let probe = request_log(&h, &h.primary).await.last().cloned().unwrap();
    assert_eq!(probe["body"]["max_tokens"], 1);
    assert_eq!(probe["body"]["model"], "claude-opus-4-7");
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_eq!(r.backend(), Some("primary"));
}

/// Issue 14 §1: when the engine moves on from a scope because of the upstream (its retries
/// spent, or a reason no retry cures), that scope is out at once, whatever the streak, so an
/// agent's next call (its title, its summary) does not hit it again. Harness thresholds are
/// 1000 here: only the give-up rule can eject.
#[tokio::test]
async fn a_scope_the_engine_gave_up_on_is_ejected_at_once_per_reason() {
    let h = start(FAST, "").await;
    let insufficient_quota = status(429).body(json!({"type": "error", "error": {
        "type": "rate_limit_error", "message": "insufficient_quota: your credit balance is too low"}}));
    let cases = [
        ("auth", status(401), "credential", 1),
        ("permission", status(403), "credential", 1),
        ("quota", status(402), "credential", 1),
        ("insufficient quota", insufficient_quota, "credential", 1),
        ("model not found", status(404), "model", 1),
        ("overloaded, retries spent", status(529), "backend", 3),
        ("server error, retries spent", status(500), "backend", 3),
        ("connection", reset_after(0), "backend", 1),
    ];
    for (case, failure, kind, attempts) in cases {
        h.new_case().await;
        h.primary_always(failure).await;
        let main_call = h.ask(Dialect::Anthropic, false).await;
        assert_eq!(
            main_call.backend(),
            Some("fallback"),
            "{case}: {}",
            main_call.text
        );
        assert_eq!(h.primary_requests().await, attempts, "{case}");
        let s = scope(&h.admin_backends().await, "primary", kind).clone();
        assert_eq!(s["state"], "cooling_down", "{case}: {s}");
        assert_eq!(s["streak"], attempts, "{case}: ejected below the threshold");
        let title_call = h.ask(Dialect::Anthropic, false).await;
        assert_eq!(title_call.backend(), Some("fallback"), "{case}");
        assert_eq!(
            h.primary_requests().await,
            attempts,
            "{case}: the follow-up call hit the scope the engine gave up on"
        );
    }
}

/// The threshold keeps its meaning for failures a retry cured: the scope stays in.
#[tokio::test]
async fn a_failure_a_retry_cured_does_not_eject() {
    let h = start(FAST, "").await;
    h.primary_then([status(500), status(529)], ok()).await;
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_served_by(&r, "primary", 3);
    let s = scope(&h.admin_backends().await, "primary", "backend").clone();
    assert_eq!(s["state"], "healthy", "{s}");
    let r = h.ask(Dialect::Anthropic, false).await;
    assert_served_by(&r, "primary", 1);
}
