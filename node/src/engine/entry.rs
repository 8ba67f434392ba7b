//! The accounting of stored entries, and the transfer form used by replication and migration.

pub use super::kind::Kind;
use bytes::Bytes;

/// Bytes the engine charges per entry beyond the key and value bytes themselves: the block
/// header (32), the allocator's own header and rounding of the block (16 on average), and the
/// hash-table slot (an 8-byte pointer and a control byte, with the table's growth slack about
/// 16). `tests/memory_accounting.rs` checks this against a counting allocator.
pub const ENTRY_OVERHEAD: u64 = 32 + 16 + 16;

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
    /// What `value` holds (collections in their compact encoding); `String` for tombstones.
    pub kind: Kind,
}

impl Record {
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}
