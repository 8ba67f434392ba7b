//! HTTP(S) calls from this node to its peers: forwarded writes, replica writes, partition pulls,
//! ring fetches and writer states go through one pooled keep-alive reqwest client; forwarded reads
//! through the coalescing connections of [`super::pipeline`]. Every call authenticates with the
//! internal token; a client's own credentials never leave the node.

use super::pipeline::{Pipelines, Sender};
use crate::engine::Record;
use crate::tls::TlsClient;
use crate::wire;
use crate::wire::KeyResult;
use bytes::Bytes;
use std::time::Duration;

/// Set on a request forwarded by a node: the receiver must not forward it again.
pub const FORWARDED: &str = "x-ringcache-forwarded";
/// The ring epoch of the sender (internal and forwarded requests) or responder.
pub const EPOCH: &str = "x-ringcache-epoch";
/// `ip:port` of the sender, so a receiver that learns of a newer epoch knows whom to ask.
pub const ORIGIN: &str = "x-ringcache-origin";

/// Largest ring document accepted from anywhere (65 536 partitions × 7 owners fit easily).
pub const MAX_RING_BYTES: usize = 16 << 20;

/// Per-hop timeout of forwarded requests and replica writes.
pub const HOP_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("{addr}: {source}")]
    Http {
        addr: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{addr} answered {status}: {body}")]
    Status {
        addr: String,
        status: u16,
        body: String,
    },
    #[error("{addr}: {source}")]
    Pipe {
        addr: String,
        #[source]
        source: super::pipeline::PipeError,
    },
    #[error("{addr}: {0}", addr = .1)]
    Wire(#[source] wire::WireError, String),
    #[error("peer address is unknown")]
    NoAddr,
}

impl PeerError {
    /// Whether another owner should be tried (connection trouble or a 5xx), as opposed to an
    /// answer that would be the same anywhere.
    pub fn retryable(&self) -> bool {
        match self {
            PeerError::Status { status, .. } => *status >= 500,
            _ => true,
        }
    }
}

/// A public key request to pass on to an owner (authenticated with the internal token: the
/// client's credentials were checked here and stay here).
pub struct ForwardRequest<'a> {
    pub method: reqwest::Method,
    pub path_and_query: &'a str,
    pub body: Option<Bytes>,
}

/// A forwarded response: status, body, and the responder's epoch if it sent one.
#[derive(Debug)]
pub struct Forwarded {
    pub status: u16,
    pub body: Bytes,
    pub epoch: Option<u64>,
}

#[derive(Clone)]
pub struct Peers {
    pub(crate) http: reqwest::Client,
    pipes: Pipelines,
    internal_token: Option<String>,
    /// `http` or `https` (with `--tls-ca-file`).
    scheme: &'static str,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the peer HTTP client: {0}")]
pub struct PeersError(#[from] reqwest::Error);

impl Peers {
    /// `idle`: how long an idle pooled connection is reused (below the peers' header read
    /// timeout, after which they close it).
    pub fn new(
        internal_token: Option<String>,
        tls: Option<TlsClient>,
        idle: Duration,
    ) -> Result<Peers, PeersError> {
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
        Ok(Peers {
            http: builder.build()?,
            pipes: Pipelines::new(
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

    fn internal(
        &self,
        rb: reqwest::RequestBuilder,
        epoch: u64,
        origin: &str,
    ) -> reqwest::RequestBuilder {
        let rb = rb.header(EPOCH, epoch).header(ORIGIN, origin);
        match &self.internal_token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Reads `key` from the owner at `addr` as part of a coalesced multi-get. `Ok(None)`: the
    /// owner serves the partition and has no such key. Returns the owner's epoch as well.
    pub async fn read_forwarded(
        &self,
        addr: &str,
        key: &[u8],
        from: &Sender,
    ) -> Result<(Option<Bytes>, Option<u64>), PeerError> {
        if addr.is_empty() {
            return Err(PeerError::NoAddr);
        }
        let pipe = |source| PeerError::Pipe {
            addr: addr.to_string(),
            source,
        };
        let a = match self.pipes.get(addr, key, from).await {
            Ok(a) => a,
            Err(super::pipeline::PipeError::Refused { status, message }) => {
                return Err(PeerError::Status {
                    addr: addr.to_string(),
                    status,
                    body: message,
                });
            }
            Err(e) => return Err(pipe(e)),
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

    /// Sends a public key request to `addr`, marked as forwarded.
    pub async fn forward(
        &self,
        addr: &str,
        req: ForwardRequest<'_>,
        epoch: u64,
        origin: &str,
    ) -> Result<Forwarded, PeerError> {
        let ForwardRequest {
            method,
            path_and_query,
            body,
        } = req;
        if addr.is_empty() {
            return Err(PeerError::NoAddr);
        }
        let rb = self
            .http
            .request(method, self.url(addr, path_and_query))
            .timeout(HOP_TIMEOUT)
            .header(FORWARDED, "1");
        let mut rb = self.internal(rb, epoch, origin);
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let http = |source| PeerError::Http {
            addr: addr.to_string(),
            source,
        };
        let resp = rb.send().await.map_err(http)?;
        let status = resp.status().as_u16();
        let epoch = header_epoch(resp.headers());
        let body = resp.bytes().await.map_err(http)?;
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

    /// Replica write: `POST /internal/v1/apply` with a record stream. Returns the peer's epoch.
    pub async fn apply(
        &self,
        addr: &str,
        records: &[Record],
        epoch: u64,
        origin: &str,
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
            .internal(rb, epoch, origin)
            .send()
            .await
            .map_err(|source| PeerError::Http {
                addr: addr.to_string(),
                source,
            })?;
        check(addr, resp).await.map(|r| header_epoch(r.headers()))
    }

    /// `GET /internal/v1/partitions/{p}?after=HEX` as a response whose body the caller streams.
    pub async fn pull(
        &self,
        addr: &str,
        p: u32,
        after: Option<&[u8]>,
        epoch: u64,
        origin: &str,
    ) -> Result<reqwest::Response, PeerError> {
        if addr.is_empty() {
            return Err(PeerError::NoAddr);
        }
        let mut url = self.url(addr, &format!("/internal/v1/partitions/{p}"));
        if let Some(a) = after {
            url.push_str("?after=");
            url.push_str(&hex(a));
        }
        let resp = self
            .internal(self.http.get(url), epoch, origin)
            .send()
            .await
            .map_err(|source| PeerError::Http {
                addr: addr.to_string(),
                source,
            })?;
        check(addr, resp).await
    }

    /// The ring epoch `addr` serves with and the oldest epoch of the writes it still coordinates
    /// (its `/healthz`, asked with our epoch, which also teaches the peer a newer ring if we have
    /// one).
    pub async fn writer_state(
        &self,
        addr: &str,
        epoch: u64,
        origin: &str,
    ) -> Result<(u64, Option<u64>), PeerError> {
        let http = |source| PeerError::Http {
            addr: addr.to_string(),
            source,
        };
        let resp = self
            .http
            .get(self.url(addr, "/healthz"))
            .timeout(HOP_TIMEOUT)
            .header(EPOCH, epoch)
            .header(ORIGIN, origin)
            .send()
            .await
            .map_err(http)?;
        let body = check(addr, resp).await?.bytes().await.map_err(http)?;
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

    /// `GET /internal/v1/ring` of a peer, with the internal token (never the client's), the
    /// body bounded by [`MAX_RING_BYTES`].
    pub async fn fetch_ring(&self, addr: &str) -> Result<Bytes, PeerError> {
        let http = |source| PeerError::Http {
            addr: addr.to_string(),
            source,
        };
        let rb = self
            .http
            .get(self.url(addr, "/internal/v1/ring"))
            .timeout(HOP_TIMEOUT);
        let rb = match &self.internal_token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        };
        let mut resp = check(addr, rb.send().await.map_err(http)?).await?;
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
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_RING_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
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
    h.get(EPOCH)?.to_str().ok()?.parse().ok()
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
    fn hex_roundtrip() {
        assert_eq!(super::hex(b"\x00\xffab"), "00ff6162");
        assert_eq!(super::unhex("00ff6162").unwrap(), b"\x00\xffab");
        assert!(super::unhex("0").is_none());
        assert!(super::unhex("zz").is_none());
    }
}
