//! What a failed scenario leaves in the test log, so that a run on someone else's cluster explains
//! itself without access to that cluster afterwards: the CacheClusters, StatefulSets and pods of
//! the scenario's namespace, its Events in time order, and the last log lines of every node pod
//! and of the operator.
//!
//! Everything here is best effort: an error reading one thing is printed and the rest still
//! runs, and the whole dump has a deadline, so diagnostics never hide or replace the failure.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, LogParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};

use crate::error::E2eError;
use crate::harness::{timed, within};
use crate::resource::{self, OPERATOR_SELECTOR};

/// Log lines kept per pod (and per previous container of a restarted pod).
pub const LOG_LINES: i64 = 50;

/// Events printed at most (the most recent ones).
pub const MAX_EVENTS: usize = 150;

/// The whole dump gets this long; a cluster too sick to answer gets a note instead.
const DUMP_TIMEOUT: Duration = Duration::from_secs(180);

/// Prints everything [the module](self) describes for namespace `ns`.
pub async fn dump(client: &Client, ns: &str) {
    println!("[{ns}] ===== diagnostics =====");
    let all = async {
        cache_clusters(client, ns).await;
        stateful_sets(client, ns).await;
        let pods = pods(client, ns).await;
        events(client, ns).await;
        for p in &pods {
            pod_logs(client, p).await;
        }
        operator_logs(client, ns).await;
        Ok::<(), E2eError>(())
    };
    if let Err(e) = within(DUMP_TIMEOUT, "diagnostics", all).await {
        println!("[{ns}] diagnostics cut short: {e}");
    }
    println!("[{ns}] ===== end of diagnostics =====");
}

async fn cache_clusters(client: &Client, ns: &str) {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &resource::api_resource());
    match timed("list CacheClusters", api.list(&ListParams::default())).await {
        Ok(list) => {
            for cc in list {
                let json = serde_json::to_string_pretty(&cc.data)
                    .unwrap_or_else(|e| format!("(not printable: {e})"));
                println!(
                    "[{ns}] CacheCluster {} (generation {:?}):\n{json}",
                    cc.name_any(),
                    cc.metadata.generation
                );
            }
        }
        Err(e) => println!("[{ns}] CacheClusters: {e}"),
    }
}

async fn stateful_sets(client: &Client, ns: &str) {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    match timed("list StatefulSets", api.list(&ListParams::default())).await {
        Ok(list) => {
            for s in &list {
                println!("[{ns}] {}", stateful_set_line(s));
            }
        }
        Err(e) => println!("[{ns}] StatefulSets: {e}"),
    }
}

/// Prints the pods and returns them (their logs come later, after the Events).
async fn pods(client: &Client, ns: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match timed("list pods", api.list(&ListParams::default())).await {
        Ok(list) => {
            for p in &list {
                println!("[{ns}] {}", pod_line(p));
            }
            list.items
        }
        Err(e) => {
            println!("[{ns}] pods: {e}");
            Vec::new()
        }
    }
}

async fn events(client: &Client, ns: &str) {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    match timed("list Events", api.list(&ListParams::default())).await {
        Ok(list) => {
            let mut events = list.items;
            sort_events(&mut events);
            let skip = events.len().saturating_sub(MAX_EVENTS);
            println!(
                "[{ns}] Events ({} in all, oldest first{}):",
                events.len(),
                if skip > 0 {
                    ", the oldest left out"
                } else {
                    ""
                }
            );
            for e in &events[skip..] {
                println!("[{ns}]   {}", event_line(e));
            }
        }
        Err(e) => println!("[{ns}] Events: {e}"),
    }
}

/// The last [`LOG_LINES`] of `pod`, and of its previous container when it restarted in place
/// (a killed process's last words are there, not in the running container's log).
async fn pod_logs(client: &Client, pod: &Pod) {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut which = vec![false];
    if restarts(pod) > 0 {
        which.push(true);
    }
    for previous in which {
        let params = LogParams {
            tail_lines: Some(LOG_LINES),
            previous,
            ..LogParams::default()
        };
        let label = if previous {
            " (previous container)"
        } else {
            ""
        };
        match timed(&format!("logs of {ns}/{name}"), api.logs(&name, &params)).await {
            Ok(text) => {
                println!("----- last {LOG_LINES} log lines of pod {ns}/{name}{label}:");
                for line in text.lines() {
                    println!("  {line}");
                }
            }
            Err(e) => println!("----- logs of pod {ns}/{name}{label}: {e}"),
        }
    }
}

/// The operator runs wherever the chart was installed: found by its labels in every namespace.
async fn operator_logs(client: &Client, ns: &str) {
    let api: Api<Pod> = Api::all(client.clone());
    let params = ListParams::default().labels(OPERATOR_SELECTOR);
    match timed("list operator pods", api.list(&params)).await {
        Ok(list) if list.items.is_empty() => {
            println!("[{ns}] no operator pod found ({OPERATOR_SELECTOR})");
        }
        Ok(list) => {
            for p in &list.items {
                println!("[{ns}] operator {}", pod_line(p));
                pod_logs(client, p).await;
            }
        }
        Err(e) => println!("[{ns}] operator pods ({OPERATOR_SELECTOR}): {e}"),
    }
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// The latest time an Event was seen. Events written through `events.k8s.io` carry `eventTime`
/// and a `series` instead of the older `lastTimestamp`, so every field is considered.
pub fn event_time(e: &Event) -> Option<Timestamp> {
    [
        e.series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref())
            .map(|t| t.0),
        e.last_timestamp.as_ref().map(|t| t.0),
        e.event_time.as_ref().map(|t| t.0),
        e.first_timestamp.as_ref().map(|t| t.0),
        e.metadata.creation_timestamp.as_ref().map(|t| t.0),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// Oldest first; Events without any time first of all (they cannot be placed).
pub fn sort_events(events: &mut [Event]) {
    events.sort_by(|a, b| {
        event_time(a)
            .cmp(&event_time(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

pub fn event_line(e: &Event) -> String {
    let time = event_time(e).map_or_else(|| "-".to_string(), |t| t.to_string());
    let object = format!(
        "{}/{}",
        e.involved_object.kind.as_deref().unwrap_or("?"),
        e.involved_object.name.as_deref().unwrap_or("?")
    );
    let count = e
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(e.count)
        .filter(|n| *n > 1)
        .map(|n| format!(" (x{n})"))
        .unwrap_or_default();
    format!(
        "{time} {} {object} {}: {}{count}",
        e.type_.as_deref().unwrap_or("-"),
        e.reason.as_deref().unwrap_or("-"),
        e.message.as_deref().unwrap_or("").trim_end()
    )
}

pub fn pod_line(p: &Pod) -> String {
    let status = p.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map_or("-", |c| c.status.as_str());
    format!(
        "pod {} uid={} phase={} ready={ready} restarts={} revision={} node={}{}",
        p.name_any(),
        p.metadata.uid.as_deref().unwrap_or("-"),
        status.and_then(|s| s.phase.as_deref()).unwrap_or("-"),
        restarts(p),
        p.labels()
            .get("controller-revision-hash")
            .map_or("-", String::as_str),
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("-"),
        if p.metadata.deletion_timestamp.is_some() {
            " terminating"
        } else {
            ""
        }
    )
}

pub fn stateful_set_line(s: &StatefulSet) -> String {
    let st = s.status.as_ref();
    format!(
        "StatefulSet {} generation={} observedGeneration={} replicas={} ready={} updated={} \
         currentRevision={} updateRevision={}",
        s.name_any(),
        s.metadata.generation.unwrap_or(0),
        st.and_then(|s| s.observed_generation).unwrap_or(0),
        st.map_or(0, |s| s.replicas),
        st.and_then(|s| s.ready_replicas).unwrap_or(0),
        st.and_then(|s| s.updated_replicas).unwrap_or(0),
        st.and_then(|s| s.current_revision.as_deref())
            .unwrap_or("-"),
        st.and_then(|s| s.update_revision.as_deref()).unwrap_or("-"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, fields: serde_json::Value) -> Event {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "n"},
            "involvedObject": {"kind": "CacheCluster", "name": "demo"},
            "reason": "Scaled",
            "message": format!("event {name}"),
            "type": "Normal"
        });
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), fields.as_object()) {
            for (k, x) in extra {
                obj.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).expect("a valid Event")
    }

    fn names(events: &[Event]) -> Vec<&str> {
        events
            .iter()
            .map(|e| e.metadata.name.as_deref().unwrap_or(""))
            .collect()
    }

    #[test]
    fn events_sort_by_their_latest_time_whatever_api_wrote_them() {
        let mut events = vec![
            // Old-style: lastTimestamp; first seen early, seen again late.
            event(
                "late-repeat",
                json!({"firstTimestamp": "2030-01-01T00:00:01Z", "lastTimestamp": "2030-01-01T00:00:09Z", "count": 3}),
            ),
            // events.k8s.io style: eventTime with sub-second precision, no lastTimestamp.
            event("micro", json!({"eventTime": "2030-01-01T00:00:05.250000Z"})),
            event("early", json!({"lastTimestamp": "2030-01-01T00:00:02Z"})),
            // A series: the last observation counts.
            event(
                "series",
                json!({"eventTime": "2030-01-01T00:00:00.000001Z",
                       "series": {"count": 4, "lastObservedTime": "2030-01-01T00:00:07.000000Z"}}),
            ),
            // 5.0 s is before 5.25 s, though a string sort puts "05Z" after "05.25…Z".
            event("whole", json!({"lastTimestamp": "2030-01-01T00:00:05Z"})),
            event("timeless", json!({})),
        ];
        sort_events(&mut events);
        assert_eq!(
            names(&events),
            [
                "timeless",
                "early",
                "whole",
                "micro",
                "series",
                "late-repeat"
            ]
        );
    }

    #[test]
    fn an_event_line_names_time_object_reason_message_and_repeats() {
        let e = event(
            "x",
            json!({"lastTimestamp": "2030-01-01T00:00:09Z", "count": 3, "type": "Warning"}),
        );
        let line = event_line(&e);
        assert_eq!(
            line,
            "2030-01-01T00:00:09Z Warning CacheCluster/demo Scaled: event x (x3)"
        );
        let once = event(
            "y",
            json!({"lastTimestamp": "2030-01-01T00:00:09Z", "count": 1}),
        );
        assert!(!event_line(&once).contains("(x"), "{}", event_line(&once));
    }

    #[test]
    fn a_pod_line_shows_revision_restarts_and_termination() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "demo-0", "uid": "u1",
                         "labels": {"controller-revision-hash": "demo-abc"},
                         "deletionTimestamp": "2030-01-01T00:00:00Z"},
            "spec": {"containers": [], "nodeName": "w1"},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "node", "restartCount": 2, "ready": true,
                                              "image": "i", "imageID": ""}]}
        }))
        .expect("a valid Pod");
        assert_eq!(
            pod_line(&p),
            "pod demo-0 uid=u1 phase=Running ready=True restarts=2 revision=demo-abc node=w1 terminating"
        );
    }
}
