//! Streams: split-anywhere invariance, content preservation, stream structure.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

/// What a client accumulates from a stream, in dialect-neutral terms.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Acc {
    pub text: String,
    pub reasoning: String,
    /// (id, name, concatenated arguments / partial_json)
    pub tools: Vec<(String, String, String)>,
    /// OpenAI finish_reason / Anthropic stop_reason, as sent.
    pub finish: Option<String>,
    pub usage: Option<Value>,
}

/// Reads a translated OpenAI stream as the SDK would, checking its structure.
pub(super) fn read_openai(bytes: &[u8]) -> Acc {
    let events = parse_sse(bytes);
    let mut acc = Acc::default();
    let last = events.last().expect("empty stream");
    assert_eq!(
        last.data.as_deref(),
        Some(&b"[DONE]"[..]),
        "must end with [DONE]"
    );
    let mut finishes = 0;
    for (i, ev) in events[..events.len() - 1].iter().enumerate() {
        assert!(ev.event.is_none(), "OpenAI streams have no event names");
        let Some(data) = &ev.data else { continue }; // a comment
        let v: Value = serde_json::from_slice(data).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        let choices = v["choices"].as_array().unwrap();
        if choices.is_empty() {
            acc.usage = Some(v["usage"].clone());
            continue;
        }
        let delta = &choices[0]["delta"];
        if i == 0 {
            assert_eq!(delta["role"], "assistant", "first chunk carries the role");
        }
        if let Some(t) = delta["content"].as_str() {
            acc.text.push_str(t);
        }
        if let Some(t) = delta["reasoning_content"].as_str() {
            acc.reasoning.push_str(t);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap() as usize;
            if let Some(id) = call["id"].as_str() {
                assert_eq!(index, acc.tools.len(), "tool calls are numbered in order");
                let name = call["function"]["name"].as_str().unwrap();
                acc.tools.push((id.into(), name.into(), String::new()));
            }
            let args = call["function"]["arguments"].as_str().unwrap_or("");
            acc.tools[index].2.push_str(args);
        }
        if let Some(f) = choices[0]["finish_reason"].as_str() {
            finishes += 1;
            acc.finish = Some(f.into());
        }
    }
    assert_eq!(finishes, 1, "exactly one finish_reason");
    acc
}

/// Reads an Anthropic stream as the SDK would, checking its structure.
pub(super) fn read_anthropic(bytes: &[u8]) -> Acc {
    let events = parse_sse(bytes);
    let mut acc = Acc::default();
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    let mut open: Option<usize> = None;
    let mut next = 0;
    let mut tool_of_block = std::collections::HashMap::new();
    for ev in &events {
        let name = ev.event.as_deref().unwrap();
        if name == "ping" {
            continue;
        }
        let v: Value = serde_json::from_slice(ev.data.as_ref().unwrap()).unwrap();
        assert_eq!(v["type"], name, "event name and type agree");
        let index = v["index"].as_u64().map(|i| i as usize);
        match name {
            "message_start" => {
                assert!(v["message"]["id"].as_str().unwrap().starts_with("msg_"));
                acc.usage = Some(v["message"]["usage"].clone());
            }
            "content_block_start" => {
                assert_eq!(open, None, "a block starts only after the previous stopped");
                assert_eq!(index, Some(next), "blocks are numbered in order");
                open = index;
                next += 1;
                let b = &v["content_block"];
                match b["type"].as_str().unwrap() {
                    "tool_use" => {
                        tool_of_block.insert(index.unwrap(), acc.tools.len());
                        acc.tools.push((
                            b["id"].as_str().unwrap().into(),
                            b["name"].as_str().unwrap().into(),
                            String::new(),
                        ));
                    }
                    "text" => acc.text.push_str(b["text"].as_str().unwrap()),
                    "thinking" => acc.reasoning.push_str(b["thinking"].as_str().unwrap()),
                    other => panic!("unexpected block {other}"),
                }
            }
            "content_block_delta" => {
                assert_eq!(open, index, "deltas go to the open block");
                let d = &v["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => acc.text.push_str(d["text"].as_str().unwrap()),
                    "thinking_delta" => acc.reasoning.push_str(d["thinking"].as_str().unwrap()),
                    "signature_delta" => {}
                    "input_json_delta" => {
                        let t = tool_of_block[&index.unwrap()];
                        acc.tools[t].2.push_str(d["partial_json"].as_str().unwrap());
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(open, index);
                open = None;
            }
            "message_delta" => {
                assert_eq!(open, None, "blocks are closed before message_delta");
                assert!(acc.finish.is_none(), "one message_delta");
                acc.finish = Some(v["delta"]["stop_reason"].as_str().unwrap().into());
                let usage = acc.usage.get_or_insert_with(|| json!({}));
                for (k, n) in v["usage"].as_object().unwrap() {
                    usage[k] = n.clone();
                }
            }
            "message_stop" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(acc.finish.is_some(), "message_delta with stop_reason");
    acc
}

pub(super) fn all_splits_agree(
    from: Dialect,
    to: Dialect,
    src: &[u8],
    include_usage: bool,
) -> Vec<u8> {
    let whole = translate_chunks(from, to, &[src], include_usage);
    for i in 0..=src.len() {
        let split = translate_chunks(from, to, &[&src[..i], &src[i..]], include_usage);
        assert!(
            split == whole,
            "split at byte {i} changed the output:\n{}",
            String::from_utf8_lossy(&split)
        );
    }
    let bytes: Vec<&[u8]> = src.chunks(1).collect();
    assert_eq!(
        translate_chunks(from, to, &bytes, include_usage),
        whole,
        "byte by byte"
    );
    let crlf = String::from_utf8(src.to_vec())
        .unwrap()
        .replace('\n', "\r\n");
    assert_eq!(
        translate_chunks(from, to, &[crlf.as_bytes()], include_usage),
        whole,
        "CRLF line ends"
    );
    whole
}

#[test]
fn anthropic_stream_split_anywhere_gives_the_same_openai_stream() {
    let src = read("anthropic_stream_tools.sse");
    // Multi-byte characters, so some splits fall inside a UTF-8 sequence.
    assert!(src.contains('東') && src.contains("🌦"));
    let out = all_splits_agree(Dialect::Anthropic, Dialect::OpenAi, src.as_bytes(), true);
    let source = read_anthropic(src.as_bytes());
    let got = read_openai(&out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert_eq!(text.matches("\"model\":\"route-model\"").count(), 13);
    assert_eq!(got.text, source.text);
    assert_eq!(got.reasoning, source.reasoning);
    assert_eq!(got.tools, source.tools);
    assert_eq!(got.finish.as_deref(), Some("tool_calls"));
    for (_, _, args) in &got.tools {
        assert!(serde_json::from_str::<Value>(args).unwrap().is_object());
    }
    assert_eq!(
        got.usage.unwrap(),
        json!({"prompt_tokens": 2520, "completion_tokens": 89, "total_tokens": 2609,
               "prompt_tokens_details": {"cached_tokens": 2048}})
    );
}

#[test]
fn openai_stream_split_anywhere_gives_the_same_anthropic_stream() {
    let src = read("openai_stream_tools.sse");
    let out = all_splits_agree(Dialect::OpenAi, Dialect::Anthropic, src.as_bytes(), false);
    let source = read_openai(src.as_bytes());
    let got = read_anthropic(&out);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(text.contains("\"model\":\"route-model\"") && !text.contains("gpt-4o"));
    assert_eq!(got.text, source.text);
    assert_eq!(got.reasoning, source.reasoning);
    assert_eq!(got.tools, source.tools);
    assert_eq!(got.finish.as_deref(), Some("tool_use"));
    let usage = got.usage.unwrap();
    assert_eq!(usage["input_tokens"], 472);
    assert_eq!(usage["cache_read_input_tokens"], 2048);
    assert_eq!(usage["output_tokens"], 89);
}

#[test]
fn usage_chunk_only_when_asked() {
    let src = read("anthropic_stream_tools.sse");
    let out = translate_chunks(
        Dialect::Anthropic,
        Dialect::OpenAi,
        &[src.as_bytes()],
        false,
    );
    assert!(read_openai(&out).usage.is_none());
}

#[test]
fn first_bytes_go_out_with_the_first_event() {
    let mut t = StreamTranslator::new(Dialect::Anthropic, Dialect::OpenAi, "m", false);
    let mut out = Vec::new();
    let ev = |name: &str, data: Value| SseEvent {
        event: Some(name.into()),
        data: Some(data.to_string().into_bytes()),
    };
    t.push(
        &ev("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 5, "output_tokens": 1}}})),
        &mut out,
    );
    assert!(String::from_utf8_lossy(&out).contains("\"role\":\"assistant\""));
    out.clear();
    t.push(&ev("ping", json!({"type": "ping"})), &mut out);
    assert!(out.is_empty(), "pings produce nothing");
    t.push(
        &ev("content_block_start", json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
        &mut out,
    );
    assert!(out.is_empty());
    t.push(
        &ev("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}})),
        &mut out,
    );
    assert!(String::from_utf8_lossy(&out).contains("\"content\":\"Hi\""));

    let mut t = StreamTranslator::new(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    let mut out = Vec::new();
    t.push(
        &SseEvent {
            event: None,
            data: Some(
                br#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#.to_vec(),
            ),
        },
        &mut out,
    );
    let s = String::from_utf8(out).unwrap();
    assert!(s.starts_with("event: message_start\n"), "{s}");
    assert!(s.contains("\"text_delta\""), "{s}");
}

#[test]
fn finish_closes_streams_cut_short_of_their_end_marker() {
    // A backend that ended cleanly without message_stop / [DONE].
    let an = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_x\"}}\n\n\
              event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
              event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"partial\"}}\n\n";
    let out = translate_chunks(Dialect::Anthropic, Dialect::OpenAi, &[an.as_bytes()], true);
    let acc = read_openai(&out);
    assert_eq!(
        (acc.text.as_str(), acc.finish.as_deref()),
        ("partial", Some("stop"))
    );
    assert!(acc.usage.is_some());

    let oa = "data: {\"id\":\"chatcmpl-x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}\n\n";
    let out = translate_chunks(Dialect::OpenAi, Dialect::Anthropic, &[oa.as_bytes()], false);
    let acc = read_anthropic(&out);
    assert_eq!(acc.tools, vec![("call_1".into(), "f".into(), "{}".into())]);
    assert_eq!(acc.finish.as_deref(), Some("tool_use"));

    // Nothing at all: still a well-formed, empty reply.
    read_openai(&translate_chunks(
        Dialect::Anthropic,
        Dialect::OpenAi,
        &[],
        false,
    ));
    read_anthropic(&translate_chunks(
        Dialect::OpenAi,
        Dialect::Anthropic,
        &[],
        false,
    ));
    // finish() after the end marker adds nothing.
    let full = read("openai_stream_tools.sse");
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser
        .feed(full.as_bytes(), &mut events)
        .expect("events within the size limit");
    let mut t = StreamTranslator::new(Dialect::OpenAi, Dialect::Anthropic, "m", false);
    let mut out = Vec::new();
    for ev in &events {
        t.push(ev, &mut out);
    }
    let n = out.len();
    t.finish(&mut out);
    t.finish(&mut out);
    assert_eq!(out.len(), n);
}

#[test]
fn openai_quirks_servers_send() {
    // No tool index, whole call in one chunk, "stop" for a tool call, usage with the
    // finish chunk, `reasoning` instead of `reasoning_content`, a non-string reasoning
    // field, an error chunk (ignored here: the gateway handles those).
    let chunks = [
        r#"{"id":"chatcmpl-q","choices":[{"index":0,"delta":{"role":"assistant","reasoning":"hm","reasoning_details":[{"type":"x"}]}}]}"#,
        r#"{"id":"chatcmpl-q","choices":[{"index":0,"delta":{"reasoning":{"summary":"object"}}}]}"#,
        r#"{"id":"chatcmpl-q","choices":[{"index":0,"delta":{"tool_calls":[{"id":"a.b","function":{"name":"f","arguments":"{\"x\":1}"}}]}}]}"#,
        r#"{"id":"chatcmpl-q","choices":[{"index":0,"delta":{"tool_calls":[{"id":"c","function":{"name":"g","arguments":"{}"}}]}}]}"#,
        r#"{"error":{"message":"late","type":"server_error"}}"#,
        r#"{"id":"chatcmpl-q","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
    ];
    let src: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    let out = translate_chunks(
        Dialect::OpenAi,
        Dialect::Anthropic,
        &[src.as_bytes()],
        false,
    );
    let acc = read_anthropic(&out);
    assert_eq!(acc.reasoning, "hm");
    assert_eq!(
        acc.tools,
        vec![
            ("a_b".into(), "f".into(), "{\"x\":1}".into()),
            ("c".into(), "g".into(), "{}".into())
        ]
    );
    assert_eq!(acc.finish.as_deref(), Some("tool_use"));
    assert_eq!(acc.usage.unwrap()["input_tokens"], 9);
}

// ---------------------------------------------------------------------------------------------
// Property: any content, rendered as either dialect's stream and split anywhere, translates
// to a stream carrying the same text, reasoning and tool calls.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub reasoning: Vec<String>,
    pub text: Vec<String>,
    pub tools: Vec<(String, Vec<String>)>,
}

fn pieces(s: &str, cuts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (chars.len() + 1)).collect();
    bounds.push(0);
    bounds.push(chars.len());
    bounds.sort_unstable();
    bounds.dedup();
    bounds
        .windows(2)
        .map(|w| chars[w[0]..w[1]].iter().collect())
        .collect()
}

pub(super) fn reply() -> impl Strategy<Value = Reply> {
    let text = prop::collection::vec(any::<String>(), 0..4);
    let args = prop::collection::btree_map("[a-z]{1,6}", any::<String>(), 0..3)
        .prop_map(|m| serde_json::to_string(&m).unwrap());
    let tool = (
        "[a-z_]{1,10}",
        args,
        prop::collection::vec(any::<usize>(), 0..4),
    )
        .prop_map(|(name, args, cuts)| (name, pieces(&args, &cuts)));
    (
        prop::collection::vec("\\PC{0,10}", 0..3),
        text,
        prop::collection::vec(tool, 0..3),
    )
        .prop_map(|(reasoning, text, tools)| Reply {
            reasoning,
            text,
            tools,
        })
}

pub(super) fn anthropic_sse(r: &Reply) -> String {
    let mut s = String::new();
    let mut ev = |name: &str, v: Value| s.push_str(&format!("event: {name}\ndata: {v}\n\n"));
    ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_p", "type": "message", "role": "assistant", "content": [], "model": "c", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
    );
    let mut index = 0;
    if !r.reasoning.is_empty() {
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        );
        ev("ping", json!({"type": "ping"}));
        for p in &r.reasoning {
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": p}}),
            );
        }
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": "sig"}}),
        );
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
        index += 1;
    }
    if !r.text.is_empty() {
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        );
        for p in &r.text {
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}}),
            );
        }
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
        index += 1;
    }
    for (k, (name, args)) in r.tools.iter().enumerate() {
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "tool_use", "id": format!("toolu_{k}"), "name": name, "input": {}}}),
        );
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        );
        for p in args {
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": p}}),
            );
        }
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        );
        index += 1;
    }
    let stop = if r.tools.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": 3}}),
    );
    ev("message_stop", json!({"type": "message_stop"}));
    s
}

fn openai_sse(r: &Reply) -> String {
    let mut s = String::new();
    let mut chunk = |delta: Value, finish: Value| {
        let v = json!({"id": "chatcmpl-p", "object": "chat.completion.chunk", "created": 1, "model": "g",
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        s.push_str(&format!("data: {v}\n\n"));
    };
    chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    for p in &r.reasoning {
        chunk(json!({"reasoning_content": p}), Value::Null);
    }
    for p in &r.text {
        chunk(json!({"content": p}), Value::Null);
    }
    for (k, (name, args)) in r.tools.iter().enumerate() {
        chunk(
            json!({"tool_calls": [{"index": k, "id": format!("call_{k}"), "type": "function", "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        );
        for p in args {
            chunk(
                json!({"tool_calls": [{"index": k, "function": {"arguments": p}}]}),
                Value::Null,
            );
        }
    }
    let finish = if r.tools.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    chunk(json!({}), json!(finish));
    s.push_str("data: {\"id\":\"chatcmpl-p\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"g\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\ndata: [DONE]\n\n");
    s
}

fn expected_tools(r: &Reply, prefix: &str) -> Vec<(String, String, String)> {
    r.tools
        .iter()
        .enumerate()
        .map(|(k, (name, args))| (format!("{prefix}{k}"), name.clone(), args.concat()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        // Failures are reported in the output; nothing is written outside the module.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn anthropic_streams_translate_content_intact(r in reply(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let src = anthropic_sse(&r);
        let whole = translate_chunks(Dialect::Anthropic, Dialect::OpenAi, &[src.as_bytes()], true);
        let (i, j) = {
            let (x, y) = (a.index(src.len() + 1), b.index(src.len() + 1));
            (x.min(y), x.max(y))
        };
        let bytes = src.as_bytes();
        let split = translate_chunks(Dialect::Anthropic, Dialect::OpenAi, &[&bytes[..i], &bytes[i..j], &bytes[j..]], true);
        prop_assert_eq!(&split, &whole);
        let acc = read_openai(&whole);
        prop_assert_eq!(acc.text, r.text.concat());
        prop_assert_eq!(acc.reasoning, r.reasoning.concat());
        prop_assert_eq!(acc.tools, expected_tools(&r, "toolu_"));
        prop_assert_eq!(acc.finish.as_deref(), Some(if r.tools.is_empty() { "stop" } else { "tool_calls" }));
    }

    #[test]
    fn openai_streams_translate_content_intact(r in reply(), a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let src = openai_sse(&r);
        let whole = translate_chunks(Dialect::OpenAi, Dialect::Anthropic, &[src.as_bytes()], false);
        let (i, j) = {
            let (x, y) = (a.index(src.len() + 1), b.index(src.len() + 1));
            (x.min(y), x.max(y))
        };
        let bytes = src.as_bytes();
        let split = translate_chunks(Dialect::OpenAi, Dialect::Anthropic, &[&bytes[..i], &bytes[i..j], &bytes[j..]], false);
        prop_assert_eq!(&split, &whole);
        let acc = read_anthropic(&whole);
        prop_assert_eq!(acc.text, r.text.concat());
        prop_assert_eq!(acc.reasoning, r.reasoning.concat());
        prop_assert_eq!(acc.tools, expected_tools(&r, "call_"));
        prop_assert_eq!(acc.finish.as_deref(), Some(if r.tools.is_empty() { "end_turn" } else { "tool_use" }));
        let usage = acc.usage.unwrap();
        prop_assert_eq!(&usage["input_tokens"], &json!(7));
        prop_assert_eq!(&usage["output_tokens"], &json!(3));
    }
}
