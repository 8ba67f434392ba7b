//! The public and internal HTTP API in-process (tower `oneshot`), with a hand-moved clock.

mod support;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ringcache_node::clock::ManualClock;
use ringcache_node::config::NodeConfig;
use ringcache_node::engine::{ENTRY_OVERHEAD, EvictionPolicy};
use ringcache_node::http::router;
use ringcache_node::node::SharedNode;
use ringcache_node::server::build_state;
use ringcache_ring::{Member, MemberState, RingDoc};
use serde_json::Value;
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;

struct App {
    state: SharedNode,
    clock: Arc<ManualClock>,
}

impl App {
    fn with(f: impl FnOnce(&mut NodeConfig)) -> App {
        let mut cfg = NodeConfig::for_listen("127.0.0.1:7070".parse().unwrap());
        cfg.partitions = 64;
        f(&mut cfg);
        let clock = Arc::new(ManualClock::new(T0));
        let state = build_state(&cfg, clock.clone()).expect("state");
        App { state, clock }
    }

    fn new() -> App {
        App::with(|_| {})
    }

    fn router(&self) -> Router {
        router(self.state.clone())
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        support::oneshot(self.router(), req).await
    }

    async fn send(&self, method: &str, uri: &str, body: impl Into<Body>) -> (StatusCode, Vec<u8>) {
        self.call(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    async fn get(&self, uri: &str) -> (StatusCode, Vec<u8>) {
        self.send("GET", uri, Body::empty()).await
    }

    async fn put(&self, uri: &str, body: impl Into<Body>) -> StatusCode {
        self.send("PUT", uri, body).await.0
    }

    /// `PUT uri` that must be stored (204).
    async fn set(&self, uri: &str, body: impl Into<Body>) {
        assert_eq!(
            self.put(uri, body).await,
            StatusCode::NO_CONTENT,
            "PUT {uri}"
        );
    }
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

fn error_code(body: &[u8]) -> String {
    let v = json(body);
    assert!(v["error"].is_string(), "error message missing: {v}");
    v["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn put_get_delete_roundtrip() {
    let app = App::new();
    app.set("/v1/keys/user%3A1", "hello").await;
    let (st, body) = app.get("/v1/keys/user%3A1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(body, b"hello");
    // The percent-decoded key is what is stored.
    assert!(app.state.engine.get(b"user:1", T0).is_some());
    assert_eq!(
        app.send("DELETE", "/v1/keys/user%3A1", Body::empty())
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (st, body) = app.get("/v1/keys/user%3A1").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    // Deleting an absent key is still 204.
    assert_eq!(
        app.send("DELETE", "/v1/keys/never", Body::empty()).await.0,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn delete_leaves_a_tombstone() {
    let app = App::new();
    app.put("/v1/keys/k", "v").await;
    let before = app.state.engine.get_record(b"k", T0).unwrap();
    app.send("DELETE", "/v1/keys/k", Body::empty()).await;
    let tomb = app.state.engine.get_record(b"k", T0).unwrap();
    assert!(tomb.is_tombstone());
    assert!(tomb.version > before.version);
    // An older copy arriving later (replica, migration) does not bring the key back.
    app.state.engine.apply(&before, T0).unwrap();
    assert_eq!(app.get("/v1/keys/k").await.0, StatusCode::NOT_FOUND);
    let stats = json(&app.get("/v1/stats").await.1);
    assert_eq!(stats["items"], 0);
    assert_eq!(stats["tombstones"], 1);
}

#[tokio::test]
async fn bad_keys_are_400_and_store_nothing() {
    let app = App::new();
    let (st, body) = app.send("PUT", "/v1/keys/", "v").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad_key");
    let long = "k".repeat(251);
    let (st, body) = app.send("PUT", &format!("/v1/keys/{long}"), "v").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad_key");
    assert_eq!(
        app.get(&format!("/v1/keys/{long}")).await.0,
        StatusCode::BAD_REQUEST
    );
    let ok = "k".repeat(250);
    app.set(&format!("/v1/keys/{ok}"), "v").await;
    assert_eq!(app.state.engine.stats().items, 1);
}

#[tokio::test]
async fn bad_ttl_is_400() {
    let app = App::new();
    for q in ["ttl=abc", "ttl=0s", "ttl=5w", "ttl="] {
        let (st, body) = app.send("PUT", &format!("/v1/keys/k?{q}"), "v").await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(error_code(&body), "bad_ttl");
    }
    assert_eq!(app.state.engine.stats().items, 0);
}

#[tokio::test]
async fn ttl_expires_keys() {
    let app = App::new();
    app.set("/v1/keys/a?ttl=500ms", "1").await;
    app.set("/v1/keys/b?ttl=1m", "2").await;
    app.set("/v1/keys/c?ttl=30s", "3").await;
    app.clock.advance(499);
    assert_eq!(app.get("/v1/keys/a").await.0, StatusCode::OK);
    app.clock.advance(1);
    assert_eq!(app.get("/v1/keys/a").await.0, StatusCode::NOT_FOUND);
    app.clock.advance(30_000);
    // Active sweep removes c without anyone reading it.
    let swept = app.state.engine.sweep(app.clock_now());
    assert_eq!(swept.expired, 1);
    assert_eq!(app.get("/v1/keys/b").await.0, StatusCode::OK);
    let stats = json(&app.get("/v1/stats").await.1);
    assert_eq!(stats["items"], 1);
    assert_eq!(stats["expired"], 2);
}

impl App {
    fn clock_now(&self) -> u64 {
        use ringcache_node::clock::Clock;
        self.clock.now_ms()
    }
}

#[tokio::test]
async fn value_over_max_value_size_is_413_and_nothing_stored() {
    let app = App::with(|c| c.max_value_size = 1024);
    app.set("/v1/keys/k", vec![0u8; 1024]).await;
    let (st, body) = app.send("PUT", "/v1/keys/big", vec![0u8; 1025]).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(&body), "value_too_large");
    // Also without a Content-Length (streamed body).
    let stream =
        futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(vec![
            1u8;
            2000
        ]))]);
    let (st, _) = app
        .send("PUT", "/v1/keys/big2", Body::from_stream(stream))
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.get("/v1/keys/big").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.state.engine.stats().items, 1);
}

fn small_memory(c: &mut NodeConfig, policy: EvictionPolicy) {
    // Room for exactly three entries of key "kN" + 10-byte value.
    c.max_memory = 3 * (2 + 10 + ENTRY_OVERHEAD);
    c.eviction = policy;
}

#[tokio::test]
async fn eviction_none_gives_507_when_full() {
    let app = App::with(|c| small_memory(c, EvictionPolicy::None));
    for k in ["k1", "k2", "k3"] {
        app.set(&format!("/v1/keys/{k}"), "0123456789").await;
    }
    let (st, body) = app.send("PUT", "/v1/keys/k4", "0123456789").await;
    assert_eq!(st, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(error_code(&body), "insufficient_storage");
    assert_eq!(app.get("/v1/keys/k4").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/keys/k1").await.0, StatusCode::OK);
}

#[tokio::test]
async fn lru_eviction_under_max_memory_evicts_least_recent() {
    let app = App::with(|c| small_memory(c, EvictionPolicy::Lru));
    for k in ["k1", "k2", "k3"] {
        app.put(&format!("/v1/keys/{k}"), "0123456789").await;
    }
    app.get("/v1/keys/k1").await;
    app.set("/v1/keys/k4", "0123456789").await;
    assert_eq!(app.get("/v1/keys/k2").await.0, StatusCode::NOT_FOUND);
    for k in ["k1", "k3", "k4"] {
        assert_eq!(
            app.get(&format!("/v1/keys/{k}")).await.0,
            StatusCode::OK,
            "{k}"
        );
    }
    let stats = json(&app.get("/v1/stats").await.1);
    assert_eq!(stats["evictions"], 1);
    assert!(stats["bytes"].as_u64().unwrap() <= stats["maxMemory"].as_u64().unwrap());
}

#[tokio::test]
async fn lfu_eviction_under_max_memory_evicts_least_frequent() {
    let app = App::with(|c| small_memory(c, EvictionPolicy::Lfu));
    for k in ["k1", "k2", "k3"] {
        app.put(&format!("/v1/keys/{k}"), "0123456789").await;
    }
    for _ in 0..3 {
        app.get("/v1/keys/k1").await;
        app.get("/v1/keys/k3").await;
    }
    app.get("/v1/keys/k2").await;
    app.set("/v1/keys/k4", "0123456789").await;
    assert_eq!(app.get("/v1/keys/k2").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/keys/k1").await.0, StatusCode::OK);
    assert_eq!(app.get("/v1/keys/k3").await.0, StatusCode::OK);
}

#[tokio::test]
async fn batch_runs_ops_in_order_with_per_op_results() {
    let app = App::new();
    app.put("/v1/keys/pre", vec![0xffu8, 0x00]).await;
    let req = serde_json::json!({"ops": [
        {"op": "set", "key": "a", "value": "alpha"},
        {"op": "set", "key": "b", "valueBase64": "//79", "ttl": "1s"},
        {"op": "get", "key": "a"},
        {"op": "get", "key": "b"},
        {"op": "get", "key": "pre"},
        {"op": "del", "key": "a"},
        {"op": "get", "key": "a"},
        {"op": "get", "key": ""},
        {"op": "set", "key": "c", "value": "x", "ttl": "nope"},
        {"op": "set", "key": "d"}
    ]});
    let (st, body) = app.send("POST", "/v1/batch", req.to_string()).await;
    assert_eq!(st, StatusCode::OK);
    let r = json(&body)["results"].clone();
    assert_eq!(r[0]["status"], 204);
    assert_eq!(r[1]["status"], 204);
    assert_eq!(r[2]["value"], "alpha");
    assert_eq!(r[3]["valueBase64"], "//79");
    assert_eq!(r[4]["valueBase64"], "/wA=");
    assert_eq!(r[5]["status"], 204);
    assert_eq!(r[6]["status"], 404);
    assert_eq!(
        (r[7]["status"].clone(), r[7]["code"].clone()),
        (400.into(), "bad_key".into())
    );
    assert_eq!(r[8]["code"], "bad_ttl");
    assert_eq!(r[9]["code"], "bad_value");
    assert_eq!(app.get("/v1/keys/b").await.1, vec![0xffu8, 0xfe, 0xfd]);
    app.clock.advance(1_000);
    assert_eq!(app.get("/v1/keys/b").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn batch_rejects_malformed_json_and_oversized_values() {
    let app = App::with(|c| c.max_value_size = 4);
    let (st, body) = app.send("POST", "/v1/batch", "{not json").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "bad_batch");
    let req = serde_json::json!({"ops": [{"op": "set", "key": "a", "value": "12345"}]});
    let (st, body) = app.send("POST", "/v1/batch", req.to_string()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(json(&body)["results"][0]["status"], 413);
    assert_eq!(app.state.engine.stats().items, 0);
}

#[tokio::test]
async fn ring_stats_health_ready_and_metrics() {
    let app = App::new();
    let (st, body) = app.get("/v1/ring").await;
    assert_eq!(st, StatusCode::OK);
    let ring = RingDoc::from_json(&body).unwrap();
    assert_eq!(ring.epoch, 0);
    assert_eq!(ring.members.len(), 1);
    assert_eq!(ring.members[0].id, "node-0");
    app.put("/v1/keys/k", "v").await;
    app.get("/v1/keys/k").await;
    app.get("/v1/keys/missing").await;
    let stats = json(&app.get("/v1/stats").await.1);
    assert_eq!(stats["items"], 1);
    assert_eq!(stats["hits"], 1);
    assert_eq!(stats["misses"], 1);
    assert_eq!(stats["partitionsOwned"], 64);
    assert_eq!(stats["epoch"], 0);
    assert_eq!(stats["bytes"], 1 + 1 + ENTRY_OVERHEAD);
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
    let (st, body) = app.get("/metrics").await;
    assert_eq!(st, StatusCode::OK);
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains(
            r#"ringcache_requests_total{method="GET",route="/v1/keys/{key}",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(
        r#"ringcache_requests_total{method="GET",route="/v1/keys/{key}",status="404"} 1"#
    ));
    assert!(text.contains(
        r#"ringcache_requests_total{method="PUT",route="/v1/keys/{key}",status="204"} 1"#
    ));
    assert!(text.contains("ringcache_hits_total 1"));
    assert!(text.contains("ringcache_items 1"));
    assert!(text.contains("ringcache_ring_epoch 0"));
    assert!(text.contains(
        "ringcache_request_duration_seconds_count{method=\"GET\",route=\"/v1/keys/{key}\"} 2"
    ));
}

#[tokio::test]
async fn unknown_route_is_json_404() {
    let app = App::new();
    let (st, body) = app.get("/v2/nothing").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
}

#[tokio::test]
async fn auth_token_guards_v1_but_not_probes() {
    let app = App::with(|c| c.auth_token = Some("s3cret".into()));
    let (st, body) = app.send("PUT", "/v1/keys/k", "v").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&body), "unauthorized");
    let wrong = Request::builder()
        .method("GET")
        .uri("/v1/stats")
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.call(wrong).await.0, StatusCode::UNAUTHORIZED);
    let good = Request::builder()
        .method("PUT")
        .uri("/v1/keys/k")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::from("v"))
        .unwrap();
    assert_eq!(app.call(good).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.state.engine.stats().items, 1);
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get("/metrics").await.0, StatusCode::OK);
}

fn two_member_ring(epoch: u64) -> RingDoc {
    let mut d = RingDoc::single_node("node-0", "127.0.0.1:7070", 64);
    d.epoch = epoch;
    d.members.push(Member {
        id: "node-1".into(),
        addr: "127.0.0.2:7070".into(),
        state: MemberState::Up,
        incarnation: None,
    });
    d
}

impl App {
    /// `PUT /internal/v1/ring` of `ring` with `token` as the bearer token.
    async fn put_ring(&self, ring: &RingDoc, token: Option<&str>) -> (StatusCode, Vec<u8>) {
        self.call(internal_put(ring.to_json_pretty(), token)).await
    }

    /// Pushes `ring` with the internal token "int", as the operator would, and expects 204.
    async fn push_ring(&self, ring: &RingDoc) {
        let (st, body) = self.put_ring(ring, Some("int")).await;
        assert_eq!(
            st,
            StatusCode::NO_CONTENT,
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
}

fn internal_put(body: String, token: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method("PUT").uri("/internal/v1/ring");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    b.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn internal_routes_are_403_without_a_configured_token() {
    let app = App::new();
    let body = two_member_ring(1).to_json_pretty();
    let (st, b) = app.call(internal_put(body, Some("anything"))).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(error_code(&b), "forbidden");
    assert_eq!(app.state.ring.epoch(), 0);
}

#[tokio::test]
async fn ring_push_accepts_newer_refuses_older_invalid_and_bad_tokens() {
    let app = App::with(|c| c.internal_token = Some("int".into()));
    let (st, _) = app.put_ring(&two_member_ring(2), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = app.put_ring(&two_member_ring(2), Some("bad")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(app.state.ring.epoch(), 0);

    let (st, _) = app.put_ring(&two_member_ring(2), Some("int")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(app.state.ring.epoch(), 2);
    let served = RingDoc::from_json(&app.get("/v1/ring").await.1).unwrap();
    assert_eq!(served, two_member_ring(2));
    // Same epoch again: accepted, nothing changes.
    let (st, _) = app.put_ring(&two_member_ring(2), Some("int")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);

    let (st, b) = app.put_ring(&two_member_ring(1), Some("int")).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(error_code(&b), "older_epoch");

    let mut invalid = two_member_ring(5);
    invalid.replication_factor = 2;
    invalid.table[3] = vec![0, 7];
    let (st, b) = app.put_ring(&invalid, Some("int")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let v = json(&b);
    assert_eq!(v["code"], "invalid_ring");
    assert!(
        v["error"].as_str().unwrap().contains("member index 7"),
        "{v}"
    );
    let (st, _) = app.call(internal_put("{}".into(), Some("int"))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(app.state.ring.epoch(), 2);
    let stats = json(&app.get("/v1/stats").await.1);
    assert_eq!(stats["epoch"], 2);
}

#[tokio::test]
async fn internal_token_is_also_accepted_in_the_proxy_safe_header() {
    // The API server's pod proxy strips Authorization, so the operator's proxy mode sends the
    // token in x-ringcache-internal-token instead.
    let app = App::with(|c| c.internal_token = Some("int".into()));
    let put = |token: &str| {
        Request::builder()
            .method("PUT")
            .uri("/internal/v1/ring")
            .header("x-ringcache-internal-token", token)
            .body(Body::from(two_member_ring(3).to_json_pretty()))
            .unwrap()
    };
    let (st, _) = app.call(put("wrong")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(app.state.ring.epoch(), 0);
    let (st, _) = app.call(put("int")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(app.state.ring.epoch(), 3);
}

#[tokio::test]
async fn keys_are_refused_until_the_configured_ring_is_loaded() {
    // The ring file is not there yet: the placeholder one-member ring must not take writes,
    // or this node would acknowledge keys it will not own.
    let app = App::with(|c| {
        c.node_id = "node-0".into();
        c.ring_file = Some(std::path::PathBuf::from("/nonexistent/ringcache/ring.json"));
        c.internal_token = Some("int".into());
    });
    let (st, body) = app.send("PUT", "/v1/keys/k", b"v".to_vec()).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "unavailable");
    assert_eq!(
        app.get("/v1/keys/k").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(app.state.engine.stats().items, 0);

    app.push_ring(&two_member_ring(1)).await;
    app.set("/v1/keys/k", b"v".to_vec()).await;
    assert_eq!(app.get("/v1/keys/k").await, (StatusCode::OK, b"v".to_vec()));
}

#[tokio::test]
async fn a_recovering_node_does_not_serve_reads_it_holds() {
    // RF=1 on this node: the key is stored here.
    let app = App::with(|c| {
        c.node_id = "node-0".into();
        c.internal_token = Some("int".into());
    });
    app.push_ring(&two_member_ring(1)).await;
    app.set("/v1/keys/k", b"v".to_vec()).await;

    // Now this node is `recovering` and co-owns every partition with node-1 (nothing listens on
    // its address): the read must go to node-1, not be answered from the possibly stale local copy.
    let mut ring = two_member_ring(2);
    ring.replication_factor = 2;
    ring.members[0].state = MemberState::Recovering;
    ring.table = (0..ring.partitions).map(|_| vec![1, 0]).collect();
    app.push_ring(&ring).await;
    let (st, body) = app.get("/v1/keys/k").await;
    assert_eq!(
        st,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        app.state.engine.stats().items,
        1,
        "the local copy stays for the recovery"
    );
}

#[tokio::test]
async fn internal_multi_get_answers_each_key_found_missing_or_not_served() {
    use bytes::BufMut;
    use ringcache_node::wire::{self, KeyResult};
    let app = App::with(|c| c.internal_token = Some("int".into()));
    // node-1 owns the partition of "theirs"; node-0 (this node) owns every other one.
    let mut ring = two_member_ring(2);
    let theirs = ringcache_ring::partition_of(b"theirs", 64);
    ring.table[theirs as usize] = vec![1];
    app.push_ring(&ring).await;
    let mine = (0..)
        .map(|i| format!("mine-{i}"))
        .find(|k| ringcache_ring::partition_of(k.as_bytes(), 64) != theirs)
        .unwrap();
    let absent = (0..)
        .map(|i| format!("absent-{i}"))
        .find(|k| ringcache_ring::partition_of(k.as_bytes(), 64) != theirs)
        .unwrap();
    app.set(&format!("/v1/keys/{mine}"), "v1").await;

    let mut body = bytes::BytesMut::new();
    body.put_u32_le(3);
    for k in [mine.as_str(), absent.as_str(), "theirs"] {
        wire::put_key(&mut body, k.as_bytes());
    }
    let req = |token: Option<&str>, body: bytes::Bytes| {
        let mut b = Request::builder().method("POST").uri("/internal/v1/get");
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(Body::from(body)).unwrap()
    };
    let (st, out) = app.call(req(Some("int"), body.clone().freeze())).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&out));
    assert_eq!(
        wire::decode_results(&bytes::Bytes::from(out)).unwrap(),
        vec![
            KeyResult::Found(bytes::Bytes::from_static(b"v1")),
            KeyResult::Missing,
            KeyResult::NotServed
        ]
    );

    let (st, _) = app.call(req(None, body.clone().freeze())).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let truncated = body.freeze().slice(..10);
    let (st, out) = app.call(req(Some("int"), truncated)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&out), "bad_keys");
}
