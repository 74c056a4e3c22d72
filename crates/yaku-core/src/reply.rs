//! Turns a model's reply text into translation options. Models are asked for
//! `{"options": [...]}` but do not always comply, so several shapes are accepted; anything
//! with no usable text is an `InvalidReply`, never a panic.

use serde_json::Value;

/// The reply held no usable translation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the reply held no usable translation ({0})")]
pub struct InvalidReply(pub &'static str);

impl InvalidReply {
    /// Whether the reply held no text at all (rather than text in the wrong shape).
    pub fn is_empty(&self) -> bool {
        matches!(self.0, EMPTY_TEXT | ONLY_EMPTY)
    }
}

const EMPTY_TEXT: &str = "empty text";
const ONLY_EMPTY: &str = "only empty options";

/// Parses `text` into at most `max` options, best first: one line each, without control
/// characters, trimmed, non-empty, no duplicates.
pub fn parse_options(text: &str, max: usize) -> Result<Vec<String>, InvalidReply> {
    let text = strip_think(text);
    let text = text.trim();
    if text.is_empty() {
        return Err(InvalidReply(EMPTY_TEXT));
    }
    let body = strip_fences(text);

    let raw = if let Ok(v) = serde_json::from_str::<Value>(body) {
        options_from_json(&v).ok_or(InvalidReply("JSON without options"))?
    } else if let Some(v) = embedded_json(body) {
        options_from_json(&v).ok_or(InvalidReply("JSON without options"))?
    } else if looks_like_json(body) {
        // A cut-off JSON reply (MAX_TOKENS, truncated body): its raw text is no translation.
        return Err(InvalidReply("unparsable JSON"));
    } else if let Some(numbered) = numbered_lines(body) {
        numbered
    } else {
        vec![body.to_string()]
    };
    let cleaned = clean(raw, max.max(1));
    if cleaned.is_empty() {
        Err(InvalidReply(ONLY_EMPTY))
    } else {
        Ok(cleaned)
    }
}

/// The longest speaker rendering taken from a reply; a longer one is prose, not a name.
const MAX_SPEAKER_CHARS: usize = 40;

/// The speaker's rendering a reply may give beside its options (`{"speaker": "Haruka",
/// "options": [...]}`), on one line and trimmed. Never required: a reply without one, or with
/// one that is not a short string, gives None and its options stand.
pub fn parse_speaker(text: &str) -> Option<String> {
    let text = strip_think(text);
    let body = strip_fences(text.trim());
    let v = serde_json::from_str::<Value>(body)
        .ok()
        .or_else(|| embedded_json(body))?;
    let name = one_line(v.get("speaker")?.as_str()?).trim().to_string();
    (!name.is_empty() && name.chars().count() <= MAX_SPEAKER_CHARS).then_some(name)
}

/// Removes `<think>…</think>` blocks (and an unclosed trailing one), where some models put
/// their reasoning.
pub fn strip_think(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<think>") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</think>") {
            Some(end) => rest = &rest[start + end + "</think>".len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

fn strip_fences(text: &str) -> &str {
    let Some(open) = text.find("```") else {
        return text;
    };
    let after = &text[open + 3..];
    // Skip the info string (```json) up to the end of its line.
    let content_start = after.find('\n').map_or(after.len(), |i| i + 1);
    let content = &after[content_start..];
    match content.find("```") {
        Some(close) => content[..close].trim(),
        None => content.trim(),
    }
}

/// Whether the text holds (the start of) JSON: at its start, or after a preamble such as
/// "Here is the translation: {\"options\": [...". Such text, unparsable, is a cut-off or
/// garbled reply. A brace anywhere counts: no translation of a game line holds one, and
/// `}}}{{{` is broken JSON, not prose.
fn looks_like_json(text: &str) -> bool {
    text.starts_with(['{', '[', '}', ']']) || text.contains('{') || text.contains("[\"")
}

/// The first `{…}` or `[…]` span in prose that parses as JSON.
fn embedded_json(text: &str) -> Option<Value> {
    for (open, close) in [('{', '}'), ('[', ']')] {
        if let (Some(start), Some(end)) = (text.find(open), text.rfind(close))
            && start < end
            && let Ok(v) = serde_json::from_str::<Value>(&text[start..=end])
        {
            return Some(v);
        }
    }
    None
}

fn options_from_json(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Object(map) => {
            if let Some(opts) = map.get("options").and_then(strings) {
                return Some(opts);
            }
            // A model that renamed the key ({"translations": [...]}): take the first list of strings.
            map.values().find_map(strings)
        }
        Value::Array(_) => strings(v),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

fn strings(v: &Value) -> Option<Vec<String>> {
    let arr = v.as_array()?;
    let out: Vec<String> = arr
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    if out.is_empty() { None } else { Some(out) }
}

/// `1. …`, `2) …`, `OPCAO_1: …`, `Option 1: …` lines; None unless at least one line matches.
fn numbered_lines(text: &str) -> Option<Vec<String>> {
    let found: Vec<String> = text
        .lines()
        .filter_map(|l| numbered_item(l.trim()).map(str::to_string))
        .collect();
    if found.is_empty() { None } else { Some(found) }
}

fn numbered_item(line: &str) -> Option<&str> {
    for prefix in ["OPCAO_", "OPÇÃO_", "Option ", "option ", "OPTION "] {
        if let Some(rest) = line.strip_prefix(prefix) {
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            if rest.len() < line.len() - prefix.len()
                && let Some(item) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('.'))
            {
                return Some(item.trim());
            }
        }
    }
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || digits > 2 {
        return None;
    }
    let rest = &line[digits..];
    let item = rest
        .strip_prefix(". ")
        .or_else(|| rest.strip_prefix(") "))
        .or_else(|| rest.strip_prefix(": "))?;
    Some(item.trim())
}

fn clean(raw: Vec<String>, max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(max.min(raw.len()));
    for o in raw {
        let o = one_line(&o);
        let t = o.trim();
        if t.is_empty() || out.iter().any(|x| x == t) {
            continue;
        }
        out.push(t.to_string());
        if out.len() == max {
            break;
        }
    }
    out
}

/// The option as one line without control characters: a NUL cuts a desktop notification
/// short and a line break splits one option in two, so line breaks and tabs become spaces and
/// every other C0/C1 control is dropped.
fn one_line(option: &str) -> std::borrow::Cow<'_, str> {
    if !option.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(option);
    }
    std::borrow::Cow::Owned(
        option
            .chars()
            .filter_map(|c| match c {
                '\t' | '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' => Some(' '),
                c if c.is_control() => None,
                c => Some(c),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<String> {
        parse_options(text, 5).unwrap()
    }

    #[test]
    fn accepted_shapes_table() {
        let cases: &[(&str, &[&str])] = &[
            (r#"{"options": ["A", "B", "C"]}"#, &["A", "B", "C"]),
            ("```json\n{\"options\": [\"A\", \"B\"]}\n```", &["A", "B"]),
            (
                "Here you go:\n```\n{\"options\": [\"A\"]}\n```\nEnjoy!",
                &["A"],
            ),
            (
                r#"Sure! {"options": ["A", "B"]} Hope that helps."#,
                &["A", "B"],
            ),
            (r#"["A", "B"]"#, &["A", "B"]),
            (
                "1. Good morning.\n2. Morning!\n3. Hello.",
                &["Good morning.", "Morning!", "Hello."],
            ),
            (
                "OPCAO_1: Good morning.\nOPCAO_2: Morning!",
                &["Good morning.", "Morning!"],
            ),
            ("Option 1: Hi.\nOption 2: Hey.", &["Hi.", "Hey."]),
            ("Good morning, senpai.", &["Good morning, senpai."]),
            (
                "<think>The user wants...</think>{\"options\": [\"A\"]}",
                &["A"],
            ),
            (r#"{"translations": ["A", "B"]}"#, &["A", "B"]),
            (
                r#"{"options": ["  A  ", "", "A", "B", "   "]}"#,
                &["A", "B"],
            ),
            (r#""Just one""#, &["Just one"]),
        ];
        for (input, want) in cases {
            assert_eq!(
                ok(input),
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "input: {input:?}"
            );
        }
    }

    #[test]
    fn rejected_shapes_table() {
        for input in [
            "",
            "   \n ",
            r#"{"options": []}"#,
            r#"{"options": ["", "  "]}"#,
            r#"{"options": ["Good morning, sen"#,
            r#"Here is the translation: {"options": ["Good morn"#,
            r#"{"note": 3}"#,
            "<think>never closed, and nothing after",
            "42",
            "}}}{{{ not json",
            "{{{ not json",
            "]]] {oops",
        ] {
            assert!(
                parse_options(input, 3).is_err(),
                "should be invalid: {input:?}"
            );
        }
    }

    #[test]
    fn control_characters_never_reach_an_option() {
        let cases: &[(&str, &[&str])] = &[
            (
                "{\"options\": [\"Good\\u0000 morning.\"]}",
                &["Good morning."],
            ),
            (
                "{\"options\": [\"Line one\\nline two\"]}",
                &["Line one line two"],
            ),
            ("{\"options\": [\"\\u0007\\u009b\", \"Hi.\"]}", &["Hi."]),
            ("Good\u{1b}[31m morning.", &["Good[31m morning."]),
        ];
        for (input, want) in cases {
            assert_eq!(ok(input), *want, "input: {input:?}");
        }
        assert!(
            parse_options("{\"options\": [\"\\u0000\"]}", 3)
                .unwrap_err()
                .is_empty()
        );
    }

    #[test]
    fn a_speaker_rendering_is_taken_when_given_and_never_required() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"{"speaker": "Haruka", "options": ["Hey."]}"#,
                Some("Haruka"),
            ),
            (
                "```json\n{\"speaker\": \" Haruka\\n\", \"options\": [\"Hey.\"]}\n```",
                Some("Haruka"),
            ),
            (
                r#"Sure: {"options": ["Hey."], "speaker": "Haruka"}"#,
                Some("Haruka"),
            ),
            (r#"{"options": ["Hey."]}"#, None),
            (r#"{"speaker": "", "options": ["Hey."]}"#, None),
            (r#"{"speaker": 3, "options": ["Hey."]}"#, None),
            (r#"{"speaker": ["Haruka"], "options": ["Hey."]}"#, None),
            ("Hey, are you listening?", None),
            ("}}}{{{ not json", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_speaker(input).as_deref(), *want, "input: {input:?}");
            if input.contains("options") {
                assert_eq!(ok(input), ["Hey."], "the options stand: {input:?}");
            }
        }
        let long = format!(
            r#"{{"speaker": "{}", "options": ["Hey."]}}"#,
            "a".repeat(41)
        );
        assert_eq!(parse_speaker(&long), None);
    }

    #[test]
    fn keeps_at_most_max_options_best_first() {
        assert_eq!(
            parse_options(r#"{"options": ["A","B","C","D"]}"#, 2).unwrap(),
            vec!["A", "B"]
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_never_returns_empty_options(s in "\\PC*", max in 1usize..6) {
            if let Ok(v) = parse_options(&s, max) {
                proptest::prop_assert!(!v.is_empty() && v.len() <= max);
                proptest::prop_assert!(v.iter().all(|o| !o.trim().is_empty()));
                proptest::prop_assert!(v.iter().all(|o| !o.chars().any(char::is_control)));
            }
        }
    }
}
