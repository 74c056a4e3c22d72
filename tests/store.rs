//! The SQLite store against real files in temporary directories: status transitions, crash
//! recovery (including a real kill -9), repair of unreadable files, file modes, migrations,
//! the cache, statistics, history, export round trips, retention and locking.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use rusqlite::Connection;
use serde_json::Value;
use tempfile::TempDir;

use yaku::adapters::store::*;
use yaku::core::store::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A temporary directory and the store path inside it.
fn tmp() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("yaku.db");
    (dir, path)
}

fn open(path: &Path) -> (SqliteStore, OpenReport) {
    SqliteStore::open(path).unwrap()
}

/// Opens the way a command beside a running daemon would: pending lines are left alone.
fn open_as_command(path: &Path) -> SqliteStore {
    SqliteStore::open_with(path, &Options::command()).unwrap().0
}

/// 2027-01-15T08:00:00Z plus `secs`.
fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn translated(provider: &str, options: &[&str], latency: u64) -> Finished {
    Finished {
        status: Status::Translated,
        provider: Some(provider.into()),
        model: Some(format!("{provider}-model")),
        options: options.iter().map(|s| s.to_string()).collect(),
        latency_ms: Some(latency),
        error: None,
    }
}

fn cached(provider: &str, options: &[&str]) -> Finished {
    Finished {
        status: Status::Cached,
        latency_ms: Some(0),
        ..translated(provider, options, 0)
    }
}

fn failed(error: &str) -> Finished {
    Finished {
        status: Status::Failed,
        provider: None,
        model: None,
        options: vec![],
        latency_ms: Some(1234),
        error: Some(error.into()),
    }
}

fn skipped() -> Finished {
    Finished {
        status: Status::Superseded,
        provider: None,
        model: None,
        options: vec![],
        latency_ms: None,
        error: None,
    }
}

fn attempt(
    provider: &str,
    outcome: &'static str,
    latency_ms: u64,
    opened_breaker: bool,
) -> AttemptRecord {
    AttemptRecord {
        provider: provider.into(),
        outcome,
        latency_ms,
        opened_breaker,
    }
}

fn ok(provider: &str, latency_ms: u64) -> AttemptRecord {
    attempt(provider, "ok", latency_ms, false)
}

fn only(store: &SqliteStore) -> HistoryRow {
    let rows = store.history(10, None).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().unwrap()
}

/// Counts rows of `table` straight from the file, the way a user with `sqlite3` would.
fn count(path: &Path, table: &str) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn user_version(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}

/// Names in `dir` starting with `prefix`, sorted.
fn names_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Days from 1970-01-01 to a proleptic Gregorian date (the inverse of the store's formatter,
/// written separately so the round trips test something).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS.mmmZ` to unix milliseconds.
fn parse_rfc3339(s: &str) -> i64 {
    let re =
        regex::Regex::new(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z$").unwrap();
    let c = re
        .captures(s)
        .unwrap_or_else(|| panic!("not RFC 3339 with milliseconds: {s:?}"));
    let n = |i: usize| c[i].parse::<i64>().unwrap();
    let (mo, d, h, mi, se) = (n(2), n(3), n(4), n(5), n(6));
    assert!(
        (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && se < 60,
        "{s}"
    );
    days_from_civil(n(1), mo, d) * 86_400_000 + h * 3_600_000 + mi * 60_000 + se * 1000 + n(7)
}

fn ms_to_time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// An RFC 4180 reader: CRLF between records, quotes doubled inside quoted fields. A field is
/// None when it is empty and unquoted (the store's "absent").
fn parse_csv(s: &str) -> Vec<Vec<Option<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let (mut quoted, mut in_quotes) = (false, false);
    let mut chars = s.chars().peekable();
    let end_field = |record: &mut Vec<Option<String>>, field: &mut String, quoted: &mut bool| {
        let f = std::mem::take(field);
        record.push(if f.is_empty() && !*quoted {
            None
        } else {
            Some(f)
        });
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                assert!(
                    field.is_empty() && !quoted,
                    "quote inside an unquoted field"
                );
                in_quotes = true;
                quoted = true;
            }
            ',' => end_field(&mut record, &mut field, &mut quoted),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF between records");
                end_field(&mut record, &mut field, &mut quoted);
                records.push(std::mem::take(&mut record));
            }
            '\n' => panic!("bare LF outside quotes"),
            c => {
                assert!(!quoted, "text after a closing quote");
                field.push(c);
            }
        }
    }
    assert!(!in_quotes, "unterminated quoted field");
    assert!(
        record.is_empty() && field.is_empty(),
        "the last record must end with CRLF"
    );
    records
}

fn row_from_csv(rec: &[Option<String>]) -> HistoryRow {
    assert_eq!(rec.len(), 13, "{rec:?}");
    let req = |i: usize| {
        rec[i]
            .clone()
            .unwrap_or_else(|| panic!("field {i} absent in {rec:?}"))
    };
    HistoryRow {
        id: Some(req(0).parse().unwrap()),
        at: Some(ms_to_time(parse_rfc3339(&req(1)))),
        text: req(2).into(),
        source: match req(3).as_str() {
            "clipboard" => Source::Clipboard.into(),
            "cli" => Source::Cli.into(),
            other => panic!("source {other}"),
        },
        status: Status::parse(&req(4)).unwrap().into(),
        provider: rec[5].clone(),
        model: rec[6].clone(),
        best: rec[7].clone(),
        options: Some(serde_json::from_str(&req(8)).unwrap()),
        latency_ms: rec[9].as_ref().map(|l| l.parse().unwrap()),
        error: rec[10].clone(),
        speaker: rec[11].clone(),
        // The CSV export has no game column.
        game: None,
        chosen: rec.get(12).cloned().flatten().map(|n| n.parse().unwrap()),
    }
}

/// What a JSONL line carries (no source, no model), read back into typed values.
#[derive(Debug, PartialEq)]
struct JsonRow {
    id: i64,
    at_ms: i64,
    text: String,
    status: Status,
    provider: Option<String>,
    best: Option<String>,
    options: Vec<String>,
    latency_ms: Option<u64>,
    error: Option<String>,
    speaker: Option<String>,
}

fn json_row_from(v: &Value) -> JsonRow {
    for key in [
        "id",
        "at",
        "text",
        "status",
        "provider",
        "best",
        "options",
        "latency_ms",
        "error",
        "speaker",
    ] {
        assert!(
            v.as_object().unwrap().contains_key(key),
            "missing {key} in {v}"
        );
    }
    let opt_str = |k: &str| v[k].as_str().map(str::to_owned);
    JsonRow {
        id: v["id"].as_i64().unwrap(),
        at_ms: parse_rfc3339(v["at"].as_str().unwrap()),
        text: v["text"].as_str().unwrap().to_owned(),
        status: Status::parse(v["status"].as_str().unwrap()).unwrap(),
        provider: opt_str("provider"),
        best: opt_str("best"),
        options: serde_json::from_value(v["options"].clone()).unwrap(),
        latency_ms: v["latency_ms"].as_u64(),
        error: opt_str("error"),
        speaker: opt_str("speaker"),
    }
}

fn json_row_of(r: &HistoryRow) -> JsonRow {
    JsonRow {
        id: r.id.unwrap(),
        at_ms: ms(r.at.unwrap()),
        text: r.text.as_deref().unwrap().to_owned(),
        status: r.status.known().unwrap(),
        provider: r.provider.clone(),
        best: r.best.clone(),
        options: r.options.clone().unwrap(),
        latency_ms: r.latency_ms,
        error: r.error.clone(),
        speaker: r.speaker.clone(),
    }
}

/// Lines whose text and answers need quoting or escaping in every format.
fn awkward_history(store: &SqliteStore) {
    let lines: [(&str, Finished); 7] = [
        (
            "おはよう、先輩。今日も早いですね。",
            translated(
                "gemini",
                &["Good morning, senpai.", "Morning, senpai!"],
                812,
            ),
        ),
        (
            "春香「え、\"本当\"？」",
            translated("groq", &["\"Really?\"", "say \"hi\", then \\leave\\"], 95),
        ),
        (
            "二行目\nsecond line\r\nthird",
            cached("gemini", &["line one\nline two", "a | b"]),
        ),
        (
            "  spaces around  ",
            failed("gemini: rate limited for 37 s; groq: key rejected, \"401\""),
        ),
        ("skipped, with comma", skipped()),
        (
            "",
            Finished {
                error: Some(String::new()),
                provider: Some(String::new()),
                ..translated("x", &[""], 1)
            },
        ),
        ("pending 待ち", skipped()),
    ];
    for (i, (text, finished)) in lines.iter().enumerate() {
        let source = if i % 2 == 0 {
            Source::Clipboard
        } else {
            Source::Cli
        };
        let at = t(i as u64) + Duration::from_millis(17 * i as u64 + 3);
        let id = store.begin(text, source, at).unwrap();
        if i < lines.len() - 1 {
            store.finish(id, finished, &[ok("gemini", 100)]).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Status transitions
// ---------------------------------------------------------------------------------------------

#[test]
fn begin_records_a_pending_line_with_its_text_source_and_time() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let at = t(5) + Duration::from_millis(295);
    let id = store
        .begin("先輩、待ってください！", Source::Clipboard, at)
        .unwrap();
    let row = only(&store);
    assert_eq!(row.id, Some(id));
    assert_eq!(row.text, "先輩、待ってください！");
    assert_eq!(row.source, Source::Clipboard);
    assert_eq!(row.status, Status::Pending);
    assert_eq!(row.at, Some(at));
    assert_eq!((row.provider, row.best, row.latency_ms), (None, None, None));
    assert_eq!(row.options, Some(vec![]));
}

#[test]
fn finish_translated_stores_provider_model_best_options_and_latency() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let id = store.begin("おはよう", Source::Cli, t(0)).unwrap();
    store
        .finish(
            id,
            &translated("groq", &["Good morning.", "Morning!"], 420),
            &[ok("groq", 420)],
        )
        .unwrap();
    let row = only(&store);
    assert_eq!(row.status, Status::Translated);
    assert_eq!(row.source, Source::Cli);
    assert_eq!(row.provider.as_deref(), Some("groq"));
    assert_eq!(row.model.as_deref(), Some("groq-model"));
    assert_eq!(row.best.as_deref(), Some("Good morning."));
    assert_eq!(
        row.options,
        Some(vec!["Good morning.".into(), "Morning!".into()])
    );
    assert_eq!(row.latency_ms, Some(420));
    assert_eq!(row.error, None);
}

#[test]
fn finish_sets_each_final_status() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let cases = [
        (translated("gemini", &["Hi."], 10), Status::Translated),
        (cached("gemini", &["Hi."]), Status::Cached),
        (failed("gemini: key rejected"), Status::Failed),
        (skipped(), Status::Superseded),
    ];
    for (finished, want) in &cases {
        let id = store.begin("こんにちは", Source::Clipboard, t(0)).unwrap();
        store.finish(id, finished, &[]).unwrap();
        let row = store.history(1, None).unwrap().pop().unwrap();
        assert_eq!((row.id, row.status.known()), (Some(id), Some(*want)));
        assert_eq!(row.error, finished.error);
    }
}

#[test]
fn a_second_finish_changes_nothing_and_is_not_an_outage() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let id = store.begin("一度だけ", Source::Clipboard, t(0)).unwrap();
    store
        .finish(
            id,
            &translated("gemini", &["Only once."], 300),
            &[ok("gemini", 300)],
        )
        .unwrap();
    // Ok: the daemon takes a store error for an outage, and this is none.
    store
        .finish(
            id,
            &failed("late failure"),
            &[attempt("groq", "transient", 9, true)],
        )
        .unwrap();
    let row = only(&store);
    assert_eq!(row.status, Status::Translated);
    assert_eq!(row.best.as_deref(), Some("Only once."));
    assert_eq!(row.error, None);
    assert_eq!(count(&path, "attempts"), 1);
}

#[test]
fn finishing_a_line_that_is_gone_records_nothing() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let id = store.begin("消される", Source::Clipboard, t(0)).unwrap();
    store.clear().unwrap();
    store
        .finish(id, &translated("gemini", &["Gone."], 1), &[ok("gemini", 1)])
        .unwrap();
    store.finish(42, &skipped(), &[]).unwrap();
    assert!(store.history(10, None).unwrap().is_empty());
    assert_eq!(count(&path, "attempts"), 0);
}

#[test]
fn pending_lines_become_interrupted_when_the_store_is_reopened() {
    let (_dir, path) = tmp();
    {
        let (store, report) = open(&path);
        assert_eq!(report.interrupted, 0);
        let a = store.begin("終わった", Source::Clipboard, t(0)).unwrap();
        store.finish(a, &skipped(), &[]).unwrap();
        store.begin("途中で", Source::Clipboard, t(1)).unwrap();
        store.begin("途中で2", Source::Clipboard, t(2)).unwrap();
        // Dropped without finishing: what a crash leaves.
    }
    let (store, report) = open(&path);
    assert_eq!(report.interrupted, 2);
    let statuses: Vec<Status> = store
        .history(10, None)
        .unwrap()
        .iter()
        .map(|r| r.status.known().unwrap())
        .collect();
    assert_eq!(
        statuses,
        vec![Status::Superseded, Status::Interrupted, Status::Interrupted]
    );
    // An interrupted line is final too.
    let last = store.history(1, None).unwrap()[0].id.unwrap();
    store.finish(last, &skipped(), &[]).unwrap();
    assert_eq!(
        store.history(1, None).unwrap()[0].status,
        Status::Interrupted
    );
    drop(store);
    assert_eq!(open(&path).1.interrupted, 0);
}

#[test]
fn a_command_opening_beside_the_daemon_leaves_its_pending_line_alone() {
    let (_dir, path) = tmp();
    let (daemon, _) = open(&path);
    let id = daemon.begin("翻訳中", Source::Clipboard, t(0)).unwrap();
    let opts = Options {
        recover_pending: false,
        ..Options::default()
    };
    let (command, report) = SqliteStore::open_with(&path, &opts).unwrap();
    assert_eq!(report.interrupted, 0);
    assert_eq!(only(&command).status, Status::Pending);
    daemon
        .finish(
            id,
            &translated("gemini", &["Translating."], 1),
            &[ok("gemini", 1)],
        )
        .unwrap();
    assert_eq!(only(&command).status, Status::Translated);
}

const CRASH_ENV: &str = "YAKU_STORE_TEST_CRASH_DB";
const CRASH_READY: &str = "YAKU-STORE-CRASH-HELPER-READY";

/// Only does something in the child process `a_line_pending_when_the_process_is_killed_…`
/// starts: opens the store, begins a line and waits to be killed.
#[test]
fn crash_helper_begins_a_line_then_waits_to_be_killed() {
    let Some(path) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let (store, _) = SqliteStore::open(Path::new(&path)).unwrap();
    store
        .begin("kill -9 の前の行", Source::Clipboard, t(0))
        .unwrap();
    println!("{CRASH_READY}");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(store);
}

#[cfg(unix)]
#[test]
fn a_line_pending_when_the_process_is_killed_with_sigkill_becomes_interrupted() {
    use std::os::unix::process::ExitStatusExt;
    let (_dir, path) = tmp();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_helper_begins_a_line_then_waits_to_be_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the helper exited before it was ready"
        );
        if line.contains(CRASH_READY) {
            break;
        }
    }
    // The line is committed and pending while the child still holds the store open.
    assert_eq!(only(&open_as_command(&path)).status, Status::Pending);
    child.kill().unwrap(); // SIGKILL: no destructor, no checkpoint
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    let (store, report) = open(&path);
    assert_eq!(report.interrupted, 1);
    let row = only(&store);
    assert_eq!(
        (row.text.as_deref(), row.status.known()),
        (Some("kill -9 の前の行"), Some(Status::Interrupted))
    );
}

// ---------------------------------------------------------------------------------------------
// Unreadable files, directories, modes
// ---------------------------------------------------------------------------------------------

/// Deterministic noise that is no SQLite header.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn assert_fresh_store_works(store: &SqliteStore) {
    assert!(store.history(10, None).unwrap().is_empty());
    let id = store.begin("新しい", Source::Cli, t(0)).unwrap();
    store.finish(id, &skipped(), &[]).unwrap();
    assert_eq!(only(store).status, Status::Superseded);
}

#[test]
fn random_bytes_at_the_path_are_moved_aside_with_their_wal_and_shm() {
    let (dir, path) = tmp();
    let garbage = noise(8192, 7);
    std::fs::write(&path, &garbage).unwrap();
    std::fs::write(dir.path().join("yaku.db-wal"), noise(100, 8)).unwrap();
    std::fs::write(dir.path().join("yaku.db-shm"), noise(200, 9)).unwrap();

    let (store, report) = open(&path);
    let moved = report
        .moved_aside
        .clone()
        .expect("the report says the file was moved");
    assert!(moved.reason.contains("not a database"), "{}", moved.reason);
    let name = moved.to.file_name().unwrap().to_string_lossy().into_owned();
    let ts = name
        .strip_prefix("yaku.db.corrupt-")
        .expect("same base name + suffix");
    let ts: u64 = ts.parse().expect("a unix timestamp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(ts <= now && now - ts < 60, "{ts} vs {now}");
    assert_eq!(moved.to.parent(), Some(dir.path()));
    assert!(
        std::fs::read(&moved.to).unwrap() == garbage,
        "the moved file differs"
    );
    let wal = std::fs::read(dir.path().join(format!("{name}-wal"))).unwrap();
    assert!(wal == noise(100, 8), "the moved WAL differs");
    // The -shm is SQLite's index of the WAL, rebuilt on open: moved, its bytes don't matter.
    assert!(dir.path().join(format!("{name}-shm")).exists());
    assert_eq!(
        names_starting(dir.path(), "yaku.db.corrupt-"),
        [name.clone(), format!("{name}-shm"), format!("{name}-wal")]
    );
    assert_fresh_store_works(&store);
    drop(store);
    // The fresh store is healthy: nothing is moved the next time.
    assert_eq!(open(&path).1.moved_aside, None);
}

#[test]
fn a_command_open_leaves_pending_lines_and_still_moves_a_non_database_aside() {
    let (dir, path) = tmp();
    {
        let (daemon, _) = open(&path);
        daemon.begin("翻訳中", Source::Clipboard, t(0)).unwrap();
        let (command, report) = SqliteStore::open_with(&path, &Options::command()).unwrap();
        assert_eq!(report, OpenReport::default());
        assert_eq!(only(&command).status, Status::Pending);
    }
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "not a database").unwrap();
    let (command, report) = SqliteStore::open_with(&path, &Options::command()).unwrap();
    assert!(report.moved_aside.is_some());
    assert_eq!(names_starting(dir.path(), "yaku.db.corrupt-").len(), 1);
    assert_fresh_store_works(&command);
}

#[test]
fn a_text_file_at_the_path_is_moved_aside() {
    let (dir, path) = tmp();
    std::fs::write(&path, "this is my shopping list\nnot a database\n").unwrap();
    let (store, report) = open(&path);
    let moved = report.moved_aside.unwrap();
    assert_eq!(
        std::fs::read_to_string(&moved.to).unwrap(),
        "this is my shopping list\nnot a database\n"
    );
    assert_eq!(names_starting(dir.path(), "yaku.db.corrupt-").len(), 1);
    assert_fresh_store_works(&store);
}

#[test]
fn a_database_with_corrupt_pages_is_moved_aside() {
    let (dir, path) = tmp();
    {
        let (store, _) = open(&path);
        for i in 0..2000 {
            let id = store
                .begin(
                    &format!("行 {i} {}", "長い".repeat(20)),
                    Source::Clipboard,
                    t(i),
                )
                .unwrap();
            store
                .finish(
                    id,
                    &translated("gemini", &["A fairly long translation."], i),
                    &[ok("gemini", i)],
                )
                .unwrap();
        }
    }
    // Keep page 1 (header and schema), scribble over the next pages.
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 4096, "{} bytes", bytes.len());
    bytes[4096..40 * 4096].copy_from_slice(&noise(39 * 4096, 3));
    std::fs::write(&path, &bytes).unwrap();

    let (store, report) = open(&path);
    let moved = report.moved_aside.expect("corruption detected");
    assert!(
        std::fs::read(&moved.to).unwrap() == bytes,
        "the moved file differs"
    );
    // Closed cleanly before: no WAL of its own, so nothing else is moved.
    assert_eq!(names_starting(dir.path(), "yaku.db.corrupt-").len(), 1);
    assert_fresh_store_works(&store);
}

#[test]
fn a_directory_at_the_path_is_a_clear_error() {
    let (_dir, path) = tmp();
    std::fs::create_dir(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert!(path.is_dir(), "the directory is left alone");
}

#[cfg(unix)]
#[test]
fn a_new_store_file_is_0600_in_new_0700_directories() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("share").join("yaku").join("yaku.db");
    let (store, _) = open(&path);
    store.begin("秘密", Source::Clipboard, t(0)).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("share")), 0o700);
    assert_eq!(mode(&dir.path().join("share/yaku")), 0o700);
    // SQLite gives the WAL the main file's mode.
    let wal = dir.path().join("share/yaku/yaku.db-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal), 0o600);
}

#[cfg(unix)]
#[test]
fn a_store_file_moved_aside_is_replaced_by_a_0600_file() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = tmp();
    std::fs::write(&path, noise(4096, 1)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_store, report) = open(&path);
    assert!(report.moved_aside.is_some());
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

// ---------------------------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------------------------

#[test]
fn a_database_at_version_0_without_tables_is_migrated() {
    let (_dir, path) = tmp();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE scratch (x); DROP TABLE scratch;")
            .unwrap();
    }
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
    assert_eq!(user_version(&path), 0);
    let (store, report) = open(&path);
    assert_eq!(report.migrated_from, Some(0));
    assert_eq!(report.moved_aside, None);
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    assert_fresh_store_works(&store);
    assert_eq!(count(&path, "cache"), 0);
}

#[test]
fn a_version_1_file_gains_the_speaker_column_with_null_for_its_old_rows() {
    let (_dir, path) = tmp();
    {
        let (store, _) = open(&path);
        let id = store
            .begin("【春香】「前から」", Source::Clipboard, t(0))
            .unwrap();
        store.finish(id, &skipped(), &[]).unwrap();
    }
    {
        // What version 1 wrote: the same tables without the column.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE lines DROP COLUMN chosen;
             DROP INDEX lines_game; ALTER TABLE lines DROP COLUMN game;
             ALTER TABLE cache DROP COLUMN game; ALTER TABLE lines DROP COLUMN speaker;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let (store, report) = open(&path);
    assert_eq!(report.migrated_from, Some(1));
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    for text in ["【春香】「ねえ、聞いてる？」", "美咲：うん", "おはよう"] {
        store.begin(text, Source::Clipboard, t(1)).unwrap();
    }
    let speakers: Vec<Option<String>> = store
        .history(10, None)
        .unwrap()
        .iter()
        .map(|r| r.speaker.clone())
        .collect();
    assert_eq!(
        speakers,
        [None, Some("春香".into()), Some("美咲".into()), None],
        "the old row stays NULL; new rows name their speaker"
    );
    let json = store.history(10, None).unwrap()[1].to_json();
    assert_eq!(json["speaker"], "春香");
    assert_eq!(
        json["text"], "【春香】「ねえ、聞いてる？」",
        "the text is kept whole"
    );
    // A hand edit that left a number there is shown as its text, as in every text column.
    Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE lines SET speaker = 42 WHERE text = 'おはよう';")
        .unwrap();
    assert_eq!(
        store.history(10, None).unwrap()[3].speaker.as_deref(),
        Some("42")
    );
}

#[test]
fn a_new_file_reports_migration_from_version_0() {
    let (_dir, path) = tmp();
    assert_eq!(open(&path).1.migrated_from, Some(0));
}

#[test]
fn reopening_an_up_to_date_store_changes_nothing() {
    let (_dir, path) = tmp();
    {
        let (store, _) = open(&path);
        let id = store.begin("残る", Source::Clipboard, t(0)).unwrap();
        store.finish(id, &skipped(), &[]).unwrap();
    }
    let schema_cookie = |p: &Path| -> i64 {
        Connection::open(p)
            .unwrap()
            .pragma_query_value(None, "schema_version", |r| r.get(0))
            .unwrap()
    };
    let before = schema_cookie(&path);
    let (store, report) = open(&path);
    assert_eq!(report, OpenReport::default());
    assert_eq!(schema_cookie(&path), before, "the schema was rewritten");
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    assert_eq!(only(&store).text, "残る");
}

#[test]
fn a_store_from_a_newer_version_is_refused_and_left_untouched() {
    let (dir, path) = tmp();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE lines (future TEXT); INSERT INTO lines VALUES ('keep me'); PRAGMA user_version = 999;",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("999") && msg.contains("newer"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    assert!(names_starting(dir.path(), "yaku.db.corrupt").is_empty());
    let conn = Connection::open(&path).unwrap();
    let kept: String = conn
        .query_row("SELECT future FROM lines", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, "keep me");
}

// ---------------------------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------------------------

fn answer(best: &str, provider: &str) -> CachedAnswer {
    CachedAnswer {
        options: vec![best.into(), format!("{best} (alt)")],
        provider: provider.into(),
        model: format!("{provider}-model"),
    }
}

fn hits(path: &Path, key: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT hits FROM cache WHERE key = ?1", [key], |r| r.get(0))
        .unwrap()
}

#[test]
fn cache_miss_then_put_then_hit() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    assert_eq!(store.cache_get("ja>en:おはよう").unwrap(), None);
    store
        .cache_put("ja>en:おはよう", &answer("Good morning.", "gemini"))
        .unwrap();
    assert_eq!(
        store.cache_get("ja>en:おはよう").unwrap(),
        Some(answer("Good morning.", "gemini"))
    );
    assert_eq!(store.cache_get("ja>en:こんばんは").unwrap(), None);
}

#[test]
fn cache_hits_are_counted_per_key() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    store.cache_put("a", &answer("A", "gemini")).unwrap();
    store.cache_put("b", &answer("B", "gemini")).unwrap();
    assert_eq!(hits(&path, "a"), 0);
    for _ in 0..3 {
        store.cache_get("a").unwrap().unwrap();
    }
    store.cache_get("b").unwrap().unwrap();
    store.cache_get("missing").unwrap();
    assert_eq!((hits(&path, "a"), hits(&path, "b")), (3, 1));
}

#[test]
fn cache_put_replaces_the_answer_and_resets_its_hits() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    store.cache_put("k", &answer("Old.", "gemini")).unwrap();
    store.cache_get("k").unwrap();
    store.cache_put("k", &answer("New.", "groq")).unwrap();
    assert_eq!(hits(&path, "k"), 0);
    assert_eq!(store.cache_get("k").unwrap(), Some(answer("New.", "groq")));
    assert_eq!(count(&path, "cache"), 1);
}

#[test]
fn cache_survives_reopening() {
    let (_dir, path) = tmp();
    open(&path)
        .0
        .cache_put("k", &answer("Kept.", "gemini"))
        .unwrap();
    assert_eq!(
        open(&path).0.cache_get("k").unwrap(),
        Some(answer("Kept.", "gemini"))
    );
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/// A scripted history (times `t(0)`..`t(17)`):
/// - 0: left pending, then reopened → interrupted
/// - 1: gemini rate_limited (5000 ms) → groq ok (300): translated by groq, a fallback
/// - 2: gemini ok (100): translated
/// - 3: cached
/// - 4: gemini transient (900), gemini transient (950, opens the breaker), groq refused → failed
/// - 5..=13: gemini ok, latencies 200..=1000 shuffled: translated
/// - 14: skipped
/// - 15: still pending (not counted)
/// - 16: gemini unauthorized (50, opens the breaker) → groq ok (250): a fallback
/// - 17: gemini model_unavailable (60), groq bad_request (70) → failed
fn scripted_store(path: &Path) -> SqliteStore {
    {
        let (store, _) = open(path);
        store.begin("line 0", Source::Clipboard, t(0)).unwrap();
    }
    let (store, report) = open(path);
    assert_eq!(report.interrupted, 1);
    let line = |i: u64, finished: Finished, attempts: &[AttemptRecord]| {
        let id = store
            .begin(&format!("line {i}"), Source::Clipboard, t(i))
            .unwrap();
        store.finish(id, &finished, attempts).unwrap();
    };
    line(
        1,
        translated("groq", &["One."], 5300),
        &[
            attempt("gemini", "rate_limited", 5000, false),
            ok("groq", 300),
        ],
    );
    line(
        2,
        translated("gemini", &["Two."], 100),
        &[ok("gemini", 100)],
    );
    line(3, cached("gemini", &["Three."]), &[]);
    line(
        4,
        failed("gemini: transient; groq: refused"),
        &[
            attempt("gemini", "transient", 900, false),
            attempt("gemini", "transient", 950, true),
            attempt("groq", "refused", 400, false),
        ],
    );
    for (i, latency) in (5..=13).zip([700, 200, 1000, 400, 900, 300, 600, 800, 500]) {
        line(
            i,
            translated("gemini", &["Ok."], latency),
            &[ok("gemini", latency)],
        );
    }
    line(14, skipped(), &[]);
    store.begin("line 15", Source::Clipboard, t(15)).unwrap();
    line(
        16,
        translated("groq", &["Sixteen."], 300),
        &[attempt("gemini", "unauthorized", 50, true), ok("groq", 250)],
    );
    line(
        17,
        failed("gemini: model gone; groq: bad request"),
        &[
            attempt("gemini", "model_unavailable", 60, false),
            attempt("groq", "bad_request", 70, false),
        ],
    );
    store
}

#[test]
fn stats_match_a_scripted_sequence_of_outcomes() {
    let (_dir, path) = tmp();
    let store = scripted_store(&path);
    let s = store.stats(None).unwrap();
    assert_eq!(s.since, None);
    assert_eq!(
        (
            s.lines,
            s.translated,
            s.cached,
            s.failed,
            s.skipped,
            s.interrupted
        ),
        (17, 12, 1, 2, 1, 1)
    );
    assert_eq!(s.cache_hit_rate, Some(1.0 / 13.0));
    let gemini = ProviderStats {
        provider: "gemini".into(),
        requests: 15,
        ok: 10,
        rate_limited: 1,
        transient: 2,
        refused: 0,
        unauthorized: 1,
        model_unavailable: 1,
        bad_request: 0,
        breaker_opens: 2,
        prefetch_requests: 0,
        lookahead_requests: 0,
        lines_served: 10,
        lines_fallback: 0,
        // ok latencies 100..=1000: nearest rank 5 of 10 and 10 of 10 (interpolation would
        // give 550 and 955).
        cancelled: 0,
        p50_ms: Some(500),
        p90_ms: Some(900),
        p95_ms: Some(1000),
    };
    let groq = ProviderStats {
        provider: "groq".into(),
        requests: 4,
        ok: 2,
        rate_limited: 0,
        transient: 0,
        refused: 1,
        unauthorized: 0,
        model_unavailable: 0,
        bad_request: 1,
        breaker_opens: 0,
        prefetch_requests: 0,
        lookahead_requests: 0,
        lines_served: 2,
        lines_fallback: 2,
        cancelled: 0,
        p50_ms: Some(250),
        p90_ms: Some(300),
        p95_ms: Some(300),
    };
    assert_eq!(s.providers, vec![gemini, groq]);
}

#[test]
fn stats_since_counts_only_later_lines_and_their_requests() {
    let (_dir, path) = tmp();
    let store = scripted_store(&path);
    // Inclusive: line 5 is accepted exactly at `since`.
    let s = store.stats(Some(t(5))).unwrap();
    assert_eq!(s.since, Some(t(5)));
    assert_eq!(
        (
            s.lines,
            s.translated,
            s.cached,
            s.failed,
            s.skipped,
            s.interrupted
        ),
        (12, 10, 0, 1, 1, 0)
    );
    assert_eq!(s.cache_hit_rate, Some(0.0));
    type Figures<'a> = (&'a str, u64, u64, u64, u64, u64, Option<u64>, Option<u64>);
    let by_name: Vec<Figures> = s
        .providers
        .iter()
        .map(|p| {
            (
                p.provider.as_str(),
                p.requests,
                p.ok,
                p.breaker_opens,
                p.lines_served,
                p.lines_fallback,
                p.p50_ms,
                p.p95_ms,
            )
        })
        .collect();
    // gemini ok latencies 200..=1000 (9): ranks 5 and 9.
    assert_eq!(
        by_name,
        vec![
            ("gemini", 11, 9, 1, 9, 0, Some(600), Some(1000)),
            ("groq", 2, 1, 0, 1, 1, Some(250), Some(250)),
        ]
    );
    assert_eq!(
        s.providers[0].model_unavailable + s.providers[0].unauthorized,
        2
    );
    assert_eq!(s.providers[1].bad_request, 1);

    let later = store.stats(Some(t(100))).unwrap();
    assert_eq!((later.lines, later.cache_hit_rate), (0, None));
    assert!(later.providers.is_empty());
}

#[test]
fn stats_json_has_the_documented_shape() {
    let (_dir, path) = tmp();
    let store = scripted_store(&path);
    let v = store
        .stats(Some(t(0) + Duration::from_millis(5)))
        .unwrap()
        .to_json();
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = [
        "since",
        "lines",
        "translated",
        "cached",
        "failed",
        "skipped",
        "interrupted",
        "cache_hit_rate",
        "providers",
    ]
    .into();
    assert_eq!(keys, want);
    assert_eq!(v["since"], "2027-01-15T08:00:00.005Z");
    assert_eq!(v["lines"], 16);
    assert_eq!(v["cache_hit_rate"], 1.0 / 13.0);
    let p = &v["providers"][1];
    let pkeys: BTreeSet<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    let pwant: BTreeSet<&str> = [
        "provider",
        "requests",
        "ok",
        "rate_limited",
        "transient",
        "refused",
        "unauthorized",
        "model_unavailable",
        "bad_request",
        "cancelled",
        "breaker_opens",
        "prefetch_requests",
        "lookahead_requests",
        "lines_served",
        "lines_fallback",
        "p50_ms",
        "p90_ms",
        "p95_ms",
    ]
    .into();
    assert_eq!(pkeys, pwant);
    assert_eq!(
        (p["provider"].as_str(), p["lines_fallback"].as_u64()),
        (Some("groq"), Some(2))
    );
    assert_eq!(p["p95_ms"], 300);

    let empty = open(&tmp().1).0.stats(None).unwrap().to_json();
    assert!(
        empty["since"].is_null() && empty["cache_hit_rate"].is_null(),
        "{empty}"
    );
    assert_eq!(empty["providers"], Value::Array(vec![]));
}

#[test]
fn stats_table_lists_every_provider_and_figure() {
    let (_dir, path) = tmp();
    let store = scripted_store(&path);
    let table = render_table(&store.stats(None).unwrap());
    assert!(
        table.contains("Lines 17: translated 12, cached 1, failed 2, skipped 1, interrupted 1"),
        "{table}"
    );
    assert!(table.contains("Cache hit rate 7.7%"), "{table}");
    let row = |label: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("{label}: {table}"));
        line[label.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(row("requests"), ["15", "4"]);
    assert_eq!(row("breaker opens"), ["2", "0"]);
    assert_eq!(row("  as fallback"), ["0", "2"]);
    assert_eq!(row("p50 ms"), ["500", "250"]);
    assert_eq!(row("p95 ms"), ["1000", "300"]);
}

// ---------------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------------

#[test]
fn history_returns_the_last_n_lines_oldest_first() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let ids: Vec<i64> = (0..25)
        .map(|i| {
            store
                .begin(&format!("行 {i}"), Source::Clipboard, t(i))
                .unwrap()
        })
        .collect();
    let last5: Vec<i64> = store
        .history(5, None)
        .unwrap()
        .iter()
        .map(|r| r.id.unwrap())
        .collect();
    assert_eq!(last5, ids[20..]);
    let texts: Vec<String> = store
        .history(2, None)
        .unwrap()
        .into_iter()
        .map(|r| r.text.to_string())
        .collect();
    assert_eq!(texts, ["行 23", "行 24"]);
    assert_eq!(store.history(100, None).unwrap().len(), 25);
    assert!(store.history(0, None).unwrap().is_empty());
}

#[test]
fn history_grep_matches_text_best_and_options_ignoring_case() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let add = |text: &str, f: Finished| {
        let id = store.begin(text, Source::Clipboard, t(0)).unwrap();
        store.finish(id, &f, &[]).unwrap();
        id
    };
    let in_text = add("The Cat sat", skipped());
    let in_best = add("ねこ", translated("gemini", &["ConCATenated"], 1));
    let in_option = add("猫", translated("gemini", &["Kitty", "A BOBCAT"], 1));
    let _in_error_only = add("犬", failed("cat: no such provider"));
    let _none = add("dog", translated("gemini", &["Dog"], 1));
    let accented = add("学校", translated("gemini", &["school", "l'école"], 1));
    let quoted = add(
        "言った",
        translated("gemini", &["She said \"no\", then left\\"], 1),
    );
    let percent = add("100% sure_thing", skipped());
    let _no_percent = add("1000 sure thing", skipped());
    // U+212A KELVIN SIGN: a letter of its own for an ASCII needle, "k" for a needle with it.
    let kelvin = add("273 \u{212A}ELVIN", skipped());

    let ids = |grep: &str, n: usize| -> Vec<i64> {
        store
            .history(n, Some(grep))
            .unwrap()
            .iter()
            .map(|r| r.id.unwrap())
            .collect()
    };
    assert_eq!(ids("cat", 10), [in_text, in_best, in_option]);
    assert_eq!(ids("CAT", 10), [in_text, in_best, in_option]);
    // The last n matches, oldest first.
    assert_eq!(ids("cat", 2), [in_best, in_option]);
    assert_eq!(ids("ねこ", 10), [in_best]);
    assert_eq!(ids("L'ÉCOLE", 10), [accented]);
    assert_eq!(ids("\"no\", then left\\", 10), [quoted]);
    // LIKE's wildcards match only themselves.
    assert_eq!(ids("0% s", 10), [percent]);
    assert_eq!(ids("_", 10), [percent]);
    assert!(ids("kelvin", 10).is_empty());
    assert_eq!(ids("\u{212A}elvin", 10), [kelvin]);
    assert_eq!(ids("\u{212A}ELVIN", 10), [kelvin]);
    assert!(ids("zebra", 10).is_empty());
}

#[test]
fn history_json_has_exactly_the_documented_keys_and_an_rfc3339_time() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let at = UNIX_EPOCH + Duration::from_millis(1_795_776_247_295);
    let id = store.begin("おはよう", Source::Clipboard, at).unwrap();
    store
        .finish(
            id,
            &translated("gemini", &["Good morning.", "Morning."], 812),
            &[ok("gemini", 812)],
        )
        .unwrap();
    store
        .begin("まだ", Source::Cli, at + Duration::from_secs(1))
        .unwrap();

    let rows = store.history(10, None).unwrap();
    let done = rows[0].to_json();
    let keys: BTreeSet<&str> = done
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = [
        "id",
        "at",
        "text",
        "status",
        "provider",
        "best",
        "options",
        "latency_ms",
        "error",
        "speaker",
        "game",
        "chosen",
    ]
    .into();
    assert_eq!(keys, want);
    assert_eq!(done["id"], id);
    assert_eq!(done["at"], "2026-11-27T10:44:07.295Z");
    assert_eq!(done["text"], "おはよう");
    assert_eq!(done["status"], "translated");
    assert_eq!(done["provider"], "gemini");
    assert_eq!(done["best"], "Good morning.");
    assert_eq!(
        done["options"],
        serde_json::json!(["Good morning.", "Morning."])
    );
    assert_eq!(done["latency_ms"], 812);
    assert!(done["error"].is_null());
    assert!(done["speaker"].is_null(), "おはよう names no speaker");

    let pending = rows[1].to_json();
    assert_eq!(pending.as_object().unwrap().len(), want.len());
    assert_eq!(pending["at"], "2026-11-27T10:44:08.295Z");
    assert_eq!(pending["status"], "pending");
    for k in ["provider", "best", "latency_ms", "error"] {
        assert!(pending[k].is_null(), "{k}: {pending}");
    }
    assert_eq!(pending["options"], serde_json::json!([]));
}

// ---------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------

#[test]
fn jsonl_export_parses_back_to_the_same_rows() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    awkward_history(&store);
    let mut out = Vec::new();
    let n = store.export(ExportFormat::Jsonl, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(n, 7);
    assert_eq!(text.lines().count(), 7, "one object per line: {text}");
    assert!(text.ends_with('\n'));
    let parsed: Vec<JsonRow> = text
        .lines()
        .map(|l| json_row_from(&serde_json::from_str::<Value>(l).unwrap()))
        .collect();
    let stored: Vec<JsonRow> = store
        .history(usize::MAX, None)
        .unwrap()
        .iter()
        .map(json_row_of)
        .collect();
    assert_eq!(parsed, stored);
}

#[test]
fn csv_export_parses_back_to_the_same_rows() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    awkward_history(&store);
    let mut out = Vec::new();
    let n = store.export(ExportFormat::Csv, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(n, 7);
    assert!(text.starts_with(
        "id,at,text,source,status,provider,model,best,options,latency_ms,error,speaker,chosen\r\n"
    ));
    let records = parse_csv(&text);
    assert_eq!(
        records[0]
            .iter()
            .map(|f| f.clone().unwrap())
            .collect::<Vec<_>>()
            .join(","),
        CSV_HEADER
    );
    let parsed: Vec<HistoryRow> = records[1..].iter().map(|r| row_from_csv(r)).collect();
    let stored = store.history(usize::MAX, None).unwrap();
    assert_eq!(parsed, stored);
    // The empty-string provider and error survive as "", not as absent.
    assert_eq!(stored[5].provider.as_deref(), Some(""));
    assert_eq!(stored[5].error.as_deref(), Some(""));
    assert_eq!(stored[6].provider, None);
}

#[test]
fn export_of_an_empty_history_is_a_header_or_nothing() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let mut csv = Vec::new();
    assert_eq!(store.export(ExportFormat::Csv, &mut csv).unwrap(), 0);
    assert_eq!(csv, format!("{CSV_HEADER}\r\n").into_bytes());
    let mut jsonl = Vec::new();
    assert_eq!(store.export(ExportFormat::Jsonl, &mut jsonl).unwrap(), 0);
    assert!(jsonl.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn csv_and_jsonl_round_trip_arbitrary_text(
        lines in proptest::collection::vec(
            ("[a-zA-Z0-9 ,\"\r\n\t|\\\\日本語あ]{0,24}", proptest::collection::vec("[a-z ,\"\n\\\\猫]{0,12}", 0..4)),
            1..6,
        )
    ) {
        let (_dir, path) = tmp();
        let (store, _) = open(&path);
        for (i, (text, options)) in lines.iter().enumerate() {
            let id = store.begin(text, Source::Clipboard, t(i as u64)).unwrap();
            let opts: Vec<&str> = options.iter().map(String::as_str).collect();
            let f = if opts.is_empty() { failed(text) } else { translated("gemini", &opts, 7) };
            store.finish(id, &f, &[]).unwrap();
        }
        let stored = store.history(usize::MAX, None).unwrap();

        let mut csv = Vec::new();
        store.export(ExportFormat::Csv, &mut csv).unwrap();
        let records = parse_csv(&String::from_utf8(csv).unwrap());
        let from_csv: Vec<HistoryRow> = records[1..].iter().map(|r| row_from_csv(r)).collect();
        prop_assert_eq!(&from_csv, &stored);

        let mut jsonl = Vec::new();
        store.export(ExportFormat::Jsonl, &mut jsonl).unwrap();
        let from_jsonl: Vec<JsonRow> = String::from_utf8(jsonl).unwrap().lines()
            .map(|l| json_row_from(&serde_json::from_str::<Value>(l).unwrap()))
            .collect();
        prop_assert_eq!(from_jsonl, stored.iter().map(json_row_of).collect::<Vec<_>>());
    }
}

// ---------------------------------------------------------------------------------------------
// Retention and clearing
// ---------------------------------------------------------------------------------------------

fn finished_lines(store: &SqliteStore, times: &[SystemTime]) -> Vec<i64> {
    times
        .iter()
        .map(|&at| {
            let id = store.begin("行", Source::Clipboard, at).unwrap();
            store
                .finish(
                    id,
                    &translated("groq", &["Line."], 5),
                    &[attempt("gemini", "transient", 5, false), ok("groq", 5)],
                )
                .unwrap();
            id
        })
        .collect()
}

#[test]
fn prune_keeps_the_newest_max_rows_lines_and_their_attempts_only() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let times: Vec<SystemTime> = (0..10).map(t).collect();
    let ids = finished_lines(&store, &times);
    assert_eq!(store.prune(4, 0, t(10)).unwrap(), 6);
    let kept: Vec<i64> = store
        .history(100, None)
        .unwrap()
        .iter()
        .map(|r| r.id.unwrap())
        .collect();
    assert_eq!(kept, ids[6..]);
    assert_eq!(count(&path, "attempts"), 8);
    let orphans: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM attempts WHERE line_id NOT IN (SELECT id FROM lines)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    assert_eq!(store.stats(None).unwrap().providers[1].lines_served, 4);
    // Already within the limit: nothing more goes.
    assert_eq!(store.prune(4, 0, t(10)).unwrap(), 0);
}

#[test]
fn prune_deletes_lines_older_than_max_days() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let now = t(30 * 86_400);
    let day = Duration::from_secs(86_400);
    let ids = finished_lines(
        &store,
        &[
            now - day * 10,
            now - day * 7 - Duration::from_millis(1),
            now - day * 7,
            now - day * 3,
            now - Duration::from_secs(60),
        ],
    );
    assert_eq!(store.prune(0, 7, now).unwrap(), 2);
    let kept: Vec<i64> = store
        .history(100, None)
        .unwrap()
        .iter()
        .map(|r| r.id.unwrap())
        .collect();
    assert_eq!(kept, ids[2..], "exactly 7 days old is kept");
    assert_eq!(count(&path, "attempts"), 6);
    assert_eq!(store.prune(0, 2, now).unwrap(), 2);
    assert_eq!(store.history(100, None).unwrap().len(), 1);
}

#[test]
fn prune_through_the_store_port_applies_the_retention() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    finished_lines(&store, &[t(0), t(1), t(2)]);
    let port: &dyn Store = &store;
    assert_eq!(port.prune(1, 0, t(3)).unwrap(), 2);
    assert_eq!(store.history(10, None).unwrap().len(), 1);
}

#[test]
fn prune_with_zero_limits_keeps_everything() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    finished_lines(&store, &[UNIX_EPOCH + Duration::from_secs(1), t(0), t(1)]);
    assert_eq!(store.prune(0, 0, t(10_000_000)).unwrap(), 0);
    assert_eq!(store.history(100, None).unwrap().len(), 3);
}

#[test]
fn prune_keeps_a_pending_line() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let old = store
        .begin("古いが翻訳中", Source::Clipboard, t(0))
        .unwrap();
    finished_lines(&store, &[t(1), t(2)]);
    assert_eq!(store.prune(1, 1, t(10 * 86_400)).unwrap(), 2);
    assert_eq!(only(&store).id, Some(old));
    store.finish(old, &skipped(), &[]).unwrap();
}

#[test]
fn clear_deletes_history_and_attempts_but_keeps_the_cache() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    finished_lines(&store, &[t(0), t(1), t(2)]);
    store.cache_put("k", &answer("Kept.", "gemini")).unwrap();
    assert_eq!(store.clear().unwrap(), 3);
    assert!(store.history(10, None).unwrap().is_empty());
    assert_eq!(count(&path, "attempts"), 0);
    assert!(store.stats(None).unwrap().providers.is_empty());
    assert_eq!(
        store.cache_get("k").unwrap(),
        Some(answer("Kept.", "gemini"))
    );
    assert_eq!(store.clear().unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Concurrency and locking
// ---------------------------------------------------------------------------------------------

#[test]
fn begin_waits_for_the_busy_timeout_then_fails_cleanly_while_another_connection_writes() {
    let (_dir, path) = tmp();
    let opts = Options {
        busy_timeout: Duration::from_millis(200),
        ..Options::default()
    };
    let (store, _) = SqliteStore::open_with(&path, &opts).unwrap();
    let other = Connection::open(&path).unwrap();
    other
        .execute_batch(
            "BEGIN IMMEDIATE; INSERT INTO cache (key, options, provider, model, created_ms) VALUES ('k', '[]', 'p', 'm', 0);",
        )
        .unwrap();

    let started = Instant::now();
    let err = store.begin("待つ", Source::Clipboard, t(0)).unwrap_err();
    let waited = started.elapsed();
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(
        waited >= Duration::from_millis(190),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    // Reads still work under WAL while the writer holds its lock.
    assert!(store.history(10, None).unwrap().is_empty());

    other.execute_batch("COMMIT").unwrap();
    store.begin("待った", Source::Clipboard, t(1)).unwrap();
    assert_eq!(only(&store).text, "待った");
}

#[test]
fn begin_waits_for_a_short_write_transaction_to_end() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        other.execute_batch("COMMIT").unwrap();
    });
    store.begin("待つ", Source::Clipboard, t(0)).unwrap();
    releaser.join().unwrap();
}

#[test]
fn the_store_is_shared_between_threads() {
    let (_dir, path) = tmp();
    let store = Arc::new(open(&path).0);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in 0..25 {
                    let id = store
                        .begin(&format!("{w}-{i}"), Source::Clipboard, t(i))
                        .unwrap();
                    store
                        .finish(id, &translated("gemini", &["x"], 1), &[ok("gemini", 1 + w)])
                        .unwrap();
                    store
                        .cache_put(&format!("{w}-{i}"), &answer("x", "gemini"))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let s = store.stats(None).unwrap();
    assert_eq!(
        (s.lines, s.translated, s.providers[0].requests),
        (200, 200, 200)
    );
    assert_eq!(count(&path, "cache"), 200);
}

#[test]
fn prune_bounds_the_cache_by_max_rows_keeping_the_newest_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = SqliteStore::open(&dir.path().join("yaku.db")).unwrap();
    for i in 0..10 {
        let answer = CachedAnswer {
            options: vec![format!("A{i}")],
            provider: "p".into(),
            model: "m".into(),
        };
        store.cache_put(&format!("k{i}"), &answer).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2)); // distinct created_ms
    }
    store.prune(4, 0, SystemTime::now()).unwrap();
    let kept: Vec<bool> = (0..10)
        .map(|i| store.cache_get(&format!("k{i}")).unwrap().is_some())
        .collect();
    assert_eq!(
        kept,
        [
            false, false, false, false, false, false, true, true, true, true
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Game profiles
// ---------------------------------------------------------------------------------------------

#[test]
fn history_and_stats_filter_by_game_and_json_names_each_lines_game() {
    let (_dir, path) = tmp();
    let (store, _) = open(&path);
    for (text, game, provider) in [
        ("桜です", Some("sakura"), "gemini"),
        ("岡部です", Some("steins"), "groq"),
        ("ただの行", None, "gemini"),
        ("桜がまた", Some("sakura"), "groq"),
    ] {
        let id = store
            .begin_game(text, Source::Clipboard, t(1), game)
            .unwrap();
        store
            .finish(id, &translated(provider, &["x"], 10), &[ok(provider, 10)])
            .unwrap();
    }
    let texts = |rows: Vec<HistoryRow>| -> Vec<String> {
        rows.into_iter()
            .map(|r| r.text.as_deref().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        texts(store.history_of(10, None, Some("sakura")).unwrap()),
        ["桜です", "桜がまた"]
    );
    assert_eq!(
        texts(store.history_of(1, None, Some("sakura")).unwrap()),
        ["桜がまた"],
        "the limit counts the game's lines"
    );
    assert_eq!(
        texts(store.history_of(10, Some("また"), Some("sakura")).unwrap()),
        ["桜がまた"]
    );
    assert!(
        store
            .history_of(10, Some("岡部"), Some("sakura"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.history(10, None).unwrap().len(), 4);
    assert!(store.history_of(10, None, Some("nope")).unwrap().is_empty());

    let games: Vec<Value> = store
        .history(10, None)
        .unwrap()
        .iter()
        .map(|r| r.to_json()["game"].clone())
        .collect();
    assert_eq!(
        games,
        [
            Value::from("sakura"),
            Value::from("steins"),
            Value::Null,
            Value::from("sakura")
        ]
    );

    let sakura = store.stats_of(None, Some("sakura")).unwrap();
    assert_eq!((sakura.lines, sakura.translated), (2, 2));
    let requests: Vec<(String, u64)> = sakura
        .providers
        .iter()
        .map(|p| (p.provider.clone(), p.requests))
        .collect();
    assert_eq!(
        requests,
        [("gemini".to_string(), 1), ("groq".to_string(), 1)]
    );
    let later = store.stats_of(Some(t(2)), Some("sakura")).unwrap();
    assert_eq!(later.lines, 0, "--since applies with --game");
    assert_eq!(store.stats_of(None, None).unwrap().lines, 4);

    // A hand edit that leaves a blob or a number in `game` is read as best it can be.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "UPDATE lines SET game = X'FF00' WHERE text = 'ただの行';
         UPDATE lines SET game = 7 WHERE text = '岡部です';",
    )
    .unwrap();
    let rows = store.history(10, None).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1].game.as_deref(), Some("7"));
    assert_eq!(store.history_of(10, None, Some("sakura")).unwrap().len(), 2);
}

#[test]
fn a_version_2_store_is_migrated_keeping_its_lines_with_no_game() {
    let (_dir, path) = tmp();
    {
        let (store, _) = open(&path);
        let id = store.begin("古い行", Source::Cli, t(0)).unwrap();
        store
            .finish(id, &translated("gemini", &["old"], 5), &[])
            .unwrap();
    }
    {
        // What a file written by the previous yaku (version 2) holds.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE lines DROP COLUMN chosen;
             DROP INDEX lines_game; ALTER TABLE lines DROP COLUMN game;
             ALTER TABLE cache DROP COLUMN game; PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let (store, report) = open(&path);
    assert_eq!(report.migrated_from, Some(2));
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    let rows = store.history(10, None).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].game, None);
    let id = store
        .begin_game("新しい行", Source::Cli, t(1), Some("sakura"))
        .unwrap();
    assert!(id > 0);
    store
        .cache_put_game(
            "k",
            &CachedAnswer {
                options: vec!["x".into()],
                provider: "gemini".into(),
                model: "m".into(),
            },
            Some("sakura"),
        )
        .unwrap();
    let conn = Connection::open(&path).unwrap();
    let game: Option<String> = conn
        .query_row("SELECT game FROM cache WHERE key = 'k'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(game.as_deref(), Some("sakura"));
}
