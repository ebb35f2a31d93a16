//! Xenstore wire format (xen/include/public/io/xs_wire.h): message types, the
//! 16-byte native-endian header, and NUL-separated payload helpers.

use std::io::{self, Read};

/// Largest payload either side may send.
pub const PAYLOAD_MAX: usize = 4096;

/// Message type numbers (`enum xsd_sockmsg_type`).
pub mod ty {
    pub const CONTROL: u32 = 0;
    pub const DIRECTORY: u32 = 1;
    pub const READ: u32 = 2;
    pub const GET_PERMS: u32 = 3;
    pub const WATCH: u32 = 4;
    pub const UNWATCH: u32 = 5;
    pub const TRANSACTION_START: u32 = 6;
    pub const TRANSACTION_END: u32 = 7;
    pub const INTRODUCE: u32 = 8;
    pub const RELEASE: u32 = 9;
    pub const GET_DOMAIN_PATH: u32 = 10;
    pub const WRITE: u32 = 11;
    pub const MKDIR: u32 = 12;
    pub const RM: u32 = 13;
    pub const SET_PERMS: u32 = 14;
    pub const WATCH_EVENT: u32 = 15;
    pub const ERROR: u32 = 16;
    pub const IS_DOMAIN_INTRODUCED: u32 = 17;
    pub const RESUME: u32 = 18;
    pub const SET_TARGET: u32 = 19;
    pub const RESET_WATCHES: u32 = 21;
}

/// One message: header fields plus payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub ty: u32,
    pub req_id: u32,
    pub tx_id: u32,
    pub payload: Vec<u8>,
}

impl Msg {
    /// Reads one message; `Ok(None)` on a clean EOF before a header starts.
    /// A payload longer than [`PAYLOAD_MAX`] is an `InvalidData` error
    /// (xenstored drops such clients).
    pub fn read_from(r: &mut impl Read) -> io::Result<Option<Msg>> {
        let mut hdr = [0u8; 16];
        let mut got = 0;
        while got < hdr.len() {
            match r.read(&mut hdr[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let word = |i: usize| u32::from_ne_bytes(hdr[i * 4..i * 4 + 4].try_into().unwrap());
        let len = word(3) as usize;
        if len > PAYLOAD_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("payload of {len} bytes exceeds {PAYLOAD_MAX}"),
            ));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload)?;
        Ok(Some(Msg {
            ty: word(0),
            req_id: word(1),
            tx_id: word(2),
            payload,
        }))
    }

    /// Header followed by payload, ready to write to the socket.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.payload.len());
        for word in [self.ty, self.req_id, self.tx_id, self.payload.len() as u32] {
            out.extend_from_slice(&word.to_ne_bytes());
        }
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Splits a payload of NUL-terminated strings; a missing final NUL is tolerated.
pub fn split_args(payload: &[u8]) -> Vec<&[u8]> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    if payload.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0).collect()
}

/// Concatenates strings, each followed by a NUL.
pub fn nul_joined<S: AsRef<str>>(items: &[S]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(item.as_ref().as_bytes());
        out.push(0);
    }
    out
}
