//! `INFO`: the sections Redis tools read (server, clients, memory, stats, keyspace,
//! replication), filled from the node's own figures.

use crate::cluster::node::SharedNode;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Resident memory of this process, from `/proc/self/statm` (0 where unavailable).
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// `wanted`: lower-case section names; empty, `all`, `everything` or `default` for all.
pub fn render(s: &SharedNode, wanted: &[String]) -> String {
    let m = &s.metrics;
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "all" || w == "everything" || w == "default");
    let want = |name: &str| all || wanted.iter().any(|w| w == name);
    let e = s.engine.stats();
    let mut o = String::with_capacity(1024);
    // Writing to a String cannot fail.
    if want("server") {
        let _ = write!(
            o,
            "# Server\r\nredis_version:7.0.0\r\nringcache_version:{}\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:{}\r\nprocess_id:{}\r\nrun_id:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            usize::BITS,
            std::process::id(),
            s.ring.completeness().incarnation(),
        );
    }
    if want("clients") {
        let _ = write!(
            o,
            "# Clients\r\nconnected_clients:{}\r\nblocked_clients:{}\r\n\r\n",
            m.resp_connections.load(Ordering::Relaxed),
            m.resp_blocked.load(Ordering::Relaxed)
        );
    }
    if want("memory") {
        let policy = match s.engine.config().eviction {
            crate::engine::EvictionPolicy::Lru => "allkeys-lru",
            crate::engine::EvictionPolicy::Lfu => "allkeys-lfu",
            crate::engine::EvictionPolicy::None => "noeviction",
        };
        let _ = write!(
            o,
            "# Memory\r\nused_memory:{}\r\nused_memory_rss:{}\r\nmaxmemory:{}\r\nmaxmemory_policy:{policy}\r\n\r\n",
            e.bytes,
            rss_bytes(),
            e.max_memory,
        );
    }
    if want("stats") {
        let _ = write!(
            o,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_error_replies:{}\r\nkeyspace_hits:{}\r\nkeyspace_misses:{}\r\nevicted_keys:{}\r\nexpired_keys:{}\r\n\r\n",
            m.resp_connections_total.load(Ordering::Relaxed),
            m.resp_commands.load(Ordering::Relaxed),
            m.resp_errors.load(Ordering::Relaxed),
            e.hits,
            e.misses,
            e.evictions,
            e.expired,
        );
    }
    if want("replication") {
        let view = s.ring.get();
        let _ = write!(
            o,
            "# Replication\r\nrole:master\r\nconnected_slaves:0\r\nringcache_ring_epoch:{}\r\nringcache_members:{}\r\nringcache_replication_factor:{}\r\n\r\n",
            view.epoch(),
            view.doc.members.len(),
            view.doc.replication_factor,
        );
    }
    // Clients (redis-py among them) read `cluster_enabled` to choose their protocol: the RESP
    // front routes every key itself, so it is not a Redis Cluster endpoint.
    if want("cluster") {
        let _ = write!(o, "# Cluster\r\ncluster_enabled:0\r\n\r\n");
    }
    if want("keyspace") {
        let _ = write!(o, "# Keyspace\r\n");
        if e.items > 0 {
            let _ = write!(o, "db0:keys={}\r\n", e.items);
        }
    }
    o
}
