//! The real binary: starts from flags, serves on loopback, exits 0 on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "node did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn binary_serves_and_exits_zero_on_sigterm() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ringcache-node"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-id",
            "solo",
            "--max-memory",
            "64Mi",
        ])
        .env_remove("RINGCACHE_RING_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut node = Node(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = {
        ringcache_node::tls::install_crypto_provider();
        reqwest::Client::new()
    };
    wait_healthy(&client, &base).await;
    let r = client
        .put(format!("{base}/v1/keys/hello"))
        .body("world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = client
        .get(format!("{base}/v1/keys/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "world");
    let ring: serde_json::Value = client
        .get(format!("{base}/v1/ring"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ring["members"][0]["id"], "solo");
    assert_eq!(ring["epoch"], 0);

    let pid = node.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "node did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn bad_quantity_flag_fails_naming_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringcache-node"))
        .args(["--listen", "127.0.0.1:0", "--max-value-size", "lots"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--max-value-size"), "{err}");
}

#[tokio::test]
async fn abort_kills_the_process_at_once_and_only_with_the_internal_token() {
    let dir = std::env::temp_dir().join(format!("rc-abort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "tok").unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ringcache-node"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-id",
            "solo",
        ])
        .arg("--internal-token-file")
        .arg(dir.join("token"))
        .env_remove("RINGCACHE_RING_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut node = Node(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = {
        ringcache_node::tls::install_crypto_provider();
        reqwest::Client::new()
    };
    wait_healthy(&client, &base).await;
    let r = client
        .post(format!("{base}/internal/v1/abort"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        node.0.try_wait().unwrap().is_none(),
        "alive without the token"
    );
    let r = client
        .post(format!("{base}/internal/v1/abort"))
        .header("x-ringcache-internal-token", "tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "node still running after abort");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Died of a signal (SIGABRT), not a clean exit: no drain, no snapshot.
    assert!(status.code().is_none(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
