use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use ringcache_ring::RingDoc;

use super::{Owner, RING_KEY};

/// `NAME-ring` with the ring document under `ring.json` (mounted into every node).
pub fn ring_config_map(owner: &Owner, ring: &RingDoc) -> ConfigMap {
    ConfigMap {
        metadata: owner.meta(owner.names.ring_config_map()),
        data: Some(BTreeMap::from([(
            RING_KEY.to_string(),
            ring.to_json_pretty(),
        )])),
        ..ConfigMap::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::cluster;

    #[test]
    fn ring_json_round_trips() {
        let owner = Owner::of(&cluster("demo", "{}")).unwrap();
        let ring = RingDoc::single_node("demo-0", "10.0.0.1:7070", 16);
        let cm = ring_config_map(&owner, &ring);
        assert_eq!(cm.metadata.name.as_deref(), Some("demo-ring"));
        let json = &cm.data.unwrap()["ring.json"];
        assert_eq!(RingDoc::from_json(json.as_bytes()).unwrap(), ring);
    }
}
