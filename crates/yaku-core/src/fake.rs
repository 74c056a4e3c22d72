// Test support only (built for tests and the `test-support` feature): a poisoned lock here
// means a test already failed, so panicking is the right answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

//! An in-memory `Provider` for the core's unit tests: scripted outcomes and latencies, and a
//! log of when each call arrived.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::clock::BoxFuture;
use super::prompt::Prompt;
use super::provider::{FailureClass, Provider, ProviderFailure};

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
