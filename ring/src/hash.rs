use xxhash_rust::xxh3::xxh3_64;

/// Partition count a cluster gets unless its spec says otherwise; fixed for the cluster's life.
pub const DEFAULT_PARTITIONS: u32 = 1024;

/// Longest key accepted anywhere (bytes).
pub const MAX_KEY_LEN: usize = 250;

/// `xxh3_64(key) mod partitions`. `partitions` must be non-zero (a validated ring guarantees it).
#[inline]
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    debug_assert!(partitions > 0, "partition count must be non-zero");
    (xxh3_64(key) % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_is_xxh3_mod_p() {
        // Reference values computed independently from the xxh3 specification test vectors:
        // xxh3_64("") = 0x2D06800538D394C2.
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(
            partition_of(b"", 1024),
            (0x2D06_8005_38D3_94C2u64 % 1024) as u32
        );
    }

    #[test]
    fn partitions_stay_in_range_and_spread() {
        let p = 64;
        let mut counts = vec![0u32; p as usize];
        for i in 0..64_000u32 {
            let k = format!("key-{i}");
            let part = partition_of(k.as_bytes(), p);
            assert!(part < p);
            counts[part as usize] += 1;
        }
        // 1000 expected per partition; xxh3 keeps every bucket well within ±20%.
        assert!(
            counts.iter().all(|&c| (800..=1200).contains(&c)),
            "{counts:?}"
        );
    }
}
