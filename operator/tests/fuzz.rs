//! Fuzz targets of the operator's spec checks (`ringcache_operator::validate`):
//!
//! - `operator_quantity`: `parse_quantity` on arbitrary strings and on `<n><suffix>`. Never
//!   panics; integers with a k..E or Ki..Ei suffix give the exact product (`None` on overflow),
//!   and beyond that grammar only decimal fractions and exponents are accepted (their exact
//!   values are checked by the node's `node_size` target: both use the same parser).
//! - `operator_spec`: `validate` on CacheCluster specs deserialized from generated JSON (random
//!   replicas, replicationFactor, partitions, quantities, persistence). Never panics; accepts
//!   exactly the specs the rules allow, and the numbers it returns are the spec's.
//!
//! Corpus: `fuzz/corpus/operator_quantity/`, `fuzz/corpus/operator_spec/`. Longer run:
//! `RINGCACHE_FUZZ_SECS=30 cargo test -p ringcache-operator --test fuzz` (see fuzz/README.md).

#[path = "../../fuzz/harness.rs"]
mod harness;

use proptest::collection::vec;
use proptest::prelude::*;
use ringcache_operator::types::CacheClusterSpec;
use ringcache_operator::validate::{parse_quantity, validate};
use serde_json::{Map, Value};

// ---------------------------------------------------------------------------------------------
// operator_quantity

/// The grammar, stated independently: trimmed, ASCII digits, then one of the suffixes.
fn exact_quantity(s: &str) -> Option<u64> {
    let t = s.trim();
    let end = t
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(t.len());
    let (digits, suffix) = t.split_at(end);
    if digits.is_empty() {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > 20 {
        return None;
    }
    let n: u128 = if significant.is_empty() {
        0
    } else {
        significant.parse().ok()?
    };
    let (base, exp): (u128, u32) = match suffix {
        "" => (1, 0),
        "k" => (1000, 1),
        "M" => (1000, 2),
        "G" => (1000, 3),
        "T" => (1000, 4),
        "P" => (1000, 5),
        "E" => (1000, 6),
        "Ki" => (1024, 1),
        "Mi" => (1024, 2),
        "Gi" => (1024, 3),
        "Ti" => (1024, 4),
        "Pi" => (1024, 5),
        "Ei" => (1024, 6),
        _ => return None,
    };
    u64::try_from(n.checked_mul(base.pow(exp))?).ok()
}

fn check_quantity(s: &str) {
    let got = parse_quantity(s);
    match exact_quantity(s) {
        Some(exact) => assert_eq!(got, Some(exact), "parse_quantity({s:?})"),
        None if got.is_some() => {
            // Accepted outside the integer grammar: a fraction, an exponent, or an integer
            // whose product the oracle could not represent.
            let t = s.trim();
            let number_end = t
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(t.len());
            let suffix = &t[number_end..];
            let exponent = suffix.len() > 1 && suffix.starts_with(['e', 'E']);
            let long_int = !t.contains('.') && number_end > 20;
            assert!(
                t.contains('.') || exponent || long_int,
                "parse_quantity({s:?}) = {got:?} outside the quantity grammar"
            );
        }
        None => {}
    }
}

const SUFFIXES: [&str; 13] = [
    "", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
];

fn quantity_string() -> impl Strategy<Value = String> {
    let n = prop_oneof![
        0..5000u64,
        Just(u64::MAX),
        Just(u64::MAX / 1000),
        Just(u64::MAX / 1024),
        Just(15),
        Just(16),
        Just(18_446_744_073_709_551),
        any::<u64>(),
    ];
    let suffix = prop_oneof![
        6 => proptest::sample::select(SUFFIXES.to_vec()),
        1 => proptest::sample::select(vec!["m", "Kb", "i", "e3", "E3", ".5", "ki", " Mi", "Mi "]),
    ];
    let pad = proptest::sample::select(vec!["", " ", "\t", "00", "+", "-"]);
    (n, suffix, pad).prop_map(|(n, s, p)| match p {
        "00" | "+" | "-" => format!("{p}{n}{s}"),
        p => format!("{p}{n}{s}{p}"),
    })
}

#[test]
fn operator_quantity_corpus() {
    harness::replay("operator_quantity", |b| {
        check_quantity(&String::from_utf8_lossy(b))
    });
}

#[test]
fn operator_quantity_strings() {
    let inputs = prop_oneof![
        3 => quantity_string(),
        1 => "[ 0-9.eEkKMGTPiIm+-]{0,24}",
        1 => "\\PC{0,12}",
        1 => any::<String>(),
    ];
    harness::fuzz("operator_quantity", 400_000, inputs, |s| {
        check_quantity(&s);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// operator_spec

/// `validate`'s rules, restated: Ok exactly when they all hold.
fn check_spec_json(v: &Value, ring_partitions: Option<u32>) {
    let Ok(spec) = serde_json::from_value::<CacheClusterSpec>(v.clone()) else {
        return;
    };
    let got = validate(&spec, ring_partitions);
    let rf = spec.effective_replication_factor();
    let mem = parse_quantity(&spec.max_memory.0).filter(|&b| b > 0);
    let val = parse_quantity(&spec.max_value_size.0).filter(|&b| b > 0);
    let persistence = spec.persistence.as_ref().is_some_and(|p| p.enabled);
    let volume_ok = spec
        .persistence
        .as_ref()
        .is_none_or(|p| !p.enabled || parse_quantity(&p.size.0).is_some_and(|b| b > 0));
    let valid = spec.replicas >= 1
        && rf >= 1
        && rf <= spec.replicas
        && (1..=65536).contains(&spec.partitions)
        && ring_partitions.is_none_or(|r| i64::from(r) == i64::from(spec.partitions))
        && mem.is_some()
        && val.is_some()
        && volume_ok;
    match got {
        Ok(ok) => {
            assert!(valid, "accepted a spec the rules refuse: {v}");
            assert_eq!(i64::from(ok.replicas), i64::from(spec.replicas));
            assert_eq!(i64::from(ok.replication_factor), i64::from(rf));
            assert_eq!(i64::from(ok.partitions), i64::from(spec.partitions));
            assert_eq!(Some(ok.max_memory_bytes), mem);
            assert_eq!(Some(ok.max_value_size_bytes), val);
            assert_eq!(ok.persistence, persistence);
        }
        Err(e) => {
            assert!(!valid, "refused a valid spec ({e}): {v}");
            assert!(!e.to_string().is_empty());
        }
    }
}

fn int_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (-2..10i64).prop_map(Value::from),
        1 => proptest::sample::select(vec![
            64i64, 1024, 65535, 65536, 65537, 1000, 1001,
            i64::from(i32::MAX), i64::from(i32::MIN), 1i64 << 31, -(1i64 << 31) - 1,
        ]).prop_map(Value::from),
        1 => any::<i32>().prop_map(Value::from),
        1 => proptest::sample::select(vec![
            Value::Null, serde_json::json!(1.5), serde_json::json!("3"), serde_json::json!(true),
        ]),
    ]
}

fn quantity_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => quantity_string().prop_map(Value::String),
        1 => proptest::sample::select(vec!["0", "0Mi", "", "1.5Gi", "100m", "256Mi", "1"])
            .prop_map(|s| Value::String(s.into())),
        1 => int_value(),
    ]
}

fn spec_json() -> impl Strategy<Value = (Value, Option<u32>)> {
    let field = |name: &'static str, value: BoxedStrategy<Value>| {
        proptest::option::weighted(0.7, value).prop_map(move |v| (name, v))
    };
    let persistence = (
        proptest::option::of(prop_oneof![
            4 => any::<bool>().prop_map(Value::Bool),
            1 => Just(Value::Null),
            1 => Just(serde_json::json!("yes")),
        ]),
        proptest::option::of(quantity_value()),
    )
        .prop_map(|(enabled, size)| {
            let mut o = Map::new();
            if let Some(e) = enabled {
                o.insert("enabled".into(), e);
            }
            if let Some(s) = size {
                o.insert("size".into(), s);
            }
            Value::Object(o)
        });
    (
        vec(
            prop_oneof![
                field("replicas", int_value().boxed()),
                field("replicationFactor", int_value().boxed()),
                field("partitions", int_value().boxed()),
                field("maxMemory", quantity_value().boxed()),
                field("maxValueSize", quantity_value().boxed()),
                field("persistence", persistence.boxed()),
                field(
                    "writeConsistency",
                    proptest::sample::select(vec!["one", "quorum", "all", "most"])
                        .prop_map(|s| Value::String(s.into()))
                        .boxed()
                ),
            ],
            0..8,
        ),
        proptest::option::of(prop_oneof![
            Just(1024u32),
            Just(64),
            1..70_000u32,
            any::<u32>()
        ]),
    )
        .prop_map(|(fields, ring)| {
            let mut o = Map::new();
            for (name, v) in fields {
                if let Some(v) = v {
                    o.insert(name.to_string(), v);
                }
            }
            (Value::Object(o), ring)
        })
}

#[test]
fn operator_spec_corpus() {
    // Each file is a spec (JSON); replayed without a ring and against a 1024-partition ring.
    harness::replay("operator_spec", |b| {
        if let Ok(v) = serde_json::from_slice::<Value>(b) {
            check_spec_json(&v, None);
            check_spec_json(&v, Some(1024));
        }
    });
}

#[test]
fn operator_spec_documents() {
    let accepted = std::sync::atomic::AtomicU64::new(0);
    harness::fuzz("operator_spec", 200_000, spec_json(), |(v, ring)| {
        check_spec_json(&v, ring);
        if serde_json::from_value::<CacheClusterSpec>(v.clone())
            .is_ok_and(|s| validate(&s, ring).is_ok())
        {
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    eprintln!("operator_spec: {accepted:?} specs valid");
}
