//! What a user would be told, checked against what is true: a background audit of the
//! CacheCluster's status while a scenario runs. A status that says `Ready` for the current
//! generation while member pods still run an older pod template is a lie a user acts on
//! (`kubectl wait --for=condition=Ready` after an upgrade), and a real StatefulSet controller,
//! which reports a new template's revision only some time after the change, makes it easy to
//! tell.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

use crate::apiserver::{FakeApi, Res};
use crate::cluster::NAMESPACE;
use crate::statefulset::{REVISION_LABEL, revision_of};

/// How often the audit looks.
const EVERY: Duration = Duration::from_millis(20);

pub struct StatusAudit {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    violations: Arc<Mutex<Vec<String>>>,
}

/// What the status claims: Ready, for the generation of the spec it was computed from.
pub fn claims_ready(cc: &Value) -> bool {
    let status = &cc["status"];
    status["phase"] == "Ready"
        && status["observedGeneration"] == cc["metadata"]["generation"]
        && status["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Member pods (not terminating) whose revision is not the StatefulSet template's.
pub fn outdated_pods(sts: &Value, pods: &[Value]) -> Vec<String> {
    let Some(name) = sts["metadata"]["name"].as_str() else {
        return vec![];
    };
    let target = revision_of(name, &sts["spec"]["template"]);
    pods.iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| p["metadata"]["labels"][REVISION_LABEL] != target.as_str())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

impl StatusAudit {
    /// Audits CacheCluster `name`: a claim of Ready that lasts longer than `grace` while a pod
    /// runs an older template is a violation (`grace` covers the operator's own reaction time:
    /// no controller can change a status the instant the world changes).
    pub fn start(api: FakeApi, name: &str, grace: Duration) -> StatusAudit {
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let (stop2, found, name) = (stop.clone(), violations.clone(), name.to_string());
        let task = tokio::spawn(async move {
            let mut since: Option<Instant> = None;
            let mut reported = false;
            while !stop2.load(Ordering::Relaxed) {
                let cc = api.get(&Res::cache_clusters(), NAMESPACE, &name);
                let sts = api.get(&Res::stateful_sets(), NAMESPACE, &name);
                let pods = api.list(&Res::pods(), Some(NAMESPACE), None);
                let lie = match (&cc, &sts) {
                    (Some(cc), Some(sts)) if claims_ready(cc) => {
                        let outdated = outdated_pods(sts, &pods);
                        (!outdated.is_empty()).then(|| {
                            format!(
                                "status Ready for generation {} (updatedReplicas {}) while {} \
                                 ran an older template (StatefulSet generation {}, observed {})",
                                cc["metadata"]["generation"],
                                cc["status"]["updatedReplicas"],
                                outdated.join(", "),
                                sts["metadata"]["generation"],
                                sts["status"]["observedGeneration"]
                            )
                        })
                    }
                    _ => None,
                };
                match lie {
                    Some(what) => {
                        let start = *since.get_or_insert_with(Instant::now);
                        if !reported && start.elapsed() > grace {
                            found
                                .lock()
                                .push(format!("{what}, for more than {grace:?}"));
                            reported = true;
                        }
                    }
                    None => {
                        since = None;
                        reported = false;
                    }
                }
                tokio::time::sleep(EVERY).await;
            }
        });
        StatusAudit {
            stop,
            task,
            violations,
        }
    }

    /// Stops the audit; what it found.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.violations.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(image: &str) -> Value {
        json!({"metadata": {"name": "demo"}, "spec": {"template": {"spec": {"image": image}}}})
    }

    fn pod(name: &str, revision: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {REVISION_LABEL: revision}}})
    }

    #[test]
    fn a_pod_on_another_template_is_outdated() {
        let s = sts("b");
        let current = revision_of("demo", &s["spec"]["template"]);
        let pods = [pod("demo-0", &current), pod("demo-1", "demo-old")];
        assert_eq!(outdated_pods(&s, &pods), ["demo-1"]);
    }

    #[test]
    fn ready_is_claimed_only_for_the_current_generation() {
        let cc = |observed: i64, phase: &str| {
            json!({
                "metadata": {"generation": 3},
                "status": {"phase": phase, "observedGeneration": observed,
                           "conditions": [{"type": "Ready", "status": "True"}]}
            })
        };
        assert!(claims_ready(&cc(3, "Ready")));
        assert!(!claims_ready(&cc(2, "Ready")));
        assert!(!claims_ready(&cc(3, "Scaling")));
    }
}
