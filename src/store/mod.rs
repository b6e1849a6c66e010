//! All SQL, one file per table: [`jobs`], [`runs`], [`runners`], `hold`, [`extra_runs`],
//! [`mail_queue`], [`audit`], and [`claim`] for the runner's multi-table hot path (claim
//! due jobs, record a run and claim the next, the agenda). Nothing else in
//! `manage` writes SQL (the migrations aside), so "which SQL touches the jobs
//! table?" is answered by `jobs.rs` and `claim.rs`.
//!
//! The files hold statements only: the rules (what is due, what the next run
//! is, what a failure is) are in `crate::job`. Rows are decoded by column
//! name. SQL is written out whole, or assembled at compile time from fixed
//! fragments (`concat!`), never from values; every value is a parameter —
//! run states and liveness timings included.

// The macros come first: the table modules below see them by textual scope.

/// Parameters with their types, for the `*_typed` calls.
macro_rules! typed {
    ($($param:expr),* $(,)?) => {
        &[$(($param as &(dyn postgres::types::ToSql + Sync), $crate::store::pg_type_of($param))),*]
    };
}

/// SQL: the runner `w` (a `manage.runners` row) holds its advisory lock.
/// pg_locks shows the advisory locks of every session; `$1` is
/// RUNNER_LOCK_CLASS, and the two-int lock form has objsubid 2.
macro_rules! runner_lock_held {
    () => {
        "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
           AND l.classid = $1::int::oid AND l.objid = w.id::int::oid AND l.objsubid = 2 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))"
    };
}

/// SQL: run `r` is running (`$3`) but its runner `w` (LEFT JOINed) is gone or
/// dead: its lock is free and its heartbeat older than `$2` seconds (the
/// runner's `Timings::dead_after`).
macro_rules! orphaned {
    () => {
        concat!(
            "r.state = $3 AND (w.id IS NULL OR (w.heartbeat < clock_timestamp() - make_interval(secs => $2) AND NOT ",
            runner_lock_held!(),
            "))"
        )
    };
}

/// SQL: the `manage.jobs` row in scope has not succeeded within its
/// `expect_success_within` (§20), counted from its last success or from
/// when the setting took effect, whichever is later — what
/// `Job::overdue_since_success` says, on the database's clock. NULL (not
/// true) for a job that never had either instant; its second clause is the
/// predicate of the partial index `jobs_expecting_success`.
macro_rules! silent_too_long {
    () => {
        "(NOT removed \
           AND coalesce(override_expect_success_within_seconds, builtin_expect_success_within_seconds) IS NOT NULL \
           AND clock_timestamp() - greatest(last_success, expect_success_since) > make_interval(secs => \
               coalesce(override_expect_success_within_seconds, builtin_expect_success_within_seconds)))"
    };
}

/// SQL: the dead-man alert of the `manage.jobs` row in scope went out for
/// its current silence (`Job::dead_man_alerted`).
macro_rules! dead_man_alerted {
    () => {
        "(overdue_alerted_at IS NOT NULL AND overdue_alerted_at >= \
           coalesce(greatest(last_success, expect_success_since), '-infinity'))"
    };
}

/// SQL: the `manage.jobs` row in scope is one the runner defines; `$runner`
/// names the `bigint` parameter holding the runner's id, whose jobs
/// `manage.runner_jobs` lists (§17: a runner never claims a job it does not
/// define). The list used to be a `text[]` parameter of every statement:
/// with 10,000 jobs, 1.4 ms a statement to parse it and a linear
/// `array_position` per row (issue 28). Now one primary-key probe per row
/// the scan reaches. The `OFFSET 0` keeps the probe a correlated subplan:
/// without it the planner turns the `EXISTS` into a hashed subplan or a hash
/// join that reads all the runner's rows first (3 ms with 10,000 jobs,
/// against 0.1 ms), and the claim then no longer walks `jobs_due` and stops
/// at the first rows. The tags' `<@` sits in a CASE for the planner's sake
/// alone: on a parameter it guesses that 0.5 % of the jobs pass, so with
/// `manage.jobs` analysed while 1,000 jobs were due it expected 2 rows,
/// chose a sequential scan and a sort: 22 ms a claim (`EXPLAIN ANALYZE`,
/// generic and custom plans) instead of 0.1–0.3 ms along `jobs_due`. A CASE
/// is estimated at one half, and filters the same rows (NULL is false either
/// way).
macro_rules! defined_by_runner {
    ($runner:literal, $tags:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM manage.runner_jobs d WHERE d.runner_id = ",
            $runner,
            "::int8 AND d.job = jobs.name OFFSET 0) \
             AND CASE WHEN coalesce(override_runs_on, builtin_runs_on) <@ ",
            $tags,
            "::text[] THEN true ELSE false END"
        )
    };
}

/// SQL: what the runner's loop needs to decide how long to sleep — whether
/// jobs are held and until when, the earliest next run of a job it could run, and the
/// database's now. `$runner` is as in `defined_by_runner!`: a due job the
/// runner cannot claim must not wake it, or it would spin. `$unclaimed`, a
/// condition on the job, leaves out the jobs that the same statement claims
/// (its snapshot still sees them due).
macro_rules! agenda_columns {
    ($runner:literal, $tags:literal) => {
        agenda_columns!($runner, $tags, "true")
    };
    ($runner:literal, $tags:literal, $unclaimed:literal) => {
        concat!(
            "(SELECT held FROM manage.hold) AS held, \
             (SELECT held_until FROM manage.hold) AS held_until, \
             (SELECT min(next_run) FROM manage.jobs WHERE enabled AND NOT removed AND running_run IS NULL \
                AND ",
            defined_by_runner!($runner, $tags),
            " AND ",
            $unclaimed,
            ") AS next_due, \
             (SELECT min(overlap_slot) FROM manage.jobs WHERE overlap_slot IS NOT NULL \
                AND running_run IS NOT NULL AND replace_run IS DISTINCT FROM running_run \
                AND enabled AND NOT removed AND ",
            defined_by_runner!($runner, $tags),
            ") AS next_overlap, \
             clock_timestamp() AS db_now"
        )
    };
}

pub mod audit;
pub mod claim;
pub mod extra_runs;
pub mod hold;
pub mod jobs;
pub mod mail_queue;
pub mod metrics;
pub mod runners;
pub mod runs;
pub mod sql_job;

pub use audit::*;
pub use claim::*;
pub use extra_runs::*;
pub use hold::*;
pub use jobs::*;
pub use mail_queue::*;
pub use metrics::*;
pub use runners::*;
pub use runs::*;
pub use sql_job::*;

use chrono::{DateTime, NaiveTime, Utc};
use postgres::types::{ToSql, Type};
use postgres::GenericClient;

use crate::job::RunState;

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
    RunState => Type::TEXT,
    crate::job::Overlap => Type::TEXT,
    DateTime<Utc> => Type::TIMESTAMPTZ,
    serde_json::Value => Type::JSONB,
    Vec<NaiveTime> => Type::TIME_ARRAY,
    [i64] => Type::INT8_ARRAY,
    [String] => Type::TEXT_ARRAY,
    Vec<String> => Type::TEXT_ARRAY,
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

/// The database's clock: the one clock (SPEC §3).
pub fn db_now(client: &mut impl GenericClient) -> Result<DateTime<Utc>, postgres::Error> {
    client
        .query_typed_one("SELECT clock_timestamp() AS now", &[])?
        .try_get("now")
}

/// Wake every runner: they re-read the schedule. Transactional like every NOTIFY.
pub fn notify_runners(client: &mut impl GenericClient) -> Result<(), postgres::Error> {
    client.execute_typed("SELECT pg_notify($1, '')", typed![&CHANNEL])?;
    Ok(())
}

/// LISTEN on the runners' channel (a session setting, on this connection).
/// LISTEN takes no parameter; the channel is a fixed identifier.
pub fn listen(client: &mut postgres::Client) -> Result<(), postgres::Error> {
    client.batch_execute("LISTEN manage_scheduled_jobs")
}

/// The server's version, for `manage check`.
pub fn server_version(client: &mut impl GenericClient) -> Result<String, postgres::Error> {
    client
        .query_typed_one("SHOW server_version", &[])?
        .try_get("server_version")
}

/// Seconds of a duration, as the `float8` SQL interval arithmetic takes.
fn seconds(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}
