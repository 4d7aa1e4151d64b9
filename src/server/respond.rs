//! From an [`Outcome`] to what the client gets, in ONE place: [`conclude`] counts, logs, alerts
//! and records the status activity for every outcome; only the framing differs afterwards — an
//! HTTP response ([`into_response`]), or the tail of an SSE body whose 200 headers already went
//! out because the route sets `early_headers_after` ([`into_events`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;
use tracing::Instrument;

use super::error::{panic_message, GatewayError};
use super::headers::{
    json_response, set_attempts, set_header, H_BACKEND, H_DROPPED_TOOLS, H_REASON, H_REQUEST_ID,
};
use crate::alert::{Alert, SessionSeen, Target};
use crate::app::Gateway;
use crate::config::{AlertEvent, BackendId};
use crate::dialect::{self, Dialect, ErrorKind};
use crate::failover::outcome::{AttemptRecord, ClientRequest, Outcome, Served};
use crate::health::AttemptScopes;
use crate::metrics::InFlight;
use crate::report::{self, Report};
use crate::stream::{self, RelayEnd};

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Runs the failover engine for a prepared request and answers the client.
pub(super) async fn respond(
    gw: Arc<Gateway>,
    req: ClientRequest,
    started: Instant,
    in_flight: InFlight,
) -> Response {
    let early = req
        .route
        .failover
        .early_headers_after
        .filter(|_| req.scanned.stream);
    let Some(early_after) = early else {
        let outcome = tokio::select! {
            biased;
            outcome = gw.run(&req) => outcome,
            // The shutdown grace ran out while no backend had answered: say so, not a cut.
            () = gw.lifecycle.streams_must_end() => return shutting_down(&gw, &req),
        };
        let conclusion = conclude(&gw, &req, outcome, started, in_flight);
        return into_response(&req, conclusion);
    };
    // Slow starters: if no backend has committed by `early_after`, send the 200 headers and
    // heartbeats so the client's read timeout does not fire; failover continues behind them.
    let req = Arc::new(req);
    let mut run = Box::pin({
        let gw = gw.clone();
        let req = req.clone();
        let span = req.span.clone();
        async move { gw.run(&req).await }.instrument(span)
    });
    tokio::select! {
        outcome = &mut run => {
            let conclusion = conclude(&gw, &req, outcome, started, in_flight);
            return into_response(&req, conclusion);
        }
        _ = tokio::time::sleep(early_after) => {}
    }
    let request_id = req.request_id.clone();
    let dialect = req.dialect;
    let must_end = gw.lifecycle.streams_must_end();
    let body = async_stream::stream! {
        let mut beat = tokio::time::interval(Duration::from_secs(5));
        let mut must_end = std::pin::pin!(must_end);
        let outcome = loop {
            tokio::select! {
                o = &mut run => break o,
                () = &mut must_end => {
                    gw.metrics.request(&req.route.name, "-", "rejected");
                    yield Ok(GatewayError::ShuttingDown.stream_event(dialect));
                    return;
                }
                _ = beat.tick() => yield Ok::<Bytes, std::io::Error>(Bytes::from_static(b": switchyard waiting for the first token\n\n")),
            }
        };
        let conclusion = conclude(&gw, &req, outcome, started, in_flight);
        let mut events = into_events(&req, conclusion);
        while let Some(chunk) = events.next().await {
            yield chunk;
        }
    };
    let mut resp = Response::new(Body::from_stream(guard_stream(dialect, body)));
    sse_headers(resp.headers_mut());
    set_header(resp.headers_mut(), &H_REQUEST_ID, &request_id);
    resp
}

/// The answer to a request no backend answered before the shutdown grace ran out.
fn shutting_down(gw: &Gateway, req: &ClientRequest) -> Response {
    gw.metrics.request(&req.route.name, "-", "rejected");
    tracing::info!(request_id = %req.request_id, route = %req.route.name, "request ended: the gateway's shutdown grace ran out");
    GatewayError::ShuttingDown.response(req.dialect, Some(&req.request_id))
}

/// An outcome that has been counted, logged and alerted on: what is left is to frame it.
enum Conclusion {
    Served {
        /// The serving backend's `name_header`, when it has one.
        backend: Option<HeaderValue>,
        attempts: u32,
        body: ServedBody,
        /// Built-in tools dropped by translation, comma-separated.
        dropped_tools: Option<String>,
    },
    Returned {
        backend: Option<HeaderValue>,
        attempts: u32,
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
        reason: &'static str,
    },
    Exhausted {
        attempts: u32,
        report: Report,
        /// Seconds until some entry of the route stops cooling down.
        retry_after: Option<u64>,
    },
}

enum ServedBody {
    Full {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    Stream(ByteStream),
}

/// The one place an outcome is observed: the `requests` metric, the log line, the fallback
/// alerts and the status activity. Whatever framing follows, these are the same.
fn conclude(
    gw: &Arc<Gateway>,
    req: &ClientRequest,
    outcome: Outcome,
    started: Instant,
    in_flight: InFlight,
) -> Conclusion {
    let config = &gw.config;
    match outcome {
        Outcome::Served {
            backend,
            entry,
            attempts,
            served,
            failures,
            scopes,
            dropped_tools,
        } => {
            let alert = after_served(gw, req, backend, entry, &failures);
            let b = config.backend(backend);
            crate::telemetry::request_served(
                &req.span,
                &b.name,
                crate::telemetry::provider_name(b.provider, b.api),
                &req.route.chain[entry].model,
                attempts,
            );
            let served_line = ServedLine::new(
                req,
                &gw.config.backend(backend).name,
                attempts,
                &failures,
                started,
            );
            let body = match served {
                Served::Full {
                    status,
                    content_type,
                    body,
                } => {
                    let usage = crate::usage::from_body(req.dialect, &body);
                    count_tokens(gw, &req.route.name, backend, usage.as_ref());
                    served_line.log(usage.as_ref());
                    if let Some(mut a) = alert {
                        a.finish_reason = finish_reason_of(req.dialect, &body);
                        a.tokens = usage.map(alert_tokens);
                        gw.alerts.emit(a);
                    }
                    ServedBody::Full {
                        status,
                        content_type,
                        body,
                    }
                }
                Served::Stream(c) => {
                    // The fallback alert names the answer's finish reason: it goes out when the
                    // stream ends.
                    let at_end = AtStreamEnd {
                        alert,
                        line: served_line,
                    };
                    let finish =
                        relay_finisher(gw, req, entry, &failures, scopes, in_flight, at_end);
                    let relayed = stream::relay(*c, finish, gw.lifecycle.streams_must_end());
                    match req.dialect {
                        Dialect::Responses => {
                            let mut numbers = dialect::responses::ClosingNumbers::default();
                            ServedBody::Stream(Box::pin(
                                relayed.map(move |chunk| chunk.map(|c| numbers.pass(c))),
                            ))
                        }
                        _ => ServedBody::Stream(Box::pin(relayed)),
                    }
                }
            };
            Conclusion::Served {
                backend: config.backend(backend).name_header.clone(),
                attempts,
                body,
                dropped_tools: dropped_tools_header(&dropped_tools),
            }
        }
        Outcome::Returned {
            backend,
            attempts,
            status,
            content_type,
            body,
            reason,
            ..
        } => {
            let name = &config.backend(backend).name;
            gw.metrics.request(&req.route.name, name, "returned");
            crate::telemetry::request_returned(&req.span, name, attempts, reason.as_str());
            tracing::info!(
                request_id = %req.request_id,
                route = %req.route.name,
                backend = %name,
                attempts,
                status = status.as_u16(),
                reason = reason.as_str(),
                duration_ms = started.elapsed().as_millis() as u64,
                "returned the upstream's error to the client: the request must change"
            );
            Conclusion::Returned {
                backend: config.backend(backend).name_header.clone(),
                attempts,
                status,
                content_type,
                body,
                reason: reason.as_str(),
            }
        }
        Outcome::Exhausted {
            attempts,
            failures,
            skipped,
        } => {
            let report = report::build(config, &req.route, &failures, &skipped);
            gw.metrics.request(&req.route.name, "-", "exhausted");
            crate::telemetry::request_exhausted(&req.span, attempts, &report.summary);
            alert_exhausted(gw, req, &report);
            tracing::warn!(
                request_id = %req.request_id,
                route = %req.route.name,
                attempts,
                duration_ms = started.elapsed().as_millis() as u64,
                "{}",
                report.summary
            );
            // Every entry is cooling down: tell well-behaved clients when to come back.
            let retry_after = gw.soonest_usable(&req.route).map(|wait| {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                secs.max(1)
            });
            Conclusion::Exhausted {
                attempts,
                report,
                retry_after,
            }
        }
    }
}

/// The `x-switchyard-dropped-tools` value: the labels comma-separated, capped (the names come
/// from the client's request).
fn dropped_tools_header(tools: &[String]) -> Option<String> {
    const MAX: usize = 1024;
    let mut out = String::new();
    for t in tools {
        if out.len() + t.len() + 1 > MAX {
            out.push_str(",...");
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(t);
    }
    (!out.is_empty()).then_some(out)
}

/// Frames a conclusion as an HTTP response, headers included.
fn into_response(req: &ClientRequest, conclusion: Conclusion) -> Response {
    let mut resp = match conclusion {
        Conclusion::Served {
            backend,
            attempts,
            body,
            dropped_tools,
        } => {
            let mut r = match body {
                ServedBody::Full {
                    status,
                    content_type,
                    body,
                } => full_response(status, content_type, body),
                ServedBody::Stream(s) => {
                    let mut r = Response::new(Body::from_stream(guard_stream(req.dialect, s)));
                    sse_headers(r.headers_mut());
                    r
                }
            };
            if let Some(v) = backend {
                r.headers_mut().insert(H_BACKEND.clone(), v);
            }
            set_attempts(r.headers_mut(), attempts);
            if let Some(tools) = dropped_tools {
                set_header(r.headers_mut(), &H_DROPPED_TOOLS, &tools);
            }
            r
        }
        Conclusion::Returned {
            backend,
            attempts,
            status,
            content_type,
            body,
            reason,
        } => {
            let mut r = full_response(status, content_type, body);
            if let Some(v) = backend {
                r.headers_mut().insert(H_BACKEND.clone(), v);
            }
            set_attempts(r.headers_mut(), attempts);
            set_header(r.headers_mut(), &H_REASON, reason);
            r
        }
        Conclusion::Exhausted {
            attempts,
            report,
            retry_after,
        } => {
            let status = if report.all_timeouts {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            let mut r = if req.accept_problem {
                let mut r = json_response(
                    status,
                    report::problem_body(&report, status, &req.request_id),
                );
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static(dialect::PROBLEM_JSON),
                );
                r
            } else {
                json_response(status, report::error_body(req.dialect, &report))
            };
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
            }
            set_attempts(r.headers_mut(), attempts);
            r
        }
    };
    set_header(resp.headers_mut(), &H_REQUEST_ID, &req.request_id);
    resp
}

/// Frames a conclusion as the rest of an SSE body whose 200 headers are already out: the relay
/// of a served stream, or one error event in the client's dialect.
fn into_events(req: &ClientRequest, conclusion: Conclusion) -> ByteStream {
    let dialect = req.dialect;
    let last = match conclusion {
        Conclusion::Served {
            body: ServedBody::Stream(s),
            ..
        } => return s,
        Conclusion::Served {
            body: ServedBody::Full { body, .. },
            ..
        } => body,
        Conclusion::Returned { body, reason, .. } => {
            // The upstream's own message, re-framed: the status line is gone.
            let detail = crate::classify::classify_stream_error(&body).detail;
            dialect::stream_error_event(dialect, ErrorKind::InvalidRequest, reason, &detail)
        }
        Conclusion::Exhausted { report, .. } => report::stream_error_event(dialect, &report),
    };
    Box::pin(futures_util::stream::once(async move { Ok(last) }))
}

fn full_response(status: StatusCode, content_type: Option<HeaderValue>, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/json")),
    );
    r
}

/// The model's finish reason in a full answer in `dialect`, for the fallback alert.
fn finish_reason_of(dialect: Dialect, body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let reason = match dialect {
        Dialect::OpenAi => v.pointer("/choices/0/finish_reason"),
        Dialect::Anthropic => v.get("stop_reason"),
        // `completed`, or why it is incomplete (`max_output_tokens`, `content_filter`).
        Dialect::Responses => v
            .pointer("/incomplete_details/reason")
            .filter(|r| r.is_string())
            .or_else(|| v.get("status")),
    }?;
    reason
        .as_str()
        .filter(|r| r.len() <= 64)
        .map(str::to_string)
}

/// Log line, metrics and activity for a served request; the fallback alert, when the request
/// was served by a fallback (or by another backend than its session's first), is returned to be
/// sent once the answer's finish reason is known.
/// The per-request log line of a served request: at once for an answer, when the stream
/// ends for a stream (then with the stream's whole duration and its tokens).
struct ServedLine {
    request_id: Arc<str>,
    route: Arc<str>,
    backend: Arc<str>,
    attempts: u32,
    reasons: Vec<&'static str>,
    stream: bool,
    started: Instant,
    /// The request's trace span (usage is recorded on it too).
    span: tracing::Span,
}

impl ServedLine {
    fn new(
        req: &ClientRequest,
        backend: &Arc<str>,
        attempts: u32,
        failures: &[AttemptRecord],
        started: Instant,
    ) -> ServedLine {
        ServedLine {
            request_id: req.request_id.clone(),
            route: req.route.name.clone(),
            backend: backend.clone(),
            attempts,
            reasons: failures.iter().map(|f| f.reason.as_str()).collect(),
            stream: req.scanned.stream,
            started,
            span: req.span.clone(),
        }
    }

    fn log(&self, usage: Option<&crate::usage::Usage>) {
        crate::telemetry::record_usage(&self.span, usage.map(|u| u.input), usage.map(|u| u.output));
        tracing::info!(
            request_id = %self.request_id,
            route = %self.route,
            backend = %self.backend,
            attempts = self.attempts,
            reasons = ?self.reasons,
            status = 200,
            stream = self.stream,
            duration_ms = self.started.elapsed().as_millis() as u64,
            input_tokens = usage.map(|u| u.input),
            cached_input_tokens = usage.map(|u| u.cached_input),
            output_tokens = usage.map(|u| u.output),
            reasoning_tokens = usage.map(|u| u.reasoning),
            "served"
        );
    }
}

fn alert_tokens(u: crate::usage::Usage) -> crate::alert::Tokens {
    crate::alert::Tokens {
        input: u.input,
        output: u.output,
    }
}

/// What a stream reports when it ends (its finish reason and tokens known only then).
struct AtStreamEnd {
    alert: Option<Alert>,
    line: ServedLine,
}

/// The tokens a served request cost, into the metrics and the status page.
fn count_tokens(
    gw: &Gateway,
    route: &str,
    backend: BackendId,
    usage: Option<&crate::usage::Usage>,
) {
    if let Some(u) = usage {
        gw.metrics
            .tokens(route, &gw.config.backend(backend).name, u);
        gw.activity.tokens(backend, u);
    }
}

fn after_served(
    gw: &Gateway,
    req: &ClientRequest,
    backend: BackendId,
    entry: usize,
    failures: &[AttemptRecord],
) -> Option<Alert> {
    let name = &gw.config.backend(backend).name;
    gw.activity.served(&req.route.name, backend);
    let mut to_send = None;
    let seen = req
        .session
        .as_ref()
        .map(|s| gw.alerts.session_seen(&s.session, name));
    let fallback_alert = || {
        let primary = &req.route.chain[0];
        let mut a = Alert::new(AlertEvent::FallbackActivated);
        a.route = Some(req.route.name.to_string());
        a.session = req.session.as_ref().map(|s| s.session.to_string());
        a.primary = Some(Target {
            backend: gw.config.backend(primary.backend).name.to_string(),
            model: primary.model.to_string(),
        });
        a.serving = Some(Target {
            backend: name.to_string(),
            model: req.route.chain[entry].model.to_string(),
        });
        match failures.first() {
            Some(f) => {
                a.reason = Some(match f.status {
                    Some(st) => format!("{} {st}", f.reason),
                    None => f.reason.to_string(),
                });
                a.detail = f.detail.clone();
            }
            None if entry != 0 => {
                a.reason = Some("primary skipped: cooling down or failed earlier this turn".into())
            }
            None => {
                a.reason = Some("the session's first backend is not the one serving now".into())
            }
        }
        a.request_id = Some(req.request_id.to_string());
        a.platform = req.platform.as_deref().map(str::to_string);
        a
    };
    if entry != 0 || seen == Some(SessionSeen::Switched) {
        let a = fallback_alert();
        if entry != 0 {
            let from = &gw.config.backend(req.route.chain[0].backend).name;
            gw.activity.failover(
                &req.route.name,
                from,
                Some(name),
                a.reason.as_deref().unwrap_or(""),
            );
        }
        to_send = Some(a);
    }
    if let (Some(SessionSeen::New), Some(s)) = (seen, &req.session) {
        // New here: another replica may have seen the session start elsewhere. Checked by the
        // alert task (queued, never awaited); the alert goes out only if the first differs.
        if gw.alerts.shares_sessions() {
            let alert = (entry == 0).then(fallback_alert);
            gw.alerts.check_first_backend(&s.session, name, alert);
        }
    }
    gw.metrics.request(&req.route.name, name, "served");
    to_send
}

/// Logs how a committed stream ended and, when its backend failed mid-way, builds the error
/// event that closes it (reason, scrubbed detail, and that backend's failure entry).
fn relay_finisher(
    gw: &Arc<Gateway>,
    req: &ClientRequest,
    entry: usize,
    failures: &[AttemptRecord],
    scopes: AttemptScopes,
    in_flight: InFlight,
    at_end: AtStreamEnd,
) -> impl FnOnce(&RelayEnd) -> Option<Bytes> + Send + 'static {
    let AtStreamEnd {
        alert: fallback_alert,
        line: served_line,
    } = at_end;
    let gw = gw.clone();
    let session = req.session.clone();
    let metrics = gw.metrics.clone();
    let stream_started = Instant::now();
    let request_id = req.request_id.clone();
    let route = req.route.name.clone();
    let dialect = req.dialect;
    let chain_entry = &req.route.chain[entry];
    let chain_entry_backend = chain_entry.backend;
    let attempts = 1 + failures.iter().filter(|f| f.entry == entry).count() as u32;
    let scrubber = gw.scrubber.clone();
    let mut template = report::cut_stream_failure(
        &gw.config,
        chain_entry.backend,
        &chain_entry.model,
        attempts,
        &crate::classify::invalid_response(""),
    );
    move |end| {
        let _in_flight = in_flight;
        metrics.upstream_duration(&template.backend, stream_started.elapsed());
        if let Some(mut a) = fallback_alert {
            if let RelayEnd::Complete {
                finish_reason,
                usage,
            } = end
            {
                a.finish_reason = finish_reason.as_deref().map(str::to_string);
                a.tokens = usage.map(alert_tokens);
            }
            gw.alerts.emit(a);
        }
        match end {
            RelayEnd::Complete { usage, .. } => {
                count_tokens(&gw, &route, chain_entry_backend, usage.as_ref());
                served_line.log(usage.as_ref());
                None
            }
            RelayEnd::ShuttingDown => {
                tracing::info!(request_id = %request_id, route = %route, "stream ended: the gateway's shutdown grace ran out");
                let summary = format!(
                    "The gateway is shutting down; the stream from {} ({}) was ended before it finished. Retry the request.",
                    template.backend, template.model
                );
                Some(crate::dialect::cut_stream_event(
                    dialect,
                    crate::dialect::ErrorKind::Overloaded,
                    "shutting_down",
                    &summary,
                    &Vec::<report::BackendFailure>::new(),
                ))
            }
            RelayEnd::Failed(failure) => {
                let detail = scrubber.detail(&failure.detail, 300);
                tracing::warn!(
                    request_id = %request_id,
                    route = %route,
                    backend = %template.backend,
                    reason = failure.reason.as_str(),
                    detail = %detail,
                    "stream failed after content was sent; ended it with an error event"
                );
                let mut counted = failure.clone();
                counted.detail.clone_from(&detail);
                gw.record_stream_failure(session.as_ref(), chain_entry_backend, scopes, &counted);
                template.reason = Some(failure.reason.as_str());
                template.retryable = report::retryable(failure.reason);
                template.detail = detail;
                Some(report::cut_stream_event(dialect, template))
            }
        }
    }
}

fn alert_exhausted(gw: &Gateway, req: &ClientRequest, rep: &Report) {
    let primary = &req.route.chain[0];
    let mut a = Alert::new(AlertEvent::FallbackExhausted);
    a.route = Some(req.route.name.to_string());
    a.session = req.session.as_ref().map(|s| s.session.to_string());
    a.primary = Some(Target {
        backend: gw.config.backend(primary.backend).name.to_string(),
        model: primary.model.to_string(),
    });
    a.reason = Some("every backend of the route failed".into());
    a.detail = rep.summary.clone();
    gw.activity.failover(
        &req.route.name,
        &gw.config.backend(primary.backend).name,
        None,
        &rep.summary,
    );
    a.request_id = Some(req.request_id.to_string());
    gw.alerts.emit(a);
}

/// A relayed stream that ends with an error event, not a cut, if relaying panics.
fn guard_stream(
    dialect: Dialect,
    s: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    std::panic::AssertUnwindSafe(s)
        .catch_unwind()
        .map(move |item| match item {
            Ok(chunk) => chunk,
            Err(panic) => {
                tracing::error!(panic = panic_message(&panic), "stream relay panicked");
                Ok(GatewayError::RelayInternal.stream_event(dialect))
            }
        })
}

fn sse_headers(h: &mut HeaderMap) {
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
}
