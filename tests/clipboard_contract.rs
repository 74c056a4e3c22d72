//! The `ClipboardSource` contract, run against the core's `FakeClipboard` and the real X11
//! adapter (`SystemClipboard`) on a real Xvfb: one set of checks, two drivers. Every check
//! states exactly what `read()` returns, so the fake cannot drift from the real thing without
//! a test failing (clipcat's shape). The X11 driver owns the CLIPBOARD through the desktop
//! harness's in-process owner (tests/desktop/owner.rs), which can offer the
//! password-manager hint, no text, no target list, no answer at all, or lose the CLIPBOARD
//! between a reader's two requests; it needs Xvfb, dbus-daemon, dbus-monitor and dunst, which
//! `scripts/test` installs.
#![cfg(all(unix, not(target_os = "macos")))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "desktop/mod.rs"]
#[allow(unused_imports)] // the harness re-exports what the daemon suites use
mod desktop;

use desktop::DesktopEnv;
use desktop::owner::ClipboardOwner;
use yaku::adapters::clipboard::SystemClipboard;
use yaku::core::fake::FakeClipboard;
use yaku::core::intake::{ChangeDetector, ClipboardError, ClipboardRead, ClipboardSource};

/// `max_chars` for both sources: texts over 4 bytes a character (400 bytes) are not read.
const MAX_CHARS: usize = 100;
const LIMIT_BYTES: usize = MAX_CHARS * 4;

const LINE: &str = "おはよう、先輩。今日も早いですね。";
const LINE2: &str = "待ってください、まだ話が終わっていません。";
const SECRET: &str = "correct-horse-battery-staple";

/// What a contract check can do to a clipboard, and the source under test.
trait Driver {
    /// The source under test.
    fn read(&mut self) -> Result<ClipboardRead, ClipboardError>;
    /// The copy the source's last read came from.
    fn copy_id(&self) -> Option<u64>;
    /// A new owner copies `text`.
    fn copy(&mut self, text: &str);
    /// A new owner copies `text` with `x-kde-passwordManagerHint` = "secret" in its targets.
    fn copy_concealed(&mut self, text: &str);
    /// A new owner offers an image and no text.
    fn copy_no_text(&mut self);
    /// A new owner that refuses to list its targets.
    fn copy_unlisted(&mut self);
    /// A new owner that never answers.
    fn copy_hung(&mut self);
    /// `first` is copied; at the next read another owner takes the clipboard with `then`
    /// between the reader's TARGETS and text requests.
    fn copy_then_take_over(&mut self, first: &str, then: &str, then_concealed: bool);
    /// Nobody owns the clipboard.
    fn clear(&mut self);
    /// The display goes away (the X server crashes).
    fn lose_display(&mut self);
    /// The display comes back, with an empty clipboard.
    fn restore_display(&mut self);
}

struct FakeDriver {
    /// The test's handle on the clipboard.
    clipboard: FakeClipboard,
    /// The same clipboard, as the code under test holds it.
    source: FakeClipboard,
}

impl FakeDriver {
    fn new() -> Self {
        let clipboard = FakeClipboard::new(MAX_CHARS);
        let source = clipboard.clone();
        Self { clipboard, source }
    }
}

impl Driver for FakeDriver {
    fn read(&mut self) -> Result<ClipboardRead, ClipboardError> {
        self.source.read()
    }
    fn copy_id(&self) -> Option<u64> {
        self.source.copy_id()
    }
    fn copy(&mut self, text: &str) {
        self.clipboard.copy(text);
    }
    fn copy_concealed(&mut self, text: &str) {
        self.clipboard.copy_concealed(text);
    }
    fn copy_no_text(&mut self) {
        self.clipboard.copy_no_text();
    }
    fn copy_unlisted(&mut self) {
        self.clipboard.copy_unlisted();
    }
    fn copy_hung(&mut self) {
        self.clipboard.copy_hung();
    }
    fn copy_then_take_over(&mut self, first: &str, then: &str, then_concealed: bool) {
        self.clipboard
            .copy_then_take_over(first, then, then_concealed);
    }
    fn clear(&mut self) {
        self.clipboard.clear();
    }
    fn lose_display(&mut self) {
        self.clipboard
            .fail_with(ClipboardError::Unavailable("the display is gone".into()));
    }
    fn restore_display(&mut self) {
        self.clipboard.recover();
    }
}

struct X11Driver {
    source: SystemClipboard,
    /// None while the X server is down.
    owner: Option<ClipboardOwner>,
    /// Dropped last: the owner's connection goes before the X server does.
    env: DesktopEnv,
}

impl X11Driver {
    fn start() -> Self {
        let env = DesktopEnv::start();
        let source = SystemClipboard::on_display(MAX_CHARS, &env.display());
        let owner = Some(env.clipboard_owner());
        Self { source, owner, env }
    }

    fn owner(&self) -> &ClipboardOwner {
        self.owner.as_ref().expect("the X server is down")
    }
}

impl Driver for X11Driver {
    fn read(&mut self) -> Result<ClipboardRead, ClipboardError> {
        self.source.read()
    }
    fn copy_id(&self) -> Option<u64> {
        self.source.copy_id()
    }
    fn copy(&mut self, text: &str) {
        self.owner().offer(text);
    }
    fn copy_concealed(&mut self, text: &str) {
        self.owner().offer_concealed(text);
    }
    fn copy_no_text(&mut self) {
        self.owner().offer_no_text();
    }
    fn copy_unlisted(&mut self) {
        self.owner().offer_unlisted();
    }
    fn copy_hung(&mut self) {
        self.owner().offer_hung();
    }
    fn copy_then_take_over(&mut self, first: &str, then: &str, then_concealed: bool) {
        self.owner()
            .offer_then_take_over(first, then, then_concealed);
    }
    fn clear(&mut self) {
        self.owner().clear();
    }
    fn lose_display(&mut self) {
        self.owner = None;
        self.env.kill_x();
    }
    fn restore_display(&mut self) {
        self.env.restart_x();
        self.owner = Some(self.env.clipboard_owner());
    }
}

fn text(t: &str) -> Result<ClipboardRead, ClipboardError> {
    Ok(ClipboardRead::Text {
        text: t.to_string(),
        concealed: Some(false),
    })
}

fn concealed(t: &str) -> Result<ClipboardRead, ClipboardError> {
    Ok(ClipboardRead::Text {
        text: t.to_string(),
        concealed: Some(true),
    })
}

const EMPTY: Result<ClipboardRead, ClipboardError> = Ok(ClipboardRead::Empty);

// ---------------------------------------------------------------- the contract

fn a_new_owners_text_is_read_unconcealed_and_reading_changes_nothing(d: &mut dyn Driver) {
    assert_eq!(d.read(), EMPTY, "nothing was ever copied");
    d.copy(LINE);
    assert_eq!(d.read(), text(LINE));
    assert_eq!(d.read(), text(LINE), "a second read sees the same content");
    d.copy(LINE2);
    assert_eq!(d.read(), text(LINE2), "the new owner's text");
}

fn the_same_text_copied_again_is_a_new_copy_so_change_detection_passes_it_on_again(
    d: &mut dyn Driver,
) {
    let mut detector = ChangeDetector::default();
    d.copy(LINE);
    let read = d.read().unwrap();
    assert!(detector.observe_copy(read, d.copy_id()).is_some());
    let read = d.read().unwrap();
    assert_eq!(
        detector.observe_copy(read, d.copy_id()),
        None,
        "reading the same copy again is no change"
    );
    d.copy(LINE);
    let read = d.read().unwrap();
    assert!(
        detector.observe_copy(read, d.copy_id()).is_some(),
        "the same text from a new owner is a new copy (the repeat gate decides on it)"
    );
    d.copy(LINE2);
    let read = d.read().unwrap();
    assert!(detector.observe_copy(read, d.copy_id()).is_some());
}

fn the_password_manager_hint_reads_as_concealed_and_does_not_outlive_its_owner(d: &mut dyn Driver) {
    d.copy_concealed(SECRET);
    assert_eq!(d.read(), concealed(SECRET));
    d.copy(LINE);
    assert_eq!(d.read(), text(LINE));
}

fn text_up_to_the_limit_is_read_and_text_past_it_is_reported_oversized_unread(d: &mut dyn Driver) {
    let at_limit = "a".repeat(LIMIT_BYTES);
    d.copy(&at_limit);
    assert_eq!(d.read(), text(&at_limit), "exactly at the limit is read");
    let kana = "あ".repeat(MAX_CHARS);
    d.copy(&kana);
    assert_eq!(
        d.read(),
        text(&kana),
        "max_chars kana (3 bytes each) are read"
    );
    d.copy(&"a".repeat(LIMIT_BYTES + 1));
    assert_eq!(
        d.read(),
        Ok(ClipboardRead::Oversized {
            bytes: LIMIT_BYTES + 1
        }),
        "one byte over the limit"
    );
    let far_over = "ab".repeat(50_000);
    d.copy(&far_over);
    assert_eq!(
        d.read(),
        Ok(ClipboardRead::Oversized {
            bytes: far_over.len()
        }),
        "far over the limit: its size, not its text"
    );
    d.copy(LINE);
    assert_eq!(d.read(), text(LINE), "the next copy is read as usual");
}

fn an_empty_text_is_read_as_empty_text(d: &mut dyn Driver) {
    d.copy("");
    assert_eq!(d.read(), text(""));
}

fn a_clipboard_nobody_owns_reads_empty(d: &mut dyn Driver) {
    d.copy(LINE);
    assert_eq!(d.read(), text(LINE));
    d.clear();
    assert_eq!(d.read(), EMPTY);
    d.copy(LINE2);
    assert_eq!(d.read(), text(LINE2));
}

fn an_owner_with_no_text_reads_empty(d: &mut dyn Driver) {
    d.copy_no_text();
    assert_eq!(d.read(), EMPTY);
}

fn an_owner_that_will_not_list_its_targets_is_undecidable(d: &mut dyn Driver) {
    d.copy_unlisted();
    assert_eq!(d.read(), Ok(ClipboardRead::Undecidable));
    d.copy(LINE);
    assert_eq!(d.read(), text(LINE));
}

fn targets_and_text_from_different_owners_read_nothing_then_the_new_owners_content(
    d: &mut dyn Driver,
) {
    d.copy_then_take_over(LINE, SECRET, true);
    assert_eq!(
        d.read(),
        EMPTY,
        "a password manager's text must not pass with the first owner's targets"
    );
    assert_eq!(
        d.read(),
        concealed(SECRET),
        "the next read sees the new owner"
    );
}

fn a_hung_owner_times_out_on_every_read_until_someone_copies(d: &mut dyn Driver) {
    d.copy_hung();
    assert_eq!(d.read(), Err(ClipboardError::Timeout));
    assert_eq!(d.read(), Err(ClipboardError::Timeout));
    d.copy(LINE);
    assert_eq!(d.read(), text(LINE));
}

fn a_lost_display_is_unavailable_and_reading_resumes_when_it_returns(d: &mut dyn Driver) {
    d.copy(LINE);
    assert_eq!(d.read(), text(LINE));
    d.lose_display();
    for _ in 0..2 {
        let read = d.read();
        assert!(
            matches!(read, Err(ClipboardError::Unavailable(_))),
            "{read:?}"
        );
    }
    d.restore_display();
    assert_eq!(d.read(), EMPTY, "a new X server's clipboard is empty");
    d.copy(LINE2);
    assert_eq!(d.read(), text(LINE2));
}

/// Each check, once against the fake (`fake::NAME`) and once against X11 (`x11::NAME`).
macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod fake {
            $(#[test]
            fn $check() {
                super::$check(&mut super::FakeDriver::new());
            })*
        }
        mod x11 {
            $(#[test]
            fn $check() {
                super::$check(&mut super::X11Driver::start());
            })*
        }
    };
}

contract!(
    a_new_owners_text_is_read_unconcealed_and_reading_changes_nothing,
    the_same_text_copied_again_is_a_new_copy_so_change_detection_passes_it_on_again,
    the_password_manager_hint_reads_as_concealed_and_does_not_outlive_its_owner,
    text_up_to_the_limit_is_read_and_text_past_it_is_reported_oversized_unread,
    an_empty_text_is_read_as_empty_text,
    a_clipboard_nobody_owns_reads_empty,
    an_owner_with_no_text_reads_empty,
    an_owner_that_will_not_list_its_targets_is_undecidable,
    targets_and_text_from_different_owners_read_nothing_then_the_new_owners_content,
    a_hung_owner_times_out_on_every_read_until_someone_copies,
    a_lost_display_is_unavailable_and_reading_resumes_when_it_returns,
);
