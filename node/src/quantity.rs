//! Parsing of sizes (Kubernetes quantity syntax) and durations (`30s`, `500ms`, `1m`).

/// `256Mi`, `1Gi`, `1M`, `1.5Gi`, `1e9`, or plain bytes. Rounds down to whole bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return Err(format!(
            "{s:?} is not a quantity (examples: 256Mi, 1Gi, 1M, 1048576)"
        ));
    }
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..]
                .parse()
                .map_err(|_| format!("{s:?} has a bad exponent"))?;
            10f64.powi(exp)
        }
        other => {
            return Err(format!(
                "{s:?} has unknown suffix {other:?} (use k, M, G, T, Ki, Mi, Gi, Ti)"
            ));
        }
    };
    if !num.contains('.') && mult == 1.0 {
        return num.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
    }
    let n: f64 = num.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let v = n * mult;
    if !v.is_finite() || v >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(v as u64)
}

/// A duration in milliseconds: `500ms`, `30s`, `5m`, `2h`, `1d`, or a plain number of seconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 500ms, 30s, 5m, 2h, 1d)"))?;
    let mult = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(format!(
                "{s:?} has unknown unit {other:?} (use ms, s, m, h, d)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256Mi"), Ok(256 << 20));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("1M"), Ok(1_000_000));
        assert_eq!(parse_size("1k"), Ok(1_000));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("1.5Ki"), Ok(1536));
        assert_eq!(parse_size("2e3"), Ok(2000));
        assert!(parse_size("").is_err());
        assert!(parse_size("Mi").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("-1").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("30"), Ok(30_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert!(parse_duration_ms("1w").is_err());
        assert!(parse_duration_ms("s").is_err());
        assert!(parse_duration_ms("-5s").is_err());
    }
}
