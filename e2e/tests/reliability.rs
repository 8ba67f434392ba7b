//! Reliability scenarios (DESIGN.md "Testing levels" 5) on a real cluster: a 3-node RF=2
//! CacheCluster under load (PUT, overwrite, DELETE and reads through the client Service), put
//! through a routine operation, brought back to Ready, then every key read back and classified
//! against its last acknowledged operation by the checker the cluster simulation also uses. Each
//! must end with nothing lost, stale or resurrected, and no read during the load wrong. Planned
//! operations (rollout restart, image change) must also have no write refused by a node (503);
//! writes that got no answer or a proxy error while a pod went away are counted apart.
//! Without a cluster each prints `skipped: no cluster`.

use std::time::{Duration, Instant};

use http::Method;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use ringcache_common::pki::Ca;
use ringcache_e2e::error::ensure;
use ringcache_e2e::harness::{poll, timed, within};
use ringcache_e2e::load::{Writers, verify};
use ringcache_e2e::nodes::{NODE_TIMEOUT, Target};
use ringcache_e2e::resource::{ClusterSpec, OPERATOR_SELECTOR, cache_cluster, node_pod_selector};
use ringcache_e2e::rollout::{self, TemplateChange};
use ringcache_e2e::status::Status;
use ringcache_e2e::{Ctx, E2eError, Probe, run};
use serde_json::{Value, json};

const READY: Duration = Duration::from_secs(300);
const STEP: Duration = Duration::from_secs(600);

async fn create(ctx: &Ctx, name: &str) -> Result<Writers, E2eError> {
    create_with(ctx, name, ClusterSpec::default().to_json(), false).await
}

/// Creates CacheCluster `name` with `spec`, waits for Ready and starts writers through its
/// Service (`https` when the spec has `tls`).
async fn create_with(ctx: &Ctx, name: &str, spec: Value, https: bool) -> Result<Writers, E2eError> {
    timed(
        &format!("create CacheCluster {}/{name}", ctx.ns),
        ctx.cache_clusters()
            .create(&PostParams::default(), &cache_cluster(name, spec)),
    )
    .await?;
    ctx.wait_ready(name, READY, |_| {}).await?;
    let writers = Writers::start(&ctx.client, &service(ctx, name, https), name, 4, 300);
    ensure(
        writers.wait_acked(300, Duration::from_secs(120)).await,
        || {
            format!(
                "writes were not acknowledged before the scenario: {}",
                writers.stats()
            )
        },
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

/// Waits until CacheCluster `name` reports phase Scaling (`true`), or until the `from`→`to`
/// migration already finished (`false`: it was faster than the poll, so nothing is mid-way).
async fn wait_scaling(ctx: &Ctx, name: &str, from: u64, to: u64) -> Result<bool, E2eError> {
    poll(
        &format!("{}/{name}: the {from}→{to} migration under way", ctx.ns),
        STEP,
        Duration::from_millis(200),
        || async {
            let s = ctx.status(name).await?;
            let finished = s
                .migration
                .as_ref()
                .is_some_and(|m| m.incomplete_for(from, to).is_none());
            Ok(if s.phase.as_deref() == Some("Scaling") {
                Probe::Done(true)
            } else if finished {
                Probe::Done(false)
            } else {
                Probe::Waiting(s.summary())
            })
        },
    )
    .await
}

/// The Ready status after a `from`→`to` scale records that migration as completed.
fn migration_recorded(ready: &Status, from: u64, to: u64) -> Result<(), E2eError> {
    match ready.migration_incomplete(from, to) {
        None => Ok(()),
        Some(why) => Err(E2eError::check(format!(
            "scale {from}→{to} reached Ready, but {why}"
        ))),
    }
}

/// What a scenario allows of writes that were not acknowledged.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refusals {
    /// A planned operation (rollout): no node may refuse a write (answer 503); proxy errors and
    /// missing answers while a pod goes away are tolerated within the overall bound.
    None,
    /// Failures (kills, deletions): a node may refuse writes while a member is being marked down.
    Rare,
}

/// Stops the load on a Ready cluster, reads every key back and fails on any loss.
async fn finish(
    ctx: &Ctx,
    name: &str,
    scenario: &str,
    writers: Writers,
    started: Instant,
    refusals: Refusals,
) -> Result<(), E2eError> {
    finish_through(ctx, name, scenario, writers, started, false, refusals).await
}

async fn finish_through(
    ctx: &Ctx,
    name: &str,
    scenario: &str,
    writers: Writers,
    started: Instant,
    https: bool,
    refusals: Refusals,
) -> Result<(), E2eError> {
    ctx.wait_ready(name, STEP, |_| {}).await?;
    let before = writers.stats().acked;
    let settled = writers
        .wait_acked(before + 100, Duration::from_secs(60))
        .await;
    let report = writers.stop().await;
    let summary = verify(&ctx.client, &service(ctx, name, https), &report.checker).await?;
    let (writes, reads) = (report.writes, &report.reads);
    println!(
        "[{}] scenario {scenario}: final read-back: {summary}; {writes}; reads while the writers \
         ran: {reads}; in {:.0?}",
        ctx.ns,
        started.elapsed()
    );
    if !report.write_examples.is_empty() {
        println!(
            "[{}] unacknowledged writes, first few: {:#?}",
            ctx.ns, report.write_examples
        );
    }
    ensure(settled, || {
        format!("{scenario}: writes were not acknowledged again once the cluster was Ready")
    })?;
    ensure(summary.clean(), || {
        format!("{scenario}: {summary}: {:?}", summary.examples)
    })?;
    ensure(reads.checked > 0, || {
        format!("{scenario}: no read ran while the writers ran")
    })?;
    ensure(reads.wrong() == 0, || {
        format!(
            "{scenario}: {} reads while the writers ran returned a wrong value: {:?}",
            reads.wrong(),
            reads.examples
        )
    })?;
    if refusals == Refusals::None {
        ensure(writes.node_503 == 0, || {
            format!(
                "{scenario}: {} writes were answered 503 by a node during a planned operation; \
                 {writes}; e.g. {:?}",
                writes.node_503, report.write_examples
            )
        })?;
    }
    // Writes may go unanswered while a pod goes away (and be refused while a member is being
    // marked down), but rarely.
    ensure(writes.failed * 10 <= writes.acked, || {
        format!("{scenario}: too many writes not acknowledged: {writes}")
    })
}

/// The node image to upgrade to (a second tag e2e/kind.sh loads); without one, a change of the
/// resource requests takes the same path: a new pod template rolled out by the operator.
fn upgrade_change() -> TemplateChange {
    match std::env::var("RINGCACHE_E2E_UPGRADE_IMAGE") {
        Ok(image) if !image.is_empty() => TemplateChange::Image(image),
        _ => TemplateChange::Requests {
            cpu: "11m".into(),
            memory: "40Mi".into(),
        },
    }
}

#[test]
fn rollout_restart_loses_no_acknowledged_write() {
    run("rollout", |ctx| async move {
        let name = "rollout";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        let before = rollout::baseline(&ctx, name).await?;
        let target = rollout::restart(&ctx, name).await?;
        println!(
            "[{}] rollout restart: StatefulSet generation {target}",
            ctx.ns
        );
        rollout::wait_rolled_out(&ctx, name, &before, target, &writers, false, STEP).await?;
        finish(&ctx, name, "rollout-restart", writers, t, Refusals::None).await
    });
}

#[test]
fn image_change_loses_no_acknowledged_write() {
    run("upgrade", |ctx| async move {
        let name = "upgrade";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        let change = upgrade_change();
        let before = rollout::baseline(&ctx, name).await?;
        let target = rollout::change_template(&ctx, name, &change, STEP).await?;
        println!(
            "[{}] template change {change:?} applied: StatefulSet generation {target}",
            ctx.ns
        );
        rollout::wait_rolled_out(&ctx, name, &before, target, &writers, false, STEP).await?;
        finish(&ctx, name, "image-change", writers, t, Refusals::None).await
    });
}

#[test]
fn in_place_restarts_of_two_processes_lose_no_acknowledged_write() {
    run("killinplace", |ctx| async move {
        let name = "killinplace";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        let secrets: Api<Secret> = ctx.api();
        let internal = format!("{name}-internal");
        let token = timed(&format!("GET Secret {internal}"), secrets.get(&internal))
            .await?
            .data
            .and_then(|d| {
                d.get("token")
                    .map(|b| String::from_utf8_lossy(&b.0).to_string())
            })
            .ok_or_else(|| E2eError::check("no internal token"))?;
        for victim in [format!("{name}-1"), format!("{name}-2")] {
            let old = ctx
                .status(name)
                .await?
                .incarnation_of(&victim)
                .map(str::to_string);
            let target = Target::Pod {
                ns: ctx.ns.clone(),
                name: victim.clone(),
                https: false,
            };
            // The node process dies at once (as from SIGKILL); the pod stays and the kubelet
            // restarts the container in place. It dies before answering, so no answer is the
            // expected outcome here.
            let req = http::Request::builder()
                .method(Method::POST)
                .uri(target.path("/internal/v1/abort"))
                .header(ringcache_common::protocol::INTERNAL_TOKEN_HEADER, &token)
                .body(kube::client::Body::empty())?;
            let _ = within(NODE_TIMEOUT, "abort", ctx.client.send(req)).await;
            poll(
                &format!("{victim} recovered under a new incarnation"),
                STEP,
                Duration::from_secs(1),
                || async {
                    let s = ctx.status(name).await?;
                    let now = s.incarnation_of(&victim);
                    Ok(Probe::done_if(
                        now.is_some() && now != old.as_deref() && s.is_ready(),
                        || format!("incarnation {now:?} (was {old:?}); {}", s.summary()),
                    ))
                },
            )
            .await?;
        }
        finish(
            &ctx,
            name,
            "kill-in-place-twice",
            writers,
            t,
            Refusals::Rare,
        )
        .await
    });
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[test]
fn two_pods_deleted_back_to_back_lose_no_acknowledged_write() {
    run("deletetwo", |ctx| async move {
        let name = "deletetwo";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        let pods: Api<Pod> = ctx.api();
        let first = format!("{name}-0");
        let old_uid = timed(&format!("GET pod {first}"), pods.get(&first))
            .await?
            .uid()
            .unwrap_or_default();
        timed(
            &format!("delete pod {first}"),
            pods.delete(&first, &DeleteParams::default()),
        )
        .await?;
        // The second goes as soon as the first one's replacement reports Ready.
        poll(
            "the first pod replaced and Ready",
            STEP,
            Duration::from_millis(500),
            || async {
                let p = timed(&format!("GET pod {first}"), pods.get_opt(&first)).await?;
                Ok(match p {
                    None => Probe::Waiting("no pod yet".into()),
                    Some(p) if p.uid().unwrap_or_default() == old_uid => {
                        Probe::Waiting("the old pod still there".into())
                    }
                    Some(p) => Probe::done_if(pod_ready(&p), || "replacement not Ready".into()),
                })
            },
        )
        .await?;
        let second = format!("{name}-1");
        timed(
            &format!("delete pod {second}"),
            pods.delete(&second, &DeleteParams::default()),
        )
        .await?;
        finish(
            &ctx,
            name,
            "delete-two-back-to-back",
            writers,
            t,
            Refusals::Rare,
        )
        .await
    });
}

/// Force-deletes the operator's pods (wherever the chart installed it), as a node failure would.
async fn kill_operator(ctx: &Ctx) -> Result<(), E2eError> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let list = timed(
        "list operator pods",
        pods.list(&ListParams::default().labels(OPERATOR_SELECTOR)),
    )
    .await?;
    ensure(!list.items.is_empty(), || {
        format!("no operator pod found ({OPERATOR_SELECTOR})")
    })?;
    for p in list.items {
        let ns = p.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        timed(
            &format!("force-delete operator pod {ns}/{}", p.name_any()),
            api.delete(&p.name_any(), &DeleteParams::default().grace_period(0)),
        )
        .await?;
        println!(
            "[{}] operator pod {ns}/{} force-deleted",
            ctx.ns,
            p.name_any()
        );
    }
    Ok(())
}

async fn patch_spec(ctx: &Ctx, name: &str, spec: Value) -> Result<(), E2eError> {
    timed(
        &format!("patch CacheCluster {}/{name}", ctx.ns),
        ctx.cache_clusters().patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        ),
    )
    .await?;
    Ok(())
}

#[test]
fn operator_killed_mid_rollout_and_mid_migration_loses_no_acknowledged_write() {
    run("opkill", |ctx| async move {
        let name = "opkill";
        let writers = create(&ctx, name).await?;
        let t = Instant::now();
        let before = rollout::baseline(&ctx, name).await?;
        let target = rollout::restart(&ctx, name).await?;
        // Once the first pod was replaced, the operator dies. (Not the StatefulSet's
        // updatedReplicas: until its controller observes the change, that counts the old pods.)
        let pods: Api<Pod> = ctx.api();
        poll(
            "the rollout under way (a first pod replaced)",
            STEP,
            Duration::from_millis(500),
            || async {
                let list = timed(
                    "list node pods",
                    pods.list(&ListParams::default().labels(&node_pod_selector(name))),
                )
                .await?;
                let replaced = list
                    .items
                    .iter()
                    .filter(|p| {
                        before
                            .pod_uids
                            .get(&p.name_any())
                            .is_some_and(|old| Some(old) != p.metadata.uid.as_ref())
                    })
                    .count();
                Ok(Probe::done_if(replaced >= 1, || {
                    format!("{replaced} pods replaced")
                }))
            },
        )
        .await?;
        kill_operator(&ctx).await?;
        rollout::wait_rolled_out(&ctx, name, &before, target, &writers, false, STEP).await?;
        // Mid-migration: scale up, kill the operator once the pending table is written.
        patch_spec(&ctx, name, json!({"replicas": 5})).await?;
        if !wait_scaling(&ctx, name, 3, 5).await? {
            println!(
                "[{}] the 3→5 migration finished before the operator could be killed mid-way",
                ctx.ns
            );
        }
        kill_operator(&ctx).await?;
        let ready = ctx.wait_ready(name, STEP, |_| {}).await?;
        migration_recorded(&ready, 3, 5)?;
        patch_spec(&ctx, name, json!({"replicas": 3})).await?;
        if !wait_scaling(&ctx, name, 5, 3).await? {
            println!(
                "[{}] the 5→3 migration finished before the operator could be killed mid-way",
                ctx.ns
            );
        }
        kill_operator(&ctx).await?;
        finish(&ctx, name, "operator-killed", writers, t, Refusals::Rare).await
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
        timed(
            &format!("create Secret {secret}"),
            secrets.create(
                &PostParams::default(),
                &tls_secret(&ctx.ns, name, &secret, &ca)?,
            ),
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
        let ready = ctx.wait_ready(name, STEP, |_| {}).await?;
        println!(
            "[{}] 3→5 over TLS: {:?}; {}",
            ctx.ns,
            ready.migration,
            writers.stats()
        );
        migration_recorded(&ready, 3, 5)?;
        // Renewal, as cert-manager does it: the Secret's certificate replaced in place.
        let renewed = tls_secret(&ctx.ns, name, &secret, &ca)?;
        let mut current = timed(&format!("GET Secret {secret}"), secrets.get(&secret)).await?;
        current.data = renewed.data;
        timed(
            &format!("replace Secret {secret}"),
            secrets.replace(&secret, &PostParams::default(), &current),
        )
        .await?;
        println!("[{}] certificate renewed in Secret {secret}", ctx.ns);
        // Scaled back down under load; `finish` waits for Ready at this generation.
        patch_spec(&ctx, name, json!({"replicas": 3})).await?;
        finish_through(
            &ctx,
            name,
            "tls-scale-out-and-in",
            writers,
            t,
            true,
            Refusals::Rare,
        )
        .await
    });
}
