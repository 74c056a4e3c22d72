//! Reading values a user may have edited by hand with `sqlite3`.
//!
//! SQLite keeps whatever an UPDATE writes: text in an INTEGER column, a REAL where yaku writes
//! integers, a BLOB for text, NULL in a table recreated without NOT NULL. yaku never writes
//! these, but it reads them without failing, because one odd row must never fail a lookup or
//! a command. Every reader here returns the value when it can make one out (`None` when it
//! cannot) and notes in `Cells::odd` that the row is not as yaku wrote it, so the caller can
//! say so once.

use std::fmt;

use rusqlite::Row;
use rusqlite::types::ValueRef;

use crate::core::store::{Source, Status};

/// What the terminal shows for a value that cannot be read.
pub const UNREADABLE: &str = "<unreadable>";

/// A column with a fixed set of words (`status`, `source`), and how to spell them.
pub trait Vocabulary: Copy {
    fn as_str(self) -> &'static str;
    fn parse(s: &str) -> Option<Self>;
}

impl Vocabulary for Status {
    fn as_str(self) -> &'static str {
        Status::as_str(self)
    }
    fn parse(s: &str) -> Option<Self> {
        Status::parse(s)
    }
}

impl Vocabulary for Source {
    fn as_str(self) -> &'static str {
        Source::as_str(self)
    }
    fn parse(s: &str) -> Option<Self> {
        [
            Source::Clipboard,
            Source::Cli,
            Source::Prefetch,
            Source::Lookahead,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
    }
}

/// A `status` or `source` as found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored<T> {
    /// A word yaku writes.
    Known(T),
    /// Other text (a hand edit, or a newer yaku): shown as it is.
    Other(String),
    /// NULL, or bytes that are not UTF-8.
    Unreadable,
}

impl<T: Vocabulary> Stored<T> {
    /// The word; `<unreadable>` when there is none.
    pub fn as_str(&self) -> &str {
        self.get().unwrap_or(UNREADABLE)
    }

    /// The word, None when unreadable (JSON null, an absent CSV field).
    pub fn get(&self) -> Option<&str> {
        match self {
            Stored::Known(w) => Some(w.as_str()),
            Stored::Other(s) => Some(s),
            Stored::Unreadable => None,
        }
    }

    /// The word when it is one yaku writes.
    pub fn known(&self) -> Option<T> {
        match self {
            Stored::Known(w) => Some(*w),
            _ => None,
        }
    }
}

impl<T> From<T> for Stored<T> {
    fn from(word: T) -> Self {
        Stored::Known(word)
    }
}

impl PartialEq<Status> for Stored<Status> {
    fn eq(&self, other: &Status) -> bool {
        matches!(self, Stored::Known(s) if s == other)
    }
}

impl PartialEq<Source> for Stored<Source> {
    fn eq(&self, other: &Source) -> bool {
        matches!(self, Stored::Known(s) if s == other)
    }
}

/// A text column that is NOT NULL in the schema: None when it holds NULL (a recreated table)
/// or bytes that are not UTF-8. Displayed as the text, or `<unreadable>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub Option<String>);

impl Text {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_deref().unwrap_or(UNREADABLE))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Some(s.to_owned()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(Some(s))
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_deref() == Some(other)
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_deref() == Some(*other)
    }
}

/// The columns of one row, read leniently.
pub(super) struct Cells<'a, 'r> {
    row: &'a Row<'r>,
    /// Some column held what yaku does not write: another type, an unknown word, NULL in a
    /// NOT NULL column, options that are not a JSON array of strings.
    pub odd: bool,
}

impl<'a, 'r> Cells<'a, 'r> {
    pub fn new(row: &'a Row<'r>) -> Self {
        Self { row, odd: false }
    }

    /// A text column; `nullable`: NULL is something yaku writes there.
    pub fn text(&mut self, idx: usize, nullable: bool) -> rusqlite::Result<Option<String>> {
        let v = self.row.get_ref(idx)?;
        self.odd |= matches!(v, ValueRef::Null) && !nullable;
        let (text, exact) = text_of(v);
        self.odd |= !exact;
        Ok(text)
    }

    /// An INTEGER column.
    pub fn int(&mut self, idx: usize, nullable: bool) -> rusqlite::Result<Option<i64>> {
        let v = self.row.get_ref(idx)?;
        self.odd |= matches!(v, ValueRef::Null) && !nullable;
        let (n, exact) = int_of(v);
        self.odd |= !exact;
        Ok(n)
    }

    /// An INTEGER column that holds a count or a duration: a negative value is unreadable.
    pub fn count(&mut self, idx: usize, nullable: bool) -> rusqlite::Result<Option<u64>> {
        let n = self.int(idx, nullable)?;
        let count = n.and_then(|n| u64::try_from(n).ok());
        self.odd |= n.is_some() && count.is_none();
        Ok(count)
    }

    /// A NOT NULL column of words.
    pub fn word<T: Vocabulary>(&mut self, idx: usize) -> rusqlite::Result<Stored<T>> {
        let v = self.row.get_ref(idx)?;
        let (text, exact) = text_of(v);
        let word = match text {
            None => Stored::Unreadable,
            Some(s) => match T::parse(&s) {
                Some(w) => Stored::Known(w),
                None => Stored::Other(s),
            },
        };
        self.odd |= !exact || !matches!(word, Stored::Known(_));
        Ok(word)
    }

    /// A column holding a JSON array of strings, NULL for none: `Some(vec![])` for NULL, None
    /// when it holds anything else.
    pub fn options(&mut self, idx: usize) -> rusqlite::Result<Option<Vec<String>>> {
        let v = self.row.get_ref(idx)?;
        if matches!(v, ValueRef::Null) {
            return Ok(Some(Vec::new()));
        }
        self.odd |= !matches!(v, ValueRef::Text(_));
        let options = string_array(v);
        self.odd |= options.is_none();
        Ok(options)
    }
}

/// A text value and whether it is exactly what yaku writes (TEXT in UTF-8, or NULL). A BLOB
/// in UTF-8 is read as its text and a number in decimal; NULL and other bytes give None.
pub(super) fn text_of(v: ValueRef<'_>) -> (Option<String>, bool) {
    match v {
        ValueRef::Null => (None, true),
        ValueRef::Text(b) => match std::str::from_utf8(b) {
            Ok(s) => (Some(s.to_owned()), true),
            Err(_) => (None, false),
        },
        ValueRef::Blob(b) => (std::str::from_utf8(b).ok().map(str::to_owned), false),
        ValueRef::Integer(i) => (Some(i.to_string()), false),
        ValueRef::Real(f) => (Some(f.to_string()), false),
    }
}

/// An integer value and whether it is exactly what yaku writes (an INTEGER, or NULL). A REAL
/// is rounded to the nearest integer (halves away from zero); text or a BLOB holding a number
/// is that number; anything else gives None.
pub(super) fn int_of(v: ValueRef<'_>) -> (Option<i64>, bool) {
    match v {
        ValueRef::Null => (None, true),
        ValueRef::Integer(i) => (Some(i), true),
        ValueRef::Real(f) => (round(f), false),
        ValueRef::Text(b) | ValueRef::Blob(b) => {
            let n = std::str::from_utf8(b).ok().and_then(|s| {
                let s = s.trim();
                s.parse::<i64>()
                    .ok()
                    .or_else(|| s.parse::<f64>().ok().and_then(round))
            });
            (n, false)
        }
    }
}

/// `f` rounded to an integer (saturating at i64's range); None for NaN and infinities.
fn round(f: f64) -> Option<i64> {
    // `as` saturates, which is what an absurd value deserves.
    f.is_finite().then(|| f.round() as i64)
}

/// A JSON array of strings held as text (or a UTF-8 BLOB); None for anything else.
pub(super) fn string_array(v: ValueRef<'_>) -> Option<Vec<String>> {
    let bytes = match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => b,
        _ => return None,
    };
    serde_json::from_slice::<Vec<String>>(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_from_every_storage_class_and_rounded() {
        let cases: [(ValueRef<'_>, Option<i64>, bool); 10] = [
            (ValueRef::Integer(7), Some(7), true),
            (ValueRef::Null, None, true),
            (ValueRef::Real(1.5), Some(2), false),
            (ValueRef::Real(-1.5), Some(-2), false),
            (ValueRef::Real(1.7e12), Some(1_700_000_000_000), false),
            (ValueRef::Real(f64::NAN), None, false),
            (ValueRef::Text(b" 42 "), Some(42), false),
            (ValueRef::Text(b"2.4"), Some(2), false),
            (ValueRef::Text(b"maybe"), None, false),
            (ValueRef::Blob(&[0xff, 0]), None, false),
        ];
        for (v, want, exact) in cases {
            assert_eq!(int_of(v), (want, exact), "{v:?}");
        }
    }

    #[test]
    fn text_is_read_from_utf8_blobs_and_numbers_but_not_from_other_bytes() {
        assert_eq!(text_of(ValueRef::Text(b"ok")), (Some("ok".into()), true));
        assert_eq!(text_of(ValueRef::Blob(b"ok")), (Some("ok".into()), false));
        assert_eq!(text_of(ValueRef::Blob(&[0xff, 0])), (None, false));
        assert_eq!(text_of(ValueRef::Text(&[0xff, 0])), (None, false));
        assert_eq!(text_of(ValueRef::Integer(5)), (Some("5".into()), false));
        assert_eq!(text_of(ValueRef::Real(1.5)), (Some("1.5".into()), false));
        assert_eq!(text_of(ValueRef::Null), (None, true));
    }

    #[test]
    fn only_a_json_array_of_strings_is_options() {
        assert_eq!(
            string_array(ValueRef::Text(br#"["a","b"]"#)),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(string_array(ValueRef::Text(b"[]")), Some(vec![]));
        for bad in [
            &b"not json"[..],
            b"[1,2]",
            br#"{"a":1}"#,
            br#"["a",1]"#,
            b"null",
        ] {
            assert_eq!(string_array(ValueRef::Text(bad)), None, "{bad:?}");
        }
        assert_eq!(string_array(ValueRef::Integer(1)), None);
    }
}
