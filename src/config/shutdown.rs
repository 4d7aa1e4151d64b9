//! `shutdown:` how the gateway stops: how long it keeps accepting after a stop signal (so
//! load balancers see `/readyz` fail and stop sending first), then how long in-flight
//! requests and streams get to finish.

use std::time::Duration;

use super::raw::{line, RawShutdown};
use super::{ConfigError, Source};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// After the signal: `/readyz` says 503 but the listener still accepts.
    pub delay: Duration,
    /// Then: no new connections; in-flight requests and streams have this long to finish.
    /// Streams still open after it end with the dialect's error event.
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            delay: Duration::from_secs(5),
            grace: Duration::from_secs(30),
        }
    }
}

pub(super) fn build(raw: &RawShutdown, src: &Source) -> Result<ShutdownConfig, ConfigError> {
    let d = ShutdownConfig::default();
    let grace = raw.grace.as_ref().map_or(d.grace, |g| g.value.0);
    if let Some(g) = raw.grace.as_ref().filter(|g| g.value.0.is_zero()) {
        return Err(src.invalid(
            line(g),
            "shutdown.grace",
            "must be greater than 0 (in-flight requests need time to finish)",
        ));
    }
    Ok(ShutdownConfig {
        delay: raw.delay.as_ref().map_or(d.delay, |v| v.value.0),
        grace,
    })
}
