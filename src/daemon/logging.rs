//! The daemon's log files (rolling, with tracing-appender's retention) and following them.

use std::fs::File;
use std::io::{IsTerminal, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing_appender::non_blocking::ErrorCounter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Config, LogConfig, Rotation};
use crate::sys::dirs::Dirs;
use crate::sys::private::create_private_dir;

/// How many log lines may wait for the writer thread.
const LOG_QUEUE_LINES: usize = 8_192;

/// Log files (and stderr when it is a terminal). The guard flushes the file writer on drop
/// and counts the lines the queue had to drop.
pub fn init(config: &LogConfig, dir: &Path) -> Option<LogGuard> {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("YAKU_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.level))
    };
    let stderr_layer = std::io::stderr().is_terminal().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_filter(filter())
    });
    let file = match open_log(config, dir) {
        Ok(appender) => Some(appender),
        Err(e) => {
            // Translating matters more than logging: go on, and say so where a person sees it.
            eprintln!(
                "yaku: cannot write logs in {}: {e:#}; logging to stderr only",
                dir.display()
            );
            None
        }
    };
    let (file_layer, guard) = match file {
        Some(appender) => {
            let (writer, guard) = queue(appender);
            let layer = tracing_subscriber::fmt::layer()
                .fmt_fields(PlainFields::default())
                .with_writer(writer)
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter());
            (Some(layer), Some(guard))
        }
        None => (None, None),
    };
    let fallback = (file_layer.is_none() && stderr_layer.is_none()).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .with_target(false)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(stderr_layer)
        .with(file_layer)
        .with(fallback)
        .try_init();
    guard
}

/// Flushes the log file on drop; says how many lines the writer's queue dropped.
pub struct LogGuard {
    _flush: tracing_appender::non_blocking::WorkerGuard,
    dropped: ErrorCounter,
}

impl LogGuard {
    /// A handle on the count of dropped lines, for [`report_dropped`].
    pub fn dropped(&self) -> ErrorCounter {
        self.dropped.clone()
    }
}

/// The writer thread's queue in front of `out`. It is allocated whole at start: the default
/// 128,000 lines is 4 MB resident for ever, a fifth of the daemon. 8,192 lines still absorb any
/// burst the daemon logs while the disk is slow; past that a line is dropped, never waited for
/// (a stalled disk must not stall translating), and counted.
fn queue<W: Write + Send + 'static>(
    out: W,
) -> (tracing_appender::non_blocking::NonBlocking, LogGuard) {
    let (writer, flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .finish(out);
    let dropped = writer.error_counter();
    (
        writer,
        LogGuard {
            _flush: flush,
            dropped,
        },
    )
}

/// How often [`report_dropped`] looks at the count.
const DROPPED_EVERY: Duration = Duration::from_secs(60);

/// Says in the log, once a minute at most, how many lines were dropped since it last said so:
/// a log with a hole in it says where the hole is.
pub async fn report_dropped(dropped: ErrorCounter) {
    let mut said = 0;
    loop {
        tokio::time::sleep(DROPPED_EVERY).await;
        said = say_dropped(&dropped, said);
    }
}

/// Warns about the lines dropped since `said`; returns the count now said.
fn say_dropped(dropped: &ErrorCounter, said: usize) -> usize {
    let now = dropped.dropped_lines();
    if now > said {
        tracing::warn!(
            dropped = now - said,
            "log lines were dropped: the log file could not be written as fast as yaku logged"
        );
    }
    now
}

/// The log file's field formatter. A span's fields are formatted once per formatter *type*
/// and kept on the span, so with the terminal layer's `DefaultFields` the file would get the
/// terminal's ANSI italics; a type of its own makes the file format them itself, plainly.
#[derive(Default)]
struct PlainFields(tracing_subscriber::fmt::format::DefaultFields);

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for PlainFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        self.0.format_fields(writer, fields)
    }
}

fn open_log(
    config: &LogConfig,
    dir: &Path,
) -> anyhow::Result<tracing_appender::rolling::RollingFileAppender> {
    // A new dir is made 0700; an existing one (maybe shared, `[log] dir`) keeps its mode, and
    // only yaku's own files in it are made private.
    create_private_dir(dir)?;
    make_logs_private(dir);
    let rotation = match config.rotation {
        Rotation::Hourly => tracing_appender::rolling::Rotation::HOURLY,
        Rotation::Daily => tracing_appender::rolling::Rotation::DAILY,
        Rotation::Never => tracing_appender::rolling::Rotation::NEVER,
    };
    let mut builder = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(rotation)
        .filename_prefix("yaku")
        .filename_suffix("log")
        .max_log_files(config.keep_files);
    // With no rotation the file itself is yaku.log; a symlink of that name would clash.
    if config.rotation != Rotation::Never {
        builder = builder.latest_symlink("yaku.log");
    }
    Ok(builder.build(dir)?)
}

/// Sets yaku's log files in `dir` (`yaku.*log`, regular files of this user) to 0600: a file
/// written by an older yaku or under another umask may be readable by others.
fn make_logs_private(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with("yaku.") && name.ends_with("log")) {
                continue;
            }
            let path = entry.path();
            if let Ok(meta) = std::fs::symlink_metadata(&path)
                && meta.is_file()
                && meta.uid() == me
                && meta.mode() & 0o077 != 0
            {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// The file `tail -F` should follow: the `yaku.log` symlink (the file itself when logs do not
/// rotate). Windows has no such symlink (tracing-appender makes none there), so there it is
/// the newest log file, which exists.
pub fn current_log(config: &Config) -> anyhow::Result<PathBuf> {
    let stable = config.log_dir(&Dirs::resolve()?).join("yaku.log");
    #[cfg(windows)]
    if !stable.exists()
        && let Some(newest) = stable.parent().and_then(newest_log)
    {
        return Ok(newest);
    }
    Ok(stable)
}

/// The newest of yaku's log files in `dir` (`yaku.<date>.log`; dates sort as their names do).
#[cfg(any(windows, test))]
fn newest_log(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("yaku.") && name.ends_with(".log") && name != "yaku.log"
        })
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .max()
}

/// The file `path` stands for now. On Windows `path` may be a rotated file that a newer one
/// has replaced, or the stable name that only exists when logs do not rotate; the newest file
/// beside it is followed then.
fn follow_target(path: &Path) -> Option<PathBuf> {
    #[cfg(windows)]
    {
        let stable = path.file_name() == Some(std::ffi::OsStr::new("yaku.log"));
        if !(stable && path.exists())
            && let Some(newest) = path.parent().and_then(newest_log)
        {
            return Some(newest);
        }
    }
    std::fs::canonicalize(path).ok()
}

/// Writes the last `n` lines of `f` (from its last 16 KiB) and leaves it at its end.
fn write_last_lines(f: &mut File, out: &mut impl Write, n: usize) -> anyhow::Result<()> {
    let len = f.metadata()?.len();
    f.seek(std::io::SeekFrom::Start(len.saturating_sub(16 * 1024)))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let starts: Vec<usize> = std::iter::once(0)
        .chain(
            tail.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .filter(|&i| i < tail.len())
        .collect();
    let from = starts.len().saturating_sub(n);
    if let Some(&start) = starts.get(from) {
        out.write_all(&tail[start..])?;
    }
    Ok(())
}

/// Copies `path` to `out` as it grows, reopening it when the symlink moves to a new file or
/// the file is truncated, until `stop` says so (never, from the command line).
pub fn follow_file(
    path: &Path,
    out: &mut impl Write,
    mut stop: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let mut current: Option<(File, PathBuf)> = None;
    let mut waited_notice = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let target = follow_target(path);
        let moved = match (&current, &target) {
            (Some((_, open)), Some(t)) => open != t,
            (None, Some(_)) => true,
            _ => false,
        };
        if moved {
            if let Some(t) = target {
                match File::open(&t) {
                    Ok(f) => {
                        let first = current.is_none() && !waited_notice;
                        current = Some((f, t));
                        if first && let Some((f, _)) = current.as_mut() {
                            write_last_lines(f, out, 10)?;
                        }
                    }
                    Err(_) => current = None,
                }
            }
        } else if target.is_none() && current.is_none() && !waited_notice {
            eprintln!(
                "yaku: waiting for {} to appear (is `yaku run` running?)",
                path.display()
            );
            waited_notice = true;
        }
        if let Some((f, _)) = current.as_mut() {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if f.stream_position()? > len {
                f.rewind()?; // truncated
            }
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
            }
            out.flush()?;
        }
        if stop() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_log_is_the_latest_dated_file_and_never_the_stable_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(newest_log(dir.path()), None);
        for name in [
            "yaku.2026-11-27.log",
            "yaku.2026-11-28.log",
            "yaku.log",
            "other.log",
        ] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        assert_eq!(
            newest_log(dir.path()),
            Some(dir.path().join("yaku.2026-11-28.log"))
        );
    }

    #[test]
    #[cfg(unix)] // the stable name is a symlink on Unix only
    fn follow_shows_the_last_lines_then_follows_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("yaku.2026-11-27.log");
        let second = dir.path().join("yaku.2026-11-28.log");
        let link = dir.path().join("yaku.log");
        let old: String = (1..=15).map(|i| format!("old {i}\n")).collect();
        std::fs::write(&first, old).unwrap();
        std::os::unix::fs::symlink(&first, &link).unwrap();
        let mut out = Vec::new();
        let mut step = 0;
        follow_file(&link, &mut out, || {
            step += 1;
            match step {
                1 => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&first)
                        .unwrap();
                    writeln!(f, "appended").unwrap();
                }
                2 => {
                    std::fs::write(&second, "new day\n").unwrap();
                    std::fs::remove_file(&link).unwrap();
                    std::os::unix::fs::symlink(&second, &link).unwrap();
                }
                _ => {}
            }
            step > 3
        })
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let expected: String =
            (6..=15).map(|i| format!("old {i}\n")).collect::<String>() + "appended\nnew day\n";
        assert_eq!(text, expected);
    }
}

#[cfg(test)]
mod queue_tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex, mpsc};

    use super::*;

    /// A log file whose every write waits for a go: a disk that has stalled.
    struct Stalled(Mutex<mpsc::Receiver<()>>);

    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a subscriber wrote, for reading the warning back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_log_file_drops_lines_past_the_queue_never_blocks_and_the_drop_is_said() {
        let (go, wait) = mpsc::channel();
        let (mut writer, guard) = queue(Stalled(Mutex::new(wait)));
        let extra = 100;
        // Returns at once although nothing can be written: the caller never waits on the disk.
        for i in 0..LOG_QUEUE_LINES + extra {
            writer.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        let dropped = guard.dropped().dropped_lines();
        // The writer thread may hold one line, blocked in its write, outside the queue.
        assert!(
            (extra - 1..=extra).contains(&dropped),
            "{dropped} lines dropped, expected about {extra}"
        );

        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let said = tracing::subscriber::with_default(subscriber, || {
            let said = say_dropped(&guard.dropped(), 0);
            // Said once: nothing new was dropped since.
            assert_eq!(say_dropped(&guard.dropped(), said), said);
            said
        });
        assert_eq!(said, dropped);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("log lines were dropped").count(), 1, "{text}");
        assert!(text.contains(&format!("dropped={dropped}")), "{text}");
        for _ in 0..LOG_QUEUE_LINES + extra {
            let _ = go.send(());
        }
    }
}
