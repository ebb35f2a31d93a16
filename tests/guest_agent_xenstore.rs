//! The real `xentinel guest-agent` binary against the real-protocol test
//! xenstored, counting the requests it serves: a report is written in one
//! transaction (no write outside one, and a reader never sees half a report),
//! an idle guest causes no traffic at all between refreshes, a change writes
//! only the changed keys, a refresh rewrites every key, and a guest whose
//! `data/` vanished (as after a live migration) gets every key back.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::proc::{Running, bin};
use support::xenstored::{TestXenstored, ty};

const DIR: &str = "/local/domain/0/data/xentinel";
const KEYS: [&str; 5] = [
    "pgfault",
    "pgmajfault",
    "mem_available_bytes",
    "swap_used_bytes",
    "timestamp",
];

/// Writes a procfs with the given counters (atomically: write, then rename).
fn write_proc(dir: &Path, pgfault: u64, pgmajfault: u64, avail_kib: u64) {
    let put = |name: &str, text: String| {
        let tmp = dir.join(format!(".{name}"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    };
    put(
        "vmstat",
        format!("nr_free_pages 1\npgfault {pgfault}\npgmajfault {pgmajfault}\n"),
    );
    put(
        "meminfo",
        format!(
            "MemTotal: 1048576 kB\nMemAvailable: {avail_kib} kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n"
        ),
    );
}

/// Polls `done` every 10 ms for at most 10 s (a stall bound, not a speed).
fn wait(what: &str, done: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn reports_are_transactions_and_an_idle_guest_is_silent() {
    let tmp = std::env::temp_dir().join(format!("xentinel-ga-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let xsd = TestXenstored::start(&tmp.join("xenstored.sock"));
    let procfs = tmp.join("proc");
    std::fs::create_dir_all(&procfs).unwrap();
    write_proc(&procfs, 1000, 10, 1000);

    let child = std::process::Command::new(bin())
        .args(["guest-agent", "--interval", "50ms", "--refresh", "6s"])
        .arg("--path.procfs")
        .arg(&procfs)
        .env("XENSTORED_PATH", xsd.path())
        .spawn()
        .expect("spawn xentinel guest-agent");
    let _agent = Running {
        child,
        addr: String::new(),
    };
    let key = |k: &str| xsd.read(&format!("{DIR}/{k}"));
    wait("the first report", || key("timestamp").is_some());
    for k in KEYS {
        assert!(key(k).is_some(), "{k} missing from the first report");
    }
    assert_eq!(key("pgfault").as_deref(), Some("1000"));
    let first = xsd.served();
    assert_eq!(first.outside_tx(ty::WRITE), 0, "{first:?}");
    assert_eq!(first.in_tx(ty::WRITE), 5, "{first:?}");
    assert_eq!(first.of(ty::TRANSACTION_END), 1, "{first:?}");

    // Idle: 2 s of 50 ms intervals (40 readings of /proc), inside the 6 s refresh.
    xsd.reset_served();
    std::thread::sleep(Duration::from_secs(2));
    let idle = xsd.served();
    assert_eq!(idle.total(), 0, "an idle guest sent requests: {idle:?}");

    // A change: the page-fault counters move together; a reader of the two
    // (at one instant, as a transaction sees them) never sees one new and
    // one old.
    write_proc(&procfs, 2000, 20, 1000);
    let pair = || {
        let v = xsd.read_many(&[&format!("{DIR}/pgfault"), &format!("{DIR}/pgmajfault")]);
        (v[0].clone().unwrap(), v[1].clone().unwrap())
    };
    wait("the changed report", || {
        let (f, m) = pair();
        assert!(
            (f == "1000" && m == "10") || (f == "2000" && m == "20"),
            "torn report: pgfault {f}, pgmajfault {m}"
        );
        f == "2000"
    });
    let changed = xsd.served();
    assert_eq!(changed.outside_tx(ty::WRITE), 0, "{changed:?}");
    // pgfault, pgmajfault and the timestamp; nothing that did not change.
    assert_eq!(changed.in_tx(ty::WRITE), 3, "{changed:?}");
    assert_eq!(changed.of(ty::TRANSACTION_START), 1, "{changed:?}");
    assert_eq!(changed.of(ty::TRANSACTION_END), 1, "{changed:?}");

    // The refresh (6 s after the first report) rewrites every key, once.
    xsd.reset_served();
    wait("the refresh", || xsd.served().of(ty::TRANSACTION_END) == 1);
    let refresh = xsd.served();
    assert_eq!(refresh.outside_tx(ty::WRITE), 0, "{refresh:?}");
    assert_eq!(refresh.in_tx(ty::WRITE), 5, "{refresh:?}");

    // data/ gone (a live migration does not carry it): the next change
    // writes every key, not only the changed one.
    xsd.rm(DIR);
    write_proc(&procfs, 2000, 20, 2000);
    wait("the report after data/ vanished", || {
        key("mem_available_bytes").as_deref() == Some("2048000")
    });
    for k in KEYS {
        assert!(key(k).is_some(), "{k} not rewritten after data/ vanished");
    }
    assert_eq!(xsd.served().outside_tx(ty::WRITE), 0);
    // The daemon stops before its socket's directory goes.
    drop(_agent);
    drop(xsd);
    let _ = std::fs::remove_dir_all(&tmp);
}
