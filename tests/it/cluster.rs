//! Three gateway replicas behind a real load balancer (nginx, round robin) sharing one real
//! `redis-server`, driven with Claude Code's captured request shapes and no Switchyard header:
//! seed 002 across replicas, one alert per burst across replicas, and Redis dying mid-run.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::procs::{Nginx, RedisServer};
use crate::support::*;

struct Replicas {
    primary: MockHandle,
    fallback: MockHandle,
    gateways: Vec<String>,
    lb: Nginx,
    http: reqwest::Client,
}

const REPLICAS: usize = 3;

async fn replicas(redis: &RedisServer, telegram: &str) -> Replicas {
    let primary = spawn_mock("primary").await;
    let fallback = spawn_mock("fallback").await;
    let yaml = format!(
        r#"
backends:
  primary: {{ api: anthropic_messages, base_url: "{p}", api_key_env: PRIMARY_KEY }}
  fallback: {{ api: anthropic_messages, base_url: "{f}", api_key_env: FALLBACK_KEY }}
routes:
  claude-opus-5-5: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
failover: {{ retries: 1, backoff: {{ base: 5ms, max: 20ms }}, ttft_timeout: 5s }}
health:
  store: redis
  redis: {{ url: "{redis}", key_prefix: "cluster", timeout: 200ms, poll_interval: 100ms }}
  cooldown: {{ base: 60s }}
alerts:
  throttle: 300s
  sinks: [ {{ kind: telegram, bot_token_env: TG_TOKEN, chat_id: "-1001234567890", api_base: "{telegram}", events: [fallback_activated] }} ]
"#,
        p = primary.url(),
        f = fallback.url(),
        redis = redis.url(),
    );
    let mut gateways = Vec::new();
    let mut upstreams = Vec::new();
    for _ in 0..REPLICAS {
        let config = load_config(&yaml, "cluster.yaml", &test_env);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        serve_on(listener, config);
        gateways.push(format!("http://{addr}"));
        upstreams.push(addr.to_string());
    }
    redis.until_subscribed("cluster", REPLICAS).await;
    let lb = Nginx::round_robin(&upstreams).await;
    Replicas {
        primary,
        fallback,
        gateways,
        lb,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

/// A captured Claude Code request (fixtures/agents/claude_code): its headers and body.
fn claude_code(name: &str) -> (Vec<(String, String)>, Value) {
    let c = captured_request(&format!("claude_code/{name}"));
    (c.headers, c.body)
}

impl Replicas {
    /// Sends through the load balancer; returns the serving backend (status 200 asserted).
    async fn send(&self, headers: &[(String, String)], body: &Value) -> String {
        let mut rb = self
            .http
            .post(format!("{}/v1/messages", self.lb.url))
            .body(body.to_string());
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let backend = r
            .headers()
            .get("x-switchyard-backend")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, 200, "{text}");
        backend
    }

    /// A plain request without any session.
    async fn plain(&self) -> String {
        let headers = [("content-type".to_string(), "application/json".to_string())];
        let body = json!({"model": "claude-opus-5-5", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]});
        self.send(&headers, &body).await
    }

    async fn plan_primary(&self, then: Value) {
        let r = self
            .http
            .post(format!("{}/_mock/plan", self.primary.url()))
            .json(&json!({"steps": [], "then": then}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
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

    /// Requests each replica has answered so far (from its own `/metrics`).
    async fn served_per_replica(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for g in &self.gateways {
            let m = self
                .http
                .get(format!("{g}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            out.push(
                m.lines()
                    .filter(|l| l.starts_with("switchyard_requests_total{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum(),
            );
        }
        out
    }

    /// The replica that answered between two [`served_per_replica`] readings.
    fn which(before: &[f64], after: &[f64]) -> usize {
        let moved: Vec<usize> = (0..before.len())
            .filter(|&i| after[i] > before[i])
            .collect();
        assert_eq!(moved.len(), 1, "{before:?} → {after:?}");
        moved[0]
    }

    /// Whether every replica sees some scope of the primary cooling down.
    async fn primary_cooling_everywhere(&self) -> bool {
        for g in &self.gateways {
            let v: Value = self
                .http
                .get(format!("{g}/admin/backends"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let cooling = v["scopes"].as_array().unwrap().iter().any(|s| {
                s["state"] == "cooling_down"
                    && s["backends"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|b| b == "primary")
            });
            if !cooling {
                return false;
            }
        }
        true
    }

    async fn reset_primary_everywhere(&self) {
        for g in &self.gateways {
            let r = self
                .http
                .post(format!("{g}/admin/backends/primary/reset"))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    }
}

#[tokio::test]
async fn three_replicas_behind_nginx_act_as_one_for_header_free_agents() {
    let mut redis = RedisServer::start().await;
    let (telegram, messages) = receiver().await;
    let r = replicas(&redis, &telegram).await;
    let sent = || {
        messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _, _)| path.ends_with("/sendMessage"))
            .count()
    };

    // A burst of failovers spread over the replicas: one Telegram message, not one per replica.
    r.plan_primary(json!({"kind": "status", "status": 529}))
        .await;
    for _ in 0..(4 * REPLICAS) {
        assert_eq!(r.plain().await, "fallback");
    }
    eventually("the burst's alert", Duration::from_secs(5), || async {
        sent() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sent(), 1, "one alert per burst across replicas");

    // Seed 002, header-free: Claude Code's main call fails over on one replica (its key is
    // revoked: 401)...
    r.reset_primary_everywhere().await;
    r.plan_primary(json!({"kind": "status", "status": 401}))
        .await;
    let (headers, main) = claude_code("06_interactive_main_turn2");
    let before = r.served_per_replica().await;
    let primary_before = r.primary_requests().await;
    assert_eq!(r.send(&headers, &main).await, "fallback");
    let main_replica = Replicas::which(&before, &r.served_per_replica().await);
    let primary_seen = r.primary_requests().await;
    assert_eq!(primary_seen - primary_before, 1, "a 401 is not retried");
    // ...every replica learns that the primary is out (shared cooldown), within a bound...
    eventually(
        "every replica sees the primary cooling down",
        Duration::from_secs(2),
        || r.primary_cooling_everywhere(),
    )
    .await;
    // ...so the session's title call, landing on another replica, does not touch it.
    let (title_headers, title) = claude_code("07_interactive_title");
    let before = r.served_per_replica().await;
    assert_eq!(r.send(&title_headers, &title).await, "fallback");
    let title_replica = Replicas::which(&before, &r.served_per_replica().await);
    assert_ne!(
        title_replica, main_replica,
        "nginx sent it to another replica"
    );
    assert_eq!(r.primary_requests().await, primary_seen);
    // The next turn (a new user message) does not restore the primary while it is down.
    let mut next_turn = main.clone();
    let messages_of = next_turn["messages"].as_array_mut().unwrap();
    messages_of.push(json!({"role": "assistant", "content": [{"type": "text", "text": "Done."}]}));
    messages_of
        .push(json!({"role": "user", "content": [{"type": "text", "text": "Now run the tests."}]}));
    let before = r.served_per_replica().await;
    assert_eq!(r.send(&headers, &next_turn).await, "fallback");
    let next_replica = Replicas::which(&before, &r.served_per_replica().await);
    assert_ne!(next_replica, title_replica);
    assert_eq!(r.primary_requests().await, primary_seen);

    // Another session's turn fails over; its cooldown then ends on every replica (a reset
    // stands in for the clock) while the primary is still down: only the turn remembers, and
    // its tool-loop call, on another replica, still stays off the primary.
    r.reset_primary_everywhere().await;
    let (headers, main) = claude_code("04_tool_loop_first");
    let before = r.served_per_replica().await;
    let primary_before = r.primary_requests().await;
    assert_eq!(r.send(&headers, &main).await, "fallback");
    let main_replica = Replicas::which(&before, &r.served_per_replica().await);
    assert_eq!(r.primary_requests().await, primary_before + 1);
    eventually(
        "every replica sees the primary cooling down",
        Duration::from_secs(2),
        || r.primary_cooling_everywhere(),
    )
    .await;
    r.reset_primary_everywhere().await;
    let (headers, tool_loop) = claude_code("05_tool_loop_tool_result");
    let before = r.served_per_replica().await;
    assert_eq!(r.send(&headers, &tool_loop).await, "fallback");
    let loop_replica = Replicas::which(&before, &r.served_per_replica().await);
    assert_ne!(loop_replica, main_replica);
    assert_eq!(
        r.primary_requests().await,
        primary_before + 1,
        "the turn's exclusion did not reach the replica that served its next call"
    );

    // Redis dies mid-run: not one request fails.
    for i in 0..(4 * REPLICAS) {
        if i == REPLICAS {
            redis.kill();
        }
        assert_eq!(r.plain().await, "fallback", "request {i}");
    }
    drop(r.fallback);
}
