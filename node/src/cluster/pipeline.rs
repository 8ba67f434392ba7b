//! Forwarded reads are coalesced: the reads a node forwards to the same owner at the same time
//! travel as one `POST /internal/v1/get` carrying all their keys, over a few long-lived HTTP/1.1
//! connections per peer with several such requests in flight (pipelining), answered in order.
//!
//! Why not one request per read through the pooled reqwest client used for everything else:
//! measured on the forwarding benchmark, each forwarded read then cost the forwarding node ~65 µs
//! of CPU (URL parsing, pool checkout, header maps, a timer per request, a connection-task wake-up
//! per request) and the owner a full HTTP request, so a forwarded GET ran at 0.27× direct. Here the
//! caller queues its key, a connection task writes everything queued as one request with one
//! syscall, and the owner answers N keys with one HTTP request's worth of work. No crate offers a
//! pipelining, coalescing HTTP/1.1 client (hyper's client sends one request per connection at a
//! time; HTTP/2 via reqwest was measured no faster here), so this module is written by hand, with
//! `httparse` parsing the answers and the owner's side an ordinary axum route.
//!
//! Only reads use it: the owner answers them from memory without waiting on anything, whereas a
//! write waits for replica acknowledgements and would hold up everything queued behind it.

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

pub use super::peers::Sender;
use crate::tls::TlsClient;
use crate::wire::{self, KeyResult};
use ringcache_common::protocol::{EPOCH_HEADER, ORIGIN_HEADER};

/// Connections kept per peer: a slow answer only holds up the requests on its own connection.
const CONNS_PER_PEER: usize = 2;
/// Reads queued or in flight per connection before callers wait (back-pressure on clients).
const MAX_IN_FLIGHT: usize = 1024;
/// Coalesced requests on the wire per connection before the next waits for an answer.
const OUTSTANDING: usize = 1;
/// Keys coalesced into one request at most.
const MAX_BATCH: usize = 256;
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
    #[error("answered {status}: {message}")]
    Refused { status: u16, message: String },
}

/// One read's answer, with the answering node's ring epoch (the asker learns newer rings from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub result: KeyResult,
    pub epoch: Option<u64>,
}

type Reply = oneshot::Sender<Result<Answer, PipeError>>;

struct Job {
    key: Bytes,
    from: Sender,
    reply: Reply,
    permit: OwnedSemaphorePermit,
}

/// One coalesced request on the wire, waiting for its answer.
struct Pending {
    replies: Vec<Reply>,
    sent: Instant,
    _permits: Vec<OwnedSemaphorePermit>,
}

#[derive(Clone)]
struct Conn {
    jobs: mpsc::Sender<Job>,
    in_flight: Arc<Semaphore>,
}

#[derive(Default)]
struct PeerConns {
    slots: [Mutex<Option<Conn>>; CONNS_PER_PEER],
    next: AtomicUsize,
}

/// Coalescing, pipelined connections to every peer this node forwards reads to.
#[derive(Clone)]
pub struct Pipelines {
    peers: Arc<Mutex<HashMap<String, Arc<PeerConns>>>>,
    /// `authorization: Bearer …\r\n` with the internal token, or empty.
    auth_line: Arc<str>,
    connect_timeout: Duration,
    answer_timeout: Duration,
    tls: Option<TlsClient>,
}

impl Pipelines {
    /// `answer_timeout` bounds how long the oldest request on a connection may wait: past it the
    /// connection is declared dead and everything in flight on it fails.
    pub fn new(
        internal_token: Option<&str>,
        connect_timeout: Duration,
        answer_timeout: Duration,
        tls: Option<TlsClient>,
    ) -> Pipelines {
        let auth_line = match internal_token {
            // A token with a line break would split the request; such a token cannot be sent
            // in a header by any client, so none is sent and the peer answers 401.
            Some(t) if !t.contains(['\r', '\n']) => format!("authorization: Bearer {t}\r\n"),
            _ => String::new(),
        };
        Pipelines {
            peers: Arc::default(),
            auth_line: auth_line.into(),
            connect_timeout,
            answer_timeout,
            tls,
        }
    }

    /// Reads `key` from the peer at `addr`. A connection found closed (the peer restarted since it
    /// was last used) is replaced and the read sent once more.
    pub async fn get(&self, addr: &str, key: &[u8], from: &Sender) -> Result<Answer, PipeError> {
        let peer = self.peer(addr);
        let key = Bytes::copy_from_slice(key);
        match self.get_once(&peer, addr, key.clone(), from).await {
            Err(PipeError::Closed) => self.get_once(&peer, addr, key, from).await,
            r => r,
        }
    }

    async fn get_once(
        &self,
        peer: &PeerConns,
        addr: &str,
        key: Bytes,
        from: &Sender,
    ) -> Result<Answer, PipeError> {
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
                key,
                from: from.clone(),
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
    /// not block: the connection task connects and fails its queued reads if it cannot.
    fn conn(&self, peer: &PeerConns, addr: &str) -> Conn {
        let i = peer.next.fetch_add(1, Ordering::Relaxed) % CONNS_PER_PEER;
        let mut slot = peer.slots[i].lock();
        if let Some(c) = slot.as_ref().filter(|c| !c.jobs.is_closed()) {
            return c.clone();
        }
        let (jobs, rx) = mpsc::channel(MAX_IN_FLIGHT);
        let c = Conn {
            jobs,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        };
        tokio::spawn(run_conn(
            Link {
                addr: addr.to_string(),
                auth_line: self.auth_line.clone(),
                connect_timeout: self.connect_timeout,
                answer_timeout: self.answer_timeout,
                tls: self.tls.clone(),
            },
            rx,
        ));
        *slot = Some(c.clone());
        c
    }
}

struct Link {
    addr: String,
    auth_line: Arc<str>,
    connect_timeout: Duration,
    answer_timeout: Duration,
    tls: Option<TlsClient>,
}

impl Link {
    /// Appends one `POST /internal/v1/get` for `keys` (a multi-get body) to `out`.
    fn put_request(&self, out: &mut BytesMut, from: &Sender, count: usize, keys: &[u8]) {
        use std::fmt::Write as _;
        out.reserve(256 + keys.len());
        let _ = write!(
            out,
            "POST /internal/v1/get HTTP/1.1\r\nhost: {}\r\n{}{}: {}\r\n{}: {}\r\n\
             content-type: {}\r\ncontent-length: {}\r\n\r\n",
            self.addr,
            self.auth_line,
            EPOCH_HEADER,
            from.epoch,
            ORIGIN_HEADER,
            from.origin,
            wire::KEYS_CONTENT_TYPE,
            4 + keys.len(),
        );
        out.put_u32_le(count as u32);
        out.put_slice(keys);
    }
}

async fn run_conn(link: Link, jobs: mpsc::Receiver<Job>) {
    let connect = async {
        let tcp = TcpStream::connect(&link.addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match &link.tls {
            None => Ok(Either::Plain(tcp)),
            Some(tls) => {
                let name = tls.name_for(&link.addr).map_err(|e| e.to_string())?;
                let s = tls
                    .connector()
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                Ok(Either::Tls(Box::new(s)))
            }
        }
    };
    let stream = match tokio::time::timeout(link.connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail_queued(jobs, PipeError::Connect(e)),
        Err(_) => {
            let msg = format!("no connection within {:?}", link.connect_timeout);
            return fail_queued(jobs, PipeError::Connect(msg));
        }
    };
    match stream {
        // A plain socket splits without a lock between its halves.
        Either::Plain(tcp) => {
            let (rd, wr) = tcp.into_split();
            drive(link, jobs, rd, wr).await
        }
        Either::Tls(tls) => {
            let (rd, wr) = tokio::io::split(tls);
            drive(link, jobs, rd, wr).await
        }
    }
}

enum Either {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn drive<R, W>(link: Link, mut jobs: mpsc::Receiver<Job>, mut rd: R, mut wr: W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let pending: Mutex<VecDeque<Pending>> = Mutex::new(VecDeque::new());
    let answered = tokio::sync::Notify::new();
    // Both halves run in this one task, so a request and its answer never cost a cross-task
    // wake-up; whichever half ends first (error, EOF, timeout) ends the connection.
    let writer = async {
        let (mut out, mut keys) = (BytesMut::with_capacity(16 * 1024), BytesMut::new());
        loop {
            // At most OUTSTANDING requests on the wire: reads arriving meanwhile queue up and go
            // out together once an answer is in, so the batch size follows the load without
            // ever holding a read back when the connection is idle.
            loop {
                let notified = answered.notified();
                if pending.lock().len() < OUTSTANDING {
                    break;
                }
                notified.await;
            }
            let Some(first) = jobs.recv().await else {
                break;
            };
            let from = first.from.clone();
            let mut batch = Some(first);
            let (mut replies, mut permits) = (Vec::new(), Vec::new());
            while let Some(job) = batch.take() {
                wire::put_key(&mut keys, &job.key);
                replies.push(job.reply);
                permits.push(job.permit);
                if replies.len() < MAX_BATCH {
                    batch = jobs.try_recv().ok();
                }
            }
            link.put_request(&mut out, &from, replies.len(), &keys);
            keys.clear();
            pending.lock().push_back(Pending {
                replies,
                sent: Instant::now(),
                _permits: permits,
            });
            if let Err(e) = wr.write_all(&out).await {
                return PipeError::Io(e.to_string());
            }
            out.clear();
        }
        PipeError::Closed
    };
    let reader = async {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut tick = tokio::time::interval(link.answer_timeout / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            loop {
                match parse_response(&mut buf) {
                    Ok(Some((resp, close))) => {
                        let Some(p) = pending.lock().pop_front() else {
                            return PipeError::Protocol("an answer nobody asked for".into());
                        };
                        answered.notify_one();
                        if let Err(e) = answer(p.replies, resp) {
                            return e;
                        }
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
                    if oldest.is_some_and(|age| age > link.answer_timeout) {
                        return PipeError::Timeout(link.answer_timeout);
                    }
                }
            }
        }
    };
    let err = tokio::select! {
        e = writer => e,
        e = reader => e,
    };
    tracing::debug!(peer = %link.addr, error = %err, "pipelined connection ended");
    jobs.close();
    for p in pending.lock().drain(..) {
        for r in p.replies {
            let _ = r.send(Err(err.clone()));
        }
    }
    fail_queued(jobs, err);
}

/// Hands each waiting read its answer. A refusal (non-200) goes to all of them; an answer that
/// does not match the request is a broken connection.
fn answer(replies: Vec<Reply>, resp: RawResponse) -> Result<(), PipeError> {
    if resp.status != 200 {
        let message = String::from_utf8_lossy(&resp.body).into_owned();
        for r in replies {
            let _ = r.send(Err(PipeError::Refused {
                status: resp.status,
                message: message.clone(),
            }));
        }
        return Ok(());
    }
    let results =
        wire::decode_results(&resp.body).map_err(|e| PipeError::Protocol(e.to_string()))?;
    if results.len() != replies.len() {
        let msg = format!("{} answers for {} keys", results.len(), replies.len());
        for r in replies {
            let _ = r.send(Err(PipeError::Protocol(msg.clone())));
        }
        return Err(PipeError::Protocol(msg));
    }
    for (r, result) in replies.into_iter().zip(results) {
        let _ = r.send(Ok(Answer {
            result,
            epoch: resp.epoch,
        }));
    }
    Ok(())
}

fn fail_queued(mut jobs: mpsc::Receiver<Job>, err: PipeError) {
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        let _ = job.reply.send(Err(err.clone()));
    }
}

/// A complete answer: status, the responder's ring epoch if sent, and the body.
#[derive(Debug, Clone)]
struct RawResponse {
    status: u16,
    epoch: Option<u64>,
    body: Bytes,
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
        } else if h.name.eq_ignore_ascii_case(EPOCH_HEADER) {
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

    fn sender() -> Sender {
        Sender {
            epoch: 4,
            origin: Arc::from("127.0.0.9:1"),
        }
    }

    /// A stand-in owner: the node's own HTTP server loop with a `POST /internal/v1/get` that
    /// answers keys `k…` with the key reversed, `m…` as not found and anything else as not
    /// served; it insists on the token and on the sender's epoch, and sends its own (9).
    async fn fake_owner() -> (String, tokio::sync::oneshot::Sender<()>) {
        use axum::http::{HeaderMap, StatusCode};
        let app = axum::Router::new().route(
            "/internal/v1/get",
            axum::routing::post(|h: HeaderMap, body: Bytes| async move {
                let hdr = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
                if hdr("authorization").as_deref() != Some("Bearer sesame") {
                    return Err((StatusCode::UNAUTHORIZED, "no token".to_string()));
                }
                if hdr(super::EPOCH_HEADER).as_deref() != Some("4") {
                    return Err((StatusCode::BAD_REQUEST, "no epoch".to_string()));
                }
                let keys = wire::decode_keys(&body)
                    .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
                let mut out = BytesMut::new();
                out.put_u32_le(keys.len() as u32);
                for k in keys {
                    let rev: Vec<u8> = k.iter().rev().copied().collect();
                    match k[0] {
                        b'k' => wire::put_result(&mut out, Some(&rev), true),
                        b'm' => wire::put_result(&mut out, None, true),
                        _ => wire::put_result(&mut out, None, false),
                    }
                }
                Ok(([(super::EPOCH_HEADER, "9")], out.freeze()))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(crate::server::serve_router(listener, app, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    fn pipes(answer_timeout: Duration) -> Pipelines {
        Pipelines::new(Some("sesame"), Duration::from_secs(1), answer_timeout, None)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_each_get_their_own_answer() {
        let (addr, _stop) = fake_owner().await;
        let pipes = pipes(Duration::from_secs(5));
        let calls = (0..3000).map(|i| {
            let (pipes, addr) = (pipes.clone(), addr.clone());
            tokio::spawn(async move {
                let key = match i % 3 {
                    0 => format!("k{i}"),
                    1 => format!("m{i}"),
                    _ => format!("x{i}"),
                };
                let r = pipes.get(&addr, key.as_bytes(), &sender()).await;
                (key, r)
            })
        });
        for c in futures_util::future::join_all(calls).await {
            let (key, r) = c.unwrap();
            let a = r.unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(a.epoch, Some(9), "{key}");
            let want = match key.as_bytes()[0] {
                b'k' => KeyResult::Found(key.bytes().rev().collect::<Vec<u8>>().into()),
                b'm' => KeyResult::Missing,
                _ => KeyResult::NotServed,
            };
            assert_eq!(a.result, want, "answer for {key}");
        }
    }

    #[tokio::test]
    async fn a_refusing_owner_fails_every_read_with_its_status() {
        let (addr, _stop) = fake_owner().await;
        let wrong = Pipelines::new(
            Some("wrong"),
            Duration::from_secs(1),
            Duration::from_secs(5),
            None,
        );
        let err = wrong.get(&addr, b"k1", &sender()).await.unwrap_err();
        assert_eq!(
            err,
            PipeError::Refused {
                status: 401,
                message: "no token".into()
            }
        );
        // A token that cannot be sent in a header is not sent at all.
        let broken = Pipelines::new(
            Some("a\r\nb"),
            Duration::from_secs(1),
            Duration::from_secs(5),
            None,
        );
        let err = broken.get(&addr, b"k1", &sender()).await.unwrap_err();
        assert!(
            matches!(err, PipeError::Refused { status: 401, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        // Bind, learn a free port, close it again: nothing listens there now.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let err = pipes(Duration::from_secs(1))
            .get(&addr, b"k", &sender())
            .await
            .unwrap_err();
        assert!(matches!(err, PipeError::Connect(_)), "{err}");
    }

    #[tokio::test]
    async fn a_silent_peer_times_out_instead_of_hanging() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accepts, never answers.
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let started = Instant::now();
        let err = pipes(Duration::from_millis(200))
            .get(&addr, b"k", &sender())
            .await
            .unwrap_err();
        assert_eq!(err, PipeError::Timeout(Duration::from_millis(200)));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_peer_that_restarted_is_reconnected_to() {
        let (addr, stop) = fake_owner().await;
        let pipes = pipes(Duration::from_secs(5));
        for _ in 0..CONNS_PER_PEER {
            let a = pipes.get(&addr, b"k1", &sender()).await.unwrap();
            assert_eq!(a.result, KeyResult::Found(Bytes::from_static(b"1k")));
        }
        // The owner goes away (its idle connections close) and comes back on the same port.
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
        let app = axum::Router::new().route(
            "/internal/v1/get",
            axum::routing::post(|| async {
                let mut out = BytesMut::new();
                out.put_u32_le(1);
                wire::put_result(&mut out, Some(b"again"), true);
                out.freeze()
            }),
        );
        tokio::spawn(crate::server::serve_router(
            listener,
            app,
            std::future::pending(),
        ));
        for _ in 0..CONNS_PER_PEER {
            let a = pipes.get(&addr, b"k1", &sender()).await.unwrap();
            assert_eq!(a.result, KeyResult::Found(Bytes::from_static(b"again")));
        }
    }

    #[tokio::test]
    async fn a_peer_answering_garbage_fails_the_read() {
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
        let err = pipes(Duration::from_secs(1))
            .get(&addr, b"k", &sender())
            .await
            .unwrap_err();
        assert!(matches!(err, PipeError::Protocol(_)), "{err}");
    }
}
