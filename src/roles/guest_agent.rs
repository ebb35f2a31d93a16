//! The guest agent (`xentinel guest-agent`): runs inside a domU and every few
//! seconds writes its page faults, MemAvailable and swap use into its own
//! xenstore `data/xentinel/` keys, where dom0's exporter reads them.
//!
//! It republishes every interval (libxl does not carry `data/` across a live
//! migration) and reconnects after any xenstore error.

use std::time::Duration;

use xenstore_rs::AsyncXs;
use xenstore_rs::tokio::XsTokio;

use anyhow::Context;
use clap::Args;

use crate::guest;

/// Flags of `xentinel guest-agent`.
#[derive(Debug, Args)]
pub struct GuestAgentArgs {
    /// How often to publish (e.g. 1s, 5s).
    #[arg(long = "interval", default_value = "5s", value_parser = crate::config::parse_duration)]
    pub interval: std::time::Duration,

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

fn read_report() -> anyhow::Result<Report> {
    let vm = std::fs::read_to_string("/proc/vmstat").context("/proc/vmstat")?;
    let mi = std::fs::read_to_string("/proc/meminfo").context("/proc/meminfo")?;
    Ok(parse(&vm, &mi)?)
}

async fn publish(xs: &XsTokio, r: &Report, probe: Option<&str>) -> std::io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let d = guest::DATA_DIR;
    let pairs = [
        (guest::KEY_PGFAULT, r.pgfault),
        (guest::KEY_PGMAJFAULT, r.pgmajfault),
        (guest::KEY_MEM_AVAILABLE, r.mem_available_bytes),
        (guest::KEY_SWAP_USED, r.swap_used_bytes),
        (guest::KEY_TIMESTAMP, now),
    ];
    for (k, v) in pairs {
        xs.write(&format!("{d}/{k}"), &v.to_string()).await?;
    }
    if let Some(p) = probe {
        xs.write(&format!("{d}/{}", guest::KEY_PROBE), p).await?;
    }
    Ok(())
}

/// Runs until cancelled; `once` publishes a single report and returns.
pub async fn run(interval: Duration, probe: Option<String>, once: bool) -> anyhow::Result<()> {
    let mut conn: Option<XsTokio> = None;
    let mut failing = false;
    loop {
        let report = read_report().context("cannot read guest statistics")?;
        let res = async {
            let xs = match &conn {
                Some(xs) => xs.clone(),
                None => {
                    let xs = XsTokio::new().await?;
                    conn = Some(xs.clone());
                    xs
                }
            };
            publish(&xs, &report, probe.as_deref()).await
        }
        .await;
        match res {
            Ok(()) => {
                if failing {
                    log::info!("publishing to xenstore again");
                }
                failing = false;
            }
            Err(e) => {
                conn = None;
                if once {
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
        if once {
            return Ok(());
        }
        tokio::time::sleep(interval).await;
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
    fn parses_this_machines_proc() {
        let r = read_report().unwrap();
        assert!(r.pgfault > 0 && r.mem_available_bytes > 0);
    }
}
