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
        Self { failures_to_open: 3, open: Duration::from_secs(30), max_open: Duration::from_secs(900) }
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
    Closed { failures: u32 },
    Open { until: Instant, cause: OpenCause },
    /// The single probe is in flight; every other call skips the provider.
    HalfOpen,
    /// The key or the model is wrong: nothing is sent until the config changes.
    Disabled { class: FailureClass, detail: String },
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
        Self { cfg, state: State::Closed { failures: 0 }, period: cfg.open }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// What `admit` would answer, without changing anything.
    pub fn peek(&self, now: Instant) -> Admission {
        match &self.state {
            State::Closed { .. } => Admission::Send { probe: false },
            State::Open { until, .. } if now >= *until => Admission::Send { probe: true },
            State::Open { until, cause } => Admission::Open { until: *until, cause: *cause },
            State::HalfOpen => Admission::ProbeInFlight,
            State::Disabled { class, detail } => Admission::Disabled { class: *class, detail: detail.clone() },
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
            self.state = State::Open { until: now, cause: OpenCause::Failures };
        }
    }

    /// Records the outcome of a request that `admit` let through. `jitter` (within ±0.2) scales
    /// the re-open period after a failed probe.
    pub fn record(&mut self, now: Instant, probe: bool, result: CallResult<'_>, jitter: f64) -> Option<Transition> {
        if matches!(self.state, State::Disabled { .. }) {
            return None;
        }
        let failure = match result {
            Ok(()) => return self.on_answer(probe),
            Err(f) => f,
        };
        match failure.class {
            FailureClass::Unauthorized | FailureClass::ModelUnavailable => {
                self.state = State::Disabled { class: failure.class, detail: failure.detail.clone() };
                Some(Transition::Disabled { class: failure.class })
            }
            // The provider answered: it is up, even if this line was not for it.
            FailureClass::Refused | FailureClass::BadRequest => self.on_answer(probe),
            FailureClass::RateLimited => {
                if !probe && self.state == State::HalfOpen {
                    return None; // the probe decides
                }
                let wait = failure.retry_after.unwrap_or(self.cfg.open).min(MAX_RETRY_AFTER);
                let mut until = now + wait;
                if let State::Open { until: current, .. } = self.state {
                    until = until.max(current);
                }
                self.open(until, OpenCause::RateLimited)
            }
            FailureClass::Transient => {
                if probe {
                    self.period = (self.period * 2).min(self.cfg.max_open);
                    let jittered = self.period.mul_f64(1.0 + jitter.clamp(-0.2, 0.2)).min(self.cfg.max_open);
                    return self.open(now + jittered, OpenCause::Failures);
                }
                match &mut self.state {
                    State::Closed { failures } => {
                        *failures += 1;
                        if *failures >= self.cfg.failures_to_open {
                            self.period = self.cfg.open;
                            self.open(now + self.cfg.open, OpenCause::Failures)
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
