//! The string commands that read what they change or a part of the value (`GETSET`,
//! `GETRANGE`/`SUBSTR`, `SETRANGE`, `INCRBYFLOAT`, the bit commands); the plain ones (`GET`,
//! `SET`, `INCR`, …) are the front's own (`resp/command.rs`, `cluster::ops`).

use super::util::{self, keep};
use super::{CmdError, Ctx, Decision, Frame, frame};
use crate::engine::Kind;
use crate::engine::update::{Change, Current};
use bytes::Bytes;

/// The string the key holds (empty when absent), its expiry, whether it exists.
fn load<'a>(cur: Option<Current<'a>>) -> Result<(&'a [u8], u64, bool), CmdError> {
    match cur {
        None => Ok((&[], 0, false)),
        Some(c) if c.kind != Kind::String => Err(CmdError::WrongType),
        Some(c) => Ok((c.value, c.expires_at, true)),
    }
}

fn put(value: Vec<u8>, expires_at: u64, ctx: &Ctx, answer: Frame) -> Decision {
    if value.len() as u64 > ctx.max_value_size {
        return keep(Err(CmdError::Reply(format!(
            "ERR string exceeds maximum allowed size ({} bytes, --max-value-size {})",
            value.len(),
            ctx.max_value_size
        ))));
    }
    Change::Put {
        kind: Kind::String,
        value: Bytes::from(value),
        expires_at,
        answer: Ok(answer),
    }
}

pub fn run(name: &str, a: &[Bytes], cur: Option<Current<'_>>, ctx: &Ctx) -> Decision {
    let (v, expires_at, existed) = match load(cur) {
        Ok(l) => l,
        Err(e) => return keep(Err(e)),
    };
    match name {
        "GETSET" => {
            let old = if existed { Frame::bulk(v) } else { Frame::Nil };
            // A plain set: the expiry goes, as in Redis.
            put(a[0].to_vec(), 0, ctx, old)
        }
        "GETRANGE" | "SUBSTR" => keep(getrange(v, &a[0], &a[1])),
        "SETRANGE" => {
            let offset = match util::positive(&a[0]) {
                Ok(o) => o,
                Err(_) => return keep(Err(CmdError::Reply("ERR offset is out of range".into()))),
            };
            let patch = &a[1];
            if patch.is_empty() {
                return keep(Ok(Frame::Int(v.len() as i64)));
            }
            let Some(end) = offset.checked_add(patch.len()) else {
                return keep(Err(CmdError::Reply("ERR offset is out of range".into())));
            };
            if end as u64 > ctx.max_value_size {
                return keep(Err(CmdError::Reply(format!(
                    "ERR string exceeds maximum allowed size ({end} bytes, --max-value-size {})",
                    ctx.max_value_size
                ))));
            }
            let mut out = v.to_vec();
            if out.len() < end {
                out.resize(end, 0);
            }
            out[offset..end].copy_from_slice(patch);
            let len = out.len() as i64;
            put(out, expires_at, ctx, Frame::Int(len))
        }
        "INCRBYFLOAT" => {
            let Some(by) = frame::parse_double(&a[0]) else {
                return keep(Err(CmdError::not_float()));
            };
            let base = if existed {
                match frame::parse_double(v) {
                    Some(b) => b,
                    None => return keep(Err(CmdError::not_float())),
                }
            } else {
                0.0
            };
            let n = base + by;
            if !n.is_finite() {
                return keep(Err(CmdError::Reply(
                    "ERR increment would produce NaN or Infinity".into(),
                )));
            }
            let text = frame::format_double(n);
            let answer = Frame::bulk(text.as_bytes());
            put(text.into_bytes(), expires_at, ctx, answer)
        }
        "GETBIT" => keep(bit_offset(&a[0]).map(|o| Frame::Int(i64::from(bit_at(v, o))))),
        "SETBIT" => setbit(a, v, expires_at, ctx),
        "BITCOUNT" => keep(bitcount(a, v)),
        "BITPOS" => keep(bitpos(a, v, existed)),
        _ => keep(Err(CmdError::Reply(format!(
            "ERR unknown command '{name}'"
        )))),
    }
}

/// A bit offset: 0 to 2^32 - 1, as Redis bounds it.
fn bit_offset(b: &[u8]) -> Result<u64, CmdError> {
    match util::as_integer(b) {
        Some(n) if (0..1 << 32).contains(&n) => Ok(n as u64),
        _ => Err(CmdError::Reply(
            "ERR bit offset is not an integer or out of range".into(),
        )),
    }
}

/// Bit `o` of `v`, the most significant bit of a byte first (0 past the end).
fn bit_at(v: &[u8], o: u64) -> u8 {
    v.get((o / 8) as usize)
        .map_or(0, |b| (b >> (7 - o % 8)) & 1)
}

fn setbit(a: &[Bytes], v: &[u8], expires_at: u64, ctx: &Ctx) -> Decision {
    let o = match bit_offset(&a[0]) {
        Ok(o) => o,
        Err(e) => return keep(Err(e)),
    };
    let on = match &a[1][..] {
        b"0" => false,
        b"1" => true,
        _ => {
            return keep(Err(CmdError::Reply(
                "ERR bit is not an integer or out of range".into(),
            )));
        }
    };
    let byte = (o / 8) as usize;
    if byte as u64 >= ctx.max_value_size {
        return keep(Err(CmdError::Reply(format!(
            "ERR string exceeds maximum allowed size ({} bytes, --max-value-size {})",
            byte + 1,
            ctx.max_value_size
        ))));
    }
    let old = bit_at(v, o);
    let mut out = v.to_vec();
    if out.len() <= byte {
        out.resize(byte + 1, 0);
    }
    let mask = 1u8 << (7 - o % 8);
    if on {
        out[byte] |= mask;
    } else {
        out[byte] &= !mask;
    }
    put(out, expires_at, ctx, Frame::Int(i64::from(old)))
}

/// The `[start end [BYTE|BIT]]` of `BITCOUNT`/`BITPOS` as a bit range `first..=last` of `v`
/// (`None`: empty); `end` absent means the end of the string.
fn bit_range(
    v: &[u8],
    start: Option<&Bytes>,
    end: Option<&Bytes>,
    unit: Option<&Bytes>,
) -> Result<Option<(u64, u64)>, CmdError> {
    let bits = match unit {
        None => false,
        Some(u) if u.eq_ignore_ascii_case(b"BYTE") => false,
        Some(u) if u.eq_ignore_ascii_case(b"BIT") => true,
        Some(_) => return Err(CmdError::syntax()),
    };
    let len = if bits { v.len() * 8 } else { v.len() };
    let start = start.map(|s| util::int(s)).transpose()?.unwrap_or(0);
    let end = end.map(|e| util::int(e)).transpose()?.unwrap_or(-1);
    let Some((i, j)) = util::range(start, end, len) else {
        return Ok(None);
    };
    Ok(Some(if bits {
        (i as u64, j as u64)
    } else {
        (i as u64 * 8, j as u64 * 8 + 7)
    }))
}

fn bitcount(a: &[Bytes], v: &[u8]) -> Result<Frame, CmdError> {
    if a.len() == 1 || a.len() > 3 {
        return Err(CmdError::syntax());
    }
    let Some((first, last)) = bit_range(v, a.first(), a.get(1), a.get(2))? else {
        return Ok(Frame::Int(0));
    };
    Ok(Frame::Int(
        (first..=last).map(|o| i64::from(bit_at(v, o))).sum(),
    ))
}

fn bitpos(a: &[Bytes], v: &[u8], existed: bool) -> Result<Frame, CmdError> {
    let want = match &a[0][..] {
        b"0" => 0,
        b"1" => 1,
        _ => {
            return Err(CmdError::Reply(
                "ERR The bit argument must be 1 or 0.".into(),
            ));
        }
    };
    if a.len() > 4 {
        return Err(CmdError::syntax());
    }
    if !existed {
        return Ok(Frame::Int(if want == 1 { -1 } else { 0 }));
    }
    let end_given = a.len() >= 3;
    let Some((first, last)) = bit_range(v, a.get(1), a.get(2), a.get(3))? else {
        return Ok(Frame::Int(-1));
    };
    if let Some(o) = (first..=last).find(|&o| bit_at(v, o) == want) {
        return Ok(Frame::Int(o as i64));
    }
    // Looking for a clear bit with no end given: the string continues with zeros.
    Ok(Frame::Int(if want == 0 && !end_given {
        (last + 1) as i64
    } else {
        -1
    }))
}

/// `GETRANGE`: the bytes `start..=end`, negative from the end, clamped.
fn getrange(v: &[u8], start: &[u8], end: &[u8]) -> Result<Frame, CmdError> {
    let (start, end) = (util::int(start)?, util::int(end)?);
    if start < 0 && end < 0 && start > end {
        return Ok(Frame::bulk(b""));
    }
    Ok(match util::range(start, end, v.len()) {
        Some((i, j)) => Frame::bulk(&v[i..=j]),
        None => Frame::bulk(b""),
    })
}
