//! A stand-in for the StatefulSet controller with the semantics ringcache depends on:
//! - pods `NAME-0 … NAME-(replicas-1)`, created in parallel (`podManagementPolicy: Parallel`)
//!   from the template, labelled with the template's revision (`controller-revision-hash`);
//! - scaling down deletes the highest ordinals;
//! - `status.updateRevision` is the current template's revision;
//! - `updateStrategy: RollingUpdate` (the default) deletes the highest-ordinal pod of an older
//!   revision as soon as every pod is Ready and none is terminating, i.e. the next one goes as
//!   soon as the previous replacement reports Ready; `OnDelete` deletes nothing and waits for
//!   someone else to.
//!
//! A deleted pod is recreated (with the current revision) once the kubelet has removed it.
//!
//! Like the real controller, it may act on a change of the StatefulSet's spec some time after
//! the change ([`Controller::lagging`]): until then it keeps working from the spec it last
//! acted on, and `status` (`observedGeneration`, `updateRevision`, counts) describes that spec,
//! so for a moment every pod looks updated to a new template that nothing has rolled out yet.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::apiserver::{FakeApi, Res};

pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Runs until the returned task is aborted.
pub fn spawn(api: FakeApi, ns: String, mut controller: Controller) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut changed = api.changed();
        loop {
            controller.sync(&api, &ns);
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    })
}

/// The spec generation the controller acts on, per StatefulSet.
struct Adopted {
    generation: Value,
    spec: Value,
    /// A newer generation seen, and when the controller gets to it.
    due: Option<(Value, Instant)>,
}

/// The controller's memory: which spec it acts on, and how late it acts on a new one.
pub struct Controller {
    max_lag: Duration,
    seed: u64,
    adopted: HashMap<String, Adopted>,
}

impl Controller {
    /// Acts on every change at once.
    pub fn immediate() -> Controller {
        Controller::lagging(0, Duration::ZERO)
    }

    /// Acts on a new spec between 0 and `max_lag` after it appears; the lag of a StatefulSet's
    /// n-th generation is drawn from `seed` and n, so a run can be repeated.
    pub fn lagging(seed: u64, max_lag: Duration) -> Controller {
        Controller {
            max_lag,
            seed,
            adopted: HashMap::new(),
        }
    }

    /// One pass over every StatefulSet of `ns`.
    pub fn sync(&mut self, api: &FakeApi, ns: &str) {
        for sts in api.list(&Res::stateful_sets(), Some(ns), None) {
            let Some(name) = sts["metadata"]["name"].as_str().map(str::to_string) else {
                continue;
            };
            let generation = sts["metadata"]["generation"].clone();
            let a = self.adopted.entry(name).or_insert_with(|| Adopted {
                generation: generation.clone(),
                spec: sts["spec"].clone(),
                due: None,
            });
            if a.generation != generation {
                let now = Instant::now();
                if a.due.as_ref().is_none_or(|(g, _)| *g != generation) {
                    let n = generation.as_u64().unwrap_or_default();
                    let lag = crate::kubelet::seeded_lag(self.seed, n, self.max_lag);
                    a.due = Some((generation.clone(), now + lag));
                }
                if a.due.as_ref().is_some_and(|(_, at)| now >= *at) {
                    a.generation = generation;
                    a.spec = sts["spec"].clone();
                    a.due = None;
                }
            }
            let mut acted = sts.clone();
            acted["spec"] = a.spec.clone();
            sync_one(api, ns, &acted, &a.generation);
        }
    }
}

/// The revision name of a pod template: `NAME-<hash>`.
pub fn revision_of(name: &str, template: &Value) -> String {
    // serde_json's maps are ordered, so equal templates serialize identically.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut h);
    format!("{name}-{:08x}", h.finish() as u32)
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn terminating(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

fn revision(pod: &Value) -> Option<&str> {
    pod["metadata"]["labels"][REVISION_LABEL].as_str()
}

/// One pass over every StatefulSet of `ns`, acting on each one's current spec.
pub fn sync(api: &FakeApi, ns: &str) {
    Controller::immediate().sync(api, ns);
}

/// `sts` carries the spec the controller acts on, generation `observed`.
fn sync_one(api: &FakeApi, ns: &str, sts: &Value, observed: &Value) {
    let Some(name) = sts["metadata"]["name"].as_str() else {
        return;
    };
    let replicas = sts["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
    let template = &sts["spec"]["template"];
    let update_revision = revision_of(name, template);
    let on_delete = sts["spec"]["updateStrategy"]["type"] == "OnDelete";
    let prefix = format!("{name}-");
    let pods: BTreeMap<usize, Value> = api
        .list(&Res::pods(), Some(ns), None)
        .into_iter()
        .filter_map(|p| {
            let ordinal = p["metadata"]["name"]
                .as_str()?
                .strip_prefix(&prefix)?
                .parse::<usize>()
                .ok()?;
            Some((ordinal, p))
        })
        .collect();

    for ordinal in 0..replicas {
        if !pods.contains_key(&ordinal) {
            let pod = new_pod(name, ns, ordinal, sts, template, &update_revision);
            if let Err(e) = api.create(&Res::pods(), ns, pod) {
                tracing::debug!(error = %e, "pod not created yet");
            }
        }
    }
    for (&ordinal, pod) in &pods {
        if ordinal >= replicas && !terminating(pod) {
            let _ = api.delete(&Res::pods(), ns, &format!("{name}-{ordinal}"));
        }
    }
    let settled =
        (0..replicas).all(|o| pods.get(&o).is_some_and(|p| is_ready(p) && !terminating(p)));
    if !on_delete && settled {
        // RollingUpdate: the next pod goes as soon as every pod is Ready again.
        if let Some((&ordinal, _)) = pods
            .iter()
            .filter(|(o, p)| **o < replicas && revision(p) != Some(update_revision.as_str()))
            .max_by_key(|(o, _)| **o)
        {
            let _ = api.delete(&Res::pods(), ns, &format!("{name}-{ordinal}"));
        }
    }

    let live: Vec<&Value> = pods.values().filter(|p| !terminating(p)).collect();
    let updated = live
        .iter()
        .filter(|p| revision(p) == Some(update_revision.as_str()))
        .count();
    let previous_current = sts["status"]["currentRevision"]
        .as_str()
        .unwrap_or(&update_revision)
        .to_string();
    let current = if updated == replicas && live.len() == replicas {
        update_revision.clone()
    } else {
        previous_current
    };
    let status = json!({
        "observedGeneration": observed,
        "replicas": live.len(),
        "readyReplicas": live.iter().filter(|p| is_ready(p)).count(),
        "updatedReplicas": updated,
        "currentRevision": current,
        "updateRevision": update_revision,
    });
    if sts["status"] != status {
        let _ = api.update_status(&Res::stateful_sets(), ns, name, |o| {
            o["status"] = status;
        });
    }
}

fn new_pod(
    sts_name: &str,
    ns: &str,
    ordinal: usize,
    sts: &Value,
    template: &Value,
    revision: &str,
) -> Value {
    let pod_name = format!("{sts_name}-{ordinal}");
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[REVISION_LABEL] = json!(revision);
    labels["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": ns,
            "labels": labels,
            "annotations": template["metadata"]["annotations"],
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "name": sts_name,
                "uid": sts["metadata"]["uid"],
                "controller": true,
            }],
        },
        "spec": template["spec"],
        "status": {"phase": "Pending"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(replicas: u64, strategy: &str, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "demo", "namespace": "ns"},
            "spec": {
                "replicas": replicas,
                "updateStrategy": {"type": strategy},
                "selector": {"matchLabels": {"app": "x"}},
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {"containers": [{"name": "node", "image": image}]}
                }
            }
        })
    }

    fn set_ready(api: &FakeApi, name: &str, ready: bool) {
        api.update_status(&Res::pods(), "ns", name, |p| {
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": if ready { "True" } else { "False" }}]);
        })
        .unwrap();
    }

    fn pod_names(api: &FakeApi) -> Vec<String> {
        api.list(&Res::pods(), Some("ns"), None)
            .iter()
            .filter(|p| !terminating(p))
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_lagging_controller_reports_the_old_revision_until_it_acts_on_the_new_spec() {
        let api = FakeApi::new();
        api.create(&Res::stateful_sets(), "ns", sts(2, "OnDelete", "a"))
            .unwrap();
        let mut c = Controller::lagging(7, Duration::from_secs(3600));
        c.sync(&api, "ns");
        let before = api.get(&Res::stateful_sets(), "ns", "demo").unwrap();
        let old = before["status"]["updateRevision"].clone();
        api.update(&Res::stateful_sets(), "ns", "demo", |s| {
            s["spec"]["template"]["spec"]["containers"][0]["image"] = json!("b")
        })
        .unwrap();
        c.sync(&api, "ns");
        let s = api.get(&Res::stateful_sets(), "ns", "demo").unwrap();
        // A lag drawn within an hour is not over yet.
        assert_eq!(
            s["status"]["updateRevision"], old,
            "still the old template's"
        );
        assert_eq!(
            s["status"]["observedGeneration"],
            before["metadata"]["generation"]
        );
        assert_ne!(
            s["metadata"]["generation"],
            s["status"]["observedGeneration"]
        );
        // The same change, acted on at once.
        sync(&api, "ns");
        let s = api.get(&Res::stateful_sets(), "ns", "demo").unwrap();
        assert_ne!(s["status"]["updateRevision"], old);
        assert_eq!(
            s["status"]["observedGeneration"],
            s["metadata"]["generation"]
        );
    }

    #[test]
    fn creates_ordinals_and_scales_down_from_the_top() {
        let api = FakeApi::new();
        api.create(&Res::stateful_sets(), "ns", sts(3, "OnDelete", "a"))
            .unwrap();
        sync(&api, "ns");
        assert_eq!(pod_names(&api), ["demo-0", "demo-1", "demo-2"]);
        let p = api.get(&Res::pods(), "ns", "demo-1").unwrap();
        assert!(revision(&p).unwrap().starts_with("demo-"));
        api.update(&Res::stateful_sets(), "ns", "demo", |s| {
            s["spec"]["replicas"] = json!(2)
        })
        .unwrap();
        sync(&api, "ns");
        assert_eq!(pod_names(&api), ["demo-0", "demo-1"]);
    }

    #[test]
    fn rolling_update_deletes_the_next_pod_as_soon_as_all_are_ready_and_on_delete_never() {
        for (strategy, expect_deleted) in [("RollingUpdate", true), ("OnDelete", false)] {
            let api = FakeApi::new();
            api.create(&Res::stateful_sets(), "ns", sts(2, strategy, "a"))
                .unwrap();
            sync(&api, "ns");
            for n in ["demo-0", "demo-1"] {
                set_ready(&api, n, true);
            }
            api.update(&Res::stateful_sets(), "ns", "demo", |s| {
                s["spec"]["template"]["spec"]["containers"][0]["image"] = json!("b")
            })
            .unwrap();
            sync(&api, "ns");
            let s = api.get(&Res::stateful_sets(), "ns", "demo").unwrap();
            assert_eq!(s["status"]["updatedReplicas"], 0);
            let deleted = api
                .get(&Res::pods(), "ns", "demo-1")
                .is_some_and(|p| terminating(&p));
            assert_eq!(deleted, expect_deleted, "{strategy}");
            if expect_deleted {
                // Not the next one while this one is going away.
                sync(&api, "ns");
                assert!(!terminating(
                    &api.get(&Res::pods(), "ns", "demo-0").unwrap()
                ));
            }
        }
    }
}
