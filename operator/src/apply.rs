//! Carrying out a decision: the only writes of a reconcile pass, in the order that keeps data
//! safe. The ring first (a compare-and-set on the ConfigMap, then a push to every node that is
//! not down), so a commit lands before any pod is removed; then a rollout's pod restart; then
//! the owned objects.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use ringcache_ring::{MemberState, RingDoc};
use serde::Serialize;
use tracing::{info, warn};

use crate::build::{self, FIELD_MANAGER, Owner};
use crate::context::{Context, Error};
use crate::decide::Decision;
use crate::nodes::NodeTarget;
use crate::observed::{Observed, StsObs};
use crate::types::CacheCluster;

/// What applying a decision did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The ring written this pass.
    pub ring: Option<RingDoc>,
    /// Someone else wrote the ring since it was observed: nothing was written; observe again.
    pub ring_conflict: bool,
    /// Why the StatefulSet was left alone (a change Kubernetes forbids on an existing one).
    pub sts_conflict: Option<String>,
    /// The StatefulSet as the apply left it: a template changed this pass shows here as a
    /// generation the controller has not observed yet.
    pub sts: Option<StsObs>,
}

pub async fn apply_decision(
    ctx: &Context,
    owner: &Owner,
    cc: &CacheCluster,
    obs: &Observed,
    decision: &Decision,
) -> Result<Applied, Error> {
    let mut applied = Applied::default();
    let writes = decision.action.writes();
    if let Some(ring) = writes.ring {
        if !write_ring(ctx, owner, ring, obs.ring_version.as_deref()).await? {
            info!(
                epoch = ring.epoch,
                "ring changed since it was read (another writer); observing again"
            );
            applied.ring_conflict = true;
            return Ok(applied);
        }
        push_ring(ctx, &owner.namespace, ring, &obs.token, obs.tls.as_ref()).await;
        if writes.commits_migration {
            ctx.metrics.migration_committed();
        }
        applied.ring = Some(ring.clone());
    }
    if let Some((pod, revision)) = writes.delete_pod {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &owner.namespace);
        match pods.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {
                info!(%pod, %revision, "rolling restart: pod deleted");
                ctx.metrics
                    .pod_restarted(&owner.namespace, &owner.names.cluster);
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(replicas) = decision.sts_replicas {
        let (conflict, sts) = apply_owned(ctx, owner, cc, obs, replicas).await?;
        applied.sts_conflict = conflict;
        applied.sts = sts.as_ref().map(|s| {
            let after = StsObs::of(s);
            // An apply answer without status (some servers, the test fixtures) says nothing
            // about the controller: keep what was observed of it.
            match (&after.update_revision, &obs.sts) {
                (None, Some(before)) => StsObs {
                    generation: after.generation.or(before.generation),
                    ..before.clone()
                },
                _ => after,
            }
        });
        if let Some(c) = &applied.sts_conflict {
            warn!(conflict = %c, "StatefulSet not updated");
        }
    }
    Ok(applied)
}

/// Writes the ring ConfigMap only if it is still the version observed (`None`: only if it does
/// not exist yet). Returns false when another writer got there first: two operators (a leader
/// handover) must never both write a ring of the same epoch.
async fn write_ring(
    ctx: &Context,
    owner: &Owner,
    ring: &RingDoc,
    observed_version: Option<&str>,
) -> Result<bool, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let mut cm = build::ring_config_map(owner, ring);
    let result = match observed_version {
        None => api.create(&PostParams::default(), &cm).await.map(|_| ()),
        Some(v) => {
            cm.metadata.resource_version = Some(v.to_string());
            apply(&api, &cm).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Push to every member that is not down; a node that misses it still reads the mounted
/// ConfigMap and learns the epoch from peers, so failures are logged, not fatal.
async fn push_ring(
    ctx: &Context,
    ns: &str,
    ring: &RingDoc,
    token: &str,
    tls: Option<&std::sync::Arc<crate::nodes::NodeTls>>,
) {
    for m in ring
        .members
        .iter()
        .filter(|m| m.state != MemberState::Down && !m.addr.is_empty())
    {
        let target = NodeTarget {
            namespace: ns.to_string(),
            pod: m.id.clone(),
            addr: m.addr.clone(),
            tls: tls.cloned(),
        };
        match ctx.nodes.push_ring(&target, ring, token).await {
            Ok(()) => ctx.metrics.ring_pushed(true),
            Err(e) if e.is_conflict() => {
                ctx.metrics.ring_pushed(true);
                info!(member = %m.id, error = %e, "node refused the ring as not newer");
            }
            Err(e) => {
                ctx.metrics.ring_pushed(false);
                warn!(member = %m.id, error = %e, "ring push failed");
            }
        }
    }
}

/// Applies the Services, StatefulSet and PDB. Returns why the StatefulSet was left alone when
/// the spec asks for a change Kubernetes forbids on an existing one, and the StatefulSet as
/// applied.
async fn apply_owned(
    ctx: &Context,
    owner: &Owner,
    cc: &CacheCluster,
    obs: &Observed,
    replicas: u32,
) -> Result<(Option<String>, Option<StatefulSet>), Error> {
    let ns = &owner.namespace;
    let client = &ctx.client;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    apply(&services, &build::peers_service(owner)).await?;
    apply(&services, &build::client_service(owner, cc)).await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let desired = build::stateful_set(owner, cc, i32::try_from(replicas).unwrap_or(i32::MAX));
    let conflict = obs
        .sts_object
        .as_ref()
        .and_then(|existing| build::immutable_conflict(existing, &desired));
    let applied = match conflict {
        None => Some(apply(&sets, &desired).await?),
        Some(_) => None,
    };
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    match build::pod_disruption_budget(owner, cc) {
        Some(pdb) => {
            apply(&pdbs, &pdb).await?;
        }
        None => match pdbs
            .delete(&owner.names.pdb(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        },
    }
    Ok((conflict, applied))
}

/// Server-side apply with our field manager; `force` takes over fields from older managers
/// (e.g. `kubectl scale` on the StatefulSet), since the operator owns these objects.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}
