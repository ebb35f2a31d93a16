//! The xenstore source's requests, counted by the real-protocol xenstored of
//! tests/support: at 100 domains a scrape with nothing changed costs a few
//! requests, not some per domain; a change costs a few more and shows on the
//! very next scrape; the periodic resync rereads everything and repairs a
//! change whose watch event was lost; a restarted xenstored is reread whole.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::xenstored::{TestXenstored, ty};
use xentinel::guest::Rejections;
use xentinel::snapshot::Collection;
use xentinel::sources::Source;
use xentinel::sources::xenstore::XenstoreSource;

/// XENSTORED_PATH is process-wide: one test at a time.
static ENV: Mutex<()> = Mutex::new(());

const N: u32 = 100;

fn socket(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("xentinel-xsw-{tag}-{}.sock", std::process::id()))
}

fn uuid(id: u32) -> String {
    format!("{id:08x}-0000-4000-8000-000000000000")
}

/// 100 domains, each with a limit and a five-key guest report.
fn populated(tag: &str) -> TestXenstored {
    let xsd = TestXenstored::start(&socket(tag));
    for id in 1..=N {
        add_domain(&xsd, id);
    }
    xsd
}

fn add_domain(xsd: &TestXenstored, id: u32) {
    xsd.add_reporting_domain(id, &uuid(id), 1);
}

struct Src {
    src: XenstoreSource,
    rt: tokio::runtime::Runtime,
}

impl Src {
    fn new(xsd: &TestXenstored, resync: Duration) -> Src {
        // Tests in this binary hold ENV while they run.
        let rt = xsd.client_runtime();
        let src = XenstoreSource::new(
            Arc::new(Rejections::default()),
            Some("/xentinel/maintenance".into()),
            Duration::from_secs(2),
        )
        .with_resync(resync);
        Src { src, rt }
    }

    fn try_scrape(&self) -> Result<Collection, String> {
        let mut out = Collection::default();
        self.rt
            .block_on(self.src.collect(&mut out))
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn scrape(&self) -> Collection {
        self.try_scrape().expect("xenstore collection")
    }

    /// A scrape and the requests xenstored served during it.
    fn counted(&self, xsd: &TestXenstored) -> (Collection, u64) {
        xsd.reset_served();
        let c = self.scrape();
        (c, xsd.served().total())
    }
}

fn name(c: &Collection, id: u32) -> Option<&str> {
    c.meta.get(&id)?.name.as_deref()
}

fn minor_faults(c: &Collection, id: u32) -> Option<u64> {
    c.meta.get(&id)?.guest.page_faults_minor
}

/// Requests of a scrape with nothing changed: the listing and the
/// maintenance key, whatever the number of domains, and room for one read
/// of a name changed just before (the migration timer reads it on its own
/// connection, asynchronously, so it may land in the next scrape's count).
const STEADY_MAX: u64 = 3;

#[test]
fn a_scrape_costs_requests_in_proportion_to_what_changed() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let xsd = populated("steady");
    let s = Src::new(&xsd, Duration::from_secs(3600));
    let (c, first) = s.counted(&xsd);
    assert_eq!(c.meta.len(), N as usize);
    assert!(
        first >= 8 * N as u64,
        "the first scrape reads everything: {first}"
    );

    for round in 0..3 {
        let (c, steady) = s.counted(&xsd);
        assert_eq!(c.meta.len(), N as usize);
        assert!(steady <= STEADY_MAX, "round {round}: {steady} requests");
        assert_eq!(xsd.served().of(ty::DIRECTORY), 1, "one listing");
        assert_eq!(name(&c, 42), Some("vm42"), "served from the table");
        assert_eq!(minor_faults(&c, 42), Some(990));
        assert_eq!(c.meta[&42].uuid.as_deref(), Some(uuid(42).as_str()));
    }

    // A rename shows on the very next scrape, for a read or two (plus the
    // migration timer's read of the new name).
    xsd.write("/local/domain/7/name", "renamed");
    let (c, n) = s.counted(&xsd);
    assert_eq!(name(&c, 7), Some("renamed"));
    assert!(n <= STEADY_MAX + 2, "rename: {n} requests");

    // So does one changed guest key.
    xsd.write("/local/domain/8/data/xentinel/pgfault", "5010");
    let (c, n) = s.counted(&xsd);
    assert_eq!(minor_faults(&c, 8), Some(5000));
    assert!(n <= STEADY_MAX + 1, "one key: {n} requests");
    assert_eq!(xsd.served().of(ty::DIRECTORY), 1, "no listing of data/");

    // Writes the exporter does not read (a device's state) cost nothing.
    xsd.write("/local/domain/9/device/vif/0/state", "4");
    let (_, n) = s.counted(&xsd);
    assert!(n <= STEADY_MAX, "unread path: {n} requests");

    // A new domain is read in full, once; a released one is gone.
    add_domain(&xsd, N + 1);
    xsd.release_domain(50);
    let (c, n) = s.counted(&xsd);
    assert_eq!(c.meta.len(), N as usize);
    assert_eq!(name(&c, N + 1), Some(format!("vm{}", N + 1).as_str()));
    assert_eq!(c.meta[&(N + 1)].uuid.as_deref(), Some(uuid(N + 1).as_str()));
    assert_eq!(minor_faults(&c, N + 1), Some(990));
    assert!(!c.meta.contains_key(&50));
    assert!(n <= STEADY_MAX + 12, "one in, one out: {n} requests");
    let (c, n) = s.counted(&xsd);
    assert!(n <= STEADY_MAX, "after the churn: {n} requests");
    assert_eq!(name(&c, 7), Some("renamed"));

    // A domid reused by a new domain gets the new domain's UUID.
    xsd.release_domain(60);
    xsd.introduce_domain(60, "reborn", &uuid(600), 1 << 20);
    let (c, _) = s.counted(&xsd);
    assert_eq!(name(&c, 60), Some("reborn"));
    assert_eq!(c.meta[&60].uuid.as_deref(), Some(uuid(600).as_str()));
    assert_eq!(
        minor_faults(&c, 60),
        None,
        "its report went with the old domain"
    );
}

#[test]
fn the_resync_rereads_everything_and_repairs_lost_events() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let xsd = populated("resync");
    // Long enough that two back-to-back scrapes on a loaded machine fall
    // inside one interval.
    let resync = Duration::from_secs(3);
    let s = Src::new(&xsd, resync);
    let t0 = std::time::Instant::now();
    s.scrape();
    // Changes whose watch events are lost.
    xsd.write_unwatched("/local/domain/3/name", "sneaky");
    xsd.write_unwatched("/local/domain/4/data/xentinel/pgfault", "7010");
    let (c, n) = s.counted(&xsd);
    assert!(
        t0.elapsed() < resync,
        "the machine took {:?} for two scrapes",
        t0.elapsed()
    );
    assert!(n <= STEADY_MAX, "{n} requests");
    assert_eq!(name(&c, 3), Some("vm3"), "no event, no reread");
    assert_eq!(minor_faults(&c, 4), Some(990));

    std::thread::sleep(resync.saturating_sub(t0.elapsed()) + Duration::from_millis(100));
    let (c, n) = s.counted(&xsd);
    assert!(
        n >= 8 * N as u64,
        "the resync reads every domain: {n} requests"
    );
    assert_eq!(name(&c, 3), Some("sneaky"));
    assert_eq!(minor_faults(&c, 4), Some(7000));
    let (_, n) = s.counted(&xsd);
    assert!(
        n <= STEADY_MAX,
        "steady again after the resync: {n} requests"
    );
}

#[test]
fn a_restarted_xenstored_is_reread_from_scratch() {
    let _g = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let mut xsd = populated("restart");
    let s = Src::new(&xsd, Duration::from_secs(3600));
    s.scrape();
    xsd.kill();
    // The scrape that finds it dead fails (a timeout: xenstore-rs never
    // answers the request in flight); the next one cannot connect.
    let mut downs = 0;
    for _ in 0..2 {
        downs += usize::from(s.try_scrape().is_err());
    }
    assert_eq!(downs, 2, "xenstored is dead");
    // Changes while it is down reach no watch.
    xsd.write("/local/domain/5/name", "while-down");
    xsd.release_domain(6);
    xsd.restart();
    let (c, n) = s.counted(&xsd);
    assert!(
        n >= 8 * (N as u64 - 1),
        "rebuilt from scratch: {n} requests"
    );
    assert_eq!(c.meta.len(), N as usize - 1);
    assert_eq!(name(&c, 5), Some("while-down"));
    assert!(!c.meta.contains_key(&6));
    let (_, n) = s.counted(&xsd);
    assert!(n <= STEADY_MAX, "steady again: {n} requests");
}
