//! Lists (`L*`, `R*`): elements in order, pushed and popped at either end.

use super::util::{self, Loaded, keep, load, store};
use super::{CmdError, Ctx, Decision, Frame};
use crate::engine::Kind;
use crate::engine::update::Current;
use bytes::Bytes;

const KIND: Kind = Kind::List;

pub fn run(name: &str, a: &[Bytes], cur: Option<Current<'_>>, ctx: &Ctx) -> Decision {
    let l = match load(cur, KIND) {
        Ok(l) => l,
        Err(e) => return keep(Err(e)),
    };
    match name {
        "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" => {
            if name.ends_with('X') && !l.existed {
                return keep(Ok(Frame::Int(0)));
            }
            if let Err(e) = util::check_sizes(a, ctx) {
                return keep(Err(e));
            }
            let items: Vec<&[u8]> = if name.starts_with('L') {
                a.iter()
                    .rev()
                    .map(|b| &b[..])
                    .chain(l.items.iter().copied())
                    .collect()
            } else {
                l.items
                    .iter()
                    .copied()
                    .chain(a.iter().map(|b| &b[..]))
                    .collect()
            };
            let n = items.len() as i64;
            store(KIND, &l, &items, ctx, Frame::Int(n))
        }
        "LPOP" | "RPOP" => pop(name, a, &l, ctx),
        "LLEN" => keep(Ok(Frame::Int(l.items.len() as i64))),
        "LRANGE" => keep(lrange(a, &l)),
        "LINDEX" => keep(
            util::int(&a[0])
                .map(|i| index(i, l.items.len()).map_or(Frame::Nil, |i| Frame::bulk(l.items[i]))),
        ),
        "LSET" => {
            let i = match util::int(&a[0]) {
                Ok(i) => i,
                Err(e) => return keep(Err(e)),
            };
            if !l.existed {
                return keep(Err(CmdError::Reply("ERR no such key".into())));
            }
            let Some(i) = index(i, l.items.len()) else {
                return keep(Err(CmdError::Reply("ERR index out of range".into())));
            };
            if let Err(e) = util::check_sizes(&a[1..], ctx) {
                return keep(Err(e));
            }
            let mut items = l.items.clone();
            items[i] = &a[1];
            store(KIND, &l, &items, ctx, Frame::Ok)
        }
        "LREM" => lrem(a, &l, ctx),
        "LTRIM" => {
            let (start, stop) = match (util::int(&a[0]), util::int(&a[1])) {
                (Ok(s), Ok(e)) => (s, e),
                (Err(e), _) | (_, Err(e)) => return keep(Err(e)),
            };
            if !l.existed {
                return keep(Ok(Frame::Ok));
            }
            let items: &[&[u8]] = match util::range(start, stop, l.items.len()) {
                Some((s, e)) => &l.items[s..=e],
                None => &[],
            };
            if items.len() == l.items.len() {
                return keep(Ok(Frame::Ok));
            }
            store(KIND, &l, items, ctx, Frame::Ok)
        }
        "LINSERT" => linsert(a, &l, ctx),
        "LPOS" => keep(lpos(a, &l)),
        _ => keep(Err(CmdError::Reply(format!(
            "ERR unknown command '{name}'"
        )))),
    }
}

/// The position `i` (negative from the end) in a list of `len`, if inside it.
fn index(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&i).then_some(i as usize)
}

fn pop(name: &str, a: &[Bytes], l: &Loaded<'_>, ctx: &Ctx) -> Decision {
    let count = match util::pop_count(a) {
        Ok(c) => c,
        Err(e) => return keep(Err(e)),
    };
    if !l.existed {
        return keep(Ok(if count.is_some() {
            Frame::NilArray
        } else {
            Frame::Nil
        }));
    }
    let take = count.unwrap_or(1).min(l.items.len());
    let (taken, rest): (Vec<&[u8]>, &[&[u8]]) = if name == "LPOP" {
        (l.items[..take].to_vec(), &l.items[take..])
    } else {
        let cut = l.items.len() - take;
        (
            l.items[cut..].iter().rev().copied().collect(),
            &l.items[..cut],
        )
    };
    let answer = match count {
        None => Frame::bulk(taken[0]),
        Some(_) => Frame::bulks(taken),
    };
    if take == 0 {
        return keep(Ok(answer));
    }
    store(KIND, l, rest, ctx, answer)
}

fn lrange(a: &[Bytes], l: &Loaded<'_>) -> Result<Frame, CmdError> {
    let (start, stop) = (util::int(&a[0])?, util::int(&a[1])?);
    Ok(match util::range(start, stop, l.items.len()) {
        Some((s, e)) => Frame::bulks(l.items[s..=e].iter().copied()),
        None => Frame::Array(Vec::new()),
    })
}

fn lrem(a: &[Bytes], l: &Loaded<'_>, ctx: &Ctx) -> Decision {
    let count = match util::int(&a[0]) {
        Ok(c) => c,
        Err(e) => return keep(Err(e)),
    };
    let target = &a[1][..];
    let limit = if count == 0 {
        usize::MAX
    } else {
        count.unsigned_abs() as usize
    };
    let mut drop = vec![false; l.items.len()];
    let mut removed = 0;
    let order: Box<dyn Iterator<Item = usize>> = if count < 0 {
        Box::new((0..l.items.len()).rev())
    } else {
        Box::new(0..l.items.len())
    };
    for i in order {
        if removed == limit {
            break;
        }
        if l.items[i] == target {
            drop[i] = true;
            removed += 1;
        }
    }
    if removed == 0 {
        return keep(Ok(Frame::Int(0)));
    }
    let items: Vec<&[u8]> = l
        .items
        .iter()
        .zip(&drop)
        .filter(|(_, d)| !**d)
        .map(|(m, _)| *m)
        .collect();
    store(KIND, l, &items, ctx, Frame::Int(removed as i64))
}

fn linsert(a: &[Bytes], l: &Loaded<'_>, ctx: &Ctx) -> Decision {
    let before = if a[0].eq_ignore_ascii_case(b"BEFORE") {
        true
    } else if a[0].eq_ignore_ascii_case(b"AFTER") {
        false
    } else {
        return keep(Err(CmdError::syntax()));
    };
    if let Err(e) = util::check_sizes(&a[2..], ctx) {
        return keep(Err(e));
    }
    if !l.existed {
        return keep(Ok(Frame::Int(0)));
    }
    let Some(at) = l.items.iter().position(|m| *m == &a[1][..]) else {
        return keep(Ok(Frame::Int(-1)));
    };
    let mut items = l.items.clone();
    items.insert(if before { at } else { at + 1 }, &a[2]);
    let n = items.len() as i64;
    store(KIND, l, &items, ctx, Frame::Int(n))
}

fn lpos(a: &[Bytes], l: &Loaded<'_>) -> Result<Frame, CmdError> {
    let target = &a[0][..];
    let (mut rank, mut count, mut maxlen) = (1i64, None, 0usize);
    let mut i = 1;
    while i < a.len() {
        let v = a.get(i + 1).ok_or_else(CmdError::syntax)?;
        if a[i].eq_ignore_ascii_case(b"RANK") {
            rank = util::int(v)?;
            if rank == 0 || rank == i64::MIN {
                return Err(CmdError::Reply(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list".into(),
                ));
            }
        } else if a[i].eq_ignore_ascii_case(b"COUNT") {
            count = Some(
                util::positive(v)
                    .map_err(|_| CmdError::Reply("ERR COUNT can't be negative".into()))?,
            );
        } else if a[i].eq_ignore_ascii_case(b"MAXLEN") {
            maxlen = util::positive(v)
                .map_err(|_| CmdError::Reply("ERR MAXLEN can't be negative".into()))?;
        } else {
            return Err(CmdError::syntax());
        }
        i += 2;
    }
    let n = l.items.len();
    let scan = if maxlen == 0 { n } else { maxlen.min(n) };
    let positions: Box<dyn Iterator<Item = usize>> = if rank > 0 {
        Box::new(0..scan)
    } else {
        Box::new((n - scan..n).rev())
    };
    let want = match count {
        Some(0) => usize::MAX,
        Some(c) => c,
        None => 1,
    };
    let found: Vec<i64> = positions
        .filter(|&p| l.items[p] == target)
        .skip(rank.unsigned_abs() as usize - 1)
        .take(want)
        .map(|p| p as i64)
        .collect();
    Ok(match count {
        None => found.first().map_or(Frame::Nil, |&p| Frame::Int(p)),
        Some(_) => Frame::Array(found.into_iter().map(Frame::Int).collect()),
    })
}
