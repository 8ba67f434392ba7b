//! Reading a CacheCluster's status (DESIGN.md: phase, replicas, readyReplicas, ringEpoch, members,
//! migration, observedGeneration, conditions with observedGeneration) out of its JSON.

use serde_json::Value;

/// The parts of `status.migration` the scenarios look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migration {
    pub from_replicas: u64,
    pub to_replicas: u64,
    pub partitions_done: u64,
    pub partitions_total: u64,
    pub bytes_moved: u64,
    pub started: Option<String>,
    /// Set when the migration committed; the operator keeps the last migration in status until the
    /// next one starts, so this is readable after the fact however fast the migration was.
    pub finished: Option<String>,
}

impl Migration {
    /// Why this is not the record of a completed `from`→`to` migration (`None`: it is).
    pub fn incomplete_for(&self, from: u64, to: u64) -> Option<String> {
        if (self.from_replicas, self.to_replicas) != (from, to) {
            return Some(format!(
                "it records {}→{}, not {from}→{to}",
                self.from_replicas, self.to_replicas
            ));
        }
        if self.started.is_none() {
            return Some("started is not set".into());
        }
        if self.finished.is_none() {
            return Some("finished is not set".into());
        }
        if self.partitions_total == 0 {
            return Some("partitionsTotal is 0: no partition was counted as moved".into());
        }
        if self.partitions_done != self.partitions_total {
            return Some(format!(
                "partitionsDone {} != partitionsTotal {}",
                self.partitions_done, self.partitions_total
            ));
        }
        None
    }
}

/// One entry of `status.members`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub state: String,
    /// The node process the operator vouches for (a fresh id per process start).
    pub incarnation: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub generation: i64,
    pub spec_replicas: u64,
    pub phase: Option<String>,
    pub replicas: u64,
    pub ready_replicas: u64,
    pub ring_epoch: u64,
    pub members: Vec<Member>,
    pub migration: Option<Migration>,
    /// `status.observedGeneration`: the generation the operator last reconciled.
    pub observed_generation: Option<i64>,
    /// `(status, observedGeneration)` of the `Ready` condition.
    pub ready_condition: Option<(String, i64)>,
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
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
                    .map(|m| Member {
                        id: text(m, "id").unwrap_or_default(),
                        state: text(m, "state").unwrap_or_default(),
                        incarnation: text(m, "incarnation"),
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
                bytes_moved: u(m, "bytesMoved"),
                started: text(m, "started"),
                finished: text(m, "finished"),
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
                    text(c, "status").unwrap_or_default(),
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
            phase: text(&status, "phase"),
            replicas: u(&status, "replicas"),
            ready_replicas: u(&status, "readyReplicas"),
            ring_epoch: u(&status, "ringEpoch"),
            members,
            migration,
            observed_generation: status.get("observedGeneration").and_then(Value::as_i64),
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
            && self.members.iter().all(|m| m.state == "up")
    }

    /// Why `status.migration` is not the record of a completed `from`→`to` migration (`None`: it
    /// is). The operator commits a migration before it reports Ready and keeps the record until
    /// the next migration starts, so a Ready status after a scale must carry it, however fast the
    /// migration was: this reads it after the fact instead of sampling it while it runs.
    pub fn migration_incomplete(&self, from: u64, to: u64) -> Option<String> {
        match &self.migration {
            None => Some("there is no status.migration".into()),
            Some(m) => m
                .incomplete_for(from, to)
                .map(|why| format!("status.migration {m:?}: {why}")),
        }
    }

    /// The incarnation status records for member `id` (`None`: no such member, or none recorded).
    pub fn incarnation_of(&self, id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.incarnation.as_deref())
    }

    /// One line for timeouts and progress output.
    pub fn summary(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.id, m.state))
            .collect();
        format!(
            "gen={} observedGen={} phase={} replicas={}/{} ready={} epoch={} members=[{}] migration={:?} ready_condition={:?}",
            self.generation,
            self.observed_generation
                .map_or_else(|| "-".to_string(), |g| g.to_string()),
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
            "partitionsDone": 10, "partitionsTotal": 40, "bytesMoved": 1234,
            "started": "2030-01-01T00:00:00Z"
        });
        let m = Status::of(&obj).migration;
        assert_eq!(
            m,
            Some(Migration {
                from_replicas: 3,
                to_replicas: 5,
                partitions_done: 10,
                partitions_total: 40,
                bytes_moved: 1234,
                started: Some("2030-01-01T00:00:00Z".into()),
                finished: None,
            })
        );
    }

    fn finished_3_to_5() -> Migration {
        Migration {
            from_replicas: 3,
            to_replicas: 5,
            partitions_done: 410,
            partitions_total: 410,
            bytes_moved: 9_000,
            started: Some("2030-01-01T00:00:00Z".into()),
            finished: Some("2030-01-01T00:00:04Z".into()),
        }
    }

    #[test]
    fn a_finished_migration_with_every_partition_done_is_complete() {
        assert_eq!(finished_3_to_5().incomplete_for(3, 5), None);
    }

    #[test]
    fn a_status_without_a_migration_record_has_no_completed_migration() {
        let mut obj = ready_obj(1, 1);
        assert!(Status::of(&obj).migration_incomplete(3, 5).is_some());
        obj["status"]["migration"] = json!({
            "fromReplicas": 3, "toReplicas": 5, "partitionsDone": 8, "partitionsTotal": 8,
            "bytesMoved": 10, "started": "2030-01-01T00:00:00Z", "finished": "2030-01-01T00:00:01Z"
        });
        assert_eq!(Status::of(&obj).migration_incomplete(3, 5), None);
    }

    #[test]
    fn a_migration_record_is_incomplete_unless_every_part_matches() {
        let m = finished_3_to_5();
        assert!(m.incomplete_for(5, 2).is_some(), "other replica counts");
        let running = Migration {
            finished: None,
            ..m.clone()
        };
        assert!(running.incomplete_for(3, 5).is_some(), "not finished");
        let unstarted = Migration {
            started: None,
            ..m.clone()
        };
        assert!(unstarted.incomplete_for(3, 5).is_some(), "no start time");
        let empty = Migration {
            partitions_done: 0,
            partitions_total: 0,
            ..m.clone()
        };
        assert!(empty.incomplete_for(3, 5).is_some(), "nothing counted");
        let partial = Migration {
            partitions_done: 409,
            ..m
        };
        assert!(partial.incomplete_for(3, 5).is_some(), "a partition short");
    }

    #[test]
    fn members_incarnations_and_observed_generation_are_read() {
        let mut obj = ready_obj(2, 2);
        obj["status"]["observedGeneration"] = json!(2);
        obj["status"]["members"][0]["incarnation"] = json!("inc-a");
        let s = Status::of(&obj);
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.incarnation_of("demo-0"), Some("inc-a"));
        assert_eq!(s.incarnation_of("demo-1"), None);
        assert_eq!(s.incarnation_of("nobody"), None);
    }
}
