//! Property tests for the three promises of `rebalance` (DESIGN.md: deterministic, balanced,
//! minimal) over random member sets: 1..=64 members, RF 1..=3, P 64..=4096.

use proptest::prelude::*;
use ringcache_ring::rebalance;
use std::collections::{BTreeMap, HashSet};

fn ids(ordinals: &[u16]) -> Vec<String> {
    ordinals.iter().map(|o| format!("demo-{o}")).collect()
}

/// Asserts every partition has min(rf, n) distinct current members and every member holds
/// ⌊⌋/⌈⌉ of the replicas and of the primaries.
fn assert_balanced(table: &[Vec<String>], members: &[String], partitions: u32, rf: u32) {
    let n = members.len();
    let r = (rf as usize).min(n);
    assert_eq!(table.len(), partitions as usize);
    let known: HashSet<&str> = members.iter().map(String::as_str).collect();
    let mut replicas: BTreeMap<&str, usize> = members.iter().map(|m| (m.as_str(), 0)).collect();
    let mut primaries = replicas.clone();
    for (p, owners) in table.iter().enumerate() {
        assert_eq!(owners.len(), r, "partition {p} has {owners:?}");
        let distinct: HashSet<&str> = owners.iter().map(String::as_str).collect();
        assert_eq!(
            distinct.len(),
            r,
            "partition {p} repeats an owner: {owners:?}"
        );
        for o in owners {
            assert!(
                known.contains(o.as_str()),
                "partition {p} names unknown {o}"
            );
            *replicas.entry(o.as_str()).or_default() += 1;
        }
        *primaries.entry(owners[0].as_str()).or_default() += 1;
    }
    let check = |what: &str, counts: &BTreeMap<&str, usize>, total: usize| {
        let (lo, hi) = (total / n, total.div_ceil(n));
        for (m, &c) in counts {
            assert!(
                (lo..=hi).contains(&c),
                "{what}: {m} holds {c}, expected {lo}..={hi} (n={n}, P={partitions}, rf={rf})"
            );
        }
    };
    check("replicas", &replicas, partitions as usize * r);
    check("primaries", &primaries, partitions as usize);
}

/// The least number of replicas any balanced table must place on a new owner, starting from
/// `previous`: a member can keep at most min(held, its target), and the ⌈⌉ targets are best spent
/// on the members that hold the most.
fn minimum_moves(previous: &[Vec<String>], members: &[String], partitions: u32, rf: u32) -> usize {
    let n = members.len();
    let r = (rf as usize).min(n);
    let total = partitions as usize * r;
    let mut held: Vec<usize> = members
        .iter()
        .map(|m| previous.iter().filter(|owners| owners.contains(m)).count())
        .collect();
    held.sort_unstable_by(|a, b| b.cmp(a));
    let (base, extra) = (total / n, total % n);
    let keepable: usize = held
        .iter()
        .enumerate()
        .map(|(i, &h)| h.min(if i < extra { base + 1 } else { base }))
        .sum();
    total - keepable
}

fn moves(previous: &[Vec<String>], next: &[Vec<String>]) -> usize {
    previous
        .iter()
        .zip(next)
        .map(|(before, after)| after.iter().filter(|o| !before.contains(o)).count())
        .sum()
}

fn member_set() -> impl Strategy<Value = Vec<u16>> {
    proptest::collection::btree_set(0u16..200, 1..=64).prop_map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn fresh_tables_are_balanced_and_deterministic(
        members in member_set(),
        partitions in 64u32..=4096,
        rf in 1u32..=3,
        seed in any::<u64>(),
    ) {
        let members = ids(&members);
        let table = rebalance(&[], &members, partitions, rf).expect("rebalance");
        assert_balanced(&table, &members, partitions, rf);
        prop_assert_eq!(&rebalance(&[], &members, partitions, rf).expect("rebalance"), &table);
        // The caller's member order must not matter.
        let mut shuffled = members.clone();
        let len = shuffled.len();
        for i in 0..len {
            let j = ((seed.rotate_left(i as u32) ^ i as u64) % len as u64) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(&rebalance(&[], &shuffled, partitions, rf).expect("rebalance"), &table);
    }

    #[test]
    fn changing_membership_moves_exactly_the_minimum(
        before in member_set(),
        after in member_set(),
        partitions in 64u32..=4096,
        rf in 1u32..=3,
    ) {
        let (before, after) = (ids(&before), ids(&after));
        let previous = rebalance(&[], &before, partitions, rf).expect("rebalance");
        let next = rebalance(&previous, &after, partitions, rf).expect("rebalance");
        assert_balanced(&next, &after, partitions, rf);
        prop_assert_eq!(moves(&previous, &next), minimum_moves(&previous, &after, partitions, rf));
        prop_assert_eq!(&rebalance(&previous, &after, partitions, rf).expect("rebalance"), &next);
    }

    #[test]
    fn scaling_one_member_at_a_time_moves_the_minimum(
        start in 1usize..=16,
        steps in proptest::collection::vec(any::<bool>(), 1..8),
        partitions in 64u32..=2048,
        rf in 1u32..=3,
    ) {
        // StatefulSet-style: ordinals 0..n, add or remove the highest.
        let mut n = start;
        let mut table = rebalance(&[], &ids(&(0..n as u16).collect::<Vec<_>>()), partitions, rf)
            .expect("rebalance");
        for grow in steps {
            let next_n = if grow { n + 1 } else { n.saturating_sub(1).max(1) };
            let members = ids(&(0..next_n as u16).collect::<Vec<_>>());
            let next = rebalance(&table, &members, partitions, rf).expect("rebalance");
            assert_balanced(&next, &members, partitions, rf);
            let moved = moves(&table, &next);
            prop_assert_eq!(moved, minimum_moves(&table, &members, partitions, rf));
            if grow && next_n > rf as usize {
                // Adding the (n+1)-th member moves about P·r/(n+1) replicas, never more than needed.
                let r = (rf as usize).min(next_n);
                prop_assert!(moved <= (partitions as usize * r).div_ceil(next_n));
            }
            table = next;
            n = next_n;
        }
    }

    #[test]
    fn arbitrary_previous_tables_still_give_balance(
        members in member_set(),
        partitions in 64u32..=1024,
        rf in 1u32..=3,
        noise in proptest::collection::vec(proptest::collection::vec(0u16..250, 0..5), 1024),
    ) {
        // Previous tables from an older, different cluster: unknown ids, duplicates, too many owners.
        let previous: Vec<Vec<String>> = (0..partitions as usize)
            .map(|p| ids(&noise[p % noise.len()]))
            .collect();
        let members = ids(&members);
        let next = rebalance(&previous, &members, partitions, rf).expect("rebalance");
        assert_balanced(&next, &members, partitions, rf);
    }
}

#[test]
fn a_stable_membership_moves_nothing() {
    let members = ids(&[0, 1, 2, 3, 4]);
    let table = rebalance(&[], &members, 1024, 2).expect("rebalance");
    assert_eq!(
        rebalance(&table, &members, 1024, 2).expect("rebalance"),
        table
    );
}

#[test]
fn adding_a_fourth_member_moves_a_quarter_of_the_replicas() {
    let three = ids(&[0, 1, 2]);
    let four = ids(&[0, 1, 2, 3]);
    let before = rebalance(&[], &three, 1024, 2).expect("rebalance");
    let after = rebalance(&before, &four, 1024, 2).expect("rebalance");
    // 2048 replicas over 4 members = 512 each; the newcomer's 512 are the only moves.
    assert_eq!(moves(&before, &after), 512);
}

#[test]
fn bad_arguments_are_errors() {
    use ringcache_ring::RebalanceError as E;
    let m = ids(&[0, 1]);
    assert_eq!(rebalance(&[], &[], 16, 1), Err(E::NoMembers));
    assert_eq!(rebalance(&[], &m, 0, 1), Err(E::ZeroPartitions));
    assert_eq!(rebalance(&[], &m, 16, 0), Err(E::ZeroReplicationFactor));
    let dup = vec!["a".to_string(), "a".to_string()];
    assert_eq!(
        rebalance(&[], &dup, 16, 1),
        Err(E::DuplicateMember("a".into()))
    );
    assert_eq!(
        rebalance(&[vec!["demo-0".into()]], &m, 16, 1),
        Err(E::PreviousLength {
            expected: 16,
            actual: 1
        })
    );
}
