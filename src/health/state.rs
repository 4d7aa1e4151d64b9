//! One health scope's state machine: healthy → cooling down (until T) → half-open → healthy.
//!
//! Plain data plus methods that take `now`, so every transition is testable without clocks.
//! A scope is ejected after `threshold` consecutive failed attempts; each new ejection doubles
//! the cooldown (capped), and the escalation is forgotten after `decay_after` of health. When a
//! cooldown ends, exactly one request may probe; its success heals the scope, its failure
//! ejects it again. With a shared store ([`ProbeGate::Lease`]) that request must also be on the
//! replica holding the cluster's probe lease, so one probe goes out cluster-wide.

use std::time::Duration;

use tokio::time::Instant;

use crate::failure::FailureReason;

/// What a scope looks like from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    Healthy,
    CoolingDown {
        until: Instant,
    },
    /// The cooldown is over; one probe decides.
    HalfOpen,
}

impl BackendState {
    pub fn as_str(&self) -> &'static str {
        match self {
            BackendState::Healthy => "healthy",
            BackendState::CoolingDown { .. } => "cooling_down",
            BackendState::HalfOpen => "half_open",
        }
    }
}

pub use crate::config::CooldownPolicy;

/// Whether a request may use the scope now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Available,
    /// The caller holds the one probe permit and must report the outcome (or release it).
    Probe,
    Unavailable {
        until: Instant,
    },
}

/// Who may take the half-open probe permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeGate {
    /// This replica alone decides (memory store, or the shared store is unreachable).
    Local,
    /// Only while this replica holds the cluster's probe lease, taken by the store's task. A
    /// scope half-open for `fallback_after` without a lease probes locally anyway, so a wedged
    /// store never keeps a backend out for good.
    Lease { fallback_after: Duration },
}

/// What a recorded outcome changed, for alerts and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Ejected { until: Instant, ejection: u32 },
    Recovered,
}

#[derive(Debug, Clone, Default)]
pub struct ScopeState {
    pub streak: u32,
    pub ejections: u32,
    pub cooldown_until: Option<Instant>,
    pub probe_in_flight: bool,
    /// When the scope last became healthy after a cooldown; escalation decays from here.
    pub recovered_at: Option<Instant>,
    pub last_reason: Option<FailureReason>,
    pub last_detail: String,
    pub successes: u64,
    pub failures: u64,
    /// When the current cooldown was set by failure evidence (here or from another replica):
    /// a recovery another replica reports after this instant heals the scope.
    pub cooling_since: Option<Instant>,
    /// Shared store: this replica holds the cluster's probe lease until then.
    pub lease_until: Option<Instant>,
    /// Shared store: a request was turned away while half-open for want of the lease (so the
    /// store's task asks for one: replicas without traffic never take the lease).
    pub lease_wanted: bool,
}

impl ScopeState {
    pub fn state(&self, now: Instant) -> BackendState {
        match self.cooldown_until {
            None => BackendState::Healthy,
            Some(until) if now < until => BackendState::CoolingDown { until },
            Some(_) => BackendState::HalfOpen,
        }
    }

    /// Admits a request, handing out the single probe permit once a cooldown has ended.
    pub fn admit(&mut self, now: Instant) -> Admission {
        self.admit_gated(now, ProbeGate::Local)
    }

    /// [`admit`](Self::admit), with the probe permit subject to `gate`.
    pub fn admit_gated(&mut self, now: Instant, gate: ProbeGate) -> Admission {
        match self.state(now) {
            BackendState::Healthy => Admission::Available,
            BackendState::CoolingDown { until } => Admission::Unavailable { until },
            BackendState::HalfOpen if self.probe_in_flight => Admission::Unavailable { until: now },
            BackendState::HalfOpen => {
                if let ProbeGate::Lease { fallback_after } = gate {
                    let held = self.lease_until.is_some_and(|u| now < u);
                    let stuck = self
                        .cooldown_until
                        .is_some_and(|u| now >= u + fallback_after);
                    if !held && !stuck {
                        self.lease_wanted = true;
                        return Admission::Unavailable { until: now };
                    }
                }
                self.probe_in_flight = true;
                Admission::Probe
            }
        }
    }

    /// Whether the store's task should ask for the probe lease: half-open, wanted, not held.
    pub fn wants_lease(&self, now: Instant) -> bool {
        self.lease_wanted
            && self.state(now) == BackendState::HalfOpen
            && self.lease_until.is_none_or(|u| now >= u)
    }

    /// This replica won the probe lease for `lease`: its next request may probe.
    pub fn lease_won(&mut self, now: Instant, lease: Duration) {
        if self.state(now) == BackendState::HalfOpen {
            self.lease_until = Some(now + lease);
        }
        self.lease_wanted = false;
    }

    /// Another replica probes: stay out for `lease`, until its verdict arrives through the
    /// store (a recovery or a new ejection) or its lease runs out. No new failure evidence, so
    /// `cooling_since` is kept.
    pub fn lease_lost(&mut self, now: Instant, lease: Duration) {
        if self.state(now) == BackendState::HalfOpen && !self.probe_in_flight {
            self.cooldown_until = Some(now + lease);
        }
        self.lease_wanted = false;
    }

    /// Another replica reports the scope recovered at `healed_at`: healthy again here too,
    /// unless this replica saw it fail after that.
    pub fn heal_remote(&mut self, healed_at: Instant, now: Instant) -> Transition {
        if self.cooldown_until.is_none() || self.cooling_since.is_some_and(|s| s > healed_at) {
            return Transition::None;
        }
        self.streak = 0;
        self.probe_in_flight = false;
        self.cooldown_until = None;
        self.cooling_since = None;
        self.lease_until = None;
        self.lease_wanted = false;
        self.recovered_at = Some(now);
        Transition::Recovered
    }

    /// The cluster-wide streak of consecutive failures reached the threshold: eject as a local
    /// streak would. Only a healthy scope: one already out keeps its cooldown.
    pub fn eject_for_cluster_streak(
        &mut self,
        now: Instant,
        policy: &CooldownPolicy,
    ) -> Transition {
        if self.state(now) != BackendState::Healthy {
            return Transition::None;
        }
        self.eject(now, None, policy)
    }

    /// A probe that ended without a verdict (client left, client-side error) frees the permit.
    pub fn release_probe(&mut self) {
        self.probe_in_flight = false;
    }

    pub fn record_success(&mut self, now: Instant) -> Transition {
        self.successes += 1;
        self.streak = 0;
        self.probe_in_flight = false;
        self.lease_until = None;
        self.lease_wanted = false;
        self.cooling_since = None;
        if self.cooldown_until.take().is_some() {
            self.recovered_at = Some(now);
            return Transition::Recovered;
        }
        Transition::None
    }

    /// Records a failed attempt blamed on the upstream. `threshold` is the number of
    /// consecutive failures that ejects; `retry_after` sets a floor on the cooldown.
    pub fn record_failure(
        &mut self,
        now: Instant,
        reason: FailureReason,
        detail: &str,
        threshold: u32,
        retry_after: Option<Duration>,
        policy: &CooldownPolicy,
    ) -> Transition {
        self.failures += 1;
        self.streak = self.streak.saturating_add(1);
        // One bogus header must not take a scope out until an operator notices: a cooldown
        // taken from Retry-After is bounded by the policy's `max` like any other.
        let retry_after = retry_after.map(|ra| ra.min(policy.max));
        self.last_reason = Some(reason);
        self.last_detail = detail.to_string();
        let was_probe = self.probe_in_flight;
        self.probe_in_flight = false;
        let now_state = self.state(now);
        // A long Retry-After says how long the scope is out: believe it at once.
        let told_to_wait = retry_after.is_some_and(|ra| ra >= policy.base);
        if !(was_probe
            || matches!(now_state, BackendState::HalfOpen)
            || self.streak >= threshold.max(1)
            || told_to_wait)
        {
            return Transition::None;
        }
        if let BackendState::CoolingDown { .. } = now_state {
            // Already out (another request's failure got there first): only extend.
            if let Some(ra) = retry_after {
                let until = now + ra;
                if self.cooldown_until.is_none_or(|u| u < until) {
                    self.cooldown_until = Some(until);
                }
            }
            return Transition::None;
        }
        self.eject(now, retry_after, policy)
    }

    /// The engine gave up on this scope (retries spent, or a failure no retry cures): eject it
    /// now whatever the streak, so the agent's next calls do not hit it again. A scope that is
    /// already cooling down keeps its cooldown. The failure itself was recorded already.
    pub fn give_up(&mut self, now: Instant, policy: &CooldownPolicy) -> Transition {
        if let BackendState::CoolingDown { .. } = self.state(now) {
            return Transition::None;
        }
        self.probe_in_flight = false;
        self.eject(now, None, policy)
    }

    fn eject(
        &mut self,
        now: Instant,
        retry_after: Option<Duration>,
        policy: &CooldownPolicy,
    ) -> Transition {
        if self
            .recovered_at
            .is_some_and(|r| now.saturating_duration_since(r) >= policy.decay_after)
        {
            self.ejections = 0;
        }
        self.ejections = self.ejections.saturating_add(1);
        let mut cooldown = policy.cooldown_for(self.ejections);
        if let Some(ra) = retry_after {
            cooldown = cooldown.max(ra);
        }
        let until = now + cooldown;
        self.cooldown_until = Some(until);
        self.cooling_since = Some(now);
        self.lease_until = None;
        self.lease_wanted = false;
        Transition::Ejected {
            until,
            ejection: self.ejections,
        }
    }

    /// Applies a cooldown learned from another replica: never shortens one already running.
    pub fn apply_remote_cooldown(&mut self, now: Instant, until: Instant, ejections: u32) -> bool {
        if self.cooldown_until.is_some_and(|u| u >= until) {
            return false;
        }
        self.cooldown_until = Some(until);
        self.cooling_since = Some(now);
        self.lease_until = None;
        self.ejections = self.ejections.max(ejections);
        true
    }

    /// Operator reset: healthy, streaks and escalation forgotten.
    pub fn reset(&mut self) {
        *self = ScopeState {
            successes: self.successes,
            failures: self.failures,
            ..ScopeState::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureReason::*;

    fn policy() -> CooldownPolicy {
        CooldownPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
            decay_after: Duration::from_secs(600),
        }
    }

    fn fail(s: &mut ScopeState, now: Instant, threshold: u32) -> Transition {
        s.record_failure(now, Overloaded, "Overloaded", threshold, None, &policy())
    }

    #[tokio::test(start_paused = true)]
    async fn ejects_after_threshold_consecutive_failures_and_success_clears_the_streak() {
        let mut s = ScopeState::default();
        let t = Instant::now();
        assert_eq!(fail(&mut s, t, 3), Transition::None);
        assert_eq!(fail(&mut s, t, 3), Transition::None);
        s.record_success(t);
        assert_eq!(s.streak, 0);
        assert_eq!(fail(&mut s, t, 3), Transition::None);
        assert_eq!(fail(&mut s, t, 3), Transition::None);
        let tr = fail(&mut s, t, 3);
        assert_eq!(
            tr,
            Transition::Ejected {
                until: t + Duration::from_secs(5),
                ejection: 1
            }
        );
        assert_eq!(
            s.admit(t),
            Admission::Unavailable {
                until: t + Duration::from_secs(5)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cooldown_escalates_per_ejection_capped_and_decays_after_health() {
        let p = policy();
        assert_eq!(p.cooldown_for(1), Duration::from_secs(5));
        assert_eq!(p.cooldown_for(2), Duration::from_secs(10));
        assert_eq!(p.cooldown_for(3), Duration::from_secs(20));
        assert_eq!(p.cooldown_for(5), Duration::from_secs(60));
        assert_eq!(p.cooldown_for(30), Duration::from_secs(60));

        let mut s = ScopeState::default();
        let mut t = Instant::now();
        for expected in [5, 10, 20, 40, 60] {
            let tr = fail(&mut s, t, 1);
            assert_eq!(
                tr,
                Transition::Ejected {
                    until: t + Duration::from_secs(expected),
                    ejection: s.ejections
                }
            );
            t += Duration::from_secs(expected);
            // The cooldown ended: one probe fails → ejected again, longer.
            assert_eq!(s.admit(t), Admission::Probe);
        }
        assert_eq!(s.record_success(t), Transition::Recovered);
        // Healthy for longer than decay_after: the next ejection starts from base again.
        t += Duration::from_secs(601);
        assert_eq!(
            fail(&mut s, t, 1),
            Transition::Ejected {
                until: t + Duration::from_secs(5),
                ejection: 1
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_exactly_one_probe_through() {
        let mut s = ScopeState::default();
        let t = Instant::now();
        fail(&mut s, t, 1);
        let later = t + Duration::from_secs(6);
        assert_eq!(s.state(later), BackendState::HalfOpen);
        assert_eq!(s.admit(later), Admission::Probe);
        for _ in 0..10 {
            assert!(matches!(s.admit(later), Admission::Unavailable { .. }));
        }
        s.release_probe();
        assert_eq!(s.admit(later), Admission::Probe);
        assert_eq!(s.record_success(later), Transition::Recovered);
        assert_eq!(s.admit(later), Admission::Available);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_sets_a_floor_and_never_shortens_a_running_cooldown() {
        let mut s = ScopeState::default();
        let t = Instant::now();
        let p = policy();
        // Below the threshold, a Retry-After alone keeps the scope out that long.
        s.record_failure(
            t,
            RateLimit,
            "slow down",
            3,
            Some(Duration::from_secs(30)),
            &p,
        );
        assert_eq!(
            s.state(t),
            BackendState::CoolingDown {
                until: t + Duration::from_secs(30)
            }
        );
        // An ejection with a shorter computed cooldown keeps the later end.
        let mut s = ScopeState::default();
        let tr = s.record_failure(t, RateLimit, "x", 1, Some(Duration::from_secs(42)), &p);
        assert_eq!(
            tr,
            Transition::Ejected {
                until: t + Duration::from_secs(42),
                ejection: 1
            }
        );
        s.record_failure(t, RateLimit, "x", 1, Some(Duration::from_secs(2)), &p);
        assert_eq!(s.cooldown_until, Some(t + Duration::from_secs(42)));
        assert!(!s.apply_remote_cooldown(t, t + Duration::from_secs(10), 1));
        assert!(s.apply_remote_cooldown(t, t + Duration::from_secs(100), 3));
        assert_eq!(s.ejections, 3);
    }

    /// Found by a hostile upstream: `retry-after: 999999` cooled a key for 11.6 days although
    /// `cooldown.max` was 30 s. A Retry-After-driven cooldown is bounded by `max`.
    #[tokio::test(start_paused = true)]
    async fn a_retry_after_cooldown_never_exceeds_the_policy_max() {
        let t = Instant::now();
        let p = CooldownPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            decay_after: Duration::from_secs(600),
        };
        for threshold in [1, 3] {
            let mut s = ScopeState::default();
            s.record_failure(
                t,
                RateLimit,
                "x",
                threshold,
                Some(Duration::from_secs(999_999)),
                &p,
            );
            assert_eq!(s.cooldown_until, Some(t + p.max), "threshold {threshold}");
            // A running cooldown is not extended past max either.
            s.record_failure(t, RateLimit, "x", threshold, Some(Duration::MAX), &p);
            assert_eq!(s.cooldown_until, Some(t + p.max), "threshold {threshold}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn giving_up_ejects_whatever_the_streak_and_keeps_a_running_cooldown() {
        let p = policy();
        let mut s = ScopeState::default();
        let t = Instant::now();
        assert_eq!(fail(&mut s, t, 3), Transition::None);
        assert_eq!(
            s.give_up(t, &p),
            Transition::Ejected {
                until: t + Duration::from_secs(5),
                ejection: 1
            }
        );
        // Already out: nothing changes, and a second give-up does not escalate.
        assert_eq!(s.give_up(t, &p), Transition::None);
        assert_eq!(s.cooldown_until, Some(t + Duration::from_secs(5)));
        // After the cooldown, the probe fails and the engine gives up again: escalated.
        let later = t + Duration::from_secs(5);
        assert_eq!(s.admit(later), Admission::Probe);
        assert_eq!(
            s.give_up(later, &p),
            Transition::Ejected {
                until: later + Duration::from_secs(10),
                ejection: 2
            }
        );
        assert!(!s.probe_in_flight);
    }

    fn lease() -> ProbeGate {
        ProbeGate::Lease {
            fallback_after: Duration::from_secs(10),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_shared_store_only_the_lease_holder_probes() {
        let mut s = ScopeState::default();
        let t = Instant::now();
        fail(&mut s, t, 1);
        let ended = t + Duration::from_secs(5);
        // Cooldown over, no lease: turned away, and the lease is now wanted.
        assert!(!s.wants_lease(ended));
        assert_eq!(
            s.admit_gated(ended, lease()),
            Admission::Unavailable { until: ended }
        );
        assert!(s.wants_lease(ended));
        // Won: exactly one probe here.
        s.lease_won(ended, Duration::from_secs(3));
        assert!(!s.wants_lease(ended));
        assert_eq!(s.admit_gated(ended, lease()), Admission::Probe);
        assert!(matches!(
            s.admit_gated(ended, lease()),
            Admission::Unavailable { .. }
        ));
        // The probe left without a verdict and the lease ran out: no probe until a new lease.
        s.release_probe();
        let expired = ended + Duration::from_secs(3);
        assert!(matches!(
            s.admit_gated(expired, lease()),
            Admission::Unavailable { .. }
        ));
        assert!(s.wants_lease(expired));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_keeps_the_scope_out_and_a_remote_recovery_heals_it() {
        let mut s = ScopeState::default();
        let t = Instant::now();
        fail(&mut s, t, 1);
        let ended = t + Duration::from_secs(5);
        s.admit_gated(ended, lease());
        s.lease_lost(ended, Duration::from_secs(3));
        assert_eq!(
            s.state(ended),
            BackendState::CoolingDown {
                until: ended + Duration::from_secs(3)
            }
        );
        assert_eq!(s.cooling_since, Some(t), "losing a lease is no new failure");
        // A recovery reported from before this replica's own failure does not heal it.
        assert_eq!(
            s.heal_remote(t - Duration::from_millis(1), ended),
            Transition::None
        );
        // The prober's recovery does.
        let healed = ended + Duration::from_secs(1);
        assert_eq!(s.heal_remote(healed, healed), Transition::Recovered);
        assert_eq!(s.admit_gated(healed, lease()), Admission::Available);
        assert_eq!(s.heal_remote(healed, healed), Transition::None);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_lease_decision_the_scope_probes_locally_after_the_fallback_time() {
        let mut s = ScopeState::default();
        let t = Instant::now();
        fail(&mut s, t, 1);
        let ended = t + Duration::from_secs(5);
        assert!(matches!(
            s.admit_gated(ended + Duration::from_secs(9), lease()),
            Admission::Unavailable { .. }
        ));
        assert_eq!(
            s.admit_gated(ended + Duration::from_secs(10), lease()),
            Admission::Probe
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cluster_streak_ejects_a_healthy_scope_only() {
        let p = policy();
        let mut s = ScopeState::default();
        let t = Instant::now();
        assert_eq!(
            s.eject_for_cluster_streak(t, &p),
            Transition::Ejected {
                until: t + Duration::from_secs(5),
                ejection: 1
            }
        );
        assert_eq!(s.eject_for_cluster_streak(t, &p), Transition::None);
        let ended = t + Duration::from_secs(5);
        assert_eq!(s.eject_for_cluster_streak(ended, &p), Transition::None);
    }
}
