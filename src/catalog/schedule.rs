//! Refresh schedules: durations such as `500ms`, `5s`, `2m`, `1h`, `1d`, or with the unit spelled out
//! as in a PostgreSQL interval (`'30 seconds'`, `'1 day'`).

use crate::error::{PgtError, PgtResult, SqlState};

/// Longest schedule accepted: 7 days. Longer intervals are almost certainly a typo in the unit.
pub const MAX_SCHEDULE_MS: i64 = 7 * 24 * 3_600_000;

const HINT: &str = "Use a positive whole number followed by a unit: ms, s, m, h or d, or the unit spelled out (for example '500ms', '5s', '2m', '1h', '30 seconds', '1 day').";

/// Parses a schedule into milliseconds. Whitespace around the value and between number and unit is
/// allowed; units are case-insensitive.
pub fn parse_schedule(text: &str) -> PgtResult<i64> {
    let invalid = || {
        PgtError::new(
            SqlState::InvalidParameterValue,
            format!("invalid schedule \"{text}\""),
        )
        .hint(HINT)
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(invalid)?;
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let n: i64 = digits.parse().map_err(|_| invalid())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return Err(invalid()),
    };
    let ms = n.checked_mul(factor).ok_or_else(invalid)?;
    if ms <= 0 {
        return Err(PgtError::new(
            SqlState::InvalidParameterValue,
            format!("schedule \"{text}\" must be positive"),
        )
        .hint(HINT));
    }
    if ms > MAX_SCHEDULE_MS {
        return Err(PgtError::new(
            SqlState::InvalidParameterValue,
            format!("schedule \"{text}\" is longer than 7 days"),
        )
        .hint(HINT));
    }
    Ok(ms)
}

/// The canonical spelling stored in the catalog and shown to users: the largest unit that divides evenly.
pub fn format_schedule(ms: i64) -> String {
    for (unit, factor) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms % factor == 0 {
            return format!("{}{unit}", ms / factor);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit() {
        assert_eq!(parse_schedule("500ms").unwrap(), 500);
        assert_eq!(parse_schedule("5s").unwrap(), 5_000);
        assert_eq!(parse_schedule("2m").unwrap(), 120_000);
        assert_eq!(parse_schedule("1h").unwrap(), 3_600_000);
        assert_eq!(parse_schedule("1d").unwrap(), 86_400_000);
        assert_eq!(parse_schedule(" 10 S ").unwrap(), 10_000);
    }

    #[test]
    fn accepts_units_spelled_out_as_in_an_interval() {
        assert_eq!(parse_schedule("1 day").unwrap(), 86_400_000);
        assert_eq!(parse_schedule("30 seconds").unwrap(), 30_000);
        assert_eq!(parse_schedule("5 Minutes").unwrap(), 300_000);
        assert_eq!(parse_schedule("2 hours").unwrap(), 7_200_000);
        assert_eq!(parse_schedule("1 second").unwrap(), 1_000);
        assert_eq!(parse_schedule("250 milliseconds").unwrap(), 250);
    }

    #[test]
    fn rejects_everything_else_with_a_hint() {
        for bad in [
            "",
            "5",
            "s",
            "-5s",
            "5 fortnights",
            "1 day 2 hours",
            "1.5s",
            "5x",
            "0s",
            "8d",
            "99999999999999999999ms",
            "5s5",
        ] {
            let err = parse_schedule(bad).unwrap_err();
            assert_eq!(err.state, SqlState::InvalidParameterValue, "{bad}");
            assert!(err.hint.is_some(), "{bad}");
        }
    }

    #[test]
    fn formats_with_the_largest_exact_unit() {
        assert_eq!(format_schedule(500), "500ms");
        assert_eq!(format_schedule(1_500), "1500ms");
        assert_eq!(format_schedule(5_000), "5s");
        assert_eq!(format_schedule(120_000), "2m");
        assert_eq!(format_schedule(3_600_000), "1h");
        assert_eq!(format_schedule(86_400_000), "1d");
    }
}
