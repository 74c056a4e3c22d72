//! From the clipboard to accepted lines: the `ClipboardSource` port, change detection, the
//! poll loop (on its own thread: a hung clipboard owner must not stall anything else), and the
//! intake step that cleans a change and runs it through the privacy gates.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::clean::collapse_repeats;
use super::gates::{Gates, Rejection};

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

/// The clipboard, read synchronously (the poll loop runs on its own thread).
pub trait ClipboardSource: Send {
    fn read(&mut self) -> Result<ClipboardRead, ClipboardError>;
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
}

/// Passes on a read only when it differs from the last content read.
#[derive(Debug, Default)]
pub struct ChangeDetector {
    last: Option<ClipEvent>,
}

impl ChangeDetector {
    pub fn observe(&mut self, read: ClipboardRead) -> Option<ClipEvent> {
        let event = match read {
            ClipboardRead::Empty => return None,
            ClipboardRead::Text { text, concealed } => ClipEvent::Text { text, concealed },
            ClipboardRead::Oversized { bytes } => ClipEvent::Oversized { bytes },
            ClipboardRead::Undecidable => ClipEvent::Undecidable,
        };
        if self.last.as_ref() == Some(&event) {
            return None;
        }
        self.last = Some(event.clone());
        Some(event)
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
}

/// Polls `source` every `interval` until stopped, sending each change. Failures back off (at
/// most 2 s between tries, so a display that comes back is picked up quickly) and are logged
/// at most once a minute.
pub fn watch(
    mut source: impl ClipboardSource,
    tx: tokio::sync::mpsc::Sender<ClipEvent>,
    control: WatchControl,
) {
    let mut detector = ChangeDetector::default();
    let mut failures: u32 = 0;
    let mut last_warning: Option<Instant> = None;
    while !control.stop.load(Ordering::Relaxed) {
        let interval = Duration::from_millis(control.interval_ms.load(Ordering::Relaxed).max(10));
        if control.paused.load(Ordering::Relaxed) {
            std::thread::sleep(interval);
            continue;
        }
        let wait = match source.read() {
            Ok(read) => {
                if failures > 0 {
                    tracing::info!("clipboard readable again");
                    failures = 0;
                }
                if let Some(event) = detector.observe(read)
                    && tx.blocking_send(event).is_err()
                {
                    return; // the daemon is gone
                }
                interval
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
        std::thread::sleep(wait);
    }
}

/// What became of one clipboard change.
#[derive(Debug, Clone, PartialEq)]
pub enum Intake {
    Accepted(String),
    /// Rejected by a gate. `chars` is the text's length; the text itself is never kept.
    Rejected {
        gate: &'static str,
        chars: usize,
    },
}

/// Cleans a change and runs it through the gates.
pub fn intake(event: ClipEvent, gates: &mut Gates, collapse: bool) -> Intake {
    match event {
        ClipEvent::Oversized { bytes } => Intake::Rejected {
            gate: Rejection::TooLong.gate_name(),
            chars: bytes,
        },
        ClipEvent::Undecidable => Intake::Rejected {
            gate: Rejection::Concealed.gate_name(),
            chars: 0,
        },
        ClipEvent::Text { text, concealed } => {
            let cleaned = if collapse {
                collapse_repeats(&text)
            } else {
                text.trim().to_string()
            };
            match gates.check(&cleaned, concealed) {
                Ok(()) => Intake::Accepted(cleaned),
                Err(r) => Intake::Rejected {
                    gate: r.gate_name(),
                    chars: cleaned.chars().count(),
                },
            }
        }
    }
}
