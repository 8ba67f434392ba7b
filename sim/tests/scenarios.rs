//! Reliability scenarios in the cluster simulation (DESIGN.md "Testing levels" 5): a 3-node
//! RF=2 CacheCluster under write load (PUT, overwrite, DELETE through ready pods), put through
//! a routine operation, brought back to Ready, then every key read and classified against its
//! last acknowledged operation. Each must end with nothing lost, stale or resurrected.
//!
//! `cargo test -p ringcache-sim --test scenarios -- --nocapture --test-threads=1` prints one
//! result line per scenario (the table in docs/reliability.md).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ringcache_e2e::status::{Migration, Status};
use ringcache_sim::apiserver::Res;
use ringcache_sim::audit::StatusAudit;
use ringcache_sim::cluster::SimCluster;
use ringcache_sim::load::{Load, LoadOptions, LoadStats, verify};
use serde_json::{Value, json};

/// Scenarios run one at a time: each runs three to five node processes and four writers on a
/// machine with two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const READY: Duration = Duration::from_secs(90);
const ROLLOUT: Duration = Duration::from_secs(180);
const PRELOAD: usize = 60_000;
/// How long the operator may take to notice a change before its status must stop claiming
/// Ready (the StatefulSet controller stand-in lags up to 2 s, far beyond it).
const AUDIT_GRACE: Duration = Duration::from_millis(750);

/// Runs one scenario on its own runtime, one scenario at a time.
fn scenario(body: impl std::future::Future<Output = ()>) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(body);
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

async fn started(name: &str) -> SimCluster {
    init_logs();
    let sim = SimCluster::start(name, json!({"replicas": 3, "replicationFactor": 2}))
        .expect("simulation starts");
    sim.wait_ready(READY).await.expect("cluster becomes Ready");
    // Data beyond the writers' keys: a restarted node has a real share to copy back.
    sim.preload(PRELOAD).await.expect("preload");
    sim
}

/// A started cluster (`started`) under load seeded with `seed` (`with_load`), when the load
/// was started, and an audit of its status.
async fn started_under_load(name: &str, seed: u64) -> (SimCluster, Load, Instant, StatusAudit) {
    let sim = started(name).await;
    let t = Instant::now();
    let load = with_load(&sim, seed).await;
    let audit = StatusAudit::start(sim.api.clone(), name, AUDIT_GRACE);
    (sim, load, t, audit)
}

/// Who each pod and member was before a change: pod UIDs and member incarnations.
struct Before {
    uids: Vec<(String, Value)>,
    incarnations: Vec<(String, Option<String>)>,
}

fn before(sim: &SimCluster) -> Before {
    let ids: Vec<String> = (0..3).map(|i| format!("{}-{i}", sim.name)).collect();
    Before {
        uids: ids
            .iter()
            .map(|id| {
                let uid = pod(sim, id).map_or(Value::Null, |p| p["metadata"]["uid"].clone());
                (id.clone(), uid)
            })
            .collect(),
        incarnations: ids
            .iter()
            .map(|id| (id.clone(), sim.incarnation_of(id)))
            .collect(),
    }
}

/// The StatefulSet's generation once `applied` holds for it (the change to wait out).
async fn sts_generation_when(
    sim: &SimCluster,
    what: &str,
    applied: impl Fn(&Value) -> bool,
) -> i64 {
    sim.wait_for(what, ROLLOUT, |s| {
        let sts = s.api.get(&Res::stateful_sets(), "sim", &s.name)?;
        applied(&sts).then(|| sts["metadata"]["generation"].as_i64())?
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A rollout is over, judged as on a real cluster (e2e does the same): the StatefulSet
/// controller has observed `generation` (the change's), every pod carries its update revision,
/// each pod is a new object whose node runs under a new incarnation, and the CacheCluster is
/// Ready. Never from status the controller has not caught up on.
async fn wait_rolled(sim: &SimCluster, what: &str, generation: i64, was: &Before) {
    sim.wait_for(what, ROLLOUT, |s| {
        let sts = s.api.get(&Res::stateful_sets(), "sim", &s.name)?;
        let status = &sts["status"];
        let observed = status["observedGeneration"].as_i64()?;
        let target = status["updateRevision"].as_str()?;
        let pods_on_target = was.uids.iter().all(|(id, old_uid)| {
            pod(s, id).is_some_and(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["metadata"]["uid"] != *old_uid
                    && p["metadata"]["labels"]["controller-revision-hash"] == target
            })
        });
        let reincarnated = was.incarnations.iter().all(|(id, old)| {
            s.incarnation_of(id)
                .is_some_and(|now| Some(&now) != old.as_ref())
        });
        (observed >= generation && pods_on_target && reincarnated && s.is_ready()).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// The incarnation each of `pods` reports.
fn incarnations(sim: &SimCluster, pods: &[&str]) -> Vec<Option<String>> {
    pods.iter().map(|p| sim.incarnation_of(p)).collect()
}

fn pod(sim: &SimCluster, pod: &str) -> Option<serde_json::Value> {
    sim.api
        .get(&ringcache_sim::apiserver::Res::pods(), "sim", pod)
}

/// The pod object has its `Ready` condition `True`.
fn is_ready(pod: &serde_json::Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn pod_ready(sim: &SimCluster, name: &str) -> bool {
    pod(sim, name).is_some_and(|p| is_ready(&p))
}

/// Waits until the cluster reports phase `Scaling`.
async fn wait_scaling(sim: &SimCluster, what: &str) {
    sim.wait_for(what, ROLLOUT, |s| {
        (s.cache_cluster()["status"]["phase"] == "Scaling").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// Waits for Ready after a `from` → `to` scale requested at ring epoch `epoch_before`, and
/// checks the migration record the Ready status carries, read after the fact as e2e reads it (a
/// fast migration may never be sampled while it runs): `from` → `to`, started and finished,
/// every counted partition done and at least one counted (`Migration::incomplete_for`), bytes
/// moved (the cluster holds preloaded data, so the new owners pull some), and the record's
/// pending epoch after `epoch_before` and no later than the ring's. Every record seen on the
/// way must count no more partitions done than its total. Returns the record.
async fn scaled(sim: &SimCluster, from: u64, to: u64, epoch_before: u64) -> Migration {
    let what = format!("Ready after scaling {from}→{to}");
    let mut seen: Vec<Migration> = Vec::new();
    sim.wait_for(&what, ROLLOUT, |s| {
        if let Some(m) = Status::of(&s.cache_cluster()).migration
            && seen.last() != Some(&m)
        {
            seen.push(m);
        }
        s.is_ready().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let cc = sim.cache_cluster();
    let status = Status::of(&cc);
    if let Some(why) = status.migration_incomplete(from, to) {
        panic!("scale {from}→{to} reached Ready, but {why}; records seen on the way: {seen:?}");
    }
    let record = status.migration.clone().unwrap_or_default();
    assert!(
        record.bytes_moved > 0,
        "scale {from}→{to}: no bytes moved though the cluster holds data: {record:?}"
    );
    let record_epoch = cc["status"]["migration"]["epoch"].as_u64().unwrap_or(0);
    assert!(
        epoch_before < record_epoch && record_epoch <= status.ring_epoch,
        "scale {from}→{to}: the record's epoch {record_epoch} is not of a migration started \
         after epoch {epoch_before} and committed by epoch {}",
        status.ring_epoch
    );
    assert!(
        seen.iter().all(|m| m.partitions_done <= m.partitions_total),
        "scale {from}→{to}: progress beyond its total: {seen:?}"
    );
    println!(
        "scale {from}→{to}: status.migration once Ready: {record:?} (epoch {record_epoch}, ring \
         epoch {epoch_before}→{}); {} distinct records seen on the way",
        status.ring_epoch,
        seen.len()
    );
    record
}

/// The ring epoch the CacheCluster's status reports.
fn ring_epoch(sim: &SimCluster) -> u64 {
    Status::of(&sim.cache_cluster()).ring_epoch
}

async fn with_load(sim: &SimCluster, seed: u64) -> Load {
    let load = Load::start(
        sim.endpoints(),
        LoadOptions {
            seed,
            ..LoadOptions::default()
        },
    );
    assert!(
        load.wait_acked(500, Duration::from_secs(30)).await,
        "writes are acknowledged before the scenario starts"
    );
    load
}

/// Stops the load once the cluster is Ready again, checks every key and the audit, and prints
/// the result.
/// `planned`: the scenario's only disruption is a restart the operator drives, so no write may be
/// refused for it.
async fn finish(
    name: &str,
    sim: &SimCluster,
    load: Load,
    started: Instant,
    audit: StatusAudit,
    planned: bool,
) {
    sim.wait_ready(ROLLOUT).await.expect("cluster Ready again");
    // Keep writing a moment against the settled cluster, then stop.
    let before = load.stats().acked;
    assert!(load.wait_acked(before + 200, Duration::from_secs(30)).await);
    let (checker, stats, reads): (_, LoadStats, _) = load.stop().await;
    let summary = verify(&checker, sim.endpoints(), Duration::from_secs(20)).await;
    // Hashes, sets, sorted sets and lists (`t…` keys) were written and checked too, where the
    // pods speak plain RESP.
    let typed = checker.acknowledged_keys("t");
    let plain = sim
        .endpoints()
        .now()
        .iter()
        .all(|e| e.starts_with("http://"));
    assert!(
        !plain || typed >= 400,
        "{name}: only {typed} typed keys acknowledged"
    );
    let lies = audit.stop().await;
    println!(
        "scenario {name}: {summary} ({typed} of them hashes, sets, sorted sets, lists); {stats} ({}‰ failed); reads during: {} checked, {} wrong \
         ({} lost, {} stale, {} resurrected), {} failed; in {:.0?}",
        stats.failed_per_mille(),
        reads.checked,
        reads.wrong(),
        reads.lost,
        reads.stale,
        reads.resurrected,
        reads.unreadable,
        started.elapsed()
    );
    assert!(summary.clean(), "{name}: {summary}: {:?}", summary.examples);
    assert!(lies.is_empty(), "{name}: the status misled: {lies:?}");
    if planned {
        assert_eq!(
            stats.node_503, 0,
            "{name}: writes refused (503 / -TRYAGAIN) during a planned restart: {stats}"
        );
    }
    assert_eq!(
        reads.wrong(),
        0,
        "{name}: reads during the scenario: {:?}",
        reads.examples
    );
    assert!(summary.checked > 1_000, "too few keys checked: {summary}");
}

#[test]
fn rollout_restart_of_a_3_node_rf2_cluster_loses_nothing() {
    scenario(async {
        let (sim, load, t, audit) = started_under_load("rollout", 11).await;
        let was = before(&sim);
        sim.rollout_restart().expect("rollout restart");
        let generation = sts_generation_when(&sim, "the restart annotation", |sts| {
            !sts["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_null()
        })
        .await;
        wait_rolled(
            &sim,
            "every pod replaced on the new template",
            generation,
            &was,
        )
        .await;
        finish("rollout-restart", &sim, load, t, audit, true).await;
    });
}

#[test]
fn image_change_rolls_every_pod_and_loses_nothing() {
    scenario(async {
        const IMAGE: &str = "ghcr.io/ringcache/ringcache-node:9.9.9";
        let (sim, load, t, audit) = started_under_load("upgrade", 12).await;
        let was = before(&sim);
        sim.patch_spec(json!({ "image": IMAGE }))
            .expect("image change");
        // The operator applies the new image into the template: that is the change to roll.
        let generation = sts_generation_when(&sim, "the new image in the template", |sts| {
            sts["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE
        })
        .await;
        wait_rolled(
            &sim,
            "every pod replaced on the new image",
            generation,
            &was,
        )
        .await;
        let on_new = sim
            .pods()
            .iter()
            .filter(|p| p["spec"]["containers"][0]["image"] == IMAGE)
            .count();
        assert_eq!(on_new, 3, "every pod runs the new image");
        finish("image-change", &sim, load, t, audit, true).await;
    });
}

#[test]
fn in_place_process_kills_on_two_pods_lose_nothing() {
    scenario(async {
        let (sim, load, t, audit) = started_under_load("kill", 13).await;
        let before = incarnations(&sim, &["kill-1", "kill-2"]);
        // The second process dies as soon as the first one's pod is Ready again: the first
        // node must not count as a complete copy before it really is one.
        sim.kill_process("kill-1").expect("kill -9");
        sim.wait_for("kill-1 restarted", ROLLOUT, |s| {
            (!pod_ready(s, "kill-1")).then_some(())
        })
        .await
        .expect("kill-1 seen down");
        sim.wait_for("kill-1 Ready again", ROLLOUT, |s| {
            pod_ready(s, "kill-1").then_some(())
        })
        .await
        .expect("kill-1 ready");
        sim.kill_process("kill-2").expect("kill -9");
        sim.wait_for("both recovered under new incarnations", ROLLOUT, |s| {
            let now = incarnations(s, &["kill-1", "kill-2"]);
            (now[0] != before[0] && now[1] != before[1] && s.is_ready()).then_some(())
        })
        .await
        .expect("recovered");
        finish("kill-in-place-twice", &sim, load, t, audit, false).await;
    });
}

#[test]
fn two_pods_deleted_back_to_back_lose_nothing() {
    scenario(async {
        let (sim, load, t, audit) = started_under_load("delete", 14).await;
        let first_uid = pod(&sim, "delete-0").unwrap()["metadata"]["uid"].clone();
        sim.delete_pod("delete-0").expect("delete the first pod");
        // The second goes as soon as the first pod's replacement reports Ready (what a careless
        // `kubectl delete` loop, or a StatefulSet rolling update, would do).
        sim.wait_for("delete-0 replaced and Ready", ROLLOUT, |s| {
            let p = pod(s, "delete-0")?;
            (p["metadata"]["uid"] != first_uid && is_ready(&p)).then_some(())
        })
        .await
        .expect("first replacement ready");
        sim.delete_pod("delete-1").expect("delete the second pod");
        finish("delete-two-back-to-back", &sim, load, t, audit, false).await;
    });
}

#[test]
fn operator_restarted_mid_rollout_and_mid_migration_loses_nothing() {
    scenario(async {
        let (sim, load, t, audit) = started_under_load("opkill", 15).await;
        let was = before(&sim);
        // Mid-rollout: once the first pod was replaced.
        sim.rollout_restart().expect("rollout restart");
        let generation = sts_generation_when(&sim, "the restart annotation", |sts| {
            !sts["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_null()
        })
        .await;
        sim.wait_for("the rollout under way", ROLLOUT, |s| {
            (s.pods_updated().unwrap_or(0) >= 1).then_some(())
        })
        .await
        .expect("rollout started");
        sim.restart_operator().expect("operator restart");
        wait_rolled(&sim, "rollout done", generation, &was).await;
        // Mid-migration: scale to 5, restart the operator once the pending table is written.
        sim.patch_spec(json!({"replicas": 5})).expect("scale up");
        sim.wait_for("a migration in progress", ROLLOUT, |s| {
            s.cache_cluster()["status"]["migration"]["finished"]
                .is_null()
                .then_some(())
                .filter(|_| s.cache_cluster()["status"]["phase"] == "Scaling")
                .filter(|_| !s.cache_cluster()["status"]["migration"].is_null())
        })
        .await
        .expect("migration started");
        sim.restart_operator().expect("operator restart");
        sim.wait_ready(ROLLOUT).await.expect("scaled to 5");
        sim.patch_spec(json!({"replicas": 3})).expect("scale down");
        wait_scaling(&sim, "the scale-down migration in progress").await;
        sim.restart_operator().expect("operator restart");
        finish("operator-restarts", &sim, load, t, audit, false).await;
    });
}

#[test]
fn scale_out_and_in_with_tls_loses_nothing() {
    scenario(async {
        init_logs();
        let sim = SimCluster::start_tls("tls", json!({"replicas": 3, "replicationFactor": 2}))
            .expect("simulation starts");
        sim.wait_ready(READY).await.expect("cluster becomes Ready");
        // TLS is really on: a node refuses plain HTTP on its port.
        let ip = sim.pods()[0]["status"]["podIP"]
            .as_str()
            .expect("a pod IP")
            .to_string();
        let plain = ringcache_sim::http_client(Duration::from_secs(2))
            .get(format!("http://{ip}:7070/healthz"))
            .send()
            .await;
        assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
        sim.preload(PRELOAD / 3).await.expect("preload over HTTPS");
        let t = Instant::now();
        let load = with_load(&sim, 16).await;
        let audit = StatusAudit::start(sim.api.clone(), "tls", AUDIT_GRACE);
        // Scaling with TLS is quick here; let the writers cover their keys first.
        assert!(load.wait_acked(3_000, Duration::from_secs(60)).await);
        // Migration pulls, replication and the operator's calls all run over HTTPS. Each scale
        // leaves its migration record in status (issue 16), checked once Ready.
        let epoch = ring_epoch(&sim);
        sim.patch_spec(json!({"replicas": 5})).expect("scale up");
        scaled(&sim, 3, 5, epoch).await;
        // cert-manager renews the certificate: nodes pick the new files up in place.
        sim.rotate_certificate().expect("certificate renewed");
        let epoch = ring_epoch(&sim);
        sim.patch_spec(json!({"replicas": 3})).expect("scale down");
        wait_scaling(&sim, "the scale-down under way").await;
        scaled(&sim, 5, 3, epoch).await;
        finish("tls-scale-out-and-in", &sim, load, t, audit, false).await;
    });
}
