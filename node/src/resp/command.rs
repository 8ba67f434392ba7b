//! The command table of DESIGN.md "Redis protocol (RESP)": every command's name, arity, key
//! positions and whether it writes, and the dispatch (`execute`: arity, authentication, key
//! bounds, the selected database). The commands live by family: strings (`strings`), keys and
//! the keyspace (`keys`), connection and server (`server`), the typed families (`commands::*`,
//! run as `KeyOp::Cmd`), several keys (`multikey`), blocking pops (`blocking`); what they share
//! is `exec`.

use super::exec::*;
use super::keys::*;
use super::reply;
use super::server::*;
use super::strings::*;
use crate::cluster::KeyOp;
use crate::commands::db;
use bytes::Bytes;
use ringcache_ring::MAX_KEY_LEN;
use std::sync::atomic::Ordering;

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
        let key_plain = db::is_plain(x.conn.db, k);
        plain &= key_plain;
        let max = if key_plain {
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
}
