//! Issue 12: nothing an upstream or a client sends can panic the gateway, leak a secret,
//! exhaust its memory, or defeat failover. The primary is a scripted hostile upstream
//! (`support::hostile`), the fallback a well-behaved mock; the panic guard turns any panic in a
//! gateway task into an aborted test binary.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::hostile::*;
use crate::support::*;

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
        ("tests/it/reliability.rs", true),
        ("tests/it/support/hostile.rs", true),
        (
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/failover.rs"),
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
    // Test names are module paths without the crate: `reliability::guard_child_…`.
    let module = module_path!().split_once("::").unwrap().1;
    let child = format!("{module}::guard_child_a_task_panics_in_std");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &child, "--ignored", "--nocapture"])
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
    fallback: MockHandle,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Rig {
    /// Every backend healthy again: each case of a table test starts where the first did
    /// (a stream that failed after content ejects the backend that served it).
    async fn forget_health(&self) {
        forget_health(&self.http, &self.gateway).await;
    }
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
    let fallback = spawn_mock("fallback").await;
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
    ask(rig, Dialect::Anthropic, "claude", stream, &[]).await
}

/// A "Say hello" request in `dialect` to route `model`.
async fn ask(
    rig: &Rig,
    dialect: Dialect,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
) -> Answer {
    let mut body = dialect.body(stream);
    body["model"] = model.into();
    send_bytes(rig, dialect.path(), body.to_string().into_bytes(), headers).await
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
    if let Some(leak) = leaked_secret(answer, secrets) {
        panic!("{leak}");
    }
}

/// Which secret reached the client and where, if any did.
fn leaked_secret(answer: &Answer, secrets: &[&str]) -> Option<String> {
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
            if text.contains(secret) {
                return Some(format!(
                    "secret {secret:?} reached the client ({view}): {text}"
                ));
            }
        }
    }
    None
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

/// Found by the property test: a token count of u64::MAX overflowed the translated usage sum.
#[tokio::test]
async fn absurd_token_counts_in_an_answer_do_not_panic_in_any_mode() {
    let rig = rig("").await;
    for tokens in ["18446744073709551615", "1e30", "-1"] {
        for (dialect, model) in [
            (Dialect::Anthropic, "claude"),
            (Dialect::OpenAi, "gpt-via-anthropic"),
        ] {
            let answer_json = anthropic_message_json("hi").replace(
                r#""output_tokens":2"#,
                &format!(r#""output_tokens":{tokens},"cache_read_input_tokens":{tokens}"#),
            );
            rig.primary.push(Script::json(200, &[], answer_json));
            let answer = ask(&rig, dialect, model, false, &[]).await;
            assert_eq!(answer.status, 200, "{tokens} {dialect}: {}", answer.text());
            answer.json();
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
    for dialect in Dialect::BOTH {
        // 2 MiB of JSON-ish error text with the key near the 1 MiB read limit and a multi-byte
        // character straddling it.
        let mut body = format!("{{\"error\":{{\"message\":\"{PRIMARY_KEY} ").into_bytes();
        body.resize(1024 * 1024 - 20, b'a');
        body.extend_from_slice(format!("é{PRIMARY_KEY}é").as_bytes());
        body.resize(2 * 1024 * 1024, b'b');
        body.extend_from_slice(b"\"}}");
        rig.primary.push(Script::json(400, &[], body));
        let model = match dialect {
            Dialect::Anthropic => "claude",
            Dialect::OpenAi => "gpt",
        };
        let answer = ask(&rig, dialect, model, false, &[]).await;
        assert_no_secret(&answer, &[PRIMARY_KEY]);
        let v = answer.json();
        assert!(v.pointer("/error/message").is_some(), "{dialect}: {v}");
        if dialect == Dialect::Anthropic {
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
        rig.forget_health().await;
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
        fallback: spawn_mock("unused").await,
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
    for (how, step) in [("reset", Step::Reset), ("close", Step::Close)] {
        // A fresh gateway each time: the first death ejects the primary (class 5).
        let rig = rig("").await;
        rig.primary.push(dies_after_content(step));
        let answer = ask_anthropic(&rig, true).await;
        assert_eq!(answer.status, 200, "{how}");
        assert_eq!(answer.streamed_text(), "Hel", "{how}");
        assert_eq!(answer.error_events().len(), 1, "{how}: {}", answer.text());
    }
}

#[tokio::test]
async fn a_stream_whose_body_ends_cleanly_without_a_terminal_event_ends_with_one_error_event() {
    let rig = rig("").await;
    for (dialect, model, writes) in [
        (
            Dialect::Anthropic,
            "claude",
            vec![anthropic_sse::preamble(), anthropic_sse::text("Hel")],
        ),
        (
            Dialect::OpenAi,
            "gpt",
            vec![openai_sse::role(), openai_sse::text("Hel")],
        ),
    ] {
        // HTTP-complete (the terminating chunk is sent) but the SSE stream never finished.
        rig.primary.push(Script::sse(&writes));
        let answer = ask(&rig, dialect, model, true, &[]).await;
        assert_eq!(answer.status, 200, "{dialect}");
        assert_eq!(answer.streamed_text(), "Hel", "{dialect}");
        assert_eq!(
            answer.error_events().len(),
            1,
            "{dialect}: {}",
            answer.text()
        );
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
    let first = ask(&rig, Dialect::Anthropic, "claude", true, &turn).await;
    assert_eq!(first.streamed_text(), "Hel");
    let retry = ask(&rig, Dialect::Anthropic, "claude", true, &turn).await;
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
    for (dialect, model) in [
        (Dialect::Anthropic, "claude"),
        (Dialect::OpenAi, "gpt-via-anthropic"),
    ] {
        rig.primary.push(invalid_request_event_stream());
        let answer = ask(&rig, dialect, model, true, &[]).await;
        assert_eq!(answer.status, 400, "{dialect}: {}", answer.text());
        assert!(
            answer.error_message().contains(TOO_LARGE),
            "{dialect}: {}",
            answer.text()
        );
        if dialect == Dialect::Anthropic {
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
    // The error event is held back until the client has the early headers.
    let headers_sent = Gate::new();
    rig.primary.push(
        Script::sse_open::<&str>(&[])
            .wait(&headers_sent)
            .chunk(anthropic_sse::error("invalid_request_error", TOO_LARGE))
            .end_chunks(),
    );
    let response = rig
        .http
        .post(format!("{}/v1/messages", rig.gateway))
        .json(&Dialect::Anthropic.body(true))
        .send()
        .await
        .unwrap();
    headers_sent.open();
    let status = response.status().as_u16();
    let answer = Answer {
        status,
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
        body_error: None,
    };
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
    let failed = ask(&rig, Dialect::Anthropic, "claude", false, &turn).await;
    assert_eq!(failed.status, 502, "{}", failed.text());
    rig.primary
        .push(Script::json(200, &[], anthropic_message_json("recovered")));
    let retry = ask(&rig, Dialect::Anthropic, "claude", false, &turn).await;
    assert_eq!(retry.status, 200, "{}", retry.text());
    assert!(retry.attempts() >= 1);
}

// ---------------------------------------------------------------------------------------------
// 8. A retry never sleeps past a cooldown

#[tokio::test]
async fn a_retry_after_that_outlasts_a_new_cooldown_fails_over_at_once() {
    // A Retry-After the engine would honour (under max_retry_after) and far beyond PROMPTLY,
    // but the failure has just cooled the backend for longer still.
    let failover = "{ retries: 2, backoff: { base: 5ms, max: 20ms }, ttft_timeout: 2s, deadline: 60s, max_retry_after: 60s }";
    let rig = rig_with(
        failover,
        "health: { failure_threshold: { overloaded: 1 }, cooldown: { base: 45s, max: 60s } }",
    )
    .await;
    rig.primary.push(Script::json(
        529,
        &[("retry-after", "30")],
        anthropic_error_json("overloaded_error", "Overloaded"),
    ));
    let started = std::time::Instant::now();
    let answer = ask_anthropic(&rig, false).await;
    let took = started.elapsed();
    assert_eq!(answer.backend(), Some("fallback"));
    assert!(took < PROMPTLY, "slept {took:?} before failing over");
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
    // The user request, then two probes: probes run one after another, so the second proves
    // the first one's answer was judged, and a healed scope is not probed again.
    eventually(
        "a second probe reaches the primary",
        Duration::from_secs(5),
        || async { rig.primary.request_count() >= 3 },
    )
    .await;
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

// ---------------------------------------------------------------------------------------------
// Property test: generated hostile behaviour, invariants on what the client gets.
//
// A long run is one command away:
//   PROPTEST_CASES=5000 cargo test --test it hostile_primary_property

mod property {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Mutex, OnceLock};

    /// How the client asks: its dialect, the route (same dialect or translated), stream or not.
    #[derive(Debug, Clone, Copy)]
    struct Client {
        route: &'static str,
        client_dialect: Dialect,
        upstream_dialect: Dialect,
        stream: bool,
    }

    const ROUTES: [(&str, Dialect, Dialect); 4] = [
        ("claude", Dialect::Anthropic, Dialect::Anthropic),
        ("gpt", Dialect::OpenAi, Dialect::OpenAi),
        ("gpt-via-anthropic", Dialect::OpenAi, Dialect::Anthropic),
        ("claude-via-openai", Dialect::Anthropic, Dialect::OpenAi),
    ];

    /// Where a secret is planted in an error text.
    #[derive(Debug, Clone)]
    enum SecretForm {
        ConfiguredKey,
        UEscapedKey,
        UrlUserInfo,
        ProviderKey(usize),
    }

    impl SecretForm {
        /// (text for inside a JSON string, as written raw; the value that must not leak)
        fn plant(&self) -> (String, String) {
            match self {
                SecretForm::ConfiguredKey => (PRIMARY_KEY.into(), PRIMARY_KEY.into()),
                SecretForm::UEscapedKey => {
                    (format!("\\u0073{}", &PRIMARY_KEY[1..]), PRIMARY_KEY.into())
                }
                SecretForm::UrlUserInfo => (
                    format!("https://user:{URL_PASSWORD}@files.example.com/a/b"),
                    URL_PASSWORD.into(),
                ),
                SecretForm::ProviderKey(i) => (PROVIDER_KEYS[*i].into(), PROVIDER_KEYS[*i].into()),
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Event {
        Content(String),
        Ping,
        Comment,
        /// An in-stream error; `client_blamed` is an `invalid_request_error`.
        Error {
            client_blamed: bool,
        },
        /// Usage with an absurd token count, written raw.
        Usage(&'static str),
        Malformed,
        /// The dialect's normal ending.
        End,
    }

    #[derive(Debug, Clone)]
    enum Payload {
        /// 400 `invalid_request_error` whose message carries the secret.
        ClientError,
        /// An upstream-blamed status with a provider error body carrying the secret.
        ServerError(u16),
        /// A status whose blame the property leaves open.
        OddStatus(u16),
        /// A valid answer in the upstream's dialect (JSON or SSE as the client asked).
        Success,
        /// 200 with bytes that are no answer at all (non-UTF-8, the secret inside).
        Garbage(Vec<u8>),
        /// 200 SSE (stream requests only).
        Events(Vec<Event>),
    }

    #[derive(Debug, Clone, Copy)]
    enum Framing {
        Length,
        Chunked,
        CloseDelimited,
        /// `content-length` off by this much from the body's real length.
        WrongLength(i8),
    }

    #[derive(Debug, Clone, Copy)]
    enum Cut {
        None,
        /// Inside the response head, after this many bytes: a connection failure.
        InHead(u8, bool),
        /// After this fraction (per mille) of the body, then close (`false`) or reset (`true`).
        InBody(u16, bool),
    }

    #[derive(Debug, Clone)]
    struct Behaviour {
        payload: Payload,
        secret: SecretForm,
        headers: Vec<(&'static str, &'static str)>,
        framing: Framing,
        /// Write boundaries as per-mille positions in the body, each with a pause in ms.
        splits: Vec<(u16, u8)>,
        cut: Cut,
    }

    /// What the gateway must do with the behaviour, beyond the invariants every case has.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Failover,
        ClientError,
        Committed,
        Anything,
    }

    const ABSURD_HEADERS: [(&str, &str); 16] = [
        ("retry-after", "1e400"),
        ("retry-after", "99999999999999999999"),
        ("retry-after", "-0"),
        ("retry-after", "-1"),
        ("retry-after", "2"),
        ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ("retry-after", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ("retry-after", "soon"),
        ("retry-after-ms", "1e22"),
        ("retry-after-ms", "NaN"),
        ("retry-after-ms", "18446744073709551616"),
        ("x-ratelimit-reset-requests", "99999999999h"),
        ("x-ratelimit-reset-tokens", "1e22ms"),
        ("x-ratelimit-remaining-tokens", "-18446744073709551615"),
        ("anthropic-ratelimit-requests-reset", "9999-12-31T23:59:59Z"),
        ("anthropic-ratelimit-tokens-reset", "not a date"),
    ];

    const ABSURD_TOKENS: [&str; 4] = ["1e30", "18446744073709551615", "-1", "1.5"];

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => "[a-z ]{1,12}".prop_map(Event::Content),
            1 => Just(Event::Ping),
            1 => Just(Event::Comment),
            1 => any::<bool>().prop_map(|client_blamed| Event::Error { client_blamed }),
            1 => proptest::sample::select(&ABSURD_TOKENS[..]).prop_map(Event::Usage),
            1 => Just(Event::Malformed),
            2 => Just(Event::End),
        ]
    }

    fn payload(stream: bool) -> BoxedStrategy<Payload> {
        let common = prop_oneof![
            2 => Just(Payload::ClientError),
            2 => proptest::sample::select(vec![429u16, 500, 502, 503, 529, 599])
                .prop_map(Payload::ServerError),
            1 => proptest::sample::select(vec![299u16, 401, 403, 404, 418, 451])
                .prop_map(Payload::OddStatus),
            1 => Just(Payload::Success),
            1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Payload::Garbage),
        ];
        if stream {
            prop_oneof![
                2 => common,
                3 => proptest::collection::vec(event(), 0..8).prop_map(Payload::Events),
            ]
            .boxed()
        } else {
            common.boxed()
        }
    }

    fn behaviour(stream: bool) -> impl Strategy<Value = Behaviour> {
        (
            payload(stream),
            prop_oneof![
                Just(SecretForm::ConfiguredKey),
                Just(SecretForm::UEscapedKey),
                Just(SecretForm::UrlUserInfo),
                (0..PROVIDER_KEYS.len()).prop_map(SecretForm::ProviderKey),
            ],
            proptest::sample::subsequence(ABSURD_HEADERS.to_vec(), 0..3),
            prop_oneof![
                3 => Just(Framing::Length),
                3 => Just(Framing::Chunked),
                1 => Just(Framing::CloseDelimited),
                1 => any::<i8>().prop_map(Framing::WrongLength),
            ],
            proptest::collection::vec((0u16..1000, 0u8..15), 0..5),
            prop_oneof![
                6 => Just(Cut::None),
                1 => (any::<u8>(), any::<bool>()).prop_map(|(at, reset)| Cut::InHead(at, reset)),
                2 => (0u16..1000, any::<bool>()).prop_map(|(at, reset)| Cut::InBody(at, reset)),
            ],
        )
            .prop_map(
                |(payload, secret, headers, framing, splits, cut)| Behaviour {
                    payload,
                    secret,
                    headers,
                    framing,
                    splits,
                    cut,
                },
            )
    }

    fn client() -> impl Strategy<Value = Client> {
        (0..ROUTES.len(), any::<bool>()).prop_map(|(i, stream)| Client {
            route: ROUTES[i].0,
            client_dialect: ROUTES[i].1,
            upstream_dialect: ROUTES[i].2,
            stream,
        })
    }

    fn error_json(dialect: Dialect, kind: &str, message: &str) -> String {
        // The message is spliced in raw so a `\u` escape stays an escape on the wire.
        if dialect == Dialect::Anthropic {
            format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}}}}"#)
        } else {
            format!(
                r#"{{"error":{{"message":"{message}","type":"{kind}","param":null,"code":null}}}}"#
            )
        }
    }

    fn success_json(dialect: Dialect, tokens: &str) -> String {
        if dialect == Dialect::Anthropic {
            format!(
                r#"{{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{{"type":"text","text":"hi"}}],"stop_reason":"end_turn","stop_sequence":null,"usage":{{"input_tokens":3,"output_tokens":{tokens}}}}}"#
            )
        } else {
            format!(
                r#"{{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"hi"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":3,"completion_tokens":{tokens},"total_tokens":{tokens}}}}}"#
            )
        }
    }

    /// One SSE event of the upstream's dialect; `None` for content-free markers.
    fn sse_event(dialect: Dialect, event: &Event, secret: &str) -> String {
        let anthropic = dialect == Dialect::Anthropic;
        match event {
            Event::Content(t) if anthropic => anthropic_sse::text(t),
            Event::Content(t) => openai_sse::text(t),
            Event::Ping if anthropic => anthropic_sse::ping(),
            Event::Ping => ": keep-alive\n\n".into(),
            Event::Comment => ": hostile comment\n\n".into(),
            Event::Error { client_blamed } => {
                let kind = if *client_blamed {
                    "invalid_request_error"
                } else if anthropic {
                    "overloaded_error"
                } else {
                    "server_error"
                };
                let data = error_json(dialect, kind, &format!("failed near {secret}"));
                if anthropic {
                    format!("event: error\ndata: {data}\n\n")
                } else {
                    format!("data: {data}\n\n")
                }
            }
            // Without a stop reason: the stream is not finished after it.
            Event::Usage(n) if anthropic => format!(
                "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":null,\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{n}}}}}\n\n"
            ),
            Event::Usage(n) => format!(
                "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{n},\"completion_tokens\":{n},\"total_tokens\":{n}}}}}\n\n"
            ),
            Event::Malformed => "data: {\"type\":\"content_block_delta\",\"delta\":{\n\n".into(),
            Event::End if anthropic => anthropic_sse::ending(),
            Event::End => openai_sse::finish() + &openai_sse::done(),
        }
    }

    /// The response body and status the upstream sends, and what the gateway must make of it.
    fn body_of(b: &Behaviour, c: &Client) -> (u16, &'static str, Vec<u8>, Expect) {
        let dialect = c.upstream_dialect;
        let (planted, _) = b.secret.plant();
        let json = "application/json";
        match &b.payload {
            Payload::ClientError => {
                let body = error_json(
                    dialect,
                    "invalid_request_error",
                    &format!("bad parameter; {planted}"),
                );
                (400, json, body.into_bytes(), Expect::ClientError)
            }
            Payload::ServerError(status) => {
                let body = error_json(
                    dialect,
                    "api_error",
                    &format!("upstream trouble; {planted}"),
                );
                (*status, json, body.into_bytes(), Expect::Failover)
            }
            Payload::OddStatus(status) => {
                let body = error_json(dialect, "odd_error", &format!("odd; {planted}"));
                (*status, json, body.into_bytes(), Expect::Anything)
            }
            Payload::Success if c.stream => {
                let whole = if dialect == Dialect::Anthropic {
                    anthropic_sse::whole("hi")
                } else {
                    openai_sse::whole("hi")
                };
                (
                    200,
                    "text/event-stream",
                    whole.into_bytes(),
                    Expect::Anything,
                )
            }
            Payload::Success => (
                200,
                json,
                success_json(dialect, "18446744073709551615").into_bytes(),
                Expect::Anything,
            ),
            Payload::Garbage(bytes) => {
                let mut body = b"<html>\xff\xfe".to_vec();
                body.extend_from_slice(bytes);
                body.extend_from_slice(planted.as_bytes());
                let kind = if c.stream { "text/event-stream" } else { json };
                (200, kind, body, Expect::Failover)
            }
            Payload::Events(events) => {
                let mut body = if dialect == Dialect::Anthropic {
                    anthropic_sse::preamble()
                } else {
                    openai_sse::role()
                };
                let mut expect = None;
                let mut ends = Vec::new();
                // Nothing after the normal ending: what follows a terminal event is not
                // something this property judges.
                for e in events {
                    body += &sse_event(dialect, e, &planted);
                    ends.push((body.len(), e));
                    if matches!(e, Event::End) {
                        break;
                    }
                }
                // The commit point: the first complete content event before any failure.
                let cut_at = match b.cut {
                    Cut::InBody(permille, _) => body.len() * permille as usize / 1000,
                    _ => usize::MAX,
                };
                for (end, e) in ends {
                    if end > cut_at {
                        break;
                    }
                    match e {
                        Event::Content(_) => {
                            expect = Some(Expect::Committed);
                            break;
                        }
                        Event::Error {
                            client_blamed: true,
                        } if dialect == Dialect::Anthropic => {
                            expect = Some(Expect::ClientError);
                            break;
                        }
                        Event::Error {
                            client_blamed: true,
                        } => {
                            expect = Some(Expect::Anything);
                            break;
                        }
                        // A well-formed stream that ends without content is an (empty)
                        // answer, not a failure: either outcome is fine.
                        Event::End => {
                            expect = Some(Expect::Anything);
                            break;
                        }
                        Event::Error { .. } | Event::Malformed => {
                            expect = Some(Expect::Failover);
                            break;
                        }
                        _ => {}
                    }
                }
                // No content before the stream ended or was cut: nothing to commit, fail over.
                (
                    200,
                    "text/event-stream",
                    body.into_bytes(),
                    expect.unwrap_or(Expect::Failover),
                )
            }
        }
    }

    fn script_of(b: &Behaviour, c: &Client) -> (Script, Expect) {
        let (status, content_type, body, mut expect) = body_of(b, c);
        let mut headers: Vec<(&str, String)> = vec![("content-type", content_type.into())];
        headers.extend(b.headers.iter().map(|(k, v)| (*k, v.to_string())));
        let chunked = matches!(b.framing, Framing::Chunked);
        match b.framing {
            Framing::Length => headers.push(("content-length", body.len().to_string())),
            Framing::WrongLength(off) => {
                let n = (body.len() as i64 + off as i64).max(0);
                headers.push(("content-length", n.to_string()));
                if off != 0 && expect != Expect::Failover {
                    expect = Expect::Anything;
                }
            }
            Framing::Chunked => headers.push(("transfer-encoding", "chunked".into())),
            Framing::CloseDelimited => {}
        }
        let mut head = format!("HTTP/1.1 {status} Hostile\r\nconnection: close\r\n");
        for (k, v) in &headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        if let Cut::InHead(at, reset) = b.cut {
            let at = (at as usize).min(head.len() - 1);
            let script = Script::new().write(&head.as_bytes()[..at]);
            let script = if reset {
                script.reset()
            } else {
                script.close()
            };
            return (script, Expect::Failover);
        }
        let (body, cut_reset) = match b.cut {
            Cut::InBody(permille, reset) => {
                let at = body.len() * permille as usize / 1000;
                // Any cut body is broken: blame stays as computed for streams (the commit
                // point), and a cut non-stream answer is the upstream's failure.
                if matches!(b.payload, Payload::Success) && c.stream {
                    expect = Expect::Anything;
                } else if !matches!(b.payload, Payload::Events(_)) && status < 400 {
                    expect = Expect::Failover;
                } else if !matches!(b.payload, Payload::Events(_)) && expect == Expect::ClientError
                {
                    expect = Expect::Anything;
                }
                (body[..at].to_vec(), Some(reset))
            }
            _ => (body, None),
        };
        let mut script = Script::new().write(head.as_bytes());
        let mut points: Vec<(usize, u8)> = b
            .splits
            .iter()
            .map(|(p, pause)| (body.len() * *p as usize / 1000, *pause))
            .collect();
        points.sort();
        let mut from = 0;
        points.push((body.len(), 0));
        for (to, pause) in points {
            if to > from {
                let piece = &body[from..to];
                script = if chunked {
                    script.chunk(piece)
                } else {
                    script.write(piece)
                };
                from = to;
            }
            if pause > 0 {
                script = script.pause(Duration::from_millis(pause as u64));
            }
        }
        script = match cut_reset {
            Some(true) => script.reset(),
            Some(false) => script.close(),
            None if chunked => script.end_chunks(),
            None => script,
        };
        (script, expect)
    }

    /// The invariants every answer keeps, whatever the upstream did.
    fn check_well_formed(answer: &Answer, c: &Client) -> Result<(), String> {
        let is_sse = answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"));
        if is_sse {
            if answer.status != 200 {
                return Err(format!("SSE with status {}", answer.status));
            }
            if let Some(e) = &answer.body_error {
                return Err(format!("the stream broke off: {e}"));
            }
            let data = sse_data(&answer.body);
            let errors = answer.error_events().len();
            if errors > 1 {
                return Err(format!("{errors} error events"));
            }
            let last = data.last().cloned().unwrap_or_default();
            let last_json = serde_json::from_str::<serde_json::Value>(&last).ok();
            let is_error = last_json
                .as_ref()
                .is_some_and(|v| v["type"] == "error" || v.get("error").is_some());
            let terminal = if c.client_dialect == Dialect::Anthropic {
                last_json
                    .as_ref()
                    .is_some_and(|v| v["type"] == "message_stop")
            } else {
                last == "[DONE]"
            };
            let error_then_done = c.client_dialect == Dialect::OpenAi
                && last == "[DONE]"
                && errors == 1
                && data
                    .iter()
                    .rev()
                    .nth(1)
                    .is_some_and(|d| d.contains("\"error\""));
            if !(terminal || is_error || error_then_done) {
                return Err(format!(
                    "the stream ends with neither a terminal nor an error event: {last:?}"
                ));
            }
            if errors == 1 && !(is_error || error_then_done) {
                return Err("an error event, then more".into());
            }
            return Ok(());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&answer.body).map_err(|e| format!("not JSON ({e})"))?;
        if (200..300).contains(&answer.status) {
            let ok = if c.client_dialect == Dialect::Anthropic {
                v["type"] == "message"
            } else {
                v["object"] == "chat.completion"
            };
            if !ok {
                return Err("a 2xx that is not an answer of the client's dialect".into());
            }
        } else {
            if !v.pointer("/error/message").is_some_and(|m| m.is_string()) {
                return Err("an error without error.message".into());
            }
            if c.client_dialect == Dialect::Anthropic && v["type"] != "error" {
                return Err("an Anthropic error without type: error".into());
            }
        }
        Ok(())
    }

    fn check(answer: &Answer, c: &Client, expect: &Expect) -> Result<(), String> {
        check_well_formed(answer, c)?;
        let mut secrets = vec![PRIMARY_KEY, FALLBACK_KEY, URL_PASSWORD];
        secrets.extend(PROVIDER_KEYS);
        if let Some(leak) = leaked_secret(answer, &secrets) {
            return Err(leak);
        }
        let fallback = matches!(answer.backend(), Some("fallback" | "oa-fallback"));
        match expect {
            Expect::Failover if !(answer.status == 200 && fallback) => Err(format!(
                "an upstream-blamed failure was not failed over: {} from {:?}",
                answer.status,
                answer.backend()
            )),
            Expect::ClientError if answer.status != 400 => Err(format!(
                "a client error was not returned: {} from {:?}",
                answer.status,
                answer.backend()
            )),
            Expect::Committed if answer.status != 200 || fallback => Err(format!(
                "a committed stream was not served by the primary: {} from {:?}",
                answer.status,
                answer.backend()
            )),
            _ => Ok(()),
        }
    }

    /// One gateway for every case: its runtime, the rig, the alert payloads its webhook
    /// sink delivered, and how far the cases have read the log capture.
    struct Shared {
        rt: tokio::runtime::Runtime,
        rig: Rig,
        alerts: Received,
        log_cursor: Mutex<usize>,
    }

    fn shared_rig() -> &'static Shared {
        static RIG: OnceLock<Shared> = OnceLock::new();
        RIG.get_or_init(|| {
            let log_cursor = Mutex::new(captured_logs().mark());
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            // Thresholds out of reach: a case must not eject the primary for the next one.
            let health = "health: { failure_threshold: { default: 1000000, connection: 1000000, timeout: 1000000, rate_limit: 1000000, overloaded: 1000000, invalid_response: 1000000, server_error: 1000000, auth: 1000000 } }";
            let failover = "{ retries: 0, ttft_timeout: 2s, stall_timeout: 2s, connect_timeout: 1s, deadline: 10s, max_retry_after: 1s }";
            let (rig, alerts) = rt.block_on(async {
                let (hook, alerts) = receiver().await;
                // Every fallback and exhaustion is alerted, unthrottled, with its detail.
                let extra = format!(
                    "{health}\nalerts: {{ throttle: 0s, per_sink_per_minute: 100000, sinks: [ {{ kind: webhook, url: \"{hook}/alerts\" }} ] }}"
                );
                (rig_with(failover, &extra).await, alerts)
            });
            Shared {
                rt,
                rig,
                alerts,
                log_cursor,
            }
        })
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(48)
    }

    fn run_case(c: Client, b: Behaviour) -> Result<(), TestCaseError> {
        let Shared {
            rt,
            rig,
            alerts,
            log_cursor,
        } = shared_rig();
        let (script, expect) = script_of(&b, &c);
        rt.block_on(async {
            // Retry-After-driven cooldowns ignore thresholds: start every case healthy.
            for name in ["primary", "oa-primary"] {
                rig.http
                    .post(format!("{}/admin/backends/{name}/reset", rig.gateway))
                    .send()
                    .await
                    .unwrap();
            }
            rig.primary.clear();
            rig.primary.set_default(script);
            let answer = ask(rig, c.client_dialect, c.route, c.stream, &[]).await;
            // What the operator sees of the failure (last_detail) is scrubbed too.
            let admin = rig
                .http
                .get(format!("{}/admin/backends", rig.gateway))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let mut planted = vec![PRIMARY_KEY, FALLBACK_KEY, URL_PASSWORD];
            planted.extend(PROVIDER_KEYS);
            if let Some(leak) = planted.iter().find(|s| admin.contains(**s)) {
                return Err(TestCaseError::fail(format!(
                    "secret {leak:?} reached /admin/backends: {admin}"
                )));
            }
            // The logs since the last case (of every test running meanwhile, too) and the
            // alerts of every case so far (alerts are delivered a moment later, so a leak is
            // caught at the latest by a later case).
            let logged = captured_logs().take_new(&mut log_cursor.lock().unwrap());
            let alerted: String = alerts
                .lock()
                .unwrap()
                .iter()
                .map(|(_, _, body)| String::from_utf8_lossy(body).into_owned())
                .collect();
            for (surface, text) in [("the logs", &logged), ("an alert", &alerted)] {
                if let Some(leak) = planted.iter().find(|s| text.contains(**s)) {
                    return Err(TestCaseError::fail(format!(
                        "secret {leak:?} reached {surface}"
                    )));
                }
            }
            check(&answer, &c, &expect).map_err(|why| {
                TestCaseError::fail(format!(
                    "{why}\nexpected {expect:?}; answer {} {:?}\n{}",
                    answer.status,
                    answer.headers,
                    answer.text().chars().take(1500).collect::<String>()
                ))
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            max_shrink_time: 20_000,
            ..ProptestConfig::default()
        })]

        #[test]
        fn hostile_primary_property_the_client_gets_a_well_formed_secret_free_answer_and_failover_when_due(
            (c, b) in client().prop_flat_map(|c| behaviour(c.stream).prop_map(move |b| (c, b)))
        ) {
            run_case(c, b)?;
        }
    }
}
