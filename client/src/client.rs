//! The ring-aware client: fetches the ring, routes each key to an owner, fails over, follows epochs.

use crate::endpoint::{self, display};
use crate::route::{self, Op};
use crate::{Attempt, Error};
use bytes::Bytes;
use parking_lot::RwLock;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use ringcache_ring::{MAX_KEY_LEN, MemberState, RingDoc};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Response header in which a node states the ring epoch it serves with. A client that sees an
/// epoch above its own fetches the ring again.
pub use ringcache_common::protocol::EPOCH_HEADER;

/// Settings for [`Client`]. `ClientBuilder::new(seeds).token(t).connect().await`.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    seeds: Vec<String>,
    token: Option<String>,
    connect_timeout: Duration,
    request_timeout: Duration,
    direct: bool,
    ca_pem: Option<Vec<u8>>,
    tls_server_name: Option<String>,
}

impl ClientBuilder {
    pub fn new<I, S>(seeds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder {
            seeds: seeds.into_iter().map(Into::into).collect(),
            token: None,
            // Short: a dead pod's IP usually does not refuse, it just never answers, and the next
            // owner is waiting.
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            direct: true,
            ca_pem: None,
            tls_server_name: None,
        }
    }

    /// PEM CA certificate(s) to verify nodes against, for clusters with `spec.tls` (the Secret's
    /// `ca.crt`). Only these CAs are trusted then.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// The name every node's certificate is verified against. Nodes are dialled by pod IP, which
    /// certificates do not carry; the default is the first seed's host name when it is one
    /// (`NAME.NAMESPACE.svc`, which the cluster's certificate names), else the address dialled.
    pub fn tls_server_name(mut self, name: impl Into<String>) -> Self {
        self.tls_server_name = Some(name.into());
        self
    }

    /// Bearer token sent on every request (the cluster's `spec.auth` Secret).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whole-request timeout per node tried (a slow node counts as failed and the next is tried).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// `false`: send every request to the seeds and let the nodes forward. For clients that cannot
    /// reach pod IPs (outside the cluster, through a Service or a proxy).
    pub fn direct(mut self, direct: bool) -> Self {
        self.direct = direct;
        self
    }

    /// Builds the HTTP client and fetches the ring from the first seed that serves one.
    pub async fn connect(self) -> Result<Client, Error> {
        if self.seeds.is_empty() {
            return Err(Error::NoSeeds);
        }
        let seeds = self
            .seeds
            .iter()
            .map(|s| endpoint::parse_seed(s))
            .collect::<Result<Vec<_>, _>>()?;
        // reqwest is built without a TLS provider of its own (ring is the workspace's).
        ringcache_common::tls::install_crypto_provider();
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &self.ca_pem {
            let name = self
                .tls_server_name
                .clone()
                .or_else(|| endpoint::tls_name_from_seeds(&seeds));
            let config = ringcache_common::tls::client_config(ca, name.as_deref())
                .map_err(|e| Error::Tls(e.to_string()))?;
            http = http.tls_backend_preconfigured(config);
        }
        // Members are reached the way the seeds are: all over TLS or none.
        let scheme = if seeds.iter().any(|s| s.scheme() == "https") {
            "https"
        } else {
            "http"
        };
        let http = http
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            // Below the nodes' default --header-read-timeout (10 s), after which a node closes an
            // idle keep-alive connection: a request sent on it just then would fail.
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // Pod IPs must be reached directly; an HTTP_PROXY meant for the internet would break it.
            .no_proxy()
            .build()
            .map_err(Error::HttpClient)?;
        let inner = Inner {
            http,
            scheme,
            seeds,
            token: self.token,
            direct: self.direct,
            routing: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
        };
        let (doc, _) = inner.fetch_ring(&[], 0).await?;
        *inner.routing.write() = Some(Arc::new(Routing::new(doc, scheme)));
        Ok(Client {
            inner: Arc::new(inner),
        })
    }
}

/// A ringcache client. Cheap to clone; clones share the connection pool and the ring.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of debug output.
        f.debug_struct("Client")
            .field("seeds", &self.inner.seeds)
            .field("epoch", &self.ring_epoch())
            .field("direct", &self.inner.direct)
            .finish_non_exhaustive()
    }
}

/// One node's `/v1/stats` answer, or why there is none.
#[derive(Debug)]
pub struct NodeStats {
    /// Member id, or the seed URL when the client is not routing directly.
    pub id: String,
    pub addr: String,
    /// `None` when the client is not routing directly (seeds have no ring state).
    pub state: Option<MemberState>,
    pub stats: Result<serde_json::Value, Error>,
}

impl Client {
    /// Connects with default settings. See [`ClientBuilder`] for a token and timeouts.
    pub async fn connect<I, S>(seeds: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder::new(seeds).connect().await
    }

    pub fn builder<I, S>(seeds: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder::new(seeds)
    }

    /// The ring this client routes with.
    pub fn ring(&self) -> Arc<RingDoc> {
        Arc::clone(&self.inner.current().doc)
    }

    pub fn ring_epoch(&self) -> u64 {
        self.inner.current().doc.epoch
    }

    /// Fetches the ring now (from the members, then the seeds) and keeps it when it is newer.
    /// Returns the epoch routed with afterwards.
    pub async fn refresh_ring(&self) -> Result<u64, Error> {
        let epoch = self.ring_epoch();
        self.inner.refresh(None, epoch + 1).await?;
        Ok(self.ring_epoch())
    }

    /// The value of `key`, or `None` when no node has it.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        check_key(key)?;
        let answer = self
            .inner
            .routed("get", key, Op::Read, &|base: &Url| {
                (Method::GET, endpoint::key_url(base, key, None), None)
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(answer.body))
    }

    /// Stores `value` under `key`, expiring after `ttl` when given.
    pub async fn set(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        check_key(key)?;
        let value: Bytes = value.into();
        self.inner
            .routed("set", key, Op::Write, &|base: &Url| {
                (
                    Method::PUT,
                    endpoint::key_url(base, key, ttl),
                    Some(value.clone()),
                )
            })
            .await?;
        Ok(())
    }

    /// Deletes `key`; succeeds whether or not it existed.
    pub async fn del(&self, key: &str) -> Result<(), Error> {
        check_key(key)?;
        self.inner
            .routed("del", key, Op::Write, &|base: &Url| {
                (Method::DELETE, endpoint::key_url(base, key, None), None)
            })
            .await?;
        Ok(())
    }

    /// `/v1/stats` of every member of the ring (of every seed when not routing directly), asked
    /// concurrently. A member that does not answer is listed with its error.
    pub async fn stats(&self) -> Vec<NodeStats> {
        let targets: Vec<(String, String, Option<MemberState>, Option<Url>)> = if self.inner.direct
        {
            let routing = self.inner.current();
            routing
                .doc
                .members
                .iter()
                .zip(&routing.urls)
                .map(|(m, url)| (m.id.clone(), m.addr.clone(), Some(m.state), url.clone()))
                .collect()
        } else {
            self.inner
                .seeds
                .iter()
                .map(|u| (display(u), display(u), None, Some(u.clone())))
                .collect()
        };
        let asks = targets
            .into_iter()
            .map(|(id, addr, state, url)| async move {
                let stats = match url {
                    Some(url) => self.inner.stats_of(&url).await,
                    None => Err(Error::Unavailable {
                        op: "stats",
                        attempts: vec![Attempt {
                            node: id.clone(),
                            error: "member has no address".to_string(),
                        }],
                    }),
                };
                NodeStats {
                    id,
                    addr,
                    state,
                    stats,
                }
            });
        futures_util::future::join_all(asks).await
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::InvalidKey("empty key".to_string()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidKey(format!(
            "key is {} bytes, max {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

/// The ring plus each member's base URL, swapped as a whole on refresh.
struct Routing {
    doc: Arc<RingDoc>,
    urls: Vec<Option<Url>>,
}

impl Routing {
    fn new(doc: RingDoc, scheme: &str) -> Routing {
        let urls = doc
            .members
            .iter()
            .map(|m| endpoint::member_url(scheme, &m.addr))
            .collect();
        Routing {
            doc: Arc::new(doc),
            urls,
        }
    }
}

struct Inner {
    http: reqwest::Client,
    /// `https` when the seeds are: members are then reached over TLS too.
    scheme: &'static str,
    seeds: Vec<Url>,
    token: Option<String>,
    direct: bool,
    /// `None` only while `connect` runs.
    routing: RwLock<Option<Arc<Routing>>>,
    /// One ring fetch at a time; others wait for it and then find the ring already new.
    refresh: tokio::sync::Mutex<()>,
}

/// A request to send to one node: method, URL, body.
type Plan = (Method, Url, Option<Bytes>);

struct Answer {
    status: StatusCode,
    body: Bytes,
}

/// Why one try against one node gave no answer.
enum Failure {
    /// Connection error, timeout or retryable 5xx: try the next node.
    Retry(String),
    /// A definitive answer: every node would say the same.
    Fatal(Error),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    code: String,
}

impl Inner {
    fn current(&self) -> Arc<Routing> {
        match &*self.routing.read() {
            Some(r) => Arc::clone(r),
            // Unreachable after `connect`; an empty ring routes to the seeds only.
            None => Arc::new(Routing::new(RingDoc::single_node("-", "", 1), self.scheme)),
        }
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Nodes to try for `key`: owners first (see `route::candidates`), then the seeds.
    fn targets(&self, routing: &Routing, key: &str, op: Op) -> Vec<Url> {
        let mut out: Vec<Url> = Vec::new();
        if self.direct {
            let p = routing.doc.partition_of(key.as_bytes());
            for i in route::candidates(&routing.doc, p, op) {
                if let Some(Some(url)) = routing.urls.get(i as usize)
                    && !out.contains(url)
                {
                    out.push(url.clone());
                }
            }
        }
        for seed in &self.seeds {
            if !out.contains(seed) {
                out.push(seed.clone());
            }
        }
        out
    }

    /// Sends the request to each target in turn until one answers for good. When every one
    /// fails, fetches the ring once more and, if it moved on, tries again with the new owners.
    async fn routed(
        &self,
        op: &'static str,
        key: &str,
        kind: Op,
        plan: &(dyn Fn(&Url) -> Plan + Sync),
    ) -> Result<Answer, Error> {
        let mut retried_with_new_ring = false;
        loop {
            let routing = self.current();
            let mut attempts = Vec::new();
            for base in self.targets(&routing, key, kind) {
                let (method, url, body) = plan(&base);
                match self.try_once(&base, method, url, body, kind).await {
                    Ok(answer) => return Ok(answer),
                    Err(Failure::Fatal(e)) => return Err(e),
                    Err(Failure::Retry(error)) => {
                        tracing::debug!(op, node = %display(&base), %error, "failing over");
                        attempts.push(Attempt {
                            node: display(&base),
                            error,
                        });
                    }
                }
            }
            if !retried_with_new_ring {
                retried_with_new_ring = true;
                match self.refresh(None, routing.doc.epoch + 1).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => tracing::debug!(error = %e, "ring refresh after failure failed"),
                }
            }
            return Err(Error::Unavailable { op, attempts });
        }
    }

    async fn try_once(
        &self,
        base: &Url,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        kind: Op,
    ) -> Result<Answer, Failure> {
        let mut req = self.request(method, url);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err(Failure::Retry(describe(&e))),
        };
        let status = resp.status();
        let epoch = resp
            .headers()
            .get(EPOCH_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok());
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err(Failure::Retry(format!(
                    "reading the answer: {}",
                    describe(&e)
                )));
            }
        };
        if let Some(epoch) = epoch
            && epoch > self.current().doc.epoch
        {
            // Before answering, so the caller's next request already routes with the new owners.
            if let Err(e) = self.refresh(Some(base), epoch).await {
                tracing::warn!(error = %e, epoch, "node announced a newer ring but it could not be fetched");
            }
        }
        if status.is_success() || (kind == Op::Read && status == StatusCode::NOT_FOUND) {
            return Ok(Answer { status, body });
        }
        let (code, message) = error_text(status, &body);
        if retryable(status) {
            let code = if code.is_empty() {
                String::new()
            } else {
                format!(" ({code})")
            };
            return Err(Failure::Retry(format!(
                "{}{code}: {message}",
                status.as_u16()
            )));
        }
        Err(Failure::Fatal(Error::Server {
            node: display(base),
            status: status.as_u16(),
            code,
            message,
        }))
    }

    /// Fetches the ring until one with epoch ≥ `want` is found (trying `hint` first, then the
    /// members, then the seeds) and routes with the newest seen if it is newer than the current
    /// one. Returns whether the ring changed. Concurrent callers share one fetch.
    async fn refresh(&self, hint: Option<&Url>, want: u64) -> Result<bool, Error> {
        let before = self.current().doc.epoch;
        let _one_at_a_time = self.refresh.lock().await;
        let now = self.current();
        if now.doc.epoch > before || now.doc.epoch >= want {
            return Ok(now.doc.epoch > before);
        }
        let mut order: Vec<Url> = hint.into_iter().cloned().collect();
        if self.direct {
            for (m, url) in now.doc.members.iter().zip(&now.urls) {
                if let Some(url) = url
                    && m.state != MemberState::Down
                    && !order.contains(url)
                {
                    order.push(url.clone());
                }
            }
        }
        let (doc, node) = self.fetch_ring(&order, want).await?;
        if doc.epoch <= now.doc.epoch {
            return Ok(false);
        }
        tracing::debug!(from = now.doc.epoch, to = doc.epoch, %node, "ring refreshed");
        *self.routing.write() = Some(Arc::new(Routing::new(doc, self.scheme)));
        Ok(true)
    }

    /// `GET /v1/ring` from `first`, then the seeds. Stops at the first valid document with
    /// epoch ≥ `want`; otherwise returns the newest valid one seen (and who served it). A 4xx (bad
    /// token) ends the search: every node would say the same.
    async fn fetch_ring(&self, first: &[Url], want: u64) -> Result<(RingDoc, String), Error> {
        let mut order: Vec<Url> = first.to_vec();
        for seed in &self.seeds {
            if !order.contains(seed) {
                order.push(seed.clone());
            }
        }
        let mut attempts = Vec::new();
        let mut best: Option<(RingDoc, String)> = None;
        for base in order {
            let node = display(&base);
            match self.get_json_bytes(&base, &["v1", "ring"]).await {
                Ok(body) => match RingDoc::from_json(&body) {
                    Ok(doc) if doc.epoch >= want => return Ok((doc, node)),
                    Ok(doc) => {
                        if best.as_ref().is_none_or(|(b, _)| doc.epoch > b.epoch) {
                            best = Some((doc, node));
                        }
                    }
                    Err(e) => attempts.push(Attempt {
                        node,
                        error: format!("invalid ring document: {e}"),
                    }),
                },
                Err(Failure::Retry(error)) => attempts.push(Attempt { node, error }),
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
        best.ok_or(Error::Unavailable {
            op: "fetch ring",
            attempts,
        })
    }

    async fn stats_of(&self, base: &Url) -> Result<serde_json::Value, Error> {
        let node = display(base);
        match self.get_json_bytes(base, &["v1", "stats"]).await {
            Ok(body) => serde_json::from_slice(&body).map_err(|e| Error::Server {
                node,
                status: 200,
                code: "bad_stats".to_string(),
                message: format!("stats are not JSON: {e}"),
            }),
            Err(Failure::Fatal(e)) => Err(e),
            Err(Failure::Retry(error)) => Err(Error::Unavailable {
                op: "stats",
                attempts: vec![Attempt { node, error }],
            }),
        }
    }

    /// A plain GET of a JSON route on one node: the body on 2xx, else why not.
    async fn get_json_bytes(&self, base: &Url, path: &[&str]) -> Result<Bytes, Failure> {
        let url = endpoint::route(base, path);
        let resp = self
            .request(Method::GET, url)
            .send()
            .await
            .map_err(|e| Failure::Retry(describe(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| Failure::Retry(format!("reading the answer: {}", describe(&e))))?;
        if status.is_success() {
            return Ok(body);
        }
        let (code, message) = error_text(status, &body);
        if status.is_server_error() {
            return Err(Failure::Retry(format!("{}: {message}", status.as_u16())));
        }
        Err(Failure::Fatal(Error::Server {
            node: display(base),
            status: status.as_u16(),
            code,
            message,
        }))
    }
}

/// 5xx that another node may not repeat. 507 (memory full with eviction `none`) and 501 would be
/// answered the same by every node, so they are reported instead of retried.
fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        && status != StatusCode::INSUFFICIENT_STORAGE
        && status != StatusCode::NOT_IMPLEMENTED
}

/// The node's `{"error","code"}`, or the start of whatever else it sent.
fn error_text(status: StatusCode, body: &[u8]) -> (String, String) {
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return (e.code, e.error);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        let reason = status.canonical_reason().unwrap_or("no message");
        return (String::new(), reason.to_string());
    }
    (String::new(), text.chars().take(200).collect())
}

/// reqwest's errors hide the useful part (refused, timed out) in their source chain.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_outside_one_to_250_bytes_are_refused_before_any_request() {
        assert!(matches!(check_key(""), Err(Error::InvalidKey(_))));
        assert!(check_key(&"k".repeat(MAX_KEY_LEN)).is_ok());
        assert!(matches!(
            check_key(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(Error::InvalidKey(_))
        ));
    }

    #[test]
    fn only_5xx_that_another_node_could_fix_are_retried() {
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(StatusCode::BAD_GATEWAY));
        assert!(retryable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!retryable(StatusCode::INSUFFICIENT_STORAGE));
        assert!(!retryable(StatusCode::BAD_REQUEST));
        assert!(!retryable(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn error_text_reads_the_node_json_or_falls_back_to_the_body() {
        assert_eq!(
            error_text(
                StatusCode::PAYLOAD_TOO_LARGE,
                br#"{"error":"too big","code":"value_too_large"}"#
            ),
            ("value_too_large".to_string(), "too big".to_string())
        );
        assert_eq!(
            error_text(StatusCode::BAD_GATEWAY, b"upstream gone\n"),
            (String::new(), "upstream gone".to_string())
        );
        assert_eq!(
            error_text(StatusCode::SERVICE_UNAVAILABLE, b""),
            (String::new(), "Service Unavailable".to_string())
        );
    }
}
