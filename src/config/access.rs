//! `auth:` and `admin:` → who may use the gateway, the admin surface and `/metrics`.
//!
//! Host and origin parsing lives here because both the config (at load) and the admin guard
//! (per request) need it, and config must not import the modules that read it.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::Deserialize;
use url::Url;

use super::raw::{line, RawAdmin, RawAuth};
use super::secret::Secret;
use super::{ConfigError, Source};

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

/// `host[:port]` of a Host header or an `allowed_hosts` entry: the host lowercased without a
/// trailing dot (IPv6 kept in brackets), the port if any. `None` when malformed.
pub(crate) fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (&authority[..inside.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let valid = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
    valid.then_some((host, port))
}

/// An origin as browsers serialize it (`https://ops.example.com`, default port dropped), or
/// `None` for anything else (`null`, paths, other schemes).
pub(crate) fn normalize_origin(text: &str) -> Option<String> {
    let url = Url::parse(text).ok()?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none();
    bare.then(|| url.origin().ascii_serialization())
}

/// Why serving on `listen` would make the gateway an open relay, or `None` when it would not.
///
/// Without gateway keys anyone who reaches the listener spends the operator's provider keys,
/// so a listener other machines can reach needs keys, or the operator's explicit word
/// (`auth.allow_open_relay: true`: a firewall or an authenticating proxy in front). Loopback
/// (127.0.0.0/8, ::1, and ::ffff:127.x) reaches only this machine and stays allowed.
pub fn open_relay(listen: SocketAddr, has_keys: bool, allowed: bool) -> Option<String> {
    if has_keys || allowed || listen.ip().to_canonical().is_loopback() {
        return None;
    }
    Some(format!(
        "{listen} is reachable from other machines and auth.keys_env is empty: anyone who can \
         connect could spend your providers' keys (an open relay), so the gateway will not \
         start. Set auth.keys_env (clients then send one of those keys), listen on 127.0.0.1, \
         or, if a firewall or an authenticating proxy already decides who can connect, set \
         auth.allow_open_relay: true"
    ))
}

/// The gateway keys (`auth.keys_env`) and who may scrape `/metrics` (`auth.metrics`).
pub(super) fn build_auth(
    raw: &RawAuth,
    src: &Source,
) -> Result<(Vec<Secret>, MetricsAccess), ConfigError> {
    let mut gateway_keys = Vec::with_capacity(raw.keys_env.len());
    for (i, var) in raw.keys_env.iter().enumerate() {
        let place = format!("auth.keys_env[{i}]");
        gateway_keys.push(src.require_var(line(var), &place, &var.value, ""));
    }
    let metrics = raw
        .metrics
        .as_ref()
        .map_or(MetricsAccess::default(), |m| m.value);
    if let Some(m) = &raw.metrics {
        if m.value == MetricsAccess::GatewayKey && gateway_keys.is_empty() {
            return Err(src.invalid(
                line(m),
                "auth.metrics",
                "gateway_key needs at least one key in auth.keys_env",
            ));
        }
    }
    if let Some(allow) = &raw.allow_open_relay {
        if allow.value && !gateway_keys.is_empty() {
            return Err(src.invalid(
                line(allow),
                "auth.allow_open_relay",
                "the gateway has keys (auth.keys_env), so it is no open relay; remove this line",
            ));
        }
    }
    Ok((gateway_keys, metrics))
}

pub(super) fn build_admin(raw: &RawAdmin, src: &Source) -> Result<AdminConfig, ConfigError> {
    let key = raw
        .key_env
        .as_ref()
        .map(|var| src.require_var(line(var), "admin.key_env", &var.value, ""));
    let mut admin = AdminConfig {
        key,
        ..AdminConfig::default()
    };
    for (i, written) in raw.allowed_hosts.iter().enumerate() {
        let (at, place) = (line(written), format!("admin.allowed_hosts[{i}]"));
        let entry = written.value.trim();
        if entry == "*" {
            if admin.key.is_none() {
                return Err(src.invalid(
                    at,
                    place,
                    "\"*\" turns off the DNS-rebinding defence and is allowed only with admin.key_env set",
                ));
            }
            admin.any_host = true;
            continue;
        }
        match split_host_port(entry) {
            Some((host, port)) if !entry.contains('*') => admin.allowed_hosts.push(match port {
                Some(p) => format!("{host}:{p}"),
                None => host,
            }),
            _ => {
                return Err(src.invalid(
                    at,
                    place,
                    format!("{entry:?} is not a Host value; write a name or address, optionally with a port: gw.example, gw.example:8443, [fd00::1]:8080"),
                ))
            }
        }
    }
    for (i, written) in raw.allowed_origins.iter().enumerate() {
        let entry = &written.value;
        let origin = normalize_origin(entry.trim()).ok_or_else(|| {
            src.invalid(
                line(written),
                format!("admin.allowed_origins[{i}]"),
                format!("{entry:?} is not an origin; write scheme://host[:port] with http or https and no path, e.g. https://ops.example.com"),
            )
        })?;
        admin.allowed_origins.push(origin);
    }
    for (i, written) in raw.trusted_proxies.iter().enumerate() {
        let entry = &written.value;
        let net = entry.parse::<IpNet>().map_err(|()| {
            src.invalid(
                line(written),
                format!("admin.trusted_proxies[{i}]"),
                format!("{entry:?} is not an IP address or CIDR; write e.g. 127.0.0.1, 10.0.0.0/8 or ::1"),
            )
        })?;
        admin.trusted_proxies.push(net);
    }
    Ok(admin)
}

#[cfg(test)]
mod tests {
    use super::*;

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
