//! The composition root: the gateway's shared state, built once from a config snapshot.
//!
//! Everything a request or a background task needs lives here: the immutable config, the
//! upstream pool, the health registry and sessions, the per-backend retry budgets, metrics,
//! alerts, the status page's activity and the scrubber. The attempt loop (`failover::engine`)
//! and the HTTP surface (`server`, `admin`, `status`) read it; it imports none of them.

use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::TpsBudget;

use crate::alert::Alerter;
use crate::config::{Config, HealthStore};
use crate::health::redis_sessions::Names;
use crate::health::sessions::Sessions;
use crate::health::stored::StoredResponses;
use crate::health::{redis_store, HealthRegistry};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::scrub::Scrubber;
use crate::status::activity::Activity;
use crate::upstream::Upstream;

/// The gateway's shared state: the immutable config snapshot, the upstream pool, and the
/// per-backend retry budgets.
pub struct Gateway {
    pub config: Arc<Config>,
    pub activity: Activity,
    pub alerts: Arc<Alerter>,
    pub metrics: Arc<Metrics>,
    pub scrubber: Arc<Scrubber>,
    pub health: Arc<HealthRegistry>,
    pub sessions: Arc<Sessions>,
    /// Which backend holds each Responses response the gateway served (`previous_response_id`).
    pub stored: StoredResponses,
    pub(crate) upstream: Upstream,
    pub(crate) budgets: Vec<TpsBudget>,
    /// Serving, draining, or ending open streams (graceful shutdown).
    pub lifecycle: Lifecycle,
}

impl Gateway {
    /// Builds the gateway. Must run inside a tokio runtime (the Redis task is spawned here).
    pub fn new(config: Arc<Config>) -> Result<Gateway, String> {
        let upstream =
            Upstream::new(&config).map_err(|e| format!("cannot build the upstream client: {e}"))?;
        let secrets: Vec<String> = config
            .secrets()
            .iter()
            .map(|s| s.expose().to_string())
            .collect();
        let metrics = Arc::new(Metrics::for_config(&config));
        let scrubber = Arc::new(Scrubber::new(&secrets));
        let shared = match config.health.store {
            HealthStore::Memory => None,
            HealthStore::Redis => Some(redis_store::Shared::connect(
                &config.health,
                metrics.clone(),
                scrubber.clone(),
            )?),
        };
        let h = &config.health;
        let sessions = Sessions::new(h.max_tracked, h.turn_ttl, h.session_ttl);
        let (health, sessions) = match &shared {
            None => (
                Arc::new(HealthRegistry::new(&config, None)),
                Arc::new(sessions),
            ),
            Some(shared) => {
                // One queue to the store's task: health changes and session changes.
                let (tx, rx) = redis_store::channel();
                let registry = Arc::new(HealthRegistry::new(&config, Some(tx.clone())));
                let sessions = Arc::new(sessions.shared_through(tx));
                let names = Arc::new(Names::new(&config, registry.all_keys()));
                redis_store::spawn(
                    &config.health,
                    shared.clone(),
                    registry.clone(),
                    names.clone(),
                    rx,
                );
                redis_store::spawn_feed(shared.clone(), names, sessions.clone());
                (registry, sessions)
            }
        };
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
        let mut alerts = Alerter::new(&config, metrics.clone(), scrubber.clone());
        if let Some(shared) = shared {
            alerts.share(shared);
        }
        let stored = StoredResponses::new(h.max_tracked, h.session_ttl);
        Ok(Gateway {
            activity: Activity::new(&config),
            alerts: Arc::new(alerts),
            metrics,
            scrubber,
            config,
            stored,
            health,
            sessions,
            upstream,
            budgets,
            lifecycle: Lifecycle::default(),
        })
    }

    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }
}
