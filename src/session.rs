//! Which conversation a request belongs to, from what clients already send: a session id, a
//! turn, and the client product (`platform`) for alerts.
//!
//! **Session.** The first source of `health.session_from` the request carries wins. The
//! default: `x-switchyard-session`; Claude Code's `X-Claude-Code-Session-Id` (or the
//! `session_id` inside its `metadata.user_id`); Codex's `x-codex-turn-metadata` /
//! `session-id` / `thread-id` / `conversation_id` headers; and for agents that send nothing
//! (Hermes on a custom endpoint) and offer tools, a fingerprint of the conversation: the
//! client's credential (hashed), the system prompt and the first user message. Ids from a derived source are
//! prefixed with it (`claude_code:…`), so equal values from two sources never meet.
//!
//! **Turn.** The client's own turn id when it sends one (`x-switchyard-turn`, the `turn_id`
//! of Codex's turn metadata, Claude Code's `x-claude-code-prompt-id`). Otherwise it comes from
//! the conversation in the body:
//! - a call that offers tools is a call of the agent's main loop; its turn is the
//!   conversation's first user text plus the number of user messages so far
//!   ([`Turn::MainLine`]). A tool loop adds tool results, not user messages, so every call of
//!   one turn gets the same id; the next user message starts the next turn;
//! - a call without tools (a title, a summary, a topic check) or a sub-agent's call belongs to
//!   the session's current turn ([`Turn::Side`]), and takes its own conversation-derived id
//!   only when the session has none.
//!
//! Only the spans the body scan located are parsed, once, and only when a source needs them.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::body::FieldSpans;
use crate::config::SessionSource;

/// The longest session or turn id taken from a request; longer ones are ignored.
pub const MAX_ID_LEN: usize = 256;

/// A request's conversation, as far as the request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub session: Box<str>,
    pub turn: Turn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// The client named it.
    Given(Box<str>),
    /// A call of the agent's main loop (it offers tools).
    MainLine(Box<str>),
    /// A call without tools: part of the session's current turn; this id when there is none.
    Side(Box<str>),
    /// The body has no conversation to derive one from.
    Unknown,
}

/// Headers that mark a sub-agent's call (Claude Code's Task agents, Codex's review/compact
/// agents): its own conversation, but part of the session's current turn.
const SUBAGENT_MARKERS: [&str; 2] = ["x-claude-code-agent-id", "x-openai-subagent"];

/// The session and turn of a request, from the first of `sources` it carries.
pub fn derive(
    sources: &[SessionSource],
    headers: &HeaderMap,
    body: &[u8],
    spans: &FieldSpans,
) -> Option<Derived> {
    // Parsed at most once, and only when a source or the turn needs it.
    let mut parsed: Option<Option<Conversation>> = None;
    let mut conversation = || {
        parsed
            .get_or_insert_with(|| Conversation::read(body, spans))
            .clone()
    };
    for source in sources {
        let found = match source {
            // Agents offer tools; a stateless client repeating one prompt (a cron job) does
            // not, and must not have its identical requests taken for one conversation.
            SessionSource::Conversation if offers_tools(body, spans) => {
                conversation().map(|c| (c.fingerprint(headers), None))
            }
            SessionSource::Conversation => None,
            _ => session_from(source, headers, body, spans),
        };
        let Some((session, given_turn)) = found else {
            continue;
        };
        let session: Box<str> = match source {
            SessionSource::Switchyard => session.into(),
            _ => format!("{}:{session}", source.label()).into(),
        };
        let turn = match (given_turn, conversation()) {
            (Some(t), _) => Turn::Given(t.into()),
            (None, None) => Turn::Unknown,
            (None, Some(c)) => {
                let id: Box<str> = c.turn_id().into();
                let subagent = SUBAGENT_MARKERS.iter().any(|h| headers.contains_key(*h));
                if offers_tools(body, spans) && !subagent {
                    Turn::MainLine(id)
                } else {
                    Turn::Side(id)
                }
            }
        };
        return Some(Derived { session, turn });
    }
    None
}

/// A session id (and a turn id when the same source names one).
fn session_from(
    source: &SessionSource,
    headers: &HeaderMap,
    body: &[u8],
    spans: &FieldSpans,
) -> Option<(String, Option<String>)> {
    let header = |name: &HeaderName| header_id(headers, name);
    match source {
        SessionSource::Switchyard => {
            let session = header(&H_SWITCHYARD_SESSION)?;
            Some((session, header(&H_SWITCHYARD_TURN)))
        }
        SessionSource::ClaudeCode => {
            let session = header(&H_CLAUDE_CODE_SESSION).or_else(|| {
                let user_id = metadata_user_id(body, spans)?;
                claude_code_session(&user_id)
            })?;
            // Sent with CLAUDE_CODE_GATEWAY_HINT_HEADERS=1: one id per typed prompt.
            Some((session, header(&H_CLAUDE_CODE_PROMPT)))
        }
        SessionSource::Codex => {
            if let Some(found) = headers
                .get(&H_CODEX_TURN_METADATA)
                .and_then(|v| codex_turn_metadata(v.as_bytes()))
            {
                return Some(found);
            }
            H_CODEX_SESSION.iter().find_map(header).map(|s| (s, None))
        }
        SessionSource::Header(name) => header(name).map(|s| (s, None)),
        SessionSource::PromptCacheKey => {
            string_at(body, &spans.prompt_cache_key).map(|s| (s, None))
        }
        SessionSource::User => string_at(body, &spans.user).map(|s| (s, None)),
        SessionSource::SafetyIdentifier => {
            string_at(body, &spans.safety_identifier).map(|s| (s, None))
        }
        SessionSource::MetadataUserId => metadata_user_id(body, spans).map(|s| (s, None)),
        SessionSource::Conversation => None,
    }
}

fn usable(id: &str) -> Option<String> {
    let id = id.trim();
    (!id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control))
        .then(|| id.to_string())
}

// Looked up by a ready `HeaderName`: a `&str` name is parsed and checked on every lookup, and
// these run on every request (~3,000 instructions of a ~85,000-instruction request, callgrind).
static H_SWITCHYARD_SESSION: HeaderName = HeaderName::from_static("x-switchyard-session");
static H_SWITCHYARD_TURN: HeaderName = HeaderName::from_static("x-switchyard-turn");
static H_CLAUDE_CODE_SESSION: HeaderName = HeaderName::from_static("x-claude-code-session-id");
static H_CLAUDE_CODE_PROMPT: HeaderName = HeaderName::from_static("x-claude-code-prompt-id");
static H_CODEX_TURN_METADATA: HeaderName = HeaderName::from_static("x-codex-turn-metadata");
/// The names Codex versions have sent their conversation id under, in the order tried.
static H_CODEX_SESSION: [HeaderName; 6] = [
    HeaderName::from_static("session_id"),
    HeaderName::from_static("session-id"),
    HeaderName::from_static("thread-id"),
    HeaderName::from_static("thread_id"),
    HeaderName::from_static("conversation_id"),
    HeaderName::from_static("conversation-id"),
];

fn header_id(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    usable(headers.get(name)?.to_str().ok()?)
}

fn string_at(body: &[u8], span: &Option<std::ops::Range<usize>>) -> Option<String> {
    let raw = &body[span.clone()?];
    let s: Cow<'_, str> = serde_json::from_slice(raw).ok()?;
    usable(&s)
}

fn metadata_user_id(body: &[u8], spans: &FieldSpans) -> Option<String> {
    #[derive(Deserialize)]
    struct Metadata<'a> {
        #[serde(borrow)]
        user_id: Option<Cow<'a, str>>,
    }
    let raw = &body[spans.metadata.clone()?];
    let m: Metadata<'_> = serde_json::from_slice(raw).ok()?;
    usable(&m.user_id?)
}

/// The session inside Claude Code's `metadata.user_id`: a JSON object with `session_id` in
/// current versions, `user_<hash>_account_<uuid>_session_<uuid>` in older ones. Anything else
/// names a person, not a session, and is not used by this source.
fn claude_code_session(user_id: &str) -> Option<String> {
    if user_id.starts_with('{') {
        #[derive(Deserialize)]
        struct Ids {
            session_id: Option<String>,
        }
        let ids: Ids = serde_json::from_str(user_id).ok()?;
        return usable(&ids.session_id?);
    }
    let (_, session) = user_id.rsplit_once("_session_")?;
    usable(session)
}

/// Codex's `x-codex-turn-metadata`: a JSON object with the thread (session) and turn ids.
fn codex_turn_metadata(value: &[u8]) -> Option<(String, Option<String>)> {
    #[derive(Deserialize)]
    struct TurnMetadata {
        session_id: Option<String>,
        thread_id: Option<String>,
        conversation_id: Option<String>,
        turn_id: Option<String>,
    }
    let m: TurnMetadata = serde_json::from_slice(value).ok()?;
    let session = [m.session_id, m.thread_id, m.conversation_id]
        .into_iter()
        .flatten()
        .find_map(|s| usable(&s))?;
    Some((session, m.turn_id.and_then(|t| usable(&t))))
}

/// One message of `messages` (or item of Responses' `input`), only as far as turns need it.
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    role: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// What a user message is to a turn.
enum UserMessage {
    /// Words from the user: the text, for the conversation's root.
    Genuine(String),
    /// Tool results (with or without text riding along): the turn goes on.
    ToolResults,
}

fn user_message(content: Option<&RawValue>) -> Option<UserMessage> {
    let raw = content?.get().as_bytes();
    if raw.first() == Some(&b'[') {
        let blocks: Vec<Block<'_>> = serde_json::from_slice(raw).ok()?;
        if blocks.iter().any(|b| {
            matches!(
                b.kind.as_deref(),
                Some("tool_result") | Some("function_call_output")
            )
        }) {
            return Some(UserMessage::ToolResults);
        }
    }
    text_of(raw).map(UserMessage::Genuine)
}

/// What a conversation-derived session and turn are made of.
#[derive(Debug, Clone)]
struct Conversation {
    /// The system prompt's text (`system`, `instructions`, or a leading system/developer
    /// message), when there is one.
    opening: String,
    /// The first user message's text: the conversation's root.
    root: String,
    /// How many user messages (not tool results) it has: the turn number.
    user_messages: u64,
}

impl Conversation {
    fn read(body: &[u8], spans: &FieldSpans) -> Option<Conversation> {
        let raw = &body[spans.messages.clone().or_else(|| spans.input.clone())?];
        let mut opening = String::new();
        for span in [&spans.system, &spans.instructions].into_iter().flatten() {
            if let Some(text) = text_of(&body[span.clone()]) {
                opening.push_str(&text);
            }
        }
        if raw.first() == Some(&b'"') {
            // Responses' `input` as one string: a one-message conversation.
            let text: Cow<'_, str> = serde_json::from_slice(raw).ok()?;
            return Some(Conversation {
                opening,
                root: text.into_owned(),
                user_messages: 1,
            });
        }
        let messages: Vec<Message<'_>> = serde_json::from_slice(raw).ok()?;
        let mut root: Option<String> = None;
        let mut user_messages = 0u64;
        for (i, m) in messages.iter().enumerate() {
            let role = m.role.as_deref();
            if i == 0 && matches!(role, Some("system") | Some("developer")) {
                if let Some(text) = m.content.and_then(|c| text_of(c.get().as_bytes())) {
                    opening.push_str(&text);
                }
            }
            let is_user =
                role == Some("user") && matches!(m.kind.as_deref(), None | Some("message"));
            if !is_user {
                continue;
            }
            if let Some(UserMessage::Genuine(text)) = user_message(m.content) {
                user_messages += 1;
                root.get_or_insert(text);
            }
        }
        Some(Conversation {
            opening,
            root: root?,
            user_messages,
        })
    }

    /// The turn: the root and the number of user messages so far.
    fn turn_id(&self) -> String {
        let digest = Sha256::digest(self.root.as_bytes());
        format!("c{}.{}", hex(&digest[..8]), self.user_messages)
    }

    /// A session id for clients that send none: the credential the client presented (hashed,
    /// so two tenants of one gateway never share a session), the system prompt and the root.
    fn fingerprint(&self, headers: &HeaderMap) -> String {
        let mut h = Sha256::new();
        for name in [http::header::AUTHORIZATION.as_str(), "x-api-key"] {
            if let Some(v) = headers.get(name) {
                h.update(v.as_bytes());
            }
            h.update([0]);
        }
        h.update(self.opening.as_bytes());
        h.update([0]);
        h.update(self.root.as_bytes());
        hex(&h.finalize()[..8])
    }
}

/// The text of a JSON string, or of the text blocks of a content array.
fn text_of(raw: &[u8]) -> Option<String> {
    if raw.first() == Some(&b'"') {
        let text: Cow<'_, str> = serde_json::from_slice(raw).ok()?;
        return Some(text.into_owned());
    }
    let blocks: Vec<Block<'_>> = serde_json::from_slice(raw).ok()?;
    Some(
        blocks
            .iter()
            .filter(|b| matches!(b.kind.as_deref(), Some("text") | Some("input_text")))
            .filter_map(|b| b.text.as_deref())
            .collect(),
    )
}

fn offers_tools(body: &[u8], spans: &FieldSpans) -> bool {
    spans.tools.clone().is_some_and(|r| {
        let v = body[r].trim_ascii();
        v != b"null" && !(v.starts_with(b"[") && v[1..].trim_ascii() == b"]")
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The client product, for alerts and logs: the configured header, else the User-Agent's
/// first product token (`claude-cli/2.1.3 (external, cli)` → `claude-cli`). Only a short,
/// plain token is kept.
pub fn platform(headers: &HeaderMap, header: Option<&http::HeaderName>) -> Option<Box<str>> {
    let raw = match header {
        Some(name) => headers.get(name)?.to_str().ok()?.trim(),
        None => {
            let ua = headers.get(http::header::USER_AGENT)?.to_str().ok()?;
            ua.split(['/', ' ']).next()?.trim()
        }
    };
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b));
    ok.then(|| raw.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn derive_from(
        sources: &[SessionSource],
        h: &[(&str, &str)],
        body: serde_json::Value,
    ) -> Option<Derived> {
        let bytes = serde_json::to_vec(&body).unwrap();
        let scanned = crate::body::scan(&bytes).unwrap();
        derive(sources, &headers(h), &bytes, &scanned.spans)
    }

    fn session(d: &Option<Derived>) -> Option<&str> {
        d.as_ref().map(|d| &*d.session)
    }

    #[test]
    fn session_sources_are_tried_in_the_configured_order() {
        let defaults = SessionSource::DEFAULT;
        let body = json!({"model": "m", "messages": [], "user": "bob",
            "metadata": {"user_id": "{\"device_id\":\"d1\",\"account_uuid\":\"a1\",\"session_id\":\"s-meta\"}"}});
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "ours first",
                vec![
                    ("x-switchyard-session", "chat-42"),
                    ("x-claude-code-session-id", "cc"),
                ],
                Some("chat-42"),
            ),
            (
                "claude code header",
                vec![("x-claude-code-session-id", "cc-1")],
                Some("claude_code:cc-1"),
            ),
            (
                "codex header",
                vec![("session_id", "th-1")],
                Some("claude_code:s-meta"),
            ),
            (
                "no headers: claude code metadata",
                vec![],
                Some("claude_code:s-meta"),
            ),
        ];
        for (case, h, want) in cases {
            assert_eq!(
                session(&derive_from(&defaults, &h, body.clone())),
                want,
                "{case}"
            );
        }
        // The person-naming `user` is used only when configured.
        let no_meta = json!({"model": "m", "messages": [], "user": "bob"});
        assert_eq!(derive_from(&defaults, &[], no_meta.clone()), None);
        assert_eq!(
            session(&derive_from(&[SessionSource::User], &[], no_meta)),
            Some("user:bob")
        );
        let codex_only = json!({"model": "m", "input": []});
        assert_eq!(
            session(&derive_from(
                &defaults,
                &[("session_id", "th-1")],
                codex_only
            )),
            Some("codex:th-1")
        );
    }

    #[test]
    fn claude_code_user_ids_yield_their_session_and_nothing_else_does() {
        assert_eq!(
            claude_code_session(r#"{"device_id":"x","account_uuid":"","session_id":"5f1c"}"#),
            Some("5f1c".into())
        );
        assert_eq!(
            claude_code_session("user_ab12_account_3c4d_session_9e8f-77"),
            Some("9e8f-77".into())
        );
        assert_eq!(claude_code_session("alice@example.com"), None);
        assert_eq!(claude_code_session("{\"device_id\":\"x\"}"), None);
        assert_eq!(claude_code_session("{not json"), None);
    }

    #[test]
    fn codex_turn_metadata_carries_session_and_turn() {
        let d = derive_from(
            &SessionSource::DEFAULT,
            &[(
                "x-codex-turn-metadata",
                r#"{"thread_id":"019a-th","turn_id":"t-7","sandbox":"none"}"#,
            )],
            json!({"model": "m", "input": "hi"}),
        )
        .unwrap();
        assert_eq!(&*d.session, "codex:019a-th");
        assert_eq!(d.turn, Turn::Given("t-7".into()));
    }

    #[test]
    fn oversized_blank_or_control_ids_are_ignored() {
        let long = "x".repeat(MAX_ID_LEN + 1);
        for bad in [long.as_str(), "   ", "a\tb"] {
            let d = derive_from(
                &[SessionSource::Header(http::HeaderName::from_static(
                    "x-sess",
                ))],
                &[("x-sess", bad)],
                json!({"model": "m"}),
            );
            assert_eq!(d, None, "{bad:?}");
        }
    }

    fn turn(body: serde_json::Value) -> Turn {
        let bytes = serde_json::to_vec(&body).unwrap();
        let scanned = crate::body::scan(&bytes).unwrap();
        let source = SessionSource::Header(http::HeaderName::from_static("x-s"));
        derive(&[source], &headers(&[("x-s", "s")]), &bytes, &scanned.spans)
            .map_or(Turn::Unknown, |d| d.turn)
    }

    fn id(t: &Turn) -> &str {
        match t {
            Turn::Given(s) | Turn::MainLine(s) | Turn::Side(s) => s,
            Turn::Unknown => "",
        }
    }

    #[test]
    fn a_tool_loop_stays_in_its_turn_and_a_new_user_message_starts_the_next() {
        let tools = json!([{"name": "Bash", "input_schema": {"type": "object"}}]);
        let first = json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "fix the bug", "cache_control": {"type": "ephemeral"}}]}]});
        let tool_loop = json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "fix the bug"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
                                         {"type": "text", "text": "<system-reminder>x</system-reminder>"}]}]});
        let next_turn = json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "fix the bug"},
            {"role": "assistant", "content": "done"},
            {"role": "user", "content": "now add a test"}]});
        let (a, b, c) = (turn(first), turn(tool_loop), turn(next_turn));
        assert!(matches!(a, Turn::MainLine(_)));
        assert_eq!(
            a, b,
            "a tool result does not start a turn; cache_control does not matter"
        );
        assert_ne!(id(&a), id(&c));
        assert!(id(&c).ends_with(".2"), "{c:?}");
    }

    #[test]
    fn openai_tool_results_and_responses_items_continue_the_turn() {
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
        let a = turn(json!({"model": "m", "tools": tools, "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]}));
        let b = turn(json!({"model": "m", "tools": tools, "messages": [
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "42"}]}));
        assert_eq!(a, b);
        let r1 = turn(
            json!({"model": "m", "tools": [{"type": "function", "name": "f"}], "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}),
        );
        let r2 = turn(
            json!({"model": "m", "tools": [{"type": "function", "name": "f"}], "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "42"}]}),
        );
        assert_eq!(r1, r2);
        assert_eq!(
            id(&a),
            id(&r1),
            "the same words start the same conversation"
        );
    }

    #[test]
    fn a_call_without_tools_is_a_side_call_and_a_body_without_messages_has_no_turn() {
        let t = turn(
            json!({"model": "m", "tools": [], "messages": [{"role": "user", "content": "Title?"}]}),
        );
        assert!(matches!(t, Turn::Side(_)));
        assert_eq!(turn(json!({"model": "m"})), Turn::Unknown);
        assert_eq!(
            turn(json!({"model": "m", "messages": [{"role": "assistant", "content": "x"}]})),
            Turn::Unknown
        );
    }

    #[test]
    fn platform_is_the_configured_header_or_the_user_agents_product() {
        let h = headers(&[
            ("user-agent", "claude-cli/2.1.3 (external, cli)"),
            ("x-title", "Hermes Agent"),
            ("x-app", "hermes"),
        ]);
        assert_eq!(platform(&h, None).as_deref(), Some("claude-cli"));
        assert_eq!(
            platform(&h, Some(&http::HeaderName::from_static("x-app"))).as_deref(),
            Some("hermes")
        );
        // Not a plain token: not shown.
        assert_eq!(
            platform(&h, Some(&http::HeaderName::from_static("x-title"))),
            None
        );
        assert_eq!(
            platform(&headers(&[("user-agent", "OpenAI/Python 1.99.1")]), None).as_deref(),
            Some("OpenAI")
        );
    }

    /// Real requests captured from the agents (tests/it/fixtures/agents, see their `source`).
    mod captured {
        use super::*;

        fn fixture(text: &str) -> (HeaderMap, Vec<u8>) {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut h = HeaderMap::new();
            for (k, val) in v["headers"].as_object().unwrap() {
                h.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    val.as_str().unwrap().parse().unwrap(),
                );
            }
            (h, serde_json::to_vec(&v["body"]).unwrap())
        }

        fn derive_fixture(text: &str) -> Option<Derived> {
            let (h, body) = fixture(text);
            let scanned = crate::body::scan(&body).unwrap();
            derive(&SessionSource::DEFAULT, &h, &body, &scanned.spans)
        }

        fn derived(text: &str) -> Derived {
            derive_fixture(text).expect("a session")
        }

        macro_rules! agent {
            ($path:literal) => {
                derived(include_str!(concat!(
                    "../tests/it/fixtures/agents/",
                    $path,
                    ".json"
                )))
            };
        }

        #[test]
        fn claude_code_sessions_survive_continue_and_resume_and_a_tool_loop_is_one_turn() {
            let print = agent!("claude_code/01_print_main");
            let cont = agent!("claude_code/02_continue_main");
            let resume = agent!("claude_code/03_resume_main");
            assert!(print.session.starts_with("claude_code:f4324d46"));
            assert_eq!(print.session, cont.session);
            assert_eq!(print.session, resume.session);
            assert_ne!(print.turn, cont.turn, "--continue is the next turn");
            let first = agent!("claude_code/04_tool_loop_first");
            let tool_result = agent!("claude_code/05_tool_loop_tool_result");
            assert!(matches!(first.turn, Turn::MainLine(_)), "{first:?}");
            assert_eq!(
                first.turn, tool_result.turn,
                "the tool loop stays in its turn"
            );
            assert!(matches!(
                agent!("claude_code/07_interactive_title").turn,
                Turn::Side(_)
            ));
        }

        #[test]
        fn claude_code_prompt_ids_are_turns_and_its_subagent_shares_its_prompts_turn() {
            let main = agent!("claude_code/08_hints_main");
            let sub = agent!("claude_code/09_hints_subagent");
            let after = agent!("claude_code/10_hints_main_after_subagent");
            assert_eq!(
                main.turn,
                Turn::Given("478779f7-d7a5-4d5c-8780-d462f265577a".into())
            );
            assert_eq!(main.turn, sub.turn);
            assert_eq!(main.turn, after.turn);
            // The title call carries no prompt id: a side call of the current turn.
            assert!(matches!(
                agent!("claude_code/12_hints_interactive_title").turn,
                Turn::Side(_)
            ));
        }

        #[test]
        fn codex_sends_its_thread_and_turn() {
            let a = agent!("codex/03_tool_loop_first");
            let b = agent!("codex/04_tool_loop_function_output");
            assert_eq!(&*a.session, "codex:01a233f2-b931-71b0-89b1-966d4f57d5f9");
            assert!(matches!(a.turn, Turn::Given(_)));
            assert_eq!(a.turn, b.turn);
            let resumed = agent!("codex/02_exec_resume_main");
            assert_eq!(agent!("codex/01_exec_main").session, resumed.session);
        }

        #[test]
        fn hermes_sends_nothing_so_its_conversation_is_fingerprinted() {
            let main = agent!("hermes/01_custom_main_tools");
            let tool_result = agent!("hermes/02_custom_tool_result");
            assert!(main.session.starts_with("conversation:"), "{main:?}");
            assert_eq!(main.session, tool_result.session);
            assert!(matches!(main.turn, Turn::MainLine(_)));
            assert_eq!(main.turn, tool_result.turn);
            // Its title call offers no tools and names nothing: no session (documented; the
            // engine's eject-at-once keeps it off a backend that just failed).
            let title = derive_fixture(include_str!(
                "../tests/it/fixtures/agents/hermes/04_title_constructed.json"
            ));
            assert_eq!(title, None);
        }
    }
}
