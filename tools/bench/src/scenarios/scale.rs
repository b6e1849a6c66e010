//! Scenario 6: scale — 10,000 jobs and 1,000,000 history rows, written with
//! `generate_series`. Fresh-process wall time of the listing commands, then
//! `manage purge_job_history` removing 90 % of the history while a probe on
//! its own connection does what a runner does (claim a due job, end its run,
//! reschedule it, heartbeat — then roll back) with a lock_timeout, timing
//! each attempt: the longest attempt is the longest the runner would wait.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use manage::job::definition::BuiltinSchedule;
use manage::registry::Registry;

use super::Bench;
use crate::inproc;
use crate::stats::{Figure, Target};

/// One probe attempt: ms, and whether the due job could be claimed.
fn probe_once(
    client: &mut postgres::Client,
    claimant: &manage::store::Claimant,
) -> anyhow::Result<(f64, bool)> {
    let start = Instant::now();
    let mut tx = client.transaction()?;
    tx.batch_execute("SET LOCAL lock_timeout = '30s'")?;
    // A fresh cache: each probe pays the prepare, as a runner's first run does.
    let mut prepared = manage::store::Prepared::default();
    let timings = manage::timings::Timings::default();
    manage::store::heartbeat(
        &mut tx,
        &mut prepared,
        claimant.runner_id,
        timings.dead_after,
        claimant.tags,
    )?;
    let claimed = manage::store::claim_due(&mut tx, &mut prepared, claimant, 1)?;
    if let Some(run) = claimed.first() {
        let succeeded = manage::job::RunState::Succeeded;
        manage::store::finish_run(&mut tx, run.run_id, succeeded, run.started_at, 0.0, "")?;
        manage::store::finish_job(
            &mut tx,
            &run.job.name,
            Some(&manage::store::Finish {
                at: run.started_at,
                state: succeeded,
                runtime_seconds: 0.0,
                streak: Some(run.job.alert_after_run(succeeded, false, false)),
            }),
            None,
            run.job.next_run,
            1,
            false,
        )?;
    }
    tx.rollback()?;
    Ok((start.elapsed().as_secs_f64() * 1000.0, !claimed.is_empty()))
}

/// Probe every 20 ms until `stop`, as runner `runner_id` (the jobs it
/// defines are in `manage.runner_jobs`); (attempt times, attempts that
/// claimed nothing).
fn probe_loop(
    url: String,
    runner_id: i64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<(Vec<f64>, usize)> {
    let mut client = crate::server::connect(&url)?;
    let claimant = manage::store::Claimant {
        runner_id,
        host: "bench-probe",
        tags: &[],
    };
    let mut times = Vec::new();
    let mut missed = 0;
    while !stop.load(Ordering::Relaxed) {
        let (ms, claimed) = probe_once(&mut client, &claimant)?;
        times.push(ms);
        if !claimed {
            missed += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((times, missed))
}

/// `jobs` jobs named `scale_job_NNNNN` (every 50th failing) and `runs`
/// history rows spread evenly over the last 100 days, oldest first, then
/// VACUUM ANALYZE: the data of scenarios 6 and 9.
pub(super) fn write_jobs_and_runs(
    bench: &mut Bench,
    client: &mut postgres::Client,
    jobs: i64,
    runs: i64,
) -> anyhow::Result<()> {
    crate::say(&format!("  writing {jobs} jobs and {runs} history rows"));
    let start = Instant::now();
    client
        .execute(
            "INSERT INTO manage.jobs (name, app, description, internal, timeout_seconds, builtin_times, \
                 builtin_interval_seconds, definition, next_run, last_run, last_state) \
             SELECT format('scale_job_%s', lpad(i::text, 5, '0')), \
                    (ARRAY['billing', 'mail', 'members', 'invoices', 'local'])[1 + i % 5], \
                    format('Synthetic job number %s of the scale benchmark', i), false, 120, \
                    CASE WHEN i % 2 = 0 THEN ARRAY[make_time((i % 24)::int, (i % 60)::int, 0)] END, \
                    CASE WHEN i % 2 = 1 THEN 60 * (1 + i % 120) END, \
                    jsonb_build_object('command', 'true', 'trigger_next', '[]'::jsonb), \
                    now() + make_interval(secs => 3600 + i), now() - make_interval(secs => i), \
                    CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END \
             FROM generate_series(1, $1::bigint) i",
            &[&jobs],
        )
        .context("inserting jobs")?;
    // Evenly over the last 100 days, oldest first: --keep-days 10 removes 90 %.
    client
        .execute(
            "INSERT INTO manage.runs (job, state, started_at, finished_at, runtime_seconds, output, host) \
             SELECT format('scale_job_%s', lpad((1 + (i * 7919) % $1::bigint)::text, 5, '0')), \
                    CASE WHEN i % 97 = 0 THEN 'failed' ELSE 'succeeded' END, \
                    t, t + interval '1.5 seconds', 1.5, \
                    format(E'Processed %s items\\nsecond line of output', i % 1000), 'benchhost' \
             FROM generate_series(1, $2::bigint) i, \
                  LATERAL (SELECT now() - interval '100 days' + (i * (interval '100 days' / $2::bigint))) s(t)",
            &[&jobs, &runs],
        )
        .context("inserting history")?;
    // One statement each: VACUUM cannot run in the implicit block of a batch.
    client.batch_execute("VACUUM ANALYZE manage.jobs")?;
    client.batch_execute("VACUUM ANALYZE manage.runs")?;
    crate::say(&format!(
        "  written in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    bench.note(format!(
        "scale data: {jobs} jobs and {runs} runs written with generate_series in {:.0} s, then VACUUM ANALYZE",
        start.elapsed().as_secs_f64()
    ));

    Ok(())
}

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let jobs = bench.pick(10_000, 1_000) as i64;
    let runs = bench.pick(1_000_000, 100_000) as i64;
    let extra = [inproc::noop_job("bench_probe", BuiltinSchedule::Manual)];
    let config = bench
        .server
        .config(None, &bench.work, &inproc::builtin_jobs(&extra))?;
    let registry = Registry::new(Some(&config)).with_builtins(extra);
    let mut client = bench.server.reset(&config, &registry)?;

    write_jobs_and_runs(bench, &mut client, jobs, runs)?;

    let manage = bench.manage(None);
    let reps = bench.pick(20, 5);
    let label_jobs = format!("{jobs} jobs");
    for (key, label, args, target) in [
        (
            "scale.jobs_list",
            format!("jobs list ({label_jobs})"),
            vec!["jobs", "list"],
            Some(150.0),
        ),
        (
            "scale.jobs_list_json",
            format!("jobs list --json ({label_jobs})"),
            vec!["jobs", "list", "--json"],
            Some(100.0),
        ),
        (
            "scale.history",
            format!("jobs history --page 1 ({runs} runs)"),
            vec!["jobs", "history", "--page", "1"],
            Some(10.0),
        ),
        (
            "scale.history_job",
            "jobs history NAME --page 1".to_string(),
            vec!["jobs", "history", "scale_job_00042", "--page", "1"],
            Some(10.0),
        ),
    ] {
        let samples = manage.time(&args, 2, reps)?;
        let mut figure = Figure::distribution(key, &label, "ms", &samples).note("fresh process");
        if let Some(limit) = target {
            figure = figure.target(Target::at_most(limit, "median"));
        }
        bench.push(figure);
    }

    // The purge, with the probe beside it.
    client.execute(
        "UPDATE manage.jobs SET next_run = now() - interval '1 hour' WHERE name = 'bench_probe'",
        &[],
    )?;
    let runner_id: i64 = client
        .query_one(
            "INSERT INTO manage.runners (host, pid) VALUES ('bench-probe', 0) RETURNING id",
            &[],
        )?
        .try_get(0)?;
    let before: i64 = client
        .query_one("SELECT count(*) FROM manage.runs", &[])?
        .try_get(0)?;
    let defined: Vec<String> = registry.jobs().map(|job| job.name.clone()).collect();
    client.execute(
        "INSERT INTO manage.runner_jobs (runner_id, job) SELECT $1, unnest($2::text[])",
        &[&runner_id, &defined],
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let baseline = {
        let flag = Arc::clone(&stop);
        let url = bench.server.url.clone();
        let probe = std::thread::spawn(move || probe_loop(url, runner_id, flag));
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        probe
            .join()
            .map_err(|_| anyhow::anyhow!("the probe panicked"))??
    };
    crate::say("  purge_job_history --keep-days 10");
    stop.store(false, Ordering::Relaxed);
    let probe = {
        let flag = Arc::clone(&stop);
        let url = bench.server.url.clone();
        std::thread::spawn(move || probe_loop(url, runner_id, flag))
    };
    let start = Instant::now();
    let purge = manage
        .command(&["purge_job_history", "--keep-days", "10"])
        .stdin(std::process::Stdio::null())
        .output();
    let purge_secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (during, missed) = probe
        .join()
        .map_err(|_| anyhow::anyhow!("the probe panicked"))??;
    let purge = purge.context("running manage purge_job_history")?;
    anyhow::ensure!(
        purge.status.success(),
        "purge_job_history failed: {}",
        String::from_utf8_lossy(&purge.stderr).trim()
    );
    let after: i64 = client
        .query_one("SELECT count(*) FROM manage.runs", &[])?
        .try_get(0)?;
    let removed = before - after;
    bench.push(
        Figure::value(
            "scale.purge_seconds",
            &format!("purge_job_history removing {removed} runs"),
            "s",
            purge_secs,
        )
        .note(format!(
            "fresh process `manage purge_job_history --keep-days 10`: {}",
            String::from_utf8_lossy(&purge.stdout).trim()
        )),
    );
    let baseline_median = crate::stats::Summary::of(&baseline.0).map_or(0.0, |s| s.median);
    bench.push(
        Figure::distribution("scale.purge_probe", "runner statements during the purge", "ms", &during)
            .target(Target::at_most(100.0, "max"))
            .note(format!(
                "claim + end run + reschedule + heartbeat, rolled back, every 20 ms on its own connection; \
                 baseline before the purge: median {} ms over {} attempts; {missed} attempts found the due job locked",
                crate::stats::number(baseline_median),
                baseline.0.len()
            )),
    );
    Ok(())
}
