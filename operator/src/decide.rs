//! The scale/migration decision: observed state in, exactly one next step out. Pure, so the
//! whole ordering of DESIGN.md (data moves before any pod is removed, one migration at a time,
//! a second scale request waits) is tested as a table without any API server.

use std::collections::BTreeMap;

use ringcache_ring::{Member, MemberState, RingDoc};

use crate::build::Names;
use crate::members::{self, Loss, Transition, addr_of};
use crate::observed::{MigrationReport, PodObs, StsObs};
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
    /// Migration reports by pod name (only from nodes that answered).
    pub reports: &'a BTreeMap<String, MigrationReport>,
    /// The StatefulSet as last observed (None: not created yet).
    pub sts: Option<&'a StsObs>,
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
    /// Member states, addresses or incarnations changed (failure, restart, recovery, new pod
    /// IPs). `losses`: recoveries that finished without a complete copy of some partitions.
    UpdateMembers {
        ring: RingDoc,
        transitions: Vec<Transition>,
        losses: Vec<Loss>,
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
    /// Every target owner is done: pending becomes the table. `progress`: the migration's
    /// totals as the target owners reported them, so that a migration too quick for any pass
    /// to see it under way still leaves its record in `status.migration`.
    Commit {
        ring: RingDoc,
        from_replicas: u32,
        to_replicas: u32,
        progress: Progress,
    },
    /// Pods of an older StatefulSet revision remain and every partition has all its replicas
    /// up: take this member (the highest outdated ordinal) out of the write set first — marked
    /// `down` in a ring every node gets — so that no peer waits for its acknowledgement or
    /// routes to it when its pod goes away. Its pod is deleted by a later pass, once every
    /// other node serves with this ring ([`Action::RestartPod`]).
    DrainForRestart {
        ring: RingDoc,
        pod: String,
        /// Member pods already at the update revision, and all member pods.
        updated: u32,
        total: u32,
    },
    /// The member chosen for a restart is out of the write set on every other node: delete its
    /// pod so the StatefulSet recreates it at the update revision.
    RestartPod {
        pod: String,
        revision: String,
        /// Member pods already at `revision`, and all member pods.
        updated: u32,
        total: u32,
    },
    /// Pods of an older revision remain, but the next restart waits for these members (not up,
    /// not ready, restarted, stale, or not answering).
    WaitRollout {
        waiting: Vec<String>,
        updated: u32,
        total: u32,
    },
    /// Pods of an older revision remain and restarting one would lose data.
    RolloutBlocked { reason: String },
    /// The StatefulSet controller has not acted on the current spec yet
    /// (`status.observedGeneration` behind `metadata.generation`): its revisions and counts
    /// describe an older template, so whether a rollout is due is not known yet.
    WaitController { generation: i64, observed: i64 },
    /// Nothing to do.
    Steady,
}

impl Action {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Invalid(_) => "invalid",
            Action::CreateRing(_) => "create-ring",
            Action::UpdateMembers { .. } => "update-members",
            Action::WaitPods { .. } => "wait-pods",
            Action::WaitMembers { .. } => "wait-members",
            Action::StartMigration { .. } => "start-migration",
            Action::WaitMigration(_) => "wait-migration",
            Action::Commit { .. } => "commit",
            Action::DrainForRestart { .. } => "drain-for-restart",
            Action::RestartPod { .. } => "restart-pod",
            Action::WaitRollout { .. } => "wait-rollout",
            Action::RolloutBlocked { .. } => "rollout-blocked",
            Action::WaitController { .. } => "wait-controller",
            Action::Steady => "steady",
        }
    }

    /// What carrying the action out writes (besides status, events and owned objects).
    pub fn writes(&self) -> Writes<'_> {
        match self {
            Action::CreateRing(ring) | Action::UpdateMembers { ring, .. } => Writes {
                ring: Some(ring),
                ..Writes::default()
            },
            Action::StartMigration { ring, .. } | Action::DrainForRestart { ring, .. } => Writes {
                ring: Some(ring),
                ..Writes::default()
            },
            Action::Commit { ring, .. } => Writes {
                ring: Some(ring),
                commits_migration: true,
                ..Writes::default()
            },
            Action::RestartPod { pod, revision, .. } => Writes {
                delete_pod: Some((pod, revision)),
                ..Writes::default()
            },
            Action::Invalid(_)
            | Action::WaitPods { .. }
            | Action::WaitMembers { .. }
            | Action::WaitMigration(_)
            | Action::WaitRollout { .. }
            | Action::RolloutBlocked { .. }
            | Action::WaitController { .. }
            | Action::Steady => Writes::default(),
        }
    }

    /// When to look again: soon while something is under way, at the idle period when nothing
    /// will change without a new event (`all_up`: every member of the ring is up).
    pub fn requeue(&self, all_up: bool) -> Requeue {
        match self {
            Action::Steady if all_up => Requeue::Idle,
            Action::Invalid(_) | Action::RolloutBlocked { .. } => Requeue::Idle,
            Action::Steady
            | Action::CreateRing(_)
            | Action::UpdateMembers { .. }
            | Action::WaitPods { .. }
            | Action::WaitMembers { .. }
            | Action::StartMigration { .. }
            | Action::WaitMigration(_)
            | Action::Commit { .. }
            | Action::DrainForRestart { .. }
            | Action::RestartPod { .. }
            | Action::WaitRollout { .. }
            | Action::WaitController { .. } => Requeue::Active,
        }
    }

    /// Why the action itself makes the cluster Degraded (reason, message).
    pub fn problem(&self) -> Option<(&'static str, String)> {
        match self {
            Action::Invalid(e) => Some(("InvalidSpec", e.to_string())),
            Action::RolloutBlocked { reason } => Some(("RolloutBlocked", reason.clone())),
            _ => None,
        }
    }

    /// The Progressing condition the action shows (reason, message), if it is under way.
    pub fn progress(&self) -> Option<(&'static str, String)> {
        Some(match self {
            Action::StartMigration {
                from_replicas,
                to_replicas,
                ..
            } => (
                "MigrationStarted",
                format!("moving partitions: {from_replicas} → {to_replicas} members"),
            ),
            Action::WaitMigration(p) => (
                "Migrating",
                format!(
                    "{} → {} members: {}/{} partitions pulled, waiting for {}",
                    p.from_replicas,
                    p.to_replicas,
                    p.partitions_done,
                    p.partitions_total,
                    p.waiting_for.join(", ")
                ),
            ),
            Action::WaitPods { waiting } => (
                "WaitingForPods",
                format!("waiting for new pods to be ready: {}", waiting.join(", ")),
            ),
            Action::WaitMembers { waiting } => (
                "WaitingForMembers",
                format!(
                    "scaling waits until these members are up: {}",
                    waiting.join(", ")
                ),
            ),
            Action::DrainForRestart {
                pod,
                updated,
                total,
                ..
            } => (
                "RollingRestart",
                format!(
                    "{updated}/{total} members updated; {pod} leaves the write set before its restart"
                ),
            ),
            Action::RestartPod {
                pod,
                updated,
                total,
                ..
            } => (
                "RollingRestart",
                format!("{updated}/{total} members updated; restarting {pod}"),
            ),
            Action::WaitController {
                generation,
                observed,
            } => (
                "StatefulSetUpdating",
                format!(
                    "waiting for the StatefulSet controller to act on generation {generation} \
                     (it has observed {observed})"
                ),
            ),
            Action::WaitRollout {
                waiting,
                updated,
                total,
            } => (
                "RollingRestart",
                format!(
                    "{updated}/{total} members updated; next restart waits for {}",
                    waiting.join(", ")
                ),
            ),
            Action::Invalid(_)
            | Action::CreateRing(_)
            | Action::UpdateMembers { .. }
            | Action::Commit { .. }
            | Action::RolloutBlocked { .. }
            | Action::Steady => return None,
        })
    }

    /// Partitions pulled and to pull by the running migration (0, 0 when none is waited for).
    pub fn migration_partitions(&self) -> (u64, u64) {
        match self {
            Action::WaitMigration(p) => (p.partitions_done, p.partitions_total),
            _ => (0, 0),
        }
    }

    /// Partitions the action records lost (recoveries without a complete copy).
    pub fn partitions_lost(&self) -> u64 {
        match self {
            Action::UpdateMembers { losses, .. } => {
                losses.iter().map(|l| l.partitions.len() as u64).sum()
            }
            _ => 0,
        }
    }

    /// A rollout step (a member restarting is progress, not a failure).
    pub fn is_rollout(&self) -> bool {
        matches!(
            self,
            Action::DrainForRestart { .. }
                | Action::RestartPod { .. }
                | Action::WaitRollout { .. }
                | Action::WaitController { .. }
        )
    }
}

/// What an [`Action`] writes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Writes<'a> {
    /// The ring document to write (compare-and-set) and push to the nodes.
    pub ring: Option<&'a RingDoc>,
    /// The ring commits a migration (its pending table becomes the table).
    pub commits_migration: bool,
    /// A member pod to delete for a rollout, and the revision it is replaced at.
    pub delete_pod: Option<(&'a str, &'a str)>,
}

/// How soon a pass looks again after carrying out an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// Something is under way: look again shortly.
    Active,
    /// Nothing changes without a new event: the idle period.
    Idle,
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

    // A member taken out of the write set for its restart stays `down` although its pod still
    // serves, until the pod is deleted (a later pass, or this one's rollout step).
    let drained = if ring.pending.is_none() && desired == current && rf == ring.replication_factor {
        drained_for_restart(inp, ring, spec.persistence)
    } else {
        None
    };
    let update = members::next_members(ring, inp.pods, inp.reports, drained.as_deref());
    if update.changed {
        return decision(Action::UpdateMembers {
            ring: ringdoc::with_members(ring, update.members)?,
            transitions: update.transitions,
            losses: update.losses,
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
            // Joining members become `up`: record the incarnations whose pulls are done.
            let incarnations: BTreeMap<String, String> = inp
                .reports
                .iter()
                .filter_map(|(id, r)| Some((id.clone(), r.incarnation.clone()?)))
                .collect();
            return decision(Action::Commit {
                ring: ringdoc::commit(ring, &incarnations)?,
                from_replicas,
                to_replicas,
                progress,
            });
        }
        return decision(Action::WaitMigration(progress));
    }

    if desired == current && rf == ring.replication_factor {
        return decision(rollout(inp, ring, spec.persistence)?);
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
                incarnation: None,
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

/// Member pods at the update revision `target`, the ids of member pods at another one, and
/// the number of member pods.
fn revisions_of(inp: &Inputs<'_>, ring: &RingDoc, target: &str) -> (u32, Vec<String>, u32) {
    let mut updated = 0;
    let mut outdated = Vec::new();
    for m in &ring.members {
        match inp.pods.get(&m.id).and_then(|p| p.revision.as_deref()) {
            Some(r) if r == target => updated += 1,
            Some(_) => outdated.push(m.id.clone()),
            None => {}
        }
    }
    (updated, outdated, ring.members.len() as u32)
}

/// A restart keeps every key only when another replica or the node's volume holds it.
fn rollout_allowed(ring: &RingDoc, persistence: bool) -> bool {
    ring.replication_factor >= 2 || persistence
}

/// The member a rollout has taken out of the write set and not restarted yet: `down` in the
/// ring while its pod exists (not terminating) on an older revision, every other member up. Held down, it
/// is restarted next; released (when the template changed back, or another member failed),
/// it goes through recovery like any member back from `down`, since it missed writes.
fn drained_for_restart(inp: &Inputs<'_>, ring: &RingDoc, persistence: bool) -> Option<String> {
    if !rollout_allowed(ring, persistence) {
        return None;
    }
    let target = inp.sts?.trusted_revision()?;
    let (_, outdated, _) = revisions_of(inp, ring, target);
    let mut down = ring.members.iter().filter(|m| m.state != MemberState::Up);
    let m = down.next()?;
    if down.next().is_some() || !outdated.contains(&m.id) || m.state != MemberState::Down {
        return None;
    }
    // Whatever its readiness says (a node may stop reporting ready once it is out of the
    // ring): it runs an older template and nothing routes to it, so restarting it is the step.
    inp.pods
        .get(&m.id)
        .is_some_and(|p| !p.terminating)
        .then(|| m.id.clone())
}

/// The next step of an operator-driven rollout (StatefulSet `updateStrategy: OnDelete`): pods
/// whose revision is not the StatefulSet's update revision are restarted one at a time, highest
/// ordinal first, and only while every member is up, ready and vouched for, no node reports a
/// stale replica, and every node answered. Each restart takes two passes: the member leaves the
/// write set (a ring with it `down`), then, once every other node serves with that ring, its
/// pod is deleted; so a planned restart refuses no write. A restarted member must be back `up`
/// (recovered, with the new pod's incarnation) before the next goes. Nothing is judged from
/// StatefulSet status the controller has not caught up on.
fn rollout(inp: &Inputs<'_>, ring: &RingDoc, persistence: bool) -> Result<Action, DecideError> {
    let Some(sts) = inp.sts else {
        return Ok(Action::Steady);
    };
    if !sts.settled() {
        return Ok(Action::WaitController {
            generation: sts.generation.unwrap_or_default(),
            observed: sts.observed_generation.unwrap_or_default(),
        });
    }
    let Some(target) = sts.update_revision.clone() else {
        return Ok(Action::Steady);
    };
    let (updated, outdated, total) = revisions_of(inp, ring, &target);
    if outdated.is_empty() {
        return Ok(Action::Steady);
    }
    if !rollout_allowed(ring, persistence) {
        return Ok(Action::RolloutBlocked {
            reason: format!(
                "{} pods run an older template, but with replicationFactor 1 and no persistence \
                 restarting one loses its keys; raise replicationFactor to 2 (or enable \
                 persistence), or delete the pods yourself to accept the loss",
                outdated.len()
            ),
        });
    }
    let drained = drained_for_restart(inp, ring, persistence);
    let stale = members::stale_members(inp.reports);
    let waiting: Vec<String> = ring
        .members
        .iter()
        .filter(|m| Some(&m.id) != drained.as_ref())
        .filter(|m| {
            let pod = inp.pods.get(&m.id);
            let report = inp.reports.get(&m.id);
            m.state != MemberState::Up
                || !pod.is_some_and(PodObs::is_live)
                // Also proves the node serves with this ring (a drained member's peers must
                // have stopped routing to it before its pod goes).
                || !report.is_some_and(|r| r.done_for(ring.epoch))
                || report.and_then(|r| r.incarnation.as_ref()) != m.incarnation.as_ref()
                || stale.contains(&m.id)
        })
        .map(|m| m.id.clone())
        .collect();
    if !waiting.is_empty() {
        return Ok(Action::WaitRollout {
            waiting,
            updated,
            total,
        });
    }
    if let Some(pod) = drained {
        return Ok(Action::RestartPod {
            pod,
            revision: target,
            updated,
            total,
        });
    }
    let pod = outdated
        .iter()
        .max_by_key(|id| inp.names.ordinal_of(id))
        .cloned()
        .unwrap_or_default();
    let members = ring
        .members
        .iter()
        .map(|m| Member {
            state: if m.id == pod {
                MemberState::Down
            } else {
                m.state
            },
            ..m.clone()
        })
        .collect();
    Ok(Action::DrainForRestart {
        ring: ringdoc::with_members(ring, members)?,
        pod,
        updated,
        total,
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
        /// Ordinals whose pod runs an older StatefulSet revision.
        outdated: Vec<u32>,
        /// The StatefulSet (default: settled at revision `demo-new`).
        sts: Option<StsObs>,
    }

    impl Case {
        /// `spec` against `ring` (`None`: no ring yet) with these pods, no migration reports and
        /// every pod on the current revision.
        fn new(spec: &'static str, ring: Option<RingDoc>, pods: Vec<(u32, bool)>) -> Self {
            Case {
                spec,
                ring,
                pods,
                reports: vec![],
                outdated: vec![],
                sts: None,
            }
        }

        fn sts(self, sts: StsObs) -> Self {
            Case {
                sts: Some(sts),
                ..self
            }
        }

        fn reports(self, reports: Vec<(u32, u64, bool)>) -> Self {
            Case { reports, ..self }
        }

        fn outdated(self, ordinals: &[u32]) -> Self {
            Case {
                outdated: ordinals.to_vec(),
                ..self
            }
        }
    }

    /// Members `0..n` all report `epoch` done.
    fn all_done(n: u32, epoch: u64) -> Vec<(u32, u64, bool)> {
        (0..n).map(|i| (i, epoch, true)).collect()
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
            // A member that was ever up has been vouched for.
            if m.state != Down {
                m.incarnation = Some(format!("inc-{i}"));
            }
        }
        doc
    }

    #[test]
    fn each_action_says_what_it_writes_and_when_to_look_again() {
        let r = ring(3, 2, &[]);
        let commit = Action::Commit {
            ring: r.clone(),
            from_replicas: 3,
            to_replicas: 3,
            progress: Progress::default(),
        };
        let w = commit.writes();
        assert_eq!(
            (w.ring, w.commits_migration, w.delete_pod),
            (Some(&r), true, None)
        );
        let restart = Action::RestartPod {
            pod: "demo-2".into(),
            revision: "rev-2".into(),
            updated: 2,
            total: 3,
        };
        let w = restart.writes();
        assert_eq!((w.ring, w.delete_pod), (None, Some(("demo-2", "rev-2"))));
        assert!(restart.is_rollout());
        assert_eq!(
            restart.progress(),
            Some((
                "RollingRestart",
                "2/3 members updated; restarting demo-2".into()
            ))
        );
        assert_eq!(Action::CreateRing(r.clone()).writes().ring, Some(&r));
        assert_eq!(Action::Steady.writes(), Writes::default());

        assert_eq!(Action::Steady.requeue(true), Requeue::Idle);
        assert_eq!(Action::Steady.requeue(false), Requeue::Active);
        assert_eq!(restart.requeue(true), Requeue::Active);
        let blocked = Action::RolloutBlocked { reason: "x".into() };
        assert_eq!(blocked.requeue(false), Requeue::Idle);
        assert_eq!(blocked.problem(), Some(("RolloutBlocked", "x".into())));
        assert_eq!(Action::Steady.problem(), None);
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
                        revision: Some(
                            if case.outdated.contains(&i) {
                                "demo-old"
                            } else {
                                "demo-new"
                            }
                            .into(),
                        ),
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
                        incarnation: Some(format!("inc-{i}")),
                        ..MigrationReport::default()
                    },
                )
            })
            .collect();
        let spec = serde_json::from_str(case.spec).unwrap();
        let sts = case.sts.clone().unwrap_or(StsObs {
            update_revision: Some("demo-new".into()),
            generation: Some(2),
            observed_generation: Some(2),
        });
        decide(&Inputs {
            names: &names(),
            spec: &spec,
            ring: case.ring.as_ref(),
            pods: &pods,
            reports: &reports,
            sts: Some(&sts),
        })
        .unwrap()
    }

    fn ready(n: u32) -> Vec<(u32, bool)> {
        (0..n).map(|i| (i, true)).collect()
    }

    /// The ring with a pending table after `spec` asks a ready, committed ring of `from`
    /// members to change size (all five pods running).
    fn start_migration(spec: &'static str, from: u32) -> RingDoc {
        let d = run(Case::new(spec, Some(ring(from, 2, &[])), ready(5)));
        match d.action {
            Action::StartMigration { ring, .. } => ring,
            other => panic!("expected StartMigration, got {other:?}"),
        }
    }

    fn start_scale_up() -> RingDoc {
        start_migration(r#"{"replicas":5}"#, 3)
    }

    fn start_scale_down() -> RingDoc {
        start_migration(r#"{"replicas":3}"#, 5)
    }

    #[test]
    fn new_cluster_creates_a_ring_and_all_pods() {
        let d = run(Case::new(r#"{"replicas":3}"#, None, vec![]));
        assert_eq!(d.sts_replicas, Some(3));
        let Action::CreateRing(r) = d.action else {
            panic!("{:?}", d.action)
        };
        assert_eq!(r.members.len(), 3);
        assert!(r.members.iter().all(|m| m.state == Down));
    }

    #[test]
    fn invalid_spec_does_nothing() {
        let d = run(Case::new(
            r#"{"replicas":1,"replicationFactor":3}"#,
            Some(ring(3, 2, &[])),
            ready(3),
        ));
        assert_eq!(d.sts_replicas, None);
        assert!(matches!(
            d.action,
            Action::Invalid(SpecError::RfExceedsReplicas { .. })
        ));
    }

    #[test]
    fn partitions_change_is_invalid() {
        let d = run(Case::new(
            r#"{"replicas":3,"partitions":64}"#,
            Some(ring(3, 2, &[])),
            ready(3),
        ));
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
                Case::new(r#"{"replicas":3}"#, Some(ring(3, 2, &[])), ready(3)),
                Some(3),
                |a| matches!(a, Action::Steady),
            ),
            (
                "first pods of a new cluster ready: members up (nothing to recover from)",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Down, Down, Down])),
                    ready(3),
                ),
                Some(3),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, .. }
                    if ring.members.iter().all(|m| m.state == Up))
                },
            ),
            (
                "restarted pod ready again while others serve: recovering",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Up, Down, Up])),
                    ready(3),
                ),
                Some(3),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, transitions, .. }
                    if ring.members[1].state == Recovering && transitions.len() == 1)
                },
            ),
            (
                "recovering member reports done: up",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Up, Recovering, Up])),
                    ready(3),
                )
                .reports(vec![(1, 10, true)]),
                Some(3),
                |a| matches!(a, Action::UpdateMembers { ring, .. } if ring.members[1].state == Up),
            ),
            (
                "recovering member still pulling: nothing to write",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Up, Recovering, Up])),
                    ready(3),
                )
                .reports(vec![(1, 10, false)]),
                Some(3),
                |a| matches!(a, Action::Steady),
            ),
            (
                "pod goes unready: member down, table untouched",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[])),
                    vec![(0, true), (1, false), (2, true)],
                ),
                Some(3),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, transitions, .. }
                    if ring.members[1].state == Down && transitions.len() == 1 && ring.pending.is_none())
                },
            ),
            (
                "scale up: StatefulSet grows first, waits for new pods",
                Case::new(r#"{"replicas":5}"#, Some(ring(3, 2, &[])), ready(3)),
                Some(5),
                |a| matches!(a, Action::WaitPods { waiting } if waiting == &["demo-3", "demo-4"]),
            ),
            (
                "scale up: new pods ready → pending with joining members",
                Case::new(r#"{"replicas":5}"#, Some(ring(3, 2, &[])), ready(5)),
                Some(5),
                |a| {
                    matches!(a, Action::StartMigration { ring, from_replicas: 3, to_replicas: 5 }
                    if ring.pending.is_some() && ring.members[4].state == Joining)
                },
            ),
            (
                "scale up: targets still pulling → wait",
                Case::new(r#"{"replicas":5}"#, Some(scale_up.clone()), ready(5))
                    .reports(vec![(3, up_epoch, true), (4, up_epoch, false)]),
                Some(5),
                |a| {
                    matches!(a, Action::WaitMigration(p) if p.waiting_for.contains(&"demo-4".to_string())
                    && p.from_replicas == 3 && p.to_replicas == 5)
                },
            ),
            (
                "scale up: a report for an older epoch does not count",
                Case::new(r#"{"replicas":5}"#, Some(scale_up.clone()), ready(5))
                    .reports(all_done(5, up_epoch - 1)),
                Some(5),
                |a| matches!(a, Action::WaitMigration(_)),
            ),
            (
                "scale up: all targets done → commit",
                Case::new(r#"{"replicas":5}"#, Some(scale_up.clone()), ready(5))
                    .reports(all_done(5, up_epoch)),
                Some(5),
                |a| {
                    matches!(a, Action::Commit { ring, .. }
                    if ring.pending.is_none() && ring.members.len() == 5
                    && ring.members.iter().all(|m| m.state == Up))
                },
            ),
            (
                "scale down: leaving members first, StatefulSet keeps its pods",
                Case::new(r#"{"replicas":3}"#, Some(ring(5, 2, &[])), ready(5)),
                Some(5),
                |a| {
                    matches!(a, Action::StartMigration { ring, from_replicas: 5, to_replicas: 3 }
                    if ring.members[3].state == Leaving && ring.members[4].state == Leaving
                    && ring.members[2].state == Up)
                },
            ),
            (
                "scale down: waiting, StatefulSet still not lowered",
                Case::new(r#"{"replicas":3}"#, Some(scale_down.clone()), ready(5)),
                Some(5),
                |a| matches!(a, Action::WaitMigration(_)),
            ),
            (
                "scale down: done → commit without leaving members (StatefulSet shrinks next pass)",
                Case::new(r#"{"replicas":3}"#, Some(scale_down.clone()), ready(5))
                    .reports(all_done(5, down_epoch)),
                Some(5),
                |a| {
                    matches!(a, Action::Commit { ring, from_replicas: 5, to_replicas: 3, .. }
                    if ring.members.len() == 3)
                },
            ),
            (
                "scale down: after commit the StatefulSet shrinks",
                Case::new(r#"{"replicas":3}"#, Some(ring(3, 2, &[])), ready(5)),
                Some(3),
                |a| matches!(a, Action::Steady),
            ),
            (
                "second scale request during a migration is queued",
                Case::new(r#"{"replicas":2}"#, Some(scale_up.clone()), ready(5))
                    .reports(vec![(3, up_epoch, false)]),
                Some(5),
                |a| matches!(a, Action::WaitMigration(p) if p.to_replicas == 5),
            ),
            (
                "queued request starts after the commit",
                Case::new(r#"{"replicas":2}"#, Some(ring(5, 2, &[])), ready(5)),
                Some(5),
                |a| matches!(a, Action::StartMigration { to_replicas: 2, .. }),
            ),
            (
                "no migration starts while a member is down",
                Case::new(
                    r#"{"replicas":4}"#,
                    Some(ring(3, 2, &[Up, Down, Up])),
                    vec![(0, true), (1, false), (2, true), (3, true)],
                ),
                Some(4),
                |a| matches!(a, Action::WaitMembers { waiting } if waiting == &["demo-1"]),
            ),
            (
                "replication factor change migrates without new members",
                Case::new(
                    r#"{"replicas":3,"replicationFactor":3}"#,
                    Some(ring(3, 2, &[])),
                    ready(3),
                ),
                Some(3),
                |a| {
                    matches!(a, Action::StartMigration { ring, from_replicas: 3, to_replicas: 3 }
                    if ring.pending.as_ref().unwrap().table.iter().all(|r| r.len() == 3))
                },
            ),
            (
                "member down during migration: marked down, pending kept",
                Case::new(
                    r#"{"replicas":5}"#,
                    Some(scale_up.clone()),
                    vec![(0, true), (1, true), (2, false), (3, true), (4, true)],
                ),
                Some(5),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, .. }
                    if ring.members[2].state == Down && ring.pending.is_some())
                },
            ),
            (
                "rollout: every member up and answering → the highest outdated pod leaves the \
                 write set first",
                Case::new(r#"{"replicas":3}"#, Some(ring(3, 2, &[])), ready(3))
                    .reports(all_done(3, 10))
                    .outdated(&[0, 1, 2]),
                Some(3),
                |a| {
                    matches!(a, Action::DrainForRestart { ring, pod, updated: 0, total: 3 }
                    if pod == "demo-2" && ring.epoch == 11
                        && ring.members.iter().map(|m| m.state).eq([Up, Up, Down]))
                },
            ),
            (
                "rollout: drained member out of every other node's ring → its pod is deleted",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Up, Up, Down])),
                    ready(3),
                )
                .reports(all_done(3, 10))
                .outdated(&[0, 1, 2]),
                Some(3),
                |a| {
                    matches!(a, Action::RestartPod { pod, revision, updated: 0, total: 3 }
                    if pod == "demo-2" && revision == "demo-new")
                },
            ),
            (
                "rollout: drained, but a peer still serves with the ring before the drain → wait",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Up, Up, Down])),
                    ready(3),
                )
                .reports(vec![(0, 10, true), (1, 9, true), (2, 9, true)])
                .outdated(&[0, 1, 2]),
                Some(3),
                |a| matches!(a, Action::WaitRollout { waiting, .. } if waiting == &["demo-1"]),
            ),
            (
                "rollout: a drained member whose node stopped answering is still restarted",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Up, Up, Down])),
                    ready(3),
                )
                .reports(vec![(0, 10, true), (1, 10, true)])
                .outdated(&[0, 1, 2]),
                Some(3),
                |a| matches!(a, Action::RestartPod { pod, .. } if pod == "demo-2"),
            ),
            (
                "rollout: a drained member is released (recovers) when another member is down",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Down, Up, Down])),
                    vec![(0, false), (1, true), (2, true)],
                )
                .reports(vec![(1, 10, true), (2, 10, true)])
                .outdated(&[0, 1, 2]),
                Some(3),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, .. }
                    if ring.members.iter().map(|m| m.state).eq([Down, Up, Recovering]))
                },
            ),
            (
                "rollout: a down member whose pod is on the update revision recovers as usual",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Up, Up, Down])),
                    ready(3),
                )
                .reports(all_done(3, 10))
                .outdated(&[0, 1]),
                Some(3),
                |a| {
                    matches!(a, Action::UpdateMembers { ring, .. }
                    if ring.members[2].state == Recovering)
                },
            ),
            (
                "rollout: StatefulSet status behind its spec → wait for the controller, restart \
                 nothing",
                Case::new(r#"{"replicas":3}"#, Some(ring(3, 2, &[])), ready(3))
                    .reports(all_done(3, 10))
                    .sts(StsObs {
                        update_revision: Some("demo-new".into()),
                        generation: Some(7),
                        observed_generation: Some(6),
                    }),
                Some(3),
                |a| {
                    matches!(
                        a,
                        Action::WaitController {
                            generation: 7,
                            observed: 6
                        }
                    ) && a.is_rollout()
                        && a.progress()
                            .is_some_and(|(r, _)| r == "StatefulSetUpdating")
                },
            ),
            (
                "rollout: a lagging controller does not release a drained member either",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Up, Up, Down])),
                    ready(3),
                )
                .reports(all_done(3, 10))
                .outdated(&[0, 1, 2])
                .sts(StsObs {
                    update_revision: Some("demo-old".into()),
                    generation: Some(7),
                    observed_generation: Some(6),
                }),
                Some(3),
                |a| {
                    // No trusted revision: the member is treated as any member back from down.
                    matches!(a, Action::UpdateMembers { ring, .. }
                    if ring.members[2].state == Recovering)
                },
            ),
            (
                "rollout: the next restart waits for a member still recovering",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[Up, Up, Recovering])),
                    ready(3),
                )
                .reports(vec![(0, 10, true), (1, 10, true), (2, 10, false)])
                .outdated(&[0, 1]),
                Some(3),
                |a| {
                    matches!(a, Action::WaitRollout { waiting, updated: 1, total: 3 }
                    if waiting == &["demo-2"])
                },
            ),
            (
                "rollout: a node that did not answer holds the next restart",
                Case::new(r#"{"replicas":3}"#, Some(ring(3, 2, &[])), ready(3))
                    .reports(vec![(0, 10, true), (1, 10, true)])
                    .outdated(&[0, 1, 2]),
                Some(3),
                |a| matches!(a, Action::WaitRollout { waiting, .. } if waiting == &["demo-2"]),
            ),
            (
                "rollout: a pod not ready holds the next restart",
                Case::new(
                    r#"{"replicas":3}"#,
                    Some(ring(3, 2, &[])),
                    vec![(0, true), (1, false), (2, true)],
                )
                .reports(all_done(3, 10))
                .outdated(&[0]),
                Some(3),
                |a| matches!(a, Action::WaitRollout { waiting, .. } if waiting == &["demo-1"]),
            ),
            (
                "rollout: replicationFactor 1 without persistence would lose keys: blocked",
                Case::new(
                    r#"{"replicas":3,"replicationFactor":1}"#,
                    Some(ring(3, 1, &[])),
                    ready(3),
                )
                .reports(all_done(3, 10))
                .outdated(&[2]),
                Some(3),
                |a| matches!(a, Action::RolloutBlocked { reason } if reason.contains("replicationFactor 1")),
            ),
            (
                "rollout: replicationFactor 1 with persistence restarts",
                Case::new(
                    r#"{"replicas":3,"replicationFactor":1,"persistence":{"enabled":true}}"#,
                    Some(ring(3, 1, &[])),
                    ready(3),
                )
                .reports(all_done(3, 10))
                .outdated(&[1]),
                Some(3),
                |a| matches!(a, Action::DrainForRestart { pod, updated: 2, .. } if pod == "demo-1"),
            ),
            (
                "rollout: a scale request goes first, the rollout resumes afterwards",
                Case::new(r#"{"replicas":4}"#, Some(ring(3, 2, &[])), ready(4))
                    .reports(all_done(4, 10))
                    .outdated(&[0, 1, 2]),
                Some(4),
                |a| matches!(a, Action::StartMigration { to_replicas: 4, .. }),
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
