//! The operator's changes — configure, run-now, reset-failure, hold and
//! release — as the command line and the web page both make them (§16: "the
//! same operations"). Each takes typed, already-validated input and the
//! [`Actor`] making the change, checks what only the database can tell (the
//! job exists, is not removed, is enabled), makes the change and writes its
//! audit row in one transaction, and returns what the caller shows. The
//! refusals are `BadInput` (`crate::error`) with the text both
//! interfaces show.
//!
//! The input parsers (times, cron, zone, duration, retries) are in
//! [`crate::schedule`] and `crate::input`'s value parsers, which the web page
//! calls too, so a bad value gets one error text wherever it is typed.

use chrono_tz::Tz;

use crate::error::bad_input;
use crate::job::Job;
use crate::schedule;
use crate::store::{self, ConfigChange};

/// Who made a change, as the audit trail names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// A person at the command line: `cli:USER@HOST`.
    pub fn cli() -> Self {
        Actor(format!(
            "cli:{}@{}",
            crate::host::user_name(),
            crate::host::short_host_name()
        ))
    }

    /// A browser or program talking to `manage web`: `web:ADDR`.
    pub fn web(addr: std::net::IpAddr) -> Self {
        Actor(format!("web:{addr}"))
    }

    /// A user a trusted proxy signed in (§23): `web:USER`.
    pub fn web_user(user: &str) -> Self {
        Actor(format!("web:{user}"))
    }

    /// The runner's own sync at start-up: `runner:HOST`.
    pub fn runner() -> Self {
        Actor(format!("runner:{}", crate::host::short_host_name()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A job that exists and is not removed, or bad input naming it.
pub fn existing_job(client: &mut impl postgres::GenericClient, name: &str) -> anyhow::Result<Job> {
    match store::job(client, name)? {
        Some(row) if !row.removed => Ok(row),
        Some(_) => bad_input(format!(
            "job \"{name}\" has been removed (it is no longer defined); expected a defined job, see `manage jobs list`"
        )),
        None => no_such_job(name),
    }
}

/// Bad input: no job has this name (not even a removed one).
pub fn no_such_job<T>(name: &str) -> anyhow::Result<T> {
    bad_input(format!(
        "there is no job \"{name}\"; expected one of the names `manage jobs list` shows"
    ))
}

/// Change a job's configuration and reschedule it; returns the job as it is
/// afterwards. The audit row lists each setting that changed, `key: old → new`.
pub fn configure(
    client: &mut postgres::Client,
    name: &str,
    change: &ConfigChange,
    tz: Tz,
    actor: &Actor,
) -> anyhow::Result<Job> {
    let mut tx = client.transaction()?;
    existing_job(&mut tx, name)?;
    let (before, after) = store::configure(&mut tx, name, change, tz)?;
    let details = config_changes(&before, &after, tz);
    store::record_audit(&mut tx, actor.as_str(), "configure", Some(name), &details)?;
    tx.commit()?;
    Ok(after)
}

/// The settings an operator may change, by the names of §7's JSON, as text.
fn settings(job: &Job, tz: Tz) -> Vec<(&'static str, String)> {
    let none = || "none".to_string();
    let times = job
        .override_times
        .as_ref()
        .filter(|t| !t.is_empty())
        .map_or_else(none, |t| {
            schedule::normalize_times(t.clone())
                .into_iter()
                .map(schedule::format_time)
                .collect::<Vec<_>>()
                .join(",")
        });
    let interval = job
        .override_interval_seconds
        .and_then(|s| u32::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or_else(none, schedule::format_duration);
    vec![
        ("enabled", job.enabled.to_string()),
        ("notify_on_success", job.notify_on_success.to_string()),
        ("override_times", times),
        ("override_interval", interval),
        (
            "override_cron",
            job.override_cron.clone().unwrap_or_else(none),
        ),
        ("timezone", job.zone(tz).name().to_string()),
        (
            "start_deadline",
            job.start_deadline()
                .map_or_else(none, schedule::format_duration),
        ),
        ("retries", job.retries().to_string()),
        (
            "retry_delay",
            schedule::format_duration(job.retry_delay_seconds()),
        ),
        ("alert_after", job.alert_after().to_string()),
        ("runs_on", format!("[{}]", job.runs_on().join(", "))),
        (
            "paused_until",
            job.paused_until
                .map_or_else(none, |at| schedule::json_instant(at, tz)),
        ),
        (
            "jitter",
            match job.jitter_seconds() {
                0 => none(),
                secs => schedule::format_duration(secs),
            },
        ),
        (
            "notify",
            job.notify()
                .map_or_else(none, |list| format!("[{}]", list.join(", "))),
        ),
    ]
}

/// `key: old → new` for each setting that differs, joined with `, `.
fn config_changes(before: &Job, after: &Job, tz: Tz) -> String {
    let changes: Vec<String> = settings(before, tz)
        .into_iter()
        .zip(settings(after, tz))
        .filter(|((_, old), (_, new))| old != new)
        .map(|((key, old), (_, new))| format!("{key}: {old} → {new}"))
        .collect();
    if changes.is_empty() {
        "no change".into()
    } else {
        changes.join(", ")
    }
}

/// Whether a run may be requested: not of a disabled job, which never runs.
pub fn can_run_now(row: &Job) -> anyhow::Result<()> {
    if row.enabled {
        return Ok(());
    }
    bad_input(format!(
        "job \"{}\" is disabled: a disabled job never runs; enable it first with `manage jobs configure {} --enabled true`",
        row.name, row.name
    ))
}

/// Request a run `delay_secs` from now through the runners (a running job
/// runs once more when its run ends). Refused for a disabled job.
pub fn run_now(
    client: &mut postgres::Client,
    name: &str,
    delay_secs: u32,
    actor: &Actor,
) -> anyhow::Result<Job> {
    let mut tx = client.transaction()?;
    let row = existing_job(&mut tx, name)?;
    can_run_now(&row)?;
    store::trigger_job(&mut tx, &row.name, delay_secs)?;
    let details = if delay_secs == 0 {
        "run requested now".to_string()
    } else {
        format!("run requested in {}", schedule::format_duration(delay_secs))
    };
    store::record_audit(&mut tx, actor.as_str(), "run-now", Some(name), &details)?;
    tx.commit()?;
    Ok(row)
}

/// Forget the last run's failure: last run and last state become null.
pub fn reset_failure(
    client: &mut postgres::Client,
    name: &str,
    actor: &Actor,
) -> anyhow::Result<Job> {
    let mut tx = client.transaction()?;
    let row = existing_job(&mut tx, name)?;
    store::reset_failure(&mut tx, &row.name)?;
    let state = row
        .last_state
        .map_or_else(|| "none".into(), |s| s.to_string());
    let details = format!("last_state: {state} → none");
    store::record_audit(
        &mut tx,
        actor.as_str(),
        "reset-failure",
        Some(name),
        &details,
    )?;
    tx.commit()?;
    Ok(row)
}

/// Hold every job; false when they already were held.
pub fn hold(client: &mut postgres::Client, actor: &Actor) -> anyhow::Result<bool> {
    let mut tx = client.transaction()?;
    let changed = store::set_hold(&mut tx)?;
    let details = if changed {
        "held: false → true"
    } else {
        "held: true (already held)"
    };
    store::record_audit(&mut tx, actor.as_str(), "hold", None, details)?;
    tx.commit()?;
    Ok(changed)
}

/// The refusal of a release that does not say what to do with the pending jobs.
pub const RELEASE_NEEDS_PENDING: &str =
    "release needs --pending: expected --pending run (the jobs that became due during the \
     hold run now) or --pending reschedule (they move to their next slot)";

/// What to do with the jobs that became due during a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// They run now.
    Run,
    /// They move to their next slot, as if they had just run.
    Reschedule,
}

impl Pending {
    pub fn as_str(self) -> &'static str {
        match self {
            Pending::Run => "run",
            Pending::Reschedule => "reschedule",
        }
    }
}

/// What a release did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub was_held: bool,
    /// With `Pending::Reschedule`: the jobs moved to their next slot.
    pub rescheduled: Vec<String>,
    /// With `Pending::Run`: the jobs that are due now.
    pub run_now: Vec<String>,
}

/// End the hold.
pub fn release(
    client: &mut postgres::Client,
    pending: Pending,
    tz: Tz,
    actor: &Actor,
) -> anyhow::Result<Released> {
    let mut tx = client.transaction()?;
    let (was_held, rescheduled) = store::release_hold(&mut tx, pending == Pending::Reschedule, tz)?;
    let run_now = match pending {
        Pending::Run => store::due_jobs(&mut tx)?
            .into_iter()
            .map(|row| row.name)
            .collect(),
        Pending::Reschedule => Vec::new(),
    };
    let mut details = if was_held {
        format!("held: true → false, pending: {}", pending.as_str())
    } else {
        format!("held: false (was not held), pending: {}", pending.as_str())
    };
    if !rescheduled.is_empty() {
        details.push_str(&format!(", rescheduled: {}", rescheduled.join(" ")));
    }
    store::record_audit(&mut tx, actor.as_str(), "release", None, &details)?;
    tx.commit()?;
    Ok(Released {
        was_held,
        rescheduled,
        run_now,
    })
}
