//! Fuzz targets of the node's input parsers (see fuzz/README.md):
//!
//! - `wire_stream`, `wire_keys`, `wire_results`: the binary decoders of `wire`;
//! - `batch_body`: `POST /v1/batch` bodies through the real router, in process;
//! - `key_path`: `GET/PUT/DELETE /v1/keys/{percent-encoded bytes}` through the router;
//! - `node_size`, `node_duration`: `quantity::parse_size` and `quantity::parse_duration_ms`.
//! - `resp_frames`: the Redis protocol front, one connection over an in-memory pipe, on hostile
//!   bytes and (`resp_frames/model`) on pipelines of valid commands checked against a model.
//!
//! Each replays `fuzz/corpus/<target>/` and then runs proptest for a bounded time. Longer run:
//! `RINGCACHE_FUZZ_SECS=30 cargo test -p ringcache-node --test fuzz`.

#[path = "../../fuzz/harness.rs"]
mod harness;
mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;
use ringcache_node::clock::ManualClock;
use ringcache_node::config::NodeConfig;
use ringcache_node::engine::Record;
use ringcache_node::http::{BatchResponse, check_ttl, router};
use ringcache_node::node::SharedNode;
use ringcache_node::quantity::{parse_duration_ms, parse_size};
use ringcache_node::server::build_state;
use ringcache_node::wire::{
    Decoder, KeyResult, MAX_FRAME, MAX_KEYS, WireError, decode_all, decode_keys, decode_results,
    encode_all, encode_record, encode_trailer, put_key, put_result,
};
use ringcache_ring::MAX_KEY_LEN;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

// =============================================================================================
// Wire: record streams.

/// Decodes `bytes` fed in chunks of the given sizes (cycled; 0 = an empty chunk), taking records
/// out after every chunk, the way a node reads a partition pull.
fn stream_decode(bytes: &[u8], splits: &[usize], max: usize) -> Result<Vec<Record>, WireError> {
    let mut d = Decoder::with_max_value(max);
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = splits.iter().copied().cycle();
    // Empty chunks are fed too, but something must advance.
    let whole = splits.iter().all(|&n| n == 0);
    loop {
        let n = if whole {
            rest.len()
        } else {
            sizes.next().unwrap().min(rest.len())
        };
        let (chunk, tail) = rest.split_at(n);
        d.feed(chunk)?;
        while let Some(r) = d.next_record()? {
            out.push(r);
        }
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    let count = d.finish()?;
    assert_eq!(count, out.len() as u64, "finish() count differs");
    Ok(out)
}

/// Properties of any byte string as a record stream under a value bound of `max` bytes.
/// Returns whether it was accepted.
fn check_stream(bytes: &[u8], splits: &[usize], max: usize) -> bool {
    let whole = decode_all(bytes, max);
    let chunked = stream_decode(bytes, splits, max);
    assert_eq!(whole, chunked, "decode_all and chunked decoding disagree");
    let bytewise = stream_decode(bytes, &[1], max);
    assert_eq!(
        whole, bytewise,
        "decode_all and byte-by-byte decoding disagree"
    );
    let Ok(records) = whole else { return false };
    for r in &records {
        assert!(
            (1..=MAX_KEY_LEN).contains(&r.key.len()),
            "accepted key of {} bytes",
            r.key.len()
        );
        let len = r.value.as_ref().map_or(0, Bytes::len);
        assert!(len <= max, "accepted a value of {len} bytes, bound {max}");
    }
    // Accepted = canonical: it re-encodes to the same bytes (so a corrupted stream that decodes
    // is a different valid stream, never a silent reinterpretation) ...
    assert_eq!(
        &encode_all(&records)[..],
        bytes,
        "accepted stream does not re-encode"
    );
    // ... and no proper prefix of it is a stream (truncation is always detected).
    for cut in 0..bytes.len() {
        assert!(
            decode_all(&bytes[..cut], max).is_err(),
            "prefix of {cut} of {} bytes accepted",
            bytes.len()
        );
    }
    true
}

fn record() -> impl Strategy<Value = Record> {
    (
        prop_oneof![
            4 => vec(any::<u8>(), 1..=16),
            1 => vec(any::<u8>(), 1..=MAX_KEY_LEN),
            1 => Just(vec![b'k'; MAX_KEY_LEN]),
        ],
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
        proptest::option::of(vec(any::<u8>(), 0..48)),
    )
        .prop_map(|(key, version, expires_at, value)| Record {
            key: Bytes::from(key),
            version,
            expires_at,
            value: value.map(Bytes::from),
            kind: ringcache_node::engine::Kind::String,
        })
}

/// The decoder's value bound: the frame maximum or a node's small `--max-value-size`.
fn value_bound() -> impl Strategy<Value = usize> {
    prop_oneof![Just(MAX_FRAME), 0..64usize]
}

fn splits() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(Vec::new()),
        Just(vec![1]),
        vec(0usize..40, 1..8),
        vec(
            prop_oneof![Just(0usize), 1usize..4, 11usize..14, 20usize..30],
            1..8
        ),
    ]
}

#[test]
fn wire_stream_corpus() {
    harness::replay("wire_stream", |b| {
        check_stream(b, &[3, 0, 7], MAX_FRAME);
        check_stream(b, &[5], 4);
    });
}

#[test]
fn wire_stream_roundtrip_truncation_corruption() {
    let inputs = (
        vec(record(), 0..6),
        splits(),
        vec((any::<usize>(), 1..=255u8), 1..4),
        value_bound(),
    );
    harness::fuzz(
        "wire_stream/valid",
        18_000,
        inputs,
        |(records, splits, flips, max)| {
            let enc = encode_all(&records);
            // encode_record + encode_trailer is the same stream.
            let mut manual = BytesMut::new();
            for r in &records {
                encode_record(&mut manual, r);
            }
            encode_trailer(&mut manual, records.len() as u64);
            prop_assert_eq!(&manual[..], &enc[..]);
            prop_assert_eq!(decode_all(&enc, MAX_FRAME), Ok(records.clone()));
            prop_assert_eq!(stream_decode(&enc, &splits, MAX_FRAME), Ok(records.clone()));
            prop_assert!(check_stream(&enc, &splits, MAX_FRAME));
            // Under a smaller bound: accepted exactly when every value fits.
            let fits = records
                .iter()
                .all(|r| r.value.as_ref().map_or(0, Bytes::len) <= max);
            match decode_all(&enc, max) {
                Ok(got) => prop_assert!(fits && got == records),
                Err(e) => prop_assert!(
                    !fits && matches!(e, WireError::ValueTooLarge { .. }),
                    "{e:?}"
                ),
            }
            check_stream(&enc, &splits, max);
            // Corruption: one byte, then a few bytes, changed.
            let mut bad = enc.to_vec();
            for (i, &(pos, xor)) in flips.iter().enumerate() {
                let pos = pos % bad.len();
                bad[pos] ^= xor;
                if i == 0 {
                    check_stream(&bad, &splits, MAX_FRAME);
                }
            }
            check_stream(&bad, &splits, max);
            Ok(())
        },
    );
}

/// Streams built from frames with hostile fields, not from valid records.
fn hostile_stream() -> impl Strategy<Value = Vec<u8>> {
    let frame = (
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(250),
            Just(251),
            Just(u32::MAX),
            0..300u32
        ],
        0..3usize,
        prop_oneof![Just(0u8), Just(1), Just(2), any::<u8>()],
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(MAX_FRAME as u32),
            Just(MAX_FRAME as u32 + 1),
            Just(u32::MAX),
            0..64u32
        ],
        0..80usize,
        any::<u64>(),
    );
    (
        vec(frame, 0..5),
        any::<bool>(),
        prop_oneof![Just(0u64), 0..6u64, any::<u64>()],
    )
        .prop_map(|(frames, trailer, count)| {
            let mut out = BytesMut::new();
            for (key_len, key_fill, kind, value_len, value_fill, word) in frames {
                out.put_u32_le(key_len);
                // About as many key bytes as key_len says: one fewer, exact or one more.
                let key_bytes = ((key_len as usize).min(260) + key_fill).saturating_sub(1);
                out.put_slice(&vec![b'k'; key_bytes]);
                out.put_u64_le(word);
                out.put_u64_le(word.rotate_left(7));
                out.put_u8(kind);
                out.put_u32_le(value_len);
                out.put_slice(&vec![b'v'; value_fill.min(value_len as usize)]);
            }
            if trailer {
                encode_trailer(&mut out, count);
            }
            out.to_vec()
        })
}

#[test]
fn wire_stream_arbitrary_bytes() {
    let inputs = (
        prop_oneof![vec(any::<u8>(), 0..200), hostile_stream()],
        splits(),
        value_bound(),
    );
    harness::fuzz(
        "wire_stream/bytes",
        300_000,
        inputs,
        |(bytes, splits, max)| {
            check_stream(&bytes, &splits, max);
            Ok(())
        },
    );
}

// =============================================================================================
// Wire: multi-get keys and answers.

fn encode_keys(keys: &[&[u8]]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u32_le(keys.len() as u32);
    for k in keys {
        put_key(&mut b, k);
    }
    b.to_vec()
}

fn check_keys(bytes: &[u8]) -> bool {
    let Ok(keys) = decode_keys(bytes) else {
        return false;
    };
    assert!(keys.len() <= MAX_KEYS);
    for k in &keys {
        assert!(
            (1..=MAX_KEY_LEN).contains(&k.len()),
            "key of {} bytes",
            k.len()
        );
    }
    assert_eq!(encode_keys(&keys), bytes, "accepted keys do not re-encode");
    for cut in 0..bytes.len() {
        assert!(decode_keys(&bytes[..cut]).is_err(), "prefix {cut} accepted");
    }
    true
}

fn encode_results(results: &[KeyResult]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u32_le(results.len() as u32);
    for r in results {
        match r {
            KeyResult::Found(v) => put_result(&mut b, Some(v), true),
            KeyResult::Missing => put_result(&mut b, None, true),
            KeyResult::NotServed => put_result(&mut b, None, false),
        }
    }
    b.to_vec()
}

fn check_results(bytes: &[u8]) -> bool {
    let body = Bytes::copy_from_slice(bytes);
    let Ok(results) = decode_results(&body) else {
        return false;
    };
    assert!(results.len() <= MAX_KEYS);
    assert_eq!(
        encode_results(&results),
        bytes,
        "accepted answers do not re-encode"
    );
    for cut in 0..bytes.len() {
        assert!(
            decode_results(&body.slice(..cut)).is_err(),
            "prefix {cut} accepted"
        );
    }
    true
}

fn key_result() -> impl Strategy<Value = KeyResult> {
    prop_oneof![
        vec(any::<u8>(), 0..40).prop_map(|v| KeyResult::Found(Bytes::from(v))),
        Just(KeyResult::Missing),
        Just(KeyResult::NotServed),
    ]
}

fn small_count_prefix() -> impl Strategy<Value = Vec<u8>> {
    // A plausible count followed by arbitrary bytes: gets past the count check.
    (
        prop_oneof![
            0..6u32,
            Just(MAX_KEYS as u32),
            Just(MAX_KEYS as u32 + 1),
            any::<u32>()
        ],
        vec(any::<u8>(), 0..120),
    )
        .prop_map(|(n, rest)| {
            let mut b = n.to_le_bytes().to_vec();
            b.extend(rest);
            b
        })
}

#[test]
fn wire_keys_corpus() {
    harness::replay("wire_keys", |b| {
        check_keys(b);
    });
}

#[test]
fn wire_results_corpus() {
    harness::replay("wire_results", |b| {
        check_results(b);
    });
}

#[test]
fn wire_multi_get_bodies() {
    let inputs = (
        vec(vec(any::<u8>(), 1..=MAX_KEY_LEN), 0..6),
        vec(key_result(), 0..6),
        prop_oneof![vec(any::<u8>(), 0..64), small_count_prefix()],
        (any::<usize>(), 1..=255u8),
    );
    harness::fuzz(
        "wire_keys+wire_results",
        100_000,
        inputs,
        |(keys, results, junk, (pos, xor))| {
            let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let kb = encode_keys(&key_refs);
            prop_assert_eq!(decode_keys(&kb), Ok(key_refs.clone()));
            prop_assert!(check_keys(&kb));
            let mut bad = kb.clone();
            let i = pos % bad.len();
            bad[i] ^= xor;
            check_keys(&bad);

            let rb = encode_results(&results);
            prop_assert_eq!(
                decode_results(&Bytes::from(rb.clone())),
                Ok(results.clone())
            );
            prop_assert!(check_results(&rb));
            let mut bad = rb.clone();
            let i = pos % bad.len();
            bad[i] ^= xor;
            check_results(&bad);

            check_keys(&junk);
            check_results(&junk);
            Ok(())
        },
    );
}

// =============================================================================================
// HTTP: an in-process node (one member, owns everything), driven through its real router.

const T0: u64 = 1_700_000_000_000;
/// Small, so that 413 is reachable by the generated values.
const MAX_VALUE: u64 = 64;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh node (must run inside a runtime: the replicator spawns its worker).
fn node() -> (SharedNode, Router) {
    let mut cfg = NodeConfig::for_listen("127.0.0.1:7070".parse().unwrap());
    cfg.partitions = 16;
    cfg.max_value_size = MAX_VALUE;
    let state = build_state(&cfg, Arc::new(ManualClock::new(T0))).expect("state");
    let r = router(state.clone());
    (state, r)
}

/// A node and the runtime it lives on, shared by the cases of one test.
struct InProcess {
    rt: tokio::runtime::Runtime,
    state: SharedNode,
    app: Router,
}

impl InProcess {
    fn new() -> InProcess {
        let rt = runtime();
        let (state, app) = rt.block_on(async { node() });
        InProcess { rt, state, app }
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .unwrap_or_else(|e| panic!("test built a bad request {method} {uri}: {e}"));
    support::oneshot(app.clone(), req).await
}

/// An error answer: a JSON object with string `error` and `code`. Returns the code.
fn json_error(what: &str, status: StatusCode, body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{what}: {status} with a body that is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    let code = v["code"].as_str();
    assert!(
        v["error"].is_string() && code.is_some(),
        "{what}: {status} without {{error, code}}: {v}"
    );
    code.unwrap().to_string()
}

// --- base64 (the batch API's `valueBase64`), written here so the test does not trust the
// node's own codec: standard alphabet, padded, canonical.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.len();
        let w = u32::from(chunk[0]) << 16
            | u32::from(*chunk.get(1).unwrap_or(&0)) << 8
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                out.push(B64[(w >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::new();
    for (ci, chunk) in b.chunks(4).enumerate() {
        let last = ci == b.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut w = 0u32;
        for &c in &chunk[..4 - pad] {
            let v = B64.iter().position(|&x| x == c)? as u32;
            w = w << 6 | v;
        }
        w <<= 6 * pad as u32;
        let bytes = [(w >> 16) as u8, (w >> 8) as u8, w as u8];
        // Canonical: the bits below the last encoded byte must be zero.
        let keep = 3 - pad;
        if pad > 0 && w & ((1 << (8 * pad)) - 1) != 0 {
            return None;
        }
        out.extend_from_slice(&bytes[..keep]);
    }
    Some(out)
}

// --- batch: the envelope every body must get.

/// `POST /v1/batch` answers 200 with one well-formed result per op, or a 4xx JSON error; never
/// a 5xx. Returns the results of a 200.
fn check_batch_answer(body_in: &[u8], status: StatusCode, body: &[u8]) -> Option<BatchResponse> {
    if status != StatusCode::OK {
        assert!(
            status.is_client_error(),
            "batch answered {status} to {:?}",
            String::from_utf8_lossy(body_in)
        );
        json_error("batch", status, body);
        return None;
    }
    let resp: BatchResponse = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("batch 200 body is not a BatchResponse ({e})"));
    if let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body_in)
        && let Some(Value::Array(ops)) = req.get("ops")
    {
        assert_eq!(resp.results.len(), ops.len(), "one result per op");
    }
    for r in &resp.results {
        match r.status {
            200 => assert!(
                r.value.is_some() != r.value_base64.is_some() && r.error.is_none(),
                "found get without exactly one of value/valueBase64: {r:?}"
            ),
            204 => assert!(
                r.value.is_none() && r.value_base64.is_none() && r.error.is_none(),
                "{r:?}"
            ),
            400 | 404 | 413 | 503 => assert!(
                r.error.is_some() && r.code.is_some(),
                "error result without error/code: {r:?}"
            ),
            other => panic!("op result status {other}: {r:?}"),
        }
    }
    Some(resp)
}

fn post_batch(n: &InProcess, body: &[u8]) -> Option<BatchResponse> {
    n.rt.block_on(async {
        let (st, out) = call(&n.app, "POST", "/v1/batch", body.to_vec()).await;
        check_batch_answer(body, st, &out)
    })
}

/// Random JSON in the neighbourhood of a batch request.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(serde_json::json!(1.5)),
        "\\PC{0,12}".prop_map(Value::String),
        proptest::sample::select(vec![
            "get", "set", "del", "GET", "delete", "", "30s", "0s", "AAEC", "==", "a", "k/ey",
        ])
        .prop_map(|s| Value::String(s.into())),
    ]
}

fn json_op() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("op"),
        Just("key"),
        Just("value"),
        Just("valueBase64"),
        Just("ttl"),
        Just("extra"),
    ];
    vec((field, json_leaf()), 0..6).prop_map(|fields| {
        Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    })
}

fn near_batch() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            4 => vec(json_op(), 0..6).prop_map(|ops| serde_json::json!({ "ops": ops })),
            4 => vec(model_op(), 0..8).prop_map(|ops| {
                serde_json::json!({ "ops": ops.iter().map(op_json).collect::<Vec<_>>() })
            }),
            1 => vec(prop_oneof![4 => model_op().prop_map(|o| op_json(&o)), 1 => json_op()], 0..6)
                .prop_map(|ops| serde_json::json!({ "ops": ops })),
            1 => json_leaf().prop_map(|v| serde_json::json!({ "ops": v })),
            1 => json_leaf(),
            1 => vec(json_op(), 0..3).prop_map(|ops| serde_json::json!({ "ops": ops, "more": 1 })),
        ],
        prop_oneof![
            4 => Just(None),
            1 => (any::<usize>(), any::<u8>()).prop_map(Some),
        ],
    )
        .prop_map(|(v, edit)| {
            let mut b = serde_json::to_vec(&v).unwrap();
            if let Some((pos, byte)) = edit {
                let pos = pos % (b.len() + 1);
                if byte % 2 == 0 {
                    b.truncate(pos);
                } else {
                    b.insert(pos, byte);
                }
            }
            b
        })
}

#[test]
fn batch_body_corpus() {
    let n = InProcess::new();
    harness::replay("batch_body", |b| {
        post_batch(&n, b);
    });
}

#[test]
fn batch_body_arbitrary() {
    // One node for all cases: the envelope does not depend on what earlier bodies stored.
    let n = InProcess::new();
    let inputs = prop_oneof![vec(any::<u8>(), 0..128), near_batch()];
    let answered = std::sync::atomic::AtomicU64::new(0);
    harness::fuzz("batch_body/bytes", 90_000, inputs, |body| {
        if post_batch(&n, &body).is_some() {
            answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    eprintln!("batch_body/bytes: {answered:?} bodies answered 200");
}

// --- batch: semantics against a model.

#[derive(Debug, Clone)]
enum ModelValue {
    Text(String),
    Base64(String),
    Both(String, String),
    Neither,
}

#[derive(Debug, Clone)]
enum ModelOp {
    Get(String),
    Set(String, ModelValue, Option<String>),
    Del(String),
}

fn model_key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop_oneof![Just("a"), Just("b"), Just("user:1"), Just("ключ"), Just("k/ey")]
            .prop_map(String::from),
        2 => "\\PC{1,6}",
        1 => Just(String::new()),
        1 => Just("x".repeat(MAX_KEY_LEN)),
        1 => Just("é".repeat(MAX_KEY_LEN / 2 + 1)),
    ]
}

fn model_value() -> impl Strategy<Value = ModelValue> {
    let text = prop_oneof!["\\PC{0,10}", Just("v".repeat(MAX_VALUE as usize + 1))];
    let bytes = prop_oneof![
        vec(any::<u8>(), 0..12),
        Just(vec![0xff; MAX_VALUE as usize]),
        Just(vec![0; MAX_VALUE as usize + 1]),
    ];
    prop_oneof![
        4 => text.clone().prop_map(ModelValue::Text),
        4 => bytes.prop_map(|b| ModelValue::Base64(b64_encode(&b))),
        1 => "[A-Za-z0-9+/=]{0,9}".prop_map(ModelValue::Base64),
        1 => (text, "[A-Za-z0-9+/=]{0,8}").prop_map(|(a, b)| ModelValue::Both(a, b)),
        1 => Just(ModelValue::Neither),
    ]
}

fn model_ttl() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(None),
        2 => prop_oneof![Just("30s"), Just("1ms"), Just("1d"), Just("3650d"), Just("3651d")]
            .prop_map(|s| Some(s.to_string())),
        1 => "[0-9]{0,21}(ms|s|m|h|d|w)?".prop_map(Some),
    ]
}

fn model_op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        model_key().prop_map(ModelOp::Get),
        (model_key(), model_value(), model_ttl()).prop_map(|(k, v, t)| ModelOp::Set(k, v, t)),
        model_key().prop_map(ModelOp::Del),
    ]
}

fn op_json(op: &ModelOp) -> Value {
    match op {
        ModelOp::Get(k) => serde_json::json!({"op": "get", "key": k}),
        ModelOp::Del(k) => serde_json::json!({"op": "del", "key": k}),
        ModelOp::Set(k, v, ttl) => {
            let mut o = serde_json::json!({"op": "set", "key": k});
            match v {
                ModelValue::Text(t) => o["value"] = t.clone().into(),
                ModelValue::Base64(b) => o["valueBase64"] = b.clone().into(),
                ModelValue::Both(t, b) => {
                    o["value"] = t.clone().into();
                    o["valueBase64"] = b.clone().into();
                }
                ModelValue::Neither => {}
            }
            if let Some(t) = ttl {
                o["ttl"] = t.clone().into();
            }
            o
        }
    }
}

fn key_ok(k: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&k.len())
}

/// Expected (status, stored bytes for a found get) of one op, updating the model.
fn model_step(model: &mut HashMap<Vec<u8>, Vec<u8>>, op: &ModelOp) -> (u16, Option<Vec<u8>>) {
    match op {
        ModelOp::Get(k) if !key_ok(k) => (400, None),
        ModelOp::Get(k) => match model.get(k.as_bytes()) {
            Some(v) => (200, Some(v.clone())),
            None => (404, None),
        },
        ModelOp::Del(k) if !key_ok(k) => (400, None),
        ModelOp::Del(k) => {
            model.remove(k.as_bytes());
            (204, None)
        }
        ModelOp::Set(k, v, ttl) => {
            if !key_ok(k) {
                return (400, None);
            }
            if ttl.as_deref().is_some_and(|t| check_ttl(t).is_err()) {
                return (400, None);
            }
            let bytes = match v {
                ModelValue::Text(t) => t.as_bytes().to_vec(),
                ModelValue::Base64(b) => match b64_decode(b) {
                    Some(d) => d,
                    None => return (400, None),
                },
                ModelValue::Both(..) | ModelValue::Neither => return (400, None),
            };
            if bytes.len() as u64 > MAX_VALUE {
                return (413, None);
            }
            model.insert(k.as_bytes().to_vec(), bytes);
            (204, None)
        }
    }
}

#[test]
fn batch_semantics_against_a_model() {
    let rt = runtime();
    let inputs = vec(vec(model_op(), 1..12), 1..4);
    harness::fuzz("batch_body/model", 800, inputs, |batches| {
        rt.block_on(async {
            let (state, app) = node();
            let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            for ops in &batches {
                let body = serde_json::json!({
                    "ops": ops.iter().map(op_json).collect::<Vec<_>>()
                })
                .to_string();
                let (st, out) = call(&app, "POST", "/v1/batch", body.clone().into_bytes()).await;
                let resp = check_batch_answer(body.as_bytes(), st, &out).unwrap_or_else(|| {
                    panic!("batch refused: {st} {}", String::from_utf8_lossy(&out))
                });
                for (op, r) in ops.iter().zip(&resp.results) {
                    let (want, value) = model_step(&mut model, op);
                    assert_eq!(r.status, want, "{op:?} gave {r:?}");
                    if let Some(v) = value {
                        let got = match (&r.value, &r.value_base64) {
                            (Some(t), None) => t.as_bytes().to_vec(),
                            (None, Some(b)) => {
                                assert!(
                                    std::str::from_utf8(&v).is_err(),
                                    "UTF-8 value sent as base64: {r:?}"
                                );
                                b64_decode(b).expect("node's base64 is canonical")
                            }
                            _ => unreachable!("checked by check_batch_answer"),
                        };
                        assert_eq!(got, v, "{op:?}");
                    }
                }
            }
            // The engine holds exactly the model (gets through the key route agree too).
            for (k, v) in &model {
                assert_eq!(state.engine.get(k, T0).as_deref(), Some(&v[..]));
                let uri = format!("/v1/keys/{}", percent_encode(k, &[], false));
                let (st, body) = call(&app, "GET", &uri, Vec::new()).await;
                assert_eq!((st, &body), (StatusCode::OK, v));
            }
            assert_eq!(state.engine.stats().items, model.len() as u64);
        });
        Ok(())
    });
}

// =============================================================================================
// HTTP: key paths.

/// Percent-encodes `bytes` for a path segment: bytes outside the unreserved set and the
/// sub-delimiters always as `%XX`; those inside literally unless `force[i]`.
fn percent_encode(bytes: &[u8], force: &[bool], lower_hex: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, &b) in bytes.iter().enumerate() {
        let literal_ok = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
        if literal_ok && !force.get(i).copied().unwrap_or(false) {
            out.push(b as char);
        } else if lower_hex {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone)]
struct KeyCase {
    key: Vec<u8>,
    put_force: Vec<bool>,
    get_force: Vec<bool>,
    lower_hex: bool,
    value: Vec<u8>,
    ttl: Option<String>,
}

fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "\\PC{1,12}".prop_map(String::into_bytes),
        2 => vec(any::<u8>(), 0..16),
        1 => vec(prop_oneof![Just(b'/'), Just(b'%'), Just(b'?'), Just(b'#'), Just(b'.'), Just(b' '), Just(0u8)], 1..6),
        1 => (MAX_KEY_LEN - 2..=MAX_KEY_LEN + 2).prop_map(|n| vec![b'k'; n]),
        1 => Just(Vec::new()),
    ]
}

fn key_case() -> impl Strategy<Value = KeyCase> {
    (
        key_bytes(),
        vec(any::<bool>(), 0..16),
        vec(any::<bool>(), 0..16),
        any::<bool>(),
        prop_oneof![
            vec(any::<u8>(), 0..8),
            vec(any::<u8>(), MAX_VALUE as usize..=MAX_VALUE as usize + 1)
        ],
        prop_oneof![
            4 => Just(None),
            1 => "[0-9a-z]{0,5}".prop_map(Some),
        ],
    )
        .prop_map(
            |(key, put_force, get_force, lower_hex, value, ttl)| KeyCase {
                key,
                put_force,
                get_force,
                lower_hex,
                value,
                ttl,
            },
        )
}

/// The statuses a key route may answer at all, errors with a JSON body.
fn check_key_answer(what: &str, st: StatusCode, body: &[u8], ok: &[u16]) {
    assert!(
        ok.contains(&st.as_u16()) || [400, 404, 413, 503].contains(&st.as_u16()),
        "{what}: status {st}"
    );
    // Every error is the API's JSON, also for a key whose percent-decoding is not UTF-8
    // (corpus key_path/fixed-invalid-utf8-key-plain-text-400: axum's plain text until fixed).
    if !st.is_success() {
        json_error(what, st, body);
    }
}

/// PUT, GET, DELETE, GET of one key on `n` (shared by the cases: each starts by deleting its
/// key).
fn check_key_case(n: &InProcess, c: &KeyCase) -> bool {
    let (state, app) = (&n.state, &n.app);
    n.rt.block_on(async {
        let put_path = format!(
            "/v1/keys/{}",
            percent_encode(&c.key, &c.put_force, c.lower_hex)
        );
        let get_path = format!(
            "/v1/keys/{}",
            percent_encode(&c.key, &c.get_force, !c.lower_hex)
        );
        let put_uri = match &c.ttl {
            Some(t) => format!("{put_path}?ttl={t}"),
            None => put_path.clone(),
        };
        let key_valid = std::str::from_utf8(&c.key).is_ok_and(key_ok);

        let (st, body) = call(app, "DELETE", &put_path, Vec::new()).await;
        let what = format!("DELETE {put_path}");
        check_key_answer(&what, st, &body, &[204]);
        assert_eq!(st.as_u16(), if key_valid { 204 } else { 400 }, "{what}");
        let items = state.engine.stats().items;

        let (st, body) = call(app, "PUT", &put_uri, c.value.clone()).await;
        let what = format!("PUT {put_uri}");
        check_key_answer(&what, st, &body, &[204]);
        let bad_ttl = c.ttl.as_deref().is_some_and(|t| check_ttl(t).is_err());
        let expect = if !key_valid || bad_ttl {
            400
        } else if c.value.len() as u64 > MAX_VALUE {
            413
        } else {
            204
        };
        assert_eq!(
            st.as_u16(),
            expect,
            "{what} ({} value bytes)",
            c.value.len()
        );
        let stored = st == StatusCode::NO_CONTENT;
        if stored {
            // Stored under the decoded bytes, whatever the encoding.
            assert_eq!(state.engine.get(&c.key, T0).as_deref(), Some(&c.value[..]));
        } else {
            assert_eq!(state.engine.stats().items, items, "{what} stored something");
        }

        let (st, body) = call(app, "GET", &get_path, Vec::new()).await;
        let what = format!("GET {get_path}");
        check_key_answer(&what, st, &body, &[200]);
        match (key_valid, stored) {
            (false, _) => assert_eq!(st, StatusCode::BAD_REQUEST, "{what}"),
            (true, true) => assert_eq!((st, &body), (StatusCode::OK, &c.value), "{what}"),
            (true, false) => assert_eq!(st, StatusCode::NOT_FOUND, "{what}"),
        }

        let (st, body) = call(app, "DELETE", &get_path, Vec::new()).await;
        let what = format!("DELETE {get_path}");
        check_key_answer(&what, st, &body, &[204]);
        assert_eq!(st.as_u16(), if key_valid { 204 } else { 400 }, "{what}");
        if key_valid {
            let (st, body) = call(app, "GET", &put_path, Vec::new()).await;
            check_key_answer("GET after DELETE", st, &body, &[]);
            assert_eq!(st, StatusCode::NOT_FOUND, "GET {put_path} after DELETE");
        }
        stored
    })
}

#[test]
fn key_path_corpus() {
    let n = InProcess::new();
    harness::replay("key_path", |b| {
        // The file is the key's bytes; encoded minimally and fully, value "v".
        for force in [&[][..], &[true; 300][..]] {
            let _ = check_key_case(
                &n,
                &KeyCase {
                    key: b.to_vec(),
                    put_force: force.to_vec(),
                    get_force: Vec::new(),
                    lower_hex: false,
                    value: b"v".to_vec(),
                    ttl: None,
                },
            );
        }
    });
}

#[test]
fn key_path_arbitrary() {
    let n = InProcess::new();
    let stored = std::sync::atomic::AtomicU64::new(0);
    harness::fuzz("key_path", 80_000, key_case(), |c| {
        if check_key_case(&n, &c) {
            stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    eprintln!("key_path: {stored:?} keys stored and read back");
}

// =============================================================================================
// Quantities.

/// Exact value of a size in the node's grammar (`<digits>[.<digits>][suffix]`, suffix k..E,
/// Ki..Ei or an exponent `e<n>`), rounded down: `Some(Some(v))`, `Some(None)` when it exceeds
/// u64; `None` for strings outside the grammar this oracle judges (exponents beyond ±30).
fn exact_size(s: &str) -> Option<Option<u64>> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() || (num.contains('.') && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    // num = digits / 10^frac.len(); value = num * mul / div.
    let (mut mul, mut div) = (1u128, 1u128);
    match suffix {
        "" => {}
        "k" => mul = 1000,
        "M" => mul = 1000u128.pow(2),
        "G" => mul = 1000u128.pow(3),
        "T" => mul = 1000u128.pow(4),
        "P" => mul = 1000u128.pow(5),
        "E" => mul = 1000u128.pow(6),
        "Ki" => mul = 1 << 10,
        "Mi" => mul = 1 << 20,
        "Gi" => mul = 1 << 30,
        "Ti" => mul = 1 << 40,
        "Pi" => mul = 1 << 50,
        "Ei" => mul = 1 << 60,
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            if !(-30..=30).contains(&exp) {
                return None;
            }
            if exp >= 0 {
                mul = 10u128.pow(exp as u32);
            } else {
                div = 10u128.pow(exp.unsigned_abs());
            }
        }
        _ => return None,
    }
    // Leading zeros do not change the value; up to 38 significant digits (u128) are judged.
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 || frac.len() > 6 {
        return None;
    }
    let n: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    div *= 10u128.pow(frac.len() as u32);
    let Some(p) = n.checked_mul(mul) else {
        // mul > 1 means div ≤ 10^6: n * mul / div ≥ 2^128 / 10^6, far beyond u64.
        return Some(None);
    };
    Some(u64::try_from(p / div).ok())
}

fn check_size(s: &str) {
    let got = parse_size(s);
    let Some(exact) = exact_size(s) else { return };
    // Exact, never approximated (corpus node_size/fixed-*: computed in f64 until fixed).
    assert_eq!(got.ok(), exact, "parse_size({s:?}), exact {exact:?}");
}

fn check_duration(s: &str) {
    let got = parse_duration_ms(s);
    assert_eq!(
        got.clone().ok(),
        harness::exact_duration_ms(s).flatten(),
        "parse_duration_ms({s:?}) = {got:?}"
    );
}

fn size_string() -> impl Strategy<Value = String> {
    let int = prop_oneof![
        0..2000u64,
        Just(1u64 << 53),
        Just((1u64 << 53) + 1),
        Just(u64::MAX),
        Just(u64::MAX / 1000),
        Just(u64::MAX / 1024),
        any::<u64>(),
    ];
    let suffix = prop_oneof![
        proptest::sample::select(vec![
            "", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"
        ])
        .prop_map(String::from),
        (-25..=25i32, any::<bool>())
            .prop_map(|(e, upper)| format!("{}{e}", if upper { 'E' } else { 'e' })),
    ];
    let frac = prop_oneof![3 => Just(None), 1 => "[0-9]{1,6}".prop_map(Some)];
    let pad = prop_oneof![Just(""), Just(" "), Just("\t"), Just("00")];
    (int, frac, suffix, pad).prop_map(|(i, f, s, pad)| {
        let f = f.map(|f| format!(".{f}")).unwrap_or_default();
        match pad {
            "00" => format!("00{i}{f}{s}"),
            p => format!("{p}{i}{f}{s}{p}"),
        }
    })
}

fn duration_string() -> impl Strategy<Value = String> {
    let n = prop_oneof![
        0..100_000u64,
        Just(u64::MAX),
        Just(u64::MAX / 1000),
        any::<u64>()
    ];
    let unit = proptest::sample::select(vec!["", "ms", "s", "m", "h", "d"]);
    let pad = prop_oneof![Just(""), Just(" "), Just("0")];
    let single = (n, unit, pad).prop_map(|(n, u, p)| match p {
        "0" => format!("0{n}{u}"),
        p => format!("{p}{n}{u}{p}"),
    });
    // Compounds (`1h30m`), the grammar node, operator and client share.
    let part = (
        prop_oneof![0..100_000u64, any::<u64>()],
        proptest::sample::select(vec!["ms", "s", "m", "h", "d"]),
    )
        .prop_map(|(n, u)| format!("{n}{u}"));
    let compound = proptest::collection::vec(part, 2..5).prop_map(|p| p.concat());
    prop_oneof![2 => single, 1 => compound]
}

fn near_number() -> impl Strategy<Value = String> {
    "[ 0-9.eEkKMGTPiImsdh+-]{0,24}"
}

#[test]
fn node_size_corpus() {
    harness::replay("node_size", |b| check_size(&String::from_utf8_lossy(b)));
}

#[test]
fn node_duration_corpus() {
    harness::replay("node_duration", |b| {
        check_duration(&String::from_utf8_lossy(b))
    });
}

#[test]
fn node_quantities() {
    let inputs = prop_oneof![
        size_string(),
        duration_string(),
        near_number(),
        "\\PC{0,16}",
        any::<String>(),
    ];
    harness::fuzz("node_size+node_duration", 250_000, inputs, |s| {
        check_size(&s);
        check_duration(&s);
        Ok(())
    });
}

// =============================================================================================
// RESP: the Redis protocol front, one connection over an in-memory pipe.

/// Sends `chunks` to a RESP connection of `n`'s node (then closes the sending side) and returns
/// everything it answered until it closed.
fn resp_exchange(n: &InProcess, chunks: Vec<Vec<u8>>) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    n.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 << 10);
        let state = n.state.clone();
        let served = tokio::spawn(async move {
            ringcache_node::resp::connection(server, &state).await;
        });
        let (mut rx, mut tx) = tokio::io::split(&mut client);
        let send = async move {
            for c in chunks {
                // The connection may have closed (a protocol error): the rest is not sent.
                if tx.write_all(&c).await.is_err() {
                    return;
                }
            }
            let _ = tx.shutdown().await;
        };
        let mut out = Vec::new();
        let recv = rx.read_to_end(&mut out);
        let (_, r) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(send, recv)
        })
        .await
        .expect("the RESP connection neither answered nor closed within 10 s");
        r.expect("reading the answers");
        served.await.expect("the connection task panicked");
        out
    })
}

/// One RESP reply from the front of `b` (the forms the node writes): its length and its text
/// for simple strings and errors; `None` when `b` holds no whole reply.
fn resp_reply(b: &[u8]) -> Option<(usize, Option<String>)> {
    let line_end = b.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&b[1..line_end]).ok()?;
    let after = line_end + 2;
    match b.first()? {
        b'+' | b'-' => Some((after, Some(line.to_string()))),
        b':' => line.parse::<i64>().ok().map(|_| (after, None)),
        b'_' if line.is_empty() => Some((after, None)),
        b'$' | b'=' => {
            let n: i64 = line.parse().ok()?;
            if n == -1 && b[0] == b'$' {
                return Some((after, None));
            }
            let end = after + usize::try_from(n).ok()?;
            (b.get(end..end + 2)? == b"\r\n").then_some((end + 2, None))
        }
        b'*' | b'%' => {
            let n: usize = line.parse().ok()?;
            let items = if b[0] == b'%' { 2 * n } else { n };
            let mut at = after;
            for _ in 0..items {
                let (len, _) = resp_reply(&b[at..])?;
                at += len;
            }
            Some((at, None))
        }
        _ => None,
    }
}

/// Splits `out` into replies, failing on anything that is not a whole, well-formed reply.
/// Replies as their bytes and, for simple strings and errors, their text.
type Replies = Vec<(Vec<u8>, Option<String>)>;

fn resp_replies(out: &[u8]) -> Result<Replies, TestCaseError> {
    let mut at = 0;
    let mut replies = Vec::new();
    while at < out.len() {
        let Some((len, text)) = resp_reply(&out[at..]) else {
            return Err(TestCaseError::fail(format!(
                "malformed answer at byte {at}: {:?}",
                String::from_utf8_lossy(&out[at..out.len().min(at + 80)])
            )));
        };
        replies.push((out[at..at + len].to_vec(), text));
        at += len;
    }
    Ok(replies)
}

/// `bytes` cut into chunks of the given sizes (cycled; at least one byte each).
fn chunked(bytes: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut sizes = sizes.iter().map(|&s| s.max(1)).cycle();
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    out
}

fn resp_encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Hostile input: random bytes, valid commands with bytes flipped or cut, lengths that lie.
fn resp_input() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let word = prop_oneof![
        Just(b"GET".to_vec()),
        Just(b"SET".to_vec()),
        Just(b"MGET".to_vec()),
        Just(b"INCR".to_vec()),
        Just(b"HELLO".to_vec()),
        Just(b"3".to_vec()),
        Just(b"EX".to_vec()),
        vec(any::<u8>(), 0..12),
    ];
    let command = vec(word, 1..5).prop_map(|args| resp_encode(&args));
    let piece = prop_oneof![
        3 => command,
        1 => vec(any::<u8>(), 0..40),
        1 => (0i64..200, vec(any::<u8>(), 0..20))
            .prop_map(|(n, junk)| [format!("*1\r\n${n}\r\n").into_bytes(), junk].concat()),
        1 => Just(b"PING\r\n".to_vec()),
    ];
    (
        vec(piece, 1..8).prop_flat_map(|pieces| {
            let bytes = pieces.concat();
            let len = bytes.len().max(1);
            (Just(bytes), vec(any::<usize>(), 0..4)).prop_map(move |(mut b, flips)| {
                for f in flips {
                    let i = f % len;
                    if i < b.len() {
                        b[i] ^= (f >> 8) as u8 | 1;
                    }
                }
                b
            })
        }),
        vec(1usize..64, 1..6),
    )
}

fn check_resp_input(n: &InProcess, bytes: &[u8], sizes: &[usize]) -> TestCaseResult {
    let out = resp_exchange(n, chunked(bytes, sizes));
    let replies = resp_replies(&out)?;
    // A protocol error ends the connection: nothing is answered after it.
    if let Some(i) = replies.iter().position(|(_, text)| {
        text.as_deref()
            .is_some_and(|t| t.starts_with("ERR Protocol error"))
    }) {
        prop_assert_eq!(i, replies.len() - 1, "answers after a protocol error");
    }
    Ok(())
}

#[test]
fn resp_frames_corpus() {
    let n = InProcess::new();
    harness::replay("resp_frames", |b| {
        for sizes in [&[usize::MAX][..], &[1], &[7, 3]] {
            if let Err(e) = check_resp_input(&n, b, sizes) {
                panic!("{e}");
            }
        }
    });
}

#[test]
fn resp_frames_arbitrary() {
    let n = InProcess::new();
    harness::fuzz("resp_frames", 300_000, resp_input(), |(bytes, sizes)| {
        check_resp_input(&n, &bytes, &sizes)
    });
}

/// A command of the model run, over keys `k0`…`k3`.
#[derive(Debug, Clone)]
enum RespOp {
    Set(u8, Vec<u8>),
    Get(u8),
    Del(Vec<u8>),
    Incr(u8, i8),
    Append(u8, Vec<u8>),
    Mset(Vec<(u8, Vec<u8>)>),
    Mget(Vec<u8>),
    Exists(Vec<u8>),
    Strlen(u8),
    Getdel(u8),
    Setnx(u8, Vec<u8>),
}

fn resp_op() -> impl Strategy<Value = RespOp> {
    let key = 0u8..4;
    let value = prop_oneof![
        vec(any::<u8>(), 0..(MAX_VALUE as usize + 8)),
        (-5i64..5).prop_map(|n| n.to_string().into_bytes()),
    ];
    prop_oneof![
        (key.clone(), value.clone()).prop_map(|(k, v)| RespOp::Set(k, v)),
        key.clone().prop_map(RespOp::Get),
        vec(key.clone(), 1..4).prop_map(RespOp::Del),
        (key.clone(), any::<i8>()).prop_map(|(k, by)| RespOp::Incr(k, by)),
        (key.clone(), vec(any::<u8>(), 0..20)).prop_map(|(k, v)| RespOp::Append(k, v)),
        vec((key.clone(), value.clone()), 1..4).prop_map(RespOp::Mset),
        vec(key.clone(), 1..5).prop_map(RespOp::Mget),
        vec(key.clone(), 1..4).prop_map(RespOp::Exists),
        key.clone().prop_map(RespOp::Strlen),
        key.clone().prop_map(RespOp::Getdel),
        (key, value).prop_map(|(k, v)| RespOp::Setnx(k, v)),
    ]
}

fn bulk(v: Option<&Vec<u8>>) -> Vec<u8> {
    match v {
        Some(v) => [
            format!("${}\r\n", v.len()).into_bytes(),
            v.clone(),
            b"\r\n".to_vec(),
        ]
        .concat(),
        None => b"$-1\r\n".to_vec(),
    }
}

fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

const TOO_LARGE: &[u8] = b"-ERR argument";

/// Runs `op` on the model; returns its encoded command and the answer it must get (for a
/// refused oversized argument: the start of the error).
fn resp_model_step(model: &mut HashMap<u8, Vec<u8>>, op: &RespOp) -> (Vec<u8>, Vec<u8>) {
    let k = |k: &u8| format!("k{k}").into_bytes();
    let too_big = |v: &[u8]| v.len() as u64 > MAX_VALUE;
    let (args, answer): (Vec<Vec<u8>>, Vec<u8>) = match op {
        RespOp::Set(key, v) => {
            let args = vec![b"SET".to_vec(), k(key), v.clone()];
            if too_big(v) {
                (args, TOO_LARGE.to_vec())
            } else {
                model.insert(*key, v.clone());
                (args, b"+OK\r\n".to_vec())
            }
        }
        RespOp::Get(key) => (vec![b"GET".to_vec(), k(key)], bulk(model.get(key))),
        RespOp::Del(keys) => {
            let mut args = vec![b"DEL".to_vec()];
            let mut n = 0;
            for key in keys {
                args.push(k(key));
                n += i64::from(model.remove(key).is_some());
            }
            (args, int(n))
        }
        RespOp::Incr(key, by) => {
            let args = vec![b"INCRBY".to_vec(), k(key), by.to_string().into_bytes()];
            let current = match model.get(key) {
                None => Some(0i64),
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .filter(|s| {
                        s == &"0"
                            || !(s.starts_with('0')
                                || s.starts_with("-0")
                                || s.starts_with('+')
                                || s.is_empty())
                    })
                    .and_then(|s| s.parse::<i64>().ok()),
            };
            match current.and_then(|c| c.checked_add(i64::from(*by))) {
                Some(n) => {
                    model.insert(*key, n.to_string().into_bytes());
                    (args, int(n))
                }
                None => (
                    args,
                    b"-ERR value is not an integer or out of range\r\n".to_vec(),
                ),
            }
        }
        RespOp::Append(key, v) => {
            let args = vec![b"APPEND".to_vec(), k(key), v.clone()];
            let joined = [model.get(key).cloned().unwrap_or_default(), v.clone()].concat();
            if too_big(&joined) {
                (args, b"-ERR string exceeds maximum allowed size".to_vec())
            } else {
                let n = joined.len() as i64;
                model.insert(*key, joined);
                (args, int(n))
            }
        }
        RespOp::Mset(pairs) => {
            let mut args = vec![b"MSET".to_vec()];
            for (key, v) in pairs {
                args.push(k(key));
                args.push(v.clone());
            }
            if pairs.iter().any(|(_, v)| too_big(v)) {
                (args, TOO_LARGE.to_vec())
            } else {
                for (key, v) in pairs {
                    model.insert(*key, v.clone());
                }
                (args, b"+OK\r\n".to_vec())
            }
        }
        RespOp::Mget(keys) => {
            let mut args = vec![b"MGET".to_vec()];
            let mut answer = format!("*{}\r\n", keys.len()).into_bytes();
            for key in keys {
                args.push(k(key));
                answer.extend(bulk(model.get(key)));
            }
            (args, answer)
        }
        RespOp::Exists(keys) => {
            let mut args = vec![b"EXISTS".to_vec()];
            let mut n = 0;
            for key in keys {
                args.push(k(key));
                n += i64::from(model.contains_key(key));
            }
            (args, int(n))
        }
        RespOp::Strlen(key) => (
            vec![b"STRLEN".to_vec(), k(key)],
            int(model.get(key).map_or(0, |v| v.len() as i64)),
        ),
        RespOp::Getdel(key) => (
            vec![b"GETDEL".to_vec(), k(key)],
            bulk(model.remove(key).as_ref()),
        ),
        RespOp::Setnx(key, v) => {
            let args = vec![b"SETNX".to_vec(), k(key), v.clone()];
            if too_big(v) {
                (args, TOO_LARGE.to_vec())
            } else if model.contains_key(key) {
                (args, int(0))
            } else {
                model.insert(*key, v.clone());
                (args, int(1))
            }
        }
    };
    (resp_encode(&args), answer)
}

#[test]
fn resp_model() {
    let n = InProcess::new();
    harness::fuzz(
        "resp_frames/model",
        100_000,
        (vec(resp_op(), 1..40), vec(1usize..200, 1..5)),
        |(ops, sizes)| {
            // Each case starts from an empty store.
            for p in 0..n.state.engine.partitions() {
                n.state.engine.drop_partition(p).unwrap();
            }
            let mut model = HashMap::new();
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for op in &ops {
                let (cmd, answer) = resp_model_step(&mut model, op);
                wire.extend(cmd);
                expected.push(answer);
            }
            let out = resp_exchange(&n, chunked(&wire, &sizes));
            let replies = resp_replies(&out)?;
            prop_assert_eq!(
                replies.len(),
                expected.len(),
                "{:?}",
                String::from_utf8_lossy(&out)
            );
            for (i, ((got, _), want)) in replies.iter().zip(&expected).enumerate() {
                prop_assert!(
                    got.starts_with(want),
                    "answer {} to {:?}: {:?}, expected {:?}",
                    i,
                    ops[i],
                    String::from_utf8_lossy(got),
                    String::from_utf8_lossy(want)
                );
            }
            Ok(())
        },
    );
}
