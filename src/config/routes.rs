//! `routes:`, `default_route:` and `failover:` → [`Route`]s with their [`FailoverPolicy`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::backends::{Backend, BackendId};
use super::raw::{line, RawFailover, RawRoute, RawTimeout, YamlDuration};
use super::{ConfigError, Source};

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
    pub ttft_timeout: ScaledTimeout,
    pub stall_timeout: ScaledTimeout,
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
            ttft_timeout: ScaledTimeout::fixed(Duration::from_secs(30)),
            stall_timeout: ScaledTimeout::fixed(Duration::from_secs(30)),
            deadline: Duration::from_secs(300),
            early_headers_after: None,
            eager_on_timeout: true,
            eager_on_connection: true,
            retry_budget_ratio: 0.2,
            retry_budget_min_per_sec: 10,
        }
    }
}

/// A timeout that may grow with the prompt: `base + per_100k_tokens × tokens / 100 000`, at
/// most `max`. Large contexts start slowly (prefill), so one fixed first-token timeout would
/// force a choice between slow failover for small prompts and false failovers for large ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaledTimeout {
    pub base: Duration,
    /// Zero: a fixed timeout.
    pub per_100k_tokens: Duration,
    pub max: Option<Duration>,
}

impl ScaledTimeout {
    pub const fn fixed(d: Duration) -> ScaledTimeout {
        ScaledTimeout {
            base: d,
            per_100k_tokens: Duration::ZERO,
            max: None,
        }
    }

    /// The timeout for a request of about `tokens` prompt tokens.
    pub fn for_tokens(&self, tokens: u64) -> Duration {
        if self.per_100k_tokens.is_zero() {
            return self.base;
        }
        // Bounded well below overflow: tokens come from a size-capped body, and a year caps all.
        let extra = self.per_100k_tokens.as_secs_f64() * (tokens as f64 / 100_000.0);
        let extra = Duration::try_from_secs_f64(extra).unwrap_or(Duration::MAX);
        let year = Duration::from_secs(365 * 86_400);
        self.base
            .saturating_add(extra)
            .min(self.max.unwrap_or(year))
            .min(year)
    }
}

impl From<RawTimeout> for ScaledTimeout {
    fn from(t: RawTimeout) -> Self {
        ScaledTimeout {
            base: t.base,
            per_100k_tokens: t.per_100k_tokens,
            max: t.max,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EagerOn {
    Timeout,
    Connection,
}

/// The routes, by name and in name order (for `/v1/models`).
pub(super) struct Routes {
    pub by_name: HashMap<Arc<str>, Arc<Route>>,
    pub names: Vec<Arc<str>>,
}

pub(super) fn build(
    raw: Option<&Spanned<BTreeMap<String, RawRoute>>>,
    backends: &[Backend],
    global: &FailoverPolicy,
    src: &Source,
) -> Result<Routes, ConfigError> {
    let raw = match raw {
        Some(map) if !map.value.is_empty() => map,
        _ => {
            return Err(src.invalid(
                raw.map_or(1, line),
                "routes",
                "no routes configured; add at least one under `routes:`",
            ))
        }
    };
    let mut routes = Routes {
        by_name: HashMap::with_capacity(raw.value.len()),
        names: Vec::with_capacity(raw.value.len()),
    };
    for (name, rr) in &raw.value {
        let key = format!("routes.{name}");
        let chain = build_chain(&key, rr, backends, src)?;
        // A route without a `failover:` of its own is pointed at by its chain's line.
        let failover = apply_failover(
            global,
            &rr.failover,
            &format!("{key}.failover"),
            line(&rr.chain),
            src,
        )?;
        let name: Arc<str> = name.as_str().into();
        routes.names.push(name.clone());
        routes.by_name.insert(
            name.clone(),
            Arc::new(Route {
                name,
                chain,
                failover,
            }),
        );
    }
    Ok(routes)
}

fn build_chain(
    key: &str,
    rr: &RawRoute,
    backends: &[Backend],
    src: &Source,
) -> Result<Vec<ChainEntry>, ConfigError> {
    if rr.chain.value.is_empty() {
        return Err(src.invalid(
            line(&rr.chain),
            format!("{key}.chain"),
            "chain is empty; list at least one { backend, model }",
        ));
    }
    let mut chain: Vec<ChainEntry> = Vec::with_capacity(rr.chain.value.len());
    for (i, entry) in rr.chain.value.iter().enumerate() {
        let wanted = &entry.backend.value;
        let backend = backends
            .iter()
            .find(|b| &*b.name == wanted.as_str())
            .ok_or_else(|| {
                let known: Vec<&str> = backends.iter().map(|b| &*b.name).collect();
                src.invalid(
                    line(&entry.backend),
                    format!("{key}.chain[{i}].backend"),
                    format!(
                        "unknown backend {wanted:?}; configured backends: {}",
                        known.join(", ")
                    ),
                )
            })?;
        let model = &entry.model.value;
        if model.trim().is_empty() {
            return Err(src.invalid(
                line(&entry.model),
                format!("{key}.chain[{i}].model"),
                "model is empty",
            ));
        }
        chain.push(ChainEntry {
            backend: backend.id,
            model: model.as_str().into(),
            model_json: Bytes::from(serde_json::to_vec(model).expect("a string serializes")),
        });
    }
    Ok(chain)
}

/// `base` with the settings written under `key` applied. `fallback_line` names the block
/// when the offending setting was inherited rather than written.
pub(super) fn apply_failover(
    base: &FailoverPolicy,
    raw: &RawFailover,
    key: &str,
    fallback_line: usize,
    src: &Source,
) -> Result<FailoverPolicy, ConfigError> {
    let secs = |d: &Option<Spanned<YamlDuration>>| d.as_ref().map(|d| d.value.0);
    let mut p = base.clone();
    if let Some(r) = &raw.retries {
        if r.value > 10 {
            return Err(src.invalid(
                line(r),
                format!("{key}.retries"),
                format!(
                    "{} retries per backend is a retry storm; use at most 10",
                    r.value
                ),
            ));
        }
        p.retries = r.value;
    }
    if let Some(b) = &raw.backoff {
        p.backoff_base = secs(&b.base).unwrap_or(p.backoff_base);
        p.backoff_max = secs(&b.max).unwrap_or(p.backoff_max);
    }
    p.max_retry_after = raw.max_retry_after.map_or(p.max_retry_after, |d| d.0);
    p.connect_timeout = secs(&raw.connect_timeout).unwrap_or(p.connect_timeout);
    let scaled = |t: &Option<Spanned<RawTimeout>>| t.as_ref().map(|t| ScaledTimeout::from(t.value));
    p.ttft_timeout = scaled(&raw.ttft_timeout).unwrap_or(p.ttft_timeout);
    p.stall_timeout = scaled(&raw.stall_timeout).unwrap_or(p.stall_timeout);
    p.deadline = secs(&raw.deadline).unwrap_or(p.deadline);
    if let Some(d) = raw.early_headers_after {
        p.early_headers_after = Some(d.0).filter(|d| !d.is_zero());
    }
    if let Some(eager) = &raw.eager_on {
        p.eager_on_timeout = eager.contains(&EagerOn::Timeout);
        p.eager_on_connection = eager.contains(&EagerOn::Connection);
    }
    if let Some(b) = &raw.retry_budget {
        let written = b
            .ratio
            .as_ref()
            .map(line)
            .or(b.min_per_sec.as_ref().map(line));
        if key != "failover" {
            return Err(src.invalid(
                written.unwrap_or(fallback_line),
                format!("{key}.retry_budget"),
                "the retry budget is per backend, so it is set once under the top-level `failover:`",
            ));
        }
        if let Some(r) = &b.ratio {
            if !(0.0..=10.0).contains(&r.value) {
                return Err(src.invalid(
                    line(r),
                    format!("{key}.retry_budget.ratio"),
                    "must be between 0 and 10",
                ));
            }
            p.retry_budget_ratio = r.value;
        }
        p.retry_budget_min_per_sec = b
            .min_per_sec
            .as_ref()
            .map_or(p.retry_budget_min_per_sec, |m| m.value);
    }
    for (name, written) in [
        ("connect_timeout", &raw.connect_timeout),
        ("deadline", &raw.deadline),
    ] {
        // Only a written value can be zero: the defaults and the top level are checked.
        if let Some(d) = written.as_ref().filter(|d| d.value.0.is_zero()) {
            return Err(src.invalid(line(d), format!("{key}.{name}"), "must be greater than 0"));
        }
    }
    for (name, written) in [
        ("ttft_timeout", &raw.ttft_timeout),
        ("stall_timeout", &raw.stall_timeout),
    ] {
        let Some(t) = written else { continue };
        if t.value.base.is_zero() {
            return Err(src.invalid(line(t), format!("{key}.{name}"), "must be greater than 0"));
        }
        if t.value.max.is_some_and(|m| m < t.value.base) {
            return Err(src.invalid(line(t), format!("{key}.{name}.max"), "max is below base"));
        }
    }
    if p.backoff_max < p.backoff_base {
        let backoff = raw.backoff.as_ref();
        let written = backoff
            .and_then(|b| b.max.as_ref().or(b.base.as_ref()))
            .map_or(fallback_line, line);
        return Err(src.invalid(
            written,
            format!("{key}.backoff.max"),
            format!(
                "backoff.max ({:?}) is below backoff.base ({:?})",
                p.backoff_max, p.backoff_base
            ),
        ));
    }
    Ok(p)
}

/// `default_route:`, which must name a configured route.
pub(super) fn default_route(
    raw: Option<&Spanned<String>>,
    routes: &Routes,
    src: &Source,
) -> Result<Option<Arc<Route>>, ConfigError> {
    let Some(name) = raw else {
        return Ok(None);
    };
    let route = routes.by_name.get(name.value.as_str()).ok_or_else(|| {
        src.invalid(
            line(name),
            "default_route",
            format!("{:?} is not a configured route", name.value),
        )
    })?;
    Ok(Some(route.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_timeout_grows_with_the_prompt_up_to_its_max() {
        let s = Duration::from_secs;
        let t = ScaledTimeout {
            base: s(20),
            per_100k_tokens: s(40),
            max: Some(s(180)),
        };
        // (estimated tokens, timeout)
        let cases = [
            (0, s(20)),
            (50_000, s(40)),
            (100_000, s(60)),
            (250_000, s(120)),
            (400_000, s(180)),
            (u64::MAX, s(180)),
        ];
        for (tokens, want) in cases {
            assert_eq!(t.for_tokens(tokens), want, "{tokens} tokens");
        }
        let fixed = ScaledTimeout::fixed(s(30));
        assert_eq!(
            fixed.for_tokens(10_000_000),
            s(30),
            "a fixed timeout stays fixed"
        );
        let uncapped = ScaledTimeout { max: None, ..t };
        assert_eq!(
            uncapped.for_tokens(u64::MAX),
            s(365 * 86_400),
            "a year caps every timeout"
        );
    }
}
