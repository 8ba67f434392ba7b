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

pub mod command;
mod info;
pub mod parse;
pub mod reply;

use crate::budget::Draw;
use crate::cluster::node::SharedNode;
use crate::serve::Limits;
use crate::tls::TlsServer;
use bytes::{Buf, BytesMut};
use command::{Answer, Args, Conn, Exec, Reply};
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
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    while let Some((stream, peer, permit)) =
        crate::serve::accept(&listener, &slots, &mut shutdown, Some(&s.metrics)).await
    {
        let (s, tls, handshake) = (s.clone(), tls.clone(), limits.handshake_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let m = &s.metrics;
            m.resp_connections.fetch_add(1, Ordering::Relaxed);
            m.resp_connections_total.fetch_add(1, Ordering::Relaxed);
            match tls {
                None => connection(stream, &s).await,
                Some(tls) => {
                    match tokio::time::timeout(handshake, tls.acceptor().accept(stream)).await {
                        Ok(Ok(io)) => connection(io, &s).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            s.metrics.resp_connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// A waiting command's answer and the partitions it touches (for ordering).
struct Waiting {
    partitions: Vec<u32>,
    writes: bool,
}

/// The input buffer with its draws on the buffer budget.
struct Input {
    buf: BytesMut,
    draws: Vec<Draw>,
    drawn: usize,
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

    /// After a large command: back to a small buffer, the budget returned.
    fn shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > BASE_BUFFER {
            self.buf = BytesMut::with_capacity(16 << 10);
            self.draws.clear();
            self.drawn = 0;
        }
    }
}

/// Serves one RESP connection on `io` until the client closes it, sends a malformed frame
/// or `QUIT` (the fuzz targets drive it over an in-memory pipe).
pub async fn connection<IO: AsyncRead + AsyncWrite + Unpin>(mut io: IO, s: &SharedNode) {
    let lim = parse::Limits {
        max_bulk: usize::try_from(s.max_value_size)
            .unwrap_or(usize::MAX)
            .max(ringcache_ring::MAX_KEY_LEN),
        max_args: MAX_ARGS,
        max_inline: BASE_BUFFER,
    };
    let mut input = Input {
        buf: BytesMut::with_capacity(16 << 10),
        draws: Vec::new(),
        drawn: 0,
    };
    let mut out: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut ranges = Vec::with_capacity(8);
    let mut parts: Vec<u32> = Vec::with_capacity(8);
    let mut conn = Conn {
        id: CONNECTION_IDS.fetch_add(1, Ordering::Relaxed),
        authed: s.auth_token.is_none(),
        resp3: false,
        name: None,
        quit: false,
    };
    let mut pending: FuturesOrdered<BoxFuture<'static, Answer>> = FuturesOrdered::new();
    let mut waiting: VecDeque<Waiting> = VecDeque::new();
    let mut discard: Option<Discard> = None;
    let mut need = 0usize;
    let mut closing: Option<String> = None;
    'conn: loop {
        // Run every whole command buffered.
        while pending.len() < MAX_PENDING && !conn.quit && closing.is_none() {
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
                    let msg = format!(
                        "ERR argument of {size} bytes is larger than maxValueSize ({} bytes): nothing was done",
                        s.max_value_size
                    );
                    s.metrics.resp_errors.fetch_add(1, Ordering::Relaxed);
                    queue(
                        &mut out,
                        &mut pending,
                        &mut waiting,
                        Answer::Err(msg),
                        &conn,
                    );
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
                    let spec = command::lookup(args.get(0));
                    // The partitions it touches, needed only when something waits (computed
                    // once, before the buffer moves on).
                    let mut parts_known = false;
                    let partitions = |parts: &mut Vec<u32>| {
                        parts.clear();
                        if let Some(spec) = spec {
                            parts.extend(
                                spec.key_indexes(args.len())
                                    .map(|i| s.engine.partition_of(args.get(i))),
                            );
                        }
                    };
                    // Order behind an unanswered command this one depends on.
                    if let Some(spec) = spec
                        && !pending.is_empty()
                    {
                        partitions(&mut parts);
                        parts_known = true;
                        let conflict = waiting.iter().any(|w| {
                            (w.writes || spec.writes)
                                && w.partitions.iter().any(|p| parts.contains(p))
                        });
                        if conflict {
                            while let Some(a) = pending.next().await {
                                waiting.pop_front();
                                command::count_error(s, &a);
                                command::encode(&mut out, a, conn.resp3);
                            }
                        }
                    }
                    let mut scratch = Vec::new();
                    let target = if pending.is_empty() {
                        &mut out
                    } else {
                        &mut scratch
                    };
                    let mut x = Exec {
                        s,
                        conn: &mut conn,
                        out: target,
                    };
                    let reply = command::execute(&mut x, spec, &args);
                    match reply {
                        Reply::Now if !scratch.is_empty() => queue(
                            &mut out,
                            &mut pending,
                            &mut waiting,
                            Answer::Raw(scratch),
                            &conn,
                        ),
                        Reply::Now => {}
                        Reply::Later(fut) => {
                            if !parts_known {
                                partitions(&mut parts);
                            }
                            pending.push_back(fut);
                            waiting.push_back(Waiting {
                                partitions: parts.clone(),
                                writes: spec.is_some_and(|sp| sp.writes),
                            });
                        }
                    }
                    input.buf.advance(len);
                    if out.len() >= FLUSH_AT {
                        if io.write_all(&out).await.is_err() {
                            break 'conn;
                        }
                        out.clear();
                    }
                }
            }
        }
        // Answers that are ready, without waiting.
        while let Some(Some(a)) = futures_util::FutureExt::now_or_never(pending.next()) {
            waiting.pop_front();
            command::count_error(s, &a);
            command::encode(&mut out, a, conn.resp3);
        }
        if let Some(msg) = &closing {
            while let Some(a) = pending.next().await {
                command::count_error(s, &a);
                command::encode(&mut out, a, conn.resp3);
            }
            s.metrics.resp_errors.fetch_add(1, Ordering::Relaxed);
            command::encode(&mut out, Answer::Err(msg.clone()), conn.resp3);
            let _ = io.write_all(&out).await;
            break;
        }
        if !out.is_empty() {
            if io.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if conn.quit && pending.is_empty() {
            break;
        }
        input.shrink();
        if let Err(msg) = input.reserve(s, need.saturating_sub(input.buf.len())).await {
            closing = Some(msg);
            continue;
        }
        let reading = pending.len() < MAX_PENDING && !conn.quit;
        tokio::select! {
            Some(a) = pending.next(), if !pending.is_empty() => {
                waiting.pop_front();
                command::count_error(s, &a);
                                command::encode(&mut out, a, conn.resp3);
            }
            r = io.read_buf(&mut input.buf), if reading => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    let _ = io.shutdown().await;
}

/// Queues an answer known now behind the waiting ones (or writes it when none wait).
fn queue(
    out: &mut Vec<u8>,
    pending: &mut FuturesOrdered<BoxFuture<'static, Answer>>,
    waiting: &mut VecDeque<Waiting>,
    a: Answer,
    conn: &Conn,
) {
    if pending.is_empty() {
        command::encode(out, a, conn.resp3);
    } else {
        pending.push_back(Box::pin(std::future::ready(a)));
        waiting.push_back(Waiting {
            partitions: Vec::new(),
            writes: false,
        });
    }
}
