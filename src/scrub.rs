//! The scrubber: one place that removes secrets from any text leaving the process.
//!
//! Exact values of every configured credential are the strongest guarantee (an Aho-Corasick
//! automaton over all of them, plus credentials re-read at run time via [`Scrubber::add_secret`]);
//! common key shapes (`sk-…`, `sk-ant-…`, `AIza…`, Groq, xAI, Hugging Face, GitHub, AWS, …,
//! bearer tokens, `key=` parameters, JWTs, header and JSON-field echoes) catch what the config
//! does not know. URLs of any scheme lose their user info, and their query strings.
//!
//! JSON escapes cannot smuggle a secret past it: `\uXXXX` and `\/` escapes are first rewritten to
//! the canonical form `serde_json` writes (the character itself; `\"`, `\\`, `\n`… where JSON
//! requires an escape), so a key spelled `\u0073k-…` is seen as `sk-…`. That rewrite and the
//! redactions never split an escape, so a JSON string stays valid JSON. Built once at start-up,
//! never per request.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Captures, Regex};

pub const REDACTED: &str = "[redacted]";

/// Credentials added at run time ([`Scrubber::add_secret`]) beyond this many drop the oldest:
/// each re-read key file adds one, and a long-running process must not grow without bound. A key
/// rotated out that long ago is still caught by the key shapes if it has a known one.
pub const MAX_RUNTIME_SECRETS: usize = 64;

/// Shorter values would redact ordinary words; the shapes still catch real keys.
const MIN_SECRET_LEN: usize = 6;

pub struct Scrubber {
    /// Configured values (long enough to redact), fixed at start-up.
    configured: Vec<Box<str>>,
    /// Values added at run time, oldest first. Also serialises writers, so the automaton is
    /// rebuilt outside the read lock and readers only ever wait for a pointer swap.
    runtime: Mutex<VecDeque<Box<str>>>,
    /// Every exact form of every value; cloning it is an `Arc` clone.
    exact: RwLock<Option<AhoCorasick>>,
    shapes: Regex,
    url_user_info: Regex,
    url_query: Regex,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber")
    }
}

// Every capture group in SHAPES is a prefix that stays visible (an escape before the key, a
// header or field name); the rest of the match is redacted. ASCII word boundaries keep the regex
// on its DFA for non-ASCII text; a JSON escape such as `\n` also counts as a boundary, so a key
// right after an escaped newline is still found.
const SHAPES: &str = concat!(
    r"(?:(?-u:\b)|(\\[nrtbf]|\\u[0-9A-Fa-f]{4}))(?:",
    // OpenAI (sk-, sk-proj-), Anthropic (sk-ant-api03-, admin sk-ant-admin01-), OpenRouter
    // (sk-or-v1-), DeepSeek and others that use a bare sk-.
    r"sk-[A-Za-z0-9_\-]{8,}",
    // Google API keys.
    r"|AIza[0-9A-Za-z_\-]{20,}",
    // Google OAuth access tokens (`ya29.c.…` for service accounts); a final dot is prose.
    r"|ya29\.[A-Za-z0-9_\-.]{19,}[A-Za-z0-9_\-]",
    // The next bodies are all-alphanumeric, so a run of them is required before any `_` or `-`:
    // identifiers like `hf_model_name_for_tests` stay.
    // Groq.
    r"|gsk_[A-Za-z0-9]{20,}[A-Za-z0-9_\-]*",
    // xAI.
    r"|xai-[A-Za-z0-9]{20,}[A-Za-z0-9_\-]*",
    // Hugging Face.
    r"|hf_[A-Za-z0-9]{20,}[A-Za-z0-9_\-]*",
    // Replicate.
    r"|r8_[A-Za-z0-9]{20,}[A-Za-z0-9_\-]*",
    // Perplexity.
    r"|pplx-[A-Za-z0-9]{20,}[A-Za-z0-9_\-]*",
    // Fireworks.
    r"|fw_[A-Za-z0-9]{20,}[A-Za-z0-9_\-]*",
    // Cerebras.
    r"|csk-[A-Za-z0-9]{20,}[A-Za-z0-9_\-]*",
    // Together (`tgp_v1_…`).
    r"|tgp_v1_[A-Za-z0-9_\-]{20,}",
    // GitHub classic tokens (personal, OAuth, server, user-to-server, refresh).
    r"|gh[posur]_[A-Za-z0-9]{30,}[A-Za-z0-9_\-]*",
    // GitHub fine-grained tokens.
    r"|github_pat_[A-Za-z0-9]{20,}[A-Za-z0-9_]*",
    // Stripe secret and restricted keys, live and test.
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
    // NVIDIA.
    r"|nvapi-[A-Za-z0-9_\-]{20,}",
    // GitLab personal access tokens.
    r"|glpat-[A-Za-z0-9_\-]{20,}",
    // Slack bot, app, user and refresh tokens.
    r"|xox[abpr]-[A-Za-z0-9\-]{10,}",
    // AWS access key ids, long-lived and temporary.
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
    // JWT-shaped tokens.
    r"|eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}",
    // Bearer tokens.
    r"|((?i:bearer)\s+)[A-Za-z0-9._~+/=\-]{6,}",
    // Header echoes: "x-api-key: …", "authorization: Basic …", also quoted and JSON-escaped.
    r#"|((?i:x-api-key|api-key|x-goog-api-key|proxy-authorization|authorization)(?-u:\b)\\?["']?\s*[:=]\s*\\?["']?)(?:(?i:bearer|basic)\s+)?[^\s"'\\,;}]{4,}"#,
    // key=… in query strings and forms.
    r#"|((?i:api_key|api-key|apikey|key|access_token|refresh_token|id_token|token|client_secret|secret|password)=)[^&\s"'\\<>]{4,}"#,
    r")",
    // JSON fields echoing a credential: "api_key": "…", also inside a JSON-escaped string.
    r#"|(\\?["'](?i:api[_-]?key|x-api-key|access[_-]?token|refresh[_-]?token|id[_-]?token|auth[_-]?token|client[_-]?secret|secret[_-]?access[_-]?key|secret[_-]?key|private[_-]?key|password|secret|token)\\?["']\s*:\s*\\?["'])[^"'\\\r\n]{4,}"#,
);

impl Scrubber {
    /// `secrets` are the exact values to redact (configured keys, tokens).
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Scrubber {
        let mut configured: Vec<Box<str>> = Vec::new();
        for value in secrets.iter().map(AsRef::as_ref) {
            if value.len() >= MIN_SECRET_LEN && !configured.iter().any(|c| &**c == value) {
                configured.push(value.into());
            }
        }
        let exact = exact_automaton(configured.iter());
        Scrubber {
            configured,
            runtime: Mutex::new(VecDeque::new()),
            exact: RwLock::new(exact),
            shapes: Regex::new(SHAPES).expect("valid regex"),
            // Greedy up to the last `@` of the authority: a password may contain a raw `@`.
            url_user_info: Regex::new(r#"(?i)([a-z][a-z0-9+.\-]*://)[^/\s?#"\\<>]*@"#)
                .expect("valid regex"),
            url_query: Regex::new(r#"(?i)(https?://[^\s?#"\\<>]*)\?[^\s#"\\<>]*"#)
                .expect("valid regex"),
        }
    }

    /// Also redact `value` exactly from now on: a credential that changed at run time (a key
    /// re-read from its file). Values already known are not added twice; short ones (under 6
    /// bytes) are ignored; past [`MAX_RUNTIME_SECRETS`] the oldest added value is dropped.
    pub fn add_secret(&self, value: &str) {
        if value.len() < MIN_SECRET_LEN || self.configured.iter().any(|c| &**c == value) {
            return;
        }
        let mut runtime = self.runtime.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = runtime.iter().position(|v| &**v == value) {
            // Known: only make it the newest, so the current key is the last to be dropped.
            let known = runtime.remove(i).expect("position is in range");
            runtime.push_back(known);
            return;
        }
        runtime.push_back(value.into());
        while runtime.len() > MAX_RUNTIME_SECRETS {
            runtime.pop_front();
        }
        let exact = exact_automaton(self.configured.iter().chain(runtime.iter()));
        *self.exact.write().unwrap_or_else(PoisonError::into_inner) = exact;
    }

    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let exact = self
            .exact
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = Cow::Borrowed(text);
        // Raw first: a value containing a backslash must match before escapes are rewritten.
        if let Some(ac) = &exact {
            apply(&mut out, |t| redact_exact(ac, t));
        }
        if apply(&mut out, canonical_json_escapes) {
            if let Some(ac) = &exact {
                apply(&mut out, |t| redact_exact(ac, t));
            }
        }
        apply(&mut out, |t| replace_if_match(&self.url_user_info, t, "$1"));
        apply(&mut out, |t| replace_if_match(&self.url_query, t, "$1"));
        apply(&mut out, |t| self.redact_shapes(t));
        out
    }

    /// `scrub` for bytes that may not be UTF-8 (an upstream error body): invalid sequences become
    /// U+FFFD first, so no key passes through raw. A key split by an invalid byte is no key.
    pub fn scrub_lossy<'a>(&self, bytes: &'a [u8]) -> Cow<'a, str> {
        match String::from_utf8_lossy(bytes) {
            Cow::Borrowed(text) => self.scrub(text),
            Cow::Owned(text) => {
                let scrubbed = match self.scrub(&text) {
                    Cow::Owned(scrubbed) => Some(scrubbed),
                    Cow::Borrowed(_) => None,
                };
                Cow::Owned(scrubbed.unwrap_or(text))
            }
        }
    }

    /// `scrub`, then cut to `max` characters on a character boundary. Cutting after scrubbing
    /// means a cut can only shorten the marker, never expose the start of a secret.
    pub fn detail(&self, text: &str, max: usize) -> String {
        truncate_chars(&self.scrub(text), max)
    }

    fn redact_shapes(&self, text: &str) -> Option<String> {
        if !self.shapes.is_match(text) {
            return None;
        }
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        for caps in self.shapes.captures_iter(text) {
            let whole = caps.get(0).expect("whole match");
            push_redacted(&mut out, text, copied, kept_prefix_end(&caps), whole.end());
            copied = whole.end();
        }
        out.push_str(&text[copied..]);
        Some(out)
    }
}

/// Replaces `text` by `change(text)` when that is `Some`; reports whether it did.
fn apply(text: &mut Cow<'_, str>, change: impl FnOnce(&str) -> Option<String>) -> bool {
    match change(text) {
        Some(changed) => {
            *text = Cow::Owned(changed);
            true
        }
        None => false,
    }
}

fn replace_if_match(re: &Regex, text: &str, with: &str) -> Option<String> {
    match re.replace_all(text, with) {
        Cow::Owned(changed) => Some(changed),
        Cow::Borrowed(_) => None,
    }
}

/// One automaton over each value as written and as `serde_json` escapes it (a value with `"`,
/// `\` or a control character looks different inside a JSON string).
fn exact_automaton<'v>(values: impl Iterator<Item = &'v Box<str>>) -> Option<AhoCorasick> {
    let mut patterns: Vec<String> = Vec::new();
    for value in values {
        patterns.push(value.to_string());
        let quoted = serde_json::to_string(&**value).expect("a string always serialises");
        let escaped = &quoted[1..quoted.len() - 1];
        if escaped != &**value {
            patterns.push(escaped.to_string());
        }
    }
    patterns.sort_unstable();
    patterns.dedup();
    (!patterns.is_empty()).then(|| {
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("literal patterns always build")
    })
}

fn redact_exact(ac: &AhoCorasick, text: &str) -> Option<String> {
    if !ac.is_match(text) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for m in ac.find_iter(text) {
        push_redacted(&mut out, text, copied, m.start(), m.end());
        copied = m.end();
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The end of the last capture group that took part: the prefix kept visible.
fn kept_prefix_end(caps: &Captures<'_>) -> usize {
    let start = caps.get(0).expect("whole match").start();
    caps.iter()
        .skip(1)
        .flatten()
        .map(|g| g.end())
        .max()
        .unwrap_or(start)
}

/// Appends `text[copied..end]` with `text[redact_from..end]` replaced by the marker. When the
/// redacted part would start right after an unpaired backslash, the escape it begins stays (a
/// `\[redacted]` would make the JSON invalid); that character is the escape's, not the secret's.
fn push_redacted(out: &mut String, text: &str, copied: usize, redact_from: usize, end: usize) {
    let bytes = text.as_bytes();
    let backslashes = bytes[copied..redact_from]
        .iter()
        .rev()
        .take_while(|&&b| b == b'\\')
        .count();
    let mut from = redact_from;
    if backslashes % 2 == 1 {
        from += match bytes.get(from) {
            Some(b'u') => {
                1 + bytes[from + 1..end]
                    .iter()
                    .take(4)
                    .take_while(|b| b.is_ascii_hexdigit())
                    .count()
            }
            _ => text[from..].chars().next().map_or(0, char::len_utf8),
        };
        from = from.min(end);
    }
    out.push_str(&text[copied..from]);
    if from < end {
        out.push_str(REDACTED);
    }
}

/// Rewrites every `\uXXXX` escape (and `\/`) to the form `serde_json` writes: the character
/// itself, or `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`, `\u00xx` where JSON requires an escape.
/// The result means the same JSON and is never longer. A backslash pair is skipped as a unit, so
/// `\\u0041` (a backslash, then `u0041`) stays. `None` when nothing changes.
fn canonical_json_escapes(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut at = memchr::memchr(b'\\', bytes)?;
    loop {
        let next = match bytes.get(at + 1) {
            Some(b'/') => {
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..at]);
                out.push('/');
                copied = at + 2;
                at + 2
            }
            Some(b'u') => match decode_unicode_escape(bytes, at) {
                Some((len, canonical)) if !canonical.is_written_as(&bytes[at..at + len]) => {
                    let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    out.push_str(&text[copied..at]);
                    canonical.push_to(out);
                    copied = at + len;
                    at + len
                }
                _ => at + 2,
            },
            // Any other escape, including `\\`, is left as is.
            Some(_) => at + 2,
            None => break,
        };
        match memchr::memchr(b'\\', bytes.get(next..).unwrap_or_default()) {
            Some(offset) => at = next + offset,
            None => break,
        }
    }
    let mut out = out?;
    out.push_str(&text[copied..]);
    Some(out)
}

/// How `serde_json` writes one character inside a string.
enum CanonicalEscape {
    Char(char),
    Short(&'static str),
    Control(u8),
}

impl CanonicalEscape {
    fn of(c: char) -> CanonicalEscape {
        match c {
            '"' => CanonicalEscape::Short("\\\""),
            '\\' => CanonicalEscape::Short("\\\\"),
            '\u{8}' => CanonicalEscape::Short("\\b"),
            '\u{c}' => CanonicalEscape::Short("\\f"),
            '\n' => CanonicalEscape::Short("\\n"),
            '\r' => CanonicalEscape::Short("\\r"),
            '\t' => CanonicalEscape::Short("\\t"),
            c if (c as u32) < 0x20 => CanonicalEscape::Control(c as u8),
            c => CanonicalEscape::Char(c),
        }
    }

    /// Whether `source` (the escape as found) already is the canonical form.
    fn is_written_as(&self, source: &[u8]) -> bool {
        match self {
            // Canonical control escapes are lowercase `\u00xx`.
            CanonicalEscape::Control(_) => !source.iter().any(u8::is_ascii_uppercase),
            CanonicalEscape::Char(_) | CanonicalEscape::Short(_) => false,
        }
    }

    fn push_to(&self, out: &mut String) {
        match self {
            CanonicalEscape::Char(c) => out.push(*c),
            CanonicalEscape::Short(s) => out.push_str(s),
            CanonicalEscape::Control(c) => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[usize::from(c >> 4)] as char);
                out.push(HEX[usize::from(c & 0xf)] as char);
            }
        }
    }
}

/// The `\uXXXX` escape at `at` (a surrogate pair counts as one): its length and canonical form.
/// `None` for malformed escapes and lone surrogates, which stay as written.
fn decode_unicode_escape(bytes: &[u8], at: usize) -> Option<(usize, CanonicalEscape)> {
    let unit = |i: usize| -> Option<u32> {
        let hex = bytes.get(i..i + 4)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let hex = std::str::from_utf8(hex).ok()?;
        u32::from_str_radix(hex, 16).ok()
    };
    let first = unit(at + 2)?;
    let (len, code) = match first {
        0xD800..=0xDBFF => {
            if bytes.get(at + 6..at + 8) != Some(b"\\u") {
                return None;
            }
            let second = unit(at + 8).filter(|u| (0xDC00..=0xDFFF).contains(u))?;
            (12, 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
        }
        0xDC00..=0xDFFF => return None,
        _ => (6, first),
    };
    Some((len, CanonicalEscape::of(char::from_u32(code)?)))
}

/// Cuts `s` to at most `max` characters, on a character boundary.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn redacts_configured_values_and_key_shapes() {
        let s = Scrubber::new(&["my-very-own-secret-value", "abc"]);
        let cases = [
            ("key my-very-own-secret-value leaked", "key [redacted] leaked"),
            ("Incorrect API key provided: sk-proj-abcdefghijklmnop.", "Incorrect API key provided: [redacted]."),
            ("anthropic sk-ant-api03-AAAAAAAAAAAAAAAAAAAA done", "anthropic [redacted] done"),
            ("openrouter sk-or-v1-0123456789abcdef", "openrouter [redacted]"),
            // Anthropic admin keys: the sk- rule covers them.
            ("admin sk-ant-admin01-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEf.", "admin [redacted]."),
            ("google AIzaSyA1234567890abcdefghijklmnop", "google [redacted]"),
            ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: [redacted]"),
            ("got bearer 0123456789abcdef token", "got bearer [redacted] token"),
            ("header x-api-key: zzzzzzzzzz was wrong", "header x-api-key: [redacted] was wrong"),
            (r#"{"x-api-key":"qqqqqqqqqq"}"#, r#"{"x-api-key":"[redacted]"}"#),
            ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end", "jwt [redacted] end"),
            ("short abc stays", "short abc stays"),
            ("nothing to see", "nothing to see"),
        ];
        for (input, want) in cases {
            assert_eq!(s.scrub(input), want, "{input}");
        }
    }

    #[test]
    fn redacts_secrets_written_with_json_escapes() {
        let s = Scrubber::new(&["my-very-own-secret-value", "we\"ird\\pass/word"]);
        let cases = [
            // Every character escaped, mixed-case hex, inside a JSON string.
            (
                r#"{"error":"bad key \u0073\u006B\u002d\u0061\u006e\u0074\u002D\u0061\u0070\u0069\u0030\u0033\u002dAAAAAAAAAAAAAAAA"}"#,
                r#"{"error":"bad key [redacted]"}"#,
            ),
            (
                r#""key \u0073k-ant-api03-AAAAAAAAAAAAAAAA""#,
                r#""key [redacted]""#,
            ),
            (r#""\u006dy-very-own-secret-\u0076alue""#, r#""[redacted]""#),
            // Not the secret once decoded (capital V): only the escapes are rewritten.
            (
                r#""\u006Dy-very-own-secret-\u0056alue""#,
                r#""my-very-own-secret-Value""#,
            ),
            (
                r#""x-api-key\u003a \u0071qqqqqqqqq""#,
                r#""x-api-key: [redacted]""#,
            ),
            // `\/` and escaped user info.
            (
                r#""https:\/\/user:hunter22@api.example.com\/v1""#,
                r#""https://api.example.com/v1""#,
            ),
            // A configured value with `"`, `\` and `/`, as serde_json and as \u escapes write it.
            (r#""got we\"ird\\pass\/word""#, r#""got [redacted]""#),
            (
                r#""got we\u0022ird\u005Cpass\u002Fword""#,
                r#""got [redacted]""#,
            ),
            // A key right after an escaped newline or control character.
            (
                r#""line one\nsk-proj-abcdefghijklmnop""#,
                r#""line one\n[redacted]""#,
            ),
            (
                r#""ctl\u0001sk-proj-abcdefghijklmnop""#,
                r#""ctl\u0001[redacted]""#,
            ),
            (r#""x\u000Ask-proj-abcdefghijklmnop""#, r#""x\n[redacted]""#),
            // The same inside a JSON-escaped JSON document.
            (
                r#""{\"api_key\": \"abcd1234efgh\"}""#,
                r#""{\"api_key\": \"[redacted]\"}""#,
            ),
            (
                r#""{\"x-api-key\":\"qqqqqqqqqq\"}""#,
                r#""{\"x-api-key\":\"[redacted]\"}""#,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(s.scrub(input), want, "{input}");
        }
    }

    #[test]
    fn json_escape_rewrite_keeps_meaning_and_leaves_escaped_backslashes() {
        let s = Scrubber::new::<&str>(&[]);
        let cases = [
            // A backslash pair then `u0073`: the text is `\u0073`, not an `s`.
            (r#""\\u0073k""#, r#""\\u0073k""#),
            (
                r#""\u00e9\u00E9 \ud83d\ude00 \u001F \u0009 \ud800 \u12""#,
                "\"éé 😀 \\u001f \\t \\ud800 \\u12\"",
            ),
            (r#""a\"b\\c\/d""#, r#""a\"b\\c/d""#),
            (r"C:\users\x \u", r"C:\users\x \u"),
        ];
        for (input, want) in cases {
            let got = s.scrub(input);
            assert_eq!(got, want, "{input}");
            if let Ok(before) = serde_json::from_str::<String>(input) {
                assert_eq!(
                    serde_json::from_str::<String>(&got).unwrap(),
                    before,
                    "{input}"
                );
            }
        }
    }

    #[test]
    fn redacts_provider_key_shapes() {
        let s = Scrubber::new::<&str>(&[]);
        let keys = [
            // Groq, xAI, Hugging Face, Replicate, Perplexity.
            "gsk_8aLqW3nZx0pRt5VbYc7Km2Hs9DfGj4Ne6UoPqA1zXcVbNmLkJh",
            "xai-Zq3x9LmN8pR2tV5wY7aB4cD6eF1gH0jK3mN5pQ7rS9tU2vW4xY6zA8bC0dE2fG4hJ6kL8mN0pQ2rS4t",
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
            "r8_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789a",
            "pplx-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKl",
            // Fireworks, NVIDIA, Cerebras.
            "fw_3ZkLmN8pR2tV5wY7aB4cD6e",
            "nvapi-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKlMnOpQrStUv",
            "csk-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKl",
            // Google OAuth, AWS, GitHub, GitLab, Slack, Stripe.
            "ya29.a0AfH6SMBx3Yq-Zk_LmN8pR2tV5wY7aB4cD6eF1gH0jK3",
            "ya29.c.Kp8BCgi3Yq-Zk_LmN8pR2tV5wY7aB4cD6eF1gH0jK3",
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "gho_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "ghs_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "github_pat_11ABCDEFG0123456789abc_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQrStUvW",
            "glpat-AbCdEfGhIj_-KlMnOpQr",
            "xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "xoxp-1234567890-1234567890-1234567890-abcdef0123456789",
            "sk_live_AbCdEfGhIjKlMnOpQrStUvWx",
            "rk_live_AbCdEfGhIjKlMnOpQrStUvWx",
        ];
        for key in keys {
            for (input, want) in [
                (format!("invalid key {key}."), "invalid key [redacted]."),
                (
                    format!(r#"{{"msg":"bad: {key}"}}"#),
                    r#"{"msg":"bad: [redacted]"}"#,
                ),
                (format!("({key})"), "([redacted])"),
            ] {
                assert_eq!(s.scrub(&input), want, "{input}");
            }
        }
    }

    #[test]
    fn redacts_credential_fields_and_headers_but_keeps_their_names() {
        let s = Scrubber::new::<&str>(&[]);
        let cases = [
            (
                r#"{"api_key": "abcd1234efgh"}"#,
                r#"{"api_key": "[redacted]"}"#,
            ),
            (
                r#"{"apiKey":"abcd1234efgh","model":"gpt-4o"}"#,
                r#"{"apiKey":"[redacted]","model":"gpt-4o"}"#,
            ),
            (
                r#"{'access_token': 'abcd1234efgh'}"#,
                r#"{'access_token': '[redacted]'}"#,
            ),
            (
                r#"{"client_secret" : "a b c d e"}"#,
                r#"{"client_secret" : "[redacted]"}"#,
            ),
            (r#"{"password":"hunter22"}"#, r#"{"password":"[redacted]"}"#),
            (
                "Authorization: Basic dXNlcjpwYXNzd29yZA==",
                "Authorization: [redacted]",
            ),
            (
                "POST /v1?client_secret=abcdefgh&x=1",
                "POST /v1?client_secret=[redacted]&x=1",
            ),
            (r#"{"q":"token=abcdefgh"}"#, r#"{"q":"token=[redacted]"}"#),
        ];
        for (input, want) in cases {
            assert_eq!(s.scrub(input), want, "{input}");
        }
    }

    #[test]
    fn leaves_prose_model_names_and_request_ids_alone() {
        let s = Scrubber::new::<&str>(&[]);
        let untouched = [
            "The model gpt-4o is overloaded; try claude-sonnet-4-5 or gemini-2.5-pro.",
            "request id req_011CSHoEeqs5C35K2UUqR7Fy, message msg_01XFDUDYJgAACzvnptvVoYEL",
            "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT toolu_01A09q90qw90lq917835lq9",
            "hf_model_name_for_testing_v2 and gsk_not_a_key and fw_config_loaded_from_disk",
            "risk-management-frameworks, task-specific-adapters and desk-lamp-controllers",
            "AKIA is a prefix; AKIAIOSFODNN7EXAMPLEX is too long to be an access key id",
            "the ya29. prefix, max_tokens=4096, tokens: 12, token_count: 7",
            r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
            r#"{"error":{"code":"invalid_api_key","param":"api_key","type":"invalid_request_error"}}"#,
            r#"{"usage":{"prompt_tokens":12,"completion_tokens":3},"token":""}"#,
            "see https://example.com/a/b for more, mail ops@example.com",
            "C:\\Users\\me\\u name",
        ];
        for text in untouched {
            assert_eq!(s.scrub(text), text);
        }
    }

    #[test]
    fn urls_lose_user_info_always_and_query_strings() {
        let s = Scrubber::new::<&str>(&[]);
        let cases = [
            (
                "error from https://user:pw@api.example.com/v1/models?key=AIzaXYZ&x=1 now",
                "error from https://api.example.com/v1/models now",
            ),
            (
                "see https://example.com/a/b for more",
                "see https://example.com/a/b for more",
            ),
            (
                "proxy https://user:p4ssw0rd@proxy.local:8080/v1 refused",
                "proxy https://proxy.local:8080/v1 refused",
            ),
            (
                "to http://admin:s3cr3t@10.0.0.1 failed",
                "to http://10.0.0.1 failed",
            ),
            (
                "password with @: https://u:p@ss@host/x",
                "password with @: https://host/x",
            ),
            (
                "redis://:hunter22@cache:6379/0 unreachable",
                "redis://cache:6379/0 unreachable",
            ),
            (
                r#"{"url":"https://h/p?sig=abc","n":1}"#,
                r#"{"url":"https://h/p","n":1}"#,
            ),
            (
                "mail ops@example.com at https://example.com/x",
                "mail ops@example.com at https://example.com/x",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(s.scrub(input), want, "{input}");
        }
    }

    #[test]
    fn redacts_values_added_at_run_time() {
        let s = Scrubber::new(&["configured-key-1"]);
        assert_eq!(s.scrub("rotated-key-2 leaked"), "rotated-key-2 leaked");
        s.add_secret("rotated-key-2");
        s.add_secret("rotated-key-2");
        s.add_secret("short");
        s.add_secret("configured-key-1");
        assert_eq!(
            s.scrub("rotated-key-2 and configured-key-1 and short"),
            "[redacted] and [redacted] and short"
        );
        assert_eq!(
            s.runtime.lock().unwrap().len(),
            1,
            "duplicates and configured values are not added"
        );
    }

    #[test]
    fn runtime_values_past_the_cap_drop_the_oldest_but_never_configured_ones() {
        let s = Scrubber::new(&["configured-key-1"]);
        s.add_secret("runtime-key-first");
        for i in 0..MAX_RUNTIME_SECRETS {
            s.add_secret(&format!("runtime-key-{i:04}"));
        }
        // Re-adding a known value makes it the newest, so it is not the one dropped next.
        s.add_secret("runtime-key-0000");
        s.add_secret("runtime-key-last");
        assert_eq!(s.runtime.lock().unwrap().len(), MAX_RUNTIME_SECRETS);
        let cases = [
            ("runtime-key-first", "runtime-key-first"),
            ("runtime-key-0001", "runtime-key-0001"),
            ("runtime-key-0000", REDACTED),
            ("runtime-key-0002", REDACTED),
            ("runtime-key-last", REDACTED),
            ("configured-key-1", REDACTED),
        ];
        for (input, want) in cases {
            assert_eq!(s.scrub(input), want, "{input}");
        }
    }

    #[test]
    fn readers_keep_scrubbing_while_values_are_added() {
        let s = std::sync::Arc::new(Scrubber::new(&["configured-key-1"]));
        let reader = {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    assert_eq!(s.scrub("configured-key-1"), REDACTED);
                }
            })
        };
        for i in 0..200 {
            s.add_secret(&format!("runtime-key-{i:04}"));
        }
        reader.join().unwrap();
        assert_eq!(s.scrub("runtime-key-0199"), REDACTED);
    }

    #[test]
    fn scrub_lossy_redacts_keys_in_non_utf8_bodies() {
        let s = Scrubber::new(&["configured-key-1"]);
        let cases: [(&[u8], &str); 4] = [
            (
                b"\xff\xfe bad key sk-proj-abcdefghijklmnop \xc3",
                "\u{fffd}\u{fffd} bad key [redacted] \u{fffd}",
            ),
            (b"\x80configured-key-1\x80", "\u{fffd}[redacted]\u{fffd}"),
            (b"plain configured-key-1", "plain [redacted]"),
            // A key split by an invalid byte is no longer that key.
            (b"configured-\xffkey-1", "configured-\u{fffd}key-1"),
        ];
        for (input, want) in cases {
            assert_eq!(s.scrub_lossy(input), want, "{input:?}");
        }
        assert!(matches!(s.scrub_lossy(b"clean"), Cow::Borrowed("clean")));
    }

    #[test]
    fn detail_is_scrubbed_then_cut_on_a_char_boundary() {
        let s = Scrubber::new(&["secret-value-123"]);
        let text = format!("{} secret-value-123", "é".repeat(10));
        assert_eq!(s.detail(&text, 12), "éééééééééé […");
    }

    #[test]
    fn detail_cut_anywhere_never_shows_part_of_a_secret() {
        let secret = "Zq9Xw7Vt3Ks8Lm";
        let s = Scrubber::new(&[secret]);
        let texts = [
            format!("upstream said: {secret} was rejected"),
            r#"{"error":"key \u005aq9Xw7Vt3Ks8Lm"}"#.to_string(),
            "upstream said: sk-proj-Zq9Xw7Vt3Ks8Lm0123 was rejected".to_string(),
        ];
        for text in &texts {
            for max in 0..text.chars().count() + 2 {
                let cut = s.detail(text, max);
                assert!(!cut.contains(&secret[..3]), "max {max}: {cut}");
                assert!(cut.chars().count() <= max + 1, "max {max}: {cut}");
            }
        }
    }

    /// Text around the secret: ASCII with quotes, backslashes and newlines, and some non-ASCII.
    fn filler() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ -~\\n\\té€😀]{0,40}").unwrap()
    }

    /// Characters that end a word, so a key shape's word boundary holds.
    fn separator() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            " ", "\n", "\t", "\"", "'", ":", "=", ",", "(", ")", "/", "é",
        ])
    }

    fn key(pattern: &'static str) -> BoxedStrategy<String> {
        proptest::string::string_regex(pattern).unwrap().boxed()
    }

    /// (text to embed, the secret that must not survive): a key of each shape, or a credential
    /// in a header, field, query or URL.
    fn shaped_secret() -> impl Strategy<Value = (String, String)> {
        let bare = prop::strategy::Union::new(vec![
            key(r"sk-proj-[A-Za-z0-9_\-]{20,60}"),
            key(r"sk-ant-api03-[A-Za-z0-9_\-]{40,95}"),
            key(r"sk-ant-admin01-[A-Za-z0-9_\-]{40,95}"),
            key(r"sk-or-v1-[a-f0-9]{64}"),
            key(r"AIza[0-9A-Za-z_\-]{35}"),
            key(r"gsk_[A-Za-z0-9]{52}"),
            key(r"xai-[A-Za-z0-9]{80}"),
            key(r"hf_[A-Za-z0-9]{34}"),
            key(r"r8_[A-Za-z0-9]{37}"),
            key(r"pplx-[A-Za-z0-9]{48}"),
            key(r"fw_[A-Za-z0-9]{24}"),
            key(r"nvapi-[A-Za-z0-9_\-]{64}"),
            key(r"csk-[A-Za-z0-9]{48}"),
            key(r"ya29\.(c\.)?[A-Za-z0-9_\-]{40,150}"),
            key(r"(AKIA|ASIA)[A-Z0-9]{16}"),
            key(r"gh[pos]_[A-Za-z0-9]{36}"),
            key(r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"),
            key(r"glpat-[A-Za-z0-9_\-]{20}"),
            key(r"xox[abpr]-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24}"),
            key(r"[sr]k_live_[A-Za-z0-9]{24,99}"),
            key(r"eyJ[A-Za-z0-9_\-]{10,40}\.eyJ[A-Za-z0-9_\-]{10,80}\.[A-Za-z0-9_\-]{20,43}"),
        ])
        .prop_map(|k| (k.clone(), k));
        let templates = [
            "Bearer {}",
            "Authorization: Bearer {}",
            "x-api-key: {}",
            r#"{"api_key": "{}"}"#,
            "https://api.example.com/v1?key={}",
            "token={}",
            "https://user:{}@api.example.com/v1",
            "redis://:{}@cache:6379",
        ];
        let named = (
            prop::sample::select(templates.to_vec()),
            key("[A-Za-z0-9]{8,40}"),
        )
            .prop_map(|(template, value)| (template.replace("{}", &value), value));
        prop_oneof![bare, named]
    }

    /// Every character as a `\u` escape (surrogate pairs beyond the BMP), in one hex case.
    fn escape_every_char(text: &str, upper: bool) -> String {
        let mut out = String::from("\"");
        for unit in text.encode_utf16() {
            out.push_str(&if upper {
                format!("\\u{unit:04X}")
            } else {
                format!("\\u{unit:04x}")
            });
        }
        out.push('"');
        out
    }

    fn assert_scrubbed(s: &Scrubber, text: &str, secret: &str) -> Result<(), TestCaseError> {
        let variants = [
            (text.to_string(), false),
            (serde_json::to_string(text).unwrap(), true),
            (escape_every_char(text, false), true),
            (escape_every_char(text, true), true),
        ];
        for (input, is_json) in variants {
            let out = s.scrub(&input);
            prop_assert!(
                !out.contains(secret),
                "{secret:?} in {out:?} from {input:?}"
            );
            if is_json {
                let decoded = serde_json::from_str::<String>(&out);
                prop_assert!(
                    decoded.is_ok(),
                    "scrubbing broke the JSON: {out:?} from {input:?}"
                );
                let decoded = decoded.unwrap();
                prop_assert!(
                    !decoded.contains(secret),
                    "{secret:?} in decoded {decoded:?}"
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn configured_secrets_never_survive_raw_or_json_escaped(
            before in filler(),
            secret in proptest::string::string_regex("[A-Za-z0-9_\\-./+=\"\\\\!@#é]{12,40}").unwrap(),
            after in filler(),
        ) {
            let s = Scrubber::new(&[secret.as_str()]);
            assert_scrubbed(&s, &format!("{before}{secret}{after}"), &secret)?;
        }

        #[test]
        fn runtime_secrets_never_survive_raw_or_json_escaped(
            before in filler(),
            secret in proptest::string::string_regex("[A-Za-z0-9_\\-./+=]{12,40}").unwrap(),
            after in filler(),
        ) {
            let s = Scrubber::new(&["configured-key-1"]);
            s.add_secret(&secret);
            assert_scrubbed(&s, &format!("{before}{secret}{after}"), &secret)?;
        }

        #[test]
        fn key_shapes_never_survive_raw_or_json_escaped(
            before in filler(),
            open in separator(),
            (embedded, secret) in shaped_secret(),
            close in separator(),
            after in filler(),
        ) {
            let s = Scrubber::new::<&str>(&[]);
            assert_scrubbed(&s, &format!("{before}{open}{embedded}{close}{after}"), &secret)?;
        }
    }

    /// `cargo test --lib scrub::tests::scrub_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "timing report, not a check"]
    fn scrub_cost() {
        let s = Scrubber::new(&[
            "configured-key-0001",
            "configured-key-0002",
            "gateway-key-0003",
        ]);
        let short =
            "Rate limit reached for gpt-4o in organization org-abc on tokens per min (TPM): \
                     Limit 30000, Used 29750, Requested 1200. Please try again in 1.9s. Visit \
                     https://platform.openai.com/account/rate-limits to learn more. request id \
                     req_011CSHoEeqs5C35K2UUqR7Fy, type tokens, code rate_limit_exceeded.....";
        let line = r#"{"role":"user","content":"the quick brown fox jumps over the lazy dog \"quoted\"\n"},"#;
        let big_json = line.repeat((1 << 20) / line.len());
        let big_prose =
            "Ünïcödé prose, nothing secret in it at all; just words and numbers 12345.\n"
                .repeat((1 << 20) / 76);
        for (name, text, runs) in [
            ("300-char error", short, 20_000),
            ("1 MiB JSON", big_json.as_str(), 20),
            ("1 MiB non-ASCII prose", big_prose.as_str(), 20),
        ] {
            assert!(matches!(s.scrub(text), Cow::Borrowed(_)), "{name} is clean");
            let start = std::time::Instant::now();
            for _ in 0..runs {
                std::hint::black_box(s.scrub(std::hint::black_box(text)));
            }
            let each = start.elapsed() / runs;
            println!("scrub of {name} ({} bytes): {each:?}", text.len());
        }
    }
}
