//! The acknowledged-write checker shared by the end-to-end scenarios and the cluster simulation:
//! writers record every operation they issue (PUT, overwrite, DELETE) and whether it was
//! acknowledged; afterwards every key is read once more and classified against its last
//! acknowledged operation.
//!
//! Each key is written by one writer at a time (operations on a key are sequential), so per key
//! the operations form a sequence. The final value may be the result of the last acknowledged
//! operation or of any operation issued after it (unacknowledged: it may or may not have taken
//! effect). Anything else is:
//! - **lost**: the last acknowledged operation stored a value and the key is gone;
//! - **stale**: a value older than the last acknowledged one;
//! - **resurrected**: a value after an acknowledged DELETE;
//! - **unreadable**: the read itself failed (counted apart: not data loss, but not proof either).
//!
//! Pure: no I/O, so the classification is unit-tested here.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// One write operation on a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>),
    Delete,
}

impl Op {
    fn result(&self) -> Option<&[u8]> {
        match self {
            Op::Put(v) => Some(v),
            Op::Delete => None,
        }
    }
}

/// What a final read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Value(Vec<u8>),
    NotFound,
    /// The read failed (error status, timeout): no verdict possible.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Lost,
    Stale,
    Resurrected,
    Unreadable,
}

#[derive(Debug, Default)]
struct History {
    /// Every operation in issue order, with whether it was acknowledged (None: in flight).
    ops: Vec<(Op, Option<bool>)>,
}

/// Records operations; thread-safe so that many writers share one.
#[derive(Debug, Default)]
pub struct Checker {
    keys: Mutex<BTreeMap<String, History>>,
}

/// A read under way: what had been acknowledged when it started.
#[derive(Debug, Clone)]
pub struct ReadTicket {
    key: String,
    /// Index of the last operation acknowledged before the read started.
    acked_before: Option<usize>,
}

/// Handle of an issued operation, to record its outcome.
#[derive(Debug, Clone)]
pub struct Issued {
    key: String,
    index: usize,
}

/// Counts per verdict, with a few examples of each failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub checked: u64,
    pub ok: u64,
    pub lost: u64,
    pub stale: u64,
    pub resurrected: u64,
    pub unreadable: u64,
    pub examples: Vec<String>,
}

impl Summary {
    /// Nothing lost, stale, resurrected or unreadable.
    pub fn clean(&self) -> bool {
        self.wrong() + self.unreadable == 0
    }

    /// Reads that returned something other than an acknowledged (or possibly applied) value:
    /// lost, stale or resurrected. Failed reads are not counted: a client retries them.
    pub fn wrong(&self) -> u64 {
        self.lost + self.stale + self.resurrected
    }

    /// Counts one verdict (with `detail` kept as an example when it is a failure).
    pub fn add(&mut self, key: &str, verdict: Verdict, detail: impl FnOnce() -> String) {
        self.checked += 1;
        match verdict {
            Verdict::Ok => self.ok += 1,
            Verdict::Lost => self.lost += 1,
            Verdict::Stale => self.stale += 1,
            Verdict::Resurrected => self.resurrected += 1,
            Verdict::Unreadable => self.unreadable += 1,
        }
        if verdict != Verdict::Ok && self.examples.len() < 10 {
            self.examples
                .push(format!("{key}: {verdict:?}: {}", detail()));
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checked {} keys: ok {}, lost {}, stale {}, resurrected {}, unreadable {}",
            self.checked, self.ok, self.lost, self.stale, self.resurrected, self.unreadable
        )
    }
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Records that `op` on `key` is being issued now (before the request is sent).
    pub fn issue(&self, key: &str, op: Op) -> Issued {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let h = keys.entry(key.to_string()).or_default();
        h.ops.push((op, None));
        Issued {
            key: key.to_string(),
            index: h.ops.len() - 1,
        }
    }

    /// Records the outcome of an issued operation: acknowledged (2xx) or not (anything else,
    /// including a timeout: it may still have taken effect).
    pub fn finish(&self, issued: &Issued, acknowledged: bool) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(op) = keys
            .get_mut(&issued.key)
            .and_then(|h| h.ops.get_mut(issued.index))
        {
            op.1 = Some(acknowledged);
        }
    }

    /// Every key with at least one operation.
    pub fn keys(&self) -> Vec<String> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.keys().cloned().collect()
    }

    /// Keys starting with `prefix` that at least one acknowledged write went to.
    pub fn acknowledged_keys(&self, prefix: &str) -> usize {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter(|(k, h)| {
                k.starts_with(prefix) && h.ops.iter().any(|(_, ack)| *ack == Some(true))
            })
            .count()
    }

    /// Operations issued and acknowledged so far.
    pub fn counts(&self) -> (u64, u64) {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.values()
            .flat_map(|h| &h.ops)
            .fold((0, 0), |(n, a), (_, ack)| {
                (n + 1, a + u64::from(*ack == Some(true)))
            })
    }

    /// Starts a read of `key` issued while writers run.
    pub fn begin_read(&self, key: &str) -> ReadTicket {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let acked_before = keys
            .get(key)
            .and_then(|h| h.ops.iter().rposition(|(_, ack)| *ack == Some(true)));
        ReadTicket {
            key: key.to_string(),
            acked_before,
        }
    }

    /// The verdict for a read begun with `ticket`: it may return what was acknowledged last when
    /// it began, or the result of any operation issued since (or still unacknowledged then).
    pub fn end_read(&self, ticket: &ReadTicket, read: &Read) -> Verdict {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = keys.get(&ticket.key) else {
            return Verdict::Ok;
        };
        classify_from(&h.ops, ticket.acked_before, read)
    }

    /// The verdict for `key` given what a final read found.
    pub fn classify(&self, key: &str, read: &Read) -> Verdict {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = keys.get(key) else {
            return Verdict::Ok;
        };
        classify(&h.ops, read)
    }

    /// Classifies every read and sums the verdicts.
    pub fn summarize(&self, reads: &[(String, Read)]) -> Summary {
        let mut s = Summary::default();
        for (key, read) in reads {
            let verdict = self.classify(key, read);
            s.add(key, verdict, || format!("read {read:?}"));
        }
        s
    }
}

fn classify(ops: &[(Op, Option<bool>)], read: &Read) -> Verdict {
    let last_acked = ops.iter().rposition(|(_, ack)| *ack == Some(true));
    classify_from(ops, last_acked, read)
}

/// The verdict against `last_acked`, the operation whose result is the least a read may see.
fn classify_from(ops: &[(Op, Option<bool>)], last_acked: Option<usize>, read: &Read) -> Verdict {
    let got: Option<&[u8]> = match read {
        Read::Value(v) => Some(v),
        Read::NotFound => None,
        Read::Failed(_) => return Verdict::Unreadable,
    };
    // Allowed: the last acknowledged result, or the result of anything issued after it (not
    // acknowledged: it may have applied). Before any acknowledged operation, the key may also
    // not exist at all.
    let allowed = match last_acked {
        None => got.is_none() || ops.iter().any(|(op, _)| op.result() == got),
        Some(a) => ops[a..].iter().any(|(op, _)| op.result() == got),
    };
    if allowed {
        return Verdict::Ok;
    }
    match (last_acked.map(|i| &ops[i].0), got) {
        (Some(Op::Put(_)), None) => Verdict::Lost,
        (Some(Op::Delete), Some(_)) => Verdict::Resurrected,
        _ => Verdict::Stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(v: &str) -> Op {
        Op::Put(v.as_bytes().to_vec())
    }

    fn value(v: &str) -> Read {
        Read::Value(v.as_bytes().to_vec())
    }

    fn history(ops: &[(Op, bool)]) -> Checker {
        let c = Checker::new();
        for (op, ack) in ops {
            let i = c.issue("k", op.clone());
            c.finish(&i, *ack);
        }
        c
    }

    #[test]
    fn the_last_acknowledged_value_is_ok_and_anything_older_is_stale() {
        let c = history(&[(put("v1"), true), (put("v2"), true)]);
        assert_eq!(c.classify("k", &value("v2")), Verdict::Ok);
        assert_eq!(c.classify("k", &value("v1")), Verdict::Stale);
        assert_eq!(c.classify("k", &Read::NotFound), Verdict::Lost);
    }

    #[test]
    fn after_an_acknowledged_delete_any_value_is_resurrected() {
        let c = history(&[(put("v1"), true), (Op::Delete, true)]);
        assert_eq!(c.classify("k", &Read::NotFound), Verdict::Ok);
        assert_eq!(c.classify("k", &value("v1")), Verdict::Resurrected);
    }

    #[test]
    fn unacknowledged_operations_after_the_last_acknowledged_one_may_go_either_way() {
        let c = history(&[(put("v1"), true), (Op::Delete, false), (put("v3"), false)]);
        assert_eq!(c.classify("k", &value("v1")), Verdict::Ok);
        assert_eq!(c.classify("k", &Read::NotFound), Verdict::Ok);
        assert_eq!(c.classify("k", &value("v3")), Verdict::Ok);
        // An operation still in flight counts as unacknowledged.
        let c = Checker::new();
        let i = c.issue("k", put("v1"));
        c.finish(&i, true);
        c.issue("k", put("v2"));
        assert_eq!(c.classify("k", &value("v2")), Verdict::Ok);
    }

    #[test]
    fn an_unacknowledged_operation_before_the_last_acknowledged_one_does_not_count() {
        let c = history(&[(put("v1"), false), (put("v2"), true)]);
        assert_eq!(c.classify("k", &value("v1")), Verdict::Stale);
        let c = history(&[(Op::Delete, false), (put("v2"), true)]);
        assert_eq!(c.classify("k", &Read::NotFound), Verdict::Lost);
    }

    #[test]
    fn a_key_never_acknowledged_may_be_absent_or_hold_an_attempted_value() {
        let c = history(&[(put("v1"), false)]);
        assert_eq!(c.classify("k", &Read::NotFound), Verdict::Ok);
        assert_eq!(c.classify("k", &value("v1")), Verdict::Ok);
        assert_eq!(c.classify("k", &value("other")), Verdict::Stale);
    }

    #[test]
    fn a_read_during_the_load_is_judged_by_what_was_acknowledged_when_it_began() {
        let c = Checker::new();
        let i = c.issue("k", put("v1"));
        c.finish(&i, true);
        let ticket = c.begin_read("k");
        // A write acknowledged while the read is under way: either value is fine.
        let j = c.issue("k", put("v2"));
        c.finish(&j, true);
        assert_eq!(c.end_read(&ticket, &value("v1")), Verdict::Ok);
        assert_eq!(c.end_read(&ticket, &value("v2")), Verdict::Ok);
        assert_eq!(c.end_read(&ticket, &Read::NotFound), Verdict::Lost);
        // A read begun after v2 was acknowledged must not see v1.
        let later = c.begin_read("k");
        assert_eq!(c.end_read(&later, &value("v1")), Verdict::Stale);
    }

    #[test]
    fn failed_reads_are_unreadable_and_the_summary_counts_each_verdict() {
        let c = Checker::new();
        for (k, ops) in [
            ("a", vec![(put("a1"), true)]),
            ("b", vec![(put("b1"), true)]),
            ("c", vec![(put("c1"), true), (Op::Delete, true)]),
            ("d", vec![(put("d1"), true), (put("d2"), true)]),
            ("e", vec![(put("e1"), true)]),
        ] {
            for (op, ack) in ops {
                let i = c.issue(k, op);
                c.finish(&i, ack);
            }
        }
        let reads = vec![
            ("a".to_string(), value("a1")),
            ("b".to_string(), Read::NotFound),
            ("c".to_string(), value("c1")),
            ("d".to_string(), value("d1")),
            ("e".to_string(), Read::Failed("503".into())),
        ];
        let s = c.summarize(&reads);
        assert_eq!(
            (
                s.checked,
                s.ok,
                s.lost,
                s.resurrected,
                s.stale,
                s.unreadable
            ),
            (5, 1, 1, 1, 1, 1)
        );
        assert!(!s.clean());
        assert_eq!(s.examples.len(), 4);
        assert_eq!(c.counts(), (7, 7));
    }
}
