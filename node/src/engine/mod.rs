//! The storage engine: one map per ring partition behind its own lock, so a partition can be
//! listed, streamed, replaced or dropped on its own. No I/O and no clock of its own: every call takes
//! `now_ms` (Unix milliseconds), which keeps TTL and tombstone behaviour testable without sleeping.
//!
//! Memory: every entry is charged `key + value + ENTRY_OVERHEAD` bytes. Writes that would pass
//! `max_memory` evict first (LRU or LFU, approximated like Redis by sampling `eviction_samples`
//! entries spread over partitions and evicting the coldest of them; exact when the cache holds no
//! more entries than the sample) or are refused with [`EngineError::Full`] under `none`.
//! Tombstones are never evicted: they leave only when their grace ends (the sweep), so a delete
//! cannot be undone by an older copy arriving later. A cache full of fresh tombstones refuses
//! writes until the sweep frees them.
//! The bound is soft by at most the entries being written concurrently.

mod block;
mod entry;
pub mod hlc;
mod kind;
pub mod update;
pub mod value;

use block::{Block, Meta};
pub use entry::{ENTRY_OVERHEAD, Record, entry_size};
pub use hlc::Hlc;
pub use kind::{Kind, WrongKind};

use bytes::Bytes;
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// One partition's entries. Reads update the access clock of what they read, so a partition is
/// behind a mutex, not a read-write lock; with a thousand partitions per node two requests
/// rarely meet on one.
type Map = HashTable<Block>;

/// Where a key's entry is, or would go, in its partition's table.
type Slot<'m> = Result<
    hashbrown::hash_table::OccupiedEntry<'m, Block>,
    hashbrown::hash_table::AbsentEntry<'m, Block>,
>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionPolicy {
    Lru,
    Lfu,
    /// Refuse writes at the memory bound.
    None,
}

impl std::str::FromStr for EvictionPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lru" => Ok(EvictionPolicy::Lru),
            "lfu" => Ok(EvictionPolicy::Lfu),
            "none" => Ok(EvictionPolicy::None),
            other => Err(format!("expected lru, lfu or none, got {other:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub partitions: u32,
    pub max_memory: u64,
    pub eviction: EvictionPolicy,
    /// How long a delete's tombstone outlives the delete (must outlast any migration).
    pub tombstone_grace_ms: u64,
    /// Entries compared per eviction.
    pub eviction_samples: usize,
}

impl EngineConfig {
    pub fn new(partitions: u32, max_memory: u64, eviction: EvictionPolicy) -> EngineConfig {
        EngineConfig {
            partitions,
            max_memory,
            eviction,
            tombstone_grace_ms: 10 * 60 * 1000,
            eviction_samples: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("cache is full ({used} of {max} bytes) and eviction is off or found nothing to evict")]
    Full { used: u64, max: u64 },
    #[error("entry of {size} bytes can never fit in max memory {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("partition {0} is out of range")]
    NoSuchPartition(u32),
    #[error(
        "record version is {ahead_ms} ms ahead of this node's clock (more than {MAX_FUTURE_MS} ms): refused"
    )]
    FutureVersion { ahead_ms: u64 },
}

/// How far ahead of the local clock a replicated version may be (clock skew between nodes is
/// far smaller; a version much further ahead would block every later write of its key).
pub const MAX_FUTURE_MS: u64 = 3_600_000;

/// What `apply` did with an incoming record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Stored: it was newer than what this node had (or this node had nothing).
    Stored,
    /// Ignored: this node already holds the same or a newer version.
    Stale,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineStats {
    pub items: u64,
    pub tombstones: u64,
    pub bytes: u64,
    pub max_memory: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expired: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepResult {
    pub expired: u64,
    pub tombstones_purged: u64,
}

pub struct Engine {
    cfg: EngineConfig,
    parts: Box<[Mutex<Map>]>,
    hasher: foldhash::fast::RandomState,
    hlc: Hlc,
    bytes: AtomicU64,
    items: AtomicU64,
    tombstones: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    expired: AtomicU64,
    /// Access clock for LRU order: a counter, so order is exact even within one millisecond.
    tick: AtomicU64,
    rng: AtomicU64,
    last_decay_ms: AtomicU64,
}

/// Eviction order key: (not expired, primary order, tie-break); the smallest is evicted.
type Score = (u8, u64, u64);

/// LFU counts are halved this often so that formerly hot keys can cool down.
const LFU_DECAY_MS: u64 = 60_000;

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let n = cfg.partitions.max(1);
        let parts = (0..n)
            .map(|_| Mutex::new(Map::new()))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Engine {
            cfg,
            parts,
            hasher: foldhash::fast::RandomState::default(),
            hlc: Hlc::new(),
            bytes: AtomicU64::new(0),
            items: AtomicU64::new(0),
            tombstones: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            tick: AtomicU64::new(1),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            last_decay_ms: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn partitions(&self) -> u32 {
        self.parts.len() as u32
    }

    pub fn partition_of(&self, key: &[u8]) -> u32 {
        ringcache_ring::partition_of(key, self.partitions())
    }

    pub fn hlc(&self) -> &Hlc {
        &self.hlc
    }

    fn part(&self, key: &[u8]) -> &Mutex<Map> {
        &self.parts[self.partition_of(key) as usize]
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn find<'m>(&self, map: &'m Map, key: &[u8]) -> Option<&'m Block> {
        map.find(self.hash(key), |b| b.key() == key)
    }

    fn find_mut<'m>(&self, map: &'m mut Map, key: &[u8]) -> Option<&'m mut Block> {
        map.find_mut(self.hash(key), |b| b.key() == key)
    }

    fn next_tick(&self) -> u64 {
        self.tick.fetch_add(1, Ordering::Relaxed)
    }

    /// The live string value of `key`, counting a hit or a miss. Expired entries are misses and
    /// are removed; a key of another kind reads as absent (as `MGET` answers it).
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<Bytes> {
        self.get_string(key, now_ms).ok().flatten()
    }

    /// The live string value of `key`; a key of another kind is [`WrongKind`] (as `GET`
    /// answers it).
    pub fn get_string(&self, key: &[u8], now_ms: u64) -> Result<Option<Bytes>, WrongKind> {
        self.lookup(self.partition_of(key), key, now_ms, |b| match b.kind() {
            Kind::String => Ok(b.value_bytes()),
            k => Err(WrongKind(k)),
        })
        .transpose()
    }

    /// What kind of value `key` holds, if it is live (`TYPE`). Counts as a read.
    pub fn kind_of(&self, key: &[u8], now_ms: u64) -> Option<Kind> {
        self.lookup(self.partition_of(key), key, now_ms, Block::kind)
    }

    /// [`Engine::get_string`] for a key whose partition `p` the caller already knows, handing
    /// the value to `f` (no copy of its own: a RESP answer is written straight from the store).
    /// A large (shared) value is handed to `f` after the partition's lock is released, so
    /// copying it out does not hold up the partition.
    pub fn get_in<R>(
        &self,
        p: u32,
        key: &[u8],
        now_ms: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, WrongKind> {
        let mut f = Some(f);
        let mut shared = None;
        let inline = self.lookup(p, key, now_ms, |b| {
            if b.kind() != Kind::String {
                Err(WrongKind(b.kind()))
            } else if b.is_shared() {
                shared = Some(b.value_bytes());
                Ok(None)
            } else {
                Ok(f.take().map(|f| f(b.value())))
            }
        });
        Ok(match (inline.transpose()?.flatten(), shared, f) {
            (Some(r), _, _) => Some(r),
            (None, Some(v), Some(f)) => Some(f(&v)),
            _ => None,
        })
    }

    fn lookup<R>(&self, p: u32, key: &[u8], now_ms: u64, f: impl FnOnce(&Block) -> R) -> Option<R> {
        let mut map = self.parts[p as usize % self.parts.len()].lock();
        let h = self.hash(key);
        let (live, expired) = match map.find_mut(h, |b| b.key() == key) {
            Some(b) if b.is_tombstone() => (None, false),
            Some(b) if b.is_expired(now_ms) => (None, true),
            Some(b) => {
                b.touch(self.next_tick());
                (Some(f(b)), false)
            }
            None => (None, false),
        };
        if live.is_some() {
            drop(map);
            self.hits.fetch_add(1, Ordering::Relaxed);
            return live;
        }
        if expired {
            self.remove_locked(&mut map, key);
            self.expired.fetch_add(1, Ordering::Relaxed);
        }
        drop(map);
        self.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// The stored record for `key`, tombstones included, expired entries excluded. No hit/miss count.
    pub fn get_record(&self, key: &[u8], now_ms: u64) -> Option<Record> {
        let map = self.part(key).lock();
        let b = self.find(&map, key)?;
        if !b.is_tombstone() && b.is_expired(now_ms) {
            return None;
        }
        Some(to_record(b))
    }

    /// Stores `value` under a fresh version; `ttl_ms` of `None` means no expiry.
    pub fn set(
        &self,
        key: &[u8],
        value: Bytes,
        ttl_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Record, EngineError> {
        let version = self.hlc.now(now_ms);
        let expires_at = ttl_ms.map_or(0, |t| now_ms.saturating_add(t.max(1)));
        let rec = Record {
            key: Bytes::copy_from_slice(key),
            version,
            expires_at,
            value: Some(value),
            kind: Kind::String,
        };
        self.store(&rec, false, now_ms)?;
        Ok(rec)
    }

    /// Deletes by writing a tombstone that lives for the configured grace period.
    pub fn delete(&self, key: &[u8], now_ms: u64) -> Result<Record, EngineError> {
        let version = self.hlc.now(now_ms);
        let rec = Record {
            key: Bytes::copy_from_slice(key),
            version,
            expires_at: now_ms.saturating_add(self.cfg.tombstone_grace_ms),
            value: None,
            kind: Kind::String,
        };
        self.store(&rec, false, now_ms)?;
        Ok(rec)
    }

    /// Applies a record from a peer (replication, migration, snapshot): newer version wins.
    pub fn apply(&self, rec: &Record, now_ms: u64) -> Result<Applied, EngineError> {
        let physical = hlc::physical_ms(rec.version);
        if physical > now_ms.saturating_add(MAX_FUTURE_MS) {
            return Err(EngineError::FutureVersion {
                ahead_ms: physical - now_ms,
            });
        }
        self.hlc.observe(rec.version);
        if rec.expires_at != 0 && rec.expires_at <= now_ms {
            // Already expired (or a tombstone past its grace): storing it would only be swept.
            // A live older entry must still lose to it, so remove that one if it is older.
            let mut map = self.part(&rec.key).lock();
            if self
                .find(&map, &rec.key)
                .is_some_and(|b| b.version() < rec.version)
            {
                self.remove_locked(&mut map, &rec.key);
                return Ok(Applied::Stored);
            }
            return Ok(Applied::Stale);
        }
        self.store(rec, true, now_ms)
    }

    fn store(
        &self,
        rec: &Record,
        only_if_newer: bool,
        now_ms: u64,
    ) -> Result<Applied, EngineError> {
        let value: &[u8] = rec.value.as_deref().unwrap_or(&[]);
        let size = entry_size(rec.key.len(), value.len());
        if size > self.cfg.max_memory {
            return Err(EngineError::TooLarge {
                size,
                max: self.cfg.max_memory,
            });
        }
        let part = self.part(&rec.key);
        let h = self.hash(&rec.key);
        // The value is copied into the block, so the stored entry never keeps a request buffer
        // alive (see FIELD-NOTES).
        let block = Block::new(
            &rec.key,
            value,
            Meta {
                version: rec.version,
                expires_at: rec.expires_at,
                access: self.next_tick(),
                freq: 1,
                tombstone: rec.value.is_none(),
                kind: rec.kind,
            },
        );
        // One pass under the lock when there is room; otherwise evict with the lock released
        // (eviction takes other partitions' locks) and store on the second pass.
        let mut evicted = false;
        let old = loop {
            let mut map = part.lock();
            let entry = map.find_entry(h, |b| b.key() == &rec.key[..]);
            let old_size = match &entry {
                Ok(slot) if only_if_newer && slot.get().version() >= rec.version => {
                    return Ok(Applied::Stale);
                }
                Ok(slot) => entry_size(rec.key.len(), slot.get().value().len()),
                Err(_) => 0,
            };
            let need = size.saturating_sub(old_size);
            if !evicted
                && self.bytes.load(Ordering::Relaxed).saturating_add(need) > self.cfg.max_memory
            {
                drop(entry);
                drop(map);
                self.make_room(need, now_ms)?;
                evicted = true;
                continue;
            }
            break self.place(entry, h, block);
        };
        self.counted(size, rec.value.is_none(), old);
        Ok(Applied::Stored)
    }

    /// Puts `block` where `entry` points: over the entry found (returned) or into the table.
    fn place(&self, entry: Slot<'_>, h: u64, block: Block) -> Option<Block> {
        match entry {
            Ok(mut slot) => Some(std::mem::replace(slot.get_mut(), block)),
            Err(absent) => {
                absent
                    .into_table()
                    .insert_unique(h, block, |b| self.hash(b.key()));
                None
            }
        }
    }

    /// Counts a stored entry of `size` bytes that replaced `old`.
    fn counted(&self, size: u64, tombstone: bool, old: Option<Block>) {
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.count_kind(tombstone, 1);
        if let Some(old) = old {
            self.forget(&old);
        }
    }

    fn count_kind(&self, tombstone: bool, delta: i64) {
        let c = if tombstone {
            &self.tombstones
        } else {
            &self.items
        };
        if delta > 0 {
            c.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            c.fetch_sub((-delta) as u64, Ordering::Relaxed);
        }
    }

    /// Takes a removed block out of the counts.
    fn forget(&self, b: &Block) {
        self.bytes.fetch_sub(
            entry_size(b.key().len(), b.value().len()),
            Ordering::Relaxed,
        );
        self.count_kind(b.is_tombstone(), -1);
    }

    fn remove_locked(&self, map: &mut Map, key: &[u8]) -> Option<Block> {
        let slot = map.find_entry(self.hash(key), |b| b.key() == key).ok()?;
        let (old, _) = slot.remove();
        self.forget(&old);
        Some(old)
    }

    fn make_room(&self, need: u64, now_ms: u64) -> Result<(), EngineError> {
        let max = self.cfg.max_memory;
        loop {
            let used = self.bytes.load(Ordering::Relaxed);
            if used.saturating_add(need) <= max {
                return Ok(());
            }
            if self.cfg.eviction == EvictionPolicy::None || !self.evict_one(now_ms) {
                return Err(EngineError::Full { used, max });
            }
        }
    }

    fn random(&self) -> u64 {
        // splitmix64 over a shared counter: cheap, lock-free, good enough to spread samples.
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Score: lower is evicted first. Expired entries always go first.
    fn score(&self, b: &Block, now_ms: u64) -> Score {
        if b.is_expired(now_ms) && !b.is_tombstone() {
            return (0, 0, 0);
        }
        let last = b.access();
        match self.cfg.eviction {
            EvictionPolicy::Lfu => (1, u64::from(b.freq()), last),
            _ => (1, last, 0),
        }
    }

    /// Evicts the coldest of a sample of entries. Returns false when there is nothing to evict.
    fn evict_one(&self, now_ms: u64) -> bool {
        let n = self.parts.len();
        let samples = self.cfg.eviction_samples.max(1);
        // Take a few entries from each visited partition so the sample spans many partitions.
        let per_part = samples.div_ceil(4).max(1);
        let start = (self.random() % n as u64) as usize;
        let mut seen = 0usize;
        let mut best: Option<(Score, usize, Vec<u8>)> = None;
        for i in 0..n {
            let p = (start + i) % n;
            let map = self.parts[p].lock();
            let len = map.len();
            if len == 0 {
                continue;
            }
            let take = per_part.min(len).min(samples.saturating_sub(seen).max(1));
            // Exhaustive when the partition is small enough; otherwise a run of entries from a
            // random position of the table's (hash-ordered, so access-independent) iteration.
            let skip = if len <= take {
                0
            } else {
                (self.random() % (len - take + 1) as u64) as usize
            };
            for b in map.iter().skip(skip).take(take) {
                // A tombstone is never evicted before its grace ends: without it, a replica
                // or a pull could bring the deleted value back.
                if b.is_tombstone() {
                    continue;
                }
                seen += 1;
                let s = self.score(b, now_ms);
                if best.as_ref().is_none_or(|(bs, _, _)| s < *bs) {
                    best = Some((s, p, b.key().to_vec()));
                }
            }
            if seen >= samples {
                break;
            }
        }
        let Some((_, p, key)) = best else {
            return false;
        };
        let mut map = self.parts[p].lock();
        match self.remove_locked(&mut map, &key) {
            Some(b) => {
                if b.is_expired(now_ms) && !b.is_tombstone() {
                    self.expired.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            // Someone removed it meanwhile: that freed memory too, let the caller re-check.
            None => true,
        }
    }

    /// Records of partition `p` with keys strictly after `after`, in key order, at most `limit`.
    /// Tombstones are included (so deletes travel); expired entries are not. A cursor over the
    /// last returned key makes the scan resumable and bounded in memory.
    pub fn scan_partition(
        &self,
        p: u32,
        after: Option<&[u8]>,
        limit: usize,
        now_ms: u64,
    ) -> Result<Vec<Record>, EngineError> {
        let part = self
            .parts
            .get(p as usize)
            .ok_or(EngineError::NoSuchPartition(p))?;
        let map = part.lock();
        let mut picked: Vec<&Block> = map
            .iter()
            .filter(|b| {
                after.is_none_or(|a| b.key() > a) && (b.is_tombstone() || !b.is_expired(now_ms))
            })
            .collect();
        if picked.len() > limit {
            if limit == 0 {
                return Ok(Vec::new());
            }
            picked.select_nth_unstable_by(limit - 1, |a, b| a.key().cmp(b.key()));
            picked.truncate(limit);
        }
        picked.sort_unstable_by(|a, b| a.key().cmp(b.key()));
        Ok(picked.into_iter().map(to_record).collect())
    }

    /// The access clock now: entries stored or confirmed from here on carry a tick at least this.
    pub fn current_tick(&self) -> u64 {
        self.tick.load(Ordering::Relaxed)
    }

    /// Marks the entry of `key` as seen now (a pulled record equal to or older than it).
    pub fn confirm(&self, key: &[u8]) {
        let tick = self.next_tick();
        let mut map = self.part(key).lock();
        if let Some(b) = self.find_mut(&mut map, key) {
            b.set_access(tick);
        }
    }

    /// Removes entries of partition `p` neither stored nor confirmed since tick `since` whose
    /// version is older than `older_than`. Returns how many.
    pub fn remove_unconfirmed(
        &self,
        p: u32,
        since: u64,
        older_than: u64,
    ) -> Result<usize, EngineError> {
        let part = self
            .parts
            .get(p as usize)
            .ok_or(EngineError::NoSuchPartition(p))?;
        let mut map = part.lock();
        let mut removed = Vec::new();
        map.retain(|b| {
            let keep = b.access() >= since || b.version() >= older_than;
            if !keep {
                removed.push((b.key().len(), b.value().len(), b.is_tombstone()));
            }
            keep
        });
        drop(map);
        for &(k, v, tomb) in &removed {
            self.bytes.fetch_sub(entry_size(k, v), Ordering::Relaxed);
            self.count_kind(tomb, -1);
        }
        Ok(removed.len())
    }

    /// Removes every entry of partition `p` (after the ring no longer gives it to this node).
    pub fn drop_partition(&self, p: u32) -> Result<usize, EngineError> {
        let part = self
            .parts
            .get(p as usize)
            .ok_or(EngineError::NoSuchPartition(p))?;
        let old = std::mem::take(&mut *part.lock());
        for b in &old {
            self.forget(b);
        }
        Ok(old.len())
    }

    /// The live keys of partition `p` that `keep` accepts (by key and kind), in no order.
    pub fn live_keys(
        &self,
        p: u32,
        now_ms: u64,
        mut keep: impl FnMut(&[u8], Kind) -> bool,
    ) -> Result<Vec<Bytes>, EngineError> {
        let part = self
            .parts
            .get(p as usize)
            .ok_or(EngineError::NoSuchPartition(p))?;
        Ok(part
            .lock()
            .iter()
            .filter(|b| !b.is_tombstone() && !b.is_expired(now_ms) && keep(b.key(), b.kind()))
            .map(|b| Bytes::copy_from_slice(b.key()))
            .collect())
    }

    /// Live (non-tombstone, unexpired) entries in partition `p`.
    pub fn partition_len(&self, p: u32, now_ms: u64) -> usize {
        self.parts.get(p as usize).map_or(0, |part| {
            part.lock()
                .iter()
                .filter(|b| !b.is_tombstone() && !b.is_expired(now_ms))
                .count()
        })
    }

    /// Active expiry: removes expired entries and tombstones past their grace; halves LFU counts
    /// once per `LFU_DECAY_MS`.
    pub fn sweep(&self, now_ms: u64) -> SweepResult {
        let mut res = SweepResult::default();
        let decay = self.cfg.eviction == EvictionPolicy::Lfu
            && now_ms.saturating_sub(self.last_decay_ms.load(Ordering::Relaxed)) >= LFU_DECAY_MS;
        if decay {
            self.last_decay_ms.store(now_ms, Ordering::Relaxed);
        }
        for part in self.parts.iter() {
            let mut map = part.lock();
            if decay {
                for b in map.iter_mut() {
                    let f = b.freq();
                    b.set_freq(f / 2);
                }
            }
            if !map.iter().any(|b| b.is_expired(now_ms)) {
                continue;
            }
            let mut freed = 0u64;
            map.retain(|b| {
                if !b.is_expired(now_ms) {
                    return true;
                }
                freed += entry_size(b.key().len(), b.value().len());
                if b.is_tombstone() {
                    res.tombstones_purged += 1;
                    self.count_kind(true, -1);
                } else {
                    res.expired += 1;
                    self.count_kind(false, -1);
                }
                false
            });
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
        }
        self.expired.fetch_add(res.expired, Ordering::Relaxed);
        res
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            items: self.items.load(Ordering::Relaxed),
            tombstones: self.tombstones.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            max_memory: self.cfg.max_memory,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
        }
    }
}

fn to_record(b: &Block) -> Record {
    Record {
        key: Bytes::copy_from_slice(b.key()),
        version: b.version(),
        expires_at: b.expires_at(),
        value: (!b.is_tombstone()).then(|| b.value_bytes()),
        kind: b.kind(),
    }
}

#[cfg(test)]
mod tests;
