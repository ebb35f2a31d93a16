//! The job log's records: what is written (a new job, its plan's steps, how a
//! step ended) and what is read back (jobs and steps as `/jobs` shows them).

use serde::Serialize;

/// A job to record.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub fingerprint: String,
    pub starts_at: String,
    pub starts_at_unix: f64,
    pub host: String,
    /// `alert` or `cli`.
    pub origin: String,
    pub dry_run: bool,
}

/// A step to record: a domain, where it goes, or why it cannot.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStep {
    pub domain: String,
    pub source: String,
    pub memory_bytes: u64,
    /// `Ok(target)` or `Err(reason it has no place)`.
    pub target: Result<String, String>,
}

/// One job as the log and `GET /jobs/{id}` show it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub fingerprint: String,
    pub starts_at: String,
    #[serde(skip)]
    pub starts_at_unix: f64,
    pub host: String,
    pub origin: String,
    pub dry_run: bool,
    pub state: String,
    pub reason: String,
    pub resolved: Option<String>,
    pub first_start: Option<String>,
    /// `first_start` as Unix seconds.
    #[serde(skip)]
    pub first_start_unix: Option<f64>,
    pub created: String,
    pub updated: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Step>>,
}

/// One step of a job.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub id: i64,
    pub job_id: i64,
    pub domain: String,
    pub source: String,
    pub target: Option<String>,
    pub memory_bytes: u64,
    pub state: String,
    pub reason: String,
    pub started: Option<String>,
    pub ended: Option<String>,
    pub duration_seconds: Option<f64>,
    pub downtime_seconds: Option<f64>,
    pub stderr_tail: String,
    pub attempts: i64,
    pub pid: Option<u32>,
    pub pid_start: Option<String>,
}

/// The result of trying to claim a step's domain.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Ours: the step is now `claimed`.
    Claimed,
    /// The step is no longer `planned` (cancelled by a resolve, or done).
    NotPlanned(String),
    /// Another job's step holds the domain.
    HeldBy(i64),
}

/// How a step ended.
#[derive(Debug, Clone, Default)]
pub struct StepEnd {
    /// `done`, `failed` or `cancelled`.
    pub state: &'static str,
    pub reason: String,
    pub duration: Option<f64>,
    pub downtime: Option<f64>,
    pub stderr_tail: String,
}
