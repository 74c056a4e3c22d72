//! Bad input everywhere: what the clipboard can hold (10 MB, NUL bytes, lone combining marks,
//! right-to-left text, emoji, only whitespace, a text that changes every 10 ms for a minute),
//! what a model can reply (property tests over reply shapes, the repeat cleaner and the gates;
//! the same properties are fuzz targets in `fuzz/`), what a config file can say (every key of
//! the documented example with a wrong type, out of range or misspelled; a directory, an
//! unreadable file, bytes that are not UTF-8, an empty file), and what can happen to the
//! history file while the pipeline runs (locked, deleted, replaced by a directory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "hardening/mod.rs"]
mod hardening;

#[allow(unused_imports)]
#[path = "desktop/mod.rs"]
mod desktop;

#[path = "hardening/desktop_ext.rs"]
mod desktop_ext;

/// The fuzz targets' properties (fuzz/src/lib.rs), run here on their seed corpora.
#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz_properties;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use hardening::bin::{self, Home};
use hardening::mem;
use hardening::rig::{self, Rig, ScriptProvider};
use yaku::adapters::store::SqliteStore;
use yaku::core::breaker::BreakerConfig;
use yaku::core::chain::ChainConfig;
use yaku::core::clean::collapse_repeats;
use yaku::core::clock::{Clock, ManualClock, TokioClock};
use yaku::core::gates::{GateConfig, Gates, Rejection};
use yaku::core::intake::{ClipEvent, Intake, intake};
use yaku::core::reply::parse_options;
use yaku::core::store::{Opener, STORE_RETRY, Store, StoreHandle};

/// Tests that allocate a lot, or measure resident memory, take this lock so that they do not
/// disturb each other's readings.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

const TEN_MB: usize = 10 * 1024 * 1024;

/// About `bytes` of Japanese text with no repetition the cleaner could collapse.
fn aperiodic_japanese(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 64);
    let mut i = 0u64;
    while s.len() < bytes {
        s.push_str(&i.to_string());
        s.push('あ');
        i += 1;
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The clipboard
// ---------------------------------------------------------------------------------------------

/// What the intake must make of one clipboard text.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    Accepted,
    Rejected(&'static str),
}

fn clipboard_cases() -> Vec<(&'static str, ClipEvent, Want)> {
    let text = |t: &str| ClipEvent::Text {
        text: t.to_string(),
        concealed: Some(false),
    };
    use Want::*;
    vec![
        (
            "NUL bytes in a Japanese line",
            text("日本語\0のテキスト"),
            Rejected("wrong_script"),
        ),
        ("only NUL bytes", text("\0\0\0"), Rejected("wrong_script")),
        (
            "a bell control character",
            text("こんにちは\u{7}"),
            Rejected("wrong_script"),
        ),
        (
            "a lone combining voiced mark",
            text("\u{3099}"),
            Rejected("wrong_script"),
        ),
        (
            "a lone combining acute accent",
            text("\u{0301}"),
            Rejected("wrong_script"),
        ),
        (
            "combining marks on kana",
            text("か\u{3099}き\u{3099}く"),
            Accepted,
        ),
        (
            "kana under fifty combining marks",
            text(&format!("あ{}い", "\u{0301}".repeat(50))),
            Accepted,
        ),
        (
            "right-to-left Arabic",
            text("مرحبا بالعالم"),
            Rejected("wrong_script"),
        ),
        (
            "right-to-left Hebrew",
            text("שלום עולם"),
            Rejected("wrong_script"),
        ),
        (
            "Hebrew beside more katakana",
            text("シャロームです שלום"),
            Accepted,
        ),
        (
            "a right-to-left override before Japanese",
            text("\u{202E}こんにちは"),
            Accepted,
        ),
        ("emoji only", text("😀😂🎉"), Rejected("wrong_script")),
        (
            "a zero-width-joiner emoji family",
            text("👨\u{200D}👩\u{200D}👧"),
            Rejected("wrong_script"),
        ),
        ("emoji after Japanese", text("おはよう😀"), Accepted),
        (
            "only spaces, tabs and newlines",
            text("   \n\t \r\n"),
            Rejected("too_short"),
        ),
        (
            "only ideographic spaces",
            text("\u{3000}\u{3000}"),
            Rejected("too_short"),
        ),
        (
            "only zero-width spaces",
            text("\u{200B}\u{200B}"),
            Rejected("wrong_script"),
        ),
        (
            "a byte-order mark before Japanese",
            text("\u{FEFF}こんにちは"),
            Accepted,
        ),
        (
            "replacement characters (invalid UTF-8 read lossily)",
            text("\u{FFFD}\u{FFFD}"),
            Rejected("wrong_script"),
        ),
        (
            "a private-use character beside kana",
            text("\u{E000}あいう"),
            Accepted,
        ),
        (
            "a tab-separated name and line",
            text("春香\t「待って」"),
            Accepted,
        ),
        (
            "two dialogue lines with CRLF",
            text("「おはよう」\r\n「こんにちは」"),
            Accepted,
        ),
        (
            "exactly 500 characters",
            text(&"あい".repeat(250)),
            Accepted,
        ),
        (
            "501 aperiodic characters",
            text(&format!("{}う", "あい".repeat(250))),
            Rejected("too_long"),
        ),
        (
            "10 MB of aperiodic text",
            text(&aperiodic_japanese(TEN_MB)),
            Rejected("too_long"),
        ),
        (
            "10 MB the adapter did not read",
            ClipEvent::Oversized { bytes: TEN_MB },
            Rejected("too_long"),
        ),
        (
            "an owner that would not list its targets",
            ClipEvent::Undecidable,
            Rejected("concealed"),
        ),
        (
            "a concealed Japanese line",
            ClipEvent::Text {
                text: "秘密の台詞です".into(),
                concealed: Some(true),
            },
            Rejected("concealed"),
        ),
    ]
}

#[test]
fn bad_clipboard_texts_are_rejected_by_the_right_gate_and_odd_but_harmless_ones_pass() {
    let _heavy = heavy();
    let mut wrong = Vec::new();
    for (name, event, want) in clipboard_cases() {
        let mut gates = rig::default_gates();
        let started = Instant::now();
        let got = match intake(event, &mut gates, true) {
            Intake::Accepted(_) => Want::Accepted,
            Intake::Rejected { rejection, .. } => Want::Rejected(rejection.gate_name()),
        };
        let took = started.elapsed();
        if got != want {
            wrong.push(format!("{name}: got {got:?}, expected {want:?}"));
        }
        // A 10 MB text costs one pass of the cleaner at most (debug build, loaded machine).
        if took > Duration::from_secs(10) {
            wrong.push(format!("{name}: took {took:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// The `heavy` lock serializes tests on separate runtimes; holding it across awaits is the point.
#[allow(clippy::await_holding_lock)]
#[tokio::test(start_paused = true)]
async fn bad_clipboard_texts_reach_the_provider_only_when_accepted_and_the_daemon_carries_on() {
    let _heavy = heavy();
    let provider = Arc::new(ScriptProvider::echo("fake", Duration::from_millis(50)));
    let chain = rig::chain_of(
        vec![provider.clone()],
        BreakerConfig::default(),
        ChainConfig::default(),
        Arc::new(TokioClock),
    );
    let mut rig = Rig::start(chain, rig::default_gates(), rig::settings(false, 2), None);
    let mut expected = Vec::new();
    for (name, event, want) in clipboard_cases() {
        let text = match &event {
            ClipEvent::Text { text, .. } => Some(collapse_repeats(text)),
            _ => None,
        };
        rig.event(event).await;
        let counts = rig.idle(Duration::from_secs(60)).await;
        if want == Want::Accepted {
            expected.push(text.unwrap());
        }
        assert_eq!(
            counts.translated as usize,
            expected.len(),
            "after {name}: {counts:?}"
        );
    }
    assert_eq!(
        provider.lines(),
        expected,
        "exactly the accepted lines were sent"
    );
    // The daemon still translates an ordinary line afterwards.
    rig.copy("最後に普通の台詞です。").await;
    rig.idle(Duration::from_secs(60)).await;
    assert_eq!(
        provider.lines().last().map(String::as_str),
        Some("最後に普通の台詞です。")
    );
    let counts = rig.stop().await;
    assert_eq!(counts.failed, 0);
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(start_paused = true)]
async fn a_clipboard_changing_every_10_ms_for_a_minute_keeps_the_queue_at_two_requests_bounded_and_memory_flat()
 {
    let _heavy = heavy();
    const LATENCY: Duration = Duration::from_millis(300);
    const CHANGES: usize = 6000; // one minute at 10 ms
    let provider = Arc::new(ScriptProvider::echo("fake", LATENCY));
    let chain = rig::chain_of(
        vec![provider.clone()],
        BreakerConfig::default(),
        ChainConfig::default(),
        Arc::new(TokioClock),
    );
    let mut rig = Rig::start(chain, rig::default_gates(), rig::settings(true, 4), None);
    let started = tokio::time::Instant::now();
    let mut max_queue = 0;
    let mut baseline = 0;
    for i in 0..CHANGES {
        rig.copy(&format!("{i}回目に変わった台詞です。")).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        max_queue = max_queue.max(rig.status().await.queue);
        if i == 1000 {
            baseline = mem::settled_rss_bytes();
        }
    }
    let minute = started.elapsed();
    let counts = rig.idle(Duration::from_secs(10)).await;
    let last = format!("{}回目に変わった台詞です。", CHANGES - 1);
    // The screen ends on the newest line.
    rig.await_shown(&format!("EN {last}"), Duration::from_secs(5))
        .await;
    let after = mem::settled_rss_bytes();
    let counts_at_stop = rig.stop().await;

    assert!(
        minute >= Duration::from_secs(60),
        "{minute:?} of virtual time"
    );
    assert!(max_queue <= 2, "the queue held {max_queue} lines");
    let most = (minute.as_millis() / LATENCY.as_millis()) as usize + 2;
    let calls = provider.calls();
    assert!(
        calls <= most && calls >= most - 10,
        "{calls} requests in {minute:?} with {LATENCY:?} each: expected about {most}"
    );
    assert_eq!(counts.accepted as usize, CHANGES, "{counts:?}");
    assert_eq!(
        (counts.translated + counts.superseded) as usize,
        CHANGES,
        "every change was translated or skipped: {counts:?}"
    );
    assert_eq!(counts.translated as usize, calls);
    assert_eq!(counts_at_stop, counts);
    assert!(
        after <= baseline + 5 * 1024 * 1024,
        "resident memory grew from {:.1} MiB to {:.1} MiB",
        mem::mib(baseline),
        mem::mib(after)
    );
}

#[test]
fn ten_megabytes_on_the_x11_clipboard_are_rejected_unread_and_the_daemon_stays_responsive() {
    use desktop::provider::best_option;
    use desktop::{DesktopEnv, YakuConfig, secs};
    let _heavy = heavy();
    let env = DesktopEnv::start();
    let config = YakuConfig::new(&env.provider.url())
        .poll_interval_ms(50)
        .log_level("debug");
    let yaku = env.spawn_yaku_env(&config, &[("YAKU_LOG", "debug")]);
    desktop_ext::await_polling(&env, &yaku);
    let before = desktop_ext::rss_of(yaku.pid());

    // xclip serves the 10 MB (through INCR, as any owner must for that size).
    let owner_before = env.selection_owner();
    let _xclip = desktop_ext::xclip_owner(&env, aperiodic_japanese(TEN_MB).as_bytes());
    desktop_ext::await_state(
        &env,
        &yaku,
        secs(10),
        "xclip to own the CLIPBOARD with 10 MB",
        || {
            let owner = env.selection_owner();
            owner.is_some() && owner != owner_before
        },
    );
    desktop_ext::await_state(
        &env,
        &yaku,
        secs(10),
        "the 10 MB text's rejection in the log",
        || {
            env.log()
                .lines()
                .any(|l| l.contains("clipboard text rejected") && l.contains("too_long"))
        },
    );
    let after = desktop_ext::rss_of(yaku.pid());
    let rejection = env
        .log()
        .lines()
        .find(|l| l.contains("too_long"))
        .unwrap_or_default()
        .to_string();
    println!(
        "daemon rss {:.1} -> {:.1} MiB; {rejection}",
        mem::mib(before),
        mem::mib(after)
    );
    assert!(
        after < before + 5 * 1024 * 1024,
        "the daemon's memory grew from {:.1} MiB to {:.1} MiB: it read the 10 MB",
        mem::mib(before),
        mem::mib(after)
    );

    // Nothing of the 10 MB may reach the provider while it stays on the clipboard: watch for
    // three seconds (sixty polls), the only way to see that something does not happen.
    let watch_until = Instant::now() + secs(3);
    while Instant::now() < watch_until && env.provider.count() == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        env.provider.lines(),
        Vec::<String>::new(),
        "part of the 10 MB clipboard text was read and sent"
    );

    const LINE: &str = "大きなコピーの後の台詞です。";
    env.set_clipboard(LINE);
    desktop_ext::await_state(&env, &yaku, secs(3), "the next line's notification", || {
        env.yaku_notifications()
            .iter()
            .any(|n| n.summary == best_option(LINE))
    });
    assert_eq!(
        env.provider.lines(),
        vec![LINE.to_string()],
        "the 10 MB were never sent"
    );
    assert!(
        env.yaku_notifications()
            .iter()
            .all(|n| n.summary == best_option(LINE)),
        "nothing was shown for the 10 MB: {:?}",
        env.yaku_notifications()
    );
}

#[test]
fn a_large_text_still_streaming_from_the_old_owner_is_never_read_as_the_new_owners_text() {
    use desktop::provider::best_option;
    use desktop::{DesktopEnv, YakuConfig, secs};
    use hardening::x11incr::IncrOwners;
    let env = DesktopEnv::start();
    let config = YakuConfig::new(&env.provider.url())
        .poll_interval_ms(50)
        .log_level("debug");
    let yaku = env.spawn_yaku_env(&config, &[("YAKU_LOG", "debug")]);
    desktop_ext::await_polling(&env, &yaku);

    // A large text (400 KB) that its owner streams by INCR, in chunks of about 1 KB, each a
    // passable "line" on its own: yaku must reject the whole as oversized and read none of it.
    let chunks: Vec<String> = (0..400)
        .map(|i| format!("第{i}節。{}", "これは大きな文書の一部です。".repeat(24)))
        .collect();
    assert!(chunks[0].len() > 900 && chunks[0].len() < 2000);
    const LINE: &str = "新しくコピーした台詞です。";
    let owners = IncrOwners::start(&env.display(), chunks.clone(), LINE);
    owners.old_takes_the_clipboard();
    desktop_ext::await_state(
        &env,
        &yaku,
        secs(10),
        "the large text read as oversized (twice)",
        || owners.counts().incr_started >= 2,
    );
    // The new owner takes over while the old one is still streaming chunks.
    owners.new_takes_the_clipboard();
    desktop_ext::await_state(&env, &yaku, secs(10), "the new line's notification", || {
        env.yaku_notifications()
            .iter()
            .any(|n| n.summary == best_option(LINE))
    });
    // Whether the old owner still manages to write late chunks depends on the daemon: yaku
    // drops the connection (and its window) after an oversized read, so those writes fail.
    // Either way, none of the old text may reach the provider.
    let counts = owners.counts();
    assert!(
        counts.incr_started >= 2 && counts.new_text_served >= 1,
        "the race was not staged: {counts:?}"
    );
    let leaked: Vec<String> = env
        .provider
        .lines()
        .into_iter()
        .filter(|l| l != LINE)
        .map(|l| l.chars().take(40).collect())
        .collect();
    assert!(
        leaked.is_empty(),
        "{} pieces of the oversized text were read as clipboard text and sent: {leaked:?} ({counts:?})",
        leaked.len()
    );
}

// ---------------------------------------------------------------------------------------------
// Replies and the cleaner: properties (the same ones are fuzz targets in fuzz/)
// ---------------------------------------------------------------------------------------------

/// How a model may wrap its `{"options": [...]}`.
#[derive(Debug, Clone, Copy)]
enum Wrap {
    Bare,
    Fenced,
    FencedNoInfo,
    Preamble,
    Think,
    Array,
    Numbered,
}

fn wrap(options: &[String], how: Wrap) -> String {
    let object = serde_json::json!({ "options": options }).to_string();
    match how {
        Wrap::Bare => object,
        Wrap::Fenced => format!("```json\n{object}\n```"),
        Wrap::FencedNoInfo => format!("Here you go:\n```\n{object}\n```\nEnjoy!"),
        Wrap::Preamble => format!("Sure! Here is the translation: {object}"),
        Wrap::Think => format!("<think>The user wants {{options}}.</think>\n{object}"),
        Wrap::Array => serde_json::json!(options).to_string(),
        Wrap::Numbered => options
            .iter()
            .enumerate()
            .map(|(i, o)| format!("{}. {o}", i + 1))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn any_wrap() -> impl Strategy<Value = Wrap> {
    prop_oneof![
        Just(Wrap::Bare),
        Just(Wrap::Fenced),
        Just(Wrap::FencedNoInfo),
        Just(Wrap::Preamble),
        Just(Wrap::Think),
        Just(Wrap::Array),
        Just(Wrap::Numbered),
    ]
}

/// Translation-like options: words, punctuation, quotes, unicode; sometimes blank.
fn option_text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[A-Za-z][A-Za-z ,.!?'\"é…—-]{0,40}",
        1 => "[ \t]{0,3}",
        1 => "\\PC{1,20}",
    ]
}

/// What `parse_options` must return for `options`: trimmed, non-blank, first of each, at most
/// `max`.
fn cleaned(options: &[String], max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in options {
        let t = o.trim();
        if !t.is_empty() && !out.iter().any(|x| x == t) && out.len() < max.max(1) {
            out.push(t.to_string());
        }
    }
    out
}

fn check_options_shape(text: &str, max: usize, got: &Result<Vec<String>, impl std::fmt::Debug>) {
    if let Ok(v) = got {
        assert!(!v.is_empty() && v.len() <= max.max(1), "{v:?} for {text:?}");
        for (i, o) in v.iter().enumerate() {
            assert!(!o.trim().is_empty() && o.trim() == o, "{o:?} for {text:?}");
            assert!(!v[..i].contains(o), "{o:?} twice for {text:?}");
        }
    }
}

/// 400 cases from a fixed seed (`PROPTEST_RNG_SEED=N` picks another), so CI runs are
/// reproducible; no regression files are written (the table tests hold the known cases).
fn proptest_config() -> ProptestConfig {
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_127);
    ProptestConfig {
        cases: 400,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(proptest_config())]

    /// Whole replies, however wrapped, give back exactly the options (cleaned).
    #[test]
    fn a_whole_reply_in_any_wrapping_gives_back_its_options(
        options in proptest::collection::vec(option_text(), 1..6),
        how in any_wrap(),
        max in 1usize..6,
    ) {
        let _heavy = heavy();
        // Options with their own numbering or fences would change what the wrapping means.
        prop_assume!(options.iter().all(|o| !o.contains("```") && !o.contains("<think>")
            && !o.contains('\n') && !o.contains('{') && !o.contains('[')));
        let want = cleaned(&options, max);
        prop_assume!(!want.is_empty());
        // A numbered list cannot carry an option that looks numbered itself.
        if matches!(how, Wrap::Numbered) {
            prop_assume!(options.iter().all(|o| !o.trim().is_empty()
                && !o.trim_start().starts_with(|c: char| c.is_ascii_digit())));
        }
        let text = wrap(&options, how);
        let got = parse_options(&text, max);
        check_options_shape(&text, max, &got);
        prop_assert_eq!(got.unwrap(), want, "{:?}", text);
    }

    /// Any reply, cut anywhere: never a panic; options well-formed; and a JSON reply whose
    /// JSON was cut is never shown with its JSON syntax as if it were a translation.
    #[test]
    fn a_reply_cut_anywhere_never_panics_and_never_becomes_raw_json(
        options in proptest::collection::vec(option_text(), 1..6),
        how in any_wrap(),
        max in 0usize..6,
        cut in 0.0f64..1.0,
    ) {
        let _heavy = heavy();
        let text = wrap(&options, how);
        let chars: Vec<char> = text.chars().collect();
        let at = ((chars.len() as f64) * cut) as usize;
        let part: String = chars[..at].iter().collect();
        let got = parse_options(&part, max);
        check_options_shape(&part, max, &got);
        if !matches!(how, Wrap::Numbered)
            && let Ok(v) = &got
        {
            for o in v {
                prop_assert!(
                    !o.contains("{\"options\"") && !o.starts_with("[\""),
                    "raw JSON shown as a translation: {:?} from {:?}", o, part
                );
            }
        }
    }

    /// Arbitrary text: never a panic, options well-formed.
    #[test]
    fn any_text_gives_well_formed_options_or_a_typed_error(text in "\\PC{0,300}", max in 0usize..8) {
        let _heavy = heavy();
        let got = parse_options(&text, max);
        check_options_shape(&text, max, &got);
        if let Err(e) = got {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// A hooked line (every char repeated k times, or the whole line repeated n times, with
    /// surrounding whitespace) is cleaned back to the line; a clean line is left alone.
    #[test]
    fn stuttered_or_repeated_vn_lines_clean_back_to_the_line(
        line in proptest::sample::select(VN_LINES.to_vec()),
        k in 2usize..5,
        n in 3usize..5,
        pad in "[ \t\n　]{0,3}",
    ) {
        let _heavy = heavy();
        prop_assert_eq!(collapse_repeats(line), line, "a clean line was changed");
        let stuttered: String = line.chars().flat_map(|c| std::iter::repeat_n(c, k)).collect();
        prop_assert_eq!(collapse_repeats(&format!("{pad}{stuttered}{pad}")), line);
        let repeated = line.repeat(n);
        prop_assert_eq!(collapse_repeats(&format!("{pad}{repeated}{pad}")), line);
        let both: String = repeated.chars().flat_map(|c| std::iter::repeat_n(c, k)).collect();
        prop_assert_eq!(collapse_repeats(&both), line);
    }

    /// The cleaner on anything: never longer, trimmed, a fixed point.
    #[test]
    fn the_cleaner_never_lengthens_and_is_a_fixed_point(text in "\\PC{0,200}") {
        let _heavy = heavy();
        let once = collapse_repeats(&text);
        prop_assert!(once.chars().count() <= text.trim().chars().count());
        prop_assert_eq!(once.trim(), once.as_str());
        prop_assert_eq!(collapse_repeats(&once), once);
    }

    /// The gates on anything, under any valid config: a result or a typed rejection, never a
    /// panic; over-long text is always too long; an accepted text is a repeat right after.
    #[test]
    fn the_gates_decide_anything_without_panicking(
        text in prop_oneof![3 => "\\PC{0,80}", 1 => "[ぁ-んァ-ン一-龥a-zA-Z0-9 \n\t\0]{0,700}"],
        language in proptest::sample::select(vec!["Japanese", "Chinese", "Korean"]),
        max_chars in 1usize..600,
        require_script in any::<bool>(),
        ratio in 0.0f64..=1.0,
        concealed in any::<Option<bool>>(),
    ) {
        let _heavy = heavy();
        let mut gates = Gates::new(GateConfig {
            min_chars: 1,
            max_chars,
            min_script_ratio: ratio,
            require_script,
            source_language: language.into(),
            ignore: Vec::new(),
        }).unwrap();
        let first = gates.check(&text, concealed);
        if concealed == Some(true) {
            prop_assert_eq!(first, Err(Rejection::Concealed));
        } else if text.trim().chars().count() > max_chars {
            prop_assert_eq!(first, Err(Rejection::TooLong));
        } else if first.is_ok() {
            prop_assert_eq!(gates.check(&text, concealed), Err(Rejection::Repeat));
        }
    }
}

#[test]
fn the_fuzz_targets_properties_hold_on_their_seed_corpora() {
    let _heavy = heavy();
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    type Check = fn(&[u8]);
    let table: [(&str, Check); 3] = [
        ("parse_options", fuzz_properties::check_parse_options),
        ("collapse_repeats", fuzz_properties::check_collapse_repeats),
        ("gates_check", fuzz_properties::check_gates),
    ];
    for (target, check) in table {
        let dir = seeds.join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            check(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 5, "{}: {n} seeds", dir.display());
    }
}

/// Real-looking lines with at least three content letters and no doubled letters.
const VN_LINES: &[&str] = &[
    "おはよう、先輩。",
    "「待ってください！」",
    "【春香】今日は雨だね。",
    "彼女は静かに窓の外を見た。",
    "どこに行くつもりなの？",
    "魔法使いの弟子になりたい。",
    "約束、忘れないでね。",
    "放課後、屋上で会おう。",
];

#[test]
fn a_json_reply_cut_after_a_preamble_is_not_shown_as_a_translation() {
    // A model without JSON mode (a local Ollama) that writes a sentence first and then runs
    // out of tokens: the reply is JSON cut short, not a translation.
    let cases = [
        r#"Here is the translation: {"options": ["Good morn"#,
        r#"Sure! {"options": ["Good morning, senpai.", "Mor"#,
        "Translation:\n{\"options\": [\"Good morning\", \"Mor",
        r#"以下が翻訳です：["Good morning", "Mor"#,
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|c| match parse_options(c, 3) {
            Ok(v) => Some(format!("{c:?} -> Ok({v:?})")),
            Err(_) => None,
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "cut-off JSON shown as translations:\n{}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The config file
// ---------------------------------------------------------------------------------------------

const EXAMPLE: &str = include_str!("../config.example.toml");

/// One `key = value` line of the documented example.
#[derive(Debug, Clone)]
struct ExampleKey {
    /// 1-based line in the example.
    line: usize,
    /// As the error names it: `translation.options`, `providers[1].timeout_secs`.
    path: String,
    key: String,
    value: String,
}

fn example_keys() -> Vec<ExampleKey> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut provider: i64 = -1;
    for (i, raw) in EXAMPLE.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with("[[providers]]") {
            provider += 1;
            section = format!("providers[{provider}]");
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            section = name.to_string();
            continue;
        }
        let Some((key, rest)) = line.split_once('=') else {
            continue;
        };
        let value = strip_comment(rest.trim());
        out.push(ExampleKey {
            line: i + 1,
            path: format!("{section}.{}", key.trim()),
            key: key.trim().to_string(),
            value,
        });
    }
    out
}

/// The value without a trailing `# comment` (outside strings).
fn strip_comment(value: &str) -> String {
    let mut in_string = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return value[..i].trim().to_string(),
            _ => {}
        }
    }
    value.trim().to_string()
}

/// A value of another type than `value`'s.
fn wrong_type(value: &str) -> &'static str {
    match value.chars().next() {
        Some('"') => "42",
        Some('[') => "\"not a list\"",
        Some('{') => "7",
        Some('t') | Some('f') => "\"yes\"",
        _ => "\"twelve\"",
    }
}

/// Values out of range, or not allowed, for each key (keys of `[[providers]]` by leaf name).
fn out_of_range(path: &str) -> Option<Vec<&'static str>> {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let values: &[&str] = match (path.split(['.', '[']).next().unwrap_or(""), leaf) {
        ("translation", "source_language") => &["\"Klingon\"", "\"  \""],
        ("translation", "target_language") => &["\"\""],
        ("translation", "options") => &["0", "6", "-1"],
        ("translation", "instructions") => return Some(Vec::new()),
        ("translation", "deadline_secs") => &["0", "0.5", "601", "nan", "inf"],
        ("translation", "context_lines") => &["-1", "51"],
        ("translation", "context_reset_secs") => &["0", "86401"],
        ("translation", "glossary_file") => &["\"no-such-glossary.tsv\""],
        ("translation", "reply_checks") => return Some(Vec::new()),
        ("breaker", "failures_to_open") => &["0", "101"],
        ("breaker", "open_secs") => &["0", "86401", "-inf"],
        ("breaker", "max_open_secs") => &["0", "86401", "29"],
        ("connections", "keep_warm") => return Some(Vec::new()),
        ("connections", "warm_every_secs") => &["0", "0.05", "3601", "nan"],
        ("connections", "idle_after_secs") => &["0", "86401", "-1", "inf"],
        ("providers", "name") => &["\"\"", "\"two words\"", "\"gr/oq\""],
        ("providers", "kind") => &["\"claude\""],
        ("providers", "model") => &["\"\"", "\"   \""],
        ("providers", "base_url") => &[
            "\"http://api.example.com/v1\"",
            "\"ftp://example.com\"",
            "\"example.com/v1\"",
        ],
        ("providers", "api_key_env") => return Some(Vec::new()),
        ("providers", "requests_per_minute") => &["-1", "100001"],
        ("providers", "requests_per_day") => &["-1", "10000001"],
        ("providers", "tokens_per_minute") => &["-1", "100000001"],
        ("providers", "timeout_secs") => &["0", "0.9", "601"],
        ("providers", "hedge_after_ms") => &["-1", "600001"],
        ("providers", "json_mode") => return Some(Vec::new()),
        ("providers", "extra") => return Some(Vec::new()),
        ("clipboard", "watch") => &["\"xfixes\"", "\"\""],
        ("clipboard", "poll_interval_ms") => &["19", "10001", "0"],
        ("clipboard", "collapse_repeats") => return Some(Vec::new()),
        ("clipboard", "min_chars") => &["0", "100001"],
        ("clipboard", "max_chars") => &["0", "100001"],
        ("clipboard", "min_script_ratio") => &["-0.1", "1.5", "nan"],
        ("clipboard", "require_script") => return Some(Vec::new()),
        ("clipboard", "ignore") => &["[\"(\"]", "[\"^https?://\", \"[unclosed\"]"],
        ("notify", "enabled") => return Some(Vec::new()),
        ("notify", "timeout_ms") => &["-1", "600001"],
        ("notify", "show_original") => return Some(Vec::new()),
        ("log", "level") => &[
            "\"yaku=loudest\"",
            "\"\"",
            "\"info,[\"",
            "\"verbose\"",
            "\"warning\"",
        ],
        ("log", "dir") => return Some(Vec::new()),
        ("log", "rotation") => &["\"weekly\""],
        ("log", "keep_files") => &["0", "10001"],
        ("log", "include_text") => return Some(Vec::new()),
        ("cache", "enabled") => return Some(Vec::new()),
        ("history", "max_rows") => &["-1"],
        ("history", "max_days") => &["-1", "100001"],
        ("store", "path") => return Some(Vec::new()),
        ("intake", "websocket") => &["\"ws://192.168.1.5:6677\"", "\"http://127.0.0.1:6677\""],
        ("intake", "game") => &["\"no such game\"", "\"sakura\""],
        // A missing script is a warning at start, not a config error (see tests/desktop.rs).
        ("lookahead", "script") => return Some(Vec::new()),
        ("lookahead", "lines") => &["0", "51", "-1"],
        ("lookahead", "daily_share") => &["-0.1", "1.01", "nan", "inf"],
        _ => return None,
    };
    Some(values.to_vec())
}

/// The example with line `line` (1-based) replaced by `with`.
fn example_with(line: usize, with: &str) -> String {
    EXAMPLE
        .lines()
        .enumerate()
        .map(|(i, l)| if i + 1 == line { with } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Runs `yaku translate --config F x` on each (name, config text, expected key, expected line)
/// and returns what went wrong. Exit 78, and stderr names the file, the line and the key.
fn run_config_cases(cases: Vec<(String, String, String, usize)>) -> Vec<String> {
    let home = Home::new();
    let env = home.env();
    let mut wrong = Vec::new();
    for (i, (name, text, key, line)) in cases.iter().enumerate() {
        let path = home.write(&format!("config/case-{i}.toml"), text, 0o600);
        let p = path.display().to_string();
        let out = bin::yaku(
            &["translate", "--config", &p, "これは翻訳されない"],
            &env,
            None,
            Duration::from_secs(20),
        );
        let named = format!("{p}, line {line}: {key}:");
        if out.code != Some(78) || !out.stderr.contains(&named) {
            wrong.push(format!(
                "{name}: exit {:?}, expected 78 and {named:?} in stderr:\n    {}",
                out.code,
                out.stderr.trim().replace('\n', "\n    ")
            ));
        }
    }
    wrong
}

#[test]
fn every_key_of_the_example_with_a_value_of_the_wrong_type_is_a_config_error_naming_key_and_line() {
    let keys = example_keys();
    assert!(
        keys.len() >= 40,
        "only {} keys found in the example",
        keys.len()
    );
    let cases = keys
        .iter()
        .map(|k| {
            let bad = wrong_type(&k.value);
            (
                format!("{} = {bad} (was {})", k.path, k.value),
                example_with(k.line, &format!("{} = {bad}", k.key)),
                k.path.clone(),
                k.line,
            )
        })
        .collect();
    let wrong = run_config_cases(cases);
    assert!(
        wrong.is_empty(),
        "{} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_key_of_the_example_out_of_range_is_a_config_error_naming_key_and_line() {
    let keys = example_keys();
    let mut cases = Vec::new();
    let mut unknown = Vec::new();
    for k in &keys {
        match out_of_range(&k.path) {
            Some(values) => {
                for bad in values {
                    // `ignore`'s second pattern is the bad one: the error names element [1].
                    let (key, value) = if bad.contains("[unclosed") {
                        (format!("{}[1]", k.path), bad)
                    } else if k.path == "clipboard.ignore" {
                        (format!("{}[0]", k.path), bad)
                    } else {
                        (k.path.clone(), bad)
                    };
                    cases.push((
                        format!("{} = {value}", k.path),
                        example_with(k.line, &format!("{} = {value}", k.key)),
                        key,
                        k.line,
                    ));
                }
            }
            None => unknown.push(k.path.clone()),
        }
    }
    assert!(
        unknown.is_empty(),
        "keys of config.example.toml without out-of-range values in this test: {unknown:?}"
    );
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let wrong = run_config_cases(cases);
    assert!(
        wrong.is_empty(),
        "{} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_misspelled_key_or_section_of_the_example_is_a_config_error_naming_key_and_line() {
    let keys = example_keys();
    let mut cases: Vec<(String, String, String, usize)> = keys
        .iter()
        .map(|k| {
            let typo = format!("{}x", k.key);
            let path = format!("{}x", k.path);
            (
                format!("{path} (misspelled)"),
                example_with(k.line, &format!("{typo} = {}", k.value)),
                path,
                k.line,
            )
        })
        .collect();
    for (i, raw) in EXAMPLE.lines().enumerate() {
        let line = strip_comment(raw.trim());
        if let Some(name) = line.strip_prefix('[').filter(|_| !line.starts_with("[[")) {
            let name = name.trim_end_matches(']').trim();
            cases.push((
                format!("[{name}x] (misspelled section)"),
                example_with(i + 1, &format!("[{name}x]")),
                format!("{name}x"),
                i + 1,
            ));
        }
    }
    assert!(cases.len() >= 48, "{} cases", cases.len());
    let wrong = run_config_cases(cases);
    assert!(
        wrong.is_empty(),
        "{} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn a_key_given_twice_is_a_config_error_naming_the_key_and_line() {
    let text = "[translation]\noptions = 3\ndeadline_secs = 10\noptions = 4\n";
    let wrong = run_config_cases(vec![(
        "options given twice".into(),
        text.into(),
        "translation.options".into(),
        4,
    )]);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_table_header_left_unclosed_is_a_config_error_naming_that_table_and_its_line() {
    let cases = EXAMPLE
        .lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with('['))
        .map(|(i, l)| {
            let name = l
                .trim_matches(|c| c == '[' || c == ']')
                .split(']')
                .next()
                .unwrap()
                .to_string();
            let unclosed = l.split(']').next().unwrap();
            (
                format!("{unclosed} (was {l})"),
                example_with(i + 1, unclosed),
                name,
                i + 1,
            )
        })
        .collect::<Vec<_>>();
    assert!(cases.len() >= 10, "{} tables in the example", cases.len());
    let wrong = run_config_cases(cases);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn commands_that_read_files_work_with_a_broken_config_saying_what_is_wrong_and_which_paths_they_use()
 {
    let home = Home::new();
    let env = home.env();
    let broken = home.write("config/broken.toml", "[notify\nenabled = true\n", 0o600);
    let c = broken.display().to_string();
    let logs = home.path("state/yaku/logs");
    let commands: [(&[&str], Option<i32>); 6] = [
        (&["logs"], Some(0)),
        (&["history"], Some(0)),
        (&["stats"], Some(0)),
        (&["key", "list"], Some(0)),
        (&["service", "status"], None),
        // No config, so nothing can translate: the diagnosis itself still runs.
        (&["check", "--offline"], Some(1)),
    ];
    for (args, code) in commands {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", &c]);
        let out = bin::yaku(&all, &env, None, Duration::from_secs(20));
        let what = args.join(" ");
        assert_ne!(out.code, Some(78), "{what}: {}", out.all());
        if code.is_some() {
            assert_eq!(out.code, code, "{what}: {}", out.all());
        }
        let said = format!("using the defaults instead: logs in {}", logs.display());
        assert!(
            out.stderr.contains(&said),
            "{what} does not say {said:?}: {}",
            out.all()
        );
        assert!(
            out.all().contains(&format!("{c}, line 1: notify:")),
            "{what} does not say what is wrong: {}",
            out.all()
        );
    }
    for args in [["run", "--config", &c], ["translate", "--config", &c]] {
        let out = bin::yaku(&args, &env, None, Duration::from_secs(20));
        assert_eq!(out.code, Some(78), "{}", out.all());
    }
}

#[test]
fn check_calls_a_config_with_a_key_that_others_can_read_an_error_as_translate_does() {
    let home = Home::new();
    let env = home.env();
    let text = EXAMPLE.replacen(
        "[[providers]]\n",
        "[[providers]]\napi_key = \"AIzaSyA-not-a-real-key-0123456789abcdefg\"\n",
        1,
    );
    let cfg = home.write("config/readable.toml", &text, 0o644);
    let c = cfg.display().to_string();
    let translate = bin::yaku(
        &["translate", "--config", &c, "これは翻訳されない"],
        &env,
        None,
        Duration::from_secs(20),
    );
    assert_eq!(translate.code, Some(78), "{}", translate.all());
    let check = bin::yaku(
        &["check", "--offline", "--config", &c],
        &env,
        None,
        Duration::from_secs(20),
    );
    assert_eq!(check.code, Some(1), "{}", check.all());
    assert!(
        check
            .stdout
            .lines()
            .next()
            .unwrap_or("")
            .starts_with("config: error")
            && check.stdout.contains("api_key"),
        "{}",
        check.all()
    );
    let json = bin::yaku(
        &["check", "--offline", "--json", "--config", &c],
        &env,
        None,
        Duration::from_secs(20),
    );
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["config"]["ok"], false, "{v}");
    assert_eq!(v["can_translate"], false, "{v}");
}

/// Whether this process runs as root (which reads any file whatever its mode).
fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn a_config_that_is_a_directory_or_under_a_file_or_not_utf8_is_a_config_error_and_mode_000_too_unless_root()
 {
    let home = Home::new();
    let env = home.env();
    let dir = home.path("config/a-directory.toml");
    std::fs::create_dir_all(&dir).unwrap();
    let file = home.write("config/plain-file", "not a directory\n", 0o600);
    let under_file = file.join("config.toml");
    let not_utf8 = home.path("config/latin1.toml");
    std::fs::write(
        &not_utf8,
        b"[translation]\noptions = 3\ninstructions = \"caf\xe9\"\n",
    )
    .unwrap();
    let mut cases: Vec<(&str, PathBuf, &str)> = vec![
        ("a directory", dir, "is a directory"),
        (
            "a path through a regular file",
            under_file,
            "cannot be read",
        ),
        ("Latin-1 bytes on line 3", not_utf8, "line 3: not UTF-8"),
    ];
    // Root reads a mode-000 file anyway, so this case only means something for other users.
    if !is_root() {
        let locked = home.write("config/locked.toml", "[translation]\noptions = 3\n", 0o000);
        cases.push(("mode 000", locked, "cannot be read"));
    }
    let mut wrong = Vec::new();
    for (name, path, says) in &cases {
        let p = path.display().to_string();
        let out = bin::yaku(
            &["translate", "--config", &p, "テスト"],
            &env,
            None,
            Duration::from_secs(20),
        );
        if out.code != Some(78) || !out.stderr.contains(&p) || !out.stderr.contains(says) {
            wrong.push(format!(
                "{name}: exit {:?}, stderr {:?}",
                out.code, out.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn an_empty_config_file_means_the_defaults_and_is_no_config_error() {
    let home = Home::new();
    for (name, text) in [
        ("empty", ""),
        ("only comments", "# nothing here\n\n"),
        ("a byte-order mark", "\u{FEFF}"),
    ] {
        let path = home.write("config/empty.toml", text, 0o600);
        let p = path.display().to_string();
        let out = bin::yaku(
            &["translate", "--config", &p, "テスト"],
            &home.env(),
            None,
            Duration::from_secs(20),
        );
        // The defaults name gemini and groq; with no key in this environment nothing can
        // translate: exit 3, which says the config itself was fine.
        assert_eq!(out.code, Some(3), "{name}: {}", out.all());
        assert!(
            out.stderr.contains("gemini") && out.stderr.contains("groq"),
            "{name}: {}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The history store
// ---------------------------------------------------------------------------------------------

/// A daemon with the real SQLite store at `db` (opened now if it can be), an echo provider, and
/// a store handle on `store_clock`.
fn store_rig(
    db: &Path,
    store_clock: Arc<dyn Clock>,
) -> (Rig, Arc<ScriptProvider>, Arc<StoreHandle>) {
    let provider = Arc::new(ScriptProvider::echo("fake", Duration::from_millis(5)));
    let chain = rig::chain_of(
        vec![provider.clone()],
        BreakerConfig::default(),
        ChainConfig::default(),
        Arc::new(TokioClock),
    );
    let reopen = db.to_path_buf();
    let opener: Opener = Box::new(move || {
        let (s, _) = SqliteStore::open(&reopen)?;
        Ok(Arc::new(s) as Arc<dyn Store>)
    });
    let store = SqliteStore::open(db)
        .ok()
        .map(|(s, _)| Arc::new(s) as Arc<dyn Store>);
    let handle = Arc::new(StoreHandle::new(store, opener, store_clock, STORE_RETRY));
    let rig = Rig::start(
        chain,
        rig::default_gates(),
        rig::settings(true, 2),
        Some(handle.clone()),
    );
    (rig, provider, handle)
}

fn rows(db: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT text, status FROM lines ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_file_locked_by_another_connection_does_not_stop_translating() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("yaku.db");
    let (mut rig, provider, handle) = store_rig(&db, Arc::new(TokioClock));
    rig.copy("鍵の前の台詞です。").await;
    rig.idle(Duration::from_secs(10)).await;

    // Another connection takes the write lock and keeps it.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder_db = db.clone();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&holder_db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE; INSERT INTO cache (key, options, provider, model, created_ms) VALUES ('lock', '[]', 'x', 'x', 0);").unwrap();
        locked_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(60));
        conn.execute_batch("ROLLBACK;").unwrap();
    });
    locked_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let started = Instant::now();
    let lines = [
        "鍵の間の一行目です。",
        "鍵の間の二行目です。",
        "鍵の間の三行目です。",
    ];
    for line in lines {
        rig.copy(line).await;
        rig.idle(Duration::from_secs(30)).await;
    }
    let took = started.elapsed();
    let _ = release_tx.send(());
    holder.join().unwrap();

    for line in lines {
        rig.await_shown(&format!("EN {line}"), Duration::from_secs(5))
            .await;
    }
    assert_eq!(provider.calls(), 4);
    // One store call waits out SQLite's 5 s busy timeout; then the store is set aside.
    assert!(
        took < Duration::from_secs(9),
        "three lines took {took:?} behind the lock"
    );
    assert!(!handle.is_up(), "the locked store was not set aside");
    let counts = rig.stop().await;
    assert_eq!(counts.translated, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_file_deleted_while_running_does_not_stop_translating() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("yaku.db");
    let (mut rig, _provider, _handle) = store_rig(&db, Arc::new(TokioClock));
    rig.copy("削除の前の台詞です。").await;
    rig.idle(Duration::from_secs(10)).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    assert!(!db.exists());
    let lines = ["削除の後の一行目です。", "削除の後の二行目です。"];
    for line in lines {
        rig.copy(line).await;
        rig.idle(Duration::from_secs(30)).await;
    }
    for line in lines {
        rig.await_shown(&format!("EN {line}"), Duration::from_secs(5))
            .await;
    }
    let counts = rig.stop().await;
    assert_eq!((counts.translated, counts.failed), (3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_path_replaced_by_a_directory_does_not_stop_translating_and_the_store_comes_back()
{
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("yaku.db");
    let store_clock = ManualClock::new();
    let (mut rig, _provider, handle) = store_rig(&db, Arc::new(store_clock.clone()));
    rig.copy("置き換えの前の台詞です。").await;
    rig.idle(Duration::from_secs(10)).await;

    // While running: the file (and its WAL) replaced by a directory of the same name.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::create_dir(&db).unwrap();
    rig.copy("置き換えの後の台詞です。").await;
    rig.idle(Duration::from_secs(30)).await;
    rig.await_shown("EN 置き換えの後の台詞です。", Duration::from_secs(5))
        .await;
    let counts = rig.stop().await;
    assert_eq!((counts.translated, counts.failed), (2, 0));

    // At start: the path is a directory, so the store is down; translating goes on, and the
    // store is tried again after its retry period, once the path is usable.
    let (mut rig, _provider, handle2) = store_rig(&db, Arc::new(store_clock.clone()));
    drop(handle);
    assert!(!handle2.is_up());
    rig.copy("ディレクトリの間の台詞です。").await;
    rig.idle(Duration::from_secs(30)).await;
    rig.await_shown("EN ディレクトリの間の台詞です。", Duration::from_secs(5))
        .await;
    std::fs::remove_dir(&db).unwrap();
    store_clock.advance(STORE_RETRY);
    rig.copy("戻った後の台詞です。").await;
    rig.idle(Duration::from_secs(30)).await;
    assert!(
        handle2.is_up(),
        "the store was not reopened after its retry period"
    );
    let counts = rig.stop().await;
    assert_eq!((counts.translated, counts.failed), (2, 0));
    assert_eq!(
        rows(&db),
        vec![("戻った後の台詞です。".to_string(), "translated".to_string())],
        "only the line after the store came back is in the new file"
    );
}
