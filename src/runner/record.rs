//! A finished run as the record transaction writes it: what the worker (or
//! recovery) knows, and what `alerts` decides the mail from.

use chrono::{DateTime, Utc};

use crate::job::{Outcome, RunState};

/// Everything the record transaction writes.
pub struct Record<'a> {
    pub run_id: i64,
    pub job: &'a str,
    pub description: &'a str,
    pub state: RunState,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub runtime_seconds: f64,
    pub output: &'a str,
    pub disable: bool,
    pub outcome: Outcome,
    pub trigger_next: &'a [String],
    /// The job as this worker claimed it, when it did: enables the one-
    /// statement record (`store::record_fast`).
    pub claimed_job: Option<&'a crate::job::Job>,
}
