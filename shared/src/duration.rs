//! Go-style duration strings (`"500ms"`, `"30s"`, `"1h30m"`) as Oathkeeper and Hydra configs
//! write them. Parsing only; no clock.

/// Parses a Go duration string into whole milliseconds. Accepts `ms`, `s`, `m` and `h` units,
/// concatenated (`"1h30m"`), and rejects negatives, empty input and unknown units.
pub fn parse_millis(input: &str) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(0);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {input:?}: expected a number"));
        }
        let value: u64 = rest[..digits].parse().map_err(|_| format!("invalid duration {input:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => {
                return Err(format!("invalid duration {input:?}: missing unit (ms, s, m, h)"));
            }
            other => {
                return Err(format!("invalid duration {input:?}: unknown unit {other:?}"));
            }
        };
        rest = &rest[unit_len..];
        total = value
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {input:?}: too large"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_millis("500ms"), Ok(500));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("1h30m"), Ok(5_400_000));
        assert_eq!(parse_millis("0"), Ok(0));
    }

    #[test]
    fn rejects_bad_durations() {
        assert!(parse_millis("").is_err());
        assert!(parse_millis("10").unwrap_err().contains("missing unit"));
        assert!(parse_millis("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_millis("-5s").is_err());
        assert!(parse_millis("99999999999999999999h").is_err());
    }
}
