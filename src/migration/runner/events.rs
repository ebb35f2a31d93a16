//! A job's progress as events, for `xentinel evacuate`'s display (bars on a
//! terminal, JSON lines otherwise).

use serde::Serialize;

use crate::migration::joblog::NewStep;

/// Progress of a job, for `xentinel evacuate`'s display.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Waiting {
        job: i64,
        reason: String,
    },
    Planned {
        job: i64,
        source: String,
        steps: Vec<PlannedStep>,
    },
    Step {
        job: i64,
        domain: String,
        target: Option<String>,
        state: String,
        progress: f64,
        reason: String,
    },
    Finished {
        job: i64,
        state: String,
        reason: String,
    },
}

/// One line of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    pub domain: String,
    pub memory_bytes: u64,
    pub target: Option<String>,
    pub reason: Option<String>,
}

pub(super) fn planned(s: &NewStep) -> PlannedStep {
    PlannedStep {
        domain: s.domain.clone(),
        memory_bytes: s.memory_bytes,
        target: s.target.as_ref().ok().cloned(),
        reason: s.target.as_ref().err().cloned(),
    }
}
