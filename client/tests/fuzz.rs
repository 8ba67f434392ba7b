//! Fuzz target `client_duration`: `ringcache_client::duration::parse_duration` (the CLI's
//! `--ttl` and `--timeout`). Properties: never panics; on the documented grammar (bare seconds,
//! or `<n><unit>` parts with units ms, s, m, h, d) the result is the exact sum, saturating at the
//! top instead of overflowing; zero, an empty string, a missing or unknown unit are refused; and
//! nothing outside the grammar is accepted.
//!
//! Corpus: `fuzz/corpus/client_duration/`. Longer run: `RINGCACHE_FUZZ_SECS=30 cargo test -p
//! ringcache-client --test fuzz` (see fuzz/README.md).

#[path = "../../fuzz/harness.rs"]
mod harness;

use proptest::collection::vec;
use proptest::prelude::*;
use ringcache_client::duration::parse_duration;
use std::time::Duration;

/// What the grammar says `s` is.
#[derive(Debug, PartialEq)]
enum Expect {
    /// Not a duration (or zero).
    Refused,
    /// Exactly this.
    Exact(Duration),
    /// Beyond what a `Duration` or a part's seconds hold: saturates (at least u64::MAX seconds).
    Saturated,
}

fn expect(s: &str) -> Expect {
    let t = s.trim();
    if t.is_empty() {
        return Expect::Refused;
    }
    // Bare seconds (`u64`'s own syntax, which allows a leading `+`).
    let bare = t.strip_prefix('+').unwrap_or(t);
    if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_digit()) {
        return match bare.trim_start_matches('0') {
            "" => Expect::Refused,
            d if d.len() > 20 => Expect::Refused,
            d => match d.parse::<u64>() {
                Ok(n) => Expect::Exact(Duration::from_secs(n)),
                Err(_) => Expect::Refused,
            },
        };
    }
    // Parts: ASCII digits, then a unit running to the next ASCII digit.
    let mut total: u128 = 0; // nanoseconds
    let mut saturated = false;
    let mut rest = t;
    while !rest.is_empty() {
        let d = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if d == 0 {
            return Expect::Refused;
        }
        let Ok(n) = rest[..d].parse::<u64>() else {
            return Expect::Refused;
        };
        rest = &rest[d..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (secs_per, is_ms) = match &rest[..u] {
            "ms" => (0u128, true),
            "s" => (1, false),
            "m" => (60, false),
            "h" => (3600, false),
            "d" => (86_400, false),
            _ => return Expect::Refused,
        };
        rest = &rest[u..];
        let nanos = if is_ms {
            u128::from(n) * 1_000_000
        } else {
            let secs = u128::from(n) * secs_per;
            if secs > u128::from(u64::MAX) {
                saturated = true;
            }
            secs * 1_000_000_000
        };
        total += nanos;
    }
    let max = u128::from(u64::MAX) * 1_000_000_000 + 999_999_999;
    if saturated || total > max {
        return Expect::Saturated;
    }
    if total == 0 {
        return Expect::Refused;
    }
    let secs = (total / 1_000_000_000) as u64;
    Expect::Exact(Duration::new(secs, (total % 1_000_000_000) as u32))
}

fn check(s: &str) {
    let got = parse_duration(s);
    match expect(s) {
        Expect::Refused => assert!(
            got.is_err(),
            "parse_duration({s:?}) = {got:?}, want an error"
        ),
        Expect::Exact(d) => assert_eq!(got, Ok(d), "parse_duration({s:?})"),
        Expect::Saturated => assert!(
            got.as_ref().is_ok_and(|d| d.as_secs() == u64::MAX),
            "parse_duration({s:?}) = {got:?}, want saturation at u64::MAX seconds"
        ),
    }
    if let Err(e) = &got {
        assert!(!e.is_empty(), "empty error message for {s:?}");
    }
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..5000u64).prop_map(|n| n.to_string()),
        1 => Just("0".to_string()),
        1 => Just(u64::MAX.to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just((u64::MAX / 60 + 1).to_string()),
        1 => Just((u64::MAX / 86_400).to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "0{1,25}[0-9]{0,3}",
    ]
}

fn well_formed() -> impl Strategy<Value = String> {
    let unit = proptest::sample::select(vec!["ms", "s", "m", "h", "d"]);
    let pad = proptest::sample::select(vec!["", " ", "\t", "\n "]);
    (
        prop_oneof![
            3 => vec((number(), unit), 1..5)
                .prop_map(|parts| parts.into_iter().map(|(n, u)| format!("{n}{u}")).collect()),
            1 => number(),
            1 => number().prop_map(|n| format!("+{n}")),
        ],
        pad,
    )
        .prop_map(|(s, p): (String, &str)| format!("{p}{s}{p}"))
}

fn near_duration() -> impl Strategy<Value = String> {
    "[ 0-9msdhwµ+.-]{0,16}"
}

#[test]
fn client_duration_corpus() {
    harness::replay("client_duration", |b| check(&String::from_utf8_lossy(b)));
}

#[test]
fn client_duration_strings() {
    let inputs = prop_oneof![
        3 => well_formed(),
        2 => near_duration(),
        1 => "\\PC{0,12}",
        1 => any::<String>(),
    ];
    harness::fuzz("client_duration", 250_000, inputs, |s| {
        check(&s);
        Ok(())
    });
}
