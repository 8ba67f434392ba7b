use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Owner, selector_labels};
use crate::types::CacheCluster;

/// PDB `NAME` (maxUnavailable 1 by default), or None when the spec disables it.
pub fn pod_disruption_budget(owner: &Owner, cc: &CacheCluster) -> Option<PodDisruptionBudget> {
    let (enabled, max_unavailable) = cc
        .spec
        .pod_disruption_budget
        .as_ref()
        .map_or((true, 1), |p| (p.enabled, p.max_unavailable));
    if !enabled {
        return None;
    }
    Some(PodDisruptionBudget {
        metadata: owner.meta(owner.names.pdb()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&owner.names.cluster)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::cluster;

    #[test]
    fn default_pdb_allows_one_unavailable() {
        let cc = cluster("demo", "{}");
        let owner = Owner::of(&cc).unwrap();
        let pdb = pod_disruption_budget(&owner, &cc).unwrap();
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap()["app.kubernetes.io/instance"],
            "demo"
        );
    }

    #[test]
    fn pdb_can_be_disabled() {
        let cc = cluster("demo", r#"{"podDisruptionBudget":{"enabled":false}}"#);
        let owner = Owner::of(&cc).unwrap();
        assert!(pod_disruption_budget(&owner, &cc).is_none());
    }
}
