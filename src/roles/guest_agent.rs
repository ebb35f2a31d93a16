//! The guest agent (`xentinel guest-agent`): runs inside a domU and writes
//! its page faults, MemAvailable and swap use into its own xenstore
//! `data/xentinel/` keys, where dom0's exporter reads them.
//!
//! Every interval it reads `/proc`; it writes only when a value changed, and
//! then only the changed keys (with the timestamp), all in one xenstore
//! transaction so a reader never sees half a report. Every `--refresh` it
//! rewrites all keys even when nothing changed: libxl does not carry `data/`
//! across a live migration. It reconnects after any xenstore error.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::xs_tx::XsConn;
use crate::guest;

/// Flags of `xentinel guest-agent`.
#[derive(Debug, Args)]
pub struct GuestAgentArgs {
    /// How often to read /proc and publish what changed (e.g. 1s, 5s).
    #[arg(long = "interval", default_value = "5s", value_parser = crate::config::parse_duration)]
    pub interval: std::time::Duration,

    /// Rewrite every key at least this often, changed or not (xenstore's data/ is not carried across a live migration).
    #[arg(long = "refresh", default_value = "60s", value_parser = crate::config::parse_duration)]
    pub refresh: std::time::Duration,

    /// Where procfs is mounted.
    #[arg(long = "path.procfs", default_value = "/proc")]
    pub procfs: PathBuf,

    /// Probe target to publish for dom0's domain probe (`tcp://host:port` or `http://host:port/path`).
    #[arg(long = "probe")]
    pub probe: Option<String>,

    /// Publish one report and exit (non-zero when xenstore cannot be written).
    #[arg(long = "once")]
    pub once: bool,
}

/// One report, read from `/proc`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    pub pgfault: u64,
    pub pgmajfault: u64,
    pub mem_available_bytes: u64,
    pub swap_used_bytes: u64,
}

/// A `/proc` field that is missing (or not a number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} not found")]
pub struct MissingField(&'static str);

/// Parses `/proc/vmstat` and `/proc/meminfo` texts.
pub fn parse(vmstat: &str, meminfo: &str) -> Result<Report, MissingField> {
    let field = |text: &str, key: &'static str| -> Result<u64, MissingField> {
        text.lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next()?.trim_end_matches(':') == key).then(|| it.next()?.parse::<u64>().ok())?
            })
            .ok_or(MissingField(key))
    };
    let swap_total = field(meminfo, "SwapTotal").unwrap_or(0);
    let swap_free = field(meminfo, "SwapFree").unwrap_or(0);
    Ok(Report {
        pgfault: field(vmstat, "pgfault")?,
        pgmajfault: field(vmstat, "pgmajfault")?,
        mem_available_bytes: field(meminfo, "MemAvailable")? * 1024,
        swap_used_bytes: swap_total.saturating_sub(swap_free) * 1024,
    })
}

fn read_report(procfs: &std::path::Path) -> anyhow::Result<Report> {
    let vm_path = procfs.join("vmstat");
    let mi_path = procfs.join("meminfo");
    let vm = std::fs::read_to_string(&vm_path).with_context(|| vm_path.display().to_string())?;
    let mi = std::fs::read_to_string(&mi_path).with_context(|| mi_path.display().to_string())?;
    Ok(parse(&vm, &mi)?)
}

/// The keys of a report and their values, the timestamp aside.
fn values(r: &Report, probe: Option<&str>) -> Vec<(&'static str, String)> {
    let mut v = vec![
        (guest::KEY_PGFAULT, r.pgfault.to_string()),
        (guest::KEY_PGMAJFAULT, r.pgmajfault.to_string()),
        (guest::KEY_MEM_AVAILABLE, r.mem_available_bytes.to_string()),
        (guest::KEY_SWAP_USED, r.swap_used_bytes.to_string()),
    ];
    if let Some(p) = probe {
        v.push((guest::KEY_PROBE, p.to_string()));
    }
    v
}

/// What to write: every key when `last` is `None` (a refresh), else the
/// keys whose value differs from `last` and any key missing from `present`
/// (the directory as the transaction sees it: a migrated guest has none);
/// the timestamp whenever anything is written.
fn to_write(
    now: &[(&'static str, String)],
    last: Option<&[(&'static str, String)]>,
    present: &[String],
    unix_now: u64,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = now
        .iter()
        .filter(|(k, v)| {
            let changed = last.is_none_or(|l| !l.iter().any(|(lk, lv)| lk == k && lv == v));
            changed || !present.iter().any(|p| p == k)
        })
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    if !out.is_empty() || last.is_none() {
        out.push((guest::KEY_TIMESTAMP.to_string(), unix_now.to_string()));
    }
    out
}

/// Writes the report in one transaction; `last` as in [`to_write`].
fn publish(
    xs: &mut XsConn,
    now: &[(&'static str, String)],
    last: Option<&[(&'static str, String)]>,
) -> std::io::Result<usize> {
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    xs.write_in_transaction(guest::DATA_DIR, |present| {
        to_write(now, last, present, unix_now)
    })
}

/// Runs until cancelled; `--once` publishes a single report and returns.
pub async fn run(a: GuestAgentArgs) -> anyhow::Result<()> {
    let mut conn: Option<XsConn> = None;
    // What was last written and when every key was last rewritten.
    let mut last: Option<(Vec<(&'static str, String)>, Instant)> = None;
    let mut failing = false;
    loop {
        let report = read_report(&a.procfs).context("cannot read guest statistics")?;
        let now = values(&report, a.probe.as_deref());
        let refresh = last
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= a.refresh);
        let changed = last.as_ref().is_none_or(|(l, _)| *l != now);
        if refresh || changed {
            let prev = if refresh {
                None
            } else {
                last.as_ref().map(|(l, _)| l.clone())
            };
            // Blocking, on the agent's one thread (the binary runs it on a
            // current-thread runtime): nothing else waits meanwhile.
            let res = match conn.take() {
                Some(xs) => Ok(xs),
                None => XsConn::open(),
            }
            .and_then(|mut xs| publish(&mut xs, &now, prev.as_deref()).map(|_| xs));
            match res {
                Ok(xs) => {
                    conn = Some(xs);
                    if failing {
                        log::info!("publishing to xenstore again");
                    }
                    failing = false;
                    let at = match (&last, refresh) {
                        (Some((_, at)), false) => *at,
                        _ => Instant::now(),
                    };
                    last = Some((now, at));
                }
                Err(e) => {
                    // Everything is written again on the next connection.
                    last = None;
                    if a.once {
                        anyhow::bail!(
                            "cannot write to xenstore (/dev/xen/xenbus or XENSTORED_PATH): {e}"
                        );
                    }
                    if !failing {
                        log::error!("cannot write to xenstore, will retry: {e}");
                    }
                    failing = true;
                }
            }
        }
        if a.once {
            return Ok(());
        }
        tokio::time::sleep(a.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let vm = "nr_free_pages 100\npgfault 123456\npgmajfault 78\n";
        let mi =
            "MemTotal: 200 kB\nMemAvailable:     1000 kB\nSwapTotal: 500 kB\nSwapFree: 300 kB\n";
        let r = parse(vm, mi).unwrap();
        assert_eq!(
            r,
            Report {
                pgfault: 123_456,
                pgmajfault: 78,
                mem_available_bytes: 1_024_000,
                swap_used_bytes: 204_800
            }
        );
        assert!(
            parse("pgfault 1\n", mi)
                .unwrap_err()
                .to_string()
                .contains("pgmajfault")
        );
    }

    #[test]
    fn writes_what_changed_or_is_missing_and_everything_on_refresh() {
        let r = |f: u64| Report {
            pgfault: f,
            pgmajfault: 1,
            mem_available_bytes: 4096,
            swap_used_bytes: 0,
        };
        let keys = |w: &[(String, String)]| w.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        let all: Vec<String> = [
            "pgfault",
            "pgmajfault",
            "mem_available_bytes",
            "swap_used_bytes",
        ]
        .map(String::from)
        .to_vec();
        let (a, b) = (
            values(&r(10), Some("tcp://x:1")),
            values(&r(11), Some("tcp://x:1")),
        );
        // A refresh writes everything, the timestamp last.
        let w = to_write(&a, None, &all, 99);
        assert_eq!(w.len(), 6);
        assert_eq!(
            w.last().unwrap(),
            &("timestamp".to_string(), "99".to_string())
        );
        // Nothing changed, nothing missing: nothing at all.
        let mut present = all.clone();
        present.push("probe".into());
        assert!(to_write(&a, Some(&a), &present, 99).is_empty());
        // One value changed: that key and the timestamp.
        assert_eq!(
            keys(&to_write(&b, Some(&a), &present, 99)),
            ["pgfault", "timestamp"]
        );
        // After a migration the directory is empty: every key again.
        assert_eq!(to_write(&b, Some(&a), &[], 99).len(), 6);
    }

    #[test]
    fn parses_this_machines_proc() {
        let r = read_report(std::path::Path::new("/proc")).unwrap();
        assert!(r.pgfault > 0 && r.mem_available_bytes > 0);
    }
}
