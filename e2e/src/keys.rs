//! The key/value sets the scenarios write and then prove readable.

/// Key number `i` of a named set, e.g. `bulk-000042`.
pub fn key(set: &str, i: usize) -> String {
    format!("{set}-{i:06}")
}

/// The value stored under `key` in write round `round`: derived from both, so a stale value from an
/// earlier round (or another key's value) is detected, not just a missing one.
pub fn value(key: &str, round: u32) -> Vec<u8> {
    format!("{key}:r{round}:ringcache-e2e-payload").into_bytes()
}

/// A cheap deterministic spread of indices (so reads do not walk keys in write order).
pub fn scrambled(i: usize, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    // Multiplying by an odd constant is a bijection mod 2^64; mod n it spreads well enough.
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7) % n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_fit_the_key_limit() {
        let a = key("bulk", 1);
        let b = key("bulk", 2);
        assert_ne!(a, b);
        assert!(key("some-long-set-name", 999_999).len() <= 250);
    }

    #[test]
    fn values_differ_per_round_and_per_key() {
        assert_ne!(value("k", 1), value("k", 2));
        assert_ne!(value("k1", 1), value("k2", 1));
    }

    #[test]
    fn scrambled_stays_in_range() {
        for i in 0..10_000 {
            assert!(scrambled(i, 37) < 37);
        }
        assert_eq!(scrambled(5, 0), 0);
    }
}
