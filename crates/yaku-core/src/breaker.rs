//! The per-provider circuit breaker: a pure state machine. It never reads a clock and never
//! sleeps; the caller passes `now` (and the jitter to apply) and gets back what to do.

use std::time::{Duration, Instant};

use super::provider::{FailureClass, ProviderFailure};

/// The longest wait a provider's rate-limit reply can impose: a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// How the breaker opens and backs off; from `[breaker]` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive transient failures that open the breaker.
    pub failures_to_open: u32,
    /// The first open period.
    pub open: Duration,
    /// The cap on the doubling open period.
    pub max_open: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_to_open: 3,
            open: Duration::from_secs(30),
            max_open: Duration::from_secs(900),
        }
    }
}

/// Why an open breaker opened; reported to the user as different reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenCause {
    /// Consecutive transient failures, or a failed probe.
    Failures,
    /// The provider answered 429 and said how long to wait.
    RateLimited,
}

/// The breaker's state.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        cause: OpenCause,
    },
    /// The single probe is in flight; every other call skips the provider.
    HalfOpen,
    /// The key or the model is wrong: nothing is sent until the config changes.
    Disabled {
        class: FailureClass,
        detail: String,
    },
}

/// What the breaker says about sending a request now.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Send it; `probe` is true for the single half-open probe.
    Send { probe: bool },
    /// Do not send: the provider is open until `until`.
    Open { until: Instant, cause: OpenCause },
    /// Do not send: another call is the probe.
    ProbeInFlight,
    /// Do not send: disabled until the config changes.
    Disabled { class: FailureClass, detail: String },
}

/// A state change worth telling the user about (the caller logs it).
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Opened { until: Instant, cause: OpenCause },
    Closed,
    Disabled { class: FailureClass },
}

/// What a sent request came to, as the breaker needs to know it.
pub type CallResult<'a> = Result<(), &'a ProviderFailure>;

/// One provider's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: State,
    /// The last open period after failures, before jitter; doubles on each failed probe.
    period: Duration,
}

impl Breaker {
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            state: State::Closed { failures: 0 },
            period: cfg.open,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// What `admit` would answer, without changing anything.
    pub fn peek(&self, now: Instant) -> Admission {
        match &self.state {
            State::Closed { .. } => Admission::Send { probe: false },
            State::Open { until, .. } if now >= *until => Admission::Send { probe: true },
            State::Open { until, cause } => Admission::Open {
                until: *until,
                cause: *cause,
            },
            State::HalfOpen => Admission::ProbeInFlight,
            State::Disabled { class, detail } => Admission::Disabled {
                class: *class,
                detail: detail.clone(),
            },
        }
    }

    /// Asks to send a request at `now`. The first call at or after the open period's end
    /// becomes the probe and moves the breaker to half-open.
    pub fn admit(&mut self, now: Instant) -> Admission {
        let answer = self.peek(now);
        if answer == (Admission::Send { probe: true }) {
            self.state = State::HalfOpen;
        }
        answer
    }

    /// The probe was cancelled before it had an outcome: the next call may probe at once.
    pub fn abandon_probe(&mut self, now: Instant) {
        if self.state == State::HalfOpen {
            self.state = State::Open {
                until: now,
                cause: OpenCause::Failures,
            };
        }
    }

    /// Records the outcome of a request that `admit` let through. `jitter` (within ±0.2) scales
    /// the re-open period after a failed probe.
    pub fn record(
        &mut self,
        now: Instant,
        probe: bool,
        result: CallResult<'_>,
        jitter: f64,
    ) -> Option<Transition> {
        if matches!(self.state, State::Disabled { .. }) {
            return None;
        }
        let failure = match result {
            Ok(()) => return self.on_answer(probe),
            Err(f) => f,
        };
        match failure.class {
            FailureClass::Unauthorized | FailureClass::ModelUnavailable => {
                self.state = State::Disabled {
                    class: failure.class,
                    detail: failure.detail.clone(),
                };
                Some(Transition::Disabled {
                    class: failure.class,
                })
            }
            // The provider answered: it is up, even if this line was not for it.
            FailureClass::Refused | FailureClass::BadRequest => self.on_answer(probe),
            FailureClass::RateLimited => {
                if !probe && self.state == State::HalfOpen {
                    return None; // the probe decides
                }
                let wait = failure
                    .retry_after
                    .unwrap_or(self.cfg.open)
                    .min(MAX_RETRY_AFTER);
                let mut until = crate::clock::later(now, wait);
                if let State::Open { until: current, .. } = self.state {
                    until = until.max(current);
                }
                self.open(until, OpenCause::RateLimited)
            }
            FailureClass::Transient => {
                if probe {
                    self.period = (self.period * 2).min(self.cfg.max_open);
                    let jittered = self
                        .period
                        .mul_f64(1.0 + jitter.clamp(-0.2, 0.2))
                        .min(self.cfg.max_open);
                    return self.open(crate::clock::later(now, jittered), OpenCause::Failures);
                }
                match &mut self.state {
                    State::Closed { failures } => {
                        *failures += 1;
                        if *failures >= self.cfg.failures_to_open {
                            self.period = self.cfg.open;
                            self.open(crate::clock::later(now, self.cfg.open), OpenCause::Failures)
                        } else {
                            None
                        }
                    }
                    // A straggler from before the breaker opened: the breaker already acted.
                    _ => None,
                }
            }
        }
    }

    fn on_answer(&mut self, probe: bool) -> Option<Transition> {
        match self.state {
            State::Closed { .. } => {
                self.state = State::Closed { failures: 0 };
                None
            }
            State::HalfOpen if probe => {
                self.state = State::Closed { failures: 0 };
                self.period = self.cfg.open;
                Some(Transition::Closed)
            }
            _ => None,
        }
    }

    fn open(&mut self, until: Instant, cause: OpenCause) -> Option<Transition> {
        self.state = State::Open { until, cause };
        Some(Transition::Opened { until, cause })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::QuotaScope;

    const S: Duration = Duration::from_secs(1);

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failures_to_open: 3,
            open: 30 * S,
            max_open: 100 * S,
        }
    }

    fn fail(class: FailureClass) -> ProviderFailure {
        ProviderFailure::new(class, "test")
    }

    fn limited(after: Option<Duration>) -> ProviderFailure {
        ProviderFailure::rate_limited(after, QuotaScope::Short, "test")
    }

    /// One step of a table: at `t` seconds, ask to send; if sent, record `outcome`.
    struct Step {
        t: f64,
        outcome: Option<Result<(), ProviderFailure>>,
        want: Want,
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Send,
        Probe,
        Open,
        InFlight,
        Disabled,
    }

    fn run(table: &[Step]) {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for (i, step) in table.iter().enumerate() {
            let now = t0 + Duration::from_secs_f64(step.t);
            let got = match b.admit(now) {
                Admission::Send { probe: false } => Want::Send,
                Admission::Send { probe: true } => Want::Probe,
                Admission::Open { .. } => Want::Open,
                Admission::ProbeInFlight => Want::InFlight,
                Admission::Disabled { .. } => Want::Disabled,
            };
            assert_eq!(got, step.want, "step {i} at t={}", step.t);
            let sent = matches!(got, Want::Send | Want::Probe);
            if let (true, Some(outcome)) = (sent, &step.outcome) {
                b.record(now, got == Want::Probe, outcome.as_ref().map(|_| ()), 0.0);
            }
        }
    }

    fn s(t: f64, outcome: Option<Result<(), ProviderFailure>>, want: Want) -> Step {
        Step { t, outcome, want }
    }

    #[test]
    fn opens_at_the_threshold_and_not_before() {
        let tr = || Some(Err(fail(FailureClass::Transient)));
        run(&[
            s(0.0, tr(), Want::Send),
            s(1.0, tr(), Want::Send),
            s(2.0, Some(Ok(())), Want::Send), // success resets the count
            s(3.0, tr(), Want::Send),
            s(4.0, tr(), Want::Send),
            s(5.0, tr(), Want::Send), // third consecutive: opens for 30 s
            s(5.1, None, Want::Open),
            s(34.999, None, Want::Open),
        ]);
    }

    #[test]
    fn exactly_one_probe_at_the_boundary_and_success_closes() {
        let tr = || Some(Err(fail(FailureClass::Transient)));
        run(&[
            s(0.0, tr(), Want::Send),
            s(0.0, tr(), Want::Send),
            s(0.0, tr(), Want::Send),
            s(29.999, None, Want::Open),
            s(30.0, None, Want::Probe), // the probe is in flight (no outcome yet)
            s(30.0, None, Want::InFlight),
            s(31.0, None, Want::InFlight),
        ]);
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.record(t0, false, Err(&fail(FailureClass::Transient)), 0.0);
        }
        assert_eq!(b.admit(t0 + 30 * S), Admission::Send { probe: true });
        assert_eq!(
            b.record(t0 + 31 * S, true, Ok(()), 0.0),
            Some(Transition::Closed)
        );
        assert_eq!(b.admit(t0 + 31 * S), Admission::Send { probe: false });
    }

    #[test]
    fn failed_probes_double_the_period_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..3 {
            b.record(t0, false, Err(&fail(FailureClass::Transient)), 0.0);
        }
        let mut now = t0;
        let mut expected = vec![];
        let mut got = vec![];
        let mut period = 30 * S;
        for _ in 0..4 {
            let State::Open { until, .. } = *b.state() else {
                panic!("not open: {:?}", b.state())
            };
            now = until;
            assert_eq!(b.admit(now), Admission::Send { probe: true });
            b.record(now, true, Err(&fail(FailureClass::Transient)), 0.0);
            let State::Open { until, .. } = *b.state() else {
                panic!("probe failure must re-open")
            };
            got.push(until - now);
            period = (period * 2).min(100 * S);
            expected.push(period);
        }
        assert_eq!(got, expected);
        assert_eq!(got, vec![60 * S, 100 * S, 100 * S, 100 * S]);
        // A success resets the backoff: the next opening is the first period again.
        let State::Open { until, .. } = *b.state() else {
            panic!()
        };
        b.admit(until);
        b.record(until, true, Ok(()), 0.0);
        for _ in 0..3 {
            b.record(until, false, Err(&fail(FailureClass::Transient)), 0.0);
        }
        assert_eq!(
            b.state(),
            &State::Open {
                until: until + 30 * S,
                cause: OpenCause::Failures
            }
        );
        let _ = now;
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_under_the_cap() {
        let t0 = Instant::now();
        for (jitter, want) in [(0.2, 72.0), (-0.2, 48.0), (5.0, 72.0), (-5.0, 48.0)] {
            let mut b = Breaker::new(cfg());
            b.record(t0, false, Err(&limited(None)), 0.0);
            b.admit(t0 + 30 * S);
            b.record(
                t0 + 30 * S,
                true,
                Err(&fail(FailureClass::Transient)),
                jitter,
            );
            let State::Open { until, .. } = *b.state() else {
                panic!()
            };
            assert_eq!(
                (until - (t0 + 30 * S)).as_secs_f64(),
                want,
                "jitter {jitter}"
            );
        }
        let mut b = Breaker::new(BreakerConfig {
            max_open: 60 * S,
            ..cfg()
        });
        b.record(t0, false, Err(&limited(None)), 0.0);
        b.admit(t0 + 30 * S);
        b.record(t0 + 30 * S, true, Err(&fail(FailureClass::Transient)), 0.2);
        assert_eq!(
            b.state(),
            &State::Open {
                until: t0 + 90 * S,
                cause: OpenCause::Failures
            }
        );
    }

    #[test]
    fn rate_limit_opens_at_once_for_the_given_wait() {
        let t0 = Instant::now();
        let cases: &[(Option<Duration>, Duration)] = &[
            (Some(37 * S), 37 * S),
            (
                Some(Duration::from_millis(57_238)),
                Duration::from_millis(57_238),
            ),
            (None, 30 * S),                                // no wait given: open_secs
            (Some(10 * MAX_RETRY_AFTER), MAX_RETRY_AFTER), // absurd: capped at a day
            (Some(Duration::ZERO), Duration::ZERO),
        ];
        for (after, want) in cases {
            let mut b = Breaker::new(cfg());
            assert_eq!(
                b.record(t0, false, Err(&limited(*after)), 0.0),
                Some(Transition::Opened {
                    until: t0 + *want,
                    cause: OpenCause::RateLimited
                })
            );
            if !want.is_zero() {
                assert!(matches!(
                    b.admit(t0 + *want - Duration::from_millis(1)),
                    Admission::Open { .. }
                ));
            }
            assert_eq!(
                b.admit(t0 + *want),
                Admission::Send { probe: true },
                "{after:?}"
            );
        }
    }

    #[test]
    fn a_later_rate_limit_never_shortens_an_open_period() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        b.record(t0, false, Err(&limited(Some(60 * S))), 0.0);
        b.record(t0 + S, false, Err(&limited(Some(5 * S))), 0.0);
        assert_eq!(
            b.state(),
            &State::Open {
                until: t0 + 60 * S,
                cause: OpenCause::RateLimited
            }
        );
    }

    #[test]
    fn unauthorized_and_model_unavailable_disable_until_rebuilt() {
        for class in [FailureClass::Unauthorized, FailureClass::ModelUnavailable] {
            let t0 = Instant::now();
            let mut b = Breaker::new(cfg());
            assert_eq!(
                b.record(t0, false, Err(&fail(class)), 0.0),
                Some(Transition::Disabled { class })
            );
            for later in [S, 1000 * S, 100_000 * S] {
                assert!(matches!(b.admit(t0 + later), Admission::Disabled { .. }));
            }
            // Nothing re-enables it but a new breaker (a config reload).
            assert_eq!(b.record(t0, true, Ok(()), 0.0), None);
            assert!(matches!(b.admit(t0), Admission::Disabled { .. }));
            assert_eq!(
                Breaker::new(cfg()).admit(t0),
                Admission::Send { probe: false }
            );
        }
    }

    #[test]
    fn refusals_and_bad_requests_do_not_count_as_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        for _ in 0..10 {
            b.record(t0, false, Err(&fail(FailureClass::Refused)), 0.0);
            b.record(t0, false, Err(&fail(FailureClass::BadRequest)), 0.0);
        }
        assert_eq!(b.state(), &State::Closed { failures: 0 });
        // A probe answered with a refusal proves the provider is up.
        let mut b = Breaker::new(cfg());
        b.record(t0, false, Err(&limited(Some(5 * S))), 0.0);
        b.admit(t0 + 5 * S);
        assert_eq!(
            b.record(t0 + 5 * S, true, Err(&fail(FailureClass::Refused)), 0.0),
            Some(Transition::Closed)
        );
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        b.record(t0, false, Err(&limited(Some(5 * S))), 0.0);
        assert_eq!(b.admit(t0 + 5 * S), Admission::Send { probe: true });
        assert_eq!(b.admit(t0 + 6 * S), Admission::ProbeInFlight);
        b.abandon_probe(t0 + 7 * S);
        assert_eq!(b.admit(t0 + 7 * S), Admission::Send { probe: true });
    }

    #[test]
    fn stragglers_do_not_move_an_open_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::new(cfg());
        b.record(t0, false, Err(&limited(Some(50 * S))), 0.0);
        let before = b.state().clone();
        assert_eq!(b.record(t0 + S, false, Ok(()), 0.0), None);
        assert_eq!(
            b.record(t0 + S, false, Err(&fail(FailureClass::Transient)), 0.0),
            None
        );
        assert_eq!(b.state(), &before);
    }
}
