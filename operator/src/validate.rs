//! Re-checks a spec that the API server already validated (or should have: an older CRD, a CEL
//! rule the cluster does not enforce, a scale-subresource update). An invalid spec becomes a
//! `Degraded` condition with this message and no action, never a crash loop.

use crate::types::CacheClusterSpec;

/// The numbers the decision logic works with, all checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidSpec {
    pub replicas: u32,
    pub replication_factor: u32,
    pub partitions: u32,
    pub max_memory_bytes: u64,
    pub max_value_size_bytes: u64,
    /// Snapshots on a volume are enabled.
    pub persistence: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("replicas must be at least 1 (got {0})")]
    Replicas(i32),
    #[error("replicationFactor must be at least 1 (got {0})")]
    ReplicationFactor(i32),
    #[error("replicationFactor {rf} exceeds replicas {replicas}")]
    RfExceedsReplicas { rf: i32, replicas: i32 },
    #[error("partitions must be between 1 and 65536 (got {0})")]
    Partitions(i32),
    #[error("partitions cannot change from {ring} to {spec}: it is fixed for the cluster's life")]
    PartitionsChanged { ring: u32, spec: u32 },
    #[error("{field}: {value:?} is not a valid quantity")]
    Quantity { field: &'static str, value: String },
    #[error("{field} must be more than 0")]
    ZeroQuantity { field: &'static str },
}

/// `ring_partitions` is the partition count of the existing ring, if any.
pub fn validate(
    spec: &CacheClusterSpec,
    ring_partitions: Option<u32>,
) -> Result<ValidSpec, SpecError> {
    if spec.replicas < 1 {
        return Err(SpecError::Replicas(spec.replicas));
    }
    let rf = spec.effective_replication_factor();
    if rf < 1 {
        return Err(SpecError::ReplicationFactor(rf));
    }
    if rf > spec.replicas {
        return Err(SpecError::RfExceedsReplicas {
            rf,
            replicas: spec.replicas,
        });
    }
    if !(1..=65536).contains(&spec.partitions) {
        return Err(SpecError::Partitions(spec.partitions));
    }
    let partitions = spec.partitions as u32;
    if let Some(ring) = ring_partitions
        && ring != partitions
    {
        return Err(SpecError::PartitionsChanged {
            ring,
            spec: partitions,
        });
    }
    let max_memory_bytes = positive_quantity("maxMemory", &spec.max_memory.0)?;
    let max_value_size_bytes = positive_quantity("maxValueSize", &spec.max_value_size.0)?;
    let persistence = spec.persistence.as_ref().is_some_and(|p| p.enabled);
    if let Some(p) = &spec.persistence
        && p.enabled
    {
        positive_quantity("persistence.size", &p.size.0)?;
    }
    Ok(ValidSpec {
        replicas: spec.replicas as u32,
        replication_factor: rf as u32,
        partitions,
        max_memory_bytes,
        max_value_size_bytes,
        persistence,
    })
}

fn positive_quantity(field: &'static str, value: &str) -> Result<u64, SpecError> {
    let bytes = parse_quantity(value).ok_or_else(|| SpecError::Quantity {
        field,
        value: value.to_string(),
    })?;
    if bytes == 0 {
        return Err(SpecError::ZeroQuantity { field });
    }
    Ok(bytes)
}

/// Parses a byte quantity with the node's own parser (the operator passes the spec's string to
/// the node unchanged, so it must admit exactly what the node accepts): `256Mi`, `1.5Gi`, `1e9`.
/// Milli-units (`100m`) are no byte counts and are refused.
pub fn parse_quantity(s: &str) -> Option<u64> {
    ringcache_common::quantity::parse_size(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> CacheClusterSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_are_valid() {
        let v = validate(&spec("{}"), None).unwrap();
        assert_eq!(v.replicas, 3);
        assert_eq!(v.replication_factor, 2);
        assert_eq!(v.partitions, 1024);
        assert_eq!(v.max_memory_bytes, 256 << 20);
        assert_eq!(v.max_value_size_bytes, 1 << 20);
    }

    #[test]
    fn rf_above_replicas_is_rejected() {
        let err = validate(&spec(r#"{"replicas":2,"replicationFactor":3}"#), None).unwrap_err();
        assert_eq!(err, SpecError::RfExceedsReplicas { rf: 3, replicas: 2 });
    }

    #[test]
    fn zero_replicas_is_rejected() {
        assert_eq!(
            validate(&spec(r#"{"replicas":0}"#), None).unwrap_err(),
            SpecError::Replicas(0)
        );
    }

    #[test]
    fn partitions_cannot_change_from_the_ring() {
        let err = validate(&spec(r#"{"partitions":512}"#), Some(1024)).unwrap_err();
        assert_eq!(
            err,
            SpecError::PartitionsChanged {
                ring: 1024,
                spec: 512
            }
        );
    }

    #[test]
    fn bad_quantity_is_rejected() {
        let err = validate(&spec(r#"{"maxMemory":"lots"}"#), None).unwrap_err();
        assert!(matches!(
            err,
            SpecError::Quantity {
                field: "maxMemory",
                ..
            }
        ));
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("5k"), Some(5000));
        assert_eq!(parse_quantity("123"), Some(123));
        assert_eq!(parse_quantity("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity("Mi"), None);
        assert_eq!(parse_quantity("100m"), None);
        assert_eq!(parse_quantity("99999999999Ei"), None);
    }
}
