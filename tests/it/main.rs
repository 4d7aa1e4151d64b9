//! The integration suite, one binary: the gateway, mock upstreams and a hostile upstream on
//! ephemeral ports. One binary links the crate once instead of once per file; the modules share
//! `support` (the harness, the panic guard and the one log capture a process can install).

mod support;

mod admin;
mod agents;
mod alerts;
mod cli;
mod cluster;
mod failover;
mod health;
mod key_command;
mod mock;
mod providers;
mod redis;
mod reload;
mod reliability;
mod reports;
mod requests;
mod shutdown;
mod tokens;
mod responses;
mod responses_api;
mod traces;
mod translate;
mod translate_responses;
mod translate_responses_anthropic;
mod upstream_proxy;
