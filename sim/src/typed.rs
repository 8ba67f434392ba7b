//! Hashes, sets, sorted sets and lists in the scenarios' load: each typed key is used as a
//! register the acknowledged-write checker can judge, so a lost, stale or resurrected
//! collection shows up exactly as a lost, stale or resurrected string does.
//!
//! A key `t{w}-k{n}` has family `n % 4`; each write replaces what a read returns:
//!
//! | family | write of value v (sequence s) | read |
//! |---|---|---|
//! | hash | `HSET key f v` | `HGET key f` |
//! | set | `SADD key s` | the largest member of `SMEMBERS key` |
//! | sorted set | `ZADD key s m` | `ZSCORE key m` |
//! | list | `LPUSH key v` | `LINDEX key 0` |
//!
//! and a delete is `DEL key` for all four. A set's members and a list's elements accumulate
//! between deletes, so the collections grow and shrink as real ones do.

use ringcache_e2e::checker::{Op, Read};
use ringcache_e2e::resp::Reply;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Hash,
    Set,
    ZSet,
    List,
}

/// The family of typed key `t{w}-k{n}`.
pub fn family_of(key: &str) -> Family {
    let n: usize = key
        .rsplit_once("-k")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    [Family::Hash, Family::Set, Family::ZSet, Family::List][n % 4]
}

/// What the checker records for a write of `value` with sequence `seq` to `key`: the value a
/// read will return if this write is the last.
pub fn recorded(key: &str, seq: u64, value: Vec<u8>) -> Op {
    match family_of(key) {
        Family::Hash | Family::List => Op::Put(value),
        Family::Set | Family::ZSet => Op::Put(seq.to_string().into_bytes()),
    }
}

/// The command that performs `op` on `key`.
pub fn write_args(key: &str, op: &Op) -> Vec<Vec<u8>> {
    let k = key.as_bytes().to_vec();
    let Op::Put(v) = op else {
        return vec![b"DEL".to_vec(), k];
    };
    match family_of(key) {
        Family::Hash => vec![b"HSET".to_vec(), k, b"f".to_vec(), v.clone()],
        Family::Set => vec![b"SADD".to_vec(), k, v.clone()],
        Family::ZSet => vec![b"ZADD".to_vec(), k, v.clone(), b"m".to_vec()],
        Family::List => vec![b"LPUSH".to_vec(), k, v.clone()],
    }
}

/// The command that reads `key` back.
pub fn read_args(key: &str) -> Vec<Vec<u8>> {
    let k = key.as_bytes().to_vec();
    match family_of(key) {
        Family::Hash => vec![b"HGET".to_vec(), k, b"f".to_vec()],
        Family::Set => vec![b"SMEMBERS".to_vec(), k],
        Family::ZSet => vec![b"ZSCORE".to_vec(), k, b"m".to_vec()],
        Family::List => vec![b"LINDEX".to_vec(), k, b"0".to_vec()],
    }
}

/// Whether `reply` acknowledges the write `op`.
pub fn acknowledged(reply: &Reply) -> bool {
    matches!(reply, Reply::Int(_))
}

/// What a reply to [`read_args`] says the register holds.
pub fn read_value(key: &str, reply: Reply) -> Read {
    match (family_of(key), reply) {
        (_, Reply::Error(e)) => Read::Failed(e),
        (Family::Set, Reply::Array(members)) => {
            let top = members
                .iter()
                .filter_map(|m| match m {
                    Reply::Bulk(Some(b)) => std::str::from_utf8(b).ok()?.parse::<u64>().ok(),
                    _ => None,
                })
                .max();
            match top {
                Some(s) => Read::Value(s.to_string().into_bytes()),
                None if members.is_empty() => Read::NotFound,
                None => Read::Failed(format!("set {key} holds no sequence number")),
            }
        }
        (_, Reply::Bulk(Some(v))) => Read::Value(v),
        (_, Reply::Bulk(None)) => Read::NotFound,
        (_, other) => Read::Failed(format!("unexpected answer {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_family_reads_back_its_last_write() {
        assert_eq!(family_of("t0-k4"), Family::Hash);
        assert_eq!(family_of("t1-k5"), Family::Set);
        assert_eq!(family_of("t1-k6"), Family::ZSet);
        assert_eq!(family_of("t1-k7"), Family::List);
        let put = recorded("t0-k5", 42, b"ignored".to_vec());
        assert_eq!(put, Op::Put(b"42".to_vec()));
        assert_eq!(
            write_args("t0-k5", &put),
            [&b"SADD"[..], b"t0-k5", b"42"].map(<[u8]>::to_vec)
        );
        let members = Reply::Array(vec![
            Reply::Bulk(Some(b"7".to_vec())),
            Reply::Bulk(Some(b"42".to_vec())),
            Reply::Bulk(Some(b"9".to_vec())),
        ]);
        assert_eq!(read_value("t0-k5", members), Read::Value(b"42".to_vec()));
        assert_eq!(
            read_value("t0-k5", Reply::Array(Vec::new())),
            Read::NotFound
        );
        assert_eq!(
            write_args("t0-k6", &Op::Delete),
            [&b"DEL"[..], b"t0-k6"].map(<[u8]>::to_vec)
        );
        assert_eq!(read_value("t0-k7", Reply::Bulk(None)), Read::NotFound);
        assert!(matches!(
            read_value("t0-k4", Reply::Error("WRONGTYPE".into())),
            Read::Failed(_)
        ));
    }
}
