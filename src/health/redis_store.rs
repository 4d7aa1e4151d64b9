//! Sharing cooldowns across replicas through Redis.
//!
//! A background task owns the connection. It writes each ejection as a key with a TTL
//! (`{prefix}:cooldown:{scope}` = `until_ms:ejections`, never shortening a longer one, via a
//! small Lua script) and deletes the key on recovery; every `poll_interval` it reads all scope
//! keys with one MGET and applies cooldowns other replicas started. So a replica sees another's
//! cooldown within one poll interval (500 ms by default). Failure streaks stay local.
//!
//! Redis is never on the request path: requests only `try_send` into a bounded queue. When
//! Redis is down, slow or flapping, every call is bounded by `timeout`, the gateway serves on
//! its local state, one warning is logged per outage, and on reconnection the local cooldowns
//! are written back so the shared state is whole again.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::{HealthRegistry, RemoteOp};
use crate::config::HealthConfig;

const SET_IF_LATER: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local until_ms = tonumber(string.match(cur, '^(%d+)'))
  if until_ms and until_ms >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// Queue between the registry and the Redis task; overflow drops (local state still holds).
pub const QUEUE: usize = 1024;

pub fn channel() -> (mpsc::Sender<RemoteOp>, mpsc::Receiver<RemoteOp>) {
    mpsc::channel(QUEUE)
}

struct Store {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    timeout: Duration,
    script: redis::Script,
    down: bool,
}

/// Starts the sync task. Fails only on an unusable URL; an unreachable server is retried.
pub fn spawn(
    config: &HealthConfig,
    registry: Arc<HealthRegistry>,
    rx: mpsc::Receiver<RemoteOp>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let client = redis::Client::open(config.redis_url.as_str())
        .map_err(|e| format!("health.redis.url: {e}"))?;
    let manager_config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.redis_timeout))
        .set_response_timeout(Some(config.redis_timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    let conn = redis::aio::ConnectionManager::new_lazy_with_config(client, manager_config)
        .map_err(|e| format!("health.redis: {e}"))?;
    let store = Store {
        conn,
        prefix: config.redis_key_prefix.clone(),
        timeout: config.redis_timeout,
        script: redis::Script::new(SET_IF_LATER),
        down: false,
    };
    Ok(tokio::spawn(run(
        store,
        registry,
        rx,
        config.redis_poll_interval,
    )))
}

async fn run(
    mut store: Store,
    registry: Arc<HealthRegistry>,
    mut rx: mpsc::Receiver<RemoteOp>,
    poll_interval: Duration,
) {
    let keys: Vec<String> = registry.all_keys().iter().map(|k| store.key(k)).collect();
    let mut tick = tokio::time::interval(poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            op = rx.recv() => match op {
                Some(op) => {
                    let r = store.write(&op).await;
                    store.note(r, &registry).await;
                }
                None => return,
            },
            _ = tick.tick() => {
                let r = store.poll(&keys, &registry).await;
                store.note(r, &registry).await;
            }
        }
    }
}

impl Store {
    fn key(&self, scope_key: &str) -> String {
        format!("{}:cooldown:{scope_key}", self.prefix)
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(v)) => Ok(v),
        }
    }

    async fn write(&mut self, op: &RemoteOp) -> Result<(), String> {
        match op {
            RemoteOp::Ejected {
                key,
                until,
                ejections,
            } => {
                let until_ms = until
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64;
                let ttl_ms = until
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .as_millis()
                    .max(1) as u64;
                let mut conn = self.conn.clone();
                let mut inv = self.script.key(self.key(key));
                inv.arg(until_ms).arg(*ejections).arg(ttl_ms);
                self.bounded(inv.invoke_async::<i64>(&mut conn))
                    .await
                    .map(|_| ())
            }
            RemoteOp::Recovered { key } => {
                let mut conn = self.conn.clone();
                let k = self.key(key);
                self.bounded(redis::cmd("DEL").arg(k).query_async::<i64>(&mut conn))
                    .await
                    .map(|_| ())
            }
        }
    }

    async fn poll(&mut self, keys: &[String], registry: &HealthRegistry) -> Result<(), String> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let values: Vec<Option<String>> = self
            .bounded(redis::cmd("MGET").arg(keys).query_async(&mut conn))
            .await?;
        for (i, v) in values.into_iter().enumerate() {
            let Some(v) = v else { continue };
            let mut parts = v.split(':');
            let until_ms: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let ejections: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
            let until = UNIX_EPOCH + Duration::from_millis(until_ms);
            registry.apply_remote(super::ScopeId(i as u32), until, ejections);
        }
        Ok(())
    }

    /// Tracks outages: one warning when Redis goes away, one line when it is back, and then
    /// the local cooldowns are written back so the shared state is whole again.
    async fn note(&mut self, result: Result<(), String>, registry: &HealthRegistry) {
        match result {
            Err(e) if !self.down => {
                self.down = true;
                tracing::warn!(error = %e, "redis unavailable; serving on local health state until it returns");
            }
            Err(_) => {}
            Ok(()) if self.down => {
                self.down = false;
                tracing::info!("redis reachable again; re-publishing local cooldowns");
                for op in registry.local_cooldowns() {
                    if let Err(e) = self.write(&op).await {
                        tracing::debug!(error = %e, "re-publishing a cooldown failed");
                    }
                }
            }
            Ok(()) => {}
        }
    }
}
