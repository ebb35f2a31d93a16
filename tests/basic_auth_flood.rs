//! Wrong-password floods cannot starve a logged-in client (issue 15,
//! finding 9): with basic auth on, 20 clients sending wrong passwords (each
//! a new one, so no cache helps them) while a client with the right
//! password scrapes; every one of its scrapes succeeds, each within a
//! generous bound. Before the fix, bcrypt ran on the runtime's two workers
//! and the good client's scrapes waited behind it (p50 0.80 s at 27
//! checks/s in the release build; far worse in a debug build).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use support::http::request;
use support::proc::spawn_listening;

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[test]
fn wrong_password_floods_do_not_starve_a_logged_in_client() {
    let d = std::env::temp_dir().join(format!("xentinel-flood-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    // Cost 8: a check takes milliseconds in a release build and tens of
    // them in this debug one; what matters is that they are serialised
    // off the runtime, not their cost.
    let hash = bcrypt::hash_with_salt("s3cret", 8, [5u8; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let web = d.join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
    let ex = spawn_listening(&[
        "exporter",
        "--source",
        "sim",
        "--web.config.file",
        web.to_str().unwrap(),
    ]);
    let good = basic("alice", "s3cret");
    // Logged in once before the flood (as Prometheus is, scrape after scrape).
    let (code, _) = request(
        &ex.addr,
        "GET",
        "/metrics",
        &[("Authorization", &good)],
        b"",
    );
    assert_eq!(code, 200);

    let stop = Arc::new(AtomicBool::new(false));
    let (tried, refused, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let flood: Vec<_> = (0..20)
        .map(|i| {
            let (addr, stop) = (ex.addr.clone(), stop.clone());
            let (tried, refused, other) = (tried.clone(), refused.clone(), other.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let bad = basic("alice", &format!("wrong-{i}-{n}"));
                    let (code, _) =
                        request(&addr, "GET", "/metrics", &[("Authorization", &bad)], b"");
                    tried.fetch_add(1, Ordering::Relaxed);
                    if code == 401 {
                        refused.fetch_add(1, Ordering::Relaxed);
                    } else {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Let the flood build up.
    std::thread::sleep(Duration::from_millis(500));
    let mut took = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let (code, body) = request(
            &ex.addr,
            "GET",
            "/metrics",
            &[("Authorization", &good)],
            b"",
        );
        took.push(t.elapsed());
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("xen_domain_info{"));
    }
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.join().unwrap();
    }
    took.sort();
    let (p50, max) = (took[took.len() / 2], took[took.len() - 1]);
    eprintln!(
        "good client under a flood of {} wrong passwords: p50 {p50:?}, max {max:?}",
        tried.load(Ordering::Relaxed)
    );
    assert!(tried.load(Ordering::Relaxed) > 0);
    assert_eq!(
        other.load(Ordering::Relaxed),
        0,
        "a wrong password got in or failed otherwise"
    );
    assert_eq!(
        refused.load(Ordering::Relaxed),
        tried.load(Ordering::Relaxed)
    );
    assert!(
        max < Duration::from_secs(3),
        "good client's scrapes took up to {max:?}: {took:?}"
    );
}
