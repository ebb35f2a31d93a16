//! The Debian packages as a user installs them, from `target/debian/` (scripts/build-packages.sh
//! builds them; scripts/test.sh does so before `cargo test`): what each .deb holds, then
//! `dpkg -i` on this machine, where every file went, the maintainer scripts' effects, the units
//! checked by `systemd-analyze verify` (and scored by `systemd-analyze security`), the installed
//! binary with the shipped configuration, and `dpkg -r` / `dpkg -P` leaving nothing behind.
//!
//! Installing needs root and a machine where neither package is installed already: the test
//! fails, saying so, rather than touch an installation it did not make.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::dashboards::repo_root;
use support::packages::fresh_deb as deb;
use support::webhook::{free_port, request, temp_dir, wait_for};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The dom0 package's units.
const UNITS: [&str; 3] = [
    "xentinel-exporter.service",
    "xentinel-webhook.service",
    "xentinel-evacuate.service",
];
const GUEST_UNIT: &str = "xentinel-guest-agent.service";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs and panics with the output unless it succeeds; stdout.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dpkg-deb -c`: `(path without the leading ".", mode string, uid/gid)` of every entry.
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    ok("dpkg-deb", &["-c", deb.to_str().unwrap()])
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5]
                .trim_start_matches('.')
                .trim_end_matches('/')
                .to_owned();
            (path, f[0].to_owned(), f[1].to_owned())
        })
        .filter(|(p, _, _)| !p.is_empty())
        .collect()
}

/// One control file (`control`, `conffiles`, `postinst`, ...) of a .deb.
fn control_file(deb: &Path, name: &str) -> String {
    let dir = temp_dir("deb-control");
    ok(
        "dpkg-deb",
        &["-e", deb.to_str().unwrap(), dir.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    text
}

fn mode_of(entries: &[(String, String, String)], path: &str) -> String {
    entries
        .iter()
        .find(|(p, _, _)| p == path)
        .map(|(_, m, o)| format!("{m} {o}"))
        .unwrap_or_else(|| panic!("{path} is not in the package: {entries:#?}"))
}

#[test]
fn dom0_package_contents() {
    let deb = deb("xentinel");
    let size = std::fs::metadata(&deb).unwrap().len();
    println!("{}: {size} bytes", deb.display());
    let entries = contents(&deb);
    assert_eq!(mode_of(&entries, "/usr/bin/xentinel"), "-rwxr-xr-x 0/0");
    for unit in UNITS {
        let path = format!("/usr/lib/systemd/system/{unit}");
        assert_eq!(mode_of(&entries, &path), "-rw-r--r-- 0/0");
    }
    for file in [
        "/etc/xentinel/xentinel.yml",
        "/etc/default/xentinel-exporter",
        "/etc/default/xentinel-webhook",
        "/etc/default/xentinel-evacuate",
        "/usr/lib/tmpfiles.d/xentinel.conf",
        "/usr/share/doc/xentinel/README.md",
        "/usr/share/doc/xentinel/copyright",
        "/usr/share/doc/xentinel/docs/runbooks.md",
        "/usr/share/doc/xentinel/examples/prometheus/rules/xentinel-alerts.yml",
        "/usr/share/doc/xentinel/examples/prometheus/alertmanager.yml",
    ] {
        assert_eq!(mode_of(&entries, file), "-rw-r--r-- 0/0", "{file}");
    }
    // Nothing of the guest's, no token (postinst makes it), nothing outside these trees.
    for (path, _, _) in &entries {
        assert!(!path.contains("guest-agent"), "{path}");
        assert!(!path.ends_with(".token"), "{path}");
        assert!(
            [
                "/usr/bin",
                "/usr/lib/systemd",
                "/usr/lib/tmpfiles.d",
                "/usr/share/doc",
                "/etc"
            ]
            .iter()
            .any(|t| path.starts_with(t) || t.starts_with(path.as_str())),
            "unexpected {path}"
        );
    }
    // Every file under /etc is a conffile, and those are all.
    let conffiles: BTreeSet<String> = control_file(&deb, "conffiles")
        .lines()
        .map(str::to_owned)
        .collect();
    let etc: BTreeSet<String> = entries
        .iter()
        .filter(|(p, m, _)| p.starts_with("/etc/") && m.starts_with('-'))
        .map(|(p, _, _)| p.clone())
        .collect();
    assert_eq!(conffiles, etc);
    let control = control_file(&deb, "control");
    for field in [
        "Package: xentinel\n",
        &format!("Version: {VERSION}-1\n"),
        "Conflicts: xentinel-guest\n",
        "Recommends: libxenmisc4.17",
    ] {
        assert!(control.contains(field), "no {field:?} in:\n{control}");
    }
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or("");
    assert!(depends.contains("libc6"), "Depends: {depends}");
    // Installed, never enabled or started by the package (the README: enable --now).
    let postinst = control_file(&deb, "postinst");
    for unit in UNITS {
        assert!(postinst.contains(unit), "postinst does not handle {unit}");
    }
    // The only `enable` is the one that restores a unit the admin had enabled (upgrades).
    let lines: Vec<&str> = postinst.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("deb-systemd-helper enable") {
            assert!(
                i > 0 && lines[i - 2..i].iter().any(|l| l.contains("was-enabled")),
                "postinst enables a unit unconditionally:\n{postinst}"
            );
        }
        assert!(
            !line.contains("deb-systemd-invoke start") && !line.contains("$_dh_action"),
            "postinst starts a unit:\n{postinst}"
        );
    }
    // The packaged units are the repository's.
    let x = temp_dir("deb-x");
    ok(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), x.to_str().unwrap()],
    );
    for unit in UNITS {
        assert_eq!(
            std::fs::read(x.join("usr/lib/systemd/system").join(unit)).unwrap(),
            std::fs::read(repo_root().join("debian").join(unit)).unwrap(),
            "{unit} differs from debian/{unit}"
        );
    }
    let version = ok(x.join("usr/bin/xentinel").to_str().unwrap(), &["--version"]);
    assert_eq!(version.trim(), format!("xentinel {VERSION}"));
    let _ = std::fs::remove_dir_all(&x);
}

#[test]
fn guest_package_contents() {
    let deb = deb("xentinel-guest");
    let size = std::fs::metadata(&deb).unwrap().len();
    println!("{}: {size} bytes", deb.display());
    let entries = contents(&deb);
    assert_eq!(mode_of(&entries, "/usr/bin/xentinel"), "-rwxr-xr-x 0/0");
    let unit = format!("/usr/lib/systemd/system/{GUEST_UNIT}");
    assert_eq!(mode_of(&entries, &unit), "-rw-r--r-- 0/0");
    mode_of(&entries, "/etc/default/xentinel-guest-agent");
    for (path, _, _) in &entries {
        assert!(
            !path.starts_with("/etc/xentinel") && !UNITS.iter().any(|u| path.ends_with(u)),
            "the guest package ships dom0's {path}"
        );
    }
    let control = control_file(&deb, "control");
    assert!(control.contains("Package: xentinel-guest\n"), "{control}");
    assert!(control.contains("Conflicts: xentinel\n"), "{control}");
    assert_eq!(
        control_file(&deb, "conffiles").trim(),
        "/etc/default/xentinel-guest-agent"
    );
    let x = temp_dir("deb-guest-x");
    ok(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), x.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(x.join("usr/lib/systemd/system").join(GUEST_UNIT)).unwrap(),
        std::fs::read(repo_root().join("debian/guest").join(GUEST_UNIT)).unwrap(),
    );
    let _ = std::fs::remove_dir_all(&x);
}

/// Purges both packages when dropped, so a failing test leaves nothing installed.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "xentinel", "xentinel-guest"]);
    }
}

/// `dpkg-query`'s status of a package ("install ok installed", "deinstall ok config-files"), or
/// "" when dpkg does not know it.
fn status(package: &str) -> String {
    let out = run("dpkg-query", &["-W", "-f", "${Status}", package]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn exists(path: &str) -> bool {
    Path::new(path).symlink_metadata().is_ok()
}

fn mode(path: &str) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .permissions()
        .mode()
        & 0o7777
}

/// `systemd-analyze verify` accepts the unit (it runs without systemd as PID 1), and
/// `systemd-analyze security --offline` scores it; returns the exposure (0 safe .. 10 unsafe).
fn verify_and_score(unit: &str) -> f64 {
    let path = format!("/usr/lib/systemd/system/{unit}");
    let out = run("systemd-analyze", &["verify", &path]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify {unit} failed ({}):\n{text}",
        out.status
    );
    assert!(
        !text.contains(unit),
        "systemd-analyze verify complains about {unit}:\n{text}"
    );
    let out = run(
        "systemd-analyze",
        &["security", "--offline=yes", "--no-pager", &path],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level for {unit}:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"));
    println!("{unit}: {}", line.trim());
    score
}

#[test]
fn install_verify_remove_and_purge_both_packages() {
    let main = deb("xentinel");
    let guest = deb("xentinel-guest");
    let euid = ok("id", &["-u"]);
    assert_eq!(
        euid.trim(),
        "0",
        "installing the packages needs root (CI runs the suite as root)"
    );
    for p in ["xentinel", "xentinel-guest"] {
        assert_eq!(
            status(p),
            "",
            "{p} is already known to dpkg on this machine; this test installs and purges the \
             packages it built, so it will not touch that installation: `dpkg --purge {p}` first"
        );
    }
    let _purge = Purge;
    for tool in ["dpkg", "dpkg-query", "systemd-analyze"] {
        assert!(
            run("sh", &["-c", &format!("command -v {tool}")])
                .status
                .success(),
            "{tool} is missing: apt-get install -y dpkg systemd"
        );
    }

    // --- dom0: install.
    let t = Instant::now();
    ok("dpkg", &["-i", main.to_str().unwrap()]);
    println!("dpkg -i xentinel: {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(status("xentinel"), "install ok installed");
    let listed: BTreeSet<String> = ok("dpkg", &["-L", "xentinel"])
        .lines()
        .map(str::to_owned)
        .collect();
    let packaged: BTreeSet<String> = contents(&main).into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(
        listed, packaged,
        "dpkg -L differs from the package's contents"
    );
    for path in &listed {
        assert!(exists(path), "{path} listed by dpkg -L is not there");
    }
    println!(
        "dpkg -L xentinel:\n  {}",
        listed.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
    let conffiles = ok("dpkg-query", &["-W", "-f", "${Conffiles}", "xentinel"]);
    for f in [
        "/etc/xentinel/xentinel.yml",
        "/etc/default/xentinel-exporter",
        "/etc/default/xentinel-webhook",
        "/etc/default/xentinel-evacuate",
    ] {
        assert!(conffiles.contains(f), "{f} is not a conffile:\n{conffiles}");
    }
    assert!(!conffiles.contains("webhook.token"), "{conffiles}");
    // postinst: the state directories and a fresh token, root's alone.
    assert_eq!(mode("/var/lib/xentinel"), 0o750);
    assert!(Path::new("/run/xentinel").is_dir());
    assert_eq!(mode("/etc/xentinel/webhook.token"), 0o600);
    let token = std::fs::read_to_string("/etc/xentinel/webhook.token").unwrap();
    assert!(
        token.len() == 65 && token.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "token {token:?} is not 32 random bytes in hex"
    );
    // Installed, not enabled: no unit in a .wants directory.
    for unit in UNITS {
        let wants = format!("/etc/systemd/system/multi-user.target.wants/{unit}");
        assert!(!exists(&wants), "{unit} was enabled by the package");
    }
    // No system user: every service runs as root (see the units).
    assert!(!ok("getent", &["passwd"]).contains("xentinel"));

    // The units.
    let mut scores = Vec::new();
    for unit in UNITS {
        scores.push((unit, verify_and_score(unit)));
    }
    // The exporter only reads: its exposure must stay low. The webhook and evacuate run `xl
    // migrate` and Xen's hotplug scripts (root, devices, capabilities), so theirs is higher.
    assert!(scores[0].1 <= 3.0, "{scores:?}");
    for (unit, score) in &scores[1..] {
        assert!(*score < 9.0, "{unit}: {score}");
    }

    // The installed binary loads the shipped configuration (all defaults)...
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new("/usr/bin/xentinel")
        .args(["exporter", "--source", "sim", "--config.file"])
        .arg("/etc/xentinel/xentinel.yml")
        .args(["--web.listen-address", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    support::proc::wait_for_port(&addr, Duration::from_secs(20));
    let body = wait_for(
        "the installed exporter's /metrics",
        Duration::from_secs(20),
        || {
            let (code, body) = request(&addr, "GET", "/metrics", &[], b"");
            (code == 200).then_some(body)
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        body.contains("xen_domain_info{"),
        "{}",
        &body[..body.len().min(500)]
    );
    // ...and, as the unit runs it on a machine without Xen, stops at once with one sentence.
    let out = Command::new("/usr/bin/xentinel")
        .args(["exporter", "--source", "xen", "--config.file"])
        .arg("/etc/xentinel/xentinel.yml")
        .args(["--web.listen-address", "127.0.0.1:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "exporter --source xen started without Xen"
    );
    println!("exporter --source xen without Xen: {}", err.trim());
    assert!(
        err.contains("libxenstat") || err.contains("/dev/xen/privcmd"),
        "the error does not name what is missing: {err}"
    );

    // The guest package conflicts with the dom0 one: refused, nothing changed.
    let out = run("dpkg", &["-i", guest.to_str().unwrap()]);
    assert!(!out.status.success(), "dpkg installed both packages");
    assert_eq!(status("xentinel"), "install ok installed");
    assert_ne!(status("xentinel-guest"), "install ok installed");

    // --- Remove: the program and units go, the conffiles, token and job log stay.
    ok("dpkg", &["-r", "xentinel"]);
    assert_eq!(status("xentinel"), "deinstall ok config-files");
    assert!(!exists("/usr/bin/xentinel"));
    for unit in UNITS {
        assert!(!exists(&format!("/usr/lib/systemd/system/{unit}")));
    }
    for kept in [
        "/etc/xentinel/xentinel.yml",
        "/etc/xentinel/webhook.token",
        "/etc/default/xentinel-webhook",
        "/var/lib/xentinel",
    ] {
        assert!(exists(kept), "dpkg -r removed {kept}");
    }
    // --- Purge: nothing is left.
    ok("dpkg", &["-P", "xentinel"]);
    assert_eq!(status("xentinel"), "");
    for gone in [
        "/etc/xentinel",
        "/etc/default/xentinel-exporter",
        "/etc/default/xentinel-webhook",
        "/etc/default/xentinel-evacuate",
        "/var/lib/xentinel",
        "/run/xentinel",
        "/usr/lib/tmpfiles.d/xentinel.conf",
    ] {
        assert!(!exists(gone), "dpkg -P left {gone}");
    }

    // --- domU: install, verify, purge.
    ok("dpkg", &["-i", guest.to_str().unwrap()]);
    assert_eq!(status("xentinel-guest"), "install ok installed");
    let listed: BTreeSet<String> = ok("dpkg", &["-L", "xentinel-guest"])
        .lines()
        .map(str::to_owned)
        .collect();
    println!(
        "dpkg -L xentinel-guest:\n  {}",
        listed.iter().cloned().collect::<Vec<_>>().join("\n  ")
    );
    assert!(listed.contains(&format!("/usr/lib/systemd/system/{GUEST_UNIT}")));
    let score = verify_and_score(GUEST_UNIT);
    assert!(score <= 3.0, "{GUEST_UNIT}: {score}");
    assert!(!exists(&format!(
        "/etc/systemd/system/multi-user.target.wants/{GUEST_UNIT}"
    )));
    // Outside a domU (no /dev/xen/xenbus) one report fails, non-zero, naming xenstore.
    let out = Command::new("/usr/bin/xentinel")
        .args(["guest-agent", "--once"])
        .env("XENSTORED_PATH", "/nonexistent/xenbus")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "guest-agent --once succeeded outside a domU"
    );
    println!(
        "guest-agent --once outside a domU: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    ok("dpkg", &["-P", "xentinel-guest"]);
    assert_eq!(status("xentinel-guest"), "");
    for gone in [
        "/usr/bin/xentinel",
        "/etc/default/xentinel-guest-agent",
        &format!("/usr/lib/systemd/system/{GUEST_UNIT}"),
    ] {
        assert!(!exists(gone), "dpkg -P left {gone}");
    }
}

/// The conffile as shipped sets nothing (every value commented), and with one `#` dropped from
/// every line it is valid and still the defaults: what it documents is what the binary does.
/// (`source: xen` is the one value that is not the library's default: the units pass it.)
#[test]
fn shipped_configuration_documents_the_defaults() {
    let path = repo_root().join("debian/xentinel.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    let defaults = format!("{:?}", xentinel::config::Config::default());
    let shipped = xentinel::config::load_str(&text, "xentinel.yml")
        .unwrap_or_else(|e| panic!("debian/xentinel.yml: {e}"));
    assert_eq!(format!("{shipped:?}"), defaults);
    let uncommented: String = text
        .lines()
        .map(|l| l.strip_prefix('#').unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(uncommented.contains("\nwebhook:\n") && uncommented.contains("\n  source: xen\n"));
    let mut cfg = xentinel::config::load_str(&uncommented, "xentinel.yml (uncommented)")
        .unwrap_or_else(|e| panic!("debian/xentinel.yml uncommented:\n{e}\n{uncommented}"));
    assert_eq!(
        *cfg.exporter.source,
        Some(xentinel::config::SourceKind::Xen)
    );
    cfg.exporter.source = xentinel::config::V(None);
    assert_eq!(
        format!("{cfg:?}"),
        defaults,
        "a value in debian/xentinel.yml is not the default"
    );
}
