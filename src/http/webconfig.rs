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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::serve::ServerLimits;
use crate::config::{Bounded, ConfigError, ConfigErrors, Dur, V};

/// `tls_server_config:` of the web configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsServerConfig {
    pub cert_file: V<Option<PathBuf>>,
    pub key_file: V<Option<PathBuf>>,
    /// `TLS12` (default) or `TLS13`.
    pub min_version: V<Option<String>>,
}

/// `http_server_config:`: exporter-toolkit's section, with xentinel's
/// connection bounds (the names of Go's `http.Server` fields); any unset
/// key keeps [`ServerLimits::default`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct HttpServerConfig {
    pub read_header_timeout: V<Option<Dur>>,
    pub read_timeout: V<Option<Dur>>,
    pub idle_timeout: V<Option<Dur>>,
    pub max_connections: V<Option<Bounded<1, 65_536>>>,
    pub max_header_bytes: V<Option<Bounded<8192, 1_048_576>>>,
}

impl HttpServerConfig {
    fn limits(&self) -> ServerLimits {
        let d = ServerLimits::default();
        let dur = |v: &V<Option<Dur>>, dflt| v.0.map(|x| x.0).unwrap_or(dflt);
        ServerLimits {
            read_header_timeout: dur(&self.read_header_timeout, d.read_header_timeout),
            read_timeout: dur(&self.read_timeout, d.read_timeout),
            idle_timeout: dur(&self.idle_timeout, d.idle_timeout),
            max_connections: self
                .max_connections
                .0
                .map_or(d.max_connections, |b| b.0 as usize),
            max_header_bytes: self
                .max_header_bytes
                .0
                .map_or(d.max_header_bytes, |b| b.0 as usize),
        }
    }
}

/// The whole web configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WebConfig {
    pub tls_server_config: Option<TlsServerConfig>,
    pub http_server_config: Option<HttpServerConfig>,
    /// User name → bcrypt hash.
    pub basic_auth_users: V<BTreeMap<String, String>>,
}

/// What the HTTP layer needs: an optional TLS acceptor, optional basic
/// auth, and the bounds of every connection.
#[derive(Clone, Default)]
pub struct WebSecurity {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub basic_auth: Option<Arc<BasicAuth>>,
    pub limits: ServerLimits,
}

/// Verified credentials remembered (only a correct password gets in, so
/// wrong-password floods cannot evict them).
const MAX_VERIFIED: usize = 256;
/// Refused credentials remembered (emptied when full).
const MAX_REFUSED: usize = 4096;

/// Basic-auth users, checked as exporter-toolkit does: bcrypt is slow on
/// purpose, so results are cached by a SHA-256 of (user, password, hash)
/// and at most one bcrypt check runs at a time, on a blocking thread, never
/// on the runtime's workers. A client whose credentials were verified once
/// is answered from the cache however many wrong passwords others send.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// Checked for an unknown user, so its answer takes a bcrypt check too.
    dummy: String,
    verified: Mutex<HashSet<[u8; 32]>>,
    refused: Mutex<HashSet<[u8; 32]>>,
    work: tokio::sync::Semaphore,
    bcrypt_runs: AtomicU64,
}

impl BasicAuth {
    /// Users (name → bcrypt hash); `dummy` is a bcrypt hash checked for
    /// unknown users.
    pub fn new(users: BTreeMap<String, String>, dummy: String) -> BasicAuth {
        BasicAuth {
            users,
            dummy,
            verified: Mutex::default(),
            refused: Mutex::default(),
            work: tokio::sync::Semaphore::new(1),
            bcrypt_runs: AtomicU64::new(0),
        }
    }

    /// bcrypt checks run so far (the rest came from the cache).
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    /// Checks an `Authorization` header value.
    pub async fn check(self: &Arc<Self>, header: Option<&str>) -> bool {
        let Some(b64) = header.and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(raw) else {
            return false;
        };
        let Some((user, pass)) = text.split_once(':') else {
            return false;
        };
        let (known, hash) = match self.users.get(user) {
            Some(h) => (true, h.clone()),
            None => (false, self.dummy.clone()),
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(pass.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        let lock = |m: &Mutex<HashSet<[u8; 32]>>| {
            let g = m.lock().unwrap_or_else(|e| e.into_inner());
            g.contains(&key)
        };
        if lock(&self.verified) {
            return known;
        }
        if lock(&self.refused) {
            return false;
        }
        // One bcrypt at a time (FIFO), off the runtime's workers.
        let Ok(_permit) = self.work.acquire().await else {
            return false;
        };
        let me = self.clone();
        let pass = pass.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            me.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
            bcrypt::verify(pass, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false)
            && known;
        let (set, max) = if ok {
            (&self.verified, MAX_VERIFIED)
        } else {
            (&self.refused, MAX_REFUSED)
        };
        let mut v = set.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() >= max {
            v.clear();
        }
        v.insert(key);
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
    let mut sec = WebSecurity {
        limits: cfg
            .http_server_config
            .as_ref()
            .map(HttpServerConfig::limits)
            .unwrap_or_default(),
        ..WebSecurity::default()
    };
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
        // A hash of the first user's cost, so an unknown user costs as much.
        let cost = cfg
            .basic_auth_users
            .values()
            .next()
            .and_then(|h| h.get(4..6)?.parse().ok())
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy = bcrypt::hash("xentinel: no such user", cost)
            .map_err(|e| err(path, "basic_auth_users", e.to_string()))?;
        sec.basic_auth = Some(Arc::new(BasicAuth::new(
            cfg.basic_auth_users.0.clone(),
            dummy,
        )));
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

    #[tokio::test]
    async fn basic_auth_checks_bcrypt_and_caches() {
        let hash = bcrypt::hash_with_salt("s3cret", 4, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let dummy = bcrypt::hash("x", 4).unwrap();
        let a = Arc::new(BasicAuth::new(
            BTreeMap::from([("alice".to_string(), hash)]),
            dummy,
        ));
        let hdr = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(a.check(Some(&hdr("alice", "s3cret"))).await);
        assert_eq!(a.bcrypt_runs(), 1);
        // The cache answers: no second bcrypt check, for a success or a failure.
        for _ in 0..5 {
            assert!(a.check(Some(&hdr("alice", "s3cret"))).await);
        }
        assert_eq!(a.bcrypt_runs(), 1);
        assert!(!a.check(Some(&hdr("alice", "wrong"))).await);
        assert!(!a.check(Some(&hdr("alice", "wrong"))).await);
        assert_eq!(a.bcrypt_runs(), 2);
        // An unknown user costs a check too (against the dummy hash), and fails
        // even with the dummy's password.
        assert!(!a.check(Some(&hdr("bob", "s3cret"))).await);
        assert!(!a.check(Some(&hdr("bob", "x"))).await);
        assert_eq!(a.bcrypt_runs(), 4);
        assert!(!a.check(Some("Bearer x")).await);
        assert!(!a.check(None).await);
        assert!(!a.check(Some("Basic !!!")).await);
        // Refused credentials filling their cache never evict a verified one.
        for i in 0..(MAX_REFUSED + 10) {
            let k: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
            let mut r = a.refused.lock().unwrap();
            if r.len() >= MAX_REFUSED {
                r.clear();
            }
            r.insert(k);
        }
        let runs = a.bcrypt_runs();
        assert!(a.check(Some(&hdr("alice", "s3cret"))).await);
        assert_eq!(a.bcrypt_runs(), runs);
    }

    #[test]
    fn server_limits_come_from_http_server_config() {
        let dir = std::env::temp_dir().join(format!("xentinel-webcfg-l-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("web.yml");
        std::fs::write(
            &f,
            "http_server_config:\n  read_header_timeout: 2s\n  idle_timeout: 500ms\n  max_connections: 7\n",
        )
        .unwrap();
        let l = load(Some(&f)).ok().unwrap().limits;
        let d = ServerLimits::default();
        assert_eq!(l.read_header_timeout, std::time::Duration::from_secs(2));
        assert_eq!(l.idle_timeout, std::time::Duration::from_millis(500));
        assert_eq!(l.max_connections, 7);
        assert_eq!(
            (l.read_timeout, l.max_header_bytes),
            (d.read_timeout, d.max_header_bytes)
        );
        std::fs::write(&f, "http_server_config:\n  max_header_bytes: 10\n").unwrap();
        let e = load(Some(&f)).err().unwrap().0;
        assert!(e[0].to_string().contains("out of range"), "{}", e[0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
