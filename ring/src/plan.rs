//! The migration plan: which partitions gain which owners when the table changes.

use crate::Table;

/// One partition that gains owners: each `gained` member must pull the partition from one of
/// `sources` (the current owners) before the new table can commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMove {
    pub partition: u32,
    pub gained: Vec<u32>,
    pub sources: Vec<u32>,
}

/// Partitions whose owner set grows from `old` to `new`, in partition order. Both tables index the
/// same member list (a ring document's current and pending tables do). Owners that only lose a
/// partition need no transfer, and a change of primary among the same owners moves no data.
pub fn diff(old: &Table, new: &Table) -> Vec<PartitionMove> {
    new.iter()
        .enumerate()
        .filter_map(|(p, owners)| {
            let before = old.get(p).map(Vec::as_slice).unwrap_or(&[]);
            let gained: Vec<u32> = owners
                .iter()
                .copied()
                .filter(|o| !before.contains(o))
                .collect();
            (!gained.is_empty()).then(|| PartitionMove {
                partition: p as u32,
                gained,
                sources: before.to_vec(),
            })
        })
        .collect()
}

/// Number of partition replicas that change owner (the quantity `rebalance` minimises).
pub fn moved_replicas(old: &Table, new: &Table) -> usize {
    diff(old, new).iter().map(|m| m.gained.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_partitions_that_gain_owners() {
        let old: Table = vec![vec![0, 1], vec![1, 2], vec![2, 0]];
        let new: Table = vec![vec![1, 0], vec![1, 3], vec![3, 2]];
        let plan = diff(&old, &new);
        assert_eq!(
            plan,
            vec![
                PartitionMove {
                    partition: 1,
                    gained: vec![3],
                    sources: vec![1, 2]
                },
                PartitionMove {
                    partition: 2,
                    gained: vec![3],
                    sources: vec![2, 0]
                },
            ]
        );
        assert_eq!(moved_replicas(&old, &new), 2);
        assert_eq!(moved_replicas(&old, &old), 0);
    }
}
