//! The attempt loop: walk the route's chain, attempt, classify, ask the policy, act.
//!
//! One plain async fn ([`Gateway::run`]). Everything it decides comes from
//! [`policy::decide`](super::policy::decide); everything it knows about a failure comes from
//! `classify`. A retry additionally needs the backend's retry budget (linkerd/Finagle style: at
//! most ~20% extra load on top of a floor), so a failing backend cannot become a retry storm.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use tokio::time::{timeout_at, Instant};
use tower::retry::budget::Budget;
use tracing::field::Empty;
use tracing::Instrument;

use super::outcome::{AttemptRecord, ClientRequest, Outcome, Served, SkippedEntry};
use super::policy::{decide, veto_retry, AttemptFacts, Decision};
use crate::app::Gateway;
use crate::body;
use crate::classify;
use crate::config::{BackendId, Route};
use crate::dialect::leg::Leg;
use crate::dialect::translate;
use crate::failure::{Classified, FailureReason, TimeoutKind};
use crate::health::sessions::SessionKey;
use crate::health::{AttemptScopes, Permit, ScopeId};
use crate::stream;
use crate::telemetry;
use crate::upstream::{self, read_body, Call};

/// How an attempt ended, for [`Gateway::observe_attempt`].
#[derive(Debug, Clone, Copy)]
enum AttemptEnd {
    Served { stream: bool },
    Failed(FailureReason),
}

/// A failed attempt as seen by the loop: the classification plus, for a status error, the
/// upstream's own response (kept to hand back when the client is to blame).
struct Failed {
    classified: Classified,
    status: Option<u16>,
    response: Option<UpstreamAnswer>,
}

/// An upstream's error response, read up to `limits.max_error_body_bytes`.
struct UpstreamAnswer {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
    /// The body was longer than the limit and was cut: never handed back as it is.
    truncated: bool,
}

impl From<Classified> for Failed {
    fn from(classified: Classified) -> Self {
        Failed {
            classified,
            status: None,
            response: None,
        }
    }
}

impl Gateway {
    /// Runs the attempt loop for one client request.
    pub async fn run(&self, req: &ClientRequest) -> Outcome {
        let now = Instant::now();
        let mut run = Run {
            gw: self,
            req,
            deadline: now + req.route.failover.deadline,
            excluded: req
                .session
                .as_ref()
                .map(|s| self.sessions.excluded(s, now))
                .unwrap_or_default(),
            failures: Vec::new(),
            skipped: Vec::new(),
            attempts: 0,
            last_failed: None,
        };
        let mut cooling: Vec<(Instant, usize)> = Vec::new();
        let mut excluded: Vec<usize> = Vec::new();
        // A continued Responses response lives on one backend identity: only its entries
        // can serve the request (see `health::stored`).
        let stored_home = req
            .previous_response
            .as_deref()
            .and_then(|id| self.stored.home(id, now));
        for entry_idx in self.entry_order(req, now) {
            if Instant::now() >= run.deadline {
                break;
            }
            let entry = &req.route.chain[entry_idx];
            let side_uri = self.config.backend(entry.backend).uri_for(req.operation);
            if side_uri.is_none() {
                run.skip(
                    entry_idx,
                    format!(
                        "does not serve {} (its API is {})",
                        req.operation.as_str(),
                        self.config.backend(entry.backend).api.as_str()
                    ),
                    None,
                );
                continue;
            }
            if let Some(home) = stored_home {
                if self
                    .health
                    .scopes_for(entry.backend, &entry.model, None)
                    .backend
                    != home
                {
                    let id = req.previous_response.as_deref().unwrap_or("");
                    run.skip(
                        entry_idx,
                        format!("does not hold the stored response {id} (previous_response_id); resend the full input with store: false to fail over"),
                        None,
                    );
                    continue;
                }
            }
            match run.admit_entry(entry_idx, AdmitMode::Normal) {
                Admitted::Yes(permit, credential) => {
                    if let Some(outcome) = run.try_entry(entry_idx, credential, permit).await {
                        return outcome;
                    }
                    run.last_failed = Some(entry.backend);
                }
                Admitted::Excluded(scopes) => {
                    let last = self.health.last_failure(scopes);
                    run.skip(entry_idx, "failed earlier in this turn".into(), last);
                    excluded.push(entry_idx);
                }
                Admitted::Cooling(scopes, until) => {
                    let last = self.health.last_failure(scopes);
                    let left = until.saturating_duration_since(Instant::now());
                    run.skip(
                        entry_idx,
                        format!("cooling down for {:.1}s", left.as_secs_f64()),
                        last,
                    );
                    cooling.push((until, entry_idx));
                }
            }
        }
        // This turn's exclusions left nothing to try. The earlier failure may be over (SDK and
        // agent retries reuse the turn), so try the first excluded entry that is healthy
        // rather than refuse with zero attempts.
        if run.attempts == 0 && Instant::now() < run.deadline {
            for &entry_idx in &excluded {
                match run.admit_entry(entry_idx, AdmitMode::IgnoreExclusions) {
                    Admitted::Yes(permit, credential) => {
                        let entry = &req.route.chain[entry_idx];
                        tracing::warn!(
                            request_id = %req.request_id,
                            route = %req.route.name,
                            backend = %self.config.backend(entry.backend).name,
                            "every chain entry failed earlier in this turn; trying the first healthy one again"
                        );
                        run.skipped.retain(|s| s.entry != entry_idx);
                        let before = run.failures.len();
                        if let Some(outcome) = run.try_entry(entry_idx, credential, permit).await {
                            return outcome;
                        }
                        for f in &mut run.failures[before..] {
                            f.detail = format!(
                                "tried again although it failed earlier in this turn: {}",
                                f.detail
                            );
                        }
                        break;
                    }
                    Admitted::Cooling(_, until) => cooling.push((until, entry_idx)),
                    Admitted::Excluded(_) => {}
                }
            }
        }
        // Everything was cooling down and nothing was tried: rather than refuse, try the entry
        // whose cooldown ends soonest.
        if run.attempts == 0 && Instant::now() < run.deadline {
            if let Some(&(until, entry_idx)) = cooling.iter().min_by_key(|(u, _)| *u) {
                let entry = &req.route.chain[entry_idx];
                tracing::warn!(
                    request_id = %req.request_id,
                    route = %req.route.name,
                    backend = %self.config.backend(entry.backend).name,
                    cooldown_left_ms = until.saturating_duration_since(Instant::now()).as_millis() as u64,
                    "every chain entry is cooling down; trying the one whose cooldown ends soonest"
                );
                if let Admitted::Yes(permit, credential) =
                    run.admit_entry(entry_idx, AdmitMode::Force)
                {
                    run.skipped.retain(|s| s.entry != entry_idx);
                    if let Some(outcome) = run.try_entry(entry_idx, credential, permit).await {
                        return outcome;
                    }
                }
            }
        }
        Outcome::Exhausted {
            attempts: run.attempts,
            failures: run.failures,
            skipped: run.skipped,
        }
    }

    /// Everyone who watches attempts sees this one: the metrics, the status page's activity,
    /// the log, and for a served attempt the session's sticky entry. The engine calls it once
    /// per attempt instead of calling each of them.
    fn observe_attempt(
        &self,
        req: &ClientRequest,
        entry_idx: usize,
        elapsed: Duration,
        end: AttemptEnd,
    ) {
        let entry = &req.route.chain[entry_idx];
        let name = &self.config.backend(entry.backend).name;
        match end {
            AttemptEnd::Served { stream } => {
                self.metrics.attempt(name, None);
                self.activity.attempt(entry.backend, true);
                if stream {
                    // The stream's full duration is recorded when it ends.
                    self.metrics.ttft(name, elapsed);
                } else {
                    self.metrics.upstream_duration(name, elapsed);
                }
                tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "attempt served");
                if let (Some(s), true) = (&req.session, self.config.health.sticky_sessions) {
                    let now = Instant::now();
                    if entry_idx != 0
                        || self
                            .sessions
                            .sticky_entry(s, &req.route.name, now)
                            .is_some()
                    {
                        self.sessions.set_sticky(s, &req.route.name, entry_idx, now);
                    }
                }
            }
            AttemptEnd::Failed(reason) => {
                self.count_failed_attempt(entry.backend, reason);
                self.metrics.upstream_duration(name, elapsed);
            }
        }
    }

    /// Where the Responses answer just served is stored, for requests that continue it.
    fn remember_stored_response(&self, served: &Served, scopes: AttemptScopes) {
        use crate::dialect::responses::{response_id_of_body, response_id_of_stream};
        let id = match served {
            Served::Full { body, .. } => response_id_of_body(body),
            Served::Stream(c) => c.held.iter().find_map(|h| response_id_of_stream(h)),
        };
        if let Some(id) = id {
            self.stored.remember(&id, scopes.backend, Instant::now());
        }
    }

    /// A failed attempt in the metrics and on the status page.
    fn count_failed_attempt(&self, backend: BackendId, reason: FailureReason) {
        self.metrics
            .attempt(&self.config.backend(backend).name, Some(reason));
        self.activity.attempt(backend, false);
    }

    /// A served stream failed after its commit point: count it against the scopes that
    /// served it and exclude them for the rest of the turn, so the client's retry is served by
    /// the next entry instead of the backend that just died.
    pub fn record_stream_failure(
        &self,
        session: Option<&SessionKey>,
        backend: BackendId,
        scopes: AttemptScopes,
        failure: &Classified,
    ) {
        let now = Instant::now();
        self.count_failed_attempt(backend, failure.reason);
        let target =
            self.health
                .record_failure_after_commit(scopes, failure.reason, &failure.detail, now);
        // Nothing can retry a stream after its commit point: the engine has given up on it.
        self.health
            .give_up(scopes, failure.reason, &failure.detail, now);
        if let (Some(scope), Some(s)) = (target, session) {
            self.sessions.exclude(s, scope, now);
        }
    }

    /// How long until some entry of `route` is out of its cooldown, when every entry is cooling
    /// down (for `Retry-After` on an exhausted chain); `None` when one is usable now.
    pub fn soonest_usable(&self, route: &Route) -> Option<Duration> {
        let now = Instant::now();
        let mut soonest: Option<Instant> = None;
        for entry in route.chain.iter() {
            for cred in self.config.backend(entry.backend).credential_choices() {
                let scopes = self.health.scopes_for(entry.backend, &entry.model, cred);
                let until = self.health.cooling_until(scopes, now)?;
                soonest = Some(soonest.map_or(until, |s| s.min(until)));
            }
        }
        soonest.map(|s| s.saturating_duration_since(now))
    }

    /// Chain order, with a sticky session's entry first.
    fn entry_order(&self, req: &ClientRequest, now: Instant) -> Vec<usize> {
        let n = req.route.chain.len();
        let sticky = match (&req.session, self.config.health.sticky_sessions) {
            (Some(s), true) => self.sessions.sticky_entry(s, &req.route.name, now),
            _ => None,
        };
        match sticky.filter(|&i| i < n) {
            Some(first) => std::iter::once(first)
                .chain((0..n).filter(|&i| i != first))
                .collect(),
            None => (0..n).collect(),
        }
    }

    /// One attempt on one backend: send, wait for the first content under the TTFT clock,
    /// and classify whatever went wrong.
    async fn attempt(
        &self,
        req: &ClientRequest,
        backend_id: BackendId,
        leg: Leg,
        auth: Option<HeaderValue>,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Served, Failed> {
        let policy = &req.route.failover;
        let backend = self.config.backend(backend_id);
        let stream_requested = req.scanned.stream;
        // Large prompts start slowly: the timeouts may grow with the prompt's size.
        let tokens = req.estimated_prompt_tokens();
        let ttft_timeout = policy.ttft_timeout.for_tokens(tokens);
        let stall_timeout = policy.stall_timeout.for_tokens(tokens);
        let sent_at = Instant::now();
        let first_token_at = (sent_at + ttft_timeout).min(deadline);
        let timeout_kind = if first_token_at >= deadline {
            TimeoutKind::Deadline
        } else {
            TimeoutKind::FirstToken
        };
        // Tracing on: the attempt span's context goes upstream instead of the client's.
        let traced;
        let fwd = if telemetry::enabled() {
            let mut f = req.fwd.clone();
            f.trace = req.fwd.trace.for_attempt(&tracing::Span::current());
            traced = f;
            &traced
        } else {
            &req.fwd
        };
        let send = self.upstream().send(Call {
            backend,
            uri: backend
                .uri_for(req.operation)
                .unwrap_or(&backend.endpoint_uri),
            auth,
            body,
            stream: stream_requested,
            leg,
            fwd,
            connect_timeout: policy.connect_timeout,
        });
        let resp = match timeout_at(first_token_at, send).await {
            Err(_) => return Err(classify::timeout(timeout_kind, ttft_timeout).into()),
            Ok(Err(e)) if e.is_connect_timeout() => {
                return Err(classify::timeout(TimeoutKind::Connect, policy.connect_timeout).into())
            }
            Ok(Err(e)) => return Err(classify::classify_transport(&e).into()),
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();

        if !status.is_success() {
            let headers = resp.headers().clone();
            let (body, truncated) = read_body(
                resp.into_body(),
                self.config.limits.max_error_body_bytes,
                stall_timeout,
                deadline,
                true,
            )
            .await
            .unwrap_or_default();
            let classified = classify::classify_response_from(
                backend.provider,
                status.as_u16(),
                &headers,
                &body,
            );
            return Err(Failed {
                classified,
                status: Some(status.as_u16()),
                response: Some(UpstreamAnswer {
                    status,
                    content_type,
                    body,
                    truncated,
                }),
            });
        }

        if stream_requested && classify::is_event_stream(content_type.as_ref()) {
            let upstream = upstream::body_stream(resp.into_body());
            return stream::await_first_content(
                leg.backend(),
                upstream,
                first_token_at,
                ttft_timeout,
                deadline,
                stall_timeout,
                stream::StreamLimits {
                    max_event: self.config.limits.max_sse_event_bytes,
                    max_held: self.config.limits.max_held_bytes,
                },
            )
            .await
            .map(|mut c| {
                c.translator = leg.stream_translator(
                    &req.scanned.model,
                    || req.wants_usage(),
                    || req.custom_tools(),
                );
                Served::Stream(Box::new(c))
            })
            .map_err(|c| Failed {
                classified: c,
                status: Some(status.as_u16()),
                response: None,
            });
        }

        let (body, _) = read_body(
            resp.into_body(),
            self.config.limits.max_response_body_bytes,
            stall_timeout,
            deadline,
            false,
        )
        .await
        .map_err(|c| Failed {
            classified: c,
            status: Some(status.as_u16()),
            response: None,
        })?;
        let with_status = |c: Classified| Failed {
            classified: c,
            status: Some(status.as_u16()),
            response: None,
        };
        classify::answer_or_error(&body).map_err(with_status)?;
        if stream_requested {
            return Err(with_status(classify::json_answer_to_a_stream_request()));
        }
        let body = leg
            .response(body, &req.scanned.model, || req.custom_tools())
            .map_err(|e| with_status(classify::untranslatable_answer(&e)))?;
        Ok(Served::Full {
            status,
            content_type,
            body,
        })
    }
}

/// How strictly an entry is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AdmitMode {
    /// Health and this turn's exclusions.
    Normal,
    /// Health only: when exclusions left nothing to try.
    IgnoreExclusions,
    /// Neither: when every entry is cooling down.
    Force,
}

enum Admitted<'g> {
    Yes(Permit<'g>, Option<usize>),
    Excluded(AttemptScopes),
    Cooling(AttemptScopes, Instant),
}

/// The state of one request's walk down the chain.
struct Run<'g, 'r> {
    gw: &'g Gateway,
    req: &'r ClientRequest,
    deadline: Instant,
    /// Scopes that failed earlier in this request's turn.
    excluded: Vec<ScopeId>,
    failures: Vec<AttemptRecord>,
    skipped: Vec<SkippedEntry>,
    attempts: u32,
    /// The backend of the last entry given up on, for the failover counter.
    last_failed: Option<BackendId>,
}

impl<'g> Run<'g, '_> {
    fn skip(&mut self, entry: usize, why: String, last: Option<(FailureReason, String)>) {
        self.skipped.push(SkippedEntry {
            entry,
            backend: self.req.route.chain[entry].backend,
            why,
            last,
        });
    }

    /// Picks the entry's first usable credential and admits the attempt on all its scopes.
    fn admit_entry(&self, entry_idx: usize, mode: AdmitMode) -> Admitted<'g> {
        let entry = &self.req.route.chain[entry_idx];
        let health = &self.gw.health;
        let candidates = self.gw.config.backend(entry.backend).credential_choices();
        let now = Instant::now();
        let mut first_scopes = None;
        let mut soonest: Option<Instant> = None;
        let mut any_cooling = false;
        for cred in candidates {
            let scopes = health.scopes_for(entry.backend, &entry.model, cred);
            first_scopes.get_or_insert(scopes);
            if mode == AdmitMode::Normal && scopes.all_ids().any(|id| self.excluded.contains(&id)) {
                continue;
            }
            if mode == AdmitMode::Force {
                return Admitted::Yes(health.force_permit(scopes), cred);
            }
            match health.admit(scopes, now) {
                Ok(permit) => return Admitted::Yes(permit, cred),
                Err(until) => {
                    any_cooling = true;
                    soonest = Some(soonest.map_or(until, |s: Instant| s.min(until)));
                }
            }
        }
        let scopes = first_scopes.expect("at least one candidate");
        match (any_cooling, soonest) {
            (true, Some(until)) => Admitted::Cooling(scopes, until),
            _ => Admitted::Excluded(scopes),
        }
    }

    /// Attempts one chain entry until it serves, returns to the client, or gives up.
    /// `None` means: move on to the next entry.
    async fn try_entry(
        &mut self,
        entry_idx: usize,
        mut credential: Option<usize>,
        first_permit: Permit<'g>,
    ) -> Option<Outcome> {
        let gw = self.gw;
        let req = self.req;
        let policy = &req.route.failover;
        let entry = &req.route.chain[entry_idx];
        let backend = gw.config.backend(entry.backend);
        if let Some(from) = self.last_failed {
            gw.metrics.failover(
                &req.route.name,
                &gw.config.backend(from).name,
                &backend.name,
            );
        }
        let leg = Leg::new(req.dialect, backend.api);
        let opts = translate::Options {
            default_max_tokens: backend.default_max_tokens,
            strict: gw.config.translate_strict,
        };
        let translated = {
            match leg.request(
                &req.body,
                &req.scanned.model_span,
                &entry.model_json,
                &entry.model,
                &opts,
            ) {
                Ok(b) => b,
                Err(e) => {
                    // The client's request cannot be expressed for this backend: say so in
                    // the client's dialect rather than trying every translated entry.
                    tracing::info!(backend = %backend.name, error = %e, "request cannot be translated");
                    let message = format!(
                        "{e} (backend {} speaks {}; the request was sent as {})",
                        backend.name,
                        backend.api.as_str(),
                        req.dialect.as_str()
                    );
                    return Some(Outcome::Returned {
                        backend: entry.backend,
                        attempts: self.attempts,
                        status: StatusCode::BAD_REQUEST,
                        content_type: Some(HeaderValue::from_static("application/json")),
                        body: crate::dialect::error_body(
                            req.dialect,
                            e.error_kind(),
                            "untranslatable_request",
                            &message,
                        ),
                        reason: FailureReason::InvalidRequest,
                        failures: std::mem::take(&mut self.failures),
                    });
                }
            }
        };
        let upstream_body = translated.body;
        let dropped_tools = translated.dropped_tools;
        let budget = &gw.budgets[entry.backend.0];
        budget.deposit();
        let mut retries_done = 0u32;
        let mut key_reloaded = false;
        let mut tried_credentials: Vec<usize> = credential.into_iter().collect();
        let mut permit = Some(first_permit);
        loop {
            if Instant::now() >= self.deadline {
                return None;
            }
            let permit_now = match permit.take() {
                Some(p) => p,
                None => {
                    let scopes = gw
                        .health
                        .scopes_for(entry.backend, &entry.model, credential);
                    match gw.health.admit(scopes, Instant::now()) {
                        Ok(p) => p,
                        // Ejected by our own failures (or another request's): move on.
                        Err(_) => return None,
                    }
                }
            };
            self.attempts += 1;
            let auth = credential.map(|c| backend.credentials[c].auth_header());
            let used_auth = auth.clone();
            let started = Instant::now();
            // The trace fields stay empty (and out of the log lines) unless traces are
            // exported: `telemetry::attempt_*` record them only then.
            let span = tracing::info_span!(
                parent: &req.span,
                "attempt",
                request_id = %req.request_id,
                route = %req.route.name,
                backend = %backend.name,
                model = %entry.model,
                credential = credential.map(|c| &*backend.credentials[c].label),
                probe = permit_now.is_probe(),
                n = self.attempts,
                otel.name = Empty,
                otel.kind = Empty,
                otel.status_code = Empty,
                otel.status_description = Empty,
                gen_ai.operation.name = Empty,
                gen_ai.provider.name = Empty,
                gen_ai.request.model = Empty,
                server.address = Empty,
                error.type = Empty,
                http.response.status_code = Empty,
                switchyard.retry = Empty,
                switchyard.ttft_ms = Empty,
                switchyard.bytes = Empty,
                switchyard.decision = Empty,
            );
            telemetry::attempt_started(
                &span,
                req.operation,
                telemetry::provider_name(backend.provider, backend.api),
                &entry.model,
                backend.endpoint_uri.host(),
                retries_done,
            );
            let result = gw
                .attempt(
                    req,
                    entry.backend,
                    leg,
                    auth,
                    upstream_body.clone(),
                    self.deadline,
                )
                .instrument(span.clone())
                .await;
            let elapsed = started.elapsed();
            let failed = match result {
                Ok(served) => {
                    let scopes = permit_now.scopes();
                    if req.tracks_health() {
                        gw.health.record_success(permit_now, Instant::now());
                    }
                    // A translated answer was stored by no Responses provider.
                    if req.stores_response && leg.errors_pass_through() {
                        gw.remember_stored_response(&served, scopes);
                    }
                    let stream = matches!(served, Served::Stream(_));
                    let (ttft, bytes) = match &served {
                        Served::Full { body, .. } => (None, body.len()),
                        Served::Stream(c) => (Some(elapsed), c.held.iter().map(|h| h.len()).sum()),
                    };
                    telemetry::attempt_served(&span, ttft, bytes);
                    span.in_scope(|| {
                        gw.observe_attempt(req, entry_idx, elapsed, AttemptEnd::Served { stream })
                    });
                    return Some(Outcome::Served {
                        backend: entry.backend,
                        entry: entry_idx,
                        attempts: self.attempts,
                        served,
                        failures: std::mem::take(&mut self.failures),
                        scopes,
                        dropped_tools,
                    });
                }
                Err(f) => f,
            };
            let mut failed = failed;
            failed.classified.detail = gw.scrubber.detail(&failed.classified.detail, 300);
            telemetry::attempt_failed(
                &span,
                failed.classified.reason.as_str(),
                failed.status,
                failed.response.as_ref().map_or(0, |r| r.body.len()),
                &failed.classified.detail,
            );
            gw.observe_attempt(
                req,
                entry_idx,
                elapsed,
                AttemptEnd::Failed(failed.classified.reason),
            );
            let c = &failed.classified;
            let scopes = permit_now.scopes();
            let target = if req.tracks_health() {
                gw.health.record_failure(
                    permit_now,
                    c.reason,
                    &c.detail,
                    c.retry_after,
                    Instant::now(),
                )
            } else {
                None
            };
            if let (Some(scope), Some(s)) = (target, &req.session) {
                gw.sessions.exclude(s, scope, Instant::now());
                self.excluded.push(scope);
            }
            self.failures.push(AttemptRecord {
                entry: entry_idx,
                backend: entry.backend,
                reason: c.reason,
                status: failed.status,
                detail: c.detail.clone(),
                elapsed,
            });

            let next_credential = if c.reason.is_credential_problem() {
                (0..backend.credentials.len()).find(|i| {
                    !tried_credentials.contains(i) && {
                        let scopes = gw.health.scopes_for(entry.backend, &entry.model, Some(*i));
                        !scopes.all_ids().any(|id| self.excluded.contains(&id))
                            && scopes.all_ids().all(|id| gw.health.is_clear(id))
                    }
                })
            } else {
                None
            };
            let key_file = credential
                .map(|i| &backend.credentials[i])
                .filter(|cred| cred.source.reloadable());
            let mut facts = AttemptFacts {
                reason: c.reason,
                retry_after: c.retry_after,
                retries_done,
                key_reloadable: !key_reloaded && key_file.is_some(),
                next_credential,
            };
            let jitter = rand::random::<f64>();
            let mut decision = decide(&facts, policy, jitter);
            if decision == Decision::ReloadKey {
                key_reloaded = true;
                if let Some(cred) = key_file {
                    match cred.reload(used_auth.as_ref()).await {
                        Ok(true) => {
                            // The new key must be as invisible as the old one from now on.
                            gw.scrubber.add_secret(cred.secret().expose());
                            telemetry::attempt_decision(&span, decision_name(&decision));
                            span.in_scope(|| {
                                tracing::info!(credential = %cred.label, "key reloaded; retrying with the new key")
                            });
                            continue;
                        }
                        Ok(false) => {}
                        Err(e) => span.in_scope(|| {
                            tracing::warn!(credential = %cred.label, error = %gw.scrubber.detail(&e, 400), "key reload failed")
                        }),
                    }
                }
                facts.key_reloadable = false;
                decision = decide(&facts, policy, jitter);
            }
            if req.tracks_health()
                && matches!(decision, Decision::NextCredential(_) | Decision::Failover)
            {
                // Moving on from this scope: it is out now, not after `failure_threshold` more
                // calls of the same agent (a title, a summary) have hit it too.
                gw.health
                    .give_up(scopes, c.reason, &c.detail, Instant::now());
            }
            if let Decision::NextCredential(next) = decision {
                telemetry::attempt_decision(&span, decision_name(&decision));
                span.in_scope(|| {
                    tracing::warn!(
                        reason = c.reason.as_str(),
                        next_credential = &*backend.credentials[next].label,
                        "credential failed; trying the backend's next key"
                    )
                });
                credential = Some(next);
                tried_credentials.push(next);
                continue;
            }
            if let Decision::RetrySame { after } = decision {
                let now = Instant::now();
                let cooling_for = gw
                    .health
                    .cooling_until(scopes, now)
                    .map(|until| until.saturating_duration_since(now));
                let veto = veto_retry(
                    after,
                    self.deadline.saturating_duration_since(now),
                    cooling_for,
                );
                if let Some(veto) = veto {
                    span.in_scope(|| tracing::info!(?veto, "failing over instead of retrying"));
                    decision = Decision::Failover;
                } else if !budget.withdraw() {
                    span.in_scope(|| {
                        tracing::warn!("retry budget spent; failing over instead of retrying")
                    });
                    decision = Decision::Failover;
                }
                if decision == Decision::Failover && req.tracks_health() {
                    gw.health
                        .give_up(scopes, c.reason, &c.detail, Instant::now());
                }
            }
            telemetry::attempt_decision(&span, decision_name(&decision));
            span.in_scope(|| {
                tracing::warn!(
                    reason = c.reason.as_str(),
                    status = failed.status,
                    elapsed_ms = elapsed.as_millis() as u64,
                    decision = ?decision,
                    detail = %c.detail,
                    "attempt failed"
                )
            });
            match decision {
                Decision::RetrySame { after } => {
                    retries_done += 1;
                    // A zero wait must not cost a timer tick.
                    if !after.is_zero() {
                        tokio::time::sleep(after).await;
                    }
                }
                // Both were acted on above (a reload is decided at most once per request); were
                // one to reach here, moving on is the safe reading.
                Decision::Failover | Decision::ReloadKey | Decision::NextCredential(_) => {
                    return None
                }
                Decision::ReturnToClient => {
                    let reason = failed.classified.reason;
                    let (status, content_type, body) = client_error_answer(gw, req, leg, &failed);
                    return Some(Outcome::Returned {
                        backend: entry.backend,
                        attempts: self.attempts,
                        status,
                        content_type,
                        body,
                        reason,
                        failures: std::mem::take(&mut self.failures),
                    });
                }
            }
        }
    }
}

/// The decision as a trace attribute value.
fn decision_name(d: &Decision) -> &'static str {
    match d {
        Decision::RetrySame { .. } => "retry",
        Decision::Failover => "failover",
        Decision::NextCredential(_) => "next_credential",
        Decision::ReloadKey => "reload_key",
        Decision::ReturnToClient => "return_to_client",
    }
}

/// What the client gets when the upstream says the request must change: the upstream's own
/// answer, minus any secret it echoed (decoded lossily, so no byte escapes the scrubber);
/// re-shaped into the client's dialect when the backend speaks another, when the error came
/// as a stream event (no HTTP body), when the body was too large to read whole, or when it
/// is not a JSON object.
fn client_error_answer(
    gw: &Gateway,
    req: &ClientRequest,
    leg: Leg,
    failed: &Failed,
) -> (StatusCode, Option<HeaderValue>, Bytes) {
    let c = &failed.classified;
    if let Some(answer) = failed.response.as_ref().filter(|a| {
        // Not a JSON object (cut short, HTML from a proxy): SDKs could not parse it.
        leg.errors_pass_through() && !a.truncated && body::top_level_keys(&a.body, &[]).is_some()
    }) {
        let body = match gw.scrubber.scrub_lossy(&answer.body) {
            std::borrow::Cow::Borrowed(_) => answer.body.clone(),
            std::borrow::Cow::Owned(clean) => Bytes::from(clean),
        };
        return (answer.status, answer.content_type.clone(), body);
    }
    let kind = match c.reason {
        FailureReason::PayloadTooLarge => crate::dialect::ErrorKind::PayloadTooLarge,
        _ => crate::dialect::ErrorKind::InvalidRequest,
    };
    let (status, detail) = match &failed.response {
        Some(a) if a.truncated => (
            a.status,
            format!(
                "{} (the upstream's {} error body was longer than {} bytes; limits.max_error_body_bytes)",
                c.detail,
                a.status.as_u16(),
                gw.config.limits.max_error_body_bytes
            ),
        ),
        Some(a) => (a.status, c.detail.clone()),
        None => (crate::dialect::status_of(kind), c.detail.clone()),
    };
    let body = crate::dialect::error_body(req.dialect, kind, c.reason.as_str(), &detail);
    (
        status,
        Some(HeaderValue::from_static("application/json")),
        body,
    )
}

#[cfg(test)]
mod tests;
