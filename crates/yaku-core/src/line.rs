//! The one line use case, shared by the daemon, `yaku translate` and setup's first line:
//! cache lookup → history row → chain → final status → cache entry.
//!
//! It is two steps because the daemon queues a line between accepting it (its row is begun at
//! intake, so a superseded line is still in the history) and translating it:
//! [`Lines::accept`] answers from the cache or begins a `pending` row, and
//! [`Lines::translate`] asks the chain and gives the row its one final status. A line that is
//! never translated gets its final status from [`Lines::abandon`].

use std::sync::Arc;
use std::time::SystemTime;

use super::chain::{Chain, ChainFailure, Skipped, Translation};
use super::memory::{GlossaryEntry, cache_key};
use super::prompt::TranslationRequest;
use super::store::{AttemptRecord, CachedAnswer, Finished, Source, Status, StoreHandle};

/// Where an accepted line stands in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// Its `pending` history row, when the store is up.
    pub history_id: Option<i64>,
    /// Its cache key, when the cache is on: the answer is stored under it.
    pub cache_key: Option<String>,
    /// The game profile of the line, kept with its row and its cache entry.
    pub game: Option<String>,
}

/// What became of an accepted line.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// Answered from the cache, with no request; its history row (in the entry) is already
    /// `cached`.
    Cached(Translation, Entry),
    /// To be translated by [`Lines::translate`].
    Pending(Entry),
}

/// How the cache is used for one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// No cache: nothing read, nothing stored.
    Off,
    /// Read a cached answer first; store a fresh one.
    On,
    /// Ask the chain even when an answer is cached (`--fresh`); store the new one.
    Refresh,
}

/// The use case on its ports: the store (history and cache) is optional, as everywhere in
/// yaku, and a store failure never stops a line from being translated.
#[derive(Clone, Default)]
pub struct Lines {
    store: Option<Arc<StoreHandle>>,
}

impl Lines {
    pub fn new(store: Option<Arc<StoreHandle>>) -> Self {
        Self { store }
    }

    /// Step 1: the cached answer, when there is a usable one, or a begun `pending` row.
    /// `request` carries the line's text, languages, options and instructions; `own` is the
    /// glossary of the line itself (not its context, so the key does not depend on the lines
    /// before).
    pub fn accept(
        &self,
        request: &TranslationRequest,
        own: &[GlossaryEntry],
        source: Source,
        cache: CacheUse,
    ) -> Accepted {
        let key = (cache != CacheUse::Off).then(|| key_for(request, own));
        let cached = match (&key, cache) {
            (Some(k), CacheUse::On) => self.cached(k),
            _ => None,
        };
        let history_id = self.with("recorded a line", |st| {
            st.begin_game(
                &request.text,
                source,
                SystemTime::now(),
                request.game.as_deref(),
            )
        });
        let entry = Entry {
            history_id,
            cache_key: key,
            game: request.game.clone(),
        };
        match cached {
            Some(t) => {
                self.finish(&entry, &Finished::of(Status::Cached, Some(&t), None), &[]);
                Accepted::Cached(t, entry)
            }
            None => Accepted::Pending(entry),
        }
    }

    /// Step 2: asks the chain (only provider `only`, when given), gives the row its final
    /// status with the requests made, and caches a translation.
    pub async fn translate(
        &self,
        chain: &Chain,
        request: &TranslationRequest,
        only: Option<&str>,
        entry: &Entry,
    ) -> Result<Translation, ChainFailure> {
        let result = chain.translate(request, only).await;
        self.record(entry, &result);
        result
    }

    /// Gives a line that will never be translated its final status (`superseded`,
    /// `interrupted`).
    pub fn abandon(&self, entry: &Entry, status: Status) {
        self.finish(entry, &Finished::of(status, None, None), &[]);
    }

    /// The final row (and cache entry) for a chain's result.
    fn record(&self, entry: &Entry, result: &Result<Translation, ChainFailure>) {
        match result {
            Ok(t) => {
                let finished = Finished::of(Status::Translated, Some(t), None);
                self.finish(entry, &finished, &t.attempts);
                if let Some(key) = &entry.cache_key {
                    let answer = CachedAnswer {
                        options: t.options.clone(),
                        provider: t.provider.clone(),
                        model: t.model.clone(),
                    };
                    self.with("stored a translation", |st| {
                        st.cache_put_game(key, &answer, entry.game.as_deref())
                    });
                }
            }
            Err(f) => {
                let reasons = Skipped::reasons(&f.skipped);
                let mut finished = Finished::of(Status::Failed, None, Some(reasons));
                finished.latency_ms = Some(f.latency.as_millis() as u64);
                self.finish(entry, &finished, &f.attempts);
            }
        }
    }

    /// Whether `key` has a usable cached answer (look-ahead skips such lines). A store that
    /// is down answers no.
    pub fn is_cached(&self, key: &str) -> bool {
        self.with("read the cache", |st| st.cache_get(key))
            .flatten()
            .is_some_and(|a| a.options.iter().any(|o| !o.trim().is_empty()))
    }

    /// The store, for work that keeps its own rows (look-ahead batches).
    pub fn store(&self) -> Option<Arc<StoreHandle>> {
        self.store.clone()
    }

    /// A cached answer with at least one usable option; one with none (a hand-edited row, an
    /// old bug) is a miss, so the line is asked fresh and the entry replaced.
    fn cached(&self, key: &str) -> Option<Translation> {
        let mut answer = self
            .with("read the cache", |st| st.cache_get(key))
            .flatten()?;
        answer.options.retain(|o| !o.trim().is_empty());
        if answer.options.is_empty() {
            tracing::info!("a cached answer has no usable option: asking again");
            return None;
        }
        Some(Translation::from(answer))
    }

    fn finish(&self, entry: &Entry, finished: &Finished, attempts: &[AttemptRecord]) {
        if let Some(id) = entry.history_id {
            self.with("finished a line", |st| st.finish(id, finished, attempts));
        }
    }

    fn with<T>(
        &self,
        what: &str,
        op: impl FnOnce(&dyn super::store::Store) -> Result<T, super::store::StoreError>,
    ) -> Option<T> {
        self.store.as_ref().and_then(|s| s.with(what, op))
    }
}

/// The cache key of `request`'s line with its own glossary entries; a speaker the glossary
/// knows is left out of both (`speaker::cache_line`).
/// A game's lines have keys of their own: its glossary and instructions change the answer.
pub fn key_for(request: &TranslationRequest, own: &[GlossaryEntry]) -> String {
    let (line, own) = crate::speaker::cache_line(&request.text, own);
    let key = cache_key(
        line,
        &request.source_language,
        &request.target_language,
        request.options,
        &request.instructions,
        &own,
    );
    match &request.game {
        Some(game) => format!("game={game}|{key}"),
        None => key,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::breaker::BreakerConfig;
    use crate::chain::{ChainConfig, ChainEntry};
    use crate::clock::{Clock, TokioClock};
    use crate::fake::{self, FakeProvider, MemStore, Scripted, request};
    use crate::provider::FailureClass;
    use crate::ratelimit::RateLimit;
    use crate::store::Store;

    struct Rig {
        store: Arc<MemStore>,
        provider: Arc<FakeProvider>,
        chain: Chain,
        lines: Lines,
    }

    fn rig(script: Vec<Scripted>, then: Scripted) -> Rig {
        let clock: Arc<dyn Clock> = Arc::new(TokioClock);
        let provider = Arc::new(FakeProvider::new("gemini", script, then));
        let entry = ChainEntry::new(
            provider.clone(),
            BreakerConfig::default(),
            RateLimit::new(0, 0, clock.clone()),
            String::new(),
        );
        let chain = Chain::new(vec![entry], clock.clone(), ChainConfig::default());
        let store = Arc::new(MemStore::default());
        let handle = StoreHandle::once(store.clone(), clock);
        Rig {
            store,
            provider,
            chain,
            lines: Lines::new(Some(Arc::new(handle))),
        }
    }

    async fn through(r: &Rig, text: &str, cache: CacheUse) -> Result<Translation, ChainFailure> {
        let req = request(text);
        match r.lines.accept(&req, &[], Source::Cli, cache) {
            Accepted::Cached(t, _) => Ok(t),
            Accepted::Pending(entry) => r.lines.translate(&r.chain, &req, None, &entry).await,
        }
    }

    fn finished(r: &Rig) -> Vec<Finished> {
        r.store.finished.lock().unwrap().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn a_translated_line_is_cached_and_its_repeat_answered_without_a_request() {
        let r = rig(vec![], fake::ok("Good morning."));
        through(&r, "おはよう", CacheUse::On).await.unwrap();
        let again = through(&r, "おはよう", CacheUse::On).await.unwrap();
        assert_eq!(again.options, ["Good morning."]);
        assert_eq!(r.provider.calls().len(), 1);
        assert_eq!(
            r.store.statuses(),
            [
                ("おはよう".into(), "translated"),
                ("おはよう".into(), "cached")
            ]
        );
        let rows = finished(&r);
        assert_eq!(
            rows[1].latency_ms,
            Some(0),
            "a cached row says it took no time"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_speaker_in_the_glossary_never_splits_the_cache_and_an_unknown_one_does() {
        use crate::memory::Glossary;
        let r = rig(vec![], fake::ok("Yeah."));
        let glossary = Glossary::new(vec![crate::memory::GlossaryEntry {
            source: "春香".into(),
            target: "Haruka".into(),
            note: String::new(),
        }]);
        let mut answered = Vec::new();
        for text in [
            "【春香】「うん」",
            "春香「うん」",
            "美咲「うん」",
            "【美咲】「うん」",
        ] {
            let req = request(text);
            let own = glossary.applicable(text, &[]);
            answered.push(
                match r.lines.accept(&req, &own, Source::Cli, CacheUse::On) {
                    Accepted::Cached(..) => "cached",
                    Accepted::Pending(entry) => {
                        r.lines
                            .translate(&r.chain, &req, None, &entry)
                            .await
                            .unwrap();
                        "asked"
                    }
                },
            );
        }
        assert_eq!(answered, ["asked", "cached", "asked", "asked"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cached_answer_with_no_usable_option_is_asked_fresh_and_replaced() {
        let r = rig(vec![], fake::ok("Hello."));
        let key = key_for(&request("こんにちは"), &[]);
        for options in [vec![], vec![" ".to_string(), String::new()]] {
            let answer = CachedAnswer {
                options,
                provider: "gemini".into(),
                model: "m".into(),
            };
            r.store.cache_put(&key, &answer).unwrap();
            let t = through(&r, "こんにちは", CacheUse::On).await.unwrap();
            assert_eq!(t.options, ["Hello."]);
            assert_eq!(
                r.store.cache.lock().unwrap()[&key].options,
                ["Hello."],
                "the unusable entry is replaced"
            );
        }
        assert_eq!(r.provider.calls().len(), 2);
        assert!(r.store.statuses().iter().all(|(_, s)| *s == "translated"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_line_records_its_latency_reasons_and_attempts() {
        let mut slow = fake::fail(FailureClass::Refused);
        slow.latency = Duration::from_millis(250);
        let r = rig(vec![slow], fake::ok("x"));
        let f = through(&r, "失敗", CacheUse::On).await.unwrap_err();
        let row = &finished(&r)[0];
        assert_eq!(row.status, Status::Failed);
        assert_eq!(row.latency_ms, Some(250));
        assert_eq!(
            row.error.as_deref(),
            Some(Skipped::reasons(&f.skipped).as_str())
        );
        let attempts = &r.store.rows.lock().unwrap()[0].2;
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].outcome, "refused");
        assert!(
            r.store.cache.lock().unwrap().is_empty(),
            "a failure is not cached"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_asks_again_and_off_neither_reads_nor_writes_the_cache() {
        let r = rig(vec![], fake::ok("Again."));
        through(&r, "もう一度", CacheUse::On).await.unwrap();
        through(&r, "もう一度", CacheUse::Refresh).await.unwrap();
        assert_eq!(r.provider.calls().len(), 2);
        through(&r, "キャッシュなし", CacheUse::Off).await.unwrap();
        assert_eq!(r.store.cache.lock().unwrap().len(), 1);
        assert_eq!(
            r.store
                .statuses()
                .into_iter()
                .map(|(_, s)| s)
                .collect::<Vec<_>>(),
            ["translated", "translated", "translated"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_line_gets_its_one_final_status_and_no_store_means_no_rows() {
        let r = rig(vec![], fake::ok("x"));
        let Accepted::Pending(entry) =
            r.lines
                .accept(&request("途中"), &[], Source::Clipboard, CacheUse::On)
        else {
            panic!("nothing is cached yet");
        };
        r.lines.abandon(&entry, Status::Superseded);
        assert_eq!(r.store.statuses(), [("途中".into(), "skipped")]);

        let bare = Lines::default();
        let Accepted::Pending(entry) = bare.accept(&request("無"), &[], Source::Cli, CacheUse::On)
        else {
            panic!("no store, no cache");
        };
        assert_eq!(entry.history_id, None);
        let t = bare
            .translate(&r.chain, &request("無"), None, &entry)
            .await
            .unwrap();
        assert_eq!(t.options, ["x"]);
    }
}
