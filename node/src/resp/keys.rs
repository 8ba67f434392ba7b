//! Commands on keys of any type (`DEL`, `EXISTS`, the `EXPIRE` family, `TTL`) and on the whole
//! keyspace of the cluster (`DBSIZE`, `KEYS`, `SCAN`, `RANDOMKEY`, `FLUSHDB`, `FLUSHALL`:
//! `cluster::keyspace`).

use super::exec::*;
use crate::cluster::keyspace::{self, Action, Answer as KsAnswer, Query};
use crate::cluster::{self, Expiry, KeyOp, Outcome, When};
use crate::commands::Frame;
use bytes::Bytes;

pub fn del(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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

pub fn exists(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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

pub fn expire(x: &mut Exec<'_>, args: &Args<'_>, unit_ms: i64, absolute: bool) -> Reply {
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
pub fn deadline(x: &mut Exec<'_>, args: &Args<'_>, unit_ms: i64) -> Reply {
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

pub fn persist(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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

pub fn ttl(x: &mut Exec<'_>, args: &Args<'_>, seconds: bool) -> Reply {
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

/// Runs a keyspace query over the cluster, answered by `shape`.
pub fn over_keyspace(
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
pub fn query(partitions: Vec<u32>, action: Action, db: Option<u8>) -> Query {
    Query {
        partitions,
        action,
        pattern: None,
        kind: None,
        db,
    }
}

pub fn keys_frame(keys: Vec<Bytes>) -> Frame {
    Frame::Array(keys.into_iter().map(Frame::Bulk).collect())
}

/// `DBSIZE`: the keys of the cluster, each counted once (not once per replica).
pub fn dbsize(x: &mut Exec<'_>, _args: &Args<'_>) -> Reply {
    let q = query(keyspace::all(x.s), Action::Count, Some(x.conn.db));
    over_keyspace(x, q, |a| Answer::Int(a.count as i64))
}

/// `KEYS pattern`: every matching key of the cluster.
pub fn keys(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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
pub fn flush(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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
pub fn scan(x: &mut Exec<'_>, args: &Args<'_>) -> Reply {
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
pub fn randomkey(x: &mut Exec<'_>, _args: &Args<'_>) -> Reply {
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
