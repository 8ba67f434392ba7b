//! Two operator instances on one cluster (a leader handover where the old leader has not
//! stopped yet): the ring's compare-and-set must leave exactly one ring per epoch on every node,
//! through a scale-up, a rollout and a scale-down under write load.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use parking_lot::Mutex;
use ringcache_sim::apiserver::Res;
use ringcache_sim::cluster::{NAMESPACE, SimCluster};
use ringcache_sim::kubelet::NODE_PORT;
use ringcache_sim::load::{Load, LoadOptions, verify};
use serde_json::json;

const STEP: Duration = Duration::from_secs(180);

#[test]
fn two_operators_racing_leave_one_ring_per_epoch_on_every_node() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        let sim = SimCluster::start("race", json!({"replicas": 3, "replicationFactor": 2}))
            .expect("simulation starts");
        sim.wait_ready(STEP).await.expect("Ready");
        let second = sim.extra_operator("operator-b").expect("second operator");
        let token = sim
            .api
            .get(&Res::secrets(), NAMESPACE, "race-internal")
            .and_then(|s| serde_json::from_value::<Secret>(s).ok())
            .and_then(|s| s.data?.get("token").map(|b| String::from_utf8_lossy(&b.0).to_string()))
            .expect("internal token");

        // Every node's ring, sampled throughout: epoch → distinct documents seen.
        let seen: Arc<Mutex<BTreeMap<u64, BTreeSet<String>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (seen, stop, endpoints) = (seen.clone(), stop.clone(), sim.endpoints());
            let api = sim.api.clone();
            tokio::spawn(async move {
                let http = ringcache_sim::http_client(Duration::from_secs(1));
                while !stop.load(Ordering::Relaxed) {
                    let ips: Vec<String> = api
                        .list(&Res::pods(), Some(NAMESPACE), None)
                        .iter()
                        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
                        .collect();
                    for ip in ips {
                        let Ok(r) = http
                            .get(format!("http://{ip}:{NODE_PORT}/internal/v1/ring"))
                            .bearer_auth(&token)
                            .send()
                            .await
                        else {
                            continue;
                        };
                        let Ok(doc) = r.json::<serde_json::Value>().await else {
                            continue;
                        };
                        if let Some(epoch) = doc["epoch"].as_u64() {
                            seen.lock().entry(epoch).or_default().insert(doc.to_string());
                        }
                    }
                    let _ = endpoints;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        };
        let load = Load::start(sim.endpoints(), LoadOptions::default());
        assert!(load.wait_acked(300, Duration::from_secs(30)).await);

        sim.patch_spec(json!({"replicas": 4})).expect("scale up");
        sim.wait_ready(STEP).await.expect("scaled up");
        sim.rollout_restart().expect("rollout");
        sim.wait_for("rollout done", STEP, |s| {
            (s.pods_updated() == Some(4) && s.is_ready()).then_some(())
        })
        .await
        .expect("rolled");
        sim.patch_spec(json!({"replicas": 3})).expect("scale down");
        sim.wait_ready(STEP).await.expect("scaled down");

        stop.store(true, Ordering::Relaxed);
        let _ = sampler.await;
        second.stop();
        let (checker, stats, reads) = load.stop().await;
        let summary = verify(&checker, sim.endpoints(), Duration::from_secs(20)).await;
        let seen = seen.lock().clone();
        let split: Vec<(&u64, usize)> = seen
            .iter()
            .filter(|(_, docs)| docs.len() > 1)
            .map(|(e, docs)| (e, docs.len()))
            .collect();
        println!(
            "two operators: {} epochs seen on the nodes, {} with more than one ring; {summary}; {stats}; reads during: {} wrong",
            seen.len(),
            split.len(),
            reads.wrong()
        );
        assert!(seen.len() > 5, "the rings changed: {} epochs", seen.len());
        assert!(split.is_empty(), "epochs with two rings: {split:?}");
        assert!(summary.clean(), "{summary}: {:?}", summary.examples);
        assert_eq!(reads.wrong(), 0, "{:?}", reads.examples);
    });
}
