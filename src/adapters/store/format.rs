//! Time and CSV formatting written by hand (the brief rules out chrono/time and csv crates).

use std::fmt::Write as _;

use crate::core::calendar::civil_from_days;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: RFC 3339 has four-digit
/// years only, so times outside are clamped to these.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

/// `t` as unix milliseconds, rounded down (also before 1970).
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(before) => {
            let d = before.duration();
            let ms = d.as_millis() + u128::from(d.subsec_nanos() % 1_000_000 != 0);
            i64::try_from(ms).map(|ms| -ms).unwrap_or(i64::MIN)
        }
    }
}

/// Unix milliseconds as a `SystemTime` (saturating at what the platform can hold).
pub fn system_time_from_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-11-27T10:44:07.295Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let ms = ms.clamp(MIN_MS, MAX_MS);
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{milli:03}Z")
}

/// Appends `field` to `out` as one CSV field (RFC 4180): quoted, with quotes doubled, when it
/// holds a comma, a quote, CR or LF, or is empty (so that an empty string differs from an
/// absent value, which `csv_absent` writes as nothing).
pub fn csv_field(out: &mut String, field: &str) {
    if field.is_empty() || field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        for c in field.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// Appends an optional text field: absent is an empty unquoted field.
pub fn csv_opt(out: &mut String, field: Option<&str>) {
    if let Some(f) = field {
        csv_field(out, f);
    }
}

/// Appends a number (never needs quoting).
pub fn csv_num(out: &mut String, n: impl std::fmt::Display) {
    let _ = write!(out, "{n}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_776_247_295), "2026-11-27T10:44:07.295Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(1_234_567_890_123), "2009-02-13T23:31:30.123Z");
        assert_eq!(rfc3339_ms(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(i64::MIN), "0000-01-01T00:00:00.000Z");
    }

    #[test]
    fn unix_ms_rounds_down_on_both_sides_of_the_epoch() {
        let after = UNIX_EPOCH + Duration::from_micros(1_500);
        let before = UNIX_EPOCH - Duration::from_micros(1_500);
        assert_eq!(unix_ms(after), 1);
        assert_eq!(unix_ms(before), -2);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_millis(3)), -3);
        assert_eq!(
            system_time_from_ms(-3),
            UNIX_EPOCH - Duration::from_millis(3)
        );
        assert_eq!(
            unix_ms(system_time_from_ms(1_795_776_247_295)),
            1_795_776_247_295
        );
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut s = String::new();
        for f in [
            "plain",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\rx",
            "",
            "日本語",
        ] {
            csv_field(&mut s, f);
            s.push('|');
        }
        assert_eq!(
            s,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\"cr\rx\"|\"\"|日本語|"
        );
        let mut absent = String::new();
        csv_opt(&mut absent, None);
        assert_eq!(absent, "");
    }
}
