//! Scenario 5: throughput — many jobs due at once. Internal no-op jobs with
//! one and with two in-process runners (default max_parallel 4 each), and
//! declared `sh -c true` child-process jobs with max_parallel 4, and declared
//! `SELECT 1` SQL jobs (§12), 1,000 due at once. Runs per
//! second from the first `started_at` to the last `finished_at` (database
//! clock, as recorded); the benchmark polls a count every 100 ms meanwhile.

use std::time::Duration;

use manage::job::definition::{Builtin, BuiltinSchedule};
use manage::registry::Registry;

use super::Bench;
use crate::inproc::{self, wait_until, Runners};
use crate::stats::{Figure, Target};

/// Make every job of `app` due now and wake the runners, then wait for all of
/// them to finish; runs/s over [first start, last finish] of the new runs.
fn burst(client: &mut postgres::Client, app: &str, count: i64) -> anyhow::Result<f64> {
    let after: i64 = client
        .query_one("SELECT coalesce(max(id), 0) FROM manage.runs", &[])?
        .try_get(0)?;
    let mut tx = client.transaction()?;
    let n = tx.execute(
        "UPDATE manage.jobs SET next_run = clock_timestamp() WHERE app = $1",
        &[&app],
    )?;
    anyhow::ensure!(
        n as i64 == count,
        "expected {count} jobs of app {app}, found {n}"
    );
    tx.execute("SELECT pg_notify('manage_scheduled_jobs', '')", &[])?;
    tx.commit()?;
    let span = wait_for_burst(client, "", after, app, count)?;
    Ok(count as f64 / span.max(1e-9))
}

/// Poll (every 80 ms) until the `count` runs of `app` after run `after` have
/// all succeeded; their span in seconds, first start to last finish.
/// `mark` prefixes the query (a comment that tells the bench's statements
/// from the runners').
pub(super) fn wait_for_burst(
    client: &mut postgres::Client,
    mark: &str,
    after: i64,
    app: &str,
    count: i64,
) -> anyhow::Result<f64> {
    let sql = format!(
        "{mark} SELECT count(*) FILTER (WHERE r.state = 'succeeded'), count(*) FILTER (WHERE r.state NOT IN ('running', 'succeeded')), \
                extract(epoch FROM max(r.finished_at) - min(r.started_at))::float8 \
         FROM manage.runs r JOIN manage.jobs j ON j.name = r.job WHERE r.id > $1 AND j.app = $2"
    );
    let mut span = 0.0;
    wait_until(Duration::from_secs(600), "the burst to finish", || {
        std::thread::sleep(Duration::from_millis(80));
        let row = client.query_one(&sql, &[&after, &app])?;
        let done: i64 = row.try_get(0)?;
        let failed: i64 = row.try_get(1)?;
        anyhow::ensure!(failed == 0, "{failed} runs of the burst failed");
        span = row.try_get::<_, Option<f64>>(2)?.unwrap_or(0.0);
        Ok(done >= count)
    })?;
    Ok(span)
}

fn internal(
    bench: &mut Bench,
    runners: usize,
    jobs: usize,
    reps: usize,
) -> anyhow::Result<Vec<f64>> {
    let extra: Vec<&'static Builtin> = (0..jobs)
        .map(|i| inproc::noop_job(&format!("bench_t{i:04}"), BuiltinSchedule::Manual))
        .collect();
    let config = bench
        .server
        .config(None, &bench.work, &inproc::builtin_jobs(&extra))?;
    let registry = Registry::new(Some(&config)).with_builtins(extra.iter().copied());
    let mut client = bench.server.reset(&config, &registry)?;
    let started = Runners::start(runners, &config, &extra, &mut client)?;
    let result = (0..reps)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(300));
            burst(&mut client, "bench", jobs as i64)
        })
        .collect::<anyhow::Result<Vec<f64>>>();
    started.stop()?;
    result
}

fn children(
    bench: &mut Bench,
    jobs: usize,
    reps: usize,
    max_parallel: u32,
) -> anyhow::Result<Declared> {
    declared(
        bench,
        &format!("children{max_parallel}"),
        "command = \"true\"",
        "benchchild",
        jobs,
        reps,
        max_parallel,
    )
}

/// Declared SQL jobs (`SELECT 1`, §12): no process, a connection each.
fn sql_jobs(bench: &mut Bench, jobs: usize, reps: usize) -> anyhow::Result<Declared> {
    declared(
        bench,
        "sql",
        "sql = \"SELECT 1\"",
        "benchsql",
        jobs,
        reps,
        4,
    )
}

/// The runs/s of each burst, and the runner's database connections: the
/// most seen right after a burst, and after `idle_close` + 1 s with nothing
/// running (§17: an idle runner holds at most two).
pub(super) struct Declared {
    pub rates: Vec<f64>,
    busy_connections: i64,
    idle_connections: i64,
}

/// The database connections of in-process runners (their application name).
fn runner_connections(client: &mut postgres::Client) -> anyhow::Result<i64> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
            &[&manage::runner::APPLICATION_NAME],
        )?
        .try_get(0)?)
}

/// `jobs` declared jobs doing `what`, of app `app`, due at once `reps` times.
pub(super) fn declared(
    bench: &mut Bench,
    file: &str,
    what: &str,
    app: &str,
    jobs: usize,
    reps: usize,
    max_parallel: u32,
) -> anyhow::Result<Declared> {
    let file = bench.work.join(format!("{file}.toml"));
    let tables: Vec<String> = (0..jobs)
        .map(|i| format!("[jobs.{app}_{i:04}]\n{what}\napp = \"{app}\"\n"))
        .collect();
    super::write_config(&file, max_parallel, &tables)?;
    let config = bench
        .server
        .config(Some(&file), &bench.work, &Registry::builtin_jobs())?;
    let registry = Registry::new(Some(&config));
    let mut client = bench.server.reset(&config, &registry)?;
    let idle_close = config.runner.timings.idle_close;
    let started = Runners::start(1, &config, &[], &mut client)?;
    let result = (|| -> anyhow::Result<Declared> {
        let mut rates = Vec::new();
        let mut busy_connections = 0;
        for _ in 0..reps {
            std::thread::sleep(Duration::from_millis(300));
            rates.push(burst(&mut client, app, jobs as i64)?);
            busy_connections = busy_connections.max(runner_connections(&mut client)?);
        }
        // Only for the child-process runs at the largest max_parallel: the
        // wait is a minute.
        let mut idle_connections = -1;
        if max_parallel > 4 {
            let until = std::time::Instant::now() + idle_close + Duration::from_secs(1);
            while std::time::Instant::now() < until {
                crate::check_abort()?;
                std::thread::sleep(Duration::from_millis(250));
            }
            idle_connections = runner_connections(&mut client)?;
        }
        Ok(Declared {
            rates,
            busy_connections,
            idle_connections,
        })
    })();
    started.stop()?;
    result
}

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let jobs = bench.pick(1000, 200);
    let reps = bench.pick(5, 1);
    let one = internal(bench, 1, jobs, reps)?;
    bench.push(
        Figure::distribution(
            "throughput.internal_1",
            &format!("{jobs} internal no-op runs, 1 runner"),
            "runs/s",
            &one,
        )
        .target(Target::at_least(3000.0, "median"))
        .note(format!(
            "all due at once; in-process runner, max_parallel 4; median of {reps} bursts"
        )),
    );
    let two = internal(bench, 2, jobs, reps)?;
    let one_median = crate::stats::Summary::of(&one).map_or(0.0, |s| s.median);
    bench.push(
        Figure::distribution("throughput.internal_2", &format!("{jobs} internal no-op runs, 2 runners"), "runs/s", &two)
            .target(Target::at_least(one_median.max(3000.0), "median"))
            .note(format!("two in-process runners on one database, max_parallel 4 each; target: more than one runner ({} runs/s) and ≥ 3000", crate::stats::number(one_median))),
    );
    let child_jobs = bench.pick(200, 50);
    for max_parallel in [4u32, 32] {
        let child = children(bench, child_jobs, reps, max_parallel)?;
        bench.push(
            Figure::distribution(
                &format!("throughput.children_{max_parallel}"),
                &format!("{child_jobs} child-process runs (sh -c true), max_parallel {max_parallel}"),
                "runs/s",
                &child.rates,
            )
            .target(Target::at_least(1000.0, "median"))
            .note(format!(
                "declared jobs, max_parallel {max_parallel}, in-process runner; median of {reps} bursts; \
                 at most {} runner connections seen right after a burst",
                child.busy_connections
            )),
        );
        if child.idle_connections >= 0 {
            bench.push(
                Figure::value(
                    "idle.connections_after_burst",
                    &format!("runner connections, idle 61 s after bursts at max_parallel {max_parallel}"),
                    "connections",
                    child.idle_connections as f64,
                )
                .target(Target::at_most(2.0, "value"))
                .note("pg_stat_activity rows with the runner's application_name, idle_close (60 s) + 1 s after the last run ended (§17)"),
            );
        }
    }
    let sql = sql_jobs(bench, jobs, reps)?;
    bench.push(
        Figure::distribution(
            "throughput.sql",
            &format!("{jobs} SQL-job runs (SELECT 1)"),
            "runs/s",
            &sql.rates,
        )
        .target(Target::at_least(3000.0, "median"))
        .note(format!(
            "declared sql jobs, all due at once, max_parallel 4, in-process runner; median of {reps} bursts"
        )),
    );
    Ok(())
}
