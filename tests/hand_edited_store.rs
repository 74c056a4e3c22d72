//! A store that a user edited by hand never crashes or misleads yaku. Each test makes a real
//! store file through the store, edits it with SQL the way `sqlite3 yaku.db` would (values of
//! other types, unknown words, NULLs in a table recreated without NOT NULL), then reads it
//! through the adapter and through the real `yaku` binary: every command succeeds and shows
//! the row as best it can, and a cache entry yaku cannot use is a miss that the next answer
//! replaces.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use rusqlite::Connection;
use serde_json::Value;
use support::*;
use tempfile::TempDir;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use yaku::adapters::store::*;
use yaku::core::store::*;

// ---------------------------------------------------------------------------------------------
// A store with three lines, and ways to edit it
// ---------------------------------------------------------------------------------------------

/// A config, and the store file `yaku` finds beside it (support sets XDG_DATA_HOME there).
struct Fixture {
    /// Removed when the fixture is dropped.
    _dir: TempDir,
    cfg: String,
    db: PathBuf,
}

const KEY: &str = "a cache key";

/// Lines 1 (translated by gemini), 2 (translated by groq after gemini's 429: a fallback) and
/// 3 (failed), with their requests, and one cache entry under `KEY`.
fn fixture() -> Fixture {
    fixture_with_providers("http://127.0.0.1:9")
}

fn fixture_with_providers(gemini_url: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &two_provider_config(gemini_url, "http://127.0.0.1:9"),
        0o600,
    );
    let db = dir.path().join("xdg/yaku/yaku.db");
    let (store, _) = SqliteStore::open(&db).unwrap();
    let lines: [(&str, Finished, Vec<AttemptRecord>); 3] = [
        (
            "一行目です",
            done("gemini", &["answer one", "alt one"], 100),
            vec![attempt("gemini", "ok", 100, false)],
        ),
        (
            "二行目です",
            done("groq", &["answer two"], 200),
            vec![
                attempt("gemini", "rate_limited", 5, true),
                attempt("groq", "ok", 200, false),
            ],
        ),
        (
            "三行目です",
            Finished {
                status: Status::Failed,
                provider: None,
                model: None,
                options: vec![],
                latency_ms: Some(50),
                error: Some("gemini: transient".into()),
            },
            vec![attempt("gemini", "transient", 50, false)],
        ),
    ];
    for (text, finished, attempts) in &lines {
        let id = store
            .begin(text, Source::Clipboard, SystemTime::now())
            .unwrap();
        store.finish(id, finished, attempts).unwrap();
    }
    store.cache_put(KEY, &answer(&["cached one"])).unwrap();
    Fixture {
        _dir: dir,
        cfg: cfg.to_string_lossy().into_owned(),
        db,
    }
}

fn done(provider: &str, options: &[&str], latency: u64) -> Finished {
    Finished {
        status: Status::Translated,
        provider: Some(provider.into()),
        model: Some(format!("{provider}-model")),
        options: options.iter().map(|s| s.to_string()).collect(),
        latency_ms: Some(latency),
        error: None,
    }
}

fn attempt(provider: &str, outcome: &'static str, latency_ms: u64, opened: bool) -> AttemptRecord {
    AttemptRecord {
        provider: provider.into(),
        outcome,
        latency_ms,
        opened_breaker: opened,
    }
}

fn answer(options: &[&str]) -> CachedAnswer {
    CachedAnswer {
        options: options.iter().map(|s| s.to_string()).collect(),
        provider: "gemini".into(),
        model: "gemini-test".into(),
    }
}

/// Runs `sql` on the file, as `sqlite3 yaku.db` would.
fn edit(db: &Path, sql: &str) {
    Connection::open(db).unwrap().execute_batch(sql).unwrap();
}

/// Recreates `table` without its NOT NULL constraints, keeping its rows and indexes: what a
/// user does to put NULLs where the schema forbids them.
fn relax(db: &Path, table: &str) {
    let conn = Connection::open(db).unwrap();
    let schema = |kind: &str| -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_schema WHERE type = ?1 AND tbl_name = ?2 AND sql IS NOT NULL")
            .unwrap();
        stmt.query_map([kind, table], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let create = schema("table").pop().unwrap();
    let indexes = schema("index");
    let relaxed = create.replace("NOT NULL", "").replacen(
        &format!("CREATE TABLE {table}"),
        &format!("CREATE TABLE {table}_relaxed"),
        1,
    );
    let mut script = format!(
        "PRAGMA foreign_keys = OFF; BEGIN; {relaxed};
         INSERT INTO {table}_relaxed SELECT * FROM {table}; DROP TABLE {table};
         ALTER TABLE {table}_relaxed RENAME TO {table};"
    );
    for index in indexes {
        script.push_str(&index);
        script.push(';');
    }
    script.push_str("COMMIT;");
    conn.execute_batch(&script).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Reading it back: the adapter, then the binary
// ---------------------------------------------------------------------------------------------

/// What the adapter reads from the file; every call must succeed.
struct Read {
    rows: Vec<HistoryRow>,
    stats: Stats,
    csv: Vec<Vec<Option<String>>>,
    jsonl: Vec<Value>,
}

fn read(db: &Path) -> Read {
    let store = SqliteStore::open_with(db, &Options::command()).unwrap().0;
    let rows = store.history(100, None).unwrap();
    // Grep walks every row too, with and without the SQL prefilter.
    store.history(100, Some("answer")).unwrap();
    store.history(100, Some("École")).unwrap();
    let stats = store.stats(None).unwrap();
    let mut csv = Vec::new();
    store.export(ExportFormat::Csv, &mut csv).unwrap();
    let mut jsonl = Vec::new();
    store.export(ExportFormat::Jsonl, &mut jsonl).unwrap();
    let jsonl = String::from_utf8(jsonl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Read {
        rows,
        stats,
        csv: parse_csv(&String::from_utf8(csv).unwrap()),
        jsonl,
    }
}

fn row(read: &Read, id: i64) -> &HistoryRow {
    read.rows.iter().find(|r| r.id == Some(id)).unwrap()
}

fn provider<'a>(stats: &'a Stats, name: &str) -> &'a ProviderStats {
    stats.providers.iter().find(|p| p.provider == name).unwrap()
}

/// What the `yaku` commands print for the file; every one must exit 0 without a panic.
struct Shown {
    history: String,
    history_json: Vec<Value>,
    grep: String,
    stats: String,
    stats_json: Value,
    csv: Vec<Vec<Option<String>>>,
    jsonl: Vec<Value>,
    /// Everything the commands logged.
    stderr: String,
}

fn run(f: &Fixture, args: &[&str], stderr: &mut String) -> String {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(["--config".into(), f.cfg.clone()]);
    let out = yaku_blocking(&all, &[], None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "yaku {args:?}: {err}");
    assert!(!err.contains("panicked"), "yaku {args:?}: {err}");
    stderr.push_str(&err);
    text(&out.stdout)
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `--json` and JSONL rows keep exactly their keys, whatever the values.
fn assert_row_keys(rows: &[Value]) {
    for r in rows {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "at",
                "best",
                "chosen",
                "error",
                "game",
                "id",
                "latency_ms",
                "options",
                "provider",
                "speaker",
                "status",
                "text"
            ],
            "{r}"
        );
    }
}

fn show(f: &Fixture, grep: &str) -> Shown {
    let mut stderr = String::new();
    let history = run(f, &["history"], &mut stderr);
    let history_json = json_lines(&run(f, &["history", "--json"], &mut stderr));
    let grep = run(f, &["history", "--grep", grep], &mut stderr);
    let stats = run(f, &["stats"], &mut stderr);
    let stats_json = serde_json::from_str(&run(f, &["stats", "--json"], &mut stderr)).unwrap();
    let csv = parse_csv(&run(
        f,
        &["history", "export", "--format", "csv"],
        &mut stderr,
    ));
    let jsonl = json_lines(&run(
        f,
        &["history", "export", "--format", "jsonl"],
        &mut stderr,
    ));
    assert_row_keys(&history_json);
    assert_row_keys(&jsonl);
    assert_eq!(history.lines().count(), 3, "{history}");
    assert_eq!((history_json.len(), jsonl.len(), csv.len()), (3, 3, 4));
    assert_eq!(csv[0].len(), 13);
    assert!(csv.iter().all(|r| r.len() == 13), "{csv:?}");
    Shown {
        history,
        history_json,
        grep,
        stats,
        stats_json,
        csv,
        jsonl,
        stderr,
    }
}

/// The JSON object of line `id`.
fn json_of(rows: &[Value], id: i64) -> &Value {
    rows.iter().find(|r| r["id"] == id).unwrap()
}

/// The CSV record of line `id`.
fn csv_of(records: &[Vec<Option<String>>], id: i64) -> &[Option<String>] {
    records
        .iter()
        .find(|r| r[0].as_deref() == Some(id.to_string().as_str()))
        .unwrap()
}

/// The `yaku history` line of the line whose text is `text`.
fn line_of<'a>(history: &'a str, text: &str) -> &'a str {
    history.lines().find(|l| l.contains(text)).unwrap()
}

/// An RFC 4180 reader: CRLF between records, quotes doubled inside quoted fields. A field is
/// None when it is empty and unquoted (the export's "absent").
fn parse_csv(s: &str) -> Vec<Vec<Option<String>>> {
    let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut in_quotes) = (false, false);
    let mut chars = s.chars().peekable();
    let end = |record: &mut Vec<Option<String>>, field: &mut String, quoted: &mut bool| {
        let f = std::mem::take(field);
        record.push((!f.is_empty() || *quoted).then_some(f));
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        match (in_quotes, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => in_quotes = false,
            (true, c) => field.push(c),
            (false, '"') => (in_quotes, quoted) = (true, true),
            (false, ',') => end(&mut record, &mut field, &mut quoted),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                end(&mut record, &mut field, &mut quoted);
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(record.is_empty() && field.is_empty(), "no CRLF at the end");
    records
}

/// Log lines at warn level that mention `needle`.
fn warnings_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains("WARN") && l.contains(needle))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// History rows
// ---------------------------------------------------------------------------------------------

#[test]
fn an_unknown_status_is_shown_as_it_is_and_counted_in_the_lines_total_only() {
    let f = fixture();
    edit(&f.db, "update lines set status = 'weird' where id = 2");

    let r = read(&f.db);
    assert_eq!(row(&r, 2).status, Stored::Other("weird".into()));
    assert_eq!(row(&r, 2).status.as_str(), "weird");
    assert_eq!(row(&r, 2).best.as_deref(), Some("answer two"));
    assert_eq!(
        (r.stats.lines, r.stats.translated, r.stats.failed),
        (3, 1, 1)
    );
    assert_eq!(provider(&r.stats, "groq").lines_served, 0);
    assert_eq!(provider(&r.stats, "groq").ok, 1, "its requests still count");
    assert_eq!(r.jsonl[1]["status"], "weird");
    assert_eq!(r.csv[2][4].as_deref(), Some("weird"));

    let s = show(&f, "answer two");
    assert!(
        line_of(&s.history, "二行目です").contains("weird"),
        "{}",
        s.history
    );
    assert_eq!(json_of(&s.history_json, 2)["status"], "weird");
    assert!(
        s.grep.contains("weird") && s.grep.contains("二行目です"),
        "{}",
        s.grep
    );
    assert_eq!(s.stats_json["lines"], 3);
    assert_eq!(s.stats_json["translated"], 1);
    assert!(s.stats.contains("Lines 3: translated 1"), "{}", s.stats);
    assert_eq!(csv_of(&s.csv, 2)[4].as_deref(), Some("weird"));
    assert_eq!(json_of(&s.jsonl, 2)["status"], "weird");
}

#[test]
fn real_numbers_in_integer_columns_are_rounded_to_whole_milliseconds() {
    let f = fixture();
    edit(
        &f.db,
        "update lines set latency_ms = 1.5, at_ms = 1.7e12 where id = 2;
         update attempts set latency_ms = 199.6 where line_id = 2 and seq = 1;",
    );

    let r = read(&f.db);
    assert_eq!(
        row(&r, 2).latency_ms,
        Some(2),
        "1.5 rounds half away from zero"
    );
    assert_eq!(r.jsonl[1]["at"], "2023-11-14T22:13:20.000Z");
    assert_eq!(provider(&r.stats, "groq").p50_ms, Some(200));

    let s = show(&f, "answer two");
    let two = json_of(&s.history_json, 2);
    assert_eq!(
        (two["latency_ms"].as_u64(), two["at"].as_str()),
        (Some(2), Some("2023-11-14T22:13:20.000Z"))
    );
    assert!(
        line_of(&s.history, "二行目です").starts_with("2023-11-14 22:13:20"),
        "{}",
        s.history
    );
    assert!(s.grep.contains("二行目です"), "{}", s.grep);
    let groq = s.stats_json["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "groq")
        .unwrap();
    assert_eq!(groq["p50_ms"], 200);
    assert!(s.stats.contains("p50 ms"), "{}", s.stats);
    let rec = csv_of(&s.csv, 2);
    assert_eq!(
        (rec[1].as_deref(), rec[9].as_deref()),
        (Some("2023-11-14T22:13:20.000Z"), Some("2"))
    );
    assert_eq!(json_of(&s.jsonl, 2)["latency_ms"], 2);
}

#[test]
fn text_in_an_integer_column_is_no_fallback_and_an_unreadable_latency_is_null() {
    let f = fixture();
    edit(
        &f.db,
        "update lines set fallback = 'maybe', latency_ms = 'fast' where id = 2;
         update lines set at_ms = 'yesterday' where id = 3;",
    );

    let r = read(&f.db);
    assert_eq!(row(&r, 2).latency_ms, None);
    assert_eq!(row(&r, 3).at, None);
    let groq = provider(&r.stats, "groq");
    assert_eq!((groq.lines_served, groq.lines_fallback), (1, 0));
    assert_eq!(r.stats.lines, 3);

    let s = show(&f, "answer two");
    assert_eq!(json_of(&s.history_json, 2)["latency_ms"], Value::Null);
    assert_eq!(json_of(&s.history_json, 3)["at"], Value::Null);
    assert!(
        line_of(&s.history, "三行目です").contains("failed"),
        "{}",
        s.history
    );
    assert!(s.grep.contains("二行目です"), "{}", s.grep);
    assert_eq!(s.stats_json["lines"], 3);
    assert!(s.stats.contains("as fallback"), "{}", s.stats);
    assert_eq!(csv_of(&s.csv, 2)[9], None);
    assert_eq!(csv_of(&s.csv, 3)[1], None);
    assert_eq!(json_of(&s.jsonl, 2)["latency_ms"], Value::Null);
}

#[test]
fn options_that_are_not_an_array_of_strings_are_null_and_the_line_is_found_by_its_best() {
    for options in [
        "'not json'",
        "'[1,2]'",
        "'{\"a\":1}'",
        "'[\"a\", 1]'",
        "x'ff00'",
    ] {
        let f = fixture();
        edit(
            &f.db,
            &format!("update lines set options = {options} where id = 2"),
        );

        let r = read(&f.db);
        assert_eq!(row(&r, 2).options, None, "{options}");
        assert_eq!(row(&r, 2).best.as_deref(), Some("answer two"));
        assert_eq!(r.stats.translated, 2);

        let s = show(&f, "ANSWER TWO");
        let two = json_of(&s.history_json, 2);
        assert_eq!(
            (&two["options"], &two["best"]),
            (&Value::Null, &Value::from("answer two"))
        );
        assert!(
            line_of(&s.history, "二行目です").ends_with("answer two"),
            "{}",
            s.history
        );
        assert!(s.grep.contains("二行目です"), "{options}: {}", s.grep);
        assert_eq!(s.grep.lines().count(), 1, "{}", s.grep);
        assert_eq!(csv_of(&s.csv, 2)[8], None, "{options}");
        assert_eq!(
            csv_of(&s.csv, 1)[8].as_deref(),
            Some("[\"answer one\",\"alt one\"]")
        );
        assert_eq!(json_of(&s.jsonl, 2)["options"], Value::Null);
    }
}

#[test]
fn text_that_is_not_utf8_is_unreadable_and_other_bytes_of_the_row_still_show() {
    let f = fixture();
    edit(
        &f.db,
        "update lines set text = x'ff00', provider = x'fffe' where id = 2;
         update lines set source = cast(x'ff' as text) where id = 3;",
    );

    let r = read(&f.db);
    assert_eq!(row(&r, 2).text, Text(None));
    assert_eq!(row(&r, 2).text.to_string(), "<unreadable>");
    assert_eq!(row(&r, 2).provider, None);
    assert_eq!(row(&r, 3).source, Stored::Unreadable);
    assert_eq!(
        provider(&r.stats, "groq").lines_served,
        0,
        "an unreadable provider serves nothing"
    );
    assert_eq!(r.stats.translated, 2);

    let s = show(&f, "answer two");
    let two = json_of(&s.history_json, 2);
    assert_eq!(
        (&two["text"], &two["provider"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(two["best"], "answer two");
    let shown = line_of(&s.history, "answer two");
    assert!(
        shown.contains("<unreadable>") && shown.contains(" - "),
        "{shown}"
    );
    assert!(s.grep.contains("<unreadable>"), "{}", s.grep);
    let rec = csv_of(&s.csv, 2);
    assert_eq!((&rec[2], &rec[5]), (&None, &None));
    assert_eq!(rec[7].as_deref(), Some("answer two"));
    assert_eq!(csv_of(&s.csv, 3)[3], None);
    assert_eq!(json_of(&s.jsonl, 2)["text"], Value::Null);
}

#[test]
fn utf8_blobs_and_numbers_in_text_columns_are_read_as_text() {
    let f = fixture();
    edit(
        &f.db,
        "update lines set best = cast('answer two' as blob), text = cast('二行目です' as blob),
                          status = cast('translated' as blob) where id = 2;
         update lines set error = 42 where id = 3;",
    );

    let r = read(&f.db);
    assert_eq!(row(&r, 2).text, "二行目です");
    assert_eq!(row(&r, 2).status, Status::Translated);
    assert_eq!(row(&r, 3).error.as_deref(), Some("42"));
    assert_eq!(r.stats.translated, 2);

    let s = show(&f, "二行目");
    assert_eq!(json_of(&s.history_json, 2)["best"], "answer two");
    assert_eq!(json_of(&s.history_json, 3)["error"], "42");
    assert!(s.grep.contains("二行目です"), "{}", s.grep);
    assert_eq!(s.stats_json["translated"], 2);
    assert_eq!(csv_of(&s.csv, 3)[10].as_deref(), Some("42"));
    assert_eq!(json_of(&s.jsonl, 2)["text"], "二行目です");
}

#[test]
fn nulls_in_every_column_of_a_recreated_table_are_shown_as_absent_or_unreadable() {
    let f = fixture();
    relax(&f.db, "lines");
    relax(&f.db, "attempts");
    edit(
        &f.db,
        "update lines set at_ms = NULL, source = NULL, text = NULL, status = NULL,
                          provider = NULL, model = NULL, best = NULL, options = NULL,
                          latency_ms = NULL, error = NULL, fallback = NULL, finished_ms = NULL
          where id = 2;
         update attempts set provider = NULL, outcome = NULL, latency_ms = NULL,
                             opened_breaker = NULL, at_ms = NULL, seq = NULL
          where line_id = 2;",
    );

    let r = read(&f.db);
    let two = row(&r, 2);
    assert_eq!(
        (two.at, &two.text, &two.status, &two.source),
        (None, &Text(None), &Stored::Unreadable, &Stored::Unreadable)
    );
    assert_eq!(two.options, Some(vec![]), "NULL options are no options");
    assert_eq!(
        (r.stats.lines, r.stats.translated),
        (3, 1),
        "all history counts the line whatever its time"
    );
    assert_eq!(
        provider(&r.stats, "gemini").requests,
        2,
        "requests without a provider count under none"
    );

    let s = show(&f, "一行目");
    let j = json_of(&s.history_json, 2);
    for key in [
        "at",
        "text",
        "status",
        "provider",
        "best",
        "latency_ms",
        "error",
    ] {
        assert_eq!(j[key], Value::Null, "{key}: {j}");
    }
    assert_eq!(j["options"], serde_json::json!([]));
    let shown = s
        .history
        .lines()
        .find(|l| l.contains("<unreadable>"))
        .unwrap();
    assert!(shown.starts_with("  <unreadable>"), "{}", s.history);
    assert_eq!(s.grep.lines().count(), 1, "{}", s.grep);
    assert_eq!(s.stats_json["lines"], 3);
    assert!(s.stats.contains("gemini"), "{}", s.stats);
    let rec = csv_of(&s.csv, 2);
    assert_eq!(rec[8].as_deref(), Some("[]"));
    assert!(
        rec.iter()
            .enumerate()
            .all(|(i, f)| i == 0 || i == 8 || f.is_none()),
        "{rec:?}"
    );
    assert_eq!(json_of(&s.jsonl, 2)["status"], Value::Null);
}

#[test]
fn odd_request_rows_are_counted_as_best_they_can_be() {
    let f = fixture();
    edit(
        &f.db,
        "update attempts set outcome = 'teleported' where line_id = 3;
         update attempts set opened_breaker = 'yes', latency_ms = 5.4 where line_id = 2 and seq = 0;
         update attempts set latency_ms = -7 where line_id = 1;
         update attempts set provider = x'ff00' where line_id = 2 and seq = 1;",
    );

    let r = read(&f.db);
    let gemini = provider(&r.stats, "gemini");
    assert_eq!(
        (
            gemini.requests,
            gemini.ok,
            gemini.transient,
            gemini.rate_limited
        ),
        (3, 1, 0, 1)
    );
    assert_eq!(gemini.breaker_opens, 0, "'yes' is not the flag 1");
    assert_eq!(gemini.p50_ms, None, "a negative latency is unreadable");
    let groq = provider(&r.stats, "groq");
    assert_eq!((groq.requests, groq.lines_served), (0, 1));

    let s = show(&f, "一行目");
    let gemini = s.stats_json["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "gemini")
        .unwrap();
    assert_eq!(
        (&gemini["requests"], &gemini["ok"], &gemini["p50_ms"]),
        (&Value::from(3), &Value::from(1), &Value::Null)
    );
    assert!(s.stats.contains("requests"), "{}", s.stats);
}

#[test]
fn each_odd_row_is_logged_by_table_and_id_without_its_text() {
    let f = fixture();
    edit(
        &f.db,
        "update lines set status = 'weird' where id = 2;
         update attempts set outcome = 'teleported' where line_id = 3;",
    );
    let s = show(&f, "二行目");
    // `history`, `--json`, `--grep`, the two exports: one warning per command that read it.
    let lines = warnings_with(&s.stderr, "table=\"lines\"");
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.contains("id=2")),
        "{}",
        s.stderr
    );
    let attempts = warnings_with(&s.stderr, "table=\"attempts\"");
    assert_eq!(attempts.len(), 2, "stats and stats --json: {}", s.stderr);
    assert!(attempts.iter().all(|l| l.contains("id=4")), "{}", s.stderr);
    for text in [
        "二行目です",
        "answer two",
        "三行目です",
        "weird",
        "teleported",
    ] {
        assert!(!s.stderr.contains(text), "{text} logged: {}", s.stderr);
    }
}

// ---------------------------------------------------------------------------------------------
// Cache entries
// ---------------------------------------------------------------------------------------------

fn cache_options(db: &Path, key: &str) -> (Option<String>, i64) {
    Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT options, hits FROM cache WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

/// Edits that leave nothing yaku can show: each makes the entry a miss.
const UNUSABLE_OPTIONS: [&str; 10] = [
    "'[]'",
    "'not json'",
    "'[1,2]'",
    "'{\"a\":1}'",
    "'[\"\"]'",
    "'[\"\", \"  \"]'",
    "'null'",
    "x'ff00'",
    "42",
    "1.5",
];

#[test]
fn a_cache_entry_yaku_cannot_use_is_a_miss_and_the_next_answer_replaces_it() {
    let f = fixture();
    let (store, _) = SqliteStore::open(&f.db).unwrap();
    for options in UNUSABLE_OPTIONS {
        edit(
            &f.db,
            &format!("update cache set options = {options} where key = '{KEY}'"),
        );
        assert_eq!(store.cache_get(KEY).unwrap(), None, "{options}");
        store.cache_put(KEY, &answer(&["fresh"])).unwrap();
        assert_eq!(
            cache_options(&f.db, KEY),
            (Some("[\"fresh\"]".into()), 0),
            "{options}"
        );
        assert_eq!(store.cache_get(KEY).unwrap(), Some(answer(&["fresh"])));
    }
    // NULL needs a table without NOT NULL, as a user would recreate it.
    drop(store);
    relax(&f.db, "cache");
    let (store, _) = SqliteStore::open(&f.db).unwrap();
    for column in ["options", "provider", "model"] {
        edit(
            &f.db,
            &format!("update cache set {column} = NULL where key = '{KEY}'"),
        );
        assert_eq!(store.cache_get(KEY).unwrap(), None, "{column}");
        store.cache_put(KEY, &answer(&["fresh"])).unwrap();
        assert_eq!(store.cache_get(KEY).unwrap(), Some(answer(&["fresh"])));
    }
    // Nothing above was a store failure: the lines are all still there.
    assert_eq!(store.history(10, None).unwrap().len(), 3);
}

#[test]
fn odd_values_elsewhere_in_a_cache_entry_do_not_fail_the_lookup() {
    let f = fixture();
    let (store, _) = SqliteStore::open(&f.db).unwrap();
    edit(
        &f.db,
        &format!(
            "update cache set hits = 'many', created_ms = 1.5e12, provider = cast('gemini' as blob),
                              model = 7, options = '[\"\", \"kept\"]' where key = '{KEY}'"
        ),
    );
    let got = store.cache_get(KEY).unwrap().unwrap();
    assert_eq!(
        (got.options, got.provider.as_str(), got.model.as_str()),
        (vec!["kept".to_string()], "gemini", "7"),
        "empty options are dropped, a UTF-8 blob and a number are read as text"
    );
    assert_eq!(cache_options(&f.db, KEY).1, 1, "'many' + 1");
    edit(
        &f.db,
        &format!("update cache set provider = x'ff00' where key = '{KEY}'"),
    );
    assert_eq!(store.cache_get(KEY).unwrap(), None);
    // Pruning orders by created_ms, whatever it holds.
    edit(&f.db, "update cache set created_ms = 'long ago'");
    store.prune(2, 0, SystemTime::now()).unwrap();
}

#[test]
fn the_daemons_store_stays_up_over_an_unusable_cache_entry() {
    let f = fixture();
    edit(
        &f.db,
        &format!("update cache set options = '[]' where key = '{KEY}'"),
    );
    let (store, _) = SqliteStore::open(&f.db).unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let opener: Opener = Box::new(|| Err(StoreError::Refused("not reopened in this test".into())));
    let handle = StoreHandle::new(
        Some(store),
        opener,
        Arc::new(yaku::core::clock::ManualClock::new()),
        STORE_RETRY,
    );
    // As the daemon does for a line: look up, miss, translate, store the answer.
    assert_eq!(
        handle.with("read the cache", |s| s.cache_get(KEY)),
        Some(None)
    );
    let id = handle
        .with("began a line", |s| {
            s.begin("一行目です", Source::Clipboard, SystemTime::now())
        })
        .unwrap();
    handle
        .with("finished a line", |s| {
            s.finish(id, &done("gemini", &["fresh"], 10), &[])
        })
        .unwrap();
    handle
        .with("stored a translation", |s| {
            s.cache_put(KEY, &answer(&["fresh"]))
        })
        .unwrap();
    assert!(handle.is_up(), "an odd row is not a store failure");
    assert_eq!(
        handle.with("read the cache", |s| s.cache_get(KEY)),
        Some(Some(answer(&["fresh"])))
    );
}

/// Captures what the store logs, in the format `yaku` logs it.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` and returns what it logged. One global subscriber for the whole binary (a
/// per-thread one misses events when tests run in parallel, through tracing's per-callsite
/// cache); each test picks its own lines out by its thread's name, which is the test's.
fn logged_by(f: impl FnOnce()) -> String {
    static LOG: OnceLock<Log> = OnceLock::new();
    let log = LOG.get_or_init(|| {
        let log = Log::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_thread_names(true)
            .init();
        log
    });
    f();
    let me = std::thread::current().name().unwrap().to_owned();
    let all = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    all.lines()
        .filter(|l| l.contains(&format!(" {me} ")))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn an_odd_row_looked_up_again_and_again_is_logged_once() {
    let f = fixture();
    edit(
        &f.db,
        &format!(
            "update cache set options = '[]' where key = '{KEY}';
             update lines set latency_ms = 1.5 where id = 1;"
        ),
    );
    let log = logged_by(|| {
        let (store, _) = SqliteStore::open(&f.db).unwrap();
        for _ in 0..5 {
            assert_eq!(store.cache_get(KEY).unwrap(), None);
            store.history(10, None).unwrap();
        }
    });
    let cache = warnings_with(&log, "table=\"cache\"");
    assert_eq!(cache.len(), 1, "{log}");
    assert!(
        cache[0].contains("id=1") && cache[0].contains("miss"),
        "{log}"
    );
    assert_eq!(warnings_with(&log, "table=\"lines\"").len(), 1, "{log}");
    assert!(!log.contains(KEY) && !log.contains("一行目です"), "{log}");
}

#[test]
fn past_the_limit_odd_rows_are_not_named_one_by_one() {
    let f = fixture();
    let (store, _) = SqliteStore::open(&f.db).unwrap();
    for i in 0..150 {
        let id = store
            .begin(&format!("行 {i}"), Source::Cli, SystemTime::now())
            .unwrap();
        store.finish(id, &done("gemini", &["x"], 1), &[]).unwrap();
    }
    edit(&f.db, "update lines set latency_ms = 0.5");
    let log = logged_by(|| {
        let mut out = Vec::new();
        assert_eq!(store.export(ExportFormat::Jsonl, &mut out).unwrap(), 153);
        store.export(ExportFormat::Csv, &mut out).unwrap();
    });
    assert_eq!(warnings_with(&log, "table=\"lines\"").len(), 100, "{log}");
    assert_eq!(
        warnings_with(&log, "not named one by one").len(),
        1,
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// `yaku translate` over an edited cache entry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn translate_asks_afresh_for_a_line_whose_cache_entry_was_edited_and_stores_the_answer() {
    let gemini = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/models/gemini-test:generateContent"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(gemini_ok(&["Good morning.", "Morning!"])),
        )
        .mount(&gemini)
        .await;
    let f = fixture_with_providers(&gemini.uri());
    let env = [("YAKU_TEST_GEMINI_KEY", FAKE_KEY)];
    let translate =
        || async { yaku(&["translate", "--config", &f.cfg, "おはよう"], &env, None).await };
    let requests = || async { gemini.received_requests().await.unwrap().len() };
    let stored = || -> String {
        Connection::open(&f.db)
            .unwrap()
            .query_row("SELECT options FROM cache WHERE key <> ?1", [KEY], |r| {
                r.get(0)
            })
            .unwrap()
    };

    let out = translate().await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(requests().await, 1);
    let out = translate().await;
    assert!(
        text(&out.stderr).contains("from the cache"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(requests().await, 1);

    let mut edits: Vec<String> = UNUSABLE_OPTIONS.iter().map(|o| o.to_string()).collect();
    edits.push("NULL".into());
    for (i, options) in edits.iter().enumerate() {
        if options == "NULL" {
            relax(&f.db, "cache");
        }
        edit(
            &f.db,
            &format!("update cache set options = {options} where key <> '{KEY}'"),
        );
        let out = translate().await;
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{options}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("from the cache"),
            "{options}: {err}"
        );
        assert_eq!(
            text(&out.stdout),
            "Good morning.\n  2. Morning!\n",
            "{options}"
        );
        assert_eq!(requests().await, i + 2, "{options}: a fresh request");
        assert_eq!(
            stored(),
            "[\"Good morning.\",\"Morning!\"]",
            "{options}: replaced"
        );
    }
    // The replaced entry is a hit again.
    let out = translate().await;
    assert!(
        text(&out.stderr).contains("from the cache"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(requests().await, edits.len() + 1);

    let out = yaku(&["history", "--json", "--config", &f.cfg], &[], None).await;
    let statuses: Vec<String> = json_lines(&text(&out.stdout))
        .iter()
        .skip(3)
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect();
    let mut want = vec!["translated", "cached"];
    want.extend(std::iter::repeat_n("translated", edits.len()));
    want.push("cached");
    assert_eq!(statuses, want);
}
