//! Each provider's error dialect, as data: the rules the classifier consults before the generic
//! status-based reading.
//!
//! Providers disagree about what a status means. Gemini says "bad API key" with a 400, Groq
//! says "over your tokens-per-minute" with a 413 (and links a billing page), Together says
//! "rate limited" in a body whose type is `credit_limit` and that mentions billing, OpenRouter
//! says "your input was flagged" with a 403. Read by status alone, each of those is wrong: a key problem sent back to the
//! client as its own fault, a rate limit treated as an oversized request, a short wait taken
//! for an empty wallet. A rule names what it matches (the backend's provider, the status, the
//! Google `status` string, an error type/code or detail, a phrase of the message) and what it
//! means. The first matching rule wins; when none matches, the generic reading applies, so an
//! unknown shape classifies by its HTTP status as before.
//!
//! Every rule is pinned by a real body in `tests/it/fixtures/providers/` (with its source).

use crate::failure::FailureReason::{self, *};
use crate::provider::Provider;

/// One row of a provider's error dialect. Every field that is set must match.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Only for backends of this provider; `None`: any backend (the shape is unambiguous).
    pub provider: Option<Provider>,
    /// The HTTP status (or, inside a 2xx body or a stream, the status the error implies).
    pub status: Option<u16>,
    /// Google's `error.status` (`RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, …).
    pub google_status: Option<&'static str>,
    /// `error.type` or `error.code`, exactly (case-insensitive).
    pub code: Option<&'static str>,
    /// A substring of a structured detail: a Google `details[].reason` or quota id, an Azure
    /// `innererror.code`.
    pub detail: Option<&'static str>,
    /// A lowercase substring of the message (or of OpenRouter's `metadata.raw`).
    pub message: Option<&'static str>,
    pub reason: FailureReason,
}

const ANY: Rule = Rule {
    provider: None,
    status: None,
    google_status: None,
    code: None,
    detail: None,
    message: None,
    reason: Unknown,
};

/// The rules, most specific first.
pub const RULES: &[Rule] = &[
    // Gemini: a bad key is a 400 INVALID_ARGUMENT. It is the backend's key, not the client's
    // request: fail over.
    Rule {
        detail: Some("API_KEY_INVALID"),
        reason: Auth,
        ..ANY
    },
    Rule {
        google_status: Some("INVALID_ARGUMENT"),
        message: Some("pass a valid api key"),
        reason: Auth,
        ..ANY
    },
    Rule {
        google_status: Some("PERMISSION_DENIED"),
        reason: Auth,
        ..ANY
    },
    // Gemini RESOURCE_EXHAUSTED: a daily quota (or a billing message without a per-minute
    // quota id) does not pass in seconds; a per-minute one does.
    Rule {
        google_status: Some("RESOURCE_EXHAUSTED"),
        detail: Some("PerDay"),
        reason: Quota,
        ..ANY
    },
    Rule {
        google_status: Some("RESOURCE_EXHAUSTED"),
        detail: Some("PerMinute"),
        reason: RateLimit,
        ..ANY
    },
    Rule {
        google_status: Some("RESOURCE_EXHAUSTED"),
        message: Some("billing"),
        reason: Quota,
        ..ANY
    },
    Rule {
        google_status: Some("RESOURCE_EXHAUSTED"),
        reason: RateLimit,
        ..ANY
    },
    Rule {
        google_status: Some("UNAVAILABLE"),
        reason: Overloaded,
        ..ANY
    },
    // OpenAI and Groq: code `rate_limit_exceeded` is a rate limit whatever else is said. Groq
    // sends a request over the tokens-per-minute limit as a 413 (the key's limit, not an
    // oversized request), and its messages link a billing page ("Upgrade to Dev Tier").
    Rule {
        code: Some("rate_limit_exceeded"),
        reason: RateLimit,
        ..ANY
    },
    // DeepSeek: 402 "Insufficient Balance", with type `unknown_error` and code
    // `invalid_request_error` (proxies have relayed it as a 400).
    Rule {
        message: Some("insufficient balance"),
        reason: Quota,
        ..ANY
    },
    // xAI: out of credits or over the monthly spending limit is a 429; no wait cures it.
    Rule {
        message: Some("used all available credits"),
        reason: Quota,
        ..ANY
    },
    // Together: a rate limit typed `credit_limit` whose message points at billing.
    Rule {
        code: Some("credit_limit"),
        message: Some("rate limited"),
        reason: RateLimit,
        ..ANY
    },
    // Azure OpenAI's content filter: the prompt's problem, whatever else the body says.
    Rule {
        detail: Some("ResponsibleAIPolicyViolation"),
        reason: ContentPolicy,
        ..ANY
    },
    // OpenRouter: a 403 that says the input was flagged is its moderation, not the key.
    Rule {
        provider: Some(Provider::OpenRouter),
        status: Some(403),
        message: Some("flagged"),
        reason: ContentPolicy,
        ..ANY
    },
];

/// What a rule looks at, taken from one error body.
pub struct Facts<'a> {
    pub provider: Option<Provider>,
    pub status: Option<u16>,
    pub google_status: Option<&'a str>,
    pub codes: [Option<&'a str>; 2],
    pub details: &'a [String],
    /// Lowercased message, raw text and upstream raw, joined.
    pub message: &'a str,
}

impl Rule {
    fn matches(&self, f: &Facts<'_>) -> bool {
        self.provider.is_none_or(|p| f.provider == Some(p))
            && self.status.is_none_or(|s| f.status == Some(s))
            && self
                .google_status
                .is_none_or(|g| f.google_status.is_some_and(|s| s.eq_ignore_ascii_case(g)))
            && self.code.is_none_or(|c| {
                f.codes
                    .iter()
                    .flatten()
                    .any(|have| have.eq_ignore_ascii_case(c))
            })
            && self
                .detail
                .is_none_or(|d| f.details.iter().any(|have| have.contains(d)))
            && self.message.is_none_or(|m| f.message.contains(m))
    }
}

/// The reason of the first rule that matches.
pub fn first_match(f: &Facts<'_>) -> Option<FailureReason> {
    first_match_at(f).map(|i| RULES[i].reason)
}

/// The index in [`RULES`] of the first rule that matches.
pub fn first_match_at(f: &Facts<'_>) -> Option<usize> {
    RULES.iter().position(|r| r.matches(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_says_something_and_none_repeats_another() {
        for (i, r) in RULES.iter().enumerate() {
            assert_ne!(r.reason, Unknown, "rule {i}");
            let any = r.provider.is_none()
                && r.status.is_none()
                && r.google_status.is_none()
                && r.code.is_none()
                && r.detail.is_none()
                && r.message.is_none();
            assert!(!any, "rule {i} matches everything");
            // Messages are matched against lowercased text.
            if let Some(m) = r.message {
                assert_eq!(m, m.to_lowercase(), "rule {i}");
            }
            // An exact repeat of an earlier rule's conditions could never fire.
            for earlier in &RULES[..i] {
                let same = earlier.provider == r.provider
                    && earlier.status == r.status
                    && earlier.google_status == r.google_status
                    && earlier.code == r.code
                    && earlier.detail == r.detail
                    && earlier.message == r.message;
                assert!(!same, "rule {i} repeats an earlier one");
            }
        }
    }

    #[test]
    fn provider_scoped_rules_apply_only_to_their_provider() {
        let f = |provider| Facts {
            provider,
            status: Some(403),
            google_status: None,
            codes: [None, None],
            details: &[],
            message: "your input was flagged for \"harassment\"",
        };
        assert_eq!(
            first_match(&f(Some(Provider::OpenRouter))),
            Some(ContentPolicy)
        );
        assert_eq!(first_match(&f(Some(Provider::OpenAi))), None);
        assert_eq!(first_match(&f(None)), None);
    }
}
