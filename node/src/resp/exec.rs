//! What every Redis command runs with: its arguments, the connection's state, the answer forms
//! and how one that waits on a peer is answered later, Redis's error texts, and the shared paths
//! of the command modules (`strings`, `keys`, `server`; the table is `command`).

use super::reply;
use crate::cluster::node::SharedNode;
use crate::cluster::{self, ClusterError, KeyOp, OpError, Origin, Outcome};
use crate::commands::CmdError;
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use ringcache_common::protocol::ErrorCode;
use std::sync::atomic::Ordering;

/// One command's arguments: ranges into the connection's input buffer.
pub struct Args<'a> {
    pub buf: &'a [u8],
    pub ranges: &'a [(usize, usize)],
}

impl<'a> Args<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn get(&self, i: usize) -> &'a [u8] {
        let (a, b) = self.ranges[i];
        &self.buf[a..b]
    }

    pub fn text(&self, i: usize) -> String {
        String::from_utf8_lossy(self.get(i)).into_owned()
    }
}

/// Per-connection state.
#[derive(Debug)]
pub struct Conn {
    pub id: u64,
    pub authed: bool,
    pub resp3: bool,
    pub name: Option<String>,
    /// `QUIT` was answered: close once the answers before it are out.
    pub quit: bool,
    /// The database `SELECT`ed (`commands::db`).
    pub db: u8,
    /// Cleared when the connection ends: a blocked pop still waiting stops instead of popping
    /// an element nobody would receive.
    pub alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

/// A command's answer when it is not written at once.
#[derive(Debug)]
pub enum Answer {
    Ok,
    Null,
    Int(i64),
    Bulk(Bytes),
    Values(Vec<Option<Bytes>>),
    Err(String),
    /// Already encoded (an answer queued behind a pending one).
    Raw(Vec<u8>),
    /// A typed command's answer.
    Frame(crate::commands::Frame),
}

pub fn encode(out: &mut Vec<u8>, a: Answer, resp3: bool) {
    match a {
        Answer::Ok => reply::ok(out),
        Answer::Null => reply::null(out, resp3),
        Answer::Int(n) => reply::int(out, n),
        Answer::Bulk(b) => reply::bulk(out, &b),
        Answer::Values(vs) => {
            reply::array(out, vs.len());
            for v in vs {
                reply::opt_bulk(out, v.as_deref(), resp3);
            }
        }
        Answer::Err(e) => reply::error(out, &e),
        Answer::Raw(r) => out.extend_from_slice(&r),
        Answer::Frame(f) => reply::frame(out, &f, resp3),
    }
}

/// What running a command produced.
pub enum Reply {
    /// Written into the output.
    Now,
    /// To be answered when this completes.
    Later(BoxFuture<'static, Answer>),
}

/// Runs `fut` as far as it goes without waiting: a write stored here with no replica to wait
/// for is answered at once, without a trip through the scheduler.
pub fn later(x: &mut Exec<'_>, fut: impl Future<Output = Answer> + Send + 'static) -> Reply {
    let mut fut = fut.boxed();
    match (&mut fut).now_or_never() {
        Some(a) => {
            count_error(x.s, &a);
            encode(x.out, a, x.conn.resp3);
            Reply::Now
        }
        None => Reply::Later(fut),
    }
}

/// Counts `a` in `ringcache_resp_errors_total` when it is an error.
pub fn count_error(s: &SharedNode, a: &Answer) {
    if matches!(a, Answer::Err(_)) {
        s.metrics.resp_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a command runs with.
pub struct Exec<'a> {
    pub s: &'a SharedNode,
    pub conn: &'a mut Conn,
    pub out: &'a mut Vec<u8>,
}

pub fn fail(x: &mut Exec<'_>, msg: &str) -> Reply {
    x.s.metrics.resp_errors.fetch_add(1, Ordering::Relaxed);
    reply::error(x.out, msg);
    Reply::Now
}

pub fn wrong_arity(x: &mut Exec<'_>, name: &str) -> Reply {
    fail(
        x,
        &format!(
            "ERR wrong number of arguments for '{}' command",
            name.to_ascii_lowercase()
        ),
    )
}

pub fn syntax(x: &mut Exec<'_>) -> Reply {
    fail(x, "ERR syntax error")
}

pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Redis's answer to a cluster error.
pub fn error_text(e: &ClusterError) -> String {
    use ClusterError as C;
    let code = match e {
        C::Op(OpError::WrongType | OpError::Command(CmdError::WrongType)) => {
            Some(ErrorCode::WrongType)
        }
        C::Op(OpError::Command(CmdError::Reply(_))) => Some(ErrorCode::CommandError),
        C::Op(OpError::Command(CmdError::Corrupt(_))) => Some(ErrorCode::CorruptValue),
        C::Op(OpError::NotInteger) => Some(ErrorCode::NotInteger),
        C::Op(OpError::Overflow) => Some(ErrorCode::Overflow),
        C::Op(OpError::ValueTooLarge { .. }) => Some(ErrorCode::ValueTooLarge),
        C::Owner { code, .. } => Some(*code),
        C::Engine(_) => Some(ErrorCode::InsufficientStorage),
        _ => None,
    };
    match code {
        // Redis's own text, made on the key's owner (`ERR …`, `WRONGTYPE …`).
        Some(ErrorCode::CommandError | ErrorCode::WrongType) => match e {
            C::Op(op) => op.to_string(),
            e => e.to_string(),
        },
        Some(ErrorCode::CorruptValue) => format!("ERR {e}"),
        Some(ErrorCode::NotInteger) => NOT_INTEGER.to_string(),
        Some(ErrorCode::Overflow) => "ERR increment or decrement would overflow".to_string(),
        Some(ErrorCode::ValueTooLarge) => format!("ERR string exceeds maximum allowed size: {e}"),
        Some(ErrorCode::InsufficientStorage) => {
            format!("OOM command not allowed when used memory > 'maxmemory': {e}")
        }
        Some(ErrorCode::Unauthorized) => format!("NOAUTH {e}"),
        // No owner can take it now (no ring yet, owners down, a migration's edge): retryable.
        _ => format!("TRYAGAIN {e}"),
    }
}

pub fn failed(e: ClusterError) -> Answer {
    Answer::Err(error_text(&e))
}

/// An integer argument as Redis reads one (no sign but `-`, no leading zeros or spaces).
pub fn integer(v: &[u8]) -> Option<i64> {
    crate::commands::as_integer(v)
}

pub fn key(args: &Args<'_>, i: usize) -> Bytes {
    Bytes::copy_from_slice(args.get(i))
}

/// Refuses a value argument over `maxValueSize` (the parser refuses what is longer than
/// both it and the longest key, so this is for nodes configured below 250 bytes).
pub fn check_values(
    x: &mut Exec<'_>,
    args: &Args<'_>,
    at: impl Iterator<Item = usize>,
) -> Result<(), Reply> {
    let max = x.s.max_value_size;
    for i in at {
        let size = args.get(i).len();
        if size as u64 > max {
            return Err(fail(x, &too_large(size, max)));
        }
    }
    Ok(())
}

/// The answer to an argument over `maxValueSize` (from the parser or a command).
pub fn too_large(size: usize, max: u64) -> String {
    format!(
        "ERR argument of {size} bytes is larger than maxValueSize ({max} bytes): nothing was done"
    )
}

/// Commands arrive from clients: they may be forwarded.
pub const ORIGIN: Origin = Origin { forwarded: false };

pub fn run_op(x: &mut Exec<'_>, key: Bytes, op: KeyOp, shape: fn(Outcome) -> Answer) -> Reply {
    let s = x.s.clone();
    later(x, async move {
        match cluster::op(&s, &key, op, &ORIGIN).await {
            Ok(o) => shape(o),
            Err(e) => failed(e),
        }
    })
}

pub fn outcome(o: Outcome) -> Answer {
    match o {
        Outcome::Done => Answer::Ok,
        Outcome::Skipped | Outcome::Value(None) => Answer::Null,
        Outcome::Value(Some(v)) => Answer::Bulk(v),
        Outcome::Int(n) => Answer::Int(n),
        Outcome::Reply(f) => Answer::Frame(f),
    }
}

/// 1 when the set happened, 0 when its condition did not hold (`SETNX`).
pub fn done_as_int(o: Outcome) -> Answer {
    Answer::Int(i64::from(o == Outcome::Done))
}

/// Per-key calls of a multi-key command that run at once (forwarded reads to one owner still
/// coalesce; a command naming 100,000 remote keys does not open 100,000 requests).
pub const KEY_CONCURRENCY: usize = 64;

/// Runs `calls`, at most [`KEY_CONCURRENCY`] at a time; their answers in order, or the first
/// error (every call still runs: a write is not taken back).
pub async fn bounded<T, F: Future<Output = Result<T, ClusterError>>>(
    calls: impl Iterator<Item = F>,
) -> Result<Vec<T>, ClusterError> {
    use futures_util::StreamExt;
    futures_util::stream::iter(calls)
        .buffered(KEY_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// A read that owns what it needs (so that many can run from one task).
pub fn read_owned(
    s: &SharedNode,
    k: Bytes,
) -> impl Future<Output = Result<Option<Bytes>, ClusterError>> + Send + 'static {
    let s = s.clone();
    async move { cluster::read(&s, &k, false).await }
}

/// The answer to a multi-key read that would pass [`max_reply`].
pub fn reply_too_large(limit: usize) -> String {
    format!("ERR the answer would be larger than {limit} bytes: ask for fewer keys at once")
}

/// Largest answer one command builds (a GET of the largest value always fits).
pub fn max_reply(s: &SharedNode) -> usize {
    usize::try_from(s.max_value_size)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 10)
        .max(MAX_REPLY)
}

/// Answers of one command are built whole before they are written: this bounds them.
pub const MAX_REPLY: usize = 64 << 20;

/// Longest TTL accepted (10 years), as over HTTP.
pub const MAX_TTL_MS: i64 = 10 * 365 * 86_400_000;

pub fn invalid_expire(x: &mut Exec<'_>, cmd: &str) -> Reply {
    fail(x, &format!("ERR invalid expire time in '{cmd}' command"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_errors_read_as_redis_errors() {
        assert_eq!(
            error_text(&ClusterError::Op(OpError::NotInteger)),
            NOT_INTEGER
        );
        let owner = ClusterError::from_owner(400, br#"{"error":"x","code":"overflow"}"#);
        assert!(error_text(&owner).starts_with("ERR increment or decrement would overflow"));
        assert!(error_text(&ClusterError::NoRing).starts_with("TRYAGAIN "));
        let full = ClusterError::Engine(crate::engine::EngineError::Full { used: 1, max: 1 });
        assert!(error_text(&full).starts_with("OOM "));
    }
}
