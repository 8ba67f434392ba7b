//! Client load for the scenarios: writers doing PUT, overwrite and DELETE through whichever
//! pods are ready (as a client Service would route them), and Redis-protocol writers doing SET
//! and DEL the same way, every operation recorded in the shared [`Checker`]; and the final read
//! of every key, classified by it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use ringcache_e2e::checker::{Checker, Op, Read, Summary};
use ringcache_e2e::load::WriteCounters;
/// Writes issued and how they ended.
pub use ringcache_e2e::load::WriteStats as LoadStats;
use ringcache_e2e::nodes::Outcome;
use ringcache_e2e::resp;
use tokio::net::TcpStream;

/// Where and how clients reach the cluster: the base URLs (`http(s)://ip:port`) of the pods
/// a client Service would route to now, and an HTTP client set up for the cluster (trusting its
/// CA when it serves TLS).
#[derive(Clone)]
pub struct Endpoints {
    bases: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    http: reqwest::Client,
}

impl Endpoints {
    pub fn new(
        bases: impl Fn() -> Vec<String> + Send + Sync + 'static,
        http: reqwest::Client,
    ) -> Endpoints {
        Endpoints {
            bases: Arc::new(bases),
            http,
        }
    }

    /// The base URLs clients may send to now.
    pub fn now(&self) -> Vec<String> {
        (self.bases)()
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// One of the base URLs clients may send to now, chosen by `rng`; `None`, after a pause,
    /// while there is none.
    async fn pick(&self, rng: &mut Rng) -> Option<String> {
        let eps = self.now();
        if eps.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return None;
        }
        Some(eps[rng.below(eps.len())].clone())
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub writers: usize,
    /// Writers over the Redis protocol (SET and DEL of keys `r{n}-k…` through a pod's port
    /// 6379, the way a Redis client reaches the cluster). Plain clusters only: against a TLS
    /// cluster they stay idle.
    pub resp_writers: usize,
    /// Writers of hashes, sets, sorted sets and lists over the Redis protocol (keys `t{n}-k…`,
    /// each used as a register: [`crate::typed`]). Plain clusters only, as `resp_writers`.
    pub typed_writers: usize,
    /// Keys each writer cycles through (its own: no two writers share a key).
    pub keys_per_writer: usize,
    pub seed: u64,
    /// Bytes of padding in every value.
    pub value_size: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            writers: 4,
            resp_writers: 2,
            typed_writers: 2,
            keys_per_writer: 400,
            seed: 1,
            value_size: 100,
        }
    }
}

/// A deterministic generator (xorshift64*): the same seed gives the same operations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// What every writer and reader task holds.
#[derive(Clone)]
struct Shared {
    stop: Arc<AtomicBool>,
    checker: Arc<Checker>,
    endpoints: Endpoints,
    opts: LoadOptions,
}

impl Shared {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

/// A writer's next operation: one of its `keys` keys (`{writer}-k{n}`), deleted one time in
/// five, otherwise written with a value naming the key and `seq`.
fn next_op(rng: &mut Rng, writer: &str, keys: usize, seq: u64, pad: &str) -> (String, Op) {
    let key = format!("{writer}-k{}", rng.below(keys));
    let op = if rng.below(10) < 2 {
        Op::Delete
    } else {
        Op::Put(format!("{key}:{seq}:{pad}").into_bytes())
    };
    (key, op)
}

/// Writer `w`: PUT, overwrite and DELETE of its own keys until stopped.
async fn write(s: Shared, w: usize, writes: WriteCounters) {
    let http = s.endpoints.http();
    let mut rng = Rng::new(s.opts.seed.wrapping_add(w as u64 * 7919));
    let pad = "x".repeat(s.opts.value_size);
    let mut seq = 0u64;
    while s.running() {
        let Some(ep) = s.endpoints.pick(&mut rng).await else {
            continue;
        };
        seq += 1;
        let (key, op) = next_op(
            &mut rng,
            &format!("w{w}"),
            s.opts.keys_per_writer,
            seq,
            &pad,
        );
        let issued = s.checker.issue(&key, op.clone());
        let url = format!("{ep}/v1/keys/{key}");
        let req = match op {
            Op::Put(v) => http.put(url).body(v),
            Op::Delete => http.delete(url),
        }
        .timeout(REQUEST_TIMEOUT);
        // Every answer here comes from a node (no proxy in between): a 503 is the cluster
        // refusing the write, which no planned restart may cause.
        let outcome = match req.send().await {
            Ok(r) if r.status().as_u16() == 204 => Outcome::Success,
            Ok(r) if r.status().as_u16() == 503 => Outcome::NodeUnavailable,
            Ok(r) => Outcome::NodeError(r.status().as_u16()),
            Err(_) => Outcome::NoAnswer,
        };
        let ok = outcome == Outcome::Success;
        s.checker.finish(&issued, ok);
        writes.record_outcome(outcome, || format!("{key} through {ep}"));
        if !ok {
            // A refused write (503 while a member is marked down) is retried
            // by real clients after a moment; so does this one, with a new op.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The Redis address of the pod behind base URL `ep` (`http://ip:port`); none for HTTPS.
fn resp_addr(ep: &str) -> Option<String> {
    let host = ep.strip_prefix("http://")?.rsplit_once(':')?.0;
    Some(format!("{host}:6379"))
}

/// Writer `w` over the Redis protocol: SET and DEL of its own keys (`typed`: HSET, SADD, ZADD,
/// LPUSH and DEL, [`crate::typed`]) through one pod at a time (a new one after a failure, and
/// now and then, as a pooled client would), every operation recorded in the checker like the
/// HTTP writers'.
async fn write_resp(s: Shared, w: usize, writes: WriteCounters, typed: bool) {
    let salt = if typed { 15_485_863 } else { 104_729 };
    let mut rng = Rng::new(s.opts.seed.wrapping_add(salt + w as u64 * 7919));
    let pad = "r".repeat(s.opts.value_size);
    let mut conn: Option<resp::Conn<TcpStream>> = None;
    let mut seq = 0u64;
    while s.running() {
        let Some(c) = conn.as_mut() else {
            let Some(ep) = s.endpoints.pick(&mut rng).await else {
                continue;
            };
            let Some(addr) = resp_addr(&ep) else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(&addr)).await {
                Ok(Ok(stream)) => conn = Some(resp::Conn::new(stream)),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            continue;
        };
        seq += 1;
        let prefix = if typed { 't' } else { 'r' };
        let (key, op) = next_op(
            &mut rng,
            &format!("{prefix}{w}"),
            s.opts.keys_per_writer,
            seq,
            &pad,
        );
        let (op, args) = if typed {
            let op = match op {
                Op::Put(v) => crate::typed::recorded(&key, seq, v),
                Op::Delete => Op::Delete,
            };
            let args = crate::typed::write_args(&key, &op);
            (op, args)
        } else {
            let args = match &op {
                Op::Put(v) => vec![b"SET".to_vec(), key.clone().into_bytes(), v.clone()],
                Op::Delete => vec![b"DEL".to_vec(), key.clone().into_bytes()],
            };
            (op, args)
        };
        let issued = s.checker.issue(&key, op.clone());
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let call = c.call(&args);
        let (outcome, reconnect) = match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
            Ok(Ok(resp::Reply::Simple(r))) if r == "OK" => (Outcome::Success, false),
            Ok(Ok(ref r)) if typed && crate::typed::acknowledged(r) => (Outcome::Success, false),
            Ok(Ok(resp::Reply::Int(_))) if matches!(op, Op::Delete) => (Outcome::Success, false),
            // `-TRYAGAIN` is the Redis front's 503: the cluster refused; the connection is fine.
            Ok(Ok(resp::Reply::Error(e))) if e.starts_with("TRYAGAIN") => {
                (Outcome::NodeUnavailable, false)
            }
            Ok(Ok(_)) => (Outcome::NodeError(0), false),
            // No answer: the pod went away; another one next time.
            _ => (Outcome::NoAnswer, true),
        };
        let ok = outcome == Outcome::Success;
        s.checker.finish(&issued, ok);
        writes.record_outcome(outcome, || format!("{key} over the Redis protocol"));
        if reconnect || rng.below(64) == 0 {
            conn = None;
        }
        if !ok {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Reader `r`: reads of any writer's keys until stopped, each judged into `reads`.
async fn read(s: Shared, r: u64, reads: Arc<Mutex<Summary>>) {
    let mut rng = Rng::new(s.opts.seed.wrapping_add(1_000_003 + r));
    while s.running() {
        let Some(ep) = s.endpoints.pick(&mut rng).await else {
            continue;
        };
        let key = format!(
            "w{}-k{}",
            rng.below(s.opts.writers),
            rng.below(s.opts.keys_per_writer)
        );
        let ticket = s.checker.begin_read(&key);
        let read = read_once(s.endpoints.http(), &ep, &key).await;
        let verdict = s.checker.end_read(&ticket, &read);
        reads
            .lock()
            .add(&key, verdict, || format!("read through {ep}: {read:?}"));
    }
}

pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub checker: Arc<Checker>,
    writes: WriteCounters,
    /// Verdicts of the reads made while the writers ran.
    reads: Arc<Mutex<Summary>>,
}

impl Load {
    pub fn start(endpoints: Endpoints, opts: LoadOptions) -> Load {
        let shared = Shared {
            stop: Arc::new(AtomicBool::new(false)),
            checker: Arc::new(Checker::new()),
            endpoints,
            opts,
        };
        let writes = WriteCounters::default();
        let reads = Arc::new(Mutex::new(Summary::default()));
        let mut tasks: Vec<tokio::task::JoinHandle<()>> = (0..shared.opts.writers)
            .map(|w| tokio::spawn(write(shared.clone(), w, writes.clone())))
            .collect();
        tasks.extend(
            (0..shared.opts.resp_writers)
                .map(|w| tokio::spawn(write_resp(shared.clone(), w, writes.clone(), false))),
        );
        tasks.extend(
            (0..shared.opts.typed_writers)
                .map(|w| tokio::spawn(write_resp(shared.clone(), w, writes.clone(), true))),
        );
        // Two readers: every read is judged against what was acknowledged when it began (a
        // restarted node answering from an empty store shows up here, not only at the end).
        for r in 0..2u64 {
            tasks.push(tokio::spawn(read(shared.clone(), r, reads.clone())));
        }
        Load {
            stop: shared.stop,
            tasks,
            checker: shared.checker,
            writes,
            reads,
        }
    }

    pub fn stats(&self) -> LoadStats {
        self.writes.stats()
    }

    /// Waits until at least `n` writes were acknowledged (or `within` passes).
    pub async fn wait_acked(&self, n: u64, within: Duration) -> bool {
        let poll = Duration::from_millis(20);
        self.writes.wait_acked(n, within, poll).await
    }

    /// Stops every writer and reader and waits for the operations in flight to end, so the
    /// checker knows the outcome of each. Returns the checker, the write counts and the verdicts
    /// of the reads made meanwhile.
    pub async fn stop(self) -> (Arc<Checker>, LoadStats, Summary) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let stats = self.writes.stats();
        let reads = self.reads.lock().clone();
        (self.checker, stats, reads)
    }
}

/// Per client request: a node that does not answer within it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

async fn read_once(http: &reqwest::Client, ep: &str, key: &str) -> Read {
    let get = http
        .get(format!("{ep}/v1/keys/{key}"))
        .timeout(REQUEST_TIMEOUT);
    match get.send().await {
        Ok(r) if r.status().as_u16() == 200 => match r.bytes().await {
            Ok(b) => Read::Value(b.to_vec()),
            Err(e) => Read::Failed(e.to_string()),
        },
        Ok(r) if r.status().as_u16() == 404 => Read::NotFound,
        Ok(r) => Read::Failed(format!("status {}", r.status())),
        Err(e) => Read::Failed(e.to_string()),
    }
}

/// Reads typed key `key` over the Redis protocol of the pod behind `ep` ([`crate::typed`]).
async fn read_typed(ep: &str, key: &str) -> Read {
    let Some(addr) = resp_addr(ep) else {
        return Read::Failed(format!("{ep} has no Redis port"));
    };
    let read = async {
        let stream = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
        let mut c = resp::Conn::new(stream);
        let args = crate::typed::read_args(key);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        c.call(&args).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
        Ok(Ok(reply)) => crate::typed::read_value(key, reply),
        Ok(Err(e)) => Read::Failed(format!("{addr}: {e}")),
        Err(_) => Read::Failed(format!("{addr}: no answer")),
    }
}

/// Reads every key the checker knows through the endpoints (retrying a failed read for up to
/// `within`) and classifies each.
pub async fn verify(checker: &Checker, endpoints: Endpoints, within: Duration) -> Summary {
    let http = endpoints.http().clone();
    let deadline = Instant::now() + within;
    let reads: Vec<(String, Read)> = futures_util::stream::iter(checker.keys())
        .map(|key| {
            let (http, endpoints) = (http.clone(), endpoints.clone());
            async move {
                let mut attempt = 0usize;
                loop {
                    let eps = endpoints.now();
                    let last_error = if eps.is_empty() {
                        "no ready endpoint".to_string()
                    } else {
                        let ep = &eps[(attempt + key.len()) % eps.len()];
                        if key.starts_with('t') {
                            match read_typed(ep, &key).await {
                                Read::Failed(e) => e,
                                read => return (key, read),
                            }
                        } else {
                            let get = http
                                .get(format!("{ep}/v1/keys/{key}"))
                                .timeout(REQUEST_TIMEOUT);
                            match get.send().await {
                                Ok(r) if r.status().as_u16() == 200 => match r.bytes().await {
                                    Ok(b) => return (key, Read::Value(b.to_vec())),
                                    Err(e) => e.to_string(),
                                },
                                Ok(r) if r.status().as_u16() == 404 => {
                                    return (key, Read::NotFound);
                                }
                                Ok(r) => format!("status {}", r.status()),
                                Err(e) => e.to_string(),
                            }
                        }
                    };
                    attempt += 1;
                    if Instant::now() > deadline {
                        return (key, Read::Failed(last_error));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    checker.summarize(&reads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_clients_reach_plain_pods_on_6379() {
        assert_eq!(
            resp_addr("http://127.0.0.7:7070").as_deref(),
            Some("127.0.0.7:6379")
        );
        assert_eq!(resp_addr("https://127.0.0.7:7070"), None);
    }

    #[test]
    fn the_generator_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<usize> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<usize> = (0..100).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 10));
        assert!(xs.iter().any(|&x| x != xs[0]));
    }
}
