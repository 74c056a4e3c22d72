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
