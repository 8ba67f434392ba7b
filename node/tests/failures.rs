//! Failures on a loopback cluster: a node killed with SIGKILL and restarted, snapshots reloaded
//! (and a corrupt one skipped), and bad internal input refused without changing anything.

mod support;

use ringcache_ring::MemberState;
use std::process::Command;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_restart_recovers_without_losing_acknowledged_writes() {
    let mut c = Cluster::started("kill", 3, 2, &[]).await;
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
    let r = c.put(0, &format!("/v1/keys/{key}"), "x").await;
    assert_eq!(
        r.status(),
        503,
        "write acknowledged without every live owner"
    );
    // Reads keep succeeding through failover even before the operator marks the node down.
    assert_nothing_lost(&c, &checker, 0..2).await;
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
    assert_nothing_lost(&c, &checker, 0..3).await;
    // The restarted node holds its partitions itself (RF=2 over 3 nodes: about 2/3 of the keys).
    let s: serde_json::Value = c.json(2, "/v1/stats").await;
    assert!(s["items"].as_u64().unwrap() > 2_500, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reloads_after_restart_and_corrupt_snapshot_is_skipped() {
    let mut c = Cluster::new("snap", 1);
    let data = c.dir.join("data");
    let data_s = data.to_string_lossy().to_string();
    let flags = ["--data-dir", data_s.as_str(), "--snapshot-interval", "1h"];
    c.start_all(c.fresh_ring(&[0], 1, 1), 1, &flags).await;
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
async fn bad_internal_input_is_rejected_and_changes_nothing() {
    let mut c = Cluster::new("bad", 1);
    c.start_all(c.fresh_ring(&[0], 1, 5), 1, &[]).await;
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
    let ring = get_json(&c.http, format!("{base}/v1/ring")).await;
    assert_eq!(ring["epoch"], 5);

    // A truncated record stream is refused whole.
    let rec = ringcache_node::engine::Record {
        key: bytes::Bytes::from_static(b"sneaky"),
        version: u64::MAX >> 1,
        expires_at: 0,
        value: Some(bytes::Bytes::from_static(b"x")),
        kind: ringcache_node::engine::Kind::String,
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
    assert_eq!(c.get(0, "/v1/keys/sneaky").await.status(), 404);
}
