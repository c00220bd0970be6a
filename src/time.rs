//! Timestamps: RFC 3339, UTC, exactly six fractional digits, so that stored timestamps compare
//! correctly as plain strings.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::{Error, Result};

/// The current time in eventdir's stored form.
pub fn now() -> String {
    format_within_second(Utc::now())
}

/// [`format`], with the part up to the seconds formatted once per second per thread: a batch
/// stamps every event it writes, and the general formatter costs more than the clock.
fn format_within_second(instant: DateTime<Utc>) -> String {
    thread_local! {
        /// The last second formatted, and its form up to the decimal point included.
        static SECOND: std::cell::RefCell<(i64, String)> = const {
            std::cell::RefCell::new((i64::MIN, String::new()))
        };
    }
    let micros = instant.timestamp_subsec_micros();
    if micros >= 1_000_000 {
        // A leap second, which only a parsed time can carry.
        return format(instant);
    }
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != instant.timestamp() {
            let mut full = format(instant);
            full.truncate(full.len() - "000000Z".len());
            *prefix = full;
            *second = instant.timestamp();
        }
        let mut out = String::with_capacity(STORED_LEN);
        out.push_str(prefix);
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out.push_str(std::str::from_utf8(&digits).expect("ASCII digits"));
        out.push('Z');
        out
    })
}

/// Formats an instant in eventdir's stored form, e.g. `2026-11-23T12:00:00.000000Z`.
pub fn format(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a user-supplied RFC 3339 instant (any offset) into the stored form, truncated to
/// microseconds. `what` names the option in error messages.
pub fn parse(text: &str, what: &str) -> Result<String> {
    let instant = DateTime::parse_from_rfc3339(text).map_err(|e| {
        Error::input(
            what,
            format!("{text:?} is not an RFC 3339 time ({e}); write e.g. 2026-11-23T12:00:00Z"),
        )
    })?;
    Ok(format(instant.with_timezone(&Utc)))
}

/// The length of a timestamp in the stored form, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub const STORED_LEN: usize = 27;

/// Whether `text` is exactly in the stored form.
pub fn is_stored_form(text: &str) -> bool {
    // YYYY-MM-DDTHH:MM:SS.ffffffZ, checked without allocating: readers call this per event.
    let b = text.as_bytes();
    let digits_at = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    let number = |range: std::ops::Range<usize>| {
        b[range]
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'))
    };
    if b.len() != STORED_LEN
        || ![
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (26, b'Z'),
        ]
        .iter()
        .all(|&(i, c)| b[i] == c)
        || ![0..4, 5..7, 8..10, 11..13, 14..16, 17..19, 20..26]
            .into_iter()
            .all(digits_at)
    {
        return false;
    }
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    chrono::NaiveDate::from_ymd_opt(number(0..4) as i32, number(5..7), number(8..10)).is_some()
        && hour < 24
        && minute < 60
        && second < 60
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_formatted_as_format_formats_it() {
        // Whole seconds, so that the steps within one reuse its formatted part.
        let this_second = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap();
        for base in [this_second, DateTime::UNIX_EPOCH] {
            for step in [
                0,
                1,
                999_999,
                1_000_000,
                1_000_001,
                59_999_999,
                86_400_000_000,
            ] {
                let instant = base + chrono::Duration::microseconds(step);
                assert_eq!(format_within_second(instant), format(instant));
            }
        }
        assert!(is_stored_form(&now()));
    }

    #[test]
    fn stored_form_is_fixed_width_utc() {
        let t = parse("2026-11-23T13:00:00.5+01:00", "--time").unwrap();
        assert_eq!(t, "2026-11-23T12:00:00.500000Z");
        assert!(is_stored_form(&t));
        assert!(is_stored_form(&now()));
        assert!(!is_stored_form("2026-11-23T12:00:00Z"));
        assert!(parse("yesterday", "--time").is_err());
    }
}
