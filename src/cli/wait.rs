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
//! they record a run or a skip; it also looks every second, because a NOTIFY
//! is not replicated (after a failover, §19, or through a transaction-mode
//! pooler nothing arrives), and a lost connection is made again (to the new
//! primary, with a multi-host URL) rather than ending the wait.

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use crate::cli::common::report_trigger;
use crate::cli::Context;
use crate::error::Exit;
use crate::job::{Job, RunState};
use crate::store;

/// How often the run is looked at when no NOTIFY comes.
const RECHECK: Duration = Duration::from_secs(1);

/// How long the database may be unreachable before the wait gives up.
const LOST_FOR_AT_MOST: Duration = Duration::from_secs(60);

/// The connection is gone or its server takes no writes (a failover in
/// progress): an error without a server message, the server shutting down
/// (SQLSTATE class 57), or a read-only server.
fn is_lost(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|c| c.downcast_ref::<postgres::Error>())
        .any(|e| {
            crate::db::is_read_only(e)
                || e.as_db_error().is_none()
                || e.code().is_some_and(|c| c.code().starts_with("57"))
        })
}

pub fn run_now_and_wait(
    ctx: &Context,
    client: &mut postgres::Client,
    row: &Job,
    delay_secs: u32,
    args: &[String],
    timeout_secs: Option<u32>,
) -> anyhow::Result<()> {
    if store::connected_runners(client)?.is_empty() {
        eprintln!("error: no runner is connected, so nothing would run job {}; start `manage scheduled_jobs_runner`", row.name);
        return Err(Exit(1).into());
    }
    store::listen(client)?;
    let newest_before = store::newest_claim_id(client, &row.name)?;
    crate::ops::run_now(
        client,
        &row.name,
        delay_secs,
        args,
        &crate::ops::Actor::cli(),
    )?;
    report_trigger(ctx, client, &row.name)?;
    let deadline = timeout_secs.map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
    // The trigger is written; from here on a lost connection is reopened.
    let mut reopened: Option<postgres::Client> = None;
    let mut lost_since: Option<Instant> = None;
    loop {
        let client = match reopened.as_mut() {
            Some(c) => c,
            None => &mut *client,
        };
        let looked = (|| -> anyhow::Result<_> {
            let run = store::first_run_after(client, &row.name, newest_before)?;
            let skip = store::skip_after(client, &row.name, newest_before)?;
            Ok((run, skip))
        })();
        let (run, skip) = match looked {
            Ok(found) => {
                lost_since = None;
                found
            }
            Err(e) if client.is_closed() || is_lost(&e) => {
                // Gone (a failover): look again on a new connection, for as
                // long as a runner would take to come back, then give up.
                let since = *lost_since.get_or_insert_with(Instant::now);
                if since.elapsed() > LOST_FOR_AT_MOST {
                    return Err(e);
                }
                std::thread::sleep(RECHECK);
                if let Ok((mut c, _)) = crate::db::connect(&ctx.config, crate::db::APPLICATION_NAME)
                {
                    let _ = store::listen(&mut c);
                    reopened = Some(c);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
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
        // Sleep until a runner says something, the deadline, or a second
        // (a runner that died says nothing, nor one after a failover).
        let mut wait = RECHECK;
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
        if client.notifications().timeout_iter(wait).next().is_err() {
            continue;
        }
        let Ok(runners) = store::connected_runners(client) else {
            continue;
        };
        if runners.is_empty() {
            eprintln!(
                "error: no runner is connected any more; job {} may not run",
                row.name
            );
            return Err(Exit(1).into());
        }
    }
}
