//! A minimal Redis-protocol client for the e2e scenarios: commands as RESP arrays over any
//! byte stream (a port-forward to a pod's `redis` port), replies read one at a time. The
//! encoding and reply reading are pure and unit-tested; the scenarios supply the stream.

use std::time::Duration;

use crate::E2eError;
use crate::harness::within;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest one command may take, through the port-forward to the pod and back.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// A reply, as far as the scenarios look at one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

/// `args` as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// The reply at the front of `b` and its length; `Ok(None)` when `b` holds no whole reply.
pub fn parse(b: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(end) = b.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&b[1..end]).map_err(|e| format!("reply line: {e}"))?;
    let after = end + 2;
    let number = || line.parse::<i64>().map_err(|e| format!("{line:?}: {e}"));
    Ok(Some(match b[0] {
        b'+' => (Reply::Simple(line.to_string()), after),
        b'-' => (Reply::Error(line.to_string()), after),
        b':' => (Reply::Int(number()?), after),
        b'$' => {
            let n = number()?;
            if n < 0 {
                (Reply::Bulk(None), after)
            } else {
                let stop = after + n as usize;
                if b.len() < stop + 2 {
                    return Ok(None);
                }
                (Reply::Bulk(Some(b[after..stop].to_vec())), stop + 2)
            }
        }
        b'*' => {
            let n = number()?;
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..n.max(0) {
                let Some((item, len)) = parse(&b[at..])? else {
                    return Ok(None);
                };
                items.push(item);
                at += len;
            }
            (Reply::Array(items), at)
        }
        other => return Err(format!("unexpected reply type {:?}", other as char)),
    }))
}

/// A connection speaking RESP over `S`.
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one command and reads its reply, within [`CALL_TIMEOUT`].
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, E2eError> {
        let what = format!(
            "RESP {}",
            String::from_utf8_lossy(args.first().copied().unwrap_or_default())
        );
        within(CALL_TIMEOUT, &what, self.exchange(args)).await
    }

    async fn exchange(&mut self, args: &[&[u8]]) -> Result<Reply, E2eError> {
        self.stream
            .write_all(&encode(args))
            .await
            .map_err(|e| E2eError::check(format!("RESP write: {e}")))?;
        loop {
            if let Some((reply, len)) = parse(&self.buf).map_err(E2eError::check)? {
                self.buf.drain(..len);
                return Ok(reply);
            }
            let mut chunk = [0u8; 16 << 10];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| E2eError::check(format!("RESP read: {e}")))?;
            if n == 0 {
                return Err(E2eError::check("the RESP connection closed"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        let wire = b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n+OK\r\n";
        let (r, len) = parse(wire).unwrap().unwrap();
        assert_eq!(
            r,
            Reply::Array(vec![
                Reply::Bulk(Some(b"a".to_vec())),
                Reply::Bulk(None),
                Reply::Int(7)
            ])
        );
        assert_eq!(
            parse(&wire[len..]).unwrap().unwrap().0,
            Reply::Simple("OK".into())
        );
        for cut in 0..len {
            assert_eq!(parse(&wire[..cut]).unwrap(), None, "{cut}");
        }
        assert_eq!(
            parse(b"-ERR x\r\n").unwrap().unwrap().0,
            Reply::Error("ERR x".into())
        );
        assert!(parse(b"!3\r\n").is_err());
        assert_eq!(encode(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
