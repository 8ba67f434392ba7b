//! One stored entry in one heap allocation: a 32-byte header, the key, the value.
//!
//! Why by hand: memory per key is a requirement (at most redis-server's RSS for the same data),
//! and the general-purpose layout cost ~250 bytes per 100-byte value — a map slot with a boxed
//! key, a `Bytes` value (a second allocation, and a third once shared) and the metadata. Here an
//! entry is one allocation (`32 + key + value` bytes, one malloc header) behind an 8-byte pointer
//! in the hash table. No crate offers a thin, variable-length, header-plus-payload box on stable
//! Rust (`ThinBox` is unstable; `thin-vec` spends 16 bytes of header on length and capacity), so
//! this module is the one place with `unsafe` in the engine, kept small and tested on its own.
//!
//! Header (little-endian, offsets in bytes): version u64 @0, expires_at u64 @8, access u64 @16,
//! value length u32 @24, LFU count u16 @28, key length u8 @30, flags u8 @31 (bit 0: tombstone,
//! bit 1: shared value, bits 2..5: the value's [`Kind`]).
//!
//! Values of [`SHARED_FROM`] bytes or more are not inlined: the block holds a `Bytes` of its own
//! (one exact-size copy made at write time) after the key, so a read hands out a reference count
//! instead of copying megabytes under the partition lock. Small values are copied on read,
//! which costs less than the atomic reference count would.

use super::kind::Kind;
use bytes::Bytes;
use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::ptr::NonNull;

const HEADER: usize = 32;
const TOMBSTONE: u8 = 1;
const SHARED: u8 = 2;
const KIND_SHIFT: u8 = 2;
const KIND_MASK: u8 = 0b111 << KIND_SHIFT;

/// Values this long or longer are held as a shared `Bytes` rather than inline.
pub const SHARED_FROM: usize = 4096;

/// Longest key a block holds (the API's keys are at most 250 bytes).
pub const MAX_KEY: usize = u8::MAX as usize;

/// Metadata of an entry, as stored in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub version: u64,
    /// Unix ms when the entry expires (0 = never); for a tombstone, when it may be purged.
    pub expires_at: u64,
    /// Access clock of the last read or write (LRU order, and pull confirmation).
    pub access: u64,
    /// Access count, saturating, halved periodically (LFU order).
    pub freq: u16,
    pub tombstone: bool,
    pub kind: Kind,
}

/// An owned entry: header, key and value in one allocation (aligned to 8).
pub struct Block {
    ptr: NonNull<u8>,
}

// SAFETY: a Block owns its allocation exclusively (like `Box<[u8]>`); shared access only reads,
// writes need `&mut`.
unsafe impl Send for Block {}
// SAFETY: as above: `&Block` only reads.
unsafe impl Sync for Block {}

impl Block {
    /// # Panics
    /// When `key` is longer than [`MAX_KEY`] or `value` longer than `u32::MAX` bytes, which the
    /// callers' bounds (250-byte keys, `--max-value-size`) rule out.
    pub fn new(key: &[u8], value: &[u8], meta: Meta) -> Block {
        assert!(key.len() <= MAX_KEY, "key of {} bytes", key.len());
        let vlen = u32::try_from(value.len()).expect("value length fits in u32");
        let shared = value.len() >= SHARED_FROM;
        let layout = Self::layout_for(key.len(), value.len(), shared);
        // SAFETY: the layout has a non-zero size (at least the header).
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        let p = ptr.as_ptr();
        // SAFETY: `p` points to `layout.size()` writable bytes aligned to 8; every write below
        // stays within them (offsets from the header layout above, then key and value).
        unsafe {
            p.cast::<u64>().write(meta.version.to_le());
            p.add(8).cast::<u64>().write(meta.expires_at.to_le());
            p.add(16).cast::<u64>().write(meta.access.to_le());
            p.add(24).cast::<u32>().write(vlen.to_le());
            p.add(28).cast::<u16>().write(meta.freq.to_le());
            p.add(30).write(key.len() as u8);
            let flags = if meta.tombstone { TOMBSTONE } else { 0 }
                | if shared { SHARED } else { 0 }
                | ((meta.kind as u8) << KIND_SHIFT);
            p.add(31).write(flags);
            std::ptr::copy_nonoverlapping(key.as_ptr(), p.add(HEADER), key.len());
            if shared {
                // Aligned for `Bytes` by `shared_offset`; dropped in `Drop`.
                p.add(shared_offset(key.len()))
                    .cast::<Bytes>()
                    .write(Bytes::copy_from_slice(value));
            } else {
                std::ptr::copy_nonoverlapping(
                    value.as_ptr(),
                    p.add(HEADER + key.len()),
                    value.len(),
                );
            }
        }
        Block { ptr }
    }

    fn layout_for(klen: usize, vlen: usize, shared: bool) -> Layout {
        let size = if shared {
            shared_offset(klen) + std::mem::size_of::<Bytes>()
        } else {
            HEADER + klen + vlen
        };
        // Fails only past isize::MAX bytes, which a u32 value and a u8 key cannot reach.
        Layout::from_size_align(size, 8).expect("block layout")
    }

    /// Whether the value is held as a shared `Bytes` (not inline).
    pub fn is_shared(&self) -> bool {
        // SAFETY: byte 31 of the header.
        unsafe { self.ptr.as_ptr().add(31).read() & SHARED != 0 }
    }

    /// The shared value of a block with the SHARED flag.
    fn shared(&self) -> &Bytes {
        // SAFETY: written by `new` at this aligned offset when the flag is set, and only
        // dropped with the block.
        unsafe {
            &*self
                .ptr
                .as_ptr()
                .add(shared_offset(self.klen()))
                .cast::<Bytes>()
        }
    }

    fn read_u64(&self, off: usize) -> u64 {
        // SAFETY: `off` is 0, 8 or 16: inside the header, aligned to 8.
        u64::from_le(unsafe { self.ptr.as_ptr().add(off).cast::<u64>().read() })
    }

    fn write_u64(&mut self, off: usize, v: u64) {
        // SAFETY: as in `read_u64`; `&mut self` makes the write exclusive.
        unsafe { self.ptr.as_ptr().add(off).cast::<u64>().write(v.to_le()) }
    }

    fn klen(&self) -> usize {
        // SAFETY: byte 30 of the header.
        usize::from(unsafe { self.ptr.as_ptr().add(30).read() })
    }

    fn vlen(&self) -> usize {
        // SAFETY: bytes 24..28 of the header, aligned to 4.
        u32::from_le(unsafe { self.ptr.as_ptr().add(24).cast::<u32>().read() }) as usize
    }

    pub fn key(&self) -> &[u8] {
        // SAFETY: the key's `klen` bytes follow the header, initialized by `new`, and live as
        // long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(HEADER), self.klen()) }
    }

    pub fn value(&self) -> &[u8] {
        if self.is_shared() {
            return self.shared();
        }
        // SAFETY: the value's `vlen` bytes follow the key, initialized by `new`.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(HEADER + self.klen()), self.vlen())
        }
    }

    /// The value as an owned `Bytes`: a reference count for a shared value, a copy otherwise.
    pub fn value_bytes(&self) -> Bytes {
        if self.is_shared() {
            self.shared().clone()
        } else {
            Bytes::copy_from_slice(self.value())
        }
    }

    pub fn version(&self) -> u64 {
        self.read_u64(0)
    }

    pub fn expires_at(&self) -> u64 {
        self.read_u64(8)
    }

    pub fn access(&self) -> u64 {
        self.read_u64(16)
    }

    pub fn freq(&self) -> u16 {
        // SAFETY: bytes 28..30 of the header, aligned to 2.
        u16::from_le(unsafe { self.ptr.as_ptr().add(28).cast::<u16>().read() })
    }

    pub fn is_tombstone(&self) -> bool {
        // SAFETY: byte 31 of the header.
        unsafe { self.ptr.as_ptr().add(31).read() & TOMBSTONE != 0 }
    }

    /// What the value holds (a tombstone's is `String`).
    pub fn kind(&self) -> Kind {
        // SAFETY: byte 31 of the header.
        let flags = unsafe { self.ptr.as_ptr().add(31).read() };
        // Only `new` writes the bits, from a `Kind`.
        Kind::from_u8((flags & KIND_MASK) >> KIND_SHIFT).unwrap_or_default()
    }

    pub fn meta(&self) -> Meta {
        Meta {
            version: self.version(),
            expires_at: self.expires_at(),
            access: self.access(),
            freq: self.freq(),
            tombstone: self.is_tombstone(),
            kind: self.kind(),
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        let at = self.expires_at();
        at != 0 && at <= now_ms
    }

    pub fn set_access(&mut self, tick: u64) {
        self.write_u64(16, tick);
    }

    pub fn set_freq(&mut self, freq: u16) {
        // SAFETY: bytes 28..30 of the header; `&mut self` makes the write exclusive.
        unsafe { self.ptr.as_ptr().add(28).cast::<u16>().write(freq.to_le()) }
    }

    /// A read or write of the entry: the access clock moves, the LFU count grows (saturating).
    pub fn touch(&mut self, tick: u64) {
        self.set_access(tick);
        let f = self.freq();
        self.set_freq(f.saturating_add(1));
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let shared = self.is_shared();
        if shared {
            // SAFETY: the `Bytes` written by `new`, dropped exactly once, here.
            unsafe {
                self.ptr
                    .as_ptr()
                    .add(shared_offset(self.klen()))
                    .cast::<Bytes>()
                    .drop_in_place()
            }
        }
        let layout = Self::layout_for(self.klen(), self.vlen(), shared);
        // SAFETY: allocated in `new` with this same layout (lengths and flags never change).
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// Where a shared value's `Bytes` sits: after the key, aligned to 8.
fn shared_offset(klen: usize) -> usize {
    (HEADER + klen).next_multiple_of(8)
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.vlen())
            .field("meta", &self.meta())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(v: u64) -> Meta {
        Meta {
            version: v,
            expires_at: v.wrapping_mul(3),
            access: v ^ 0xff,
            freq: (v % 65_536) as u16,
            tombstone: v % 2 == 1,
            kind: Kind::ALL[(v % 5) as usize],
        }
    }

    proptest! {
        #[test]
        fn what_goes_in_comes_out(
            key in proptest::collection::vec(any::<u8>(), 0..=MAX_KEY),
            value in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..2048),
                proptest::collection::vec(any::<u8>(), SHARED_FROM - 1..SHARED_FROM + 64),
            ],
            v in any::<u64>(),
        ) {
            let b = Block::new(&key, &value, meta(v));
            prop_assert_eq!(b.key(), &key[..]);
            prop_assert_eq!(b.value(), &value[..]);
            prop_assert_eq!(&b.value_bytes()[..], &value[..]);
            prop_assert_eq!(b.meta(), meta(v));
        }
    }

    #[test]
    fn header_updates_leave_key_and_value_alone() {
        let mut b = Block::new(b"k1", b"value", meta(4));
        b.touch(99);
        b.touch(100);
        assert_eq!(
            (b.access(), b.freq(), b.expires_at(), b.version()),
            (100, 6, 12, 4)
        );
        assert!(!b.is_tombstone());
        assert_eq!((b.key(), b.value()), (&b"k1"[..], &b"value"[..]));
        let mut hot = Block::new(
            b"k",
            b"",
            Meta {
                freq: u16::MAX,
                ..meta(2)
            },
        );
        hot.touch(1);
        assert_eq!(hot.freq(), u16::MAX, "saturates");
        assert!(hot.value().is_empty());
        assert!(hot.is_expired(6) && !hot.is_expired(5));
    }

    #[test]
    fn a_large_value_is_handed_out_by_reference() {
        let value = vec![7u8; SHARED_FROM * 4];
        let b = Block::new(b"big", &value, meta(2));
        let (one, two) = (b.value_bytes(), b.value_bytes());
        assert_eq!(one.as_ptr(), two.as_ptr(), "a copy per read");
        assert_eq!(&one[..], &value[..]);
        drop(b);
        assert_eq!(&two[..], &value[..], "outlives the block");
        let small = Block::new(b"small", &value[..SHARED_FROM - 1], meta(2));
        assert_eq!(small.value().len(), SHARED_FROM - 1);
    }

    #[test]
    #[should_panic(expected = "key of 256 bytes")]
    fn a_key_longer_than_the_header_can_say_is_refused() {
        let _ = Block::new(&[0; 256], b"", meta(0));
    }
}
