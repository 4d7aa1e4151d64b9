//! The admin API: backend health for operators (`GET /admin/backends`, `POST
//! /admin/backends/{name}/reset`) and the `switchyard status` table built from it; and the one
//! guard for every admin surface (these, the status page, its feed, `/metrics` when
//! `auth.metrics: admin`).
//!
//! The guard is [`admin_access`], a pure function of the request's facts and `admin:` config:
//! 1. A browser must not be able to act for a page from another origin (CSRF): a POST with a
//!    form content type, an `Origin` that is neither the gateway's own nor listed in
//!    `admin.allowed_origins`, or `Sec-Fetch-Site: cross-site`/`same-site`, are refused, on
//!    GETs too (the feed and the JSON need no cross-origin reader).
//! 2. The Host must be a loopback one (`localhost`, `127.0.0.0/8`, `[::1]`, any port) or listed
//!    in `admin.allowed_hosts`, so a DNS-rebound name (`evil.example` → 127.0.0.1) cannot read
//!    anything. The check stays on with a key; `allowed_hosts: ["*"]` turns it off then.
//! 3. With `admin.key_env`, the key is required (Bearer, `x-api-key`, or `?key=` on GET for
//!    EventSource). Without it, the caller must be local: a loopback peer (IPv4-mapped IPv6
//!    included) that did not come through a proxy. A request with `Forwarded`,
//!    `X-Forwarded-For` or `X-Real-IP` is not local unless it comes from one of
//!    `admin.trusted_proxies` and the rightmost untrusted X-Forwarded-For address is loopback.
//!    A same-host proxy that adds none of those headers is indistinguishable from a local
//!    client: behind a proxy, set `admin.key_env`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::app::Gateway;
use crate::config::{normalize_origin, split_host_port, AdminConfig};

/// The peer address of the connection, inserted by the server's accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/admin/backends", get(backends))
        .route("/admin/backends/{name}/reset", post(reset))
        .route("/admin/reload", post(reload))
}

/// `POST /admin/reload`: re-reads the config file; 200 with what is now served, or 400 with
/// why the new config was refused (the running one keeps serving).
async fn reload(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Response {
    if let Some(r) = refusal(&gw, &method, &uri, &headers, peer.map(|p| p.0)) {
        return r;
    }
    let unavailable = |why: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"message": why, "type": "reload_unavailable"}})),
        )
            .into_response()
    };
    let Some(requests) = &gw.reload else {
        return unavailable("this gateway cannot reload (it was not started by `switchyard serve` with a config file)");
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if requests.send(reply).await.is_err() {
        return unavailable("the gateway is shutting down");
    }
    match answer.await {
        Ok(Ok(summary)) => Json(json!({"reloaded": true, "summary": summary})).into_response(),
        Ok(Err(why)) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": why, "type": "config_rejected"}})),
        )
            .into_response(),
        Err(_) => unavailable("the gateway is shutting down"),
    }
}

/// What the admin decision looks at, taken from one request.
#[derive(Debug, Clone, Default)]
pub struct AdminFacts<'a> {
    /// The TCP peer; `None` when the request did not come through the server's accept loop.
    pub peer: Option<IpAddr>,
    pub method: Method,
    // Header values below: `Some("")` when the header is present but repeated or not text,
    // which no rule accepts.
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// Every `X-Forwarded-For` line, in order.
    pub x_forwarded_for: Vec<&'a str>,
    pub x_real_ip: Option<&'a str>,
    pub forwarded: Option<&'a str>,
    /// The key from `Authorization: Bearer` or `x-api-key`.
    pub header_key: Option<&'a str>,
    /// The key from `?key=` (EventSource cannot set headers).
    pub query_key: Option<&'a str>,
}

impl<'a> AdminFacts<'a> {
    pub fn from_request(
        method: &Method,
        headers: &'a HeaderMap,
        query_key: Option<&'a str>,
        peer: Option<Peer>,
    ) -> AdminFacts<'a> {
        let single = |name: &str| {
            let mut values = headers.get_all(name).iter();
            let first = values.next()?;
            Some(match (first.to_str(), values.next()) {
                (Ok(v), None) => v.trim(),
                _ => "",
            })
        };
        AdminFacts {
            peer: peer.map(|p| p.0.ip()),
            method: method.clone(),
            host: single("host"),
            origin: single("origin"),
            sec_fetch_site: single("sec-fetch-site"),
            content_type: single("content-type"),
            x_forwarded_for: headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|v| v.to_str().unwrap_or(""))
                .collect(),
            x_real_ip: single("x-real-ip"),
            forwarded: single("forwarded"),
            header_key: crate::auth::client_key(headers),
            query_key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Allow,
    Deny(Denial),
}

/// Why an admin request was refused; the message tells the operator what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("a form-encoded POST ({0:?}) is what a cross-site HTML form sends; admin calls take no body")]
    FormPost(String),
    #[error("cross-origin request refused: Origin {0:?} is neither this gateway's nor listed in admin.allowed_origins")]
    ForeignOrigin(String),
    #[error("cross-site request refused (Sec-Fetch-Site: {0}); list the calling page's origin in admin.allowed_origins")]
    CrossSite(String),
    #[error("the request has no usable Host header")]
    MissingHost,
    #[error("Host {0:?} is not allowed on the admin API (DNS-rebinding defence): use localhost, 127.0.0.1 or [::1], or add it to admin.allowed_hosts")]
    HostNotAllowed(String),
    #[error("admin key required (admin.key_env): send `Authorization: Bearer KEY`")]
    KeyRequired,
    #[error("the admin key is not valid (admin.key_env)")]
    WrongKey,
    #[error("the admin API is loopback-only unless admin.key_env is set; this client is {0}")]
    NotLoopback(String),
    #[error("the request came through a proxy ({0}), so it is not local; set admin.key_env, or list the proxy in admin.trusted_proxies")]
    Proxied(&'static str),
    #[error("the proxy's X-Forwarded-For / X-Real-IP is missing or not a list of IP addresses")]
    BadForwardedFor,
    #[error("the admin API is loopback-only unless admin.key_env is set; the proxy reports the client as {0}")]
    ProxiedClientNotLoopback(IpAddr),
}

impl Denial {
    pub fn status(&self) -> StatusCode {
        match self {
            Denial::KeyRequired | Denial::WrongKey => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// A stable machine-readable name, for clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::FormPost(_) => "form_post",
            Denial::ForeignOrigin(_) => "foreign_origin",
            Denial::CrossSite(_) => "cross_site",
            Denial::MissingHost => "missing_host",
            Denial::HostNotAllowed(_) => "host_not_allowed",
            Denial::KeyRequired => "admin_key_required",
            Denial::WrongKey => "invalid_admin_key",
            Denial::NotLoopback(_) => "not_loopback",
            Denial::Proxied(_) => "proxied",
            Denial::BadForwardedFor => "bad_forwarded_for",
            Denial::ProxiedClientNotLoopback(_) => "proxied_client_not_loopback",
        }
    }
}

/// The admin decision: may this request use the admin surface under this config?
pub fn admin_access(facts: &AdminFacts, policy: &AdminConfig) -> Access {
    match decide(facts, policy) {
        Ok(()) => Access::Allow,
        Err(d) => Access::Deny(d),
    }
}

fn decide(f: &AdminFacts, policy: &AdminConfig) -> Result<(), Denial> {
    let reads_only = f.method.is_safe();
    // Cross-site request forgery: what a page on another origin can make a browser send.
    if let Some(ct) = f.content_type.filter(|_| !reads_only) {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if matches!(
            mime.as_str(),
            "application/x-www-form-urlencoded" | "multipart/form-data" | "text/plain"
        ) {
            return Err(Denial::FormPost(mime));
        }
    }
    let mut origin_listed = false;
    if let Some(origin) = f.origin {
        origin_listed =
            normalize_origin(origin).is_some_and(|o| policy.allowed_origins.contains(&o));
        if !origin_listed && !f.host.is_some_and(|h| same_origin(origin, h)) {
            return Err(Denial::ForeignOrigin(clip(origin)));
        }
    }
    match f.sec_fetch_site {
        None | Some("same-origin") | Some("none") => {}
        Some(_) if origin_listed => {}
        Some(site) => return Err(Denial::CrossSite(clip(site))),
    }
    // DNS rebinding: the browser thinks it talks to evil.example, and says so in Host.
    if !policy.any_host {
        let host = f
            .host
            .filter(|h| !h.is_empty())
            .ok_or(Denial::MissingHost)?;
        if !host_allowed(host, &policy.allowed_hosts) {
            return Err(Denial::HostNotAllowed(clip(host)));
        }
    }
    if let Some(key) = &policy.key {
        // A key in the URL ends up in logs and history: accepted only where it must be.
        let offered = f.header_key.or(f.query_key.filter(|_| reads_only));
        return match offered {
            None => Err(Denial::KeyRequired),
            Some(k)
                if crate::auth::constant_time_eq(k.trim().as_bytes(), key.expose().as_bytes()) =>
            {
                Ok(())
            }
            Some(_) => Err(Denial::WrongKey),
        };
    }
    local_client(f, policy)
}

/// Without a key: the client must be this machine, directly or through a trusted proxy.
fn local_client(f: &AdminFacts, policy: &AdminConfig) -> Result<(), Denial> {
    let peer = f
        .peer
        .map(|p| p.to_canonical())
        .ok_or_else(|| Denial::NotLoopback("unknown".into()))?;
    let proxy_header = if !f.x_forwarded_for.is_empty() {
        Some("X-Forwarded-For")
    } else if f.x_real_ip.is_some() {
        Some("X-Real-IP")
    } else if f.forwarded.is_some() {
        Some("Forwarded")
    } else {
        None
    };
    let Some(proxy_header) = proxy_header else {
        return if peer.is_loopback() {
            Ok(())
        } else {
            Err(Denial::NotLoopback(peer.to_string()))
        };
    };
    let trusted = |ip: IpAddr| policy.trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(peer) {
        return Err(Denial::Proxied(proxy_header));
    }
    let client = if !f.x_forwarded_for.is_empty() {
        let hops: Vec<IpAddr> = f
            .x_forwarded_for
            .iter()
            .flat_map(|line| line.split(','))
            .map(parse_hop)
            .collect::<Option<_>>()
            .ok_or(Denial::BadForwardedFor)?;
        // Each trusted proxy appends the address it saw; the first untrusted one from the
        // right is the client (all trusted: the leftmost is).
        hops.iter()
            .rev()
            .copied()
            .find(|ip| !trusted(*ip))
            .or(hops.first().copied())
            .ok_or(Denial::BadForwardedFor)?
    } else {
        // RFC 7239 `Forwarded` alone is not parsed: a proxy that sends only that is refused.
        f.x_real_ip
            .and_then(parse_hop)
            .ok_or(Denial::BadForwardedFor)?
    };
    if client.is_loopback() {
        Ok(())
    } else {
        Err(Denial::ProxiedClientNotLoopback(client))
    }
}

/// One X-Forwarded-For entry: an address, optionally with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })?;
    Some(ip.to_canonical())
}

/// Untrusted text in a message: bounded, and printed with `{:?}` by the callers.
fn clip(text: &str) -> String {
    text.chars().take(100).collect()
}

/// `localhost` or a loopback address, whatever the port; or one of `allowed`.
fn host_allowed(host_header: &str, allowed: &[String]) -> bool {
    let Some((host, port)) = split_host_port(host_header) else {
        return false;
    };
    let loopback = host == "localhost"
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<Ipv6Addr>().ok())
            .is_some_and(|ip| IpAddr::V6(ip).to_canonical().is_loopback());
    loopback
        || allowed.iter().any(|a| match split_host_port(a) {
            Some((h, None)) => h == host,
            Some((h, p)) => h == host && p == port,
            None => false,
        })
}

/// Whether `origin` names the host and port the request was sent to. A Host without a port
/// means the scheme's default one, which a serialized origin leaves out too.
fn same_origin(origin: &str, host_header: &str) -> bool {
    let Some(url) = normalize_origin(origin).and_then(|o| reqwest::Url::parse(&o).ok()) else {
        return false;
    };
    let Some((host, port)) = split_host_port(host_header) else {
        return false;
    };
    let origin_host = url.host_str().unwrap_or("");
    let origin_host = origin_host.strip_suffix('.').unwrap_or(origin_host);
    origin_host.eq_ignore_ascii_case(&host)
        && match port {
            Some(p) => url.port_or_known_default() == Some(p),
            None => url.port().is_none(),
        }
}

#[derive(Deserialize)]
struct KeyQuery {
    key: Option<String>,
}

/// `Some(refusal)` unless the request may use the admin surface: what every guarded handler
/// calls.
pub fn refusal(
    gw: &Gateway,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<Peer>,
) -> Option<Response> {
    let query = Query::<KeyQuery>::try_from_uri(uri).ok();
    let query_key = query.as_ref().and_then(|q| q.key.as_deref());
    let facts = AdminFacts::from_request(method, headers, query_key, peer);
    let Access::Deny(denial) = admin_access(&facts, &gw.config.admin) else {
        return None;
    };
    tracing::info!(
        peer = ?facts.peer,
        path = uri.path(),
        code = denial.code(),
        "admin request refused: {denial}"
    );
    let status = denial.status();
    let mut r = (
        status,
        Json(json!({"error": {
            "message": denial.to_string(), "type": "admin_auth", "code": denial.code(),
        }})),
    )
        .into_response();
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"switchyard-admin\""),
        );
    }
    Some(r)
}

async fn backends(
    State(gw): State<Arc<Gateway>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Response {
    if let Some(r) = refusal(&gw, &method, &uri, &headers, peer.map(|p| p.0)) {
        return r;
    }
    Json(backends_json(&gw)).into_response()
}

/// The health snapshot as served by `/admin/backends`, details scrubbed.
pub fn backends_json(gw: &Gateway) -> Value {
    let now = Instant::now();
    let wall = SystemTime::now();
    let scopes: Vec<Value> = gw
        .health
        .snapshot(now)
        .into_iter()
        .map(|s| {
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            if let Some(left) = s.cooldown_remaining_s {
                let until = wall + Duration::from_secs_f64(left);
                v["cooldown_until_ms"] = json!(until
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis() as u64);
            }
            v["last_detail"] = json!(gw.scrubber.scrub(&s.last_detail));
            v
        })
        .collect();
    let backends: Vec<Value> = gw
        .config
        .backends
        .iter()
        .map(|b| {
            json!({
                "name": &*b.name,
                "api": b.api.as_str(),
                // Which provider's error rules read its answers (null: the generic ones).
                "provider": b.provider.map(|p| p.as_str()),
                "base_url": gw.scrubber.scrub(&b.base_url),
                "credentials": b.credentials.iter().map(|c| &*c.label).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (turns, sticky) = gw.sessions.tracked();
    json!({
        "backends": backends,
        "scopes": scopes,
        "store": format!("{:?}", gw.config.health.store).to_lowercase(),
        "sessions": {"turns_tracked": turns, "sticky_tracked": sticky},
    })
}

async fn reset(
    State(gw): State<Arc<Gateway>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
) -> Response {
    if let Some(r) = refusal(&gw, &method, &uri, &headers, peer.map(|p| p.0)) {
        return r;
    }
    if gw.health.reset_backend(&name) {
        tracing::info!(backend = %name, "health reset by operator");
        Json(json!({"reset": name})).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"message": format!("no backend named {name:?}"), "type": "not_found"}})),
        )
            .into_response()
    }
}

/// Renders `/admin/backends` JSON as a terminal table.
pub fn render_table(v: &Value) -> String {
    let mut rows = vec![[
        "BACKENDS".to_string(),
        "SCOPE".to_string(),
        "STATE".to_string(),
        "STREAK".to_string(),
        "EJECTIONS".to_string(),
        "OK/FAIL".to_string(),
        "LAST FAILURE".to_string(),
    ]];
    for s in v["scopes"].as_array().into_iter().flatten() {
        let scope = match s["kind"].as_str().unwrap_or("") {
            "model" => format!("model {}", s["model"].as_str().unwrap_or("")),
            "credential" => format!("key {}", s["credential"].as_str().unwrap_or("")),
            _ => "backend".to_string(),
        };
        let state = match (
            s["state"].as_str().unwrap_or(""),
            s["cooldown_remaining_s"].as_f64(),
        ) {
            ("cooling_down", Some(left)) => format!("cooling down {left:.0}s"),
            (st, _) => st.replace('_', "-"),
        };
        let last = match s["last_reason"].as_str() {
            Some(r) => {
                let d: String = s["last_detail"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(50)
                    .collect();
                format!("{r}: {d}")
            }
            None => "-".into(),
        };
        let names: Vec<&str> = s["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        rows.push([
            names.join(","),
            scope,
            state,
            s["streak"].to_string(),
            s["ejections"].to_string(),
            format!("{}/{}", s["successes"], s["failures"]),
            last,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{IpNet, Secret};

    const KEY: &str = "admin-secret";

    /// A direct local curl: loopback peer, loopback Host, nothing else.
    fn local_get() -> AdminFacts<'static> {
        AdminFacts {
            peer: Some("127.0.0.1".parse().unwrap()),
            method: Method::GET,
            host: Some("127.0.0.1:8080"),
            ..AdminFacts::default()
        }
    }

    fn no_key() -> AdminConfig {
        AdminConfig::default()
    }

    fn keyed() -> AdminConfig {
        AdminConfig {
            key: Some(Secret::new(KEY)),
            ..AdminConfig::default()
        }
    }

    fn behind(proxies: &[&str]) -> AdminConfig {
        AdminConfig {
            trusted_proxies: proxies
                .iter()
                .map(|p| p.parse::<IpNet>().unwrap())
                .collect(),
            ..AdminConfig::default()
        }
    }

    type Edit = fn(&mut AdminFacts<'static>);

    #[test]
    fn admin_access_allows_only_local_same_origin_or_keyed_callers() {
        let allowed_host = AdminConfig {
            allowed_hosts: vec!["gw.internal".into(), "ops.internal:9000".into()],
            ..no_key()
        };
        let allowed_origin = AdminConfig {
            allowed_origins: vec!["https://ops.example.com".into()],
            ..no_key()
        };
        let keyed_any_host = AdminConfig {
            any_host: true,
            ..keyed()
        };
        // (what the row protects, config, how the request differs from `local_get`, expected
        // denial code or None for allowed)
        #[rustfmt::skip]
        let rows: Vec<(&str, AdminConfig, Edit, Option<&str>)> = vec![
            // Loopback callers, no key.
            ("plain local GET", no_key(), |_| {}, None),
            ("local POST without body", no_key(), |f| f.method = Method::POST, None),
            ("Host localhost, any port", no_key(), |f| f.host = Some("localhost:1234"), None),
            ("Host localhost without port", no_key(), |f| f.host = Some("localhost"), None),
            ("Host case-insensitive", no_key(), |f| f.host = Some("LocalHost:80"), None),
            ("Host 127/8", no_key(), |f| f.host = Some("127.9.8.7:8080"), None),
            ("Host [::1]", no_key(), |f| f.host = Some("[::1]:8080"), None),
            ("Host IPv4-mapped loopback", no_key(), |f| f.host = Some("[::ffff:127.0.0.1]:8080"), None),
            ("peer ::1", no_key(), |f| f.peer = Some("::1".parse().unwrap()), None),
            ("peer IPv4-mapped loopback ([::] listener)", no_key(), |f| f.peer = Some("::ffff:127.0.0.1".parse().unwrap()), None),
            // DNS rebinding: the Host names the attacker's domain.
            ("rebinding Host", no_key(), |f| f.host = Some("evil.example:8080"), Some("host_not_allowed")),
            ("rebinding Host with a loopback-looking prefix", no_key(), |f| f.host = Some("localhost.evil.example"), Some("host_not_allowed")),
            ("rebinding Host 127.0.0.1.evil", no_key(), |f| f.host = Some("127.0.0.1.evil.example:8080"), Some("host_not_allowed")),
            ("Host a LAN address", no_key(), |f| f.host = Some("192.168.1.5:8080"), Some("host_not_allowed")),
            ("Host with userinfo trickery", no_key(), |f| f.host = Some("127.0.0.1@evil.example"), Some("host_not_allowed")),
            ("no Host", no_key(), |f| f.host = None, Some("missing_host")),
            ("repeated or binary Host", no_key(), |f| f.host = Some(""), Some("missing_host")),
            ("allowed_hosts name, any port", allowed_host.clone(), |f| f.host = Some("GW.internal:8080"), None),
            ("allowed_hosts name:port", allowed_host.clone(), |f| f.host = Some("ops.internal:9000"), None),
            ("allowed_hosts name, other port", allowed_host.clone(), |f| f.host = Some("ops.internal:9001"), Some("host_not_allowed")),
            // CSRF: what another origin's page makes the browser send.
            ("cross-origin POST", no_key(), |f| { f.method = Method::POST; f.origin = Some("https://evil.example"); }, Some("foreign_origin")),
            ("cross-origin GET (feed, JSON)", no_key(), |f| f.origin = Some("https://evil.example"), Some("foreign_origin")),
            ("Origin null (sandboxed frame, file:)", no_key(), |f| { f.method = Method::POST; f.origin = Some("null"); }, Some("foreign_origin")),
            ("Origin on another port of localhost", no_key(), |f| f.origin = Some("http://127.0.0.1:3000"), Some("foreign_origin")),
            ("Origin localhost while Host is 127.0.0.1", no_key(), |f| f.origin = Some("http://localhost:8080"), Some("foreign_origin")),
            ("same-origin POST from the gateway's page", no_key(), |f| { f.method = Method::POST; f.origin = Some("http://127.0.0.1:8080"); f.sec_fetch_site = Some("same-origin"); }, None),
            ("same origin, default port both sides", no_key(), |f| { f.host = Some("localhost"); f.origin = Some("http://localhost"); }, None),
            ("Origin default port, Host another", no_key(), |f| { f.host = Some("localhost:8080"); f.origin = Some("http://localhost"); }, Some("foreign_origin")),
            ("listed origin, even cross-site", allowed_origin.clone(), |f| { f.method = Method::POST; f.origin = Some("https://ops.example.com"); f.sec_fetch_site = Some("cross-site"); }, None),
            ("listed origin's other port", allowed_origin.clone(), |f| f.origin = Some("https://ops.example.com:8443"), Some("foreign_origin")),
            ("Sec-Fetch-Site cross-site without Origin (img, no-cors GET)", no_key(), |f| f.sec_fetch_site = Some("cross-site"), Some("cross_site")),
            ("Sec-Fetch-Site same-site (another localhost port)", no_key(), |f| f.sec_fetch_site = Some("same-site"), Some("cross_site")),
            ("Sec-Fetch-Site none (typed URL)", no_key(), |f| f.sec_fetch_site = Some("none"), None),
            ("form-encoded POST", no_key(), |f| { f.method = Method::POST; f.content_type = Some("application/x-www-form-urlencoded"); }, Some("form_post")),
            ("text/plain POST", no_key(), |f| { f.method = Method::POST; f.content_type = Some("Text/Plain; charset=utf-8"); }, Some("form_post")),
            ("multipart POST", no_key(), |f| { f.method = Method::POST; f.content_type = Some("multipart/form-data; boundary=x"); }, Some("form_post")),
            ("JSON POST", no_key(), |f| { f.method = Method::POST; f.content_type = Some("application/json"); }, None),
            // Who the client is: a loopback peer is not enough behind a proxy.
            ("remote peer", no_key(), |f| f.peer = Some("203.0.113.9".parse().unwrap()), Some("not_loopback")),
            ("remote IPv4-mapped peer", no_key(), |f| f.peer = Some("::ffff:203.0.113.9".parse().unwrap()), Some("not_loopback")),
            ("unknown peer", no_key(), |f| f.peer = None, Some("not_loopback")),
            ("X-Forwarded-For from loopback, no trusted proxies", no_key(), |f| f.x_forwarded_for = vec!["127.0.0.1"], Some("proxied")),
            ("X-Real-IP from loopback, no trusted proxies", no_key(), |f| f.x_real_ip = Some("127.0.0.1"), Some("proxied")),
            ("Forwarded from loopback, no trusted proxies", no_key(), |f| f.forwarded = Some("for=127.0.0.1"), Some("proxied")),
            ("trusted proxy, loopback client", behind(&["127.0.0.1"]), |f| f.x_forwarded_for = vec!["127.0.0.1"], None),
            ("trusted proxy, internet client", behind(&["127.0.0.1"]), |f| f.x_forwarded_for = vec!["203.0.113.9"], Some("proxied_client_not_loopback")),
            ("trusted proxy, spoofed loopback on the left", behind(&["127.0.0.1"]), |f| f.x_forwarded_for = vec!["127.0.0.1, 203.0.113.9"], Some("proxied_client_not_loopback")),
            ("two trusted hops skipped from the right", behind(&["127.0.0.0/8", "10.0.0.0/8"]), |f| f.x_forwarded_for = vec!["203.0.113.9, 10.1.2.3", "127.0.0.1"], Some("proxied_client_not_loopback")),
            ("all hops trusted: leftmost is the client", behind(&["127.0.0.0/8", "10.0.0.0/8"]), |f| f.x_forwarded_for = vec!["127.0.0.1, 10.1.2.3"], None),
            ("trusted proxy, hop with port", behind(&["::1"]), |f| { f.peer = Some("::1".parse().unwrap()); f.x_forwarded_for = vec!["[::1]:5555"]; }, None),
            ("trusted proxy, garbage hop", behind(&["127.0.0.1"]), |f| f.x_forwarded_for = vec!["127.0.0.1, unknown"], Some("bad_forwarded_for")),
            ("trusted proxy, X-Real-IP only", behind(&["127.0.0.1"]), |f| f.x_real_ip = Some("127.0.0.1"), None),
            ("trusted proxy, Forwarded only", behind(&["127.0.0.1"]), |f| f.forwarded = Some("for=127.0.0.1"), Some("bad_forwarded_for")),
            ("untrusted peer with X-Forwarded-For", behind(&["10.0.0.0/8"]), |f| f.x_forwarded_for = vec!["127.0.0.1"], Some("proxied")),
            ("trusted proxies, direct local call", behind(&["10.0.0.0/8"]), |_| {}, None),
            // With a key: the key decides who, the browser and Host checks stay.
            ("keyed, no key offered", keyed(), |_| {}, Some("admin_key_required")),
            ("keyed, wrong key", keyed(), |f| f.header_key = Some("nope"), Some("invalid_admin_key")),
            ("keyed, right key from anywhere", keyed(), |f| { f.header_key = Some(KEY); f.peer = Some("203.0.113.9".parse().unwrap()); f.x_forwarded_for = vec!["198.51.100.1"]; }, None),
            ("keyed, ?key= on GET (EventSource)", keyed(), |f| f.query_key = Some(KEY), None),
            ("keyed, ?key= on POST", keyed(), |f| { f.method = Method::POST; f.query_key = Some(KEY); }, Some("admin_key_required")),
            ("keyed, rebinding Host", keyed(), |f| { f.header_key = Some(KEY); f.host = Some("evil.example"); }, Some("host_not_allowed")),
            ("keyed, cross-origin", keyed(), |f| { f.query_key = Some(KEY); f.origin = Some("https://evil.example"); }, Some("foreign_origin")),
            ("keyed, allowed_hosts *: any Host", keyed_any_host.clone(), |f| { f.header_key = Some(KEY); f.host = Some("gw.example.com"); }, None),
            ("keyed, allowed_hosts *: still the key", keyed_any_host.clone(), |f| f.host = Some("gw.example.com"), Some("admin_key_required")),
            ("keyed, allowed_hosts *: same-origin by its name", keyed_any_host.clone(), |f| { f.query_key = Some(KEY); f.host = Some("gw.example.com"); f.origin = Some("https://gw.example.com"); }, None),
        ];
        for (row, policy, edit, want) in rows {
            let mut facts = local_get();
            edit(&mut facts);
            let got = match admin_access(&facts, &policy) {
                Access::Allow => None,
                Access::Deny(d) => Some(d.code()),
            };
            assert_eq!(got, want, "{row}: {facts:?}");
        }
    }

    #[test]
    fn denials_are_403_except_a_missing_or_wrong_key() {
        assert_eq!(Denial::KeyRequired.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(Denial::WrongKey.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            Denial::HostNotAllowed("x".into()).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(Denial::Proxied("X-Real-IP").status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn facts_treat_repeated_or_binary_headers_as_present_but_unusable() {
        let mut h = HeaderMap::new();
        h.append("origin", HeaderValue::from_static("http://127.0.0.1:8080"));
        h.append("origin", HeaderValue::from_static("https://evil.example"));
        h.insert("host", HeaderValue::from_bytes(b"127.0.0.1\xff").unwrap());
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("127.0.0.1"));
        h.insert("authorization", HeaderValue::from_static("bearer k1"));
        let f = AdminFacts::from_request(&Method::GET, &h, Some("k2"), None);
        assert_eq!(f.origin, Some(""));
        assert_eq!(f.host, Some(""));
        assert_eq!(f.x_forwarded_for, ["10.0.0.1", "127.0.0.1"]);
        assert_eq!(f.header_key, Some("k1"));
        assert_eq!(f.query_key, Some("k2"));
        assert_eq!(f.sec_fetch_site, None);
    }

    #[test]
    fn host_values_split_into_lowercase_host_and_port_or_are_refused() {
        type HostPort<'a> = Option<(&'a str, Option<u16>)>;
        let cases: [(&str, HostPort); 10] = [
            ("LocalHost:8080", Some(("localhost", Some(8080)))),
            ("gw.example.", Some(("gw.example", None))),
            ("[::1]:80", Some(("[::1]", Some(80)))),
            ("[::1]", Some(("[::1]", None))),
            ("::1", None),
            ("[nope]:80", None),
            ("a:b", None),
            ("a:", None),
            ("", None),
            ("a b", None),
        ];
        for (text, want) in cases {
            let got = split_host_port(text);
            assert_eq!(
                got.as_ref().map(|(h, p)| (h.as_str(), *p)),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn origins_normalize_to_the_browser_form_and_anything_else_is_refused() {
        for (text, want) in [
            ("https://Ops.Example.com", Some("https://ops.example.com")),
            ("https://ops.example.com/", Some("https://ops.example.com")),
            ("http://127.0.0.1:80", Some("http://127.0.0.1")),
            ("http://[::1]:8080", Some("http://[::1]:8080")),
            ("null", None),
            ("https://ops.example.com/path", None),
            ("https://ops.example.com?x", None),
            ("ftp://ops.example.com", None),
            ("https://user@ops.example.com", None),
            ("ops.example.com", None),
        ] {
            assert_eq!(normalize_origin(text).as_deref(), want, "{text:?}");
        }
    }
}
