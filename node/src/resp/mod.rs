//! The Redis protocol front (`--resp-listen`): RESP2, RESP3 after `HELLO 3`, the commands of
//! [`command`], over plain TCP or TLS (the same certificate as HTTPS).
//!
//! A connection reads what the client sent, runs every whole command in it and writes the
//! answers back in one go, so a pipeline costs one read and one write. Commands answered from
//! this node's store are answered at once; commands that wait on a peer (a forwarded read, a
//! replicated write) run concurrently and are answered in order — except that a command on a
//! partition an unanswered command writes (or a write to one it reads) waits for it first, so a
//! pipeline behaves as if run one command after another.
//!
//! Bounds: an argument over `maxValueSize` is skipped as it arrives and answered with an error
//! (nothing is stored); a malformed frame is answered and the connection closed; a command
//! larger than 64 KiB draws its buffer from the node's buffer budget (`--buffer-memory`) and
//! is refused past [`MAX_COMMAND`]; at most [`MAX_PENDING`] commands wait per connection
//! (reading stops until they are answered).

mod blocking;
pub mod command;
mod config;
mod exec;
mod info;
mod keys;
mod multikey;
pub mod parse;
pub mod reply;
mod server;
mod spin;
mod strings;

use crate::budget::Draw;
use crate::cluster::node::SharedNode;
use crate::serve::Limits;
use crate::tls::TlsServer;
use bytes::{Buf, BytesMut};
use exec::{Answer, Args, Conn, Exec, Reply};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use parse::{Discard, Parsed};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Commands waiting on peers per connection before reading pauses.
pub const MAX_PENDING: usize = 256;
/// Largest command accepted (all arguments together).
pub const MAX_COMMAND: usize = 512 << 20;
/// Input a connection holds without drawing on the buffer budget.
const BASE_BUFFER: usize = 64 << 10;
/// Answers are written out once this much is waiting, even mid-pipeline.
const FLUSH_AT: usize = 64 << 10;
/// Most arguments in one command.
const MAX_ARGS: usize = 1 << 20;
/// How long a large command waits for room in the buffer budget.
const BUDGET_WAIT: Duration = Duration::from_secs(1);

static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

/// Serves RESP on `listener` until `shutdown` resolves (TLS with `tls`); connections are
/// bounded by `limits.max_connections` and the TLS handshake by `limits.handshake_timeout`.
pub async fn serve(
    listener: TcpListener,
    s: SharedNode,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
    tls: Option<TlsServer>,
    busy_poll: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let spinner = (!busy_poll.is_zero()).then(|| spin::Spinner::start(busy_poll));
    tokio::pin!(shutdown);
    while let Some((stream, peer, permit)) =
        crate::serve::accept(&listener, &slots, &mut shutdown, Some(&s.metrics)).await
    {
        let (s, tls, handshake) = (s.clone(), tls.clone(), limits.handshake_timeout);
        let spinner = spinner.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let m = &s.metrics;
            m.resp_connections.fetch_add(1, Ordering::Relaxed);
            m.resp_connections_total.fetch_add(1, Ordering::Relaxed);
            match tls {
                None => serve_connection(stream, &s, spinner.as_deref()).await,
                Some(tls) => {
                    match tokio::time::timeout(handshake, tls.acceptor().accept(stream)).await {
                        Ok(Ok(io)) => serve_connection(io, &s, spinner.as_deref()).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            s.metrics.resp_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The input buffer with its draws on the buffer budget.
struct Input {
    buf: BytesMut,
    draws: Vec<Draw>,
    drawn: usize,
}

impl Default for Input {
    fn default() -> Input {
        Input {
            buf: BytesMut::with_capacity(16 << 10),
            draws: Vec::new(),
            drawn: 0,
        }
    }
}

impl Input {
    /// Room for at least `want` more bytes in all, drawing on the budget past the base.
    async fn reserve(&mut self, s: &SharedNode, want: usize) -> Result<(), String> {
        let total = self.buf.len() + want.max(4096);
        if total > MAX_COMMAND {
            return Err(format!(
                "ERR Protocol error: command larger than {MAX_COMMAND} bytes"
            ));
        }
        if total > BASE_BUFFER + self.drawn {
            let more = total - BASE_BUFFER - self.drawn;
            match s.budget.draw(more as u64, BUDGET_WAIT).await {
                Ok(d) => {
                    self.draws.push(d);
                    self.drawn += more;
                }
                Err(e) => return Err(format!("ERR busy: {e}")),
            }
        }
        self.buf.reserve(want.max(4096));
        Ok(())
    }

    /// After a large command: back to a small buffer, the budget returned. (`capacity` is what
    /// is left past the consumed bytes, so a draw is what says the buffer grew.)
    fn shrink(&mut self) {
        if self.buf.is_empty() && (self.drawn > 0 || self.buf.capacity() > BASE_BUFFER) {
            *self = Input::default();
        }
    }
}

/// Answers not yet written, in command order: commands still running (spawned, so that they
/// finish whatever the client does) and answers known at once that came after them.
#[derive(Default)]
struct Queue {
    answers: FuturesOrdered<BoxFuture<'static, Answer>>,
    /// Per queued answer: the partitions its command touches, whether it writes, and the
    /// protocol version it is to be encoded in (a later `HELLO` does not change it).
    meta: VecDeque<Queued>,
    /// Bytes of answers known at once, held behind running ones.
    held: usize,
}

struct Queued {
    partitions: Vec<u32>,
    /// The command spans the keyspace (`FLUSHDB`, `SCAN`, …): everything after it waits.
    everything: bool,
    writes: bool,
    resp3: bool,
    held: usize,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Whether another command may run before some answers are out.
    fn has_room(&self) -> bool {
        self.meta.len() < MAX_PENDING && self.held < MAX_HELD
    }

    fn push_running(
        &mut self,
        fut: BoxFuture<'static, Answer>,
        partitions: Vec<u32>,
        writes: bool,
        everything: bool,
        resp3: bool,
    ) {
        let task = tokio::spawn(fut);
        self.answers.push_back(Box::pin(async move {
            task.await
                .unwrap_or_else(|e| Answer::Err(format!("ERR command failed: {e}")))
        }));
        self.meta.push_back(Queued {
            partitions,
            everything,
            writes,
            resp3,
            held: 0,
        });
    }

    fn push_known(&mut self, encoded: Vec<u8>, resp3: bool) {
        let held = encoded.len();
        self.held += held;
        self.answers
            .push_back(Box::pin(std::future::ready(Answer::Raw(encoded))));
        self.meta.push_back(Queued {
            partitions: Vec::new(),
            everything: false,
            writes: false,
            resp3,
            held,
        });
    }

    /// Whether a command on `partitions` must wait for the queued ones (one of the two writes
    /// to a partition the other touches).
    fn conflicts(&self, partitions: &[u32], writes: bool, everything: bool) -> bool {
        (everything && !self.meta.is_empty())
            || self.meta.iter().any(|q| {
                q.everything
                    || ((q.writes || writes) && q.partitions.iter().any(|p| partitions.contains(p)))
            })
    }

    fn encode(&mut self, s: &SharedNode, a: Answer, out: &mut Vec<u8>) {
        let resp3 = match self.meta.pop_front() {
            Some(q) => {
                self.held -= q.held;
                q.resp3
            }
            None => false,
        };
        exec::count_error(s, &a);
        exec::encode(out, a, resp3);
    }

    /// Encodes the answers that are ready, in order, without waiting.
    fn collect_ready(&mut self, s: &SharedNode, out: &mut Vec<u8>) {
        while let Some(Some(a)) = futures_util::FutureExt::now_or_never(self.answers.next()) {
            self.encode(s, a, out);
        }
    }

    /// Waits for every queued answer and encodes them.
    async fn drain(&mut self, s: &SharedNode, out: &mut Vec<u8>) {
        while let Some(a) = self.answers.next().await {
            self.encode(s, a, out);
        }
    }
}

/// Bytes of answers known at once that a connection holds behind running commands before it
/// stops running more.
const MAX_HELD: usize = 8 << 20;

/// Writes `out` in pieces, each within `stall` (a client that stops reading is cut off), and
/// empties it.
async fn write_out<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    stall: Duration,
) -> bool {
    for piece in out.chunks(FLUSH_AT) {
        if !matches!(
            tokio::time::timeout(stall, io.write_all(piece)).await,
            Ok(Ok(()))
        ) {
            return false;
        }
    }
    out.clear();
    if out.capacity() > 1 << 20 {
        *out = Vec::with_capacity(16 << 10);
    }
    true
}

/// Inline first words of HTTP requests: a browser or proxy talking to the RESP port. Closed at
/// once, as Redis does, so a web page cannot post commands to an open node.
fn is_http(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"POST") || name.eq_ignore_ascii_case(b"HOST:")
}

/// Serves one RESP connection on `io` until the client closes it, sends a malformed frame
/// or `QUIT` (the fuzz targets drive it over an in-memory pipe).
pub async fn connection<IO: AsyncRead + AsyncWrite + Unpin>(io: IO, s: &SharedNode) {
    serve_connection(io, s, None).await
}

async fn serve_connection<IO: AsyncRead + AsyncWrite + Unpin>(
    mut io: IO,
    s: &SharedNode,
    spinner: Option<&spin::Spinner>,
) {
    let lim = parse::Limits {
        max_bulk: usize::try_from(s.max_value_size)
            .unwrap_or(usize::MAX)
            .max(ringcache_ring::MAX_KEY_LEN),
        max_args: MAX_ARGS,
        max_inline: BASE_BUFFER,
    };
    let stall = s.pull_idle_timeout;
    let mut input = Input::default();
    let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut ranges = Vec::with_capacity(8);
    let mut parts: Vec<u32> = Vec::with_capacity(8);
    let mut conn = Conn {
        id: CONNECTION_IDS.fetch_add(1, Ordering::Relaxed),
        authed: s.auth_token.is_none(),
        resp3: false,
        name: None,
        quit: false,
        db: 0,
        alive: Arc::new(std::sync::atomic::AtomicBool::new(true)),
    };
    let mut queue = Queue::default();
    let mut discard: Option<Discard> = None;
    let mut need = 0usize;
    let mut closing: Option<String> = None;
    // The client closed its side: answer what it sent, then close.
    let mut eof = false;
    loop {
        // Run every whole command buffered.
        while queue.has_room() && !conn.quit && closing.is_none() {
            if let Some(d) = &mut discard {
                match d.advance(&input.buf) {
                    Ok((used, over)) => {
                        input.buf.advance(used);
                        if !over {
                            break;
                        }
                        discard = None;
                        continue;
                    }
                    Err(why) => {
                        closing = Some(format!("ERR Protocol error: {why}"));
                        break;
                    }
                }
            }
            if input.buf.is_empty() || input.buf.len() < need {
                break;
            }
            match parse::parse(&input.buf, &mut ranges, lim) {
                Parsed::Incomplete { need: n } => {
                    need = n;
                    break;
                }
                Parsed::Malformed(why) => {
                    closing = Some(format!("ERR Protocol error: {why}"));
                }
                Parsed::Oversized {
                    header,
                    skip,
                    args_left,
                    size,
                } => {
                    let mut msg = Vec::new();
                    reply::error(&mut msg, &exec::too_large(size, s.max_value_size));
                    s.metrics.resp_errors.fetch_add(1, Ordering::Relaxed);
                    if queue.is_empty() {
                        out.extend_from_slice(&msg);
                    } else {
                        queue.push_known(msg, conn.resp3);
                    }
                    input.buf.advance(header);
                    discard = Some(Discard { skip, args_left });
                    need = 0;
                }
                Parsed::Command { len } => {
                    need = 0;
                    if ranges.is_empty() {
                        input.buf.advance(len);
                        continue;
                    }
                    let args = Args {
                        buf: &input.buf[..len],
                        ranges: &ranges,
                    };
                    if is_http(args.get(0)) {
                        tracing::warn!("HTTP request on the RESP port: connection closed");
                        return;
                    }
                    let spec = command::lookup(args.get(0));
                    // The partitions it touches, needed only when something waits (computed
                    // before the buffer moves on).
                    let partitions = |parts: &mut Vec<u32>| {
                        parts.clear();
                        if let Some(spec) = spec {
                            parts.extend(
                                spec.key_indexes(&args)
                                    .map(|i| s.engine.partition_of(args.get(i))),
                            );
                        }
                    };
                    let writes = spec.is_some_and(|sp| sp.writes);
                    let everything = spec.is_some_and(|sp| sp.spans_keyspace());
                    let mut parts_known = false;
                    // Order behind an unanswered command this one depends on.
                    if !queue.is_empty() {
                        partitions(&mut parts);
                        parts_known = true;
                        if queue.conflicts(&parts, writes, everything) {
                            queue.drain(s, &mut out).await;
                        }
                    }
                    let mut later_bytes = Vec::new();
                    let behind = !queue.is_empty();
                    let resp3 = conn.resp3;
                    let mut x = Exec {
                        s,
                        conn: &mut conn,
                        out: if behind { &mut later_bytes } else { &mut out },
                    };
                    match command::execute(&mut x, spec, &args) {
                        Reply::Now if behind => queue.push_known(later_bytes, resp3),
                        Reply::Now => {}
                        Reply::Later(fut) => {
                            if !parts_known {
                                partitions(&mut parts);
                            }
                            queue.push_running(fut, parts.clone(), writes, everything, resp3);
                        }
                    }
                    input.buf.advance(len);
                    if out.len() >= FLUSH_AT && !write_out(&mut io, &mut out, stall).await {
                        return;
                    }
                }
            }
        }
        queue.collect_ready(s, &mut out);
        if let Some(msg) = closing.take() {
            queue.drain(s, &mut out).await;
            s.metrics.resp_errors.fetch_add(1, Ordering::Relaxed);
            reply::error(&mut out, &msg);
            let _ = write_out(&mut io, &mut out, stall).await;
            break;
        }
        if !out.is_empty() {
            tokio::task::yield_now().await;
            if !write_out(&mut io, &mut out, stall).await {
                return;
            }
        }
        if (conn.quit || eof) && queue.is_empty() {
            break;
        }
        input.shrink();
        if ranges.capacity() > 1024 {
            ranges = Vec::with_capacity(8);
        }
        let reading = queue.has_room() && !conn.quit && !eof;
        if reading && let Err(msg) = input.reserve(s, need.saturating_sub(input.buf.len())).await {
            closing = Some(msg);
            continue;
        }
        tokio::select! {
            Some(a) = queue.answers.next(), if !queue.is_empty() => queue.encode(s, a, &mut out),
            r = io.read_buf(&mut input.buf), if reading => match r {
                Ok(0) => {
                    eof = true;
                    // As Redis does: a client that closed its side is gone for a blocked pop,
                    // which must not take an element it would never receive.
                    conn.alive.store(false, Ordering::Relaxed);
                }
                Ok(_) => {
                    if let Some(sp) = spinner {
                        sp.kick();
                    }
                }
                Err(_) => return,
            },
        }
    }
    let _ = io.shutdown().await;
}
