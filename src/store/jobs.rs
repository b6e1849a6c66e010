//! `manage.jobs`: the jobs as synced, configured and scheduled. The runner's
//! claim and one-statement record touch this table too (`claim.rs`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use postgres::GenericClient;

use super::{db_now, notify_runners};
use crate::job::definition::JobDef;
use crate::job::{schedule_columns, Job, RunState};
use crate::schedule::Schedule;

impl Job {
    /// A `manage.jobs` row (or a statement returning its columns), by name.
    pub(crate) fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(Job {
            name: row.try_get("name")?,
            app: row.try_get("app")?,
            description: row.try_get("description")?,
            internal: row.try_get("internal")?,
            timeout_seconds: row.try_get("timeout_seconds")?,
            builtin_times: row.try_get("builtin_times")?,
            builtin_interval_seconds: row.try_get("builtin_interval_seconds")?,
            builtin_cron: row.try_get("builtin_cron")?,
            builtin_timezone: row.try_get("builtin_timezone")?,
            builtin_start_deadline_seconds: row.try_get("builtin_start_deadline_seconds")?,
            definition: row.try_get("definition")?,
            enabled: row.try_get("enabled")?,
            notify_on_success: row.try_get("notify_on_success")?,
            override_times: row.try_get("override_times")?,
            override_interval_seconds: row.try_get("override_interval_seconds")?,
            override_cron: row.try_get("override_cron")?,
            override_timezone: row.try_get("override_timezone")?,
            override_start_deadline_seconds: row.try_get("override_start_deadline_seconds")?,
            next_run: row.try_get("next_run")?,
            requested_run: row.try_get("requested_run")?,
            last_run: row.try_get("last_run")?,
            last_state: row.try_get::<_, Option<RunState>>("last_state")?,
            last_skip: row.try_get("last_skip")?,
            running_run: row.try_get("running_run")?,
            run_requested: row.try_get("run_requested")?,
            removed: row.try_get("removed")?,
            builtin_retries: row.try_get("builtin_retries")?,
            builtin_retry_delay_seconds: row.try_get("builtin_retry_delay_seconds")?,
            override_retries: row.try_get("override_retries")?,
            override_retry_delay_seconds: row.try_get("override_retry_delay_seconds")?,
            next_attempt: row.try_get("next_attempt")?,
            builtin_alert_after: row.try_get("builtin_alert_after")?,
            override_alert_after: row.try_get("override_alert_after")?,
            consecutive_failures: row.try_get("consecutive_failures")?,
            alert_mailed: row.try_get("alert_mailed")?,
            last_success: row.try_get("last_success")?,
            last_runtime_seconds: row.try_get("last_runtime_seconds")?,
            builtin_runs_on: row.try_get("builtin_runs_on")?,
            override_runs_on: row.try_get("override_runs_on")?,
            builtin_jitter_seconds: row.try_get("builtin_jitter_seconds")?,
            override_jitter_seconds: row.try_get("override_jitter_seconds")?,
            paused_until: row.try_get("paused_until")?,
            builtin_notify: row.try_get("builtin_notify")?,
            override_notify: row.try_get("override_notify")?,
            extra_runs: if row.columns().iter().any(|c| c.name() == "extra_runs") {
                row.try_get("extra_runs")?
            } else {
                Vec::new()
            },
            builtin_overlap: row.try_get("builtin_overlap")?,
            override_overlap: row.try_get("override_overlap")?,
            overlap_slot: row.try_get("overlap_slot")?,
            replace_run: row.try_get("replace_run")?,
            builtin_on_success: row.try_get("builtin_on_success")?,
            override_on_success: row.try_get("override_on_success")?,
            builtin_on_failure: row.try_get("builtin_on_failure")?,
            override_on_failure: row.try_get("override_on_failure")?,
            builtin_expect_success_within_seconds: row
                .try_get("builtin_expect_success_within_seconds")?,
            override_expect_success_within_seconds: row
                .try_get("override_expect_success_within_seconds")?,
            expect_success_since: row.try_get("expect_success_since")?,
            overdue_alerted_at: row.try_get("overdue_alerted_at")?,
            builtin_warn_after_seconds: row.try_get("builtin_warn_after_seconds")?,
            override_warn_after_seconds: row.try_get("override_warn_after_seconds")?,
        })
    }
}

/// SQL: the `extra_runs` column `Job::from_row` reads when present — the
/// listed extra runs of the `manage.jobs` row in scope, earliest first.
macro_rules! extra_runs_column {
    () => {
        "ARRAY(SELECT e.at FROM manage.extra_runs e WHERE e.job = manage.jobs.name AND e.listed \
         ORDER BY e.at) AS extra_runs"
    };
}

fn jobs(rows: Vec<postgres::Row>) -> Result<Vec<Job>, postgres::Error> {
    rows.iter().map(Job::from_row).collect()
}

/// Every job, removed ones included.
pub fn all_jobs(client: &mut impl GenericClient) -> Result<Vec<Job>, postgres::Error> {
    jobs(client.query_typed(
        concat!(
            "SELECT *, ",
            extra_runs_column!(),
            " FROM manage.jobs ORDER BY name"
        ),
        &[],
    )?)
}

/// The jobs that are not removed, sorted as `jobs list` shows them: by next
/// run, unscheduled last, then by name.
pub fn listed_jobs(client: &mut impl GenericClient) -> Result<Vec<Job>, postgres::Error> {
    jobs(client.query_typed(
        concat!(
            "SELECT *, ",
            extra_runs_column!(),
            " FROM manage.jobs WHERE NOT removed ORDER BY next_run ASC NULLS LAST, name"
        ),
        &[],
    )?)
}

pub fn job(client: &mut impl GenericClient, name: &str) -> Result<Option<Job>, postgres::Error> {
    client
        .query_typed_opt(
            concat!(
                "SELECT *, ",
                extra_runs_column!(),
                " FROM manage.jobs WHERE name = $1"
            ),
            typed![&name],
        )?
        .as_ref()
        .map(Job::from_row)
        .transpose()
}

/// Lock one job's row for a change.
pub fn job_for_update(
    client: &mut impl GenericClient,
    name: &str,
) -> Result<Option<Job>, postgres::Error> {
    client
        .query_typed_opt(
            "SELECT * FROM manage.jobs WHERE name = $1 FOR UPDATE",
            typed![&name],
        )?
        .as_ref()
        .map(Job::from_row)
        .transpose()
}

/// Whether a job with this name exists in the history (removed jobs included).
pub fn job_exists(client: &mut impl GenericClient, name: &str) -> Result<bool, postgres::Error> {
    client
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM manage.jobs WHERE name = $1) AS found",
            typed![&name],
        )?
        .try_get("found")
}

/// The jobs that would run now if nothing held them, by name (the due rule
/// of `crate::job::Job::is_due`, less the hold).
pub fn due_jobs(client: &mut impl GenericClient) -> Result<Vec<Job>, postgres::Error> {
    jobs(client.query_typed(
        "SELECT * FROM manage.jobs WHERE enabled AND NOT removed AND running_run IS NULL \
         AND next_run <= clock_timestamp() ORDER BY name",
        &[],
    )?)
}

/// Write what the code or file defines: a new job is created (with its
/// initial notify-on-success), a known one updated and marked defined again,
/// its operator configuration kept.
pub fn write_definition(client: &mut impl GenericClient, def: &JobDef) -> anyhow::Result<()> {
    let (times, interval, cron) = schedule_columns(def.schedule.as_ref());
    let timeout = i32::try_from(def.timeout_secs)?;
    let deadline = def.start_deadline.map(i32::try_from).transpose()?;
    let retries = i32::try_from(def.retries)?;
    let retry_delay = i32::try_from(def.retry_delay_secs)?;
    let alert_after = i32::try_from(def.alert_after)?;
    let jitter = i32::try_from(def.jitter_secs)?;
    let expect = def
        .expect_success_within_secs
        .map(i32::try_from)
        .transpose()?;
    let warn_after = def.warn_after_secs.map(i32::try_from).transpose()?;
    // The dead-man's silence is counted from when its effective value took
    // a new one (§20): here when the declared value changes and no override
    // hides it (the old row's values on the right of each SET).
    client.execute_typed(
        "INSERT INTO manage.jobs (name, app, description, internal, timeout_seconds, builtin_times, \
         builtin_interval_seconds, definition, notify_on_success, builtin_cron, builtin_timezone, \
         builtin_start_deadline_seconds, builtin_retries, builtin_retry_delay_seconds, \
         builtin_alert_after, builtin_runs_on, builtin_jitter_seconds, builtin_notify, \
         builtin_overlap, builtin_on_success, builtin_on_failure, \
         builtin_expect_success_within_seconds, expect_success_since, builtin_warn_after_seconds) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19, $20, $21, $22, CASE WHEN $22 IS NULL THEN NULL ELSE now() END, $23) \
         ON CONFLICT (name) DO UPDATE SET app = $2, description = $3, internal = $4, \
             timeout_seconds = $5, builtin_times = $6, builtin_interval_seconds = $7, \
             definition = $8, removed = false, builtin_cron = $10, builtin_timezone = $11, \
             builtin_start_deadline_seconds = $12, builtin_retries = $13, \
             builtin_retry_delay_seconds = $14, builtin_alert_after = $15, builtin_runs_on = $16, \
             builtin_jitter_seconds = $17, builtin_notify = $18, builtin_overlap = $19, \
             builtin_on_success = $20, builtin_on_failure = $21, \
             builtin_expect_success_within_seconds = $22, builtin_warn_after_seconds = $23, \
             expect_success_since = CASE \
                 WHEN coalesce(manage.jobs.override_expect_success_within_seconds, $22) \
                     IS DISTINCT FROM coalesce(manage.jobs.override_expect_success_within_seconds, \
                         manage.jobs.builtin_expect_success_within_seconds) \
                 THEN now() ELSE manage.jobs.expect_success_since END",
        typed![
            &def.name,
            &def.app,
            &def.description,
            &def.internal,
            &timeout,
            &times,
            &interval,
            &def.definition_json(),
            &def.default_notify_on_success,
            &cron,
            &def.timezone,
            &deadline,
            &retries,
            &retry_delay,
            &alert_after,
            &def.runs_on,
            &jitter,
            &def.notify,
            &def.overlap,
            &def.on_success,
            &def.on_failure,
            &expect,
            &warn_after,
        ],
    )?;
    Ok(())
}

pub fn mark_removed(client: &mut impl GenericClient, name: &str) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET removed = true, next_run = NULL, run_requested = false WHERE name = $1",
        typed![&name],
    )?;
    Ok(())
}

/// Set a job's next run from its schedule. A pending retry loses the time
/// it had but not its place: the run at the new time is still the series'
/// next attempt (§13, as at a regular slot that comes before the retry), so
/// the series ends, and is counted in the failure streak, only with a
/// success or its last attempt. Starting a new series here instead would
/// drop the failed one uncounted, and with it the streak's growth and its
/// alert (§18: rescheduling never ends a streak).
pub fn set_next_run(
    client: &mut impl GenericClient,
    name: &str,
    next_run: Option<DateTime<Utc>>,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET next_run = $2 WHERE name = $1",
        typed![&name, &next_run],
    )?;
    Ok(())
}

/// Forget every run-now request made while a job was running.
pub fn drop_run_requests(client: &mut impl GenericClient) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET run_requested = false WHERE run_requested",
        &[],
    )?;
    Ok(())
}

/// Recompute and store one job's next run from its row as it is in the database.
pub fn reschedule(
    client: &mut impl GenericClient,
    name: &str,
    tz: Tz,
) -> Result<Option<DateTime<Utc>>, postgres::Error> {
    let now = db_now(client)?;
    let Some(row) = job(client, name)? else {
        return Ok(None);
    };
    let next = row.next_run(now, tz);
    set_next_run(client, name, next)?;
    Ok(next)
}

/// Set (or clear, with `None`) a job's override schedule as given.
pub fn set_override(
    client: &mut impl GenericClient,
    name: &str,
    schedule: Option<&Schedule>,
) -> Result<(), postgres::Error> {
    let (times, interval, cron) = schedule_columns(schedule);
    client.execute_typed(
        "UPDATE manage.jobs SET override_times = $2, override_interval_seconds = $3, override_cron = $4 \
         WHERE name = $1",
        typed![&name, &times, &interval, &cron],
    )?;
    Ok(())
}

/// What `jobs configure` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigChange {
    pub enabled: Option<bool>,
    pub notify_on_success: Option<bool>,
    /// `Some(None)` clears the override.
    pub override_schedule: Option<Option<Schedule>>,
    /// `Some(None)` returns the job to its declared or the configured zone.
    pub timezone: Option<Option<Tz>>,
    /// `Some(None)` clears the operator's start deadline.
    pub start_deadline: Option<Option<u32>>,
    /// The operator's retries and retry delay (§13).
    pub retries: Option<u32>,
    pub retry_delay_secs: Option<u32>,
    /// The operator's `alert_after` (§14).
    pub alert_after: Option<u32>,
    /// The operator's `runs_on` (§19); `Some(None)` returns the job to its
    /// declared one.
    pub runs_on: Option<Option<Vec<String>>>,
    /// The operator's jitter in seconds (§21); `Some(None)` returns the job
    /// to its declared one.
    pub jitter_secs: Option<Option<u32>>,
    /// Pause until an instant, or for a while from the database's now
    /// (§21); `Some(None)` resumes.
    pub pause: Option<Option<crate::input::Until>>,
    /// The operator's `notify` (§20); `Some(None)` returns the job to its
    /// declared one (or the global recipient).
    pub notify: Option<Option<Vec<String>>>,
    /// The operator's overlap policy (§21); `Some(None)` returns the job
    /// to its declared one.
    pub overlap: Option<Option<crate::job::Overlap>>,
    /// The operator's chains on outcome (§21); `Some(None)` returns the job
    /// to its declared lists.
    pub on_success: Option<Option<Vec<String>>>,
    pub on_failure: Option<Option<Vec<String>>>,
    /// The operator's dead-man silence and slow-run warning in seconds
    /// (§20); `Some(None)` returns the job to its declared one.
    pub expect_success_within_secs: Option<Option<u32>>,
    pub warn_after_secs: Option<Option<u32>>,
}

/// Apply a configuration change, reschedule (a pending retry keeps its
/// place in the series, as in `set_next_run`), and wake the runners, in the
/// caller's transaction (`crate::ops::configure` writes the audit row in it too).
/// Returns the job as it was before and as it is afterwards.
pub fn configure(
    client: &mut impl GenericClient,
    name: &str,
    change: &ConfigChange,
    tz: Tz,
) -> anyhow::Result<(Job, Job)> {
    let tx = client;
    let Some(before) = job_for_update(tx, name)? else {
        anyhow::bail!("job {name} vanished");
    };
    let mut row = before.clone();
    if let Some(enabled) = change.enabled {
        row.enabled = enabled;
    }
    if let Some(notify) = change.notify_on_success {
        row.notify_on_success = notify;
    }
    if let Some(wanted) = &change.override_schedule {
        row.set_override(wanted.clone());
    }
    if let Some(zone) = &change.timezone {
        row.override_timezone = zone.map(|z| z.name().to_string());
    }
    if let Some(deadline) = &change.start_deadline {
        row.override_start_deadline_seconds =
            deadline.map(|d| i32::try_from(d).unwrap_or(i32::MAX));
    }
    if let Some(retries) = change.retries {
        row.override_retries = Some(i32::try_from(retries)?);
    }
    if let Some(delay) = change.retry_delay_secs {
        row.override_retry_delay_seconds = Some(i32::try_from(delay)?);
    }
    if let Some(alert_after) = change.alert_after {
        row.override_alert_after = Some(i32::try_from(alert_after)?);
    }
    if let Some(runs_on) = &change.runs_on {
        row.override_runs_on = runs_on.clone();
    }
    if let Some(notify) = &change.notify {
        row.override_notify = notify.clone();
    }
    if let Some(jitter) = change.jitter_secs {
        row.override_jitter_seconds = jitter.map(i32::try_from).transpose()?;
    }
    if let Some(overlap) = change.overlap {
        row.override_overlap = overlap;
    }
    if let Some(on_success) = &change.on_success {
        row.override_on_success = on_success.clone();
    }
    if let Some(on_failure) = &change.on_failure {
        row.override_on_failure = on_failure.clone();
    }
    if change.on_success.is_some() || change.on_failure.is_some() {
        check_chains(tx, &row)?;
    }
    if let Some(expect) = change.expect_success_within_secs {
        row.override_expect_success_within_seconds = expect.map(i32::try_from).transpose()?;
    }
    if let Some(warn_after) = change.warn_after_secs {
        row.override_warn_after_seconds = warn_after.map(i32::try_from).transpose()?;
    }
    if row.warn_after_seconds().is_some() && row.kind() == crate::job::Kind::Sql {
        return crate::error::bad_input(format!(
            "--warn-after for job {name}: applies to a job with a command or written in Rust; \
             an SQL job's timeout cancels it"
        ));
    }
    // Only a child process has a timeout that stops it (§2).
    if let Some(warn_after) = row
        .warn_after_seconds()
        .filter(|_| row.kind() == crate::job::Kind::Process)
    {
        let timeout = u32::try_from(row.timeout_seconds).unwrap_or(u32::MAX);
        if let Err(problem) = crate::config::check_warn_after(warn_after, timeout) {
            return crate::error::bad_input(format!("--warn-after for job {name}: {problem}"));
        }
    }
    if let Some(schedule) = row.effective_schedule() {
        if let Err(problem) =
            crate::config::check_jitter(row.jitter_seconds(), Some(&schedule), row.zone(tz))
        {
            return crate::error::bad_input(format!("--jitter for job {name}: {problem}"));
        }
    }
    let now = db_now(tx)?;
    if let Some(pause) = &change.pause {
        row.paused_until = match pause {
            None => None,
            Some(until) => {
                let at = until.resolve(now);
                if at <= now {
                    return crate::error::bad_input(format!(
                        "--pause-until for job {name}: {} has passed: expected a later instant",
                        crate::schedule::json_instant(at, tz)
                    ));
                }
                Some(at)
            }
        };
    }
    if row.expect_success_within_seconds() != before.expect_success_within_seconds() {
        row.expect_success_since = row.expect_success_within_seconds().map(|_| now);
    }
    row.next_run = row.next_run(now, tz);
    tx.execute_typed(
        "UPDATE manage.jobs SET enabled = $2, notify_on_success = $3, override_times = $4, \
         override_interval_seconds = $5, next_run = $6, override_cron = $7, override_timezone = $8, \
         override_start_deadline_seconds = $9, override_retries = $10, \
         override_retry_delay_seconds = $11, override_alert_after = $12, override_runs_on = $13, \
         override_jitter_seconds = $14, paused_until = $15, override_notify = $16, \
         override_overlap = $17, override_on_success = $18, override_on_failure = $19, \
         override_expect_success_within_seconds = $20, override_warn_after_seconds = $21, \
         expect_success_since = $22 \
         WHERE name = $1",
        typed![
            &name,
            &row.enabled,
            &row.notify_on_success,
            &row.override_times,
            &row.override_interval_seconds,
            &row.next_run,
            &row.override_cron,
            &row.override_timezone,
            &row.override_start_deadline_seconds,
            &row.override_retries,
            &row.override_retry_delay_seconds,
            &row.override_alert_after,
            &row.override_runs_on,
            &row.override_jitter_seconds,
            &row.paused_until,
            &row.override_notify,
            &row.override_overlap,
            &row.override_on_success,
            &row.override_on_failure,
            &row.override_expect_success_within_seconds,
            &row.override_warn_after_seconds,
            &row.expect_success_since,
        ],
    )?;
    notify_runners(tx)?;
    Ok((before, row))
}

/// The chains of `changed` as `jobs configure` would leave them (§21): every
/// name a job that is not removed, and no cycle through trigger_next,
/// on_success and on_failure of all the jobs — else bad input, as the file's
/// own check says it (§17), and nothing is written.
fn check_chains(client: &mut impl GenericClient, changed: &Job) -> anyhow::Result<()> {
    let all = all_jobs(client)?;
    let known = |name: &str| all.iter().any(|j| j.name == name && !j.removed);
    for (flag, targets) in [
        ("--on-success", changed.on_success()),
        ("--on-failure", changed.on_failure()),
    ] {
        if let Some(unknown) = targets.iter().find(|t| !known(t)) {
            return crate::error::bad_input(format!(
                "{flag} for job {}: \"{unknown}\" is not a known job",
                changed.name
            ));
        }
    }
    let edges: std::collections::BTreeMap<&str, Vec<&str>> = all
        .iter()
        .filter(|j| !j.removed)
        .map(|j| {
            let job = if j.name == changed.name { changed } else { j };
            (job.name.as_str(), job.scheduled_after_any().collect())
        })
        .collect();
    match crate::config::cycle_in(&edges) {
        None => Ok(()),
        Some(path) => crate::error::bad_input(format!(
            "job {}: {}",
            changed.name,
            crate::config::cycle_problem(&path)
        )),
    }
}

/// The slot the run `run_id` of `name` meets while it lasts (§21), written
/// once it is claimed; nothing when the run is no longer the job's.
pub fn set_overlap_slot(
    client: &mut impl GenericClient,
    name: &str,
    run_id: i64,
    slot: DateTime<Utc>,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET overlap_slot = $3 WHERE name = $1 AND running_run = $2",
        typed![&name, &run_id, &slot],
    )?;
    Ok(())
}

/// The running jobs whose overlap slot has come (§21) and that this runner
/// may act on (it defines them, they take its tags, nothing is held), not
/// already asked to be replaced; locked, skipping rows another runner is
/// acting on. With the database's now.
pub fn overlapping_jobs(
    client: &mut impl GenericClient,
    runner_id: i64,
    tags: &[String],
) -> Result<(Vec<Job>, DateTime<Utc>), postgres::Error> {
    let rows = client.query_typed(
        concat!(
            "SELECT *, clock_timestamp() AS db_now FROM manage.jobs \
             WHERE overlap_slot <= clock_timestamp() AND running_run IS NOT NULL \
               AND replace_run IS DISTINCT FROM running_run AND enabled AND NOT removed \
               AND NOT (SELECT held FROM manage.hold) AND ",
            defined_by_runner!("$1", "$2"),
            " ORDER BY name FOR UPDATE SKIP LOCKED"
        ),
        typed![&runner_id, &tags],
    )?;
    let now = match rows.first() {
        Some(row) => row.try_get("db_now")?,
        None => db_now(client)?,
    };
    Ok((jobs(rows)?, now))
}

/// An overlap slot skipped (§21): recorded as skips are (`last skip`, its
/// reason and the running claim's id), and the slot moved on to `next`.
pub fn skip_overlap(
    client: &mut impl GenericClient,
    job: &Job,
    at: DateTime<Utc>,
    reason: &str,
    next: Option<DateTime<Utc>>,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET overlap_slot = $3, last_skip = $4, last_skip_reason = $5, \
             last_skip_run = running_run \
         WHERE name = $1 AND running_run = $2",
        typed![&job.name, &job.running_run, &next, &at, &reason],
    )?;
    Ok(())
}

/// Ask the runner that owns the job's running run to stop it for a new one
/// (§21): `replace_run` names it, and the NOTIFY's payload tells the owner
/// which run (`replace:RUN_ID`). A job without an overlap policy any more
/// just forgets its slot.
pub fn request_replace(client: &mut impl GenericClient, job: &Job) -> Result<(), postgres::Error> {
    let Some(run_id) = job.running_run else {
        return Ok(());
    };
    client.execute_typed(
        "UPDATE manage.jobs SET replace_run = running_run WHERE name = $1 AND running_run = $2",
        typed![&job.name, &run_id],
    )?;
    let payload = format!("{REPLACE_PREFIX}{run_id}");
    client.execute_typed(
        "SELECT pg_notify($1, $2)",
        typed![&super::CHANNEL, &payload],
    )?;
    Ok(())
}

/// Forget a job's overlap slot (its policy is `wait` again).
pub fn clear_overlap_slot(
    client: &mut impl GenericClient,
    job: &Job,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET overlap_slot = NULL WHERE name = $1 AND running_run = $2",
        typed![&job.name, &job.running_run],
    )?;
    Ok(())
}

/// The NOTIFY payload that asks a run's owner to stop it: `replace:RUN_ID`.
pub const REPLACE_PREFIX: &str = "replace:";

/// Of `runs` (this runner's own), the ones a runner has asked to be
/// replaced: the owner's second chance when the NOTIFY was lost.
pub fn replace_requests(
    client: &mut impl GenericClient,
    runs: &[i64],
) -> Result<Vec<i64>, postgres::Error> {
    client
        .query_typed(
            "SELECT replace_run FROM manage.jobs WHERE replace_run = ANY($1) AND replace_run = running_run",
            typed![&runs],
        )?
        .iter()
        .map(|row| row.try_get("replace_run"))
        .collect()
}

/// Run-now, with `args` for that run (§21; none: `&[]`): through the same
/// SQL function applications call, so both refuse and queue alike.
pub fn trigger_job(
    client: &mut impl GenericClient,
    name: &str,
    delay_secs: u32,
    args: &[String],
) -> Result<(), postgres::Error> {
    let delay = f64::from(delay_secs);
    client.execute_typed(
        "SELECT manage.trigger_job($1, make_interval(secs => $2), $3)",
        typed![&name, &delay, &args],
    )?;
    Ok(())
}

/// Forget the last run's failure: last run and last state become null.
pub fn reset_failure(client: &mut impl GenericClient, name: &str) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET last_run = NULL, last_state = NULL, consecutive_failures = 0, \
         alert_mailed = false WHERE name = $1",
        typed![&name],
    )?;
    Ok(())
}

/// A claim the first phase skipped, as the job records it.
#[derive(Debug, Clone, Copy)]
pub struct Skip<'a> {
    pub at: DateTime<Utc>,
    /// The id the claim had (its `running` row goes: skips are not runs).
    pub run_id: i64,
    /// Why there was nothing to do, as should_run said.
    pub reason: &'a str,
}

/// A finished run, as its job records it.
#[derive(Debug, Clone, Copy)]
pub struct Finish {
    pub at: DateTime<Utc>,
    pub state: RunState,
    pub runtime_seconds: f64,
    /// The failure streak after it (§14); `None` leaves the streak alone.
    pub streak: Option<crate::job::Alert>,
}

/// After a run or a skip: the job is no longer running, and its next run is
/// set; a run (`last`) also sets last run and state, its runtime, its
/// success and the failure streak, and clears last skipped; a skip
/// (`skipped`) only sets last skipped, with its reason and claim.
pub fn finish_job(
    client: &mut impl GenericClient,
    name: &str,
    last: Option<&Finish>,
    skipped: Option<&Skip>,
    next_run: Option<DateTime<Utc>>,
    next_attempt: i32,
    disable: bool,
) -> Result<(), postgres::Error> {
    let last_run = last.map(|l| l.at);
    let last_state = last.map(|l| l.state);
    let runtime = last.map(|l| l.runtime_seconds);
    let succeeded = last.is_some_and(|l| l.state == RunState::Succeeded);
    let streak = last.and_then(|l| l.streak);
    let failures = streak.map(|s| s.consecutive_failures);
    let mailed = streak.map(|s| s.alert_mailed);
    let (skipped_at, skip_run, skip_reason) = match skipped {
        Some(skip) => (Some(skip.at), Some(skip.run_id), Some(skip.reason)),
        None => (None, None, None),
    };
    client.execute_typed(
        // A request that arrived during the run makes the next run its own,
        // exempt from the start deadline like any run-now (§11).
        "UPDATE manage.jobs SET running_run = NULL, run_requested = false, next_run = $2, \
             requested_run = CASE WHEN run_requested THEN $2 ELSE requested_run END, \
             last_run = CASE WHEN $3::timestamptz IS NULL THEN last_run ELSE $3 END, \
             last_state = CASE WHEN $3::timestamptz IS NULL THEN last_state ELSE $4::text END, \
             last_skip = CASE WHEN $3::timestamptz IS NULL THEN $5::timestamptz ELSE NULL END, \
             last_skip_run = CASE WHEN $5::timestamptz IS NULL THEN last_skip_run ELSE $7::bigint END, \
             last_skip_reason = CASE WHEN $5::timestamptz IS NULL THEN last_skip_reason ELSE $8::text END, \
             enabled = enabled AND NOT $6, next_attempt = $9, \
             last_runtime_seconds = coalesce($10, last_runtime_seconds), \
             last_success = CASE WHEN $11 THEN $3 ELSE last_success END, \
             consecutive_failures = coalesce($12, consecutive_failures), \
             alert_mailed = coalesce($13, alert_mailed), overlap_slot = NULL, replace_run = NULL \
         WHERE name = $1",
        typed![
            &name,
            &next_run,
            &last_run,
            &last_state,
            &skipped_at,
            &disable,
            &skip_run,
            &skip_reason,
            &next_attempt,
            &runtime,
            &succeeded,
            &failures,
            &mailed
        ],
    )?;
    Ok(())
}

/// A job's latest skip, as `run-now --wait` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedClaim {
    /// The id the skipped claim had.
    pub run_id: i64,
    pub reason: String,
}

/// The job's latest skip, when its claim is newer than the claim `after_id`
/// (see `newest_claim_id`).
pub fn skip_after(
    client: &mut impl GenericClient,
    job: &str,
    after_id: i64,
) -> Result<Option<SkippedClaim>, postgres::Error> {
    client
        .query_typed_opt(
            "SELECT last_skip_run, coalesce(last_skip_reason, 'no reason was recorded') AS reason \
             FROM manage.jobs WHERE name = $1 AND last_skip_run > $2",
            typed![&job, &after_id],
        )?
        .map(|row| {
            Ok(SkippedClaim {
                run_id: row.try_get("last_skip_run")?,
                reason: row.try_get("reason")?,
            })
        })
        .transpose()
}

/// Schedule a job to run now, after another completed (`trigger_next`) or to
/// send the mail just queued. A running job gets the run-requested marker; a
/// disabled or removed one is left alone. False when no such job exists.
pub fn schedule_now(client: &mut impl GenericClient, name: &str) -> Result<bool, postgres::Error> {
    let row = client.query_typed_opt(
        // One reading of the clock for both columns, so that the deadline
        // sees the due time as the request's.
        "WITH now AS (SELECT clock_timestamp() AS t) \
         UPDATE manage.jobs SET \
             next_run = CASE WHEN running_run IS NULL AND enabled AND NOT removed THEN now.t ELSE next_run END, \
             requested_run = CASE WHEN running_run IS NULL AND enabled AND NOT removed THEN now.t ELSE requested_run END, \
             run_requested = run_requested OR (running_run IS NOT NULL AND enabled AND NOT removed) \
         FROM now WHERE name = $1 RETURNING 1",
        typed![&name],
    )?;
    Ok(row.is_some())
}

/// Mark the dead-man alert (§20) sent for every job that is silent too long
/// and has not had it for this silence, and return those jobs. One
/// conditional UPDATE in the caller's transaction, which queues the alerts:
/// a second runner doing the same at once waits for the row, then finds it
/// marked, so each alert goes out once.
pub fn take_dead_man_alerts(client: &mut impl GenericClient) -> Result<Vec<Job>, postgres::Error> {
    let sql = concat!(
        "UPDATE manage.jobs SET overdue_alerted_at = clock_timestamp() WHERE ",
        silent_too_long!(),
        " AND NOT ",
        dead_man_alerted!(),
        " RETURNING *"
    );
    jobs(client.query_typed(sql, &[])?)
}

/// When the job's current failure streak began: the end of its first run
/// after `after` (its last success) that did not succeed.
pub fn failing_since(
    client: &mut impl GenericClient,
    job: &str,
    after: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, postgres::Error> {
    client
        .query_typed_one(
            "SELECT min(finished_at) AS since FROM manage.runs \
             WHERE job = $1 AND state <> $2 AND state <> $3 \
               AND ($4::timestamptz IS NULL OR finished_at > $4)",
            typed![&job, &RunState::Running, &RunState::Succeeded, &after],
        )?
        .try_get("since")
}
