//! The peer list: static peers (configuration and flags) plus a peers file,
//! re-read when its modification time or size changes.
//!
//! The file is a YAML list of `{name, address}` (the shape of `heartbeat.peers`).
//! A bad or missing file is logged (once per change) and the last good list
//! is kept. Names are resolved at each change; a name that does not resolve
//! is logged and retried at every poll. A static peer wins over a file entry
//! of the same name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::mesh::PeerSpec;
use crate::config::{self, PeerConfig};

/// Where the peers come from.
#[derive(Debug, Clone)]
pub struct PeerSources {
    /// From the configuration and the command line, in order.
    pub fixed: Vec<PeerConfig>,
    /// The peers file, if any.
    pub file: Option<PathBuf>,
    /// How often the file's modification time is checked.
    pub poll: Duration,
    /// Prefer addresses of this family when a name resolves to several.
    pub ipv4: bool,
}

/// Parses a peers file's text.
pub fn parse_file(text: &str, file: &str) -> Result<Vec<PeerConfig>, config::ConfigErrors> {
    config::parse_checked(text, file, |list: &Vec<PeerConfig>| {
        config::check_peers(text, file, "", list)
    })
}

/// The merged list: fixed peers, then file peers whose names are new.
fn merged(fixed: &[PeerConfig], file: &[PeerConfig]) -> Vec<PeerConfig> {
    let mut v = fixed.to_vec();
    for p in file {
        if v.iter().any(|q| q.name == p.name) {
            log::warn!(
                "peers file: peer {:?} is also configured statically; the static entry wins",
                p.name.0.0
            );
        } else {
            v.push(p.clone());
        }
    }
    v
}

async fn resolve(list: &[PeerConfig], ipv4: bool) -> (Vec<PeerSpec>, Vec<String>) {
    let mut ok = Vec::with_capacity(list.len());
    let mut failed = Vec::new();
    for p in list {
        let addr = &p.address.0.0;
        let found: Option<SocketAddr> = match tokio::net::lookup_host(addr.as_str()).await {
            Ok(it) => {
                let all: Vec<SocketAddr> = it.collect();
                all.iter()
                    .find(|a| a.is_ipv4() == ipv4)
                    .or(all.first())
                    .copied()
            }
            Err(_) => None,
        };
        match found {
            Some(a) => ok.push(PeerSpec {
                name: p.name.0.0.clone(),
                addr: a,
            }),
            None => failed.push(format!("{}={addr}", p.name.0.0)),
        }
    }
    (ok, failed)
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Keeps `tx` up to date with the peers until every receiver is gone.
pub async fn feed(src: PeerSources, tx: watch::Sender<Vec<PeerSpec>>) {
    let mut file_peers: Vec<PeerConfig> = vec![];
    let mut seen_stamp: Option<(SystemTime, u64)> = None;
    let mut last_problem: Option<String> = None;
    let mut last_failed: Vec<String> = vec![];
    let mut dirty = true;
    loop {
        if let Some(path) = &src.file {
            let st = stamp(path);
            if st != seen_stamp || (st.is_none() && seen_stamp.is_none() && dirty) {
                seen_stamp = st;
                let name = path.display().to_string();
                let problem = match crate::config::read_text(path) {
                    Err(e) => Some(format!("cannot read peers file {name}: {e}")),
                    Ok(text) => match parse_file(&text, &name) {
                        Ok(list) => {
                            file_peers = list;
                            dirty = true;
                            None
                        }
                        Err(e) => Some(format!("{e}")),
                    },
                };
                match &problem {
                    Some(p) if last_problem.as_ref() != Some(p) => {
                        log::error!("{p}; keeping the previous peer list");
                    }
                    None if last_problem.is_some() => log::info!("peers file {name} read again"),
                    _ => {}
                }
                last_problem = problem;
            }
        }
        if dirty || !last_failed.is_empty() {
            let (list, failed) = resolve(&merged(&src.fixed, &file_peers), src.ipv4).await;
            if failed != last_failed && !failed.is_empty() {
                log::warn!("cannot resolve heartbeat peers: {}", failed.join(", "));
            }
            last_failed = failed;
            dirty = false;
            tx.send_if_modified(|cur| {
                if *cur == list {
                    false
                } else {
                    *cur = list;
                    true
                }
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(src.poll) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_file_is_a_list_of_name_and_address() {
        let l = parse_file("- name: h2\n  address: 10.0.0.2:10026\n", "p.yml").unwrap();
        assert_eq!(l[0].name.0.0, "h2");
        let text = "- name: h2\n  address: nowhere\n- name: h3\n  adress: x:1\n- name: h4\n  address: h:1\n- name: h4\n  address: h:2\n";
        let e = parse_file(text, "p.yml").unwrap_err().0;
        let got: Vec<_> = e
            .iter()
            .map(|e| (e.line, e.column, e.field.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, 12, "[0].address"),
                (3, 1, "[1]"),
                (4, 3, "[1].adress"),
                (7, 1, "[3]")
            ],
            "{e:#?}"
        );
        assert!(e[1].message.contains("missing"));
        assert!(e[3].message.contains("duplicate"));
        let dup = parse_file(
            "- {name: a, address: \"h:1\"}\n- {name: a, address: \"h:2\"}\n",
            "p",
        )
        .unwrap_err();
        assert!(dup.to_string().contains("duplicate"));
    }

    #[tokio::test]
    async fn the_file_is_followed_and_a_bad_one_keeps_the_old_list() {
        let path = std::env::temp_dir().join(format!("xentinel-peers-{}.yml", std::process::id()));
        std::fs::write(
            &path,
            "- name: b\n  address: 127.0.0.1:7001\n- name: c\n  address: 127.0.0.1:7002\n",
        )
        .unwrap();
        let fixed: Vec<PeerConfig> =
            config::parse_yaml("- name: a\n  address: 127.0.0.1:7000\n", "f").unwrap();
        let (tx, mut rx) = watch::channel(vec![]);
        tokio::spawn(feed(
            PeerSources {
                fixed,
                file: Some(path.clone()),
                poll: Duration::from_millis(20),
                ipv4: true,
            },
            tx,
        ));
        let names = |v: &[PeerSpec]| v.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        rx.changed().await.unwrap();
        assert_eq!(names(&rx.borrow_and_update()), ["a", "b", "c"]);
        std::fs::write(&path, "- name: c\n  address: 127.0.0.1:7002\n").unwrap();
        tokio::time::timeout(Duration::from_secs(2), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(names(&rx.borrow_and_update()), ["a", "c"]);
        std::fs::write(&path, "- name: [broken\n").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!rx.has_changed().unwrap(), "a bad file keeps the old list");
        assert_eq!(names(&rx.borrow()), ["a", "c"]);
        drop(rx);
        let _ = std::fs::remove_file(&path);
    }
}
