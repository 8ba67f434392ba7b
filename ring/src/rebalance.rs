//! `rebalance(previous, members, partitions, rf)`: the partition table the operator writes.
//!
//! Guarantees (proved by the property tests in `tests/rebalance_props.rs`):
//! 1. deterministic — and independent of the order `members` is given in;
//! 2. balanced — every member holds ⌊P·r/n⌋ or ⌈P·r/n⌉ replicas and ⌊P/n⌋ or ⌈P/n⌉ primaries,
//!    where r = min(rf, n);
//! 3. minimal — the replicas that change owner are exactly those balance forces to move: a member
//!    keeps min(held, target) of what it held, and the members that hold the most get the ⌈⌉ targets.
//!
//! Why not a virtual-node hash ring: its balance is only ±10–20% at 100+ vnodes and it moves more
//! than the minimum; here the operator owns the table, so it can simply be optimal.

use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebalanceError {
    #[error("cannot build a table without members")]
    NoMembers,
    #[error("partitions must be at least 1")]
    ZeroPartitions,
    #[error("replication factor must be at least 1")]
    ZeroReplicationFactor,
    #[error("member id {0:?} is listed twice")]
    DuplicateMember(String),
    #[error("member ids must not be empty")]
    EmptyMemberId,
    #[error("previous table has {actual} partitions, expected {expected} (or none)")]
    PreviousLength { expected: u32, actual: usize },
    #[error("no balanced placement found for partition {partition} (internal invariant broken)")]
    Unplaceable { partition: usize },
}

/// Computes the next partition table by member id. `previous` is the current table by id (empty
/// for a new cluster); ids in it that are not in `members` are treated as gone.
pub fn rebalance(
    previous: &[Vec<String>],
    members: &[String],
    partitions: u32,
    rf: u32,
) -> Result<Vec<Vec<String>>, RebalanceError> {
    if partitions == 0 {
        return Err(RebalanceError::ZeroPartitions);
    }
    if rf == 0 {
        return Err(RebalanceError::ZeroReplicationFactor);
    }
    if members.is_empty() {
        return Err(RebalanceError::NoMembers);
    }
    if !previous.is_empty() && previous.len() != partitions as usize {
        return Err(RebalanceError::PreviousLength {
            expected: partitions,
            actual: previous.len(),
        });
    }
    // Canonical member order (sorted ids) makes the result independent of the caller's order.
    let mut ids: Vec<&str> = members.iter().map(String::as_str).collect();
    ids.sort_unstable();
    if ids.iter().any(|id| id.is_empty()) {
        return Err(RebalanceError::EmptyMemberId);
    }
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(RebalanceError::DuplicateMember(w[0].to_string()));
    }
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let n = ids.len();
    let r = (rf as usize).min(n);
    let p_count = partitions as usize;

    let mut owners: Vec<Vec<usize>> = (0..p_count)
        .map(|p| {
            let mut kept: Vec<usize> = Vec::with_capacity(r);
            for id in previous.get(p).into_iter().flatten() {
                if let Some(&m) = index.get(id.as_str())
                    && !kept.contains(&m)
                {
                    kept.push(m);
                }
            }
            kept.truncate(r);
            kept
        })
        .collect();
    let kept_before = owners.clone();
    let previous_primary: Vec<Option<usize>> = owners.iter().map(|o| o.first().copied()).collect();

    let mut count = vec![0usize; n];
    for o in &owners {
        for &m in o {
            count[m] += 1;
        }
    }
    let target = targets(p_count * r, &count);

    shed_excess(&mut owners, &mut count, &target, r);
    fill_holes(&mut owners, &mut count, &target, &kept_before, r)?;
    let primary = choose_primaries(&owners, &previous_primary, n);

    Ok(owners
        .into_iter()
        .zip(primary)
        .map(|(set, primary)| {
            let mut ordered = Vec::with_capacity(set.len());
            ordered.push(ids[primary].to_string());
            ordered.extend(
                set.iter()
                    .filter(|&&m| m != primary)
                    .map(|&m| ids[m].to_string()),
            );
            ordered
        })
        .collect())
}

/// Replica targets: ⌊total/n⌋ each, and the ⌈⌉ ones go to the members holding the most already,
/// which maximises what can stay in place.
fn targets(total: usize, count: &[usize]) -> Vec<usize> {
    let n = count.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| count[b].cmp(&count[a]).then(a.cmp(&b)));
    let mut target = vec![total / n; n];
    for &m in order.iter().take(total % n) {
        target[m] += 1;
    }
    target
}

/// Members above their target give up replicas, preferring partitions that have lost the fewest
/// owners so far (so no partition needs more newcomers than exist) and replicas that are not the
/// primary (so primaries stay put).
fn shed_excess(owners: &mut [Vec<usize>], count: &mut [usize], target: &[usize], r: usize) {
    for m in 0..count.len() {
        if count[m] <= target[m] {
            continue;
        }
        let mut held: Vec<usize> = (0..owners.len())
            .filter(|&p| owners[p].contains(&m))
            .collect();
        held.sort_by_key(|&p| (r - owners[p].len(), owners[p].first() == Some(&m), p));
        for &p in held.iter().take(count[m] - target[m]) {
            owners[p].retain(|&o| o != m);
        }
        count[m] = target[m];
    }
}

/// Gives every partition r owners from the members below target: largest deficit first, then the
/// member that shares the fewest partitions with the owners already there. Spreading co-ownership
/// means a failed or removed member's partitions are re-replicated from (and onto) many members
/// instead of one fixed partner.
fn fill_holes(
    owners: &mut [Vec<usize>],
    count: &mut [usize],
    target: &[usize],
    kept_before: &[Vec<usize>],
    r: usize,
) -> Result<(), RebalanceError> {
    let n = count.len();
    let mut shared = vec![0u32; n * n];
    for set in owners.iter() {
        for &a in set {
            for &b in set {
                shared[a * n + b] += 1;
            }
        }
    }
    for p in 0..owners.len() {
        while owners[p].len() < r {
            let pick = (0..n)
                .filter(|&m| count[m] < target[m] && !owners[p].contains(&m))
                .min_by_key(|&m| {
                    let overlap: u32 = owners[p].iter().map(|&o| shared[o * n + m]).sum();
                    (count[m] as isize - target[m] as isize, overlap, m)
                });
            match pick {
                Some(m) => {
                    for &o in &owners[p] {
                        shared[o * n + m] += 1;
                        shared[m * n + o] += 1;
                    }
                    owners[p].push(m);
                    count[m] += 1;
                }
                None => swap_in(owners, count, target, kept_before, p)?,
            }
        }
    }
    Ok(())
}

/// Every member with room left already owns `p`: find an augmenting chain instead. `p` takes a
/// member `m1` away from a partition `q1` where `m1` was newly placed, `q1` takes `m2` from `q2`, …,
/// until some `q_k` can take a member that still has room. Counts stay on target and, because only
/// new placements are rearranged, nothing that stayed in place has to move (kept placements are
/// touched only if no other chain exists).
fn swap_in(
    owners: &mut [Vec<usize>],
    count: &mut [usize],
    target: &[usize],
    kept_before: &[Vec<usize>],
    p: usize,
) -> Result<(), RebalanceError> {
    let n = count.len();
    for allow_kept in [false, true] {
        // via[q] = (partition that takes the member, member moved out of q).
        let mut via: Vec<Option<(usize, usize)>> = vec![None; owners.len()];
        let mut expanded = vec![false; n];
        let mut queue = VecDeque::from([p]);
        let mut visited = vec![false; owners.len()];
        visited[p] = true;
        while let Some(x) = queue.pop_front() {
            if let Some(m) = (0..n).find(|&m| count[m] < target[m] && !owners[x].contains(&m)) {
                // Apply the chain backwards from x: x takes m, then each predecessor takes the
                // member released from the partition after it.
                owners[x].push(m);
                count[m] += 1;
                let mut cur = x;
                while let Some((taker, moved)) = via[cur] {
                    owners[cur].retain(|&o| o != moved);
                    owners[taker].push(moved);
                    cur = taker;
                }
                return Ok(());
            }
            for m in (0..n).filter(|&m| !owners[x].contains(&m)) {
                if expanded[m] {
                    continue;
                }
                expanded[m] = true;
                for q in 0..owners.len() {
                    if visited[q]
                        || !owners[q].contains(&m)
                        || (!allow_kept && kept_before[q].contains(&m))
                    {
                        continue;
                    }
                    visited[q] = true;
                    via[q] = Some((x, m));
                    queue.push_back(q);
                }
            }
        }
    }
    Err(RebalanceError::Unplaceable { partition: p })
}

/// Picks one primary per partition among its owners so every member leads ⌊P/n⌋ or ⌈P/n⌉
/// partitions, keeping the previous primary where balance allows.
fn choose_primaries(
    owners: &[Vec<usize>],
    previous_primary: &[Option<usize>],
    n: usize,
) -> Vec<usize> {
    let p_count = owners.len();
    let low = p_count / n;
    let high = p_count.div_ceil(n);
    let mut led = vec![0usize; n];
    let mut primary: Vec<Option<usize>> = vec![None; p_count];
    for p in 0..p_count {
        if let Some(m) = previous_primary[p]
            && owners[p].contains(&m)
            && led[m] < high
        {
            primary[p] = Some(m);
            led[m] += 1;
        }
    }
    let mut primary: Vec<usize> = primary
        .into_iter()
        .enumerate()
        .map(|(p, chosen)| {
            chosen.unwrap_or_else(|| {
                let m = owners[p]
                    .iter()
                    .copied()
                    .min_by_key(|&m| (led[m], m))
                    .unwrap_or(0);
                led[m] += 1;
                m
            })
        })
        .collect();

    // Repair by shifting leadership along chains of co-owned partitions (augmenting paths).
    // Each shift moves one unit from an over-loaded member to an under-loaded one, so this ends.
    for _ in 0..p_count * 2 {
        let over = (0..n).find(|&m| led[m] > high);
        let under = (0..n).find(|&m| led[m] < low);
        let path = match (over, under) {
            (Some(giver), _) => shift_path(owners, &primary, giver, |m| led[m] < high),
            (None, Some(taker)) => shift_path_to(owners, &primary, taker, |m| led[m] > low),
            (None, None) => break,
        };
        let Some(path) = path else { break };
        let (first_giver, last_taker) = apply_path(&mut primary, &path);
        led[first_giver] -= 1;
        led[last_taker] += 1;
    }
    primary
}

/// A chain of leadership moves: each element is (partition, new primary).
type ShiftPath = Vec<(usize, usize)>;

/// BFS from `giver` over "a partition `giver` leads is co-owned by `y`" until a member satisfying
/// `accepts` is reached.
fn shift_path(
    owners: &[Vec<usize>],
    primary: &[usize],
    giver: usize,
    accepts: impl Fn(usize) -> bool,
) -> Option<ShiftPath> {
    let n = owners.iter().flatten().copied().max().map_or(0, |m| m + 1);
    let mut via: Vec<Option<(usize, usize)>> = vec![None; n.max(giver + 1)];
    let mut seen = vec![false; via.len()];
    seen[giver] = true;
    let mut queue = VecDeque::from([giver]);
    while let Some(x) = queue.pop_front() {
        for p in (0..owners.len()).filter(|&p| primary[p] == x) {
            for &y in &owners[p] {
                if seen[y] {
                    continue;
                }
                seen[y] = true;
                via[y] = Some((x, p));
                if accepts(y) {
                    let mut path = Vec::new();
                    let mut cur = y;
                    while let Some((from, part)) = via[cur] {
                        path.push((part, cur));
                        cur = from;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(y);
            }
        }
    }
    None
}

/// BFS backwards from `taker`: who leads a partition that `taker` co-owns, and so on, until a member
/// satisfying `gives` is reached. Returns the path in the order the moves apply (giver first).
fn shift_path_to(
    owners: &[Vec<usize>],
    primary: &[usize],
    taker: usize,
    gives: impl Fn(usize) -> bool,
) -> Option<ShiftPath> {
    let n = owners.iter().flatten().copied().max().map_or(0, |m| m + 1);
    let mut via: Vec<Option<(usize, usize)>> = vec![None; n.max(taker + 1)];
    let mut seen = vec![false; via.len()];
    seen[taker] = true;
    let mut queue = VecDeque::from([taker]);
    while let Some(y) = queue.pop_front() {
        for p in (0..owners.len()).filter(|&p| owners[p].contains(&y) && primary[p] != y) {
            let x = primary[p];
            if seen[x] {
                continue;
            }
            seen[x] = true;
            via[x] = Some((y, p));
            if gives(x) {
                // Walk from the giver back to the taker: each step hands partition `part` to `to`.
                let mut path = Vec::new();
                let mut cur = x;
                while let Some((to, part)) = via[cur] {
                    path.push((part, to));
                    cur = to;
                }
                return Some(path);
            }
            queue.push_back(x);
        }
    }
    None
}

/// Applies a chain and returns (member that lost one leadership, member that gained one).
fn apply_path(primary: &mut [usize], path: &ShiftPath) -> (usize, usize) {
    let first_giver = path.first().map_or(0, |&(p, _)| primary[p]);
    let last_taker = path.last().map_or(0, |&(_, m)| m);
    for &(p, m) in path {
        primary[p] = m;
    }
    (first_giver, last_taker)
}
