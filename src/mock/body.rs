//! The response body: a small script of byte frames, pauses and faults, played by
//! a hand-written `http_body::Body` (no boxed streams, no channels, no task per
//! response), plus the accounting of how each response ended.
//!
//! Whether a response `completed` or was `cancelled` is decided when the body is
//! dropped: hyper drops it early exactly when the client went away, which is what
//! tests use to prove that a client disconnect aborted the upstream request.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Sleep;

/// Lock-free counters updated from response bodies.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub in_flight: AtomicI64,
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    /// Bumped by reset so responses still running from before do not leak into the
    /// fresh counts when they end.
    pub epoch: AtomicU64,
}

/// One API request from arrival to the end of its response. Dropped unfinished
/// (handler future or body dropped by hyper) it counts as cancelled.
pub(crate) struct Flight {
    counters: Arc<Counters>,
    epoch: u64,
    pub(crate) done: bool,
}

impl Flight {
    pub(crate) fn start(counters: &Arc<Counters>) -> Flight {
        counters.in_flight.fetch_add(1, Ordering::Relaxed);
        Flight {
            epoch: counters.epoch.load(Ordering::Relaxed),
            counters: Arc::clone(counters),
            done: false,
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        let c = &self.counters;
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        if c.epoch.load(Ordering::Relaxed) != self.epoch {
            return;
        }
        if self.done {
            c.completed.fetch_add(1, Ordering::Relaxed);
        } else {
            c.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Per-connection switch the handler flips to have the connection torn down with
/// an RST. The connection task owns the socket, so it does the actual closing.
#[derive(Debug, Default)]
pub(crate) struct ConnCtl {
    reset: AtomicBool,
    notify: Notify,
}

impl ConnCtl {
    pub(crate) fn trigger_reset(&self) {
        self.reset.store(true, Ordering::Release);
        // notify_one keeps a permit if the connection task is not waiting right now.
        self.notify.notify_one();
    }

    pub(crate) async fn reset_requested(&self) {
        loop {
            if self.reset.load(Ordering::Acquire) {
                return;
            }
            self.notify.notified().await;
        }
    }
}

/// One instruction of a body script.
pub(crate) enum Step {
    Data(Bytes),
    Sleep(Duration),
    /// Emit `frame` every `every`, forever (until the client leaves).
    Heartbeat {
        frame: Bytes,
        every: Duration,
    },
    /// Tear the connection down with an RST; the response counts as completed
    /// because the mock did what it was told.
    Reset,
    /// Send nothing more, forever (until the client leaves).
    Hold,
}

pub(crate) struct MockBody {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
    flight: Option<Flight>,
    conn: Option<Arc<ConnCtl>>,
    /// Known total length: hyper then sends content-length instead of chunked.
    exact_len: Option<u64>,
}

impl MockBody {
    /// A whole body known up front (content-length is set).
    pub(crate) fn full(bytes: Bytes, flight: Option<Flight>) -> MockBody {
        let len = bytes.len() as u64;
        let mut steps = VecDeque::with_capacity(1);
        if !bytes.is_empty() {
            steps.push_back(Step::Data(bytes));
        }
        MockBody {
            steps,
            sleep: None,
            flight,
            conn: None,
            exact_len: Some(len),
        }
    }

    /// A scripted body; `exact_len` when the script is finite and its size known.
    pub(crate) fn script(
        steps: VecDeque<Step>,
        exact_len: Option<u64>,
        flight: Flight,
        conn: Arc<ConnCtl>,
    ) -> MockBody {
        MockBody {
            steps,
            sleep: None,
            flight: Some(flight),
            conn: Some(conn),
            exact_len,
        }
    }
}

impl Drop for MockBody {
    fn drop(&mut self) {
        if let Some(flight) = &mut self.flight {
            // Everything handed to hyper means the response went out in full.
            if self.steps.is_empty() {
                flight.done = true;
            }
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(sleep) = &mut this.sleep {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.sleep = None;
            }
            match this.steps.pop_front() {
                None => return Poll::Ready(None),
                Some(Step::Data(bytes)) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Some(Step::Sleep(d)) => this.sleep = Some(Box::pin(tokio::time::sleep(d))),
                Some(Step::Heartbeat { frame, every }) => {
                    this.steps.push_front(Step::Heartbeat {
                        frame: frame.clone(),
                        every,
                    });
                    this.steps.push_front(Step::Data(frame));
                    this.steps.push_front(Step::Sleep(every));
                }
                Some(Step::Reset) => {
                    if let Some(flight) = &mut this.flight {
                        flight.done = true;
                    }
                    if let Some(conn) = &this.conn {
                        conn.trigger_reset();
                    }
                    this.steps.push_front(Step::Hold);
                    return Poll::Pending;
                }
                Some(Step::Hold) => {
                    this.steps.push_front(Step::Hold);
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.steps.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}
