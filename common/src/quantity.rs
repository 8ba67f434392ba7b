//! Sizes in Kubernetes quantity syntax and durations, parsed one way for the node's flags, the
//! operator's spec checks and the client: what the operator admits, the node accepts.
//!
//! Sizes are computed exactly (decimal digits shifted, binary suffixes in integer arithmetic),
//! never in floating point: `1.005k` is 1005 bytes and `18446744073709551k` fits a u64.

use std::time::Duration;

/// Why a size or duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{0:?} is not a quantity (examples: 256Mi, 1Gi, 1.5Gi, 1M, 1e9, 1048576)")]
    Syntax(String),
    #[error(
        "{input:?} has unknown suffix {suffix:?} (use k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<n>)"
    )]
    Suffix { input: String, suffix: String },
    #[error("{0:?} has more than {MAX_BINARY_FRACTION} decimal places before a binary suffix")]
    Precision(String),
    #[error("{0:?} is too large (at most 18446744073709551615 bytes)")]
    TooLarge(String),
    #[error("{0:?} is not a duration (examples: 500ms, 30s, 5m, 2h, 1d, 1h30m)")]
    Duration(String),
    #[error(
        "{input:?} has unknown or missing unit {unit:?} (use ms, s, m, h, d, as in 90s or 1h30m)"
    )]
    Unit { input: String, unit: String },
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// Decimal places accepted before a binary suffix (`1.5Gi`): enough for any real size, and what
/// keeps the exact computation within u128.
pub const MAX_BINARY_FRACTION: usize = 20;

/// A size in bytes: `256Mi`, `1Gi`, `1.5Gi`, `1M`, `1k`, `1e9`, `2E`, or plain bytes (Kubernetes
/// quantity syntax without a sign). Fractions of a byte are rounded down.
pub fn parse_size(s: &str) -> Result<u64, QuantityError> {
    let t = s.trim();
    let syntax = || QuantityError::Syntax(s.to_string());
    let too_large = || QuantityError::TooLarge(s.to_string());
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || (num.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(syntax());
    }
    enum Scale {
        /// × 10^n (n may be negative).
        Decimal(i64),
        /// × 2^n.
        Binary(u32),
    }
    let scale = match suffix {
        "" => Scale::Decimal(0),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        e if e.starts_with(['e', 'E']) => {
            let exp = &e[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            // Beyond ±10^6 the answer is 0 or too large whatever the digits; no need to parse.
            let magnitude: i64 = digits.parse().unwrap_or(i64::MAX).min(1_000_000);
            Scale::Decimal(if exp.starts_with('-') {
                -magnitude
            } else {
                magnitude
            })
        }
        other => {
            return Err(QuantityError::Suffix {
                input: s.to_string(),
                suffix: other.to_string(),
            });
        }
    };
    let all_digits = format!("{int}{frac}");
    let significant = all_digits.trim_start_matches('0');
    match scale {
        Scale::Decimal(exp) => {
            // value = significant × 10^(exp − decimals): shifting digits is exact.
            let shift = exp - frac.len() as i64;
            if shift >= 0 {
                if significant.is_empty() {
                    return Ok(0);
                }
                if significant.len() as i64 + shift > 20 {
                    return Err(too_large());
                }
                let mut v = significant.parse::<u64>().map_err(|_| too_large())?;
                for _ in 0..shift {
                    v = v.checked_mul(10).ok_or_else(too_large)?;
                }
                Ok(v)
            } else {
                let keep = significant.len() as i64 + shift;
                if keep <= 0 {
                    return Ok(0);
                }
                significant[..keep as usize]
                    .parse::<u64>()
                    .map_err(|_| too_large())
            }
        }
        Scale::Binary(bits) => {
            if frac.len() > MAX_BINARY_FRACTION {
                return Err(QuantityError::Precision(s.to_string()));
            }
            let int_digits = int.trim_start_matches('0');
            if int_digits.len() > 20 {
                return Err(too_large());
            }
            // value = floor((I + F / 10^f) × 2^bits), with I < 10^20, F < 10^f ≤ 10^20:
            // F × 2^bits < 10^20 × 2^60 < 2^128.
            let i: u128 = if int_digits.is_empty() {
                0
            } else {
                int_digits.parse().map_err(|_| too_large())?
            };
            let f: u128 = if frac.is_empty() {
                0
            } else {
                frac.parse().map_err(|_| syntax())?
            };
            let whole = i.checked_mul(1u128 << bits).ok_or_else(too_large)?;
            let part = (f << bits) / 10u128.pow(frac.len() as u32);
            u64::try_from(whole + part).map_err(|_| too_large())
        }
    }
}

/// A duration: `500ms`, `30s`, `5m`, `2h`, `1d`, compounds such as `1h30m`, or a plain number of
/// seconds; at most u64::MAX milliseconds. Zero is a duration here (callers that cannot use it
/// refuse it with their own reason).
pub fn parse_duration(s: &str) -> Result<Duration, QuantityError> {
    let t = s.trim();
    let syntax = || QuantityError::Duration(s.to_string());
    let too_long = || QuantityError::TooLong(s.to_string());
    if t.is_empty() {
        return Err(syntax());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = t.parse().map_err(|_| too_long())?;
        return secs
            .checked_mul(1000)
            .map(Duration::from_millis)
            .ok_or_else(too_long);
    }
    let mut total_ms: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(syntax());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ms_per: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            other => {
                return Err(QuantityError::Unit {
                    input: s.to_string(),
                    unit: other.to_string(),
                });
            }
        };
        total_ms = n
            .checked_mul(ms_per)
            .and_then(|part| total_ms.checked_add(part))
            .ok_or_else(too_long)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// [`parse_duration`] in whole milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, QuantityError> {
    // parse_duration never exceeds u64::MAX milliseconds.
    parse_duration(s).map(|d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_quantity_syntax() {
        assert_eq!(parse_size("256Mi"), Ok(256 << 20));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert_eq!(parse_size("1M"), Ok(1_000_000));
        assert_eq!(parse_size("1k"), Ok(1_000));
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size(" 1.5Ki "), Ok(1536));
        assert_eq!(parse_size("2e3"), Ok(2000));
        assert_eq!(parse_size("2E"), Ok(2_000_000_000_000_000_000));
        assert_eq!(parse_size("15e-1"), Ok(1));
        assert_eq!(parse_size("1e-400000000000"), Ok(0));
        assert_eq!(parse_size("0e99999999999"), Ok(0));
        assert_eq!(parse_size("0.5"), Ok(0));
    }

    #[test]
    fn sizes_are_exact_where_floating_point_is_not() {
        assert_eq!(parse_size("1.005k"), Ok(1005));
        assert_eq!(
            parse_size("18446744073709551k"),
            Ok(18_446_744_073_709_551_000)
        );
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_size("9007199254740993Ki"),
            Ok(9_007_199_254_740_993 * 1024)
        );
        assert_eq!(parse_size("15.9999999999999999999Ei"), Ok(u64::MAX));
        assert_eq!(parse_size("0.1Ki"), Ok(102));
    }

    #[test]
    fn bad_sizes_say_why() {
        for bad in [
            "", "Mi", ".5", "5.", "1.2.3", "-1", "+1", "1e", "1e+", "1 Mi",
        ] {
            assert!(
                matches!(
                    parse_size(bad),
                    Err(QuantityError::Syntax(_) | QuantityError::Suffix { .. })
                ),
                "{bad:?}: {:?}",
                parse_size(bad)
            );
        }
        assert!(matches!(
            parse_size("12XB"),
            Err(QuantityError::Suffix { .. })
        ));
        assert!(matches!(
            parse_size("100m"),
            Err(QuantityError::Suffix { .. })
        ));
        for big in [
            "18446744073709551616",
            "16Ei",
            "19E",
            "1e20",
            "99999999999999999999999Ki",
        ] {
            assert_eq!(parse_size(big), Err(QuantityError::TooLarge(big.into())));
        }
        assert!(matches!(
            parse_size("1.000000000000000000001Ki"),
            Err(QuantityError::Precision(_))
        ));
        assert_eq!(
            parse_size("1x").unwrap_err().to_string(),
            "\"1x\" has unknown suffix \"x\" (use k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei or e<n>)"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("30"), Ok(30_000));
        assert_eq!(parse_duration_ms("1m"), Ok(60_000));
        assert_eq!(parse_duration_ms("2h"), Ok(7_200_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert!(matches!(
            parse_duration_ms("1w"),
            Err(QuantityError::Unit { .. })
        ));
        assert!(matches!(
            parse_duration_ms("s"),
            Err(QuantityError::Duration(_))
        ));
        assert!(matches!(
            parse_duration_ms("-5s"),
            Err(QuantityError::Duration(_))
        ));
        assert!(matches!(
            parse_duration_ms("18446744073709551615d"),
            Err(QuantityError::TooLong(_))
        ));
    }
}
