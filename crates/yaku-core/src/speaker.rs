//! Who says a line. Game text names its speaker in a few fixed shapes (`【春香】「ねえ」`,
//! `［春香］「ねえ」`, `春香「ねえ」`, `春香：ねえ`); split off, the name travels in the prompt as a
//! field of its own, so the model neither translates it as part of the line nor renders it
//! differently from line to line.
//!
//! The split is conservative: a line that only looks like one of those shapes (a quoted title
//! mid-sentence, `「…」` alone, a phrase or a clause before a bracket or a colon) stays whole,
//! because a wrong split loses words from the line while a missed one only costs the name's
//! consistency. A name is at most [`MAX_NAME_CHARS`] letters, digits and the marks names use
//! (`・`, `＝`, `ー`, `〜`; `？？？` for an unknown speaker), never only digits.
//!
//! **Where the quotes go:** the line keeps its brackets (`【春香】「ねえ」` → `春香` and
//! `「ねえ」`). The quote is part of what is said: it tells the model the line is dialogue
//! (`（…）` that it is a thought), and the reply's options keep matching the line as shown.

use super::memory::{Glossary, GlossaryEntry};

/// The longest name split off; a longer run before a bracket is a phrase, not a name.
pub const MAX_NAME_CHARS: usize = 10;

/// A line split into its speaker (when it names one) and what is said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spoken<'a> {
    /// The name as written, without its brackets or colon.
    pub speaker: Option<&'a str>,
    /// The rest of the line, quotes included; the whole line when there is no speaker.
    pub line: &'a str,
}

/// Splits `text` into speaker and line; a line with no speaker is returned whole.
pub fn split(text: &str) -> Spoken<'_> {
    let whole = Spoken {
        speaker: None,
        line: text,
    };
    let trimmed = text.trim();
    bracketed(trimmed)
        .or_else(|| before_quote(trimmed))
        .or_else(|| before_colon(trimmed))
        .unwrap_or(whole)
}

/// `【名前】「…」`, `［名前］「…」`: the brackets delimit the name, but what follows must be
/// a quote or a thought (`【速報】大事件` is a headline, not a speaker).
fn bracketed(text: &str) -> Option<Spoken<'_>> {
    for (open, close) in [('【', '】'), ('［', '］')] {
        let Some(rest) = text.strip_prefix(open) else {
            continue;
        };
        let end = rest.find(close)?;
        let name = rest[..end].trim();
        let line = rest[end + close.len_utf8()..].trim_start();
        if is_name(name, true) && line.starts_with(['「', '『', '（', '(']) {
            return Some(Spoken {
                speaker: Some(name),
                line,
            });
        }
        return None;
    }
    None
}

/// `名前「…」`, `名前『…』`: the quote must run to the end of the line (closed there, or cut
/// off unclosed), so `昨日「君の名は」を見た` (a title mid-sentence) stays whole.
fn before_quote(text: &str) -> Option<Spoken<'_>> {
    let start = text.find(['「', '『'])?;
    if start == 0 {
        return None;
    }
    let name = &text[..start];
    let line = &text[start..];
    let close = if line.starts_with('「') {
        '」'
    } else {
        '』'
    };
    let quoted = &line[close.len_utf8()..];
    let closes_at_end = match quoted.find(close) {
        None => true,
        Some(i) => i + close.len_utf8() == quoted.len(),
    };
    (closes_at_end && is_name(name, false) && !ends_with_particle(name)).then_some(Spoken {
        speaker: Some(name),
        line,
    })
}

/// `名前：…`, `名前:…`: something must follow, and not `//` (`http://…`).
fn before_colon(text: &str) -> Option<Spoken<'_>> {
    let at = text.find(['：', ':'])?;
    let name = &text[..at];
    let sep = text[at..].chars().next()?;
    let line = text[at + sep.len_utf8()..].trim_start();
    (!line.is_empty() && !line.starts_with("//") && is_name(name, false)).then_some(Spoken {
        speaker: Some(name),
        line,
    })
}

/// A short name: letters, digits and the marks names use; spaces only inside brackets.
fn is_name(name: &str, spaces: bool) -> bool {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    // `？？？「誰？」`: the usual stand-in for a speaker not yet introduced.
    if name.chars().all(|c| matches!(c, '？' | '?')) {
        return true;
    }
    name.chars().any(char::is_alphabetic)
        && name.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(
                    c,
                    '・' | '＝' | '=' | 'ー' | '〜' | '～' | '·' | '.' | '＆' | '&'
                )
                || (spaces && matches!(c, ' ' | '\u{3000}'))
        })
}

/// `彼は「違う」`, `私が「はい」`: a word ending in a particle before a quote is a clause.
fn ends_with_particle(name: &str) -> bool {
    let has_hiragana = name.chars().any(|c| ('\u{3041}'..='\u{309F}').contains(&c));
    has_hiragana && name.ends_with(['は', 'が', 'を', 'に', 'で', 'と', 'も', 'へ', 'の', 'や'])
}

/// The line and glossary entries a cache key is made of. A speaker named in the glossary is
/// left out, so a known name never splits the cache (the name's rendering comes from the
/// glossary, not the cached answer); any other line is keyed whole, as it was sent.
pub fn cache_line<'a>(text: &'a str, own: &[GlossaryEntry]) -> (&'a str, Vec<GlossaryEntry>) {
    let spoken = split(text);
    match spoken.speaker {
        Some(name) if own.iter().any(|e| e.source == name) => {
            let line_own = own
                .iter()
                .filter(|e| spoken.line.contains(&e.source))
                .cloned()
                .collect();
            (spoken.line, line_own)
        }
        _ => (text, own.to_vec()),
    }
}

/// The speaker's name as shown: the glossary's rendering when the name is in it, else the
/// model's (`reply`), else the name as written. None when the line names no speaker.
pub fn shown_name(text: &str, glossary: &Glossary, reply: Option<&str>) -> Option<String> {
    let name = split(text).speaker?;
    let rendering = glossary
        .rendering(name)
        .or(reply.map(str::trim).filter(|r| !r.is_empty()))
        .unwrap_or(name);
    Some(rendering.to_string())
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
    fn speaker_forms_split_into_name_and_quoted_line() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "【春香】「ねえ、聞いてる？」",
                "春香",
                "「ねえ、聞いてる？」",
            ),
            ("【春香】 「ねえ」", "春香", "「ねえ」"),
            ("［春香］「……うん」", "春香", "「……うん」"),
            ("【春香】（どうしよう……）", "春香", "（どうしよう……）"),
            ("【佐藤 春香】「はい」", "佐藤 春香", "「はい」"),
            ("春香「……うん」", "春香", "「……うん」"),
            ("春香『待って』", "春香", "『待って』"),
            ("春香「ねえ、聞いてる？", "春香", "「ねえ、聞いてる？"),
            (
                "アリス・リデル「こんにちは」",
                "アリス・リデル",
                "「こんにちは」",
            ),
            ("？？？「誰だ！」", "？？？", "「誰だ！」"),
            ("ゆず「ありがと」", "ゆず", "「ありがと」"),
            ("Alice「Hi」", "Alice", "「Hi」"),
            ("春香：ねえ、聞いてる？", "春香", "ねえ、聞いてる？"),
            ("春香: ねえ", "春香", "ねえ"),
            ("春香：「ねえ」", "春香", "「ねえ」"),
            ("  春香「うん」  ", "春香", "「うん」"),
        ];
        for (text, name, line) in cases {
            assert_eq!(
                split(text),
                Spoken {
                    speaker: Some(name),
                    line
                },
                "text: {text:?}"
            );
        }
    }

    #[test]
    fn lines_that_only_look_like_a_speaker_stay_whole() {
        for text in [
            "「ねえ、聞いてる？」",
            "『待って』",
            "昨日「君の名は」を見た",
            "昨日「君の名は」を見た。",
            "彼は「違う」",
            "私が「はい」",
            "彼女の「大丈夫」",
            "そう言って彼女は静かに笑った「またね」",
            "ねえ、春香「聞いてる？」",
            "春香 「うん」",
            "あの日、彼は言った：もう戻らない",
            "とても長い説明文のような何か：続き",
            "【速報】大事件が起きた",
            "【】「空」",
            "【とても長い名前を持つ登場人物です】「はい」",
            "12:30",
            "12：30に集合",
            "http://example.com",
            "春香：",
            "：ねえ",
            "春香「あ」「い」",
            "先輩が来た。",
            "",
        ] {
            let s = split(text);
            assert_eq!(s.speaker, None, "text: {text:?} split as {s:?}");
            assert_eq!(s.line, text);
        }
    }

    #[test]
    fn the_cache_line_drops_only_a_speaker_the_glossary_knows() {
        let haruka = e("春香", "Haruka");
        let senpai = e("先輩", "senpai");
        let cases: Vec<(&str, Vec<GlossaryEntry>, &str, Vec<GlossaryEntry>)> = vec![
            (
                "【春香】「先輩、遅いよ」",
                vec![haruka.clone(), senpai.clone()],
                "「先輩、遅いよ」",
                vec![senpai.clone()],
            ),
            ("春香「うん」", vec![haruka.clone()], "「うん」", vec![]),
            ("美咲「うん」", vec![], "美咲「うん」", vec![]),
            (
                "美咲「春香、おはよう」",
                vec![haruka.clone()],
                "美咲「春香、おはよう」",
                vec![haruka.clone()],
            ),
            ("「うん」", vec![], "「うん」", vec![]),
            (
                "昨日「春香」を見た",
                vec![haruka.clone()],
                "昨日「春香」を見た",
                vec![haruka.clone()],
            ),
        ];
        for (text, own, line, keyed) in cases {
            assert_eq!(cache_line(text, &own), (line, keyed), "text: {text:?}");
        }
    }

    #[test]
    fn the_shown_name_prefers_the_glossary_then_the_reply_then_the_name() {
        let g = Glossary::new(vec![e("春香", "Haruka")]);
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("【春香】「ねえ」", Some("Harukaa"), Some("Haruka")),
            ("【春香】「ねえ」", None, Some("Haruka")),
            ("美咲「うん」", Some("Misaki"), Some("Misaki")),
            ("美咲「うん」", Some("  "), Some("美咲")),
            ("美咲「うん」", None, Some("美咲")),
            ("「うん」", Some("Misaki"), None),
        ];
        for (text, reply, want) in cases {
            assert_eq!(
                shown_name(text, &g, *reply).as_deref(),
                *want,
                "text: {text:?}, reply: {reply:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn a_split_never_loses_text(s in "\\PC{0,40}") {
            let spoken = split(&s);
            if let Some(name) = spoken.speaker {
                proptest::prop_assert!(s.contains(name) && s.contains(spoken.line));
                proptest::prop_assert!(!spoken.line.is_empty());
                proptest::prop_assert!(name.chars().count() <= MAX_NAME_CHARS);
            } else {
                proptest::prop_assert_eq!(spoken.line, s.as_str());
            }
        }
    }
}
