use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, SleepAction, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    AUTH_DIR, CONTAINER_NAME, DATA_DIR, INTERNAL_DIR, Owner, PORT, PORT_NAME, REDIS_PORT,
    REDIS_PORT_NAME, RING_DIR, RING_KEY, TLS_CA_KEY, TLS_CERT_KEY, TLS_DIR, TLS_KEY_KEY, TOKEN_KEY,
    default_image, labels, selector_labels,
};
use crate::types::CacheCluster;

/// Non-root uid/gid of the node image (distroless "nonroot").
const RUN_AS: i64 = 65532;
/// Long enough for a node to finish in-flight requests and hand off replication queues.
const TERMINATION_GRACE_SECONDS: i64 = 30;
/// Lets endpoints controllers drop the pod before the node stops accepting requests.
const PRE_STOP_SLEEP_SECONDS: i64 = 5;
const DATA_VOLUME: &str = "data";

/// The StatefulSet of cache nodes with `replicas` pods. The replica count comes from the
/// decision logic, not straight from the spec: a scale-down lowers it only after data moved.
pub fn stateful_set(owner: &Owner, cc: &CacheCluster, replicas: i32) -> StatefulSet {
    let spec = &cc.spec;
    let cluster = &owner.names.cluster;
    let persistence = spec.persistence.as_ref().filter(|p| p.enabled);

    let mut envs = vec![
        env_field("RINGCACHE_NODE_ID", "metadata.name"),
        env_field("POD_IP", "status.podIP"),
        env("RINGCACHE_LISTEN", &format!("0.0.0.0:{PORT}")),
        env("RINGCACHE_RING_FILE", &format!("{RING_DIR}/{RING_KEY}")),
        env(
            "RINGCACHE_INTERNAL_TOKEN_FILE",
            &format!("{INTERNAL_DIR}/{TOKEN_KEY}"),
        ),
        env("RINGCACHE_MAX_MEMORY", &spec.max_memory.0),
        env("RINGCACHE_EVICTION", spec.eviction.as_str()),
        env("RINGCACHE_MAX_VALUE_SIZE", &spec.max_value_size.0),
        env(
            "RINGCACHE_WRITE_CONSISTENCY",
            spec.write_consistency.as_str(),
        ),
        // The node sizes its store by partition before the ring file is readable; a mismatch
        // would make it refuse the ring.
        env("RINGCACHE_PARTITIONS", &spec.partitions.to_string()),
        env("RINGCACHE_LOG_FORMAT", "json"),
        env("RUST_LOG", "info"),
    ];
    let mut ports = vec![container_port(PORT_NAME, PORT)];
    if spec.redis_enabled() {
        envs.push(env(
            "RINGCACHE_RESP_LISTEN",
            &format!("0.0.0.0:{REDIS_PORT}"),
        ));
        ports.push(container_port(REDIS_PORT_NAME, REDIS_PORT));
    }
    let mut mounts = vec![
        mount("ring", RING_DIR),
        mount("internal-token", INTERNAL_DIR),
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ];
    let mut volumes = vec![
        Volume {
            name: "ring".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: owner.names.ring_config_map(),
                items: Some(vec![key_to_path(RING_KEY)]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        secret_volume("internal-token", owner.names.internal_secret()),
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let scheme = if let Some(tls) = &spec.tls {
        for (name, key) in [
            ("RINGCACHE_TLS_CERT_FILE", TLS_CERT_KEY),
            ("RINGCACHE_TLS_KEY_FILE", TLS_KEY_KEY),
            ("RINGCACHE_TLS_CA_FILE", TLS_CA_KEY),
        ] {
            envs.push(env(name, &format!("{TLS_DIR}/{key}")));
        }
        envs.push(env(
            "RINGCACHE_TLS_SERVER_NAME",
            &owner.names.tls_server_name(&owner.namespace),
        ));
        mounts.push(mount("tls", TLS_DIR));
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls.secret_name.clone()),
                items: Some(
                    [TLS_CERT_KEY, TLS_KEY_KEY, TLS_CA_KEY]
                        .into_iter()
                        .map(key_to_path)
                        .collect(),
                ),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        "HTTPS"
    } else {
        "HTTP"
    };
    if let Some(auth) = &spec.auth {
        envs.push(env(
            "RINGCACHE_AUTH_TOKEN_FILE",
            &format!("{AUTH_DIR}/{TOKEN_KEY}"),
        ));
        mounts.push(mount("auth-token", AUTH_DIR));
        volumes.push(secret_volume("auth-token", auth.secret_name.clone()));
    }
    let volume_claim_templates = persistence.map(|p| {
        envs.push(env("RINGCACHE_DATA_DIR", DATA_DIR));
        mounts.push(VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_DIR.into(),
            ..VolumeMount::default()
        });
        vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(DATA_VOLUME.into()),
                labels: Some(labels(cluster)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: p.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".into(), p.size.clone())])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }]
    });

    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(spec.image.clone().unwrap_or_else(default_image)),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(envs),
        ports: Some(ports),
        readiness_probe: Some(Probe {
            http_get: Some(http_get("/readyz", scheme)),
            period_seconds: Some(2),
            timeout_seconds: Some(1),
            failure_threshold: Some(1),
            success_threshold: Some(1),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(http_get("/healthz", scheme)),
            period_seconds: Some(10),
            timeout_seconds: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: spec.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };

    StatefulSet {
        metadata: owner.meta(owner.names.stateful_set()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(owner.names.peers_service()),
            pod_management_policy: Some("Parallel".into()),
            // The operator restarts pods itself, one at a time and only once the previous one
            // has recovered its data (a StatefulSet rolling update would delete the next pod as
            // soon as the previous one is Ready, which is not the same thing).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(cluster)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(cluster)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS),
                        run_as_group: Some(RUN_AS),
                        fs_group: Some(RUN_AS),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    affinity: Some(
                        spec.affinity
                            .clone()
                            .unwrap_or_else(|| soft_anti_affinity(cluster)),
                    ),
                    node_selector: spec.node_selector.clone(),
                    tolerations: spec.tolerations.clone(),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// Fields Kubernetes refuses to change on an existing StatefulSet (and that the operator must
/// never try to change: a changed claim template would orphan every node's data). Returns what
/// differs, for a Degraded condition.
pub fn immutable_conflict(existing: &StatefulSet, desired: &StatefulSet) -> Option<String> {
    let (Some(old), Some(new)) = (existing.spec.as_ref(), desired.spec.as_ref()) else {
        return None;
    };
    if old.service_name != new.service_name {
        return Some(format!(
            "StatefulSet serviceName is {:?}, the spec needs {:?}",
            old.service_name, new.service_name
        ));
    }
    if old.selector.match_labels != new.selector.match_labels {
        return Some("StatefulSet selector differs from the operator's labels".into());
    }
    let claims = |s: &StatefulSetSpec| -> Vec<(Option<String>, Option<String>)> {
        s.volume_claim_templates
            .iter()
            .flatten()
            .map(|c| {
                let size = c
                    .spec
                    .as_ref()
                    .and_then(|s| s.resources.as_ref())
                    .and_then(|r| r.requests.as_ref())
                    .and_then(|r| r.get("storage"))
                    .map(|q| q.0.clone());
                (c.metadata.name.clone(), size)
            })
            .collect()
    };
    if claims(old) != claims(new) {
        return Some(
            "persistence differs from the existing StatefulSet's volumeClaimTemplates, which \
             cannot change; restore the previous persistence settings (or recreate the cluster)"
                .into(),
        );
    }
    None
}

/// Prefer spreading nodes over Kubernetes nodes, without blocking scheduling on small clusters.
fn soft_anti_affinity(cluster: &str) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(cluster)),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn env_field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn key_to_path(key: &str) -> KeyToPath {
    KeyToPath {
        key: key.into(),
        path: key.into(),
        ..KeyToPath::default()
    }
}

fn secret_volume(name: &str, secret: String) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            items: Some(vec![key_to_path(TOKEN_KEY)]),
            // Readable by the non-root node user only.
            default_mode: Some(0o400),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn http_get(path: &str, scheme: &str) -> HTTPGetAction {
    HTTPGetAction {
        path: Some(path.into()),
        port: IntOrString::String(PORT_NAME.into()),
        scheme: Some(scheme.into()),
        ..HTTPGetAction::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::cluster;

    fn build(spec: &str, replicas: i32) -> StatefulSet {
        let cc = cluster("demo", spec);
        stateful_set(&Owner::of(&cc).unwrap(), &cc, replicas)
    }

    fn pod(sts: &StatefulSet) -> PodSpec {
        sts.spec.clone().unwrap().template.spec.unwrap()
    }

    fn env_of(c: &Container, name: &str) -> Option<String> {
        c.env
            .as_ref()?
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    }

    #[test]
    fn tls_mounts_the_secret_sets_the_flags_and_probes_over_https() {
        let plain = pod(&build("{}", 3));
        let c = &plain.containers[0];
        let probe = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.scheme.as_deref(), Some("HTTP"));
        assert_eq!(env_of(c, "RINGCACHE_TLS_CERT_FILE"), None);

        let p = pod(&build(r#"{"tls":{"secretName":"demo-tls"}}"#, 3));
        let c = &p.containers[0];
        assert_eq!(
            env_of(c, "RINGCACHE_TLS_CERT_FILE").as_deref(),
            Some("/etc/ringcache/tls/tls.crt")
        );
        assert_eq!(
            env_of(c, "RINGCACHE_TLS_KEY_FILE").as_deref(),
            Some("/etc/ringcache/tls/tls.key")
        );
        assert_eq!(
            env_of(c, "RINGCACHE_TLS_CA_FILE").as_deref(),
            Some("/etc/ringcache/tls/ca.crt")
        );
        assert_eq!(
            env_of(c, "RINGCACHE_TLS_SERVER_NAME").as_deref(),
            Some("demo-peers.cache.svc")
        );
        for probe in [&c.readiness_probe, &c.liveness_probe] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
        }
        let vol = p
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "tls")
            .unwrap();
        let secret = vol.secret.unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("demo-tls"));
        let keys: Vec<String> = secret.items.unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["tls.crt", "tls.key", "ca.crt"]);
        assert!(
            c.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "tls" && m.mount_path == "/etc/ringcache/tls")
        );
    }

    #[test]
    fn shape_of_the_stateful_set() {
        let sts = build("{}", 4);
        assert_eq!(sts.metadata.name.as_deref(), Some("demo"));
        let spec = sts.spec.clone().unwrap();
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(spec.service_name.as_deref(), Some("demo-peers"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            spec.update_strategy
                .as_ref()
                .and_then(|u| u.type_.as_deref()),
            Some("OnDelete"),
            "rollouts are driven by the operator"
        );
        assert_eq!(spec.selector.match_labels.unwrap(), selector_labels("demo"));
        assert!(spec.volume_claim_templates.is_none());
        let template_labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(template_labels["app.kubernetes.io/instance"], "demo");
    }

    #[test]
    fn node_container_flags_come_from_the_spec() {
        let sts = build(
            r#"{"maxMemory":"1Gi","eviction":"lfu","maxValueSize":"2Mi","writeConsistency":"quorum","partitions":256}"#,
            3,
        );
        let c = &pod(&sts).containers[0];
        assert_eq!(env_of(c, "RINGCACHE_MAX_MEMORY").as_deref(), Some("1Gi"));
        assert_eq!(env_of(c, "RINGCACHE_EVICTION").as_deref(), Some("lfu"));
        assert_eq!(
            env_of(c, "RINGCACHE_MAX_VALUE_SIZE").as_deref(),
            Some("2Mi")
        );
        assert_eq!(
            env_of(c, "RINGCACHE_WRITE_CONSISTENCY").as_deref(),
            Some("quorum")
        );
        assert_eq!(
            env_of(c, "RINGCACHE_RING_FILE").as_deref(),
            Some("/etc/ringcache/ring/ring.json")
        );
        assert_eq!(
            env_of(c, "RINGCACHE_INTERNAL_TOKEN_FILE").as_deref(),
            Some("/etc/ringcache/internal/token")
        );
        assert_eq!(env_of(c, "RINGCACHE_LOG_FORMAT").as_deref(), Some("json"));
        assert_eq!(env_of(c, "RINGCACHE_PARTITIONS").as_deref(), Some("256"));
        assert_eq!(env_of(c, "RINGCACHE_AUTH_TOKEN_FILE"), None);
        assert_eq!(env_of(c, "RINGCACHE_DATA_DIR"), None);
        let node_id = c
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "RINGCACHE_NODE_ID")
            .unwrap();
        let field = node_id.value_from.clone().unwrap().field_ref.unwrap();
        assert_eq!(field.field_path, "metadata.name");
        assert_eq!(
            c.image.as_deref(),
            Some(
                format!(
                    "ghcr.io/ringcache/ringcache-node:{}",
                    env!("CARGO_PKG_VERSION")
                )
                .as_str()
            )
        );
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.container_port, port.name.as_deref()),
            (7070, Some("http"))
        );
    }

    fn ports_of(c: &Container) -> Vec<(String, i32, String)> {
        c.ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone().unwrap(),
                    p.container_port,
                    p.protocol.clone().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn redis_listens_on_6379_by_default() {
        for spec in ["{}", r#"{"redis":{}}"#, r#"{"redis":{"enabled":true}}"#] {
            let c = &pod(&build(spec, 3)).containers[0];
            assert_eq!(
                env_of(c, "RINGCACHE_RESP_LISTEN").as_deref(),
                Some("0.0.0.0:6379"),
                "{spec}"
            );
            assert_eq!(
                ports_of(c),
                [
                    ("http".to_string(), 7070, "TCP".to_string()),
                    ("redis".to_string(), 6379, "TCP".to_string())
                ],
                "{spec}"
            );
        }
    }

    #[test]
    fn disabled_redis_sets_no_listener_and_no_port() {
        let c = &pod(&build(r#"{"redis":{"enabled":false}}"#, 3)).containers[0];
        assert!(
            !c.env
                .iter()
                .flatten()
                .any(|e| e.name == "RINGCACHE_RESP_LISTEN")
        );
        assert_eq!(ports_of(c), [("http".to_string(), 7070, "TCP".to_string())]);
        // Probes stay on http, whatever redis is set to.
        let probe = c
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.port, IntOrString::String("http".into()));
    }

    #[test]
    fn probes_and_graceful_termination() {
        let sts = build("{}", 3);
        let p = pod(&sts);
        let c = &p.containers[0];
        let ready = c.readiness_probe.clone().unwrap();
        assert_eq!(ready.http_get.unwrap().path.as_deref(), Some("/readyz"));
        assert_eq!(ready.period_seconds, Some(2));
        let live = c.liveness_probe.clone().unwrap();
        assert_eq!(live.http_get.unwrap().path.as_deref(), Some("/healthz"));
        let pre_stop = c.lifecycle.clone().unwrap().pre_stop.unwrap();
        assert_eq!(pre_stop.sleep.unwrap().seconds, PRE_STOP_SLEEP_SECONDS);
        assert!(p.termination_grace_period_seconds.unwrap() > PRE_STOP_SLEEP_SECONDS);
    }

    #[test]
    fn ring_and_token_are_mounted_read_only() {
        let sts = build("{}", 3);
        let p = pod(&sts);
        let mounts = p.containers[0].volume_mounts.clone().unwrap();
        let ring = mounts.iter().find(|m| m.name == "ring").unwrap();
        assert_eq!(ring.mount_path, "/etc/ringcache/ring");
        assert_eq!(ring.read_only, Some(true));
        let token = mounts.iter().find(|m| m.name == "internal-token").unwrap();
        assert_eq!(token.mount_path, "/etc/ringcache/internal");
        assert_eq!(token.read_only, Some(true));
        let volumes = p.volumes.unwrap();
        let ring_vol = volumes.iter().find(|v| v.name == "ring").unwrap();
        assert_eq!(ring_vol.config_map.as_ref().unwrap().name, "demo-ring");
        let token_vol = volumes.iter().find(|v| v.name == "internal-token").unwrap();
        assert_eq!(
            token_vol.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("demo-internal")
        );
    }

    #[test]
    fn security_context_is_locked_down() {
        let p = pod(&build("{}", 3));
        let psc = p.security_context.clone().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let sc = p.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
        assert_eq!(p.automount_service_account_token, Some(false));
    }

    #[test]
    fn default_affinity_is_soft_anti_affinity() {
        let p = pod(&build("{}", 3));
        let anti = p.affinity.unwrap().pod_anti_affinity.unwrap();
        assert!(
            anti.required_during_scheduling_ignored_during_execution
                .is_none()
        );
        let preferred = anti
            .preferred_during_scheduling_ignored_during_execution
            .unwrap();
        assert_eq!(
            preferred[0].pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
    }

    #[test]
    fn scheduling_knobs_pass_through() {
        let p = pod(&build(
            r#"{"nodeSelector":{"disk":"ssd"},"tolerations":[{"key":"cache","operator":"Exists"}],
                "affinity":{"nodeAffinity":{}}}"#,
            3,
        ));
        assert_eq!(p.node_selector.unwrap()["disk"], "ssd");
        assert_eq!(p.tolerations.unwrap()[0].key.as_deref(), Some("cache"));
        let affinity = p.affinity.unwrap();
        assert!(affinity.node_affinity.is_some());
        assert!(affinity.pod_anti_affinity.is_none());
    }

    #[test]
    fn persistence_adds_a_claim_template_and_data_dir() {
        let sts = build(
            r#"{"persistence":{"enabled":true,"size":"5Gi","storageClassName":"fast"}}"#,
            3,
        );
        let spec = sts.spec.clone().unwrap();
        let claims = spec.volume_claim_templates.unwrap();
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
        let claim_spec = claims[0].spec.clone().unwrap();
        assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            claim_spec.resources.unwrap().requests.unwrap()["storage"].0,
            "5Gi"
        );
        let c = &pod(&sts).containers[0];
        assert_eq!(env_of(c, "RINGCACHE_DATA_DIR").as_deref(), Some("/data"));
        assert!(
            c.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "data" && m.mount_path == "/data")
        );
    }

    #[test]
    fn immutable_fields_are_detected() {
        let plain = build("{}", 3);
        let persistent = build(r#"{"persistence":{"enabled":true,"size":"5Gi"}}"#, 3);
        let bigger = build(r#"{"persistence":{"enabled":true,"size":"10Gi"}}"#, 3);
        assert_eq!(
            immutable_conflict(&plain, &build("{}", 5)),
            None,
            "replicas may change"
        );
        assert!(immutable_conflict(&plain, &persistent).is_some());
        assert!(immutable_conflict(&persistent, &bigger).is_some());
        assert_eq!(immutable_conflict(&persistent, &persistent.clone()), None);
    }

    #[test]
    fn disabled_persistence_adds_nothing() {
        let sts = build(r#"{"persistence":{"enabled":false}}"#, 3);
        assert!(sts.spec.unwrap().volume_claim_templates.is_none());
    }

    #[test]
    fn auth_mounts_the_user_secret() {
        let sts = build(r#"{"auth":{"secretName":"my-auth"}}"#, 3);
        let p = pod(&sts);
        let c = &p.containers[0];
        assert_eq!(
            env_of(c, "RINGCACHE_AUTH_TOKEN_FILE").as_deref(),
            Some("/etc/ringcache/auth/token")
        );
        let vol = p
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "auth-token")
            .unwrap();
        assert_eq!(vol.secret.unwrap().secret_name.as_deref(), Some("my-auth"));
    }

    #[test]
    fn resources_and_image_override() {
        let p = pod(&build(
            r#"{"image":"example/node:dev","resources":{"limits":{"memory":"512Mi"}}}"#,
            3,
        ));
        let c = &p.containers[0];
        assert_eq!(c.image.as_deref(), Some("example/node:dev"));
        assert_eq!(
            c.resources.clone().unwrap().limits.unwrap()["memory"].0,
            "512Mi"
        );
    }
}
