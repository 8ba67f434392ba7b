//! Scaling on a loopback cluster: real `ringcache-node` processes on 127.0.0.x, driven the way
//! the operator drives them (ring files written, rings pushed to `PUT /internal/v1/ring`): keys
//! readable through every node, scale-out and scale-in under client load (writes keep being
//! acknowledged during the migration, reads of earlier keys never miss, nothing acknowledged is
//! lost), and the bounds of partition pulls.

mod support;

use ringcache_ring::{Member, MemberState, Pending, RingDoc, rebalance};
use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_rf2_keys_readable_through_every_node() {
    // 20k keys, as the issue asks.
    let c = Cluster::started("rf2", 3, 2, &[]).await;
    let checker = Checker::default();
    write_keys(&c, &checker, "k", 20_000).await;
    assert_nothing_lost(&c, &checker, 0..3).await;
    // One batch of gets through one node: most are forwarded (and coalesced per owner); every
    // answer is the acknowledged value, in op order.
    let acked: Vec<(String, String)> = checker
        .acked
        .lock()
        .iter()
        .take(2_000)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let ops: Vec<serde_json::Value> = acked
        .iter()
        .map(|(k, _)| serde_json::json!({"op": "get", "key": k}))
        .collect();
    let r: serde_json::Value = c.batch(0, &ops).await.json().await.unwrap();
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), acked.len());
    for ((k, v), res) in acked.iter().zip(results) {
        assert_eq!(res["status"], 200, "{k}: {res}");
        assert_eq!(res["value"].as_str(), Some(v.as_str()), "{k}");
    }

    // RF=2: every key is stored on exactly two nodes.
    let mut total = 0;
    for i in 0..c.nodes.len() {
        total += c.json(i, "/v1/stats").await["items"].as_u64().unwrap();
    }
    assert_eq!(total, 40_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_3_to_5_under_load_loses_nothing() {
    let mut c = Cluster::new("scaleout", 5);
    scale_out_3_to_5_under_load(&mut c, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_5_to_3_moves_data_before_nodes_stop() {
    let mut c = Cluster::started("scalein", 5, 2, &[]).await;
    let checker = Checker::default();
    write_keys(&c, &checker, "pre", 5_000).await;

    // Highest ordinals leave; the pending table places everything on the remaining three.
    let ids: Vec<String> = (0..5).map(|i| c.nodes[i].id.clone()).collect();
    let remaining: Vec<String> = ids[..3].to_vec();
    let target = rebalance(&c.ring.id_table(&c.ring.table), &remaining, PARTITIONS, 2).unwrap();
    let target = to_index(&target, &ids);
    let mut pending = c.ring.clone();
    pending.epoch = 2;
    pending.members[3].state = MemberState::Leaving;
    pending.members[4].state = MemberState::Leaving;
    pending.pending = Some(Pending {
        table: target.clone(),
    });

    let load = Load::start(&c, &checker, &[0, 1, 2], "y", &[]);
    let (moves, gainers) = push_pending(&mut c, &pending, &target).await;
    load.wait_acked(50).await;
    assert!(!moves.is_empty());
    assert!(
        gainers.iter().all(|&g| g < 3),
        "only remaining members gain partitions"
    );
    c.wait_migrations(&gainers, 2).await;

    // Commit without the leaving members (they are the last indices, so indices stay valid).
    let mut committed = commit_pending(&pending, target, 3);
    committed.members.truncate(3);
    c.set_ring(committed).await;
    load.stop().await.assert_clients_served(50);
    // Only now are the leaving pods removed.
    c.kill9(3);
    c.kill9(4);
    assert_nothing_lost(&c, &checker, 0..3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_one_large_partition_keeps_memory_flat() {
    // Two partitions, and every key in the one that moves: ~48 MB of 1 KiB values in a single
    // partition. Holding it in memory anywhere along the pull would show as peak RSS growth.
    const KEYS: usize = 48_000;
    let mut c = Cluster::new("flat", 2);
    let ring = RingDoc {
        version: 1,
        epoch: 1,
        partitions: 2,
        replication_factor: 1,
        hash: "xxh3_64".into(),
        members: vec![c.member(0, MemberState::Up)],
        table: vec![vec![0], vec![0]],
        pending: None,
    };
    c.start_all(ring, 1, &["--max-memory", "1Gi"]).await;
    let keys: Vec<String> = (0..)
        .map(|i| format!("big-{i}"))
        .filter(|k| ringcache_ring::partition_of(k.as_bytes(), 2) == 1)
        .take(KEYS)
        .collect();
    let value = "v".repeat(1024);
    for chunk in keys.chunks(500) {
        let ops: Vec<serde_json::Value> = chunk
            .iter()
            .map(|k| serde_json::json!({"op": "set", "key": k, "value": value}))
            .collect();
        assert_eq!(c.batch(0, &ops).await.status(), 200);
    }
    let data_kib = (KEYS * (1024 + 10) / 1024) as u64;

    let mut joining = c.ring.clone();
    joining.epoch = 2;
    joining.members.push(c.member(1, MemberState::Joining));
    c.set_ring(joining.clone()).await;
    c.start(1, &["--max-memory", "1Gi"]);
    c.wait_ready(1).await;
    let pids: Vec<u32> = (0..2)
        .map(|i| c.nodes[i].child.as_ref().unwrap().id())
        .collect();
    let before: Vec<u64> = pids.iter().map(|&p| proc_kib(p, "VmRSS")).collect();
    for &p in &pids {
        reset_peak(p);
    }

    let mut pending = joining.clone();
    pending.epoch = 3;
    pending.pending = Some(Pending {
        table: vec![vec![0], vec![1]],
    });
    c.set_ring(pending).await;
    c.wait_migrations(&[1], 3).await;

    let stats: serde_json::Value = c.json(1, "/v1/stats").await;
    assert_eq!(stats["items"], KEYS as u64, "every key was pulled");
    let peak: Vec<u64> = pids
        .iter()
        .zip(&before)
        .map(|(&p, &b)| proc_kib(p, "VmHWM").saturating_sub(b))
        .collect();
    // The source streams from its store in bounded batches: its peak barely moves.
    assert!(
        peak[0] < 16 * 1024,
        "source peak RSS grew {} KiB while serving a {data_kib} KiB partition",
        peak[0]
    );
    // The target holds the data once, plus what its store accounts for it; a buffered stream
    // would add the whole partition again.
    let stored_kib = stats["bytes"].as_u64().unwrap() / 1024;
    assert!(
        peak[1] < stored_kib + 24 * 1024,
        "target peak RSS grew {} KiB for {stored_kib} KiB stored",
        peak[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_waits_for_writes_still_replicating_under_the_old_ring() {
    // rc-0 coordinates a write under epoch 1 whose replica write to the stand-in member is held.
    // rc-1 gains partitions at epoch 2 and must not finish its migration while that old-ring
    // write is under way: it could still land at the owners rc-1 pulls from after the pull.
    let (replica, release) = held_replica().await;
    let mut c = Cluster::new("fence", 2);
    let member = |id: &str, addr: &str, state| Member {
        id: id.into(),
        addr: addr.into(),
        state,
        incarnation: None,
    };
    let ring = RingDoc {
        version: 1,
        epoch: 1,
        partitions: PARTITIONS,
        replication_factor: 2,
        hash: "xxh3_64".into(),
        members: vec![
            c.member(0, MemberState::Up),
            member("stand-in", &replica, MemberState::Up),
            c.member(1, MemberState::Joining),
        ],
        table: vec![vec![0, 1]; PARTITIONS as usize],
        pending: None,
    };
    c.start_all(ring, 2, &["--write-consistency", "one"]).await;
    let r = c.put(0, "/v1/keys/fenced", "v").await;
    assert_eq!(r.status(), 204, "acknowledged at once (consistency one)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.json(0, "/healthz").await["oldestWriteEpoch"] != 1 {
        assert!(
            Instant::now() < deadline,
            "rc-0 never reported the held write"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut pending = c.ring.clone();
    pending.epoch = 2;
    let mut target = pending.table.clone();
    for row in target.iter_mut().step_by(2) {
        *row = vec![0, 2];
    }
    pending.pending = Some(Pending { table: target });
    c.set_ring(pending).await;
    let h = c.json(0, "/healthz").await;
    assert_eq!(
        (h["epoch"].clone(), h["oldestWriteEpoch"].clone()),
        (2.into(), 1.into())
    );
    // rc-0 serves epoch 2 but still has the epoch-1 write under way: rc-1 must be seen waiting
    // for it, with nothing pulled yet.
    let rc0 = c.nodes[0].addr.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m: serde_json::Value = c.json(1, "/internal/v1/migration").await;
        assert_ne!(
            m["done"], true,
            "pull finished before the old-ring write did: {m}"
        );
        if m["epoch"] == 2 && m["waitingFor"] == rc0.as_str() {
            assert_eq!(m["partitionsDone"], 0, "{m}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rc-1 not seen waiting for rc-0: {m}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    release.notify_waiters();
    // The queue may retry after a hop timeout; keep releasing until the write is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.json(0, "/healthz").await["oldestWriteEpoch"] != serde_json::Value::Null {
        assert!(Instant::now() < deadline, "held write never finished");
        release.notify_waiters();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.wait_migrations(&[1], 2).await;
    assert_eq!(c.get(1, "/v1/keys/fenced").await.status(), 200);
}
