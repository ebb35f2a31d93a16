//! The binary as a user meets it: clear one-sentence failures, every config
//! error at once, TLS and basic auth from an exporter-toolkit web config file.

mod support;

use std::process::Command;

use support::proc::{bin, spawn_listening};

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run xentinel");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xentinel-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn source_xen_without_a_hypervisor_fails_with_one_sentence() {
    assert!(
        !std::path::Path::new("/dev/xen/privcmd").exists(),
        "this test expects a machine without Xen"
    );
    let (code, err) = run(&[
        "exporter",
        "--source",
        "xen",
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1);
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {err:?}");
    assert!(
        lines[0].contains("/dev/xen/privcmd") || lines[0].contains("cannot load libxenstat"),
        "{err}"
    );
    let (code, err) = run(&[
        "exporter",
        "--source",
        "xen",
        "--xen.libxenstat",
        "/nonexistent/libxenstat.so",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("xentinel: cannot load libxenstat (tried /nonexistent/libxenstat.so"),
        "{err}"
    );
}

#[test]
fn every_config_error_is_reported_at_once() {
    let d = tmp("cfg");
    let f = d.join("x.yml");
    std::fs::write(
        &f,
        "exporter:\n  source: xenn\n  source_timeout: soon\nwarnings:\n  tempreature: 3\n",
    )
    .unwrap();
    let (code, err) = run(&["exporter", "--config.file", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    let name = f.display().to_string();
    assert!(err.contains("3 error(s)"), "{err}");
    assert!(
        err.contains(&format!(
            "{name}:2:11: exporter.source: unknown variant `xenn`"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{name}:3:19: exporter.source_timeout: invalid duration \"soon\""
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{name}:5:3: warnings.tempreature: unknown field")),
        "{err}"
    );
    let (code, err) = run(&["exporter", "--config.file", "/nonexistent.yml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent.yml") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn tls_and_basic_auth_from_a_web_config_file() {
    let d = tmp("tls");
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): apt-get install openssl"));
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let hash = bcrypt::hash_with_salt("s3cret", 6, [9u8; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let web = d.join("web.yml");
    std::fs::write(
        &web,
        format!("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  alice: '{hash}'\n"),
    )
    .unwrap();
    let ex = spawn_listening(&[
        "exporter",
        "--source",
        "sim",
        "--web.config.file",
        web.to_str().unwrap(),
    ]);
    let curl = |extra: &[&str]| -> (String, String) {
        let out = Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(&cert)
            .args(extra)
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl ({e}): apt-get install curl"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
        (code.to_string(), body.to_string())
    };
    let url = format!("https://{}/metrics", ex.addr);
    let (code, body) = curl(&["-u", "alice:s3cret", &url]);
    assert_eq!(code, "200");
    assert!(body.contains("xen_domain_info{"), "{body}");
    assert_eq!(curl(&[&url]).0, "401");
    assert_eq!(curl(&["-u", "alice:wrong", &url]).0, "401");
    // Plain HTTP on the TLS port gets no metrics.
    assert_ne!(curl(&[&format!("http://{}/metrics", ex.addr)]).0, "200");
}

/// `--help` of the binary and of every subcommand, compared with the files
/// under `tests/help/` (the user-facing contract of the command line).
/// `XENTINEL_BLESS=1 cargo test --test cli` rewrites them after an intended change.
#[test]
fn help_texts_match_their_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/help");
    let bless = std::env::var_os("XENTINEL_BLESS").is_some();
    let mut diffs = Vec::new();
    for sub in [
        "",
        "exporter",
        "guest-agent",
        "demo",
        "webhook",
        "evacuate",
        "paper",
    ] {
        let mut args: Vec<&str> = vec![];
        if !sub.is_empty() {
            args.push(sub);
        }
        args.push("--help");
        let out = Command::new(bin())
            .args(&args)
            .output()
            .expect("run xentinel");
        assert!(out.status.success(), "xentinel {args:?} failed");
        let got = String::from_utf8(out.stdout).expect("UTF-8 help");
        let file = dir.join(format!(
            "{}.txt",
            if sub.is_empty() { "xentinel" } else { sub }
        ));
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}): run XENTINEL_BLESS=1 cargo test --test cli",
                file.display()
            )
        });
        if got != want {
            diffs.push(format!(
                "xentinel {}:\n{}",
                args.join(" "),
                support::text_diff(&want, &got)
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "--help differs from tests/help/ (XENTINEL_BLESS=1 rewrites the files after an \
         intended change):\n{}",
        diffs.join("\n")
    );
}

/// Runs the binary, killing it (and failing) if it has not exited within `limit`.
fn run_bounded(args: &[&str], limit: std::time::Duration) -> (i32, String) {
    use std::io::Read;
    let mut child = Command::new(bin())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run xentinel");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("xentinel {args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), err)
}

/// Issue 15, finding 10: each of these panicked, aborted on allocation, read
/// until memory ran out, blocked forever, or took seconds to minutes.
#[test]
fn hostile_startup_inputs_are_one_clear_error_each_and_quick() {
    let d = tmp("hostile");
    let limit = std::time::Duration::from_secs(20);
    let exporter = |extra: &[&str]| -> (i32, String) {
        let mut a = vec![
            "exporter",
            "--source",
            "sim",
            "--web.listen-address",
            "127.0.0.1:0",
        ];
        a.extend_from_slice(extra);
        run_bounded(&a, limit)
    };
    let check = |what: &str, (code, err): (i32, String), want: &str| {
        assert_eq!(code, 1, "{what}: {err}");
        assert!(err.contains(want), "{what}: want {want:?} in {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
    };
    for dur in [
        "18446744073709551616s",
        "99999999999999999999999999h",
        "400d",
    ] {
        let f = d.join("dur.yml");
        std::fs::write(&f, format!("exporter:\n  source_timeout: {dur}\n")).unwrap();
        let r = exporter(&["--config.file", f.to_str().unwrap()]);
        check(dur, r, "is too long (at most 365d)");
    }
    for path in ["/", "nometrics", "/-/healthy", "/-/ready/", "/{x}"] {
        let r = exporter(&["--web.telemetry-path", path]);
        check(path, r, "invalid telemetry path");
    }
    let r = exporter(&["--sim.domains", "99999999999"]);
    check("--sim.domains", r, "at most 100000 domains");
    let r = exporter(&["--config.file", "/dev/zero"]);
    check("/dev/zero", r, "not a regular file (a character device)");
    let fifo = d.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let r = exporter(&["--config.file", fifo.to_str().unwrap()]);
    check("FIFO", r, "not a regular file (a FIFO)");
    let big = d.join("big.yml");
    std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
    let r = exporter(&["--config.file", big.to_str().unwrap()]);
    check("2 MiB", r, "larger than 1048576 bytes");
    let deep = d.join("deep.yml");
    for text in [
        "exporter: ".to_string() + &"[".repeat(100_000),
        // 1,000 levels of block mappings (500 KB: under the size cap).
        (0..1_000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect::<String>(),
    ] {
        std::fs::write(&deep, text).unwrap();
        let r = exporter(&["--config.file", deep.to_str().unwrap()]);
        check("deep YAML", r, "nested deeper than 64 levels");
    }
    // A demo speed that would overflow (or stop) simulated time.
    for speed in ["1e300", "nan", "-1", "inf", "0"] {
        let arg = format!("--speed={speed}");
        let (code, err) = run_bounded(&["demo", &arg], limit);
        assert_eq!(code, 2, "--speed {speed}: {err}");
        assert!(
            err.contains("out of range") || err.contains("not a number"),
            "{err}"
        );
    }
    // The web config file goes through the same reader.
    let r = exporter(&["--web.config.file", "/dev/zero"]);
    check("web config /dev/zero", r, "not a regular file");
    // So does the webhook's token file (a FIFO would block, /dev/zero would fill memory).
    let db = d.join("jobs.sqlite");
    let webhook = |token: &str| {
        run_bounded(
            &[
                "webhook",
                "--web.listen-address",
                "127.0.0.1:0",
                "--dry-run",
                "--db.path",
                db.to_str().unwrap(),
                "--web.token-file",
                token,
            ],
            limit,
        )
    };
    check(
        "token /dev/zero",
        webhook("/dev/zero"),
        "not a regular file (a character device)",
    );
    check(
        "token FIFO",
        webhook(fifo.to_str().unwrap()),
        "not a regular file (a FIFO)",
    );
}
