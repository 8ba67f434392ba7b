//! Loopback cluster tests: real `ringcache-node` processes on 127.0.0.x, driven the way the
//! operator drives them (ring files written, rings pushed to `PUT /internal/v1/ring`), with a
//! checker that records every acknowledged write and verifies it afterwards.

mod support;

use ringcache_ring::{Member, MemberState, Pending, RingDoc, rebalance};
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_rf2_keys_readable_through_every_node() {
    // 20k keys, as the issue asks.
    let mut c = Cluster::new("rf2", 3);
    c.ring = c.fresh_ring(&[0, 1, 2], 2, 1);
    c.write_ring_file();
    for i in 0..3 {
        c.start(i, &[]);
    }
    for i in 0..3 {
        c.wait_ready(i).await;
    }
    let checker = Checker::default();
    write_keys(&c, &checker, "k", 20_000).await;
    for i in 0..3 {
        let bad = checker.verify(&c.http, &c.nodes[i].base()).await;
        assert!(
            bad.is_empty(),
            "through {}: {} misses, e.g. {:?}",
            c.nodes[i].id,
            bad.len(),
            &bad[..bad.len().min(3)]
        );
    }
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
    let r: serde_json::Value = c
        .http
        .post(format!("{}/v1/batch", c.nodes[0].base()))
        .json(&serde_json::json!({ "ops": ops }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
async fn kill_9_then_restart_recovers_without_losing_acknowledged_writes() {
    let mut c = Cluster::new("kill", 3);
    c.ring = c.fresh_ring(&[0, 1, 2], 2, 1);
    c.write_ring_file();
    for i in 0..3 {
        c.start(i, &[]);
    }
    for i in 0..3 {
        c.wait_ready(i).await;
    }
    let checker = Checker::default();
    write_keys(&c, &checker, "a", 3_000).await;
    c.kill9(2);
    // With `all`, a write to a partition the dead (still `up`) node owns is refused, not acked.
    let key = (0..)
        .map(|i| format!("owned-by-2-{i}"))
        .find(|k| {
            c.ring
                .owners(ringcache_ring::partition_of(k.as_bytes(), PARTITIONS))
                .contains(&2)
        })
        .unwrap();
    let r = c
        .http
        .put(format!("{}/v1/keys/{key}", c.nodes[0].base()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        503,
        "write acknowledged without every live owner"
    );
    // Reads keep succeeding through failover even before the operator marks the node down.
    for i in 0..2 {
        let bad = checker.verify(&c.http, &c.nodes[i].base()).await;
        assert!(
            bad.is_empty(),
            "reads failed after kill -9: {:?}",
            &bad[..bad.len().min(3)]
        );
    }
    // Operator marks it down; writes continue on the survivors.
    let mut down = c.ring.clone();
    down.epoch = 2;
    down.members[2].state = MemberState::Down;
    c.set_ring(down.clone()).await;
    write_keys(&c, &checker, "b", 2_000).await;
    // Restart: a member the ring marks down is not ready; it recovers once marked recovering.
    c.start(2, &[]);
    c.wait_alive(2).await;
    assert_eq!(c.status(2, "/readyz").await, 503, "down member ready");
    let mut recovering = down.clone();
    recovering.epoch = 3;
    recovering.members[2].state = MemberState::Recovering;
    c.set_ring(recovering).await;
    c.wait_migrations(&[2], 3).await;
    let mut up = c.ring.clone();
    up.epoch = 4;
    up.members[2].state = MemberState::Up;
    c.set_ring(up).await;
    for i in 0..3 {
        let bad = checker.verify(&c.http, &c.nodes[i].base()).await;
        assert!(
            bad.is_empty(),
            "through {}: {} lost, e.g. {:?}",
            c.nodes[i].id,
            bad.len(),
            &bad[..bad.len().min(3)]
        );
    }
    // The restarted node holds its partitions itself (RF=2 over 3 nodes: about 2/3 of the keys).
    let s: serde_json::Value = c.json(2, "/v1/stats").await;
    assert!(s["items"].as_u64().unwrap() > 2_500, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_internal_input_is_rejected_and_changes_nothing() {
    let mut c = Cluster::new("bad", 1);
    c.ring = c.fresh_ring(&[0], 1, 5);
    c.write_ring_file();
    c.start(0, &[]);
    c.wait_ready(0).await;
    let base = c.nodes[0].base();
    let put_ring = |body: String, token: Option<&'static str>| {
        let mut rb = c.http.put(format!("{base}/internal/v1/ring")).body(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb.send()
    };
    let mut older = c.ring.clone();
    older.epoch = 4;
    assert_eq!(
        put_ring(older.to_json_pretty(), Some(TOKEN))
            .await
            .unwrap()
            .status(),
        409
    );
    let mut invalid = c.ring.clone();
    invalid.epoch = 6;
    invalid.table.pop();
    let r = put_ring(invalid.to_json_pretty(), Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("partitions"));
    let mut newer = c.ring.clone();
    newer.epoch = 7;
    assert_eq!(
        put_ring(newer.to_json_pretty(), None)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        put_ring(newer.to_json_pretty(), Some("wrong"))
            .await
            .unwrap()
            .status(),
        401
    );
    let ring: serde_json::Value = c
        .http
        .get(format!("{base}/v1/ring"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ring["epoch"], 5);

    // A truncated record stream is refused whole.
    let rec = ringcache_node::engine::Record {
        key: bytes::Bytes::from_static(b"sneaky"),
        version: u64::MAX >> 1,
        expires_at: 0,
        value: Some(bytes::Bytes::from_static(b"x")),
    };
    let full = ringcache_node::wire::encode_all(&[rec]);
    let r = c
        .http
        .post(format!("{base}/internal/v1/apply"))
        .bearer_auth(TOKEN)
        .body(full.slice(..full.len() - 3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        c.http
            .get(format!("{base}/v1/keys/sneaky"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_5_to_3_moves_data_before_nodes_stop() {
    let mut c = Cluster::new("scalein", 5);
    c.ring = c.fresh_ring(&[0, 1, 2, 3, 4], 2, 1);
    c.write_ring_file();
    for i in 0..5 {
        c.start(i, &[]);
    }
    for i in 0..5 {
        c.wait_ready(i).await;
    }
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
    load.stop().await;
    // Only now are the leaving pods removed.
    c.kill9(3);
    c.kill9(4);
    assert_nothing_lost(&c, &checker, 0..3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reloads_after_restart_and_corrupt_snapshot_is_skipped() {
    let mut c = Cluster::new("snap", 1);
    c.ring = c.fresh_ring(&[0], 1, 1);
    c.write_ring_file();
    let data = c.dir.join("data");
    let data_s = data.to_string_lossy().to_string();
    let flags = ["--data-dir", data_s.as_str(), "--snapshot-interval", "1h"];
    c.start(0, &flags);
    c.wait_ready(0).await;
    let checker = Checker::default();
    write_keys(&c, &checker, "s", 2_000).await;
    // Graceful stop writes the final snapshot.
    let pid = c.nodes[0].child.as_ref().unwrap().id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = c.nodes[0].child.take().unwrap().wait().unwrap();
    assert!(status.success(), "{status:?}");
    let snap = data.join("snapshot.bin");
    assert!(snap.exists());

    c.start(0, &flags);
    c.wait_ready(0).await;
    let bad = checker.verify(&c.http, &c.nodes[0].base()).await;
    assert!(bad.is_empty(), "{} keys not reloaded", bad.len());

    // Corrupt one byte: the node still starts, serves nothing stale or garbled, logs the skip.
    c.kill9(0);
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&snap, &bytes).unwrap();
    c.start(0, &flags);
    c.wait_ready(0).await;
    let s: serde_json::Value = c.json(0, "/v1/stats").await;
    assert_eq!(s["items"], 0, "a corrupt snapshot must not be loaded");
    let log = std::fs::read_to_string(c.dir.join("rc-0.log")).unwrap();
    assert!(
        log.contains("snapshot skipped") && log.contains("checksum"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_file_swapped_by_symlink_is_picked_up_and_peers_spread_newer_epochs() {
    let mut c = Cluster::new("epochs", 2);
    // Mounted-ConfigMap layout: ring.json -> ..data/ring.json, ..data -> a versioned directory.
    let v1 = c.dir.join("..v1");
    std::fs::create_dir_all(&v1).unwrap();
    c.ring = c.fresh_ring(&[0, 1], 2, 1);
    std::fs::write(v1.join("ring.json"), c.ring.to_json_pretty()).unwrap();
    std::os::unix::fs::symlink("..v1", c.dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/ring.json", c.ring_path()).unwrap();
    c.start(0, &[]);
    c.start(1, &[]);
    c.wait_ready(0).await;
    c.wait_ready(1).await;

    let mut r2 = c.ring.clone();
    r2.epoch = 2;
    let v2 = c.dir.join("..v2");
    std::fs::create_dir_all(&v2).unwrap();
    std::fs::write(v2.join("ring.json"), r2.to_json_pretty()).unwrap();
    std::os::unix::fs::symlink("..v2", c.dir.join("..data.tmp")).unwrap();
    std::fs::rename(c.dir.join("..data.tmp"), c.dir.join("..data")).unwrap();
    for i in 0..2 {
        // Polled every second: reached well within two.
        wait_epoch(&c, i, 2, Duration::from_secs(3)).await;
    }

    // Epoch 3 pushed to node 0 only: node 1 learns it from node 0's replica writes.
    let mut r3 = r2.clone();
    r3.epoch = 3;
    let resp = c
        .http
        .put(format!("{}/internal/v1/ring", c.nodes[0].base()))
        .bearer_auth(TOKEN)
        .body(r3.to_json_pretty())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(epoch_of(&c, 1).await, 2);
    let checker = Checker::default();
    assert!(
        checker
            .put(&c.http, &c.nodes[0].base(), "spread", "x")
            .await
    );
    wait_epoch(&c, 1, 3, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_consistency_one_replicates_asynchronously_to_every_owner() {
    let mut c = Cluster::new("one", 3);
    c.ring = c.fresh_ring(&[0, 1, 2], 2, 1);
    c.write_ring_file();
    for i in 0..3 {
        c.start(i, &["--write-consistency", "one"]);
    }
    for i in 0..3 {
        c.wait_ready(i).await;
    }
    let checker = Checker::default();
    write_keys(&c, &checker, "q", 3_000).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while total_items(&c).await != 6_000 {
        assert!(
            Instant::now() < deadline,
            "async replicas never reached both owners"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = c
        .http
        .get(format!("{}/metrics", c.nodes[0].base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("ringcache_replication_queue_length 0"), "{m}");
    for i in 0..3 {
        assert!(checker.verify(&c.http, &c.nodes[i].base()).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_one_large_partition_keeps_memory_flat() {
    // Two partitions, and every key in the one that moves: ~48 MB of 1 KiB values in a single
    // partition. Holding it in memory anywhere along the pull would show as peak RSS growth.
    const KEYS: usize = 48_000;
    let mut c = Cluster::new("flat", 2);
    c.ring = RingDoc {
        version: 1,
        epoch: 1,
        partitions: 2,
        replication_factor: 1,
        hash: "xxh3_64".into(),
        members: vec![c.member(0, MemberState::Up)],
        table: vec![vec![0], vec![0]],
        pending: None,
    };
    c.write_ring_file();
    c.start(0, &["--max-memory", "1Gi"]);
    c.wait_ready(0).await;
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
        let r = c
            .http
            .post(format!("{}/v1/batch", c.nodes[0].base()))
            .json(&serde_json::json!({ "ops": ops }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
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
    c.ring = RingDoc {
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
    c.write_ring_file();
    for i in 0..2 {
        c.start(i, &["--write-consistency", "one"]);
    }
    for i in 0..2 {
        c.wait_ready(i).await;
    }
    let r = c
        .http
        .put(format!("{}/v1/keys/fenced", c.nodes[0].base()))
        .body("v")
        .send()
        .await
        .unwrap();
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
    let got = c
        .http
        .get(format!("{}/v1/keys/fenced", c.nodes[1].base()))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
}
