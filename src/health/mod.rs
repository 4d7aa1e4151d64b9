//! The backend health registry: who is broken, for how long, and who may probe.
//!
//! Health is tracked by identity (api + normalized base_url), not by backend name or model
//! string, in three kinds of scope: the whole backend, one model on it, one credential on it.
//! Every scope is known from the config, so the registry is a fixed vector with one small lock
//! per scope (sharded by construction) and an atomic "all clear" flag read without any lock on
//! the hot path. Recording an outcome is a few nanoseconds of in-memory work; anything slow
//! (Redis) happens on a background task fed by a bounded channel, so health bookkeeping never
//! makes a request wait.
//!
//! With a shared store the registry also keeps, per scope, the failures not yet added to the
//! cluster-wide streak and whether that streak may be non-zero (both atomics the store's task
//! reads each interval), and gates the half-open probe on the cluster's probe lease.

pub mod redis_sessions;
pub mod redis_store;
pub mod sessions;
pub mod stored;
pub mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

pub use state::{Admission, BackendState, CooldownPolicy, ProbeGate, ScopeState, Transition};

use crate::config::{BackendId, Config, HealthConfig};
use crate::dialect::Dialect;
use crate::failure::{Blame, FailureReason};

/// Where a backend lives: its dialect and its normalized base URL. Two backend names with the
/// same identity share health.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendIdentity(Arc<str>);

impl BackendIdentity {
    /// Scheme and host lowercased, default port made explicit, trailing slash removed.
    pub fn new(api: Dialect, base_url: &reqwest::Url) -> BackendIdentity {
        let scheme = base_url.scheme().to_ascii_lowercase();
        let host = base_url.host_str().unwrap_or("").to_ascii_lowercase();
        let port = base_url.port_or_known_default().unwrap_or(0);
        let path = base_url.path().trim_end_matches('/');
        BackendIdentity(format!("{}|{scheme}://{host}:{port}{path}", api.as_str()).into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What part of a backend a scope covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    Backend,
    Model { model: Arc<str> },
    Credential { credential: Arc<str> },
}

/// Index of a scope in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeId(pub u32);

#[derive(Debug)]
pub struct ScopeInfo {
    pub identity: BackendIdentity,
    pub scope: Scope,
    /// Configured backend names sharing this identity.
    pub backends: Vec<Arc<str>>,
    /// Stable key across replicas (Redis).
    pub key: String,
}

/// A health change, broadcast for alerts, metrics and the status page.
#[derive(Debug, Clone)]
pub struct HealthEvent {
    pub scope: ScopeId,
    pub kind: HealthEventKind,
    pub reason: Option<FailureReason>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthEventKind {
    Down { cooldown: Duration, ejection: u32 },
    Recovered,
}

/// Sent to the shared store's background task; never awaited by a request.
#[derive(Debug, Clone)]
pub enum RemoteOp {
    Ejected {
        key: String,
        until: SystemTime,
        ejections: u32,
    },
    /// Healthy again: the cooldown, the streak and the probe lease go, and the others heal.
    Recovered { key: String },
    /// A success after failures: the cluster-wide streak starts over.
    StreakReset { key: String },
    /// A scope newly excluded for a session's turn (published to the other replicas).
    Excluded {
        session: Box<str>,
        turn: Box<str>,
        scope: ScopeId,
    },
    /// A sticky session's chain entry changed (published to the other replicas).
    Sticky {
        session: Box<str>,
        route: Arc<str>,
        entry: usize,
    },
}

struct Slot {
    /// True while the scope is healthy and no remote cooldown is pending: the lock-free path.
    clear: AtomicBool,
    state: Mutex<ScopeState>,
    /// Shared store: failures recorded here and not yet added to the cluster streak.
    unpublished: AtomicU32,
    /// Shared store: the cluster streak may be non-zero, so a success must reset it.
    shared_streak: AtomicBool,
}

/// The scopes an attempt on one chain entry touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptScopes {
    pub backend: ScopeId,
    pub model: ScopeId,
    /// None for a keyless backend.
    pub credential: Option<ScopeId>,
}

impl AttemptScopes {
    pub fn all_ids(&self) -> impl Iterator<Item = ScopeId> {
        self.all()
    }

    fn all(&self) -> impl Iterator<Item = ScopeId> {
        [Some(self.backend), Some(self.model), self.credential]
            .into_iter()
            .flatten()
    }
}

/// Probe permits held by one attempt. Dropping it without a verdict releases them.
#[derive(Debug)]
pub struct Permit<'a> {
    registry: &'a HealthRegistry,
    scopes: AttemptScopes,
    probes: Vec<ScopeId>,
}

impl Permit<'_> {
    pub fn is_probe(&self) -> bool {
        !self.probes.is_empty()
    }
    pub fn scopes(&self) -> AttemptScopes {
        self.scopes
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        for id in self.probes.drain(..) {
            self.registry.lock(id).release_probe();
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScopeSnapshot {
    pub identity: String,
    #[serde(flatten)]
    pub scope: Scope,
    pub backends: Vec<String>,
    pub state: &'static str,
    /// Seconds until the cooldown ends, when cooling down.
    pub cooldown_remaining_s: Option<f64>,
    pub streak: u32,
    pub ejections: u32,
    pub successes: u64,
    pub failures: u64,
    pub last_reason: Option<&'static str>,
    pub last_detail: String,
}

pub struct HealthRegistry {
    config: HealthConfig,
    scopes: Vec<ScopeInfo>,
    slots: Vec<Slot>,
    backend_scope: Vec<ScopeId>,
    credential_scopes: Vec<Vec<ScopeId>>,
    model_scopes: HashMap<(BackendId, Arc<str>), ScopeId>,
    events: broadcast::Sender<HealthEvent>,
    remote: Option<mpsc::Sender<RemoteOp>>,
    /// Shared store reachable: half-open probes wait for the cluster's lease. False during an
    /// outage (set by the store's task), so probing falls back to this replica alone.
    store_up: AtomicBool,
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("scopes", &self.scopes.len())
            .finish()
    }
}

impl HealthRegistry {
    /// Builds every scope the config can touch. `remote` receives changes for a shared store.
    pub fn new(config: &Config, remote: Option<mpsc::Sender<RemoteOp>>) -> HealthRegistry {
        let mut scopes: Vec<ScopeInfo> = Vec::new();
        let mut index: HashMap<(BackendIdentity, Scope), ScopeId> = HashMap::new();
        let mut intern = |identity: &BackendIdentity, scope: Scope, backend: &Arc<str>| {
            let id = *index
                .entry((identity.clone(), scope.clone()))
                .or_insert_with(|| {
                    let key = match &scope {
                        Scope::Backend => format!("backend|{}", identity.as_str()),
                        Scope::Model { model } => format!("model|{}|{model}", identity.as_str()),
                        Scope::Credential { credential } => {
                            format!("credential|{}|{credential}", identity.as_str())
                        }
                    };
                    scopes.push(ScopeInfo {
                        identity: identity.clone(),
                        scope,
                        backends: Vec::new(),
                        key,
                    });
                    ScopeId(scopes.len() as u32 - 1)
                });
            let info = &mut scopes[id.0 as usize];
            if !info.backends.contains(backend) {
                info.backends.push(backend.clone());
            }
            id
        };
        let mut backend_scope = Vec::new();
        let mut credential_scopes = Vec::new();
        let mut identities = Vec::new();
        for b in &config.backends {
            let identity = BackendIdentity::new(b.api, &b.endpoint_base());
            backend_scope.push(intern(&identity, Scope::Backend, &b.name));
            credential_scopes.push(
                b.credentials
                    .iter()
                    .map(|c| {
                        intern(
                            &identity,
                            Scope::Credential {
                                credential: c.label.clone(),
                            },
                            &b.name,
                        )
                    })
                    .collect(),
            );
            identities.push(identity);
        }
        let mut model_scopes = HashMap::new();
        let mut route_names: Vec<&Arc<str>> = config.route_names.iter().collect();
        route_names.sort();
        for name in route_names {
            for entry in &config.routes[name].chain {
                let b = config.backend(entry.backend);
                let id = intern(
                    &identities[entry.backend.0],
                    Scope::Model {
                        model: entry.model.clone(),
                    },
                    &b.name,
                );
                model_scopes.insert((entry.backend, entry.model.clone()), id);
            }
        }
        let slots = scopes
            .iter()
            .map(|_| Slot {
                clear: AtomicBool::new(true),
                state: Mutex::new(ScopeState::default()),
                unpublished: AtomicU32::new(0),
                shared_streak: AtomicBool::new(false),
            })
            .collect();
        let (events, _) = broadcast::channel(1024);
        HealthRegistry {
            config: config.health.clone(),
            scopes,
            slots,
            backend_scope,
            credential_scopes,
            model_scopes,
            events,
            remote,
            store_up: AtomicBool::new(true),
        }
    }

    /// Who may probe a half-open scope now.
    fn probe_gate(&self) -> ProbeGate {
        if self.remote.is_some() && self.store_up.load(Ordering::Relaxed) {
            ProbeGate::Lease {
                fallback_after: self.config.redis_probe_lease,
            }
        } else {
            ProbeGate::Local
        }
    }

    /// The store's task reports whether Redis answers (probes fall back to local without it).
    pub fn set_store_up(&self, up: bool) {
        self.store_up.store(up, Ordering::Relaxed);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.events.subscribe()
    }

    pub fn scope_info(&self, id: ScopeId) -> &ScopeInfo {
        &self.scopes[id.0 as usize]
    }

    pub fn scope_count(&self) -> usize {
        self.scopes.len()
    }

    /// The same scopes, for the same backend names and ids, as `other`: a reloaded config can
    /// keep this registry (and everything keyed by its ids) as it is.
    pub fn same_layout(&self, other: &HealthRegistry) -> bool {
        self.scopes.len() == other.scopes.len()
            && self
                .scopes
                .iter()
                .zip(&other.scopes)
                .all(|(a, b)| a.key == b.key && a.backends == b.backends)
            && self.backend_scope == other.backend_scope
            && self.credential_scopes == other.credential_scopes
            && self.model_scopes == other.model_scopes
    }

    /// Carries health over a reload: each scope `old` also has (by key: identity and scope)
    /// takes its state; a probe in flight there stays `old`'s.
    pub fn adopt(&self, old: &HealthRegistry) {
        for (i, info) in self.scopes.iter().enumerate() {
            let Some(old_id) = old.id_of_key(&info.key) else {
                continue;
            };
            let mut state = old.lock(old_id).clone();
            state.probe_in_flight = false;
            let id = ScopeId(i as u32);
            self.set_clear(id, &state);
            *self.lock(id) = state;
        }
    }

    /// This registry's id for a scope key.
    pub fn id_of_key(&self, key: &str) -> Option<ScopeId> {
        self.scopes
            .iter()
            .position(|s| s.key == key)
            .map(|i| ScopeId(i as u32))
    }

    fn lock(&self, id: ScopeId) -> std::sync::MutexGuard<'_, ScopeState> {
        self.slots[id.0 as usize]
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn set_clear(&self, id: ScopeId, state: &ScopeState) {
        self.slots[id.0 as usize]
            .clear
            .store(state.cooldown_until.is_none(), Ordering::Release);
    }

    /// The scopes an attempt on `backend` for `model` with credential `credential` touches.
    pub fn scopes_for(
        &self,
        backend: BackendId,
        model: &Arc<str>,
        credential: Option<usize>,
    ) -> AttemptScopes {
        AttemptScopes {
            backend: self.backend_scope[backend.0],
            model: self.model_scopes[&(backend, model.clone())],
            credential: credential.map(|c| self.credential_scopes[backend.0][c]),
        }
    }

    pub fn credential_scope(&self, backend: BackendId, credential: usize) -> ScopeId {
        self.credential_scopes[backend.0][credential]
    }

    /// Whether a scope could be used now, without taking a probe permit.
    pub fn is_clear(&self, id: ScopeId) -> bool {
        self.slots[id.0 as usize].clear.load(Ordering::Acquire)
    }

    /// Admits an attempt on all its scopes, taking probe permits where a cooldown has ended.
    /// All-or-nothing: when one scope refuses, permits already taken are released.
    pub fn admit(&self, scopes: AttemptScopes, now: Instant) -> Result<Permit<'_>, Instant> {
        let mut permit = Permit {
            registry: self,
            scopes,
            probes: Vec::new(),
        };
        let gate = self.probe_gate();
        for id in scopes.all() {
            if self.is_clear(id) {
                continue;
            }
            match self.lock(id).admit_gated(now, gate) {
                Admission::Available => {}
                Admission::Probe => permit.probes.push(id),
                Admission::Unavailable { until } => return Err(until),
            }
        }
        Ok(permit)
    }

    /// A permit that ignores cooldowns (used when every entry is cooling down).
    pub fn force_permit(&self, scopes: AttemptScopes) -> Permit<'_> {
        Permit {
            registry: self,
            scopes,
            probes: Vec::new(),
        }
    }

    /// When the scopes become usable again (the latest cooldown end among them), if cooling.
    pub fn cooling_until(&self, scopes: AttemptScopes, now: Instant) -> Option<Instant> {
        scopes
            .all()
            .filter(|id| !self.is_clear(*id))
            .filter_map(|id| match self.lock(id).state(now) {
                BackendState::CoolingDown { until } => Some(until),
                _ => None,
            })
            .max()
    }

    /// The last failure recorded on any of the scopes, for reports of skipped entries.
    pub fn last_failure(&self, scopes: AttemptScopes) -> Option<(FailureReason, String)> {
        scopes.all().find_map(|id| {
            let s = self.lock(id);
            s.last_reason.map(|r| (r, s.last_detail.clone()))
        })
    }

    pub fn record_success(&self, permit: Permit<'_>, now: Instant) {
        let mut permit = permit;
        permit.probes.clear();
        for id in permit.scopes.all() {
            let mut s = self.lock(id);
            let t = s.record_success(now);
            self.set_clear(id, &s);
            drop(s);
            self.after_success(id, t);
        }
    }

    /// Announces a recovery; with a shared store, forgets unpublished failures and resets a
    /// cluster streak that may be non-zero (a state change, not one command per request).
    fn after_success(&self, id: ScopeId, t: Transition) {
        let slot = &self.slots[id.0 as usize];
        if self.remote.is_some() {
            slot.unpublished.store(0, Ordering::Relaxed);
        }
        let key = || self.scope_info(id).key.clone();
        if t == Transition::Recovered {
            slot.shared_streak.store(false, Ordering::Relaxed);
            self.emit(id, HealthEventKind::Recovered, None, String::new());
            self.push_remote(RemoteOp::Recovered { key: key() });
        } else if slot.shared_streak.load(Ordering::Relaxed)
            && slot.shared_streak.swap(false, Ordering::Relaxed)
        {
            self.push_remote(RemoteOp::StreakReset { key: key() });
        }
    }

    /// The scope a failure counts against: the model for a missing model, the credential for
    /// rate limits, quota and auth, the whole backend otherwise.
    pub fn target_scope(scopes: AttemptScopes, reason: FailureReason) -> ScopeId {
        match reason {
            FailureReason::ModelNotFound => scopes.model,
            r if r.is_credential_problem() => scopes.credential.unwrap_or(scopes.backend),
            _ => scopes.backend,
        }
    }

    /// Records a failure of an attempt that had already been counted a success: a stream
    /// that failed after its commit point counts like the same failure before it.
    pub fn record_failure_after_commit(
        &self,
        scopes: AttemptScopes,
        reason: FailureReason,
        detail: &str,
        now: Instant,
    ) -> Option<ScopeId> {
        let permit = Permit {
            registry: self,
            scopes,
            probes: Vec::new(),
        };
        self.record_failure(permit, reason, detail, None, now)
    }

    /// Records a failed attempt. Client-blamed failures change nothing but free the permit.
    pub fn record_failure(
        &self,
        permit: Permit<'_>,
        reason: FailureReason,
        detail: &str,
        retry_after: Option<Duration>,
        now: Instant,
    ) -> Option<ScopeId> {
        if reason.blame() != Blame::Upstream {
            return None;
        }
        let mut permit = permit;
        let target = Self::target_scope(permit.scopes, reason);
        permit.probes.retain(|id| *id != target);
        let threshold = self.config.threshold(reason);
        if self.remote.is_some() {
            self.slots[target.0 as usize]
                .unpublished
                .fetch_add(1, Ordering::Relaxed);
        }
        let mut s = self.lock(target);
        let t = s.record_failure(
            now,
            reason,
            detail,
            threshold,
            retry_after,
            &self.config.cooldown,
        );
        self.set_clear(target, &s);
        drop(s);
        self.announce(target, t, reason, detail, now);
        Some(target)
    }

    /// The engine moved on from these scopes because of `reason` (its retries were spent, or
    /// the reason does not retry): the reason's scope is ejected at once, whatever its streak,
    /// so the agent's next calls (a title, a summary) do not hit it again. The failure itself
    /// was recorded by [`record_failure`](Self::record_failure). Only upstream-blamed failures
    /// eject. Returns the scope it ejected.
    pub fn give_up(
        &self,
        scopes: AttemptScopes,
        reason: FailureReason,
        detail: &str,
        now: Instant,
    ) -> Option<ScopeId> {
        if reason.blame() != Blame::Upstream {
            return None;
        }
        let target = Self::target_scope(scopes, reason);
        let mut s = self.lock(target);
        let t = s.give_up(now, &self.config.cooldown);
        self.set_clear(target, &s);
        drop(s);
        self.announce(target, t, reason, detail, now);
        (t != Transition::None).then_some(target)
    }

    /// Tells the alerts, the log and the shared store about an ejection.
    fn announce(
        &self,
        target: ScopeId,
        t: Transition,
        reason: FailureReason,
        detail: &str,
        now: Instant,
    ) {
        if let Transition::Ejected { until, ejection } = t {
            let cooldown = until.saturating_duration_since(now);
            self.emit(
                target,
                HealthEventKind::Down { cooldown, ejection },
                Some(reason),
                detail.to_string(),
            );
            self.push_remote(RemoteOp::Ejected {
                key: self.scope_info(target).key.clone(),
                until: SystemTime::now() + cooldown,
                ejections: ejection,
            });
        }
    }

    /// Applies a cooldown another replica started (from the shared store).
    pub fn apply_remote(&self, id: ScopeId, until: SystemTime, ejections: u32) {
        if id.0 as usize >= self.scopes.len() {
            return;
        }
        let Ok(left) = until.duration_since(SystemTime::now()) else {
            return;
        };
        // Another replica (or whatever wrote the key) cannot take a scope out for longer than
        // this replica's own policy would, nor overflow the clock.
        let left = left.min(self.config.cooldown.max);
        let key = &self.scope_info(id).key;
        let mut s = self.lock(id);
        let now = Instant::now();
        let changed = s.apply_remote_cooldown(now, now + left, ejections);
        self.set_clear(id, &s);
        drop(s);
        if changed {
            tracing::info!(
                scope = key,
                cooldown_ms = left.as_millis() as u64,
                "cooldown learned from another replica"
            );
        }
    }

    /// Scopes with a cooldown set (cooling down, or half-open with no probe in flight).
    pub fn cooling_scopes(&self, now: Instant) -> Vec<ScopeId> {
        (0..self.scopes.len())
            .map(|i| ScopeId(i as u32))
            .filter(|id| !self.is_clear(*id))
            .filter(|id| {
                let s = self.lock(*id);
                s.cooldown_until.is_some()
                    && !(s.probe_in_flight && s.state(now) == BackendState::HalfOpen)
            })
            .collect()
    }

    /// An active probe succeeded: the scope is healthy again, before its cooldown ended.
    pub fn heal(&self, id: ScopeId, now: Instant) {
        let mut s = self.lock(id);
        if s.cooldown_until.is_none() {
            return;
        }
        let t = s.record_success(now);
        self.set_clear(id, &s);
        drop(s);
        self.after_success(id, t);
    }

    /// Another replica reported the scope recovered at `healed_at` (wall clock): heal here
    /// too, unless this replica saw it fail after that. Nothing is written back.
    pub fn apply_remote_heal(&self, id: ScopeId, healed_at: SystemTime) {
        if id.0 as usize >= self.scopes.len() || self.is_clear(id) {
            return;
        }
        let now = Instant::now();
        let ago = SystemTime::now()
            .duration_since(healed_at)
            .unwrap_or_default();
        let healed_at = now.checked_sub(ago).unwrap_or(now);
        let mut s = self.lock(id);
        let t = s.heal_remote(healed_at, now);
        self.set_clear(id, &s);
        drop(s);
        if t == Transition::Recovered {
            self.slots[id.0 as usize]
                .shared_streak
                .store(false, Ordering::Relaxed);
            tracing::info!(scope = %self.scope_info(id).key, "recovery learned from another replica");
            self.emit(id, HealthEventKind::Recovered, None, String::new());
        }
    }

    /// Failures per scope not yet added to the cluster streak, taken (the counters restart).
    pub fn take_unpublished(&self) -> Vec<(ScopeId, u32)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.unpublished.load(Ordering::Relaxed) > 0)
            .filter_map(|(i, slot)| {
                let n = slot.unpublished.swap(0, Ordering::Relaxed);
                (n > 0).then_some((ScopeId(i as u32), n))
            })
            .collect()
    }

    /// Failures the store could not publish: counted again next interval.
    pub fn restore_unpublished(&self, taken: &[(ScopeId, u32)]) {
        for (id, n) in taken {
            if let Some(slot) = self.slots.get(id.0 as usize) {
                slot.unpublished.fetch_add(*n, Ordering::Relaxed);
            }
        }
    }

    /// Whether the cluster streak of a scope may be non-zero, as last read from the store.
    pub fn note_cluster_streak(&self, id: ScopeId, nonzero: bool) {
        if let Some(slot) = self.slots.get(id.0 as usize) {
            slot.shared_streak.store(nonzero, Ordering::Relaxed);
        }
    }

    /// The store added this replica's failures to the cluster streak, which is now `streak`:
    /// at the threshold of the scope's last failure reason, the scope is ejected here (event,
    /// alert, shared cooldown) as a local streak would eject it.
    pub fn apply_cluster_streak(&self, id: ScopeId, streak: u64, now: Instant) {
        if id.0 as usize >= self.scopes.len() || streak == 0 {
            return;
        }
        self.note_cluster_streak(id, true);
        let mut s = self.lock(id);
        let reason = s.last_reason.unwrap_or(FailureReason::Unknown);
        if streak < u64::from(self.config.threshold(reason)) {
            return;
        }
        let t = s.eject_for_cluster_streak(now, &self.config.cooldown);
        self.set_clear(id, &s);
        drop(s);
        let detail = format!("{streak} consecutive failures across replicas");
        self.announce(id, t, reason, &detail, now);
    }

    /// Half-open scopes a request wanted and this replica holds no probe lease for.
    pub fn lease_candidates(&self, now: Instant) -> Vec<ScopeId> {
        (0..self.scopes.len())
            .map(|i| ScopeId(i as u32))
            .filter(|id| !self.is_clear(*id) && self.lock(*id).wants_lease(now))
            .collect()
    }

    /// The store's answer to a lease request: won (this replica's next request probes) or
    /// lost (stay out for the lease time, the verdict comes through the store).
    pub fn lease_result(&self, id: ScopeId, won: bool, now: Instant) {
        let lease = self.config.redis_probe_lease;
        let mut s = self.lock(id);
        if won {
            s.lease_won(now, lease);
        } else {
            s.lease_lost(now, lease);
        }
        self.set_clear(id, &s);
    }

    /// Operator reset of every scope of the named backend's identity. False if no such backend.
    pub fn reset_backend(&self, name: &str) -> bool {
        let mut found = false;
        for (i, info) in self.scopes.iter().enumerate() {
            if info.backends.iter().any(|b| &**b == name) {
                found = true;
                let id = ScopeId(i as u32);
                let mut s = self.lock(id);
                s.reset();
                self.set_clear(id, &s);
                drop(s);
                self.push_remote(RemoteOp::Recovered {
                    key: info.key.clone(),
                });
            }
        }
        found
    }

    pub fn snapshot(&self, now: Instant) -> Vec<ScopeSnapshot> {
        self.scopes
            .iter()
            .enumerate()
            .map(|(i, info)| {
                let s = self.lock(ScopeId(i as u32)).clone();
                let state = s.state(now);
                ScopeSnapshot {
                    identity: info.identity.as_str().to_string(),
                    scope: info.scope.clone(),
                    backends: info.backends.iter().map(|b| b.to_string()).collect(),
                    state: state.as_str(),
                    cooldown_remaining_s: match state {
                        BackendState::CoolingDown { until } => {
                            Some(until.saturating_duration_since(now).as_secs_f64())
                        }
                        _ => None,
                    },
                    streak: s.streak,
                    ejections: s.ejections,
                    successes: s.successes,
                    failures: s.failures,
                    last_reason: s.last_reason.map(FailureReason::as_str),
                    last_detail: s.last_detail.clone(),
                }
            })
            .collect()
    }

    fn emit(
        &self,
        scope: ScopeId,
        kind: HealthEventKind,
        reason: Option<FailureReason>,
        detail: String,
    ) {
        let info = self.scope_info(scope);
        match &kind {
            HealthEventKind::Down { cooldown, ejection } => tracing::warn!(
                scope = %info.key,
                backends = ?info.backends,
                reason = reason.map(FailureReason::as_str),
                cooldown_ms = cooldown.as_millis() as u64,
                ejection,
                "backend scope is cooling down"
            ),
            HealthEventKind::Recovered => {
                tracing::info!(scope = %info.key, backends = ?info.backends, "backend scope recovered")
            }
        }
        let _ = self.events.send(HealthEvent {
            scope,
            kind,
            reason,
            detail,
        });
    }

    fn push_remote(&self, op: RemoteOp) {
        if let Some(tx) = &self.remote {
            // Full queue: the shared store is behind; local state stays authoritative here.
            let _ = tx.try_send(op);
        }
    }

    /// Every scope cooling down here, as store writes (to re-publish after a Redis outage).
    pub fn local_cooldowns(&self) -> Vec<RemoteOp> {
        let now = Instant::now();
        (0..self.scopes.len())
            .filter_map(|i| {
                let id = ScopeId(i as u32);
                let s = self.lock(id);
                match s.state(now) {
                    BackendState::CoolingDown { until } => Some(RemoteOp::Ejected {
                        key: self.scope_info(id).key.clone(),
                        until: SystemTime::now() + until.saturating_duration_since(now),
                        ejections: s.ejections,
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// Scope keys in `ScopeId` order.
    pub fn all_keys(&self) -> Vec<String> {
        self.scopes.iter().map(|s| s.key.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_normalizes_case_default_port_and_trailing_slash() {
        let a = BackendIdentity::new(
            Dialect::OpenAi,
            &reqwest::Url::parse("HTTPS://API.Example.com/v1/").unwrap(),
        );
        let b = BackendIdentity::new(
            Dialect::OpenAi,
            &reqwest::Url::parse("https://api.example.com:443/v1").unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "openai_chat|https://api.example.com:443/v1");
        let c = BackendIdentity::new(
            Dialect::Anthropic,
            &reqwest::Url::parse("https://api.example.com/v1").unwrap(),
        );
        assert_ne!(a, c, "the api is part of the identity");
        let d = BackendIdentity::new(
            Dialect::OpenAi,
            &reqwest::Url::parse("http://api.example.com/v1").unwrap(),
        );
        assert_ne!(a, d);
    }

    fn registry(yaml_extra: &str) -> (Config, HealthRegistry) {
        let yaml = format!(
            "backends:\n  a: {{ api: openai_chat, base_url: \"http://h/v1\", api_key_env: [K1, K2] }}\n  a2: {{ api: openai_chat, base_url: \"http://H:80/v1/\" }}\n  b: {{ api: openai_chat, base_url: \"http://other/v1\" }}\nroutes:\n  r: {{ chain: [ {{ backend: a, model: m1 }}, {{ backend: a2, model: m2 }}, {{ backend: b, model: m1 }} ] }}\n{yaml_extra}"
        );
        let config = Config::from_yaml(&yaml, "t.yaml", &|_| Some("k".into())).unwrap();
        let reg = HealthRegistry::new(&config, None);
        (config, reg)
    }

    #[tokio::test(start_paused = true)]
    async fn backends_with_one_identity_share_health_and_scopes_are_separate() {
        let (_c, reg) = registry("");
        let a = reg.scopes_for(BackendId(0), &"m1".into(), Some(0));
        let a2 = reg.scopes_for(BackendId(1), &"m2".into(), None);
        assert_eq!(
            a.backend, a2.backend,
            "same api + normalized URL = same backend scope"
        );
        assert_ne!(a.model, a2.model);
        let now = Instant::now();
        // A connection failure (threshold 1) takes the shared backend out for both names.
        let p = reg.admit(a, now).unwrap();
        reg.record_failure(p, FailureReason::Connection, "refused", None, now);
        assert!(reg.admit(a2, now).is_err());
        // A rate limit on key 1 only touches key 1's scope.
        let (_c, reg) = registry("health: { failure_threshold: { rate_limit: 1 } }");
        let k1 = reg.scopes_for(BackendId(0), &"m1".into(), Some(0));
        let k2 = reg.scopes_for(BackendId(0), &"m1".into(), Some(1));
        let p = reg.admit(k1, now).unwrap();
        assert_eq!(
            reg.record_failure(p, FailureReason::RateLimit, "429", None, now),
            k1.credential
        );
        assert!(reg.admit(k1, now).is_err());
        assert!(reg.admit(k2, now).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn client_and_gateway_errors_never_count_against_health() {
        let (_c, reg) = registry("health: { failure_threshold: { default: 1 } }");
        let s = reg.scopes_for(BackendId(2), &"m1".into(), None);
        let now = Instant::now();
        for reason in [
            FailureReason::ContextOverflow,
            FailureReason::PayloadTooLarge,
            FailureReason::InvalidRequest,
            FailureReason::ContentPolicy,
            // Our own failure (a translation bug) must not eject a backend that answered well.
            FailureReason::Internal,
        ] {
            let p = reg.admit(s, now).unwrap();
            assert_eq!(reg.record_failure(p, reason, "x", None, now), None);
        }
        assert!(reg.admit(s, now).is_ok());
        assert_eq!(reg.snapshot(now).iter().map(|s| s.failures).sum::<u64>(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_exactly_one_concurrent_probe_and_a_dropped_permit_frees_it() {
        let (_c, reg) = registry("");
        let s = reg.scopes_for(BackendId(2), &"m1".into(), None);
        let now = Instant::now();
        let p = reg.admit(s, now).unwrap();
        reg.record_failure(p, FailureReason::Timeout, "stall", None, now);
        let later = now + Duration::from_secs(6);
        let probe = reg.admit(s, later).unwrap();
        assert!(probe.is_probe());
        let reg = &reg;
        let others: Vec<bool> = (0..100).map(|_| reg.admit(s, later).is_ok()).collect();
        assert!(
            others.iter().all(|ok| !ok),
            "a second request got through during the probe"
        );
        drop(probe);
        let probe = reg.admit(s, later).unwrap();
        reg.record_success(probe, later);
        assert!(reg.admit(s, later).is_ok());
        assert!(reg.is_clear(s.backend));
    }

    #[tokio::test(start_paused = true)]
    async fn events_announce_down_and_recovered() {
        let (_c, reg) = registry("");
        let mut rx = reg.subscribe();
        let s = reg.scopes_for(BackendId(2), &"m1".into(), None);
        let now = Instant::now();
        let p = reg.admit(s, now).unwrap();
        reg.record_failure(p, FailureReason::Connection, "refused", None, now);
        let ev = rx.try_recv().unwrap();
        assert_eq!(
            ev.kind,
            HealthEventKind::Down {
                cooldown: Duration::from_secs(5),
                ejection: 1
            }
        );
        let later = now + Duration::from_secs(5);
        let p = reg.admit(s, later).unwrap();
        reg.record_success(p, later);
        assert_eq!(rx.try_recv().unwrap().kind, HealthEventKind::Recovered);
        assert!(reg.reset_backend("b"));
        assert!(!reg.reset_backend("nope"));
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_shared_store_failures_are_published_per_interval_and_a_success_resets_once() {
        let (config, _) = registry("health: { failure_threshold: { default: 3 } }");
        let (tx, mut rx) = mpsc::channel(16);
        let reg = HealthRegistry::new(&config, Some(tx));
        let s = reg.scopes_for(BackendId(2), &"m1".into(), None);
        let now = Instant::now();
        // A storm of failures becomes one number per scope, not one op per failure.
        for _ in 0..2 {
            let p = reg.admit(s, now).unwrap();
            reg.record_failure(p, FailureReason::Overloaded, "529", None, now);
        }
        assert!(rx.try_recv().is_err(), "nothing queued per failure");
        assert_eq!(reg.take_unpublished(), vec![(s.backend, 2)]);
        assert!(reg.take_unpublished().is_empty());
        // Other replicas' failures make the cluster streak 3: ejected here, and published.
        reg.apply_cluster_streak(s.backend, 3, now);
        assert!(reg.admit(s, now).is_err());
        assert!(matches!(rx.try_recv(), Ok(RemoteOp::Ejected { .. })));
        // Healed by another replica's probe (after this ejection): recovered here, nothing
        // written back.
        tokio::time::advance(Duration::from_secs(1)).await;
        let now = Instant::now();
        reg.apply_remote_heal(s.backend, SystemTime::now());
        assert!(reg.admit(s, now).is_ok());
        assert!(rx.try_recv().is_err());
        // A success resets a cluster streak that may be non-zero, once.
        reg.note_cluster_streak(s.backend, true);
        for _ in 0..3 {
            let p = reg.admit(s, now).unwrap();
            reg.record_success(p, now);
        }
        assert!(matches!(rx.try_recv(), Ok(RemoteOp::StreakReset { .. })));
        assert!(rx.try_recv().is_err());
    }
}
