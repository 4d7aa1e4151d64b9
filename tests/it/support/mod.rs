//! The shared harness: mock upstreams and gateways on ephemeral ports, intent-level
//! arrangements (`h.primary_always(status(529))`), client helpers, the panic guard, one log
//! capture and `eventually` for conditions that come true a moment later.
//!
//! Every path into the `switchyard` crate that the suite uses is named here and only here, so a
//! module moving in the crate is a one-line fix.

pub mod hostile;
pub mod procs;
mod logs;

pub use logs::captured_logs;

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

// The crate's public surface, as the suite sees it.
pub use switchyard::alert::sinks::signature as webhook_signature;
use switchyard::app::Gateway;
use switchyard::config::Config;
pub use switchyard::mock::{plan as mock_plan, MockHandle};

/// A mock provider (the faithful oracle) named `name`, on an ephemeral port.
pub async fn spawn_mock(name: &str) -> MockHandle {
    switchyard::mock::spawn(name).await.unwrap()
}

/// A mock whose status faults speak `provider`'s error dialect (`switchyard mock --provider`).
pub async fn spawn_mock_as(name: &str, provider: &str) -> MockHandle {
    let provider = switchyard::mock::MockProvider::parse(provider).expect("a mock provider");
    switchyard::mock::spawn_as(name, Some(provider))
        .await
        .unwrap()
}

/// Validates `yaml` as the gateway would (`env` resolves `*_env` keys).
pub fn load_config(yaml: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Config {
    Config::from_yaml(yaml, file, env).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Serves `config` on `listener` until the returned task is aborted.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    config: Config,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    install_panic_guard();
    let gateway = Arc::new(Gateway::new(Arc::new(config)).unwrap());
    tokio::spawn(switchyard::server::serve(listener, gateway))
}

/// Two mock upstreams and a gateway in front of them; the gateway stops when this drops.
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

async fn plan(h: &Harness, m: &MockHandle, steps: Value, then: Value) {
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

async fn requests_seen(h: &Harness, m: &MockHandle) -> u64 {
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
    /// The backend that served (or failed) the request.
    pub fn backend(&self) -> Option<&str> {
        self.header("x-switchyard-backend")
    }
    pub fn attempts(&self) -> Option<u32> {
        self.header("x-switchyard-attempts")
            .and_then(|v| v.parse().ok())
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

/// The two client dialects of the harness's routes: `claude` (Anthropic chain) and `gpt`
/// (OpenAI chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Anthropic,
    OpenAi,
}

impl Dialect {
    pub const BOTH: [Dialect; 2] = [Dialect::Anthropic, Dialect::OpenAi];

    /// The endpoint a client of this dialect posts to.
    pub fn path(self) -> &'static str {
        match self {
            Dialect::Anthropic => "/v1/messages",
            Dialect::OpenAi => "/v1/chat/completions",
        }
    }

    /// A "Say hello" request for the harness route of this dialect.
    pub fn body(self, stream: bool) -> Value {
        match self {
            Dialect::Anthropic => anthropic_body(stream),
            Dialect::OpenAi => openai_body(stream),
        }
    }

    /// The harness backend `name` ("primary", "fallback") as this dialect's chain calls it.
    pub fn backend(self, name: &str) -> String {
        match self {
            Dialect::Anthropic => name.to_string(),
            Dialect::OpenAi => format!("oa-{name}"),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Anthropic => "anthropic",
            Dialect::OpenAi => "openai",
        })
    }
}

/// What a mock does for one request: the JSON its `/_mock/plan` takes, built by intent.
#[derive(Clone, Debug)]
pub struct Behavior(Value);

/// A normal answer.
pub fn ok() -> Behavior {
    Behavior(json!({"kind": "ok"}))
}

/// An error status with the dialect's error body (see [`Behavior::body`] to replace it).
pub fn status(code: u16) -> Behavior {
    Behavior(json!({"kind": "status", "status": code}))
}

/// Headers, then a connection reset after `chunks` stream chunks (0: before any body).
pub fn reset_after(chunks: u32) -> Behavior {
    Behavior(json!({"kind": "reset", "after_chunks": chunks}))
}

/// Accepts the request and never sends a byte.
pub fn silence() -> Behavior {
    Behavior(json!({"kind": "stall", "headers": false}))
}

/// Sends `chunks` stream chunks, then only SSE heartbeats every `heartbeat_ms`.
pub fn stall_after(chunks: u32, heartbeat_ms: u64) -> Behavior {
    Behavior(json!({"kind": "stall", "after_chunks": chunks, "heartbeat_ms": heartbeat_ms}))
}

/// Any other plan entry, e.g. `{"kind": "malformed"}`.
pub fn behavior(plan: Value) -> Behavior {
    Behavior(plan)
}

impl Behavior {
    /// A response header (`retry-after`, …); a null `headers` becomes an object on indexing.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.0["headers"][name] = value.into();
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.0["body"] = body;
        self
    }

    /// Any other field of the plan entry (`delay_ms`, `chunks`, …).
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.0[field] = value.into();
        self
    }
}

impl fmt::Display for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Harness {
    /// Every request to the primary gets `behavior`.
    pub async fn primary_always(&self, behavior: Behavior) {
        self.primary_then([], behavior).await;
    }

    /// The primary answers `steps` in order, then `then` for ever.
    pub async fn primary_then(&self, steps: impl IntoIterator<Item = Behavior>, then: Behavior) {
        plan_mock(self, &self.primary, steps, then).await;
    }

    pub async fn fallback_always(&self, behavior: Behavior) {
        self.fallback_then([], behavior).await;
    }

    pub async fn fallback_then(&self, steps: impl IntoIterator<Item = Behavior>, then: Behavior) {
        plan_mock(self, &self.fallback, steps, then).await;
    }

    /// Clears both mocks' plans and counters.
    pub fn reset_mocks(&self) {
        self.primary.reset();
        self.fallback.reset();
    }

    /// Starts the next case of a table test from scratch: the mocks' plans and counters
    /// cleared, and every backend healthy again (the engine ejects a backend it gave up on, so
    /// without this a case would see the previous case's ejection).
    pub async fn new_case(&self) {
        self.reset_mocks();
        self.forget_health().await;
    }

    /// Every backend healthy again, as an operator's reset would leave them.
    pub async fn forget_health(&self) {
        forget_health(&self.http, &self.gateway).await;
    }

    pub async fn primary_requests(&self) -> u64 {
        requests_seen(self, &self.primary).await
    }

    pub async fn fallback_requests(&self) -> u64 {
        requests_seen(self, &self.fallback).await
    }

    /// A "Say hello" request in `dialect` to the harness route of that dialect.
    pub async fn ask(&self, dialect: Dialect, stream: bool) -> Reply {
        post(self, dialect.path(), &dialect.body(stream)).await
    }

    /// `GET /admin/backends`.
    pub async fn admin_backends(&self) -> Value {
        get_json(&self.http, &format!("{}/admin/backends", self.gateway)).await
    }

    /// The `state` of `backend`'s backend-wide scope in `/admin/backends`.
    pub async fn backend_state(&self, backend: &str) -> String {
        let v = self.admin_backends().await;
        backend_scope(&v, backend)["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (bounded) until no scope covering `backend` is cooling down any more: the next
    /// request may probe it.
    pub async fn until_cooldown_ends(&self, backend: &str) {
        eventually(
            &format!("{backend}'s cooldown ends"),
            Duration::from_secs(10),
            || async {
                let admin = self.admin_backends().await;
                admin["scopes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| {
                        s["backends"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|b| b == backend)
                    })
                    .all(|s| s["state"] != "cooling_down")
            },
        )
        .await;
    }
}

async fn plan_mock(
    h: &Harness,
    mock: &MockHandle,
    steps: impl IntoIterator<Item = Behavior>,
    then: Behavior,
) {
    let steps: Vec<Value> = steps.into_iter().map(|b| b.0).collect();
    plan(h, mock, Value::Array(steps), then.0).await;
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// The backend-wide scope of `backend` in an `/admin/backends` snapshot.
pub fn backend_scope<'a>(admin: &'a Value, backend: &str) -> &'a Value {
    admin["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"] == "backend" && s["backends"][0] == backend)
        .unwrap_or_else(|| panic!("no backend scope for {backend}: {admin}"))
}

/// Asserts a 200 served by `backend` after `attempts` attempts in all.
#[track_caller]
pub fn assert_served_by(reply: &Reply, backend: &str, attempts: u32) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.backend(), Some(backend), "{}", reply.text);
    assert_eq!(reply.attempts(), Some(attempts), "served by {backend}");
}

/// Polls `condition` until it holds; fails after `limit`. For effects that land a moment after
/// the event that causes them (a cancelled upstream, a delivered alert, a healed scope).
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// How often [`eventually`] looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Every backend of the gateway at `gateway` healthy again, as an operator's reset through
/// `POST /admin/backends/{name}/reset` would leave them.
pub async fn forget_health(http: &reqwest::Client, gateway: &str) {
    let admin = get_json(http, &format!("{gateway}/admin/backends")).await;
    let mut names: Vec<String> = admin["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["backends"].as_array().unwrap().clone())
        .map(|b| b.as_str().unwrap().to_string())
        .collect();
    names.sort();
    names.dedup();
    for backend in names {
        let r = http
            .post(format!("{gateway}/admin/backends/{backend}/reset"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{backend}: {}", r.status());
    }
}

/// A request captured from a real agent (`tests/it/fixtures/agents/{name}.json`, each with its
/// `source`): its path, its headers (minus transport ones) and its body.
pub struct CapturedRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

pub fn captured_request(name: &str) -> CapturedRequest {
    let path = format!(
        "{}/tests/it/fixtures/agents/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let headers = v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "accept-encoding" | "connection"))
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    CapturedRequest {
        path: v["path"].as_str().unwrap().to_string(),
        headers,
        body: v["body"].clone(),
    }
}

/// The one-sided bound for "at once": far above any real run, far below the waits it rules out.
pub const PROMPTLY: Duration = Duration::from_secs(10);

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
    let config = load_config(yaml, "test.yaml", &test_env);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (format!("http://{addr}"), serve_on(listener, config))
}

/// Two mocks and a gateway from a whole YAML config in which `PRIMARY_URL` and `FALLBACK_URL`
/// stand for the mocks' base URLs.
pub async fn start_yaml(template: &str) -> Harness {
    let primary = spawn_mock("primary").await;
    let fallback = spawn_mock("fallback").await;
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

/// The value of the first `/metrics` sample whose line contains every one of `needles`.
pub fn sample(metrics: &str, needles: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .find(|l| !l.starts_with('#') && needles.iter().all(|n| l.contains(n)))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

/// The sum of every `/metrics` sample of `name` whose labels include all of `labels`.
pub fn sample_sum(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let prefix = format!("{name}{{");
    metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// The gateway's `/metrics` text.
pub async fn scrape_metrics(http: &reqwest::Client, gateway: &str) -> String {
    http.get(format!("{gateway}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
