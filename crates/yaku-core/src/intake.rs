//! From the clipboard to accepted lines: the `ClipboardSource` port, change detection, the
//! poll loop (on its own thread: a hung clipboard owner must not stall anything else), and the
//! intake step that cleans a change and runs it through the privacy gates.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::clean::collapse_repeats;
use super::gates::{Gates, Rejection};
use super::store::Source;

/// One read of the clipboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipboardRead {
    /// No text: empty, an image, files, or the owner would not give text.
    Empty,
    /// Text, and whether its owner flagged it as a password (None: the platform cannot tell).
    Text {
        text: String,
        concealed: Option<bool>,
    },
    /// Text too long to be a game line; it was not read.
    Oversized { bytes: usize },
    /// There is content, but whether it is concealed could not be decided.
    Undecidable,
}

/// Why the clipboard could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClipboardError {
    /// No display, or the connection to it broke.
    #[error("clipboard unavailable: {0}")]
    Unavailable(String),
    /// The clipboard's owner did not answer in time.
    #[error("the clipboard owner did not answer in time")]
    Timeout,
}

/// How a clipboard source learns that the clipboard changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// Reads the clipboard every poll interval.
    Poll,
    /// The platform says when the clipboard's owner changes (X11: XFixes); read only then.
    Events,
}

impl WatchMode {
    /// The name `yaku status` and `yaku check` show (and the config's `watch` values).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Events => "events",
        }
    }
}

/// The clipboard, read synchronously (the watch loop runs on its own thread).
pub trait ClipboardSource: Send {
    fn read(&mut self) -> Result<ClipboardRead, ClipboardError>;

    /// Waits at most `timeout` for the clipboard to change; true when it may have (read it
    /// now). A source without change events sleeps the timeout out: every wait is a poll.
    fn wait_change(&mut self, timeout: Duration) -> bool {
        std::thread::sleep(timeout);
        true
    }

    /// Which copy the last read came from (X11: the owner window and the time it took the
    /// clipboard), so that the same text copied again is a new change. None: the platform
    /// cannot tell, and the content alone decides.
    fn copy_id(&self) -> Option<u64> {
        None
    }

    /// How this source learns of changes now (an event source without events polls).
    fn mode(&self) -> WatchMode {
        WatchMode::Poll
    }

    /// Cuts a `wait_change` short from another thread. An event source that has one is left
    /// waiting up to [`EVENT_WAIT`] between changes, not the poll interval: an idle daemon
    /// then costs no wake-ups, and a request to the loop (a resume's mark) wakes it at once.
    fn waker(&self) -> Option<Waker> {
        None
    }
}

/// Wakes a clipboard source blocked in [`ClipboardSource::wait_change`].
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The longest wait for an owner change when the source has events and a [`Waker`]: what is
/// left to notice without one (a stop) is not urgent, since the process exits without
/// joining the watch thread.
pub const EVENT_WAIT: Duration = Duration::from_secs(30);

/// Where the watch loop leaves its source's waker for whoever asks it for something.
#[derive(Clone, Default)]
pub struct WakeSlot(Arc<Mutex<Option<Waker>>>);

impl std::fmt::Debug for WakeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WakeSlot")
    }
}

impl WakeSlot {
    fn set(&self, waker: Option<Waker>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = waker;
    }

    /// Wakes the source, if it is waiting and can be woken.
    pub fn wake(&self) {
        let waker = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(w) = waker {
            w();
        }
    }

    fn is_set(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }
}

/// A change worth passing on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClipEvent {
    Text {
        text: String,
        concealed: Option<bool>,
    },
    Oversized {
        bytes: usize,
    },
    Undecidable,
    /// A line a text hooker sent over its WebSocket: no clipboard owner, so no hint.
    Pushed {
        text: String,
    },
}

impl ClipEvent {
    /// Where the line came from, for its history row.
    pub fn source(&self) -> Source {
        match self {
            Self::Pushed { .. } => Source::Websocket,
            _ => Source::Clipboard,
        }
    }
}

/// Passes on a read only when it differs from the last one read: other content, or the
/// same content from another copy (see [`ClipboardSource::copy_id`]).
#[derive(Debug, Default)]
pub struct ChangeDetector {
    last: Option<(ClipEvent, Option<u64>)>,
}

impl ChangeDetector {
    /// [`ChangeDetector::observe_copy`] for a source that cannot tell copies apart.
    pub fn observe(&mut self, read: ClipboardRead) -> Option<ClipEvent> {
        self.observe_copy(read, None)
    }

    /// Passes `read` on unless it is the content last read and comes from the same copy.
    pub fn observe_copy(&mut self, read: ClipboardRead, copy: Option<u64>) -> Option<ClipEvent> {
        let event = match read {
            ClipboardRead::Empty => return None,
            ClipboardRead::Text { text, concealed } => ClipEvent::Text { text, concealed },
            ClipboardRead::Oversized { bytes } => ClipEvent::Oversized { bytes },
            ClipboardRead::Undecidable => ClipEvent::Undecidable,
        };
        if self
            .last
            .as_ref()
            .is_some_and(|(last, last_copy)| *last == event && *last_copy == copy)
        {
            return None;
        }
        self.last = Some((event.clone(), copy));
        Some(event)
    }

    /// Takes `read` as already seen without passing it on: what was on the clipboard before
    /// yaku started, or was copied while it was paused, is never sent.
    pub fn mark(&mut self, read: ClipboardRead) {
        self.mark_copy(read, None);
    }

    /// [`ChangeDetector::mark`] for a read of the copy `copy`.
    pub fn mark_copy(&mut self, read: ClipboardRead, copy: Option<u64>) {
        let _ = self.observe_copy(read, copy);
    }
}

/// Switches shared by the poll loop and its owner.
#[derive(Debug, Clone, Default)]
pub struct WatchControl {
    pub stop: Arc<AtomicBool>,
    /// While set, the clipboard is not read at all.
    pub paused: Arc<AtomicBool>,
    /// The poll interval in milliseconds; a reload may change it.
    pub interval_ms: Arc<AtomicU64>,
    /// Marks asked for (see [`ChangeDetector::mark`]): bumped by the owner on resume.
    pub marks_wanted: Arc<AtomicU64>,
    /// The last mark request the poll loop has carried out (it takes one at start too), so a
    /// resume can answer once a line copied after it is sure to count as a change.
    pub marks_taken: tokio::sync::watch::Sender<u64>,
    /// The watch mode in use, set by the loop after each read (0: not known yet), for
    /// `yaku status`.
    pub mode: Arc<AtomicU8>,
    /// The source's waker, once the loop runs (see [`ClipboardSource::waker`]).
    pub waker: WakeSlot,
}

impl WatchControl {
    /// The watch mode the loop used for its last read; None before the first one.
    pub fn mode(&self) -> Option<WatchMode> {
        match self.mode.load(Ordering::Relaxed) {
            1 => Some(WatchMode::Poll),
            2 => Some(WatchMode::Events),
            _ => None,
        }
    }

    fn set_mode(&self, mode: WatchMode) {
        let n = match mode {
            WatchMode::Poll => 1,
            WatchMode::Events => 2,
        };
        self.mode.store(n, Ordering::Relaxed);
    }

    /// Asks the poll loop for a mark; returns the number `marks_taken` reaches once it is taken.
    pub fn want_mark(&self) -> u64 {
        let n = self.marks_wanted.fetch_add(1, Ordering::SeqCst) + 1;
        self.waker.wake();
        n
    }
}

/// Reads `source` whenever it may have changed (every interval for a polling source, on
/// each owner change for an event source) until stopped, sending each change. Failures back
/// off (at most 2 s between tries, so a display that comes back is picked up quickly) and are
/// logged at most once a minute.
pub fn watch(
    source: impl ClipboardSource,
    tx: tokio::sync::mpsc::Sender<ClipEvent>,
    control: WatchControl,
) {
    watch_from(ChangeDetector::default(), source, tx, control);
}

/// [`watch`], with a detector that has already seen what must not count as a change (what
/// was on the clipboard before the caller started listening).
pub fn watch_from(
    mut detector: ChangeDetector,
    mut source: impl ClipboardSource,
    tx: tokio::sync::mpsc::Sender<ClipEvent>,
    control: WatchControl,
) {
    let mut failures: u32 = 0;
    let mut last_warning: Option<Instant> = None;
    // The first read is a mark: what was copied before yaku started is not a new line.
    let mut mark_pending = true;
    // Whether the source said the clipboard may have changed since the last read.
    let mut changed = true;
    control.waker.set(source.waker());
    while !control.stop.load(Ordering::Relaxed) {
        let interval = Duration::from_millis(control.interval_ms.load(Ordering::Relaxed).max(10));
        // With events and a waker, nothing needs a look between owner changes.
        let between = if source.mode() == WatchMode::Events && control.waker.is_set() {
            EVENT_WAIT
        } else {
            interval
        };
        if control.paused.load(Ordering::Relaxed) {
            std::thread::sleep(interval);
            continue;
        }
        // Read before the read, so a request made during it is carried out by the next one.
        let wanted = control.marks_wanted.load(Ordering::SeqCst);
        let marking = mark_pending || wanted > *control.marks_taken.borrow();
        if !marking && !changed {
            // An event source blocks here until the owner changes; the bound (the interval
            // without a waker) is how late stop, pause and marks may be seen.
            changed = source.wait_change(between);
            continue;
        }
        mark_pending = false;
        let read = source.read();
        let copy = source.copy_id();
        control.set_mode(source.mode());
        if marking {
            // A read that failed marks nothing: whatever comes once it works is a change (a
            // display that appears later, an X server that restarted).
            if let Ok(r) = &read {
                detector.mark_copy(r.clone(), copy);
            }
            control.marks_taken.send_modify(|n| *n = (*n).max(wanted));
        }
        let wait = match read {
            Ok(_) if marking => {
                if failures > 0 {
                    tracing::info!("clipboard readable again");
                    failures = 0;
                }
                between
            }
            Ok(read) => {
                if failures > 0 {
                    tracing::info!("clipboard readable again");
                    failures = 0;
                }
                if let Some(event) = detector.observe_copy(read, copy)
                    && tx.blocking_send(event).is_err()
                {
                    return; // the daemon is gone
                }
                between
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(error = %e, "cannot read the clipboard; retrying");
                    last_warning = Some(Instant::now());
                }
                interval
                    .saturating_mul(2u32.saturating_pow(failures.min(8)))
                    .min(Duration::from_secs(2))
                    .max(interval)
            }
        };
        // A failed read is tried again after the wait whatever the source says.
        changed = source.wait_change(wait) || failures > 0;
    }
}

/// What became of one clipboard change.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    Accepted(String),
    /// Rejected by a gate. `chars` is the text's length; the text itself is never kept.
    Rejected {
        rejection: Rejection,
        chars: usize,
    },
}

/// Cleans a change and runs it through the gates.
pub fn intake(event: ClipEvent, gates: &mut Gates, collapse: bool) -> Intake {
    match event {
        ClipEvent::Oversized { bytes } => Intake::Rejected {
            rejection: Rejection::TooLong,
            chars: bytes,
        },
        ClipEvent::Undecidable => Intake::Rejected {
            rejection: Rejection::Concealed,
            chars: 0,
        },
        ClipEvent::Text { text, concealed } => check_text(&text, concealed, gates, collapse),
        ClipEvent::Pushed { text } => check_text(&text, None, gates, collapse),
    }
}

fn check_text(text: &str, concealed: Option<bool>, gates: &mut Gates, collapse: bool) -> Intake {
    let cleaned = if collapse {
        collapse_repeats(text)
    } else {
        text.trim().to_string()
    };
    match gates.check(&cleaned, concealed) {
        Ok(()) => Intake::Accepted(cleaned),
        Err(rejection) => Intake::Rejected {
            rejection,
            chars: cleaned.chars().count(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeClipboard;
    use tokio::sync::mpsc::error::TryRecvError;

    /// The next event the poll loop sends, waiting (real time) at most 10 s.
    fn next_event(rx: &mut tokio::sync::mpsc::Receiver<ClipEvent>) -> ClipEvent {
        let start = Instant::now();
        loop {
            match rx.try_recv() {
                Ok(event) => return event,
                Err(TryRecvError::Empty) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("no event from the poll loop: {e}"),
            }
        }
    }

    fn await_reads(clip: &FakeClipboard, n: u64) {
        let start = Instant::now();
        while clip.reads() < n {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the poll loop stopped reading"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// An event source over a FakeClipboard: `wait_change` blocks until `notify` or its
    /// waker, and records each bound it was given.
    #[derive(Clone)]
    struct Evented {
        clip: FakeClipboard,
        signal: Arc<(Mutex<bool>, std::sync::Condvar)>,
        bounds: Arc<Mutex<Vec<Duration>>>,
    }

    impl Evented {
        fn notify(&self) {
            *self.signal.0.lock().unwrap() = true;
            self.signal.1.notify_all();
        }
    }

    impl ClipboardSource for Evented {
        fn read(&mut self) -> Result<ClipboardRead, ClipboardError> {
            self.clip.read()
        }
        fn wait_change(&mut self, timeout: Duration) -> bool {
            self.bounds.lock().unwrap().push(timeout);
            let (lock, cv) = &*self.signal;
            let guard = lock.lock().unwrap();
            let (mut woke, _) = cv.wait_timeout_while(guard, timeout, |w| !*w).unwrap();
            std::mem::take(&mut *woke)
        }
        fn mode(&self) -> WatchMode {
            WatchMode::Events
        }
        fn waker(&self) -> Option<Waker> {
            let me = self.clone();
            Some(Arc::new(move || me.notify()))
        }
    }

    #[test]
    fn an_event_source_with_a_waker_waits_long_between_changes_and_a_mark_wakes_it_at_once() {
        let source = Evented {
            clip: FakeClipboard::new(500),
            signal: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
            bounds: Arc::new(Mutex::new(Vec::new())),
        };
        let control = WatchControl {
            interval_ms: Arc::new(AtomicU64::new(250)),
            ..WatchControl::default()
        };
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        {
            let (source, control) = (source.clone(), control.clone());
            std::thread::spawn(move || watch(source, tx, control));
        }
        await_reads(&source.clip, 1);
        let started = Instant::now();
        while !source.bounds.lock().unwrap().contains(&EVENT_WAIT) {
            assert!(started.elapsed() < Duration::from_secs(10), "no long wait");
            std::thread::sleep(Duration::from_millis(5));
        }
        // A resume's mark: taken now, not when the 30 s wait ends.
        let reads = source.clip.reads();
        let wanted = control.want_mark();
        let mut taken = control.marks_taken.subscribe();
        let woke = Instant::now();
        while *taken.borrow_and_update() < wanted {
            assert!(
                woke.elapsed() < Duration::from_secs(10),
                "the mark waited for the end of the wait"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(source.clip.reads() > reads, "the mark reads the clipboard");
        // A copy (the source's event) is read as at once, too.
        source.clip.copy("一行目です");
        source.notify();
        await_reads(&source.clip, reads + 2);
        control.stop.store(true, Ordering::Relaxed);
        source.notify();
    }

    #[test]
    fn watch_passes_each_change_on_once_and_reads_again_after_the_clipboard_fails() {
        let clip = FakeClipboard::new(500);
        let control = WatchControl {
            interval_ms: Arc::new(AtomicU64::new(10)),
            ..WatchControl::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let watcher = {
            let (clip, control) = (clip.clone(), control.clone());
            std::thread::spawn(move || watch(clip, tx, control))
        };
        let line = |t: &str| ClipEvent::Text {
            text: t.into(),
            concealed: Some(false),
        };

        // What is there at the start is taken as seen: copy once the loop has looked.
        await_reads(&clip, 1);
        clip.copy("一行目です");
        assert_eq!(next_event(&mut rx), line("一行目です"));
        clip.fail_with(ClipboardError::Unavailable("the display is gone".into()));
        let reads = clip.reads();
        await_reads(&clip, reads + 3);
        clip.recover();
        clip.copy_concealed("パスワード");
        assert_eq!(
            next_event(&mut rx),
            ClipEvent::Text {
                text: "パスワード".into(),
                concealed: Some(true)
            }
        );
        clip.copy("二行目です");
        assert_eq!(next_event(&mut rx), line("二行目です"));

        control.stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
        assert_eq!(
            rx.try_recv(),
            Err(TryRecvError::Disconnected),
            "each change was sent once, and nothing for the failed reads"
        );
    }

    #[test]
    fn the_same_text_copied_again_is_passed_on_again_but_not_the_same_copy_read_twice() {
        let clip = FakeClipboard::new(500);
        let control = WatchControl {
            interval_ms: Arc::new(AtomicU64::new(10)),
            ..WatchControl::default()
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let watcher = {
            let (clip, control) = (clip.clone(), control.clone());
            std::thread::spawn(move || watch(clip, tx, control))
        };
        let line = ClipEvent::Text {
            text: "一行目です".into(),
            concealed: Some(false),
        };
        await_reads(&clip, 1);
        clip.copy("一行目です");
        assert_eq!(next_event(&mut rx), line);
        let reads = clip.reads();
        await_reads(&clip, reads + 3);
        assert_eq!(
            rx.try_recv(),
            Err(TryRecvError::Empty),
            "the same copy, read again"
        );
        clip.copy("一行目です");
        assert_eq!(next_event(&mut rx), line, "a new copy of the same text");
        assert_eq!(control.mode(), Some(WatchMode::Poll));
        control.stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
    }
}
