//! `manage jobs …` and `manage list_unscheduled_commands`: reading and
//! controlling the scheduled jobs, in human tables or `--json`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::render::{self, print_json};
use crate::cli::Context;
use crate::error::bad_input;
use crate::schedule::{self, Schedule};
use crate::store::{self, JobRow, RunRow};

/// Runs per page of `jobs show`.
pub const SHOW_PAGE: u32 = 15;
/// Runs per page of `jobs history`.
pub const HISTORY_PAGE: u32 = 50;
/// A last run longer ago than this is worth a warning above `jobs list`.
const STALE_LAST_RUN_SECS: i64 = 6 * 3600;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Every job with its schedule and state, sorted by next run
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// One job: configuration, schedule, state and history
    Show {
        name: String,
        /// History page: 1 or more, 15 runs per page (past the end: no runs)
        #[arg(long, default_value_t = 1, value_parser = page_parser(), allow_negative_numbers = true)]
        page: u32,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// The next run times of a job's effective schedule
    Next {
        name: String,
        /// How many run times to list: 1 to 1000
        #[arg(long, default_value_t = 5, value_parser = super::number_in(1u16, 1000),
              allow_negative_numbers = true)]
        count: u16,
        /// List the runs after this RFC 3339 instant instead of after now
        #[arg(long, value_name = "INSTANT")]
        after: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Change a job's configuration (interactively, on a terminal, with no options)
    Configure(super::control::ConfigureArgs),
    /// Schedule an immediate (or delayed) run through the runner
    #[command(name = "run-now")]
    RunNow(super::control::RunNowArgs),
    /// Clear the last-run failure state of a job
    #[command(name = "reset-failure")]
    ResetFailure { name: String },
    /// Hold all jobs: the runners start nothing until the hold is released
    Hold,
    /// End the hold: pending jobs run now, or are rescheduled as if they had just run
    Release {
        /// What to do with the jobs that became due during the hold (required)
        // Checked by `release` rather than by clap, whose "required" error
        // spans two lines and does not say which values are expected.
        #[arg(long, value_enum)]
        pending: Option<super::control::Pending>,
    },
    /// The history of runs, newest first, 50 per page
    History {
        /// Only this job's runs
        name: Option<String>,
        /// Only runs that did not succeed
        #[arg(long)]
        failed: bool,
        /// Page number: 1 or more, 50 runs per page (past the end: no runs)
        #[arg(long, default_value_t = 1, value_parser = page_parser(), allow_negative_numbers = true)]
        page: u32,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// The full output of one run
    Output {
        /// The run's id, 1 or more (see `jobs history`)
        #[arg(value_name = "RUN_ID", value_parser = super::number_in(1, i64::MAX),
              allow_negative_numbers = true)]
        run_id: i64,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Runners, hold, last run, running, overdue and failing jobs; exit 0 healthy, 1 not
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

/// `--page`: 1 or more (a page past the end is an empty list, not an error).
fn page_parser() -> impl Fn(&str) -> Result<u32, String> + Clone + Send + Sync {
    super::number_in(1, u32::MAX)
}

pub fn run(ctx: &Context, command: JobsCommand) -> anyhow::Result<()> {
    match command {
        JobsCommand::Configure(args) => super::control::configure(ctx, args),
        JobsCommand::RunNow(args) => super::control::run_now(ctx, args),
        JobsCommand::ResetFailure { name } => super::control::reset_failure(ctx, &name),
        JobsCommand::Hold => super::control::hold(ctx),
        JobsCommand::Release { pending } => super::control::release(ctx, pending),
        JobsCommand::History {
            name,
            failed,
            page,
            json,
        } => super::status::history(ctx, name.as_deref(), failed, page, json),
        JobsCommand::Output { run_id, json } => super::status::output(ctx, run_id, json),
        JobsCommand::Status { json } => super::status::status(ctx, json),
        JobsCommand::List { json } => list(ctx, json),
        JobsCommand::Show { name, page, json } => show(ctx, &name, page, json),
        JobsCommand::Next {
            name,
            count,
            after,
            json,
        } => next(ctx, &name, usize::from(count), after.as_deref(), json),
    }
}

pub(crate) fn connect(ctx: &Context) -> anyhow::Result<postgres::Client> {
    Ok(crate::db::connect(&ctx.config, crate::db::APPLICATION_NAME)?.0)
}

/// A job that exists and is not removed, or exit 2 naming it.
pub(crate) fn existing_job(client: &mut postgres::Client, name: &str) -> anyhow::Result<JobRow> {
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

/// The job object of §7, serialised straight from the row: at 10,000 jobs,
/// building a `serde_json::Value` per job first doubled the time of
/// `jobs list --json`.
#[derive(serde::Serialize)]
pub struct JobJson<'a> {
    name: &'a str,
    app: &'a str,
    description: &'a str,
    enabled: bool,
    notify_on_success: bool,
    internal: bool,
    timeout_seconds: i32,
    builtin_times: Option<Vec<String>>,
    builtin_interval: Option<String>,
    override_times: Option<Vec<String>>,
    override_interval: Option<String>,
    next_run: Option<String>,
    last_run: Option<String>,
    last_state: Option<&'a str>,
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
    pub fn new(row: &'a JobRow, tz: Tz) -> Self {
        let time = |t: Option<chrono::DateTime<Utc>>| t.map(|t| render::json_time(t, tz));
        JobJson {
            name: &row.name,
            app: &row.app,
            description: &row.description,
            enabled: row.enabled,
            notify_on_success: row.notify_on_success,
            internal: row.internal,
            timeout_seconds: row.timeout_seconds,
            builtin_times: times_strings(&row.builtin_times),
            builtin_interval: interval_string(row.builtin_interval_seconds),
            override_times: times_strings(&row.override_times),
            override_interval: interval_string(row.override_interval_seconds),
            next_run: time(row.next_run),
            last_run: time(row.last_run),
            last_state: row.last_state.as_deref(),
            last_skip: time(row.last_skip),
            running: row.running(),
        }
    }
}

/// The job object of §7 as a value (for `jobs show`, which adds `history`).
pub fn job_json(row: &JobRow, tz: Tz) -> Value {
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
        "output_first_line": run.output_first_line(),
    });
    if with_output {
        value["output"] = Value::from(run.output.clone());
    }
    value
}

fn describe_schedule(s: Option<&Schedule>) -> String {
    s.map_or_else(|| "none".to_string(), Schedule::describe)
}

fn failed(state: Option<&str>) -> bool {
    matches!(state, Some(s) if s != "succeeded" && s != "running")
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

fn banner(overview: &Overview, tz: Tz) -> Vec<String> {
    let mut lines = Vec::new();
    if overview.runners.is_empty() {
        lines.push("Runner:   no runner is connected".to_string());
    } else {
        for runner in &overview.runners {
            lines.push(format!(
                "Runner:   connected on {} (pid {}) since {}",
                runner.host,
                runner.pid,
                render::human_time(runner.started_at, tz)
            ));
        }
    }
    lines.push(match (overview.hold.held, overview.hold.since) {
        (true, Some(since)) => format!(
            "Hold:     jobs are held since {}",
            render::human_time(since, tz)
        ),
        (true, None) => "Hold:     jobs are held".to_string(),
        (false, _) => "Hold:     jobs are not held".to_string(),
    });
    match overview.last_run {
        None => lines.push("Last run: no job has run yet".to_string()),
        Some(last) => {
            lines.push(format!(
                "Last run: {} ({})",
                render::human_time(last, tz),
                render::relative(last, overview.now)
            ));
            if (overview.now - last).num_seconds() > STALE_LAST_RUN_SECS {
                lines.push("warning: the last job ran over 6 hours ago".to_string());
            }
        }
    }
    lines
}

fn list(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let tz = ctx.config.timezone;
    let mut client = connect(ctx)?;
    let rows = store::listed_jobs(&mut client)?;
    if json {
        return print_json(&Value::from(
            rows.iter().map(|r| job_json(r, tz)).collect::<Vec<_>>(),
        ));
    }
    let overview = overview(&mut client)?;
    for line in banner(&overview, tz) {
        println!("{line}");
    }
    println!();
    let mut table = render::table(&[
        "",
        "Name",
        "Description",
        "App",
        "Enabled",
        "Next run",
        "Last run",
        "Last status",
        "Last skipped",
    ]);
    for row in &rows {
        let is_failed = failed(row.last_state.as_deref());
        let status = if row.running() {
            "running".to_string()
        } else {
            row.last_state.clone().unwrap_or_else(|| "-".into())
        };
        table.add_row(vec![
            render::alert_cell(if is_failed { "!" } else { "" }, is_failed),
            render::alert_cell(&row.name, is_failed),
            comfy_table::Cell::new(&row.description),
            comfy_table::Cell::new(&row.app),
            comfy_table::Cell::new(if row.enabled { "yes" } else { "no" }),
            comfy_table::Cell::new(render::human_time_opt(row.next_run, tz, "-")),
            comfy_table::Cell::new(render::human_time_opt(row.last_run, tz, "never")),
            render::alert_cell(status, is_failed),
            comfy_table::Cell::new(render::human_time_opt(row.last_skip, tz, "-")),
        ]);
    }
    render::print_table(&table);
    Ok(())
}

fn show(ctx: &Context, name: &str, page: u32, json: bool) -> anyhow::Result<()> {
    let tz = ctx.config.timezone;
    let mut client = connect(ctx)?;
    let row = existing_job(&mut client, name)?;
    let history = store::history_page(
        &mut client,
        &store::HistoryFilter {
            job: Some(name),
            failed: false,
        },
        page,
        SHOW_PAGE,
    )?;
    if json {
        let mut value = job_json(&row, tz);
        value["history"] = Value::from(
            history
                .iter()
                .map(|r| run_json(r, tz, false))
                .collect::<Vec<_>>(),
        );
        return print_json(&value);
    }
    let now = store::db_now(&mut client)?;
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let kind = if row.internal {
        "internal (runs in the runner's process)".to_string()
    } else {
        format!(
            "child process, timeout {}",
            schedule::format_duration(row.timeout_seconds.max(1) as u32)
        )
    };
    let next = match row.next_run {
        Some(next) => format!(
            "{} ({})",
            render::human_time(next, tz),
            render::relative(next, now)
        ),
        None if !row.enabled => "none (disabled)".into(),
        None => "none (no schedule)".into(),
    };
    let fields: Vec<(&str, String)> = vec![
        ("Job", row.name.clone()),
        ("Description", row.description.clone()),
        ("App", row.app.clone()),
        ("Kind", kind),
        ("Enabled", yes_no(row.enabled).into()),
        ("Notify on success", yes_no(row.notify_on_success).into()),
        (
            "Built-in schedule",
            describe_schedule(row.builtin_schedule().as_ref()),
        ),
        (
            "Override",
            describe_schedule(row.override_schedule().as_ref()),
        ),
        (
            "Effective schedule",
            describe_schedule(row.effective_schedule().as_ref()),
        ),
        ("Next run", next),
        (
            "Last run",
            render::human_time_opt(row.last_run, tz, "never"),
        ),
        (
            "Last status",
            row.last_state.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "Last skipped",
            render::human_time_opt(row.last_skip, tz, "never"),
        ),
        ("Running", yes_no(row.running()).into()),
    ];
    for (label, value) in fields {
        println!("{:<19} {value}", format!("{label}:"));
    }
    println!();
    println!("History (page {page}, {SHOW_PAGE} per page):");
    print_history_table(&history, tz, false);
    Ok(())
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
    header.extend(["State", "Runtime", "Output"]);
    let mut table = render::table(&header);
    for run in runs {
        let is_failed = failed(Some(&run.state));
        let mut cells = vec![
            comfy_table::Cell::new(run.id),
            comfy_table::Cell::new(render::human_time(run.started_at, tz)),
        ];
        if with_job {
            cells.push(comfy_table::Cell::new(&run.job));
        }
        cells.push(render::alert_cell(&run.state, is_failed));
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

fn next(
    ctx: &Context,
    name: &str,
    count: usize,
    after: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let tz = ctx.config.timezone;
    let after = match after {
        None => None,
        Some(text) => match DateTime::parse_from_rfc3339(text.trim()) {
            Ok(instant) => Some(instant.with_timezone(&Utc)),
            Err(_) => {
                return bad_input(format!(
                    "--after: \"{text}\" is not an RFC 3339 instant: expected e.g. 2026-03-29T00:00:00+01:00"
                ))
            }
        },
    };
    let mut client = connect(ctx)?;
    let row = existing_job(&mut client, name)?;
    let Some(effective) = row.effective_schedule() else {
        if json {
            return print_json(&Value::Array(Vec::new()));
        }
        println!("Job {name} has no schedule: it runs only when started by hand.");
        return Ok(());
    };
    let now = store::db_now(&mut client)?;
    let runs = match (after, &effective) {
        (Some(after), _) => schedule::runs_after(&effective, after, count, tz),
        // An interval job's next run counts from its last run, as the runner's does.
        (None, Schedule::Interval(secs)) => {
            let first = schedule::next_run(&effective, row.last_run, row.last_skip, now, tz);
            let step = chrono::Duration::seconds(i64::from(*secs));
            std::iter::successors(Some(first), |t| t.checked_add_signed(step))
                .take(count)
                .collect()
        }
        (None, Schedule::Times(_)) => schedule::runs_after(&effective, now, count, tz),
    };
    let disabled_note = format!("Job {name} is disabled; if it were enabled it would run at:");
    if json {
        if !row.enabled {
            eprintln!("{disabled_note}");
        }
        return print_json(&Value::from(
            runs.iter()
                .map(|t| render::json_time(*t, tz))
                .collect::<Vec<_>>(),
        ));
    }
    if !row.enabled {
        println!("{disabled_note}");
    }
    for t in runs {
        println!("{}", render::human_time(t, tz));
    }
    Ok(())
}

pub fn list_unscheduled(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let mut client = connect(ctx)?;
    let rows = store::listed_jobs(&mut client)?;
    // A job is unscheduled when neither code, file nor operator gave it a
    // schedule; a job the database does not know yet goes by its definition.
    let mut unscheduled: Vec<(String, String, String)> = ctx
        .registry
        .jobs()
        .filter(|def| match rows.iter().find(|r| r.name == def.name) {
            Some(row) => row.effective_schedule().is_none(),
            None => def.schedule.is_none(),
        })
        .map(|def| (def.app.clone(), def.name.clone(), def.description.clone()))
        .collect();
    unscheduled.sort();
    if json {
        return print_json(&Value::from(
            unscheduled
                .iter()
                .map(|(app, name, description)| json!({"name": name, "app": app, "description": description}))
                .collect::<Vec<_>>(),
        ));
    }
    if unscheduled.is_empty() {
        println!("Every command is a scheduled job.");
        return Ok(());
    }
    let mut current_app: Option<&str> = None;
    for (app, name, description) in &unscheduled {
        if current_app != Some(app.as_str()) {
            if current_app.is_some() {
                println!();
            }
            println!("[{app}]");
            current_app = Some(app);
        }
        println!("    {name:<30} {description}");
    }
    Ok(())
}
