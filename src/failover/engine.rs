//! The attempt loop: walk the route's chain, attempt, classify, ask the policy, act.
//!
//! One plain async fn ([`Gateway::run`]). Everything it decides comes from
//! [`policy::decide`](super::policy::decide); everything it knows about a failure comes from
//! `classify`. A retry additionally needs the backend's retry budget (linkerd/Finagle style: at
//! most ~20% extra load on top of a floor), so a failing backend cannot become a retry storm.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderValue, StatusCode};
use tokio::time::{timeout_at, Instant};
use tower::retry::budget::{Budget, TpsBudget};
use tracing::Instrument;

use super::policy::{decide, AttemptFacts, Decision};
use crate::body::{self, Scanned};
use crate::classify::{self, Classified, FailureReason, TimeoutKind};
use crate::config::{BackendId, Config, Route};
use crate::dialect::Dialect;
use crate::stream::{self, Committed};
use crate::upstream::{ForwardHeaders, Upstream};

/// Upstream error bodies are read up to this size for classification and pass-back.
const ERROR_BODY_LIMIT: usize = 1 << 20;
/// Successful non-streaming bodies are buffered (to validate them) up to this size.
const RESPONSE_BODY_LIMIT: usize = 256 << 20;

/// The gateway's shared state: the immutable config snapshot, the upstream pool, and the
/// per-backend retry budgets.
pub struct Gateway {
    pub config: Arc<Config>,
    upstream: Upstream,
    budgets: Vec<TpsBudget>,
}

/// A client request, validated and routed.
pub struct ClientRequest {
    pub dialect: Dialect,
    pub request_id: Arc<str>,
    pub body: Bytes,
    pub scanned: Scanned,
    pub route: Arc<Route>,
    pub fwd: ForwardHeaders,
}

/// One failed attempt, for the report and the logs.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// Index in the route's chain.
    pub entry: usize,
    pub backend: BackendId,
    pub reason: FailureReason,
    pub status: Option<u16>,
    pub detail: String,
    pub elapsed: Duration,
}

/// A chain entry that was not attempted, and why.
#[derive(Debug, Clone)]
pub struct SkippedEntry {
    pub entry: usize,
    pub backend: BackendId,
    pub why: String,
}

/// What a successful attempt produced.
pub enum Served {
    Full {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    Stream(Committed),
}

pub enum Outcome {
    /// A backend answered; `failures` are the attempts that failed before it.
    Served {
        backend: BackendId,
        attempts: u32,
        served: Served,
        failures: Vec<AttemptRecord>,
    },
    /// The upstream said the client must fix the request; its answer goes back unchanged.
    Returned {
        backend: BackendId,
        attempts: u32,
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
        reason: FailureReason,
        failures: Vec<AttemptRecord>,
    },
    /// Every chain entry failed or was skipped.
    Exhausted {
        attempts: u32,
        failures: Vec<AttemptRecord>,
        skipped: Vec<SkippedEntry>,
    },
}

/// A failed attempt as seen by the loop: the classification plus, for a status error, the
/// upstream's own response (kept to hand back when the client is to blame).
struct Failed {
    classified: Classified,
    status: Option<u16>,
    response: Option<(StatusCode, Option<HeaderValue>, Bytes)>,
}

impl From<Classified> for Failed {
    fn from(classified: Classified) -> Self {
        Failed {
            classified,
            status: None,
            response: None,
        }
    }
}

impl Gateway {
    pub fn new(config: Arc<Config>) -> Result<Gateway, reqwest::Error> {
        let upstream = Upstream::new(&config)?;
        let global = &config.failover;
        let budgets = config
            .backends
            .iter()
            .map(|_| {
                TpsBudget::new(
                    Duration::from_secs(10),
                    global.retry_budget_min_per_sec,
                    global.retry_budget_ratio,
                )
            })
            .collect();
        Ok(Gateway {
            config,
            upstream,
            budgets,
        })
    }

    /// Runs the attempt loop for one client request.
    pub async fn run(&self, req: &ClientRequest) -> Outcome {
        let policy = &req.route.failover;
        let deadline = Instant::now() + policy.deadline;
        let mut failures: Vec<AttemptRecord> = Vec::new();
        let mut skipped = Vec::new();
        let mut attempts = 0u32;

        'chain: for (entry_idx, entry) in req.route.chain.iter().enumerate() {
            let backend = self.config.backend(entry.backend);
            if backend.api != req.dialect {
                tracing::info!(
                    backend = %backend.name,
                    api = backend.api.as_str(),
                    client = req.dialect.as_str(),
                    "skipping chain entry: its dialect differs from the client's and translation is not available"
                );
                skipped.push(SkippedEntry {
                    entry: entry_idx,
                    backend: entry.backend,
                    why: format!(
                        "speaks {}, the client speaks {}; cross-dialect translation is not available",
                        backend.api.as_str(),
                        req.dialect.as_str()
                    ),
                });
                continue;
            }
            let upstream_body =
                body::with_model(&req.body, &req.scanned.model_span, &entry.model_json);
            let budget = &self.budgets[entry.backend.0];
            budget.deposit();
            let mut retries_done = 0u32;
            loop {
                if Instant::now() >= deadline {
                    break 'chain;
                }
                attempts += 1;
                let started = Instant::now();
                let span = tracing::info_span!(
                    "attempt",
                    request_id = %req.request_id,
                    route = %req.route.name,
                    backend = %backend.name,
                    model = %entry.model,
                    n = attempts,
                );
                let result = self
                    .attempt(req, entry.backend, upstream_body.clone(), deadline)
                    .instrument(span.clone())
                    .await;
                let elapsed = started.elapsed();
                let failed = match result {
                    Ok(served) => {
                        span.in_scope(|| {
                            tracing::info!(
                                elapsed_ms = elapsed.as_millis() as u64,
                                "attempt served"
                            )
                        });
                        return Outcome::Served {
                            backend: entry.backend,
                            attempts,
                            served,
                            failures,
                        };
                    }
                    Err(f) => f,
                };
                let c = &failed.classified;
                let facts = AttemptFacts {
                    reason: c.reason,
                    retry_after: c.retry_after,
                    retries_done,
                };
                let mut decision = decide(&facts, policy, rand::random::<f64>());
                if let Decision::RetrySame { after } = decision {
                    if Instant::now() + after >= deadline {
                        decision = Decision::Failover;
                    } else if !budget.withdraw() {
                        span.in_scope(|| {
                            tracing::warn!("retry budget spent; failing over instead of retrying")
                        });
                        decision = Decision::Failover;
                    }
                }
                span.in_scope(|| {
                    tracing::warn!(
                        reason = c.reason.as_str(),
                        status = failed.status,
                        elapsed_ms = elapsed.as_millis() as u64,
                        decision = ?decision,
                        detail = %c.detail,
                        "attempt failed"
                    )
                });
                failures.push(AttemptRecord {
                    entry: entry_idx,
                    backend: entry.backend,
                    reason: c.reason,
                    status: failed.status,
                    detail: c.detail.clone(),
                    elapsed,
                });
                match decision {
                    Decision::RetrySame { after } => {
                        retries_done += 1;
                        tokio::time::sleep(after).await;
                    }
                    Decision::Failover => continue 'chain,
                    Decision::ReturnToClient => {
                        let reason = failed.classified.reason;
                        let (status, content_type, body) = failed
                            .response
                            .unwrap_or_else(|| (StatusCode::BAD_REQUEST, None, Bytes::new()));
                        return Outcome::Returned {
                            backend: entry.backend,
                            attempts,
                            status,
                            content_type,
                            body,
                            reason,
                            failures,
                        };
                    }
                }
            }
        }
        Outcome::Exhausted {
            attempts,
            failures,
            skipped,
        }
    }

    /// One attempt on one backend: send, wait for the first content under the TTFT clock,
    /// and classify whatever went wrong.
    async fn attempt(
        &self,
        req: &ClientRequest,
        backend_id: BackendId,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Served, Failed> {
        let policy = &req.route.failover;
        let backend = self.config.backend(backend_id);
        let stream_requested = req.scanned.stream;
        let sent_at = Instant::now();
        let first_token_at = (sent_at + policy.ttft_timeout).min(deadline);
        let timeout_kind = if first_token_at >= deadline {
            TimeoutKind::Deadline
        } else {
            TimeoutKind::FirstToken
        };
        let send = self
            .upstream
            .request(
                backend,
                body,
                stream_requested,
                req.dialect,
                &req.fwd,
                policy.connect_timeout,
            )
            .send();
        let resp = match timeout_at(first_token_at, send).await {
            Err(_) => return Err(classify::timeout(timeout_kind, policy.ttft_timeout).into()),
            Ok(Err(e)) if e.is_connect() && e.is_timeout() => {
                return Err(classify::timeout(TimeoutKind::Connect, policy.connect_timeout).into())
            }
            Ok(Err(e)) => return Err(classify::classify_transport(&e).into()),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();

        if !status.is_success() {
            let headers = resp.headers().clone();
            let body = read_body(resp, ERROR_BODY_LIMIT, policy.stall_timeout, deadline, true)
                .await
                .unwrap_or_default();
            let classified = classify::classify_response(status.as_u16(), &headers, &body);
            return Err(Failed {
                classified,
                status: Some(status.as_u16()),
                response: Some((status, content_type, body)),
            });
        }

        let is_sse = content_type
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if stream_requested && is_sse {
            let upstream: stream::ByteStream = Box::pin(resp.bytes_stream());
            return stream::await_first_content(
                backend.api,
                upstream,
                first_token_at,
                policy.ttft_timeout,
                deadline,
                policy.stall_timeout,
            )
            .await
            .map(Served::Stream)
            .map_err(|c| Failed {
                classified: c,
                status: Some(status.as_u16()),
                response: None,
            });
        }

        let body = read_body(
            resp,
            RESPONSE_BODY_LIMIT,
            policy.stall_timeout,
            deadline,
            false,
        )
        .await
        .map_err(|c| Failed {
            classified: c,
            status: Some(status.as_u16()),
            response: None,
        })?;
        let with_status = |c: Classified| Failed {
            classified: c,
            status: Some(status.as_u16()),
            response: None,
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(with_status(classify::invalid_response(
                "empty response body",
            )));
        }
        match body::top_level_has_key(&body, "error") {
            None => {
                return Err(with_status(classify::invalid_response(
                    "response body is not a JSON object",
                )))
            }
            // Some providers report errors with status 200; they are failures like any other.
            Some(true)
                if !body::top_level_has_key(&body, "choices").unwrap_or(false)
                    && !body::top_level_has_key(&body, "content").unwrap_or(false) =>
            {
                return Err(with_status(classify::classify_stream_error(&body)))
            }
            Some(_) => {}
        }
        if stream_requested {
            // A JSON answer to a streaming request would break the client's SSE parser.
            return Err(with_status(classify::invalid_response(
                "expected an event stream, got a JSON body",
            )));
        }
        Ok(Served::Full {
            status,
            content_type,
            body,
        })
    }
}

/// Reads a response body, bounded in size, in the time between chunks, and by the deadline.
/// With `truncate`, a body over `limit` is cut (error bodies); otherwise it is a failure.
async fn read_body(
    resp: reqwest::Response,
    limit: usize,
    stall: Duration,
    deadline: Instant,
    truncate: bool,
) -> Result<Bytes, Classified> {
    let mut stream = resp.bytes_stream();
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    loop {
        let wait_until = (Instant::now() + stall).min(deadline);
        let chunk = match timeout_at(wait_until, stream.next()).await {
            Err(_) => {
                let kind = if wait_until >= deadline {
                    TimeoutKind::Deadline
                } else {
                    TimeoutKind::Stall
                };
                return Err(classify::timeout(kind, stall));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(classify::classify_transport(&e)),
            Ok(Some(Ok(c))) => c,
        };
        let len = first.as_ref().map_or(0, Bytes::len) + rest.as_ref().map_or(0, BytesMut::len);
        if len + chunk.len() > limit {
            if truncate {
                break;
            }
            return Err(classify::invalid_response(format!(
                "response body larger than {limit} bytes"
            )));
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(f.len() + chunk.len());
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok(match rest {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}
