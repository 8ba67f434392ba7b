//! Reading a CacheCluster's status (DESIGN.md: phase, replicas, readyReplicas, ringEpoch, members,
//! migration, conditions with observedGeneration) out of its JSON.

use serde_json::Value;

/// The parts of `status.migration` the scenarios look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    pub from_replicas: u64,
    pub to_replicas: u64,
    pub partitions_done: u64,
    pub partitions_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub generation: i64,
    pub spec_replicas: u64,
    pub phase: Option<String>,
    pub replicas: u64,
    pub ready_replicas: u64,
    pub ring_epoch: u64,
    pub members: Vec<(String, String)>,
    pub migration: Option<Migration>,
    /// `(status, observedGeneration)` of the `Ready` condition.
    pub ready_condition: Option<(String, i64)>,
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl Status {
    /// Reads a whole CacheCluster object (as JSON). Missing fields read as empty/zero: a cluster that
    /// the operator has not reached yet simply is not ready.
    pub fn of(obj: &Value) -> Status {
        let status = obj.get("status").cloned().unwrap_or(Value::Null);
        let members = status
            .get("members")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let s =
                            |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        (s("id"), s("state"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let migration = status
            .get("migration")
            .filter(|m| m.is_object())
            .map(|m| Migration {
                from_replicas: u(m, "fromReplicas"),
                to_replicas: u(m, "toReplicas"),
                partitions_done: u(m, "partitionsDone"),
                partitions_total: u(m, "partitionsTotal"),
            });
        let ready_condition = status
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            })
            .map(|c| {
                (
                    c.get("status")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    c.get("observedGeneration")
                        .and_then(Value::as_i64)
                        .unwrap_or(0),
                )
            });
        Status {
            generation: obj
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            spec_replicas: obj
                .pointer("/spec/replicas")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            phase: status
                .get("phase")
                .and_then(Value::as_str)
                .map(str::to_string),
            replicas: u(&status, "replicas"),
            ready_replicas: u(&status, "readyReplicas"),
            ring_epoch: u(&status, "ringEpoch"),
            members,
            migration,
            ready_condition,
        }
    }

    /// Ready for the *current* spec: phase Ready, the Ready condition true for this generation,
    /// every wanted replica ready, and every member `up`. Checking observedGeneration matters right
    /// after a patch, when the old Ready status is still there.
    pub fn is_ready(&self) -> bool {
        self.phase.as_deref() == Some("Ready")
            && matches!(&self.ready_condition, Some((s, g)) if s == "True" && *g >= self.generation)
            && self.spec_replicas > 0
            && self.ready_replicas == self.spec_replicas
            && self.replicas == self.spec_replicas
            && self.members.len() as u64 == self.spec_replicas
            && self.members.iter().all(|(_, state)| state == "up")
    }

    /// One line for timeouts and progress output.
    pub fn summary(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|(id, s)| format!("{id}={s}"))
            .collect();
        format!(
            "gen={} phase={} replicas={}/{} ready={} epoch={} members=[{}] migration={:?} ready_condition={:?}",
            self.generation,
            self.phase.as_deref().unwrap_or("-"),
            self.replicas,
            self.spec_replicas,
            self.ready_replicas,
            self.ring_epoch,
            members.join(","),
            self.migration,
            self.ready_condition,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ready_obj(generation: i64, observed: i64) -> Value {
        json!({
            "metadata": {"name": "demo", "generation": generation},
            "spec": {"replicas": 2},
            "status": {
                "phase": "Ready", "replicas": 2, "readyReplicas": 2, "ringEpoch": 7,
                "members": [{"id": "demo-0", "state": "up"}, {"id": "demo-1", "state": "up"}],
                "conditions": [
                    {"type": "Progressing", "status": "False", "observedGeneration": observed},
                    {"type": "Ready", "status": "True", "observedGeneration": observed}
                ]
            }
        })
    }

    #[test]
    fn ready_when_everything_matches_the_current_generation() {
        let s = Status::of(&ready_obj(3, 3));
        assert!(s.is_ready(), "{}", s.summary());
        assert_eq!(s.ring_epoch, 7);
    }

    #[test]
    fn stale_ready_condition_is_not_ready() {
        let s = Status::of(&ready_obj(4, 3));
        assert!(!s.is_ready());
    }

    #[test]
    fn a_member_not_up_is_not_ready() {
        let mut obj = ready_obj(1, 1);
        obj["status"]["members"][1]["state"] = json!("recovering");
        assert!(!Status::of(&obj).is_ready());
    }

    #[test]
    fn fewer_ready_replicas_than_spec_is_not_ready() {
        let mut obj = ready_obj(1, 1);
        obj["spec"]["replicas"] = json!(3);
        assert!(!Status::of(&obj).is_ready());
    }

    #[test]
    fn missing_status_reads_as_empty() {
        let s = Status::of(&json!({"metadata": {"name": "x"}}));
        assert!(!s.is_ready());
        assert_eq!(s.phase, None);
        assert_eq!(s.migration, None);
    }

    #[test]
    fn migration_progress_is_read() {
        let mut obj = ready_obj(1, 1);
        obj["status"]["migration"] = json!({
            "fromReplicas": 3, "toReplicas": 5, "epoch": 9,
            "partitionsDone": 10, "partitionsTotal": 40, "bytesMoved": 1234
        });
        let m = Status::of(&obj).migration;
        assert_eq!(
            m,
            Some(Migration {
                from_replicas: 3,
                to_replicas: 5,
                partitions_done: 10,
                partitions_total: 40
            })
        );
    }
}
