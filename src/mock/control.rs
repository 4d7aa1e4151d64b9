//! The mock's own state and the `/_mock/*` control API over it: the plan, the
//! counters and the log of received requests.
//!
//! [`Shared`] is what both the HTTP control endpoints and the in-process
//! [`MockHandle`](super::MockHandle) act on, so the two can never disagree.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::body::{Counters, MockBody};
use super::openai;
use super::plan::{Behavior, Plan, PlanQueue};

/// How many API requests `GET /_mock/requests` remembers.
const LOG_CAPACITY: usize = 100;

/// An API request as received, kept cheap (refcounted body, no JSON) until asked for.
struct Logged {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Inner {
    plan: PlanQueue,
    log: VecDeque<Logged>,
    by_path: HashMap<String, u64>,
}

/// State shared by every connection of one mock server.
pub(crate) struct Shared {
    /// The provider error dialect of `status` faults that name none.
    pub(crate) provider: Option<super::providers::MockProvider>,
    pub(crate) default_text: String,
    pub(crate) trickle_text: String,
    pub(crate) counters: Arc<Counters>,
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn new(name: String, provider: Option<super::providers::MockProvider>) -> Shared {
        Shared {
            provider,
            default_text: format!("Hello from {name}"),
            trickle_text: format!("Hello from {name} — ok"),
            counters: Arc::default(),
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not wedge the mock: the state stays usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts and logs an API request; when `consume` (the request was valid),
    /// also takes the plan's next behaviour for it (`None`: default `ok`).
    pub(crate) fn record(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &Bytes,
        consume: bool,
    ) -> Option<Arc<Behavior>> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        match inner.by_path.get_mut(path) {
            Some(n) => *n += 1,
            None => {
                inner.by_path.insert(path.to_owned(), 1);
            }
        }
        if inner.log.len() >= LOG_CAPACITY {
            inner.log.pop_front();
        }
        inner.log.push_back(Logged {
            method: method.clone(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers: headers.clone(),
            body: body.clone(),
        });
        if consume {
            inner.plan.next()
        } else {
            None
        }
    }

    pub(crate) fn set_plan(&self, plan: Plan) {
        self.lock().plan.set(plan);
    }

    pub(crate) fn reset(&self) {
        let mut inner = self.lock();
        *inner = Inner::default();
        let c = &self.counters;
        // New epoch first, so responses still running do not count afterwards.
        c.epoch.fetch_add(1, Ordering::Relaxed);
        c.requests.store(0, Ordering::Relaxed);
        c.completed.store(0, Ordering::Relaxed);
        c.cancelled.store(0, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> Value {
        let by_path: Map<String, Value> = self
            .lock()
            .by_path
            .iter()
            .map(|(p, n)| (p.clone(), Value::from(*n)))
            .collect();
        let c = &self.counters;
        json!({
            "requests": c.requests.load(Ordering::Relaxed),
            "by_path": by_path,
            "in_flight": c.in_flight.load(Ordering::Relaxed).max(0),
            "completed": c.completed.load(Ordering::Relaxed),
            "cancelled": c.cancelled.load(Ordering::Relaxed),
        })
    }

    pub(crate) fn requests(&self) -> Vec<Value> {
        self.lock().log.iter().map(logged_json).collect()
    }
}

fn logged_json(r: &Logged) -> Value {
    let mut headers = Map::new();
    for (name, value) in &r.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        match headers.get_mut(name.as_str()) {
            // Repeated headers are joined the way HTTP allows folding them.
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value.into_owned()));
            }
        }
    }
    let body = serde_json::from_slice::<Value>(&r.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.body).into_owned()));
    json!({
        "method": r.method.as_str(),
        "path": r.path,
        "query": r.query,
        "headers": headers,
        "body": body,
    })
}

fn json_response(status: StatusCode, value: &Value) -> Response<MockBody> {
    let bytes = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
    let mut resp = Response::new(MockBody::full(bytes, None));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn bad_request(message: String) -> Response<MockBody> {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

/// Serves `/_mock/*`. Control requests are not API requests: not counted, not logged.
pub(crate) async fn handle(req: Request<Incoming>, shared: &Shared) -> Response<MockBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    match (&method, path.as_str()) {
        (&Method::POST, "/_mock/plan") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return bad_request(format!("could not read the plan: {e}")),
            };
            let plan: Plan = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(e) => return bad_request(format!("invalid plan: {e}")),
            };
            if let Err(e) = plan.check() {
                return bad_request(format!("invalid plan: {e}"));
            }
            shared.set_plan(plan);
            json_response(StatusCode::OK, &json!({ "ok": true }))
        }
        (&Method::GET, "/_mock/stats") => json_response(StatusCode::OK, &shared.stats()),
        (&Method::GET, "/_mock/requests") => {
            json_response(StatusCode::OK, &Value::Array(shared.requests()))
        }
        (&Method::POST, "/_mock/reset") => {
            shared.reset();
            json_response(StatusCode::OK, &json!({ "ok": true }))
        }
        _ => {
            let mut resp = Response::new(MockBody::full(
                openai::not_found(method.as_str(), &path),
                None,
            ));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    }
}
