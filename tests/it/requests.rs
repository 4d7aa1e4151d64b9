//! Bad input gets a clear, distinct 4xx in the client's dialect; never a panic or a hang.
//! Also: gateway keys, `/v1/models`, probes, and `serve` refusing a bad config.

use serde_json::{json, Value};

use crate::support::*;

async fn bad(h: &Harness, dialect: Dialect, body: String, content_type: &str) -> Reply {
    post_raw(h, dialect.path(), body, &[("content-type", content_type)]).await
}

fn error_message(dialect: Dialect, r: &Reply) -> String {
    let v = r.json();
    if dialect == Dialect::Anthropic {
        assert_eq!(v["type"], "error", "{}", r.text);
        v["error"]["message"].as_str().unwrap().to_string()
    } else {
        assert!(v["error"]["type"].is_string(), "{}", r.text);
        v["error"]["message"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn bad_requests_get_distinct_errors_in_the_clients_dialect() {
    let h = start(FAST, "limits: { max_body_bytes: 4096 }").await;
    for dialect in Dialect::BOTH {
        let cases: Vec<(String, &str, u16, &str)> = vec![
            (
                "{\"model\": \"claude\",".into(),
                "application/json",
                400,
                "not valid JSON",
            ),
            (
                "[1, 2]".into(),
                "application/json",
                400,
                "must be a JSON object, not an array",
            ),
            (
                "{\"messages\": []}".into(),
                "application/json",
                400,
                "`model` is missing",
            ),
            (
                "{\"model\": 7}".into(),
                "application/json",
                400,
                "`model` must be a string",
            ),
            (
                "{\"model\": \"nope\"}".into(),
                "application/json",
                404,
                "is not a route of this gateway; available: claude, gpt",
            ),
            (
                format!("{{\"model\": \"claude\", \"x\": \"{}\"}}", "a".repeat(5000)),
                "application/json",
                413,
                "limits.max_body_bytes",
            ),
            (
                "model=claude".into(),
                "application/x-www-form-urlencoded",
                415,
                "Content-Type: application/json",
            ),
            ("".into(), "application/json", 400, "empty"),
        ];
        for (body, ct, status, needle) in cases {
            let r = bad(&h, dialect, body.clone(), ct).await;
            assert_eq!(r.status, status, "{dialect} {needle}: {}", r.text);
            let msg = error_message(dialect, &r);
            assert!(
                msg.contains(needle),
                "{dialect}: {msg:?} should contain {needle:?}"
            );
            assert!(r.header("x-request-id").is_some());
        }
    }
    assert_eq!(
        h.primary_requests().await,
        0,
        "bad input must never reach an upstream"
    );
}

#[tokio::test]
async fn gateway_keys_are_required_when_configured() {
    let h = start(FAST, "auth: { keys_env: [GATEWAY_KEY] }").await;
    let body = anthropic_body(false).to_string();
    let r = post_raw(
        &h,
        "/v1/messages",
        body.clone(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    let r = post_raw(
        &h,
        "/v1/messages",
        body.clone(),
        &[("content-type", "application/json"), ("x-api-key", "wrong")],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = post_raw(
        &h,
        "/v1/messages",
        body,
        &[
            ("content-type", "application/json"),
            ("x-api-key", "gw-secret-key"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post_raw(
        &h,
        "/v1/chat/completions",
        openai_body(false).to_string(),
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer gw-secret-key"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = post_raw(
        &h,
        "/v1/chat/completions",
        openai_body(false).to_string(),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "invalid_gateway_key");
}

#[tokio::test]
async fn models_lists_routes_and_probes_answer() {
    let h = start(FAST, "").await;
    let v: Value = h
        .http
        .get(format!("{}/v1/models", h.gateway))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["claude", "gpt"]);
    assert_eq!(v["object"], "list");
    let head = h.http.head(format!("{}/", h.gateway)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    let health = h
        .http
        .get(format!("{}/healthz", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let r = h
        .http
        .get(format!("{}/v1/messages", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = h
        .http
        .post(format!("{}/v2/other", h.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn default_route_catches_unknown_models() {
    let h = start(FAST, "default_route: gpt").await;
    let r = post(
        &h,
        "/v1/chat/completions",
        &json!({"model": "whatever", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_served_by(&r, "oa-primary", 1);
}

#[tokio::test]
async fn slow_header_senders_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = start(FAST, "limits: { header_read_timeout: 500ms }").await;
    let addr = h.gateway.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a trickling client held the connection open");
}

#[test]
fn serve_refuses_a_bad_config_and_names_file_line_and_key() {
    let dir = std::env::temp_dir().join(format!("switchyard-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("typo.yaml", "backends:\n  a:\n    api: openai_chat\n    base_ulr: http://x\nroutes: {}\n", "typo.yaml:4: backends.a.base_ulr: unknown field `base_ulr`"),
        ("env.yaml", "backends:\n  a:\n    api: openai_chat\n    base_url: http://x\n    api_key_env: SWITCHYARD_TEST_SURELY_UNSET\nroutes:\n  r: { chain: [ { backend: a, model: m } ] }\n", "env.yaml:5: backends.a.api_key_env: environment variable SWITCHYARD_TEST_SURELY_UNSET is not set"),
        ("dup.yaml", "backends:\n  a: { api: openai_chat, base_url: http://x }\n  a: { api: openai_chat, base_url: http://y }\nroutes: {}\n", "dup.yaml:3: backends.a: duplicate key \"a\""),
        ("unknown.yaml", "backends:\n  a: { api: openai_chat, base_url: http://x }\nroutes:\n  r:\n    chain:\n      - { backend: b, model: m }\n", "unknown.yaml:6: routes.r.chain[0].backend: unknown backend \"b\""),
    ];
    for (name, text, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--config"])
            .arg(&path)
            .env_remove("SWITCHYARD_TEST_SURELY_UNSET")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{name} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{name}: {err}");
        assert!(err.contains(&*path.to_string_lossy()), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /v1/models/{id}` (what SDKs' `models.retrieve` call): a route in the client's shape,
/// an unknown one as the dialect's 404 naming the routes there are.
#[tokio::test]
async fn a_model_by_id_is_a_route_in_each_dialects_shape() {
    let h = start(FAST, "").await;
    let get = |path: String, anthropic: bool| {
        let mut rb = h.http.get(format!("{}{path}", h.gateway));
        if anthropic {
            rb = rb.header("anthropic-version", "2023-06-01");
        }
        async move {
            let r = rb.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, v) = get("/v1/models/claude".into(), false).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"id": "claude", "object": "model", "created": 0, "owned_by": "switchyard"})
    );
    let (status, v) = get("/v1/models/gpt".into(), true).await;
    assert_eq!(status, 200);
    assert_eq!(v["type"], "model");
    assert_eq!(v["id"], "gpt");
    let (status, v) = get("/models/nope".into(), false).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("claude"),
        "{v}"
    );
    let (status, v) = get("/v1/models/nope".into(), true).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"]["type"], "not_found_error");
}

/// The side endpoints agents call on the same base URL: `POST /v1/messages/count_tokens`
/// (Claude Code, with `?beta=true`) over the route's Anthropic backends and `POST
/// /v1/embeddings` over its OpenAI backends, with failover; neither changes backend health.
#[tokio::test]
async fn count_tokens_and_embeddings_fail_over_without_touching_health() {
    let h = start(FAST, "").await;
    h.primary_always(status(529)).await;
    let r = post(
        &h,
        "/v1/messages/count_tokens?beta=true",
        &json!({"model": "claude", "messages": [{"role": "user", "content": "Say hello"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.backend(), Some("fallback"));
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0, "{}", r.text);
    let r = post(
        &h,
        "/v1/embeddings",
        &json!({"model": "gpt", "input": ["a", "b"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.backend(), Some("oa-fallback"));
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    // A provider without the endpoint (its 404) must not take its models out.
    let admin = h.admin_backends().await;
    assert!(
        admin["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "healthy"),
        "{admin}"
    );
}

#[tokio::test]
async fn a_side_endpoint_on_a_route_without_its_api_is_a_clear_400() {
    let h = start(FAST, "").await;
    let r = post(
        &h,
        "/v1/messages/count_tokens",
        &json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("only anthropic_messages backends serve count_tokens"));
    let r = post(
        &h,
        "/v1/embeddings",
        &json!({"model": "claude", "input": "hi"}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "operation_not_served");
    assert_eq!(h.primary_requests().await, 0);
}
