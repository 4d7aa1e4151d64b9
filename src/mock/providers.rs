//! Providers' own error dialects, for `status` faults: the bodies and headers Gemini's
//! OpenAI-compatible endpoint, Groq, DeepSeek, OpenRouter, Mistral, Together, Azure OpenAI and
//! xAI really send, so the gateway's reading of them is tested against what it will meet.
//!
//! Chosen per fault (`"provider": "gemini"`) or for the whole mock (`switchyard mock
//! --provider gemini`); `"error"` picks one of a provider's errors where one status means
//! several things (Gemini's 429: a rate limit or an exhausted quota). Written independently of
//! the gateway's rules, from the providers' published bodies.

use bytes::Bytes;
use serde_json::{json, Value};

/// A provider whose error dialect the mock speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockProvider {
    Gemini,
    Groq,
    DeepSeek,
    OpenRouter,
    Mistral,
    Together,
    AzureOpenAi,
    Xai,
}

impl MockProvider {
    pub const NAMES: [&'static str; 8] = [
        "gemini",
        "groq",
        "deepseek",
        "openrouter",
        "mistral",
        "together",
        "azure_openai",
        "xai",
    ];

    pub fn parse(name: &str) -> Option<MockProvider> {
        Some(match name {
            "gemini" => MockProvider::Gemini,
            "groq" => MockProvider::Groq,
            "deepseek" => MockProvider::DeepSeek,
            "openrouter" => MockProvider::OpenRouter,
            "mistral" => MockProvider::Mistral,
            "together" => MockProvider::Together,
            "azure_openai" => MockProvider::AzureOpenAi,
            "xai" => MockProvider::Xai,
            _ => return None,
        })
    }
}

/// The errors a fault may name with `"error"`, per provider.
pub fn known_error(provider: MockProvider, error: &str) -> bool {
    let known: &[&str] = match provider {
        MockProvider::Gemini => &[
            "rate_limit",
            "quota",
            "invalid_key",
            "permission",
            "overloaded",
        ],
        MockProvider::Groq => &["tpm", "rate_limit"],
        MockProvider::DeepSeek => &["balance"],
        MockProvider::OpenRouter => &[
            "credits",
            "upstream_rate_limit",
            "moderation",
            "upstream_down",
        ],
        MockProvider::Mistral => &["rate_limit"],
        MockProvider::Together => &["rate_limit"],
        MockProvider::AzureOpenAi => &["content_filter", "invalid_key", "rate_limit"],
        MockProvider::Xai => &["credits"],
    };
    known.contains(&error)
}

/// A provider error: the status it comes with, its body and any headers.
pub struct ProviderError {
    pub status: u16,
    pub body: Bytes,
    pub headers: Vec<(&'static str, String)>,
}

/// The provider's answer for `status` (or for the named `error`, which sets the status);
/// `None` when the provider has no body of its own for that status (the dialect's is used).
pub fn error(
    provider: MockProvider,
    status: u16,
    error: Option<&str>,
    model: &str,
) -> Option<ProviderError> {
    let (status, body, headers) = match provider {
        MockProvider::Gemini => gemini(status, error)?,
        MockProvider::Groq => groq(status, error, model)?,
        MockProvider::DeepSeek => match (status, error) {
            (_, Some("balance")) | (402, None) => (
                402,
                json!({"error": {"message": "Insufficient Balance", "type": "unknown_error", "param": null, "code": "invalid_request_error"}}),
                vec![],
            ),
            _ => return None,
        },
        MockProvider::OpenRouter => openrouter(status, error, model)?,
        MockProvider::Mistral => match (status, error) {
            (_, Some("rate_limit")) | (429, None) => (
                429,
                json!({"object": "error", "message": "Rate limit exceeded", "type": "rate_limited", "param": null, "code": "1300"}),
                vec![],
            ),
            _ => return None,
        },
        MockProvider::Together => match (status, error) {
            (_, Some("rate_limit")) | (429, None) => (
                429,
                json!({"error": {"message": "You have been rate limited. Your rate limit is 60 queries per minute. Please navigate to https://api.together.xyz/settings/billing to upgrade to a paid plan.", "type": "credit_limit", "param": null, "code": null}}),
                vec![],
            ),
            _ => return None,
        },
        MockProvider::AzureOpenAi => azure(status, error)?,
        MockProvider::Xai => match (status, error) {
            (_, Some("credits")) | (429, None) => (
                429,
                json!({"error": "Your team 00000000-0000-0000-0000-000000000000 has either used all available credits or reached its monthly spending limit. To continue making API requests, please purchase more credits or raise your spending limit."}),
                vec![],
            ),
            _ => return None,
        },
    };
    Some(ProviderError {
        status,
        body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        headers,
    })
}

type Answer = (u16, Value, Vec<(&'static str, String)>);

/// Google's error object, wrapped in the one-element array the OpenAI-compatible endpoint sends.
fn google(code: u16, status: &str, message: &str, details: Value) -> Value {
    let mut error = json!({"code": code, "message": message, "status": status});
    if !details.is_null() {
        error["details"] = details;
    }
    json!([{ "error": error }])
}

fn gemini(status: u16, error: Option<&str>) -> Option<Answer> {
    let which = error.or(match status {
        429 => Some("rate_limit"),
        400 => Some("invalid_key"),
        403 => Some("permission"),
        503 => Some("overloaded"),
        _ => None,
    })?;
    Some(match which {
        "rate_limit" => (
            429,
            google(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", Value::Null),
            vec![],
        ),
        "quota" => (
            429,
            google(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
                json!([{
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"}
                    }]
                }]),
            ),
            vec![],
        ),
        "invalid_key" => (
            400,
            google(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"}
                }]),
            ),
            vec![],
        ),
        "permission" => (
            403,
            google(403, "PERMISSION_DENIED", "Permission denied: Consumer 'api_key:mock' has been suspended.", Value::Null),
            vec![],
        ),
        "overloaded" => (
            503,
            google(503, "UNAVAILABLE", "The model is overloaded. Please try again later.", Value::Null),
            vec![],
        ),
        _ => return None,
    })
}

fn groq(status: u16, error: Option<&str>, model: &str) -> Option<Answer> {
    Some(match (status, error) {
        (_, Some("tpm")) | (413, None) => (
            413,
            json!({"error": {
                "message": format!("Request too large for model `{model}` in organization `org_mock` service tier `on_demand` on tokens per minute (TPM): Limit 6000, Requested 12328, please reduce your message size and try again. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing"),
                "type": "tokens",
                "code": "rate_limit_exceeded"
            }}),
            vec![],
        ),
        // Groq's documented rate-limit headers: the reset of each limit on every response,
        // and Retry-After (whole seconds) on a 429.
        (_, Some("rate_limit")) | (429, None) => (
            429,
            json!({"error": {
                "message": format!("Rate limit reached for model `{model}` in organization `org_mock` service tier `on_demand` on tokens per minute (TPM): Limit 6000, Used 5747, Requested 4251. Visit https://console.groq.com/docs/rate-limits for more information."),
                "type": "tokens",
                "code": "rate_limit_exceeded"
            }}),
            vec![
                ("x-ratelimit-limit-requests", "14400".into()),
                ("x-ratelimit-limit-tokens", "6000".into()),
                ("x-ratelimit-remaining-requests", "14370".into()),
                ("x-ratelimit-remaining-tokens", "0".into()),
                ("x-ratelimit-reset-requests", "2m59.56s".into()),
                ("x-ratelimit-reset-tokens", "7.66s".into()),
                ("retry-after", "8".into()),
            ],
        ),
        _ => return None,
    })
}

fn openrouter(status: u16, error: Option<&str>, model: &str) -> Option<Answer> {
    let which = error.or(match status {
        402 => Some("credits"),
        403 => Some("moderation"),
        429 => Some("upstream_rate_limit"),
        502 => Some("upstream_down"),
        _ => None,
    })?;
    Some(match which {
        "credits" => (
            402,
            json!({"error": {"message": "Insufficient credits. Add more using https://openrouter.ai/settings/credits", "code": 402,
                   "metadata": {"limit_source": "openrouter_credits"}}}),
            vec![],
        ),
        "moderation" => (
            403,
            json!({"error": {"code": 403,
                   "message": format!("{model} requires moderation on OpenAI. Your input was flagged for \"harassment\". No credits were charged."),
                   "metadata": {"reasons": ["harassment"], "flagged_input": "...", "provider_name": "OpenAI", "model_slug": model}}}),
            vec![],
        ),
        "upstream_rate_limit" => (
            429,
            json!({"error": {"message": "Provider returned error", "code": 429,
                   "metadata": {"raw": format!("{model} is temporarily rate-limited upstream. Please retry shortly, or add your own key to accumulate your rate limits."),
                                "provider_name": "MockInfra"}}}),
            vec![],
        ),
        "upstream_down" => (
            502,
            json!({"error": {"message": "Provider returned error", "code": 502,
                   "metadata": {"raw": "upstream connect error or disconnect/reset before headers", "provider_name": "MockInfra"}}}),
            vec![],
        ),
        _ => return None,
    })
}

fn azure(status: u16, error: Option<&str>) -> Option<Answer> {
    let which = error.or(match status {
        400 => Some("content_filter"),
        401 => Some("invalid_key"),
        429 => Some("rate_limit"),
        _ => None,
    })?;
    Some(match which {
        "content_filter" => (
            400,
            json!({"error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
                "type": null, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {
                    "hate": {"filtered": false, "severity": "safe"},
                    "self_harm": {"filtered": false, "severity": "safe"},
                    "sexual": {"filtered": true, "severity": "high"},
                    "violence": {"filtered": false, "severity": "safe"}}}}}),
            vec![],
        ),
        "invalid_key" => (
            401,
            json!({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}),
            vec![],
        ),
        "rate_limit" => (
            429,
            json!({"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 86400 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}),
            vec![("retry-after", "86400".into())],
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_error_has_a_body_and_every_name_parses() {
        for name in MockProvider::NAMES {
            let p = MockProvider::parse(name).unwrap();
            for e in [
                "rate_limit",
                "quota",
                "invalid_key",
                "permission",
                "overloaded",
                "tpm",
                "balance",
                "credits",
                "upstream_rate_limit",
                "moderation",
                "upstream_down",
                "content_filter",
            ] {
                let answer = error(p, 500, Some(e), "m");
                assert_eq!(answer.is_some(), known_error(p, e), "{name} {e}");
                if let Some(a) = answer {
                    let v: Value = serde_json::from_slice(&a.body).unwrap();
                    assert!(v.is_object() || v.is_array(), "{name} {e}");
                }
            }
        }
        // Gemini's OpenAI-compatible endpoint wraps its error in an array.
        let g = error(MockProvider::Gemini, 429, None, "m").unwrap();
        assert!(g.body.starts_with(b"[{"));
        assert!(error(MockProvider::DeepSeek, 500, None, "m").is_none());
    }
}
