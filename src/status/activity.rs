//! What the status page shows of recent traffic: per-backend request and error rates over the
//! last minute, the backend serving each route, and the recent failovers. Plain data recorded
//! by the engine and the server; the page (the parent module) reads it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::{BackendId, Config};

const WINDOW: usize = 60;
const FAILOVERS_KEPT: usize = 100;

/// Per-second request and error counts over the last minute.
#[derive(Clone)]
pub(super) struct Buckets {
    second: [u64; WINDOW],
    requests: [u32; WINDOW],
    errors: [u32; WINDOW],
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            second: [0; WINDOW],
            requests: [0; WINDOW],
            errors: [0; WINDOW],
        }
    }
}

impl Buckets {
    fn record(&mut self, now: u64, ok: bool) {
        let i = (now % WINDOW as u64) as usize;
        if self.second[i] != now {
            self.second[i] = now;
            self.requests[i] = 0;
            self.errors[i] = 0;
        }
        self.requests[i] += 1;
        if !ok {
            self.errors[i] += 1;
        }
    }

    pub(super) fn per_minute(&self, now: u64) -> (u32, u32) {
        (0..WINDOW)
            .filter(|&i| now.saturating_sub(self.second[i]) < WINDOW as u64 && self.second[i] != 0)
            .fold((0, 0), |(r, e), i| {
                (r + self.requests[i], e + self.errors[i])
            })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverRecord {
    pub at_ms: u64,
    pub route: String,
    pub from: String,
    /// None when the whole chain failed.
    pub to: Option<String>,
    pub reason: String,
}

/// Tokens a backend served since the gateway started (input, cached input, output).
#[derive(Default)]
pub(super) struct TokenTotals {
    pub input: AtomicU64,
    pub cached_input: AtomicU64,
    pub output: AtomicU64,
}

/// Recent activity, for the status page. Cheap to record: one small lock per backend.
pub struct Activity {
    pub(super) backends: Vec<Mutex<Buckets>>,
    pub(super) tokens: Vec<TokenTotals>,
    /// Per route, the backend that served last: its index + 1, 0 for none yet. An atomic, so
    /// recording it on every request takes no lock.
    pub(super) serving: HashMap<Arc<str>, AtomicUsize>,
    pub(super) failovers: Mutex<VecDeque<FailoverRecord>>,
}

pub(super) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Activity {
    pub fn new(config: &Config) -> Activity {
        Activity {
            backends: config.backends.iter().map(|_| Mutex::default()).collect(),
            tokens: config
                .backends
                .iter()
                .map(|_| TokenTotals::default())
                .collect(),
            serving: config
                .route_names
                .iter()
                .map(|r| (r.clone(), AtomicUsize::new(0)))
                .collect(),
            failovers: Mutex::new(VecDeque::new()),
        }
    }

    pub fn attempt(&self, backend: BackendId, ok: bool) {
        let now = unix_now().as_secs();
        self.backends[backend.0]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(now, ok);
    }

    /// Carries the status page's history over a reload: token totals and the last minute's
    /// counts by backend name, and the recent failovers.
    pub fn adopt(&self, old: &Activity, old_config: &Config, config: &Config) {
        for b in &config.backends {
            let Some(o) = old_config.backends.iter().find(|o| o.name == b.name) else {
                continue;
            };
            let (input, cached, output) = old.token_totals(o.id);
            let t = &self.tokens[b.id.0];
            t.input.store(input, Ordering::Relaxed);
            t.cached_input.store(cached, Ordering::Relaxed);
            t.output.store(output, Ordering::Relaxed);
            let buckets = old.backends[o.id.0]
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            *self.backends[b.id.0]
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = buckets;
        }
        let failovers = old
            .failovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        *self.failovers.lock().unwrap_or_else(|e| e.into_inner()) = failovers;
    }

    /// Adds a served request's tokens to its backend's totals (what the fallback costs).
    pub fn tokens(&self, backend: BackendId, usage: &crate::usage::Usage) {
        if let Some(t) = self.tokens.get(backend.0) {
            t.input.fetch_add(usage.input, Ordering::Relaxed);
            t.cached_input
                .fetch_add(usage.cached_input, Ordering::Relaxed);
            t.output.fetch_add(usage.output, Ordering::Relaxed);
        }
    }

    /// A backend's totals: (input, cached input, output).
    pub fn token_totals(&self, backend: BackendId) -> (u64, u64, u64) {
        self.tokens.get(backend.0).map_or((0, 0, 0), |t| {
            (
                t.input.load(Ordering::Relaxed),
                t.cached_input.load(Ordering::Relaxed),
                t.output.load(Ordering::Relaxed),
            )
        })
    }

    pub fn served(&self, route: &str, backend: BackendId) {
        if let Some(s) = self.serving.get(route) {
            s.store(backend.0 + 1, Ordering::Relaxed);
        }
    }

    pub fn failover(&self, route: &str, from: &str, to: Option<&str>, reason: &str) {
        let mut f = self.failovers.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() >= FAILOVERS_KEPT {
            f.pop_front();
        }
        f.push_back(FailoverRecord {
            at_ms: unix_now().as_millis() as u64,
            route: route.to_string(),
            from: from.to_string(),
            to: to.map(str::to_string),
            reason: reason.to_string(),
        });
    }
}
