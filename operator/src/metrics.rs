//! Operator metrics, kept in a `prometheus-client` registry and served in the OpenMetrics text
//! format. Also holds the per-cluster failure counts the error policy backs off on.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the reconcile duration histogram.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

type PerCluster<M> = Family<ClusterLabels, M>;

pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    migrations_committed: Counter,
    ring_pushes: Family<ResultLabels, Counter>,
    members_down: PerCluster<Gauge>,
    migration_done: PerCluster<Gauge>,
    migration_total: PerCluster<Gauge>,
    under_replicated: PerCluster<Gauge>,
    pods_outdated: PerCluster<Gauge>,
    lost: PerCluster<Counter>,
    restarts: PerCluster<Counter>,
    leader: Gauge,
    failures: Mutex<BTreeMap<String, u32>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn labels(namespace: &str, cluster: &str) -> ClusterLabels {
    ClusterLabels {
        namespace: namespace.to_string(),
        cluster: cluster.to_string(),
    }
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let reconciles = Counter::default();
        registry.register(
            "ringcache_operator_reconciles",
            "Reconcile passes",
            reconciles.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "ringcache_operator_reconcile_errors",
            "Failed reconcile passes by error kind",
            errors.clone(),
        );
        let duration = Histogram::new(BUCKETS);
        registry.register(
            "ringcache_operator_reconcile_duration_seconds",
            "Duration of reconcile passes",
            duration.clone(),
        );
        let migrations_committed = Counter::default();
        registry.register(
            "ringcache_operator_migrations_committed",
            "Migrations committed",
            migrations_committed.clone(),
        );
        let ring_pushes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "ringcache_operator_ring_pushes",
            "Ring pushes to nodes by result",
            ring_pushes.clone(),
        );
        let mut per_cluster = |name: &str, help: &str| {
            let g = PerCluster::<Gauge>::default();
            registry.register(name, help, g.clone());
            g
        };
        let members_down = per_cluster(
            "ringcache_operator_members_down",
            "Ring members in state down, per cluster",
        );
        let migration_done = per_cluster(
            "ringcache_operator_migration_partitions_done",
            "Partitions pulled so far by the running migration's target owners",
        );
        let migration_total = per_cluster(
            "ringcache_operator_migration_partitions_total",
            "Partitions the running migration's target owners must pull (0 when none runs)",
        );
        let under_replicated = per_cluster(
            "ringcache_operator_under_replicated_partitions",
            "Partitions with fewer serving replicas than owners, per cluster",
        );
        let pods_outdated = per_cluster(
            "ringcache_operator_pods_outdated",
            "Member pods still running an older template (rollout pending), per cluster",
        );
        let lost = PerCluster::<Counter>::default();
        registry.register(
            "ringcache_operator_partitions_lost",
            "Partitions recorded lost (no complete copy left), per cluster",
            lost.clone(),
        );
        let restarts = PerCluster::<Counter>::default();
        registry.register(
            "ringcache_operator_rollout_restarts",
            "Pods restarted by operator-driven rollouts, per cluster",
            restarts.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "ringcache_operator_leader",
            "1 while this instance reconciles",
            leader.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            duration,
            migrations_committed,
            ring_pushes,
            members_down,
            migration_done,
            migration_total,
            under_replicated,
            pods_outdated,
            lost,
            restarts,
            leader,
            failures: Mutex::default(),
        }
    }

    pub fn observe_reconcile(&self, took: Duration, error: Option<&'static str>) {
        self.reconciles.inc();
        self.duration.observe(took.as_secs_f64());
        if let Some(error) = error {
            self.errors.get_or_create(&ErrorLabels { error }).inc();
        }
    }

    pub fn migration_committed(&self) {
        self.migrations_committed.inc();
    }

    pub fn ring_pushed(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.ring_pushes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn set_cluster(&self, namespace: &str, cluster: &str, gauges: ClusterGauges) {
        let l = labels(namespace, cluster);
        let set = |f: &PerCluster<Gauge>, v: u64| {
            f.get_or_create(&l).set(gauge_value(v));
        };
        set(&self.members_down, gauges.members_down as u64);
        set(&self.migration_done, gauges.migration_partitions_done);
        set(&self.migration_total, gauges.migration_partitions_total);
        set(&self.under_replicated, gauges.under_replicated_partitions);
        set(&self.pods_outdated, gauges.pods_outdated);
    }

    pub fn partitions_lost(&self, namespace: &str, cluster: &str, n: u64) {
        self.lost
            .get_or_create(&labels(namespace, cluster))
            .inc_by(n);
    }

    pub fn pod_restarted(&self, namespace: &str, cluster: &str) {
        self.restarts
            .get_or_create(&labels(namespace, cluster))
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
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

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
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
        assert!(
            text.contains("ringcache_operator_reconcile_duration_seconds_bucket{le=\"5.0\"} 2")
        );
        assert!(text.ends_with("# EOF\n"));
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
