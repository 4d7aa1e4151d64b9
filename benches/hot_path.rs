//! Micro-benchmarks of the per-request hot path, so a regression shows up at the function level
//! before it shows up in `bench/run`:
//!
//! - `body_scan/*`: locating `model` and `stream` in a ~150 B and a 50 KB request body;
//! - `model_rewrite/*`: splicing the chain entry's model into the body;
//! - `classify/*`: classifying real provider error responses (status, headers, body);
//! - `sse/*`: parsing a realistic 64-chunk Anthropic / OpenAI stream and classifying every event
//!   with the post-commit fast path, fed as the network delivers it (one read per event) and in
//!   4 KiB reads;
//! - `translate/*`: cross-dialect request translation of the ~150 B body, and translating the
//!   same 64-chunk streams into the other dialect event by event (the per-chunk cost a
//!   translated stream adds on top of `sse/*`);
//! - `agent_request/*`: request translation of real agent bodies (Hermes, Claude Code, a
//!   Claude Code body grown to ~150 KB, Codex; `tests/it/fixtures/agents`) for all six pairs,
//!   next to what the same-dialect path does with them (`body_scan`, `model_rewrite`) and a
//!   `memcpy` of the body;
//! - `session_derive/*`: deriving the session and turn from an agent body (default
//!   `health.session_from`), without a session header (as the rig sends) and with the headers
//!   the agent sent (Claude Code and Codex name their session in headers);
//! - `stream_event/*`: per-event stream translation for all six pairs, on streams the mock
//!   (`switchyard::mock`, in-process) sends in each dialect: 64 text deltas, and a tool call
//!   whose arguments arrive in 64 deltas (throughput = events, so time per element is per event).
//!
//! `cargo bench --bench hot_path` (add `-- body_scan` to filter).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderValue};
use switchyard::classify::events::{classify_event_fast, EventKind};
use switchyard::dialect::Dialect;
use switchyard::sse::{SseEvent, SseParser};

const SMALL: &[u8] = br#"{"model":"main","max_tokens":64,"messages":[{"role":"user","content":"Say hello in one short sentence, please."}],"stream":true}"#;

/// A ~50 KB body like an agent's: a system prompt, a few turns, a long pasted file.
fn large_body() -> Vec<u8> {
    // JSON-escaped source text: `\"` and `\n` as a client would send them.
    let line = r#"fn main() { println!(\"the quick brown fox jumps over the lazy dog\"); }\n"#;
    let mut file = String::new();
    while file.len() < 50_000 - 400 {
        file.push_str(line);
    }
    format!(
        concat!(
            r#"{{"model":"main","max_tokens":4096,"system":"You are a careful coding agent.","#,
            r#""messages":[{{"role":"user","content":"Review this file:\n{}"}},"#,
            r#"{{"role":"assistant","content":"Looking at it now."}},"#,
            r#"{{"role":"user","content":"Go on."}}],"temperature":0.2,"stream":false}}"#
        ),
        file
    )
    .into_bytes()
}

/// A captured agent request's body (`tests/it/fixtures/agents/{name}.json`), as JSON.
fn agent_json(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/tests/it/fixtures/agents/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let capture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("agent fixture")).expect("json");
    capture["body"].clone()
}

/// Claude Code's interactive turn 2 with its turns before the last user message repeated
/// until the body reaches 150 KB (the long-session size issue 18 names; bench/rig.py grows it
/// the same way).
fn claude_code_150kb() -> serde_json::Value {
    let mut body = agent_json("claude_code/06_interactive_main_turn2");
    let msgs = body["messages"].as_array().expect("messages").clone();
    let (head, last) = msgs.split_at(msgs.len() - 1);
    let mut grown = head.to_vec();
    loop {
        let mut all = grown.clone();
        all.extend_from_slice(last);
        body["messages"] = serde_json::Value::Array(all);
        if serde_json::to_vec(&body).expect("json").len() >= 150_000 {
            return body;
        }
        grown.extend_from_slice(head);
    }
}

/// The agent bodies: (name, client dialect, body bytes as the agent sent them).
fn agent_bodies() -> Vec<(&'static str, Dialect, Vec<u8>)> {
    let bytes = |v: serde_json::Value| serde_json::to_vec(&v).expect("json");
    vec![
        (
            "hermes",
            Dialect::OpenAi,
            bytes(agent_json("hermes/01_custom_main_tools")),
        ),
        (
            "claude_code",
            Dialect::Anthropic,
            bytes(agent_json("claude_code/06_interactive_main_turn2")),
        ),
        (
            "claude_code_150KB",
            Dialect::Anthropic,
            bytes(claude_code_150kb()),
        ),
        (
            "codex",
            Dialect::Responses,
            bytes(agent_json("codex/01_exec_main")),
        ),
    ]
}

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![("150B", SMALL.to_vec()), ("50KB", large_body())];
    out.extend(agent_bodies().into_iter().map(|(n, _, b)| (n, b)));
    out
}

fn body_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("body_scan");
    for (name, body) in bodies() {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| switchyard::body::scan(black_box(body)).unwrap())
        });
    }
    g.finish();
}

fn model_rewrite(c: &mut Criterion) {
    let mut g = c.benchmark_group("model_rewrite");
    for (name, body) in bodies() {
        let span = switchyard::body::scan(&body).unwrap().model_span;
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &body, |b, body| {
            b.iter(|| {
                switchyard::body::with_model(
                    black_box(body),
                    black_box(&span),
                    black_box(br#""claude-sonnet-4-5""#),
                )
            })
        });
    }
    g.finish();
}

fn classify(c: &mut Criterion) {
    let mut anthropic = HeaderMap::new();
    anthropic.insert("content-type", HeaderValue::from_static("application/json"));
    anthropic.insert(
        "request-id",
        HeaderValue::from_static("req_011CAbcdefghijklmnop"),
    );
    let mut limited = anthropic.clone();
    limited.insert("retry-after", HeaderValue::from_static("17"));
    let mut openai = HeaderMap::new();
    openai.insert("content-type", HeaderValue::from_static("application/json"));
    openai.insert(
        "x-request-id",
        HeaderValue::from_static("req_5f0c1e2d3a4b5c6d7e8f"),
    );
    let mut openai_limited = openai.clone();
    openai_limited.insert("retry-after-ms", HeaderValue::from_static("1200"));
    let cases: [(&str, u16, &HeaderMap, &[u8]); 5] = [
        (
            "anthropic_529_overloaded",
            529,
            &anthropic,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CAbcdefghijklmnop"}"#,
        ),
        (
            "anthropic_429_retry_after",
            429,
            &limited,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization of 80,000 input tokens per minute."}}"#,
        ),
        (
            "anthropic_400_prompt_too_long",
            400,
            &anthropic,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 215000 tokens > 200000 maximum"}}"#,
        ),
        (
            "openai_429_rate_limit",
            429,
            &openai_limited,
            br#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): Limit 30000, Used 29000, Requested 1500. Please try again in 2s.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
        ),
        (
            "openai_500_server_error",
            500,
            &openai,
            br#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
        ),
    ];
    let mut g = c.benchmark_group("classify");
    for (name, status, headers, body) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                switchyard::classify::classify_response(
                    black_box(status),
                    black_box(headers),
                    black_box(body),
                )
            })
        });
    }
    g.finish();
}

/// A realistic Anthropic stream: envelope, ping, 64 text deltas, stop events.
fn anthropic_stream() -> Vec<Vec<u8>> {
    let mut ev = vec![
        br#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2}}}

"#
        .to_vec(),
        b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n".to_vec(),
        b"event: ping\ndata: {\"type\": \"ping\"}\n\n".to_vec(),
    ];
    for i in 0..64 {
        ev.push(
            format!(
                "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" token{i} of the answer\"}}}}\n\n"
            )
            .into_bytes(),
        );
    }
    ev.push(
        b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
            .to_vec(),
    );
    ev.push(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":64}}\n\n".to_vec());
    ev.push(b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_vec());
    ev
}

/// A realistic OpenAI stream: role chunk, 64 content chunks, finish chunk, usage, `[DONE]`.
fn openai_stream() -> Vec<Vec<u8>> {
    let head = r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_eb9dce56a8","#;
    let mut ev = vec![format!(
        "data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
    )
    .into_bytes()];
    for i in 0..64 {
        ev.push(
            format!(
                "data: {head}\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" token{i} of the answer\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
            )
            .into_bytes(),
        );
    }
    ev.push(
        format!(
            "data: {head}\"choices\":[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
        )
        .into_bytes(),
    );
    ev.push(
        format!(
            "data: {head}\"choices\":[],\"usage\":{{\"prompt_tokens\":472,\"completion_tokens\":64,\"total_tokens\":536}}}}\n\n"
        )
        .into_bytes(),
    );
    ev.push(b"data: [DONE]\n\n".to_vec());
    ev
}

/// Parses every read and classifies every event; returns the number of content events.
fn parse_and_classify(dialect: Dialect, reads: &[Vec<u8>]) -> usize {
    let mut parser = SseParser::default();
    let mut events: Vec<SseEvent> = Vec::with_capacity(4);
    let mut content = 0;
    for read in reads {
        events.clear();
        parser
            .feed(read, &mut events)
            .expect("events within the size limit");
        for ev in &events {
            if classify_event_fast(dialect, ev) == EventKind::Content {
                content += 1;
            }
        }
    }
    content
}

fn rechunk(events: &[Vec<u8>], size: usize) -> Vec<Vec<u8>> {
    events.concat().chunks(size).map(<[u8]>::to_vec).collect()
}

fn sse(c: &mut Criterion) {
    let mut g = c.benchmark_group("sse");
    for (name, dialect, events) in [
        ("anthropic", Dialect::Anthropic, anthropic_stream()),
        ("openai", Dialect::OpenAi, openai_stream()),
    ] {
        let expected = parse_and_classify(dialect, &events);
        assert!(expected >= 64, "{name}: {expected} content events");
        g.throughput(Throughput::Elements(events.len() as u64));
        for (split, reads) in [
            ("read_per_event", events.clone()),
            ("4KiB_reads", rechunk(&events, 4096)),
        ] {
            g.bench_with_input(BenchmarkId::new(name, split), &reads, |b, reads| {
                b.iter(|| parse_and_classify(dialect, black_box(reads)))
            });
        }
    }
    g.finish();
}

fn translate(c: &mut Criterion) {
    use switchyard::dialect::translate::{self, Options, StreamTranslator};
    let mut g = c.benchmark_group("translate");
    let opts = Options::default();
    let oa_small = br#"{"model":"main","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello in one short sentence, please."}],"stream":true}"#;
    g.bench_function("request_openai_to_anthropic/150B", |b| {
        b.iter(|| {
            translate::request(
                Dialect::OpenAi,
                Dialect::Anthropic,
                black_box(oa_small),
                "claude-x",
                &opts,
            )
            .unwrap()
        })
    });
    g.bench_function("request_anthropic_to_openai/150B", |b| {
        b.iter(|| {
            translate::request(
                Dialect::Anthropic,
                Dialect::OpenAi,
                black_box(SMALL),
                "gpt-x",
                &opts,
            )
            .unwrap()
        })
    });
    for (name, from, to, events) in [
        (
            "anthropic_to_openai",
            Dialect::Anthropic,
            Dialect::OpenAi,
            anthropic_stream(),
        ),
        (
            "openai_to_anthropic",
            Dialect::OpenAi,
            Dialect::Anthropic,
            openai_stream(),
        ),
    ] {
        g.throughput(Throughput::Elements(events.len() as u64));
        g.bench_with_input(BenchmarkId::new("stream", name), &events, |b, events| {
            b.iter(|| {
                let mut parser = SseParser::default();
                let mut t = StreamTranslator::new(from, to, "route", true);
                let mut parsed = Vec::new();
                let mut out = Vec::with_capacity(16 * 1024);
                for read in black_box(events) {
                    parser
                        .feed(read, &mut parsed)
                        .expect("events within the size limit");
                    for ev in parsed.drain(..) {
                        t.push(&ev, &mut out);
                    }
                }
                t.finish(&mut out);
                out.len()
            })
        });
    }
    g.finish();
}

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::OpenAi => "openai",
        Dialect::Anthropic => "anthropic",
        Dialect::Responses => "responses",
    }
}

const DIALECTS: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Responses];

/// Request translation of the agent bodies to both other dialects, and a memcpy of each body
/// (the yardstick issue 18 sets for the same-dialect path, which `body_scan` + `model_rewrite`
/// measure on the same bodies).
fn agent_request(c: &mut Criterion) {
    use switchyard::dialect::translate;
    let opts = translate::Options::default();
    let mut g = c.benchmark_group("agent_request");
    for (name, from, body) in agent_bodies() {
        g.throughput(Throughput::Bytes(body.len() as u64));
        for to in DIALECTS.into_iter().filter(|&d| d != from) {
            // The mock validates what it receives: the translation must succeed on real bodies.
            translate::request(from, to, &body, "m", &opts).expect("translates");
            let id = format!("{}_to_{}", dialect_name(from), dialect_name(to));
            g.bench_with_input(BenchmarkId::new(id, name), &body, |b, body| {
                b.iter(|| translate::request(from, to, black_box(body), "m", &opts).unwrap())
            });
        }
        let mut dst = vec![0u8; body.len()];
        g.bench_with_input(BenchmarkId::new("memcpy", name), &body, |b, body| {
            b.iter(|| dst.copy_from_slice(black_box(body)))
        });
    }
    g.finish();
}

/// The headers a captured agent request carried (`tests/it/fixtures/agents/{name}.json`).
fn agent_headers(name: &str) -> HeaderMap {
    let path = format!(
        "{}/tests/it/fixtures/agents/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let capture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("agent fixture")).expect("json");
    let mut out = HeaderMap::new();
    for (k, v) in capture["headers"].as_object().expect("headers") {
        if let (Ok(k), Some(Ok(v))) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            v.as_str().map(HeaderValue::from_str),
        ) {
            out.insert(k, v);
        }
    }
    out
}

/// Session and turn derivation on the agent bodies, default sources: the per-request body work
/// the same-dialect path does besides `body_scan` when the client names no session.
fn session_derive(c: &mut Criterion) {
    use switchyard::config::SessionSource;
    let sources = SessionSource::DEFAULT;
    let fixtures = [
        "hermes/01_custom_main_tools",
        "claude_code/06_interactive_main_turn2",
        "",
        "codex/01_exec_main",
    ];
    let mut g = c.benchmark_group("session_derive");
    for ((name, _, body), fixture) in agent_bodies().into_iter().zip(fixtures) {
        let spans = switchyard::body::scan(&body).unwrap().spans;
        let captured = agent_headers(if fixture.is_empty() {
            "claude_code/06_interactive_main_turn2"
        } else {
            fixture
        });
        g.throughput(Throughput::Bytes(body.len() as u64));
        for (kind, headers) in [("no_header", HeaderMap::new()), ("agent_headers", captured)] {
            assert!(
                switchyard::session::derive(&sources, &headers, &body, &spans).is_some(),
                "{name} {kind}: no session derived"
            );
            g.bench_with_input(BenchmarkId::new(kind, name), &body, |b, body| {
                b.iter(|| {
                    switchyard::session::derive(
                        &sources,
                        black_box(&headers),
                        black_box(body),
                        &spans,
                    )
                })
            });
        }
    }
    g.finish();
}

/// One stream as the mock sends it in `dialect` (the same shapes as the providers'), split
/// into SSE events: 64 text deltas, or a tool call whose arguments come in 64 deltas.
fn mock_stream(rt: &tokio::runtime::Runtime, dialect: Dialect, tool: bool) -> Vec<Vec<u8>> {
    use serde_json::json;
    let reply = if tool {
        json!({"kind": "ok", "chunks": 64, "tool_call": {"name": "read_file",
               "arguments": {"path": "src/dialect/translate/stream.rs", "start_line": 1, "end_line": 400,
                             "reason": "look at how every backend event becomes the client's bytes, one at a time"}}})
    } else {
        let text: String = (0..64)
            .map(|i| format!(" token{i} of the answer"))
            .collect();
        json!({"kind": "ok", "chunks": 64, "text": text})
    };
    let (path, body, headers): (&str, serde_json::Value, &[(&str, &str)]) = match dialect {
        Dialect::OpenAi => (
            "/v1/chat/completions",
            json!({"model": "gpt-x", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
            &[("authorization", "Bearer k")],
        ),
        Dialect::Anthropic => (
            "/v1/messages",
            json!({"model": "claude-x", "stream": true, "max_tokens": 64,
                   "messages": [{"role": "user", "content": "hi"}]}),
            &[("x-api-key", "k"), ("anthropic-version", "2023-06-01")],
        ),
        Dialect::Responses => (
            "/v1/responses",
            json!({"model": "gpt-x", "stream": true, "input": "hi"}),
            &[("authorization", "Bearer k")],
        ),
    };
    let raw = rt.block_on(async {
        let mock = switchyard::mock::spawn("bench").await.expect("mock");
        mock.set_plan(serde_json::from_value(json!({"then": reply})).expect("plan"));
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", mock.url()))
            .json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("mock answers");
        assert!(resp.status().is_success(), "mock: {}", resp.status());
        resp.bytes().await.expect("body")
    });
    // One Vec per event, as the network would deliver them.
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser.feed(&raw, &mut events).expect("events");
    events
        .iter()
        .map(|ev| {
            let mut b = Vec::new();
            if let Some(e) = &ev.event {
                b.extend_from_slice(format!("event: {e}\n").as_bytes());
            }
            b.extend_from_slice(b"data: ");
            b.extend_from_slice(ev.data.as_deref().unwrap_or_default());
            b.extend_from_slice(b"\n\n");
            b
        })
        .collect()
}

/// Per-event stream translation for all six pairs: parse + translate every event of a mock
/// stream (backend dialect `from`) into the client's dialect `to`.
fn stream_event(c: &mut Criterion) {
    use switchyard::dialect::translate::StreamTranslator;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("stream_event");
    for from in DIALECTS {
        for (kind, tool) in [("text", false), ("tool_call", true)] {
            let events = mock_stream(&rt, from, tool);
            g.throughput(Throughput::Elements(events.len() as u64));
            for to in DIALECTS.into_iter().filter(|&d| d != from) {
                let run = |events: &[Vec<u8>]| {
                    let mut parser = SseParser::default();
                    let mut t = StreamTranslator::new(from, to, "route", true);
                    let mut parsed = Vec::new();
                    let mut out = Vec::with_capacity(32 * 1024);
                    for read in events {
                        parser
                            .feed(read, &mut parsed)
                            .expect("events within the size limit");
                        for ev in parsed.drain(..) {
                            t.push(&ev, &mut out);
                        }
                    }
                    t.finish(&mut out);
                    out.len()
                };
                assert!(run(&events) > 0, "{from:?} → {to:?} {kind}: no output");
                let id = format!("{}_to_{}", dialect_name(from), dialect_name(to));
                g.bench_with_input(BenchmarkId::new(id, kind), &events, |b, events| {
                    b.iter(|| run(black_box(events)))
                });
            }
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = body_scan, model_rewrite, classify, sse, translate, agent_request, session_derive, stream_event
}
criterion_main!(benches);
