//! The write and read paths against fake peers that acknowledge, fail, stall or recover: what a
//! client is told under each `writeConsistency`, and which owner's answer it gets.

use super::error::{ClusterError, Op};
use super::node::{Node, SharedNode};
use super::ops::{KeyOp, OpError, Outcome};
use super::peers::{Forwarded, PeerApi, PeerError, ReadAnswer, RecordStream, Sender, WriteOp};
use super::route::{Origin, Write, op, read, write};
use crate::clock::SystemClock;
use crate::config::{NodeConfig, WriteConsistency};
use crate::engine::Record;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use ringcache_common::protocol::ErrorCode;
use ringcache_ring::{Member, MemberState, RingDoc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 4;

/// How a fake peer answers.
#[derive(Clone)]
enum Behaviour {
    Ack,
    /// No answer (connection refused).
    Down,
    /// Answers after the delay.
    Slow(Duration),
    /// An error answer with this status and body.
    Status(u16, &'static str),
    /// A forwarded read's answer.
    Value(Option<&'static str>),
}

#[derive(Default)]
struct FakePeers {
    behaviour: Mutex<HashMap<String, Behaviour>>,
    /// Replica writes received, by address.
    applied: Mutex<HashMap<String, Vec<Record>>>,
    /// Every call, by address, in order.
    calls: Mutex<Vec<String>>,
}

impl FakePeers {
    fn set(&self, addr: &str, b: Behaviour) {
        self.behaviour.lock().insert(addr.to_string(), b);
    }

    fn applied(&self, addr: &str) -> usize {
        self.applied.lock().get(addr).map_or(0, Vec::len)
    }

    /// The behaviour of `addr`, after waiting out a `Slow` one.
    async fn behave(&self, addr: &str) -> Result<Behaviour, PeerError> {
        self.calls.lock().push(addr.to_string());
        let b = self
            .behaviour
            .lock()
            .get(addr)
            .cloned()
            .unwrap_or(Behaviour::Ack);
        match b {
            Behaviour::Down => Err(PeerError::Unreachable {
                addr: addr.to_string(),
                message: "connection refused".into(),
            }),
            Behaviour::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(Behaviour::Ack)
            }
            Behaviour::Status(status, body) => Err(PeerError::Status {
                addr: addr.to_string(),
                status,
                body: body.to_string(),
            }),
            other => Ok(other),
        }
    }
}

impl FakePeers {
    /// A forwarded client operation's answer: `status` and `body` when the peer acknowledges,
    /// its 4xx as an answer (not an error of the hop).
    async fn forwarded(
        &self,
        addr: &str,
        status: u16,
        body: Bytes,
    ) -> Result<Forwarded, PeerError> {
        match self.behave(addr).await {
            Ok(_) => Ok(Forwarded {
                status,
                body,
                epoch: Some(1),
            }),
            Err(PeerError::Status { status, body, .. }) if status < 500 => Ok(Forwarded {
                status,
                body: Bytes::from(body),
                epoch: Some(1),
            }),
            Err(e) => Err(e),
        }
    }
}

impl PeerApi for FakePeers {
    fn read<'a>(
        &'a self,
        addr: &'a str,
        _key: &'a [u8],
        _from: &'a Sender,
    ) -> BoxFuture<'a, Result<ReadAnswer, PeerError>> {
        async move {
            match self.behave(addr).await? {
                Behaviour::Value(v) => Ok((v.map(|s| Bytes::from_static(s.as_bytes())), Some(1))),
                _ => Ok((None, Some(1))),
            }
        }
        .boxed()
    }

    fn write<'a>(
        &'a self,
        addr: &'a str,
        _key: &'a [u8],
        _op: &'a WriteOp,
        _from: &'a Sender,
    ) -> BoxFuture<'a, Result<Forwarded, PeerError>> {
        self.forwarded(addr, 204, Bytes::new()).boxed()
    }

    fn op<'a>(
        &'a self,
        addr: &'a str,
        _key: &'a [u8],
        _op: &'a KeyOp,
        _from: &'a Sender,
    ) -> BoxFuture<'a, Result<Forwarded, PeerError>> {
        let answer = serde_json::to_vec(&Outcome::Int(7)).unwrap_or_default();
        self.forwarded(addr, 200, Bytes::from(answer)).boxed()
    }

    fn keyspace<'a>(
        &'a self,
        addr: &'a str,
        _q: &'a super::keyspace_query::Query,
        _from: &'a Sender,
    ) -> BoxFuture<'a, Result<Forwarded, PeerError>> {
        let answer =
            serde_json::to_vec(&super::keyspace_query::Answer::default()).unwrap_or_default();
        self.forwarded(addr, 200, Bytes::from(answer)).boxed()
    }

    fn apply<'a>(
        &'a self,
        addr: &'a str,
        records: &'a [Record],
        _from: &'a Sender,
    ) -> BoxFuture<'a, Result<Option<u64>, PeerError>> {
        async move {
            self.behave(addr).await?;
            self.applied
                .lock()
                .entry(addr.to_string())
                .or_default()
                .extend(records.iter().cloned());
            Ok(Some(1))
        }
        .boxed()
    }

    fn pull<'a>(
        &'a self,
        addr: &'a str,
        _p: u32,
        _after: Option<&'a [u8]>,
        _from: &'a Sender,
    ) -> BoxFuture<'a, Result<RecordStream, PeerError>> {
        async move {
            Err(PeerError::Unreachable {
                addr: addr.to_string(),
                message: "no pulls in these tests".into(),
            })
        }
        .boxed()
    }

    fn writer_state<'a>(
        &'a self,
        _addr: &'a str,
        _from: &'a Sender,
    ) -> BoxFuture<'a, Result<(u64, Option<u64>), PeerError>> {
        async { Ok((1, None)) }.boxed()
    }

    fn fetch_ring<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<Bytes, PeerError>> {
        async move {
            Err(PeerError::Unreachable {
                addr: addr.to_string(),
                message: "no ring here".into(),
            })
        }
        .boxed()
    }
}

fn addr(i: usize) -> String {
    format!("10.0.0.{i}:7070")
}

/// A ring of members n0 (this node), n1, n2, all up, with `owners` owning every partition.
fn ring(owners: &[u32]) -> RingDoc {
    RingDoc {
        version: 1,
        epoch: 1,
        partitions: PARTITIONS,
        replication_factor: owners.len() as u32,
        hash: "xxh3_64".into(),
        members: (0..3)
            .map(|i| Member {
                id: format!("n{i}"),
                addr: addr(i),
                state: MemberState::Up,
                incarnation: None,
            })
            .collect(),
        table: (0..PARTITIONS).map(|_| owners.to_vec()).collect(),
        pending: None,
    }
}

fn node(c: WriteConsistency, owners: &[u32]) -> (SharedNode, Arc<FakePeers>) {
    let mut cfg = NodeConfig::for_listen(addr(0).parse().unwrap());
    cfg.node_id = "n0".into();
    cfg.partitions = PARTITIONS;
    cfg.write_consistency = c;
    let peers = Arc::new(FakePeers::default());
    let n = Node::new(&cfg, Arc::new(SystemClock), ring(owners), peers.clone());
    (n, peers)
}

fn set(v: &'static str) -> Write {
    Write {
        value: Some(Bytes::from_static(v.as_bytes())),
        ttl_ms: None,
    }
}

async fn put(n: &SharedNode, key: &str, v: &'static str) -> Result<(), ClusterError> {
    write(n, key.as_bytes(), set(v), &Origin::default()).await
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn all_needs_every_live_owner() {
    let (n, peers) = node(WriteConsistency::All, &[0, 1, 2]);
    put(&n, "k1", "v").await.unwrap();
    assert_eq!((peers.applied(&addr(1)), peers.applied(&addr(2))), (1, 1));

    peers.set(&addr(2), Behaviour::Down);
    match put(&n, "k2", "v").await {
        Err(ClusterError::Replication { acks, need, errors }) => {
            assert_eq!((acks, need), (1, 2));
            assert!(errors.contains("connection refused"), "{errors}");
        }
        other => panic!("a write n2 missed was acknowledged: {other:?}"),
    }
    // `all` names no stale owner: the client was told the write failed.
    assert!(n.replication.stale_members(&n.ring.get()).is_empty());
}

#[tokio::test]
async fn quorum_answers_with_a_majority_and_reports_the_owner_that_missed_it() {
    let (n, peers) = node(WriteConsistency::Quorum, &[0, 1, 2]);
    peers.set(&addr(2), Behaviour::Down);
    put(&n, "k", "v").await.unwrap();
    assert_eq!(peers.applied(&addr(1)), 1);
    eventually("n2 reported stale", || {
        n.replication.stale_members(&n.ring.get()) == ["n2"]
    })
    .await;

    peers.set(&addr(1), Behaviour::Down);
    assert!(matches!(
        put(&n, "k", "v2").await,
        Err(ClusterError::Replication {
            acks: 0,
            need: 1,
            ..
        })
    ));
}

#[tokio::test]
async fn quorum_does_not_wait_for_a_slow_owner_which_still_gets_the_write() {
    let (n, peers) = node(WriteConsistency::Quorum, &[0, 1, 2]);
    peers.set(&addr(2), Behaviour::Slow(Duration::from_millis(600)));
    let t = Instant::now();
    put(&n, "k", "v").await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "waited {:?} for the slow owner",
        t.elapsed()
    );
    eventually("the slow owner got the write", || {
        peers.applied(&addr(2)) == 1
    })
    .await;
    assert!(n.replication.stale_members(&n.ring.get()).is_empty());
}

#[tokio::test]
async fn one_answers_at_once_and_replicates_when_owners_recover() {
    let (n, peers) = node(WriteConsistency::One, &[0, 1, 2]);
    peers.set(&addr(1), Behaviour::Down);
    peers.set(&addr(2), Behaviour::Down);
    let t = Instant::now();
    put(&n, "k", "v").await.unwrap();
    assert!(t.elapsed() < Duration::from_millis(200));
    assert_eq!(
        n.engine.get(b"k", n.clock.now_ms()).as_deref(),
        Some(&b"v"[..])
    );
    // The queue retries with backoff (50, 100, 200 ms …): owners back within it get the write.
    tokio::time::sleep(Duration::from_millis(60)).await;
    peers.set(&addr(1), Behaviour::Ack);
    peers.set(&addr(2), Behaviour::Ack);
    eventually("both owners got the write once back", || {
        peers.applied(&addr(1)) == 1 && peers.applied(&addr(2)) == 1
    })
    .await;
    assert!(n.replication.stale_members(&n.ring.get()).is_empty());
}

#[tokio::test]
async fn one_reports_an_owner_that_stays_down() {
    let (n, peers) = node(WriteConsistency::One, &[0, 1, 2]);
    peers.set(&addr(2), Behaviour::Down);
    put(&n, "k", "v").await.unwrap();
    eventually("n2 reported stale after the retries", || {
        n.replication.stale_members(&n.ring.get()) == ["n2"]
    })
    .await;
    assert_eq!(peers.applied(&addr(1)), 1);
}

#[tokio::test]
async fn forwarded_writes_fail_over_and_relay_the_owners_answer() {
    // n0 owns nothing: writes go to n1, then n2.
    let (n, peers) = node(WriteConsistency::All, &[1, 2]);
    peers.set(&addr(1), Behaviour::Down);
    put(&n, "k", "v").await.unwrap();
    assert_eq!(*peers.calls.lock(), [addr(1), addr(2)]);

    peers.set(
        &addr(1),
        Behaviour::Status(
            413,
            r#"{"error":"value too large","code":"value_too_large"}"#,
        ),
    );
    match put(&n, "k", "v").await {
        Err(ClusterError::Owner {
            status: 413,
            code: ErrorCode::ValueTooLarge,
            message,
        }) => assert_eq!(message, "value too large"),
        other => panic!("{other:?}"),
    }

    peers.set(&addr(1), Behaviour::Down);
    peers.set(&addr(2), Behaviour::Down);
    assert!(matches!(
        put(&n, "k", "v").await,
        Err(ClusterError::Unreachable(m)) if m.contains("10.0.0.2:7070")
    ));

    // A peer's forwarded write is never forwarded again.
    let forwarded = Origin { forwarded: true };
    assert!(matches!(
        write(&n, b"k", set("v"), &forwarded).await,
        Err(ClusterError::NotOwner { op: Op::Write, .. })
    ));
}

#[tokio::test]
async fn forwarded_reads_fail_over_on_no_answer_but_not_on_a_refusal() {
    let (n, peers) = node(WriteConsistency::All, &[1, 2]);
    peers.set(&addr(1), Behaviour::Down);
    peers.set(&addr(2), Behaviour::Value(Some("from n2")));
    let got = read(&n, b"k", false).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"from n2"[..]));

    peers.calls.lock().clear();
    peers.set(
        &addr(1),
        Behaviour::Status(401, r#"{"error":"bad token","code":"unauthorized"}"#),
    );
    assert!(matches!(
        read(&n, b"k", false).await,
        Err(ClusterError::Owner {
            status: 401,
            code: ErrorCode::Unauthorized,
            ..
        })
    ));
    // The refusal would be the same at every owner: n2 was not asked.
    assert_eq!(*peers.calls.lock(), [addr(1)]);

    peers.set(&addr(1), Behaviour::Status(503, "busy"));
    peers.set(&addr(2), Behaviour::Down);
    assert!(matches!(
        read(&n, b"k", false).await,
        Err(ClusterError::Unreachable(_))
    ));
    assert!(matches!(
        read(&n, b"k", true).await,
        Err(ClusterError::NotOwner { op: Op::Read, .. })
    ));
}

#[tokio::test]
async fn read_modify_writes_run_on_the_first_serving_owner_and_replicate() {
    let (n, peers) = node(WriteConsistency::All, &[0, 1, 2]);
    let incr = |by| KeyOp::IncrBy { by };
    let here = Origin::default();
    assert_eq!(op(&n, b"c", incr(2), &here).await.unwrap(), Outcome::Int(2));
    assert_eq!(op(&n, b"c", incr(3), &here).await.unwrap(), Outcome::Int(5));
    assert_eq!((peers.applied(&addr(1)), peers.applied(&addr(2))), (2, 2));
    let last = peers.applied.lock()[&addr(1)].last().cloned().unwrap();
    assert_eq!(
        last.value.as_deref(),
        Some(&b"5"[..]),
        "replicas get the result"
    );
    // A refusal writes and replicates nothing.
    put(&n, "s", "text").await.unwrap();
    assert!(matches!(
        op(&n, b"s", incr(1), &here).await,
        Err(ClusterError::Op(OpError::NotInteger))
    ));
    assert_eq!(peers.applied(&addr(1)), 3);
    // Read-only ops are not replicated.
    assert_eq!(
        op(&n, b"c", KeyOp::Ttl, &here).await.unwrap(),
        Outcome::Int(-1)
    );
    assert_eq!(peers.applied(&addr(1)), 3);
    // With `all`, an owner that misses the result fails the op (the value is stored here).
    peers.set(&addr(2), Behaviour::Down);
    assert!(matches!(
        op(&n, b"c", incr(1), &here).await,
        Err(ClusterError::Replication {
            acks: 1,
            need: 2,
            ..
        })
    ));
}

#[tokio::test]
async fn read_modify_writes_go_to_the_owner_in_order_and_never_twice() {
    let (n, peers) = node(WriteConsistency::All, &[1, 2]);
    let here = Origin::default();
    assert_eq!(
        op(&n, b"k", KeyOp::IncrBy { by: 1 }, &here).await.unwrap(),
        Outcome::Int(7)
    );
    assert_eq!(*peers.calls.lock(), [addr(1)], "the first owner only");
    peers.calls.lock().clear();
    peers.set(&addr(1), Behaviour::Down);
    op(&n, b"k", KeyOp::Ttl, &here).await.unwrap();
    assert_eq!(*peers.calls.lock(), [addr(1), addr(2)], "failed over");
    peers.set(
        &addr(2),
        Behaviour::Status(
            400,
            r#"{"error":"value is not an integer or out of range","code":"not_integer"}"#,
        ),
    );
    assert!(matches!(
        op(&n, b"k", KeyOp::IncrBy { by: 1 }, &here).await,
        Err(ClusterError::Owner {
            status: 400,
            code: ErrorCode::NotInteger,
            ..
        })
    ));
    // An owner that ran the op but could not replicate it: not run again elsewhere.
    peers.calls.lock().clear();
    peers.set(
        &addr(1),
        Behaviour::Status(
            503,
            r#"{"error":"1 of 2 replica acknowledgements","code":"replication_failed"}"#,
        ),
    );
    peers.set(&addr(2), Behaviour::Ack);
    assert!(matches!(
        op(&n, b"k", KeyOp::IncrBy { by: 1 }, &here).await,
        Err(ClusterError::Owner {
            status: 503,
            code: ErrorCode::ReplicationFailed,
            ..
        })
    ));
    assert_eq!(*peers.calls.lock(), [addr(1)], "applied twice");
    let forwarded = Origin { forwarded: true };
    assert!(matches!(
        op(&n, b"k", KeyOp::Ttl, &forwarded).await,
        Err(ClusterError::NotOwner { op: Op::Write, .. })
    ));
    assert!(
        n.engine.get(b"k", n.clock.now_ms()).is_none(),
        "nothing ran here"
    );
}
