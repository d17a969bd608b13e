//! Durations as people type them (`1d`, `12h`, `30m`, `1d 12h`) and countdowns as they read them.

use std::time::Duration;

/// Parses `1d`, `12h`, `30m`, `45s`, `1d 12h`; a bare number is refused (unit required).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration: use forms like 1d, 12h, 30m".into());
    }
    if trimmed.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "duration '{trimmed}' has no unit: use forms like 1d, 12h, 30m"
        ));
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("invalid duration '{trimmed}' ({e}): use forms like 1d, 12h, 30m"))
}

/// Whole seconds as a signed count, for arithmetic with timestamps (saturating: no
/// duration a person can type comes near the limit).
pub fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A value parser for clap.
pub fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

/// The shortest and longest refresh-token window a profile may have.
pub const REFRESH_WINDOW_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(366 * 86_400));

/// A refresh-token window: a duration from one minute to a year (Factorial's is `7d`).
pub fn parse_refresh_window(text: &str) -> Result<Duration, String> {
    let window = parse_duration(text)?;
    let (min, max) = REFRESH_WINDOW_RANGE;
    if window < min || window > max {
        return Err(format!(
            "refresh window '{}' is out of range: use 1m to 366d (Factorial's is 7d)",
            text.trim()
        ));
    }
    Ok(window)
}

/// Compact exact form for storage and messages: `7d`, `1h 30m`, `45s`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    parts.join(" ")
}

/// A countdown to show people: three levels of precision at most.
/// `6d 23h 59m`, `5h 12m`, `42m 10s`, `9s`.
pub fn format_countdown(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (
        secs / 86_400,
        (secs % 86_400) / 3_600,
        (secs % 3_600) / 60,
        secs % 60,
    );
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// How long ago something ended, coarsely: `3m`, `2h`, `4d`.
pub fn format_ago(secs: i64) -> String {
    let secs = secs.max(0);
    if secs >= 86_400 {
        format!("{}d", secs / 86_400)
    } else if secs >= 3_600 {
        format!("{}h", secs / 3_600)
    } else if secs >= 60 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_windows_are_bounded() {
        assert_eq!(parse_refresh_window("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["0s", "59s", "367d", "100000000d"] {
            let err = parse_refresh_window(bad).unwrap_err();
            assert!(
                err.contains("out of range") || err.contains("invalid"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("12h").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(
            parse_duration(" 1d 12h ").unwrap(),
            Duration::from_secs(129_600)
        );
    }

    #[test]
    fn refuses_bad_forms_with_advice() {
        for bad in ["", "12", "soon", "1x", "-1d"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("1d, 12h, 30m"), "{bad}: {err}");
        }
    }

    #[test]
    fn format_round_trips_through_parse() {
        for secs in [1, 59, 60, 3_599, 3_600, 86_400, 604_800, 90_061] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(604_800)), "7d");
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h 30m");
    }

    #[test]
    fn countdowns_keep_three_levels() {
        assert_eq!(format_countdown(604_799), "6d 23h 59m");
        assert_eq!(format_countdown(18_720), "5h 12m");
        assert_eq!(format_countdown(2_530), "42m 10s");
        assert_eq!(format_countdown(9), "9s");
        assert_eq!(format_countdown(-5), "0s");
        assert_eq!(format_ago(200), "3m");
        assert_eq!(format_ago(7_300), "2h");
    }
}
