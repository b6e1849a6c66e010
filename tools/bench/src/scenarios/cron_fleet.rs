//! Scenario 11: a cron fleet (issue 28) — 10,000 declared jobs, each
//! `cron = "* * * * *"` with `jitter = "01:00"` (§21: "so a fleet's jobs do not
//! all start at :00"), run by 8 `manage scheduled_jobs_runner` processes at
//! their default settings on one database for 10 minutes (2,000 jobs for 2
//! minutes in `--quick`).
//!
//! The capture trigger of scenarios 3 and 4 copies each run's due instant
//! (the job's `next_run` at the claim: the slot plus its jitter) beside its
//! `started_at`, both from the database clock. The window is whole minutes,
//! from the first minute boundary after every runner listens; a run belongs
//! to the minute of its slot (its due instant truncated to the minute, since
//! the jitter is under a minute). Figures: start − due over every run of the
//! window, and exactly once — every (job, minute) of the window run once:
//! duplicates = runs − distinct (job, minute), missed = jobs × minutes −
//! distinct (job, minute).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use manage::registry::Registry;

use super::Bench;
use crate::stats::{Figure, Target};

const RUNNERS: usize = 8;

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let jobs = bench.pick(10_000, 2_000);
    let minutes = bench.pick(10, 2) as i32;
    // Default runner settings: the operator's fleet.
    let mut text = String::new();
    for i in 0..jobs {
        text.push_str(&format!(
            "[jobs.cron_{i:05}]\ncommand = \"true\"\napp = \"cronfleet\"\ncron = \"* * * * *\"\njitter = \"01:00\"\n\n"
        ));
    }
    let file = bench.work.join("cron-fleet.toml");
    std::fs::write(&file, &text).with_context(|| format!("writing {}", file.display()))?;
    let config = bench
        .server
        .config(Some(&file), &bench.work, &Registry::builtin_jobs())?;
    let registry = Registry::new(Some(&config));
    let synced = Instant::now();
    let mut client = bench.server.reset(&config, &registry)?;
    crate::say(&format!(
        "  {jobs} jobs synced in {:.1} s",
        synced.elapsed().as_secs_f64()
    ));
    client
        .batch_execute(super::latency::CAPTURE)
        .context("installing the capture trigger")?;
    let mut fleet = super::fleet::start_processes(bench, RUNNERS, &text, &mut client)?;
    let row = client.query_one(
        "SELECT date_trunc('minute', clock_timestamp() + interval '5 s') + interval '1 minute', \
                clock_timestamp()",
        &[],
    )?;
    let first: DateTime<Utc> = row.try_get(0)?;
    let now: DateTime<Utc> = row.try_get(1)?;
    let last = first + chrono::Duration::minutes(i64::from(minutes));
    // The window's last slot may be jittered to just under a minute past
    // it; then a little longer for its run to start.
    let wait = (last - now + chrono::Duration::seconds(65))
        .to_std()
        .unwrap_or_default();
    crate::say(&format!(
        "  {RUNNERS} runners listening; window {first} .. {last}, ending in {:.0} s",
        wait.as_secs_f64()
    ));
    let end = Instant::now() + wait;
    while Instant::now() < end {
        crate::check_abort()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    fleet.stop();
    let row = client.query_one(
        "SELECT count(*), count(DISTINCT (job, date_trunc('minute', due))) FROM public.bench_due \
         WHERE job LIKE 'cron\\_%' AND due >= $1 AND due < $2",
        &[&first, &last],
    )?;
    let runs: i64 = row.try_get(0)?;
    let distinct: i64 = row.try_get(1)?;
    let expected = jobs as i64 * i64::from(minutes);
    let rows = client.query(
        "SELECT extract(epoch FROM (started_at - due))::float8 * 1000 FROM public.bench_due \
         WHERE job LIKE 'cron\\_%' AND due >= $1 AND due < $2 ORDER BY run_id",
        &[&first, &last],
    )?;
    let samples = rows
        .iter()
        .map(|r| r.try_get::<_, f64>(0).map_err(Into::into))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let early = samples.iter().filter(|v| **v < 0.0).count();
    let per_runner: Vec<i64> = client
        .query(
            "SELECT count(*) FROM manage.runs r JOIN public.bench_due d ON d.run_id = r.id \
             WHERE d.due >= $1 AND d.due < $2 GROUP BY r.runner_id ORDER BY 1 DESC",
            &[&first, &last],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let label = format!("{jobs} cron jobs (jitter 60 s), {RUNNERS} runners, {minutes} min");
    bench.push(
        Figure::distribution(
            "cron_fleet.start_minus_due",
            &format!("{label}: start − due"),
            "ms",
            &samples,
        )
        .target(Target::at_most(50.0, "p99"))
        .target(Target::at_least(0.0, "min"))
        .note(format!(
            "declared `true` jobs, default runner settings, runner processes; due = next_run at claim (the slot plus its jitter, database clock); {early} early; runs per runner {per_runner:?}"
        )),
    );
    bench.push(
        Figure::value(
            "cron_fleet.duplicates",
            &format!("{label}: duplicate runs"),
            "runs",
            (runs - distinct) as f64,
        )
        .target(Target::at_most(0.0, "value"))
        .note("runs of the window − distinct (job, minute of the slot)"),
    );
    bench.push(
        Figure::value(
            "cron_fleet.missed",
            &format!("{label}: slots not run"),
            "slots",
            (expected - distinct) as f64,
        )
        .target(Target::at_most(0.0, "value"))
        .note(format!(
            "jobs × minutes ({expected}) − distinct (job, minute) run"
        )),
    );
    Ok(())
}
