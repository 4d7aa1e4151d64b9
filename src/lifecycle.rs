//! The process's life after a stop signal: serving, then draining (readiness answers 503 while
//! in-flight requests finish), then the moment streams still open must be ended.
//!
//! A leaf: the server flips the states, `/readyz` and every stream relay read them.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

#[derive(Debug)]
pub struct Lifecycle {
    draining: AtomicBool,
    end_streams: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            draining: AtomicBool::new(false),
            end_streams: watch::channel(false).0,
        }
    }
}

impl Lifecycle {
    /// Whether a stop signal came: `/readyz` then answers 503.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The shutdown grace is over: every open stream ends now, with its dialect's error event.
    pub fn end_streams(&self) {
        self.start_draining();
        self.end_streams.send_replace(true);
    }

    /// Resolves when [`end_streams`](Self::end_streams) is called (at once if it was).
    pub fn streams_must_end(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.end_streams.subscribe();
        async move {
            // An error means the gateway itself is gone: end as well.
            let _ = rx.wait_for(|end| *end).await;
        }
    }
}

/// A request to reload the config, answered with a summary of what is now served or why the
/// new config was refused (the old one keeps serving).
pub type ReloadRequest = tokio::sync::oneshot::Sender<Result<String, String>>;

/// Where reload requests go: the server that owns the current generation.
pub type ReloadSender = tokio::sync::mpsc::Sender<ReloadRequest>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_learn_they_must_end_whenever_they_ask() {
        let l = Lifecycle::default();
        let before = l.streams_must_end();
        assert!(!l.is_draining());
        l.start_draining();
        assert!(l.is_draining());
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(10), l.streams_must_end()).await;
        assert!(pending.is_err(), "draining alone does not end streams");
        l.end_streams();
        before.await;
        l.streams_must_end().await;
    }
}
