//! Scenario 2: `manage scheduled_jobs_runner` as a child process with 50 jobs
//! scheduled in the future — its resident memory, CPU and wake-ups (context
//! switches of all its threads) over an idle window. The benchmark only reads
//! /proc at the window's edges (and RSS every 5 s), so it does not wake it.

use std::process::Child;
use std::time::{Duration, Instant};

use super::Bench;
use crate::inproc::wait_until;
use crate::procs;
use crate::stats::{Figure, Target};

struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let file = super::startup::fifty_jobs_config(bench, 48)?;
    let config = bench.server.config(
        Some(&file),
        &bench.work,
        &manage::registry::Registry::builtin_jobs(),
    )?;
    let registry = manage::registry::Registry::new(Some(&config));
    let mut client = bench.server.reset(&config, &registry)?;
    let log = bench.work.join("idle-runner.log");
    let child = bench.manage(Some(&file)).runner(&[], &log)?;
    let mut child = Reaper(child);
    let pid = child.0.id();
    wait_until(Duration::from_secs(60), "the runner to register", || {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM manage.runners WHERE pid = $1 AND stopped_at IS NULL",
                &[&(pid as i32)],
            )?
            .try_get(0)?;
        Ok(n > 0)
    })?;
    let future: i64 = client
        .query_one(
            "SELECT count(*) FROM manage.jobs WHERE NOT removed AND next_run > now() + interval '2 minutes'",
            &[],
        )?
        .try_get(0)?;
    drop(client);
    // Past its start-up (migrate, sync, first heartbeat and agenda).
    std::thread::sleep(Duration::from_secs(2));

    let window = Duration::from_secs(bench.pick(60, 10) as u64);
    let before = procs::counters(pid)?;
    let start = Instant::now();
    let mut rss = Vec::new();
    while start.elapsed() < window {
        crate::check_abort()?;
        let step = Duration::from_secs(5).min(window.saturating_sub(start.elapsed()));
        std::thread::sleep(step);
        rss.push(procs::memory_kib(pid)?.0 as f64 / 1024.0);
    }
    let after = procs::counters(pid)?;
    let elapsed = start.elapsed().as_secs_f64();
    let (_, hwm) = procs::memory_kib(pid)?;
    // After the window: the probe's own connection and query do not count.
    let connections: i64 = bench
        .server
        .connect()?
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
            &[&manage::runner::APPLICATION_NAME],
        )?
        .try_get(0)?;

    // SAFETY: kill with the pid of our own child and a valid signal.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    while child.0.try_wait()?.is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }

    let minutes = elapsed / 60.0;
    let voluntary = (after.voluntary - before.voluntary) as f64;
    let involuntary = (after.involuntary - before.involuntary) as f64;
    let cpu_pct = (after.cpu_ns - before.cpu_ns) as f64 / 1e9 / elapsed * 100.0;
    bench.push(
        Figure::distribution("idle.rss", "idle runner RSS (50 jobs)", "MiB", &rss)
            .target(Target::at_most(6.0, "median"))
            .note(format!(
                "VmRSS sampled every 5 s over {elapsed:.0} s; peak (VmHWM) {:.1} MiB; {} threads; {future} of 50 jobs due in more than 2 min",
                hwm as f64 / 1024.0,
                after.threads
            )),
    );
    bench.push(
        Figure::value(
            "idle.connections",
            "idle runner database connections",
            "connections",
            connections as f64,
        )
        .target(Target::at_most(2.0, "value"))
        .note("pg_stat_activity rows with the runner's application_name at the end of the window (§17)"),
    );
    bench.push(
        Figure::value("idle.cpu", "idle runner CPU", "%", cpu_pct)
            .note("CPU time of all threads (schedstat) over the window"),
    );
    bench.push(
        Figure::value(
            "idle.wakeups",
            "idle runner wake-ups",
            "per min",
            (voluntary + involuntary) / minutes,
        )
        .target(Target::at_most(7.0, "value"))
        .note(format!(
            "voluntary {voluntary:.0} + involuntary {involuntary:.0} context switches of all threads over {elapsed:.0} s; by thread: {}",
            after
                .per_thread_since(&before)
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    );
    Ok(())
}
