//! Desired objects as pure functions of a CacheCluster: one file per owned kind. Nothing here
//! talks to the API server, so every field that matters is unit-tested directly.

mod config_map;
mod pdb;
mod secret;
mod service;
mod stateful_set;

pub use config_map::ring_config_map;
pub use pdb::pod_disruption_budget;
pub use secret::{internal_secret, random_token};
pub use service::{client_service, peers_service};
pub use stateful_set::{immutable_conflict, stateful_set};

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::types::CacheCluster;

pub const FIELD_MANAGER: &str = "ringcache-operator";
pub const PORT: i32 = 7070;
pub const PORT_NAME: &str = "http";
/// The Redis-protocol listener (DESIGN.md "Redis protocol"), when `spec.redis` is enabled.
pub const REDIS_PORT: i32 = 6379;
pub const REDIS_PORT_NAME: &str = "redis";
pub const RING_KEY: &str = "ring.json";
pub const TOKEN_KEY: &str = "token";
pub const RING_DIR: &str = "/etc/ringcache/ring";
pub const INTERNAL_DIR: &str = "/etc/ringcache/internal";
pub const AUTH_DIR: &str = "/etc/ringcache/auth";
pub const TLS_DIR: &str = "/etc/ringcache/tls";
/// Keys of a `kubernetes.io/tls` Secret (cert-manager writes all three).
pub const TLS_CERT_KEY: &str = "tls.crt";
pub const TLS_KEY_KEY: &str = "tls.key";
pub const TLS_CA_KEY: &str = "ca.crt";
pub const DATA_DIR: &str = "/data";
pub const CONTAINER_NAME: &str = "node";

/// Default node image: the node built from the same release as this operator.
pub fn default_image() -> String {
    format!(
        "ghcr.io/ringcache/ringcache-node:{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Object names derived from the CacheCluster name (DESIGN.md "Names").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
}

impl Names {
    pub fn new(cluster: &str) -> Self {
        Names {
            cluster: cluster.to_string(),
        }
    }
    pub fn stateful_set(&self) -> String {
        self.cluster.clone()
    }
    pub fn peers_service(&self) -> String {
        format!("{}-peers", self.cluster)
    }
    pub fn client_service(&self) -> String {
        self.cluster.clone()
    }
    pub fn ring_config_map(&self) -> String {
        format!("{}-ring", self.cluster)
    }
    pub fn internal_secret(&self) -> String {
        format!("{}-internal", self.cluster)
    }
    pub fn pdb(&self) -> String {
        self.cluster.clone()
    }
    /// The name nodes' certificates are verified against (by peers and by the operator).
    pub fn tls_server_name(&self, namespace: &str) -> String {
        format!("{}.{namespace}.svc", self.peers_service())
    }
    /// Member id of the pod with this ordinal (= the pod name).
    pub fn member(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }
    /// Ordinal of a pod name of this cluster, or None for any other name.
    pub fn ordinal_of(&self, pod: &str) -> Option<u32> {
        let rest = pod.strip_prefix(&self.cluster)?.strip_prefix('-')?;
        if rest.is_empty() || (rest.len() > 1 && rest.starts_with('0')) {
            return None;
        }
        rest.parse().ok()
    }
}

/// Selector labels of the node pods (also the Services' and PDB's selectors).
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "ringcache".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            cluster.to_string(),
        ),
        // Without a component, a CacheCluster named like the Helm release (in its namespace) would
        // select the operator's own pods; a StatefulSet selector cannot be changed later.
        (
            "app.kubernetes.io/component".to_string(),
            "node".to_string(),
        ),
    ])
}

/// Labels every owned object carries.
pub fn labels(cluster: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(cluster);
    l.insert(
        "app.kubernetes.io/managed-by".to_string(),
        FIELD_MANAGER.to_string(),
    );
    l
}

/// `selector_labels` in the string form of a label selector (status.selector, list calls).
pub fn selector_string(cluster: &str) -> String {
    selector_labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("CacheCluster has no {0} yet (not read from the API server?)")]
    MissingMeta(&'static str),
}

/// What every builder needs from the CacheCluster: names, namespace and the owner reference.
#[derive(Debug, Clone)]
pub struct Owner {
    pub names: Names,
    pub namespace: String,
    pub owner_ref: OwnerReference,
}

impl Owner {
    pub fn of(cc: &CacheCluster) -> Result<Owner, BuildError> {
        let namespace = cc.namespace().ok_or(BuildError::MissingMeta("namespace"))?;
        let owner_ref = cc
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingMeta("uid"))?;
        Ok(Owner {
            names: Names::new(&cc.name_any()),
            namespace,
            owner_ref,
        })
    }

    /// Metadata for an owned object called `name`.
    pub fn meta(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(labels(&self.names.cluster)),
            owner_references: Some(vec![self.owner_ref.clone()]),
            ..ObjectMeta::default()
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::types::{CacheCluster, CacheClusterSpec};

    /// A CacheCluster as the API server would return it (namespace and uid set).
    pub fn cluster(name: &str, spec_json: &str) -> CacheCluster {
        let spec: CacheClusterSpec = serde_json::from_str(spec_json).unwrap();
        let mut cc = CacheCluster::new(name, spec);
        cc.metadata.namespace = Some("cache".into());
        cc.metadata.uid = Some("uid-1".into());
        cc.metadata.generation = Some(1);
        cc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let n = Names::new("demo");
        assert_eq!(n.peers_service(), "demo-peers");
        assert_eq!(n.ring_config_map(), "demo-ring");
        assert_eq!(n.internal_secret(), "demo-internal");
        assert_eq!(n.member(2), "demo-2");
    }

    #[test]
    fn ordinals_parse_only_for_this_cluster() {
        let n = Names::new("demo");
        assert_eq!(n.ordinal_of("demo-0"), Some(0));
        assert_eq!(n.ordinal_of("demo-12"), Some(12));
        assert_eq!(n.ordinal_of("demo-x-1"), None);
        assert_eq!(n.ordinal_of("demo-01"), None);
        assert_eq!(n.ordinal_of("demo2-1"), None);
        assert_eq!(n.ordinal_of("demo-"), None);
    }

    #[test]
    fn owner_needs_uid_and_namespace() {
        let mut cc = test_support::cluster("demo", "{}");
        let owner = Owner::of(&cc).unwrap();
        let meta = owner.meta("x".into());
        let refs = meta.owner_references.unwrap();
        assert_eq!(refs[0].kind, "CacheCluster");
        assert_eq!(refs[0].controller, Some(true));
        let labels = meta.labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "ringcache");
        assert_eq!(labels["app.kubernetes.io/instance"], "demo");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "ringcache-operator");
        cc.metadata.uid = None;
        assert_eq!(Owner::of(&cc).unwrap_err(), BuildError::MissingMeta("uid"));
    }
}
