//! The `CacheCluster` custom resource (`ringcache.io/v1alpha1`): the one source of the CRD.
//!
//! Schema rules kept here on purpose (see FIELD-NOTES): plain string enums, no `Option<Enum>`
//! without kube's transform, no sets, no flattened maps, `skip_serializing_if` on every `Option`,
//! quantities as int-or-string with a short schema (k8s-openapi's own carries a 3 KB description).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "ringcache.io";
pub const DEFAULT_REPLICATION_FACTOR: i32 = 2;
pub const DEFAULT_PARTITIONS: i32 = 1024;

/// Desired state of a ringcache cluster.
// clippy reads the repeated `type_ = "integer"` of separate printcolumns as one duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ringcache.io",
    version = "v1alpha1",
    kind = "CacheCluster",
    plural = "cacheclusters",
    singular = "cachecluster",
    shortname = "ccl",
    category = "ringcache",
    namespaced,
    status = "CacheClusterStatus",
    derive = "PartialEq",
    doc = "A ringcache cluster: a StatefulSet of cache nodes sharing a partitioned, replicated ring.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".spec.replicas",
        description = "desired nodes"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "nodes whose pod is ready"
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Epoch",
        type_ = "integer",
        json_path = ".status.ringEpoch",
        description = "ring epoch"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.replicationFactor) || self.replicationFactor <= self.replicas")
    .message("replicationFactor must not exceed replicas"))]
// Nodes with and without TLS cannot reach each other, so a rollout that switches it would leave
// restarted nodes unable to copy their data back from the others: refused instead.
#[x_kube(validation = Rule::new("has(self.tls) == has(oldSelf.tls)")
    .message("tls cannot be turned on or off on an existing cluster (its nodes could not reach each other during the rollout); create a new CacheCluster"))]
#[serde(rename_all = "camelCase")]
pub struct CacheClusterSpec {
    /// Number of cache nodes.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,

    /// Copies of every partition (default 2, capped to replicas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 7))]
    pub replication_factor: Option<i32>,

    /// How many owners acknowledge a write before the client gets its answer.
    #[serde(default)]
    pub write_consistency: WriteConsistency,

    /// Number of ring partitions; fixed for the life of the cluster.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 65536))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("partitions is immutable"))]
    pub partitions: i32,

    /// Memory bound per node for stored entries (Kubernetes quantity).
    #[serde(default = "default_max_memory")]
    #[schemars(schema_with = "quantity_schema")]
    pub max_memory: Quantity,

    /// What happens at maxMemory: evict (lru, lfu) or reject writes (none).
    #[serde(default)]
    pub eviction: Eviction,

    /// Largest accepted value (Kubernetes quantity).
    #[serde(default = "default_max_value_size")]
    #[schemars(schema_with = "quantity_schema")]
    pub max_value_size: Quantity,

    /// Node image; defaults to ghcr.io/ringcache/ringcache-node:<operator version>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Container resources of each node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Snapshots on a PersistentVolume per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("persistence cannot change after creation (volumeClaimTemplates are immutable)"))]
    pub persistence: Option<Persistence>,

    /// Require a bearer token on /v1 (Secret with key `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub tolerations: Option<Vec<Toleration>>,

    /// Replaces the default (soft anti-affinity across Kubernetes nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_disruption_budget: Option<PodDisruptionBudgetSpec>,

    /// Serve HTTPS (and node-to-node HTTPS) with a certificate from this Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,

    /// The Redis protocol (RESP) on port 6379 (`redis`) of the pods and the client Service;
    /// absent = enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteConsistency {
    One,
    Quorum,
    #[default]
    All,
}

impl WriteConsistency {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteConsistency::One => "one",
            WriteConsistency::Quorum => "quorum",
            WriteConsistency::All => "all",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Eviction {
    #[default]
    Lru,
    Lfu,
    None,
}

impl Eviction {
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::Lru => "lru",
            Eviction::Lfu => "lfu",
            Eviction::None => "none",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Persistence {
    #[serde(default)]
    pub enabled: bool,
    /// Volume size per node.
    #[serde(default = "default_volume_size")]
    #[schemars(schema_with = "quantity_schema")]
    pub size: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// Secret in the same namespace with key `token`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// TLS for the nodes: a `kubernetes.io/tls` Secret with `tls.crt`, `tls.key` and `ca.crt` (what
/// cert-manager writes). The certificate must name `NAME-peers.NAMESPACE.svc` (nodes verify each
/// other, and the operator verifies them, against that name) and whatever names clients use
/// (`NAME.NAMESPACE.svc`, …).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// The Redis protocol (RESP2/RESP3) next to HTTP: redis-cli and Redis client libraries reach the
/// same keys, with the same auth token (`AUTH`) and, with `tls`, over TLS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redis {
    /// Serve RESP on port 6379 (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

/// Observed state, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheClusterStatus {
    #[serde(default)]
    pub phase: Phase,
    /// Pods of the StatefulSet (for the scale subresource).
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the node pods, as a string (for the scale subresource / HPA).
    #[serde(default)]
    pub selector: String,
    #[serde(default)]
    pub ring_epoch: i64,
    #[serde(default)]
    pub members: Vec<MemberStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Member pods running the StatefulSet's current template (operator-driven rollouts).
    #[serde(default)]
    pub updated_replicas: i32,
    /// Partitions with fewer serving (`up`) replicas than owners.
    #[serde(default)]
    pub under_replicated_partitions: i32,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Ready,
    Scaling,
    Degraded,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Ready => "Ready",
            Phase::Scaling => "Scaling",
            Phase::Degraded => "Degraded",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub id: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// The node process the operator vouches for (set when the member was last marked up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationStatus {
    pub from_replicas: i32,
    pub to_replicas: i32,
    /// Ring epoch that carries the pending table.
    pub epoch: i64,
    pub partitions_done: i64,
    pub partitions_total: i64,
    pub bytes_moved: i64,
    /// RFC 3339 time the pending table was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    /// RFC 3339 time the migration committed; the last finished migration stays in status until
    /// the next one starts, so a fast migration is still visible afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
}

fn default_replicas() -> i32 {
    3
}
fn default_partitions() -> i32 {
    DEFAULT_PARTITIONS
}
fn default_max_memory() -> Quantity {
    Quantity("256Mi".into())
}
fn default_max_value_size() -> Quantity {
    Quantity("1Mi".into())
}
fn default_volume_size() -> Quantity {
    Quantity("1Gi".into())
}
fn default_true() -> bool {
    true
}
fn default_max_unavailable() -> i32 {
    1
}

fn quantity_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Kubernetes quantity, e.g. 256Mi, 1Gi, 1000000",
        "x-kubernetes-int-or-string": true,
        // Stops kube's Option transform from marking it nullable: a null would defeat the default.
        "nullable": false
    })
}

impl CacheClusterSpec {
    /// Replication factor in effect: the explicit one, or 2 capped to replicas.
    pub fn effective_replication_factor(&self) -> i32 {
        self.replication_factor
            .unwrap_or(DEFAULT_REPLICATION_FACTOR.min(self.replicas.max(1)))
    }

    /// Whether the nodes serve RESP: on unless `redis.enabled` is false.
    pub fn redis_enabled(&self) -> bool {
        self.redis.as_ref().is_none_or(|r| r.enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_manifest_gets_defaults() {
        let spec: CacheClusterSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.replicas, 3);
        assert_eq!(spec.partitions, 1024);
        assert_eq!(spec.write_consistency, WriteConsistency::All);
        assert_eq!(spec.eviction, Eviction::Lru);
        assert_eq!(spec.max_memory.0, "256Mi");
        assert_eq!(spec.effective_replication_factor(), 2);
    }

    #[test]
    fn redis_is_on_unless_switched_off() {
        let on = |json: &str| {
            serde_json::from_str::<CacheClusterSpec>(json)
                .unwrap()
                .redis_enabled()
        };
        assert!(on("{}"));
        assert!(on(r#"{"redis":{}}"#));
        assert!(on(r#"{"redis":{"enabled":true}}"#));
        assert!(!on(r#"{"redis":{"enabled":false}}"#));
    }

    #[test]
    fn default_rf_is_capped_to_replicas() {
        let spec: CacheClusterSpec = serde_json::from_str(r#"{"replicas":1}"#).unwrap();
        assert_eq!(spec.effective_replication_factor(), 1);
    }

    #[test]
    fn integer_quantity_is_accepted() {
        let spec: CacheClusterSpec =
            serde_json::from_str(r#"{"maxMemory": 1048576, "writeConsistency": "quorum"}"#)
                .unwrap();
        assert_eq!(spec.max_memory.0, "1048576");
        assert_eq!(spec.write_consistency, WriteConsistency::Quorum);
    }

    #[test]
    fn unset_options_are_not_serialized_as_null() {
        let spec: CacheClusterSpec = serde_json::from_str("{}").unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert!(!json.contains("null"), "{json}");
    }
}
