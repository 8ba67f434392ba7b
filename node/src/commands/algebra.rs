//! Set and sorted-set algebra over several keys (`SINTER`, `SUNION`, `SDIFF`, `ZUNION`,
//! `ZINTER`, `ZDIFF`, their `…CARD` forms): pure functions of the members each key held when it
//! was read. The front reads each key on its owner and calls these.

use super::frame::parse_double;
use super::{CmdError, util};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Union,
    Inter,
    Diff,
}

/// Members of the result of `op` over `sets` (the first set's order first).
pub fn sets(op: Op, sets: &[Vec<Bytes>]) -> Vec<Bytes> {
    let Some((first, rest)) = sets.split_first() else {
        return Vec::new();
    };
    match op {
        Op::Union => {
            let mut seen = HashSet::new();
            sets.iter()
                .flatten()
                .filter(|m| seen.insert(*m))
                .cloned()
                .collect()
        }
        Op::Inter => {
            let others: Vec<HashSet<&Bytes>> = rest.iter().map(|s| s.iter().collect()).collect();
            first
                .iter()
                .filter(|m| others.iter().all(|o| o.contains(m)))
                .cloned()
                .collect()
        }
        Op::Diff => {
            let others: HashSet<&Bytes> = rest.iter().flatten().collect();
            first
                .iter()
                .filter(|m| !others.contains(m))
                .cloned()
                .collect()
        }
    }
}

/// How scores of one member meet (`AGGREGATE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    Min,
    Max,
}

/// The options after a `Z…` algebra command's keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ZOptions {
    pub weights: Vec<f64>,
    pub aggregate: Aggregate,
    pub scores: bool,
    /// `…CARD … LIMIT n` (0: none).
    pub limit: usize,
}

/// Reads `[WEIGHTS w …] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]` (what `op` allows) for `n` keys.
pub fn z_options(op: Op, n: usize, opts: &[Bytes]) -> Result<ZOptions, CmdError> {
    let mut o = ZOptions {
        weights: vec![1.0; n],
        aggregate: Aggregate::Sum,
        scores: false,
        limit: 0,
    };
    let mut i = 0;
    while i < opts.len() {
        let word = opts[i].to_ascii_uppercase();
        match word.as_slice() {
            b"WEIGHTS" if op != Op::Diff && i + n < opts.len() => {
                for (j, w) in opts[i + 1..=i + n].iter().enumerate() {
                    o.weights[j] = parse_double(w)
                        .ok_or_else(|| CmdError::Reply("ERR weight value is not a float".into()))?;
                }
                i += n;
            }
            b"AGGREGATE" if op != Op::Diff => {
                let Some(a) = opts.get(i + 1) else {
                    return Err(CmdError::syntax());
                };
                o.aggregate = match a.to_ascii_uppercase().as_slice() {
                    b"SUM" => Aggregate::Sum,
                    b"MIN" => Aggregate::Min,
                    b"MAX" => Aggregate::Max,
                    _ => return Err(CmdError::syntax()),
                };
                i += 1;
            }
            b"WITHSCORES" => o.scores = true,
            _ => return Err(CmdError::syntax()),
        }
        i += 1;
    }
    Ok(o)
}

/// Reads `[LIMIT n]` of a `…CARD` command.
pub fn card_limit(opts: &[Bytes]) -> Result<usize, CmdError> {
    match opts {
        [] => Ok(0),
        [w, n] if w.eq_ignore_ascii_case(b"LIMIT") => {
            util::positive(n).map_err(|_| CmdError::Reply("ERR LIMIT can't be negative".into()))
        }
        _ => Err(CmdError::syntax()),
    }
}

/// The result of `op` over sorted sets (a set's members score 1), ordered by (score, member).
pub fn zsets(op: Op, inputs: &[Vec<(Bytes, f64)>], o: &ZOptions) -> Vec<(Bytes, f64)> {
    let Some((first, rest)) = inputs.split_first() else {
        return Vec::new();
    };
    let weighted = |k: usize, s: f64| {
        let v = s * o.weights[k];
        // inf × 0 is NaN in IEEE; Redis counts it as 0.
        if v.is_nan() { 0.0 } else { v }
    };
    let meet = |a: f64, b: f64| {
        let v = match o.aggregate {
            Aggregate::Sum => a + b,
            Aggregate::Min => a.min(b),
            Aggregate::Max => a.max(b),
        };
        if v.is_nan() { 0.0 } else { v }
    };
    let mut out: Vec<(Bytes, f64)> = match op {
        Op::Union => {
            let mut acc: HashMap<&Bytes, f64> = HashMap::new();
            let mut order = Vec::new();
            for (k, set) in inputs.iter().enumerate() {
                for (m, s) in set {
                    let v = weighted(k, *s);
                    match acc.get_mut(m) {
                        Some(cur) => *cur = meet(*cur, v),
                        None => {
                            acc.insert(m, v);
                            order.push(m);
                        }
                    }
                }
            }
            order.into_iter().map(|m| (m.clone(), acc[m])).collect()
        }
        Op::Inter => {
            let others: Vec<HashMap<&Bytes, f64>> = rest
                .iter()
                .map(|s| s.iter().map(|(m, sc)| (m, *sc)).collect())
                .collect();
            first
                .iter()
                .filter_map(|(m, s)| {
                    let mut v = weighted(0, *s);
                    for (k, other) in others.iter().enumerate() {
                        v = meet(v, weighted(k + 1, *other.get(m)?));
                    }
                    Some((m.clone(), v))
                })
                .collect()
        }
        Op::Diff => {
            let others: HashSet<&Bytes> = rest.iter().flatten().map(|(m, _)| m).collect();
            first
                .iter()
                .filter(|(m, _)| !others.contains(m))
                .cloned()
                .collect()
        }
    };
    out.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn set(items: &[&str]) -> Vec<Bytes> {
        items.iter().map(|s| b(s)).collect()
    }

    #[test]
    fn set_algebra() {
        let a = set(&["a", "b", "c", "d"]);
        let c = set(&["c"]);
        let e = set(&["a", "c", "e"]);
        let inputs = [a, c, e];
        assert_eq!(sets(Op::Inter, &inputs), set(&["c"]));
        assert_eq!(sets(Op::Diff, &inputs), set(&["b", "d"]));
        assert_eq!(sets(Op::Union, &inputs), set(&["a", "b", "c", "d", "e"]));
        assert!(sets(Op::Inter, &[set(&["a"]), Vec::new()]).is_empty());
    }

    #[test]
    fn sorted_set_algebra_weights_and_aggregates() {
        let z1 = vec![(b("a"), 1.0), (b("b"), 2.0)];
        let z2 = vec![(b("b"), 3.0), (b("c"), 4.0)];
        let words = |s: &str| s.split(' ').map(b).collect::<Vec<_>>();
        let o = z_options(Op::Union, 2, &words("WEIGHTS 2 1 AGGREGATE MAX")).unwrap();
        assert_eq!(o.weights, [2.0, 1.0]);
        assert_eq!(
            zsets(Op::Union, &[z1.clone(), z2.clone()], &o),
            [(b("a"), 2.0), (b("b"), 4.0), (b("c"), 4.0)]
        );
        let sum = z_options(Op::Inter, 2, &[]).unwrap();
        assert_eq!(
            zsets(Op::Inter, &[z1.clone(), z2.clone()], &sum),
            [(b("b"), 5.0)]
        );
        assert_eq!(zsets(Op::Diff, &[z1, z2], &sum), [(b("a"), 1.0)]);
        assert!(z_options(Op::Diff, 2, &words("WEIGHTS 1 2")).is_err());
        assert!(z_options(Op::Union, 2, &words("WEIGHTS 1")).is_err());
        let inf = vec![(b("x"), f64::INFINITY)];
        let zero = z_options(Op::Union, 1, &words("WEIGHTS 0")).unwrap();
        assert_eq!(zsets(Op::Union, &[inf], &zero), [(b("x"), 0.0)]);
    }
}
