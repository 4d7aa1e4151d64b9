//! Sharing sessions across replicas: the per-session state that decides where a request goes,
//! and the wire format of its changes (the store's task publishes them and runs the
//! subscriber, [`super::redis_store::spawn_feed`]).
//!
//! Behind a load balancer the calls of one agent turn (its main call, its tool-loop calls, its
//! title call) land on different replicas. Two changes travel between them:
//!
//! - **Turn exclusions.** A scope that failed for a (session, turn) on one replica is excluded
//!   for that turn on every replica, and the turn becomes the session's current one there too
//!   (its side calls join it), even after the scope's cooldown ended.
//! - **Sticky entries** (`health.sticky_sessions`): where a session that failed over stays.
//!
//! Both are *changes*: a scope newly excluded (a failure), a sticky entry that moved (a
//! failover). The store's task publishes them on `{prefix}:sessions`, batched as it drains its
//! queue, and a subscriber task on its own pub/sub connection applies the others' changes locally
//! without publishing them again. Nothing on a request's path touches Redis: a request only
//! `try_send`s into the store's bounded queue. Scopes travel by their stable key and chain
//! entries by (route, backend, model) names, never by index, since replicas may run different
//! configs during a rollout; a name this replica does not know is ignored.
//!
//! Pub/sub keeps no history: a replica disconnected from Redis misses the changes made
//! meanwhile (its own state still holds, and it resubscribes with backoff, at once when the
//! store's task sees Redis again). A message from Redis is input from outside: it is parsed
//! with caps on its size, its number of changes and every string in it, and never panics.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::sessions::Sessions;
use super::{RemoteOp, ScopeId};
use crate::config::Config;
use crate::session::MAX_ID_LEN;

/// The longest message read; anything longer is dropped unparsed.
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Most changes applied from one message (the store publishes at most this many per message).
pub const MAX_CHANGES: usize = 64;
/// The longest session or turn id: a client's id (at most [`MAX_ID_LEN`]) plus its source's
/// prefix.
pub const MAX_SESSION_LEN: usize = MAX_ID_LEN + 256;
/// The longest scope key, route, backend or model name.
pub const MAX_NAME_LEN: usize = 1024;
/// Wire format version; messages of another version are ignored.
const VERSION: u32 = 1;

/// A route's chain as (backend name, model), in entry order.
type Chain = Vec<(Arc<str>, Arc<str>)>;

/// How this replica names what a change refers to, both ways: scopes by stable key, chain
/// entries by (route, backend, model).
pub struct Names {
    keys: Vec<String>,
    scopes: HashMap<String, ScopeId>,
    /// Route name (as the config holds it) and its chain as (backend name, model).
    routes: HashMap<Arc<str>, (Arc<str>, Chain)>,
}

impl Names {
    /// `keys`: the registry's scope keys in `ScopeId` order.
    pub fn new(config: &Config, keys: Vec<String>) -> Names {
        let scopes = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), ScopeId(i as u32)))
            .collect();
        let routes = config
            .routes
            .iter()
            .map(|(name, route)| {
                let chain = route
                    .chain
                    .iter()
                    .map(|e| (config.backend(e.backend).name.clone(), e.model.clone()))
                    .collect();
                (name.clone(), (name.clone(), chain))
            })
            .collect();
        Names {
            keys,
            scopes,
            routes,
        }
    }

    /// This replica's changes as messages (one per [`MAX_CHANGES`], each under
    /// [`MAX_PAYLOAD`]); changes that cannot be named are left out.
    pub fn encode(&self, from: &str, ops: &[&RemoteOp]) -> Vec<String> {
        let mut messages = Vec::new();
        let mut changes: Vec<WireChange> = Vec::new();
        let mut size = 0;
        for op in ops {
            let Some(change) = self.name(op) else {
                continue;
            };
            let len = change.approx_len();
            if !changes.is_empty() && (changes.len() == MAX_CHANGES || size + len > MAX_PAYLOAD / 2)
            {
                messages.push(wire(from, std::mem::take(&mut changes)));
                size = 0;
            }
            size += len;
            changes.push(change);
        }
        if !changes.is_empty() {
            messages.push(wire(from, changes));
        }
        messages
    }

    fn name(&self, op: &RemoteOp) -> Option<WireChange> {
        let change = match op {
            RemoteOp::Excluded {
                session,
                turn,
                scope,
            } => WireChange::Excluded {
                session: session.to_string(),
                turn: turn.to_string(),
                scope: self.keys.get(scope.0 as usize)?.clone(),
            },
            RemoteOp::Sticky {
                session,
                route,
                entry,
            } => {
                let (_, chain) = self.routes.get(route)?;
                let (backend, model) = chain.get(*entry)?;
                WireChange::Sticky {
                    session: session.to_string(),
                    route: route.to_string(),
                    backend: backend.to_string(),
                    model: model.to_string(),
                }
            }
            _ => return None,
        };
        change.within_caps().then_some(change)
    }

    /// Another replica's changes, as far as this replica knows what they name. `own`: this
    /// replica's id (its own messages are skipped). Garbage, an oversized message, another
    /// version or unknown names give nothing.
    pub fn decode(&self, payload: &[u8], own: &str) -> Vec<Change> {
        if payload.len() > MAX_PAYLOAD {
            return Vec::new();
        }
        let Ok(message) = serde_json::from_slice::<Wire>(payload) else {
            return Vec::new();
        };
        if message.v != VERSION || message.from == own {
            return Vec::new();
        }
        message
            .changes
            .into_iter()
            .take(MAX_CHANGES)
            .filter(WireChange::within_caps)
            .filter_map(|c| self.resolve(c))
            .collect()
    }

    fn resolve(&self, change: WireChange) -> Option<Change> {
        match change {
            WireChange::Excluded {
                session,
                turn,
                scope,
            } => Some(Change::Excluded {
                session,
                turn,
                scope: *self.scopes.get(&scope)?,
            }),
            WireChange::Sticky {
                session,
                route,
                backend,
                model,
            } => {
                let (route, chain) = self.routes.get(route.as_str())?;
                let entry = chain
                    .iter()
                    .position(|(b, m)| **b == *backend && **m == *model)?;
                Some(Change::Sticky {
                    session,
                    route: route.clone(),
                    entry,
                })
            }
            WireChange::Unknown => None,
        }
    }
}

/// A change another replica made, in this replica's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Excluded {
        session: String,
        turn: String,
        scope: ScopeId,
    },
    Sticky {
        session: String,
        route: Arc<str>,
        entry: usize,
    },
}

impl Change {
    pub fn apply(self, sessions: &Sessions, now: Instant) {
        match self {
            Change::Excluded {
                session,
                turn,
                scope,
            } => sessions.apply_remote_exclusion(&session, &turn, scope, now),
            Change::Sticky {
                session,
                route,
                entry,
            } => sessions.apply_remote_sticky(&session, &route, entry, now),
        }
    }
}

/// One message on `{prefix}:sessions`.
#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    /// The publishing replica.
    from: String,
    changes: Vec<WireChange>,
}

fn wire(from: &str, changes: Vec<WireChange>) -> String {
    let message = Wire {
        v: VERSION,
        from: from.to_string(),
        changes,
    };
    serde_json::to_string(&message).unwrap_or_default()
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireChange {
    Excluded {
        session: String,
        turn: String,
        scope: String,
    },
    Sticky {
        session: String,
        route: String,
        backend: String,
        model: String,
    },
    /// A kind from a newer replica: skipped.
    #[serde(other)]
    Unknown,
}

impl WireChange {
    fn within_caps(&self) -> bool {
        let id = |s: &str| !s.is_empty() && s.len() <= MAX_SESSION_LEN;
        let name = |s: &str| !s.is_empty() && s.len() <= MAX_NAME_LEN;
        match self {
            WireChange::Excluded {
                session,
                turn,
                scope,
            } => id(session) && id(turn) && name(scope),
            WireChange::Sticky {
                session,
                route,
                backend,
                model,
            } => id(session) && name(route) && name(backend) && name(model),
            WireChange::Unknown => false,
        }
    }

    /// Bytes of its strings (JSON escaping at most doubles them).
    fn approx_len(&self) -> usize {
        let strings = match self {
            WireChange::Excluded {
                session,
                turn,
                scope,
            } => session.len() + turn.len() + scope.len(),
            WireChange::Sticky {
                session,
                route,
                backend,
                model,
            } => session.len() + route.len() + backend.len() + model.len(),
            WireChange::Unknown => 0,
        };
        strings + 80
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn names() -> Names {
        let yaml = "backends:\n  a: { api: openai_chat, base_url: \"http://a/v1\" }\n  b: { api: openai_chat, base_url: \"http://b/v1\" }\nroutes:\n  r: { chain: [ { backend: a, model: m1 }, { backend: b, model: m2 } ] }\n";
        let config = Config::from_yaml(yaml, "t.yaml", &|_| None).unwrap();
        let registry = super::super::HealthRegistry::new(&config, None);
        Names::new(&config, registry.all_keys())
    }

    fn excluded(session: &str, turn: &str, scope: u32) -> RemoteOp {
        RemoteOp::Excluded {
            session: session.into(),
            turn: turn.into(),
            scope: ScopeId(scope),
        }
    }

    #[test]
    fn changes_round_trip_by_name_and_a_replica_skips_its_own() {
        let n = names();
        let sticky = RemoteOp::Sticky {
            session: "claude_code:6aba".into(),
            route: "r".into(),
            entry: 1,
        };
        let ops = [excluded("s1", "t1", 1), sticky];
        let messages = n.encode("replica-a", &ops.iter().collect::<Vec<_>>());
        assert_eq!(messages.len(), 1);
        let got = n.decode(messages[0].as_bytes(), "replica-b");
        assert_eq!(
            got,
            vec![
                Change::Excluded {
                    session: "s1".into(),
                    turn: "t1".into(),
                    scope: ScopeId(1),
                },
                Change::Sticky {
                    session: "claude_code:6aba".into(),
                    route: "r".into(),
                    entry: 1,
                },
            ]
        );
        assert!(n.decode(messages[0].as_bytes(), "replica-a").is_empty());
    }

    #[test]
    fn many_changes_are_split_into_bounded_messages() {
        let n = names();
        let ops: Vec<RemoteOp> = (0..150)
            .map(|i| excluded(&format!("s{i}"), &"t".repeat(MAX_SESSION_LEN), 0))
            .collect();
        let messages = n.encode("a", &ops.iter().collect::<Vec<_>>());
        let mut total = 0;
        for m in &messages {
            assert!(m.len() <= MAX_PAYLOAD, "{}", m.len());
            let got = n.decode(m.as_bytes(), "b");
            assert!(got.len() <= MAX_CHANGES);
            total += got.len();
        }
        assert_eq!(total, 150);
    }

    #[test]
    fn hostile_messages_give_nothing_and_never_panic() {
        let n = names();
        let scope = n.keys[0].clone();
        let ok = |session: &str, turn: &str, scope: &str| {
            serde_json::json!({"v": 1, "from": "x", "changes": [
                {"kind": "excluded", "session": session, "turn": turn, "scope": scope}
            ]})
            .to_string()
        };
        assert_eq!(n.decode(ok("s", "t", &scope).as_bytes(), "me").len(), 1);
        let hostile: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"garbage".to_vec(),
            vec![0xff, 0xfe, 0x00, b'{'],
            b"{\"v\":1,\"from\":\"x\",\"changes\":".to_vec(),
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec(),
            b"{\"v\":1,\"from\":7,\"changes\":[]}".to_vec(),
            // Another version.
            ok("s", "t", &scope).replace("\"v\":1", "\"v\":2").into_bytes(),
            // An unknown scope key (a replica with another config).
            ok("s", "t", "backend|openai_chat|http://elsewhere:80/v1").into_bytes(),
            // Empty and oversized ids.
            ok("", "t", &scope).into_bytes(),
            ok(&"s".repeat(MAX_SESSION_LEN + 1), "t", &scope).into_bytes(),
            ok("s", &"t".repeat(MAX_SESSION_LEN + 1), &scope).into_bytes(),
            // Oversized as a whole: dropped before parsing.
            ok(&"s".repeat(MAX_PAYLOAD), "t", &scope).into_bytes(),
            // Wrong types, an unknown kind, a sticky entry this config does not have.
            br#"{"v":1,"from":"x","changes":[{"kind":"excluded","session":1,"turn":"t","scope":"k"}]}"#.to_vec(),
            br#"{"v":1,"from":"x","changes":[{"kind":"teleport","session":"s"}]}"#.to_vec(),
            br#"{"v":1,"from":"x","changes":[{"kind":"sticky","session":"s","route":"r","backend":"a","model":"m9"}]}"#.to_vec(),
            br#"{"v":1,"from":"x","changes":[{"kind":"sticky","session":"s","route":"nope","backend":"a","model":"m1"}]}"#.to_vec(),
        ];
        for payload in &hostile {
            assert!(
                n.decode(payload, "me").is_empty(),
                "{}",
                String::from_utf8_lossy(&payload[..payload.len().min(200)])
            );
        }
        // Too many changes: only the first MAX_CHANGES count.
        let many: Vec<_> = (0..500)
            .map(|i| serde_json::json!({"kind": "excluded", "session": format!("s{i}"), "turn": "t", "scope": scope}))
            .collect();
        let payload = serde_json::json!({"v": 1, "from": "x", "changes": many}).to_string();
        assert_eq!(n.decode(payload.as_bytes(), "me").len(), MAX_CHANGES);
        // An unknown kind next to a known one: the known one still applies.
        let mixed = format!(
            r#"{{"v":1,"from":"x","extra":true,"changes":[{{"kind":"teleport"}},{{"kind":"excluded","session":"s","turn":"t","scope":"{scope}"}}]}}"#
        );
        assert_eq!(n.decode(mixed.as_bytes(), "me").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remote_exclusion_makes_its_turn_current_and_is_not_published_again() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let s =
            Sessions::new(10, Duration::from_secs(60), Duration::from_secs(60)).shared_through(tx);
        let now = Instant::now();
        s.apply_remote_exclusion("s", "t1", ScopeId(3), now);
        assert_eq!(s.current_turn("s", now).as_deref(), Some("t1"));
        let key = crate::health::sessions::SessionKey {
            session: "s".into(),
            turn: Some("t1".into()),
        };
        assert_eq!(s.excluded(&key, now), vec![ScopeId(3)]);
        s.apply_remote_sticky("s", &"r".into(), 1, now);
        assert_eq!(s.sticky_entry(&key, &"r".into(), now), Some(1));
        assert!(
            rx.try_recv().is_err(),
            "a remote change was published again"
        );
        // A local exclusion already known is not published; a new one is, once.
        s.exclude(&key, ScopeId(3), now);
        assert!(rx.try_recv().is_err());
        s.exclude(&key, ScopeId(4), now);
        s.exclude(&key, ScopeId(4), now);
        assert!(matches!(rx.try_recv(), Ok(RemoteOp::Excluded { .. })));
        assert!(rx.try_recv().is_err());
        // A sticky entry is published when it changes, not when it is set again.
        s.set_sticky(&key, &"r".into(), 1, now);
        assert!(rx.try_recv().is_err());
        s.set_sticky(&key, &"r".into(), 0, now);
        assert!(matches!(
            rx.try_recv(),
            Ok(RemoteOp::Sticky { entry: 0, .. })
        ));
    }
}
