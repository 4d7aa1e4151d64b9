//! `health:` → [`HealthConfig`]: when a backend is ejected, for how long, where the state is
//! shared, and how sessions stick.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use super::raw::{line, RawHealth};
use super::{ConfigError, Secret, Source};
use crate::failure::FailureReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HealthStore {
    #[default]
    Memory,
    Redis,
}

/// The cooldown settings of the health registry. Defined here, with the settings it is read
/// from, so that config needs nothing from `health`.
#[derive(Debug, Clone, PartialEq)]
pub struct CooldownPolicy {
    pub base: Duration,
    pub max: Duration,
    pub decay_after: Duration,
}

impl Default for CooldownPolicy {
    fn default() -> Self {
        CooldownPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
            decay_after: Duration::from_secs(600),
        }
    }
}

impl CooldownPolicy {
    /// base × 2^(n−1), capped at max.
    pub fn cooldown_for(&self, ejection: u32) -> Duration {
        let factor = 1u32 << ejection.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// One place a session id may come from (`health.session_from`), tried in the configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSource {
    /// `x-switchyard-session` (and `x-switchyard-turn`).
    Switchyard,
    /// Claude Code: `X-Claude-Code-Session-Id`, else the session inside `metadata.user_id`.
    ClaudeCode,
    /// Codex CLI: `x-codex-turn-metadata` (session and turn ids), `session_id`, `thread-id`,
    /// `conversation_id` headers.
    Codex,
    /// Any request header, named in the config (`header:NAME`).
    Header(http::HeaderName),
    /// OpenAI `prompt_cache_key` (opt-in: an app may key its cache by user or by prompt).
    PromptCacheKey,
    /// OpenAI `user` (opt-in: names a person, not a conversation).
    User,
    /// OpenAI `safety_identifier` (opt-in: names a person).
    SafetyIdentifier,
    /// Anthropic `metadata.user_id` taken whole (opt-in: names a person).
    MetadataUserId,
    /// For agents that send no id at all (Hermes on a custom endpoint): a fingerprint of the
    /// client's credential, the system prompt and the first user message.
    Conversation,
}

impl SessionSource {
    /// The default: sources that exist only to identify a session.
    pub const DEFAULT: [SessionSource; 4] = [
        SessionSource::Switchyard,
        SessionSource::ClaudeCode,
        SessionSource::Codex,
        SessionSource::Conversation,
    ];

    pub fn parse(name: &str) -> Option<SessionSource> {
        Some(match name {
            "switchyard" => SessionSource::Switchyard,
            "claude_code" => SessionSource::ClaudeCode,
            "codex" => SessionSource::Codex,
            "prompt_cache_key" => SessionSource::PromptCacheKey,
            "user" => SessionSource::User,
            "safety_identifier" => SessionSource::SafetyIdentifier,
            "metadata.user_id" => SessionSource::MetadataUserId,
            "conversation" => SessionSource::Conversation,
            _ => {
                let header = name.strip_prefix("header:")?.trim();
                SessionSource::Header(http::HeaderName::from_bytes(header.as_bytes()).ok()?)
            }
        })
    }

    /// The prefix of session ids taken from this source, so that equal values from different
    /// sources never share a session.
    pub fn label(&self) -> &str {
        match self {
            SessionSource::Switchyard => "switchyard",
            SessionSource::ClaudeCode => "claude_code",
            SessionSource::Codex => "codex",
            SessionSource::Header(name) => name.as_str(),
            SessionSource::PromptCacheKey => "prompt_cache_key",
            SessionSource::User => "user",
            SessionSource::SafetyIdentifier => "safety_identifier",
            SessionSource::MetadataUserId => "metadata.user_id",
            SessionSource::Conversation => "conversation",
        }
    }
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub store: HealthStore,
    /// May carry a password (`redis://user:pass@host`, `rediss://…`): a secret, never printed.
    pub redis_url: Secret,
    pub redis_key_prefix: String,
    pub redis_timeout: Duration,
    pub redis_poll_interval: Duration,
    /// How long the replica that won a scope's half-open probe may probe it alone; also how
    /// long a replica waits for a verdict before it may probe itself.
    pub redis_probe_lease: Duration,
    pub threshold_default: u32,
    /// Per-reason overrides of the consecutive-failure threshold.
    pub thresholds: HashMap<FailureReason, u32>,
    pub cooldown: CooldownPolicy,
    pub sticky_sessions: bool,
    /// Where session ids come from, in order.
    pub session_from: Vec<SessionSource>,
    pub turn_ttl: Duration,
    pub session_ttl: Duration,
    pub max_tracked: usize,
    /// Active probes every interval; None: live traffic probes only.
    pub probe_interval: Option<Duration>,
    pub probe_request: Option<serde_json::Value>,
}

impl HealthConfig {
    /// The same settings (the Redis URL compared by value; thresholds as a map, whatever
    /// their order): what a reload with a shared store may not change.
    pub fn same_as(&self, other: &HealthConfig) -> bool {
        self.store == other.store
            && self.redis_url.expose() == other.redis_url.expose()
            && self.redis_key_prefix == other.redis_key_prefix
            && self.redis_timeout == other.redis_timeout
            && self.redis_poll_interval == other.redis_poll_interval
            && self.redis_probe_lease == other.redis_probe_lease
            && self.threshold_default == other.threshold_default
            && self.thresholds == other.thresholds
            && self.cooldown == other.cooldown
            && self.sticky_sessions == other.sticky_sessions
            && self.session_from == other.session_from
            && self.turn_ttl == other.turn_ttl
            && self.session_ttl == other.session_ttl
            && self.max_tracked == other.max_tracked
            && self.probe_interval == other.probe_interval
            && self.probe_request == other.probe_request
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            store: HealthStore::Memory,
            redis_url: Secret::new("redis://127.0.0.1:6379"),
            redis_key_prefix: "switchyard".into(),
            redis_timeout: Duration::from_millis(250),
            redis_poll_interval: Duration::from_millis(500),
            redis_probe_lease: Duration::from_secs(10),
            threshold_default: 3,
            thresholds: HashMap::from([
                (FailureReason::Connection, 1),
                (FailureReason::Timeout, 1),
            ]),
            cooldown: CooldownPolicy::default(),
            sticky_sessions: false,
            session_from: SessionSource::DEFAULT.to_vec(),
            turn_ttl: Duration::from_secs(1800),
            session_ttl: Duration::from_secs(3600),
            max_tracked: 10_000,
            probe_interval: None,
            probe_request: None,
        }
    }
}

/// `scheme://user:pass@host…` → `scheme://***@host…`, for messages about a URL.
pub fn without_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

impl HealthConfig {
    /// The password of the redis URL as written and decoded, if any (for the log scrubber).
    pub fn redis_passwords(&self) -> Vec<String> {
        let Some(written) = url::Url::parse(self.redis_url.expose())
            .ok()
            .and_then(|u| u.password().map(str::to_string))
        else {
            return Vec::new();
        };
        let bytes = written.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    decoded.push(b);
                    i += 3;
                }
                (b, _) => {
                    decoded.push(b);
                    i += 1;
                }
            }
        }
        let decoded = String::from_utf8_lossy(&decoded).into_owned();
        let mut out = vec![written];
        if decoded != out[0] {
            out.push(decoded);
        }
        out
    }

    pub fn threshold(&self, reason: FailureReason) -> u32 {
        self.thresholds
            .get(&reason)
            .copied()
            .unwrap_or(self.threshold_default)
    }
}

pub(super) fn build(raw: &RawHealth, src: &Source) -> Result<HealthConfig, ConfigError> {
    let mut h = HealthConfig::default();
    h.store = raw.store.unwrap_or(h.store);
    if let Some(r) = &raw.redis {
        if let Some(url) = &r.url {
            let scheme_ok = ["redis://", "rediss://", "unix://"]
                .iter()
                .any(|scheme| url.value.starts_with(scheme));
            // Parsed here (no connection) so a bad URL fails at startup; the message never
            // repeats the URL's user info (a password).
            let parsed = if scheme_ok {
                redis::Client::open(url.value.as_str()).map(|_| ())
            } else {
                Ok(())
            };
            if !scheme_ok || parsed.is_err() {
                let why = parsed.err().map_or(String::new(), |e| format!(" ({e})"));
                return Err(src.invalid(
                    line(url),
                    "health.redis.url",
                    format!(
                        "{:?} is not a redis URL{why}; write redis://HOST:PORT, \
                         rediss://HOST:PORT (TLS) or redis://USER:PASSWORD@HOST:PORT",
                        without_userinfo(&url.value)
                    ),
                ));
            }
            h.redis_url = Secret::new(url.value.as_str());
        }
        h.redis_key_prefix = r.key_prefix.clone().unwrap_or(h.redis_key_prefix);
        h.redis_timeout = r.timeout.map_or(h.redis_timeout, |d| d.0);
        h.redis_poll_interval = r.poll_interval.map_or(h.redis_poll_interval, |d| d.0);
        h.redis_probe_lease = r.probe_lease.map_or(h.redis_probe_lease, |d| d.0);
        if h.redis_poll_interval.is_zero() || h.redis_probe_lease.is_zero() {
            return Err(src.invalid(
                1,
                "health.redis",
                "poll_interval and probe_lease must be > 0",
            ));
        }
    }
    for (name, n) in raw.failure_threshold.iter().flatten() {
        let key = format!("health.failure_threshold.{name}");
        if n.value == 0 {
            return Err(src.invalid(line(n), key, "must be at least 1"));
        }
        if name == "default" {
            h.threshold_default = n.value;
            continue;
        }
        let reason = FailureReason::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| {
                src.invalid(
                    line(n),
                    &key,
                    format!(
                        "{name:?} is not a failure reason; use default or one of: {}",
                        FailureReason::ALL.map(|r| r.as_str()).join(", ")
                    ),
                )
            })?;
        h.thresholds.insert(reason, n.value);
    }
    if let Some(c) = &raw.cooldown {
        let cooldown = &mut h.cooldown;
        cooldown.base = c.base.as_ref().map_or(cooldown.base, |d| d.value.0);
        cooldown.max = c.max.as_ref().map_or(cooldown.max, |d| d.value.0);
        cooldown.decay_after = c.decay_after.map_or(cooldown.decay_after, |d| d.0);
        // Only written values can clash (the defaults do not): point at the one to fix.
        let culprit = if cooldown.base.is_zero() {
            c.base.as_ref()
        } else {
            c.max.as_ref().or(c.base.as_ref())
        };
        if cooldown.base.is_zero() || cooldown.max < cooldown.base {
            return Err(src.invalid(
                culprit.map_or(1, line),
                "health.cooldown",
                "cooldown.base must be > 0 and cooldown.max at least cooldown.base",
            ));
        }
    }
    h.sticky_sessions = raw.sticky_sessions.unwrap_or(h.sticky_sessions);
    if let Some(list) = &raw.session_from {
        h.session_from = Vec::new();
        for name in list {
            let source = SessionSource::parse(name.value.trim()).ok_or_else(|| {
                src.invalid(
                    line(name),
                    "health.session_from",
                    format!(
                        "{:?} is not a session source; use switchyard, claude_code, codex, conversation, prompt_cache_key, user, safety_identifier, metadata.user_id or header:NAME",
                        name.value
                    ),
                )
            })?;
            if !h.session_from.contains(&source) {
                h.session_from.push(source);
            }
        }
    }
    // The older switch: `user` / `metadata.user_id` after whatever else is configured.
    if raw.session_from_body == Some(true) {
        for source in [SessionSource::User, SessionSource::MetadataUserId] {
            if !h.session_from.contains(&source) {
                h.session_from.push(source);
            }
        }
    }
    h.turn_ttl = raw.turn_ttl.map_or(h.turn_ttl, |d| d.0);
    h.session_ttl = raw.session_ttl.map_or(h.session_ttl, |d| d.0);
    h.max_tracked = raw.max_tracked.unwrap_or(h.max_tracked).max(1);
    if let Some(p) = &raw.probe {
        h.probe_interval = p.interval.map(|d| d.0).filter(|d| !d.is_zero());
        h.probe_request = p.request.clone();
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(redis: &str) -> Result<Config, String> {
        let yaml = format!(
            "backends:\n  a: {{ api: openai_chat, base_url: \"http://a/v1\" }}\nroutes:\n  r: {{ chain: [ {{ backend: a, model: m }} ] }}\nhealth: {{ store: redis, redis: {redis} }}\n"
        );
        Config::from_yaml(&yaml, "t.yaml", &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn tls_and_password_urls_parse_and_the_password_is_a_secret() {
        let c = load(
            "{ url: \"rediss://switchyard:p%40ss-w0rd@redis.internal:6380/2\", probe_lease: 3s }",
        )
        .unwrap();
        assert_eq!(
            c.health.redis_probe_lease,
            std::time::Duration::from_secs(3)
        );
        let secrets: Vec<String> = c.secrets().iter().map(|s| s.expose().to_string()).collect();
        assert!(secrets.contains(&"p%40ss-w0rd".to_string()), "{secrets:?}");
        assert!(secrets.contains(&"p@ss-w0rd".to_string()), "{secrets:?}");
        assert!(!format!("{:?}", c.health).contains("w0rd"));
        // A password alone (the default user), and plain URLs.
        load("{ url: \"redis://:only-pass@127.0.0.1:6379\" }").unwrap();
        load("{ url: \"redis://127.0.0.1:6379\" }").unwrap();
    }

    #[test]
    fn a_bad_redis_url_is_refused_without_echoing_its_password() {
        for url in [
            "http://user:hunter2-secret@host:6379",
            "redis://user:hunter2-secret@",
        ] {
            let e = load(&format!("{{ url: \"{url}\" }}")).unwrap_err();
            assert!(e.contains("health.redis.url"), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert_eq!(
            super::without_userinfo("rediss://u:p@h:1/0"),
            "rediss://***@h:1/0"
        );
    }
}
