//! Failure reports and secret hygiene: the exhaustion report in every format, the error event
//! that ends a cut stream, and no secret on any surface (responses, logs, admin API).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const PLANTED: &str = "sk-proj-PLANTEDsecret0123456789";

#[tokio::test]
async fn exhausted_report_in_both_dialects_and_as_problem_json() {
    let h = start(FAST, "").await;
    h.primary_always(status(529)).await;
    h.fallback_always(status(401)).await;
    let summary = "All 2 backends failed: oa-primary (gpt-4o) overloaded 529 after 3 attempts; oa-fallback (gpt-4o-mini) auth 401";

    let r = h.ask(Dialect::OpenAi, false).await;
    assert_eq!(r.status, 502);
    let v = r.json();
    assert_eq!(v["error"]["message"], summary);
    assert_eq!(v["error"]["type"], "fallback_exhausted");
    assert_eq!(v["error"]["failures"].as_array().unwrap().len(), 2);
    assert_eq!(v["error"]["failures"][0]["retryable"], true);
    assert_eq!(v["error"]["failures"][1]["retryable"], false);

    // Streaming requests with nothing sent yet get the same 502, not a stream (from the same
    // failures: both backends are healthy again, as they were for the first request).
    h.forget_health().await;
    let r = h.ask(Dialect::OpenAi, true).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json()["error"]["message"],
        summary,
        "same failures, same bytes"
    );

    h.forget_health().await;
    let r = post_raw(
        &h,
        "/v1/chat/completions",
        openai_body(false).to_string(),
        &[
            ("content-type", "application/json"),
            ("accept", "application/problem+json"),
            ("x-request-id", "req-problem-1"),
        ],
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let p = r.json();
    assert_eq!(p["status"], 502);
    assert_eq!(p["detail"], summary);
    assert_eq!(p["code"], "FALLBACK_EXHAUSTED");
    assert_eq!(p["request_id"], "req-problem-1");
    assert!(p["type"].as_str().unwrap().starts_with("urn:"));
    assert_eq!(p["failures"][0]["backend"], "oa-primary");
}

#[tokio::test]
async fn a_stream_cut_after_content_ends_with_its_reason_and_failure() {
    let h = start(FAST, "").await;
    h.primary_always(reset_after(2)).await;
    for dialect in Dialect::BOTH {
        let r = h.ask(dialect, true).await;
        let last = r.text.trim_end().rsplit("\n\n").next().unwrap().to_string();
        let data: Value = serde_json::from_str(last.split("data: ").nth(1).unwrap()).unwrap();
        let (err, failures) = if dialect == Dialect::Anthropic {
            (&data["error"], &data["failures"])
        } else {
            (&data["error"], &data["error"]["failures"])
        };
        assert_eq!(err["error_type"], "connection", "{dialect}: {last}");
        assert!(err["message"]
            .as_str()
            .unwrap()
            .contains("failed after the response started"));
        assert_eq!(failures[0]["reason"], "connection");
        assert_eq!(failures.as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn no_secret_leaks_into_responses_logs_admin_api_metrics_or_alerts() {
    let logs = captured_logs();
    let mark = logs.mark();
    let (hook, alerts) = receiver().await;
    let h = start(
        FAST,
        &format!("auth: {{ keys_env: [GATEWAY_KEY] }}\nhealth: {{ failure_threshold: {{ default: 1 }} }}\nalerts: {{ throttle: 0s, per_sink_per_minute: 1000, sinks: [ {{ kind: webhook, url: \"{hook}/alerts\" }}, {{ kind: log }} ] }}"),
    )
    .await;
    let auth = [
        ("content-type", "application/json"),
        ("authorization", "Bearer gw-secret-key"),
    ];
    // The upstream echoes the backend's own key and a planted secret in its error body and
    // headers, in both dialects.
    let leaky_openai = json!({"error": {"message": format!("Incorrect API key provided: {PRIMARY_KEY}. Also {PLANTED}."), "type": "invalid_request_error", "code": "invalid_api_key"}});
    let leaky_anthropic = json!({"type": "error", "error": {"type": "overloaded_error", "message": format!("x-api-key: {PRIMARY_KEY} and {PLANTED}")}});
    let headers = json!({"x-echo-key": PRIMARY_KEY, "retry-after": "0"});
    let mut seen = String::new();
    for (code, body, dialect) in [
        (401, &leaky_openai, Dialect::OpenAi),
        (529, &leaky_anthropic, Dialect::Anthropic),
        (400, &leaky_openai, Dialect::OpenAi),
        (400, &leaky_anthropic, Dialect::Anthropic),
    ] {
        for fallback_fails in [false, true] {
            for stream in [false, true] {
                for problem in [false, true] {
                    h.new_case().await;
                    let _ = h
                        .http
                        .post(format!("{}/admin/backends/primary/reset", h.gateway))
                        .send()
                        .await;
                    let _ = h
                        .http
                        .post(format!("{}/admin/backends/oa-primary/reset", h.gateway))
                        .send()
                        .await;
                    h.primary_always(
                        status(code)
                            .body(body.clone())
                            .with("headers", headers.clone()),
                    )
                    .await;
                    h.fallback_always(if fallback_fails {
                        status(500).body(body.clone())
                    } else {
                        ok()
                    })
                    .await;
                    let mut hdrs = auth.to_vec();
                    if problem {
                        hdrs.push(("accept", "application/problem+json"));
                    }
                    let r =
                        post_raw(&h, dialect.path(), dialect.body(stream).to_string(), &hdrs).await;
                    seen.push_str(&r.text);
                    for (k, v) in r.headers.iter() {
                        seen.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
                    }
                }
            }
        }
    }
    // A stream whose upstream error event (after content) echoes the key.
    h.primary_always(ok()).await;
    seen.push_str(&h.admin_backends().await.to_string());
    let metrics = scrape_metrics(&h.http, &h.gateway).await;
    seen.push_str(&metrics);
    let alert_bodies = || -> Vec<String> {
        alerts
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b)| String::from_utf8_lossy(b).to_string())
            .collect()
    };
    eventually(
        "an alert carries a scrubbed detail",
        Duration::from_secs(5),
        || async { alert_bodies().iter().any(|b| b.contains("[redacted]")) },
    )
    .await;
    let alert_bodies = alert_bodies();
    seen.push_str(&alert_bodies.join("\n"));
    assert!(
        seen.contains("[redacted]"),
        "the test did not exercise the scrubber: {seen}"
    );
    // Other tests' lines may be in the window too: none may hold these secrets either.
    let logs = logs.since(mark);
    assert!(logs.contains("attempt failed"), "no logs were captured");
    for secret in [PRIMARY_KEY, FALLBACK_KEY, PLANTED, "gw-secret-key"] {
        assert!(
            !seen.contains(secret),
            "{secret} leaked to a client, the admin API, /metrics or an alert"
        );
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}
