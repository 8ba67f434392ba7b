//! The fake API server driven through a real `kube::Client`, as the operator drives it.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchParams,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use super::*;

const NS: &str = "ns";
const OPERATOR: &str = "ringcache-operator";

fn config_map(name: &str, app: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": app}},
        "data": {"k": "v"},
    }))
    .unwrap()
}

fn stateful_set(labels: Value, template_annotations: Value, replicas: i32) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "demo", "namespace": NS, "labels": labels},
        "spec": {
            "replicas": replicas,
            "serviceName": "demo-peers",
            "selector": {"matchLabels": {"app": "demo"}},
            "template": {
                "metadata": {"labels": {"app": "demo"}, "annotations": template_annotations},
                "spec": {"containers": [{"name": "node", "image": "ringcache:1"}]},
            },
        },
    }))
    .unwrap()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "spec": {"containers": [{"name": "node", "image": "ringcache:1"}]},
    }))
    .unwrap()
}

fn cache_cluster_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ringcache.io", "v1alpha1", "CacheCluster"),
        "cacheclusters",
    )
}

fn apply_params() -> PatchParams {
    PatchParams::apply(OPERATOR).force()
}

fn manager(name: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(name.into()),
        ..PatchParams::default()
    }
}

/// Server-side apply of `obj` by the operator (forced), as its reconcile does.
async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> K
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.patch(name, &apply_params(), &Patch::Apply(obj))
        .await
        .unwrap()
}

/// `POST` of `obj`, which must be created.
async fn create<K>(api: &Api<K>, obj: &K) -> K
where
    K: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), obj).await.unwrap()
}

/// A merge patch of `name` by field manager `by`.
async fn merge<K>(api: &Api<K>, name: &str, by: &str, patch: Value) -> K
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &manager(by), &Patch::Merge(patch))
        .await
        .unwrap()
}

/// `obj` as a PUT body with `.spec.replicas` and `.status` replaced.
fn with_replicas_and_status(obj: &DynamicObject, replicas: i64, status: Value) -> DynamicObject {
    let mut put = obj.clone();
    put.data["spec"]["replicas"] = json!(replicas);
    put.data["status"] = status;
    put
}

/// `.spec.replicas` and `.status` of `obj`.
fn replicas_and_status(obj: &DynamicObject) -> (i64, Value) {
    (
        obj.data["spec"]["replicas"].as_i64().unwrap(),
        obj.data["status"].clone(),
    )
}

fn api_code(result: Result<impl std::fmt::Debug, kube::Error>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn rv(obj: &impl Resource) -> u64 {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn typed_create_get_list_with_selector_and_delete() {
    let fake = FakeApi::new();
    let client = fake.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "other");
    let pp = PostParams::default();

    let a = cms.create(&pp, &config_map("a", "x")).await.unwrap();
    cms.create(&pp, &config_map("b", "y")).await.unwrap();
    other.create(&pp, &config_map("c", "x")).await.unwrap();
    assert_eq!(a.metadata.namespace.as_deref(), Some(NS));
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    assert_eq!(rv(&a), 1);
    assert_eq!(a.metadata.generation, None, "no spec, no generation");
    assert_eq!(
        api_code(cms.create(&pp, &config_map("a", "x")).await),
        (409, "AlreadyExists".into())
    );

    let got = cms.get("a").await.unwrap();
    assert_eq!(got.data, a.data);
    assert_eq!(got.metadata.uid, a.metadata.uid);
    assert!(cms.get_opt("missing").await.unwrap().is_none());
    assert_eq!(api_code(cms.get("missing").await), (404, "NotFound".into()));

    let names = |list: kube::api::ObjectList<ConfigMap>| {
        list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    let lp = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(cms.list(&lp("app=x")).await.unwrap()), ["a"]);
    assert_eq!(names(cms.list(&lp("app!=x")).await.unwrap()), ["b"]);
    assert_eq!(names(cms.list(&lp("app")).await.unwrap()), ["a", "b"]);
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(names(all.list(&lp("app=x")).await.unwrap()), ["a", "c"]);
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.types.kind, "ConfigMapList");
    assert_eq!(
        list.metadata.resource_version,
        Some(fake.resource_version().to_string())
    );
    assert_eq!(api_code(cms.list(&lp("=x")).await).0, 400);

    let wrong_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(api_code(cms.delete("a", &wrong_uid).await).0, 409);
    let deleted = cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(
        deleted.is_right(),
        "a removed object is answered with a Status"
    );
    assert!(cms.get_opt("a").await.unwrap().is_none());
    assert_eq!(
        api_code(cms.delete("a", &DeleteParams::default()).await),
        (404, "NotFound".into())
    );
}

#[tokio::test]
async fn ssa_reapply_drops_removed_fields_and_keeps_other_managers_fields() {
    let fake = FakeApi::new();
    let sets: Api<StatefulSet> = Api::namespaced(fake.client(), NS);
    let first = stateful_set(json!({"a": "1", "b": "2"}), json!({"mine": "1"}), 3);
    let created = apply(&sets, "demo", &first).await;
    assert_eq!(created.metadata.generation, Some(1));

    // `kubectl rollout restart` is a strategic merge patch of the pod template annotations.
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"
    }}}}});
    sets.patch(
        "demo",
        &manager("kubectl-rollout"),
        &Patch::Strategic(&restart),
    )
    .await
    .unwrap();

    let second = stateful_set(json!({"a": "1"}), json!({}), 3);
    let after = apply(&sets, "demo", &second).await;
    let labels = after.labels();
    assert_eq!(labels.get("a").map(String::as_str), Some("1"));
    assert!(
        !labels.contains_key("b"),
        "a label the operator stopped applying is removed"
    );
    let annotations = after
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert!(!annotations.contains_key("mine"));
    assert_eq!(
        annotations
            .get("kubectl.kubernetes.io/restartedAt")
            .map(String::as_str),
        Some("2026-01-01T00:00:00Z"),
        "another manager's annotation survives the operator's re-apply"
    );
    let owners = fake.field_owners(&Res::stateful_sets(), NS, "demo");
    assert_eq!(
        owners["spec.template.metadata.annotations.kubectl.kubernetes.io/restartedAt"],
        "kubectl-rollout"
    );
    assert_eq!(owners["spec.replicas"], OPERATOR);
    assert_eq!(after.metadata.generation, Some(3), "two template changes");
}

#[tokio::test]
async fn ssa_with_a_stale_resource_version_conflicts() {
    let fake = FakeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), NS);
    let v1 = apply(&cms, "a", &config_map("a", "x")).await;

    // Compare-and-set: apply carrying the resourceVersion just read succeeds once...
    let mut next = config_map("a", "x");
    next.data = Some([("k".to_string(), "v2".to_string())].into());
    next.metadata.resource_version = v1.metadata.resource_version.clone();
    let v2 = apply(&cms, "a", &next).await;
    assert!(rv(&v2) > rv(&v1));
    // ...and a second writer holding the same (now stale) version loses.
    next.data = Some([("k".to_string(), "v3".to_string())].into());
    assert_eq!(
        api_code(cms.patch("a", &apply_params(), &Patch::Apply(&next)).await),
        (409, "Conflict".into())
    );
    assert_eq!(cms.get("a").await.unwrap().data, v2.data);

    // A precondition on a missing object cannot hold either.
    let mut absent = config_map("b", "x");
    absent.metadata.resource_version = Some("1".into());
    assert_eq!(
        api_code(
            cms.patch("b", &apply_params(), &Patch::Apply(&absent))
                .await
        )
        .0,
        409
    );
    assert!(cms.get_opt("b").await.unwrap().is_none());
}

#[tokio::test]
async fn put_with_a_stale_resource_version_conflicts() {
    let fake = FakeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), NS);
    let pp = PostParams::default();
    let original = cms.create(&pp, &config_map("a", "x")).await.unwrap();

    let mut changed = original.clone();
    changed.data = Some([("k".to_string(), "new".to_string())].into());
    let replaced = cms.replace("a", &pp, &changed).await.unwrap();
    assert_eq!(replaced.data, changed.data);

    assert_eq!(
        api_code(cms.replace("a", &pp, &original).await),
        (409, "Conflict".into())
    );
    assert_eq!(cms.get("a").await.unwrap().data, changed.data);
    let mut missing = config_map("zz", "x");
    missing.metadata.resource_version = None;
    assert_eq!(api_code(cms.replace("zz", &pp, &missing).await).0, 404);
}

#[tokio::test]
async fn status_subresource_is_isolated_both_ways() {
    let fake = FakeApi::new();
    let ar = cache_cluster_resource();
    let clusters: Api<DynamicObject> = Api::namespaced_with(fake.client(), NS, &ar);
    let cc = DynamicObject::new("demo", &ar).data(json!({
        "spec": {"replicas": 3},
        "status": {"phase": "ignored on create"},
    }));
    let created = create(&clusters, &cc).await;
    assert_eq!(created.data["spec"]["replicas"], 3);
    assert!(created.data.get("status").is_none(), "POST drops .status");

    // Status writes (apply, as the operator's patch_status does) cannot touch the spec.
    // The operator's status apply of `status` (with a spec that must be ignored) to `name`.
    let apply_status = |name: &'static str, status: Value| {
        let body = json!({
            "apiVersion": "ringcache.io/v1alpha1",
            "kind": "CacheCluster",
            "spec": {"replicas": 99},
            "status": status,
        });
        let clusters = clusters.clone();
        async move {
            clusters
                .patch_status(name, &apply_params(), &Patch::Apply(body))
                .await
        }
    };
    let after = apply_status("demo", json!({"readyReplicas": 1, "phase": "Ready"}))
        .await
        .unwrap();
    assert_eq!(after.data["spec"]["replicas"], 3);
    assert_eq!(after.data["status"]["phase"], "Ready");
    assert_eq!(after.metadata.generation, Some(1));
    // A field the status applier stops sending is removed from the status.
    let after = apply_status("demo", json!({"readyReplicas": 2}))
        .await
        .unwrap();
    assert_eq!(after.data["status"], json!({"readyReplicas": 2}));

    // Main-resource writes cannot touch the status.
    let after = merge(
        &clusters,
        "demo",
        "kubectl",
        json!({"spec": {"replicas": 4}, "status": {"readyReplicas": 7}}),
    )
    .await;
    assert_eq!(
        replicas_and_status(&after),
        (4, json!({"readyReplicas": 2}))
    );
    let put = with_replicas_and_status(&after, 5, json!({"readyReplicas": 8}));
    let pp = PostParams::default();
    let after = clusters.replace("demo", &pp, &put).await.unwrap();
    assert_eq!(
        replicas_and_status(&after),
        (5, json!({"readyReplicas": 2}))
    );
    // And a PUT to /status changes the status only.
    let put = with_replicas_and_status(&after, 6, json!({"readyReplicas": 5}));
    let after = clusters.replace_status("demo", &pp, &put).await.unwrap();
    assert_eq!(
        replicas_and_status(&after),
        (5, json!({"readyReplicas": 5}))
    );
    // /status of a missing object is NotFound, even with apply.
    let missing = apply_status("nope", json!({})).await;
    assert_eq!(api_code(missing).0, 404);
}

#[tokio::test]
async fn generation_moves_only_on_spec_changes() {
    let fake = FakeApi::new();
    let sets: Api<StatefulSet> = Api::namespaced(fake.client(), NS);
    let sts = stateful_set(json!({"a": "1"}), json!({}), 3);
    let created = create(&sets, &sts).await;
    assert_eq!(created.metadata.generation, Some(1));

    let labelled = merge(
        &sets,
        "demo",
        "kubectl",
        json!({"metadata": {"labels": {"b": "2"}}}),
    )
    .await;
    assert_eq!(labelled.metadata.generation, Some(1), "metadata change");
    assert!(rv(&labelled) > rv(&created));

    let with_status = sets
        .patch_status(
            "demo",
            &manager("sts-controller"),
            &Patch::Merge(json!({"status": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(with_status.metadata.generation, Some(1), "status change");
    let rust_side = fake
        .update_status(&Res::stateful_sets(), NS, "demo", |o| {
            o["status"]["readyReplicas"] = json!(3);
        })
        .unwrap();
    assert_eq!(rust_side["metadata"]["generation"], 1);

    let scaled = merge(&sets, "demo", "kubectl", json!({"spec": {"replicas": 4}})).await;
    assert_eq!(scaled.metadata.generation, Some(2), "spec change");

    // A write that changes nothing moves neither the generation nor the resourceVersion.
    let same = merge(&sets, "demo", "kubectl", json!({"spec": {"replicas": 4}})).await;
    assert_eq!(same.metadata.generation, Some(2));
    assert_eq!(rv(&same), rv(&scaled));
}

#[tokio::test]
async fn pod_delete_sets_deletion_timestamp_until_removed() {
    let fake = FakeApi::new();
    let pods: Api<Pod> = Api::namespaced(fake.client(), NS);
    let pp = PostParams::default();
    let created = pods.create(&pp, &pod("demo-0")).await.unwrap();
    let mut changes = fake.changed();
    changes.mark_unchanged();

    let first = pods
        .delete("demo-0", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = first.left().expect("a terminating pod is returned");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(terminating.metadata.generation, Some(2));
    assert!(changes.has_changed().unwrap());
    assert!(rv(&terminating) > rv(&created));

    let second = pods
        .delete("demo-0", &DeleteParams::default())
        .await
        .unwrap();
    let again = second.left().expect("still terminating");
    assert_eq!(
        again.metadata.resource_version,
        terminating.metadata.resource_version
    );
    assert!(
        pods.get_opt("demo-0").await.unwrap().is_some(),
        "kept until the kubelet removes it"
    );

    let removed = fake.remove(&Res::pods(), NS, "demo-0").unwrap();
    assert_eq!(removed["metadata"]["name"], "demo-0");
    assert!(pods.get_opt("demo-0").await.unwrap().is_none());

    // An explicit grace period is recorded; zero deletes at once.
    pods.create(&pp, &pod("demo-1")).await.unwrap();
    let dp = DeleteParams::default().grace_period(5);
    let t = pods.delete("demo-1", &dp).await.unwrap().left().unwrap();
    assert_eq!(t.metadata.deletion_grace_period_seconds, Some(5));
    pods.create(&pp, &pod("demo-2")).await.unwrap();
    pods.delete("demo-2", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("demo-2").await.unwrap().is_none());

    // The Rust-side delete has the same semantics.
    pods.create(&pp, &pod("demo-3")).await.unwrap();
    let t = fake.delete(&Res::pods(), NS, "demo-3").unwrap();
    assert!(t["metadata"]["deletionTimestamp"].is_string());
    assert!(fake.get(&Res::pods(), NS, "demo-3").is_some());
}

#[tokio::test]
async fn recorder_publishes_then_merge_patches_the_same_event() {
    let fake = FakeApi::new();
    let client = fake.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm = create(&cms, &config_map("a", "x")).await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: OPERATOR.into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "RingCreated".into(),
        note: Some("ring epoch 1".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    let reference = cm.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();

    let events: Api<K8sEvent> = Api::namespaced(client, NS);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        list.items.len(),
        1,
        "the second publish updates the first event"
    );
    let stored = &list.items[0];
    assert_eq!(stored.reason.as_deref(), Some("RingCreated"));
    assert_eq!(stored.series.as_ref().map(|s| s.count), Some(2));
    let calls: Vec<(String, Option<String>)> = fake
        .requests()
        .into_iter()
        .filter(|r| r.uri.contains("/events"))
        .map(|r| (r.method.to_string(), r.content_type))
        .collect();
    assert_eq!(calls[0].0, "POST");
    assert_eq!(
        calls[1],
        ("PATCH".into(), Some("application/merge-patch+json".into()))
    );
}

#[tokio::test]
async fn dynamic_objects_list_across_namespaces_and_page_with_limit() {
    let fake = FakeApi::new();
    let client = fake.client();
    let ar = cache_cluster_resource();
    for ns in ["a", "b"] {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let cc = DynamicObject::new("demo", &ar).data(json!({"spec": {"replicas": 1}}));
        create(&api, &cc).await;
    }
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let list = all.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.types.kind, "CacheClusterList");
    let where_ = |l: &kube::api::ObjectList<DynamicObject>| {
        l.items
            .iter()
            .map(|o| o.namespace().unwrap_or_default())
            .collect::<Vec<_>>()
    };
    assert_eq!(where_(&list), ["a", "b"]);
    let only_b: Api<DynamicObject> = Api::namespaced_with(client, "b", &ar);
    assert_eq!(
        where_(&only_b.list(&ListParams::default()).await.unwrap()),
        ["b"]
    );

    let page = all.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(where_(&page), ["a"]);
    let token = page.metadata.continue_.clone().unwrap();
    let rest = all
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(where_(&rest), ["b"]);
    assert!(rest.metadata.continue_.is_none());
}

#[tokio::test]
async fn json_patch_and_merge_patch_honour_tests_and_preconditions() {
    let fake = FakeApi::new();
    let client = fake.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let cm = create(&cms, &config_map("a", "x")).await;
    let json_patch = |ops: Value| {
        http::Request::patch(format!(
            "/api/v1/namespaces/{NS}/configmaps/a?fieldManager=jp"
        ))
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap())
        .unwrap()
    };
    let patched: ConfigMap = client
        .request(json_patch(json!([
            {"op": "test", "path": "/data/k", "value": "v"},
            {"op": "replace", "path": "/data/k", "value": "w"},
            {"op": "add", "path": "/data/n", "value": "1"},
        ])))
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["k"], "w");
    assert_eq!(
        fake.field_owners(&Res::config_maps(), NS, "a")["data.k"],
        "jp"
    );
    let failed = client
        .request::<ConfigMap>(json_patch(
            json!([{"op": "test", "path": "/data/k", "value": "v"}]),
        ))
        .await;
    assert_eq!(api_code(failed), (422, "Invalid".into()));

    let stale =
        json!({"metadata": {"resourceVersion": cm.metadata.resource_version}, "data": {"k": "z"}});
    assert_eq!(
        api_code(cms.patch("a", &manager("m"), &Patch::Merge(&stale)).await),
        (409, "Conflict".into())
    );
    let missing = cms.patch("zz", &manager("m"), &Patch::Merge(&stale)).await;
    assert_eq!(api_code(missing).0, 404);
    let unsupported = http::Request::patch(format!("/api/v1/namespaces/{NS}/configmaps/a"))
        .header("content-type", "text/plain")
        .body(b"{}".to_vec())
        .unwrap();
    assert_eq!(
        api_code(client.request::<ConfigMap>(unsupported).await),
        (415, "UnsupportedMediaType".into())
    );
}

#[tokio::test]
async fn watch_is_refused_with_method_not_allowed() {
    let fake = FakeApi::new();
    let pods: Api<Pod> = Api::namespaced(fake.client(), NS);
    let watch = pods.watch(&WatchParams::default(), "0").await;
    match watch {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 405),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a watch must be refused"),
    }
}

#[tokio::test]
async fn fail_next_fails_exactly_one_matching_request() {
    let fake = FakeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), NS);
    create(&cms, &config_map("a", "x")).await;
    fake.fail_next(
        http::Method::PATCH,
        "/api/v1/namespaces/ns/configmaps/",
        409,
    );
    assert!(cms.get("a").await.is_ok(), "other methods are not affected");
    let patch = Patch::Apply(config_map("a", "y"));
    assert_eq!(
        api_code(cms.patch("a", &apply_params(), &patch).await),
        (409, "Conflict".into())
    );
    let applied = cms.patch("a", &apply_params(), &patch).await.unwrap();
    assert_eq!(applied.labels()["app"], "y");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 200, 409, 200]);
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_spec_replicas() {
    let fake = FakeApi::new();
    let sets: Api<StatefulSet> = Api::namespaced(fake.client(), NS);
    let sts = stateful_set(json!({}), json!({}), 3);
    apply(&sets, "demo", &sts).await;
    let scale = sets.get_scale("demo").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(
        scale.status.and_then(|s| s.selector).as_deref(),
        Some("app=demo")
    );

    // `kubectl scale` patches /scale; the operator's forced re-apply takes the field back.
    let scaled = sets
        .patch_scale(
            "demo",
            &manager("kubectl-scale"),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(5));
    assert_eq!(
        fake.field_owners(&Res::stateful_sets(), NS, "demo")["spec.replicas"],
        "kubectl-scale"
    );
    assert_eq!(sets.get("demo").await.unwrap().metadata.generation, Some(2));
    let back = apply(&sets, "demo", &sts).await;
    assert_eq!(back.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(
        fake.field_owners(&Res::stateful_sets(), NS, "demo")["spec.replicas"],
        OPERATOR
    );
}

#[tokio::test]
async fn no_op_apply_keeps_the_resource_version() {
    let fake = FakeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), NS);
    let cm = config_map("a", "x");
    let first = apply(&cms, "a", &cm).await;
    let mut changes = fake.changed();
    changes.mark_unchanged();
    let second = apply(&cms, "a", &cm).await;
    assert_eq!(rv(&second), rv(&first));
    assert!(!changes.has_changed().unwrap());
}

#[tokio::test]
async fn generate_name_gives_distinct_names() {
    let fake = FakeApi::new();
    let cms: Api<ConfigMap> = Api::namespaced(fake.client(), NS);
    let mut cm = config_map("", "x");
    cm.metadata.name = None;
    cm.metadata.generate_name = Some("gen-".into());
    let a = create(&cms, &cm).await;
    let b = create(&cms, &cm).await;
    assert!(a.name_any().starts_with("gen-") && a.name_any().len() == 9);
    assert_ne!(a.name_any(), b.name_any());
    cm.metadata.generate_name = None;
    assert_eq!(
        api_code(cms.create(&PostParams::default(), &cm).await).0,
        422
    );
}

#[tokio::test]
async fn rust_side_writes_follow_the_same_rules_and_notify() {
    let fake = FakeApi::new();
    let pods = Res::pods();
    let seeded = fake
        .create(
            &pods,
            NS,
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}}),
        )
        .unwrap();
    assert_eq!(seeded["kind"], "Pod");
    assert_eq!(seeded["apiVersion"], "v1");
    assert_eq!(
        seeded["status"]["phase"], "Pending",
        "Rust-side create keeps status"
    );
    assert_eq!(
        fake.create(&pods, NS, seeded.clone()).unwrap_err().code,
        400
    );

    let mut changes = fake.changed();
    changes.mark_unchanged();
    let running = fake
        .update_status(&pods, NS, "p", |p| {
            p["status"]["phase"] = json!("Running");
            p["spec"]["nodeName"] = json!("ignored");
        })
        .unwrap();
    assert_eq!(running["status"]["phase"], "Running");
    assert_eq!(running["spec"]["nodeName"], "n1");
    assert!(changes.has_changed().unwrap());
    assert_eq!(*changes.borrow_and_update(), fake.resource_version());

    let relabelled = fake
        .update(&pods, NS, "p", |p| {
            p["metadata"]["labels"] = json!({"app": "demo"});
            p["status"]["phase"] = json!("ignored");
            p["metadata"]["uid"] = json!("ignored");
        })
        .unwrap();
    assert_eq!(relabelled["status"]["phase"], "Running");
    assert_eq!(relabelled["metadata"]["uid"], seeded["metadata"]["uid"]);
    assert_eq!(fake.list(&pods, Some(NS), Some("app=demo")).len(), 1);
    assert_eq!(fake.list(&pods, None, Some("app=other")).len(), 0);

    let restarted = fake
        .merge_patch(
            &pods,
            NS,
            "p",
            "kubectl",
            json!({"metadata": {"annotations": {"x": "1"}}}),
        )
        .unwrap();
    assert_eq!(restarted["metadata"]["annotations"]["x"], "1");
    assert_eq!(
        fake.field_owners(&pods, NS, "p")["metadata.annotations.x"],
        "kubectl"
    );
    assert_eq!(
        fake.update(&pods, NS, "missing", |_| {}).unwrap_err().code,
        404
    );

    let owner_uid = seeded["metadata"]["uid"].as_str().unwrap().to_string();
    fake.create(
        &Res::config_maps(),
        NS,
        json!({"metadata": {"name": "child", "ownerReferences": [{"uid": owner_uid}]}}),
    )
    .unwrap();
    assert_eq!(fake.delete_owned_by(&owner_uid), 1);
    assert!(fake.get(&Res::config_maps(), NS, "child").is_none());
}

#[test]
fn res_constructors_match_the_typed_resources() {
    use k8s_openapi::api::core::v1::{Secret, Service};
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    use ringcache_operator::types::CacheCluster;

    assert_eq!(Res::of::<Pod>(), Res::pods());
    assert_eq!(Res::of::<StatefulSet>(), Res::stateful_sets());
    assert_eq!(Res::of::<ConfigMap>(), Res::config_maps());
    assert_eq!(Res::of::<Secret>(), Res::secrets());
    assert_eq!(Res::of::<Service>(), Res::services());
    assert_eq!(Res::of::<K8sEvent>(), Res::events());
    assert_eq!(
        Res::of::<PodDisruptionBudget>(),
        Res::pod_disruption_budgets()
    );
    assert_eq!(Res::of::<CacheCluster>(), Res::cache_clusters());
    assert_eq!(Res::stateful_sets().group(), "apps");
    assert_eq!(Res::pods().group(), "");
}
