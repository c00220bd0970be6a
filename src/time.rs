//! Timestamps: RFC 3339, UTC, exactly six fractional digits, so that stored timestamps compare
//! correctly as plain strings.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::{Error, Result};

/// The current time in eventdir's stored form.
pub fn now() -> String {
    format(Utc::now())
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

/// Whether `text` is exactly in the stored form.
pub fn is_stored_form(text: &str) -> bool {
    text.len() == 27
        && DateTime::parse_from_rfc3339(text).is_ok_and(|t| format(t.with_timezone(&Utc)) == text)
}

#[cfg(test)]
mod tests {
    use super::*;

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
