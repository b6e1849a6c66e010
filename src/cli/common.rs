//! What more than one CLI command needs: the connection, looking up a job by
//! name, the history table, and the report after a run-now (the JSON objects
//! and the overview are in `crate::view`, which the web page uses too).
//!
//! These live here, below the command files, so that a command file uses
//! another only to dispatch to it and never the other way round: helpers kept
//! in the file of the first command that needed them had made the command
//! files import each other in circles.

use chrono_tz::Tz;

use crate::cli::render;
use crate::cli::Context;
use crate::store::{self, RunRow};

pub(crate) fn connect(ctx: &Context) -> anyhow::Result<postgres::Client> {
    Ok(crate::cli::connect_db(&ctx.config, crate::db::APPLICATION_NAME)?.0)
}

/// The lookups every job command starts with live with the operations.
pub(crate) use crate::ops::{existing_job, no_such_job};

pub use crate::view::health::overview;
pub use crate::view::json::{job_json, run_json};

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
