//! Graceful shutdown of the real binary on real signals: `/readyz` fails at once while the
//! listener still accepts for `shutdown.delay`; then no new connections, in-flight streams
//! finish within `shutdown.grace`, streams still open after it end with their dialect's error
//! event (never a cut), the process exits 0; a second signal exits at once.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::procs::{free_port, TempDir};
use crate::support::*;

struct Gateway {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the exit, at most `limit`.
    async fn exit_within(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(started.elapsed() < limit, "still running after {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn readyz(&self) -> Option<u16> {
        let r = reqwest::get(format!("{}/readyz", self.url)).await.ok()?;
        Some(r.status().as_u16())
    }
}

/// The binary in front of the harness's mocks, draining with `delay` and `grace`.
async fn gateway(h: &Harness, delay: &str, grace: &str) -> Gateway {
    gateway_with_args(h, delay, grace, &[]).await
}

async fn gateway_with_args(h: &Harness, delay: &str, grace: &str, extra: &[&str]) -> Gateway {
    let dir = TempDir::new("shutdown");
    let port = free_port();
    let yaml = format!(
        r#"
listen: 127.0.0.1:{port}
backends:
  primary: {{ api: anthropic_messages, base_url: "{}", api_key_env: PRIMARY_KEY }}
routes:
  claude: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }} ] }}
shutdown: {{ delay: {delay}, grace: {grace} }}
"#,
        h.primary.url()
    );
    let path = dir.0.join("switchyard.yaml");
    std::fs::write(&path, yaml).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(&path)
        .args(extra)
        .env("PRIMARY_KEY", PRIMARY_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let g = Gateway {
        child,
        url,
        _dir: dir,
    };
    eventually("the gateway listens", PROMPTLY, || async {
        g.readyz().await == Some(200)
    })
    .await;
    g
}

/// A streaming request whose body is read to the end in the background.
fn stream_in_background(url: &str) -> tokio::task::JoinHandle<String> {
    let url = format!("{url}/v1/messages");
    tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&json!({"model": "claude", "max_tokens": 64, "stream": true,
                          "messages": [{"role": "user", "content": "Say hello"}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap_or_else(|e| format!("<cut: {e}>"))
    })
}

#[tokio::test]
async fn sigterm_drains_readiness_first_then_lets_streams_finish_and_exits_0() {
    let h = start_yaml("backends:\n  x: { api: openai_chat, base_url: \"PRIMARY_URL/v1\" }\nroutes:\n  r: { chain: [ { backend: x, model: m } ] }\n").await;
    // A 1.2 s stream: 12 deltas, 100 ms apart.
    h.primary_always(ok().with("chunks", 12).with("chunk_interval_ms", 100))
        .await;
    let mut g = gateway(&h, "600ms", "5s").await;
    let stream = stream_in_background(&g.url);
    tokio::time::sleep(Duration::from_millis(200)).await;
    g.signal("TERM");
    eventually(
        "readiness fails at once",
        Duration::from_millis(400),
        || async { g.readyz().await == Some(503) },
    )
    .await;
    // Still accepting during the delay: a new request is served.
    let r = reqwest::Client::new()
        .post(format!("{}/v1/messages", g.url))
        .json(&anthropic_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "served during shutdown.delay");
    // After the delay the listener is closed.
    eventually(
        "the listener closes after the delay",
        Duration::from_secs(2),
        || async {
            tokio::net::TcpStream::connect(g.url.trim_start_matches("http://"))
                .await
                .is_err()
        },
    )
    .await;
    let text = stream.await.unwrap();
    assert!(
        text.contains("message_stop"),
        "the stream finished whole: {text}"
    );
    assert!(!text.contains("shutting_down"), "{text}");
    let (status, _) = g.exit_within(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_stream_still_open_when_the_grace_ends_gets_an_error_event_not_a_cut() {
    let h = start_yaml("backends:\n  x: { api: openai_chat, base_url: \"PRIMARY_URL/v1\" }\nroutes:\n  r: { chain: [ { backend: x, model: m } ] }\n").await;
    // A 6 s stream against a 500 ms grace.
    h.primary_always(ok().with("chunks", 30).with("chunk_interval_ms", 200))
        .await;
    let mut g = gateway(&h, "100ms", "500ms").await;
    let stream = stream_in_background(&g.url);
    tokio::time::sleep(Duration::from_millis(300)).await;
    g.signal("TERM");
    let text = stream.await.unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.starts_with("event: error"),
        "ends with the dialect's error event: {last}"
    );
    assert!(
        last.contains("shutting_down") || last.contains("shutting down"),
        "{last}"
    );
    assert!(
        !text.contains("message_stop"),
        "it did not finish: the grace ended it"
    );
    let (status, took) = g.exit_within(Duration::from_secs(5)).await;
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let h = start_yaml("backends:\n  x: { api: openai_chat, base_url: \"PRIMARY_URL/v1\" }\nroutes:\n  r: { chain: [ { backend: x, model: m } ] }\n").await;
    h.primary_always(ok().with("chunks", 50).with("chunk_interval_ms", 200))
        .await;
    let mut g = gateway(&h, "5s", "30s").await;
    let _stream = stream_in_background(&g.url);
    tokio::time::sleep(Duration::from_millis(200)).await;
    g.signal("TERM");
    eventually("draining", Duration::from_secs(1), || async {
        g.readyz().await == Some(503)
    })
    .await;
    g.signal("INT");
    let (status, took) = g.exit_within(Duration::from_secs(2)).await;
    assert!(
        !status.success(),
        "a forced stop is not a clean exit: {status}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// A request still waiting for its backend when the grace ends gets an error answer in its
/// dialect (`shutting_down`), not a dropped connection.
#[tokio::test]
async fn a_request_still_waiting_when_the_grace_ends_gets_an_error_answer() {
    let h = start_yaml("backends:\n  x: { api: openai_chat, base_url: \"PRIMARY_URL/v1\" }\nroutes:\n  r: { chain: [ { backend: x, model: m } ] }\n").await;
    h.primary_always(ok().with("delay_ms", 10_000)).await;
    let mut g = gateway(&h, "100ms", "500ms").await;
    let url = format!("{}/v1/messages", g.url);
    let waiting = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .post(url)
            .json(&anthropic_body(false))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    g.signal("TERM");
    let (status, body) = waiting.await.unwrap();
    assert!(status >= 500, "{status} {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["type"], "error", "the Anthropic error shape: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{v}"
    );
    let (status, _) = g.exit_within(Duration::from_secs(5)).await;
    assert!(status.success());
}

/// SIGHUP reloads the config file: a route added to it is served, with no restart.
#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let h = start_yaml("backends:\n  x: { api: openai_chat, base_url: \"PRIMARY_URL/v1\" }\nroutes:\n  r: { chain: [ { backend: x, model: m } ] }\n").await;
    h.primary_always(ok()).await;
    let mut g = gateway(&h, "100ms", "1s").await;
    let file = g._dir.0.join("switchyard.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    let added = yaml.replace(
        "routes:\n",
        "routes:\n  fresh: { chain: [ { backend: primary, model: claude-sonnet-4-5 } ] }\n",
    );
    std::fs::write(&file, added).unwrap();
    let ask = |route: &'static str| {
        let url = format!("{}/v1/messages", g.url);
        async move {
            let mut body = anthropic_body(false);
            body["model"] = json!(route);
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(ask("fresh").await, 404, "not a route yet");
    g.signal("HUP");
    eventually("the new route serves", Duration::from_secs(5), || async {
        ask("fresh").await == 200
    })
    .await;
    assert!(g.child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(g.readyz().await, Some(200), "still ready");
}

/// `serve --watch`: a change to the config file is picked up without a signal.
#[tokio::test]
async fn watch_reloads_the_config_file_when_it_changes() {
    let h = start_yaml("backends:\n  x: { api: openai_chat, base_url: \"PRIMARY_URL/v1\" }\nroutes:\n  r: { chain: [ { backend: x, model: m } ] }\n").await;
    h.primary_always(ok()).await;
    let g = gateway_with_args(&h, "100ms", "1s", &["--watch"]).await;
    let file = g._dir.0.join("switchyard.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        yaml.replace(
            "routes:\n",
            "routes:\n  watched: { chain: [ { backend: primary, model: claude-sonnet-4-5 } ] }\n",
        ),
    )
    .unwrap();
    let url = format!("{}/v1/messages", g.url);
    eventually("the watched change serves", Duration::from_secs(8), || {
        let url = url.clone();
        async move {
            let mut body = anthropic_body(false);
            body["model"] = json!("watched");
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                == 200
        }
    })
    .await;
}
