//! The `xen` source: hypervisor statistics from libxenstat (what `xentop` shows).
//!
//! libxenstat is opened at run time (`ffi`), so the binary runs in a
//! minimal dom0 with nothing but glibc and Xen's own libraries; its values are
//! copied into [`raw`] types and mapped to the model by the pure [`map`].
//! When it cannot start, [`XenOpenError`] says in one sentence what is missing.

mod ffi;
pub mod map;
pub mod raw;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::snapshot::Collection;
use crate::sources::{BoxFuture, Source, SourceError};

use ffi::{LoadError, NodeError, Xenstat};

/// Why [`XenSource::open`] failed; its `Display` is one sentence naming what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XenOpenError {
    /// No candidate library could be loaded. `failures` holds
    /// (candidate, dlerror) for candidates that exist but failed to load.
    NotLoadable {
        tried: Vec<String>,
        failures: Vec<(String, String)>,
    },
    /// The library loaded but lacks a function this source uses.
    MissingSymbol {
        library: String,
        symbol: &'static str,
    },
    /// `xenstat_init` failed; `reason` names the missing piece of Xen.
    InitFailed { reason: String },
}

impl fmt::Display for XenOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XenOpenError::NotLoadable { tried, failures } => {
                write!(f, "cannot load libxenstat (tried {}", tried.join(", "))?;
                for (name, err) in failures {
                    write!(f, "; {name} failed: {err}")?;
                }
                f.write_str(
                    "): install Xen's tools (Debian: xen-utils-4.17) or pass --xen.libxenstat",
                )
            }
            XenOpenError::MissingSymbol { library, symbol } => {
                write!(f, "{library} is not a usable libxenstat: it lacks {symbol}")
            }
            XenOpenError::InitFailed { reason } => {
                write!(f, "libxenstat loaded but xenstat_init failed: {reason}")
            }
        }
    }
}

impl std::error::Error for XenOpenError {}

impl From<LoadError> for XenOpenError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::NotFound { tried, failures } => {
                XenOpenError::NotLoadable { tried, failures }
            }
            LoadError::MissingSymbol { library, symbol } => {
                XenOpenError::MissingSymbol { library, symbol }
            }
        }
    }
}

/// The `xen` source: one libxenstat handle, kept open across scrapes.
pub struct XenSource {
    xenstat: Arc<Xenstat>,
}

impl XenSource {
    /// Loads libxenstat (from `lib_path`, else `libxenstat.so.4.17`,
    /// `libxenstat.so.4`, `libxenstat.so`) and opens a handle with
    /// `xenstat_init`. Blocks briefly; call it before serving.
    pub fn open(lib_path: Option<&Path>) -> Result<XenSource, XenOpenError> {
        let xenstat = Xenstat::load(lib_path)?;
        // Without a privcmd device xenstat_init can only fail, after printing
        // libxencall's own noise: say the one sentence instead.
        if !PRIVCMD.iter().any(|p| RealHost.exists(p)) {
            let enoent = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(XenOpenError::InitFailed {
                reason: explain(&enoent, &RealHost),
            });
        }
        xenstat.init().map_err(|e| {
            let (NodeError::Init(err) | NodeError::GetNode(err)) = e;
            XenOpenError::InitFailed {
                reason: explain(&err, &RealHost),
            }
        })?;
        Ok(XenSource {
            xenstat: Arc::new(xenstat),
        })
    }

    /// The name or path libxenstat was loaded from.
    pub fn library(&self) -> &str {
        self.xenstat.library()
    }
}

impl Source for XenSource {
    fn name(&self) -> &'static str {
        "xen"
    }

    fn collect<'a>(&'a self, out: &'a mut Collection) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let xenstat = Arc::clone(&self.xenstat);
            let raw = tokio::task::spawn_blocking(move || {
                xenstat.node().map_err(|e| match e {
                    NodeError::Init(err) => {
                        format!("xenstat_init failed: {}", explain(&err, &RealHost))
                    }
                    NodeError::GetNode(err) => {
                        format!("xenstat_get_node failed: {}", explain(&err, &RealHost))
                    }
                })
            })
            .await
            .map_err(|e| SourceError(format!("libxenstat task failed: {e}")))?
            .map_err(SourceError)?;
            map::map(&raw, out);
            Ok(())
        })
    }
}

/// The files that tell what a failed libxenstat call lacked.
trait Host {
    fn exists(&self, path: &str) -> bool;
    fn read(&self, path: &str) -> Option<String>;
}

struct RealHost;

impl Host for RealHost {
    fn exists(&self, path: &str) -> bool {
        Path::new(path).exists()
    }
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
}

const PRIVCMD: [&str; 2] = ["/dev/xen/privcmd", "/proc/xen/privcmd"];
const XENSTORE: [&str; 4] = [
    "/run/xenstored/socket",
    "/var/run/xenstored/socket",
    "/dev/xen/xenbus",
    "/proc/xen/xenbus",
];

/// Names what a libxenstat failure lacked, from the devices libxenctrl and
/// libxenstore open (privcmd, then xenstored's socket or xenbus) and what
/// `/proc/xen/capabilities` and `/sys/hypervisor/type` say of this kernel.
fn explain(err: &io::Error, host: &dyn Host) -> String {
    if !PRIVCMD.iter().any(|p| host.exists(p)) {
        let on_xen = host
            .read("/sys/hypervisor/type")
            .is_some_and(|t| t.trim() == "xen");
        return if on_xen {
            "/dev/xen/privcmd (or /proc/xen/privcmd) is missing although this kernel runs on Xen: \
             load the xen-privcmd module or mount xenfs on /proc/xen"
                .to_string()
        } else {
            "/dev/xen/privcmd (or /proc/xen/privcmd) is missing: this is not dom0 of a Xen host"
                .to_string()
        };
    }
    if let Some(caps) = host.read("/proc/xen/capabilities")
        && !caps.contains("control_d")
    {
        return "/proc/xen/capabilities lacks control_d: this is a Xen guest (domU), not dom0"
            .to_string();
    }
    if err.kind() == io::ErrorKind::PermissionDenied || err.raw_os_error() == Some(1) {
        return "permission denied on the Xen privcmd device: run xentinel as root in dom0"
            .to_string();
    }
    if !XENSTORE.iter().any(|p| host.exists(p)) {
        return "xenstore is unreachable (no /run/xenstored/socket, /dev/xen/xenbus or \
                /proc/xen/xenbus): start xenstored"
            .to_string();
    }
    err.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A host made of the given files (path → contents; devices as "").
    struct FakeHost(BTreeMap<&'static str, &'static str>);

    impl FakeHost {
        fn new(files: &[(&'static str, &'static str)]) -> Self {
            FakeHost(files.iter().copied().collect())
        }
    }

    impl Host for FakeHost {
        fn exists(&self, path: &str) -> bool {
            self.0.contains_key(path)
        }
        fn read(&self, path: &str) -> Option<String> {
            self.0.get(path).map(|s| s.to_string())
        }
    }

    fn enoent() -> io::Error {
        io::Error::from_raw_os_error(2)
    }

    #[test]
    fn a_nonexistent_library_path_cannot_be_loaded() {
        let err = XenSource::open(Some(Path::new("/nonexistent/libxenstat.so")))
            .err()
            .expect("opening /nonexistent/libxenstat.so must fail");
        assert_eq!(
            err.to_string(),
            "cannot load libxenstat (tried /nonexistent/libxenstat.so): install Xen's tools \
             (Debian: xen-utils-4.17) or pass --xen.libxenstat"
        );
    }

    #[test]
    fn a_library_that_is_not_libxenstat_is_refused() {
        let err = XenSource::open(Some(Path::new("libc.so.6")))
            .err()
            .expect("libc is not libxenstat");
        assert_eq!(
            err.to_string(),
            "libc.so.6 is not a usable libxenstat: it lacks xenstat_init"
        );
    }

    /// This machine has libxenstat (libxen-dev) but no hypervisor, so
    /// `xenstat_init` fails opening privcmd. On a Xen dom0 it must succeed.
    #[test]
    fn the_real_libxenstat_names_what_is_missing() {
        let on_dom0 = PRIVCMD.iter().any(|p| Path::new(p).exists());
        match XenSource::open(None) {
            Err(e @ XenOpenError::NotLoadable { .. }) => panic!(
                "libxenstat is not installed, so the dlopen path is untested ({e}): \
                 apt-get install libxen-dev"
            ),
            Err(e) if on_dom0 => panic!("privcmd exists but opening libxenstat failed: {e}"),
            Err(e) => assert_eq!(
                e.to_string(),
                "libxenstat loaded but xenstat_init failed: /dev/xen/privcmd (or \
                 /proc/xen/privcmd) is missing: this is not dom0 of a Xen host"
            ),
            Ok(source) if on_dom0 => {
                let raw = source.xenstat.node().expect("a node from a live dom0");
                assert!(raw.domains.iter().any(|d| d.id == 0), "dom0 is listed");
            }
            Ok(_) => panic!("xenstat_init succeeded on a machine without privcmd"),
        }
    }

    #[test]
    fn explains_a_xen_kernel_without_privcmd() {
        let host = FakeHost::new(&[("/sys/hypervisor/type", "xen\n")]);
        assert_eq!(
            explain(&enoent(), &host),
            "/dev/xen/privcmd (or /proc/xen/privcmd) is missing although this kernel runs on \
             Xen: load the xen-privcmd module or mount xenfs on /proc/xen"
        );
    }

    #[test]
    fn explains_a_domu() {
        let host = FakeHost::new(&[
            ("/dev/xen/privcmd", ""),
            ("/dev/xen/xenbus", ""),
            ("/proc/xen/capabilities", ""),
        ]);
        assert_eq!(
            explain(&io::Error::from_raw_os_error(1), &host),
            "/proc/xen/capabilities lacks control_d: this is a Xen guest (domU), not dom0"
        );
    }

    #[test]
    fn explains_a_permission_problem_in_dom0() {
        let host = FakeHost::new(&[
            ("/dev/xen/privcmd", ""),
            ("/proc/xen/capabilities", "control_d\n"),
        ]);
        assert_eq!(
            explain(&io::Error::from_raw_os_error(13), &host),
            "permission denied on the Xen privcmd device: run xentinel as root in dom0"
        );
    }

    #[test]
    fn explains_a_missing_xenstore() {
        let host = FakeHost::new(&[
            ("/dev/xen/privcmd", ""),
            ("/proc/xen/capabilities", "control_d\n"),
        ]);
        assert_eq!(
            explain(&enoent(), &host),
            "xenstore is unreachable (no /run/xenstored/socket, /dev/xen/xenbus or \
             /proc/xen/xenbus): start xenstored"
        );
    }

    #[test]
    fn falls_back_to_the_os_error() {
        let host = FakeHost::new(&[
            ("/dev/xen/privcmd", ""),
            ("/dev/xen/xenbus", ""),
            ("/proc/xen/capabilities", "control_d\n"),
        ]);
        assert_eq!(
            explain(&io::Error::from_raw_os_error(12), &host),
            "Cannot allocate memory (os error 12)"
        );
    }

    #[test]
    fn lists_every_default_name_and_load_failures() {
        let err = XenOpenError::NotLoadable {
            tried: ffi::DEFAULT_NAMES.iter().map(|s| s.to_string()).collect(),
            failures: vec![(
                "libxenstat.so.4.17".into(),
                "libxenctrl.so.4.17: cannot open shared object file: No such file or directory"
                    .into(),
            )],
        };
        assert_eq!(
            err.to_string(),
            "cannot load libxenstat (tried libxenstat.so.4.17, libxenstat.so.4, libxenstat.so; \
             libxenstat.so.4.17 failed: libxenctrl.so.4.17: cannot open shared object file: No \
             such file or directory): install Xen's tools (Debian: xen-utils-4.17) or pass \
             --xen.libxenstat"
        );
    }
}
