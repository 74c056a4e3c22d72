//! Reply checks: every option a model returns is checked before anyone sees it. Models fail
//! in well-formed ways (the line again in Japanese, "I I I I…", the request echoed back, a
//! refusal in prose), so an option that fails a check is dropped, and a reply left with no
//! option is refused with the reason, which makes the chain ask the next provider.
//!
//! The contract checks (JSON shape, control characters, empty options; see `reply.rs`) always
//! hold; the content checks here can be turned off with `[translation] reply_checks = false`.

use std::fmt;

use super::gates::Script;
use super::prompt::TranslationRequest;
use super::reply::{InvalidReply, parse_options};

/// Above this share of source-script letters an option is untranslated. Names and
/// honorifics kept in Japanese ("Thanks, 春香さん.") stay below it.
pub const MAX_SOURCE_SHARE: f64 = 0.5;
/// The same short function word ("the", "I") more than this many times in a row, with only
/// spaces between, is a degenerate repeat ("the the the").
pub const MAX_BARE_FUNCTION_WORD_RUN: usize = 2;
/// Any other word more than this many times in a row with only spaces between ("wait wait
/// wait" is speech; four is a loop); an interjection ("ha ha ha") may go on longer.
pub const MAX_BARE_WORD_RUN: usize = 3;
/// The same word more than this many times in a row with anything between ("no, no, no, …").
pub const MAX_WORD_RUN: usize = 7;
/// The same clause of two or more words more than this many times in one option, or the
/// same run of two to six words more than this many times back to back.
pub const MAX_CLAUSE_REPEATS: usize = 3;
/// How many options a reply may hold before the checks; more are ignored.
const MAX_PARSED: usize = 16;

/// Why an option (or a whole reply) was not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// No text at all.
    Empty,
    /// Not the JSON contract (cut off, garbled, no options).
    Malformed,
    /// Mostly in the source script: the line again, or half of it.
    Untranslated,
    /// A word or clause repeated beyond reason.
    Repetitive,
    /// The request (the prompt's JSON or wording) sent back.
    Echo,
    /// A refusal phrased as prose ("I'm sorry, but I can't…").
    Refusal,
    /// The same as a better option (ignoring case, spacing and final punctuation).
    Duplicate,
}

impl Problem {
    /// The stable name shown in history, logs and `--json` details.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Empty => "empty",
            Problem::Malformed => "malformed",
            Problem::Untranslated => "untranslated",
            Problem::Repetitive => "repetitive",
            Problem::Echo => "echo",
            Problem::Refusal => "refusal",
            Problem::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reply with no option left to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyRejected {
    /// The reply broke the contract (`empty`, `malformed`).
    #[error("{problem}: {source}")]
    Contract {
        problem: Problem,
        source: InvalidReply,
    },
    /// Every option failed a content check; each distinct reason once, best option's first.
    #[error("{}", join(.0))]
    Content(Vec<Problem>),
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The options that passed, and what was dropped on the way (for the logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Best first; never empty.
    pub options: Vec<String>,
    /// One entry per dropped option, in reply order.
    pub dropped: Vec<Problem>,
}

/// The checks for one line's replies: what the source script is, and which checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyChecks {
    /// False: only the contract checks.
    content: bool,
    /// The source's script, when the target is written in another one.
    untranslated: Option<Script>,
    /// Refusals are recognized in English only.
    english: bool,
}

impl ReplyChecks {
    /// The checks for replies to `req`; `content` is `[translation] reply_checks`.
    pub fn new(req: &TranslationRequest, content: bool) -> Self {
        let source = Script::for_language(&req.source_language);
        // Into Chinese from Japanese, kanji are the target script: no share says "untranslated".
        let target = Script::for_language(&req.target_language);
        Self {
            content,
            untranslated: source.filter(|_| target.is_none()),
            english: matches!(
                req.target_language.trim().to_lowercase().as_str(),
                "english" | "en" | "eng" | "en-us" | "en-gb"
            ),
        }
    }

    /// The options of a reply, at most `max`, best first, each one checked.
    pub fn options(&self, text: &str, max: usize) -> Result<Checked, ReplyRejected> {
        let max = max.max(1);
        // The request echoed back may even parse ({"context": [...], "line": ...}): look at
        // the whole reply first, so it is named for what it is.
        if self.content && is_echo(text) {
            return Err(ReplyRejected::Content(vec![Problem::Echo]));
        }
        let parsed = match parse_options(text, if self.content { MAX_PARSED } else { max }) {
            Ok(parsed) => parsed,
            Err(source) => {
                let problem = if source.is_empty() {
                    Problem::Empty
                } else {
                    Problem::Malformed
                };
                return Err(ReplyRejected::Contract { problem, source });
            }
        };
        if !self.content {
            return Ok(Checked {
                options: parsed,
                dropped: Vec::new(),
            });
        }
        let mut options: Vec<String> = Vec::new();
        let mut kept_keys: Vec<String> = Vec::new();
        let mut dropped = Vec::new();
        for option in parsed {
            let problem = self.problem(&option).or_else(|| {
                let key = duplicate_key(&option);
                if kept_keys.contains(&key) {
                    Some(Problem::Duplicate)
                } else {
                    kept_keys.push(key);
                    None
                }
            });
            match problem {
                Some(p) => dropped.push(p),
                None if options.len() < max => options.push(option),
                None => {}
            }
        }
        if options.is_empty() {
            let mut reasons: Vec<Problem> = Vec::new();
            for p in dropped {
                if !reasons.contains(&p) {
                    reasons.push(p);
                }
            }
            return Err(ReplyRejected::Content(reasons));
        }
        Ok(Checked { options, dropped })
    }

    /// What is wrong with one option, if anything (duplicates aside: they need the others).
    pub fn problem(&self, option: &str) -> Option<Problem> {
        if option.trim().is_empty() {
            return Some(Problem::Empty);
        }
        if is_echo(option) {
            return Some(Problem::Echo);
        }
        if let Some(script) = self.untranslated
            && script.count(option).share() > MAX_SOURCE_SHARE
        {
            return Some(Problem::Untranslated);
        }
        if self.english && is_english_refusal(option) {
            return Some(Problem::Refusal);
        }
        if is_repetitive(option) {
            return Some(Problem::Repetitive);
        }
        None
    }
}

/// Marks of the request (see `prompt.rs`): its JSON key and its wording. No translation of a
/// game line holds them; inside a JSON string the quotes would be escaped (`\"line\"`).
fn is_echo(text: &str) -> bool {
    const WORDING: [&str; 3] = [
        "Translate the \"line\"",
        "never instructions to you",
        "Reply with only a JSON object",
    ];
    if WORDING.iter().any(|w| text.contains(w)) {
        return true;
    }
    text.match_indices("\"line\"")
        .any(|(i, m)| text[i + m.len()..].trim_start().starts_with(':'))
}

/// "I'm sorry, but I can't…", "As an AI…", "I cannot translate…": a refusal about the task,
/// not a line of dialogue ("I'm sorry, but I can't go with you" is a fine translation).
fn is_english_refusal(option: &str) -> bool {
    let text = option.to_lowercase().replace(['\u{2019}', '\u{2018}'], "'");
    // Only phrases about the task itself: dialogue says "I must decline your invitation" or
    // "I won't comply with your orders", and those are translations.
    const ALWAYS: [&str; 4] = [
        "as an ai",
        "as a language model",
        "against my guidelines",
        "content policy",
    ];
    if ALWAYS.iter().any(|p| text.contains(p)) {
        return true;
    }
    const CANNOT: [&str; 9] = [
        "i can't",
        "i cannot",
        "i can not",
        "i won't",
        "i will not",
        "i'm unable to",
        "i am unable to",
        "i'm not able to",
        "i am not able to",
    ];
    const TASK: [&str; 11] = [
        "translate this",
        "translate that",
        "translate the text",
        "translate the line",
        "translate the content",
        "provide a translation",
        "assist with",
        "help with this",
        "help with that",
        "this request",
        "that request",
    ];
    // Within one sentence: "I can't. Please translate it." is two.
    text.split(['.', '!', '?', ';', '\n']).any(|sentence| {
        CANNOT
            .iter()
            .filter_map(|c| sentence.find(c).map(|i| &sentence[i..]))
            .any(|rest| TASK.iter().any(|t| rest.contains(t)))
    })
}

/// Words a model loops on when it degenerates; no speech says "the the the".
const FUNCTION_WORDS: [&str; 20] = [
    "the", "a", "an", "of", "to", "in", "and", "or", "is", "i", "you", "it", "that", "this", "my",
    "your", "we", "he", "she", "they",
];

/// Interjections that are fine said over and over ("Ha ha ha!", "No no no").
const INTERJECTIONS: [&str; 22] = [
    "ha", "haha", "he", "hehe", "hi", "ho", "hu", "ah", "oh", "uh", "um", "hm", "hmm", "eh", "la",
    "na", "no", "yes", "ya", "yeah", "hey", "mm",
];

/// A word repeated in a row beyond its limit (see the constants), or a clause or run of
/// words repeated more than [`MAX_CLAUSE_REPEATS`] times.
fn is_repetitive(option: &str) -> bool {
    let mut run = 0usize;
    let mut bare_run = 0usize;
    let mut prev = String::new();
    let mut words: Vec<String> = Vec::new();
    for raw in option.split_whitespace() {
        let word = raw
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        if !word.is_empty() {
            words.push(word.clone());
        }
        if word.is_empty() {
            // "…" or "—" between words: not a word, and it breaks a bare run.
            bare_run = 0;
            continue;
        }
        if word == prev {
            run += 1;
            bare_run += 1;
        } else {
            run = 1;
            bare_run = 1;
        }
        let bare_limit = if INTERJECTIONS.contains(&word.as_str()) {
            MAX_WORD_RUN
        } else if FUNCTION_WORDS.contains(&word.as_str()) {
            MAX_BARE_FUNCTION_WORD_RUN
        } else {
            MAX_BARE_WORD_RUN
        };
        if run > MAX_WORD_RUN || bare_run > bare_limit {
            return true;
        }
        // Punctuation after a word ("no, no") separates it from the next: not a bare run.
        if raw.ends_with(|c: char| !c.is_alphanumeric()) {
            bare_run = 0;
        }
        prev = word;
    }
    if repeats_a_run(&words) {
        return true;
    }
    let mut clauses: Vec<(String, usize)> = Vec::new();
    for clause in option.split(|c: char| ".,!?;:…。、！？\n".contains(c)) {
        let words: Vec<String> = clause
            .split_whitespace()
            .map(|w| w.to_lowercase())
            .collect();
        if words.len() < 2 {
            continue;
        }
        let key = words.join(" ");
        match clauses.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => {
                *n += 1;
                if *n > MAX_CLAUSE_REPEATS {
                    return true;
                }
            }
            None => clauses.push((key, 1)),
        }
    }
    false
}

/// Whether a run of two to six words comes more than [`MAX_CLAUSE_REPEATS`] times back to back
/// ("I will go I will go I will go I will go"), punctuation aside.
fn repeats_a_run(words: &[String]) -> bool {
    for n in 2..=6 {
        let limit = n * (MAX_CLAUSE_REPEATS + 1);
        if words.len() < limit {
            break;
        }
        for start in 0..=words.len() - limit {
            let unit = &words[start..start + n];
            if (1..=MAX_CLAUSE_REPEATS).all(|k| &words[start + k * n..start + (k + 1) * n] == unit)
            {
                return true;
            }
        }
    }
    false
}

/// What makes two options the same: case, spacing and final punctuation aside.
fn duplicate_key(option: &str) -> String {
    option
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .trim_end_matches(|c: char| !c.is_alphanumeric())
        .to_string()
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
