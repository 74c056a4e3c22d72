//! The SQLite adapter of the `Store` port: the history of accepted lines, the translation
//! cache and the provider statistics, in one file that users may open with `sqlite3`.
//!
//! The file is opened in WAL mode (`synchronous = NORMAL`, a 5 s busy timeout, a 512 KiB page
//! cache), so the daemon and a `yaku history` / `yaku stats` command can use it at the same
//! time. Times are unix milliseconds, UTC.
//!
//! # Schema (version 4, kept in `PRAGMA user_version`)
//!
//! ```sql
//! -- One row per accepted line. `status` starts as 'pending' and is replaced exactly once by
//! -- 'translated', 'cached', 'failed' or 'skipped' -- or by 'interrupted' at the next start
//! -- when yaku stopped (crash, kill -9) before the line finished.
//! CREATE TABLE lines (
//!     id          INTEGER PRIMARY KEY, -- insertion order: "newest" means the highest id
//!     at_ms       INTEGER NOT NULL,    -- when the line was accepted
//!     source      TEXT    NOT NULL,    -- 'clipboard' | 'websocket' | 'cli' | 'prefetch' | 'lookahead'
//!     text        TEXT    NOT NULL,
//!     status      TEXT    NOT NULL,
//!     provider    TEXT,                -- who answered ('translated', 'cached')
//!     model       TEXT,
//!     best        TEXT,                -- options[0], for reading the table by hand
//!     options     TEXT,                -- JSON array of strings, best first; NULL when none
//!     latency_ms  INTEGER,
//!     error       TEXT,                -- 'failed': each provider's reason
//!     fallback    INTEGER NOT NULL DEFAULT 0, -- 1: translated by another provider than the first one asked
//!     finished_ms INTEGER              -- when the final status was set
//! );
//! CREATE INDEX lines_at ON lines(at_ms);
//! CREATE INDEX lines_status ON lines(status, provider, at_ms, fallback);
//!
//! -- One row per request sent to a provider for a line: what `yaku stats` counts.
//! CREATE TABLE attempts (
//!     id             INTEGER PRIMARY KEY,
//!     line_id        INTEGER NOT NULL REFERENCES lines(id) ON DELETE CASCADE,
//!     seq            INTEGER NOT NULL, -- 0 = the line's first request
//!     provider       TEXT    NOT NULL,
//!     outcome        TEXT    NOT NULL, -- 'ok', 'rate_limited', 'transient', 'refused',
//!                                      -- 'unauthorized', 'model_unavailable', 'bad_request'
//!     latency_ms     INTEGER NOT NULL,
//!     opened_breaker INTEGER NOT NULL, -- 1: this outcome opened the provider's breaker
//!     at_ms          INTEGER NOT NULL  -- the line's at_ms, so `since` selects both alike
//! );
//! CREATE UNIQUE INDEX attempts_line ON attempts(line_id, seq);
//! CREATE INDEX attempts_stats ON attempts(provider, outcome, latency_ms, at_ms, opened_breaker);
//!
//! -- Translations by cache key; `hits` counts lookups that found the entry.
//! CREATE TABLE cache (
//!     key        TEXT PRIMARY KEY,
//!     options    TEXT    NOT NULL,     -- JSON array of strings, best first
//!     provider   TEXT    NOT NULL,
//!     model      TEXT    NOT NULL,
//!     created_ms INTEGER NOT NULL,     -- when this answer was stored (a replacement resets it)
//!     hits       INTEGER NOT NULL DEFAULT 0
//! );
//!
//! -- Version 2: who says the line, as the text names it ('春香' for 【春香】「…」); NULL when
//! -- the line names no speaker, and for lines recorded before version 2.
//! ALTER TABLE lines ADD COLUMN speaker TEXT;
//!
//! -- Version 3: the `[[games]]` profile of each line and cache entry; NULL: no profile.
//! ALTER TABLE lines ADD COLUMN game TEXT;
//! ALTER TABLE cache ADD COLUMN game TEXT;
//! CREATE INDEX lines_game ON lines(game, id);
//!
//! -- Version 4: `yaku pick N`: the option (1-based) the reader chose; NULL when none.
//! ALTER TABLE lines ADD COLUMN chosen INTEGER;
//! ```
//!
//! An attempt's `outcome` may also be 'cancelled' (no schema change: the column is TEXT): a
//! hedged request dropped because another provider answered the line first. It counts as a
//! request, never as a failure.
//!
//! The covering indexes `lines_status` and `attempts_stats` are what keep `yaku stats` fast
//! on a large history: both aggregates read only an index, in its order.
//!
//! Users edit the file by hand, so nothing read from it is trusted to be as yaku wrote it
//! (`cell.rs`): an odd row is never a store failure. A cache entry yaku cannot use is a miss,
//! which the next answer replaces; a history or request row is shown and counted as best it
//! can be ([`HistoryRow`], [`SqliteStore::stats`]). Each odd row is logged once, by table
//! and id and never with its text.

mod cell;
mod format;
mod query;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use crate::core::store::{
    AttemptRecord, CachedAnswer, Finished, Source, Status, Store, StoreError,
};

pub use cell::{Stored, Text, UNREADABLE, Vocabulary};
pub use format::{rfc3339_ms, system_time_from_ms, unix_ms};
pub use query::{CSV_HEADER, ExportFormat, HistoryRow, ProviderStats, Stats, render_table};

/// Rows deleted per transaction by [`SqliteStore::prune`].
pub const PRUNE_BATCH: u64 = 10_000;

/// The schema version this build writes: the number of `MIGRATIONS`.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Forward migrations; step `i` takes the file from version `i` to `i + 1`. Never edit a
/// released step: append a new one.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// Version 3: each line's and cache entry's game profile (NULL: none); `lines_game` serves
/// `yaku history --game`. Kept identical to the module doc, as V1 is.
const V3: &str = "\
-- Version 3: the `[[games]]` profile of each line and cache entry; NULL: no profile.
ALTER TABLE lines ADD COLUMN game TEXT;
ALTER TABLE cache ADD COLUMN game TEXT;
CREATE INDEX lines_game ON lines(game, id);
";

/// Version 4: the reader's choice of option (`yaku pick N`). Kept identical to the module doc.
const V4: &str = "\
-- Version 4: `yaku pick N`: the option (1-based) the reader chose; NULL when none.
ALTER TABLE lines ADD COLUMN chosen INTEGER;
";

/// Version 1, the initial schema. Kept identical to the module doc (a unit test checks it),
/// comments included, so `sqlite3 yaku.db .schema` shows them.
const V1: &str = "\
-- One row per accepted line. `status` starts as 'pending' and is replaced exactly once by
-- 'translated', 'cached', 'failed' or 'skipped' -- or by 'interrupted' at the next start
-- when yaku stopped (crash, kill -9) before the line finished.
CREATE TABLE lines (
    id          INTEGER PRIMARY KEY, -- insertion order: \"newest\" means the highest id
    at_ms       INTEGER NOT NULL,    -- when the line was accepted
    source      TEXT    NOT NULL,    -- 'clipboard' | 'websocket' | 'cli' | 'prefetch' | 'lookahead'
    text        TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    provider    TEXT,                -- who answered ('translated', 'cached')
    model       TEXT,
    best        TEXT,                -- options[0], for reading the table by hand
    options     TEXT,                -- JSON array of strings, best first; NULL when none
    latency_ms  INTEGER,
    error       TEXT,                -- 'failed': each provider's reason
    fallback    INTEGER NOT NULL DEFAULT 0, -- 1: translated by another provider than the first one asked
    finished_ms INTEGER              -- when the final status was set
);
CREATE INDEX lines_at ON lines(at_ms);
CREATE INDEX lines_status ON lines(status, provider, at_ms, fallback);

-- One row per request sent to a provider for a line: what `yaku stats` counts.
CREATE TABLE attempts (
    id             INTEGER PRIMARY KEY,
    line_id        INTEGER NOT NULL REFERENCES lines(id) ON DELETE CASCADE,
    seq            INTEGER NOT NULL, -- 0 = the line's first request
    provider       TEXT    NOT NULL,
    outcome        TEXT    NOT NULL, -- 'ok', 'rate_limited', 'transient', 'refused',
                                     -- 'unauthorized', 'model_unavailable', 'bad_request'
    latency_ms     INTEGER NOT NULL,
    opened_breaker INTEGER NOT NULL, -- 1: this outcome opened the provider's breaker
    at_ms          INTEGER NOT NULL  -- the line's at_ms, so `since` selects both alike
);
CREATE UNIQUE INDEX attempts_line ON attempts(line_id, seq);
CREATE INDEX attempts_stats ON attempts(provider, outcome, latency_ms, at_ms, opened_breaker);

-- Translations by cache key; `hits` counts lookups that found the entry.
CREATE TABLE cache (
    key        TEXT PRIMARY KEY,
    options    TEXT    NOT NULL,     -- JSON array of strings, best first
    provider   TEXT    NOT NULL,
    model      TEXT    NOT NULL,
    created_ms INTEGER NOT NULL,     -- when this answer was stored (a replacement resets it)
    hits       INTEGER NOT NULL DEFAULT 0
);
";

/// Version 2: the speaker column. Kept identical to the module doc, as V1 is.
const V2: &str = "\
-- Version 2: who says the line, as the text names it ('春香' for 【春香】「…」); NULL when
-- the line names no speaker, and for lines recorded before version 2.
ALTER TABLE lines ADD COLUMN speaker TEXT;
";

/// How to open the store. `Options::default()` is what the daemon uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How long a write waits for another connection's write transaction before failing.
    pub busy_timeout: Duration,
    /// Run `PRAGMA quick_check` at open (reads the whole file) instead of only reading the
    /// schema. Either way a file that is not a database is moved aside.
    pub quick_check: bool,
    /// Turn rows still `pending` into `interrupted`. Right for the daemon at start; a command
    /// that may run beside a live daemon passes `false`, or it would end the daemon's line.
    pub recover_pending: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            quick_check: true,
            recover_pending: true,
        }
    }
}

impl Options {
    /// For `yaku history`, `yaku stats` and `yaku export`, which may run beside the daemon
    /// and must answer within 50 ms: pending lines are left to the daemon, and the check is a
    /// schema read (`quick_check` reads the whole file: ~55 ms at 100,000 lines). A file that
    /// is not a database is still moved aside; damage deeper in the file shows up as a query
    /// error, and the daemon's next start (or `yaku check`) finds it.
    pub fn command() -> Self {
        Self {
            quick_check: false,
            recover_pending: false,
            ..Self::default()
        }
    }
}

/// What `open` found and did, for the caller to warn about once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The file at the path was unreadable and was moved aside; a fresh store was created.
    pub moved_aside: Option<MovedAside>,
    /// Rows that were still `pending` and are now `interrupted`.
    pub interrupted: u64,
    /// The schema version found, when migrations ran (0 for a new file).
    pub migrated_from: Option<u32>,
}

/// An unreadable store file that was renamed instead of deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedAside {
    /// The new name, `<name>.corrupt-<unix seconds>`; its `-wal`/`-shm` files, if there were
    /// any, got the same name plus `-wal`/`-shm`.
    pub to: PathBuf,
    /// What SQLite said about it.
    pub reason: String,
}

/// The SQLite store. One connection behind a mutex: the daemon's calls are short, and SQLite
/// serialises writers anyway.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
    /// Odd rows already logged: the daemon looks the same cache entry up again and again.
    reported: Mutex<Reported>,
    /// The device and inode of the file the connection has open, to notice the file being
    /// deleted or replaced under us (None in memory, or where the platform has no inodes).
    identity: Mutex<Option<FileId>>,
    /// How the file was opened, for reopening it.
    opts: Options,
}

/// A file's device and inode number.
type FileId = (u64, u64);

/// The identity of the file at `path` now, or None when there is none.
fn file_id(path: &Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// How many odd rows are logged one by one. A single `update` can touch every row; past
/// this many, one line says that more are not named.
pub(crate) const REPORT_LIMIT: usize = 100;

#[derive(Default)]
struct Reported {
    /// (table, id) of each row logged.
    rows: HashSet<(&'static str, Option<i64>)>,
    /// The limit was reached and said so.
    full: bool,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

/// Why a connection could not be used: only `Unreadable` justifies moving the file aside.
enum Health {
    Unreadable(String),
    Failed(StoreError),
}

impl SqliteStore {
    /// Opens (creating, migrating, repairing) the store at `path` with the default options.
    pub fn open(path: &Path) -> Result<(SqliteStore, OpenReport), StoreError> {
        Self::open_with(path, &Options::default())
    }

    /// Opens the store at `path`: creates the parent directory (0700) and the file (0600) when
    /// missing, moves an unreadable file aside and starts afresh, migrates the schema, and
    /// (with `recover_pending`) marks rows left `pending` as `interrupted`.
    pub fn open_with(path: &Path, opts: &Options) -> Result<(SqliteStore, OpenReport), StoreError> {
        if path.is_dir() {
            return Err(StoreError::File(format!(
                "store path {} is a directory, not a database file",
                path.display()
            )));
        }
        prepare_file(path)?;
        // Companion files present before SQLite looks: only these belong to the old file.
        let companions: Vec<&str> = COMPANIONS
            .into_iter()
            .filter(|s| with_suffix(path, s).exists())
            .collect();
        let mut report = OpenReport::default();
        let conn = match connect(path, opts) {
            Ok(conn) => conn,
            Err(Health::Failed(e)) => return Err(e),
            Err(Health::Unreadable(reason)) => {
                let to = move_aside(path, &companions, SystemTime::now())?;
                report.moved_aside = Some(MovedAside { to, reason });
                prepare_file(path)?;
                match connect(path, opts) {
                    Ok(conn) => conn,
                    Err(Health::Failed(e)) => return Err(e),
                    Err(Health::Unreadable(reason)) => {
                        return Err(StoreError::Database(format!(
                            "{}: a fresh database is unreadable too: {reason}",
                            path.display()
                        )));
                    }
                }
            }
        };
        let mut conn = conn;
        // Before anything writes (WAL mode changes the header): a newer file stays untouched.
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(at(path))?;
        if found > i64::from(SCHEMA_VERSION) {
            return Err(StoreError::Schema(format!(
                "{}: {}",
                path.display(),
                too_new(found)
            )));
        }
        configure(&conn, true).map_err(at(path))?;
        report.migrated_from = migrate(&mut conn).map_err(|e| with_path(path, e))?;
        if opts.recover_pending {
            report.interrupted = recover_pending(&conn).map_err(at(path))?;
        }
        let store = SqliteStore {
            conn: Mutex::new(conn),
            path: Some(path.to_path_buf()),
            reported: Mutex::default(),
            identity: Mutex::new(file_id(path)),
            opts: opts.clone(),
        };
        Ok((store, report))
    }

    /// Runs `PRAGMA quick_check` on the file at `path` on a connection of its own (read only),
    /// so the daemon can check a large store in the background while it serves lines.
    /// `Ok(None)` means the check found nothing wrong.
    pub fn check_file(path: &Path) -> Result<Option<String>, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(at(path))?;
        quick_check(&conn).map_err(at(path))
    }

    /// Checks the file with `PRAGMA quick_check` — first on a read-only connection of its own,
    /// so lines go on being written meanwhile — and when it is damaged moves it aside (with its
    /// -wal/-shm) and starts a fresh file at the path, as `open` does for an unreadable one.
    /// The daemon runs this in the background after start instead of a check at open.
    pub fn replace_if_damaged(&self) -> Result<Option<MovedAside>, StoreError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        if Self::check_file(path)?.is_none() {
            return Ok(None);
        }
        let mut identity = self.identity.lock().unwrap_or_else(|e| e.into_inner());
        let mut conn = self.conn();
        // Confirmed on our own connection, which sees our latest writes.
        let reason = match quick_check(&conn) {
            Ok(None) => return Ok(None),
            Ok(Some(reason)) => reason,
            Err(e) => e.to_string(),
        };
        let placeholder = Connection::open_in_memory().map_err(sql("replacing the store"))?;
        drop(std::mem::replace(&mut *conn, placeholder));
        let companions: Vec<&str> = COMPANIONS
            .into_iter()
            .filter(|s| with_suffix(path, s).exists())
            .collect();
        let to = move_aside(path, &companions, SystemTime::now())?;
        let opts = Options {
            quick_check: false,
            ..self.opts.clone()
        };
        let (fresh, _) = SqliteStore::open_with(path, &opts)?;
        *identity = fresh
            .identity
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        *conn = fresh.conn.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(Some(MovedAside { to, reason }))
    }

    /// A store in memory, for tests of code that needs one.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let mut conn = Connection::open_in_memory().map_err(sql("opening an in-memory store"))?;
        configure(&conn, false).map_err(sql("configuring the store"))?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: None,
            reported: Mutex::default(),
            identity: Mutex::new(None),
            opts: Options::default(),
        })
    }

    /// The file this store lives in (None in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Deletes history beyond the newest `max_rows` lines (0 = no limit) and lines accepted
    /// more than `max_days` days before `now` (0 = keep forever), with their attempts.
    /// `pending` lines are kept: they are in flight. Returns the number of lines deleted.
    ///
    /// Deletes in transactions of [`PRUNE_BATCH`] rows, each committed and each taking the
    /// connection on its own, so a large backlog neither holds up the daemon's lines nor loses
    /// its progress when yaku stops half way.
    pub fn prune(&self, max_rows: u64, max_days: u64, now: SystemTime) -> Result<u64, StoreError> {
        let batch = i64::try_from(PRUNE_BATCH).unwrap_or(i64::MAX);
        let mut deleted = 0u64;
        if max_days > 0 {
            let cutoff = unix_ms(now).saturating_sub(
                i64::try_from(max_days)
                    .unwrap_or(i64::MAX)
                    .saturating_mul(86_400_000),
            );
            deleted += self.delete_in_batches(
                "pruning old lines",
                "DELETE FROM lines WHERE id IN (SELECT id FROM lines
                   WHERE at_ms < ?1 AND status <> 'pending' LIMIT ?2)",
                cutoff,
                batch,
            )?;
        }
        if max_rows > 0 {
            let offset = i64::try_from(max_rows).unwrap_or(i64::MAX);
            // The id of the newest row that must go; everything at or below it goes too.
            let cutoff = self.nth_newest(
                "pruning surplus lines",
                "SELECT id FROM lines ORDER BY id DESC LIMIT 1 OFFSET ?1",
                offset,
            )?;
            if let Some(cutoff) = cutoff {
                deleted += self.delete_in_batches(
                    "pruning surplus lines",
                    "DELETE FROM lines WHERE id IN (SELECT id FROM lines
                       WHERE id <= ?1 AND status <> 'pending' ORDER BY id LIMIT ?2)",
                    cutoff,
                    batch,
                )?;
            }
            // The cache follows the same bound, oldest answers first, so it cannot grow for ever.
            let cutoff = self.nth_newest(
                "pruning the cache",
                "SELECT created_ms FROM cache ORDER BY created_ms DESC LIMIT 1 OFFSET ?1",
                offset,
            )?;
            if let Some(cutoff) = cutoff {
                self.delete_in_batches(
                    "pruning the cache",
                    "DELETE FROM cache WHERE rowid IN (SELECT rowid FROM cache
                       WHERE created_ms <= ?1 LIMIT ?2)",
                    cutoff,
                    batch,
                )?;
            }
        }
        Ok(deleted)
    }

    /// The value `query` (ordered newest first, `OFFSET ?1`) finds `offset` rows down: the
    /// newest that retention removes. None when there are no more rows than that.
    fn nth_newest(
        &self,
        doing: &'static str,
        query: &str,
        offset: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(query, [offset], |r| r.get(0))
            .optional()
            .map_err(sql(doing))
    }

    /// Runs `delete` (with `?1` = `arg`, `?2` = the batch size) in committed transactions until
    /// one deletes fewer rows than a batch. Returns the rows deleted.
    fn delete_in_batches(
        &self,
        what: &'static str,
        delete: &str,
        arg: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        loop {
            let n = {
                let mut conn = self.conn();
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql(what))?;
                let n = tx.execute(delete, [arg, batch]).map_err(sql(what))?;
                tx.commit().map_err(sql(what))?;
                n
            };
            deleted += to_u64(n);
            if i64::try_from(n).unwrap_or(i64::MAX) < batch {
                return Ok(deleted);
            }
        }
    }

    /// Deletes all history lines and their attempts; the translation cache stays (it holds no
    /// record of what was read when). Returns the number of lines deleted. A line the daemon
    /// has in flight goes too; its `finish` then records nothing.
    pub fn clear(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("clearing the history"))?;
        tx.execute("DELETE FROM attempts", [])
            .map_err(sql("clearing the history"))?;
        let n = tx
            .execute("DELETE FROM lines", [])
            .map_err(sql("clearing the history"))?;
        tx.commit().map_err(sql("clearing the history"))?;
        Ok(to_u64(n))
    }

    /// Logs, once per row, that row `id` of `table` holds what yaku does not write (a hand
    /// edit) and what was done about it. Never the row's text: it may be anything the user read.
    fn report_odd(&self, table: &'static str, id: Option<i64>, handled: &'static str) {
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if reported.rows.contains(&(table, id)) {
            return;
        }
        if reported.rows.len() >= REPORT_LIMIT {
            if !reported.full {
                reported.full = true;
                tracing::warn!(
                    limit = REPORT_LIMIT,
                    "more rows hold values yaku does not write; they are not named one by one"
                );
            }
            return;
        }
        reported.rows.insert((table, id));
        match id {
            Some(id) => tracing::warn!(
                table,
                id,
                "row holds values yaku does not write (edited by hand?): {handled}"
            ),
            None => tracing::warn!(
                table,
                "a row without a readable id holds values yaku does not write (edited by hand?): {handled}"
            ),
        }
    }

    /// Reopens the store when the file at its path is no longer the one the connection has
    /// open (deleted, or replaced by a rename): writing on would go to an unlinked inode and be
    /// lost. One `stat` per call; a warning each time the file is found gone.
    fn follow_file(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut identity = self.identity.lock().unwrap_or_else(|e| e.into_inner());
        let now = file_id(path);
        if identity.is_none() || now == *identity {
            return Ok(());
        }
        tracing::warn!(path = %path.display(), "the history store file was deleted or replaced; opening it afresh");
        let mut conn = self.conn();
        // The old connection's -wal file is still at the path's name: empty it and close the
        // connection (which removes it) before opening, or its frames would be replayed into
        // the new file.
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        let placeholder = Connection::open_in_memory().map_err(sql("reopening the store"))?;
        drop(std::mem::replace(&mut *conn, placeholder));
        let opts = Options {
            quick_check: false,
            ..self.opts.clone()
        };
        let (fresh, _) = SqliteStore::open_with(path, &opts)?;
        *identity = fresh
            .identity
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        *conn = fresh.conn.into_inner().unwrap_or_else(|e| e.into_inner());
        Ok(())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite rolls back any
        // transaction the panicking call had open when it is dropped.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for SqliteStore {
    fn begin(&self, text: &str, source: Source, at: SystemTime) -> Result<i64, StoreError> {
        self.begin_game(text, source, at, None)
    }

    fn begin_game(
        &self,
        text: &str,
        source: Source,
        at: SystemTime,
        game: Option<&str>,
    ) -> Result<i64, StoreError> {
        self.follow_file()?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO lines (at_ms, source, text, status, speaker, game)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
            )
            .map_err(sql("recording a line"))?;
        // The speaker is what the text names, split as the prompt splits it.
        let speaker = crate::core::speaker::split(text).speaker;
        stmt.execute(params![unix_ms(at), source.as_str(), text, speaker, game])
            .map_err(sql("recording a line"))?;
        Ok(conn.last_insert_rowid())
    }

    /// A line that is not `pending` any more keeps its final status and nothing is stored
    /// (attempts included); so does a line that is gone (`clear` while it was in flight).
    /// Both return `Ok` with a log line: the daemon treats a store error as an outage, and
    /// neither is one.
    fn finish(
        &self,
        id: i64,
        finished: &Finished,
        attempts: &[AttemptRecord],
    ) -> Result<(), StoreError> {
        if finished.status == Status::Pending {
            return Err(StoreError::Refused(format!(
                "line {id}: `pending` is not a final status"
            )));
        }
        let options = if finished.options.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(&finished.options)
                    .map_err(|e| StoreError::Encoding(format!("encoding options: {e}")))?,
            )
        };
        let fallback = finished.status == Status::Translated
            && attempts
                .first()
                .is_some_and(|first| finished.provider.as_deref() != Some(first.provider.as_str()));
        let latency = finished.latency_ms.map(to_i64);

        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("finishing a line"))?;
        let changed = tx
            .prepare_cached(
                "UPDATE lines SET status = ?2, provider = ?3, model = ?4, best = ?5, options = ?6,
                        latency_ms = ?7, error = ?8, fallback = ?9, finished_ms = ?10
                  WHERE id = ?1 AND status = 'pending'",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    id,
                    finished.status.as_str(),
                    finished.provider,
                    finished.model,
                    finished.options.first(),
                    options,
                    latency,
                    finished.error,
                    fallback,
                    unix_ms(SystemTime::now()),
                ])
            })
            .map_err(sql("finishing a line"))?;
        if changed == 0 {
            return already_final(&tx, id, finished.status);
        }
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO attempts (line_id, seq, provider, outcome, latency_ms, opened_breaker, at_ms)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, at_ms FROM lines WHERE id = ?1",
                )
                .map_err(sql("recording attempts"))?;
            for (seq, a) in attempts.iter().enumerate() {
                insert
                    .execute(params![
                        id,
                        to_i64(seq as u64),
                        a.provider,
                        a.outcome,
                        to_i64(a.latency_ms),
                        a.opened_breaker
                    ])
                    .map_err(sql("recording attempts"))?;
            }
        }
        tx.commit().map_err(sql("finishing a line"))
    }

    /// A hit also counts itself in `cache.hits`. An entry yaku cannot use is a miss, never
    /// an error (the daemon would take the store down for it): options that are not a JSON
    /// array of strings or hold only empty strings, or a provider or model that cannot be
    /// read. The answer translated next replaces it through `cache_put`.
    fn cache_get(&self, key: &str) -> Result<Option<CachedAnswer>, StoreError> {
        let found = {
            let conn = self.conn();
            // One statement finds the entry and counts the hit.
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE cache SET hits = hits + 1 WHERE key = ?1
                     RETURNING rowid, options, provider, model",
                )
                .map_err(sql("reading the cache"))?;
            stmt.query_row([key], |r| {
                let (id, _) = cell::int_of(r.get_ref(0)?);
                Ok((id, cached_answer(r)?))
            })
            .optional()
            .map_err(sql("reading the cache"))?
        };
        let Some((id, (answer, odd))) = found else {
            return Ok(None);
        };
        match (&answer, odd) {
            (None, _) => self.report_odd(
                "cache",
                id,
                "not usable: a miss, which the next answer replaces",
            ),
            (Some(_), true) => self.report_odd("cache", id, "used as read"),
            (Some(_), false) => {}
        }
        Ok(answer)
    }

    /// Replacing an entry resets its `created_ms` and `hits`: it is a different answer.
    fn cache_put(&self, key: &str, answer: &CachedAnswer) -> Result<(), StoreError> {
        self.cache_put_game(key, answer, None)
    }

    fn cache_put_game(
        &self,
        key: &str,
        answer: &CachedAnswer,
        game: Option<&str>,
    ) -> Result<(), StoreError> {
        let options = serde_json::to_string(&answer.options)
            .map_err(|e| StoreError::Encoding(format!("encoding options: {e}")))?;
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO cache (key, options, provider, model, created_ms, hits, game) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)
                 ON CONFLICT (key) DO UPDATE SET options = excluded.options, provider = excluded.provider,
                     model = excluded.model, created_ms = excluded.created_ms, hits = 0, game = excluded.game",
            )
            .map_err(sql("writing the cache"))?;
        stmt.execute(params![
            key,
            options,
            answer.provider,
            answer.model,
            unix_ms(SystemTime::now()),
            game
        ])
        .map_err(sql("writing the cache"))?;
        Ok(())
    }

    /// The retention as the daemon applies it through the port: [`SqliteStore::prune`].
    fn prune(&self, max_rows: u64, max_days: u64, now: SystemTime) -> Result<u64, StoreError> {
        SqliteStore::prune(self, max_rows, max_days, now)
    }
}

/// Reads `options, provider, model` (columns 1 to 3) of a cache row: the answer, None when
/// it cannot be used, and whether anything in it is not as yaku writes it. Empty options are
/// dropped, so an entry whose options are all empty is no answer.
fn cached_answer(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Option<CachedAnswer>, bool)> {
    let mut c = cell::Cells::new(r);
    let options = c.options(1)?;
    let provider = c.text(2, false)?;
    let model = c.text(3, false)?;
    // NULL options read as "none" for history lines; in the cache they are not an answer.
    let mut odd = c.odd || matches!(r.get_ref(1)?, rusqlite::types::ValueRef::Null);
    let options = options.map(|all| {
        let n = all.len();
        let kept: Vec<String> = all.into_iter().filter(|o| !o.trim().is_empty()).collect();
        odd |= kept.len() != n;
        kept
    });
    let answer = match (options, provider, model) {
        (Some(options), Some(provider), Some(model)) if !options.is_empty() => Some(CachedAnswer {
            options,
            provider,
            model,
        }),
        _ => None,
    };
    Ok((answer, odd))
}

/// Creates the parent directory (0700) and an empty file (0600) so that SQLite, which would
/// create it 0644, finds it there. Existing ones keep their modes.
/// A line that is no longer `pending` is not finished again: says what it holds (a second
/// finish, or a hand edit) and keeps it.
fn already_final(tx: &Connection, id: i64, wanted: Status) -> Result<(), StoreError> {
    // Read leniently: a hand edit may have left anything there.
    let current: Option<Option<String>> = tx
        .query_row("SELECT status FROM lines WHERE id = ?1", [id], |r| {
            Ok(cell::text_of(r.get_ref(0)?).0)
        })
        .optional()
        .map_err(sql("finishing a line"))?;
    match current {
        Some(status) => tracing::warn!(
            line = id,
            status = status.as_deref().unwrap_or(UNREADABLE),
            wanted = wanted.as_str(),
            "history line already has its final status; kept"
        ),
        None => tracing::debug!(line = id, "history line is gone (cleared); not recorded"),
    }
    Ok(())
}

fn prepare_file(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(parent)
            .map_err(|e| StoreError::File(format!("creating {}: {e}", parent.display())))?;
    }
    let mut file = fs::OpenOptions::new();
    file.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    file.open(path)
        .map(drop)
        .map_err(|e| StoreError::Database(format!("opening {}: {e}", path.display())))
}

/// Opens a connection and checks that the file is a readable database.
fn connect(path: &Path, opts: &Options) -> Result<Connection, Health> {
    let failed = |e: rusqlite::Error| {
        Health::Failed(StoreError::Database(format!(
            "opening {}: {e}",
            path.display()
        )))
    };
    let conn = Connection::open(path).map_err(failed)?;
    // Closing a connection checkpoints and deletes the WAL; an unreadable file's `-wal` and
    // `-shm` must survive to be moved aside with it.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(failed)?;
    conn.busy_timeout(opts.busy_timeout).map_err(failed)?;
    let check = if opts.quick_check {
        quick_check(&conn)
    } else {
        // Reading the schema is enough to tell a database from something else.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|_| None)
    };
    match check {
        Ok(None) => {
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)
                .map_err(failed)?;
            Ok(conn)
        }
        Ok(Some(problem)) => Err(Health::Unreadable(problem)),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
            ) =>
        {
            Err(Health::Unreadable(e.to_string()))
        }
        // Busy, permissions, I/O: the file may be fine; never move it aside for these.
        Err(e) => Err(failed(e)),
    }
}

/// `PRAGMA quick_check`: None when it says "ok", else its first few complaints.
fn quick_check(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(None)
    } else {
        Ok(Some(format!("quick_check: {}", lines.join("; "))))
    }
}

/// The page cache of each connection, in KiB (negative: SQLite reads it as KiB, not pages).
const CACHE_KIB: i64 = -512;

fn configure(conn: &Connection, wal: bool) -> rusqlite::Result<()> {
    if wal {
        // Returns the mode in effect; a filesystem without shared memory keeps the old one,
        // which still works, only with less concurrency.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // SQLite's default page cache (2 MB a connection) fills as the history grows and stays
    // filled: most of a long-running daemon's growth. Its reads are point lookups by index,
    // and the OS caches the file anyway.
    conn.pragma_update(None, "cache_size", CACHE_KIB)?;
    conn.pragma_update(None, "foreign_keys", true)
}

/// Applies the missing migrations in one transaction. Returns the version found when any ran.
fn migrate(conn: &mut Connection) -> Result<Option<u32>, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("migrating the schema"))?;
    // Read inside the write transaction: another process may have just migrated.
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql("reading the schema version"))?;
    if found > i64::from(SCHEMA_VERSION) {
        return Err(StoreError::Schema(too_new(found)));
    }
    let found = u32::try_from(found)
        .map_err(|_| StoreError::Schema(format!("unknown schema version {found}")))?;
    if found == SCHEMA_VERSION {
        return Ok(None);
    }
    for step in &MIGRATIONS[found as usize..] {
        tx.execute_batch(step)
            .map_err(sql("migrating the schema"))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql("migrating the schema"))?;
    tx.commit().map_err(sql("migrating the schema"))?;
    Ok(Some(found))
}

fn too_new(found: i64) -> String {
    format!(
        "schema version {found} is newer than this yaku knows ({SCHEMA_VERSION}); the file was \
         left untouched: use a newer yaku, or point the store elsewhere"
    )
}

fn recover_pending(conn: &Connection) -> rusqlite::Result<u64> {
    let n = conn.execute(
        "UPDATE lines SET status = 'interrupted', finished_ms = ?1 WHERE status = 'pending'",
        [unix_ms(SystemTime::now())],
    )?;
    Ok(to_u64(n))
}

/// The files SQLite keeps next to a database.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Renames `path` and its `companions` (suffixes) to `<name>.corrupt-<unix seconds>[.<n>]`
/// (plus the suffix) in the same directory, and deletes the companion files SQLite created
/// while finding the file unreadable. Returns the new main path.
fn move_aside(path: &Path, companions: &[&str], now: SystemTime) -> Result<PathBuf, StoreError> {
    let name = path
        .file_name()
        .ok_or_else(|| StoreError::File(format!("{} has no file name", path.display())))?
        .to_string_lossy()
        .into_owned();
    let secs = unix_ms(now).div_euclid(1000);
    let mut to = path.with_file_name(format!("{name}.corrupt-{secs}"));
    // Never overwrite an earlier casualty from the same second.
    let mut n = 1;
    while to.exists() {
        to = path.with_file_name(format!("{name}.corrupt-{secs}.{n}"));
        n += 1;
    }
    fs::rename(path, &to)
        .map_err(|e| StoreError::File(format!("moving {} aside: {e}", path.display())))?;
    for suffix in COMPANIONS {
        let from = with_suffix(path, suffix);
        if !from.exists() {
            continue;
        }
        if companions.contains(&suffix) {
            let dest = with_suffix(&to, suffix);
            fs::rename(&from, &dest)
                .map_err(|e| StoreError::File(format!("moving {} aside: {e}", from.display())))?;
        } else {
            // Left here, it would be taken for the fresh database's.
            fs::remove_file(&from)
                .map_err(|e| StoreError::File(format!("removing {}: {e}", from.display())))?;
        }
    }
    Ok(to)
}

/// The same failure, named by the file it happened in.
fn with_path(path: &Path, e: StoreError) -> StoreError {
    let named = |m: String| format!("{}: {m}", path.display());
    match e {
        StoreError::Database(m) => StoreError::Database(named(m)),
        StoreError::File(m) => StoreError::File(named(m)),
        StoreError::Schema(m) => StoreError::Schema(named(m)),
        StoreError::Encoding(m) => StoreError::Encoding(named(m)),
        StoreError::Refused(m) => StoreError::Refused(named(m)),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Maps a rusqlite error to a `StoreError` saying what was being done.
fn sql(doing: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database(format!("{doing}: {e}"))
}

/// Maps a rusqlite error to a `StoreError` naming the file.
fn at(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Database(format!("{}: {e}", path.display()))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL in the module doc, which ARCHITECTURE.md copies.
    fn doc_schema() -> String {
        let src = include_str!("store.rs");
        let mut out = String::new();
        let mut inside = false;
        for line in src.lines() {
            let Some(doc) = line.strip_prefix("//!") else {
                continue;
            };
            let doc = doc.strip_prefix(' ').unwrap_or(doc);
            if doc.trim() == "```sql" {
                inside = true;
            } else if inside && doc.trim() == "```" {
                break;
            } else if inside {
                out.push_str(doc);
                out.push('\n');
            }
        }
        out
    }

    fn schema_of(conn: &Connection) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn each_connection_keeps_a_small_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = SqliteStore::open(&dir.path().join("yaku.db")).unwrap();
        let kib: i64 = store
            .conn()
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kib, CACHE_KIB);
    }

    #[test]
    fn documented_schema_is_the_migrated_schema() {
        let doc = doc_schema();
        assert!(
            doc.contains("CREATE TABLE lines"),
            "no schema found in the module doc"
        );
        let documented = Connection::open_in_memory().unwrap();
        documented.execute_batch(&doc).unwrap();
        let store = SqliteStore::open_in_memory().unwrap();
        let migrated = store.conn();
        assert_eq!(schema_of(&documented), schema_of(&migrated));
    }

    #[test]
    fn in_memory_store_is_at_the_current_schema_version() {
        let store = SqliteStore::open_in_memory().unwrap();
        let v: u32 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 4);
    }

    fn count(store: &SqliteStore, sql: &str) -> i64 {
        store.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn prune_works_through_a_backlog_of_several_batches_and_keeps_pending_lines() {
        let store = SqliteStore::open_in_memory().unwrap();
        let pending = store
            .begin("in flight", Source::Cli, SystemTime::now())
            .unwrap();
        store
            .conn()
            .execute_batch(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 25000)
                 INSERT INTO lines (at_ms, source, text, status) SELECT i, 'cli', 'x', 'failed' FROM n;",
            )
            .unwrap();
        let deleted = store.prune(100, 0, SystemTime::now()).unwrap();
        assert_eq!(deleted, 24_900, "every surplus line but the pending one");
        assert_eq!(count(&store, "SELECT count(*) FROM lines"), 101);
        assert_eq!(
            count(
                &store,
                &format!("SELECT count(*) FROM lines WHERE id = {pending}")
            ),
            1
        );
        assert_eq!(store.prune(100, 0, SystemTime::now()).unwrap(), 0);
    }

    #[test]
    // Windows refuses to delete or replace a file SQLite holds open, and file_id has no inode there.
    #[cfg(unix)]
    fn a_store_file_deleted_or_replaced_is_reopened_before_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yaku.db");
        let (store, _) = SqliteStore::open(&path).unwrap();
        store
            .begin("before", Source::Cli, SystemTime::now())
            .unwrap();
        // Only the main file: its -wal and -shm, left behind, must not come back to life.
        fs::remove_file(&path).unwrap();
        store
            .begin("after deletion", Source::Cli, SystemTime::now())
            .unwrap();
        let texts = |p: &Path| -> Vec<String> {
            let conn = Connection::open(p).unwrap();
            let mut stmt = conn.prepare("SELECT text FROM lines ORDER BY id").unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(texts(&path), ["after deletion"]);
        // Replaced by a rename (a restored backup): the new file is the one written.
        let other = dir.path().join("backup.db");
        let (backup, _) = SqliteStore::open(&other).unwrap();
        backup
            .begin("from the backup", Source::Cli, SystemTime::now())
            .unwrap();
        drop(backup);
        fs::rename(&other, &path).unwrap();
        store
            .begin("after the rename", Source::Cli, SystemTime::now())
            .unwrap();
        assert_eq!(texts(&path), ["from the backup", "after the rename"]);
    }

    #[test]
    fn finishing_as_pending_is_refused() {
        let store = SqliteStore::open_in_memory().unwrap();
        let id = store
            .begin("テスト", Source::Cli, SystemTime::now())
            .unwrap();
        let f = Finished {
            status: Status::Pending,
            provider: None,
            model: None,
            options: vec![],
            latency_ms: None,
            error: None,
        };
        assert!(store.finish(id, &f, &[]).is_err());
    }

    #[test]
    fn fallback_is_stored_only_when_another_provider_was_asked_first() {
        let store = SqliteStore::open_in_memory().unwrap();
        let attempt = |p: &str, outcome| AttemptRecord {
            provider: p.into(),
            outcome,
            latency_ms: 10,
            opened_breaker: false,
        };
        let done = |p: &str| Finished {
            status: Status::Translated,
            provider: Some(p.into()),
            model: Some("m".into()),
            options: vec!["x".into()],
            latency_ms: Some(10),
            error: None,
        };
        let a = store.begin("a", Source::Cli, SystemTime::now()).unwrap();
        store
            .finish(
                a,
                &done("groq"),
                &[attempt("gemini", "rate_limited"), attempt("groq", "ok")],
            )
            .unwrap();
        let b = store.begin("b", Source::Cli, SystemTime::now()).unwrap();
        store
            .finish(
                b,
                &done("gemini"),
                &[attempt("gemini", "transient"), attempt("gemini", "ok")],
            )
            .unwrap();
        let flags: Vec<i64> = {
            let conn = store.conn();
            let mut stmt = conn
                .prepare("SELECT fallback FROM lines ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(flags, vec![1, 0]);
    }

    #[test]
    fn move_aside_never_overwrites_an_earlier_casualty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("yaku.db");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fs::write(&path, "first").unwrap();
        let first = move_aside(&path, &[], now).unwrap();
        fs::write(&path, "second").unwrap();
        fs::write(with_suffix(&path, "-wal"), "second wal").unwrap();
        fs::write(with_suffix(&path, "-shm"), "made by the probe").unwrap();
        let second = move_aside(&path, &["-wal"], now).unwrap();
        assert_eq!(first, dir.path().join("yaku.db.corrupt-1700000000"));
        assert_eq!(second, dir.path().join("yaku.db.corrupt-1700000000.1"));
        assert_eq!(fs::read_to_string(&first).unwrap(), "first");
        assert_eq!(fs::read_to_string(&second).unwrap(), "second");
        assert_eq!(
            fs::read_to_string(with_suffix(&second, "-wal")).unwrap(),
            "second wal"
        );
        assert!(!with_suffix(&second, "-shm").exists());
        assert!(!path.exists() && !with_suffix(&path, "-shm").exists());
    }
}
