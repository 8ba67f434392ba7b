//! The real binary: starts from flags, serves on loopback, exits 0 on SIGTERM.

mod support;

use std::ffi::OsStr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::{free_port, get_json, send_get, send_put, wait_ok};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary as node `solo` on a free loopback port (no ring file), with `extra` arguments;
/// returns it, its base URL and a client once it answers `/healthz`.
async fn start_solo<I, S>(extra: I) -> (Node, String, reqwest::Client)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ringcache-node"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--node-id",
            "solo",
        ])
        .args(extra)
        .env_remove("RINGCACHE_RING_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let node = Node(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = {
        ringcache_node::tls::install_crypto_provider();
        reqwest::Client::new()
    };
    let healthz = format!("{base}/healthz");
    wait_ok(&client, &healthz, 20, "node did not become healthy").await;
    (node, base, client)
}

/// Waits for `node` to exit (fails with `what` after 10 s).
async fn wait_exit(node: &mut Node, what: &str) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn binary_serves_and_exits_zero_on_sigterm() {
    let (mut node, base, client) = start_solo(["--max-memory", "64Mi"]).await;
    let r = send_put(&client, format!("{base}/v1/keys/hello"), "world").await;
    assert_eq!(r.status(), 204);
    let r = send_get(&client, format!("{base}/v1/keys/hello")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "world");
    let ring = get_json(&client, format!("{base}/v1/ring")).await;
    assert_eq!(ring["members"][0]["id"], "solo");
    assert_eq!(ring["epoch"], 0);

    let pid = node.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let status = wait_exit(&mut node, "node did not exit after SIGTERM").await;
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
    let token_file = dir.join("token");
    let (mut node, base, client) =
        start_solo([OsStr::new("--internal-token-file"), token_file.as_os_str()]).await;
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
    let status = wait_exit(&mut node, "node still running after abort").await;
    // Died of a signal (SIGABRT), not a clean exit: no drain, no snapshot.
    assert!(status.code().is_none(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
