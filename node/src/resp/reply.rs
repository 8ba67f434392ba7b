//! RESP reply encoding into the connection's output buffer: RESP2, or RESP3 after `HELLO 3`
//! (nulls, maps and doubles differ; everything else is shared).

/// Appends the decimal form of `n`.
fn decimal(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

fn prefixed(out: &mut Vec<u8>, tag: u8, n: i64) {
    out.push(tag);
    decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

pub fn ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK\r\n");
}

pub fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// An error reply; `msg` starts with its code (`ERR`, `NOAUTH`, …). Line breaks in it (which
/// would end the reply early) become spaces.
pub fn error(out: &mut Vec<u8>, msg: &str) {
    out.push(b'-');
    out.extend(
        msg.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

pub fn int(out: &mut Vec<u8>, n: i64) {
    prefixed(out, b':', n);
}

pub fn bulk(out: &mut Vec<u8>, v: &[u8]) {
    out.reserve(v.len() + 16);
    prefixed(out, b'$', v.len() as i64);
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
}

pub fn null(out: &mut Vec<u8>, resp3: bool) {
    out.extend_from_slice(if resp3 { b"_\r\n" } else { b"$-1\r\n" });
}

pub fn opt_bulk(out: &mut Vec<u8>, v: Option<&[u8]>, resp3: bool) {
    match v {
        Some(v) => bulk(out, v),
        None => null(out, resp3),
    }
}

pub fn array(out: &mut Vec<u8>, n: usize) {
    prefixed(out, b'*', n as i64);
}

/// A map of `n` pairs: `%n` in RESP3, an array of 2n in RESP2.
pub fn map(out: &mut Vec<u8>, n: usize, resp3: bool) {
    if resp3 {
        prefixed(out, b'%', n as i64);
    } else {
        array(out, 2 * n);
    }
}

/// A verbatim text reply (`INFO`): bulk in RESP2, `=` with `txt:` in RESP3.
pub fn text(out: &mut Vec<u8>, s: &str, resp3: bool) {
    if resp3 {
        prefixed(out, b'=', s.len() as i64 + 4);
        out.extend_from_slice(b"txt:");
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    } else {
        bulk(out, s.as_bytes());
    }
}

/// A typed command's answer, in the connection's protocol version.
pub fn frame(out: &mut Vec<u8>, f: &crate::commands::Frame, resp3: bool) {
    use crate::commands::Frame as F;
    match f {
        F::Ok => ok(out),
        F::Simple(s) => simple(out, s),
        F::Nil => null(out, resp3),
        F::NilArray => out.extend_from_slice(if resp3 { b"_\r\n" } else { b"*-1\r\n" }),
        F::Int(n) => int(out, *n),
        F::Bulk(b) => bulk(out, b),
        F::Double(d) => {
            let s = crate::commands::frame::format_double(*d);
            if resp3 {
                out.push(b',');
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"\r\n");
            } else {
                bulk(out, s.as_bytes());
            }
        }
        F::Array(items) => {
            array(out, items.len());
            for i in items {
                frame(out, i, resp3);
            }
        }
        F::Set(items) => {
            prefixed(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
            for i in items {
                frame(out, i, resp3);
            }
        }
        F::Map(pairs) => {
            map(out, pairs.len(), resp3);
            for (k, v) in pairs {
                frame(out, k, resp3);
                frame(out, v, resp3);
            }
        }
        F::Pairs(pairs) => {
            if resp3 {
                array(out, pairs.len());
            } else {
                array(out, 2 * pairs.len());
            }
            for (k, v) in pairs {
                if resp3 {
                    array(out, 2);
                }
                frame(out, k, resp3);
                frame(out, v, resp3);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn encodings() {
        assert_eq!(with(|o| int(o, 0)), ":0\r\n");
        assert_eq!(with(|o| int(o, -42)), ":-42\r\n");
        assert_eq!(with(|o| int(o, i64::MIN)), ":-9223372036854775808\r\n");
        assert_eq!(with(|o| bulk(o, b"hi")), "$2\r\nhi\r\n");
        assert_eq!(with(|o| opt_bulk(o, None, false)), "$-1\r\n");
        assert_eq!(with(|o| opt_bulk(o, None, true)), "_\r\n");
        assert_eq!(with(|o| map(o, 2, false)), "*4\r\n");
        assert_eq!(with(|o| map(o, 2, true)), "%2\r\n");
        assert_eq!(with(|o| error(o, "ERR a\r\nb")), "-ERR a  b\r\n");
        assert_eq!(with(|o| text(o, "x:1", true)), "=7\r\ntxt:x:1\r\n");
        assert_eq!(with(|o| text(o, "x:1", false)), "$3\r\nx:1\r\n");
    }
}
