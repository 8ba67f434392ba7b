//! `ringcache-operator`: reconciles CacheClusters. Runs in the cluster or, with
//! `--node-access=proxy`, on a laptop against any cluster the kubeconfig names.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube_lease_manager::LeaseManagerBuilder;
use ringcache_operator::controller;
use ringcache_operator::http::{self, HttpState};
use ringcache_operator::metrics::Metrics;
use ringcache_operator::nodes::{DirectNodes, NodeApi, ProxyNodes};
use ringcache_operator::reconcile::Context;
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum NodeAccess {
    /// Straight to pod IPs (the operator runs inside the cluster).
    Ip,
    /// Through the API server's pod proxy (works from outside the cluster).
    Proxy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Parser)]
#[command(
    name = "ringcache-operator",
    version,
    about = "Kubernetes operator for ringcache"
)]
struct Args {
    /// How to reach the nodes' internal API.
    #[arg(long, env = "RINGCACHE_NODE_ACCESS", value_enum, default_value = "ip")]
    node_access: NodeAccess,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "RINGCACHE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Reconcile only while holding a coordination.k8s.io Lease (for more than one replica).
    #[arg(long, env = "RINGCACHE_LEADER_ELECTION", default_value_t = false)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "RINGCACHE_LEASE_NAME",
        default_value = "ringcache-operator"
    )]
    lease_name: String,
    /// Namespace of the Lease; defaults to POD_NAMESPACE, then the client's default namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "RINGCACHE_WATCH_NAMESPACE")]
    namespace: Option<String>,
    #[arg(long, env = "RINGCACHE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Resolves once `rx` holds true (or its sender is gone).
async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_format);

    let client = Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let state = HttpState::new(metrics.clone());

    // One stop signal for every part: SIGTERM/Ctrl-C, or the loss of leadership.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_on_signal = stop_tx.clone();
    tokio::spawn(async move {
        termination().await;
        info!("shutdown requested");
        let _ = stop_on_signal.send(true);
    });

    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.metrics_addr))?;
    info!(addr = %args.metrics_addr, "serving /metrics /healthz /readyz");
    let server = tokio::spawn(
        axum::serve(listener, http::router(state.clone()))
            .with_graceful_shutdown(wait_true(stop_rx.clone()))
            .into_future(),
    );

    let nodes: Arc<dyn NodeApi> = match args.node_access {
        NodeAccess::Ip => Arc::new(DirectNodes::new().context("cannot build the HTTP client")?),
        NodeAccess::Proxy => Arc::new(ProxyNodes::new(client.clone())),
    };
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "ringcache-operator".into());
    let ctx = Arc::new(Context {
        client: client.clone(),
        nodes,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "ringcache-operator".into(),
                instance: Some(identity.clone()),
            },
        ),
        metrics,
    });
    state.ready.store(true, Ordering::Relaxed);

    let mut lease = None;
    if args.leader_election {
        let lease_ns = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&lease_ns)
            .with_identity(&identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .context("cannot set up the leader-election Lease")?;
        let (mut leading, task) = manager.watch().await;
        info!(lease = %args.lease_name, namespace = %lease_ns, %identity, "waiting for leadership");
        let mut stop = stop_rx.clone();
        let became_leader = tokio::select! {
            r = leading.wait_for(|l| *l) => { r.context("leader election stopped")?; true }
            _ = stop.wait_for(|s| *s) => false,
        };
        if !became_leader {
            drop(leading);
            let _ = task.await;
            let _ = server.await;
            return Ok(());
        }
        info!("leading: reconciling");
        // Losing the Lease stops reconciling at once: another instance may already lead.
        let stop_on_loss = stop_tx.clone();
        let mut watch_loss = leading.clone();
        tokio::spawn(async move {
            if watch_loss.wait_for(|l| !*l).await.is_ok() {
                error!("leadership lost; stopping");
                let _ = stop_on_loss.send(true);
            }
        });
        lease = Some((leading, task));
    }
    state.leader.store(true, Ordering::Relaxed);

    let result = controller::run(ctx, args.namespace.clone(), wait_true(stop_rx.clone())).await;
    state.leader.store(false, Ordering::Relaxed);
    let _ = stop_tx.send(true);
    if let Some((leading, task)) = lease {
        // Closing the channel makes the manager release the Lease for the next instance.
        drop(leading);
        match task.await {
            Ok(Ok(_)) => info!("lease released"),
            Ok(Err(e)) => warn!(error = %e, "lease release failed"),
            Err(e) => warn!(error = %e, "lease task failed"),
        }
    }
    let _ = server.await;
    result?;
    Ok(())
}
