//! Hashes (`H*`): field, value pairs in insertion order.

use super::util::{self, Loaded, keep, load, store};
use super::{CmdError, Ctx, Decision, Frame, frame, glob};
use crate::engine::Kind;
use crate::engine::update::Current;
use bytes::Bytes;

const KIND: Kind = Kind::Hash;

fn pairs<'a, 'b>(l: &'b Loaded<'a>) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'b {
    l.items.chunks_exact(2).map(|p| (p[0], p[1]))
}

fn find(l: &Loaded<'_>, field: &[u8]) -> Option<usize> {
    l.items.chunks_exact(2).position(|p| p[0] == field)
}

pub fn run(name: &str, a: &[Bytes], cur: Option<Current<'_>>, ctx: &Ctx) -> Decision {
    let l = match load(cur, KIND) {
        Ok(l) => l,
        Err(e) => return keep(Err(e)),
    };
    match name {
        "HSET" | "HMSET" | "HSETNX" => set(name, a, &l, ctx),
        "HDEL" => {
            let mut items = l.items.clone();
            let mut removed = 0;
            for f in a {
                if let Some(i) = items.chunks_exact(2).position(|p| p[0] == &f[..]) {
                    items.drain(2 * i..2 * i + 2);
                    removed += 1;
                }
            }
            if removed == 0 {
                return keep(Ok(Frame::Int(0)));
            }
            store(KIND, &l, &items, ctx, Frame::Int(removed))
        }
        "HGET" => keep(Ok(
            find(&l, &a[0]).map_or(Frame::Nil, |i| Frame::bulk(l.items[2 * i + 1]))
        )),
        "HMGET" => keep(Ok(Frame::Array(
            a.iter()
                .map(|f| find(&l, f).map_or(Frame::Nil, |i| Frame::bulk(l.items[2 * i + 1])))
                .collect(),
        ))),
        "HGETALL" => keep(Ok(Frame::Map(
            pairs(&l)
                .map(|(f, v)| (Frame::bulk(f), Frame::bulk(v)))
                .collect(),
        ))),
        "HKEYS" => keep(Ok(Frame::bulks(pairs(&l).map(|(f, _)| f)))),
        "HVALS" => keep(Ok(Frame::bulks(pairs(&l).map(|(_, v)| v)))),
        "HLEN" => keep(Ok(Frame::Int((l.items.len() / 2) as i64))),
        "HEXISTS" => keep(Ok(Frame::bool(find(&l, &a[0]).is_some()))),
        "HSTRLEN" => keep(Ok(Frame::Int(
            find(&l, &a[0]).map_or(0, |i| l.items[2 * i + 1].len() as i64),
        ))),
        "HINCRBY" => incr(a, &l, ctx, false),
        "HINCRBYFLOAT" => incr(a, &l, ctx, true),
        "HRANDFIELD" => keep(randfield(a, &l, ctx)),
        "HSCAN" => keep(scan(a, &l)),
        _ => keep(Err(CmdError::Reply(format!(
            "ERR unknown command '{name}'"
        )))),
    }
}

fn set(name: &str, a: &[Bytes], l: &Loaded<'_>, ctx: &Ctx) -> Decision {
    if !a.len().is_multiple_of(2) || (name == "HSETNX" && a.len() != 2) {
        return keep(Err(CmdError::arity(name)));
    }
    if let Err(e) = util::check_sizes(a, ctx) {
        return keep(Err(e));
    }
    let mut items = l.items.clone();
    let mut added = 0;
    for p in a.chunks_exact(2) {
        match items.chunks_exact(2).position(|q| q[0] == &p[0][..]) {
            Some(_) if name == "HSETNX" => return keep(Ok(Frame::Int(0))),
            Some(i) => items[2 * i + 1] = &p[1],
            None => {
                items.push(&p[0]);
                items.push(&p[1]);
                added += 1;
            }
        }
    }
    let answer = match name {
        "HMSET" => Frame::Ok,
        _ => Frame::Int(added),
    };
    store(KIND, l, &items, ctx, answer)
}

fn incr(a: &[Bytes], l: &Loaded<'_>, ctx: &Ctx, float: bool) -> Decision {
    let at = find(l, &a[0]);
    let old = at.map(|i| l.items[2 * i + 1]);
    let (text, answer) = if float {
        let Some(by) = frame::parse_double(&a[1]) else {
            return keep(Err(CmdError::not_float()));
        };
        let base = match old.map(frame::parse_double) {
            None => 0.0,
            Some(Some(v)) => v,
            Some(None) => {
                return keep(Err(CmdError::Reply("ERR hash value is not a float".into())));
            }
        };
        let v = base + by;
        if !v.is_finite() {
            return keep(Err(CmdError::Reply(
                "ERR increment would produce NaN or Infinity".into(),
            )));
        }
        let t = frame::format_double(v);
        let answer = Frame::bulk(t.as_bytes());
        (t, answer)
    } else {
        let by = match util::int(&a[1]) {
            Ok(b) => b,
            Err(e) => return keep(Err(e)),
        };
        let base = match old.map(util::as_integer) {
            None => 0,
            Some(Some(v)) => v,
            Some(None) => {
                return keep(Err(CmdError::Reply(
                    "ERR hash value is not an integer".into(),
                )));
            }
        };
        let Some(v) = base.checked_add(by) else {
            return keep(Err(CmdError::Reply(
                "ERR increment or decrement would overflow".into(),
            )));
        };
        (v.to_string(), Frame::Int(v))
    };
    let mut items = l.items.clone();
    match at {
        Some(i) => items[2 * i + 1] = text.as_bytes(),
        None => {
            items.push(&a[0]);
            items.push(text.as_bytes());
        }
    }
    store(KIND, l, &items, ctx, answer)
}

fn randfield(a: &[Bytes], l: &Loaded<'_>, ctx: &Ctx) -> Result<Frame, CmdError> {
    let n = l.items.len() / 2;
    let Some(count) = a.first() else {
        if n == 0 {
            return Ok(Frame::Nil);
        }
        let i = util::picks(n, 1, ctx.seed)[0];
        return Ok(Frame::bulk(l.items[2 * i]));
    };
    let count = util::int(count)?;
    let with_values = match a.get(1) {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"WITHVALUES") && a.len() == 2 => true,
        Some(_) => return Err(CmdError::syntax()),
    };
    let picked = util::picks(n, count, ctx.seed);
    Ok(if with_values {
        Frame::Pairs(
            picked
                .iter()
                .map(|&i| (Frame::bulk(l.items[2 * i]), Frame::bulk(l.items[2 * i + 1])))
                .collect(),
        )
    } else {
        Frame::bulks(picked.iter().map(|&i| l.items[2 * i]))
    })
}

fn scan(a: &[Bytes], l: &Loaded<'_>) -> Result<Frame, CmdError> {
    util::scan_cursor(&a[0])?;
    let pattern = util::scan_match(&a[1..])?;
    Ok(util::scan_answer(
        pairs(l)
            .filter(|(f, _)| pattern.is_none_or(|p| glob::matches(p, f)))
            .flat_map(|(f, v)| [Frame::bulk(f), Frame::bulk(v)])
            .collect(),
    ))
}
