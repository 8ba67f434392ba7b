//! The client against fake nodes on 127.0.0.1: owner routing, failover, ring refresh, token.

mod support;

use axum::http::Method;
use ringcache_client::{Client, Error};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::{FAKE_MAX_VALUE, FakeCluster, closed_port};

#[tokio::test]
async fn reads_and_writes_go_straight_to_the_owner() {
    let cluster = FakeCluster::start(3, 16).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    let ring = cluster.ring();
    assert_eq!(client.ring_epoch(), 1);

    for i in 0..60 {
        let key = format!("user:{i}");
        client.set(&key, format!("v{i}"), None).await.expect("set");
        let got = client.get(&key).await.expect("get");
        assert_eq!(got.as_deref(), Some(format!("v{i}").as_bytes()));

        let p = ring.partition_of(key.as_bytes());
        let primary = cluster
            .node_of_member(ring.owners(p)[0])
            .expect("primary is a fake node");
        let reader = cluster
            .node_of_member(ring.read_owners(p)[0])
            .expect("first read owner is a fake node");
        for (n, node) in cluster.nodes.iter().enumerate() {
            let puts = node.keys_seen(&Method::PUT, &key);
            let gets = node.keys_seen(&Method::GET, &key);
            assert_eq!(puts, usize::from(n == primary), "PUT {key} at node {n}");
            assert_eq!(gets, usize::from(n == reader), "GET {key} at node {n}");
        }
    }
    // No request needed a hop or a retry: exactly one per operation.
    assert_eq!(cluster.total_requests(), 120);
}

#[tokio::test]
async fn miss_is_none_and_delete_goes_to_the_primary() {
    let cluster = FakeCluster::start(3, 16).await;
    let client = Client::connect([cluster.url(1)]).await.expect("connect");
    let key = cluster.key_owned_by("gone", &[2, 0]);

    assert_eq!(client.get(&key).await.expect("get"), None);
    client.set(&key, "x", None).await.expect("set");
    client.del(&key).await.expect("del");
    assert_eq!(client.get(&key).await.expect("get"), None);

    assert_eq!(cluster.nodes[2].keys_seen(&Method::DELETE, &key), 1);
    assert_eq!(cluster.nodes[0].keys_seen(&Method::DELETE, &key), 0);
    assert_eq!(cluster.nodes[1].keys_seen(&Method::DELETE, &key), 0);
}

#[tokio::test]
async fn ttl_is_sent_as_a_query_parameter() {
    let cluster = FakeCluster::start(2, 8).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    let key = cluster.key_owned_by("ttl", &[1, 0]);
    client
        .set(&key, "v", Some(Duration::from_secs(30)))
        .await
        .expect("set");
    let log = cluster.nodes[1].log.lock().clone();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].query.as_deref(), Some("ttl=30s"));
}

#[tokio::test]
async fn fails_over_to_the_next_owner_when_the_primary_answers_503() {
    let cluster = FakeCluster::start(3, 16).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    let key = cluster.key_owned_by("k", &[1, 2]);
    cluster.nodes[1].failing.store(true, Ordering::SeqCst);

    client.set(&key, "value", None).await.expect("set");
    let got = client.get(&key).await.expect("get");
    assert_eq!(got.as_deref(), Some(&b"value"[..]));

    // The failing primary was tried first, once per operation; the second owner served both.
    assert_eq!(cluster.nodes[1].keys_seen(&Method::PUT, &key), 1);
    assert_eq!(cluster.nodes[1].keys_seen(&Method::GET, &key), 1);
    assert_eq!(cluster.nodes[2].keys_seen(&Method::PUT, &key), 1);
    assert_eq!(cluster.nodes[2].keys_seen(&Method::GET, &key), 1);
    assert_eq!(cluster.nodes[0].requests(), 0);
}

#[tokio::test]
async fn fails_over_to_the_next_owner_when_the_primary_refuses_connections() {
    // Member 2 ("dead-2") is in the ring but nothing listens at its address.
    let dead = closed_port().await;
    let cluster = FakeCluster::start_with(2, 12, None, &[("dead-2".to_string(), dead)]).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    // Table is [(p+1)%3, (p+2)%3]: a partition with the dead member as primary and fake-0 second.
    let key = cluster.key_owned_by("k", &[2, 0]);

    client.set(&key, "still here", None).await.expect("set");
    let got = client.get(&key).await.expect("get");
    assert_eq!(got.as_deref(), Some(&b"still here"[..]));
    assert_eq!(cluster.nodes[0].keys_seen(&Method::PUT, &key), 1);
    assert_eq!(cluster.nodes[0].keys_seen(&Method::GET, &key), 1);
    assert_eq!(cluster.nodes[1].requests(), 0);
}

#[tokio::test]
async fn newer_epoch_in_a_response_header_refreshes_the_ring() {
    let cluster = FakeCluster::start(3, 16).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    let key = cluster.key_owned_by("moving", &[0, 1]);
    let fetches_at_connect: usize = cluster
        .nodes
        .iter()
        .map(|n| n.ring_fetches.load(Ordering::SeqCst))
        .sum();
    assert_eq!(fetches_at_connect, 1);

    // The operator moves every partition one member on and bumps the epoch.
    let mut next = cluster.ring();
    next.epoch = 2;
    for owners in &mut next.table {
        for o in owners.iter_mut() {
            *o = (*o + 1) % 3;
        }
    }
    cluster.set_ring(&next);
    let p = next.partition_of(key.as_bytes());
    assert_eq!(next.owners(p), &[1, 2]);

    client.set(&key, "a", None).await.expect("set");
    // Routed with the old ring (to member 0), whose answer announced epoch 2: the client fetched
    // the ring from that node before returning.
    assert_eq!(cluster.nodes[0].keys_seen(&Method::PUT, &key), 1);
    assert_eq!(client.ring_epoch(), 2);
    assert_eq!(cluster.nodes[0].ring_fetches.load(Ordering::SeqCst), 2);

    client.set(&key, "b", None).await.expect("set");
    assert_eq!(cluster.nodes[1].keys_seen(&Method::PUT, &key), 1);
    assert_eq!(cluster.nodes[0].keys_seen(&Method::PUT, &key), 1);
    // Same epoch from now on: no more ring fetches.
    let fetches: usize = cluster
        .nodes
        .iter()
        .map(|n| n.ring_fetches.load(Ordering::SeqCst))
        .sum();
    assert_eq!(fetches, 2);
}

#[tokio::test]
async fn a_header_epoch_never_moves_the_ring_backwards() {
    let cluster = FakeCluster::start(2, 8).await;
    let mut newer = cluster.ring();
    newer.epoch = 9;
    cluster.set_ring(&newer);
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    assert_eq!(client.ring_epoch(), 9);

    // A node that lags behind (epoch 3) answers: the client keeps epoch 9 and fetches nothing.
    let mut older = newer.clone();
    older.epoch = 3;
    cluster.set_ring(&older);
    client.get("anything").await.expect("get");
    assert_eq!(client.ring_epoch(), 9);
    let fetches: usize = cluster
        .nodes
        .iter()
        .map(|n| n.ring_fetches.load(Ordering::SeqCst))
        .sum();
    assert_eq!(fetches, 1);
}

#[tokio::test]
async fn when_every_node_fails_the_error_lists_each_attempt() {
    let cluster = FakeCluster::start(3, 16).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    for n in &cluster.nodes {
        n.failing.store(true, Ordering::SeqCst);
    }
    let err = client.get("k").await.expect_err("all nodes fail");
    match &err {
        Error::Unavailable { op, attempts } => {
            assert_eq!(*op, "get");
            // Each member once (the seed is member 0, not tried twice).
            assert_eq!(attempts.len(), 3, "{err}");
            assert!(
                attempts
                    .iter()
                    .all(|a| a.error.starts_with("503 (unavailable)"))
            );
        }
        other => panic!("expected Unavailable, got {other}"),
    }
    // The failure made the client look for a newer ring (it found the same epoch: no retry).
    assert!(
        cluster
            .nodes
            .iter()
            .map(|n| n.ring_fetches.load(Ordering::SeqCst))
            .sum::<usize>()
            >= 2
    );
    assert_eq!(cluster.total_requests(), 3);
}

#[tokio::test]
async fn a_definitive_error_is_returned_with_the_node_json_not_retried() {
    let cluster = FakeCluster::start(3, 16).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    let big = vec![b'x'; FAKE_MAX_VALUE + 1];
    let err = client.set("big", big, None).await.expect_err("too large");
    match &err {
        Error::Server {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(*status, 413);
            assert_eq!(code, "value_too_large");
            assert!(message.contains("max 1024"), "{message}");
        }
        other => panic!("expected Server, got {other}"),
    }
    assert_eq!(cluster.total_requests(), 1);
}

#[tokio::test]
async fn the_bearer_token_is_sent_on_every_request() {
    let cluster = FakeCluster::start_with(2, 8, Some("s3cret"), &[]).await;
    let client = Client::builder([cluster.url(0)])
        .token("s3cret")
        .connect()
        .await
        .expect("connect with token");
    client.set("a", "1", None).await.expect("set");
    client.get("a").await.expect("get");
    client.del("a").await.expect("del");

    let mut seen = 0;
    for n in &cluster.nodes {
        for l in n.log.lock().iter() {
            assert_eq!(l.auth.as_deref(), Some("Bearer s3cret"));
            seen += 1;
        }
        for a in n.ring_auth.lock().iter() {
            assert_eq!(a.as_deref(), Some("Bearer s3cret"));
        }
    }
    assert_eq!(seen, 3);

    // Without the token the node's 401 and its JSON reach the caller.
    let err = Client::connect([cluster.url(1)])
        .await
        .expect_err("no token");
    assert_eq!(err.status(), Some(401));
    assert!(err.to_string().contains("(unauthorized)"), "{err}");
}

#[tokio::test]
async fn connect_tries_the_next_seed_when_the_first_is_dead() {
    let cluster = FakeCluster::start(2, 8).await;
    let dead = format!("http://{}", closed_port().await);
    let client = Client::connect([dead, cluster.url(1)])
        .await
        .expect("second seed answers");
    assert_eq!(client.ring_epoch(), 1);
    assert_eq!(cluster.nodes[1].ring_fetches.load(Ordering::SeqCst), 1);

    let err = Client::connect([format!("http://{}", closed_port().await)])
        .await
        .expect_err("no seed answers");
    assert!(
        matches!(
            err,
            Error::Unavailable {
                op: "fetch ring",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn without_direct_routing_every_request_goes_to_the_seed() {
    let cluster = FakeCluster::start(3, 16).await;
    let client = Client::builder([cluster.url(2)])
        .direct(false)
        .connect()
        .await
        .expect("connect");
    for i in 0..20 {
        let key = format!("k{i}");
        client.set(&key, "v", None).await.expect("set");
        client.get(&key).await.expect("get");
    }
    assert_eq!(cluster.nodes[2].requests(), 40);
    assert_eq!(cluster.nodes[0].requests() + cluster.nodes[1].requests(), 0);
}

#[tokio::test]
async fn stats_asks_every_member_and_reports_the_dead_one() {
    let dead = closed_port().await;
    let cluster = FakeCluster::start_with(2, 12, None, &[("dead-2".to_string(), dead)]).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    let stats = client.stats().await;
    assert_eq!(stats.len(), 3);
    assert_eq!(stats[0].id, "fake-0");
    let s0 = stats[0].stats.as_ref().expect("fake-0 answers");
    assert_eq!(s0["epoch"], 1);
    assert!(stats[1].stats.is_ok());
    assert_eq!(stats[2].id, "dead-2");
    assert!(matches!(stats[2].stats, Err(Error::Unavailable { .. })));
}

#[tokio::test]
async fn invalid_keys_are_refused_without_a_request() {
    let cluster = FakeCluster::start(2, 8).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    assert!(matches!(client.get("").await, Err(Error::InvalidKey(_))));
    let long = "k".repeat(251);
    assert!(matches!(
        client.set(&long, "v", None).await,
        Err(Error::InvalidKey(_))
    ));
    assert_eq!(cluster.total_requests(), 0);
}

#[tokio::test]
async fn keys_with_reserved_characters_reach_the_node_intact() {
    let cluster = FakeCluster::start(2, 8).await;
    let client = Client::connect([cluster.url(0)]).await.expect("connect");
    let key = "user/42 ünï?x=1#frag%";
    client.set(key, "v", None).await.expect("set");
    assert_eq!(
        client.get(key).await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    assert!(cluster.store.lock().contains_key(key));
}
