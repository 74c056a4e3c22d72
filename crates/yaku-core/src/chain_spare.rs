//! The chain's lowest-priority request, for look-ahead: one try at one provider that can
//! spare it, or nothing at all. Kept apart from the walk so that the walk's policy (waits,
//! retries, probes) is untouched by it.

use std::time::Duration;

use super::*;

impl Chain {
    /// Sends `reqs` as one batch to the first provider, in chain order, that `allow` lets
    /// through, whose breaker is closed (never a half-open probe) and that has a free
    /// rate-limit cell now (never waited for). One request at most, never retried, cut off
    /// after `deadline`. None: no provider could spare a request, and nothing was sent.
    pub async fn spare_batch(
        &self,
        reqs: &[TranslationRequest],
        deadline: Duration,
        allow: &(dyn Fn(&ChainEntry) -> bool + Sync),
    ) -> Option<Result<Answered<BatchReply>, ChainFailure>> {
        let first = reqs.first()?;
        let checks = ReplyChecks::new(first, self.cfg.reply_checks);
        let prompt = build_batch(reqs);
        let max = usize::from(prompt.options);
        let n = reqs.len();
        let parse = move |text: &str| Ok(parse_batch(text, n, &checks, max));
        let ask = Ask {
            tokens: prompt.estimated_tokens(),
            prompt,
            parse: &parse,
            // Look-ahead is the lowest priority: it never asks a second provider.
            hedge: false,
        };
        let start = self.clock.now();
        let entry = self.entries.iter().find(|e| {
            e.provider.is_some()
                && e.unusable.is_none()
                && allow(e)
                && Self::spare_cell(e, self.clock.now(), ask.tokens)
        })?;
        let provider = entry.provider.as_ref()?;
        tracing::debug!(provider = %entry.name, lines = n, "look-ahead: sending");
        let sent = self
            .call(
                entry,
                provider.as_ref(),
                &ask,
                false,
                crate::clock::later(start, deadline),
            )
            .await;
        let outcome = sent.result;
        let sent = vec![sent.record];
        let latency = self.clock.now().saturating_duration_since(start);
        Some(match outcome {
            Some(Ok(value)) => Ok(Answered {
                value,
                provider: entry.name.clone(),
                model: provider.model().to_string(),
                skipped: Vec::new(),
                latency,
                attempts: sent,
            }),
            Some(Err(f)) => Err(ChainFailure {
                skipped: vec![self.describe_failure(entry, &f)],
                latency,
                attempts: sent,
            }),
            None => Err(ChainFailure {
                skipped: Vec::new(),
                latency,
                attempts: sent,
            }),
        })
    }

    /// Takes a cell of `entry`'s budget when its breaker is closed and a cell is free now,
    /// under the one lock (the breaker and the limit change together or not at all).
    fn spare_cell(entry: &ChainEntry, now: Instant, tokens: u32) -> bool {
        let g = entry.lock();
        g.breaker.peek(now) == (Admission::Send { probe: false })
            && g.limit.try_acquire_cost(tokens).is_ok()
    }
}
