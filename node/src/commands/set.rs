//! Sets (`S*`): distinct members in insertion order.

use super::util::{self, Loaded, keep, load, store};
use super::{CmdError, Ctx, Decision, Frame, glob};
use crate::engine::Kind;
use crate::engine::update::Current;
use bytes::Bytes;
use std::collections::HashSet;

const KIND: Kind = Kind::Set;

/// Membership test over the loaded members: a hash set once the set is more than a handful,
/// so `SADD` of many members stays linear.
fn index<'a>(l: &Loaded<'a>) -> HashSet<&'a [u8]> {
    l.items.iter().copied().collect()
}

pub fn run(name: &str, a: &[Bytes], cur: Option<Current<'_>>, ctx: &Ctx) -> Decision {
    let l = match load(cur, KIND) {
        Ok(l) => l,
        Err(e) => return keep(Err(e)),
    };
    match name {
        "SADD" => {
            if let Err(e) = util::check_sizes(a, ctx) {
                return keep(Err(e));
            }
            let mut seen = index(&l);
            let mut items = l.items.clone();
            for m in a {
                if seen.insert(m) {
                    items.push(m);
                }
            }
            let added = (items.len() - l.items.len()) as i64;
            if added == 0 {
                return keep(Ok(Frame::Int(0)));
            }
            store(KIND, &l, &items, ctx, Frame::Int(added))
        }
        "SREM" => {
            let gone: HashSet<&[u8]> = a.iter().map(|m| &m[..]).collect();
            let items: Vec<&[u8]> = l
                .items
                .iter()
                .copied()
                .filter(|m| !gone.contains(m))
                .collect();
            let removed = (l.items.len() - items.len()) as i64;
            if removed == 0 {
                return keep(Ok(Frame::Int(0)));
            }
            store(KIND, &l, &items, ctx, Frame::Int(removed))
        }
        "SMEMBERS" => keep(Ok(Frame::Set(
            l.items.iter().map(|m| Frame::bulk(m)).collect(),
        ))),
        "SISMEMBER" => keep(Ok(Frame::bool(l.items.contains(&&a[0][..])))),
        "SMISMEMBER" => {
            let seen = index(&l);
            keep(Ok(Frame::Array(
                a.iter()
                    .map(|m| Frame::bool(seen.contains(&m[..])))
                    .collect(),
            )))
        }
        "SCARD" => keep(Ok(Frame::Int(l.items.len() as i64))),
        "SPOP" => pop(a, &l, ctx),
        "SRANDMEMBER" => keep(random(a, &l, ctx)),
        "SSCAN" => keep(scan(a, &l)),
        _ => keep(Err(CmdError::Reply(format!(
            "ERR unknown command '{name}'"
        )))),
    }
}

fn pop(a: &[Bytes], l: &Loaded<'_>, ctx: &Ctx) -> Decision {
    let count = match util::pop_count(a) {
        Ok(c) => c,
        Err(e) => return keep(Err(e)),
    };
    let n = l.items.len();
    let picked = util::picks(n, count.unwrap_or(1) as i64, ctx.seed);
    let answer = match count {
        None if picked.is_empty() => Frame::Nil,
        None => Frame::bulk(l.items[picked[0]]),
        Some(_) => Frame::Set(picked.iter().map(|&i| Frame::bulk(l.items[i])).collect()),
    };
    if picked.is_empty() {
        return keep(Ok(answer));
    }
    let mut taken = vec![false; n];
    for &i in &picked {
        taken[i] = true;
    }
    let items: Vec<&[u8]> = l
        .items
        .iter()
        .zip(&taken)
        .filter(|(_, t)| !**t)
        .map(|(m, _)| *m)
        .collect();
    store(KIND, l, &items, ctx, answer)
}

fn random(a: &[Bytes], l: &Loaded<'_>, ctx: &Ctx) -> Result<Frame, CmdError> {
    match a {
        [] => Ok(util::picks(l.items.len(), 1, ctx.seed)
            .first()
            .map_or(Frame::Nil, |&i| Frame::bulk(l.items[i]))),
        [c] => {
            let count = util::int(c)?;
            let picked = util::picks(l.items.len(), count, ctx.seed);
            Ok(Frame::Array(
                picked.iter().map(|&i| Frame::bulk(l.items[i])).collect(),
            ))
        }
        _ => Err(CmdError::syntax()),
    }
}

fn scan(a: &[Bytes], l: &Loaded<'_>) -> Result<Frame, CmdError> {
    util::scan_cursor(&a[0])?;
    let pattern = util::scan_match(&a[1..])?;
    Ok(util::scan_answer(
        l.items
            .iter()
            .filter(|m| pattern.is_none_or(|p| glob::matches(p, m)))
            .map(|m| Frame::bulk(m))
            .collect(),
    ))
}
