//! A simulated Kubernetes cluster running one CacheCluster: the in-memory API, the StatefulSet
//! controller and kubelet stand-ins, and the operator; plus the steps scenarios are made of
//! (rollout restart, image change, scale, kill a process, delete a pod, restart the operator)
//! and the waits between them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::apiserver::{FakeApi, Res};
use crate::kubelet::{Kubelet, KubeletOptions, NODE_PORT};
use crate::load::Endpoints;
use crate::operator::Operator;
use crate::statefulset::{self, REVISION_LABEL};
use ringcache_common::pki::Ca;

pub const NAMESPACE: &str = "sim";

/// Distinct loopback networks for the clusters of one process.
static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// The `ringcache-node` binary the kubelet runs: `RINGCACHE_NODE_BIN`, or the one Cargo built
/// next to this test binary (`cargo test --workspace` builds it).
pub fn node_binary() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("RINGCACHE_NODE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating the test binary")?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(3)
        .map(|d| d.join("ringcache-node"))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            anyhow!(
                "no ringcache-node binary next to {} (run `cargo build -p ringcache-node` or `cargo test --workspace`, or set RINGCACHE_NODE_BIN)",
                exe.display()
            )
        })
}

/// The cluster's certificate authority, when it serves TLS (`spec.tls`).
struct SimTls {
    ca: Ca,
    secret: String,
}

pub struct SimCluster {
    pub api: FakeApi,
    pub name: String,
    pub root: PathBuf,
    pub kubelet: Arc<Kubelet>,
    /// `https` when the cluster serves TLS.
    scheme: &'static str,
    /// What clients use: trusts the cluster's CA and verifies its Service name under TLS.
    http: reqwest::Client,
    tls: Option<SimTls>,
    operator: Mutex<Option<Operator>>,
    operators_started: AtomicU32,
    sts_task: tokio::task::JoinHandle<()>,
    kubelet_task: tokio::task::JoinHandle<()>,
}

impl SimCluster {
    /// Creates CacheCluster `name` with `spec` and starts everything around it.
    pub fn start(name: &str, spec: Value) -> anyhow::Result<SimCluster> {
        Self::start_with(name, spec, KubeletOptions::default())
    }

    pub fn start_with(name: &str, spec: Value, opts: KubeletOptions) -> anyhow::Result<SimCluster> {
        Self::launch(name, spec, opts, false)
    }

    /// Like [`SimCluster::start`] with TLS on: a CA is generated, a `kubernetes.io/tls` Secret
    /// `NAME-tls` holding a certificate for the cluster's names (as cert-manager would write it)
    /// is created, and `spec.tls.secretName` points at it. Clients trust only that CA.
    pub fn start_tls(name: &str, spec: Value) -> anyhow::Result<SimCluster> {
        Self::launch(name, spec, KubeletOptions::default(), true)
    }

    fn launch(
        name: &str,
        mut spec: Value,
        opts: KubeletOptions,
        tls: bool,
    ) -> anyhow::Result<SimCluster> {
        let binary = node_binary()?;
        let n = NEXT_NET.fetch_add(1, Ordering::Relaxed);
        let net = ((100 + std::process::id() % 100) as u8, (n % 250 + 1) as u8);
        let root =
            std::env::temp_dir().join(format!("ringcache-sim-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let api = FakeApi::new();
        let tls = if tls {
            let ca = Ca::new(&format!("{name} sim CA"))?;
            let secret = format!("{name}-tls");
            api.create(&Res::secrets(), NAMESPACE, tls_secret(&ca, name, &secret)?)
                .map_err(|e| anyhow!("creating the TLS Secret: {e}"))?;
            spec["tls"] = json!({ "secretName": secret });
            Some(SimTls { ca, secret })
        } else {
            None
        };
        let (scheme, http) = match &tls {
            Some(t) => (
                "https",
                crate::https_client(
                    Duration::from_secs(5),
                    t.ca.pem().as_bytes(),
                    &format!("{name}.{NAMESPACE}.svc"),
                )?,
            ),
            None => ("http", crate::http_client(Duration::from_secs(5))),
        };
        api.create(
            &Res::cache_clusters(),
            NAMESPACE,
            json!({
                "apiVersion": "ringcache.io/v1alpha1",
                "kind": "CacheCluster",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": spec,
            }),
        )
        .map_err(|e| anyhow!("creating the CacheCluster: {e}"))?;
        let controller = statefulset::Controller::lagging(opts.seed, opts.controller_lag);
        let kubelet = Kubelet::new(api.clone(), NAMESPACE, &root, &binary, net, opts);
        let kubelet_task = kubelet.spawn();
        let sts_task = statefulset::spawn(api.clone(), NAMESPACE.to_string(), controller);
        let sim = SimCluster {
            api,
            name: name.to_string(),
            root,
            kubelet,
            scheme,
            http,
            tls,
            operator: Mutex::new(None),
            operators_started: AtomicU32::new(0),
            sts_task,
            kubelet_task,
        };
        sim.start_operator()?;
        Ok(sim)
    }

    fn start_operator(&self) -> anyhow::Result<()> {
        let n = self.operators_started.fetch_add(1, Ordering::Relaxed);
        let op = Operator::start(&self.api, NAMESPACE, &format!("operator-{n}"))?;
        *self.operator.lock() = Some(op);
        Ok(())
    }

    /// Kills the operator wherever it is and starts a fresh instance (no state carried over).
    pub fn restart_operator(&self) -> anyhow::Result<()> {
        if let Some(op) = self.operator.lock().take() {
            op.stop();
        }
        self.start_operator()
    }

    /// A second operator instance on the same cluster, as during a leader handover.
    pub fn extra_operator(&self, identity: &str) -> anyhow::Result<Operator> {
        Operator::start(&self.api, NAMESPACE, identity)
    }

    pub fn cache_cluster(&self) -> Value {
        self.api
            .get(&Res::cache_clusters(), NAMESPACE, &self.name)
            .unwrap_or_default()
    }

    pub fn pods(&self) -> Vec<Value> {
        self.api.list(&Res::pods(), Some(NAMESPACE), None)
    }

    /// The client set up for this cluster (the CA trusted and the Service name verified under
    /// TLS).
    pub fn client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// `path` on the node at pod IP `ip`, with the cluster's scheme.
    pub fn node_url(&self, ip: &str, path: &str) -> String {
        format!("{}://{ip}:{NODE_PORT}{path}", self.scheme)
    }

    /// Replaces the certificate in the TLS Secret with a new one from the same CA, as
    /// cert-manager does when it renews; the kubelet rewrites the mounted files.
    pub fn rotate_certificate(&self) -> anyhow::Result<()> {
        let t = self
            .tls
            .as_ref()
            .ok_or_else(|| anyhow!("the cluster was not started with TLS"))?;
        let secret = tls_secret(&t.ca, &self.name, &t.secret)?;
        self.api
            .update(&Res::secrets(), NAMESPACE, &t.secret, |s| {
                s["data"] = secret["data"].clone();
            })
            .map_err(|e| anyhow!("updating the TLS Secret: {e}"))?;
        Ok(())
    }

    /// Ready, not terminating pods' base URLs: what the client Service routes to.
    pub fn endpoints(&self) -> Endpoints {
        let api = self.api.clone();
        let scheme = self.scheme;
        Endpoints::new(
            move || {
                api.list(&Res::pods(), Some(NAMESPACE), None)
                    .iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .filter(|p| {
                        p["status"]["conditions"].as_array().is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                    })
                    .filter_map(|p| p["status"]["podIP"].as_str())
                    .map(|ip| format!("{scheme}://{ip}:{NODE_PORT}"))
                    .collect()
            },
            self.client(),
        )
    }

    /// Writes `n` keys (`pre-0…`, 100-byte values) through the batch API of a ready node, so that
    /// recoveries have real work to do (a restarted node copies its share before it is complete).
    pub async fn preload(&self, n: usize) -> anyhow::Result<()> {
        let http = self.client();
        let value = "p".repeat(100);
        for chunk in (0..n).collect::<Vec<_>>().chunks(2_000) {
            let eps = self.endpoints().now();
            let ep = eps
                .first()
                .ok_or_else(|| anyhow!("no ready node to preload through"))?;
            let ops: Vec<Value> = chunk
                .iter()
                .map(|i| json!({"op": "set", "key": format!("pre-{i}"), "value": value}))
                .collect();
            let r = http
                .post(format!("{ep}/v1/batch"))
                .timeout(Duration::from_secs(30))
                .json(&json!({ "ops": ops }))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("preload batch answered {}", r.status());
            }
        }
        Ok(())
    }

    /// `kubectl rollout restart statefulset/NAME`: a pod-template annotation, written by
    /// another field manager than the operator.
    pub fn rollout_restart(&self) -> anyhow::Result<()> {
        let stamp = format!("{:?}", std::time::SystemTime::now());
        self.api
            .merge_patch(
                &Res::stateful_sets(),
                NAMESPACE,
                &self.name,
                "kubectl-rollout",
                json!({"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": stamp
                }}}}}),
            )
            .map_err(|e| anyhow!("rollout restart: {e}"))?;
        Ok(())
    }

    /// `kubectl patch cachecluster NAME --type merge -p {"spec": …}`.
    pub fn patch_spec(&self, spec: Value) -> anyhow::Result<()> {
        self.api
            .merge_patch(
                &Res::cache_clusters(),
                NAMESPACE,
                &self.name,
                "kubectl-patch",
                json!({ "spec": spec }),
            )
            .map_err(|e| anyhow!("patching the CacheCluster: {e}"))?;
        Ok(())
    }

    /// SIGKILL of the node process in `pod`; the kubelet restarts it in place.
    pub fn kill_process(&self, pod: &str) -> anyhow::Result<()> {
        if !self.kubelet.kill_process(pod) {
            bail!("{pod} has no running process to kill");
        }
        Ok(())
    }

    /// `kubectl delete pod POD`.
    pub fn delete_pod(&self, pod: &str) -> anyhow::Result<()> {
        self.api
            .delete(&Res::pods(), NAMESPACE, pod)
            .map_err(|e| anyhow!("deleting {pod}: {e}"))?;
        Ok(())
    }

    /// Polls `check` (every 50 ms) until it returns Some, or fails after `within` with `what` and
    /// the last status.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut(&SimCluster) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = check(self) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {within:?} waiting for {what}; status: {}",
                    self.cache_cluster()["status"]
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ready for the current generation: phase Ready, every member up, every pod ready and on
    /// the StatefulSet's current template.
    pub fn is_ready(&self) -> bool {
        let cc = self.cache_cluster();
        let status = &cc["status"];
        let replicas = cc["spec"]["replicas"].as_i64().unwrap_or(3);
        let members_up = status["members"]
            .as_array()
            .is_some_and(|m| m.len() as i64 == replicas && m.iter().all(|m| m["state"] == "up"));
        status["phase"] == "Ready"
            && members_up
            && status["readyReplicas"].as_i64() == Some(replicas)
            && status["observedGeneration"] == cc["metadata"]["generation"]
            && self.pods_updated() == Some(replicas as usize)
    }

    /// Member pods on the StatefulSet's update revision (None before the StatefulSet exists).
    pub fn pods_updated(&self) -> Option<usize> {
        let sts = self.api.get(&Res::stateful_sets(), NAMESPACE, &self.name)?;
        // From the template, not the status, which the controller stand-in updates a moment
        // after a change.
        let target = statefulset::revision_of(&self.name, &sts["spec"]["template"]);
        Some(
            self.pods()
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| p["metadata"]["labels"][REVISION_LABEL] == target.as_str())
                .count(),
        )
    }

    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        self.wait_for("the cluster to be Ready", within, |s| {
            s.is_ready().then_some(())
        })
        .await
    }

    /// The incarnation status records for member `id`.
    pub fn incarnation_of(&self, id: &str) -> Option<String> {
        self.cache_cluster()["status"]["members"]
            .as_array()?
            .iter()
            .find(|m| m["id"] == id)?["incarnation"]
            .as_str()
            .map(str::to_string)
    }

    /// The ring epoch every running node serves with, by pod (None for a node not answering).
    pub async fn node_epochs(&self) -> Vec<(String, Option<u64>)> {
        let http = self.client();
        let mut out = Vec::new();
        for p in self.pods() {
            let name = p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let epoch = match p["status"]["podIP"].as_str() {
                Some(ip) => match http
                    .get(self.node_url(ip, "/healthz"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["epoch"].as_u64()),
                    Err(_) => None,
                },
                None => None,
            };
            out.push((name, epoch));
        }
        out
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        if let Some(op) = self.operator.lock().take() {
            op.stop();
        }
        self.sts_task.abort();
        self.kubelet_task.abort();
        self.kubelet.stop_all();
        // Keep the directory (node logs) when the scenario failed.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// A `kubernetes.io/tls` Secret with a certificate for the cluster's names, in the shape
/// cert-manager writes (`tls.crt`, `tls.key`, `ca.crt`).
fn tls_secret(ca: &Ca, cluster: &str, secret: &str) -> anyhow::Result<Value> {
    let names = [
        format!("{cluster}-peers.{NAMESPACE}.svc"),
        format!("*.{cluster}-peers.{NAMESPACE}.svc"),
        format!("{cluster}.{NAMESPACE}.svc"),
    ];
    let issued = ca.issue(cluster, &names)?;
    let data = [
        ("tls.crt", issued.cert_pem),
        ("tls.key", issued.key_pem),
        ("ca.crt", ca.pem()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.into_bytes())))
    .collect();
    let secret = k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(secret.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data),
        ..Default::default()
    };
    let mut v = serde_json::to_value(secret)?;
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Secret");
    Ok(v)
}
