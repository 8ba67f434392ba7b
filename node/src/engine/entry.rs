//! What the engine stores per key, and the transfer form used by replication and migration.

use bytes::Bytes;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A stored entry. A tombstone records a delete (no value) until its grace period ends.
#[derive(Debug)]
pub struct Entry {
    pub(crate) value: Bytes,
    pub(crate) version: u64,
    /// Unix ms when the entry expires (0 = never). For a tombstone: when it may be purged.
    pub(crate) expires_at: u64,
    pub(crate) tombstone: bool,
    /// Global access tick of the last read or write (LRU order).
    pub(crate) last_access: AtomicU64,
    /// Access count, halved periodically (LFU order).
    pub(crate) freq: AtomicU32,
}

impl Entry {
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now_ms
    }

    pub(crate) fn touch(&self, tick: u64) {
        self.last_access.store(tick, Ordering::Relaxed);
        // Saturating: a hot key keeps the maximum instead of wrapping to cold.
        let f = self.freq.load(Ordering::Relaxed);
        if f < u32::MAX {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }
}

/// Bytes the engine holds per entry beyond the key and value bytes themselves:
/// the map slot (hash + boxed key pointer/len + `Entry`), the hash-index slot (8 bytes + 1 control
/// byte, rounded up to 16 for the table's load factor slack), and one allocator header (16 bytes)
/// for each of the two heap allocations (key, value). A test with a counting allocator
/// (`tests/memory_accounting.rs`) checks that this stays close to what is really allocated.
pub const ENTRY_OVERHEAD: u64 =
    (std::mem::size_of::<(u64, Box<[u8]>, Entry)>() + 16 + 2 * 16) as u64;

/// Accounted size of one entry.
pub fn entry_size(key_len: usize, value_len: usize) -> u64 {
    key_len as u64 + value_len as u64 + ENTRY_OVERHEAD
}

/// An entry as it travels between nodes (replication, migration, snapshots).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub version: u64,
    /// Unix ms expiry (0 = never); for tombstones the purge time.
    pub expires_at: u64,
    /// `None` = tombstone (the key was deleted at `version`).
    pub value: Option<Bytes>,
}

impl Record {
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}
