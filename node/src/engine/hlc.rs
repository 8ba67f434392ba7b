//! Hybrid logical clock: versions that follow wall time but never repeat or go backwards, and that
//! move past any version seen from a peer, so "newer version wins" orders writes across nodes.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of a version reserved for the logical counter (65 536 versions per millisecond).
pub const LOGICAL_BITS: u32 = 16;

/// Version layout: `physical_ms << 16 | logical`.
pub fn compose(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << LOGICAL_BITS) | (logical & ((1 << LOGICAL_BITS) - 1))
}

/// The wall-clock part of a version, in Unix milliseconds.
pub fn physical_ms(version: u64) -> u64 {
    version >> LOGICAL_BITS
}

#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

impl Hlc {
    pub fn new() -> Hlc {
        Hlc::default()
    }

    /// A fresh version strictly greater than every version issued or observed so far (at the
    /// very top of the range it saturates instead of wrapping around to the past; versions from
    /// too far in the future are refused before they are observed, see `Engine::apply`).
    pub fn now(&self, wall_ms: u64) -> u64 {
        let wall = compose(wall_ms, 0);
        let mut cur = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(cur.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Remember a version from elsewhere so later local writes sort after it.
    pub fn observe(&self, version: u64) {
        self.last.fetch_max(version, Ordering::AcqRel);
    }

    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_increase_within_one_millisecond() {
        let h = Hlc::new();
        let a = h.now(1_000);
        let b = h.now(1_000);
        assert!(b > a);
        assert_eq!(physical_ms(a), 1_000);
    }

    #[test]
    fn wall_clock_going_back_does_not_go_back_in_version() {
        let h = Hlc::new();
        let a = h.now(5_000);
        let b = h.now(4_000);
        assert!(b > a);
    }

    #[test]
    fn the_clock_saturates_at_the_top_of_its_range() {
        let h = Hlc::new();
        h.observe(u64::MAX);
        assert_eq!(h.now(1_000), u64::MAX);
        assert_eq!(h.now(1_000), u64::MAX, "no wrap-around to the past");
    }

    #[test]
    fn observed_remote_versions_are_overtaken() {
        let h = Hlc::new();
        let remote = compose(9_000, 3);
        h.observe(remote);
        assert!(h.now(1_000) > remote);
    }
}
