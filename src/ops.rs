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
        ("overlap", job.overlap().to_string()),
        ("on_success", format!("[{}]", job.on_success().join(", "))),
        ("on_failure", format!("[{}]", job.on_failure().join(", "))),
        (
            "expect_success_within",
            job.expect_success_within_seconds()
                .map_or_else(none, schedule::format_duration),
        ),
        (
            "warn_after",
            job.warn_after_seconds()
                .map_or_else(none, schedule::format_duration),
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

/// Whether a run may be given arguments (§21): not an internal job (it runs
/// in the runner's process, with no argv of its own) nor an SQL job.
pub fn can_take_args(row: &Job, args: &[String]) -> anyhow::Result<()> {
    let kind = row.kind();
    if args.is_empty() || kind == crate::job::Kind::Process {
        return Ok(());
    }
    bad_input(format!(
        "job \"{}\" is an {} job and takes no arguments: expected no ARG after --, or a job run as a \
         child process",
        row.name,
        match kind {
            crate::job::Kind::Sql => "SQL",
            _ => "internal",
        }
    ))
}

/// The job a run with `args` is requested of: it exists, is enabled, and
/// takes them.
fn runnable_job(
    client: &mut impl postgres::GenericClient,
    name: &str,
    args: &[String],
) -> anyhow::Result<Job> {
    let row = existing_job(client, name)?;
    can_run_now(&row)?;
    can_take_args(&row, args)?;
    Ok(row)
}

/// The audit's words for a run's arguments: ` with args: ["a", "b c"]`,
/// nothing when there are none.
fn args_detail(args: &[String]) -> String {
    if args.is_empty() {
        String::new()
    } else {
        format!(" with args: {args:?}")
    }
}

/// Request a run `delay_secs` from now through the runners (a running job
/// runs once more when its run ends), with `args` for that one run.
/// Refused for a disabled job, and arguments for a job that takes none.
pub fn run_now(
    client: &mut postgres::Client,
    name: &str,
    delay_secs: u32,
    args: &[String],
    actor: &Actor,
) -> anyhow::Result<Job> {
    let mut tx = client.transaction()?;
    let row = runnable_job(&mut tx, name, args)?;
    store::trigger_job(&mut tx, &row.name, delay_secs, args)?;
    let mut details = if delay_secs == 0 {
        "run requested now".to_string()
    } else {
        format!("run requested in {}", schedule::format_duration(delay_secs))
    };
    details.push_str(&args_detail(args));
    store::record_audit(&mut tx, actor.as_str(), "run-now", Some(name), &details)?;
    tx.commit()?;
    Ok(row)
}

/// One extra run of a job at `at`, besides its schedule (§21), with `args`.
/// Refused for a disabled job, an instant that has passed (`run-now` without
/// `--at` runs now), and one at which an extra run is already pending.
pub fn run_at(
    client: &mut postgres::Client,
    name: &str,
    at: chrono::DateTime<chrono::Utc>,
    args: &[String],
    tz: Tz,
    actor: &Actor,
) -> anyhow::Result<Job> {
    let mut tx = client.transaction()?;
    let row = runnable_job(&mut tx, name, args)?;
    let shown = schedule::json_instant(at, tz);
    if at <= store::db_now(&mut tx)? {
        return bad_input(format!(
            "--at {shown} has passed: expected a future instant (run-now without --at runs now)"
        ));
    }
    if !store::add_extra_run(&mut tx, &row.name, at, args)? {
        return bad_input(format!(
            "job \"{name}\" already has an extra run at {shown}: expected another instant"
        ));
    }
    let details = format!("extra run at {shown}{}", args_detail(args));
    store::record_audit(&mut tx, actor.as_str(), "run-now", Some(name), &details)?;
    tx.commit()?;
    Ok(row)
}

/// Cancel the extra run of a job at `at`; refused when none is pending then.
pub fn cancel_at(
    client: &mut postgres::Client,
    name: &str,
    at: chrono::DateTime<chrono::Utc>,
    tz: Tz,
    actor: &Actor,
) -> anyhow::Result<Job> {
    let mut tx = client.transaction()?;
    let row = existing_job(&mut tx, name)?;
    let shown = schedule::json_instant(at, tz);
    if !store::cancel_extra_run(&mut tx, &row.name, at)? {
        return bad_input(format!(
            "job \"{name}\" has no extra run at {shown}: expected one of the extra runs `manage jobs show {name}` lists"
        ));
    }
    // The next run was the extra one's: back to the schedule (and to any
    // later extra run, which the trigger keeps).
    if row.next_run == Some(at) {
        store::reschedule(&mut tx, &row.name, tz)?;
        store::notify_runners(&mut tx)?;
    }
    let details = format!("extra run at {shown} cancelled");
    store::record_audit(&mut tx, actor.as_str(), "cancel-at", Some(name), &details)?;
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

/// Hold every job, until `until` (resolved on the database's clock; it
/// then ends by itself as a `release --pending reschedule`) or until
/// released. Returns the hold as it was before. An instant that has passed
/// is refused.
pub fn hold(
    client: &mut postgres::Client,
    until: Option<crate::input::Until>,
    tz: Tz,
    actor: &Actor,
) -> anyhow::Result<store::Hold> {
    let mut tx = client.transaction()?;
    let now = store::db_now(&mut tx)?;
    let until = until.map(|u| u.resolve(now));
    if let Some(at) = until.filter(|at| *at <= now) {
        return bad_input(format!(
            "--until {} has passed: expected a future instant or a duration from now",
            schedule::json_instant(at, tz)
        ));
    }
    let before = store::set_hold(&mut tx, until)?;
    let shown = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map_or_else(|| "none".to_string(), |at| schedule::json_instant(at, tz))
    };
    let mut details = if before.held {
        "held: true (already held)".to_string()
    } else {
        "held: false → true".to_string()
    };
    if before.until != until {
        details.push_str(&format!(
            ", held_until: {} → {}",
            shown(before.until),
            shown(until)
        ));
    }
    store::record_audit(&mut tx, actor.as_str(), "hold", None, &details)?;
    tx.commit()?;
    Ok(before)
}

/// A runner's part in `hold --until`: once the hold's end has passed, end
/// it as `release --pending reschedule` does — once, whichever runner gets
/// there first (the hold row is locked, and the second finds it released).
/// Returns whether this call released it.
pub fn release_ended_hold(
    client: &mut postgres::Client,
    tz: Tz,
    actor: &Actor,
) -> anyhow::Result<bool> {
    let mut tx = client.transaction()?;
    if !store::hold_ended_for_update(&mut tx)? {
        return Ok(false);
    }
    let (_, rescheduled) = store::release_hold(&mut tx, true, tz)?;
    let details = release_details(true, Pending::Reschedule, &rescheduled) + " (the hold's end)";
    store::record_audit(&mut tx, actor.as_str(), "release", None, &details)?;
    tx.commit()?;
    Ok(true)
}

/// The audit's words for a release.
fn release_details(was_held: bool, pending: Pending, rescheduled: &[String]) -> String {
    let mut details = if was_held {
        format!("held: true → false, pending: {}", pending.as_str())
    } else {
        format!("held: false (was not held), pending: {}", pending.as_str())
    };
    if !rescheduled.is_empty() {
        details.push_str(&format!(", rescheduled: {}", rescheduled.join(" ")));
    }
    details
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
    let details = release_details(was_held, pending, &rescheduled);
    store::record_audit(&mut tx, actor.as_str(), "release", None, &details)?;
    tx.commit()?;
    Ok(Released {
        was_held,
        rescheduled,
        run_now,
    })
}
