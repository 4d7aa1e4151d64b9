//! The benchmark rig's own client (`bench/run` drives it), for what no standard load tool
//! measures: per-frame SSE timestamps, and time to first byte around a failover.
//!
//! ```text
//! benchclient load    --url URL --body FILE [-H 'k: v']... -c 64 -n 20000 [--warmup 1000]
//! benchclient streams --url URL --body FILE [-H 'k: v']... -c 10000 --chunks 64 [--open-rate 4000] [--rss-pid PID]
//! benchclient probe   --url URL --body FILE [-H 'k: v']... -n 20 [--stream]
//! ```
//!
//! Every mode prints one JSON object on stdout; times are microseconds. `load` is a closed-loop
//! latency/throughput client (used by `bench/run --quick` so CI needs no oha build). `streams`
//! expects the mock's paced reply whose text is `k00000 k00001 …` split one token per chunk, and
//! checks that every token arrives exactly once and in order (in all three dialects: a Responses
//! stream counts only its `response.output_text.delta` events). `probe` sends sequential requests
//! and reports time to response headers, to the first content, and to the end (or to an in-stream
//! error event) — the failover measurements.
//!
//! Runs on a current-thread runtime: `bench/run` pins it to one core beside the mock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::{json, Value};
use switchyard::sse::{SseEvent, SseParser};

#[derive(Parser)]
#[command(name = "benchclient", about = "Switchyard benchmark client")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Target {
    /// Full URL to POST to.
    #[arg(long)]
    url: String,
    /// File holding the request body.
    #[arg(long)]
    body: PathBuf,
    /// Extra request header, `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop load: `-c` workers send `-n` requests in total.
    Load {
        #[command(flatten)]
        target: Target,
        #[arg(short = 'c', long, default_value_t = 1)]
        concurrency: usize,
        #[arg(short = 'n', long, default_value_t = 1000)]
        requests: u64,
        /// Requests sent (and not recorded) before measuring.
        #[arg(long, default_value_t = 0)]
        warmup: u64,
    },
    /// Paced SSE streams held concurrently, every frame timestamped.
    Streams {
        #[command(flatten)]
        target: Target,
        #[arg(short = 'c', long, default_value_t = 1)]
        concurrency: usize,
        /// Content chunks each stream must deliver (tokens k00000..).
        #[arg(long, default_value_t = 64)]
        chunks: usize,
        /// Streams opened per second (0: all at once).
        #[arg(long, default_value_t = 0.0)]
        open_rate: f64,
        /// Sample VmRSS of these processes every 100 ms while streams run.
        #[arg(long)]
        rss_pid: Vec<u32>,
    },
    /// Sequential requests: time to headers, first content, end.
    Probe {
        #[command(flatten)]
        target: Target,
        #[arg(short = 'n', long, default_value_t = 10)]
        requests: usize,
        /// Parse the response as SSE (time to the first content frame, error events).
        #[arg(long)]
        stream: bool,
        /// Pause between requests, milliseconds.
        #[arg(long, default_value_t = 0)]
        pause_ms: u64,
        /// Requests sent (and not recorded) first, to open the connections.
        #[arg(long, default_value_t = 0)]
        warmup: usize,
        /// POSTed (untimed) before each request: e.g. the gateway's admin reset of the primary,
        /// so that every request measures a fresh failure rather than a skip of the backend
        /// the previous one ejected.
        #[arg(long)]
        before_each: Option<String>,
    },
}

struct Prepared {
    client: reqwest::Client,
    url: String,
    body: Bytes,
    headers: reqwest::header::HeaderMap,
}

impl Prepared {
    fn new(t: &Target, pool: usize) -> Result<Prepared, String> {
        let body = std::fs::read(&t.body).map_err(|e| format!("{}: {e}", t.body.display()))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for h in &t.headers {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| format!("bad header {h:?}: want `name: value`"))?;
            let name = reqwest::header::HeaderName::from_bytes(k.trim().as_bytes())
                .map_err(|e| format!("bad header name {k:?}: {e}"))?;
            let value = reqwest::header::HeaderValue::from_str(v.trim())
                .map_err(|e| format!("bad header value {v:?}: {e}"))?;
            headers.append(name, value);
        }
        let client = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .no_proxy()
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(300))
            .timeout(Duration::from_secs_f64(t.timeout))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Prepared {
            client,
            url: t.url.clone(),
            body: Bytes::from(body),
            headers,
        })
    }

    fn request(&self) -> reqwest::RequestBuilder {
        self.client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(self.body.clone())
    }
}

/// Percentiles of `v` (sorted in place), in microseconds from nanoseconds.
fn summary(v: &mut [u64]) -> Value {
    if v.is_empty() {
        return json!({"count": 0});
    }
    v.sort_unstable();
    let pct = |p: f64| {
        let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[i.clamp(1, v.len()) - 1] as f64 / 1000.0
    };
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64 / 1000.0;
    json!({
        "count": v.len(),
        "min": v[0] as f64 / 1000.0,
        "p50": pct(50.0),
        "p90": pct(90.0),
        "p99": pct(99.0),
        "max": v[v.len() - 1] as f64 / 1000.0,
        "mean": mean,
    })
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let out = rt.block_on(async {
        match cli.cmd {
            Cmd::Load {
                target,
                concurrency,
                requests,
                warmup,
            } => load(&target, concurrency, requests, warmup).await,
            Cmd::Streams {
                target,
                concurrency,
                chunks,
                open_rate,
                rss_pid,
            } => streams(&target, concurrency, chunks, open_rate, rss_pid).await,
            Cmd::Probe {
                target,
                requests,
                stream,
                pause_ms,
                warmup,
                before_each,
            } => probe(&target, requests, stream, pause_ms, warmup, before_each).await,
        }
    });
    match out {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("benchclient: {e}");
            std::process::exit(2);
        }
    }
}

// ----------------------------------------------------------------------------------- load

async fn load(t: &Target, c: usize, n: u64, warmup: u64) -> Result<Value, String> {
    let p = Arc::new(Prepared::new(t, c.max(1))?);
    if warmup > 0 {
        run_load(&p, c, warmup).await;
    }
    let started = Instant::now();
    let (mut lat, errors, non2xx, first_error) = run_load(&p, c, n).await;
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "requests": n,
        "ok": lat.len(),
        "errors": errors,
        "non2xx": non2xx,
        "first_error": first_error,
        "secs": secs,
        "rps": lat.len() as f64 / secs,
        "latency_us": summary(&mut lat),
    }))
}

async fn run_load(p: &Arc<Prepared>, c: usize, n: u64) -> (Vec<u64>, u64, u64, Option<String>) {
    let left = Arc::new(AtomicU64::new(n));
    let mut tasks = Vec::with_capacity(c);
    for _ in 0..c.max(1) {
        let p = Arc::clone(p);
        let left = Arc::clone(&left);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut errors, mut non2xx) = (0u64, 0u64);
            let mut first_error = None;
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |x| x.checked_sub(1))
                .is_ok()
            {
                let t0 = Instant::now();
                match p.request().send().await {
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Ok(_) if status.is_success() => {
                                lat.push(t0.elapsed().as_nanos() as u64)
                            }
                            Ok(b) => {
                                non2xx += 1;
                                first_error.get_or_insert_with(|| {
                                    format!("HTTP {status}: {}", String::from_utf8_lossy(&b))
                                });
                            }
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:?}"));
                    }
                }
            }
            (lat, errors, non2xx, first_error)
        }));
    }
    let mut all = Vec::with_capacity(n as usize);
    let (mut errors, mut non2xx, mut first_error) = (0, 0, None);
    for t in tasks {
        let (lat, e, s, f) = t.await.expect("load task");
        all.extend(lat);
        errors += e;
        non2xx += s;
        if first_error.is_none() {
            first_error = f;
        }
    }
    (all, errors, non2xx, first_error)
}

// -------------------------------------------------------------------------------- streams

/// The token number a content frame carries (`"k00012 "` → 12), if it is one.
fn token(data: &[u8]) -> Option<usize> {
    let i = memchr::memmem::find(data, b"\":\"k")?;
    let digits = data.get(i + 4..i + 9)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn is_terminal(ev: &SseEvent) -> bool {
    matches!(
        ev.event.as_deref(),
        Some("message_stop" | "response.completed")
    ) || ev.data.as_deref().map(<[u8]>::trim_ascii) == Some(b"[DONE]".as_slice())
}

/// A Responses API event other than a text delta: its `*.done` events and the final
/// `response.completed` repeat the whole text, which must not count as chunks.
fn is_responses_non_delta(ev: &SseEvent) -> bool {
    ev.event
        .as_deref()
        .is_some_and(|e| e.starts_with("response.") && e != "response.output_text.delta")
}

fn is_error(ev: &SseEvent) -> bool {
    matches!(ev.event.as_deref(), Some("error" | "response.failed"))
        || ev
            .data
            .as_deref()
            .is_some_and(|d| d.trim_ascii_start().starts_with(b"{\"error\""))
}

#[derive(Default)]
struct StreamResult {
    ttft: Option<u64>,
    gaps: Vec<u64>,
    received: usize,
    out_of_order: usize,
    duplicates: usize,
    terminal: bool,
    error: Option<String>,
}

async fn one_stream(
    p: &Prepared,
    chunks: usize,
    open: &AtomicUsize,
    peak: &AtomicUsize,
) -> StreamResult {
    let mut r = StreamResult {
        gaps: Vec::with_capacity(chunks),
        ..Default::default()
    };
    let t0 = Instant::now();
    let resp = match p.request().send().await {
        Ok(resp) => resp,
        Err(e) => {
            r.error = Some(format!("{e:?}"));
            return r;
        }
    };
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        r.error = Some(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        return r;
    }
    let now_open = open.fetch_add(1, Ordering::Relaxed) + 1;
    peak.fetch_max(now_open, Ordering::Relaxed);
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut seen = vec![false; chunks];
    let mut next = 0usize;
    let mut last: Option<Instant> = None;
    let mut body = resp.bytes_stream();
    'read: while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                r.error = Some(format!("body: {e:?}"));
                break;
            }
        };
        let now = Instant::now();
        events.clear();
        parser
            .feed(&chunk, &mut events)
            .expect("events within the size limit");
        for ev in &events {
            if is_error(ev) {
                r.error = Some(format!(
                    "error event: {}",
                    String::from_utf8_lossy(ev.data.as_deref().unwrap_or_default())
                ));
                break 'read;
            }
            if is_terminal(ev) {
                r.terminal = true;
                continue;
            }
            if is_responses_non_delta(ev) {
                continue;
            }
            let Some(k) = ev.data.as_deref().and_then(token) else {
                continue;
            };
            match seen.get_mut(k) {
                Some(s) if *s => r.duplicates += 1,
                Some(s) => *s = true,
                None => r.out_of_order += 1,
            }
            if k != next {
                r.out_of_order += 1;
            }
            next = k + 1;
            r.received += 1;
            match last {
                None => r.ttft = Some((now - t0).as_nanos() as u64),
                Some(l) => r.gaps.push((now - l).as_nanos() as u64),
            }
            last = Some(now);
        }
    }
    open.fetch_sub(1, Ordering::Relaxed);
    r
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn streams(
    t: &Target,
    c: usize,
    chunks: usize,
    open_rate: f64,
    rss_pids: Vec<u32>,
) -> Result<Value, String> {
    let p = Arc::new(Prepared::new(t, c.max(1))?);
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let rss_peak: Vec<Arc<AtomicU64>> = rss_pids
        .iter()
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    {
        let (pids, peaks, done) = (rss_pids.clone(), rss_peak.clone(), Arc::clone(&done));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while done.load(Ordering::Relaxed) < c {
                tick.tick().await;
                for (pid, peak) in pids.iter().zip(&peaks) {
                    if let Some(kb) = vm_rss_kb(*pid) {
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(c);
    for i in 0..c {
        if open_rate > 0.0 {
            let at = started + Duration::from_secs_f64(i as f64 / open_rate);
            tokio::time::sleep_until(at.into()).await;
        }
        let (p, open, peak, done) = (
            Arc::clone(&p),
            Arc::clone(&open),
            Arc::clone(&peak),
            Arc::clone(&done),
        );
        tasks.push(tokio::spawn(async move {
            let r = one_stream(&p, chunks, &open, &peak).await;
            done.fetch_add(1, Ordering::Relaxed);
            r
        }));
    }
    let mut ttft = Vec::with_capacity(c);
    let mut gaps = Vec::with_capacity(c * chunks);
    let (mut complete, mut received, mut ooo, mut dup, mut failed) = (0usize, 0usize, 0, 0, 0);
    let mut first_error = None;
    for t in tasks {
        let r = t.await.map_err(|e| e.to_string())?;
        received += r.received;
        ooo += r.out_of_order;
        dup += r.duplicates;
        if let Some(e) = r.error {
            failed += 1;
            first_error.get_or_insert(e);
        } else if r.received == chunks && r.terminal && r.out_of_order == 0 && r.duplicates == 0 {
            complete += 1;
        }
        ttft.extend(r.ttft);
        gaps.extend(r.gaps);
    }
    let secs = started.elapsed().as_secs_f64();
    let rss: Vec<Value> = rss_pids
        .iter()
        .zip(&rss_peak)
        .map(|(pid, kb)| json!({"pid": pid, "peak_vmrss_kb": kb.load(Ordering::Relaxed)}))
        .collect();
    Ok(json!({
        "streams": c,
        "complete": complete,
        "failed": failed,
        "first_error": first_error,
        "chunks_expected": c * chunks,
        "chunks_received": received,
        "lost": (c * chunks).saturating_sub(received),
        "out_of_order": ooo,
        "duplicates": dup,
        "peak_open": peak.load(Ordering::Relaxed),
        "secs": secs,
        "ttft_us": summary(&mut ttft),
        "gap_us": summary(&mut gaps),
        "rss": rss,
    }))
}

// ---------------------------------------------------------------------------------- probe

async fn probe(
    t: &Target,
    n: usize,
    stream: bool,
    pause_ms: u64,
    warmup: usize,
    before_each: Option<String>,
) -> Result<Value, String> {
    let p = Prepared::new(t, 4)?;
    let mut runs = Vec::with_capacity(n);
    let (mut ttfb, mut ttft, mut end) = (Vec::new(), Vec::new(), Vec::new());
    let mut stall_to_error = Vec::new();
    for i in 0..warmup + n {
        if let Some(url) = &before_each {
            let r = p
                .client
                .post(url)
                .send()
                .await
                .map_err(|e| format!("--before-each {url}: {e}"))?;
            if !r.status().is_success() {
                return Err(format!("--before-each {url}: {}", r.status()));
            }
        }
        if i == warmup {
            runs.clear();
            ttfb.clear();
            ttft.clear();
            end.clear();
            stall_to_error.clear();
        }
        let t0 = Instant::now();
        let resp = match p.request().send().await {
            Ok(r) => r,
            Err(e) => {
                runs.push(json!({"error": format!("{e:?}")}));
                continue;
            }
        };
        let headers_at = t0.elapsed();
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let attempts = header("x-switchyard-attempts");
        let backend = header("x-switchyard-backend");
        let mut first_content: Option<Duration> = None;
        let mut last_content: Option<Duration> = None;
        let mut error_event: Option<Duration> = None;
        let mut body_error = None;
        if stream {
            let mut parser = SseParser::default();
            let mut events = Vec::new();
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        body_error = Some(format!("{e:?}"));
                        break;
                    }
                };
                let now = t0.elapsed();
                events.clear();
                parser
                    .feed(&chunk, &mut events)
                    .expect("events within the size limit");
                for ev in &events {
                    if is_error(ev) {
                        error_event.get_or_insert(now);
                    } else if ev.data.as_deref().is_some_and(is_content) {
                        first_content.get_or_insert(now);
                        last_content = Some(now);
                    }
                }
            }
        } else {
            match resp.bytes().await {
                Ok(_) => first_content = Some(t0.elapsed()),
                Err(e) => body_error = Some(format!("{e:?}")),
            }
        }
        let finished = t0.elapsed();
        let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
        ttfb.push(headers_at.as_nanos() as u64);
        if let Some(f) = first_content {
            ttft.push(f.as_nanos() as u64);
        }
        end.push(finished.as_nanos() as u64);
        if let (Some(l), Some(e)) = (last_content, error_event) {
            stall_to_error.push((e - l).as_nanos() as u64);
        }
        runs.push(json!({
            "status": status,
            "attempts": attempts,
            "backend": backend,
            "ttfb_us": us(headers_at),
            "ttft_us": first_content.map(us),
            "end_us": us(finished),
            "error_event_us": error_event.map(us),
            "body_error": body_error,
        }));
        if pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }
    Ok(json!({
        "requests": n,
        "ttfb_us": summary(&mut ttfb),
        "ttft_us": summary(&mut ttft),
        "end_us": summary(&mut end),
        "last_content_to_error_us": summary(&mut stall_to_error),
        "runs": runs,
    }))
}

/// A content delta of either dialect as the mock sends it (text, thinking or tool arguments).
fn is_content(data: &[u8]) -> bool {
    let has = |needle: &[u8]| memchr::memmem::find(data, needle).is_some();
    (has(b"\"content_block_delta\"") && !has(b"\"text\":\"\""))
        || (has(b"\"delta\":{") && !has(b"\"content\":\"\"") && has(b"\"content\":\""))
}
