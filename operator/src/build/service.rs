use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Owner, PORT, PORT_NAME, selector_labels};

fn http_port() -> ServicePort {
    ServicePort {
        name: Some(PORT_NAME.into()),
        port: PORT,
        target_port: Some(IntOrString::String(PORT_NAME.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
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

/// `NAME`: the client entry point; only ready nodes receive traffic.
pub fn client_service(owner: &Owner) -> Service {
    Service {
        metadata: owner.meta(owner.names.client_service()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(&owner.names.cluster)),
            ports: Some(vec![http_port()]),
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

    #[test]
    fn client_service_serves_port_http() {
        let owner = Owner::of(&cluster("demo", "{}")).unwrap();
        let svc = client_service(&owner);
        assert_eq!(svc.metadata.name.as_deref(), Some("demo"));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.publish_not_ready_addresses, None);
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 7070);
        assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
    }
}
