//! OpenTelemetry traces, bridged from the gateway's own `tracing` spans: one span per client
//! request (`request`, made here) and one per upstream attempt (`attempt`, made by the attempt
//! loop), exported over OTLP/HTTP by a batch processor on its own thread.
//!
//! Off unless `config.telemetry` names an endpoint. Off, nothing here runs on the hot path but
//! an atomic load: no request span, no extra attempt field recorded, no exporter; the client's
//! `traceparent`/`tracestate` are still forwarded upstream as they came.
//!
//! On, the request span continues the client's W3C trace context (or starts a trace), each
//! attempt span is its child, and the attempt's context is what goes upstream. Exporting never
//! waits on a request: a span that finds the queue full is dropped and counted
//! (`switchyard_trace_spans_dropped_total`). No header and no body is ever recorded; failure
//! details are the scrubbed ones the logs carry.
//!
//! The subscriber is process-wide, so this is too: the binary installs [`layer`] with its
//! log layers, calls [`init`] once the config is loaded and [`shutdown`] on its way out.

use std::any::TypeId;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use hyper::body::{Frame, SizeHint};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::Registry;

use crate::config::TelemetryConfig;
use crate::dialect::{Dialect, Operation};
use crate::provider::Provider;

/// The exporter and the layer that feeds it, once [`init`] ran with an endpoint.
struct Installed {
    layer: OpenTelemetryLayer<Registry, SdkTracer>,
    provider: SdkTracerProvider,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();
/// Spans dropped because the export queue was full.
static DROPPED_QUEUE_FULL: AtomicU64 = AtomicU64::new(0);
/// Spans lost with a batch the collector did not take.
static DROPPED_EXPORT_FAILED: AtomicU64 = AtomicU64::new(0);

/// Whether spans are being exported.
#[inline]
pub fn enabled() -> bool {
    INSTALLED.get().is_some()
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry: cannot build the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("telemetry: already started")]
    AlreadyStarted,
}

/// The layer to install first on the process's `Registry`, before [`init`]: it forwards to the
/// OpenTelemetry layer once there is one, and does nothing until then.
pub fn layer() -> Deferred {
    Deferred
}

/// Starts exporting as `config` says; `Ok(false)` when it names no endpoint (tracing off).
/// Once per process. Needs [`layer`] in the subscriber to see any span.
pub fn init(config: &TelemetryConfig) -> Result<bool, TelemetryError> {
    let Some(endpoint) = &config.traces_endpoint else {
        return Ok(false);
    };
    if enabled() {
        return Err(TelemetryError::AlreadyStarted);
    }
    // Headers (`OTEL_EXPORTER_OTLP_HEADERS`), timeout and compression come from the standard
    // variables, read by the exporter itself.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: endpoint.clone(),
            source,
        })?;
    let cap = config.max_queued_spans;
    let pending = Arc::new(AtomicUsize::new(0));
    let batch = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        pending: pending.clone(),
        failing: AtomicBool::new(false),
    })
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(cap)
            .with_max_export_batch_size(cap.min(512))
            .build(),
    )
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batch,
            pending,
            cap,
        })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("switchyard");
    let layer = tracing_opentelemetry::layer::<Registry>()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_level(false)
        .with_target(false);
    INSTALLED
        .set(Installed { layer, provider })
        .map_err(|_| TelemetryError::AlreadyStarted)?;
    tracing::info!(endpoint = %endpoint, service = %config.service_name, "exporting traces over OTLP/HTTP");
    Ok(true)
}

/// Exports what is still queued and stops the exporter (bounded by the exporter's timeout).
/// For the end of a graceful shutdown; a no-op when tracing is off.
pub async fn shutdown() {
    if let Some(installed) = INSTALLED.get() {
        let provider = installed.provider.clone();
        // The flush waits on the export thread: not on a runtime worker.
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// `(queue_full, export_failed)` span drops so far, when tracing is on (for `/metrics`).
pub fn dropped_spans() -> Option<(u64, u64)> {
    enabled().then(|| {
        (
            DROPPED_QUEUE_FULL.load(Ordering::Relaxed),
            DROPPED_EXPORT_FAILED.load(Ordering::Relaxed),
        )
    })
}

/// Forwards every callback to the OpenTelemetry layer once [`init`] installed it.
pub struct Deferred;

impl Layer<Registry> for Deferred {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, Registry>,
    ) {
        if let Some(i) = INSTALLED.get() {
            i.layer.on_new_span(attrs, id, ctx)
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, Registry>,
    ) {
        if let Some(i) = INSTALLED.get() {
            i.layer.on_record(id, values, ctx)
        }
    }

    fn on_follows_from(
        &self,
        id: &tracing::span::Id,
        follows: &tracing::span::Id,
        ctx: Context<'_, Registry>,
    ) {
        if let Some(i) = INSTALLED.get() {
            i.layer.on_follows_from(id, follows, ctx)
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, Registry>) {
        if let Some(i) = INSTALLED.get() {
            i.layer.on_event(event, ctx)
        }
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: Context<'_, Registry>) {
        if let Some(i) = INSTALLED.get() {
            i.layer.on_enter(id, ctx)
        }
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: Context<'_, Registry>) {
        if let Some(i) = INSTALLED.get() {
            i.layer.on_exit(id, ctx)
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, Registry>) {
        if let Some(i) = INSTALLED.get() {
            i.layer.on_close(id, ctx)
        }
    }

    // `OpenTelemetrySpanExt` finds the layer by downcasting the subscriber: answer for it.
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: the installed layer lives in a static for the rest of the process, so a
        // pointer into it stays valid; the id is checked by the layer itself.
        INSTALLED
            .get()
            .and_then(|i| unsafe { i.layer.downcast_raw(id) })
    }
}

/// Hands spans to the batch processor while fewer than `cap` are waiting or in export, and
/// counts the rest as dropped: the request thread never waits and memory stays bounded.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    pending: Arc<AtomicUsize>,
    cap: usize,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx)
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            DROPPED_QUEUE_FULL.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// The OTLP exporter, releasing [`Bounded`]'s places once a batch is done and counting the
/// spans of a batch the collector did not take. Logs when exporting starts and stops failing
/// (not once per batch).
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    pending: Arc<AtomicUsize>,
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.pending.fetch_sub(n, Ordering::Relaxed);
        match &result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export works again");
                }
            }
            Err(e) => {
                DROPPED_EXPORT_FAILED.fetch_add(n as u64, Ordering::Relaxed);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    let error = crate::scrub::truncate_chars(&e.to_string(), 300);
                    tracing::warn!(error = %error, spans = n, "trace export failed; dropping spans until it works again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

/// The W3C trace context headers (`traceparent`, `tracestate`): the client's as they came
/// (length-capped), or the attempt span's when tracing is on.
#[derive(Debug, Clone, Default)]
pub struct TraceHeaders {
    pub traceparent: Option<HeaderValue>,
    pub tracestate: Option<HeaderValue>,
}

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
// Ready names for the per-request lookups (a `&str` name is parsed on every use).
static H_TRACEPARENT: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);
static H_TRACESTATE: http::HeaderName = http::HeaderName::from_static(TRACESTATE);

impl TraceHeaders {
    /// The client's headers; overlong ones are not forwarded (a `traceparent` is 55
    /// characters today; the spec bounds `tracestate` at 32 members).
    pub fn from_client(headers: &HeaderMap) -> TraceHeaders {
        let capped = |name: &http::HeaderName, max: usize| {
            headers
                .get(name)
                .filter(|v| !v.is_empty() && v.len() <= max)
                .cloned()
        };
        let traceparent = capped(&H_TRACEPARENT, 256);
        // A tracestate without its traceparent means nothing.
        let tracestate = traceparent
            .as_ref()
            .and_then(|_| capped(&H_TRACESTATE, 1024));
        TraceHeaders {
            traceparent,
            tracestate,
        }
    }

    /// What goes upstream for an attempt: the attempt span's context when tracing is on (the
    /// client's trace continued), else the client's headers unchanged.
    pub fn for_attempt(&self, attempt: &Span) -> TraceHeaders {
        if !enabled() || attempt.is_disabled() {
            return self.clone();
        }
        let mut out = TraceHeaders::default();
        TraceContextPropagator::new().inject_context(&attempt.context(), &mut out);
        out
    }

    /// Sets the headers on an upstream request.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(v) = &self.traceparent {
            headers.insert(H_TRACEPARENT.clone(), v.clone());
        }
        if let Some(v) = &self.tracestate {
            headers.insert(H_TRACESTATE.clone(), v.clone());
        }
    }
}

impl Injector for TraceHeaders {
    fn set(&mut self, key: &str, value: String) {
        let value = HeaderValue::from_str(&value).ok().filter(|v| !v.is_empty());
        match key {
            TRACEPARENT => self.traceparent = value,
            TRACESTATE => self.tracestate = value,
            _ => {}
        }
    }
}

struct ClientHeaders<'a>(&'a HeaderMap);

impl Extractor for ClientHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// `gen_ai.operation.name` for an operation (GenAI semantic conventions; count_tokens has no
/// name there and keeps its own).
fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Generate => "chat",
        Operation::Embeddings => "embeddings",
        Operation::CountTokens => "count_tokens",
    }
}

/// `gen_ai.provider.name`: the conventions' well-known value where there is one.
pub fn provider_name(provider: Option<Provider>, api: Dialect) -> &'static str {
    match provider {
        Some(Provider::Gemini) => "gcp.gemini",
        Some(Provider::Mistral) => "mistral_ai",
        Some(Provider::Xai) => "x_ai",
        Some(Provider::AzureOpenAi) => "azure.ai.openai",
        Some(p) => p.as_str(),
        None => match api {
            Dialect::Anthropic => "anthropic",
            Dialect::OpenAi | Dialect::Responses => "openai",
        },
    }
}

/// A client's model name as an attribute value: printable and short.
fn model_attr(model: &str) -> String {
    crate::scrub::truncate_chars(model, 100)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// The span of one client request, continuing the client's trace context; [`Span::none`]
/// when tracing is off (so the logs stay as they are).
pub fn request_span(headers: &HeaderMap, operation: Operation, request_id: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    let op = operation_name(operation);
    let span = tracing::info_span!(
        "request",
        otel.name = op,
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        request_id = request_id,
        gen_ai.operation.name = op,
        gen_ai.request.model = Empty,
        gen_ai.response.model = Empty,
        gen_ai.provider.name = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        error.type = Empty,
        http.response.status_code = Empty,
        switchyard.route = Empty,
        switchyard.backend = Empty,
        switchyard.attempts = Empty,
        switchyard.outcome = Empty,
        switchyard.response.bytes = Empty,
    );
    let cx = TraceContextPropagator::new().extract(&ClientHeaders(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
    span
}

/// The request was routed: the client's model and the route serving it.
pub fn request_routed(span: &Span, operation: Operation, model: &str, route: &str) {
    if span.is_disabled() {
        return;
    }
    let model = model_attr(model);
    span.record(
        "otel.name",
        format!("{} {model}", operation_name(operation)).as_str(),
    );
    span.record("gen_ai.request.model", model.as_str());
    span.record("switchyard.route", route);
}

/// The gateway refused the request itself (key, body, route).
pub fn request_rejected(span: &Span, code: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("switchyard.outcome", "rejected");
    span.record("error.type", code);
}

/// A backend served the request.
pub fn request_served(span: &Span, backend: &str, provider: &str, model: &str, attempts: u32) {
    if span.is_disabled() {
        return;
    }
    span.record("switchyard.outcome", "served");
    span.record("switchyard.backend", backend);
    span.record("switchyard.attempts", attempts);
    span.record("gen_ai.provider.name", provider);
    span.record("gen_ai.response.model", model);
}

/// The upstream's answer went back to the client: the request must change (a 4xx of the
/// client's, not an error of the gateway's).
pub fn request_returned(span: &Span, backend: &str, attempts: u32, reason: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("switchyard.outcome", "returned");
    span.record("switchyard.backend", backend);
    span.record("switchyard.attempts", attempts);
    span.record("error.type", reason);
}

/// Every entry of the chain failed.
pub fn request_exhausted(span: &Span, attempts: u32, summary: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("switchyard.outcome", "exhausted");
    span.record("switchyard.attempts", attempts);
    span.record("error.type", "exhausted");
    span.record("otel.status_code", "error");
    span.record(
        "otel.status_description",
        crate::scrub::truncate_chars(summary, 300).as_str(),
    );
}

/// Token usage, when the answer reported it.
pub fn record_usage(span: &Span, input_tokens: Option<u64>, output_tokens: Option<u64>) {
    if span.is_disabled() {
        return;
    }
    if let Some(n) = input_tokens {
        span.record("gen_ai.usage.input_tokens", n);
    }
    if let Some(n) = output_tokens {
        span.record("gen_ai.usage.output_tokens", n);
    }
}

/// An attempt began: what it is sent to. Only when tracing is on (the log lines of an attempt
/// stay as they are otherwise).
pub fn attempt_started(
    span: &Span,
    operation: Operation,
    provider: &str,
    model: &str,
    server: Option<&str>,
    retry: u32,
) {
    if !enabled() || span.is_disabled() {
        return;
    }
    let op = operation_name(operation);
    span.record("otel.name", format!("{op} {model}").as_str());
    span.record("otel.kind", "client");
    span.record("gen_ai.operation.name", op);
    span.record("gen_ai.provider.name", provider);
    span.record("gen_ai.request.model", model);
    if let Some(host) = server {
        span.record("server.address", host);
    }
    span.record("switchyard.retry", retry);
}

/// The attempt served: for a stream, `ttft` is when its first content arrived (the commit
/// point); `bytes` what the upstream had sent by then (the whole body when not streamed).
pub fn attempt_served(span: &Span, ttft: Option<Duration>, bytes: usize) {
    if !enabled() || span.is_disabled() {
        return;
    }
    if let Some(t) = ttft {
        span.record("switchyard.ttft_ms", t.as_millis() as u64);
    }
    span.record("switchyard.bytes", bytes as u64);
    span.record("switchyard.decision", "serve");
}

/// The attempt failed: the classified reason, the upstream's status, the error body's size and
/// the scrubbed detail.
pub fn attempt_failed(span: &Span, reason: &str, status: Option<u16>, bytes: usize, detail: &str) {
    if !enabled() || span.is_disabled() {
        return;
    }
    span.record("error.type", reason);
    if let Some(s) = status {
        span.record("http.response.status_code", s);
    }
    span.record("switchyard.bytes", bytes as u64);
    span.record("otel.status_code", "error");
    span.record("otel.status_description", detail);
}

/// What the loop did after a failed attempt (`retry`, `failover`, `next_credential`,
/// `reload_key`, `return_to_client`).
pub fn attempt_decision(span: &Span, decision: &str) {
    if !enabled() || span.is_disabled() {
        return;
    }
    span.record("switchyard.decision", decision);
}

/// The response, with the request span kept open until its body has been sent (a stream's
/// span covers the whole stream) and the status and bytes sent recorded on it.
pub fn finish_response(resp: Response, span: Span) -> Response {
    if span.is_disabled() {
        return resp;
    }
    span.record("http.response.status_code", resp.status().as_u16());
    if resp.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::new(Held {
            inner: body,
            span,
            bytes: 0,
        }),
    )
}

/// A response body that holds the request span until it is done.
struct Held {
    inner: Body,
    span: Span,
    bytes: u64,
}

impl hyper::body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.span.record("switchyard.response.bytes", self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_trace_headers_are_forwarded_as_they_came_when_tracing_is_off() {
        let mut h = HeaderMap::new();
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        h.insert("traceparent", HeaderValue::from_static(tp));
        h.insert("tracestate", HeaderValue::from_static("vendor=x"));
        let t = TraceHeaders::from_client(&h);
        let out = t.for_attempt(&Span::none());
        let mut up = HeaderMap::new();
        out.apply(&mut up);
        assert_eq!(up.get("traceparent").unwrap(), tp);
        assert_eq!(up.get("tracestate").unwrap(), "vendor=x");
    }

    #[test]
    fn nothing_is_invented_and_overlong_or_orphan_headers_are_not_forwarded() {
        let mut up = HeaderMap::new();
        TraceHeaders::from_client(&HeaderMap::new()).apply(&mut up);
        assert!(up.is_empty());
        let mut h = HeaderMap::new();
        h.insert("tracestate", HeaderValue::from_static("vendor=x"));
        let t = TraceHeaders::from_client(&h);
        assert!(t.traceparent.is_none() && t.tracestate.is_none());
        let long = "0".repeat(300);
        h.insert("traceparent", HeaderValue::from_str(&long).unwrap());
        assert!(TraceHeaders::from_client(&h).traceparent.is_none());
    }

    fn span_data(name: &'static str) -> SpanData {
        use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: name.into(),
            start_time: std::time::SystemTime::UNIX_EPOCH,
            end_time: std::time::SystemTime::UNIX_EPOCH,
            attributes: Vec::new(),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: Status::Unset,
            instrumentation_scope: Default::default(),
        }
    }

    /// Keeps what it is handed (a batch processor whose export never finishes).
    #[derive(Debug, Default)]
    struct Keep(std::sync::Mutex<Vec<String>>);

    impl SpanProcessor for Keep {
        fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}
        fn on_end(&self, span: SpanData) {
            self.0.lock().unwrap().push(span.name.into_owned());
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    #[test]
    fn spans_beyond_the_queue_are_dropped_and_counted_not_waited_for() {
        let pending = Arc::new(AtomicUsize::new(0));
        let bounded = Bounded {
            inner: Keep::default(),
            pending: pending.clone(),
            cap: 2,
        };
        let before = DROPPED_QUEUE_FULL.load(Ordering::Relaxed);
        for name in ["a", "b", "c", "d"] {
            bounded.on_end(span_data(name));
        }
        assert_eq!(*bounded.inner.0.lock().unwrap(), ["a", "b"]);
        assert_eq!(DROPPED_QUEUE_FULL.load(Ordering::Relaxed) - before, 2);
        assert_eq!(pending.load(Ordering::Relaxed), 2);
        // An exported batch frees its places.
        pending.fetch_sub(2, Ordering::Relaxed);
        bounded.on_end(span_data("e"));
        assert_eq!(bounded.inner.0.lock().unwrap().len(), 3);
    }

    /// Refuses every batch, as an unreachable collector does.
    #[derive(Debug)]
    struct Refusing;

    impl SpanExporter for Refusing {
        async fn export(&self, _: Vec<SpanData>) -> OTelSdkResult {
            Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                "connection refused".into(),
            ))
        }
    }

    #[tokio::test]
    async fn a_refused_batch_frees_its_places_and_counts_its_spans() {
        let pending = Arc::new(AtomicUsize::new(3));
        let exporter = Counted {
            inner: Refusing,
            pending: pending.clone(),
            failing: AtomicBool::new(false),
        };
        let before = DROPPED_EXPORT_FAILED.load(Ordering::Relaxed);
        let batch = vec![span_data("a"), span_data("b"), span_data("c")];
        assert!(exporter.export(batch).await.is_err());
        assert_eq!(pending.load(Ordering::Relaxed), 0);
        assert_eq!(DROPPED_EXPORT_FAILED.load(Ordering::Relaxed) - before, 3);
        assert!(exporter.failing.load(Ordering::Relaxed));
    }

    #[test]
    fn well_known_provider_names_follow_the_genai_conventions() {
        assert_eq!(
            provider_name(Some(Provider::Gemini), Dialect::OpenAi),
            "gcp.gemini"
        );
        assert_eq!(provider_name(Some(Provider::Groq), Dialect::OpenAi), "groq");
        assert_eq!(provider_name(None, Dialect::Anthropic), "anthropic");
        assert_eq!(provider_name(None, Dialect::Responses), "openai");
    }

    #[test]
    fn model_attributes_are_short_and_printable() {
        let m = model_attr(&format!("a\u{7}b{}", "x".repeat(500)));
        assert!(m.starts_with("ab"));
        assert!(m.chars().count() <= 101, "{}", m.len());
    }
}
