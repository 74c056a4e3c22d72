//! Privacy gates: nothing but game text leaves the machine.
//!
//! Every clipboard change goes through [`Gates::check`] before anything is sent to a provider.
//! The gates run in a fixed order (concealed, length, script, secret shapes, ignore patterns,
//! own output, repeat) and the first one that objects wins. A gate that cannot decide rejects:
//! the cost of a false rejection is one untranslated line, the cost of a false acceptance is
//! a password in someone's API logs.
//!
//! After the length gate every gate looks at the text with surrounding whitespace trimmed.
//! Rejections never carry the text itself, so they are safe to log.

use std::collections::VecDeque;

use regex::{Regex, RegexSet};

/// How many of yaku's own translations [`Gates`] remembers for the own-output gate.
pub const OWN_OUTPUT_MEMORY: usize = 50;

/// The languages the script gate knows, as named in error messages.
pub const SUPPORTED_LANGUAGES: &str = "Japanese, Chinese, Korean";

/// What the gates let through; from `[gates]` and `[translation]` in the config.
#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Fewest chars (after trimming) worth translating.
    pub min_chars: usize,
    /// Most chars accepted; longer text is rejected, never truncated.
    pub max_chars: usize,
    /// Least share of the source script among the text's letters, in `0.0..=1.0`.
    pub min_script_ratio: f64,
    /// Whether the script gate runs at all.
    pub require_script: bool,
    /// The game's language, e.g. "Japanese"; picks the script the script gate looks for.
    pub source_language: String,
    /// User patterns: text matching any of them is never sent.
    pub ignore: Vec<Regex>,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            min_chars: 1,
            max_chars: 500,
            min_script_ratio: 0.3,
            require_script: true,
            source_language: "Japanese".into(),
            ignore: Vec::new(),
        }
    }
}

/// Why a clipboard text was not sent. Carries no part of the text, so it can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The clipboard owner marked the content as concealed (a password manager did).
    Concealed,
    /// Fewer chars than `min_chars`.
    TooShort,
    /// More chars than `max_chars`.
    TooLong,
    /// Too little of the source language's script, or control characters.
    WrongScript,
    /// Looks like a credential; the payload names the shape, e.g. "jwt".
    SecretShape(&'static str),
    /// Matches the user's ignore pattern with this index.
    Ignored(usize),
    /// One of yaku's own recent translations, copied back.
    OwnOutput,
    /// The same text as the last accepted line.
    Repeat,
}

impl Rejection {
    /// The gate's stable snake_case name, for logs and counters.
    pub fn gate_name(&self) -> &'static str {
        match self {
            Self::Concealed => "concealed",
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::WrongScript => "wrong_script",
            Self::SecretShape(_) => "secret",
            Self::Ignored(_) => "ignored",
            Self::OwnOutput => "own_output",
            Self::Repeat => "repeat",
        }
    }

    /// What the rejection means, in words for the user (it never quotes the text).
    pub fn explain(&self) -> &'static str {
        match self {
            Self::Concealed => "a password manager marked it as secret",
            Self::TooShort => "shorter than min_chars",
            Self::TooLong => "longer than max_chars",
            Self::WrongScript => "not enough of the source language's script",
            Self::SecretShape(_) => "it looks like a key, token or password",
            Self::Ignored(_) => "it matches an `ignore` pattern of the config",
            Self::OwnOutput => "it is one of yaku's own translations",
            Self::Repeat => "the same as the previous line",
        }
    }
}

/// The one description of each gate is [`Rejection::explain`].
impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.explain())
    }
}

impl std::error::Error for Rejection {}

/// A [`GateConfig`] that cannot be enforced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GateConfigError {
    /// `require_script` is on but the script gate does not know the language.
    #[error(
        "source_language {language:?} has no script check (supported: {supported}); \
         set require_script = false to translate it without one"
    )]
    UnsupportedLanguage {
        /// The configured language.
        language: String,
        /// The languages that are supported.
        supported: &'static str,
    },
    /// `min_chars` is 0 or above `max_chars`.
    #[error("min_chars ({min}) must be at least 1 and at most max_chars ({max})")]
    Lengths {
        /// The configured `min_chars`.
        min: usize,
        /// The configured `max_chars`.
        max: usize,
    },
    /// `min_script_ratio` is not a number in `0.0..=1.0`.
    #[error("min_script_ratio must be between 0 and 1, got {0}")]
    ScriptRatio(f64),
    /// A built-in secret pattern failed to compile (a bug in yaku).
    #[error("built-in secret pattern failed to compile: {0}")]
    BuiltinPattern(#[from] regex::Error),
}

/// The script a source language is written in, as far as the script gate (and the reply
/// checks, which look for untranslated options) care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Japanese,
    Chinese,
    Korean,
}

impl Script {
    /// Matches config names loosely (case, ISO codes, endonyms) since users type them freely.
    pub fn for_language(name: &str) -> Option<Self> {
        match name.trim().to_lowercase().as_str() {
            "japanese" | "ja" | "jp" | "jpn" | "日本語" => Some(Self::Japanese),
            "chinese"
            | "zh"
            | "zho"
            | "chi"
            | "mandarin"
            | "cantonese"
            | "simplified chinese"
            | "traditional chinese"
            | "中文" => Some(Self::Chinese),
            "korean" | "ko" | "kor" | "한국어" => Some(Self::Korean),
            _ => None,
        }
    }

    /// Whether `c` belongs to this script.
    fn contains(self, c: char) -> bool {
        match self {
            Self::Japanese => is_kana(c) || is_han(c) || matches!(c, '々' | '〆' | '〻'),
            Self::Chinese => is_han(c),
            Self::Korean => is_hangul(c),
        }
    }

    /// Counts the text's letters and how many of them are in this script (chars alphabetic
    /// in any script; digits, punctuation, symbols and spaces don't count).
    pub fn count(self, text: &str) -> ScriptCount {
        let mut n = ScriptCount::default();
        for c in text.chars() {
            if c.is_control() && !matches!(c, '\t' | '\n' | '\r') {
                n.controls += 1;
            }
            if self.contains(c) {
                // Counted as a letter even when Unicode says otherwise (ゝ, 〆), so the share
                // never exceeds 1.
                n.native += 1;
                n.letters += 1;
            } else if c.is_alphabetic() {
                n.letters += 1;
            }
        }
        n
    }
}

/// What [`Script::count`] found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScriptCount {
    /// Letters of the script.
    pub native: usize,
    /// Letters of any script, the native ones included.
    pub letters: usize,
    /// Control characters other than tab and line breaks.
    pub controls: usize,
}

impl ScriptCount {
    /// The script's share of the letters; 0 for a text without letters ("……").
    pub fn share(&self) -> f64 {
        if self.letters == 0 {
            0.0
        } else {
            self.native as f64 / self.letters as f64
        }
    }
}

/// Hiragana and katakana letters, including ー, ゝ/ヽ, half-width katakana and the historic
/// kana blocks; excludes the lone voicing marks and ・, which are not letters on their own.
fn is_kana(c: char) -> bool {
    matches!(c,
        '\u{3041}'..='\u{3096}' // hiragana
        | '\u{309D}'..='\u{309F}' // ゝゞゟ
        | '\u{30A1}'..='\u{30FA}' // katakana
        | '\u{30FC}'..='\u{30FF}' // ー ヽ ヾ ヿ
        | '\u{31F0}'..='\u{31FF}' // katakana phonetic extensions
        | '\u{FF66}'..='\u{FF9F}' // half-width katakana, ｰ and its voicing marks
        | '\u{1B000}'..='\u{1B16F}' // kana supplement, extended-A, small kana
    )
}

/// Han ideographs: unified (with extension A and the supplementary-plane extensions),
/// compatibility ideographs, and 〇.
fn is_han(c: char) -> bool {
    matches!(c,
        '\u{3007}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{2FA1F}'
        | '\u{30000}'..='\u{323AF}'
    )
}

/// Hangul syllables and jamo (conjoining, compatibility, extensions, half-width).
fn is_hangul(c: char) -> bool {
    matches!(c,
        '\u{1100}'..='\u{11FF}'
        | '\u{3131}'..='\u{318E}'
        | '\u{A960}'..='\u{A97F}'
        | '\u{AC00}'..='\u{D7A3}'
        | '\u{D7B0}'..='\u{D7FF}'
        | '\u{FFA0}'..='\u{FFDC}'
    )
}

/// Named credential shapes that a regex recognizes, checked in this order. `(?-u:\b)` is an
/// ASCII word boundary, so a key glued to Japanese text ("キーはsk-…") still matches while
/// "task-…" does not.
const SECRET_PATTERNS: &[(&str, &str)] = &[
    ("private_key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY"),
    ("aws_key", r"(?-u:\b)(?:AKIA|ASIA)[0-9A-Z]{16}(?-u:\b)"),
    ("google_key", r"AIza[0-9A-Za-z_\-]{35}"),
    ("groq_key", r"(?-u:\b)gsk_[0-9A-Za-z]{20,}"),
    (
        "sk_key",
        r"(?-u:\b)sk-(?:proj-|ant-|svcacct-|admin-)?[0-9A-Za-z_\-]{20,}",
    ),
    (
        "stripe_key",
        r"(?-u:\b)[rs]k_(?:live|test)_[0-9A-Za-z]{16,}",
    ),
    (
        "github_token",
        r"(?-u:\b)(?:gh[pousr]_[0-9A-Za-z]{30,}|github_pat_[0-9A-Za-z_]{22,})",
    ),
    ("slack_token", r"(?-u:\b)xox[abprs]-[0-9A-Za-z\-]{10,}"),
    ("huggingface_token", r"(?-u:\b)hf_[0-9A-Za-z]{30,}"),
    (
        "jwt",
        r"eyJ[0-9A-Za-z_\-]{5,}\.[0-9A-Za-z_\-]{5,}\.[0-9A-Za-z_\-]*",
    ),
    (
        "url_credentials",
        r"(?i)[a-z][a-z0-9+.\-]*://[^\s/:@]+:[^\s/@]+@",
    ),
    (
        "email_password",
        r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}[ \t]*[:;|,\t ][ \t]*[!-~]{4,}",
    ),
    (
        "labelled_credential",
        r"(?i)(?:(?-u:\b)(?:pass(?:word|wd|phrase|code)?|pwd|pw|pin|secret|token|api[ _\-]?key)|パスワード|暗証番号|パスコード)[ \t]*[:=：＝][ \t]*[!-~]{4,}",
    ),
];

/// The privacy gates, with the little state they need (recent outputs, last accepted line).
#[derive(Debug)]
pub struct Gates {
    cfg: GateConfig,
    /// `None` when `require_script` is off.
    script: Option<Script>,
    secrets: RegexSet,
    /// Whitespace-normalized, newest last.
    recent_outputs: VecDeque<String>,
    last_accepted: Option<String>,
}

impl Gates {
    /// Validates `cfg` and builds the gates.
    ///
    /// Fails when `require_script` is on for a language the script gate does not know, when
    /// the length limits are inconsistent, or when `min_script_ratio` is outside `0..=1`.
    pub fn new(cfg: GateConfig) -> Result<Self, GateConfigError> {
        if cfg.min_chars == 0 || cfg.min_chars > cfg.max_chars {
            return Err(GateConfigError::Lengths {
                min: cfg.min_chars,
                max: cfg.max_chars,
            });
        }
        if !(0.0..=1.0).contains(&cfg.min_script_ratio) {
            return Err(GateConfigError::ScriptRatio(cfg.min_script_ratio));
        }
        let script = if cfg.require_script {
            Some(Script::for_language(&cfg.source_language).ok_or_else(|| {
                GateConfigError::UnsupportedLanguage {
                    language: cfg.source_language.clone(),
                    supported: SUPPORTED_LANGUAGES,
                }
            })?)
        } else {
            None
        };
        let secrets = RegexSet::new(SECRET_PATTERNS.iter().map(|&(_, pattern)| pattern))?;
        Ok(Self {
            cfg,
            script,
            secrets,
            recent_outputs: VecDeque::with_capacity(OWN_OUTPUT_MEMORY),
            last_accepted: None,
        })
    }

    /// From now on the script gate looks for `language`'s script (a game profile's
    /// `source_language`); None, or a language it has no check for: the configured one's.
    /// The rest of the state (repeats, own output) is kept: it is the reader's, not a game's.
    pub fn use_language(&mut self, language: Option<&str>) {
        if !self.cfg.require_script {
            return;
        }
        self.script = language
            .and_then(Script::for_language)
            .or_else(|| Script::for_language(&self.cfg.source_language));
    }

    /// The configuration the gates enforce.
    pub fn config(&self) -> &GateConfig {
        &self.cfg
    }

    /// Runs every gate on a clipboard `text`; `Ok` means it may be sent, and it becomes the
    /// last accepted line.
    ///
    /// `concealed` is whether the clipboard owner flagged the content as a password (the
    /// caller reads it from the platform, e.g. X11 TARGETS): `Some(true)` rejects, and `None`
    /// means the platform offers no such flag, so the other gates decide alone.
    pub fn check(&mut self, text: &str, concealed: Option<bool>) -> Result<(), Rejection> {
        if concealed == Some(true) {
            return Err(Rejection::Concealed);
        }

        let text = text.trim();
        // Stops counting one past the limit: a 10 MB clipboard costs max_chars steps, and
        // nothing is copied before every gate has passed.
        let chars = text
            .chars()
            .take(self.cfg.max_chars.saturating_add(1))
            .count();
        if chars > self.cfg.max_chars {
            return Err(Rejection::TooLong);
        }
        if chars < self.cfg.min_chars {
            return Err(Rejection::TooShort);
        }

        if self.cfg.require_script {
            // No script while the gate is on cannot happen after `new`; reject if it does.
            let script = self.script.ok_or(Rejection::WrongScript)?;
            if !has_enough_script(text, script, self.cfg.min_script_ratio) {
                return Err(Rejection::WrongScript);
            }
        }

        if let Some(shape) = self.secret_shape(text) {
            return Err(Rejection::SecretShape(shape));
        }

        if let Some(index) = self.cfg.ignore.iter().position(|re| re.is_match(text)) {
            return Err(Rejection::Ignored(index));
        }

        if !self.recent_outputs.is_empty() {
            let normalized = normalize_whitespace(text);
            if self.recent_outputs.iter().any(|out| *out == normalized) {
                return Err(Rejection::OwnOutput);
            }
        }

        if self.last_accepted.as_deref() == Some(text) {
            return Err(Rejection::Repeat);
        }

        self.last_accepted = Some(text.to_owned());
        Ok(())
    }

    /// Forgets `text` as the last accepted line because its translation failed: copying it
    /// again is then a new try, not a repeat (only a line shown, cached or in flight is one).
    pub fn forget_accepted(&mut self, text: &str) {
        if self.last_accepted.as_deref() == Some(text.trim()) {
            self.last_accepted = None;
        }
    }

    /// Remembers one translation yaku produced (call it for each option the user could
    /// copy), so that copying it back is not sent for translation. Keeps the last
    /// [`OWN_OUTPUT_MEMORY`].
    pub fn record_output(&mut self, translation: &str) {
        // Copying from a notification can change line breaks, so compare normalized text.
        let normalized = normalize_whitespace(translation);
        if normalized.is_empty() {
            return;
        }
        if let Some(pos) = self
            .recent_outputs
            .iter()
            .position(|out| *out == normalized)
        {
            self.recent_outputs.remove(pos);
        }
        while self.recent_outputs.len() >= OWN_OUTPUT_MEMORY {
            self.recent_outputs.pop_front();
        }
        self.recent_outputs.push_back(normalized);
    }

    /// The name of the first credential shape found in `text`, if any.
    fn secret_shape(&self, text: &str) -> Option<&'static str> {
        if let Some(index) = self.secrets.matches(text).iter().next() {
            // Every index comes from SECRET_PATTERNS; the fallback keeps this total anyway.
            return Some(
                SECRET_PATTERNS
                    .get(index)
                    .map_or("secret", |&(name, _)| name),
            );
        }
        if has_card_number(text) {
            return Some("card_number");
        }
        text.as_bytes()
            .split(|b| !b.is_ascii_graphic())
            .find_map(ascii_run_shape)
    }
}

/// Whether `text` has at least one char of `script` and enough of them among its letters
/// (chars alphabetic in any script; digits, punctuation, symbols and spaces don't count).
/// Control characters other than tab and line breaks mean it is not game text.
fn has_enough_script(text: &str, script: Script, min_ratio: f64) -> bool {
    let n = script.count(text);
    n.controls == 0 && n.native > 0 && n.native as f64 >= min_ratio * n.letters as f64
}

/// Collapses whitespace runs to one space and trims, for comparing copies of one text.
fn normalize_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The value of an ASCII or full-width decimal digit.
fn digit_value(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '０'..='９' => u8::try_from(u32::from(c) - u32::from('０')).ok(),
        _ => None,
    }
}

/// Whether `text` holds 13–19 digits in a row (single spaces or dashes allowed between digit
/// groups) that pass the Luhn check, i.e. look like a payment card number.
fn has_card_number(text: &str) -> bool {
    let mut digits: Vec<u8> = Vec::new();
    // Index in `digits` where each separator-delimited group starts.
    let mut group_starts: Vec<usize> = vec![0];
    let mut after_separator = false;
    for c in text.chars() {
        if let Some(d) = digit_value(c) {
            if after_separator {
                group_starts.push(digits.len());
                after_separator = false;
            }
            digits.push(d);
        } else if matches!(c, ' ' | '-') && !digits.is_empty() && !after_separator {
            after_separator = true;
        } else {
            if run_has_card_number(&digits, &group_starts) {
                return true;
            }
            digits.clear();
            group_starts.clear();
            group_starts.push(0);
            after_separator = false;
        }
    }
    run_has_card_number(&digits, &group_starts)
}

/// Whether some whole groups of one digit run form a 13–19 digit Luhn-valid number: a card
/// number may sit between other numbers, but never starts or ends inside a group.
fn run_has_card_number(digits: &[u8], group_starts: &[usize]) -> bool {
    if digits.len() < 13 {
        return false;
    }
    for (i, &start) in group_starts.iter().enumerate() {
        let ends = group_starts
            .iter()
            .skip(i + 1)
            .copied()
            .chain(std::iter::once(digits.len()));
        for end in ends {
            let len = end.saturating_sub(start);
            if len > 19 {
                break;
            }
            if len >= 13 && digits.get(start..end).is_some_and(luhn_valid) {
                return true;
            }
        }
    }
    false
}

/// The Luhn checksum that payment card numbers carry.
fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Shannon entropy of `run` in bits per byte.
fn entropy(run: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in run {
        if let Some(slot) = counts.get_mut(usize::from(b)) {
            *slot += 1;
        }
    }
    let len = run.len() as f64;
    counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = f64::from(n) / len;
            -p * p.log2()
        })
        .sum()
}

/// Classifies one maximal run of non-space ASCII chars. Only ASCII runs are examined: game
/// text in CJK scripts never forms such runs, so a long kana line cannot look "random".
///
/// * `hex_token`: 32+ hex digits.
/// * `random_token`: 32+ chars mixing at least two of lower/upper/digit, entropy >= 3
///   bits/char (base64, API keys, URLs with tokens; "wwww" or "!!!!" has entropy ~0).
/// * `mixed_token`: 16+ chars, three classes, entropy >= 3.5 (shorter generated tokens).
/// * `password_like`: 8+ chars with lower, upper, digit and a symbol other than the
///   punctuation ordinary words and versions use ("Lv.99", "Ver.1.02", "OK!?").
fn ascii_run_shape(run: &[u8]) -> Option<&'static str> {
    let len = run.len();
    if len < 8 {
        return None;
    }
    let lower = run.iter().any(u8::is_ascii_lowercase);
    let upper = run.iter().any(u8::is_ascii_uppercase);
    let digit = run.iter().any(u8::is_ascii_digit);
    let punct = run.iter().any(u8::is_ascii_punctuation);
    let alnum_classes = [lower, upper, digit].into_iter().filter(|&x| x).count();
    let classes = alnum_classes + usize::from(punct);
    if len >= 32 {
        if run.iter().all(u8::is_ascii_hexdigit) {
            return Some("hex_token");
        }
        // Punctuation does not count here: "task-management-system-…" is words, not a key.
        if alnum_classes >= 2 && entropy(run) >= 3.0 {
            return Some("random_token");
        }
    }
    if len >= 16 && classes >= 3 && entropy(run) >= 3.5 {
        return Some("mixed_token");
    }
    let password_symbol = run
        .iter()
        .any(|b| b.is_ascii_punctuation() && !b".,:;-/'\"()?!".contains(b));
    if lower && upper && digit && password_symbol {
        return Some("password_like");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    fn gates() -> Gates {
        match Gates::new(GateConfig::default()) {
            Ok(g) => g,
            Err(e) => panic!("default config must be valid: {e}"),
        }
    }

    fn gates_with(cfg: GateConfig) -> Gates {
        match Gates::new(cfg) {
            Ok(g) => g,
            Err(e) => panic!("config must be valid: {e}"),
        }
    }

    /// Gates whose script and length gates are out of the way, to test the secret gate alone.
    fn secret_only() -> Gates {
        gates_with(GateConfig {
            require_script: false,
            max_chars: 10_000,
            ..GateConfig::default()
        })
    }

    fn re(pattern: &str) -> Regex {
        match Regex::new(pattern) {
            Ok(r) => r,
            Err(e) => panic!("bad test regex {pattern}: {e}"),
        }
    }

    // ---- construction -------------------------------------------------------------------

    #[test]
    fn default_config_is_valid_and_patterns_compile() {
        let g = gates();
        assert_eq!(g.config().max_chars, 500);
        assert_eq!(g.secrets.len(), SECRET_PATTERNS.len());
    }

    #[test]
    fn language_names() {
        for (name, ok) in [
            ("Japanese", true),
            (" japanese ", true),
            ("JA", true),
            ("日本語", true),
            ("Chinese", true),
            ("Traditional Chinese", true),
            ("zh", true),
            ("Korean", true),
            ("ko", true),
            ("Klingon", false),
            ("", false),
        ] {
            let cfg = GateConfig {
                source_language: name.into(),
                ..GateConfig::default()
            };
            assert_eq!(Gates::new(cfg).is_ok(), ok, "{name:?}");
        }
    }

    #[test]
    fn unknown_language_error_names_it_and_the_supported_ones() {
        let cfg = GateConfig {
            source_language: "Klingon".into(),
            ..GateConfig::default()
        };
        match Gates::new(cfg) {
            Err(e @ GateConfigError::UnsupportedLanguage { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("Klingon") && msg.contains("Japanese"), "{msg}");
                assert!(msg.contains("Chinese") && msg.contains("Korean"), "{msg}");
            }
            other => panic!("expected UnsupportedLanguage, got {other:?}"),
        }
        // Without the script gate any language is fine.
        let cfg = GateConfig {
            source_language: "Klingon".into(),
            require_script: false,
            ..GateConfig::default()
        };
        assert!(Gates::new(cfg).is_ok());
    }

    #[test]
    fn invalid_limits_are_errors() {
        let bad = [
            GateConfig {
                min_chars: 0,
                ..GateConfig::default()
            },
            GateConfig {
                min_chars: 10,
                max_chars: 5,
                ..GateConfig::default()
            },
            GateConfig {
                min_script_ratio: -0.1,
                ..GateConfig::default()
            },
            GateConfig {
                min_script_ratio: 1.5,
                ..GateConfig::default()
            },
            GateConfig {
                min_script_ratio: f64::NAN,
                ..GateConfig::default()
            },
        ];
        for cfg in bad {
            assert!(Gates::new(cfg.clone()).is_err(), "{cfg:?}");
        }
    }

    #[test]
    fn gate_names_are_stable() {
        let cases = [
            (Rejection::Concealed, "concealed"),
            (Rejection::TooShort, "too_short"),
            (Rejection::TooLong, "too_long"),
            (Rejection::WrongScript, "wrong_script"),
            (Rejection::SecretShape("jwt"), "secret"),
            (Rejection::Ignored(3), "ignored"),
            (Rejection::OwnOutput, "own_output"),
            (Rejection::Repeat, "repeat"),
        ];
        for (rejection, name) in cases {
            assert_eq!(rejection.gate_name(), name);
            assert_eq!(
                rejection.to_string(),
                rejection.explain(),
                "one description"
            );
        }
    }

    // ---- gate 1: concealed --------------------------------------------------------------

    #[test]
    fn concealed_gate() {
        for (flag, want) in [
            (Some(true), Err(Rejection::Concealed)),
            (Some(false), Ok(())),
            (None, Ok(())),
        ] {
            assert_eq!(gates().check("こんにちは", flag), want, "{flag:?}");
        }
        // Concealed wins even over text that would fail later gates.
        assert_eq!(gates().check("", Some(true)), Err(Rejection::Concealed));
    }

    // ---- gate 2: length -----------------------------------------------------------------

    #[test]
    fn length_gate() {
        let cfg = || GateConfig {
            min_chars: 2,
            max_chars: 5,
            ..GateConfig::default()
        };
        let cases: &[(&str, Result<(), Rejection>)] = &[
            ("", Err(Rejection::TooShort)),
            ("   ", Err(Rejection::TooShort)),
            ("あ", Err(Rejection::TooShort)),
            ("  あ  ", Err(Rejection::TooShort)),
            ("あい", Ok(())),
            ("あいうえお", Ok(())),
            ("  あいうえお\n", Ok(())),
            ("あいうえおか", Err(Rejection::TooLong)),
            // Chars, not bytes: 5 kana are 15 bytes.
            ("漢字漢字漢", Ok(())),
        ];
        for (text, want) in cases {
            assert_eq!(gates_with(cfg()).check(text, None), *want, "{text:?}");
        }
        // Default limits.
        assert_eq!(gates().check(&"あ".repeat(500), None), Ok(()));
        assert_eq!(
            gates().check(&"あ".repeat(501), None),
            Err(Rejection::TooLong)
        );
    }

    #[test]
    fn ten_megabytes_is_rejected_quickly() {
        let huge = "あ".repeat(10 * 1024 * 1024 / 3);
        let ascii = "a".repeat(10 * 1024 * 1024);
        // Built before the clock starts: compiling the gates' regexes in a debug build is what
        // took the time under Wine, not the check this measures.
        let (mut first, mut second) = (gates(), gates());
        let started = Instant::now();
        assert_eq!(first.check(&huge, None), Err(Rejection::TooLong));
        assert_eq!(second.check(&ascii, None), Err(Rejection::TooLong));
        // Generous bound for debug builds on a loaded machine; the real cost is ~500 steps.
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }

    // ---- gate 3: script -----------------------------------------------------------------

    #[test]
    fn japanese_script_gate() {
        let cases: &[(&str, bool)] = &[
            ("こんにちは", true),
            ("カタカナ", true),
            ("漢字", true),
            ("ｶﾀｶﾅ", true), // half-width katakana is kana
            ("ﾊﾟﾝ", true),   // with half-width voicing mark
            ("々", true),   // iteration mark counts
            ("ー", true),   // prolonged sound mark counts
            ("「……ー！」", true),
            ("OKだよ", true),
            ("CDを買った", true),
            ("iPhone15Proを買った", true), // 4 of 12 letters
            ("Hello world", false),        // pure ASCII never passes
            ("hunter2", false),
            ("1234567", false),
            ("Ｒｏｍａｊｉ", false),     // full-width Latin is Latin
            ("Ｒｏｍａｊｉです", false), // 2 of 8 letters < 0.3
            ("This is English with one 字", false),
            ("……！？", false),           // punctuation only
            ("・・・", false),           // middle dots are not kana
            ("\u{3099}\u{309A}", false), // lone combining voicing marks
            ("😀🎉", false),
            ("שלום עולם", false),        // RTL Hebrew
            ("مرحبا بالعالم", false),    // RTL Arabic
            ("안녕하세요", false),       // Korean is not Japanese
            ("\u{0301}\u{0301}", false), // lone combining marks
            ("\0\0\0", false),
            ("こんにちは\0", false), // control chars are not game text
            ("こんにちは\u{7}", false),
            ("こんにちは\n元気？", true), // line breaks are fine
        ];
        for &(text, pass) in cases {
            let got = gates().check(text, None);
            if pass {
                assert_eq!(got, Ok(()), "{text:?}");
            } else {
                assert_eq!(got, Err(Rejection::WrongScript), "{text:?}");
            }
        }
    }

    #[test]
    fn other_scripts_and_ratio() {
        let cases: &[(&str, &str, f64, bool)] = &[
            ("Chinese", "你好，世界", 0.3, true),
            ("Chinese", "こんにちは", 0.3, false),
            ("Chinese", "兀", 0.3, true), // compatibility ideograph
            ("Chinese", "\u{3400}", 0.3, true), // extension A
            ("Chinese", "Hello 世界 friends", 0.3, false),
            ("Korean", "안녕하세요", 0.3, true),
            ("Korean", "ㅋㅋㅋ", 0.3, true), // compatibility jamo
            ("Korean", "\u{1100}\u{1161}", 0.3, true), // conjoining jamo
            ("Korean", "漢字", 0.3, false),
            ("Japanese", "OKだ", 0.3, true),
            ("Japanese", "OKだ", 0.5, false),
            ("Japanese", "OKだよ", 0.5, true),
            ("Japanese", "OKOKOKOKだ", 0.0, true), // ratio 0: one kana is enough
            ("Japanese", "OKOK", 0.0, false),      // but one is still required
            ("Japanese", "ひらがな", 1.0, true),
            ("Japanese", "ひらがなA", 1.0, false),
        ];
        for &(language, text, ratio, pass) in cases {
            let mut g = gates_with(GateConfig {
                source_language: language.into(),
                min_script_ratio: ratio,
                ..GateConfig::default()
            });
            let got = g.check(text, None);
            assert_eq!(got.is_ok(), pass, "{language} {text:?} {ratio}: {got:?}");
            if !pass {
                assert_eq!(got, Err(Rejection::WrongScript));
            }
        }
    }

    #[test]
    fn script_gate_can_be_turned_off() {
        let mut g = gates_with(GateConfig {
            require_script: false,
            ..GateConfig::default()
        });
        assert_eq!(g.check("Hello there", None), Ok(()));
        assert_eq!(g.check("😀🎉", None), Ok(()));
    }

    // ---- gate 4: secret shapes ----------------------------------------------------------

    /// Fake credentials of every shape the gate knows; none is a real key.
    const SHAPED_SECRETS: &[(&str, &str)] = &[
        ("aws_key", "AKIAIOSFODNN7EXAMPLE"),
        ("aws_key", "ASIAFAKEFAKEFAKE0000"),
        ("aws_key", "aws_access_key_id = AKIA0000EXAMPLE0FAKE"),
        ("google_key", "AIzaFAKE_fake-0123456789abcdefEXAMPLE12"),
        ("google_key", "key=AIzaSyFAKEFAKEFAKEFAKEFAKEFAKEFAKE01234"),
        ("groq_key", "gsk_FAKEfake0000EXAMPLE1111fake2222"),
        ("sk_key", "sk-FAKEfakeFAKEfake0000000000EXAMPLE"),
        (
            "sk_key",
            "sk-proj-FAKE_example-0000000000000000000000000000",
        ),
        (
            "sk_key",
            "sk-ant-api03-FAKE-example_000000000000000000000000000",
        ),
        (
            "sk_key",
            "OPENAI_API_KEY=sk-FAKE00000000000000000000000000000000000000",
        ),
        ("stripe_key", "sk_live_FAKE0000EXAMPLE1111fake"),
        ("stripe_key", "rk_test_FAKEfakeFAKEfake0000"),
        ("github_token", "ghp_FAKEfakeFAKEfake0000000000EXAMPLE11"),
        ("github_token", "gho_0000000000000000000000000000000000FAKE"),
        ("github_token", "ghs_FAKEEXAMPLEFAKEEXAMPLEFAKEEXAMPLE00"),
        (
            "github_token",
            "github_pat_11FAKE0000_example0000000000000000fake",
        ),
        (
            "slack_token",
            "xoxb-000000000000-0000000000000-FAKEfakeFAKEfake",
        ),
        ("slack_token", "xoxp-1111-2222-FAKE-example"),
        ("huggingface_token", "hf_FAKEfakeFAKEfakeFAKEfakeFAKEfake00"),
        (
            "jwt",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmYWtlLXVzZXIifQ.ZmFrZS1zaWduYXR1cmUtMDAw",
        ),
        ("jwt", "Bearer eyJhbGciOiJub25lIn0.eyJmYWtlIjp0cnVlfQ."),
        (
            "private_key",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIFAKEFAKEFAKE\n-----END RSA PRIVATE KEY-----",
        ),
        (
            "private_key",
            "-----BEGIN PRIVATE KEY-----\nFAKE\n-----END PRIVATE KEY-----",
        ),
        (
            "private_key",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1GQUtF\n",
        ),
        ("private_key", "-----BEGIN EC PRIVATE KEY-----"),
        ("url_credentials", "https://admin:FakePass123@example.com/"),
        (
            "url_credentials",
            "postgres://yaku:notreal@localhost:5432/db",
        ),
        ("email_password", "user@example.com:P@ssw0rd!"),
        ("email_password", "taro.yamada@example.jp hunter22"),
        (
            "email_password",
            "someone+test@mail.example.org | Sup3rS3cret",
        ),
        ("labelled_credential", "password: hunter2"),
        ("labelled_credential", "PW=letmein99"),
        ("labelled_credential", "パスワード：fakepass"),
        ("labelled_credential", "暗証番号: 0000"),
        ("card_number", "4111 1111 1111 1111"),
        ("card_number", "4111-1111-1111-1111"),
        ("card_number", "5500005555555559"),
        ("card_number", "378282246310005"),
        ("card_number", "６０１１１１１１１１１１１１１７"),
        ("card_number", "カード番号は4242 4242 4242 4242です"),
        ("hex_token", "0123456789abcdef0123456789abcdef"),
        (
            "hex_token",
            "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef00000000",
        ),
        (
            "hex_token",
            "FAKE token e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        ("random_token", "dGhpcyBpcyBhIGZha2UgdG9rZW4gZm9yIHRlc3Rz"),
        (
            "random_token",
            "Zm9vYmFyYmF6cXV4LWZha2UtZXhhbXBsZS10b2tlbg==",
        ),
        (
            "random_token",
            "QUtJQUZBS0UvZmFrZStleGFtcGxlX3Rva2VuLTEyMzQ1Njc4OTA",
        ),
        (
            "random_token",
            "https://example.com/r/FAKE0fake1FAKE2fake3FAKE4",
        ),
        ("mixed_token", "Xq7Lm2Pz9Wk4Rt8Vn3"),
        ("mixed_token", "FakeToken2024ExampleZZ"),
        ("password_like", "Tr0ub4dor&3"),
        ("password_like", "P@ssw0rd!"),
        ("password_like", "Correct#Horse7"),
    ];

    /// Secrets the script gate alone stops: short passwords look like words, so only the
    /// fact that they are ASCII keeps them in.
    const PLAIN_PASSWORDS: &[&str] =
        &["hunter2", "letmein", "qwerty123", "Summer2024!", "iloveyou"];

    #[test]
    fn secret_corpus_is_rejected_with_default_config() {
        let all: Vec<&str> = SHAPED_SECRETS
            .iter()
            .map(|&(_, s)| s)
            .chain(PLAIN_PASSWORDS.iter().copied())
            .collect();
        assert!(all.len() >= 50, "corpus has {}", all.len());
        for text in all {
            let got = gates().check(text, None);
            assert!(got.is_err(), "accepted {text:?}");
        }
    }

    #[test]
    fn secret_corpus_is_named_by_the_secret_gate() {
        let wrong: Vec<_> = SHAPED_SECRETS
            .iter()
            .map(|&(shape, text)| (text, shape, secret_only().check(text, None)))
            .filter(|&(_, shape, got)| got != Err(Rejection::SecretShape(shape)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn secrets_inside_japanese_text() {
        let g = gates();
        let cases: &[(&str, &str)] = &[
            ("APIキーはsk-proj-FAKE00000000000000000000です", "sk_key"),
            ("キー：AKIAIOSFODNN7EXAMPLEを使って", "aws_key"),
            (
                "トークン ghp_FAKEfakeFAKEfake0000000000EXAMPLE11 を貼って",
                "github_token",
            ),
            ("パスワード: Tr0ub4dor&3", "labelled_credential"),
            ("これを使ってXk9#mQ2$vL7@ね", "password_like"),
            ("カードは5500 0055 5555 5559だよ", "card_number"),
            ("ログイン taro@example.com:P@ssw0rd! です", "email_password"),
            ("ハッシュは0123456789abcdef0123456789abcdefだ", "hex_token"),
        ];
        for &(text, shape) in cases {
            assert_eq!(g.secret_shape(text), Some(shape), "{text:?}");
            assert!(gates().check(text, None).is_err(), "{text:?}");
        }
    }

    #[test]
    fn near_misses_are_not_secrets() {
        let g = gates();
        for text in [
            "task-management-system-for-everyone",
            "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww",
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
            "==========================================",
            "Lv.99",
            "Ver.1.02a",
            "HP:100/100",
            "090-1234-5678",
            "4111 1111 1111 1112", // Luhn-invalid
            "1234567890",          // too few digits
            "taro@example.jp まで連絡してね",
            "パスワードは？",
            "iPhone15Pro",
        ] {
            assert_eq!(g.secret_shape(text), None, "{text:?}");
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
        ]));
        assert!(!luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2
        ]));
        assert!(has_card_number("x 4111111111111111 y"));
        // A card number between other digit groups is still found.
        assert!(has_card_number("12 4111 1111 1111 1111 34"));
        assert!(!has_card_number("4111111111111111111111")); // 22 bare digits: no groups
    }

    // ---- gate 5: ignore -----------------------------------------------------------------

    #[test]
    fn ignore_gate() {
        let cfg = || GateConfig {
            ignore: vec![re("^セーブ"), re("ロード"), re(r"^\d+日目$")],
            ..GateConfig::default()
        };
        let cases: &[(&str, Result<(), Rejection>)] = &[
            ("セーブしますか？", Err(Rejection::Ignored(0))),
            ("データをロードします", Err(Rejection::Ignored(1))),
            ("セーブデータをロード", Err(Rejection::Ignored(0))), // first pattern wins
            ("  3日目  ", Err(Rejection::Ignored(2))),            // matched on trimmed text
            ("3日目の朝", Ok(())),
            ("「おはよう」", Ok(())),
        ];
        for (text, want) in cases {
            assert_eq!(gates_with(cfg()).check(text, None), *want, "{text:?}");
        }
    }

    // ---- gate 6: own output -------------------------------------------------------------

    #[test]
    fn own_output_gate() {
        let mut g = gates_with(GateConfig {
            require_script: false,
            ..GateConfig::default()
        });
        g.record_output("Good morning, Haruka.");
        g.record_output("  It's not like I was waiting for you!\n");
        g.record_output("   ");
        assert_eq!(
            g.check("Good morning, Haruka.", None),
            Err(Rejection::OwnOutput)
        );
        assert_eq!(
            g.check("\nGood morning, Haruka.  ", None),
            Err(Rejection::OwnOutput)
        );
        assert_eq!(
            g.check("It's not like I was\nwaiting for you!", None),
            Err(Rejection::OwnOutput)
        );
        assert_eq!(g.check("Good morning, Haruka!", None), Ok(()));
        assert_eq!(g.recent_outputs.len(), 2);

        // Japanese output (e.g. translating into Japanese) is recognized too.
        let mut g = gates();
        g.record_output("おはよう");
        assert_eq!(g.check("おはよう", None), Err(Rejection::OwnOutput));
    }

    #[test]
    fn own_output_remembers_the_last_fifty() {
        let mut g = gates();
        for i in 0..=OWN_OUTPUT_MEMORY {
            g.record_output(&format!("訳{i}"));
        }
        assert_eq!(g.recent_outputs.len(), OWN_OUTPUT_MEMORY);
        assert_eq!(g.check("訳0", None), Ok(()), "the oldest is forgotten");
        assert_eq!(g.check("訳1", None), Err(Rejection::OwnOutput));
        assert_eq!(
            g.check(&format!("訳{OWN_OUTPUT_MEMORY}"), None),
            Err(Rejection::OwnOutput)
        );

        // Recording one again refreshes it instead of duplicating it.
        let mut g = gates();
        g.record_output("訳A");
        for i in 0..OWN_OUTPUT_MEMORY - 1 {
            g.record_output(&format!("訳{i}"));
        }
        g.record_output("訳A");
        g.record_output("訳B");
        assert_eq!(g.check("訳A", None), Err(Rejection::OwnOutput));
    }

    // ---- gate 7: repeat -----------------------------------------------------------------

    #[test]
    fn a_line_forgotten_after_a_failure_is_no_repeat_but_another_line_stays_one() {
        let mut g = gates();
        assert_eq!(g.check("こんにちは", None), Ok(()));
        g.forget_accepted("さようなら");
        assert_eq!(g.check("こんにちは", None), Err(Rejection::Repeat));
        g.forget_accepted("こんにちは");
        assert_eq!(g.check("こんにちは", None), Ok(()));
    }

    #[test]
    fn repeat_gate() {
        let mut g = gates();
        assert_eq!(g.check("こんにちは", None), Ok(()));
        assert_eq!(g.check("こんにちは", None), Err(Rejection::Repeat));
        assert_eq!(g.check(" こんにちは\n", None), Err(Rejection::Repeat));
        // A rejected line does not become the last accepted one.
        assert_eq!(g.check("hello", None), Err(Rejection::WrongScript));
        assert_eq!(g.check("こんにちは", None), Err(Rejection::Repeat));
        assert_eq!(g.check("さようなら", None), Ok(()));
        assert_eq!(
            g.check("こんにちは", None),
            Ok(()),
            "only the previous line counts"
        );
    }

    #[test]
    fn gates_run_in_order() {
        let mut g = gates_with(GateConfig {
            max_chars: 60,
            ignore: vec![re("sk-")],
            ..GateConfig::default()
        });
        g.record_output("キーはsk-FAKE0000000000000000000000です");
        // Concealed beats everything.
        assert_eq!(
            g.check("x".repeat(100).as_str(), Some(true)),
            Err(Rejection::Concealed)
        );
        // Length beats script.
        assert_eq!(
            g.check("x".repeat(100).as_str(), None),
            Err(Rejection::TooLong)
        );
        // Script beats secret.
        assert_eq!(
            g.check("sk-FAKE0000000000000000000000", None),
            Err(Rejection::WrongScript)
        );
        // Secret beats ignore and own output.
        assert_eq!(
            g.check("キーはsk-FAKE0000000000000000000000です", None),
            Err(Rejection::SecretShape("sk_key"))
        );
        // Ignore beats own output.
        g.record_output("sk-とは何か");
        assert_eq!(g.check("sk-とは何か", None), Err(Rejection::Ignored(0)));
    }

    // ---- corpora and robustness ---------------------------------------------------------

    /// Lines shaped like visual-novel text: dialogue, name tags, ellipses, a few ASCII words,
    /// numbers, emoji. Written for this test.
    const VN_LINES: &[&str] = &[
        "「おはよう、春香。今日も早いね」",
        "【春香】「……べ、別に待ってたわけじゃないんだからね！」",
        "【春香】「遅いよ、もう！」",
        "【悠真】「ごめんごめん、寝坊した」",
        "……………………うん。",
        "「……え？」",
        "「ちょっと待って！！」",
        "「本当に？　嘘じゃない？」",
        "桜の花びらが、風に舞っていた。",
        "放課後の教室には、誰もいなかった。",
        "俺は深くため息をついた。",
        "「OK、任せて！」",
        "「このCD、貸してあげる」",
        "「PCの電源が入らないんだけど……」",
        "「テストは90点だったよ」",
        "時計の針は午後3時15分を指していた。",
        "「2年B組の田中です」",
        "「やったー！🎉」",
        "「えへへ😊ありがと」",
        "「な、なんで知ってるの！？」",
        "「うーん……どうしようかなあ」",
        "――その時、扉が開いた。",
        "「ふふっ、冗談だよ」",
        "【???】「……誰？」",
        "【先生】「はい、席に着いてー」",
        "「ねえねえ、聞いて聞いて！」",
        "「あははは、それ最高！」",
        "静かな夜だった。月が綺麗に見える。",
        "「お兄ちゃん、朝だよ～」",
        "『明日、屋上で待ってる』",
        "手紙にはそれだけが書かれていた。",
        "「Lv.99まで上げたのに……」",
        "「HPがあと少ししかない！」",
        "「SNSで話題になってたやつだよね」",
        "「YouTubeで見たことある！」",
        "「えっと……3DSどこに置いたっけ」",
        "「1,000円でいいよ」",
        "「電話番号？090-1234-5678だよ」",
        "「メールはtaro@example.jpまで」",
        "「No.1になってみせる！」",
        "「wwwww何それ」",
        "ｶﾞﾝﾊﾞﾚ!!",
        "「Ｔシャツ、似合ってるね」",
        "「iPhone15Proを買ったんだ」",
        "雨の音だけが、部屋に響いていた。",
        "「……っ！」",
        "「ささやくような声で言わないでよ」",
        "「はは、母さんには内緒な」",
        "【春香】「約束、だよ？」",
        "「今日は2024年12月25日、クリスマスだね」",
        "「VSモードで勝負だ！」",
        "「ポイントが12345678たまった！」",
        "「Ver.1.02にアップデートしてね」",
        "わたしは、ここにいる。",
        "「ゲームオーバー……もう一回！」",
        "ｷｬｰｯ!!",
        "「A.I.が書いた小説らしいよ」",
        "「パスワードは？」「秘密！」",
    ];

    #[test]
    fn vn_corpus_passes_every_gate() {
        assert!(VN_LINES.len() >= 50, "corpus has {}", VN_LINES.len());
        // Fresh gates per line...
        for line in VN_LINES {
            assert_eq!(gates().check(line, None), Ok(()), "{line:?}");
            assert_eq!(gates().check(line, Some(false)), Ok(()), "{line:?}");
        }
        // ...and one gates for the whole run: distinct lines never trip the repeat gate.
        let mut g = gates();
        for line in VN_LINES {
            assert_eq!(g.check(line, None), Ok(()), "{line:?}");
        }
    }

    #[test]
    fn odd_inputs_are_rejected_without_panic() {
        let cases: &[&str] = &[
            "\0",
            "\0\0\0\0",
            "\u{0301}",
            "\u{0301}\u{0308}\u{20DD}",
            "\u{3099}",
            "\u{202E}olleh\u{202C}",
            "مرحبا",
            "שלום",
            "😀",
            "👨‍👩‍👧‍👦🎉🔥",
            " ",
            "\t\n\r \u{3000}\u{00A0}",
            "\u{FEFF}",
            "\u{FFFD}\u{FFFD}",
            "\u{10FFFF}",
        ];
        for text in cases {
            assert!(gates().check(text, None).is_err(), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn check_never_panics(text in any::<String>(), concealed in any::<Option<bool>>()) {
            let mut g = gates();
            let _ = g.check(&text, concealed);
            g.record_output(&text);
            let _ = g.check(&text, concealed);
        }

        #[test]
        fn check_never_panics_on_textlike_input(
            text in "[\\p{Hiragana}\\p{Katakana}\\p{Han}a-zA-Z0-9 !-/:-@「」…ー\n\0-]{0,600}",
        ) {
            let _ = gates().check(&text, None);
            let _ = secret_only().check(&text, None);
        }
    }
}
