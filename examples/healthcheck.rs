//! The container image's `HEALTHCHECK` probe: `GET /healthz` over plain HTTP, exit 0 on a 200
//! and 1 on anything else (with the reason on stderr).
//!
//! ```text
//! switchyard-healthcheck [URL]      # default http://127.0.0.1:8080/healthz
//! ```
//!
//! The runtime image has no shell, curl or wget (fewer tools for an intruder, nothing to
//! patch), and the `switchyard` binary's command line belongs to the gateway; this std-only
//! program (a few hundred KB) is all a check needs. The Dockerfile builds it with
//! `cargo build --release --example healthcheck` and installs it as
//! /usr/local/bin/switchyard-healthcheck.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const DEFAULT_URL: &str = "http://127.0.0.1:8080/healthz";
/// Each of connect, write and read; the image's HEALTHCHECK allows 3 s in all.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Only the status line is read; a peer sending more without a line break is not the gateway.
const MAX_STATUS_LINE: usize = 512;

fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    match probe(&url) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("switchyard-healthcheck: {url}: {why}");
            ExitCode::FAILURE
        }
    }
}

fn probe(url: &str) -> Result<(), String> {
    // The probe runs beside the gateway (same container or pod), so plain HTTP is all it needs.
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("address {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("address {authority} resolves to nothing"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("socket: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: switchyard-healthcheck\r\n\
         Connection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;

    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 128];
    while !head.windows(2).any(|w| w == b"\r\n") {
        if head.len() >= MAX_STATUS_LINE {
            return Err(format!(
                "no status line in the first {MAX_STATUS_LINE} bytes"
            ));
        }
        let n = stream.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default();
    match line.split(' ').nth(1) {
        Some("200") if line.starts_with("HTTP/1.") => Ok(()),
        _ if line.is_empty() => Err("the connection closed without an answer".to_owned()),
        _ => Err(format!("answered {line:?}")),
    }
}
