//! Real agents, unchanged: requests captured from Claude Code, Codex and Hermes
//! (`fixtures/agents/*/*.json`, each with its `source`) replayed at the gateway with exactly the
//! headers and body the agent sent — no Switchyard header anywhere. Sessions and turns come
//! from what the agents send (see `src/session.rs`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

/// Sends a captured request as the agent did (its path, headers and body).
async fn replay(h: &Harness, name: &str) -> Reply {
    let c = captured_request(name);
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = post_raw(h, &c.path, c.body.to_string(), &headers).await;
    assert_eq!(r.status, 200, "{name}: {}", r.text);
    r
}

/// Routes named as the captured requests name their models; anthropic and openai chains on
/// the two mocks. Thresholds are out of reach: only the give-up rule and the turns decide.
fn agents_config(extra: &str) -> String {
    format!(
        r#"
backends:
  primary: {{ api: anthropic_messages, base_url: "PRIMARY_URL", api_key_env: PRIMARY_KEY }}
  fallback: {{ api: anthropic_messages, base_url: "FALLBACK_URL", api_key_env: FALLBACK_KEY }}
  oa-primary: {{ api: openai_chat, base_url: "PRIMARY_URL/v1", api_key_env: PRIMARY_KEY }}
  oa-fallback: {{ api: openai_chat, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }}
routes:
  claude-opus-5-5: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
  gpt-test: {{ chain: [ {{ backend: oa-primary, model: gpt-4o }}, {{ backend: oa-fallback, model: gpt-4o-mini }} ] }}
failover: {{ retries: 1, backoff: {{ base: 5ms, max: 20ms }} }}
health: {{ failure_threshold: {{ default: 1000, connection: 1000, timeout: 1000 }} }}
{extra}
"#
    )
}

/// Seed 002 with Claude Code as it is: its main call fails over; the cooldown ends (an
/// operator reset stands in for the clock); the tool-loop call of the same turn and the title
/// call of the session still stay off the primary; the next turn goes back to it.
#[tokio::test]
async fn claude_code_turns_keep_their_fallback_without_any_switchyard_header() {
    let h = start_yaml(&agents_config("")).await;
    h.primary_always(status(401)).await;
    let main = replay(&h, "claude_code/04_tool_loop_first").await;
    assert_eq!(main.backend(), Some("fallback"));
    assert_eq!(h.primary_requests().await, 1);
    h.forget_health().await;
    let tool_loop = replay(&h, "claude_code/05_tool_loop_tool_result").await;
    assert_eq!(tool_loop.backend(), Some("fallback"));
    assert_eq!(
        h.primary_requests().await,
        1,
        "the tool-loop call of the turn went back to the primary that failed in it"
    );

    // Another session: turn 2 of an interactive run fails over, then its title call.
    let turn2 = replay(&h, "claude_code/06_interactive_main_turn2").await;
    assert_eq!(turn2.backend(), Some("fallback"));
    assert_eq!(h.primary_requests().await, 2);
    h.forget_health().await;
    let title = replay(&h, "claude_code/07_interactive_title").await;
    assert_eq!(title.backend(), Some("fallback"));
    assert_eq!(
        h.primary_requests().await,
        2,
        "the title call hit the backend that just failed the session's main call"
    );
}

/// With Claude Code's gateway hint headers, its prompt id is the turn: the title call (which
/// carries none) joins the current prompt's turn, and the next prompt is a new turn.
#[tokio::test]
async fn claude_code_prompt_ids_are_turns_and_the_next_prompt_returns_to_a_healthy_primary() {
    let h = start_yaml(&agents_config("")).await;
    h.primary_always(status(401)).await;
    assert_eq!(
        replay(&h, "claude_code/11_hints_interactive_turn1")
            .await
            .backend(),
        Some("fallback")
    );
    h.forget_health().await;
    assert_eq!(
        replay(&h, "claude_code/12_hints_interactive_title")
            .await
            .backend(),
        Some("fallback")
    );
    assert_eq!(h.primary_requests().await, 1);
    h.primary_always(ok()).await;
    assert_eq!(
        replay(&h, "claude_code/13_hints_interactive_turn2")
            .await
            .backend(),
        Some("primary"),
        "a new turn with a healthy primary goes back to it"
    );
}

/// Hermes on a custom endpoint sends no id at all: its conversation is fingerprinted, so the
/// tool-loop call of a turn that failed over stays on the fallback.
#[tokio::test]
async fn hermes_tool_loop_keeps_its_fallback_from_a_fingerprinted_conversation() {
    let h = start_yaml(&agents_config("")).await;
    h.primary_always(status(402)).await;
    let main = replay(&h, "hermes/01_custom_main_tools").await;
    assert_eq!(main.backend(), Some("oa-fallback"));
    h.forget_health().await;
    let tool_loop = replay(&h, "hermes/02_custom_tool_result").await;
    assert_eq!(tool_loop.backend(), Some("oa-fallback"));
    assert_eq!(h.primary_requests().await, 1);
}

/// Seed 000's alert for a header-free agent: the session's first backend is its primary; the
/// request served elsewhere raises fallback_activated naming the session, the platform (from
/// the User-Agent) and the finish reason of the answer.
#[tokio::test]
async fn the_fallback_alert_names_the_derived_session_the_platform_and_the_finish_reason() {
    let (hook, got) = receiver().await;
    let h = start_yaml(&agents_config(&format!(
        "alerts: {{ throttle: 0s, sinks: [ {{ kind: webhook, url: \"{hook}/alerts\", events: [fallback_activated] }} ] }}"
    )))
    .await;
    h.primary_always(status(529)).await;
    let r = replay(&h, "claude_code/04_tool_loop_first").await;
    assert_eq!(r.backend(), Some("fallback"));
    eventually("the fallback alert", Duration::from_secs(5), || async {
        !got.lock().unwrap().is_empty()
    })
    .await;
    let (_, _, body) = got.lock().unwrap()[0].clone();
    let alert: Value = serde_json::from_slice(&body).unwrap();
    let alert = if alert.get("alert").is_some() {
        alert["alert"].clone()
    } else {
        alert
    };
    assert_eq!(alert["event"], "fallback_activated", "{alert}");
    assert_eq!(
        alert["session"], "claude_code:6abafbc0-cb95-44b0-8b1c-176566131564",
        "{alert}"
    );
    assert_eq!(alert["platform"], "claude-cli", "{alert}");
    assert_eq!(alert["finish_reason"], "end_turn", "{alert}");
    assert_eq!(
        alert["serving"],
        json!({"backend": "fallback", "model": "claude-sonnet-4-5"})
    );
}

/// Claude Code's `/context` counts tokens (`POST /v1/messages/count_tokens?beta=true`, with
/// its beta headers): the captured calls, replayed unchanged, are answered by the fallback
/// while the primary is overloaded, with the chain entry's model, and leave health alone.
#[tokio::test]
async fn claude_code_token_counts_fail_over_to_the_fallback() {
    let h = start_yaml(&agents_config("")).await;
    h.primary_always(status(529)).await;
    for name in [
        "claude_code/14_context_count_tokens_probe",
        "claude_code/15_context_count_tokens_tools",
    ] {
        let r = replay(&h, name).await;
        assert_eq!(r.backend(), Some("fallback"), "{name}");
        assert!(
            r.json()["input_tokens"].as_u64().unwrap() > 0,
            "{name}: {}",
            r.text
        );
        let sent = request_log(&h, &h.fallback).await.pop().unwrap();
        assert_eq!(
            sent["path"], "/v1/messages/count_tokens",
            "the backend's own URL"
        );
        assert_eq!(sent["body"]["model"], "claude-sonnet-4-5");
    }
    let admin = h.admin_backends().await;
    assert!(
        admin["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "healthy"),
        "a side endpoint does not eject: {admin}"
    );
}
