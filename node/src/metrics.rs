//! Prometheus metrics, hand-written text format. The request path only touches atomics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The routes of DESIGN.md's API (label values are the route templates). The router is built
/// from [`ROUTES`] (`http::router`), so a route cannot exist without its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    KeyGet,
    KeyPut,
    KeyDelete,
    /// `/v1/keys/` without a key, any method (answered 400 `bad_key`).
    KeyEmpty,
    Batch,
    Ring,
    Stats,
    Healthz,
    Readyz,
    Metrics,
    InternalRing,
    InternalRingGet,
    InternalGet,
    InternalMigration,
    InternalAbort,
    InternalPartition,
    InternalReplicate,
    InternalOp,
    InternalKeyspace,
    Other,
}

/// Every route: its label, its method (`*`: any) and its path template.
pub const ROUTES: [(Route, &str, &str); 20] = [
    (Route::KeyGet, "GET", "/v1/keys/{key}"),
    (Route::KeyPut, "PUT", "/v1/keys/{key}"),
    (Route::KeyDelete, "DELETE", "/v1/keys/{key}"),
    (Route::KeyEmpty, "*", "/v1/keys/"),
    (Route::Batch, "POST", "/v1/batch"),
    (Route::Ring, "GET", "/v1/ring"),
    (Route::Stats, "GET", "/v1/stats"),
    (Route::Healthz, "GET", "/healthz"),
    (Route::Readyz, "GET", "/readyz"),
    (Route::Metrics, "GET", "/metrics"),
    (Route::InternalRing, "PUT", "/internal/v1/ring"),
    (Route::InternalRingGet, "GET", "/internal/v1/ring"),
    (Route::InternalGet, "POST", "/internal/v1/get"),
    (Route::InternalMigration, "GET", "/internal/v1/migration"),
    (Route::InternalAbort, "POST", "/internal/v1/abort"),
    (
        Route::InternalPartition,
        "GET",
        "/internal/v1/partitions/{p}",
    ),
    (Route::InternalReplicate, "POST", "/internal/v1/apply"),
    (Route::InternalOp, "POST", "/internal/v1/op"),
    (Route::InternalKeyspace, "POST", "/internal/v1/keyspace"),
    (Route::Other, "", "other"),
];

impl Route {
    /// The route a request is served by, from its method and path alone, matched like the
    /// router matches [`ROUTES`] (a `{param}` is one non-empty segment; a known path with
    /// another method is [`Route::Other`], as the router answers it 405). Classifying before
    /// the router runs lets the tracking layer wrap the whole router once instead of every
    /// route (each route layer costs two boxed services and their allocations per request).
    pub fn of(method: &axum::http::Method, path: &str) -> Route {
        use axum::http::Method;
        // The key routes carry nearly all the traffic: answered without scanning the table
        // (string comparisons through `memcmp` showed in the profile). A test checks that this
        // agrees with the table.
        if let Some(key) = path.strip_prefix(KEY_PREFIX)
            && is_segment(key)
        {
            return match *method {
                Method::GET => Route::KeyGet,
                Method::PUT => Route::KeyPut,
                Method::DELETE => Route::KeyDelete,
                _ => Route::Other,
            };
        }
        Route::of_table(method.as_str(), path)
    }

    fn of_table(method: &str, path: &str) -> Route {
        ROUTES
            .iter()
            .find(|(_, m, p)| (*m == method || *m == "*") && template_matches(p, path))
            .map_or(Route::Other, |(r, _, _)| *r)
    }

    /// Position in [`ROUTES`] (the table lists the variants in declaration order; a test
    /// checks it).
    fn index(self) -> usize {
        self as usize
    }
}

/// The path prefix of the key routes (`/v1/keys/{key}`).
pub const KEY_PREFIX: &str = "/v1/keys/";

/// What a `{param}` matches: one non-empty path segment.
fn is_segment(s: &str) -> bool {
    !s.is_empty() && !s.as_bytes().contains(&b'/')
}

fn template_matches(template: &str, path: &str) -> bool {
    match template.split_once('{') {
        None => template == path,
        Some((prefix, _)) => path.strip_prefix(prefix).is_some_and(is_segment),
    }
}

const STATUSES: [u16; 15] = [
    200, 204, 400, 401, 403, 404, 405, 409, 413, 422, 500, 502, 503, 504, 507,
];
const N_STATUS: usize = STATUSES.len() + 1; // + "other"

/// Upper bounds in seconds (the `le` labels).
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// The same bounds in nanoseconds: the request path compares integers, not floats.
const BUCKETS_NS: [u64; 14] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
];
const N_BUCKET: usize = BUCKETS.len() + 1; // + Inf

struct Histogram {
    buckets: [AtomicU64; N_BUCKET],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

/// Counters and gauges of the node that are not derived from the engine at render time.
pub struct Metrics {
    requests: Vec<AtomicU64>,
    latency: Vec<Histogram>,
    pub forwards: AtomicU64,
    pub forward_errors: AtomicU64,
    pub replication_queue: AtomicU64,
    pub replication_errors: AtomicU64,
    pub replication_lag_ms: AtomicU64,
    pub migration_partitions: AtomicU64,
    pub migration_keys: AtomicU64,
    pub migration_bytes: AtomicU64,
    pub partitions_lost: AtomicU64,
    pub stale_replicas_marked: AtomicU64,
    pub ring_conflicts: AtomicU64,
    pub connections_refused: AtomicU64,
    /// The RESP front (`--resp-listen`).
    pub resp_connections: AtomicU64,
    /// Redis commands of this node's clients blocked on empty keys (`BLPOP`, …).
    pub resp_blocked: AtomicU64,
    pub resp_connections_total: AtomicU64,
    pub resp_commands: AtomicU64,
    pub resp_errors: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Values read from elsewhere at scrape time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    pub hits: u64,
    pub misses: u64,
    pub items: u64,
    pub tombstones: u64,
    pub bytes: u64,
    pub max_memory: u64,
    pub evictions: u64,
    pub expired: u64,
    pub epoch: u64,
    pub partitions_owned: u64,
    pub ready: bool,
    /// Partitions this node recorded lost in the current ring.
    pub unrecoverable: u64,
    /// Partitions whose first serving owner is this node and which have fewer serving owners
    /// than owners (summed over nodes: the cluster's under-replicated partitions).
    pub under_replicated: u64,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            requests: (0..ROUTES.len() * N_STATUS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: (0..ROUTES.len()).map(|_| Histogram::new()).collect(),
            forwards: AtomicU64::new(0),
            forward_errors: AtomicU64::new(0),
            replication_queue: AtomicU64::new(0),
            replication_errors: AtomicU64::new(0),
            replication_lag_ms: AtomicU64::new(0),
            migration_partitions: AtomicU64::new(0),
            migration_keys: AtomicU64::new(0),
            migration_bytes: AtomicU64::new(0),
            partitions_lost: AtomicU64::new(0),
            stale_replicas_marked: AtomicU64::new(0),
            ring_conflicts: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            resp_connections: AtomicU64::new(0),
            resp_blocked: AtomicU64::new(0),
            resp_connections_total: AtomicU64::new(0),
            resp_commands: AtomicU64::new(0),
            resp_errors: AtomicU64::new(0),
        }
    }

    pub fn record(&self, route: Route, status: u16, elapsed: std::time::Duration) {
        let r = route.index();
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(N_STATUS - 1);
        self.requests[r * N_STATUS + s].fetch_add(1, Ordering::Relaxed);
        let h = &self.latency[r];
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let b = BUCKETS_NS
            .iter()
            .position(|&ub| ns <= ub)
            .unwrap_or(N_BUCKET - 1);
        h.buckets[b].fetch_add(1, Ordering::Relaxed);
        h.sum_ns.fetch_add(ns, Ordering::Relaxed);
        h.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self, route: Route, status: u16) -> u64 {
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(N_STATUS - 1);
        self.requests[route.index() * N_STATUS + s].load(Ordering::Relaxed)
    }

    pub fn render(&self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("# HELP ringcache_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE ringcache_requests_total counter\n");
        for (ri, (_, method, path)) in ROUTES.iter().enumerate() {
            for si in 0..N_STATUS {
                let n = self.requests[ri * N_STATUS + si].load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let status = STATUSES.get(si).map_or("other".to_string(), u16::to_string);
                let _ = writeln!(
                    out,
                    "ringcache_requests_total{{method=\"{method}\",route=\"{path}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP ringcache_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE ringcache_request_duration_seconds histogram\n");
        for (ri, (_, method, path)) in ROUTES.iter().enumerate() {
            let h = &self.latency[ri];
            let count = h.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let labels = format!("method=\"{method}\",route=\"{path}\"");
            let mut cum = 0u64;
            for (bi, ub) in BUCKETS.iter().enumerate() {
                cum += h.buckets[bi].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "ringcache_request_duration_seconds_bucket{{{labels},le=\"{ub}\"}} {cum}"
                );
            }
            cum += h.buckets[N_BUCKET - 1].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "ringcache_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {cum}"
            );
            let sum = h.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "ringcache_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "ringcache_request_duration_seconds_count{{{labels}}} {cum}"
            );
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let scalars: [(&str, &str, &str, u64); 28] = [
            (
                "ringcache_hits_total",
                "counter",
                "Reads that found a live value.",
                snap.hits,
            ),
            (
                "ringcache_misses_total",
                "counter",
                "Reads that found nothing.",
                snap.misses,
            ),
            (
                "ringcache_items",
                "gauge",
                "Live entries stored.",
                snap.items,
            ),
            (
                "ringcache_tombstones",
                "gauge",
                "Delete tombstones kept.",
                snap.tombstones,
            ),
            (
                "ringcache_bytes",
                "gauge",
                "Accounted bytes (keys + values + per-entry overhead).",
                snap.bytes,
            ),
            (
                "ringcache_max_memory_bytes",
                "gauge",
                "Configured memory bound.",
                snap.max_memory,
            ),
            (
                "ringcache_evictions_total",
                "counter",
                "Entries evicted for memory.",
                snap.evictions,
            ),
            (
                "ringcache_expired_total",
                "counter",
                "Entries removed by TTL.",
                snap.expired,
            ),
            (
                "ringcache_ring_epoch",
                "gauge",
                "Epoch of the ring this node serves with.",
                snap.epoch,
            ),
            (
                "ringcache_partitions_owned",
                "gauge",
                "Partitions this node owns.",
                snap.partitions_owned,
            ),
            (
                "ringcache_ready",
                "gauge",
                "1 when ready to serve.",
                u64::from(snap.ready),
            ),
            (
                "ringcache_forwards_total",
                "counter",
                "Requests forwarded to an owner.",
                load(&self.forwards),
            ),
            (
                "ringcache_forward_errors_total",
                "counter",
                "Forward attempts that failed.",
                load(&self.forward_errors),
            ),
            (
                "ringcache_replication_queue_length",
                "gauge",
                "Asynchronous replication queue length.",
                load(&self.replication_queue),
            ),
            (
                "ringcache_replication_errors_total",
                "counter",
                "Failed replica writes.",
                load(&self.replication_errors),
            ),
            (
                "ringcache_migration_partitions_total",
                "counter",
                "Partitions pulled by migration or recovery.",
                load(&self.migration_partitions),
            ),
            (
                "ringcache_migration_keys_total",
                "counter",
                "Entries pulled by migration or recovery.",
                load(&self.migration_keys),
            ),
            (
                "ringcache_migration_bytes_total",
                "counter",
                "Bytes pulled by migration or recovery.",
                load(&self.migration_bytes),
            ),
            (
                "ringcache_unrecoverable_partitions",
                "gauge",
                "Partitions recorded lost here: no complete copy was left to pull.",
                snap.unrecoverable,
            ),
            (
                "ringcache_partitions_lost_total",
                "counter",
                "Partitions this process recorded lost.",
                load(&self.partitions_lost),
            ),
            (
                "ringcache_under_replicated_partitions",
                "gauge",
                "Partitions this node is the first serving owner of that lack a serving replica.",
                snap.under_replicated,
            ),
            (
                "ringcache_stale_replicas_total",
                "counter",
                "Owners recorded as missing an acknowledged replica write.",
                load(&self.stale_replicas_marked),
            ),
            (
                "ringcache_connections_refused_total",
                "counter",
                "Connections closed at once because --max-connections were open.",
                load(&self.connections_refused),
            ),
            (
                "ringcache_ring_conflicts_total",
                "counter",
                "Ring documents refused for differing from the current one at the same epoch.",
                load(&self.ring_conflicts),
            ),
            (
                "ringcache_resp_connections",
                "gauge",
                "Open connections of the Redis protocol front.",
                load(&self.resp_connections),
            ),
            (
                "ringcache_resp_blocked_clients",
                "gauge",
                "Redis protocol clients blocked on empty keys (BLPOP, BZPOPMIN, ...).",
                load(&self.resp_blocked),
            ),
            (
                "ringcache_resp_commands_total",
                "counter",
                "Commands received over the Redis protocol.",
                load(&self.resp_commands),
            ),
            (
                "ringcache_resp_errors_total",
                "counter",
                "Redis protocol commands answered with an error.",
                load(&self.resp_errors),
            ),
        ];
        for (name, kind, help, v) in scalars {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        // Base units: seconds, from the millisecond atomic the request path updates.
        let _ = writeln!(
            out,
            "# HELP ringcache_replication_lag_seconds Age of the oldest queued replica write.\n\
             # TYPE ringcache_replication_lag_seconds gauge\n\
             ringcache_replication_lag_seconds {}",
            load(&self.replication_lag_ms) as f64 / 1000.0
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_scalars() {
        let m = Metrics::new();
        m.record(Route::KeyGet, 200, std::time::Duration::from_micros(300));
        m.record(Route::KeyGet, 404, std::time::Duration::from_millis(2));
        let text = m.render(&Snapshot {
            hits: 3,
            epoch: 7,
            ..Default::default()
        });
        assert!(text.contains(
            "ringcache_requests_total{method=\"GET\",route=\"/v1/keys/{key}\",status=\"200\"} 1"
        ));
        assert!(text.contains("status=\"404\"} 1"));
        assert!(text.contains(
            "ringcache_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/keys/{key}\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("ringcache_hits_total 3"));
        assert!(text.contains("ringcache_ring_epoch 7"));
    }

    #[test]
    fn routes_are_listed_in_declaration_order() {
        for (i, (r, _, _)) in ROUTES.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn bucket_bounds_agree() {
        for (s, ns) in BUCKETS.iter().zip(BUCKETS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
        let m = Metrics::new();
        // A bound itself falls in its bucket (`le`).
        m.record(Route::KeyGet, 200, std::time::Duration::from_micros(100));
        let text = m.render(&Snapshot::default());
        assert!(text.contains("le=\"0.0001\"} 1"), "{text}");
    }

    #[test]
    fn requests_are_classified_by_method_and_path() {
        use axum::http::Method;
        let cases = [
            (Method::GET, "/v1/keys/a", Route::KeyGet),
            (Method::PUT, "/v1/keys/a%2Fb", Route::KeyPut),
            (Method::DELETE, "/v1/keys/a", Route::KeyDelete),
            (Method::PATCH, "/v1/keys/", Route::KeyEmpty),
            (Method::GET, "/v1/keys/a/b", Route::Other),
            (Method::GET, "/v1/keys//", Route::Other),
            (Method::POST, "/v1/keys/a", Route::Other),
            (Method::HEAD, "/v1/keys/a", Route::Other),
            (Method::GET, "/v1/ring", Route::Ring),
            (Method::GET, "/v1/ring/", Route::Other),
            (Method::GET, "/internal/v1/ring", Route::InternalRingGet),
            (Method::PUT, "/internal/v1/ring", Route::InternalRing),
            (
                Method::GET,
                "/internal/v1/partitions/7",
                Route::InternalPartition,
            ),
            (Method::GET, "/internal/v1/partitions/", Route::Other),
            (Method::GET, "other", Route::Other),
            (Method::GET, "/", Route::Other),
        ];
        for (m, p, want) in cases {
            assert_eq!(Route::of(&m, p), want, "{m} {p}");
            // The key routes' shortcut agrees with the table.
            assert_eq!(Route::of_table(m.as_str(), p), want, "{m} {p}");
        }
        assert!(
            ROUTES
                .iter()
                .any(|(_, _, p)| p.strip_prefix(KEY_PREFIX) == Some("{key}"))
        );
    }
}
