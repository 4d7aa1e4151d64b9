//! `upstream.proxy`: backends reached through the operator's HTTP proxy by CONNECT, the
//! bypass list honoured, the proxy's credentials sent to it, and a proxy that refuses a
//! backend counted as that backend's connection failure (failover).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// Each tunnel's target and `Proxy-Authorization`.
type Tunnels = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// A CONNECT proxy: records each tunnel; refuses (403) targets on `refused_port`.
struct ConnectProxy {
    url: String,
    seen: Tunnels,
}

async fn connect_proxy(refused_port: Option<u16>) -> ConnectProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen: Tunnels = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let target = head
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split(' ').next())
                    .unwrap_or("")
                    .to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("proxy-authorization: ")
                            .or_else(|| l.strip_prefix("Proxy-Authorization: "))
                    })
                    .map(str::to_string);
                log.lock().unwrap().push((target.clone(), auth));
                let port: Option<u16> = target.rsplit(':').next().and_then(|p| p.parse().ok());
                if port.is_some() && port == refused_port {
                    let _ = client
                        .write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    ConnectProxy { url, seen }
}

fn config(proxy: &str, extra: &str) -> String {
    format!(
        r#"
backends:
  primary: {{ api: anthropic_messages, base_url: "PRIMARY_URL", api_key_env: PRIMARY_KEY }}
  fallback: {{ api: anthropic_messages, base_url: "FALLBACK_URL", api_key_env: FALLBACK_KEY }}
routes:
  claude: {{ chain: [ {{ backend: primary, model: claude-opus-4-7 }}, {{ backend: fallback, model: claude-sonnet-4-5 }} ] }}
failover: {{ retries: 0 }}
upstream: {{ proxy: "{proxy}"{extra} }}
"#
    )
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

#[tokio::test]
async fn backends_are_reached_through_the_configured_proxy_with_its_credentials() {
    let proxy = connect_proxy(None).await;
    let with_auth = proxy.url.replace("http://", "http://ops:s3cret@");
    let h = start_yaml(&config(&with_auth, "")).await;
    let r = post(&h, "/v1/messages", &anthropic_body(false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.backend(), Some("primary"));
    let seen = proxy.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0].0,
        format!("127.0.0.1:{}", port_of(&h.primary.url()))
    );
    // base64("ops:s3cret")
    assert_eq!(seen[0].1.as_deref(), Some("Basic b3BzOnMzY3JldA=="));
}

#[tokio::test]
async fn hosts_on_the_bypass_list_are_reached_directly() {
    let proxy = connect_proxy(None).await;
    let h = start_yaml(&config(&proxy.url, ", no_proxy: [127.0.0.1]")).await;
    let r = post(&h, "/v1/messages", &anthropic_body(true)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(proxy.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_proxy_that_refuses_a_backend_is_that_backends_connection_failure() {
    let (primary, fallback) = (spawn_mock("primary").await, spawn_mock("fallback").await);
    let proxy = connect_proxy(Some(port_of(&primary.url()))).await;
    let yaml = config(&proxy.url, "")
        .replace("PRIMARY_URL", &primary.url())
        .replace("FALLBACK_URL", &fallback.url());
    let (gateway, _server) = serve_yaml(&yaml).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{gateway}/v1/messages"))
        .json(&anthropic_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-backend"], "fallback");
    let admin: serde_json::Value = http
        .get(format!("{gateway}/admin/backends"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        backend_scope(&admin, "primary")["last_reason"],
        "connection",
        "{admin}"
    );
    assert_eq!(
        proxy.seen.lock().unwrap().len(),
        2,
        "both backends through the proxy"
    );
}
