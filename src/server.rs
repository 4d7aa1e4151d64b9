//! The listener and the per-dialect handlers: request in, response out.
//!
//! A request's life here: request id → gateway key → content type → body (capped, under a read
//! deadline) → [`body::scan`] → route → the failover engine → a response in the client's
//! dialect, with `x-switchyard-backend`, `x-switchyard-attempts` and `x-request-id`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::alert::{Alert, Target};
use crate::app::Gateway;
use crate::auth::GatewayKey;
use crate::body;
use crate::config::{AlertEvent, Config, MetricsAccess};
use crate::dialect::{self, Dialect, ErrorKind};
use crate::failover::outcome::{ClientRequest, Outcome, Served};
use crate::health::sessions::SessionKey;
use crate::report;
use crate::stream::{self, RelayEnd};
use crate::upstream::ForwardHeaders;

pub const HDR_BACKEND: &str = "x-switchyard-backend";
pub const HDR_ATTEMPTS: &str = "x-switchyard-attempts";
pub const HDR_REASON: &str = "x-switchyard-reason";
pub const HDR_REQUEST_ID: &str = "x-request-id";

// Built once: inserting by `&'static str` would validate the name on every response.
static H_BACKEND: HeaderName = HeaderName::from_static(HDR_BACKEND);
static H_ATTEMPTS: HeaderName = HeaderName::from_static(HDR_ATTEMPTS);
static H_REQUEST_ID: HeaderName = HeaderName::from_static(HDR_REQUEST_ID);
static H_REASON: HeaderName = HeaderName::from_static(HDR_REASON);

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/chat/completions/", post(openai_chat))
        .route("/chat/completions", post(openai_chat))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/messages/", post(anthropic_messages))
        .route("/v1/models", get(models))
        .route("/v1/models/", get(models))
        .route("/models", get(models))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(crate::admin::router())
        .merge(crate::status::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gw)
}

/// Accepts connections until the listener fails. Sets TCP_NODELAY on every accepted socket and
/// bounds how long a client may take to send its headers (slowloris).
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>) -> std::io::Result<()> {
    let header_timeout = gw.config.limits.header_read_timeout;
    start_background(&gw);
    let app = router(gw);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The peer address goes into each request's extensions (admin endpoints check it).
        // Not `app.layer(Extension(..))` per connection: that rebuilds the router's route
        // table, ~10 KB and a few µs for every connection.
        let app = app.clone();
        let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(crate::admin::Peer(peer));
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// `GET /metrics`, guarded as `auth.metrics` says (public by default).
/// Starts the gateway's background work: freed-memory release, alert delivery, active
/// health probes.
fn start_background(gw: &Arc<Gateway>) {
    let h = &gw.config.health;
    tokio::spawn(crate::memory::release_freed_memory());
    if gw.alerts.enabled() {
        tokio::spawn(gw.alerts.clone().run(gw.health.clone()));
    }
    if let Some(interval) = h.probe_interval {
        tokio::spawn(crate::failover::probe::run(
            gw.clone(),
            interval,
            h.probe_request.clone(),
        ));
    }
}

async fn metrics(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<axum::Extension<crate::admin::Peer>>,
) -> Response {
    match gw.config.metrics_access {
        MetricsAccess::Public => {}
        MetricsAccess::GatewayKey => {
            if let Some(r) = gateway_key_refusal(&gw.config, &headers) {
                return error_response(
                    guess_dialect(&uri, &headers),
                    r.kind,
                    r.code,
                    &r.message,
                    None,
                );
            }
        }
        MetricsAccess::Admin => {
            if let Some(r) = crate::admin::refusal(&gw, &method, &uri, &headers, peer.map(|p| p.0))
            {
                return r;
            }
        }
    }
    let mut r = Response::new(Body::from(gw.metrics.render(&gw.health)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn guess_dialect(uri: &Uri, headers: &HeaderMap) -> Dialect {
    if uri.path().contains("messages") || headers.contains_key("anthropic-version") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    }
}

async fn not_found(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let msg = format!(
        "no such endpoint: {method} {}; Switchyard serves POST /v1/chat/completions and POST /v1/messages",
        uri.path()
    );
    error_response(
        guess_dialect(&uri, &headers),
        ErrorKind::NotFound,
        "unknown_endpoint",
        &msg,
        None,
    )
}

async fn method_not_allowed(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let msg = format!("{method} is not allowed on {}; use POST", uri.path());
    let mut r = error_response(
        guess_dialect(&uri, &headers),
        ErrorKind::InvalidRequest,
        "method_not_allowed",
        &msg,
        None,
    );
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// `GET /v1/models`: the route names, in OpenAI's list format, or Anthropic's when the client
/// identifies as an Anthropic SDK (`anthropic-version`).
async fn models(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(r) = gateway_key_refusal(&gw.config, &headers) {
        let dialect = guess_dialect(&uri, &headers);
        return error_response(dialect, r.kind, r.code, &r.message, None);
    }
    let names = &gw.config.route_names;
    let body = if headers.contains_key("anthropic-version") {
        serde_json::json!({
            "data": names.iter().map(|n| serde_json::json!({
                "type": "model", "id": &**n, "display_name": &**n, "created_at": "1970-01-01T00:00:00Z"
            })).collect::<Vec<_>>(),
            "has_more": false,
            "first_id": names.first().map(|n| &**n),
            "last_id": names.last().map(|n| &**n),
        })
    } else {
        serde_json::json!({
            "object": "list",
            "data": names.iter().map(|n| serde_json::json!({
                "id": &**n, "object": "model", "created": 0, "owned_by": "switchyard"
            })).collect::<Vec<_>>(),
        })
    };
    json_response(StatusCode::OK, Bytes::from(body.to_string()))
}

async fn openai_chat(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    guarded(gw, Dialect::OpenAi, headers, body).await
}

async fn anthropic_messages(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    guarded(gw, Dialect::Anthropic, headers, body).await
}

/// [`handle`], with a panic turned into a 500 in the client's dialect instead of a dropped
/// connection. A panic is a bug of ours: it is logged loudly, and the tests abort on one.
async fn guarded(gw: Arc<Gateway>, dialect: Dialect, headers: HeaderMap, body: Body) -> Response {
    use futures_util::FutureExt;
    let request_id = request_id(&headers);
    match std::panic::AssertUnwindSafe(handle(gw, dialect, headers, body))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(panic) => {
            tracing::error!(request_id = %request_id, panic = panic_message(&panic), "request handler panicked");
            error_response(
                dialect,
                ErrorKind::Internal,
                "internal_error",
                "the gateway failed while handling this request (a bug; it has been logged)",
                Some(&request_id),
            )
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A relayed stream that ends with an error event, not a cut, if relaying panics.
fn guard_stream(
    dialect: Dialect,
    s: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    use futures_util::StreamExt;
    std::panic::AssertUnwindSafe(s)
        .catch_unwind()
        .map(move |item| match item {
            Ok(chunk) => chunk,
            Err(panic) => {
                tracing::error!(panic = panic_message(&panic), "stream relay panicked");
                Ok(dialect::stream_error_event(
                    dialect,
                    ErrorKind::Internal,
                    "internal_error",
                    "the gateway failed while relaying this stream (a bug; it has been logged)",
                ))
            }
        })
}

/// A gateway-side rejection: status, machine code and a message a person can act on.
struct Reject {
    kind: ErrorKind,
    code: &'static str,
    message: String,
}

impl Reject {
    fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Reject {
        Reject {
            kind,
            code,
            message: message.into(),
        }
    }
}

/// `Some(rejection)` unless the request carries one of the `auth.keys_env` keys (or none are
/// configured): the check of the proxy endpoints, `/v1/models` and a protected `/metrics`.
fn gateway_key_refusal(config: &Config, headers: &HeaderMap) -> Option<Reject> {
    let message = match crate::auth::check_gateway_key(config, headers) {
        GatewayKey::NotRequired | GatewayKey::Valid => return None,
        GatewayKey::Invalid => {
            "the gateway key is not valid; send one of the keys configured in auth.keys_env"
        }
        GatewayKey::Missing => {
            "missing gateway key; send it as `Authorization: Bearer KEY` or `x-api-key: KEY`"
        }
    };
    Some(Reject::new(
        ErrorKind::Authentication,
        "invalid_gateway_key",
        message,
    ))
}

async fn handle(gw: Arc<Gateway>, dialect: Dialect, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let request_id = request_id(&headers);
    let in_flight = gw.metrics.in_flight();
    match prepare(&gw, dialect, &headers, body, &request_id).await {
        Err(r) => {
            gw.metrics.request("-", "-", "rejected");
            tracing::info!(request_id = %request_id, code = r.code, "request rejected: {}", r.message);
            error_response(dialect, r.kind, r.code, &r.message, Some(&request_id))
        }
        Ok(req) => respond(gw, req, started, in_flight).await,
    }
}

async fn prepare(
    gw: &Gateway,
    dialect: Dialect,
    headers: &HeaderMap,
    body: Body,
    request_id: &Arc<str>,
) -> Result<ClientRequest, Reject> {
    let config = &gw.config;
    if let Some(r) = gateway_key_refusal(config, headers) {
        return Err(r);
    }
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if !is_json_media_type(ct) {
            return Err(Reject::new(
                ErrorKind::UnsupportedMediaType,
                "unsupported_content_type",
                format!("content type {ct:?} is not supported; send a JSON body with `Content-Type: application/json`"),
            ));
        }
    }
    let limits = &config.limits;
    let too_large = || {
        Reject::new(
            ErrorKind::PayloadTooLarge,
            "request_too_large",
            format!(
                "request body is larger than the gateway's limit of {} bytes (limits.max_body_bytes)",
                limits.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(
        limits.body_read_timeout,
        Limited::new(body, limits.max_body_bytes).collect(),
    )
    .await;
    let bytes = match collected {
        Err(_) => {
            return Err(Reject::new(
                ErrorKind::InvalidRequest,
                "body_read_timeout",
                format!(
                    "the request body did not arrive within {:?} (limits.body_read_timeout)",
                    limits.body_read_timeout
                ),
            ))
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(too_large())
        }
        Ok(Err(e)) => {
            return Err(Reject::new(
                ErrorKind::InvalidRequest,
                "body_read_error",
                format!("could not read the request body: {e}"),
            ))
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let scanned = body::scan(&bytes)
        .map_err(|e| Reject::new(ErrorKind::InvalidRequest, e.code(), e.to_string()))?;
    let route = match config.routes.get(scanned.model.as_str()) {
        Some(r) => r.clone(),
        None => match &config.default_route {
            Some(r) => r.clone(),
            None => {
                let names: Vec<&str> = config.route_names.iter().map(|n| &**n).collect();
                return Err(Reject::new(
                    ErrorKind::NotFound,
                    "model_not_found",
                    format!(
                        "model {:?} is not a route of this gateway; available: {}",
                        crate::scrub::truncate_chars(&scanned.model, 100),
                        names.join(", ")
                    ),
                ));
            }
        },
    };
    let session = session_key(config, headers, &bytes, &scanned);
    let accept_problem = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/problem+json"));
    Ok(ClientRequest {
        accept_problem,
        session,
        dialect,
        request_id: request_id.clone(),
        body: bytes,
        scanned,
        route,
        fwd: ForwardHeaders::from_client(headers),
    })
}

/// The client's session: `x-switchyard-session` (+ `x-switchyard-turn`), or with
/// `health.session_from_body`, OpenAI's `user` / Anthropic's `metadata.user_id`.
fn session_key(
    config: &crate::config::Config,
    headers: &HeaderMap,
    body: &[u8],
    scanned: &body::Scanned,
) -> Option<SessionKey> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 256)
    };
    let turn = header("x-switchyard-turn").map(Box::from);
    if let Some(session) = header("x-switchyard-session") {
        return Some(SessionKey {
            session: session.into(),
            turn,
        });
    }
    if !config.health.session_from_body {
        return None;
    }
    let from_user = scanned
        .user_span
        .as_ref()
        .and_then(|r| serde_json::from_slice::<String>(&body[r.clone()]).ok());
    let from_metadata = || {
        let r = scanned.metadata_span.as_ref()?;
        let v: serde_json::Value = serde_json::from_slice(&body[r.clone()]).ok()?;
        v.get("user_id")?.as_str().map(str::to_string)
    };
    let session = from_user.or_else(from_metadata)?;
    (!session.is_empty() && session.len() <= 256).then(|| SessionKey {
        session: session.into(),
        turn,
    })
}

async fn respond(
    gw: Arc<Gateway>,
    req: ClientRequest,
    started: Instant,
    in_flight: crate::metrics::InFlight,
) -> Response {
    let early = req
        .route
        .failover
        .early_headers_after
        .filter(|_| req.scanned.stream);
    let Some(early_after) = early else {
        let outcome = gw.run(&req).await;
        return outcome_response(&gw, &req, outcome, started, in_flight);
    };
    // Slow starters: if no backend has committed by `early_after`, send the 200 headers and
    // heartbeats so the client's read timeout does not fire; failover continues behind them.
    let req = Arc::new(req);
    let mut run = Box::pin({
        let gw = gw.clone();
        let req = req.clone();
        async move { gw.run(&req).await }
    });
    tokio::select! {
        outcome = &mut run => return outcome_response(&gw, &req, outcome, started, in_flight),
        _ = tokio::time::sleep(early_after) => {}
    }
    let dialect = req.dialect;
    let request_id = req.request_id.clone();
    let body = async_stream::stream! {
        let mut beat = tokio::time::interval(Duration::from_secs(5));
        let outcome = loop {
            tokio::select! {
                o = &mut run => break o,
                _ = beat.tick() => yield Ok::<Bytes, std::io::Error>(Bytes::from_static(b": switchyard waiting for the first token\n\n")),
            }
        };
        match outcome {
            Outcome::Served { served: Served::Stream(c), backend, entry, attempts, failures, scopes } => {
                after_served(&gw, &req, backend, entry, attempts, &failures, started);
                let finish = relay_finisher(&gw, &req, entry, &failures, scopes, in_flight);
                let mut relayed = std::pin::pin!(stream::relay(*c, finish));
                while let Some(chunk) = futures_util::StreamExt::next(&mut relayed).await {
                    yield chunk;
                }
            }
            Outcome::Served { served: Served::Full { body, .. }, .. } => yield Ok(body),
            Outcome::Returned { body, reason, .. } => {
                let detail = crate::classify::classify_stream_error(&body).detail;
                yield Ok(dialect::stream_error_event(dialect, ErrorKind::InvalidRequest, reason.as_str(), &detail));
            }
            Outcome::Exhausted { failures, skipped, .. } => {
                let rep = report::build(&gw.config, &req.route, &failures, &skipped);
                gw.metrics.request(&req.route.name, "-", "exhausted");
                alert_exhausted(&gw, &req, &rep);
                tracing::warn!(request_id = %req.request_id, route = %req.route.name, "{}", rep.summary);
                yield Ok(report::stream_error_event(dialect, &rep));
            }
        }
    };
    let mut resp = Response::new(Body::from_stream(guard_stream(dialect, body)));
    sse_headers(resp.headers_mut());
    set_header(resp.headers_mut(), &H_REQUEST_ID, &request_id);
    resp
}

fn outcome_response(
    gw: &Arc<Gateway>,
    req: &ClientRequest,
    outcome: Outcome,
    started: Instant,
    in_flight: crate::metrics::InFlight,
) -> Response {
    let config = &gw.config;
    let mut resp = match outcome {
        Outcome::Served {
            backend,
            entry,
            attempts,
            served,
            failures,
            scopes,
        } => {
            after_served(gw, req, backend, entry, attempts, &failures, started);
            let mut resp = match served {
                Served::Full {
                    status,
                    content_type,
                    body,
                } => {
                    let mut r = Response::new(Body::from(body));
                    *r.status_mut() = status;
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        content_type.unwrap_or(HeaderValue::from_static("application/json")),
                    );
                    r
                }
                Served::Stream(c) => {
                    let finish = relay_finisher(gw, req, entry, &failures, scopes, in_flight);
                    let mut r = Response::new(Body::from_stream(guard_stream(
                        req.dialect,
                        stream::relay(*c, finish),
                    )));
                    sse_headers(r.headers_mut());
                    r
                }
            };
            if let Some(v) = &config.backend(backend).name_header {
                resp.headers_mut().insert(H_BACKEND.clone(), v.clone());
            }
            set_attempts(resp.headers_mut(), attempts);
            resp
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
            gw.metrics
                .request(&req.route.name, &config.backend(backend).name, "returned");
            tracing::info!(
                request_id = %req.request_id,
                route = %req.route.name,
                backend = %config.backend(backend).name,
                attempts,
                status = status.as_u16(),
                reason = reason.as_str(),
                duration_ms = started.elapsed().as_millis() as u64,
                "returned the upstream's error to the client: the request must change"
            );
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = status;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                content_type.unwrap_or(HeaderValue::from_static("application/json")),
            );
            if let Some(v) = &config.backend(backend).name_header {
                r.headers_mut().insert(H_BACKEND.clone(), v.clone());
            }
            set_attempts(r.headers_mut(), attempts);
            set_header(r.headers_mut(), &H_REASON, reason.as_str());
            r
        }
        Outcome::Exhausted {
            attempts,
            failures,
            skipped,
        } => {
            let rep = report::build(config, &req.route, &failures, &skipped);
            gw.metrics.request(&req.route.name, "-", "exhausted");
            alert_exhausted(gw, req, &rep);
            tracing::warn!(
                request_id = %req.request_id,
                route = %req.route.name,
                attempts,
                duration_ms = started.elapsed().as_millis() as u64,
                "{}",
                rep.summary
            );
            let status = if rep.all_timeouts {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            let mut r = if req.accept_problem {
                let mut r = json_response(
                    status,
                    report::problem_body(&rep, status.as_u16(), &req.request_id),
                );
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                r
            } else {
                json_response(status, report::error_body(req.dialect, &rep))
            };
            // Every entry is cooling down: tell well-behaved clients when to come back.
            if let Some(wait) = gw.soonest_usable(&req.route) {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                r.headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            }
            set_attempts(r.headers_mut(), attempts);
            r
        }
    };
    set_header(resp.headers_mut(), &H_REQUEST_ID, &req.request_id);
    resp
}

/// Log line, metrics and the fallback alert for a served request.
fn after_served(
    gw: &Gateway,
    req: &ClientRequest,
    backend: crate::config::BackendId,
    entry: usize,
    attempts: u32,
    failures: &[crate::failover::outcome::AttemptRecord],
    started: Instant,
) {
    let name = &gw.config.backend(backend).name;
    gw.activity.served(&req.route.name, backend);
    let session_switched = req
        .session
        .as_ref()
        .is_some_and(|s| gw.alerts.session_switched(&s.session, name));
    if entry != 0 || session_switched {
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
        if entry != 0 {
            let (from, _) = a
                .primary
                .as_ref()
                .map(|p| (p.backend.clone(), ()))
                .unwrap_or_default();
            gw.activity.failover(
                &req.route.name,
                &from,
                Some(name),
                a.reason.as_deref().unwrap_or(""),
            );
        }
        gw.alerts.emit(a);
    }
    gw.metrics
        .request(&req.route.name, &gw.config.backend(backend).name, "served");
    let reasons: Vec<&str> = failures.iter().map(|f| f.reason.as_str()).collect();
    tracing::info!(
        request_id = %req.request_id,
        route = %req.route.name,
        backend = %gw.config.backend(backend).name,
        attempts,
        reasons = ?reasons,
        status = 200,
        stream = req.scanned.stream,
        duration_ms = started.elapsed().as_millis() as u64,
        "served"
    );
}

/// Logs how a committed stream ended and, when its backend failed mid-way, builds the error
/// event that closes it (reason, scrubbed detail, and that backend's failure entry).
fn relay_finisher(
    gw: &Arc<Gateway>,
    req: &ClientRequest,
    entry: usize,
    failures: &[crate::failover::outcome::AttemptRecord],
    scopes: crate::health::AttemptScopes,
    in_flight: crate::metrics::InFlight,
) -> impl FnOnce(&RelayEnd) -> Option<Bytes> + Send + 'static {
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
        match end {
            RelayEnd::Complete => {
                tracing::debug!(request_id = %request_id, "stream complete");
                None
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

fn alert_exhausted(gw: &Gateway, req: &ClientRequest, rep: &report::Report) {
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

fn set_header(h: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name.clone(), v);
    }
}

fn set_attempts(h: &mut HeaderMap, attempts: u32) {
    h.insert(H_ATTEMPTS.clone(), HeaderValue::from(attempts));
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(
    dialect: Dialect,
    kind: ErrorKind,
    code: &str,
    message: &str,
    request_id: Option<&str>,
) -> Response {
    let mut r = json_response(
        dialect::status_of(kind),
        dialect::error_body(dialect, kind, code, message),
    );
    set_attempts(r.headers_mut(), 0);
    if let Some(id) = request_id {
        set_header(r.headers_mut(), &H_REQUEST_ID, id);
    }
    r
}

/// The client's `x-request-id` when it is a sane token, or a new random one.
fn request_id(headers: &HeaderMap) -> Arc<str> {
    if let Some(v) = headers.get(HDR_REQUEST_ID).and_then(|v| v.to_str().ok()) {
        if !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return v.into();
        }
    }
    new_request_id(rand::random::<u128>())
}

/// `application/json` or any `…+json`, parameters ignored, without allocating.
fn is_json_media_type(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .as_bytes();
    mime.eq_ignore_ascii_case(b"application/json")
        || (mime.len() >= 5 && mime[mime.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// `req_` and 32 lowercase hex digits, written without `format!` (it was ~1.5 % of a request).
fn new_request_id(n: u128) -> Arc<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = *b"req_00000000000000000000000000000000";
    for (i, b) in buf[4..].iter_mut().enumerate() {
        *b = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    Arc::from(std::str::from_utf8(&buf).expect("ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_request_ids_are_req_and_32_hex_digits_of_the_random_number() {
        for n in [
            0u128,
            1,
            0xdead_beef,
            u128::MAX,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            assert_eq!(&*new_request_id(n), format!("req_{n:032x}"));
        }
    }

    #[test]
    fn json_bodies_are_recognised_by_media_type_whatever_the_case_and_parameters() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;charset=UTF-8",
            "application/vnd.api+json",
            "application/problem+JSON",
        ] {
            assert!(is_json_media_type(ct), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "",
            "application/jsonx",
        ] {
            assert!(!is_json_media_type(ct), "{ct}");
        }
    }
}
