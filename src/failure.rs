//! The vocabulary every layer shares about a failed attempt: why it failed
//! ([`FailureReason`]), who is to blame ([`Blame`]), which of our clocks ran out
//! ([`TimeoutKind`]) and the classified result ([`Classified`]). A leaf: it imports nothing
//! of the crate, so config, health, metrics, the policy and the classifier can all name these
//! types without importing each other.

use std::time::Duration;

/// Why an attempt failed. `as_str()` names are stable: they appear in headers, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    RateLimit,
    Quota,
    Auth,
    ModelNotFound,
    Overloaded,
    ServerError,
    Timeout,
    Connection,
    InvalidResponse,
    ContextOverflow,
    PayloadTooLarge,
    ContentPolicy,
    InvalidRequest,
    Unknown,
    /// The gateway could not handle an answer the upstream gave correctly (e.g. a content
    /// block our translator does not know): our limitation, not the backend's fault.
    Internal,
}

/// Who caused a failure; only upstream-blamed failures may count against a backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Upstream,
    Client,
    /// The gateway itself: never ejects a backend, never goes back to the client as theirs.
    Gateway,
}

impl FailureReason {
    pub const ALL: [FailureReason; 15] = [
        FailureReason::RateLimit,
        FailureReason::Quota,
        FailureReason::Auth,
        FailureReason::ModelNotFound,
        FailureReason::Overloaded,
        FailureReason::ServerError,
        FailureReason::Timeout,
        FailureReason::Connection,
        FailureReason::InvalidResponse,
        FailureReason::ContextOverflow,
        FailureReason::PayloadTooLarge,
        FailureReason::ContentPolicy,
        FailureReason::InvalidRequest,
        FailureReason::Unknown,
        FailureReason::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::RateLimit => "rate_limit",
            FailureReason::Quota => "quota",
            FailureReason::Auth => "auth",
            FailureReason::ModelNotFound => "model_not_found",
            FailureReason::Overloaded => "overloaded",
            FailureReason::ServerError => "server_error",
            FailureReason::Timeout => "timeout",
            FailureReason::Connection => "connection",
            FailureReason::InvalidResponse => "invalid_response",
            FailureReason::ContextOverflow => "context_overflow",
            FailureReason::PayloadTooLarge => "payload_too_large",
            FailureReason::ContentPolicy => "content_policy",
            FailureReason::InvalidRequest => "invalid_request",
            FailureReason::Unknown => "unknown",
            FailureReason::Internal => "internal",
        }
    }

    /// Whether the failure may pass by itself, so a later attempt could succeed (what the
    /// report calls `retryable`). The policy retries only these, and among them timeouts and
    /// connection failures only when they are not in `eager_on`.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FailureReason::RateLimit
                | FailureReason::Overloaded
                | FailureReason::ServerError
                | FailureReason::InvalidResponse
                | FailureReason::Timeout
                | FailureReason::Connection
        )
    }

    /// Whether the failure belongs to the key rather than the backend: another key of the
    /// same backend may succeed, and health marks the credential's scope.
    pub fn is_credential_problem(self) -> bool {
        matches!(
            self,
            FailureReason::RateLimit | FailureReason::Quota | FailureReason::Auth
        )
    }

    pub fn blame(self) -> Blame {
        match self {
            FailureReason::ContextOverflow
            | FailureReason::PayloadTooLarge
            | FailureReason::ContentPolicy
            | FailureReason::InvalidRequest => Blame::Client,
            FailureReason::Internal => Blame::Gateway,
            _ => Blame::Upstream,
        }
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of our own clocks ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    Connect,
    FirstToken,
    Stall,
    Deadline,
}

impl TimeoutKind {
    pub fn describe(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connect timeout",
            TimeoutKind::FirstToken => "no content before ttft_timeout",
            TimeoutKind::Stall => "stream stalled longer than stall_timeout",
            TimeoutKind::Deadline => "request deadline reached",
        }
    }
}

/// A classified failure: the reason, a short human detail, and any Retry-After the upstream set.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub reason: FailureReason,
    pub detail: String,
    pub retry_after: Option<Duration>,
}
