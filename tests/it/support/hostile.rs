//! A hostile upstream: a raw HTTP/1.1 server on 127.0.0.1 whose every byte is scripted.
//!
//! `switchyard mock` is the well-behaved provider; this one misbehaves on purpose. Each accepted
//! connection takes the next [`Script`] from a queue (or the default script when the queue is
//! empty), reads and records one request, then runs the script's steps exactly: each
//! [`Step::Write`] is one `write_all` + flush on a `TCP_NODELAY` socket, so the test decides
//! where the gateway's reads can split (mid-event, several events per write, …).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The request head is read up to this size; anything bigger is a harness problem, not a test.
const MAX_REQUEST_HEAD: usize = 256 * 1024;
/// Bodies bigger than this are drained but not recorded past the cap.
const MAX_RECORDED_BODY: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug)]
pub enum Step {
    /// One `write_all` + flush: a write boundary the test controls.
    Write(Vec<u8>),
    Pause(Duration),
    /// Waits until the test opens the gate: ordering by event, not by a guessed pause.
    Wait(Gate),
    /// Half-close the write side (FIN) and stop the script.
    Close,
    /// `SO_LINGER 0` then drop: the peer sees a connection reset (RST).
    Reset,
}

/// Holds a script at a [`Step::Wait`] until [`Gate::open`] (which may come first).
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<tokio::sync::Notify>);

impl Gate {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn open(&self) {
        self.0.notify_one();
    }
}

/// What one connection does after reading the request. Ends with a close when the steps run out.
#[derive(Clone, Debug, Default)]
pub struct Script {
    pub steps: Vec<Step>,
}

/// One request as the hostile upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-cased names, values as sent (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn write(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.steps.push(Step::Write(bytes.as_ref().to_vec()));
        self
    }

    pub fn pause(mut self, duration: Duration) -> Self {
        self.steps.push(Step::Pause(duration));
        self
    }

    pub fn wait(mut self, gate: &Gate) -> Self {
        self.steps.push(Step::Wait(gate.clone()));
        self
    }

    pub fn close(mut self) -> Self {
        self.steps.push(Step::Close);
        self
    }

    pub fn reset(mut self) -> Self {
        self.steps.push(Step::Reset);
        self
    }

    /// A complete response in one write: status line, `headers`, a correct `content-length`
    /// and `body` (any bytes). `connection: close` keeps pooled-connection reuse out of tests.
    pub fn response(status: u16, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Self {
        let body = body.as_ref();
        let mut bytes = head(status, headers);
        bytes.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        bytes.extend_from_slice(body);
        Self::new().write(bytes)
    }

    /// A JSON response (`content-type: application/json`) with a correct length.
    pub fn json(status: u16, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Self {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        Self::response(status, &all, body)
    }

    /// Status line and headers only, ending the head; the body is delimited by the close (no
    /// length, no chunking). Add the body with [`Script::write`].
    pub fn head_only(status: u16, headers: &[(&str, &str)]) -> Self {
        let mut bytes = head(status, headers);
        bytes.extend_from_slice(b"\r\n");
        Self::new().write(bytes)
    }

    /// A response whose body is close-delimited: head, then `body` as its own write, then close.
    pub fn response_without_length(
        status: u16,
        headers: &[(&str, &str)],
        body: impl AsRef<[u8]>,
    ) -> Self {
        Self::head_only(status, headers).write(body).close()
    }

    /// A chunked response: head, then each item of `chunks` framed as one chunk in one write,
    /// then the terminating chunk.
    pub fn chunked<B: AsRef<[u8]>>(status: u16, headers: &[(&str, &str)], chunks: &[B]) -> Self {
        let mut all = headers.to_vec();
        all.push(("transfer-encoding", "chunked"));
        let mut script = Self::head_only(status, &all);
        for chunk in chunks {
            script = script.chunk(chunk);
        }
        script.end_chunks()
    }

    /// An SSE 200 response, chunked, whose writes are exactly `writes` (each one chunk), then
    /// the terminating chunk. Event boundaries are whatever the test put in `writes`.
    pub fn sse<B: AsRef<[u8]>>(writes: &[B]) -> Self {
        Self::sse_open(writes).end_chunks()
    }

    /// Like [`Script::sse`] but without the terminating chunk, so the test decides how the
    /// stream ends (`.reset()`, `.close()`, `.pause(…)`, more `.chunk(…)`).
    pub fn sse_open<B: AsRef<[u8]>>(writes: &[B]) -> Self {
        let mut script = Self::head_only(
            200,
            &[
                ("content-type", "text/event-stream"),
                ("cache-control", "no-cache"),
                ("transfer-encoding", "chunked"),
            ],
        );
        for w in writes {
            script = script.chunk(w);
        }
        script
    }

    /// One chunk of a chunked body in one write. An empty `bytes` is skipped: it would be
    /// the terminating chunk.
    pub fn chunk(self, bytes: impl AsRef<[u8]>) -> Self {
        let bytes = bytes.as_ref();
        if bytes.is_empty() {
            return self;
        }
        self.write(chunk_frame(bytes))
    }

    /// The terminating chunk of a chunked body.
    pub fn end_chunks(self) -> Self {
        self.write(b"0\r\n\r\n")
    }

    /// An SSE 200 whose body is `data: ` then `total_kib` KiB without a newline, in writes of
    /// `write_kib` KiB each, then the terminating chunk: an endless line.
    pub fn endless_sse_line(total_kib: usize, write_kib: usize) -> Self {
        let mut script = Self::sse_open(&[b"data: "]);
        let write = vec![b'x'; write_kib.max(1) * 1024];
        let mut left = total_kib * 1024;
        while left > 0 {
            let n = left.min(write.len());
            script = script.chunk(&write[..n]);
            left -= n;
        }
        script.end_chunks()
    }
}

fn head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut bytes = format!("HTTP/1.1 {status} {}\r\n", reason(status)).into_bytes();
    let mut has_connection = false;
    for (k, v) in headers {
        has_connection |= k.eq_ignore_ascii_case("connection");
        bytes.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if !has_connection {
        bytes.extend_from_slice(b"connection: close\r\n");
    }
    bytes
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Whatever",
    }
}

/// `bytes` framed as one chunk of a chunked body.
pub fn chunk_frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

/// `text` with invalid UTF-8 bytes around and inside it.
pub fn non_utf8_around(text: &str) -> Vec<u8> {
    let mut out = b"\xff\xfe{\"error\":{\"message\":\"\xc3(".to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b" \xed\xa0\x80 \x80\"}}\xff");
    out
}

/// Anthropic Messages SSE events, one complete event (with its blank line) per function.
pub mod anthropic_sse {
    use serde_json::json;

    fn event(name: &str, data: serde_json::Value) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    pub fn message_start() -> String {
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": "msg_hostile", "type": "message", "role": "assistant",
                "model": "claude-opus-4-7", "content": [], "stop_reason": null,
                "stop_sequence": null, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        )
    }

    pub fn block_start() -> String {
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        )
    }

    pub fn text(t: &str) -> String {
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": t}}),
        )
    }

    pub fn ping() -> String {
        event("ping", json!({"type": "ping"}))
    }

    pub fn block_stop() -> String {
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        )
    }

    pub fn message_delta(output_tokens: &str) -> String {
        // Raw text, so a test can plant absurd numbers serde_json would not write.
        format!(
            "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{output_tokens}}}}}\n\n"
        )
    }

    pub fn message_stop() -> String {
        event("message_stop", json!({"type": "message_stop"}))
    }

    pub fn error(kind: &str, message: &str) -> String {
        event(
            "error",
            json!({"type": "error", "error": {"type": kind, "message": message}}),
        )
    }

    /// Everything before the first content: `message_start` and the block start.
    pub fn preamble() -> String {
        message_start() + &block_start()
    }

    /// Everything after the last content: a normal, successful end.
    pub fn ending() -> String {
        block_stop() + &message_delta("5") + &message_stop()
    }

    /// A whole successful stream answering `t`, as one string.
    pub fn whole(t: &str) -> String {
        preamble() + &text(t) + &ending()
    }
}

/// OpenAI Chat Completions SSE events.
pub mod openai_sse {
    use serde_json::json;

    pub fn role() -> String {
        chunk(json!({"role": "assistant", "content": ""}), None)
    }

    pub fn text(t: &str) -> String {
        chunk(json!({"content": t}), None)
    }

    pub fn finish() -> String {
        chunk(json!({}), Some("stop"))
    }

    pub fn done() -> String {
        "data: [DONE]\n\n".to_string()
    }

    pub fn error(kind: &str, message: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"error": {"type": kind, "message": message, "code": null}})
        )
    }

    fn chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 1,
                   "model": "gpt-4o", "choices": [{"index": 0, "delta": delta,
                   "finish_reason": finish}]})
        )
    }

    pub fn whole(t: &str) -> String {
        role() + &text(t) + &finish() + &done()
    }
}

/// OpenAI Responses SSE events (named, with sequence numbers as the real API sends them).
pub mod responses_sse {
    use serde_json::json;

    fn event(name: &str, seq: u32, mut data: serde_json::Value) -> String {
        data["type"] = name.into();
        data["sequence_number"] = seq.into();
        format!("event: {name}\ndata: {data}\n\n")
    }

    fn response(status: &str) -> serde_json::Value {
        json!({"id": "resp_hostile", "object": "response", "created_at": 1, "status": status,
               "model": "gpt-5", "output": []})
    }

    /// response.created, response.in_progress, an output item and its content part: all
    /// envelope, no content yet.
    pub fn preamble() -> String {
        event(
            "response.created",
            0,
            json!({"response": response("in_progress")}),
        ) + &event(
            "response.in_progress",
            1,
            json!({"response": response("in_progress")}),
        ) + &event(
            "response.output_item.added",
            2,
            json!({"output_index": 0,
                "item": {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
        ) + &event(
            "response.content_part.added",
            3,
            json!({"item_id": "msg_1", "output_index": 0,
                "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        )
    }

    pub fn text(t: &str) -> String {
        event(
            "response.output_text.delta",
            4,
            json!({"item_id": "msg_1", "output_index": 0,
            "content_index": 0, "delta": t}),
        )
    }

    pub fn completed() -> String {
        let mut r = response("completed");
        r["usage"] = json!({"input_tokens": 5, "output_tokens": 2, "total_tokens": 7});
        event("response.completed", 9, json!({"response": r}))
    }

    /// `response.failed` with the response's error.
    pub fn failed(code: &str, message: &str) -> String {
        let mut r = response("failed");
        r["error"] = json!({"code": code, "message": message});
        event("response.failed", 5, json!({"response": r}))
    }

    /// An `error` event.
    pub fn error(code: &str, message: &str) -> String {
        event(
            "error",
            5,
            json!({"code": code, "message": message, "param": null}),
        )
    }

    pub fn whole(t: &str) -> String {
        preamble() + &text(t) + &completed()
    }

    /// A non-stream Response object answering `t`.
    pub fn body(t: &str) -> String {
        json!({"id": "resp_hostile", "object": "response", "created_at": 1, "status": "completed",
               "model": "gpt-5", "output": [{"type": "message", "id": "msg_1", "status": "completed",
               "role": "assistant", "content": [{"type": "output_text", "text": t, "annotations": []}]}],
               "usage": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}}).to_string()
    }
}

#[derive(Default)]
struct Shared {
    queue: VecDeque<Script>,
    default: Script,
    requests: Vec<Recorded>,
    connections: usize,
}

/// The running hostile upstream. Dropping it stops the listener and every connection.
pub struct Hostile {
    addr: std::net::SocketAddr,
    shared: Arc<Mutex<Shared>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it aborts them all.
        self.accept.abort();
    }
}

impl Hostile {
    /// Starts with `default` as the script for connections when the queue is empty.
    pub async fn start(default: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared {
            default,
            ..Shared::default()
        }));
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Self {
            addr,
            shared,
            accept,
        }
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues `script` for the next connection.
    pub fn push(&self, script: Script) {
        self.shared.lock().unwrap().queue.push_back(script);
    }

    /// Replaces the script used when the queue is empty.
    pub fn set_default(&self, script: Script) {
        self.shared.lock().unwrap().default = script;
    }

    /// Every request read so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().unwrap().requests.len()
    }

    pub fn connection_count(&self) -> usize {
        self.shared.lock().unwrap().connections
    }

    /// Forgets recorded requests and queued scripts (the default script stays).
    pub fn clear(&self) {
        let mut shared = self.shared.lock().unwrap();
        shared.queue.clear();
        shared.requests.clear();
        shared.connections = 0;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Mutex<Shared>>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let shared = shared.clone();
                connections.spawn(serve_connection(socket, shared));
            }
            // Reap finished connections so the set does not grow over a long property run.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(mut socket: TcpStream, shared: Arc<Mutex<Shared>>) {
    let _ = socket.set_nodelay(true);
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    let script = {
        let mut shared = shared.lock().unwrap();
        shared.connections += 1;
        shared.requests.push(request);
        let next = shared.queue.pop_front();
        next.unwrap_or_else(|| shared.default.clone())
    };
    for step in script.steps {
        match step {
            Step::Write(bytes) => {
                // The gateway may hang up at any point (it failed over): stop quietly.
                if socket.write_all(&bytes).await.is_err() || socket.flush().await.is_err() {
                    return;
                }
            }
            Step::Pause(d) => tokio::time::sleep(d).await,
            Step::Wait(gate) => gate.0.notified().await,
            Step::Close => break,
            Step::Reset => {
                let _ = socket.set_zero_linger();
                drop(socket);
                return;
            }
        }
    }
    let _ = socket.shutdown().await;
    // Give the peer a moment to read the FIN before the socket is dropped.
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(200), socket.read(&mut sink)).await;
}

/// Reads one request (head + `content-length` or chunked body). `None` when the peer closed
/// or sent something that is not an HTTP request; never panics on odd input.
async fn read_request(socket: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST_HEAD || !read_more(socket, &mut buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    if !request_line.next()?.starts_with("HTTP/1.")
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return None;
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = buf[head_end..].to_vec();
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        body = read_chunked(socket, body).await?;
    } else {
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while body.len() < length {
            if !read_more(socket, &mut body).await {
                return None;
            }
            if body.len() > MAX_RECORDED_BODY {
                return None;
            }
        }
        body.truncate(length);
    }
    Some(Recorded {
        method,
        path,
        headers,
        body,
    })
}

async fn read_chunked(socket: &mut TcpStream, mut raw: Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = loop {
            if let Some(i) = find(&raw[at..], b"\r\n") {
                break at + i;
            }
            if raw.len() > MAX_RECORDED_BODY || !read_more(socket, &mut raw).await {
                return None;
            }
        };
        let size_text = String::from_utf8_lossy(&raw[at..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        let data_start = line_end + 2;
        // The chunk's data plus its CRLF (or the final CRLF after the zero chunk).
        while raw.len() < data_start + size + 2 {
            if raw.len() > MAX_RECORDED_BODY || !read_more(socket, &mut raw).await {
                return None;
            }
        }
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&raw[data_start..data_start + size]);
        at = data_start + size + 2;
    }
}

async fn read_more(socket: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match socket.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
