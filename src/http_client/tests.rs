//! The client against local servers: plain HTTP (chunked bodies, limits,
//! timeouts, credentials) and HTTPS with certificates made here by
//! `openssl` (a CA of our own, a server certificate for 127.0.0.1).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

/// Reads a request head from `s`, answers `response`, returns the head.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, response: &[u8]) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = s.write_all(response).await;
    let _ = s.shutdown().await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// A plain server answering every connection with `response`; the heads it
/// read come out of the receiver.
async fn server(response: &'static [u8]) -> (Endpoint, mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/prefix/", l.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(answer(s, response).await);
            });
        }
    });
    (Endpoint::parse(&url, "test").unwrap(), rx)
}

const T: Duration = Duration::from_secs(10);

#[test]
fn urls_parse_with_either_scheme() {
    let e = Endpoint::parse("https://[::1]/x/", "test").unwrap();
    assert_eq!(
        (e.scheme(), e.host(), e.port(), e.prefix(), e.path()),
        (Scheme::Https, "::1", 443, "/x", "/x")
    );
    assert_eq!(e.authority(), "[::1]:443");
    let e = Endpoint::parse("http://h:81", "test").unwrap();
    assert_eq!((e.port(), e.path()), (81, "/"));
    assert!(matches!(
        Endpoint::parse("ftp://h", "test"),
        Err(UrlError::Scheme { .. })
    ));
    assert!(matches!(
        Endpoint::parse("http://h:x/", "test"),
        Err(UrlError::Port { .. })
    ));
    assert!(matches!(
        Endpoint::parse("http:///", "test"),
        Err(UrlError::NoHost { .. })
    ));
}

#[tokio::test]
async fn plain_get_decodes_chunks_and_sends_credentials() {
    let (e, mut heads) = server(
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    )
    .await;
    let basic = Client::new(&ClientOptions {
        tls: None,
        auth: Some(Auth::Basic {
            username: "alice".into(),
            password: "s3cret".into(),
        }),
    })
    .unwrap();
    let r = basic
        .get(&e, "/prefix/q?x=1", "text/plain", T, 1024)
        .await
        .unwrap();
    assert_eq!((r.status, &r.body[..]), (404, &b"abcdefg"[..]));
    let head = heads.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /prefix/q?x=1 http/1.1\r\n"), "{head}");
    assert!(
        head.contains("authorization: basic ywxpy2u6cznjcmv0\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("host: 127.0.0.1:{}\r\n", e.port())),
        "{head}"
    );
    assert!(head.contains("accept: text/plain\r\n"), "{head}");
    let bearer = Client::new(&ClientOptions {
        tls: None,
        auth: Some(Auth::Bearer("tok".into())),
    })
    .unwrap();
    assert_eq!(bearer.get_status(&e, "/", T).await.unwrap(), 404);
    let head = heads.recv().await.unwrap();
    assert!(head.contains("authorization: Bearer tok\r\n"), "{head}");
    // The secret never shows in a debug print.
    assert!(!format!("{:?}", Auth::Bearer("tok".into())).contains("tok"));
}

#[tokio::test]
async fn bodies_are_bounded_and_silence_times_out() {
    let (e, _) = server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789").await;
    let c = Client::default();
    assert_eq!(c.get(&e, "/", "*/*", T, 100).await.unwrap().body.len(), 100);
    assert!(matches!(
        c.get(&e, "/", "*/*", T, 10).await,
        Err(RequestError::TooLarge { limit: 10, .. })
    ));
    // Accepts, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let e = Endpoint::parse(&url, "test").unwrap();
    let t0 = std::time::Instant::now();
    let err = c
        .get(&e, "/", "*/*", Duration::from_millis(200), 10)
        .await
        .unwrap_err();
    assert!(matches!(err, RequestError::Timeout { .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(
        err.to_string().starts_with("no answer from http://"),
        "{err}"
    );
    // Nobody listens: bind a port, learn it, close it.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = Endpoint::parse(&format!("http://{gone}/"), "test").unwrap();
    let err = c.get(&e, "/", "*/*", T, 10).await.unwrap_err();
    assert!(
        err.to_string().starts_with("cannot connect to http://"),
        "{err}"
    );
}

#[tokio::test]
async fn https_needs_tls_settings() {
    let e = Endpoint::parse("https://127.0.0.1:1/", "prometheus").unwrap();
    let c = Client::default();
    assert!(!c.speaks_tls());
    assert_eq!(
        c.check(&e, "prometheus").unwrap_err().to_string(),
        "prometheus URL \"https://127.0.0.1:1/\" is https:// but no TLS is configured for it"
    );
    assert!(matches!(
        c.get(&e, "/", "*/*", T, 10).await,
        Err(RequestError::NoTls { .. })
    ));
}

/// A CA, and a certificate for 127.0.0.1 and localhost it signed, in `dir`.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): apt-get install openssl"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_certs(dir: &Path, name: &str) -> Certs {
    std::fs::create_dir_all(dir).unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let ca = format!("{name}-ca.pem");
    let ca_key = format!("{name}-ca.key");
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
    args.extend(ec);
    let subj = format!("/CN=xentinel test CA {name}");
    args.extend([
        "-subj",
        &subj,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(dir, &args);
    let mut args = vec!["req", "-nodes"];
    args.extend(ec);
    args.extend([
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    Certs {
        ca: dir.join(ca),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

/// A TLS server with `certs`, answering every connection with `response`.
async fn tls_server(
    certs: &Certs,
    response: &'static [u8],
) -> (String, mpsc::UnboundedReceiver<String>) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (tx, acceptor) = (tx.clone(), acceptor.clone());
            tokio::spawn(async move {
                match acceptor.accept(s).await {
                    Ok(tls) => {
                        let _ = tx.send(answer(tls, response).await);
                    }
                    Err(e) => {
                        let _ = tx.send(format!("handshake failed: {e}"));
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn https_with_our_ca_and_a_bearer_token() {
    let dir = std::env::temp_dir().join(format!("xentinel-client-tls-{}", std::process::id()));
    let ours = make_certs(&dir.join("ours"), "ours");
    let other = make_certs(&dir.join("other"), "other");
    let (addr, mut heads) = tls_server(
        &ours,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello",
    )
    .await;
    let opts = |ca: &Path, system_roots: bool| ClientOptions {
        tls: Some(TlsOptions {
            system_roots,
            ca_file: Some(ca.to_path_buf()),
        }),
        auth: Some(Auth::Bearer("t0ken".into())),
    };
    // Trusting our CA: the answer, and the token went over TLS.
    for url in [format!("https://{addr}/"), {
        let port = addr.rsplit_once(':').unwrap().1;
        format!("https://localhost:{port}/")
    }] {
        let e = Endpoint::parse(&url, "test").unwrap();
        let c = Client::new(&opts(&ours.ca, false)).unwrap();
        assert!(c.speaks_tls());
        c.check(&e, "test").unwrap();
        let r = c.get(&e, "/api", "application/json", T, 1024).await;
        let r = r.unwrap_or_else(|err| panic!("{url}: {err}"));
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        let head = heads.recv().await.unwrap();
        assert!(head.contains("authorization: Bearer t0ken\r\n"), "{head}");
    }
    // The system's roots beside ours (fails loudly without a CA bundle).
    let e = Endpoint::parse(&format!("https://{addr}/"), "test").unwrap();
    let c = Client::new(&opts(&ours.ca, true)).unwrap();
    assert_eq!(c.get_status(&e, "/", T).await.unwrap(), 200);
    let _ = heads.recv().await;
    // Another CA's server certificate is refused: nothing is sent.
    let c = Client::new(&opts(&other.ca, false)).unwrap();
    let err = c.get_status(&e, "/", T).await.unwrap_err();
    assert!(matches!(err, RequestError::Tls { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("unknown"), "{err}");
    assert!(heads.recv().await.unwrap().starts_with("handshake failed"));
    // Only the system's roots: our private CA is unknown to them.
    let c = Client::new(&ClientOptions {
        tls: Some(TlsOptions {
            system_roots: true,
            ca_file: None,
        }),
        auth: None,
    })
    .unwrap();
    assert!(matches!(
        c.get_status(&e, "/", T).await,
        Err(RequestError::Tls { .. })
    ));
    // Bad CA files are errors at construction.
    let missing = TlsOptions {
        system_roots: false,
        ca_file: Some(dir.join("nope.pem")),
    };
    assert!(matches!(missing.connector(), Err(TlsError::CaFile { .. })));
    std::fs::write(dir.join("empty.pem"), "not a certificate\n").unwrap();
    let empty = TlsOptions {
        system_roots: false,
        ca_file: Some(dir.join("empty.pem")),
    };
    assert!(matches!(empty.connector(), Err(TlsError::NoCertificate(_))));
    assert!(matches!(
        TlsOptions::default().connector(),
        Err(TlsError::NothingTrusted)
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
