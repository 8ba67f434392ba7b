//! Hashes, sets, sorted sets and lists on a loopback cluster through the Redis protocol: written
//! through one node and read through another (so most are forwarded and all replicated),
//! `WRONGTYPE` wherever the key lives, the keyspace commands over the whole cluster (each key
//! once, not once per replica), and every family through a kill -9 of an owner and a restart
//! from a snapshot.

mod support;

use redis::{Commands, Connection};
use ringcache_ring::MemberState::{Joining, Leaving, Up};
use std::collections::{BTreeMap, BTreeSet};
use support::*;

/// A cluster whose nodes each also listen for RESP on a fixed address (kept across restarts).
struct Typed {
    c: Cluster,
    resp: Vec<String>,
}

impl Typed {
    async fn start(name: &str, n: usize, extra: &[&str]) -> Typed {
        Typed::start_first(name, n, n, extra).await
    }

    /// A cluster of `n` possible nodes of which the first `running` are members and started.
    async fn start_first(name: &str, n: usize, running: usize, extra: &[&str]) -> Typed {
        let mut c = Cluster::new(name, n);
        let members: Vec<usize> = (0..running).collect();
        c.ring = c.fresh_ring(&members, 2.min(running as u32), 1);
        c.write_ring_file();
        let resp: Vec<String> = (0..n)
            .map(|i| format!("127.0.0.{}:{}", i + 2, free_port()))
            .collect();
        let mut t = Typed { c, resp };
        for i in 0..running {
            t.start_node(i, extra);
        }
        for i in 0..running {
            t.c.wait_ready(i).await;
        }
        t
    }

    fn start_node(&mut self, i: usize, extra: &[&str]) {
        let mut flags = vec!["--resp-listen", self.resp[i].as_str()];
        flags.extend_from_slice(extra);
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.c.start(i, &flags);
    }

    fn conn(&self, i: usize) -> Connection {
        redis_conn(&self.resp[i], i)
    }
}

/// What the test wrote, per family, to compare with what the cluster answers.
#[derive(Default, Clone)]
struct Expected {
    hashes: BTreeMap<String, BTreeMap<String, String>>,
    sets: BTreeMap<String, BTreeSet<String>>,
    zsets: BTreeMap<String, Vec<(String, f64)>>,
    lists: BTreeMap<String, Vec<String>>,
}

impl Expected {
    fn keys(&self) -> BTreeSet<String> {
        self.hashes
            .keys()
            .chain(self.sets.keys())
            .chain(self.zsets.keys())
            .chain(self.lists.keys())
            .cloned()
            .collect()
    }
}

/// Writes `n` keys of each family, each through node `i % nodes`, with several commands per
/// key (so each is a read-modify-write on the key's owner, not one blind write).
fn write_families(conns: &mut [Connection], n: usize) -> Expected {
    write_families_as(conns, n, "")
}

/// [`write_families`] with keys `{prefix}h:{i}`, ….
fn write_families_as(conns: &mut [Connection], n: usize, prefix: &str) -> Expected {
    let mut e = Expected::default();
    let nodes = conns.len();
    for i in 0..n {
        let c = &mut conns[i % nodes];
        let h = format!("{prefix}h:{i}");
        let _: i64 = c
            .hset_multiple(&h, &[("a", "1"), ("b", "2")])
            .map(|()| 0)
            .unwrap();
        let _: i64 = c.hincr(&h, "a", 10 + i as i64).unwrap();
        e.hashes.insert(
            h,
            BTreeMap::from([("a".into(), (11 + i).to_string()), ("b".into(), "2".into())]),
        );
        let s = format!("{prefix}s:{i}");
        let _: i64 = c.sadd(&s, &["x", "y", "z"]).unwrap();
        let _: i64 = c.srem(&s, "y").unwrap();
        e.sets.insert(s, BTreeSet::from(["x".into(), "z".into()]));
        let z = format!("{prefix}z:{i}");
        let _: i64 = c.zadd_multiple(&z, &[(2.5, "b"), (1.0, "a")]).unwrap();
        let _: f64 = c.zincr(&z, "a", 5).unwrap();
        e.zsets
            .insert(z, vec![("b".into(), 2.5), ("a".into(), 6.0)]);
        let l = format!("{prefix}l:{i}");
        let _: i64 = c.rpush(&l, &["1", "2", "3"]).unwrap();
        let _: i64 = c.lpush(&l, "0").unwrap();
        let _: Option<String> = c.rpop(&l, None).unwrap();
        e.lists.insert(l, vec!["0".into(), "1".into(), "2".into()]);
    }
    e
}

/// Every key of `e` reads back as written through `c`; the first difference is returned.
fn verify(c: &mut Connection, e: &Expected) -> Result<(), String> {
    for (k, want) in &e.hashes {
        let got: BTreeMap<String, String> = c.hgetall(k).map_err(|x| format!("{k}: {x}"))?;
        if &got != want {
            return Err(format!("{k}: {got:?} != {want:?}"));
        }
    }
    for (k, want) in &e.sets {
        let got: BTreeSet<String> = c.smembers(k).map_err(|x| format!("{k}: {x}"))?;
        if &got != want {
            return Err(format!("{k}: {got:?} != {want:?}"));
        }
    }
    for (k, want) in &e.zsets {
        let got: Vec<(String, f64)> = c
            .zrange_withscores(k, 0, -1)
            .map_err(|x| format!("{k}: {x}"))?;
        if &got != want {
            return Err(format!("{k}: {got:?} != {want:?}"));
        }
    }
    for (k, want) in &e.lists {
        let got: Vec<String> = c.lrange(k, 0, -1).map_err(|x| format!("{k}: {x}"))?;
        if &got != want {
            return Err(format!("{k}: {got:?} != {want:?}"));
        }
    }
    Ok(())
}

/// `SCAN` through `c` to the end: every key it returned, in order, with repeats.
fn scan_all(c: &mut Connection, count: usize, kind: Option<&str>) -> Vec<String> {
    let mut cursor = 0u64;
    let mut out = Vec::new();
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor).arg("COUNT").arg(count);
        if let Some(t) = kind {
            cmd.arg("TYPE").arg(t);
        }
        let (next, keys): (u64, Vec<String>) = cmd.query(c).unwrap();
        out.extend(keys);
        if next == 0 {
            return out;
        }
        assert!(
            next > cursor,
            "the cursor moves forward: {cursor} -> {next}"
        );
        cursor = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_through_any_node_with_wrongtype_and_a_cluster_wide_keyspace() {
    let t = Typed::start("typed-any", 3, &[]).await;
    let mut conns: Vec<Connection> = (0..3).map(|i| t.conn(i)).collect();
    blocking(move || {
        let e = write_families(&mut conns, 60);
        // Read through a node other than the writer: forwarded to the owner.
        for c in conns.iter_mut() {
            verify(c, &e).unwrap();
        }
        let c = &mut conns[1];
        let _: () = c.set("plain", "text").unwrap();
        for (cmd, key) in [
            ("HGETALL", "plain"),
            ("SMEMBERS", "plain"),
            ("LLEN", "plain"),
        ] {
            let r: redis::RedisResult<redis::Value> = redis::cmd(cmd).arg(key).query(c);
            let err = r.expect_err("a collection command on a string");
            assert_eq!(err.code(), Some("WRONGTYPE"), "{cmd}: {err}");
        }
        let r: redis::RedisResult<Option<String>> = c.get("h:0");
        assert_eq!(r.expect_err("GET of a hash").code(), Some("WRONGTYPE"));
        let t0: String = redis::cmd("TYPE").arg("z:0").query(c).unwrap();
        assert_eq!(t0, "zset");
        let n: i64 = c
            .exists(&["h:0", "s:0", "z:0", "l:0", "plain", "nope"])
            .unwrap();
        assert_eq!(n, 5);

        // The keyspace, each key once (RF=2: every key is held twice).
        let mut all = e.keys();
        all.insert("plain".into());
        all.insert("s:1".into());
        for c in conns.iter_mut() {
            let n: usize = redis::cmd("DBSIZE").query(c).unwrap();
            assert_eq!(n, all.len());
        }
        let mut hashes: Vec<String> = conns[2].keys("h:*").unwrap();
        hashes.sort();
        let want: Vec<String> = e.hashes.keys().cloned().collect();
        assert_eq!(hashes, want);
        let scanned = scan_all(&mut conns[0], 100, None);
        let distinct: BTreeSet<String> = scanned.iter().cloned().collect();
        assert_eq!(scanned.len(), distinct.len(), "SCAN returned a key twice");
        assert_eq!(distinct, all, "SCAN missed keys");
        let zsets: BTreeSet<String> = scan_all(&mut conns[1], 300, Some("zset"))
            .into_iter()
            .collect();
        assert_eq!(zsets, e.zsets.keys().cloned().collect());
        let r: Option<String> = redis::cmd("RANDOMKEY").query(&mut conns[2]).unwrap();
        assert!(r.is_some_and(|k| all.contains(&k)));

        // Several keys read on their owners (most of them elsewhere).
        let c = &mut conns[0];
        let _: i64 = c.sadd("s:1", "only-here").unwrap();
        let inter: BTreeSet<String> = c.sinter(&["s:0", "s:1", "s:2"]).unwrap();
        assert_eq!(inter, BTreeSet::from(["x".into(), "z".into()]));
        let union: BTreeSet<String> = c.sunion(&["s:0", "s:1"]).unwrap();
        assert_eq!(union.len(), 3);
        let diff: Vec<String> = c.sdiff(&["s:1", "s:0"]).unwrap();
        assert_eq!(diff, ["only-here"]);
        let card: i64 = redis::cmd("SINTERCARD")
            .arg(2)
            .arg("s:0")
            .arg("s:1")
            .arg("LIMIT")
            .arg(1)
            .query(c)
            .unwrap();
        assert_eq!(card, 1);
        let zu: Vec<(String, f64)> = redis::cmd("ZUNION")
            .arg(3)
            .arg("z:0")
            .arg("z:1")
            .arg("s:0")
            .arg("WEIGHTS")
            .arg(1)
            .arg(2)
            .arg(10)
            .arg("WITHSCORES")
            .query(c)
            .unwrap();
        assert_eq!(
            zu,
            [
                ("b".to_string(), 7.5),
                ("x".to_string(), 10.0),
                ("z".to_string(), 10.0),
                ("a".to_string(), 18.0)
            ],
            "a set's members score 1"
        );
        let zi: i64 = redis::cmd("ZINTERCARD")
            .arg(2)
            .arg("z:0")
            .arg("z:1")
            .query(c)
            .unwrap();
        assert_eq!(zi, 2);
        let r: redis::RedisResult<Vec<String>> = c.sinter(&["s:0", "plain"]);
        assert_eq!(r.unwrap_err().code(), Some("WRONGTYPE"));
        let r: redis::RedisResult<Vec<String>> = redis::cmd("ZUNION").arg(3).arg("z:0").query(c);
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("greater than number of args")
        );

        let _: () = redis::cmd("FLUSHDB").query(&mut conns[2]).unwrap();
        for c in conns.iter_mut() {
            let n: usize = redis::cmd("DBSIZE").query(c).unwrap();
            assert_eq!(n, 0, "keys left after FLUSHDB");
            let h: BTreeMap<String, String> = c.hgetall("h:1").unwrap();
            assert!(h.is_empty());
        }
        let r: Option<String> = redis::cmd("RANDOMKEY").query(&mut conns[0]).unwrap();
        assert_eq!(r, None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_survives_a_kill_of_an_owner_and_its_recovery() {
    let mut t = Typed::start("typed-kill", 3, &[]).await;
    let ring = t.c.vouched(t.c.ring.clone()).await;
    let mut ring = ring;
    ring.epoch = 2;
    t.c.set_ring(ring).await;
    let mut conns: Vec<Connection> = (0..3).map(|i| t.conn(i)).collect();
    let (e, conns) = blocking(move || {
        let e = write_families(&mut conns, 150);
        (e, conns)
    })
    .await;
    drop(conns);

    t.c.kill9(2);
    let mut survivors: Vec<Connection> = (0..2).map(|i| t.conn(i)).collect();
    let e2 = e.clone();
    // Every write was acknowledged by both owners: the survivors hold all of it.
    blocking(move || {
        for c in survivors.iter_mut() {
            verify(c, &e2).unwrap();
        }
    })
    .await;

    t.start_node(2, &[]);
    t.c.wait_alive(2).await;
    recover(&mut t.c, 2).await;
    let mut conns: Vec<Connection> = (0..3).map(|i| t.conn(i)).collect();
    blocking(move || {
        for c in conns.iter_mut() {
            verify(c, &e).unwrap();
        }
        let n: usize = redis::cmd("DBSIZE").query(&mut conns[2]).unwrap();
        assert_eq!(n, e.keys().len());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_reloaded_from_a_snapshot() {
    let dir = std::env::temp_dir().join(format!("rc-typed-snap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.to_string_lossy().to_string();
    let flags = ["--data-dir", data.as_str(), "--snapshot-interval", "1h"];
    let mut t = Typed::start("typed-snap", 1, &flags).await;
    let mut c = t.conn(0);
    let (e, c) = blocking(move || {
        let e = write_families(std::slice::from_mut(&mut c), 80);
        let _: bool = c.expire("h:0", 3_600).unwrap();
        (e, c)
    })
    .await;
    drop(c);
    // A graceful stop writes the final snapshot.
    t.c.terminate(0);
    assert!(dir.join("snapshot.bin").exists(), "no snapshot at stop");
    t.start_node(0, &flags);
    t.c.wait_ready(0).await;
    let mut c = t.conn(0);
    blocking(move || {
        verify(&mut c, &e).unwrap();
        let ttl: i64 = c.ttl("h:0").unwrap();
        assert!(
            (3_500..=3_600).contains(&ttl),
            "the expiry came back: {ttl}"
        );
        let kinds: Vec<String> = ["h:1", "s:1", "z:1", "l:1"]
            .iter()
            .map(|k| redis::cmd("TYPE").arg(k).query(&mut c).unwrap())
            .collect();
        assert_eq!(kinds, ["hash", "set", "zset", "list"]);
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn select(c: &mut Connection, db: u8) {
    let () = redis::cmd("SELECT").arg(db).query(c).unwrap();
}

fn dbsize(c: &mut Connection) -> usize {
    redis::cmd("DBSIZE").query(c).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbered_databases_are_separate_keyspaces_across_the_cluster() {
    let t = Typed::start("typed-dbs", 3, &["--databases", "4"]).await;
    let mut conns: Vec<Connection> = (0..3).map(|i| t.conn(i)).collect();
    let http = t.c.http.clone();
    let base = t.c.nodes[2].base();
    blocking(move || {
        let [a, b, c] = &mut conns[..] else {
            unreachable!()
        };
        let () = a.set("k", "zero").unwrap();
        select(b, 1);
        let () = b.set("k", "one").unwrap();
        let _: i64 = b.hset("h", "f", "v").unwrap();
        let _: i64 = b.rpush("l", &["x", "y"]).unwrap();
        // Another connection, another node: database 1 is the same keyspace there.
        select(c, 1);
        let v: String = c.get("k").unwrap();
        assert_eq!(v, "one");
        let h: String = c.hget("h", "f").unwrap();
        assert_eq!(h, "v");
        assert_eq!(dbsize(c), 3);
        let mut keys: Vec<String> = c.keys("*").unwrap();
        keys.sort();
        assert_eq!(
            keys,
            ["h", "k", "l"],
            "keys come back without their database"
        );
        let v: String = a.get("k").unwrap();
        assert_eq!(v, "zero", "database 0 is untouched");
        assert_eq!(dbsize(a), 1);
        let r: redis::RedisResult<()> = redis::cmd("SELECT").arg(4).query(a);
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("DB index is out of range")
        );
        let long = "x".repeat(249);
        let r: redis::RedisResult<()> = c.set(&long, "v");
        assert!(
            r.unwrap_err()
                .to_string()
                .contains("keys are 1 to 248 bytes")
        );

        let () = redis::cmd("FLUSHDB").query(c).unwrap();
        assert_eq!(dbsize(b), 0);
        assert_eq!(dbsize(a), 1, "FLUSHDB empties the selected database only");
        let () = b.set("again", "1").unwrap();
        let () = redis::cmd("FLUSHALL").query(a).unwrap();
        assert_eq!((dbsize(a), dbsize(b)), (0, 0));
    })
    .await;
    // HTTP addresses database 0 only.
    let r = http.get(format!("{base}/v1/keys/k")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

/// A keyspace command in a pipeline sees every write before it and none after it, though the
/// writes wait on peers (forwarded, replicated) and run concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_orders_keyspace_commands_with_the_writes_around_them() {
    let t = Typed::start("typed-pipe", 3, &[]).await;
    let mut c = t.conn(0);
    blocking(move || {
        for round in 0..5 {
            let mut p = redis::pipe();
            for i in 0..20 {
                p.cmd("SET").arg(format!("k{round}:{i}")).arg(i).ignore();
            }
            p.cmd("DBSIZE");
            p.cmd("FLUSHDB").ignore();
            for i in 0..7 {
                p.cmd("HSET")
                    .arg(format!("h{round}:{i}"))
                    .arg("f")
                    .arg(i)
                    .ignore();
            }
            p.cmd("DBSIZE");
            let (before, after): (usize, usize) = p.query(&mut c).unwrap();
            assert_eq!((before, after), (20, 7), "round {round}");
            let () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
        }
    })
    .await;
}

impl Expected {
    fn extend(&mut self, other: Expected) {
        self.hashes.extend(other.hashes);
        self.sets.extend(other.sets);
        self.zsets.extend(other.zsets);
        self.lists.extend(other.lists);
    }
}

/// Every node in `nodes` answers every key of `e` as written.
async fn verify_through(t: &Typed, nodes: std::ops::Range<usize>, e: &Expected) {
    let mut conns: Vec<Connection> = nodes.map(|i| t.conn(i)).collect();
    let e = e.clone();
    blocking(move || {
        for c in conns.iter_mut() {
            verify(c, &e).unwrap();
            assert_eq!(dbsize(c), e.keys().len());
        }
    })
    .await;
}

/// Every family through a scale from 3 to 5 nodes and back to 3, written before and while the
/// partitions move: the migrations carry collections as they carry strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_through_a_scale_from_3_to_5_and_back() {
    let mut t = Typed::start_first("typed-scale", 5, 3, &[]).await;
    let mut conns: Vec<Connection> = (0..3).map(|i| t.conn(i)).collect();
    let (mut e, conns) =
        blocking(move || (write_families_as(&mut conns, 200, "pre-"), conns)).await;
    drop(conns);

    // 3 -> 5: the new members join, the pending table moves partitions to them.
    let mut joining = t.c.ring.clone();
    joining.epoch = 2;
    joining.members.push(t.c.member(3, Joining));
    joining.members.push(t.c.member(4, Joining));
    t.c.set_ring(joining.clone()).await;
    t.start_node(3, &[]);
    t.start_node(4, &[]);
    t.c.wait_ready(3).await;
    t.c.wait_ready(4).await;
    let ids: Vec<String> = (0..5).map(|i| t.c.nodes[i].id.clone()).collect();
    let (pending, target) = pending_toward(&joining, &ids, &ids, 3);
    let (_, gainers) = push_pending(&mut t.c, &pending, &target).await;
    // Written while the partitions move.
    let mut conns: Vec<Connection> = (0..3).map(|i| t.conn(i)).collect();
    let during = blocking(move || write_families_as(&mut conns, 100, "out-")).await;
    e.extend(during);
    t.c.wait_migrations(&gainers, 3).await;
    let mut committed = commit_pending(&pending, target, 4);
    for m in &mut committed.members {
        m.state = Up;
    }
    t.c.set_ring(committed).await;
    verify_through(&t, 0..5, &e).await;

    // 5 -> 3: the two highest leave once their partitions have moved.
    let mut leaving = t.c.ring.clone();
    leaving.members[3].state = Leaving;
    leaving.members[4].state = Leaving;
    let (pending, target) = pending_toward(&leaving, &ids[..3], &ids, 5);
    let (_, gainers) = push_pending(&mut t.c, &pending, &target).await;
    let mut conns: Vec<Connection> = (0..5).map(|i| t.conn(i)).collect();
    let during = blocking(move || write_families_as(&mut conns, 100, "in-")).await;
    e.extend(during);
    t.c.wait_migrations(&gainers, 5).await;
    let mut committed = commit_pending(&pending, target, 6);
    committed.members.truncate(3);
    t.c.set_ring(committed).await;
    t.c.kill9(3);
    t.c.kill9(4);
    verify_through(&t, 0..3, &e).await;
}

/// `blocked_clients` of node `i`'s `INFO`.
fn blocked_clients(c: &mut Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("clients").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no blocked_clients in {info}"))
}

/// Polls until `n` clients of the connection's node are blocked.
fn wait_blocked(c: &mut Connection, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while blocked_clients(c) != n {
        assert!(std::time::Instant::now() < deadline, "never {n} blocked");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A client blocked on one node is woken by a push through another, on keys whose owners are
/// elsewhere; a timeout answers nil; a closed connection pops nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_pops_are_woken_by_a_push_through_any_node() {
    let t = Typed::start("typed-block", 3, &[]).await;
    let mut blocker = t.conn(0);
    let mut watcher = t.conn(0);
    let pusher = t.conn(2);
    let addr0 = t.resp[0].clone();
    blocking(move || {
        use std::io::Write;
        let mut pusher = pusher;
        let popped = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let r: Option<(String, String)> = redis::cmd("BLPOP")
                .arg("q:empty")
                .arg("q:jobs")
                .arg(30)
                .query(&mut blocker)
                .unwrap();
            (r, started.elapsed(), blocker)
        });
        wait_blocked(&mut watcher, 1);
        let _: i64 = pusher.rpush("q:jobs", &["job-1", "job-2"]).unwrap();
        let (r, took, mut blocker) = popped.join().unwrap();
        assert_eq!(r, Some(("q:jobs".to_string(), "job-1".to_string())));
        assert!(
            took < std::time::Duration::from_secs(10),
            "woken, not timed out: {took:?}"
        );
        assert_eq!(blocked_clients(&mut watcher), 0);
        let left: Vec<String> = pusher.lrange("q:jobs", 0, -1).unwrap();
        assert_eq!(left, ["job-2"], "popped exactly once");

        // Sorted sets, and the multi-key forms.
        let z = std::thread::spawn(move || {
            let r: Vec<String> = redis::cmd("BZPOPMIN")
                .arg("z:prio")
                .arg(30)
                .query(&mut blocker)
                .unwrap();
            (r, blocker)
        });
        wait_blocked(&mut watcher, 1);
        let _: i64 = pusher
            .zadd_multiple("z:prio", &[(3, "c"), (1, "a")])
            .unwrap();
        let (r, mut blocker) = z.join().unwrap();
        assert_eq!(r, ["z:prio", "a", "1"]);
        let r: (String, Vec<String>) = redis::cmd("LMPOP")
            .arg(2)
            .arg("q:empty")
            .arg("q:jobs")
            .arg("LEFT")
            .arg("COUNT")
            .arg(5)
            .query(&mut blocker)
            .unwrap();
        assert_eq!(r, ("q:jobs".to_string(), vec!["job-2".to_string()]));

        // A timeout answers nil after about the timeout.
        let started = std::time::Instant::now();
        let r: Option<(String, String)> = redis::cmd("BRPOP")
            .arg("q:never")
            .arg(0.3)
            .query(&mut blocker)
            .unwrap();
        assert_eq!(r, None);
        assert!(started.elapsed() >= std::time::Duration::from_millis(300));

        // A client that goes away while blocked takes nothing.
        let mut raw = std::net::TcpStream::connect(&addr0).unwrap();
        raw.write_all(b"*3\r\n$5\r\nBLPOP\r\n$8\r\nq:orphan\r\n$1\r\n0\r\n")
            .unwrap();
        wait_blocked(&mut watcher, 1);
        drop(raw);
        wait_blocked(&mut watcher, 0);
        let _: i64 = pusher.rpush("q:orphan", "kept").unwrap();
        let left: Vec<String> = pusher.lrange("q:orphan", 0, -1).unwrap();
        assert_eq!(left, ["kept"]);
    })
    .await;
}
