//! Binary record stream between nodes (partition pulls, replica writes, snapshots).
//!
//! A stream is a sequence of frames followed by one trailer, all integers little-endian:
//! - record: `u32 key_len (≥1) | key | u64 version | u64 expires_at | u8 kind | u32 value_len |
//!   value`, kind 0 a string, 1 a tombstone (value_len 0), 2 a hash, 3 a set, 4 a sorted set,
//!   5 a list (collections in their compact encoding, `engine::value`, checked on arrival);
//! - trailer: `u32 0 | u64 record_count`.
//!
//! A stream without its trailer, or whose count differs, is truncated and must be rejected.

use crate::engine::{Kind, Record, value};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Content type of a record stream.
pub const CONTENT_TYPE: &str = ringcache_common::protocol::RECORDS_CONTENT_TYPE;

/// Largest frame accepted (a key of 250 bytes plus a generous value bound).
pub const MAX_FRAME: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("record stream truncated: no trailer after {0} records")]
    Truncated(u64),
    #[error("record stream trailer says {expected} records, got {got}")]
    CountMismatch { expected: u64, got: u64 },
    #[error("record stream malformed: {0}")]
    Malformed(String),
    #[error("data after the record stream trailer")]
    TrailingData,
    #[error("a value of {len} bytes exceeds the maximum value size of {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
}

pub fn encode_record(out: &mut BytesMut, r: &Record) {
    let value = r.value.as_deref().unwrap_or(&[]);
    out.reserve(4 + r.key.len() + 8 + 8 + 1 + 4 + value.len());
    out.put_u32_le(r.key.len() as u32);
    out.put_slice(&r.key);
    out.put_u64_le(r.version);
    out.put_u64_le(r.expires_at);
    out.put_u8(match (&r.value, r.kind) {
        (None, _) => 1,
        (Some(_), Kind::String) => 0,
        (Some(_), k) => k as u8 + 1,
    });
    out.put_u32_le(value.len() as u32);
    out.put_slice(value);
}

pub fn encode_trailer(out: &mut BytesMut, count: u64) {
    out.put_u32_le(0);
    out.put_u64_le(count);
}

/// Encodes a whole stream (records + trailer).
pub fn encode_all(records: &[Record]) -> Bytes {
    let mut out = BytesMut::new();
    for r in records {
        encode_record(&mut out, r);
    }
    encode_trailer(&mut out, records.len() as u64);
    out.freeze()
}

/// Incremental decoder: feed chunks as they arrive, take out complete records.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    count: u64,
    finished: bool,
    /// Largest value accepted (the node's `--max-value-size`).
    max_value: usize,
    /// The bound of a typed (collection) value.
    max_collection: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::with_max_value(MAX_FRAME)
    }

    /// A decoder refusing any value larger than `max_value` bytes.
    pub fn with_max_value(max_value: usize) -> Decoder {
        Decoder::with_bounds(max_value, max_value)
    }

    /// A decoder refusing a string larger than `max_value` bytes and a collection (hash, set,
    /// sorted set, list) larger than `max_collection` (a node's `--max-value-size` and
    /// `--max-collection-size`).
    pub fn with_bounds(max_value: usize, max_collection: usize) -> Decoder {
        Decoder {
            buf: BytesMut::new(),
            count: 0,
            finished: false,
            max_value: max_value.min(MAX_FRAME),
            max_collection: max_collection.min(MAX_FRAME),
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), WireError> {
        if self.finished && !chunk.is_empty() {
            return Err(WireError::TrailingData);
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// Next complete record, `Ok(None)` when more bytes are needed or the trailer was reached.
    pub fn next_record(&mut self) -> Result<Option<Record>, WireError> {
        if self.finished {
            if !self.buf.is_empty() {
                return Err(WireError::TrailingData);
            }
            return Ok(None);
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let key_len =
            u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if key_len == 0 {
            if self.buf.len() < 12 {
                return Ok(None);
            }
            self.buf.advance(4);
            let expected = self.buf.get_u64_le();
            if expected != self.count {
                return Err(WireError::CountMismatch {
                    expected,
                    got: self.count,
                });
            }
            self.finished = true;
            if !self.buf.is_empty() {
                return Err(WireError::TrailingData);
            }
            return Ok(None);
        }
        if key_len > ringcache_ring::MAX_KEY_LEN {
            return Err(WireError::Malformed(format!("key length {key_len}")));
        }
        let head = 4 + key_len + 8 + 8 + 1 + 4;
        if self.buf.len() < head {
            return Ok(None);
        }
        let vpos = head - 4;
        let value_len = u32::from_le_bytes([
            self.buf[vpos],
            self.buf[vpos + 1],
            self.buf[vpos + 2],
            self.buf[vpos + 3],
        ]) as usize;
        // Kinds 0 (string) and 1 (tombstone) are strings; the others collections.
        let max = if self.buf[vpos - 1] <= 1 {
            self.max_value
        } else {
            self.max_collection
        };
        if value_len > max {
            return Err(WireError::ValueTooLarge {
                len: value_len,
                max,
            });
        }
        if self.buf.len() < head + value_len {
            return Ok(None);
        }
        self.buf.advance(4);
        let key = self.buf.split_to(key_len).freeze();
        let version = self.buf.get_u64_le();
        let expires_at = self.buf.get_u64_le();
        let kind = self.buf.get_u8();
        let _ = self.buf.get_u32_le();
        let value = self.buf.split_to(value_len).freeze();
        let (value, kind) = match kind {
            0 => (Some(Bytes::copy_from_slice(&value)), Kind::String),
            1 if value.is_empty() => (None, Kind::String),
            k => {
                let kind = k
                    .checked_sub(1)
                    .and_then(Kind::from_u8)
                    .filter(|&k| k != Kind::String)
                    .ok_or_else(|| WireError::Malformed(format!("record kind {k}")))?;
                value::validate(kind, &value).map_err(|e| WireError::Malformed(e.to_string()))?;
                (Some(Bytes::copy_from_slice(&value)), kind)
            }
        };
        self.count += 1;
        Ok(Some(Record {
            key,
            version,
            expires_at,
            value,
            kind,
        }))
    }

    /// Call at end of input: errors unless the trailer was seen and matched.
    pub fn finish(&self) -> Result<u64, WireError> {
        if self.finished {
            Ok(self.count)
        } else {
            Err(WireError::Truncated(self.count))
        }
    }
}

/// Decodes a complete stream held in memory, refusing values over `max_value` bytes.
pub fn decode_all(bytes: &[u8], max_value: usize) -> Result<Vec<Record>, WireError> {
    decode_bounded(bytes, max_value, max_value)
}

/// [`decode_all`] with a string's and a collection's bound ([`Decoder::with_bounds`]).
pub fn decode_bounded(
    bytes: &[u8],
    max_value: usize,
    max_collection: usize,
) -> Result<Vec<Record>, WireError> {
    let mut d = Decoder::with_bounds(max_value, max_collection);
    d.feed(bytes)?;
    let mut out = Vec::new();
    while let Some(r) = d.next_record()? {
        out.push(r);
    }
    d.finish()?;
    Ok(out)
}

/// Body of `POST /internal/v1/get` (a multi-get of forwarded reads): `u32 count | count ×
/// (u16 key_len | key)`, little-endian.
pub const KEYS_CONTENT_TYPE: &str = ringcache_common::protocol::KEYS_CONTENT_TYPE;
/// Its answer: `u32 count | count × (u8 tag | u32 value_len | value)`, one per key in order;
/// tag 0 found (value follows), 1 not found, 2 not served here (ask another owner).
pub const RESULTS_CONTENT_TYPE: &str = ringcache_common::protocol::RESULTS_CONTENT_TYPE;
/// Keys per multi-get at most.
pub const MAX_KEYS: usize = 4096;
/// Largest multi-get body: the count and `MAX_KEYS` keys of the longest length.
pub const MAX_KEYS_BODY: usize = 4 + MAX_KEYS * (2 + ringcache_ring::MAX_KEY_LEN);

/// One key's answer in a multi-get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyResult {
    Found(Bytes),
    Missing,
    NotServed,
}

/// Appends one key of a multi-get body (after a `u32` count written by the caller).
pub fn put_key(out: &mut BytesMut, key: &[u8]) {
    out.put_u16_le(key.len() as u16);
    out.put_slice(key);
}

/// The keys of a multi-get body, borrowed from it.
pub fn decode_keys(mut b: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    if b.len() < 4 {
        return Err(WireError::Malformed(
            "multi-get body shorter than its count".into(),
        ));
    }
    let n = b.get_u32_le() as usize;
    if n > MAX_KEYS {
        return Err(WireError::Malformed(format!(
            "{n} keys in one multi-get, the maximum is {MAX_KEYS}"
        )));
    }
    let mut keys = Vec::with_capacity(n);
    for i in 0..n {
        if b.len() < 2 {
            return Err(WireError::Truncated(i as u64));
        }
        let len = b.get_u16_le() as usize;
        if len == 0 || len > ringcache_ring::MAX_KEY_LEN {
            return Err(WireError::Malformed(format!("key {i} has length {len}")));
        }
        if b.len() < len {
            return Err(WireError::Truncated(i as u64));
        }
        keys.push(&b[..len]);
        b = &b[len..];
    }
    if !b.is_empty() {
        return Err(WireError::TrailingData);
    }
    Ok(keys)
}

/// Appends one key's answer to a multi-get answer body (after its `u32` count).
pub fn put_result(out: &mut BytesMut, r: Option<&[u8]>, served: bool) {
    match (r, served) {
        (Some(v), _) => {
            out.reserve(5 + v.len());
            out.put_u8(0);
            out.put_u32_le(v.len() as u32);
            out.put_slice(v);
        }
        (None, true) => {
            out.put_u8(1);
            out.put_u32_le(0);
        }
        (None, false) => {
            out.put_u8(2);
            out.put_u32_le(0);
        }
    }
}

/// The answers of a multi-get answer body; values are slices of `body` (no copy).
pub fn decode_results(body: &Bytes) -> Result<Vec<KeyResult>, WireError> {
    let mut b = &body[..];
    if b.len() < 4 {
        return Err(WireError::Malformed(
            "multi-get answer shorter than its count".into(),
        ));
    }
    let n = b.get_u32_le() as usize;
    if n > MAX_KEYS {
        return Err(WireError::Malformed(format!(
            "{n} answers in one multi-get"
        )));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if b.len() < 5 {
            return Err(WireError::Truncated(i as u64));
        }
        let tag = b.get_u8();
        let len = b.get_u32_le() as usize;
        if b.len() < len {
            return Err(WireError::Truncated(i as u64));
        }
        let start = body.len() - b.len();
        out.push(match (tag, len) {
            (0, _) => KeyResult::Found(body.slice(start..start + len)),
            (1, 0) => KeyResult::Missing,
            (2, 0) => KeyResult::NotServed,
            _ => {
                return Err(WireError::Malformed(format!(
                    "answer {i}: tag {tag} with {len} bytes"
                )));
            }
        });
        b = &b[len..];
    }
    if !b.is_empty() {
        return Err(WireError::TrailingData);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs() -> Vec<Record> {
        vec![
            Record {
                key: Bytes::from_static(b"a"),
                version: 7,
                expires_at: 0,
                value: Some(Bytes::from_static(b"hello")),
                kind: Kind::String,
            },
            Record {
                key: Bytes::from_static(b"gone"),
                version: 9,
                expires_at: 123,
                value: None,
                kind: Kind::String,
            },
            Record {
                key: Bytes::from_static(b"h"),
                version: 10,
                expires_at: 0,
                value: Some(value::encode([&b"field"[..], b"v"])),
                kind: Kind::Hash,
            },
            Record {
                key: Bytes::from_static(b"l"),
                version: 11,
                expires_at: 5,
                value: Some(value::encode([&b"x"[..]])),
                kind: Kind::List,
            },
        ]
    }

    #[test]
    fn a_malformed_collection_or_unknown_kind_is_refused() {
        for (kind, value) in [(2u8, &b"\x01f"[..]), (3, b"\x85"), (6, b"")] {
            let mut out = BytesMut::new();
            encode_record(
                &mut out,
                &Record {
                    key: Bytes::from_static(b"k"),
                    version: 1,
                    expires_at: 0,
                    value: Some(Bytes::copy_from_slice(value)),
                    kind: Kind::String,
                },
            );
            // The kind byte sits after key length, key, version and expiry.
            out[4 + 1 + 16] = kind;
            encode_trailer(&mut out, 1);
            assert!(
                matches!(decode_all(&out, MAX_FRAME), Err(WireError::Malformed(_))),
                "kind {kind} with {value:?}"
            );
        }
    }

    #[test]
    fn strings_and_collections_have_their_own_bound() {
        let big = vec![b'x'; 100];
        let string = Record {
            key: Bytes::from_static(b"s"),
            version: 1,
            expires_at: 0,
            value: Some(Bytes::from(big.clone())),
            kind: Kind::String,
        };
        let list = Record {
            key: Bytes::from_static(b"l"),
            version: 1,
            expires_at: 0,
            value: Some(value::encode([&big[..]])),
            kind: Kind::List,
        };
        let one = |r: &Record| encode_all(std::slice::from_ref(r));
        assert!(
            decode_bounded(&one(&list), 50, 200).is_ok(),
            "a list within its bound"
        );
        assert!(matches!(
            decode_bounded(&one(&string), 50, 200),
            Err(WireError::ValueTooLarge { max: 50, .. })
        ));
        assert!(matches!(
            decode_bounded(&one(&list), 200, 50),
            Err(WireError::ValueTooLarge { max: 50, .. })
        ));
    }

    #[test]
    fn roundtrip_in_one_piece_and_byte_by_byte() {
        let enc = encode_all(&recs());
        assert_eq!(decode_all(&enc, MAX_FRAME).unwrap(), recs());
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in enc.iter() {
            d.feed(&[*b]).unwrap();
            while let Some(r) = d.next_record().unwrap() {
                got.push(r);
            }
        }
        assert_eq!(d.finish().unwrap(), recs().len() as u64);
        assert_eq!(got, recs());
    }

    #[test]
    fn truncation_anywhere_is_detected() {
        let enc = encode_all(&recs());
        for cut in 0..enc.len() {
            assert!(
                decode_all(&enc[..cut], MAX_FRAME).is_err(),
                "cut at {cut} accepted"
            );
        }
    }

    #[test]
    fn wrong_count_and_trailing_bytes_are_rejected() {
        let mut out = BytesMut::new();
        encode_record(&mut out, &recs()[0]);
        encode_trailer(&mut out, 2);
        assert!(matches!(
            decode_all(&out, MAX_FRAME),
            Err(WireError::CountMismatch { .. })
        ));
        let mut enc = encode_all(&recs()).to_vec();
        enc.push(0);
        assert_eq!(decode_all(&enc, MAX_FRAME), Err(WireError::TrailingData));
    }

    #[test]
    fn multi_get_keys_and_answers_roundtrip() {
        let mut b = BytesMut::new();
        b.put_u32_le(2);
        put_key(&mut b, b"a");
        put_key(&mut b, b"key:2");
        assert_eq!(decode_keys(&b).unwrap(), vec![&b"a"[..], &b"key:2"[..]]);

        let mut r = BytesMut::new();
        r.put_u32_le(3);
        put_result(&mut r, Some(b"value"), true);
        put_result(&mut r, None, true);
        put_result(&mut r, None, false);
        let got = decode_results(&r.freeze()).unwrap();
        assert_eq!(
            got,
            vec![
                KeyResult::Found(Bytes::from_static(b"value")),
                KeyResult::Missing,
                KeyResult::NotServed
            ]
        );
    }

    #[test]
    fn malformed_multi_gets_are_refused() {
        let mut b = BytesMut::new();
        b.put_u32_le(2);
        put_key(&mut b, b"a");
        // One key announced but missing.
        assert_eq!(decode_keys(&b), Err(WireError::Truncated(1)));
        b.put_u16_le(0);
        assert!(matches!(decode_keys(&b), Err(WireError::Malformed(_))));
        let mut c = BytesMut::new();
        c.put_u32_le(1);
        put_key(&mut c, b"a");
        c.put_u8(9);
        assert_eq!(decode_keys(&c), Err(WireError::TrailingData));
        let mut d = BytesMut::new();
        d.put_u32_le((MAX_KEYS + 1) as u32);
        assert!(matches!(decode_keys(&d), Err(WireError::Malformed(_))));
        assert!(decode_keys(&[1, 0]).is_err());

        let mut r = BytesMut::new();
        r.put_u32_le(2);
        put_result(&mut r, Some(b"v"), true);
        assert_eq!(
            decode_results(&r.clone().freeze()),
            Err(WireError::Truncated(1))
        );
        r.put_u8(1);
        r.put_u32_le(3);
        r.put_slice(b"xyz");
        assert!(matches!(
            decode_results(&r.freeze()),
            Err(WireError::Malformed(_))
        ));
    }
}
