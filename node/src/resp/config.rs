//! `CONFIG GET`: the settings clients and tools ask for, as Redis names them, from the node's
//! flags. ringcache is configured by its flags (and the operator by the `CacheCluster`), so
//! `CONFIG SET` and `CONFIG REWRITE` are refused with a message saying so.

use crate::cluster::node::SharedNode;
use crate::commands::glob;
use crate::engine::EvictionPolicy;

/// Each parameter's Redis name and value.
fn parameters(s: &SharedNode) -> Vec<(&'static str, String)> {
    let cfg = s.engine.config();
    let policy = match cfg.eviction {
        EvictionPolicy::Lru => "allkeys-lru",
        EvictionPolicy::Lfu => "allkeys-lfu",
        EvictionPolicy::None => "noeviction",
    };
    vec![
        // Snapshots are the node's own (`--data-dir`), not Redis's RDB or AOF.
        ("appendonly", "no".into()),
        ("databases", s.databases.to_string()),
        ("maxmemory", cfg.max_memory.to_string()),
        ("maxmemory-policy", policy.into()),
        ("proto-max-bulk-len", s.max_value_size.to_string()),
        ("save", String::new()),
        ("timeout", "0".into()),
    ]
}

/// The answer to `CONFIG GET pattern …`: every parameter matching one of the patterns, once.
pub fn get<'a>(
    s: &SharedNode,
    patterns: impl Iterator<Item = &'a [u8]> + Clone,
) -> Vec<(String, String)> {
    parameters(s)
        .into_iter()
        .filter(|(name, _)| {
            patterns
                .clone()
                .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
        })
        .map(|(n, v)| (n.to_string(), v))
        .collect()
}
