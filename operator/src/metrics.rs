//! Operator metrics in the Prometheus text format, kept in atomics (no registry crate needed
//! for a handful of series). Also holds the per-cluster failure counts the error policy backs
//! off on.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the reconcile duration histogram.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// What the operator last observed of one CacheCluster.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClusterGauges {
    pub members_down: usize,
    /// Partitions pulled / to pull in the running migration (0 / 0 when none runs).
    pub migration_partitions_done: u64,
    pub migration_partitions_total: u64,
    /// Partitions with fewer serving replicas than owners.
    pub under_replicated_partitions: u64,
    /// Member pods still running an older StatefulSet template.
    pub pods_outdated: u64,
}

/// A counter per (namespace, cluster).
type PerCluster = Mutex<BTreeMap<(String, String), u64>>;

#[derive(Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    migrations_committed: AtomicU64,
    ring_pushes_ok: AtomicU64,
    ring_pushes_failed: AtomicU64,
    /// Per (namespace, cluster) gauges.
    clusters: Mutex<BTreeMap<(String, String), ClusterGauges>>,
    /// Per (namespace, cluster): partitions recorded lost, and pods restarted by rollouts.
    lost: PerCluster,
    restarts: PerCluster,
    failures: Mutex<BTreeMap<String, u32>>,
}

impl Metrics {
    pub fn observe_reconcile(&self, took: Duration, error: Option<&'static str>) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if let Some(label) = error
            && let Ok(mut errors) = self.errors.lock()
        {
            *errors.entry(label).or_default() += 1;
        }
    }

    pub fn migration_committed(&self) {
        self.migrations_committed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ring_pushed(&self, ok: bool) {
        let c = if ok {
            &self.ring_pushes_ok
        } else {
            &self.ring_pushes_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_cluster(&self, namespace: &str, cluster: &str, gauges: ClusterGauges) {
        if let Ok(mut m) = self.clusters.lock() {
            m.insert((namespace.to_string(), cluster.to_string()), gauges);
        }
    }

    pub fn partitions_lost(&self, namespace: &str, cluster: &str, n: u64) {
        if let Ok(mut m) = self.lost.lock() {
            *m.entry((namespace.to_string(), cluster.to_string()))
                .or_default() += n;
        }
    }

    pub fn pod_restarted(&self, namespace: &str, cluster: &str) {
        if let Ok(mut m) = self.restarts.lock() {
            *m.entry((namespace.to_string(), cluster.to_string()))
                .or_default() += 1;
        }
    }

    /// Counts a failed pass of `cluster`; returns the consecutive failures so far.
    pub fn note_failure(&self, cluster: &str) -> u32 {
        self.failures.lock().map_or(1, |mut f| {
            let n = f.entry(cluster.to_string()).or_default();
            *n = n.saturating_add(1);
            *n
        })
    }

    pub fn reset_failures(&self, cluster: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(cluster);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP ringcache_operator_reconciles_total Reconcile passes.\n# TYPE ringcache_operator_reconciles_total counter\nringcache_operator_reconciles_total {}",
            self.reconciles.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ringcache_operator_reconcile_errors_total Failed reconcile passes by error kind.\n# TYPE ringcache_operator_reconcile_errors_total counter"
        );
        if let Ok(errors) = self.errors.lock() {
            for (label, n) in errors.iter() {
                let _ = writeln!(
                    out,
                    "ringcache_operator_reconcile_errors_total{{error=\"{label}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP ringcache_operator_reconcile_duration_seconds Duration of reconcile passes.\n# TYPE ringcache_operator_reconcile_duration_seconds histogram"
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "ringcache_operator_reconcile_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                self.duration_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "ringcache_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {count}\nringcache_operator_reconcile_duration_seconds_sum {}\nringcache_operator_reconcile_duration_seconds_count {count}",
            self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP ringcache_operator_migrations_committed_total Migrations committed.\n# TYPE ringcache_operator_migrations_committed_total counter\nringcache_operator_migrations_committed_total {}",
            self.migrations_committed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ringcache_operator_ring_pushes_total Ring pushes to nodes by result.\n# TYPE ringcache_operator_ring_pushes_total counter\nringcache_operator_ring_pushes_total{{result=\"ok\"}} {}\nringcache_operator_ring_pushes_total{{result=\"error\"}} {}",
            self.ring_pushes_ok.load(Ordering::Relaxed),
            self.ring_pushes_failed.load(Ordering::Relaxed)
        );
        type Gauge = (&'static str, &'static str, fn(&ClusterGauges) -> u64);
        let gauges: [Gauge; 5] = [
            (
                "ringcache_operator_members_down",
                "Ring members in state down, per cluster.",
                |g| g.members_down as u64,
            ),
            (
                "ringcache_operator_migration_partitions_done",
                "Partitions pulled so far by the running migration's target owners.",
                |g| g.migration_partitions_done,
            ),
            (
                "ringcache_operator_migration_partitions_total",
                "Partitions the running migration's target owners must pull (0 when none runs).",
                |g| g.migration_partitions_total,
            ),
            (
                "ringcache_operator_under_replicated_partitions",
                "Partitions with fewer serving replicas than owners, per cluster.",
                |g| g.under_replicated_partitions,
            ),
            (
                "ringcache_operator_pods_outdated",
                "Member pods still running an older template (rollout pending), per cluster.",
                |g| g.pods_outdated,
            ),
        ];
        if let Ok(m) = self.clusters.lock() {
            for (name, help, value) in gauges {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for ((namespace, cluster), g) in m.iter() {
                    let _ = writeln!(
                        out,
                        "{name}{{namespace=\"{namespace}\",cluster=\"{cluster}\"}} {}",
                        value(g)
                    );
                }
            }
        }
        let counters: [(&str, &str, &PerCluster); 2] = [
            (
                "ringcache_operator_partitions_lost_total",
                "Partitions recorded lost (no complete copy left), per cluster.",
                &self.lost,
            ),
            (
                "ringcache_operator_rollout_restarts_total",
                "Pods restarted by operator-driven rollouts, per cluster.",
                &self.restarts,
            ),
        ];
        for (name, help, map) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            if let Ok(m) = map.lock() {
                for ((namespace, cluster), n) in m.iter() {
                    let _ = writeln!(
                        out,
                        "{name}{{namespace=\"{namespace}\",cluster=\"{cluster}\"}} {n}"
                    );
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_errors_render() {
        let m = Metrics::default();
        m.observe_reconcile(Duration::from_millis(30), None);
        m.observe_reconcile(Duration::from_secs(3), Some("kube"));
        m.set_cluster(
            "ns",
            "demo",
            ClusterGauges {
                members_down: 1,
                migration_partitions_done: 3,
                migration_partitions_total: 8,
                under_replicated_partitions: 5,
                pods_outdated: 2,
            },
        );
        m.partitions_lost("ns", "demo", 4);
        m.pod_restarted("ns", "demo");
        let text = m.render();
        assert!(text.contains(
            "ringcache_operator_under_replicated_partitions{namespace=\"ns\",cluster=\"demo\"} 5"
        ));
        assert!(text.contains(
            "ringcache_operator_partitions_lost_total{namespace=\"ns\",cluster=\"demo\"} 4"
        ));
        assert!(text.contains(
            "ringcache_operator_rollout_restarts_total{namespace=\"ns\",cluster=\"demo\"} 1"
        ));
        assert!(text.contains("ringcache_operator_reconciles_total 2"));
        assert!(text.contains("ringcache_operator_reconcile_errors_total{error=\"kube\"} 1"));
        assert!(
            text.contains("ringcache_operator_reconcile_duration_seconds_bucket{le=\"0.05\"} 1")
        );
        assert!(text.contains("ringcache_operator_reconcile_duration_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("ringcache_operator_reconcile_duration_seconds_count 2"));
        assert!(
            text.contains("ringcache_operator_members_down{namespace=\"ns\",cluster=\"demo\"} 1")
        );
        assert!(text.contains(
            "ringcache_operator_migration_partitions_done{namespace=\"ns\",cluster=\"demo\"} 3"
        ));
        assert!(text.contains(
            "ringcache_operator_migration_partitions_total{namespace=\"ns\",cluster=\"demo\"} 8"
        ));
    }

    #[test]
    fn failures_count_up_and_reset() {
        let m = Metrics::default();
        assert_eq!(m.note_failure("a"), 1);
        assert_eq!(m.note_failure("a"), 2);
        m.reset_failures("a");
        assert_eq!(m.note_failure("a"), 1);
    }
}
