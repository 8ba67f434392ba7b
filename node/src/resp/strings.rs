//! The string commands (`GET`, `SET` and its forms, `MGET`, `MSET`, `INCR*`, `APPEND`,
//! `STRLEN`): plain reads and writes take HTTP's paths (`cluster::read`, `cluster::write`), the
//! ones that read what they change run on the key's first serving owner (`cluster::op`).

use super::exec::*;
use super::reply;
use crate::cluster::node::SharedNode;
use crate::cluster::{self, ClusterError, Cond, Expiry, KeyOp};
use bytes::Bytes;

/// A plain write of `value`: HTTP's `PUT`, which any write owner coordinates.
pub async fn write(
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
pub async fn put(s: SharedNode, k: Bytes, value: Bytes, ttl_ms: Option<u64>) -> Answer {
    match write(s, k, value, ttl_ms).await {
        Ok(()) => Answer::Ok,
        Err(e) => failed(e),
    }
}

pub fn get(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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

/// An expiry argument `n` in `unit_ms` units, relative (`EX`, `PX`) or absolute (`EXAT`,
/// `PXAT`), as an absolute Unix ms; `None` when out of range.
pub fn expiry_at(n: i64, unit_ms: i64, absolute: bool, now: u64) -> Option<u64> {
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

pub fn set(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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

pub fn set_ex(x: &mut Exec<'_>, args: &Args<'_>, unit_ms: i64) -> Reply {
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

pub fn setnx(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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

pub fn getdel(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    run_op(x, key(args, 1), KeyOp::Delete { get: true }, outcome)
}

pub fn getex(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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

pub fn mget(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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

pub fn mset(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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

pub fn incr_by(x: &mut Exec<'_>, args: &Args<'_>, by: Option<i64>) -> Reply {
    let by = match by {
        Some(b) => b,
        None => match integer(args.get(2)) {
            Some(b) => b,
            None => return fail(x, NOT_INTEGER),
        },
    };
    run_op(x, key(args, 1), KeyOp::IncrBy { by }, outcome)
}

pub fn decr_by(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    match integer(args.get(2)).map(i64::checked_neg) {
        Some(Some(by)) => run_op(x, key(args, 1), KeyOp::IncrBy { by }, outcome),
        Some(None) => fail(x, "ERR decrement would overflow"),
        None => fail(x, NOT_INTEGER),
    }
}

pub fn append(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    let op = KeyOp::Append {
        value: key(args, 2),
    };
    run_op(x, key(args, 1), op, outcome)
}

pub fn strlen(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
    read_shaped(x, args, |v| Answer::Int(v.map_or(0, |v| v.len() as i64)))
}

/// A read of the key at 1, answered by `shape`.
pub fn read_shaped(x: &mut Exec<'_>, args: &Args<'_>, shape: fn(Option<Bytes>) -> Answer) -> Reply {
    let (s, k) = (x.s.clone(), key(args, 1));
    later(x, async move {
        match cluster::read(&s, &k, false).await {
            Ok(v) => shape(v),
            Err(e) => failed(e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_arguments() {
        assert_eq!(expiry_at(10, 1_000, false, 5), Some(10_005));
        assert_eq!(expiry_at(0, 1_000, false, 5), None);
        assert_eq!(expiry_at(-1, 1, false, 5), None);
        assert_eq!(expiry_at(i64::MAX, 1_000, false, 5), None);
        assert_eq!(expiry_at(MAX_TTL_MS + 1, 1, false, 5), None);
        assert_eq!(expiry_at(7, 1_000, true, 5), Some(7_000));
    }
}
