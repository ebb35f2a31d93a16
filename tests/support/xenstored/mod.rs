//! `TestXenstored`: an in-process xenstore daemon on a unix socket speaking the
//! real xenstore wire protocol, for integration tests (std threads, no runtime).
//!
//! Point clients at it with `XENSTORED_PATH=<socket>`. Every connection is
//! treated as dom0 (relative paths resolve under `/local/domain/0`).
#![allow(dead_code)]

mod server;
mod store;
mod wire;

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use server::Shared;
use std::collections::BTreeMap;
use store::Op;
/// Message type numbers, for [`Served::of`].
#[allow(unused_imports)]
pub use wire::ty;

/// The accept loop of one serving period (between start/restart and kill).
struct Listening {
    stop: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

/// A test xenstore daemon; the store outlives `kill`/`restart` cycles.
pub struct TestXenstored {
    path: PathBuf,
    shared: Arc<Shared>,
    listening: Option<Listening>,
}

impl TestXenstored {
    /// Binds `socket_path` (replacing a stale socket file) and serves in the
    /// background. Panics if the socket cannot be bound.
    pub fn start(socket_path: &Path) -> TestXenstored {
        let mut xsd = TestXenstored {
            path: socket_path.to_path_buf(),
            shared: Arc::new(Shared::default()),
            listening: None,
        };
        xsd.restart();
        xsd
    }

    /// The socket path (the value for `XENSTORED_PATH`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Points this process's xenstore clients at this daemon (`XENSTORED_PATH`, which
    /// `XsTokio::new()` reads on connect). The caller makes sure nothing else changes the
    /// environment meanwhile: each test binary does it under its own lock, or before it starts
    /// any other thread; other Rust readers go through std's environment lock.
    pub fn serve_this_process(&self) {
        // Edition 2024 makes set_var unsafe; the crate denies unsafe_code.
        #[allow(unsafe_code)]
        // SAFETY: see above; the callers serialise their writes to the environment.
        unsafe {
            std::env::set_var("XENSTORED_PATH", self.path())
        };
    }

    /// A domain as the xenstore tests and bench use it: `vm<id>` with `uuid`, 1 GiB target and
    /// static-max, and a five-key xentinel guest report written at `timestamp`.
    pub fn add_reporting_domain(&self, id: u32, uuid: &str, timestamp: u64) {
        self.introduce_domain(id, &format!("vm{id}"), uuid, 1 << 20);
        self.write(&format!("/local/domain/{id}/memory/static-max"), "1048576");
        for (k, v) in [
            ("pgfault", "1000"),
            ("pgmajfault", "10"),
            ("mem_available_bytes", "4096"),
            ("swap_used_bytes", "0"),
            ("timestamp", &timestamp.to_string()),
        ] {
            self.write(&format!("/local/domain/{id}/data/xentinel/{k}"), v);
        }
    }

    /// [`Self::serve_this_process`], and the one-worker runtime a source under test runs on.
    pub fn client_runtime(&self) -> tokio::runtime::Runtime {
        self.serve_this_process();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    }

    /// Every request served since the start (or the last [`Self::reset_served`]),
    /// by type; watch events sent and the test's own direct calls are not counted.
    pub fn served(&self) -> Served {
        Served(self.shared.lock().served.clone())
    }

    /// Zeroes the counts of [`Self::served`].
    pub fn reset_served(&self) {
        self.shared.lock().served.clear();
    }

    /// Reads several nodes at one instant (under the daemon's lock, as a
    /// reader's transaction would see them); `None` for a missing node.
    pub fn read_many(&self, paths: &[&str]) -> Vec<Option<String>> {
        let st = self.shared.lock();
        paths
            .iter()
            .map(|p| {
                let v = st.store.read(&canonical(p)).ok()?;
                Some(String::from_utf8_lossy(v).into_owned())
            })
            .collect()
    }

    /// Writes a node (creating parents) and fires watches. Panics on an invalid path.
    pub fn write(&self, path: &str, value: &str) {
        let path = canonical(path);
        self.shared
            .lock()
            .apply(&Op::Write(path, value.as_bytes().to_vec()))
            .unwrap();
    }

    /// Writes a node (creating parents) without firing any watch: a change
    /// whose event was lost. Panics on an invalid path.
    pub fn write_unwatched(&self, path: &str, value: &str) {
        let path = canonical(path);
        self.shared
            .lock()
            .store
            .apply(&Op::Write(path, value.as_bytes().to_vec()))
            .unwrap();
    }

    /// Reads a node's value (lossy UTF-8), `None` if it does not exist.
    pub fn read(&self, path: &str) -> Option<String> {
        let st = self.shared.lock();
        let value = st.store.read(&canonical(path)).ok()?;
        Some(String::from_utf8_lossy(value).into_owned())
    }

    /// Removes a node and its subtree, firing watches; absent nodes are ignored.
    pub fn rm(&self, path: &str) {
        let _ = self.shared.lock().apply(&Op::Rm(canonical(path)));
    }

    /// Plays a toolstack creating a domain: writes `/local/domain/<id>/{name,
    /// vm,domid,memory/target}` and `/vm/<uuid>/{name,uuid}`, marks the domain
    /// introduced and fires `@introduceDomain`.
    pub fn introduce_domain(&self, domid: u32, name: &str, uuid: &str, memory_target_kib: u64) {
        let home = format!("/local/domain/{domid}");
        let vm = format!("/vm/{uuid}");
        let mut st = self.shared.lock();
        let nodes = [
            (format!("{home}/name"), name.to_string()),
            (format!("{home}/vm"), vm.clone()),
            (format!("{home}/domid"), domid.to_string()),
            (
                format!("{home}/memory/target"),
                memory_target_kib.to_string(),
            ),
            (format!("{vm}/name"), name.to_string()),
            (format!("{vm}/uuid"), uuid.to_string()),
        ];
        for (path, value) in nodes {
            st.apply(&Op::Write(path, value.into_bytes())).unwrap();
        }
        st.set_introduced(domid, true);
    }

    /// Plays a domain's destruction: removes `/local/domain/<id>` (and the
    /// `/vm/<uuid>` its `vm` node points at), then fires `@releaseDomain`.
    pub fn release_domain(&self, domid: u32) {
        let home = format!("/local/domain/{domid}");
        let mut st = self.shared.lock();
        let vm = st.store.read(&format!("{home}/vm")).ok();
        let vm = vm.map(|v| String::from_utf8_lossy(v).into_owned());
        let _ = st.apply(&Op::Rm(home));
        if let Some(vm) = vm.filter(|v| v.starts_with("/vm/")) {
            if let Ok(vm) = store::canonicalize(&vm) {
                let _ = st.apply(&Op::Rm(vm));
            }
        }
        st.set_introduced(domid, false);
    }

    /// Stops serving: closes the listener and every client connection
    /// (clients see EOF), drops their watches and transactions, and removes
    /// the socket file. The store is kept. Idempotent.
    pub fn kill(&mut self) {
        if let Some(listening) = self.listening.take() {
            listening.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept(); the loop sees `stop` and exits.
            let _ = UnixStream::connect(&self.path);
            let _ = listening.accept.join();
            let _ = std::fs::remove_file(&self.path);
        }
        self.shared.disconnect_all();
    }

    /// Serves again on the same path with the same store (no-op if serving).
    pub fn restart(&mut self) {
        if self.listening.is_some() {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path)
            .unwrap_or_else(|e| panic!("binding xenstored socket {}: {e}", self.path.display()));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (stop, shared) = (Arc::clone(&stop), Arc::clone(&self.shared));
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        shared.serve_conn(stream);
                    }
                }
            })
        };
        self.listening = Some(Listening { stop, accept });
    }
}

/// Counts of requests served, by message type (see [`ty`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Served(BTreeMap<(u32, bool), u64>);

impl Served {
    /// Requests of type `ty`, in a transaction or not.
    pub fn of(&self, ty: u32) -> u64 {
        self.outside_tx(ty) + self.in_tx(ty)
    }

    /// Requests of type `ty` sent outside any transaction.
    pub fn outside_tx(&self, ty: u32) -> u64 {
        self.0.get(&(ty, false)).copied().unwrap_or(0)
    }

    /// Requests of type `ty` sent inside a transaction.
    pub fn in_tx(&self, ty: u32) -> u64 {
        self.0.get(&(ty, true)).copied().unwrap_or(0)
    }

    /// Every request served.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

impl Drop for TestXenstored {
    fn drop(&mut self) {
        self.kill();
    }
}

fn canonical(path: &str) -> String {
    store::canonicalize(path).unwrap_or_else(|e| panic!("invalid xenstore path {path:?}: {e}"))
}
