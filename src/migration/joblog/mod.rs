//! The durable job log: SQLite (rollback journal, `synchronous=FULL`, no
//! memory mapping) holding jobs, their steps, and per-domain claims.
//!
//! Exactly-once lives here, in constraints rather than memory:
//! `jobs UNIQUE(fingerprint, starts_at)` makes one alert one job whatever
//! Alertmanager re-sends; `steps UNIQUE(job_id, domain)` makes one domain one
//! step per job; `claims(domain PRIMARY KEY)` is taken in the same transaction
//! that moves a step from `planned` to `claimed`, so two jobs never migrate one
//! domain at once, and it is released in the transaction that ends the step.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::alert::format_rfc3339;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    starts_at     TEXT NOT NULL,
    starts_at_unix REAL NOT NULL,
    host          TEXT NOT NULL,
    origin        TEXT NOT NULL,
    dry_run       INTEGER NOT NULL DEFAULT 0,
    state         TEXT NOT NULL CHECK (state IN
                    ('pending','waiting','running','done','failed','cancelled','planned')),
    reason        TEXT NOT NULL DEFAULT '',
    resolved      REAL,
    first_start   REAL,
    created       REAL NOT NULL,
    updated       REAL NOT NULL,
    UNIQUE (fingerprint, starts_at)
);
CREATE TABLE IF NOT EXISTS steps (
    id            INTEGER PRIMARY KEY,
    job_id        INTEGER NOT NULL REFERENCES jobs(id),
    domain        TEXT NOT NULL,
    source        TEXT NOT NULL,
    target        TEXT,
    memory_bytes  INTEGER NOT NULL DEFAULT 0,
    state         TEXT NOT NULL CHECK (state IN
                    ('planned','claimed','running','done','failed','cancelled')),
    reason        TEXT NOT NULL DEFAULT '',
    started       REAL,
    ended         REAL,
    duration      REAL,
    downtime      REAL,
    stderr_tail   TEXT NOT NULL DEFAULT '',
    attempts      INTEGER NOT NULL DEFAULT 0,
    pid           INTEGER,
    pid_start     TEXT,
    UNIQUE (job_id, domain)
);
CREATE TABLE IF NOT EXISTS claims (
    domain        TEXT PRIMARY KEY,
    job_id        INTEGER NOT NULL,
    step_id       INTEGER NOT NULL UNIQUE,
    claimed       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS probe (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    t             REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_job ON steps (job_id);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
";

/// States a job ends in.
pub const FINAL_JOB_STATES: [&str; 4] = ["done", "failed", "cancelled", "planned"];

/// Unix time now, in seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

mod records;
#[cfg(test)]
pub(crate) mod tests;

pub use records::{Claim, Job, NewJob, NewStep, Step, StepEnd};

/// The job log (one connection; callers serialise access).
pub struct JobLog {
    conn: Connection,
    /// The file it opened and that file's (device, inode), to notice it
    /// removed or replaced under us (`None`: in memory).
    file: Option<(std::path::PathBuf, (u64, u64))>,
}

/// A file's (device, inode); `None` when the path does not exist.
pub fn file_id(path: &Path) -> std::io::Result<Option<(u64, u64)>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn ts(t: Option<f64>) -> Option<String> {
    t.map(format_rfc3339)
}

impl JobLog {
    /// Opens (creating) the database at `path`, with a rollback journal.
    ///
    /// Not WAL: WAL's index (`-shm`) is a shared memory mapping of a file, and
    /// a write to it faults with SIGBUS — killing the process, no error to
    /// handle — when the file cannot take it (made immutable, on ext4). With a
    /// rollback journal and `mmap_size=0` every I/O is a read or write call,
    /// so a full, read-only or immutable disk is an error code
    /// ([`super::store`] turns it into a 503 and a retry). An existing WAL
    /// log is converted on open.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        let mut l = Self::init(conn)?;
        // After init: the file exists now (SQLite creates it lazily).
        if let Ok(Some(id)) = file_id(path) {
            l.file = Some((path.to_path_buf(), id));
        }
        Ok(l)
    }

    /// An in-memory log (tests, `--dry-run`).
    pub fn in_memory() -> rusqlite::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> rusqlite::Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))?;
        if mode != "delete" && mode != "memory" {
            log::warn!("the job log stays in journal mode {mode} (another process has it open?)");
        }
        conn.execute_batch("PRAGMA mmap_size=0; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(JobLog { conn, file: None })
    }

    /// The file this log opened, and its (device, inode) then.
    pub fn file(&self) -> Option<&(std::path::PathBuf, (u64, u64))> {
        self.file.as_ref()
    }

    /// A real write that changes nothing else (one row of `probe`): succeeds
    /// once the storage takes writes again.
    pub fn probe(&mut self) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO probe (id, t) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET t = ?1",
            [now()],
        )?;
        Ok(())
    }

    /// Writes a consistent copy of the open database to `to` (`VACUUM INTO`;
    /// it reads the file this connection opened, even if unlinked since).
    pub fn copy_to(&self, to: &Path) -> rusqlite::Result<()> {
        self.conn
            .execute("VACUUM INTO ?1", [to.to_string_lossy().as_ref()])?;
        Ok(())
    }

    /// Sets a job's reason only (its state stays): what a shutdown left.
    pub fn set_job_reason(&mut self, id: i64, reason: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE jobs SET reason = ?2, updated = ?3 WHERE id = ?1",
            params![id, reason, now()],
        )?;
        Ok(())
    }

    /// A step's migration was killed at the end of a shutdown's grace period:
    /// it stays `running` (the next start locates its domain), with why.
    pub fn interrupt_step(&mut self, step: i64, reason: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE steps SET reason = ?2 WHERE id = ?1",
            params![step, reason],
        )?;
        Ok(())
    }

    /// Records a job; `None` when this (fingerprint, startsAt) already has one.
    pub fn insert_job(&mut self, j: &NewJob) -> rusqlite::Result<Option<i64>> {
        let t = now();
        let n = self.conn.execute(
            "INSERT INTO jobs (fingerprint, starts_at, starts_at_unix, host, origin, dry_run,
                               state, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)
             ON CONFLICT (fingerprint, starts_at) DO NOTHING",
            params![
                j.fingerprint,
                j.starts_at,
                j.starts_at_unix,
                j.host,
                j.origin,
                j.dry_run,
                t
            ],
        )?;
        Ok((n == 1).then(|| self.conn.last_insert_rowid()))
    }

    /// The job of one alert occurrence.
    pub fn find_job(&self, fingerprint: &str, starts_at: &str) -> rusqlite::Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT id FROM jobs WHERE fingerprint = ?1 AND starts_at = ?2",
                params![fingerprint, starts_at],
                |r| r.get(0),
            )
            .optional()
    }

    /// Sets a job's state and reason.
    pub fn set_job_state(&mut self, id: i64, state: &str, reason: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE jobs SET state = ?2, reason = ?3, updated = ?4 WHERE id = ?1",
            params![id, state, reason, now()],
        )?;
        Ok(())
    }

    /// True once the job's alert has resolved.
    pub fn is_resolved(&self, id: i64) -> rusqlite::Result<bool> {
        self.conn.query_row(
            "SELECT resolved IS NOT NULL FROM jobs WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
    }

    /// Records a job's plan in one transaction; unplaced steps are `failed` at once.
    pub fn add_steps(&mut self, job: i64, steps: &[NewStep]) -> rusqlite::Result<()> {
        let t = now();
        let tx = self.conn.transaction()?;
        for s in steps {
            let (target, state, reason) = match &s.target {
                Ok(t) => (Some(t.as_str()), "planned", ""),
                Err(r) => (None, "failed", r.as_str()),
            };
            tx.execute(
                "INSERT INTO steps (job_id, domain, source, target, memory_bytes, state, reason, ended)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?6 = 'failed' THEN ?8 END)
                 ON CONFLICT (job_id, domain) DO NOTHING",
                params![job, s.domain, s.source, target, s.memory_bytes as i64, state, reason, t],
            )?;
        }
        tx.execute(
            "UPDATE jobs SET updated = ?2 WHERE id = ?1",
            params![job, t],
        )?;
        tx.commit()
    }

    /// Claims a planned step's domain: inserts the claim and moves the step to
    /// `claimed` in one transaction, or changes nothing.
    pub fn claim(&mut self, step: i64) -> rusqlite::Result<Claim> {
        let t = now();
        let tx = self.conn.transaction()?;
        let (job, domain, state): (i64, String, String) = tx.query_row(
            "SELECT job_id, domain, state FROM steps WHERE id = ?1",
            [step],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        if state != "planned" {
            return Ok(Claim::NotPlanned(state));
        }
        let holder: Option<i64> = tx
            .query_row(
                "SELECT job_id FROM claims WHERE domain = ?1",
                [&domain],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(h) = holder {
            return Ok(Claim::HeldBy(h));
        }
        tx.execute(
            "INSERT INTO claims (domain, job_id, step_id, claimed) VALUES (?1, ?2, ?3, ?4)",
            params![domain, job, step, t],
        )?;
        tx.execute(
            "UPDATE steps SET state = 'claimed', attempts = attempts + 1 WHERE id = ?1",
            [step],
        )?;
        tx.commit()?;
        Ok(Claim::Claimed)
    }

    /// Marks a claimed step `running` (with the executor's child pid, if any);
    /// returns the job's first migration start when this is it.
    pub fn mark_running(
        &mut self,
        step: i64,
        pid: Option<(u32, String)>,
    ) -> rusqlite::Result<Option<f64>> {
        let t = now();
        let tx = self.conn.transaction()?;
        let (pid, pid_start) = pid.map(|(p, s)| (Some(p), Some(s))).unwrap_or((None, None));
        tx.execute(
            "UPDATE steps SET state = 'running', started = ?2, pid = ?3, pid_start = ?4
             WHERE id = ?1",
            params![step, t, pid, pid_start],
        )?;
        let n = tx.execute(
            "UPDATE jobs SET first_start = ?2, updated = ?2
             WHERE id = (SELECT job_id FROM steps WHERE id = ?1) AND first_start IS NULL",
            params![step, t],
        )?;
        tx.commit()?;
        Ok((n == 1).then_some(t))
    }

    /// Ends a step and releases its claim, in one transaction.
    pub fn finish_step(&mut self, step: i64, end: &StepEnd) -> rusqlite::Result<()> {
        let t = now();
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE steps SET state = ?2, reason = ?3, duration = ?4, downtime = ?5,
                              stderr_tail = ?6, ended = ?7
             WHERE id = ?1",
            params![
                step,
                end.state,
                end.reason,
                end.duration,
                end.downtime,
                end.stderr_tail,
                t
            ],
        )?;
        tx.execute("DELETE FROM claims WHERE step_id = ?1", [step])?;
        tx.commit()
    }

    /// A running step's migration failed and is tried again: counts the
    /// attempt and records why (the step stays `running`).
    pub fn retry_step(&mut self, step: i64, reason: &str) -> rusqlite::Result<()> {
        self.conn.execute(
            "UPDATE steps SET attempts = attempts + 1, reason = ?2 WHERE id = ?1",
            params![step, reason],
        )?;
        Ok(())
    }

    /// Puts a claimed or running step back to `planned` and releases its claim
    /// (recovery found the domain still on its source).
    pub fn requeue(&mut self, step: i64, reason: &str) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE steps SET state = 'planned', reason = ?2, pid = NULL, pid_start = NULL
             WHERE id = ?1",
            params![step, reason],
        )?;
        tx.execute("DELETE FROM claims WHERE step_id = ?1", [step])?;
        tx.commit()
    }

    /// Puts a claimed step whose migration a shutdown kept from (re)starting
    /// back to `planned`: the attempt it counted did not run; the claim goes.
    pub fn release(&mut self, step: i64, reason: &str) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE steps SET state = 'planned', reason = ?2, pid = NULL, pid_start = NULL,
                              attempts = MAX(attempts - 1, 0)
             WHERE id = ?1",
            params![step, reason],
        )?;
        tx.execute("DELETE FROM claims WHERE step_id = ?1", [step])?;
        tx.commit()
    }

    /// Cancels every planned step of a job; returns how many.
    pub fn cancel_planned(&mut self, job: i64, reason: &str) -> rusqlite::Result<usize> {
        self.conn.execute(
            "UPDATE steps SET state = 'cancelled', reason = ?2, ended = ?3
             WHERE job_id = ?1 AND state = 'planned'",
            params![job, reason, now()],
        )
    }

    /// A resolved alert: marks its job resolved and cancels its planned steps
    /// (running ones finish). Returns the job and the number cancelled.
    pub fn resolve(
        &mut self,
        fingerprint: &str,
        starts_at: &str,
    ) -> rusqlite::Result<Option<(i64, usize)>> {
        let t = now();
        let tx = self.conn.transaction()?;
        let job: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, state FROM jobs WHERE fingerprint = ?1 AND starts_at = ?2",
                params![fingerprint, starts_at],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, state)) = job else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE jobs SET resolved = COALESCE(resolved, ?2), updated = ?2 WHERE id = ?1",
            params![id, t],
        )?;
        let n = tx.execute(
            "UPDATE steps SET state = 'cancelled', reason = 'alert resolved', ended = ?2
             WHERE job_id = ?1 AND state = 'planned'",
            params![id, t],
        )?;
        if state == "pending" || state == "waiting" {
            tx.execute(
                "UPDATE jobs SET state = 'cancelled', reason = 'alert resolved before planning'
                 WHERE id = ?1",
                [id],
            )?;
        }
        tx.commit()?;
        Ok(Some((id, n)))
    }

    /// Jobs that have not reached a final state (for recovery on start).
    pub fn unfinished_jobs(&self) -> rusqlite::Result<Vec<Job>> {
        self.query_jobs(
            "WHERE state NOT IN ('done','failed','cancelled','planned') ORDER BY id",
            [],
        )
    }

    /// The most recent jobs, newest first.
    pub fn jobs(&self, limit: usize) -> rusqlite::Result<Vec<Job>> {
        self.query_jobs("ORDER BY id DESC LIMIT ?1", [limit as i64])
    }

    /// One job with its steps.
    pub fn job(&self, id: i64) -> rusqlite::Result<Option<Job>> {
        let mut j = self.query_jobs("WHERE id = ?1", [id])?;
        let Some(mut job) = j.pop() else {
            return Ok(None);
        };
        job.steps = Some(self.steps(id)?);
        Ok(Some(job))
    }

    fn query_jobs<P: rusqlite::Params>(&self, tail: &str, p: P) -> rusqlite::Result<Vec<Job>> {
        let sql = format!(
            "SELECT id, fingerprint, starts_at, starts_at_unix, host, origin, dry_run, state,
                    reason, resolved, first_start, created, updated FROM jobs {tail}"
        );
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(p, |r| {
            Ok(Job {
                id: r.get(0)?,
                fingerprint: r.get(1)?,
                starts_at: r.get(2)?,
                starts_at_unix: r.get(3)?,
                host: r.get(4)?,
                origin: r.get(5)?,
                dry_run: r.get(6)?,
                state: r.get(7)?,
                reason: r.get(8)?,
                resolved: ts(r.get(9)?),
                first_start: ts(r.get(10)?),
                first_start_unix: r.get(10)?,
                created: format_rfc3339(r.get(11)?),
                updated: format_rfc3339(r.get(12)?),
                steps: None,
            })
        })?;
        rows.collect()
    }

    /// The steps of a job, in plan order.
    pub fn steps(&self, job: i64) -> rusqlite::Result<Vec<Step>> {
        let mut st = self.conn.prepare(
            "SELECT id, job_id, domain, source, target, memory_bytes, state, reason, started,
                    ended, duration, downtime, stderr_tail, attempts, pid, pid_start
             FROM steps WHERE job_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([job], |r| {
            Ok(Step {
                id: r.get(0)?,
                job_id: r.get(1)?,
                domain: r.get(2)?,
                source: r.get(3)?,
                target: r.get(4)?,
                memory_bytes: r.get::<_, i64>(5)?.max(0) as u64,
                state: r.get(6)?,
                reason: r.get(7)?,
                started: ts(r.get(8)?),
                ended: ts(r.get(9)?),
                duration_seconds: r.get(10)?,
                downtime_seconds: r.get(11)?,
                stderr_tail: r.get(12)?,
                attempts: r.get(13)?,
                pid: r.get(14)?,
                pid_start: r.get(15)?,
            })
        })?;
        rows.collect()
    }
}
