//! TLS server settings from PEM files (rustls with the ring provider), shared by HTTPS and
//! RTMPS.

use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

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
    alpn: &[&'static [u8]],
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

/// A listener's certificate, read again on reload: each new connection takes the current one,
/// open connections keep theirs. Renewed certificates (certbot rewrites the files in place)
/// then need a SIGHUP, not a restart that would cut every stream.
#[derive(Clone)]
pub struct CertSlot {
    section: &'static str,
    cert: String,
    key: String,
    alpn: Vec<&'static [u8]>,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl CertSlot {
    pub fn load(
        section: &'static str,
        cert: &str,
        key: &str,
        alpn: &[&'static [u8]],
    ) -> Result<Self, TlsError> {
        let config = server_config(section, cert, key, alpn)?;
        Ok(Self {
            section,
            cert: cert.to_string(),
            key: key.to_string(),
            alpn: alpn.to_vec(),
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// The config section the files come from (`http` or `rtmp`).
    pub fn section(&self) -> &'static str {
        self.section
    }

    /// An acceptor with the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(|e| e.into_inner());
        TlsAcceptor::from(config.clone())
    }

    /// Reads the files again; on an error the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(self.section, &self.cert, &self.key, &self.alpn)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }
}
