//! A minimal local description of the `CacheCluster` resource. The e2e crate deliberately does not
//! depend on the operator crate: it checks the API as a user sees it, and both compile on their own.

use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

pub const GROUP: &str = "ringcache.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "CacheCluster";
pub const PLURAL: &str = "cacheclusters";
/// Name of the CRD object, which must be installed for the scenarios to run.
pub const CRD_NAME: &str = "cacheclusters.ringcache.io";

/// The labels DESIGN.md puts on every object the operator creates for a cluster.
pub fn owned_labels(cluster: &str) -> [(&'static str, String); 3] {
    [
        ("app.kubernetes.io/name", "ringcache".to_string()),
        ("app.kubernetes.io/instance", cluster.to_string()),
        (
            "app.kubernetes.io/managed-by",
            "ringcache-operator".to_string(),
        ),
    ]
}

/// Label selector of the operator's pods, wherever the chart installed it (the chart's
/// `ringcache.operatorSelectorLabels` without the release name, which the suite does not know).
pub const OPERATOR_SELECTOR: &str =
    "app.kubernetes.io/name=ringcache,app.kubernetes.io/component=operator";

/// Label selector of the node pods of CacheCluster `cluster` (the StatefulSet's selector).
pub fn node_pod_selector(cluster: &str) -> String {
    format!("app.kubernetes.io/instance={cluster},app.kubernetes.io/component=node")
}

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// Spec knobs the scenarios vary. Everything else is left to the CRD's defaults.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub replicas: u32,
    pub replication_factor: u32,
    pub write_consistency: Option<&'static str>,
    pub max_memory: &'static str,
    /// Optional node image override (kind.sh loads the default tag, so normally `None`).
    pub image: Option<String>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            replicas: 3,
            replication_factor: 2,
            write_consistency: None,
            max_memory: "64Mi",
            image: None,
        }
    }
}

impl ClusterSpec {
    pub fn to_json(&self) -> Value {
        let mut spec = json!({
            "replicas": self.replicas,
            "replicationFactor": self.replication_factor,
            "maxMemory": self.max_memory,
        });
        if let Some(wc) = self.write_consistency {
            spec["writeConsistency"] = json!(wc);
        }
        if let Some(image) = &self.image {
            spec["image"] = json!(image);
        }
        spec
    }
}

/// A CacheCluster object ready to `create`, with an arbitrary spec (also used for invalid specs).
pub fn cache_cluster(name: &str, spec: Value) -> DynamicObject {
    let mut obj = DynamicObject::new(name, &api_resource());
    obj.data = json!({ "spec": spec });
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_name_the_component_and_the_cluster() {
        assert_eq!(
            node_pod_selector("demo"),
            "app.kubernetes.io/instance=demo,app.kubernetes.io/component=node"
        );
        assert!(OPERATOR_SELECTOR.contains("app.kubernetes.io/component=operator"));
    }

    #[test]
    fn api_resource_is_the_design_gvk() {
        let ar = api_resource();
        assert_eq!(ar.api_version, "ringcache.io/v1alpha1");
        assert_eq!(ar.kind, "CacheCluster");
        assert_eq!(ar.plural, "cacheclusters");
    }

    #[test]
    fn spec_json_uses_camel_case_and_omits_unset_knobs() {
        let spec = ClusterSpec::default().to_json();
        assert_eq!(spec["replicas"], 3);
        assert_eq!(spec["replicationFactor"], 2);
        assert_eq!(spec["maxMemory"], "64Mi");
        assert!(spec.get("writeConsistency").is_none());
        assert!(spec.get("image").is_none());
        let spec = ClusterSpec {
            write_consistency: Some("quorum"),
            image: Some("example/node:1".into()),
            ..ClusterSpec::default()
        }
        .to_json();
        assert_eq!(spec["writeConsistency"], "quorum");
        assert_eq!(spec["image"], "example/node:1");
    }

    #[test]
    fn cache_cluster_serializes_as_the_custom_resource() {
        let obj = cache_cluster("demo", json!({"replicas": 1}));
        let v = serde_json::to_value(&obj).unwrap_or_default();
        assert_eq!(v["apiVersion"], "ringcache.io/v1alpha1");
        assert_eq!(v["kind"], "CacheCluster");
        assert_eq!(v["metadata"]["name"], "demo");
        assert_eq!(v["spec"]["replicas"], 1);
    }
}
