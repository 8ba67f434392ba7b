//! End-to-end scenarios of issue 5, run against the cluster KUBECONFIG names (see the crate docs).
//! Each scenario gets its own namespace; without a cluster each prints `skipped: no cluster`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use ringcache_e2e::error::ensure;
use ringcache_e2e::harness::{poll, timed};
use ringcache_e2e::load::WriteCounters;
use ringcache_e2e::nodes::{self, Target, describe_failures};
use ringcache_e2e::resource::{ClusterSpec, cache_cluster, owned_labels};
use ringcache_e2e::status::{Migration, Status};
use ringcache_e2e::{Ctx, E2eError, Probe, keys, resp, run};
use serde_json::json;

const READY_TIMEOUT: Duration = Duration::from_secs(300);
const CONCURRENCY: usize = 32;

async fn create(ctx: &Ctx, name: &str, spec: &ClusterSpec) -> Result<(), E2eError> {
    timed(
        &format!("create CacheCluster {}/{name}", ctx.ns),
        ctx.cache_clusters()
            .create(&PostParams::default(), &cache_cluster(name, spec.to_json())),
    )
    .await?;
    Ok(())
}

fn service(ctx: &Ctx, name: &str) -> Target {
    Target::Service {
        ns: ctx.ns.clone(),
        name: name.to_string(),
        https: false,
    }
}

fn pod(ctx: &Ctx, name: &str) -> Target {
    Target::Pod {
        ns: ctx.ns.clone(),
        name: name.to_string(),
        https: false,
    }
}

/// `kubectl scale cachecluster/NAME --replicas=N`: through the scale subresource.
async fn scale(ctx: &Ctx, name: &str, replicas: u32) -> Result<(), E2eError> {
    timed(
        &format!("scale CacheCluster {}/{name} to {replicas}", ctx.ns),
        ctx.cache_clusters().patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
        ),
    )
    .await?;
    Ok(())
}

/// Writes fresh keys through the Service until stopped; returns the indices whose write was
/// acknowledged and how many were not (after retries). `attempts` counts every attempt by who
/// answered it, so refusals a retry papered over still show.
fn spawn_writer(
    ctx: &Ctx,
    name: &str,
    set: &'static str,
    stop: Arc<AtomicBool>,
    attempts: WriteCounters,
) -> tokio::task::JoinHandle<(Vec<usize>, usize)> {
    let client = ctx.client.clone();
    let target = service(ctx, name);
    tokio::spawn(async move {
        let (mut acked, mut failed) = (Vec::new(), 0usize);
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let k = keys::key(set, i);
            let mut observe = |o| attempts.record_outcome(o, || format!("PUT {k}"));
            match nodes::put_observed(&client, &target, &k, &keys::value(&k, 1), 5, &mut observe)
                .await
            {
                Ok(()) => acked.push(i),
                Err(e) => {
                    failed += 1;
                    println!("unacknowledged write {k}: {e}");
                }
            }
            i += 1;
        }
        (acked, failed)
    })
}

/// Scales and waits for Ready while a writer runs; checks the ring moved on and migration showed
/// progress, then that every key (bulk and live) is readable through the Service and every pod.
async fn scale_and_check(
    ctx: &Ctx,
    name: &str,
    to: u32,
    bulk: usize,
    live_set: &'static str,
) -> Result<(), E2eError> {
    let before = ctx.status(name).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = WriteCounters::default();
    let writer = spawn_writer(ctx, name, live_set, stop.clone(), attempts.clone());

    scale(ctx, name, to).await?;
    // status.migration shows the running migration and, after the commit, the finished one (with
    // `finished` set) until the next starts; every state seen on the way is recorded, and the
    // finished record is checked after the fact below (a fast migration may never be sampled
    // while it runs).
    let mut seen: Vec<Migration> = Vec::new();
    let after = ctx
        .wait_ready(name, READY_TIMEOUT, |s: &Status| {
            if let Some(m) = &s.migration
                && seen.last() != Some(m)
            {
                seen.push(m.clone());
            }
        })
        .await;
    stop.store(true, Ordering::Relaxed);
    let (acked, unacked) = writer
        .await
        .map_err(|e| E2eError::check(format!("writer task: {e}")))?;
    let after = after?;
    println!(
        "[{}] scaled {}→{to}: epoch {}→{}, migration states seen {seen:?}, \
         live writes acked {} unacked {unacked}; every attempt: {}",
        ctx.ns,
        before.spec_replicas,
        before.ring_epoch,
        after.ring_epoch,
        acked.len(),
        attempts.stats()
    );
    ensure(after.ring_epoch > before.ring_epoch, || {
        format!(
            "ring epoch did not advance ({} → {})",
            before.ring_epoch, after.ring_epoch
        )
    })?;
    // Read after the fact, from the Ready status itself.
    println!(
        "[{}] status.migration once Ready: {:?}",
        ctx.ns, after.migration
    );
    if let Some(why) = after.migration_incomplete(before.spec_replicas, u64::from(to)) {
        return Err(E2eError::check(format!(
            "scale {}→{to} reached Ready, but {why}",
            before.spec_replicas
        )));
    }
    ensure(
        seen.iter().all(|m| m.partitions_done <= m.partitions_total),
        || format!("migration progress beyond its total: {seen:?}"),
    )?;
    ensure(!acked.is_empty(), || {
        "no write was acknowledged while scaling".into()
    })?;
    // Writes may be refused (503) while owners change, but only rarely; none acknowledged may be lost.
    ensure(unacked * 100 <= acked.len().max(1), || {
        format!(
            "{unacked} writes unacknowledged against {} acked",
            acked.len()
        )
    })?;

    let svc = service(ctx, name);
    let lost = nodes::verify_keys(&ctx.client, &svc, live_set, acked, 1, CONCURRENCY, 3).await;
    ensure(lost.is_empty(), || {
        describe_failures("acknowledged writes during scaling", &lost)
    })?;
    let missing = nodes::verify_keys(&ctx.client, &svc, "bulk", 0..bulk, 1, CONCURRENCY, 3).await;
    ensure(missing.is_empty(), || {
        describe_failures("bulk keys through the Service", &missing)
    })?;
    // Every node answers for every key (serving or forwarding): a sample through each pod.
    for ordinal in 0..to {
        let p = pod(ctx, &format!("{name}-{ordinal}"));
        let sample = (0..500).map(|i| keys::scrambled(i + ordinal as usize * 500, bulk));
        let missing = nodes::verify_keys(&ctx.client, &p, "bulk", sample, 1, CONCURRENCY, 3).await;
        ensure(missing.is_empty(), || {
            describe_failures(&format!("bulk keys through pod {name}-{ordinal}"), &missing)
        })?;
    }
    // The StatefulSet follows the spec (on scale-down only after the data moved).
    let sts: Api<StatefulSet> = ctx.api();
    poll(
        "StatefulSet replicas to match",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let s = timed(&format!("GET StatefulSet {name}"), sts.get(name)).await?;
            let want = s.spec.as_ref().and_then(|s| s.replicas);
            let have = s.status.as_ref().map(|s| s.replicas);
            Ok(Probe::done_if(
                want == Some(to as i32) && have == Some(to as i32),
                || format!("spec.replicas {want:?}, status.replicas {have:?}, want {to}"),
            ))
        },
    )
    .await
}

#[test]
fn cluster_serves_10k_keys_and_scales_3_to_5_to_2() {
    run("scale", |ctx| async move {
        let name = "scale";
        create(&ctx, name, &ClusterSpec::default()).await?;
        ctx.wait_ready(name, READY_TIMEOUT, |_| {}).await?;

        let bulk = 10_000;
        let svc = service(&ctx, name);
        nodes::write_keys(&ctx.client, &svc, "bulk", bulk, 1, CONCURRENCY).await?;
        let missing =
            nodes::verify_keys(&ctx.client, &svc, "bulk", 0..bulk, 1, CONCURRENCY, 3).await;
        ensure(missing.is_empty(), || {
            describe_failures("bulk keys after writing", &missing)
        })?;

        scale_and_check(&ctx, name, 5, bulk, "live-up").await?;
        scale_and_check(&ctx, name, 2, bulk, "live-down").await
    });
}

#[test]
fn deleting_a_pod_keeps_serving_and_it_recovers() {
    run("podloss", |ctx| async move {
        let name = "podloss";
        create(&ctx, name, &ClusterSpec::default()).await?;
        ctx.wait_ready(name, READY_TIMEOUT, |_| {}).await?;
        let n = 2_000;
        let svc = service(&ctx, name);
        nodes::write_keys(&ctx.client, &svc, "bulk", n, 1, CONCURRENCY).await?;

        let pods: Api<Pod> = ctx.api();
        let victim = format!("{name}-1");
        let old_uid = timed(&format!("GET pod {victim}"), pods.get(&victim))
            .await?
            .uid()
            .unwrap_or_default();

        // Readers run through the pod's disappearance and return; each read may retry transient
        // errors briefly (a client would), but every key must come back with its value.
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (client, target, stop) = (ctx.client.clone(), svc.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut reads, mut failures) = (0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let k = keys::key("bulk", keys::scrambled(reads, n));
                    match nodes::get(&client, &target, &k, 4).await {
                        Ok(Some(v)) if v == keys::value(&k, 1) => {}
                        Ok(other) => failures.push(format!("{k}: {:?}", other.map(|v| v.len()))),
                        Err(e) => failures.push(format!("{k}: {e}")),
                    }
                    reads += 1;
                }
                (reads, failures)
            })
        };

        timed(
            &format!("delete pod {victim}"),
            pods.delete(&victim, &DeleteParams::default()),
        )
        .await?;
        poll(
            "the deleted pod to be replaced",
            Duration::from_secs(120),
            Duration::from_millis(500),
            || async {
                let p = timed(&format!("GET pod {victim}"), pods.get_opt(&victim)).await?;
                let uid = p.and_then(|p| p.uid());
                Ok(Probe::done_if(
                    uid.as_ref().is_some_and(|u| *u != old_uid),
                    || format!("pod UID {uid:?} (was {old_uid})"),
                ))
            },
        )
        .await?;
        let mut saw_not_up = false;
        let ready = ctx
            .wait_ready(name, READY_TIMEOUT, |s: &Status| {
                saw_not_up |= s.members.iter().any(|m| m.id == victim && m.state != "up");
            })
            .await;
        stop.store(true, Ordering::Relaxed);
        let (reads, failures) = reader
            .await
            .map_err(|e| E2eError::check(format!("reader task: {e}")))?;
        ready?;
        println!(
            "[{}] {reads} reads while {victim} was replaced; member seen not up: {saw_not_up}",
            ctx.ns
        );
        ensure(reads > 0, || {
            "no read ran during the pod replacement".into()
        })?;
        ensure(failures.is_empty(), || {
            describe_failures("reads while a pod was replaced (RF=2)", &failures)
        })?;
        // The replacement recovered its partitions: every key reads through it.
        let missing = nodes::verify_keys(
            &ctx.client,
            &pod(&ctx, &victim),
            "bulk",
            0..n,
            1,
            CONCURRENCY,
            3,
        )
        .await;
        ensure(missing.is_empty(), || {
            describe_failures("keys through the recovered pod", &missing)
        })
    });
}

/// The API server (schema + CEL), not the operator, must refuse these.
fn expect_invalid(
    what: &str,
    result: Result<impl std::fmt::Debug, E2eError>,
) -> Result<(), E2eError> {
    match result {
        Err(E2eError::Kube(kube::Error::Api(s))) if s.code == 422 => {
            println!("{what}: rejected as expected: {}", s.message);
            Ok(())
        }
        other => Err(E2eError::check(format!(
            "{what}: expected 422 Invalid from the API server, got {other:?}"
        ))),
    }
}

#[test]
fn invalid_cache_clusters_are_rejected_by_the_api_server() {
    run("invalid", |ctx| async move {
        let api = ctx.cache_clusters();
        let pp = PostParams::default();
        let create = |name: &'static str, spec: serde_json::Value| {
            let (api, pp) = (api.clone(), pp.clone());
            async move {
                timed(
                    &format!("create CacheCluster {name}"),
                    api.create(&pp, &cache_cluster(name, spec)),
                )
                .await
            }
        };
        expect_invalid(
            "replicationFactor > replicas",
            create("rf-too-big", json!({"replicas": 2, "replicationFactor": 3})).await,
        )?;
        expect_invalid(
            "replicas 0",
            create("no-replicas", json!({"replicas": 0})).await,
        )?;
        expect_invalid(
            "unknown eviction policy",
            create("bad-eviction", json!({"replicas": 1, "eviction": "random"})).await,
        )?;
        // partitions is fixed for a cluster's life.
        create(
            "fixed",
            json!({"replicas": 1, "replicationFactor": 1, "partitions": 1024}),
        )
        .await?;
        expect_invalid(
            "changing partitions",
            timed(
                "patch CacheCluster fixed",
                api.patch(
                    "fixed",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"partitions": 2048}})),
                ),
            )
            .await,
        )?;
        let kept = Status::of(&ctx.cache_cluster_json("fixed").await?);
        ensure(kept.generation == 1, || {
            format!(
                "a rejected patch changed the object: generation {}",
                kept.generation
            )
        })?;
        // The scale subresource honours the same rule.
        create("rf2", json!({"replicas": 2, "replicationFactor": 2})).await?;
        expect_invalid(
            "scale below replicationFactor",
            timed(
                "scale CacheCluster rf2",
                api.patch_scale(
                    "rf2",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": 1}})),
                ),
            )
            .await,
        )
    });
}

/// Checks that an owned object exists, is owned by the CacheCluster and carries DESIGN.md's labels.
async fn check_owned<K>(
    api: &Api<K>,
    name: &str,
    owner_uid: &str,
    cluster: &str,
) -> Result<(), E2eError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("object");
    let obj = timed(&format!("GET {kind} {name}"), api.get_opt(name))
        .await?
        .ok_or_else(|| E2eError::check(format!("{kind} {name} does not exist")))?;
    let owned = obj
        .owner_references()
        .iter()
        .any(|o| o.uid == owner_uid && o.kind == "CacheCluster");
    ensure(owned, || {
        format!("{kind} {name} has no owner reference to the CacheCluster")
    })?;
    let labels = obj.labels();
    for (k, v) in owned_labels(cluster) {
        ensure(labels.get(k) == Some(&v), || {
            format!(
                "{kind} {name}: label {k} is {:?}, want {v:?}",
                labels.get(k)
            )
        })?;
    }
    Ok(())
}

async fn gone<K>(api: &Api<K>, name: &str) -> Result<bool, E2eError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(timed(&format!("GET {name}"), api.get_opt(name))
        .await?
        .is_none())
}

#[test]
fn deleting_the_cache_cluster_garbage_collects_what_it_owned() {
    run("gc", |ctx| async move {
        let name = "gc";
        let spec = ClusterSpec {
            replicas: 1,
            replication_factor: 1,
            ..ClusterSpec::default()
        };
        create(&ctx, name, &spec).await?;
        ctx.wait_ready(name, READY_TIMEOUT, |_| {}).await?;
        let uid = timed(
            &format!("GET CacheCluster {name}"),
            ctx.cache_clusters().get(name),
        )
        .await?
        .uid()
        .unwrap_or_default();

        let sts: Api<StatefulSet> = ctx.api();
        let svc: Api<Service> = ctx.api();
        let cm: Api<ConfigMap> = ctx.api();
        let sec: Api<Secret> = ctx.api();
        let pdb: Api<PodDisruptionBudget> = ctx.api();
        let pods: Api<Pod> = ctx.api();
        let peers = format!("{name}-peers");
        let ring = format!("{name}-ring");
        let internal = format!("{name}-internal");
        check_owned(&sts, name, &uid, name).await?;
        check_owned(&svc, name, &uid, name).await?;
        check_owned(&svc, &peers, &uid, name).await?;
        check_owned(&cm, &ring, &uid, name).await?;
        check_owned(&sec, &internal, &uid, name).await?;
        check_owned(&pdb, name, &uid, name).await?;

        timed(
            &format!("delete CacheCluster {name}"),
            ctx.cache_clusters()
                .delete(name, &DeleteParams::background()),
        )
        .await?;
        let pod0 = format!("{name}-0");
        poll(
            "every owned object to be garbage-collected",
            Duration::from_secs(180),
            Duration::from_secs(1),
            || async {
                let left: Vec<&str> = [
                    ("CacheCluster", !gone(&ctx.cache_clusters(), name).await?),
                    ("StatefulSet", !gone(&sts, name).await?),
                    ("Service", !gone(&svc, name).await?),
                    ("peers Service", !gone(&svc, &peers).await?),
                    ("ring ConfigMap", !gone(&cm, &ring).await?),
                    ("internal Secret", !gone(&sec, &internal).await?),
                    ("PodDisruptionBudget", !gone(&pdb, name).await?),
                    ("pod", !gone(&pods, &pod0).await?),
                ]
                .into_iter()
                .filter_map(|(what, present)| present.then_some(what))
                .collect();
                Ok(Probe::done_if(left.is_empty(), || {
                    format!("still there: {}", left.join(", "))
                }))
            },
        )
        .await
    });
}

/// Opens a RESP connection to `pod`'s `redis` port through the API server (a port-forward).
async fn redis_conn(
    ctx: &Ctx,
    pod: &str,
) -> Result<
    (
        resp::Conn<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + use<>>,
        kube::api::Portforwarder,
    ),
    E2eError,
> {
    let pods: Api<Pod> = ctx.api();
    let mut pf = timed(
        &format!("port-forward to {pod}:6379"),
        pods.portforward(pod, &[6379]),
    )
    .await?;
    let stream = pf
        .take_stream(6379)
        .ok_or_else(|| E2eError::check(format!("no port-forward stream to {pod}:6379")))?;
    Ok((resp::Conn::new(stream), pf))
}

#[test]
fn redis_clients_reach_every_key_through_any_pod() {
    run("redis", |ctx| async move {
        let name = "redis";
        create(&ctx, name, &ClusterSpec::default()).await?;
        ctx.wait_ready(name, READY_TIMEOUT, |_| {}).await?;
        // The client Service offers the redis port next to HTTP.
        let svc: Api<Service> = ctx.api();
        let ports = timed(&format!("GET Service {name}"), svc.get(name))
            .await?
            .spec
            .and_then(|s| s.ports)
            .unwrap_or_default();
        ensure(
            ports
                .iter()
                .any(|p| p.name.as_deref() == Some("redis") && p.port == 6379),
            || format!("Service {name} has no port redis/6379: {ports:?}"),
        )?;
        let (mut a, pf_a) = redis_conn(&ctx, &format!("{name}-0")).await?;
        let (mut b, pf_b) = redis_conn(&ctx, &format!("{name}-2")).await?;
        let ok = resp::Reply::Simple("OK".into());
        // 200 keys written through pod 0 (most forwarded or replicated), read through pod 2.
        let mut mset: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
        for i in 0..200 {
            mset.push(format!("r{i}").into_bytes());
            mset.push(format!("v{i}").into_bytes());
        }
        let args: Vec<&[u8]> = mset.iter().map(Vec::as_slice).collect();
        ensure(a.call(&args).await? == ok, || {
            "MSET not acknowledged".into()
        })?;
        let mut mget: Vec<Vec<u8>> = vec![b"MGET".to_vec()];
        mget.extend((0..200).map(|i| format!("r{i}").into_bytes()));
        let args: Vec<&[u8]> = mget.iter().map(Vec::as_slice).collect();
        let want = resp::Reply::Array(
            (0..200)
                .map(|i| resp::Reply::Bulk(Some(format!("v{i}").into_bytes())))
                .collect(),
        );
        let got = b.call(&args).await?;
        ensure(got == want, || format!("MGET through another pod: {got:?}"))?;
        // Counters from two pods meet on the key's owner.
        for _ in 0..20 {
            a.call(&[b"INCR", b"hits"]).await?;
            b.call(&[b"INCR", b"hits"]).await?;
        }
        let hits = a.call(&[b"GET", b"hits"]).await?;
        ensure(hits == resp::Reply::Bulk(Some(b"40".to_vec())), || {
            format!("40 increments from two pods read {hits:?}")
        })?;
        // What RESP wrote, HTTP reads.
        let v = nodes::get(&ctx.client, &service(&ctx, name), "r7", 3).await?;
        ensure(v.as_deref() == Some(&b"v7"[..]), || {
            format!("r7 over HTTP: {v:?}")
        })?;
        drop((a, b));
        for pf in [pf_a, pf_b] {
            pf.abort();
        }
        Ok(())
    });
}
