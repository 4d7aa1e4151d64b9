//! Request preparation: from headers and a body stream to a routed [`ClientRequest`], or the
//! [`GatewayError`] that says why not. Gateway key → content type → body (capped, under a read
//! deadline) → [`body::scan`] → route → session.

use std::sync::Arc;

use axum::body::Body;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};

use super::error::GatewayError;
use crate::app::Gateway;
use crate::auth::GatewayKey;
use crate::body;
use crate::config::Config;
use crate::dialect::{Dialect, Operation};
use crate::failover::outcome::ClientRequest;
use crate::health::sessions::SessionKey;
use crate::session::Turn;
use crate::upstream::ForwardHeaders;

/// `Ok` when the request carries one of the `auth.keys_env` keys (or none are configured): the
/// check of the proxy endpoints, `/v1/models` and a protected `/metrics`.
pub(super) fn gateway_key(config: &Config, headers: &HeaderMap) -> Result<(), GatewayError> {
    match crate::auth::check_gateway_key(config, headers) {
        GatewayKey::NotRequired | GatewayKey::Valid => Ok(()),
        GatewayKey::Invalid => Err(GatewayError::InvalidGatewayKey),
        GatewayKey::Missing => Err(GatewayError::MissingGatewayKey),
    }
}

pub(super) async fn prepare(
    gw: &Gateway,
    dialect: Dialect,
    operation: Operation,
    headers: &HeaderMap,
    body: Body,
    request_id: &Arc<str>,
) -> Result<ClientRequest, GatewayError> {
    let config = &gw.config;
    gateway_key(config, headers)?;
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if !is_json_media_type(ct) {
            return Err(GatewayError::UnsupportedMediaType {
                content_type: ct.to_string(),
            });
        }
    }
    let limits = &config.limits;
    let too_large = || GatewayError::PayloadTooLarge {
        limit: limits.max_body_bytes,
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(
        limits.body_read_timeout,
        Limited::new(body, limits.max_body_bytes).collect(),
    )
    .await;
    let bytes = match collected {
        Err(_) => {
            return Err(GatewayError::BodyReadTimeout {
                after: limits.body_read_timeout,
            })
        }
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(too_large())
        }
        Ok(Err(e)) => return Err(GatewayError::BodyRead(e.to_string())),
        Ok(Ok(c)) => c.to_bytes(),
    };
    let scanned = body::scan(&bytes)?;
    let route = match config.routes.get(scanned.model.as_str()) {
        Some(r) => r.clone(),
        None => match &config.default_route {
            Some(r) => r.clone(),
            None => {
                return Err(GatewayError::UnknownRoute {
                    model: crate::scrub::truncate_chars(&scanned.model, 100),
                    available: config.route_names.iter().map(|n| n.to_string()).collect(),
                })
            }
        },
    };
    if let Some(api) = operation.only_api() {
        let served = route
            .chain
            .iter()
            .any(|e| config.backend(e.backend).api == api);
        if !served {
            return Err(GatewayError::OperationNotServed {
                route: route.name.to_string(),
                operation: operation.as_str(),
                api: api.as_str(),
            });
        }
    }
    // A side endpoint's call is no turn of the conversation.
    let session = match operation {
        Operation::Generate => session_key(gw, headers, &bytes, &scanned),
        _ => None,
    };
    let platform = crate::session::platform(headers, config.alerts.platform_header.as_ref());
    let accept_problem = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(crate::dialect::PROBLEM_JSON));
    let responses = dialect == Dialect::Responses;
    let previous_response = responses
        .then(|| crate::dialect::responses::previous_response_id(&bytes, &scanned.spans))
        .flatten();
    let stores_response = responses && crate::dialect::responses::stores(&bytes, &scanned.spans);
    Ok(ClientRequest {
        operation,
        accept_problem,
        session,
        platform,
        previous_response,
        stores_response,
        dialect,
        request_id: request_id.clone(),
        body: bytes,
        scanned,
        route,
        fwd: ForwardHeaders::from_client(headers),
        span: tracing::Span::none(),
    })
}

/// The client's session and turn (see [`crate::session`]); a side call joins the session's
/// current turn, a main-loop call becomes it.
fn session_key(
    gw: &Gateway,
    headers: &HeaderMap,
    body: &[u8],
    scanned: &body::Scanned,
) -> Option<SessionKey> {
    let derived = crate::session::derive(
        &gw.config.health.session_from,
        headers,
        body,
        &scanned.spans,
    )?;
    let now = tokio::time::Instant::now();
    let turn = match derived.turn {
        Turn::Given(t) | Turn::MainLine(t) => {
            gw.sessions.enter_turn(&derived.session, &t, now);
            Some(t)
        }
        Turn::Side(own) => Some(
            gw.sessions
                .current_turn(&derived.session, now)
                .unwrap_or(own),
        ),
        Turn::Unknown => None,
    };
    Some(SessionKey {
        session: derived.session,
        turn,
    })
}

/// `application/json` or any `…+json`, parameters ignored, without allocating.
fn is_json_media_type(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .as_bytes();
    mime.eq_ignore_ascii_case(b"application/json")
        || (mime.len() >= 5 && mime[mime.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_are_recognised_by_media_type_whatever_the_case_and_parameters() {
        for ct in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ;charset=UTF-8",
            "application/vnd.api+json",
            "application/problem+JSON",
        ] {
            assert!(is_json_media_type(ct), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "",
            "application/jsonx",
        ] {
            assert!(!is_json_media_type(ct), "{ct}");
        }
    }
}
