//! All SQL for jobs, runs, the hold, runners and the mail queue. Nothing else in
//! `manage` writes SQL (the migrations aside), so a reader finds every query the
//! program makes here, and every statement is written once.

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use postgres::types::{ToSql, Type};
use postgres::GenericClient;

use crate::schedule::{self, Schedule};

/// The PostgreSQL type of a Rust value as this module binds it. Every
/// statement here is sent with its parameter types (`*_typed`): one round trip
/// instead of three (prepare, execute, close) for an unnamed statement —
/// which is most of what a run, a heartbeat or `jobs list` costs.
trait PgType {
    const TYPE: Type;
}

macro_rules! pg_type {
    ($($rust:ty => $pg:expr),* $(,)?) => {
        $(impl PgType for $rust {
            const TYPE: Type = $pg;
        })*
    };
}

pg_type! {
    bool => Type::BOOL,
    i32 => Type::INT4,
    i64 => Type::INT8,
    f64 => Type::FLOAT8,
    str => Type::TEXT,
    String => Type::TEXT,
    DateTime<Utc> => Type::TIMESTAMPTZ,
    serde_json::Value => Type::JSONB,
    Vec<NaiveTime> => Type::TIME_ARRAY,
    [i64] => Type::INT8_ARRAY,
}

impl<T: PgType + ?Sized> PgType for &T {
    const TYPE: Type = T::TYPE;
}

impl<T: PgType> PgType for Option<T> {
    const TYPE: Type = T::TYPE;
}

fn pg_type_of<T: PgType + ?Sized>(_: &T) -> Type {
    T::TYPE
}

/// Parameters with their types, for the `*_typed` calls.
macro_rules! typed {
    ($($param:expr),* $(,)?) => {
        &[$(($param as &(dyn ToSql + Sync), pg_type_of($param))),*]
    };
}

/// Statements prepared once on one connection, for the runner's hot path:
/// the server then plans the claim and the record once (after a few runs, a
/// generic plan) instead of at every run, which was most of its work at a
/// thousand runs a second. A cache belongs to exactly one connection: drop it
/// with the connection.
#[derive(Default)]
pub struct Prepared(std::collections::HashMap<&'static str, postgres::Statement>);

impl Prepared {
    /// `sql` (known as `key`) prepared on this connection, and the values.
    fn prepare<'p>(
        &mut self,
        client: &mut impl GenericClient,
        key: &'static str,
        sql: &str,
        params: &'p [(&'p (dyn ToSql + Sync), Type)],
    ) -> Result<(postgres::Statement, Vec<&'p (dyn ToSql + Sync)>), postgres::Error> {
        let statement = match self.0.get(key) {
            Some(statement) => statement.clone(),
            None => {
                let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
                let statement = client.prepare_typed(sql, &types)?;
                self.0.insert(key, statement.clone());
                statement
            }
        };
        Ok((statement, params.iter().map(|(v, _)| *v).collect()))
    }

    fn query(
        &mut self,
        client: &mut impl GenericClient,
        key: &'static str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        let (statement, values) = self.prepare(client, key, sql, params)?;
        client.query(&statement, &values)
    }

    fn query_one(
        &mut self,
        client: &mut impl GenericClient,
        key: &'static str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<postgres::Row, postgres::Error> {
        let (statement, values) = self.prepare(client, key, sql, params)?;
        client.query_one(&statement, &values)
    }
}

/// The channel runners LISTEN on; every change that may move a next run sends it.
pub const CHANNEL: &str = "manage_scheduled_jobs";

/// The advisory lock (one bigint key) that serialises migrations and sync.
pub const MIGRATION_LOCK: i64 = 0x6d61_6e61_6765_0001;

/// A job's row in `manage.jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub name: String,
    pub app: String,
    pub description: String,
    pub internal: bool,
    pub timeout_seconds: i32,
    pub builtin_times: Option<Vec<NaiveTime>>,
    pub builtin_interval_seconds: Option<i32>,
    pub definition: serde_json::Value,
    pub enabled: bool,
    pub notify_on_success: bool,
    pub override_times: Option<Vec<NaiveTime>>,
    pub override_interval_seconds: Option<i32>,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_state: Option<String>,
    pub last_skip: Option<DateTime<Utc>>,
    pub running_run: Option<i64>,
    pub run_requested: bool,
    pub removed: bool,
}

const JOB_COLUMNS: &str = "name, app, description, internal, timeout_seconds, builtin_times, \
     builtin_interval_seconds, definition, enabled, notify_on_success, override_times, \
     override_interval_seconds, next_run, last_run, last_state, last_skip, running_run, \
     run_requested, removed";

impl JobRow {
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Self::from_row_at(row, 0)
    }

    /// The job's columns starting at column `at` (JOB_COLUMNS order).
    fn from_row_at(row: &postgres::Row, at: usize) -> Result<Self, postgres::Error> {
        Ok(JobRow {
            name: row.try_get(at)?,
            app: row.try_get(at + 1)?,
            description: row.try_get(at + 2)?,
            internal: row.try_get(at + 3)?,
            timeout_seconds: row.try_get(at + 4)?,
            builtin_times: row.try_get(at + 5)?,
            builtin_interval_seconds: row.try_get(at + 6)?,
            definition: row.try_get(at + 7)?,
            enabled: row.try_get(at + 8)?,
            notify_on_success: row.try_get(at + 9)?,
            override_times: row.try_get(at + 10)?,
            override_interval_seconds: row.try_get(at + 11)?,
            next_run: row.try_get(at + 12)?,
            last_run: row.try_get(at + 13)?,
            last_state: row.try_get(at + 14)?,
            last_skip: row.try_get(at + 15)?,
            running_run: row.try_get(at + 16)?,
            run_requested: row.try_get(at + 17)?,
            removed: row.try_get(at + 18)?,
        })
    }

    pub fn builtin_schedule(&self) -> Option<Schedule> {
        to_schedule(self.builtin_times.as_ref(), self.builtin_interval_seconds)
    }

    pub fn override_schedule(&self) -> Option<Schedule> {
        to_schedule(self.override_times.as_ref(), self.override_interval_seconds)
    }

    /// The override when set, else the built-in schedule.
    pub fn effective_schedule(&self) -> Option<Schedule> {
        self.override_schedule().or_else(|| self.builtin_schedule())
    }

    /// When this job should run next, as of `now`: none when disabled, removed
    /// or manual-only. The one place configuration turns into a next run.
    pub fn compute_next_run(&self, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.next_run_from(self.last_run, self.last_skip, now, tz)
    }

    /// The next run once this job ran (or, with `skipped`, was skipped) and
    /// ended at `at`: at once when a run was requested meanwhile, else by its
    /// schedule counting from `at`. The runner's record and skip, and
    /// `release --pending reschedule` ("as if it had just run"), all use it.
    pub fn next_run_after(
        &self,
        at: DateTime<Utc>,
        skipped: bool,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        if !self.enabled || self.removed {
            return None;
        }
        if self.run_requested {
            return Some(at);
        }
        if skipped {
            self.next_run_from(self.last_run, Some(at), at, tz)
        } else {
            self.next_run_from(Some(at), None, at, tz)
        }
    }

    fn next_run_from(
        &self,
        last_run: Option<DateTime<Utc>>,
        last_skip: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        if !self.enabled || self.removed {
            return None;
        }
        let effective = self.effective_schedule()?;
        Some(schedule::next_run(&effective, last_run, last_skip, now, tz))
    }

    pub fn running(&self) -> bool {
        self.running_run.is_some()
    }
}

fn to_schedule(times: Option<&Vec<NaiveTime>>, interval: Option<i32>) -> Option<Schedule> {
    match (times, interval) {
        (Some(t), _) if !t.is_empty() => {
            Some(Schedule::Times(schedule::normalize_times(t.clone())))
        }
        (_, Some(i)) if i > 0 => Some(Schedule::Interval(i as u32)),
        _ => None,
    }
}

/// Split a schedule into the (times, interval seconds) column pair.
pub fn schedule_columns(s: Option<&Schedule>) -> (Option<Vec<NaiveTime>>, Option<i32>) {
    match s {
        None => (None, None),
        Some(Schedule::Times(t)) => (Some(t.clone()), None),
        Some(Schedule::Interval(i)) => (None, Some(*i as i32)),
    }
}

/// The database's clock: the one clock (SPEC §3).
pub fn db_now(client: &mut impl GenericClient) -> Result<DateTime<Utc>, postgres::Error> {
    client
        .query_typed_one("SELECT clock_timestamp()", &[])?
        .try_get(0)
}

/// Every job, removed ones included.
pub fn all_jobs(client: &mut impl GenericClient) -> Result<Vec<JobRow>, postgres::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM manage.jobs ORDER BY name");
    client
        .query_typed(&sql, &[])?
        .iter()
        .map(JobRow::from_row)
        .collect()
}

/// The jobs that are not removed, sorted as `jobs list` shows them: by next
/// run, unscheduled last, then by name.
pub fn listed_jobs(client: &mut impl GenericClient) -> Result<Vec<JobRow>, postgres::Error> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM manage.jobs WHERE NOT removed ORDER BY next_run ASC NULLS LAST, name"
    );
    client
        .query_typed(&sql, &[])?
        .iter()
        .map(JobRow::from_row)
        .collect()
}

pub fn job(client: &mut impl GenericClient, name: &str) -> Result<Option<JobRow>, postgres::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM manage.jobs WHERE name = $1");
    client
        .query_typed_opt(&sql, typed![&name])?
        .as_ref()
        .map(JobRow::from_row)
        .transpose()
}

/// Lock one job's row for a configuration change.
pub fn job_for_update(
    client: &mut impl GenericClient,
    name: &str,
) -> Result<Option<JobRow>, postgres::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM manage.jobs WHERE name = $1 FOR UPDATE");
    client
        .query_typed_opt(&sql, typed![&name])?
        .as_ref()
        .map(JobRow::from_row)
        .transpose()
}

/// What sync writes for a job the registry defines.
pub struct DefinedJob<'a> {
    pub name: &'a str,
    pub app: &'a str,
    pub description: &'a str,
    pub internal: bool,
    pub timeout_seconds: i32,
    pub builtin_times: Option<Vec<NaiveTime>>,
    pub builtin_interval_seconds: Option<i32>,
    pub definition: serde_json::Value,
}

pub fn insert_job(
    client: &mut impl GenericClient,
    job: &DefinedJob,
    notify_on_success: bool,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "INSERT INTO manage.jobs (name, app, description, internal, timeout_seconds, builtin_times, \
         builtin_interval_seconds, definition, notify_on_success) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        typed![&job.name,
            &job.app,
            &job.description,
            &job.internal,
            &job.timeout_seconds,
            &job.builtin_times,
            &job.builtin_interval_seconds,
            &job.definition,
            &notify_on_success,],
    )?;
    Ok(())
}

/// Write what the code or file defines; operator configuration is kept.
pub fn update_definition(
    client: &mut impl GenericClient,
    job: &DefinedJob,
    removed: bool,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET app = $2, description = $3, internal = $4, timeout_seconds = $5, \
         builtin_times = $6, builtin_interval_seconds = $7, definition = $8, removed = $9 \
         WHERE name = $1",
        typed![
            &job.name,
            &job.app,
            &job.description,
            &job.internal,
            &job.timeout_seconds,
            &job.builtin_times,
            &job.builtin_interval_seconds,
            &job.definition,
            &removed,
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
    let next = row.compute_next_run(now, tz);
    set_next_run(client, name, next)?;
    Ok(next)
}

/// Wake every runner: they re-read the schedule. Transactional like every NOTIFY.
pub fn notify_runners(client: &mut impl GenericClient) -> Result<(), postgres::Error> {
    client.execute_typed("SELECT pg_notify($1, '')", typed![&CHANNEL])?;
    Ok(())
}

// ---- runs ----

/// One run in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub job: String,
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub runtime_seconds: Option<f64>,
    /// The whole output, or only its first line in listings.
    pub output: String,
}

impl RunRow {
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(RunRow {
            id: row.try_get(0)?,
            job: row.try_get(1)?,
            state: row.try_get(2)?,
            started_at: row.try_get(3)?,
            finished_at: row.try_get(4)?,
            runtime_seconds: row.try_get(5)?,
            output: row.try_get(6)?,
        })
    }

    pub fn output_first_line(&self) -> &str {
        self.output.lines().next().unwrap_or("")
    }
}

/// Which runs a history page shows.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter<'a> {
    pub job: Option<&'a str>,
    /// Every finished state but `succeeded`.
    pub failed: bool,
}

/// One page of history, newest first. Only the first line of each output is
/// fetched: a page of 50 runs must not drag 50 MiB of output over the wire.
pub fn history_page(
    client: &mut impl GenericClient,
    filter: &HistoryFilter,
    page: u32,
    per_page: u32,
) -> Result<Vec<RunRow>, postgres::Error> {
    let offset = i64::from(page.saturating_sub(1)) * i64::from(per_page);
    let limit = i64::from(per_page);
    let rows = client.query_typed(
        "SELECT id, job, state, started_at, finished_at, runtime_seconds, \
                split_part(left(output, 4096), E'\\n', 1) \
         FROM manage.runs \
         WHERE ($1::text IS NULL OR job = $1) \
           AND (NOT $2 OR state NOT IN ('running', 'succeeded')) \
         ORDER BY started_at DESC, id DESC LIMIT $3 OFFSET $4",
        typed![&filter.job, &filter.failed, &limit, &offset],
    )?;
    rows.iter().map(RunRow::from_row).collect()
}

pub fn run(client: &mut impl GenericClient, id: i64) -> Result<Option<RunRow>, postgres::Error> {
    client
        .query_typed_opt(
            "SELECT id, job, state, started_at, finished_at, runtime_seconds, output \
             FROM manage.runs WHERE id = $1",
            typed![&id],
        )?
        .as_ref()
        .map(RunRow::from_row)
        .transpose()
}

/// A finished run, as a test or an importer records one.
pub struct NewRun<'a> {
    pub job: &'a str,
    pub state: &'a str,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub output: &'a str,
    pub host: Option<&'a str>,
}

pub fn insert_run(client: &mut impl GenericClient, run: &NewRun) -> Result<i64, postgres::Error> {
    let runtime = run
        .finished_at
        .map(|f| (f - run.started_at).num_milliseconds() as f64 / 1000.0);
    client
        .query_typed_one(
            "INSERT INTO manage.runs (job, state, started_at, finished_at, runtime_seconds, output, host) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            typed![&run.job,
                &run.state,
                &run.started_at,
                &run.finished_at,
                &runtime,
                &run.output,
                &run.host,],
        )?
        .try_get(0)
}

/// Whether any finished run is older than `days` days.
pub fn history_older_than_exists(
    client: &mut impl GenericClient,
    days: u32,
) -> anyhow::Result<bool> {
    let days = i32::try_from(days)?;
    Ok(client
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM manage.runs WHERE state <> 'running' \
             AND finished_at < now() - make_interval(days => $1))",
            typed![&days],
        )?
        .try_get(0)?)
}

/// Delete at most `batch` finished runs older than `days` days; how many went.
pub fn purge_history_batch(
    client: &mut impl GenericClient,
    days: u32,
    batch: i64,
) -> anyhow::Result<u64> {
    let days = i32::try_from(days)?;
    Ok(client.execute_typed(
        "DELETE FROM manage.runs WHERE id IN (\
             SELECT id FROM manage.runs WHERE state <> 'running' \
             AND finished_at < clock_timestamp() - make_interval(days => $1) \
             ORDER BY finished_at LIMIT $2)",
        typed![&days, &batch],
    )?)
}

// ---- hold, runners, mail ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub held: bool,
    pub since: Option<DateTime<Utc>>,
}

pub fn hold(client: &mut impl GenericClient) -> Result<Hold, postgres::Error> {
    let row = client.query_typed_one("SELECT held, held_since FROM manage.hold", &[])?;
    Ok(Hold {
        held: row.try_get(0)?,
        since: row.try_get(1)?,
    })
}

/// A runner whose session still holds its advisory lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRow {
    pub id: i64,
    pub host: String,
    pub pid: i32,
    pub started_at: DateTime<Utc>,
}

/// The advisory lock key of a runner (class 0x6d67 'mg', object = its id).
pub const RUNNER_LOCK_CLASS: i32 = 0x6d67;

/// SQL: the runner `alias` (a manage.runners row) holds its advisory lock.
/// pg_locks shows the advisory locks of every session; `$1` is
/// RUNNER_LOCK_CLASS, and the two-int lock form has objsubid 2.
fn runner_lock_held(alias: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
           AND l.classid = $1::int::oid AND l.objid = {alias}.id::int::oid AND l.objsubid = 2 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    )
}

/// Runners connected now: their session holds the runner lock (pg_locks shows
/// advisory locks of every session, so no heartbeat guesswork is needed here).
pub fn connected_runners(
    client: &mut impl GenericClient,
) -> Result<Vec<RunnerRow>, postgres::Error> {
    let sql = format!(
        "SELECT r.id, r.host, r.pid, r.started_at FROM manage.runners r \
         WHERE r.stopped_at IS NULL AND {} ORDER BY r.started_at, r.id",
        runner_lock_held("r")
    );
    let rows = client.query_typed(&sql, typed![&RUNNER_LOCK_CLASS])?;
    rows.iter()
        .map(|row| {
            Ok(RunnerRow {
                id: row.try_get(0)?,
                host: row.try_get(1)?,
                pid: row.try_get(2)?,
                started_at: row.try_get(3)?,
            })
        })
        .collect()
}

/// The facts above `jobs list` that one statement gives.
#[derive(Debug, Clone, Copy)]
pub struct Overview {
    /// The database's now.
    pub now: DateTime<Utc>,
    pub hold: Hold,
    /// When the last run finished, over all jobs.
    pub last_run: Option<DateTime<Utc>>,
}

pub fn overview(client: &mut impl GenericClient) -> Result<Overview, postgres::Error> {
    let row = client.query_typed_one(
        "SELECT clock_timestamp(), h.held, h.held_since, (SELECT max(last_run) FROM manage.jobs) \
         FROM manage.hold h",
        &[],
    )?;
    Ok(Overview {
        now: row.try_get(0)?,
        hold: Hold {
            held: row.try_get(1)?,
            since: row.try_get(2)?,
        },
        last_run: row.try_get(3)?,
    })
}

pub fn mail_queue_len(client: &mut impl GenericClient) -> anyhow::Result<i64> {
    Ok(client
        .query_typed_one("SELECT count(*) FROM manage.mail_queue", &[])?
        .try_get(0)?)
}

/// Set (or clear, with `None`) a job's override schedule.
pub fn set_override(
    client: &mut impl GenericClient,
    name: &str,
    schedule: Option<&Schedule>,
) -> Result<(), postgres::Error> {
    let (times, interval) = schedule_columns(schedule);
    client.execute_typed(
        "UPDATE manage.jobs SET override_times = $2, override_interval_seconds = $3 WHERE name = $1",
        typed![&name, &times, &interval],
    )?;
    Ok(())
}

// ---- operator controls ----

/// What `jobs configure` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigChange {
    pub enabled: Option<bool>,
    pub notify_on_success: Option<bool>,
    /// `Some(None)` clears the override.
    pub override_schedule: Option<Option<Schedule>>,
}

/// Apply a configuration change, reschedule, and wake the runners, in one
/// transaction. Returns the job as it is afterwards.
pub fn configure(
    client: &mut postgres::Client,
    name: &str,
    change: &ConfigChange,
    tz: Tz,
) -> anyhow::Result<JobRow> {
    let mut tx = client.transaction()?;
    let Some(mut row) = job_for_update(&mut tx, name)? else {
        anyhow::bail!("job {name} vanished");
    };
    if let Some(enabled) = change.enabled {
        row.enabled = enabled;
    }
    if let Some(notify) = change.notify_on_success {
        row.notify_on_success = notify;
    }
    if let Some(override_schedule) = &change.override_schedule {
        let kept = schedule::normalize_override(
            row.builtin_schedule().as_ref(),
            override_schedule.clone(),
        );
        let (times, interval) = schedule_columns(kept.as_ref());
        row.override_times = times;
        row.override_interval_seconds = interval;
    }
    let now = db_now(&mut tx)?;
    row.next_run = row.compute_next_run(now, tz);
    tx.execute_typed(
        "UPDATE manage.jobs SET enabled = $2, notify_on_success = $3, override_times = $4, \
         override_interval_seconds = $5, next_run = $6 WHERE name = $1",
        typed![
            &name,
            &row.enabled,
            &row.notify_on_success,
            &row.override_times,
            &row.override_interval_seconds,
            &row.next_run,
        ],
    )?;
    notify_runners(&mut tx)?;
    tx.commit()?;
    Ok(row)
}

/// Run-now: through the same SQL function applications call.
pub fn trigger_job(
    client: &mut impl GenericClient,
    name: &str,
    delay_secs: u32,
) -> Result<(), postgres::Error> {
    let delay = f64::from(delay_secs);
    client.execute_typed(
        "SELECT manage.trigger_job($1, make_interval(secs => $2))",
        typed![&name, &delay],
    )?;
    Ok(())
}

/// Forget the last run's failure: last run and last state become null.
pub fn reset_failure(client: &mut impl GenericClient, name: &str) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET last_run = NULL, last_state = NULL WHERE name = $1",
        typed![&name],
    )?;
    Ok(())
}

/// Hold every job; returns false when they already were held.
pub fn set_hold(client: &mut postgres::Client) -> Result<bool, postgres::Error> {
    let mut tx = client.transaction()?;
    let changed = tx.execute_typed(
        "UPDATE manage.hold SET held = true, held_since = clock_timestamp() WHERE NOT held",
        &[],
    )? > 0;
    notify_runners(&mut tx)?;
    tx.commit()?;
    Ok(changed)
}

/// The jobs that would run now if nothing held them, by name.
pub fn due_jobs(client: &mut impl GenericClient) -> Result<Vec<JobRow>, postgres::Error> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM manage.jobs WHERE enabled AND NOT removed AND running_run IS NULL \
         AND next_run <= clock_timestamp() ORDER BY name"
    );
    client
        .query_typed(&sql, &[])?
        .iter()
        .map(JobRow::from_row)
        .collect()
}

/// End the hold. With `reschedule`, every due job (run-now requests made
/// during the hold included) moves to its next slot as if it had just run.
/// Returns whether jobs were held, and the jobs rescheduled.
pub fn release_hold(
    client: &mut postgres::Client,
    reschedule: bool,
    tz: Tz,
) -> anyhow::Result<(bool, Vec<String>)> {
    let mut tx = client.transaction()?;
    let was_held: bool = tx
        .query_typed_one("SELECT held FROM manage.hold FOR UPDATE", &[])?
        .try_get(0)?;
    let mut moved = Vec::new();
    if reschedule {
        let now = db_now(&mut tx)?;
        for row in due_jobs(&mut tx)? {
            // "As if it had just run": the interval counts from now, times
            // take the next slot after now.
            let next = row.next_run_after(now, false, tz);
            set_next_run(&mut tx, &row.name, next)?;
            moved.push(row.name);
        }
    }
    if reschedule {
        // Run-now requests on jobs still running are pending too: dropped.
        tx.execute_typed(
            "UPDATE manage.jobs SET run_requested = false WHERE run_requested",
            &[],
        )?;
    }
    tx.execute_typed(
        "UPDATE manage.hold SET held = false, held_since = NULL",
        &[],
    )?;
    notify_runners(&mut tx)?;
    tx.commit()?;
    Ok((was_held, moved))
}

/// Whether a job with this name exists in the history (removed jobs included).
pub fn job_exists(client: &mut impl GenericClient, name: &str) -> Result<bool, postgres::Error> {
    client
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM manage.jobs WHERE name = $1)",
            typed![&name],
        )?
        .try_get(0)
}

/// The newest run id of a job (0 when it never ran).
pub fn newest_run_id(client: &mut impl GenericClient, job: &str) -> Result<i64, postgres::Error> {
    client
        .query_typed_one(
            "SELECT coalesce(max(id), 0) FROM manage.runs WHERE job = $1",
            typed![&job],
        )?
        .try_get(0)
}

/// The first run of a job with an id above `after_id`, output included.
pub fn first_run_after(
    client: &mut impl GenericClient,
    job: &str,
    after_id: i64,
) -> Result<Option<RunRow>, postgres::Error> {
    client
        .query_typed_opt(
            "SELECT id, job, state, started_at, finished_at, runtime_seconds, output \
             FROM manage.runs WHERE job = $1 AND id > $2 ORDER BY id LIMIT 1",
            typed![&job, &after_id],
        )?
        .as_ref()
        .map(RunRow::from_row)
        .transpose()
}

// ---- the runner ----

/// A run the runner has claimed: its `running` row exists and the job is
/// marked running, in one statement.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
    pub job: JobRow,
}

/// The CTEs that claim due jobs (`due`, `runs`, `claimed`): lock the due rows
/// (skipping rows another runner is claiming right now), insert their
/// `running` history rows and point the jobs at them. `claimed` returns the
/// job's columns, then the run's id and start. The `$` parameters are named
/// by the caller; `gate` is one more condition on claiming at all.
fn claim_ctes(limit: &str, runner_id: &str, host: &str, gate: &str) -> String {
    let columns: String = JOB_COLUMNS
        .split(", ")
        .map(|c| format!("j.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "due AS ( \
             SELECT name FROM manage.jobs \
             WHERE enabled AND NOT removed AND running_run IS NULL AND next_run <= clock_timestamp() \
               AND NOT (SELECT held FROM manage.hold) AND {gate} \
             ORDER BY next_run, name LIMIT {limit} FOR UPDATE SKIP LOCKED \
         ), runs AS ( \
             INSERT INTO manage.runs (job, state, started_at, runner_id, host) \
             SELECT name, 'running', clock_timestamp(), {runner_id}, {host} FROM due \
             RETURNING id, job, started_at \
         ), claimed AS ( \
             UPDATE manage.jobs j SET running_run = runs.id FROM runs WHERE j.name = runs.job \
             RETURNING {columns}, runs.id AS run_id, runs.started_at AS run_started_at \
         )"
    )
}

fn claimed_at(row: &postgres::Row, at: usize) -> Result<Claimed, postgres::Error> {
    Ok(Claimed {
        job: JobRow::from_row_at(row, at)?,
        run_id: row.try_get(at + 19)?,
        started_at: row.try_get(at + 20)?,
    })
}

/// Claim up to `limit` due jobs for this runner in ONE statement (see
/// `claim_ctes`). Once committed, the jobs are no longer due for anyone
/// (running_run is set), so each due run is taken by exactly one runner and a
/// job never overlaps itself.
pub fn claim_due(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    runner_id: i64,
    host: &str,
    limit: i64,
) -> Result<Vec<Claimed>, postgres::Error> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "WITH {} SELECT * FROM claimed",
            claim_ctes("$1", "$2", "$3", "true")
        )
    });
    let rows = prepared.query(client, "claim_due", sql, typed![&limit, &runner_id, &host])?;
    let mut claimed: Vec<Claimed> = rows
        .iter()
        .map(|row| claimed_at(row, 0))
        .collect::<Result<_, postgres::Error>>()?;
    claimed.sort_by_key(|c| c.run_id);
    Ok(claimed)
}

/// The common case of recording a run, in ONE statement and so without a
/// transaction of its own: the job is finished and rescheduled (to `next_run`,
/// or at once when a run was requested meanwhile), the history row ended, the
/// runners woken, and — with `claim` — the worker's next run claimed.
///
/// The next run was computed from the job as it was claimed, so the statement
/// only applies while that configuration still holds (and the run is still
/// this runner's): `Ok(None)` means nothing was written and the caller takes
/// the general path.
pub struct FastRecord<'a> {
    pub run_id: i64,
    pub state: &'a str,
    pub finished_at: DateTime<Utc>,
    pub runtime_seconds: f64,
    pub output: &'a str,
    pub next_run: Option<DateTime<Utc>>,
    /// The job as claimed: its configuration is the guard.
    pub job: &'a JobRow,
    /// (runner id, host) to claim the next run for.
    pub claim: Option<(i64, &'a str)>,
}

pub fn record_fast(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    r: &FastRecord,
) -> Result<Option<Option<Claimed>>, postgres::Error> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "WITH finished AS ( \
                 UPDATE manage.jobs SET running_run = NULL, run_requested = false, \
                     next_run = CASE WHEN run_requested THEN $3 ELSE $6 END, \
                     last_run = $3, last_state = $2, last_skip = NULL \
                 WHERE name = $7 AND running_run = $1 AND enabled AND NOT removed \
                   AND notify_on_success = $8 \
                   AND override_times IS NOT DISTINCT FROM $9 \
                   AND override_interval_seconds IS NOT DISTINCT FROM $10 \
                   AND builtin_times IS NOT DISTINCT FROM $11 \
                   AND builtin_interval_seconds IS NOT DISTINCT FROM $12 \
                 RETURNING name \
             ), recorded AS ( \
                 UPDATE manage.runs SET state = $2, finished_at = $3, runtime_seconds = $4, output = $5 \
                 WHERE id = $1 AND state = 'running' AND EXISTS (SELECT 1 FROM finished) \
                 RETURNING id \
             ), woken AS ( \
                 SELECT pg_notify('{CHANNEL}', '') FROM recorded \
             ), {} \
             SELECT (SELECT count(*) FROM recorded), (SELECT count(*) FROM woken), c.* \
             FROM (SELECT 1) one LEFT JOIN claimed c ON true",
            claim_ctes("1", "$14", "$15", "$13 AND EXISTS (SELECT 1 FROM recorded)")
        )
    });
    let (claim, runner_id, host) = match r.claim {
        Some((runner_id, host)) => (true, runner_id, host),
        None => (false, 0, ""),
    };
    let job = r.job;
    let row = prepared.query_one(
        client,
        "record_fast",
        sql,
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
            &host
        ],
    )?;
    let recorded: i64 = row.try_get(0)?;
    if recorded == 0 {
        return Ok(None);
    }
    let next_run_id: Option<i64> = row.try_get(2 + 19)?;
    Ok(Some(match next_run_id {
        Some(_) => Some(claimed_at(&row, 2)?),
        None => None,
    }))
}

/// What the runner's loop needs to decide how long to sleep.
#[derive(Debug, Clone, Copy)]
pub struct Agenda {
    pub held: bool,
    /// The earliest next run of a job that could run.
    pub next_due: Option<DateTime<Utc>>,
    pub db_now: DateTime<Utc>,
}

/// (held, earliest next run of a job that could run, the database's now).
const AGENDA_COLUMNS: &str = "(SELECT held FROM manage.hold), \
     (SELECT min(next_run) FROM manage.jobs WHERE enabled AND NOT removed AND running_run IS NULL), \
     clock_timestamp()";

impl Agenda {
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(Agenda {
            held: row.try_get(0)?,
            next_due: row.try_get(1)?,
            db_now: row.try_get(2)?,
        })
    }
}

pub fn agenda(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
) -> Result<Agenda, postgres::Error> {
    let sql = format!("SELECT {AGENDA_COLUMNS}");
    let row = prepared.query_one(client, "agenda", &sql, &[])?;
    Agenda::from_row(&row)
}

/// Register a runner and take its session advisory lock: while this session
/// lives, the runner counts as connected and its runs as owned.
pub fn register_runner(
    client: &mut postgres::Client,
    host: &str,
    pid: i32,
) -> Result<(i64, DateTime<Utc>), postgres::Error> {
    let row = client.query_typed_one(
        "INSERT INTO manage.runners (host, pid, backend_pid) VALUES ($1, $2, pg_backend_pid()) \
         RETURNING id, started_at",
        typed![&host, &pid],
    )?;
    let id: i64 = row.try_get(0)?;
    take_runner_lock(client, id)?;
    Ok((id, row.try_get(1)?))
}

/// (Re-)take the runner's lock, after a reconnection for instance.
pub fn take_runner_lock(
    client: &mut impl GenericClient,
    runner_id: i64,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "SELECT pg_advisory_lock($1, $2::int)",
        typed![&RUNNER_LOCK_CLASS, &(runner_id as i32)],
    )?;
    Ok(())
}

pub fn heartbeat(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    runner_id: i64,
) -> Result<(Agenda, bool), postgres::Error> {
    let sql = format!(
        "WITH beat AS ( \
             UPDATE manage.runners SET heartbeat = clock_timestamp(), backend_pid = pg_backend_pid() \
             WHERE id = $2 RETURNING id) \
         SELECT {AGENDA_COLUMNS}, \
                EXISTS (SELECT 1 FROM manage.runs r LEFT JOIN manage.runners w ON w.id = r.runner_id \
                        WHERE {ORPHANED}), \
                (SELECT count(*) FROM beat)",
        ORPHANED = orphaned("w")
    );
    let row = prepared.query_one(
        client,
        "heartbeat",
        &sql,
        typed![&RUNNER_LOCK_CLASS, &runner_id],
    )?;
    Ok((Agenda::from_row(&row)?, row.try_get(3)?))
}

/// After a reconnection: take the runner's lock again and make sure its row
/// exists — after a failover to a server that never saw it, it may not, and
/// every run it claims refers to it.
pub fn rejoin(
    client: &mut postgres::Client,
    runner_id: i64,
    host: &str,
    pid: i32,
) -> Result<(), postgres::Error> {
    take_runner_lock(client, runner_id)?;
    client.execute_typed(
        "INSERT INTO manage.runners (id, host, pid, backend_pid) VALUES ($1, $2, $3, pg_backend_pid()) \
         ON CONFLICT (id) DO UPDATE SET heartbeat = clock_timestamp(), backend_pid = pg_backend_pid()",
        typed![&runner_id, &host, &pid],
    )?;
    Ok(())
}

pub fn runner_stopped(
    client: &mut impl GenericClient,
    runner_id: i64,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.runners SET stopped_at = clock_timestamp() WHERE id = $1",
        typed![&runner_id],
    )?;
    Ok(())
}

/// Record the process group of a running child-process run.
pub fn set_run_pgid(
    client: &mut impl GenericClient,
    run_id: i64,
    pgid: i32,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.runs SET pgid = $2 WHERE id = $1",
        typed![&run_id, &pgid],
    )?;
    Ok(())
}

/// End a history row that is still `running`; false when someone else
/// (a runner recovering it as interrupted) recorded it first.
pub fn finish_run(
    client: &mut impl GenericClient,
    run_id: i64,
    state: &str,
    finished_at: DateTime<Utc>,
    runtime_seconds: f64,
    output: &str,
) -> Result<bool, postgres::Error> {
    Ok(client.execute_typed(
        "UPDATE manage.runs SET state = $2, finished_at = $3, runtime_seconds = $4, output = $5 \
         WHERE id = $1 AND state = 'running'",
        typed![&run_id, &state, &finished_at, &runtime_seconds, &output],
    )? > 0)
}

/// LISTEN on the runners' channel (a session setting, on this connection).
pub fn listen(client: &mut postgres::Client) -> Result<(), postgres::Error> {
    client.batch_execute(&format!("LISTEN {CHANNEL}"))
}

/// The server's version, for `manage check`.
pub fn server_version(client: &mut impl GenericClient) -> Result<String, postgres::Error> {
    client
        .query_typed_one("SHOW server_version", &[])?
        .try_get(0)
}

/// A skip is not a run: the claimed row goes again.
pub fn delete_run(client: &mut impl GenericClient, run_id: i64) -> Result<(), postgres::Error> {
    client.execute_typed(
        "DELETE FROM manage.runs WHERE id = $1 AND state = 'running'",
        typed![&run_id],
    )?;
    Ok(())
}

/// After a run: the job is no longer running; its last run/state and next run
/// are set. `skipped_at` instead records a skip (last run untouched).
pub fn finish_job(
    client: &mut impl GenericClient,
    name: &str,
    last: Option<(DateTime<Utc>, &str)>,
    skipped_at: Option<DateTime<Utc>>,
    next_run: Option<DateTime<Utc>>,
    disable: bool,
) -> Result<(), postgres::Error> {
    let (last_run, last_state) = match last {
        Some((at, state)) => (Some(at), Some(state)),
        None => (None, None),
    };
    client.execute_typed(
        "UPDATE manage.jobs SET running_run = NULL, run_requested = false, next_run = $2, \
             last_run = CASE WHEN $3::timestamptz IS NULL THEN last_run ELSE $3 END, \
             last_state = CASE WHEN $3::timestamptz IS NULL THEN last_state ELSE $4::text END, \
             last_skip = CASE WHEN $3::timestamptz IS NULL THEN $5::timestamptz ELSE NULL END, \
             enabled = enabled AND NOT $6 \
         WHERE name = $1",
        typed![
            &name,
            &next_run,
            &last_run,
            &last_state,
            &skipped_at,
            &disable,
        ],
    )?;
    Ok(())
}

/// Schedule a job to run now, after another completed (`trigger_next`) or to
/// send the mail just queued. A running job gets the run-requested marker; a
/// disabled or removed one is left alone. False when no such job exists.
pub fn schedule_now(client: &mut impl GenericClient, name: &str) -> Result<bool, postgres::Error> {
    let row = client.query_typed_opt(
        "UPDATE manage.jobs SET \
             next_run = CASE WHEN running_run IS NULL AND enabled AND NOT removed THEN clock_timestamp() ELSE next_run END, \
             run_requested = run_requested OR (running_run IS NOT NULL AND enabled AND NOT removed) \
         WHERE name = $1 RETURNING 1",
        typed![&name],
    )?;
    Ok(row.is_some())
}

/// Put a mail in the queue.
pub fn queue_mail(
    client: &mut impl GenericClient,
    recipient: &str,
    sender: &str,
    mail: &crate::mail::Mail,
    run_id: Option<i64>,
) -> Result<(), postgres::Error> {
    let headers: serde_json::Map<String, serde_json::Value> = mail
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
        .collect();
    let headers = serde_json::Value::Object(headers);
    client.execute_typed(
        "INSERT INTO manage.mail_queue (recipient, sender, subject, body, headers, run_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        typed![
            &recipient,
            &sender,
            &mail.subject,
            &mail.body,
            &headers,
            &run_id,
        ],
    )?;
    Ok(())
}

/// A `running` row whose runner is dead: its lock is free and its heartbeat
/// is over 30 s old (or it has no runner at all).
#[derive(Debug, Clone)]
pub struct OrphanRun {
    pub id: i64,
    pub job: String,
    pub started_at: DateTime<Utc>,
    pub output: String,
    pub host: Option<String>,
    pub pgid: Option<i32>,
}

const ORPHAN_COLUMNS: &str = "r.id, r.job, r.started_at, r.output, r.host, r.pgid";

impl OrphanRun {
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(OrphanRun {
            id: row.try_get(0)?,
            job: row.try_get(1)?,
            started_at: row.try_get(2)?,
            output: row.try_get(3)?,
            host: row.try_get(4)?,
            pgid: row.try_get(5)?,
        })
    }
}

/// SQL: run `r` is `running` but its runner (`alias`, LEFT JOINed) is gone or
/// dead: lock free and heartbeat over 30 s old. `$1` is RUNNER_LOCK_CLASS.
fn orphaned(alias: &str) -> String {
    format!(
        "r.state = 'running' AND ({alias}.id IS NULL OR ( \
             {alias}.heartbeat < clock_timestamp() - interval '30 seconds' AND NOT {}))",
        runner_lock_held(alias)
    )
}

pub fn orphan_runs(client: &mut impl GenericClient) -> Result<Vec<OrphanRun>, postgres::Error> {
    let sql = format!(
        "SELECT {ORPHAN_COLUMNS} FROM manage.runs r \
         LEFT JOIN manage.runners w ON w.id = r.runner_id \
         WHERE {} ORDER BY r.id",
        orphaned("w")
    );
    client
        .query_typed(&sql, typed![&RUNNER_LOCK_CLASS])?
        .iter()
        .map(OrphanRun::from_row)
        .collect()
}

/// A runner's own runs still open (at shutdown, after the grace).
pub fn own_running_runs(
    client: &mut impl GenericClient,
    runner_id: i64,
) -> Result<Vec<OrphanRun>, postgres::Error> {
    let sql = format!(
        "SELECT {ORPHAN_COLUMNS} FROM manage.runs r WHERE r.runner_id = $1 AND r.state = 'running' ORDER BY r.id"
    );
    client
        .query_typed(&sql, typed![&runner_id])?
        .iter()
        .map(OrphanRun::from_row)
        .collect()
}

/// Lock one running row for recovery; None when someone else got there first.
pub fn lock_running_run(
    client: &mut impl GenericClient,
    run_id: i64,
) -> Result<bool, postgres::Error> {
    Ok(client
        .query_typed_opt(
            "SELECT 1 FROM manage.runs WHERE id = $1 AND state = 'running' FOR UPDATE SKIP LOCKED",
            typed![&run_id],
        )?
        .is_some())
}

// ---- mail queue ----

/// The session advisory lock held by whoever is delivering the mail queue, so
/// that two senders never send one mail twice.
pub const MAIL_SENDER_LOCK: i64 = 0x6d61_6e61_6765_0002;

/// Take the mail sender lock, or learn that another sender holds it.
pub fn try_lock_mail_sender(client: &mut impl GenericClient) -> Result<bool, postgres::Error> {
    client
        .query_typed_one("SELECT pg_try_advisory_lock($1)", typed![&MAIL_SENDER_LOCK])?
        .try_get(0)
}

pub fn unlock_mail_sender(client: &mut impl GenericClient) -> Result<(), postgres::Error> {
    client.execute_typed("SELECT pg_advisory_unlock($1)", typed![&MAIL_SENDER_LOCK])?;
    Ok(())
}

/// A mail waiting in `manage.mail_queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMail {
    pub id: i64,
    pub recipient: String,
    pub sender: String,
    pub subject: String,
    pub body: String,
    /// Header name and value pairs.
    pub headers: Vec<(String, String)>,
    pub queued_at: DateTime<Utc>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// Every queued mail, oldest first.
pub fn queued_mails(client: &mut impl GenericClient) -> Result<Vec<QueuedMail>, postgres::Error> {
    let rows = client.query_typed(
        "SELECT id, recipient, sender, subject, body, headers, queued_at, attempts, \
                last_error, last_attempt_at \
         FROM manage.mail_queue ORDER BY queued_at, id",
        &[],
    )?;
    rows.iter()
        .map(|row| {
            let headers: serde_json::Value = row.try_get(5)?;
            let headers = match headers {
                serde_json::Value::Object(map) => map
                    .into_iter()
                    .map(|(name, value)| {
                        let value = match value {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (name, value)
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Ok(QueuedMail {
                id: row.try_get(0)?,
                recipient: row.try_get(1)?,
                sender: row.try_get(2)?,
                subject: row.try_get(3)?,
                body: row.try_get(4)?,
                headers,
                queued_at: row.try_get(6)?,
                attempts: row.try_get(7)?,
                last_error: row.try_get(8)?,
                last_attempt_at: row.try_get(9)?,
            })
        })
        .collect()
}

/// The server accepted the mail: forget it.
pub fn mail_sent(client: &mut impl GenericClient, id: i64) -> Result<(), postgres::Error> {
    client.execute_typed("DELETE FROM manage.mail_queue WHERE id = $1", typed![&id])?;
    Ok(())
}

/// An attempt to send these mails failed: count it and keep the error.
pub fn mail_failed(
    client: &mut impl GenericClient,
    ids: &[i64],
    error: &str,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.mail_queue SET attempts = attempts + 1, last_error = $2, \
             last_attempt_at = clock_timestamp() \
         WHERE id = ANY($1)",
        typed![&ids, &error],
    )?;
    Ok(())
}
