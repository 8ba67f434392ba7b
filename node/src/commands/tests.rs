//! The families against Redis's documented answers, one key at a time, without a store: a
//! [`Key`] keeps what the last change left and runs the next command on it.

use super::*;
use crate::engine::Kind;
use crate::engine::value;

const CTX: Ctx = Ctx {
    now_ms: 1_000,
    max_value_size: 64,
    max_collection: 4_096,
    seed: 7,
};

#[derive(Default)]
struct Key {
    held: Option<(Kind, Bytes, u64)>,
}

impl Key {
    fn run_with(&mut self, cmd: &str, ctx: &Ctx) -> Result<Frame, CmdError> {
        let args: Vec<Bytes> = cmd
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let cur = self.held.as_ref().map(|(kind, v, exp)| Current {
            kind: *kind,
            value: v,
            expires_at: *exp,
        });
        match run(&args, cur, ctx) {
            Change::Keep(r) => r,
            Change::Remove(r) => {
                self.held = None;
                r
            }
            Change::Put {
                kind,
                value,
                expires_at,
                answer,
            } => {
                value::validate(kind, &value).expect("a change stores a well-formed value");
                self.held = Some((kind, value, expires_at));
                answer
            }
        }
    }

    fn run(&mut self, cmd: &str) -> Result<Frame, CmdError> {
        self.run_with(cmd, &CTX)
    }

    fn ok(&mut self, cmd: &str) -> Frame {
        match self.run(cmd) {
            Ok(f) => f,
            Err(e) => panic!("{cmd}: {e}"),
        }
    }

    fn err(&mut self, cmd: &str) -> String {
        match self.run(cmd) {
            Ok(f) => panic!("{cmd}: answered {f:?}, expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn string(value: &str) -> Key {
        Key {
            held: Some((Kind::String, Bytes::copy_from_slice(value.as_bytes()), 0)),
        }
    }
}

fn bulks(items: &[&str]) -> Frame {
    Frame::Array(items.iter().map(|s| Frame::bulk(s.as_bytes())).collect())
}

fn int(n: i64) -> Frame {
    Frame::Int(n)
}

#[test]
fn the_table_is_sorted_and_every_entry_dispatches() {
    assert!(DEFS.windows(2).all(|w| w[0].name < w[1].name));
    for d in DEFS {
        assert_eq!(def_of(d.name).map(|x| x.name), Some(d.name));
        let mut k = Key::default();
        // Every command answers (a value or Redis's error), never "unknown command".
        let mut cmd = d.name.to_string();
        for _ in 1..d.arity.unsigned_abs() {
            cmd.push_str(" 1");
        }
        if let Err(e) = k.run(&cmd) {
            assert!(!e.to_string().contains("unknown command"), "{cmd}: {e}");
        }
    }
    assert!(def_of("GET").is_none());
}

#[test]
fn hashes_set_get_count_and_delete_like_redis() {
    let mut h = Key::default();
    assert_eq!(h.ok("HSET h f1 v1 f2 v2"), int(2));
    assert_eq!(h.ok("HSET h f1 x f3 v3"), int(1), "only new fields count");
    assert_eq!(h.ok("HGET h f1"), Frame::bulk(b"x"));
    assert_eq!(h.ok("HGET h nope"), Frame::Nil);
    assert_eq!(h.ok("HLEN h"), int(3));
    assert_eq!(h.ok("HSETNX h f1 y"), int(0));
    assert_eq!(h.ok("HMGET h f1 nope f3"), {
        Frame::Array(vec![Frame::bulk(b"x"), Frame::Nil, Frame::bulk(b"v3")])
    });
    assert_eq!(h.ok("HKEYS h"), bulks(&["f1", "f2", "f3"]));
    assert_eq!(h.ok("HINCRBY h n 5"), int(5));
    assert_eq!(h.ok("HINCRBY h n -7"), int(-2));
    assert_eq!(h.err("HINCRBY h f1 1"), "ERR hash value is not an integer");
    assert_eq!(h.ok("HINCRBYFLOAT h fl 10.5"), Frame::bulk(b"10.5"));
    assert_eq!(h.ok("HSTRLEN h f3"), int(2));
    assert_eq!(
        h.err("HSET h odd"),
        "ERR wrong number of arguments for 'hset' command"
    );
    assert_eq!(h.ok("HDEL h f1 f2 f3 n fl nope"), int(5));
    assert!(h.held.is_none(), "an emptied hash is deleted, as in Redis");
    assert_eq!(h.ok("HGETALL h"), Frame::Map(Vec::new()));
}

#[test]
fn sets_keep_members_distinct() {
    let mut s = Key::default();
    assert_eq!(s.ok("SADD s a b a c"), int(3));
    assert_eq!(s.ok("SADD s a"), int(0));
    assert_eq!(s.ok("SCARD s"), int(3));
    assert_eq!(s.ok("SISMEMBER s b"), int(1));
    assert_eq!(s.ok("SMISMEMBER s a z"), Frame::Array(vec![int(1), int(0)]));
    assert_eq!(s.ok("SREM s a z"), int(1));
    let Frame::Bulk(popped) = s.ok("SPOP s") else {
        panic!("SPOP answers a member");
    };
    assert!(popped == "b" || popped == "c");
    assert_eq!(s.ok("SCARD s"), int(1));
    assert_eq!(
        s.err("SPOP s -1"),
        "ERR value is out of range, must be positive"
    );
}

#[test]
fn lists_push_pop_range_and_trim() {
    let mut l = Key::default();
    assert_eq!(l.ok("RPUSH l a b c"), int(3));
    assert_eq!(l.ok("LPUSH l z y"), int(5));
    assert_eq!(l.ok("LRANGE l 0 -1"), bulks(&["y", "z", "a", "b", "c"]));
    assert_eq!(l.ok("LINDEX l -1"), Frame::bulk(b"c"));
    assert_eq!(l.ok("LPOP l"), Frame::bulk(b"y"));
    assert_eq!(l.ok("RPOP l 2"), bulks(&["c", "b"]));
    assert_eq!(l.ok("LLEN l"), int(2));
    assert_eq!(l.ok("LSET l 0 Z"), Frame::Ok);
    assert_eq!(l.err("LSET l 9 Z"), "ERR index out of range");
    assert_eq!(l.ok("LTRIM l 1 -1"), Frame::Ok);
    assert_eq!(l.ok("LRANGE l 0 -1"), bulks(&["a"]));
    assert_eq!(l.ok("RPUSHX l x"), int(2));
    let mut none = Key::default();
    assert_eq!(none.ok("LPUSHX l x"), int(0));
    assert_eq!(none.ok("LPOP l 2"), Frame::NilArray);
}

#[test]
fn sorted_sets_order_by_score_then_member() {
    let mut z = Key::default();
    assert_eq!(z.ok("ZADD z 1 a 2 b 2 aa -1.5 m"), int(4));
    assert_eq!(z.ok("ZRANGE z 0 -1"), bulks(&["m", "a", "aa", "b"]));
    assert_eq!(z.ok("ZSCORE z m"), Frame::Double(-1.5));
    assert_eq!(z.ok("ZADD z XX CH 5 a 9 nope"), int(1));
    assert_eq!(z.ok("ZADD z NX 0 a"), int(0));
    assert_eq!(z.ok("ZADD z GT 1 a"), int(0), "GT keeps the higher score");
    assert_eq!(z.ok("ZSCORE z a"), Frame::Double(5.0));
    assert_eq!(z.ok("ZADD z INCR 2.5 a"), Frame::Double(7.5));
    assert_eq!(z.ok("ZINCRBY z -10 b"), Frame::Double(-8.0));
    assert_eq!(z.ok("ZRANK z b"), int(0));
    assert_eq!(z.ok("ZREVRANK z b"), int(3));
    assert_eq!(z.ok("ZCOUNT z (-1.5 +inf"), int(2));
    assert_eq!(z.ok("ZRANGEBYSCORE z -inf 2 LIMIT 1 1"), bulks(&["m"]));
    assert_eq!(
        z.ok("ZRANGE z 10 -10 BYSCORE REV WITHSCORES"),
        Frame::Pairs(vec![
            (Frame::bulk(b"a"), Frame::Double(7.5)),
            (Frame::bulk(b"aa"), Frame::Double(2.0)),
            (Frame::bulk(b"m"), Frame::Double(-1.5)),
            (Frame::bulk(b"b"), Frame::Double(-8.0)),
        ])
    );
    assert_eq!(z.ok("ZREVRANGE z 0 0"), bulks(&["a"]));
    assert_eq!(
        z.ok("ZPOPMIN z"),
        Frame::Array(vec![Frame::bulk(b"b"), Frame::Double(-8.0)])
    );
    assert_eq!(z.ok("ZREMRANGEBYSCORE z 2 2"), int(1));
    assert_eq!(z.ok("ZCARD z"), int(2));
    assert_eq!(
        z.err("ZADD z NX XX 1 a"),
        "ERR XX and NX options at the same time are not compatible"
    );
    assert_eq!(z.err("ZADD z x a"), "ERR value is not a valid float");
    assert_eq!(
        z.err("ZRANGEBYSCORE z a 1"),
        "ERR min or max is not a float"
    );
    assert_eq!(
        z.err("ZRANGE z 0 1 LIMIT 0 1"),
        "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
    );
}

#[test]
fn lex_ranges_follow_redis() {
    let mut z = Key::default();
    z.ok("ZADD z 0 a 0 b 0 c 0 d");
    assert_eq!(z.ok("ZRANGEBYLEX z [b (d"), bulks(&["b", "c"]));
    assert_eq!(z.ok("ZREVRANGEBYLEX z + (b"), bulks(&["d", "c"]));
    assert_eq!(z.ok("ZLEXCOUNT z - +"), int(4));
    assert_eq!(z.ok("ZREMRANGEBYLEX z - [b"), int(2));
    assert_eq!(z.ok("ZRANGE z - + BYLEX"), bulks(&["c", "d"]));
    assert_eq!(
        z.err("ZLEXCOUNT z a b"),
        "ERR min or max not valid string range item"
    );
}

#[test]
fn a_collection_command_on_another_kind_is_wrongtype() {
    for cmd in ["HGET k f", "SADD k m", "ZADD k 1 m", "LPUSH k x"] {
        let mut k = Key::string("text");
        assert_eq!(k.run(cmd), Err(CmdError::WrongType), "{cmd}");
        assert_eq!(
            k.held.as_ref().map(|h| h.0),
            Some(Kind::String),
            "untouched"
        );
    }
    let mut h = Key::default();
    h.ok("HSET k f v");
    assert_eq!(h.run("SCARD k"), Err(CmdError::WrongType));
    assert_eq!(h.run("ZSCORE k m"), Err(CmdError::WrongType));
}

#[test]
fn bounds_refuse_whole_commands() {
    let mut s = Key::default();
    let big = "x".repeat(65);
    assert!(
        s.err(&format!("SADD s a {big}"))
            .contains("maximum value size")
    );
    assert!(s.held.is_none(), "nothing of a refused command is stored");
    let small = Ctx {
        max_collection: 16,
        ..CTX
    };
    assert_eq!(s.run_with("RPUSH s aaaa bbbb cccc", &small), Ok(int(3)));
    let e = s.run_with("RPUSH s dddd eeee", &small).unwrap_err();
    assert!(e.to_string().contains("--max-collection-size"), "{e}");
    assert_eq!(s.ok("LLEN s"), int(3));
}

#[test]
fn a_change_keeps_the_expiry() {
    let mut h = Key::default();
    h.ok("HSET h a 1");
    if let Some(held) = h.held.as_mut() {
        held.2 = 5_000;
    }
    h.ok("HSET h b 2");
    assert_eq!(h.held.as_ref().map(|x| x.2), Some(5_000));
}

#[test]
fn string_commands_that_read_what_they_change() {
    let mut s = Key::string("Hello World");
    assert_eq!(s.ok("GETRANGE k 0 4"), Frame::bulk(b"Hello"));
    assert_eq!(s.ok("GETRANGE k -5 -1"), Frame::bulk(b"World"));
    assert_eq!(s.ok("SUBSTR k 5 100"), Frame::bulk(b" World"));
    assert_eq!(s.ok("GETRANGE k -1 -5"), Frame::bulk(b""));
    assert_eq!(s.ok("SETRANGE k 6 Redis"), int(11));
    assert_eq!(s.ok("GETSET k new"), Frame::bulk(b"Hello Redis"));
    let mut gap = Key::default();
    assert_eq!(gap.ok("SETRANGE k 3 ab"), int(5));
    assert_eq!(
        gap.held.as_ref().map(|h| h.1.to_vec()),
        Some(b"\0\0\0ab".to_vec())
    );
    assert!(gap.err("SETRANGE k 100 x").contains("maximum allowed size"));
    let mut f = Key::string("10.5");
    assert_eq!(f.ok("INCRBYFLOAT k 0.1"), Frame::bulk(b"10.6"));
    assert_eq!(f.ok("INCRBYFLOAT k -5.6"), Frame::bulk(b"5"));
    assert_eq!(f.err("INCRBYFLOAT k x"), "ERR value is not a valid float");
    let mut h = Key::default();
    h.ok("HSET k f v");
    assert_eq!(h.run("GETRANGE k 0 1"), Err(CmdError::WrongType));
    assert_eq!(h.run("GETSET k v"), Err(CmdError::WrongType));
}

#[test]
fn bits_are_counted_and_found_as_redis_does() {
    let mut b = Key::default();
    assert_eq!(b.ok("SETBIT k 7 1"), int(0));
    assert_eq!(b.ok("SETBIT k 7 1"), int(1));
    assert_eq!(b.held.as_ref().map(|h| h.1.to_vec()), Some(vec![1u8]));
    assert_eq!(b.ok("GETBIT k 7"), int(1));
    assert_eq!(b.ok("GETBIT k 100"), int(0));
    assert_eq!(
        b.err("SETBIT k -1 1"),
        "ERR bit offset is not an integer or out of range"
    );
    assert_eq!(
        b.err("SETBIT k 1 2"),
        "ERR bit is not an integer or out of range"
    );
    let mut s = Key::string("foobar");
    assert_eq!(s.ok("BITCOUNT k"), int(26));
    assert_eq!(s.ok("BITCOUNT k 0 0"), int(4));
    assert_eq!(s.ok("BITCOUNT k 1 1"), int(6));
    assert_eq!(s.ok("BITCOUNT k 5 30 BIT"), int(17));
    let mut p = Key {
        held: Some((Kind::String, Bytes::from_static(&[0xff, 0xf0, 0x00]), 0)),
    };
    assert_eq!(p.ok("BITPOS k 0"), int(12));
    assert_eq!(p.ok("BITPOS k 1 2"), int(-1));
    let mut ones = Key {
        held: Some((Kind::String, Bytes::from_static(&[0xff]), 0)),
    };
    assert_eq!(
        ones.ok("BITPOS k 0"),
        int(8),
        "clear bits continue past the end"
    );
    assert_eq!(ones.ok("BITPOS k 0 0 -1"), int(-1), "not with an end given");
    let mut none = Key::default();
    assert_eq!(none.ok("BITPOS k 0"), int(0));
    assert_eq!(none.ok("BITPOS k 1"), int(-1));
}
