//! Who may call: the one place that reads a client's key from its headers and compares keys.
//!
//! The proxy endpoints, `/v1/models`, `/metrics` and the admin surface all take a key the same
//! way (`x-api-key`, or `Authorization: Bearer` in any letter case) and compare it in constant
//! time (`subtle`), so a guess cannot be timed byte by byte.

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::Config;

/// The key a client sent: `x-api-key`, else an `Authorization: Bearer` token.
pub fn client_key(headers: &HeaderMap) -> Option<&str> {
    static X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");
    if let Some(k) = headers.get(&X_API_KEY).and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// Equal bytes, compared in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// What the gateway keys (`auth.keys_env`) say about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKey {
    /// No gateway keys are configured.
    NotRequired,
    Valid,
    Missing,
    Invalid,
}

pub fn check_gateway_key(config: &Config, headers: &HeaderMap) -> GatewayKey {
    if config.gateway_keys.is_empty() {
        return GatewayKey::NotRequired;
    }
    match client_key(headers) {
        None => GatewayKey::Missing,
        Some(k)
            if config
                .gateway_keys
                .iter()
                .any(|g| constant_time_eq(g.expose().as_bytes(), k.as_bytes())) =>
        {
            GatewayKey::Valid
        }
        Some(_) => GatewayKey::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    type Headers = &'static [(&'static str, &'static str)];

    #[test]
    fn the_key_comes_from_x_api_key_or_a_bearer_token_in_any_case() {
        let table: &[(Headers, Option<&str>)] = &[
            (&[("x-api-key", " k1 ")], Some("k1")),
            (&[("authorization", "Bearer k2")], Some("k2")),
            (&[("authorization", "bearer k3")], Some("k3")),
            (&[("authorization", "BEARER  k4 ")], Some("k4")),
            (&[("authorization", "Basic dXNlcjpwYXNz")], None),
            (&[("authorization", "k5")], None),
            (
                &[("x-api-key", "a"), ("authorization", "Bearer b")],
                Some("a"),
            ),
            (&[], None),
        ];
        for (h, want) in table {
            assert_eq!(client_key(&headers(h)), *want, "{h:?}");
        }
    }

    #[test]
    fn keys_compare_equal_only_when_every_byte_and_the_length_match() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
