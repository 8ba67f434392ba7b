//! Rings on a loopback cluster: a ring file swapped by symlink (as a ConfigMap update arrives)
//! and newer epochs spread between peers; asynchronous replication with `writeConsistency: one`.

mod support;

use std::time::{Duration, Instant};
use support::*;

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
    let c = Cluster::started("one", 3, 2, &["--write-consistency", "one"]).await;
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
    let m = c.get_text(0, "/metrics").await;
    assert!(m.contains("ringcache_replication_queue_length 0"), "{m}");
    for i in 0..3 {
        assert!(checker.verify(&c.http, &c.nodes[i].base()).await.is_empty());
    }
}
