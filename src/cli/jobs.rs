//! `manage jobs …` and `manage list_unscheduled_commands`: reading and
//! controlling the scheduled jobs, in human tables or `--json`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::common::{
    connect, existing_job, job_json, overview, print_history_table, run_json,
};
use crate::cli::render::{self, print_json};
use crate::cli::Context;
use crate::error::bad_input;
use crate::job::{Job, RunState};
use crate::schedule::{self, Schedule};
use crate::store;
use crate::view::health::{banner, list_schedule};
use crate::view::json::JobJson;

/// Runs per page of `jobs show`.
pub const SHOW_PAGE: u32 = 15;

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
    Configure(Box<super::control::ConfigureArgs>),
    /// Schedule an immediate (or delayed) run through the runner, or an extra run at an instant; `-- ARG…` gives that run arguments
    #[command(name = "run-now")]
    RunNow(super::control::RunNowArgs),
    /// Clear the last-run failure state of a job
    #[command(name = "reset-failure")]
    ResetFailure { name: String },
    /// Hold all jobs: the runners start nothing until the hold is released (or, with --until, ends)
    Hold {
        /// End the hold by itself then (an RFC 3339 instant, or HH:MM:SS / MM:SS from now), as
        /// `release --pending reschedule` does
        #[arg(long, value_name = "INSTANT|DURATION", value_parser = crate::input::parse_until_arg)]
        until: Option<crate::input::Until>,
    },
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
    /// The audit trail: every change from the command line or the web page, and every sync line, newest first, 50 per page
    Audit {
        /// Only this job's rows
        name: Option<String>,
        /// Page number: 1 or more, 50 rows per page (past the end: no rows)
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
        JobsCommand::Configure(args) => super::control::configure(ctx, *args),
        JobsCommand::RunNow(args) => super::control::run_now(ctx, args),
        JobsCommand::ResetFailure { name } => super::control::reset_failure(ctx, &name),
        JobsCommand::Hold { until } => super::control::hold(ctx, until),
        JobsCommand::Release { pending } => super::control::release(ctx, pending),
        JobsCommand::History {
            name,
            failed,
            page,
            json,
        } => super::status::history(ctx, name.as_deref(), failed, page, json),
        JobsCommand::Audit { name, page, json } => {
            super::audit::audit(ctx, name.as_deref(), page, json)
        }
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

fn describe_schedule(s: Option<&Schedule>) -> String {
    s.map_or_else(|| "none".to_string(), Schedule::describe)
}

/// The job's zone and where it comes from.
fn zone_line(row: &Job, tz: Tz) -> String {
    let origin = if row.override_timezone.is_some() {
        "set with jobs configure"
    } else if row.builtin_timezone.is_some() {
        "declared"
    } else {
        "the configured zone"
    };
    format!("{} ({origin})", row.zone(tz).name())
}

fn list(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let tz = ctx.config.timezone;
    let mut client = connect(ctx)?;
    let rows = store::listed_jobs(&mut client)?;
    if json {
        // Straight from the rows to stdout: no serde_json::Value in between,
        // whose maps cost a third of `jobs list --json` over 10,000 jobs.
        let objects: Vec<JobJson> = rows
            .iter()
            .map(|r| JobJson::new(r, tz, ctx.config.notifications.email.as_deref()))
            .collect();
        return render::write_json(&objects);
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
        "Schedule",
        "Next run",
        "Last run",
        "Last status",
        "Last skipped",
    ]);
    for row in &rows {
        let is_failed = row.last_state.is_some_and(RunState::is_failure);
        let status = if row.running() {
            RunState::Running.to_string()
        } else {
            row.last_state.map_or_else(|| "-".into(), |s| s.to_string())
        };
        table.add_row(vec![
            render::alert_cell(if is_failed { "!" } else { "" }, is_failed),
            render::alert_cell(&row.name, is_failed),
            comfy_table::Cell::new(&row.description),
            comfy_table::Cell::new(&row.app),
            comfy_table::Cell::new(if row.enabled { "yes" } else { "no" }),
            comfy_table::Cell::new(list_schedule(row, tz)),
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
        let mut value = job_json(&row, tz, ctx.config.notifications.email.as_deref());
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
    let mut fields: Vec<(&str, String)> = vec![
        ("Job", row.name.clone()),
        ("Description", row.description.clone()),
        ("App", row.app.clone()),
        ("Kind", render::kind(&row)),
        ("Enabled", yes_no(row.enabled).into()),
        ("Notify on success", yes_no(row.notify_on_success).into()),
        ("Retries", render::retries(&row)),
        ("Alert after", render::alert_after(&row)),
        ("Runs on", render::runs_on(&row)),
        ("Jitter", render::jitter(&row)),
        ("Overlap", render::overlap(&row)),
        (
            "Trigger next",
            render::chain(
                &row.trigger_next().map(String::from).collect::<Vec<_>>(),
                false,
            ),
        ),
        (
            "On success",
            render::chain(row.on_success(), row.override_on_success.is_some()),
        ),
        (
            "On failure",
            render::chain(row.on_failure(), row.override_on_failure.is_some()),
        ),
        (
            "Paused until",
            render::human_time_opt(row.paused_at(chrono::Utc::now()), tz, "-"),
        ),
        (
            "Notify",
            render::notify(&row, ctx.config.notifications.email.as_deref()),
        ),
        ("Expect success in", render::expect_success_within(&row)),
        ("Warn after", render::warn_after(&row)),
        ("Consecutive failures", row.consecutive_failures.to_string()),
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
        ("Time zone", zone_line(&row, tz)),
        (
            "Start deadline",
            row.start_deadline()
                .map_or_else(|| "none".into(), schedule::format_duration),
        ),
        ("Next run", render::next_run(&row, tz, now)),
        (
            "Last run",
            render::human_time_opt(row.last_run, tz, "never"),
        ),
        (
            "Last status",
            row.last_state.map_or_else(|| "-".into(), |s| s.to_string()),
        ),
        (
            "Last skipped",
            render::human_time_opt(row.last_skip, tz, "never"),
        ),
        ("Running", yes_no(row.running()).into()),
    ];
    if let Some(transaction) = render::transaction(&row) {
        fields.insert(4, ("Transaction", transaction.into()));
    }
    render::insert_extra_runs(&mut fields, &row, tz, now);
    let width = fields
        .iter()
        .map(|(label, _)| label.len() + 1)
        .max()
        .unwrap_or(0);
    for (label, value) in fields {
        println!("{:<width$} {value}", format!("{label}:"));
    }
    println!();
    println!("History (page {page}, {SHOW_PAGE} per page):");
    print_history_table(&history, tz, false);
    Ok(())
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
    if row.effective_schedule().is_none() {
        if json {
            return print_json(&Value::Array(Vec::new()));
        }
        println!("Job {name} has no schedule: it runs only when started by hand.");
        return Ok(());
    }
    let now = store::db_now(&mut client)?;
    let runs = row.upcoming_runs(after, now, count, tz);
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
    let zone = row.zone(tz);
    if zone != tz && !matches!(row.effective_schedule(), Some(Schedule::Interval(_))) {
        println!("Slots in {}, shown in {}:", zone.name(), tz.name());
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
