//! Issue 12: nothing an upstream or a client sends can panic the gateway, leak a secret,
//! exhaust its memory, or defeat failover. The primary is a scripted hostile upstream
//! (`common::hostile`), the fallback a well-behaved mock; the panic guard turns any panic in a
//! gateway task into an aborted test binary.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::hostile::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// The machinery itself

#[tokio::test]
async fn panic_guard_is_installed_by_serve_yaml_and_lets_test_panics_through() {
    let (_url, server) = serve_yaml(MINIMAL_CONFIG).await;
    server.abort();
    let before = PANICS_SEEN_BY_GUARD.load(Ordering::SeqCst);
    // A panic in test code must reach the guard and go on to the default hook, not abort.
    let caught = std::panic::catch_unwind(|| panic!("an assertion in test code"));
    assert!(caught.is_err());
    assert!(PANICS_SEEN_BY_GUARD.load(Ordering::SeqCst) > before);
}

#[test]
fn panic_guard_tells_test_code_from_library_code() {
    for (file, in_tests) in [
        ("tests/reliability.rs", true),
        ("tests/common/hostile.rs", true),
        (
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/failover.rs"),
            true,
        ),
        ("src/failover/engine.rs", false),
        ("/rustc/59807616e/library/std/src/time.rs", false),
        (
            "/home/u/.cargo/registry/src/index/hyper-1.7.0/src/proto/h1/io.rs",
            false,
        ),
        (
            "/home/u/.cargo/registry/src/index/some-crate/tests/x.rs",
            false,
        ),
    ] {
        assert_eq!(is_test_code(file), in_tests, "{file}");
    }
}

/// Run only as the child of the test below: a spawned task panics inside std, the way a
/// gateway connection task would. Without the guard tokio swallows it and this test passes.
#[tokio::test]
#[ignore = "run by panic_guard_aborts_the_binary_when_a_spawned_task_panics_in_library_code"]
async fn guard_child_a_task_panics_in_std() {
    if std::env::var_os("SWITCHYARD_GUARD_CHILD").is_none() {
        return;
    }
    install_panic_guard();
    let task = tokio::spawn(async {
        // Panics in std's `impl Add for Instant`: the issue's class 1.
        let _ = std::time::Instant::now() + Duration::MAX;
    });
    let _ = task.await;
}

#[test]
fn panic_guard_aborts_the_binary_when_a_spawned_task_panics_in_library_code() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "guard_child_a_task_panics_in_std",
            "--ignored",
            "--nocapture",
        ])
        .env("SWITCHYARD_GUARD_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child passed: {stderr}");
    assert!(
        stderr.contains("panic guard") && stderr.contains("time.rs"),
        "{stderr}"
    );
}

const MINIMAL_CONFIG: &str = r#"
listen: 127.0.0.1:0
backends:
  primary: { api: anthropic_messages, base_url: "http://127.0.0.1:9", api_key_env: PRIMARY_KEY }
routes:
  claude:
    chain:
      - { backend: primary, model: claude-opus-4-7 }
"#;

/// Sends `request` on a raw connection and reads until the peer closes (or 5 s).
async fn raw_exchange(addr: &str, request: &[u8]) -> Vec<u8> {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut out)).await;
    out
}

#[tokio::test]
async fn hostile_upstream_writes_exactly_the_script_and_records_the_request() {
    let hostile = Hostile::start(Script::response(500, &[], "default")).await;
    hostile.push(
        Script::new()
            .write(b"HTTP/1.1 200 OK\r\n\r\n\xffraw")
            .close(),
    );
    let addr = hostile.url().trim_start_matches("http://").to_string();
    let first = raw_exchange(
        &addr,
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Key: k1\r\nContent-Length: 4\r\n\r\nbody",
    )
    .await;
    assert_eq!(first, b"HTTP/1.1 200 OK\r\n\r\n\xffraw");
    let chunked =
        b"POST /two HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n";
    let second = raw_exchange(&addr, chunked).await;
    assert!(second.ends_with(b"\r\n\r\ndefault"), "{second:?}");
    // Garbage is not a request: no record, no panic.
    raw_exchange(&addr, b"\x00\xff\r\n\r\n").await;
    let seen = hostile.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(seen[0].header("x-key"), Some("k1"));
    assert_eq!(seen[0].body, b"body");
    assert_eq!(seen[1].body, b"abc");
}
