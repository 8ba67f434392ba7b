//! Pods and node reports → member states, addresses and incarnations (DESIGN.md "state",
//! "Restarts are recoveries"):
//! - a member whose pod is gone, terminating or unaddressable, or neither ready nor answering,
//!   goes `down`;
//! - a `down` member whose node answers again goes `recovering`;
//! - a `recovering` member goes back to its steady state once the node reports its pulls done
//!   for the current epoch; its incarnation is recorded then, which is the operator vouching for
//!   that one process's data;
//! - an `up` or `leaving` member whose node reports another incarnation than the recorded one
//!   restarted (even if its pod never looked unready): `recovering`;
//! - an `up` or `leaving` member that a peer reports as having missed an acknowledged write:
//!   `recovering` (it copies its partitions again);
//! - while nothing was ever vouched for (a new cluster), live members go straight to their
//!   steady state: there is no data anywhere to recover.
//!
//! Failure never changes the table.

use std::collections::{BTreeMap, BTreeSet};

use ringcache_ring::{Member, MemberState, RingDoc};

use crate::build::PORT;
use crate::observed::{MigrationReport, PodObs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: String,
    pub from: MemberState,
    pub to: MemberState,
    /// Why, in a few words (shown in the Event).
    pub why: &'static str,
}

/// Partitions a member recovered without a complete copy to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub member: String,
    pub partitions: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersUpdate {
    pub members: Vec<Member>,
    pub transitions: Vec<Transition>,
    /// Recoveries that finished with partitions lost (each reported once, on its transition).
    pub losses: Vec<Loss>,
    /// A state, an address or an incarnation differs from the ring: it must be rewritten.
    pub changed: bool,
}

/// `ip:port` a member is reached at.
pub fn addr_of(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{PORT}")
    } else {
        format!("{ip}:{PORT}")
    }
}

/// The state a live member has when nothing is wrong with it: while a migration is pending, a
/// member outside the target table is `leaving` and one that owns nothing yet is `joining`.
pub fn steady_state(ring: &RingDoc, index: u32) -> MemberState {
    let Some(pending) = &ring.pending else {
        return MemberState::Up;
    };
    if !pending.table.iter().any(|row| row.contains(&index)) {
        MemberState::Leaving
    } else if !ring.table.iter().any(|row| row.contains(&index)) {
        MemberState::Joining
    } else {
        MemberState::Up
    }
}

/// Members some node reports as stale (missed a write it acknowledged), by id.
pub fn stale_members(reports: &BTreeMap<String, MigrationReport>) -> BTreeSet<String> {
    reports
        .iter()
        .flat_map(|(reporter, r)| {
            r.stale_replicas
                .iter()
                .filter(move |id| *id != reporter)
                .cloned()
        })
        .collect()
}

/// `held_down`: a member a rollout took out of the write set for its restart; it stays as it
/// is whatever its pod and node say.
pub fn next_members(
    ring: &RingDoc,
    pods: &BTreeMap<String, PodObs>,
    reports: &BTreeMap<String, MigrationReport>,
    held_down: Option<&str>,
) -> MembersUpdate {
    let mut transitions = Vec::new();
    let mut losses = Vec::new();
    let mut changed = false;
    // Nothing was ever vouched for: no member has held data, so none has any to recover.
    let fresh = ring.members.iter().all(|m| m.incarnation.is_none());
    let stale = stale_members(reports);
    let members = ring
        .members
        .iter()
        .enumerate()
        .map(|(index, member)| {
            let pod = pods.get(&member.id);
            let report = reports.get(&member.id);
            let live = pod.is_some_and(|p| p.is_live() || (p.addressable() && report.is_some()))
                && held_down != Some(member.id.as_str());
            // Keep the last known address while a pod has none: it is only a hint for `down`.
            let addr = pod
                .and_then(|p| p.ip.as_deref())
                .filter(|ip| !ip.is_empty())
                .map(addr_of)
                .unwrap_or_else(|| member.addr.clone());
            let recorded = member.incarnation.clone();
            let reported = report.and_then(|r| r.incarnation.clone());
            let steady = steady_state(ring, index as u32);
            let (state, incarnation, why) = match (live, member.state) {
                (false, MemberState::Down) => (MemberState::Down, recorded, ""),
                (false, _) => (MemberState::Down, recorded, "pod not ready or gone"),
                (true, MemberState::Down) if fresh => {
                    (steady, reported.or(recorded), "first start")
                }
                (true, MemberState::Down) => (
                    MemberState::Recovering,
                    recorded,
                    "back: recovering its data",
                ),
                (true, MemberState::Recovering) => match report {
                    Some(r) if r.done_for(ring.epoch) => {
                        if !r.unrecoverable.is_empty() {
                            losses.push(Loss {
                                member: member.id.clone(),
                                partitions: r.unrecoverable.clone(),
                            });
                        }
                        (steady, reported.or(recorded), "recovered")
                    }
                    _ => (MemberState::Recovering, recorded, ""),
                },
                (true, MemberState::Up | MemberState::Leaving)
                    if reported.is_some() && recorded.is_some() && reported != recorded =>
                {
                    (
                        MemberState::Recovering,
                        recorded,
                        "restarted: recovering its data",
                    )
                }
                (true, MemberState::Up | MemberState::Leaving) if stale.contains(&member.id) => (
                    MemberState::Recovering,
                    recorded,
                    "missed replica writes: recovering",
                ),
                // A ring written before incarnations: adopt what the node reports.
                (true, MemberState::Up | MemberState::Leaving) if recorded.is_none() => {
                    (steady, reported, "")
                }
                (true, _) => (steady, recorded, ""),
            };
            if state != member.state {
                transitions.push(Transition {
                    id: member.id.clone(),
                    from: member.state,
                    to: state,
                    why,
                });
            }
            changed |=
                state != member.state || addr != member.addr || incarnation != member.incarnation;
            Member {
                id: member.id.clone(),
                addr,
                state,
                incarnation,
            }
        })
        .collect();
    MembersUpdate {
        members,
        transitions,
        losses,
        changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ringdoc;

    /// A ring in `states`, every member vouched for with incarnation `inc-i`.
    fn ring(states: &[MemberState]) -> RingDoc {
        let ids: Vec<String> = (0..states.len()).map(|i| format!("demo-{i}")).collect();
        let mut doc = ringdoc::initial(&ids, 16, states.len().min(2) as u32).unwrap();
        for (i, s) in states.iter().enumerate() {
            doc.members[i].state = *s;
            doc.members[i].addr = format!("10.0.0.{i}:7070");
            doc.members[i].incarnation = Some(format!("inc-{i}"));
        }
        doc
    }

    fn pod(i: usize, ready: bool, ip: &str) -> (String, PodObs) {
        let name = format!("demo-{i}");
        (
            name.clone(),
            PodObs {
                name,
                ready,
                ip: (!ip.is_empty()).then(|| ip.to_string()),
                terminating: false,
                revision: None,
            },
        )
    }

    fn report(i: usize, epoch: u64, done: bool, inc: &str) -> (String, MigrationReport) {
        (
            format!("demo-{i}"),
            MigrationReport {
                epoch,
                done,
                incarnation: Some(inc.into()),
                ..MigrationReport::default()
            },
        )
    }

    fn ready3() -> BTreeMap<String, PodObs> {
        BTreeMap::from([
            pod(0, true, "10.0.0.0"),
            pod(1, true, "10.0.0.1"),
            pod(2, true, "10.0.0.2"),
        ])
    }

    use MemberState::*;

    #[test]
    fn an_unready_pod_whose_node_does_not_answer_is_down_and_the_table_stays() {
        let r = ring(&[Up, Up, Up]);
        let mut pods = ready3();
        pods.insert("demo-1".into(), pod(1, false, "10.0.0.1").1);
        let u = next_members(&r, &pods, &BTreeMap::new(), None);
        assert!(u.changed);
        assert_eq!(u.members[1].state, Down);
        assert_eq!(u.members[1].incarnation.as_deref(), Some("inc-1"));
        assert_eq!(
            u.transitions,
            vec![Transition {
                id: "demo-1".into(),
                from: Up,
                to: Down,
                why: "pod not ready or gone",
            }]
        );
    }

    #[test]
    fn missing_pod_is_down() {
        let r = ring(&[Up, Up]);
        let pods = BTreeMap::from([pod(0, true, "10.0.0.0")]);
        let u = next_members(&r, &pods, &BTreeMap::new(), None);
        assert_eq!(u.members[1].state, Down);
        assert_eq!(u.members[1].addr, "10.0.0.1:7070", "last address kept");
    }

    #[test]
    fn a_member_back_from_down_recovers_even_before_its_pod_is_ready() {
        // Its node is not ready until it has recovered, and it recovers once marked: waiting
        // for readiness first would wait forever.
        let r = ring(&[Up, Down]);
        let pods = BTreeMap::from([pod(0, true, "10.0.0.0"), pod(1, false, "10.0.9.9")]);
        let reports = BTreeMap::from([report(1, r.epoch, false, "inc-new")]);
        let u = next_members(&r, &pods, &reports, None);
        assert_eq!(u.members[1].state, Recovering);
        assert_eq!(u.members[1].addr, "10.0.9.9:7070");
        assert_eq!(
            u.members[1].incarnation.as_deref(),
            Some("inc-1"),
            "only a finished recovery records the new incarnation"
        );
    }

    #[test]
    fn a_recovering_member_is_up_after_its_report_for_this_epoch_and_its_incarnation_is_vouched() {
        let r = ring(&[Up, Recovering]);
        let pods = BTreeMap::from([pod(0, true, "10.0.0.0"), pod(1, true, "10.0.0.1")]);
        let old = BTreeMap::from([report(1, r.epoch - 1, true, "inc-new")]);
        let u = next_members(&r, &pods, &old, None);
        assert!(!u.changed);
        assert_eq!(u.members[1].state, Recovering);
        let current = BTreeMap::from([report(1, r.epoch, true, "inc-new")]);
        let u = next_members(&r, &pods, &current, None);
        assert_eq!(u.members[1].state, Up);
        assert_eq!(u.members[1].incarnation.as_deref(), Some("inc-new"));
        assert!(u.losses.is_empty());
    }

    #[test]
    fn a_restart_seen_only_as_a_new_incarnation_makes_the_member_recover() {
        // The pod never looked unready (an in-place container restart between two probes).
        let r = ring(&[Up, Up, Up]);
        let reports = BTreeMap::from([
            report(0, r.epoch, true, "inc-0"),
            report(1, r.epoch, false, "inc-1-restarted"),
            report(2, r.epoch, true, "inc-2"),
        ]);
        let u = next_members(&r, &ready3(), &reports, None);
        assert_eq!(u.members[1].state, Recovering);
        assert_eq!(u.transitions.len(), 1);
        assert_eq!(u.transitions[0].why, "restarted: recovering its data");
        assert_eq!(u.members[0].state, Up);
    }

    #[test]
    fn a_member_a_peer_reports_stale_recovers() {
        let r = ring(&[Up, Up, Up]);
        let mut reports = BTreeMap::from([
            report(0, r.epoch, true, "inc-0"),
            report(1, r.epoch, true, "inc-1"),
            report(2, r.epoch, true, "inc-2"),
        ]);
        reports.get_mut("demo-0").unwrap().stale_replicas = vec!["demo-2".into()];
        let u = next_members(&r, &ready3(), &reports, None);
        let states: Vec<_> = u.members.iter().map(|m| m.state).collect();
        assert_eq!(states, [Up, Up, Recovering]);
    }

    #[test]
    fn a_recovery_that_lost_partitions_reports_them_once() {
        let r = ring(&[Up, Recovering]);
        let pods = BTreeMap::from([pod(0, true, "10.0.0.0"), pod(1, true, "10.0.0.1")]);
        let mut reports = BTreeMap::from([report(1, r.epoch, true, "inc-new")]);
        reports.get_mut("demo-1").unwrap().unrecoverable = vec![3, 7];
        let u = next_members(&r, &pods, &reports, None);
        assert_eq!(u.members[1].state, Up);
        assert_eq!(
            u.losses,
            vec![Loss {
                member: "demo-1".into(),
                partitions: vec![3, 7]
            }]
        );
        // Once up, the same report is no new loss.
        let later = ringdoc::with_members(&r, u.members).unwrap();
        assert!(
            next_members(&later, &pods, &reports, None)
                .losses
                .is_empty()
        );
    }

    #[test]
    fn a_new_cluster_comes_up_directly_and_records_incarnations() {
        let mut r = ring(&[Down, Down, Down]);
        for m in &mut r.members {
            m.incarnation = None;
        }
        let mut pods = ready3();
        pods.insert("demo-1".into(), pod(1, false, "").1);
        let reports = BTreeMap::from([
            report(0, r.epoch, false, "a"),
            report(2, r.epoch, false, "c"),
        ]);
        let u = next_members(&r, &pods, &reports, None);
        let states: Vec<_> = u.members.iter().map(|m| m.state).collect();
        assert_eq!(states, [Up, Down, Up]);
        assert_eq!(u.members[0].incarnation.as_deref(), Some("a"));
        // The straggler arrives after the others were vouched for: it recovers like any other.
        let next = ringdoc::with_members(&r, u.members).unwrap();
        let pods = ready3();
        let reports = BTreeMap::from([report(1, next.epoch, false, "b")]);
        assert_eq!(
            next_members(&next, &pods, &reports, None).members[1].state,
            Recovering
        );
    }

    #[test]
    fn a_ring_without_incarnations_adopts_the_reported_ones_quietly() {
        let mut r = ring(&[Up, Up]);
        for m in &mut r.members {
            m.incarnation = None;
        }
        r.members[0].incarnation = Some("legacy-known".into());
        let pods = BTreeMap::from([pod(0, true, "10.0.0.0"), pod(1, true, "10.0.0.1")]);
        let reports = BTreeMap::from([report(1, r.epoch, true, "b")]);
        let u = next_members(&r, &pods, &reports, None);
        assert!(u.changed && u.transitions.is_empty());
        assert_eq!(u.members[1].incarnation.as_deref(), Some("b"));
        assert_eq!(u.members[1].state, Up);
    }

    #[test]
    fn steady_cluster_changes_nothing() {
        let r = ring(&[Up, Up, Up]);
        let reports = BTreeMap::from([
            report(0, r.epoch, true, "inc-0"),
            report(1, r.epoch, true, "inc-1"),
            report(2, r.epoch, true, "inc-2"),
        ]);
        let u = next_members(&r, &ready3(), &reports, None);
        assert!(!u.changed);
        assert!(u.transitions.is_empty());
    }

    #[test]
    fn terminating_pod_is_down_even_if_ready_and_answering() {
        let r = ring(&[Up]);
        let mut pods = BTreeMap::from([pod(0, true, "10.0.0.0")]);
        pods.get_mut("demo-0").unwrap().terminating = true;
        let reports = BTreeMap::from([report(0, r.epoch, true, "inc-0")]);
        assert_eq!(
            next_members(&r, &pods, &reports, None).members[0].state,
            Down
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        assert_eq!(addr_of("fd00::1"), "[fd00::1]:7070");
        assert_eq!(addr_of("10.1.2.3"), "10.1.2.3:7070");
    }
}
