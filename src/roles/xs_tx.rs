//! A small blocking xenstore client for the guest agent: it writes a set of
//! keys inside one transaction (`TRANSACTION_START`, writes, `TRANSACTION_END`
//! with a retry on `EAGAIN`), which `xenstore-rs` 0.8 does not offer. It
//! speaks the wire format of Xen's `xs_wire.h` over xenstored's unix socket
//! (`XENSTORED_PATH`, else `/run/xenstored/socket`) or, in a guest, the
//! `/dev/xen/xenbus` device.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Largest payload xenstored accepts (`XENSTORE_PAYLOAD_MAX`).
const PAYLOAD_MAX: usize = 4096;
/// How often a transaction xenstored refused with `EAGAIN` is tried again.
const ATTEMPTS: usize = 8;
/// How long a reply may take on the socket before the connection is given up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Message types used here (`enum xsd_sockmsg_type`).
mod ty {
    pub const DIRECTORY: u32 = 1;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const WRITE: u32 = 11;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR: u32 = 16;
}

/// An error xenstored answered with (`ENOENT`, `EAGAIN`, …).
#[derive(Debug, thiserror::Error)]
#[error("xenstored answered {0}")]
pub struct Errno(pub String);

/// Whether `e` is xenstored's answer `errno`.
fn is_errno(e: &io::Error, errno: &str) -> bool {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<Errno>())
        .is_some_and(|x| x.0 == errno)
}

trait Channel: Read + Write + Send {}
impl<T: Read + Write + Send> Channel for T {}

/// One connection to xenstored.
pub struct XsConn {
    io: Box<dyn Channel>,
    next_req: u32,
}

impl XsConn {
    /// Connects to xenstored's socket, else opens the xenbus device.
    pub fn open() -> io::Result<XsConn> {
        let path =
            std::env::var("XENSTORED_PATH").unwrap_or_else(|_| "/run/xenstored/socket".into());
        let io: Box<dyn Channel> = match UnixStream::connect(&path) {
            Ok(s) => {
                s.set_read_timeout(Some(REPLY_TIMEOUT))?;
                s.set_write_timeout(Some(REPLY_TIMEOUT))?;
                Box::new(s)
            }
            Err(sock) => match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/xen/xenbus")
            {
                Ok(f) => Box::new(f),
                Err(dev) => {
                    return Err(io::Error::new(
                        dev.kind(),
                        format!(
                            "cannot reach xenstored at {path} ({sock}) or /dev/xen/xenbus ({dev})"
                        ),
                    ));
                }
            },
        };
        Ok(XsConn { io, next_req: 0 })
    }

    /// Sends one request and returns its reply's payload.
    fn request(&mut self, ty: u32, tx: u32, payload: &[u8]) -> io::Result<Vec<u8>> {
        if payload.len() > PAYLOAD_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "xenstore request of {} bytes (at most {PAYLOAD_MAX})",
                    payload.len()
                ),
            ));
        }
        self.next_req = self.next_req.wrapping_add(1);
        let req = self.next_req;
        let mut msg = Vec::with_capacity(16 + payload.len());
        for v in [ty, req, tx, payload.len() as u32] {
            msg.extend_from_slice(&v.to_ne_bytes());
        }
        msg.extend_from_slice(payload);
        // One write: the xenbus device takes a message per write.
        self.io.write_all(&msg)?;
        loop {
            let mut hdr = [0u8; 16];
            self.io.read_exact(&mut hdr)?;
            let field = |i: usize| u32::from_ne_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
            let (rty, rreq, len) = (field(0), field(4), field(12) as usize);
            if len > PAYLOAD_MAX {
                return Err(bad(format!("xenstored sent a reply of {len} bytes")));
            }
            let mut body = vec![0u8; len];
            self.io.read_exact(&mut body)?;
            if rty == ty::WATCH_EVENT {
                continue;
            }
            if rreq != req {
                return Err(bad(format!("reply to request {rreq}, expected {req}")));
            }
            if rty == ty::ERROR {
                let errno = String::from_utf8_lossy(&body)
                    .trim_end_matches('\0')
                    .to_string();
                return Err(io::Error::other(Errno(errno)));
            }
            if rty != ty {
                return Err(bad(format!(
                    "reply of type {rty} to a request of type {ty}"
                )));
            }
            return Ok(body);
        }
    }

    fn directory(&mut self, tx: u32, path: &str) -> io::Result<Vec<String>> {
        let body = self.request(ty::DIRECTORY, tx, &nul_terminated(path))?;
        Ok(body
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect())
    }

    fn end(&mut self, tx: u32, commit: bool) -> io::Result<()> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        self.request(ty::TRANSACTION_END, tx, arg).map(|_| ())
    }

    /// In one transaction: lists directory `dir`, lets `pick` choose from the
    /// names found there which `(name, value)` pairs to write under `dir`,
    /// and writes them; a transaction xenstored refuses with `EAGAIN` (a
    /// conflicting change) is tried again. Returns how many keys were written.
    pub fn write_in_transaction(
        &mut self,
        dir: &str,
        pick: impl Fn(&[String]) -> Vec<(String, String)>,
    ) -> io::Result<usize> {
        for _ in 0..ATTEMPTS {
            let id = self.request(ty::TRANSACTION_START, 0, b"\0")?;
            let id = String::from_utf8_lossy(&id);
            let tx: u32 = id
                .trim_end_matches('\0')
                .parse()
                .map_err(|_| bad(format!("transaction id {id:?}")))?;
            let res = (|| {
                let present = match self.directory(tx, dir) {
                    Ok(v) => v,
                    Err(e) if is_errno(&e, "ENOENT") => Vec::new(),
                    Err(e) => return Err(e),
                };
                let pairs = pick(&present);
                for (k, v) in &pairs {
                    let mut p = format!("{dir}/{k}").into_bytes();
                    p.push(0);
                    p.extend_from_slice(v.as_bytes());
                    self.request(ty::WRITE, tx, &p)?;
                }
                Ok(pairs.len())
            })();
            match res {
                Ok(n) => match self.end(tx, true) {
                    Ok(()) => return Ok(n),
                    Err(e) if is_errno(&e, "EAGAIN") => continue,
                    Err(e) => return Err(e),
                },
                Err(e) => {
                    let _ = self.end(tx, false);
                    return Err(e);
                }
            }
        }
        Err(io::Error::other(format!(
            "xenstored refused the transaction {ATTEMPTS} times (EAGAIN)"
        )))
    }
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn bad(m: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m)
}
