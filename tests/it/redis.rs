//! Shared health across replicas through a real `redis-server` (started here on a free port;
//! `scripts/test` installs it when missing).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::procs::RedisServer as Redis;
use crate::support::*;

struct Cluster {
    primary: MockHandle,
    fallback: MockHandle,
    gateways: Vec<String>,
    http: reqwest::Client,
}

/// What differs between the clusters of these tests.
struct Spec<'a> {
    url: String,
    prefix: &'a str,
    replicas: usize,
    /// The `failover:` block's content.
    failover: &'a str,
    /// Extra keys of `health.redis`, e.g. `, probe_lease: 30s`.
    redis: &'a str,
    /// `health.redis.timeout`: how long a Redis call may take before the replica treats
    /// Redis as gone and falls back to local state.
    timeout: &'a str,
    /// Extra lines under `health:` (indented two spaces).
    health: &'a str,
    /// Extra top-level YAML (alerts).
    extra: &'a str,
    /// Anthropic backends and the route Claude Code's captured requests name
    /// (`claude-opus-5-5`), instead of OpenAI backends and `gpt`.
    anthropic: bool,
}

impl Spec<'_> {
    fn new(redis_port: u16, prefix: &str) -> Spec<'_> {
        Spec {
            url: format!("redis://127.0.0.1:{redis_port}"),
            prefix,
            replicas: 2,
            failover: "retries: 0, connect_timeout: 1s, ttft_timeout: 2s",
            redis: "",
            timeout: "200ms",
            health: "  cooldown: { base: 60s }",
            extra: "",
            anthropic: false,
        }
    }
}

async fn cluster(redis_port: u16, prefix: &str) -> Cluster {
    cluster_of(Spec::new(redis_port, prefix)).await
}

async fn cluster_of(spec: Spec<'_>) -> Cluster {
    let primary = spawn_mock("primary").await;
    let fallback = spawn_mock("fallback").await;
    let (api, path, route, m1, m2) = if spec.anthropic {
        (
            "anthropic_messages",
            "",
            "claude-opus-5-5",
            "claude-opus-4-7",
            "claude-sonnet-4-5",
        )
    } else {
        ("openai_chat", "/v1", "gpt", "m1", "m2")
    };
    let yaml = format!(
        r#"
backends:
  primary: {{ api: {api}, base_url: "{}{path}" }}
  fallback: {{ api: {api}, base_url: "{}{path}" }}
routes:
  {route}: {{ chain: [ {{ backend: primary, model: {m1} }}, {{ backend: fallback, model: {m2} }} ] }}
failover: {{ {} }}
health:
  store: redis
  redis: {{ url: "{}", key_prefix: "{}", timeout: {}, poll_interval: 200ms{} }}
{}
{}
"#,
        primary.url(),
        fallback.url(),
        spec.failover,
        spec.url,
        spec.prefix,
        spec.timeout,
        spec.redis,
        spec.health,
        spec.extra,
    );
    let mut gateways = Vec::new();
    for _ in 0..spec.replicas {
        let config = load_config(&yaml, "redis.yaml", &test_env);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        serve_on(listener, config);
        gateways.push(format!("http://{addr}"));
    }
    crate::support::procs::until_subscribed(&spec.url, spec.prefix, spec.replicas).await;
    Cluster {
        primary,
        fallback,
        gateways,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    }
}

impl Cluster {
    async fn ask(&self, gateway: usize) -> (u16, String) {
        self.ask_as(gateway, None).await
    }

    /// A request on replica `gateway`, in `session` if given: (status, serving backend).
    async fn ask_as(&self, gateway: usize, session: Option<&str>) -> (u16, String) {
        let headers: Vec<(&str, &str)> = session
            .map(|s| ("x-switchyard-session", s))
            .into_iter()
            .collect();
        self.ask_with(gateway, &headers).await
    }

    /// A request on replica `gateway` in `session`'s `turn` (named by the client).
    async fn ask_in_turn(&self, gateway: usize, session: &str, turn: &str) -> (u16, String) {
        self.ask_with(
            gateway,
            &[
                ("x-switchyard-session", session),
                ("x-switchyard-turn", turn),
            ],
        )
        .await
    }

    /// A chat request on replica `gateway` with `headers`: (status, serving backend).
    async fn ask_with(&self, gateway: usize, headers: &[(&str, &str)]) -> (u16, String) {
        let mut rb = self
            .http
            .post(format!("{}/v1/chat/completions", self.gateways[gateway]))
            .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        self.answer(rb).await
    }

    /// Sends a captured agent request (`tests/it/fixtures/agents/{name}.json`) to replica
    /// `gateway` exactly as the agent did: (status, serving backend).
    async fn replay(&self, gateway: usize, name: &str) -> (u16, String) {
        let c = captured_request(name);
        let mut rb = self
            .http
            .post(format!("{}{}", self.gateways[gateway], c.path))
            .body(c.body.to_string());
        for (k, v) in &c.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        self.answer(rb).await
    }

    async fn answer(&self, rb: reqwest::RequestBuilder) -> (u16, String) {
        let r = rb.send().await.unwrap();
        let backend = r
            .headers()
            .get("x-switchyard-backend")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let status = r.status().as_u16();
        let _ = r.bytes().await;
        (status, backend)
    }

    /// The primary answers `steps` in order, then `then` for ever.
    async fn plan_primary(&self, steps: Value, then: Value) {
        self.plan(&self.primary, steps, then).await;
    }

    async fn plan(&self, mock: &MockHandle, steps: Value, then: Value) {
        let r = self
            .http
            .post(format!("{}/_mock/plan", mock.url()))
            .json(&json!({"steps": steps, "then": then}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    async fn admin_reset(&self, gateway: usize, backend: &str) {
        let r = self
            .http
            .post(format!(
                "{}/admin/backends/{backend}/reset",
                self.gateways[gateway]
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Sum of `switchyard_redis_commands_total` over every op, on replica `gateway`.
    async fn redis_commands(&self, gateway: usize) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.gateways[gateway]))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("switchyard_redis_commands_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    }

    /// Waits until every replica reports `backend` in `state`.
    async fn all_see(&self, backend: &str, state: &str, limit: Duration) {
        for g in 0..self.gateways.len() {
            eventually(
                &format!("replica {g} sees {backend} {state}"),
                limit,
                || async { self.backend_state(g, backend).await == state },
            )
            .await;
        }
    }

    /// An operator resets `backend` on every replica; waits until every replica sees it
    /// healthy (the reset also deletes the shared cooldown, so none learns it back).
    async fn reset_everywhere(&self, backend: &str) {
        for g in 0..self.gateways.len() {
            self.admin_reset(g, backend).await;
        }
        self.all_see(backend, "healthy", Duration::from_secs(5))
            .await;
    }

    /// (turns, sticky sessions) tracked by replica `gateway`.
    async fn sessions_tracked(&self, gateway: usize) -> (u64, u64) {
        let v: Value = self
            .http
            .get(format!("{}/admin/backends", self.gateways[gateway]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let s = &v["sessions"];
        (
            s["turns_tracked"].as_u64().unwrap(),
            s["sticky_tracked"].as_u64().unwrap(),
        )
    }

    /// Waits until every replica but `origin` tracks at least `turns` turns and `sticky`
    /// sticky sessions: pub/sub, well within one poll interval (200 ms here); the bound is
    /// generous for a loaded CI box.
    async fn others_learn(&self, origin: usize, turns: u64, sticky: u64) {
        for g in (0..self.gateways.len()).filter(|g| *g != origin) {
            eventually(
                &format!("replica {g} learns the session change"),
                Duration::from_secs(2),
                || async {
                    let (t, s) = self.sessions_tracked(g).await;
                    t >= turns && s >= sticky
                },
            )
            .await;
        }
    }

    async fn primary_requests(&self) -> u64 {
        let v: Value = self
            .http
            .get(format!("{}/_mock/stats", self.primary.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["requests"].as_u64().unwrap()
    }

    /// The state of `backend`'s backend-wide scope as replica `gateway` sees it.
    async fn backend_state(&self, gateway: usize, backend: &str) -> String {
        let v: Value = self
            .http
            .get(format!("{}/admin/backends", self.gateways[gateway]))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        backend_scope(&v, backend)["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn fail_primary_once(&self) {
        let plan = json!({"steps": [{"kind": "reset", "after_chunks": 0}], "then": {"kind": "ok"}});
        self.http
            .post(format!("{}/_mock/plan", self.primary.url()))
            .json(&plan)
            .send()
            .await
            .unwrap();
    }
}

fn prefix() -> String {
    format!("sy-test-{}", rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooldown_seen_by_one_replica_makes_the_other_skip_the_backend() {
    let redis = Redis::start().await;
    let c = cluster(redis.port, &prefix()).await;
    c.fail_primary_once().await;
    assert_eq!(c.ask(0).await, (200, "fallback".into()));
    assert_eq!(c.primary_requests().await, 1);
    // Replica B learns it through redis (poll_interval: 200ms), without a request of its own.
    eventually(
        "replica B sees the primary cooling down",
        Duration::from_secs(5),
        || async { c.backend_state(1, "primary").await == "cooling_down" },
    )
    .await;
    for _ in 0..10 {
        assert_eq!(c.ask(1).await, (200, "fallback".into()));
    }
    assert_eq!(
        c.primary_requests().await,
        1,
        "replica B touched a backend A saw fail"
    );
    let _ = &c.fallback;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_and_returning_never_fails_a_request() {
    let mut redis = Redis::start().await;
    let port = redis.port;
    let c = cluster(port, &prefix()).await;
    assert_eq!(c.ask(0).await.0, 200);
    redis.kill();
    // Redis is gone: both replicas keep serving, every request succeeds, none slowed.
    // A request that waited on the dead store (timeout: 200ms) would cost 40 × 200 ms: 8 s.
    let started = Instant::now();
    for i in 0..40 {
        let (status, _) = c.ask(i % 2).await;
        assert_eq!(status, 200, "request {i} failed while redis was down");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "redis outage slowed requests: {:?}",
        started.elapsed()
    );
    // A sees the primary fail while redis is down: only A knows.
    c.fail_primary_once().await;
    assert_eq!(c.ask(0).await, (200, "fallback".into()));
    // Redis returns; A re-publishes its cooldown and B learns it.
    let _redis = Redis::start_on(port).await;
    eventually(
        "replica B learns A's cooldown after redis came back",
        // Generous: on a loaded 2-core CI box the reconnection (bounded backoff) and the next
        // poll can take seconds; a propagation that never happens still fails.
        Duration::from_secs(30),
        || async {
            let before = c.primary_requests().await;
            let (status, backend) = c.ask(1).await;
            assert_eq!(status, 200);
            // B probing the primary itself (it did not know yet) is allowed, not a failure.
            backend == "fallback" && c.primary_requests().await == before
        },
    )
    .await;
}

/// A 503 the engine retries after `secs` (below `cooldown.base`, so it does not eject alone).
fn unavailable(secs: u32) -> Value {
    json!({"kind": "status", "status": 503, "headers": {"retry-after": secs.to_string()}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_streaks_add_up_across_replicas() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let c = cluster_of(Spec {
        replicas: 3,
        // One retry, 2 s after each replica's single failure: by then the cluster streak
        // (3 failures, threshold 3) has ejected the primary everywhere.
        failover: "retries: 1, max_retry_after: 10s, connect_timeout: 1s, ttft_timeout: 2s",
        health: "  cooldown: { base: 60s }\n  failure_threshold: { default: 3 }",
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    c.plan_primary(
        json!([unavailable(2), unavailable(2), unavailable(2)]),
        json!({"kind": "ok"}),
    )
    .await;
    // Each replica sees exactly one failure; alone, each would retry the primary and be served.
    let (a, b, d) = tokio::join!(c.ask(0), c.ask(1), c.ask(2));
    for r in [a, b, d] {
        assert_eq!(
            r,
            (200, "fallback".into()),
            "the retry went back to the primary"
        );
    }
    assert_eq!(c.primary_requests().await, 3);
    c.all_see("primary", "cooling_down", Duration::from_secs(5))
        .await;
    // The 4th request, on any replica, skips the primary.
    for g in 0..3 {
        assert_eq!(c.ask(g).await, (200, "fallback".into()));
    }
    assert_eq!(c.primary_requests().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_resets_the_cluster_streak() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let c = cluster_of(Spec {
        replicas: 2,
        failover: "retries: 1, max_retry_after: 10s, connect_timeout: 1s, ttft_timeout: 2s",
        health: "  cooldown: { base: 60s }\n  failure_threshold: { default: 3 }",
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    // Two failures (one per replica, each cured by its retry), then a success, then two more:
    // never three in a row, so never ejected.
    for _ in 0..2 {
        c.plan_primary(
            json!([unavailable(1), unavailable(1)]),
            json!({"kind": "ok"}),
        )
        .await;
        let (a, b) = tokio::join!(c.ask(0), c.ask(1));
        assert_eq!(a, (200, "primary".into()));
        assert_eq!(b, (200, "primary".into()));
        // Let the streak be published and its reset too.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    for g in 0..2 {
        assert_eq!(c.backend_state(g, "primary").await, "healthy");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_probe_cluster_wide_when_a_cooldown_ends() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let c = cluster_of(Spec {
        replicas: 3,
        redis: ", probe_lease: 20s",
        // A starved CI box must not look like a Redis outage here: during one, each replica
        // probes on its own by design, which is not what this test is about.
        timeout: "2s",
        health: "  cooldown: { base: 1s }",
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    // The first failure takes the primary out for 1 s; the probe fails too, with a long
    // Retry-After, so nothing else may reach the primary during this test.
    c.plan_primary(json!([unavailable(1)]), unavailable(60))
        .await;
    assert_eq!(c.ask(0).await, (200, "fallback".into()));
    c.all_see("primary", "cooling_down", Duration::from_secs(5))
        .await;
    assert_eq!(c.primary_requests().await, 1);
    // Concurrent traffic on every replica through the end of the cooldown and after.
    let until = Instant::now() + Duration::from_secs(3);
    let drive = |g: usize| {
        let c = &c;
        async move {
            while Instant::now() < until {
                assert_eq!(c.ask(g).await.0, 200);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::join!(drive(0), drive(1), drive(2));
    assert_eq!(
        c.primary_requests().await,
        2,
        "exactly one probe cluster-wide after the cooldown"
    );
    c.all_see("primary", "cooling_down", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_is_learned_by_the_other_replicas_without_probing() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let c = cluster_of(Spec {
        replicas: 3,
        // A replica that lost the lease stays out 30 s unless it learns the verdict.
        redis: ", probe_lease: 30s",
        health: "  cooldown: { base: 1s }",
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    c.plan_primary(json!([unavailable(1)]), json!({"kind": "ok"}))
        .await;
    assert_eq!(c.ask(0).await, (200, "fallback".into()));
    c.all_see("primary", "cooling_down", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Every replica wants the primary now; one wins the lease and its probe succeeds.
    let started = Instant::now();
    let until = started + Duration::from_secs(2);
    let drive = |g: usize| {
        let c = &c;
        async move {
            while Instant::now() < until {
                assert_eq!(c.ask(g).await.0, 200);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    tokio::join!(drive(0), drive(1), drive(2));
    c.all_see("primary", "healthy", Duration::from_secs(3))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "healed by the probe's verdict, not by the 30 s lease running out"
    );
    for g in 0..3 {
        assert_eq!(c.ask(g).await, (200, "primary".into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_alert_across_replicas_for_a_burst() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let (hook, got) = receiver().await;
    let alerts = format!(
        "alerts: {{ throttle: 300s, sinks: [ {{ kind: webhook, url: \"{hook}/hook\", events: [fallback_activated] }} ] }}"
    );
    let c = cluster_of(Spec {
        replicas: 3,
        extra: &alerts,
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    c.plan_primary(json!([]), json!({"kind": "status", "status": 529}))
        .await;
    for round in 0..5 {
        for g in 0..3 {
            assert_eq!(c.ask(g).await.0, 200, "round {round}");
        }
    }
    eventually("an alert delivered", Duration::from_secs(5), || async {
        !got.lock().unwrap().is_empty()
    })
    .await;
    // Every replica's first alert has been through its dispatcher (and its claim) by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        got.lock().unwrap().len(),
        1,
        "one fallback alert per burst across 3 replicas"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_new_to_a_session_still_reports_its_switch() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let (hook, got) = receiver().await;
    let alerts = format!(
        "alerts: {{ throttle: 1s, sinks: [ {{ kind: webhook, url: \"{hook}/hook\", events: [fallback_activated] }} ] }}"
    );
    let c = cluster_of(Spec {
        extra: &alerts,
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    // The session starts on replica 0, served by the fallback: an alert.
    c.fail_primary_once().await;
    assert_eq!(
        c.ask_in_turn(0, "sess-42", "turn-1").await,
        (200, "fallback".into())
    );
    eventually("the first alert", Duration::from_secs(5), || async {
        got.lock().unwrap().len() == 1
    })
    .await;
    // An operator resets the primary (on replica 0); replica 1 learns it through Redis.
    c.admin_reset(0, "primary").await;
    c.all_see("primary", "healthy", Duration::from_secs(5))
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Replica 1 never served the session; it serves the session's next turn (the failed one's
    // exclusion is shared) from the primary: a switch.
    assert_eq!(
        c.ask_in_turn(1, "sess-42", "turn-2").await,
        (200, "primary".into())
    );
    eventually("the switch alert", Duration::from_secs(5), || async {
        got.lock().unwrap().len() == 2
    })
    .await;
    let body = got.lock().unwrap()[1].2.clone();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("another replica"), "{text}");
    assert!(text.contains("sess-42"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_commands_grow_with_state_changes_not_requests() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let c = cluster_of(Spec {
        replicas: 1,
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    let interval = 0.2;
    // Steady healthy load.
    let before = c.redis_commands(0).await;
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(2) {
        let batch = futures_util::future::join_all((0..10).map(|_| c.ask(0))).await;
        served += batch.iter().filter(|r| r.0 == 200).count();
    }
    let secs = started.elapsed().as_secs_f64();
    let healthy = c.redis_commands(0).await - before;
    eprintln!(
        "healthy: {served} requests in {secs:.1} s ({:.0} req/s), {healthy} redis commands ({:.1}/s)",
        served as f64 / secs,
        healthy / secs
    );
    assert!(
        healthy <= secs / interval + 3.0,
        "{healthy} commands for {served} healthy requests"
    );
    // A failure storm: both backends fail every request (so every request is an attempt that
    // fails: the chain is all cooling down and is tried anyway).
    c.plan_primary(json!([]), json!({"kind": "status", "status": 500}))
        .await;
    c.plan(
        &c.fallback,
        json!([]),
        json!({"kind": "status", "status": 500}),
    )
    .await;
    let before = c.redis_commands(0).await;
    let primary_before = c.primary_requests().await;
    let started = Instant::now();
    let mut failed = 0;
    for _ in 0..25 {
        let batch = futures_util::future::join_all((0..20).map(|_| c.ask(0))).await;
        failed += batch.iter().filter(|r| r.0 != 200).count();
    }
    let secs = started.elapsed().as_secs_f64();
    let storm = c.redis_commands(0).await - before;
    let primary = c.primary_requests().await - primary_before;
    eprintln!(
        "storm: {failed} failed requests ({primary} primary attempts) in {secs:.1} s ({:.0} req/s), {storm} redis commands ({:.1}/s)",
        failed as f64 / secs,
        storm / secs
    );
    assert_eq!(failed, 500);
    // Per interval at most: one MGET, and INCRBY + PEXPIRE per failing scope (2 backends);
    // plus a handful of writes for the ejections themselves.
    let intervals = (secs / interval).ceil() + 1.0;
    assert!(
        storm <= intervals * 5.0 + 10.0,
        "{storm} redis commands for 500 failing requests in {intervals} intervals"
    );
    assert!(
        storm < 100.0,
        "{storm} commands is not far below 500 requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_url_shares_cooldowns_and_never_logs_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _redis = Redis::start_with(
        port,
        &[
            "--user",
            "default",
            "off",
            "--user",
            "switchyard",
            "on",
            ">s3cret-redis-pass",
            "~*",
            "&*",
            "+@all",
        ],
    )
    .await;
    let logs = captured_logs();
    let mark = logs.mark();
    let prefix = prefix();
    let c = cluster_of(Spec {
        url: format!("redis://switchyard:s3cret-redis-pass@127.0.0.1:{port}"),
        ..Spec::new(port, &prefix)
    })
    .await;
    c.fail_primary_once().await;
    assert_eq!(c.ask(0).await, (200, "fallback".into()));
    eventually(
        "replica B sees the cooldown through the ACL user",
        Duration::from_secs(5),
        || async { c.backend_state(1, "primary").await == "cooling_down" },
    )
    .await;
    // A wrong password: refused by redis, and the error logged never shows the password.
    let _bad = cluster_of(Spec {
        url: format!("redis://switchyard:wrong-pass-xyz@127.0.0.1:{port}"),
        ..Spec::new(port, &prefix)
    })
    .await;
    eventually(
        "the refused login is logged",
        Duration::from_secs(5),
        || async { logs.since(mark).contains("redis unavailable") },
    )
    .await;
    let logged = logs.since(mark);
    assert!(!logged.contains("s3cret-redis-pass"), "{logged}");
    assert!(!logged.contains("wrong-pass-xyz"), "{logged}");
}

/// The primary fails a request with a 401 (a give-up: ejected at once, excluded for the turn).
fn unauthorized() -> Value {
    json!({"kind": "status", "status": 401})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_failed_over_on_one_replica_avoids_the_primary_on_the_others() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let c = cluster_of(Spec {
        replicas: 3,
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    c.plan_primary(json!([unauthorized()]), json!({"kind": "ok"}))
        .await;
    // The turn's main call fails over on replica A.
    assert_eq!(
        c.ask_in_turn(0, "sess-7", "turn-1").await,
        (200, "fallback".into())
    );
    assert_eq!(c.primary_requests().await, 1);
    c.others_learn(0, 1, 0).await;
    // The primary's cooldown is over everywhere: only the turn remembers.
    c.reset_everywhere("primary").await;
    // The same turn's next call on replica B, and a side call (no turn, no tools) of the
    // session on replica C, which joins the turn the exclusion made current.
    assert_eq!(
        c.ask_in_turn(1, "sess-7", "turn-1").await,
        (200, "fallback".into())
    );
    assert_eq!(c.ask_as(2, Some("sess-7")).await, (200, "fallback".into()));
    assert_eq!(
        c.primary_requests().await,
        1,
        "a replica sent the turn back to the primary that failed in it"
    );
    // The next turn is free to use the (healthy) primary again.
    assert_eq!(
        c.ask_in_turn(1, "sess-7", "turn-2").await,
        (200, "primary".into())
    );
}

/// Claude Code as captured, with no Switchyard header: its session comes from
/// `X-Claude-Code-Session-Id` and its turn from the conversation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_free_claude_code_turn_stays_off_the_primary_on_every_replica() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let c = cluster_of(Spec {
        replicas: 3,
        anthropic: true,
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    c.plan_primary(json!([]), unauthorized()).await;
    // The main call of a tool loop fails over on replica A; its tool-result call, on B.
    assert_eq!(
        c.replay(0, "claude_code/04_tool_loop_first").await,
        (200, "fallback".into())
    );
    assert_eq!(c.primary_requests().await, 1);
    c.others_learn(0, 1, 0).await;
    c.reset_everywhere("primary").await;
    assert_eq!(
        c.replay(1, "claude_code/05_tool_loop_tool_result").await,
        (200, "fallback".into())
    );
    assert_eq!(
        c.primary_requests().await,
        1,
        "the tool-loop call went back to the primary that failed in its turn"
    );
    // Another session: its main call fails over on A, its title call (no tools) lands on C.
    assert_eq!(
        c.replay(0, "claude_code/06_interactive_main_turn2").await,
        (200, "fallback".into())
    );
    assert_eq!(c.primary_requests().await, 2);
    c.others_learn(0, 2, 0).await;
    c.reset_everywhere("primary").await;
    assert_eq!(
        c.replay(2, "claude_code/07_interactive_title").await,
        (200, "fallback".into())
    );
    assert_eq!(
        c.primary_requests().await,
        2,
        "the title call on another replica hit the backend the main call just failed on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_session_that_failed_over_on_one_replica_stays_on_the_fallback_on_another() {
    let redis = Redis::start().await;
    let prefix = prefix();
    let c = cluster_of(Spec {
        health: "  cooldown: { base: 60s }\n  sticky_sessions: true",
        ..Spec::new(redis.port, &prefix)
    })
    .await;
    c.plan_primary(json!([unauthorized()]), json!({"kind": "ok"}))
        .await;
    assert_eq!(
        c.ask_in_turn(0, "sess-s", "turn-1").await,
        (200, "fallback".into())
    );
    c.others_learn(0, 1, 1).await;
    c.reset_everywhere("primary").await;
    // A new turn (no exclusion applies) of the session, on replica B: still the fallback.
    for turn in ["turn-2", "turn-3"] {
        assert_eq!(
            c.ask_in_turn(1, "sess-s", turn).await,
            (200, "fallback".into())
        );
    }
    assert_eq!(c.primary_requests().await, 1);
    // Another session on B goes to the healthy primary.
    assert_eq!(
        c.ask_in_turn(1, "sess-other", "turn-1").await,
        (200, "primary".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_changes_flow_again_after_redis_returns() {
    let mut redis = Redis::start().await;
    let port = redis.port;
    let prefix = prefix();
    let c = cluster(port, &prefix).await;
    assert_eq!(c.ask(0).await.0, 200);
    redis.kill();
    for g in 0..2 {
        assert_eq!(c.ask(g).await.0, 200);
    }
    let _redis = Redis::start_on(port).await;
    // Pub/sub keeps no history, so each round is a new session's failure on A; B resubscribes
    // (with backoff, or at once when its store sees Redis back) and learns a later one.
    let round = std::sync::atomic::AtomicUsize::new(0);
    eventually(
        "replica B learns A's turn exclusions after redis came back",
        Duration::from_secs(30),
        || async {
            let n = round.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            c.admin_reset(0, "primary").await;
            c.plan_primary(json!([unauthorized()]), json!({"kind": "ok"}))
                .await;
            let _ = c.ask_in_turn(0, &format!("sess-r{n}"), "t").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            c.sessions_tracked(1).await.0 >= 1
        },
    )
    .await;
}
