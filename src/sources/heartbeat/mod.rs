//! Heartbeats between exporters: the `heartbeat` source.
//!
//! Each exporter pings its peers over UDP and answers theirs ([`mesh`], wire
//! format in [`packet`], bookkeeping in [`stats`], peer list in [`peers`]).
//! The mesh runs in a background task on a thread of its own; it reaches
//! `/metrics` as a source that copies its latest figures
//! ([`HeartbeatSource`]), rendered by `crate::exposition::heartbeat`.

pub mod mesh;
pub mod packet;
pub mod peers;
pub mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{DEFAULT_HEARTBEAT_PORT, HeartbeatConfig, Name};
use crate::snapshot::Collection;
use crate::sources::{BoxFuture, Source, SourceError};
pub use mesh::{Heartbeat, HeartbeatControl, MeshConfig, PeerSpec};

/// How often the peers file's modification time is checked.
pub const PEERS_FILE_POLL: Duration = Duration::from_secs(3);

/// The `heartbeat` source: a copy of the mesh's per-peer figures at each scrape.
pub struct HeartbeatSource {
    hb: Heartbeat,
}

impl HeartbeatSource {
    /// A source over a running mesh.
    pub fn new(hb: Heartbeat) -> Self {
        HeartbeatSource { hb }
    }
}

impl Source for HeartbeatSource {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    fn collect<'a>(&'a self, out: &'a mut Collection) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            out.heartbeat = Some(self.hb.stats());
            Ok(())
        })
    }
}

/// This host's name: the kernel's hostname, cut to a valid peer name.
pub fn hostname() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let h: String = h.trim().chars().take(64).collect();
    Name::parse(&h)
        .map(|n| n.0)
        .unwrap_or_else(|_| "xentinel".into())
}

/// Why the heartbeat cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read heartbeat key file {}", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: crate::config::ReadError,
    },
    #[error(
        "heartbeat key file {} holds {len} bytes; use at least 16 (e.g. head -c 32 /dev/urandom | base64)",
        path.display()
    )]
    ShortKey { path: PathBuf, len: usize },
    #[error("cannot listen for heartbeats on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Mesh(#[from] std::io::Error),
}

/// Reads a key file: its bytes, trailing newlines and spaces removed.
pub fn read_key(path: &Path) -> Result<packet::Key, StartError> {
    let raw = crate::config::read_bytes(path).map_err(|source| StartError::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    let end = raw
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    if end < 16 {
        return Err(StartError::ShortKey {
            path: path.to_path_buf(),
            len: end,
        });
    }
    Ok(packet::Key::new(&raw[..end]))
}

/// Binds the socket and starts the mesh and the peer-list task (in the
/// current runtime). Fails on a socket that cannot be bound or a bad key file.
pub fn start(cfg: &HeartbeatConfig) -> Result<Heartbeat, StartError> {
    let listen = cfg
        .listen
        .map(|l| l.0)
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], DEFAULT_HEARTBEAT_PORT)));
    let key = cfg.key_file.as_deref().map(read_key).transpose()?;
    let std_sock = std::net::UdpSocket::bind(listen).map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let name = cfg
        .name
        .as_ref()
        .map(|n| n.0.clone())
        .unwrap_or_else(hostname);
    let mesh = MeshConfig {
        name,
        interval: cfg.interval.0.0,
        down_after: cfg.down_after.0.0 as u32,
        gap_window: cfg.gap_window.0.0,
        key,
    };
    let (tx, rx) = watch::channel(vec![]);
    tokio::spawn(peers::feed(
        peers::PeerSources {
            fixed: cfg.peers.0.clone(),
            file: cfg.peers_file.0.clone(),
            poll: PEERS_FILE_POLL,
            ipv4: listen.is_ipv4(),
        },
        tx,
    ));
    log::info!(
        "heartbeat on {listen} as {:?} every {:?}, {} static peer(s){}{}",
        mesh.name,
        mesh.interval,
        cfg.peers.len(),
        cfg.peers_file
            .as_ref()
            .map(|f| format!(", peers file {}", f.display()))
            .unwrap_or_default(),
        if mesh.key.is_some() {
            ", HMAC on"
        } else {
            ", no key"
        }
    );
    Ok(Heartbeat::start_on_thread(std_sock, mesh, rx)?)
}
