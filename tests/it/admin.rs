//! The admin surface is safe by default: a browser page from another origin cannot act on it,
//! a DNS-rebound name cannot read it, a same-host proxy does not make the internet local, an
//! IPv4 caller of a `[::]` listener is still local, and `/v1/models` and a protected `/metrics`
//! need their keys.

use crate::support::*;

/// The gateway's `host:port`, as a client sends it in `Host`.
fn authority(h: &Harness) -> &str {
    h.gateway.trim_start_matches("http://")
}

async fn get(h: &Harness, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut rb = h.http.get(format!("{}{path}", h.gateway));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.unwrap();
    Reply {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        text: resp.text().await.unwrap(),
    }
}

#[tokio::test]
async fn cross_origin_post_cannot_reset_a_backend() {
    let h = start(
        FAST,
        "health: { failure_threshold: { default: 1 }, cooldown: { base: 30s } }",
    )
    .await;
    h.primary_always(status(529)).await;
    h.ask(Dialect::Anthropic, false).await;
    assert_eq!(h.backend_state("primary").await, "cooling_down");

    let reset = "/admin/backends/primary/reset";
    // What a page on evil.example makes the operator's browser send: a form, a no-cors fetch,
    // a fetch from another local port.
    for headers in [
        vec![
            ("origin", "https://evil.example"),
            ("content-type", "application/x-www-form-urlencoded"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![("origin", "https://evil.example")],
        vec![("origin", "null"), ("content-type", "text/plain")],
        vec![
            ("origin", "http://127.0.0.1:3000"),
            ("sec-fetch-site", "same-site"),
        ],
        vec![("content-type", "text/plain")],
        vec![("sec-fetch-site", "cross-site")],
    ] {
        let r = post_raw(&h, reset, String::new(), &headers).await;
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text);
        assert_eq!(r.json()["error"]["type"], "admin_auth");
        assert_eq!(
            h.backend_state("primary").await,
            "cooling_down",
            "{headers:?}"
        );
    }

    // The gateway's own origin (its status page) still may.
    let own = format!("http://{}", authority(&h));
    let r = post_raw(
        &h,
        reset,
        String::new(),
        &[("origin", &own), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(h.backend_state("primary").await, "healthy");
}

#[tokio::test]
async fn rebinding_host_cannot_read_admin_json_status_page_or_feed() {
    let h = start(FAST, "").await;
    let port = authority(&h).rsplit(':').next().unwrap().to_string();
    let evil = format!("evil.example:{port}");
    for path in ["/admin/backends", "/", "/status", "/admin/events"] {
        let r = get(&h, path, &[("host", &evil)]).await;
        assert_eq!(r.status, 403, "{path}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "host_not_allowed", "{path}");
        assert!(!r.text.contains("\"scopes\""), "{path} leaked the snapshot");
    }
    // The same calls by a loopback name are served.
    for host in [format!("localhost:{port}"), authority(&h).to_string()] {
        let r = get(&h, "/admin/backends", &[("host", &host)]).await;
        assert_eq!(r.status, 200, "{host}: {}", r.text);
        let r = get(&h, "/", &[("host", &host)]).await;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    }
}

#[tokio::test]
async fn allowed_hosts_admit_a_name_the_operator_listed() {
    let h = start(FAST, "admin: { allowed_hosts: [switchyard.internal] }").await;
    let r = get(&h, "/admin/backends", &[("host", "switchyard.internal:1")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = get(&h, "/admin/backends", &[("host", "other.internal:1")]).await;
    assert_eq!(r.status, 403, "{}", r.text);
}

#[tokio::test]
async fn proxied_request_from_loopback_is_not_local_without_a_key() {
    let h = start(FAST, "").await;
    for (name, value) in [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-real-ip", "203.0.113.9"),
        ("forwarded", "for=203.0.113.9"),
    ] {
        let r = get(&h, "/admin/backends", &[(name, value)]).await;
        assert_eq!(r.status, 403, "{name}: {value}: {}", r.text);
        assert_eq!(r.json()["error"]["code"], "proxied");
        let r = post_raw(
            &h,
            "/admin/backends/primary/reset",
            String::new(),
            &[(name, value)],
        )
        .await;
        assert_eq!(r.status, 403, "reset {name}: {value}: {}", r.text);
    }
}

#[tokio::test]
async fn trusted_proxy_passes_on_only_a_loopback_client() {
    let h = start(FAST, "admin: { trusted_proxies: [127.0.0.1] }").await;
    let r = get(&h, "/admin/backends", &[("x-forwarded-for", "127.0.0.1")]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A client-sent loopback entry does not hide the internet address the proxy appended.
    let r = get(
        &h,
        "/admin/backends",
        &[("x-forwarded-for", "127.0.0.1, 203.0.113.9")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "proxied_client_not_loopback");
}

#[tokio::test]
async fn admin_key_still_works_from_behind_a_proxy_and_as_query_for_the_feed() {
    let h = start(FAST, "admin: { key_env: GATEWAY_KEY }").await;
    let r = get(
        &h,
        "/admin/backends",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("authorization", "Bearer gw-secret-key"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = get(&h, "/", &[]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.header("www-authenticate").is_some());
    let r = get(&h, "/?key=gw-secret-key", &[]).await;
    assert_eq!(r.status, 200);
    // The feed streams forever: the status line is the answer.
    let feed = h
        .http
        .get(format!("{}/admin/events?key=gw-secret-key", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    drop(feed);
    let r = post_raw(
        &h,
        "/admin/backends/primary/reset?key=gw-secret-key",
        String::new(),
        &[],
    )
    .await;
    assert_eq!(r.status, 401, "a key in a POST URL must not count");
}

#[tokio::test]
async fn ipv4_loopback_caller_of_a_dual_stack_listener_is_local() {
    let yaml = r#"
backends:
  primary: { api: anthropic_messages, base_url: "http://127.0.0.1:9", api_key_env: PRIMARY_KEY }
routes:
  claude: { chain: [ { backend: primary, model: m } ] }
"#;
    let config = load_config(yaml, "test.yaml", &test_env);
    let listener = tokio::net::TcpListener::bind("[::]:0")
        .await
        .expect("this test needs IPv6 (a `[::]` listener)");
    let port = listener.local_addr().unwrap().port();
    let server = serve_on(listener, config);
    let url = format!("http://127.0.0.1:{port}");
    // The peer arrives as ::ffff:127.0.0.1 (a v6-only socket would refuse the connection and
    // fail the test, not pass it).
    let r = reqwest::get(format!("{url}/admin/backends")).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = reqwest::get(format!("{url}/")).await.unwrap();
    assert_eq!(r.status(), 200);
    server.abort();
}

#[tokio::test]
async fn models_needs_the_gateway_key_and_answers_in_the_callers_dialect() {
    let h = start(FAST, "auth: { keys_env: [GATEWAY_KEY] }").await;
    let r = get(&h, "/v1/models", &[]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "invalid_gateway_key");
    assert!(!r.text.contains("\"data\""), "{}", r.text);
    let r = get(&h, "/v1/models", &[("anthropic-version", "2023-06-01")]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = get(&h, "/models", &[("authorization", "Bearer wrong")]).await;
    assert_eq!(r.status, 401);
    for key in [
        ("authorization", "Bearer gw-secret-key"),
        ("x-api-key", "gw-secret-key"),
    ] {
        let r = get(&h, "/v1/models", &[key]).await;
        assert_eq!(r.status, 200, "{key:?}: {}", r.text);
        assert_eq!(r.json()["data"][0]["id"], "claude");
    }
}

#[tokio::test]
async fn protected_metrics_need_a_bearer_key() {
    // (auth/admin config, the key a Prometheus scrape sends)
    for (extra, key) in [
        (
            "auth: { keys_env: [GATEWAY_KEY], metrics: gateway_key }",
            "gw-secret-key",
        ),
        (
            "auth: { metrics: admin }\nadmin: { key_env: KEY_ONE }",
            "sk-key-one-111111",
        ),
    ] {
        let h = start(FAST, extra).await;
        let r = get(&h, "/metrics", &[]).await;
        assert_eq!(r.status, 401, "{extra}: {}", r.text);
        assert!(!r.text.contains("switchyard_"), "{extra}: {}", r.text);
        let r = get(&h, "/metrics", &[("authorization", "Bearer nope")]).await;
        assert_eq!(r.status, 401, "{extra}");
        let r = get(
            &h,
            "/metrics",
            &[("authorization", &format!("Bearer {key}"))],
        )
        .await;
        assert_eq!(r.status, 200, "{extra}: {}", r.text);
        assert!(
            r.text.contains("switchyard_in_flight_requests"),
            "{}",
            r.text
        );
    }
}

#[tokio::test]
async fn admin_protected_metrics_without_a_key_follow_the_local_rule() {
    let h = start(FAST, "auth: { metrics: admin }").await;
    assert_eq!(get(&h, "/metrics", &[]).await.status, 200);
    let r = get(&h, "/metrics", &[("host", "evil.example")]).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = get(&h, "/metrics", &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(r.status, 403, "{}", r.text);
}

#[tokio::test]
async fn the_status_page_and_its_feed_load_as_a_browser_requests_them() {
    let h = start(FAST, "").await;
    let own = format!("http://{}", authority(&h));
    // Typing the URL, then the page's EventSource (same-origin; some browsers add Origin).
    let r = get(
        &h,
        "/",
        &[("sec-fetch-site", "none"), ("sec-fetch-mode", "navigate")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let feed = h
        .http
        .get(format!("{}/admin/events", h.gateway))
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "cors")
        .header("origin", &own)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    assert_eq!(
        feed.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    drop(feed);
    // The same EventSource opened by a page on another origin.
    let r = get(
        &h,
        "/admin/events",
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "foreign_origin");
}
