//! `alerts:` → [`AlertsConfig`]: which events are announced, to which sinks, how often.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::raw::{line, RawAlerts, RawSink};
use super::secret::Secret;
use super::{ConfigError, Source};

/// What an alert announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    FallbackActivated,
    BackendDown,
    BackendRecovered,
    FallbackExhausted,
    /// A config reload was refused (the running config keeps serving).
    ConfigRejected,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 5] = [
        AlertEvent::FallbackActivated,
        AlertEvent::BackendDown,
        AlertEvent::BackendRecovered,
        AlertEvent::FallbackExhausted,
        AlertEvent::ConfigRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::FallbackActivated => "fallback_activated",
            AlertEvent::BackendDown => "backend_down",
            AlertEvent::BackendRecovered => "backend_recovered",
            AlertEvent::FallbackExhausted => "fallback_exhausted",
            AlertEvent::ConfigRejected => "config_rejected",
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
        url: Url,
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
    /// The header naming the client product in alerts; None: the User-Agent's product token.
    pub platform_header: Option<http::HeaderName>,
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
            platform_header: None,
            sinks: Vec::new(),
        }
    }
}

pub(super) fn build(raw: &RawAlerts, src: &Source) -> Result<AlertsConfig, ConfigError> {
    let mut a = AlertsConfig::default();
    a.throttle = raw.throttle.map_or(a.throttle, |d| d.0);
    a.queue = raw.queue.unwrap_or(a.queue).max(1);
    a.per_sink_per_minute = raw
        .per_sink_per_minute
        .unwrap_or(a.per_sink_per_minute)
        .max(1);
    a.session_ttl = raw.session_ttl.map_or(a.session_ttl, |d| d.0);
    a.max_sessions = raw.max_sessions.unwrap_or(a.max_sessions).max(1);
    if let Some(name) = &raw.platform_header {
        a.platform_header = Some(
            http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                src.invalid(
                    1,
                    "alerts.platform_header",
                    format!("{name:?} is not a header name"),
                )
            })?,
        );
    }
    for (i, written) in raw.sinks.iter().enumerate() {
        let sink = &written.value;
        let key = format!("alerts.sinks[{i}]");
        // serde buffers a tagged enum, so the sink's own line is the closest one known.
        let invalid = |field: &str, message: String| {
            src.invalid(line(written), format!("{key}.{field}"), message)
        };
        let (kind, events, config, disabled) = match sink {
            RawSink::Telegram {
                bot_token_env,
                chat_id,
                chat_id_env,
                api_base,
                events,
            } => {
                let from_env = chat_id_env
                    .as_ref()
                    .map(|name| (name, src.var(name).map(|v| v.expose().trim().to_string())));
                let chat_id = match (chat_id, &from_env) {
                    (Some(c), None) => c.clone(),
                    (None, Some((_, Some(c)))) => c.clone(),
                    (None, Some((name, None))) => {
                        src.missing_var(line(written), &format!("{key}.chat_id_env"), name, "");
                        // A stand-in chat id, so the checks below still run.
                        "0".to_string()
                    }
                    _ => {
                        return Err(invalid(
                            "chat_id",
                            "set exactly one of chat_id and chat_id_env".to_string(),
                        ))
                    }
                };
                let chat = chat_id.trim();
                let numeric = chat
                    .strip_prefix('-')
                    .unwrap_or(chat)
                    .chars()
                    .all(|c| c.is_ascii_digit());
                if chat.is_empty() || !(numeric || chat.starts_with('@')) {
                    // A value read from the environment is not echoed: the variable may be
                    // the wrong one and hold a secret.
                    let (field, what) = match &from_env {
                        Some((name, _)) => ("chat_id_env", format!("the value of {name}")),
                        None => ("chat_id", format!("{chat_id:?}")),
                    };
                    return Err(invalid(
                        field,
                        format!("{what} is not a chat id; use a number (\"-1001234567890\") or \"@channel\""),
                    ));
                }
                let base = api_base
                    .as_deref()
                    .unwrap_or("https://api.telegram.org")
                    .trim_end_matches('/');
                if Url::parse(base).is_err() {
                    return Err(invalid("api_base", format!("{base:?} is not a URL")));
                }
                let token = src.var(bot_token_env);
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
                let parsed = Url::parse(url.trim())
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| invalid("url", format!("{url:?} is not an http(s) URL")))?;
                let (secret, disabled) = match secret_env {
                    None => (None, None),
                    Some(var) => match src.var(var) {
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
                        secret,
                    },
                    disabled,
                )
            }
            RawSink::Log { events } => ("log", events, SinkConfig::Log, None),
        };
        let same_kind = raw.sinks[..i]
            .iter()
            .filter(|s| std::mem::discriminant(&s.value) == std::mem::discriminant(sink))
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
