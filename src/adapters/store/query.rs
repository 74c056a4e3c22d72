//! What `yaku history`, `yaku export` and `yaku stats` read. Aggregation happens in SQL over
//! covering indexes: on a 100,000-line history `history(20)` takes ~30 µs and `stats` ~17 ms.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::SystemTime;

use rusqlite::{Connection, Row, params};
use serde_json::{Value, json};

use super::cell::{Cells, Stored, Text, int_of};
use super::format::{csv_num, csv_opt, rfc3339_ms, system_time_from_ms, unix_ms};
use super::{REPORT_LIMIT, SqliteStore, sql, to_i64};
use crate::core::store::{Source, Status, StoreError};

/// One history line as stored, read so that a row edited by hand is shown as best it can be
/// and never fails the command that reads it.
///
/// Display rules for values yaku does not write (`sqlite3 yaku.db "update lines ..."`):
///
/// - An unknown `status` or `source` word is shown as it is.
/// - A REAL in an integer column (`latency_ms = 1.5`, `at_ms = 1.7e12`) is rounded to the
///   nearest integer, halves away from zero; text holding a number is that number.
/// - A BLOB in UTF-8 in a text column is its text; a number there is written in decimal.
/// - A value that cannot be read — NULL in a column that is NOT NULL in the schema (a
///   recreated table), bytes that are not UTF-8, text that is not a number in an integer
///   column, a negative latency, `options` that are not a JSON array of strings — is `null` in
///   `--json` and JSONL, an absent (empty, unquoted) CSV field, and `<unreadable>` in the
///   terminal for `text` and `status` (`-` and nothing for the others, as for absent values).
///   NULL `options` are no options (`[]`), as yaku writes them.
/// - Columns the history does not show (`fallback`, `finished_ms`) are not read here; for
///   `stats`, see [`SqliteStore::stats`].
///
/// Every key keeps its type when its value is readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The rowid: always readable in the shipped schema (SQLite refuses to store anything
    /// but an integer in `id INTEGER PRIMARY KEY`); None only in a table recreated without it.
    pub id: Option<i64>,
    /// When the line was accepted (millisecond precision); None when unreadable.
    pub at: Option<SystemTime>,
    pub text: Text,
    pub source: Stored<Source>,
    pub status: Stored<Status>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// `options[0]`, when there are options.
    pub best: Option<String>,
    /// Best first; empty unless translated or cached. None when the stored value is not a
    /// JSON array of strings.
    pub options: Option<Vec<String>>,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
    /// Who says the line, as its text names it; None when it names none (and for rows from
    /// before the column, or unreadable).
    pub speaker: Option<String>,
    /// The `[[games]]` profile the line was copied under; None: no profile.
    pub game: Option<String>,
    /// `yaku pick N`: the option (1-based) the reader chose; None when none (or unreadable).
    pub chosen: Option<u64>,
}

impl HistoryRow {
    /// The `--json` / JSONL shape: exactly `id`, `at` (RFC 3339 UTC), `text`, `status`,
    /// `provider`, `best`, `options`, `latency_ms`, `error`, `speaker`, `game`, `chosen`
    /// (`yaku pick`); null where absent or
    /// unreadable.
    /// `source` and `model` are not part of it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "at": self.at.map(|t| rfc3339_ms(unix_ms(t))),
            "text": self.text.as_deref(),
            "status": self.status.get(),
            "provider": self.provider,
            "best": self.best,
            "options": self.options,
            "latency_ms": self.latency_ms,
            "error": self.error,
            "speaker": self.speaker,
            "game": self.game,
            "chosen": self.chosen,
        })
    }
}

/// `export`'s output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One `HistoryRow::to_json` object per line.
    Jsonl,
    /// RFC 4180 CSV (CRLF line ends) with the header
    /// `id,at,text,source,status,provider,model,best,options,latency_ms,error,speaker,chosen`. `at` is
    /// RFC 3339; `options` is a JSON array of strings (lossless, unlike a joined list); an
    /// absent or unreadable value (see [`HistoryRow`]) is an empty unquoted field and an
    /// empty string is `""`.
    Csv,
}

impl ExportFormat {
    /// "jsonl" or "csv".
    pub fn parse(s: &str) -> Option<ExportFormat> {
        match s {
            "jsonl" => Some(ExportFormat::Jsonl),
            "csv" => Some(ExportFormat::Csv),
            _ => None,
        }
    }
}

/// The CSV header line `export` writes.
pub const CSV_HEADER: &str =
    "id,at,text,source,status,provider,model,best,options,latency_ms,error,speaker,chosen";

/// One provider's figures over the selected lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderStats {
    pub provider: String,
    /// Requests sent (attempt rows), whatever their outcome.
    pub requests: u64,
    pub ok: u64,
    pub rate_limited: u64,
    pub transient: u64,
    pub refused: u64,
    pub unauthorized: u64,
    pub model_unavailable: u64,
    pub bad_request: u64,
    /// Requests dropped because another provider answered the line first (a hedge): not a
    /// failure.
    pub cancelled: u64,
    /// Requests whose outcome opened the breaker.
    pub breaker_opens: u64,
    /// Of `requests`, those sent by `yaku prefetch` (lines with source `prefetch`).
    pub prefetch_requests: u64,
    /// Of `requests`, those the daemon's look-ahead sent (lines with source `lookahead`).
    pub lookahead_requests: u64,
    /// Lines whose final status is `translated` with this provider.
    pub lines_served: u64,
    /// Of those, lines first sent to another provider.
    pub lines_fallback: u64,
    /// Median latency of the `ok` requests (nearest rank); None without any.
    pub p50_ms: Option<u64>,
    /// 90th percentile latency of the `ok` requests (nearest rank): a good `hedge_after_ms`.
    pub p90_ms: Option<u64>,
    /// 95th percentile latency of the `ok` requests (nearest rank); None without any.
    pub p95_ms: Option<u64>,
}

impl ProviderStats {
    /// The object in `Stats::to_json`'s `providers` array.
    pub fn to_json(&self) -> Value {
        json!({
            "provider": self.provider,
            "requests": self.requests,
            "ok": self.ok,
            "rate_limited": self.rate_limited,
            "transient": self.transient,
            "refused": self.refused,
            "unauthorized": self.unauthorized,
            "model_unavailable": self.model_unavailable,
            "bad_request": self.bad_request,
            "cancelled": self.cancelled,
            "breaker_opens": self.breaker_opens,
            "prefetch_requests": self.prefetch_requests,
            "lookahead_requests": self.lookahead_requests,
            "lines_served": self.lines_served,
            "lines_fallback": self.lines_fallback,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p95_ms": self.p95_ms,
        })
    }
}

/// Figures over the lines accepted since `since` (all when None) and their requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub since: Option<SystemTime>,
    /// Lines with a final status (every status but `pending`).
    pub lines: u64,
    pub translated: u64,
    /// Cache hits.
    pub cached: u64,
    pub failed: u64,
    pub skipped: u64,
    pub interrupted: u64,
    /// cached / (cached + translated); None when both are 0.
    pub cache_hit_rate: Option<f64>,
    /// Every provider asked or serving in the range, by name.
    pub providers: Vec<ProviderStats>,
}

impl Stats {
    /// `{"since": RFC 3339 or null, "lines", "translated", "cached", "failed", "skipped",
    /// "interrupted", "cache_hit_rate": number or null, "providers": [ProviderStats::to_json]}`.
    pub fn to_json(&self) -> Value {
        json!({
            "since": self.since.map(|t| rfc3339_ms(unix_ms(t))),
            "lines": self.lines,
            "translated": self.translated,
            "cached": self.cached,
            "failed": self.failed,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "cache_hit_rate": self.cache_hit_rate,
            "providers": self.providers.iter().map(ProviderStats::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Lines per status and provider: one pass over the covering index `lines_status`, which is
/// already in group order (no sort).
const LINE_TOTALS: &str = "SELECT status, provider, count(*), sum(fallback) FROM lines
                            WHERE at_ms >= ?1 GROUP BY status, provider";

/// `LINE_TOTALS` over all history: also counts a line whose `at_ms` a hand edit made NULL
/// (`at_ms >= ?1` never holds for it), and it is a little faster.
const LINE_TOTALS_ALL: &str =
    "SELECT status, provider, count(*), sum(fallback) FROM lines GROUP BY status, provider";

/// Requests per provider, outcome and latency: one pass over the covering index
/// `attempts_stats`, in group order. Grouping down to the latency gives each provider's
/// sorted latency histogram, for the percentiles, from the same pass.
const ATTEMPT_TOTALS: &str =
    "SELECT provider, outcome, latency_ms, count(*), sum(opened_breaker) FROM attempts
      WHERE at_ms >= ?1
      GROUP BY provider, outcome, latency_ms
      ORDER BY provider, outcome, latency_ms";

/// Requests per provider sent for `yaku prefetch`'s lines (source ?2 = 'prefetch') or the
/// daemon's look-ahead (?2 = 'lookahead') since ?1 (all when NULL).
const PREFETCH_TOTALS: &str =
    "SELECT a.provider, count(*) FROM attempts a JOIN lines l ON l.id = a.line_id
      WHERE l.source = ?2 AND (?1 IS NULL OR a.at_ms >= ?1)
      GROUP BY a.provider";

/// `ATTEMPT_TOTALS` over all history, as `LINE_TOTALS_ALL`.
const ATTEMPT_TOTALS_ALL: &str =
    "SELECT provider, outcome, latency_ms, count(*), sum(opened_breaker) FROM attempts
      GROUP BY provider, outcome, latency_ms
      ORDER BY provider, outcome, latency_ms";

/// Lines whose columns `stats` reads hold what yaku does not write; run only when the totals
/// met one, to name them in the log.
const ODD_LINES: &str = "SELECT id FROM lines WHERE (?1 IS NULL OR at_ms >= ?1) AND NOT (
        typeof(status) = 'text'
        AND status IN ('pending', 'translated', 'cached', 'failed', 'skipped', 'interrupted')
        AND typeof(provider) IN ('text', 'null')
        AND typeof(fallback) = 'integer' AND fallback IN (0, 1)
    ) LIMIT ?2";

/// As `ODD_LINES`, for requests.
const ODD_ATTEMPTS: &str = "SELECT id FROM attempts WHERE (?1 IS NULL OR at_ms >= ?1) AND NOT (
        typeof(provider) = 'text'
        AND typeof(outcome) = 'text'
        AND outcome IN ('ok', 'rate_limited', 'transient', 'refused', 'unauthorized',
                        'model_unavailable', 'bad_request', 'cancelled')
        AND typeof(latency_ms) = 'integer' AND latency_ms >= 0
        AND typeof(opened_breaker) = 'integer' AND opened_breaker IN (0, 1)
    ) LIMIT ?2";

const ROW_COLUMNS: &str = "id, at_ms, text, source, status, provider, model, best, options, latency_ms, error, speaker, \
     game, chosen";

/// `LINE_TOTALS` for the lines of one game (`?2`); `?1` NULL: since the start.
const LINE_TOTALS_GAME: &str = "SELECT status, provider, count(*), sum(fallback) FROM lines
                            WHERE (?1 IS NULL OR at_ms >= ?1) AND game = ?2
                            GROUP BY status, provider";

/// `ATTEMPT_TOTALS` for the requests made for one game's lines.
const ATTEMPT_TOTALS_GAME: &str =
    "SELECT a.provider, a.outcome, a.latency_ms, count(*), sum(a.opened_breaker)
       FROM attempts a JOIN lines l ON l.id = a.line_id
      WHERE (?1 IS NULL OR a.at_ms >= ?1) AND l.game = ?2
      GROUP BY a.provider, a.outcome, a.latency_ms
      ORDER BY a.provider, a.outcome, a.latency_ms";

impl SqliteStore {
    /// The last `limit` lines (by id), oldest first.
    ///
    /// With `grep`, only lines whose text, best or any option contains it, ignoring case. A
    /// needle of ASCII and caseless characters (kana, kanji, digits, punctuation) folds ASCII
    /// letters only, as SQLite's LIKE does, and is searched in SQL (~25 ms over 100,000 lines
    /// without a match, measured before `best` was searched on every row; that adds about a
    /// fifth). A needle with other cased letters ("École", "Σ") compares Unicode
    /// lowercase forms, character by character, over every line (~110 ms). Either way a needle
    /// matches text that contains it verbatim.
    pub fn history(&self, limit: usize, grep: Option<&str>) -> Result<Vec<HistoryRow>, StoreError> {
        self.history_of(limit, grep, None)
    }

    /// [`SqliteStore::history`] of the lines of game profile `game` only (all when None).
    pub fn history_of(
        &self,
        limit: usize,
        grep: Option<&str>,
        game: Option<&str>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut rows = match grep {
            Some(needle) => self.grep(limit, needle, true, game)?,
            None => self.latest(limit, game)?,
        };
        rows.reverse();
        Ok(rows)
    }

    /// The last `limit` lines, newest first: a walk down the primary key (or, for one game,
    /// down `lines_game`).
    fn latest(&self, limit: usize, game: Option<&str>) -> Result<Vec<HistoryRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = match game {
            None => conn.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM lines ORDER BY id DESC LIMIT ?1"
            )),
            Some(_) => conn.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM lines WHERE game = ?2 ORDER BY id DESC LIMIT ?1"
            )),
        }
        .map_err(sql("reading the history"))?;
        let limit = to_i64(limit as u64);
        let mut found = match game {
            None => stmt.query(params![limit]),
            Some(g) => stmt.query(params![limit, g]),
        }
        .map_err(sql("reading the history"))?;
        let mut rows = Vec::new();
        while let Some(r) = found.next().map_err(sql("reading the history"))? {
            rows.push(self.history_row(r).map_err(sql("reading the history"))?);
        }
        Ok(rows)
    }

    /// The last `limit` lines matching `needle` (see `history`), newest first. With
    /// `prefilter`, SQLite's LIKE first narrows the rows down when the needle is simple.
    fn grep(
        &self,
        limit: usize,
        needle: &str,
        prefilter: bool,
        game: Option<&str>,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let simple = is_simple(needle);
        let folded = if simple {
            needle.to_ascii_lowercase()
        } else {
            fold(needle)
        };
        let conn = self.conn();
        let like = if prefilter && simple {
            like_patterns(needle)
        } else {
            None
        };
        let mut stmt = match like {
            // `best` is searched on every row, not only where `options` is NULL: a hand edit
            // can make it differ from options[0], and the prefilter must never miss a row
            // that the check below finds.
            Some(_) => conn.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM lines
                  WHERE (text LIKE ?1 ESCAPE '\\' OR options LIKE ?2 ESCAPE '\\'
                     OR best LIKE ?1 ESCAPE '\\')
                    AND (?3 IS NULL OR game = ?3)
                  ORDER BY id DESC"
            )),
            None => conn.prepare_cached(&format!(
                "SELECT {ROW_COLUMNS} FROM lines WHERE (?1 IS NULL OR game = ?1) ORDER BY id DESC"
            )),
        }
        .map_err(sql("searching the history"))?;
        let mut found = match &like {
            Some((plain, json)) => stmt.query(params![plain, json, game]),
            None => stmt.query(params![game]),
        }
        .map_err(sql("searching the history"))?;
        let matches = |s: &str| {
            if simple {
                s.to_ascii_lowercase().contains(&folded)
            } else {
                fold(s).contains(&folded)
            }
        };
        let mut rows = Vec::new();
        // LIKE on the options' JSON can match inside an escape ("n" in "\n"): every candidate
        // is checked here.
        while let Some(r) = found.next().map_err(sql("searching the history"))? {
            let row = self.history_row(r).map_err(sql("searching the history"))?;
            if row.text.as_deref().is_some_and(matches)
                || row.options.iter().flatten().any(|o| matches(o))
                || row.best.as_deref().is_some_and(matches)
            {
                rows.push(row);
                if rows.len() == limit {
                    break;
                }
            }
        }
        Ok(rows)
    }

    /// Writes every history line, oldest first, to `out`; returns how many. One statement, so
    /// the export is a consistent snapshot even while the daemon writes.
    pub fn export(&self, format: ExportFormat, out: &mut dyn Write) -> Result<u64, StoreError> {
        let io = |e: std::io::Error| StoreError::File(format!("writing the export: {e}"));
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {ROW_COLUMNS} FROM lines ORDER BY id"))
            .map_err(sql("exporting the history"))?;
        let mut found = stmt.query([]).map_err(sql("exporting the history"))?;
        if format == ExportFormat::Csv {
            out.write_all(CSV_HEADER.as_bytes()).map_err(io)?;
            out.write_all(b"\r\n").map_err(io)?;
        }
        let mut n = 0u64;
        let mut buf = String::new();
        while let Some(r) = found.next().map_err(sql("exporting the history"))? {
            let row = self.history_row(r).map_err(sql("exporting the history"))?;
            buf.clear();
            match format {
                ExportFormat::Jsonl => {
                    buf.push_str(&row.to_json().to_string());
                    buf.push('\n');
                }
                ExportFormat::Csv => {
                    csv_row(&mut buf, &row)?;
                    buf.push_str("\r\n");
                }
            }
            out.write_all(buf.as_bytes()).map_err(io)?;
            n += 1;
        }
        out.flush().map_err(io)?;
        Ok(n)
    }

    /// Provider and line figures for the lines accepted at or after `since` (all when None).
    ///
    /// Hand-edited rows are counted as best they can be: a line with an unknown or
    /// unreadable status counts in `lines` only; a line or request whose provider is
    /// unreadable counts under no provider; a request with an unknown outcome counts in
    /// `requests` only; a REAL latency is rounded, and an unreadable one leaves the request
    /// out of the percentiles. The flags `fallback` and `opened_breaker` are added up as
    /// SQLite's `sum()` adds them (text counts 0), rounded, and never count more than their
    /// rows. Odd rows are found from the totals, so this costs nothing on a clean history.
    pub fn stats(&self, since: Option<SystemTime>) -> Result<Stats, StoreError> {
        self.stats_of(since, None)
    }

    /// [`SqliteStore::stats`] over the lines of game profile `game` only (all when None).
    pub fn stats_of(
        &self,
        since: Option<SystemTime>,
        game: Option<&str>,
    ) -> Result<Stats, StoreError> {
        let from = since.map(unix_ms);
        let conn = self.conn();
        let mut stats = Stats {
            since,
            ..Stats::default()
        };
        let mut providers: BTreeMap<String, ProviderStats> = BTreeMap::new();
        let odd_lines = line_totals(&conn, from, game, &mut stats, &mut providers)?;
        let odd_attempts = attempt_totals(&conn, from, game, &mut providers)?;
        prefetch_totals(&conn, from, &mut providers)?;
        lookahead_totals(&conn, from, &mut providers)?;
        let read = sql("reading the statistics");
        for (odd, table, query) in [
            (odd_lines, "lines", ODD_LINES),
            (odd_attempts, "attempts", ODD_ATTEMPTS),
        ] {
            if !odd {
                continue;
            }
            let mut stmt = conn.prepare_cached(query).map_err(&read)?;
            let mut found = stmt
                .query(params![from, to_i64(REPORT_LIMIT as u64 + 1)])
                .map_err(&read)?;
            while let Some(r) = found.next().map_err(&read)? {
                let (id, _) = int_of(r.get_ref(0).map_err(&read)?);
                self.report_odd(table, id, "counted as best it can be");
            }
        }

        let hits_and_misses = stats.cached + stats.translated;
        stats.cache_hit_rate =
            (hits_and_misses > 0).then(|| stats.cached as f64 / hits_and_misses as f64);
        stats.providers = providers.into_values().collect();
        Ok(stats)
    }

    /// The newest line the reader was shown (translated or cached; never a prefetched one):
    /// its id, text and options. None when no line was shown yet.
    pub fn last_shown(&self) -> Result<Option<(i64, String, Vec<String>)>, StoreError> {
        let conn = self.conn();
        let read = sql("reading the history");
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, text, options FROM lines
                  WHERE status IN ('translated', 'cached') AND source NOT IN ('prefetch', 'lookahead')
                  ORDER BY id DESC LIMIT 1",
            )
            .map_err(&read)?;
        let mut found = stmt.query([]).map_err(&read)?;
        let Some(r) = found.next().map_err(&read)? else {
            return Ok(None);
        };
        let mut c = Cells::new(r);
        let id = c.int(0, false).map_err(&read)?;
        let text = c.text(1, false).map_err(&read)?;
        let options = c.options(2).map_err(&read)?.unwrap_or_default();
        Ok(id.zip(text).map(|(id, text)| (id, text, options)))
    }

    /// Records the reader's choice of option `n` (1-based) for line `id`.
    pub fn set_chosen(&self, id: i64, n: u8) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE lines SET chosen = ?1 WHERE id = ?2",
                rusqlite::params![n, id],
            )
            .map_err(sql("recording the choice"))?;
        Ok(())
    }

    /// Reads a `ROW_COLUMNS` row, reporting it once when it is odd.
    fn history_row(&self, r: &Row<'_>) -> rusqlite::Result<HistoryRow> {
        let mut c = Cells::new(r);
        let row = HistoryRow {
            id: c.int(0, false)?,
            at: c.int(1, false)?.map(system_time_from_ms),
            text: Text(c.text(2, false)?),
            source: c.word(3)?,
            status: c.word(4)?,
            provider: c.text(5, true)?,
            model: c.text(6, true)?,
            best: c.text(7, true)?,
            options: c.options(8)?,
            latency_ms: c.count(9, true)?,
            error: c.text(10, true)?,
            speaker: c.text(11, true)?,
            game: c.text(12, true)?,
            chosen: c.count(13, true)?,
        };
        if c.odd {
            self.report_odd("lines", row.id, "shown as best it can be");
        }
        Ok(row)
    }
}

/// Adds the lines' totals by status and provider to `stats`; whether a row was odd.
fn line_totals(
    conn: &Connection,
    from: Option<i64>,
    game: Option<&str>,
    stats: &mut Stats,
    providers: &mut BTreeMap<String, ProviderStats>,
) -> Result<bool, StoreError> {
    let mut odd_lines = false;
    let forms = [LINE_TOTALS_GAME, LINE_TOTALS, LINE_TOTALS_ALL];
    each_total(conn, forms, from, game, |r| {
        let mut c = Cells::new(r);
        let status: Stored<Status> = c.word(0)?;
        let provider = c.text(1, true)?;
        let count = c.count(2, false)?.unwrap_or(0);
        // A REAL sum means a row holds something other than an integer.
        let fallback = c.count(3, true)?.unwrap_or(0).min(count);
        odd_lines |= c.odd;
        match status.known() {
            Some(Status::Pending) => return Ok(()),
            Some(Status::Translated) => {
                stats.translated += count;
                if let Some(p) = provider {
                    let p = provider_entry(providers, &p);
                    p.lines_served += count;
                    p.lines_fallback += fallback;
                }
            }
            Some(Status::Cached) => stats.cached += count,
            Some(Status::Failed) => stats.failed += count,
            Some(Status::Superseded) => stats.skipped += count,
            Some(Status::Interrupted) => stats.interrupted += count,
            None => {}
        }
        stats.lines += count;
        Ok(())
    })?;
    Ok(odd_lines)
}

/// Runs the form of a totals query that `from` and `game` call for (`[one game's lines,
/// since from, all history]`; the game form takes a NULL `from` as since the start) and
/// hands each row to `each`.
fn each_total(
    conn: &Connection,
    forms: [&str; 3],
    from: Option<i64>,
    game: Option<&str>,
    mut each: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let read = sql("reading the statistics");
    let [of_game, since, all] = forms;
    let mut stmt = match (from, game) {
        (_, Some(_)) => conn.prepare_cached(of_game),
        (Some(_), None) => conn.prepare_cached(since),
        (None, None) => conn.prepare_cached(all),
    }
    .map_err(&read)?;
    let mut found = match (from, game) {
        (from, Some(g)) => stmt.query(params![from, g]),
        (Some(from), None) => stmt.query([from]),
        (None, None) => stmt.query([]),
    }
    .map_err(&read)?;
    while let Some(r) = found.next().map_err(&read)? {
        each(r).map_err(&read)?;
    }
    Ok(())
}

/// Counts the prefetch's requests apart; a provider only the prefetch asked is listed too.
fn prefetch_totals(
    conn: &Connection,
    from: Option<i64>,
    providers: &mut BTreeMap<String, ProviderStats>,
) -> Result<(), StoreError> {
    source_totals(conn, from, "prefetch", providers, |p, n| {
        p.prefetch_requests += n
    })
}

/// Counts the look-ahead's requests apart, as the prefetch's.
fn lookahead_totals(
    conn: &Connection,
    from: Option<i64>,
    providers: &mut BTreeMap<String, ProviderStats>,
) -> Result<(), StoreError> {
    source_totals(conn, from, "lookahead", providers, |p, n| {
        p.lookahead_requests += n
    })
}

fn source_totals(
    conn: &Connection,
    from: Option<i64>,
    source: &str,
    providers: &mut BTreeMap<String, ProviderStats>,
    add: fn(&mut ProviderStats, u64),
) -> Result<(), StoreError> {
    let read = sql("reading the statistics");
    let mut stmt = conn.prepare_cached(PREFETCH_TOTALS).map_err(&read)?;
    let mut found = stmt.query(params![from, source]).map_err(&read)?;
    while let Some(r) = found.next().map_err(&read)? {
        let mut c = Cells::new(r);
        let name = c.text(0, false).map_err(&read)?;
        let count = c.count(1, false).map_err(&read)?.unwrap_or(0);
        if let Some(name) = name {
            add(provider_entry(providers, &name), count);
        }
    }
    Ok(())
}

/// Adds the requests' totals and ok-latency percentiles per provider; whether a row was odd.
fn attempt_totals(
    conn: &Connection,
    from: Option<i64>,
    game: Option<&str>,
    providers: &mut BTreeMap<String, ProviderStats>,
) -> Result<bool, StoreError> {
    let mut odd_attempts = false;
    // Per provider: (latency, count) of ok requests.
    let mut ok_latencies: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    let forms = [ATTEMPT_TOTALS_GAME, ATTEMPT_TOTALS, ATTEMPT_TOTALS_ALL];
    each_total(conn, forms, from, game, |r| {
        let mut c = Cells::new(r);
        let name = c.text(0, false)?;
        let outcome = c.text(1, false)?;
        let latency = c.count(2, false)?;
        let count = c.count(3, false)?.unwrap_or(0);
        let opened = c.count(4, true)?.unwrap_or(0).min(count);
        odd_attempts |= c.odd;
        let Some(name) = name else { return Ok(()) };
        let p = provider_entry(providers, &name);
        p.requests += count;
        p.breaker_opens += opened;
        match outcome.as_deref().unwrap_or_default() {
            "ok" => {
                p.ok += count;
                if let Some(latency) = latency {
                    ok_latencies.entry(name).or_default().push((latency, count));
                }
            }
            "rate_limited" => p.rate_limited += count,
            "transient" => p.transient += count,
            "refused" => p.refused += count,
            "unauthorized" => p.unauthorized += count,
            "model_unavailable" => p.model_unavailable += count,
            "bad_request" => p.bad_request += count,
            "cancelled" => p.cancelled += count,
            // A class added later, or a hand edit: counted in `requests` only.
            _ => odd_attempts = true,
        }
        Ok(())
    })?;
    for (name, histogram) in &mut ok_latencies {
        // SQLite orders text after numbers, so a latency read from text or rounded
        // from a REAL can be out of place; the groups are few, and sorting is cheap.
        histogram.sort_by_key(|&(latency, _)| latency);
        let p = provider_entry(providers, name);
        p.p50_ms = nearest_rank(histogram, 50);
        p.p90_ms = nearest_rank(histogram, 90);
        p.p95_ms = nearest_rank(histogram, 95);
    }
    Ok(odd_attempts)
}

/// Has upper and lower case forms.
fn is_cased(c: char) -> bool {
    c.to_lowercase().ne([c]) || c.to_uppercase().ne([c])
}

/// Only ASCII and caseless characters: what SQLite's LIKE compares the way `grep` means.
fn is_simple(needle: &str) -> bool {
    needle.chars().all(|c| c.is_ascii() || !is_cased(c))
}

/// Lowercase character by character: unlike `str::to_lowercase` (final sigma), text that
/// contains the needle still contains it once both are folded.
fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// LIKE patterns for a simple needle: one for `text`/`best`, one for the JSON of `options`.
fn like_patterns(needle: &str) -> Option<(String, String)> {
    // JSON escapes character by character, so an option contains the needle exactly when the
    // encoded array contains the encoded needle.
    let json = serde_json::to_string(needle).ok()?;
    let json = json.get(1..json.len().saturating_sub(1))?;
    let pattern = |s: &str| {
        let mut p = String::with_capacity(s.len() + 2);
        p.push('%');
        for c in s.chars() {
            if matches!(c, '%' | '_' | '\\') {
                p.push('\\');
            }
            p.push(c);
        }
        p.push('%');
        p
    };
    Some((pattern(needle), pattern(json)))
}

fn provider_entry<'a>(
    providers: &'a mut BTreeMap<String, ProviderStats>,
    name: &str,
) -> &'a mut ProviderStats {
    providers
        .entry(name.to_owned())
        .or_insert_with(|| ProviderStats {
            provider: name.to_owned(),
            ..ProviderStats::default()
        })
}

/// The nearest-rank `pct` percentile of a sorted (value, count) histogram: the smallest value
/// with at least ⌈pct/100 · n⌉ values at or below it.
pub(crate) fn nearest_rank(histogram: &[(u64, u64)], pct: u64) -> Option<u64> {
    let n: u64 = histogram.iter().map(|&(_, c)| c).sum();
    if n == 0 {
        return None;
    }
    let rank = (pct * n).div_ceil(100).max(1);
    let mut seen = 0;
    for &(value, count) in histogram {
        seen += count;
        if seen >= rank {
            return Some(value);
        }
    }
    histogram.last().map(|&(v, _)| v)
}

fn csv_row(out: &mut String, row: &HistoryRow) -> Result<(), StoreError> {
    let options = row
        .options
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Encoding(format!("encoding options: {e}")))?;
    if let Some(id) = row.id {
        csv_num(out, id);
    }
    out.push(',');
    if let Some(at) = row.at {
        out.push_str(&rfc3339_ms(unix_ms(at)));
    }
    out.push(',');
    csv_opt(out, row.text.as_deref());
    out.push(',');
    csv_opt(out, row.source.get());
    out.push(',');
    csv_opt(out, row.status.get());
    out.push(',');
    csv_opt(out, row.provider.as_deref());
    out.push(',');
    csv_opt(out, row.model.as_deref());
    out.push(',');
    csv_opt(out, row.best.as_deref());
    out.push(',');
    csv_opt(out, options.as_deref());
    out.push(',');
    if let Some(l) = row.latency_ms {
        csv_num(out, l);
    }
    out.push(',');
    csv_opt(out, row.error.as_deref());
    out.push(',');
    csv_opt(out, row.speaker.as_deref());
    out.push(',');
    if let Some(n) = row.chosen {
        csv_num(out, n);
    }
    Ok(())
}

/// A table row: its label and how to read it from a provider's figures.
type Metric = (&'static str, fn(&ProviderStats) -> String);

/// `stats` as a terminal table: the line totals, then one column per provider.
pub fn render_table(stats: &Stats) -> String {
    let mut out = String::new();
    match stats.since {
        Some(t) => out.push_str(&format!("Since {}\n", rfc3339_ms(unix_ms(t)))),
        None => out.push_str("All history\n"),
    }
    out.push_str(&format!(
        "Lines {}: translated {}, cached {}, failed {}, skipped {}, interrupted {}\n",
        stats.lines, stats.translated, stats.cached, stats.failed, stats.skipped, stats.interrupted
    ));
    out.push_str(&match stats.cache_hit_rate {
        Some(rate) => format!("Cache hit rate {:.1}%\n", rate * 100.0),
        None => "Cache hit rate -\n".to_owned(),
    });
    if stats.providers.is_empty() {
        out.push_str("\nNo provider requests.\n");
        return out;
    }
    let metrics: [Metric; 17] = [
        ("requests", |p| p.requests.to_string()),
        ("  by prefetch", |p| p.prefetch_requests.to_string()),
        ("  by look-ahead", |p| p.lookahead_requests.to_string()),
        ("ok", |p| p.ok.to_string()),
        ("rate limited", |p| p.rate_limited.to_string()),
        ("transient", |p| p.transient.to_string()),
        ("refused", |p| p.refused.to_string()),
        ("unauthorized", |p| p.unauthorized.to_string()),
        ("model unavailable", |p| p.model_unavailable.to_string()),
        ("bad request", |p| p.bad_request.to_string()),
        ("cancelled", |p| p.cancelled.to_string()),
        ("breaker opens", |p| p.breaker_opens.to_string()),
        ("lines served", |p| p.lines_served.to_string()),
        ("  as fallback", |p| p.lines_fallback.to_string()),
        ("p50 ms", |p| {
            p.p50_ms.map_or_else(|| "-".to_owned(), |v| v.to_string())
        }),
        ("p90 ms", |p| {
            p.p90_ms.map_or_else(|| "-".to_owned(), |v| v.to_string())
        }),
        ("p95 ms", |p| {
            p.p95_ms.map_or_else(|| "-".to_owned(), |v| v.to_string())
        }),
    ];
    let cells: Vec<Vec<String>> = stats
        .providers
        .iter()
        .map(|p| metrics.iter().map(|(_, f)| f(p)).collect())
        .collect();
    let label_width = metrics
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = stats
        .providers
        .iter()
        .zip(&cells)
        .map(|(p, col)| {
            col.iter()
                .map(|c| c.chars().count())
                .chain([p.provider.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    out.push('\n');
    let mut line = format!("{:label_width$}", "");
    for (p, w) in stats.providers.iter().zip(&widths) {
        line.push_str(&format!("  {:>w$}", p.provider));
    }
    out.push_str(line.trim_end());
    out.push('\n');
    for (i, (label, _)) in metrics.iter().enumerate() {
        let mut line = format!("{label:label_width$}");
        for (col, w) in cells.iter().zip(&widths) {
            line.push_str(&format!("  {:>w$}", col[i]));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::store::Store;

    #[test]
    fn grep_with_the_prefilter_finds_what_a_full_scan_finds() {
        let store = SqliteStore::open_in_memory().unwrap();
        let corpus = [
            ("The Cat", vec!["A \"quoted\" cat", "back\\slash"]),
            ("100% sure_thing", vec!["tab\there", "new\nline"]),
            ("273 \u{212A}elvin", vec!["İstanbul", "i\u{307}"]),
            ("猫がいる", vec!["ネコ", "Straße"]),
            ("École", vec!["l'école", "ÉCOLE"]),
            ("plain", vec![]),
        ];
        for (text, options) in &corpus {
            let id = store
                .begin(text, Source::Cli, SystemTime::UNIX_EPOCH)
                .unwrap();
            let finished = crate::core::store::Finished {
                status: if options.is_empty() {
                    Status::Superseded
                } else {
                    Status::Translated
                },
                provider: Some("p".into()),
                model: None,
                options: options.iter().map(|s| s.to_string()).collect(),
                latency_ms: None,
                error: None,
            };
            store.finish(id, &finished, &[]).unwrap();
        }
        let needles = [
            "cat",
            "CAT",
            "\"quoted\"",
            "\\",
            "k",
            "K",
            "\u{212A}",
            "i",
            "I",
            "i\u{307}",
            "İ",
            "%",
            "_",
            "0% s",
            "\t",
            "\n",
            "w\nl",
            "猫",
            "ねこ",
            "ネコ",
            "ss",
            "ß",
            "é",
            "É",
            "ÉCOLE",
            "\",\"",
            "[",
            "",
            "zzz",
        ];
        for needle in needles {
            let ids = |prefilter| -> Vec<i64> {
                store
                    .grep(100, needle, prefilter, None)
                    .unwrap()
                    .iter()
                    .filter_map(|r| r.id)
                    .collect()
            };
            assert_eq!(ids(true), ids(false), "needle {needle:?}");
        }
        // Any piece of a stored text or option finds its line, whatever its case or script.
        for (i, (text, options)) in corpus.iter().enumerate() {
            let id = i as i64 + 1;
            for s in std::iter::once(text).chain(options) {
                let chars: Vec<char> = s.chars().collect();
                for len in 1..=3.min(chars.len()) {
                    for piece in chars.windows(len) {
                        let piece: String = piece.iter().collect();
                        let found = store.grep(100, &piece, true, None).unwrap();
                        assert!(found.iter().any(|r| r.id == Some(id)), "{piece:?} in {s:?}");
                    }
                }
            }
        }
        // The prefilter is used for simple needles only, and its wildcards match literally.
        assert!(is_simple("cat 猫 100%") && !is_simple("é") && !is_simple("\u{212A}"));
        assert_eq!(like_patterns("5%_\\").unwrap().0, "%5\\%\\_\\\\%");
        assert_eq!(store.grep(100, "0% s", true, None).unwrap().len(), 1);
        // The Kelvin sign is its own letter for a simple needle, and folds for a needle with it.
        assert_eq!(store.grep(100, "kelvin", true, None).unwrap().len(), 0);
        assert_eq!(
            store.grep(100, "\u{212A}ELVIN", true, None).unwrap().len(),
            1
        );
    }

    #[test]
    fn stats_and_history_read_indexes_without_sorting() {
        let store = SqliteStore::open_in_memory().unwrap();
        let conn = store.conn();
        let plan = |q: &str| -> String {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {q}")).unwrap();
            let detail = |r: &Row<'_>| r.get::<_, String>(3);
            let rows: Vec<String> = match stmt.parameter_count() {
                0 => stmt
                    .query_map([], detail)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                _ => stmt
                    .query_map([0], detail)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
            };
            rows.join("; ")
        };
        for q in [LINE_TOTALS, LINE_TOTALS_ALL] {
            assert_eq!(plan(q), "SCAN lines USING COVERING INDEX lines_status");
        }
        for q in [ATTEMPT_TOTALS, ATTEMPT_TOTALS_ALL] {
            assert_eq!(plan(q), "SCAN attempts USING COVERING INDEX attempts_stats");
        }
        let latest = plan(&format!(
            "SELECT {ROW_COLUMNS} FROM lines ORDER BY id DESC LIMIT ?1"
        ));
        assert_eq!(latest, "SCAN lines");
    }

    #[test]
    fn grep_with_the_prefilter_finds_hand_edited_rows_a_full_scan_finds() {
        let store = SqliteStore::open_in_memory().unwrap();
        for _ in 0..5 {
            let id = store
                .begin("猫です", Source::Cli, SystemTime::UNIX_EPOCH)
                .unwrap();
            let finished = crate::core::store::Finished {
                status: Status::Translated,
                provider: Some("p".into()),
                model: None,
                options: vec!["A cat".into(), "Cat".into()],
                latency_ms: Some(1),
                error: None,
            };
            store.finish(id, &finished, &[]).unwrap();
        }
        store
            .conn()
            .execute_batch(
                "update lines set best = 'Edited best' where id = 1;
                 update lines set options = 'not json', best = 'Kept best' where id = 2;
                 update lines set text = cast('Blob text' as blob) where id = 3;
                 update lines set text = x'ff00', options = '[1]' where id = 4;
                 update lines set options = '{\"k\": \"Object value\"}' where id = 5;",
            )
            .unwrap();
        for needle in [
            "edited", "kept", "blob", "cat", "object", "猫", "json", "zzz",
        ] {
            let ids = |prefilter| -> Vec<Option<i64>> {
                let rows = store.grep(100, needle, prefilter, None).unwrap();
                rows.iter().map(|r| r.id).collect()
            };
            assert_eq!(ids(true), ids(false), "needle {needle:?}");
        }
        assert_eq!(store.grep(100, "edited", true, None).unwrap().len(), 1);
        assert_eq!(store.grep(100, "kept", true, None).unwrap().len(), 1);
        assert!(
            store.grep(100, "object", true, None).unwrap().is_empty(),
            "not an option"
        );
    }

    #[test]
    fn the_odd_row_queries_find_nothing_in_a_history_yaku_wrote() {
        use crate::core::provider::FailureClass;
        let store = SqliteStore::open_in_memory().unwrap();
        let classes = [
            FailureClass::RateLimited,
            FailureClass::Transient,
            FailureClass::Refused,
            FailureClass::Unauthorized,
            FailureClass::ModelUnavailable,
            FailureClass::BadRequest,
        ];
        let attempts: Vec<_> = std::iter::once("ok")
            .chain(classes.map(FailureClass::as_str))
            .map(|outcome| crate::core::store::AttemptRecord {
                provider: "p".into(),
                outcome,
                latency_ms: 5,
                opened_breaker: outcome == "refused",
            })
            .collect();
        let statuses = [
            Status::Translated,
            Status::Cached,
            Status::Failed,
            Status::Superseded,
            Status::Interrupted,
        ];
        for status in statuses {
            let id = store.begin("x", Source::Cli, SystemTime::now()).unwrap();
            let finished = crate::core::store::Finished {
                status,
                provider: Some("p".into()),
                model: None,
                options: vec!["y".into()],
                latency_ms: Some(5),
                error: None,
            };
            store.finish(id, &finished, &attempts).unwrap();
        }
        store
            .begin("still pending", Source::Clipboard, SystemTime::now())
            .unwrap();
        let conn = store.conn();
        for q in [ODD_LINES, ODD_ATTEMPTS] {
            let odd: i64 = conn
                .query_row(
                    &format!("SELECT count(*) FROM ({q})"),
                    params![None::<i64>, 100],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(odd, 0, "{q}");
        }
    }

    #[test]
    fn nearest_rank_picks_the_value_at_the_ceiling_rank() {
        let ten: Vec<(u64, u64)> = (1..=10).map(|v| (v * 100, 1)).collect();
        assert_eq!(nearest_rank(&ten, 50), Some(500));
        assert_eq!(nearest_rank(&ten, 95), Some(1000));
        assert_eq!(nearest_rank(&[(7, 1)], 50), Some(7));
        assert_eq!(nearest_rank(&[(7, 1)], 95), Some(7));
        // 20 values: rank ⌈0.95·20⌉ = 19 is the last 100 of nineteen.
        assert_eq!(nearest_rank(&[(100, 19), (900, 1)], 95), Some(100));
        assert_eq!(nearest_rank(&[(100, 18), (900, 2)], 95), Some(900));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn table_has_a_column_per_provider_and_dashes_for_missing_percentiles() {
        let stats = Stats {
            lines: 3,
            translated: 2,
            cached: 1,
            cache_hit_rate: Some(1.0 / 3.0),
            providers: vec![
                ProviderStats {
                    provider: "gemini".into(),
                    requests: 2,
                    ok: 2,
                    lines_served: 2,
                    p50_ms: Some(420),
                    p95_ms: Some(1337),
                    ..ProviderStats::default()
                },
                ProviderStats {
                    provider: "groq".into(),
                    requests: 1,
                    refused: 1,
                    ..ProviderStats::default()
                },
            ],
            ..Stats::default()
        };
        let table = render_table(&stats);
        assert!(table.contains("Cache hit rate 33.3%"), "{table}");
        let header = table.lines().find(|l| l.contains("gemini")).unwrap();
        assert!(
            header.trim_start().starts_with("gemini") && header.trim_end().ends_with("groq"),
            "{table}"
        );
        let p95 = table.lines().find(|l| l.starts_with("p95 ms")).unwrap();
        assert!(
            p95.contains("1337") && p95.trim_end().ends_with('-'),
            "{table}"
        );
    }
}
