//! RESP request framing: multibulk commands (`*N\r\n$len\r\narg\r\n…`, what every client
//! sends) and inline commands (`PING\r\n`, what a person types), parsed in place from the
//! connection's buffer into argument ranges, so a command costs no allocation.
//!
//! Why by hand: a command must be recognised as incomplete, oversized or malformed before it is
//! buffered whole (a bulk over `maxValueSize` is skipped as it streams in, never held), and the
//! request path must not allocate per argument; the RESP crates we looked at build a frame tree
//! per command. See `docs/benchmarks.md` (RESP) for what this path costs.

/// Bounds a parser enforces on what a client sends.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest bulk argument (the node's `maxValueSize`, at least the longest key).
    pub max_bulk: usize,
    /// Most arguments in one command.
    pub max_args: usize,
    /// Longest inline command line.
    pub max_inline: usize,
}

/// What the front of the buffer holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole command, its arguments' ranges in `args`, `len` bytes long. No arguments: an
    /// empty command (`*0`, a blank line), answered with nothing.
    Command { len: usize },
    /// More bytes are needed (at least `need` in all, when known).
    Incomplete { need: usize },
    /// An argument longer than [`Limits::max_bulk`]: the command's first `header` bytes are
    /// read; `skip` more bytes (this argument and its CRLF) and then `args_left` more arguments
    /// follow, all to be discarded.
    Oversized {
        header: usize,
        skip: usize,
        args_left: usize,
        size: usize,
    },
    /// Not RESP: answer the error and close the connection.
    Malformed(&'static str),
}

/// Longest `*N` or `$N` line (sign, 19 digits, CRLF, slack).
const MAX_LEN_LINE: usize = 32;

/// The `\r\n`-terminated line at `buf[at..]`: its end (index of `\r`), if complete.
fn line_end(buf: &[u8], at: usize, max: usize) -> Result<Option<usize>, &'static str> {
    let window = &buf[at..buf.len().min(at + max)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) if at + i + 1 < buf.len() => {
            if buf[at + i + 1] == b'\n' {
                Ok(Some(at + i))
            } else {
                Err("expected CRLF")
            }
        }
        Some(_) => Ok(None),
        None if window.len() >= max => Err("length line too long"),
        None => Ok(None),
    }
}

/// A decimal length as RESP writes it (`-1` allowed, no `+`, no spaces).
fn number(digits: &[u8]) -> Option<i64> {
    let (neg, d) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if d.is_empty() || d.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &b in d {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(b - b'0');
    }
    Some(if neg { -n } else { n })
}

/// Parses the command at the front of `buf`, putting its arguments' ranges in `args`.
pub fn parse(buf: &[u8], args: &mut Vec<(usize, usize)>, lim: Limits) -> Parsed {
    args.clear();
    match buf.first() {
        None => Parsed::Incomplete { need: 1 },
        Some(b'*') => multibulk(buf, args, lim),
        Some(_) => inline(buf, args, lim),
    }
}

fn multibulk(buf: &[u8], args: &mut Vec<(usize, usize)>, lim: Limits) -> Parsed {
    let end = match line_end(buf, 1, MAX_LEN_LINE) {
        Ok(Some(e)) => e,
        Ok(None) => return Parsed::Incomplete { need: 0 },
        Err(_) => return Parsed::Malformed("invalid multibulk length"),
    };
    let Some(n) = number(&buf[1..end]) else {
        return Parsed::Malformed("invalid multibulk length");
    };
    let mut pos = end + 2;
    if n <= 0 {
        return Parsed::Command { len: pos };
    }
    let n = n as usize;
    if n > lim.max_args {
        return Parsed::Malformed("too many arguments in one command");
    }
    for i in 0..n {
        // What the remaining arguments take at the least (`$0\r\n\r\n` each): a command of many
        // arguments arriving in many reads is parsed again only once that much more is here,
        // not after every read.
        let at_least = pos + (n - i) * 6;
        match buf.get(pos) {
            None => return Parsed::Incomplete { need: at_least },
            Some(b'$') => {}
            Some(_) => return Parsed::Malformed("expected '$' before an argument"),
        }
        let end = match line_end(buf, pos + 1, MAX_LEN_LINE) {
            Ok(Some(e)) => e,
            Ok(None) => return Parsed::Incomplete { need: at_least },
            Err(_) => return Parsed::Malformed("invalid bulk length"),
        };
        let len = match number(&buf[pos + 1..end]) {
            Some(l) if l >= 0 => l as usize,
            _ => return Parsed::Malformed("invalid bulk length"),
        };
        let start = end + 2;
        if len > lim.max_bulk {
            return Parsed::Oversized {
                header: start,
                skip: len + 2,
                args_left: n - i - 1,
                size: len,
            };
        }
        let stop = start + len;
        if buf.len() < stop + 2 {
            return Parsed::Incomplete {
                need: (stop + 2).max(at_least + len),
            };
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Parsed::Malformed("expected CRLF after a bulk argument");
        }
        args.push((start, stop));
        pos = stop + 2;
    }
    Parsed::Command { len: pos }
}

fn inline(buf: &[u8], args: &mut Vec<(usize, usize)>, lim: Limits) -> Parsed {
    let window = &buf[..buf.len().min(lim.max_inline)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if window.len() >= lim.max_inline {
            return Parsed::Malformed("too big inline request");
        }
        return Parsed::Incomplete { need: 0 };
    };
    let line_stop = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let mut i = 0;
    while i < line_stop {
        while i < line_stop && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < line_stop && !buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i > start {
            if args.len() == lim.max_args {
                return Parsed::Malformed("too many arguments in one command");
            }
            args.push((start, i));
        }
    }
    Parsed::Command { len: nl + 1 }
}

/// Discarding the rest of an oversized command as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discard {
    /// Bytes of the current argument (and its CRLF) still to drop.
    pub skip: usize,
    /// Arguments after it.
    pub args_left: usize,
}

impl Discard {
    /// Drops what it can from the front of `buf`: returns the bytes consumed, and whether the
    /// command is over. A malformed header in the remainder is reported like any other.
    pub fn advance(&mut self, buf: &[u8]) -> Result<(usize, bool), &'static str> {
        let mut used = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len() - used);
                self.skip -= n;
                used += n;
                if self.skip > 0 {
                    return Ok((used, false));
                }
            }
            if self.args_left == 0 {
                return Ok((used, true));
            }
            match buf.get(used) {
                None => return Ok((used, false)),
                Some(b'$') => {}
                Some(_) => return Err("expected '$' before an argument"),
            }
            let Some(end) = line_end(buf, used + 1, MAX_LEN_LINE)? else {
                return Ok((used, false));
            };
            let len = match number(&buf[used + 1..end]) {
                Some(l) if l >= 0 => l as usize,
                _ => return Err("invalid bulk length"),
            };
            used = end + 2;
            self.skip = len + 2;
            self.args_left -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIM: Limits = Limits {
        max_bulk: 64,
        max_args: 8,
        max_inline: 32,
    };

    fn args_of<'a>(buf: &'a [u8], r: &[(usize, usize)]) -> Vec<&'a [u8]> {
        r.iter().map(|&(a, b)| &buf[a..b]).collect()
    }

    fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            v.extend_from_slice(a);
            v.extend_from_slice(b"\r\n");
        }
        v
    }

    #[test]
    fn multibulk_and_inline_commands() {
        let mut r = Vec::new();
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nrest";
        assert_eq!(
            parse(buf, &mut r, LIM),
            Parsed::Command { len: buf.len() - 4 }
        );
        assert_eq!(args_of(buf, &r), [&b"SET"[..], b"k", b""]);
        let buf = b"  get   key\r\nPING\n";
        assert_eq!(parse(buf, &mut r, LIM), Parsed::Command { len: 13 });
        assert_eq!(args_of(buf, &r), [&b"get"[..], b"key"]);
        assert_eq!(parse(b"\r\n", &mut r, LIM), Parsed::Command { len: 2 });
        assert!(r.is_empty());
        assert_eq!(parse(b"*0\r\n", &mut r, LIM), Parsed::Command { len: 4 });
        assert_eq!(parse(b"*-1\r\n", &mut r, LIM), Parsed::Command { len: 5 });
    }

    #[test]
    fn malformed_frames_are_named() {
        let mut r = Vec::new();
        for (buf, why) in [
            (&b"*x\r\n"[..], "invalid multibulk length"),
            (b"*1\r\n+OK\r\n", "expected '$' before an argument"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (
                b"*1\r\n$2\r\nabcd\r\n",
                "expected CRLF after a bulk argument",
            ),
            (b"*9\r\n", "too many arguments in one command"),
            (b"*1\r\n$1\rx", "invalid bulk length"),
            (
                b"*11111111111111111111111111111111111",
                "invalid multibulk length",
            ),
            (&[b'a'; 40][..], "too big inline request"),
        ] {
            assert_eq!(parse(buf, &mut r, LIM), Parsed::Malformed(why), "{buf:?}");
        }
    }

    #[test]
    fn an_oversized_argument_is_skipped_as_it_streams() {
        let mut r = Vec::new();
        let big = vec![b'v'; 100];
        let buf = encode(&[b"SET", b"k", &big, b"EX", b"10"]);
        let header = match parse(&buf, &mut r, LIM) {
            Parsed::Oversized {
                header,
                skip: 102,
                args_left: 2,
                size: 100,
            } => header,
            other => panic!("{other:?}"),
        };
        let mut d = Discard {
            skip: 102,
            args_left: 2,
        };
        // Fed a few bytes at a time, then the next command parses.
        let mut rest = buf[header..].to_vec();
        rest.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        let mut at = 0;
        let mut done = false;
        while !done {
            let chunk = &rest[at..(at + 7).min(rest.len())];
            let (used, over) = d.advance(chunk).unwrap();
            at += used;
            done = over;
            if !over {
                assert!(used > 0 || chunk.len() < 7, "stuck at {at}");
                if used == 0 {
                    break;
                }
            }
        }
        assert!(done);
        assert_eq!(parse(&rest[at..], &mut r, LIM), Parsed::Command { len: 14 });
    }

    proptest! {
        #[test]
        fn any_split_of_a_pipeline_parses_to_the_same_commands(
            cmds in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5),
                1..6,
            ),
            cut in 0usize..200,
        ) {
            let mut wire = Vec::new();
            for c in &cmds {
                let refs: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
                wire.extend(encode(&refs));
            }
            let cut = cut.min(wire.len());
            let mut r = Vec::new();
            // A prefix never parses to more than it holds.
            let mut at = 0;
            while let Parsed::Command { len } = parse(&wire[at..cut], &mut r, LIM) {
                at += len;
            }
            prop_assert!(at <= cut);
            let mut got = Vec::new();
            let mut at = 0;
            while at < wire.len() {
                match parse(&wire[at..], &mut r, LIM) {
                    Parsed::Command { len } => {
                        got.push(args_of(&wire[at..], &r).iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                        at += len;
                    }
                    other => prop_assert!(false, "{:?}", other),
                }
            }
            prop_assert_eq!(got, cmds);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut r = Vec::new();
            if let Parsed::Command { len } = parse(&bytes, &mut r, LIM) {
                prop_assert!(len <= bytes.len());
                prop_assert!(r.iter().all(|&(a, b)| a <= b && b <= len));
            }
            let mut d = Discard { skip: 3, args_left: 2 };
            let _ = d.advance(&bytes);
        }
    }
}
