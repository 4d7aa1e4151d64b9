//! The engine on paused time against a scripted transport: every rule of the README's failover
//! table, with exact timings (tokio's clock only moves when every task waits), no sockets.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Response, StatusCode};
use tokio::time::Instant;

use crate::app::Gateway;
use crate::config::Config;
use crate::dialect::Dialect;
use crate::failover::outcome::{ClientRequest, Outcome, Served};
use crate::failure::FailureReason;
use crate::stream::RelayEnd;
use crate::upstream::{ForwardHeaders, UpstreamBody, UpstreamError};

/// What a scripted backend does with one request.
#[derive(Clone)]
enum Step {
    /// A status with headers and a body, at once.
    Answer(u16, Vec<(&'static str, String)>, &'static str),
    /// A 200 event stream: each chunk after its pause, then `end`.
    Sse(Vec<(Duration, &'static str)>, End),
    /// The connection is refused.
    Refused,
}

#[derive(Clone, Copy)]
enum End {
    Close,
    /// Nothing more, ever (the stream stalls).
    Hang,
}

const ANSWER: &str = r#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"hi"}],"model":"m","stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#;
const CONTENT: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n";
const STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn ok() -> Step {
    Step::Answer(200, vec![], ANSWER)
}

fn status(code: u16, body: &'static str) -> Step {
    Step::Answer(code, vec![], body)
}

fn with_retry_after(code: u16, secs: &str) -> Step {
    Step::Answer(code, vec![("retry-after", secs.to_string())], "{}")
}

/// Scripts per backend name: each request takes the next step; the last one repeats.
#[derive(Default, Clone)]
struct Script(
    Arc<Mutex<HashMap<&'static str, VecDeque<Step>>>>,
    Arc<Mutex<Vec<&'static str>>>,
);

impl Script {
    fn on(self, backend: &'static str, steps: Vec<Step>) -> Self {
        self.0.lock().unwrap().insert(backend, steps.into());
        self
    }

    /// The backends asked, in order.
    fn calls(&self) -> Vec<&'static str> {
        self.1.lock().unwrap().clone()
    }

    fn next(&self, backend: &str) -> Step {
        let mut all = self.0.lock().unwrap();
        let (name, steps) = all
            .iter_mut()
            .find(|(name, _)| **name == backend)
            .unwrap_or_else(|| panic!("no script for {backend}"));
        self.1.lock().unwrap().push(name);
        if steps.len() > 1 {
            steps.pop_front().unwrap()
        } else {
            steps.front().cloned().expect("a step")
        }
    }
}

fn answer(step: Step) -> Result<Response<UpstreamBody>, UpstreamError> {
    let (code, headers, body): (u16, Vec<(&str, String)>, UpstreamBody) = match step {
        Step::Refused => {
            return Err(UpstreamError::Scripted(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            )))
        }
        Step::Answer(code, headers, body) => {
            let chunk: Result<Bytes, UpstreamError> = Ok(Bytes::from_static(body.as_bytes()));
            (
                code,
                headers,
                UpstreamBody::Scripted(Box::pin(futures_util::stream::iter([chunk]))),
            )
        }
        Step::Sse(chunks, end) => {
            let chunks = futures_util::stream::iter(chunks).then(|(pause, text)| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, UpstreamError>(Bytes::from_static(text.as_bytes()))
            });
            let body: crate::upstream::ByteStream = match end {
                End::Close => Box::pin(chunks),
                End::Hang => Box::pin(chunks.chain(futures_util::stream::pending())),
            };
            (
                200,
                vec![("content-type", "text/event-stream".to_string())],
                UpstreamBody::Scripted(body),
            )
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    for (k, v) in headers {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    Ok(r)
}

const CONFIG: &str = r#"
backends:
  primary: { api: anthropic_messages, base_url: "http://primary.test" }
  fallback: { api: anthropic_messages, base_url: "http://fallback.test" }
routes:
  r: { chain: [ { backend: primary, model: m1 }, { backend: fallback, model: m2 } ] }
health: { failure_threshold: { default: 1000, connection: 1000, timeout: 1000 } }
failover:
"#;

/// The failover settings of every test, unless a test overrides one.
const FAILOVER: &[(&str, &str)] = &[
    ("retries", "2"),
    ("backoff", "{ base: 100ms, max: 1s }"),
    ("max_retry_after", "10s"),
    ("ttft_timeout", "1s"),
    ("stall_timeout", "1s"),
    ("deadline", "60s"),
];

fn gateway(script: &Script, overrides: &[(&str, &str)]) -> Gateway {
    let mut yaml = CONFIG.to_string();
    for (key, default) in FAILOVER {
        let value = overrides
            .iter()
            .find(|(k, _)| k == key)
            .map_or(*default, |(_, v)| v);
        yaml.push_str(&format!("  {key}: {value}\n"));
    }
    for (key, value) in overrides
        .iter()
        .filter(|(k, _)| !FAILOVER.iter().any(|(d, _)| d == k))
    {
        yaml.push_str(&format!("  {key}: {value}\n"));
    }
    let config = Config::from_yaml(&yaml, "test.yaml", &|_| None).unwrap();
    let mut gw = Gateway::new(Arc::new(config)).unwrap();
    let script = script.clone();
    gw.upstream.scripted = Some(Arc::new(move |call| {
        let step = script.next(&call.backend.name);
        Box::pin(async move { answer(step) })
    }));
    gw
}

fn request(gw: &Gateway, stream: bool) -> ClientRequest {
    request_saying(gw, stream, "hi")
}

fn request_saying(gw: &Gateway, stream: bool, text: &str) -> ClientRequest {
    let body = Bytes::from(format!(
        r#"{{"model":"r","max_tokens":8,"stream":{stream},"messages":[{{"role":"user","content":"{text}"}}]}}"#
    ));
    ClientRequest {
        dialect: Dialect::Anthropic,
        operation: crate::dialect::Operation::Generate,
        request_id: "req_test".into(),
        scanned: crate::body::scan(&body).unwrap(),
        body,
        route: gw.config.routes["r"].clone(),
        fwd: ForwardHeaders::default(),
        session: None,
        platform: None,
        previous_response: None,
        stores_response: false,
        accept_problem: false,
        span: tracing::Span::none(),
    }
}

/// Who answered, after how many attempts, and the reasons of the failed ones.
#[derive(Debug, PartialEq)]
enum Got {
    Served(&'static str, u32, Vec<FailureReason>),
    Returned(u16, FailureReason, u32),
    Exhausted(u32),
}

async fn run(gw: &Gateway, stream: bool) -> (Got, Duration, Outcome) {
    let started = Instant::now();
    let outcome = gw.run(&request(gw, stream)).await;
    let took = started.elapsed();
    let got = match &outcome {
        Outcome::Served {
            backend,
            attempts,
            failures,
            ..
        } => Got::Served(
            if &*gw.config.backend(*backend).name == "primary" {
                "primary"
            } else {
                "fallback"
            },
            *attempts,
            failures.iter().map(|f| f.reason).collect(),
        ),
        Outcome::Returned {
            status,
            reason,
            attempts,
            ..
        } => Got::Returned(status.as_u16(), *reason, *attempts),
        Outcome::Exhausted { attempts, .. } => Got::Exhausted(*attempts),
    };
    (got, took, outcome)
}

use FailureReason::*;

#[tokio::test(start_paused = true)]
async fn a_rate_limit_with_a_short_retry_after_is_retried_after_exactly_that_wait() {
    let s = Script::default().on("primary", vec![with_retry_after(429, "1"), ok()]);
    let (got, took, _) = run(&gateway(&s, &[]), false).await;
    assert_eq!(got, Got::Served("primary", 2, vec![RateLimit]));
    assert_eq!(took, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_max_retry_after_fails_over_at_once() {
    let s = Script::default()
        .on("primary", vec![with_retry_after(429, "120")])
        .on("fallback", vec![ok()]);
    let (got, took, _) = run(&gateway(&s, &[]), false).await;
    assert_eq!(got, Got::Served("fallback", 2, vec![RateLimit]));
    assert_eq!(took, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_backoff_then_failed_over() {
    for (step, reason) in [
        (
            status(
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            ),
            Overloaded,
        ),
        (status(503, "{}"), Overloaded),
        (
            status(
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"boom"}}"#,
            ),
            ServerError,
        ),
        (status(200, "not json"), InvalidResponse),
        (
            status(200, r#"{"error":{"message":"upstream failed"}}"#),
            ServerError,
        ),
    ] {
        let s = Script::default()
            .on("primary", vec![step])
            .on("fallback", vec![ok()]);
        let (got, took, _) = run(&gateway(&s, &[]), false).await;
        assert_eq!(got, Got::Served("fallback", 4, vec![reason; 3]), "{reason}");
        // Full jitter: each wait is below its cap (100 ms, then 200 ms).
        assert!(took < Duration::from_millis(300), "{reason}: {took:?}");
        assert_eq!(s.calls(), ["primary", "primary", "primary", "fallback"]);
    }
}

#[tokio::test(start_paused = true)]
async fn what_waiting_cannot_fix_fails_over_at_once() {
    for (step, reason) in [
        (
            status(
                401,
                r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            ),
            Auth,
        ),
        (
            status(
                403,
                r#"{"type":"error","error":{"type":"permission_error","message":"no"}}"#,
            ),
            Auth,
        ),
        (
            status(
                402,
                r#"{"type":"error","error":{"type":"billing_error","message":"Payment required"}}"#,
            ),
            Quota,
        ),
        (
            status(
                404,
                r#"{"type":"error","error":{"type":"not_found_error","message":"model: m1"}}"#,
            ),
            ModelNotFound,
        ),
        (status(302, ""), Unknown),
        (Step::Refused, Connection),
    ] {
        let s = Script::default()
            .on("primary", vec![step])
            .on("fallback", vec![ok()]);
        let (got, took, _) = run(&gateway(&s, &[]), false).await;
        assert_eq!(got, Got::Served("fallback", 2, vec![reason]), "{reason}");
        assert_eq!(took, Duration::ZERO, "{reason}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_clients_own_errors_go_back_to_it_and_the_fallback_is_never_asked() {
    for (code, body, reason) in [
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#,
            ContextOverflow,
        ),
        (
            413,
            r#"{"type":"error","error":{"type":"request_too_large","message":"too big"}}"#,
            PayloadTooLarge,
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"Output blocked by content filtering policy (content_filter)"}}"#,
            ContentPolicy,
        ),
        (
            400,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}"#,
            InvalidRequest,
        ),
    ] {
        let s = Script::default().on("primary", vec![status(code, body)]);
        let (got, _, outcome) = run(&gateway(&s, &[]), false).await;
        assert_eq!(got, Got::Returned(code, reason, 1), "{reason}");
        assert_eq!(s.calls(), ["primary"]);
        let Outcome::Returned { body: returned, .. } = outcome else {
            unreachable!()
        };
        assert_eq!(
            &returned[..],
            body.as_bytes(),
            "{reason}: the upstream's answer, unchanged"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_stream_with_no_content_fails_over_after_exactly_the_ttft_timeout() {
    // Envelope and heartbeats only: they do not count as content.
    let silent = Step::Sse(
        vec![
            (
                Duration::ZERO,
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n",
            ),
            (Duration::from_millis(400), ": ping\n\n"),
            (
                Duration::from_millis(400),
                "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            ),
        ],
        End::Hang,
    );
    let s = Script::default().on("primary", vec![silent]).on(
        "fallback",
        vec![Step::Sse(
            vec![(Duration::ZERO, CONTENT), (Duration::ZERO, STOP)],
            End::Close,
        )],
    );
    let (got, took, _) = run(&gateway(&s, &[]), true).await;
    // Eager on timeout: no retry of the hung backend.
    assert_eq!(got, Got::Served("fallback", 2, vec![Timeout]));
    assert_eq!(took, Duration::from_secs(1));
}

/// `ttft_timeout: { base: 1s, per_100k_tokens: 2s, max: 4s }`: a small prompt fails over after
/// 1 s; a ~100k-token prompt (400 kB) is given 3 s; a ~1M-token one the max, 4 s.
#[tokio::test(start_paused = true)]
async fn the_first_token_timeout_scales_with_the_prompt() {
    let scaled = [("ttft_timeout", "{ base: 1s, per_100k_tokens: 2s, max: 4s }")];
    for (bytes, want) in [(10, 1000), (400_000, 3000), (4_000_000, 4000)] {
        let hang = Step::Sse(vec![], End::Hang);
        let streams = Step::Sse(
            vec![(Duration::ZERO, CONTENT), (Duration::ZERO, STOP)],
            End::Close,
        );
        let s = Script::default()
            .on("primary", vec![hang])
            .on("fallback", vec![streams]);
        let gw = gateway(&s, &scaled);
        let req = request_saying(&gw, true, &"x".repeat(bytes));
        let started = Instant::now();
        let outcome = gw.run(&req).await;
        let took = started.elapsed();
        assert!(matches!(outcome, Outcome::Served { .. }), "{bytes} bytes");
        // The body's JSON around the text adds a few bytes (a few tokens: microseconds).
        let want = Duration::from_millis(want);
        assert!(
            took >= want && took < want + Duration::from_millis(5),
            "{bytes} bytes: failed over after {took:?}, expected {want:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn without_eager_failover_a_timeout_is_retried() {
    let hang = Step::Sse(vec![], End::Hang);
    let s = Script::default()
        .on("primary", vec![hang])
        .on("fallback", vec![ok()]);
    let (got, took, _) = run(&gateway(&s, &[("eager_on", "[]")]), false).await;
    assert_eq!(got, Got::Served("fallback", 4, vec![Timeout; 3]));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_millis(3300),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_whose_wait_passes_the_deadline_becomes_a_failover() {
    let s = Script::default()
        .on("primary", vec![with_retry_after(429, "5")])
        .on("fallback", vec![ok()]);
    let (got, took, _) = run(&gateway(&s, &[("deadline", "3s")]), false).await;
    assert_eq!(got, Got::Served("fallback", 2, vec![RateLimit]));
    assert_eq!(took, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_ends_the_request_and_skips_the_rest_of_the_chain() {
    let hang = Step::Sse(vec![], End::Hang);
    let s = Script::default()
        .on("primary", vec![hang])
        .on("fallback", vec![ok()]);
    let (got, took, _) = run(&gateway(&s, &[("deadline", "500ms")]), false).await;
    assert_eq!(got, Got::Exhausted(1));
    assert_eq!(took, Duration::from_millis(500));
    assert_eq!(s.calls(), ["primary"]);
}

#[tokio::test(start_paused = true)]
async fn a_stall_after_content_ends_the_stream_after_exactly_the_stall_timeout() {
    let stalls = Step::Sse(
        vec![
            (Duration::ZERO, CONTENT),
            (Duration::from_millis(300), ": ping\n\n"),
        ],
        End::Hang,
    );
    let s = Script::default().on("primary", vec![stalls]);
    let gw = gateway(&s, &[]);
    let (got, _, outcome) = run(&gw, true).await;
    assert_eq!(got, Got::Served("primary", 1, vec![]));
    let Outcome::Served {
        served: Served::Stream(c),
        ..
    } = outcome
    else {
        unreachable!()
    };
    let committed_at = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let out: Vec<_> = crate::stream::relay(
        *c,
        move |end| {
            tx.send(end.clone()).unwrap();
            None
        },
        std::future::pending(),
    )
    .collect()
    .await;
    assert!(!out.is_empty());
    // A heartbeat is not content: the stall clock runs from the content event.
    assert_eq!(committed_at.elapsed(), Duration::from_secs(1));
    assert!(matches!(rx.recv().unwrap(), RelayEnd::Failed(f) if f.reason == Timeout));
}

#[tokio::test(start_paused = true)]
async fn a_spent_retry_budget_turns_retries_into_failovers() {
    // No floor and no ratio: not a single retry is affordable.
    let s = Script::default()
        .on("primary", vec![status(529, "{}")])
        .on("fallback", vec![ok()]);
    let (got, _, _) = run(
        &gateway(&s, &[("retry_budget", "{ ratio: 0.0, min_per_sec: 0 }")]),
        false,
    )
    .await;
    assert_eq!(got, Got::Served("fallback", 2, vec![Overloaded]));
}
