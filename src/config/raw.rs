//! Stage 1: the YAML as written, in serde structs that reject unknown keys.
//!
//! serde-saphyr parses, rejects duplicate keys and gives every error its line;
//! `serde_path_to_error` adds the dotted key. Values a later check may refuse are wrapped in
//! [`Spanned`] so stage 2 can name their line too. `Spanned` wraps only scalars, sequences and
//! the two top-level maps: each wrapper adds a synthetic `value` step to error paths, and
//! [`key_path`] removes exactly those steps.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_path_to_error::{Path, Segment};
use serde_saphyr::{MessageFormatter, Spanned};

use super::indent;
use super::{AlertEvent, ConfigError, EagerOn, HealthStore, MetricsAccess};

/// Parses the whole file; a syntax, type or unknown-key error names file, line and key.
pub(super) fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    let options = serde_saphyr::options! { with_snippet: false };
    let mut key = String::new();
    serde_saphyr::with_deserializer_from_str_with_options(text, options, |yaml| {
        serde_path_to_error::deserialize(yaml).map_err(|e| {
            key = key_path(e.path());
            e.into_inner()
        })
    })
    .map_err(|e| yaml_error(text, file, key, e.without_snippet()))
}

fn yaml_error(text: &str, file: &str, key: String, error: &serde_saphyr::Error) -> ConfigError {
    let file = file.to_string();
    // An error without a known place is reported at the top of the file.
    let line = error.location().map_or(1, |l| l.line().max(1) as usize);
    if let serde_saphyr::Error::DuplicateMappingKey {
        key: Some(name), ..
    } = error
    {
        return ConfigError::Invalid {
            file,
            line,
            key: join(&key, name),
            message: format!("duplicate key {name:?}; each name may appear only once"),
        };
    }
    // The message may quote the file; control characters must not reach a terminal.
    let message = serde_saphyr::DefaultMessageFormatter
        .format_message(error)
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect::<String>();
    let message = match indent::hint(text, line, &message) {
        Some(hint) => format!("{}; {hint}", indent::tidy(&message)),
        None => indent::tidy(&message),
    };
    if key.is_empty() {
        ConfigError::Syntax {
            file,
            line,
            message,
        }
    } else {
        ConfigError::Invalid {
            file,
            line,
            key,
            message,
        }
    }
}

/// The top-level maps whose `Spanned` wrapper puts a synthetic `value` right after their name.
const SPANNED_MAPS: [&str; 2] = ["backends", "routes"];

/// `routes.main.chain[1].model` from serde's path, without the steps `Spanned` adds: a `value`
/// that ends the path, touches a sequence index, or follows a [`SPANNED_MAPS`] name.
fn key_path(path: &Path) -> String {
    let segments: Vec<&Segment> = path.iter().collect();
    let is_index = |i: usize| matches!(segments.get(i), Some(Segment::Seq { .. }));
    let is_spanned_map = |i: usize| match segments.get(i) {
        Some(Segment::Map { key }) => SPANNED_MAPS.contains(&key.as_str()),
        _ => false,
    };
    let mut out = String::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Map { key } if key == "value" => {
                let synthetic = i + 1 == segments.len()
                    || is_index(i + 1)
                    || (i > 0 && is_index(i - 1))
                    || (i == 1 && is_spanned_map(0));
                if !synthetic {
                    out = join(&out, key);
                }
            }
            Segment::Map { key } => out = join(&out, key),
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            // The key of a duplicate is added from the error itself.
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The 1-based line a value was written on (for an alias, where it is used).
pub(super) fn line<T>(value: &Spanned<T>) -> usize {
    value.referenced.line() as usize
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<Spanned<String>>,
    pub backends: Option<Spanned<BTreeMap<String, RawBackend>>>,
    pub routes: Option<Spanned<BTreeMap<String, RawRoute>>>,
    pub default_route: Option<Spanned<String>>,
    #[serde(default)]
    pub failover: RawFailover,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub alerts: RawAlerts,
    #[serde(default)]
    pub translate: RawTranslate,
    pub upstream: Option<RawUpstream>,
    #[serde(default)]
    pub shutdown: RawShutdown,
    pub telemetry: Option<RawTelemetry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShutdown {
    pub delay: Option<Spanned<YamlDuration>>,
    pub grace: Option<Spanned<YamlDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    /// The OTLP/HTTP base URL (`/v1/traces` is appended).
    pub otlp_endpoint: Option<Spanned<String>>,
    pub service_name: Option<Spanned<String>>,
    pub sample_ratio: Option<Spanned<f64>>,
    pub max_queued_spans: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    /// An `http://` proxy URL, or `env` for the proxy environment variables.
    pub proxy: Option<Spanned<String>>,
    pub no_proxy: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTranslate {
    /// Reject (400) what cannot be translated instead of dropping it.
    pub strict: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub throttle: Option<YamlDuration>,
    pub queue: Option<usize>,
    /// Per sink, alerts per minute at most (storm protection).
    pub per_sink_per_minute: Option<u32>,
    pub session_ttl: Option<YamlDuration>,
    pub max_sessions: Option<usize>,
    /// A header naming the client product; default: the User-Agent's product token.
    pub platform_header: Option<String>,
    /// Spanned as a whole: serde buffers tagged enums, which loses the places inside.
    #[serde(default)]
    pub sinks: Vec<Spanned<RawSink>>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawSink {
    Telegram {
        bot_token_env: String,
        chat_id: Option<String>,
        /// The chat id read from an environment variable (like the token).
        chat_id_env: Option<String>,
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub store: Option<HealthStore>,
    pub redis: Option<RawRedis>,
    pub failure_threshold: Option<BTreeMap<String, Spanned<u32>>>,
    pub cooldown: Option<RawCooldown>,
    pub sticky_sessions: Option<bool>,
    pub session_from_body: Option<bool>,
    /// Where a session id comes from, in order (see `SessionSource`).
    pub session_from: Option<Vec<Spanned<String>>>,
    pub turn_ttl: Option<YamlDuration>,
    pub session_ttl: Option<YamlDuration>,
    pub max_tracked: Option<usize>,
    pub probe: Option<RawProbe>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub interval: Option<YamlDuration>,
    /// The probe's JSON body (model is filled in); default: a one-token "ping".
    #[serde(default, deserialize_with = "json_object")]
    pub request: Option<serde_json::Value>,
}

/// The probe body must be an object; checked here, where the error still has its line.
fn json_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        Some(v) if !v.is_object() => Err(de::Error::custom(
            "must be a JSON/YAML object (the probe request body)",
        )),
        v => Ok(v),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    pub url: Option<Spanned<String>>,
    pub key_prefix: Option<String>,
    pub timeout: Option<YamlDuration>,
    pub poll_interval: Option<YamlDuration>,
    pub probe_lease: Option<YamlDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCooldown {
    pub base: Option<Spanned<YamlDuration>>,
    pub max: Option<Spanned<YamlDuration>>,
    pub decay_after: Option<YamlDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub key_env: Option<Spanned<String>>,
    /// Host header values accepted on the admin surface besides loopback ones.
    #[serde(default)]
    pub allowed_hosts: Vec<Spanned<String>>,
    /// Browser origins accepted besides the gateway's own.
    #[serde(default)]
    pub allowed_origins: Vec<Spanned<String>>,
    /// Proxies whose X-Forwarded-For / X-Real-IP are believed (IPs or CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    /// A preset (`openai`, `gemini`, `azure_openai`, …) that fills in what is not written.
    pub provider: Option<Spanned<String>>,
    /// Required unless a preset gives it.
    pub api: Option<RawApi>,
    /// Required unless a preset gives it (Azure's resource URL always is).
    pub base_url: Option<Spanned<String>>,
    /// One env var name, or a list of them: a credential pool.
    pub api_key_env: Option<KeyEnv>,
    /// A file holding the key (re-read on 401, for tokens another process rotates).
    pub api_key_file: Option<Spanned<String>>,
    /// A command that prints the key (re-run on 401 and on its refresh interval).
    pub api_key_command: Option<Spanned<RawKeyCommand>>,
    /// Sent as `anthropic-version` when the client sent none (anthropic_messages only).
    pub anthropic_version: Option<String>,
    /// `max_tokens` for translated requests that carry none (Anthropic requires it).
    pub default_max_tokens: Option<u32>,
    /// Which header carries the key: `bearer`, `x-api-key`, `api-key` or `none`.
    pub auth: Option<Spanned<String>>,
    /// Static headers sent on every request to this backend (never from the client).
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Fixed query parameters on every request URL (Azure's `api-version`).
    #[serde(default)]
    pub query: BTreeMap<String, Spanned<String>>,
    /// Azure OpenAI: the deployment requests go to.
    pub deployment: Option<Spanned<String>>,
}

/// `api_key_command`: the argv, or `{ argv, refresh_every, timeout }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawKeyCommand {
    Argv(Vec<String>),
    Full(RawKeyCommandFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyCommandFull {
    pub argv: Vec<String>,
    pub refresh_every: Option<YamlDuration>,
    pub timeout: Option<YamlDuration>,
}

/// `api_key_env`: one variable name, or a list (a credential pool), each with its line.
#[derive(Debug)]
pub(super) enum KeyEnv {
    One(Spanned<String>),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for KeyEnv {
    // A visitor rather than `#[serde(untagged)]`: untagged buffers the value and loses the
    // line of each name.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        enum Names {
            One(String),
            Many(Vec<Spanned<String>>),
        }
        struct NamesVisitor;
        impl<'de> Visitor<'de> for NamesVisitor {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an environment variable name or a list of them")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Names, E> {
                Ok(Names::One(name.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element()? {
                    names.push(name);
                }
                Ok(Names::Many(names))
            }
        }
        impl<'de> Deserialize<'de> for Names {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(NamesVisitor)
            }
        }
        let names = Spanned::<Names>::deserialize(d)?;
        Ok(match names.value {
            Names::One(name) => KeyEnv::One(Spanned::new(name, names.referenced, names.defined)),
            Names::Many(list) => KeyEnv::Many(list),
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawApi {
    OpenaiChat,
    AnthropicMessages,
    OpenaiResponses,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub chain: Spanned<Vec<RawChainEntry>>,
    #[serde(default)]
    pub failover: RawFailover,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChainEntry {
    pub backend: Spanned<String>,
    pub model: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailover {
    pub retries: Option<Spanned<u32>>,
    pub backoff: Option<RawBackoff>,
    pub max_retry_after: Option<YamlDuration>,
    pub connect_timeout: Option<Spanned<YamlDuration>>,
    pub ttft_timeout: Option<Spanned<RawTimeout>>,
    pub stall_timeout: Option<Spanned<RawTimeout>>,
    pub deadline: Option<Spanned<YamlDuration>>,
    pub early_headers_after: Option<YamlDuration>,
    pub eager_on: Option<Vec<EagerOn>>,
    pub retry_budget: Option<RawRetryBudget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackoff {
    pub base: Option<Spanned<YamlDuration>>,
    pub max: Option<Spanned<YamlDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetryBudget {
    pub ratio: Option<Spanned<f32>>,
    pub min_per_sec: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_body_bytes: Option<Spanned<usize>>,
    pub max_response_body_bytes: Option<Spanned<usize>>,
    pub max_error_body_bytes: Option<Spanned<usize>>,
    pub max_sse_event_bytes: Option<Spanned<usize>>,
    pub max_held_bytes: Option<Spanned<usize>>,
    pub header_read_timeout: Option<YamlDuration>,
    pub body_read_timeout: Option<YamlDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    #[serde(default)]
    pub keys_env: Vec<Spanned<String>>,
    pub metrics: Option<Spanned<MetricsAccess>>,
    /// Serve a non-loopback address without gateway keys (see `access::open_relay`).
    pub allow_open_relay: Option<Spanned<bool>>,
}

/// A duration as a humantime string (`250ms`, `8s`, `5m`) or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct YamlDuration(pub Duration);

/// No setting needs more than a year; the cap keeps every `now + setting` far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// A duration as written: humantime text or a number of seconds.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WrittenDuration {
    Text(String),
    Secs(f64),
}

impl WrittenDuration {
    fn parse(self) -> Result<Duration, String> {
        let d = match self {
            WrittenDuration::Secs(s)
                if s.is_finite() && (0.0..=MAX_DURATION.as_secs_f64()).contains(&s) =>
            {
                Duration::from_secs_f64(s)
            }
            WrittenDuration::Secs(s) => {
                return Err(format!(
                    "invalid duration {s}: must be a number of seconds from 0 to {}",
                    MAX_DURATION.as_secs()
                ))
            }
            WrittenDuration::Text(t) => humantime::parse_duration(t.trim())
                .map_err(|e| format!("invalid duration {t:?}: {e} (write e.g. 250ms, 8s, 5m)"))?,
        };
        if d > MAX_DURATION {
            return Err(format!(
                "duration {} is too long: at most 365 days",
                humantime::format_duration(d)
            ));
        }
        Ok(d)
    }
}

impl<'de> Deserialize<'de> for YamlDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        WrittenDuration::deserialize(d)?
            .parse()
            .map(YamlDuration)
            .map_err(de::Error::custom)
    }
}

/// `ttft_timeout` / `stall_timeout`: a duration, or one that grows with the prompt:
/// `{ base: 20s, per_100k_tokens: 40s, max: 180s }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RawTimeout {
    pub base: Duration,
    pub per_100k_tokens: Duration,
    pub max: Option<Duration>,
}

impl<'de> Deserialize<'de> for RawTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Fixed(WrittenDuration),
            Scaled(std::collections::BTreeMap<String, WrittenDuration>),
        }
        let fixed = |base| RawTimeout {
            base,
            per_100k_tokens: Duration::ZERO,
            max: None,
        };
        match Written::deserialize(d)? {
            Written::Fixed(w) => w.parse().map(fixed).map_err(de::Error::custom),
            Written::Scaled(map) => {
                let mut t = fixed(Duration::ZERO);
                let mut base = None;
                for (key, value) in map {
                    let v = value
                        .parse()
                        .map_err(|e| de::Error::custom(format!("{key}: {e}")))?;
                    match key.as_str() {
                        "base" => base = Some(v),
                        "per_100k_tokens" => t.per_100k_tokens = v,
                        "max" => t.max = Some(v),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key {other:?}: a scaled timeout has base, per_100k_tokens and max"
                            )))
                        }
                    }
                }
                t.base = base.ok_or_else(|| {
                    de::Error::custom("a scaled timeout needs `base` (e.g. { base: 20s, per_100k_tokens: 40s, max: 180s })")
                })?;
                Ok(t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humantime_text_or_seconds_up_to_a_year() {
        #[derive(Debug, Deserialize)]
        struct Doc {
            d: Option<Spanned<YamlDuration>>,
        }
        let ms = Duration::from_millis;
        // (written, parsed or the start of the refusal)
        let cases: [(&str, Result<Option<Duration>, &str>); 8] = [
            ("250ms", Ok(Some(ms(250)))),
            ("5m", Ok(Some(ms(300_000)))),
            ("8", Ok(Some(ms(8_000)))),
            ("1.5", Ok(Some(ms(1_500)))),
            ("~", Ok(None)),
            (
                "-1",
                Err("invalid duration -1: must be a number of seconds"),
            ),
            ("two minutes", Err("invalid duration \"two minutes\"")),
            (
                "400days",
                Err("duration 1year 1month 4days 7h 26m 24s is too long"),
            ),
        ];
        for (written, want) in cases {
            let got = serde_saphyr::from_str::<Doc>(&format!("d: {written}"))
                .map(|doc| doc.d.map(|d| d.value.0))
                .map_err(|e| {
                    serde_saphyr::DefaultMessageFormatter
                        .format_message(&e)
                        .into_owned()
                });
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{written}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{written}: {got}"),
                (got, want) => panic!("{written}: got {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn error_paths_lose_only_the_steps_spanned_adds() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Doc {
            backends: Option<Spanned<BTreeMap<String, Inner>>>,
            list: Option<Spanned<Vec<Spanned<u32>>>>,
            plain: Option<BTreeMap<String, Inner>>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            n: Option<Spanned<u32>>,
        }
        // (yaml, key named by the error)
        let cases = [
            ("backends: { a: { n: x } }", "backends.a.n"),
            ("backends: { value: { n: x } }", "backends.value.n"),
            ("backends: { a: { m: 1 } }", "backends.a.m"),
            ("list: [1, x]", "list[1]"),
            ("plain: { value: { n: x } }", "plain.value.n"),
            ("plain: { a: { n: [1] } }", "plain.a.n"),
        ];
        for (yaml, want) in cases {
            let mut key = String::new();
            let result: Result<Doc, _> = serde_saphyr::with_deserializer_from_str(yaml, |d| {
                serde_path_to_error::deserialize(d).map_err(|e| {
                    key = key_path(e.path());
                    e.into_inner()
                })
            });
            assert!(result.is_err(), "{yaml} was accepted");
            assert_eq!(key, want, "{yaml}");
        }
    }
}
