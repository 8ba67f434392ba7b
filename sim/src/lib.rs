//! The cluster simulation (DESIGN.md "Testing levels" 4): the operator's real reconcile over an
//! in-memory Kubernetes API ([`apiserver`]), with StatefulSet-controller ([`statefulset`]) and
//! kubelet ([`kubelet`]) stand-ins that run real `ringcache-node` processes on 127.0.0.0/8,
//! the operator run as its controller runs it ([`operator`]), client load with the shared
//! acknowledged-write checker ([`load`]), all put together in [`cluster::SimCluster`].

pub mod apiserver;
pub mod cluster;
pub mod kubelet;
pub mod load;
pub mod operator;
pub mod statefulset;

/// A reqwest client for loopback traffic (no proxy from the environment) with `timeout`.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    // reqwest is built without a TLS provider of its own (ring is the workspace's).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .unwrap_or_default()
}
