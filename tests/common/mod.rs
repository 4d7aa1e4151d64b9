//! Test harness: mock upstreams and a gateway on ephemeral ports, plus small client helpers.
#![allow(dead_code)]

pub mod hostile;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use serde_json::{json, Value};
use switchyard::app::Gateway;
use switchyard::config::Config;
use switchyard::mock::{self, MockHandle};

pub struct Harness {
    pub gateway: String,
    pub primary: MockHandle,
    pub fallback: MockHandle,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub const PRIMARY_KEY: &str = "sk-primary-0123456789abcdef";
pub const FALLBACK_KEY: &str = "sk-fallback-0123456789abcdef";

/// Two mocks (`primary`, `fallback`) and a gateway with routes `claude` (anthropic chain) and
/// `gpt` (openai chain). `failover` is YAML for the top-level `failover:` block; `extra` is
/// appended to the config.
pub async fn start(failover: &str, extra: &str) -> Harness {
    // Engine tests look at one request at a time: unless a test configures `health:` itself,
    // thresholds are out of reach so earlier requests in the test never eject a backend.
    let isolated =
        "health: { failure_threshold: { default: 1000, connection: 1000, timeout: 1000 } }";
    let extra = if extra.contains("health:") {
        extra.to_string()
    } else {
        format!("{extra}\n{isolated}")
    };
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
backends:
  primary: {{ api: anthropic_messages, base_url: "PRIMARY_URL", api_key_env: PRIMARY_KEY }}
  fallback: {{ api: anthropic_messages, base_url: "FALLBACK_URL", api_key_env: FALLBACK_KEY }}
  oa-primary: {{ api: openai_chat, base_url: "PRIMARY_URL/v1", api_key_env: PRIMARY_KEY }}
  oa-fallback: {{ api: openai_chat, base_url: "FALLBACK_URL/v1", api_key_env: FALLBACK_KEY }}
routes:
  claude:
    chain:
      - {{ backend: primary, model: claude-opus-4-7 }}
      - {{ backend: fallback, model: claude-sonnet-4-5 }}
  gpt:
    chain:
      - {{ backend: oa-primary, model: gpt-4o }}
      - {{ backend: oa-fallback, model: gpt-4o-mini }}
failover:
{failover}
{extra}
"#,
        failover = indent(failover),
    );
    start_yaml(&yaml).await
}

fn indent(block: &str) -> String {
    block
        .lines()
        .map(|l| format!("  {}", l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fast defaults for tests: tiny backoff, short timeouts.
pub const FAST: &str = "retries: 2\nbackoff: { base: 5ms, max: 20ms }\nttft_timeout: 1s\nstall_timeout: 1s\nconnect_timeout: 1s\ndeadline: 20s";

pub async fn plan(h: &Harness, m: &MockHandle, steps: Value, then: Value) {
    let r = h
        .http
        .post(format!("{}/_mock/plan", m.url()))
        .json(&json!({"steps": steps, "then": then}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "plan rejected: {}",
        r.text().await.unwrap()
    );
}

pub async fn stats(h: &Harness, m: &MockHandle) -> Value {
    h.http
        .get(format!("{}/_mock/stats", m.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn requests_seen(h: &Harness, m: &MockHandle) -> u64 {
    stats(h, m).await["requests"].as_u64().unwrap()
}

pub async fn request_log(h: &Harness, m: &MockHandle) -> Vec<Value> {
    h.http
        .get(format!("{}/_mock/requests", m.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub fn anthropic_body(stream: bool) -> Value {
    json!({"model": "claude", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": "Say hello"}]})
}

pub fn openai_body(stream: bool) -> Value {
    json!({"model": "gpt", "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]})
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
    /// Concatenated text deltas of an SSE body, either dialect.
    pub fn streamed_text(&self) -> String {
        let mut out = String::new();
        for line in self.text.lines() {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                out.push_str(t);
            }
            if let Some(t) = v
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
            {
                out.push_str(t);
            }
        }
        out
    }
    pub fn answer_text(&self) -> String {
        let v = self.json();
        v.pointer("/content/0/text")
            .or_else(|| v.pointer("/choices/0/message/content"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

pub async fn post(h: &Harness, path: &str, body: &Value) -> Reply {
    post_raw(
        h,
        path,
        body.to_string(),
        &[("content-type", "application/json")],
    )
    .await
}

pub async fn post_raw(h: &Harness, path: &str, body: String, headers: &[(&str, &str)]) -> Reply {
    let mut rb = h.http.post(format!("{}{path}", h.gateway)).body(body);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Reply {
        status,
        headers,
        text,
    }
}

pub fn path_of(dialect: &str) -> &'static str {
    if dialect == "anthropic" {
        "/v1/messages"
    } else {
        "/v1/chat/completions"
    }
}

pub fn body_of(dialect: &str, stream: bool) -> Value {
    if dialect == "anthropic" {
        anthropic_body(stream)
    } else {
        openai_body(stream)
    }
}

/// Requests received by [`receiver`]: (path, headers, body).
pub type Received =
    std::sync::Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, axum::body::Bytes)>>>;

/// An HTTP server that records every POST (path, headers, body) and answers `{"ok":true}`.
pub async fn receiver() -> (String, Received) {
    let got: Received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push((uri.path().to_string(), headers, body));
                axum::Json(json!({"ok": true, "result": {}}))
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

/// Test env vars: the two backend keys, a gateway key, a bot token and a webhook secret.
pub fn test_env(name: &str) -> Option<String> {
    match name {
        "PRIMARY_KEY" => Some(PRIMARY_KEY.to_string()),
        "FALLBACK_KEY" => Some(FALLBACK_KEY.to_string()),
        "GATEWAY_KEY" => Some("gw-secret-key".to_string()),
        "KEY_ONE" => Some("sk-key-one-111111".to_string()),
        "KEY_TWO" => Some("sk-key-two-222222".to_string()),
        "TG_TOKEN" => Some("123456:telegram-bot-token-value".to_string()),
        "HOOK_SECRET" => Some("webhook-shared-secret".to_string()),
        _ => None,
    }
}

/// A gateway serving `yaml` (env from [`test_env`]) on an ephemeral port: its base URL and
/// the server task.
pub async fn serve_yaml(yaml: &str) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    install_panic_guard();
    let config =
        Config::from_yaml(yaml, "test.yaml", &test_env).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let gw = Arc::new(Gateway::new(Arc::new(config)).unwrap());
    (
        format!("http://{addr}"),
        tokio::spawn(switchyard::server::serve(listener, gw)),
    )
}

/// Two mocks and a gateway from a whole YAML config in which `PRIMARY_URL` and `FALLBACK_URL`
/// stand for the mocks' base URLs.
pub async fn start_yaml(template: &str) -> Harness {
    let primary = mock::spawn("primary").await.unwrap();
    let fallback = mock::spawn("fallback").await.unwrap();
    let yaml = template
        .replace("PRIMARY_URL", &primary.url())
        .replace("FALLBACK_URL", &fallback.url());
    let (gateway, server) = serve_yaml(&yaml).await;
    Harness {
        gateway,
        primary,
        fallback,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        server,
    }
}

static PANIC_GUARD: Once = Once::new();
/// Panics the guard has seen (test-code panics included), so a test can prove it is installed.
pub static PANICS_SEEN_BY_GUARD: AtomicUsize = AtomicUsize::new(0);

/// Installs (once per test binary) a panic hook that aborts the whole binary when anything
/// outside `tests/` panics: library code, std or a dependency means a gateway task panicked,
/// and tokio would otherwise swallow that as a dropped connection that a test may not notice.
/// Panics in test code (assertions) go to the default hook as before.
pub fn install_panic_guard() {
    PANIC_GUARD.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS_SEEN_BY_GUARD.fetch_add(1, Ordering::SeqCst);
            let file = info.location().map(|l| l.file()).unwrap_or("<unknown>");
            if !is_test_code(file) {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                    .unwrap_or_else(|| "<unknown>".to_string());
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "<non-string payload>".to_string());
                // Straight to the process's stderr: the test harness's output capture would
                // swallow an `eprintln!` from a test thread, and the abort loses it.
                let _ = writeln!(
                    std::io::stderr(),
                    "panic guard: a panic outside the test code (a gateway task panicked): \
                     {message} at {location}; aborting the test binary"
                );
                std::process::abort();
            }
            default_hook(info);
        }));
    });
}

/// Whether a panic location is in this package's test tree (relative or absolute path).
pub fn is_test_code(file: &str) -> bool {
    let file = file.replace('\\', "/");
    file.starts_with("tests/") || file.starts_with(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/"))
}
