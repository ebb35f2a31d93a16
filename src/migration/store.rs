//! Whether the job log's storage can be trusted right now: which SQLite
//! errors are the storage failing (full, read-only, I/O) rather than a
//! request, the one [`Health`] the receiver answers 503 from and writers wait
//! on, and the log's file removed or replaced under the running process.
//!
//! A file removed (unlinked, or its directory replaced) is restored at its
//! path from the still-open file, so nothing recorded is lost and
//! exactly-once survives a restart. A file replaced by another one is not
//! written to (neither is ours, now unreachable): a copy of ours is saved
//! beside it and the store stays down until an operator restarts the webhook.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::ErrorCode;

use super::joblog::{JobLog, file_id};

/// What a storage failure is, when `e` is one (not a constraint or a bug).
pub fn fault(e: &rusqlite::Error) -> Option<&'static str> {
    match e.sqlite_error_code()? {
        ErrorCode::DiskFull => Some("the disk is full"),
        ErrorCode::ReadOnly => Some("the storage is read-only"),
        ErrorCode::SystemIoFailure => {
            Some("an I/O error (read-only, immutable or failing storage?)")
        }
        ErrorCode::CannotOpen => Some("the file cannot be opened"),
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Some("the file is locked"),
        ErrorCode::PermissionDenied => Some("permission denied"),
        _ => None,
    }
}

/// The store's state: up, or down with the reason (logged once per change).
#[derive(Default)]
pub struct Health {
    down: Mutex<Option<Down>>,
}

struct Down {
    reason: String,
    /// Only an operator ends it (a replaced file).
    permanent: bool,
}

impl Health {
    /// Why the store refuses writes now; `None`: it takes them.
    pub fn reason(&self) -> Option<String> {
        self.lock().as_ref().map(|d| d.reason.clone())
    }

    /// True when only a restart ends the outage.
    pub fn is_permanent(&self) -> bool {
        self.lock().as_ref().is_some_and(|d| d.permanent)
    }

    /// The store failed; logged when it was up (or for another reason).
    pub fn set_down(&self, reason: &str, permanent: bool) {
        let mut d = self.lock();
        if d.as_ref().is_none_or(|d| d.reason != reason) {
            log::error!(
                "job log unavailable: {reason}; refusing new alerts (503) and holding the \
                 running jobs' records until it takes writes again"
            );
        }
        *d = Some(Down {
            reason: reason.to_string(),
            permanent,
        });
    }

    /// A write went through.
    pub fn set_up(&self) {
        let mut d = self.lock();
        if let Some(was) = d.take() {
            log::info!(
                "job log writable again (was: {}); accepting alerts",
                was.reason
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Down>> {
        self.down.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Checks that the log's path still names the file it opened. A removed
/// file is restored there (see the module's comment); `Err((reason,
/// permanent))` when the store must refuse writes.
pub fn check_file(log: &mut JobLog) -> Result<(), (String, bool)> {
    let Some((path, want)) = log.file().cloned() else {
        return Ok(());
    };
    match file_id(&path) {
        Ok(Some(id)) if id == want => Ok(()),
        Ok(None) => {
            let why = format!("{} was removed while in use", path.display());
            restore(log, &path).map_err(|e| (format!("{why}; cannot restore it: {e}"), false))?;
            log::warn!(
                "{why}: restored it from the file still open (every job kept); writing there"
            );
            Ok(())
        }
        Ok(Some(id)) => {
            let why = format!(
                "{} was replaced by another file (device:inode {}:{}, opened {}:{})",
                path.display(),
                id.0,
                id.1,
                want.0,
                want.1
            );
            let saved = save_aside(log, &path);
            Err((
                format!(
                    "{why}; writing to neither; this process' records are {saved}; restart \
                     the webhook after choosing which log to keep"
                ),
                true,
            ))
        }
        Err(e) => Err((format!("cannot stat {}: {e}", path.display()), false)),
    }
}

/// Copies the open database to `path` (which must not exist) and reopens it there.
fn restore(log: &mut JobLog, path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    let tmp = sibling(path, &format!("restoring-{}", std::process::id()));
    write_copy(log, &tmp)?;
    // A hard link never replaces a file that appeared meanwhile.
    let linked =
        std::fs::hard_link(&tmp, path).map_err(|e| format!("link {}: {e}", path.display()));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    sync_dir(path);
    *log = JobLog::open(path).map_err(|e| format!("reopen {}: {e}", path.display()))?;
    Ok(())
}

/// Saves a copy of the open database beside `path`; says where (or why not).
fn save_aside(log: &JobLog, path: &Path) -> String {
    let to = sibling(path, &format!("detached-{}", super::joblog::now() as u64));
    if to.exists() {
        return format!("saved in {} already", to.display());
    }
    match write_copy(log, &to) {
        Ok(()) => format!("saved in {}", to.display()),
        Err(e) => format!("only in the file this process has open (cannot copy: {e})"),
    }
}

fn write_copy(log: &JobLog, to: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(to);
    log.copy_to(to)
        .map_err(|e| format!("copy to {}: {e}", to.display()))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("sync {}: {e}", to.display()))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{suffix}"));
    PathBuf::from(s)
}

fn sync_dir(path: &Path) {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(d).and_then(|f| f.sync_all());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::joblog::tests::job;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xentinel-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_removed_log_is_restored_with_its_jobs() {
        let d = dir("removed");
        let p = d.join("jobs.sqlite");
        let mut l = JobLog::open(&p).unwrap();
        l.insert_job(&job("a")).unwrap().unwrap();
        std::fs::remove_file(&p).unwrap();
        check_file(&mut l).unwrap();
        assert_eq!(l.insert_job(&job("a")).unwrap(), None, "still a duplicate");
        l.insert_job(&job("b")).unwrap().unwrap();
        // What a restart opens: both jobs.
        assert_eq!(JobLog::open(&p).unwrap().jobs(10).unwrap().len(), 2);
        // Its directory replaced by an empty one: the same.
        std::fs::rename(&d, d.with_extension("old")).unwrap();
        std::fs::create_dir_all(&d).unwrap();
        check_file(&mut l).unwrap();
        assert_eq!(JobLog::open(&p).unwrap().jobs(10).unwrap().len(), 2);
        let _ = std::fs::remove_dir_all(d.with_extension("old"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_replaced_log_is_written_to_by_no_one_and_ours_is_saved() {
        let d = dir("replaced");
        let p = d.join("jobs.sqlite");
        let mut l = JobLog::open(&p).unwrap();
        l.insert_job(&job("a")).unwrap().unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b"someone else's file").unwrap();
        let (why, permanent) = check_file(&mut l).unwrap_err();
        assert!(permanent);
        assert!(why.contains("was replaced by another file"), "{why}");
        assert_eq!(std::fs::read(&p).unwrap(), b"someone else's file");
        let saved: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|f| f.to_string_lossy().contains(".detached-"))
            .collect();
        assert_eq!(saved.len(), 1, "{why}");
        assert!(why.contains(&saved[0].display().to_string()), "{why}");
        assert_eq!(JobLog::open(&saved[0]).unwrap().jobs(10).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }
}
