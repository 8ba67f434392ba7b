//! The keyspace query between nodes (`POST /internal/v1/keyspace`), as data: what `DBSIZE`,
//! `KEYS`, `SCAN`, `RANDOMKEY` and `FLUSHDB` ask each owner and what it answers
//! (`cluster::keyspace` runs them).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What to do with the keys of the partitions asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// List them.
    Keys,
    /// Count them.
    Count,
    /// Delete them (tombstones, replicated like any delete).
    Flush,
}

/// Body of `POST /internal/v1/keyspace`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Query {
    pub partitions: Vec<u32>,
    pub action: Action,
    /// Only keys matching this glob (`MATCH`).
    #[serde(default, with = "crate::serde_b64::opt")]
    pub pattern: Option<Bytes>,
    /// Only keys of this `TYPE` name (`SCAN … TYPE`).
    #[serde(default)]
    pub kind: Option<String>,
    /// Only keys of this numbered database (`commands::db`); none: every database. Listed
    /// keys are the client's (without the database).
    #[serde(default)]
    pub db: Option<u8>,
}

/// Answer of `POST /internal/v1/keyspace`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    #[serde(with = "crate::serde_b64::list")]
    pub keys: Vec<Bytes>,
    pub count: u64,
    /// Partitions this node does not serve completely: the asker tries the next owner.
    pub refused: Vec<u32>,
}

impl Answer {
    /// Adds what `other` found to this answer (its `refused` is the caller's to handle).
    pub fn add(&mut self, other: Answer) {
        self.keys.extend(other.keys);
        self.count += other.count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_answers_survive_the_wire() {
        let q = Query {
            partitions: vec![0, 7],
            action: Action::Flush,
            pattern: Some(Bytes::from_static(b"user:*\xff")),
            kind: Some("hash".into()),
            db: Some(3),
        };
        let back: Query = serde_json::from_slice(&serde_json::to_vec(&q).unwrap()).unwrap();
        assert_eq!(back.partitions, q.partitions);
        assert_eq!(back.action, q.action);
        assert_eq!(back.pattern, q.pattern);
        assert_eq!(back.kind, q.kind);
        assert_eq!(back.db, q.db);
        let bare: Query = serde_json::from_str(r#"{"partitions":[1],"action":"count"}"#).unwrap();
        assert!(bare.pattern.is_none() && bare.kind.is_none() && bare.db.is_none());
    }
}
