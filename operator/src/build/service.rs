use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Owner, PORT, PORT_NAME, REDIS_PORT, REDIS_PORT_NAME, selector_labels};
use crate::types::CacheCluster;

fn tcp_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

fn http_port() -> ServicePort {
    tcp_port(PORT_NAME, PORT)
}

/// `NAME-peers`: headless, so every pod has a stable DNS name, including pods that are not ready
/// yet (a recovering node must be reachable by its peers before it turns ready).
pub fn peers_service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(owner.names.peers_service()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&owner.names.cluster)),
            ports: Some(vec![http_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `NAME`: the client entry point; only ready nodes receive traffic. Port `redis` only while
/// the nodes listen on it: server-side apply drops it again when `spec.redis` is switched off.
pub fn client_service(owner: &Owner, cc: &CacheCluster) -> Service {
    let mut ports = vec![http_port()];
    if cc.spec.redis_enabled() {
        ports.push(tcp_port(REDIS_PORT_NAME, REDIS_PORT));
    }
    Service {
        metadata: owner.meta(owner.names.client_service()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(&owner.names.cluster)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::test_support::cluster;

    #[test]
    fn peers_service_is_headless_and_publishes_not_ready() {
        let owner = Owner::of(&cluster("demo", "{}")).unwrap();
        let svc = peers_service(&owner);
        assert_eq!(svc.metadata.name.as_deref(), Some("demo-peers"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector.unwrap()["app.kubernetes.io/instance"], "demo");
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.port, port.name.as_deref()), (7070, Some("http")));
    }

    fn ports_of(svc: Service) -> Vec<(String, i32, IntOrString, String)> {
        svc.spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    p.name.unwrap(),
                    p.port,
                    p.target_port.unwrap(),
                    p.protocol.unwrap(),
                )
            })
            .collect()
    }

    fn port(name: &str, port: i32) -> (String, i32, IntOrString, String) {
        (
            name.into(),
            port,
            IntOrString::String(name.into()),
            "TCP".into(),
        )
    }

    #[test]
    fn client_service_serves_http_and_redis_by_default() {
        let cc = cluster("demo", "{}");
        let owner = Owner::of(&cc).unwrap();
        let svc = client_service(&owner, &cc);
        assert_eq!(svc.metadata.name.as_deref(), Some("demo"));
        let spec = svc.spec.clone().unwrap();
        assert_eq!(spec.publish_not_ready_addresses, None);
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(ports_of(svc), [port("http", 7070), port("redis", 6379)]);
        let explicit = cluster("demo", r#"{"redis":{"enabled":true}}"#);
        assert_eq!(
            ports_of(client_service(&owner, &explicit)),
            [port("http", 7070), port("redis", 6379)]
        );
    }

    #[test]
    fn client_service_without_redis_serves_http_only() {
        let cc = cluster("demo", r#"{"redis":{"enabled":false}}"#);
        let owner = Owner::of(&cc).unwrap();
        assert_eq!(ports_of(client_service(&owner, &cc)), [port("http", 7070)]);
    }

    #[test]
    fn peers_service_has_no_redis_port() {
        let owner = Owner::of(&cluster("demo", "{}")).unwrap();
        assert_eq!(ports_of(peers_service(&owner)), [port("http", 7070)]);
    }
}
