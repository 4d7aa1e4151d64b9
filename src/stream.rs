//! Streams: the commit point and the post-commit relay (parsing is `sse`, what each event means
//! is `classify::events`).
//!
//! Until the upstream sends its first *content* event (a text, tool-call or thinking delta),
//! nothing reaches the client: bytes are held, so a failure is still invisible and the engine can
//! fail over. [`await_first_content`] implements that hold under the time-to-first-token clock.
//! After the commit point, [`relay`] passes upstream bytes through unchanged, chunk by chunk
//! (pulling only as fast as the client reads, so backpressure reaches the upstream), watches the
//! gap between content events, and ends any failure with the dialect's error event — never a
//! silent cut, never duplicated content.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::time::{timeout_at, Instant};

use crate::classify;
use crate::classify::events::{classify_event, classify_event_fast, EventKind};
use crate::dialect::{self, Dialect, ErrorKind};
use crate::failure::{Classified, TimeoutKind};
use crate::sse::{SseParser, DEFAULT_MAX_EVENT_BYTES};
use crate::usage::{StreamUsage, Usage};

pub use crate::upstream::ByteStream;

/// The bounds an upstream stream is read under (`limits.max_sse_event_bytes`,
/// `limits.max_held_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    pub max_event: usize,
    pub max_held: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_event: DEFAULT_MAX_EVENT_BYTES,
            max_held: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// A stream that passed its commit point: held bytes plus the rest of the upstream.
pub struct Committed {
    pub dialect: Dialect,
    /// Whole events received up to and including the first content event (and whole events
    /// after it in the same reads), in order: relayed in one write.
    pub held: Vec<Bytes>,
    /// Bytes of an event still incomplete at the commit point (relayed once it completes).
    pub pending: BytesMut,
    pub upstream: ByteStream,
    pub parser: SseParser,
    pub finished: bool,
    /// The model's finish reason, when a held event carried it.
    pub finish_reason: Option<Box<str>>,
    /// The stream's end marker was among the held events.
    pub terminated: bool,
    /// A failure that arrived in the same read as the commit point (an upstream error event
    /// right after the first content): the stream ends with it right after the held bytes.
    pub failure: Option<Classified>,
    pub stall_timeout: Duration,
    pub deadline: Instant,
    /// Set when the backend speaks the other dialect than the client.
    pub translator: Option<crate::dialect::translate::StreamTranslator>,
    /// The token usage the backend's events reported so far.
    pub usage: StreamUsage,
}

/// Reads a 2xx event stream until its first content event. Heartbeats and envelope events are
/// held, not counted; an error event or malformed data before content is a failure like a
/// status error; `first_token_at` bounds the wait (it runs from when the request was sent).
/// More than `limits.max_held` bytes before content, or an event over `limits.max_event`,
/// is an invalid response (the engine fails over).
pub async fn await_first_content(
    dialect: Dialect,
    mut upstream: ByteStream,
    first_token_at: Instant,
    ttft: Duration,
    deadline: Instant,
    stall_timeout: Duration,
    limits: StreamLimits,
) -> Result<Committed, Classified> {
    let mut parser = SseParser::with_limit(limits.max_event);
    let mut held: Vec<Bytes> = Vec::new();
    let mut events = Vec::new();
    let mut ends = Vec::new();
    // A finished answer with no content (a stop reason first) commits only at its end marker
    // or a clean end of the body: until then a failure can still fail over.
    let mut finished = false;
    let mut finish_reason: Option<Box<str>> = None;
    let mut terminated = false;
    let mut usage = StreamUsage::new(dialect);
    loop {
        let chunk = match timeout_at(first_token_at, upstream.next()).await {
            Err(_) if first_token_at >= deadline => {
                return Err(classify::timeout(TimeoutKind::Deadline, ttft))
            }
            Err(_) => return Err(classify::timeout(TimeoutKind::FirstToken, ttft)),
            Ok(None) if finished => {
                let relay_to = (parser.fed() - parser.incomplete_len() as u64) as usize;
                let all = Bytes::from(held.concat());
                return Ok(Committed {
                    dialect,
                    held: vec![all.slice(..relay_to)],
                    pending: BytesMut::from(&all[relay_to..]),
                    upstream: Box::pin(futures_util::stream::empty()),
                    parser,
                    finished,
                    finish_reason,
                    terminated,
                    failure: None,
                    stall_timeout,
                    deadline,
                    translator: None,
                    usage,
                });
            }
            Ok(None) => {
                return Err(classify::invalid_response(
                    "stream ended before any content",
                ))
            }
            Ok(Some(Err(e))) => return Err(classify::classify_transport(&e)),
            Ok(Some(Ok(chunk))) => chunk,
        };
        let overflow = parser.feed_with_ends(&chunk, &mut events, Some(&mut ends));
        held.push(chunk);
        let mut commit = false;
        // Where the relayable bytes end when an error follows the content in this read.
        let mut cut: Option<(u64, Classified)> = None;
        for (i, ev) in events.drain(..).enumerate() {
            usage.observe(&ev);
            match classify_event(dialect, &ev) {
                EventKind::Heartbeat | EventKind::Envelope => {}
                EventKind::Content => commit = true,
                EventKind::Finish => {
                    finished = true;
                    finish_reason = crate::classify::events::finish_reason(dialect, &ev);
                }
                EventKind::Terminal => {
                    commit = true;
                    finished = true;
                    terminated = true;
                    if finish_reason.is_none() {
                        finish_reason = crate::classify::events::finish_reason(dialect, &ev);
                    }
                }
                EventKind::Error(c) if !commit => return Err(c),
                EventKind::Malformed(m) if !commit => return Err(classify::invalid_response(m)),
                EventKind::Error(c) => {
                    // Content came first in this read: a post-commit failure. `i > 0` here.
                    cut = Some((ends[i - 1], c));
                    break;
                }
                // After content in the same read, the relay passes it on as sent.
                EventKind::Malformed(_) => {}
            }
        }
        ends.clear();
        if cut.is_none() {
            if let Err(e) = overflow {
                return Err(classify::invalid_response(e.to_string()));
            }
        }
        if !commit {
            if parser.fed() > limits.max_held as u64 {
                return Err(classify::invalid_response(format!(
                    "upstream sent more than {} bytes before the first content (limits.max_held_bytes)",
                    limits.max_held
                )));
            }
            continue;
        }
        let (relay_to, failure) = match cut {
            Some((at, c)) => (at, Some(c)),
            None => (parser.fed() - parser.incomplete_len() as u64, None),
        };
        let mut pending = BytesMut::new();
        if relay_to < parser.fed() {
            // Hold back what is not a whole event yet (or, after an error, drop it).
            let all = held.concat();
            let relay_to = relay_to as usize;
            if failure.is_none() {
                pending.extend_from_slice(&all[relay_to..]);
            }
            held = vec![Bytes::from(all).slice(..relay_to)];
        }
        return Ok(Committed {
            dialect,
            held,
            pending,
            upstream,
            parser,
            finished,
            finish_reason,
            terminated,
            failure,
            stall_timeout,
            deadline,
            translator: None,
            usage,
        });
    }
}

/// How a relayed stream ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RelayEnd {
    /// The stream ended well; with the model's finish reason as the backend said it
    /// (`stop`, `end_turn`, `tool_calls`…), when it said one.
    Complete {
        finish_reason: Option<Box<str>>,
        /// The tokens the backend reported, when it did.
        usage: Option<Usage>,
    },
    Failed(Classified),
    /// The gateway's shutdown grace ran out before the stream ended (no one's failure).
    ShuttingDown,
}

/// Passes a committed stream to the client. `finish` is called once with how it ended and
/// returns the closing error event to send, if any (see [`post_commit_error_event`]).
///
/// Same dialect: whole upstream events pass through byte for byte, a read at a time (an
/// incomplete event waits for its end, so a split error event is seen whole). With a
/// translator (the backend speaks another dialect), each upstream event is translated as it
/// arrives. Either way an upstream error event is not relayed: the stream ends through
/// `finish`, with one error event in the client's dialect built by the gateway (scrubbed).
pub fn relay(
    c: Committed,
    finish: impl FnOnce(&RelayEnd) -> Option<Bytes> + Send + 'static,
    must_end: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    async_stream::stream! {
        let mut must_end = std::pin::pin!(must_end);
        let Committed { dialect, held, mut pending, mut upstream, mut parser, mut finished, mut finish_reason, terminated, failure: mut early_failure, stall_timeout, deadline, mut translator, mut usage } = c;
        let mut events = Vec::new();
        let mut ends = Vec::new();
        match translator.as_mut() {
            // One write for everything held before the commit point.
            None if held.len() == 1 => {
                for chunk in held {
                    if !chunk.is_empty() {
                        yield Ok(chunk);
                    }
                }
            }
            None => yield Ok(Bytes::from(held.concat())),
            Some(t) => {
                // Translate the held events; a fresh parser then carries on with the stream.
                parser = SseParser::with_limit(parser.limit());
                let mut out = Vec::new();
                for chunk in held.iter().chain(std::iter::once(&pending.split().freeze())) {
                    let _ = parser.feed(chunk, &mut events);
                    for ev in events.drain(..) {
                        t.push(&ev, &mut out);
                    }
                }
                if !out.is_empty() {
                    yield Ok(Bytes::from(out));
                }
            }
        }
        let mut last_content = Instant::now();
        let end = loop {
            if let Some(c) = early_failure.take() {
                break RelayEnd::Failed(c);
            }
            if terminated {
                // The end marker came with the held bytes: nothing more to wait for.
                if let Some(t) = translator.as_mut() {
                    let mut out = Vec::new();
                    t.finish(&mut out);
                    if !out.is_empty() {
                        yield Ok(Bytes::from(out));
                    }
                }
                break RelayEnd::Complete { finish_reason: finish_reason.take(), usage: usage.usage() };
            }
            let stall_at = (last_content + stall_timeout).min(deadline);
            let next = tokio::select! {
                biased;
                () = &mut must_end => break RelayEnd::ShuttingDown,
                next = timeout_at(stall_at, upstream.next()) => next,
            };
            let failure = match next {
                Err(_) => {
                    let kind = if stall_at >= deadline { TimeoutKind::Deadline } else { TimeoutKind::Stall };
                    classify::timeout(kind, stall_timeout)
                }
                Ok(None) if finished => {
                    // The model finished but the upstream closed before its end marker (or in
                    // the middle of it): the incomplete bytes are dropped and the stream is
                    // closed properly, as every client's parser expects.
                    let mut out = Vec::new();
                    match translator.as_mut() {
                        Some(t) => t.finish(&mut out),
                        None if !terminated => out.extend_from_slice(end_marker(dialect)),
                        None => {}
                    }
                    if !out.is_empty() {
                        yield Ok(Bytes::from(out));
                    }
                    break RelayEnd::Complete { finish_reason: finish_reason.take(), usage: usage.usage() };
                }
                Ok(None) => classify::invalid_response("upstream ended the stream before it was complete"),
                Ok(Some(Err(e))) => classify::classify_transport(&e),
                Ok(Some(Ok(chunk))) => {
                    let relayed_upto = parser.fed() - pending.len() as u64;
                    let overflow = match translator {
                        Some(_) => parser.feed(&chunk, &mut events),
                        None => parser.feed_with_ends(&chunk, &mut events, Some(&mut ends)),
                    };
                    let mut done = false;
                    let mut cut: Option<(u64, Classified)> = None;
                    let mut out = Vec::new();
                    for (i, ev) in events.drain(..).enumerate() {
                        usage.observe(&ev);
                        match classify_event_fast(dialect, &ev) {
                            EventKind::Heartbeat | EventKind::Envelope | EventKind::Malformed(_) => {}
                            EventKind::Content => last_content = Instant::now(),
                            EventKind::Finish => {
                                last_content = Instant::now();
                                finished = true;
                                finish_reason = crate::classify::events::finish_reason(dialect, &ev);
                            }
                            EventKind::Terminal => {
                                done = true;
                                // Responses: `response.completed` carries the status.
                                if finish_reason.is_none() {
                                    finish_reason = crate::classify::events::finish_reason(dialect, &ev);
                                }
                            }
                            // The upstream's own error event ends the stream; it is not
                            // relayed (the gateway's closing event carries its message).
                            EventKind::Error(c) => {
                                let at = if i == 0 { relayed_upto } else { ends.get(i - 1).copied().unwrap_or(relayed_upto) };
                                cut = Some((at, c));
                                break;
                            }
                        }
                        if let Some(t) = translator.as_mut() {
                            t.push(&ev, &mut out);
                        }
                    }
                    events.clear();
                    ends.clear();
                    let failure = match (cut, overflow) {
                        (Some((at, c)), _) => Some((at, c)),
                        (None, Err(e)) => Some((parser.fed() - parser.incomplete_len() as u64, classify::invalid_response(e.to_string()))),
                        (None, Ok(())) => None,
                    };
                    match translator.as_mut() {
                        None => {
                            let relay_to = match &failure {
                                Some((at, _)) => *at,
                                None => parser.fed() - parser.incomplete_len() as u64,
                            };
                            let n = relay_to.saturating_sub(relayed_upto) as usize;
                            if pending.is_empty() && n == chunk.len() {
                                yield Ok(chunk);
                            } else {
                                pending.extend_from_slice(&chunk);
                                let whole = pending.split_to(n.min(pending.len())).freeze();
                                if !whole.is_empty() {
                                    yield Ok(whole);
                                }
                            }
                        }
                        Some(t) => {
                            if done && failure.is_none() {
                                t.finish(&mut out);
                            }
                            if !out.is_empty() {
                                yield Ok(Bytes::from(out));
                            }
                        }
                    }
                    if let Some((_, c)) = failure {
                        break RelayEnd::Failed(c);
                    }
                    if done {
                        break RelayEnd::Complete { finish_reason: finish_reason.take(), usage: usage.usage() };
                    }
                    continue;
                }
            };
            break RelayEnd::Failed(failure);
        };
        if let Some(event) = finish(&end) {
            yield Ok(event);
        }
    }
}

/// The dialect's end-of-stream marker.
fn end_marker(dialect: Dialect) -> &'static [u8] {
    match dialect {
        Dialect::OpenAi => b"data: [DONE]\n\n",
        Dialect::Anthropic => b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        // `response.completed` both finishes and ends a Responses stream: a stream cut before
        // it is incomplete, never closed on the upstream's behalf.
        Dialect::Responses => b"",
    }
}

/// A plain error event that ends a stream the client has already seen content from (the
/// server sends a richer one built by `report`).
pub fn post_commit_error_event(dialect: Dialect, failure: &Classified) -> Bytes {
    let kind = ErrorKind::of_failure(failure.reason);
    let message = format!(
        "upstream failed after the response started ({}): {}",
        failure.reason, failure.detail
    );
    dialect::stream_error_event(dialect, kind, failure.reason.as_str(), &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureReason;

    const ANTHROPIC: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[]}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    fn stream_of(chunks: Vec<Result<Bytes, crate::upstream::UpstreamError>>) -> ByteStream {
        Box::pin(futures_util::stream::iter(chunks))
    }

    #[tokio::test(start_paused = true)]
    async fn holds_envelope_and_heartbeats_until_content() {
        let chunks = vec![
            Ok(Bytes::from_static(b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n")),
            Ok(Bytes::from_static(b"event: ping\ndata: {\"type\":\"ping\"}\n\n")),
            Ok(Bytes::from_static(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\nevent: message_stop\ndata: {}\n\n")),
        ];
        let now = Instant::now();
        let ttft = Duration::from_secs(1);
        let c = await_first_content(
            Dialect::Anthropic,
            stream_of(chunks),
            now + ttft,
            ttft,
            now + Duration::from_secs(10),
            ttft,
            StreamLimits::default(),
        )
        .await
        .map_err(|e| e.detail)
        .unwrap();
        assert_eq!(c.held.len(), 3);
        let held: Vec<u8> = c.held.concat();
        let out: Vec<Bytes> = relay(
            c,
            |end| {
                assert!(matches!(end, RelayEnd::Complete { .. }));
                None
            },
            std::future::pending(),
        )
        .map(|r| r.unwrap())
        .collect()
        .await;
        // Everything held before the commit point goes out in one write, byte for byte.
        assert_eq!(out.len(), 1);
        assert_eq!(out[0], held);
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_alone_hit_the_first_token_timeout() {
        let beats = futures_util::stream::unfold((), |_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((Ok(Bytes::from_static(b": keep-alive\n\n")), ()))
        });
        let now = Instant::now();
        let ttft = Duration::from_secs(2);
        let err = await_first_content(
            Dialect::OpenAi,
            Box::pin(beats),
            now + ttft,
            ttft,
            now + Duration::from_secs(60),
            ttft,
            StreamLimits::default(),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(err.reason, FailureReason::Timeout);
        assert_eq!(Instant::now() - now, ttft);
    }

    #[tokio::test(start_paused = true)]
    async fn error_event_before_content_is_a_classified_failure() {
        let chunks = vec![Ok(Bytes::from_static(
            b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ))];
        let now = Instant::now();
        let d = Duration::from_secs(1);
        let err = await_first_content(
            Dialect::Anthropic,
            stream_of(chunks),
            now + d,
            d,
            now + d,
            d,
            StreamLimits::default(),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(err.reason, FailureReason::Overloaded);
    }

    /// The shutdown grace ran out: the relay stops at once (heartbeats or not), says so to its
    /// finisher (which writes the closing event), and blames no backend.
    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_when_the_gateway_says_streams_must_end() {
        let first = futures_util::stream::iter(vec![Ok(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        ))]);
        let beats = futures_util::stream::unfold((), |_| async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((
                Ok(Bytes::from_static(
                    b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n",
                )),
                (),
            ))
        });
        let upstream: ByteStream = Box::pin(first.chain(beats));
        let now = Instant::now();
        let d = Duration::from_secs(30);
        let c = await_first_content(
            Dialect::OpenAi,
            upstream,
            now + d,
            d,
            now + d,
            d,
            StreamLimits::default(),
        )
        .await
        .ok()
        .unwrap();
        let out: Vec<Bytes> = relay(
            c,
            |end| match end {
                RelayEnd::ShuttingDown => Some(Bytes::from_static(b"closing event")),
                _ => panic!("ended as {end:?}"),
            },
            tokio::time::sleep(Duration::from_millis(1050)),
        )
        .map(|r| r.unwrap())
        .collect()
        .await;
        assert_eq!(Instant::now() - now, Duration::from_millis(1050));
        assert_eq!(out.last().unwrap(), &Bytes::from_static(b"closing event"));
        assert_eq!(
            out.len(),
            1 + 10 + 1,
            "the held content, ten deltas, the closing event"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_after_content_ends_with_an_error_event() {
        let first = futures_util::stream::iter(vec![Ok(Bytes::from_static(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        ))]);
        let beats = futures_util::stream::unfold((), |_| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Some((Ok(Bytes::from_static(b": keep-alive\n\n")), ()))
        });
        let upstream: ByteStream = Box::pin(first.chain(beats));
        let now = Instant::now();
        let d = Duration::from_secs(3);
        let c = await_first_content(
            Dialect::OpenAi,
            upstream,
            now + d,
            d,
            now + Duration::from_secs(100),
            d,
            StreamLimits::default(),
        )
        .await
        .ok()
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let out: Vec<Bytes> = relay(
            c,
            move |end| {
                tx.send(end.clone()).unwrap();
                match end {
                    RelayEnd::Failed(f) => Some(post_commit_error_event(Dialect::OpenAi, f)),
                    RelayEnd::Complete { .. } | RelayEnd::ShuttingDown => None,
                }
            },
            std::future::pending(),
        )
        .map(|r| r.unwrap())
        .collect()
        .await;
        let last = String::from_utf8(out.last().unwrap().to_vec()).unwrap();
        assert!(last.starts_with("data: {\"error\""), "{last}");
        assert!(last.contains("stalled"), "{last}");
        assert!(matches!(
            rx.recv().unwrap(),
            RelayEnd::Failed(Classified {
                reason: FailureReason::Timeout,
                ..
            })
        ));
        // Heartbeats were relayed but did not reset the stall clock.
        assert_eq!(Instant::now() - now, d);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_that_ends_early_gets_an_error_event() {
        let chunks = vec![Ok(Bytes::from_static(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\"}\n\n",
        ))];
        let now = Instant::now();
        let d = Duration::from_secs(1);
        let c = await_first_content(
            Dialect::Anthropic,
            stream_of(chunks),
            now + d,
            d,
            now + d * 10,
            d,
            StreamLimits::default(),
        )
        .await
        .ok()
        .unwrap();
        let out: Vec<Bytes> = relay(
            c,
            |end| match end {
                RelayEnd::Failed(f) => Some(post_commit_error_event(Dialect::Anthropic, f)),
                RelayEnd::Complete { .. } | RelayEnd::ShuttingDown => None,
            },
            std::future::pending(),
        )
        .map(|r| r.unwrap())
        .collect()
        .await;
        let last = String::from_utf8(out.last().unwrap().to_vec()).unwrap();
        assert!(
            last.starts_with("event: error\ndata: {\"error\":{\"message\":\"upstream failed")
                || last.starts_with("event: error\ndata: {\"type\":\"error\""),
            "{last}"
        );
    }

    /// Runs a stream through the commit point and the relay; returns what the client got and
    /// how the relay ended (`None`: it failed before the commit point).
    async fn run_stream(
        dialect: Dialect,
        chunks: Vec<&[u8]>,
        limits: StreamLimits,
    ) -> Result<(Vec<u8>, RelayEnd), Classified> {
        let upstream = stream_of(
            chunks
                .into_iter()
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect(),
        );
        let now = Instant::now();
        let d = Duration::from_secs(5);
        let c = await_first_content(dialect, upstream, now + d, d, now + d * 10, d, limits).await?;
        let (tx, rx) = std::sync::mpsc::channel();
        let out: Vec<Bytes> = relay(
            c,
            move |end| {
                tx.send(end.clone()).unwrap();
                match end {
                    RelayEnd::Failed(f) => Some(post_commit_error_event(dialect, f)),
                    RelayEnd::Complete { .. } | RelayEnd::ShuttingDown => None,
                }
            },
            std::future::pending(),
        )
        .map(|r| r.unwrap())
        .collect()
        .await;
        let end = rx.recv().unwrap();
        assert!(rx.try_recv().is_err(), "finish is called once");
        Ok((out.concat(), end))
    }

    const CONTENT: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
    const UPSTREAM_ERROR: &str = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded UPSTREAM-ERROR-TEXT\"}}\n\n";

    /// Found by a hostile upstream: an error event split across reads was scrubbed only in its
    /// last piece, and one sharing a read with the first content was relayed raw and followed
    /// by a second error event. Whatever the write boundaries, the client now gets the content
    /// and exactly one error event, built by the gateway; no upstream error byte is relayed.
    #[tokio::test(start_paused = true)]
    async fn an_upstream_error_after_content_ends_the_stream_with_one_gateway_event_at_every_split()
    {
        let whole = format!("{CONTENT}{UPSTREAM_ERROR}");
        let b = whole.as_bytes();
        for i in 1..b.len() {
            let (out, end) = run_stream(
                Dialect::Anthropic,
                vec![&b[..i], &b[i..]],
                StreamLimits::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("split at {i}: failed before commit: {e:?}"));
            let text = String::from_utf8(out).unwrap();
            assert!(text.starts_with(CONTENT), "split at {i}: {text}");
            assert_eq!(
                text.matches("event: error").count(),
                1,
                "split at {i}: {text}"
            );
            assert!(!text.contains("\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded UPSTREAM"), "split at {i}: upstream bytes relayed: {text}");
            match end {
                RelayEnd::Failed(c) => {
                    assert_eq!(c.reason, FailureReason::Overloaded, "split at {i}")
                }
                RelayEnd::Complete { .. } | RelayEnd::ShuttingDown => {
                    panic!("split at {i}: counted as complete")
                }
            }
        }
    }

    /// The same-dialect relay stays byte-for-byte: at every split point the client gets
    /// exactly the upstream's bytes, in whole events.
    #[tokio::test(start_paused = true)]
    async fn a_clean_stream_is_relayed_byte_for_byte_at_every_split() {
        let b = ANTHROPIC.as_bytes();
        for i in 1..b.len() {
            let (out, end) = run_stream(
                Dialect::Anthropic,
                vec![&b[..i], &b[i..]],
                StreamLimits::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("split at {i}: {e:?}"));
            assert_eq!(out, b, "split at {i}");
            assert!(matches!(end, RelayEnd::Complete { .. }), "split at {i}");
        }
    }

    /// Found by a hostile upstream: one endless line grew memory without bound. Before the
    /// commit point it is an invalid response (the engine fails over).
    #[tokio::test(start_paused = true)]
    async fn an_endless_line_before_content_is_an_invalid_response() {
        let line = vec![b'x'; 4096];
        let mut chunks: Vec<&[u8]> = vec![b"data: "];
        chunks.extend(std::iter::repeat_n(&line[..], 64));
        let limits = StreamLimits {
            max_event: 65536,
            max_held: 1 << 20,
        };
        let err = run_stream(Dialect::OpenAi, chunks, limits)
            .await
            .err()
            .unwrap();
        assert_eq!(err.reason, FailureReason::InvalidResponse);
        assert!(err.detail.contains("65536"), "{}", err.detail);
    }

    /// Bytes held before the first content are capped too (endless heartbeats and envelopes).
    #[tokio::test(start_paused = true)]
    async fn too_many_bytes_before_content_is_an_invalid_response() {
        let ping = b"event: ping\ndata: {\"type\": \"ping\"}\n\n";
        let chunks: Vec<&[u8]> = std::iter::repeat_n(&ping[..], 1000).collect();
        let limits = StreamLimits {
            max_event: 1024,
            max_held: 8192,
        };
        let err = run_stream(Dialect::Anthropic, chunks, limits)
            .await
            .err()
            .unwrap();
        assert_eq!(err.reason, FailureReason::InvalidResponse);
        assert!(err.detail.contains("max_held_bytes"), "{}", err.detail);
    }

    /// After the commit point an oversize event ends the stream with one error event; the
    /// whole events before it were relayed.
    #[tokio::test(start_paused = true)]
    async fn an_oversize_event_after_content_ends_the_stream_with_an_error_event() {
        let big = vec![b'x'; 8192];
        let mut chunks: Vec<&[u8]> =
            vec![CONTENT.as_bytes(), b"event: content_block_delta\ndata: "];
        chunks.extend(std::iter::repeat_n(&big[..], 4));
        let limits = StreamLimits {
            max_event: 16384,
            max_held: 1 << 20,
        };
        let (out, end) = run_stream(Dialect::Anthropic, chunks, limits)
            .await
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(CONTENT), "{text}");
        assert!(!text.contains("xxxx"), "partial event relayed");
        assert_eq!(text.matches("event: error").count(), 1, "{text}");
        assert!(
            matches!(
                end,
                RelayEnd::Failed(Classified {
                    reason: FailureReason::InvalidResponse,
                    ..
                })
            ),
            "{end:?}"
        );
    }

    /// Found by the property test: an upstream that closed right after the stop reason, in
    /// the middle of its end marker, left the client a broken last event. The partial bytes
    /// are dropped and the stream is closed with the dialect's own end marker.
    #[tokio::test(start_paused = true)]
    async fn a_finished_stream_cut_before_its_end_marker_is_closed_properly() {
        let finish = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n";
        for tail in ["", "event: message_stop\ndata: {\"type\":\"mess"] {
            let body = format!("{CONTENT}{finish}{tail}");
            let (out, end) = run_stream(
                Dialect::Anthropic,
                vec![body.as_bytes()],
                StreamLimits::default(),
            )
            .await
            .unwrap();
            let text = String::from_utf8(out).unwrap();
            assert_eq!(
                text,
                format!(
                    "{CONTENT}{finish}event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
                )
            );
            assert!(matches!(end, RelayEnd::Complete { .. }));
        }
    }

    /// A short answer whose end marker arrived with the first content completes at once,
    /// without waiting for the upstream to close.
    #[tokio::test(start_paused = true)]
    async fn an_end_marker_among_the_held_bytes_completes_without_waiting() {
        let whole =
            format!("{CONTENT}event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n");
        let first = futures_util::stream::iter(vec![Ok(Bytes::from(whole.clone()))]);
        let never = futures_util::stream::pending();
        let now = Instant::now();
        let d = Duration::from_secs(5);
        let c = await_first_content(
            Dialect::Anthropic,
            Box::pin(first.chain(never)),
            now + d,
            d,
            now + d * 10,
            d,
            StreamLimits::default(),
        )
        .await
        .unwrap();
        let out: Vec<Bytes> = relay(
            c,
            |end| {
                assert!(matches!(end, RelayEnd::Complete { .. }));
                None
            },
            std::future::pending(),
        )
        .map(|r| r.unwrap())
        .collect()
        .await;
        assert_eq!(out.concat(), whole.as_bytes());
        assert_eq!(Instant::now(), now, "waited for the upstream");
    }

    mod no_panic {
        //! Any bytes, split anywhere, through the parser and both classifiers: no panic, and
        //! the parser's buffer never exceeds its limit. Longer run:
        //! `PROPTEST_CASES=1000000 cargo test --lib stream::tests::no_panic`.
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_bytes_split_anywhere_parse_within_the_limit(
                bytes in proptest::collection::vec(
                    prop_oneof![any::<u8>(), Just(b'\n'), Just(b'\r'), Just(b':')], 0..600),
                cuts in proptest::collection::vec(0usize..600, 0..6),
                limit in 16usize..256,
            ) {
                let mut p = SseParser::with_limit(limit);
                let mut out = Vec::new();
                let mut cuts = cuts;
                cuts.push(bytes.len());
                cuts.sort_unstable();
                let mut at = 0;
                for cut in cuts {
                    let cut = cut.min(bytes.len());
                    if cut < at {
                        continue;
                    }
                    if p.feed(&bytes[at..cut], &mut out).is_err() {
                        prop_assert!(p.incomplete_len() > limit);
                        break;
                    }
                    prop_assert!(p.incomplete_len() <= limit);
                    at = cut;
                }
                for ev in &out {
                    for d in [Dialect::OpenAi, Dialect::Anthropic] {
                        let _ = classify_event(d, ev);
                        let _ = classify_event_fast(d, ev);
                    }
                }
            }
        }
    }
}
