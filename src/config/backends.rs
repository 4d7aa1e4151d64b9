//! `backends:` → [`Backend`]s: where requests go, in which dialect, with which keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_saphyr::Spanned;
use url::Url;

use super::raw::{line, KeyEnv, RawApi, RawBackend, RawKeyCommand};
use super::secret::{Credential, CredentialSource, KeyCommand, Secret};
use super::{ConfigError, Source};
use crate::dialect::Dialect;

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
        .map(|(i, (name, rb))| build_one(BackendId(i), name, rb, src))
        .collect()
}

fn build_one(
    id: BackendId,
    name: &str,
    rb: &RawBackend,
    src: &Source,
) -> Result<Backend, ConfigError> {
    let key = format!("backends.{name}");
    if name.trim().is_empty() {
        return Err(src.invalid(line(&rb.base_url), key, "backend name is empty"));
    }
    let api = match rb.api {
        RawApi::OpenaiChat => Dialect::OpenAi,
        RawApi::AnthropicMessages => Dialect::Anthropic,
        RawApi::OpenaiResponses => Dialect::Responses,
    };
    let url_key = format!("{key}.base_url");
    let url_line = line(&rb.base_url);
    let base_url = rb.base_url.value.trim().trim_end_matches('/').to_string();
    let parsed = Url::parse(&base_url).map_err(|e| {
        src.invalid(
            url_line,
            &url_key,
            format!("{base_url:?} is not a URL: {e}"),
        )
    })?;
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
            "must not carry a query string or user info; keys go in api_key_env",
        ));
    }
    let endpoint = Url::parse(&format!("{base_url}{}", api.upstream_path()))
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
        let uri: http::Uri = format!("{base_url}{path}").parse().ok()?;
        Some((op, uri))
    })
    .collect();
    Ok(Backend {
        id,
        side_uris,
        name: name.into(),
        name_header: http::HeaderValue::from_str(name).ok(),
        api,
        base_url,
        endpoint,
        endpoint_uri,
        credentials: credentials(&key, rb, api, src)?,
        default_max_tokens: rb.default_max_tokens.unwrap_or(4096).max(1),
        anthropic_version: rb
            .anthropic_version
            .as_deref()
            .unwrap_or(DEFAULT_ANTHROPIC_VERSION)
            .into(),
    })
}

/// The env keys in the order written, then the key file, then the key command.
fn credentials(
    key: &str,
    rb: &RawBackend,
    api: Dialect,
    src: &Source,
) -> Result<Vec<Credential>, ConfigError> {
    let vars: Vec<(String, &Spanned<String>)> = match &rb.api_key_env {
        None => vec![],
        Some(KeyEnv::One(var)) => vec![(format!("{key}.api_key_env"), var)],
        Some(KeyEnv::Many(vars)) => vars
            .iter()
            .enumerate()
            .map(|(i, var)| (format!("{key}.api_key_env[{i}]"), var))
            .collect(),
    };
    let mut credentials = Vec::with_capacity(vars.len() + 1);
    for (place, var) in vars {
        let name = &var.value;
        let value = src.var(name).ok_or_else(|| {
            src.invalid(
                line(var),
                &place,
                format!("environment variable {name} is not set (or empty); export it with the backend's API key"),
            )
        })?;
        let credential = Credential::new(
            format!("env:{name}"),
            CredentialSource::Env(name.clone()),
            api,
            value,
        )
        .ok_or_else(|| {
            src.invalid(
                line(var),
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
            api,
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
        let credential = Credential::new(label, CredentialSource::Command(command), api, token)
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
