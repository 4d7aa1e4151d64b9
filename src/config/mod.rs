//! Configuration: raw YAML structs (`deny_unknown_fields`) → a validated, immutable [`Config`].
//!
//! Two stages, so that bad states are unrepresentable at runtime: serde rejects unknown keys and
//! wrong types (its message carries the line), then [`Config::from_yaml`] checks names, references,
//! env vars and ranges, and reports each problem as `FILE:LINE: key.path: what to fix`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Deserializer};

use crate::dialect::Dialect;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read config: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Stage 1: raw serde structs.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    #[serde(default)]
    backends: BTreeMap<String, RawBackend>,
    #[serde(default)]
    routes: BTreeMap<String, RawRoute>,
    default_route: Option<String>,
    #[serde(default)]
    failover: RawFailover,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    translate: RawTranslate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTranslate {
    /// Reject (400) what cannot be translated instead of dropping it.
    strict: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    #[serde(default, deserialize_with = "opt_duration")]
    throttle: Option<Duration>,
    queue: Option<usize>,
    /// Per sink, alerts per minute at most (storm protection).
    per_sink_per_minute: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    session_ttl: Option<Duration>,
    max_sessions: Option<usize>,
    #[serde(default)]
    sinks: Vec<RawSink>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawSink {
    Telegram {
        bot_token_env: String,
        chat_id: String,
        api_base: Option<String>,
        events: Option<Vec<AlertEvent>>,
    },
    Webhook {
        url: String,
        secret_env: Option<String>,
        events: Option<Vec<AlertEvent>>,
    },
    Log {
        events: Option<Vec<AlertEvent>>,
    },
}

/// What an alert announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    FallbackActivated,
    BackendDown,
    BackendRecovered,
    FallbackExhausted,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 4] = [
        AlertEvent::FallbackActivated,
        AlertEvent::BackendDown,
        AlertEvent::BackendRecovered,
        AlertEvent::FallbackExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::FallbackActivated => "fallback_activated",
            AlertEvent::BackendDown => "backend_down",
            AlertEvent::BackendRecovered => "backend_recovered",
            AlertEvent::FallbackExhausted => "fallback_exhausted",
        }
    }
}

/// A validated alert sink. `None` settings (a missing env var) make it a no-op, announced once.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    Telegram {
        bot_token: Option<Secret>,
        token_env: String,
        chat_id: String,
        api_base: String,
    },
    Webhook {
        url: reqwest::Url,
        secret: Option<Secret>,
    },
    Log,
}

#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// `telegram`, `webhook#2`…: the label in metrics and logs.
    pub name: String,
    pub events: Vec<AlertEvent>,
    pub config: SinkConfig,
    /// Why the sink is disabled, if it is (reported once at start-up).
    pub disabled: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub throttle: Duration,
    pub queue: usize,
    pub per_sink_per_minute: u32,
    pub session_ttl: Duration,
    pub max_sessions: usize,
    pub sinks: Vec<SinkSpec>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            throttle: Duration::from_secs(300),
            queue: 1024,
            per_sink_per_minute: 20,
            session_ttl: Duration::from_secs(3600),
            max_sessions: 10_000,
            sinks: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    store: Option<HealthStore>,
    redis: Option<RawRedis>,
    failure_threshold: Option<BTreeMap<String, u32>>,
    cooldown: Option<RawCooldown>,
    sticky_sessions: Option<bool>,
    session_from_body: Option<bool>,
    #[serde(default, deserialize_with = "opt_duration")]
    turn_ttl: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    session_ttl: Option<Duration>,
    max_tracked: Option<usize>,
    probe: Option<RawProbe>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    #[serde(default, deserialize_with = "opt_duration")]
    interval: Option<Duration>,
    /// The probe's JSON body (model is filled in); default: a one-token "ping".
    request: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedis {
    url: Option<String>,
    key_prefix: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    poll_interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCooldown {
    #[serde(default, deserialize_with = "opt_duration")]
    base: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    max: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    decay_after: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    key_env: Option<String>,
    /// Host header values accepted on the admin surface besides loopback ones.
    #[serde(default)]
    allowed_hosts: Vec<String>,
    /// Browser origins accepted besides the gateway's own.
    #[serde(default)]
    allowed_origins: Vec<String>,
    /// Proxies whose X-Forwarded-For / X-Real-IP are believed (IPs or CIDRs).
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HealthStore {
    #[default]
    Memory,
    Redis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    api: RawApi,
    base_url: String,
    /// One env var name, or a list of them: a credential pool.
    api_key_env: Option<OneOrMany>,
    /// A file holding the key (re-read on 401, for tokens another process rotates).
    api_key_file: Option<String>,
    /// Sent as `anthropic-version` when the client sent none (anthropic_messages only).
    anthropic_version: Option<String>,
    /// `max_tokens` for translated requests that carry none (Anthropic requires it).
    default_max_tokens: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawApi {
    OpenaiChat,
    AnthropicMessages,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    chain: Vec<RawChainEntry>,
    #[serde(default)]
    failover: RawFailover,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChainEntry {
    backend: String,
    model: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    retries: Option<u32>,
    backoff: Option<RawBackoff>,
    #[serde(default, deserialize_with = "opt_duration")]
    max_retry_after: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    ttft_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    stall_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    deadline: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    early_headers_after: Option<Duration>,
    eager_on: Option<Vec<EagerOn>>,
    retry_budget: Option<RawRetryBudget>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    #[serde(default, deserialize_with = "opt_duration")]
    base: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    max: Option<Duration>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetryBudget {
    ratio: Option<f32>,
    min_per_sec: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EagerOn {
    Timeout,
    Connection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<usize>,
    max_response_body_bytes: Option<usize>,
    max_error_body_bytes: Option<usize>,
    max_sse_event_bytes: Option<usize>,
    max_held_bytes: Option<usize>,
    #[serde(default, deserialize_with = "opt_duration")]
    header_read_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    body_read_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    keys_env: Vec<String>,
    #[serde(default)]
    metrics: MetricsAccess,
}

/// Durations as humantime strings (`250ms`, `8s`, `5m`) or a bare number of seconds.
fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Secs(f64),
    }
    let d = match Option::<Raw>::deserialize(d)? {
        None => return Ok(None),
        Some(Raw::Secs(s)) if s.is_finite() && s >= 0.0 && s <= MAX_DURATION.as_secs_f64() => {
            Duration::from_secs_f64(s)
        }
        Some(Raw::Secs(s)) => {
            return Err(serde::de::Error::custom(format!(
                "invalid duration {s}: must be a number of seconds from 0 to {}",
                MAX_DURATION.as_secs()
            )))
        }
        Some(Raw::Text(t)) => humantime::parse_duration(t.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {t:?}: {e} (write e.g. 250ms, 8s, 5m)"
            ))
        })?,
    };
    if d > MAX_DURATION {
        return Err(serde::de::Error::custom(format!(
            "duration {} is too long: at most 365 days",
            humantime::format_duration(d)
        )));
    }
    Ok(Some(d))
}

/// No setting needs more than a year; the cap keeps every `now + setting` far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

// ---------------------------------------------------------------------------------------------
// Stage 2: the validated runtime types.

/// Index of a backend in [`Config::backends`]; cheap to copy, valid for the config's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub usize);

/// A secret from the environment. `Debug` and `Display` never show the value.
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
    api: Dialect,
    value: std::sync::RwLock<(Secret, http::HeaderValue)>,
}

/// The key as its backend's auth header value (`Bearer …` for OpenAI, bare for Anthropic's
/// `x-api-key`), built once per key rather than per request; marked sensitive so a header
/// map's `Debug` output never shows it. `None` when the key holds bytes a header cannot carry.
pub fn auth_header_value(api: Dialect, key: &str) -> Option<http::HeaderValue> {
    let mut v = match api {
        Dialect::OpenAi => http::HeaderValue::from_str(&format!("Bearer {key}")),
        Dialect::Anthropic => http::HeaderValue::from_str(key),
    }
    .ok()?;
    v.set_sensitive(true);
    Some(v)
}

impl Backend {
    /// The configured base URL, parsed (validated at load, so this cannot fail).
    pub fn endpoint_base(&self) -> reqwest::Url {
        reqwest::Url::parse(&self.base_url).expect("validated at load")
    }
}

impl Credential {
    /// `None` when the key cannot be sent in a header (a control character, say).
    pub fn new(
        label: impl Into<Arc<str>>,
        source: CredentialSource,
        api: Dialect,
        value: Secret,
    ) -> Option<Credential> {
        let header = auth_header_value(api, value.expose())?;
        Some(Credential {
            label: label.into(),
            source,
            api,
            value: std::sync::RwLock::new((value, header)),
        })
    }

    fn current(&self) -> std::sync::RwLockReadGuard<'_, (Secret, http::HeaderValue)> {
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
        let Some(header) = auth_header_value(self.api, fresh) else {
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
    pub endpoint: reqwest::Url,
    /// The same, parsed once for the HTTP client.
    pub endpoint_uri: http::Uri,
    /// The credential pool, in order of preference; empty for keyless local servers.
    pub credentials: Vec<Credential>,
    pub anthropic_version: Arc<str>,
    /// `max_tokens` for translated requests that carry none.
    pub default_max_tokens: u32,
}

#[derive(Debug)]
pub struct ChainEntry {
    pub backend: BackendId,
    pub model: Arc<str>,
    /// `model` pre-encoded as a JSON string, spliced into forwarded bodies without re-encoding.
    pub model_json: Bytes,
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub chain: Vec<ChainEntry>,
    pub failover: FailoverPolicy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailoverPolicy {
    pub retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub max_retry_after: Duration,
    pub connect_timeout: Duration,
    pub ttft_timeout: Duration,
    pub stall_timeout: Duration,
    pub deadline: Duration,
    pub early_headers_after: Option<Duration>,
    pub eager_on_timeout: bool,
    pub eager_on_connection: bool,
    pub retry_budget_ratio: f32,
    pub retry_budget_min_per_sec: u32,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy {
            retries: 2,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            ttft_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(300),
            early_headers_after: None,
            eager_on_timeout: true,
            eager_on_connection: true,
            retry_budget_ratio: 0.2,
            retry_budget_min_per_sec: 10,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// A successful non-streaming upstream body larger than this is `invalid_response`.
    pub max_response_body_bytes: usize,
    /// Upstream error bodies are read up to this size; a longer one is answered with a
    /// gateway-built error, never a truncated fragment.
    pub max_error_body_bytes: usize,
    /// The longest SSE line, and the largest event, an upstream stream may send.
    pub max_sse_event_bytes: usize,
    /// Bytes a stream may send before its first content event (held, not yet relayed).
    pub max_held_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 * 1024 * 1024,
            max_response_body_bytes: 32 * 1024 * 1024,
            max_error_body_bytes: 1024 * 1024,
            max_sse_event_bytes: 4 * 1024 * 1024,
            max_held_bytes: 4 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub store: HealthStore,
    pub redis_url: String,
    pub redis_key_prefix: String,
    pub redis_timeout: Duration,
    pub redis_poll_interval: Duration,
    pub threshold_default: u32,
    /// Per-reason overrides of the consecutive-failure threshold.
    pub thresholds: HashMap<crate::classify::FailureReason, u32>,
    pub cooldown: crate::health::CooldownPolicy,
    pub sticky_sessions: bool,
    pub session_from_body: bool,
    pub turn_ttl: Duration,
    pub session_ttl: Duration,
    pub max_tracked: usize,
    /// Active probes every interval; None: live traffic probes only.
    pub probe_interval: Option<Duration>,
    pub probe_request: Option<serde_json::Value>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        use crate::classify::FailureReason;
        HealthConfig {
            store: HealthStore::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_key_prefix: "switchyard".into(),
            redis_timeout: Duration::from_millis(250),
            redis_poll_interval: Duration::from_millis(500),
            threshold_default: 3,
            thresholds: HashMap::from([
                (FailureReason::Connection, 1),
                (FailureReason::Timeout, 1),
            ]),
            cooldown: crate::health::CooldownPolicy::default(),
            sticky_sessions: false,
            session_from_body: false,
            turn_ttl: Duration::from_secs(1800),
            session_ttl: Duration::from_secs(3600),
            max_tracked: 10_000,
            probe_interval: None,
            probe_request: None,
        }
    }
}

impl HealthConfig {
    pub fn threshold(&self, reason: crate::classify::FailureReason) -> u32 {
        self.thresholds
            .get(&reason)
            .copied()
            .unwrap_or(self.threshold_default)
    }
}

#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub backends: Vec<Backend>,
    pub routes: HashMap<Arc<str>, Arc<Route>>,
    /// Route names in config order, for `/v1/models`.
    pub route_names: Vec<Arc<str>>,
    pub default_route: Option<Arc<Route>>,
    pub limits: Limits,
    /// The top-level `failover` settings (routes may override them, except the retry budget).
    pub failover: FailoverPolicy,
    /// Valid gateway keys; empty means the gateway is open.
    pub gateway_keys: Vec<Secret>,
    pub health: HealthConfig,
    pub alerts: AlertsConfig,
    /// Who may use `/admin/*`, the status page and its feed.
    pub admin: AdminConfig,
    /// Who may scrape `/metrics` (`auth.metrics`).
    pub metrics_access: MetricsAccess,
    /// Cross-dialect translation rejects untranslatable features instead of dropping them.
    pub translate_strict: bool,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ANTHROPIC_VERSION: &str = "2023-06-01";

impl Config {
    /// Reads and validates a config file. Env vars are read from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::from_yaml(&text, &file, &|name| std::env::var(name).ok())
    }

    /// Parses and validates YAML text. `file` names the source in messages; `env` looks up
    /// variables (injectable so tests and the demo need not touch the process environment).
    pub fn from_yaml(
        text: &str,
        file: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let lines = LineIndex::build(text);
        if let Some((key, line)) = &lines.duplicate {
            let name = key.rsplit('.').next().unwrap_or(key);
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                line: *line,
                key: key.clone(),
                message: format!("duplicate key {name:?}; each name may appear only once"),
            });
        }
        let invalid = |key: String, message: String| ConfigError::Invalid {
            file: file.to_string(),
            line: lines.line_of(&key),
            key,
            message,
        };

        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            invalid(
                "listen".into(),
                format!("{listen_text:?} is not an address; write HOST:PORT, e.g. 127.0.0.1:8080"),
            )
        })?;

        if raw.backends.is_empty() {
            return Err(invalid(
                "backends".into(),
                "no backends configured; add at least one under `backends:`".into(),
            ));
        }
        let mut backends = Vec::with_capacity(raw.backends.len());
        let mut by_name = HashMap::new();
        for (name, rb) in &raw.backends {
            let key = format!("backends.{name}");
            if name.trim().is_empty() {
                return Err(invalid(key, "backend name is empty".into()));
            }
            let api = match rb.api {
                RawApi::OpenaiChat => Dialect::OpenAi,
                RawApi::AnthropicMessages => Dialect::Anthropic,
            };
            let base_url = rb.base_url.trim().trim_end_matches('/').to_string();
            let parsed = reqwest::Url::parse(&base_url).map_err(|e| {
                invalid(
                    format!("{key}.base_url"),
                    format!("{base_url:?} is not a URL: {e}"),
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(invalid(
                    format!("{key}.base_url"),
                    format!("scheme must be http or https, not {:?}", parsed.scheme()),
                ));
            }
            if parsed.query().is_some() || !parsed.username().is_empty() {
                return Err(invalid(
                    format!("{key}.base_url"),
                    "must not carry a query string or user info; keys go in api_key_env".into(),
                ));
            }
            let endpoint = reqwest::Url::parse(&format!("{base_url}{}", api.upstream_path()))
                .map_err(|e| invalid(format!("{key}.base_url"), e.to_string()))?;
            let endpoint_uri: http::Uri =
                endpoint
                    .as_str()
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| {
                        invalid(format!("{key}.base_url"), e.to_string())
                    })?;
            let mut credentials = Vec::new();
            let vars: Vec<(String, &String)> = match &rb.api_key_env {
                None => vec![],
                Some(OneOrMany::One(v)) => vec![(format!("{key}.api_key_env"), v)],
                Some(OneOrMany::Many(vs)) => vs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{key}.api_key_env[{i}]"), v))
                    .collect(),
            };
            for (k, var) in vars {
                match env(var) {
                    Some(v) if !v.trim().is_empty() => credentials.push(
                        Credential::new(
                            format!("env:{var}"),
                            CredentialSource::Env(var.clone()),
                            api,
                            Secret::new(v.trim()),
                        )
                        .ok_or_else(|| {
                            invalid(
                                k.clone(),
                                format!("environment variable {var} holds characters an HTTP header cannot carry"),
                            )
                        })?,
                    ),
                    _ => {
                        return Err(invalid(
                            k,
                            format!("environment variable {var} is not set (or empty); export it with the backend's API key"),
                        ))
                    }
                }
            }
            if let Some(path) = &rb.api_key_file {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        format!("{key}.api_key_file"),
                        format!("cannot read {path:?}: {e}"),
                    )
                })?;
                if text.trim().is_empty() {
                    return Err(invalid(
                        format!("{key}.api_key_file"),
                        format!("{path:?} is empty; it must hold the key"),
                    ));
                }
                credentials.push(
                    Credential::new(
                        format!("file:{path}"),
                        CredentialSource::File(path.into()),
                        api,
                        Secret::new(text.trim()),
                    )
                    .ok_or_else(|| {
                        invalid(
                            format!("{key}.api_key_file"),
                            format!("{path:?} holds characters an HTTP header cannot carry"),
                        )
                    })?,
                );
            }
            let id = BackendId(backends.len());
            by_name.insert(name.clone(), id);
            backends.push(Backend {
                id,
                name: name.as_str().into(),
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
            });
        }

        let global = apply_failover(
            &FailoverPolicy::default(),
            &raw.failover,
            "failover",
            &invalid,
        )?;

        if raw.routes.is_empty() {
            return Err(invalid(
                "routes".into(),
                "no routes configured; add at least one under `routes:`".into(),
            ));
        }
        let mut routes = HashMap::new();
        let mut route_names = Vec::new();
        for (name, rr) in &raw.routes {
            let key = format!("routes.{name}");
            if rr.chain.is_empty() {
                return Err(invalid(
                    format!("{key}.chain"),
                    "chain is empty; list at least one { backend, model }".into(),
                ));
            }
            let mut chain = Vec::with_capacity(rr.chain.len());
            for (i, entry) in rr.chain.iter().enumerate() {
                let backend = *by_name.get(&entry.backend).ok_or_else(|| {
                    let known: Vec<&str> = raw.backends.keys().map(String::as_str).collect();
                    invalid(
                        format!("{key}.chain[{i}].backend"),
                        format!(
                            "unknown backend {:?}; configured backends: {}",
                            entry.backend,
                            known.join(", ")
                        ),
                    )
                })?;
                if entry.model.trim().is_empty() {
                    return Err(invalid(
                        format!("{key}.chain[{i}].model"),
                        "model is empty".into(),
                    ));
                }
                let model_json = serde_json::to_vec(&entry.model).expect("a string serializes");
                chain.push(ChainEntry {
                    backend,
                    model: entry.model.as_str().into(),
                    model_json: Bytes::from(model_json),
                });
            }
            let failover =
                apply_failover(&global, &rr.failover, &format!("{key}.failover"), &invalid)?;
            let name: Arc<str> = name.as_str().into();
            route_names.push(name.clone());
            routes.insert(
                name.clone(),
                Arc::new(Route {
                    name,
                    chain,
                    failover,
                }),
            );
        }

        let default_route = match &raw.default_route {
            None => None,
            Some(name) => Some(routes.get(name.as_str()).cloned().ok_or_else(|| {
                invalid(
                    "default_route".into(),
                    format!("{name:?} is not a configured route"),
                )
            })?),
        };

        let defaults = Limits::default();
        let limits = Limits {
            max_body_bytes: raw.limits.max_body_bytes.unwrap_or(defaults.max_body_bytes),
            max_response_body_bytes: raw
                .limits
                .max_response_body_bytes
                .unwrap_or(defaults.max_response_body_bytes),
            max_error_body_bytes: raw
                .limits
                .max_error_body_bytes
                .unwrap_or(defaults.max_error_body_bytes),
            max_sse_event_bytes: raw
                .limits
                .max_sse_event_bytes
                .unwrap_or(defaults.max_sse_event_bytes),
            max_held_bytes: raw.limits.max_held_bytes.unwrap_or(defaults.max_held_bytes),
            header_read_timeout: raw
                .limits
                .header_read_timeout
                .unwrap_or(defaults.header_read_timeout),
            body_read_timeout: raw
                .limits
                .body_read_timeout
                .unwrap_or(defaults.body_read_timeout),
        };
        for (key, value) in [
            ("limits.max_body_bytes", limits.max_body_bytes),
            (
                "limits.max_response_body_bytes",
                limits.max_response_body_bytes,
            ),
            ("limits.max_error_body_bytes", limits.max_error_body_bytes),
            ("limits.max_sse_event_bytes", limits.max_sse_event_bytes),
            ("limits.max_held_bytes", limits.max_held_bytes),
        ] {
            // 1 KiB keeps real error bodies and events readable; 1 GiB keeps one request
            // from taking the machine.
            if !(1024..=1 << 30).contains(&value) {
                return Err(invalid(
                    key.into(),
                    format!("{value} is out of range: from 1024 to 1073741824 bytes"),
                ));
            }
        }

        let mut gateway_keys = Vec::new();
        for (i, var) in raw.auth.keys_env.iter().enumerate() {
            match env(var) {
                Some(v) if !v.trim().is_empty() => gateway_keys.push(Secret::new(v.trim())),
                _ => {
                    return Err(invalid(
                        format!("auth.keys_env[{i}]"),
                        format!("environment variable {var} is not set (or empty)"),
                    ))
                }
            }
        }

        if raw.auth.metrics == MetricsAccess::GatewayKey && gateway_keys.is_empty() {
            return Err(invalid(
                "auth.metrics".into(),
                "gateway_key needs at least one key in auth.keys_env".into(),
            ));
        }

        let health = build_health(&raw.health, &invalid)?;
        let admin = build_admin(&raw.admin, env, &invalid)?;

        let alerts = build_alerts(&raw.alerts, env, &invalid)?;

        Ok(Config {
            translate_strict: raw.translate.strict.unwrap_or(false),
            alerts,
            health,
            admin,
            metrics_access: raw.auth.metrics,
            listen,
            backends,
            routes,
            route_names,
            default_route,
            limits,
            failover: global,
            gateway_keys,
        })
    }

    pub fn backend(&self, id: BackendId) -> &Backend {
        &self.backends[id.0]
    }

    /// Every configured secret, for the scrubber.
    pub fn secrets(&self) -> Vec<Secret> {
        self.backends
            .iter()
            .flat_map(|b| b.credentials.iter().map(Credential::secret))
            .chain(self.gateway_keys.iter().cloned())
            .chain(self.admin.key.iter().cloned())
            .chain(self.alerts.sinks.iter().flat_map(|s| match &s.config {
                SinkConfig::Telegram { bot_token, .. } => bot_token.clone(),
                SinkConfig::Webhook { secret, .. } => secret.clone(),
                SinkConfig::Log => None,
            }))
            .collect()
    }
}

fn build_alerts(
    raw: &RawAlerts,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<AlertsConfig, ConfigError> {
    let mut a = AlertsConfig::default();
    a.throttle = raw.throttle.unwrap_or(a.throttle);
    a.queue = raw.queue.unwrap_or(a.queue).max(1);
    a.per_sink_per_minute = raw
        .per_sink_per_minute
        .unwrap_or(a.per_sink_per_minute)
        .max(1);
    a.session_ttl = raw.session_ttl.unwrap_or(a.session_ttl);
    a.max_sessions = raw.max_sessions.unwrap_or(a.max_sessions).max(1);
    let secret = |var: &str| {
        env(var)
            .filter(|v| !v.trim().is_empty())
            .map(|v| Secret::new(v.trim()))
    };
    for (i, sink) in raw.sinks.iter().enumerate() {
        let key = format!("alerts.sinks[{i}]");
        let (kind, events, config, disabled) = match sink {
            RawSink::Telegram {
                bot_token_env,
                chat_id,
                api_base,
                events,
            } => {
                let chat = chat_id.trim();
                let numeric = chat
                    .strip_prefix('-')
                    .unwrap_or(chat)
                    .chars()
                    .all(|c| c.is_ascii_digit());
                if chat.is_empty() || !(numeric || chat.starts_with('@')) {
                    return Err(invalid(
                        format!("{key}.chat_id"),
                        format!("{chat_id:?} is not a chat id; use a number (\"-1001234567890\") or \"@channel\""),
                    ));
                }
                let base = api_base
                    .as_deref()
                    .unwrap_or("https://api.telegram.org")
                    .trim_end_matches('/');
                if reqwest::Url::parse(base).is_err() {
                    return Err(invalid(
                        format!("{key}.api_base"),
                        format!("{base:?} is not a URL"),
                    ));
                }
                let token = secret(bot_token_env);
                let disabled = token
                    .is_none()
                    .then(|| format!("environment variable {bot_token_env} is not set"));
                (
                    "telegram",
                    events,
                    SinkConfig::Telegram {
                        bot_token: token,
                        token_env: bot_token_env.clone(),
                        chat_id: chat.to_string(),
                        api_base: base.to_string(),
                    },
                    disabled,
                )
            }
            RawSink::Webhook {
                url,
                secret_env,
                events,
            } => {
                let parsed = reqwest::Url::parse(url.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| {
                        invalid(
                            format!("{key}.url"),
                            format!("{url:?} is not an http(s) URL"),
                        )
                    })?;
                let (secret_value, disabled) = match secret_env {
                    None => (None, None),
                    Some(var) => match secret(var) {
                        Some(s) => (Some(s), None),
                        None => (
                            None,
                            Some(format!(
                                "environment variable {var} (secret_env) is not set"
                            )),
                        ),
                    },
                };
                (
                    "webhook",
                    events,
                    SinkConfig::Webhook {
                        url: parsed,
                        secret: secret_value,
                    },
                    disabled,
                )
            }
            RawSink::Log { events } => ("log", events, SinkConfig::Log, None),
        };
        let same_kind = raw.sinks[..i]
            .iter()
            .filter(|s| std::mem::discriminant(*s) == std::mem::discriminant(sink))
            .count();
        let name = if same_kind == 0 {
            kind.to_string()
        } else {
            format!("{kind}#{}", same_kind + 1)
        };
        a.sinks.push(SinkSpec {
            name,
            events: events.clone().unwrap_or_else(|| AlertEvent::ALL.to_vec()),
            config,
            disabled,
        });
    }
    Ok(a)
}

fn build_health(
    raw: &RawHealth,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<HealthConfig, ConfigError> {
    use crate::classify::FailureReason;
    let mut h = HealthConfig::default();
    h.store = raw.store.unwrap_or(h.store);
    if let Some(r) = &raw.redis {
        if let Some(url) = &r.url {
            if !url.starts_with("redis://")
                && !url.starts_with("rediss://")
                && !url.starts_with("unix://")
            {
                return Err(invalid(
                    "health.redis.url".into(),
                    format!("{url:?} is not a redis URL; write redis://HOST:PORT"),
                ));
            }
            h.redis_url = url.clone();
        }
        h.redis_key_prefix = r.key_prefix.clone().unwrap_or(h.redis_key_prefix);
        h.redis_timeout = r.timeout.unwrap_or(h.redis_timeout);
        h.redis_poll_interval = r.poll_interval.unwrap_or(h.redis_poll_interval);
    }
    if let Some(t) = &raw.failure_threshold {
        for (name, n) in t {
            let key = format!("health.failure_threshold.{name}");
            if *n == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
            if name == "default" {
                h.threshold_default = *n;
                continue;
            }
            let reason = FailureReason::ALL
                .into_iter()
                .find(|r| r.as_str() == name)
                .ok_or_else(|| {
                    invalid(
                        key.clone(),
                        format!(
                            "{name:?} is not a failure reason; use default or one of: {}",
                            FailureReason::ALL.map(|r| r.as_str()).join(", ")
                        ),
                    )
                })?;
            h.thresholds.insert(reason, *n);
        }
    }
    if let Some(c) = &raw.cooldown {
        h.cooldown.base = c.base.unwrap_or(h.cooldown.base);
        h.cooldown.max = c.max.unwrap_or(h.cooldown.max);
        h.cooldown.decay_after = c.decay_after.unwrap_or(h.cooldown.decay_after);
        if h.cooldown.base.is_zero() || h.cooldown.max < h.cooldown.base {
            return Err(invalid(
                "health.cooldown".into(),
                "cooldown.base must be > 0 and cooldown.max at least cooldown.base".into(),
            ));
        }
    }
    h.sticky_sessions = raw.sticky_sessions.unwrap_or(h.sticky_sessions);
    h.session_from_body = raw.session_from_body.unwrap_or(h.session_from_body);
    h.turn_ttl = raw.turn_ttl.unwrap_or(h.turn_ttl);
    h.session_ttl = raw.session_ttl.unwrap_or(h.session_ttl);
    h.max_tracked = raw.max_tracked.unwrap_or(h.max_tracked).max(1);
    if let Some(p) = &raw.probe {
        h.probe_interval = p.interval.filter(|d| !d.is_zero());
        if let Some(req) = &p.request {
            if !req.is_object() {
                return Err(invalid(
                    "health.probe.request".into(),
                    "must be a JSON/YAML object (the probe request body)".into(),
                ));
            }
            h.probe_request = Some(req.clone());
        }
    }
    Ok(h)
}

fn apply_failover(
    base: &FailoverPolicy,
    raw: &RawFailover,
    key: &str,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<FailoverPolicy, ConfigError> {
    let mut p = base.clone();
    if let Some(r) = raw.retries {
        if r > 10 {
            return Err(invalid(
                format!("{key}.retries"),
                format!("{r} retries per backend is a retry storm; use at most 10"),
            ));
        }
        p.retries = r;
    }
    if let Some(b) = &raw.backoff {
        p.backoff_base = b.base.unwrap_or(p.backoff_base);
        p.backoff_max = b.max.unwrap_or(p.backoff_max);
    }
    p.max_retry_after = raw.max_retry_after.unwrap_or(p.max_retry_after);
    p.connect_timeout = raw.connect_timeout.unwrap_or(p.connect_timeout);
    p.ttft_timeout = raw.ttft_timeout.unwrap_or(p.ttft_timeout);
    p.stall_timeout = raw.stall_timeout.unwrap_or(p.stall_timeout);
    p.deadline = raw.deadline.unwrap_or(p.deadline);
    if raw.early_headers_after.is_some() {
        p.early_headers_after = raw.early_headers_after.filter(|d| !d.is_zero());
    }
    if let Some(eager) = &raw.eager_on {
        p.eager_on_timeout = eager.contains(&EagerOn::Timeout);
        p.eager_on_connection = eager.contains(&EagerOn::Connection);
    }
    if let Some(b) = &raw.retry_budget {
        if key != "failover" {
            return Err(invalid(
                format!("{key}.retry_budget"),
                "the retry budget is per backend, so it is set once under the top-level `failover:`".into(),
            ));
        }
        if let Some(r) = b.ratio {
            if !(0.0..=10.0).contains(&r) {
                return Err(invalid(
                    format!("{key}.retry_budget.ratio"),
                    "must be between 0 and 10".into(),
                ));
            }
            p.retry_budget_ratio = r;
        }
        p.retry_budget_min_per_sec = b.min_per_sec.unwrap_or(p.retry_budget_min_per_sec);
    }
    for (name, d) in [
        ("connect_timeout", p.connect_timeout),
        ("ttft_timeout", p.ttft_timeout),
        ("stall_timeout", p.stall_timeout),
        ("deadline", p.deadline),
    ] {
        if d.is_zero() {
            return Err(invalid(
                format!("{key}.{name}"),
                "must be greater than 0".into(),
            ));
        }
    }
    if p.backoff_max < p.backoff_base {
        return Err(invalid(
            format!("{key}.backoff.max"),
            format!(
                "backoff.max ({:?}) is below backoff.base ({:?})",
                p.backoff_max, p.backoff_base
            ),
        ));
    }
    Ok(p)
}

/// `auth.metrics`: who may scrape `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MetricsAccess {
    /// Anyone who reaches the listener: what Prometheus expects, and the page holds no secret.
    #[default]
    Public,
    /// One of the `auth.keys_env` keys, as `Authorization: Bearer` (or `x-api-key`).
    GatewayKey,
    /// The admin rules: the admin key when `admin.key_env` is set, else a local caller.
    Admin,
}

/// The validated `admin:` section.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// Required on the admin surface when set.
    pub key: Option<Secret>,
    /// Host values accepted besides loopback ones, lowercased: `name` (any port) or
    /// `name:port`.
    pub allowed_hosts: Vec<String>,
    /// `allowed_hosts: ["*"]`: no Host check at all (only allowed together with a key).
    pub any_host: bool,
    /// Origins as browsers serialize them (`https://ops.example.com`), accepted besides the
    /// gateway's own.
    pub allowed_origins: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
}

/// An IP network (`10.0.0.0/8`, `fd00::/8`) or a single address (`127.0.0.1`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// IPv4-mapped IPv6 addresses count as the IPv4 address they carry, on both sides.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = ();

    fn from_str(text: &str) -> Result<IpNet, ()> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let written = addr.parse::<IpAddr>().map_err(|_| ())?;
        let max = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or(())?,
        };
        let network = written.to_canonical();
        // `::ffff:10.0.0.0/104` is 10.0.0.0/8: the mapped range in IPv4 terms.
        let prefix = match (written, network) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix.checked_sub(96).ok_or(())?,
            _ => prefix,
        };
        Ok(IpNet { network, prefix })
    }
}

fn build_admin(
    raw: &RawAdmin,
    env: &dyn Fn(&str) -> Option<String>,
    invalid: &dyn Fn(String, String) -> ConfigError,
) -> Result<AdminConfig, ConfigError> {
    let key = match &raw.key_env {
        None => None,
        Some(var) => match env(var) {
            Some(v) if !v.trim().is_empty() => Some(Secret::new(v.trim())),
            _ => {
                return Err(invalid(
                    "admin.key_env".into(),
                    format!("environment variable {var} is not set (or empty)"),
                ))
            }
        },
    };
    let mut admin = AdminConfig {
        key,
        ..AdminConfig::default()
    };
    for (i, entry) in raw.allowed_hosts.iter().enumerate() {
        let place = format!("admin.allowed_hosts[{i}]");
        let entry = entry.trim();
        if entry == "*" {
            if admin.key.is_none() {
                return Err(invalid(
                    place,
                    "\"*\" turns off the DNS-rebinding defence and is allowed only with admin.key_env set".into(),
                ));
            }
            admin.any_host = true;
            continue;
        }
        match crate::admin::split_host_port(entry) {
            Some((host, port)) if !entry.contains('*') => admin.allowed_hosts.push(match port {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }),
            _ => {
                return Err(invalid(
                    place,
                    format!("{entry:?} is not a Host value; write a name or address, optionally with a port: gw.example, gw.example:8443, [fd00::1]:8080"),
                ))
            }
        }
    }
    for (i, entry) in raw.allowed_origins.iter().enumerate() {
        match crate::admin::normalize_origin(entry.trim()) {
            Some(origin) => admin.allowed_origins.push(origin),
            None => {
                return Err(invalid(
                    format!("admin.allowed_origins[{i}]"),
                    format!("{entry:?} is not an origin; write scheme://host[:port] with http or https and no path, e.g. https://ops.example.com"),
                ))
            }
        }
    }
    for (i, entry) in raw.trusted_proxies.iter().enumerate() {
        let net = entry.parse::<IpNet>().map_err(|()| {
            invalid(
                format!("admin.trusted_proxies[{i}]"),
                format!("{entry:?} is not an IP address or CIDR; write e.g. 127.0.0.1, 10.0.0.0/8 or ::1"),
            )
        })?;
        admin.trusted_proxies.push(net);
    }
    Ok(admin)
}

/// Maps dotted key paths (`routes.main.chain[1].backend`) to 1-based source lines, so semantic
/// errors found after deserialization can still point at the line to fix.
struct LineIndex {
    lines: HashMap<String, usize>,
    /// The first key that appears twice in one mapping (serde keeps the last one silently).
    duplicate: Option<(String, usize)>,
}

impl LineIndex {
    fn build(text: &str) -> LineIndex {
        use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
        use yaml_rust2::scanner::Marker;

        enum Frame {
            Map {
                path: String,
                key: Option<String>,
                seen: std::collections::HashSet<String>,
            },
            Seq {
                path: String,
                index: usize,
            },
        }
        struct Builder {
            stack: Vec<Frame>,
            lines: HashMap<String, usize>,
            duplicate: Option<(String, usize)>,
        }
        impl Builder {
            /// The path of the value that starts now, and advances the parent frame.
            fn child_path(&mut self, line: usize) -> String {
                match self.stack.last_mut() {
                    Some(Frame::Map { path, key, .. }) => {
                        let k = key.take().unwrap_or_default();
                        join(path, &k)
                    }
                    Some(Frame::Seq { path, index }) => {
                        let p = format!("{path}[{index}]");
                        *index += 1;
                        self.lines.entry(p.clone()).or_insert(line);
                        p
                    }
                    None => String::new(),
                }
            }
        }
        fn join(path: &str, key: &str) -> String {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        }
        impl MarkedEventReceiver for Builder {
            fn on_event(&mut self, ev: Event, mark: Marker) {
                let line = mark.line();
                match ev {
                    Event::Scalar(value, ..) => {
                        if let Some(Frame::Map { path, key, seen }) = self.stack.last_mut() {
                            if key.is_none() {
                                let p = join(path, &value);
                                if !seen.insert(value.clone()) && self.duplicate.is_none() {
                                    self.duplicate = Some((p.clone(), line));
                                }
                                self.lines.entry(p).or_insert(line);
                                *key = Some(value);
                                return;
                            }
                        }
                        self.child_path(line);
                    }
                    Event::MappingStart(..) => {
                        let path = self.child_path(line);
                        self.stack.push(Frame::Map {
                            path,
                            key: None,
                            seen: Default::default(),
                        });
                    }
                    Event::SequenceStart(..) => {
                        let path = self.child_path(line);
                        self.stack.push(Frame::Seq { path, index: 0 });
                    }
                    Event::MappingEnd | Event::SequenceEnd => {
                        self.stack.pop();
                    }
                    Event::Alias(_) => {
                        self.child_path(line);
                    }
                    _ => {}
                }
            }
        }
        let mut builder = Builder {
            stack: Vec::new(),
            lines: HashMap::new(),
            duplicate: None,
        };
        let mut parser = Parser::new_from_str(text);
        // A syntax error here was already reported by serde; keep what was indexed.
        let _ = parser.load(&mut builder, false);
        LineIndex {
            lines: builder.lines,
            duplicate: builder.duplicate,
        }
    }

    /// The line of `key`, or of its nearest indexed ancestor; 1 when nothing matches.
    fn line_of(&self, key: &str) -> usize {
        let mut k = key;
        loop {
            if let Some(l) = self.lines.get(k) {
                return *l;
            }
            match k.rfind(['.', '[']) {
                Some(i) => k = &k[..i],
                None => return 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen: 127.0.0.1:9999
backends:
  claude-local:
    api: anthropic_messages
    base_url: http://127.0.0.1:8082/
    api_key_env: ANTHROPIC_API_KEY
  openrouter:
    api: openai_chat
    base_url: https://openrouter.ai/api/v1
    api_key_env: OPENROUTER_API_KEY
routes:
  main:
    chain:
      - { backend: claude-local, model: claude-opus-4-7 }
      - { backend: openrouter,  model: anthropic/claude-sonnet-4 }
    failover:
      ttft_timeout: 120s
failover:
  retries: 3
  backoff: { base: 100ms, max: 2s }
  eager_on: [connection]
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "ANTHROPIC_API_KEY" => Some("sk-ant-test".into()),
            "OPENROUTER_API_KEY" => Some("sk-or-test".into()),
            _ => None,
        }
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, "test.yaml", &env)
    }

    #[test]
    fn loads_a_valid_config_with_route_overrides() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9999".parse().unwrap());
        let main = &c.routes["main"];
        assert_eq!(main.chain.len(), 2);
        assert_eq!(main.failover.ttft_timeout, Duration::from_secs(120));
        assert_eq!(main.failover.retries, 3);
        assert_eq!(main.failover.backoff_base, Duration::from_millis(100));
        assert!(main.failover.eager_on_connection);
        assert!(!main.failover.eager_on_timeout);
        let b = c.backend(main.chain[0].backend);
        assert_eq!(b.endpoint.as_str(), "http://127.0.0.1:8082/v1/messages");
        let o = c.backend(main.chain[1].backend);
        assert_eq!(
            o.endpoint.as_str(),
            "https://openrouter.ai/api/v1/chat/completions"
        );
        assert_eq!(
            &main.chain[1].model_json[..],
            b"\"anthropic/claude-sonnet-4\""
        );
    }

    #[test]
    fn unknown_key_is_rejected_with_line_and_key() {
        let text = GOOD.replace(
            "base_url: https://openrouter",
            "bse_url: https://openrouter",
        );
        let err = load(&text).unwrap_err().to_string();
        assert!(err.starts_with("test.yaml: "), "{err}");
        assert!(err.contains("unknown field `bse_url`"), "{err}");
        assert!(err.contains("line 10"), "{err}");
    }

    #[test]
    fn missing_env_var_names_file_line_and_key() {
        let text = GOOD.replace("OPENROUTER_API_KEY", "NOPE_KEY");
        let err = load(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "test.yaml:11: backends.openrouter.api_key_env: environment variable NOPE_KEY is not set (or empty); export it with the backend's API key"
        );
    }

    #[test]
    fn a_key_no_http_header_can_carry_is_refused_at_load_with_its_place() {
        let err = Config::from_yaml(GOOD, "test.yaml", &|name| {
            (name == "OPENROUTER_API_KEY")
                .then(|| "sk-or-te\nst".to_string())
                .or_else(|| env(name))
        })
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "test.yaml:11: backends.openrouter.api_key_env: environment variable OPENROUTER_API_KEY holds characters an HTTP header cannot carry"
        );
        assert!(!err.contains("sk-or"));
    }

    #[test]
    fn chain_naming_an_unknown_backend_is_rejected() {
        let text = GOOD.replace("{ backend: openrouter,", "{ backend: openrouterr,");
        let err = load(&text).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "test.yaml:16: routes.main.chain[1].backend: unknown backend \"openrouterr\""
            ),
            "{err}"
        );
    }

    #[test]
    fn duplicate_backend_name_is_rejected_with_line() {
        let text = GOOD.replace("  openrouter:\n", "  claude-local:\n");
        let err = load(&text).unwrap_err().to_string();
        assert_eq!(
            err,
            "test.yaml:8: backends.claude-local: duplicate key \"claude-local\"; each name may appear only once"
        );
    }

    #[test]
    fn bad_duration_and_empty_chain_are_rejected() {
        let err = load(&GOOD.replace("120s", "two minutes"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid duration"), "{err}");
        let text = r#"
backends:
  a: { api: openai_chat, base_url: "http://x" }
routes:
  r: { chain: [] }
"#;
        let err = load(text).unwrap_err().to_string();
        assert_eq!(
            err,
            "test.yaml:5: routes.r.chain: chain is empty; list at least one { backend, model }"
        );
    }

    #[test]
    fn the_example_config_in_the_repository_is_valid() {
        let text = include_str!("../switchyard.example.yaml");
        let c = Config::from_yaml(text, "switchyard.example.yaml", &|_| {
            Some("x-dummy-value".into())
        })
        .unwrap();
        assert_eq!(c.routes["main"].chain.len(), 3);
        assert_eq!(
            c.backends
                .iter()
                .map(|b| b.credentials.len())
                .sum::<usize>(),
            2
        );
        assert!(c.default_route.is_some());
    }

    #[test]
    fn secret_debug_never_shows_the_value() {
        let s = Secret::new("sk-very-secret");
        assert!(!format!("{s:?}").contains("very"));
    }

    fn load_with_admin_key(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(text, "test.yaml", &|name| match name {
            "ADMIN_KEY" => Some("admin-secret".into()),
            _ => env(name),
        })
    }

    #[test]
    fn admin_and_metrics_defaults_keep_the_loopback_rule_and_public_metrics() {
        let c = load(GOOD).unwrap();
        assert!(c.admin.key.is_none());
        assert!(!c.admin.any_host);
        assert!(c.admin.allowed_hosts.is_empty() && c.admin.trusted_proxies.is_empty());
        assert_eq!(c.metrics_access, MetricsAccess::Public);
    }

    #[test]
    fn admin_section_is_normalized_at_load() {
        let text = format!(
            "{GOOD}admin:\n  key_env: ADMIN_KEY\n  allowed_hosts: [GW.Internal., \"ops:9000\", \"[fd00::1]:8080\"]\n  allowed_origins: [\"https://Ops.Example.com/\"]\n  trusted_proxies: [127.0.0.1, 10.0.0.0/8, \"::1\"]\nauth:\n  metrics: admin\n"
        );
        let c = load_with_admin_key(&text).unwrap();
        assert_eq!(c.admin.key.as_ref().unwrap().expose(), "admin-secret");
        assert_eq!(
            c.admin.allowed_hosts,
            ["gw.internal", "ops:9000", "[fd00::1]:8080"]
        );
        assert_eq!(c.admin.allowed_origins, ["https://ops.example.com"]);
        assert_eq!(c.admin.trusted_proxies.len(), 3);
        assert_eq!(c.metrics_access, MetricsAccess::Admin);
        assert!(c.secrets().iter().any(|s| s.expose() == "admin-secret"));
    }

    #[test]
    fn bad_admin_and_metrics_settings_are_refused_with_line_and_key() {
        // (yaml appended to GOOD, with the admin key set?, expected "LINE: key: …" fragment)
        let cases = [
            ("admin:\n  allowed_hosts: [\"*\"]\n", false, ":24: admin.allowed_hosts[0]: \"*\" turns off"),
            ("admin:\n  key_env: ADMIN_KEY\n  allowed_hosts:\n    - ok.example\n    - http://gw.example/\n", true, ":27: admin.allowed_hosts[1]: \"http://gw.example/\" is not a Host"),
            ("admin:\n  allowed_hosts: [\"*.example.com\"]\n", false, ":24: admin.allowed_hosts[0]: \"*.example.com\" is not a Host"),
            ("admin:\n  allowed_origins: [\"https://ops.example.com/admin\"]\n", false, ":24: admin.allowed_origins[0]: \"https://ops.example.com/admin\" is not an origin"),
            ("admin:\n  allowed_origins: [\"null\"]\n", false, ":24: admin.allowed_origins[0]:"),
            ("admin:\n  trusted_proxies: [10.0.0.0/33]\n", false, ":24: admin.trusted_proxies[0]: \"10.0.0.0/33\" is not an IP address or CIDR"),
            ("admin:\n  trusted_proxies: [proxy.internal]\n", false, ":24: admin.trusted_proxies[0]:"),
            ("auth:\n  metrics: gateway_key\n", false, ":24: auth.metrics: gateway_key needs at least one key"),
        ];
        for (extra, with_key, want) in cases {
            let text = format!("{GOOD}{extra}");
            let err = if with_key {
                load_with_admin_key(&text)
            } else {
                load(&text)
            }
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("test.yaml:"), "{err}");
            assert!(err.contains(want), "{extra}\n→ {err}\nwanted {want}");
        }
        let err = load(&format!("{GOOD}auth:\n  metrics: everyone\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `everyone`"), "{err}");
    }

    #[test]
    fn ip_networks_match_their_addresses_with_ipv4_mapped_as_ipv4() {
        for (net, ip, inside) in [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("127.0.0.0/8", "127.255.0.1", true),
            ("10.0.0.1/8", "10.9.9.9", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("::1", "::1", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("127.0.0.1", "::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.0/104", "10.1.2.3", true),
            ("::ffff:10.0.0.0/104", "11.1.2.3", false),
        ] {
            let n: IpNet = net.parse().unwrap();
            assert_eq!(n.contains(ip.parse().unwrap()), inside, "{net} ∋ {ip}");
        }
    }
}
