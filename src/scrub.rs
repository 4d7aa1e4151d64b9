//! The scrubber: one place that removes secrets from any text leaving the process.
//!
//! Exact values of every configured credential are the strongest guarantee (an Aho-Corasick
//! automaton over all of them); common key shapes (`sk-…`, `sk-ant-…`, `AIza…`, bearer tokens,
//! `key=` query parameters, JWTs, header echoes) catch what the config does not know. URLs
//! lose their query strings and user info. Built once at start-up, never per request.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

pub const REDACTED: &str = "[redacted]";

pub struct Scrubber {
    exact: Option<AhoCorasick>,
    shapes: Regex,
    url_query: Regex,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrubber")
    }
}

const SHAPES: &str = concat!(
    // Provider keys: OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), OpenRouter (sk-or-), Google.
    r"\bsk-[A-Za-z0-9_\-]{8,}",
    r"|\bAIza[0-9A-Za-z_\-]{20,}",
    // JWT-shaped tokens.
    r"|\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}",
    // Authorization header echoes and bearer tokens.
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/=\-]{6,}",
    // Header echoes: "x-api-key: …", "authorization: …", also JSON-ish quotes.
    r#"|(?i:\b(?:x-api-key|api-key|authorization|x-goog-api-key)\b["']?\s*[:=]\s*["']?(?:bearer\s+)?)[^\s"',;}]{4,}"#,
    // key=… in query strings and forms.
    r"|(?i:\b(?:api_key|apikey|key|access_token|token|secret)=)[^&\s]{4,}",
);

impl Scrubber {
    /// `secrets` are the exact values to redact (configured keys, tokens).
    pub fn new<S: AsRef<str>>(secrets: &[S]) -> Scrubber {
        let values: Vec<&str> = secrets
            .iter()
            .map(AsRef::as_ref)
            // Very short values would redact ordinary words; shapes still catch real keys.
            .filter(|s| s.len() >= 6)
            .collect();
        let exact = (!values.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&values)
                .expect("literal patterns always build")
        });
        Scrubber {
            exact,
            shapes: Regex::new(SHAPES).expect("valid regex"),
            url_query: Regex::new(r"(?i)\b(https?://)(?:[^/\s@]+@)?([^\s?#]*)\?[^\s#]*")
                .expect("valid regex"),
        }
    }

    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        if let Some(ac) = &self.exact {
            if ac.is_match(out.as_ref()) {
                out = Cow::Owned(ac.replace_all(out.as_ref(), &vec![REDACTED; ac.patterns_len()]));
            }
        }
        if self.url_query.is_match(&out) {
            out = Cow::Owned(self.url_query.replace_all(&out, "$1$2").into_owned());
        }
        if self.shapes.is_match(&out) {
            out = Cow::Owned(self.redact_shapes(&out));
        }
        out
    }

    fn redact_shapes(&self, text: &str) -> String {
        // Keep a header or parameter name visible; redact only its value.
        self.shapes
            .replace_all(text, |caps: &regex::Captures<'_>| {
                let m = caps.get(0).expect("whole match").as_str();
                let lower = m.to_ascii_lowercase();
                let keep = if lower.starts_with("bearer") {
                    6 + m[6..].len() - m[6..].trim_start().len()
                } else if let Some(i) = m.find(['=', ':']) {
                    let rest = &m[i + 1..];
                    i + 1 + (rest.len() - rest.trim_start_matches([' ', '"', '\'']).len())
                } else {
                    0
                };
                format!("{}{REDACTED}", &m[..keep])
            })
            .into_owned()
    }

    /// `scrub`, then cut to `max` characters on a character boundary.
    pub fn detail(&self, text: &str, max: usize) -> String {
        crate::classify::truncate_chars(&self.scrub(text), max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_configured_values_and_key_shapes() {
        let s = Scrubber::new(&["my-very-own-secret-value", "abc"]);
        let cases = [
            ("key my-very-own-secret-value leaked", "key [redacted] leaked"),
            ("Incorrect API key provided: sk-proj-abcdefghijklmnop.", "Incorrect API key provided: [redacted]."),
            ("anthropic sk-ant-api03-AAAAAAAAAAAAAAAAAAAA done", "anthropic [redacted] done"),
            ("openrouter sk-or-v1-0123456789abcdef", "openrouter [redacted]"),
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
    fn urls_lose_query_strings_and_user_info() {
        let s = Scrubber::new::<&str>(&[]);
        assert_eq!(
            s.scrub("error from https://user:pw@api.example.com/v1/models?key=AIzaXYZ&x=1 now"),
            "error from https://api.example.com/v1/models now"
        );
        assert_eq!(
            s.scrub("see https://example.com/a/b for more"),
            "see https://example.com/a/b for more"
        );
    }

    #[test]
    fn detail_is_scrubbed_then_cut_on_a_char_boundary() {
        let s = Scrubber::new(&["secret-value-123"]);
        let text = format!("{} secret-value-123", "é".repeat(10));
        assert_eq!(s.detail(&text, 12), "éééééééééé […");
    }
}
