//! Time and CSV formatting written by hand (the brief rules out chrono/time and csv crates).

use std::fmt::Write as _;
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

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// `civil_from_days`, which counts in 400-year eras so leap rules need no table.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01: leap days fall at a year's end
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
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

    fn is_leap(y: i64) -> bool {
        (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
    }

    #[test]
    fn civil_dates_match_a_day_by_day_count_from_1900_to_2200() {
        // Walk back from the epoch to 1900-01-01, then forward to 2200, one day at a time.
        let (mut y, mut m, mut d) = (1900i64, 1u32, 1u32);
        let days_before_epoch: i64 = (1900..1970)
            .map(|y| if is_leap(y) { 366 } else { 365 })
            .sum();
        let mut day = -days_before_epoch;
        while y < 2200 {
            assert_eq!(civil_from_days(day), (y, m, d), "day {day}");
            let month_len = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                _ if is_leap(y) => 29,
                _ => 28,
            };
            d += 1;
            if d > month_len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
            day += 1;
        }
    }

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
