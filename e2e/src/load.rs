//! Load for the reliability scenarios, through the client Service (the API server's service
//! proxy): writers doing PUT, overwrite and DELETE on keys of their own, and readers reading those
//! keys while the writers run, every operation recorded in the shared [`Checker`]; then every key
//! read back and classified.
//!
//! Unacknowledged writes are counted by who answered ([`Outcome`]): a node's own 503 means the
//! cluster refused the write, which a planned rollout must never cause, while proxy errors and
//! missing answers come from the way to a pod that is going away.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use http::Method;
use kube::Client;

use crate::checker::{Checker, Op, Read, Summary};
use crate::error::E2eError;
use crate::harness::{PROGRESS_EVERY, Progress};
use crate::nodes::{self, Outcome, Target};
use crate::paths;

/// Readers running next to the writers.
const READERS: usize = 2;

/// How long reading every key back may take in all.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(300);

/// Examples of unacknowledged writes kept for the report.
const EXAMPLES: usize = 10;

/// Writes acknowledged and not acknowledged so far, the latter by who answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub acked: u64,
    /// Every write not acknowledged, whatever the reason (also those recorded without one).
    pub failed: u64,
    /// Answered 503 by a node itself (its JSON error): refused by the cluster.
    pub node_503: u64,
    /// Answered another error status by a node.
    pub node_error: u64,
    /// Answered by the API server's proxy, not by a node (502/503/504 while a pod goes away).
    pub proxy: u64,
    /// No answer: connection errors, timeouts.
    pub no_answer: u64,
}

impl WriteStats {
    /// Failed writes per thousand.
    pub fn failed_per_mille(&self) -> u64 {
        (self.failed * 1000)
            .checked_div(self.acked + self.failed)
            .unwrap_or(0)
    }

    /// The unacknowledged writes whose reason was recorded.
    fn classified(&self) -> u64 {
        self.node_503 + self.node_error + self.proxy + self.no_answer
    }
}

impl std::fmt::Display for WriteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} writes acknowledged, {} refused or failed",
            self.acked, self.failed
        )?;
        if self.classified() > 0 {
            write!(
                f,
                " (answered 503 by a node: {}; other node errors: {}; proxy errors: {}; \
                 no answer: {})",
                self.node_503, self.node_error, self.proxy, self.no_answer
            )?;
        }
        Ok(())
    }
}

/// The write counts writer tasks share: each write is counted once, acknowledged or not.
#[derive(Debug, Clone, Default)]
pub struct WriteCounters {
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    node_503: Arc<AtomicU64>,
    node_error: Arc<AtomicU64>,
    proxy: Arc<AtomicU64>,
    no_answer: Arc<AtomicU64>,
    examples: Arc<Mutex<Vec<String>>>,
}

impl WriteCounters {
    /// Counts a write known only as acknowledged or not.
    pub fn record(&self, acknowledged: bool) {
        let counter = if acknowledged {
            &self.acked
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a write by its [`Outcome`]; `detail` describes a failure for the examples.
    pub fn record_outcome(&self, outcome: Outcome, detail: impl FnOnce() -> String) {
        self.record(outcome == Outcome::Success);
        let by_kind = match outcome {
            Outcome::Success => return,
            Outcome::NodeUnavailable => &self.node_503,
            Outcome::NodeError(_) => &self.node_error,
            Outcome::Proxy(_) => &self.proxy,
            Outcome::NoAnswer => &self.no_answer,
        };
        by_kind.fetch_add(1, Ordering::Relaxed);
        let mut examples = self.examples.lock().unwrap_or_else(|p| p.into_inner());
        if examples.len() < EXAMPLES {
            examples.push(format!("{outcome:?}: {}", detail()));
        }
    }

    pub fn stats(&self) -> WriteStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WriteStats {
            acked: get(&self.acked),
            failed: get(&self.failed),
            node_503: get(&self.node_503),
            node_error: get(&self.node_error),
            proxy: get(&self.proxy),
            no_answer: get(&self.no_answer),
        }
    }

    /// The first few unacknowledged writes recorded with [`Self::record_outcome`].
    pub fn examples(&self) -> Vec<String> {
        self.examples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until at least `n` writes were acknowledged, looking every `poll`, or `within`
    /// passed (false).
    pub async fn wait_acked(&self, n: u64, within: Duration, poll: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.acked.load(Ordering::Relaxed) < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(poll).await;
        }
        true
    }
}

/// How a read went, for the examples in a [`Summary`].
fn describe_read(read: &Read) -> String {
    match read {
        Read::Value(v) => format!("value {:?}", String::from_utf8_lossy(v)),
        Read::NotFound => "not found".into(),
        Read::Failed(e) => format!("failed: {e}"),
    }
}

/// A GET through `target`, once: a read for the checker.
async fn read_once(client: &Client, target: &Target, key: &str) -> Read {
    let path = target.path(&paths::key_path(key));
    let result = nodes::request(client, Method::GET, &path, Vec::new()).await;
    match nodes::read_of(result, &path) {
        Ok(Some(v)) => Read::Value(v),
        Ok(None) => Read::NotFound,
        Err(e) => Read::Failed(e.to_string()),
    }
}

/// What a load run leaves: the checker with every operation, the write counts, and the verdicts
/// of the reads made while the writers ran.
pub struct LoadReport {
    pub checker: Arc<Checker>,
    pub writes: WriteStats,
    pub write_examples: Vec<String>,
    pub reads: Summary,
}

pub struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub checker: Arc<Checker>,
    counters: WriteCounters,
    reads: Arc<Mutex<Summary>>,
    label: String,
}

impl Writers {
    /// `writers` tasks, each cycling over `keys` keys of its own (`{prefix}-w{n}-k{i}`), and
    /// [`READERS`] tasks reading those keys, all through `target`.
    pub fn start(
        client: &Client,
        target: &Target,
        prefix: &str,
        writers: usize,
        keys: usize,
    ) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let checker = Arc::new(Checker::new());
        let counters = WriteCounters::default();
        let reads = Arc::new(Mutex::new(Summary::default()));
        let mut tasks: Vec<tokio::task::JoinHandle<()>> = (0..writers)
            .map(|w| {
                let (client, target, stop, checker) = (
                    client.clone(),
                    target.clone(),
                    stop.clone(),
                    checker.clone(),
                );
                let counters = counters.clone();
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    let mut seq = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        seq += 1;
                        // A fixed, key-dependent mix: every fifth operation on a key deletes it.
                        let key = format!("{prefix}-w{w}-k{}", (seq * 7919) % keys.max(1));
                        let op = if seq.is_multiple_of(5) {
                            Op::Delete
                        } else {
                            Op::Put(format!("{key}:{seq}:ringcache-e2e").into_bytes())
                        };
                        let issued = checker.issue(&key, op.clone());
                        let path = target.path(&paths::key_path(&key));
                        let (method, body) = match op {
                            Op::Put(v) => (Method::PUT, v),
                            Op::Delete => (Method::DELETE, Vec::new()),
                        };
                        let result = nodes::request(&client, method.clone(), &path, body).await;
                        let outcome = Outcome::of(&result);
                        let ok = outcome == Outcome::Success;
                        checker.finish(&issued, ok);
                        counters.record_outcome(outcome, || match &result {
                            Ok(r) => format!(
                                "{method} {key}: {} {}",
                                r.status,
                                String::from_utf8_lossy(&r.body)
                                    .chars()
                                    .take(200)
                                    .collect::<String>()
                            ),
                            Err(e) => format!("{method} {key}: {e}"),
                        });
                        if !ok {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                })
            })
            .collect();
        tasks.extend((0..READERS).map(|r| {
            let (client, target, stop, checker, reads) = (
                client.clone(),
                target.clone(),
                stop.clone(),
                checker.clone(),
                reads.clone(),
            );
            tokio::spawn(async move {
                let mut known: Vec<String> = Vec::new();
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // The key list grows as writers reach new keys; refreshing it now and then
                    // is enough and keeps the checker's lock short.
                    if n.is_multiple_of(200) || known.is_empty() {
                        known = checker.keys();
                    }
                    n += 1;
                    if known.is_empty() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    let key = &known[(n * 7919 + r * 104_729) % known.len()];
                    let ticket = checker.begin_read(key);
                    let read = read_once(&client, &target, key).await;
                    let verdict = checker.end_read(&ticket, &read);
                    reads
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .add(key, verdict, || {
                            format!("read while the writers ran: {}", describe_read(&read))
                        });
                    if matches!(read, Read::Failed(_)) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        }));
        Writers {
            stop,
            tasks,
            checker,
            counters,
            reads,
            label: format!("load on {}", target.describe()),
        }
    }

    pub fn stats(&self) -> WriteStats {
        self.counters.stats()
    }

    /// The verdicts of the reads made so far while the writers ran.
    pub fn reads(&self) -> Summary {
        self.reads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every writer and reader task is still running (none ended early, e.g. by a panic).
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && self.tasks.iter().all(|t| !t.is_finished())
    }

    /// Waits until `n` writes were acknowledged, or `within` passed (false), saying how far it
    /// got every [`PROGRESS_EVERY`].
    pub async fn wait_acked(&self, n: u64, within: Duration) -> bool {
        let mut progress =
            Progress::new(format!("{}: {n} writes acknowledged", self.label), within);
        let poll = Duration::from_millis(100);
        loop {
            let slice = PROGRESS_EVERY.min(within.saturating_sub(progress.elapsed()));
            if self.counters.wait_acked(n, slice, poll).await {
                return true;
            }
            if progress.expired() {
                println!("{}: only {}", self.label, self.stats());
                return false;
            }
            progress.heartbeat(&self.stats().to_string());
        }
    }

    /// Stops writers and readers and waits for the operations in flight (each bounded by
    /// [`nodes::NODE_TIMEOUT`]).
    pub async fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            if let Err(e) = t.await {
                println!("{}: a load task ended abnormally: {e}", self.label);
            }
        }
        LoadReport {
            checker: self.checker.clone(),
            writes: self.counters.stats(),
            write_examples: self.counters.examples(),
            reads: self.reads(),
        }
    }
}

/// A scenario that fails mid-way drops its load without [`Writers::stop`]: the tasks must not
/// keep writing through the diagnostics and the namespace's deletion.
impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads every key the checker knows through `target` (transient failures retried) and
/// classifies each read; fails if that takes longer than [`VERIFY_TIMEOUT`], and says how far it
/// got every [`PROGRESS_EVERY`].
pub async fn verify(
    client: &Client,
    target: &Target,
    checker: &Checker,
) -> Result<Summary, E2eError> {
    let keys = checker.keys();
    let total = keys.len();
    let done = AtomicUsize::new(0);
    let mut progress = Progress::new(
        format!("reading back {total} keys through {}", target.describe()),
        VERIFY_TIMEOUT,
    );
    let reads = stream::iter(keys)
        .map(|key| {
            let done = &done;
            async move {
                let read = match nodes::get(client, target, &key, 8).await {
                    Ok(Some(v)) => Read::Value(v),
                    Ok(None) => Read::NotFound,
                    Err(e) => Read::Failed(e.to_string()),
                };
                done.fetch_add(1, Ordering::Relaxed);
                (key, read)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<(String, Read)>>();
    tokio::pin!(reads);
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    let reads = loop {
        tokio::select! {
            reads = &mut reads => break reads,
            _ = ticker.tick() => {
                let seen = format!("{} of {total} read", done.load(Ordering::Relaxed));
                if progress.expired() {
                    return Err(progress.timed_out(seen));
                }
                progress.heartbeat(&seen);
            }
        }
    };
    Ok(checker.summarize(&reads))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_is_counted_once_and_refusals_by_who_answered() {
        let c = WriteCounters::default();
        c.record_outcome(Outcome::Success, || unreachable!("no detail for a success"));
        c.record_outcome(Outcome::Success, String::new);
        c.record_outcome(Outcome::NodeUnavailable, || "PUT k: 503 node".into());
        c.record_outcome(Outcome::Proxy(502), || "PUT k: 502".into());
        c.record_outcome(Outcome::Proxy(503), || "PUT k: 503 proxy".into());
        c.record_outcome(Outcome::NoAnswer, || "PUT k: timeout".into());
        c.record_outcome(Outcome::NodeError(507), || "PUT k: 507".into());
        let s = c.stats();
        assert_eq!(
            (
                s.acked,
                s.failed,
                s.node_503,
                s.proxy,
                s.no_answer,
                s.node_error
            ),
            (2, 5, 1, 2, 1, 1)
        );
        assert_eq!(s.failed, s.classified());
        assert_eq!(c.examples().len(), 5);
        assert!(c.examples()[0].starts_with("NodeUnavailable"));
    }

    #[test]
    fn writes_recorded_without_a_reason_still_count_as_failed() {
        let c = WriteCounters::default();
        c.record(true);
        c.record(false);
        let s = c.stats();
        assert_eq!((s.acked, s.failed, s.classified()), (1, 1, 0));
        assert_eq!(s.to_string(), "1 writes acknowledged, 1 refused or failed");
        assert_eq!(s.failed_per_mille(), 500);
    }

    #[test]
    fn the_summary_line_names_every_kind_of_refusal() {
        let s = WriteStats {
            acked: 10,
            failed: 4,
            node_503: 1,
            node_error: 0,
            proxy: 2,
            no_answer: 1,
        };
        assert_eq!(
            s.to_string(),
            "10 writes acknowledged, 4 refused or failed (answered 503 by a node: 1; \
             other node errors: 0; proxy errors: 2; no answer: 1)"
        );
    }

    #[test]
    fn examples_are_bounded() {
        let c = WriteCounters::default();
        for i in 0..EXAMPLES + 5 {
            c.record_outcome(Outcome::NoAnswer, || format!("w{i}"));
        }
        assert_eq!(c.examples().len(), EXAMPLES);
        assert_eq!(c.stats().no_answer, (EXAMPLES + 5) as u64);
    }
}
