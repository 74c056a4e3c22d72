//! Warm connections: when to use each provider's connection again so that the first line after
//! a break does not pay a fresh TCP + TLS handshake. [`WarmPolicy`] is the pure decision (which
//! providers to warm now, when to look again); [`keep_warm`] runs it on the `Clock` port and
//! calls [`Provider::warm`](crate::provider::Provider::warm), which sends nothing billable.
//!
//! Warming happens while the reader is active (a line accepted within `idle_after`, or the
//! daemon just started or resumed), never while paused and never once the reader is gone: an
//! idle yaku sends nothing and wakes for nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::chain::Chain;
use crate::clock::{Clock, later};
use crate::daemon::DaemonCounts;

/// `[connections]`: how often a connection is used again, and for how long after the last line
/// (the defaults are the config's, in `config/raw.rs`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmConfig {
    /// A connection unused for this long is warmed: below the servers' idle timeouts (nginx
    /// closes an idle keep-alive connection at 75 s).
    pub every: Duration,
    /// Without a line for this long the reader is gone, and warming stops until the next line.
    pub idle_after: Duration,
}

/// What to do now: the providers to warm (by name) and when to look again; None: not until
/// something happens (a line, a reload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmPlan {
    pub warm: Vec<String>,
    pub next: Option<Instant>,
}

/// The state behind the decision: the last activity, whether the daemon was paused at the last
/// look, and when each provider's connection was last warmed.
#[derive(Debug, Clone)]
pub struct WarmPolicy {
    cfg: WarmConfig,
    last_activity: Instant,
    was_paused: bool,
    warmed: Vec<(String, Instant)>,
    /// Set by a line that ends an idle spell: its request opens a connection, and a warm
    /// beside it would only open a second one, so no provider counts as warmed before this.
    floor: Option<Instant>,
}

impl WarmPolicy {
    /// A policy whose reader counts as active at `started` (the daemon's start: the first
    /// line should find its connection open).
    pub fn new(cfg: WarmConfig, started: Instant) -> Self {
        Self {
            cfg,
            last_activity: started,
            was_paused: false,
            warmed: Vec::new(),
            floor: None,
        }
    }

    /// A line arrived at `at`.
    pub fn active(&mut self, at: Instant) {
        if at >= later(self.last_activity, self.cfg.idle_after) {
            self.floor = Some(at);
        }
        self.last_activity = self.last_activity.max(at);
    }

    /// `name`'s connection was used (warmed, or tried: a failed warm waits as long) at `at`.
    pub fn warmed(&mut self, name: &str, at: Instant) {
        match self.warmed.iter_mut().find(|(n, _)| n == name) {
            Some((_, t)) => *t = at,
            None => self.warmed.push((name.to_string(), at)),
        }
    }

    /// Forgets every warm: the providers were rebuilt (a reload) and their connections are new.
    pub fn forget(&mut self) {
        self.warmed.clear();
        self.floor = None;
    }

    fn last_warm(&self, name: &str) -> Option<Instant> {
        let warmed = self.warmed.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
        match (warmed, self.floor) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Which of `providers` to warm at `now`, and when to look again.
    pub fn plan(&mut self, now: Instant, paused: bool, providers: &[&str]) -> WarmPlan {
        if paused {
            // Looked at again for the resume: the pause flag sends no event.
            self.was_paused = true;
            return WarmPlan {
                warm: Vec::new(),
                next: Some(later(now, self.cfg.every)),
            };
        }
        if std::mem::take(&mut self.was_paused) {
            // A resume: the reader is back and the next line near, so warm now (not `active`,
            // which holds warms back beside a line's own request).
            self.last_activity = self.last_activity.max(now);
        }
        let idle_at = later(self.last_activity, self.cfg.idle_after);
        if now >= idle_at || providers.is_empty() {
            return WarmPlan {
                warm: Vec::new(),
                next: None,
            };
        }
        let mut warm = Vec::new();
        let mut next: Option<Instant> = None;
        for name in providers {
            let due = match self.last_warm(name) {
                Some(t) if now.saturating_duration_since(t) < self.cfg.every => {
                    later(t, self.cfg.every)
                }
                _ => {
                    warm.push((*name).to_string());
                    later(now, self.cfg.every)
                }
            };
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        // Past the idle mark there is nothing to do: the next line wakes the task.
        let next = next.filter(|t| *t < idle_at);
        WarmPlan { warm, next }
    }
}

/// Keeps the providers of the current chain warm as [`WarmPolicy`] says, until dropped.
/// `chains` carries the chain in force (a reload replaces it, and its new connections are
/// warmed at once); a change of `counts.accepted` is a line; `paused` is the daemon's pause.
pub async fn keep_warm(
    clock: Arc<dyn Clock>,
    cfg: WarmConfig,
    mut chains: watch::Receiver<Arc<Chain>>,
    mut counts: watch::Receiver<DaemonCounts>,
    paused: Arc<AtomicBool>,
) {
    let mut policy = WarmPolicy::new(cfg, clock.now());
    let mut accepted = counts.borrow_and_update().accepted;
    let mut chains_open = true;
    loop {
        let chain = chains.borrow_and_update().clone();
        let providers: Vec<_> = chain
            .entries()
            .iter()
            .filter_map(|e| e.provider.clone())
            .collect();
        let names: Vec<&str> = providers.iter().map(|p| p.name()).collect();
        let plan = policy.plan(clock.now(), paused.load(Ordering::Relaxed), &names);
        if !plan.warm.is_empty() {
            // Together: one slow provider must not hold the others' warming back.
            let mut warms = tokio::task::JoinSet::new();
            for p in providers
                .iter()
                .filter(|p| plan.warm.iter().any(|n| n == p.name()))
            {
                let p = p.clone();
                warms.spawn(async move {
                    match p.warm().await {
                        Ok(()) => tracing::debug!(provider = %p.name(), "connection warmed"),
                        // The adapters' details are our own words: no key, no URL.
                        Err(f) => {
                            tracing::debug!(provider = %p.name(), reason = %f, "warming failed")
                        }
                    }
                });
            }
            while warms.join_next().await.is_some() {}
            // Tried is warmed, whatever came of it: a failed warm waits as long as a good one.
            let now = clock.now();
            for name in &plan.warm {
                policy.warmed(name, now);
            }
            continue;
        }
        let wait = async {
            match plan.next {
                Some(t) => clock.sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = wait => {}
            changed = chains.changed(), if chains_open => {
                if changed.is_ok() {
                    policy.forget();
                } else {
                    chains_open = false;
                }
            }
            changed = counts.changed() => {
                if changed.is_err() {
                    return; // the daemon is gone
                }
                let now_accepted = counts.borrow_and_update().accepted;
                if now_accepted != accepted {
                    accepted = now_accepted;
                    policy.active(clock.now());
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "warm_tests.rs"]
mod tests;
