//! Responses state kept by one provider: which backend holds which stored response.
//!
//! A Responses request with `previous_response_id` continues a response that one provider
//! stored; no other provider can resolve it. The gateway remembers, for every response it
//! served from a request that did not say `store: false`, the backend identity that holds it
//! (a bounded map, idle TTL `health.session_ttl`, `health.max_tracked` entries). A request
//! that continues a known response is only sent to entries of that identity: if none of them
//! can serve it, the client gets the exhaustion report naming the backend that holds the state
//! — a clear error, never a wrong answer from a backend that never saw the conversation. An
//! id the gateway does not know (stored before a restart, or through another replica) goes
//! down the chain as usual, and a backend that does not have it answers with its own 4xx
//! (`previous_response_not_found`), which is returned to the client unchanged.
//! Clients that resend the full input with `store: false` (Codex CLI) fail over freely.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::sessions::BoundedMap;
use super::ScopeId;

pub use crate::dialect::responses::MAX_RESPONSE_ID_LEN;

pub struct StoredResponses {
    /// Response id → the backend scope (identity) that holds it.
    homes: Mutex<BoundedMap<Box<str>, ScopeId>>,
}

impl StoredResponses {
    pub fn new(cap: usize, ttl: Duration) -> StoredResponses {
        StoredResponses {
            homes: Mutex::new(BoundedMap::new(cap, ttl)),
        }
    }

    pub fn remember(&self, response_id: &str, home: ScopeId, now: Instant) {
        if response_id.is_empty() || response_id.len() > MAX_RESPONSE_ID_LEN {
            return;
        }
        let mut homes = self.homes.lock().unwrap_or_else(|e| e.into_inner());
        *homes.entry(response_id.into(), now, || home) = home;
    }

    /// A copy for a reloaded config, scope ids mapped by `scope` (responses whose backend is
    /// gone are forgotten).
    pub fn reloaded(&self, scope: impl Fn(ScopeId) -> Option<ScopeId>) -> StoredResponses {
        let mut homes = self.homes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        homes.retain_values(|_, id| match scope(*id) {
            Some(n) => {
                *id = n;
                true
            }
            None => false,
        });
        StoredResponses {
            homes: Mutex::new(homes),
        }
    }

    /// The backend scope holding `response_id`, when the gateway served it.
    pub fn home(&self, response_id: &str, now: Instant) -> Option<ScopeId> {
        let mut homes = self.homes.lock().unwrap_or_else(|e| e.into_inner());
        homes.get_mut(&Box::from(response_id), now).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remembers_where_a_response_is_stored_bounded_and_for_a_while() {
        let s = StoredResponses::new(2, Duration::from_secs(60));
        let t = Instant::now();
        s.remember("resp_1", ScopeId(3), t);
        s.remember("resp_2", ScopeId(4), t);
        assert_eq!(s.home("resp_1", t), Some(ScopeId(3)));
        s.remember("resp_3", ScopeId(5), t); // evicts resp_2, the least recently used
        assert_eq!(s.home("resp_2", t), None);
        assert_eq!(
            s.home("resp_1", t + Duration::from_secs(61)),
            None,
            "idle entries expire"
        );
        s.remember(&"x".repeat(MAX_RESPONSE_ID_LEN + 1), ScopeId(1), t);
        assert_eq!(s.home(&"x".repeat(MAX_RESPONSE_ID_LEN + 1), t), None);
    }
}
