//! What the operator observes about a cluster, reduced to the facts the pure logic needs.

use serde::{Deserialize, Serialize};

/// One pod of the cluster's StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodObs {
    pub name: String,
    /// The pod's Ready condition is True.
    pub ready: bool,
    pub ip: Option<String>,
    /// deletionTimestamp is set: it is going away, whatever its readiness says.
    pub terminating: bool,
}

impl PodObs {
    /// Serving as far as Kubernetes can tell: ready, addressable and not being deleted.
    pub fn is_live(&self) -> bool {
        self.ready && !self.terminating && self.ip.as_deref().is_some_and(|ip| !ip.is_empty())
    }
}

/// A node's `GET /internal/v1/migration` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationReport {
    pub epoch: u64,
    #[serde(default)]
    pub partitions_total: u64,
    #[serde(default)]
    pub partitions_done: u64,
    #[serde(default)]
    pub keys: u64,
    #[serde(default)]
    pub bytes: u64,
    pub done: bool,
    #[serde(default)]
    pub error: Option<String>,
}

impl MigrationReport {
    /// Done with every pull that ring `epoch` asks of this node.
    pub fn done_for(&self, epoch: u64) -> bool {
        self.epoch == epoch && self.done && self.error.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_parses_the_node_format() {
        let r: MigrationReport = serde_json::from_str(
            r#"{"epoch":7,"partitionsTotal":10,"partitionsDone":10,"keys":5,"bytes":99,"done":true,"error":null}"#,
        )
        .unwrap();
        assert!(r.done_for(7));
        assert!(!r.done_for(8));
        assert_eq!(r.bytes, 99);
    }

    #[test]
    fn a_report_with_an_error_is_not_done() {
        let r = MigrationReport {
            epoch: 3,
            done: true,
            error: Some("source gone".into()),
            ..MigrationReport::default()
        };
        assert!(!r.done_for(3));
    }

    #[test]
    fn liveness_needs_ready_ip_and_not_terminating() {
        let live = PodObs {
            name: "a-0".into(),
            ready: true,
            ip: Some("10.0.0.1".into()),
            terminating: false,
        };
        assert!(live.is_live());
        assert!(
            !PodObs {
                ready: false,
                ..live.clone()
            }
            .is_live()
        );
        assert!(
            !PodObs {
                ip: None,
                ..live.clone()
            }
            .is_live()
        );
        assert!(
            !PodObs {
                terminating: true,
                ..live
            }
            .is_live()
        );
    }
}
