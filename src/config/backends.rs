//! `backends:` → [`Backend`]s: where requests go, in which dialect, with which keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_saphyr::Spanned;
use url::Url;

use super::presets::{preset, Preset};
use super::raw::{line, KeyEnv, RawApi, RawBackend, RawKeyCommand};
use super::secret::{AuthStyle, Credential, CredentialSource, KeyCommand, Secret};
use super::{ConfigError, Source};
use crate::dialect::Dialect;
use crate::provider::Provider;

pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

/// Index of a backend in [`super::Config::backends`]; cheap to copy, valid for the config's
/// lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub usize);

#[derive(Debug)]
pub struct Backend {
    pub id: BackendId,
    pub name: Arc<str>,
    /// The name as an `x-switchyard-backend` value, built once (`None` if a header cannot
    /// carry it).
    pub name_header: Option<http::HeaderValue>,
    pub api: Dialect,
    /// As configured, trailing slash removed.
    pub base_url: String,
    /// The full endpoint URL requests go to: the only place upstream traffic is ever sent.
    pub endpoint: Url,
    /// The same, parsed once for the HTTP client.
    pub endpoint_uri: http::Uri,
    /// The side endpoints this backend's API serves (count_tokens, embeddings), parsed once.
    side_uris: Vec<(crate::dialect::Operation, http::Uri)>,
    /// The credential pool, in order of preference; empty for keyless local servers.
    pub credentials: Vec<Credential>,
    pub anthropic_version: Arc<str>,
    /// `max_tokens` for translated requests that carry none.
    pub default_max_tokens: u32,
    /// The provider (from `provider:`, else recognised from the host): which error rules
    /// apply to its answers.
    pub provider: Option<Provider>,
    /// Which header carries the key.
    pub auth: AuthStyle,
    /// Static headers from `headers:`, validated and built once.
    pub extra_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Backend {
    /// The credentials an attempt may use: each key's index, or `None` once for a keyless
    /// backend.
    pub fn credential_choices(&self) -> impl Iterator<Item = Option<usize>> {
        let n = self.credentials.len();
        (0..n.max(1)).map(move |i| (n > 0).then_some(i))
    }

    /// Where `op` goes on this backend; None when its API does not serve it.
    pub fn uri_for(&self, op: crate::dialect::Operation) -> Option<&http::Uri> {
        if op == crate::dialect::Operation::Generate {
            return Some(&self.endpoint_uri);
        }
        self.side_uris
            .iter()
            .find(|(o, _)| *o == op)
            .map(|(_, u)| u)
    }

    /// Static header values that look like credentials (their name says key, token, secret
    /// or auth), for the scrubber to redact wherever they might be echoed.
    pub fn secret_headers(&self) -> impl Iterator<Item = Secret> + '_ {
        self.extra_headers
            .iter()
            .filter(|(name, _)| {
                ["key", "token", "secret", "auth", "signature", "password"]
                    .iter()
                    .any(|w| name.as_str().contains(w))
            })
            .filter_map(|(_, v)| v.to_str().ok().map(Secret::new))
    }

    /// The configured base URL, parsed (validated at load, so this cannot fail).
    pub fn endpoint_base(&self) -> Url {
        Url::parse(&self.base_url).expect("validated at load")
    }
}

/// Backends in name order: a backend's [`BackendId`] is its place in that order.
pub(super) fn build(
    raw: Option<&Spanned<BTreeMap<String, RawBackend>>>,
    src: &Source,
) -> Result<Vec<Backend>, ConfigError> {
    let raw = match raw {
        Some(map) if !map.value.is_empty() => map,
        _ => {
            return Err(src.invalid(
                raw.map_or(1, line),
                "backends",
                "no backends configured; add at least one under `backends:`",
            ))
        }
    };
    raw.value
        .iter()
        .enumerate()
        .map(|(i, (name, rb))| build_one(BackendId(i), name, rb, line(raw), src))
        .collect()
}

fn build_one(
    id: BackendId,
    name: &str,
    rb: &RawBackend,
    map_line: usize,
    src: &Source,
) -> Result<Backend, ConfigError> {
    let key = format!("backends.{name}");
    // The backend's own line when a value of it has one, the map's otherwise.
    let here = rb
        .provider
        .as_ref()
        .or(rb.base_url.as_ref())
        .map_or(map_line, line);
    if name.trim().is_empty() {
        return Err(src.invalid(here, key, "backend name is empty"));
    }
    let preset: Option<&Preset> = match &rb.provider {
        None => None,
        Some(p) => Some(preset(Provider::parse(&p.value).ok_or_else(|| {
            let names: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
            src.invalid(
                line(p),
                format!("{key}.provider"),
                format!(
                    "unknown provider {:?}; one of: {}",
                    p.value,
                    names.join(", ")
                ),
            )
        })?)),
    };
    let api = match (rb.api, preset) {
        (Some(RawApi::OpenaiChat), _) => Dialect::OpenAi,
        (Some(RawApi::AnthropicMessages), _) => Dialect::Anthropic,
        (Some(RawApi::OpenaiResponses), _) => Dialect::Responses,
        (None, Some(p)) => p.api,
        (None, None) => {
            return Err(src.invalid(
                here,
                format!("{key}.api"),
                "missing: set api (openai_chat, anthropic_messages, openai_responses) or a provider preset",
            ))
        }
    };
    let url_key = format!("{key}.base_url");
    let (written, url_line) = match (&rb.base_url, preset.and_then(|p| p.base_url)) {
        (Some(u), _) => (u.value.trim().trim_end_matches('/').to_string(), line(u)),
        (None, Some(default)) => (default.to_string(), here),
        (None, None) if preset.is_some() => return Err(src.invalid(
            here,
            &url_key,
            "missing: this provider needs the resource's URL, e.g. https://NAME.openai.azure.com",
        )),
        (None, None) => {
            return Err(src.invalid(here, &url_key, "missing: set base_url or a provider preset"))
        }
    };
    let parsed = Url::parse(&written)
        .map_err(|e| src.invalid(url_line, &url_key, format!("{written:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(src.invalid(
            url_line,
            &url_key,
            format!("scheme must be http or https, not {:?}", parsed.scheme()),
        ));
    }
    if parsed.query().is_some() || !parsed.username().is_empty() {
        return Err(src.invalid(
            url_line,
            &url_key,
            "must not carry a query string or user info; keys go in api_key_env, parameters in query",
        ));
    }
    let provider = preset
        .map(|p| p.provider)
        .or_else(|| parsed.host_str().and_then(Provider::from_host));
    let base_url = deployment_base(&key, rb, preset, written, here, src)?;
    let query = query_string(&key, rb, preset, src)?;
    let endpoint = Url::parse(&format!("{base_url}{}{query}", api.upstream_path()))
        .map_err(|e| src.invalid(url_line, &url_key, e.to_string()))?;
    let endpoint_uri: http::Uri = endpoint
        .as_str()
        .parse()
        .map_err(|e: http::uri::InvalidUri| src.invalid(url_line, &url_key, e.to_string()))?;
    let side_uris = [
        crate::dialect::Operation::CountTokens,
        crate::dialect::Operation::Embeddings,
    ]
    .into_iter()
    .filter_map(|op| {
        let path = op.upstream_path(api)?;
        let uri: http::Uri = format!("{base_url}{path}{query}").parse().ok()?;
        Some((op, uri))
    })
    .collect();
    let auth = auth_style(&key, rb, preset, api, src)?;
    let credentials = credentials(&key, rb, preset, auth, here, src)?;
    if auth == AuthStyle::None && !credentials.is_empty() {
        let at = rb.auth.as_ref().map_or(here, line);
        return Err(src.invalid(
            at,
            format!("{key}.auth"),
            "auth: none sends no key, but the backend has keys; remove them or pick a header",
        ));
    }
    Ok(Backend {
        id,
        side_uris,
        name: name.into(),
        name_header: http::HeaderValue::from_str(name).ok(),
        api,
        base_url,
        endpoint,
        endpoint_uri,
        credentials,
        default_max_tokens: rb.default_max_tokens.unwrap_or(4096).max(1),
        anthropic_version: rb
            .anthropic_version
            .as_deref()
            .unwrap_or(DEFAULT_ANTHROPIC_VERSION)
            .into(),
        provider,
        auth,
        extra_headers: extra_headers(&key, rb, src)?,
    })
}

/// Azure OpenAI puts the deployment in the path: `{resource}/openai/deployments/{name}`.
/// `deployment:` is refused elsewhere, so a typo cannot go unnoticed.
fn deployment_base(
    key: &str,
    rb: &RawBackend,
    preset: Option<&Preset>,
    base_url: String,
    here: usize,
    src: &Source,
) -> Result<String, ConfigError> {
    let azure = preset.is_some_and(|p| p.provider == Provider::AzureOpenAi);
    let place = format!("{key}.deployment");
    match (&rb.deployment, azure) {
        (Some(d), true) => {
            let name = d.value.trim();
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !plain {
                return Err(src.invalid(
                    line(d),
                    place,
                    format!("{name:?} is not a deployment name (letters, digits, - _ .)"),
                ));
            }
            Ok(format!("{base_url}/openai/deployments/{name}"))
        }
        (None, true) => Err(src.invalid(
            here,
            place,
            "missing: Azure OpenAI needs the deployment name requests go to",
        )),
        (Some(d), false) => Err(src.invalid(
            line(d),
            place,
            "only for provider: azure_openai (other backends name the model in the route)",
        )),
        (None, false) => Ok(base_url),
    }
}

/// `?a=b&c=d` from the preset's parameters and `query:` (which wins), encoded; empty when none.
fn query_string(
    key: &str,
    rb: &RawBackend,
    preset: Option<&Preset>,
    src: &Source,
) -> Result<String, ConfigError> {
    let mut pairs: BTreeMap<String, String> = preset
        .map(|p| p.query)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (name, value) in &rb.query {
        if name.trim().is_empty() {
            return Err(src.invalid(
                line(value),
                format!("{key}.query"),
                "a parameter name is empty",
            ));
        }
        pairs.insert(name.clone(), value.value.clone());
    }
    if pairs.is_empty() {
        return Ok(String::new());
    }
    let mut url = Url::parse("http://x/").expect("a valid URL");
    url.query_pairs_mut().extend_pairs(&pairs);
    Ok(format!("?{}", url.query().unwrap_or_default()))
}

fn auth_style(
    key: &str,
    rb: &RawBackend,
    preset: Option<&Preset>,
    api: Dialect,
    src: &Source,
) -> Result<AuthStyle, ConfigError> {
    match &rb.auth {
        Some(a) => AuthStyle::parse(&a.value).ok_or_else(|| {
            src.invalid(
                line(a),
                format!("{key}.auth"),
                format!(
                    "{:?} is not an auth style; one of: bearer, x-api-key, api-key, none",
                    a.value
                ),
            )
        }),
        None => Ok(match (preset, api) {
            (Some(p), _) => p.auth,
            (None, Dialect::Anthropic) => AuthStyle::XApiKey,
            (None, Dialect::OpenAi | Dialect::Responses) => AuthStyle::Bearer,
        }),
    }
}

/// Headers the gateway sets itself, or that would break the request or carry a key.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "authorization",
    "x-api-key",
    "api-key",
];

fn extra_headers(
    key: &str,
    rb: &RawBackend,
    src: &Source,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, ConfigError> {
    let mut out = Vec::with_capacity(rb.headers.len());
    for (name, value) in &rb.headers {
        let place = format!("{key}.headers.{name}");
        let at = line(value);
        let header = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| src.invalid(at, &place, format!("{name:?} is not a header name")))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(src.invalid(
                at,
                &place,
                "the gateway sets this header itself (keys go in api_key_env, their header in auth)",
            ));
        }
        let mut v = http::HeaderValue::from_str(&value.value).map_err(|_| {
            src.invalid(
                at,
                &place,
                "the value holds characters a header cannot carry",
            )
        })?;
        // Static values may be credentials of a sort: keep them out of Debug output.
        v.set_sensitive(true);
        out.push((header, v));
    }
    Ok(out)
}

/// The env keys in the order written, then the key file, then the key command.
fn credentials(
    key: &str,
    rb: &RawBackend,
    preset: Option<&Preset>,
    style: AuthStyle,
    here: usize,
    src: &Source,
) -> Result<Vec<Credential>, ConfigError> {
    // A preset's conventional variable, unless the backend names its keys (or a key file).
    let default_var = preset.and_then(|p| p.key_env).filter(|_| {
        rb.api_key_file.is_none() && rb.api_key_command.is_none() && style != AuthStyle::None
    });
    let vars: Vec<(String, &str, usize)> = match &rb.api_key_env {
        None => default_var
            .map(|var| (format!("{key}.api_key_env"), var, here))
            .into_iter()
            .collect(),
        Some(KeyEnv::One(var)) => vec![(format!("{key}.api_key_env"), &var.value, line(var))],
        Some(KeyEnv::Many(vars)) => vars
            .iter()
            .enumerate()
            .map(|(i, var)| {
                (
                    format!("{key}.api_key_env[{i}]"),
                    var.value.as_str(),
                    line(var),
                )
            })
            .collect(),
    };
    let mut credentials = Vec::with_capacity(vars.len() + 1);
    for (place, name, at) in vars {
        let value = src.require_var(at, &place, name, "; export it with the backend's API key");
        let credential = Credential::new(
            format!("env:{name}"),
            CredentialSource::Env(name.to_string()),
            style,
            value,
        )
        .ok_or_else(|| {
            src.invalid(
                at,
                &place,
                format!("environment variable {name} holds characters an HTTP header cannot carry"),
            )
        })?;
        credentials.push(credential);
    }
    if let Some(file) = &rb.api_key_file {
        let (place, at, path) = (format!("{key}.api_key_file"), line(file), &file.value);
        let text = std::fs::read_to_string(path)
            .map_err(|e| src.invalid(at, &place, format!("cannot read {path:?}: {e}")))?;
        if text.trim().is_empty() {
            return Err(src.invalid(
                at,
                &place,
                format!("{path:?} is empty; it must hold the key"),
            ));
        }
        let credential = Credential::new(
            format!("file:{path}"),
            CredentialSource::File(path.into()),
            style,
            Secret::new(text.trim()),
        )
        .ok_or_else(|| {
            src.invalid(
                at,
                &place,
                format!("{path:?} holds characters an HTTP header cannot carry"),
            )
        })?;
        credentials.push(credential);
    }
    if let Some(cmd) = &rb.api_key_command {
        let (place, at) = (format!("{key}.api_key_command"), line(cmd));
        let command = match &cmd.value {
            RawKeyCommand::Argv(argv) => KeyCommand {
                argv: argv.clone(),
                timeout: KeyCommand::DEFAULT_TIMEOUT,
                refresh_every: None,
            },
            RawKeyCommand::Full(full) => KeyCommand {
                argv: full.argv.clone(),
                timeout: full.timeout.map_or(KeyCommand::DEFAULT_TIMEOUT, |t| t.0),
                refresh_every: full.refresh_every.map(|d| d.0),
            },
        };
        if command.argv.first().is_none_or(|p| p.is_empty()) {
            return Err(src.invalid(
                at,
                &place,
                "the command is empty; write its argv, e.g. [gcloud, auth, print-access-token]",
            ));
        }
        if command.timeout.is_zero() || command.refresh_every.is_some_and(|d| d.is_zero()) {
            return Err(src.invalid(
                at,
                &place,
                "timeout and refresh_every must be greater than 0",
            ));
        }
        // The first token is needed to serve at all: a command that fails at load is a config
        // error (its message scrubbed of anything key-shaped). Later failures only make this
        // credential unhealthy.
        let token = command.run_blocking().map_err(|e| {
            let e = crate::scrub::Scrubber::new::<&str>(&[]).detail(&e, 400);
            src.invalid(at, &place, format!("the key command failed: {e}"))
        })?;
        let label = format!("command:{}", command.program());
        let credential = Credential::new(label, CredentialSource::Command(command), style, token)
            .ok_or_else(|| {
            src.invalid(
                at,
                &place,
                "the command printed characters an HTTP header cannot carry",
            )
        })?;
        credentials.push(credential);
    }
    Ok(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn env(name: &str) -> Option<String> {
        name.ends_with("_API_KEY")
            .then(|| format!("key-for-{}", name.to_lowercase()))
    }

    fn load(backend: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "backends:\n  b:\n{}\nroutes:\n  r:\n    chain: [{{ backend: b, model: m }}]\n",
            backend
                .lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        Config::from_yaml(&text, "test.yaml", &env)
    }

    fn one(backend: &str) -> Backend {
        let mut c = load(backend).unwrap_or_else(|e| panic!("{e}\n{backend}"));
        c.backends.remove(0)
    }

    fn header(b: &Backend) -> Option<(String, String)> {
        let c = b.credentials.first()?;
        Some((
            b.auth.header_name()?.to_string(),
            c.auth_header().to_str().unwrap().to_string(),
        ))
    }

    /// One line of config is a working backend for every preset.
    #[test]
    fn every_preset_fills_in_api_url_auth_and_key() {
        // (preset, api, endpoint, auth header and value)
        type Row = (
            &'static str,
            &'static str,
            &'static str,
            Option<(&'static str, &'static str)>,
        );
        let table: &[Row] = &[
            (
                "openai",
                "openai_chat",
                "https://api.openai.com/v1/chat/completions",
                Some(("authorization", "Bearer key-for-openai_api_key")),
            ),
            (
                "anthropic",
                "anthropic_messages",
                "https://api.anthropic.com/v1/messages",
                Some(("x-api-key", "key-for-anthropic_api_key")),
            ),
            (
                "openrouter",
                "openai_chat",
                "https://openrouter.ai/api/v1/chat/completions",
                Some(("authorization", "Bearer key-for-openrouter_api_key")),
            ),
            (
                "gemini",
                "openai_chat",
                "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
                Some(("authorization", "Bearer key-for-gemini_api_key")),
            ),
            (
                "groq",
                "openai_chat",
                "https://api.groq.com/openai/v1/chat/completions",
                Some(("authorization", "Bearer key-for-groq_api_key")),
            ),
            (
                "deepseek",
                "openai_chat",
                "https://api.deepseek.com/chat/completions",
                Some(("authorization", "Bearer key-for-deepseek_api_key")),
            ),
            (
                "together",
                "openai_chat",
                "https://api.together.xyz/v1/chat/completions",
                Some(("authorization", "Bearer key-for-together_api_key")),
            ),
            (
                "fireworks",
                "openai_chat",
                "https://api.fireworks.ai/inference/v1/chat/completions",
                Some(("authorization", "Bearer key-for-fireworks_api_key")),
            ),
            (
                "mistral",
                "openai_chat",
                "https://api.mistral.ai/v1/chat/completions",
                Some(("authorization", "Bearer key-for-mistral_api_key")),
            ),
            (
                "nous",
                "openai_chat",
                "https://inference-api.nousresearch.com/v1/chat/completions",
                Some(("authorization", "Bearer key-for-nous_api_key")),
            ),
            (
                "xai",
                "openai_chat",
                "https://api.x.ai/v1/chat/completions",
                Some(("authorization", "Bearer key-for-xai_api_key")),
            ),
            (
                "ollama",
                "openai_chat",
                "http://localhost:11434/v1/chat/completions",
                None,
            ),
            (
                "vllm",
                "openai_chat",
                "http://localhost:8000/v1/chat/completions",
                None,
            ),
            (
                "llamacpp",
                "openai_chat",
                "http://localhost:8080/v1/chat/completions",
                None,
            ),
            (
                "lmstudio",
                "openai_chat",
                "http://localhost:1234/v1/chat/completions",
                None,
            ),
        ];
        for (name, api, endpoint, auth) in table {
            let b = one(&format!("provider: {name}"));
            assert_eq!(b.api.as_str(), *api, "{name}");
            assert_eq!(b.endpoint.as_str(), *endpoint, "{name}");
            assert_eq!(b.provider.map(Provider::as_str), Some(*name));
            let got = header(&b);
            assert_eq!(
                got.as_ref().map(|(h, v)| (h.as_str(), v.as_str())),
                *auth,
                "{name}"
            );
        }
    }

    #[test]
    fn azure_openai_needs_the_resource_and_deployment_and_sends_api_key_and_version() {
        let b = one("provider: azure_openai\nbase_url: https://my-res.openai.azure.com/\ndeployment: gpt-4o-prod");
        assert_eq!(
            b.endpoint.as_str(),
            "https://my-res.openai.azure.com/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            header(&b),
            Some(("api-key".into(), "key-for-azure_openai_api_key".into()))
        );
        let b = one("provider: azure_openai\nbase_url: https://my-res.openai.azure.com\ndeployment: d\nquery: { api-version: 2025-01-01-preview }");
        assert_eq!(b.endpoint.query(), Some("api-version=2025-01-01-preview"));
        let err = |text: &str| load(text).unwrap_err().to_string();
        assert_eq!(
            err("provider: azure_openai\ndeployment: d"),
            "test.yaml:3: backends.b.base_url: missing: this provider needs the resource's URL, e.g. https://NAME.openai.azure.com"
        );
        assert_eq!(
            err("provider: azure_openai\nbase_url: https://r.openai.azure.com"),
            "test.yaml:3: backends.b.deployment: missing: Azure OpenAI needs the deployment name requests go to"
        );
        assert!(err(
            "provider: azure_openai\nbase_url: https://r.openai.azure.com\ndeployment: a/../b"
        )
        .starts_with("test.yaml:5: backends.b.deployment: \"a/../b\" is not a deployment name"));
        assert!(err("provider: openai\ndeployment: d")
            .starts_with("test.yaml:4: backends.b.deployment: only for provider: azure_openai"));
    }

    #[test]
    fn anything_written_beats_the_preset() {
        let b = one("provider: openai\napi: openai_responses\nbase_url: http://127.0.0.1:9/v1\napi_key_env: OTHER_API_KEY\nauth: x-api-key");
        assert_eq!(b.endpoint.as_str(), "http://127.0.0.1:9/v1/responses");
        assert_eq!(
            header(&b),
            Some(("x-api-key".into(), "key-for-other_api_key".into()))
        );
        // A preset's error rules stay with the backend wherever it points.
        assert_eq!(b.provider, Some(Provider::OpenAi));
        // A local server with a key: bearer by default.
        let b = one("provider: vllm\napi_key_env: VLLM_API_KEY");
        assert_eq!(
            header(&b),
            Some(("authorization".into(), "Bearer key-for-vllm_api_key".into()))
        );
        // An empty list opts out of the preset's key.
        assert!(one("provider: openai\napi_key_env: []")
            .credentials
            .is_empty());
    }

    #[test]
    fn a_plain_backend_gets_its_providers_rules_from_the_host() {
        let b = one(
            "api: openai_chat\nbase_url: https://api.groq.com/openai/v1\napi_key_env: GROQ_API_KEY",
        );
        assert_eq!(b.provider, Some(Provider::Groq));
        assert_eq!(b.auth, AuthStyle::Bearer);
        let b = one("api: anthropic_messages\nbase_url: http://127.0.0.1:9");
        assert_eq!(b.provider, None);
        assert_eq!(b.auth, AuthStyle::XApiKey);
    }

    #[test]
    fn headers_and_query_are_validated_and_built_once() {
        let b = one("provider: openrouter\nheaders: { HTTP-Referer: https://example.com, X-Title: my app }\nquery: { a: \"1 2\", b: \"&\" }");
        let got: Vec<(String, String)> = b
            .extra_headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "http-referer".to_string(),
                    "https://example.com".to_string()
                ),
                ("x-title".to_string(), "my app".to_string())
            ]
        );
        assert_eq!(b.endpoint.query(), Some("a=1+2&b=%26"));
        assert_eq!(b.secret_headers().count(), 0);
        let b = one("provider: ollama\nheaders: { x-portkey-api-token: tok-1234567890 }");
        let secrets: Vec<String> = b.secret_headers().map(|s| s.expose().to_string()).collect();
        assert_eq!(secrets, ["tok-1234567890"]);
    }

    #[test]
    fn every_backend_refusal_names_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            ("provider: gemni", "test.yaml:3: backends.b.provider: unknown provider \"gemni\"; one of: openai, anthropic,"),
            ("base_url: http://x", "test.yaml:3: backends.b.api: missing: set api"),
            ("api: openai_chat", "test.yaml:2: backends.b.base_url: missing: set base_url or a provider preset"),
            ("provider: openai\napi_key_env: NOPE", "test.yaml:4: backends.b.api_key_env: environment variable NOPE is not set"),
            ("provider: openai\nauth: basic", "test.yaml:4: backends.b.auth: \"basic\" is not an auth style; one of: bearer, x-api-key, api-key, none"),
            ("provider: openai\napi_key_env: OPENAI_API_KEY\nauth: none", "test.yaml:5: backends.b.auth: auth: none sends no key"),
            ("provider: ollama\nheaders: { Authorization: Bearer x }", "test.yaml:4: backends.b.headers.Authorization: the gateway sets this header itself"),
            ("provider: ollama\nheaders: { \"bad name\": x }", "test.yaml:4: backends.b.headers.bad name: \"bad name\" is not a header name"),
            ("provider: ollama\nheaders: { x-a: \"a\\nb\" }", "test.yaml:4: backends.b.headers.x-a: the value holds characters"),
            ("provider: ollama\nquery: { \"\": x }", "test.yaml:4: backends.b.query: a parameter name is empty"),
            ("provider: ollama\nbase_url: \"http://x/?a=b\"", "test.yaml:4: backends.b.base_url: must not carry a query string"),
        ];
        for (backend, want) in cases {
            let err = load(backend).unwrap_err().to_string();
            assert!(err.starts_with(want), "{backend}\n→ {err}\nwanted {want}");
        }
        // A preset whose conventional variable is unset names it, at the provider line.
        let err = Config::from_yaml(
            "backends:\n  b:\n    provider: groq\nroutes:\n  r:\n    chain: [{ backend: b, model: m }]\n",
            "test.yaml",
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "test.yaml:3: backends.b.api_key_env: environment variable GROQ_API_KEY is not set"
            ),
            "{err}"
        );
    }
}
