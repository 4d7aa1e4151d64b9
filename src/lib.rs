//! Switchyard: an LLM failover gateway.
//!
//! Modules follow the request's life: `config` → `server` (request in, `body` located) →
//! `failover` (the attempt loop and its policy) → `upstream` → `classify` → `stream` (the commit
//! point, response out) → `report` (when every backend failed). `mock` is the fault-injecting
//! upstream used by tests, the demo and the benchmarks.

pub mod admin;
pub mod alert;
pub mod app;
pub mod auth;
pub mod body;
pub mod classify;
pub mod config;
pub mod demo;
pub mod dialect;
pub mod failover;
pub mod failure;
pub mod health;
pub mod memory;
pub mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
pub mod report;
pub mod scrub;
pub mod server;
pub mod status;
pub mod stream;
pub mod upstream;
