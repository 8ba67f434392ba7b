//! Command-line flags and environment (DESIGN.md's table, plus the additions marked below), and
//! their resolution into a [`NodeConfig`] (token files read, defaults filled).

use crate::engine::EvictionPolicy;
use crate::quantity::{parse_duration_ms, parse_size};
use anyhow::Context;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How many of a write's live owners must acknowledge before the client gets 204.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WriteConsistency {
    One,
    Quorum,
    All,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "ringcache-node", version, about = "ringcache cache node")]
pub struct Args {
    /// Address to serve the HTTP API on.
    #[arg(long, env = "RINGCACHE_LISTEN", default_value = "0.0.0.0:7070")]
    pub listen: SocketAddr,
    /// Member id in the ring (the pod name); defaults to the host name.
    #[arg(long, env = "RINGCACHE_NODE_ID")]
    pub node_id: Option<String>,
    /// Ring document (the mounted `NAME-ring` ConfigMap's ring.json); none = one-member cluster.
    #[arg(long, env = "RINGCACHE_RING_FILE")]
    pub ring_file: Option<PathBuf>,
    /// Bound on stored bytes (keys + values + per-entry overhead), quantity syntax.
    #[arg(long, env = "RINGCACHE_MAX_MEMORY", default_value = "256Mi", value_parser = parse_size)]
    pub max_memory: u64,
    /// What to do at max memory: lru, lfu, or none (reject writes with 507).
    #[arg(long, env = "RINGCACHE_EVICTION", default_value = "lru")]
    pub eviction: EvictionPolicy,
    /// Largest accepted value (413 above), quantity syntax.
    #[arg(long, env = "RINGCACHE_MAX_VALUE_SIZE", default_value = "1Mi", value_parser = parse_size)]
    pub max_value_size: u64,
    /// Largest collection (hash, set, sorted set, list) in encoded bytes, quantity syntax: a
    /// write that would grow one past it is refused (`ERR … --max-collection-size`).
    #[arg(long, env = "RINGCACHE_MAX_COLLECTION_SIZE", default_value = "4Mi", value_parser = parse_size)]
    pub max_collection_size: u64,
    /// File holding the bearer token of /internal/v1/*; none = internal API answers 403.
    #[arg(long, env = "RINGCACHE_INTERNAL_TOKEN_FILE")]
    pub internal_token_file: Option<PathBuf>,
    /// File holding the bearer token required on /v1/*; none = /v1 open.
    #[arg(long, env = "RINGCACHE_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Directory for snapshots; none = no persistence.
    #[arg(long, env = "RINGCACHE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "RINGCACHE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Write acknowledgement: one, quorum or all live owners.
    #[arg(
        long,
        env = "RINGCACHE_WRITE_CONSISTENCY",
        value_enum,
        default_value = "all"
    )]
    pub write_consistency: WriteConsistency,
    /// How long delete tombstones are kept; must outlast any migration.
    #[arg(long, env = "RINGCACHE_TOMBSTONE_GRACE", default_value = "10m", value_parser = parse_duration_ms)]
    pub tombstone_grace: u64,
    /// Interval of the active expiry sweep.
    #[arg(long, env = "RINGCACHE_SWEEP_INTERVAL", default_value = "1s", value_parser = parse_duration_ms)]
    pub sweep_interval: u64,
    /// Interval between snapshots when --data-dir is set (also one at shutdown).
    #[arg(long, env = "RINGCACHE_SNAPSHOT_INTERVAL", default_value = "60s", value_parser = parse_duration_ms)]
    pub snapshot_interval: u64,
    /// Partition count of the one-member cluster used without a ring file.
    #[arg(long, env = "RINGCACHE_PARTITIONS", default_value_t = ringcache_ring::DEFAULT_PARTITIONS)]
    pub partitions: u32,
    /// Certificate chain (PEM) to serve HTTPS with; needs --tls-key-file. Reloaded when it changes.
    #[arg(long, env = "RINGCACHE_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert-file.
    #[arg(long, env = "RINGCACHE_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// CA (PEM) that peers' certificates must chain to; with it, node-to-node calls use HTTPS.
    #[arg(long, env = "RINGCACHE_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Name peers' certificates are verified against (peers are dialled by
    /// IP; certificates name DNS names). Default: the address dialled.
    #[arg(long, env = "RINGCACHE_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// Connections served at once; more are closed at once.
    #[arg(long, env = "RINGCACHE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Time a client has to send a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, env = "RINGCACHE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration_ms)]
    pub header_read_timeout: u64,
    /// Memory for request bodies and batch answers held at once (quantity).
    #[arg(long, env = "RINGCACHE_BUFFER_MEMORY", default_value = "16Mi", value_parser = parse_size)]
    pub buffer_memory: u64,
    /// Address to serve the Redis protocol (RESP2/RESP3) on; none = off.
    #[arg(long, env = "RINGCACHE_RESP_LISTEN")]
    pub resp_listen: Option<SocketAddr>,
    /// Microseconds the node keeps polling for the next RESP command instead of sleeping
    /// (lower latency and, at one command per round trip, more throughput; costs CPU only
    /// while commands keep arriving); 0 = off, at most 10000.
    #[arg(long, env = "RINGCACHE_RESP_BUSY_POLL_US", default_value_t = 50)]
    pub resp_busy_poll_us: u64,
    /// Numbered databases a RESP client may `SELECT` (0 to N-1), each its own keyspace across
    /// the cluster; 1 to 256.
    #[arg(long, env = "RINGCACHE_DATABASES", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub databases: u32,
    /// Longest a request body (or a partition pull) may stall between bytes.
    #[arg(long, env = "RINGCACHE_BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration_ms)]
    pub body_idle_timeout: u64,
}

/// Everything the node needs, resolved from [`Args`].
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub node_id: String,
    pub ring_file: Option<PathBuf>,
    pub max_memory: u64,
    pub eviction: EvictionPolicy,
    pub max_value_size: u64,
    pub max_collection_size: u64,
    pub internal_token: Option<String>,
    pub auth_token: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub write_consistency: WriteConsistency,
    pub tombstone_grace_ms: u64,
    pub sweep_interval_ms: u64,
    pub snapshot_interval_ms: u64,
    pub partitions: u32,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub max_connections: usize,
    pub header_read_timeout_ms: u64,
    pub body_idle_timeout_ms: u64,
    pub buffer_memory: u64,
    pub resp_listen: Option<SocketAddr>,
    pub resp_busy_poll_us: u64,
    pub databases: u32,
}

impl NodeConfig {
    /// Defaults of the flags, for a node on `listen` (tests and embedding).
    pub fn for_listen(listen: SocketAddr) -> NodeConfig {
        NodeConfig {
            listen,
            node_id: "node-0".into(),
            ring_file: None,
            max_memory: 256 << 20,
            eviction: EvictionPolicy::Lru,
            max_value_size: 1 << 20,
            max_collection_size: 4 << 20,
            internal_token: None,
            auth_token: None,
            data_dir: None,
            write_consistency: WriteConsistency::All,
            tombstone_grace_ms: 10 * 60 * 1000,
            sweep_interval_ms: 1000,
            snapshot_interval_ms: 60_000,
            partitions: ringcache_ring::DEFAULT_PARTITIONS,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            tls_server_name: None,
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            body_idle_timeout_ms: 30_000,
            buffer_memory: 16 << 20,
            resp_listen: None,
            resp_busy_poll_us: 50,
            databases: 16,
        }
    }

    /// The connection bounds these settings ask for.
    pub fn limits(&self) -> crate::serve::Limits {
        crate::serve::Limits {
            max_connections: self.max_connections.max(1),
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            body_idle_timeout: std::time::Duration::from_millis(self.body_idle_timeout_ms),
            ..crate::serve::Limits::default()
        }
    }

    pub fn from_args(a: Args) -> anyhow::Result<NodeConfig> {
        if a.partitions == 0 {
            anyhow::bail!("--partitions must be at least 1");
        }
        Ok(NodeConfig {
            listen: a.listen,
            node_id: a.node_id.unwrap_or_else(host_name),
            ring_file: a.ring_file,
            max_memory: a.max_memory,
            eviction: a.eviction,
            max_value_size: a.max_value_size,
            max_collection_size: a.max_collection_size,
            internal_token: read_token(a.internal_token_file.as_ref(), "--internal-token-file")?,
            auth_token: read_token(a.auth_token_file.as_ref(), "--auth-token-file")?,
            data_dir: a.data_dir,
            write_consistency: a.write_consistency,
            tombstone_grace_ms: a.tombstone_grace,
            sweep_interval_ms: a.sweep_interval.max(10),
            snapshot_interval_ms: a.snapshot_interval.max(100),
            partitions: a.partitions,
            tls_cert_file: a.tls_cert_file,
            tls_key_file: a.tls_key_file,
            tls_ca_file: a.tls_ca_file,
            tls_server_name: a.tls_server_name,
            max_connections: a.max_connections,
            header_read_timeout_ms: a.header_read_timeout.max(1),
            body_idle_timeout_ms: a.body_idle_timeout.max(1),
            buffer_memory: a.buffer_memory.max(1 << 20),
            resp_listen: a.resp_listen,
            resp_busy_poll_us: a.resp_busy_poll_us.min(10_000),
            databases: a.databases,
        })
    }
}

fn read_token(path: Option<&PathBuf>, flag: &str) -> anyhow::Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    let token = raw.trim();
    if token.is_empty() {
        anyhow::bail!("{flag}: {} is empty", path.display());
    }
    Ok(Some(token.to_string()))
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "ringcache-node".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design_table() {
        let a = Args::try_parse_from(["ringcache-node"]).unwrap();
        assert_eq!(a.listen.to_string(), "0.0.0.0:7070");
        assert_eq!(a.max_memory, 256 << 20);
        assert_eq!(a.max_value_size, 1 << 20);
        assert_eq!(a.eviction, EvictionPolicy::Lru);
        assert_eq!(a.log_format, LogFormat::Text);
        assert_eq!(a.write_consistency, WriteConsistency::All);
        assert!(a.ring_file.is_none() && a.data_dir.is_none());
    }

    #[test]
    fn sizes_use_quantity_syntax_and_errors_name_the_flag() {
        let a =
            Args::try_parse_from(["n", "--max-memory", "1Gi", "--max-value-size", "1M"]).unwrap();
        assert_eq!(a.max_memory, 1 << 30);
        assert_eq!(a.max_value_size, 1_000_000);
        let err = Args::try_parse_from(["n", "--max-memory", "12XB"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--max-memory"), "{err}");
        let err = Args::try_parse_from(["n", "--eviction", "fifo"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--eviction"), "{err}");
    }

    #[test]
    fn empty_token_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("rc-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t");
        std::fs::write(&f, "  \n").unwrap();
        assert!(read_token(Some(&f), "--auth-token-file").is_err());
        std::fs::write(&f, "secret\n").unwrap();
        assert_eq!(
            read_token(Some(&f), "--auth-token-file")
                .unwrap()
                .as_deref(),
            Some("secret")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
