//! `--ttl` and `--timeout` values: `30s`, `1500ms`, `5m`, `2h`, `1d`, compounds such as `1h30m`,
//! or bare seconds.

use std::time::Duration;

/// Parses a human duration with the nodes' own parser (`ringcache_common::quantity`). Zero is
/// refused: a TTL of nothing would store a key that is already gone, and a timeout of nothing
/// would never let a request through.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = ringcache_common::quantity::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err(format!("{:?}: must be greater than zero", text.trim()));
    }
    Ok(d)
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
        for bad in ["", "s", "10x", "1h30", "0s", "0", "-5s", "1.5s", "+5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
