//! Scenarios 3 and 4: how soon a run starts — after `manage.trigger_job`
//! commits, and after the instant it was due. Both ends come from the
//! database clock: a trigger on `manage.runs` (installed for these scenarios
//! only) copies the job's `next_run` — the due instant, which the claim leaves
//! as it is — beside each new run's `started_at`. It fires after the claim's
//! `clock_timestamp()`, so it adds nothing to the run it measures.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use postgres::fallible_iterator::FallibleIterator;

use manage::job::definition::BuiltinSchedule;

use super::Bench;
use crate::inproc::{self, Runners};
use crate::stats::{Figure, Target};

pub(super) const CAPTURE: &str = "
CREATE TABLE public.bench_due (run_id bigint PRIMARY KEY, job text NOT NULL, due timestamptz, started_at timestamptz NOT NULL);
CREATE OR REPLACE FUNCTION public.bench_capture_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.bench_due (run_id, job, due, started_at)
    SELECT NEW.id, NEW.job, j.next_run, NEW.started_at FROM manage.jobs j WHERE j.name = NEW.job;
    RETURN NULL;
END $$;
CREATE TRIGGER bench_capture_due AFTER INSERT ON manage.runs
    FOR EACH ROW EXECUTE FUNCTION public.bench_capture_due();
";

/// (started_at − due) in ms of the captured runs of jobs matching `pattern`,
/// in run order, skipping the first `skip`.
fn lateness(client: &mut postgres::Client, pattern: &str, skip: i64) -> anyhow::Result<Vec<f64>> {
    let rows = client.query(
        "SELECT extract(epoch FROM (started_at - due))::float8 * 1000 FROM public.bench_due \
         WHERE job LIKE $1 AND due IS NOT NULL ORDER BY run_id OFFSET $2",
        &[&pattern, &skip],
    )?;
    rows.iter()
        .map(|r| r.try_get::<_, f64>(0).map_err(Into::into))
        .collect()
}

/// Scenario 3: sequential triggers of an internal no-op job through
/// `SELECT manage.trigger_job(..)`, each waiting for the run to finish.
pub fn trigger(bench: &mut Bench) -> anyhow::Result<()> {
    let job = inproc::noop_job("bench_noop", BuiltinSchedule::Manual);
    let extra = [job];
    let config = bench
        .server
        .config(None, &bench.work, &inproc::builtin_jobs(&extra))?;
    let registry = manage::registry::Registry::new(Some(&config)).with_builtins(extra);
    let mut probe = bench.server.reset(&config, &registry)?;
    probe
        .batch_execute(CAPTURE)
        .context("installing the capture trigger")?;
    let runners = Runners::start(1, &config, &extra, &mut probe)?;

    let warmup = 5;
    let count = bench.pick(250, 30);
    let result = (|| -> anyhow::Result<()> {
        probe.batch_execute("LISTEN manage_scheduled_jobs")?;
        for i in 0..warmup + count {
            crate::check_abort()?;
            // Let the runner go back to sleep: we measure a sleeping runner's wake-up.
            std::thread::sleep(Duration::from_millis(20));
            probe.execute("SELECT manage.trigger_job('bench_noop')", &[])?;
            // Our own NOTIFY arrives with the reply; drop it before waiting.
            let _ = probe.notifications().iter().count();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let finished: i64 = probe
                    .query_one(
                        "SELECT count(*) FROM manage.runs WHERE job = 'bench_noop' AND state <> 'running'",
                        &[],
                    )?
                    .try_get(0)?;
                if finished > i as i64 {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "trigger {i}: the run did not finish in 30 s"
                );
                // The record transaction NOTIFYs; wait for it (or re-check after 1 s).
                let _ = probe
                    .notifications()
                    .timeout_iter(Duration::from_secs(1))
                    .next()?;
            }
        }
        Ok(())
    })();
    runners.stop()?;
    result?;
    let samples = lateness(&mut probe, "bench_noop", warmup as i64)?;
    bench.push(
        Figure::distribution("latency.trigger_to_start", "trigger_job commit → started_at", "ms", &samples)
            .target(Target::at_most(1.0, "median"))
            .target(Target::at_most(5.0, "p99"))
            .note("in-process runner (manage::runner::run), internal no-op job; next_run set by trigger_job → the run's started_at, both database clock; includes the commit and the NOTIFY's delivery"),
    );
    Ok(())
}

/// Scenario 4: interval jobs of 1 s and a times job with a slot every second.
pub fn due(bench: &mut Bench) -> anyhow::Result<()> {
    let window = bench.pick(50, 10) as i64;
    let mut probe = bench.server.connect()?;
    // Slots from 3 s from now, one a second, in UTC (the benchmark's zone).
    let now: chrono::DateTime<chrono::Utc> = probe
        .query_one("SELECT clock_timestamp()", &[])?
        .try_get(0)?;
    let times: Vec<String> = (0..window)
        .map(|s| {
            (now + chrono::Duration::seconds(3 + s))
                .format("%H:%M:%S")
                .to_string()
        })
        .collect();
    let mut extra: Vec<&'static manage::job::definition::Builtin> = (1..=4)
        .map(|i| {
            inproc::noop_job(
                &format!("bench_interval_{i}"),
                BuiltinSchedule::Interval("00:01"),
            )
        })
        .collect();
    extra.push(inproc::noop_job("bench_times", inproc::leak_times(times)));
    let config = bench
        .server
        .config(None, &bench.work, &inproc::builtin_jobs(&extra))?;
    let registry =
        manage::registry::Registry::new(Some(&config)).with_builtins(extra.iter().copied());
    drop(probe);
    let mut probe = bench.server.reset(&config, &registry)?;
    probe
        .batch_execute(CAPTURE)
        .context("installing the capture trigger")?;
    let runners = Runners::start(1, &config, &extra, &mut probe)?;
    let result = (|| -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(window as u64 + 4);
        while Instant::now() < end {
            crate::check_abort()?;
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    })();
    runners.stop()?;
    result?;
    let interval = lateness(&mut probe, "bench_interval_%", 0)?;
    let times = lateness(&mut probe, "bench_times", 0)?;
    let all: Vec<f64> = interval.iter().chain(&times).copied().collect();
    let early = all.iter().filter(|v| **v < 0.0).count();
    for (key, label, samples) in [
        (
            "latency.due_interval",
            "start − due, interval 1 s jobs",
            &interval,
        ),
        ("latency.due_times", "start − due, times job", &times),
        ("latency.due_all", "start − due, all", &all),
    ] {
        let early_here = samples.iter().filter(|v| **v < 0.0).count();
        bench.push(
            Figure::distribution(key, label, "ms", samples)
                .target(Target::at_most(5.0, "p99"))
                .target(Target::at_least(0.0, "min"))
                .note(format!(
                    "in-process runner; due = next_run at claim (database clock); {early_here} early"
                )),
        );
    }
    bench.note(format!(
        "start − due: {} runs ({} interval, {} times), {early} started before they were due",
        all.len(),
        interval.len(),
        times.len()
    ));
    Ok(())
}

/// Scenario 4, second part: ten declared child-process jobs (`sh -c true`)
/// sharing one `times` list with a slot every second, so that ten are due on
/// the same second, each second; max_parallel 32 so that none waits for a slot.
pub fn due_children(bench: &mut Bench) -> anyhow::Result<()> {
    let window = bench.pick(30, 8) as i64;
    let mut probe = bench.server.connect()?;
    let now: chrono::DateTime<chrono::Utc> = probe
        .query_one("SELECT clock_timestamp()", &[])?
        .try_get(0)?;
    drop(probe);
    let times: Vec<String> = (0..window)
        .map(|s| {
            format!(
                "\"{}\"",
                (now + chrono::Duration::seconds(4 + s)).format("%H:%M:%S")
            )
        })
        .collect();
    let tables: Vec<String> = (0..10)
        .map(|i| {
            format!(
                "[jobs.benchdue_{i:02}]\ncommand = \"true\"\napp = \"benchdue\"\ntimes = [{}]\n",
                times.join(", ")
            )
        })
        .collect();
    let file = bench.work.join("due-children.toml");
    super::write_config(&file, 32, &tables)?;
    let config = bench.server.config(
        Some(&file),
        &bench.work,
        &manage::registry::Registry::builtin_jobs(),
    )?;
    let registry = manage::registry::Registry::new(Some(&config));
    let mut probe = bench.server.reset(&config, &registry)?;
    probe
        .batch_execute(CAPTURE)
        .context("installing the capture trigger")?;
    let runners = Runners::start(1, &config, &[], &mut probe)?;
    let result = (|| -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(window as u64 + 5);
        while Instant::now() < end {
            crate::check_abort()?;
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    })();
    runners.stop()?;
    result?;
    let samples = lateness(&mut probe, "benchdue_%", 0)?;
    let early = samples.iter().filter(|v| **v < 0.0).count();
    bench.push(
        Figure::distribution(
            "latency.due_children",
            "start − due, 10 child jobs due on the same second",
            "ms",
            &samples,
        )
        .target(Target::at_most(10.0, "p99"))
        .target(Target::at_least(0.0, "min"))
        .note(format!(
            "declared jobs (sh -c true), one times list with a slot every second for {window} s, max_parallel 32, in-process runner; due = next_run at claim; {early} early"
        )),
    );
    Ok(())
}
