//! Hot reload (`POST /admin/reload`; SIGHUP and `--watch` call the same path): a valid config
//! becomes the next generation while requests in flight finish on theirs; health, counts and
//! tokens carry over by backend identity; an invalid config is refused with its file:line:key,
//! alerted, and the running config keeps serving.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::procs::TempDir;
use crate::support::*;

struct Reloadable {
    gateway: String,
    file: std::path::PathBuf,
    http: reqwest::Client,
    _dir: TempDir,
    _server: tokio::task::JoinHandle<std::io::Result<switchyard::server::Stopped>>,
}

impl Reloadable {
    /// A gateway serving `yaml` from a file, reloadable (the same loader `serve` uses, with
    /// the tests' environment).
    async fn start(yaml: &str) -> Reloadable {
        install_panic_guard();
        let dir = TempDir::new("reload");
        let file = dir.0.join("switchyard.yaml");
        std::fs::write(&file, yaml).unwrap();
        let load_from = file.clone();
        let loader: switchyard::server::ConfigLoader = Arc::new(move || {
            let text = std::fs::read_to_string(&load_from).map_err(|e| e.to_string())?;
            switchyard::config::Config::from_yaml(&text, "switchyard.yaml", &test_env)
                .map_err(|e| e.to_string())
        });
        let config = loader().unwrap();
        let mut gw = switchyard::app::Gateway::new(Arc::new(config)).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        gw.reload = Some(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(switchyard::server::serve_with_reload(
            listener,
            Arc::new(gw),
            std::future::pending(),
            std::future::pending(),
            Some((loader, rx)),
        ));
        Reloadable {
            gateway,
            file,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _dir: dir,
            _server: server,
        }
    }

    async fn reload(&self, yaml: &str) -> (u16, Value) {
        std::fs::write(&self.file, yaml).unwrap();
        let r = self
            .http
            .post(format!("{}/admin/reload", self.gateway))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn ask(&self, route: &str, stream: bool) -> (u16, Option<String>, String) {
        let mut body = anthropic_body(stream);
        body["model"] = json!(route);
        let r = self
            .http
            .post(format!("{}/v1/messages", self.gateway))
            .json(&body)
            .send()
            .await
            .unwrap();
        let backend = r
            .headers()
            .get("x-switchyard-backend")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), backend, r.text().await.unwrap())
    }

    async fn admin(&self) -> Value {
        self.http
            .get(format!("{}/admin/backends", self.gateway))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn config(primary: &str, fallback: &str, extra: &str) -> String {
    format!(
        r#"
backends:
  primary: {{ api: anthropic_messages, base_url: "{primary}", api_key_env: PRIMARY_KEY }}
  fallback: {{ api: anthropic_messages, base_url: "{fallback}", api_key_env: FALLBACK_KEY }}
routes:
  claude: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
failover: {{ retries: 0 }}
health: {{ cooldown: {{ base: 60s, max: 60s }} }}
{extra}
"#
    )
}

#[tokio::test]
async fn a_reload_serves_the_new_config_and_carries_health_and_tokens_over() {
    let h = start_yaml(&config("PRIMARY_URL", "FALLBACK_URL", "")).await;
    let (p, f) = (h.primary.url(), h.fallback.url());
    let g = Reloadable::start(&config(&p, &f, "")).await;
    h.primary_always(status(529)).await;
    let (status, backend, _) = g.ask("claude", false).await;
    assert_eq!((status, backend.as_deref()), (200, Some("fallback")));

    let new_route = "  sonnet: { chain: [ { backend: fallback, model: claude-sonnet-4-5 } ] }\n";
    let yaml = config(&p, &f, "").replace("failover:", &format!("{new_route}failover:"));
    let (code, v) = g.reload(&yaml).await;
    assert_eq!(code, 200, "{v}");
    assert!(
        v["summary"]
            .as_str()
            .unwrap()
            .starts_with("config reloaded: 2 backends, 2 routes"),
        "{v}"
    );
    // The new route serves; the primary's cooldown survived the reload.
    let (status, backend, _) = g.ask("sonnet", false).await;
    assert_eq!((status, backend.as_deref()), (200, Some("fallback")));
    let admin = g.admin().await;
    assert_eq!(
        backend_scope(&admin, "primary")["state"],
        "cooling_down",
        "{admin}"
    );
    let before = h.primary_requests().await;
    let (_, backend, _) = g.ask("claude", false).await;
    assert_eq!(
        backend.as_deref(),
        Some("fallback"),
        "still skipping the cooling primary"
    );
    assert_eq!(
        h.primary_requests().await,
        before,
        "not tried while it cools down"
    );
    // Counts and tokens carried over (one recorder).
    let metrics = scrape_metrics(&g.http, &g.gateway).await;
    let served = sample_sum(
        &metrics,
        "switchyard_requests_total",
        &[("route", "claude"), ("backend", "fallback")],
    );
    assert_eq!(served, 2.0, "{metrics}");
    assert!(
        sample_sum(
            &metrics,
            "switchyard_tokens_total",
            &[("backend", "fallback"), ("type", "output")]
        ) > 0.0
    );
}

#[tokio::test]
async fn a_config_with_a_mistake_is_refused_alerted_and_the_old_one_keeps_serving() {
    let (hook, got) = receiver().await;
    let h = start_yaml(&config("PRIMARY_URL", "FALLBACK_URL", "")).await;
    let (p, f) = (h.primary.url(), h.fallback.url());
    let alerts = format!("alerts: {{ sinks: [ {{ kind: webhook, url: \"{hook}/hooks\", events: [config_rejected] }} ] }}");
    let g = Reloadable::start(&config(&p, &f, &alerts)).await;
    h.primary_always(ok()).await;
    let broken =
        config(&p, &f, &alerts).replace("model: claude-opus-4-7", "modle: claude-opus-4-7");
    let (code, v) = g.reload(&broken).await;
    assert_eq!(code, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("switchyard.yaml:6") && message.contains("modle"),
        "{message}"
    );
    let (status, backend, _) = g.ask("claude", false).await;
    assert_eq!(
        (status, backend.as_deref()),
        (200, Some("primary")),
        "the old config serves"
    );
    eventually("the config_rejected alert", PROMPTLY, || async {
        !got.lock().unwrap().is_empty()
    })
    .await;
    let body: Value = serde_json::from_slice(&got.lock().unwrap()[0].2).unwrap();
    assert_eq!(body["event"], "config_rejected");
    assert!(body["detail"].as_str().unwrap().contains("modle"), "{body}");
}

/// 100 paced streams in flight across a reload: every frame arrives, each stream ends whole on
/// the generation it started on; the next request is served by the new one.
#[tokio::test]
async fn streams_in_flight_finish_whole_across_a_reload() {
    let h = start_yaml(&config("PRIMARY_URL", "FALLBACK_URL", "")).await;
    let (p, f) = (h.primary.url(), h.fallback.url());
    let g = Arc::new(Reloadable::start(&config(&p, &f, "")).await);
    // One delta per character, 50 ms apart: about a second per stream.
    h.primary_always(ok().with("chunks", 20).with("chunk_interval_ms", 50))
        .await;
    let streams: Vec<_> = (0..100)
        .map(|_| {
            let g = g.clone();
            tokio::spawn(async move { g.ask("claude", true).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reordered = config(&p, &f, "").replace(
        "chain: [ { backend: primary, model: claude-opus-4-7 }, { backend: fallback, model: claude-sonnet-4-5 } ]",
        "chain: [ { backend: fallback, model: claude-sonnet-4-5 }, { backend: primary, model: claude-opus-4-7 } ]",
    );
    let (code, v) = g.reload(&reordered).await;
    assert_eq!(code, 200, "{v}");
    for s in streams {
        let (status, backend, text) = s.await.unwrap();
        assert_eq!((status, backend.as_deref()), (200, Some("primary")));
        let streamed: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v.pointer("/delta/text")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .collect();
        assert_eq!(streamed, "Hello from primary", "every frame: {text}");
        assert!(
            text.trim_end()
                .ends_with("data: {\"type\":\"message_stop\"}"),
            "whole: {text}"
        );
    }
    let (_, backend, _) = g.ask("claude", false).await;
    assert_eq!(
        backend.as_deref(),
        Some("fallback"),
        "the new chain order serves new requests"
    );
}

/// A changed key is used from the next request on (and scrubbed like the old one); a backend
/// the new config no longer has is gone from health.
#[tokio::test]
async fn a_changed_key_is_used_and_scrubbed_and_a_removed_backend_is_dropped() {
    let h = start_yaml(&config("PRIMARY_URL", "FALLBACK_URL", "")).await;
    let (p, f) = (h.primary.url(), h.fallback.url());
    let g = Reloadable::start(&config(&p, &f, "")).await;
    h.primary_always(ok()).await;
    let rotated = config(&p, &f, "")
        .replace("api_key_env: PRIMARY_KEY", "api_key_env: KEY_ONE")
        .replace(", { backend: fallback, model: claude-sonnet-4-5 }", "")
        .replace(
            "  fallback: { api: anthropic_messages, base_url: \"",
            "  # fallback removed: \"",
        );
    let (code, v) = g.reload(&rotated).await;
    assert_eq!(code, 200, "{v}");
    g.ask("claude", false).await;
    let sent = request_log(&h, &h.primary).await.pop().unwrap();
    assert_eq!(sent["headers"]["x-api-key"], "sk-key-one-111111");
    let admin = g.admin().await;
    let names: Vec<&str> = admin["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["primary"], "{admin}");
    // An upstream that echoes the new key: scrubbed.
    h.primary_always(status(401).body(json!({"type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key sk-key-one-111111"}})))
        .await;
    let (_, _, text) = g.ask("claude", false).await;
    assert!(!text.contains("sk-key-one-111111"), "{text}");
}

/// With `health.store: redis` the shared store's tasks stay: a reload that keeps the health
/// scopes (here: another failover policy) is applied; one that adds a backend is refused with
/// a message saying to restart, and the running config keeps serving.
#[tokio::test]
async fn with_redis_a_reload_keeps_the_health_scopes_or_asks_for_a_restart() {
    let redis = crate::support::procs::RedisServer::start().await;
    let h = start_yaml(&config("PRIMARY_URL", "FALLBACK_URL", "")).await;
    let (p, f) = (h.primary.url(), h.fallback.url());
    let store = format!(
        "health: {{ store: redis, redis: {{ url: \"{}\", key_prefix: \"reload-test\" }}, cooldown: {{ base: 60s, max: 60s }} }}",
        redis.url()
    );
    let yaml = config(&p, &f, "").replace("health: { cooldown: { base: 60s, max: 60s } }", &store);
    let g = Reloadable::start(&yaml).await;
    h.primary_always(ok()).await;
    let (code, v) = g.reload(&yaml.replace("retries: 0", "retries: 1")).await;
    assert_eq!(code, 200, "{v}");
    let more = yaml.replace(
        "routes:",
        "  third: { api: anthropic_messages, base_url: \"http://127.0.0.1:9\" }\nroutes:",
    );
    let (code, v) = g.reload(&more).await;
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("restart"),
        "{v}"
    );
    let (status, backend, _) = g.ask("claude", false).await;
    assert_eq!((status, backend.as_deref()), (200, Some("primary")));
}
