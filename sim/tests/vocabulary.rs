//! Node, operator and client read sizes and durations the same way: a quantity the operator
//! admits is one the node starts with (the operator passes the spec's string through), and a TTL
//! the CLI accepts is the TTL the node stores.

use proptest::prelude::*;
use ringcache_client::duration::parse_duration as client_duration;
use ringcache_node::quantity::{parse_duration_ms as node_duration_ms, parse_size as node_size};
use ringcache_operator::validate::parse_quantity as operator_quantity;

const SIZES: &[&str] = &[
    "256Mi",
    "1Gi",
    "1.5Gi",
    "1M",
    "1k",
    "1e9",
    "2E",
    "1048576",
    "0",
    "0.5",
    "1.005k",
    "18446744073709551k",
    "18446744073709551615",
    "18446744073709551616",
    "16Ei",
    "100m",
    "Mi",
    "",
    " 64Mi ",
    "-1",
    "+1",
    "1 Mi",
    "1.",
    ".5",
    "1e-3",
    "7Ki",
    "12XB",
];

const DURATIONS: &[&str] = &[
    "500ms",
    "30s",
    "30",
    "5m",
    "2h",
    "1d",
    "1h30m",
    "1m500ms",
    "0",
    "0s",
    "1w",
    "1h30",
    "1.5s",
    "-5s",
    "+5",
    "",
    " 10s ",
    "18446744073709551615ms",
    "18446744073709551615s",
    "s",
];

fn same_size(s: &str) {
    assert_eq!(
        operator_quantity(s),
        node_size(s).ok(),
        "operator and node disagree on {s:?}"
    );
}

fn same_duration(s: &str) {
    let node = node_duration_ms(s).ok();
    let client = client_duration(s).ok().map(|d| d.as_millis() as u64);
    // The client refuses zero (a TTL or timeout of nothing); otherwise both agree exactly.
    assert_eq!(
        client,
        node.filter(|&ms| ms > 0),
        "client and node disagree on {s:?}"
    );
}

#[test]
fn listed_sizes_and_durations_parse_alike() {
    for s in SIZES {
        same_size(s);
    }
    for s in DURATIONS {
        same_duration(s);
    }
    // And they are what they say.
    assert_eq!(operator_quantity("1.5Gi"), Some(3 << 29));
    assert_eq!(node_duration_ms("1h30m"), Ok(5_400_000));
}

proptest! {
    #[test]
    fn generated_sizes_parse_alike(s in "[ 0-9.eEkKMGTPiI+-]{0,12}") {
        same_size(&s);
    }

    #[test]
    fn generated_durations_parse_alike(s in "[ 0-9msdhw.+-]{0,12}") {
        same_duration(&s);
    }
}
