//! The latest-wins queue between the clipboard and the chain, as a pure state machine: one line
//! in flight, at most one waiting. A newer line replaces the waiting one, which is reported as
//! superseded. Whatever the clipboard does, the queue holds at most two lines.

use std::time::Instant;

use super::line::Entry;
use super::memory::GlossaryEntry;

/// A clipboard line that passed the gates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Increases with every accepted line; names the line in logs and history.
    pub id: u64,
    /// The cleaned text.
    pub text: String,
    pub accepted_at: Instant,
    /// Its history row and cache key.
    pub entry: Entry,
    /// The previous lines sent with it as context.
    pub context: Vec<String>,
    /// The glossary entries that apply to it or its context.
    pub glossary: Vec<GlossaryEntry>,
    /// The game profile it belongs to.
    pub game: Option<String>,
}

impl Line {
    /// A line with no memory attached.
    pub fn new(id: u64, text: String, accepted_at: Instant) -> Self {
        Self {
            id,
            text,
            accepted_at,
            entry: Entry::default(),
            context: Vec::new(),
            glossary: Vec::new(),
            game: None,
        }
    }
}

/// What the caller must do after a queue operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEffect {
    /// Start translating this line now.
    Start(Line),
    /// This waiting line will never be translated: a newer one replaced it.
    Superseded(Line),
}

/// One worker, latest wins.
#[derive(Debug, Default)]
pub struct LatestWins {
    busy: bool,
    waiting: Option<Line>,
}

impl LatestWins {
    pub fn new() -> Self {
        Self::default()
    }

    /// A line was accepted.
    pub fn push(&mut self, line: Line) -> Vec<QueueEffect> {
        if !self.busy {
            self.busy = true;
            return vec![QueueEffect::Start(line)];
        }
        match self.waiting.replace(line) {
            Some(old) => vec![QueueEffect::Superseded(old)],
            None => Vec::new(),
        }
    }

    /// The line in flight finished (or was abandoned): start the waiting one, if any.
    pub fn finished(&mut self) -> Vec<QueueEffect> {
        match self.waiting.take() {
            Some(next) => vec![QueueEffect::Start(next)],
            None => {
                self.busy = false;
                Vec::new()
            }
        }
    }

    /// Drops everything waiting (shutdown, pause), returning it as superseded.
    pub fn clear(&mut self) -> Vec<QueueEffect> {
        self.waiting
            .take()
            .map(QueueEffect::Superseded)
            .into_iter()
            .collect()
    }

    /// Lines in the queue, the one in flight included.
    pub fn len(&self) -> usize {
        usize::from(self.busy) + usize::from(self.waiting.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Shows a result only if no newer line's result was shown already.
#[derive(Debug, Default)]
pub struct DisplayOrder {
    last_shown: Option<u64>,
}

impl DisplayOrder {
    /// True (and remembered) when line `id` is newer than everything shown so far.
    pub fn claim(&mut self, id: u64) -> bool {
        if self.last_shown.is_some_and(|last| id <= last) {
            return false;
        }
        self.last_shown = Some(id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: u64) -> Line {
        Line::new(id, format!("line {id}"), Instant::now())
    }

    enum Op {
        Push(u64),
        Finish,
        Clear,
    }

    #[derive(Debug, PartialEq)]
    enum E {
        Start(u64),
        Superseded(u64),
    }

    #[test]
    fn latest_wins_table() {
        use Op::*;
        let cases: &[(&[Op], &[E], usize)] = &[
            (&[Push(1)], &[E::Start(1)], 1),
            (&[Push(1), Push(2)], &[E::Start(1)], 2),
            (
                &[Push(1), Push(2), Push(3)],
                &[E::Start(1), E::Superseded(2)],
                2,
            ),
            (
                &[Push(1), Push(2), Push(3), Finish],
                &[E::Start(1), E::Superseded(2), E::Start(3)],
                1,
            ),
            (&[Push(1), Finish], &[E::Start(1)], 0),
            (&[Push(1), Finish, Push(2)], &[E::Start(1), E::Start(2)], 1),
            (&[Finish], &[], 0),
            (
                &[Push(1), Push(2), Clear, Finish],
                &[E::Start(1), E::Superseded(2)],
                0,
            ),
        ];
        for (i, (ops, want, len)) in cases.iter().enumerate() {
            let mut q = LatestWins::new();
            let mut got = Vec::new();
            for op in ops.iter() {
                let effects = match op {
                    Push(id) => q.push(line(*id)),
                    Finish => q.finished(),
                    Clear => q.clear(),
                };
                got.extend(effects.into_iter().map(|e| match e {
                    QueueEffect::Start(l) => E::Start(l.id),
                    QueueEffect::Superseded(l) => E::Superseded(l.id),
                }));
            }
            assert_eq!(&got, want, "case {i}");
            assert_eq!(q.len(), *len, "case {i}");
        }
    }

    #[test]
    fn a_burst_never_grows_the_queue_past_two_and_the_last_line_runs_next() {
        let mut q = LatestWins::new();
        let mut superseded = 0;
        for id in 0..10_000 {
            superseded += q
                .push(line(id))
                .iter()
                .filter(|e| matches!(e, QueueEffect::Superseded(_)))
                .count();
            assert!(q.len() <= 2);
        }
        assert_eq!(superseded, 9_998);
        let next = q.finished();
        assert!(matches!(next.as_slice(), [QueueEffect::Start(l)] if l.id == 9_999));
        assert!(q.finished().is_empty());
        assert!(q.is_empty());
    }

    #[test]
    fn display_order_refuses_results_older_than_what_was_shown() {
        let mut d = DisplayOrder::default();
        assert!(d.claim(3));
        assert!(!d.claim(2));
        assert!(!d.claim(3));
        assert!(d.claim(7));
    }
}
