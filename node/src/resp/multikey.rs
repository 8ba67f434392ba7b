//! Commands that read several keys and change none (`SINTER`, `SUNION`, `SDIFF`,
//! `SINTERCARD`, `ZUNION`, `ZINTER`, `ZDIFF`, `ZINTERCARD`): each key is read on its first
//! serving owner, concurrently, and the result computed here (`commands::algebra`). Each key is
//! as of its own read: with writers running on other keys meanwhile, the answer is not a
//! snapshot of all keys at one instant (Redis's is; the `…STORE` forms, which would write that
//! answer, wait for the transactions of the atomicity work).

use crate::cluster::node::SharedNode;
use crate::cluster::{self, ClusterError, KeyOp, OpError, Origin, Outcome};
use crate::commands::algebra::{self, Op};
use crate::commands::{CmdError, Frame};
use ringcache_common::protocol::ErrorCode;

/// Why a command failed: on an owner, or for its arguments.
pub enum Failure {
    Cluster(ClusterError),
    Command(CmdError),
}

impl From<ClusterError> for Failure {
    fn from(e: ClusterError) -> Failure {
        Failure::Cluster(e)
    }
}

impl From<CmdError> for Failure {
    fn from(e: CmdError) -> Failure {
        Failure::Command(e)
    }
}

const ORIGIN: Origin = Origin { forwarded: false };

async fn ask(
    s: &SharedNode,
    cmd: &'static [u8],
    key: &bytes::Bytes,
    rest: &[&'static [u8]],
) -> Result<Frame, ClusterError> {
    let mut args = vec![bytes::Bytes::from_static(cmd), key.clone()];
    args.extend(rest.iter().map(|a| bytes::Bytes::from_static(a)));
    match cluster::op(s, key, KeyOp::Cmd { args }, &ORIGIN).await? {
        Outcome::Reply(f) => Ok(f),
        other => Err(ClusterError::Unreachable(format!(
            "unexpected answer from the owner: {other:?}"
        ))),
    }
}

fn members(f: Frame) -> Vec<bytes::Bytes> {
    match f {
        Frame::Set(items) | Frame::Array(items) => items
            .into_iter()
            .filter_map(|i| match i {
                Frame::Bulk(b) => Some(b),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn is_wrong_type(e: &ClusterError) -> bool {
    matches!(
        e,
        ClusterError::Op(OpError::Command(CmdError::WrongType) | OpError::WrongType)
    ) || e.code() == Some(ErrorCode::WrongType)
}

/// A sorted set's members and scores; a set's members score 1, as Redis's `Z…` algebra takes
/// them.
async fn scored(
    s: &SharedNode,
    key: &bytes::Bytes,
) -> Result<Vec<(bytes::Bytes, f64)>, ClusterError> {
    match ask(s, b"ZRANGE", key, &[b"0", b"-1", b"WITHSCORES"]).await {
        Ok(Frame::Pairs(pairs)) => Ok(pairs
            .into_iter()
            .filter_map(|(m, sc)| match (m, sc) {
                (Frame::Bulk(m), Frame::Double(sc)) => Some((m, sc)),
                _ => None,
            })
            .collect()),
        Ok(_) => Ok(Vec::new()),
        Err(e) if is_wrong_type(&e) => {
            let set = members(ask(s, b"SMEMBERS", key, &[]).await?);
            Ok(set.into_iter().map(|m| (m, 1.0)).collect())
        }
        Err(e) => Err(e),
    }
}

/// The keys after a count at 1 (`ZUNION 2 a b …`) and the arguments after them.
fn counted(args: &[bytes::Bytes]) -> Result<(&[bytes::Bytes], &[bytes::Bytes]), CmdError> {
    let n = crate::commands::as_integer(&args[1]).ok_or_else(CmdError::not_integer)?;
    if n <= 0 {
        return Err(CmdError::Reply(
            "ERR numkeys should be greater than 0".into(),
        ));
    }
    let n = n as usize;
    if n > args.len() - 2 {
        return Err(CmdError::Reply(
            "ERR Number of keys can't be greater than number of args".into(),
        ));
    }
    Ok((&args[2..2 + n], &args[2 + n..]))
}

/// Runs the command `args` (its name first).
pub async fn run(s: SharedNode, args: Vec<bytes::Bytes>) -> Result<Frame, Failure> {
    let name = args[0].to_ascii_uppercase();
    let op = match &name[1..] {
        b"UNION" => Op::Union,
        b"INTER" | b"INTERCARD" => Op::Inter,
        _ => Op::Diff,
    };
    if name[0] == b'S' {
        let (keys, rest) = if name.ends_with(b"CARD") {
            counted(&args)?
        } else {
            (&args[1..], &[][..])
        };
        let limit = algebra::card_limit(rest)?;
        let reads = keys.iter().map(|k| {
            let s = &s;
            async move { ask(s, b"SMEMBERS", k, &[]).await.map(members) }
        });
        let sets: Vec<Vec<bytes::Bytes>> = futures_util::future::try_join_all(reads).await?;
        let out = algebra::sets(op, &sets);
        return Ok(if name.ends_with(b"CARD") {
            let n = if limit == 0 {
                out.len()
            } else {
                out.len().min(limit)
            };
            Frame::Int(n as i64)
        } else {
            Frame::Set(out.into_iter().map(Frame::Bulk).collect())
        });
    }
    let (keys, rest) = counted(&args)?;
    let (opts, limit) = if name.ends_with(b"CARD") {
        (
            algebra::z_options(op, keys.len(), &[])?,
            algebra::card_limit(rest)?,
        )
    } else {
        (algebra::z_options(op, keys.len(), rest)?, 0)
    };
    let reads = keys.iter().map(|k| {
        let s = &s;
        async move { scored(s, k).await }
    });
    let inputs = futures_util::future::try_join_all(reads).await?;
    let out = algebra::zsets(op, &inputs, &opts);
    Ok(if name.ends_with(b"CARD") {
        let n = if limit == 0 {
            out.len()
        } else {
            out.len().min(limit)
        };
        Frame::Int(n as i64)
    } else if opts.scores {
        Frame::Pairs(
            out.into_iter()
                .map(|(m, sc)| (Frame::Bulk(m), Frame::Double(sc)))
                .collect(),
        )
    } else {
        Frame::Array(out.into_iter().map(|(m, _)| Frame::Bulk(m)).collect())
    })
}
