//! Token accounting: the usage each backend reports, in every dialect, same-dialect and
//! translated, streaming and not, counted per route and backend in `/metrics`, on the status
//! page, and never leaked to a client that did not ask for a usage chunk.

use serde_json::{json, Value};

use crate::support::*;

const CONFIG: &str = r#"
backends:
  claude: { api: anthropic_messages, base_url: "PRIMARY_URL", api_key_env: PRIMARY_KEY }
  gpt: { api: openai_chat, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }
  resp: { api: openai_responses, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }
routes:
  c: { chain: [ { backend: claude, model: claude-opus-4-7 } ] }
  g: { chain: [ { backend: gpt, model: gpt-4o } ] }
  r: { chain: [ { backend: resp, model: gpt-5 } ] }
"#;

/// `switchyard_tokens_total` by (route, backend, type).
async fn tokens(h: &Harness, route: &str, backend: &str, kind: &str) -> u64 {
    let text = scrape_metrics(&h.http, &h.gateway).await;
    let labels = [("route", route), ("backend", backend), ("type", kind)];
    sample_sum(&text, "switchyard_tokens_total", &labels) as u64
}

fn body_for(path: &str, route: &str, stream: bool) -> Value {
    match path {
        "/v1/messages" => json!({"model": route, "max_tokens": 64, "stream": stream,
                                 "messages": [{"role": "user", "content": "Say hello"}]}),
        "/v1/responses" => json!({"model": route, "stream": stream, "input": "Say hello"}),
        _ => json!({"model": route, "stream": stream,
                    "messages": [{"role": "user", "content": "Say hello"}]}),
    }
}

/// Every client dialect on every backend dialect, streaming and not: the backend's reported
/// tokens are counted for the serving route and backend.
#[tokio::test]
async fn every_pair_counts_the_tokens_its_backend_reported() {
    let h = start_yaml(CONFIG).await;
    for (route, backend) in [("c", "claude"), ("g", "gpt"), ("r", "resp")] {
        for path in ["/v1/messages", "/v1/chat/completions", "/v1/responses"] {
            for stream in [false, true] {
                let before = tokens(&h, route, backend, "input").await;
                let out_before = tokens(&h, route, backend, "output").await;
                let r = post(&h, path, &body_for(path, route, stream)).await;
                assert_eq!(r.status, 200, "{route} {path} stream={stream}: {}", r.text);
                let input = tokens(&h, route, backend, "input").await - before;
                let output = tokens(&h, route, backend, "output").await - out_before;
                let same_openai = backend == "gpt" && path == "/v1/chat/completions";
                if stream && same_openai {
                    // Same-dialect OpenAI streams carry usage only when the client asks
                    // (passthrough sends the client's request as it is).
                    assert_eq!(input, 0, "{route} {path}");
                    continue;
                }
                assert!(
                    input > 0,
                    "{route} {path} stream={stream}: no input tokens counted"
                );
                assert!(
                    output > 0,
                    "{route} {path} stream={stream}: no output tokens counted"
                );
                if !stream {
                    // What the client saw is what was counted (usage survives translation).
                    let v = r.json();
                    let seen = v
                        .pointer("/usage/input_tokens")
                        .or_else(|| v.pointer("/usage/prompt_tokens"))
                        .and_then(Value::as_u64)
                        .unwrap();
                    let cached = v
                        .pointer("/usage/cache_read_input_tokens")
                        .and_then(Value::as_u64)
                        .unwrap_or(0)
                        + v.pointer("/usage/cache_creation_input_tokens")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                    assert_eq!(seen + cached, input, "{route} {path}: {v}");
                }
            }
        }
    }
    // The status page's feed shows what each backend served.
    let mut feed = h
        .http
        .get(format!("{}/admin/events", h.gateway))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let snapshot: Value = loop {
        let chunk = feed
            .chunk()
            .await
            .unwrap()
            .expect("the feed sends a snapshot");
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(data) = text
            .split("\n\n")
            .filter(|b| b.contains('\n') || text.ends_with("\n\n"))
            .find_map(|b| b.lines().find_map(|l| l.strip_prefix("data: ")))
        {
            break serde_json::from_str(data).unwrap();
        }
    };
    for b in snapshot["backends"].as_array().unwrap() {
        assert!(b["tokens"]["input"].as_u64().unwrap() > 0, "{b}");
        assert!(b["tokens"]["output"].as_u64().unwrap() > 0, "{b}");
    }
}

/// An OpenAI client that did not ask for usage gets no usage chunk from a translated stream,
/// though the gateway counts the backend's tokens.
#[tokio::test]
async fn a_translated_stream_counts_tokens_without_leaking_a_usage_chunk() {
    let h = start_yaml(&format!(
        "{CONFIG}  oa-over-claude: {{ chain: [ {{ backend: claude, model: claude-opus-4-7 }} ] }}\n"
    ))
    .await;
    let r = post(
        &h,
        "/v1/chat/completions",
        &body_for("", "oa-over-claude", true),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("\"usage\""), "{}", r.text);
    assert!(tokens(&h, "oa-over-claude", "claude", "output").await > 0);
}
