//! Daemon state shared by all connections (store, watches, transactions,
//! introduced domains), request dispatch, and the per-connection threads.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use super::store::{self, Change, DOM0_HOME, Errno, Op, Store};
use super::wire::{self, Msg, PAYLOAD_MAX, ty};

/// Special watch path fired when a domain is introduced.
pub const INTRODUCE_DOMAIN: &str = "@introduceDomain";
/// Special watch path fired when a domain is released.
pub const RELEASE_DOMAIN: &str = "@releaseDomain";

struct Watch {
    /// Canonical node path, or a special `@...` path.
    path: String,
    /// The path as the client gave it (echoed in the initial event).
    given: String,
    token: String,
    /// Relative watches get event paths relative to [`DOM0_HOME`].
    relative: bool,
}

struct Transaction {
    store: Store,
    ops: Vec<Op>,
}

struct Conn {
    out: Sender<Vec<u8>>,
    /// A handle on the socket so `kill` can shut it down under the reader.
    stream: UnixStream,
    watches: Vec<Watch>,
    txs: HashMap<u32, Transaction>,
}

/// Everything behind the daemon's one lock.
#[derive(Default)]
pub struct State {
    pub store: Store,
    introduced: BTreeSet<u32>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    next_tx: u32,
    /// Requests served, by (message type, inside a transaction).
    pub served: BTreeMap<(u32, bool), u64>,
}

/// The lock plus the reader threads of live connections (joined on kill).
#[derive(Default)]
pub struct Shared {
    state: Mutex<State>,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    /// Locks the state, shrugging off poison from a panicked test thread.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an accepted connection and spawns its reader and writer threads.
    pub fn serve_conn(self: &Arc<Self>, stream: UnixStream) {
        let (Ok(reader), Ok(writer)) = (stream.try_clone(), stream.try_clone()) else {
            return;
        };
        let (out, rx) = mpsc::channel::<Vec<u8>>();
        let id = {
            let mut st = self.lock();
            st.next_conn += 1;
            let id = st.next_conn;
            let conn = Conn {
                out,
                stream,
                watches: Vec::new(),
                txs: HashMap::new(),
            };
            st.conns.insert(id, conn);
            id
        };
        thread::spawn(move || {
            let mut writer = writer;
            for bytes in rx {
                if writer.write_all(&bytes).is_err() {
                    break;
                }
            }
        });
        let shared = Arc::clone(self);
        let handle = thread::spawn(move || {
            let mut reader = reader;
            while let Ok(Some(msg)) = Msg::read_from(&mut reader) {
                shared.lock().handle(id, msg);
            }
            // EOF, error or oversized message: drop the client, its watches
            // and transactions; dropping `out` ends the writer thread.
            let _ = reader.shutdown(Shutdown::Both);
            shared.lock().conns.remove(&id);
        });
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// Shuts down every client socket (clients see EOF) and waits for the
    /// connection threads to clean up.
    pub fn disconnect_all(&self) {
        for conn in self.lock().conns.values() {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(|e| e.into_inner()));
        for handle in readers {
            let _ = handle.join();
        }
    }
}

fn text(arg: &[u8]) -> Result<&str, Errno> {
    std::str::from_utf8(arg).map_err(|_| "EINVAL")
}

fn parse_domid(args: &[&[u8]]) -> Result<u32, Errno> {
    let first = args.first().ok_or("EINVAL")?;
    text(first)?.parse().map_err(|_| "EINVAL")
}

fn valid_perm(p: &str) -> bool {
    let mut chars = p.chars();
    matches!(chars.next(), Some('n' | 'r' | 'w' | 'b'))
        && !chars.as_str().is_empty()
        && chars.all(|c| c.is_ascii_digit())
}

const OK: &[u8] = b"OK\0";

impl State {
    /// Applies `op` to the live store and fires the watches it triggers.
    pub fn apply(&mut self, op: &Op) -> Result<(), Errno> {
        if let Some(change) = self.store.apply(op)? {
            self.fire(&change);
        }
        Ok(())
    }

    /// Marks a domain introduced (or not) and fires the matching special watch.
    pub fn set_introduced(&mut self, domid: u32, introduced: bool) {
        if introduced {
            self.introduced.insert(domid);
            self.fire_special(INTRODUCE_DOMAIN);
        } else {
            self.introduced.remove(&domid);
            self.fire_special(RELEASE_DOMAIN);
        }
    }

    fn send(&self, conn: &Conn, path: &str, token: &str) {
        let payload = wire::nul_joined(&[path, token]);
        let event = Msg {
            ty: ty::WATCH_EVENT,
            req_id: 0,
            tx_id: 0,
            payload,
        };
        let _ = conn.out.send(event.encode());
    }

    fn fire_special(&self, special: &str) {
        for conn in self.conns.values() {
            for w in conn.watches.iter().filter(|w| w.path == special) {
                self.send(conn, special, &w.token);
            }
        }
    }

    /// Fires watches on the changed node or an ancestor (event names the
    /// node) and, for removals, watches below it (event names the watch).
    fn fire(&self, change: &Change) {
        let (path, removed) = match change {
            Change::Node(p) => (p.as_str(), false),
            Change::Removed(p) => (p.as_str(), true),
        };
        let under = |child: &str, parent: &str| {
            child == parent || parent == "/" || child.starts_with(&format!("{parent}/"))
        };
        for conn in self.conns.values() {
            for w in conn.watches.iter().filter(|w| w.path.starts_with('/')) {
                let event_path = if under(path, &w.path) {
                    path
                } else if removed && under(&w.path, path) {
                    w.path.as_str()
                } else {
                    continue;
                };
                let shown = match event_path.strip_prefix(&format!("{DOM0_HOME}/")) {
                    Some(rel) if w.relative => rel,
                    _ => event_path,
                };
                self.send(conn, shown, &w.token);
            }
        }
    }

    /// Handles one request and queues its reply (and, for WATCH, the initial event).
    fn handle(&mut self, conn_id: u64, msg: Msg) {
        *self.served.entry((msg.ty, msg.tx_id != 0)).or_insert(0) += 1;
        let result = self.dispatch(conn_id, &msg);
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let (ty, payload) = match result {
            Ok(p) if p.len() <= PAYLOAD_MAX => (msg.ty, p),
            Ok(_) => (ty::ERROR, b"E2BIG\0".to_vec()),
            Err(errno) => (ty::ERROR, wire::nul_joined(&[errno])),
        };
        let reply = Msg {
            ty,
            req_id: msg.req_id,
            tx_id: msg.tx_id,
            payload,
        };
        let _ = conn.out.send(reply.encode());
        if msg.ty == ty::WATCH && ty == ty::WATCH {
            // Real xenstored fires every new watch once, right after the reply.
            let w = conn.watches.last().unwrap();
            self.send(conn, &w.given, &w.token);
        }
    }

    fn dispatch(&mut self, conn_id: u64, msg: &Msg) -> Result<Vec<u8>, Errno> {
        let args = wire::split_args(&msg.payload);
        let path = || -> Result<String, Errno> {
            store::canonicalize(text(args.first().ok_or("EINVAL")?)?)
        };
        match msg.ty {
            ty::READ => Ok(self.view(conn_id, msg.tx_id)?.read(&path()?)?.to_vec()),
            ty::DIRECTORY => Ok(wire::nul_joined(
                self.view(conn_id, msg.tx_id)?.directory(&path()?)?,
            )),
            ty::GET_PERMS => Ok(wire::nul_joined(
                self.view(conn_id, msg.tx_id)?.perms(&path()?)?,
            )),
            ty::WRITE => {
                let nul = msg.payload.iter().position(|&b| b == 0).ok_or("EINVAL")?;
                let target = store::canonicalize(text(&msg.payload[..nul])?)?;
                let value = msg.payload[nul + 1..].to_vec();
                self.change(conn_id, msg.tx_id, Op::Write(target, value))
            }
            ty::MKDIR => self.change(conn_id, msg.tx_id, Op::Mkdir(path()?)),
            ty::RM => self.change(conn_id, msg.tx_id, Op::Rm(path()?)),
            ty::SET_PERMS => {
                let perms = args[1..]
                    .iter()
                    .map(|p| text(p).map(str::to_string))
                    .collect::<Result<Vec<_>, _>>()?;
                if perms.is_empty() || !perms.iter().all(|p| valid_perm(p)) {
                    return Err("EINVAL");
                }
                self.change(conn_id, msg.tx_id, Op::SetPerms(path()?, perms))
            }
            ty::WATCH => self.watch(conn_id, &args),
            ty::UNWATCH => {
                let [given, token] = args[..] else {
                    return Err("EINVAL");
                };
                let (given, token) = (text(given)?, text(token)?);
                let watches = &mut self.conns.get_mut(&conn_id).ok_or("EINVAL")?.watches;
                let at = watches
                    .iter()
                    .position(|w| w.given == given && w.token == token);
                watches.remove(at.ok_or("ENOENT")?);
                Ok(OK.to_vec())
            }
            ty::RESET_WATCHES => {
                let conn = self.conns.get_mut(&conn_id).ok_or("EINVAL")?;
                conn.watches.clear();
                conn.txs.clear();
                Ok(OK.to_vec())
            }
            ty::TRANSACTION_START => {
                if msg.tx_id != 0 {
                    return Err("EBUSY");
                }
                self.next_tx += 1;
                let id = self.next_tx;
                let tx = Transaction {
                    store: self.store.clone(),
                    ops: Vec::new(),
                };
                self.conns
                    .get_mut(&conn_id)
                    .ok_or("EINVAL")?
                    .txs
                    .insert(id, tx);
                Ok(wire::nul_joined(&[id.to_string()]))
            }
            ty::TRANSACTION_END => self.end_transaction(conn_id, msg.tx_id, &args),
            ty::GET_DOMAIN_PATH => Ok(wire::nul_joined(&[format!(
                "/local/domain/{}",
                parse_domid(&args)?
            )])),
            ty::IS_DOMAIN_INTRODUCED => {
                let domid = parse_domid(&args)?;
                let yes = domid == 0 || self.introduced.contains(&domid);
                Ok(if yes { b"T\0" } else { b"F\0" }.to_vec())
            }
            ty::INTRODUCE => {
                if args.len() < 3 {
                    return Err("EINVAL");
                }
                self.set_introduced(parse_domid(&args)?, true);
                Ok(OK.to_vec())
            }
            ty::RELEASE => {
                let domid = parse_domid(&args)?;
                if !self.introduced.contains(&domid) {
                    return Err("ENOENT");
                }
                self.set_introduced(domid, false);
                Ok(OK.to_vec())
            }
            ty::RESUME | ty::SET_TARGET => Ok(OK.to_vec()),
            ty::CONTROL => Err("ENOSYS"),
            _ => Err("EINVAL"),
        }
    }

    /// The tree a request sees: the live store or its transaction's copy.
    fn view(&self, conn_id: u64, tx_id: u32) -> Result<&Store, Errno> {
        if tx_id == 0 {
            return Ok(&self.store);
        }
        let conn = self.conns.get(&conn_id).ok_or("EINVAL")?;
        Ok(&conn.txs.get(&tx_id).ok_or("ENOENT")?.store)
    }

    /// Applies a change now, or logs it in the transaction for commit.
    fn change(&mut self, conn_id: u64, tx_id: u32, op: Op) -> Result<Vec<u8>, Errno> {
        if tx_id == 0 {
            self.apply(&op)?;
        } else {
            let conn = self.conns.get_mut(&conn_id).ok_or("EINVAL")?;
            let tx = conn.txs.get_mut(&tx_id).ok_or("ENOENT")?;
            tx.store.apply(&op)?;
            tx.ops.push(op);
        }
        Ok(OK.to_vec())
    }

    /// "T" replays the transaction's changes on the live store (firing
    /// watches); "F" discards them. No conflict detection: never EAGAIN.
    fn end_transaction(
        &mut self,
        conn_id: u64,
        tx_id: u32,
        args: &[&[u8]],
    ) -> Result<Vec<u8>, Errno> {
        let commit = match args.first().copied() {
            Some(b"T") => true,
            Some(b"F") => false,
            _ => return Err("EINVAL"),
        };
        let conn = self.conns.get_mut(&conn_id).ok_or("EINVAL")?;
        let tx = conn.txs.remove(&tx_id).ok_or("ENOENT")?;
        if commit {
            for op in &tx.ops {
                // An op that no longer applies (parent gone) is skipped.
                let _ = self.apply(op);
            }
        }
        Ok(OK.to_vec())
    }

    fn watch(&mut self, conn_id: u64, args: &[&[u8]]) -> Result<Vec<u8>, Errno> {
        let [given, token] = args[..] else {
            return Err("EINVAL");
        };
        let (given, token) = (text(given)?.to_string(), text(token)?.to_string());
        let path = if given.starts_with('@') {
            given.clone()
        } else {
            store::canonicalize(&given)?
        };
        let conn = self.conns.get_mut(&conn_id).ok_or("EINVAL")?;
        if conn
            .watches
            .iter()
            .any(|w| w.path == path && w.token == token)
        {
            return Err("EEXIST");
        }
        let relative = !given.starts_with('/') && !given.starts_with('@');
        conn.watches.push(Watch {
            path,
            given,
            token,
            relative,
        });
        Ok(OK.to_vec())
    }
}
