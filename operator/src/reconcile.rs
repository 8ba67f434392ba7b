//! One reconcile pass: observe ([`crate::observed::observe`]) → decide ([`crate::decide`], pure)
//! → apply ([`crate::apply`]) → record (events, metrics, status). Level-triggered and
//! idempotent: every pass starts from what it observes, never from what an earlier pass meant
//! to do, so an operator restarted mid-migration or mid-rollout simply carries on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use ringcache_ring::MemberState;
use tracing::{Instrument, info, warn};

use crate::apply::{self, Applied};
use crate::build::{FIELD_MANAGER, Owner};
pub use crate::context::{Context, Error};
use crate::decide::{self, Action, Decision, Inputs};
use crate::metrics::ClusterGauges;
use crate::observed::{self, Observed};
use crate::status::{self, StatusInputs};
use crate::types::{CacheCluster, CacheClusterStatus};

/// While something is moving, poll the nodes this often.
pub const ACTIVE_REQUEUE: Duration = Duration::from_secs(2);
/// A steady cluster is re-checked at least this often (pod watches trigger earlier). Short
/// enough that a node restarted in place between two readiness probes is noticed (by its new
/// incarnation) well before anything else could go wrong.
pub const IDLE_REQUEUE: Duration = Duration::from_secs(30);
/// After losing a compare-and-set on the ring: observe again soon.
pub const CONFLICT_REQUEUE: Duration = Duration::from_millis(200);

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
    let obs = observed::observe(ctx, &owner, cc).await?;
    let decision = if let Some(problem) = &obs.ring_problem {
        // Never overwrite a ring we cannot read: it may be the only record of a migration.
        warn!(%problem, "not acting");
        Decision {
            sts_replicas: None,
            action: Action::Steady,
        }
    } else {
        decide::decide(&Inputs {
            names: &owner.names,
            spec: &cc.spec,
            ring: obs.ring.as_ref(),
            pods: &obs.pods,
            reports: &obs.reports,
            sts: obs.sts.as_ref(),
        })?
    };
    info!(action = decision.action.name(), sts_replicas = ?decision.sts_replicas, "decided");
    let applied = apply::apply_decision(ctx, &owner, cc, &obs, &decision).await?;
    if applied.ring_conflict {
        return Ok(Requeue::requeue(CONFLICT_REQUEUE));
    }
    record(ctx, &owner, cc, &obs, &decision, &applied).await?;
    ctx.metrics.reset_failures(&owner.names.cluster);
    Ok(requeue_after(&decision, &obs, &applied))
}

fn requeue_after(decision: &Decision, obs: &Observed, applied: &Applied) -> Requeue {
    let ring_after = applied.ring.as_ref().or(obs.ring.as_ref());
    let all_up = ring_after.is_some_and(|r| r.members.iter().all(|m| m.state == MemberState::Up));
    match decision.action.requeue(all_up) {
        crate::decide::Requeue::Idle => Requeue::requeue(IDLE_REQUEUE),
        crate::decide::Requeue::Active => Requeue::requeue(ACTIVE_REQUEUE),
    }
}

/// Events, metrics and status for this pass.
async fn record(
    ctx: &Context,
    owner: &Owner,
    cc: &CacheCluster,
    obs: &Observed,
    decision: &Decision,
    applied: &Applied,
) -> Result<(), Error> {
    let ns = &owner.namespace;
    let cluster = &owner.names.cluster;
    let previous = obs.status.as_ref();
    let ring_after = applied.ring.as_ref().or(obs.ring.as_ref());
    let problem = obs
        .ring_problem
        .clone()
        .or(obs.tls_problem.clone())
        .or(applied.sts_conflict.clone());
    let new_status = status::build_status(&StatusInputs {
        cluster,
        generation: cc.metadata.generation,
        desired_replicas: cc.spec.replicas,
        previous,
        decision,
        ring: ring_after,
        pods: &obs.pods,
        sts: applied.sts.as_ref().or(obs.sts.as_ref()),
        now: Timestamp::now(),
        problem: problem.clone(),
    });
    let (migration_partitions_done, migration_partitions_total) =
        decision.action.migration_partitions();
    ctx.metrics.set_cluster(
        ns,
        cluster,
        ClusterGauges {
            members_down: ring_after.map_or(0, |r| {
                r.members
                    .iter()
                    .filter(|m| m.state == MemberState::Down)
                    .count()
            }),
            migration_partitions_done,
            migration_partitions_total,
            under_replicated_partitions: new_status.under_replicated_partitions as u64,
            pods_outdated: (new_status.members.len() as i32 - new_status.updated_replicas).max(0)
                as u64,
        },
    );
    let lost = decision.action.partitions_lost();
    if lost > 0 {
        ctx.metrics.partitions_lost(ns, cluster, lost);
    }
    for ev in status::events_for(decision, previous) {
        publish(ctx, cc, &ev).await;
    }
    if let Some(p) = &problem
        && !was_degraded_with(previous, Some(p))
    {
        let ev = status::EventSpec {
            warning: true,
            reason: "Blocked",
            note: p.clone(),
            action: "Reconcile".into(),
        };
        publish(ctx, cc, &ev).await;
    }
    patch_status(ctx, cc, ns, new_status).await?;
    Ok(())
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

async fn patch_status(
    ctx: &Context,
    cc: &CacheCluster,
    ns: &str,
    status: CacheClusterStatus,
) -> Result<(), kube::Error> {
    let api: Api<CacheCluster> = Api::namespaced(ctx.client.clone(), ns);
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
        action: ev.action.clone(),
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
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(50), Duration::from_secs(128));
        assert!(backoff(u32::MAX) <= Duration::from_secs(300));
    }
}
