//! Batches of script lines in one request (`yaku prefetch`): the reply's shape, checked
//! strictly, and the plan that splits a batch whose reply does not match. A translation is
//! never paired with a line by guesswork: a reply with the wrong count or shape is not used at
//! all, and its batch is split in halves and asked again, down to single lines.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;

use serde_json::Value;

use super::checks::{ReplyChecks, ReplyRejected};
use super::reply::strip_think;

/// Why a batch reply was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// No JSON object in the reply (plain text, cut off).
    NotJson,
    /// A JSON object without a `translations` array.
    NoTranslations,
    /// The array holds another number of entries than the batch has lines.
    Count { expected: usize, got: usize },
    /// Entry `i` (0-based) is not `{"options": [strings]}`.
    Entry(usize),
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::NotJson => f.write_str("the reply is not a JSON object"),
            Mismatch::NoTranslations => f.write_str("the reply has no \"translations\" array"),
            Mismatch::Count { expected, got } => {
                write!(f, "{got} translations for {expected} lines")
            }
            Mismatch::Entry(i) => write!(f, "translation {} is not {{\"options\": [...]}}", i + 1),
        }
    }
}

/// One batch reply: per line, its checked options or why none passed; or the whole reply
/// unusable.
pub type BatchReply = Result<Vec<Result<Vec<String>, ReplyRejected>>, Mismatch>;

/// Reads a batch reply for `expected` lines. Each entry goes through the same reply checks
/// as a single line's reply (`checks`, at most `max` options), so one bad entry costs only its
/// own line.
pub fn parse_batch(text: &str, expected: usize, checks: &ReplyChecks, max: usize) -> BatchReply {
    let text = strip_think(text);
    // Fences and prose around the object are tolerated; the object itself is not repaired.
    let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) else {
        return Err(Mismatch::NotJson);
    };
    if end < start {
        return Err(Mismatch::NotJson);
    }
    let value: Value = serde_json::from_str(&text[start..=end]).map_err(|_| Mismatch::NotJson)?;
    let entries = value
        .get("translations")
        .and_then(Value::as_array)
        .ok_or(Mismatch::NoTranslations)?;
    if entries.len() != expected {
        return Err(Mismatch::Count {
            expected,
            got: entries.len(),
        });
    }
    for (i, entry) in entries.iter().enumerate() {
        let ok = entry
            .get("options")
            .and_then(Value::as_array)
            .is_some_and(|o| !o.is_empty() && o.iter().all(Value::is_string));
        if !ok {
            return Err(Mismatch::Entry(i));
        }
    }
    Ok(entries
        .iter()
        .map(|entry| {
            let single = serde_json::json!({ "options": entry["options"] }).to_string();
            checks.options(&single, max).map(|c| c.options)
        })
        .collect())
}

/// The order in which a script's lines are asked: batches of `size`, and the halves of any
/// batch whose reply did not match, asked next (before later lines, so progress stays in
/// script order). Pure: the caller says what happened, the plan says what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    queue: VecDeque<Range<usize>>,
}

impl Plan {
    /// Lines `0..len` in batches of `size` (at least 1).
    pub fn new(len: usize, size: usize) -> Self {
        let size = size.max(1);
        let queue = (0..len)
            .step_by(size)
            .map(|lo| lo..(lo + size).min(len))
            .collect();
        Self { queue }
    }

    /// The next batch to send.
    pub fn next_batch(&mut self) -> Option<Range<usize>> {
        self.queue.pop_front()
    }

    /// Puts `batch` back to be sent again as it is (a rate limit, a transient failure).
    pub fn again(&mut self, batch: Range<usize>) {
        self.queue.push_front(batch);
    }

    /// The reply for `batch` did not match: its halves are sent next. A single line cannot be
    /// split; false says it has failed.
    pub fn split(&mut self, batch: Range<usize>) -> bool {
        if batch.len() < 2 {
            return false;
        }
        let mid = batch.start + batch.len() / 2;
        self.queue.push_front(mid..batch.end);
        self.queue.push_front(batch.start..mid);
        true
    }

    /// Line `i` failed its checks inside a batch that matched: it is asked on its own next.
    pub fn alone(&mut self, i: usize) {
        self.queue.push_front(i..i + 1);
    }

    /// Batches still planned (halves included).
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::TranslationRequest;

    fn checks() -> ReplyChecks {
        ReplyChecks::new(
            &TranslationRequest {
                source_language: "Japanese".into(),
                target_language: "English".into(),
                ..Default::default()
            },
            true,
        )
    }

    fn parse(text: &str, n: usize) -> BatchReply {
        parse_batch(text, n, &checks(), 3)
    }

    #[test]
    fn batch_replies_that_do_not_match_are_never_paired_table() {
        let two = r#"{"translations":[{"options":["A"]},{"options":["B"]}]}"#;
        let cases: &[(&str, usize, Option<Mismatch>)] = &[
            (two, 2, None),
            (&format!("```json\n{two}\n```"), 2, None),
            (
                two,
                3,
                Some(Mismatch::Count {
                    expected: 3,
                    got: 2,
                }),
            ),
            (
                two,
                1,
                Some(Mismatch::Count {
                    expected: 1,
                    got: 2,
                }),
            ),
            ("Here you go: A, then B", 2, Some(Mismatch::NotJson)),
            (
                r#"{"translations":[{"options":["A"]},{"optio"#,
                2,
                Some(Mismatch::NotJson),
            ),
            (
                r#"{"options":["A","B"]}"#,
                2,
                Some(Mismatch::NoTranslations),
            ),
            (
                r#"{"translations":[{"options":["A"]},"B"]}"#,
                2,
                Some(Mismatch::Entry(1)),
            ),
            (
                r#"{"translations":[{"options":[]},{"options":["B"]}]}"#,
                2,
                Some(Mismatch::Entry(0)),
            ),
            (
                r#"{"translations":[{"options":[1]},{"options":["B"]}]}"#,
                2,
                Some(Mismatch::Entry(0)),
            ),
        ];
        for (text, n, want) in cases {
            let got = parse(text, *n);
            match want {
                None => assert!(got.is_ok(), "{text}: {got:?}"),
                Some(m) => assert_eq!(got.as_ref().err(), Some(m), "{text}"),
            }
        }
    }

    #[test]
    fn each_batch_entry_passes_the_reply_checks_of_its_own_line() {
        let text = r#"{"translations":[{"options":["Good morning."]},{"options":["おはようございます"]}]}"#;
        let got = parse(text, 2).unwrap();
        assert_eq!(got[0].as_ref().unwrap(), &["Good morning."]);
        assert!(got[1].is_err(), "untranslated entry refused: {:?}", got[1]);
    }

    #[test]
    fn plan_splits_a_mismatched_batch_in_halves_down_to_single_lines_table() {
        // (batch sizes sent, each step: Some(true) = split it, Some(false) = ok, None = end)
        let mut plan = Plan::new(25, 10);
        let mut sent = Vec::new();
        let steps = [true, false, true, false, false, false, false];
        let mut i = 0;
        while let Some(b) = plan.next_batch() {
            sent.push(b.clone());
            if steps.get(i).copied().unwrap_or(false) {
                assert!(plan.split(b));
            }
            i += 1;
        }
        assert_eq!(
            sent,
            [0..10, 0..5, 5..10, 5..7, 7..10, 10..20, 20..25],
            "halves go first, script order kept"
        );
        let mut single = Plan::new(1, 10);
        let b = single.next_batch().unwrap();
        assert!(!single.split(b), "a single line cannot be split");
        assert_eq!(single.next_batch(), None);
        let mut alone = Plan::new(4, 2);
        let b = alone.next_batch().unwrap();
        assert_eq!(b, 0..2);
        alone.alone(1);
        assert_eq!(alone.next_batch(), Some(1..2));
        assert_eq!(alone.next_batch(), Some(2..4));
        assert_eq!(Plan::new(0, 10).next_batch(), None);
        assert_eq!(
            Plan::new(3, 0).remaining(),
            3,
            "a batch of 0 is a batch of 1"
        );
    }
}
