//! Textractor artifact cleaner: undoes the per-character stutter ("ここんんににちちはは") and the
//! whole-line repetition ("ABCABCABC") that text hookers add, without touching the doubled
//! characters ordinary Japanese is full of ("ささやく", "……", "ーー", "！！", "はいはい").
//!
//! Rules, all on chars (Unicode scalar values), after trimming surrounding whitespace:
//!
//! * **Character stutter.** Let `k` be the gcd of the line's run lengths (a run is a maximal
//!   block of one repeated char). The line is collapsed (every run divided by `k`) only when
//!   `k >= 2` and the line has enough runs of *content letters* (letters other than the
//!   sound-extension and iteration marks ー, っ, 々, ゝ…): at least 3 when `k == 2`, at least 2
//!   when `k >= 3`. Why: a stuttered line stutters *every* char, so one single char anywhere
//!   (a lone 。 or 「) proves it is not stuttered; and the only real lines made entirely of
//!   pairs are short exclamations built from doubled marks ("ああ……", "ええーーっっ！！"),
//!   which have at most 2 content-letter runs. A line that is a single run ("ああ", "……",
//!   "ーーーー") is never touched.
//! * **Line repetition.** If the line is one unit repeated `n >= 2` times (or is `n >= 2`
//!   identical non-empty lines), keep one copy, but only when the unit has at least
//!   [`MIN_UNIT_CHARS`] chars and is not a bare word (letters only) of at most
//!   [`MAX_REDUPLICATED_WORD`] chars repeated exactly twice. Why: Japanese reduplicates short
//!   words ("ねえねえ", "もしもし", "はいはいはい", "どうもどうも", "わかったわかった") and those
//!   must survive; a hooked line repeated is a sentence, usually longer or carrying
//!   punctuation/brackets ("はい。はい。", "「はい」「はい」"), or repeated more than twice.
//!   Consequence: "ABCABC" and "どうもどうも" stay; "ABCABCABC", "こんにちはこんにちは" collapse.
//! * The two rules are applied repeatedly until nothing changes, so their order does not
//!   matter (stutter-then-repeat and repeat-then-stutter both clean) and the result is a
//!   fixed point: `collapse_repeats(collapse_repeats(x)) == collapse_repeats(x)`.

/// Shortest unit whose whole-line repetition is collapsed: 1–2 char units repeated are
/// almost always real reduplication ("はいはい", "ねえねえ", "ふふふ").
pub const MIN_UNIT_CHARS: usize = 3;

/// Longest bare word (letters only) whose doubling is kept as real reduplication
/// ("どうもどうも", "わかったわかった"); longer or punctuated units doubled are artifacts.
pub const MAX_REDUPLICATED_WORD: usize = 4;

/// Removes text-hooker repetition artifacts from `text` and trims surrounding whitespace.
///
/// See the module docs for the exact rules; in short, "ここんんににちちはは" and
/// "こんにちはこんにちはこんにちは" become "こんにちは", while "ささやく", "……", "ねえねえ"
/// and "はい、はい" are left as they are. Never panics; idempotent; never lengthens.
pub fn collapse_repeats(text: &str) -> String {
    let all: Vec<char> = text.chars().collect();
    let mut current = trimmed(&all).to_vec();
    // Each step strictly shortens the line, so this terminates; looping to a fixed point is
    // what makes the function idempotent and order-independent.
    while let Some(next) = collapse_once(&current) {
        current = trimmed(&next).to_vec();
    }
    current.into_iter().collect()
}

/// One cleaning step, or `None` when the line is already clean.
fn collapse_once(chars: &[char]) -> Option<Vec<char>> {
    collapse_stutter(chars)
        .or_else(|| collapse_periodic(chars))
        .or_else(|| collapse_repeated_lines(chars))
}

/// `chars` without leading and trailing whitespace.
fn trimmed(chars: &[char]) -> &[char] {
    let start = chars
        .iter()
        .position(|c| !c.is_whitespace())
        .unwrap_or(chars.len());
    let end = chars
        .iter()
        .rposition(|c| !c.is_whitespace())
        .map_or(start, |i| i + 1);
    chars.get(start..end).unwrap_or(&[])
}

/// Maximal runs of one repeated char, as (char, run length).
fn runs(chars: &[char]) -> Vec<(char, usize)> {
    let mut out: Vec<(char, usize)> = Vec::new();
    for &c in chars {
        match out.last_mut() {
            Some((last, n)) if *last == c => *n += 1,
            _ => out.push((c, 1)),
        }
    }
    out
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A letter that carries content, as opposed to marks that real text legitimately doubles
/// for emphasis ("ええーーっっ") and that therefore prove nothing about stutter.
fn is_content_letter(c: char) -> bool {
    c.is_alphabetic()
        && !matches!(
            c,
            'ー' | 'ｰ'
                | 'っ'
                | 'ッ'
                | 'ｯ'
                | '々'
                | '〻'
                | 'ゝ'
                | 'ゞ'
                | 'ヽ'
                | 'ヾ'
                | '〜'
                | '～'
        )
}

/// Collapses per-character stutter (every run a multiple of the same k >= 2).
fn collapse_stutter(chars: &[char]) -> Option<Vec<char>> {
    let runs = runs(chars);
    if runs.len() < 2 {
        return None;
    }
    // The gcd is the largest k that divides every run: stutter by k of a line that already
    // had "……" gives runs of k and 2k, and dividing by the gcd restores both.
    let k = runs.iter().fold(0, |g, &(_, n)| gcd(g, n));
    let content_runs = runs.iter().filter(|(c, _)| is_content_letter(*c)).count();
    let convincing = match k {
        0 | 1 => false,
        2 => content_runs >= 3,
        _ => content_runs >= 2,
    };
    if !convincing {
        return None;
    }
    Some(
        runs.iter()
            .flat_map(|&(c, n)| std::iter::repeat_n(c, n / k))
            .collect(),
    )
}

/// Whether `copies` back-to-back copies of `unit` are a hooker artifact rather than real
/// reduplication (see the module docs for why these thresholds).
fn repetition_is_artifact(unit: &[char], copies: usize) -> bool {
    if copies < 2 || unit.len() < MIN_UNIT_CHARS {
        return false;
    }
    let bare_word = unit.iter().all(|c| c.is_alphabetic());
    !(copies == 2 && bare_word && unit.len() <= MAX_REDUPLICATED_WORD)
}

/// Length of the shortest prefix that, repeated, produces `chars` as a prefix of itself
/// (the KMP failure function); equals `chars.len()` for an aperiodic line.
fn smallest_period(chars: &[char]) -> usize {
    let n = chars.len();
    let mut fail = vec![0usize; n];
    let mut k = 0usize;
    for i in 1..n {
        while k > 0 && chars.get(i) != chars.get(k) {
            k = fail.get(k - 1).copied().unwrap_or(0);
        }
        if chars.get(i) == chars.get(k) {
            k += 1;
        }
        if let Some(slot) = fail.get_mut(i) {
            *slot = k;
        }
    }
    n - fail.last().copied().unwrap_or(0)
}

/// Collapses a line that is one unit repeated back to back ("ABCABCABC").
fn collapse_periodic(chars: &[char]) -> Option<Vec<char>> {
    let n = chars.len();
    let p = smallest_period(chars);
    // Only the primitive (smallest) unit counts: "ねえねえねえねえ" is "ねえ"×4, which is
    // kept, not "ねえねえ"×2.
    if p == 0 || p == n || !n.is_multiple_of(p) {
        return None;
    }
    let unit = chars.get(..p)?;
    repetition_is_artifact(unit, n / p).then(|| unit.to_vec())
}

/// Collapses a text made of the same line several times ("こんにちは\nこんにちは").
fn collapse_repeated_lines(chars: &[char]) -> Option<Vec<char>> {
    let lines: Vec<&[char]> = chars
        .split(|&c| c == '\n')
        .map(trimmed)
        .filter(|line| !line.is_empty())
        .collect();
    let (&first, rest) = lines.split_first()?;
    if rest.is_empty() || !rest.iter().all(|&line| line == first) {
        return None;
    }
    repetition_is_artifact(first, lines.len()).then(|| first.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = &[
            // Per-character stutter, k = 2, 3, 4.
            ("ここんんににちちはは", "こんにちは"),
            ("こここんんんにににちちちははは", "こんにちは"),
            ("ここここんんんんににににちちちちはははは", "こんにちは"),
            ("ここここんんんん", "こん"),
            ("「「おおははよようう」」", "「おはよう」"),
            // Stutter of a line that already had doubled chars: runs of k and 2k.
            ("ささささややくく", "ささやく"),
            ("「「…………そそううねね」」", "「……そうね」"),
            ("ああああ、、ええっっとと", "ああ、えっと"),
            ("春春香香「「ままたたねね！！」」", "春香「またね！」"),
            ("HHeelllloo  wwoorrlldd", "Hello world"),
            // Whole-line repetition.
            ("ABCABCABC", "ABC"),
            ("こんにちはこんにちは", "こんにちは"),
            ("こんにちはこんにちはこんにちは", "こんにちは"),
            ("「はい」「はい」", "「はい」"),
            ("はい。はい。", "はい。"),
            ("ありがとうありがとう", "ありがとう"),
            ("こんにちは\nこんにちは", "こんにちは"),
            ("こんにちは\r\nこんにちは\r\n\r\nこんにちは", "こんにちは"),
            ("どうもどうもどうも", "どうも"),
            // Both, in either order (they are the same string; the loop handles it).
            ("ここんんににちちははここんんににちちはは", "こんにちは"),
            ("ABCABCAABBCCAABBCC", "ABCABCAABBCCAABBCC"),
            ("AABBCCAABBCCAABBCC", "ABC"),
            // Surrounding whitespace.
            ("  こんにちは \n", "こんにちは"),
            ("\u{3000}ここんんににちちはは\u{3000}", "こんにちは"),
            ("", ""),
            ("   \n\t ", ""),
            // Must stay unchanged: real doubled chars and reduplication.
            ("ささやく", "ささやく"),
            ("はは", "はは"),
            ("ああ", "ああ"),
            ("ああああ", "ああああ"),
            ("……", "……"),
            ("ーー", "ーー"),
            ("!!", "!!"),
            ("！！", "！！"),
            ("ああ……", "ああ……"),
            ("……！！", "……！！"),
            ("ええーーっっ！！", "ええーーっっ！！"),
            ("ははいい", "ははいい"),
            ("はい、はい", "はい、はい"),
            ("はいはい", "はいはい"),
            ("はいはいはい", "はいはいはい"),
            ("ねえねえ", "ねえねえ"),
            ("ねえねえねえねえ", "ねえねえねえねえ"),
            ("もしもし", "もしもし"),
            ("どうもどうも", "どうもどうも"),
            ("わかったわかった", "わかったわかった"),
            ("ABCABC", "ABCABC"),
            ("はい\nはい", "はい\nはい"),
            ("「ねえねえ、聞いて」", "「ねえねえ、聞いて」"),
            ("……っ", "……っ"),
            ("1122", "1122"),
            ("ほほう、なるほどね", "ほほう、なるほどね"),
            ("【春香】「……うん」", "【春香】「……うん」"),
        ];
        for &(input, want) in cases {
            assert_eq!(collapse_repeats(input), want, "input {input:?}");
        }
    }

    #[test]
    fn smallest_period_cases() {
        let p = |s: &str| smallest_period(&s.chars().collect::<Vec<_>>());
        assert_eq!(p(""), 0);
        assert_eq!(p("a"), 1);
        assert_eq!(p("abab"), 2);
        assert_eq!(p("ababa"), 2);
        assert_eq!(p("abc"), 3);
        assert_eq!(p("ねえねえねえ"), 2);
    }

    /// Letters that never come out of `collapse_repeats` differently when stuttered: content
    /// letters of several scripts (no ー/っ, which do not count as evidence).
    fn letter() -> impl Strategy<Value = char> {
        prop::sample::select(
            "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん\
             アイウエオカキクケコサシスセソタチツテトナニヌネノ春香夏秋冬日本語学校先生桜\
             abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                .chars()
                .collect::<Vec<_>>(),
        )
    }

    /// A string of >= `min` letters, no two equal neighbours, whose first char occurs nowhere
    /// else (which makes it aperiodic, so line repetition cannot apply to it).
    fn aperiodic_word(min: usize) -> impl Strategy<Value = String> {
        (
            letter(),
            prop::collection::vec(letter(), min.saturating_sub(1)..40),
        )
            .prop_map(|(first, rest)| {
                let mut out = vec![first];
                for c in rest {
                    if c != first && out.last() != Some(&c) {
                        out.push(c);
                    }
                }
                out.into_iter().collect::<String>()
            })
    }

    fn stutter(s: &str, k: usize) -> String {
        s.chars().flat_map(|c| std::iter::repeat_n(c, k)).collect()
    }

    proptest! {
        #[test]
        fn never_panics_idempotent_and_shrinks(s in any::<String>()) {
            let once = collapse_repeats(&s);
            prop_assert!(once.chars().count() <= s.chars().count());
            prop_assert!(once.len() <= s.len());
            prop_assert_eq!(collapse_repeats(&once), once);
        }

        #[test]
        fn idempotent_on_repetitive_text(s in "[ああいう。…ーっ「」ab \n]{0,40}", k in 1usize..4, n in 1usize..4) {
            let s = stutter(&s, k).repeat(n);
            let once = collapse_repeats(&s);
            prop_assert!(once.chars().count() <= s.chars().count());
            prop_assert_eq!(collapse_repeats(&once), once);
        }

        #[test]
        fn stutter_collapses_back(word in aperiodic_word(3), k in 2usize..5) {
            prop_assume!(word.chars().count() >= 3);
            prop_assert_eq!(collapse_repeats(&stutter(&word, k)), word);
        }

        #[test]
        fn line_repetition_collapses_back(word in aperiodic_word(5), n in 2usize..5, k in 1usize..4) {
            prop_assume!(word.chars().count() >= 5);
            prop_assert_eq!(collapse_repeats(&word.repeat(n)), word.clone());
            prop_assert_eq!(collapse_repeats(&stutter(&word.repeat(n), k)), word);
        }
    }
}
