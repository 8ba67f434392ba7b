//! What the loopback tests share: a cluster of real `ringcache-node` processes on 127.0.0.x,
//! driven the way the operator drives them (ring files written, rings pushed to
//! `PUT /internal/v1/ring`), a checker that records every acknowledged write and verifies it
//! afterwards, and client load kept running while rings change.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use futures_util::StreamExt;
use ringcache_ring::{
    Member, MemberState, PartitionMove, Pending, RingDoc, Table, diff, rebalance,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "loopback-internal-token";

pub const PARTITIONS: u32 = 64;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

pub struct Node {
    pub id: String,
    pub addr: String,
    pub child: Option<Child>,
    /// `http`, or `https` for a node started with a certificate.
    pub scheme: &'static str,
}

impl Node {
    pub fn base(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    pub ring: RingDoc,
    pub http: reqwest::Client,
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
    pub fn new(name: &str, n: usize) -> Cluster {
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
                scheme: "http",
            })
            .collect();
        Cluster {
            dir,
            nodes,
            ring: RingDoc::single_node("placeholder", "127.0.0.1:1", PARTITIONS),
            http: {
                ringcache_node::tls::install_crypto_provider();
                reqwest::Client::builder()
            }
            .timeout(Duration::from_secs(10))
            // Below the nodes' 10 s idle keep-alive: a connection reused just as the node
            // closes it fails the request (seen after a ring push waited on a stopped node).
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        }
    }

    pub fn member(&self, i: usize, state: MemberState) -> Member {
        Member {
            id: self.nodes[i].id.clone(),
            addr: self.nodes[i].addr.clone(),
            state,
            incarnation: None,
        }
    }

    /// A ring over `members` (node indices) with a fresh balanced table.
    pub fn fresh_ring(&self, members: &[usize], rf: u32, epoch: u64) -> RingDoc {
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

    pub fn ring_path(&self) -> PathBuf {
        self.dir.join("ring.json")
    }

    pub fn write_ring_file(&self) {
        let tmp = self.dir.join("ring.json.tmp");
        std::fs::write(&tmp, self.ring.to_json_pretty()).unwrap();
        std::fs::rename(&tmp, self.ring_path()).unwrap();
    }

    /// Installs `ring` as the ring file, starts nodes `0..n` with `extra` and waits until every
    /// one of them is ready.
    pub async fn start_all(&mut self, ring: RingDoc, n: usize, extra: &[&str]) {
        self.ring = ring;
        self.write_ring_file();
        for i in 0..n {
            self.start(i, extra);
        }
        for i in 0..n {
            self.wait_ready(i).await;
        }
    }

    /// `n` nodes started with `extra`, ready, on a fresh epoch-1 ring of all of them with
    /// replication factor `rf`.
    pub async fn started(name: &str, n: usize, rf: u32, extra: &[&str]) -> Cluster {
        let mut c = Cluster::new(name, n);
        let members: Vec<usize> = (0..n).collect();
        let ring = c.fresh_ring(&members, rf, 1);
        c.start_all(ring, n, extra).await;
        c
    }

    pub fn start(&mut self, i: usize, extra: &[&str]) {
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

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) to node `i`'s process, which this test started.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.nodes[i]
            .child
            .as_ref()
            .map(Child::id)
            .expect("node is running");
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Stops node `i` with SIGTERM (graceful: drains, writes its snapshot) and waits for it.
    pub fn terminate(&mut self, i: usize) {
        self.signal(i, "TERM");
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.wait();
        }
    }

    /// The incarnation node `i` reports (None from a node that has none, i.e. an older build).
    pub async fn incarnation(&self, i: usize) -> Option<String> {
        self.json(i, "/healthz").await["incarnation"]
            .as_str()
            .map(str::to_string)
    }

    /// `ring` with every member's incarnation set to what its running process reports, as the
    /// operator records it when it marks members `up`.
    pub async fn vouched(&self, mut ring: RingDoc) -> RingDoc {
        for m in &mut ring.members {
            if let Some(i) = self.nodes.iter().position(|n| n.id == m.id)
                && self.nodes[i].child.is_some()
            {
                m.incarnation = self.incarnation(i).await;
            }
        }
        ring
    }

    /// `ring` at `epoch` with node `i`'s member state and incarnation as given.
    pub fn with_member(
        ring: &RingDoc,
        epoch: u64,
        i: usize,
        state: MemberState,
        incarnation: Option<String>,
    ) -> RingDoc {
        let mut r = ring.clone();
        r.epoch = epoch;
        let m = &mut r.members[i];
        m.state = state;
        m.incarnation = incarnation;
        r
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// Status code of `GET path` on node `i` (0 when it does not answer).
    pub async fn status(&self, i: usize, path: &str) -> u16 {
        match self
            .http
            .get(format!("{}{path}", self.nodes[i].base()))
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// `GET path` on node `i` (no token); panics when the request fails.
    pub async fn get(&self, i: usize, path: &str) -> reqwest::Response {
        send_get(&self.http, format!("{}{path}", self.nodes[i].base())).await
    }

    /// The body of `GET path` on node `i` (no token) as text.
    pub async fn get_text(&self, i: usize, path: &str) -> String {
        self.get(i, path).await.text().await.unwrap()
    }

    /// `PUT path` with `body` on node `i` (no token); panics when the request fails.
    pub async fn put(
        &self,
        i: usize,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        send_put(&self.http, format!("{}{path}", self.nodes[i].base()), body).await
    }

    /// `POST /v1/batch` of `ops` on node `i`; panics when the request fails.
    pub async fn batch(&self, i: usize, ops: &[serde_json::Value]) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/batch", self.nodes[i].base()))
            .json(&serde_json::json!({ "ops": ops }))
            .send()
            .await
            .unwrap()
    }

    /// `DELETE path` on node `i` (no token); panics when the request fails.
    pub async fn delete(&self, i: usize, path: &str) -> reqwest::Response {
        self.http
            .delete(format!("{}{path}", self.nodes[i].base()))
            .send()
            .await
            .unwrap()
    }

    /// Waits until node `i` answers `/healthz` (alive, ready or not).
    pub async fn wait_alive(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.status(i, "/healthz").await != 200 {
            assert!(
                Instant::now() < deadline,
                "{} not alive in time",
                self.nodes[i].id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ready(&self, i: usize) {
        let url = format!("{}/readyz", self.nodes[i].base());
        let what = format!("{} not ready in time", self.nodes[i].id);
        wait_ok(&self.http, &url, 30, &what).await;
    }

    /// Installs `ring`: ring file first, then a push to every running node, like the operator.
    pub async fn set_ring(&mut self, ring: RingDoc) {
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

    /// `GET path` on node `i` with the internal token.
    pub async fn get_internal(&self, i: usize, path: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .get(format!("{}{path}", self.nodes[i].base()))
            .bearer_auth(TOKEN)
            .send()
            .await
    }

    pub async fn migration_done(&self, i: usize, epoch: u64) -> bool {
        let Ok(r) = self.get_internal(i, "/internal/v1/migration").await else {
            return false;
        };
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        v["epoch"] == epoch && v["done"] == true
    }

    pub async fn wait_migrations(&self, nodes: &[usize], epoch: u64) {
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

    /// `GET path` on node `i`, as JSON (with the internal token; public routes ignore it). A
    /// connection the node closes just as it is reused (a node resumed after SIGSTOP closes
    /// every keep-alive connection whose header read timeout passed meanwhile) is retried.
    pub async fn json(&self, i: usize, path: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.get_internal(i, path).await {
                Ok(r) => return r.json().await.unwrap(),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("GET {path} on {}: {e}; retrying", self.nodes[i].id);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("GET {path} on {}: {e}", self.nodes[i].id),
            }
        }
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect()
    }
}

/// Polls `GET url` until it answers 200; fails with `what` after `within_secs` seconds.
pub async fn wait_ok(http: &reqwest::Client, url: &str, within_secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(within_secs);
    while !http.get(url).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET url`; panics when the request fails.
pub async fn send_get(http: &reqwest::Client, url: String) -> reqwest::Response {
    http.get(url).send().await.unwrap()
}

/// The body of `GET url` as JSON; panics when the request fails or the body is not JSON.
pub async fn get_json(http: &reqwest::Client, url: String) -> serde_json::Value {
    send_get(http, url).await.json().await.unwrap()
}

/// `PUT url` with `body`; panics when the request fails.
pub async fn send_put(
    http: &reqwest::Client,
    url: String,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    http.put(url).body(body).send().await.unwrap()
}

/// Sends `req` through `app` in process; returns the status and the whole body.
pub async fn oneshot(
    app: axum::Router,
    req: axum::http::Request<axum::body::Body>,
) -> (axum::http::StatusCode, Vec<u8>) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

pub fn to_index(table: &[Vec<String>], ids: &[String]) -> Table {
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
pub struct Checker {
    pub acked: Arc<parking_lot::Mutex<HashMap<String, String>>>,
}

impl Checker {
    pub async fn put(&self, http: &reqwest::Client, base: &str, key: &str, value: &str) -> bool {
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
    pub async fn verify(&self, http: &reqwest::Client, base: &str) -> Vec<String> {
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

pub async fn write_keys(c: &Cluster, checker: &Checker, prefix: &str, n: usize) {
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

/// Client traffic kept running while a ring change is in flight, so the tests see what
/// clients would: writes acknowledged mid-migration and reads of keys that existed before.
pub struct Load {
    pub stop: Arc<std::sync::atomic::AtomicBool>,
    pub read_misses: Arc<std::sync::atomic::AtomicU64>,
    pub writes_acked: Arc<std::sync::atomic::AtomicU64>,
    pub writes_failed: Arc<std::sync::atomic::AtomicU64>,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What the clients saw while the load ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOutcome {
    pub read_misses: u64,
    pub writes_acked: u64,
    pub writes_failed: u64,
}

impl LoadOutcome {
    /// Reads of pre-existing keys never missed, and writes kept succeeding throughout: at least
    /// `min_acked` acknowledged, at most 1% refused (a write racing a ring change may be refused
    /// with 503 and retried by its client; if every write during a migration failed, the
    /// nothing-lost checks would still pass, so this is checked separately).
    pub fn assert_clients_served(&self, min_acked: u64) {
        assert_eq!(
            self.read_misses, 0,
            "reads of pre-existing keys missed: {self:?}"
        );
        assert!(
            self.writes_acked >= min_acked,
            "too few writes acknowledged during the change: {self:?}"
        );
        assert!(
            self.writes_failed * 100 <= self.writes_acked + self.writes_failed,
            "more than 1% of writes failed during the change: {self:?}"
        );
    }
}

impl Load {
    /// Four writers of new `during-…` keys (value `value`) and, unless `pre` is empty, two
    /// readers of `pre`; all go through `through` only, the nodes that stay members throughout.
    pub fn start(
        c: &Cluster,
        checker: &Checker,
        through: &[usize],
        value: &'static str,
        pre: &[String],
    ) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let read_misses = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writes_acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writes_failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let bases: Vec<String> = through.iter().map(|&i| c.nodes[i].base()).collect();
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (stop, http, checker, bases) =
                (stop.clone(), c.http.clone(), checker.clone(), bases.clone());
            let (acked, failed) = (writes_acked.clone(), writes_failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("during-{w}-{i}");
                    let ok = checker
                        .put(&http, &bases[i % bases.len()], &key, value)
                        .await;
                    let counter = if ok { &acked } else { &failed };
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            writes_acked,
            writes_failed,
            tasks,
        }
    }

    /// Waits until `n` more writes were acknowledged (fails after 30 s): called while a ring
    /// change is pending, it shows writes keep succeeding during the migration itself.
    pub async fn wait_acked(&self, n: u64) {
        let load = || self.writes_acked.load(std::sync::atomic::Ordering::Relaxed);
        let want = load() + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while load() < want {
            assert!(
                Instant::now() < deadline,
                "writes stopped being acknowledged: {} of {want}, {} failed",
                load(),
                self.writes_failed
                    .load(std::sync::atomic::Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every task and waits for it, so the checker holds every acknowledged write
    /// before it is verified; returns what the clients saw.
    pub async fn stop(self) -> LoadOutcome {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        LoadOutcome {
            read_misses: load(&self.read_misses),
            writes_acked: load(&self.writes_acked),
            writes_failed: load(&self.writes_failed),
        }
    }
}

/// Pushes `pending` (whose pending table is `target`); returns the planned moves and the
/// nodes that gain partitions, which are the ones whose migration must finish.
pub async fn push_pending(
    c: &mut Cluster,
    pending: &RingDoc,
    target: &Table,
) -> (Vec<PartitionMove>, Vec<usize>) {
    c.set_ring(pending.clone()).await;
    let moves = diff(&pending.table, target);
    // Each node once, in order.
    let gainers: std::collections::BTreeSet<usize> = moves
        .iter()
        .flat_map(|m| m.gained.iter().map(|&g| g as usize))
        .collect();
    (moves, gainers.into_iter().collect())
}

/// `pending` with its pending table made current at `epoch`; member states are the caller's.
pub fn commit_pending(pending: &RingDoc, target: Table, epoch: u64) -> RingDoc {
    let mut committed = pending.clone();
    committed.epoch = epoch;
    committed.table = target;
    committed.pending = None;
    committed
}

pub async fn assert_nothing_lost(c: &Cluster, checker: &Checker, through: std::ops::Range<usize>) {
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

pub async fn epoch_of(c: &Cluster, i: usize) -> u64 {
    let v: serde_json::Value = c.json(i, "/v1/ring").await;
    v["epoch"].as_u64().unwrap()
}

pub async fn wait_epoch(c: &Cluster, i: usize, epoch: u64, within: Duration) -> Duration {
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

pub async fn total_items(c: &Cluster) -> u64 {
    let mut total = 0;
    for &i in &c.running() {
        let s: serde_json::Value = c.json(i, "/v1/stats").await;
        total += s["items"].as_u64().unwrap();
    }
    total
}

/// A `/proc/PID/status` field in KiB (VmRSS, VmHWM).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Restarts the peak-RSS counter (VmHWM) of `pid` at its current RSS.
pub fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .unwrap_or_else(|e| panic!("cannot reset the peak RSS of {pid}: {e}"));
}

/// A stand-in ring member at `127.0.0.1:PORT`: its `/healthz` says it is settled on a far-future
/// epoch, its partitions are empty, and its `POST /internal/v1/apply` answers only once `release`
/// is notified.
pub async fn held_replica() -> (String, Arc<tokio::sync::Notify>) {
    use axum::routing::{get, post};
    let release = Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    let app = axum::Router::new()
        // Settled on whatever epoch it is asked about (the asker's, in its epoch header).
        .route(
            "/healthz",
            get(|h: axum::http::HeaderMap| async move {
                let epoch: u64 = h
                    .get("x-ringcache-epoch")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                axum::Json(serde_json::json!({"status": "ok", "epoch": epoch}))
            }),
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

/// The scale-out scenario (scaled down from production sizes: 64 partitions, 5k keys before and
/// writes during): 3 nodes grow to 5 under client load, reads of keys written before never miss,
/// every gainer pulls exactly what `ring::diff` planned, nothing acknowledged is lost. `c` has 5
/// node slots; `extra` are flags for every node (TLS, …).
pub async fn scale_out_3_to_5_under_load(c: &mut Cluster, extra: &[&str]) {
    let ring = c.fresh_ring(&[0, 1, 2], 2, 1);
    c.start_all(ring, 3, extra).await;
    let checker = Checker::default();
    write_keys(c, &checker, "pre", 5_000).await;
    let pre: Vec<String> = checker.acked.lock().keys().cloned().collect();

    // New pods start as joining members (own nothing), then the pending table is written.
    let mut joining = c.ring.clone();
    joining.epoch = 2;
    joining.members.push(c.member(3, MemberState::Joining));
    joining.members.push(c.member(4, MemberState::Joining));
    c.set_ring(joining.clone()).await;
    c.start(3, extra);
    c.start(4, extra);
    c.wait_ready(3).await;
    c.wait_ready(4).await;

    let ids: Vec<String> = (0..5).map(|i| c.nodes[i].id.clone()).collect();
    let (pending, target) = pending_toward(&joining, &ids, &ids, 3);

    let load = Load::start(c, &checker, &[0, 1, 2], "x", &pre);
    let (moves, gainers) = push_pending(c, &pending, &target).await;
    load.wait_acked(50).await;
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
    load.stop().await.assert_clients_served(50);
    assert_nothing_lost(c, &checker, 0..5).await;
}

/// Marks node `i` recovering (with the incarnation it reports now), waits for its pulls, then
/// marks it up: what the operator does when it sees a new incarnation.
pub async fn recover(c: &mut Cluster, i: usize) {
    let inc = c.incarnation(i).await;
    let epoch = c.ring.epoch + 1;
    let ring = Cluster::with_member(&c.ring, epoch, i, MemberState::Recovering, inc.clone());
    c.set_ring(ring).await;
    c.wait_migrations(&[i], epoch).await;
    let ring = Cluster::with_member(&c.ring, epoch + 1, i, MemberState::Up, inc);
    c.set_ring(ring).await;
    c.wait_ready(i).await;
}

/// A Redis connection to node `i`'s RESP address `addr`.
pub fn redis_conn(addr: &str, i: usize) -> redis::Connection {
    redis::Client::open(format!("redis://{addr}/"))
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("connecting to node {i}'s RESP port: {e}"))
}

/// Runs blocking client code off the test's runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// `ring` at `epoch` with a pending table that places every partition (RF=2) on the members
/// `keep` of `ids` (all members' ids, by index), and that table.
pub fn pending_toward(
    ring: &RingDoc,
    keep: &[String],
    ids: &[String],
    epoch: u64,
) -> (RingDoc, Table) {
    let target = rebalance(&ring.id_table(&ring.table), keep, PARTITIONS, 2).unwrap();
    let target = to_index(&target, ids);
    let mut pending = ring.clone();
    pending.epoch = epoch;
    pending.pending = Some(Pending {
        table: target.clone(),
    });
    (pending, target)
}
