//! The `ringcache` binary against fake nodes on 127.0.0.1.

mod support;

use ringcache_client::summary::ring_summary;
use ringcache_ring::{MemberState, Pending};
use std::process::Output;
use support::{FakeCluster, closed_port};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

fn ringcache(url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringcache"));
    cmd.env_remove("RINGCACHE_TOKEN")
        .env_remove("RUST_LOG")
        .env("RINGCACHE_URL", url)
        .kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ringcache");
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(data) = stdin {
            pipe.write_all(data).await.expect("write stdin");
        }
        drop(pipe);
    }
    child.wait_with_output().await.expect("ringcache runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn ring_prints_members_balance_and_the_pending_migration() {
    let cluster = FakeCluster::start(3, 12).await;
    let mut ring = cluster.ring();
    ring.epoch = 5;
    ring.members[2].state = MemberState::Leaving;
    // Scale-in 3→2: fake-2's partitions go to fake-0 and fake-1.
    ring.pending = Some(Pending {
        table: (0..12u32).map(|p| vec![p % 2, (p + 1) % 2]).collect(),
    });
    cluster.set_ring(&ring);

    let mut cmd = ringcache(&cluster.url(1));
    cmd.arg("ring");
    let out = run(cmd, None).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout, ring_summary(&ring));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "ring epoch 5: 3 members, 12 partitions, replication factor 2, hash xxh3_64"
    );
    assert!(
        lines[2].starts_with("member  state    addr"),
        "header: {}",
        lines[2]
    );
    assert!(lines[5].starts_with("fake-2  leaving"), "{}", lines[5]);
    assert!(lines[5].ends_with("8          4                  0                 0"));
    assert!(stdout.contains("partitions per member: min 8  max 8  mean 8.0  (balanced)"));
    assert!(stdout.contains("pending migration: 8 partitions gain an owner, 8 replicas move"));
    assert!(stdout.contains("target partitions per member: min 12  max 12  mean 12.0  (balanced)"));

    let mut cmd = ringcache(&cluster.url(0));
    cmd.args(["ring", "--json"]);
    let out = run(cmd, None).await;
    assert!(out.status.success());
    let parsed = ringcache_ring::RingDoc::from_json(&out.stdout).expect("ring JSON");
    assert_eq!(parsed, ring);
}

#[tokio::test]
async fn set_from_stdin_get_and_del_round_trip() {
    let cluster = FakeCluster::start(3, 16).await;
    let url = cluster.url(0);
    let value: &[u8] = b"binary\x00value\xff\n";

    let mut cmd = ringcache(&url);
    cmd.args(["set", "greeting", "-", "--ttl", "30s"]);
    let out = run(cmd, Some(value)).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let ttl_sent = cluster
        .nodes
        .iter()
        .flat_map(|n| n.log.lock().clone())
        .any(|l| l.key == "greeting" && l.query.as_deref() == Some("ttl=30s"));
    assert!(ttl_sent);

    let mut cmd = ringcache(&url);
    cmd.args(["get", "greeting"]);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout, value);

    let mut cmd = ringcache(&url);
    cmd.args(["set", "plain", "hello world"]);
    assert!(run(cmd, None).await.status.success());
    assert_eq!(
        cluster.store.lock().get("plain").map(Vec::as_slice),
        Some(&b"hello world"[..])
    );

    let mut cmd = ringcache(&url);
    cmd.args(["del", "greeting"]);
    assert!(run(cmd, None).await.status.success());

    let mut cmd = ringcache(&url);
    cmd.args(["get", "greeting"]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(text(&out.stderr), "ringcache: key \"greeting\" not found\n");
}

#[tokio::test]
async fn token_comes_from_the_environment() {
    let cluster = FakeCluster::start_with(2, 8, Some("t0ken"), &[]).await;
    let mut cmd = ringcache(&cluster.url(0));
    cmd.env("RINGCACHE_TOKEN", "t0ken").args(["set", "k", "v"]);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));

    let mut cmd = ringcache(&cluster.url(0));
    cmd.args(["get", "k"]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(3), "a rejected request exits 3");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("answered 401 (unauthorized)"), "{stderr}");
}

#[tokio::test]
async fn unreachable_cluster_exits_4_with_a_clear_message() {
    let url = format!("http://{}", closed_port().await);
    let mut cmd = ringcache(&url);
    cmd.args(["get", "k"]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(4));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("ringcache: cannot load the ring from {url}")),
        "{stderr}"
    );
    assert!(stderr.contains("connection failed"), "{stderr}");
}

#[tokio::test]
async fn bad_input_exits_2() {
    let cluster = FakeCluster::start(1, 4).await;
    let mut cmd = ringcache(&cluster.url(0));
    cmd.args(["set", "k", "v", "--ttl", "soon"]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--ttl"));

    let mut cmd = ringcache(&cluster.url(0));
    cmd.args(["get", ""]);
    let out = run(cmd, None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("invalid key: empty key"));
    assert_eq!(cluster.total_requests(), 0);
}

#[tokio::test]
async fn stats_prints_one_row_per_node() {
    let dead = closed_port().await;
    let cluster = FakeCluster::start_with(2, 12, None, &[("dead-2".to_string(), dead)]).await;
    let mut cmd = ringcache(&cluster.url(0));
    cmd.arg("stats");
    let out = run(cmd, None).await;
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with(
            "node    state  items  bytes  hits  misses  evictions  partitionsOwned  epoch  error"
        ),
        "{}",
        lines[0]
    );
    assert!(lines[1].starts_with("fake-0  up"), "{}", lines[1]);
    assert!(lines[3].starts_with("dead-2  up"), "{}", lines[3]);
    assert!(lines[3].contains("connection failed"), "{}", lines[3]);
    // One member did not answer: the table is printed and the exit code says so.
    assert_eq!(out.status.code(), Some(4));
}

/// A real node (in process, single-node ring) serving HTTPS on 127.0.0.1 with a certificate for
/// `cache.test.svc` from a fresh CA. Returns its URL, the CA file and the other CA's file.
struct TlsNode {
    url: String,
    dir: std::path::PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls_node() -> TlsNode {
    use ringcache_common::pki::Ca;
    use ringcache_node::{config::NodeConfig, serve::Limits, tls::TlsServer};
    let dir = std::env::temp_dir().join(format!(
        "ringcache-cli-tls-{}-{}",
        std::process::id(),
        closed_port().await.replace([':', '.'], "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("cli test CA").unwrap();
    let leaf = ca.issue("node", &["cache.test.svc".into()]).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), leaf.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), leaf.key_pem).unwrap();
    std::fs::write(dir.join("other-ca.crt"), Ca::new("other CA").unwrap().pem()).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = NodeConfig::for_listen(addr);
    cfg.partitions = 8;
    let state = ringcache_node::server::build_state(
        &cfg,
        std::sync::Arc::new(ringcache_node::clock::SystemClock),
    )
    .unwrap();
    let tls = TlsServer::load(&dir.join("tls.crt"), &dir.join("tls.key")).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ringcache_node::server::serve(
        listener,
        state,
        async {
            let _ = stopped.await;
        },
        Limits::default(),
        Some(tls),
    ));
    TlsNode {
        url: format!("https://{addr}"),
        dir,
        _stop: stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_cluster_with_ca_file_and_server_name() {
    let node = tls_node().await;
    let ca = node.dir.join("ca.crt");

    // The node's certificate names cache.test.svc, not 127.0.0.1: the name is given.
    let mut cmd = ringcache(&node.url);
    cmd.args([
        "set",
        "k",
        "over tls",
        "--tls-server-name",
        "cache.test.svc",
    ])
    .arg("--ca-file")
    .arg(&ca);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));

    // Both from the environment.
    let mut cmd = ringcache(&node.url);
    cmd.env("RINGCACHE_CA_FILE", &ca)
        .env("RINGCACHE_TLS_SERVER_NAME", "cache.test.svc")
        .args(["get", "k"]);
    let out = run(cmd, None).await;
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "over tls");

    // Another CA, or a name the certificate does not carry: no node is trusted.
    for (ca_file, name) in [
        (node.dir.join("other-ca.crt"), "cache.test.svc"),
        (ca.clone(), "other.test.svc"),
    ] {
        let mut cmd = ringcache(&node.url);
        cmd.args(["get", "k", "--tls-server-name", name])
            .arg("--ca-file")
            .arg(&ca_file);
        let out = run(cmd, None).await;
        assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(stderr.contains("cannot load the ring"), "{stderr}");
    }

    // A CA file that is missing or holds no certificate is bad usage.
    for bad in [node.dir.join("missing.crt"), node.dir.join("tls.key")] {
        let mut cmd = ringcache(&node.url);
        cmd.args(["get", "k", "--ca-file"]).arg(&bad);
        let out = run(cmd, None).await;
        assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("TLS settings"),
            "{}",
            text(&out.stderr)
        );
    }
}
