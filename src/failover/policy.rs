//! The retry/failover decision: one pure function of what happened and the route's policy.
//!
//! The engine never inspects statuses or reasons itself; it asks [`decide`] and acts. Keeping
//! this pure (randomness comes in as `jitter`) lets one table test pin every rule down.

use std::time::Duration;

use crate::config::FailoverPolicy;
use crate::failure::{Blame, FailureReason};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try the same backend again after waiting `after`.
    RetrySame { after: Duration },
    /// Re-read the credential's key file; if the key changed, retry with it at once,
    /// otherwise decide again without this option.
    ReloadKey,
    /// Retry at once on the same backend with its credential number `.0`.
    NextCredential(usize),
    /// Move to the next chain entry now.
    Failover,
    /// The client must fix the request: hand the upstream's answer back unchanged.
    ReturnToClient,
}

/// What the engine knows about the attempt that just failed.
#[derive(Debug, Clone, Copy)]
pub struct AttemptFacts {
    pub reason: FailureReason,
    pub retry_after: Option<Duration>,
    /// Retries already made on this backend for this request (0 after the first attempt).
    pub retries_done: u32,
    /// The credential's key comes from a file not yet re-read for this request.
    pub key_reloadable: bool,
    /// The backend's next usable credential: not tried for this request, not cooling down,
    /// not excluded for the turn.
    pub next_credential: Option<usize>,
}

/// Decides what to do after a failed attempt. `jitter` is uniform in [0, 1).
///
/// In order: the client's own errors go back to it; credential problems are solved on the
/// same backend first (a rotated key file is re-read once, then the pool's next usable key is
/// tried, with no wait); transient failures are retried within `retries` and
/// `max_retry_after`; everything else fails over.
pub fn decide(facts: &AttemptFacts, policy: &FailoverPolicy, jitter: f64) -> Decision {
    use FailureReason::*;
    if facts.reason.blame() == Blame::Client {
        return Decision::ReturnToClient;
    }
    if facts.reason == Auth && facts.key_reloadable {
        return Decision::ReloadKey;
    }
    if let (true, Some(next)) = (facts.reason.is_credential_problem(), facts.next_credential) {
        return Decision::NextCredential(next);
    }
    let retryable = match facts.reason {
        // A hung or unreachable backend is not worth a second wait by default.
        Timeout => !policy.eager_on_timeout,
        Connection => !policy.eager_on_connection,
        // Waiting cannot fix a key, a bill or a model name.
        r => r.is_transient(),
    };
    if !retryable || facts.retries_done >= policy.retries {
        return Decision::Failover;
    }
    match facts.retry_after {
        Some(wait) if wait > policy.max_retry_after => Decision::Failover,
        Some(wait) => Decision::RetrySame { after: wait },
        None => Decision::RetrySame {
            after: backoff(facts.retries_done + 1, policy, jitter),
        },
    }
}

/// Why a same-backend retry that [`decide`] wanted is turned into a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryVeto {
    /// The wait would end at or past the request's deadline.
    PastDeadline,
    /// The backend's scope is cooling down beyond the end of the wait: sleeping would only
    /// delay the failover.
    CoolingPastTheWait,
}

/// Checks a retry's wait against the time left and the scope's cooldown (`cooling_for`: how
/// long the attempt's scopes stay out, if they are cooling). The retry budget is checked
/// after this, by the engine, because withdrawing from it is a side effect.
pub fn veto_retry(
    after: Duration,
    until_deadline: Duration,
    cooling_for: Option<Duration>,
) -> Option<RetryVeto> {
    if after >= until_deadline {
        return Some(RetryVeto::PastDeadline);
    }
    if cooling_for.is_some_and(|c| c > after) {
        return Some(RetryVeto::CoolingPastTheWait);
    }
    None
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base × 2^(retry−1))).
pub fn backoff(retry: u32, policy: &FailoverPolicy, jitter: f64) -> Duration {
    let exp = policy
        .backoff_base
        .saturating_mul(1u32 << retry.saturating_sub(1).min(20));
    exp.min(policy.backoff_max).mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureReason::*;

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn decision_table() {
        let p = FailoverPolicy {
            retries: 2,
            max_retry_after: Duration::from_secs(10),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(8),
            ..FailoverPolicy::default()
        };
        let half = 0.5;
        let retry = |ms: u64| Decision::RetrySame {
            after: Duration::from_millis(ms),
        };
        // (reason, retry_after, retries_done, expected)
        let table: &[(FailureReason, Option<Duration>, u32, Decision)] = &[
            (RateLimit, secs(1), 0, retry(1000)),
            (RateLimit, secs(120), 0, Decision::Failover),
            (RateLimit, None, 0, retry(50)),
            (RateLimit, secs(1), 2, Decision::Failover),
            (Overloaded, None, 0, retry(50)),
            (Overloaded, None, 1, retry(100)),
            (Overloaded, None, 2, Decision::Failover),
            (Overloaded, secs(11), 0, Decision::Failover),
            (ServerError, None, 0, retry(50)),
            (InvalidResponse, None, 0, retry(50)),
            (Timeout, None, 0, Decision::Failover),
            (Connection, None, 0, Decision::Failover),
            (Auth, None, 0, Decision::Failover),
            (Quota, secs(1), 0, Decision::Failover),
            (ModelNotFound, None, 0, Decision::Failover),
            (Unknown, None, 0, Decision::Failover),
            (Internal, None, 0, Decision::Failover),
            (ContextOverflow, None, 0, Decision::ReturnToClient),
            (PayloadTooLarge, None, 0, Decision::ReturnToClient),
            (ContentPolicy, None, 0, Decision::ReturnToClient),
            (InvalidRequest, None, 0, Decision::ReturnToClient),
        ];
        for (reason, retry_after, retries_done, want) in table {
            let facts = AttemptFacts {
                reason: *reason,
                retry_after: *retry_after,
                retries_done: *retries_done,
                key_reloadable: false,
                next_credential: None,
            };
            assert_eq!(
                decide(&facts, &p, half),
                *want,
                "{reason} {retry_after:?} {retries_done}"
            );
        }
    }

    #[test]
    fn eager_failover_on_timeout_and_connection_can_be_turned_off() {
        let p = FailoverPolicy {
            eager_on_timeout: false,
            eager_on_connection: false,
            ..FailoverPolicy::default()
        };
        for reason in [Timeout, Connection] {
            let facts = AttemptFacts {
                reason,
                retry_after: None,
                retries_done: 0,
                key_reloadable: false,
                next_credential: None,
            };
            assert!(matches!(
                decide(&facts, &p, 0.0),
                Decision::RetrySame { .. }
            ));
        }
    }

    #[test]
    fn zero_retries_means_fail_over_at_once() {
        let p = FailoverPolicy {
            retries: 0,
            ..FailoverPolicy::default()
        };
        let facts = AttemptFacts {
            reason: Overloaded,
            retry_after: None,
            retries_done: 0,
            key_reloadable: false,
            next_credential: None,
        };
        assert_eq!(decide(&facts, &p, 0.5), Decision::Failover);
    }

    #[test]
    fn backoff_grows_exponentially_under_the_cap_with_full_jitter() {
        let p = FailoverPolicy {
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
            ..FailoverPolicy::default()
        };
        assert_eq!(backoff(1, &p, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(2, &p, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(3, &p, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(10, &p, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(40, &p, 1.0), Duration::from_secs(8));
        assert_eq!(backoff(3, &p, 0.0), Duration::ZERO);
        assert_eq!(backoff(3, &p, 0.25), Duration::from_millis(250));
    }

    /// Found by a hostile upstream: the engine slept its backoff, then found the scope cooling
    /// and failed over (5.0 s where 2.5 s was due).
    #[test]
    fn a_retry_is_vetoed_past_the_deadline_or_into_a_longer_cooldown() {
        let s = Duration::from_secs;
        let table: &[(Duration, Duration, Option<Duration>, Option<RetryVeto>)] = &[
            (s(2), s(10), None, None),
            (s(2), s(2), None, Some(RetryVeto::PastDeadline)),
            (s(2), s(1), None, Some(RetryVeto::PastDeadline)),
            (
                s(2),
                s(10),
                Some(s(30)),
                Some(RetryVeto::CoolingPastTheWait),
            ),
            (s(2), s(10), Some(s(2)), None),
            (s(2), s(10), Some(s(1)), None),
            (
                Duration::ZERO,
                s(10),
                Some(Duration::from_millis(1)),
                Some(RetryVeto::CoolingPastTheWait),
            ),
            (s(20), s(10), Some(s(30)), Some(RetryVeto::PastDeadline)),
        ];
        for (after, left, cooling, want) in table {
            assert_eq!(
                veto_retry(*after, *left, *cooling),
                *want,
                "{after:?} {left:?} {cooling:?}"
            );
        }
    }

    /// Credential problems are solved on the same backend before any failover; other failures
    /// never touch the key. (These rules lived inside the engine, untested.)
    #[test]
    fn credential_decisions() {
        let p = FailoverPolicy::default();
        // (reason, key_reloadable, next_credential, retries_done, expected)
        let table: &[(FailureReason, bool, Option<usize>, u32, Decision)] = &[
            (Auth, true, Some(1), 0, Decision::ReloadKey),
            (Auth, false, Some(1), 0, Decision::NextCredential(1)),
            (Auth, false, None, 0, Decision::Failover),
            (RateLimit, true, Some(2), 0, Decision::NextCredential(2)),
            (RateLimit, false, Some(1), 5, Decision::NextCredential(1)),
            (Quota, false, Some(1), 0, Decision::NextCredential(1)),
            (Quota, false, None, 0, Decision::Failover),
            (
                Overloaded,
                true,
                Some(1),
                0,
                Decision::RetrySame {
                    after: Duration::ZERO,
                },
            ),
            (ModelNotFound, true, Some(1), 0, Decision::Failover),
            (Connection, false, Some(1), 0, Decision::Failover),
            (InvalidRequest, true, Some(1), 0, Decision::ReturnToClient),
            (ContextOverflow, false, Some(1), 0, Decision::ReturnToClient),
        ];
        for (reason, key_reloadable, next_credential, retries_done, want) in table {
            let facts = AttemptFacts {
                reason: *reason,
                retry_after: None,
                retries_done: *retries_done,
                key_reloadable: *key_reloadable,
                next_credential: *next_credential,
            };
            assert_eq!(
                decide(&facts, &p, 0.0),
                *want,
                "{reason} reloadable={key_reloadable} next={next_credential:?}"
            );
        }
    }

    #[test]
    fn the_report_and_the_policy_share_one_definition_of_transient() {
        let p = FailoverPolicy {
            eager_on_timeout: false,
            eager_on_connection: false,
            retries: 1,
            ..FailoverPolicy::default()
        };
        for reason in FailureReason::ALL {
            let facts = AttemptFacts {
                reason,
                retry_after: None,
                retries_done: 0,
                key_reloadable: false,
                next_credential: None,
            };
            let retried = matches!(decide(&facts, &p, 0.0), Decision::RetrySame { .. });
            assert_eq!(retried, crate::report::retryable(reason), "{reason}");
        }
    }
}
