//! The operator's real reconcile, run the way its controller runs it: on every change of the
//! objects it watches and on its requeue timers, with one pass at a time per cluster, reaching
//! the nodes over real HTTP. [`Operator::stop`] aborts it wherever it is, like a killed pod
//! (a pass may be cut between writing the ring and pushing it).

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use ringcache_operator::context::Context;
use ringcache_operator::metrics::Metrics;
use ringcache_operator::nodes::DirectNodes;
use ringcache_operator::reconcile;
use ringcache_operator::types::CacheCluster;

use crate::apiserver::{FakeApi, Res};

/// Shortest gap between two passes over one cluster: changes that arrive meanwhile are
/// handled together, as a watch-driven controller does.
const MIN_GAP: Duration = Duration::from_millis(100);
/// A pass at least this often while nothing changes (the real operator requeues every 2 s
/// while something moves and every 30 s when idle; the simulation polls faster).
const TICK: Duration = Duration::from_millis(500);

pub struct Operator {
    task: tokio::task::JoinHandle<()>,
    pub metrics: Arc<Metrics>,
}

impl Operator {
    /// Starts an operator instance named `identity` reconciling every CacheCluster of `ns`.
    pub fn start(api: &FakeApi, ns: &str, identity: &str) -> anyhow::Result<Operator> {
        let client = api.client();
        let metrics = Arc::new(Metrics::default());
        let ctx = Arc::new(Context {
            client: client.clone(),
            nodes: Arc::new(DirectNodes::new()?),
            recorder: Recorder::new(
                client,
                Reporter {
                    controller: "ringcache-operator".into(),
                    instance: Some(identity.to_string()),
                },
            ),
            metrics: metrics.clone(),
        });
        let (api, ns) = (api.clone(), ns.to_string());
        let task = tokio::spawn(async move {
            let mut changed = api.changed();
            loop {
                for obj in api.list(&Res::cache_clusters(), Some(&ns), None) {
                    let cc: CacheCluster = match serde_json::from_value(obj) {
                        Ok(cc) => cc,
                        Err(e) => {
                            tracing::warn!(error = %e, "CacheCluster does not parse");
                            continue;
                        }
                    };
                    if let Err(e) = reconcile::reconcile(Arc::new(cc), ctx.clone()).await {
                        tracing::warn!(error = %e, "reconcile failed");
                    }
                }
                tokio::time::sleep(MIN_GAP).await;
                let _ = tokio::time::timeout(TICK, changed.changed()).await;
            }
        });
        Ok(Operator { task, metrics })
    }

    /// Kills the instance at once, mid-pass if it is in one.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
