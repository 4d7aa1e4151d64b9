//! Shared health across replicas through a real `redis-server` (started here on a free port;
//! `scripts/test` installs it when missing).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start_on(port: u16) -> Redis {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Redis { child, port };
            }
            tokio::time::sleep(POLL).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start on port {port}");
    }

    async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis::start_on(port).await
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Cluster {
    primary: MockHandle,
    fallback: MockHandle,
    gateways: Vec<String>,
    http: reqwest::Client,
}

async fn cluster(redis_port: u16, prefix: &str) -> Cluster {
    let primary = spawn_mock("primary").await;
    let fallback = spawn_mock("fallback").await;
    let yaml = format!(
        r#"
backends:
  primary: {{ api: openai_chat, base_url: "{}/v1" }}
  fallback: {{ api: openai_chat, base_url: "{}/v1" }}
routes:
  gpt: {{ chain: [ {{ backend: primary, model: m1 }}, {{ backend: fallback, model: m2 }} ] }}
failover: {{ retries: 0, connect_timeout: 1s, ttft_timeout: 2s }}
health:
  store: redis
  redis: {{ url: "redis://127.0.0.1:{redis_port}", key_prefix: "{prefix}", timeout: 200ms, poll_interval: 200ms }}
  cooldown: {{ base: 60s }}
"#,
        primary.url(),
        fallback.url()
    );
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let config = load_config(&yaml, "redis.yaml", &|_| None);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        serve_on(listener, config);
        gateways.push(format!("http://{addr}"));
    }
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
        let r = self
            .http
            .post(format!("{}/v1/chat/completions", self.gateways[gateway]))
            .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        let backend = r
            .headers()
            .get("x-switchyard-backend")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status().as_u16(), backend)
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
