//! Forwarded reads travel over a few long-lived HTTP/1.1 connections per peer with request
//! pipelining: many requests in flight on one connection, written in one batch, answered in order.
//!
//! Why not the pooled reqwest client used for everything else: measured on the forwarding
//! benchmark, a reqwest request cost the forwarding node ~65 µs of CPU (URL parsing, pool checkout,
//! header maps, a timer per request, one connection task wake-up per request), four times what
//! serving the GET itself costs. Here the caller formats the request head into one buffer, a
//! connection task writes whatever has queued up with one syscall, and the owner (whose server
//! flushes pipelined answers together) answers a batch with one write. No crate offers a pipelining
//! HTTP/1.1 client (hyper's client sends one request per connection at a time; HTTP/2 via reqwest
//! was measured no faster here), so this module is written by hand, with `httparse` parsing answers.
//!
//! Only reads use it: the owner answers a GET from memory without waiting on anything, whereas a
//! write waits for replica acknowledgements at the owner and would hold up every request queued
//! behind it on the same connection.

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// Connections kept per peer: a slow answer only holds up requests on its own connection.
const CONNS_PER_PEER: usize = 2;
/// Requests in flight per connection before callers wait (back-pressure towards clients).
const MAX_IN_FLIGHT: usize = 256;
/// Requests written per batch at most, and the buffer size at which a batch is cut.
const MAX_BATCH: usize = 128;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Largest answer body accepted (values are far smaller; anything larger is a broken peer).
const MAX_BODY: usize = 256 * 1024 * 1024;
/// Response headers parsed at most (a ringcache node sends a handful).
const MAX_HEADERS: usize = 32;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PipeError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("connection closed before the answer arrived")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Io(String),
    #[error("malformed answer: {0}")]
    Protocol(String),
}

/// A complete answer: status, the responder's ring epoch if sent, and the body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub epoch: Option<u64>,
    pub body: Bytes,
}

type Reply = oneshot::Sender<Result<RawResponse, PipeError>>;

struct Job {
    request: Bytes,
    reply: Reply,
    permit: OwnedSemaphorePermit,
}

struct Pending {
    reply: Reply,
    sent: Instant,
    _permit: OwnedSemaphorePermit,
}

#[derive(Clone)]
struct Conn {
    jobs: mpsc::Sender<Job>,
    in_flight: Arc<Semaphore>,
}

impl Conn {
    fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }
}

#[derive(Default)]
struct PeerConns {
    slots: [Mutex<Option<Conn>>; CONNS_PER_PEER],
    next: AtomicUsize,
}

/// Pipelined connections to every peer this node forwards reads to.
#[derive(Clone)]
pub struct Pipelines {
    peers: Arc<Mutex<HashMap<String, Arc<PeerConns>>>>,
    connect_timeout: Duration,
    answer_timeout: Duration,
}

impl Pipelines {
    /// `answer_timeout` bounds how long the oldest request on a connection may wait: past it the
    /// connection is declared dead and everything in flight on it fails.
    pub fn new(connect_timeout: Duration, answer_timeout: Duration) -> Pipelines {
        Pipelines {
            peers: Arc::default(),
            connect_timeout,
            answer_timeout,
        }
    }

    /// Sends one complete request (head and body, as built by [`RequestHead`]) to `addr`.
    /// A connection found closed (the peer restarted since it was last used) is replaced and the
    /// request sent once more, which is safe because only reads travel here.
    pub async fn send(&self, addr: &str, request: Bytes) -> Result<RawResponse, PipeError> {
        let peer = self.peer(addr);
        match self.send_once(&peer, addr, request.clone()).await {
            Err(PipeError::Closed) => self.send_once(&peer, addr, request).await,
            r => r,
        }
    }

    async fn send_once(
        &self,
        peer: &PeerConns,
        addr: &str,
        request: Bytes,
    ) -> Result<RawResponse, PipeError> {
        let conn = self.conn(peer, addr);
        let permit = conn
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PipeError::Closed)?;
        let (reply, answer) = oneshot::channel();
        conn.jobs
            .send(Job {
                request,
                reply,
                permit,
            })
            .await
            .map_err(|_| PipeError::Closed)?;
        answer.await.unwrap_or(Err(PipeError::Closed))
    }

    fn peer(&self, addr: &str) -> Arc<PeerConns> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(addr) {
            return p.clone();
        }
        let p = Arc::new(PeerConns::default());
        peers.insert(addr.to_string(), p.clone());
        p
    }

    /// The next connection round-robin, opening a new one in place of a closed one. Opening does
    /// not block: the connection task connects and fails its queued requests if it cannot.
    fn conn(&self, peer: &PeerConns, addr: &str) -> Conn {
        let i = peer.next.fetch_add(1, Ordering::Relaxed) % CONNS_PER_PEER;
        let mut slot = peer.slots[i].lock();
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return c.clone();
        }
        let (jobs, rx) = mpsc::channel(MAX_IN_FLIGHT);
        let c = Conn {
            jobs,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        };
        tokio::spawn(run_conn(
            addr.to_string(),
            rx,
            self.connect_timeout,
            self.answer_timeout,
        ));
        *slot = Some(c.clone());
        c
    }
}

/// Builds one request: `GET /path HTTP/1.1`, the given headers, and `Host`.
pub struct RequestHead {
    buf: BytesMut,
}

impl RequestHead {
    /// `path_and_query` must already be percent-encoded (no spaces or control characters).
    pub fn new(method: &str, path_and_query: &str, host: &str) -> RequestHead {
        let mut buf = BytesMut::with_capacity(256);
        buf.put_slice(method.as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(path_and_query.as_bytes());
        buf.put_slice(b" HTTP/1.1\r\nhost: ");
        buf.put_slice(host.as_bytes());
        buf.put_slice(b"\r\n");
        RequestHead { buf }
    }

    /// Adds a header. Values come from parsed header values, numbers or addresses, which cannot
    /// hold CR or LF; any that do are dropped rather than allowed to split the request.
    pub fn header(mut self, name: &str, value: &str) -> RequestHead {
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            tracing::warn!(
                header = name,
                "header value with a line break not forwarded"
            );
            return self;
        }
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b": ");
        self.buf.put_slice(value.as_bytes());
        self.buf.put_slice(b"\r\n");
        self
    }

    /// Ends the head (no body).
    pub fn finish(mut self) -> Bytes {
        self.buf.put_slice(b"\r\n");
        self.buf.freeze()
    }
}

async fn run_conn(
    addr: String,
    mut jobs: mpsc::Receiver<Job>,
    connect_timeout: Duration,
    answer_timeout: Duration,
) {
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail_queued(jobs, PipeError::Connect(e.to_string())),
        Err(_) => {
            return fail_queued(
                jobs,
                PipeError::Connect(format!("no connection within {connect_timeout:?}")),
            );
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let pending: Mutex<VecDeque<Pending>> = Mutex::new(VecDeque::new());
    // Both halves run in this one task, so a request and its answer never cost a cross-task
    // wake-up; whichever half ends first (error, EOF, timeout) ends the connection.
    let writer = async {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        while let Some(first) = jobs.recv().await {
            let now = Instant::now();
            let mut batch = Some(first);
            let mut n = 0;
            while let Some(job) = batch.take() {
                buf.put_slice(&job.request);
                pending.lock().push_back(Pending {
                    reply: job.reply,
                    sent: now,
                    _permit: job.permit,
                });
                n += 1;
                if n < MAX_BATCH && buf.len() < MAX_BATCH_BYTES {
                    batch = jobs.try_recv().ok();
                }
            }
            if let Err(e) = wr.write_all(&buf).await {
                return PipeError::Io(e.to_string());
            }
            buf.clear();
        }
        PipeError::Closed
    };
    let reader = async {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut tick = tokio::time::interval(answer_timeout / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            loop {
                match parse_response(&mut buf) {
                    Ok(Some((resp, close))) => {
                        let Some(p) = pending.lock().pop_front() else {
                            return PipeError::Protocol("an answer nobody asked for".into());
                        };
                        let _ = p.reply.send(Ok(resp));
                        if close {
                            return PipeError::Closed;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return e,
                }
            }
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) => return PipeError::Closed,
                    Ok(_) => {}
                    Err(e) => return PipeError::Io(e.to_string()),
                },
                _ = tick.tick() => {
                    let oldest = pending.lock().front().map(|p| p.sent.elapsed());
                    if oldest.is_some_and(|age| age > answer_timeout) {
                        return PipeError::Timeout(answer_timeout);
                    }
                }
            }
        }
    };
    let err = tokio::select! {
        e = writer => e,
        e = reader => e,
    };
    tracing::debug!(peer = %addr, error = %err, "pipelined connection ended");
    jobs.close();
    for p in pending.lock().drain(..) {
        let _ = p.reply.send(Err(err.clone()));
    }
    fail_queued(jobs, err);
}

fn fail_queued(mut jobs: mpsc::Receiver<Job>, err: PipeError) {
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(err.clone()));
    }
}

/// Takes one complete answer off the front of `buf`: `Ok(None)` until all of it has arrived.
/// The flag says the peer will close the connection after it.
fn parse_response(buf: &mut BytesMut) -> Result<Option<(RawResponse, bool)>, PipeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(PipeError::Protocol(e.to_string())),
    };
    let status = res.code.unwrap_or(0);
    if status < 200 {
        return Err(PipeError::Protocol(format!(
            "unexpected informational status {status}"
        )));
    }
    let (mut len, mut epoch, mut close) = (None, None, false);
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| PipeError::Protocol("bad content-length".into()))?;
            len = Some(v);
        } else if h.name.eq_ignore_ascii_case(super::peer::EPOCH) {
            epoch = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.parse().ok());
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(PipeError::Protocol(
                "transfer-encoding is not supported on forwarded reads".into(),
            ));
        }
    }
    let len = match (status, len) {
        (204 | 304, _) => 0,
        (_, Some(n)) if n <= MAX_BODY => n,
        (_, Some(n)) => return Err(PipeError::Protocol(format!("{n}-byte body is too large"))),
        (_, None) => {
            return Err(PipeError::Protocol("answer without content-length".into()));
        }
    };
    if buf.len() < head_len + len {
        buf.reserve(head_len + len - buf.len());
        return Ok(None);
    }
    let _ = buf.split_to(head_len);
    let body = buf.split_to(len).freeze();
    Ok(Some((
        RawResponse {
            status,
            epoch,
            body,
        },
        close,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(raw: &[u8]) -> Result<Vec<RawResponse>, PipeError> {
        let mut buf = BytesMut::from(raw);
        let mut out = Vec::new();
        while let Some((r, _)) = parse_response(&mut buf)? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn several_answers_in_one_buffer_are_split_in_order() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-ringcache-epoch: 7\r\n\r\nabc\
HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}\
HTTP/1.1 204 No Content\r\n\r\n";
        let rs = parse_all(raw).unwrap();
        assert_eq!(rs.len(), 3);
        assert_eq!(
            (rs[0].status, rs[0].epoch, &rs[0].body[..]),
            (200, Some(7), &b"abc"[..])
        );
        assert_eq!(
            (rs[1].status, rs[1].epoch, &rs[1].body[..]),
            (404, None, &b"{}"[..])
        );
        assert_eq!((rs[2].status, rs[2].body.len()), (204, 0));
    }

    #[test]
    fn a_partial_answer_waits_for_the_rest() {
        let full = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        for cut in [10, full.len() - 1] {
            let mut buf = BytesMut::from(&full[..cut]);
            assert!(parse_response(&mut buf).unwrap().is_none(), "cut at {cut}");
            buf.extend_from_slice(&full[cut..]);
            let (r, close) = parse_response(&mut buf).unwrap().unwrap();
            assert_eq!((&r.body[..], close, buf.len()), (&b"hello"[..], false, 0));
        }
    }

    #[test]
    fn unsupported_framing_is_refused() {
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(matches!(parse_all(chunked), Err(PipeError::Protocol(_))));
        let no_len = b"HTTP/1.1 200 OK\r\n\r\nabc";
        assert!(matches!(parse_all(no_len), Err(PipeError::Protocol(_))));
        let garbage = b"SSH-2.0-OpenSSH\r\n\r\n";
        assert!(matches!(parse_all(garbage), Err(PipeError::Protocol(_))));
        let huge = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            parse_all(huge.as_bytes()),
            Err(PipeError::Protocol(_))
        ));
    }

    #[test]
    fn connection_close_is_reported() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 503 x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"[..],
        );
        let (r, close) = parse_response(&mut buf).unwrap().unwrap();
        assert_eq!((r.status, close), (503, true));
    }

    #[test]
    fn request_heads_are_well_formed_and_refuse_line_breaks() {
        let req = RequestHead::new("GET", "/v1/keys/a%20b", "127.0.0.2:7000")
            .header("x-ringcache-epoch", "3")
            .header("authorization", "Bearer x\r\nx-evil: 1")
            .finish();
        assert_eq!(
            &req[..],
            b"GET /v1/keys/a%20b HTTP/1.1\r\nhost: 127.0.0.2:7000\r\nx-ringcache-epoch: 3\r\n\r\n"
        );
    }

    fn get(path: &str, host: &str) -> Bytes {
        RequestHead::new("GET", path, host).finish()
    }

    /// A stand-in owner: the node's own HTTP server loop (pipelined flushing) with a router that
    /// answers each path with itself, so answers can be matched to requests.
    async fn echo_server() -> (String, tokio::sync::oneshot::Sender<()>) {
        use axum::routing::get;
        let app = axum::Router::new().route(
            "/echo/{n}",
            get(
                |axum::extract::Path(n): axum::extract::Path<String>| async move {
                    ([(super::super::peer::EPOCH, "9")], n)
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(crate::server::serve_router(listener, app, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_answer() {
        let (addr, _stop) = echo_server().await;
        let pipes = Pipelines::new(Duration::from_secs(1), Duration::from_secs(5));
        let calls = (0..2000).map(|i| {
            let (pipes, addr) = (pipes.clone(), addr.clone());
            tokio::spawn(async move {
                let r = pipes.send(&addr, get(&format!("/echo/{i}"), &addr)).await;
                (i, r)
            })
        });
        for c in futures_util::future::join_all(calls).await {
            let (i, r) = c.unwrap();
            let r = r.unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!((r.status, r.epoch), (200, Some(9)));
            assert_eq!(r.body, i.to_string().into_bytes(), "answer of request {i}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        // Bind, learn a free port, close it again: nothing listens there now.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let pipes = Pipelines::new(Duration::from_secs(1), Duration::from_secs(1));
        let err = pipes.send(&addr, get("/x", &addr)).await.unwrap_err();
        assert!(matches!(err, PipeError::Connect(_)), "{err}");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_instead_of_hanging() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accepts and reads, never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let pipes = Pipelines::new(Duration::from_secs(1), Duration::from_millis(200));
        let started = Instant::now();
        let err = pipes.send(&addr, get("/x", &addr)).await.unwrap_err();
        assert_eq!(err, PipeError::Timeout(Duration::from_millis(200)));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_peer_that_restarted_is_reconnected_to() {
        let (addr, stop) = echo_server().await;
        let pipes = Pipelines::new(Duration::from_secs(1), Duration::from_secs(5));
        for slot in 0..CONNS_PER_PEER {
            let r = pipes
                .send(&addr, get(&format!("/echo/{slot}"), &addr))
                .await
                .unwrap();
            assert_eq!(r.status, 200);
        }
        // The server goes away (its idle connections close) and comes back on the same port.
        let _ = stop.send(());
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "port not free yet");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot rebind {addr}: {e}"),
            }
        };
        let app = axum::Router::new().route("/again", axum::routing::get(|| async { "yes" }));
        tokio::spawn(crate::server::serve_router(
            listener,
            app,
            std::future::pending(),
        ));
        for _ in 0..CONNS_PER_PEER {
            let r = pipes.send(&addr, get("/again", &addr)).await.unwrap();
            assert_eq!((r.status, &r.body[..]), (200, &b"yes"[..]));
        }
    }

    #[tokio::test]
    async fn a_peer_answering_garbage_fails_the_request() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
            }
        });
        let pipes = Pipelines::new(Duration::from_secs(1), Duration::from_secs(1));
        let err = pipes.send(&addr, get("/x", &addr)).await.unwrap_err();
        assert!(matches!(err, PipeError::Protocol(_)), "{err}");
    }
}
