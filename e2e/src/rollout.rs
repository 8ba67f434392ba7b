//! When is a rollout done? Not when `StatefulSet.status.updateRevision` first matches the pods:
//! right after a template change that status is the old one until the StatefulSet controller has
//! observed the change (and for a change made on the CacheCluster, until the operator has applied
//! it to the StatefulSet), so for a moment every pod is "on the update revision" and the cluster
//! is Ready. A rollout is done only when all of these hold:
//!
//! 1. the StatefulSet controller observed the generation the change produced
//!    (`status.observedGeneration >= target`), and `status.updateRevision` is set;
//! 2. every pod that is not terminating carries that revision (`controller-revision-hash`), and
//!    there are as many as the CacheCluster wants;
//! 3. every pod was replaced (its UID differs from before the change);
//! 4. every member runs a new process (its incarnation in CacheCluster status differs from before),
//!    and each node reports on `/healthz` the incarnation status records for it;
//! 5. the CacheCluster is Ready for its current generation (`status.observedGeneration ==
//!    metadata.generation`).
//!
//! The predicate ([`pending`]) is pure and unit-tested; [`wait_rolled_out`] feeds it what the
//! cluster shows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::error::{E2eError, ensure};
use crate::harness::{Ctx, Probe, poll, timed};
use crate::load::Writers;
use crate::nodes::{self, Target};
use crate::resource::node_pod_selector;
use crate::status::Status;

/// The label the StatefulSet controller puts the pod's revision in.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// A node pod as the predicate needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub name: String,
    pub uid: String,
    pub revision: Option<String>,
    pub terminating: bool,
}

impl PodView {
    pub fn of(p: &Pod) -> PodView {
        PodView {
            name: p.name_any(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            revision: p.labels().get(REVISION_LABEL).cloned(),
            terminating: p.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// What the cluster looked like before the change: pod UIDs and member incarnations by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    pub pod_uids: BTreeMap<String, String>,
    pub incarnations: BTreeMap<String, String>,
}

/// What the cluster shows now.
#[derive(Debug, Clone, Default)]
pub struct RolloutView {
    pub sts_generation: i64,
    pub sts_observed_generation: Option<i64>,
    pub update_revision: Option<String>,
    pub pods: Vec<PodView>,
    pub cluster: Status,
    /// Member id → the incarnation its node reports on `/healthz`; `None` until read (they are
    /// read only once everything else holds).
    pub node_incarnations: Option<BTreeMap<String, String>>,
}

impl RolloutView {
    fn live_pods(&self) -> impl Iterator<Item = &PodView> {
        self.pods.iter().filter(|p| !p.terminating)
    }

    fn live_pod(&self, name: &str) -> Option<&PodView> {
        self.live_pods().find(|p| p.name == name)
    }

    fn on_revision(&self) -> usize {
        self.live_pods()
            .filter(|p| p.revision.is_some() && p.revision == self.update_revision)
            .count()
    }

    fn replaced(&self, b: &Baseline) -> usize {
        b.pod_uids
            .iter()
            .filter(|(name, uid)| self.live_pod(name).is_some_and(|p| &p.uid != *uid))
            .count()
    }

    fn new_incarnations(&self, b: &Baseline) -> usize {
        b.incarnations
            .iter()
            .filter(|(id, old)| {
                self.cluster
                    .incarnation_of(id)
                    .is_some_and(|now| now != old.as_str())
            })
            .count()
    }
}

/// The first condition of the [module](self) that does not hold yet, judged on what Kubernetes
/// shows (`None`: all of them hold). `target` is the StatefulSet generation the change produced.
pub fn pending_in_kubernetes(b: &Baseline, target: i64, v: &RolloutView) -> Option<String> {
    let observed = v.sts_observed_generation.unwrap_or(0);
    if observed < target {
        return Some(format!(
            "the StatefulSet controller to observe generation {target} (observedGeneration {observed})"
        ));
    }
    let Some(revision) = v.update_revision.as_deref() else {
        return Some("the StatefulSet to report status.updateRevision".into());
    };
    let wanted = v.cluster.spec_replicas as usize;
    let live = v.live_pods().count();
    if live != wanted {
        return Some(format!(
            "{wanted} pods that are not terminating (have {live})"
        ));
    }
    if let Some(p) = v
        .live_pods()
        .find(|p| p.revision.as_deref() != Some(revision))
    {
        return Some(format!(
            "pod {} on revision {revision} (it is on {})",
            p.name,
            p.revision.as_deref().unwrap_or("none")
        ));
    }
    if let Some((name, _)) = b
        .pod_uids
        .iter()
        .find(|(name, uid)| v.live_pod(name).is_none_or(|p| &p.uid == *uid))
    {
        return Some(format!("pod {name} to be replaced (same UID, or absent)"));
    }
    if v.cluster.members.len() != b.incarnations.len() {
        return Some(format!(
            "{} members in CacheCluster status (have {})",
            b.incarnations.len(),
            v.cluster.members.len()
        ));
    }
    for (id, old) in &b.incarnations {
        match v.cluster.incarnation_of(id) {
            None => return Some(format!("member {id} to have an incarnation recorded")),
            Some(now) if now == old => {
                return Some(format!(
                    "member {id} to run a new process (incarnation {old})"
                ));
            }
            Some(_) => {}
        }
    }
    if !v.cluster.is_ready() {
        return Some(format!(
            "the CacheCluster to be Ready ({})",
            v.cluster.summary()
        ));
    }
    if v.cluster.observed_generation != Some(v.cluster.generation) {
        return Some(format!(
            "CacheCluster status.observedGeneration {:?} to equal metadata.generation {}",
            v.cluster.observed_generation, v.cluster.generation
        ));
    }
    None
}

/// [`pending_in_kubernetes`], then: every node reports the incarnation status records for it, so
/// the new incarnations are the processes actually serving, not a record ahead of them.
pub fn pending(b: &Baseline, target: i64, v: &RolloutView) -> Option<String> {
    if let Some(p) = pending_in_kubernetes(b, target, v) {
        return Some(p);
    }
    let Some(reported) = &v.node_incarnations else {
        return Some("the nodes' incarnations on /healthz to be read".into());
    };
    v.cluster.members.iter().find_map(|m| {
        let recorded = m.incarnation.as_deref();
        let on_node = reported.get(&m.id).map(String::as_str);
        (recorded != on_node).then(|| {
            format!(
                "node {} to report the incarnation status records ({recorded:?}; it reports {on_node:?})",
                m.id
            )
        })
    })
}

/// One line for progress output: how far the rollout got on every count.
pub fn progress_line(b: &Baseline, target: i64, v: &RolloutView) -> String {
    let n = b.pod_uids.len();
    format!(
        "revision {}: {}/{n} pods on it, {}/{n} replaced, {}/{} new incarnations, StatefulSet \
         observedGeneration {}/{target}, CacheCluster phase {} observedGeneration {}/{}",
        v.update_revision.as_deref().unwrap_or("-"),
        v.on_revision(),
        v.replaced(b),
        v.new_incarnations(b),
        b.incarnations.len(),
        v.sts_observed_generation.unwrap_or(0),
        v.cluster.phase.as_deref().unwrap_or("-"),
        v.cluster
            .observed_generation
            .map_or_else(|| "-".into(), |g| g.to_string()),
        v.cluster.generation,
    )
}

/// A change of the CacheCluster spec that the operator turns into a new pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateChange {
    Image(String),
    Requests { cpu: String, memory: String },
}

impl TemplateChange {
    /// The merge patch of the CacheCluster's spec.
    pub fn spec_patch(&self) -> Value {
        match self {
            TemplateChange::Image(image) => json!({ "image": image }),
            TemplateChange::Requests { cpu, memory } => {
                json!({ "resources": { "requests": { "cpu": cpu, "memory": memory } } })
            }
        }
    }

    /// The operator has written this change into the StatefulSet's pod template.
    pub fn applied_in(&self, sts: &StatefulSet) -> bool {
        let containers = sts
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .map(|p| p.containers.as_slice())
            .unwrap_or_default();
        containers.iter().any(|c| match self {
            TemplateChange::Image(image) => c.image.as_deref() == Some(image.as_str()),
            TemplateChange::Requests { cpu, memory } => {
                let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
                let get = |k: &str| requests.and_then(|r| r.get(k)).map(|q| q.0.as_str());
                get("cpu") == Some(cpu.as_str()) && get("memory") == Some(memory.as_str())
            }
        })
    }
}

fn sts_generation(s: &StatefulSet) -> i64 {
    s.metadata.generation.unwrap_or(0)
}

async fn node_pods(ctx: &Ctx, name: &str) -> Result<Vec<Pod>, E2eError> {
    let params = ListParams::default().labels(&node_pod_selector(name));
    let list = timed(
        &format!("list pods of {}/{name}", ctx.ns),
        ctx.api::<Pod>().list(&params),
    )
    .await?;
    Ok(list.items)
}

/// The pods and member incarnations of a Ready cluster, before a change. Waits (briefly) for a
/// complete picture: every member with an incarnation, one live pod per member.
pub async fn baseline(ctx: &Ctx, name: &str) -> Result<Baseline, E2eError> {
    poll(
        &format!("{}/{name}: pods and incarnations before the change", ctx.ns),
        Duration::from_secs(60),
        Duration::from_secs(1),
        || async {
            let status = ctx.status(name).await?;
            let pods = node_pods(ctx, name).await?;
            let incarnations: BTreeMap<String, String> = status
                .members
                .iter()
                .filter_map(|m| Some((m.id.clone(), m.incarnation.clone()?)))
                .collect();
            let pod_uids: BTreeMap<String, String> = pods
                .iter()
                .map(PodView::of)
                .filter(|p| !p.terminating)
                .map(|p| (p.name, p.uid))
                .collect();
            let complete = status.is_ready()
                && incarnations.len() == status.members.len()
                && pod_uids.len() as u64 == status.spec_replicas
                && incarnations.keys().all(|id| pod_uids.contains_key(id));
            Ok(if complete {
                Probe::Done(Baseline {
                    pod_uids,
                    incarnations,
                })
            } else {
                Probe::Waiting(format!(
                    "{} members with incarnations, pods {:?}; {}",
                    incarnations.len(),
                    pod_uids.keys().collect::<Vec<_>>(),
                    status.summary()
                ))
            })
        },
    )
    .await
}

/// `kubectl rollout restart statefulset/NAME`; returns the StatefulSet generation it produced.
pub async fn restart(ctx: &Ctx, name: &str) -> Result<i64, E2eError> {
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let params = PatchParams {
        field_manager: Some("kubectl-rollout".into()),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": stamp
    }}}}}));
    let sts = timed(
        &format!("rollout restart of StatefulSet {}/{name}", ctx.ns),
        ctx.api::<StatefulSet>().patch(name, &params, &patch),
    )
    .await?;
    Ok(sts_generation(&sts))
}

/// Applies `change` to the CacheCluster's spec and waits until the operator has written it into
/// the StatefulSet's pod template; returns the StatefulSet generation at that point.
pub async fn change_template(
    ctx: &Ctx,
    name: &str,
    change: &TemplateChange,
    timeout: Duration,
) -> Result<i64, E2eError> {
    timed(
        &format!("patch CacheCluster {}/{name}", ctx.ns),
        ctx.cache_clusters().patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": change.spec_patch() })),
        ),
    )
    .await?;
    poll(
        &format!(
            "the operator to apply {change:?} to StatefulSet {}/{name}",
            ctx.ns
        ),
        timeout,
        Duration::from_millis(500),
        || async {
            let sts = timed(
                &format!("GET StatefulSet {}/{name}", ctx.ns),
                ctx.api::<StatefulSet>().get(name),
            )
            .await?;
            Ok(if change.applied_in(&sts) {
                Probe::Done(sts_generation(&sts))
            } else {
                Probe::Waiting(format!(
                    "pod template not changed yet (generation {})",
                    sts_generation(&sts)
                ))
            })
        },
    )
    .await
}

async fn view(ctx: &Ctx, name: &str) -> Result<RolloutView, E2eError> {
    let sts = timed(
        &format!("GET StatefulSet {}/{name}", ctx.ns),
        ctx.api::<StatefulSet>().get(name),
    )
    .await?;
    let status = sts.status.as_ref();
    Ok(RolloutView {
        sts_generation: sts_generation(&sts),
        sts_observed_generation: status.and_then(|s| s.observed_generation),
        update_revision: status.and_then(|s| s.update_revision.clone()),
        pods: node_pods(ctx, name)
            .await?
            .iter()
            .map(PodView::of)
            .collect(),
        cluster: ctx.status(name).await?,
        node_incarnations: None,
    })
}

async fn node_incarnations(
    ctx: &Ctx,
    status: &Status,
    https: bool,
) -> Result<BTreeMap<String, String>, E2eError> {
    let mut out = BTreeMap::new();
    for m in &status.members {
        let target = Target::Pod {
            ns: ctx.ns.clone(),
            name: m.id.clone(),
            https,
        };
        out.insert(
            m.id.clone(),
            nodes::incarnation(&ctx.client, &target).await?,
        );
    }
    Ok(out)
}

/// Waits until the rollout that produced StatefulSet generation `target` is done (the
/// [module](self)'s predicate), printing progress, and checks that every pod was replaced while
/// the writers ran: they kept running and had writes acknowledged during the rollout.
pub async fn wait_rolled_out(
    ctx: &Ctx,
    name: &str,
    before: &Baseline,
    target: i64,
    writers: &Writers,
    https: bool,
    timeout: Duration,
) -> Result<(), E2eError> {
    let started = Instant::now();
    let acked_before = writers.stats().acked;
    poll(
        &format!(
            "{}/{name}: rollout to StatefulSet generation {target}",
            ctx.ns
        ),
        timeout,
        Duration::from_secs(1),
        || async {
            let mut v = view(ctx, name).await?;
            if let Some(p) = pending_in_kubernetes(before, target, &v) {
                return Ok(Probe::Waiting(format!(
                    "{}; waiting for {p}",
                    progress_line(before, target, &v)
                )));
            }
            v.node_incarnations = Some(node_incarnations(ctx, &v.cluster, https).await?);
            Ok(match pending(before, target, &v) {
                None => Probe::Done(()),
                Some(p) => Probe::Waiting(format!(
                    "{}; waiting for {p}",
                    progress_line(before, target, &v)
                )),
            })
        },
    )
    .await?;
    let writes = writers.stats();
    println!(
        "[{}] rollout of {name} done in {:.0?}: every pod replaced and running a new process; \
         meanwhile {} ({} acknowledged during the rollout); reads while the writers ran: {}",
        ctx.ns,
        started.elapsed(),
        writes,
        writes.acked - acked_before,
        writers.reads()
    );
    ensure(writers.running(), || {
        "every pod was replaced while the writers ran: the writers stopped during the rollout"
            .into()
    })?;
    ensure(writes.acked > acked_before, || {
        format!(
            "every pod was replaced while the writers ran: no write was acknowledged during the \
             rollout ({writes})"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Member;

    const OLD_REV: &str = "demo-5f6d8c9b7";
    const NEW_REV: &str = "demo-7c8b9d6f5";

    fn baseline() -> Baseline {
        Baseline {
            pod_uids: (0..3)
                .map(|i| (format!("demo-{i}"), format!("uid-old-{i}")))
                .collect(),
            incarnations: (0..3)
                .map(|i| (format!("demo-{i}"), format!("inc-old-{i}")))
                .collect(),
        }
    }

    fn cluster(generation: i64, incarnation: &str) -> Status {
        Status {
            generation,
            spec_replicas: 3,
            phase: Some("Ready".into()),
            replicas: 3,
            ready_replicas: 3,
            ring_epoch: 9,
            members: (0..3)
                .map(|i| Member {
                    id: format!("demo-{i}"),
                    state: "up".into(),
                    incarnation: Some(format!("{incarnation}-{i}")),
                })
                .collect(),
            migration: None,
            observed_generation: Some(generation),
            ready_condition: Some(("True".into(), generation)),
        }
    }

    /// A finished rollout to StatefulSet generation 5, with the nodes' reports read.
    fn done() -> RolloutView {
        RolloutView {
            sts_generation: 5,
            sts_observed_generation: Some(5),
            update_revision: Some(NEW_REV.into()),
            pods: (0..3)
                .map(|i| PodView {
                    name: format!("demo-{i}"),
                    uid: format!("uid-new-{i}"),
                    revision: Some(NEW_REV.into()),
                    terminating: false,
                })
                .collect(),
            cluster: cluster(2, "inc-new"),
            node_incarnations: Some(
                (0..3)
                    .map(|i| (format!("demo-{i}"), format!("inc-new-{i}")))
                    .collect(),
            ),
        }
    }

    #[test]
    fn a_finished_rollout_is_done() {
        assert_eq!(pending(&baseline(), 5, &done()), None);
    }

    #[test]
    fn stale_statefulset_status_is_not_done_although_everything_else_looks_rolled() {
        // Right after the patch: the controller has not observed generation 5, and its old
        // status names the old revision, which every (old) pod carries.
        let mut v = done();
        v.sts_observed_generation = Some(4);
        v.update_revision = Some(OLD_REV.into());
        for (i, p) in v.pods.iter_mut().enumerate() {
            p.revision = Some(OLD_REV.into());
            p.uid = format!("uid-old-{i}");
        }
        v.cluster = cluster(2, "inc-old");
        let why = pending(&baseline(), 5, &v);
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("observe generation 5")),
            "{why:?}"
        );
    }

    #[test]
    fn a_missing_update_revision_is_not_done() {
        let mut v = done();
        v.update_revision = None;
        assert!(pending(&baseline(), 5, &v).is_some());
    }

    #[test]
    fn all_pods_on_the_new_revision_with_the_same_incarnations_is_not_done() {
        let mut v = done();
        v.cluster = cluster(2, "inc-old");
        v.node_incarnations = None;
        let why = pending(&baseline(), 5, &v);
        assert!(
            why.as_deref().is_some_and(|w| w.contains("new process")),
            "{why:?}"
        );
    }

    #[test]
    fn one_member_with_its_old_incarnation_is_not_done() {
        let mut v = done();
        v.cluster.members[1].incarnation = Some("inc-old-1".into());
        assert!(pending(&baseline(), 5, &v).is_some());
        v.cluster.members[1].incarnation = None;
        assert!(pending(&baseline(), 5, &v).is_some());
    }

    #[test]
    fn a_pod_not_replaced_is_not_done() {
        let mut v = done();
        v.pods[2].uid = "uid-old-2".into();
        let why = pending(&baseline(), 5, &v);
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("demo-2 to be replaced")),
            "{why:?}"
        );
    }

    #[test]
    fn a_pod_on_the_old_revision_is_not_done() {
        let mut v = done();
        v.pods[0].revision = Some(OLD_REV.into());
        assert!(pending(&baseline(), 5, &v).is_some());
        v.pods[0].revision = None;
        assert!(pending(&baseline(), 5, &v).is_some());
    }

    #[test]
    fn terminating_pods_are_ignored_but_a_missing_pod_is_not_done() {
        let mut v = done();
        // The old demo-1 still terminating next to its replacement does not matter ...
        v.pods.push(PodView {
            name: "demo-1".into(),
            uid: "uid-old-1".into(),
            revision: Some(OLD_REV.into()),
            terminating: true,
        });
        assert_eq!(pending(&baseline(), 5, &v), None);
        // ... but only terminating: the replacement is not there yet.
        v.pods.remove(1);
        assert!(pending(&baseline(), 5, &v).is_some());
    }

    #[test]
    fn a_cluster_not_ready_or_behind_its_generation_is_not_done() {
        let mut v = done();
        v.cluster.phase = Some("Scaling".into());
        assert!(pending(&baseline(), 5, &v).is_some());
        let mut v = done();
        v.cluster.observed_generation = Some(1);
        let why = pending(&baseline(), 5, &v);
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("observedGeneration")),
            "{why:?}"
        );
    }

    #[test]
    fn nodes_must_report_the_recorded_incarnations() {
        let mut v = done();
        v.node_incarnations = None;
        assert!(pending_in_kubernetes(&baseline(), 5, &v).is_none());
        assert!(pending(&baseline(), 5, &v).is_some(), "not read yet");
        let mut reported = done().node_incarnations.unwrap_or_default();
        reported.insert("demo-2".into(), "inc-newer-2".into());
        v.node_incarnations = Some(reported);
        let why = pending(&baseline(), 5, &v);
        assert!(
            why.as_deref().is_some_and(|w| w.contains("node demo-2")),
            "{why:?}"
        );
    }

    #[test]
    fn progress_counts_each_condition() {
        let mut v = done();
        v.pods[0].uid = "uid-old-0".into();
        v.pods[0].revision = Some(OLD_REV.into());
        v.cluster.members[0].incarnation = Some("inc-old-0".into());
        v.sts_observed_generation = Some(5);
        let line = progress_line(&baseline(), 5, &v);
        assert!(line.contains("2/3 pods on it"), "{line}");
        assert!(line.contains("2/3 replaced"), "{line}");
        assert!(line.contains("2/3 new incarnations"), "{line}");
        assert!(line.contains("observedGeneration 5/5"), "{line}");
    }

    #[test]
    fn template_changes_are_recognised_in_the_statefulset() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "demo", "generation": 3},
            "spec": {
                "selector": {},
                "serviceName": "demo-peers",
                "template": {"spec": {"containers": [{
                    "name": "node",
                    "image": "ghcr.io/ringcache/ringcache-node:2",
                    "resources": {"requests": {"cpu": "11m", "memory": "40Mi"}}
                }]}}
            }
        }))
        .expect("a valid StatefulSet");
        let image = |i: &str| TemplateChange::Image(i.into());
        assert!(image("ghcr.io/ringcache/ringcache-node:2").applied_in(&sts));
        assert!(!image("ghcr.io/ringcache/ringcache-node:1").applied_in(&sts));
        let requests = |cpu: &str, memory: &str| TemplateChange::Requests {
            cpu: cpu.into(),
            memory: memory.into(),
        };
        assert!(requests("11m", "40Mi").applied_in(&sts));
        assert!(!requests("10m", "40Mi").applied_in(&sts));
        assert!(!requests("11m", "40Mi").applied_in(&StatefulSet::default()));
        assert_eq!(
            requests("11m", "40Mi").spec_patch(),
            json!({"resources": {"requests": {"cpu": "11m", "memory": "40Mi"}}})
        );
        assert_eq!(image("x:1").spec_patch(), json!({"image": "x:1"}));
    }
}
