//! The shipped jobs, one file each, and the one list of them. Each is
//! registered exactly as an application registers its own (§22): a
//! [`Job`](crate::Job) value, added to every [`Suite`](crate::Suite).

pub mod purge_job_history;
pub mod send_queued_mail;

use std::sync::OnceLock;

use crate::job::builder::Job;
use crate::job::definition::Builtin;

/// Every shipped job, sorted by name.
pub fn jobs() -> Vec<Job> {
    vec![purge_job_history::job(), send_queued_mail::job()]
}

/// The shipped jobs as the crate runs them, made once.
pub fn builtins() -> &'static [&'static Builtin] {
    static SHIPPED: OnceLock<Vec<&'static Builtin>> = OnceLock::new();
    SHIPPED.get_or_init(|| jobs().into_iter().map(Job::into_builtin).collect())
}
