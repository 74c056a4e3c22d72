//! What a desktop notification says, as pure functions: the adapter only shows it.

use super::chain::{ChainFailure, Translation};

/// A notification ready to show: summary and body, escaped for the notification markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub summary: String,
    pub body: String,
}

/// Escapes the characters the freedesktop notification markup treats as markup.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// The notification for a translated line. `speaker` is the name to show before the best
/// option (`Haruka: Hey, are you listening?`; see `speaker::shown_name`). `first_provider` is
/// the chain's first provider: an answer from another one says "via NAME".
pub fn translation(
    original: &str,
    speaker: Option<&str>,
    t: &Translation,
    show_original: bool,
    first_provider: &str,
) -> Notice {
    let best = t.options.first().map(String::as_str).unwrap_or_default();
    let summary = match speaker {
        Some(name) => escape(&format!("{name}: {best}")),
        None => escape(best),
    };
    let mut body: Vec<String> = t
        .options
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, o)| format!("{}. {}", i + 1, escape(o)))
        .collect();
    if show_original {
        body.push(escape(original));
    }
    if t.provider != first_provider {
        body.push(format!("via {}", escape(&t.provider)));
    }
    Notice {
        summary,
        body: body.join("\n"),
    }
}

/// The notification for a line no provider could translate.
pub fn outage(f: &ChainFailure) -> Notice {
    let parts: Vec<String> = f.skipped.iter().map(|s| escape(&s.line())).collect();
    Notice {
        summary: "yaku could not translate".into(),
        body: format!("{} — run `yaku check`", parts.join(" · ")),
    }
}

/// One outage notification per outage: shown for the first failed line, then again only after a
/// line has been translated in between.
#[derive(Debug, Default)]
pub struct OutageNotices {
    in_outage: bool,
}

impl OutageNotices {
    /// A line failed: true when this failure should be shown.
    pub fn failed(&mut self) -> bool {
        !std::mem::replace(&mut self.in_outage, true)
    }

    /// A line was translated: the outage, if any, is over.
    pub fn succeeded(&mut self) {
        self.in_outage = false;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::chain::{SkipReason, Skipped};

    fn t(provider: &str, options: &[&str]) -> Translation {
        Translation {
            options: options.iter().map(|s| s.to_string()).collect(),
            provider: provider.into(),
            model: "m".into(),
            skipped: vec![],
            latency: Duration::from_millis(5),
            attempts: vec![],
            speaker: None,
        }
    }

    #[test]
    fn summary_is_the_best_option_and_body_the_rest_then_the_original() {
        let n = translation(
            "先輩<3",
            None,
            &t("gemini", &["Senpai <3 & me", "B", "C"]),
            true,
            "gemini",
        );
        assert_eq!(n.summary, "Senpai &lt;3 &amp; me");
        assert_eq!(n.body, "2. B\n3. C\n先輩&lt;3");
        let n = translation("先輩", None, &t("groq", &["A"]), false, "gemini");
        assert_eq!(n.body, "via groq");
    }

    #[test]
    fn a_speaker_is_named_before_the_best_option_only() {
        let n = translation(
            "【春香】「ねえ、聞いてる？」",
            Some("Haruka<"),
            &t("gemini", &["Hey, are you listening?", "Hey, listening?"]),
            true,
            "gemini",
        );
        assert_eq!(n.summary, "Haruka&lt;: Hey, are you listening?");
        assert_eq!(n.body, "2. Hey, listening?\n【春香】「ねえ、聞いてる？」");
    }

    #[test]
    fn outage_lists_each_provider_and_what_to_do() {
        let s = |p: &str, reason, secs: Option<u64>| Skipped {
            provider: p.into(),
            reason,
            retry_after: secs.map(Duration::from_secs),
            daily: false,
            detail: String::new(),
            advice: String::new(),
        };
        let f = ChainFailure {
            skipped: vec![
                s("gemini", SkipReason::RateLimited, Some(37)),
                s("groq", SkipReason::Unauthorized, None),
            ],
            latency: Duration::ZERO,
            attempts: vec![],
        };
        assert_eq!(
            outage(&f).body,
            "gemini: rate limited for 37 s · groq: key rejected — run `yaku check`"
        );
    }

    #[test]
    fn one_outage_notice_per_outage() {
        let mut g = OutageNotices::default();
        assert!(g.failed());
        assert!(!g.failed());
        assert!(!g.failed());
        g.succeeded();
        assert!(g.failed());
    }
}
