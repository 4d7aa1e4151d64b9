//! Failure reports and secret hygiene: the exhaustion report in every format, the error event
//! that ends a cut stream, and no secret on any surface (responses, logs, admin API).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use serde_json::{json, Value};

/// Every log line of this test binary, captured at trace level.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PLANTED: &str = "sk-proj-PLANTEDsecret0123456789";

#[tokio::test]
async fn exhausted_report_in_both_dialects_and_as_problem_json() {
    let h = start(FAST, "").await;
    plan(
        &h,
        &h.primary,
        json!([]),
        json!({"kind": "status", "status": 529}),
    )
    .await;
    plan(
        &h,
        &h.fallback,
        json!([]),
        json!({"kind": "status", "status": 401}),
    )
    .await;
    let summary = "All 2 backends failed: oa-primary (gpt-4o) overloaded 529 after 3 attempts; oa-fallback (gpt-4o-mini) auth 401";

    let r = post(&h, "/v1/chat/completions", &openai_body(false)).await;
    assert_eq!(r.status, 502);
    let v = r.json();
    assert_eq!(v["error"]["message"], summary);
    assert_eq!(v["error"]["type"], "fallback_exhausted");
    assert_eq!(v["error"]["failures"].as_array().unwrap().len(), 2);
    assert_eq!(v["error"]["failures"][0]["retryable"], true);
    assert_eq!(v["error"]["failures"][1]["retryable"], false);

    // Streaming requests with nothing sent yet get the same 502, not a stream.
    let r = post(&h, "/v1/chat/completions", &openai_body(true)).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json()["error"]["message"],
        summary,
        "same failures, same bytes"
    );

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
    plan(
        &h,
        &h.primary,
        json!([]),
        json!({"kind": "reset", "after_chunks": 2}),
    )
    .await;
    for (dialect, path) in [
        ("anthropic", "/v1/messages"),
        ("openai", "/v1/chat/completions"),
    ] {
        let r = post(&h, path, &body_of(dialect, true)).await;
        let last = r.text.trim_end().rsplit("\n\n").next().unwrap().to_string();
        let data: Value = serde_json::from_str(last.split("data: ").nth(1).unwrap()).unwrap();
        let (err, failures) = if dialect == "anthropic" {
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
    let log = logs().clone();
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
    for (status, body, dialect) in [
        (401, &leaky_openai, "openai"),
        (529, &leaky_anthropic, "anthropic"),
        (400, &leaky_openai, "openai"),
        (400, &leaky_anthropic, "anthropic"),
    ] {
        for fallback_fails in [false, true] {
            for stream in [false, true] {
                for problem in [false, true] {
                    h.primary.reset();
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
                    plan(&h, &h.primary, json!([]), json!({"kind": "status", "status": status, "body": body, "headers": headers})).await;
                    let fb = if fallback_fails {
                        json!({"kind": "status", "status": 500, "body": body})
                    } else {
                        json!({"kind": "ok"})
                    };
                    plan(&h, &h.fallback, json!([]), fb).await;
                    let mut hdrs = auth.to_vec();
                    if problem {
                        hdrs.push(("accept", "application/problem+json"));
                    }
                    let r = post_raw(
                        &h,
                        path_of(dialect),
                        body_of(dialect, stream).to_string(),
                        &hdrs,
                    )
                    .await;
                    seen.push_str(&r.text);
                    for (k, v) in r.headers.iter() {
                        seen.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("")));
                    }
                }
            }
        }
    }
    // A stream whose upstream error event (after content) echoes the key.
    plan(&h, &h.primary, json!([]), json!({"kind": "ok"})).await;
    let admin: Value = h
        .http
        .get(format!("{}/admin/backends", h.gateway))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    seen.push_str(&admin.to_string());
    let metrics = h
        .http
        .get(format!("{}/metrics", h.gateway))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    seen.push_str(&metrics);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let alert_bodies: Vec<String> = alerts
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, b)| String::from_utf8_lossy(b).to_string())
        .collect();
    assert!(
        alert_bodies.iter().any(|b| b.contains("[redacted]")),
        "no alert carried a scrubbed detail: {alert_bodies:?}"
    );
    seen.push_str(&alert_bodies.join("\n"));
    assert!(
        seen.contains("[redacted]"),
        "the test did not exercise the scrubber: {seen}"
    );
    let logs = String::from_utf8_lossy(&log.lock().unwrap()).to_string();
    assert!(logs.contains("attempt failed"), "no logs were captured");
    for secret in [PRIMARY_KEY, FALLBACK_KEY, PLANTED, "gw-secret-key"] {
        assert!(
            !seen.contains(secret),
            "{secret} leaked to a client, the admin API, /metrics or an alert"
        );
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}
