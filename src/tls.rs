//! TLS server settings from PEM files (rustls with the ring provider), shared by HTTPS and
//! RTMPS.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

/// A certificate or key that cannot be used; names the config key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {section}.tls_cert {path}: {reason}")]
    Cert {
        section: &'static str,
        path: String,
        reason: String,
    },
    #[error("cannot read {section}.tls_key {path}: {reason}")]
    Key {
        section: &'static str,
        path: String,
        reason: String,
    },
    #[error("{section}.tls_cert and {section}.tls_key do not make a usable pair: {reason}")]
    Pair {
        section: &'static str,
        reason: String,
    },
}

/// Server settings for the certificate chain in `cert` and the private key in `key` (PEM
/// files named by `{section}.tls_cert` / `tls_key`), offering `alpn` protocols.
pub fn server_config(
    section: &'static str,
    cert: &str,
    key: &str,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            section,
            path: cert.to_string(),
            reason: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        section,
        path: key.to_string(),
        reason: e.to_string(),
    })?;
    let pair = |e: tokio_rustls::rustls::Error| TlsError::Pair {
        section,
        reason: e.to_string(),
    };
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(pair)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
