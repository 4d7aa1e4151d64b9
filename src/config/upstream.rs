//! `upstream:` how the gateway reaches its backends: directly, or through an HTTP proxy the
//! operator names (corporate egress).
//!
//! Proxy environment variables are ignored unless the config says `proxy: env`: a gateway's
//! path to its providers carries every API key it holds, so it must not change because a
//! variable meant for something else (a package manager's proxy in a container image, a
//! developer's shell) happens to be set.

use serde_saphyr::Spanned;

use super::raw::{line, RawUpstream};
use super::{ConfigError, Secret, Source};

/// Where upstream connections go.
#[derive(Debug, Clone, Default)]
pub enum UpstreamProxy {
    /// Straight to each backend (the default).
    #[default]
    Direct,
    /// Through an HTTP proxy (CONNECT tunnels; TLS stays end to end with the backend).
    Via(ProxyRules),
}

/// Which proxy each scheme uses, and the hosts that bypass it (`NO_PROXY` syntax: names,
/// `.suffix`, IPs, CIDRs, `*`).
#[derive(Debug, Clone)]
pub struct ProxyRules {
    pub http: Option<String>,
    pub https: Option<String>,
    pub no_proxy: String,
    /// The proxies' passwords (from their URLs' userinfo), for the scrubber.
    pub passwords: Vec<Secret>,
}

pub(super) fn build(raw: Option<&RawUpstream>, src: &Source) -> Result<UpstreamProxy, ConfigError> {
    let Some(raw) = raw else {
        return Ok(UpstreamProxy::Direct);
    };
    let Some(proxy) = &raw.proxy else {
        if let Some(n) = &raw.no_proxy {
            return Err(src.invalid(
                line(n),
                "upstream.no_proxy",
                "no_proxy without a proxy; set upstream.proxy",
            ));
        }
        return Ok(UpstreamProxy::Direct);
    };
    let no_proxy = raw.no_proxy.as_ref().map(|n| n.value.join(","));
    if proxy.value.trim() == "env" {
        return Ok(from_env(src, no_proxy));
    }
    let url = checked_url(proxy, "upstream.proxy", src)?;
    let passwords = password(&url).into_iter().collect();
    Ok(UpstreamProxy::Via(ProxyRules {
        http: Some(url.clone()),
        https: Some(url),
        no_proxy: no_proxy.unwrap_or_default(),
        passwords,
    }))
}

/// `proxy: env`: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, upper or lower case
/// (lower case first, as curl reads them). Unset, the gateway connects directly.
fn from_env(src: &Source, no_proxy: Option<String>) -> UpstreamProxy {
    let var = |name: &str| {
        src.var(&name.to_ascii_lowercase())
            .or_else(|| src.var(name))
            .map(|s| s.expose().to_owned())
    };
    let all = var("ALL_PROXY");
    let http = var("HTTP_PROXY").or_else(|| all.clone());
    let https = var("HTTPS_PROXY").or(all);
    if http.is_none() && https.is_none() {
        tracing::warn!("upstream.proxy is env but no proxy variable is set: connecting directly");
        return UpstreamProxy::Direct;
    }
    let passwords = [&http, &https]
        .into_iter()
        .flatten()
        .filter_map(|u| password(u))
        .collect();
    UpstreamProxy::Via(ProxyRules {
        http,
        https,
        no_proxy: no_proxy.or_else(|| var("NO_PROXY")).unwrap_or_default(),
        passwords,
    })
}

fn checked_url(v: &Spanned<String>, key: &str, src: &Source) -> Result<String, ConfigError> {
    let url = url::Url::parse(v.value.trim())
        .map_err(|e| src.invalid(line(v), key, format!("not a URL: {e}")))?;
    if url.scheme() != "http" {
        return Err(src.invalid(
            line(v),
            key,
            "the proxy must be an http:// URL (TLS to the backend goes through its CONNECT tunnel)",
        ));
    }
    if url.host_str().is_none() {
        return Err(src.invalid(line(v), key, "the proxy URL has no host"));
    }
    Ok(v.value.trim().to_owned())
}

fn password(url: &str) -> Option<Secret> {
    let url = url::Url::parse(url).ok()?;
    url.password().filter(|p| !p.is_empty()).map(Secret::new)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    const BASE: &str = "backends:\n  a: { api: openai_chat, base_url: \"http://127.0.0.1:9/v1\" }\nroutes:\n  r: { chain: [ { backend: a, model: m } ] }\n";

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_yaml(&format!("{BASE}{extra}"), "t.yaml", &move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn proxies_are_explicit_and_environment_variables_count_only_when_asked() {
        let env = [
            ("HTTPS_PROXY", "http://env-proxy:3128"),
            ("no_proxy", ".internal"),
        ];
        let direct = |c: Config| matches!(c.upstream_proxy, UpstreamProxy::Direct);
        assert!(direct(load("", &env).unwrap()), "ignored by default");
        let c = load("upstream: { proxy: \"http://user:pw@proxy.corp:3128\", no_proxy: [localhost, 10.0.0.0/8] }\n", &env).unwrap();
        let UpstreamProxy::Via(rules) = &c.upstream_proxy else {
            panic!("{:?}", c.upstream_proxy)
        };
        assert_eq!(
            rules.https.as_deref(),
            Some("http://user:pw@proxy.corp:3128")
        );
        assert_eq!(rules.no_proxy, "localhost,10.0.0.0/8");
        assert!(
            c.secrets().iter().any(|s| s.expose() == "pw"),
            "the proxy password is scrubbed"
        );
        let c = load("upstream: { proxy: env }\n", &env).unwrap();
        let UpstreamProxy::Via(rules) = &c.upstream_proxy else {
            panic!()
        };
        assert_eq!(
            (rules.http.as_deref(), rules.https.as_deref()),
            (None, Some("http://env-proxy:3128"))
        );
        assert_eq!(rules.no_proxy, ".internal");
        assert!(direct(load("upstream: { proxy: env }\n", &[]).unwrap()));
        // (config, message)
        for (extra, want) in [
            (
                "upstream: { proxy: \"https://proxy:443\" }\n",
                "t.yaml:5: upstream.proxy: the proxy must be an http:// URL",
            ),
            (
                "upstream: { proxy: \"proxy.corp:3128\" }\n",
                "t.yaml:5: upstream.proxy: the proxy must be an http:// URL",
            ),
            (
                "upstream: { proxy: \"http://\" }\n",
                "t.yaml:5: upstream.proxy: not a URL",
            ),
            (
                "upstream: { no_proxy: [x] }\n",
                "t.yaml:5: upstream.no_proxy: no_proxy without a proxy",
            ),
        ] {
            let e = load(extra, &[]).unwrap_err().to_string();
            assert!(e.starts_with(want), "{extra}: {e}");
        }
    }
}
