//! What the families share: loading and storing a collection, Redis's integer and range rules.

use super::{CmdError, Ctx, Decision, Frame};
use crate::engine::update::{Change, Current};
use crate::engine::{Kind, value};
use bytes::Bytes;

/// A loaded collection: its items (borrowed from the store) and its expiry.
pub struct Loaded<'a> {
    pub items: Vec<&'a [u8]>,
    pub expires_at: u64,
    pub existed: bool,
}

/// The items of the key's collection of `kind` (none when absent); another kind is
/// `WRONGTYPE`.
pub fn load<'a>(cur: Option<Current<'a>>, kind: Kind) -> Result<Loaded<'a>, CmdError> {
    match cur {
        None => Ok(Loaded {
            items: Vec::new(),
            expires_at: 0,
            existed: false,
        }),
        Some(c) if c.kind != kind => Err(CmdError::WrongType),
        Some(c) => Ok(Loaded {
            items: value::items(kind, c.value)?,
            expires_at: c.expires_at,
            existed: true,
        }),
    }
}

/// Answers without changing anything.
pub fn keep(r: Result<Frame, CmdError>) -> Decision {
    Change::Keep(r)
}

/// Stores `items` as the key's new collection (an empty one deletes the key, as Redis does),
/// keeping its expiry, and answers `answer`.
pub fn store(kind: Kind, l: &Loaded<'_>, items: &[&[u8]], ctx: &Ctx, answer: Frame) -> Decision {
    if items.is_empty() {
        return if l.existed {
            Change::Remove(Ok(answer))
        } else {
            Change::Keep(Ok(answer))
        };
    }
    if let Err(e) = check_collection(kind, value::encoded_len(items.iter().copied()), ctx) {
        return Change::Keep(Err(e));
    }
    Change::Put {
        kind,
        value: value::encode(items.iter().copied()),
        expires_at: l.expires_at,
        answer: Ok(answer),
    }
}

/// Refuses a collection of `bytes` encoded bytes over `--max-collection-size`.
pub fn check_collection(kind: Kind, bytes: usize, ctx: &Ctx) -> Result<(), CmdError> {
    if bytes as u64 > ctx.max_collection {
        return Err(CmdError::Reply(format!(
            "ERR the {} would take {bytes} bytes, more than --max-collection-size {}",
            kind.name(),
            ctx.max_collection
        )));
    }
    Ok(())
}

/// Refuses arguments (elements) larger than `--max-value-size`.
pub fn check_sizes(args: &[Bytes], ctx: &Ctx) -> Result<(), CmdError> {
    match args.iter().find(|a| a.len() as u64 > ctx.max_value_size) {
        Some(a) => Err(CmdError::Reply(format!(
            "ERR element of {} bytes: the maximum value size is {}",
            a.len(),
            ctx.max_value_size
        ))),
        None => Ok(()),
    }
}

/// Redis's integer grammar: optional `-`, digits, no leading zeros or spaces, fits in i64.
pub fn as_integer(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) || s == "-0" {
        return None;
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

pub fn int(v: &[u8]) -> Result<i64, CmdError> {
    as_integer(v).ok_or_else(CmdError::not_integer)
}

/// A count that must not be negative (`… count`), with Redis's message.
pub fn positive(v: &[u8]) -> Result<usize, CmdError> {
    match as_integer(v) {
        Some(n) if n >= 0 => Ok(n as usize),
        Some(_) => Err(CmdError::Reply(
            "ERR value is out of range, must be positive".into(),
        )),
        None => Err(CmdError::not_integer()),
    }
}

/// The optional `count` of a pop (`LPOP key [count]`, `SPOP`, `ZPOPMIN`): none, or a
/// non-negative integer; more arguments are a syntax error.
pub fn pop_count(a: &[Bytes]) -> Result<Option<usize>, CmdError> {
    match a {
        [] => Ok(None),
        [c] => positive(c).map(Some),
        _ => Err(CmdError::syntax()),
    }
}

/// The items `start..=stop` of `len` by Redis's rules (negative from the end, clamped);
/// `None` when the range is empty.
pub fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

/// A small generator for the commands that pick at random (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `count` distinct or repeated picks of indexes below `n`, as `SRANDMEMBER`/`HRANDFIELD`
/// do: a non-negative count picks distinct ones (at most `n`), a negative one may repeat.
pub fn picks(n: usize, count: i64, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    if n == 0 {
        return Vec::new();
    }
    if count < 0 {
        return (0..count.unsigned_abs()).map(|_| rng.below(n)).collect();
    }
    let want = (count as usize).min(n);
    // Partial Fisher-Yates over the indexes.
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..want {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    idx.truncate(want);
    idx
}

/// `SCAN`-family options after the cursor: `MATCH pattern`, `COUNT n` (accepted; a compact
/// collection is answered whole, as Redis answers its small encodings).
pub fn scan_match(opts: &[Bytes]) -> Result<Option<&[u8]>, CmdError> {
    let mut pattern = None;
    let mut i = 0;
    while i < opts.len() {
        let o = &opts[i];
        let Some(v) = opts.get(i + 1) else {
            return Err(CmdError::syntax());
        };
        if o.eq_ignore_ascii_case(b"MATCH") {
            pattern = Some(&v[..]);
        } else if o.eq_ignore_ascii_case(b"COUNT") {
            if positive(v)? == 0 {
                return Err(CmdError::syntax());
            }
        } else {
            return Err(CmdError::syntax());
        }
        i += 2;
    }
    Ok(pattern)
}

/// The cursor argument of a `*SCAN`: an unsigned integer.
pub fn scan_cursor(v: &[u8]) -> Result<u64, CmdError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| CmdError::Reply("ERR invalid cursor".into()))
}

/// A `*SCAN` answer: cursor 0 (done) and the items.
pub fn scan_answer(items: Vec<Frame>) -> Frame {
    Frame::Array(vec![Frame::bulk(b"0"), Frame::Array(items)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_redis() {
        assert_eq!(range(0, -1, 5), Some((0, 4)));
        assert_eq!(range(-2, -1, 5), Some((3, 4)));
        assert_eq!(range(-100, 1, 5), Some((0, 1)));
        assert_eq!(range(3, 100, 5), Some((3, 4)));
        assert_eq!(range(4, 2, 5), None);
        assert_eq!(range(5, 9, 5), None);
        assert_eq!(range(0, -1, 0), None);
    }

    #[test]
    fn distinct_picks_are_distinct_and_repeated_ones_counted() {
        let p = picks(10, 4, 7);
        let mut d = p.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!((p.len(), d.len()), (4, 4));
        assert_eq!(picks(3, 10, 1).len(), 3, "at most n distinct");
        assert_eq!(picks(3, -10, 1).len(), 10, "repeats allowed");
        assert!(picks(3, -10, 1).iter().all(|&i| i < 3));
        assert!(picks(0, -3, 1).is_empty());
    }
}
