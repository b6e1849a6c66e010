//! What more than one CLI command needs: the connection, looking up a job by
//! name, the job and run objects of §7's JSON, the overview of the runners and
//! the hold, the history table, and the report after a run-now.
//!
//! These live here, below the command files, so that a command file uses
//! another only to dispatch to it and never the other way round: helpers kept
//! in the file of the first command that needed them had made the command
//! files import each other in circles.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

use crate::cli::render;
use crate::cli::Context;
use crate::error::bad_input;
use crate::job::{Job, RunState};
use crate::schedule;
use crate::store::{self, RunRow};

pub(crate) fn connect(ctx: &Context) -> anyhow::Result<postgres::Client> {
    Ok(crate::cli::connect_db(&ctx.config, crate::db::APPLICATION_NAME)?.0)
}

/// A job that exists and is not removed, or exit 2 naming it.
pub(crate) fn existing_job(client: &mut postgres::Client, name: &str) -> anyhow::Result<Job> {
    match store::job(client, name)? {
        Some(row) if !row.removed => Ok(row),
        Some(_) => bad_input(format!(
            "job \"{name}\" has been removed (it is no longer defined); expected a defined job, see `manage jobs list`"
        )),
        None => no_such_job(name),
    }
}

/// Exit 2: no job has this name (not even a removed one).
pub(crate) fn no_such_job<T>(name: &str) -> anyhow::Result<T> {
    bad_input(format!(
        "there is no job \"{name}\"; expected one of the names `manage jobs list` shows"
    ))
}

/// The job object of §7. `jobs list --json` serialises these straight from
/// the rows (at 10,000 jobs, a `serde_json::Value` per job first doubled its
/// time); only `jobs show` makes one into a `Value`, to add its history.
#[derive(serde::Serialize)]
pub struct JobJson<'a> {
    name: &'a str,
    app: &'a str,
    description: &'a str,
    enabled: bool,
    notify_on_success: bool,
    internal: bool,
    /// "internal", "process" or "sql".
    kind: &'static str,
    timeout_seconds: i32,
    retries: u32,
    retry_delay: String,
    alert_after: u32,
    consecutive_failures: i32,
    builtin_times: Option<Vec<String>>,
    builtin_interval: Option<String>,
    override_times: Option<Vec<String>>,
    override_interval: Option<String>,
    builtin_cron: Option<&'a str>,
    override_cron: Option<&'a str>,
    timezone: &'static str,
    start_deadline: Option<String>,
    next_run: Option<String>,
    last_run: Option<String>,
    last_state: Option<RunState>,
    last_skip: Option<String>,
    running: bool,
}

fn times_strings(times: &Option<Vec<chrono::NaiveTime>>) -> Option<Vec<String>> {
    match times {
        Some(t) if !t.is_empty() => Some(
            schedule::normalize_times(t.clone())
                .into_iter()
                .map(schedule::format_time)
                .collect(),
        ),
        _ => None,
    }
}

fn interval_string(secs: Option<i32>) -> Option<String> {
    secs.filter(|s| *s > 0)
        .map(|s| schedule::format_duration(s as u32))
}

impl<'a> JobJson<'a> {
    pub fn new(row: &'a Job, tz: Tz) -> Self {
        let time = |t: Option<chrono::DateTime<Utc>>| t.map(|t| render::json_time(t, tz));
        JobJson {
            name: &row.name,
            app: &row.app,
            description: &row.description,
            enabled: row.enabled,
            notify_on_success: row.notify_on_success,
            internal: row.internal,
            kind: row.kind().as_str(),
            timeout_seconds: row.timeout_seconds,
            retries: row.retries(),
            retry_delay: schedule::format_duration(row.retry_delay_seconds()),
            alert_after: row.alert_after(),
            consecutive_failures: row.consecutive_failures,
            builtin_times: times_strings(&row.builtin_times),
            builtin_interval: interval_string(row.builtin_interval_seconds),
            override_times: times_strings(&row.override_times),
            override_interval: interval_string(row.override_interval_seconds),
            builtin_cron: row.builtin_cron.as_deref(),
            override_cron: row.override_cron.as_deref(),
            timezone: row.zone(tz).name(),
            start_deadline: row.start_deadline().map(schedule::format_duration),
            next_run: time(row.next_run),
            last_run: time(row.last_run),
            last_state: row.last_state,
            last_skip: time(row.last_skip),
            running: row.running(),
        }
    }
}

/// The job object of §7 as a value (for `jobs show`, which adds `history`).
pub fn job_json(row: &Job, tz: Tz) -> Value {
    serde_json::to_value(JobJson::new(row, tz)).unwrap_or(Value::Null)
}

/// The run object of §7; `with_output` adds the whole output.
pub fn run_json(run: &RunRow, tz: Tz, with_output: bool) -> Value {
    let mut value = json!({
        "id": run.id,
        "job": run.job,
        "state": run.state,
        "started_at": render::json_time(run.started_at, tz),
        "finished_at": render::json_time_opt(run.finished_at, tz),
        "runtime_seconds": run.runtime_seconds,
        "attempt": run.attempt,
        "output_first_line": run.output_first_line(),
    });
    if with_output {
        value["output"] = Value::from(run.output.clone());
    }
    value
}

/// The facts above `jobs list` and in `jobs status`.
pub struct Overview {
    pub now: DateTime<Utc>,
    pub runners: Vec<store::RunnerRow>,
    pub hold: store::Hold,
    pub last_run: Option<DateTime<Utc>>,
}

pub fn overview(client: &mut postgres::Client) -> anyhow::Result<Overview> {
    let store::Overview {
        now,
        hold,
        last_run,
    } = store::overview(client)?;
    Ok(Overview {
        now,
        runners: store::connected_runners(client)?,
        hold,
        last_run,
    })
}

/// The history table of `jobs show` and `jobs history`.
pub fn print_history_table(runs: &[RunRow], tz: Tz, with_job: bool) {
    if runs.is_empty() {
        println!("(no runs)");
        return;
    }
    let mut header = vec!["Id", "Started"];
    if with_job {
        header.push("Job");
    }
    header.extend(["State", "Attempt", "Runtime", "Output"]);
    let mut table = render::table(&header);
    for run in runs {
        let is_failed = run.state.is_failure();
        let mut cells = vec![
            comfy_table::Cell::new(run.id),
            comfy_table::Cell::new(render::human_time(run.started_at, tz)),
        ];
        if with_job {
            cells.push(comfy_table::Cell::new(&run.job));
        }
        cells.push(render::alert_cell(run.state.as_str(), is_failed));
        cells.push(comfy_table::Cell::new(run.attempt));
        cells.push(comfy_table::Cell::new(
            run.runtime_seconds
                .map_or_else(|| "-".into(), render::seconds),
        ));
        cells.push(comfy_table::Cell::new(render::job_output(
            run.output_first_line(),
        )));
        table.add_row(cells);
    }
    render::print_table(&table);
}

/// Say what run-now did: when the job will run, or that it runs again after
/// the current run.
pub(crate) fn report_trigger(
    ctx: &Context,
    client: &mut postgres::Client,
    name: &str,
) -> anyhow::Result<()> {
    let row = existing_job(client, name)?;
    let now = store::db_now(client)?;
    if row.running() && row.run_requested {
        println!("Job {name} is running; it will run once more when this run ends");
    } else if let Some(next) = row.next_run {
        println!(
            "Job {name} will run at {} ({})",
            render::human_time(next, ctx.config.timezone),
            render::relative(next, now)
        );
    }
    if store::hold(client)?.held {
        println!("Note: jobs are held; it runs once the hold is released with --pending run");
    }
    Ok(())
}
