//! What can go wrong routing, forwarding and replicating a key operation. The HTTP front maps
//! these to statuses and codes (`http/error.rs`); nothing here knows about HTTP.

use crate::engine::EngineError;
use ringcache_common::protocol::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Write => "write",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The node still runs on its placeholder ring.
    #[error("no ring loaded yet (waiting for the ring file or a ring push)")]
    NoRing,
    #[error("no live owner for partition {partition}")]
    NoLiveOwner { partition: u32 },
    /// Owners exist but none serves (down or recovering): a write taken by recovering or joining
    /// owners alone could be lost with them unnoticed.
    #[error(
        "partition {partition} has no serving owner at epoch {epoch} (its owners are down or still recovering)"
    )]
    NoServingOwner { partition: u32, epoch: u64 },
    /// A peer forwarded an operation for a partition this node does not hold (completely): the
    /// peer's ring and ours disagree, and forwarding again could loop.
    #[error(
        "forwarded {op} for partition {partition}, which this node does not hold completely at epoch {epoch}"
    )]
    NotOwner { op: Op, partition: u32, epoch: u64 },
    /// Too few owners acknowledged a write for its `writeConsistency`.
    #[error("{acks} of {need} replica acknowledgements: {errors}")]
    Replication {
        acks: usize,
        need: usize,
        errors: String,
    },
    /// The owner's definitive answer (below 500), relayed: it would be the same anywhere.
    #[error("{message}")]
    Owner {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// Every owner tried failed; the last failure.
    #[error("{0}")]
    Unreachable(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A read-modify-write refused for what the key holds.
    #[error(transparent)]
    Op(#[from] super::ops::OpError),
}

impl ClusterError {
    /// The code an owner answered with, for an owner's answer.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClusterError::Owner { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// An owner's error answer (`{"error", "code"}`), with a code this node knows or
    /// [`ErrorCode::OwnerError`].
    pub fn from_owner(status: u16, body: &[u8]) -> ClusterError {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        ClusterError::Owner {
            status,
            code: v["code"]
                .as_str()
                .and_then(ErrorCode::parse)
                .unwrap_or(ErrorCode::OwnerError),
            message: v["error"]
                .as_str()
                .unwrap_or("error from owner")
                .to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_errors_keep_known_codes_and_mark_unknown_ones() {
        let e = ClusterError::from_owner(413, br#"{"error":"too big","code":"value_too_large"}"#);
        assert!(matches!(
            e,
            ClusterError::Owner { status: 413, code: ErrorCode::ValueTooLarge, ref message } if message == "too big"
        ));
        let e = ClusterError::from_owner(400, br#"{"error":"?","code":"from_the_future"}"#);
        assert!(matches!(
            e,
            ClusterError::Owner {
                code: ErrorCode::OwnerError,
                ..
            }
        ));
        let e = ClusterError::from_owner(401, b"not json");
        assert!(matches!(
            e,
            ClusterError::Owner { status: 401, code: ErrorCode::OwnerError, ref message } if message == "error from owner"
        ));
    }
}
