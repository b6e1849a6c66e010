//! `jobs run-now --wait`: trigger a run, wait for the runner to do it, print
//! its output and exit with its result.
//!
//! "That run" is the first claim of the job with an id above the newest one
//! at the moment of the trigger — so a run already going when we asked (the
//! run-requested case) is not mistaken for ours. A claim ends as a run in the
//! history or, when should_run found nothing to do, as the job's latest skip
//! (skips are not runs): that is printed as `Skipped: <reason>`, exit 0
//! (§17). Claim ids count skipped claims too, so an older skip is never
//! taken for ours. The wait listens on the runners' channel: they NOTIFY when
//! they record a run or a skip.

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use crate::cli::common::report_trigger;
use crate::cli::Context;
use crate::error::Exit;
use crate::job::{Job, RunState};
use crate::store;

pub fn run_now_and_wait(
    ctx: &Context,
    client: &mut postgres::Client,
    row: &Job,
    delay_secs: u32,
    timeout_secs: Option<u32>,
) -> anyhow::Result<()> {
    if store::connected_runners(client)?.is_empty() {
        eprintln!("error: no runner is connected, so nothing would run job {}; start `manage scheduled_jobs_runner`", row.name);
        return Err(Exit(1).into());
    }
    store::listen(client)?;
    let newest_before = store::newest_claim_id(client, &row.name)?;
    crate::ops::run_now(client, &row.name, delay_secs, &crate::ops::Actor::cli())?;
    report_trigger(ctx, client, &row.name)?;
    let deadline = timeout_secs.map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
    loop {
        let run = store::first_run_after(client, &row.name, newest_before)?;
        let skip = store::skip_after(client, &row.name, newest_before)?;
        // Whichever claim came first is ours: a run, or a skip.
        if let Some(skip) = skip.filter(|s| run.as_ref().is_none_or(|r| s.run_id < r.id)) {
            println!("Skipped: {}", skip.reason);
            return Ok(());
        }
        if let Some(run) = run {
            if run.state != RunState::Running {
                print!("{}", crate::cli::render::job_output(&run.output));
                if !run.output.is_empty() && !run.output.ends_with('\n') {
                    println!();
                }
                eprintln!(
                    "Run {} of job {} {} in {}",
                    run.id,
                    run.job,
                    run.state,
                    crate::cli::render::seconds(run.runtime_seconds.unwrap_or(0.0))
                );
                return if run.state == RunState::Succeeded {
                    Ok(())
                } else {
                    Err(Exit(1).into())
                };
            }
        }
        // Sleep until a runner says something, the deadline, or a few seconds
        // (a runner that died says nothing; this re-checks that one is there).
        let mut wait = Duration::from_secs(5);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                eprintln!(
                    "error: gave up waiting after {}; the run of job {} goes on",
                    crate::schedule::format_duration(timeout_secs.unwrap_or(0)),
                    row.name
                );
                return Err(Exit(1).into());
            }
            wait = wait.min(left);
        }
        let _ = client.notifications().timeout_iter(wait).next()?;
        if store::connected_runners(client)?.is_empty() {
            eprintln!(
                "error: no runner is connected any more; job {} may not run",
                row.name
            );
            return Err(Exit(1).into());
        }
    }
}
