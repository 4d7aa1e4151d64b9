//! `api_key_command`: a backend's key printed by a command (an OAuth token, a cloud CLI, a
//! vault read) — run at load, re-run on a 401 before failing over and on its refresh
//! interval, bounded by its timeout, and every token it yields scrubbed.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::procs::TempDir;
use crate::support::*;

/// A token script: each run prints `sk-cmd-token-N` (N counts runs); once `DIR/hang` exists,
/// runs after the first hang instead.
fn token_script(dir: &TempDir) -> String {
    let d = dir.0.display();
    let script = format!(
        "n=$(cat {d}/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > {d}/count\n\
         if [ -e {d}/hang ] && [ $n -gt 1 ]; then sleep 30; fi\n\
         echo \"sk-cmd-token-$n\"\n"
    );
    let path = dir.0.join("token.sh");
    std::fs::write(&path, script).unwrap();
    path.display().to_string()
}

fn runs(dir: &TempDir) -> u32 {
    std::fs::read_to_string(dir.0.join("count"))
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(0)
}

fn config(script: &str, extra: &str) -> String {
    format!(
        r#"
backends:
  primary: {{ api: anthropic_messages, base_url: "PRIMARY_URL", api_key_command: {{ argv: [/bin/sh, "{script}"], timeout: 1s{extra} }} }}
  fallback: {{ api: anthropic_messages, base_url: "FALLBACK_URL", api_key_env: FALLBACK_KEY }}
routes:
  claude: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
  only-primary: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }} ] }}
failover: {{ retries: 1, backoff: {{ base: 5ms, max: 10ms }} }}
health: {{ failure_threshold: {{ default: 1000, connection: 1000, timeout: 1000 }} }}
"#
    )
}

async fn keys_seen(h: &Harness, m: &MockHandle) -> Vec<String> {
    request_log(h, m)
        .await
        .iter()
        .map(|r| r["headers"]["x-api-key"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn a_401_re_runs_the_command_and_the_retry_carries_the_new_token() {
    let dir = TempDir::new("keycmd");
    let h = start_yaml(&config(&token_script(&dir), "")).await;
    assert_eq!(runs(&dir), 1, "run once at load");
    h.primary_then([status(401)], ok()).await;
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.backend(),
        Some("primary"),
        "the new token worked: no failover"
    );
    assert_eq!(runs(&dir), 2);
    assert_eq!(
        keys_seen(&h, &h.primary).await,
        ["sk-cmd-token-1", "sk-cmd-token-2"]
    );
}

#[tokio::test]
async fn every_token_the_command_yields_is_scrubbed() {
    let dir = TempDir::new("keycmd");
    let h = start_yaml(&config(&token_script(&dir), "")).await;
    // An upstream that echoes the key it was sent (some do, in their 401 message).
    for token in ["sk-cmd-token-1", "sk-cmd-token-2"] {
        h.primary_always(status(401).body(json!({"type": "error",
            "error": {"type": "authentication_error", "message": format!("invalid x-api-key {token}")}})))
            .await;
        let mut body = anthropic_body(false);
        body["model"] = json!("only-primary");
        let r = post(&h, "/v1/messages", &body).await;
        assert_eq!(r.status, 502, "{}", r.text);
        assert!(
            !r.text.contains("sk-cmd-token"),
            "{token} leaked: {}",
            r.text
        );
        h.forget_health().await;
    }
}

/// A command that hangs is killed at its timeout; the request fails over instead of waiting.
#[tokio::test]
async fn a_hanging_command_is_bounded_by_its_timeout_and_the_request_fails_over() {
    let dir = TempDir::new("keycmd");
    let h = start_yaml(&config(&token_script(&dir), "")).await;
    std::fs::write(dir.0.join("hang"), "").unwrap();
    h.primary_always(status(401)).await;
    let started = Instant::now();
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.backend(), Some("fallback"));
    assert!(
        took >= Duration::from_secs(1) && took < PROMPTLY,
        "the command's 1 s timeout bounds the wait: {took:?}"
    );
    let admin = h.admin_backends().await;
    let credential = admin["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["credential"] == "command:sh")
        .unwrap();
    assert_eq!(
        credential["state"], "cooling_down",
        "the credential is out, not the gateway: {admin}"
    );
    assert_eq!(credential["last_reason"], "auth");
}

#[tokio::test]
async fn the_command_is_re_run_on_its_refresh_interval() {
    let dir = TempDir::new("keycmd");
    let h = start_yaml(&config(&token_script(&dir), ", refresh_every: 200ms")).await;
    eventually("two background refreshes", PROMPTLY, || async {
        runs(&dir) >= 3
    })
    .await;
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = keys_seen(&h, &h.primary).await;
    assert_ne!(
        seen[0], "sk-cmd-token-1",
        "the refreshed token is used: {seen:?}"
    );
}
