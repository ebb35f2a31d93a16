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
