//! Scenario 7: `manage` beside pg_cron, in the same run, on the same server.
//!
//! When Debian's `postgresql-15-cron` is installed (`apt-get install
//! postgresql-15-cron`; the bench looks for `pg_cron.so` in the server's
//! library directory), the bench makes a private embedded cluster with
//! `shared_preload_libraries = 'pg_cron'`, `cron.database_name` = the
//! cluster's database, `cron.host` = its socket directory (pg_cron connects
//! to run each job, as with Debian's defaults) and `cron.max_running_jobs`
//! 32 (pg_cron's default), then 500 in the full run. It schedules 200 pg_cron
//! jobs `SELECT 1` with `* * * * *`: all 200 are due at the start of the next
//! minute. The figure is 200 / (last `end_time` − first `start_time`) from
//! `cron.job_run_details`, the same span `manage`'s figures use (first
//! `started_at` to last `finished_at`). On the same cluster, `manage` runs
//! the same burst: 200 SQL jobs (`SELECT 1`, a connection each, as pg_cron)
//! and 200 child-process jobs (`sh -c true`), at max_parallel 4 and 32.
//! Without pg_cron the scenario says so and is skipped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::throughput::declared;
use super::Bench;
use crate::server::Server;
use crate::stats::{Figure, Summary};

const JOBS: usize = 200;

/// Where the server's `pg_cron.so` would be, if installed.
fn pg_cron_library() -> Option<PathBuf> {
    let bin = manage::db::embedded::find_server_bin_dir(
        std::env::var_os("PATH").as_deref(),
        std::path::Path::new("/usr/lib/postgresql"),
    )?;
    // PATH may hold links to the server's tools (/usr/local/bin/pg_ctl).
    let bin = std::fs::canonicalize(bin.join("pg_ctl")).ok()?;
    let lib = bin.parent()?.parent()?.join("lib").join("pg_cron.so");
    lib.is_file().then_some(lib)
}

/// pg_cron's runs/s for one burst of JOBS jobs due at the next minute, and
/// its start − due (ms) of each run.
fn pg_cron_burst(client: &mut postgres::Client) -> anyhow::Result<(f64, Vec<f64>)> {
    client.batch_execute("TRUNCATE cron.job_run_details")?;
    let jobs: i64 = client
        .query_one("SELECT count(*) FROM cron.job", &[])?
        .try_get(0)?;
    if jobs == 0 {
        for i in 0..JOBS {
            client.execute(
                "SELECT cron.schedule($1, '* * * * *', 'SELECT 1')",
                &[&format!("peer_{i:03}")],
            )?;
        }
    }
    // The next minute boundary, by the database's clock; then wait for it.
    let wait: f64 = client
        .query_one(
            "SELECT extract(epoch FROM date_trunc('minute', clock_timestamp()) + interval '1 minute' - clock_timestamp())::float8",
            &[],
        )?
        .try_get(0)?;
    let until = Instant::now() + Duration::from_secs_f64(wait.max(0.0));
    crate::say(&format!(
        "  waiting {wait:.0} s for pg_cron's minute boundary"
    ));
    while Instant::now() < until {
        crate::check_abort()?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let limit = Instant::now() + Duration::from_secs(55);
    loop {
        crate::check_abort()?;
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM cron.job_run_details WHERE status IN ('succeeded', 'failed')",
                &[],
            )?
            .try_get(0)?;
        if done >= JOBS as i64 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < limit,
            "pg_cron finished {done} of {JOBS} runs within 55 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stop the next minute's burst before it starts.
    client.batch_execute("UPDATE cron.job SET active = false")?;
    let failed: i64 = client
        .query_one(
            "SELECT count(*) FROM cron.job_run_details WHERE status <> 'succeeded'",
            &[],
        )?
        .try_get(0)?;
    anyhow::ensure!(failed == 0, "{failed} pg_cron runs failed");
    let span: f64 = client
        .query_one(
            "SELECT extract(epoch FROM max(end_time) - min(start_time))::float8 FROM cron.job_run_details",
            &[],
        )?
        .try_get(0)?;
    let rows = client.query(
        "SELECT extract(epoch FROM start_time - date_trunc('minute', start_time))::float8 * 1000 \
         FROM cron.job_run_details",
        &[],
    )?;
    let lateness = rows
        .iter()
        .map(|r| r.try_get::<_, f64>(0))
        .collect::<Result<Vec<_>, _>>()?;
    client.batch_execute("UPDATE cron.job SET active = true")?;
    Ok((JOBS as f64 / span.max(1e-9), lateness))
}

/// Set pg_cron's `cron.max_running_jobs` (and enough connections for it),
/// and restart the cluster.
fn set_max_running(server: &mut Server, max_running: u32) -> anyhow::Result<()> {
    let mut client = server.connect()?;
    // pg_cron bounds max_running_jobs by max_connections as it was at
    // start-up: connections first, a restart, then the jobs, a restart.
    client.batch_execute(&format!(
        "ALTER SYSTEM SET max_connections = {}",
        max_running + 100
    ))?;
    drop(client);
    server.restart()?;
    let mut client = server.connect()?;
    client.batch_execute(&format!(
        "ALTER SYSTEM SET cron.max_running_jobs = {max_running}"
    ))?;
    drop(client);
    server.restart()
}

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let Some(library) = pg_cron_library() else {
        crate::say("  pg_cron is not installed (apt-get install postgresql-15-cron): skipped");
        bench.note(
            "7. peers: skipped, pg_cron is not installed (apt-get install postgresql-15-cron)",
        );
        return Ok(());
    };
    crate::say(&format!("  pg_cron found: {}", library.display()));
    let mut peers = Server::embedded(bench.work.join("peers-data"), bench.server.keep)?;
    {
        let mut client = peers.connect()?;
        let socket_dir: String = client
            .query_one("SHOW unix_socket_directories", &[])?
            .try_get(0)?;
        let database: String = client
            .query_one("SELECT current_database()", &[])?
            .try_get(0)?;
        // pg_cron's own settings are known only once it is loaded.
        client.batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_cron'")?;
        drop(client);
        peers.restart()?;
        let mut client = peers.connect()?;
        for setting in [
            format!("cron.database_name = '{database}'"),
            format!("cron.host = '{socket_dir}'"),
        ] {
            client.batch_execute(&format!("ALTER SYSTEM SET {setting}"))?;
        }
    }
    set_max_running(&mut peers, 32)?;
    let version: String = {
        let mut client = peers.connect()?;
        client.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_cron")?;
        client
            .query_one(
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'",
                &[],
            )?
            .try_get(0)?
    };

    // manage first, on the peers' cluster (pg_cron has no jobs yet).
    let reps = bench.pick(5, 1);
    let saved = std::mem::replace(&mut bench.server, peers);
    let ours = (|| -> anyhow::Result<Vec<(String, Vec<f64>)>> {
        let mut ours = Vec::new();
        for max_parallel in [4u32, 32] {
            let child = declared(
                bench,
                &format!("peers-children{max_parallel}"),
                "command = \"true\"",
                "benchchild",
                JOBS,
                reps,
                max_parallel,
            )?;
            ours.push((
                format!("child jobs (sh -c true), max_parallel {max_parallel}"),
                child.rates,
            ));
            let sql = declared(
                bench,
                &format!("peers-sql{max_parallel}"),
                "sql = \"SELECT 1\"",
                "benchsql",
                JOBS,
                reps,
                max_parallel,
            )?;
            ours.push((
                format!("SQL jobs (SELECT 1), max_parallel {max_parallel}"),
                sql.rates,
            ));
        }
        Ok(ours)
    })();
    let mut peers = std::mem::replace(&mut bench.server, saved);
    let ours = ours?;
    for (label, rates) in &ours {
        bench.push(
            Figure::distribution(
                &format!("peers.manage.{}", label.replace([' ', '(', ')', ','], "_")),
                &format!("manage: {JOBS} {label} due at once"),
                "runs/s",
                rates,
            )
            .note(format!("on the pg_cron cluster; median of {reps} bursts")),
        );
    }

    let mut theirs = Vec::new();
    let mut lateness = Vec::new();
    let settings: &[u32] = if bench.quick { &[32] } else { &[32, 500] };
    for &max_running in settings {
        if max_running != 32 {
            set_max_running(&mut peers, max_running)?;
        }
        let mut client = peers.connect()?;
        let mut rates = Vec::new();
        for _ in 0..bench.pick(2, 1) {
            let (rate, late) = pg_cron_burst(&mut client)?;
            rates.push(rate);
            if max_running == 32 {
                lateness.extend(late);
            }
        }
        theirs.push((max_running, rates));
    }
    peers.cleanup()?;

    let median = |v: &[f64]| Summary::of(v).map_or(0.0, |s| s.median);
    for (max_running, rates) in &theirs {
        bench.push(
            Figure::distribution(
                &format!("peers.pg_cron.max_running_{max_running}"),
                &format!("pg_cron {version}: {JOBS} jobs (SELECT 1) due at once, max_running_jobs {max_running}"),
                "runs/s",
                rates,
            )
            .note("cron.job_run_details: JOBS / (last end_time − first start_time); a libpq connection per run"),
        );
        for (label, rates) in &ours {
            let ratio = median(rates) / median(rates_or_one(rates_of(&theirs, *max_running)));
            bench.note(format!(
                "peers: manage {label} / pg_cron max_running_jobs {max_running}: {ratio:.2}×"
            ));
        }
    }
    bench.push(
        Figure::distribution(
            "peers.pg_cron.start_minus_due",
            &format!("pg_cron {version}: start − due, {JOBS} jobs due on the same minute"),
            "ms",
            &lateness,
        )
        .note("start_time − the minute it was due (its own clock), max_running_jobs 32"),
    );
    Ok(())
}

fn rates_of(theirs: &[(u32, Vec<f64>)], max_running: u32) -> &[f64] {
    theirs
        .iter()
        .find(|(m, _)| *m == max_running)
        .map_or(&[][..], |(_, r)| r.as_slice())
}

fn rates_or_one(rates: &[f64]) -> &[f64] {
    if rates.is_empty() {
        &[1.0]
    } else {
        rates
    }
}
