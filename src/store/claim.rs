//! The runner's hot path, across `manage.jobs` and `manage.runs`: claim due
//! jobs (their `running` rows written and the jobs marked running in one
//! statement), record a run and claim the worker's next in one statement, and
//! the agenda the loop sleeps by.
//!
//! A runner claims, and sleeps by, only the jobs its own configuration
//! defines (§17): during a rolling deploy an older runner shares the database
//! with jobs it has never heard of, and those wait for a runner that defines
//! them. The defined names are rows of `manage.runner_jobs`, written when
//! the runner registers (`register_runner`, `rejoin`), so a statement carries
//! the runner's id, not its list.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::{Prepared, CHANNEL};
use crate::job::{Job, RunState};

/// A run the runner has claimed: its `running` row exists and the job is
/// marked running, in one statement.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
    pub job: Job,
    /// The run's mark for its processes (§18); None only for a run claimed
    /// before the token existed.
    pub token: Option<String>,
    /// The arguments of this one run (§21), from the extra run it took;
    /// empty for a scheduled run.
    pub args: Vec<String>,
}

impl Claimed {
    /// The job's columns, `run_id` and `run_started_at`, as `claimed` returns them.
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(Claimed {
            job: Job::from_row(row)?,
            run_id: row.try_get("run_id")?,
            started_at: row.try_get("run_started_at")?,
            token: row.try_get("run_token")?,
            args: row.try_get("run_args")?,
        })
    }
}

/// Who claims: a runner, on its host, for the jobs its configuration defines.
#[derive(Debug, Clone, Copy)]
pub struct Claimant<'a> {
    pub runner_id: i64,
    pub host: &'a str,
    /// The runner's tags (§19): it claims only jobs whose runs_on they cover.
    pub tags: &'a [String],
}

/// The CTEs that claim due jobs (`due`, `runs`, `claimed`): lock the due rows
/// (skipping rows another runner is claiming right now), insert their running
/// history rows and point the jobs at them. `claimed` returns the job's
/// columns, then the run's id and start. The arguments name the parameters:
/// how many, the runner's id, its host, the jobs it defines, the running
/// state; `gate` is one more condition on claiming at all. `due` is the rule
/// of `Job::is_due`, less the jobs this runner does not define. Its bound
/// on `statement_timestamp()` is there for the index alone: `clock_timestamp()`
/// is volatile, so it is only a filter, and a claim that found nothing due
/// walked all of `jobs_due` — every worker's record-and-claim in a quiet
/// moment, 60 ms with 10,000 jobs under load against 0.2 ms (issue 28). The
/// second of slack covers the statement's own time (a row due since its
/// start is still claimed); a statement slower than that leaves a job for the
/// next claim. `extra`
/// takes each claimed job's earliest due extra run (§21), whose arguments
/// the run gets: under the job row's lock, so each starts one run.
macro_rules! claim_ctes {
    ($limit:literal, $runner_id:literal, $host:literal, $tags:literal, $running:literal, $gate:literal) => {
        concat!(
            "due AS ( \
                 SELECT name, next_attempt FROM manage.jobs \
                 WHERE enabled AND NOT removed AND running_run IS NULL AND next_run <= clock_timestamp() \
                   AND next_run <= statement_timestamp() + interval '1 second' \
                   AND ", defined_by_runner!($runner_id, $tags), " \
                   AND NOT (SELECT held FROM manage.hold) AND ", $gate, " \
                 ORDER BY next_run, name LIMIT ", $limit, " FOR UPDATE SKIP LOCKED \
             ), extra AS ( \
                 DELETE FROM manage.extra_runs x WHERE x.id IN ( \
                     SELECT DISTINCT ON (e.job) e.id FROM manage.extra_runs e JOIN due ON e.job = due.name \
                     WHERE e.at <= clock_timestamp() ORDER BY e.job, e.at, e.id) \
                 RETURNING x.job, x.args \
             ), runs AS ( \
                 INSERT INTO manage.runs (job, state, started_at, runner_id, host, attempt, args) \
                 SELECT name, ", $running, ", clock_timestamp(), ", $runner_id, ", ", $host, ", next_attempt, \
                        coalesce(extra.args, '{}') FROM due LEFT JOIN extra ON extra.job = due.name \
                 RETURNING id, job, started_at, token, args \
             ), claimed AS ( \
                 UPDATE manage.jobs j SET running_run = runs.id FROM runs WHERE j.name = runs.job \
                 RETURNING j.*, runs.id AS run_id, runs.started_at AS run_started_at, runs.token AS run_token, \
                     runs.args AS run_args \
             )"
        )
    };
}

/// Claim up to `limit` due jobs for this runner in ONE statement (see
/// `claim_ctes`). Once committed, the jobs are no longer due for anyone
/// (running_run is set), so each due run is taken by exactly one runner and a
/// job never overlaps itself.
pub fn claim_due(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    claimant: &Claimant,
    limit: i64,
) -> Result<Vec<Claimed>, postgres::Error> {
    const SQL: &str = concat!(
        "WITH ",
        claim_ctes!("$1", "$2", "$3", "$5", "$4", "true"),
        " SELECT * FROM claimed"
    );
    let rows = query_claim(client, prepared, "claim_due", SQL, claimant, limit)?;
    claimed_rows(&rows)
}

/// `claim_due`, and in the same statement the agenda as it is after the
/// claim (the claimed jobs left out): the runner's loop, woken for a due
/// instant, then costs the database one statement whether it wins the run
/// or another runner does — with several runners on one database, every one
/// of them wakes for each due instant. The agenda is None only if the
/// statement answered no row at all, which it does not (the loop would then
/// ask for the agenda on its own).
pub fn claim_due_with_agenda(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    claimant: &Claimant,
    limit: i64,
) -> Result<(Vec<Claimed>, Option<Agenda>), postgres::Error> {
    const SQL: &str = concat!(
        "WITH ",
        claim_ctes!("$1", "$2", "$3", "$5", "$4", "true"),
        " SELECT ",
        agenda_columns!("$2", "$5", "name <> ALL (ARRAY(SELECT name FROM due))"),
        ", c.* FROM (SELECT 1) one LEFT JOIN claimed c ON true"
    );
    let rows = query_claim(client, prepared, "claim_due_agenda", SQL, claimant, limit)?;
    let agenda = rows.first().map(Agenda::from_row).transpose()?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in &rows {
        // The row of an agenda with nothing claimed beside it.
        if row.try_get::<_, Option<i64>>("run_id")?.is_some() {
            claimed.push(row);
        }
    }
    Ok((claimed_rows(claimed)?, agenda))
}

fn query_claim(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    name: &'static str,
    sql: &'static str,
    claimant: &Claimant,
    limit: i64,
) -> Result<Vec<postgres::Row>, postgres::Error> {
    prepared.query(
        client,
        name,
        sql,
        typed![
            &limit,
            &claimant.runner_id,
            &claimant.host,
            &RunState::Running,
            &claimant.tags
        ],
    )
}

/// The claimed runs of the rows, in run order.
fn claimed_rows<'r>(
    rows: impl IntoIterator<Item = &'r postgres::Row>,
) -> Result<Vec<Claimed>, postgres::Error> {
    let mut claimed: Vec<Claimed> = rows
        .into_iter()
        .map(Claimed::from_row)
        .collect::<Result<_, postgres::Error>>()?;
    claimed.sort_by_key(|c| c.run_id);
    Ok(claimed)
}

/// The common case of recording a run, in ONE statement and so without a
/// transaction of its own: the job is finished and rescheduled (to `next_run`,
/// or at once when a run was requested meanwhile), the history row ended, the
/// runners woken when someone must learn of it promptly (§17: a requested
/// run, which a `run-now --wait` may wait on, or a next run before
/// `wake_before`), and — with `claim` — the worker's next run claimed.
///
/// No NOTIFY otherwise: PostgreSQL serialises the commits of notifying
/// transactions on one lock, which capped a burst of runs.
///
/// The next run was computed from the job as it was claimed, so the statement
/// only applies while that configuration still holds (and the run is still
/// this runner's): `Ok(None)` means nothing was written and the caller takes
/// the general path. A job with an overlap policy other than `wait`, or with
/// a chain on outcome (§21), always takes the general path; the statement
/// checks it still has neither. It ends any series of retries (§13): the caller sends
/// a failure that needs a retry down the general path, and the statement
/// checks that the job's retries are still what the caller decided by.
pub struct FastRecord<'a> {
    pub run_id: i64,
    pub state: RunState,
    pub finished_at: DateTime<Utc>,
    pub runtime_seconds: f64,
    pub output: &'a str,
    pub next_run: Option<DateTime<Utc>>,
    /// The job as claimed: its configuration is the guard, and so is its
    /// `overdue_alerted_at`: a dead-man alert sent since the claim (§20)
    /// needs the recovery mail that only the general path queues.
    pub job: &'a Job,
    /// The failure streak after this run (§14), decided from the job as
    /// claimed: the statement writes it only if the streak and alert_after
    /// are still what they were then.
    pub streak: crate::job::Alert,
    /// Who claims the next run, if anyone.
    pub claim: Option<Claimant<'a>>,
    /// A next run before this instant NOTIFYs the runners (§17): one that
    /// other runners, which look at the agenda at least every heartbeat,
    /// would otherwise sleep past. Anything later, or no next run, is
    /// recorded without a NOTIFY.
    pub wake_before: DateTime<Utc>,
}

pub fn record_fast(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    r: &FastRecord,
) -> Result<Option<Option<Claimed>>, postgres::Error> {
    const SQL: &str = concat!(
        "WITH finished AS ( \
             UPDATE manage.jobs SET running_run = NULL, run_requested = false, \
                 next_run = CASE WHEN run_requested THEN $3 ELSE $6 END, \
                 requested_run = CASE WHEN run_requested THEN $3 ELSE requested_run END, \
                 last_run = $3, last_state = $2, last_skip = NULL, next_attempt = 1, \
                 last_runtime_seconds = $4, \
                 last_success = CASE WHEN $2 = $31 THEN $3 ELSE last_success END, \
                 consecutive_failures = $29, alert_mailed = $30 \
             WHERE name = $7 AND running_run = $1 AND enabled AND NOT removed \
               AND consecutive_failures = $26 AND alert_mailed = $27 \
               AND coalesce(override_alert_after, builtin_alert_after) = $28 \
               AND notify_on_success = $8 \
               AND coalesce(override_retries, builtin_retries) = $23 \
               AND override_times IS NOT DISTINCT FROM $9 \
               AND override_interval_seconds IS NOT DISTINCT FROM $10 \
               AND builtin_times IS NOT DISTINCT FROM $11 \
               AND builtin_interval_seconds IS NOT DISTINCT FROM $12 \
               AND override_cron IS NOT DISTINCT FROM $19 \
               AND builtin_cron IS NOT DISTINCT FROM $20 \
               AND override_timezone IS NOT DISTINCT FROM $21 \
               AND builtin_timezone IS NOT DISTINCT FROM $22 \
               AND paused_until IS NOT DISTINCT FROM $33 \
               AND coalesce(override_jitter_seconds, builtin_jitter_seconds) = $34 \
               AND coalesce(override_overlap, builtin_overlap) = $35 \
               AND cardinality(coalesce(override_on_success, builtin_on_success)) = 0 \
               AND cardinality(coalesce(override_on_failure, builtin_on_failure)) = 0 \
               AND overdue_alerted_at IS NOT DISTINCT FROM $18 \
             RETURNING name, next_run \
         ), recorded AS ( \
             UPDATE manage.runs SET state = $2, finished_at = $3, runtime_seconds = $4, output = $5 \
             WHERE id = $1 AND state = $17 AND EXISTS (SELECT 1 FROM finished) \
             RETURNING id \
         ), woken AS ( \
             SELECT pg_notify($16, '') FROM finished \
             WHERE EXISTS (SELECT 1 FROM recorded) AND ($24 OR finished.next_run < $25) \
         ), ",
        claim_ctes!("1", "$14", "$15", "$32", "$17", "$13 AND EXISTS (SELECT 1 FROM recorded)"),
        " SELECT (SELECT count(*) FROM recorded) AS recorded, (SELECT count(*) FROM woken) AS woken, c.* \
         FROM (SELECT 1) one LEFT JOIN claimed c ON true"
    );
    let (claim, runner_id, host, tags) = match r.claim {
        Some(c) => (true, c.runner_id, c.host, c.tags),
        None => (false, 0, "", &[][..]),
    };
    let job = r.job;
    let retries = i32::try_from(job.retries()).unwrap_or(i32::MAX);
    let alert_after = i32::try_from(job.alert_after()).unwrap_or(i32::MAX);
    let jitter = i32::try_from(job.jitter_seconds()).unwrap_or(i32::MAX);
    // A requested run (run-now, a trigger_next) may have a `run-now --wait`
    // waiting on it: its record always NOTIFYs (§17).
    let requested = job.next_run.is_some() && job.requested_run == job.next_run;
    let row = prepared.query_one(
        client,
        "record_fast",
        SQL,
        typed![
            &r.run_id,
            &r.state,
            &r.finished_at,
            &r.runtime_seconds,
            &r.output,
            &r.next_run,
            &job.name,
            &job.notify_on_success,
            &job.override_times,
            &job.override_interval_seconds,
            &job.builtin_times,
            &job.builtin_interval_seconds,
            &claim,
            &runner_id,
            &host,
            &CHANNEL,
            &RunState::Running,
            &job.overdue_alerted_at,
            &job.override_cron,
            &job.builtin_cron,
            &job.override_timezone,
            &job.builtin_timezone,
            &retries,
            &requested,
            &r.wake_before,
            &job.consecutive_failures,
            &job.alert_mailed,
            &alert_after,
            &r.streak.consecutive_failures,
            &r.streak.alert_mailed,
            &RunState::Succeeded,
            &tags,
            &job.paused_until,
            &jitter,
            &crate::job::Overlap::Wait
        ],
    )?;
    let recorded: i64 = row.try_get("recorded")?;
    if recorded == 0 {
        return Ok(None);
    }
    let next_run_id: Option<i64> = row.try_get("run_id")?;
    Ok(Some(match next_run_id {
        Some(_) => Some(Claimed::from_row(&row)?),
        None => None,
    }))
}

/// Give back a claim the runner cannot honour (a job it does not define):
/// the job is no longer running and keeps its next run and any run request,
/// so it is still due; the `running` row goes, since nothing ran (its
/// arguments, which the claim took from an extra run, go back there); and the
/// runners are woken, so that one that defines the job takes it. False when
/// the claim was no longer this run's.
pub fn release_claim(
    client: &mut impl GenericClient,
    run_id: i64,
    job: &str,
) -> Result<bool, postgres::Error> {
    let rows = client.query_typed(
        "WITH released AS ( \
             UPDATE manage.jobs SET running_run = NULL WHERE name = $1 AND running_run = $2 \
             RETURNING name \
         ), deleted AS ( \
             DELETE FROM manage.runs WHERE id = $2 AND state = $3 AND EXISTS (SELECT 1 FROM released) \
             RETURNING id, job, started_at, args \
         ), requeued AS ( \
             INSERT INTO manage.extra_runs (job, at, args) \
             SELECT job, started_at, args FROM deleted WHERE cardinality(args) > 0 \
         ) \
         SELECT pg_notify($4, '') FROM deleted",
        typed![&job, &run_id, &RunState::Running, &CHANNEL],
    )?;
    Ok(!rows.is_empty())
}

/// What the runner's loop needs to decide how long to sleep.
#[derive(Debug, Clone, Copy)]
pub struct Agenda {
    pub held: bool,
    /// When the hold ends by itself (`jobs hold --until`).
    pub held_until: Option<DateTime<Utc>>,
    /// The earliest next run of a job that this runner could run.
    pub next_due: Option<DateTime<Utc>>,
    /// The earliest slot that a running skip/replace job this runner could
    /// act on meets while it runs (§21).
    pub next_overlap: Option<DateTime<Utc>>,
    pub db_now: DateTime<Utc>,
}

impl Agenda {
    /// Whether a job this runner could run is due (and jobs are not held).
    pub fn due_now(&self) -> bool {
        !self.held && self.next_due.is_some_and(|d| d <= self.db_now)
    }

    /// The `agenda_columns!` of a statement.
    pub(super) fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(Agenda {
            held: row.try_get("held")?,
            held_until: row.try_get("held_until")?,
            next_due: row.try_get("next_due")?,
            next_overlap: row.try_get("next_overlap")?,
            db_now: row.try_get("db_now")?,
        })
    }
}

/// The agenda of runner `runner_id` (of the jobs it registered as defined)
/// with `tags`.
pub fn agenda(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    runner_id: i64,
    tags: &[String],
) -> Result<Agenda, postgres::Error> {
    const SQL: &str = concat!("SELECT ", agenda_columns!("$1", "$2"));
    let row = prepared.query_one(client, "agenda", SQL, typed![&runner_id, &tags])?;
    Agenda::from_row(&row)
}
