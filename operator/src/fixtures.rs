//! Test fixtures: a scripted mock API server (tower-test) that asserts the exact sequence of
//! requests a reconcile pass makes, and a fake node API. No network, no kubeconfig.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use ringcache_ring::RingDoc;
use serde_json::{Value, json};

use crate::metrics::Metrics;
use crate::nodes::{NodeApi, NodeError, NodeTarget};
use crate::observed::MigrationReport;
use crate::reconcile::{self, Context};
use crate::types::CacheCluster;

pub const NS: &str = "cache";
/// The resourceVersion of the ring ConfigMap the fixtures serve.
pub const RING_VERSION: &str = "41";

/// How the mock answers one expected request.
pub enum Reply {
    Json(u16, Value),
    /// 200 with the request body (what server-side apply returns, near enough).
    Echo,
    NotFound,
}

pub struct Expect {
    pub method: Method,
    pub path: String,
    pub reply: Reply,
}

pub fn expect(method: Method, path: impl Into<String>, reply: Reply) -> Expect {
    Expect {
        method,
        path: path.into(),
        reply,
    }
}

/// A request the mock saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

fn not_found() -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "not found", "reason": "NotFound", "code": 404
    })
}

#[derive(Default)]
pub struct FakeNodes {
    pub reports: BTreeMap<String, MigrationReport>,
    pub pushes: Mutex<Vec<(String, u64)>>,
}

impl FakeNodes {
    pub fn with_reports(reports: BTreeMap<String, MigrationReport>) -> Self {
        FakeNodes {
            reports,
            ..FakeNodes::default()
        }
    }

    pub fn pushed_to(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .pushes
            .lock()
            .map(|p| p.iter().map(|(pod, _)| pod.clone()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl NodeApi for FakeNodes {
    fn push_ring<'a>(
        &'a self,
        node: &'a NodeTarget,
        ring: &'a RingDoc,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<(), NodeError>> {
        Box::pin(async move {
            if let Ok(mut p) = self.pushes.lock() {
                p.push((node.pod.clone(), ring.epoch));
            }
            Ok(())
        })
    }

    fn migration<'a>(
        &'a self,
        node: &'a NodeTarget,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<MigrationReport, NodeError>> {
        Box::pin(async move {
            self.reports
                .get(&node.pod)
                .cloned()
                .ok_or_else(|| NodeError::Transport {
                    pod: node.pod.clone(),
                    message: "unreachable (fake)".into(),
                })
        })
    }
}

/// Runs one reconcile pass against the script. Panics on any request out of order or beyond
/// the script; returns the pass's result and every request seen.
pub async fn run_pass(
    cc: CacheCluster,
    nodes: Arc<FakeNodes>,
    script: Vec<Expect>,
) -> (
    Result<kube::runtime::controller::Action, reconcile::Error>,
    Vec<Seen>,
) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let verifier = tokio::spawn(async move {
        let mut seen = Vec::new();
        for (i, step) in script.into_iter().enumerate() {
            let (req, send) = handle.next_request().await.unwrap_or_else(|| {
                panic!(
                    "step {i}: expected {} {}, got nothing",
                    step.method, step.path
                )
            });
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            assert_eq!(
                (&method, path.as_str()),
                (&step.method, step.path.as_str()),
                "step {i}: unexpected request (query {query})"
            );
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            let (status, reply) = match step.reply {
                Reply::Json(status, v) => (status, v),
                Reply::Echo => (200, body.clone()),
                Reply::NotFound => (404, not_found()),
            };
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
            seen.push(Seen {
                method,
                path,
                query,
                body,
            });
        }
        if let Some((req, _)) = handle.next_request().await {
            panic!("unexpected extra request {} {}", req.method(), req.uri());
        }
        seen
    });
    let client = Client::new(service, NS);
    let ctx = Arc::new(Context {
        client: client.clone(),
        nodes,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "ringcache-operator".into(),
                instance: None,
            },
        ),
        metrics: Arc::new(Metrics::default()),
    });
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile::reconcile(Arc::new(cc), ctx.clone()),
    )
    .await
    .expect("reconcile hung: a request had no scripted answer");
    drop(ctx);
    let seen = tokio::time::timeout(Duration::from_secs(10), verifier)
        .await
        .expect("verifier hung")
        .expect("verifier panicked");
    (result, seen)
}

// Paths of the objects of CacheCluster `demo` in namespace `cache`.
pub fn cm_path() -> String {
    format!("/api/v1/namespaces/{NS}/configmaps/demo-ring")
}
pub fn cms_path() -> String {
    format!("/api/v1/namespaces/{NS}/configmaps")
}
pub fn pod_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/pods/{name}")
}
pub fn secret_path() -> String {
    format!("/api/v1/namespaces/{NS}/secrets/demo-internal")
}
pub fn secrets_path() -> String {
    format!("/api/v1/namespaces/{NS}/secrets")
}
pub fn pods_path() -> String {
    format!("/api/v1/namespaces/{NS}/pods")
}
pub fn svc_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/services/{name}")
}
pub fn sts_path() -> String {
    format!("/apis/apps/v1/namespaces/{NS}/statefulsets/demo")
}
pub fn pdb_path() -> String {
    format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/demo")
}
pub fn events_path() -> String {
    format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
}
pub fn cc_path() -> String {
    format!("/apis/ringcache.io/v1alpha1/namespaces/{NS}/cacheclusters/demo")
}
pub fn status_path() -> String {
    format!("/apis/ringcache.io/v1alpha1/namespaces/{NS}/cacheclusters/demo/status")
}

pub fn ring_cm(ring: &RingDoc) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "demo-ring", "namespace": NS, "resourceVersion": RING_VERSION},
        "data": {"ring.json": ring.to_json_pretty()}
    })
}

pub fn secret() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "demo-internal", "namespace": NS},
        // base64("secret-token")
        "data": {"token": "c2VjcmV0LXRva2Vu"}
    })
}

/// Pods `demo-0..` with the given readiness; pod i has IP 10.0.0.i and revision `demo-new`.
pub fn pod_list(ready: &[bool]) -> Value {
    pod_list_at(ready, &[])
}

/// [`pod_list`] with the pods whose ordinals are in `outdated` at revision `demo-old`.
pub fn pod_list_at(ready: &[bool], outdated: &[usize]) -> Value {
    let items: Vec<Value> = ready
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let revision = if outdated.contains(&i) {
                "demo-old"
            } else {
                "demo-new"
            };
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("demo-{i}"), "namespace": NS,
                    "labels": {"controller-revision-hash": revision}
                },
                "status": {
                    "podIP": format!("10.0.0.{i}"),
                    "conditions": [{"type": "Ready", "status": if *r { "True" } else { "False" }}]
                }
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
}

/// The StatefulSet of `cc` as observed, mid-rollout to update revision `demo-new`.
pub fn sts_observed(cc: &CacheCluster) -> Value {
    let owner = crate::build::Owner::of(cc).unwrap();
    let mut sts = serde_json::to_value(crate::build::stateful_set(&owner, cc, 3)).unwrap();
    sts["status"] =
        json!({"replicas": 3, "updateRevision": "demo-new", "currentRevision": "demo-old"});
    sts
}

/// The CacheCluster JSON as the status patch returns it.
pub fn cc_json(cc: &CacheCluster) -> Value {
    serde_json::to_value(cc).unwrap()
}

/// The ring document inside a ConfigMap apply body.
pub fn ring_in(body: &Value) -> RingDoc {
    RingDoc::from_json(body["data"]["ring.json"].as_str().unwrap().as_bytes()).unwrap()
}
