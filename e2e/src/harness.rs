//! Connecting to the cluster KUBECONFIG names (or skipping), a namespace per scenario, and polling
//! with deadlines.

use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{Config, KubeConfigOptions};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};

use crate::error::E2eError;
use crate::resource::{self, CRD_NAME};
use crate::status::Status;

/// What every test prints, and then passes, when there is no cluster to test against.
pub const SKIPPED: &str = "skipped: no cluster";

/// How long the API server gets to answer the first request before we call the cluster absent.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// Scenarios create several pods each; running them one at a time keeps a small kind cluster
/// (and the timing of each scenario) predictable.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Once one scenario found no cluster, the others skip at once instead of waiting out the timeout.
static NO_CLUSTER: OnceLock<String> = OnceLock::new();

/// What a scenario gets: a client and a fresh namespace of its own.
#[derive(Clone)]
pub struct Ctx {
    pub client: Client,
    pub ns: String,
}

impl Ctx {
    pub fn cache_clusters(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.ns, &resource::api_resource())
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn status(&self, name: &str) -> Result<Status, E2eError> {
        let obj = self.cache_clusters().get(name).await?;
        let json = serde_json::to_value(&obj)
            .map_err(|e| E2eError::check(format!("CacheCluster {name} as JSON: {e}")))?;
        Ok(Status::of(&json))
    }

    /// Waits until the CacheCluster is ready for its current generation. `observe` sees every
    /// status polled on the way (scenarios use it to record migration progress).
    pub async fn wait_ready(
        &self,
        name: &str,
        timeout: Duration,
        mut observe: impl FnMut(&Status),
    ) -> Result<Status, E2eError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("(no status read yet)");
        loop {
            match self.status(name).await {
                Ok(s) => {
                    observe(&s);
                    if s.is_ready() {
                        return Ok(s);
                    }
                    let summary = s.summary();
                    if summary != last {
                        println!("[{}] {name}: {summary}", self.ns);
                        last = summary;
                    }
                }
                Err(e) => last = format!("error reading status: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(E2eError::Timeout {
                    what: format!("CacheCluster {}/{name} to be Ready", self.ns),
                    after: timeout,
                    last,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Polls `probe` every `every` until it returns `Some`, or fails after `timeout`.
pub async fn poll<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> Result<T, E2eError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E2eError>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(E2eError::Timeout {
                what: what.to_string(),
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(every).await;
    }
}

/// A client for the cluster KUBECONFIG names, or `None` (with the reason) when there is none or it
/// does not answer within [`REACH_TIMEOUT`]. Only the kubeconfig is read: no in-cluster fallback and
/// no default cluster, so these tests never contact anything KUBECONFIG did not name.
pub async fn connect() -> Result<Client, String> {
    match std::env::var_os("KUBECONFIG") {
        Some(v) if !v.is_empty() => {}
        _ => return Err("KUBECONFIG is not set".into()),
    }
    let mut config = Config::from_kubeconfig(&KubeConfigOptions::default())
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    config.connect_timeout = Some(REACH_TIMEOUT);
    config.read_timeout = Some(Duration::from_secs(60));
    let client = Client::try_from(config).map_err(|e| format!("client: {e}"))?;
    match tokio::time::timeout(REACH_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(e)) => Err(format!("API server: {e}")),
        Err(_) => Err(format!(
            "API server did not answer within {REACH_TIMEOUT:?}"
        )),
    }
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id() % 0xfff, nanos % 0xfffff)
}

/// Runs one scenario: skips (passes) without a cluster; otherwise checks that ringcache is
/// installed, gives the scenario its own namespace, and deletes that namespace afterwards (unless
/// `RINGCACHE_E2E_KEEP=1`, for debugging). A scenario error fails the test with its message.
pub fn run<F, Fut>(scenario: &str, body: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<(), E2eError>>,
{
    // A failed scenario poisons the lock; the next one must still run.
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("{scenario}: cannot start a tokio runtime: {e}"),
    };
    if let Some(reason) = NO_CLUSTER.get() {
        println!("{SKIPPED} ({scenario}: {reason})");
        return;
    }
    let outcome = rt.block_on(async {
        let client = match connect().await {
            Ok(c) => c,
            Err(reason) => {
                println!("{SKIPPED} ({scenario}: {reason})");
                let _ = NO_CLUSTER.set(reason);
                return Ok(());
            }
        };
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        if crds.get_opt(CRD_NAME).await?.is_none() {
            return Err(E2eError::check(format!(
                "the cluster KUBECONFIG names has no {CRD_NAME} CRD: install ringcache first \
                 (e2e/kind.sh does, or `helm install ringcache charts/ringcache`)"
            )));
        }
        let ns = format!("rc-e2e-{scenario}-{}", unique_suffix());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let meta = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                labels: Some([("ringcache.io/e2e".to_string(), scenario.to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces.create(&PostParams::default(), &meta).await?;
        println!("[{ns}] scenario {scenario} starts");
        let result = body(Ctx {
            client: client.clone(),
            ns: ns.clone(),
        })
        .await;
        if result.is_err() {
            dump_namespace(&client, &ns).await;
        }
        if std::env::var("RINGCACHE_E2E_KEEP").as_deref() == Ok("1") {
            println!("[{ns}] kept (RINGCACHE_E2E_KEEP=1)");
        } else if let Err(e) = namespaces.delete(&ns, &DeleteParams::background()).await {
            println!("[{ns}] could not delete the namespace: {e}");
        }
        result
    });
    if let Err(e) = outcome {
        panic!("{scenario} failed: {e}");
    }
}

/// On failure: what the CacheClusters and pods looked like, so a CI log explains itself.
async fn dump_namespace(client: &Client, ns: &str) {
    let ccs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &resource::api_resource());
    if let Ok(list) = ccs.list(&Default::default()).await {
        for cc in list {
            let json = serde_json::to_string_pretty(&cc.data).unwrap_or_default();
            println!("[{ns}] CacheCluster {}:\n{json}", cc.name_any());
        }
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    if let Ok(list) = pods.list(&Default::default()).await {
        for p in list {
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            println!("[{ns}] pod {} phase={phase}", p.name_any());
        }
    }
}
