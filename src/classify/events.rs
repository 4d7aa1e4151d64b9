//! What an event inside a 2xx stream means for the commit point and the stall clock: a
//! heartbeat, framing, real content, the model finishing, the stream's end marker, an error
//! the upstream reported in-stream, or data the dialect does not allow.

use crate::classify;
use crate::dialect::Dialect;
use crate::failure::Classified;
use crate::sse::SseEvent;

/// What an event means for the commit point and the stall clock.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// Keep-alive: SSE comments, Anthropic `ping`. Never counts as content.
    Heartbeat,
    /// Framing before content: `message_start`, `content_block_start`, an OpenAI role-only chunk.
    Envelope,
    /// Real content: text, tool-call or thinking delta.
    Content,
    /// The model finished (`finish_reason`, `message_delta` with `stop_reason`).
    Finish,
    /// The stream's own end marker (`data: [DONE]`, `message_stop`).
    Terminal,
    /// The upstream reported an error inside the stream.
    Error(Classified),
    /// Not what the dialect allows.
    Malformed(String),
}

/// Full classification, used before the commit point (few events, so parsing JSON is fine).
pub fn classify_event(dialect: Dialect, ev: &SseEvent) -> EventKind {
    let Some(data) = &ev.data else {
        return EventKind::Heartbeat;
    };
    match dialect {
        Dialect::OpenAi => classify_openai(data),
        Dialect::Anthropic => classify_anthropic(ev.event.as_deref(), data),
        Dialect::Responses => classify_responses(ev.event.as_deref(), data),
    }
}

/// Responses events are named (`event:` line; the data's `type` says the same when a server
/// omits the line). Envelope events (`response.created`, `response.in_progress`,
/// `output_item.added` with no content yet, `content_part.added`, the `.done` events) do not
/// commit; any `….delta` (text, function-call arguments, reasoning summary, refusal) does;
/// `response.completed` / `response.incomplete` end the stream; `response.failed` and `error`
/// are failures.
fn classify_responses(name: Option<&str>, data: &[u8]) -> EventKind {
    let typed;
    let name = match name {
        Some(n) => n,
        None => {
            #[derive(serde::Deserialize)]
            struct Typed {
                #[serde(rename = "type")]
                kind: String,
            }
            match serde_json::from_slice::<Typed>(data) {
                Ok(t) => {
                    typed = t.kind;
                    &typed
                }
                Err(_) => return EventKind::Malformed("a Responses event without a type".into()),
            }
        }
    };
    responses_kind(name, data)
}

fn responses_kind(name: &str, data: &[u8]) -> EventKind {
    match name {
        "response.completed" | "response.incomplete" => EventKind::Terminal,
        "response.failed" | "error" => EventKind::Error(classify::classify_stream_error(data)),
        n if n.ends_with(".delta") => EventKind::Content,
        _ => EventKind::Envelope,
    }
}

fn classify_openai(data: &[u8]) -> EventKind {
    if data.trim_ascii() == b"[DONE]" {
        return EventKind::Terminal;
    }
    let v: serde_json::Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => return EventKind::Malformed(format!("stream chunk is not JSON: {e}")),
    };
    if v.get("error").is_some_and(|e| !e.is_null()) {
        return EventKind::Error(classify::classify_stream_error(data));
    }
    let Some(choices) = v.get("choices").and_then(|c| c.as_array()) else {
        return EventKind::Malformed("stream chunk has no `choices`".into());
    };
    // A usage-only chunk (`choices: []`) follows the finish reason; alone it finishes nothing.
    let mut finished = false;
    for choice in choices {
        if let Some(delta) = choice.get("delta") {
            let non_empty = |k: &str| match delta.get(k) {
                None | Some(serde_json::Value::Null) => false,
                Some(serde_json::Value::String(s)) => !s.is_empty(),
                Some(serde_json::Value::Array(a)) => !a.is_empty(),
                Some(_) => true,
            };
            if [
                "content",
                "tool_calls",
                "function_call",
                "reasoning_content",
                "reasoning",
                "refusal",
                "audio",
            ]
            .into_iter()
            .any(non_empty)
            {
                return EventKind::Content;
            }
        }
        if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
            finished = true;
        }
    }
    if finished {
        EventKind::Finish
    } else {
        EventKind::Envelope
    }
}

fn classify_anthropic(event: Option<&str>, data: &[u8]) -> EventKind {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(data).ok();
    let Some(v) = parsed else {
        return EventKind::Malformed("stream event data is not JSON".into());
    };
    let kind = event
        .map(str::to_string)
        .or_else(|| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_default();
    match kind.as_str() {
        "ping" => EventKind::Heartbeat,
        "content_block_delta" => EventKind::Content,
        // Only a stop reason finishes the message; a usage-only delta is framing.
        "message_delta"
            if v.pointer("/delta/stop_reason")
                .is_some_and(|r| !r.is_null()) =>
        {
            EventKind::Finish
        }
        "message_delta" => EventKind::Envelope,
        "message_stop" => EventKind::Terminal,
        "error" => EventKind::Error(classify::classify_stream_error(data)),
        _ => EventKind::Envelope,
    }
}

/// The model's finish reason in an event [`classify_event`] called [`EventKind::Finish`]: a
/// short token (`stop`, `end_turn`, `tool_calls`…), or None. Parses the one event it is given.
pub fn finish_reason(dialect: Dialect, ev: &SseEvent) -> Option<Box<str>> {
    let v: serde_json::Value = serde_json::from_slice(ev.data.as_deref()?).ok()?;
    let reason = match dialect {
        Dialect::OpenAi => v.pointer("/choices/0/finish_reason"),
        Dialect::Anthropic => v.pointer("/delta/stop_reason"),
        Dialect::Responses => v
            .pointer("/response/incomplete_details/reason")
            .filter(|r| r.is_string())
            .or_else(|| v.pointer("/response/status")),
    }?
    .as_str()?;
    (reason.len() <= 64).then(|| reason.into())
}

/// Cheap classification after the commit point: no JSON parse, only what the stall clock and
/// the end-of-stream check need.
pub fn classify_event_fast(dialect: Dialect, ev: &SseEvent) -> EventKind {
    let Some(data) = &ev.data else {
        return EventKind::Heartbeat;
    };
    match dialect {
        Dialect::OpenAi => {
            let d = data.trim_ascii();
            if d == b"[DONE]" {
                EventKind::Terminal
            } else if d.starts_with(b"{\"error\"") {
                EventKind::Error(classify::classify_stream_error(d))
            } else if has_non_null(d, b"\"finish_reason\"") {
                EventKind::Finish
            } else {
                EventKind::Content
            }
        }
        Dialect::Anthropic => match ev.event.as_deref() {
            Some("ping") => EventKind::Heartbeat,
            Some("message_delta") if has_non_null(data, b"\"stop_reason\"") => EventKind::Finish,
            Some("message_delta") => EventKind::Envelope,
            Some("message_stop") => EventKind::Terminal,
            Some("error") => EventKind::Error(classify::classify_stream_error(data)),
            Some(_) => EventKind::Content,
            None => classify_anthropic(None, data),
        },
        Dialect::Responses => match ev.event.as_deref() {
            Some(name) => responses_kind(name, data),
            None => classify_responses(None, data),
        },
    }
}

/// Whether `key` (quoted) appears followed by a value other than `null`.
fn has_non_null(data: &[u8], key: &[u8]) -> bool {
    let mut rest = data;
    while let Some(i) = memchr::memmem::find(rest, key) {
        rest = &rest[i + key.len()..];
        let after = rest.trim_ascii_start();
        if let Some(value) = after.strip_prefix(b":") {
            if !value.trim_ascii_start().starts_with(b"null") {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureReason;
    use crate::sse::SseParser;

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
    fn comments_are_heartbeats_and_multiline_data_joins() {
        let evs = parse_all(&[b": keep-alive\n\ndata: a\ndata: b\n\n"]);
        assert_eq!(evs.len(), 2);
        assert_eq!(
            classify_event(Dialect::OpenAi, &evs[0]),
            EventKind::Heartbeat
        );
        assert_eq!(evs[1].data.as_deref(), Some(&b"a\nb"[..]));
    }

    fn openai(data: &str) -> EventKind {
        let ev = SseEvent {
            event: None,
            data: Some(data.as_bytes().to_vec()),
        };
        classify_event(Dialect::OpenAi, &ev)
    }

    #[test]
    fn openai_role_chunk_is_envelope_and_deltas_are_content() {
        assert_eq!(
            openai(
                r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#
            ),
            EventKind::Envelope
        );
        assert_eq!(
            openai(r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#),
            EventKind::Content
        );
        assert_eq!(
            openai(
                r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#
            ),
            EventKind::Content
        );
        assert_eq!(
            openai(r#"{"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]}"#),
            EventKind::Content
        );
        assert_eq!(
            openai(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#),
            EventKind::Finish
        );
        assert_eq!(openai("[DONE]"), EventKind::Terminal);
        assert!(matches!(
            openai(r#"{"error":{"message":"x","type":"server_error"}}"#),
            EventKind::Error(_)
        ));
        assert!(matches!(openai("not json"), EventKind::Malformed(_)));
    }

    #[test]
    fn anthropic_events_by_name() {
        let evs = parse_all(&[ANTHROPIC.as_bytes()]);
        let kinds: Vec<EventKind> = evs
            .iter()
            .map(|e| classify_event(Dialect::Anthropic, e))
            .collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::Envelope,
                EventKind::Envelope,
                EventKind::Heartbeat,
                EventKind::Content,
                EventKind::Terminal
            ]
        );
        let fast: Vec<EventKind> = evs
            .iter()
            .map(|e| classify_event_fast(Dialect::Anthropic, e))
            .collect();
        assert_eq!(fast[2], EventKind::Heartbeat);
        assert_eq!(fast[4], EventKind::Terminal);
        let err = SseEvent {
            event: Some("error".into()),
            data: Some(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
                    .to_vec(),
            ),
        };
        match classify_event(Dialect::Anthropic, &err) {
            EventKind::Error(c) => assert_eq!(c.reason, FailureReason::Overloaded),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fast_finish_reason_check() {
        let f = |d: &[u8]| has_non_null(d, b"\"finish_reason\"");
        assert!(f(br#"{"choices":[{"finish_reason": "stop"}]}"#));
        assert!(!f(br#"{"choices":[{"finish_reason":null}]}"#));
        assert!(!f(
            br#"{"choices":[{"delta":{"content":"finish_reason"}}]}"#
        ));
    }

    /// Found by the property test: a usage-only `message_delta` (stop_reason null) was taken
    /// for the end of the message, so a stream cut right after it counted as complete.
    #[test]
    fn a_message_delta_finishes_only_with_a_stop_reason() {
        let ev = |data: &str| SseEvent {
            event: Some("message_delta".into()),
            data: Some(data.as_bytes().to_vec()),
        };
        let done = ev(
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}"#,
        );
        let usage = ev(
            r#"{"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":3}}"#,
        );
        assert_eq!(classify_event(Dialect::Anthropic, &done), EventKind::Finish);
        assert_eq!(
            classify_event_fast(Dialect::Anthropic, &done),
            EventKind::Finish
        );
        assert_eq!(
            classify_event(Dialect::Anthropic, &usage),
            EventKind::Envelope
        );
        assert_eq!(
            classify_event_fast(Dialect::Anthropic, &usage),
            EventKind::Envelope
        );
    }

    /// What each Responses event means to the commit point, by its name and (when a server
    /// omits `event:`) by its data's `type`; and the same answer from the fast classifier.
    #[test]
    fn responses_events_commit_on_deltas_and_fail_on_failed_or_error() {
        use EventKind as K;
        type Row<'a> = (&'a str, &'a str, fn(&EventKind) -> bool);
        let rows: [Row; 12] = [
            (
                "response.created",
                r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","status":"in_progress"}}"#,
                |k| *k == K::Envelope,
            ),
            (
                "response.in_progress",
                r#"{"type":"response.in_progress","sequence_number":1}"#,
                |k| *k == K::Envelope,
            ),
            (
                "response.output_item.added",
                r#"{"type":"response.output_item.added","item":{"type":"message","content":[]}}"#,
                |k| *k == K::Envelope,
            ),
            (
                "response.content_part.added",
                r#"{"type":"response.content_part.added","part":{"type":"output_text","text":""}}"#,
                |k| *k == K::Envelope,
            ),
            (
                "response.output_text.delta",
                r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
                |k| *k == K::Content,
            ),
            (
                "response.function_call_arguments.delta",
                r#"{"type":"response.function_call_arguments.delta","delta":"{\"a\""}"#,
                |k| *k == K::Content,
            ),
            (
                "response.reasoning_summary_text.delta",
                r#"{"type":"response.reasoning_summary_text.delta","delta":"think"}"#,
                |k| *k == K::Content,
            ),
            (
                "response.output_text.done",
                r#"{"type":"response.output_text.done","text":"Hi"}"#,
                |k| *k == K::Envelope,
            ),
            (
                "response.completed",
                r#"{"type":"response.completed","response":{"status":"completed"}}"#,
                |k| *k == K::Terminal,
            ),
            (
                "response.incomplete",
                r#"{"type":"response.incomplete","response":{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"}}}"#,
                |k| *k == K::Terminal,
            ),
            (
                "response.failed",
                r#"{"type":"response.failed","response":{"status":"failed","error":{"code":"rate_limit_exceeded","message":"slow down"}}}"#,
                |k| matches!(k, K::Error(c) if c.reason == FailureReason::RateLimit && c.detail == "slow down"),
            ),
            (
                "error",
                r#"{"type":"error","code":"server_error","message":"boom","param":null,"sequence_number":3}"#,
                |k| matches!(k, K::Error(c) if c.reason == FailureReason::ServerError && c.detail == "boom"),
            ),
        ];
        for (name, data, expected) in rows {
            let named = parse_all(&[format!("event: {name}\ndata: {data}\n\n").as_bytes()]);
            let unnamed = parse_all(&[format!("data: {data}\n\n").as_bytes()]);
            for ev in [&named[0], &unnamed[0]] {
                let full = classify_event(Dialect::Responses, ev);
                assert!(expected(&full), "{name}: {full:?}");
                let fast = classify_event_fast(Dialect::Responses, ev);
                assert!(expected(&fast), "{name} (fast): {fast:?}");
            }
        }
        let quota = parse_all(&[b"event: error\ndata: {\"type\":\"error\",\"code\":\"insufficient_quota\",\"message\":\"You exceeded your current quota\"}\n\n"]);
        assert!(
            matches!(classify_event(Dialect::Responses, &quota[0]), K::Error(c) if c.reason == FailureReason::Quota)
        );
        let context = parse_all(&[b"event: response.failed\ndata: {\"type\":\"response.failed\",\"response\":{\"error\":{\"code\":\"context_length_exceeded\",\"message\":\"Your input exceeds the context window of this model.\"}}}\n\n"]);
        assert!(
            matches!(classify_event(Dialect::Responses, &context[0]), K::Error(c) if c.reason == FailureReason::ContextOverflow),
            "a context overflow is the client's: returned, not failed over"
        );
        let untyped = parse_all(&[b"data: {\"delta\":\"x\"}\n\n"]);
        assert!(matches!(
            classify_event(Dialect::Responses, &untyped[0]),
            K::Malformed(_)
        ));
        let completed = parse_all(&[b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}\n\n"]);
        assert_eq!(
            finish_reason(Dialect::Responses, &completed[0]).as_deref(),
            Some("completed")
        );
    }
}
