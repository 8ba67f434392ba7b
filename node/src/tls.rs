//! TLS with rustls (ring provider): the server side of `--tls-cert-file`/`--tls-key-file`,
//! reloaded without a restart when the files change (cert-manager rotates them in place), and the
//! client side of `--tls-ca-file` for node-to-node calls.
//!
//! Peers are reached by pod IP, but certificates name DNS names (pod IPs are not known when a
//! certificate is issued), so peers' certificates are verified against `--tls-server-name` (the
//! operator sets `NAME-peers.NAMESPACE.svc`, which the cluster's certificate must carry) rather
//! than the address dialled.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How often the certificate files are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

pub use ringcache_common::tls::install_crypto_provider;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    ringcache_common::tls::provider()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = ringcache_common::tls::certs(&read(cert)?).map_err(|e| TlsError::File {
        path: cert.to_path_buf(),
        message: e.to_string(),
    })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
        path: key.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The serving side: the current configuration, replaced when the files change.
#[derive(Clone)]
pub struct TlsServer {
    current: Arc<RwLock<Arc<ServerConfig>>>,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsServer {
    pub fn load(cert: &Path, key: &Path) -> Result<TlsServer, TlsError> {
        Ok(TlsServer {
            current: Arc::new(RwLock::new(server_config(cert, key)?)),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// An acceptor with the configuration in effect now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().clone())
    }

    /// Watches the files (modification time and size) and swaps the configuration in when they
    /// change and load; a pair that does not load (half-written by a rotation) is retried on the
    /// next tick and the previous configuration stays in effect.
    pub fn spawn_reloader(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let stamp = |p: &Path| {
                std::fs::metadata(p)
                    .ok()
                    .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
            };
            let mut seen = (stamp(&me.cert), stamp(&me.key));
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            loop {
                tick.tick().await;
                let now = (stamp(&me.cert), stamp(&me.key));
                if now == seen {
                    continue;
                }
                match server_config(&me.cert, &me.key) {
                    Ok(cfg) => {
                        *me.current.write() = cfg;
                        seen = now;
                        tracing::info!(cert = %me.cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => tracing::warn!(error = %e, "TLS certificate not reloaded yet"),
                }
            }
        })
    }
}

/// The calling side for node-to-node connections.
#[derive(Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    /// The name peers' certificates are checked against (None: the address dialled).
    pub server_name: Option<ServerName<'static>>,
}

impl TlsClient {
    pub fn new(ca: &Path, server_name: Option<&str>) -> Result<TlsClient, TlsError> {
        let config =
            ringcache_common::tls::client_config(&read(ca)?, server_name).map_err(|e| {
                TlsError::File {
                    path: ca.to_path_buf(),
                    message: e.to_string(),
                }
            })?;
        let server_name = server_name
            .map(|n| {
                ServerName::try_from(n.to_string()).map_err(|_| TlsError::ServerName(n.into()))
            })
            .transpose()?;
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    pub fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.config.clone())
    }

    /// The name to verify for a peer at `addr` (`ip:port`).
    pub fn name_for(&self, addr: &str) -> Result<ServerName<'static>, TlsError> {
        if let Some(n) = &self.server_name {
            return Ok(n.clone());
        }
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName(host.into()))
    }
}
