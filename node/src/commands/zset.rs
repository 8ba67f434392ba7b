//! Sorted sets (`Z*`): members ordered by (score, member), stored as score, member pairs in
//! that order.

use super::util::{self, Loaded, keep, load};
use super::{CmdError, Ctx, Decision, Frame, frame, glob};
use crate::engine::Kind;
use crate::engine::update::{Change, Current};
use crate::engine::value::{self, zset_before};
use bytes::Bytes;
use std::cmp::Ordering;
use std::collections::HashMap;

const KIND: Kind = Kind::ZSet;

/// The members of a loaded sorted set, in order.
fn members<'a>(l: &Loaded<'a>) -> Result<Vec<(f64, &'a [u8])>, CmdError> {
    l.items
        .chunks_exact(2)
        .map(|p| Ok((value::score_of(KIND, p[0])?, p[1])))
        .collect()
}

fn order(a: &(f64, &[u8]), b: &(f64, &[u8])) -> Ordering {
    if zset_before(*a, *b) {
        Ordering::Less
    } else if zset_before(*b, *a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// Stores `m` (any order) as the key's sorted set and answers `answer`; empty deletes the key.
fn store(l: &Loaded<'_>, mut m: Vec<(f64, &[u8])>, ctx: &Ctx, answer: Frame) -> Decision {
    if m.is_empty() {
        return if l.existed {
            Change::Remove(Ok(answer))
        } else {
            keep(Ok(answer))
        };
    }
    m.sort_by(order);
    let scores: Vec<[u8; 8]> = m.iter().map(|(s, _)| value::score_bytes(*s)).collect();
    let items: Vec<&[u8]> = m
        .iter()
        .zip(&scores)
        .flat_map(|((_, member), s)| [&s[..], *member])
        .collect();
    if let Err(e) = util::check_collection(KIND, value::encoded_len(items.iter().copied()), ctx) {
        return keep(Err(e));
    }
    Change::Put {
        kind: KIND,
        value: value::encode(items.iter().copied()),
        expires_at: l.expires_at,
        answer: Ok(answer),
    }
}

fn score_frame(s: f64) -> Frame {
    Frame::Double(s)
}

/// Members and, with `WITHSCORES`, their scores (Redis 7: `[[m, s], …]` in RESP3, flat in
/// RESP2).
fn listing(m: &[(f64, &[u8])], scores: bool) -> Frame {
    if scores {
        Frame::Pairs(
            m.iter()
                .map(|(s, member)| (Frame::bulk(member), score_frame(*s)))
                .collect(),
        )
    } else {
        Frame::bulks(m.iter().map(|(_, member)| *member))
    }
}

pub fn run(name: &str, a: &[Bytes], cur: Option<Current<'_>>, ctx: &Ctx) -> Decision {
    let l = match load(cur, KIND) {
        Ok(l) => l,
        Err(e) => return keep(Err(e)),
    };
    let m = match members(&l) {
        Ok(m) => m,
        Err(e) => return keep(Err(e)),
    };
    match name {
        "ZADD" => zadd(a, &l, m, ctx),
        "ZINCRBY" => {
            let Some(by) = frame::parse_double(&a[0]) else {
                return keep(Err(CmdError::not_float()));
            };
            zadd_parsed(
                &Flags {
                    incr: true,
                    ..Flags::default()
                },
                vec![(by, &a[1][..])],
                &l,
                m,
                ctx,
            )
        }
        "ZREM" => {
            let gone: std::collections::HashSet<&[u8]> = a.iter().map(|x| &x[..]).collect();
            let before = m.len();
            let kept: Vec<_> = m.into_iter().filter(|(_, x)| !gone.contains(x)).collect();
            let removed = (before - kept.len()) as i64;
            if removed == 0 {
                return keep(Ok(Frame::Int(0)));
            }
            store(&l, kept, ctx, Frame::Int(removed))
        }
        "ZSCORE" => keep(Ok(m
            .iter()
            .find(|(_, x)| *x == &a[0][..])
            .map_or(Frame::Nil, |(s, _)| score_frame(*s)))),
        "ZMSCORE" => {
            let idx: HashMap<&[u8], f64> = m.iter().map(|(s, x)| (*x, *s)).collect();
            keep(Ok(Frame::Array(
                a.iter()
                    .map(|x| idx.get(&x[..]).map_or(Frame::Nil, |s| score_frame(*s)))
                    .collect(),
            )))
        }
        "ZCARD" => keep(Ok(Frame::Int(m.len() as i64))),
        "ZRANK" | "ZREVRANK" => keep(rank(name == "ZREVRANK", a, &m)),
        "ZCOUNT" => keep(
            score_range(&a[0], &a[1])
                .map(|r| Frame::Int(m.iter().filter(|(s, _)| r.holds(*s)).count() as i64)),
        ),
        "ZLEXCOUNT" => keep(
            lex_range(&a[0], &a[1])
                .map(|r| Frame::Int(m.iter().filter(|(_, x)| r.holds(x)).count() as i64)),
        ),
        "ZRANGE" => keep(zrange(a, &m, Spec::from_zrange(a))),
        "ZRANGEBYSCORE" => keep(zrange(a, &m, Spec::legacy(By::Score, false, a))),
        "ZREVRANGEBYSCORE" => keep(zrange(a, &m, Spec::legacy(By::Score, true, a))),
        "ZRANGEBYLEX" => keep(zrange(a, &m, Spec::legacy(By::Lex, false, a))),
        "ZREVRANGEBYLEX" => keep(zrange(a, &m, Spec::legacy(By::Lex, true, a))),
        "ZREVRANGE" => keep(zrange(a, &m, Spec::legacy(By::Rank, true, a))),
        "ZPOPMIN" | "ZPOPMAX" => pop(name == "ZPOPMAX", a, &l, m, ctx),
        "ZREMRANGEBYRANK" | "ZREMRANGEBYSCORE" | "ZREMRANGEBYLEX" => {
            let hit = match removal(name, a, &m) {
                Ok(h) => h,
                Err(e) => return keep(Err(e)),
            };
            let removed = hit.iter().filter(|h| **h).count() as i64;
            if removed == 0 {
                return keep(Ok(Frame::Int(0)));
            }
            let kept = m
                .into_iter()
                .zip(hit)
                .filter(|(_, h)| !h)
                .map(|(x, _)| x)
                .collect();
            store(&l, kept, ctx, Frame::Int(removed))
        }
        "ZRANDMEMBER" => keep(random(a, &m, ctx)),
        "ZSCAN" => keep(scan(a, &m)),
        _ => keep(Err(CmdError::Reply(format!(
            "ERR unknown command '{name}'"
        )))),
    }
}

#[derive(Default)]
struct Flags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

fn zadd(a: &[Bytes], l: &Loaded<'_>, m: Vec<(f64, &[u8])>, ctx: &Ctx) -> Decision {
    let mut f = Flags::default();
    let mut i = 0;
    while i < a.len() {
        let o = &a[i];
        let flag = match o.to_ascii_uppercase().as_slice() {
            b"NX" => &mut f.nx,
            b"XX" => &mut f.xx,
            b"GT" => &mut f.gt,
            b"LT" => &mut f.lt,
            b"CH" => &mut f.ch,
            b"INCR" => &mut f.incr,
            _ => break,
        };
        *flag = true;
        i += 1;
    }
    let rest = &a[i..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return keep(Err(CmdError::syntax()));
    }
    if f.nx && f.xx {
        return keep(Err(CmdError::Reply(
            "ERR XX and NX options at the same time are not compatible".into(),
        )));
    }
    if (f.gt && f.lt) || (f.nx && (f.gt || f.lt)) {
        return keep(Err(CmdError::Reply(
            "ERR GT, LT, and/or NX options at the same time are not compatible".into(),
        )));
    }
    if f.incr && rest.len() != 2 {
        return keep(Err(CmdError::Reply(
            "ERR INCR option supports a single increment-element pair".into(),
        )));
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for p in rest.chunks_exact(2) {
        let Some(s) = frame::parse_double(&p[0]) else {
            return keep(Err(CmdError::not_float()));
        };
        pairs.push((s, &p[1][..]));
    }
    let members: Vec<Bytes> = rest.chunks_exact(2).map(|p| p[1].clone()).collect();
    if let Err(e) = util::check_sizes(&members, ctx) {
        return keep(Err(e));
    }
    zadd_parsed(&f, pairs, l, m, ctx)
}

fn zadd_parsed<'a>(
    f: &Flags,
    pairs: Vec<(f64, &'a [u8])>,
    l: &Loaded<'a>,
    mut m: Vec<(f64, &'a [u8])>,
    ctx: &Ctx,
) -> Decision {
    let mut at: HashMap<&[u8], usize> = m.iter().enumerate().map(|(i, (_, x))| (*x, i)).collect();
    let (mut added, mut changed) = (0i64, 0i64);
    let mut incr_result = None;
    for (score, member) in pairs {
        match at.get(member) {
            Some(&i) => {
                if f.nx {
                    continue;
                }
                let old = m[i].0;
                let new = if f.incr { old + score } else { score };
                if new.is_nan() {
                    return keep(Err(CmdError::Reply(
                        "ERR resulting score is not a number (NaN)".into(),
                    )));
                }
                if (f.gt && new <= old) || (f.lt && new >= old) {
                    continue;
                }
                incr_result = Some(new);
                if new != old {
                    m[i].0 = new;
                    changed += 1;
                }
            }
            None => {
                if f.xx {
                    continue;
                }
                at.insert(member, m.len());
                m.push((score, member));
                incr_result = Some(score);
                added += 1;
            }
        }
    }
    let answer = if f.incr {
        incr_result.map_or(Frame::Nil, score_frame)
    } else if f.ch {
        Frame::Int(added + changed)
    } else {
        Frame::Int(added)
    };
    if added == 0 && changed == 0 {
        return keep(Ok(answer));
    }
    store(l, m, ctx, answer)
}

fn rank(rev: bool, a: &[Bytes], m: &[(f64, &[u8])]) -> Result<Frame, CmdError> {
    let with_score = match a.get(1) {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"WITHSCORE") && a.len() == 2 => true,
        Some(_) => return Err(CmdError::syntax()),
    };
    let Some(i) = m.iter().position(|(_, x)| *x == &a[0][..]) else {
        return Ok(if with_score {
            Frame::NilArray
        } else {
            Frame::Nil
        });
    };
    let r = if rev { m.len() - 1 - i } else { i } as i64;
    Ok(if with_score {
        Frame::Array(vec![Frame::Int(r), score_frame(m[i].0)])
    } else {
        Frame::Int(r)
    })
}

/// A score bound: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
#[derive(Clone, Copy)]
struct ScoreBound {
    at: f64,
    open: bool,
}

fn score_bound(b: &[u8]) -> Result<ScoreBound, CmdError> {
    let (open, s) = match b.strip_prefix(b"(") {
        Some(rest) => (true, rest),
        None => (false, b),
    };
    frame::parse_double(s)
        .map(|at| ScoreBound { at, open })
        .ok_or_else(|| CmdError::Reply("ERR min or max is not a float".into()))
}

struct ScoreRange {
    min: ScoreBound,
    max: ScoreBound,
}

impl ScoreRange {
    fn holds(&self, s: f64) -> bool {
        let above = if self.min.open {
            s > self.min.at
        } else {
            s >= self.min.at
        };
        let below = if self.max.open {
            s < self.max.at
        } else {
            s <= self.max.at
        };
        above && below
    }
}

fn score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, CmdError> {
    Ok(ScoreRange {
        min: score_bound(min)?,
        max: score_bound(max)?,
    })
}

/// A lex bound: `-`, `+`, `[x` (inclusive), `(x` (exclusive).
enum LexBound<'a> {
    Min,
    Max,
    At(&'a [u8], bool),
}

fn lex_bound(b: &[u8]) -> Result<LexBound<'_>, CmdError> {
    match b.first() {
        Some(b'-') if b.len() == 1 => Ok(LexBound::Min),
        Some(b'+') if b.len() == 1 => Ok(LexBound::Max),
        Some(b'[') => Ok(LexBound::At(&b[1..], false)),
        Some(b'(') => Ok(LexBound::At(&b[1..], true)),
        _ => Err(CmdError::Reply(
            "ERR min or max not valid string range item".into(),
        )),
    }
}

struct LexRange<'a> {
    min: LexBound<'a>,
    max: LexBound<'a>,
}

impl LexRange<'_> {
    fn holds(&self, x: &[u8]) -> bool {
        let above = match self.min {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::At(b, open) => x > b || (!open && x == b),
        };
        let below = match self.max {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::At(b, open) => x < b || (!open && x == b),
        };
        above && below
    }
}

fn lex_range<'a>(min: &'a [u8], max: &'a [u8]) -> Result<LexRange<'a>, CmdError> {
    Ok(LexRange {
        min: lex_bound(min)?,
        max: lex_bound(max)?,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// A range query, read from `ZRANGE`'s options or fixed by a legacy command's name.
struct Spec {
    by: By,
    rev: bool,
    limit: Option<(i64, i64)>,
    scores: bool,
}

impl Spec {
    /// `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]`.
    fn from_zrange(a: &[Bytes]) -> Result<Spec, CmdError> {
        let mut s = Spec {
            by: By::Rank,
            rev: false,
            limit: None,
            scores: false,
        };
        let mut i = 2;
        while i < a.len() {
            match a[i].to_ascii_uppercase().as_slice() {
                b"BYSCORE" => s.by = By::Score,
                b"BYLEX" => s.by = By::Lex,
                b"REV" => s.rev = true,
                b"WITHSCORES" => s.scores = true,
                b"LIMIT" => {
                    let (Some(o), Some(c)) = (a.get(i + 1), a.get(i + 2)) else {
                        return Err(CmdError::syntax());
                    };
                    s.limit = Some((util::int(o)?, util::int(c)?));
                    i += 2;
                }
                _ => return Err(CmdError::syntax()),
            }
            i += 1;
        }
        if s.limit.is_some() && s.by == By::Rank {
            return Err(CmdError::Reply(
                "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
                    .into(),
            ));
        }
        if s.scores && s.by == By::Lex {
            return Err(CmdError::Reply(
                "ERR syntax error, WITHSCORES not supported in combination with BYLEX".into(),
            ));
        }
        Ok(s)
    }

    /// `ZRANGEBYSCORE`, `ZREVRANGE`, … : `[WITHSCORES] [LIMIT offset count]` after the range
    /// (`WITHSCORES` not for the lex forms, `LIMIT` not for `ZREVRANGE`).
    fn legacy(by: By, rev: bool, a: &[Bytes]) -> Result<Spec, CmdError> {
        let mut s = Spec {
            by,
            rev,
            limit: None,
            scores: false,
        };
        let mut i = 2;
        while i < a.len() {
            let o = a[i].to_ascii_uppercase();
            if o == b"WITHSCORES" && by != By::Lex {
                s.scores = true;
            } else if o == b"LIMIT" && by != By::Rank {
                let (Some(off), Some(c)) = (a.get(i + 1), a.get(i + 2)) else {
                    return Err(CmdError::syntax());
                };
                s.limit = Some((util::int(off)?, util::int(c)?));
                i += 2;
            } else {
                return Err(CmdError::syntax());
            }
            i += 1;
        }
        Ok(s)
    }
}

/// The members a range query selects, in the order it answers them.
fn select<'a>(
    a: &[Bytes],
    m: &[(f64, &'a [u8])],
    s: &Spec,
) -> Result<Vec<(f64, &'a [u8])>, CmdError> {
    let ordered: Box<dyn Iterator<Item = &(f64, &'a [u8])>> = if s.rev {
        Box::new(m.iter().rev())
    } else {
        Box::new(m.iter())
    };
    // The reverse forms name the range max first.
    let (lo, hi) = if s.rev && s.by != By::Rank {
        (&a[1], &a[0])
    } else {
        (&a[0], &a[1])
    };
    let picked: Vec<(f64, &[u8])> = match s.by {
        By::Rank => {
            let (start, stop) = (util::int(lo)?, util::int(hi)?);
            let list: Vec<_> = ordered.copied().collect();
            return Ok(match util::range(start, stop, list.len()) {
                Some((i, j)) => list[i..=j].to_vec(),
                None => Vec::new(),
            });
        }
        By::Score => {
            let r = score_range(lo, hi)?;
            ordered.filter(|(sc, _)| r.holds(*sc)).copied().collect()
        }
        By::Lex => {
            let r = lex_range(lo, hi)?;
            ordered.filter(|(_, x)| r.holds(x)).copied().collect()
        }
    };
    Ok(match s.limit {
        None => picked,
        Some((off, _)) if off < 0 => Vec::new(),
        Some((off, count)) => {
            let it = picked.into_iter().skip(off as usize);
            if count < 0 {
                it.collect()
            } else {
                it.take(count as usize).collect()
            }
        }
    })
}

fn zrange(
    a: &[Bytes],
    m: &[(f64, &[u8])],
    spec: Result<Spec, CmdError>,
) -> Result<Frame, CmdError> {
    let s = spec?;
    Ok(listing(&select(a, m, &s)?, s.scores))
}

fn pop(max: bool, a: &[Bytes], l: &Loaded<'_>, mut m: Vec<(f64, &[u8])>, ctx: &Ctx) -> Decision {
    let count = match util::pop_count(a) {
        Ok(c) => c,
        Err(e) => return keep(Err(e)),
    };
    let n = count.unwrap_or(1).min(m.len());
    let taken: Vec<(f64, &[u8])> = if max {
        m.drain(m.len() - n..).rev().collect()
    } else {
        m.drain(..n).collect()
    };
    let answer = match count {
        None => match taken.first() {
            None => Frame::Array(Vec::new()),
            Some((s, x)) => Frame::Array(vec![Frame::bulk(x), score_frame(*s)]),
        },
        Some(_) => listing(&taken, true),
    };
    if taken.is_empty() {
        return keep(Ok(answer));
    }
    store(l, m, ctx, answer)
}

/// Which members a `ZREMRANGEBY*` removes.
fn removal(name: &str, a: &[Bytes], m: &[(f64, &[u8])]) -> Result<Vec<bool>, CmdError> {
    Ok(match name {
        "ZREMRANGEBYRANK" => {
            let r = util::range(util::int(&a[0])?, util::int(&a[1])?, m.len());
            (0..m.len())
                .map(|i| r.is_some_and(|(lo, hi)| (lo..=hi).contains(&i)))
                .collect()
        }
        "ZREMRANGEBYSCORE" => {
            let r = score_range(&a[0], &a[1])?;
            m.iter().map(|(s, _)| r.holds(*s)).collect()
        }
        _ => {
            let r = lex_range(&a[0], &a[1])?;
            m.iter().map(|(_, x)| r.holds(x)).collect()
        }
    })
}

fn random(a: &[Bytes], m: &[(f64, &[u8])], ctx: &Ctx) -> Result<Frame, CmdError> {
    let Some(count) = a.first() else {
        return Ok(util::picks(m.len(), 1, ctx.seed)
            .first()
            .map_or(Frame::Nil, |&i| Frame::bulk(m[i].1)));
    };
    let count = util::int(count)?;
    let scores = match a.get(1) {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"WITHSCORES") && a.len() == 2 => true,
        Some(_) => return Err(CmdError::syntax()),
    };
    let picked: Vec<(f64, &[u8])> = util::picks(m.len(), count, ctx.seed)
        .into_iter()
        .map(|i| m[i])
        .collect();
    Ok(listing(&picked, scores))
}

fn scan(a: &[Bytes], m: &[(f64, &[u8])]) -> Result<Frame, CmdError> {
    util::scan_cursor(&a[0])?;
    let pattern = util::scan_match(&a[1..])?;
    Ok(util::scan_answer(
        m.iter()
            .filter(|(_, x)| pattern.is_none_or(|p| glob::matches(p, x)))
            .flat_map(|(s, x)| [Frame::bulk(x), score_frame(*s)])
            .collect(),
    ))
}
