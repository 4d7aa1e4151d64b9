//! `telemetry:` → [`TelemetryConfig`]: whether spans are exported over OTLP, where, and how
//! many. Off unless the section names an endpoint or the standard `OTEL_EXPORTER_OTLP_*`
//! variables do: an operator who set those for a fleet gets traces without touching the file.

use super::raw::{line, RawTelemetry};
use super::{ConfigError, Source};

/// The batch queue's default size: the OpenTelemetry SDK's own default.
pub const DEFAULT_MAX_QUEUED_SPANS: usize = 2048;
/// A queue this long holds minutes of spans at any sane rate; more is only memory.
const MAX_QUEUED_SPANS: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The full OTLP/HTTP traces URL (`…/v1/traces`); `None`: no exporter at all.
    pub traces_endpoint: Option<String>,
    /// `service.name` on every span.
    pub service_name: String,
    /// The share of new traces kept (0–1); a client's sampled flag is followed as it is.
    pub sample_ratio: f64,
    /// Spans waiting for export; beyond it new spans are dropped (and counted).
    pub max_queued_spans: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            traces_endpoint: None,
            service_name: "switchyard".into(),
            sample_ratio: 1.0,
            max_queued_spans: DEFAULT_MAX_QUEUED_SPANS,
        }
    }
}

pub(super) fn build(
    raw: Option<&RawTelemetry>,
    src: &Source,
) -> Result<TelemetryConfig, ConfigError> {
    let empty = RawTelemetry::default();
    let raw = raw.unwrap_or(&empty);
    let d = TelemetryConfig::default();
    let traces_endpoint = endpoint(raw, src)?;
    let service_name = match &raw.service_name {
        Some(s) => {
            let name = s.value.trim();
            if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
                return Err(src.invalid(
                    line(s),
                    "telemetry.service_name",
                    "write a name of 1 to 200 printable characters",
                ));
            }
            name.to_string()
        }
        None => src
            .var("OTEL_SERVICE_NAME")
            .map(|v| {
                v.expose()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect()
            })
            .unwrap_or(d.service_name),
    };
    let sample_ratio = match &raw.sample_ratio {
        Some(r) if (0.0..=1.0).contains(&r.value) => r.value,
        Some(r) => {
            return Err(src.invalid(
                line(r),
                "telemetry.sample_ratio",
                format!(
                    "{} is out of range: from 0 (none) to 1 (every trace)",
                    r.value
                ),
            ))
        }
        None => d.sample_ratio,
    };
    let max_queued_spans = match &raw.max_queued_spans {
        Some(n) if (1..=MAX_QUEUED_SPANS as u64).contains(&n.value) => n.value as usize,
        Some(n) => {
            return Err(src.invalid(
                line(n),
                "telemetry.max_queued_spans",
                format!("{} is out of range: from 1 to {MAX_QUEUED_SPANS}", n.value),
            ))
        }
        None => d.max_queued_spans,
    };
    Ok(TelemetryConfig {
        traces_endpoint,
        service_name,
        sample_ratio,
        max_queued_spans,
    })
}

/// The traces URL: `telemetry.otlp_endpoint` (a base URL, like `OTEL_EXPORTER_OTLP_ENDPOINT`),
/// else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
/// `/v1/traces`. `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn the variables off.
fn endpoint(raw: &RawTelemetry, src: &Source) -> Result<Option<String>, ConfigError> {
    if let Some(e) = &raw.otlp_endpoint {
        let base = checked_url(&e.value)
            .map_err(|why| src.invalid(line(e), "telemetry.otlp_endpoint", why))?;
        return Ok(Some(traces_url(&base)));
    }
    let var = |name: &str| src.var(name).map(|v| v.expose().to_string());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    if disabled {
        return Ok(None);
    }
    // A variable is the environment's, not this file's: one that is not a usable URL leaves
    // traces off with a warning instead of refusing the config (as the OTLP exporter does). Its
    // value is not repeated: nothing says what else an environment holds.
    let usable = |name: &str| {
        let text = var(name)?;
        match checked_url(&text) {
            Ok(url) => Some(url),
            Err(_) => {
                tracing::warn!(
                    "environment variable {name} is not an http(s) URL without credentials; traces stay off"
                );
                None
            }
        }
    };
    if let Some(url) = usable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(Some(url));
    }
    Ok(usable("OTEL_EXPORTER_OTLP_ENDPOINT").map(|base| traces_url(&base)))
}

/// An `http(s)://` URL with a host, without credentials (headers carry those:
/// `OTEL_EXPORTER_OTLP_HEADERS`).
fn checked_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let url = url::Url::parse(text).map_err(|e| {
        format!(
            "{:?} is not a URL ({e})",
            crate::scrub::truncate_chars(text, 100)
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("write an http:// or https:// URL, e.g. http://127.0.0.1:4318".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials do not belong in the URL; set OTEL_EXPORTER_OTLP_HEADERS".into());
    }
    Ok(text.to_string())
}

/// The signal path appended to a base endpoint, as the OTLP exporter spec says.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "backends:\n  a: { api: openai_chat, base_url: \"http://127.0.0.1:1\" }\nroutes:\n  r: { chain: [{ backend: a, model: m }] }\n";

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<super::TelemetryConfig, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_yaml(&format!("{BASE}{extra}"), "t.yaml", &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .map(|c| c.telemetry)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn off_without_the_section_or_the_variables() {
        let t = load("", &[]).unwrap();
        assert_eq!(t, super::TelemetryConfig::default());
        assert_eq!(t.traces_endpoint, None);
    }

    #[test]
    fn the_standard_variables_turn_it_on_with_the_spec_s_endpoint_rules() {
        let t = load(
            "",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                ("OTEL_SERVICE_NAME", "edge"),
            ],
        )
        .unwrap();
        assert_eq!(
            t.traces_endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(t.service_name, "edge");
        // The per-signal variable is used as it is, and wins over the base one.
        let t = load(
            "",
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "https://traces.example/otlp",
                ),
            ],
        )
        .unwrap();
        assert_eq!(
            t.traces_endpoint.as_deref(),
            Some("https://traces.example/otlp")
        );
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let t = load("", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]).unwrap();
            assert_eq!(t.traces_endpoint, None, "{off:?}");
        }
    }

    #[test]
    fn the_section_wins_over_the_variables() {
        let t = load(
            "telemetry:\n  otlp_endpoint: http://127.0.0.1:4318\n  service_name: gw\n  sample_ratio: 0.25\n  max_queued_spans: 100\n",
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"), ("OTEL_SERVICE_NAME", "x")],
        )
        .unwrap();
        assert_eq!(
            t.traces_endpoint.as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(t.service_name, "gw");
        assert_eq!(t.sample_ratio, 0.25);
        assert_eq!(t.max_queued_spans, 100);
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let cases = [
            (
                "telemetry:\n  otlp_endpoint: collector:4318\n",
                "t.yaml:6: telemetry.otlp_endpoint: write an http:// or https:// URL",
            ),
            (
                "telemetry:\n  otlp_endpoint: http://u:p@c:4318\n",
                "t.yaml:6: telemetry.otlp_endpoint: credentials do not belong in the URL",
            ),
            (
                "telemetry:\n  sample_ratio: 1.5\n",
                "t.yaml:6: telemetry.sample_ratio: 1.5 is out of range",
            ),
            (
                "telemetry:\n  max_queued_spans: 0\n",
                "t.yaml:6: telemetry.max_queued_spans: 0 is out of range",
            ),
            (
                "telemetry:\n  service_name: \"\"\n",
                "t.yaml:6: telemetry.service_name: write a name",
            ),
            (
                "telemetry:\n  endpoint: http://c\n",
                "t.yaml:6: telemetry.endpoint: unknown field",
            ),
        ];
        for (yaml, needle) in cases {
            let err = load(yaml, &[]).unwrap_err();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
        // A variable that is no URL leaves traces off rather than refusing the file.
        for bad in ["not a url", "http://user:secret@c:4318"] {
            let t = load("", &[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]).unwrap();
            assert_eq!(t.traces_endpoint, None, "{bad}");
        }
    }
}
