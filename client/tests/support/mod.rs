//! Fake ringcache nodes for the client's tests: axum servers on 127.0.0.1 ephemeral ports that
//! serve a ring document and a key/value map shared by the whole fake cluster (standing in for
//! replication), log every request they get, and can be told to fail with 503.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use parking_lot::Mutex;
use ringcache_client::EPOCH_HEADER;
use ringcache_ring::{HASH_XXH3_64, Member, MemberState, RingDoc};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Values above this get 413, so that a definitive (non-retryable) error can be provoked.
pub const FAKE_MAX_VALUE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: Method,
    pub key: String,
    pub query: Option<String>,
    pub auth: Option<String>,
}

pub struct NodeState {
    pub id: String,
    /// The ring this node serves at `/v1/ring` and whose epoch it puts in every response header.
    pub ring: Mutex<RingDoc>,
    store: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    /// Answer 503 to every key request (the ring is still served).
    pub failing: AtomicBool,
    pub token: Option<String>,
    pub log: Mutex<Vec<Logged>>,
    pub ring_fetches: AtomicUsize,
    pub ring_auth: Mutex<Vec<Option<String>>>,
}

impl NodeState {
    pub fn keys_seen(&self, method: &Method, key: &str) -> usize {
        self.log
            .lock()
            .iter()
            .filter(|l| l.method == *method && l.key == key)
            .count()
    }

    pub fn requests(&self) -> usize {
        self.log.lock().len()
    }
}

pub struct FakeCluster {
    pub nodes: Vec<Arc<NodeState>>,
    pub addrs: Vec<SocketAddr>,
    pub store: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeCluster {
    /// `n` nodes, `partitions` partitions, RF 2 (1 for a single node), table `[(p+1) % n, (p+2) % n]`.
    pub async fn start(n: usize, partitions: u32) -> FakeCluster {
        Self::start_with(n, partitions, None, &[]).await
    }

    /// As `start`, with a token every request must carry, and extra members (id, addr) appended
    /// to the ring that no fake node serves (to stand for dead pods).
    pub async fn start_with(
        n: usize,
        partitions: u32,
        token: Option<&str>,
        extra: &[(String, String)],
    ) -> FakeCluster {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..n {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind loopback");
            addrs.push(l.local_addr().expect("local addr"));
            listeners.push(l);
        }
        let mut members: Vec<Member> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| Member {
                id: format!("fake-{i}"),
                addr: a.to_string(),
                state: MemberState::Up,
                incarnation: None,
            })
            .collect();
        for (id, addr) in extra {
            members.push(Member {
                id: id.clone(),
                addr: addr.clone(),
                state: MemberState::Up,
                incarnation: None,
            });
        }
        let total = members.len();
        let rf = total.min(2);
        let table = (0..partitions as usize)
            // Offset by one so that owner order differs from the client's fallback rotation (which
            // starts at member p % n): a test cannot pass by falling back to the right node.
            .map(|p| (0..rf).map(|r| ((p + 1 + r) % total) as u32).collect())
            .collect();
        let ring = RingDoc {
            version: 1,
            epoch: 1,
            partitions,
            replication_factor: rf as u32,
            hash: HASH_XXH3_64.into(),
            members,
            table,
            pending: None,
        };
        ring.validate().expect("fake ring is valid");
        let store = Arc::new(Mutex::new(HashMap::new()));
        let mut nodes = Vec::new();
        let mut tasks = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let state = Arc::new(NodeState {
                id: format!("fake-{i}"),
                ring: Mutex::new(ring.clone()),
                store: Arc::clone(&store),
                failing: AtomicBool::new(false),
                token: token.map(str::to_string),
                log: Mutex::new(Vec::new()),
                ring_fetches: AtomicUsize::new(0),
                ring_auth: Mutex::new(Vec::new()),
            });
            let app = router(Arc::clone(&state));
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
            nodes.push(state);
        }
        FakeCluster {
            nodes,
            addrs,
            store,
            tasks,
        }
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.addrs[i])
    }

    pub fn ring(&self) -> RingDoc {
        self.nodes[0].ring.lock().clone()
    }

    /// Gives every node a new ring (as the operator's push would).
    pub fn set_ring(&self, ring: &RingDoc) {
        ring.validate().expect("test ring is valid");
        for n in &self.nodes {
            *n.ring.lock() = ring.clone();
        }
    }

    /// Index of the fake node serving member `member` of the ring.
    pub fn node_of_member(&self, member: u32) -> Option<usize> {
        let ring = self.ring();
        let addr = &ring.members.get(member as usize)?.addr;
        self.addrs.iter().position(|a| &a.to_string() == addr)
    }

    /// A key (`prefix-N`) whose current owners are exactly `owners`, primary first.
    pub fn key_owned_by(&self, prefix: &str, owners: &[u32]) -> String {
        let ring = self.ring();
        (0..100_000)
            .map(|i| format!("{prefix}-{i}"))
            .find(|k| ring.owners(ring.partition_of(k.as_bytes())) == owners)
            .expect("some key maps to every partition")
    }

    pub fn total_requests(&self) -> usize {
        self.nodes.iter().map(|n| n.requests()).sum()
    }
}

/// An address on loopback that refuses connections: a port bound and released at once.
pub async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = l.local_addr().expect("local addr");
    drop(l);
    addr.to_string()
}

fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/v1/keys/{key}", get(get_key).put(put_key).delete(del_key))
        .route("/v1/ring", get(ring))
        .route("/v1/stats", get(stats))
        .with_state(state)
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        serde_json::json!({ "error": message, "code": code }).to_string(),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Every response carries the node's ring epoch, as the real node does.
fn finish(n: &NodeState, mut resp: Response) -> Response {
    let epoch = n.ring.lock().epoch;
    if let Ok(v) = HeaderValue::from_str(&epoch.to_string()) {
        resp.headers_mut().insert(EPOCH_HEADER, v);
    }
    resp
}

/// Logs the request and answers 401 / 503 when the node is set up to.
fn gate(
    n: &NodeState,
    method: Method,
    key: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Option<Response> {
    let auth = bearer(headers);
    n.log.lock().push(Logged {
        method,
        key: key.to_string(),
        query: query.get("ttl").map(|t| format!("ttl={t}")),
        auth: auth.clone(),
    });
    if let Some(token) = &n.token
        && auth.as_deref() != Some(format!("Bearer {token}").as_str())
    {
        return Some(json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        ));
    }
    if n.failing.load(Ordering::SeqCst) {
        return Some(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            &format!("{} is failing on purpose", n.id),
        ));
    }
    None
}

async fn get_key(
    State(n): State<Arc<NodeState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&n, Method::GET, &key, &q, &headers) {
        return finish(&n, r);
    }
    let value = n.store.lock().get(&key).cloned();
    let resp = match value {
        Some(v) => (StatusCode::OK, v).into_response(),
        None => json_error(StatusCode::NOT_FOUND, "not_found", "no such key"),
    };
    finish(&n, resp)
}

async fn put_key(
    State(n): State<Arc<NodeState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = gate(&n, Method::PUT, &key, &q, &headers) {
        return finish(&n, r);
    }
    if body.len() > FAKE_MAX_VALUE {
        return finish(
            &n,
            json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "value_too_large",
                &format!("value is {} bytes, max {FAKE_MAX_VALUE}", body.len()),
            ),
        );
    }
    n.store.lock().insert(key, body.to_vec());
    finish(&n, StatusCode::NO_CONTENT.into_response())
}

async fn del_key(
    State(n): State<Arc<NodeState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = gate(&n, Method::DELETE, &key, &q, &headers) {
        return finish(&n, r);
    }
    n.store.lock().remove(&key);
    finish(&n, StatusCode::NO_CONTENT.into_response())
}

async fn ring(State(n): State<Arc<NodeState>>, headers: HeaderMap) -> Response {
    n.ring_fetches.fetch_add(1, Ordering::SeqCst);
    let auth = bearer(&headers);
    n.ring_auth.lock().push(auth.clone());
    if let Some(token) = &n.token
        && auth.as_deref() != Some(format!("Bearer {token}").as_str())
    {
        return finish(
            &n,
            json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            ),
        );
    }
    let body = n.ring.lock().to_json_pretty();
    finish(
        &n,
        (StatusCode::OK, [("content-type", "application/json")], body).into_response(),
    )
}

async fn stats(State(n): State<Arc<NodeState>>) -> Response {
    let epoch = n.ring.lock().epoch;
    let items = n.store.lock().len();
    let requests = n.requests();
    let body = serde_json::json!({
        "items": items,
        "bytes": items * 100,
        "hits": requests,
        "misses": 0,
        "evictions": 0,
        "partitionsOwned": 8,
        "epoch": epoch,
    });
    finish(
        &n,
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response(),
    )
}
