//! What yaku remembers between lines: the context window sent with each request, the
//! glossary entries that apply to a line, and the cache key of a line.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::prompt::PROMPT_VERSION;

/// One glossary entry: how a term must be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlossaryEntry {
    pub source: String,
    pub target: String,
    /// Optional guidance ("a girl's name", "formal").
    pub note: String,
}

/// The glossary, from `[glossary]` and `glossary_file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Glossary {
    entries: Vec<GlossaryEntry>,
}

impl Glossary {
    pub fn new(entries: Vec<GlossaryEntry>) -> Self {
        Self { entries }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The rendering of a term that is exactly an entry's (a speaker's name).
    pub fn rendering(&self, term: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.source == term)
            .map(|e| e.target.as_str())
    }

    /// Entries whose term appears in the line or in any of the context lines, in glossary order.
    pub fn applicable(&self, line: &str, context: &[String]) -> Vec<GlossaryEntry> {
        self.entries
            .iter()
            .filter(|e| line.contains(&e.source) || context.iter().any(|c| c.contains(&e.source)))
            .cloned()
            .collect()
    }
}

/// Parses a glossary TSV: `source<TAB>target[<TAB>note]` per line; blank lines and lines
/// starting with `#` are skipped. Errors name the line.
pub fn parse_glossary_tsv(text: &str) -> Result<Vec<GlossaryEntry>, (usize, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut cols = line.split('\t');
        let source = cols.next().unwrap_or("").trim();
        let target = cols.next().unwrap_or("").trim();
        let note = cols.next().unwrap_or("").trim();
        if source.is_empty() || target.is_empty() {
            return Err((i + 1, "expected `source<TAB>target[<TAB>note]`".into()));
        }
        out.push(GlossaryEntry {
            source: source.into(),
            target: target.into(),
            note: note.into(),
        });
    }
    Ok(out)
}

/// The previous accepted source lines (never their translations: mistakes would chain),
/// forgotten after a quiet spell.
#[derive(Debug, Clone)]
pub struct ContextWindow {
    lines: VecDeque<String>,
    max: usize,
    reset_after: Duration,
    last: Option<Instant>,
}

impl ContextWindow {
    pub fn new(max: usize, reset_after: Duration) -> Self {
        Self {
            lines: VecDeque::with_capacity(max),
            max,
            reset_after,
            last: None,
        }
    }

    /// The context for a line accepted at `now`, oldest first; then remembers `line`.
    pub fn next(&mut self, line: &str, now: Instant) -> Vec<String> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) >= self.reset_after)
        {
            self.lines.clear();
        }
        let context: Vec<String> = self.lines.iter().cloned().collect();
        self.last = Some(now);
        if self.max > 0 {
            if self.lines.len() == self.max {
                self.lines.pop_front();
            }
            self.lines.push_back(line.to_string());
        }
        context
    }
}

/// The cache key of a line: the line itself, the languages, the number of options, and a
/// fingerprint of everything else that changes the answer (the instructions, the glossary
/// entries that apply to the line itself, the prompt version). Context lines are not part of
/// it: a repeated line is the same line.
pub fn cache_key(
    line: &str,
    source_language: &str,
    target_language: &str,
    options: u8,
    instructions: &str,
    glossary: &[GlossaryEntry],
) -> String {
    let mut h = Fnv::new();
    h.write(instructions.as_bytes());
    for e in glossary {
        h.write(&[0]);
        h.write(e.source.as_bytes());
        h.write(&[1]);
        h.write(e.target.as_bytes());
        h.write(&[2]);
        h.write(e.note.as_bytes());
    }
    format!(
        "v{PROMPT_VERSION}|{source_language}|{target_language}|{options}|{:016x}|{line}",
        h.0
    )
}

/// FNV-1a, 64 bits: a stable fingerprint (std's hasher may change between releases, and the
/// cache outlives them).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str, t: &str) -> GlossaryEntry {
        GlossaryEntry {
            source: s.into(),
            target: t.into(),
            note: String::new(),
        }
    }

    #[test]
    fn glossary_entries_apply_by_line_or_context_and_no_others() {
        let g = Glossary::new(vec![
            e("先輩", "senpai"),
            e("春香", "Haruka"),
            e("魔法", "magic"),
        ]);
        let got = g.applicable("先輩、おはよう", &["春香が来た".into()]);
        assert_eq!(got, vec![e("先輩", "senpai"), e("春香", "Haruka")]);
        assert!(g.applicable("こんにちは", &[]).is_empty());
    }

    #[test]
    fn tsv_glossary_parses_notes_comments_and_names_bad_lines() {
        let text = "# names\n春香\tHaruka\ta girl's name\n\n先輩\tsenpai\n";
        assert_eq!(
            parse_glossary_tsv(text).unwrap(),
            vec![
                GlossaryEntry {
                    source: "春香".into(),
                    target: "Haruka".into(),
                    note: "a girl's name".into()
                },
                e("先輩", "senpai")
            ]
        );
        assert_eq!(
            parse_glossary_tsv("a\tb\nonly-one-column\n").unwrap_err().0,
            2
        );
    }

    #[test]
    fn context_window_keeps_the_last_n_source_lines_and_resets_after_quiet() {
        let t0 = Instant::now();
        let mut w = ContextWindow::new(2, Duration::from_secs(600));
        assert!(w.next("一", t0).is_empty());
        assert_eq!(w.next("二", t0), vec!["一"]);
        assert_eq!(w.next("三", t0), vec!["一", "二"]);
        assert_eq!(
            w.next("四", t0 + Duration::from_secs(599)),
            vec!["二", "三"]
        );
        assert!(
            w.next("五", t0 + Duration::from_secs(599 + 600)).is_empty(),
            "quiet for 600 s: forgotten"
        );
        assert!(
            ContextWindow::new(0, Duration::from_secs(1))
                .next("x", t0)
                .is_empty()
        );
    }

    #[test]
    fn cache_key_changes_with_what_changes_the_answer_only() {
        let base = cache_key("先輩", "Japanese", "English", 3, "", &[]);
        assert_eq!(base, cache_key("先輩", "Japanese", "English", 3, "", &[]));
        for other in [
            cache_key("先輩!", "Japanese", "English", 3, "", &[]),
            cache_key("先輩", "Japanese", "French", 3, "", &[]),
            cache_key("先輩", "Japanese", "English", 2, "", &[]),
            cache_key("先輩", "Japanese", "English", 3, "formal", &[]),
            cache_key("先輩", "Japanese", "English", 3, "", &[e("先輩", "senpai")]),
        ] {
            assert_ne!(base, other);
        }
    }
}
