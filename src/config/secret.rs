//! Secrets and upstream credentials: the only config values that change after load.
//!
//! A [`Secret`] never prints its value. A [`Credential`] is one upstream key with its auth
//! header built once; a file-backed key is re-read, and a command-backed one re-run, when the
//! upstream says 401 (a command also on its refresh interval), so it carries a lock and an
//! async reload — runtime state, kept here so the rest of the config stays plain immutable
//! data.

use std::fmt;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

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
    Command(KeyCommand),
}

impl CredentialSource {
    /// Whether the key can change (and is worth re-reading on a 401).
    pub fn reloadable(&self) -> bool {
        !matches!(self, CredentialSource::Env(_))
    }
}

/// `api_key_command`: a program that prints a token on stdout (an OAuth access token, a
/// cloud CLI's `print-access-token`, a vault read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCommand {
    pub argv: Vec<String>,
    /// How long one run may take; a run past it is killed and counts as failed.
    pub timeout: Duration,
    /// Re-run this often in the background (tokens that expire on a clock).
    pub refresh_every: Option<Duration>,
}

/// A token is small; more output than this is a wrong command, not a key.
const MAX_KEY_BYTES: usize = 64 * 1024;

impl KeyCommand {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// The program's name (no arguments, which may hold account names): for labels and logs.
    pub fn program(&self) -> &str {
        let p = self.argv.first().map_or("", String::as_str);
        p.rsplit('/').next().unwrap_or(p)
    }

    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.argv[0]);
        c.args(&self.argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    }

    /// Runs the command (bounded by its timeout; killed past it) and returns the token it
    /// printed. The error says what went wrong, with the start of its stderr — which may hold
    /// anything, so callers scrub it before logging.
    pub async fn run(&self) -> Result<Secret, String> {
        let mut cmd = tokio::process::Command::from(self.command());
        cmd.kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program()))?;
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => Err(format!(
                "{} did not finish within {:?} (killed)",
                self.program(),
                self.timeout
            )),
            Ok(Err(e)) => Err(format!("{}: {e}", self.program())),
            Ok(Ok(out)) => self.token_of(out),
        }
    }

    /// [`run`](Self::run) for config load, outside any runtime: the same bound and kill.
    pub fn run_blocking(&self) -> Result<Secret, String> {
        let mut child = self
            .command()
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program()))?;
        let started = std::time::Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{} did not finish within {:?} (killed)",
                        self.program(),
                        self.timeout
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("{}: {e}", self.program())),
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{}: {e}", self.program()))?;
        self.token_of(out)
    }

    fn token_of(&self, out: std::process::Output) -> Result<Secret, String> {
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let stderr: String = stderr.trim().chars().take(300).collect();
            return Err(format!(
                "{} failed ({}): {stderr}",
                self.program(),
                out.status
            ));
        }
        if out.stdout.len() > MAX_KEY_BYTES {
            return Err(format!(
                "{} printed more than {MAX_KEY_BYTES} bytes; a token is expected",
                self.program()
            ));
        }
        let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if token.is_empty() {
            return Err(format!("{} printed no token", self.program()));
        }
        Ok(Secret::new(token))
    }
}

/// One upstream key of a backend. File- and command-backed keys can be reloaded when the
/// upstream says 401.
#[derive(Debug)]
pub struct Credential {
    /// Stable, secret-free name (`env:VAR`, `file:PATH` or `command:PROGRAM`): health scope and
    /// logs use it.
    pub label: Arc<str>,
    pub source: CredentialSource,
    style: AuthStyle,
    value: RwLock<(Secret, http::HeaderValue)>,
    /// One reload at a time: the 401s of concurrent requests run the command once.
    reloading: tokio::sync::Mutex<()>,
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
            reloading: tokio::sync::Mutex::new(()),
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

    /// Re-reads a file-backed key or re-runs a command-backed one: `Ok(true)` when the key
    /// changed (a retry may use it). `used` is the header a failed request sent: when the key
    /// has changed since (another request reloaded it), that is reported at once. Env keys
    /// never change. An `Err` says why the reload failed (unscrubbed: the caller scrubs).
    pub async fn reload(&self, used: Option<&http::HeaderValue>) -> Result<bool, String> {
        if !self.source.reloadable() {
            return Ok(false);
        }
        let _one_at_a_time = self.reloading.lock().await;
        if used.is_some_and(|u| *u != self.auth_header()) {
            return Ok(true);
        }
        let fresh = match &self.source {
            CredentialSource::Env(_) => return Ok(false),
            CredentialSource::File(path) => read_key_file(path).await?,
            CredentialSource::Command(cmd) => cmd.run().await?,
        };
        let Some(header) = auth_header_value(self.style, fresh.expose()) else {
            return Err(
                "the new key holds bytes a header cannot carry; keeping the old one".into(),
            );
        };
        let mut guard = self.value.write().unwrap_or_else(|e| e.into_inner());
        if guard.0.expose() == fresh.expose() {
            return Ok(false);
        }
        *guard = (fresh, header);
        Ok(true)
    }
}

async fn read_key_file(path: &std::path::Path) -> Result<Secret, String> {
    // A key file is small; reading at most 64 KiB keeps a wrong path from filling memory.
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot open {path:?}: {e}"))?;
    let mut buf = String::new();
    tokio::io::AsyncReadExt::read_to_string(
        &mut tokio::io::AsyncReadExt::take(f, MAX_KEY_BYTES as u64),
        &mut buf,
    )
    .await
    .map_err(|e| format!("cannot read {path:?}: {e}"))?;
    let fresh = buf.trim();
    if fresh.is_empty() {
        return Err(format!("{path:?} is empty"));
    }
    Ok(Secret::new(fresh))
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
