//! Every connection to the exporter's and the webhook's HTTP servers is
//! bounded (issue 15, finding 3): idle, slow or partial heads, slow or
//! short bodies, idle keep-alive, and the same behind TLS, are closed within
//! a bound; a TLS handshake that never finishes too; heads over the cap get
//! 431; connections over the cap wait; 200 connections holding large
//! partial heads do not grow the process. Real binaries on 127.0.0.1, the
//! timeouts set small in `http_server_config:` of `--web.config.file`; the
//! tests assert "closed after at least the timeout and within several
//! times it", margins for a loaded 2-core machine.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::proc::{Running, spawn_listening};

const HEAD: Duration = Duration::from_millis(400);
const BODY: Duration = Duration::from_millis(800);
const IDLE: Duration = Duration::from_millis(1200);
/// Upper bound on a close: far beyond the timeouts, far below "forever".
const BOUND: Duration = Duration::from_secs(10);

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xentinel-bounds-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn web_config(dir: &Path, tls: bool, extra: &str) -> PathBuf {
    let mut y = format!(
        "http_server_config:\n  read_header_timeout: {}ms\n  read_timeout: {}ms\n  idle_timeout: {}ms\n{extra}",
        HEAD.as_millis(),
        BODY.as_millis(),
        IDLE.as_millis()
    );
    if tls {
        make_cert(dir);
        y.push_str("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n");
    }
    let f = dir.join("web.yml");
    std::fs::write(&f, y).unwrap();
    f
}

fn make_cert(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        // A leaf, not a CA: the client trusts it directly.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): apt-get install openssl"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn exporter(web: &Path) -> Running {
    spawn_listening(&[
        "exporter",
        "--source",
        "sim",
        "--web.config.file",
        web.to_str().unwrap(),
    ])
}

fn webhook(dir: &Path, web: &Path) -> Running {
    spawn_listening(&[
        "webhook",
        "--insecure-no-auth",
        "--executor",
        "sim",
        "--exporter",
        "xen1=http://127.0.0.1:9/metrics",
        "--db.path",
        dir.join("jobs.sqlite").to_str().unwrap(),
        "--web.config.file",
        web.to_str().unwrap(),
    ])
}

/// A client stream, plain or TLS.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn connect(addr: &str, tls: Option<&Path>) -> Box<dyn Conn> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(BOUND)).unwrap();
    let Some(cert) = tls else {
        return Box::new(tcp);
    };
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    Box::new(rustls::StreamOwned::new(conn, tcp))
}

/// Reads (and drops) until the server closes; how long that took from `since`.
fn closed_after(c: &mut dyn Conn, since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("still open after {:?}", since.elapsed())
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("still open after {:?}", since.elapsed())
            }
            // A reset or a TLS close without close_notify is a close too.
            Err(_) => return since.elapsed(),
        }
    }
}

fn assert_closed(what: &str, took: Duration, timeout: Duration) {
    assert!(
        took >= timeout.mul_f64(0.9) && took < BOUND,
        "{what}: closed after {took:?} (timeout {timeout:?})"
    );
}

/// The slow and idle connections every server must bound, over `tls` or not.
/// `reads_body`: `post_path` reads its body (the webhook's `/alerts`); the
/// exporter answers a POST without reading it (405), and then the body only
/// has to be bounded, not timed out.
fn every_slow_connection_is_closed(
    addr: &str,
    post_path: &str,
    reads_body: bool,
    tls: Option<&Path>,
) {
    let body_floor = if reads_body {
        BODY.mul_f64(0.9)
    } else {
        Duration::ZERO
    };
    let tag = if tls.is_some() { "TLS " } else { "" };
    // Connected, nothing sent: the first head is due within HEAD (as in Go).
    let mut c = connect(addr, tls);
    let t = Instant::now();
    assert_closed(
        &format!("{tag}silent new connection"),
        closed_after(&mut *c, t),
        HEAD,
    );

    // Partial head, then silence.
    let mut c = connect(addr, tls);
    let t = Instant::now();
    c.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert_closed(
        &format!("{tag}partial head"),
        closed_after(&mut *c, t),
        HEAD,
    );

    // Slow head: a byte every 50 ms makes progress, and is still cut.
    let mut c = connect(addr, tls);
    let t = Instant::now();
    c.write_all(b"GET /-/healthy HTTP/1.1\r\nX-Slow: ").unwrap();
    let mut sent = 0;
    while c.write_all(b"a").is_ok() && t.elapsed() < BOUND {
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
        if sent % 4 == 0 && c.flush().is_err() {
            break;
        }
    }
    let took = t.elapsed();
    assert!(
        took >= HEAD.mul_f64(0.9) && took < BOUND,
        "{tag}slow head: {took:?}"
    );

    // A body announced longer than what arrives.
    let mut c = connect(addr, tls);
    let head = format!(
        "POST {post_path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n{{}}"
    );
    c.write_all(head.as_bytes()).unwrap();
    let t = Instant::now();
    let took = closed_after(&mut *c, t);
    assert!(
        took >= body_floor && took < BOUND,
        "{tag}short body: {took:?}"
    );

    // A slow body: a byte every 50 ms.
    let mut c = connect(addr, tls);
    let head = format!("POST {post_path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    c.write_all(head.as_bytes()).unwrap();
    let t = Instant::now();
    while c.write_all(b" ").is_ok() && t.elapsed() < BOUND {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t.elapsed();
    assert!(
        took >= body_floor && took < BOUND,
        "{tag}slow body: {took:?}"
    );

    // Idle keep-alive: one answered request, then nothing.
    let mut c = connect(addr, tls);
    c.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"OK\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let t = Instant::now();
    assert_closed(
        &format!("{tag}idle keep-alive"),
        closed_after(&mut *c, t),
        IDLE,
    );
}

#[test]
fn exporter_closes_slow_and_idle_connections() {
    let d = tmp("exporter");
    let ex = exporter(&web_config(&d, false, ""));
    every_slow_connection_is_closed(&ex.addr, "/metrics", false, None);
}

#[test]
fn webhook_closes_slow_and_idle_connections() {
    let d = tmp("webhook");
    let wh = webhook(&d, &web_config(&d, false, ""));
    every_slow_connection_is_closed(&wh.addr, "/alerts", true, None);
}

#[test]
fn behind_tls_too_and_a_handshake_that_never_ends() {
    let d = tmp("tls");
    let ex = exporter(&web_config(&d, true, ""));
    let cert = d.join("cert.pem");
    every_slow_connection_is_closed(&ex.addr, "/metrics", false, Some(&cert));
    // A TLS port that gets a TCP connection and nothing, or half a ClientHello.
    for first in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01][..]] {
        let mut c: Box<dyn Conn> = {
            let t = TcpStream::connect(&ex.addr).unwrap();
            t.set_read_timeout(Some(BOUND)).unwrap();
            Box::new(t)
        };
        c.write_all(first).unwrap();
        let t = Instant::now();
        assert_closed("TLS handshake", closed_after(&mut *c, t), HEAD);
    }
}

#[test]
fn oversized_heads_get_431_and_connections_over_the_cap_wait() {
    let d = tmp("caps");
    let ex = exporter(&web_config(
        &d,
        false,
        "  max_connections: 2\n  max_header_bytes: 8192\n",
    ));
    let mut c = connect(&ex.addr, None);
    let big = format!(
        "GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = c.write_all(big.as_bytes());
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // Two kept-alive connections take both slots: a third is accepted by
    // the kernel but not served until one of them is closed (after IDLE).
    let keep = |c: &mut Box<dyn Conn>| {
        c.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"OK\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the answer");
            got.extend_from_slice(&buf[..n]);
        }
    };
    let mut a = connect(&ex.addr, None);
    let mut b = connect(&ex.addr, None);
    keep(&mut a);
    keep(&mut b);
    let opened = Instant::now();
    let mut third = TcpStream::connect(&ex.addr).unwrap();
    third
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    third.set_read_timeout(Some(BOUND)).unwrap();
    let mut got = Vec::new();
    third.read_to_end(&mut got).unwrap();
    let waited = opened.elapsed();
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Served only once an idle one was closed: IDLE after those were opened.
    assert!(
        waited >= IDLE.mul_f64(0.5) && waited < BOUND,
        "third connection served after {waited:?}"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn two_hundred_large_partial_heads_do_not_grow_the_webhook() {
    // The measurement: 200 connections holding 390 KB partial heads
    // took the webhook from 59 MB to 132 MB. With the default limits
    // (32 KiB heads, 512 connections) each gets 431 once past the cap.
    let d = tmp("rss");
    let web = d.join("web.yml");
    std::fs::write(&web, "").unwrap();
    let wh = webhook(&d, &web);
    let before = rss_kib(wh.child.id());
    let chunk = vec![b'a'; 390 * 1024];
    let mut conns = Vec::new();
    for _ in 0..200 {
        let mut c = TcpStream::connect(&wh.addr).unwrap();
        c.set_write_timeout(Some(BOUND)).unwrap();
        c.write_all(b"POST /alerts HTTP/1.1\r\nHost: x\r\nX-Big: ")
            .unwrap();
        // The server may stop reading (and answer 431) part way.
        let _ = c.write_all(&chunk);
        conns.push(c);
    }
    // Let the server read what it will of them.
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(wh.child.id());
    let grown = after.saturating_sub(before);
    eprintln!("webhook RSS {before} -> {after} KiB with 200 partial heads of 390 KB");
    // Measured (debug build): +80 MB before the fix, +0.6 MB after.
    assert!(
        grown < 20 * 1024,
        "RSS grew {grown} KiB ({before} -> {after})"
    );
    // And the webhook still answers.
    let (code, _) = support::http::request(&wh.addr, "GET", "/-/healthy", &[], b"");
    assert_eq!(code, 200);
}
