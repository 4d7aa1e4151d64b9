//! What the attempt loop takes in and gives back: the routed client request, each failed or
//! skipped chain entry, and the outcome the server turns into a response (and the report
//! reads when every entry failed).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::body::Scanned;
use crate::config::{BackendId, Route};
use crate::dialect::{Dialect, Operation};
use crate::failure::FailureReason;
use crate::health::sessions::SessionKey;
use crate::health::AttemptScopes;
use crate::stream::Committed;
use crate::upstream::ForwardHeaders;

/// Bytes of request body per prompt token, for [`ClientRequest::estimated_prompt_tokens`]:
/// the usual ~4 characters per token of English prose and code.
pub const BYTES_PER_TOKEN: u64 = 4;

/// A client request, validated and routed.
pub struct ClientRequest {
    pub dialect: Dialect,
    /// Generate (the dialect's endpoint) or a side endpoint (count_tokens, embeddings).
    pub operation: Operation,
    pub request_id: Arc<str>,
    pub body: Bytes,
    pub scanned: Scanned,
    pub route: Arc<Route>,
    pub fwd: ForwardHeaders,
    /// The conversation, when the request says which (see [`crate::session`]).
    pub session: Option<SessionKey>,
    /// The client product (`claude-cli`, `hermes`…), for alerts.
    pub platform: Option<Box<str>>,
    /// Responses: the stored response this request continues (`previous_response_id`).
    pub previous_response: Option<Box<str>>,
    /// Responses: whether the provider will store the answer (`store`, default true).
    pub stores_response: bool,
    /// The client asked for RFC 9457 problem documents (`Accept: application/problem+json`).
    pub accept_problem: bool,
    /// The request's trace span ([`tracing::Span::none`] when tracing is off): the parent of
    /// each attempt's span.
    pub span: tracing::Span,
}

impl ClientRequest {
    /// Whether this request's outcomes count for backend health and sessions: generating
    /// does; a side endpoint (count_tokens, embeddings) only respects them, since a provider
    /// that lacks it (a 404) may serve its models perfectly well.
    pub fn tracks_health(&self) -> bool {
        self.operation == Operation::Generate
    }

    /// The prompt's size in tokens, estimated from the body's length alone (one token per
    /// [`BYTES_PER_TOKEN`] bytes): no parse on the hot path. JSON syntax, tool schemas and
    /// base64 images all count, so the estimate runs high for image-heavy requests (the
    /// scaled timeouts' `max` bounds that) and a little low for CJK text.
    pub fn estimated_prompt_tokens(&self) -> u64 {
        (self.body.len() as u64).div_ceil(BYTES_PER_TOKEN)
    }

    /// Whether the client asked for a usage chunk at the end of its stream
    /// (`stream_options.include_usage`), for a translated stream (parses the body).
    pub fn wants_usage(&self) -> bool {
        crate::dialect::translate::wants_usage(&self.body)
    }

    /// A Responses client's freeform tools, for a translated answer (parses the body).
    pub fn custom_tools(&self) -> Vec<String> {
        crate::dialect::translate::custom_tools(&self.body)
    }
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
    /// The last failure recorded for its scopes, when it was skipped for health.
    pub last: Option<(FailureReason, String)>,
}

/// What a successful attempt produced.
pub enum Served {
    Full {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    Stream(Box<Committed>),
}

pub enum Outcome {
    /// A backend answered; `failures` are the attempts that failed before it.
    Served {
        backend: BackendId,
        /// Index of the chain entry that served.
        entry: usize,
        attempts: u32,
        served: Served,
        failures: Vec<AttemptRecord>,
        /// The health scopes of the serving attempt: a stream that fails after its commit
        /// point counts against them.
        scopes: AttemptScopes,
        /// Built-in tools the client offered that the serving backend cannot run (dropped
        /// by translation).
        dropped_tools: Vec<String>,
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
