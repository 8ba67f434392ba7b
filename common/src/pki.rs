//! Certificates for tests and local clusters (feature `pki`): a CA, and node certificates issued
//! by it, in the shape of a `kubernetes.io/tls` Secret (`ca.crt`, `tls.crt`, `tls.key`).
//!
//! Not for production: cert-manager (or the cluster's PKI) issues real certificates; this exists
//! so every test that needs TLS gets a fresh CA in milliseconds without shelling out to openssl.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

#[derive(Debug, thiserror::Error)]
#[error("certificate generation: {0}")]
pub struct PkiError(#[from] rcgen::Error);

/// A self-signed certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(common_name: &str) -> Result<Ca, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Ca { issuer })
    }

    /// The CA certificate (what `ca.crt` holds).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses, as subject alternative
    /// names) with `common_name`.
    pub fn issue(&self, common_name: &str, names: &[String]) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_verify_against_their_ca_only() {
        let ca = Ca::new("test CA").unwrap();
        let other = Ca::new("other CA").unwrap();
        let leaf = ca.issue("node", &["cache.ns.svc".into()]).unwrap();
        let chain = crate::tls::certs(leaf.cert_pem.as_bytes()).unwrap();
        let verify = |ca_pem: &str| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(crate::tls::certs(ca_pem.as_bytes()).unwrap());
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.into(),
                crate::tls::provider(),
            )
            .build()
            .unwrap();
            let name = rustls::pki_types::ServerName::try_from("cache.ns.svc").unwrap();
            v.verify_server_cert(
                &chain[0],
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::now(),
            )
        };
        use rustls::client::danger::ServerCertVerifier;
        assert!(verify(&ca.pem()).is_ok());
        assert!(verify(&other.pem()).is_err());
    }
}
