//! What `ringcache ring` and `ringcache stats` print. Pure: documents in, text out.

use ringcache_ring::{MemberState, RingDoc, Table, diff, moved_replicas};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Spread of a per-member count (partition replicas or primaries).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    pub min: usize,
    pub max: usize,
    pub mean: f64,
}

impl Balance {
    /// `None` for no members.
    pub fn of(counts: &[usize]) -> Option<Balance> {
        let min = *counts.iter().min()?;
        let max = *counts.iter().max()?;
        let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
        Some(Balance { min, max, mean })
    }

    /// Every member within ⌊mean⌋..=⌈mean⌉: the promise of `rebalance`.
    pub fn is_balanced(&self) -> bool {
        self.max - self.min <= 1
    }
}

impl std::fmt::Display for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {}  max {}  mean {:.1}  ({})",
            self.min,
            self.max,
            self.mean,
            if self.is_balanced() {
                "balanced".to_string()
            } else {
                format!("unbalanced: spread {}", self.max - self.min)
            }
        )
    }
}

/// Per-member counts of one table: (replicas, primaries), indexed like `members`.
pub fn member_counts(table: &Table, members: usize) -> Vec<(usize, usize)> {
    let mut counts = vec![(0usize, 0usize); members];
    for owners in table {
        for (rank, &i) in owners.iter().enumerate() {
            if let Some(c) = counts.get_mut(i as usize) {
                c.0 += 1;
                if rank == 0 {
                    c.1 += 1;
                }
            }
        }
    }
    counts
}

/// Balance of replicas and primaries over the members that `eligible` selects (for the current
/// table: all but `joining`, which own nothing yet; for the pending table: all but `leaving`).
fn balances(
    doc: &RingDoc,
    counts: &[(usize, usize)],
    eligible: impl Fn(MemberState) -> bool,
) -> (Option<Balance>, Option<Balance>) {
    let (replicas, primaries): (Vec<usize>, Vec<usize>) = doc
        .members
        .iter()
        .zip(counts)
        .filter(|(m, _)| eligible(m.state))
        .map(|(_, &c)| c)
        .unzip();
    (Balance::of(&replicas), Balance::of(&primaries))
}

/// The text of `ringcache ring`.
pub fn ring_summary(doc: &RingDoc) -> String {
    let n = doc.members.len();
    let current = member_counts(&doc.table, n);
    let target = doc.pending.as_ref().map(|pd| member_counts(&pd.table, n));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "ring epoch {}: {} member{}, {} partitions, replication factor {}, hash {}",
        doc.epoch,
        n,
        if n == 1 { "" } else { "s" },
        doc.partitions,
        doc.replication_factor,
        doc.hash
    );
    out.push('\n');

    let mut headers = vec!["member", "state", "addr", "partitions", "primaries"];
    if target.is_some() {
        headers.extend(["target partitions", "target primaries"]);
    }
    let mut table = TextTable::new(&headers, &[false, false, false, true, true, true, true]);
    for (i, m) in doc.members.iter().enumerate() {
        let mut row = vec![
            m.id.clone(),
            m.state.as_str().to_string(),
            if m.addr.is_empty() {
                "-".to_string()
            } else {
                m.addr.clone()
            },
            current[i].0.to_string(),
            current[i].1.to_string(),
        ];
        if let Some(t) = &target {
            row.push(t[i].0.to_string());
            row.push(t[i].1.to_string());
        }
        table.row(row);
    }
    out.push_str(&table.render());
    out.push('\n');

    let (replicas, primaries) = balances(doc, &current, |s| s != MemberState::Joining);
    write_balance(&mut out, "partitions per member: ", replicas);
    write_balance(&mut out, "primaries per member:  ", primaries);

    match (&doc.pending, &target) {
        (Some(pending), Some(t)) => {
            let changed = diff(&doc.table, &pending.table).len();
            let _ = writeln!(
                out,
                "pending migration: {changed} partitions gain an owner, {} replicas move",
                moved_replicas(&doc.table, &pending.table)
            );
            let (replicas, primaries) = balances(doc, t, |s| s != MemberState::Leaving);
            write_balance(&mut out, "target partitions per member: ", replicas);
            write_balance(&mut out, "target primaries per member:  ", primaries);
        }
        _ => out.push_str("pending migration: none\n"),
    }
    out
}

fn write_balance(out: &mut String, label: &str, balance: Option<Balance>) {
    match balance {
        Some(b) => {
            let _ = writeln!(out, "{label}{b}");
        }
        None => {
            let _ = writeln!(out, "{label}no members");
        }
    }
}

/// One row of `ringcache stats`: who, and their `/v1/stats` JSON or the error.
pub struct StatsRow {
    pub node: String,
    pub state: Option<MemberState>,
    pub stats: Result<serde_json::Value, String>,
}

/// Columns the node documents, in the order an operator reads them; any other field follows
/// alphabetically, so a newer node's extra fields still show.
const PREFERRED: &[&str] = &[
    "items",
    "bytes",
    "hits",
    "misses",
    "evictions",
    "expired",
    "partitionsOwned",
    "partitions_owned",
    "epoch",
];

/// The text of `ringcache stats`: one row per node, one column per stats field.
pub fn stats_table(rows: &[StatsRow]) -> String {
    let flat: Vec<Vec<(String, String)>> = rows
        .iter()
        .map(|r| match &r.stats {
            Ok(v) => {
                let mut fields = Vec::new();
                flatten("", v, &mut fields);
                fields
            }
            Err(_) => Vec::new(),
        })
        .collect();
    let mut names: Vec<String> = Vec::new();
    for p in PREFERRED {
        if flat.iter().flatten().any(|(k, _)| k == p) {
            names.push((*p).to_string());
        }
    }
    let rest: BTreeSet<&String> = flat
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !PREFERRED.contains(&k.as_str()))
        .collect();
    names.extend(rest.into_iter().cloned());
    let any_error = rows.iter().any(|r| r.stats.is_err());

    let mut headers: Vec<&str> = vec!["node", "state"];
    headers.extend(names.iter().map(String::as_str));
    let mut right = vec![false, false];
    right.extend(names.iter().map(|_| true));
    if any_error {
        headers.push("error");
        right.push(false);
    }
    let mut table = TextTable::new(&headers, &right);
    for (r, fields) in rows.iter().zip(&flat) {
        let mut row = vec![
            r.node.clone(),
            r.state.map_or("-", MemberState::as_str).to_string(),
        ];
        for name in &names {
            let value = fields
                .iter()
                .find(|(k, _)| k == name)
                .map_or("-", |(_, v)| v.as_str());
            row.push(value.to_string());
        }
        if any_error {
            row.push(r.stats.as_ref().err().cloned().unwrap_or_default());
        }
        table.row(row);
    }
    table.render()
}

/// Nested objects become dotted names (`replication.queue`); arrays print as JSON.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&name, v, out);
            }
        }
        Value::Null => out.push((prefix.to_string(), "-".to_string())),
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Columns padded to their widest cell, two spaces apart; numbers right-aligned.
struct TextTable {
    headers: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl TextTable {
    fn new(headers: &[&str], right: &[bool]) -> TextTable {
        TextTable {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            right: right.to_vec(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                let pad = width.saturating_sub(cell.chars().count());
                if c > 0 {
                    line.push_str("  ");
                }
                if self.right.get(c).copied().unwrap_or(false) {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcache_ring::{HASH_XXH3_64, Member, Pending};

    fn member(id: &str, addr: &str, state: MemberState) -> Member {
        Member {
            id: id.into(),
            addr: addr.into(),
            state,
            incarnation: None,
        }
    }

    fn three_members() -> RingDoc {
        RingDoc {
            version: 1,
            epoch: 42,
            partitions: 6,
            replication_factor: 2,
            hash: HASH_XXH3_64.into(),
            members: vec![
                member("demo-0", "10.244.1.7:7070", MemberState::Up),
                member("demo-1", "10.244.1.8:7070", MemberState::Up),
                member("demo-2", "", MemberState::Down),
            ],
            table: vec![
                vec![0, 1],
                vec![1, 2],
                vec![2, 0],
                vec![0, 1],
                vec![1, 2],
                vec![2, 0],
            ],
            pending: None,
        }
    }

    #[test]
    fn balance_reports_min_max_mean_and_whether_within_one() {
        let b = Balance::of(&[682, 683, 683]).expect("members");
        assert_eq!((b.min, b.max), (682, 683));
        assert!((b.mean - 682.666).abs() < 0.01);
        assert!(b.is_balanced());
        assert!(!Balance::of(&[1, 3]).expect("members").is_balanced());
        assert_eq!(Balance::of(&[]), None);
        assert_eq!(
            Balance::of(&[2, 5]).expect("members").to_string(),
            "min 2  max 5  mean 3.5  (unbalanced: spread 3)"
        );
    }

    #[test]
    fn member_counts_split_replicas_and_primaries() {
        let d = three_members();
        assert_eq!(member_counts(&d.table, 3), vec![(4, 2), (4, 2), (4, 2)]);
        // Out-of-range indices (an invalid table) are ignored rather than panicking.
        assert_eq!(member_counts(&vec![vec![0, 9]], 2), vec![(1, 1), (0, 0)]);
    }

    #[test]
    fn ring_summary_without_migration() {
        let text = ring_summary(&three_members());
        let expected = "\
ring epoch 42: 3 members, 6 partitions, replication factor 2, hash xxh3_64

member  state  addr             partitions  primaries
demo-0  up     10.244.1.7:7070           4          2
demo-1  up     10.244.1.8:7070           4          2
demo-2  down   -                         4          2

partitions per member: min 4  max 4  mean 4.0  (balanced)
primaries per member:  min 2  max 2  mean 2.0  (balanced)
pending migration: none
";
        assert_eq!(text, expected);
    }

    #[test]
    fn ring_summary_with_pending_scale_out() {
        let mut d = three_members();
        d.members[2] = member("demo-2", "10.244.1.9:7070", MemberState::Up);
        d.members
            .push(member("demo-3", "10.244.2.1:7070", MemberState::Joining));
        d.pending = Some(Pending {
            table: vec![
                vec![0, 1],
                vec![3, 2],
                vec![2, 0],
                vec![3, 1],
                vec![1, 2],
                vec![2, 0],
            ],
        });
        let text = ring_summary(&d);
        let expected = "\
ring epoch 42: 4 members, 6 partitions, replication factor 2, hash xxh3_64

member  state    addr             partitions  primaries  target partitions  target primaries
demo-0  up       10.244.1.7:7070           4          2                  3                 1
demo-1  up       10.244.1.8:7070           4          2                  3                 1
demo-2  up       10.244.1.9:7070           4          2                  4                 2
demo-3  joining  10.244.2.1:7070           0          0                  2                 2

partitions per member: min 4  max 4  mean 4.0  (balanced)
primaries per member:  min 2  max 2  mean 2.0  (balanced)
pending migration: 2 partitions gain an owner, 2 replicas move
target partitions per member: min 2  max 4  mean 3.0  (unbalanced: spread 2)
target primaries per member:  min 1  max 2  mean 1.5  (balanced)
";
        assert_eq!(text, expected);
    }

    #[test]
    fn stats_table_orders_known_fields_first_and_shows_errors() {
        let rows = vec![
            StatsRow {
                node: "demo-0".into(),
                state: Some(MemberState::Up),
                stats: Ok(serde_json::json!({
                    "zeta": "z", "epoch": 7, "items": 1200, "hits": 10,
                    "replication": {"queue": 3}
                })),
            },
            StatsRow {
                node: "demo-1".into(),
                state: Some(MemberState::Down),
                stats: Err("connection failed: refused".into()),
            },
        ];
        let expected = "\
node    state  items  hits  epoch  replication.queue  zeta  error
demo-0  up      1200    10      7                  3     z
demo-1  down       -     -      -                  -     -  connection failed: refused
";
        assert_eq!(stats_table(&rows), expected);
    }
}
