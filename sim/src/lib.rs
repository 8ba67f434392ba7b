//! The cluster simulation (DESIGN.md "Testing levels" 4): the operator's real reconcile over an
//! in-memory Kubernetes API ([`apiserver`]), with StatefulSet-controller ([`statefulset`]) and
//! kubelet ([`kubelet`]) stand-ins that run real `ringcache-node` processes on 127.0.0.0/8,
//! the operator run as its controller runs it ([`operator`]), client load with the shared
//! acknowledged-write checker ([`load`]), all put together in [`cluster::SimCluster`].

pub mod apiserver;
pub mod audit;
pub mod cluster;
pub mod kubelet;
pub mod load;
pub mod operator;
pub mod statefulset;
pub mod typed;

/// How long an idle pooled connection is kept: below the nodes' 10 s idle keep-alive, so a
/// connection is never reused just as the node closes it.
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(5);

/// A reqwest client for loopback traffic (no proxy from the environment) with `timeout`.
pub fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    // reqwest is built without a TLS provider of its own (ring is the workspace's).
    ringcache_common::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_idle_timeout(POOL_IDLE)
        .no_proxy()
        .build()
        .unwrap_or_default()
}

/// An HTTPS client trusting only `ca_pem` and verifying every node's certificate against
/// `server_name`, as a client reaching the cluster through its Service does.
pub fn https_client(
    timeout: std::time::Duration,
    ca_pem: &[u8],
    server_name: &str,
) -> anyhow::Result<reqwest::Client> {
    ringcache_common::tls::install_crypto_provider();
    let config = ringcache_common::tls::client_config(ca_pem, Some(server_name))?;
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(timeout)
        .pool_idle_timeout(POOL_IDLE)
        .no_proxy()
        .build()?)
}

/// What the kubelet probes with: HTTP, or HTTPS without verifying the certificate (the kubelet
/// verifies none for `scheme: HTTPS` probes).
pub fn probe_client(timeout: std::time::Duration) -> reqwest::Client {
    ringcache_common::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_idle_timeout(POOL_IDLE)
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap_or_default()
}
