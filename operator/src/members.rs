//! Pod readiness → member states and addresses (DESIGN.md "state"): a member whose pod is not
//! live goes `down`; a `down` member whose pod is live again goes `recovering`; a `recovering`
//! member goes back to its steady state once it reports its pulls done for the current epoch.
//! When no member serves reads (a new cluster, a full outage), live members go straight to
//! their steady state: there is no source to recover from. Failure never changes the table.

use std::collections::BTreeMap;

use ringcache_ring::{Member, MemberState, RingDoc};

use crate::build::PORT;
use crate::observed::{MigrationReport, PodObs};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub id: String,
    pub from: MemberState,
    pub to: MemberState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersUpdate {
    pub members: Vec<Member>,
    pub transitions: Vec<Transition>,
    /// A state or an address differs from the ring: it must be rewritten.
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

pub fn next_members(
    ring: &RingDoc,
    pods: &BTreeMap<String, PodObs>,
    reports: &BTreeMap<String, MigrationReport>,
) -> MembersUpdate {
    let mut transitions = Vec::new();
    let mut changed = false;
    // With no member serving there is nothing newer to pull from (a new cluster, or every
    // member came back at once): recovery would wait for a source that does not exist.
    let someone_serves = ring.members.iter().any(|m| m.state.serves_reads());
    let members = ring
        .members
        .iter()
        .enumerate()
        .map(|(index, member)| {
            let pod = pods.get(&member.id);
            let live = pod.is_some_and(PodObs::is_live);
            // Keep the last known address while a pod has none: it is only a hint for `down`.
            let addr = pod
                .and_then(|p| p.ip.as_deref())
                .filter(|ip| !ip.is_empty())
                .map(addr_of)
                .unwrap_or_else(|| member.addr.clone());
            let state = match (live, member.state) {
                (false, _) => MemberState::Down,
                (true, MemberState::Down | MemberState::Recovering) if !someone_serves => {
                    steady_state(ring, index as u32)
                }
                (true, MemberState::Down) => MemberState::Recovering,
                (true, MemberState::Recovering) => {
                    if reports
                        .get(&member.id)
                        .is_some_and(|r| r.done_for(ring.epoch))
                    {
                        steady_state(ring, index as u32)
                    } else {
                        MemberState::Recovering
                    }
                }
                (true, _) => steady_state(ring, index as u32),
            };
            if state != member.state {
                transitions.push(Transition {
                    id: member.id.clone(),
                    from: member.state,
                    to: state,
                });
            }
            changed |= state != member.state || addr != member.addr;
            Member {
                id: member.id.clone(),
                addr,
                state,
            }
        })
        .collect();
    MembersUpdate {
        members,
        transitions,
        changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ringdoc;

    fn ring(states: &[MemberState]) -> RingDoc {
        let ids: Vec<String> = (0..states.len()).map(|i| format!("demo-{i}")).collect();
        let mut doc = ringdoc::initial(&ids, 16, states.len().min(2) as u32).unwrap();
        for (i, s) in states.iter().enumerate() {
            doc.members[i].state = *s;
            doc.members[i].addr = format!("10.0.0.{i}:7070");
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
            },
        )
    }

    use MemberState::*;

    #[test]
    fn unready_pod_marks_member_down_and_keeps_the_table() {
        let r = ring(&[Up, Up, Up]);
        let pods = BTreeMap::from([
            pod(0, true, "10.0.0.0"),
            pod(1, false, "10.0.0.1"),
            pod(2, true, "10.0.0.2"),
        ]);
        let u = next_members(&r, &pods, &BTreeMap::new());
        assert!(u.changed);
        assert_eq!(u.members[1].state, Down);
        assert_eq!(
            u.transitions,
            vec![Transition {
                id: "demo-1".into(),
                from: Up,
                to: Down
            }]
        );
    }

    #[test]
    fn missing_pod_is_down() {
        let r = ring(&[Up, Up]);
        let pods = BTreeMap::from([pod(0, true, "10.0.0.0")]);
        let u = next_members(&r, &pods, &BTreeMap::new());
        assert_eq!(u.members[1].state, Down);
        assert_eq!(u.members[1].addr, "10.0.0.1:7070", "last address kept");
    }

    #[test]
    fn down_member_back_ready_recovers_with_its_new_ip() {
        let r = ring(&[Up, Down]);
        let pods = BTreeMap::from([pod(0, true, "10.0.0.0"), pod(1, true, "10.0.9.9")]);
        let u = next_members(&r, &pods, &BTreeMap::new());
        assert_eq!(u.members[1].state, Recovering);
        assert_eq!(u.members[1].addr, "10.0.9.9:7070");
    }

    #[test]
    fn recovering_member_is_up_only_after_reporting_done_for_this_epoch() {
        let r = ring(&[Up, Recovering]);
        let pods = BTreeMap::from([pod(0, true, "10.0.0.0"), pod(1, true, "10.0.0.1")]);
        let old = MigrationReport {
            epoch: r.epoch - 1,
            done: true,
            ..MigrationReport::default()
        };
        let u = next_members(&r, &pods, &BTreeMap::from([("demo-1".to_string(), old)]));
        assert!(!u.changed);
        assert_eq!(u.members[1].state, Recovering);
        let current = MigrationReport {
            epoch: r.epoch,
            done: true,
            ..MigrationReport::default()
        };
        let u = next_members(
            &r,
            &pods,
            &BTreeMap::from([("demo-1".to_string(), current)]),
        );
        assert_eq!(u.members[1].state, Up);
    }

    #[test]
    fn with_nobody_serving_live_members_come_up_directly() {
        let r = ring(&[Down, Down, Recovering]);
        let pods = BTreeMap::from([
            pod(0, true, "10.0.0.0"),
            pod(1, false, ""),
            pod(2, true, "10.0.0.2"),
        ]);
        let u = next_members(&r, &pods, &BTreeMap::new());
        let states: Vec<_> = u.members.iter().map(|m| m.state).collect();
        assert_eq!(states, [Up, Down, Up]);
    }

    #[test]
    fn steady_cluster_changes_nothing() {
        let r = ring(&[Up, Up]);
        let pods = BTreeMap::from([pod(0, true, "10.0.0.0"), pod(1, true, "10.0.0.1")]);
        let u = next_members(&r, &pods, &BTreeMap::new());
        assert!(!u.changed);
        assert!(u.transitions.is_empty());
    }

    #[test]
    fn terminating_pod_is_down_even_if_ready() {
        let r = ring(&[Up]);
        let mut pods = BTreeMap::from([pod(0, true, "10.0.0.0")]);
        pods.get_mut("demo-0").unwrap().terminating = true;
        assert_eq!(
            next_members(&r, &pods, &BTreeMap::new()).members[0].state,
            Down
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        assert_eq!(addr_of("fd00::1"), "[fd00::1]:7070");
        assert_eq!(addr_of("10.1.2.3"), "10.1.2.3:7070");
    }
}
