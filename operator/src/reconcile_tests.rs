//! Reconcile against the scripted mock API server: the exact calls of one pass for a new
//! cluster, scale up, scale down, a pod going unready and an invalid spec.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;
use ringcache_ring::{MemberState, RingDoc};

use crate::build::test_support::cluster;
use crate::fixtures::*;
use crate::observed::MigrationReport;
use crate::reconcile::ACTIVE_REQUEUE;
use crate::ringdoc;
use crate::types::{CacheCluster, Phase};
use kube::runtime::controller::Action as Requeue;

/// A committed ring of `n` up members (pod i at 10.0.0.i), epoch 10.
fn up_ring(n: u32) -> RingDoc {
    let ids: Vec<String> = (0..n).map(|i| format!("demo-{i}")).collect();
    let mut r = ringdoc::initial(&ids, 1024, 2).unwrap();
    r.epoch = 10;
    for (i, m) in r.members.iter_mut().enumerate() {
        m.state = MemberState::Up;
        m.addr = format!("10.0.0.{i}:7070");
    }
    r
}

fn done(epoch: u64, ids: impl IntoIterator<Item = u32>) -> BTreeMap<String, MigrationReport> {
    ids.into_iter()
        .map(|i| {
            (
                format!("demo-{i}"),
                MigrationReport {
                    epoch,
                    partitions_total: 3,
                    partitions_done: 3,
                    bytes: 300,
                    done: true,
                    ..MigrationReport::default()
                },
            )
        })
        .collect()
}

/// Observe steps for a cluster whose ring and secret exist (no StatefulSet observed).
fn observe(ring: &RingDoc, ready: &[bool]) -> Vec<Expect> {
    vec![
        expect(Method::GET, cm_path(), Reply::Json(200, ring_cm(ring))),
        expect(Method::GET, secret_path(), Reply::Json(200, secret())),
        expect(Method::GET, pods_path(), Reply::Json(200, pod_list(ready))),
        expect(Method::GET, sts_path(), Reply::NotFound),
        expect(Method::GET, cc_path(), Reply::NotFound),
    ]
}

fn owned_objects() -> Vec<Expect> {
    vec![
        expect(Method::PATCH, svc_path("demo-peers"), Reply::Echo),
        expect(Method::PATCH, svc_path("demo"), Reply::Echo),
        expect(Method::PATCH, sts_path(), Reply::Echo),
        expect(Method::PATCH, pdb_path(), Reply::Echo),
    ]
}

fn tail(cc: &CacheCluster, events: usize) -> Vec<Expect> {
    let mut v: Vec<Expect> = (0..events)
        .map(|_| expect(Method::POST, events_path(), Reply::Echo))
        .collect();
    v.push(expect(
        Method::PATCH,
        status_path(),
        Reply::Json(200, cc_json(cc)),
    ));
    v
}

/// A pass that writes a new ring: observe, write the ring, apply the owned objects, one event
/// and the status.
fn ring_write_pass(ring: &RingDoc, ready: &[bool], cc: &CacheCluster) -> Vec<Expect> {
    let mut script = observe(ring, ready);
    script.push(expect(Method::PATCH, cm_path(), Reply::Echo));
    script.extend(owned_objects());
    script.extend(tail(cc, 1));
    script
}

/// A pass that writes no ring: observe, apply the owned objects, no event, the status.
fn quiet_pass(ring: &RingDoc, ready: &[bool], cc: &CacheCluster) -> Vec<Expect> {
    let mut script = observe(ring, ready);
    script.extend(owned_objects());
    script.extend(tail(cc, 0));
    script
}

/// The ring written by a pass.
fn written_ring(seen: &[Seen]) -> RingDoc {
    ring_in(&find(seen, Method::PATCH, &cm_path()).body)
}

/// A committed ring of `n` up members each vouched for by an incarnation, and each member's
/// report of that incarnation done at the ring's epoch.
fn vouched_ring(n: u32) -> (RingDoc, BTreeMap<String, MigrationReport>) {
    let mut ring = up_ring(n);
    for (i, m) in ring.members.iter_mut().enumerate() {
        m.incarnation = Some(format!("inc-{i}"));
    }
    let reports = (0..n)
        .map(|i| {
            (
                format!("demo-{i}"),
                MigrationReport {
                    epoch: ring.epoch,
                    done: true,
                    incarnation: Some(format!("inc-{i}")),
                    ..MigrationReport::default()
                },
            )
        })
        .collect();
    (ring, reports)
}

/// The status condition of type `kind`.
fn condition(status: &serde_json::Value, kind: &str) -> serde_json::Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap()
        .clone()
}

fn find<'a>(seen: &'a [Seen], method: Method, path: &str) -> &'a Seen {
    seen.iter()
        .find(|s| s.method == method && s.path == path)
        .unwrap_or_else(|| panic!("no {method} {path}"))
}

#[tokio::test]
async fn persistence_change_on_an_existing_stateful_set_is_reported_not_applied() {
    let ring = up_ring(3);
    let cc = cluster("demo", r#"{"replicas":3,"persistence":{"enabled":true}}"#);
    let existing = {
        let plain = cluster("demo", r#"{"replicas":3}"#);
        let owner = crate::build::Owner::of(&plain).unwrap();
        serde_json::to_value(crate::build::stateful_set(&owner, &plain, 3)).unwrap()
    };
    let mut script = observe(&ring, &[true; 3]);
    script[3] = expect(Method::GET, sts_path(), Reply::Json(200, existing));
    script.extend([
        expect(Method::PATCH, svc_path("demo-peers"), Reply::Echo),
        expect(Method::PATCH, svc_path("demo"), Reply::Echo),
        expect(Method::PATCH, pdb_path(), Reply::Echo),
    ]);
    script.extend(tail(&cc, 1));
    let (result, seen) = run_pass(cc, Arc::new(FakeNodes::default()), script).await;
    result.unwrap();
    assert!(
        !seen
            .iter()
            .any(|s| s.method == Method::PATCH && s.path == sts_path())
    );
    assert_eq!(event_reasons(&seen), ["Blocked"]);
    let status = status_of(&seen);
    assert_eq!(status["phase"], "Degraded");
}

fn sts_replicas(seen: &[Seen]) -> i64 {
    find(seen, Method::PATCH, &sts_path()).body["spec"]["replicas"]
        .as_i64()
        .unwrap()
}

fn status_of(seen: &[Seen]) -> serde_json::Value {
    find(seen, Method::PATCH, &status_path()).body["status"].clone()
}

fn event_reasons(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .filter(|s| s.path == events_path())
        .map(|s| s.body["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn new_cluster_creates_secret_ring_and_objects() {
    let cc = cluster("demo", r#"{"replicas":3}"#);
    let mut script = vec![
        expect(Method::GET, cm_path(), Reply::NotFound),
        expect(Method::GET, secret_path(), Reply::NotFound),
        expect(Method::POST, secrets_path(), Reply::Echo),
        expect(Method::GET, pods_path(), Reply::Json(200, pod_list(&[]))),
        expect(Method::GET, sts_path(), Reply::NotFound),
        expect(Method::GET, cc_path(), Reply::NotFound),
        expect(Method::POST, cms_path(), Reply::Echo),
    ];
    script.extend(owned_objects());
    script.extend(tail(&cc, 1));
    let nodes = Arc::new(FakeNodes::default());
    let (result, seen) = run_pass(cc, nodes.clone(), script).await;
    assert_eq!(result.unwrap(), Requeue::requeue(ACTIVE_REQUEUE));

    let secret = find(&seen, Method::POST, &secrets_path());
    assert_eq!(secret.body["metadata"]["name"], "demo-internal");
    assert!(secret.body["data"]["token"].as_str().unwrap().len() >= 64);

    // Created, not applied: a second operator creating it at the same time gets a conflict.
    let cm = find(&seen, Method::POST, &cms_path());
    let ring = ring_in(&cm.body);
    assert_eq!(ring.epoch, 1);
    assert_eq!(ring.members.len(), 3);
    assert!(ring.members.iter().all(|m| m.state == MemberState::Down));

    assert_eq!(sts_replicas(&seen), 3);
    assert_eq!(event_reasons(&seen), ["RingCreated"]);
    assert_eq!(status_of(&seen)["phase"], "Pending");
    assert!(nodes.pushed_to().is_empty(), "no pod has an address yet");
}

#[tokio::test]
async fn scale_up_grows_the_stateful_set_then_migrates_then_commits() {
    let ring = up_ring(3);
    let cc = cluster("demo", r#"{"replicas":5}"#);

    // Pass 1: new pods not there yet → StatefulSet raised to 5, ring untouched.
    let script = quiet_pass(&ring, &[true, true, true], &cc);
    let (result, seen) = run_pass(cc.clone(), Arc::new(FakeNodes::default()), script).await;
    result.unwrap();
    assert_eq!(sts_replicas(&seen), 5);
    assert_eq!(status_of(&seen)["phase"], "Scaling");

    // Pass 2: new pods ready → pending table with joining members, pushed to all five.
    let script = ring_write_pass(&ring, &[true; 5], &cc);
    let nodes = Arc::new(FakeNodes::default());
    let (result, seen) = run_pass(cc.clone(), nodes.clone(), script).await;
    result.unwrap();
    let pending = written_ring(&seen);
    assert!(pending.pending.is_some());
    assert_eq!(pending.epoch, 11);
    assert_eq!(pending.members[3].state, MemberState::Joining);
    assert_eq!(
        nodes.pushed_to(),
        ["demo-0", "demo-1", "demo-2", "demo-3", "demo-4"]
    );
    assert_eq!(event_reasons(&seen), ["ScalingStarted"]);
    let status = status_of(&seen);
    assert_eq!(status["migration"]["toReplicas"], 5);

    // Pass 3: every target owner reports done for epoch 11 → commit.
    let targets = ringdoc::migration_targets(&pending);
    let script = ring_write_pass(&pending, &[true; 5], &cc);
    let nodes = Arc::new(FakeNodes::with_reports(done(11, targets)));
    let (result, seen) = run_pass(cc.clone(), nodes, script).await;
    result.unwrap();
    let committed = written_ring(&seen);
    assert!(committed.pending.is_none());
    assert_eq!(committed.epoch, 12);
    assert!(committed.members.iter().all(|m| m.state == MemberState::Up));
    assert_eq!(event_reasons(&seen), ["MigrationCommitted"]);
}

#[tokio::test]
async fn scale_down_moves_data_before_the_stateful_set_shrinks() {
    let ring = up_ring(5);
    let cc = cluster("demo", r#"{"replicas":3}"#);

    // Pass 1: leaving members and a pending table; the StatefulSet keeps 5 pods.
    let script = ring_write_pass(&ring, &[true; 5], &cc);
    let (result, seen) = run_pass(cc.clone(), Arc::new(FakeNodes::default()), script).await;
    result.unwrap();
    let pending = written_ring(&seen);
    assert_eq!(pending.members[4].state, MemberState::Leaving);
    assert_eq!(
        sts_replicas(&seen),
        5,
        "no pod removed before the data moved"
    );

    // Pass 2: targets still pulling → nothing written but status; still 5 pods.
    let targets = ringdoc::migration_targets(&pending);
    let script = quiet_pass(&pending, &[true; 5], &cc);
    let mut reports = done(pending.epoch, targets.clone());
    if let Some(r) = reports.values_mut().next() {
        r.done = false;
        r.partitions_done = 1;
    }
    let (result, seen) = run_pass(
        cc.clone(),
        Arc::new(FakeNodes::with_reports(reports)),
        script,
    )
    .await;
    result.unwrap();
    assert_eq!(sts_replicas(&seen), 5);
    let status = status_of(&seen);
    assert_eq!(status["phase"], "Scaling");
    assert!(status["migration"]["partitionsDone"].as_i64().unwrap() > 0);

    // Pass 3: all done → commit; the StatefulSet is still 5 in this pass.
    let script = ring_write_pass(&pending, &[true; 5], &cc);
    let nodes = Arc::new(FakeNodes::with_reports(done(pending.epoch, targets)));
    let (result, seen) = run_pass(cc.clone(), nodes, script).await;
    result.unwrap();
    let committed = written_ring(&seen);
    assert_eq!(committed.members.len(), 3);
    assert_eq!(sts_replicas(&seen), 5);

    // Pass 4: the committed ring has 3 members → now the StatefulSet shrinks.
    let script = quiet_pass(&committed, &[true; 5], &cc);
    let (result, seen) = run_pass(cc.clone(), Arc::new(FakeNodes::default()), script).await;
    result.unwrap();
    assert_eq!(sts_replicas(&seen), 3);
    assert_eq!(status_of(&seen)["phase"], "Ready");
}

#[tokio::test]
async fn pod_going_unready_marks_the_member_down() {
    let ring = up_ring(3);
    let cc = cluster("demo", r#"{"replicas":3}"#);
    let script = ring_write_pass(&ring, &[true, false, true], &cc);
    let nodes = Arc::new(FakeNodes::default());
    let (result, seen) = run_pass(cc, nodes.clone(), script).await;
    result.unwrap();
    let next = written_ring(&seen);
    assert_eq!(next.members[1].state, MemberState::Down);
    assert_eq!(
        next.table, ring.table,
        "failure changes states, not the table"
    );
    assert_eq!(next.epoch, ring.epoch + 1);
    assert_eq!(
        nodes.pushed_to(),
        ["demo-0", "demo-2"],
        "no push to the down member"
    );
    assert_eq!(event_reasons(&seen), ["MemberDown"]);
    let status = status_of(&seen);
    assert_eq!(status["phase"], Phase::Degraded.as_str());
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert!(degraded["message"].as_str().unwrap().contains("demo-1"));
}

#[tokio::test]
async fn invalid_spec_reports_degraded_and_touches_nothing() {
    let ring = up_ring(3);
    // Slipped past the CEL rule (e.g. an older CRD): RF 3 with 1 replica.
    let cc = cluster("demo", r#"{"replicas":1,"replicationFactor":3}"#);
    let mut script = observe(&ring, &[true; 3]);
    script.extend(tail(&cc, 1));
    let nodes = Arc::new(FakeNodes::default());
    let (result, seen) = run_pass(cc, nodes.clone(), script).await;
    assert!(result.is_ok(), "an invalid spec is not a reconcile error");
    assert!(
        !seen
            .iter()
            .any(|s| s.method != Method::GET && (s.path == sts_path() || s.path == cm_path())),
        "no object changed"
    );
    assert!(nodes.pushed_to().is_empty());
    assert_eq!(event_reasons(&seen), ["InvalidSpec"]);
    let status = status_of(&seen);
    assert_eq!(status["phase"], "Degraded");
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded["reason"], "InvalidSpec");
}

#[tokio::test]
async fn unreadable_ring_is_never_overwritten() {
    let cc = cluster("demo", r#"{"replicas":3}"#);
    let broken = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "demo-ring", "namespace": NS},
        "data": {"ring.json": "{not json"}
    });
    let mut script = vec![
        expect(Method::GET, cm_path(), Reply::Json(200, broken)),
        expect(Method::GET, secret_path(), Reply::Json(200, secret())),
        expect(
            Method::GET,
            pods_path(),
            Reply::Json(200, pod_list(&[true; 3])),
        ),
        expect(Method::GET, sts_path(), Reply::NotFound),
        expect(Method::GET, cc_path(), Reply::NotFound),
    ];
    script.extend(tail(&cc, 1));
    let (result, seen) = run_pass(cc, Arc::new(FakeNodes::default()), script).await;
    result.unwrap();
    assert_eq!(event_reasons(&seen), ["Blocked"]);
    assert_eq!(status_of(&seen)["phase"], "Degraded");
}

#[tokio::test]
async fn recovering_member_is_polled_repushed_then_marked_up() {
    let mut ring = up_ring(3);
    ring.members[1].state = MemberState::Recovering;
    let cc = cluster("demo", r#"{"replicas":3}"#);

    // The node still reports an older epoch: it missed the push, so it gets the ring again and
    // nothing else changes.
    let script = quiet_pass(&ring, &[true; 3], &cc);
    let nodes = Arc::new(FakeNodes::with_reports(done(ring.epoch - 1, [1])));
    let (result, seen) = run_pass(cc.clone(), nodes.clone(), script).await;
    assert_eq!(result.unwrap(), Requeue::requeue(ACTIVE_REQUEUE));
    assert_eq!(nodes.pushed_to(), ["demo-1"]);
    assert_eq!(status_of(&seen)["members"][1]["state"], "recovering");

    // Done for the current epoch → up, pushed to everyone.
    let script = ring_write_pass(&ring, &[true; 3], &cc);
    let nodes = Arc::new(FakeNodes::with_reports(done(ring.epoch, [1])));
    let (result, seen) = run_pass(cc, nodes.clone(), script).await;
    result.unwrap();
    let next = written_ring(&seen);
    assert_eq!(next.members[1].state, MemberState::Up);
    assert_eq!(nodes.pushed_to(), ["demo-0", "demo-1", "demo-2"]);
    assert_eq!(event_reasons(&seen), ["MemberUp"]);
    assert_eq!(status_of(&seen)["phase"], "Ready");
}

#[tokio::test]
async fn the_ring_is_written_only_over_the_version_observed_and_a_conflict_writes_nothing_else() {
    let ring = up_ring(3);
    let cc = cluster("demo", r#"{"replicas":3}"#);
    // demo-1 unready → a new ring must be written.
    let mut script = observe(&ring, &[true, false, true]);
    let conflict = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the object has been modified", "reason": "Conflict", "code": 409
    });
    script.push(expect(Method::PATCH, cm_path(), Reply::Json(409, conflict)));
    let nodes = Arc::new(FakeNodes::default());
    let (result, seen) = run_pass(cc, nodes.clone(), script).await;
    assert_eq!(
        result.unwrap(),
        Requeue::requeue(crate::reconcile::CONFLICT_REQUEUE)
    );
    let write = find(&seen, Method::PATCH, &cm_path());
    assert!(write.query.contains("fieldManager=ringcache-operator"));
    assert_eq!(write.body["metadata"]["resourceVersion"], RING_VERSION);
    assert!(
        nodes.pushed_to().is_empty(),
        "a ring that lost the race is not pushed"
    );
}

/// Observe steps of a mid-rollout pass: pods 0 and 1 on the old revision.
fn rollout_observe(ring: &RingDoc, cc: &CacheCluster) -> Vec<Expect> {
    vec![
        expect(Method::GET, cm_path(), Reply::Json(200, ring_cm(ring))),
        expect(Method::GET, secret_path(), Reply::Json(200, secret())),
        expect(
            Method::GET,
            pods_path(),
            Reply::Json(200, pod_list_at(&[true; 3], &[0, 1])),
        ),
        expect(Method::GET, sts_path(), Reply::Json(200, sts_observed(cc))),
        expect(Method::GET, cc_path(), Reply::NotFound),
    ]
}

#[tokio::test]
async fn a_rollout_takes_the_member_out_of_the_write_set_then_deletes_its_pod() {
    let (ring, reports) = vouched_ring(3);
    let cc = cluster("demo", r#"{"replicas":3}"#);
    // Pass 1: demo-1 (the highest outdated) leaves the write set; nothing is deleted yet.
    let mut script = rollout_observe(&ring, &cc);
    script.push(expect(Method::PATCH, cm_path(), Reply::Echo));
    script.extend(owned_objects());
    script.extend(tail(&cc, 1));
    let nodes = Arc::new(FakeNodes::with_reports(reports.clone()));
    let (result, seen) = run_pass(cc.clone(), nodes.clone(), script).await;
    assert_eq!(result.unwrap(), Requeue::requeue(ACTIVE_REQUEUE));
    let drained = written_ring(&seen);
    assert_eq!(drained.epoch, ring.epoch + 1);
    assert_eq!(drained.members[1].state, MemberState::Down);
    assert_eq!(nodes.pushed_to(), ["demo-0", "demo-2"]);
    assert!(!seen.iter().any(|s| s.method == Method::DELETE));
    let ev = seen.iter().find(|s| s.path == events_path()).unwrap();
    assert_eq!(ev.body["action"], "Drain demo-1");
    assert_eq!(
        condition(&status_of(&seen), "Progressing")["reason"],
        "RollingRestart"
    );

    // Pass 2: every other node serves with that ring → the pod goes; no ring is written.
    let mut at_drain = reports;
    for r in at_drain.values_mut() {
        r.epoch = drained.epoch;
    }
    let mut script = rollout_observe(&drained, &cc);
    script.push(expect(Method::DELETE, pod_path("demo-1"), Reply::Echo));
    script.extend(owned_objects());
    script.extend(tail(&cc, 1));
    let (result, seen) = run_pass(cc, Arc::new(FakeNodes::with_reports(at_drain)), script).await;
    assert_eq!(result.unwrap(), Requeue::requeue(ACTIVE_REQUEUE));
    assert_eq!(event_reasons(&seen), ["RollingRestart"]);
    let status = status_of(&seen);
    assert_eq!(status["updatedReplicas"], 1);
    assert_eq!(
        condition(&status, "Progressing")["reason"],
        "RollingRestart"
    );
    assert_ne!(
        status["phase"], "Degraded",
        "the drained member is expected down"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.method == Method::PATCH && s.path == cm_path()),
        "the restart itself writes no ring"
    );
}

#[tokio::test]
async fn a_lagging_statefulset_controller_restarts_nothing_and_is_not_ready() {
    let (ring, reports) = vouched_ring(3);
    let cc = cluster("demo", r#"{"replicas":3}"#);
    let mut sts = sts_observed(&cc);
    sts["metadata"]["generation"] = serde_json::json!(8);
    sts["status"]["observedGeneration"] = serde_json::json!(7);
    // Every pod carries the revision the stale status names.
    sts["status"]["updateRevision"] = serde_json::json!("demo-new");
    let mut script = vec![
        expect(Method::GET, cm_path(), Reply::Json(200, ring_cm(&ring))),
        expect(Method::GET, secret_path(), Reply::Json(200, secret())),
        expect(
            Method::GET,
            pods_path(),
            Reply::Json(200, pod_list(&[true; 3])),
        ),
        expect(Method::GET, sts_path(), Reply::Json(200, sts)),
        expect(Method::GET, cc_path(), Reply::NotFound),
    ];
    script.extend(owned_objects());
    script.extend(tail(&cc, 0));
    let (result, seen) = run_pass(cc, Arc::new(FakeNodes::with_reports(reports)), script).await;
    assert_eq!(result.unwrap(), Requeue::requeue(ACTIVE_REQUEUE));
    let status = status_of(&seen);
    assert_ne!(status["phase"], "Ready");
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(
        condition(&status, "Progressing")["reason"],
        "StatefulSetUpdating"
    );
    assert!(!seen.iter().any(|s| s.method == Method::DELETE));
}

#[tokio::test]
async fn a_restart_seen_only_by_its_new_incarnation_makes_the_member_recover() {
    let (ring, mut reports) = vouched_ring(3);
    let cc = cluster("demo", r#"{"replicas":3}"#);
    if let Some(r) = reports.get_mut("demo-2") {
        r.incarnation = Some("inc-2-after-restart".into());
    }
    let script = ring_write_pass(&ring, &[true; 3], &cc);
    let (result, seen) = run_pass(cc, Arc::new(FakeNodes::with_reports(reports)), script).await;
    result.unwrap();
    let next = written_ring(&seen);
    assert_eq!(next.members[2].state, MemberState::Recovering);
    assert_eq!(event_reasons(&seen), ["MemberRecovering"]);
    let ev = seen.iter().find(|s| s.path == events_path()).unwrap();
    assert_eq!(ev.body["action"], "Member demo-2");
}
