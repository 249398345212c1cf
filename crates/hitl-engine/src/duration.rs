//! Go-style durations (`30s`, `1h30m`, `1.5h`, `250ms`), as `sleep` takes them.

use std::time::Duration;

/// Parses an unsigned Go duration. The CRD's pattern refuses most bad values at admission; this
/// is the controller's own check.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("{s:?} is not a duration such as 30s, 5m or 1h30m"));
        }
        let value: f64 =
            rest[..num_len].parse().map_err(|_| format!("{s:?} is not a duration such as 30s, 5m or 1h30m"))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("{s:?} is not a duration such as 30s, 5m or 1h30m")),
        };
        rest = &rest[unit_len..];
        total += value * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("{s:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "30", "s", "3x", "1h-2m", "-1s", "1.2.3s"] {
            assert!(parse(bad).is_err(), "{bad} should not parse");
        }
    }
}
