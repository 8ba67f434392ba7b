//! The Redis commands on typed values (hash, set, sorted set, list), one module per family, as
//! pure functions: the command's arguments and what the key holds in, the change and the
//! answer out. They run on the key's first serving owner under the key's lock
//! (`cluster::ops`, `KeyOp::Cmd`), and their change is replicated like any write, so nothing
//! here knows about nodes, the network or the protocol version.

pub mod algebra;
pub mod db;
pub mod frame;
pub mod glob;
mod hash;
mod list;
mod set;
mod string;
mod util;
pub use util::as_integer;
mod zset;

use crate::engine::update::{Change, Current};
use crate::engine::value::Corrupt;
use bytes::Bytes;
pub use frame::Frame;
use serde::{Deserialize, Serialize};

/// What a typed command decided: the change to the key and its answer (or error).
pub type Decision = Change<Result<Frame, CmdError>>;

/// A command refused for its arguments or for what the key holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CmdError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// Redis's own error text, `ERR …` included.
    #[error("{0}")]
    Reply(String),
    #[error("ERR {0}")]
    Corrupt(String),
}

impl From<Corrupt> for CmdError {
    fn from(c: Corrupt) -> CmdError {
        CmdError::Corrupt(c.to_string())
    }
}

impl CmdError {
    pub fn syntax() -> CmdError {
        CmdError::Reply("ERR syntax error".into())
    }

    pub fn not_integer() -> CmdError {
        CmdError::Reply("ERR value is not an integer or out of range".into())
    }

    pub fn not_float() -> CmdError {
        CmdError::Reply("ERR value is not a valid float".into())
    }

    fn arity(name: &str) -> CmdError {
        CmdError::Reply(format!(
            "ERR wrong number of arguments for '{}' command",
            name.to_ascii_lowercase()
        ))
    }
}

/// What a command runs with besides its arguments.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub now_ms: u64,
    /// Largest element (or string) in bytes (`--max-value-size`).
    pub max_value_size: u64,
    /// Most encoded bytes one collection holds (`--max-collection-size`).
    pub max_collection: u64,
    /// For the commands that pick at random (`SPOP`, `SRANDMEMBER`, `HRANDFIELD`, …).
    pub seed: u64,
}

/// A typed command's table entry: name (upper case), Redis arity, whether it can write.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub arity: i32,
    pub writes: bool,
}

const fn def(name: &'static str, arity: i32, writes: bool) -> Def {
    Def {
        name,
        arity,
        writes,
    }
}

/// The module a command belongs to, by its name (`TYPE` reads any kind).
fn family(name: &str) -> Family {
    match name.as_bytes()[0] {
        _ if name == "TYPE" => Family::Key,
        _ if matches!(
            name,
            "GETSET"
                | "GETRANGE"
                | "SUBSTR"
                | "SETRANGE"
                | "INCRBYFLOAT"
                | "GETBIT"
                | "SETBIT"
                | "BITCOUNT"
                | "BITPOS"
        ) =>
        {
            Family::String
        }
        b'H' => Family::Hash,
        b'L' | b'R' => Family::List,
        b'S' => Family::Set,
        _ => Family::ZSet,
    }
}

enum Family {
    Key,
    String,
    Hash,
    List,
    Set,
    ZSet,
}

/// Every command run by [`run`] (each takes its one key at argument 1).
pub const DEFS: &[Def] = &[
    def("BITCOUNT", -2, false),
    def("BITPOS", -3, false),
    def("GETBIT", 3, false),
    def("GETRANGE", 4, false),
    def("GETSET", 3, true),
    def("HDEL", -3, true),
    def("HEXISTS", 3, false),
    def("HGET", 3, false),
    def("HGETALL", 2, false),
    def("HINCRBY", 4, true),
    def("HINCRBYFLOAT", 4, true),
    def("HKEYS", 2, false),
    def("HLEN", 2, false),
    def("HMGET", -3, false),
    def("HMSET", -4, true),
    def("HRANDFIELD", -2, false),
    def("HSCAN", -3, false),
    def("HSET", -4, true),
    def("HSETNX", 4, true),
    def("HSTRLEN", 3, false),
    def("HVALS", 2, false),
    def("INCRBYFLOAT", 3, true),
    def("LINDEX", 3, false),
    def("LINSERT", 5, true),
    def("LLEN", 2, false),
    def("LPOP", -2, true),
    def("LPOS", -3, false),
    def("LPUSH", -3, true),
    def("LPUSHX", -3, true),
    def("LRANGE", 4, false),
    def("LREM", 4, true),
    def("LSET", 4, true),
    def("LTRIM", 4, true),
    def("RPOP", -2, true),
    def("RPUSH", -3, true),
    def("RPUSHX", -3, true),
    def("SADD", -3, true),
    def("SCARD", 2, false),
    def("SETBIT", 4, true),
    def("SETRANGE", 4, true),
    def("SISMEMBER", 3, false),
    def("SMEMBERS", 2, false),
    def("SMISMEMBER", -3, false),
    def("SPOP", -2, true),
    def("SRANDMEMBER", -2, false),
    def("SREM", -3, true),
    def("SSCAN", -3, false),
    def("SUBSTR", 4, false),
    def("TYPE", 2, false),
    def("ZADD", -4, true),
    def("ZCARD", 2, false),
    def("ZCOUNT", 4, false),
    def("ZINCRBY", 4, true),
    def("ZLEXCOUNT", 4, false),
    def("ZMSCORE", -3, false),
    def("ZPOPMAX", -2, true),
    def("ZPOPMIN", -2, true),
    def("ZRANDMEMBER", -2, false),
    def("ZRANGE", -4, false),
    def("ZRANGEBYLEX", -4, false),
    def("ZRANGEBYSCORE", -4, false),
    def("ZRANK", -3, false),
    def("ZREM", -3, true),
    def("ZREMRANGEBYLEX", 4, true),
    def("ZREMRANGEBYRANK", 4, true),
    def("ZREMRANGEBYSCORE", 4, true),
    def("ZREVRANGE", -4, false),
    def("ZREVRANGEBYLEX", -4, false),
    def("ZREVRANGEBYSCORE", -4, false),
    def("ZREVRANK", -3, false),
    def("ZSCAN", -3, false),
    def("ZSCORE", 3, false),
];

/// The entry of the typed command `name` (upper case).
pub fn def_of(name: &str) -> Option<&'static Def> {
    DEFS.binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &DEFS[i])
}

/// Runs the typed command `args` (`args[0]` its name, `args[1]` its key) on what the key holds.
pub fn run(args: &[Bytes], cur: Option<Current<'_>>, ctx: &Ctx) -> Decision {
    let name = String::from_utf8_lossy(args.first().map_or(&[][..], |a| &a[..])).to_uppercase();
    let Some(d) = def_of(&name) else {
        return Change::Keep(Err(CmdError::Reply(format!(
            "ERR unknown command '{name}'"
        ))));
    };
    let n = args.len() as i32;
    if (d.arity > 0 && n != d.arity) || (d.arity < 0 && n < -d.arity) {
        return Change::Keep(Err(CmdError::arity(d.name)));
    }
    let a = &args[2..];
    match family(d.name) {
        Family::Key => Change::Keep(Ok(Frame::Simple(
            cur.map_or("none", |c| c.kind.name()).to_string(),
        ))),
        Family::String => string::run(d.name, a, cur, ctx),
        Family::Hash => hash::run(d.name, a, cur, ctx),
        Family::List => list::run(d.name, a, cur, ctx),
        Family::Set => set::run(d.name, a, cur, ctx),
        Family::ZSet => zset::run(d.name, a, cur, ctx),
    }
}

#[cfg(test)]
mod tests;
