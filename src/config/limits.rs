//! `limits:` → [`Limits`]: how much a client or an upstream may send, and how slowly.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::raw::{line, RawLimits};
use super::{ConfigError, Source};

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// A successful non-streaming upstream body larger than this is `invalid_response`.
    pub max_response_body_bytes: usize,
    /// Upstream error bodies are read up to this size; a longer one is answered with a
    /// gateway-built error, never a truncated fragment.
    pub max_error_body_bytes: usize,
    /// The longest SSE line, and the largest event, an upstream stream may send.
    pub max_sse_event_bytes: usize,
    /// Bytes a stream may send before its first content event (held, not yet relayed).
    pub max_held_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 * 1024 * 1024,
            max_response_body_bytes: 32 * 1024 * 1024,
            max_error_body_bytes: 1024 * 1024,
            max_sse_event_bytes: 4 * 1024 * 1024,
            max_held_bytes: 4 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
        }
    }
}

/// 1 KiB keeps real error bodies and events readable; 1 GiB keeps one request from taking
/// the machine.
const BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=1 << 30;

pub(super) fn build(raw: &RawLimits, src: &Source) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    // Only a written size can be out of range: the defaults are inside it.
    let bytes = |name: &str, written: &Option<Spanned<usize>>, default: usize| match written {
        None => Ok(default),
        Some(v) if BYTES_RANGE.contains(&v.value) => Ok(v.value),
        Some(v) => Err(src.invalid(
            line(v),
            format!("limits.{name}"),
            format!("{} is out of range: from 1024 to 1073741824 bytes", v.value),
        )),
    };
    Ok(Limits {
        max_body_bytes: bytes("max_body_bytes", &raw.max_body_bytes, d.max_body_bytes)?,
        max_response_body_bytes: bytes(
            "max_response_body_bytes",
            &raw.max_response_body_bytes,
            d.max_response_body_bytes,
        )?,
        max_error_body_bytes: bytes(
            "max_error_body_bytes",
            &raw.max_error_body_bytes,
            d.max_error_body_bytes,
        )?,
        max_sse_event_bytes: bytes(
            "max_sse_event_bytes",
            &raw.max_sse_event_bytes,
            d.max_sse_event_bytes,
        )?,
        max_held_bytes: bytes("max_held_bytes", &raw.max_held_bytes, d.max_held_bytes)?,
        header_read_timeout: raw
            .header_read_timeout
            .map_or(d.header_read_timeout, |t| t.0),
        body_read_timeout: raw.body_read_timeout.map_or(d.body_read_timeout, |t| t.0),
    })
}
