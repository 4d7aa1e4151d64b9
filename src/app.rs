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
    pub(crate) budgets: Vec<Arc<TpsBudget>>,
    /// Serving, draining, or ending open streams (graceful shutdown); one for every
    /// generation of a reloaded gateway.
    pub lifecycle: Arc<Lifecycle>,
    /// The shared health store's connection, when `health.store` is redis.
    shared: Option<redis_store::Shared>,
    /// Where `POST /admin/reload` asks for a reload (set by the server that can do it).
    pub reload: Option<crate::lifecycle::ReloadSender>,
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
        let budgets = config
            .backends
            .iter()
            .map(|_| new_budget(&config))
            .collect();
        let mut alerts = Alerter::new(&config, metrics.clone(), scrubber.clone());
        if let Some(shared) = &shared {
            alerts.share(shared.clone());
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
            lifecycle: Arc::new(Lifecycle::default()),
            shared,
            reload: None,
        })
    }

    /// The next generation of this gateway for a reloaded `config`: the state that matters
    /// carries over by backend identity — health (every scope the new config still has keeps
    /// its cooldown, streak and counts), sessions and their turn exclusions, stored-response
    /// homes, retry budgets (by backend name), token totals, metrics (the same recorder) and
    /// the scrubber (which learns the new secrets). What the new config no longer has is
    /// dropped. Requests in flight finish on `self`.
    ///
    /// With `health.store: redis` the shared store's tasks stay, so a reload there may not
    /// change the health scopes (backends, models, credentials) or the health settings.
    pub fn reloaded(&self, config: Arc<Config>) -> Result<Gateway, String> {
        let upstream =
            Upstream::new(&config).map_err(|e| format!("cannot build the upstream client: {e}"))?;
        for s in config.secrets() {
            self.scrubber.add_secret(s.expose());
        }
        let metrics = Arc::new(Metrics::reloaded(&config, &self.metrics));
        let store_now = config.health.store;
        let (health, sessions, stored) = match (self.config.health.store, store_now) {
            (HealthStore::Memory, HealthStore::Memory) => {
                let health = Arc::new(HealthRegistry::new(&config, None));
                health.adopt(&self.health);
                let scope = |old: crate::health::ScopeId| {
                    health.id_of_key(&self.health.scope_info(old).key)
                };
                let entry = |route: &Arc<str>, old: usize| {
                    let was = self.config.routes.get(route)?.chain.get(old)?;
                    let was_backend = &self.config.backend(was.backend).name;
                    config.routes.get(route)?.chain.iter().position(|e| {
                        config.backend(e.backend).name == *was_backend && e.model == was.model
                    })
                };
                let sessions = Arc::new(self.sessions.reloaded(scope, entry));
                let stored = self.stored.reloaded(scope);
                (health, sessions, stored)
            }
            (HealthStore::Redis, HealthStore::Redis) => {
                let layout = HealthRegistry::new(&config, None);
                if !layout.same_layout(&self.health) || !config.health.same_as(&self.config.health)
                {
                    return Err("with health.store: redis, a reload may not change backends, models, credentials or health settings; restart the gateway to apply this config".into());
                }
                let stored = self.stored.reloaded(Some);
                (self.health.clone(), self.sessions.clone(), stored)
            }
            _ => return Err("health.store cannot change in a reload; restart the gateway".into()),
        };
        let budgets = config
            .backends
            .iter()
            .map(|b| {
                self.config
                    .backends
                    .iter()
                    .position(|old| old.name == b.name)
                    .map_or_else(|| new_budget(&config), |i| self.budgets[i].clone())
            })
            .collect();
        let mut alerts = Alerter::new(&config, metrics.clone(), self.scrubber.clone());
        if let Some(shared) = &self.shared {
            alerts.share(shared.clone());
        }
        let activity = Activity::new(&config);
        activity.adopt(&self.activity, &self.config, &config);
        Ok(Gateway {
            activity,
            alerts: Arc::new(alerts),
            metrics,
            scrubber: self.scrubber.clone(),
            config,
            stored,
            health,
            sessions,
            upstream,
            budgets,
            lifecycle: self.lifecycle.clone(),
            shared: self.shared.clone(),
            reload: self.reload.clone(),
        })
    }

    /// Scopes, backends and routes, in a line: what a reload says it now serves.
    pub fn summary(&self) -> String {
        format!(
            "{} backends, {} routes, {} health scopes",
            self.config.backends.len(),
            self.config.route_names.len(),
            self.health.scope_count()
        )
    }

    pub(crate) fn upstream(&self) -> &Upstream {
        &self.upstream
    }
}

/// A backend's retry budget (`failover.retry_budget`: a share of its requests, plus a floor).
fn new_budget(config: &Config) -> Arc<TpsBudget> {
    let global = &config.failover;
    Arc::new(TpsBudget::new(
        Duration::from_secs(10),
        global.retry_budget_min_per_sec,
        global.retry_budget_ratio,
    ))
}
