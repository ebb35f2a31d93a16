//! TLS for the client: which root certificates to trust (the system's bundle
//! and/or a CA file), as a rustls client configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Where the system keeps its CA bundle, in the order OpenSSL distributions
/// and Go look; `SSL_CERT_FILE` comes first when set.
const SYSTEM_BUNDLES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Which servers to trust over `https://`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust the system's CA bundle (`SSL_CERT_FILE`, else the first of the
    /// usual bundle files that exists).
    pub system_roots: bool,
    /// Also (or only) trust the certificates of this PEM file.
    pub ca_file: Option<PathBuf>,
}

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {}", path.display())]
    CaFile {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the CA file {} holds no usable certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error("no system CA bundle found (set SSL_CERT_FILE or install ca-certificates)")]
    NoSystemRoots,
    #[error("TLS trusts nothing: use the system roots, a CA file, or both")]
    NothingTrusted,
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsOptions {
    /// The rustls configuration these options describe (HTTP/1.1 over ALPN).
    pub fn connector(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        if self.system_roots {
            let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
            let bundle = env
                .into_iter()
                .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
                .find(|p| p.is_file())
                .ok_or(TlsError::NoSystemRoots)?;
            add_pem(&mut roots, &bundle)?;
        }
        if let Some(ca) = &self.ca_file {
            add_pem(&mut roots, ca)?;
        }
        if roots.is_empty() {
            return Err(TlsError::NothingTrusted);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// Adds every certificate of a PEM file; a file without one is an error.
fn add_pem(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|source| TlsError::CaFile {
            path: path.to_path_buf(),
            source,
        })?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(())
}
