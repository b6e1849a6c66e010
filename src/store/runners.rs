//! `manage.runners`: one row per runner process, and the session advisory lock
//! that says it is alive.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::claim::Agenda;
use super::{seconds, Prepared};
use crate::job::RunState;

/// A runner whose session still holds its advisory lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRow {
    pub id: i64,
    pub host: String,
    pub pid: i32,
    pub started_at: DateTime<Utc>,
    /// Its tags (§19), and the version it registered with (None: a runner
    /// older than the column).
    pub tags: Vec<String>,
    pub version: Option<String>,
}

/// The advisory lock key of a runner (class 0x6d67 'mg', object = its id).
pub const RUNNER_LOCK_CLASS: i32 = 0x6d67;

/// Runners connected now: their session holds the runner lock (pg_locks shows
/// advisory locks of every session, so no heartbeat guesswork is needed here).
pub fn connected_runners(
    client: &mut impl GenericClient,
) -> Result<Vec<RunnerRow>, postgres::Error> {
    let sql = concat!(
        "SELECT w.id, w.host, w.pid, w.started_at, w.tags, w.version FROM manage.runners w \
         WHERE w.stopped_at IS NULL AND ",
        runner_lock_held!(),
        " ORDER BY w.started_at, w.id"
    );
    let rows = client.query_typed(sql, typed![&RUNNER_LOCK_CLASS])?;
    rows.iter()
        .map(|row| {
            Ok(RunnerRow {
                id: row.try_get("id")?,
                host: row.try_get("host")?,
                pid: row.try_get("pid")?,
                started_at: row.try_get("started_at")?,
                tags: row.try_get("tags")?,
                version: row.try_get("version")?,
            })
        })
        .collect()
}

/// The version a runner registers with (`manage --version`), shown by
/// `jobs status` (§19): runners of several versions may share a database.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Register a runner and take its session advisory lock: while this session
/// lives, the runner counts as connected and its runs as owned. `defined`
/// names the jobs its configuration defines, the only ones it claims.
pub fn register_runner(
    client: &mut postgres::Client,
    host: &str,
    pid: i32,
    tags: &[String],
    defined: &[String],
) -> Result<(i64, DateTime<Utc>), postgres::Error> {
    let row = client.query_typed_one(
        "INSERT INTO manage.runners (host, pid, backend_pid, tags, version) \
         VALUES ($1, $2, pg_backend_pid(), $3, $4) RETURNING id, started_at",
        typed![&host, &pid, &tags, &VERSION],
    )?;
    let id: i64 = row.try_get("id")?;
    take_runner_lock(client, id)?;
    define_jobs(client, id, defined)?;
    Ok((id, row.try_get("started_at")?))
}

/// Write the jobs runner `runner_id` defines into `manage.runner_jobs`, which
/// its claims and agendas look up (`defined_by_runner!`); and delete the
/// lists of the runners no longer connected (their lock is free). A runner
/// that comes back writes its list again (`rejoin`).
fn define_jobs(
    client: &mut impl GenericClient,
    runner_id: i64,
    defined: &[String],
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "INSERT INTO manage.runner_jobs (runner_id, job) SELECT $1, unnest($2::text[]) \
         ON CONFLICT DO NOTHING",
        typed![&runner_id, &defined],
    )?;
    // The held runner locks are read once, not per row as the correlated
    // `runner_lock_held!` would: pg_locks builds the whole lock table on
    // every call, and a fleet's lists are tens of thousands of rows.
    client.execute_typed(
        "DELETE FROM manage.runner_jobs WHERE runner_id <> $2 AND runner_id::int::oid NOT IN ( \
             SELECT l.objid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
               AND l.classid = $1::int::oid AND l.objsubid = 2 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        typed![&RUNNER_LOCK_CLASS, &runner_id],
    )?;
    Ok(())
}

/// Take the runner's lock (it registers; it rejoins after a reconnection).
fn take_runner_lock(
    client: &mut impl GenericClient,
    runner_id: i64,
) -> Result<(), postgres::Error> {
    let object = runner_id as i32;
    client.execute_typed(
        "SELECT pg_advisory_lock($1, $2)",
        typed![&RUNNER_LOCK_CLASS, &object],
    )?;
    Ok(())
}

/// The heartbeat, in one statement with what the loop needs next: the agenda
/// (of the jobs the runner registered as defined), and whether any dead runner
/// (heartbeat older than `dead_after`, lock free) left a run behind. (A
/// data-modifying CTE runs whether or not it is read.)
pub fn heartbeat(
    client: &mut impl GenericClient,
    prepared: &mut Prepared,
    runner_id: i64,
    dead_after: std::time::Duration,
    tags: &[String],
) -> Result<Heartbeat, postgres::Error> {
    let sql = concat!(
        "WITH beat AS ( \
             UPDATE manage.runners SET heartbeat = clock_timestamp(), backend_pid = pg_backend_pid() \
             WHERE id = $4 RETURNING id) \
         SELECT ",
        agenda_columns!("$4", "$5"),
        ", EXISTS (SELECT 1 FROM manage.runs r LEFT JOIN manage.runners w ON w.id = r.runner_id \
                   WHERE ",
        orphaned!(),
        ") AS orphans, EXISTS (SELECT 1 FROM manage.jobs WHERE ",
        silent_too_long!(),
        " AND NOT ",
        dead_man_alerted!(),
        ") AS dead_man_due"
    );
    let row = prepared.query_one(
        client,
        "heartbeat",
        sql,
        typed![
            &RUNNER_LOCK_CLASS,
            &seconds(dead_after),
            &RunState::Running,
            &runner_id,
            &tags
        ],
    )?;
    Ok(Heartbeat {
        agenda: Agenda::from_row(&row)?,
        orphans: row.try_get("orphans")?,
        dead_man_due: row.try_get("dead_man_due")?,
    })
}

/// What a heartbeat learns besides the agenda: whether a dead runner left
/// a run behind, and whether a job's dead-man alert (§20) is due — so that
/// an idle runner does either only when there is something to do.
pub struct Heartbeat {
    pub agenda: Agenda,
    pub orphans: bool,
    pub dead_man_due: bool,
}

/// After a reconnection: take the runner's lock again and make sure its row
/// and its list of defined jobs exist — after a failover to a server that
/// never saw them they may not, and every run it claims refers to the row;
/// while it was away, a runner that registered may have deleted the list.
pub fn rejoin(
    client: &mut postgres::Client,
    runner_id: i64,
    host: &str,
    pid: i32,
    tags: &[String],
    defined: &[String],
) -> Result<(), postgres::Error> {
    // The lock may still be held by this runner's own previous session: a
    // connection closed on our side because the database fell silent (§18)
    // lives on in the server until it notices, which can take hours behind
    // a proxy. Whoever holds this runner's lock is that session (the id is
    // this runner's alone), so it goes, and what it had open rolls back.
    let object = runner_id as i32;
    client.execute_typed(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l          WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()            AND l.classid = $1::int::oid AND l.objid = $2::int::oid AND l.objsubid = 2            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        typed![&RUNNER_LOCK_CLASS, &object],
    )?;
    take_runner_lock(client, runner_id)?;
    client.execute_typed(
        "INSERT INTO manage.runners (id, host, pid, backend_pid, tags, version) \
         VALUES ($1, $2, $3, pg_backend_pid(), $4, $5) \
         ON CONFLICT (id) DO UPDATE SET heartbeat = clock_timestamp(), backend_pid = pg_backend_pid()",
        typed![&runner_id, &host, &pid, &tags, &VERSION],
    )?;
    define_jobs(client, runner_id, defined)
}

/// A runner that stops: its row says when, and its list of defined jobs goes.
pub fn runner_stopped(
    client: &mut impl GenericClient,
    runner_id: i64,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "WITH list AS (DELETE FROM manage.runner_jobs WHERE runner_id = $1) \
         UPDATE manage.runners SET stopped_at = clock_timestamp() WHERE id = $1",
        typed![&runner_id],
    )?;
    Ok(())
}
