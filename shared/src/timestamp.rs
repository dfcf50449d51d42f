//! RFC 3339 timestamps (`2026-12-07T21:37:20Z`, `…20.123456+01:00`) as unix milliseconds, for
//! the few answers that state an expiry that way (a Kratos session's `expires_at`). No time
//! crate: the filter carries only what it uses.

/// Unix milliseconds of an RFC 3339 date-time; `None` when it is not one (or out of range).
pub fn unix_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter().try_fold(0i64, |n, c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    };
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut millis = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            if at - start < 3 {
                millis = millis * 10 + i64::from(b[at] - b'0');
            }
            at += 1;
        }
        if at == start {
            return None;
        }
        for _ in (at - start)..3 {
            millis *= 10;
        }
    }
    let offset_minutes = match b.get(at)? {
        b'Z' | b'z' if at + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == b.len() && b.get(at + 3) == Some(&b':') => {
            let (h, m) = (digits(at + 1..at + 3)?, digits(at + 4..at + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            if *sign == b'+' { h * 60 + m } else { -(h * 60 + m) }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_minutes * 60;
    seconds.checked_mul(1_000)?.checked_add(millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::unix_ms;

    #[test]
    fn reads_rfc3339_as_unix_milliseconds() {
        assert_eq!(unix_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_ms("2026-12-07T21:37:20Z"), Some(1_796_679_440_000));
        assert_eq!(unix_ms("2026-12-07T21:37:20.123456789Z"), Some(1_796_679_440_123));
        assert_eq!(unix_ms("2026-12-07T22:37:20.5+01:00"), Some(1_796_679_440_500));
        assert_eq!(unix_ms("2026-12-07T20:37:20-01:00"), Some(1_796_679_440_000));
        assert_eq!(unix_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(unix_ms("1969-12-31T23:59:59Z"), Some(-1_000));
    }

    #[test]
    fn refuses_what_is_not_one() {
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07T21:37:20",
            "2026-13-07T21:37:20Z",
            "2023-02-29T00:00:00Z",
            "2026-12-07T24:00:00Z",
            "2026-12-07T21:37:20.Z",
            "2026-12-07T21:37:20+0100",
            "2026-12-07T21:37:20Zjunk",
            "２026-12-07T21:37:20Z",
            "2026-12-07T21:37:20+24:00",
        ] {
            assert_eq!(unix_ms(bad), None, "{bad:?}");
        }
    }
}
