//! Key operations that read what they change (conditional sets, counters, appends, expiry
//! changes, deletes that report what they removed): decided on one owner under the key's lock
//! ([`run_local`]), then replicated like any write. The Redis front's `SET NX|XX|GET|KEEPTTL`,
//! `GETDEL`, `GETEX`, `INCR*`, `APPEND`, `EXPIRE*`, `PERSIST`, `TTL` and counted `DEL` are these.
//!
//! They travel between nodes as JSON (`POST /internal/v1/op`), values in base64.

use crate::commands::{self, CmdError, Ctx, Frame};
use crate::engine::update::{Change, Current};
use crate::engine::{Engine, EngineError, Kind, Record};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What becomes of the key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Expiry {
    /// Unchanged (`KEEPTTL`; counters and appends).
    Keep,
    /// No expiry (`PERSIST`; a plain `SET`).
    Clear,
    /// At this Unix millisecond (relative TTLs are made absolute where the command arrived).
    At(u64),
}

/// When an `EXPIRE` happens (`NX`, `XX`, `GT`, `LT`; no expiry counts as infinite).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum When {
    #[default]
    Always,
    /// Only a key without an expiry.
    NoExpiry,
    /// Only a key with an expiry.
    HasExpiry,
    /// Only when the new expiry is later.
    Later,
    /// Only when the new expiry is earlier.
    Earlier,
}

impl When {
    /// Whether an expiry `current` (0: none) may become `new` (0: none).
    fn allows(self, current: u64, new: u64) -> bool {
        let inf = |t: u64| if t == 0 { u64::MAX } else { t };
        match self {
            When::Always => true,
            When::NoExpiry => current == 0,
            When::HasExpiry => current != 0,
            When::Later => inf(new) > inf(current),
            When::Earlier => inf(new) < inf(current),
        }
    }
}

/// When a set happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Cond {
    Always,
    /// `NX`
    IfAbsent,
    /// `XX`
    IfPresent,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum KeyOp {
    /// Stores `value` when `cond` holds; with `get`, answers the previous value.
    Set {
        #[serde(with = "crate::serde_b64")]
        value: Bytes,
        expiry: Expiry,
        cond: Cond,
        get: bool,
    },
    /// Deletes; answers 1/0 (existed), or with `get` the value it held.
    Delete { get: bool },
    /// Answers the value and changes its expiry (`Keep`: a plain read).
    GetEx { expiry: Expiry },
    /// Adds `by` to the integer the key holds (absent: 0), keeping its expiry.
    IncrBy { by: i64 },
    /// Appends, keeping the expiry; answers the new length.
    Append {
        #[serde(with = "crate::serde_b64")]
        value: Bytes,
    },
    /// Sets (`At`, in the past: deletes) or clears the expiry when `when` holds; answers 1
    /// when the key changed.
    Expire {
        expiry: Expiry,
        #[serde(default)]
        when: When,
    },
    /// The key's expiry as a Unix ms: -2 absent, -1 no expiry (`PEXPIRETIME`).
    Deadline,
    /// Waits up to `within_ms` (at most [`super::waiters::SLICE`]) until the key holds a list
    /// or sorted set; answers 1 when it does, 0 at the end of the wait. Changes nothing.
    WaitFilled { within_ms: u64 },
    /// Milliseconds the key has left: -2 absent, -1 no expiry.
    Ttl,
    /// A command on a typed value (hash, set, sorted set, list): `args[0]` its name,
    /// `args[1]` the key ([`commands::run`]).
    Cmd {
        #[serde(with = "crate::serde_b64::list")]
        args: Vec<Bytes>,
    },
}

impl KeyOp {
    /// Whether the op can change the key (a read-only op needs no replication).
    pub fn writes(&self) -> bool {
        match self {
            KeyOp::Ttl
            | KeyOp::Deadline
            | KeyOp::WaitFilled { .. }
            | KeyOp::GetEx {
                expiry: Expiry::Keep,
            } => false,
            KeyOp::Cmd { args } => args.first().is_none_or(|name| {
                commands::def_of(&String::from_utf8_lossy(name).to_ascii_uppercase())
                    .is_none_or(|d| d.writes)
            }),
            _ => true,
        }
    }
}

/// An op's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The set happened.
    Done,
    /// The set's condition did not hold: nothing written.
    Skipped,
    Value(#[serde(with = "crate::serde_b64::opt")] Option<Bytes>),
    Int(i64),
    /// A typed command's answer.
    Reply(Frame),
}

/// An op refused for what the key holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// A string command on a collection.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// A typed command refused (its text is Redis's, `ERR …`/`WRONGTYPE …` included).
    #[error(transparent)]
    Command(CmdError),
    #[error("value is not an integer or out of range")]
    NotInteger,
    #[error("increment or decrement would overflow")]
    Overflow,
    #[error("the result would be {size} bytes, the maximum value size is {max}")]
    ValueTooLarge { size: u64, max: u64 },
}

/// What an op run here produced: its answer and the record to replicate, if it wrote.
pub type Ran = (Outcome, Option<Record>);

/// Runs `op` on this node's store, atomically with the read it depends on.
pub fn run_local(
    engine: &Engine,
    key: &[u8],
    op: &KeyOp,
    now_ms: u64,
    limits: Limits,
) -> Result<Result<Ran, OpError>, EngineError> {
    let (answer, rec) = match op {
        KeyOp::Cmd { args } => {
            let ctx = Ctx {
                now_ms,
                max_value_size: limits.max_value_size,
                max_collection: limits.max_collection,
                seed: pick_seed(key, now_ms),
            };
            let (r, rec) = engine.update(key, now_ms, |cur| commands::run(args, cur, &ctx))?;
            (r.map(Outcome::Reply).map_err(OpError::Command), rec)
        }
        _ => engine.update(key, now_ms, |cur| {
            decide(op, cur, now_ms, limits.max_value_size)
        })?,
    };
    Ok(answer.map(|a| (a, rec)))
}

/// The bounds ops run under (`--max-value-size`, `--max-collection-size`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_value_size: u64,
    /// Encoded bytes of one collection.
    pub max_collection: u64,
}

/// A seed for the commands that pick at random: differs between calls, so repeated
/// `SPOP`s do not pick the same member.
fn pick_seed(key: &[u8], now_ms: u64) -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    xxhash_rust::xxh3::xxh3_64_with_seed(key, now_ms ^ n.rotate_left(32))
}

fn copy(c: &Current<'_>) -> Bytes {
    Bytes::copy_from_slice(c.value)
}

/// The string a key holds; a collection is `WRONGTYPE`.
fn string<'a>(cur: Option<Current<'a>>) -> Result<Option<Current<'a>>, OpError> {
    match cur {
        Some(c) if c.kind != Kind::String => Err(OpError::WrongType),
        c => Ok(c),
    }
}

/// The expiry after `e`, for a key whose current expiry is `current` (0 = none).
fn expiry_after(e: Expiry, current: u64) -> u64 {
    match e {
        Expiry::Keep => current,
        Expiry::Clear => 0,
        Expiry::At(t) => t,
    }
}

fn decide(
    op: &KeyOp,
    cur: Option<Current<'_>>,
    now_ms: u64,
    max_value_size: u64,
) -> Change<Result<Outcome, OpError>> {
    let past = |t: u64| t != 0 && t <= now_ms;
    match op {
        KeyOp::Set {
            value,
            expiry,
            cond,
            get,
        } => {
            if *get && let Err(e) = string(cur) {
                return Change::Keep(Err(e));
            }
            let met = match cond {
                Cond::Always => true,
                Cond::IfAbsent => cur.is_none(),
                Cond::IfPresent => cur.is_some(),
            };
            let answer = Ok(match (get, met) {
                (true, _) => Outcome::Value(cur.as_ref().map(copy)),
                (false, true) => Outcome::Done,
                (false, false) => Outcome::Skipped,
            });
            let expires_at = expiry_after(*expiry, cur.map_or(0, |c| c.expires_at));
            match (met, cur) {
                (false, _) => Change::Keep(answer),
                // Already expired when set (an `EXAT` in the past): what remains is a delete.
                (true, Some(_)) if past(expires_at) => Change::Remove(answer),
                (true, None) if past(expires_at) => Change::Keep(answer),
                (true, _) => Change::Put {
                    kind: Kind::String,
                    value: value.clone(),
                    expires_at,
                    answer,
                },
            }
        }
        KeyOp::Delete { get: true } if string(cur).is_err() => {
            Change::Keep(Err(OpError::WrongType))
        }
        KeyOp::Delete { get } => match cur {
            None => Change::Keep(Ok(if *get {
                Outcome::Value(None)
            } else {
                Outcome::Int(0)
            })),
            Some(c) => Change::Remove(Ok(if *get {
                Outcome::Value(Some(copy(&c)))
            } else {
                Outcome::Int(1)
            })),
        },
        KeyOp::GetEx { expiry } => {
            let cur = match string(cur) {
                Ok(c) => c,
                Err(e) => return Change::Keep(Err(e)),
            };
            let Some(c) = cur else {
                return Change::Keep(Ok(Outcome::Value(None)));
            };
            let answer = Ok(Outcome::Value(Some(copy(&c))));
            let expires_at = expiry_after(*expiry, c.expires_at);
            if expires_at == c.expires_at {
                Change::Keep(answer)
            } else if past(expires_at) {
                Change::Remove(answer)
            } else {
                Change::Put {
                    kind: Kind::String,
                    value: copy(&c),
                    expires_at,
                    answer,
                }
            }
        }
        KeyOp::IncrBy { by } => {
            let cur = match string(cur) {
                Ok(c) => c,
                Err(e) => return Change::Keep(Err(e)),
            };
            let n = match cur {
                None => 0,
                Some(c) => match commands::as_integer(c.value) {
                    Some(n) => n,
                    None => return Change::Keep(Err(OpError::NotInteger)),
                },
            };
            let Some(n) = n.checked_add(*by) else {
                return Change::Keep(Err(OpError::Overflow));
            };
            Change::Put {
                kind: Kind::String,
                value: Bytes::from(n.to_string()),
                expires_at: cur.map_or(0, |c| c.expires_at),
                answer: Ok(Outcome::Int(n)),
            }
        }
        KeyOp::Append { value } => {
            let cur = match string(cur) {
                Ok(c) => c,
                Err(e) => return Change::Keep(Err(e)),
            };
            let old = cur.map_or(&[][..], |c| c.value);
            let size = (old.len() + value.len()) as u64;
            if size > max_value_size {
                return Change::Keep(Err(OpError::ValueTooLarge {
                    size,
                    max: max_value_size,
                }));
            }
            let mut joined = Vec::with_capacity(size as usize);
            joined.extend_from_slice(old);
            joined.extend_from_slice(value);
            Change::Put {
                kind: Kind::String,
                value: Bytes::from(joined),
                expires_at: cur.map_or(0, |c| c.expires_at),
                answer: Ok(Outcome::Int(size as i64)),
            }
        }
        KeyOp::Expire { expiry, when } => {
            let Some(c) = cur else {
                return Change::Keep(Ok(Outcome::Int(0)));
            };
            let expires_at = expiry_after(*expiry, c.expires_at);
            if !when.allows(c.expires_at, expires_at) {
                return Change::Keep(Ok(Outcome::Int(0)));
            }
            match expiry {
                Expiry::Keep => Change::Keep(Ok(Outcome::Int(0))),
                Expiry::Clear if c.expires_at == 0 => Change::Keep(Ok(Outcome::Int(0))),
                _ if past(expires_at) => Change::Remove(Ok(Outcome::Int(1))),
                _ => Change::Put {
                    kind: c.kind,
                    value: copy(&c),
                    expires_at,
                    answer: Ok(Outcome::Int(1)),
                },
            }
        }
        KeyOp::Deadline => Change::Keep(Ok(Outcome::Int(match cur {
            None => -2,
            Some(c) if c.expires_at == 0 => -1,
            Some(c) => c.expires_at as i64,
        }))),
        KeyOp::Ttl => Change::Keep(Ok(Outcome::Int(match cur {
            None => -2,
            Some(c) if c.expires_at == 0 => -1,
            Some(c) => c.expires_at.saturating_sub(now_ms) as i64,
        }))),
        // Typed commands run through `commands::run` (see `run_local`); waits through
        // `route::op`, which never decides them here.
        KeyOp::Cmd { .. } | KeyOp::WaitFilled { .. } => Change::Keep(Err(OpError::Command(
            CmdError::Reply("ERR operation outside its path".into()),
        ))),
    }
}

/// Request body of `POST /internal/v1/op`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpRequest {
    #[serde(with = "crate::serde_b64")]
    pub key: Bytes,
    pub op: KeyOp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineConfig, EvictionPolicy};

    const MAX: u64 = 1 << 10;

    const LIMITS: Limits = Limits {
        max_value_size: MAX,
        max_collection: 1_000,
    };

    fn run(e: &Engine, key: &str, op: KeyOp, now: u64) -> Result<Outcome, OpError> {
        run_local(e, key.as_bytes(), &op, now, LIMITS)
            .unwrap()
            .map(|(o, _)| o)
    }

    fn set(value: &str, expiry: Expiry, cond: Cond, get: bool) -> KeyOp {
        KeyOp::Set {
            value: Bytes::copy_from_slice(value.as_bytes()),
            expiry,
            cond,
            get,
        }
    }

    fn val(v: &str) -> Outcome {
        Outcome::Value(Some(Bytes::copy_from_slice(v.as_bytes())))
    }

    fn engine() -> Engine {
        Engine::new(EngineConfig::new(8, 1 << 20, EvictionPolicy::Lru))
    }

    #[test]
    fn conditional_sets_follow_redis() {
        let e = engine();
        let r = |op| run(&e, "k", op, 1_000);
        assert_eq!(
            r(set("a", Expiry::Clear, Cond::IfPresent, false)),
            Ok(Outcome::Skipped)
        );
        assert_eq!(
            r(set("a", Expiry::Clear, Cond::IfAbsent, false)),
            Ok(Outcome::Done)
        );
        assert_eq!(
            r(set("b", Expiry::Clear, Cond::IfAbsent, false)),
            Ok(Outcome::Skipped)
        );
        assert_eq!(
            r(set("c", Expiry::Clear, Cond::IfPresent, true)),
            Ok(val("a"))
        );
        assert_eq!(
            r(set("d", Expiry::Clear, Cond::IfAbsent, true)),
            Ok(val("c")),
            "NX GET answers the old value"
        );
        assert_eq!(e.get(b"k", 1_000).as_deref(), Some(&b"c"[..]));
        assert_eq!(
            r(set("e", Expiry::At(5_000), Cond::Always, false)),
            Ok(Outcome::Done)
        );
        assert_eq!(
            r(set("f", Expiry::Keep, Cond::Always, false)),
            Ok(Outcome::Done)
        );
        assert_eq!(r(KeyOp::Ttl), Ok(Outcome::Int(4_000)), "KEEPTTL kept it");
        assert_eq!(
            r(set("g", Expiry::Clear, Cond::Always, false)),
            Ok(Outcome::Done)
        );
        assert_eq!(r(KeyOp::Ttl), Ok(Outcome::Int(-1)), "a plain SET clears it");
        assert_eq!(
            r(set("h", Expiry::At(999), Cond::Always, false)),
            Ok(Outcome::Done)
        );
        assert_eq!(e.get(b"k", 1_000), None, "set already expired");
    }

    #[test]
    fn counters_parse_strictly_and_keep_the_ttl() {
        let e = engine();
        let r = |k, op| run(&e, k, op, 1_000);
        assert_eq!(r("n", KeyOp::IncrBy { by: 5 }), Ok(Outcome::Int(5)));
        assert_eq!(r("n", KeyOp::IncrBy { by: -7 }), Ok(Outcome::Int(-2)));
        r(
            "n",
            KeyOp::Expire {
                expiry: Expiry::At(3_000),
                when: When::Always,
            },
        )
        .unwrap();
        assert_eq!(r("n", KeyOp::IncrBy { by: 1 }), Ok(Outcome::Int(-1)));
        assert_eq!(r("n", KeyOp::Ttl), Ok(Outcome::Int(2_000)));
        for bad in ["", " 1", "01", "1.5", "-0", "x", "99999999999999999999"] {
            run(&e, "b", set(bad, Expiry::Clear, Cond::Always, false), 1_000).unwrap();
            assert_eq!(
                r("b", KeyOp::IncrBy { by: 1 }),
                Err(OpError::NotInteger),
                "{bad:?}"
            );
        }
        run(
            &e,
            "m",
            set(&i64::MAX.to_string(), Expiry::Clear, Cond::Always, false),
            1_000,
        )
        .unwrap();
        assert_eq!(r("m", KeyOp::IncrBy { by: 1 }), Err(OpError::Overflow));
        assert_eq!(
            e.get(b"m", 1_000).as_deref(),
            Some(i64::MAX.to_string().as_bytes())
        );
    }

    #[test]
    fn append_delete_getex_and_expire() {
        let e = engine();
        let r = |op| run(&e, "k", op, 1_000);
        let app = |v: &str| KeyOp::Append {
            value: Bytes::copy_from_slice(v.as_bytes()),
        };
        assert_eq!(r(app("ab")), Ok(Outcome::Int(2)));
        assert_eq!(r(app("cd")), Ok(Outcome::Int(4)));
        assert_eq!(
            r(app(&"x".repeat(MAX as usize))),
            Err(OpError::ValueTooLarge {
                size: MAX + 4,
                max: MAX
            })
        );
        assert_eq!(
            r(KeyOp::Expire {
                expiry: Expiry::Clear,
                when: When::Always,
            }),
            Ok(Outcome::Int(0)),
            "PERSIST of no ttl"
        );
        assert_eq!(
            r(KeyOp::GetEx {
                expiry: Expiry::At(2_000)
            }),
            Ok(val("abcd"))
        );
        assert_eq!(r(KeyOp::Ttl), Ok(Outcome::Int(1_000)));
        assert_eq!(
            r(KeyOp::Expire {
                expiry: Expiry::Clear,
                when: When::Always,
            }),
            Ok(Outcome::Int(1))
        );
        assert_eq!(r(KeyOp::Ttl), Ok(Outcome::Int(-1)));
        assert_eq!(r(KeyOp::Delete { get: true }), Ok(val("abcd")));
        assert_eq!(r(KeyOp::Delete { get: false }), Ok(Outcome::Int(0)));
        assert_eq!(r(KeyOp::Ttl), Ok(Outcome::Int(-2)));
        assert_eq!(
            r(KeyOp::Expire {
                expiry: Expiry::At(5_000),
                when: When::Always,
            }),
            Ok(Outcome::Int(0))
        );
        r(app("z")).unwrap();
        assert_eq!(
            r(KeyOp::Expire {
                expiry: Expiry::At(10),
                when: When::Always,
            }),
            Ok(Outcome::Int(1)),
            "past: deleted"
        );
        assert_eq!(e.get(b"k", 1_000), None);
    }

    #[test]
    fn expire_conditions_follow_redis() {
        let e = engine();
        let r = |op| run(&e, "k", op, 1_000);
        let exp = |at: u64, when| KeyOp::Expire {
            expiry: Expiry::At(at),
            when,
        };
        r(set("v", Expiry::Clear, Cond::Always, false)).unwrap();
        assert_eq!(r(exp(9_000, When::HasExpiry)), Ok(Outcome::Int(0)));
        assert_eq!(
            r(exp(9_000, When::Later)),
            Ok(Outcome::Int(0)),
            "no ttl is infinite"
        );
        assert_eq!(r(exp(9_000, When::NoExpiry)), Ok(Outcome::Int(1)));
        assert_eq!(r(exp(8_000, When::NoExpiry)), Ok(Outcome::Int(0)));
        assert_eq!(r(exp(8_000, When::Later)), Ok(Outcome::Int(0)));
        assert_eq!(r(exp(10_000, When::Later)), Ok(Outcome::Int(1)));
        assert_eq!(r(exp(12_000, When::Earlier)), Ok(Outcome::Int(0)));
        assert_eq!(r(exp(5_000, When::Earlier)), Ok(Outcome::Int(1)));
        assert_eq!(r(exp(6_000, When::HasExpiry)), Ok(Outcome::Int(1)));
        assert_eq!(r(KeyOp::Deadline), Ok(Outcome::Int(6_000)));
        assert_eq!(
            run(&e, "none", KeyOp::Deadline, 1_000),
            Ok(Outcome::Int(-2))
        );
    }

    #[test]
    fn only_writes_produce_a_record() {
        let e = engine();
        let rec = |op: KeyOp| run_local(&e, b"k", &op, 1_000, LIMITS).unwrap().unwrap().1;
        assert!(rec(KeyOp::Ttl).is_none());
        assert!(rec(set("v", Expiry::Clear, Cond::Always, false)).is_some());
        assert!(rec(set("w", Expiry::Clear, Cond::IfAbsent, false)).is_none());
        assert!(
            rec(KeyOp::GetEx {
                expiry: Expiry::Keep
            })
            .is_none()
        );
        let del = rec(KeyOp::Delete { get: false }).unwrap();
        assert!(del.is_tombstone());
    }

    #[test]
    fn ops_and_outcomes_survive_the_wire() {
        let ops = [
            set("\u{0}bin", Expiry::At(7), Cond::IfAbsent, true),
            KeyOp::Delete { get: true },
            KeyOp::GetEx {
                expiry: Expiry::Clear,
            },
            KeyOp::IncrBy { by: -3 },
            KeyOp::Append {
                value: Bytes::from_static(&[0xff, 0]),
            },
            KeyOp::Expire {
                expiry: Expiry::Keep,
                when: When::Always,
            },
            KeyOp::Ttl,
        ];
        for op in ops {
            let req = OpRequest {
                key: Bytes::from_static(b"k\xff"),
                op,
            };
            let back: OpRequest =
                serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
            assert_eq!((back.key, back.op), (req.key, req.op));
        }
        for o in [
            Outcome::Done,
            Outcome::Skipped,
            Outcome::Value(None),
            val("x"),
            Outcome::Int(-2),
        ] {
            let back: Outcome = serde_json::from_slice(&serde_json::to_vec(&o).unwrap()).unwrap();
            assert_eq!(back, o);
        }
    }
}
