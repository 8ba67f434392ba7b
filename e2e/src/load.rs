//! Write load for the reliability scenarios, through the client Service (the API server's
//! service proxy): writers doing PUT, overwrite and DELETE on keys of their own, every operation
//! recorded in the shared [`Checker`]; then every key read back and classified.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use http::{Method, StatusCode};
use kube::Client;

use crate::checker::{Checker, Op, Read, Summary};
use crate::nodes::{self, Target};
use crate::paths;

pub struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub checker: Arc<Checker>,
    counters: WriteCounters,
}

/// Writes acknowledged and refused (or failed) so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub acked: u64,
    pub failed: u64,
}

impl WriteStats {
    /// Failed writes per thousand.
    pub fn failed_per_mille(&self) -> u64 {
        (self.failed * 1000)
            .checked_div(self.acked + self.failed)
            .unwrap_or(0)
    }
}

impl std::fmt::Display for WriteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} writes acknowledged, {} refused or failed",
            self.acked, self.failed
        )
    }
}

/// The write counts writer tasks share: each write is counted once, acknowledged or not.
#[derive(Debug, Clone, Default)]
pub struct WriteCounters {
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl WriteCounters {
    pub fn record(&self, acknowledged: bool) {
        let counter = if acknowledged {
            &self.acked
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stats(&self) -> WriteStats {
        WriteStats {
            acked: self.acked.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
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

impl Writers {
    /// `writers` tasks, each cycling over `keys` keys of its own (`{prefix}-w{n}-k{i}`).
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
        let tasks = (0..writers)
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
                        let ok = nodes::request(&client, method, &path, body)
                            .await
                            .is_ok_and(|r| r.status == StatusCode::NO_CONTENT);
                        checker.finish(&issued, ok);
                        counters.record(ok);
                        if !ok {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                })
            })
            .collect();
        Writers {
            stop,
            tasks,
            checker,
            counters,
        }
    }

    pub fn stats(&self) -> WriteStats {
        self.counters.stats()
    }

    /// Waits until `n` writes were acknowledged, or `within` passed (false).
    pub async fn wait_acked(&self, n: u64, within: Duration) -> bool {
        let poll = Duration::from_millis(100);
        self.counters.wait_acked(n, within, poll).await
    }

    /// Stops the writers and waits for the operations in flight.
    pub async fn stop(self) -> (Arc<Checker>, WriteStats) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        (self.checker, self.counters.stats())
    }
}

/// Reads every key the checker knows through `target` (transient failures retried) and
/// classifies each read.
pub async fn verify(client: &Client, target: &Target, checker: &Checker) -> Summary {
    let reads: Vec<(String, Read)> = stream::iter(checker.keys())
        .map(|key| async move {
            let read = match nodes::get(client, target, &key, 8).await {
                Ok(Some(v)) => Read::Value(v),
                Ok(None) => Read::NotFound,
                Err(e) => Read::Failed(e.to_string()),
            };
            (key, read)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    checker.summarize(&reads)
}
