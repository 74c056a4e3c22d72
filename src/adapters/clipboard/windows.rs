//! The Windows clipboard through clipboard-win: the password-manager formats and the text are
//! read while the clipboard is open once, and the read counts only if the clipboard sequence
//! number is the same before and after (another copy in between would pair one owner's
//! formats with another's text). Anything that cannot be decided is reported as such and the
//! intake gate treats it as concealed.

use clipboard_win::{formats, raw};

use super::{
    Events, FormatProbe, WINDOWS_DWORD_FORMATS, WINDOWS_MARKER_FORMATS, windows_concealed,
};
use crate::core::intake::{ClipboardError, ClipboardRead, ClipboardSource};

/// How many times to try opening the clipboard while another program holds it open.
const OPEN_ATTEMPTS: usize = 10;

/// The Windows clipboard.
pub struct WindowsClipboard {
    /// Texts longer than this many UTF-16 bytes are reported as oversized without being read.
    max_bytes: usize,
    /// The format listener is not built yet: "auto" polls, "events" cannot be had.
    events: Events,
    /// The sequence number of the last read: each copy has its own, so the same text
    /// copied again is a new change.
    seq: Option<u64>,
}

impl WindowsClipboard {
    pub fn new(max_chars: usize) -> Self {
        Self {
            max_bytes: max_chars.saturating_mul(4).max(64),
            events: Events::Off,
            seq: None,
        }
    }

    pub fn with_events(self, events: Events) -> Self {
        Self { events, ..self }
    }
}

fn probe(name: &str) -> Option<FormatProbe> {
    // Registering an existing name returns its id; failing to register means we cannot tell.
    let id = raw::register_format(name)?.get();
    if !raw::is_format_avail(id) {
        return Some(FormatProbe::Absent);
    }
    let mut dword = [0u8; 4];
    let value = match raw::get(id, &mut dword) {
        Ok(4) => Some(u32::from_le_bytes(dword)),
        _ => None,
    };
    Some(FormatProbe::Present(value))
}

/// One pass with the clipboard open. None: the concealment could not be decided.
fn read_open(max_bytes: usize) -> Result<Option<ClipboardRead>, ClipboardError> {
    let _open = clipboard_win::Clipboard::new_attempts(OPEN_ATTEMPTS)
        .map_err(|e| ClipboardError::Unavailable(e.to_string()))?;
    let mut markers = [FormatProbe::Absent; 2];
    for (slot, name) in markers.iter_mut().zip(WINDOWS_MARKER_FORMATS) {
        let Some(p) = probe(name) else {
            return Ok(None);
        };
        *slot = p;
    }
    let mut dwords = [FormatProbe::Absent; 2];
    for (slot, name) in dwords.iter_mut().zip(WINDOWS_DWORD_FORMATS) {
        let Some(p) = probe(name) else {
            return Ok(None);
        };
        *slot = p;
    }
    let concealed = windows_concealed(markers, dwords);
    if !raw::is_format_avail(formats::CF_UNICODETEXT) {
        return Ok(Some(ClipboardRead::Empty));
    }
    if let Some(size) = raw::size(formats::CF_UNICODETEXT)
        && size.get() > max_bytes.saturating_mul(2)
    {
        return Ok(Some(ClipboardRead::Oversized { bytes: size.get() }));
    }
    let mut bytes = Vec::new();
    if raw::get_string(&mut bytes).is_err() {
        return Ok(Some(ClipboardRead::Empty));
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    let end = text.trim_end_matches('\0').len();
    text.truncate(end);
    Ok(Some(ClipboardRead::Text {
        text,
        concealed: Some(concealed),
    }))
}

impl ClipboardSource for WindowsClipboard {
    fn read(&mut self) -> Result<ClipboardRead, ClipboardError> {
        super::polling_only(self.events)?;
        let before = raw::seq_num();
        self.seq = before.map(|n| u64::from(n.get()));
        let read = read_open(self.max_bytes)?;
        let after = raw::seq_num();
        match read {
            Some(read) if before.is_some() && before == after => Ok(read),
            // Nothing on the clipboard at all needs no sequence check.
            Some(ClipboardRead::Empty) => Ok(ClipboardRead::Empty),
            _ => Ok(ClipboardRead::Undecidable),
        }
    }

    fn copy_id(&self) -> Option<u64> {
        self.seq
    }
}
