//! The compact encoding of collections: a value is a run of items, each a LEB128 length and its
//! bytes. A hash is field, value, field, value…; a set its members; a list its elements in
//! order; a sorted set score, member, score, member… ordered by (score, member), each score 8
//! bytes (an `f64`, little-endian, never NaN).
//!
//! Why one flat run: a small collection costs its bytes plus one or two bytes per item (Redis's
//! listpack spends about as much), and as one value it is replicated, migrated and snapshotted
//! exactly as a string is. Every change rewrites the run, so a change costs the collection's
//! size: collections are bounded by `--max-collection-size` (see DESIGN.md, "Redis data
//! model", for the measurement and the plan for larger ones).

use super::Kind;
use bytes::{BufMut, Bytes, BytesMut};

/// A stored collection that does not decode: a bug or a corrupt peer, never the client's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored {kind} value does not decode: {why}")]
pub struct Corrupt {
    pub kind: &'static str,
    pub why: &'static str,
}

fn corrupt(kind: Kind, why: &'static str) -> Corrupt {
    Corrupt {
        kind: kind.name(),
        why,
    }
}

/// The items of an encoded value, borrowed from it.
pub fn items(kind: Kind, v: &[u8]) -> Result<Vec<&[u8]>, Corrupt> {
    let mut out = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let (len, used) = read_len(rest).ok_or_else(|| corrupt(kind, "bad item length"))?;
        rest = &rest[used..];
        if len > rest.len() {
            return Err(corrupt(kind, "item runs past the end"));
        }
        let (item, tail) = rest.split_at(len);
        out.push(item);
        rest = tail;
    }
    Ok(out)
}

fn read_len(b: &[u8]) -> Option<(usize, usize)> {
    let mut n: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(5) {
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((usize::try_from(n).ok()?, i + 1));
        }
    }
    None
}

fn put_len(out: &mut BytesMut, mut n: usize) {
    while n >= 0x80 {
        out.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.put_u8(n as u8);
}

/// Bytes `items` take encoded.
pub fn encoded_len<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> usize {
    items
        .into_iter()
        .map(|i| i.len() + (usize::BITS - (i.len() | 1).leading_zeros()).div_ceil(7) as usize)
        .sum()
}

/// Encodes `items` as one value.
pub fn encode<'a>(items: impl IntoIterator<Item = &'a [u8]> + Clone) -> Bytes {
    let mut out = BytesMut::with_capacity(encoded_len(items.clone()));
    for i in items {
        put_len(&mut out, i.len());
        out.put_slice(i);
    }
    out.freeze()
}

/// A sorted-set score as it is stored.
pub fn score_bytes(score: f64) -> [u8; 8] {
    score.to_le_bytes()
}

/// A stored score.
pub fn score_of(kind: Kind, b: &[u8]) -> Result<f64, Corrupt> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| corrupt(kind, "score not 8 bytes"))?;
    let s = f64::from_le_bytes(arr);
    if s.is_nan() {
        return Err(corrupt(kind, "score is NaN"));
    }
    Ok(s)
}

/// Checks that `v` is a well-formed value of `kind` (values from peers, snapshots and
/// migrations are checked before they are stored).
pub fn validate(kind: Kind, v: &[u8]) -> Result<(), Corrupt> {
    if kind == Kind::String {
        return Ok(());
    }
    let it = items(kind, v)?;
    if it.is_empty() {
        return Err(corrupt(kind, "empty collection"));
    }
    match kind {
        Kind::Hash if it.len() % 2 != 0 => Err(corrupt(kind, "field without a value")),
        Kind::ZSet => {
            if it.len() % 2 != 0 {
                return Err(corrupt(kind, "score without a member"));
            }
            let mut last: Option<(f64, &[u8])> = None;
            for pair in it.chunks_exact(2) {
                let here = (score_of(kind, pair[0])?, pair[1]);
                if let Some(prev) = last
                    && !zset_before(prev, here)
                {
                    return Err(corrupt(kind, "members out of order"));
                }
                last = Some(here);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Sorted-set order: by score, then by member bytes.
pub fn zset_before(a: (f64, &[u8]), b: (f64, &[u8])) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 < b.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn items_come_back_as_they_went_in(
            items_in in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40)
        ) {
            let refs: Vec<&[u8]> = items_in.iter().map(Vec::as_slice).collect();
            let v = encode(refs.iter().copied());
            prop_assert_eq!(v.len(), encoded_len(refs.iter().copied()));
            prop_assert_eq!(items(Kind::List, &v).unwrap(), refs);
        }

        #[test]
        fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..64)) {
            for k in Kind::ALL {
                let _ = validate(k, &v);
            }
        }
    }

    #[test]
    fn malformed_collections_are_refused() {
        let odd = encode([&b"f"[..]]);
        assert!(validate(Kind::Hash, &odd).is_err());
        assert!(validate(Kind::Set, &odd).is_ok());
        assert!(validate(Kind::Set, b"").is_err(), "empty");
        assert!(
            validate(Kind::List, &[0x85]).is_err(),
            "length past the end"
        );
        let (one, two) = (score_bytes(1.0), score_bytes(2.0));
        let ordered = encode([&one[..], b"a", &two[..], b"b"]);
        assert!(validate(Kind::ZSet, &ordered).is_ok());
        let reversed = encode([&two[..], b"b", &one[..], b"a"]);
        assert!(validate(Kind::ZSet, &reversed).is_err());
        let nan = score_bytes(f64::NAN);
        assert!(validate(Kind::ZSet, &encode([&nan[..], b"a"])).is_err());
        assert_eq!(items(Kind::ZSet, &ordered).map(|i| i.len() / 2), Ok(2));
    }
}
