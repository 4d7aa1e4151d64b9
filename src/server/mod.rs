//! The listener and the per-dialect handlers: request in, response out.
//!
//! A request's life here: request id → [`prepare`] (gateway key, content type, body, route) →
//! the failover engine → [`respond`] (the one path from an outcome to what the client gets) →
//! a response in the client's dialect, with `x-switchyard-backend`, `x-switchyard-attempts` and
//! `x-request-id`. Whatever the gateway refuses itself is a [`GatewayError`].

mod error;
mod headers;
mod prepare;
mod respond;

pub use error::GatewayError;
pub use headers::{HDR_ATTEMPTS, HDR_BACKEND, HDR_REASON, HDR_REQUEST_ID};

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::app::Gateway;
use crate::config::MetricsAccess;
use crate::dialect::{self, Dialect, Operation};
use crate::upstream::ANTHROPIC_VERSION;
use error::panic_message;
use headers::{json_response, H_REQUEST_ID};

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai_chat))
        .route("/v1/chat/completions/", post(openai_chat))
        .route("/chat/completions", post(openai_chat))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/messages/", post(anthropic_messages))
        .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
        .route("/v1/messages/count_tokens/", post(anthropic_count_tokens))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/v1/embeddings/", post(openai_embeddings))
        .route("/embeddings", post(openai_embeddings))
        .route("/v1/responses", post(openai_responses))
        .route("/v1/responses/", post(openai_responses))
        .route("/responses", post(openai_responses))
        .route("/v1/models", get(models))
        .route("/v1/models/", get(models))
        .route("/models", get(models))
        .route("/v1/models/{id}", get(model_by_id))
        .route("/models/{id}", get(model_by_id))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::admin::router())
        .merge(crate::status::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gw)
}

/// Serves until the process ends (no stop signal); see [`serve_until`].
pub async fn serve(listener: TcpListener, gw: Arc<Gateway>) -> std::io::Result<()> {
    serve_until(listener, gw, std::future::pending(), std::future::pending())
        .await
        .map(|_| ())
}

/// How [`serve_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within `shutdown.grace`.
    Drained,
    /// The grace ran out: the streams still open were ended with their error event.
    GraceEnded,
    /// A second signal: everything was dropped at once.
    Forced,
}

/// Accepts connections until `stop` resolves, then drains: `/readyz` answers 503 while the
/// listener still accepts for `shutdown.delay` (load balancers stop sending first); then no
/// new connections, and in-flight requests and streams get `shutdown.grace` to finish (idle
/// keep-alive connections close at once); streams still open then end with their dialect's
/// error event, and pending alerts go out within what is left. `force` (a second signal)
/// returns at once. Sets TCP_NODELAY on every accepted socket and bounds how long a client
/// may take to send its headers (slowloris).
pub async fn serve_until(
    listener: TcpListener,
    gw: Arc<Gateway>,
    stop: impl std::future::Future<Output = ()>,
    force: impl std::future::Future<Output = ()>,
) -> std::io::Result<Stopped> {
    serve_with_reload(listener, gw, stop, force, None).await
}

/// Reads the config file again for a reload (on a blocking thread: key commands run at load).
pub type ConfigLoader = Arc<dyn Fn() -> Result<crate::config::Config, String> + Send + Sync>;

/// The gateway generation new requests go to, and its router. A reload swaps it whole;
/// requests in flight keep the generation they started on.
struct Generation {
    gw: Arc<Gateway>,
    app: Router,
}

impl Generation {
    fn new(gw: Arc<Gateway>) -> Arc<Generation> {
        Arc::new(Generation {
            app: router(gw.clone()),
            gw,
        })
    }
}

type Current = Arc<std::sync::RwLock<Arc<Generation>>>;

fn current(c: &Current) -> Arc<Generation> {
    c.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// [`serve_until`], also answering reload requests (SIGHUP, `POST /admin/reload`,
/// `--watch`) with `load`: a valid config becomes the next generation, carrying state over
/// (see [`Gateway::reloaded`]); an invalid one is refused, the running one keeps serving.
pub async fn serve_with_reload(
    listener: TcpListener,
    gw: Arc<Gateway>,
    stop: impl std::future::Future<Output = ()>,
    force: impl std::future::Future<Output = ()>,
    reload: Option<(
        ConfigLoader,
        tokio::sync::mpsc::Receiver<crate::lifecycle::ReloadRequest>,
    )>,
) -> std::io::Result<Stopped> {
    let shutdown = gw.config.shutdown;
    let lifecycle = gw.lifecycle.clone();
    start_background(&gw, true);
    let now: Current = Arc::new(std::sync::RwLock::new(Generation::new(gw)));
    let conns = Connections {
        current: now.clone(),
        graceful: hyper_util::server::graceful::GracefulShutdown::new(),
    };
    let (loader, mut requests) = match reload {
        Some((l, r)) => (Some(l), Some(r)),
        None => (None, None),
    };
    let mut stop = std::pin::pin!(stop);
    let mut force = std::pin::pin!(force);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            Some(reply) = next_request(&mut requests) => {
                if let Some(load) = &loader {
                    let _ = reply.send(reload_config(&now, load).await);
                }
            }
            accepted = listener.accept() => conns.accepted(accepted).await,
        }
    }
    let gw = current(&now).gw.clone();
    lifecycle.start_draining();
    tracing::info!(
        delay = ?shutdown.delay,
        grace = ?shutdown.grace,
        "stop signal: draining (readiness 503, still accepting for the delay)"
    );
    let accept_until = Instant::now() + shutdown.delay;
    loop {
        tokio::select! {
            biased;
            () = &mut force => return Ok(Stopped::Forced),
            () = tokio::time::sleep_until(accept_until) => break,
            accepted = listener.accept() => conns.accepted(accepted).await,
        }
    }
    drop(listener);
    let grace_ends = Instant::now() + shutdown.grace;
    tracing::info!(
        open = conns.graceful.count(),
        "listener closed; waiting for in-flight requests"
    );
    let mut drained = std::pin::pin!(conns.graceful.shutdown());
    let stopped = tokio::select! {
        biased;
        () = &mut force => return Ok(Stopped::Forced),
        () = &mut drained => Stopped::Drained,
        () = tokio::time::sleep_until(grace_ends) => {
            tracing::warn!("shutdown grace over: ending the streams still open with an error event");
            gw.lifecycle.end_streams();
            // The closing events take a moment to be written; not forever.
            tokio::select! {
                () = &mut force => return Ok(Stopped::Forced),
                _ = tokio::time::timeout(Duration::from_secs(2), &mut drained) => {}
            }
            Stopped::GraceEnded
        }
    };
    // Alerts raised by the last requests go out within what is left of the grace.
    let alerts_until = grace_ends.max(Instant::now() + Duration::from_millis(500));
    while !gw.alerts.idle() && Instant::now() < alerts_until {
        tokio::select! {
            () = &mut force => return Ok(Stopped::Forced),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    tracing::info!(?stopped, "stopped");
    Ok(stopped)
}

async fn next_request(
    requests: &mut Option<tokio::sync::mpsc::Receiver<crate::lifecycle::ReloadRequest>>,
) -> Option<crate::lifecycle::ReloadRequest> {
    match requests {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// One reload: load and validate, build the next generation, swap. A refused config leaves
/// the current generation serving and says why (log, the caller's answer, a
/// `config_rejected` alert).
async fn reload_config(now: &Current, load: &ConfigLoader) -> Result<String, String> {
    let old = current(now).gw.clone();
    let load = load.clone();
    let loaded = tokio::task::spawn_blocking(move || load())
        .await
        .map_err(|e| format!("the config loader failed: {e}"))
        .and_then(|r| r);
    let result = loaded.and_then(|mut config| {
        let mut notes = String::new();
        if config.listen != old.config.listen {
            notes = format!(
                "; listen {} is unchanged until a restart (a reload keeps the listener)",
                config.listen
            );
            config.listen = old.config.listen;
        }
        let next = old.reloaded(Arc::new(config))?;
        Ok((Arc::new(next), notes))
    });
    match result {
        Ok((next, notes)) => {
            start_background(&next, false);
            let summary = format!("config reloaded: {}{notes}", next.summary());
            *now.write().unwrap_or_else(|e| e.into_inner()) = Generation::new(next);
            tracing::info!("{summary}");
            Ok(summary)
        }
        Err(e) => {
            let e = old.scrubber.detail(&e, 4000);
            tracing::warn!(error = %e, "config reload refused; the running config keeps serving");
            let mut a = crate::alert::Alert::new(crate::config::AlertEvent::ConfigRejected);
            a.detail = e.clone();
            old.alerts.emit(a);
            Err(e)
        }
    }
}

fn current_app(c: &Current) -> Router {
    current(c).app.clone()
}

/// What serving a connection needs, and the watcher that drains them all.
struct Connections {
    current: Current,
    graceful: hyper_util::server::graceful::GracefulShutdown,
}

impl Connections {
    async fn accepted(
        &self,
        accepted: std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
    ) {
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        // The peer address goes into each request's extensions (admin endpoints check it).
        // Not `app.layer(Extension(..))` per connection: that rebuilds the router's route
        // table, ~10 KB and a few µs for every connection. Each request takes the generation
        // current when it arrives (a reload in between applies to the next request).
        let now = self.current.clone();
        let header_timeout = current(&now).gw.config.limits.header_read_timeout;
        let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(crate::admin::Peer(peer));
            let app = current_app(&now);
            tower::ServiceExt::oneshot(app, req)
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), svc);
        let conn = self.graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

/// Starts the gateway's background work: freed-memory release, alert delivery, active
/// health probes, key commands' refreshes.
/// One generation's background work (it ends with the generation); `first`: also the
/// process-wide work (freed-memory release).
fn start_background(gw: &Arc<Gateway>, first: bool) {
    let h = &gw.config.health;
    if first {
        tokio::spawn(crate::memory::release_freed_memory());
    }
    for (b, backend) in gw.config.backends.iter().enumerate() {
        for (c, cred) in backend.credentials.iter().enumerate() {
            if let crate::config::CredentialSource::Command(cmd) = &cred.source {
                if let Some(every) = cmd.refresh_every {
                    tokio::spawn(refresh_key(Arc::downgrade(gw), b, c, every));
                }
            }
        }
    }
    if gw.alerts.enabled() {
        tokio::spawn(gw.alerts.clone().run(gw.health.clone()));
    }
    if let Some(interval) = h.probe_interval {
        tokio::spawn(crate::failover::probe::run(
            Arc::downgrade(gw),
            interval,
            h.probe_request.clone(),
        ));
    }
}

/// Re-runs a key command every `every`, while its gateway generation runs (a reload's new
/// generation has its own refreshers). A failed run keeps the current token (it may still be
/// valid; a 401 re-runs the command again and, failing, takes the credential out).
async fn refresh_key(
    gw: std::sync::Weak<Gateway>,
    backend: usize,
    credential: usize,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gw) = gw.upgrade() else { return };
        let cred = &gw.config.backends[backend].credentials[credential];
        match cred.reload(None).await {
            Ok(changed) => {
                if changed {
                    gw.scrubber.add_secret(cred.secret().expose());
                }
                tracing::debug!(credential = %cred.label, changed, "key command refreshed");
            }
            Err(e) => tracing::warn!(
                credential = %cred.label,
                error = %gw.scrubber.detail(&e, 400),
                "key command refresh failed; keeping the current key"
            ),
        }
    }
}

/// `GET /readyz`: 200 while serving; 503 from the stop signal on, so load balancers and
/// Kubernetes stop sending before the listener closes (`/healthz` stays the liveness check).
async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    let (status, body) = if gw.lifecycle.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r
}

/// `GET /metrics`, guarded as `auth.metrics` says (public by default).
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
            if let Err(e) = prepare::gateway_key(&gw.config, &headers) {
                return e.response(guess_dialect(&uri, &headers), None);
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
    if uri.path().contains("messages") || headers.contains_key(&ANTHROPIC_VERSION) {
        Dialect::Anthropic
    } else if uri.path().contains("responses") {
        Dialect::Responses
    } else {
        Dialect::OpenAi
    }
}

async fn not_found(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    GatewayError::UnknownEndpoint { method, path }.response(guess_dialect(&uri, &headers), None)
}

async fn method_not_allowed(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    GatewayError::MethodNotAllowed { method, path }.response(guess_dialect(&uri, &headers), None)
}

/// `GET /v1/models`: the route names, in OpenAI's list format, or Anthropic's when the client
/// identifies as an Anthropic SDK (`anthropic-version`).
async fn models(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(e) = prepare::gateway_key(&gw.config, &headers) {
        return e.response(guess_dialect(&uri, &headers), None);
    }
    let names: Vec<&str> = gw.config.route_names.iter().map(|n| &**n).collect();
    let dialect = if headers.contains_key(&ANTHROPIC_VERSION) {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    json_response(StatusCode::OK, dialect::models_list(dialect, &names))
}

/// `GET /v1/models/{id}`: a route as a model object in the client's dialect (Anthropic's when
/// `anthropic-version` is sent), or a 404 in that dialect naming the routes there are.
async fn model_by_id(
    State(gw): State<Arc<Gateway>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let dialect = if headers.contains_key(&ANTHROPIC_VERSION) {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    if let Err(e) = prepare::gateway_key(&gw.config, &headers) {
        return e.response(guess_dialect(&uri, &headers), None);
    }
    match gw.config.route_names.iter().find(|n| ***n == *id) {
        Some(name) => json_response(StatusCode::OK, dialect::model_object(dialect, name)),
        None => GatewayError::UnknownRoute {
            model: crate::scrub::truncate_chars(&id, 100),
            available: gw
                .config
                .route_names
                .iter()
                .map(|n| n.to_string())
                .collect(),
        }
        .response(dialect, None),
    }
}

async fn openai_chat(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    guarded(gw, Dialect::OpenAi, Operation::Generate, headers, body).await
}

async fn openai_responses(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    guarded(gw, Dialect::Responses, Operation::Generate, headers, body).await
}

/// `POST /v1/messages/count_tokens` (Claude Code calls it, with `?beta=true`): forwarded with
/// failover to the route's Anthropic backends.
async fn anthropic_count_tokens(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    guarded(
        gw,
        Dialect::Anthropic,
        Operation::CountTokens,
        headers,
        body,
    )
    .await
}

/// `POST /v1/embeddings`: forwarded with failover to the route's OpenAI backends.
async fn openai_embeddings(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    guarded(gw, Dialect::OpenAi, Operation::Embeddings, headers, body).await
}

async fn anthropic_messages(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    guarded(gw, Dialect::Anthropic, Operation::Generate, headers, body).await
}

/// [`handle`], with a panic turned into a 500 in the client's dialect instead of a dropped
/// connection. A panic is a bug of ours: it is logged loudly, and the tests abort on one.
async fn guarded(
    gw: Arc<Gateway>,
    dialect: Dialect,
    operation: Operation,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use futures_util::FutureExt;
    let request_id = request_id(&headers);
    match std::panic::AssertUnwindSafe(handle(gw, dialect, operation, headers, body))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(panic) => {
            tracing::error!(request_id = %request_id, panic = panic_message(&panic), "request handler panicked");
            GatewayError::Internal.response(dialect, Some(&request_id))
        }
    }
}

async fn handle(
    gw: Arc<Gateway>,
    dialect: Dialect,
    operation: Operation,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use tracing::Instrument;
    let started = Instant::now();
    let request_id = request_id(&headers);
    let in_flight = gw.metrics.in_flight();
    // `Span::none()` unless traces are exported: then the logs stay as they are.
    let span = crate::telemetry::request_span(&headers, operation, &request_id);
    let resp = match prepare::prepare(&gw, dialect, operation, &headers, body, &request_id).await {
        Err(e) => {
            gw.metrics.request("-", "-", "rejected");
            crate::telemetry::request_rejected(&span, e.code());
            tracing::info!(request_id = %request_id, code = e.code(), "request rejected: {e}");
            e.response(dialect, Some(&request_id))
        }
        Ok(mut req) => {
            crate::telemetry::request_routed(&span, operation, &req.scanned.model, &req.route.name);
            req.span = span.clone();
            respond::respond(gw, req, started, in_flight)
                .instrument(span.clone())
                .await
        }
    };
    crate::telemetry::finish_response(resp, span)
}

/// The client's `x-request-id` when it is a sane token, or a new random one.
fn request_id(headers: &HeaderMap) -> Arc<str> {
    if let Some(v) = headers.get(&H_REQUEST_ID).and_then(|v| v.to_str().ok()) {
        if !v.is_empty()
            && v.len() <= 128
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            return v.into();
        }
    }
    new_request_id(request_id_number())
}

/// A number for a new request id: unique within the process (an odd multiplier is a bijection
/// of the counter) and apart from other processes' (a random seed per process). Not a secret;
/// a thread-local CSPRNG draw per request was ~500 of the ~2,000 instructions `request_id` took.
fn request_id_number() -> u128 {
    static SEED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = *SEED.get_or_init(rand::random::<u128>);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128;
    seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
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
    fn request_ids_made_in_one_process_never_repeat() {
        let ids: std::collections::HashSet<u128> =
            (0..10_000).map(|_| request_id_number()).collect();
        assert_eq!(ids.len(), 10_000);
    }

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
}
