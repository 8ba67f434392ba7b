//! Wires the reconcile function into a kube `Controller`: CacheClusters, the objects they own,
//! and their pods (readiness changes drive member states).

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{info, warn};

use crate::build::FIELD_MANAGER;
use crate::reconcile::{Context, error_policy, reconcile};
use crate::types::CacheCluster;

const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the CacheCluster CRD is not installed (kubectl apply --server-side -f crds/cachecluster.yaml): {0}"
    )]
    CrdMissing(kube::Error),
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// The CacheCluster a pod belongs to, from its instance label.
pub fn cluster_of_pod(pod: &Pod) -> Option<ObjectRef<CacheCluster>> {
    let instance = pod.labels().get(INSTANCE_LABEL)?;
    let mut r = ObjectRef::new(instance);
    if let Some(ns) = pod.namespace() {
        r = r.within(&ns);
    }
    Some(r)
}

/// Runs until `shutdown` resolves (in-flight reconciles finish first).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), StartError> {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let clusters: Api<CacheCluster> = api(&client, ns);
    clusters
        .list(&ListParams::default().limit(1))
        .await
        .map_err(StartError::CrdMissing)?;

    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let pods = watcher::Config::default().labels("app.kubernetes.io/name=ringcache");
    info!(namespace = ?namespace, "controller starting");
    Controller::new(clusters, watcher::Config::default())
        .owns(api::<StatefulSet>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned.clone())
        .owns(api::<ConfigMap>(&client, ns), owned.clone())
        .owns(api::<PodDisruptionBudget>(&client, ns), owned)
        .watches(api::<Pod>(&client, ns), pods, |pod| cluster_of_pod(&pod))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(e) => warn!(error = %e, "controller error"),
            }
        })
        .await;
    info!("controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_map_to_their_cluster() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("demo-1".into());
        pod.metadata.namespace = Some("cache".into());
        pod.metadata.labels = Some([(INSTANCE_LABEL.to_string(), "demo".to_string())].into());
        let r = cluster_of_pod(&pod).unwrap();
        assert_eq!(r.name, "demo");
        assert_eq!(r.namespace.as_deref(), Some("cache"));
        assert!(cluster_of_pod(&Pod::default()).is_none());
    }
}
