//! The trust boundary and the input bounds (issue "Security"): nothing that arrives without the
//! internal token changes a node's ring or makes it contact anyone; every bound is hit and shown
//! to change nothing. Nodes run in-process on 127.0.0.0/8 with the real server loop.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::routing::any;
use parking_lot::Mutex;
use ringcache_node::clock::SystemClock;
use ringcache_node::config::NodeConfig;
use ringcache_node::http::router;
use ringcache_node::node::SharedNode;
use ringcache_node::serve::{Limits, serve};
use ringcache_node::server::build_state;
use ringcache_ring::{Member, MemberState, Pending, RingDoc};
use support::{get_json, send_put, wait_ok};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const INTERNAL: &str = "internal-secret";
const CLIENT: &str = "client-secret";

/// A node serving on a fresh loopback port with `ring` (its own member must be `id`).
struct Node {
    addr: String,
    state: SharedNode,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn listener(ip: &str) -> (TcpListener, String) {
    let l = TcpListener::bind(format!("{ip}:0")).await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

async fn start_node(
    l: TcpListener,
    addr: &str,
    ring: Option<RingDoc>,
    limits: Limits,
    f: impl FnOnce(&mut NodeConfig),
) -> Node {
    let mut cfg = NodeConfig::for_listen(addr.parse().unwrap());
    cfg.partitions = 8;
    cfg.node_id = "self".into();
    cfg.internal_token = Some(INTERNAL.into());
    cfg.auth_token = Some(CLIENT.into());
    f(&mut cfg);
    let state = build_state(&cfg, Arc::new(SystemClock)).unwrap();
    if let Some(r) = ring {
        state.ring.update(r).unwrap();
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        l,
        router(state.clone()),
        async {
            let _ = stopped.await;
        },
        limits,
        None,
        Some(state.metrics.clone()),
    ));
    Node {
        addr: addr.to_string(),
        state,
        _stop: stop,
    }
}

/// One request a [`Recorder`] received: method, path, `authorization`, `x-ringcache-internal-token`.
type Seen = (String, String, Option<String>, Option<String>);

/// What a [`Recorder`] answers to a path: status and body.
type Reply = Arc<dyn Fn(&str) -> (u16, Vec<u8>) + Send + Sync>;

/// A server that records every request it receives (method, path, authorization headers).
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn serve(&self, l: TcpListener, reply: Reply) {
        let me = self.clone();
        let app = axum::Router::new().fallback(any(move |req: Request| {
            let (me, reply) = (me.clone(), reply.clone());
            async move {
                let h = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                me.seen.lock().push((
                    req.method().to_string(),
                    req.uri().path().to_string(),
                    h("authorization"),
                    h("x-ringcache-internal-token"),
                ));
                let (status, body) = reply(req.uri().path());
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }));
        tokio::spawn(ringcache_node::server::serve_router(
            l,
            app,
            std::future::pending(),
        ));
    }

    fn count(&self) -> usize {
        self.seen.lock().len()
    }
}

fn member(id: &str, addr: &str) -> Member {
    Member {
        id: id.into(),
        addr: addr.into(),
        state: MemberState::Up,
        incarnation: None,
    }
}

fn ring(epoch: u64, members: Vec<Member>) -> RingDoc {
    let n = members.len() as u32;
    RingDoc {
        version: 1,
        epoch,
        partitions: 8,
        replication_factor: 1,
        hash: "xxh3_64".into(),
        members,
        table: (0..8u32).map(|p| vec![p % n]).collect(),
        pending: None,
    }
}

fn http() -> reqwest::Client {
    ringcache_node::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap()
}

/// Every route of the node, with a body where one is expected.
fn routes() -> Vec<(reqwest::Method, &'static str)> {
    use reqwest::Method as M;
    vec![
        (M::GET, "/v1/keys/k"),
        (M::PUT, "/v1/keys/k"),
        (M::DELETE, "/v1/keys/k"),
        (M::POST, "/v1/batch"),
        (M::GET, "/v1/ring"),
        (M::GET, "/v1/stats"),
        (M::GET, "/healthz"),
        (M::GET, "/readyz"),
        (M::GET, "/metrics"),
        (M::PUT, "/internal/v1/ring"),
        (M::GET, "/internal/v1/ring"),
        (M::GET, "/internal/v1/migration"),
        (M::GET, "/internal/v1/partitions/0"),
        (M::POST, "/internal/v1/apply"),
        (M::POST, "/internal/v1/get"),
        (M::GET, "/no/such/route"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_epoch_hint_changes_nothing_and_contacts_no_one() {
    // The attacker's server, on an address no ring names.
    let (al, attacker_addr) = listener("127.0.0.99").await;
    let attacker = Recorder::default();
    let evil = ring(1000, vec![member("evil", &attacker_addr)]);
    let evil_json = serde_json::to_vec(&evil).unwrap();
    attacker
        .serve(al, Arc::new(move |_| (200, evil_json.clone())))
        .await;
    // A real member of the ring, to prove the hint is acted on when it names one.
    let (pl, peer_addr) = listener("127.0.0.1").await;
    let (nl, node_addr) = listener("127.0.0.1").await;
    let current = ring(
        1,
        vec![member("self", &node_addr), member("peer", &peer_addr)],
    );
    let mut newer = current.clone();
    newer.epoch = 2;
    let newer_json = serde_json::to_vec(&newer).unwrap();
    let peer = Recorder::default();
    peer.serve(pl, Arc::new(move |_| (200, newer_json.clone())))
        .await;
    let node = start_node(nl, &node_addr, Some(current), Limits::default(), |_| {}).await;

    let http = http();
    // The request of the issue, then the same forged headers on every route, without any token.
    for (method, path) in routes() {
        let r = http
            .request(method.clone(), format!("http://{}{path}", node.addr))
            .header("x-ringcache-epoch", "1000")
            .header("x-ringcache-origin", &attacker_addr)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(
            r.status().as_u16() < 500 || r.status() == 503,
            "{method} {path}"
        );
    }
    // The control: the same hint naming a member of the ring makes the node fetch from it.
    http.get(format!("http://{}/healthz", node.addr))
        .header("x-ringcache-epoch", "2")
        .header("x-ringcache-origin", &peer_addr)
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.state.ring.epoch() != 2 {
        assert!(
            Instant::now() < deadline,
            "the member's ring was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        attacker.count(),
        0,
        "the node contacted the attacker's address"
    );
    // The fetch from the member used the internal token, never the client's.
    let seen = peer.seen.lock().clone();
    assert!(!seen.is_empty());
    for (_, path, auth, internal) in &seen {
        assert_eq!(path, "/internal/v1/ring");
        let token = auth
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .or(internal.as_deref());
        assert_eq!(token, Some(INTERNAL), "{auth:?} {internal:?}");
    }
    // And nothing but the member's valid ring was installed.
    assert_eq!(node.state.ring.get().doc, newer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_carries_the_internal_token_not_the_clients() {
    let (pl, peer_addr) = listener("127.0.0.1").await;
    let peer = Recorder::default();
    peer.serve(pl, Arc::new(|_| (204, Vec::new()))).await;
    let (nl, node_addr) = listener("127.0.0.1").await;
    // The peer owns every partition: every write is forwarded to it.
    let mut r = ring(
        1,
        vec![member("self", &node_addr), member("peer", &peer_addr)],
    );
    r.table = vec![vec![1]; 8];
    let node = start_node(nl, &node_addr, Some(r), Limits::default(), |_| {}).await;
    let resp = http()
        .put(format!("http://{}/v1/keys/some-key", node.addr))
        .bearer_auth(CLIENT)
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let seen = peer.seen.lock().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (method, path, auth, internal) = &seen[0];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("PUT", "/v1/keys/some-key")
    );
    for h in [auth, internal].into_iter().flatten() {
        assert!(!h.contains(CLIENT), "the client token left the node: {h}");
    }
    assert_eq!(auth.as_deref(), Some(format!("Bearer {INTERNAL}").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_token_is_accepted_on_v1_so_forwarded_requests_pass_auth() {
    let (nl, node_addr) = listener("127.0.0.1").await;
    let node = start_node(nl, &node_addr, None, Limits::default(), |_| {}).await;
    let http = http();
    let url = format!("http://{}/v1/keys/k", node.addr);
    assert_eq!(http.put(&url).body("v").send().await.unwrap().status(), 401);
    assert_eq!(
        http.put(&url)
            .bearer_auth("wrong")
            .body("v")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.put(&url)
            .bearer_auth(INTERNAL)
            .body("v")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        http.get(&url)
            .bearer_auth(CLIENT)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn status_of(
    http: &reqwest::Client,
    rb: reqwest::RequestBuilder,
) -> (u16, serde_json::Value) {
    let _ = http;
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn record(key: &[u8], version: u64, value: &[u8]) -> bytes::Bytes {
    ringcache_node::wire::encode_all(&[ringcache_node::engine::Record {
        key: bytes::Bytes::copy_from_slice(key),
        version,
        expires_at: 0,
        value: Some(bytes::Bytes::copy_from_slice(value)),
        kind: ringcache_node::engine::Kind::String,
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_writes_over_max_value_size_or_from_the_future_store_nothing() {
    let (nl, node_addr) = listener("127.0.0.1").await;
    let node = start_node(nl, &node_addr, None, Limits::default(), |c| {
        c.max_value_size = 1024;
    })
    .await;
    let http = http();
    let apply = |body: bytes::Bytes| {
        http.post(format!("http://{}/internal/v1/apply", node.addr))
            .bearer_auth(INTERNAL)
            .body(body)
    };
    let now = ringcache_node::engine::hlc::compose(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        0,
    );
    let (status, body) = status_of(&http, apply(record(b"big", now, &[7u8; 1025]))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("value_too_large")),
        "{body}"
    );
    let (status, body) = status_of(&http, apply(record(b"future", u64::MAX, b"v"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("future_version")),
        "{body}"
    );
    let stats = node.state.engine.stats();
    assert_eq!((stats.items, stats.bytes), (0, 0), "nothing stored");
    // The clock did not jump to the hostile version: a new write still gets a normal version.
    let (status, _) = status_of(&http, apply(record(b"ok", now, &[1u8; 1024]))).await;
    assert_eq!(status, 204);
    assert!(node.state.engine.hlc().last() < now + (10_000 << 16));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_over_the_size_bound_and_a_second_ring_of_the_same_epoch_are_refused() {
    let (nl, node_addr) = listener("127.0.0.1").await;
    let current = ring(3, vec![member("self", &node_addr)]);
    let node = start_node(
        nl,
        &node_addr,
        Some(current.clone()),
        Limits::default(),
        |_| {},
    )
    .await;
    let http = http();
    let put = |body: Vec<u8>| {
        http.put(format!("http://{}/internal/v1/ring", node.addr))
            .bearer_auth(INTERNAL)
            .body(body)
    };
    let huge = vec![b' '; ringcache_node::cluster::peers::MAX_RING_BYTES + 1];
    // Refused from its declared length: 413, or the connection closed while the client was
    // still sending the rest (the node reads no more than its limit).
    match put(huge).send().await {
        Ok(r) => assert_eq!(r.status(), 413),
        Err(e) => assert!(e.is_request(), "{e}"),
    }
    assert_eq!(node.state.ring.get().doc, current);
    let mut other = current.clone();
    other.members[0].addr = "127.0.0.1:1".into();
    let (status, body) = status_of(&http, put(serde_json::to_vec(&other).unwrap())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("epoch_conflict")),
        "{body}"
    );
    assert_eq!(
        node.state
            .metrics
            .ring_conflicts
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The same document again is fine; the ring never changed.
    assert_eq!(
        put(serde_json::to_vec(&current).unwrap())
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(node.state.ring.get().doc, current);
}

/// Reads until the server closes the connection (Ok) or `within` passes (Err).
async fn closed_within(s: &mut TcpStream, within: Duration) -> Result<Vec<u8>, ()> {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    loop {
        let mut buf = [0u8; 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return Err(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_stalled_bodies_are_cut_off_and_store_nothing() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        body_idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (nl, node_addr) = listener("127.0.0.1").await;
    let node = start_node(nl, &node_addr, None, limits, |c| c.auth_token = None).await;
    // Headers that never end.
    let mut s = TcpStream::connect(&node.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(5)).await.is_ok(),
        "a connection sending headers forever was kept"
    );
    // A body that stops halfway.
    let mut s = TcpStream::connect(&node.addr).await.unwrap();
    s.write_all(
        b"PUT /v1/keys/stalled HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    let answer = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("a stalled body was waited for forever");
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.starts_with("HTTP/1.1 204"), "{text}");
    assert_eq!(node.state.engine.stats().items, 0, "nothing stored");
    // The node still serves.
    let after = format!("http://{}/v1/keys/after", node.addr);
    assert_eq!(send_put(&http(), after, "v").await.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let (nl, node_addr) = listener("127.0.0.1").await;
    let node = start_node(nl, &node_addr, None, limits, |c| c.auth_token = None).await;
    // Two idle connections hold both slots (each proven served by one request).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&node.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(&node.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let answer = closed_within(&mut third, Duration::from_secs(5))
        .await
        .expect("the connection over the limit was kept open");
    assert!(
        answer.is_empty(),
        "served over the limit: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(
        node.state
            .metrics
            .connections_refused
            .load(Ordering::Relaxed),
        1
    );
    // A slot freed is a slot served.
    drop(held.pop());
    let healthz = format!("http://{}/healthz", node.addr);
    wait_ok(&http(), &healthz, 5, "no slot after one was freed").await;
}

/// A source serving partition pulls as `body` says, to a node that gains every partition.
async fn gainer_pulling_from(
    source_body: Reply,
    f: impl FnOnce(&mut NodeConfig),
) -> (Node, Recorder) {
    let (sl, source_addr) = listener("127.0.0.1").await;
    let source = Recorder::default();
    source.serve(sl, source_body).await;
    (gainer_of_every_partition(&source_addr, f).await, source)
}

/// A joining node (configured by `f`) whose pending table moves every partition from the member
/// at `source_addr` to it, with its migration running.
async fn gainer_of_every_partition(source_addr: &str, f: impl FnOnce(&mut NodeConfig)) -> Node {
    let (nl, node_addr) = listener("127.0.0.1").await;
    let mut r = ring(
        2,
        vec![member("source", source_addr), member("self", &node_addr)],
    );
    r.members[1].state = MemberState::Joining;
    r.table = vec![vec![0]; 8];
    r.pending = Some(Pending {
        table: vec![vec![1]; 8],
    });
    let node = start_node(nl, &node_addr, None, Limits::default(), f).await;
    node.state.ring.update(r).unwrap();
    tokio::spawn(ringcache_node::cluster::migration::run(node.state.clone()));
    node
}

/// Waits until `node`'s migration reports an error containing `needle` (fails with `what` after
/// 20 s); returns that status.
async fn wait_migration_error(
    node: &Node,
    needle: &str,
    what: &str,
) -> ringcache_node::cluster::migration::MigrationStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = ringcache_node::cluster::migration::status(&node.state);
        if st.error.as_deref().is_some_and(|e| e.contains(needle)) {
            return st;
        }
        assert!(Instant::now() < deadline, "{what}: {st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn healthz_settled(path: &str) -> Option<(u16, Vec<u8>)> {
    (path == "/healthz").then(|| {
        (
            200,
            br#"{"status":"ok","epoch":2,"oldestWriteEpoch":null}"#.to_vec(),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_value_over_max_value_size_is_refused_and_nothing_is_applied() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let stream = record(
        b"huge",
        ringcache_node::engine::hlc::compose(now, 0),
        &[0u8; 4096],
    )
    .to_vec();
    let (node, source) = gainer_pulling_from(
        Arc::new(move |path| healthz_settled(path).unwrap_or((200, stream.clone()))),
        |c| c.max_value_size = 1024,
    )
    .await;
    let st = wait_migration_error(&node, "maximum value size", "no error reported").await;
    assert!(!st.done);
    assert!(source.count() > 0);
    assert_eq!(node.state.engine.stats().items, 0, "nothing applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_from_a_source_that_stops_sending_fails_instead_of_hanging() {
    // The source answers headers and half a record, then nothing more.
    let (sl, source_addr) = listener("127.0.0.1").await;
    let served = Arc::new(AtomicUsize::new(0));
    {
        let served = served.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = sl.accept().await else {
                    return;
                };
                let served = served.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    if req.starts_with("GET /healthz") {
                        let body = r#"{"status":"ok","epoch":2,"oldestWriteEpoch":null}"#;
                        let _ = s
                            .write_all(
                                format!(
                                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            )
                            .await;
                    } else {
                        served.fetch_add(1, Ordering::Relaxed);
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n\x05\x00\x00\x00ab")
                            .await;
                        // Then silence, with the connection open.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                });
            }
        });
    }
    let node = gainer_of_every_partition(&source_addr, |c| {
        c.body_idle_timeout_ms = 500;
    })
    .await;
    wait_migration_error(&node, "no data for", "the stalled pull was never cut off").await;
    assert!(served.load(Ordering::Relaxed) > 0);
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Reads `resp` slowly (a reader far slower than the node) for at most `max` bytes.
async fn read_slowly(mut resp: reqwest::Response, max: usize) -> usize {
    let mut got = 0;
    while got < max {
        match resp.chunk().await {
            Ok(Some(c)) => got += c.len(),
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_stays_under_max_memory_plus_64_mib_under_hostile_bodies() {
    const MIB: u64 = 1 << 20;
    let dir = std::env::temp_dir().join(format!("rc-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), INTERNAL).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache-node"))
        .args(["--listen", &addr, "--node-id", "solo", "--partitions", "16"])
        .args(["--max-memory", "64Mi", "--max-value-size", "1Mi"])
        .arg("--internal-token-file")
        .arg(dir.join("token"))
        .env_remove("RINGCACHE_RING_FILE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let http = http();
    let base = format!("http://{addr}");
    let healthz = format!("{base}/healthz");
    wait_ok(&http, &healthz, 20, "node did not start").await;
    // 48 MiB of 1 MiB values: most of maxMemory.
    let value = vec![b'v'; (MIB - 300) as usize];
    for i in 0..48 {
        let r = http
            .put(format!("{base}/v1/keys/big-{i}"))
            .body(value.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "big-{i}");
    }
    // Peak RSS from here on.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();

    let mut tasks = Vec::new();
    // Batches of 10,000 gets of a 1 MiB value (10 GB of answer each), read slowly then dropped.
    for _ in 0..8 {
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let ops: Vec<serde_json::Value> = (0..10_000)
                .map(|_| serde_json::json!({"op": "get", "key": "big-0"}))
                .collect();
            if let Ok(r) = http
                .post(format!("{base}/v1/batch"))
                .json(&serde_json::json!({ "ops": ops }))
                .send()
                .await
            {
                read_slowly(r, 40 << 20).await;
            }
        }));
    }
    // Replica-write bodies of 16 MiB holding values over maxValueSize, and garbage.
    for i in 0..8u8 {
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let body = if i % 2 == 0 {
                record(b"hostile", 1, &vec![i; 2 << 20]).to_vec()
            } else {
                vec![i; 16 << 20]
            };
            let r = http
                .post(format!("{base}/internal/v1/apply"))
                .bearer_auth(INTERNAL)
                .body(body)
                .send()
                .await;
            if let Ok(r) = r {
                assert!(
                    r.status().is_client_error() || r.status() == 503,
                    "{}",
                    r.status()
                );
            }
        }));
    }
    // Partition pulls, every partition at once, read slowly.
    for p in 0..16 {
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            if let Ok(r) = http
                .get(format!("{base}/internal/v1/partitions/{p}"))
                .bearer_auth(INTERNAL)
                .send()
                .await
            {
                read_slowly(r, 64 << 20).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let peak = proc_kib(pid, "VmHWM") * 1024;
    let stats = get_json(&http, format!("{base}/v1/stats")).await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        stats["items"], 48,
        "the hostile bodies changed the store: {stats}"
    );
    assert!(
        peak < 64 * MIB + 64 * MIB,
        "peak RSS {} MiB with maxMemory 64 MiB",
        peak / MIB
    );
    println!(
        "peak RSS under hostile bodies: {} MiB (maxMemory 64 MiB)",
        peak / MIB
    );
}
