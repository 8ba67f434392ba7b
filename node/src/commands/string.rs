//! The string commands that read what they change or a part of the value (`GETSET`,
//! `GETRANGE`/`SUBSTR`, `SETRANGE`, `INCRBYFLOAT`); the plain ones (`GET`, `SET`, `INCR`, …)
//! are the front's own (`resp/command.rs`, `cluster::ops`).

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
        _ => keep(Err(CmdError::Reply(format!("ERR unknown command '{name}'")))),
    }
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
