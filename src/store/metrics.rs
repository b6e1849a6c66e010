//! What `manage metrics` (and the web page's `/metrics`) reports (§15), in
//! two statements whatever the number of jobs: one row per job, one row of
//! everything else.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use postgres::GenericClient;

use super::RUNNER_LOCK_CLASS;

/// One job's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFigures {
    pub name: String,
    pub enabled: bool,
    pub running: bool,
    pub next_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_runtime_seconds: Option<f64>,
    pub consecutive_failures: i32,
    /// It has not succeeded within its `expect_success_within` (§20).
    pub overdue: bool,
    /// Every recorded run since the job was created, by state: those in the
    /// history and those purged from it.
    pub runs: BTreeMap<String, i64>,
}

/// A live runner's heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerFigures {
    pub host: String,
    pub pid: i32,
    pub heartbeat_age_seconds: f64,
}

/// The figures that are not per job.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalFigures {
    pub held: bool,
    pub runners: Vec<RunnerFigures>,
    pub mail_queue_length: i64,
    pub mail_queue_oldest_age_seconds: f64,
}

/// The jobs `jobs list` shows (removed ones are not), by name.
pub fn job_figures(client: &mut impl GenericClient) -> anyhow::Result<Vec<JobFigures>> {
    let sql = concat!(
        "SELECT j.name, j.enabled, j.running_run IS NOT NULL AS running, j.next_run, j.last_run, \
                j.last_success, j.last_runtime_seconds, j.consecutive_failures, coalesce(",
        silent_too_long!(),
        ", false) AS overdue, coalesce(t.runs, '{}'::jsonb) AS runs \
         FROM manage.jobs j \
         LEFT JOIN ( \
             SELECT job, jsonb_object_agg(state, runs) AS runs FROM manage.run_counts \
             GROUP BY job \
         ) t ON t.job = j.name \
         WHERE NOT j.removed \
         ORDER BY j.name"
    );
    let rows = client.query_typed(sql, &[])?;
    rows.iter()
        .map(|row| {
            let runs: serde_json::Value = row.try_get("runs")?;
            let runs = runs
                .as_object()
                .map(|counts| {
                    counts
                        .iter()
                        .map(|(state, n)| (state.clone(), n.as_i64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            Ok(JobFigures {
                name: row.try_get("name")?,
                enabled: row.try_get("enabled")?,
                running: row.try_get("running")?,
                next_run: row.try_get("next_run")?,
                last_run: row.try_get("last_run")?,
                last_success: row.try_get("last_success")?,
                last_runtime_seconds: row.try_get("last_runtime_seconds")?,
                consecutive_failures: row.try_get("consecutive_failures")?,
                overdue: row.try_get("overdue")?,
                runs,
            })
        })
        .collect()
}

/// The hold, the live runners (those holding their lock, as `jobs status`
/// counts them), and the mail queue.
pub fn global_figures(client: &mut impl GenericClient) -> anyhow::Result<GlobalFigures> {
    let sql = concat!(
        "SELECT (SELECT held FROM manage.hold) AS held, \
                (SELECT count(*) FROM manage.mail_queue) AS mail_queue_length, \
                coalesce((SELECT extract(epoch FROM clock_timestamp() - min(queued_at))::float8 \
                          FROM manage.mail_queue), 0) AS mail_queue_oldest_age, \
                (SELECT coalesce(jsonb_agg(jsonb_build_object('host', w.host, 'pid', w.pid, \
                     'age', greatest(extract(epoch FROM clock_timestamp() - w.heartbeat)::float8, 0)) \
                     ORDER BY w.started_at, w.id), '[]'::jsonb) \
                 FROM manage.runners w WHERE w.stopped_at IS NULL AND ",
        runner_lock_held!(),
        ") AS runners"
    );
    let row = client.query_typed_one(sql, typed![&RUNNER_LOCK_CLASS])?;
    let runners: serde_json::Value = row.try_get("runners")?;
    let runners = runners
        .as_array()
        .map(|list| {
            list.iter()
                .map(|r| RunnerFigures {
                    host: r["host"].as_str().unwrap_or_default().to_string(),
                    pid: r["pid"]
                        .as_i64()
                        .and_then(|p| i32::try_from(p).ok())
                        .unwrap_or(0),
                    heartbeat_age_seconds: r["age"].as_f64().unwrap_or(0.0),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(GlobalFigures {
        held: row.try_get("held")?,
        runners,
        mail_queue_length: row.try_get("mail_queue_length")?,
        mail_queue_oldest_age_seconds: row.try_get("mail_queue_oldest_age")?,
    })
}
