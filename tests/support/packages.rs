//! The Debian packages that scripts/build-packages.sh leaves in `target/debian/`, found for the
//! tests that install them (tests/packages.rs on this machine, tests/xen_qemu.rs into its dom0
//! and domU images), with a failure that says how to build them when they are missing or older
//! than the sources.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::dashboards::repo_root;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `target/debian/<name>_<version>-1_<arch>.deb`, or a failure saying how to build it.
pub fn deb(name: &str) -> PathBuf {
    let dir = repo_root().join("target/debian");
    let prefix = format!("{name}_{VERSION}-1_");
    let found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    match &found[..] {
        [one] => one.clone(),
        [] => panic!(
            "no {prefix}*.deb in {}: build the packages first with scripts/build-packages.sh \
             (it needs cargo-deb; scripts/install-test-deps.sh installs the pinned version)",
            dir.display()
        ),
        many => panic!("several {prefix}*.deb in {}: {many:?}", dir.display()),
    }
}

/// [`deb`], and a failure when a file it is built from (`src/`, `debian/`, `Cargo.toml`) changed
/// after it was built: a test of what a user installs must not test yesterday's package.
pub fn fresh_deb(name: &str) -> PathBuf {
    let path = deb(name);
    let built = modified(&path);
    let root = repo_root();
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for part in ["src", "debian", "Cargo.toml", "Cargo.lock"] {
        newest_under(&root.join(part), &mut newest);
    }
    if let Some((t, file)) = newest {
        assert!(
            t <= built,
            "{} is older than {}: rebuild the packages with scripts/build-packages.sh \
             (scripts/test.sh does so before the tests)",
            path.display(),
            file.display()
        );
    }
    path
}

fn modified(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", p.display()))
}

fn newest_under(p: &Path, newest: &mut Option<(SystemTime, PathBuf)>) {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return;
    };
    if meta.is_dir() {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            newest_under(&e.path(), newest);
        }
    } else if let Ok(t) = meta.modified()
        && newest.as_ref().is_none_or(|(n, _)| t > *n)
    {
        *newest = Some((t, p.to_path_buf()));
    }
}
