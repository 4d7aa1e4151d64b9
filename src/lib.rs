//! Switchyard: an LLM failover gateway.
//!
//! The modules are listed in the order a request meets them; read them top to bottom.
//! `scripts/module_cycles.py` (run by `scripts/test`) keeps them free of import circles.

// What every layer shares: the failure vocabulary, the provider names and the process's
// lifecycle (leaves), the validated config, and the composition root that holds the
// gateway's state.
pub mod failure;
pub mod provider;
pub mod lifecycle;
pub mod usage;
pub mod config;
pub mod app;

// A request's life: accepted and prepared (key checked, body located, route found), walked
// down its chain by the attempt loop (which asks health who may be tried and the policy what
// to do), sent on each entry's leg (passthrough or translated), classified, streamed through
// the commit point, or reported when every backend failed.
pub mod server;
pub mod auth;
pub mod body;
pub mod session;
pub mod failover;
pub mod health;
pub mod dialect;
pub mod upstream;
pub mod classify;
pub mod sse;
pub mod stream;
pub mod report;

// Telling operators, keeping secrets out of what leaves, handing memory back.
pub mod scrub;
pub mod alert;
pub mod metrics;
pub mod telemetry;
pub mod status;
pub mod admin;
pub mod memory;

// The simulated provider (the independent oracle the tests use) and the demo built on it,
// behind the default-on `mock` feature.
#[cfg(feature = "mock")]
pub mod mock;
pub mod demo;
