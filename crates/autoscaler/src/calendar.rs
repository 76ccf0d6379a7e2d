//! Civil-calendar arithmetic for scheduled windows, without a clock or a
//! time-zone database: the policy carries a fixed UTC offset.

use jdos_types::UnixMillis;

use crate::policy::Weekday;

/// Minutes since the Unix epoch in local time.
pub(crate) fn local_minutes(now: UnixMillis, utc_offset_minutes: i32) -> i64 {
    (now / 60_000) as i64 + i64::from(utc_offset_minutes)
}

/// Weekday of a day number counted from 1970-01-01 (a Thursday).
pub(crate) fn weekday_of_day(day: i64) -> Weekday {
    Weekday::from_index((day + 3).rem_euclid(7) as u32)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `HH:MM` → minutes after midnight; `24:00` is the end of the day.
pub(crate) fn parse_hm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` in local time → Unix milliseconds.
pub(crate) fn parse_local_datetime(s: &str, utc_offset_minutes: i32) -> Option<UnixMillis> {
    let s = s.trim();
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let y: i64 = y.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    let d: u32 = d.parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let minute = match time {
        Some(t) => parse_hm(t)?,
        None => 0,
    };
    let local = days_from_civil(y, m, d) * 1440 + i64::from(minute);
    let utc = local - i64::from(utc_offset_minutes);
    u64::try_from(utc).ok().map(|m| m * 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_known_points() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // 2026-11-11 is a Wednesday.
        let d = days_from_civil(2026, 11, 11);
        assert_eq!(weekday_of_day(d), Weekday::Wed);
        assert_eq!(weekday_of_day(0), Weekday::Thu);
    }

    #[test]
    fn parses_times_and_dates() {
        assert_eq!(parse_hm("09:30"), Some(570));
        assert_eq!(parse_hm("24:00"), Some(1440));
        assert_eq!(parse_hm("24:01"), None);
        assert_eq!(parse_hm("9:30"), None);
        assert_eq!(parse_local_datetime("1970-01-02", 0), Some(86_400_000));
        assert_eq!(
            parse_local_datetime("1970-01-02T08:00", 480),
            Some(86_400_000)
        );
        assert_eq!(parse_local_datetime("2025-02-29", 0), None);
        assert!(parse_local_datetime("2024-02-29T23:59", 0).is_some());
    }
}
