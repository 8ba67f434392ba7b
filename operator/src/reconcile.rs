//! One reconcile pass: observe (ring ConfigMap, internal Secret, pods, node reports) → decide
//! (pure) → apply (ring, push, owned objects, events, status). Level-triggered and idempotent:
//! every pass starts from what it observes, never from what an earlier pass meant to do.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use ringcache_ring::{MemberState, RingDoc};
use serde::Serialize;
use tracing::{Instrument, info, warn};

use crate::build::{self, FIELD_MANAGER, Owner, RING_KEY, TOKEN_KEY};
use crate::decide::{self, Action, Decision, Inputs};
use crate::metrics::{ClusterGauges, Metrics};
use crate::nodes::{NodeApi, NodeTarget};
use crate::observed::{MigrationReport, PodObs};
use crate::ringdoc;
use crate::status::{self, StatusInputs};
use crate::types::{CacheCluster, CacheClusterStatus};

/// While something is moving, poll the nodes this often.
pub const ACTIVE_REQUEUE: Duration = Duration::from_secs(2);
/// A steady cluster is re-checked at least this often (watches trigger earlier).
pub const IDLE_REQUEUE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Build(#[from] build::BuildError),
    #[error(transparent)]
    Decide(#[from] decide::DecideError),
    #[error("cannot generate the internal token: {0}")]
    Token(String),
    #[error("Secret {0} has no usable `token` key")]
    BadSecret(String),
}

impl Error {
    /// Short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Build(_) => "build",
            Error::Decide(_) => "decide",
            Error::Token(_) => "token",
            Error::BadSecret(_) => "secret",
        }
    }
}

pub struct Context {
    pub client: Client,
    pub nodes: Arc<dyn NodeApi>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

pub async fn reconcile(cc: Arc<CacheCluster>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let span = tracing::info_span!("reconcile", name = %cc.name_any(), namespace = ?cc.namespace());
    let result = reconcile_pass(&cc, &ctx).instrument(span).await;
    ctx.metrics.observe_reconcile(
        started.elapsed(),
        result.as_ref().err().map(Error::metric_label),
    );
    result
}

/// Error policy: back off, more the more often the same cluster fails (capped).
pub fn error_policy(cc: Arc<CacheCluster>, err: &Error, ctx: Arc<Context>) -> Requeue {
    let failures = ctx.metrics.note_failure(&cc.name_any());
    warn!(name = %cc.name_any(), namespace = ?cc.namespace(), error = %err, failures, "reconcile failed");
    Requeue::requeue(backoff(failures))
}

pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64 << failures.min(8).saturating_sub(1);
    Duration::from_secs(secs.min(300))
}

async fn reconcile_pass(cc: &CacheCluster, ctx: &Context) -> Result<Requeue, Error> {
    let owner = Owner::of(cc)?;
    let ns = owner.namespace.clone();
    let names = owner.names.clone();
    let client = ctx.client.clone();

    // Observe.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let (ring, ring_problem) = match config_maps.get_opt(&names.ring_config_map()).await? {
        None => (None, None),
        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(RING_KEY)) {
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
        },
    };
    let token = ensure_internal_secret(&client, &owner).await?;
    let pods = observe_pods(&client, &owner).await?;
    let reports = match &ring {
        Some(r) => collect_reports(ctx, &ns, r, &pods, &token).await,
        None => BTreeMap::new(),
    };

    // Decide.
    let previous = cc.status.as_ref();
    let decision = if let Some(problem) = &ring_problem {
        // Never overwrite a ring we cannot read: it may be the only record of a migration.
        warn!(%problem, "not acting");
        Decision {
            sts_replicas: None,
            action: Action::Steady,
        }
    } else {
        decide::decide(&Inputs {
            names: &names,
            spec: &cc.spec,
            ring: ring.as_ref(),
            pods: &pods,
            reports: &reports,
        })?
    };
    info!(action = action_name(&decision.action), sts_replicas = ?decision.sts_replicas, "decided");

    // Apply: the ring first (pods mount it; a commit must land before any pod is removed).
    let new_ring = match &decision.action {
        Action::CreateRing(r)
        | Action::UpdateMembers { ring: r, .. }
        | Action::StartMigration { ring: r, .. }
        | Action::Commit { ring: r, .. } => Some(r),
        _ => None,
    };
    if let Some(r) = new_ring {
        apply(&config_maps, &build::ring_config_map(&owner, r)).await?;
        push_ring(ctx, &ns, r, &token).await;
        if matches!(decision.action, Action::Commit { .. }) {
            ctx.metrics.migration_committed();
        }
    }
    let mut problem = ring_problem;
    if let Some(replicas) = decision.sts_replicas
        && let Some(conflict) = apply_owned(&client, &owner, cc, replicas).await?
    {
        warn!(%conflict, "StatefulSet not updated");
        problem.get_or_insert(conflict);
    }

    // Record.
    let ring_after = new_ring.or(ring.as_ref());
    let (migration_partitions_done, migration_partitions_total) = match &decision.action {
        Action::WaitMigration(p) => (p.partitions_done, p.partitions_total),
        _ => (0, 0),
    };
    ctx.metrics.set_cluster(
        &ns,
        &names.cluster,
        ClusterGauges {
            members_down: ring_after.map_or(0, |r| {
                r.members
                    .iter()
                    .filter(|m| m.state == MemberState::Down)
                    .count()
            }),
            migration_partitions_done,
            migration_partitions_total,
        },
    );
    for ev in status::events_for(&decision, previous) {
        publish(ctx, cc, &ev).await;
    }
    if let Some(p) = &problem
        && !was_degraded_with(previous, Some(p))
    {
        publish(
            ctx,
            cc,
            &status::EventSpec {
                warning: true,
                reason: "Blocked",
                note: p.clone(),
            },
        )
        .await;
    }
    let new_status = status::build_status(&StatusInputs {
        cluster: &names.cluster,
        generation: cc.metadata.generation,
        desired_replicas: cc.spec.replicas,
        previous,
        decision: &decision,
        ring: ring_after,
        pods: &pods,
        now: Timestamp::now(),
        problem,
    });
    patch_status(&client, cc, &ns, new_status).await?;
    ctx.metrics.reset_failures(&names.cluster);

    Ok(match decision.action {
        Action::Steady => {
            if ring_after.is_some_and(|r| r.members.iter().all(|m| m.state == MemberState::Up)) {
                Requeue::requeue(IDLE_REQUEUE)
            } else {
                Requeue::requeue(ACTIVE_REQUEUE)
            }
        }
        Action::Invalid(_) => Requeue::requeue(IDLE_REQUEUE),
        _ => Requeue::requeue(ACTIVE_REQUEUE),
    })
}

fn was_degraded_with(previous: Option<&CacheClusterStatus>, message: Option<&str>) -> bool {
    previous.is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == status::COND_DEGRADED
                && c.status == "True"
                && Some(c.message.as_str()) == message
        })
    })
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Invalid(_) => "invalid",
        Action::CreateRing(_) => "create-ring",
        Action::UpdateMembers { .. } => "update-members",
        Action::WaitPods { .. } => "wait-pods",
        Action::WaitMembers { .. } => "wait-members",
        Action::StartMigration { .. } => "start-migration",
        Action::WaitMigration(_) => "wait-migration",
        Action::Commit { .. } => "commit",
        Action::Steady => "steady",
    }
}

/// Server-side apply with our field manager; `force` takes over fields from older managers
/// (e.g. `kubectl scale` on the StatefulSet), since the operator owns these objects.
async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
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
    }
}

/// Migration reports from the members whose progress decides something: recovering members
/// and, while a migration is pending, its target owners. A node that has not seen the current
/// epoch yet gets the ring pushed again (it may have missed the push).
async fn collect_reports(
    ctx: &Context,
    ns: &str,
    ring: &RingDoc,
    pods: &BTreeMap<String, PodObs>,
    token: &str,
) -> BTreeMap<String, MigrationReport> {
    let mut wanted: Vec<u32> = ringdoc::migration_targets(ring);
    for (i, m) in ring.members.iter().enumerate() {
        if m.state == MemberState::Recovering && !wanted.contains(&(i as u32)) {
            wanted.push(i as u32);
        }
    }
    let mut reports = BTreeMap::new();
    for index in wanted {
        let member = &ring.members[index as usize];
        let Some(pod) = pods.get(&member.id).filter(|p| p.is_live()) else {
            continue;
        };
        let target = NodeTarget {
            namespace: ns.to_string(),
            pod: member.id.clone(),
            addr: crate::members::addr_of(pod.ip.as_deref().unwrap_or_default()),
        };
        match ctx.nodes.migration(&target, token).await {
            Ok(report) => {
                if report.epoch < ring.epoch
                    && let Err(e) = ctx.nodes.push_ring(&target, ring, token).await
                {
                    warn!(member = %member.id, error = %e, "re-push of the ring failed");
                }
                reports.insert(member.id.clone(), report);
            }
            Err(e) => warn!(member = %member.id, error = %e, "no migration report"),
        }
    }
    reports
}

/// Push to every member that is not down; a node that misses it still reads the mounted
/// ConfigMap and learns the epoch from peers, so failures are logged, not fatal.
async fn push_ring(ctx: &Context, ns: &str, ring: &RingDoc, token: &str) {
    for m in ring
        .members
        .iter()
        .filter(|m| m.state != MemberState::Down && !m.addr.is_empty())
    {
        let target = NodeTarget {
            namespace: ns.to_string(),
            pod: m.id.clone(),
            addr: m.addr.clone(),
        };
        match ctx.nodes.push_ring(&target, ring, token).await {
            Ok(()) => ctx.metrics.ring_pushed(true),
            Err(e) if e.is_conflict() => {
                ctx.metrics.ring_pushed(true);
                info!(member = %m.id, "node already has a newer ring");
            }
            Err(e) => {
                ctx.metrics.ring_pushed(false);
                warn!(member = %m.id, error = %e, "ring push failed");
            }
        }
    }
}

/// Applies the Services, StatefulSet and PDB. Returns why the StatefulSet was left alone when
/// the spec asks for a change Kubernetes forbids on an existing one.
async fn apply_owned(
    client: &Client,
    owner: &Owner,
    cc: &CacheCluster,
    replicas: u32,
) -> Result<Option<String>, Error> {
    let ns = &owner.namespace;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    apply(&services, &build::peers_service(owner)).await?;
    apply(&services, &build::client_service(owner)).await?;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let desired = build::stateful_set(owner, cc, i32::try_from(replicas).unwrap_or(i32::MAX));
    let conflict = match sets.get_opt(&owner.names.stateful_set()).await? {
        Some(existing) => build::immutable_conflict(&existing, &desired),
        None => None,
    };
    if conflict.is_none() {
        apply(&sets, &desired).await?;
    }
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
    Ok(conflict)
}

async fn patch_status(
    client: &Client,
    cc: &CacheCluster,
    ns: &str,
    status: CacheClusterStatus,
) -> Result<(), kube::Error> {
    let api: Api<CacheCluster> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": "ringcache.io/v1alpha1",
        "kind": "CacheCluster",
        "status": status,
    });
    api.patch_status(
        &cc.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

async fn publish(ctx: &Context, cc: &CacheCluster, ev: &status::EventSpec) {
    let event = Event {
        type_: if ev.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: ev.reason.to_string(),
        note: Some(ev.note.clone()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cc.object_ref(&())).await {
        warn!(reason = ev.reason, error = %e, "cannot publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_readiness_comes_from_the_ready_condition() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-0"},
            "status": {"podIP": "10.1.2.3", "conditions": [
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": "False"}
            ]}
        }))
        .unwrap();
        let obs = pod_obs(&pod);
        assert!(!obs.ready);
        assert_eq!(obs.ip.as_deref(), Some("10.1.2.3"));
        let mut ready = pod.clone();
        if let Some(cs) = ready.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            cs[1].status = "True".into();
        }
        assert!(pod_obs(&ready).is_live());
        let mut deleting = ready.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        assert!(!pod_obs(&deleting).is_live());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(50), Duration::from_secs(128));
        assert!(backoff(u32::MAX) <= Duration::from_secs(300));
    }
}
