//! The CustomResourceDefinition as YAML: what `crdgen` prints and `crds/cachecluster.yaml` holds.

use kube::CustomResourceExt;

use crate::types::CacheCluster;

#[derive(Debug, thiserror::Error)]
#[error("cannot render the CRD as YAML: {0}")]
pub struct CrdRenderError(#[from] serde_yaml::Error);

pub fn crd_yaml() -> Result<String, CrdRenderError> {
    Ok(serde_yaml::to_string(&CacheCluster::crd())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn crd_json() -> Value {
        serde_json::to_value(CacheCluster::crd()).unwrap()
    }

    fn version(crd: &Value) -> &Value {
        &crd["spec"]["versions"][0]
    }

    #[test]
    fn names_and_scope() {
        let crd = crd_json();
        assert_eq!(crd["metadata"]["name"], "cacheclusters.ringcache.io");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["kind"], "CacheCluster");
        assert_eq!(version(&crd)["name"], "v1alpha1");
        let short = crd["spec"]["names"]["shortNames"].as_array().unwrap();
        assert!(
            !short.iter().any(|s| s == "rc"),
            "rc is ReplicationController's"
        );
    }

    #[test]
    fn both_subresources_are_present() {
        let crd = crd_json();
        let sub = &version(&crd)["subresources"];
        assert!(sub["status"].is_object());
        assert_eq!(sub["scale"]["specReplicasPath"], ".spec.replicas");
        assert_eq!(sub["scale"]["statusReplicasPath"], ".status.replicas");
        assert_eq!(sub["scale"]["labelSelectorPath"], ".status.selector");
    }

    #[test]
    fn printer_columns() {
        let crd = crd_json();
        let cols: Vec<&str> = version(&crd)["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cols, ["Replicas", "Ready", "Phase", "Epoch", "Age"]);
    }

    #[test]
    fn cel_rules_are_in_the_schema() {
        let crd = crd_json();
        let spec = &version(&crd)["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let rules = |v: &Value| -> Vec<String> {
            v["x-kubernetes-validations"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| r["rule"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        assert!(
            rules(spec)
                .iter()
                .any(|r| r.contains("self.replicationFactor <= self.replicas"))
        );
        assert_eq!(
            rules(&spec["properties"]["partitions"]),
            ["self == oldSelf"]
        );
    }

    #[test]
    fn quantities_are_int_or_string_and_not_nullable() {
        let crd = crd_json();
        let props = &version(&crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
        for q in ["maxMemory", "maxValueSize"] {
            assert_eq!(props[q]["x-kubernetes-int-or-string"], true, "{q}");
            assert_ne!(props[q]["nullable"], true, "{q}");
            assert!(props[q].get("anyOf").is_none(), "{q}");
        }
        assert_eq!(
            props["persistence"]["properties"]["size"]["x-kubernetes-int-or-string"],
            true
        );
    }

    #[test]
    fn redis_is_optional_and_enabled_by_default() {
        let crd = crd_json();
        let spec = &version(&crd)["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let redis = &spec["properties"]["redis"];
        assert_eq!(redis["type"], "object");
        assert_eq!(redis["properties"]["enabled"]["type"], "boolean");
        assert_eq!(redis["properties"]["enabled"]["default"], true);
        let required = |v: &Value| -> Vec<String> {
            v["required"]
                .as_array()
                .map(|a| a.iter().map(|r| r.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        assert!(!required(spec).contains(&"redis".to_string()));
        assert!(required(redis).is_empty());
    }

    /// The rules of a structural schema that kube/schemars output can break (FIELD-NOTES).
    fn check_structural(path: &str, v: &Value, in_combinator: bool, problems: &mut Vec<String>) {
        let Some(obj) = v.as_object() else { return };
        if obj.contains_key("uniqueItems") {
            problems.push(format!("{path}: uniqueItems"));
        }
        if obj.contains_key("$ref") {
            problems.push(format!("{path}: $ref"));
        }
        if obj.contains_key("oneOf") {
            problems.push(format!("{path}: oneOf"));
        }
        if let Some(t) = obj.get("type")
            && !t.is_string()
        {
            problems.push(format!("{path}: type is not a single string"));
        }
        if obj
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|e| e.contains(&Value::Null))
        {
            problems.push(format!("{path}: enum with null"));
        }
        let special = obj.contains_key("x-kubernetes-int-or-string")
            || obj.contains_key("x-kubernetes-preserve-unknown-fields");
        if !in_combinator && !special && !obj.contains_key("type") {
            problems.push(format!("{path}: no type"));
        }
        if let Some(any) = obj.get("anyOf").and_then(Value::as_array) {
            if !obj.contains_key("x-kubernetes-int-or-string") {
                problems.push(format!("{path}: anyOf outside int-or-string"));
            }
            for (i, s) in any.iter().enumerate() {
                check_structural(&format!("{path}.anyOf[{i}]"), s, true, problems);
            }
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, s) in props {
                check_structural(&format!("{path}.{k}"), s, false, problems);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(s) = obj.get(key).filter(|s| s.is_object()) {
                check_structural(&format!("{path}.{key}"), s, false, problems);
            }
        }
    }

    #[test]
    fn schema_is_structural() {
        let crd = crd_json();
        let mut problems = Vec::new();
        check_structural(
            "",
            &version(&crd)["schema"]["openAPIV3Schema"],
            false,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn crd_fits_the_client_side_apply_annotation() {
        // kubectl's last-applied annotation is limited to 262144 bytes.
        assert!(serde_json::to_string(&crd_json()).unwrap().len() < 200_000);
    }

    #[test]
    fn checked_in_crd_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/cachecluster.yaml");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == crd_yaml().unwrap(),
            "crds/cachecluster.yaml is stale: run `cargo run -p ringcache-operator --bin crdgen > crds/cachecluster.yaml`"
        );
    }

    mod cel {
        use super::super::CacheCluster;
        use crate::types::CacheClusterSpec;
        use kube::core::cel::{validate_cel, validate_cel_update};

        fn cc(spec: &str) -> CacheCluster {
            let spec: CacheClusterSpec = serde_json::from_str(spec).unwrap();
            CacheCluster::new("demo", spec)
        }

        #[test]
        fn rf_above_replicas_is_rejected_by_cel() {
            assert!(validate_cel(&cc(r#"{"replicas":3,"replicationFactor":2}"#)).is_ok());
            assert!(validate_cel(&cc(r#"{"replicas":3}"#)).is_ok());
            assert!(validate_cel(&cc(r#"{"replicas":1,"replicationFactor":2}"#)).is_err());
        }

        #[test]
        fn persistence_is_immutable_by_cel() {
            let old = cc(r#"{"persistence":{"enabled":true,"size":"1Gi"}}"#);
            let same = cc(r#"{"persistence":{"enabled":true,"size":"1Gi"},"replicas":4}"#);
            assert!(validate_cel_update(&same, &old).is_ok());
            let bigger = cc(r#"{"persistence":{"enabled":true,"size":"2Gi"}}"#);
            assert!(validate_cel_update(&bigger, &old).is_err());
        }

        #[test]
        fn tls_cannot_be_switched_on_or_off_by_cel() {
            let plain = cc(r#"{"replicas":3}"#);
            let tls = cc(r#"{"replicas":3,"tls":{"secretName":"a"}}"#);
            assert!(validate_cel_update(&tls, &plain).is_err());
            assert!(validate_cel_update(&plain, &tls).is_err());
            assert!(validate_cel_update(&cc(r#"{"replicas":5}"#), &plain).is_ok());
            let renamed = cc(r#"{"replicas":3,"tls":{"secretName":"b"}}"#);
            assert!(validate_cel_update(&renamed, &tls).is_ok());
            // Creation is no transition.
            assert!(validate_cel(&tls).is_ok());
        }

        #[test]
        fn partitions_are_immutable_by_cel() {
            let old = cc(r#"{"partitions":1024}"#);
            assert!(validate_cel_update(&cc(r#"{"partitions":1024,"replicas":5}"#), &old).is_ok());
            assert!(validate_cel_update(&cc(r#"{"partitions":2048}"#), &old).is_err());
        }
    }
}
