//! The Prometheus exporter-toolkit web configuration file (`--web.config.file`):
//! TLS certificate and key, and HTTP basic auth with bcrypt hashes, for the
//! exporter and the webhook alike.
//!
//! Keys this implementation does not support (client certificates, cipher
//! lists, custom headers) are errors naming the file, line and field, never
//! silently ignored: a user who asked for client-certificate auth must not get
//! a server without it.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::Deserialize;

use crate::config::{ConfigError, ConfigErrors, V};

/// `tls_server_config:` of the web configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsServerConfig {
    pub cert_file: V<Option<PathBuf>>,
    pub key_file: V<Option<PathBuf>>,
    /// `TLS12` (default) or `TLS13`.
    pub min_version: V<Option<String>>,
}

/// The whole web configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WebConfig {
    pub tls_server_config: Option<TlsServerConfig>,
    /// User name → bcrypt hash.
    pub basic_auth_users: V<BTreeMap<String, String>>,
}

/// What the HTTP layer needs: an optional TLS acceptor and optional basic auth.
#[derive(Clone, Default)]
pub struct WebSecurity {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub basic_auth: Option<Arc<BasicAuth>>,
}

/// Basic-auth users, with a cache of verified credentials: bcrypt is slow on
/// purpose and Prometheus sends the same header at every scrape.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<String>>,
}

impl BasicAuth {
    /// Checks an `Authorization` header value.
    pub fn check(&self, header: Option<&str>) -> bool {
        let Some(b64) = header.and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(b64)
        {
            return true;
        }
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return false;
        };
        let Some((user, pass)) = text.split_once(':') else {
            return false;
        };
        let ok = self
            .users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(pass, hash).unwrap_or(false));
        if ok {
            let mut v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() > 1024 {
                v.clear();
            }
            v.insert(b64.to_string());
        }
        ok
    }
}

fn err(file: &Path, field: &str, message: String) -> ConfigErrors {
    ConfigErrors(vec![ConfigError {
        file: file.display().to_string(),
        line: 0,
        column: 0,
        field: field.into(),
        message,
    }])
}

/// Loads the file and builds the TLS acceptor and basic auth it describes;
/// `None` means plain HTTP without auth.
pub fn load(path: Option<&Path>) -> Result<WebSecurity, ConfigErrors> {
    let Some(path) = path else {
        return Ok(WebSecurity::default());
    };
    let cfg: WebConfig = crate::config::load_yaml(Some(path))?;
    let mut sec = WebSecurity::default();
    if let Some(tls) = &cfg.tls_server_config {
        let (Some(cert), Some(key)) = (tls.cert_file.as_ref(), tls.key_file.as_ref()) else {
            return Err(err(
                path,
                "tls_server_config",
                "needs both cert_file and key_file".into(),
            ));
        };
        let cert = resolve(path, cert);
        let key = resolve(path, key);
        sec.tls = Some(
            acceptor(&cert, &key, tls.min_version.as_deref())
                .map_err(|e| err(path, "tls_server_config", e.to_string()))?,
        );
    }
    if !cfg.basic_auth_users.is_empty() {
        for (user, hash) in cfg.basic_auth_users.iter() {
            if !hash.starts_with("$2") || hash.len() != 60 {
                return Err(err(
                    path,
                    &format!("basic_auth_users.{user}"),
                    "is not a bcrypt hash".into(),
                ));
            }
        }
        sec.basic_auth = Some(Arc::new(BasicAuth {
            users: cfg.basic_auth_users.0.clone(),
            verified: Mutex::default(),
        }));
    }
    Ok(sec)
}

/// Paths in the file are relative to the file, as in exporter-toolkit.
fn resolve(file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// Why a certificate and key make no TLS server (one line, cause included:
/// it becomes a configuration error's message).
#[derive(Debug, thiserror::Error)]
pub enum AcceptorError {
    #[error("cannot read certificate {}: {error}", path.display())]
    Cert {
        path: PathBuf,
        error: rustls_pki_types::pem::Error,
    },
    #[error("no certificate in {}", .0.display())]
    NoCert(PathBuf),
    #[error("cannot read key {}: {error}", path.display())]
    Key {
        path: PathBuf,
        error: rustls_pki_types::pem::Error,
    },
    #[error("min_version {0:?} is not supported (TLS12 or TLS13)")]
    MinVersion(String),
    #[error("{0}")]
    Versions(rustls::Error),
    #[error("certificate and key do not make a TLS identity: {0}")]
    Identity(rustls::Error),
}

fn acceptor(
    cert: &Path,
    key: &Path,
    min: Option<&str>,
) -> Result<tokio_rustls::TlsAcceptor, AcceptorError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|error| AcceptorError::Cert {
            path: cert.to_path_buf(),
            error,
        })?;
    if certs.is_empty() {
        return Err(AcceptorError::NoCert(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| AcceptorError::Key {
        path: key.to_path_buf(),
        error,
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        None | Some("TLS12") => &[&rustls::version::TLS12, &rustls::version::TLS13],
        Some("TLS13") => &[&rustls::version::TLS13],
        Some(other) => return Err(AcceptorError::MinVersion(other.to_string())),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(AcceptorError::Versions)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(AcceptorError::Identity)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_keys_are_errors_with_their_line() {
        let dir = std::env::temp_dir().join(format!("xentinel-webcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("web.yml");
        std::fs::write(&f, "tls_server_config:\n  cert_file: c.pem\n  client_auth_type: RequireAndVerifyClientCert\n").unwrap();
        let e = load(Some(&f)).err().unwrap().0;
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].line, e[0].field.as_str()),
            (3, "tls_server_config.client_auth_type")
        );
        std::fs::write(&f, "basic_auth_users:\n  alice: plaintext\n").unwrap();
        let e = load(Some(&f)).err().unwrap().0;
        assert!(
            e[0].to_string()
                .contains("basic_auth_users.alice: is not a bcrypt hash"),
            "{}",
            e[0]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn basic_auth_checks_bcrypt_and_caches() {
        let hash = bcrypt::hash_with_salt("s3cret", 4, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let a = BasicAuth {
            users: BTreeMap::from([("alice".to_string(), hash)]),
            verified: Mutex::default(),
        };
        let hdr = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(a.check(Some(&hdr("alice", "s3cret"))));
        assert!(a.check(Some(&hdr("alice", "s3cret"))));
        assert!(!a.check(Some(&hdr("alice", "wrong"))));
        assert!(!a.check(Some(&hdr("bob", "s3cret"))));
        assert!(!a.check(Some("Bearer x")));
        assert!(!a.check(None));
        assert!(!a.check(Some("Basic !!!")));
    }
}
