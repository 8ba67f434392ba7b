//! Fuzz target `ring_doc`: `RingDoc::from_json` on arbitrary bytes, JSON token soup and valid
//! ring documents with structural and byte-level mutations. Properties: never panics; whatever it
//! accepts validates and round-trips through `to_json_pretty` (and compact JSON); it accepts
//! exactly the documents an independent re-statement of the ring rules accepts.
//!
//! Corpus: `fuzz/corpus/ring_doc/`. Longer run: `RINGCACHE_FUZZ_SECS=30 cargo test -p
//! ringcache-ring --test fuzz` (see fuzz/README.md).

#[path = "../../fuzz/harness.rs"]
mod harness;

use proptest::collection::vec;
use proptest::prelude::*;
use ringcache_ring::{
    HASH_XXH3_64, MAX_INCARNATION_LEN, Member, MemberState, Pending, RingDoc, Table,
};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The property every input must satisfy. Returns whether the input was accepted.
fn check(bytes: &[u8]) -> bool {
    let parsed = RingDoc::from_json(bytes);
    // What serde alone makes of the bytes: the validator must agree with the oracle on it.
    let raw: Option<RingDoc> = serde_json::from_slice(bytes).ok();
    match &parsed {
        Ok(doc) => {
            assert_eq!(doc.validate(), Ok(()), "accepted but does not validate");
            let pretty = doc.to_json_pretty();
            let back = RingDoc::from_json(pretty.as_bytes())
                .unwrap_or_else(|e| panic!("own output refused: {e}\n{pretty}"));
            assert_eq!(&back, doc, "pretty round trip changed the document");
            let compact = serde_json::to_vec(doc).expect("serialize");
            assert_eq!(
                &RingDoc::from_json(&compact).expect("compact output refused"),
                doc,
                "compact round trip changed the document"
            );
            assert_eq!(raw.as_ref(), Some(doc), "from_json differs from serde");
        }
        Err(e) => {
            // Error messages are built from the input: they must render.
            let _ = e.to_string();
        }
    }
    if let Some(raw) = raw {
        assert_eq!(
            parsed.is_ok(),
            oracle_valid(&raw),
            "validator and the ring rules disagree (validator: {:?}) on {raw:?}",
            parsed.as_ref().err()
        );
    }
    parsed.is_ok()
}

/// The ring rules (doc.rs comments, DESIGN.md), stated independently of `RingDoc::validate`.
fn oracle_valid(d: &RingDoc) -> bool {
    let n = d.members.len();
    let ids: HashSet<&str> = d.members.iter().map(|m| m.id.as_str()).collect();
    let members_ok = d.members.iter().all(|m| {
        !m.id.is_empty()
            && (m.state == MemberState::Down || !m.addr.is_empty())
            && m.incarnation.as_ref().is_none_or(|i| {
                (1..=MAX_INCARNATION_LEN).contains(&i.len())
                    && i.chars().all(|c| c.is_ascii() && c.is_ascii_graphic())
            })
    });
    let table_ok = |t: &Table, joining_may_own: bool| {
        t.len() == d.partitions as usize
            && t.iter().all(|owners| {
                let distinct: HashSet<u32> = owners.iter().copied().collect();
                !owners.is_empty()
                    && owners.len() <= d.replication_factor as usize
                    && distinct.len() == owners.len()
                    && owners.iter().all(|&i| {
                        (i as usize) < n
                            && (joining_may_own
                                || d.members[i as usize].state != MemberState::Joining)
                    })
            })
    };
    d.version >= 1
        && d.hash == HASH_XXH3_64
        && d.partitions >= 1
        && d.replication_factor >= 1
        && n >= 1
        && ids.len() == n
        && members_ok
        && d.replication_factor as usize <= n
        && table_ok(&d.table, false)
        && d.pending.as_ref().is_none_or(|p| table_ok(&p.table, true))
}

// ---------------------------------------------------------------------------------------------
// Valid documents.

const STATES: [MemberState; 5] = [
    MemberState::Up,
    MemberState::Down,
    MemberState::Joining,
    MemberState::Recovering,
    MemberState::Leaving,
];

#[derive(Debug, Clone)]
struct Shape {
    version: u32,
    epoch: u64,
    members: Vec<(u8, String, Option<String>)>,
    partitions: u32,
    rf_pick: u32,
    picks: Vec<u32>,
    pending: bool,
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop_oneof![Just(1u32), 1..=3u32, any::<u32>().prop_map(|v| v.max(1))],
        prop_oneof![Just(0u64), any::<u64>()],
        vec(
            (
                0..5u8,
                "[a-z0-9-]{0,6}|\\PC{0,4}",
                proptest::option::of("[!-~]{1,64}"),
            ),
            1..=6,
        ),
        1..=12u32,
        any::<u32>(),
        vec(any::<u32>(), 64),
        any::<bool>(),
    )
        .prop_map(
            |(version, epoch, members, partitions, rf_pick, picks, pending)| Shape {
                version,
                epoch,
                members,
                partitions,
                rf_pick,
                picks,
                pending,
            },
        )
}

fn build(s: &Shape) -> RingDoc {
    let members: Vec<Member> = s
        .members
        .iter()
        .enumerate()
        .map(|(i, (state, suffix, inc))| {
            // Member 0 is never joining, so every table has a possible owner.
            let state = if i == 0 && *state == 2 {
                MemberState::Up
            } else {
                STATES[*state as usize]
            };
            Member {
                // Unique by construction.
                id: format!("m{i}{suffix}"),
                addr: if state == MemberState::Down && suffix.len() % 2 == 0 {
                    String::new()
                } else {
                    format!("10.0.0.{}:7070", i + 1)
                },
                state,
                incarnation: inc.clone(),
            }
        })
        .collect();
    let n = members.len() as u32;
    let rf = 1 + s.rf_pick % n;
    let mut pick = s.picks.iter().cycle().copied();
    let mut table_of = |joining_may_own: bool| -> Table {
        let eligible: Vec<u32> = (0..n)
            .filter(|&i| joining_may_own || members[i as usize].state != MemberState::Joining)
            .collect();
        (0..s.partitions)
            .map(|_| {
                let want = 1 + pick.next().unwrap() as usize % (rf as usize).min(eligible.len());
                let mut pool = eligible.clone();
                let mut owners = Vec::with_capacity(want);
                while owners.len() < want {
                    owners.push(pool.remove(pick.next().unwrap() as usize % pool.len()));
                }
                owners
            })
            .collect()
    };
    let table = table_of(false);
    let pending = s.pending.then(|| Pending {
        table: table_of(true),
    });
    RingDoc {
        version: s.version,
        epoch: s.epoch,
        partitions: s.partitions,
        replication_factor: rf,
        hash: HASH_XXH3_64.to_string(),
        members,
        table,
        pending,
    }
}

// ---------------------------------------------------------------------------------------------
// Structural mutations of the JSON value.

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Idx(usize),
}

fn paths(v: &Value, prefix: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                prefix.push(Seg::Key(k.clone()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                prefix.push(Seg::Idx(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn at<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, seg| match seg {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Idx(i) => &mut v[*i],
    })
}

fn interesting_number(p: u32) -> Value {
    let all: [Value; 14] = [
        0.into(),
        1.into(),
        2.into(),
        3.into(),
        (-1).into(),
        u32::MAX.into(),
        (u64::from(u32::MAX) + 1).into(),
        u64::MAX.into(),
        i64::MIN.into(),
        serde_json::json!(1.5),
        serde_json::json!(1e300),
        serde_json::json!(-0.0),
        64.into(),
        65.into(),
    ];
    all[p as usize % all.len()].clone()
}

fn interesting_string(p: u32) -> Value {
    let all = [
        "",
        "xxh3_64",
        "XXH3_64",
        "up",
        "down",
        "joining",
        "recovering",
        "leaving",
        "Up",
        "a b",
        "m0",
        "m1",
        "\u{0}",
        "\u{feff}up",
        "é",
        "10.0.0.1:7070",
    ];
    Value::String(all[p as usize % all.len()].to_string())
}

fn mutate(v: &mut Value, sel: u32, kind: u8, param: u32) {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    let path = &all[sel as usize % all.len()];
    match kind % 10 {
        0 => *at(v, path) = interesting_number(param),
        1 => *at(v, path) = interesting_string(param),
        2 => {
            *at(v, path) = [
                Value::Null,
                Value::Bool(true),
                serde_json::json!([]),
                serde_json::json!({}),
            ][param as usize % 4]
                .clone()
        }
        3 => {
            // Remove from the parent.
            if let Some((last, parent)) = path.split_last() {
                match (at(v, parent), last) {
                    (Value::Object(m), Seg::Key(k)) => {
                        m.remove(k);
                    }
                    (Value::Array(a), Seg::Idx(i)) => {
                        a.remove(*i);
                    }
                    _ => {}
                }
            }
        }
        4 => match at(v, path) {
            Value::Array(a) => {
                let extra = a
                    .get(param as usize % a.len().max(1))
                    .cloned()
                    .unwrap_or_else(|| interesting_number(param));
                a.push(extra);
            }
            Value::Object(m) => {
                m.insert(format!("x{}", param % 4), interesting_number(param / 4));
            }
            _ => {}
        },
        5 => {
            if let Value::Array(a) = at(v, path) {
                a.truncate(param as usize % (a.len() + 1));
            }
        }
        6 => {
            let target = at(v, path);
            if let Some(n) = target
                .as_i64()
                .map(i128::from)
                .or(target.as_u64().map(i128::from))
            {
                let delta = i128::from(param % 5) - 2;
                let m = n + delta;
                *target = u64::try_from(m)
                    .map(Value::from)
                    .or_else(|_| i64::try_from(m).map(Value::from))
                    .unwrap_or(Value::Null);
            }
        }
        7 => {
            if let Value::String(s) = at(v, path) {
                match param % 3 {
                    0 => s.push(char::from_u32(param / 3 % 0x3000).unwrap_or('x')),
                    1 => {
                        let keep = s.chars().count() * (param as usize % 4) / 4;
                        *s = s.chars().take(keep).collect();
                    }
                    _ => *s = s.repeat(1 + param as usize % 70),
                }
            }
        }
        8 => {
            if let Value::Array(a) = at(v, path)
                && a.len() >= 2
            {
                let i = param as usize % a.len();
                let j = (param as usize / 7) % a.len();
                a.swap(i, j);
            }
        }
        _ => {
            // Copy the value of one path over another (member ids onto each other, a table onto
            // the pending table, …).
            let from = all[param as usize % all.len()].clone();
            let copy = at(v, &from).clone();
            if !from.starts_with(path) {
                *at(v, path) = copy;
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Mutated {
    shape: Shape,
    edits: Vec<(u32, u8, u32)>,
    pretty: bool,
    byte_edits: Vec<(u32, u8, u8)>,
}

fn mutated() -> impl Strategy<Value = Mutated> {
    (
        shape(),
        vec((any::<u32>(), any::<u8>(), any::<u32>()), 0..4),
        any::<bool>(),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => vec((any::<u32>(), 0..3u8, any::<u8>()), 1..3),
        ],
    )
        .prop_map(|(shape, edits, pretty, byte_edits)| Mutated {
            shape,
            edits,
            pretty,
            byte_edits,
        })
}

fn render(m: &Mutated) -> (RingDoc, Vec<u8>) {
    let doc = build(&m.shape);
    let mut v = serde_json::to_value(&doc).expect("serialize");
    for &(sel, kind, param) in &m.edits {
        mutate(&mut v, sel, kind, param);
    }
    let mut bytes = if m.pretty {
        serde_json::to_vec_pretty(&v)
    } else {
        serde_json::to_vec(&v)
    }
    .expect("serialize");
    for &(pos, op, byte) in &m.byte_edits {
        let pos = pos as usize % (bytes.len() + 1);
        match op {
            0 if pos < bytes.len() => bytes[pos] = byte,
            1 => bytes.insert(pos, byte),
            _ => bytes.truncate(pos),
        }
    }
    (doc, bytes)
}

fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    let tokens = [
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"version\"",
        "\"epoch\"",
        "\"partitions\"",
        "\"replicationFactor\"",
        "\"hash\"",
        "\"xxh3_64\"",
        "\"members\"",
        "\"id\"",
        "\"addr\"",
        "\"state\"",
        "\"up\"",
        "\"down\"",
        "\"joining\"",
        "\"incarnation\"",
        "\"table\"",
        "\"pending\"",
        "null",
        "true",
        "0",
        "1",
        "2",
        "-1",
        "4294967296",
        "1e2",
        "\"\"",
        " ",
        "\"\\u0000\"",
        "\"\\ud800\"",
    ];
    vec(proptest::sample::select(tokens.to_vec()), 0..80).prop_map(|t| t.concat().into_bytes())
}

// ---------------------------------------------------------------------------------------------

#[test]
fn ring_doc_corpus() {
    harness::replay("ring_doc", |b| {
        check(b);
    });
}

#[test]
fn ring_doc_arbitrary_bytes() {
    let inputs = prop_oneof![vec(any::<u8>(), 0..512), json_soup()];
    let accepted = AtomicU64::new(0);
    harness::fuzz("ring_doc/bytes", 500_000, inputs, |bytes| {
        if check(&bytes) {
            accepted.fetch_add(1, Relaxed);
        }
        Ok(())
    });
    eprintln!("ring_doc/bytes: {} accepted", accepted.load(Relaxed));
}

#[test]
fn ring_doc_mutated_documents() {
    let accepted = AtomicU64::new(0);
    harness::fuzz("ring_doc/mutated", 30_000, mutated(), |m| {
        let (doc, bytes) = render(&m);
        if m.edits.is_empty() && m.byte_edits.is_empty() {
            // Unmutated: valid by construction, and read back exactly.
            assert_eq!(doc.validate(), Ok(()), "generator made an invalid ring");
            assert_eq!(RingDoc::from_json(&bytes).as_ref(), Ok(&doc));
        }
        if check(&bytes) {
            accepted.fetch_add(1, Relaxed);
        }
        Ok(())
    });
    eprintln!("ring_doc/mutated: {} accepted", accepted.load(Relaxed));
}
