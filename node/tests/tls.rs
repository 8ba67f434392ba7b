//! TLS on a loopback cluster: a CA generated per test, one certificate for every node (as the
//! operator's Secret gives them), peers verified against the CA and the fixed peer name.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache_common::pki::Ca;
use support::*;

/// The name peers' certificates are verified against (`--tls-server-name`).
const PEER_NAME: &str = "rc-peers.loopback.svc";

/// Names every test certificate carries: the peer name and the loopback addresses tests use.
fn node_names() -> Vec<String> {
    let mut names = vec![PEER_NAME.to_string(), "localhost".to_string()];
    names.extend((2..10).map(|i| format!("127.0.0.{i}")));
    names
}

/// Writes `ca.crt`, `tls.crt`, `tls.key` (the Secret's shape) under `dir`; returns the flags
/// that make a node serve and peer over TLS with them.
fn write_tls(dir: &Path, ca: &Ca, issued_by: &Ca, cn: &str) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let issued = issued_by.issue(cn, &node_names()).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), issued.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), issued.key_pem).unwrap();
    let arg = |f: &str| dir.join(f).display().to_string();
    vec![
        "--tls-cert-file".into(),
        arg("tls.crt"),
        "--tls-key-file".into(),
        arg("tls.key"),
        "--tls-ca-file".into(),
        arg("ca.crt"),
        "--tls-server-name".into(),
        PEER_NAME.into(),
    ]
}

/// A client trusting only `ca` (the address dialled is verified, as curl would).
fn client_trusting(ca: &Ca) -> reqwest::Client {
    ringcache_node::tls::install_crypto_provider();
    reqwest::Client::builder()
        .tls_backend_preconfigured(
            ringcache_common::tls::client_config(ca.pem().as_bytes(), None).unwrap(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn tls_cluster(name: &str, n: usize, ca: &Ca) -> (Cluster, Vec<String>) {
    let mut c = Cluster::new(name, n);
    let flags = write_tls(&c.dir.join("tls"), ca, ca, "node");
    for node in &mut c.nodes {
        node.scheme = "https";
    }
    c.http = client_trusting(ca);
    (c, flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_scales_out_under_load_and_refuses_plain_http() {
    let ca = Ca::new("ringcache test CA").unwrap();
    let (mut c, flags) = tls_cluster("tls-scale", 5, &ca);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    // Replication, forwarding and migration pulls all run node to node over HTTPS here.
    scale_out_3_to_5_under_load(&mut c, &flags).await;

    // Plain HTTP on the same port gets no answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://{}/healthz", c.nodes[0].addr))
        .send()
        .await;
    assert!(r.is_err(), "plain HTTP answered: {r:?}");

    // curl with the CA reads a key back over HTTPS.
    assert_eq!(c.status(0, "/healthz").await, 200);
    assert_eq!(
        c.put(1, "/v1/keys/curl-key", "over-tls").await.status(),
        204
    );
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
        .arg(c.dir.join("tls/ca.crt"))
        .arg(format!("{}/v1/keys/curl-key", c.nodes[2].base()))
        .output()
        .expect("curl is installed (.ci/run installs it when missing)");
    assert!(
        out.status.success(),
        "curl --cacert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over-tls");
    // Without the CA, curl refuses the node's certificate.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("{}/healthz", c.nodes[2].base()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl trusted an unknown CA");

    // The ring-aware client reaches each key's owner by address over HTTPS: verifying each
    // address dialled (the seed is an IP), or every node against the peer name.
    for name in [None, Some(PEER_NAME)] {
        let mut builder =
            ringcache_client::Client::builder([c.nodes[3].base()]).ca_pem(ca.pem().into_bytes());
        if let Some(n) = name {
            builder = builder.tls_server_name(n);
        }
        let client = builder.connect().await.unwrap();
        for i in 0..50 {
            let key = format!("client-{}-{i}", name.is_some());
            client
                .set(&key, key.clone().into_bytes(), None)
                .await
                .unwrap();
            let got = client.get(&key).await.unwrap();
            assert_eq!(got.as_deref(), Some(key.as_bytes()));
        }
    }
    // A client trusting another CA reaches no node.
    let other = Ca::new("not the cluster's CA").unwrap();
    let refused = ringcache_client::Client::builder([c.nodes[3].base()])
        .ca_pem(other.pem().into_bytes())
        .connect()
        .await;
    assert!(
        matches!(refused, Err(ringcache_client::Error::Unavailable { .. })),
        "{refused:?}"
    );
}

/// Keys node `i` owns alone (RF=1) among `candidates`.
fn owned_by(c: &Cluster, i: usize, candidates: impl Iterator<Item = String>) -> Vec<String> {
    candidates
        .filter(|k| {
            let p = c.ring.partition_of(k.as_bytes());
            c.ring.owners(p) == [i as u32]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_refuse_a_certificate_from_another_ca() {
    let ca = Ca::new("cluster CA").unwrap();
    let rogue_ca = Ca::new("someone else's CA").unwrap();
    let (mut c, flags) = tls_cluster("tls-rogue", 2, &ca);
    // Node 1 trusts the cluster's CA but serves a certificate another CA issued, for the right
    // name: everything about it is right except who vouches for it.
    let rogue_flags = write_tls(&c.dir.join("tls-rogue"), &ca, &rogue_ca, "rogue");
    c.ring = c.fresh_ring(&[0, 1], 1, 1);
    c.write_ring_file();
    c.start(0, &flags.iter().map(String::as_str).collect::<Vec<_>>());
    c.start(
        1,
        &rogue_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    c.wait_ready(0).await;
    let rogue_client = client_trusting(&rogue_ca);
    let rogue_base = c.nodes[1].base();
    let readyz = format!("{rogue_base}/readyz");
    wait_ok(&rogue_client, &readyz, 30, "rogue node not ready").await;

    let keys = (0..200).map(|i| format!("k-{i}"));
    let on_rogue = owned_by(&c, 1, keys.clone());
    let on_good = owned_by(&c, 0, keys);
    assert!(!on_rogue.is_empty() && !on_good.is_empty());

    // Writes through node 0 of keys the rogue owns must reach it over TLS: node 0 refuses the
    // handshake, so the write fails and the rogue stores nothing.
    for k in &on_rogue[..5] {
        let r = c.put(0, &format!("/v1/keys/{k}"), "v").await;
        assert!(
            r.status().is_server_error(),
            "{k}: write forwarded to a peer with a foreign certificate: {}",
            r.status()
        );
    }
    let items = get_json(&rogue_client, format!("{rogue_base}/v1/stats")).await["items"].as_u64();
    assert_eq!(items, Some(0), "the rogue node received data");

    // A key the rogue holds (written to it directly) is not read through node 0 either.
    let k = &on_rogue[5];
    let r = send_put(
        &rogue_client,
        format!("{rogue_base}/v1/keys/{k}"),
        "rogue-value",
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = c.get(0, &format!("/v1/keys/{k}")).await;
    assert!(r.status().is_server_error(), "read through: {}", r.status());

    // Node 0's own keys are unaffected.
    let k = &on_good[0];
    let checker = Checker::default();
    assert!(checker.put(&c.http, &c.nodes[0].base(), k, "good").await);
    assert!(checker.verify(&c.http, &c.nodes[0].base()).await.is_empty());
}

/// The certificate node `addr` presents in a TLS handshake trusting `ca_pem`.
async fn served_certificate(addr: &str, ca_pem: &[u8]) -> Vec<u8> {
    let config = ringcache_common::tls::client_config(ca_pem, Some(PEER_NAME)).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(PEER_NAME).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    ringcache_common::tls::certs(pem.as_bytes()).unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_on_disk_is_served_without_a_restart() {
    let ca = Ca::new("rotating CA").unwrap();
    let (mut c, flags) = tls_cluster("tls-rotate", 1, &ca);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    c.start_all(c.fresh_ring(&[0], 1, 1), 1, &flags).await;
    let dir: PathBuf = c.dir.join("tls");
    let pid = c.nodes[0].child.as_ref().unwrap().id();
    let first = std::fs::read_to_string(dir.join("tls.crt")).unwrap();
    assert_eq!(
        served_certificate(&c.nodes[0].addr, ca.pem().as_bytes()).await,
        der_of(&first)
    );

    // Rotate the way cert-manager's Secret volume does: new files renamed into place.
    let rotated = ca.issue("node-rotated", &node_names()).unwrap();
    let cert = rotated.cert_pem;
    std::fs::write(dir.join("tls.key.new"), rotated.key_pem).unwrap();
    std::fs::write(dir.join("tls.crt.new"), &cert).unwrap();
    std::fs::rename(dir.join("tls.key.new"), dir.join("tls.key")).unwrap();
    std::fs::rename(dir.join("tls.crt.new"), dir.join("tls.crt")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    while served_certificate(&c.nodes[0].addr, ca.pem().as_bytes()).await != der_of(&cert) {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Same process, still serving.
    assert_eq!(c.nodes[0].child.as_ref().unwrap().id(), pid);
    assert!(
        c.nodes[0]
            .child
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none()
    );
    assert_eq!(c.status(0, "/readyz").await, 200);
}
