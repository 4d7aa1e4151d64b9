//! `provider: NAME` on a backend: what each preset fills in. Anything written explicitly on the
//! backend wins; a preset only supplies what is missing.

use super::secret::AuthStyle;
use crate::dialect::Dialect;
use crate::provider::Provider;

/// What a preset fills in.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub provider: Provider,
    pub api: Dialect,
    /// `None` when the backend must say where (Azure: the resource's URL).
    pub base_url: Option<&'static str>,
    pub auth: AuthStyle,
    /// The conventional variable holding the key; `None` for keyless local servers.
    pub key_env: Option<&'static str>,
    /// How the provider's keys begin (the scrubber redacts these shapes even when unknown).
    pub key_prefixes: &'static [&'static str],
    /// Query parameters every request carries unless the backend sets them.
    pub query: &'static [(&'static str, &'static str)],
}

/// The Azure OpenAI `api-version` a preset backend uses unless `query:` names another (the
/// current GA version of the data-plane inference API).
pub const AZURE_API_VERSION: &str = "2024-10-21";

const fn hosted(
    provider: Provider,
    base_url: &'static str,
    key_env: &'static str,
    key_prefixes: &'static [&'static str],
) -> Preset {
    Preset {
        provider,
        api: Dialect::OpenAi,
        base_url: Some(base_url),
        auth: AuthStyle::Bearer,
        key_env: Some(key_env),
        key_prefixes,
        query: &[],
    }
}

const fn local(provider: Provider, base_url: &'static str) -> Preset {
    Preset {
        provider,
        api: Dialect::OpenAi,
        base_url: Some(base_url),
        auth: AuthStyle::Bearer,
        key_env: None,
        key_prefixes: &[],
        query: &[],
    }
}

pub const PRESETS: &[Preset] = &[
    hosted(
        Provider::OpenAi,
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        &["sk-proj-", "sk-"],
    ),
    Preset {
        api: Dialect::Anthropic,
        auth: AuthStyle::XApiKey,
        ..hosted(
            Provider::Anthropic,
            "https://api.anthropic.com",
            "ANTHROPIC_API_KEY",
            &["sk-ant-"],
        )
    },
    hosted(
        Provider::OpenRouter,
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
        &["sk-or-v1-"],
    ),
    hosted(
        Provider::Gemini,
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "GEMINI_API_KEY",
        &["AIza"],
    ),
    hosted(
        Provider::Groq,
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        &["gsk_"],
    ),
    hosted(
        Provider::DeepSeek,
        "https://api.deepseek.com",
        "DEEPSEEK_API_KEY",
        &["sk-"],
    ),
    hosted(
        Provider::Together,
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
        &["tgp_v1_"],
    ),
    hosted(
        Provider::Fireworks,
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        &["fw_"],
    ),
    hosted(
        Provider::Mistral,
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        &[],
    ),
    hosted(
        Provider::Nous,
        "https://inference-api.nousresearch.com/v1",
        "NOUS_API_KEY",
        &[],
    ),
    hosted(
        Provider::Xai,
        "https://api.x.ai/v1",
        "XAI_API_KEY",
        &["xai-"],
    ),
    Preset {
        provider: Provider::AzureOpenAi,
        api: Dialect::OpenAi,
        base_url: None,
        auth: AuthStyle::ApiKey,
        key_env: Some("AZURE_OPENAI_API_KEY"),
        key_prefixes: &[],
        query: &[("api-version", AZURE_API_VERSION)],
    },
    local(Provider::Ollama, "http://localhost:11434/v1"),
    local(Provider::Vllm, "http://localhost:8000/v1"),
    local(Provider::LlamaCpp, "http://localhost:8080/v1"),
    local(Provider::LmStudio, "http://localhost:1234/v1"),
];

pub fn preset(provider: Provider) -> &'static Preset {
    PRESETS
        .iter()
        .find(|p| p.provider == provider)
        .expect("every provider has a preset")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_exactly_one_preset() {
        for p in Provider::ALL {
            assert_eq!(PRESETS.iter().filter(|x| x.provider == p).count(), 1, "{p}");
            assert_eq!(preset(p).provider, p);
        }
    }

    /// A key of each preset's shape never leaves the process: the scrubber knows the shape
    /// even when the key is not one of the configured ones.
    #[test]
    fn the_scrubber_redacts_every_preset_key_shape() {
        let scrubber = crate::scrub::Scrubber::new::<&str>(&[]);
        for p in PRESETS {
            for prefix in p.key_prefixes {
                let key = format!("{prefix}Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z");
                let text = format!("upstream said: bad key {key} here");
                let out = scrubber.scrub(&text);
                assert!(!out.contains(&key), "{}: {out}", p.provider);
            }
        }
    }
}
