//! Turns a behaviour into an HTTP answer for one request: which status, headers and
//! body script, or no answer at all (hold / reset before any byte).
//!
//! Dialect specifics live in `openai` / `anthropic` / `responses`; this module only decides the
//! shape of the fault and where in the event sequence it strikes.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};

use super::body::{ConnCtl, Flight, MockBody, Step};
use super::content::{json_bytes, Content, Ctx, Dialect, Frame};
use super::plan::{fault_chunks, Behavior, Reply};
use super::providers::{self, MockProvider};
use super::{anthropic, openai, responses};

/// What the handler does with a request.
pub(crate) enum Answer {
    Respond(Response<MockBody>),
    /// Never send a byte; wait for the client to leave.
    Hold(Flight),
    /// RST the connection before any response byte.
    Reset(Flight),
}

/// Pause before an RST so the chunks already handed to hyper reach the client
/// first (an RST discards unsent data).
const FLUSH_BEFORE_RESET: Duration = Duration::from_millis(25);

const JSON: &str = "application/json";
const SSE: &str = "text/event-stream";

/// `Hello from NAME`, or the trickle text with a multi-byte character in it.
pub(crate) struct Names<'a> {
    pub default_text: &'a str,
    pub trickle_text: &'a str,
    /// The provider whose error dialect `status` faults speak unless they name one.
    pub provider: Option<MockProvider>,
}

pub(crate) fn answer(
    behavior: &Behavior,
    ctx: &Ctx,
    names: &Names<'_>,
    flight: Flight,
    conn: &Arc<ConnCtl>,
) -> Answer {
    match behavior {
        Behavior::Ok(r) => ok(r, ctx, names, flight, conn),
        Behavior::Status(s) => {
            // The provider's own error, when the fault (or the mock) speaks a provider's dialect.
            let provider = s
                .provider
                .as_deref()
                .and_then(MockProvider::parse)
                .or(names.provider);
            let own = match (&s.body, provider) {
                (None, Some(p)) => providers::error(p, s.status, s.error.as_deref(), &ctx.model),
                _ => None,
            };
            let (status, body, own_headers) = match own {
                Some(e) => (e.status, e.body, e.headers),
                None => {
                    let body = match &s.body {
                        Some(serde_json::Value::String(raw)) => {
                            Bytes::copy_from_slice(raw.as_bytes())
                        }
                        Some(v) => json_bytes(v),
                        None => match ctx.dialect {
                            Dialect::OpenAi | Dialect::Responses => {
                                openai::status_body(ctx, s.status)
                            }
                            Dialect::Anthropic => anthropic::status_body(ctx, s.status),
                        },
                    };
                    (s.status, body, Vec::new())
                }
            };
            let content_type = if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
                JSON
            } else {
                "text/plain; charset=utf-8"
            };
            let mut resp = full(ctx, status, content_type, body, flight);
            let own_headers: BTreeMap<String, String> = own_headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            extra_headers(&mut resp, &own_headers);
            // The fault's own headers last: a test can always override the provider's.
            extra_headers(&mut resp, &s.headers);
            Answer::Respond(resp)
        }
        Behavior::StreamError(s) => {
            if !ctx.stream {
                let status = status_for_error_type(ctx.dialect, &s.error_type);
                let body = match ctx.dialect {
                    Dialect::OpenAi | Dialect::Responses => {
                        openai::typed_error_body(&s.error_type, s.message.as_deref())
                    }
                    Dialect::Anthropic => {
                        anthropic::typed_error_body(ctx, &s.error_type, s.message.as_deref())
                    }
                };
                return Answer::Respond(full(ctx, status, JSON, body, flight));
            }
            let content = content(
                ctx,
                names.default_text,
                s.text.as_deref(),
                fault_chunks(s.chunks, s.after_chunks),
            );
            let mut steps = VecDeque::new();
            let sent = cut(frames(ctx, &content), s.after_chunks);
            let seq = sent.len();
            push_frames(&mut steps, sent, s.chunk_interval_ms);
            steps.push_back(Step::Data(match ctx.dialect {
                Dialect::OpenAi => openai::stream_error_frame(&s.error_type, s.message.as_deref()),
                Dialect::Anthropic => {
                    anthropic::stream_error_frame(ctx, &s.error_type, s.message.as_deref())
                }
                Dialect::Responses => {
                    responses::stream_error_frame(ctx, &s.error_type, s.message.as_deref(), seq)
                }
            }));
            Answer::Respond(sse(ctx, steps, flight, conn))
        }
        Behavior::Stall(s) => {
            if !ctx.stream || !s.headers {
                return Answer::Hold(flight);
            }
            let content = content(
                ctx,
                names.default_text,
                s.text.as_deref(),
                fault_chunks(s.chunks, s.after_chunks),
            );
            let mut steps = VecDeque::new();
            push_frames(
                &mut steps,
                cut(frames(ctx, &content), s.after_chunks),
                s.chunk_interval_ms,
            );
            steps.push_back(if s.heartbeat_ms == 0 {
                Step::Hold
            } else {
                Step::Heartbeat {
                    frame: Bytes::from_static(match ctx.dialect {
                        Dialect::OpenAi | Dialect::Responses => openai::HEARTBEAT,
                        Dialect::Anthropic => anthropic::HEARTBEAT,
                    }),
                    every: Duration::from_millis(s.heartbeat_ms),
                }
            });
            Answer::Respond(sse(ctx, steps, flight, conn))
        }
        Behavior::Reset(s) => {
            if !ctx.stream || s.after_chunks == 0 {
                return Answer::Reset(flight);
            }
            let content = content(
                ctx,
                names.default_text,
                s.text.as_deref(),
                fault_chunks(s.chunks, s.after_chunks),
            );
            let mut steps = VecDeque::new();
            push_frames(
                &mut steps,
                cut(frames(ctx, &content), s.after_chunks),
                s.chunk_interval_ms,
            );
            steps.push_back(Step::Sleep(FLUSH_BEFORE_RESET));
            steps.push_back(Step::Reset);
            Answer::Respond(sse(ctx, steps, flight, conn))
        }
        Behavior::Malformed(_) => {
            if !ctx.stream {
                let body = match ctx.dialect {
                    Dialect::OpenAi => openai::malformed_body(ctx),
                    Dialect::Anthropic => anthropic::malformed_body(ctx),
                    Dialect::Responses => responses::malformed_body(ctx),
                };
                return Answer::Respond(full(ctx, 200, JSON, body, flight));
            }
            let steps = match ctx.dialect {
                Dialect::OpenAi => openai::malformed_frames(),
                Dialect::Anthropic => anthropic::malformed_frames(),
                Dialect::Responses => responses::malformed_frames(),
            };
            Answer::Respond(sse(
                ctx,
                steps.into_iter().map(Step::Data).collect(),
                flight,
                conn,
            ))
        }
        Behavior::Trickle(t) => {
            let text = t.text.as_deref().unwrap_or(names.trickle_text);
            let content = content(ctx, names.default_text, Some(text), t.chunks);
            let whole = if ctx.stream {
                let frames = frames(ctx, &content);
                let mut buf = BytesMut::with_capacity(frames.iter().map(|f| f.bytes.len()).sum());
                for f in frames {
                    buf.extend_from_slice(&f.bytes);
                }
                buf.freeze()
            } else {
                reply_json(ctx, &content)
            };
            let interval = Duration::from_millis(t.chunk_interval_ms);
            let piece = t.piece_bytes.max(1);
            let mut steps = VecDeque::with_capacity(2 * whole.len() / piece + 2);
            let mut at = 0;
            while at < whole.len() {
                if at > 0 && !interval.is_zero() {
                    steps.push_back(Step::Sleep(interval));
                }
                let end = (at + piece).min(whole.len());
                steps.push_back(Step::Data(whole.slice(at..end)));
                at = end;
            }
            let (content_type, len) = if ctx.stream {
                (SSE, None)
            } else {
                (JSON, Some(whole.len() as u64))
            };
            let mut resp = Response::new(MockBody::script(steps, len, flight, Arc::clone(conn)));
            common_headers(&mut resp, ctx, content_type);
            Answer::Respond(resp)
        }
        Behavior::Empty(_) => {
            let content_type = if ctx.stream { SSE } else { JSON };
            Answer::Respond(full(ctx, 200, content_type, Bytes::new(), flight))
        }
    }
}

fn ok(r: &Reply, ctx: &Ctx, names: &Names<'_>, flight: Flight, conn: &Arc<ConnCtl>) -> Answer {
    let content = Content::new(
        ctx.dialect,
        || names.default_text.to_owned(),
        r.text.as_deref(),
        r.chunks,
        r.tool_call.as_ref(),
        r.thinking.as_deref(),
    );
    let mut resp = if ctx.stream {
        let mut steps = VecDeque::new();
        push_frames(&mut steps, frames(ctx, &content), r.chunk_interval_ms);
        sse(ctx, steps, flight, conn)
    } else {
        full(ctx, 200, JSON, reply_json(ctx, &content), flight)
    };
    extra_headers(&mut resp, &r.headers);
    Answer::Respond(resp)
}

fn content(ctx: &Ctx, default_text: &str, text: Option<&str>, chunks: usize) -> Content {
    Content::new(
        ctx.dialect,
        || default_text.to_owned(),
        text,
        chunks,
        None,
        None,
    )
}

fn reply_json(ctx: &Ctx, content: &Content) -> Bytes {
    match ctx.dialect {
        Dialect::OpenAi => openai::completion(ctx, content),
        Dialect::Anthropic => anthropic::message(ctx, content),
        Dialect::Responses => responses::response(ctx, content),
    }
}

fn frames(ctx: &Ctx, content: &Content) -> Vec<Frame> {
    match ctx.dialect {
        Dialect::OpenAi => openai::stream_frames(ctx, content),
        Dialect::Anthropic => anthropic::stream_frames(ctx, content),
        Dialect::Responses => responses::stream_frames(ctx, content),
    }
}

/// The frames up to the fault point: right after the `after`-th content delta, or
/// just before the first one when `after` is 0 (the envelope alone). Asking for
/// more deltas than the reply has cuts after the last one.
pub(crate) fn cut(mut frames: Vec<Frame>, after: usize) -> Vec<Frame> {
    let mut seen = 0;
    let mut end = None;
    for (i, f) in frames.iter().enumerate() {
        if !f.content {
            continue;
        }
        if seen == after {
            end = Some(i);
            break;
        }
        seen += 1;
        end = Some(i + 1);
    }
    frames.truncate(end.unwrap_or(frames.len()));
    frames
}

/// Appends frames, pausing `interval_ms` between consecutive content deltas.
fn push_frames(steps: &mut VecDeque<Step>, frames: Vec<Frame>, interval_ms: u64) {
    let mut seen_content = false;
    for f in frames {
        if f.content {
            if seen_content && interval_ms > 0 {
                steps.push_back(Step::Sleep(Duration::from_millis(interval_ms)));
            }
            seen_content = true;
        }
        steps.push_back(Step::Data(f.bytes));
    }
}

/// The status a non-streaming request gets for a `stream_error` of this type.
fn status_for_error_type(dialect: Dialect, error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" | "context_length_exceeded" => 400,
        "authentication_error" | "invalid_api_key" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" | "requests" | "rate_limit_exceeded" | "insufficient_quota" => 429,
        "timeout_error" | "timeout" => 504,
        // OpenAI has no 529: it answers overload with 503.
        "overloaded_error" if dialect == Dialect::Anthropic => 529,
        "overloaded_error" => 503,
        _ => 500,
    }
}

fn full(
    ctx: &Ctx,
    status: u16,
    content_type: &'static str,
    body: Bytes,
    flight: Flight,
) -> Response<MockBody> {
    // 204 and 304 cannot carry a body; hyper would silently drop it.
    let body = if status == 204 || status == 304 {
        Bytes::new()
    } else {
        body
    };
    let mut resp = Response::new(MockBody::full(body, Some(flight)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    common_headers(&mut resp, ctx, content_type);
    resp
}

fn sse(
    ctx: &Ctx,
    steps: VecDeque<Step>,
    flight: Flight,
    conn: &Arc<ConnCtl>,
) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::script(steps, None, flight, Arc::clone(conn)));
    common_headers(&mut resp, ctx, SSE);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

static REQUEST_ID: HeaderName = HeaderName::from_static("request-id");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static PROCESSING_MS: HeaderName = HeaderName::from_static("openai-processing-ms");
static OPENAI_VERSION: HeaderName = HeaderName::from_static("openai-version");

/// Content type and the provider's request-id headers.
pub(crate) fn common_headers<B>(resp: &mut Response<B>, ctx: &Ctx, content_type: &'static str) {
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let id = HeaderValue::from_str(&ctx.request_id).ok();
    match ctx.dialect {
        Dialect::OpenAi | Dialect::Responses => {
            if let Some(id) = id {
                headers.insert(X_REQUEST_ID.clone(), id);
            }
            let ms = ctx.started.elapsed().as_millis() as u64;
            headers.insert(PROCESSING_MS.clone(), HeaderValue::from(ms));
            headers.insert(
                OPENAI_VERSION.clone(),
                HeaderValue::from_static("2020-10-01"),
            );
        }
        Dialect::Anthropic => {
            if let Some(id) = id {
                headers.insert(REQUEST_ID.clone(), id);
            }
        }
    }
}

/// Behaviour-supplied headers win over the defaults. They were checked when the
/// plan was set; anything unsendable is skipped rather than failing the request.
fn extra_headers<B>(resp: &mut Response<B>, extra: &BTreeMap<String, String>) {
    for (name, value) in extra {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().insert(n, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(content: bool, tag: &'static str) -> Frame {
        Frame {
            bytes: Bytes::from_static(tag.as_bytes()),
            content,
        }
    }

    fn tags(frames: Vec<Frame>) -> String {
        frames
            .iter()
            .map(|f| std::str::from_utf8(&f.bytes).unwrap_or("?"))
            .collect()
    }

    #[test]
    fn cut_points() {
        let seq = || {
            vec![
                f(false, "a"),
                f(false, "b"),
                f(true, "1"),
                f(true, "2"),
                f(false, "z"),
            ]
        };
        assert_eq!(tags(cut(seq(), 0)), "ab");
        assert_eq!(tags(cut(seq(), 1)), "ab1");
        assert_eq!(tags(cut(seq(), 2)), "ab12");
        assert_eq!(tags(cut(seq(), 9)), "ab12");
    }
}
