//! `switchyard demo`: two simulated upstreams and the gateway in one process. The primary fails
//! in the ways real providers do; the demo sends requests through the gateway and prints a
//! timeline of who answered, after how many attempts, and how long the failover took.
#![cfg(feature = "mock")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::app::Gateway;
use crate::config::Config;
use crate::mock;

const DEMO_CONFIG: &str = r#"
listen: 127.0.0.1:8080
backends:
  primary:
    api: anthropic_messages
    base_url: PRIMARY_URL
    api_key_env: DEMO_PRIMARY_KEY
  fallback:
    api: anthropic_messages
    base_url: FALLBACK_URL
    api_key_env: DEMO_FALLBACK_KEY
  primary-openai:
    api: openai_chat
    base_url: PRIMARY_URL/v1
    api_key_env: DEMO_PRIMARY_KEY
  fallback-openai:
    api: openai_chat
    base_url: FALLBACK_URL/v1
    api_key_env: DEMO_FALLBACK_KEY
  primary-responses:
    api: openai_responses
    base_url: PRIMARY_URL/v1
    api_key_env: DEMO_PRIMARY_KEY
  fallback-responses:
    api: openai_responses
    base_url: FALLBACK_URL/v1
    api_key_env: DEMO_FALLBACK_KEY
routes:
  claude:
    chain:
      - { backend: primary, model: claude-opus-4-7 }
      - { backend: fallback, model: claude-sonnet-4-5 }
  gpt:
    chain:
      - { backend: primary-openai, model: gpt-4o }
      - { backend: fallback-openai, model: gpt-4o-mini }
  codex:
    chain:
      - { backend: primary-responses, model: gpt-5 }
      - { backend: fallback-responses, model: gpt-5-mini }
failover:
  retries: 2
  backoff: { base: 100ms, max: 1s }
  max_retry_after: 5s
  ttft_timeout: 2s
  stall_timeout: 2s
  deadline: 30s
"#;

struct Scenario {
    /// Forget health state first, so the scenario shows one failure mode on its own.
    fresh: bool,
    title: &'static str,
    plan: Value,
    route: &'static str,
    stream: bool,
    /// Sent as an agent does, with no Switchyard header: Claude Code's session header, and
    /// tools on the main call.
    agent: Option<AgentCall>,
}

#[derive(Clone, Copy)]
enum AgentCall {
    Main,
    Title,
}

/// The session id the demo's Claude-Code-shaped calls carry (`X-Claude-Code-Session-Id`).
const DEMO_AGENT_SESSION: &str = "0c7a3e1e-demo-4a1b-9f00-5e55c0de0001";

pub async fn run(listen: SocketAddr, keep_serving: bool) -> Result<(), String> {
    let primary = mock::spawn("primary").await.map_err(|e| e.to_string())?;
    let fallback = mock::spawn("fallback").await.map_err(|e| e.to_string())?;
    let yaml = DEMO_CONFIG
        .replace("PRIMARY_URL", &primary.url())
        .replace("FALLBACK_URL", &fallback.url());
    let env = |name: &str| match name {
        "DEMO_PRIMARY_KEY" => Some("sk-demo-primary".to_string()),
        "DEMO_FALLBACK_KEY" => Some("sk-demo-fallback".to_string()),
        _ => None,
    };
    let mut config = Config::from_yaml(&yaml, "<demo config>", &env).map_err(|e| e.to_string())?;
    config.listen = listen;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        format!(
            "cannot listen on {listen}: {e} (is something already there? try --listen 127.0.0.1:0)"
        )
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let gw = Arc::new(Gateway::new(Arc::new(config)).map_err(|e| e.to_string())?);
    tokio::spawn(crate::server::serve(listener, gw.clone()));
    let base = format!("http://{addr}");

    println!("Switchyard demo");
    println!("  gateway   {base}");
    println!(
        "  primary   {}  (simulated Anthropic + OpenAI API, will misbehave)",
        primary.url()
    );
    println!("  fallback  {}  (simulated, healthy)", fallback.url());
    println!("  routes    claude: primary → fallback (Anthropic dialect); gpt and codex: the same in the OpenAI chat and Responses dialects");
    println!("  status    {base}/  (the live status page: open it in a browser now)");
    println!();

    let http = reqwest::Client::new();
    let scenarios = [
        Scenario {
            fresh: true,
            title: "healthy primary",
            plan: json!({"steps": [], "then": {"kind": "ok"}}),
            route: "claude",
            stream: false,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "primary overloaded (529 on every attempt)",
            plan: json!({"steps": [], "then": {"kind": "status", "status": 529}}),
            route: "claude",
            stream: false,
            agent: None,
        },
        Scenario {
            fresh: false,
            title: "a follow-up call a moment later (the primary is cooling down: not touched)",
            plan: json!({"steps": [], "then": {"kind": "status", "status": 529}}),
            route: "claude",
            stream: false,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "primary rate-limited once (429, retry-after: 1)",
            plan: json!({"steps": [{"kind": "status", "status": 429, "headers": {"retry-after": "1"}}], "then": {"kind": "ok"}}),
            route: "claude",
            stream: false,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "primary rate-limited for 2 minutes (429, retry-after: 120)",
            plan: json!({"steps": [], "then": {"kind": "status", "status": 429, "headers": {"retry-after": "120"}}}),
            route: "gpt",
            stream: false,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "primary stalls before the first token (stream, heartbeats only)",
            plan: json!({"steps": [], "then": {"kind": "stall", "after_chunks": 0, "heartbeat_ms": 300}}),
            route: "claude",
            stream: true,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "primary resets the connection",
            plan: json!({"steps": [], "then": {"kind": "reset", "after_chunks": 0}}),
            route: "gpt",
            stream: true,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "primary sends a 200 stream whose first event is overloaded_error",
            plan: json!({"steps": [], "then": {"kind": "stream_error", "after_chunks": 0, "error_type": "overloaded_error"}}),
            route: "claude",
            stream: true,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "client's prompt is too long (returned, not failed over)",
            plan: json!({"steps": [], "then": {"kind": "status", "status": 400, "body": {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 250000 tokens > 200000 maximum"}}}}),
            route: "claude",
            stream: false,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "primary dies mid-stream, after content was sent",
            plan: json!({"steps": [], "then": {"kind": "reset", "after_chunks": 2}}),
            route: "claude",
            stream: true,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "a Responses API stream (Codex CLI's dialect); the primary is overloaded (529)",
            plan: json!({"steps": [], "then": {"kind": "status", "status": 529}}),
            route: "codex",
            stream: true,
            agent: None,
        },
        Scenario {
            fresh: true,
            title: "an agent with no Switchyard header (Claude Code's session header only); the primary's key is revoked (401)",
            plan: json!({"steps": [], "then": {"kind": "status", "status": 401}}),
            route: "claude",
            stream: true,
            agent: Some(AgentCall::Main),
        },
        Scenario {
            fresh: true,
            title: "its title call after the primary's cooldown ended: the session's turn still avoids the primary",
            plan: json!({"steps": [], "then": {"kind": "status", "status": 401}}),
            route: "claude",
            stream: false,
            agent: Some(AgentCall::Title),
        },
    ];
    for (i, s) in scenarios.iter().enumerate() {
        if s.fresh {
            for name in ["primary", "primary-openai", "primary-responses"] {
                gw.health.reset_backend(name);
            }
        }
        for m in [&primary, &fallback] {
            let _ = http.post(format!("{}/_mock/reset", m.url())).send().await;
        }
        let _ = http
            .post(format!("{}/_mock/plan", primary.url()))
            .header("content-type", "application/json")
            .body(s.plan.to_string())
            .send()
            .await;
        println!("{}. {}", i + 1, s.title);
        let started = Instant::now();
        match send(&http, &base, s.route, s.stream, s.agent).await {
            Ok(r) => {
                let p = request_count(&http, &primary.url()).await;
                let f = request_count(&http, &fallback.url()).await;
                println!(
                    "   → HTTP {} from {} after {} attempt(s) in {} ms  [primary saw {p}, fallback saw {f}]",
                    r.status,
                    r.backend.as_deref().unwrap_or("-"),
                    r.attempts.as_deref().unwrap_or("-"),
                    started.elapsed().as_millis()
                );
                if let Some(reason) = r.reason {
                    println!("     x-switchyard-reason: {reason}");
                }
                println!("     {}", r.summary);
            }
            Err(e) => println!("   → request failed: {e}"),
        }
        println!();
    }
    print_tokens(&gw);

    let _ = http
        .post(format!("{}/_mock/plan", primary.url()))
        .header("content-type", "application/json")
        .body(json!({"steps": [], "then": {"kind": "status", "status": 529}}).to_string())
        .send()
        .await;
    if !keep_serving {
        return Ok(());
    }
    print!("{}", try_it(&base, &primary.url()));
    println!("Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    drop((primary, fallback));
    Ok(())
}

/// What the demo prints once its timeline is done: where to look and what to paste.
fn try_it(base: &str, primary: &str) -> String {
    let chat = "[{'role': 'user', 'content': 'hi'}]";
    format!(
        "The gateway keeps serving on {base}; the primary now answers 529 to everything.
Status page: {base}/  (each backend's state and the failovers, live)
Try it with curl:
  curl -s {base}/v1/messages -H 'content-type: application/json' \\
    -d '{{\"model\":\"claude\",\"max_tokens\":64,\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}' -i
Try it with the official Python SDKs:
  python3 -m pip install openai anthropic   # or in a venv: python3 -m venv .venv && .venv/bin/pip install openai anthropic
  python3 -c \"from openai import OpenAI; r = OpenAI(base_url='{base}/v1', api_key='unused').chat.completions.with_raw_response.create(model='gpt', messages={chat}); print(r.headers['x-switchyard-backend'], 'answered:', r.parse().choices[0].message.content)\"
  python3 -c \"import anthropic; print(anthropic.Anthropic(base_url='{base}', api_key='unused').messages.create(model='claude', max_tokens=64, messages={chat}).content[0].text)\"
Make the primary healthy again (the status page shows it recovering, then healthy):
  curl -s {primary}/_mock/plan -H 'content-type: application/json' -d '{{\"steps\":[],\"then\":{{\"kind\":\"ok\"}}}}'
"
    )
}

struct DemoResponse {
    status: u16,
    backend: Option<String>,
    attempts: Option<String>,
    reason: Option<String>,
    summary: String,
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    route: &str,
    stream: bool,
    agent: Option<AgentCall>,
) -> Result<DemoResponse, String> {
    let (path, mut body) = if route == "codex" {
        (
            "/v1/responses",
            json!({"model": route, "stream": stream, "store": false, "input": "Say hello"}),
        )
    } else if route == "gpt" {
        (
            "/v1/chat/completions",
            json!({"model": route, "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]}),
        )
    } else {
        (
            "/v1/messages",
            json!({"model": route, "stream": stream, "max_tokens": 64, "messages": [{"role": "user", "content": "Say hello"}]}),
        )
    };
    let mut request = http.post(format!("{base}{path}"));
    if let Some(call) = agent {
        request = request
            .header("x-claude-code-session-id", DEMO_AGENT_SESSION)
            .header("user-agent", "claude-cli/2.1.332 (external, cli)");
        match call {
            AgentCall::Main => {
                body["tools"] = json!([{"name": "Bash", "description": "Run a command",
                    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]);
            }
            AgentCall::Title => {
                body["tools"] = json!([]);
                body["messages"] = json!([{"role": "user", "content": "Write a 3-7 word title for this session."}]);
            }
        }
    }
    let resp = request
        .header("content-type", "application/json")
        .header("anthropic-version", "2023-06-01")
        .timeout(Duration::from_secs(20))
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let backend = header("x-switchyard-backend");
    let attempts = header("x-switchyard-attempts");
    let reason = header("x-switchyard-reason");
    let status = resp.status().as_u16();
    let text = resp
        .text()
        .await
        .unwrap_or_else(|e| format!("<body cut: {e}>"));
    Ok(DemoResponse {
        status,
        backend,
        attempts,
        reason,
        summary: summarize(&text, stream),
    })
}

/// The answer's text, or the error's message, in one line.
fn summarize(body: &str, stream: bool) -> String {
    if stream {
        let mut text = String::new();
        let mut error = None;
        for line in body.lines() {
            let Some(data) = line.strip_prefix("data: ") else {
                continue;
            };
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(e) = v.get("error") {
                error = e.get("message").and_then(Value::as_str).map(str::to_string);
            }
            if v.get("type").and_then(Value::as_str) == Some("response.failed") {
                error = v
                    .pointer("/response/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            let responses_delta = (v.get("type").and_then(Value::as_str)
                == Some("response.output_text.delta"))
            .then(|| v.get("delta"))
            .flatten();
            for t in [
                v.pointer("/delta/text"),
                v.pointer("/choices/0/delta/content"),
                responses_delta,
            ]
            .into_iter()
            .flatten()
            {
                text.push_str(t.as_str().unwrap_or(""));
            }
        }
        return match error {
            Some(e) => format!("streamed {text:?}, then an error event: {e}"),
            None => format!("streamed {text:?}"),
        };
    }
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return body.chars().take(200).collect();
    };
    if let Some(m) = v.pointer("/error/message").and_then(Value::as_str) {
        return format!("error: {m}");
    }
    let text = v
        .pointer("/content/0/text")
        .or_else(|| v.pointer("/choices/0/message/content"))
        .or_else(|| v.pointer("/output/0/content/0/text"))
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("answer {text:?}")
}

/// What each backend served, in tokens (the fallback's bill).
fn print_tokens(gw: &Gateway) {
    println!("Tokens served (as each backend reported them):");
    for b in &gw.config.backends {
        let (input, cached, output) = gw.activity.token_totals(b.id);
        println!(
            "  {:<18} {input:>6} in ({cached} cached) / {output:>5} out",
            b.name
        );
    }
    println!();
}

async fn request_count(http: &reqwest::Client, url: &str) -> u64 {
    let Ok(r) = http.get(format!("{url}/_mock/stats")).send().await else {
        return 0;
    };
    let v: Value = serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or_default();
    v.get("requests").and_then(Value::as_u64).unwrap_or(0)
}
