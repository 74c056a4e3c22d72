//! Proleptic Gregorian dates from day counts and back: Howard Hinnant's civil-date
//! algorithms, which count in 400-year eras so leap rules need no table. Used to format
//! timestamps and to find a provider's daily reset (the brief rules out chrono and time).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): Howard Hinnant's
/// `civil_from_days`, which counts in 400-year eras so leap rules need no table.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
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

/// (year, month, day) to days since 1970-01-01; the inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Where a provider's daily budget starts again: its budget day runs from one reset to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DailyReset {
    /// Midnight America/Los_Angeles, daylight saving time included: Gemini's quotas.
    PacificMidnight,
    /// Midnight UTC: for a provider that has not said otherwise.
    UtcMidnight,
}

impl DailyReset {
    /// The start of the budget day that holds `now` (at or before it).
    pub fn day_start(self, now: SystemTime) -> SystemTime {
        at_secs(self.midnight_utc(self.local_day(unix_secs(now))))
    }

    /// How long from `now` until the next reset (more than zero, at most 25 hours).
    pub fn until_next(self, now: SystemTime) -> Duration {
        let secs = unix_secs(now);
        let next = self.midnight_utc(self.local_day(secs) + 1);
        Duration::from_secs(u64::try_from(next - secs).unwrap_or(0))
    }

    /// The local calendar day (days since 1970-01-01) that holds `utc_secs`.
    fn local_day(self, utc_secs: i64) -> i64 {
        let offset = match self {
            DailyReset::UtcMidnight => 0,
            DailyReset::PacificMidnight if pacific_daylight_time(utc_secs) => -7 * 3600,
            DailyReset::PacificMidnight => -8 * 3600,
        };
        (utc_secs + offset).div_euclid(86_400)
    }

    /// The UTC instant of the local midnight that begins `day`. A Pacific midnight is never
    /// in a changeover hour (they are at 02:00), so its offset is the one in force then.
    fn midnight_utc(self, day: i64) -> i64 {
        match self {
            DailyReset::UtcMidnight => day * 86_400,
            DailyReset::PacificMidnight => {
                let pdt = day * 86_400 + 7 * 3600;
                if pacific_daylight_time(pdt) {
                    pdt
                } else {
                    day * 86_400 + 8 * 3600
                }
            }
        }
    }
}

/// The start of the budget day of a provider that said when its budget is next full: the 24
/// hours before that reset. None when the reset is not ahead of `now` or more than a day
/// away, which says nothing about the day we are in.
pub fn day_start_before(now: SystemTime, next_reset: SystemTime) -> Option<SystemTime> {
    let ahead = next_reset.duration_since(now).ok()?;
    (!ahead.is_zero() && ahead <= DAY).then(|| next_reset - DAY)
}

const DAY: Duration = Duration::from_secs(86_400);

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
        // Before 1970 only on a badly set clock: count it as the epoch.
        Err(_) => 0,
    }
}

fn at_secs(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// US daylight saving time: from 2:00 local on the second Sunday of March to 2:00 local on the
/// first Sunday of November.
fn pacific_daylight_time(utc_secs: i64) -> bool {
    let days = utc_secs.div_euclid(86_400);
    let (year, _, _) = civil_from_days(days);
    let start = days_from_civil(year, 3, nth_sunday(year, 3, 2)) * 86_400 + 10 * 3600; // 02:00 PST
    let end = days_from_civil(year, 11, nth_sunday(year, 11, 1)) * 86_400 + 9 * 3600; // 02:00 PDT
    (start..end).contains(&utc_secs)
}

fn nth_sunday(year: i64, month: u32, n: u32) -> u32 {
    let first = days_from_civil(year, month, 1);
    // 1970-01-01 was a Thursday (weekday 4, Sunday = 0).
    let weekday = (first + 4).rem_euclid(7) as u32;
    1 + (7 - weekday) % 7 + 7 * (n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instant from a UTC date and time.
    fn utc(y: i64, m: u32, d: u32, hh: i64, mm: i64) -> SystemTime {
        at_secs(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60)
    }

    #[test]
    fn budget_day_starts_at_the_last_midnight_of_its_zone() {
        use DailyReset::{PacificMidnight as Pt, UtcMidnight as Utc};
        // (zone, now, day start, time to the next reset in minutes)
        let cases = [
            // UTC: a second before and at midnight.
            (Utc, utc(2026, 5, 3, 23, 59), utc(2026, 5, 3, 0, 0), 1),
            (Utc, utc(2026, 5, 4, 0, 0), utc(2026, 5, 4, 0, 0), 24 * 60),
            (
                Utc,
                utc(2024, 2, 29, 12, 0),
                utc(2024, 2, 29, 0, 0),
                12 * 60,
            ),
            // Pacific summer (PDT, UTC-7): midnight is 07:00 UTC.
            (Pt, utc(2026, 7, 1, 6, 59), utc(2026, 6, 30, 7, 0), 1),
            (Pt, utc(2026, 7, 1, 7, 0), utc(2026, 7, 1, 7, 0), 24 * 60),
            // Pacific winter (PST, UTC-8): midnight is 08:00 UTC.
            (Pt, utc(2026, 1, 15, 7, 0), utc(2026, 1, 14, 8, 0), 60),
            (Pt, utc(2026, 1, 15, 8, 0), utc(2026, 1, 15, 8, 0), 24 * 60),
            // Daylight saving starts 2026-03-08 02:00 PST: that day has 23 hours.
            (Pt, utc(2026, 3, 8, 9, 0), utc(2026, 3, 8, 8, 0), 22 * 60),
            (Pt, utc(2026, 3, 9, 6, 59), utc(2026, 3, 8, 8, 0), 1),
            (Pt, utc(2026, 3, 9, 7, 0), utc(2026, 3, 9, 7, 0), 24 * 60),
            // It ends 2026-11-01 02:00 PDT: that day has 25 hours.
            (Pt, utc(2026, 11, 1, 8, 0), utc(2026, 11, 1, 7, 0), 24 * 60),
            (Pt, utc(2026, 11, 2, 7, 59), utc(2026, 11, 1, 7, 0), 1),
            (Pt, utc(2026, 11, 2, 8, 0), utc(2026, 11, 2, 8, 0), 24 * 60),
            // New Year in UTC is still the old year in California.
            (Pt, utc(2027, 1, 1, 3, 0), utc(2026, 12, 31, 8, 0), 5 * 60),
        ];
        for (zone, now, start, minutes) in cases {
            assert_eq!(zone.day_start(now), start, "{zone:?} at {now:?}");
            assert_eq!(
                zone.until_next(now),
                Duration::from_secs(minutes * 60),
                "{zone:?} at {now:?}"
            );
        }
        assert_eq!(nth_sunday(2026, 3, 2), 8);
        assert_eq!(nth_sunday(2026, 11, 1), 1);
    }

    #[test]
    fn a_reset_the_provider_named_ends_the_day_that_began_24_hours_before_it() {
        let now = utc(2026, 5, 3, 12, 0);
        let cases = [
            (utc(2026, 5, 3, 18, 30), Some(utc(2026, 5, 2, 18, 30))),
            (utc(2026, 5, 4, 12, 0), Some(utc(2026, 5, 3, 12, 0))),
            // In the past, now, or more than a day away: nothing known about today.
            (utc(2026, 5, 3, 11, 0), None),
            (now, None),
            (utc(2026, 5, 4, 12, 1), None),
        ];
        for (reset, want) in cases {
            assert_eq!(day_start_before(now, reset), want, "{reset:?}");
        }
    }

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
    fn days_and_dates_round_trip() {
        for day in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }
}
