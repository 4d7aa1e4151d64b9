//! Tests: golden request/response translations (fixtures in `tests/fixtures/translate/`),
//! focused mapping tests, property tests, stream tests and a round trip through the mock.
//!
//! Golden files are reviewed snapshots: `UPDATE_GOLDEN=1 cargo test --lib translate`
//! rewrites them from the current output (then review the diff).

mod chat_responses;
mod golden;
mod mapping;
mod mock_e2e;
mod props;
mod responses;
mod responses_anthropic;
mod streams;

// The mock's request validator (what the real APIs reject) checks translated requests.
use crate::mock::validate;

use std::path::PathBuf;

use serde_json::Value;

use super::{Options, StreamTranslator};
use crate::dialect::Dialect;
use crate::sse::{SseEvent, SseParser};

pub(super) const CREATED: u64 = 1_700_000_000;

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/translate")
        .join(name)
}

pub(super) fn read(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub(super) fn read_json(name: &str) -> Value {
    serde_json::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// Compares with (or, when updating, writes) a golden JSON file.
pub(super) fn golden_json(name: &str, actual: &Value) {
    if updating() {
        let text = serde_json::to_string_pretty(actual).unwrap() + "\n";
        std::fs::write(fixture_path(name), text).unwrap();
        return;
    }
    let want = read_json(name);
    assert_eq!(
        actual,
        &want,
        "{name} differs; actual:\n{}",
        serde_json::to_string_pretty(actual).unwrap()
    );
}

/// Compares with (or, when updating, writes) a golden text file, byte for byte.
pub(super) fn golden_text(name: &str, actual: &str) {
    if updating() {
        std::fs::write(fixture_path(name), actual).unwrap();
        return;
    }
    let want = read(name);
    assert!(actual == want, "{name} differs; actual:\n{actual}");
}

pub(super) fn opts() -> Options {
    Options {
        default_max_tokens: 4096,
        strict: false,
    }
}

pub(super) fn to_anthropic_with(
    body: &Value,
    opts: &Options,
) -> Result<Value, super::TranslateError> {
    let bytes = super::request(
        Dialect::OpenAi,
        Dialect::Anthropic,
        body.to_string().as_bytes(),
        "claude-sonnet-4-5",
        opts,
    )?;
    Ok(serde_json::from_slice(&bytes).unwrap())
}

pub(super) fn to_openai_with(body: &Value, opts: &Options) -> Result<Value, super::TranslateError> {
    let bytes = super::request(
        Dialect::Anthropic,
        Dialect::OpenAi,
        body.to_string().as_bytes(),
        "gpt-4o",
        opts,
    )?;
    Ok(serde_json::from_slice(&bytes).unwrap())
}

/// OpenAI request → Anthropic request, checked against the Messages API's rules.
pub(super) fn to_anthropic(body: &Value) -> Value {
    let v = to_anthropic_with(body, &opts()).unwrap();
    assert_valid_anthropic(&v);
    v
}

/// Anthropic request → OpenAI request, checked against the Chat Completions API's rules.
pub(super) fn to_openai(body: &Value) -> Value {
    let v = to_openai_with(body, &opts()).unwrap();
    assert_valid_openai(&v);
    v
}

pub(super) fn assert_valid_anthropic(v: &Value) {
    if let Err(e) = validate::anthropic(v, false) {
        panic!(
            "not a valid Anthropic request: {e}\n{}",
            serde_json::to_string_pretty(v).unwrap()
        );
    }
    // What the validator leaves to the real API: alternating roles and non-blank text.
    let messages = v["messages"].as_array().unwrap();
    for pair in messages.windows(2) {
        assert_ne!(
            pair[0]["role"], pair[1]["role"],
            "roles must alternate: {v}"
        );
    }
    for m in messages {
        if let Some(blocks) = m["content"].as_array() {
            assert!(!blocks.is_empty(), "empty content: {v}");
            for b in blocks {
                if b["type"] == "text" {
                    assert!(
                        !b["text"].as_str().unwrap().trim().is_empty(),
                        "blank text: {v}"
                    );
                }
            }
            // tool_result blocks come first in their message.
            let first_other = blocks.iter().position(|b| b["type"] != "tool_result");
            if let Some(k) = first_other {
                assert!(
                    blocks[k..].iter().all(|b| b["type"] != "tool_result"),
                    "tool_result after other blocks: {v}"
                );
            }
        } else {
            assert!(
                !m["content"].as_str().unwrap().trim().is_empty(),
                "blank text: {v}"
            );
        }
    }
    let max = v["max_tokens"].as_u64().unwrap();
    assert!(max >= 1);
}

pub(super) fn assert_valid_openai(v: &Value) {
    if let Err(e) = validate::openai(v) {
        panic!(
            "not a valid OpenAI request: {e:?}\n{}",
            serde_json::to_string_pretty(v).unwrap()
        );
    }
}

/// Feeds `chunks` through the SSE parser and a translator (then `finish`).
pub(super) fn translate_chunks(
    from: Dialect,
    to: Dialect,
    chunks: &[&[u8]],
    include_usage: bool,
) -> Vec<u8> {
    let mut parser = SseParser::default();
    let mut t = StreamTranslator::new(from, to, "route-model", include_usage);
    t.set_created(CREATED);
    let mut events = Vec::new();
    let mut out = Vec::new();
    for c in chunks {
        parser
            .feed(c, &mut events)
            .expect("events within the size limit");
        for ev in events.drain(..) {
            t.push(&ev, &mut out);
        }
    }
    t.finish(&mut out);
    out
}

pub(super) fn parse_sse(bytes: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    parser
        .feed(bytes, &mut events)
        .expect("events within the size limit");
    events
}
