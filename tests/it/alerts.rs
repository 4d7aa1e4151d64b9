//! Alerts and metrics end to end: a fake Telegram Bot API and a webhook receiver on ephemeral
//! ports, a hanging sink that must not slow requests, and `/metrics` moving with failovers.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// A server that accepts connections and never answers.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    format!("http://{addr}")
}

async fn wait_for(got: &Received, n: usize) {
    eventually(
        &format!("{n} alert(s) delivered"),
        Duration::from_secs(5),
        || async { got.lock().unwrap().len() >= n },
    )
    .await;
}

async fn scrape(h: &Harness, gw: &str) -> String {
    scrape_metrics(&h.http, gw).await
}

/// A gateway whose primary has an awkward name, to prove MarkdownV2 escaping.
async fn start_named(alerts: &str) -> (Harness, String) {
    let h = start_yaml(&format!(
        "backends:\n  \"gpt_4o-mini*[beta]\": {{ api: openai_chat, base_url: \"PRIMARY_URL/v1\" }}\n  backup: {{ api: openai_chat, base_url: \"FALLBACK_URL/v1\" }}\nroutes:\n  main: {{ chain: [ {{ backend: \"gpt_4o-mini*[beta]\", model: gpt-4o }}, {{ backend: backup, model: m.2 }} ] }}\nfailover: {{ retries: 0 }}\nhealth: {{ failure_threshold: {{ default: 1000, connection: 1000, timeout: 1000 }} }}\n{alerts}\n"
    ))
    .await;
    let gw = h.gateway.clone();
    (h, gw)
}

async fn ask(h: &Harness, gw: &str) -> u16 {
    let r = h
        .http
        .post(format!("{gw}/v1/chat/completions"))
        .json(&json!({"model": "main", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let _ = r.bytes().await;
    status
}

#[tokio::test]
async fn a_failover_burst_sends_one_telegram_alert_with_escaped_markdown() {
    let (tg, got) = receiver().await;
    let (h, gw) = start_named(&format!(
        "alerts: {{ throttle: 300s, sinks: [ {{ kind: telegram, bot_token_env: TG_TOKEN, chat_id: \"-1001234567890\", api_base: \"{tg}\", events: [fallback_activated] }} ] }}"
    ))
    .await;
    h.primary_always(status(529)).await;
    for _ in 0..20 {
        assert_eq!(ask(&h, &gw).await, 200);
    }
    wait_for(&got, 1).await;
    // Every one of the 20 alerts has been through the throttle once the other 19 are counted
    // as suppressed; an alert that got through instead would leave this short for ever.
    let suppressed = || async {
        let m = scrape(&h, &gw).await;
        sample(
            &m,
            &[
                "switchyard_alerts_total{",
                "sink=\"throttle\"",
                "result=\"suppressed\"",
            ],
        ) == Some(19.0)
    };
    eventually("19 alerts suppressed", Duration::from_secs(5), suppressed).await;
    let got = got.lock().unwrap();
    assert_eq!(
        got.len(),
        1,
        "a burst within the throttle window must yield exactly one alert"
    );
    let (path, _, body) = &got[0];
    assert_eq!(path, "/bot123456:telegram-bot-token-value/sendMessage");
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["chat_id"], "-1001234567890");
    assert_eq!(v["parse_mode"], "MarkdownV2");
    let text = v["text"].as_str().unwrap();
    assert!(text.contains(r"*Switchyard: fallback activated*"), "{text}");
    assert!(
        text.contains(r"*Primary:* gpt\_4o\-mini\*\[beta\] \(gpt\-4o\)"),
        "{text}"
    );
    assert!(text.contains(r"*Now serving:* backup \(m\.2\)"), "{text}");
    assert!(text.contains(r"*Reason:* overloaded 529"), "{text}");
    assert!(text.contains("*Request:* req"), "{text}");
}

#[tokio::test]
async fn webhook_alerts_are_signed_with_hmac_sha256() {
    let (hook, got) = receiver().await;
    let (h, gw) = start_named(&format!(
        "alerts: {{ sinks: [ {{ kind: webhook, url: \"{hook}/hooks/switchyard\", secret_env: HOOK_SECRET, events: [fallback_exhausted] }} ] }}"
    ))
    .await;
    h.primary_always(status(500)).await;
    h.fallback_always(status(401)).await;
    assert_eq!(ask(&h, &gw).await, 502);
    wait_for(&got, 1).await;
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let (path, headers, body) = &got[0];
    assert_eq!(path, "/hooks/switchyard");
    let sig = headers["x-switchyard-signature"].to_str().unwrap();
    assert_eq!(sig, webhook_signature("webhook-shared-secret", body));
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["event"], "fallback_exhausted");
    assert_eq!(v["route"], "main");
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .starts_with("All 2 backends failed"));
    assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
    assert!(v["at"].is_string() && v["text"].is_string());
}

#[tokio::test]
async fn a_hanging_sink_never_slows_requests_and_its_overflow_is_counted() {
    let hole = black_hole().await;
    let (h, gw) = start_named(&format!(
        "alerts: {{ throttle: 0s, per_sink_per_minute: 10000, sinks: [ {{ kind: webhook, url: \"{hole}/x\" }} ] }}"
    ))
    .await;
    h.primary_always(status(529)).await;
    // Every request fires an alert into the black hole. A request that waited on the sink
    // would take its whole send timeout (5 s): 40 of them, minutes.
    ask(&h, &gw).await;
    let started = Instant::now();
    for _ in 0..40 {
        assert_eq!(ask(&h, &gw).await, 200);
    }
    assert!(
        started.elapsed() < PROMPTLY,
        "40 requests took {:?} with a hanging sink",
        started.elapsed()
    );
    let metrics = scrape(&h, &gw).await;
    let dropped = metrics
        .lines()
        .find(|l| {
            l.starts_with("switchyard_alerts_total")
                && l.contains("sink=\"webhook\"")
                && l.contains("result=\"dropped\"")
        })
        .unwrap_or_else(|| panic!("no dropped counter:\n{metrics}"));
    let n: f64 = dropped.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 20.0, "{dropped}");
}

#[tokio::test]
async fn metrics_move_as_failovers_happen() {
    let (h, gw) = start_named("").await;
    h.primary_always(status(529)).await;
    for _ in 0..3 {
        // Three failovers, not one and two skips: the primary is healthy again each time.
        h.forget_health().await;
        ask(&h, &gw).await;
    }
    let m = scrape(&h, &gw).await;
    let line = |needles: &[&str]| -> f64 {
        sample(&m, needles).unwrap_or_else(|| panic!("no line with {needles:?} in\n{m}"))
    };
    assert_eq!(
        line(&[
            "switchyard_requests_total{",
            "route=\"main\"",
            "backend=\"backup\"",
            "outcome=\"served\""
        ]),
        3.0
    );
    assert_eq!(
        line(&[
            "switchyard_attempts_total{",
            "backend=\"gpt_4o-mini*[beta]\"",
            "result=\"overloaded\""
        ]),
        3.0
    );
    assert_eq!(
        line(&[
            "switchyard_failovers_total{",
            "from=\"gpt_4o-mini*[beta]\"",
            "to=\"backup\""
        ]),
        3.0
    );
    assert_eq!(line(&["switchyard_in_flight_requests"]), 0.0);
    assert!(
        m.contains("switchyard_upstream_duration_seconds_bucket"),
        "{m}"
    );
    assert!(m.contains("switchyard_backend_state{"), "{m}");
}

/// The fallback alert says what the answer cost, and the window's digest what the held-back
/// requests cost the fallback: the operator sees the bill, not only the count.
#[tokio::test]
async fn fallback_alerts_and_their_digest_carry_token_counts() {
    let (hook, got) = receiver().await;
    let (h, gw) = start_named(&format!(
        "alerts: {{ throttle: 1s, sinks: [ {{ kind: webhook, url: \"{hook}/hooks\", events: [fallback_activated] }} ] }}"
    ))
    .await;
    h.primary_always(status(529)).await;
    for _ in 0..5 {
        assert_eq!(ask(&h, &gw).await, 200);
    }
    wait_for(&got, 2).await;
    let got = got.lock().unwrap();
    let bodies: Vec<Value> = got
        .iter()
        .map(|(_, _, b)| serde_json::from_slice(b).unwrap())
        .collect();
    let first = &bodies[0]["tokens"];
    assert!(first["input"].as_u64().unwrap() > 0, "{}", bodies[0]);
    assert!(
        bodies[0]["text"].as_str().unwrap().contains("Tokens: "),
        "{}",
        bodies[0]
    );
    let digest = &bodies[1];
    assert_eq!(digest["suppressed"], 4, "{digest}");
    assert_eq!(
        digest["tokens"]["input"].as_u64().unwrap(),
        4 * first["input"].as_u64().unwrap(),
        "the four held-back requests' tokens: {digest}"
    );
    assert!(
        digest["text"]
            .as_str()
            .unwrap()
            .contains("Tokens (held back): "),
        "{digest}"
    );
}
