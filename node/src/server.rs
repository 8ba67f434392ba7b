//! Wiring: state from config, background tasks (expiry sweep, ring-file poll), serving with
//! graceful shutdown.

use crate::clock::{Clock, SystemClock};
use crate::cluster::node::{Node, SharedNode};
use crate::cluster::peer::HttpPeers;
use crate::config::NodeConfig;
use crate::tls::{TlsClient, TlsServer};
use anyhow::Context;
use ringcache_ring::RingDoc;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the mounted ring file is re-read (ConfigMap updates arrive by symlink swap).
pub const RING_POLL: Duration = Duration::from_secs(1);

/// Reads and validates a ring file.
pub fn load_ring_file(path: &Path) -> anyhow::Result<RingDoc> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if size > crate::cluster::peers::MAX_RING_BYTES as u64 {
        anyhow::bail!(
            "ring file {} is {size} bytes, more than {}",
            path.display(),
            crate::cluster::peers::MAX_RING_BYTES
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    RingDoc::from_json(&bytes).with_context(|| format!("ring file {}", path.display()))
}

/// Builds the node's shared state. Without a ring file the node is a one-member cluster (epoch
/// 0) and ready at once; with one that cannot be loaded yet it starts not ready and the poller
/// installs the ring when the file becomes valid.
pub fn build_state(cfg: &NodeConfig, clock: Arc<dyn Clock>) -> anyhow::Result<SharedNode> {
    let single = || RingDoc::single_node(&cfg.node_id, &cfg.listen.to_string(), cfg.partitions);
    let (doc, loaded) = match &cfg.ring_file {
        None => (single(), true),
        Some(path) => match load_ring_file(path) {
            Ok(doc) => (doc, true),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "ring file not loadable yet; not ready until it is");
                // The placeholder marks this node down so that even the local fast paths neither
                // serve nor store keys until the real ring arrives.
                let mut placeholder = single();
                for m in &mut placeholder.members {
                    m.state = ringcache_ring::MemberState::Down;
                }
                (placeholder, false)
            }
        },
    };
    if !loaded {
        tracing::info!("waiting for a valid ring file");
    }
    let peer_tls = cfg
        .tls_ca_file
        .as_deref()
        .map(|ca| TlsClient::new(ca, cfg.tls_server_name.as_deref()))
        .transpose()
        .context("--tls-ca-file")?;
    // Peers close idle keep-alive connections when their header read timeout passes (the same
    // flag on every node): reuse one for at most half that, so a request never races the close.
    let idle =
        Duration::from_millis(cfg.header_read_timeout_ms / 2).max(Duration::from_millis(100));
    let peers: crate::cluster::Peers =
        Arc::new(HttpPeers::new(cfg.internal_token.clone(), peer_tls, idle)?);
    Ok(Node::new(cfg, clock, doc, peers))
}

/// Starts the background tasks; they stop when `stop` resolves (they hold only `Arc`s).
pub fn spawn_background(state: &SharedNode, cfg: &NodeConfig) {
    let s = state.clone();
    let every = Duration::from_millis(cfg.sweep_interval_ms);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let s2 = s.clone();
            let now = s.clock.now_ms();
            match tokio::task::spawn_blocking(move || s2.engine.sweep(now)).await {
                Ok(r) if r.expired + r.tombstones_purged > 0 => {
                    tracing::debug!(
                        expired = r.expired,
                        tombstones = r.tombstones_purged,
                        "sweep"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "sweep task failed"),
            }
        }
    });
    if let Some(path) = cfg.ring_file.clone() {
        tokio::spawn(poll_ring_file(state.clone(), path));
    }
    // Pulls whatever this process does not hold completely, for its life (recovery at start,
    // migrations, re-copies after being down).
    tokio::spawn(crate::cluster::migration::run(state.clone()));
}

async fn poll_ring_file(s: SharedNode, path: PathBuf) {
    let mut last: Option<Vec<u8>> = None;
    let mut tick = tokio::time::interval(RING_POLL);
    loop {
        tick.tick().await;
        let too_large = tokio::fs::metadata(&path)
            .await
            .is_ok_and(|m| m.len() > crate::cluster::peers::MAX_RING_BYTES as u64);
        if too_large {
            tracing::warn!(path = %path.display(), "ring file larger than the ring size bound: ignored");
            continue;
        }
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "ring file unreadable");
                continue;
            }
        };
        if last.as_deref() == Some(&bytes[..]) {
            continue;
        }
        if let Err(e) = crate::cluster::install_ring(&s, &bytes, "file") {
            tracing::warn!(path = %path.display(), error = %e, "ring file refused");
        }
        last = Some(bytes);
    }
}

/// Loads the snapshot in `dir`, keeping only partitions this node owns in the current ring
/// (current or pending table): a reused volume must not bring back data for partitions that
/// moved away. Versions decide against anything pulled later. A corrupt snapshot is logged and
/// skipped; the node then recovers from its co-owners like an empty one.
pub fn restore_snapshot(s: &SharedNode, dir: &Path) {
    let records = match crate::snapshot::read(dir) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "snapshot skipped");
            return;
        }
    };
    let view = s.ring.get();
    let now = s.clock.now_ms();
    let (mut kept, mut skipped) = (0u64, 0u64);
    for r in &records {
        let p = s.engine.partition_of(&r.key);
        let owned = view.self_index.is_some_and(|me| {
            view.doc.owners(p).contains(&me) || view.doc.pending_owners(p).contains(&me)
        });
        if !owned {
            skipped += 1;
            continue;
        }
        match s.engine.apply(r, now) {
            Ok(_) => kept += 1,
            Err(e) => {
                tracing::warn!(error = %e, "snapshot entry not restored");
                skipped += 1;
            }
        }
    }
    tracing::info!(restored = kept, skipped, "snapshot loaded");
}

/// Writes a snapshot now (blocking work off the async threads).
pub async fn save_snapshot(s: &SharedNode, dir: &Path) {
    let (s2, dir2) = (s.clone(), dir.to_path_buf());
    let res = tokio::task::spawn_blocking(move || {
        let data = crate::snapshot::encode(&s2.engine, s2.clock.now_ms());
        crate::snapshot::write(&dir2, &data).map(|()| data.len())
    })
    .await;
    match res {
        Ok(Ok(n)) => tracing::debug!(bytes = n, "snapshot written"),
        Ok(Err(e)) => tracing::error!(error = %e, "snapshot failed"),
        Err(e) => tracing::error!(error = %e, "snapshot task failed"),
    }
}

/// Serves on `listener` (HTTPS with `tls`) until `shutdown` resolves, then finishes in-flight
/// requests; connections and request reading are bounded by `limits`.
pub async fn serve(
    listener: TcpListener,
    state: SharedNode,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: crate::serve::Limits,
    tls: Option<TlsServer>,
) {
    let metrics = state.metrics.clone();
    crate::serve::serve(
        listener,
        crate::http::app(state),
        shutdown,
        limits,
        tls,
        Some(metrics),
    )
    .await;
}

/// [`serve`] for any router, plain HTTP with default limits (tests serve stand-in peers with
/// it).
///
/// Not hyper's `pipeline_flush`: it was tried for pipelined peers and turns off write
/// back-pressure, so a streamed partition pull was buffered whole in memory (caught by
/// `pulling_one_large_partition_keeps_memory_flat`); coalescing reads makes it unnecessary.
pub async fn serve_router(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    crate::serve::serve(
        listener,
        app,
        shutdown,
        crate::serve::Limits::default(),
        None,
        None,
    )
    .await;
}

/// How long a stopping node waits for its replica writes to reach the other owners (within the
/// pod's 30 s termination grace).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Waits until no write this node coordinated is still on its way to another owner (quorum
/// stragglers, the asynchronous queue of `one`): the writes it acknowledged must not leave with
/// the process.
pub async fn drain_replication(s: &SharedNode, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while s.writes.oldest().is_some() {
        if tokio::time::Instant::now() >= deadline {
            tracing::error!(
                "replica writes still pending at shutdown; their owners are reported stale"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("replica writes drained");
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("SIGTERM: shutting down"),
        r = tokio::signal::ctrl_c() => match r {
            Ok(()) => tracing::info!("SIGINT: shutting down"),
            Err(e) => tracing::error!(error = %e, "cannot listen for SIGINT"),
        },
    }
}

/// The whole node: bind, start background tasks, serve until a signal.
pub async fn run(cfg: NodeConfig) -> anyhow::Result<()> {
    let state = build_state(&cfg, Arc::new(SystemClock))?;
    let tls = match (&cfg.tls_cert_file, &cfg.tls_key_file) {
        (Some(cert), Some(key)) => {
            let t = TlsServer::load(cert, key).context("--tls-cert-file/--tls-key-file")?;
            t.spawn_reloader();
            Some(t)
        }
        _ => None,
    };
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let resp_listener = match cfg.resp_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding --resp-listen {addr}"))?,
        ),
        None => None,
    };
    tracing::info!(
        listen = %cfg.listen,
        node_id = %cfg.node_id,
        epoch = state.ring.epoch(),
        partitions = state.engine.partitions(),
        max_memory = cfg.max_memory,
        "ringcache node serving"
    );
    if let Some(dir) = &cfg.data_dir {
        restore_snapshot(&state, dir);
        let (s, dir) = (state.clone(), dir.clone());
        let every = Duration::from_millis(cfg.snapshot_interval_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                save_snapshot(&s, &dir).await;
            }
        });
    }
    spawn_background(&state, &cfg);
    // One signal stops both fronts.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|&stop| stop).await;
    };
    if let Some(l) = resp_listener {
        tracing::info!(resp_listen = ?cfg.resp_listen, tls = tls.is_some(), "Redis protocol front serving");
        tokio::spawn(crate::resp::serve(
            l,
            state.clone(),
            stopped(stop_rx.clone()),
            cfg.limits(),
            tls.clone(),
            Duration::from_micros(cfg.resp_busy_poll_us),
        ));
    }
    serve(listener, state.clone(), stopped(stop_rx), cfg.limits(), tls).await;
    drain_replication(&state, DRAIN_TIMEOUT).await;
    if let Some(dir) = &cfg.data_dir {
        save_snapshot(&state, dir).await;
        tracing::info!(dir = %dir.display(), "final snapshot written");
    }
    tracing::info!("stopped");
    Ok(())
}
