//! Status, conditions and Events as pure functions of the decision and what was observed.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use ringcache_ring::{MemberState, RingDoc};

use crate::build::selector_string;
use crate::decide::{Action, Decision, Progress};
use crate::members::Transition;
use crate::observed::{PodObs, StsObs};
use crate::types::{CacheClusterStatus, MemberStatus, MigrationStatus, Phase};

pub const COND_READY: &str = "Ready";
pub const COND_PROGRESSING: &str = "Progressing";
pub const COND_DEGRADED: &str = "Degraded";
pub const COND_DATA_LOSS: &str = "DataLoss";
/// How long `DataLoss` stays True after the last partition was lost.
pub const DATA_LOSS_MEMORY: std::time::Duration = std::time::Duration::from_secs(3600);

pub struct StatusInputs<'a> {
    pub cluster: &'a str,
    pub generation: Option<i64>,
    pub desired_replicas: i32,
    pub previous: Option<&'a CacheClusterStatus>,
    pub decision: &'a Decision,
    /// The ring as it stands after this pass (the new one if the pass wrote one).
    pub ring: Option<&'a RingDoc>,
    pub pods: &'a BTreeMap<String, PodObs>,
    pub sts: Option<&'a StsObs>,
    pub now: Timestamp,
    /// A problem found outside the decision (an unreadable ring ConfigMap, a StatefulSet field
    /// that cannot change) that blocks progress.
    pub problem: Option<String>,
}

pub fn build_status(inp: &StatusInputs<'_>) -> CacheClusterStatus {
    let ring = inp.ring;
    let members: Vec<MemberStatus> = ring
        .map(|r| {
            r.members
                .iter()
                .map(|m| MemberStatus {
                    id: m.id.clone(),
                    state: m.state.as_str().to_string(),
                    addr: m.addr.clone(),
                    incarnation: m.incarnation.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let down: Vec<&str> = ring
        .map(|r| {
            r.members
                .iter()
                // A member that never had an address is starting, not failed.
                .filter(|m| m.state == MemberState::Down && !m.addr.is_empty())
                .map(|m| m.id.as_str())
                .collect()
        })
        .unwrap_or_default();
    let all_up = ring.is_some_and(|r| {
        r.pending.is_none() && r.members.iter().all(|m| m.state == MemberState::Up)
    });
    let ready_replicas = inp.pods.values().filter(|p| p.is_live()).count() as i32;
    // Until the StatefulSet controller has acted on the current spec, its update revision is
    // the old template's: counting from it would show every member updated and the cluster
    // Ready while a rollout is still due. The count stays what it last was until then.
    let unsettled = inp.sts.filter(|s| !s.settled());
    let (updated_replicas, outdated) = match unsettled {
        None => revisions(inp.ring, inp.pods, inp.sts),
        Some(_) => (
            inp.previous.map_or(0, |s| {
                s.updated_replicas
                    .min(ring.map_or(0, |r| r.members.len() as i32))
            }),
            0,
        ),
    };
    // A rollout restarts one member at a time: that one being down is progress, not a failure.
    let rolling = outdated > 0 || unsettled.is_some() || inp.decision.action.is_rollout();
    let expected_down = if rolling { 1 } else { 0 };

    let problem: Option<(String, String)> = match (inp.decision.action.problem(), &inp.problem) {
        (_, Some(p)) => Some(("Blocked".into(), p.clone())),
        (Some((reason, message)), None) => Some((reason.into(), message)),
        _ if down.len() > expected_down => Some((
            "MembersDown".into(),
            format!(
                "members down: {}; {} of {} partitions under-replicated",
                down.join(", "),
                ring.map_or(0, under_replicated),
                ring.map_or(0, |r| r.partitions)
            ),
        )),
        _ => None,
    };
    let progressing: Option<(String, String)> = match inp.decision.action.progress() {
        Some((reason, message)) => Some((reason.into(), message)),
        None if let Some(sts) = unsettled => Some((
            "StatefulSetUpdating".into(),
            format!(
                "waiting for the StatefulSet controller to act on generation {} (it has observed {})",
                sts.generation.unwrap_or_default(),
                sts.observed_generation.unwrap_or_default()
            ),
        )),
        None if rolling => Some((
            "RollingRestart".into(),
            format!(
                "{updated_replicas}/{} members updated",
                ring.map_or(0, |r| r.members.len())
            ),
        )),
        None => None,
    };
    let scaling = progressing.is_some() || ring.is_some_and(|r| r.pending.is_some());
    let phase = if problem.is_some() {
        Phase::Degraded
    } else if scaling {
        Phase::Scaling
    } else if all_up
        && ring.is_some_and(|r| r.members.len() as i32 == inp.desired_replicas)
        && !matches!(inp.decision.action, Action::Commit { .. })
    {
        Phase::Ready
    } else {
        Phase::Pending
    };

    let migration = match &inp.decision.action {
        Action::WaitMigration(p) => Some(migration_record(inp, p, false)),
        Action::StartMigration {
            ring,
            from_replicas,
            to_replicas,
        } => Some(MigrationStatus {
            from_replicas: *from_replicas as i32,
            to_replicas: *to_replicas as i32,
            epoch: ring.epoch as i64,
            started: Some(inp.now.to_string()),
            ..MigrationStatus::default()
        }),
        // Members changing state during a migration: keep showing the last progress.
        Action::UpdateMembers { ring, .. } if ring.pending.is_some() => {
            inp.previous.and_then(|s| s.migration.clone())
        }
        // From the target owners' final reports, not from an earlier pass's status: a quick
        // migration may finish before any pass saw it under way, and the status this pass
        // started from may predate the one that recorded its start.
        Action::Commit { progress: p, .. } => Some(migration_record(inp, p, true)),
        _ => inp
            .previous
            .and_then(|s| s.migration.clone())
            .filter(|m| m.finished.is_some()),
    };

    let previous_conditions = inp.previous.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
    let cond = |type_: &str, on: bool, reason: &str, message: String| {
        condition(
            previous_conditions,
            type_,
            on,
            reason,
            message,
            inp.generation,
            inp.now,
        )
    };
    let conditions = vec![
        cond(
            COND_READY,
            phase == Phase::Ready,
            if phase == Phase::Ready {
                "AllMembersUp"
            } else {
                phase.as_str()
            },
            match phase {
                Phase::Ready => "every member is up and the ring is committed".into(),
                _ => format!("phase {}", phase.as_str()),
            },
        ),
        match &progressing {
            Some((reason, message)) => cond(COND_PROGRESSING, true, reason, message.clone()),
            None => cond(
                COND_PROGRESSING,
                false,
                "Idle",
                "no migration running".into(),
            ),
        },
        match &problem {
            Some((reason, message)) => cond(COND_DEGRADED, true, reason, message.clone()),
            None => cond(COND_DEGRADED, false, "Healthy", "no problem found".into()),
        },
        data_loss_condition(inp, previous_conditions),
    ];

    CacheClusterStatus {
        phase,
        replicas: inp.pods.len() as i32,
        ready_replicas,
        selector: selector_string(inp.cluster),
        ring_epoch: ring.map_or(0, |r| r.epoch as i64),
        members,
        migration,
        observed_generation: inp.generation,
        updated_replicas,
        under_replicated_partitions: ring.map_or(0, under_replicated) as i32,
        conditions,
    }
}

/// `status.migration` for the migration `p` reports on. Its start is the one recorded for the
/// same pending epoch (before it finished, unless this is the commit), never an earlier
/// migration's; without one, now.
fn migration_record(inp: &StatusInputs<'_>, p: &Progress, finished: bool) -> MigrationStatus {
    let started = inp
        .previous
        .and_then(|s| s.migration.as_ref())
        .filter(|m| m.epoch == p.epoch as i64 && (finished || m.finished.is_none()))
        .and_then(|m| m.started.clone())
        .or_else(|| Some(inp.now.to_string()));
    MigrationStatus {
        from_replicas: p.from_replicas as i32,
        to_replicas: p.to_replicas as i32,
        epoch: p.epoch as i64,
        partitions_done: p.partitions_done as i64,
        partitions_total: p.partitions_total as i64,
        bytes_moved: p.bytes as i64,
        started,
        finished: finished.then(|| inp.now.to_string()),
    }
}

/// Member pods at the StatefulSet's update revision, and member pods at another one.
fn revisions(
    ring: Option<&RingDoc>,
    pods: &BTreeMap<String, PodObs>,
    sts: Option<&StsObs>,
) -> (i32, usize) {
    let (Some(ring), Some(target)) = (ring, sts.and_then(StsObs::trusted_revision)) else {
        return (0, 0);
    };
    let revs: Vec<Option<&str>> = ring
        .members
        .iter()
        .filter_map(|m| pods.get(&m.id))
        .map(|p| p.revision.as_deref())
        .collect();
    let updated = revs.iter().filter(|r| **r == Some(target)).count();
    let outdated = revs
        .iter()
        .filter(|r| r.is_some_and(|r| r != target))
        .count();
    (updated as i32, outdated)
}

/// `DataLoss`: True from the pass that recorded lost partitions, for [`DATA_LOSS_MEMORY`]
/// after the last loss (the message names members and partitions); then False.
fn data_loss_condition(inp: &StatusInputs<'_>, previous: &[Condition]) -> Condition {
    let losses = match &inp.decision.action {
        Action::UpdateMembers { losses, .. } => losses.as_slice(),
        _ => &[],
    };
    let condition = |on: bool, reason: &str, message: String, at: Time| Condition {
        type_: COND_DATA_LOSS.to_string(),
        status: if on { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: inp.generation,
        last_transition_time: at,
    };
    if !losses.is_empty() {
        let what: Vec<String> = losses
            .iter()
            .map(|l| format!("{} lost partitions {:?}", l.member, l.partitions))
            .collect();
        return condition(
            true,
            "PartitionsLost",
            format!(
                "{} at ring epoch {}: no complete copy was left to recover them from",
                what.join("; "),
                inp.ring.map_or(0, |r| r.epoch)
            ),
            Time(inp.now),
        );
    }
    if let Some(prev) = previous
        .iter()
        .find(|c| c.type_ == COND_DATA_LOSS && c.status == "True")
    {
        let age = inp.now.duration_since(prev.last_transition_time.0);
        if age.as_secs() < DATA_LOSS_MEMORY.as_secs() as i64 {
            return Condition {
                observed_generation: inp.generation,
                ..prev.clone()
            };
        }
        return condition(
            false,
            "NoRecentLoss",
            format!(
                "no partition lost in the last {}s",
                DATA_LOSS_MEMORY.as_secs()
            ),
            Time(inp.now),
        );
    }
    let at = previous
        .iter()
        .find(|c| c.type_ == COND_DATA_LOSS)
        .map_or(Time(inp.now), |c| c.last_transition_time.clone());
    condition(false, "NoLoss", "no partition lost".into(), at)
}

/// Partitions with at least one owner in the current table that is not serving (down, or
/// recovering: its copy is not complete yet).
pub fn under_replicated(ring: &RingDoc) -> usize {
    ring.table
        .iter()
        .filter(|owners| {
            owners.iter().any(|&o| {
                ring.members
                    .get(o as usize)
                    .is_none_or(|m| !m.state.serves_reads())
            })
        })
        .count()
}

/// A condition whose lastTransitionTime moves only when its status flips.
fn condition(
    previous: &[Condition],
    type_: &str,
    on: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if on { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// A Kubernetes Event to publish for this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
    /// The Event's action. The event recorder folds events with the same object, reason, action
    /// and type into one series whatever their notes say, so what must stay visible apart
    /// (one member's transition from another's) differs here.
    pub action: String,
}

/// Events for every transition this pass makes. `previous` suppresses repeating the same
/// invalid-spec warning on every requeue.
pub fn events_for(decision: &Decision, previous: Option<&CacheClusterStatus>) -> Vec<EventSpec> {
    let ev = |warning, reason, note: String| EventSpec {
        warning,
        reason,
        note,
        action: "Reconcile".into(),
    };
    match &decision.action {
        Action::Invalid(e) => {
            let already = previous.is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == COND_DEGRADED && c.status == "True" && c.message == e.to_string()
                })
            });
            if already {
                vec![]
            } else {
                vec![ev(true, "InvalidSpec", e.to_string())]
            }
        }
        Action::CreateRing(r) => vec![ev(
            false,
            "RingCreated",
            format!(
                "ring epoch {} with {} members, {} partitions",
                r.epoch,
                r.members.len(),
                r.partitions
            ),
        )],
        Action::UpdateMembers {
            transitions,
            losses,
            ring,
        } => transitions
            .iter()
            .map(transition_event)
            .chain(losses.iter().map(|l| EventSpec {
                warning: true,
                reason: "DataLoss",
                note: format!(
                    "{}: partitions {:?} had no complete copy left at ring epoch {}; their keys are lost",
                    l.member, l.partitions, ring.epoch
                ),
                action: format!("Member {}", l.member),
            }))
            .collect(),
        Action::RestartPod {
            pod,
            revision,
            updated,
            total,
        } => vec![EventSpec {
            warning: false,
            reason: "RollingRestart",
            note: format!(
                "restarting {pod} for revision {revision} ({updated}/{total} members updated)"
            ),
            action: format!("Restart {pod}"),
        }],
        Action::RolloutBlocked { reason } => {
            let already = previous.is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == COND_DEGRADED && c.status == "True" && &c.message == reason
                })
            });
            if already {
                vec![]
            } else {
                vec![ev(true, "RolloutBlocked", reason.clone())]
            }
        }
        Action::StartMigration {
            ring,
            from_replicas,
            to_replicas,
        } => vec![ev(
            false,
            "ScalingStarted",
            format!(
                "migration {from_replicas} → {to_replicas} members started at ring epoch {}",
                ring.epoch
            ),
        )],
        Action::DrainForRestart { ring, pod, .. } => vec![EventSpec {
            warning: false,
            reason: "RollingRestart",
            note: format!(
                "{pod} leaves the write set at ring epoch {} before its restart",
                ring.epoch
            ),
            action: format!("Drain {pod}"),
        }],
        Action::Commit {
            ring,
            from_replicas,
            to_replicas,
            ..
        } => vec![ev(
            false,
            "MigrationCommitted",
            format!(
                "{from_replicas} → {to_replicas} members committed at ring epoch {}",
                ring.epoch
            ),
        )],
        Action::WaitPods { .. }
        | Action::WaitMembers { .. }
        | Action::WaitMigration(_)
        | Action::WaitRollout { .. }
        | Action::WaitController { .. }
        | Action::Steady => vec![],
    }
}

fn transition_event(t: &Transition) -> EventSpec {
    let (warning, reason) = match t.to {
        MemberState::Down => (true, "MemberDown"),
        MemberState::Recovering => (false, "MemberRecovering"),
        _ => (false, "MemberUp"),
    };
    let why = if t.why.is_empty() {
        String::new()
    } else {
        format!(" ({})", t.why)
    };
    EventSpec {
        warning,
        reason,
        note: format!("{}: {} → {}{why}", t.id, t.from, t.to),
        action: format!("Member {}", t.id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ringdoc;
    use crate::validate::SpecError;

    fn up_ring(n: u32) -> RingDoc {
        let ids: Vec<String> = (0..n).map(|i| format!("demo-{i}")).collect();
        let mut r = ringdoc::initial(&ids, 16, 2).unwrap();
        for (i, m) in r.members.iter_mut().enumerate() {
            m.state = MemberState::Up;
            m.addr = format!("10.0.0.{i}:7070");
        }
        r
    }

    fn live_pods(n: u32) -> BTreeMap<String, PodObs> {
        (0..n)
            .map(|i| {
                let name = format!("demo-{i}");
                (
                    name.clone(),
                    PodObs {
                        name,
                        ready: true,
                        ip: Some(format!("10.0.0.{i}")),
                        terminating: false,
                        revision: Some("demo-new".into()),
                    },
                )
            })
            .collect()
    }

    fn status_for(
        action: Action,
        ring: Option<&RingDoc>,
        previous: Option<&CacheClusterStatus>,
    ) -> CacheClusterStatus {
        status_with_sts(action, ring, previous, None)
    }

    fn status_with_sts(
        action: Action,
        ring: Option<&RingDoc>,
        previous: Option<&CacheClusterStatus>,
        sts: Option<&StsObs>,
    ) -> CacheClusterStatus {
        let decision = Decision {
            sts_replicas: Some(3),
            action,
        };
        let pods = live_pods(3);
        build_status(&StatusInputs {
            cluster: "demo",
            generation: Some(4),
            desired_replicas: 3,
            previous,
            decision: &decision,
            ring,
            pods: &pods,
            sts,
            now: Timestamp::UNIX_EPOCH,
            problem: None,
        })
    }

    fn cond<'a>(s: &'a CacheClusterStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn steady_cluster_is_ready() {
        let r = up_ring(3);
        let s = status_for(Action::Steady, Some(&r), None);
        assert_eq!(s.phase, Phase::Ready);
        assert_eq!(s.ready_replicas, 3);
        assert_eq!(s.ring_epoch, 1);
        assert_eq!(
            s.selector,
            "app.kubernetes.io/component=node,app.kubernetes.io/instance=demo,app.kubernetes.io/name=ringcache"
        );
        assert_eq!(cond(&s, COND_READY).status, "True");
        assert_eq!(cond(&s, COND_READY).observed_generation, Some(4));
        assert_eq!(cond(&s, COND_DEGRADED).status, "False");
    }

    #[test]
    fn invalid_spec_is_degraded_with_the_message() {
        let r = up_ring(3);
        let err = SpecError::RfExceedsReplicas { rf: 3, replicas: 1 };
        let s = status_for(Action::Invalid(err.clone()), Some(&r), None);
        assert_eq!(s.phase, Phase::Degraded);
        let d = cond(&s, COND_DEGRADED);
        assert_eq!(
            (d.status.as_str(), d.reason.as_str()),
            ("True", "InvalidSpec")
        );
        assert_eq!(d.message, err.to_string());
    }

    #[test]
    fn down_member_is_degraded() {
        let mut r = up_ring(3);
        r.members[1].state = MemberState::Down;
        let s = status_for(Action::Steady, Some(&r), None);
        assert_eq!(s.phase, Phase::Degraded);
        let message = &cond(&s, COND_DEGRADED).message;
        assert!(message.contains("demo-1"));
        // Exactly the partitions demo-1 owns are missing a copy.
        let expected = r.table.iter().filter(|o| o.contains(&1)).count();
        assert_eq!(under_replicated(&r), expected);
        assert!(expected > 0 && expected < 16);
        assert!(
            message.contains(&format!("{expected} of 16 partitions")),
            "{message}"
        );
    }

    #[test]
    fn migration_progress_is_reported_and_start_time_kept() {
        let r = up_ring(3);
        let p = Progress {
            from_replicas: 3,
            to_replicas: 5,
            epoch: 9,
            partitions_done: 10,
            partitions_total: 20,
            bytes: 1234,
            waiting_for: vec!["demo-4".into()],
        };
        let previous = CacheClusterStatus {
            migration: Some(MigrationStatus {
                epoch: 9,
                started: Some("2026-01-01T00:00:00Z".into()),
                ..MigrationStatus::default()
            }),
            ..CacheClusterStatus::default()
        };
        // A different (earlier, finished) migration's start is not this one's.
        let earlier = CacheClusterStatus {
            migration: Some(MigrationStatus {
                epoch: 4,
                started: Some("2025-01-01T00:00:00Z".into()),
                finished: Some("2025-01-01T00:01:00Z".into()),
                ..MigrationStatus::default()
            }),
            ..CacheClusterStatus::default()
        };
        let fresh = status_for(Action::WaitMigration(p.clone()), Some(&r), Some(&earlier));
        assert_eq!(
            fresh.migration.unwrap().started.as_deref(),
            Some("1970-01-01T00:00:00Z"),
            "started is reset for a new migration"
        );
        let s = status_for(Action::WaitMigration(p), Some(&r), Some(&previous));
        assert_eq!(s.phase, Phase::Scaling);
        let m = s.migration.clone().unwrap();
        assert_eq!(
            (m.partitions_done, m.partitions_total, m.bytes_moved),
            (10, 20, 1234)
        );
        assert_eq!(m.started.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(cond(&s, COND_PROGRESSING).status, "True");
    }

    /// The commit of a 3 → 5 migration of pending epoch `epoch` whose target owners reported
    /// `partitions` pulled of `partitions` and `bytes` moved.
    fn commit_3_to_5(r: &RingDoc, epoch: u64, partitions: u64, bytes: u64) -> Action {
        Action::Commit {
            ring: r.clone(),
            from_replicas: 3,
            to_replicas: 5,
            progress: Progress {
                from_replicas: 3,
                to_replicas: 5,
                epoch,
                partitions_done: partitions,
                partitions_total: partitions,
                bytes,
                waiting_for: vec![],
            },
        }
    }

    #[test]
    fn finished_migration_stays_visible_until_the_next_one() {
        let r = up_ring(5);
        let running = CacheClusterStatus {
            migration: Some(MigrationStatus {
                from_replicas: 3,
                to_replicas: 5,
                partitions_done: 7,
                partitions_total: 20,
                started: Some("2026-01-01T00:00:00Z".into()),
                ..MigrationStatus::default()
            }),
            ..CacheClusterStatus::default()
        };
        let commit = commit_3_to_5(&r, 0, 20, 999);
        let committed = status_for(commit, Some(&r), Some(&running));
        let m = committed.migration.clone().expect("kept at commit");
        assert_eq!((m.from_replicas, m.to_replicas), (3, 5));
        assert_eq!((m.partitions_done, m.partitions_total), (20, 20));
        assert_eq!(m.bytes_moved, 999);
        assert!(m.finished.is_some());
        let steady = status_for(Action::Steady, Some(&r), Some(&committed));
        assert_eq!(steady.migration, committed.migration);
        // A running migration that never committed is not shown as if it still ran.
        let idle = status_for(Action::Steady, Some(&r), Some(&running));
        assert_eq!(idle.migration, None);
    }

    #[test]
    fn a_migration_no_pass_saw_under_way_is_recorded_from_the_final_reports() {
        // The status this pass started from knows nothing of the migration (it finished before
        // any pass polled it, or the start's status write was not seen yet).
        let r = up_ring(5);
        let commit = commit_3_to_5(&r, 6, 410, 1 << 20);
        let s = status_for(commit, Some(&r), None);
        let m = s.migration.clone().expect("a record of the migration");
        assert_eq!((m.from_replicas, m.to_replicas, m.epoch), (3, 5, 6));
        assert_eq!((m.partitions_done, m.partitions_total), (410, 410));
        assert_eq!(m.bytes_moved, 1 << 20);
        assert!(m.started.is_some() && m.finished.is_some());
        // Kept after the commit, until the next migration starts.
        let steady = status_for(Action::Steady, Some(&r), Some(&s));
        assert_eq!(steady.migration, Some(m));
    }

    #[test]
    fn a_statefulset_the_controller_has_not_caught_up_with_is_never_ready() {
        let r = up_ring(3);
        let previous = CacheClusterStatus {
            updated_replicas: 3,
            ..CacheClusterStatus::default()
        };
        // The template just changed (generation 5); the controller's status still names the
        // old revision, which every pod carries.
        let lagging = StsObs {
            update_revision: Some("demo-new".into()),
            generation: Some(5),
            observed_generation: Some(4),
        };
        let s = status_with_sts(Action::Steady, Some(&r), Some(&previous), Some(&lagging));
        assert_ne!(s.phase, Phase::Ready);
        assert_eq!(cond(&s, COND_READY).status, "False");
        let p = cond(&s, COND_PROGRESSING);
        assert_eq!(
            (p.status.as_str(), p.reason.as_str()),
            ("True", "StatefulSetUpdating")
        );
        assert!(p.message.contains("generation 5"), "{}", p.message);
        // Once caught up, the same observation is Ready with every member counted.
        let caught_up = StsObs {
            observed_generation: Some(5),
            ..lagging
        };
        let s = status_with_sts(Action::Steady, Some(&r), Some(&previous), Some(&caught_up));
        assert_eq!(s.phase, Phase::Ready);
        assert_eq!(s.updated_replicas, 3);
        // Caught up on a new revision that no pod has yet: a rollout is due, not Ready.
        let new_template = StsObs {
            update_revision: Some("demo-newer".into()),
            ..caught_up
        };
        let s = status_with_sts(
            Action::Steady,
            Some(&r),
            Some(&previous),
            Some(&new_template),
        );
        assert_eq!(s.updated_replicas, 0);
        assert_ne!(s.phase, Phase::Ready);
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let r = up_ring(3);
        let mut first = status_for(Action::Steady, Some(&r), None);
        let old = Time(Timestamp::from_second(1000).unwrap());
        for c in &mut first.conditions {
            c.last_transition_time = old.clone();
        }
        let again = status_for(Action::Steady, Some(&r), Some(&first));
        assert_eq!(cond(&again, COND_READY).last_transition_time, old);
        let mut down = r.clone();
        down.members[0].state = MemberState::Down;
        let flipped = status_for(Action::Steady, Some(&down), Some(&first));
        assert_ne!(cond(&flipped, COND_READY).last_transition_time, old);
    }

    #[test]
    fn events_name_every_transition() {
        let r = up_ring(3);
        let d = Decision {
            sts_replicas: Some(3),
            action: Action::UpdateMembers {
                ring: r,
                transitions: vec![Transition {
                    id: "demo-1".into(),
                    from: MemberState::Up,
                    to: MemberState::Down,
                    why: "pod not ready or gone",
                }],
                losses: vec![],
            },
        };
        let evs = events_for(&d, None);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].reason, "MemberDown");
        assert!(evs[0].warning);
    }

    #[test]
    fn invalid_spec_warning_is_not_repeated() {
        let err = SpecError::Replicas(0);
        let d = Decision {
            sts_replicas: None,
            action: Action::Invalid(err.clone()),
        };
        assert_eq!(events_for(&d, None).len(), 1);
        let r = up_ring(3);
        let s = status_for(Action::Invalid(err), Some(&r), None);
        assert!(events_for(&d, Some(&s)).is_empty());
    }
}
