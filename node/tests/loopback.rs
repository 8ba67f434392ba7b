//! Loopback cluster tests: real `ringcache-node` processes on 127.0.0.x, driven the way the
//! operator drives them (ring files written, rings pushed to `PUT /internal/v1/ring`), with a
//! checker that records every acknowledged write and verifies it afterwards.

use futures_util::StreamExt;
use ringcache_ring::{
    Member, MemberState, PartitionMove, Pending, RingDoc, Table, diff, rebalance,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "loopback-internal-token";
const PARTITIONS: u32 = 64;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

struct Node {
    id: String,
    addr: String,
    child: Option<Child>,
}

impl Node {
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

struct Cluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    ring: RingDoc,
    http: reqwest::Client,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Cluster {
    /// `n` node slots (ids `rc-0`…), none started; ring with the first `members` as `up`.
    fn new(name: &str, n: usize) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("ringcache-loopback-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), TOKEN).unwrap();
        let nodes = (0..n)
            .map(|i| Node {
                id: format!("rc-{i}"),
                addr: format!("127.0.0.{}:{}", i + 2, free_port()),
                child: None,
            })
            .collect();
        Cluster {
            dir,
            nodes,
            ring: RingDoc::single_node("placeholder", "127.0.0.1:1", PARTITIONS),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    fn member(&self, i: usize, state: MemberState) -> Member {
        Member {
            id: self.nodes[i].id.clone(),
            addr: self.nodes[i].addr.clone(),
            state,
        }
    }

    /// A ring over `members` (node indices) with a fresh balanced table.
    fn fresh_ring(&self, members: &[usize], rf: u32, epoch: u64) -> RingDoc {
        let ids: Vec<String> = members.iter().map(|&i| self.nodes[i].id.clone()).collect();
        let table = rebalance(&[], &ids, PARTITIONS, rf).unwrap();
        RingDoc {
            version: 1,
            epoch,
            partitions: PARTITIONS,
            replication_factor: rf,
            hash: "xxh3_64".into(),
            members: members
                .iter()
                .map(|&i| self.member(i, MemberState::Up))
                .collect(),
            table: to_index(&table, &ids),
            pending: None,
        }
    }

    fn ring_path(&self) -> PathBuf {
        self.dir.join("ring.json")
    }

    fn write_ring_file(&self) {
        let tmp = self.dir.join("ring.json.tmp");
        std::fs::write(&tmp, self.ring.to_json_pretty()).unwrap();
        std::fs::rename(&tmp, self.ring_path()).unwrap();
    }

    fn start(&mut self, i: usize, extra: &[&str]) {
        let node = &self.nodes[i];
        let log = std::fs::File::create(self.dir.join(format!("{}.log", node.id))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ringcache-node"))
            .args(["--listen", &node.addr, "--node-id", &node.id])
            .arg("--ring-file")
            .arg(self.ring_path())
            .arg("--internal-token-file")
            .arg(self.dir.join("token"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.nodes[i].child = Some(child);
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    async fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/readyz", self.nodes[i].base());
        loop {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready in time",
                self.nodes[i].id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Installs `ring`: ring file first, then a push to every running node, like the operator.
    async fn set_ring(&mut self, ring: RingDoc) {
        self.ring = ring;
        self.write_ring_file();
        let body = self.ring.to_json_pretty();
        for n in &self.nodes {
            if n.child.is_none() {
                continue;
            }
            let r = self
                .http
                .put(format!("{}/internal/v1/ring", n.base()))
                .bearer_auth(TOKEN)
                .body(body.clone())
                .send()
                .await;
            if let Ok(r) = r {
                assert_eq!(r.status(), 204, "ring push to {}", n.id);
            }
        }
    }

    async fn migration_done(&self, i: usize, epoch: u64) -> bool {
        let Ok(r) = self
            .http
            .get(format!("{}/internal/v1/migration", self.nodes[i].base()))
            .bearer_auth(TOKEN)
            .send()
            .await
        else {
            return false;
        };
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        v["epoch"] == epoch && v["done"] == true
    }

    async fn wait_migrations(&self, nodes: &[usize], epoch: u64) {
        let deadline = Instant::now() + Duration::from_secs(45);
        for &i in nodes {
            while !self.migration_done(i, epoch).await {
                assert!(
                    Instant::now() < deadline,
                    "{} migration for epoch {epoch} not done",
                    self.nodes[i].id
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// `GET path` on node `i`, as JSON (with the internal token; public routes ignore it).
    async fn json(&self, i: usize, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}{path}", self.nodes[i].base()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect()
    }
}

fn to_index(table: &[Vec<String>], ids: &[String]) -> Table {
    table
        .iter()
        .map(|owners| {
            owners
                .iter()
                .map(|o| ids.iter().position(|i| i == o).unwrap() as u32)
                .collect()
        })
        .collect()
}

/// Records acknowledged writes: key → value (None = deleted).
#[derive(Default, Clone)]
struct Checker {
    acked: Arc<parking_lot::Mutex<HashMap<String, String>>>,
}

impl Checker {
    async fn put(&self, http: &reqwest::Client, base: &str, key: &str, value: &str) -> bool {
        let ok = http
            .put(format!("{base}/v1/keys/{key}"))
            .body(value.to_string())
            .send()
            .await
            .is_ok_and(|r| r.status() == 204);
        if ok {
            self.acked.lock().insert(key.to_string(), value.to_string());
        }
        ok
    }

    /// Every acknowledged write is readable with its value through `base`; returns misses.
    async fn verify(&self, http: &reqwest::Client, base: &str) -> Vec<String> {
        let all: Vec<(String, String)> = self
            .acked
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        futures_util::stream::iter(all)
            .map(|(k, v)| async move {
                let got = match http.get(format!("{base}/v1/keys/{k}")).send().await {
                    Ok(r) if r.status() == 200 => r.text().await.ok(),
                    _ => None,
                };
                (got.as_deref() != Some(v.as_str())).then(|| format!("{k}: want {v}, got {got:?}"))
            })
            .buffer_unordered(32)
            .filter_map(|x| async move { x })
            .collect::<Vec<_>>()
            .await
    }
}

async fn write_keys(c: &Cluster, checker: &Checker, prefix: &str, n: usize) {
    let bases: Vec<String> = c.running().iter().map(|&i| c.nodes[i].base()).collect();
    let failures = futures_util::stream::iter(0..n)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            let http = c.http.clone();
            let checker = checker.clone();
            let key = format!("{prefix}-{i}");
            async move { checker.put(&http, &base, &key, &format!("v-{key}")).await }
        })
        .buffer_unordered(32)
        .filter(|ok| futures_util::future::ready(!ok))
        .count()
        .await;
    assert_eq!(failures, 0, "writes failed on a healthy cluster");
}

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

/// Client traffic kept running while a ring change is in flight, so the tests see what
/// clients would: writes acknowledged mid-migration and reads of keys that existed before.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    read_misses: Arc<std::sync::atomic::AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Four writers of new `during-…` keys (value `value`) and, unless `pre` is empty, two
    /// readers of `pre`; all go through `through` only, the nodes that stay members throughout.
    fn start(
        c: &Cluster,
        checker: &Checker,
        through: &[usize],
        value: &'static str,
        pre: &[String],
    ) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let read_misses = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let bases: Vec<String> = through.iter().map(|&i| c.nodes[i].base()).collect();
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (stop, http, checker, bases) =
                (stop.clone(), c.http.clone(), checker.clone(), bases.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("during-{w}-{i}");
                    checker
                        .put(&http, &bases[i % bases.len()], &key, value)
                        .await;
                    i += 1;
                }
            }));
        }
        let readers = if pre.is_empty() { 0 } else { 2 };
        for r in 0..readers {
            let (stop, http, misses, pre, bases) = (
                stop.clone(),
                c.http.clone(),
                read_misses.clone(),
                pre.to_vec(),
                bases.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut i = r;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let k = &pre[i % pre.len()];
                    let ok = http
                        .get(format!("{}/v1/keys/{k}", bases[i % bases.len()]))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    if !ok {
                        misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    i += 7;
                }
            }));
        }
        Load {
            stop,
            read_misses,
            tasks,
        }
    }

    /// Stops every task and waits for it, so the checker holds every acknowledged write
    /// before it is verified; returns how many reads missed.
    async fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.read_misses.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Pushes `pending` (whose pending table is `target`); returns the planned moves and the
/// nodes that gain partitions, which are the ones whose migration must finish.
async fn push_pending(
    c: &mut Cluster,
    pending: &RingDoc,
    target: &Table,
) -> (Vec<PartitionMove>, Vec<usize>) {
    c.set_ring(pending.clone()).await;
    let moves = diff(&pending.table, target);
    let mut gainers: Vec<usize> = moves
        .iter()
        .flat_map(|m| m.gained.iter().map(|&g| g as usize))
        .collect();
    gainers.sort_unstable();
    gainers.dedup();
    (moves, gainers)
}

/// `pending` with its pending table made current at `epoch`; member states are the caller's.
fn commit_pending(pending: &RingDoc, target: Table, epoch: u64) -> RingDoc {
    let mut committed = pending.clone();
    committed.epoch = epoch;
    committed.table = target;
    committed.pending = None;
    committed
}

async fn assert_nothing_lost(c: &Cluster, checker: &Checker, through: std::ops::Range<usize>) {
    for i in through {
        let bad = checker.verify(&c.http, &c.nodes[i].base()).await;
        assert!(
            bad.is_empty(),
            "through {}: {} lost, e.g. {:?}",
            c.nodes[i].id,
            bad.len(),
            &bad[..bad.len().min(3)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_out_3_to_5_under_load_loses_nothing() {
    // Scaled down from production sizes: 64 partitions, 5k keys before and writes during.
    let mut c = Cluster::new("scaleout", 5);
    c.ring = c.fresh_ring(&[0, 1, 2], 2, 1);
    c.write_ring_file();
    for i in 0..3 {
        c.start(i, &[]);
    }
    for i in 0..3 {
        c.wait_ready(i).await;
    }
    let checker = Checker::default();
    write_keys(&c, &checker, "pre", 5_000).await;
    let pre: Vec<String> = checker.acked.lock().keys().cloned().collect();

    // New pods start as joining members (own nothing), then the pending table is written.
    let mut joining = c.ring.clone();
    joining.epoch = 2;
    joining.members.push(c.member(3, MemberState::Joining));
    joining.members.push(c.member(4, MemberState::Joining));
    c.set_ring(joining.clone()).await;
    c.start(3, &[]);
    c.start(4, &[]);
    c.wait_ready(3).await;
    c.wait_ready(4).await;

    let ids: Vec<String> = (0..5).map(|i| c.nodes[i].id.clone()).collect();
    let target = rebalance(&joining.id_table(&joining.table), &ids, PARTITIONS, 2).unwrap();
    let target = to_index(&target, &ids);
    let mut pending = joining.clone();
    pending.epoch = 3;
    pending.pending = Some(Pending {
        table: target.clone(),
    });

    let load = Load::start(&c, &checker, &[0, 1, 2], "x", &pre);
    let (moves, gainers) = push_pending(&mut c, &pending, &target).await;
    c.wait_migrations(&gainers, 3).await;
    // Partitions pulled by each gainer = what ring::diff planned for it.
    for &g in &gainers {
        let v: serde_json::Value = c.json(g, "/internal/v1/migration").await;
        let planned = moves
            .iter()
            .filter(|m| m.gained.contains(&(g as u32)))
            .count();
        assert_eq!(v["partitionsTotal"], planned as u64, "{}", c.nodes[g].id);
        assert_eq!(v["partitionsDone"], planned as u64);
    }
    let mut committed = commit_pending(&pending, target, 4);
    for m in &mut committed.members {
        m.state = MemberState::Up;
    }
    c.set_ring(committed).await;
    assert_eq!(
        load.stop().await,
        0,
        "reads of pre-existing keys missed during migration"
    );
    assert_nothing_lost(&c, &checker, 0..5).await;
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
    // Restart: it recovers from co-owners before it is ready.
    c.start(2, &[]);
    c.wait_ready(2).await;
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

async fn epoch_of(c: &Cluster, i: usize) -> u64 {
    let v: serde_json::Value = c.json(i, "/v1/ring").await;
    v["epoch"].as_u64().unwrap()
}

async fn wait_epoch(c: &Cluster, i: usize, epoch: u64, within: Duration) -> Duration {
    let start = Instant::now();
    while epoch_of(c, i).await != epoch {
        assert!(
            start.elapsed() < within,
            "{} did not reach epoch {epoch} within {within:?}",
            c.nodes[i].id
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
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

async fn total_items(c: &Cluster) -> u64 {
    let mut total = 0;
    for &i in &c.running() {
        let s: serde_json::Value = c.json(i, "/v1/stats").await;
        total += s["items"].as_u64().unwrap();
    }
    total
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

/// A `/proc/PID/status` field in KiB (VmRSS, VmHWM).
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Restarts the peak-RSS counter (VmHWM) of `pid` at its current RSS.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .unwrap_or_else(|e| panic!("cannot reset the peak RSS of {pid}: {e}"));
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

/// A stand-in ring member at `127.0.0.1:PORT`: its `/healthz` says it is settled on a far-future
/// epoch, its partitions are empty, and its `POST /internal/v1/apply` answers only once `release`
/// is notified.
async fn held_replica() -> (String, Arc<tokio::sync::Notify>) {
    use axum::routing::{get, post};
    let release = Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    let app = axum::Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok", "epoch": 99})) }),
        )
        // An empty record stream: just the trailer (`u32 0 | u64 0`).
        .route(
            "/internal/v1/partitions/{p}",
            get(|| async { vec![0u8; 12] }),
        )
        .route(
            "/internal/v1/apply",
            post(move || {
                let r = r.clone();
                async move {
                    r.notified().await;
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, release)
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
