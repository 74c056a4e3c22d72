// Test support only (built for tests and the `test-support` feature): a poisoned lock here
// means a test already failed, so panicking is the right answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! In-memory fakes of every port, for the core's unit tests and the shell's tests/: a
//! `Provider` with scripted outcomes and latencies, a `Store`, a `ClipboardSource` whose
//! content a test sets (held to the real X11 adapter by tests/clipboard_contract.rs) and a
//! `Notifier` that records what it shows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::clock::BoxFuture;
use super::daemon::{Notifier, NotifyError};
use super::intake::{ClipboardError, ClipboardRead, ClipboardSource};
use super::notice::Notice;
use super::prompt::Prompt;
use super::provider::{FailureClass, Provider, ProviderFailure};

/// A Japanese line to translate into English, one option wanted: the request most tests send.
pub fn request(text: &str) -> crate::prompt::TranslationRequest {
    crate::prompt::TranslationRequest {
        text: text.into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 1,
        ..Default::default()
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub latency: Duration,
    pub result: Result<String, ProviderFailure>,
}

pub fn ok(text: &str) -> Scripted {
    Scripted {
        latency: Duration::ZERO,
        result: Ok(serde_json::json!({ "options": [text] }).to_string()),
    }
}

pub fn fail(class: FailureClass) -> Scripted {
    Scripted {
        latency: Duration::ZERO,
        result: Err(ProviderFailure::new(class, "scripted")),
    }
}

pub fn limited(secs: u64) -> Scripted {
    Scripted {
        latency: Duration::ZERO,
        result: Err(ProviderFailure::rate_limited(
            Some(Duration::from_secs(secs)),
            super::provider::QuotaScope::Short,
            "scripted 429",
        )),
    }
}

pub struct FakeProvider {
    name: String,
    script: Mutex<VecDeque<Scripted>>,
    /// Answer once the script is used up.
    then: Scripted,
    calls: Mutex<Vec<Instant>>,
}

impl FakeProvider {
    pub fn new(name: &str, script: Vec<Scripted>, then: Scripted) -> Self {
        Self {
            name: name.into(),
            script: Mutex::new(script.into()),
            then,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The (tokio) instants at which calls arrived.
    pub fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

impl Provider for FakeProvider {
    fn name(&self) -> &str {
        &self.name
    }
    fn model(&self) -> &str {
        "fake-model"
    }
    fn complete<'a>(
        &'a self,
        _prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<String, ProviderFailure>> {
        self.calls
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now().into_std());
        let step = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.then.clone());
        Box::pin(async move {
            if !step.latency.is_zero() {
                tokio::time::sleep(step.latency).await;
            }
            step.result
        })
    }
}

/// An in-memory `Store`: history rows and a cache, inspectable by tests.
#[derive(Default)]
pub struct MemStore {
    pub rows: Mutex<
        Vec<(
            String,
            super::store::Status,
            Vec<super::store::AttemptRecord>,
        )>,
    >,
    pub cache: Mutex<std::collections::HashMap<String, super::store::CachedAnswer>>,
    /// Every final state given, in order.
    pub finished: Mutex<Vec<super::store::Finished>>,
    /// Each row's game profile, by row (index = id - 1).
    pub games: Mutex<Vec<Option<String>>>,
}

impl MemStore {
    pub fn statuses(&self) -> Vec<(String, &'static str)> {
        self.rows
            .lock()
            .unwrap()
            .iter()
            .map(|(t, s, _)| (t.clone(), s.as_str()))
            .collect()
    }
}

impl super::store::Store for MemStore {
    fn begin(
        &self,
        text: &str,
        _: super::store::Source,
        _: std::time::SystemTime,
    ) -> Result<i64, super::store::StoreError> {
        let mut rows = self.rows.lock().unwrap();
        rows.push((text.to_string(), super::store::Status::Pending, Vec::new()));
        Ok(rows.len() as i64)
    }
    fn begin_game(
        &self,
        text: &str,
        source: super::store::Source,
        at: std::time::SystemTime,
        game: Option<&str>,
    ) -> Result<i64, super::store::StoreError> {
        let id = self.begin(text, source, at)?;
        self.games.lock().unwrap().push(game.map(str::to_string));
        Ok(id)
    }
    fn finish(
        &self,
        id: i64,
        f: &super::store::Finished,
        attempts: &[super::store::AttemptRecord],
    ) -> Result<(), super::store::StoreError> {
        let mut rows = self.rows.lock().unwrap();
        let row = &mut rows[(id - 1) as usize];
        assert_eq!(
            row.1,
            super::store::Status::Pending,
            "a second final status for {:?}",
            row.0
        );
        row.1 = f.status;
        row.2 = attempts.to_vec();
        self.finished.lock().unwrap().push(f.clone());
        Ok(())
    }
    fn cache_get(
        &self,
        key: &str,
    ) -> Result<Option<super::store::CachedAnswer>, super::store::StoreError> {
        Ok(self.cache.lock().unwrap().get(key).cloned())
    }
    fn cache_put(
        &self,
        key: &str,
        answer: &super::store::CachedAnswer,
    ) -> Result<(), super::store::StoreError> {
        self.cache
            .lock()
            .unwrap()
            .insert(key.to_string(), answer.clone());
        Ok(())
    }
}

/// An active window that a test sets.
#[derive(Default)]
pub struct FakeWindow(pub Mutex<Option<super::games::WindowInfo>>);

impl FakeWindow {
    /// Makes the window of class `class` the active one.
    pub fn set_class(&self, class: &str) {
        *self.0.lock().unwrap() = Some(super::games::WindowInfo {
            class: Some(class.to_string()),
            ..Default::default()
        });
    }
}

impl super::games::ActiveWindow for FakeWindow {
    fn active(&self) -> Option<super::games::WindowInfo> {
        self.0.lock().unwrap().clone()
    }
}

/// A provider that records the prompts it was sent.
pub struct PromptLog {
    pub inner: FakeProvider,
    pub prompts: Mutex<Vec<Prompt>>,
}

impl Provider for PromptLog {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn complete<'a>(
        &'a self,
        prompt: &'a Prompt,
    ) -> BoxFuture<'a, Result<String, ProviderFailure>> {
        self.prompts.lock().unwrap().push(prompt.clone());
        self.inner.complete(prompt)
    }
}

/// What the fake clipboard's owner offers; each setter stands for a new owner (a new copy).
#[derive(Debug, Clone)]
enum Owner {
    /// Nobody owns the clipboard.
    None,
    /// Text, with or without the password-manager hint.
    Text { text: String, concealed: bool },
    /// An owner with no text target (an image, files).
    NoText,
    /// An owner that will not list its targets.
    Unlisted,
    /// An owner that never answers.
    Hung,
}

#[derive(Debug)]
struct ClipState {
    owner: Owner,
    /// An owner that takes the clipboard during the next read, between its targets and its text.
    takes_over: Option<Owner>,
    /// While set, every read fails with it (the display is gone).
    failure: Option<ClipboardError>,
    reads: u64,
    /// Bumped by each copy: the identity of the owner's copy, as X11's owner and timestamp.
    copies: u64,
    /// The copy the last read came from.
    read_copy: Option<u64>,
}

/// A `ClipboardSource` whose content a test sets. It answers as the X11 adapter does (the
/// contract suite in tests/clipboard_contract.rs runs the same checks against both): text
/// with `concealed: Some(..)` from the password-manager hint, more than `max_chars * 4` bytes
/// (at least 64) as `Oversized` without reading it, no owner or no text target as `Empty`, an
/// owner that cannot list its targets as `Undecidable`, a hung owner as `Timeout`, and an
/// owner change between the targets and the text as one `Empty` read. Each copy has an
/// identity of its own (`copy_id`), so the same text copied again is a new copy, as on X11.
///
/// Clones share the clipboard: a test keeps one and gives another to `watch`.
#[derive(Debug, Clone)]
pub struct FakeClipboard {
    state: Arc<Mutex<ClipState>>,
    max_bytes: usize,
}

impl FakeClipboard {
    /// An empty clipboard, with the X11 adapter's size limit for `max_chars`.
    pub fn new(max_chars: usize) -> Self {
        Self {
            state: Arc::new(Mutex::new(ClipState {
                owner: Owner::None,
                takes_over: None,
                failure: None,
                reads: 0,
                copies: 0,
                read_copy: None,
            })),
            max_bytes: max_chars.saturating_mul(4).max(64),
        }
    }

    fn set(&self, owner: Owner) {
        let mut st = self.state.lock().unwrap();
        st.owner = owner;
        st.copies += 1;
    }

    /// A new owner copies `text`.
    pub fn copy(&self, text: &str) {
        self.set(Owner::Text {
            text: text.into(),
            concealed: false,
        });
    }

    /// A password manager copies `text` with the hint `x-kde-passwordManagerHint` = "secret".
    pub fn copy_concealed(&self, text: &str) {
        self.set(Owner::Text {
            text: text.into(),
            concealed: true,
        });
    }

    /// A new owner offers no text (an image).
    pub fn copy_no_text(&self) {
        self.set(Owner::NoText);
    }

    /// A new owner that refuses to list its targets.
    pub fn copy_unlisted(&self) {
        self.set(Owner::Unlisted);
    }

    /// A new owner that never answers.
    pub fn copy_hung(&self) {
        self.set(Owner::Hung);
    }

    /// `first` is copied, and during the next read (after its targets, before its text)
    /// another owner takes the clipboard with `then` (concealed or not).
    pub fn copy_then_take_over(&self, first: &str, then: &str, then_concealed: bool) {
        self.copy(first);
        self.state.lock().unwrap().takes_over = Some(Owner::Text {
            text: then.into(),
            concealed: then_concealed,
        });
    }

    /// Nobody owns the clipboard any more.
    pub fn clear(&self) {
        self.set(Owner::None);
    }

    /// Every read fails with `error` until [`recover`](Self::recover).
    pub fn fail_with(&self, error: ClipboardError) {
        self.state.lock().unwrap().failure = Some(error);
    }

    /// Reads work again, on an empty clipboard (as on a restarted X server).
    pub fn recover(&self) {
        let mut st = self.state.lock().unwrap();
        st.failure = None;
        st.owner = Owner::None;
        st.takes_over = None;
    }

    /// How many reads were made.
    pub fn reads(&self) -> u64 {
        self.state.lock().unwrap().reads
    }
}

impl ClipboardSource for FakeClipboard {
    fn read(&mut self) -> Result<ClipboardRead, ClipboardError> {
        let mut st = self.state.lock().unwrap();
        st.reads += 1;
        st.read_copy = None;
        if let Some(e) = &st.failure {
            return Err(e.clone());
        }
        st.read_copy = Some(st.copies);
        match st.owner.clone() {
            Owner::None | Owner::NoText => Ok(ClipboardRead::Empty),
            Owner::Unlisted => Ok(ClipboardRead::Undecidable),
            Owner::Hung => Err(ClipboardError::Timeout),
            Owner::Text { text, concealed } => {
                if let Some(next) = st.takes_over.take() {
                    // The targets and the text came from different owners: read nothing now.
                    st.owner = next;
                    st.copies += 1;
                    return Ok(ClipboardRead::Empty);
                }
                if text.len() > self.max_bytes {
                    return Ok(ClipboardRead::Oversized { bytes: text.len() });
                }
                Ok(ClipboardRead::Text {
                    text,
                    concealed: Some(concealed),
                })
            }
        }
    }

    fn copy_id(&self) -> Option<u64> {
        self.state.lock().unwrap().read_copy
    }
}

/// A `Notifier` that records the notices it shows (the last `keep` of them) and counts them
/// all; it can be told to fail or to hang.
pub struct FakeNotifier {
    shown: Mutex<VecDeque<Notice>>,
    keep: usize,
    /// The number of notices shown; a watch, so a test can await the next one.
    total: tokio::sync::watch::Sender<u64>,
    attempts: Mutex<u64>,
    failure: Mutex<Option<NotifyError>>,
    hang: Mutex<bool>,
}

impl Default for FakeNotifier {
    fn default() -> Self {
        Self::keeping(usize::MAX)
    }
}

impl FakeNotifier {
    /// Keeps every notice.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the last `keep` notices (a soak shows thousands) and counts all.
    pub fn keeping(keep: usize) -> Self {
        Self {
            shown: Mutex::new(VecDeque::new()),
            keep: keep.max(1),
            total: tokio::sync::watch::Sender::new(0),
            attempts: Mutex::new(0),
            failure: Mutex::new(None),
            hang: Mutex::new(false),
        }
    }

    /// The notices shown (the last `keep`), oldest first.
    pub fn notices(&self) -> Vec<Notice> {
        self.shown.lock().unwrap().iter().cloned().collect()
    }

    /// The summaries of the notices shown, oldest first.
    pub fn summaries(&self) -> Vec<String> {
        self.notices().into_iter().map(|n| n.summary).collect()
    }

    /// The last notice shown.
    pub fn last(&self) -> Option<Notice> {
        self.shown.lock().unwrap().back().cloned()
    }

    /// How many notices were shown in all.
    pub fn total(&self) -> u64 {
        *self.total.borrow()
    }

    /// How many times `show` was called, shown or not.
    pub fn attempts(&self) -> u64 {
        *self.attempts.lock().unwrap()
    }

    /// From now on `show` fails with `error` (None: shows again).
    pub fn fail_with(&self, error: Option<NotifyError>) {
        *self.failure.lock().unwrap() = error;
    }

    /// From now on `show` never completes (true) or works again (false).
    pub fn hang(&self, hang: bool) {
        *self.hang.lock().unwrap() = hang;
    }

    /// Waits (tokio time) until at least `n` notices were shown in all; false on timeout.
    pub async fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let mut rx = self.total.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|t| *t >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Notifier for FakeNotifier {
    fn show<'a>(&'a self, notice: &'a Notice) -> BoxFuture<'a, Result<(), NotifyError>> {
        *self.attempts.lock().unwrap() += 1;
        if *self.hang.lock().unwrap() {
            return Box::pin(std::future::pending());
        }
        if let Some(e) = self.failure.lock().unwrap().clone() {
            return Box::pin(std::future::ready(Err(e)));
        }
        {
            let mut shown = self.shown.lock().unwrap();
            if shown.len() == self.keep {
                shown.pop_front();
            }
            shown.push_back(notice.clone());
        }
        self.total.send_modify(|t| *t += 1);
        Box::pin(std::future::ready(Ok(())))
    }
}
