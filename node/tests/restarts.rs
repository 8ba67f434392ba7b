//! Restarts are recoveries: loopback tests of the four ways a restart lost, kept stale or
//! resurrected acknowledged writes (issue "Zero acknowledged-write loss through rolling
//! restarts"), each driven the way the operator drives the nodes: incarnations recorded in the
//! ring, members marked `down`, `recovering` and `up`.

mod support;

use ringcache_ring::MemberState::{Down, Recovering};
use std::time::{Duration, Instant};
use support::*;

/// A 3-node RF=2 cluster (or `n` nodes) whose ring vouches for every running process.
async fn vouched_cluster(name: &str, n: usize, extra: &[&str]) -> Cluster {
    let mut c = Cluster::started(name, n, 2, extra).await;
    let mut ring = c.vouched(c.ring.clone()).await;
    ring.epoch = 2;
    c.set_ring(ring).await;
    c
}

/// Keys whose partition node `a` and node `b` own, found by their owners in `c.ring`.
fn keys_owned_by(c: &Cluster, a: usize, b: usize, checker: &Checker) -> Vec<String> {
    checker
        .acked
        .lock()
        .keys()
        .filter(|k| {
            let owners = c
                .ring
                .owners(ringcache_ring::partition_of(k.as_bytes(), PARTITIONS));
            owners.contains(&(a as u32)) && owners.contains(&(b as u32))
        })
        .cloned()
        .collect()
}

/// `key` is not found through any node.
async fn assert_deleted_everywhere(c: &Cluster, key: &str) {
    for i in 0..c.nodes.len() {
        let r = c.get(i, &format!("/v1/keys/{key}")).await;
        assert_eq!(r.status(), 404, "deleted key came back through rc-{i}");
    }
}

async fn status_and_code(c: &Cluster, i: usize, path: &str) -> (u16, serde_json::Value) {
    match c.get_internal(i, path).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or_default())
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// Mechanism 1: a restarted process found itself `up` in the mounted ring file and served reads
/// and partition pulls from its empty store until the operator noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_process_serves_nothing_from_its_store_until_it_has_recovered() {
    let mut c = vouched_cluster("restart-serves", 3, &[]).await;
    let checker = Checker::default();
    write_keys(&c, &checker, "k", 3_000).await;
    let with_0 = keys_owned_by(&c, 2, 0, &checker);
    let with_1 = keys_owned_by(&c, 2, 1, &checker);
    assert!(with_0.len() > 300 && with_1.len() > 20);
    let old = c.incarnation(2).await;

    // rc-1 frozen: rc-2's recovery cannot get past the write fence, so it stays incomplete for
    // as long as the test looks at it.
    c.signal(1, "STOP");
    c.kill9(2);
    c.start(2, &[]);
    c.wait_alive(2).await;
    let new = c.incarnation(2).await;
    assert_ne!(new, old, "a restart is a new incarnation");

    assert_eq!(c.status(2, "/readyz").await, 503, "ready before recovering");
    let p = ringcache_ring::partition_of(with_0[0].as_bytes(), PARTITIONS);
    let (status, body) = status_and_code(&c, 2, &format!("/internal/v1/partitions/{p}")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("incomplete")),
        "a restarted node served partition {p} for a pull: {body}"
    );
    let m = status_and_code(&c, 2, "/internal/v1/migration").await.1;
    assert_eq!(m["done"], false, "{m}");
    // Reads through the restarted node: served by the complete owner, never from the empty
    // store (a 404 or another value would be a lost or stale read).
    let sample: Vec<String> = with_0.iter().take(300).cloned().collect();
    let acked = checker.acked.lock().clone();
    for k in &sample {
        let r = c.get(2, &format!("/v1/keys/{k}")).await;
        assert_eq!(r.status(), 200, "{k} through the restarted node");
        assert_eq!(r.text().await.unwrap(), acked[k]);
    }
    // Keys whose other owner is frozen cannot be read, but they are never reported missing.
    for k in with_1.iter().take(5) {
        let r = c.get(2, &format!("/v1/keys/{k}")).await;
        assert_ne!(
            r.status(),
            404,
            "{k}: not found on a node that has not recovered"
        );
    }

    c.signal(1, "CONT");
    c.wait_ready(2).await;
    recover(&mut c, 2).await;
    assert_nothing_lost(&c, &checker, 0..3).await;
}

/// Mechanism 2: a partition with no live source counted as done, so a member became `up`
/// without its data and nobody was told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_without_a_complete_source_is_reported_lost_not_done() {
    let mut c = vouched_cluster("lost", 3, &[]).await;
    let checker = Checker::default();
    write_keys(&c, &checker, "k", 2_000).await;
    c.kill9(1);
    c.kill9(2);
    let mut down = Cluster::with_member(&c.ring, 3, 1, Down, None);
    down.members[2].state = Down;
    c.set_ring(down).await;
    c.start(2, &[]);
    c.wait_alive(2).await;
    let inc = c.incarnation(2).await;
    let ring = Cluster::with_member(&c.ring, 4, 2, Recovering, inc);
    c.set_ring(ring).await;
    c.wait_migrations(&[2], 4).await;

    let expected: Vec<u64> = (0..PARTITIONS)
        .filter(|&p| {
            let o = c.ring.owners(p);
            o.contains(&2) && o.iter().all(|&m| m == 1 || m == 2)
        })
        .map(u64::from)
        .collect();
    assert!(!expected.is_empty());
    let m = c.json(2, "/internal/v1/migration").await;
    let lost: Vec<u64> = m["unrecoverable"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default();
    assert_eq!(lost, expected, "report: {m}");
    let metrics = c.get_text(2, "/metrics").await;
    assert!(
        metrics.contains(&format!(
            "ringcache_unrecoverable_partitions {}",
            expected.len()
        )),
        "{metrics}"
    );
    // What had a complete source was copied: keys rc-0 also owns are readable through rc-2.
    let shared: Vec<String> = keys_owned_by(&c, 2, 0, &checker);
    let acked = checker.acked.lock().clone();
    for k in shared.iter().take(200) {
        let value = c.get_text(0, &format!("/v1/keys/{k}")).await;
        assert_eq!(value, acked[k], "{k}");
    }
}

/// Mechanism 3: a write acknowledged while a replica failed to take it stayed on one member
/// only, and nothing copied it to the replica before the next restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_missed_an_acknowledged_write_is_reported_and_repaired() {
    let mut c = vouched_cluster("stale", 2, &["--write-consistency", "one"]).await;
    let checker = Checker::default();
    c.signal(1, "STOP");
    let base = c.nodes[0].base();
    for i in 0..40 {
        let k = format!("while-frozen-{i}");
        assert!(checker.put(&c.http, &base, &k, "v").await, "{k} not acked");
    }
    // rc-0's queue gives up on rc-1 after its retries and reports it stale.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = c.json(0, "/internal/v1/migration").await;
        if m["staleReplicas"] == serde_json::json!(["rc-1"]) {
            break;
        }
        assert!(Instant::now() < deadline, "rc-1 never reported stale: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.signal(1, "CONT");
    // The operator's answer to a stale report: recover that member.
    recover(&mut c, 1).await;
    let m = c.json(0, "/internal/v1/migration").await;
    assert_eq!(m["staleReplicas"], serde_json::json!([]), "{m}");
    // rc-0 goes away for good: every acknowledged write must still be on rc-1.
    c.kill9(0);
    let ring = Cluster::with_member(&c.ring, c.ring.epoch + 1, 0, Down, None);
    c.set_ring(ring).await;
    let bad = checker.verify(&c.http, &c.nodes[1].base()).await;
    assert!(
        bad.is_empty(),
        "{} lost: {:?}",
        bad.len(),
        &bad[..bad.len().min(3)]
    );
}

/// Mechanism 4: LRU evicted tombstones first, and a recovering replica that still held the
/// value brought the deleted key back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_survives_eviction_and_a_recovering_replica_cannot_resurrect_it() {
    let mut c = vouched_cluster("evict", 2, &["--max-memory", "256Ki"]).await;
    let b0 = c.nodes[0].base();
    assert_eq!(c.put(0, "/v1/keys/doomed", "old value").await.status(), 204);
    // rc-1 keeps the value while it is away (frozen, then marked down).
    c.signal(1, "STOP");
    let ring = Cluster::with_member(&c.ring, 3, 1, Down, c.ring.members[1].incarnation.clone());
    c.set_ring(ring).await;
    assert_eq!(c.delete(0, "/v1/keys/doomed").await.status(), 204);
    // Fill rc-0 far past its memory bound: the tombstone is its least recently used entry.
    let checker = Checker::default();
    for i in 0..3_000 {
        checker
            .put(&c.http, &b0, &format!("fill-{i}"), &"x".repeat(100))
            .await;
    }
    let s = c.json(0, "/v1/stats").await;
    assert!(s["evictions"].as_u64().unwrap() > 1_000, "{s}");
    assert_eq!(s["tombstones"], 1, "tombstone evicted: {s}");
    c.signal(1, "CONT");
    recover(&mut c, 1).await;
    assert_deleted_everywhere(&c, "doomed").await;
}

/// Mechanism 4, the snapshot form: a snapshot taken before a delete and restored after the
/// tombstone's grace brought the deleted value back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restored_after_the_tombstone_grace_cannot_resurrect_a_delete() {
    let grace = ["--tombstone-grace", "1s", "--sweep-interval", "100ms"];
    let mut c = vouched_cluster("snapshot-grace", 2, &grace).await;
    let data = c.dir.join("data-1");
    std::fs::create_dir_all(&data).unwrap();
    let data_arg = data.to_string_lossy().to_string();
    let mut with_data = grace.to_vec();
    with_data.extend(["--data-dir", &data_arg]);
    // rc-1 restarts with a data dir so that it snapshots at its next stop.
    c.terminate(1);
    c.start(1, &with_data);
    c.wait_alive(1).await;
    recover(&mut c, 1).await;
    assert_eq!(c.put(0, "/v1/keys/doomed", "old value").await.status(), 204);
    c.terminate(1);
    assert!(
        data.join("snapshot.bin").exists(),
        "no snapshot written at stop"
    );
    let ring = Cluster::with_member(&c.ring, c.ring.epoch + 1, 1, Down, None);
    c.set_ring(ring).await;
    assert_eq!(c.delete(0, "/v1/keys/doomed").await.status(), 204);
    // The grace passes and rc-0 forgets the delete.
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.json(0, "/v1/stats").await["tombstones"] != 0 {
        assert!(Instant::now() < deadline, "tombstone never purged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.start(1, &with_data);
    c.wait_alive(1).await;
    recover(&mut c, 1).await;
    assert_deleted_everywhere(&c, "doomed").await;
}
