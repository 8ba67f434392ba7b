//! Migration throughput: N entries of 100 bytes (RF=2) on 3 release nodes, then a scale-out to 4
//! driven like the operator (joining member, pending table from `ring::rebalance`, pushes), timed
//! until every target owner reports done. Run through `bench/migration-bench.sh`.
//! Usage: `migration_bench <path to ringcache-node> [entries]`.

use ringcache_node::engine::Record;
use ringcache_node::wire;
use ringcache_ring::{Member, MemberState, Pending, RingDoc, Table, diff, partition_of, rebalance};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const P: u32 = 1024;
const TOKEN: &str = "migration-bench-token";

struct Procs(Vec<Child>);
impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn to_index(t: &[Vec<String>], ids: &[String]) -> Table {
    t.iter()
        .map(|o| {
            o.iter()
                .filter_map(|x| ids.iter().position(|i| i == x).map(|i| i as u32))
                .collect()
        })
        .collect()
}

async fn push(
    http: &reqwest::Client,
    addrs: &[String],
    ring: &RingDoc,
    file: &std::path::Path,
) -> anyhow::Result<()> {
    std::fs::write(file.with_extension("tmp"), ring.to_json_pretty())?;
    std::fs::rename(file.with_extension("tmp"), file)?;
    for a in addrs {
        let r = http
            .put(format!("http://{a}/internal/v1/ring"))
            .bearer_auth(TOKEN)
            .body(ring.to_json_pretty())
            .send()
            .await?;
        anyhow::ensure!(r.status() == 204, "ring push to {a}: {}", r.status());
    }
    Ok(())
}

async fn wait_ready(http: &reqwest::Client, a: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("http://{a}/readyz")).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{a} not ready")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bin = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: migration_bench BIN [entries]"))?;
    let n: usize = std::env::args()
        .nth(2)
        .map_or(Ok(1_000_000), |s| s.parse())?;
    let dir =
        std::env::temp_dir().join(format!("ringcache-migration-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("token"), TOKEN)?;
    let ring_file = dir.join("ring.json");
    let addrs: Vec<String> = (0..4)
        .map(|i| {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            Ok(format!("127.0.0.{}:{port}", i + 2))
        })
        .collect::<std::io::Result<_>>()?;
    let ids: Vec<String> = (0..4).map(|i| format!("m-{i}")).collect();
    let member = |i: usize, state| Member {
        id: ids[i].clone(),
        addr: addrs[i].clone(),
        state,
        incarnation: None,
    };
    let table = to_index(&rebalance(&[], &ids[..3], P, 2)?, &ids);
    let mut ring = RingDoc {
        version: 1,
        epoch: 1,
        partitions: P,
        replication_factor: 2,
        hash: "xxh3_64".into(),
        members: (0..3).map(|i| member(i, MemberState::Up)).collect(),
        table,
        pending: None,
    };
    std::fs::write(&ring_file, ring.to_json_pretty())?;
    let http = {
        ringcache_node::tls::install_crypto_provider();
        reqwest::Client::new()
    };
    let mut procs = Procs(Vec::new());
    let spawn = |i: usize| {
        Command::new(&bin)
            .args([
                "--listen",
                &addrs[i],
                "--node-id",
                &ids[i],
                "--max-memory",
                "4Gi",
            ])
            .arg("--ring-file")
            .arg(&ring_file)
            .arg("--internal-token-file")
            .arg(dir.join("token"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
    };
    for i in 0..3 {
        procs.0.push(spawn(i)?);
    }
    for a in &addrs[..3] {
        wait_ready(&http, a).await?;
    }

    // Preload straight into each owner with replica writes (10k records per request).
    let t = Instant::now();
    let value = bytes::Bytes::from(vec![b'v'; 100]);
    let mut per_owner: Vec<Vec<Record>> = vec![Vec::new(); 3];
    for i in 0..n {
        let key = format!("key:{i}");
        let p = partition_of(key.as_bytes(), P);
        let rec = Record {
            key: key.into(),
            version: 1 << 20,
            expires_at: 0,
            value: Some(value.clone()),
            kind: ringcache_node::engine::Kind::String,
        };
        for &o in ring.owners(p) {
            per_owner[o as usize].push(rec.clone());
        }
        if i % 10_000 == 9_999 || i == n - 1 {
            for (o, recs) in per_owner.iter_mut().enumerate() {
                if recs.is_empty() {
                    continue;
                }
                let r = http
                    .post(format!("http://{}/internal/v1/apply", addrs[o]))
                    .bearer_auth(TOKEN)
                    .body(wire::encode_all(recs))
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 204, "preload: {}", r.status());
                recs.clear();
            }
        }
    }
    eprintln!(
        "preloaded {n} entries (RF=2) in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    // Scale out: joining member, then the pending table.
    ring.epoch = 2;
    ring.members.push(member(3, MemberState::Joining));
    push(&http, &addrs[..3], &ring, &ring_file).await?;
    procs.0.push(spawn(3)?);
    wait_ready(&http, &addrs[3]).await?;
    let target = to_index(&rebalance(&ring.id_table(&ring.table), &ids, P, 2)?, &ids);
    let moves = diff(&ring.table, &target);
    let mut gainers: Vec<usize> = moves
        .iter()
        .flat_map(|m| m.gained.iter().map(|&g| g as usize))
        .collect();
    gainers.sort_unstable();
    gainers.dedup();
    ring.epoch = 3;
    ring.pending = Some(Pending {
        table: target.clone(),
    });
    let t0 = Instant::now();
    push(&http, &addrs, &ring, &ring_file).await?;
    let (mut keys, mut bytes) = (0u64, 0u64);
    for &g in &gainers {
        loop {
            let v: serde_json::Value = http
                .get(format!("http://{}/internal/v1/migration", addrs[g]))
                .bearer_auth(TOKEN)
                .send()
                .await?
                .json()
                .await?;
            if v["epoch"] == 3 && v["done"] == true {
                keys += v["keys"].as_u64().unwrap_or(0);
                bytes += v["bytes"].as_u64().unwrap_or(0);
                break;
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(600),
                "migration did not finish"
            );
            // Polled often: the whole migration takes well under a second, and the poll interval
            // is this measurement's resolution.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    ring.epoch = 4;
    ring.table = target;
    ring.pending = None;
    ring.members[3].state = MemberState::Up;
    push(&http, &addrs, &ring, &ring_file).await?;
    println!(
        "| entries (RF=2) | partitions moved | entries pulled | MB pulled | push → all done s | keys/s | MB/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {} | {keys} | {:.1} | {secs:.2} | {:.0} | {:.1} |",
        moves.len(),
        bytes as f64 / 1e6,
        keys as f64 / secs,
        bytes as f64 / 1e6 / secs,
    );
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
