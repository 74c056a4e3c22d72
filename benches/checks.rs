//! The reply checks' cost per reply: parsing a reply into options and checking each one
//! (script share, repeats, echo, refusal, duplicates), next to parsing alone (what
//! `reply_checks = false` does). Target: well under a millisecond per reply.
//!
//! cargo bench --bench checks
#![allow(clippy::unwrap_used, clippy::expect_used)] // benches may panic

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use yaku::core::checks::ReplyChecks;
use yaku::core::prompt::TranslationRequest;

fn request() -> TranslationRequest {
    TranslationRequest {
        text: "おはよう、先輩。今日も早いですね。".into(),
        source_language: "Japanese".into(),
        target_language: "English".into(),
        options: 3,
        ..Default::default()
    }
}

fn replies() -> Vec<(&'static str, String)> {
    let long = "Senpai, I've been thinking about what you said yesterday by the river, and I still \
                can't decide whether you were teasing me or whether you meant every word of it.";
    vec![
        (
            "good 3 options",
            r#"{"options": ["Good morning, senpai. You're early again today.", "Morning, senpai! You're here early as usual.", "Good morning, senpai. Early as always, I see."]}"#.into(),
        ),
        (
            "long 3 options",
            serde_json::json!({ "options": [long, format!("{long} Really."), format!("So, {long}")] })
                .to_string(),
        ),
        (
            "untranslated",
            r#"{"options": ["おはよう、先輩。今日も早いですね。", "おはようございます、先輩。", "先輩、おはよう！"]}"#.into(),
        ),
        (
            "repetitive 10 clauses",
            {
                let ten = ["I'm going home"; 10].join(", ");
                serde_json::json!({ "options": [ten] }).to_string()
            },
        ),
        (
            "refusal",
            "I'm sorry, but I can't help with that request.".into(),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let on = ReplyChecks::new(&request(), true);
    let off = ReplyChecks::new(&request(), false);
    let mut group = c.benchmark_group("reply_checks");
    for (name, reply) in replies() {
        group.bench_function(format!("on/{name}"), |b| {
            b.iter(|| black_box(on.options(black_box(&reply), 3)))
        });
        group.bench_function(format!("off/{name}"), |b| {
            b.iter(|| black_box(off.options(black_box(&reply), 3)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
