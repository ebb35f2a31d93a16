//! Proves `support::xenstored` speaks the real xenstore protocol: driven by
//! Debian's xenstore-utils CLI, by the xenstore-rs client, and by raw frames.

mod support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use support::xenstored::TestXenstored;
use xenstore_rs::tokio::XsTokio;
use xenstore_rs::{AsyncWatch, AsyncXs};

const WAIT: Duration = Duration::from_secs(5);

fn socket_path(name: &str) -> PathBuf {
    let pid = std::process::id();
    std::env::temp_dir().join(format!("xentinel-xsd-{pid}-{name}.sock"))
}

fn missing_cli(prog: &str, e: io::Error) -> ! {
    panic!(
        "cannot run `{prog}` ({e}): this test needs the xenstore CLI, run `apt-get install xenstore-utils`"
    )
}

/// Runs one xenstore-utils command against `xsd`.
fn cli(xsd: &TestXenstored, args: &[&str]) -> Output {
    let (prog, rest) = args.split_first().unwrap();
    Command::new(prog)
        .args(rest)
        .env("XENSTORED_PATH", xsd.path())
        .output()
        .unwrap_or_else(|e| missing_cli(prog, e))
}

/// Runs a command that must succeed; returns its stdout.
fn ok(xsd: &TestXenstored, args: &[&str]) -> String {
    let out = cli(xsd, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {stderr}",
        out.status
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Spawns `xenstore-watch <path>`; its output lines arrive on the channel.
fn spawn_watch(xsd: &TestXenstored, path: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new("xenstore-watch")
        .arg(path)
        .env("XENSTORED_PATH", xsd.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| missing_cli("xenstore-watch", e));
    let stdout: ChildStdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn next_line(rx: &mpsc::Receiver<String>) -> String {
    rx.recv_timeout(WAIT)
        .expect("no watch event from xenstore-watch")
}

#[test]
fn cli_read_write_ls_list_exists_rm() {
    let xsd = TestXenstored::start(&socket_path("cli"));

    assert_eq!(
        ok(&xsd, &["xenstore-write", "/local/domain/7/name", "guest-a"]),
        ""
    );
    assert_eq!(xsd.read("/local/domain/7/name").as_deref(), Some("guest-a"));
    assert_eq!(
        ok(&xsd, &["xenstore-read", "/local/domain/7/name"]),
        "guest-a\n"
    );

    // Several pairs (or keys) make the CLI wrap its requests in a transaction.
    assert_eq!(
        ok(&xsd, &["xenstore-write", "/t/x", "1", "/t/y/z", "2"]),
        ""
    );
    assert_eq!(ok(&xsd, &["xenstore-read", "/t/x", "/t/y/z"]), "1\n2\n");
    assert_eq!(xsd.read("/t/y/z").as_deref(), Some("2"));

    assert_eq!(
        ok(&xsd, &["xenstore-ls", "/t"]),
        "x = \"1\"\ny = \"\"\n z = \"2\"\n"
    );
    assert_eq!(ok(&xsd, &["xenstore-list", "/t"]), "x\ny\n");
    assert_eq!(ok(&xsd, &["xenstore-exists", "/t/y/z"]), "");
    assert_eq!(
        cli(&xsd, &["xenstore-exists", "/t/nope"]).status.code(),
        Some(1)
    );

    // Relative paths are dom0's: /local/domain/0/...
    ok(&xsd, &["xenstore-write", "rel", "v"]);
    assert_eq!(xsd.read("/local/domain/0/rel").as_deref(), Some("v"));
    assert_eq!(ok(&xsd, &["xenstore-read", "rel"]), "v\n");

    // Direct store writes are what the CLI reads.
    xsd.write("/t/x", "one");
    assert_eq!(ok(&xsd, &["xenstore-read", "/t/x"]), "one\n");

    assert_eq!(ok(&xsd, &["xenstore-rm", "/t/y"]), "");
    assert_eq!(xsd.read("/t/y/z"), None);
    assert_eq!(xsd.read("/t/y"), None);
    assert_eq!(ok(&xsd, &["xenstore-list", "/t"]), "x\n");
    // Removing an absent node under an existing parent succeeds, as in xenstored.
    ok(&xsd, &["xenstore-rm", "/t/nope"]);

    let out = cli(&xsd, &["xenstore-read", "/t/nope"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("couldn't read path /t/nope"),
        "stderr: {stderr}"
    );
    let out = cli(&xsd, &["xenstore-list", "/nope/deeper"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn cli_watch_prints_initial_and_change_events() {
    let xsd = TestXenstored::start(&socket_path("cli-watch"));
    let (mut child, lines) = spawn_watch(&xsd, "/w");
    assert_eq!(next_line(&lines), "/w", "initial event");

    xsd.write("/w/k", "v");
    assert_eq!(next_line(&lines), "/w/k");
    ok(&xsd, &["xenstore-write", "/w/a", "1", "/w/b", "2"]); // one transaction
    assert_eq!(next_line(&lines), "/w/a");
    assert_eq!(next_line(&lines), "/w/b");
    xsd.write("/elsewhere", "x");
    xsd.rm("/w");
    assert_eq!(next_line(&lines), "/w", "rm event (nothing for /elsewhere)");

    let (mut intro, intro_lines) = spawn_watch(&xsd, "@introduceDomain");
    assert_eq!(next_line(&intro_lines), "@introduceDomain", "initial event");
    xsd.introduce_domain(3, "guest", "00000000-0000-0000-0000-000000000003", 1024);
    assert_eq!(next_line(&intro_lines), "@introduceDomain");

    for c in [&mut child, &mut intro] {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

/// A minimal raw-protocol client: 16-byte native-endian header + payload.
struct Raw(UnixStream);

impl Raw {
    fn connect(xsd: &TestXenstored) -> Raw {
        let stream = UnixStream::connect(xsd.path()).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Raw(stream)
    }

    fn send(&mut self, ty: u32, req_id: u32, tx_id: u32, payload: &[u8]) {
        let mut frame = Vec::new();
        for word in [ty, req_id, tx_id, payload.len() as u32] {
            frame.extend_from_slice(&word.to_ne_bytes());
        }
        frame.extend_from_slice(payload);
        self.0.write_all(&frame).unwrap();
    }

    /// Reads one message: (type, req_id, tx_id, payload).
    fn recv(&mut self) -> (u32, u32, u32, Vec<u8>) {
        let mut hdr = [0u8; 16];
        self.0.read_exact(&mut hdr).unwrap();
        let w = |i: usize| u32::from_ne_bytes(hdr[i * 4..i * 4 + 4].try_into().unwrap());
        let mut payload = vec![0; w(3) as usize];
        self.0.read_exact(&mut payload).unwrap();
        (w(0), w(1), w(2), payload)
    }

    /// One request/reply; checks req_id and tx_id are echoed.
    fn call(&mut self, ty: u32, tx_id: u32, payload: &[u8]) -> (u32, Vec<u8>) {
        self.send(ty, 77, tx_id, payload);
        let (rty, req_id, rtx, body) = self.recv();
        assert_eq!((req_id, rtx), (77, tx_id), "req_id/tx_id echo");
        (rty, body)
    }
}

const ERROR: u32 = 16;

#[test]
fn raw_protocol_transactions_perms_domains_watches() {
    let xsd = TestXenstored::start(&socket_path("raw"));
    let mut c = Raw::connect(&xsd);

    // TRANSACTION_START -> decimal id, NUL-terminated.
    let (ty, id) = c.call(6, 0, b"\0");
    assert_eq!(ty, 6);
    let tx: u32 = std::str::from_utf8(id.strip_suffix(b"\0").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(tx, 0);
    assert_eq!(c.call(11, tx, b"/tx/a\0hello"), (11, b"OK\0".to_vec()));
    assert_eq!(c.call(2, tx, b"/tx/a\0"), (2, b"hello".to_vec()));
    assert_eq!(
        c.call(2, 0, b"/tx/a\0"),
        (ERROR, b"ENOENT\0".to_vec()),
        "isolated"
    );
    assert_eq!(c.call(7, tx, b"T\0"), (7, b"OK\0".to_vec()));
    assert_eq!(
        c.call(2, 0, b"/tx/a\0"),
        (2, b"hello".to_vec()),
        "committed"
    );
    assert_eq!(xsd.read("/tx/a").as_deref(), Some("hello"));

    let (_, id) = c.call(6, 0, b"\0");
    let tx: u32 = std::str::from_utf8(id.strip_suffix(b"\0").unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(c.call(11, tx, b"/tx/b\0dropped"), (11, b"OK\0".to_vec()));
    assert_eq!(c.call(7, tx, b"F\0"), (7, b"OK\0".to_vec()));
    assert_eq!(xsd.read("/tx/b"), None, "aborted");
    assert_eq!(
        c.call(2, tx, b"/tx/a\0"),
        (ERROR, b"ENOENT\0".to_vec()),
        "tx gone"
    );

    assert_eq!(c.call(12, 0, b"/tx/d\0"), (12, b"OK\0".to_vec()));
    assert_eq!(c.call(2, 0, b"/tx/d\0"), (2, Vec::new()));
    assert_eq!(c.call(1, 0, b"/tx\0"), (1, b"a\0d\0".to_vec()));
    assert_eq!(c.call(3, 0, b"/tx/a\0"), (3, b"n0\0".to_vec()));
    assert_eq!(c.call(14, 0, b"/tx/a\0r0\0w5\0"), (14, b"OK\0".to_vec()));
    assert_eq!(c.call(3, 0, b"/tx/a\0"), (3, b"r0\0w5\0".to_vec()));
    assert_eq!(c.call(13, 0, b"/tx\0"), (13, b"OK\0".to_vec()));
    assert_eq!(c.call(1, 0, b"/tx\0"), (ERROR, b"ENOENT\0".to_vec()));
    assert_eq!(c.call(2, 0, b"bad//path\0"), (ERROR, b"EINVAL\0".to_vec()));

    assert_eq!(c.call(10, 0, b"5\0"), (10, b"/local/domain/5\0".to_vec()));
    assert_eq!(c.call(17, 0, b"0\0"), (17, b"T\0".to_vec()));
    assert_eq!(c.call(17, 0, b"9\0"), (17, b"F\0".to_vec()));
    assert_eq!(c.call(8, 0, b"9\x00123\x004\x00"), (8, b"OK\0".to_vec()));
    assert_eq!(c.call(17, 0, b"9\0"), (17, b"T\0".to_vec()));
    assert_eq!(c.call(9, 0, b"9\0"), (9, b"OK\0".to_vec()));
    assert_eq!(c.call(17, 0, b"9\0"), (17, b"F\0".to_vec()));
    assert_eq!(c.call(0, 0, b"check\0").0, ERROR);

    // WATCH: "OK" reply, then the initial event; relative watches see relative paths.
    assert_eq!(c.call(4, 0, b"/w\0tok\0"), (4, b"OK\0".to_vec()));
    assert_eq!(c.recv(), (15, 0, 0, b"/w\0tok\0".to_vec()));
    assert_eq!(c.call(4, 0, b"rel\0t2\0"), (4, b"OK\0".to_vec()));
    assert_eq!(c.recv(), (15, 0, 0, b"rel\0t2\0".to_vec()));
    xsd.write("/w/x", "1");
    assert_eq!(c.recv(), (15, 0, 0, b"/w/x\0tok\0".to_vec()));
    xsd.write("/local/domain/0/rel/x", "1");
    assert_eq!(c.recv(), (15, 0, 0, b"rel/x\0t2\0".to_vec()));
    assert_eq!(c.call(5, 0, b"/w\0tok\0"), (5, b"OK\0".to_vec()));
    assert_eq!(c.call(21, 0, b""), (21, b"OK\0".to_vec()));
    xsd.write("/w/y", "1"); // no watches left: the next message is the reply
    assert_eq!(c.call(2, 0, b"/w/y\0"), (2, b"1".to_vec()));
}

/// Serialises `XENSTORED_PATH` changes: `XsTokio::new()` reads it on connect.
static ENV_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn connect(xsd: &TestXenstored) -> io::Result<XsTokio> {
    let _guard = ENV_LOCK.lock().await;
    // Only this helper writes the environment in this test binary, under ENV_LOCK.
    xsd.serve_this_process();
    XsTokio::new().await
}

async fn next_event(s: &mut (impl Stream<Item = Box<str>> + Unpin)) -> String {
    let item = tokio::time::timeout(WAIT, s.next())
        .await
        .expect("no watch event");
    item.expect("watch stream ended").into()
}

#[tokio::test]
async fn xenstore_rs_read_write_directory_rm() {
    let xsd = TestXenstored::start(&socket_path("rs"));
    let xs = connect(&xsd).await.unwrap();

    xs.write("/local/domain/3/name", "guest").await.unwrap();
    assert_eq!(&*xs.read("/local/domain/3/name").await.unwrap(), "guest");
    assert_eq!(xsd.read("/local/domain/3/name").as_deref(), Some("guest"));
    xsd.write("/local/domain/3/memory/target", "1024");
    let dir = xs.directory("/local/domain/3").await.unwrap();
    assert_eq!(dir, vec!["name".into(), "memory".into()] as Vec<Box<str>>);
    assert_eq!(xs.directory("/local/domain/3/name").await.unwrap(), vec![]);

    xs.rm("/local/domain/3").await.unwrap();
    let err = xs.read("/local/domain/3/name").await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert_eq!(xsd.read("/local/domain/3"), None);
}

#[tokio::test]
async fn xenstore_rs_watches_domain_introduce_and_release() {
    let xsd = TestXenstored::start(&socket_path("rs-watch"));
    let xs = connect(&xsd).await.unwrap();
    let mut intro = xs.watch("@introduceDomain").await.unwrap();
    let mut release = xs.watch("@releaseDomain").await.unwrap();
    let mut domains = xs.watch("/local/domain").await.unwrap();
    assert_eq!(next_event(&mut intro).await, "@introduceDomain");
    assert_eq!(next_event(&mut release).await, "@releaseDomain");
    assert_eq!(next_event(&mut domains).await, "/local/domain");

    let uuid = "00000000-0000-0000-0000-000000000005";
    xsd.introduce_domain(5, "vm5", uuid, 2048);
    assert_eq!(next_event(&mut intro).await, "@introduceDomain");
    for leaf in ["name", "vm", "domid", "memory/target"] {
        assert_eq!(
            next_event(&mut domains).await,
            format!("/local/domain/5/{leaf}")
        );
    }
    assert_eq!(
        &*xs.read("/local/domain/5/memory/target").await.unwrap(),
        "2048"
    );
    assert_eq!(
        &*xs.read("/local/domain/5/vm").await.unwrap(),
        format!("/vm/{uuid}")
    );
    assert_eq!(&*xs.read(&format!("/vm/{uuid}/name")).await.unwrap(), "vm5");

    xsd.release_domain(5);
    assert_eq!(next_event(&mut release).await, "@releaseDomain");
    assert_eq!(next_event(&mut domains).await, "/local/domain/5");
    assert!(xs.read("/local/domain/5/name").await.is_err());
    assert_eq!(xsd.read(&format!("/vm/{uuid}")), None);
}

#[tokio::test]
async fn kill_fails_clients_and_restart_serves_the_same_store() {
    let mut xsd = TestXenstored::start(&socket_path("kill"));
    xsd.write("/persist", "yes");
    let xs = connect(&xsd).await.unwrap();
    assert_eq!(&*xs.read("/persist").await.unwrap(), "yes");
    let mut raw = Raw::connect(&xsd);

    xsd.kill();

    assert!(!xsd.path().exists(), "socket file removed");
    let mut buf = [0u8; 1];
    assert_eq!(raw.0.read(&mut buf).unwrap(), 0, "raw client sees EOF");

    // xenstore-rs 0.8.0 loses the first request sent after EOF (it never
    // answers it), so each attempt is bounded; a later one must error.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let attempt = tokio::time::timeout(Duration::from_secs(1), xs.read("/persist")).await;
        outcomes.push(attempt.map(|r| r.map(|v| v.to_string())));
    }
    assert!(!matches!(outcomes[0], Ok(Ok(_))), "{outcomes:?}");
    for later in &outcomes[1..] {
        assert!(
            matches!(later, Ok(Err(e)) if e.kind() == io::ErrorKind::BrokenPipe),
            "{outcomes:?}"
        );
    }
    assert!(connect(&xsd).await.is_err(), "nothing to connect to");

    xsd.restart();
    let xs2 = connect(&xsd).await.unwrap();
    assert_eq!(&*xs2.read("/persist").await.unwrap(), "yes");
    xs2.write("/persist", "again").await.unwrap();
    assert_eq!(xsd.read("/persist").as_deref(), Some("again"));
}
