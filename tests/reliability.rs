//! Issue 12: nothing an upstream or a client sends can panic the gateway, leak a secret,
//! exhaust its memory, or defeat failover. The primary is a scripted hostile upstream
//! (`common::hostile`), the fallback a well-behaved mock; the panic guard turns any panic in a
//! gateway task into an aborted test binary.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::hostile::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// The machinery itself

#[tokio::test]
async fn panic_guard_is_installed_by_serve_yaml_and_lets_test_panics_through() {
    let (_url, server) = serve_yaml(MINIMAL_CONFIG).await;
    server.abort();
    let before = PANICS_SEEN_BY_GUARD.load(Ordering::SeqCst);
    // A panic in test code must reach the guard and go on to the default hook, not abort.
    let caught = std::panic::catch_unwind(|| panic!("an assertion in test code"));
    assert!(caught.is_err());
    assert!(PANICS_SEEN_BY_GUARD.load(Ordering::SeqCst) > before);
}

#[test]
fn panic_guard_tells_test_code_from_library_code() {
    for (file, in_tests) in [
        ("tests/reliability.rs", true),
        ("tests/common/hostile.rs", true),
        (
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/failover.rs"),
            true,
        ),
        ("src/failover/engine.rs", false),
        ("/rustc/59807616e/library/std/src/time.rs", false),
        (
            "/home/u/.cargo/registry/src/index/hyper-1.7.0/src/proto/h1/io.rs",
            false,
        ),
        (
            "/home/u/.cargo/registry/src/index/some-crate/tests/x.rs",
            false,
        ),
    ] {
        assert_eq!(is_test_code(file), in_tests, "{file}");
    }
}

/// Run only as the child of the test below: a spawned task panics inside std, the way a
/// gateway connection task would. Without the guard tokio swallows it and this test passes.
#[tokio::test]
#[ignore = "run by panic_guard_aborts_the_binary_when_a_spawned_task_panics_in_library_code"]
async fn guard_child_a_task_panics_in_std() {
    if std::env::var_os("SWITCHYARD_GUARD_CHILD").is_none() {
        return;
    }
    install_panic_guard();
    let task = tokio::spawn(async {
        // Panics in std's `impl Add for Instant`: the issue's class 1.
        let _ = std::time::Instant::now() + Duration::MAX;
    });
    let _ = task.await;
}

#[test]
fn panic_guard_aborts_the_binary_when_a_spawned_task_panics_in_library_code() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "guard_child_a_task_panics_in_std",
            "--ignored",
            "--nocapture",
        ])
        .env("SWITCHYARD_GUARD_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child passed: {stderr}");
    assert!(
        stderr.contains("panic guard") && stderr.contains("time.rs"),
        "{stderr}"
    );
}

const MINIMAL_CONFIG: &str = r#"
listen: 127.0.0.1:0
backends:
  primary: { api: anthropic_messages, base_url: "http://127.0.0.1:9", api_key_env: PRIMARY_KEY }
routes:
  claude:
    chain:
      - { backend: primary, model: claude-opus-4-7 }
"#;

/// Sends `request` on a raw connection and reads until the peer closes (or 5 s).
async fn raw_exchange(addr: &str, request: &[u8]) -> Vec<u8> {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn hostile_upstream_writes_exactly_the_script_and_records_the_request() {
    let hostile = Hostile::start(Script::response(500, &[], "default")).await;
    hostile.push(
        Script::new()
            .write(b"HTTP/1.1 200 OK\r\n\r\n\xffraw")
            .close(),
    );
    let addr = hostile.url().trim_start_matches("http://").to_string();
    let first = raw_exchange(
        &addr,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Key: k1\r\nContent-Length: 4\r\n\r\nbody",
    )
    .await;
    assert_eq!(first, b"HTTP/1.1 200 OK\r\n\r\n\xffraw");
    let chunked =
        b"POST /two HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
    let second = raw_exchange(&addr, chunked).await;
    assert!(second.ends_with(b"\r\n\r\ndefault"), "{second:?}");
    // Garbage is not a request: no record, no panic.
    raw_exchange(&addr, b"\x00\xff\r\n\r\n").await;
    let seen = hostile.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(seen[0].header("x-key"), Some("k1"));
    assert_eq!(seen[0].body, b"body");
    assert_eq!(seen[1].body, b"abc");
}

// ---------------------------------------------------------------------------------------------
// The rig: a gateway whose primary is a hostile upstream and whose fallback is a mock

/// Planted secrets: a response must never contain any of them, in any encoding.
const URL_PASSWORD: &str = "hunter2pass";
const PROVIDER_KEYS: [&str; 6] = [
    "gsk_4f8a9b2c7d1e6f3a0b5c8d9e2f7a1b4c6d",
    "xai-Zk3JmQ8vN2pR7tY4wX9bC6dF1gH5jL0sA3eU8iO2",
    "hf_aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567",
    "r8_Xy7Wv6Ut5Sr4Qp3On2Ml1Kj0Ih9Gf8Ed7Cc6",
    "pplx-8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a",
    "sk-or-v1-0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071",
];
const TOO_LARGE: &str = "max_tokens: too large for this model";

struct Rig {
    gateway: String,
    primary: Hostile,
    fallback: switchyard::mock::MockHandle,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Routes: `claude` (anthropic primary → anthropic fallback), `gpt` (openai primary → openai
/// fallback), and the translated `gpt-via-anthropic` (OpenAI clients, Anthropic primary) and
/// `claude-via-openai` (Anthropic clients, OpenAI primary). `extra` is appended YAML (e.g.
/// `health:`, `limits:`); `failover` replaces the fast default block.
async fn rig_with(failover: &str, extra: &str) -> Rig {
    let primary = Hostile::start(Script::json(500, &[], r#"{"error":"no script"}"#)).await;
    let fallback = switchyard::mock::spawn("fallback").await.unwrap();
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
backends:
  primary: {{ api: anthropic_messages, base_url: "{p}", api_key_env: PRIMARY_KEY }}
  fallback: {{ api: anthropic_messages, base_url: "{f}", api_key_env: FALLBACK_KEY }}
  oa-primary: {{ api: openai_chat, base_url: "{p}/v1", api_key_env: PRIMARY_KEY }}
  oa-fallback: {{ api: openai_chat, base_url: "{f}/v1", api_key_env: FALLBACK_KEY }}
routes:
  claude: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
  gpt: {{ chain: [ {{ backend: oa-primary, model: gpt-4o }}, {{ backend: oa-fallback, model: gpt-4o-mini }} ] }}
  gpt-via-anthropic: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: oa-fallback, model: gpt-4o-mini }} ] }}
  claude-via-openai: {{ chain: [ {{ backend: oa-primary, model: gpt-4o }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
failover: {failover}
{extra}
"#,
        p = primary.url(),
        f = fallback.url(),
    );
    let (gateway, server) = serve_yaml(&yaml).await;
    Rig {
        gateway,
        primary,
        fallback,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
        server,
    }
}

const FAST_FAILOVER: &str = "{ retries: 0, backoff: { base: 5ms, max: 20ms }, ttft_timeout: 2s, stall_timeout: 2s, connect_timeout: 1s, deadline: 15s }";

async fn rig(extra: &str) -> Rig {
    rig_with(FAST_FAILOVER, extra).await
}

/// What the client got: status, headers and the raw body bytes (an interrupted body is kept
/// as far as it came, with the error).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    body_error: Option<String>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }
    fn backend(&self) -> Option<&str> {
        self.header("x-switchyard-backend")
    }
    fn attempts(&self) -> u32 {
        self.header("x-switchyard-attempts")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
    /// The `data:` payloads of the SSE body that are JSON error objects (either dialect).
    fn error_events(&self) -> Vec<serde_json::Value> {
        sse_data(&self.body)
            .into_iter()
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
            .filter(|v| v["type"] == "error" || v.get("error").is_some())
            .collect()
    }
    /// Concatenated text deltas of the SSE body, either dialect.
    fn streamed_text(&self) -> String {
        let mut out = String::new();
        for d in sse_data(&self.body) {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&d) else {
                continue;
            };
            for p in ["/delta/text", "/choices/0/delta/content"] {
                if let Some(t) = v.pointer(p).and_then(|t| t.as_str()) {
                    out.push_str(t);
                }
            }
        }
        out
    }
    /// The message of the JSON error body, either dialect.
    fn error_message(&self) -> String {
        self.json()
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// Every `data:` payload of an SSE body, events split on blank lines.
fn sse_data(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

async fn send_bytes(rig: &Rig, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
    let mut request = rig
        .http
        .post(format!("{}{path}", rig.gateway))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("the gateway answered");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut body_error = None;
    let mut response = response;
    loop {
        match response.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => {
                body_error = Some(e.to_string());
                break;
            }
        }
    }
    Answer {
        status,
        headers,
        body,
        body_error,
    }
}

/// An Anthropic client asking route `claude` (or another `model`).
async fn ask_anthropic(rig: &Rig, stream: bool) -> Answer {
    ask(rig, "anthropic", "claude", stream, &[]).await
}

async fn ask(
    rig: &Rig,
    dialect: &str,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
) -> Answer {
    let body = if dialect == "anthropic" {
        serde_json::json!({"model": model, "max_tokens": 64, "stream": stream,
                           "messages": [{"role": "user", "content": "Say hello"}]})
    } else {
        serde_json::json!({"model": model, "stream": stream,
                           "messages": [{"role": "user", "content": "Say hello"}]})
    };
    send_bytes(
        rig,
        path_of(dialect),
        body.to_string().into_bytes(),
        headers,
    )
    .await
}

async fn admin_backends(rig: &Rig) -> serde_json::Value {
    rig.http
        .get(format!("{}/admin/backends", rig.gateway))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Scopes of `/admin/backends` that cover `backend`.
fn scopes_of(admin: &serde_json::Value, backend: &str) -> Vec<serde_json::Value> {
    admin["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["backends"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b == backend))
        })
        .cloned()
        .collect()
}

async fn plan_fallback(rig: &Rig, steps: serde_json::Value, then: serde_json::Value) {
    let r = rig
        .http
        .post(format!("{}/_mock/plan", rig.fallback.url()))
        .json(&serde_json::json!({"steps": steps, "then": then}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn fallback_requests(rig: &Rig) -> u64 {
    let stats: serde_json::Value = rig
        .http
        .get(format!("{}/_mock/stats", rig.fallback.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["requests"].as_u64().unwrap()
}

/// Every JSON string in `text` (whole-body JSON or SSE `data:` payloads), decoded, so that
/// `\u`-escaped secrets are seen as the client's JSON parser would see them.
fn decoded_json_strings(body: &[u8]) -> String {
    fn collect(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
            serde_json::Value::Object(o) => o.iter().for_each(|(k, v)| {
                out.push_str(k);
                out.push('\n');
                collect(v, out);
            }),
            _ => {}
        }
    }
    let mut out = String::new();
    let mut docs: Vec<String> = sse_data(body);
    docs.push(String::from_utf8_lossy(body).into_owned());
    for doc in docs {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&doc) {
            collect(&v, &mut out);
        }
    }
    out
}

/// Fails when any of `secrets` appears in the answer's headers or body, raw, lossily decoded
/// or JSON-decoded.
fn assert_no_secret(answer: &Answer, secrets: &[&str]) {
    let headers: String = answer
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let views = [
        ("headers", headers),
        ("body", answer.text()),
        ("decoded body", decoded_json_strings(&answer.body)),
    ];
    for secret in secrets {
        for (view, text) in &views {
            assert!(
                !text.contains(secret),
                "secret {secret:?} reached the client ({view}): {text}"
            );
        }
    }
}

fn anthropic_error_json(kind: &str, message: &str) -> String {
    serde_json::json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}

fn anthropic_message_json(text: &str) -> String {
    serde_json::json!({"id": "msg_hostile", "type": "message", "role": "assistant",
        "model": "claude-opus-4-7", "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 3, "output_tokens": 2}})
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Absurd numbers in headers

#[tokio::test]
async fn absurd_retry_after_values_on_a_429_fail_over_without_a_panic() {
    let rig = rig("").await;
    let far_future = "Fri, 31 Dec 9999 23:59:59 GMT";
    let past = "Thu, 01 Jan 1970 00:00:00 GMT";
    for (name, value) in [
        ("retry-after-ms", "1e22"),
        ("retry-after-ms", "18446744073709551615000"),
        ("retry-after", "1e400"),
        ("retry-after", "99999999999999999999"),
        ("retry-after", "-0"),
        ("retry-after", far_future),
        ("retry-after", past),
        ("x-ratelimit-reset-requests", "99999999999999999999s"),
        ("x-ratelimit-reset-tokens", "1e22ms"),
    ] {
        rig.primary.push(Script::json(
            429,
            &[(name, value)],
            anthropic_error_json("rate_limit_error", "slow down"),
        ));
        for stream in [false, true] {
            if stream {
                rig.primary.push(Script::json(
                    429,
                    &[(name, value)],
                    anthropic_error_json("rate_limit_error", "slow down"),
                ));
            }
            let answer = ask_anthropic(&rig, stream).await;
            assert_eq!(
                (answer.status, answer.backend()),
                (200, Some("fallback")),
                "{name}: {value} stream={stream}: {}",
                answer.text()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Retry-After-driven cooldowns are capped

#[tokio::test]
async fn a_huge_retry_after_cools_a_backend_no_longer_than_cooldown_max() {
    for status in [429, 529] {
        let rig = rig("health: { cooldown: { base: 1s, max: 30s } }").await;
        rig.primary.push(Script::json(
            status,
            &[("retry-after", "999999")],
            anthropic_error_json("rate_limit_error", "slow down"),
        ));
        let answer = ask_anthropic(&rig, false).await;
        assert_eq!(answer.backend(), Some("fallback"), "{status}");
        let admin = admin_backends(&rig).await;
        for scope in scopes_of(&admin, "primary") {
            let left = scope["cooldown_remaining_s"].as_f64().unwrap_or(0.0);
            assert!(
                left <= 30.0,
                "{status}: a Retry-After of 999999 s cooled {} for {left} s: {scope}",
                scope["identity"]
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Secrets

#[tokio::test]
async fn a_non_utf8_client_error_body_is_returned_scrubbed() {
    let rig = rig("").await;
    rig.primary.push(Script::json(
        400,
        &[],
        non_utf8_around(&format!("invalid x-api-key {PRIMARY_KEY}")),
    ));
    let answer = ask_anthropic(&rig, false).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_no_secret(&answer, &[PRIMARY_KEY]);
}

#[tokio::test]
async fn an_oversize_error_body_becomes_a_gateway_error_in_the_client_dialect() {
    let rig = rig("").await;
    for dialect in ["anthropic", "openai"] {
        // 2 MiB of JSON-ish error text with the key near the 1 MiB read limit and a multi-byte
        // character straddling it.
        let mut body = format!("{{\"error\":{{\"message\":\"{PRIMARY_KEY} ").into_bytes();
        body.resize(1024 * 1024 - 20, b'a');
        body.extend_from_slice(format!("é{PRIMARY_KEY}é").as_bytes());
        body.resize(2 * 1024 * 1024, b'b');
        body.extend_from_slice(b"\"}}");
        rig.primary.push(Script::json(400, &[], body));
        let model = if dialect == "anthropic" {
            "claude"
        } else {
            "gpt"
        };
        let answer = ask(&rig, dialect, model, false, &[]).await;
        assert_no_secret(&answer, &[PRIMARY_KEY]);
        let v = answer.json();
        assert!(v.pointer("/error/message").is_some(), "{dialect}: {v}");
        if dialect == "anthropic" {
            assert_eq!(v["type"], "error", "{v}");
        }
    }
}

/// `event: error` echoing the key, after content, in a committed stream: however the writes
/// split it, the client sees the content, then exactly one error event, and no key.
#[tokio::test]
async fn a_committed_stream_error_event_is_scrubbed_and_sent_once_however_it_is_split() {
    let rig = rig("").await;
    let error = anthropic_sse::error("api_error", &format!("upstream used key {PRIMARY_KEY}"));
    let (head, tail) = error.split_at(error.find(PRIMARY_KEY).unwrap() + 6);
    let cases: [(&str, Vec<String>); 3] = [
        (
            "error split across two writes, mid-key",
            vec![
                anthropic_sse::preamble() + &anthropic_sse::text("Hello"),
                head.to_string(),
                tail.to_string(),
            ],
        ),
        (
            "error in the same write as the first content",
            vec![anthropic_sse::preamble() + &anthropic_sse::text("Hello") + &error],
        ),
        (
            "error in its own write after content",
            vec![
                anthropic_sse::preamble(),
                anthropic_sse::text("Hello"),
                error.clone(),
            ],
        ),
    ];
    for (case, writes) in cases {
        rig.primary.push(Script::sse(&writes));
        let answer = ask_anthropic(&rig, true).await;
        assert_eq!(answer.status, 200, "{case}");
        assert_eq!(answer.streamed_text(), "Hello", "{case}: {}", answer.text());
        assert_eq!(answer.error_events().len(), 1, "{case}: {}", answer.text());
        assert_no_secret(&answer, &[PRIMARY_KEY]);
    }
}

#[tokio::test]
async fn secrets_in_odd_encodings_and_unconfigured_provider_key_shapes_are_scrubbed() {
    let rig = rig("").await;
    let escaped_key = format!("\\u0073{}", &PRIMARY_KEY[1..]);
    let mut cases = vec![
        (
            "\\u-escaped configured key",
            format!(
                r#"{{"type":"error","error":{{"type":"invalid_request_error","message":"bad key {escaped_key}"}}}}"#
            ),
            PRIMARY_KEY.to_string(),
        ),
        (
            "URL user-info without a query",
            anthropic_error_json(
                "invalid_request_error",
                &format!("cannot fetch https://user:{URL_PASSWORD}@images.example.com/x.png"),
            ),
            URL_PASSWORD.to_string(),
        ),
    ];
    for key in PROVIDER_KEYS {
        cases.push((
            "provider key shape",
            anthropic_error_json("invalid_request_error", &format!("upstream said: {key}")),
            key.to_string(),
        ));
    }
    for (case, body, secret) in cases {
        rig.primary.push(Script::json(400, &[], body));
        let answer = ask_anthropic(&rig, false).await;
        assert_eq!(answer.status, 400, "{case}: {}", answer.text());
        assert_no_secret(&answer, &[&secret]);
    }
}

#[tokio::test]
async fn a_key_re_read_from_api_key_file_is_scrubbed_too() {
    let dir = std::env::temp_dir().join(format!("switchyard-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "first-oauth-token-0a1b2c3d4e\n").unwrap();
    let primary = Hostile::start(Script::json(500, &[], "{}")).await;
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
backends:
  primary: {{ api: anthropic_messages, base_url: "{}", api_key_file: {:?} }}
routes:
  claude: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }} ] }}
failover: {FAST_FAILOVER}
"#,
        primary.url(),
        file.display().to_string()
    );
    let (gateway, server) = serve_yaml(&yaml).await;
    // Another process rotates the token; the upstream refuses the old one, then echoes the new.
    let rotated = "rotated-oauth-token-5e6f7a8b9c0d";
    std::fs::write(&file, format!("{rotated}\n")).unwrap();
    primary.push(Script::json(
        401,
        &[],
        anthropic_error_json("authentication_error", "invalid x-api-key"),
    ));
    primary.push(Script::json(
        400,
        &[],
        anthropic_error_json(
            "invalid_request_error",
            &format!("key {rotated} lacks scope"),
        ),
    ));
    let rig = Rig {
        gateway,
        primary,
        fallback: switchyard::mock::spawn("unused").await.unwrap(),
        http: reqwest::Client::new(),
        server,
    };
    let answer = ask_anthropic(&rig, false).await;
    let seen: Vec<String> = rig
        .primary
        .requests()
        .iter()
        .map(|r| r.header("x-api-key").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        seen,
        ["first-oauth-token-0a1b2c3d4e", rotated],
        "the harness premise"
    );
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_no_secret(&answer, &[rotated]);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// 4. Memory: every buffer an upstream can fill is capped

const SMALL_LIMITS: &str =
    "limits: { max_sse_event_bytes: 65536, max_held_bytes: 131072, max_response_body_bytes: 1048576 }";

#[tokio::test]
async fn an_endless_sse_line_before_content_fails_over_quickly() {
    let rig = rig(SMALL_LIMITS).await;
    rig.primary.push(Script::endless_sse_line(8 * 1024, 64));
    let started = std::time::Instant::now();
    let answer = ask_anthropic(&rig, true).await;
    assert_eq!((answer.status, answer.backend()), (200, Some("fallback")));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn bytes_held_before_the_commit_point_are_capped_then_failed_over() {
    let rig = rig(SMALL_LIMITS).await;
    // 4 MiB of comments and envelope events, never any content, in 32 KiB writes.
    let ping_block = ": ping\n\n".repeat(1024) + &anthropic_sse::ping().repeat(512);
    let mut writes = vec![anthropic_sse::message_start()];
    while writes.iter().map(String::len).sum::<usize>() < 4 * 1024 * 1024 {
        writes.push(ping_block.clone());
    }
    rig.primary.push(Script::sse(&writes));
    let answer = ask_anthropic(&rig, true).await;
    assert_eq!(
        (answer.status, answer.backend()),
        (200, Some("fallback")),
        "{}",
        answer.text().chars().take(300).collect::<String>()
    );
}

#[tokio::test]
async fn a_non_stream_success_body_over_the_limit_fails_over() {
    let rig = rig(SMALL_LIMITS).await;
    let padded = anthropic_message_json(&"x".repeat(2 * 1024 * 1024));
    rig.primary.push(Script::json(200, &[], padded));
    let answer = ask_anthropic(&rig, false).await;
    assert_eq!(
        (answer.status, answer.backend()),
        (200, Some("fallback")),
        "{}",
        answer.text().chars().take(300).collect::<String>()
    );
}

#[tokio::test]
async fn an_oversize_event_after_commit_ends_the_stream_with_one_error_event() {
    let rig = rig(SMALL_LIMITS).await;
    let huge = anthropic_sse::text(&"y".repeat(256 * 1024));
    rig.primary.push(Script::sse(&[
        anthropic_sse::preamble() + &anthropic_sse::text("Hello"),
        huge[..100_000].to_string(),
        huge[100_000..].to_string(),
        anthropic_sse::ending(),
    ]));
    let answer = ask_anthropic(&rig, true).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body_error.is_none(), "{:?}", answer.body_error);
    assert!(answer.streamed_text().starts_with("Hello"));
    assert!(
        !answer.text().contains(&"y".repeat(65536)),
        "an event over max_sse_event_bytes was relayed"
    );
    assert_eq!(answer.error_events().len(), 1, "{}", answer.text().len());
}

// ---------------------------------------------------------------------------------------------
// 5. A stream that dies after content counts against the backend

fn dies_after_content(how: Step) -> Script {
    let script = Script::sse_open(&[anthropic_sse::preamble() + &anthropic_sse::text("Hel")])
        .pause(Duration::from_millis(20));
    match how {
        Step::Reset => script.reset(),
        _ => script.close(),
    }
}

#[tokio::test]
async fn a_stream_that_dies_after_content_ends_with_one_error_event() {
    let rig = rig("").await;
    for (how, step) in [("reset", Step::Reset), ("close", Step::Close)] {
        rig.primary.push(dies_after_content(step));
        let answer = ask_anthropic(&rig, true).await;
        assert_eq!(answer.status, 200, "{how}");
        assert_eq!(answer.streamed_text(), "Hel", "{how}");
        assert_eq!(answer.error_events().len(), 1, "{how}: {}", answer.text());
    }
}

#[tokio::test]
async fn a_stream_reset_after_content_ejects_the_backend_at_a_connection_threshold_of_one() {
    let rig =
        rig("health: { failure_threshold: { connection: 1 }, cooldown: { base: 30s } }").await;
    rig.primary.push(dies_after_content(Step::Reset));
    let first = ask_anthropic(&rig, true).await;
    assert_eq!(first.streamed_text(), "Hel");
    let retry = ask_anthropic(&rig, true).await;
    assert_eq!(
        (retry.status, retry.backend()),
        (200, Some("fallback")),
        "{}",
        retry.text()
    );
    assert_eq!(
        rig.primary.request_count(),
        1,
        "the retry went back to the dead primary"
    );
}

#[tokio::test]
async fn the_retry_of_a_turn_whose_stream_died_after_content_goes_to_the_next_backend() {
    let rig = rig("").await;
    let turn = [("x-switchyard-session", "s1"), ("x-switchyard-turn", "t1")];
    rig.primary.push(dies_after_content(Step::Reset));
    let first = ask(&rig, "anthropic", "claude", true, &turn).await;
    assert_eq!(first.streamed_text(), "Hel");
    let retry = ask(&rig, "anthropic", "claude", true, &turn).await;
    assert_eq!(
        (retry.status, retry.backend()),
        (200, Some("fallback")),
        "{}",
        retry.text()
    );
    assert_eq!(rig.primary.request_count(), 1);
}

// ---------------------------------------------------------------------------------------------
// 6. A client-blamed error event before content keeps its message

fn invalid_request_event_stream() -> Script {
    Script::sse(&[anthropic_sse::error("invalid_request_error", TOO_LARGE)])
}

#[tokio::test]
async fn an_invalid_request_error_event_before_content_becomes_a_400_with_its_message() {
    let rig = rig("").await;
    for (dialect, model) in [("anthropic", "claude"), ("openai", "gpt-via-anthropic")] {
        rig.primary.push(invalid_request_event_stream());
        let answer = ask(&rig, dialect, model, true, &[]).await;
        assert_eq!(answer.status, 400, "{dialect}: {}", answer.text());
        assert!(
            answer.error_message().contains(TOO_LARGE),
            "{dialect}: {}",
            answer.text()
        );
        if dialect == "anthropic" {
            assert_eq!(answer.json()["type"], "error");
        }
        assert_eq!(
            fallback_requests(&rig).await,
            0,
            "a client error was failed over"
        );
    }
}

#[tokio::test]
async fn with_early_headers_an_invalid_request_error_event_keeps_its_message() {
    let failover = "{ retries: 0, early_headers_after: 50ms, ttft_timeout: 2s, stall_timeout: 2s, deadline: 15s }";
    let rig = rig_with(failover, "").await;
    rig.primary.push(
        Script::sse_open::<&str>(&[])
            .pause(Duration::from_millis(300))
            .chunk(anthropic_sse::error("invalid_request_error", TOO_LARGE))
            .end_chunks(),
    );
    let answer = ask_anthropic(&rig, true).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let errors = answer.error_events();
    assert_eq!(errors.len(), 1, "{}", answer.text());
    assert!(
        errors[0].to_string().contains(TOO_LARGE),
        "{}",
        answer.text()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. A turn is never refused with zero attempts

#[tokio::test]
async fn a_turn_whose_chain_failed_once_is_served_when_the_backends_recover() {
    let rig = rig("").await;
    let turn = [("x-switchyard-session", "s7"), ("x-switchyard-turn", "t7")];
    rig.primary.push(Script::json(
        500,
        &[],
        anthropic_error_json("api_error", "boom"),
    ));
    plan_fallback(
        &rig,
        serde_json::json!([{"kind": "status", "status": 500}]),
        serde_json::json!({"kind": "ok"}),
    )
    .await;
    let failed = ask(&rig, "anthropic", "claude", false, &turn).await;
    assert_eq!(failed.status, 502, "{}", failed.text());
    rig.primary
        .push(Script::json(200, &[], anthropic_message_json("recovered")));
    let retry = ask(&rig, "anthropic", "claude", false, &turn).await;
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert!(retry.attempts() >= 1);
}

// ---------------------------------------------------------------------------------------------
// 8. A retry never sleeps past a cooldown

#[tokio::test]
async fn a_retry_after_that_outlasts_a_new_cooldown_fails_over_at_once() {
    let failover =
        "{ retries: 2, backoff: { base: 5ms, max: 20ms }, ttft_timeout: 2s, deadline: 15s }";
    let rig = rig_with(
        failover,
        "health: { failure_threshold: { overloaded: 1 }, cooldown: { base: 30s, max: 60s } }",
    )
    .await;
    rig.primary.push(Script::json(
        529,
        &[("retry-after", "2")],
        anthropic_error_json("overloaded_error", "Overloaded"),
    ));
    let started = std::time::Instant::now();
    let answer = ask_anthropic(&rig, false).await;
    let took = started.elapsed();
    assert_eq!(answer.backend(), Some("fallback"));
    assert!(
        took < Duration::from_millis(1500),
        "slept {took:?} before failing over"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Invalid JSON from the client is a 400 and reaches no upstream

#[tokio::test]
async fn invalid_json_bodies_are_refused_before_any_upstream_sees_them() {
    let rig = rig("").await;
    let tail = r#","messages":[{"role":"user","content":"hi"}]}"#;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "leading zero",
            format!(r#"{{"model":"gpt","n":01{tail}"#).into(),
            "invalid_json",
        ),
        (
            "minus inside a number",
            format!(r#"{{"model":"gpt","n":1-2{tail}"#).into(),
            "invalid_json",
        ),
        (
            "trailing dot",
            format!(r#"{{"model":"gpt","n":1.{tail}"#).into(),
            "invalid_json",
        ),
        (
            "invalid escape",
            format!(r#"{{"model":"gpt","x":"\x"{tail}"#).into(),
            "invalid_json",
        ),
        (
            "raw control character",
            format!("{{\"model\":\"gpt\",\"x\":\"a\u{1}b\"{tail}").into(),
            "invalid_json",
        ),
        (
            "invalid UTF-8",
            [
                br#"{"model":"gpt","x":"a"#.as_slice(),
                b"\xff\xfe",
                br#"b""#,
                tail.as_bytes(),
            ]
            .concat(),
            "invalid_json",
        ),
        (
            "a second model key differing in case",
            format!(r#"{{"model":"gpt","Model":"other"{tail}"#).into(),
            "ambiguous_key",
        ),
    ];
    // Every case is tried, so one run lists every hole.
    let mut wrong = Vec::new();
    let mut forwarded_before = 0;
    for (case, body, code) in cases {
        let answer = send_bytes(&rig, "/v1/chat/completions", body, &[]).await;
        let forwarded = rig.primary.request_count() as u64 + fallback_requests(&rig).await;
        let got_code = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v.pointer("/error/code").cloned());
        if forwarded != forwarded_before || answer.status != 400 || got_code != Some(code.into()) {
            wrong.push(format!(
                "{case}: forwarded {} times, answered {} {}",
                forwarded - forwarded_before,
                answer.status,
                answer.text().chars().take(120).collect::<String>()
            ));
        }
        forwarded_before = forwarded;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// 11. Smaller holes

#[tokio::test]
async fn an_active_probe_answered_200_with_an_error_body_does_not_heal_the_backend() {
    let rig = rig(
        "health: { failure_threshold: { connection: 1 }, cooldown: { base: 60s }, probe: { interval: 100ms } }",
    )
    .await;
    rig.primary.push(Script::new().reset());
    rig.primary.set_default(Script::json(
        200,
        &[],
        anthropic_error_json("overloaded_error", "Overloaded"),
    ));
    let answer = ask_anthropic(&rig, false).await;
    assert_eq!(answer.backend(), Some("fallback"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    eprintln!(
        "DEBUG {} {}",
        rig.primary.request_count(),
        admin_backends(&rig).await
    );
    // The user request, then at least one probe (a healed scope is not probed again).
    assert!(
        rig.primary.request_count() >= 2,
        "no probe reached the primary: the test proves nothing"
    );
    let admin = admin_backends(&rig).await;
    let backend_scope = scopes_of(&admin, "primary")
        .into_iter()
        .find(|s| s["kind"] == "backend")
        .unwrap();
    assert_ne!(backend_scope["state"], "healthy", "{backend_scope}");
}

#[tokio::test]
async fn an_exhausted_chain_502_says_when_to_retry() {
    let rig = rig("health: { failure_threshold: { default: 1, server_error: 1 }, cooldown: { base: 30s, max: 60s } }").await;
    rig.primary.push(Script::json(
        500,
        &[],
        anthropic_error_json("api_error", "boom"),
    ));
    plan_fallback(
        &rig,
        serde_json::json!([]),
        serde_json::json!({"kind": "status", "status": 500}),
    )
    .await;
    let answer = ask_anthropic(&rig, false).await;
    assert_eq!(answer.status, 502, "{}", answer.text());
    let retry_after: u64 = answer
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", answer.headers))
        .parse()
        .expect("Retry-After in integer seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn a_request_with_both_transfer_encoding_and_content_length_closes_the_connection() {
    let rig = rig("").await;
    rig.primary
        .set_default(Script::json(200, &[], anthropic_message_json("hi")));
    let body = r#"{"model":"claude","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\ncontent-length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(&chunk_frame(body.as_bytes())) + "0\r\n\r\n"
    );
    let addr = rig.gateway.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), socket.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 "), "{text}");
    assert!(closed.is_ok(), "the connection stayed open after: {text}");
}
