//! The properties the fuzz targets check, shared by the libFuzzer entry points and the plain
//! replay binaries (built without the `libfuzzer` feature, on stable). Every function panics
//! only when yaku breaks a promise: never a panic of its own, always a result or a typed error.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use yaku::core::clean::collapse_repeats;
use yaku::core::gates::{GateConfig, Gates, Rejection};
use yaku::core::reply::parse_options;

/// `parse_options` on any text: options are 1..=max, trimmed, non-empty and distinct, or the
/// reply is an `InvalidReply`. The first byte picks `max` (0..=5; 0 means 1).
pub fn check_parse_options(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(first % 6);
    let text = String::from_utf8_lossy(rest);
    match parse_options(&text, max) {
        Ok(options) => {
            assert!(!options.is_empty(), "Ok with no options for {text:?}");
            assert!(
                options.len() <= max.max(1),
                "{} options, max {max}",
                options.len()
            );
            for (i, o) in options.iter().enumerate() {
                assert!(!o.trim().is_empty(), "a blank option for {text:?}");
                assert_eq!(o.trim(), o, "an untrimmed option for {text:?}");
                assert!(!options[..i].contains(o), "a repeated option for {text:?}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// `collapse_repeats` on any text: never longer than the trimmed input, and a fixed point.
pub fn check_collapse_repeats(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let once = collapse_repeats(&text);
    assert!(
        once.chars().count() <= text.trim().chars().count(),
        "lengthened {text:?} to {once:?}"
    );
    assert_eq!(once.trim(), once, "untrimmed result for {text:?}");
    let twice = collapse_repeats(&once);
    assert_eq!(twice, once, "not idempotent on {text:?}");
}

/// `Gates::check` on any text under a configuration picked by the first two bytes: a result or
/// a typed rejection; concealed text is always `Concealed`; text longer than `max_chars` is
/// always `TooLong`; an accepted text is rejected as a repeat right after.
///
/// Building `Gates` compiles the secret patterns, so one `Gates` per configuration is kept
/// for the whole run. What it carries from one input to the next (the last accepted line)
/// only matters to the repeat gate, which this target checks within one input.
pub fn check_gates(data: &[u8]) {
    let Some((&a, rest)) = data.split_first() else {
        return;
    };
    let Some((&b, rest)) = rest.split_first() else {
        return;
    };
    let language = usize::from(a % 5);
    let max_index = usize::from((a / 5) % 4);
    let require_script = a & 0x40 == 0;
    let ratio = b / 3 % 11;
    let concealed = match b % 3 {
        0 => None,
        1 => Some(false),
        _ => Some(true),
    };
    let max_chars = [1usize, 5, 40, 500][max_index];
    let text = String::from_utf8_lossy(rest);
    GATES.with(|cache| {
        let mut cache = cache.borrow_mut();
        let gates = cache
            .entry((language, max_index, require_script, ratio))
            .or_insert_with(|| {
                Gates::new(GateConfig {
                    min_chars: 1,
                    max_chars,
                    min_script_ratio: f64::from(ratio) / 10.0,
                    require_script,
                    source_language: ["Japanese", "Chinese", "Korean", "ja", "日本語"][language]
                        .to_string(),
                    ignore: Vec::new(),
                })
                .expect("a valid gate config")
            });
        let first = gates.check(&text, concealed);
        let _ = first.map_err(|r| (r.gate_name(), r.to_string()));
        if concealed == Some(true) {
            assert_eq!(first, Err(Rejection::Concealed));
            return;
        }
        if text.trim().chars().count() > max_chars {
            assert_eq!(first, Err(Rejection::TooLong), "{text:?}");
        }
        if first.is_ok() {
            assert_eq!(
                gates.check(&text, concealed),
                Err(Rejection::Repeat),
                "{text:?}"
            );
        }
    });
}

type GateKey = (usize, usize, bool, u8);

thread_local! {
    static GATES: RefCell<HashMap<GateKey, Gates>> = RefCell::new(HashMap::new());
}

/// Runs `check` on every file under each path (a file or a directory of files).
pub fn replay(check: fn(&[u8]), paths: impl IntoIterator<Item = String>) {
    let mut n = 0;
    for arg in paths {
        let path = Path::new(&arg);
        let files: Vec<_> = if path.is_dir() {
            let mut f: Vec<_> = std::fs::read_dir(path)
                .unwrap_or_else(|e| panic!("{arg}: {e}"))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            f.sort();
            f
        } else {
            vec![path.to_path_buf()]
        };
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            check(&data);
            n += 1;
        }
    }
    println!("{n} inputs replayed without a failure");
}
