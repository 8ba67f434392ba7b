//! The scale/migration decision: observed state in, exactly one next step out. Pure, so the
//! whole ordering of DESIGN.md (data moves before any pod is removed, one migration at a time,
//! a second scale request waits) is tested as a table without any API server.

use std::collections::BTreeMap;

use ringcache_ring::{Member, MemberState, RingDoc};

use crate::build::Names;
use crate::members::{self, Transition, addr_of};
use crate::observed::{MigrationReport, PodObs};
use crate::ringdoc::{self, RingBuildError};
use crate::types::CacheClusterSpec;
use crate::validate::{SpecError, validate};

pub struct Inputs<'a> {
    pub names: &'a Names,
    pub spec: &'a CacheClusterSpec,
    /// The ring document in the `NAME-ring` ConfigMap, if any.
    pub ring: Option<&'a RingDoc>,
    /// Pods of the cluster by name.
    pub pods: &'a BTreeMap<String, PodObs>,
    /// Migration reports by member id (only from nodes that answered).
    pub reports: &'a BTreeMap<String, MigrationReport>,
}

/// Migration progress summed over the target owners, for `status.migration`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub from_replicas: u32,
    pub to_replicas: u32,
    pub epoch: u64,
    pub partitions_done: u64,
    pub partitions_total: u64,
    pub bytes: u64,
    /// Target owners that have not reported done for this epoch yet.
    pub waiting_for: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The spec cannot be acted on: report Degraded, change nothing.
    Invalid(SpecError),
    /// No ring yet: write the first one (all members down until their pods are ready).
    CreateRing(RingDoc),
    /// Member states or addresses changed (failure, recovery, new pod IPs).
    UpdateMembers {
        ring: RingDoc,
        transitions: Vec<Transition>,
    },
    /// New pods (scale-up) are not ready yet.
    WaitPods { waiting: Vec<String> },
    /// A migration cannot start while members are down or recovering.
    WaitMembers { waiting: Vec<String> },
    /// Write a ring with `pending` (scale up, scale down or replication-factor change).
    StartMigration {
        ring: RingDoc,
        from_replicas: u32,
        to_replicas: u32,
    },
    /// Pending table written; target owners are still pulling.
    WaitMigration(Progress),
    /// Every target owner is done: pending becomes the table.
    Commit {
        ring: RingDoc,
        from_replicas: u32,
        to_replicas: u32,
    },
    /// Nothing to do.
    Steady,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Replicas the StatefulSet should have now; None: leave owned objects alone.
    pub sts_replicas: Option<u32>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error(transparent)]
    Ring(#[from] RingBuildError),
}

pub fn decide(inp: &Inputs<'_>) -> Result<Decision, DecideError> {
    let spec = match validate(inp.spec, inp.ring.map(|r| r.partitions)) {
        Ok(s) => s,
        Err(e) => {
            return Ok(Decision {
                sts_replicas: None,
                action: Action::Invalid(e),
            });
        }
    };
    let desired = spec.replicas;
    let rf = spec.replication_factor;

    let Some(ring) = inp.ring else {
        let ids: Vec<String> = (0..desired).map(|i| inp.names.member(i)).collect();
        return Ok(Decision {
            sts_replicas: Some(desired),
            action: Action::CreateRing(ringdoc::initial(&ids, spec.partitions, rf)?),
        });
    };
    let current = ring.members.len() as u32;
    // The StatefulSet only grows ahead of the ring; it shrinks after a commit removed members.
    let sts_replicas = if ring.pending.is_some() {
        current
    } else {
        current.max(desired)
    };
    let decision = |action| {
        Ok(Decision {
            sts_replicas: Some(sts_replicas),
            action,
        })
    };

    let update = members::next_members(ring, inp.pods, inp.reports);
    if update.changed {
        return decision(Action::UpdateMembers {
            ring: ringdoc::with_members(ring, update.members)?,
            transitions: update.transitions,
        });
    }

    if let Some(pending) = &ring.pending {
        let from_replicas = ringdoc::owners_in(&ring.table).len() as u32;
        let to_replicas = ringdoc::owners_in(&pending.table).len() as u32;
        let mut progress = Progress {
            from_replicas,
            to_replicas,
            epoch: ring.epoch,
            ..Progress::default()
        };
        for index in ringdoc::migration_targets(ring) {
            let id = &ring.members[index as usize].id;
            match inp.reports.get(id).filter(|r| r.epoch == ring.epoch) {
                Some(r) => {
                    progress.partitions_done += r.partitions_done;
                    progress.partitions_total += r.partitions_total;
                    progress.bytes += r.bytes;
                    if !r.done_for(ring.epoch) {
                        progress.waiting_for.push(id.clone());
                    }
                }
                None => progress.waiting_for.push(id.clone()),
            }
        }
        if progress.waiting_for.is_empty() {
            return decision(Action::Commit {
                ring: ringdoc::commit(ring)?,
                from_replicas,
                to_replicas,
            });
        }
        return decision(Action::WaitMigration(progress));
    }

    if desired == current && rf == ring.replication_factor {
        return decision(Action::Steady);
    }

    let not_up: Vec<String> = ring
        .members
        .iter()
        .filter(|m| m.state != MemberState::Up)
        .map(|m| m.id.clone())
        .collect();
    if !not_up.is_empty() {
        // Pulls need live sources; with a member down an RF=1 partition has none.
        return decision(Action::WaitMembers { waiting: not_up });
    }

    let mut joining = Vec::new();
    let mut waiting = Vec::new();
    for ordinal in current..desired {
        let id = inp.names.member(ordinal);
        match inp.pods.get(&id).filter(|p| p.is_live()) {
            Some(pod) => joining.push(Member {
                id,
                addr: addr_of(pod.ip.as_deref().unwrap_or_default()),
                state: MemberState::Joining,
            }),
            None => waiting.push(id),
        }
    }
    if !waiting.is_empty() {
        return decision(Action::WaitPods { waiting });
    }
    let targets: Vec<String> = (0..desired).map(|i| inp.names.member(i)).collect();
    decision(Action::StartMigration {
        ring: ringdoc::with_pending(ring, joining, &targets, rf)?,
        from_replicas: current,
        to_replicas: desired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberState::*;

    const P: u32 = 1024;

    struct Case {
        spec: &'static str,
        ring: Option<RingDoc>,
        /// (ordinal, ready)
        pods: Vec<(u32, bool)>,
        /// (ordinal, epoch, done)
        reports: Vec<(u32, u64, bool)>,
    }

    fn names() -> Names {
        Names::new("demo")
    }

    fn ids(n: u32) -> Vec<String> {
        (0..n).map(|i| names().member(i)).collect()
    }

    /// A committed ring of `n` members in the given states (all `up` when `states` is empty).
    fn ring(n: u32, rf: u32, states: &[MemberState]) -> RingDoc {
        let mut doc = ringdoc::initial(&ids(n), P, rf).unwrap();
        doc.epoch = 10;
        for (i, m) in doc.members.iter_mut().enumerate() {
            m.addr = format!("10.0.0.{i}:7070");
            m.state = states.get(i).copied().unwrap_or(Up);
        }
        doc
    }

    fn run(case: Case) -> Decision {
        let pods = case
            .pods
            .iter()
            .map(|&(i, ready)| {
                let name = names().member(i);
                (
                    name.clone(),
                    PodObs {
                        name,
                        ready,
                        ip: Some(format!("10.0.0.{i}")),
                        terminating: false,
                    },
                )
            })
            .collect();
        let reports = case
            .reports
            .iter()
            .map(|&(i, epoch, done)| {
                (
                    names().member(i),
                    MigrationReport {
                        epoch,
                        partitions_total: 4,
                        partitions_done: if done { 4 } else { 1 },
                        bytes: 100,
                        done,
                        ..MigrationReport::default()
                    },
                )
            })
            .collect();
        let spec = serde_json::from_str(case.spec).unwrap();
        decide(&Inputs {
            names: &names(),
            spec: &spec,
            ring: case.ring.as_ref(),
            pods: &pods,
            reports: &reports,
        })
        .unwrap()
    }

    fn ready(n: u32) -> Vec<(u32, bool)> {
        (0..n).map(|i| (i, true)).collect()
    }

    fn start_scale_up() -> RingDoc {
        let d = run(Case {
            spec: r#"{"replicas":5}"#,
            ring: Some(ring(3, 2, &[])),
            pods: ready(5),
            reports: vec![],
        });
        match d.action {
            Action::StartMigration { ring, .. } => ring,
            other => panic!("expected StartMigration, got {other:?}"),
        }
    }

    fn start_scale_down() -> RingDoc {
        let d = run(Case {
            spec: r#"{"replicas":3}"#,
            ring: Some(ring(5, 2, &[])),
            pods: ready(5),
            reports: vec![],
        });
        match d.action {
            Action::StartMigration { ring, .. } => ring,
            other => panic!("expected StartMigration, got {other:?}"),
        }
    }

    #[test]
    fn new_cluster_creates_a_ring_and_all_pods() {
        let d = run(Case {
            spec: r#"{"replicas":3}"#,
            ring: None,
            pods: vec![],
            reports: vec![],
        });
        assert_eq!(d.sts_replicas, Some(3));
        let Action::CreateRing(r) = d.action else {
            panic!("{:?}", d.action)
        };
        assert_eq!(r.members.len(), 3);
        assert!(r.members.iter().all(|m| m.state == Down));
    }

    #[test]
    fn invalid_spec_does_nothing() {
        let d = run(Case {
            spec: r#"{"replicas":1,"replicationFactor":3}"#,
            ring: Some(ring(3, 2, &[])),
            pods: ready(3),
            reports: vec![],
        });
        assert_eq!(d.sts_replicas, None);
        assert!(matches!(
            d.action,
            Action::Invalid(SpecError::RfExceedsReplicas { .. })
        ));
    }

    #[test]
    fn partitions_change_is_invalid() {
        let d = run(Case {
            spec: r#"{"replicas":3,"partitions":64}"#,
            ring: Some(ring(3, 2, &[])),
            pods: ready(3),
            reports: vec![],
        });
        assert!(matches!(
            d.action,
            Action::Invalid(SpecError::PartitionsChanged { .. })
        ));
    }

    #[test]
    fn table_of_cases() {
        // (name, case, expected sts replicas, predicate on the action)
        type Check = fn(&Action) -> bool;
        let scale_up = start_scale_up();
        let scale_down = start_scale_down();
        let up_epoch = scale_up.epoch;
        let down_epoch = scale_down.epoch;
        let cases: Vec<(&str, Case, Option<u32>, Check)> = vec![
            (
                "steady cluster",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(ring(3, 2, &[])),
                    pods: ready(3),
                    reports: vec![],
                },
                Some(3),
                |a| matches!(a, Action::Steady),
            ),
            (
                "first pods of a new cluster ready: members up (nothing to recover from)",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(ring(3, 2, &[Down, Down, Down])),
                    pods: ready(3),
                    reports: vec![],
                },
                Some(3),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, .. }
                    if ring.members.iter().all(|m| m.state == Up))
                },
            ),
            (
                "restarted pod ready again while others serve: recovering",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(ring(3, 2, &[Up, Down, Up])),
                    pods: ready(3),
                    reports: vec![],
                },
                Some(3),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, transitions }
                    if ring.members[1].state == Recovering && transitions.len() == 1)
                },
            ),
            (
                "recovering member reports done: up",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(ring(3, 2, &[Up, Recovering, Up])),
                    pods: ready(3),
                    reports: vec![(1, 10, true)],
                },
                Some(3),
                |a| matches!(a, Action::UpdateMembers { ring, .. } if ring.members[1].state == Up),
            ),
            (
                "recovering member still pulling: nothing to write",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(ring(3, 2, &[Up, Recovering, Up])),
                    pods: ready(3),
                    reports: vec![(1, 10, false)],
                },
                Some(3),
                |a| matches!(a, Action::Steady),
            ),
            (
                "pod goes unready: member down, table untouched",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(ring(3, 2, &[])),
                    pods: vec![(0, true), (1, false), (2, true)],
                    reports: vec![],
                },
                Some(3),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, transitions }
                    if ring.members[1].state == Down && transitions.len() == 1 && ring.pending.is_none())
                },
            ),
            (
                "scale up: StatefulSet grows first, waits for new pods",
                Case {
                    spec: r#"{"replicas":5}"#,
                    ring: Some(ring(3, 2, &[])),
                    pods: ready(3),
                    reports: vec![],
                },
                Some(5),
                |a| matches!(a, Action::WaitPods { waiting } if waiting == &["demo-3", "demo-4"]),
            ),
            (
                "scale up: new pods ready → pending with joining members",
                Case {
                    spec: r#"{"replicas":5}"#,
                    ring: Some(ring(3, 2, &[])),
                    pods: ready(5),
                    reports: vec![],
                },
                Some(5),
                |a| {
                    matches!(a, Action::StartMigration { ring, from_replicas: 3, to_replicas: 5 }
                    if ring.pending.is_some() && ring.members[4].state == Joining)
                },
            ),
            (
                "scale up: targets still pulling → wait",
                Case {
                    spec: r#"{"replicas":5}"#,
                    ring: Some(scale_up.clone()),
                    pods: ready(5),
                    reports: vec![(3, up_epoch, true), (4, up_epoch, false)],
                },
                Some(5),
                |a| {
                    matches!(a, Action::WaitMigration(p) if p.waiting_for.contains(&"demo-4".to_string())
                    && p.from_replicas == 3 && p.to_replicas == 5)
                },
            ),
            (
                "scale up: a report for an older epoch does not count",
                Case {
                    spec: r#"{"replicas":5}"#,
                    ring: Some(scale_up.clone()),
                    pods: ready(5),
                    reports: (0..5).map(|i| (i, up_epoch - 1, true)).collect(),
                },
                Some(5),
                |a| matches!(a, Action::WaitMigration(_)),
            ),
            (
                "scale up: all targets done → commit",
                Case {
                    spec: r#"{"replicas":5}"#,
                    ring: Some(scale_up.clone()),
                    pods: ready(5),
                    reports: (0..5).map(|i| (i, up_epoch, true)).collect(),
                },
                Some(5),
                |a| {
                    matches!(a, Action::Commit { ring, .. }
                    if ring.pending.is_none() && ring.members.len() == 5
                    && ring.members.iter().all(|m| m.state == Up))
                },
            ),
            (
                "scale down: leaving members first, StatefulSet keeps its pods",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(ring(5, 2, &[])),
                    pods: ready(5),
                    reports: vec![],
                },
                Some(5),
                |a| {
                    matches!(a, Action::StartMigration { ring, from_replicas: 5, to_replicas: 3 }
                    if ring.members[3].state == Leaving && ring.members[4].state == Leaving
                    && ring.members[2].state == Up)
                },
            ),
            (
                "scale down: waiting, StatefulSet still not lowered",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(scale_down.clone()),
                    pods: ready(5),
                    reports: vec![],
                },
                Some(5),
                |a| matches!(a, Action::WaitMigration(_)),
            ),
            (
                "scale down: done → commit without leaving members (StatefulSet shrinks next pass)",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(scale_down.clone()),
                    pods: ready(5),
                    reports: (0..5).map(|i| (i, down_epoch, true)).collect(),
                },
                Some(5),
                |a| {
                    matches!(a, Action::Commit { ring, from_replicas: 5, to_replicas: 3 }
                    if ring.members.len() == 3)
                },
            ),
            (
                "scale down: after commit the StatefulSet shrinks",
                Case {
                    spec: r#"{"replicas":3}"#,
                    ring: Some(ring(3, 2, &[])),
                    pods: ready(5),
                    reports: vec![],
                },
                Some(3),
                |a| matches!(a, Action::Steady),
            ),
            (
                "second scale request during a migration is queued",
                Case {
                    spec: r#"{"replicas":2}"#,
                    ring: Some(scale_up.clone()),
                    pods: ready(5),
                    reports: vec![(3, up_epoch, false)],
                },
                Some(5),
                |a| matches!(a, Action::WaitMigration(p) if p.to_replicas == 5),
            ),
            (
                "queued request starts after the commit",
                Case {
                    spec: r#"{"replicas":2}"#,
                    ring: Some(ring(5, 2, &[])),
                    pods: ready(5),
                    reports: vec![],
                },
                Some(5),
                |a| matches!(a, Action::StartMigration { to_replicas: 2, .. }),
            ),
            (
                "no migration starts while a member is down",
                Case {
                    spec: r#"{"replicas":4}"#,
                    ring: Some(ring(3, 2, &[Up, Down, Up])),
                    pods: vec![(0, true), (1, false), (2, true), (3, true)],
                    reports: vec![],
                },
                Some(4),
                |a| matches!(a, Action::WaitMembers { waiting } if waiting == &["demo-1"]),
            ),
            (
                "replication factor change migrates without new members",
                Case {
                    spec: r#"{"replicas":3,"replicationFactor":3}"#,
                    ring: Some(ring(3, 2, &[])),
                    pods: ready(3),
                    reports: vec![],
                },
                Some(3),
                |a| {
                    matches!(a, Action::StartMigration { ring, from_replicas: 3, to_replicas: 3 }
                    if ring.pending.as_ref().unwrap().table.iter().all(|r| r.len() == 3))
                },
            ),
            (
                "member down during migration: marked down, pending kept",
                Case {
                    spec: r#"{"replicas":5}"#,
                    ring: Some(scale_up.clone()),
                    pods: vec![(0, true), (1, true), (2, false), (3, true), (4, true)],
                    reports: vec![],
                },
                Some(5),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, .. }
                    if ring.members[2].state == Down && ring.pending.is_some())
                },
            ),
        ];
        for (name, case, sts, check) in cases {
            let d = run(case);
            assert_eq!(d.sts_replicas, sts, "{name}: sts replicas");
            let shown: String = format!("{:?}", d.action).chars().take(400).collect();
            assert!(check(&d.action), "{name}: unexpected {shown}");
        }
    }
}
