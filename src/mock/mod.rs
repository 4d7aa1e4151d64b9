//! `switchyard mock`: the faithful simulated provider, speaking the OpenAI (Chat Completions
//! and Responses) and Anthropic APIs.
//!
//! It answers like the real providers: response bodies and headers of the real shapes, the
//! SSE event sequences of each dialect, their error bodies, and request validation (the 400s a
//! real API returns for a request it refuses). On command it also fails like them: error
//! statuses, in-stream errors, stalls, connection resets, malformed or trickled bodies. A plan
//! set through `POST /_mock/plan` (or [`MockHandle::set_plan`]) scripts one behaviour per API
//! request; `/_mock/stats`, `/_mock/requests` and `/_mock/reset` are the rest of its control API.
//!
//! It shares no code with the gateway, on purpose: it is the independent oracle the gateway is
//! tested against (by the integration suite, the demo and the benchmarks), so a bug in a shared
//! helper (an SSE writer, a validator, an error shape) cannot hide in both at once. Nothing here
//! uses a path of this crate outside `crate::mock`; keep it that way, even when a gateway
//! helper looks reusable. Its socket tests are in `tests/it/mock.rs`, its unit tests beside the
//! code. The whole module is behind the default-on `mock` cargo feature.
//!
//! This module owns the public API and the server loop. The loop is hand-rolled
//! over hyper's HTTP/1 connection (rather than axum's `serve`) because the `reset`
//! behaviour needs the socket itself, to close it with an RST.
//!
//! Submodules: `plan` (behaviours, the plan queue), `control` (shared state and
//! `/_mock/*`), `respond` (behaviour → response), `body` (scripted response
//! bodies and completion accounting), `openai` / `anthropic` / `responses` (wire shapes),
//! `providers` (other providers' error dialects),
//! `content` (dialect-neutral reply pieces), `validate` (request validation).

mod anthropic;
mod body;
mod content;
mod control;
mod openai;
pub mod plan;
pub mod providers;
mod respond;
mod responses;
pub(crate) mod validate;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use plan::{
    Behavior, EmptyFault, MalformedFault, Plan, Reply, ResetFault, StallFault, StatusFault,
    StreamErrorFault, ToolCall, TrickleFault,
};
pub use providers::MockProvider;

use body::{ConnCtl, Flight, MockBody};
use content::{Ctx, Dialect};
use control::Shared;
use respond::{Answer, Names};

/// Serves forever on `listener` (the `switchyard mock --listen ADDR --name NAME`
/// command calls this).
pub async fn serve(listener: TcpListener, name: String) -> io::Result<()> {
    serve_as(listener, name, None).await
}

/// [`serve`], with `status` faults answered in `provider`'s error dialect
/// (`switchyard mock --provider NAME`).
pub async fn serve_as(
    listener: TcpListener,
    name: String,
    provider: Option<MockProvider>,
) -> io::Result<()> {
    let shared = Arc::new(Shared::new(name, provider));
    // Never signalled: the server runs until the process ends.
    let (_keep, shutdown) = watch::channel(());
    accept_loop(listener, shared, shutdown).await;
    Ok(())
}

/// Binds 127.0.0.1:0 and serves in a background task; dropping the handle stops
/// the server and closes its connections.
pub async fn spawn(name: &str) -> io::Result<MockHandle> {
    spawn_as(name, None).await
}

/// [`spawn`], with `status` faults answered in `provider`'s error dialect.
pub async fn spawn_as(name: &str, provider: Option<MockProvider>) -> io::Result<MockHandle> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(name.to_owned(), provider));
    let (shutdown_tx, shutdown) = watch::channel(());
    let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown));
    Ok(MockHandle {
        addr,
        shared,
        _shutdown: shutdown_tx,
        task,
    })
}

/// A mock server running in the background of the current runtime.
pub struct MockHandle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping the sender tells every connection task to stop.
    _shutdown: watch::Sender<()>,
    task: JoinHandle<()>,
}

impl MockHandle {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Same as `POST /_mock/plan`, in-process.
    pub fn set_plan(&self, plan: Plan) {
        self.shared.set_plan(plan);
    }

    /// Same JSON as `GET /_mock/stats`.
    pub fn stats(&self) -> serde_json::Value {
        self.shared.stats()
    }

    /// Same as `GET /_mock/requests`: the last 100 API requests, oldest first.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.shared.requests()
    }

    /// Same as `POST /_mock/reset`: clears plan, counters and log.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    let mut http = http1::Builder::new();
    // No timer is configured, so no header-read timeout: tests may hold
    // half-written requests open on purpose.
    http.keep_alive(true).header_read_timeout(None);
    let http = Arc::new(http);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Usually fd exhaustion: back off instead of spinning.
                    tracing::warn!(error = %e, "mock: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            Arc::clone(&shared),
            Arc::clone(&http),
            shutdown.clone(),
        ));
    }
}

/// Drives one keep-alive connection, and tears it down with an RST when a
/// `reset` behaviour asks for it.
async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    http: Arc<http1::Builder>,
    mut shutdown: watch::Receiver<()>,
) {
    let ctl = Arc::new(ConnCtl::default());
    let svc_ctl = Arc::clone(&ctl);
    let service = service_fn(move |req| handle(req, Arc::clone(&shared), Arc::clone(&svc_ctl)));
    let mut conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = &mut conn => {}
        _ = ctl.reset_requested() => {
            let parts = conn.into_parts();
            let stream = parts.io.into_inner();
            // SO_LINGER 0: closing now sends RST instead of FIN.
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        _ = shutdown.changed() => {}
    }
}

fn is_azure_chat(path: &str) -> bool {
    path.strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.strip_suffix("/chat/completions"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// Answers one HTTP request.
async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    conn: Arc<ConnCtl>,
) -> Result<Response<MockBody>, Infallible> {
    let started = Instant::now();
    if req.uri().path().starts_with("/_mock/") {
        return Ok(control::handle(req, &shared).await);
    }
    let flight = Flight::start(&shared.counters);
    // The side endpoints agents call on the same base URL: token counting and embeddings.
    let side = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/messages/count_tokens") => Some(Side::CountTokens),
        (&Method::POST, "/v1/embeddings") => Some(Side::Embeddings),
        _ => None,
    };
    let dialect = match (req.method(), req.uri().path()) {
        _ if side == Some(Side::CountTokens) => Some(Dialect::Anthropic),
        _ if side == Some(Side::Embeddings) => Some(Dialect::OpenAi),
        (&Method::POST, "/v1/chat/completions") => Some(Dialect::OpenAi),
        // Azure OpenAI's deployment path (`/openai/deployments/NAME/chat/completions`).
        (&Method::POST, p) if is_azure_chat(p) => Some(Dialect::OpenAi),
        (&Method::POST, "/v1/messages") => Some(Dialect::Anthropic),
        (&Method::POST, "/v1/responses" | "/responses") => Some(Dialect::Responses),
        _ => None,
    };
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        // The client went away mid-body; nobody will read an answer.
        Err(_) => return Ok(Response::new(MockBody::full(Bytes::new(), None))),
    };
    let path = parts.uri.path();
    let query = parts.uri.query();

    let Some(dialect) = dialect else {
        shared.record(&parts.method, path, query, &parts.headers, &body, false);
        let mut resp = Response::new(MockBody::full(
            openai::not_found(parts.method.as_str(), path),
            Some(flight),
        ));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(resp);
    };

    let mut ctx = Ctx::new(dialect, started);
    let invalid = match serde_json::from_slice::<serde_json::Value>(&body) {
        Err(e) => Some(match dialect {
            Dialect::OpenAi | Dialect::Responses => openai::invalid_json(),
            Dialect::Anthropic => anthropic::error(
                &ctx,
                "invalid_request_error",
                &format!("The request body is not valid JSON: {e}"),
            ),
        }),
        Ok(json) if side.is_some() => {
            ctx.read_body(&json, body.len());
            side_invalid(side, &json, &ctx)
        }
        Ok(json) => {
            ctx.read_body(&json, body.len());
            match dialect {
                Dialect::OpenAi => validate::openai(&json).err().map(|e| {
                    openai::error(
                        &e.message,
                        "invalid_request_error",
                        e.param.as_deref(),
                        e.code,
                    )
                }),
                Dialect::Anthropic => validate::anthropic(
                    &json,
                    parts
                        .headers
                        .get("anthropic-beta")
                        .and_then(|v| v.to_str().ok())
                        // Claude Code ≤2.1.19x sent `system` turns under the first beta,
                        // 2.1.33x under the second (captured: tests/it/fixtures/agents).
                        .is_some_and(|b| {
                            b.contains("mid-conversation-system") || b.contains("per-turn-control")
                        }),
                )
                .err()
                .map(|message| anthropic::error(&ctx, "invalid_request_error", &message)),
                Dialect::Responses => {
                    ctx.echo = responses::echo(&json);
                    validate::responses(&json).err().map(|e| {
                        openai::error(
                            &e.message,
                            "invalid_request_error",
                            e.param.as_deref(),
                            e.code,
                        )
                    })
                }
            }
        }
    };
    // Invalid requests are answered 400 without consuming a plan step, as the real
    // API would reject them before anything else could happen.
    let planned = shared.record(
        &parts.method,
        path,
        query,
        &parts.headers,
        &body,
        invalid.is_none(),
    );
    if let Some(error) = invalid {
        let mut resp = Response::new(MockBody::full(error, Some(flight)));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        respond::common_headers(&mut resp, &ctx, "application/json");
        return Ok(resp);
    }

    let default_behavior;
    let behavior = match &planned {
        Some(b) => b.as_ref(),
        None => {
            default_behavior = Behavior::default();
            &default_behavior
        }
    };
    let delay = behavior.delay_ms();
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let (Some(side), Behavior::Ok(_)) = (side, behavior) {
        let mut resp = Response::new(MockBody::full(side_answer(side, &body), Some(flight)));
        respond::common_headers(&mut resp, &ctx, "application/json");
        return Ok(resp);
    }
    let names = Names {
        default_text: &shared.default_text,
        trickle_text: &shared.trickle_text,
        provider: shared.provider,
    };
    match respond::answer(behavior, &ctx, &names, flight, &conn) {
        Answer::Respond(resp) => Ok(resp),
        Answer::Hold(_flight) => std::future::pending().await,
        Answer::Reset(mut flight) => {
            flight.done = true;
            conn.trigger_reset();
            std::future::pending().await
        }
    }
}

/// A side endpoint of the real APIs. Only a successful answer is its own; every fault
/// behaviour answers as on the dialect's main endpoint (status bodies, stalls, resets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Anthropic `POST /v1/messages/count_tokens` → `{"input_tokens": N}`.
    CountTokens,
    /// OpenAI `POST /v1/embeddings` → a list of `embedding` objects.
    Embeddings,
}

/// The 400 the real API gives a side request without the fields it needs.
fn side_invalid(side: Option<Side>, json: &serde_json::Value, ctx: &Ctx) -> Option<Bytes> {
    let missing = |field: &str| json.get(field).is_none_or(serde_json::Value::is_null);
    match side? {
        Side::CountTokens if missing("model") => Some(anthropic::error(
            ctx,
            "invalid_request_error",
            "model: Field required",
        )),
        Side::CountTokens if missing("messages") => Some(anthropic::error(
            ctx,
            "invalid_request_error",
            "messages: Field required",
        )),
        Side::Embeddings if missing("input") || missing("model") => Some(openai::error(
            "you must provide a model and an input",
            "invalid_request_error",
            None,
            None,
        )),
        _ => None,
    }
}

/// A successful side answer: a token count of about a quarter of the body's bytes, or one
/// small deterministic vector per input.
fn side_answer(side: Side, body: &[u8]) -> Bytes {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let approx_tokens = (body.len() / 4).max(1);
    let v = match side {
        Side::CountTokens => serde_json::json!({"input_tokens": approx_tokens}),
        Side::Embeddings => {
            let inputs = match json.get("input") {
                Some(serde_json::Value::Array(a)) => a.len().max(1),
                _ => 1,
            };
            let data: Vec<serde_json::Value> = (0..inputs)
                .map(|i| {
                    serde_json::json!({"object": "embedding", "index": i,
                    "embedding": [0.1, -0.2, 0.3, (i as f64) / 10.0]})
                })
                .collect();
            serde_json::json!({"object": "list", "data": data,
                "model": json.get("model").cloned().unwrap_or_default(),
                "usage": {"prompt_tokens": approx_tokens, "total_tokens": approx_tokens}})
        }
    };
    Bytes::from(v.to_string())
}
