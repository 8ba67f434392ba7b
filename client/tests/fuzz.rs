//! Fuzz target `client_duration`: `ringcache_client::duration::parse_duration` (the CLI's
//! `--ttl` and `--timeout`). Properties: never panics; on the shared grammar (bare seconds, or
//! `<n><unit>` parts with units ms, s, m, h, d; `harness::exact_duration_ms`) the result is the
//! exact sum, refused beyond u64::MAX milliseconds; zero, an empty string, a missing or unknown
//! unit are refused; and nothing outside the grammar is accepted.
//!
//! Corpus: `fuzz/corpus/client_duration/`. Longer run: `RINGCACHE_FUZZ_SECS=30 cargo test -p
//! ringcache-client --test fuzz` (see fuzz/README.md).

#[path = "../../fuzz/harness.rs"]
mod harness;

use proptest::collection::vec;
use proptest::prelude::*;
use ringcache_client::duration::parse_duration;
use std::time::Duration;

fn check(s: &str) {
    let got = parse_duration(s);
    // The shared grammar, less zero, which the client refuses.
    let want = harness::exact_duration_ms(s)
        .flatten()
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis);
    assert_eq!(got.clone().ok(), want, "parse_duration({s:?}) = {got:?}");
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
