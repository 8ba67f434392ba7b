//! Compares ringcache's partition table with a virtual-node consistent-hash ring on the two numbers
//! DESIGN.md promises: balance (replicas per member, max/mean) and movement when a member joins.
//!
//! Run: `cargo run --release -p ringcache-ring --example compare_vnodes`

use ringcache_ring::rebalance;
use std::collections::BTreeMap;
use xxhash_rust::xxh3::xxh3_64;

const PARTITIONS: u32 = 1024;
const RF: usize = 2;

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("demo-{i}")).collect()
}

/// Owners of each partition on a vnode ring: walk clockwise from the partition's hash and take the
/// first RF distinct members.
fn vnode_table(members: &[String], vnodes: usize) -> Vec<Vec<String>> {
    let mut ring: Vec<(u64, &str)> = members
        .iter()
        .flat_map(|m| {
            (0..vnodes).map(move |v| (xxh3_64(format!("{m}#{v}").as_bytes()), m.as_str()))
        })
        .collect();
    ring.sort_unstable();
    (0..PARTITIONS)
        .map(|p| {
            let h = xxh3_64(&p.to_le_bytes());
            let start = ring.partition_point(|&(x, _)| x < h);
            let mut owners: Vec<String> = Vec::new();
            for i in 0..ring.len() {
                let m = ring[(start + i) % ring.len()].1;
                if !owners.iter().any(|o| o == m) {
                    owners.push(m.to_string());
                }
                if owners.len() == RF.min(members.len()) {
                    break;
                }
            }
            owners
        })
        .collect()
}

fn spread(table: &[Vec<String>]) -> f64 {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for owners in table {
        for o in owners {
            *counts.entry(o).or_default() += 1;
        }
    }
    let max = counts.values().copied().max().unwrap_or(0) as f64;
    let mean = counts.values().sum::<usize>() as f64 / counts.len().max(1) as f64;
    max / mean
}

fn moves(a: &[Vec<String>], b: &[Vec<String>]) -> usize {
    a.iter()
        .zip(b)
        .map(|(x, y)| y.iter().filter(|o| !x.contains(o)).count())
        .sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "P={PARTITIONS} RF={RF}; moves = replicas placed on a new owner when member n+1 joins"
    );
    println!(
        "| n → n+1 | ⌈P·RF/(n+1)⌉ | table: max/mean | table: moves | vnodes(128): max/mean | vnodes(128): moves |"
    );
    println!("|---|---|---|---|---|---|");
    for n in [3usize, 4, 8, 16, 32] {
        let (before, after) = (ids(n), ids(n + 1));
        let t0 = rebalance(&[], &before, PARTITIONS, RF as u32)?;
        let t1 = rebalance(&t0, &after, PARTITIONS, RF as u32)?;
        let v0 = vnode_table(&before, 128);
        let v1 = vnode_table(&after, 128);
        let ideal = (PARTITIONS as usize * RF).div_ceil(n + 1);
        println!(
            "| {n} → {} | {ideal} | {:.3} | {} | {:.3} | {} |",
            n + 1,
            spread(&t1),
            moves(&t0, &t1),
            spread(&v1),
            moves(&v0, &v1)
        );
    }
    Ok(())
}
