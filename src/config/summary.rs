//! What a valid config serves, in a few lines: the output of `switchyard check`.

use std::fmt::Write;

use super::{Config, HealthStore};

impl Config {
    /// A short human summary: listener, backends, routes, alert sinks. Names only, never a
    /// key or a URL's userinfo.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let reach = if self.listen.ip().to_canonical().is_loopback() {
            "this machine only"
        } else {
            "reachable from other machines"
        };
        let keys = match self.gateway_keys.len() {
            0 if self.allow_open_relay => "no gateway keys: open relay allowed".to_string(),
            0 => "no gateway keys".to_string(),
            1 => "1 gateway key".to_string(),
            n => format!("{n} gateway keys"),
        };
        let _ = writeln!(out, "listen:   {} ({reach}; {keys})", self.listen);
        let backends: Vec<String> = self
            .backends
            .iter()
            .map(|b| {
                let keys = match b.credentials.len() {
                    0 => "no key".to_string(),
                    1 => "1 key".to_string(),
                    n => format!("{n} keys"),
                };
                format!("{} ({}, {keys})", b.name, b.api.as_str())
            })
            .collect();
        let _ = writeln!(out, "backends: {}: {}", backends.len(), backends.join(", "));
        let default = self.default_route.as_ref().map(|r| r.name.clone());
        let routes: Vec<String> = self
            .route_names
            .iter()
            .map(|name| {
                let route = &self.routes[name];
                let chain: Vec<String> = route
                    .chain
                    .iter()
                    .map(|e| format!("{}:{}", self.backend(e.backend).name, e.model))
                    .collect();
                let mark = if default.as_deref() == Some(&**name) {
                    " (default)"
                } else {
                    ""
                };
                format!("{name}{mark} = {}", chain.join(" → "))
            })
            .collect();
        let _ = writeln!(out, "routes:   {}: {}", routes.len(), routes.join("; "));
        let store = match self.health.store {
            HealthStore::Memory => "memory (this replica)",
            HealthStore::Redis => "redis (shared by replicas)",
        };
        let _ = writeln!(out, "health:   {store}");
        if !self.alerts.sinks.is_empty() {
            let sinks: Vec<String> = self
                .alerts
                .sinks
                .iter()
                .map(|s| match &s.disabled {
                    Some(why) => format!("{} off ({why})", s.name),
                    None => s.name.clone(),
                })
                .collect();
            let _ = writeln!(out, "alerts:   {}", sinks.join(", "));
        }
        out
    }
}
