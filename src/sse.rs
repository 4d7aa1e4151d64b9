//! Server-sent events: an incremental, bounded parser.
//!
//! Chunks may be split anywhere (mid-line, mid-UTF-8 character); a line, or an event's lines
//! together, over the parser's limit is an error, so an endless line cannot fill memory. The
//! parser also reports where each event ends in the byte stream, so the relay can pass on
//! whole events only. A leaf: what an event *means* is `classify::events`' job.

/// One parsed server-sent event. `data` is `None` when the block had no data field (a comment).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: Option<Vec<u8>>,
}

/// Incremental SSE parser: feed it chunks split anywhere (mid-line, mid-UTF-8 character).
///
/// Bounded: a line, or an event's lines together, longer than `max_event` bytes is an error
/// (a hostile upstream could otherwise send one endless line into memory). It also tracks
/// where events end in the byte stream, so the relay can pass on whole events only and hold
/// back an incomplete one (an error event split across reads is then seen whole).
#[derive(Debug)]
pub struct SseParser {
    buf: Vec<u8>,
    current: SseEvent,
    /// Whether the current block has any line at all (comments included).
    started: bool,
    /// Bytes of complete lines that belong to the current, unfinished block.
    block_bytes: usize,
    /// Stream offset of `buf[0]`: bytes consumed as complete lines so far.
    consumed: u64,
    max_event: usize,
}

/// An SSE line or event longer than the parser's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("upstream sent an SSE event larger than {limit} bytes")]
pub struct EventTooLarge {
    pub limit: usize,
}

/// The default bound of [`SseParser::default`], as `limits.max_sse_event_bytes`' default.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

impl Default for SseParser {
    fn default() -> Self {
        SseParser::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    pub fn with_limit(max_event: usize) -> SseParser {
        SseParser {
            buf: Vec::new(),
            current: SseEvent::default(),
            started: false,
            block_bytes: 0,
            consumed: 0,
            max_event,
        }
    }

    /// Parses what `chunk` completes. Events before an overflow are still delivered.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        self.feed_with_ends(chunk, out, None)
    }

    /// As [`feed`](Self::feed), also pushing to `ends` each event's end offset in the stream
    /// (just past the blank line that completed it).
    pub fn feed_with_ends(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<SseEvent>,
        mut ends: Option<&mut Vec<u64>>,
    ) -> Result<(), EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        let mut consumed = 0;
        loop {
            let rest = &self.buf[consumed..];
            let Some(pos) = memchr::memchr2(b'\n', b'\r', rest) else {
                break;
            };
            let line_end = pos;
            let mut next = pos + 1;
            if rest[pos] == b'\r' {
                match rest.get(pos + 1) {
                    Some(b'\n') => next += 1,
                    Some(_) => {}
                    // A trailing CR may be the first half of CRLF: wait for the next chunk.
                    None => break,
                }
            }
            let line = &self.buf[consumed..consumed + line_end];
            if line.is_empty() {
                if self.started {
                    out.push(std::mem::take(&mut self.current));
                    if let Some(ends) = ends.as_deref_mut() {
                        ends.push(self.consumed + (consumed + next) as u64);
                    }
                    self.started = false;
                }
                self.block_bytes = 0;
            } else {
                self.started = true;
                self.block_bytes += next;
                let (field, value) = match memchr::memchr(b':', line) {
                    Some(0) => (&line[..0], &line[..0]), // comment
                    Some(i) => {
                        let v = &line[i + 1..];
                        (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
                    }
                    None => (line, &line[..0]),
                };
                match field {
                    b"event" => {
                        self.current.event = Some(String::from_utf8_lossy(value).into_owned())
                    }
                    b"data" => match &mut self.current.data {
                        Some(d) => {
                            d.push(b'\n');
                            d.extend_from_slice(value);
                        }
                        None => self.current.data = Some(value.to_vec()),
                    },
                    _ => {}
                }
            }
            consumed += next;
        }
        self.buf.drain(..consumed);
        self.consumed += consumed as u64;
        if self.incomplete_len() > self.max_event {
            return Err(EventTooLarge {
                limit: self.max_event,
            });
        }
        Ok(())
    }

    /// The largest line or event this parser accepts.
    pub fn limit(&self) -> usize {
        self.max_event
    }

    /// Bytes at the end of what was fed that belong to an event not yet complete.
    pub fn incomplete_len(&self) -> usize {
        self.block_bytes + self.buf.len()
    }

    /// Total bytes fed so far.
    pub fn fed(&self) -> u64 {
        self.consumed + self.buf.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    const ANTHROPIC: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"content\":[]}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\nevent: ping\ndata: {\"type\": \"ping\"}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Héllo\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

    #[test]
    fn parser_gives_the_same_events_at_every_split_point() {
        let whole = parse_all(&[ANTHROPIC.as_bytes()]);
        assert_eq!(whole.len(), 5);
        assert_eq!(whole[3].event.as_deref(), Some("content_block_delta"));
        let bytes = ANTHROPIC.as_bytes();
        for i in 0..bytes.len() {
            assert_eq!(
                parse_all(&[&bytes[..i], &bytes[i..]]),
                whole,
                "split at {i}"
            );
        }
        let crlf = ANTHROPIC.replace('\n', "\r\n");
        let b = crlf.as_bytes();
        for i in 0..b.len() {
            assert_eq!(parse_all(&[&b[..i], &b[i..]]), whole, "crlf split at {i}");
        }
    }

    #[test]
    fn the_parser_reports_where_each_event_ends_and_what_is_incomplete() {
        let mut p = SseParser::with_limit(1024);
        let mut out = Vec::new();
        let mut ends = Vec::new();
        p.feed_with_ends(
            b"data: a\n\n: c\n\ndata: b\n\ndata: par",
            &mut out,
            Some(&mut ends),
        )
        .unwrap();
        assert_eq!(ends, vec![9, 14, 23]);
        assert_eq!(p.incomplete_len(), 9);
        assert_eq!(p.fed(), 32);
        let err = p.feed(&[b'y'; 2000], &mut out).unwrap_err();
        assert_eq!(err, EventTooLarge { limit: 1024 });
    }
}
