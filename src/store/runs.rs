//! `manage.runs`: the history. The claim writes a `running` row and the
//! one-statement record ends it (`claim.rs`); everything else about runs is here.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::{seconds, RUNNER_LOCK_CLASS};
use crate::job::RunState;
use crate::process::GroupIdentity;

/// One run in the history.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub job: String,
    pub state: RunState,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub runtime_seconds: Option<f64>,
    /// Its place in a series of retries (§13): 1, 2, …
    pub attempt: i32,
    /// The arguments given to this one run (§21); empty for most.
    pub args: Vec<String>,
    /// The whole output, or only its first line in listings.
    pub output: String,
}

impl RunRow {
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(RunRow {
            id: row.try_get("id")?,
            job: row.try_get("job")?,
            state: row.try_get("state")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            runtime_seconds: row.try_get("runtime_seconds")?,
            attempt: row.try_get("attempt")?,
            args: row.try_get("args")?,
            output: row.try_get("output")?,
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
    /// Only failures (`RunState::is_failure`).
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
    runs_page(client, filter, None, page, per_page)
}

/// [`history_page`], and with `state` only the runs in that state (the web
/// page's `/runs?state=STATE`, §23).
pub fn runs_page(
    client: &mut impl GenericClient,
    filter: &HistoryFilter,
    state: Option<RunState>,
    page: u32,
    per_page: u32,
) -> Result<Vec<RunRow>, postgres::Error> {
    let offset = i64::from(page.saturating_sub(1)) * i64::from(per_page);
    let limit = i64::from(per_page);
    let failures: Vec<String> = crate::job::RunState::ALL
        .into_iter()
        .filter(|s| s.is_failure())
        .map(|s| s.as_str().to_string())
        .collect();
    let state = state.map(RunState::as_str);
    // An unnamed statement is planned with its values, so the NULL tests
    // fold away and each filter uses its index (migrations 0001, 0020).
    let rows = client.query_typed(
        "SELECT id, job, state, started_at, finished_at, runtime_seconds, attempt, args, \
                split_part(left(output, 4096), E'\\n', 1) AS output \
         FROM manage.runs \
         WHERE ($1::text IS NULL OR job = $1) AND (NOT $2 OR state = ANY($3)) \
           AND ($6::text IS NULL OR state = $6) \
         ORDER BY started_at DESC, id DESC LIMIT $4 OFFSET $5",
        &[
            (&filter.job, postgres::types::Type::TEXT),
            (&filter.failed, postgres::types::Type::BOOL),
            (&failures, postgres::types::Type::TEXT_ARRAY),
            (&limit, postgres::types::Type::INT8),
            (&offset, postgres::types::Type::INT8),
            (&state, postgres::types::Type::TEXT),
        ],
    )?;
    rows.iter().map(RunRow::from_row).collect()
}

/// One mark of a job's run strip (§23).
#[derive(Debug, Clone, PartialEq)]
pub struct StripRun {
    pub id: i64,
    pub state: RunState,
    pub started_at: DateTime<Utc>,
    pub runtime_seconds: Option<f64>,
}

/// The newest `per_job` runs of each of `jobs`, newest first, by job: one
/// statement, each job's runs read off the index `runs_job_strip` (0020)
/// alone.
pub fn recent_runs(
    client: &mut impl GenericClient,
    jobs: &[String],
    per_job: u32,
) -> Result<std::collections::HashMap<String, Vec<StripRun>>, postgres::Error> {
    let per_job = i64::from(per_job);
    let rows = client.query_typed(
        "SELECT j.name AS job, r.id, r.state, r.started_at, r.runtime_seconds \
         FROM unnest($1::text[]) AS j(name) \
         CROSS JOIN LATERAL (SELECT id, state, started_at, runtime_seconds \
                             FROM manage.runs WHERE job = j.name \
                             ORDER BY started_at DESC, id DESC LIMIT $2) r",
        &[
            (&jobs, postgres::types::Type::TEXT_ARRAY),
            (&per_job, postgres::types::Type::INT8),
        ],
    )?;
    let mut strips: std::collections::HashMap<String, Vec<StripRun>> =
        std::collections::HashMap::new();
    for row in &rows {
        strips
            .entry(row.try_get("job")?)
            .or_default()
            .push(StripRun {
                id: row.try_get("id")?,
                state: row.try_get("state")?,
                started_at: row.try_get("started_at")?,
                runtime_seconds: row.try_get("runtime_seconds")?,
            });
    }
    Ok(strips)
}

pub fn run(client: &mut impl GenericClient, id: i64) -> Result<Option<RunRow>, postgres::Error> {
    client
        .query_typed_opt(
            "SELECT id, job, state, started_at, finished_at, runtime_seconds, attempt, args, output \
             FROM manage.runs WHERE id = $1",
            typed![&id],
        )?
        .as_ref()
        .map(RunRow::from_row)
        .transpose()
}

/// The id of a job's newest claim: its newest run, or a later claim that was
/// skipped (0 when it was never claimed). Every claim after this has a
/// greater id.
pub fn newest_claim_id(client: &mut impl GenericClient, job: &str) -> Result<i64, postgres::Error> {
    client
        .query_typed_one(
            "SELECT greatest((SELECT max(id) FROM manage.runs WHERE job = $1), \
                             (SELECT last_skip_run FROM manage.jobs WHERE name = $1), 0) AS id",
            typed![&job],
        )?
        .try_get("id")
}

/// The first run of a job with an id above `after_id`, output included.
pub fn first_run_after(
    client: &mut impl GenericClient,
    job: &str,
    after_id: i64,
) -> Result<Option<RunRow>, postgres::Error> {
    client
        .query_typed_opt(
            "SELECT id, job, state, started_at, finished_at, runtime_seconds, attempt, args, output \
             FROM manage.runs WHERE job = $1 AND id > $2 ORDER BY id LIMIT 1",
            typed![&job, &after_id],
        )?
        .as_ref()
        .map(RunRow::from_row)
        .transpose()
}

/// Whether any finished run is older than `days` days.
pub fn history_older_than_exists(
    client: &mut impl GenericClient,
    days: u32,
) -> anyhow::Result<bool> {
    let days = i32::try_from(days)?;
    Ok(client
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM manage.runs WHERE state <> $2 \
             AND finished_at < now() - make_interval(days => $1)) AS found",
            typed![&days, &RunState::Running],
        )?
        .try_get("found")?)
}

/// Delete at most `batch` finished runs older than `days` days; how many went.
pub fn purge_history_batch(
    client: &mut impl GenericClient,
    days: u32,
    batch: i64,
) -> anyhow::Result<u64> {
    let days = i32::try_from(days)?;
    // The runs deleted are added to `purged_runs` by the same statement: what
    // the history held before it was purged. manage_job_runs_total (§15)
    // reads `run_counts`, which deleting never lowers (migration 0021).
    let row = client.query_typed_one(
        "WITH gone AS ( \
             DELETE FROM manage.runs WHERE id IN (\
                 SELECT id FROM manage.runs WHERE state <> $3 \
                 AND finished_at < clock_timestamp() - make_interval(days => $1) \
                 ORDER BY finished_at LIMIT $2) \
             RETURNING job, state \
         ), counted AS ( \
             INSERT INTO manage.purged_runs AS p (job, state, runs) \
             SELECT job, state, count(*) FROM gone GROUP BY job, state \
             ON CONFLICT (job, state) DO UPDATE SET runs = p.runs + EXCLUDED.runs \
         ) \
         SELECT count(*) AS deleted FROM gone",
        typed![&days, &batch, &RunState::Running],
    )?;
    let deleted: i64 = row.try_get("deleted")?;
    Ok(u64::try_from(deleted)?)
}

/// Record the process group of a running child-process run, with what will
/// prove it is the run's group later (`GroupIdentity`).
///
/// One round trip, committed without waiting for the WAL flush
/// (`synchronous_commit = off` for this transaction only): the worker waits
/// on this write before it reaps the child, and a flush per run was a third
/// of a short run's latency. What that risks is narrow: the write is lost
/// only if the server crashes within its WAL writer's delay (a few hundred
/// ms) *and* the runner dies before it records the run — a live runner
/// records the run, and the group with it no longer matters.
pub fn set_run_group(
    client: &mut postgres::Client,
    run_id: i64,
    group: &GroupIdentity,
) -> Result<(), postgres::Error> {
    // Ticks since boot fit an i64 for some three billion years at 100 Hz;
    // were one not to, NULL proves nothing and the group is left alone.
    let leader_start = group
        .leader_start
        .and_then(|t| i64::try_from(t).ok())
        .map_or_else(|| "NULL".to_string(), |t| t.to_string());
    // The simple protocol takes no parameters: the two identities are hex
    // digits and dashes (anything else is stored as unknown, which proves
    // nothing), the numbers are numbers.
    let id = |value: &Option<String>| match value {
        Some(v) if !v.is_empty() && v.chars().all(|c| c.is_ascii_hexdigit() || c == '-') => {
            format!("'{v}'")
        }
        _ => "NULL".to_string(),
    };
    let written = client.batch_execute(&format!(
        "BEGIN; SET LOCAL synchronous_commit = off; \
         UPDATE manage.runs SET pgid = {}, machine_id = {}, boot_id = {}, leader_start = {leader_start} \
         WHERE id = {run_id}; COMMIT",
        group.pgid,
        id(&group.machine_id),
        id(&group.boot_id),
    ));
    if written.is_err() && !client.is_closed() {
        // An error inside the explicit transaction leaves it open and
        // aborted: end it, so that the record on this connection goes through.
        let _ = client.batch_execute("ROLLBACK");
    }
    written
}

/// End a history row that is still running, giving its attempt number
/// (§13); None when someone else (a runner recovering it as interrupted)
/// recorded it first.
pub fn finish_run(
    client: &mut impl GenericClient,
    run_id: i64,
    state: RunState,
    finished_at: DateTime<Utc>,
    runtime_seconds: f64,
    output: &str,
) -> Result<Option<i32>, postgres::Error> {
    client
        .query_typed_opt(
        "UPDATE manage.runs SET state = $2, finished_at = $3, runtime_seconds = $4, output = $5 \
         WHERE id = $1 AND state = $6 RETURNING attempt",
        typed![
            &run_id,
            &state,
            &finished_at,
            &runtime_seconds,
            &output,
            &RunState::Running
        ],
        )?
        .map(|row| row.try_get("attempt"))
        .transpose()
}

/// A skip is not a run: the claimed row goes again.
pub fn delete_run(client: &mut impl GenericClient, run_id: i64) -> Result<(), postgres::Error> {
    client.execute_typed(
        "DELETE FROM manage.runs WHERE id = $1 AND state = $2",
        typed![&run_id, &RunState::Running],
    )?;
    Ok(())
}

/// A running row whose runner is gone: dead, or this one shutting down.
#[derive(Debug, Clone)]
pub struct OrphanRun {
    pub id: i64,
    pub job: String,
    pub started_at: DateTime<Utc>,
    pub output: String,
    /// The child's process group, when the run had one.
    pub group: Option<GroupIdentity>,
    /// The mark its processes carry (§18), when the run has one.
    pub token: Option<String>,
}

impl OrphanRun {
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        let pgid: Option<i32> = row.try_get("pgid")?;
        let group = match pgid {
            None => None,
            Some(pgid) => Some(GroupIdentity {
                pgid,
                machine_id: row.try_get("machine_id")?,
                boot_id: row.try_get("boot_id")?,
                leader_start: row
                    .try_get::<_, Option<i64>>("leader_start")?
                    .and_then(|t| u64::try_from(t).ok()),
            }),
        };
        Ok(OrphanRun {
            id: row.try_get("id")?,
            job: row.try_get("job")?,
            started_at: row.try_get("started_at")?,
            output: row.try_get("output")?,
            group,
            token: row.try_get("token")?,
        })
    }
}

/// The running rows of dead runners: a runner is dead when its lock is free
/// and its heartbeat is older than `dead_after` (or it has no row at all).
pub fn orphan_runs(
    client: &mut impl GenericClient,
    dead_after: std::time::Duration,
) -> Result<Vec<OrphanRun>, postgres::Error> {
    let sql = concat!(
        "SELECT r.id, r.job, r.started_at, r.output, r.pgid, r.machine_id, r.boot_id, \
                r.leader_start, r.token FROM manage.runs r \
         LEFT JOIN manage.runners w ON w.id = r.runner_id WHERE ",
        orphaned!(),
        " ORDER BY r.id"
    );
    client
        .query_typed(
            sql,
            typed![&RUNNER_LOCK_CLASS, &seconds(dead_after), &RunState::Running],
        )?
        .iter()
        .map(OrphanRun::from_row)
        .collect()
}

/// A runner's own runs still open (at shutdown, after the grace).
pub fn own_running_runs(
    client: &mut impl GenericClient,
    runner_id: i64,
) -> Result<Vec<OrphanRun>, postgres::Error> {
    client
        .query_typed(
            "SELECT id, job, started_at, output, pgid, machine_id, boot_id, leader_start, token \
             FROM manage.runs \
             WHERE runner_id = $1 AND state = $2 ORDER BY id",
            typed![&runner_id, &RunState::Running],
        )?
        .iter()
        .map(OrphanRun::from_row)
        .collect()
}

/// Lock one running row for recovery; false when someone else got there first.
pub fn lock_running_run(
    client: &mut impl GenericClient,
    run_id: i64,
) -> Result<bool, postgres::Error> {
    Ok(client
        .query_typed_opt(
            "SELECT 1 FROM manage.runs WHERE id = $1 AND state = $2 FOR UPDATE SKIP LOCKED",
            typed![&run_id, &RunState::Running],
        )?
        .is_some())
}

/// Mark run `run_id`'s slow-run warning (§20) sent; false when it was
/// already, or the run is no longer running (then nothing is sent).
pub fn mark_slow_warned(
    client: &mut impl GenericClient,
    run_id: i64,
) -> Result<bool, postgres::Error> {
    Ok(client
        .query_typed_opt(
            "UPDATE manage.runs SET slow_warned = true \
             WHERE id = $1 AND state = $2 AND NOT slow_warned RETURNING id",
            typed![&run_id, &RunState::Running],
        )?
        .is_some())
}
