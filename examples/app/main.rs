//! An application's own `manage` (§22): two jobs of its own beside the
//! shipped ones, and the whole command line with them.
//!
//! `cargo build --example app`, then `target/debug/examples/app --help`:
//! `app count_jobs` and `app greet` run the jobs once by hand, `app
//! scheduled_jobs_runner` runs them on their schedules.

use manage::{Context, Job, ShouldRun, Suite};

/// Internal: runs in the runner's process, on its connection.
fn count_jobs(ctx: &mut Context) -> anyhow::Result<()> {
    let row = ctx
        .client
        .query_one("SELECT count(*) FROM manage.jobs WHERE NOT removed", &[])?;
    let jobs: i64 = row.try_get(0)?;
    writeln!(ctx.out, "{jobs} jobs are defined")?;
    Ok(())
}

/// A child process (`app greet`), under its own timeout.
fn greet(ctx: &mut Context) -> anyhow::Result<()> {
    match ctx.run_id {
        Some(run) => writeln!(ctx.out, "hello from run {run}")?,
        None => writeln!(ctx.out, "hello, by hand")?,
    }
    // The arguments of this one run (`jobs run-now greet -- ARG…`).
    for arg in ctx.args {
        writeln!(ctx.out, "argument: {arg}")?;
    }
    Ok(())
}

fn main() {
    Suite::new()
        .job(
            Job::new("count_jobs", count_jobs)
                .app("example")
                .description("Count the defined jobs")
                .interval("01:00:00")
                .internal(true)
                .trigger_next(&["greet"]),
        )
        .job(
            Job::new("greet", greet)
                .app("example")
                .description("Say hello")
                .timeout(std::time::Duration::from_secs(60))
                .should_run(|_| Ok(ShouldRun::Run)),
        )
        .main()
}
