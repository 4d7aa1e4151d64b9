//! Per-session memory: the turn exclusion table and sticky sessions.
//!
//! Both are bounded maps with an idle TTL and least-recently-used eviction, so a flood of
//! distinct session ids costs a fixed amount of memory. Requests without a session id are not
//! tracked at all (no shared "" bucket).
//!
//! With a shared store, the changes that decide where a session's next request goes (a scope
//! newly excluded for a turn, a sticky entry that moved) are `try_send`ed to the store's task,
//! which publishes them to the other replicas ([`super::redis_sessions`]); what they publish
//! comes back through the `apply_remote_*` methods, which never publish again. Repeating a
//! change that is already known sends nothing, so the traffic follows failures and failovers,
//! not requests.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{RemoteOp, ScopeId};

/// A map with an idle TTL and an entry cap; the least recently touched entry goes first.
/// Recency is kept in a queue with lazy deletion: a touch pushes a new marker, and stale
/// markers are skipped when popped, so every operation is amortized O(1).
#[derive(Clone)]
pub struct BoundedMap<K, V> {
    /// Value, last touch, and the generation of its newest marker in `order`.
    entries: HashMap<K, (V, Instant, u64)>,
    order: VecDeque<(K, u64)>,
    generation: u64,
    cap: usize,
    ttl: Duration,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    pub fn new(cap: usize, ttl: Duration) -> Self {
        BoundedMap {
            entries: HashMap::new(),
            order: VecDeque::new(),
            generation: 0,
            cap: cap.max(1),
            ttl,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps the entries `f` keeps (it may change their values); recency and ages stay.
    pub fn retain_values(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain(|k, (v, _, _)| f(k, v));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn touch(&mut self, key: &K, now: Instant) {
        self.generation += 1;
        let g = self.generation;
        if let Some((_, t, gen)) = self.entries.get_mut(key) {
            *t = now;
            *gen = g;
            self.order.push_back((key.clone(), g));
            self.compact();
        }
    }

    /// The live value for `key`, refreshing its recency.
    pub fn get_mut(&mut self, key: &K, now: Instant) -> Option<&mut V> {
        self.expire(now);
        if !self.entries.contains_key(key) {
            return None;
        }
        self.touch(key, now);
        self.entries.get_mut(key).map(|(v, _, _)| v)
    }

    /// The value for `key`, inserting `make()` if absent; evicts as needed.
    pub fn entry(&mut self, key: K, now: Instant, make: impl FnOnce() -> V) -> &mut V {
        self.expire(now);
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= self.cap {
                self.evict_one();
            }
            self.entries.insert(key.clone(), (make(), now, 0));
        }
        self.touch(&key, now);
        &mut self.entries.get_mut(&key).expect("just inserted").0
    }

    fn is_live(&self, key: &K, gen: u64) -> bool {
        self.entries.get(key).is_some_and(|(_, _, g)| *g == gen)
    }

    fn evict_one(&mut self) {
        while let Some((k, g)) = self.order.pop_front() {
            if self.is_live(&k, g) {
                self.entries.remove(&k);
                return;
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((k, g)) = self.order.front() {
            match self.entries.get(k) {
                Some((_, t, gen)) if gen == g => {
                    if now.saturating_duration_since(*t) < self.ttl {
                        break;
                    }
                    let k = k.clone();
                    self.order.pop_front();
                    self.entries.remove(&k);
                }
                // A stale marker: the key was touched again later or is gone.
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Keeps the marker queue within a constant factor of the live entries.
    fn compact(&mut self) {
        if self.order.len() > 4 * self.cap + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(k, g)| entries.get(k).is_some_and(|(_, _, gen)| gen == g));
        }
    }
}

/// Identifies a client conversation. Built only when the request says which (see
/// [`crate::session`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub session: Box<str>,
    pub turn: Option<Box<str>>,
}

/// (session, turn).
type TurnKey = (Box<str>, Box<str>);
/// (session, route).
type StickyKey = (Box<str>, std::sync::Arc<str>);

/// Which scopes failed during each (session, turn), each session's current turn, and where
/// sticky sessions stay.
pub struct Sessions {
    turns: Mutex<BoundedMap<TurnKey, Vec<ScopeId>>>,
    /// The turn a session's latest main-loop call (or latest exclusion) belongs to: where its
    /// side calls (title, summary) go. Idle for `turn_ttl`, the turn is over.
    current: Mutex<BoundedMap<Box<str>, Box<str>>>,
    sticky: Mutex<BoundedMap<StickyKey, usize>>,
    /// The shared store's queue: changes to publish to the other replicas.
    share: Option<mpsc::Sender<RemoteOp>>,
}

impl Sessions {
    pub fn new(cap: usize, turn_ttl: Duration, session_ttl: Duration) -> Sessions {
        Sessions {
            turns: Mutex::new(BoundedMap::new(cap, turn_ttl)),
            current: Mutex::new(BoundedMap::new(cap, turn_ttl)),
            sticky: Mutex::new(BoundedMap::new(cap, session_ttl)),
            share: None,
        }
    }

    /// A copy for a reloaded config: scope ids mapped by `scope` (turn exclusions of scopes
    /// that are gone are dropped), sticky chain entries by `entry` (`None`: the session's route
    /// no longer has that backend and model, so it starts over). Shares nothing with `self`.
    pub fn reloaded(
        &self,
        scope: impl Fn(ScopeId) -> Option<ScopeId>,
        entry: impl Fn(&std::sync::Arc<str>, usize) -> Option<usize>,
    ) -> Sessions {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner()).clone();
        turns.retain_values(|_, ids| {
            *ids = ids.iter().filter_map(|id| scope(*id)).collect();
            !ids.is_empty()
        });
        let mut sticky = self
            .sticky
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        sticky.retain_values(|(_, route), e| match entry(route, *e) {
            Some(n) => {
                *e = n;
                true
            }
            None => false,
        });
        Sessions {
            turns: Mutex::new(turns),
            current: Mutex::new(
                self.current
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            ),
            sticky: Mutex::new(sticky),
            share: self.share.clone(),
        }
    }

    /// Publishes this replica's changes through the shared store's queue.
    pub fn shared_through(mut self, tx: mpsc::Sender<RemoteOp>) -> Sessions {
        self.share = Some(tx);
        self
    }

    fn publish(&self, op: impl FnOnce() -> RemoteOp) {
        if let Some(tx) = &self.share {
            // Full queue: the store is behind; this replica's own state still holds.
            let _ = tx.try_send(op());
        }
    }

    /// A main-loop call of `session` is in `turn`: the session's side calls join it.
    pub fn enter_turn(&self, session: &str, turn: &str, now: Instant) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let slot = current.entry(session.into(), now, || turn.into());
        if **slot != *turn {
            *slot = turn.into();
        }
    }

    /// The session's current turn, if it has one that is not over.
    pub fn current_turn(&self, session: &str, now: Instant) -> Option<Box<str>> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.get_mut(&Box::from(session), now).cloned()
    }

    fn turn_key(key: &SessionKey) -> Option<TurnKey> {
        key.turn.as_ref().map(|t| (key.session.clone(), t.clone()))
    }

    /// Scopes excluded for this turn (failed earlier in it).
    pub fn excluded(&self, key: &SessionKey, now: Instant) -> Vec<ScopeId> {
        let Some(k) = Self::turn_key(key) else {
            return Vec::new();
        };
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.get_mut(&k, now).cloned().unwrap_or_default()
    }

    /// A scope failed in this turn: excluded for the rest of it, here and (shared) on every
    /// replica.
    pub fn exclude(&self, key: &SessionKey, scope: ScopeId, now: Instant) {
        let Some(turn) = &key.turn else {
            return;
        };
        if self.exclude_here(&key.session, turn, scope, now) {
            self.publish(|| RemoteOp::Excluded {
                session: key.session.clone(),
                turn: turn.clone(),
                scope,
            });
        }
    }

    /// Another replica excluded `scope` for this turn: the same as [`exclude`](Self::exclude),
    /// without publishing it again.
    pub fn apply_remote_exclusion(&self, session: &str, turn: &str, scope: ScopeId, now: Instant) {
        self.exclude_here(session, turn, scope, now);
    }

    /// True when the scope was not excluded for the turn yet.
    fn exclude_here(&self, session: &str, turn: &str, scope: ScopeId, now: Instant) -> bool {
        // A failure makes its turn the session's current one, so the side calls that follow it
        // (on this replica or, shared, on another) avoid the scope.
        self.enter_turn(session, turn, now);
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        let list = turns.entry((session.into(), turn.into()), now, Vec::new);
        if list.contains(&scope) {
            return false;
        }
        list.push(scope);
        true
    }

    pub fn sticky_entry(
        &self,
        key: &SessionKey,
        route: &std::sync::Arc<str>,
        now: Instant,
    ) -> Option<usize> {
        let mut sticky = self.sticky.lock().unwrap_or_else(|e| e.into_inner());
        sticky
            .get_mut(&(key.session.clone(), route.clone()), now)
            .copied()
    }

    /// The session stays on chain entry `entry` of `route`, here and (shared, when it changed)
    /// on every replica.
    pub fn set_sticky(
        &self,
        key: &SessionKey,
        route: &std::sync::Arc<str>,
        entry: usize,
        now: Instant,
    ) {
        if self.set_sticky_here(&key.session, route, entry, now) {
            self.publish(|| RemoteOp::Sticky {
                session: key.session.clone(),
                route: route.clone(),
                entry,
            });
        }
    }

    /// Another replica moved the session: the same as [`set_sticky`](Self::set_sticky), without
    /// publishing it again.
    pub fn apply_remote_sticky(
        &self,
        session: &str,
        route: &std::sync::Arc<str>,
        entry: usize,
        now: Instant,
    ) {
        self.set_sticky_here(session, route, entry, now);
    }

    /// True when the session's entry changed (or it had none).
    fn set_sticky_here(
        &self,
        session: &str,
        route: &std::sync::Arc<str>,
        entry: usize,
        now: Instant,
    ) -> bool {
        let mut sticky = self.sticky.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        let slot = sticky.entry((session.into(), route.clone()), now, || {
            changed = true;
            entry
        });
        if *slot != entry {
            *slot = entry;
            changed = true;
        }
        changed
    }

    pub fn tracked(&self) -> (usize, usize) {
        (
            self.turns.lock().unwrap_or_else(|e| e.into_inner()).len(),
            self.sticky.lock().unwrap_or_else(|e| e.into_inner()).len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bounded_map_evicts_least_recently_used_and_expires_idle_entries() {
        let mut m: BoundedMap<u32, u32> = BoundedMap::new(3, Duration::from_secs(10));
        let t = Instant::now();
        for k in 0..3 {
            m.entry(k, t, || k);
        }
        m.get_mut(&0, t); // 0 is now the most recent
        m.entry(3, t, || 3); // evicts 1
        assert!(m.get_mut(&1, t).is_none());
        assert!(m.get_mut(&0, t).is_some());
        assert_eq!(m.len(), 3);
        let later = t + Duration::from_secs(11);
        assert!(m.get_mut(&0, later).is_none(), "idle entries expire");
        assert!(m.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn stays_bounded_under_a_flood_of_distinct_sessions() {
        let s = Sessions::new(1000, Duration::from_secs(60), Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..100_000 {
            let key = SessionKey {
                session: format!("s{i}").into(),
                turn: Some("t".into()),
            };
            s.exclude(&key, ScopeId(1), now);
            s.set_sticky(&key, &"r".into(), 1, now);
        }
        assert_eq!(s.tracked(), (1000, 1000));
        let turns = s.turns.lock().unwrap();
        assert!(turns.order.len() <= 4 * 1000 + 64);
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_remembers_what_failed_in_it_and_no_session_means_no_tracking() {
        let s = Sessions::new(10, Duration::from_secs(60), Duration::from_secs(60));
        let now = Instant::now();
        let key = SessionKey {
            session: "s".into(),
            turn: Some("1".into()),
        };
        s.exclude(&key, ScopeId(4), now);
        assert_eq!(s.excluded(&key, now), vec![ScopeId(4)]);
        let next_turn = SessionKey {
            session: "s".into(),
            turn: Some("2".into()),
        };
        assert!(s.excluded(&next_turn, now).is_empty());
        let no_turn = SessionKey {
            session: "s".into(),
            turn: None,
        };
        s.exclude(&no_turn, ScopeId(1), now);
        assert_eq!(s.tracked().0, 1);
    }
}
