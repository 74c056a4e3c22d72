//! Per-provider request budgets as GCRA limiters (governor), on the injected clock.
//!
//! The per-minute limiter allows no burst: requests are spaced `60 s / rpm` apart, so no
//! 60-second window ever holds more than `rpm` requests, whether the provider counts in fixed
//! windows, sliding windows or token buckets. The per-day limiter allows the whole day's
//! budget as a burst and refills it evenly, like the providers' own daily token buckets.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::Clock as GovernorClock;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::clock::Clock;

/// Adapts the `Clock` port to governor: instants are durations since a fixed origin.
#[derive(Clone)]
struct PortClock {
    clock: Arc<dyn Clock>,
    origin: Instant,
}

impl GovernorClock for PortClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.origin)
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, PortClock, NoOpMiddleware<Duration>>;
type DayLimiter = RateLimiter<NotKeyed, InMemoryState, PortClock, StateInformationMiddleware>;

/// A provider's request budget.
pub struct RateLimit {
    origin: Instant,
    clock: Arc<dyn Clock>,
    per_minute: Option<Limiter>,
    per_day: Option<(DayLimiter, u32)>,
    /// The day's remaining requests at the last check, and when that was.
    day_left: std::sync::Mutex<Option<(u32, Instant)>>,
    /// `tokens_per_minute`: a token budget, and the largest cost one request may take.
    tokens: Option<(Limiter, NonZeroU32)>,
    /// Nothing is sent before this instant: the provider reported its budget used up.
    held: std::sync::Mutex<Option<Instant>>,
}

impl RateLimit {
    /// `0` for either limit means no limit of that kind.
    pub fn new(requests_per_minute: u32, requests_per_day: u32, clock: Arc<dyn Clock>) -> Self {
        let origin = clock.now();
        let pclock = PortClock {
            clock: clock.clone(),
            origin,
        };
        let per_minute = NonZeroU32::new(requests_per_minute).and_then(|rpm| {
            Quota::with_period(Duration::from_secs(60) / rpm.get()).map(|q| {
                RateLimiter::direct_with_clock(q.allow_burst(NonZeroU32::MIN), pclock.clone())
            })
        });
        let per_day = NonZeroU32::new(requests_per_day).and_then(|rpd| {
            Quota::with_period(Duration::from_secs(86_400) / rpd.get()).map(|q| {
                let limiter = RateLimiter::direct_with_clock(q.allow_burst(rpd), pclock.clone())
                    .with_middleware::<StateInformationMiddleware>();
                (limiter, rpd.get())
            })
        });
        Self {
            origin,
            clock,
            per_minute,
            per_day,
            day_left: std::sync::Mutex::new(None),
            tokens: None,
            held: std::sync::Mutex::new(None),
        }
    }

    /// Adds a tokens-per-minute budget (`0` = none). Half of it may be spent at once and it
    /// refills at half the rate per 30 s, so no 60-second window holds more than `tpm` tokens.
    pub fn with_tokens_per_minute(mut self, tpm: u32) -> Self {
        let pclock = PortClock {
            clock: self.clock.clone(),
            origin: self.origin,
        };
        self.tokens = NonZeroU32::new((tpm / 2).max(u32::from(tpm > 0))).and_then(|half| {
            Quota::with_period(Duration::from_secs(30) / half.get()).map(|q| {
                (
                    RateLimiter::direct_with_clock(q.allow_burst(half), pclock),
                    half,
                )
            })
        });
        self
    }

    /// Sends nothing until `until` (later holds win): the provider said its budget is spent.
    pub fn hold_until(&self, until: Instant) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none_or(|h| h < until) {
            *held = Some(until);
        }
    }

    /// Takes one request costing about `tokens` tokens from the budget, or says when it will
    /// be free. A cost above what the token budget can ever hold is taken as all of it.
    pub fn try_acquire_cost(&self, tokens: u32) -> Result<(), Instant> {
        let now = self.clock.now();
        if let Some(h) = *self.held.lock().unwrap_or_else(|e| e.into_inner())
            && now < h
        {
            return Err(h);
        }
        // Governor's check spends a cell when it allows. The minute is asked first: a minute cell
        // spent on a request the day then refuses only delays the next request, whereas a day
        // cell spent that way would be lost for hours. Tokens come between, for the same reason.
        if let Some(minute) = &self.per_minute
            && let Err(not_until) = minute.check()
        {
            return Err(self.origin + not_until.earliest_possible());
        }
        if let Some((limiter, most)) = &self.tokens
            && let Some(n) = NonZeroU32::new(tokens.min(most.get()))
        {
            match limiter.check_n(n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => return Err(self.origin + not_until.earliest_possible()),
                Err(_) => return Err(crate::clock::later(now, Duration::from_secs(60))),
            }
        }
        if let Some((day, _)) = &self.per_day {
            let mut left = self.day_left.lock().unwrap_or_else(|e| e.into_inner());
            match day.check() {
                Ok(snapshot) => *left = Some((snapshot.remaining_burst_capacity(), now)),
                Err(not_until) => {
                    *left = Some((0, now));
                    return Err(self.origin + not_until.earliest_possible());
                }
            }
        }
        Ok(())
    }

    /// As [`RateLimit::try_acquire_cost`], for a request that is not needed (a hedge): it
    /// never takes the day's last request, which the next line would need. The per-minute and
    /// token budgets refill within a minute, so a free cell there may be taken.
    /// Whether it was taken.
    pub fn try_acquire_spare(&self, tokens: u32) -> bool {
        self.day_remaining().is_none_or(|left| left >= 2) && self.try_acquire_cost(tokens).is_ok()
    }

    /// Takes one request from the budget, or says when the next one will be free.
    pub fn try_acquire(&self) -> Result<(), Instant> {
        self.try_acquire_cost(0)
    }

    /// Takes `n` requests from the day's budget at once: those already made (read from the
    /// history when the daemon starts or reloads), so a restart never gives them back.
    pub fn spend_day(&self, n: u32) {
        let Some((day, rpd)) = &self.per_day else {
            return;
        };
        let Some(n) = NonZeroU32::new(n.min(*rpd)) else {
            return;
        };
        let now = self.clock.now();
        let mut left = self.day_left.lock().unwrap_or_else(|e| e.into_inner());
        match day.check_n(n) {
            Ok(Ok(snapshot)) => *left = Some((snapshot.remaining_burst_capacity(), now)),
            // Fewer than `n` left: the day's budget is spent.
            _ => {
                for _ in 0..*rpd {
                    if day.check().is_err() {
                        break;
                    }
                }
                *left = Some((0, now));
            }
        }
    }

    /// Requests left in the day's budget now; None when there is no daily cap.
    pub fn day_remaining(&self) -> Option<u32> {
        let (_, rpd) = self.per_day.as_ref()?;
        let left = *self.day_left.lock().unwrap_or_else(|e| e.into_inner());
        let Some((left, at)) = left else {
            return Some(*rpd);
        };
        // One request comes back every day / rpd.
        let refilled = self.clock.now().saturating_duration_since(at).as_secs_f64()
            / (86_400.0 / f64::from(*rpd));
        Some((f64::from(left) + refilled.floor()).min(f64::from(*rpd)) as u32)
    }
}
