//! Sharing health across replicas through Redis: everything about a backend's health that
//! decides where a request goes.
//!
//! A background task owns the connection ([`Shared`]) and keeps Redis traffic proportional to
//! *changes of state*, not to requests:
//!
//! - **Cooldowns.** Each ejection is written as `{prefix}:cooldown:{scope}` = `until_ms:ejections`
//!   with a TTL (never shortening a longer one, via a small Lua script); recovery deletes it.
//! - **Failure streaks.** The registry counts failures per scope not yet published (atomics);
//!   every `poll_interval` the task adds them with one `INCRBY` per scope that failed
//!   (`{prefix}:streak:{scope}`, TTL a few cooldown bases so an old streak dies). When the sum
//!   reaches the threshold, this replica ejects the scope as a local streak would. A success on
//!   a scope whose cluster streak may be non-zero deletes the key (once, not per request).
//! - **One probe cluster-wide.** When a cooldown ends and a request wants the scope, the task
//!   asks for `{prefix}:probe:{scope}` (`SET NX PX probe_lease`); the winner probes, the others
//!   stay out for the lease time. The verdict travels back as a new cooldown or as
//!   `{prefix}:healed:{scope}` = `healed_at_ms`, which heals every replica that did not see the
//!   scope fail after that. If the prober dies, its lease expires and another replica takes it.
//! - **Reading.** Every `poll_interval` one MGET reads the cooldown, healed and streak keys of
//!   every scope, in the same round trip as the streak increments.
//! - **Sessions.** Turn exclusions and sticky entries are published on `{prefix}:sessions` as
//!   they are drained from the queue (one `PUBLISH` per batch of up to 64), and a subscriber
//!   applies the others' ([`super::redis_sessions`]).
//!
//! Redis is never on the request path: requests only `try_send` into a bounded queue or bump
//! an atomic. Every call is bounded by `timeout`. During an outage the gateway serves on local
//! state: streaks count per replica, half-open probes are local again (within one poll plus
//! one timeout), one warning is logged, and on reconnection the local cooldowns are written
//! back. Alerts share the same connection for their cluster-wide throttle claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::redis_sessions::Names;
use super::sessions::Sessions;
use super::{HealthRegistry, RemoteOp, ScopeId};
use crate::config::HealthConfig;
use crate::metrics::Metrics;
use crate::scrub::Scrubber;

const SET_IF_LATER: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local until_ms = tonumber(string.match(cur, '^(%d+)'))
  if until_ms and until_ms >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// Takes a probe lease unless the scope's shared cooldown is running again: a prober's
/// failure writes a new cooldown and releases its lease in one round trip, and a replica that
/// read the old state just before must not take the released lease and probe a second time.
const TAKE_LEASE: &str = r#"
local cur = redis.call('GET', KEYS[2])
if cur then
  local until_ms = tonumber(string.match(cur, '^(%d+)'))
  if until_ms and until_ms > tonumber(ARGV[3]) then return 0 end
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"#;

/// Deletes a probe lease only if this replica still holds it.
const RELEASE_LEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// Queue between the registry and the Redis task; overflow drops (local state still holds).
pub const QUEUE: usize = 1024;

pub fn channel() -> (mpsc::Sender<RemoteOp>, mpsc::Receiver<RemoteOp>) {
    mpsc::channel(QUEUE)
}

/// A connection to the shared store, cheap to clone: every call bounded by `timeout`, every
/// command counted in `switchyard_redis_commands_total`, every error scrubbed.
#[derive(Clone)]
pub struct Shared {
    conn: redis::aio::ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    scrubber: Arc<Scrubber>,
    /// This replica's name in probe leases and session messages.
    replica: Arc<str>,
    /// For the session subscriber's own pub/sub connection.
    client: redis::Client,
    /// Which parts are cut off from Redis: one warning per outage, whichever part sees it.
    link: Arc<Mutex<Link>>,
    /// Rung when the store's task sees Redis return: the subscriber subscribes afresh.
    renew: Arc<Notify>,
}

/// The two users of the connection: the store's task and the session subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Store,
    Feed,
}

#[derive(Default)]
struct Link {
    store_down: bool,
    feed_down: bool,
}

/// What a part's news means for the outage as a whole.
#[derive(Debug, PartialEq, Eq)]
enum Outage {
    Began,
    Ended,
    Unchanged,
}

impl Link {
    fn any_down(&self) -> bool {
        self.store_down || self.feed_down
    }

    fn mark(&mut self, part: Part, down: bool) -> Outage {
        let before = self.any_down();
        match part {
            Part::Store => self.store_down = down,
            Part::Feed => self.feed_down = down,
        }
        match (before, self.any_down()) {
            (false, true) => Outage::Began,
            (true, false) => Outage::Ended,
            _ => Outage::Unchanged,
        }
    }
}

/// A pipeline that counts its commands by name.
#[derive(Default)]
pub struct Batch {
    pipe: redis::Pipeline,
    counts: Vec<(&'static str, u64)>,
    len: usize,
}

impl Batch {
    /// Adds a command; `op` is its name in the metrics.
    pub fn add(&mut self, op: &'static str, cmd: redis::Cmd) -> &mut Self {
        self.pipe.add_command(cmd);
        self.len += 1;
        match self.counts.iter_mut().find(|(o, _)| *o == op) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((op, 1)),
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A short stable digest for client-chosen strings in key names (sessions, throttle keys).
pub fn digest(s: &str) -> String {
    Sha256::digest(s.as_bytes())[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn ms(d: Duration) -> u64 {
    (d.as_millis() as u64).max(1)
}

impl Shared {
    /// Fails only on an unusable URL; an unreachable server is retried on use. The URL (and
    /// its password) never appears in the error.
    pub fn connect(
        config: &HealthConfig,
        metrics: Arc<Metrics>,
        scrubber: Arc<Scrubber>,
    ) -> Result<Shared, String> {
        let scrub = |e: redis::RedisError| scrubber.detail(&e.to_string(), 300);
        let client = redis::Client::open(config.redis_url.expose())
            .map_err(|e| format!("health.redis.url: {}", scrub(e)))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.redis_timeout))
            .set_response_timeout(Some(config.redis_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let conn =
            redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
                .map_err(|e| format!("health.redis: {}", scrub(e)))?;
        Ok(Shared {
            conn,
            prefix: config.redis_key_prefix.as_str().into(),
            timeout: config.redis_timeout,
            metrics,
            scrubber,
            replica: format!("{:016x}", rand::random::<u64>()).into(),
            client,
            link: Arc::new(Mutex::new(Link::default())),
            renew: Arc::new(Notify::new()),
        })
    }

    /// This replica's id in probe leases and session messages.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The channel session changes travel on: `{prefix}:sessions`.
    pub fn sessions_channel(&self) -> String {
        format!("{}:sessions", self.prefix)
    }

    /// A fresh pub/sub connection subscribed to the sessions channel, bounded by `timeout`.
    pub async fn subscribe_sessions(&self) -> Result<redis::aio::PubSubStream, String> {
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            self.metrics.redis_commands("subscribe", 1);
            pubsub.subscribe(self.sessions_channel()).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        match tokio::time::timeout(self.timeout, subscribe).await {
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Err(self.scrubber.detail(&e.to_string(), 300)),
            Ok(Ok(stream)) => Ok(stream),
        }
    }

    /// A part lost Redis: the first part to see an outage logs it, once.
    pub fn link_down(&self, part: Part, error: &str) {
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if link.mark(part, true) == Outage::Began {
            tracing::warn!(error = %error, part = ?part, "redis unavailable; serving on local health state until it returns");
        } else {
            tracing::debug!(error = %error, part = ?part, "redis still unavailable");
        }
    }

    /// A part reaches Redis: when every part does again, the outage is over (one line).
    pub fn link_up(&self, part: Part) {
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        if link.mark(part, false) == Outage::Ended {
            tracing::info!("redis reachable again");
        }
    }

    /// Resolves when the store's task saw Redis return after an outage.
    pub async fn renewed(&self) {
        self.renew.notified().await
    }

    /// `{prefix}:{kind}:{rest}`.
    pub fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}:{kind}:{rest}", self.prefix)
    }

    /// Sends a batch in one round trip; one value per command.
    pub async fn send(&self, batch: &Batch) -> Result<Vec<Value>, String> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        for (op, n) in &batch.counts {
            self.metrics.redis_commands(op, *n);
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, batch.pipe.query_async(&mut conn)).await {
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Err(self.scrubber.detail(&e.to_string(), 300)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Takes a cluster-wide claim (`SET key 1 NX PX ttl`): true for the one replica that got
    /// it first within `ttl`.
    pub async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, String> {
        let mut b = Batch::default();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(1).arg("NX").arg("PX").arg(ms(ttl));
        b.add("set", cmd);
        let v = self.send(&b).await?;
        Ok(matches!(v.first(), Some(Value::Okay)))
    }

    /// Records each (session, backend) as the session's first backend unless one is recorded,
    /// and returns the recorded ones (`SET NX PX` then `GET` per session, any Redis version),
    /// in one round trip.
    pub async fn first_backends(
        &self,
        sessions: &[(&str, &str)],
        ttl: Duration,
    ) -> Result<Vec<Option<String>>, String> {
        let mut b = Batch::default();
        for (session, backend) in sessions {
            let key = self.key("first", &digest(session));
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(*backend).arg("NX").arg("PX").arg(ms(ttl));
            b.add("set", set);
            let mut get = redis::cmd("GET");
            get.arg(&key);
            b.add("get", get);
        }
        let values = self.send(&b).await?;
        Ok(values
            .chunks(2)
            .map(|pair| {
                pair.get(1)
                    .and_then(|v| redis::from_redis_value_ref::<Option<String>>(v).ok())
                    .flatten()
            })
            .collect())
    }
}

/// Starts the sync task; `names` names the session changes it publishes.
pub fn spawn(
    config: &HealthConfig,
    shared: Shared,
    registry: Arc<HealthRegistry>,
    names: Arc<Names>,
    rx: mpsc::Receiver<RemoteOp>,
) -> tokio::task::JoinHandle<()> {
    let keys = registry.all_keys();
    let store = Store {
        cooldown_keys: keys.iter().map(|k| shared.key("cooldown", k)).collect(),
        healed_keys: keys.iter().map(|k| shared.key("healed", k)).collect(),
        streak_keys: keys.iter().map(|k| shared.key("streak", k)).collect(),
        ids: keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), ScopeId(i as u32)))
            .collect(),
        shared,
        names,
        held: HashMap::new(),
        down: false,
        streak_ttl: (config.cooldown.base * 4).max(config.redis_poll_interval * 4),
        healed_ttl: config.cooldown.max.max(config.redis_poll_interval * 10),
        probe_lease: config.redis_probe_lease,
    };
    tokio::spawn(run(store, registry, rx, config.redis_poll_interval))
}

struct Store {
    shared: Shared,
    names: Arc<Names>,
    cooldown_keys: Vec<String>,
    healed_keys: Vec<String>,
    streak_keys: Vec<String>,
    ids: HashMap<String, ScopeId>,
    /// Probe leases this replica won, until they expire.
    held: HashMap<ScopeId, Instant>,
    down: bool,
    streak_ttl: Duration,
    healed_ttl: Duration,
    probe_lease: Duration,
}

/// Most queued changes written in one round trip.
const MAX_BATCH: usize = 64;

async fn run(
    mut store: Store,
    registry: Arc<HealthRegistry>,
    mut rx: mpsc::Receiver<RemoteOp>,
    poll_interval: Duration,
) {
    let mut tick = tokio::time::interval(poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            op = rx.recv() => match op {
                Some(op) => {
                    let mut ops = vec![op];
                    while ops.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(op) => ops.push(op),
                            Err(_) => break,
                        }
                    }
                    let r = store.write(&ops).await;
                    store.note(r, &registry).await;
                }
                None => return,
            },
            _ = tick.tick() => {
                let r = store.sync(&registry).await;
                store.note(r, &registry).await;
            }
        }
    }
}

impl Store {
    /// Writes registry changes in one round trip, and publishes session changes in another.
    /// A failed publish (say an ACL without the channel) is not an outage and never costs the
    /// health writes; the poll each interval tells whether Redis answers.
    async fn write(&mut self, ops: &[RemoteOp]) -> Result<(), String> {
        let mut b = Batch::default();
        let mut session_changes = Vec::new();
        for op in ops {
            match op {
                RemoteOp::Excluded { .. } | RemoteOp::Sticky { .. } => session_changes.push(op),
                _ => self.add_op(&mut b, op),
            }
        }
        if !session_changes.is_empty() {
            let mut publish = Batch::default();
            let channel = self.shared.sessions_channel();
            for message in self.names.encode(&self.shared.replica, &session_changes) {
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(&channel).arg(message);
                publish.add("publish", cmd);
            }
            if let Err(e) = self.shared.send(&publish).await {
                tracing::debug!(error = %e, "publishing session changes failed");
            }
        }
        self.shared.send(&b).await.map(|_| ())
    }

    fn add_op(&mut self, b: &mut Batch, op: &RemoteOp) {
        let (key, lease_ends) = match op {
            // Published by `write`, not written to keys.
            RemoteOp::Excluded { .. } | RemoteOp::Sticky { .. } => return,
            RemoteOp::Ejected {
                key,
                until,
                ejections,
            } => {
                let until_ms = until
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64;
                let ttl = until.duration_since(SystemTime::now()).unwrap_or_default();
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(SET_IF_LATER)
                    .arg(1)
                    .arg(self.shared.key("cooldown", key))
                    .arg(until_ms)
                    .arg(*ejections)
                    .arg(ms(ttl));
                b.add("eval", cmd);
                (key, true)
            }
            RemoteOp::Recovered { key } => {
                // The cooldown goes before the heal is written: a reader never sees a heal next
                // to the cooldown it ended.
                let mut del = redis::cmd("DEL");
                del.arg(self.shared.key("cooldown", key))
                    .arg(self.shared.key("streak", key));
                b.add("del", del);
                let mut set = redis::cmd("SET");
                set.arg(self.shared.key("healed", key))
                    .arg(now_ms())
                    .arg("PX")
                    .arg(ms(self.healed_ttl));
                b.add("set", set);
                (key, true)
            }
            RemoteOp::StreakReset { key } => {
                let mut del = redis::cmd("DEL");
                del.arg(self.shared.key("streak", key));
                b.add("del", del);
                (key, false)
            }
        };
        // A verdict ends this replica's probe lease: the next cooldown's probe is anyone's.
        if lease_ends {
            if let Some(id) = self.ids.get(key) {
                if self.held.remove(id).is_some() {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(RELEASE_LEASE)
                        .arg(1)
                        .arg(self.shared.key("probe", key))
                        .arg(&*self.shared.replica);
                    b.add("eval", cmd);
                }
            }
        }
    }

    /// Once per interval: publish the failures counted since the last one and read every
    /// scope's shared state, in one round trip; then, only when a half-open scope is wanted
    /// here, ask for its probe lease.
    async fn sync(&mut self, registry: &HealthRegistry) -> Result<(), String> {
        let now = Instant::now();
        self.held.retain(|_, until| *until > now);
        let unpublished = registry.take_unpublished();
        let mut b = Batch::default();
        for (id, n) in &unpublished {
            let key = &self.streak_keys[id.0 as usize];
            let mut incr = redis::cmd("INCRBY");
            incr.arg(key).arg(*n);
            b.add("incrby", incr);
            let mut exp = redis::cmd("PEXPIRE");
            exp.arg(key).arg(ms(self.streak_ttl));
            b.add("pexpire", exp);
        }
        if !self.cooldown_keys.is_empty() {
            let mut mget = redis::cmd("MGET");
            mget.arg(&self.cooldown_keys)
                .arg(&self.healed_keys)
                .arg(&self.streak_keys);
            b.add("mget", mget);
        }
        let values = match self.shared.send(&b).await {
            Ok(v) => v,
            Err(e) => {
                // Not published: count them again next time (they still happened).
                registry.restore_unpublished(&unpublished);
                return Err(e);
            }
        };
        let mut values = values.into_iter();
        let now = Instant::now();
        for (id, _) in &unpublished {
            let streak = values
                .next()
                .and_then(|v| redis::from_redis_value::<u64>(v).ok())
                .unwrap_or(0);
            values.next();
            registry.apply_cluster_streak(*id, streak, now);
        }
        if let Some(v) = values.next() {
            let all: Vec<Option<String>> = redis::from_redis_value(v).unwrap_or_default();
            self.apply_read(registry, &all);
        }
        self.take_leases(registry).await
    }

    /// Applies one MGET of (cooldowns, heals, streaks): heals first, so a new cooldown read in
    /// the same snapshot still applies.
    fn apply_read(&self, registry: &HealthRegistry, all: &[Option<String>]) {
        let n = self.cooldown_keys.len();
        if all.len() != 3 * n {
            return;
        }
        for i in 0..n {
            let id = ScopeId(i as u32);
            if let Some(healed_ms) = all[n + i].as_deref().and_then(|v| v.parse::<u64>().ok()) {
                registry.apply_remote_heal(id, UNIX_EPOCH + Duration::from_millis(healed_ms));
            }
            if let Some(v) = &all[i] {
                let mut parts = v.split(':');
                let until_ms: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let ejections: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(1);
                registry.apply_remote(id, UNIX_EPOCH + Duration::from_millis(until_ms), ejections);
            }
            let streak = all[2 * n + i]
                .as_deref()
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0);
            registry.note_cluster_streak(id, streak > 0);
        }
    }

    /// Asks for the probe lease of every half-open scope a request wanted here.
    async fn take_leases(&mut self, registry: &HealthRegistry) -> Result<(), String> {
        let wanted = registry.lease_candidates(Instant::now());
        if wanted.is_empty() {
            return Ok(());
        }
        let mut b = Batch::default();
        let now_ms = now_ms();
        for id in &wanted {
            let key = &registry.scope_info(*id).key;
            let mut take = redis::cmd("EVAL");
            take.arg(TAKE_LEASE)
                .arg(2)
                .arg(self.shared.key("probe", key))
                .arg(self.shared.key("cooldown", key))
                .arg(&*self.shared.replica)
                .arg(ms(self.probe_lease))
                .arg(now_ms);
            b.add("eval", take);
        }
        let values = self.shared.send(&b).await?;
        let now = Instant::now();
        for (id, v) in wanted.iter().zip(values) {
            let won = matches!(v, Value::Int(1));
            if won {
                self.held.insert(*id, now + self.probe_lease);
                tracing::info!(scope = %registry.scope_info(*id).key, "won the probe lease; this replica probes");
            }
            registry.lease_result(*id, won, now);
        }
        Ok(())
    }

    /// Tracks outages: one warning when Redis goes away (probes turn local), one line when it
    /// is back, and then the local cooldowns are written back so the shared state is whole and
    /// the session subscriber subscribes afresh.
    async fn note(&mut self, result: Result<(), String>, registry: &HealthRegistry) {
        match result {
            Err(e) if !self.down => {
                self.down = true;
                registry.set_store_up(false);
                self.shared.link_down(Part::Store, &e);
            }
            Err(_) => {}
            Ok(()) if self.down => {
                self.down = false;
                registry.set_store_up(true);
                self.shared.link_up(Part::Store);
                self.shared.renew.notify_one();
                tracing::debug!("re-publishing local cooldowns");
                let ops = registry.local_cooldowns();
                if let Err(e) = self.write(&ops).await {
                    tracing::debug!(error = %e, "re-publishing cooldowns failed");
                }
            }
            Ok(()) => {}
        }
    }
}

/// Reconnection backoff of the subscriber.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the subscriber: applies the other replicas' session changes until the gateway stops.
pub fn spawn_feed(
    shared: Shared,
    names: Arc<Names>,
    sessions: Arc<Sessions>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(feed(shared, names, sessions))
}

/// Why a subscription ended.
enum Ended {
    /// The connection closed (Redis went away).
    Lost,
    /// The store's task saw Redis return: subscribe afresh (the old connection may be stale).
    Renew,
}

async fn feed(shared: Shared, names: Arc<Names>, sessions: Arc<Sessions>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match shared.subscribe_sessions().await {
            Ok(stream) => {
                shared.link_up(Part::Feed);
                backoff = FIRST_BACKOFF;
                match listen(stream, &shared, &names, &sessions).await {
                    Ended::Renew => continue,
                    Ended::Lost => shared.link_down(Part::Feed, "the subscription closed"),
                }
            }
            Err(e) => shared.link_down(Part::Feed, &e),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shared.renewed() => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn listen(
    mut stream: redis::aio::PubSubStream,
    shared: &Shared,
    names: &Names,
    sessions: &Sessions,
) -> Ended {
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Ended::Lost;
                };
                let changes = names.decode(msg.get_payload_bytes(), shared.replica());
                let now = Instant::now();
                for change in changes {
                    change.apply(sessions, now);
                }
            }
            _ = shared.renewed() => return Ended::Renew,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_seen_by_both_parts_is_one_outage() {
        let mut link = Link::default();
        // The subscription closes first, then the store's poll fails, then both come back.
        assert_eq!(link.mark(Part::Feed, true), Outage::Began);
        assert_eq!(link.mark(Part::Store, true), Outage::Unchanged);
        assert_eq!(link.mark(Part::Feed, true), Outage::Unchanged);
        assert_eq!(link.mark(Part::Store, false), Outage::Unchanged);
        assert_eq!(link.mark(Part::Feed, false), Outage::Ended);
        assert_eq!(link.mark(Part::Feed, false), Outage::Unchanged);
        // The next outage is a new one.
        assert_eq!(link.mark(Part::Store, true), Outage::Began);
        assert_eq!(link.mark(Part::Store, false), Outage::Ended);
    }
}
