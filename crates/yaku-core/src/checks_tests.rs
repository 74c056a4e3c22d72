use super::*;

fn checks() -> ReplyChecks {
    ReplyChecks::new(&request("Japanese", "English"), true)
}

fn request(source: &str, target: &str) -> TranslationRequest {
    TranslationRequest {
        text: "おはよう、先輩。".into(),
        source_language: source.into(),
        target_language: target.into(),
        options: 3,
        ..Default::default()
    }
}

fn json(options: &[&str]) -> String {
    serde_json::json!({ "options": options }).to_string()
}

/// Replies models really send when they fail, in the JSON contract and as prose or a numbered
/// list, and the one reason each is refused with.
fn bad_replies() -> Vec<(String, &'static str)> {
    let ten = ["I'm going home"; 10].join(", ");
    vec![
        (json(&["おはよう、先輩。"]), "untranslated"),
        (
            json(&[
                "おはよう、先輩。",
                "おはようございます、先輩。",
                "先輩、おはよう！",
            ]),
            "untranslated",
        ),
        ("1. おはよう、先輩。\n2. おはよう！".into(), "untranslated"),
        ("おはよう、先輩。".into(), "untranslated"),
        (
            json(&["Good morning. 今日は本当にいい天気ですね、先輩。"]),
            "untranslated",
        ),
        (json(&["the the the"]), "repetitive"),
        ("the the the".into(), "repetitive"),
        (json(&["I I I I I I I I I I I I I I I I"]), "repetitive"),
        (json(&["I I I I…"]), "repetitive"),
        (json(&[ten.as_str()]), "repetitive"),
        (
            "Good morning good morning good morning good morning".into(),
            "repetitive",
        ),
        (
            json(&["no, no, no, no, no, no, no, no, no, no, no"]),
            "repetitive",
        ),
        (r#"{"line": "おはよう、先輩。"}"#.into(), "echo"),
        (
            r#"{"context": ["1. 春香「おはよう」"], "line": "先輩、遅いよ"}"#.into(),
            "echo",
        ),
        (
            "```json\n{\"line\" : \"おはよう、先輩。\"}\n```".into(),
            "echo",
        ),
        (
            json(&["Translate the \"line\" of this object:\n{\"line\":\"おはよう、先輩。\"}"]),
            "echo",
        ),
        ("I'm sorry, but I can't help with that.".into(), "refusal"),
        (json(&["I cannot translate this content."]), "refusal"),
        (
            json(&["I'm sorry, I can't translate the text you provided."]),
            "refusal",
        ),
        (
            json(&["As an AI language model, I am not able to do that."]),
            "refusal",
        ),
        (
            json(&["I'm sorry, but I can't assist with this request."]),
            "refusal",
        ),
        (
            json(&["I\u{2019}m unable to translate that line."]),
            "refusal",
        ),
        (
            json(&["Sorry, I won't provide a translation of this."]),
            "refusal",
        ),
    ]
}

#[test]
fn every_bad_reply_is_refused_with_its_reason() {
    let c = checks();
    for (reply, reason) in bad_replies() {
        match c.options(&reply, 3) {
            Ok(checked) => panic!("{reply:?} was shown as {:?}", checked.options),
            Err(e) => assert_eq!(e.to_string(), reason, "reply: {reply:?}"),
        }
    }
}

/// Good translations that look a little like the bad ones: Japanese names and brackets,
/// silence, interjections, stutters, "I'm sorry" in dialogue.
const GOOD_OPTIONS: &[&str] = &[
    "Good morning, Haruka-senpai.",
    "「春香」 is waiting for you at the gate.",
    "Thanks, 春香さん.",
    "That's 先輩's bento.",
    "……",
    "...",
    "「……」",
    "\"Wait!\"",
    "Yes.",
    "Huh?!",
    "Onii-chan, you're late!",
    "Is that so, Kyou-chan?",
    "Ha ha ha!",
    "Ha ha ha ha ha!",
    "No, no, no, no!",
    "No no no!",
    "Wait wait wait!",
    "Come on, come on, come on!",
    "I-I-I don't know…",
    "I… I… I love you.",
    "The, uh… the thing is…",
    "I'm sorry, but I can't go with you.",
    "I can't help it.",
    "I can't help falling for you.",
    "Mmm… hmm.",
    "Sorry, sorry! I'm late!",
    "The line was long, so I waited.",
    "Fine — I'll translate the letter for you myself.",
    "I was unable to translate my feelings into words.",
    "I won't comply with your orders!",
    "I can't help you with your homework.",
    "I must decline your invitation.",
    "As an assistant to the principal, I can't allow it.",
    "I can't fulfill that promise.",
    "I cannot grant your request, my lord.",
    "I can't translate the letter; it's in French.",
];

#[test]
fn no_good_reply_is_dropped_in_either_format() {
    let c = checks();
    for option in GOOD_OPTIONS {
        assert_eq!(c.problem(option), None, "option: {option:?}");
        let got = c.options(&json(&[option]), 3).map(|c| c.options);
        assert_eq!(got, Ok(vec![option.to_string()]), "json reply: {option:?}");
        // As prose ("\"Wait!\"" is a JSON string, so its quotes go): still one option.
        let prose = c.options(option, 3).map(|c| c.options.len());
        assert_eq!(prose, Ok(1), "prose reply: {option:?}");
    }
    let all = c.options(&json(&GOOD_OPTIONS[..5]), 5).unwrap();
    assert_eq!(all.options.len(), 5);
    assert!(all.dropped.is_empty());
}

#[test]
fn bad_options_are_dropped_and_the_good_ones_kept_in_order() {
    let c = checks();
    let reply = json(&[
        "おはよう、先輩。",
        "Good morning, senpai.",
        "the the the",
        "Morning, senpai!",
    ]);
    let checked = c.options(&reply, 3).unwrap();
    assert_eq!(
        checked.options,
        ["Good morning, senpai.", "Morning, senpai!"]
    );
    assert_eq!(
        checked.dropped,
        [Problem::Untranslated, Problem::Repetitive]
    );
}

#[test]
fn three_same_options_show_as_one() {
    let checked = checks()
        .options(
            &json(&["Good morning.", "Good morning!", "good  morning."]),
            3,
        )
        .unwrap();
    assert_eq!(checked.options, ["Good morning."]);
    assert_eq!(checked.dropped, [Problem::Duplicate, Problem::Duplicate]);
}

#[test]
fn options_beyond_max_are_counted_only_after_the_checks() {
    let reply = json(&["おはよう。", "Morning.", "Hi.", "Hello."]);
    assert_eq!(
        checks().options(&reply, 2).unwrap().options,
        ["Morning.", "Hi."]
    );
}

#[test]
fn a_reply_with_mixed_reasons_names_each_once_best_first() {
    let reply = json(&["I cannot translate this.", "おはよう。", "おはよう！"]);
    assert_eq!(
        checks().options(&reply, 3).unwrap_err(),
        ReplyRejected::Content(vec![Problem::Refusal, Problem::Untranslated])
    );
}

#[test]
fn contract_failures_are_empty_or_malformed_and_always_checked() {
    for content in [true, false] {
        let c = ReplyChecks::new(&request("Japanese", "English"), content);
        for (reply, reason) in [
            ("", "empty"),
            ("  \n ", "empty"),
            (r#"{"options": ["\u0000", " "]}"#, "empty"),
            ("}}}{{{ not json", "malformed"),
            (r#"{"options": ["Good morn"#, "malformed"),
            (r#"{"note": 3}"#, "malformed"),
        ] {
            let e = c.options(reply, 3).unwrap_err();
            assert!(
                e.to_string().starts_with(reason),
                "{reply:?} (content checks {content}): {e}"
            );
        }
    }
}

#[test]
fn control_characters_are_stripped_before_the_options_are_shown() {
    let checked = checks()
        .options(r#"{"options": ["Good\u0000 morning,\nsenpai.\u0007"]}"#, 3)
        .unwrap();
    assert_eq!(checked.options, ["Good morning, senpai."]);
}

#[test]
fn turned_off_the_content_checks_let_any_well_formed_reply_through() {
    let off = ReplyChecks::new(&request("Japanese", "English"), false);
    for (reply, _) in bad_replies() {
        if reply.contains("\"line\"") {
            continue; // an echoed request has no options to show
        }
        assert!(off.options(&reply, 3).is_ok(), "reply: {reply:?}");
    }
    assert_eq!(
        off.options(&json(&["A", "B", "C", "D"]), 2)
            .unwrap()
            .options,
        ["A", "B"]
    );
}

#[test]
fn into_a_cjk_target_the_source_script_is_not_untranslated() {
    let zh = ReplyChecks::new(&request("Japanese", "Chinese"), true);
    assert_eq!(zh.problem("早上好，前辈。"), None);
    // Refusals are recognized in English only; elsewhere they are not guessed at.
    let de = ReplyChecks::new(&request("Japanese", "German"), true);
    assert_eq!(de.problem("I cannot translate this."), None);
    assert_eq!(de.problem("おはよう、先輩。"), Some(Problem::Untranslated));
    // An unknown source language has no script to look for.
    let other = ReplyChecks::new(&request("Klingon", "English"), true);
    assert_eq!(other.problem("おはよう、先輩。"), None);
}

proptest::proptest! {
    #[test]
    fn never_panics_and_shown_options_pass_every_check(s in "\\PC*", max in 0usize..6) {
        let c = checks();
        if let Ok(checked) = c.options(&s, max) {
            proptest::prop_assert!(!checked.options.is_empty() && checked.options.len() <= max.max(1));
            for o in &checked.options {
                proptest::prop_assert_eq!(c.problem(o), None);
                proptest::prop_assert!(!o.chars().any(char::is_control));
            }
        }
    }
}
