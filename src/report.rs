//! The exhausted-chain report: one entry per chain entry, in chain order, and a deterministic
//! one-line summary that SDKs show as the error message.

use bytes::Bytes;
use serde::Serialize;
use serde_json::json;

use crate::classify::FailureReason;
use crate::config::{Config, Route};
use crate::dialect::Dialect;
use crate::failover::engine::{AttemptRecord, SkippedEntry};

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackendFailure {
    pub backend: String,
    pub api: &'static str,
    pub model: String,
    /// HTTP status of the last attempt, when there was one.
    pub status: Option<u16>,
    pub reason: Option<&'static str>,
    pub retryable: bool,
    pub attempts: u32,
    pub skipped: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub summary: String,
    pub failures: Vec<BackendFailure>,
    /// True when every attempted backend failed by timing out (the gateway answers 504).
    #[serde(skip)]
    pub all_timeouts: bool,
}

fn retryable(reason: FailureReason) -> bool {
    matches!(
        reason,
        FailureReason::RateLimit
            | FailureReason::Overloaded
            | FailureReason::ServerError
            | FailureReason::InvalidResponse
            | FailureReason::Timeout
            | FailureReason::Connection
    )
}

pub fn build(
    config: &Config,
    route: &Route,
    records: &[AttemptRecord],
    skipped: &[SkippedEntry],
) -> Report {
    let mut failures = Vec::with_capacity(route.chain.len());
    for (idx, entry) in route.chain.iter().enumerate() {
        let backend = config.backend(entry.backend);
        let tried: Vec<&AttemptRecord> = records.iter().filter(|r| r.entry == idx).collect();
        let base = BackendFailure {
            backend: backend.name.to_string(),
            api: backend.api.as_str(),
            model: entry.model.to_string(),
            status: None,
            reason: None,
            retryable: false,
            attempts: tried.len() as u32,
            skipped: false,
            detail: String::new(),
        };
        let f = match (tried.last(), skipped.iter().find(|s| s.entry == idx)) {
            (Some(last), _) => BackendFailure {
                status: last.status,
                reason: Some(last.reason.as_str()),
                retryable: retryable(last.reason),
                detail: last.detail.clone(),
                ..base
            },
            (None, Some(s)) => match &s.last {
                // Skipped for health: reason and detail are those of its last failure.
                Some((reason, detail)) => BackendFailure {
                    skipped: true,
                    reason: Some(reason.as_str()),
                    retryable: retryable(*reason),
                    detail: format!("{}; last failure: {detail}", s.why),
                    ..base
                },
                None => BackendFailure {
                    skipped: true,
                    detail: s.why.clone(),
                    ..base
                },
            },
            (None, None) => BackendFailure {
                skipped: true,
                detail: "not attempted: the request deadline was reached first".into(),
                ..base
            },
        };
        failures.push(f);
    }
    let all_timeouts =
        !records.is_empty() && records.iter().all(|r| r.reason == FailureReason::Timeout);
    Report {
        summary: summary(&failures),
        failures,
        all_timeouts,
    }
}

fn summary(failures: &[BackendFailure]) -> String {
    let parts: Vec<String> = failures
        .iter()
        .map(|f| {
            let mut s = format!("{} ({})", f.backend, f.model);
            if f.skipped {
                s.push_str(" skipped");
            } else {
                if let Some(r) = f.reason {
                    s.push(' ');
                    s.push_str(r);
                }
                if let Some(st) = f.status {
                    s.push_str(&format!(" {st}"));
                }
                if f.attempts > 1 {
                    s.push_str(&format!(" after {} attempts", f.attempts));
                }
            }
            s
        })
        .collect();
    let n = failures.len();
    let noun = if n == 1 { "backend" } else { "backends" };
    format!("All {n} {noun} failed: {}", parts.join("; "))
}

/// The 502/504 body in the client's dialect, so SDKs show the summary as the error message.
pub fn error_body(dialect: Dialect, report: &Report) -> Bytes {
    let v = match dialect {
        Dialect::OpenAi => json!({"error": {
            "message": report.summary,
            "type": "fallback_exhausted",
            "param": null,
            "code": "fallback_exhausted",
            "failures": report.failures,
        }}),
        Dialect::Anthropic => json!({
            "type": "error",
            "error": {"type": "api_error", "message": report.summary},
            "failures": report.failures,
        }),
    };
    Bytes::from(v.to_string())
}

/// The stream error event for a chain exhausted after the response headers went out.
pub fn stream_error_event(dialect: Dialect, report: &Report) -> Bytes {
    let v = match dialect {
        Dialect::OpenAi => json!({"error": {
            "message": report.summary,
            "type": "fallback_exhausted",
            "code": "fallback_exhausted",
            "error_type": "fallback_exhausted",
            "failures": report.failures,
        }}),
        Dialect::Anthropic => json!({
            "type": "error",
            "error": {"type": "api_error", "message": report.summary, "error_type": "fallback_exhausted"},
            "failures": report.failures,
        }),
    };
    match dialect {
        Dialect::OpenAi => Bytes::from(format!("data: {v}\n\n")),
        Dialect::Anthropic => Bytes::from(format!("event: error\ndata: {v}\n\n")),
    }
}
