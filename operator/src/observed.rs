//! What the operator observes about a cluster, reduced to the facts the pure logic needs, and
//! the one function that observes it ([`observe`]: the only reads of a reconcile pass).

use std::collections::BTreeMap;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use ringcache_ring::RingDoc;
use serde::{Deserialize, Serialize};
use tracing::warn;

use std::sync::Arc;

use crate::build::{self, Owner, RING_KEY, TLS_CA_KEY, TOKEN_KEY};
use crate::context::{Context, Error};
use crate::nodes::{NodeTarget, NodeTls};
use crate::types::{CacheCluster, CacheClusterStatus};

/// The StatefulSet pod label that names the revision a pod was created from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// One pod of the cluster's StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodObs {
    pub name: String,
    /// The pod's Ready condition is True.
    pub ready: bool,
    pub ip: Option<String>,
    /// deletionTimestamp is set: it is going away, whatever its readiness says.
    pub terminating: bool,
    /// The StatefulSet revision the pod was created from (`controller-revision-hash`).
    pub revision: Option<String>,
}

impl PodObs {
    /// Serving as far as Kubernetes can tell: ready, addressable and not being deleted.
    pub fn is_live(&self) -> bool {
        self.ready && self.addressable()
    }

    /// Has an address and is not being deleted: its node may answer even while not ready (a
    /// node is not ready until it has recovered, and it recovers only once the operator has
    /// seen it).
    pub fn addressable(&self) -> bool {
        !self.terminating && self.ip.as_deref().is_some_and(|ip| !ip.is_empty())
    }
}

/// What the operator reads of the StatefulSet it owns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StsObs {
    /// The revision pods created now get (`status.updateRevision`); pods of another revision
    /// are restarted one at a time by the operator (`updateStrategy: OnDelete`).
    pub update_revision: Option<String>,
    /// `metadata.generation`: moves with every change of the spec (template, replicas).
    pub generation: Option<i64>,
    /// `status.observedGeneration`: the generation the StatefulSet controller last acted on.
    pub observed_generation: Option<i64>,
}

impl StsObs {
    pub fn of(s: &StatefulSet) -> StsObs {
        let status = s.status.as_ref();
        StsObs {
            update_revision: status.and_then(|st| st.update_revision.clone()),
            generation: s.metadata.generation,
            observed_generation: status.and_then(|st| st.observed_generation),
        }
    }

    /// The StatefulSet controller has acted on the current spec, so its status (update
    /// revision, replica counts) describes it. A real controller writes status some time after
    /// a change: until then `updateRevision` still names the old template and every pod looks
    /// updated, which is how a rollout was once reported done before it started.
    pub fn settled(&self) -> bool {
        match (self.generation, self.observed_generation) {
            (Some(g), Some(o)) => o >= g,
            // An API server that does not track generations cannot lag behind one.
            (None, _) => true,
            (Some(_), None) => false,
        }
    }

    /// The update revision, only when the controller has caught up with the spec.
    pub fn trusted_revision(&self) -> Option<&str> {
        self.settled()
            .then_some(self.update_revision.as_deref())
            .flatten()
    }
}

/// A node's `GET /internal/v1/migration` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationReport {
    pub epoch: u64,
    #[serde(default)]
    pub partitions_total: u64,
    #[serde(default)]
    pub partitions_done: u64,
    #[serde(default)]
    pub keys: u64,
    #[serde(default)]
    pub bytes: u64,
    pub done: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// The reporting process's incarnation (absent from nodes older than incarnations).
    #[serde(default)]
    pub incarnation: Option<String>,
    /// Partitions no complete copy was left to pull from.
    #[serde(default)]
    pub unrecoverable: Vec<u32>,
    /// Members that missed a write this node acknowledged without them.
    #[serde(default)]
    pub stale_replicas: Vec<String>,
}

impl MigrationReport {
    /// Done with every pull that ring `epoch` asks of this node.
    pub fn done_for(&self, epoch: u64) -> bool {
        self.epoch == epoch && self.done && self.error.is_none()
    }
}

/// Everything one pass observed.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The ring in the `NAME-ring` ConfigMap.
    pub ring: Option<RingDoc>,
    /// The ConfigMap's resourceVersion: the next ring write is a compare-and-set against it.
    pub ring_version: Option<String>,
    /// Why the ConfigMap's ring could not be used (then nothing may overwrite it).
    pub ring_problem: Option<String>,
    pub token: String,
    pub pods: BTreeMap<String, PodObs>,
    pub sts: Option<StsObs>,
    /// The StatefulSet as read (for the immutable-field check before applying).
    pub sts_object: Option<StatefulSet>,
    /// Migration reports by pod name, from every addressable pod that answered.
    pub reports: BTreeMap<String, MigrationReport>,
    /// How to trust the nodes when `spec.tls` is set.
    pub tls: Option<Arc<NodeTls>>,
    /// Why `spec.tls` cannot be used (its Secret is missing or has no usable `ca.crt`).
    pub tls_problem: Option<String>,
    /// The CacheCluster's status as the API server has it now. The object a reconcile is
    /// handed comes from the watch cache and may predate the status the previous pass wrote;
    /// building on that would forget what the previous pass recorded (a migration's start).
    pub status: Option<CacheClusterStatus>,
}

/// The CA and server name of `spec.tls`, read from its Secret.
async fn observe_tls(
    client: &Client,
    owner: &Owner,
    tls: Option<&crate::types::Tls>,
) -> Result<(Option<Arc<NodeTls>>, Option<String>), Error> {
    let Some(tls) = tls else {
        return Ok((None, None));
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), &owner.namespace);
    let problem = |what: &str| {
        Ok((
            None,
            Some(format!(
                "spec.tls.secretName {}: {what} (a kubernetes.io/tls Secret with tls.crt, tls.key and ca.crt, as cert-manager writes)",
                tls.secret_name
            )),
        ))
    };
    let Some(secret) = api.get_opt(&tls.secret_name).await? else {
        return problem("no such Secret");
    };
    let Some(ca) = secret
        .data
        .as_ref()
        .and_then(|d| d.get(TLS_CA_KEY))
        .map(|b| b.0.clone())
    else {
        return problem("no ca.crt key");
    };
    if let Err(e) = ringcache_common::tls::certs(&ca) {
        return problem(&format!("ca.crt is not usable: {e}"));
    }
    Ok((
        Some(Arc::new(NodeTls {
            ca_pem: ca,
            server_name: owner.names.tls_server_name(&owner.namespace),
        })),
        None,
    ))
}

pub async fn observe(ctx: &Context, owner: &Owner, cc: &CacheCluster) -> Result<Observed, Error> {
    let client = &ctx.client;
    let ns = &owner.namespace;
    let names = &owner.names;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = config_maps.get_opt(&names.ring_config_map()).await?;
    let ring_version = cm
        .as_ref()
        .and_then(|c| c.metadata.resource_version.clone());
    let (ring, ring_problem) = match cm.as_ref().and_then(|c| c.data.as_ref()?.get(RING_KEY)) {
        None => (None, None),
        Some(json) => match RingDoc::from_json(json.as_bytes()) {
            Ok(r) => (Some(r), None),
            Err(e) => (
                None,
                Some(format!(
                    "ConfigMap {} holds an invalid ring ({e}); fix or delete it",
                    names.ring_config_map()
                )),
            ),
        },
    };
    let token = ensure_internal_secret(client, owner).await?;
    let pods = observe_pods(client, owner).await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts_object = sets.get_opt(&names.stateful_set()).await?;
    let sts = sts_object.as_ref().map(StsObs::of);
    let (tls, tls_problem) = observe_tls(client, owner, cc.spec.tls.as_ref()).await?;
    let status = Api::<CacheCluster>::namespaced(client.clone(), ns)
        .get_opt(&cc.name_any())
        .await?
        .and_then(|c| c.status)
        .or_else(|| cc.status.clone());
    let reports = match &ring {
        Some(r) => collect_reports(ctx, ns, r, &pods, &token, tls.as_ref()).await,
        None => BTreeMap::new(),
    };
    Ok(Observed {
        ring,
        ring_version,
        ring_problem,
        token,
        pods,
        sts,
        sts_object,
        reports,
        tls,
        tls_problem,
        status,
    })
}

/// The internal token Secret is created once and then only read: re-applying it with a new
/// random token would cut every node off the internal API.
async fn ensure_internal_secret(client: &Client, owner: &Owner) -> Result<String, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &owner.namespace);
    let name = owner.names.internal_secret();
    let existing = match api.get_opt(&name).await? {
        Some(s) => s,
        None => {
            let token = build::random_token().map_err(|e| Error::Token(e.to_string()))?;
            match api
                .create(
                    &PostParams::default(),
                    &build::internal_secret(owner, &token),
                )
                .await
            {
                Ok(s) => s,
                // Created concurrently (another pass, another operator instance): use theirs.
                Err(kube::Error::Api(s)) if s.code == 409 => api.get(&name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    existing
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
        .filter(|t| !t.is_empty())
        .ok_or(Error::BadSecret(name))
}

async fn observe_pods(
    client: &Client,
    owner: &Owner,
) -> Result<BTreeMap<String, PodObs>, kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &owner.namespace);
    let list = api
        .list(&ListParams::default().labels(&build::selector_string(&owner.names.cluster)))
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| owner.names.ordinal_of(&p.name_any()).is_some())
        .map(|p| {
            let obs = pod_obs(&p);
            (obs.name.clone(), obs)
        })
        .collect())
}

pub fn pod_obs(p: &Pod) -> PodObs {
    let status = p.status.as_ref();
    PodObs {
        name: p.name_any(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        ip: status
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty()),
        terminating: p.metadata.deletion_timestamp.is_some(),
        revision: p.labels().get(REVISION_LABEL).cloned(),
    }
}

/// Migration reports from every pod that has an address and is not going away, asked at once:
/// members (progress, incarnation, losses, stale replicas) and pods about to join. A node that
/// has not seen the current epoch yet gets the ring pushed again (it may have missed the push).
async fn collect_reports(
    ctx: &Context,
    ns: &str,
    ring: &RingDoc,
    pods: &BTreeMap<String, PodObs>,
    token: &str,
    tls: Option<&Arc<NodeTls>>,
) -> BTreeMap<String, MigrationReport> {
    let targets: Vec<NodeTarget> = pods
        .values()
        .filter(|p| p.addressable())
        .map(|p| NodeTarget {
            namespace: ns.to_string(),
            pod: p.name.clone(),
            addr: crate::members::addr_of(p.ip.as_deref().unwrap_or_default()),
            tls: tls.cloned(),
        })
        .collect();
    let answers = join_all(targets.iter().map(|t| async move {
        let r = ctx.nodes.migration(t, token).await;
        (t, r)
    }))
    .await;
    let mut reports = BTreeMap::new();
    for (target, answer) in answers {
        match answer {
            Ok(report) => {
                if report.epoch < ring.epoch
                    && ring.member_index(&target.pod).is_some()
                    && let Err(e) = ctx.nodes.push_ring(target, ring, token).await
                {
                    warn!(member = %target.pod, error = %e, "re-push of the ring failed");
                }
                reports.insert(target.pod.clone(), report);
            }
            Err(e) => warn!(pod = %target.pod, error = %e, "no migration report"),
        }
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_facts_come_from_conditions_ip_deletion_and_revision_label() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-0", "labels": {"controller-revision-hash": "demo-abc"}},
            "status": {"podIP": "10.1.2.3", "conditions": [
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": "False"}
            ]}
        }))
        .unwrap();
        let obs = pod_obs(&pod);
        assert!(!obs.ready);
        assert!(obs.addressable());
        assert_eq!(obs.ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(obs.revision.as_deref(), Some("demo-abc"));
        let mut ready = pod.clone();
        if let Some(cs) = ready.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            cs[1].status = "True".into();
        }
        assert!(pod_obs(&ready).is_live());
        let mut deleting = ready.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert!(!pod_obs(&deleting).is_live());
    }

    #[test]
    fn report_parses_the_node_format() {
        let r: MigrationReport = serde_json::from_str(
            r#"{"epoch":7,"partitionsTotal":10,"partitionsDone":10,"keys":5,"bytes":99,"done":true,"error":null}"#,
        )
        .unwrap();
        assert!(r.done_for(7));
        assert!(!r.done_for(8));
        assert_eq!(r.bytes, 99);
    }

    #[test]
    fn report_carries_incarnation_losses_and_stale_replicas() {
        let r: MigrationReport = serde_json::from_str(
            r#"{"epoch":3,"done":true,"error":null,"incarnation":"ab12","unrecoverable":[4,9],"staleReplicas":["demo-2"],"ready":true}"#,
        )
        .unwrap();
        assert_eq!(r.incarnation.as_deref(), Some("ab12"));
        assert_eq!(r.unrecoverable, vec![4, 9]);
        assert_eq!(r.stale_replicas, vec!["demo-2".to_string()]);
    }

    #[test]
    fn a_report_with_an_error_is_not_done() {
        let r = MigrationReport {
            epoch: 3,
            done: true,
            error: Some("source gone".into()),
            ..MigrationReport::default()
        };
        assert!(!r.done_for(3));
    }

    #[test]
    fn liveness_needs_ready_ip_and_not_terminating() {
        let live = PodObs {
            name: "a-0".into(),
            ready: true,
            ip: Some("10.0.0.1".into()),
            terminating: false,
            revision: Some("demo-7d9f".into()),
        };
        assert!(live.is_live());
        assert!(
            !PodObs {
                ready: false,
                ..live.clone()
            }
            .is_live()
        );
        assert!(
            !PodObs {
                ip: None,
                ..live.clone()
            }
            .is_live()
        );
        let terminating = PodObs {
            terminating: true,
            ..live.clone()
        };
        assert!(!terminating.is_live() && !terminating.addressable());
        let unready = PodObs {
            ready: false,
            ..live
        };
        assert!(!unready.is_live() && unready.addressable());
    }
}
