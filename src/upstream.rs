//! The pooled upstream client and the shape of every upstream request.
//!
//! The URL is always the backend's configured endpoint: nothing in the client's request (a
//! body field such as `api_base`, a header, a redirect from the upstream) can send a backend's
//! key anywhere else. Redirects are not followed and environment proxies are ignored unless
//! the config opts in (`upstream.proxy`; see [`Connector`]).
//!
//! This is hyper-util's pooled client directly, not reqwest: the endpoint `Uri` and each key's
//! auth header are built once at config load, so a request costs no URL parsing, no redirect
//! policy and no header formatting (reqwest's URL re-parsing alone was ~10 % of the gateway's
//! instructions per request; see BENCHMARKS.md).

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use http::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use http_body_util::{BodyDataStream, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::{timeout_at, Instant};

use crate::classify;
use crate::config::{Backend, Config, UpstreamProxy};
use crate::dialect::leg::Leg;
use crate::dialect::Dialect;
use crate::failure::{Classified, TimeoutKind};

/// An upstream response body as a stream of chunks, as hyper reads them.
pub type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// A response body from upstream: hyper's, or (in the engine's unit tests) a scripted one.
pub enum UpstreamBody {
    Hyper(Incoming),
    Scripted(ByteStream),
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamBody::Hyper(_) => "UpstreamBody::Hyper",
            UpstreamBody::Scripted(_) => "UpstreamBody::Scripted",
        })
    }
}

impl UpstreamBody {
    /// The next data chunk (trailers skipped); `None` at the end.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, UpstreamError>> {
        match self {
            UpstreamBody::Hyper(body) => loop {
                match body.frame().await? {
                    Ok(frame) => match frame.into_data() {
                        Ok(data) => return Some(Ok(data)),
                        Err(_trailers) => continue,
                    },
                    Err(e) => return Some(Err(UpstreamError::Body(e))),
                }
            },
            UpstreamBody::Scripted(s) => futures_util::StreamExt::next(s).await,
        }
    }
}

/// Client headers that carry meaning for a same-dialect backend; all others are dropped.
#[derive(Debug, Clone, Default)]
pub struct ForwardHeaders {
    pub anthropic_version: Option<HeaderValue>,
    pub anthropic_beta: Option<HeaderValue>,
    /// W3C trace context, forwarded on every leg (see `telemetry::TraceHeaders`).
    pub trace: crate::telemetry::TraceHeaders,
}

impl ForwardHeaders {
    pub fn from_client(headers: &HeaderMap) -> ForwardHeaders {
        ForwardHeaders {
            anthropic_version: headers.get(&ANTHROPIC_VERSION).cloned(),
            anthropic_beta: headers.get(&ANTHROPIC_BETA).cloned(),
            trace: crate::telemetry::TraceHeaders::from_client(headers),
        }
    }
}

/// Everything one upstream attempt needs.
pub struct Call<'a> {
    pub backend: &'a Backend,
    /// Where on the backend: its generate endpoint, or a side endpoint (`Backend::uri_for`).
    pub uri: &'a http::Uri,
    /// The credential's ready-made auth header value (see `config::auth_header_value`).
    pub auth: Option<HeaderValue>,
    pub body: Bytes,
    pub stream: bool,
    /// How the request crosses to this backend (decides which client headers follow it).
    pub leg: Leg,
    pub fwd: &'a ForwardHeaders,
    pub connect_timeout: Duration,
}

/// A failure to get a response, or to read its body, from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No response head: connect, TLS, writing the request, or the connection closed first.
    #[error("{}", if .0.is_connect() { "connect error" } else { "request error" })]
    Send(#[source] hyper_util::client::legacy::Error),
    /// The response body broke off (reset, truncated chunking, …).
    #[error("error reading response body")]
    Body(#[source] hyper::Error),
    /// A scripted transport failure (the engine's unit tests).
    #[error("scripted transport error")]
    Scripted(#[source] std::io::Error),
}

impl UpstreamError {
    pub fn is_connect(&self) -> bool {
        matches!(self, UpstreamError::Send(e) if e.is_connect())
    }

    /// The connect phase ran out of `connect_timeout` (the connector reports it as an I/O
    /// `TimedOut` under its connect error).
    pub fn is_connect_timeout(&self) -> bool {
        use std::error::Error;
        if !self.is_connect() {
            return false;
        }
        let mut cur: Option<&(dyn Error + 'static)> = self.source();
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return true;
                }
            }
            cur = e.source();
        }
        false
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<Connector>, Full<Bytes>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The TCP connector under TLS: straight to the backend, or — for the hosts the operator's
/// proxy rules cover — a CONNECT tunnel through the proxy (TLS stays end to end with the
/// backend; the proxy sees only the host and port).
#[derive(Clone)]
struct Connector {
    direct: HttpConnector,
    proxy: Option<std::sync::Arc<Matcher>>,
}

impl tower::Service<http::Uri> for Connector {
    type Response = <HttpConnector as tower::Service<http::Uri>>::Response;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.direct, cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let Some(via) = self.proxy.as_ref().and_then(|m| m.intercept(&dst)) else {
            let connecting = tower::Service::call(&mut self.direct, dst);
            return Box::pin(async move { connecting.await.map_err(Into::into) });
        };
        let mut tunnel = Tunnel::new(via.uri().clone(), self.direct.clone());
        if let Some(auth) = via.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        // The tunnel assumes 443 for a URI without a port; an http:// backend means 80.
        let dst = with_default_port(dst);
        Box::pin(async move {
            std::future::poll_fn(|cx| tower::Service::poll_ready(&mut tunnel, cx)).await?;
            Ok(tower::Service::call(&mut tunnel, dst).await?)
        })
    }
}

fn with_default_port(dst: http::Uri) -> http::Uri {
    if dst.port().is_some() {
        return dst;
    }
    let port = if dst.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    let Some(host) = dst.host() else { return dst };
    let mut parts = dst.clone().into_parts();
    match format!("{host}:{port}").parse() {
        Ok(authority) => {
            parts.authority = Some(authority);
            http::Uri::from_parts(parts).unwrap_or(dst)
        }
        Err(_) => dst,
    }
}

/// The proxy rules as hyper-util's matcher (`NO_PROXY` syntax for the bypass list).
fn proxy_matcher(proxy: &UpstreamProxy) -> Option<std::sync::Arc<Matcher>> {
    let UpstreamProxy::Via(rules) = proxy else {
        return None;
    };
    let mut b = Matcher::builder();
    if let Some(http) = &rules.http {
        b = b.http(http.as_str());
    }
    if let Some(https) = &rules.https {
        b = b.https(https.as_str());
    }
    Some(std::sync::Arc::new(b.no(rules.no_proxy.as_str()).build()))
}

/// Also how the server tells an Anthropic SDK client without a path to go by (`/v1/models`).
pub(crate) static ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
static ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");
static JSON: HeaderValue = HeaderValue::from_static("application/json");
static EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
static UA: HeaderValue =
    HeaderValue::from_static(concat!("switchyard/", env!("CARGO_PKG_VERSION")));

/// One pooled client per distinct connect timeout (the connector holds it); built once.
/// In the engine's unit tests a scripted transport can stand in for the network.
pub struct Upstream {
    #[cfg(test)]
    pub(crate) scripted: Option<ScriptedTransport>,
    clients: HashMap<Duration, HttpsClient>,
    proxy: Option<std::sync::Arc<Matcher>>,
    /// Anthropic version headers per backend, pre-built (the configured default).
    anthropic_versions: Vec<Option<HeaderValue>>,
    /// `Host` per backend, pre-built (the client would format it for every request).
    hosts: Vec<Option<HeaderValue>>,
}

impl Upstream {
    pub fn new(config: &Config) -> Result<Upstream, rustls::Error> {
        let tls = tls_config()?;
        let proxy = proxy_matcher(&config.upstream_proxy);
        let mut clients = HashMap::new();
        for t in config
            .routes
            .values()
            .map(|r| r.failover.connect_timeout)
            .chain(std::iter::once(config.failover.connect_timeout))
        {
            clients
                .entry(t)
                .or_insert_with(|| build_client(t, tls.clone(), proxy.clone()));
        }
        let anthropic_versions = config
            .backends
            .iter()
            .map(|b| HeaderValue::from_str(&b.anthropic_version).ok())
            .collect();
        let hosts = config
            .backends
            .iter()
            .map(|b| host_header(&b.endpoint_uri))
            .collect();
        Ok(Upstream {
            #[cfg(test)]
            scripted: None,
            clients,
            proxy,
            anthropic_versions,
            hosts,
        })
    }

    fn client(&self, connect_timeout: Duration) -> HttpsClient {
        match self.clients.get(&connect_timeout) {
            Some(c) => c.clone(),
            // Every configured timeout has its client; another one still gets a correct client.
            None => build_client(
                connect_timeout,
                tls_config().expect("TLS config builds"),
                self.proxy.clone(),
            ),
        }
    }

    /// Sends one attempt; `call.body` is already rewritten for the entry. Resolves at the
    /// response head; the body is read by the caller.
    pub fn send(
        &self,
        call: Call<'_>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'static {
        #[cfg(test)]
        if let Some(script) = &self.scripted {
            return futures_util::future::Either::Left(script(&call));
        }
        let fut = self.send_hyper(call);
        #[cfg(test)]
        let fut = futures_util::future::Either::Right(fut);
        fut
    }

    fn send_hyper(
        &self,
        call: Call<'_>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'static {
        let Call {
            backend,
            uri,
            auth,
            body,
            stream,
            leg,
            fwd,
            connect_timeout,
        } = call;
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri.clone();
        let h = req.headers_mut();
        h.insert(CONTENT_TYPE, JSON.clone());
        h.insert(
            ACCEPT,
            if stream {
                EVENT_STREAM.clone()
            } else {
                JSON.clone()
            },
        );
        h.insert(USER_AGENT, UA.clone());
        if let Some(host) = &self.hosts[backend.id.0] {
            h.insert(HOST, host.clone());
        }
        // The configured headers first: nothing the gateway sets itself can be overridden
        // (config refuses those names), and no client header ever reaches this list.
        for (name, value) in &backend.extra_headers {
            h.insert(name.clone(), value.clone());
        }
        if let (Some(auth), Some(name)) = (auth, backend.auth.header_name()) {
            h.insert(name, auth);
        }
        fwd.trace.apply(h);
        match backend.api {
            Dialect::OpenAi | Dialect::Responses => {}
            Dialect::Anthropic => {
                let same = leg.forwards_anthropic_headers();
                let version = fwd
                    .anthropic_version
                    .as_ref()
                    .filter(|_| same)
                    .or(self.anthropic_versions[backend.id.0].as_ref());
                if let Some(v) = version {
                    h.insert(ANTHROPIC_VERSION.clone(), v.clone());
                }
                if let Some(beta) = fwd.anthropic_beta.as_ref().filter(|_| same) {
                    h.insert(ANTHROPIC_BETA.clone(), beta.clone());
                }
            }
        }
        let fut = self.client(connect_timeout).request(req);
        async move {
            fut.await
                .map(|r| r.map(UpstreamBody::Hyper))
                .map_err(UpstreamError::Send)
        }
    }
}

/// Answers every call instead of the network (the engine's unit tests).
#[cfg(test)]
pub(crate) type ScriptedTransport =
    std::sync::Arc<dyn Fn(&Call<'_>) -> ScriptedAnswer + Send + Sync>;

/// A scripted answer: the future of a response head (the engine's unit tests).
#[cfg(test)]
pub(crate) type ScriptedAnswer = std::pin::Pin<
    Box<dyn Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send + 'static>,
>;

/// The body as a stream of data chunks (trailers skipped).
pub fn body_stream(body: UpstreamBody) -> ByteStream {
    match body {
        UpstreamBody::Hyper(body) => {
            Box::pin(BodyDataStream::new(body).map_err(UpstreamError::Body))
        }
        UpstreamBody::Scripted(s) => s,
    }
}

/// `host[:port]`, the port only when it is not the scheme's default (as HTTP clients send it).
fn host_header(uri: &http::Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default_port = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    match uri.port_u16() {
        Some(p) if p != default_port => HeaderValue::from_str(&format!("{host}:{p}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

/// rustls with ring and the Mozilla roots (webpki-roots): no OpenSSL, no system store.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// Idle upstream connections kept per backend host (nginx's `keepalive` in spirit): steady load
/// reuses far fewer than this at once; past it a burst's connections close when they come back
/// instead of each holding hyper's ~30 KB of buffers for the idle timeout. With 1,024 a burst of
/// 2,000 streams left ~31 MB resident 30 s later (BENCHMARKS.md, memory after a burst).
const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// How long an idle upstream connection is kept for reuse.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

fn build_client(
    connect_timeout: Duration,
    tls: rustls::ClientConfig,
    proxy: Option<std::sync::Arc<Matcher>>,
) -> HttpsClient {
    let mut direct = HttpConnector::new();
    direct.enforce_http(false);
    direct.set_nodelay(true);
    direct.set_connect_timeout(Some(connect_timeout));
    let http = Connector { direct, proxy };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        // HTTP/1.1 only, one connection per concurrent attempt: over HTTP/2 every stream to a
        // provider would share one connection, so one reset would fail them all over at once,
        // and past the server's stream limit new requests would queue unseen behind the TTFT.
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .pool_timer(TokioTimer::new())
        // `Host` comes pre-built from `Upstream::send`.
        .set_host(false)
        .build(https)
}

/// Reads a response body, bounded in size, in the time between chunks, and by the deadline.
/// With `truncate`, a body over `limit` is cut (error bodies; the flag says so); otherwise it
/// is a failure.
pub async fn read_body(
    mut body: UpstreamBody,
    limit: usize,
    stall: Duration,
    deadline: Instant,
    truncate: bool,
) -> Result<(Bytes, bool), Classified> {
    let mut truncated = false;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    loop {
        let wait_until = (Instant::now() + stall).min(deadline);
        let chunk = match timeout_at(wait_until, body.next_chunk()).await {
            Err(_) => {
                let kind = if wait_until >= deadline {
                    TimeoutKind::Deadline
                } else {
                    TimeoutKind::Stall
                };
                return Err(classify::timeout(kind, stall));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(classify::classify_transport(&e)),
            Ok(Some(Ok(chunk))) => chunk,
        };
        let len = first.as_ref().map_or(0, Bytes::len) + rest.as_ref().map_or(0, BytesMut::len);
        if len + chunk.len() > limit {
            if truncate {
                truncated = true;
                break;
            }
            return Err(classify::invalid_response(format!(
                "response body larger than {limit} bytes"
            )));
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(f.len() + chunk.len());
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    let body = match rest {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    };
    Ok((body, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{classify_transport, FailureReason};

    fn config(base_url: &str) -> Config {
        let yaml = format!(
            "backends:\n  b: {{ api: anthropic_messages, base_url: \"{base_url}\", api_key_env: K }}\n\
             routes:\n  r: {{ chain: [{{ backend: b, model: m }}] }}\n"
        );
        Config::from_yaml(&yaml, "t.yaml", &|_| Some("sk-test-key".into())).unwrap()
    }

    fn call<'a>(config: &'a Config, fwd: &'a ForwardHeaders, timeout: Duration) -> Call<'a> {
        let backend = &config.backends[0];
        Call {
            backend,
            uri: &backend.endpoint_uri,
            auth: Some(backend.credentials[0].auth_header()),
            body: Bytes::from_static(b"{}"),
            stream: true,
            leg: Leg::new(Dialect::Anthropic, Dialect::Anthropic),
            fwd,
            connect_timeout: timeout,
        }
    }

    #[test]
    fn host_headers_carry_the_port_only_when_it_is_not_the_default() {
        for (uri, host) in [
            (
                "https://api.openai.com/v1/chat/completions",
                "api.openai.com",
            ),
            (
                "https://api.anthropic.com:443/v1/messages",
                "api.anthropic.com",
            ),
            ("http://127.0.0.1:8082/v1/messages", "127.0.0.1:8082"),
            ("http://localhost/v1/messages", "localhost"),
            ("https://example.com:8443/v1", "example.com:8443"),
            ("http://[::1]:9000/v1", "[::1]:9000"),
        ] {
            let got = host_header(&uri.parse().unwrap()).unwrap();
            assert_eq!(got, host, "{uri}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connection_failure_with_its_cause_not_a_timeout() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let config = config(&format!("http://127.0.0.1:{port}"));
        let upstream = Upstream::new(&config).unwrap();
        let fwd = ForwardHeaders::default();
        let err = upstream
            .send(call(&config, &fwd, Duration::from_secs(1)))
            .await
            .unwrap_err();
        assert!(err.is_connect() && !err.is_connect_timeout(), "{err:?}");
        let c = classify_transport(&err);
        assert_eq!(c.reason, FailureReason::Connection);
        assert!(
            c.detail.starts_with("connect error: ") && c.detail.contains("refused"),
            "{}",
            c.detail
        );
    }

    #[tokio::test]
    async fn the_request_carries_the_configured_endpoint_key_version_and_body_only() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !got.ends_with(b"{}") {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed early");
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let config = config(&format!("http://{addr}/base"));
        let upstream = Upstream::new(&config).unwrap();
        let fwd = ForwardHeaders {
            anthropic_version: Some(HeaderValue::from_static("2099-01-01")),
            anthropic_beta: Some(HeaderValue::from_static("b1")),
            ..Default::default()
        };
        let resp = upstream
            .send(call(&config, &fwd, Duration::from_secs(1)))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let raw = server.await.unwrap().to_ascii_lowercase();
        assert!(
            raw.starts_with("post /base/v1/messages http/1.1\r\n"),
            "{raw}"
        );
        for line in [
            "x-api-key: sk-test-key\r\n",
            "anthropic-version: 2099-01-01\r\n",
            "anthropic-beta: b1\r\n",
            "accept: text/event-stream\r\n",
            "content-type: application/json\r\n",
            "content-length: 2\r\n",
            &format!("host: {addr}\r\n"),
        ] {
            assert!(raw.contains(line), "missing {line:?} in {raw}");
        }
        assert!(!raw.contains("authorization"), "{raw}");
    }
}
