//! Scenario 9: a fleet of runners on one database (issue 28).
//!
//! A private embedded cluster with `shared_preload_libraries =
//! 'pg_stat_statements'`. For 1, 2, 4 and 8 runners — `manage
//! scheduled_jobs_runner` processes, each with its own tag-less
//! configuration file, running declared `command = "true"` jobs; then the same
//! numbers of in-process runners running internal no-op jobs — the bench
//! makes all the jobs due at once and measures, per step:
//!
//! - runs/s: jobs / (last `finished_at` − first `started_at`);
//! - database time per run: the runners' `total_exec_time` in
//!   `pg_stat_statements` (reset before each burst) / runs;
//! - WAL bytes per run: `pg_current_wal_lsn()` after the burst minus before
//!   (taken after the bench's own `UPDATE` that makes the jobs due);
//! - duplicates: runs of the burst − distinct jobs (must be 0).
//!
//! Every statement of the bench itself carries the comment `fleet-bench`
//! and is left out of the database figures. After the 8-process bursts the
//! fleet stays idle (nothing due) for a window, and the runners' statements
//! in `pg_stat_statements` over it, scaled to a minute, are the idle
//! queries per minute.

use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use manage::job::definition::{Builtin, BuiltinSchedule};
use manage::registry::Registry;

use super::Bench;
use crate::inproc::{self, wait_until, Runners};
use crate::procs;
use crate::server::Server;
use crate::stats::{Figure, Target};

const MARK: &str = "/* fleet-bench */";
const FLEET: [usize; 4] = [1, 2, 4, 8];

/// What one burst cost.
#[derive(Debug, Clone, Copy, Default)]
struct Burst {
    rate: f64,
    db_ms_per_run: f64,
    wal_per_run: f64,
    /// Full-page images written per run (pg_stat_wal): WAL that a
    /// checkpoint, not the run, made necessary.
    fpi_per_run: f64,
    /// CPU time of all the server's processes, and of the runners, per run.
    server_cpu_ms_per_run: f64,
    runner_cpu_ms_per_run: f64,
    duplicates: i64,
}

/// Whose CPU time a burst counts: the server's processes (the postmaster's
/// children) and the runners (processes, or the bench itself).
struct Watched {
    postmaster: u32,
    /// The bench's own backend (its polls are not the runners' cost).
    bench_backend: u32,
    runners: Vec<u32>,
}

impl Watched {
    fn postmaster(server: &Server) -> anyhow::Result<u32> {
        let dir = server
            .data_dir()
            .context("the fleet runs on an embedded cluster")?;
        let pid = std::fs::read_to_string(dir.join("pg").join("postmaster.pid"))
            .context("reading postmaster.pid")?;
        pid.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .context("postmaster.pid has no pid")
    }

    /// CPU ns of (the server, the runners).
    fn cpu_ns(&self) -> (u64, u64) {
        let mut server = procs::counters(self.postmaster).map_or(0, |c| c.cpu_ns);
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                let ppid = stat
                    .rfind(')')
                    .and_then(|i| stat[i + 2..].split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(self.postmaster) && pid != self.bench_backend {
                    server += procs::counters(pid).map_or(0, |c| c.cpu_ns);
                }
            }
        }
        let runners = self
            .runners
            .iter()
            .map(|&pid| procs::counters(pid).map_or(0, |c| c.cpu_ns))
            .sum();
        (server, runners)
    }
}

/// The runners' statements since the last reset: (calls, total_exec_time ms).
fn runner_statements(client: &mut postgres::Client) -> anyhow::Result<(i64, f64)> {
    let row = client.query_one(
        &format!(
            "{MARK} SELECT coalesce(sum(calls), 0)::int8, coalesce(sum(total_exec_time), 0)::float8 \
             FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND query NOT LIKE '%fleet-bench%'"
        ),
        &[],
    )?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// The runners' busiest statements since the last reset, for a note.
fn top_statements(client: &mut postgres::Client, by: &str) -> anyhow::Result<String> {
    let rows = client.query(
        &format!(
            "{MARK} SELECT calls, total_exec_time::float8, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND query NOT LIKE '%fleet-bench%' ORDER BY {by} DESC LIMIT 4"
        ),
        &[],
    )?;
    let mut parts = Vec::new();
    for row in rows {
        let calls: i64 = row.try_get(0)?;
        let ms: f64 = row.try_get(1)?;
        let query: String = row.try_get(2)?;
        parts.push(format!("{calls}× {ms:.0} ms {query}"));
    }
    Ok(parts.join("; "))
}

fn backend_pid(client: &mut postgres::Client) -> anyhow::Result<u32> {
    let pid: i32 = client
        .query_one(&format!("{MARK} SELECT pg_backend_pid()"), &[])?
        .try_get(0)?;
    Ok(pid.unsigned_abs())
}

fn reset_statements(client: &mut postgres::Client) -> anyhow::Result<()> {
    client.batch_execute(&format!("{MARK} SELECT pg_stat_statements_reset()"))?;
    Ok(())
}

/// Make every job of `app` due, reset the statistics, wake the runners and
/// wait until each job has run; the burst's figures.
fn burst(
    client: &mut postgres::Client,
    app: &str,
    count: i64,
    watched: &Watched,
) -> anyhow::Result<Burst> {
    let after: i64 = client
        .query_one(
            &format!("{MARK} SELECT coalesce(max(id), 0) FROM manage.runs"),
            &[],
        )?
        .try_get(0)?;
    // Due, but no NOTIFY yet: the runners sleep until the heartbeat.
    let n = client.execute(
        &format!("{MARK} UPDATE manage.jobs SET next_run = clock_timestamp() WHERE app = $1"),
        &[&app],
    )?;
    anyhow::ensure!(
        n as i64 == count,
        "expected {count} jobs of app {app}, found {n}"
    );
    // Every burst starts after a checkpoint: its full-page images are then
    // the same for any number of runners.
    client.batch_execute(&format!("{MARK} CHECKPOINT"))?;
    reset_statements(client)?;
    let row = client.query_one(
        &format!("{MARK} SELECT pg_current_wal_lsn()::text, wal_fpi FROM pg_stat_wal"),
        &[],
    )?;
    let wal_before: String = row.try_get(0)?;
    let fpi_before: i64 = row.try_get(1)?;
    let cpu_before = watched.cpu_ns();
    client.batch_execute(&format!(
        "{MARK} SELECT pg_notify('manage_scheduled_jobs', '')"
    ))?;
    let span = super::throughput::wait_for_burst(client, MARK, after, app, count)?;
    // Everything recorded: the statistics and the WAL of the burst.
    let cpu_after = watched.cpu_ns();
    let (_, exec_ms) = runner_statements(client)?;
    let row = client.query_one(
        &format!(
            "{MARK} SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8, \
                    (SELECT wal_fpi FROM pg_stat_wal), \
                    (SELECT count(*) - count(DISTINCT job) FROM manage.runs WHERE id > $2)"
        ),
        &[&wal_before, &after],
    )?;
    let wal: f64 = row.try_get(0)?;
    let fpi: i64 = row.try_get(1)?;
    let duplicates: i64 = row.try_get(2)?;
    let runs = count as f64;
    crate::say(&format!(
        "    slowest: {}",
        top_statements(client, "total_exec_time")?
    ));
    Ok(Burst {
        rate: runs / span.max(1e-9),
        db_ms_per_run: exec_ms / runs,
        wal_per_run: wal / runs,
        fpi_per_run: (fpi - fpi_before) as f64 / runs,
        server_cpu_ms_per_run: cpu_after.0.saturating_sub(cpu_before.0) as f64 / 1e6 / runs,
        runner_cpu_ms_per_run: cpu_after.1.saturating_sub(cpu_before.1) as f64 / 1e6 / runs,
        duplicates,
    })
}

/// Runner processes, stopped (SIGTERM, then SIGKILL) when dropped.
pub(super) struct Processes(Vec<Child>);

impl Processes {
    pub(super) fn stop(&mut self) {
        for child in &self.0 {
            // SAFETY: kill with the pid of our own child and a valid signal.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for child in &mut self.0 {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.0.clear();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `count` runner processes, each with its own configuration file (the same
/// jobs, no tags), started one after the other until each listens.
pub(super) fn start_processes(
    bench: &Bench,
    count: usize,
    text: &str,
    client: &mut postgres::Client,
) -> anyhow::Result<Processes> {
    let mut children = Processes(Vec::new());
    for i in 0..count {
        let file = bench.work.join(format!("fleet-runner-{i}.toml"));
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        let log = bench.work.join(format!("fleet-runner-{i}.log"));
        let child = bench.manage(Some(&file)).runner(&["--no-migrate"], &log)?;
        children.0.push(child);
        wait_until(Duration::from_secs(60), "a runner to listen", || {
            let listening: i64 = client
                .query_one(
                    &format!(
                        "{MARK} SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND application_name = $1 AND query LIKE 'LISTEN%'"
                    ),
                    &[&manage::runner::APPLICATION_NAME],
                )?
                .try_get(0)?;
            Ok(listening > i as i64)
        })?;
    }
    std::thread::sleep(Duration::from_millis(300));
    Ok(children)
}

/// A per-run figure: key, what, unit, the value of a burst, and its note.
type PerRun = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Burst) -> f64,
    &'static str,
);

/// The fleet's figures for one kind of job: per runner count, the bursts.
type Steps = Vec<(usize, Vec<Burst>)>;

/// Child-process jobs on runner processes; and, with the 8 processes, the
/// idle window: (runner statements per minute, the busiest ones).
fn processes(bench: &mut Bench, jobs: usize, reps: usize) -> anyhow::Result<(Steps, f64, String)> {
    let mut text = String::from("[runner]\nmax_parallel = 4\n\n");
    for i in 0..jobs {
        text.push_str(&format!(
            "[jobs.fleet_{i:05}]\ncommand = \"true\"\napp = \"fleet\"\n\n"
        ));
    }
    let file = bench.work.join("fleet.toml");
    std::fs::write(&file, &text).with_context(|| format!("writing {}", file.display()))?;
    let config = bench
        .server
        .config(Some(&file), &bench.work, &Registry::builtin_jobs())?;
    let registry = Registry::new(Some(&config));
    let mut steps = Vec::new();
    let mut idle = (0.0, String::new());
    for &count in &FLEET {
        let mut client = bench.server.reset(&config, &registry)?;
        let mut fleet = start_processes(bench, count, &text, &mut client)?;
        let watched = Watched {
            postmaster: Watched::postmaster(&bench.server)?,
            bench_backend: backend_pid(&mut client)?,
            runners: fleet.0.iter().map(Child::id).collect(),
        };
        let mut bursts = Vec::new();
        for _ in 0..reps {
            std::thread::sleep(Duration::from_millis(300));
            bursts.push(burst(&mut client, "fleet", jobs as i64, &watched)?);
        }
        if count == 8 {
            std::thread::sleep(Duration::from_secs(1));
            let window = Duration::from_secs(bench.pick(60, 20) as u64);
            reset_statements(&mut client)?;
            let start = Instant::now();
            while start.elapsed() < window {
                crate::check_abort()?;
                std::thread::sleep(Duration::from_millis(250));
            }
            let (calls, _) = runner_statements(&mut client)?;
            let minutes = start.elapsed().as_secs_f64() / 60.0;
            let hot = client.query_one(
                &format!(
                    "{MARK} SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables \
                     WHERE schemaname = 'manage' AND relname = 'runners'"
                ),
                &[],
            )?;
            let (updates, hot): (i64, i64) = (hot.try_get(0)?, hot.try_get(1)?);
            idle = (
                calls as f64 / minutes,
                format!(
                    "{}; manage.runners updates since the reset of the schema: {updates}, HOT: {hot}",
                    top_statements(&mut client, "calls")?
                ),
            );
        }
        fleet.stop();
        crate::say(&format!("  {count} runner process(es): {bursts:?}"));
        steps.push((count, bursts));
    }
    Ok((steps, idle.0, idle.1))
}

/// Internal no-op jobs on in-process runners.
fn internal(bench: &mut Bench, jobs: usize, reps: usize) -> anyhow::Result<Steps> {
    let extra: Vec<&'static Builtin> = (0..jobs)
        .map(|i| inproc::noop_job(&format!("fleet_i{i:05}"), BuiltinSchedule::Manual))
        .collect();
    let config = bench
        .server
        .config(None, &bench.work, &inproc::builtin_jobs(&extra))?;
    let registry = Registry::new(Some(&config)).with_builtins(extra.iter().copied());
    let mut steps = Vec::new();
    for &count in &FLEET {
        let mut client = bench.server.reset(&config, &registry)?;
        let runners = Runners::start(count, &config, &extra, &mut client)?;
        let watched = Watched {
            postmaster: Watched::postmaster(&bench.server)?,
            bench_backend: backend_pid(&mut client)?,
            runners: vec![std::process::id()],
        };
        let bursts = (0..reps)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(300));
                burst(&mut client, "bench", jobs as i64, &watched)
            })
            .collect::<anyhow::Result<Vec<Burst>>>();
        runners.stop()?;
        let bursts = bursts?;
        crate::say(&format!("  {count} in-process runner(s): {bursts:?}"));
        steps.push((count, bursts));
    }
    Ok(steps)
}

/// A cluster of our own with pg_stat_statements loaded.
fn cluster(bench: &Bench) -> anyhow::Result<Server> {
    let mut server = Server::embedded(bench.work.join("fleet-data"), bench.server.keep)?;
    let mut client = server.connect()?;
    client.batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")?;
    drop(client);
    server.restart()?;
    server
        .connect()?
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")?;
    Ok(server)
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    crate::stats::Summary::of(&v).map_or(0.0, |s| s.median)
}

fn push_steps(bench: &mut Bench, kind: &str, label: &str, jobs: usize, steps: &Steps) {
    let at = |n: usize, f: fn(&Burst) -> f64| {
        steps
            .iter()
            .find(|(c, _)| *c == n)
            .map_or(0.0, |(_, b)| median(b.iter().map(f)))
    };
    let mut best_rate: f64 = 0.0;
    for (count, bursts) in steps {
        let rates: Vec<f64> = bursts.iter().map(|b| b.rate).collect();
        let rate = median(rates.iter().copied());
        bench.push(
            Figure::distribution(
                &format!("fleet.{kind}.runs_per_s_{count}"),
                &format!("{jobs} {label} due at once, {count} runner(s)"),
                "runs/s",
                &rates,
            )
            .target(Target::at_least(best_rate, "median"))
            .note("target: not below the figure with fewer runners"),
        );
        best_rate = best_rate.max(rate);
        let per_run: [PerRun; 3] = [
            ("db_ms", "database time", "ms", |b| b.db_ms_per_run,
             "pg_stat_statements total_exec_time of the runners' statements / runs (wall time in the server, so it includes waiting for a core)"),
            ("wal", "WAL", "bytes", |b| b.wal_per_run,
             "pg_current_wal_lsn() after − before the burst (after a CHECKPOINT and the bench's UPDATE) / runs"),
            ("server_cpu_ms", "server CPU", "ms", |b| b.server_cpu_ms_per_run,
             "CPU time (schedstat) of all the server's processes over the burst / runs: the database's work, without the queueing for a core that total_exec_time includes"),
        ];
        for (key, what, unit, f, note) in per_run {
            bench.push(
                Figure::distribution(
                    &format!("fleet.{kind}.{key}_per_run_{count}"),
                    &format!("{label}, {count} runner(s): {what} per run"),
                    unit,
                    &bursts.iter().map(f).collect::<Vec<_>>(),
                )
                .target(Target::at_most(at(1, f) * 1.2, "median"))
                .note(format!("{note}; target 1.2× the 1-runner figure")),
            );
        }
        bench.push(
            Figure::distribution(
                &format!("fleet.{kind}.runner_cpu_ms_per_run_{count}"),
                &format!("{label}, {count} runner(s): runner CPU per run"),
                "ms",
                &bursts.iter().map(|b| b.runner_cpu_ms_per_run).collect::<Vec<_>>(),
            )
            .note(format!(
                "CPU time of the runner processes (in-process runners: of the whole bench) / runs; full-page images per run {:.2}",
                median(bursts.iter().map(|b| b.fpi_per_run))
            )),
        );
        bench.push(
            Figure::value(
                &format!("fleet.{kind}.duplicates_{count}"),
                &format!("{label}, {count} runner(s): duplicate runs"),
                "runs",
                bursts.iter().map(|b| b.duplicates as f64).sum(),
            )
            .target(Target::at_most(0.0, "value"))
            .note("runs of the bursts − distinct jobs, summed over the bursts"),
        );
    }
}

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let jobs = bench.pick(1000, 300);
    let reps = bench.pick(3, 1);
    let fleet = cluster(bench)?;
    let saved = std::mem::replace(&mut bench.server, fleet);
    let result = (|| -> anyhow::Result<(Steps, f64, String, Steps)> {
        let (children, idle, top) = processes(bench, jobs, reps)?;
        let internal = internal(bench, jobs, reps)?;
        Ok((children, idle, top, internal))
    })();
    let mut fleet = std::mem::replace(&mut bench.server, saved);
    fleet.cleanup()?;
    let (children, idle, top, internal) = result?;
    push_steps(
        bench,
        "children",
        "child-process jobs (true), runner processes",
        jobs,
        &children,
    );
    push_steps(
        bench,
        "internal",
        "internal no-op jobs, in-process runners",
        jobs,
        &internal,
    );
    let heartbeats = 60.0 / manage::timings::Timings::default().heartbeat.as_secs_f64();
    let window = bench.pick(60, 20);
    bench.push(
        Figure::value(
            "fleet.idle_queries_per_min",
            &format!("idle fleet, 8 runners, {jobs} jobs: database queries"),
            "per min",
            idle,
        )
        .target(Target::at_most(8.0 * (heartbeats + 1.0), "value"))
        .note(format!(
            "pg_stat_statements calls of the runners over {window} s, scaled to a minute; target 8 × ({heartbeats:.0} heartbeats + 1); busiest: {top}"
        )),
    );
    Ok(())
}
