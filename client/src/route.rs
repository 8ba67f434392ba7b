//! Which members to try for a key, in order. Pure: the ring decides, no I/O.

use ringcache_ring::RingDoc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

/// Member indices to try for partition `p`, best first.
///
/// Owners come first so that the request needs no hop: for a read the current owners that serve
/// reads (`read_owners`), for a write the current owners that take writes, primary first (the
/// node replicates to the rest). Every other member that is not `down` follows, because any node
/// accepts any key and forwards it; they are rotated by `p` so that a dead owner's traffic spreads
/// over the cluster instead of piling onto member 0.
pub fn candidates(doc: &RingDoc, p: u32, op: Op) -> Vec<u32> {
    let mut out: Vec<u32> = match op {
        Op::Read => doc.read_owners(p),
        Op::Write => doc
            .owners(p)
            .iter()
            .copied()
            .filter(|&i| {
                doc.members
                    .get(i as usize)
                    .is_some_and(|m| m.state.takes_writes())
            })
            .collect(),
    };
    let n = doc.members.len();
    if n == 0 {
        return out;
    }
    let start = p as usize % n;
    for offset in 0..n {
        let i = (start + offset) % n;
        let m = &doc.members[i];
        let i = i as u32;
        if m.state.takes_writes() && !m.addr.is_empty() && !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_ring::{HASH_XXH3_64, Member, MemberState, Pending};

    fn doc(states: &[MemberState], table: Vec<Vec<u32>>) -> RingDoc {
        RingDoc {
            version: 1,
            epoch: 3,
            partitions: table.len() as u32,
            replication_factor: 2,
            hash: HASH_XXH3_64.into(),
            members: states
                .iter()
                .enumerate()
                .map(|(i, &state)| Member {
                    id: format!("m-{i}"),
                    addr: format!("127.0.0.1:{}", 7000 + i),
                    state,
                    incarnation: None,
                })
                .collect(),
            table,
            pending: None,
        }
    }

    use MemberState::{Down, Joining, Recovering, Up};

    #[test]
    fn read_and_write_start_at_the_primary_then_the_other_owner() {
        let d = doc(&[Up, Up, Up], vec![vec![1, 2], vec![2, 0]]);
        assert_eq!(candidates(&d, 0, Op::Read), vec![1, 2, 0]);
        assert_eq!(candidates(&d, 0, Op::Write), vec![1, 2, 0]);
        assert_eq!(candidates(&d, 1, Op::Read), vec![2, 0, 1]);
    }

    #[test]
    fn recovering_owner_takes_writes_but_is_not_read_from_first() {
        let d = doc(&[Up, Recovering, Up], vec![vec![1, 2]]);
        // The recovering primary is still a fallback for reads: it forwards to an up owner.
        assert_eq!(candidates(&d, 0, Op::Read), vec![2, 0, 1]);
        assert_eq!(candidates(&d, 0, Op::Write), vec![1, 2, 0]);
    }

    #[test]
    fn down_members_are_never_tried() {
        let d = doc(&[Up, Down, Up], vec![vec![1, 2], vec![1, 0]]);
        assert_eq!(candidates(&d, 0, Op::Read), vec![2, 0]);
        assert_eq!(candidates(&d, 0, Op::Write), vec![2, 0]);
        assert_eq!(candidates(&d, 1, Op::Write), vec![0, 2]);
    }

    #[test]
    fn fallback_members_rotate_with_the_partition() {
        let d = doc(
            &[Up, Up, Up, Up, Joining],
            vec![vec![0], vec![0], vec![0], vec![0]],
        );
        assert_eq!(candidates(&d, 1, Op::Read), vec![0, 1, 2, 3, 4]);
        assert_eq!(candidates(&d, 3, Op::Read), vec![0, 3, 4, 1, 2]);
    }

    #[test]
    fn pending_owners_are_fallbacks_not_first_choice() {
        let mut d = doc(&[Up, Up, Joining], vec![vec![0, 1]]);
        d.pending = Some(Pending {
            table: vec![vec![2, 1]],
        });
        assert_eq!(candidates(&d, 0, Op::Read), vec![0, 1, 2]);
        assert_eq!(candidates(&d, 0, Op::Write), vec![0, 1, 2]);
    }
}
