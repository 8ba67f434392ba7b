//! The commands of DESIGN.md "Redis protocol (RESP)": parsed from argument slices, run through
//! the same cluster paths as HTTP (`cluster::read`, `cluster::write`, `cluster::op`), answered
//! in Redis's forms. A command whose answer is known at once is written straight into the
//! output; one that waits on a peer becomes a future the connection answers in order.

use super::reply;
use crate::cluster::keyspace::{self, Action, Answer as KsAnswer, Query};
use crate::cluster::node::SharedNode;
use crate::cluster::{self, ClusterError, Cond, Expiry, KeyOp, OpError, Origin, Outcome, When};
use crate::commands::{CmdError, Frame, db};
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use ringcache_common::protocol::ErrorCode;
use ringcache_ring::MAX_KEY_LEN;
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

    fn text(&self, i: usize) -> String {
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
fn later(x: &mut Exec<'_>, fut: impl Future<Output = Answer> + Send + 'static) -> Reply {
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

/// A command of the table: name (upper case), Redis arity (n: exactly n arguments with the
/// name; -n: at least n), where its keys are, whether it writes, and its handler.
pub struct Spec {
    pub name: &'static str,
    arity: i32,
    keys: Keys,
    pub writes: bool,
    run: fn(&mut Exec<'_>, &Args<'_>) -> Reply,
}

/// Key positions: none, one at 1, every argument from 1, or every other from 1 (`MSET`); or
/// every key of a database (`DBSIZE`, `SCAN`, `FLUSHDB`, …), no argument being one.
#[derive(Clone, Copy)]
enum Keys {
    None,
    First,
    All,
    Pairs,
    Keyspace,
    /// A count at 1, then that many keys (`ZUNION 2 a b …`).
    Counted,
    /// A timeout at 1, a count at 2, then that many keys (`BLMPOP 0 2 a b LEFT`).
    CountedAfterTimeout,
    /// Every argument but the last (`BLPOP a b 0`).
    AllButLast,
}

impl Spec {
    /// Whether the command reads or writes the whole keyspace: a pipeline runs it after every
    /// command before it and every command after it waits for it.
    pub fn spans_keyspace(&self) -> bool {
        matches!(self.keys, Keys::Keyspace)
    }

    /// The keys `args` names (for ordering a pipeline), by index.
    pub fn key_indexes(&self, args: &Args<'_>) -> impl Iterator<Item = usize> + use<> {
        let n = args.len();
        let (first, step, last) = match self.keys {
            Keys::None | Keys::Keyspace => (1, 1, 0),
            Keys::First => (1, 1, 1.min(n.saturating_sub(1))),
            Keys::All => (1, 1, n.saturating_sub(1)),
            Keys::Pairs => (1, 2, n.saturating_sub(1)),
            // A count that is not one names no key; the command refuses it.
            Keys::Counted | Keys::CountedAfterTimeout => {
                let at = if matches!(self.keys, Keys::Counted) {
                    1
                } else {
                    2
                };
                match (n > at).then(|| integer(args.get(at))).flatten() {
                    Some(k) if k > 0 => (at + 1, 1, (at + k as usize).min(n.saturating_sub(1))),
                    _ => (1, 1, 0),
                }
            }
            Keys::AllButLast => (1, 1, n.saturating_sub(2)),
        };
        (first..=last).step_by(step)
    }
}

/// What a command runs with.
pub struct Exec<'a> {
    pub s: &'a SharedNode,
    pub conn: &'a mut Conn,
    pub out: &'a mut Vec<u8>,
}

macro_rules! spec {
    ($name:literal, $arity:expr, $keys:ident, $writes:expr, $run:expr) => {
        Spec {
            name: $name,
            arity: $arity,
            keys: Keys::$keys,
            writes: $writes,
            run: $run,
        }
    };
}

/// Sorted by name (looked up by binary search).
static COMMANDS: &[Spec] = &[
    spec!("APPEND", 3, First, true, append),
    spec!("AUTH", -2, None, false, auth),
    spec!("BLMPOP", -5, CountedAfterTimeout, true, blocking),
    spec!("BLPOP", -3, AllButLast, true, blocking),
    spec!("BRPOP", -3, AllButLast, true, blocking),
    spec!("BZMPOP", -5, CountedAfterTimeout, true, blocking),
    spec!("BZPOPMAX", -3, AllButLast, true, blocking),
    spec!("BZPOPMIN", -3, AllButLast, true, blocking),
    spec!("CLIENT", -2, None, false, client),
    spec!("COMMAND", -1, None, false, command),
    spec!("CONFIG", -2, None, false, config),
    spec!("DBSIZE", 1, Keyspace, false, dbsize),
    spec!("DECR", 2, First, true, |x, a| incr_by(x, a, Some(-1))),
    spec!("DECRBY", 3, First, true, decr_by),
    spec!("DEL", -2, All, true, del),
    spec!("ECHO", 2, None, false, echo),
    spec!("EXISTS", -2, All, false, exists),
    spec!("EXPIRE", -3, First, true, |x, a| expire(x, a, 1_000, false)),
    spec!("EXPIREAT", -3, First, true, |x, a| expire(
        x, a, 1_000, true
    )),
    spec!("EXPIRETIME", 2, First, false, |x, a| deadline(x, a, 1_000)),
    spec!("FLUSHALL", -1, Keyspace, true, flush),
    spec!("FLUSHDB", -1, Keyspace, true, flush),
    spec!("GET", 2, First, false, get),
    spec!("GETDEL", 2, First, true, getdel),
    spec!("GETEX", -2, First, true, getex),
    spec!("HELLO", -1, None, false, hello),
    spec!("INCR", 2, First, true, |x, a| incr_by(x, a, Some(1))),
    spec!("INCRBY", 3, First, true, |x, a| incr_by(x, a, None)),
    spec!("INFO", -1, None, false, info),
    spec!("KEYS", 2, Keyspace, false, keys),
    spec!("LMPOP", -4, Counted, true, blocking),
    spec!("MGET", -2, All, false, mget),
    spec!("MSET", -3, Pairs, true, mset),
    spec!("PERSIST", 2, First, true, persist),
    spec!("PEXPIRE", -3, First, true, |x, a| expire(x, a, 1, false)),
    spec!("PEXPIREAT", -3, First, true, |x, a| expire(x, a, 1, true)),
    spec!("PEXPIRETIME", 2, First, false, |x, a| deadline(x, a, 1)),
    spec!("PING", -1, None, false, ping),
    spec!("PSETEX", 4, First, true, |x, a| set_ex(x, a, 1)),
    spec!("PTTL", 2, First, false, |x, a| ttl(x, a, false)),
    spec!("QUIT", -1, None, false, quit),
    spec!("RANDOMKEY", 1, Keyspace, false, randomkey),
    spec!("SCAN", -2, Keyspace, false, scan),
    spec!("SDIFF", -2, All, false, multikey),
    spec!("SELECT", 2, None, false, select),
    spec!("SET", -3, First, true, set),
    spec!("SETEX", 4, First, true, |x, a| set_ex(x, a, 1_000)),
    spec!("SETNX", 3, First, true, setnx),
    spec!("SINTER", -2, All, false, multikey),
    spec!("SINTERCARD", -3, Counted, false, multikey),
    spec!("STRLEN", 2, First, false, strlen),
    spec!("SUNION", -2, All, false, multikey),
    spec!("TIME", 1, None, false, time),
    spec!("TTL", 2, First, false, |x, a| ttl(x, a, true)),
    spec!("UNLINK", -2, All, true, del),
    spec!("ZDIFF", -3, Counted, false, multikey),
    spec!("ZINTER", -3, Counted, false, multikey),
    spec!("ZINTERCARD", -3, Counted, false, multikey),
    spec!("ZMPOP", -4, Counted, true, blocking),
    spec!("ZUNION", -3, Counted, false, multikey),
];

const GET: usize = position("GET");
const SET: usize = position("SET");

/// Where `name` is in [`COMMANDS`] (at compile time; a missing name fails the build).
const fn position(name: &str) -> usize {
    let mut i = 0;
    while i < COMMANDS.len() {
        let c = COMMANDS[i].name.as_bytes();
        let n = name.as_bytes();
        if c.len() == n.len() {
            let mut j = 0;
            while j < c.len() && c[j] == n[j] {
                j += 1;
            }
            if j == c.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("command not in the table")
}

/// A typed command's table entry (`commands::DEFS`): its one key at 1, run by [`typed`].
const fn typed_spec(d: &crate::commands::Def) -> Spec {
    Spec {
        name: d.name,
        arity: d.arity,
        keys: Keys::First,
        writes: d.writes,
        run: typed,
    }
}

const TYPED_LEN: usize = crate::commands::DEFS.len();

/// The hash, set, sorted-set and list commands, sorted by name as `commands::DEFS` is.
static TYPED: [Spec; TYPED_LEN] = {
    const NONE: Spec = Spec {
        name: "",
        arity: 0,
        keys: Keys::None,
        writes: false,
        run: typed,
    };
    let mut out = [NONE; TYPED_LEN];
    let mut i = 0;
    while i < TYPED_LEN {
        out[i] = typed_spec(&crate::commands::DEFS[i]);
        i += 1;
    }
    out
};

/// Most keys (or key-value pairs' parts) one command may name.
pub const MAX_KEYS: usize = 100_000;

/// Commands that need no `AUTH` first.
const BEFORE_AUTH: [&str; 3] = ["AUTH", "HELLO", "QUIT"];

/// The command named `name` (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    // The two commands of nearly every pipeline, without the search.
    if name.len() == 3 {
        if name.eq_ignore_ascii_case(b"GET") {
            return Some(&COMMANDS[GET]);
        }
        if name.eq_ignore_ascii_case(b"SET") {
            return Some(&COMMANDS[SET]);
        }
    }
    let mut upper = [0u8; 16];
    if name.len() > upper.len() {
        return None;
    }
    for (u, b) in upper.iter_mut().zip(name) {
        *u = b.to_ascii_uppercase();
    }
    let name = &upper[..name.len()];
    let find = |table: &'static [Spec]| {
        table
            .binary_search_by(|c| c.name.as_bytes().cmp(name))
            .ok()
            .map(|i| &table[i])
    };
    find(COMMANDS).or_else(|| find(&TYPED))
}

/// Every command's name, for `COMMAND`.
pub fn names() -> impl Iterator<Item = &'static str> {
    COMMANDS.iter().chain(TYPED.iter()).map(|c| c.name)
}

/// Runs the command in `args` (at least one argument).
pub fn execute(x: &mut Exec<'_>, spec: Option<&'static Spec>, args: &Args<'_>) -> Reply {
    x.s.metrics.resp_commands.fetch_add(1, Ordering::Relaxed);
    let Some(spec) = spec else {
        let mut msg = format!(
            "ERR unknown command '{}', with args beginning with:",
            args.text(0)
        );
        for i in 1..args.len().min(4) {
            msg.push_str(&format!(" '{}'", args.text(i)));
        }
        return fail(x, &msg);
    };
    if !x.conn.authed && !BEFORE_AUTH.contains(&spec.name) {
        return fail(x, "NOAUTH Authentication required.");
    }
    let n = args.len() as i32;
    if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
        return wrong_arity(x, spec.name);
    }
    if args.len() > MAX_KEYS + 1 {
        return fail(
            x,
            &format!(
                "ERR {} arguments: at most {MAX_KEYS} keys in one command",
                args.len() - 1
            ),
        );
    }
    let mut plain = true;
    for i in spec.key_indexes(args) {
        let k = args.get(i);
        plain &= db::is_plain(x.conn.db, k);
        let max = if db::is_plain(x.conn.db, k) {
            MAX_KEY_LEN
        } else {
            MAX_KEY_LEN - db::OVERHEAD
        };
        if k.is_empty() || k.len() > max {
            return fail(
                x,
                &format!(
                    "ERR key of {} bytes: keys are 1 to {max} bytes{}",
                    k.len(),
                    if x.conn.db == 0 {
                        ""
                    } else {
                        " in a database other than 0"
                    }
                ),
            );
        }
    }
    if plain {
        return (spec.run)(x, args);
    }
    // Keys of another database carry it (`commands::db`): the command runs on a copy of its
    // arguments with the keys rewritten.
    let mut keyed = vec![false; args.len()];
    for i in spec.key_indexes(args) {
        keyed[i] = true;
    }
    let mut buf = Vec::new();
    let mut ranges = Vec::with_capacity(args.len());
    for (i, is_key) in keyed.iter().enumerate() {
        let start = buf.len();
        if *is_key {
            buf.extend_from_slice(&db::stored(x.conn.db, args.get(i)));
        } else {
            buf.extend_from_slice(args.get(i));
        }
        ranges.push((start, buf.len()));
    }
    (spec.run)(
        x,
        &Args {
            buf: &buf,
            ranges: &ranges,
        },
    )
}

fn fail(x: &mut Exec<'_>, msg: &str) -> Reply {
    x.s.metrics.resp_errors.fetch_add(1, Ordering::Relaxed);
    reply::error(x.out, msg);
    Reply::Now
}

fn wrong_arity(x: &mut Exec<'_>, name: &str) -> Reply {
    fail(
        x,
        &format!(
            "ERR wrong number of arguments for '{}' command",
            name.to_ascii_lowercase()
        ),
    )
}

fn syntax(x: &mut Exec<'_>) -> Reply {
    fail(x, "ERR syntax error")
}

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

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

fn failed(e: ClusterError) -> Answer {
    Answer::Err(error_text(&e))
}

/// An integer argument as Redis reads one (no sign but `-`, no leading zeros or spaces).
fn integer(v: &[u8]) -> Option<i64> {
    crate::commands::as_integer(v)
}

fn key(args: &Args<'_>, i: usize) -> Bytes {
    Bytes::copy_from_slice(args.get(i))
}

/// Refuses a value argument over `maxValueSize` (the parser refuses what is longer than
/// both it and the longest key, so this is for nodes configured below 250 bytes).
fn check_values(
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

/// A plain write of `value`: HTTP's `PUT`, which any write owner coordinates.
async fn write(
    s: SharedNode,
    k: Bytes,
    value: Bytes,
    ttl_ms: Option<u64>,
) -> Result<(), ClusterError> {
    // A write is forwarded as HTTP's `PUT /v1/keys/{key}`, whose key is UTF-8 text; a binary
    // key (any key of a database other than 0) goes as an op instead, which carries any bytes.
    if std::str::from_utf8(&k).is_err() {
        let expiry = match ttl_ms {
            Some(ms) => Expiry::At(s.clock.now_ms().saturating_add(ms)),
            None => Expiry::Clear,
        };
        let op = KeyOp::Set {
            value,
            expiry,
            cond: Cond::Always,
            get: false,
        };
        return cluster::op(&s, &k, op, &ORIGIN).await.map(|_| ());
    }
    let w = cluster::Write {
        value: Some(value),
        ttl_ms,
    };
    cluster::write(&s, &k, w, &ORIGIN).await
}

/// [`write`], answered `+OK`.
async fn put(s: SharedNode, k: Bytes, value: Bytes, ttl_ms: Option<u64>) -> Answer {
    match write(s, k, value, ttl_ms).await {
        Ok(()) => Answer::Ok,
        Err(e) => failed(e),
    }
}

/// Commands arrive from clients: they may be forwarded.
const ORIGIN: Origin = Origin { forwarded: false };

fn run_op(x: &mut Exec<'_>, key: Bytes, op: KeyOp, shape: fn(Outcome) -> Answer) -> Reply {
    let s = x.s.clone();
    later(x, async move {
        match cluster::op(&s, &key, op, &ORIGIN).await {
            Ok(o) => shape(o),
            Err(e) => failed(e),
        }
    })
}

fn outcome(o: Outcome) -> Answer {
    match o {
        Outcome::Done => Answer::Ok,
        Outcome::Skipped | Outcome::Value(None) => Answer::Null,
        Outcome::Value(Some(v)) => Answer::Bulk(v),
        Outcome::Int(n) => Answer::Int(n),
        Outcome::Reply(f) => Answer::Frame(f),
    }
}

/// A pop from the first non-empty of several keys, blocking or not (`resp/blocking.rs`).
fn blocking(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let argv: Vec<Bytes> = (0..args.len()).map(|i| key(args, i)).collect();
    let s = x.s.clone();
    let alive = x.conn.alive.clone();
    later(x, async move {
        match super::blocking::run(s, argv, alive).await {
            Ok(f) => Answer::Frame(f),
            Err(super::multikey::Failure::Cluster(e)) => failed(e),
            Err(super::multikey::Failure::Command(e)) => Answer::Err(e.to_string()),
        }
    })
}

/// A command that reads several keys (`SINTER`, `ZUNION`, …: `resp/multikey.rs`).
fn multikey(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let argv: Vec<Bytes> = (0..args.len()).map(|i| key(args, i)).collect();
    let s = x.s.clone();
    later(x, async move {
        match super::multikey::run(s, argv).await {
            Ok(f) => Answer::Frame(f),
            Err(super::multikey::Failure::Cluster(e)) => failed(e),
            Err(super::multikey::Failure::Command(e)) => Answer::Err(e.to_string()),
        }
    })
}

/// A hash, set, sorted-set or list command: run on the key's first serving owner under the
/// key's lock (`KeyOp::Cmd`), its change replicated like any write.
fn typed(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let argv: Vec<Bytes> = (0..args.len()).map(|i| key(args, i)).collect();
    run_op(x, key(args, 1), KeyOp::Cmd { args: argv }, outcome)
}

/// 1 when the set happened, 0 when its condition did not hold (`SETNX`).
fn done_as_int(o: Outcome) -> Answer {
    Answer::Int(i64::from(o == Outcome::Done))
}

// ---------------------------------------------------------------------------------------------
// Strings.

fn get(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let k = args.get(1);
    let s = x.s;
    // Fast path, as HTTP's: a partition served here is answered straight from the store.
    let p = s.engine.partition_of(k);
    if s.ring.serves_read_locally(p) {
        let out = &mut *x.out;
        match s
            .engine
            .get_in(p, k, s.clock.now_ms(), |v| reply::bulk(out, v))
        {
            Ok(Some(())) => {}
            Ok(None) => reply::null(out, x.conn.resp3),
            Err(_) => return fail(x, WRONGTYPE),
        }
        return Reply::Now;
    }
    let (s, k) = (s.clone(), key(args, 1));
    later(x, async move {
        match cluster::read(&s, &k, false).await {
            Ok(Some(v)) => Answer::Bulk(v),
            Ok(None) => Answer::Null,
            Err(e) => failed(e),
        }
    })
}

/// Longest TTL accepted (10 years), as over HTTP.
const MAX_TTL_MS: i64 = 10 * 365 * 86_400_000;

/// An expiry argument `n` in `unit_ms` units, relative (`EX`, `PX`) or absolute (`EXAT`,
/// `PXAT`), as an absolute Unix ms; `None` when out of range.
fn expiry_at(n: i64, unit_ms: i64, absolute: bool, now: u64) -> Option<u64> {
    let ms = n.checked_mul(unit_ms)?;
    if ms <= 0 {
        return None;
    }
    if absolute {
        return u64::try_from(ms).ok();
    }
    if ms > MAX_TTL_MS {
        return None;
    }
    Some(now.saturating_add(ms as u64))
}

fn invalid_expire(x: &mut Exec<'_>, cmd: &str) -> Reply {
    fail(x, &format!("ERR invalid expire time in '{cmd}' command"))
}

fn set(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let now = x.s.clock.now_ms();
    let (mut expiry, mut cond, mut get, mut relative_ms) =
        (Expiry::Clear, Cond::Always, false, None);
    let mut i = 3;
    while i < args.len() {
        let opt = args.get(i).to_ascii_uppercase();
        match opt.as_slice() {
            b"NX" | b"XX" if cond == Cond::Always => {
                cond = if opt == b"NX" {
                    Cond::IfAbsent
                } else {
                    Cond::IfPresent
                };
            }
            b"GET" if !get => get = true,
            b"KEEPTTL" if expiry == Expiry::Clear => expiry = Expiry::Keep,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if expiry == Expiry::Clear && i + 1 < args.len() => {
                let Some(n) = integer(args.get(i + 1)) else {
                    return fail(x, NOT_INTEGER);
                };
                let unit = if opt[0] == b'E' { 1_000 } else { 1 };
                let absolute = opt.len() == 4;
                let Some(at) = expiry_at(n, unit, absolute, now) else {
                    return invalid_expire(x, "set");
                };
                if !absolute {
                    relative_ms = Some(at - now);
                }
                expiry = Expiry::At(at);
                i += 1;
            }
            _ => return syntax(x),
        }
        i += 1;
    }
    if let Err(r) = check_values(x, args, [2].into_iter()) {
        return r;
    }
    let value = key(args, 2);
    let k = key(args, 1);
    let plain = cond == Cond::Always && !get && (expiry == Expiry::Clear || relative_ms.is_some());
    if plain {
        return later(x, put(x.s.clone(), k, value, relative_ms));
    }
    let op = KeyOp::Set {
        value,
        expiry,
        cond,
        get,
    };
    run_op(x, k, op, outcome)
}

fn set_ex(x: &mut Exec<'_>, args: &Args<'_>, unit_ms: i64) -> Reply {
    let now = x.s.clock.now_ms();
    let Some(n) = integer(args.get(2)) else {
        return fail(x, NOT_INTEGER);
    };
    let name = if unit_ms == 1 { "psetex" } else { "setex" };
    let Some(at) = expiry_at(n, unit_ms, false, now) else {
        return invalid_expire(x, name);
    };
    if let Err(r) = check_values(x, args, [3].into_iter()) {
        return r;
    }
    let (s, k, value) = (x.s.clone(), key(args, 1), key(args, 3));
    later(x, put(s, k, value, Some(at - now)))
}

fn setnx(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    if let Err(r) = check_values(x, args, [2].into_iter()) {
        return r;
    }
    let op = KeyOp::Set {
        value: key(args, 2),
        expiry: Expiry::Clear,
        cond: Cond::IfAbsent,
        get: false,
    };
    run_op(x, key(args, 1), op, done_as_int)
}

fn getdel(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    run_op(x, key(args, 1), KeyOp::Delete { get: true }, outcome)
}

fn getex(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let now = x.s.clock.now_ms();
    let expiry = match args.len() {
        2 => return get(x, args),
        3 if args.get(2).eq_ignore_ascii_case(b"PERSIST") => Expiry::Clear,
        4 => {
            let opt = args.get(2).to_ascii_uppercase();
            let (unit, absolute) = match opt.as_slice() {
                b"EX" => (1_000, false),
                b"PX" => (1, false),
                b"EXAT" => (1_000, true),
                b"PXAT" => (1, true),
                _ => return syntax(x),
            };
            let Some(n) = integer(args.get(3)) else {
                return fail(x, NOT_INTEGER);
            };
            match expiry_at(n, unit, absolute, now) {
                Some(at) => Expiry::At(at),
                None => return invalid_expire(x, "getex"),
            }
        }
        _ => return syntax(x),
    };
    run_op(x, key(args, 1), KeyOp::GetEx { expiry }, outcome)
}

/// Per-key calls of a multi-key command that run at once (forwarded reads to one owner still
/// coalesce; a command naming 100,000 remote keys does not open 100,000 requests).
const KEY_CONCURRENCY: usize = 64;

/// Runs `calls`, at most [`KEY_CONCURRENCY`] at a time; their answers in order, or the first
/// error (every call still runs: a write is not taken back).
async fn bounded<T, F: Future<Output = Result<T, ClusterError>>>(
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
fn read_owned(
    s: &SharedNode,
    k: Bytes,
) -> impl Future<Output = Result<Option<Bytes>, ClusterError>> + Send + 'static {
    let s = s.clone();
    async move { cluster::read(&s, &k, false).await }
}

/// The answer to a multi-key read that would pass [`max_reply`].
fn reply_too_large(limit: usize) -> String {
    format!("ERR the answer would be larger than {limit} bytes: ask for fewer keys at once")
}

/// Largest answer one command builds (a GET of the largest value always fits).
fn max_reply(s: &SharedNode) -> usize {
    usize::try_from(s.max_value_size)
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 10)
        .max(MAX_REPLY)
}

/// Answers of one command are built whole before they are written: this bounds them.
const MAX_REPLY: usize = 64 << 20;

fn mget(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let s = x.s;
    let limit = max_reply(s);
    let local = (1..args.len()).all(|i| {
        s.ring
            .serves_read_locally(s.engine.partition_of(args.get(i)))
    });
    if local {
        let now = s.clock.now_ms();
        let start = x.out.len();
        reply::array(x.out, args.len() - 1);
        for i in 1..args.len() {
            let out = &mut *x.out;
            let k = args.get(i);
            // A collection is nil to `MGET`, as in Redis.
            if !matches!(
                s.engine
                    .get_in(s.engine.partition_of(k), k, now, |v| reply::bulk(out, v)),
                Ok(Some(()))
            ) {
                reply::null(out, x.conn.resp3);
            }
            if x.out.len() - start > limit {
                x.out.truncate(start);
                return fail(x, &reply_too_large(limit));
            }
        }
        return Reply::Now;
    }
    let s = s.clone();
    let keys: Vec<Bytes> = (1..args.len()).map(|i| key(args, i)).collect();
    later(x, async move {
        match bounded(keys.into_iter().map(|k| read_owned(&s, k))).await {
            Ok(values) if values.iter().flatten().map(Bytes::len).sum::<usize>() > limit => {
                Answer::Err(reply_too_large(limit))
            }
            Ok(values) => Answer::Values(values),
            Err(e) => failed(e),
        }
    })
}

fn mset(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    if args.len().is_multiple_of(2) {
        return wrong_arity(x, "MSET");
    }
    if let Err(r) = check_values(x, args, (2..args.len()).step_by(2)) {
        return r;
    }
    let s = x.s.clone();
    // A key named twice gets its last value, as in Redis (the writes of one command run
    // concurrently, so the earlier one could otherwise land last).
    let mut last: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    for i in (1..args.len()).step_by(2) {
        last.insert(args.get(i), i);
    }
    let mut firsts: Vec<usize> = last.into_values().collect();
    firsts.sort_unstable();
    let keys: Vec<Bytes> = firsts.iter().map(|&i| key(args, i)).collect();
    let values: Vec<Bytes> = firsts.iter().map(|&i| key(args, i + 1)).collect();
    later(x, async move {
        let writes = keys
            .into_iter()
            .zip(values)
            .map(|(k, v)| write(s.clone(), k, v, None));
        match bounded(writes).await {
            Ok(_) => Answer::Ok,
            Err(e) => failed(e),
        }
    })
}

fn incr_by(x: &mut Exec<'_>, args: &Args<'_>, by: Option<i64>) -> Reply {
    let by = match by {
        Some(b) => b,
        None => match integer(args.get(2)) {
            Some(b) => b,
            None => return fail(x, NOT_INTEGER),
        },
    };
    run_op(x, key(args, 1), KeyOp::IncrBy { by }, outcome)
}

fn decr_by(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    match integer(args.get(2)).map(i64::checked_neg) {
        Some(Some(by)) => run_op(x, key(args, 1), KeyOp::IncrBy { by }, outcome),
        Some(None) => fail(x, "ERR decrement would overflow"),
        None => fail(x, NOT_INTEGER),
    }
}

fn append(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let op = KeyOp::Append {
        value: key(args, 2),
    };
    run_op(x, key(args, 1), op, outcome)
}

fn strlen(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    read_shaped(x, args, |v| Answer::Int(v.map_or(0, |v| v.len() as i64)))
}

/// A read of the key at 1, answered by `shape`.
fn read_shaped(x: &mut Exec<'_>, args: &Args<'_>, shape: fn(Option<Bytes>) -> Answer) -> Reply {
    let (s, k) = (x.s.clone(), key(args, 1));
    later(x, async move {
        match cluster::read(&s, &k, false).await {
            Ok(v) => shape(v),
            Err(e) => failed(e),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Keys.

fn del(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let s = x.s.clone();
    let keys: Vec<Bytes> = (1..args.len()).map(|i| key(args, i)).collect();
    later(x, async move {
        let dels = keys.into_iter().map(|k| {
            let s = s.clone();
            async move { cluster::op(&s, &k, KeyOp::Delete { get: false }, &ORIGIN).await }
        });
        match bounded(dels).await {
            Ok(outcomes) => Answer::Int(
                outcomes
                    .iter()
                    .map(|o| if let Outcome::Int(d) = o { *d } else { 0 })
                    .sum(),
            ),
            Err(e) => failed(e),
        }
    })
}

fn exists(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let s = x.s.clone();
    let keys: Vec<Bytes> = (1..args.len()).map(|i| key(args, i)).collect();
    later(x, async move {
        // Any kind counts: asked of each key's owner, as `TYPE` is.
        let kinds = keys.into_iter().map(|k| {
            let s = s.clone();
            let args = vec![Bytes::from_static(b"TYPE"), k.clone()];
            async move { cluster::op(&s, &k, KeyOp::Cmd { args }, &ORIGIN).await }
        });
        match bounded(kinds).await {
            Ok(kinds) => Answer::Int(
                kinds
                    .iter()
                    .filter(|o| !matches!(o, Outcome::Reply(Frame::Simple(t)) if t == "none"))
                    .count() as i64,
            ),
            Err(e) => failed(e),
        }
    })
}

fn expire(x: &mut Exec<'_>, args: &Args<'_>, unit_ms: i64, absolute: bool) -> Reply {
    let when = match args.len() {
        3 => When::Always,
        4 => match args.get(3).to_ascii_uppercase().as_slice() {
            b"NX" => When::NoExpiry,
            b"XX" => When::HasExpiry,
            b"GT" => When::Later,
            b"LT" => When::Earlier,
            _ => return fail(x, &format!("ERR Unsupported option {}", args.text(3))),
        },
        _ => {
            return fail(
                x,
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            );
        }
    };
    let Some(n) = integer(args.get(2)) else {
        return fail(x, NOT_INTEGER);
    };
    let now = x.s.clock.now_ms();
    let Some(ms) = n.checked_mul(unit_ms) else {
        return invalid_expire(x, "expire");
    };
    // Zero or negative (or an instant passed): the key is deleted, as Redis does; 1 is the
    // earliest instant (0 would mean "never").
    let at = if absolute {
        u64::try_from(ms).unwrap_or(0)
    } else {
        if ms > MAX_TTL_MS {
            return invalid_expire(x, "expire");
        }
        now.saturating_add_signed(ms)
    }
    .max(1);
    run_op(
        x,
        key(args, 1),
        KeyOp::Expire {
            expiry: Expiry::At(at),
            when,
        },
        outcome,
    )
}

/// `EXPIRETIME`/`PEXPIRETIME`: the key's expiry as a Unix time in `unit_ms` units.
fn deadline(x: &mut Exec<'_>, args: &Args<'_>, unit_ms: i64) -> Reply {
    let shape: fn(Outcome) -> Answer = if unit_ms == 1 {
        outcome
    } else {
        |o| match o {
            Outcome::Int(ms) if ms >= 0 => Answer::Int(ms / 1000),
            o => outcome(o),
        }
    };
    run_op(x, key(args, 1), KeyOp::Deadline, shape)
}

fn persist(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    run_op(
        x,
        key(args, 1),
        KeyOp::Expire {
            expiry: Expiry::Clear,
            when: When::Always,
        },
        outcome,
    )
}

fn ttl(x: &mut Exec<'_>, args: &Args<'_>, seconds: bool) -> Reply {
    let shape: fn(Outcome) -> Answer = if seconds {
        |o| match o {
            Outcome::Int(ms) if ms >= 0 => Answer::Int((ms + 500) / 1000),
            o => outcome(o),
        }
    } else {
        outcome
    };
    run_op(x, key(args, 1), KeyOp::Ttl, shape)
}

// ---------------------------------------------------------------------------------------------
// Connection and server.

fn ping(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    match args.len() {
        1 => reply::simple(x.out, "PONG"),
        2 => reply::bulk(x.out, args.get(1)),
        _ => return wrong_arity(x, "PING"),
    }
    Reply::Now
}

fn echo(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    reply::bulk(x.out, args.get(1));
    Reply::Now
}

fn quit(x: &mut Exec<'_>, _args: &Args<'_>) -> Reply {
    x.conn.quit = true;
    reply::ok(x.out);
    Reply::Now
}

fn select(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    match integer(args.get(1)) {
        Some(n) if (0..i64::from(x.s.databases)).contains(&n) => {
            x.conn.db = n as u8;
            reply::ok(x.out);
            Reply::Now
        }
        Some(_) => fail(x, "ERR DB index is out of range"),
        None => fail(x, NOT_INTEGER),
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `AUTH [user] token`: the user, when given, must be `default` (there are no others).
fn check_auth(x: &mut Exec<'_>, user: Option<&[u8]>, token: &[u8]) -> Result<(), Reply> {
    let Some(expected) = x.s.auth_token.as_deref() else {
        return Err(fail(
            x,
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        ));
    };
    let user_ok = user.is_none_or(|u| u == b"default");
    if user_ok && same(token, expected.as_bytes()) {
        x.conn.authed = true;
        Ok(())
    } else {
        Err(fail(
            x,
            "WRONGPASS invalid username-password pair or user is disabled.",
        ))
    }
}

fn auth(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let r = match args.len() {
        2 => check_auth(x, None, args.get(1)),
        3 => check_auth(x, Some(args.get(1)), args.get(2)),
        _ => return syntax(x),
    };
    match r {
        Ok(()) => {
            reply::ok(x.out);
            Reply::Now
        }
        Err(r) => r,
    }
}

fn hello(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let mut proto = if x.conn.resp3 { 3 } else { 2 };
    let mut i = 1;
    if args.len() > 1 {
        match integer(args.get(1)) {
            Some(v @ (2 | 3)) => proto = v,
            Some(_) => return fail(x, "NOPROTO unsupported protocol version"),
            None => return fail(x, "ERR Protocol version is not an integer or out of range"),
        }
        i = 2;
    }
    while i < args.len() {
        let opt = args.get(i).to_ascii_uppercase();
        match opt.as_slice() {
            b"AUTH" if i + 2 < args.len() => {
                if let Err(r) = check_auth(x, Some(args.get(i + 1)), args.get(i + 2)) {
                    return r;
                }
                i += 3;
            }
            b"SETNAME" if i + 1 < args.len() => {
                x.conn.name = Some(args.text(i + 1));
                i += 2;
            }
            _ => return syntax(x),
        }
    }
    if !x.conn.authed {
        return fail(
            x,
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    x.conn.resp3 = proto == 3;
    let out = &mut *x.out;
    reply::map(out, 7, x.conn.resp3);
    reply::bulk(out, b"server");
    reply::bulk(out, b"ringcache");
    reply::bulk(out, b"version");
    reply::bulk(out, env!("CARGO_PKG_VERSION").as_bytes());
    reply::bulk(out, b"proto");
    reply::int(out, proto);
    reply::bulk(out, b"id");
    reply::int(out, x.conn.id as i64);
    reply::bulk(out, b"mode");
    reply::bulk(out, b"standalone");
    reply::bulk(out, b"role");
    reply::bulk(out, b"master");
    reply::bulk(out, b"modules");
    reply::array(out, 0);
    Reply::Now
}

fn client(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let sub = args.get(1).to_ascii_uppercase();
    match (sub.as_slice(), args.len()) {
        (b"SETNAME", 3) => {
            x.conn.name = Some(args.text(2));
            reply::ok(x.out);
        }
        (b"GETNAME", 2) => match &x.conn.name {
            Some(n) => reply::bulk(x.out, n.as_bytes()),
            None => reply::null(x.out, x.conn.resp3),
        },
        (b"SETINFO", 4) => reply::ok(x.out),
        (b"ID", 2) => reply::int(x.out, x.conn.id as i64),
        (b"SETNAME" | b"GETNAME" | b"SETINFO" | b"ID", _) => {
            return fail(
                x,
                &format!(
                    "ERR wrong number of arguments for 'client|{}' command",
                    args.text(1).to_ascii_lowercase()
                ),
            );
        }
        _ => {
            return fail(
                x,
                &format!(
                    "ERR unknown subcommand '{}'. Try CLIENT HELP.",
                    args.text(1)
                ),
            );
        }
    }
    Reply::Now
}

/// Every command of both tables.
fn specs() -> impl Iterator<Item = &'static Spec> {
    COMMANDS.iter().chain(TYPED.iter())
}

/// One `COMMAND INFO` entry, as Redis 7 writes it: name, arity, flags, first key, last key,
/// key step, ACL categories, tips, key specs, subcommands.
fn command_entry(out: &mut Vec<u8>, c: &Spec) {
    let (first, last, step) = match c.keys {
        Keys::None | Keys::Keyspace | Keys::Counted | Keys::CountedAfterTimeout => (0, 0, 0),
        Keys::AllButLast => (1, -2, 1),
        Keys::First => (1, 1, 1),
        Keys::All => (1, -1, 1),
        Keys::Pairs => (1, -1, 2),
    };
    reply::array(out, 10);
    reply::bulk(out, c.name.to_ascii_lowercase().as_bytes());
    reply::int(out, i64::from(c.arity));
    reply::array(out, 1);
    reply::simple(out, if c.writes { "write" } else { "readonly" });
    reply::int(out, first);
    reply::int(out, last);
    reply::int(out, step);
    for _ in 0..4 {
        reply::array(out, 0);
    }
}

/// `COMMAND`, `COMMAND COUNT|LIST|INFO name…|DOCS|GETKEYS cmd args…`: what clients read to
/// learn the table and where a command's keys are.
fn command(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let sub = if args.len() > 1 {
        args.get(1).to_ascii_uppercase()
    } else {
        Vec::new()
    };
    match sub.as_slice() {
        b"" => {
            reply::array(x.out, specs().count());
            for c in specs() {
                command_entry(x.out, c);
            }
        }
        b"COUNT" => reply::int(x.out, specs().count() as i64),
        b"LIST" => {
            reply::array(x.out, specs().count());
            for c in specs() {
                reply::bulk(x.out, c.name.to_ascii_lowercase().as_bytes());
            }
        }
        b"INFO" => {
            reply::array(x.out, args.len() - 2);
            for i in 2..args.len() {
                match lookup(args.get(i)) {
                    Some(c) => command_entry(x.out, c),
                    None => reply::null(x.out, x.conn.resp3),
                }
            }
        }
        b"DOCS" => reply::map(x.out, 0, x.conn.resp3),
        b"GETKEYS" if args.len() > 2 => {
            let Some(c) = lookup(args.get(2)) else {
                return fail(x, "ERR Invalid command specified");
            };
            let n = args.len() - 2;
            if (c.arity > 0 && n as i32 != c.arity) || (c.arity < 0 && (n as i32) < -c.arity) {
                return fail(x, "ERR Invalid number of arguments specified for command");
            }
            let inner = Args {
                buf: args.buf,
                ranges: &args.ranges[2..],
            };
            let at: Vec<usize> = c.key_indexes(&inner).collect();
            if at.is_empty() {
                return fail(x, "ERR The command has no key arguments");
            }
            reply::array(x.out, at.len());
            for i in at {
                reply::bulk(x.out, args.get(i + 2));
            }
        }
        _ => {
            return fail(
                x,
                &format!(
                    "ERR unknown subcommand or wrong number of arguments for '{}'. Try COMMAND HELP.",
                    args.text(1)
                ),
            );
        }
    }
    Reply::Now
}

/// Runs a keyspace query over the cluster, answered by `shape`.
fn over_keyspace(
    x: &mut Exec<'_>,
    q: Query,
    shape: impl FnOnce(KsAnswer) -> Answer + Send + 'static,
) -> Reply {
    let s = x.s.clone();
    later(x, async move {
        match keyspace::gather(&s, q).await {
            Ok(a) => shape(a),
            Err(e) => failed(e),
        }
    })
}

/// A query of `partitions` in database `db` (None: every database).
fn query(partitions: Vec<u32>, action: Action, db: Option<u8>) -> Query {
    Query {
        partitions,
        action,
        pattern: None,
        kind: None,
        db,
    }
}

fn keys_frame(keys: Vec<Bytes>) -> Frame {
    Frame::Array(keys.into_iter().map(Frame::Bulk).collect())
}

/// `DBSIZE`: the keys of the cluster, each counted once (not once per replica).
fn dbsize(x: &mut Exec<'_>, _args: &Args<'_>) -> Reply {
    let q = query(keyspace::all(x.s), Action::Count, Some(x.conn.db));
    over_keyspace(x, q, |a| Answer::Int(a.count as i64))
}

/// `KEYS pattern`: every matching key of the cluster.
fn keys(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let mut q = query(keyspace::all(x.s), Action::Keys, Some(x.conn.db));
    q.pattern = Some(key(args, 1));
    let limit = max_reply(x.s);
    over_keyspace(x, q, move |a| {
        if a.keys.iter().map(|k| k.len() + 16).sum::<usize>() > limit {
            return Answer::Err(reply_too_large(limit));
        }
        Answer::Frame(keys_frame(a.keys))
    })
}

/// `FLUSHDB`/`FLUSHALL [ASYNC|SYNC]`: deletes every key of the database (`FLUSHALL`: of every
/// database) through the write path (replicated tombstones), answered once every partition's
/// owner has done so.
fn flush(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    match args.len() {
        1 => {}
        2 if args.get(1).eq_ignore_ascii_case(b"ASYNC")
            || args.get(1).eq_ignore_ascii_case(b"SYNC") => {}
        _ => return syntax(x),
    }
    // FLUSHDB empties the selected database, FLUSHALL every one.
    let db = args
        .get(0)
        .eq_ignore_ascii_case(b"FLUSHDB")
        .then_some(x.conn.db);
    let q = query(keyspace::all(x.s), Action::Flush, db);
    over_keyspace(x, q, |_| Answer::Ok)
}

/// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`: the cursor is the next partition to list, so it
/// stays valid while the cluster scales. A call lists `COUNT` partitions, then twice as many,
/// … until it has `COUNT` keys or reached the last partition (a small keyspace is answered in
/// one call with cursor 0, as Redis answers it).
fn scan(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let Some(cursor) = std::str::from_utf8(args.get(1))
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
    else {
        return fail(x, "ERR invalid cursor");
    };
    let total = x.s.engine.partitions();
    let mut q = query(Vec::new(), Action::Keys, Some(x.conn.db));
    let mut count = 10u64;
    let mut i = 2;
    while i < args.len() {
        if i + 1 >= args.len() {
            return syntax(x);
        }
        let (o, v) = (args.get(i), args.get(i + 1));
        if o.eq_ignore_ascii_case(b"MATCH") {
            q.pattern = Some(key(args, i + 1));
        } else if o.eq_ignore_ascii_case(b"COUNT") {
            match integer(v) {
                Some(n) if n >= 1 => count = n as u64,
                Some(_) => return syntax(x),
                None => return fail(x, NOT_INTEGER),
            }
        } else if o.eq_ignore_ascii_case(b"TYPE") {
            q.kind = Some(args.text(i + 1));
        } else {
            return syntax(x);
        }
        i += 2;
    }
    let s = x.s.clone();
    later(x, async move {
        let mut at = cursor.min(u64::from(total)) as u32;
        let mut step = count.min(u64::from(total)).max(1) as u32;
        let mut keys = Vec::new();
        while at < total && (keys.len() as u64) < count {
            let end = at.saturating_add(step).min(total);
            q.partitions = (at..end).collect();
            match keyspace::gather(&s, q.clone()).await {
                Ok(a) => keys.extend(a.keys),
                Err(e) => return failed(e),
            }
            at = end;
            step = step.saturating_mul(2);
        }
        let next = if at >= total { 0 } else { at };
        Answer::Frame(Frame::Array(vec![
            Frame::Bulk(Bytes::from(next.to_string())),
            keys_frame(keys),
        ]))
    })
}

/// `RANDOMKEY`: a key of a partition picked at random (the next ones when it is empty).
fn randomkey(x: &mut Exec<'_>, _args: &Args<'_>) -> Reply {
    let s = x.s.clone();
    let db = x.conn.db;
    let total = s.engine.partitions();
    let start = (s.clock.now_ms() as u32).wrapping_mul(2_654_435_761) % total.max(1);
    later(x, async move {
        // A few partitions per call: an empty cluster is scanned whole, a full one answered
        // from the first chunk.
        const CHUNK: u32 = 16;
        let mut done = 0;
        while done < total {
            let parts = (done..(done + CHUNK).min(total))
                .map(|i| (start + i) % total)
                .collect();
            match keyspace::gather(&s, query(parts, Action::Keys, Some(db))).await {
                Ok(a) if !a.keys.is_empty() => {
                    let pick = (s.clock.now_ms() as usize) % a.keys.len();
                    return Answer::Bulk(a.keys[pick].clone());
                }
                Ok(_) => done += CHUNK,
                Err(e) => return failed(e),
            }
        }
        Answer::Null
    })
}

/// `TIME`: this node's clock, seconds and microseconds (what clients use to compute
/// `EXPIREAT` times and rate windows).
fn time(x: &mut Exec<'_>, _args: &Args<'_>) -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs().to_string();
    let micros = now.subsec_micros().to_string();
    reply::array(x.out, 2);
    reply::bulk(x.out, secs.as_bytes());
    reply::bulk(x.out, micros.as_bytes());
    Reply::Now
}

/// `CONFIG GET pattern …` (a map of the matching settings); `SET`, `REWRITE` and `RESETSTAT`
/// are refused: the node is configured by its flags.
fn config(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let sub = args.get(1).to_ascii_uppercase();
    match sub.as_slice() {
        b"GET" if args.len() > 2 => {
            let found = super::config::get(x.s, (2..args.len()).map(|i| args.get(i)));
            reply::map(x.out, found.len(), x.conn.resp3);
            for (k, v) in found {
                reply::bulk(x.out, k.as_bytes());
                reply::bulk(x.out, v.as_bytes());
            }
            Reply::Now
        }
        b"GET" => wrong_arity(x, "CONFIG|GET"),
        b"SET" | b"REWRITE" | b"RESETSTAT" => fail(
            x,
            &format!(
                "ERR CONFIG {} is not supported: ringcache is configured by its flags (or the CacheCluster), see its --help",
                args.text(1).to_ascii_uppercase()
            ),
        ),
        _ => fail(
            x,
            &format!(
                "ERR unknown subcommand '{}'. Try CONFIG HELP.",
                args.text(1)
            ),
        ),
    }
}

fn info(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let wanted: Vec<String> = (1..args.len())
        .map(|i| args.text(i).to_ascii_lowercase())
        .collect();
    let text = super::info::render(x.s, &wanted);
    reply::text(x.out, &text, x.conn.resp3);
    Reply::Now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_every_name_is_found_in_any_case() {
        assert!(COMMANDS.windows(2).all(|w| w[0].name < w[1].name));
        for c in COMMANDS {
            assert!(c.name.len() <= 16);
            assert_eq!(
                lookup(c.name.to_ascii_lowercase().as_bytes()).map(|s| s.name),
                Some(c.name)
            );
        }
        assert!(lookup(b"NOSUCHCOMMAND").is_none());
        assert_eq!((COMMANDS[GET].name, COMMANDS[SET].name), ("GET", "SET"));
        assert!(lookup(b"AVERYLONGCOMMANDNAME").is_none());
    }

    #[test]
    fn key_positions() {
        let idx = |line: &str| {
            let words: Vec<&str> = line.split(' ').collect();
            let buf = words.concat().into_bytes();
            let mut ranges = Vec::new();
            let mut at = 0;
            for w in &words {
                ranges.push((at, at + w.len()));
                at += w.len();
            }
            let args = Args {
                buf: &buf,
                ranges: &ranges,
            };
            lookup(words[0].as_bytes())
                .unwrap()
                .key_indexes(&args)
                .collect::<Vec<_>>()
        };
        assert_eq!(idx("GET k"), [1]);
        assert_eq!(idx("SET k v EX 1"), [1]);
        assert_eq!(idx("MGET a b c"), [1, 2, 3]);
        assert_eq!(idx("MSET a 1 b 2"), [1, 3]);
        assert!(idx("PING x").is_empty());
        assert_eq!(idx("ZUNION 2 a b WEIGHTS 1 2"), [2, 3]);
        assert_eq!(idx("ZUNION 9 a b"), [2, 3], "clamped to the arguments");
        assert!(idx("ZUNION x a").is_empty());
    }

    #[test]
    fn expiry_arguments() {
        assert_eq!(expiry_at(10, 1_000, false, 5), Some(10_005));
        assert_eq!(expiry_at(0, 1_000, false, 5), None);
        assert_eq!(expiry_at(-1, 1, false, 5), None);
        assert_eq!(expiry_at(i64::MAX, 1_000, false, 5), None);
        assert_eq!(expiry_at(MAX_TTL_MS + 1, 1, false, 5), None);
        assert_eq!(expiry_at(7, 1_000, true, 5), Some(7_000));
    }

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
