//! Reliability scenarios (DESIGN.md "Testing levels" 5) on a real cluster: a 3-node RF=2
//! CacheCluster under write load (PUT, overwrite, DELETE through the client Service), put through
//! a routine operation, brought back to Ready, then every key read back and classified against
//! its last acknowledged operation by the checker the cluster simulation also uses. Each must end
//! with nothing lost, stale or resurrected. Without a cluster each prints `skipped: no cluster`.

use std::time::{Duration, Instant};

use http::Method;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{ResourceExt, core::DynamicObject};
use ringcache_common::pki::Ca;
use ringcache_e2e::error::ensure;
use ringcache_e2e::harness::poll;
use ringcache_e2e::load::{Writers, verify};
use ringcache_e2e::nodes::Target;
use ringcache_e2e::resource::{ClusterSpec, cache_cluster};
use ringcache_e2e::{Ctx, E2eError, run};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(300);
const STEP: Duration = Duration::from_secs(600);
const REVISION_LABEL: &str = "controller-revision-hash";

async fn create(ctx: &Ctx, name: &str) -> Result<Writers, E2eError> {
    create_with(ctx, name, ClusterSpec::default().to_json(), false).await
}

/// Creates CacheCluster `name` with `spec`, waits for Ready and starts writers through its
/// Service (`https` when the spec has `tls`).
async fn create_with(ctx: &Ctx, name: &str, spec: Value, https: bool) -> Result<Writers, E2eError> {
    ctx.cache_clusters()
        .create(&PostParams::default(), &cache_cluster(name, spec))
        .await?;
    ctx.wait_ready(name, READY, |_| {}).await?;
    let writers = Writers::start(&ctx.client, &service(ctx, name, https), name, 4, 300);
    ensure(
        writers.wait_acked(300, Duration::from_secs(120)).await,
        || "writes were not acknowledged before the scenario".into(),
    )?;
    Ok(writers)
}

fn service(ctx: &Ctx, name: &str, https: bool) -> Target {
    Target::Service {
        ns: ctx.ns.clone(),
        name: name.to_string(),
        https,
    }
}

async fn cache_cluster_json(ctx: &Ctx, name: &str) -> Result<Value, E2eError> {
    let obj: DynamicObject = ctx.cache_clusters().get(name).await?;
    serde_json::to_value(&obj).map_err(|e| E2eError::check(format!("CacheCluster as JSON: {e}")))
}

/// Waits until CacheCluster `name` reports `phase` (`what`: the wait, for the timeout error).
async fn wait_phase(ctx: &Ctx, name: &str, phase: &str, what: &str) -> Result<(), E2eError> {
    poll(what, STEP, Duration::from_millis(200), || async {
        let cc = cache_cluster_json(ctx, name).await?;
        Ok((cc["status"]["phase"] == phase).then_some(()))
    })
    .await
}

/// Member id → the incarnation status records for it.
async fn incarnations(ctx: &Ctx, name: &str) -> Result<Vec<(String, Option<String>)>, E2eError> {
    let cc = cache_cluster_json(ctx, name).await?;
    Ok(cc["status"]["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    (
                        m["id"].as_str().unwrap_or_default().to_string(),
                        m["incarnation"].as_str().map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Ready, and every pod on the StatefulSet's update revision.
async fn wait_rolled(ctx: &Ctx, name: &str) -> Result<(), E2eError> {
    let sets: Api<StatefulSet> = ctx.api();
    let pods: Api<Pod> = ctx.api();
    poll(
        "every pod on the new template and the cluster Ready",
        STEP,
        Duration::from_secs(1),
        || async {
            let sts = sets.get(name).await?;
            let Some(target) = sts.status.as_ref().and_then(|s| s.update_revision.clone()) else {
                return Ok(None);
            };
            let list = pods
                .list(&ListParams::default().labels(&format!(
                    "app.kubernetes.io/instance={name},app.kubernetes.io/component=node"
                )))
                .await?;
            let updated = list
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.labels().get(REVISION_LABEL) == Some(&target))
                .count();
            let ready = ctx.status(name).await?.is_ready();
            Ok((updated == 3 && ready).then_some(()))
        },
    )
    .await
}

/// Stops the writers on a Ready cluster, reads every key back and fails on any loss.
async fn finish(
    ctx: &Ctx,
    name: &str,
    scenario: &str,
    writers: Writers,
    started: Instant,
) -> Result<(), E2eError> {
    finish_through(ctx, name, scenario, writers, started, false).await
}

async fn finish_through(
    ctx: &Ctx,
    name: &str,
    scenario: &str,
    writers: Writers,
    started: Instant,
    https: bool,
) -> Result<(), E2eError> {
    ctx.wait_ready(name, STEP, |_| {}).await?;
    let before = writers.stats().acked;
    writers
        .wait_acked(before + 100, Duration::from_secs(60))
        .await;
    let (checker, stats) = writers.stop().await;
    let summary = verify(&ctx.client, &service(ctx, name, https), &checker).await;
    println!(
        "[{}] scenario {scenario}: {summary}; {} writes acknowledged, {} refused or failed, in {:.0?}",
        ctx.ns,
        stats.acked,
        stats.failed,
        started.elapsed()
    );
    ensure(summary.clean(), || {
        format!("{scenario}: {summary}: {:?}", summary.examples)
    })?;
    // Writes may be refused (503) while a member is being marked down, but rarely.
    ensure(stats.failed * 10 <= stats.acked, || {
        format!(
            "{scenario}: {} of {} writes refused",
            stats.failed,
            stats.acked + stats.failed
        )
    })
}

/// `kubectl rollout restart statefulset/NAME`.
async fn rollout_restart(ctx: &Ctx, name: &str) -> Result<(), E2eError> {
    let sets: Api<StatefulSet> = ctx.api();
    let stamp = format!("{:?}", std::time::SystemTime::now());
    sets.patch(
        name,
        &PatchParams {
            field_manager: Some("kubectl-rollout".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": stamp
        }}}}})),
    )
    .await?;
    Ok(())
}

async fn patch_spec(ctx: &Ctx, name: &str, spec: Value) -> Result<(), E2eError> {
    ctx.cache_clusters()
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await?;
    Ok(())
}

#[test]
fn rollout_restart_loses_no_acknowledged_write() {
    run("rollout", |ctx| async move {
        let name = "rollout";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        let before = incarnations(&ctx, name).await?;
        rollout_restart(&ctx, name).await?;
        wait_rolled(&ctx, name).await?;
        let after = incarnations(&ctx, name).await?;
        for ((id, old), (_, new)) in before.iter().zip(&after) {
            ensure(old != new, || {
                format!("{id} kept incarnation {old:?}: not restarted?")
            })?;
        }
        finish(&ctx, name, "rollout-restart", writers, t).await
    });
}

#[test]
fn image_change_loses_no_acknowledged_write() {
    run("upgrade", |ctx| async move {
        let name = "upgrade";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        // A second tag of the node image (e2e/kind.sh loads one); without it, a resources change
        // takes the same path: a new pod template rolled out by the operator.
        let change = match std::env::var("RINGCACHE_E2E_UPGRADE_IMAGE") {
            Ok(image) if !image.is_empty() => json!({ "image": image }),
            _ => json!({"resources": {"requests": {"cpu": "11m", "memory": "40Mi"}}}),
        };
        println!("[{}] template change: {change}", ctx.ns);
        patch_spec(&ctx, name, change).await?;
        wait_rolled(&ctx, name).await?;
        finish(&ctx, name, "image-change", writers, t).await
    });
}

#[test]
fn in_place_restarts_of_two_processes_lose_no_acknowledged_write() {
    run("killinplace", |ctx| async move {
        let name = "killinplace";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        let secrets: Api<Secret> = ctx.api();
        let token = secrets
            .get(&format!("{name}-internal"))
            .await?
            .data
            .and_then(|d| {
                d.get("token")
                    .map(|b| String::from_utf8_lossy(&b.0).to_string())
            })
            .ok_or_else(|| E2eError::check("no internal token"))?;
        for victim in [format!("{name}-1"), format!("{name}-2")] {
            let old = incarnations(&ctx, name).await?;
            let target = Target::Pod {
                ns: ctx.ns.clone(),
                name: victim.clone(),
                https: false,
            };
            // The node process dies at once (as from SIGKILL); the pod stays and the kubelet
            // restarts the container in place.
            let req = http::Request::builder()
                .method(Method::POST)
                .uri(target.path("/internal/v1/abort"))
                .header(ringcache_common::protocol::INTERNAL_TOKEN_HEADER, &token)
                .body(kube::client::Body::empty())?;
            let _ = ctx.client.send(req).await;
            poll(
                &format!("{victim} recovered under a new incarnation"),
                STEP,
                Duration::from_secs(1),
                || async {
                    let now = incarnations(&ctx, name).await?;
                    let changed = now
                        .iter()
                        .zip(&old)
                        .any(|((id, new), (_, before))| *id == victim && new != before);
                    Ok((changed && ctx.status(name).await?.is_ready()).then_some(()))
                },
            )
            .await?;
        }
        finish(&ctx, name, "kill-in-place-twice", writers, t).await
    });
}

#[test]
fn two_pods_deleted_back_to_back_lose_no_acknowledged_write() {
    run("deletetwo", |ctx| async move {
        let name = "deletetwo";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        let pods: Api<Pod> = ctx.api();
        let first = format!("{name}-0");
        let old_uid = pods.get(&first).await?.uid().unwrap_or_default();
        pods.delete(&first, &DeleteParams::default()).await?;
        // The second goes as soon as the first one's replacement reports Ready.
        poll(
            "the first pod replaced and Ready",
            STEP,
            Duration::from_millis(500),
            || async {
                let p = pods.get_opt(&first).await?;
                Ok(p.filter(|p| p.uid().unwrap_or_default() != old_uid)
                    .filter(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                    })
                    .map(|_| ()))
            },
        )
        .await?;
        pods.delete(&format!("{name}-1"), &DeleteParams::default())
            .await?;
        finish(&ctx, name, "delete-two-back-to-back", writers, t).await
    });
}

/// Force-deletes the operator's pods (wherever the chart installed it), as a node failure would.
async fn kill_operator(ctx: &Ctx) -> Result<(), E2eError> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let list = pods
        .list(
            &ListParams::default()
                .labels("app.kubernetes.io/name=ringcache,app.kubernetes.io/component=operator"),
        )
        .await?;
    ensure(!list.items.is_empty(), || {
        "no operator pod found (label app.kubernetes.io/component=operator)".into()
    })?;
    for p in list.items {
        let ns = p.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        api.delete(&p.name_any(), &DeleteParams::default().grace_period(0))
            .await?;
        println!(
            "[{}] operator pod {ns}/{} force-deleted",
            ctx.ns,
            p.name_any()
        );
    }
    Ok(())
}

#[test]
fn operator_killed_mid_rollout_and_mid_migration_loses_no_acknowledged_write() {
    run("opkill", |ctx| async move {
        let name = "opkill";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        rollout_restart(&ctx, name).await?;
        // Once the first pod was replaced, the operator dies.
        let sets: Api<StatefulSet> = ctx.api();
        poll(
            "the rollout under way",
            STEP,
            Duration::from_millis(500),
            || async {
                let s = sets.get(name).await?;
                let updated = s.status.and_then(|s| s.updated_replicas).unwrap_or(0);
                Ok((updated >= 1).then_some(()))
            },
        )
        .await?;
        kill_operator(&ctx).await?;
        wait_rolled(&ctx, name).await?;
        // Mid-migration: scale up, kill the operator once the pending table is written.
        patch_spec(&ctx, name, json!({"replicas": 5})).await?;
        wait_phase(&ctx, name, "Scaling", "a migration in progress").await?;
        kill_operator(&ctx).await?;
        ctx.wait_ready(name, STEP, |_| {}).await?;
        patch_spec(&ctx, name, json!({"replicas": 3})).await?;
        wait_phase(&ctx, name, "Scaling", "the scale-down in progress").await?;
        kill_operator(&ctx).await?;
        finish(&ctx, name, "operator-killed", writers, t).await
    });
}

/// A `kubernetes.io/tls` Secret as cert-manager writes it, for the names DESIGN.md's "TLS"
/// section requires: the peers' Service (the name nodes verify each other against), its pods,
/// and the client Service.
fn tls_secret(ns: &str, cluster: &str, secret: &str, ca: &Ca) -> Result<Secret, E2eError> {
    let names: Vec<String> = [
        format!("{cluster}-peers.{ns}.svc"),
        format!("*.{cluster}-peers.{ns}.svc"),
        format!("{cluster}.{ns}.svc"),
        format!("{cluster}.{ns}.svc.cluster.local"),
    ]
    .to_vec();
    let issued = ca
        .issue(cluster, &names)
        .map_err(|e| E2eError::check(e.to_string()))?;
    let data = [
        ("tls.crt", issued.cert_pem),
        ("tls.key", issued.key_pem),
        ("ca.crt", ca.pem()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.into_bytes())))
    .collect();
    Ok(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(secret.to_string()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(data),
        ..Default::default()
    })
}

#[test]
fn scaling_with_tls_loses_no_acknowledged_write() {
    run("tlsscale", |ctx| async move {
        let name = "tlsscale";
        let secret = format!("{name}-tls");
        let ca = Ca::new("ringcache e2e CA").map_err(|e| E2eError::check(e.to_string()))?;
        let secrets: Api<Secret> = ctx.api();
        secrets
            .create(
                &PostParams::default(),
                &tls_secret(&ctx.ns, name, &secret, &ca)?,
            )
            .await?;
        let mut spec = ClusterSpec::default().to_json();
        spec["tls"] = json!({ "secretName": secret });
        let writers = create_with(&ctx, name, spec, true).await?;
        let t = Instant::now();
        // The node port speaks TLS only: the proxy's plain-HTTP path to a pod gets no answer
        // from the node.
        let plain = ringcache_e2e::nodes::request(
            &ctx.client,
            Method::GET,
            &Target::Pod {
                ns: ctx.ns.clone(),
                name: format!("{name}-0"),
                https: false,
            }
            .path("/healthz"),
            Vec::new(),
        )
        .await;
        ensure(
            plain.is_err() || plain.as_ref().is_ok_and(|r| r.status != 200),
            || "a TLS node answered plain HTTP".into(),
        )?;
        patch_spec(&ctx, name, json!({"replicas": 5})).await?;
        ctx.wait_ready(name, STEP, |_| {}).await?;
        // Renewal, as cert-manager does it: the Secret's certificate replaced in place.
        let renewed = tls_secret(&ctx.ns, name, &secret, &ca)?;
        secrets
            .replace(&secret, &PostParams::default(), &{
                let mut s = secrets.get(&secret).await?;
                s.data = renewed.data;
                s
            })
            .await?;
        // Scaled back down under load; `finish` waits for Ready at this generation.
        patch_spec(&ctx, name, json!({"replicas": 3})).await?;
        finish_through(&ctx, name, "tls-scale-out-and-in", writers, t, true).await
    });
}
