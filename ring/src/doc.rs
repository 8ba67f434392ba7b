//! The ring document: what the operator writes to the `NAME-ring` ConfigMap and pushes to nodes.

use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Document format version this code writes. Readers accept any version ≥ 1 whose fields parse,
/// so older nodes keep working while a newer operator adds fields.
pub const RING_DOC_VERSION: u32 = 1;

/// The only key hash the ring supports today.
pub const HASH_XXH3_64: &str = "xxh3_64";

/// `table[p]` = owner indices into `members`, primary first.
pub type Table = Vec<Vec<u32>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Serving reads and writes for the partitions it owns.
    Up,
    /// Pod not ready: skipped for reads and writes.
    Down,
    /// New; owns nothing in the current table yet.
    Joining,
    /// Back from `down`: takes writes, serves no reads, pulls its partitions from co-owners.
    Recovering,
    /// About to be removed; still serves until the table without it commits.
    Leaving,
}

impl MemberState {
    /// Whether writes for the member's partitions are sent to it.
    pub fn takes_writes(self) -> bool {
        !matches!(self, MemberState::Down)
    }

    /// Whether reads may be served by it.
    pub fn serves_reads(self) -> bool {
        matches!(self, MemberState::Up | MemberState::Leaving)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Down => "down",
            MemberState::Joining => "joining",
            MemberState::Recovering => "recovering",
            MemberState::Leaving => "leaving",
        }
    }
}

impl std::fmt::Display for MemberState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member id = pod name (`NAME-0`, …).
    pub id: String,
    /// `ip:port` the operator observed; empty while the pod has no IP (then the member is `down`).
    #[serde(default)]
    pub addr: String,
    pub state: MemberState,
    /// The incarnation (per-process id, see `/healthz`) the operator last observed for this
    /// member. With `up` or `leaving` it names the one process whose data the operator vouches
    /// for: a process with another incarnation (restarted since) must recover first. Absent in
    /// rings written before incarnations existed; nodes then trust the state as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<String>,
}

/// Longest accepted incarnation id.
pub const MAX_INCARNATION_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Target table of the migration in progress (same member indices as the current table).
    pub table: Table,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingDoc {
    pub version: u32,
    pub epoch: u64,
    pub partitions: u32,
    pub replication_factor: u32,
    pub hash: String,
    pub members: Vec<Member>,
    pub table: Table,
    #[serde(default)]
    pub pending: Option<Pending>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("ring document is not valid JSON for this schema: {0}")]
    Parse(String),
    #[error("unsupported ring document version {0} (this build reads versions >= 1)")]
    UnsupportedVersion(u32),
    #[error("unsupported hash {0:?} (only \"xxh3_64\")")]
    UnsupportedHash(String),
    #[error("partitions must be at least 1")]
    ZeroPartitions,
    #[error("replicationFactor must be at least 1")]
    ZeroReplicationFactor,
    #[error("members must not be empty")]
    NoMembers,
    #[error("member {index} has an empty id")]
    EmptyMemberId { index: usize },
    #[error("member id {0:?} appears more than once")]
    DuplicateMember(String),
    #[error(
        "member {id:?} has an incarnation of {len} bytes (1..={MAX_INCARNATION_LEN} printable ASCII)"
    )]
    BadIncarnation { id: String, len: usize },
    #[error("member {id:?} is {state} but has no addr")]
    MissingAddr { id: String, state: MemberState },
    #[error("replicationFactor {rf} exceeds the {members} members")]
    RfExceedsMembers { rf: u32, members: usize },
    #[error("{table} has {actual} partitions, expected {expected}")]
    TableLength {
        table: &'static str,
        expected: u32,
        actual: usize,
    },
    #[error("{table}[{partition}] has no owner")]
    NoOwners {
        table: &'static str,
        partition: usize,
    },
    #[error("{table}[{partition}] has {owners} owners, more than replicationFactor {rf}")]
    TooManyOwners {
        table: &'static str,
        partition: usize,
        owners: usize,
        rf: u32,
    },
    #[error(
        "{table}[{partition}] names member index {index}, but there are only {members} members"
    )]
    OwnerOutOfRange {
        table: &'static str,
        partition: usize,
        index: u32,
        members: usize,
    },
    #[error("{table}[{partition}] names member index {index} twice")]
    DuplicateOwner {
        table: &'static str,
        partition: usize,
        index: u32,
    },
    #[error(
        "{table}[{partition}] is owned by member {id:?}, which is joining and may own nothing yet"
    )]
    JoiningOwner {
        table: &'static str,
        partition: usize,
        id: String,
    },
}

impl RingDoc {
    /// The ring a node serves with when it has no ring file: itself, owning every partition.
    /// Epoch 0 so that any ring the operator delivers supersedes it.
    pub fn single_node(id: &str, addr: &str, partitions: u32) -> RingDoc {
        RingDoc {
            version: RING_DOC_VERSION,
            epoch: 0,
            partitions,
            replication_factor: 1,
            hash: HASH_XXH3_64.to_string(),
            members: vec![Member {
                id: id.to_string(),
                addr: addr.to_string(),
                state: MemberState::Up,
                incarnation: None,
            }],
            table: (0..partitions).map(|_| vec![0]).collect(),
            pending: None,
        }
    }

    /// Parses and validates; nothing half-valid is ever returned.
    pub fn from_json(bytes: &[u8]) -> Result<RingDoc, RingError> {
        let doc: RingDoc =
            serde_json::from_slice(bytes).map_err(|e| RingError::Parse(e.to_string()))?;
        doc.validate()?;
        Ok(doc)
    }

    pub fn to_json_pretty(&self) -> String {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), RingError> {
        if self.version < 1 {
            return Err(RingError::UnsupportedVersion(self.version));
        }
        if self.hash != HASH_XXH3_64 {
            return Err(RingError::UnsupportedHash(self.hash.clone()));
        }
        if self.partitions == 0 {
            return Err(RingError::ZeroPartitions);
        }
        if self.replication_factor == 0 {
            return Err(RingError::ZeroReplicationFactor);
        }
        if self.members.is_empty() {
            return Err(RingError::NoMembers);
        }
        let mut seen = HashSet::with_capacity(self.members.len());
        for (index, m) in self.members.iter().enumerate() {
            if m.id.is_empty() {
                return Err(RingError::EmptyMemberId { index });
            }
            if !seen.insert(m.id.as_str()) {
                return Err(RingError::DuplicateMember(m.id.clone()));
            }
            if let Some(inc) = &m.incarnation
                && (inc.is_empty()
                    || inc.len() > MAX_INCARNATION_LEN
                    || !inc.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(RingError::BadIncarnation {
                    id: m.id.clone(),
                    len: inc.len(),
                });
            }
            if m.addr.is_empty() && m.state != MemberState::Down {
                return Err(RingError::MissingAddr {
                    id: m.id.clone(),
                    state: m.state,
                });
            }
        }
        if self.replication_factor as usize > self.members.len() {
            return Err(RingError::RfExceedsMembers {
                rf: self.replication_factor,
                members: self.members.len(),
            });
        }
        self.validate_table("table", &self.table, true)?;
        if let Some(pending) = &self.pending {
            self.validate_table("pending.table", &pending.table, false)?;
        }
        Ok(())
    }

    fn validate_table(
        &self,
        name: &'static str,
        table: &Table,
        forbid_joining: bool,
    ) -> Result<(), RingError> {
        if table.len() != self.partitions as usize {
            return Err(RingError::TableLength {
                table: name,
                expected: self.partitions,
                actual: table.len(),
            });
        }
        let n = self.members.len();
        for (partition, owners) in table.iter().enumerate() {
            if owners.is_empty() {
                return Err(RingError::NoOwners {
                    table: name,
                    partition,
                });
            }
            if owners.len() > self.replication_factor as usize {
                return Err(RingError::TooManyOwners {
                    table: name,
                    partition,
                    owners: owners.len(),
                    rf: self.replication_factor,
                });
            }
            for (i, &index) in owners.iter().enumerate() {
                let Some(member) = self.members.get(index as usize) else {
                    return Err(RingError::OwnerOutOfRange {
                        table: name,
                        partition,
                        index,
                        members: n,
                    });
                };
                if owners[..i].contains(&index) {
                    return Err(RingError::DuplicateOwner {
                        table: name,
                        partition,
                        index,
                    });
                }
                if forbid_joining && member.state == MemberState::Joining {
                    return Err(RingError::JoiningOwner {
                        table: name,
                        partition,
                        id: member.id.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn member_index(&self, id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    pub fn partition_of(&self, key: &[u8]) -> u32 {
        crate::partition_of(key, self.partitions)
    }

    /// Current owners of `p` (primary first). Empty for an out-of-range partition.
    pub fn owners(&self, p: u32) -> &[u32] {
        self.table.get(p as usize).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Target owners of `p` while a migration is pending; empty otherwise.
    pub fn pending_owners(&self, p: u32) -> &[u32] {
        self.pending
            .as_ref()
            .and_then(|pd| pd.table.get(p as usize))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Members that must receive a write to `p`: current owners, then pending owners not already
    /// listed, skipping `down` members. Order: primary first.
    pub fn write_owners(&self, p: u32) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::with_capacity(4);
        for &i in self.owners(p).iter().chain(self.pending_owners(p)) {
            if !out.contains(&i) && self.state_of(i).is_some_and(MemberState::takes_writes) {
                out.push(i);
            }
        }
        out
    }

    /// Members that may serve a read of `p`, in preference order (current owners only: pending
    /// owners may still be pulling).
    pub fn read_owners(&self, p: u32) -> Vec<u32> {
        self.owners(p)
            .iter()
            .copied()
            .filter(|&i| self.state_of(i).is_some_and(MemberState::serves_reads))
            .collect()
    }

    fn state_of(&self, index: u32) -> Option<MemberState> {
        self.members.get(index as usize).map(|m| m.state)
    }

    /// Partitions that member `index` owns in the current table.
    pub fn partitions_owned_by(&self, index: u32) -> Vec<u32> {
        owned_in(&self.table, index)
    }

    /// Partitions that member `index` owns in the pending table (empty without one).
    pub fn pending_partitions_of(&self, index: u32) -> Vec<u32> {
        self.pending
            .as_ref()
            .map(|pd| owned_in(&pd.table, index))
            .unwrap_or_default()
    }

    /// The table written with member ids instead of indices (what `rebalance_ids` takes).
    pub fn id_table(&self, table: &Table) -> Vec<Vec<String>> {
        table
            .iter()
            .map(|owners| {
                owners
                    .iter()
                    .filter_map(|&i| self.members.get(i as usize).map(|m| m.id.clone()))
                    .collect()
            })
            .collect()
    }
}

fn owned_in(table: &Table, index: u32) -> Vec<u32> {
    table
        .iter()
        .enumerate()
        .filter(|(_, owners)| owners.contains(&index))
        .map(|(p, _)| p as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, state: MemberState) -> Member {
        Member {
            id: id.into(),
            addr: format!("127.0.0.1:{}", 7000 + id.len()),
            state,
            incarnation: None,
        }
    }

    fn doc3() -> RingDoc {
        RingDoc {
            version: 1,
            epoch: 7,
            partitions: 4,
            replication_factor: 2,
            hash: HASH_XXH3_64.into(),
            members: vec![
                member("a", MemberState::Up),
                member("bb", MemberState::Up),
                member("ccc", MemberState::Up),
            ],
            table: vec![vec![0, 1], vec![1, 2], vec![2, 0], vec![0, 1]],
            pending: None,
        }
    }

    #[test]
    fn parses_the_design_example() {
        let json = br#"{
          "version": 1, "epoch": 42, "partitions": 2, "replicationFactor": 2, "hash": "xxh3_64",
          "members": [ { "id": "demo-0", "addr": "10.244.1.7:7070", "state": "up" },
                       { "id": "demo-1", "addr": "10.244.1.8:7070", "state": "up" },
                       { "id": "demo-2", "addr": "10.244.1.9:7070", "state": "up" } ],
          "table":   [ [0, 1], [1, 2] ],
          "pending": null
        }"#;
        let doc = RingDoc::from_json(json).expect("valid");
        assert_eq!(doc.epoch, 42);
        assert_eq!(doc.owners(1), &[1, 2]);
        assert!(doc.pending.is_none());
    }

    #[test]
    fn unknown_fields_are_ignored_for_forward_compatibility() {
        let mut v = serde_json::to_value(doc3()).expect("serialize");
        v["futureField"] = serde_json::json!({"x": 1});
        v["members"][0]["zone"] = serde_json::json!("a");
        let bytes = serde_json::to_vec(&v).expect("serialize");
        assert_eq!(RingDoc::from_json(&bytes).expect("valid"), doc3());
    }

    #[test]
    fn round_trips_through_json() {
        let mut d = doc3();
        d.pending = Some(Pending {
            table: vec![vec![1, 0], vec![1, 2], vec![2, 0], vec![0, 2]],
        });
        let back = RingDoc::from_json(d.to_json_pretty().as_bytes()).expect("valid");
        assert_eq!(back, d);
    }

    #[test]
    fn validation_reports_precise_errors() {
        type Mutation = Box<dyn Fn(&mut RingDoc)>;
        let cases: Vec<(Mutation, RingError)> = vec![
            (
                Box::new(|d| d.version = 0),
                RingError::UnsupportedVersion(0),
            ),
            (
                Box::new(|d| d.hash = "md5".into()),
                RingError::UnsupportedHash("md5".into()),
            ),
            (Box::new(|d| d.partitions = 0), RingError::ZeroPartitions),
            (
                Box::new(|d| d.replication_factor = 0),
                RingError::ZeroReplicationFactor,
            ),
            (Box::new(|d| d.members.clear()), RingError::NoMembers),
            (
                Box::new(|d| d.members[2].id = "a".into()),
                RingError::DuplicateMember("a".into()),
            ),
            (
                Box::new(|d| d.members[1].id.clear()),
                RingError::EmptyMemberId { index: 1 },
            ),
            (
                Box::new(|d| d.members[1].incarnation = Some(String::new())),
                RingError::BadIncarnation {
                    id: "bb".into(),
                    len: 0,
                },
            ),
            (
                Box::new(|d| d.members[2].incarnation = Some("a b".into())),
                RingError::BadIncarnation {
                    id: "ccc".into(),
                    len: 3,
                },
            ),
            (
                Box::new(|d| d.members[1].addr.clear()),
                RingError::MissingAddr {
                    id: "bb".into(),
                    state: MemberState::Up,
                },
            ),
            (
                Box::new(|d| d.replication_factor = 4),
                RingError::RfExceedsMembers { rf: 4, members: 3 },
            ),
            (
                Box::new(|d| {
                    d.table.pop();
                }),
                RingError::TableLength {
                    table: "table",
                    expected: 4,
                    actual: 3,
                },
            ),
            (
                Box::new(|d| d.table[2] = vec![0, 3]),
                RingError::OwnerOutOfRange {
                    table: "table",
                    partition: 2,
                    index: 3,
                    members: 3,
                },
            ),
            (
                Box::new(|d| d.table[1] = vec![2, 2]),
                RingError::DuplicateOwner {
                    table: "table",
                    partition: 1,
                    index: 2,
                },
            ),
            (
                Box::new(|d| d.table[3].clear()),
                RingError::NoOwners {
                    table: "table",
                    partition: 3,
                },
            ),
            (
                Box::new(|d| d.table[0] = vec![0, 1, 2]),
                RingError::TooManyOwners {
                    table: "table",
                    partition: 0,
                    owners: 3,
                    rf: 2,
                },
            ),
            (
                Box::new(|d| d.members[2].state = MemberState::Joining),
                RingError::JoiningOwner {
                    table: "table",
                    partition: 1,
                    id: "ccc".into(),
                },
            ),
            (
                Box::new(|d| {
                    d.pending = Some(Pending {
                        table: vec![vec![0]; 3],
                    })
                }),
                RingError::TableLength {
                    table: "pending.table",
                    expected: 4,
                    actual: 3,
                },
            ),
        ];
        for (mutate, expected) in cases {
            let mut d = doc3();
            mutate(&mut d);
            assert_eq!(d.validate(), Err(expected.clone()), "expected {expected}");
        }
        assert_eq!(doc3().validate(), Ok(()));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            RingDoc::from_json(b"{\"version\":1"),
            Err(RingError::Parse(_))
        ));
    }

    #[test]
    fn write_owners_union_pending_and_skip_down() {
        let mut d = doc3();
        d.members.push(member("dddd", MemberState::Joining));
        d.pending = Some(Pending {
            table: vec![vec![3, 1], vec![1, 2], vec![2, 3], vec![0, 1]],
        });
        assert_eq!(d.write_owners(0), vec![0, 1, 3]);
        assert_eq!(d.read_owners(0), vec![0, 1]);
        d.members[1].state = MemberState::Down;
        assert_eq!(d.write_owners(0), vec![0, 3]);
        assert_eq!(d.read_owners(0), vec![0]);
        d.members[0].state = MemberState::Recovering;
        assert_eq!(d.write_owners(0), vec![0, 3]);
        assert!(d.read_owners(0).is_empty());
    }

    #[test]
    fn single_node_owns_everything() {
        let d = RingDoc::single_node("solo", "127.0.0.1:7070", 16);
        d.validate().expect("valid");
        assert_eq!(d.partitions_owned_by(0).len(), 16);
        assert_eq!(d.epoch, 0);
    }
}
