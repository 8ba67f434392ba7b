//! Pops from the first non-empty of several lists or sorted sets (`LMPOP`, `ZMPOP`), and their
//! blocking forms (`BLPOP`, `BRPOP`, `BLMPOP`, `BZPOPMIN`, `BZPOPMAX`, `BZMPOP`): each pop is a
//! command on its key's first serving owner, tried in key order; while all are empty, the wait
//! is on those owners (`KeyOp::WaitFilled`, `cluster::waiters`), so a push through any node
//! wakes the client. Not fair as Redis is (first blocked, first served): when two clients wait
//! on one key, either may get the element.

use super::multikey::Failure;
use crate::cluster::node::SharedNode;
use crate::cluster::waiters::SLICE;
use crate::cluster::{self, KeyOp, Origin, Outcome};
use crate::commands::frame::parse_double;
use crate::commands::{CmdError, Frame, as_integer};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const ORIGIN: Origin = Origin { forwarded: false };

/// Which end, and how the answer looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    Left,
    Right,
    Min,
    Max,
}

impl From {
    fn pop(self) -> &'static [u8] {
        match self {
            From::Left => b"LPOP",
            From::Right => b"RPOP",
            From::Min => b"ZPOPMIN",
            From::Max => b"ZPOPMAX",
        }
    }
}

/// A parsed command: the keys in order, the end, how many (`None`: the single-element form of
/// `BLPOP`/`BZPOPMIN`), and how long to block (`None`: not at all; zero: forever).
struct Pop {
    keys: Vec<Bytes>,
    from: From,
    count: Option<usize>,
    block: Option<Duration>,
}

fn timeout(v: &[u8]) -> Result<Duration, CmdError> {
    let t = parse_double(v)
        .filter(|t| t.is_finite())
        .ok_or_else(|| CmdError::Reply("ERR timeout is not a float or out of range".into()))?;
    if t < 0.0 {
        return Err(CmdError::Reply("ERR timeout is negative".into()));
    }
    Ok(Duration::from_secs_f64(t))
}

/// `numkeys key … LEFT|RIGHT|MIN|MAX [COUNT n]` from `at`.
fn counted(args: &[Bytes], at: usize, zset: bool) -> Result<(Vec<Bytes>, From, usize), CmdError> {
    let n = as_integer(&args[at]).ok_or_else(CmdError::not_integer)?;
    if n <= 0 {
        return Err(CmdError::Reply(
            "ERR numkeys should be greater than 0".into(),
        ));
    }
    let n = n as usize;
    let rest = args.get(at + 1 + n..).ok_or_else(CmdError::syntax)?;
    let keys = args[at + 1..at + 1 + n].to_vec();
    let from = match rest.first().map(|w| w.to_ascii_uppercase()).as_deref() {
        Some(b"LEFT") if !zset => From::Left,
        Some(b"RIGHT") if !zset => From::Right,
        Some(b"MIN") if zset => From::Min,
        Some(b"MAX") if zset => From::Max,
        _ => return Err(CmdError::syntax()),
    };
    let count = match &rest[1..] {
        [] => 1,
        [w, c] if w.eq_ignore_ascii_case(b"COUNT") => match as_integer(c) {
            Some(c) if c > 0 => c as usize,
            _ => {
                return Err(CmdError::Reply("ERR count should be greater than 0".into()));
            }
        },
        _ => return Err(CmdError::syntax()),
    };
    Ok((keys, from, count))
}

fn parse(args: &[Bytes]) -> Result<Pop, CmdError> {
    let name = args[0].to_ascii_uppercase();
    let last = args.len() - 1;
    Ok(match name.as_slice() {
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => Pop {
            keys: args[1..last].to_vec(),
            from: match name.as_slice() {
                b"BLPOP" => From::Left,
                b"BRPOP" => From::Right,
                b"BZPOPMIN" => From::Min,
                _ => From::Max,
            },
            count: None,
            block: Some(timeout(&args[last])?),
        },
        b"LMPOP" | b"ZMPOP" => {
            let (keys, from, count) = counted(args, 1, name[0] == b'Z')?;
            Pop {
                keys,
                from,
                count: Some(count),
                block: None,
            }
        }
        _ => {
            let block = timeout(&args[1])?;
            let (keys, from, count) = counted(args, 2, name[1] == b'Z')?;
            Pop {
                keys,
                from,
                count: Some(count),
                block: Some(block),
            }
        }
    })
}

/// Pops from `key` on its owner; `None` when it is empty.
async fn pop_one(s: &SharedNode, key: &Bytes, p: &Pop) -> Result<Option<Frame>, Failure> {
    let mut args = vec![Bytes::from_static(p.from.pop()), key.clone()];
    if let Some(c) = p.count {
        args.push(Bytes::from(c.to_string()));
    }
    let Outcome::Reply(f) = cluster::op(s, key, KeyOp::Cmd { args }, &ORIGIN).await? else {
        return Ok(None);
    };
    let k = Frame::Bulk(key.clone());
    Ok(match (f, p.count) {
        (Frame::Nil | Frame::NilArray, _) => None,
        (Frame::Array(v), _) if v.is_empty() => None,
        (Frame::Pairs(v), _) if v.is_empty() => None,
        // BLPOP/BRPOP: [key, element]; BZPOPMIN/MAX: [key, member, score].
        (Frame::Bulk(v), None) => Some(Frame::Array(vec![k, Frame::Bulk(v)])),
        (Frame::Array(mut v), None) => {
            v.insert(0, k);
            Some(Frame::Array(v))
        }
        // ZMPOP and BZMPOP: [key, [[member, score], …]] in either protocol version.
        (Frame::Pairs(v), Some(_)) => Some(Frame::Array(vec![
            k,
            Frame::Array(
                v.into_iter()
                    .map(|(m, sc)| Frame::Array(vec![m, sc]))
                    .collect(),
            ),
        ])),
        // LMPOP and BLMPOP: [key, elements].
        (f, Some(_)) => Some(Frame::Array(vec![k, f])),
        (other, None) => Some(other),
    })
}

/// Counts a client as blocked (`blocked_clients`) while it lives.
struct Blocked(SharedNode);

impl Blocked {
    fn new(s: &SharedNode) -> Blocked {
        s.metrics.resp_blocked.fetch_add(1, Ordering::Relaxed);
        Blocked(s.clone())
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        self.0.metrics.resp_blocked.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the command `args` (its name first) for a connection that is open while `alive`.
pub async fn run(
    s: SharedNode,
    args: Vec<Bytes>,
    alive: Arc<AtomicBool>,
) -> Result<Frame, Failure> {
    let p = parse(&args)?;
    let deadline = p.block.filter(|d| !d.is_zero()).map(|d| Instant::now() + d);
    let mut blocked: Option<Blocked> = None;
    loop {
        // The client went away: popping now would take an element nobody receives.
        if !alive.load(Ordering::Relaxed) {
            return Ok(Frame::NilArray);
        }
        for key in &p.keys {
            if let Some(f) = pop_one(&s, key, &p).await? {
                return Ok(f);
            }
        }
        if p.block.is_none() {
            return Ok(Frame::NilArray);
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return Ok(Frame::NilArray);
        }
        let slice = left.map_or(SLICE, |l| l.min(SLICE));
        if blocked.is_none() {
            blocked = Some(Blocked::new(&s));
        }
        // Until one of the keys holds something (or the slice ends), on each key's owner.
        let within_ms = slice.as_millis() as u64;
        let waits = p.keys.iter().map(|k| {
            let s = &s;
            Box::pin(
                async move { cluster::op(s, k, KeyOp::WaitFilled { within_ms }, &ORIGIN).await },
            )
        });
        let (first, _, _) = futures_util::future::select_all(waits).await;
        if let Err(e) = first {
            // An owner that cannot be asked now: wait out the slice here, then look again.
            tracing::debug!(error = %e, "blocked pop: waiting on an owner failed");
            tokio::time::sleep(slice).await;
        }
    }
}
