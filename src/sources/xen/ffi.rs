//! libxenstat at run time: dlopen, symbol resolution, and the only `unsafe` in the crate.
//!
//! Nothing links against libxen at build time: the library is opened with
//! `dlopen(RTLD_NOW | RTLD_LOCAL)` and every function used is resolved up
//! front, so a missing symbol is an error at start-up rather than a crash at
//! the first scrape. [`Xenstat`] keeps the library and one `xenstat_handle`
//! alive across scrapes, behind a mutex (libxenstat is not thread-safe), and
//! copies each `xenstat_node` into plain [`RawNode`] data before freeing it.
//! Its calls block: run them on a blocking thread.
//!
//! The crate denies `unsafe_code` (Cargo.toml `[lints]`); this module alone
//! allows it, and every block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_uint, c_ulonglong};
use std::io;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

use libloading::Library;
use libloading::os::unix::{Library as UnixLibrary, RTLD_LOCAL, RTLD_NOW};

use super::raw::{RawDomain, RawNetwork, RawNode, RawVbd, RawVcpu};

/// The names tried, in order, when no path is configured.
pub const DEFAULT_NAMES: [&str; 3] = ["libxenstat.so.4.17", "libxenstat.so.4", "libxenstat.so"];

/// `XENSTAT_VCPU | XENSTAT_NETWORK | XENSTAT_XEN_VERSION | XENSTAT_VBD`.
const XENSTAT_ALL: c_uint = 0x1 | 0x2 | 0x4 | 0x8;

// Opaque C types, never dereferenced on this side.
#[repr(C)]
struct XHandle {
    _p: [u8; 0],
}
#[repr(C)]
struct XNode {
    _p: [u8; 0],
}
#[repr(C)]
struct XDomain {
    _p: [u8; 0],
}
#[repr(C)]
struct XVcpu {
    _p: [u8; 0],
}
#[repr(C)]
struct XNetwork {
    _p: [u8; 0],
}
#[repr(C)]
struct XVbd {
    _p: [u8; 0],
}

/// Declares the function table and its loader: one field per libxenstat
/// function, named as in `xenstat.h` without the `xenstat_` prefix.
macro_rules! functions {
    ($($name:ident: fn($($arg:ty),*) -> $ret:ty;)*) => {
        struct Functions {
            $($name: unsafe extern "C" fn($($arg),*) -> $ret,)*
        }

        impl Functions {
            /// Resolves every function, or names the first one missing.
            ///
            /// # Safety
            /// `lib` must be libxenstat, whose functions have the signatures
            /// declared here (those of `xenstat.h` 4.17), and must outlive
            /// the returned table.
            unsafe fn resolve(lib: &Library) -> Result<Functions, &'static str> {
                Ok(Functions {
                    $($name: {
                        const SYMBOL: &str = concat!("xenstat_", stringify!($name));
                        // SAFETY: the caller guarantees the symbol has this
                        // signature; the pointer is copied out of the Symbol and
                        // stays valid while `lib` is loaded, which `Xenstat`
                        // ensures by owning `lib` alongside the table.
                        unsafe {
                            *lib.get::<unsafe extern "C" fn($($arg),*) -> $ret>(SYMBOL)
                                .map_err(|_| SYMBOL)?
                        }
                    },)*
                })
            }
        }
    };
}

functions! {
    init: fn() -> *mut XHandle;
    uninit: fn(*mut XHandle) -> ();
    get_node: fn(*mut XHandle, c_uint) -> *mut XNode;
    free_node: fn(*mut XNode) -> ();
    node_domain_by_index: fn(*mut XNode, c_uint) -> *mut XDomain;
    node_xen_version: fn(*mut XNode) -> *const c_char;
    node_tot_mem: fn(*mut XNode) -> c_ulonglong;
    node_free_mem: fn(*mut XNode) -> c_ulonglong;
    node_num_domains: fn(*mut XNode) -> c_uint;
    node_num_cpus: fn(*mut XNode) -> c_uint;
    node_cpu_hz: fn(*mut XNode) -> c_ulonglong;
    domain_id: fn(*mut XDomain) -> c_uint;
    domain_name: fn(*mut XDomain) -> *const c_char;
    domain_cpu_ns: fn(*mut XDomain) -> c_ulonglong;
    domain_num_vcpus: fn(*mut XDomain) -> c_uint;
    domain_vcpu: fn(*mut XDomain, c_uint) -> *mut XVcpu;
    domain_cur_mem: fn(*mut XDomain) -> c_ulonglong;
    domain_max_mem: fn(*mut XDomain) -> c_ulonglong;
    domain_ssid: fn(*mut XDomain) -> c_uint;
    domain_dying: fn(*mut XDomain) -> c_uint;
    domain_crashed: fn(*mut XDomain) -> c_uint;
    domain_shutdown: fn(*mut XDomain) -> c_uint;
    domain_paused: fn(*mut XDomain) -> c_uint;
    domain_blocked: fn(*mut XDomain) -> c_uint;
    domain_running: fn(*mut XDomain) -> c_uint;
    domain_num_networks: fn(*mut XDomain) -> c_uint;
    domain_network: fn(*mut XDomain, c_uint) -> *mut XNetwork;
    domain_num_vbds: fn(*mut XDomain) -> c_uint;
    domain_vbd: fn(*mut XDomain, c_uint) -> *mut XVbd;
    vcpu_online: fn(*mut XVcpu) -> c_uint;
    vcpu_ns: fn(*mut XVcpu) -> c_ulonglong;
    network_id: fn(*mut XNetwork) -> c_uint;
    network_rbytes: fn(*mut XNetwork) -> c_ulonglong;
    network_rpackets: fn(*mut XNetwork) -> c_ulonglong;
    network_rerrs: fn(*mut XNetwork) -> c_ulonglong;
    network_rdrop: fn(*mut XNetwork) -> c_ulonglong;
    network_tbytes: fn(*mut XNetwork) -> c_ulonglong;
    network_tpackets: fn(*mut XNetwork) -> c_ulonglong;
    network_terrs: fn(*mut XNetwork) -> c_ulonglong;
    network_tdrop: fn(*mut XNetwork) -> c_ulonglong;
    vbd_type: fn(*mut XVbd) -> c_uint;
    vbd_dev: fn(*mut XVbd) -> c_uint;
    vbd_oo_reqs: fn(*mut XVbd) -> c_ulonglong;
    vbd_rd_reqs: fn(*mut XVbd) -> c_ulonglong;
    vbd_wr_reqs: fn(*mut XVbd) -> c_ulonglong;
    vbd_rd_sects: fn(*mut XVbd) -> c_ulonglong;
    vbd_wr_sects: fn(*mut XVbd) -> c_ulonglong;
    vbd_error: fn(*mut XVbd) -> bool;
}

/// Why libxenstat could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// No candidate could be opened. `failures` holds the dlerror of each
    /// candidate that exists but failed (e.g. a missing dependency); it is
    /// empty when none of them exists.
    NotFound {
        tried: Vec<String>,
        failures: Vec<(String, String)>,
    },
    /// The library opened but lacks a function.
    MissingSymbol {
        library: String,
        symbol: &'static str,
    },
}

/// Why a node could not be read.
#[derive(Debug)]
pub enum NodeError {
    /// `xenstat_init` returned NULL (errno as it left it).
    Init(io::Error),
    /// `xenstat_get_node` returned NULL (errno as it left it).
    GetNode(io::Error),
}

/// An owned `xenstat_handle`.
struct Handle(NonNull<XHandle>);

// SAFETY: a xenstat_handle is plain heap state (fds, a xenstore connection)
// with no thread affinity; it is only ever used while holding the mutex
// around it, so moving it between threads is sound.
unsafe impl Send for Handle {}

/// A loaded libxenstat and, once initialised, its handle.
pub struct Xenstat {
    // Field order matters for drop: the handle is released in `Drop::drop`,
    // then the function table, then the library is unloaded.
    handle: Mutex<Option<Handle>>,
    f: Functions,
    library: String,
    _lib: Library,
}

impl Xenstat {
    /// Loads libxenstat from `path`, or else from the first of
    /// [`DEFAULT_NAMES`] the dynamic loader finds, and resolves every function.
    pub fn load(path: Option<&Path>) -> Result<Xenstat, LoadError> {
        let candidates: Vec<String> = match path {
            Some(p) => vec![p.display().to_string()],
            None => DEFAULT_NAMES.iter().map(|s| s.to_string()).collect(),
        };
        let mut failures = Vec::new();
        for name in &candidates {
            // SAFETY: loading a library runs its initialisers. libxenstat's
            // and its dependencies' (libxenctrl, libxenstore, ...) have no
            // preconditions beyond a normal process; RTLD_LOCAL keeps its
            // symbols out of the global namespace.
            let opened = unsafe { UnixLibrary::open(Some(name.as_str()), RTLD_NOW | RTLD_LOCAL) };
            match opened {
                Ok(lib) => {
                    let lib = Library::from(lib);
                    // SAFETY: `lib` was opened under a libxenstat name (or the
                    // path the operator configured as libxenstat) and is moved
                    // into the same `Xenstat` as the table, which it outlives.
                    let f = unsafe { Functions::resolve(&lib) }.map_err(|symbol| {
                        LoadError::MissingSymbol {
                            library: name.clone(),
                            symbol,
                        }
                    })?;
                    return Ok(Xenstat {
                        handle: Mutex::new(None),
                        f,
                        library: name.clone(),
                        _lib: lib,
                    });
                }
                Err(e) => {
                    let detail = match &e {
                        libloading::Error::DlOpen { source } => source.to_string(),
                        other => other.to_string(),
                    };
                    if !is_absent(name, &detail) {
                        failures.push((name.clone(), detail));
                    }
                }
            }
        }
        Err(LoadError::NotFound {
            tried: candidates,
            failures,
        })
    }

    /// The name or path the library was loaded from.
    pub fn library(&self) -> &str {
        &self.library
    }

    /// Calls `xenstat_init` unless a handle is already open.
    pub fn init(&self) -> Result<(), NodeError> {
        let mut guard = self.lock();
        self.ensure_handle(&mut guard).map(|_| ())
    }

    /// Reads one node with `XENSTAT_ALL` and copies it out. After a failure
    /// the handle is closed, so the next call starts with a fresh `xenstat_init`.
    pub fn node(&self) -> Result<RawNode, NodeError> {
        let mut guard = self.lock();
        let handle = self.ensure_handle(&mut guard)?;
        // SAFETY: `handle` is a live handle from xenstat_init, used by this
        // thread only (we hold the lock).
        let node = unsafe { (self.f.get_node)(handle.as_ptr(), XENSTAT_ALL) };
        let Some(node) = NonNull::new(node) else {
            let err = io::Error::last_os_error();
            if let Some(h) = guard.take() {
                // SAFETY: `h` came from xenstat_init and is not used again.
                unsafe { (self.f.uninit)(h.0.as_ptr()) };
            }
            return Err(NodeError::GetNode(err));
        };
        // SAFETY: `node` is a live node from xenstat_get_node with every
        // collector requested; it is freed right after and not used again.
        let raw = unsafe { self.copy_node(node.as_ptr()) };
        // SAFETY: as above; the node came from xenstat_get_node.
        unsafe { (self.f.free_node)(node.as_ptr()) };
        Ok(raw)
    }

    fn lock(&self) -> MutexGuard<'_, Option<Handle>> {
        // A panic while holding the lock can only come from copying (Rust
        // allocation), never from inside libxenstat, so the handle is intact.
        self.handle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ensure_handle(&self, slot: &mut Option<Handle>) -> Result<NonNull<XHandle>, NodeError> {
        if let Some(h) = slot {
            return Ok(h.0);
        }
        // SAFETY: xenstat_init takes no arguments; it returns NULL on failure
        // (having printed the reason to stderr) or an owned handle.
        let h = unsafe { (self.f.init)() };
        match NonNull::new(h) {
            Some(h) => {
                *slot = Some(Handle(h));
                Ok(h)
            }
            None => Err(NodeError::Init(io::Error::last_os_error())),
        }
    }

    /// Copies a node into plain data.
    ///
    /// # Safety
    /// `node` must be a live `xenstat_node` obtained with `XENSTAT_ALL` from
    /// this library, not freed before this returns.
    unsafe fn copy_node(&self, node: *mut XNode) -> RawNode {
        let f = &self.f;
        // SAFETY: per this function's contract, `node` is live; the getters
        // only read it. Domains, vCPUs, vifs and vbds are looked up by index
        // within the counts libxenstat reports, NULL results are skipped, and
        // strings are copied before the node is freed.
        unsafe {
            let num_domains = (f.node_num_domains)(node);
            let mut domains = Vec::with_capacity(num_domains as usize);
            for i in 0..num_domains {
                let d = (f.node_domain_by_index)(node, i);
                if !d.is_null() {
                    domains.push(self.copy_domain(d));
                }
            }
            RawNode {
                tot_mem: (f.node_tot_mem)(node),
                free_mem: (f.node_free_mem)(node),
                num_cpus: (f.node_num_cpus)(node),
                cpu_hz: (f.node_cpu_hz)(node),
                xen_version: string((f.node_xen_version)(node)).filter(|v| !v.is_empty()),
                domains,
            }
        }
    }

    /// # Safety
    /// `d` must be a live domain of a node read with `XENSTAT_ALL`.
    unsafe fn copy_domain(&self, d: *mut XDomain) -> RawDomain {
        let f = &self.f;
        // SAFETY: per this function's contract `d` is live and its vcpus,
        // networks and vbds arrays were filled (XENSTAT_ALL); each element is
        // fetched by an index below the count libxenstat reports for it.
        unsafe {
            let num_vcpus = (f.domain_num_vcpus)(d);
            let mut vcpus = Vec::with_capacity(num_vcpus as usize);
            for id in 0..num_vcpus {
                let v = (f.domain_vcpu)(d, id);
                if !v.is_null() {
                    vcpus.push(RawVcpu {
                        id,
                        online: (f.vcpu_online)(v) != 0,
                        ns: (f.vcpu_ns)(v),
                    });
                }
            }
            let mut networks = Vec::new();
            for i in 0..(f.domain_num_networks)(d) {
                let n = (f.domain_network)(d, i);
                if !n.is_null() {
                    networks.push(RawNetwork {
                        id: (f.network_id)(n),
                        rbytes: (f.network_rbytes)(n),
                        rpackets: (f.network_rpackets)(n),
                        rerrs: (f.network_rerrs)(n),
                        rdrop: (f.network_rdrop)(n),
                        tbytes: (f.network_tbytes)(n),
                        tpackets: (f.network_tpackets)(n),
                        terrs: (f.network_terrs)(n),
                        tdrop: (f.network_tdrop)(n),
                    });
                }
            }
            let mut vbds = Vec::new();
            for i in 0..(f.domain_num_vbds)(d) {
                let b = (f.domain_vbd)(d, i);
                if !b.is_null() {
                    vbds.push(RawVbd {
                        back_type: (f.vbd_type)(b),
                        dev: (f.vbd_dev)(b),
                        oo_reqs: (f.vbd_oo_reqs)(b),
                        rd_reqs: (f.vbd_rd_reqs)(b),
                        wr_reqs: (f.vbd_wr_reqs)(b),
                        rd_sects: (f.vbd_rd_sects)(b),
                        wr_sects: (f.vbd_wr_sects)(b),
                        error: (f.vbd_error)(b),
                    });
                }
            }
            RawDomain {
                id: (f.domain_id)(d),
                name: string((f.domain_name)(d)),
                cpu_ns: (f.domain_cpu_ns)(d),
                num_vcpus,
                vcpus,
                cur_mem: (f.domain_cur_mem)(d),
                max_mem: (f.domain_max_mem)(d),
                ssid: (f.domain_ssid)(d),
                dying: (f.domain_dying)(d) != 0,
                crashed: (f.domain_crashed)(d) != 0,
                shutdown: (f.domain_shutdown)(d) != 0,
                paused: (f.domain_paused)(d) != 0,
                blocked: (f.domain_blocked)(d) != 0,
                running: (f.domain_running)(d) != 0,
                networks,
                vbds,
            }
        }
    }
}

impl Drop for Xenstat {
    fn drop(&mut self) {
        let slot = self.handle.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = slot.take() {
            // SAFETY: `h` came from xenstat_init and is not used again; the
            // library is still loaded (it is dropped after this).
            unsafe { (self.f.uninit)(h.0.as_ptr()) };
        }
    }
}

/// Copies a C string, NULL as `None`, invalid UTF-8 replaced.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string live for this call.
unsafe fn string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per this function's contract.
    let s = unsafe { CStr::from_ptr(p) };
    Some(s.to_string_lossy().into_owned())
}

/// Whether a dlopen error says the candidate itself does not exist (as
/// opposed to, say, one of its dependencies missing).
fn is_absent(name: &str, dlerror: &str) -> bool {
    dlerror.starts_with(&format!("{name}: cannot open shared object file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_an_absent_library_from_a_broken_one() {
        assert!(is_absent(
            "libxenstat.so.4",
            "libxenstat.so.4: cannot open shared object file: No such file or directory"
        ));
        assert!(!is_absent(
            "libxenstat.so.4.17",
            "libxenctrl.so.4.17: cannot open shared object file: No such file or directory"
        ));
        assert!(!is_absent(
            "/opt/libxenstat.so",
            "/opt/libxenstat.so: invalid ELF header"
        ));
    }
}
