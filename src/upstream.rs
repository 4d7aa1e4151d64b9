//! The pooled upstream client and the shape of every upstream request.
//!
//! The URL is always the backend's configured endpoint: nothing in the client's request (a
//! body field such as `api_base`, a header, a redirect from the upstream) can send a backend's
//! key anywhere else. Redirects are not followed and environment proxies are ignored.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

use crate::config::{Backend, Config, Secret};
use crate::dialect::Dialect;

/// Client headers that carry meaning for a same-dialect backend; all others are dropped.
#[derive(Debug, Clone, Default)]
pub struct ForwardHeaders {
    pub anthropic_version: Option<HeaderValue>,
    pub anthropic_beta: Option<HeaderValue>,
}

impl ForwardHeaders {
    pub fn from_client(headers: &HeaderMap) -> ForwardHeaders {
        ForwardHeaders {
            anthropic_version: headers.get("anthropic-version").cloned(),
            anthropic_beta: headers.get("anthropic-beta").cloned(),
        }
    }
}

/// Everything one upstream attempt needs.
pub struct Call<'a> {
    pub backend: &'a Backend,
    pub key: Option<&'a Secret>,
    pub body: Bytes,
    pub stream: bool,
    pub client_dialect: Dialect,
    pub fwd: &'a ForwardHeaders,
    pub connect_timeout: Duration,
}

/// One pooled client per distinct connect timeout (reqwest sets it per client); built once.
pub struct Upstream {
    clients: HashMap<Duration, reqwest::Client>,
}

impl Upstream {
    pub fn new(config: &Config) -> Result<Upstream, reqwest::Error> {
        let mut clients = HashMap::new();
        for route in config.routes.values() {
            let t = route.failover.connect_timeout;
            if let std::collections::hash_map::Entry::Vacant(e) = clients.entry(t) {
                e.insert(build_client(t)?);
            }
        }
        Ok(Upstream { clients })
    }

    fn client(&self, connect_timeout: Duration) -> reqwest::Client {
        self.clients
            .get(&connect_timeout)
            .cloned()
            .unwrap_or_else(|| build_client(connect_timeout).expect("client builds"))
    }

    /// Builds the request for one attempt; `call.body` is already rewritten for the entry.
    pub fn request(&self, call: Call<'_>) -> reqwest::RequestBuilder {
        let Call {
            backend,
            key,
            body,
            stream,
            client_dialect,
            fwd,
            connect_timeout,
        } = call;
        let mut rb = self
            .client(connect_timeout)
            .post(backend.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::ACCEPT,
                if stream {
                    "text/event-stream"
                } else {
                    "application/json"
                },
            )
            .body(body);
        match backend.api {
            Dialect::OpenAi => {
                if let Some(key) = key {
                    rb = rb.bearer_auth(key.expose());
                }
            }
            Dialect::Anthropic => {
                if let Some(key) = key {
                    rb = rb.header("x-api-key", key.expose());
                }
                let same = client_dialect == Dialect::Anthropic;
                match fwd.anthropic_version.as_ref().filter(|_| same) {
                    Some(v) => rb = rb.header("anthropic-version", v.clone()),
                    None => rb = rb.header("anthropic-version", &*backend.anthropic_version),
                }
                if let Some(beta) = fwd.anthropic_beta.as_ref().filter(|_| same) {
                    rb = rb.header("anthropic-beta", beta.clone());
                }
            }
        }
        rb
    }
}

fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
        .build()
}
