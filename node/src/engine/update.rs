//! Read-modify-write of one key under its partition lock: the primitive behind conditional sets,
//! counters, appends and expiry changes (the Redis front's `SET NX`, `INCR`, `EXPIRE`, …).

use super::block::{Block, Meta};
use super::{Engine, EngineError, Kind, Record, entry_size};
use bytes::Bytes;
use std::sync::atomic::Ordering;

/// A live entry as an update sees it.
#[derive(Debug, Clone, Copy)]
pub struct Current<'a> {
    pub kind: Kind,
    pub value: &'a [u8],
    /// Unix ms when it expires (0 = never).
    pub expires_at: u64,
}

/// What an update decided, with its answer `R`.
#[derive(Debug)]
pub enum Change<R> {
    /// Nothing is written.
    Keep(R),
    /// Stores `value` of `kind` with `expires_at` (0 = never) under a fresh version.
    Put {
        kind: Kind,
        value: Bytes,
        expires_at: u64,
        answer: R,
    },
    /// Deletes the key (a tombstone, as `delete` writes).
    Remove(R),
}

/// Attempts before a write that keeps needing room elsewhere gives up (eviction ran between
/// attempts; another writer took the room each time).
const ATTEMPTS: usize = 8;

impl Engine {
    /// Runs `decide` on the live entry of `key` (None: absent, expired or deleted) and applies
    /// its [`Change`] atomically with the read. Returns the answer and, when something was
    /// written, the record to replicate.
    ///
    /// `decide` may run more than once: when the write needs room, the lock is released to
    /// evict (eviction takes other partitions' locks) and the decision is taken again on what
    /// the key holds then.
    pub fn update<R>(
        &self,
        key: &[u8],
        now_ms: u64,
        mut decide: impl FnMut(Option<Current<'_>>) -> Change<R>,
    ) -> Result<(R, Option<Record>), EngineError> {
        let part = self.part(key);
        let h = self.hash(key);
        for _ in 0..ATTEMPTS {
            let mut map = part.lock();
            let (change, old_size) = {
                let live = map
                    .find(h, |b| b.key() == key)
                    .filter(|b| !b.is_tombstone() && !b.is_expired(now_ms));
                let old_size = map
                    .find(h, |b| b.key() == key)
                    .map_or(0, |b| entry_size(key.len(), b.value().len()));
                let current = live.map(|b| Current {
                    kind: b.kind(),
                    value: b.value(),
                    expires_at: b.expires_at(),
                });
                (decide(current), old_size)
            };
            let (kind, value, expires_at, answer) = match change {
                Change::Keep(answer) => return Ok((answer, None)),
                Change::Put {
                    kind,
                    value,
                    expires_at,
                    answer,
                } => (kind, Some(value), expires_at, answer),
                Change::Remove(answer) => (
                    Kind::String,
                    None,
                    now_ms.saturating_add(self.cfg.tombstone_grace_ms),
                    answer,
                ),
            };
            let vlen = value.as_ref().map_or(0, Bytes::len);
            let size = entry_size(key.len(), vlen);
            if size > self.cfg.max_memory {
                return Err(EngineError::TooLarge {
                    size,
                    max: self.cfg.max_memory,
                });
            }
            let need = size.saturating_sub(old_size);
            if self.bytes.load(Ordering::Relaxed).saturating_add(need) > self.cfg.max_memory {
                drop(map);
                self.make_room(need, now_ms)?;
                continue;
            }
            let rec = Record {
                key: Bytes::copy_from_slice(key),
                version: self.hlc.now(now_ms),
                expires_at,
                value,
                kind,
            };
            let block = Block::new(
                key,
                rec.value.as_deref().unwrap_or(&[]),
                Meta {
                    version: rec.version,
                    expires_at,
                    access: self.next_tick(),
                    freq: 1,
                    tombstone: rec.value.is_none(),
                    kind,
                },
            );
            let old = self.place(map.find_entry(h, |b| b.key() == key), h, block);
            drop(map);
            self.counted(size, rec.value.is_none(), old);
            return Ok((answer, Some(rec)));
        }
        Err(EngineError::Full {
            used: self.bytes.load(Ordering::Relaxed),
            max: self.cfg.max_memory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, EvictionPolicy};

    fn engine(max: u64, eviction: EvictionPolicy) -> Engine {
        Engine::new(EngineConfig::new(4, max, eviction))
    }

    fn incr(e: &Engine, key: &[u8], now: u64) -> Option<i64> {
        let (n, _) = e
            .update(key, now, |cur| {
                let n = cur.map_or(Some(0), |c| {
                    std::str::from_utf8(c.value).ok()?.parse::<i64>().ok()
                });
                match n {
                    Some(n) => Change::Put {
                        kind: Kind::String,
                        value: Bytes::from((n + 1).to_string()),
                        expires_at: cur.map_or(0, |c| c.expires_at),
                        answer: Some(n + 1),
                    },
                    None => Change::Keep(None),
                }
            })
            .unwrap();
        n
    }

    #[test]
    fn read_and_write_happen_as_one_step() {
        let e = std::sync::Arc::new(engine(1 << 20, EvictionPolicy::Lru));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let e = e.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        incr(&e, b"n", 1_000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(e.get(b"n", 1_000).as_deref(), Some(&b"2000"[..]));
        assert_eq!(e.stats().items, 1);
    }

    #[test]
    fn keep_writes_nothing_and_remove_leaves_a_tombstone() {
        let e = engine(1 << 20, EvictionPolicy::Lru);
        e.set(b"s", Bytes::from_static(b"text"), None, 1_000)
            .unwrap();
        assert_eq!(incr(&e, b"s", 1_001), None);
        assert_eq!(e.get(b"s", 1_001).as_deref(), Some(&b"text"[..]));
        let (existed, rec) = e
            .update(b"s", 1_002, |c| Change::Remove(c.is_some()))
            .unwrap();
        assert!(existed);
        let rec = rec.unwrap();
        assert!(rec.is_tombstone());
        assert_eq!(e.get(b"s", 1_003), None);
        assert_eq!(e.stats().tombstones, 1);
        assert_eq!(e.get_record(b"s", 1_003).unwrap().version, rec.version);
    }

    #[test]
    fn an_expired_entry_is_absent_to_the_update() {
        let e = engine(1 << 20, EvictionPolicy::Lru);
        e.set(b"t", Bytes::from_static(b"41"), Some(10), 1_000)
            .unwrap();
        assert_eq!(incr(&e, b"t", 1_005), Some(42), "ttl not yet passed");
        assert_eq!(incr(&e, b"t", 1_020), Some(1), "counts from zero again");
    }

    #[test]
    fn a_write_that_needs_room_evicts_or_is_refused() {
        let small = 4 * entry_size(3, 100);
        let e = engine(small, EvictionPolicy::Lru);
        for k in [b"k01", b"k02", b"k03", b"k04"] {
            e.set(k, Bytes::from(vec![1; 100]), None, 1_000).unwrap();
        }
        let put = |e: &Engine| {
            e.update(b"k05", 1_000, |_| Change::Put {
                kind: Kind::String,
                value: Bytes::from(vec![2; 100]),
                expires_at: 0,
                answer: (),
            })
        };
        assert!(put(&e).unwrap().1.is_some());
        assert_eq!(e.stats().items, 4);
        assert_eq!(e.stats().evictions, 1);
        let full = engine(small, EvictionPolicy::None);
        for k in [b"k01", b"k02", b"k03", b"k04"] {
            full.set(k, Bytes::from(vec![1; 100]), None, 1_000).unwrap();
        }
        assert!(matches!(put(&full), Err(EngineError::Full { .. })));
        assert_eq!(full.get(b"k05", 1_000), None);
    }
}
