//! Secrets and upstream credentials: the only config values that change after load.
//!
//! A [`Secret`] never prints its value. A [`Credential`] is one upstream key with its auth
//! header built once; a file-backed key is re-read when the upstream says 401, so it carries a
//! lock and an async reload — runtime state, kept here so the rest of the config stays plain
//! immutable data.

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// A secret from the environment or a key file. `Debug` never shows the value.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where a credential's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Env(String),
    File(std::path::PathBuf),
}

/// One upstream key of a backend. File-backed keys can be re-read when the upstream says 401.
#[derive(Debug)]
pub struct Credential {
    /// Stable, secret-free name (`env:VAR` or `file:PATH`): health scope and logs use it.
    pub label: Arc<str>,
    pub source: CredentialSource,
    style: AuthStyle,
    value: RwLock<(Secret, http::HeaderValue)>,
}

/// Which request header carries a backend's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer KEY` (OpenAI and every compatible server).
    Bearer,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKey,
    /// No key header (local servers).
    None,
}

impl AuthStyle {
    pub fn parse(name: &str) -> Option<AuthStyle> {
        Some(match name {
            "bearer" => AuthStyle::Bearer,
            "x-api-key" => AuthStyle::XApiKey,
            "api-key" => AuthStyle::ApiKey,
            "none" => AuthStyle::None,
            _ => return None,
        })
    }

    /// The header the key goes in; `None` for [`AuthStyle::None`].
    pub fn header_name(self) -> Option<http::HeaderName> {
        Some(match self {
            AuthStyle::Bearer => http::header::AUTHORIZATION,
            AuthStyle::XApiKey => http::HeaderName::from_static("x-api-key"),
            AuthStyle::ApiKey => http::HeaderName::from_static("api-key"),
            AuthStyle::None => return None,
        })
    }
}

/// The key as its backend's auth header value (`Bearer …` for bearer auth, bare for
/// `x-api-key` and `api-key`), built once per key rather than per request; marked sensitive so
/// a header map's `Debug` output never shows it. `None` when the key holds bytes a header
/// cannot carry.
pub fn auth_header_value(style: AuthStyle, key: &str) -> Option<http::HeaderValue> {
    let mut v = match style {
        AuthStyle::Bearer => http::HeaderValue::from_str(&format!("Bearer {key}")),
        AuthStyle::XApiKey | AuthStyle::ApiKey | AuthStyle::None => {
            http::HeaderValue::from_str(key)
        }
    }
    .ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl Credential {
    /// `None` when the key cannot be sent in a header (a control character, say).
    pub fn new(
        label: impl Into<Arc<str>>,
        source: CredentialSource,
        style: AuthStyle,
        value: Secret,
    ) -> Option<Credential> {
        let header = auth_header_value(style, value.expose())?;
        Some(Credential {
            label: label.into(),
            source,
            style,
            value: RwLock::new((value, header)),
        })
    }

    fn current(&self) -> RwLockReadGuard<'_, (Secret, http::HeaderValue)> {
        self.value.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn secret(&self) -> Secret {
        self.current().0.clone()
    }

    /// The ready-made auth header value for this key.
    pub fn auth_header(&self) -> http::HeaderValue {
        self.current().1.clone()
    }

    /// Re-reads a file-backed key; true when it changed. Env keys never change.
    pub async fn reload(&self) -> bool {
        let CredentialSource::File(path) = &self.source else {
            return false;
        };
        // A key file is small; reading at most 64 KiB keeps a wrong path from filling memory.
        let text = match tokio::fs::File::open(path).await {
            Ok(f) => {
                let mut buf = String::new();
                match tokio::io::AsyncReadExt::read_to_string(
                    &mut tokio::io::AsyncReadExt::take(f, 64 * 1024),
                    &mut buf,
                )
                .await
                {
                    Ok(_) => buf,
                    Err(_) => return false,
                }
            }
            Err(_) => return false,
        };
        let fresh = text.trim();
        if fresh.is_empty() {
            return false;
        }
        let Some(header) = auth_header_value(self.style, fresh) else {
            tracing::warn!(credential = %self.label, "re-read key holds bytes a header cannot carry; keeping the old one");
            return false;
        };
        let mut guard = self.value.write().unwrap_or_else(|e| e.into_inner());
        if guard.0.expose() == fresh {
            return false;
        }
        *guard = (Secret::new(fresh), header);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_never_shows_the_value() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?}").contains("very"));
    }
}
