//! The providers Switchyard knows by name: what `provider:` on a backend may say.
//!
//! A leaf, like `failure`: config (presets), the classifier (each provider's error dialect) and
//! the docs all name a provider without importing each other. What a preset fills in lives in
//! `config::presets`; which error rules apply lives in `classify::rules`.

/// A provider with a preset and, where it has one, its own error dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
    OpenRouter,
    Gemini,
    Groq,
    DeepSeek,
    Together,
    Fireworks,
    Mistral,
    Nous,
    Xai,
    AzureOpenAi,
    Ollama,
    Vllm,
    LlamaCpp,
    LmStudio,
}

impl Provider {
    pub const ALL: [Provider; 16] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::OpenRouter,
        Provider::Gemini,
        Provider::Groq,
        Provider::DeepSeek,
        Provider::Together,
        Provider::Fireworks,
        Provider::Mistral,
        Provider::Nous,
        Provider::Xai,
        Provider::AzureOpenAi,
        Provider::Ollama,
        Provider::Vllm,
        Provider::LlamaCpp,
        Provider::LmStudio,
    ];

    /// The name written in config (`provider: gemini`) and shown in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::OpenRouter => "openrouter",
            Provider::Gemini => "gemini",
            Provider::Groq => "groq",
            Provider::DeepSeek => "deepseek",
            Provider::Together => "together",
            Provider::Fireworks => "fireworks",
            Provider::Mistral => "mistral",
            Provider::Nous => "nous",
            Provider::Xai => "xai",
            Provider::AzureOpenAi => "azure_openai",
            Provider::Ollama => "ollama",
            Provider::Vllm => "vllm",
            Provider::LlamaCpp => "llamacpp",
            Provider::LmStudio => "lmstudio",
        }
    }

    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The provider a hosted endpoint belongs to, from its host name: a backend configured
    /// with a plain `base_url` still gets its provider's error rules.
    pub fn from_host(host: &str) -> Option<Provider> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let is = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        Some(match () {
            _ if is("api.openai.com") => Provider::OpenAi,
            _ if is("api.anthropic.com") => Provider::Anthropic,
            _ if is("openrouter.ai") => Provider::OpenRouter,
            _ if is("generativelanguage.googleapis.com") => Provider::Gemini,
            _ if is("api.groq.com") => Provider::Groq,
            _ if is("api.deepseek.com") => Provider::DeepSeek,
            _ if is("api.together.xyz") || is("api.together.ai") => Provider::Together,
            _ if is("api.fireworks.ai") => Provider::Fireworks,
            _ if is("api.mistral.ai") => Provider::Mistral,
            _ if is("inference-api.nousresearch.com") => Provider::Nous,
            _ if is("api.x.ai") => Provider::Xai,
            _ if is("openai.azure.com") => Provider::AzureOpenAi,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_and_hosts_are_recognised() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
        assert_eq!(Provider::parse("Gemini"), None);
        assert_eq!(
            Provider::from_host("generativelanguage.googleapis.com"),
            Some(Provider::Gemini)
        );
        assert_eq!(
            Provider::from_host("my-res.openai.azure.com"),
            Some(Provider::AzureOpenAi)
        );
        assert_eq!(Provider::from_host("evilopenrouter.ai"), None);
        assert_eq!(Provider::from_host("127.0.0.1"), None);
    }
}
