//! [`PeerApi`] over HTTP(S): forwarded writes, replica writes, partition pulls, ring fetches and
//! writer states go through one pooled keep-alive reqwest client; forwarded reads through the
//! coalescing connections of [`super::coalesce`]. Every call authenticates with the internal
//! token; a client's own credentials never leave the node.

use super::coalesce::{Coalescer, ConnError};
use super::ops::{KeyOp, OpRequest};
use super::peers::{
    Forwarded, MAX_RING_BYTES, PeerApi, PeerError, ReadAnswer, RecordStream, Sender, WriteOp,
};
use crate::engine::Record;
use crate::tls::TlsClient;
use crate::wire;
use crate::wire::KeyResult;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use ringcache_common::protocol::{EPOCH_HEADER, FORWARDED_HEADER, ORIGIN_HEADER};
use std::time::Duration;

/// Per-hop timeout of forwarded requests and replica writes.
pub const HOP_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A reqwest error with its causes ("error sending request" alone says nothing).
fn unreachable(addr: &str, e: &(dyn std::error::Error + 'static)) -> PeerError {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    PeerError::Unreachable {
        addr: addr.to_string(),
        message,
    }
}

#[derive(Clone)]
pub struct HttpPeers {
    http: reqwest::Client,
    reads: Coalescer,
    internal_token: Option<String>,
    /// `http` or `https` (with `--tls-ca-file`).
    scheme: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the peer HTTP client: {0}")]
pub struct PeersError(#[from] reqwest::Error);

impl HttpPeers {
    /// `idle`: how long an idle pooled connection is reused (below the peers' header read
    /// timeout, after which they close it).
    pub fn new(
        internal_token: Option<String>,
        tls: Option<TlsClient>,
        idle: Duration,
    ) -> Result<HttpPeers, PeersError> {
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            // Peers are pod IPs: an HTTP(S)_PROXY from the environment must not capture them.
            .no_proxy();
        if let Some(t) = &tls {
            builder = builder.tls_backend_preconfigured((*t.config).clone());
        }
        Ok(HttpPeers {
            http: builder.build()?,
            reads: Coalescer::new(
                internal_token.as_deref(),
                CONNECT_TIMEOUT,
                HOP_TIMEOUT,
                tls.clone(),
            ),
            internal_token,
            scheme: if tls.is_some() { "https" } else { "http" },
        })
    }

    fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// `rb` with the internal token and the sender's epoch and address.
    fn internal(&self, rb: reqwest::RequestBuilder, from: &Sender) -> reqwest::RequestBuilder {
        let rb = rb
            .header(EPOCH_HEADER, from.epoch)
            .header(ORIGIN_HEADER, &*from.origin);
        match &self.internal_token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn read_coalesced(
        &self,
        addr: &str,
        key: &[u8],
        from: &Sender,
    ) -> Result<ReadAnswer, PeerError> {
        if addr.is_empty() {
            return Err(PeerError::NoAddr);
        }
        let a = match self.reads.get(addr, key, from).await {
            Ok(a) => a,
            Err(ConnError::Refused { status, message }) => {
                return Err(PeerError::Status {
                    addr: addr.to_string(),
                    status,
                    body: message,
                });
            }
            Err(e) => return Err(unreachable(addr, &e)),
        };
        match a.result {
            KeyResult::Found(v) => Ok((Some(v), a.epoch)),
            KeyResult::Missing => Ok((None, a.epoch)),
            KeyResult::NotServed => Err(PeerError::Status {
                addr: addr.to_string(),
                status: 503,
                body: format!(
                    "does not serve this key's partition (its epoch {:?}, ours {})",
                    a.epoch, from.epoch
                ),
            }),
        }
    }

    async fn forward_write(
        &self,
        addr: &str,
        key: &[u8],
        op: &WriteOp,
        from: &Sender,
    ) -> Result<Forwarded, PeerError> {
        if addr.is_empty() {
            return Err(PeerError::NoAddr);
        }
        let mut path = key_path(key);
        let (method, body) = match op {
            WriteOp::Set { value, ttl_ms } => {
                if let Some(t) = ttl_ms {
                    path.push_str(&format!("?ttl={t}ms"));
                }
                (reqwest::Method::PUT, Some(value.clone()))
            }
            WriteOp::Delete => (reqwest::Method::DELETE, None),
        };
        let rb = self
            .http
            .request(method, self.url(addr, &path))
            .timeout(HOP_TIMEOUT)
            .header(FORWARDED_HEADER, "1");
        let mut rb = self.internal(rb, from);
        if let Some(b) = body {
            rb = rb.body(b);
        }
        forwarded(addr, rb).await
    }

    async fn forward_op(
        &self,
        addr: &str,
        key: &[u8],
        op: &KeyOp,
        from: &Sender,
    ) -> Result<Forwarded, PeerError> {
        if addr.is_empty() {
            return Err(PeerError::NoAddr);
        }
        let req = OpRequest {
            key: Bytes::copy_from_slice(key),
            op: op.clone(),
        };
        let rb = self
            .http
            .post(self.url(addr, "/internal/v1/op"))
            .timeout(HOP_TIMEOUT)
            .header(FORWARDED_HEADER, "1")
            .json(&req);
        forwarded(addr, self.internal(rb, from)).await
    }

    async fn replicate(
        &self,
        addr: &str,
        records: &[Record],
        from: &Sender,
    ) -> Result<Option<u64>, PeerError> {
        if addr.is_empty() {
            return Err(PeerError::NoAddr);
        }
        let rb = self
            .http
            .post(self.url(addr, "/internal/v1/apply"))
            .timeout(HOP_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, wire::CONTENT_TYPE)
            .body(wire::encode_all(records));
        let resp = self
            .internal(rb, from)
            .send()
            .await
            .map_err(|e| unreachable(addr, &e))?;
        check(addr, resp).await.map(|r| header_epoch(r.headers()))
    }

    /// `GET /internal/v1/partitions/{p}?after=HEX`, its body as a stream.
    async fn pull_partition(
        &self,
        addr: &str,
        p: u32,
        after: Option<&[u8]>,
        from: &Sender,
    ) -> Result<RecordStream, PeerError> {
        if addr.is_empty() {
            return Err(PeerError::NoAddr);
        }
        let mut url = self.url(addr, &format!("/internal/v1/partitions/{p}"));
        if let Some(a) = after {
            url.push_str("?after=");
            url.push_str(&hex(a));
        }
        let resp = self
            .internal(self.http.get(url), from)
            .send()
            .await
            .map_err(|e| unreachable(addr, &e))?;
        let addr = addr.to_string();
        let stream = check(&addr, resp).await?.bytes_stream();
        Ok(stream
            .map(move |chunk| chunk.map_err(|e| unreachable(&addr, &e)))
            .boxed())
    }

    /// The peer's `/healthz`, asked with our epoch, which also teaches the peer a newer ring if
    /// we have one.
    async fn healthz_state(
        &self,
        addr: &str,
        from: &Sender,
    ) -> Result<(u64, Option<u64>), PeerError> {
        let resp = self
            .http
            .get(self.url(addr, "/healthz"))
            .timeout(HOP_TIMEOUT)
            .header(EPOCH_HEADER, from.epoch)
            .header(ORIGIN_HEADER, &*from.origin)
            .send()
            .await
            .map_err(|e| unreachable(addr, &e))?;
        let body = check(addr, resp)
            .await?
            .bytes()
            .await
            .map_err(|e| unreachable(addr, &e))?;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match v["epoch"].as_u64() {
            Some(e) => Ok((e, v["oldestWriteEpoch"].as_u64())),
            None => Err(PeerError::Status {
                addr: addr.to_string(),
                status: 200,
                body: format!("no epoch in /healthz: {}", String::from_utf8_lossy(&body)),
            }),
        }
    }

    /// `GET /internal/v1/ring` with the internal token (never the client's), the body bounded
    /// by [`MAX_RING_BYTES`].
    async fn ring_of(&self, addr: &str) -> Result<Bytes, PeerError> {
        let rb = self
            .http
            .get(self.url(addr, "/internal/v1/ring"))
            .timeout(HOP_TIMEOUT);
        let rb = match &self.internal_token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        };
        let sent = rb.send().await.map_err(|e| unreachable(addr, &e))?;
        let mut resp = check(addr, sent).await?;
        let too_large = || PeerError::Status {
            addr: addr.to_string(),
            status: 413,
            body: format!("ring document larger than {MAX_RING_BYTES} bytes"),
        };
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_RING_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unreachable(addr, &e))? {
            if body.len() + chunk.len() > MAX_RING_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

impl PeerApi for HttpPeers {
    fn read<'a>(
        &'a self,
        addr: &'a str,
        key: &'a [u8],
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<ReadAnswer, PeerError>> {
        self.read_coalesced(addr, key, from).boxed()
    }

    fn write<'a>(
        &'a self,
        addr: &'a str,
        key: &'a [u8],
        op: &'a WriteOp,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<Forwarded, PeerError>> {
        self.forward_write(addr, key, op, from).boxed()
    }

    fn op<'a>(
        &'a self,
        addr: &'a str,
        key: &'a [u8],
        op: &'a KeyOp,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<Forwarded, PeerError>> {
        self.forward_op(addr, key, op, from).boxed()
    }

    fn keyspace<'a>(
        &'a self,
        addr: &'a str,
        q: &'a super::keyspace_query::Query,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<Forwarded, PeerError>> {
        async move {
            if addr.is_empty() {
                return Err(PeerError::NoAddr);
            }
            let rb = self
                .http
                .post(self.url(addr, "/internal/v1/keyspace"))
                .timeout(KEYSPACE_TIMEOUT)
                .json(q);
            forwarded(addr, self.internal(rb, from)).await
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        addr: &'a str,
        records: &'a [Record],
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<Option<u64>, PeerError>> {
        self.replicate(addr, records, from).boxed()
    }

    fn pull<'a>(
        &'a self,
        addr: &'a str,
        p: u32,
        after: Option<&'a [u8]>,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<RecordStream, PeerError>> {
        self.pull_partition(addr, p, after, from).boxed()
    }

    fn writer_state<'a>(
        &'a self,
        addr: &'a str,
        from: &'a Sender,
    ) -> BoxFuture<'a, Result<(u64, Option<u64>), PeerError>> {
        self.healthz_state(addr, from).boxed()
    }

    fn fetch_ring<'a>(&'a self, addr: &'a str) -> BoxFuture<'a, Result<Bytes, PeerError>> {
        self.ring_of(addr).boxed()
    }
}

/// `/v1/keys/{key}` with the key percent-encoded as one path segment (RFC 3986 unreserved bytes
/// stay as they are).
fn key_path(key: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(9 + key.len() * 3);
    s.push_str("/v1/keys/");
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push('%');
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
    }
    s
}

/// Sends a forwarded client operation: an answer below 500 is the owner's, 5xx and no answer
/// are errors (the next owner is tried).
/// A keyspace query lists or deletes every key of many partitions: longer than one hop.
const KEYSPACE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

async fn forwarded(addr: &str, rb: reqwest::RequestBuilder) -> Result<Forwarded, PeerError> {
    let resp = rb.send().await.map_err(|e| unreachable(addr, &e))?;
    let status = resp.status().as_u16();
    let epoch = header_epoch(resp.headers());
    let body = resp.bytes().await.map_err(|e| unreachable(addr, &e))?;
    if status >= 500 {
        return Err(PeerError::Status {
            addr: addr.to_string(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    Ok(Forwarded {
        status,
        body,
        epoch,
    })
}

async fn check(addr: &str, resp: reqwest::Response) -> Result<reqwest::Response, PeerError> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(PeerError::Status {
        addr: addr.to_string(),
        status,
        body,
    })
}

pub fn header_epoch(h: &reqwest::header::HeaderMap) -> Option<u64> {
    h.get(EPOCH_HEADER)?.to_str().ok()?.parse().ok()
}

pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_paths_are_percent_encoded() {
        assert_eq!(super::key_path(b"a b/c"), "/v1/keys/a%20b%2Fc");
        assert_eq!(super::key_path(b"user:1"), "/v1/keys/user%3A1");
    }

    #[test]
    fn hex_roundtrip() {
        assert_eq!(super::hex(b"\x00\xffab"), "00ff6162");
        assert_eq!(super::unhex("00ff6162").unwrap(), b"\x00\xffab");
        assert!(super::unhex("0").is_none());
        assert!(super::unhex("zz").is_none());
    }
}
