//! TLS client configuration for reaching nodes (rustls with the ring provider): trust exactly
//! the cluster's CA, and optionally verify every node's certificate against one fixed name.
//!
//! Nodes are dialled by pod IP, but their certificates name DNS names (pod IPs are not known when
//! a certificate is issued): the name verified is then `NAME-peers.NAMESPACE.svc`, which the
//! cluster's certificate carries, whatever address was dialled.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA certificates: {0}")]
    Pem(String),
    #[error("no CA certificate in the given PEM")]
    NoCertificate,
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}

/// The ring provider (the workspace's only one).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider (reqwest is built without one of its own,
/// and a client built before any provider is installed would panic). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Every certificate in `pem`.
pub fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// A client configuration trusting only the CA certificates in `ca_pem` (no client
/// certificate). With `server_name`, a server's certificate is verified against that name
/// whatever address was dialled.
pub fn client_config(ca_pem: &[u8], server_name: Option<&str>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(ca_pem)? {
        roots.add(c)?;
    }
    let roots = Arc::new(roots);
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let Some(name) = server_name else {
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    };
    let name =
        ServerName::try_from(name.to_string()).map_err(|_| TlsError::ServerName(name.into()))?;
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(FixedName { inner, name }))
        .with_no_client_auth())
}

/// Full WebPKI verification (chain to the CA, validity, signatures) against a fixed name.
#[derive(Debug)]
struct FixedName {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_empty_pem_are_errors_not_panics() {
        assert!(matches!(
            client_config(b"", None),
            Err(TlsError::NoCertificate)
        ));
        assert!(client_config(b"-----BEGIN CERTIFICATE-----\nnot base64\n", None).is_err());
    }
}
