//! `--ttl` values: `30s`, `1500ms`, `5m`, `2h`, `1d`, compounds such as `1h30m`, or bare seconds.

use std::time::Duration;

/// Parses a human duration. Zero is refused: a TTL of nothing would store a key that is already
/// gone, which is never what was meant.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return nonzero(Duration::from_secs(secs), text);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{text:?}: expected a number at {rest:?}"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "" => {
                return Err(format!(
                    "{text:?}: a unit is needed after {n} (ms, s, m, h, d)"
                ));
            }
            other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h, d)")),
        };
        total = total.saturating_add(part);
    }
    nonzero(total, text)
}

fn nonzero(d: Duration, text: &str) -> Result<Duration, String> {
    if d.is_zero() {
        Err(format!("{text:?}: a TTL must be greater than zero"))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_units_compounds_and_bare_seconds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn refuses_garbage_zero_and_missing_units() {
        for bad in ["", "s", "10x", "1h30", "0s", "0", "-5s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
