//! Builds the next ring document. Every function returns a new document with `epoch + 1` (or
//! epoch 1 for a new cluster), so nodes can always tell which one is newer.

use std::collections::{BTreeMap, BTreeSet};

use ringcache_ring::{
    HASH_XXH3_64, Member, MemberState, Pending, RING_DOC_VERSION, RebalanceError, RingDoc, Table,
    diff, rebalance,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingBuildError {
    #[error("rebalance failed: {0}")]
    Rebalance(#[from] RebalanceError),
    #[error("rebalance returned member {0:?}, which is not in the ring")]
    UnknownMember(String),
    #[error("built ring is invalid: {0}")]
    Invalid(#[from] ringcache_ring::RingError),
}

/// The first ring of a new cluster: every member `down` (no pod IPs yet), table balanced.
pub fn initial(ids: &[String], partitions: u32, rf: u32) -> Result<RingDoc, RingBuildError> {
    let members: Vec<Member> = ids
        .iter()
        .map(|id| Member {
            id: id.clone(),
            addr: String::new(),
            state: MemberState::Down,
            incarnation: None,
        })
        .collect();
    let by_id = rebalance(&[], ids, partitions, rf)?;
    let mut doc = RingDoc {
        version: RING_DOC_VERSION,
        epoch: 1,
        partitions,
        replication_factor: rf,
        hash: HASH_XXH3_64.to_string(),
        members,
        table: Vec::new(),
        pending: None,
    };
    doc.table = to_indices(&doc, &by_id)?;
    doc.validate()?;
    Ok(doc)
}

/// Same table, new member states/addresses.
pub fn with_members(ring: &RingDoc, members: Vec<Member>) -> Result<RingDoc, RingBuildError> {
    let mut doc = ring.clone();
    doc.members = members;
    doc.epoch += 1;
    doc.validate()?;
    Ok(doc)
}

/// Starts a migration: `joining` members are appended, members not in `target_ids` become
/// `leaving`, and `pending` is the balanced table over `target_ids` with the least movement.
pub fn with_pending(
    ring: &RingDoc,
    joining: Vec<Member>,
    target_ids: &[String],
    rf: u32,
) -> Result<RingDoc, RingBuildError> {
    let mut doc = ring.clone();
    doc.members.extend(joining.into_iter().map(|mut m| {
        m.state = MemberState::Joining;
        m
    }));
    let targets: BTreeSet<&str> = target_ids.iter().map(String::as_str).collect();
    for m in &mut doc.members {
        if !targets.contains(m.id.as_str()) && m.state != MemberState::Down {
            m.state = MemberState::Leaving;
        }
    }
    let previous = ring.id_table(&ring.table);
    let by_id = rebalance(&previous, target_ids, ring.partitions, rf)?;
    // Current rows keep the old factor until commit; the document's factor must cover both.
    doc.replication_factor = ring.replication_factor.max(rf);
    doc.pending = Some(Pending {
        table: to_indices(&doc, &by_id)?,
    });
    doc.epoch += 1;
    doc.validate()?;
    Ok(doc)
}

/// Commits a migration: the pending table becomes the table, members outside it are dropped,
/// joining members are up, with the incarnation whose pulls finished (`incarnations`, by member
/// id) recorded. Indices are renumbered for the shorter member list.
pub fn commit(
    ring: &RingDoc,
    incarnations: &BTreeMap<String, String>,
) -> Result<RingDoc, RingBuildError> {
    let Some(pending) = &ring.pending else {
        return Ok(ring.clone());
    };
    let by_id = ring.id_table(&pending.table);
    let kept: BTreeSet<&str> = by_id.iter().flatten().map(String::as_str).collect();
    let mut doc = ring.clone();
    doc.members = ring
        .members
        .iter()
        .filter(|m| kept.contains(m.id.as_str()))
        .cloned()
        .map(|mut m| {
            if m.state == MemberState::Joining {
                m.incarnation = incarnations.get(&m.id).cloned().or(m.incarnation);
            }
            if matches!(m.state, MemberState::Joining | MemberState::Leaving) {
                m.state = MemberState::Up;
            }
            m
        })
        .collect();
    doc.replication_factor = pending.table.iter().map(Vec::len).max().unwrap_or(1) as u32;
    doc.pending = None;
    doc.table = to_indices(&doc, &by_id)?;
    doc.epoch += 1;
    doc.validate()?;
    Ok(doc)
}

/// Members that gain at least one partition in the pending table: the ones whose pulls must
/// finish before the commit.
pub fn migration_targets(ring: &RingDoc) -> Vec<u32> {
    let Some(pending) = &ring.pending else {
        return Vec::new();
    };
    let gained: BTreeSet<u32> = diff(&ring.table, &pending.table)
        .into_iter()
        .flat_map(|m| m.gained)
        .collect();
    gained.into_iter().collect()
}

/// Members that own at least one partition in `table`.
pub fn owners_in(table: &Table) -> BTreeSet<u32> {
    table.iter().flatten().copied().collect()
}

fn to_indices(doc: &RingDoc, by_id: &[Vec<String>]) -> Result<Table, RingBuildError> {
    by_id
        .iter()
        .map(|row| {
            row.iter()
                .map(|id| {
                    doc.member_index(id)
                        .map(|i| i as u32)
                        .ok_or_else(|| RingBuildError::UnknownMember(id.clone()))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u32) -> Vec<String> {
        (0..n).map(|i| format!("demo-{i}")).collect()
    }

    fn up(doc: &RingDoc) -> RingDoc {
        let members = doc
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| Member {
                id: m.id.clone(),
                addr: format!("10.0.0.{i}:7070"),
                state: MemberState::Up,
                incarnation: None,
            })
            .collect();
        with_members(doc, members).unwrap()
    }

    fn joiner(i: u32) -> Member {
        Member {
            id: format!("demo-{i}"),
            addr: format!("10.0.1.{i}:7070"),
            state: MemberState::Up,
            incarnation: None,
        }
    }

    #[test]
    fn initial_ring_is_valid_and_all_down() {
        let doc = initial(&ids(3), 64, 2).unwrap();
        assert_eq!(doc.epoch, 1);
        assert!(doc.members.iter().all(|m| m.state == MemberState::Down));
        assert!(doc.table.iter().all(|row| row.len() == 2));
        assert!(doc.pending.is_none());
    }

    #[test]
    fn scale_up_adds_joining_members_with_a_pending_table() {
        let doc = up(&initial(&ids(3), 64, 2).unwrap());
        let next = with_pending(&doc, vec![joiner(3), joiner(4)], &ids(5), 2).unwrap();
        assert_eq!(next.epoch, doc.epoch + 1);
        assert_eq!(next.members.len(), 5);
        assert_eq!(next.members[3].state, MemberState::Joining);
        assert_eq!(
            next.table, doc.table,
            "current table unchanged until commit"
        );
        let targets = migration_targets(&next);
        assert!(targets.contains(&3) && targets.contains(&4));
        let incarnations = BTreeMap::from([("demo-3".to_string(), "inc-3".to_string())]);
        let committed = commit(&next, &incarnations).unwrap();
        assert_eq!(committed.epoch, next.epoch + 1);
        assert_eq!(committed.members[3].incarnation.as_deref(), Some("inc-3"));
        assert!(committed.pending.is_none());
        assert!(committed.members.iter().all(|m| m.state == MemberState::Up));
        assert_eq!(owners_in(&committed.table).len(), 5);
    }

    #[test]
    fn scale_down_marks_leaving_then_drops_them_on_commit() {
        let doc = up(&initial(&ids(4), 64, 2).unwrap());
        let next = with_pending(&doc, vec![], &ids(3), 2).unwrap();
        assert_eq!(next.members[3].state, MemberState::Leaving);
        let pending = &next.pending.as_ref().unwrap().table;
        assert!(!owners_in(pending).contains(&3));
        let committed = commit(&next, &BTreeMap::new()).unwrap();
        assert_eq!(committed.members.len(), 3);
        assert!(committed.members.iter().all(|m| m.id != "demo-3"));
        assert_eq!(
            committed.id_table(&committed.table),
            next.id_table(pending),
            "the committed table is the pending one, by id"
        );
    }

    #[test]
    fn rf_change_keeps_members_and_grows_rows() {
        let doc = up(&initial(&ids(3), 32, 1).unwrap());
        let next = with_pending(&doc, vec![], &ids(3), 2).unwrap();
        assert_eq!(next.replication_factor, 2);
        assert!(
            next.pending
                .as_ref()
                .unwrap()
                .table
                .iter()
                .all(|r| r.len() == 2)
        );
        let committed = commit(&next, &BTreeMap::new()).unwrap();
        assert_eq!(committed.replication_factor, 2);
        assert_eq!(committed.members.len(), 3);
    }
}
