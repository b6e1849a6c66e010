//! `purge_job_history`: deletes finished runs older than the retention period,
//! and the audit rows as old (§16: the audit trail is purged with the history).
//!
//! It deletes in bounded batches, each its own short transaction, so that the
//! runner (which writes runs) never waits long behind it.

use anyhow::Context;

use crate::job::builder::Job;
use crate::job::definition::{JobContext, JobOption, ShouldRun};
use crate::store;

/// Rows per delete: small enough that one batch holds its locks for milliseconds.
const BATCH: i64 = 5_000;

/// The job, registered as an application registers its own (§22).
pub fn job() -> Job {
    Job::new("purge_job_history", run)
        .app("scheduler")
        .description("Purge old job history")
        .times(&["03:07"])
        .internal(true)
        .should_run(should_run)
        .option(
            KEEP_DAYS.long,
            KEEP_DAYS.value_name,
            KEEP_DAYS.help,
            KEEP_DAYS.max,
        )
}

const KEEP_DAYS: JobOption = JobOption {
    long: "keep-days",
    value_name: "N",
    help: "Keep the runs of the last N days (default: history_retention_days; 0 removes every finished run)",
    // Bounded like history_retention_days: further back than that the
    // cut-off would fall outside PostgreSQL's timestamps.
    max: crate::config::MAX_RETENTION_DAYS,
};

fn keep_days(ctx: &JobContext) -> u32 {
    ctx.option(KEEP_DAYS.long)
        .unwrap_or(ctx.config.history_retention_days)
}

fn should_run(ctx: &mut JobContext) -> anyhow::Result<ShouldRun> {
    let days = keep_days(ctx);
    Ok(
        if store::history_older_than_exists(ctx.client, days)?
            || store::audit_older_than_exists(ctx.client, days)?
        {
            ShouldRun::Run
        } else {
            let noun = if days == 1 { "day" } else { "days" };
            ShouldRun::Skip(format!("no finished run is older than {days} {noun}"))
        },
    )
}

fn run(ctx: &mut JobContext) -> anyhow::Result<()> {
    let days = keep_days(ctx);
    let mut removed: u64 = 0;
    loop {
        let n = store::purge_history_batch(ctx.client, days, BATCH)
            .context("deleting old job history")?;
        removed += n;
        if n < BATCH as u64 {
            break;
        }
    }
    // The audit rows go silently: the line below is what operators and their
    // scripts read, and it counts the runs, as it always has.
    loop {
        let n =
            store::purge_audit_batch(ctx.client, days, BATCH).context("deleting old audit rows")?;
        if n < BATCH as u64 {
            break;
        }
    }
    let noun = if removed == 1 { "run" } else { "runs" };
    writeln!(
        ctx.out,
        "Removed {removed} {noun} older than {days} days from the job history"
    )?;
    Ok(())
}
