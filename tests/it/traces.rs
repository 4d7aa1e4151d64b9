//! OpenTelemetry traces, end to end: the real binary (the exporter and its subscriber are
//! process-wide, so each case gets its own process) in front of two mocks, exporting over
//! OTLP/HTTP protobuf to a receiver in this test.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{json, Value};

use crate::support::procs::free_port;
use crate::support::{anthropic_body, spawn_mock, MockHandle, FALLBACK_KEY, PRIMARY_KEY, PROMPTLY};

/// `POST /v1/traces` bodies, as the collector would get them.
type Exports = Arc<Mutex<Vec<axum::body::Bytes>>>;

/// A minimal OTLP/HTTP receiver: records each export and answers an empty (valid) response.
async fn otlp_receiver() -> (String, Exports) {
    let got: Exports = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

/// Every span exported so far.
fn spans(exports: &Exports) -> Vec<Span> {
    let mut out = Vec::new();
    for body in exports.lock().unwrap().iter() {
        let req = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
        for rs in req.resource_spans {
            for ss in rs.scope_spans {
                out.extend(ss.spans);
            }
        }
    }
    out
}

fn attr(span: &Span, key: &str) -> Option<String> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    Some(match kv.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        AnyValue::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The gateway binary, killed when dropped.
struct Gateway {
    child: Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `switchyard serve` on a `claude` route (primary, then fallback) with `env`; every
/// `OTEL_*` variable of the test's own environment is removed first.
async fn gateway(
    name: &str,
    primary: &MockHandle,
    fallback: &MockHandle,
    env: &[(&str, &str)],
    extra: &str,
) -> Gateway {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("switchyard-traces-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("switchyard.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
listen: 127.0.0.1:{port}
backends:
  primary: {{ api: anthropic_messages, base_url: "{}", api_key_env: PRIMARY_KEY }}
  fallback: {{ api: anthropic_messages, base_url: "{}", api_key_env: FALLBACK_KEY }}
routes:
  claude:
    chain:
      - {{ backend: primary, model: claude-opus-4-7 }}
      - {{ backend: fallback, model: claude-sonnet-4-5 }}
failover: {{ retries: 0, backoff: {{ base: 5ms, max: 20ms }} }}
health: {{ failure_threshold: {{ default: 1000, connection: 1000, timeout: 1000 }} }}
{extra}
"#,
            primary.url(),
            fallback.url()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env("PRIMARY_KEY", PRIMARY_KEY)
        .env("FALLBACK_KEY", FALLBACK_KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the gateway exited before listening: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the gateway did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Gateway {
        child,
        url: format!("http://127.0.0.1:{port}"),
        dir,
    }
}

async fn primary_overloaded(http: &reqwest::Client, primary: &MockHandle) {
    let r = http
        .post(format!("{}/_mock/plan", primary.url()))
        .json(&json!({"steps": [], "then": {"kind": "status", "status": 529}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

async fn request_log(http: &reqwest::Client, mock: &MockHandle) -> Vec<Value> {
    http.get(format!("{}/_mock/requests", mock.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn post(
    http: &reqwest::Client,
    gw: &Gateway,
    stream: bool,
    traceparent: Option<&str>,
) -> reqwest::Response {
    let mut rb = http
        .post(format!("{}/v1/messages", gw.url))
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_body(stream));
    if let Some(tp) = traceparent {
        rb = rb
            .header("traceparent", tp)
            .header("tracestate", "client=1");
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// Primary 529 → fallback, streamed, with the client's trace context: one request span
/// continuing the client's trace and two attempt spans under it, with the GenAI attributes;
/// each upstream got a traceparent naming its attempt span.
#[tokio::test]
async fn a_failover_is_one_request_span_with_an_attempt_span_per_backend_in_the_clients_trace() {
    let (collector, exports) = otlp_receiver().await;
    let primary = spawn_mock("primary").await;
    let fallback = spawn_mock("fallback").await;
    let http = reqwest::Client::new();
    primary_overloaded(&http, &primary).await;
    let gw = gateway(
        "on",
        &primary,
        &fallback,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_SERVICE_NAME", "switchyard-test"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
        "",
    )
    .await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = post(&http, &gw, true, Some(&traceparent)).await;
    let text = r.text().await.unwrap();
    assert!(text.contains("message_stop"), "{text}");

    let started = Instant::now();
    let in_trace = loop {
        let got: Vec<Span> = spans(&exports)
            .into_iter()
            .filter(|s| hex(&s.trace_id) == CLIENT_TRACE)
            .collect();
        if got.len() >= 3 {
            break got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "spans exported: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let requests: Vec<&Span> = in_trace
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    let mut attempts: Vec<&Span> = in_trace
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!((requests.len(), attempts.len()), (1, 2), "{in_trace:#?}");
    let request = requests[0];
    attempts.sort_by_key(|s| s.start_time_unix_nano);

    // The request span continues the client's span; the attempts are its children.
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN);
    for a in &attempts {
        assert_eq!(a.parent_span_id, request.span_id, "{a:#?}");
    }
    assert_eq!(request.name, "chat claude");
    let want = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "claude"),
        ("gen_ai.response.model", "claude-sonnet-4-5"),
        ("gen_ai.provider.name", "anthropic"),
        ("switchyard.route", "claude"),
        ("switchyard.backend", "fallback"),
        ("switchyard.attempts", "2"),
        ("switchyard.outcome", "served"),
        ("http.response.status_code", "200"),
    ];
    for (k, v) in want {
        assert_eq!(
            attr(request, k).as_deref(),
            Some(v),
            "request {k}: {request:#?}"
        );
    }
    assert!(
        attr(request, "switchyard.response.bytes")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    let (first, second) = (attempts[0], attempts[1]);
    assert_eq!(first.name, "chat claude-opus-4-7");
    for (k, v) in [
        ("backend", "primary"),
        ("gen_ai.request.model", "claude-opus-4-7"),
        ("gen_ai.provider.name", "anthropic"),
        ("server.address", "127.0.0.1"),
        ("error.type", "overloaded"),
        ("http.response.status_code", "529"),
        ("switchyard.decision", "failover"),
        ("switchyard.retry", "0"),
        ("n", "1"),
    ] {
        assert_eq!(
            attr(first, k).as_deref(),
            Some(v),
            "first attempt {k}: {first:#?}"
        );
    }
    for (k, v) in [
        ("backend", "fallback"),
        ("gen_ai.request.model", "claude-sonnet-4-5"),
        ("switchyard.decision", "serve"),
        ("n", "2"),
    ] {
        assert_eq!(
            attr(second, k).as_deref(),
            Some(v),
            "second attempt {k}: {second:#?}"
        );
    }
    // The failed attempt's log line rides along as a span event.
    assert!(
        first.events.iter().any(|e| e.name == "attempt failed"),
        "{first:#?}"
    );
    assert!(attr(second, "switchyard.ttft_ms").is_some(), "{second:#?}");
    assert!(attr(second, "error.type").is_none());

    // Upstream, each attempt carried its own span as the parent, in the client's trace; the
    // client's tracestate went along.
    for (mock, span) in [(&primary, first), (&fallback, second)] {
        let log = request_log(&http, mock).await;
        let sent = &log.last().unwrap()["headers"];
        let want = format!("00-{CLIENT_TRACE}-{}-01", hex(&span.span_id));
        assert_eq!(sent["traceparent"], want, "{sent}");
        assert_eq!(sent["tracestate"], "client=1");
    }

    // No secret in what was exported: the keys the gateway sent upstream appear nowhere.
    for body in exports.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains(PRIMARY_KEY) && !text.contains(FALLBACK_KEY));
    }

    // Without a client trace context: a new trace, still forwarded upstream.
    post(&http, &gw, false, None).await;
    let sent = &request_log(&http, &fallback).await.last().unwrap()["headers"].clone();
    let tp = sent["traceparent"]
        .as_str()
        .expect("a traceparent upstream");
    assert!(tp.starts_with("00-") && !tp.contains(CLIENT_TRACE), "{tp}");
    // Its span is in that new trace, with the usage the (non-streamed) answer reported.
    let trace = &tp[3..35];
    let started = Instant::now();
    let request = loop {
        let found = spans(&exports)
            .into_iter()
            .find(|s| hex(&s.trace_id) == trace && s.kind == SpanKind::Server as i32);
        if let Some(s) = found {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no span in {trace}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(request.parent_span_id.is_empty(), "{request:#?}");
    for k in ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"] {
        let n: u64 = attr(&request, k)
            .unwrap_or_else(|| panic!("{k}: {request:#?}"))
            .parse()
            .unwrap();
        assert!(n > 0, "{k}");
    }

    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchyard_trace_spans_dropped_total{reason=\"queue_full\"} 0"),
        "{metrics}"
    );
}

/// Tracing off (here: turned off by `OTEL_SDK_DISABLED` although an endpoint is set): nothing
/// is exported, no trace context is invented upstream, and a client's goes along unchanged.
#[tokio::test]
async fn with_tracing_off_nothing_is_exported_and_only_the_clients_context_goes_upstream() {
    let (collector, exports) = otlp_receiver().await;
    let primary = spawn_mock("primary").await;
    let fallback = spawn_mock("fallback").await;
    let http = reqwest::Client::new();
    primary_overloaded(&http, &primary).await;
    let gw = gateway(
        "off",
        &primary,
        &fallback,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str()),
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
        "",
    )
    .await;

    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    post(&http, &gw, true, Some(&traceparent))
        .await
        .text()
        .await
        .unwrap();
    for mock in [&primary, &fallback] {
        let log = request_log(&http, mock).await;
        let sent = &log.last().unwrap()["headers"];
        assert_eq!(sent["traceparent"], traceparent.as_str(), "{sent}");
        assert_eq!(sent["tracestate"], "client=1");
    }
    // The primary is cooling down now: this one goes to the fallback alone.
    post(&http, &gw, false, None).await;
    let log = request_log(&http, &fallback).await;
    assert_eq!(log.len(), 2);
    let sent: HashMap<String, Value> =
        serde_json::from_value(log.last().unwrap()["headers"].clone()).unwrap();
    assert!(
        !sent.contains_key("traceparent") && !sent.contains_key("tracestate"),
        "{sent:?}"
    );

    // Far longer than the 50 ms export schedule the exporter would have used.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(exports.lock().unwrap().is_empty());
    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("switchyard_trace_spans_dropped_total"),
        "{metrics}"
    );
}

/// A collector that takes the connection and never answers: requests are served as fast as
/// ever, and the spans that find the (here tiny) queue full are dropped and counted.
#[tokio::test]
async fn a_collector_that_hangs_never_slows_a_request_and_the_dropped_spans_are_counted() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", hung.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hung.accept().await {
            held.push(conn);
        }
    });
    let primary = spawn_mock("primary").await;
    let fallback = spawn_mock("fallback").await;
    let http = reqwest::Client::new();
    primary_overloaded(&http, &primary).await;
    let gw = gateway(
        "hung",
        &primary,
        &fallback,
        &[("OTEL_BSP_SCHEDULE_DELAY", "20")],
        &format!("telemetry: {{ otlp_endpoint: \"{collector}\", max_queued_spans: 4 }}"),
    )
    .await;
    let started = Instant::now();
    for _ in 0..10 {
        post(&http, &gw, false, None).await;
    }
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    let metrics = http
        .get(format!("{}/metrics", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("switchyard_trace_spans_dropped_total{reason=\"queue_full\"} ")
        })
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    // At least 2 spans a request (request and attempt), at most 4 held by the hung export.
    assert!(dropped >= 20 - 4, "{dropped}\n{metrics}");
}
