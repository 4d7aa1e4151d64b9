//! The exhausted-chain report: one entry per chain entry, in chain order, and a deterministic
//! one-line summary that SDKs show as the error message.
//!
//! This module owns the report's data; the bytes on the wire (each dialect's error body and
//! stream event, the problem document) are written by [`crate::dialect`].

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use crate::config::{Config, Route};
use crate::dialect::{self, Dialect, ErrorKind};
use crate::failover::outcome::{AttemptRecord, SkippedEntry};
use crate::failure::FailureReason;

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

/// Whether a later attempt could succeed (one definition, shared with the policy).
pub fn retryable(reason: FailureReason) -> bool {
    reason.is_transient()
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
    dialect::exhausted_body(dialect, &report.summary, &report.failures)
}

/// The stream error event for a chain exhausted after the response headers went out.
pub fn stream_error_event(dialect: Dialect, report: &Report) -> Bytes {
    dialect::exhausted_event(dialect, &report.summary, &report.failures)
}

/// RFC 9457 problem document for clients that `Accept: application/problem+json`.
pub fn problem_body(report: &Report, status: StatusCode, request_id: &str) -> Bytes {
    dialect::exhausted_problem(status, &report.summary, request_id, &report.failures)
}

/// The error event that ends a stream whose backend failed after content reached the client:
/// `error_type` is the reason that cut it, `failures` lists that backend's failure.
pub fn cut_stream_event(dialect: Dialect, failure: BackendFailure) -> Bytes {
    let reason = failure.reason.unwrap_or("unknown");
    let summary = format!(
        "The stream from {} ({}) failed after the response started: {reason}: {}",
        failure.backend, failure.model, failure.detail
    );
    let kind = FailureReason::ALL
        .into_iter()
        .find(|r| r.as_str() == reason)
        .map_or(ErrorKind::Upstream, ErrorKind::of_failure);
    dialect::cut_stream_event(dialect, kind, reason, &summary, &[failure])
}

/// One backend's entry for a stream cut after commit.
pub fn cut_stream_failure(
    config: &Config,
    backend: crate::config::BackendId,
    model: &str,
    attempts: u32,
    failure: &crate::failure::Classified,
) -> BackendFailure {
    let b = config.backend(backend);
    BackendFailure {
        backend: b.name.to_string(),
        api: b.api.as_str(),
        model: model.to_string(),
        status: Some(200),
        reason: Some(failure.reason.as_str()),
        retryable: retryable(failure.reason),
        attempts,
        skipped: false,
        detail: failure.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BackendId;
    use std::time::Duration;

    fn config() -> Config {
        let yaml = "backends:\n  a: { api: anthropic_messages, base_url: \"http://a\" }\n  b: { api: openai_chat, base_url: \"http://b/v1\" }\n  c: { api: anthropic_messages, base_url: \"http://c\" }\nroutes:\n  r: { chain: [ { backend: a, model: m-a }, { backend: b, model: m-b }, { backend: c, model: m-c } ] }\n";
        Config::from_yaml(yaml, "t.yaml", &|_| None).unwrap()
    }

    fn rec(
        entry: usize,
        reason: FailureReason,
        status: Option<u16>,
        detail: &str,
    ) -> AttemptRecord {
        AttemptRecord {
            entry,
            backend: BackendId(entry),
            reason,
            status,
            detail: detail.into(),
            elapsed: Duration::from_millis(1),
        }
    }

    #[test]
    fn one_entry_per_chain_entry_in_order_with_nested_attempts() {
        let c = config();
        let route = &c.routes["r"];
        let records = [
            rec(0, FailureReason::Overloaded, Some(529), "Overloaded"),
            rec(0, FailureReason::Overloaded, Some(529), "Overloaded"),
            rec(0, FailureReason::ServerError, Some(500), "boom"),
            rec(
                2,
                FailureReason::Timeout,
                None,
                "no content before ttft_timeout (1s)",
            ),
        ];
        let skipped = [SkippedEntry {
            entry: 1,
            backend: BackendId(1),
            why: "speaks openai_chat".into(),
            last: None,
        }];
        let rep = build(&c, route, &records, &skipped);
        assert_eq!(rep.failures.len(), 3);
        assert_eq!(rep.failures[0].attempts, 3);
        assert_eq!(
            rep.failures[0].reason,
            Some("server_error"),
            "the last attempt's reason"
        );
        assert_eq!(rep.failures[0].status, Some(500));
        assert!(rep.failures[1].skipped);
        assert_eq!(rep.failures[2].reason, Some("timeout"));
        assert_eq!(rep.failures[2].status, None);
        assert_eq!(
            rep.summary,
            "All 3 backends failed: a (m-a) server_error 500 after 3 attempts; b (m-b) skipped; c (m-c) timeout"
        );
        assert!(!rep.all_timeouts);
        // Deterministic: same failures, same bytes.
        let again = build(&c, route, &records, &skipped);
        assert_eq!(
            error_body(Dialect::OpenAi, &rep),
            error_body(Dialect::OpenAi, &again)
        );
        assert_eq!(
            error_body(Dialect::Anthropic, &rep),
            error_body(Dialect::Anthropic, &again)
        );
    }

    #[test]
    fn every_reason_reports_under_its_name() {
        let c = config();
        let route = &c.routes["r"];
        for reason in FailureReason::ALL {
            let rep = build(&c, route, &[rec(0, reason, Some(500), "x")], &[]);
            assert_eq!(rep.failures[0].reason, Some(reason.as_str()));
            assert_eq!(rep.failures[0].retryable, retryable(reason));
        }
        let all_timeouts = build(
            &c,
            route,
            &[
                rec(0, FailureReason::Timeout, None, "t"),
                rec(2, FailureReason::Timeout, None, "t"),
            ],
            &[],
        );
        assert!(all_timeouts.all_timeouts);
    }
}
