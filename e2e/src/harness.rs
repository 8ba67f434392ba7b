//! Connecting to the cluster KUBECONFIG names (or skipping), a namespace per scenario, deadlines
//! for every request, and waits that report progress and fail with what they saw last.

use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{Config, KubeConfigOptions};
use kube::core::DynamicObject;

use crate::diagnostics;
use crate::error::E2eError;
use crate::resource::{self, CRD_NAME};
use crate::status::Status;

/// What every test prints, and then passes, when there is no cluster to test against.
pub const SKIPPED: &str = "skipped: no cluster";

/// How long the API server gets to answer the first request before we call the cluster absent.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest any single API request may take (the API server answers in milliseconds; a
/// request this slow is stuck, and a stuck request must fail the step that made it, not hang it).
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a wait says what it waits for, even when nothing changed.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(15);

/// Scenarios create several pods each; running them one at a time keeps a small kind cluster
/// (and the timing of each scenario) predictable.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Once one scenario found no cluster, the others skip at once instead of waiting out the timeout.
static NO_CLUSTER: OnceLock<String> = OnceLock::new();

/// `fut` with a deadline of `after`: no answer in time is an error naming `what`.
pub async fn within<T, E, Fut>(after: Duration, what: &str, fut: Fut) -> Result<T, E2eError>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<E2eError>,
{
    match tokio::time::timeout(after, fut).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(E2eError::NoAnswer {
            what: what.to_string(),
            after,
        }),
    }
}

/// One API request (`fut`) with the deadline [`API_TIMEOUT`].
pub async fn timed<T, E, Fut>(what: &str, fut: Fut) -> Result<T, E2eError>
where
    Fut: Future<Output = Result<T, E>>,
    E: Into<E2eError>,
{
    within(API_TIMEOUT, what, fut).await
}

/// What one look at the awaited condition found: done (with a value), or still waiting (with
/// what was seen, for progress lines and the timeout error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe<T> {
    Done(T),
    Waiting(String),
}

impl Probe<()> {
    /// Done when `cond` holds, otherwise waiting with what `seen` describes.
    pub fn done_if(cond: bool, seen: impl FnOnce() -> String) -> Probe<()> {
        if cond {
            Probe::Done(())
        } else {
            Probe::Waiting(seen())
        }
    }
}

/// Progress output of one wait: a line whenever what is seen changes, and at least every
/// [`PROGRESS_EVERY`] while it does not, so a slow step says what it waits for.
pub struct Progress {
    what: String,
    timeout: Duration,
    started: Instant,
    printed_at: Instant,
    printed: Option<String>,
}

impl Progress {
    pub fn new(what: impl Into<String>, timeout: Duration) -> Progress {
        let now = Instant::now();
        Progress {
            what: what.into(),
            timeout,
            started: now,
            printed_at: now,
            printed: None,
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn expired(&self) -> bool {
        self.elapsed() >= self.timeout
    }

    /// Reports `seen` if it is news or the last line is [`PROGRESS_EVERY`] old.
    pub fn tick(&mut self, seen: &str) {
        if self.printed.as_deref() != Some(seen) || self.printed_at.elapsed() >= PROGRESS_EVERY {
            self.print(seen);
        }
    }

    /// Reports `seen` only when the last line is [`PROGRESS_EVERY`] old: for what changes all the
    /// time (counters), where every change would flood the log.
    pub fn heartbeat(&mut self, seen: &str) {
        if self.printed_at.elapsed() >= PROGRESS_EVERY {
            self.print(seen);
        }
    }

    fn print(&mut self, seen: &str) {
        println!(
            "[wait {:>4}s/{}s] {}: {seen}",
            self.elapsed().as_secs(),
            self.timeout.as_secs(),
            self.what
        );
        self.printed = Some(seen.to_string());
        self.printed_at = Instant::now();
    }

    /// The error for a wait that ran out of time, with what it saw last.
    pub fn timed_out(&self, last: String) -> E2eError {
        E2eError::Timeout {
            what: self.what.clone(),
            after: self.timeout,
            last,
        }
    }
}

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

    /// The CacheCluster `name` as JSON.
    pub async fn cache_cluster_json(&self, name: &str) -> Result<serde_json::Value, E2eError> {
        let what = format!("GET CacheCluster {}/{name}", self.ns);
        let obj = timed(&what, self.cache_clusters().get(name)).await?;
        serde_json::to_value(&obj)
            .map_err(|e| E2eError::check(format!("CacheCluster {name} as JSON: {e}")))
    }

    pub async fn status(&self, name: &str) -> Result<Status, E2eError> {
        Ok(Status::of(&self.cache_cluster_json(name).await?))
    }

    /// Waits until the CacheCluster is ready for its current generation. `observe` sees every
    /// status polled on the way (scenarios use it to record migration progress).
    pub async fn wait_ready(
        &self,
        name: &str,
        timeout: Duration,
        mut observe: impl FnMut(&Status),
    ) -> Result<Status, E2eError> {
        let mut progress = Progress::new(
            format!("CacheCluster {}/{name} to be Ready", self.ns),
            timeout,
        );
        loop {
            let last = match self.status(name).await {
                Ok(s) => {
                    observe(&s);
                    if s.is_ready() {
                        return Ok(s);
                    }
                    s.summary()
                }
                Err(e) => format!("error reading status: {e}"),
            };
            progress.tick(&last);
            if progress.expired() {
                return Err(progress.timed_out(last));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Polls `probe` every `every` until it is [`Probe::Done`], or fails after `timeout` with what it
/// saw last. Each probe gets at most [`API_TIMEOUT`]; progress is printed as it goes.
pub async fn poll<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> Result<T, E2eError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Probe<T>, E2eError>>,
{
    let mut progress = Progress::new(what, timeout);
    loop {
        let last = match within(API_TIMEOUT, what, probe()).await {
            Ok(Probe::Done(v)) => return Ok(v),
            Ok(Probe::Waiting(seen)) => seen,
            Err(e) => format!("error: {e}"),
        };
        progress.tick(&last);
        if progress.expired() {
            return Err(progress.timed_out(last));
        }
        tokio::time::sleep(every).await;
    }
}

/// The client settings every request of the suite relies on.
pub fn configure(config: &mut Config) {
    config.connect_timeout = Some(REACH_TIMEOUT);
    config.read_timeout = Some(API_TIMEOUT);
    config.write_timeout = Some(API_TIMEOUT);
    // Without this, the time a pooled connection sat idle counts against the read timeout of the
    // next request on it.
    config.reset_reader_on_write = true;
    // kube retries 503/504/429 on its own (up to 15 times, backing off for minutes). That would
    // hide a node's 503 from the write counts, re-send writes behind the checker's back, and
    // stall a step silently; every retry the suite makes is its own and visible.
    config.default_retry = false;
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
    configure(&mut config);
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
        if timed("GET the CacheCluster CRD", crds.get_opt(CRD_NAME))
            .await?
            .is_none()
        {
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
        timed(
            &format!("create namespace {ns}"),
            namespaces.create(&PostParams::default(), &meta),
        )
        .await?;
        println!("[{ns}] scenario {scenario} starts");
        let result = body(Ctx {
            client: client.clone(),
            ns: ns.clone(),
        })
        .await;
        if let Err(e) = &result {
            println!("[{ns}] scenario {scenario} failed: {e}");
            diagnostics::dump(&client, &ns).await;
        }
        if std::env::var("RINGCACHE_E2E_KEEP").as_deref() == Ok("1") {
            println!("[{ns}] kept (RINGCACHE_E2E_KEEP=1)");
        } else if let Err(e) = timed(
            &format!("delete namespace {ns}"),
            namespaces.delete(&ns, &DeleteParams::background()),
        )
        .await
        {
            println!("[{ns}] could not delete the namespace: {e}");
        }
        result
    });
    if let Err(e) = outcome {
        panic!("{scenario} failed: {e}");
    }
}
