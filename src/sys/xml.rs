//! Text into XML: the one escaper for the documents yaku writes (launchd plists, Windows
//! toasts).

/// `text` with the five XML special characters escaped; everything else is kept as it is (a
/// launchd plist must give back any path, control characters included).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn the_five_special_characters_are_escaped_and_nothing_else_changes() {
        let cases = [
            ("plain 日本語", "plain 日本語"),
            ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
            ("\"q\" 'a'", "&quot;q&quot; &apos;a&apos;"),
            ("tab\tline\nret\r", "tab\tline\nret\r"),
            ("bell\u{7}esc\u{1b}", "bell\u{7}esc\u{1b}"),
        ];
        for (input, want) in cases {
            assert_eq!(escape(input), want, "{input:?}");
        }
    }
}
