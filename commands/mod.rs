//! The built-in jobs, one file each, and the one list of them.

pub mod purge_job_history;
pub mod send_queued_mail;

use crate::job::definition::Builtin;

/// Every built-in job, sorted by name.
pub static BUILTINS: &[&Builtin] = &[&purge_job_history::JOB, &send_queued_mail::JOB];
