//! Runners inside the benchmark's own process (`manage::runner::run` on a
//! thread), and the synthetic jobs they run: internal no-op jobs registered
//! with `Registry::with_builtins`, so that a figure measures the scheduler and
//! not a child process.
//!
//! A runner stops on SIGTERM; the benchmark sends it to itself, and every
//! in-process runner (each has its own signal_hook registration) shuts down.
//! The runner logs on stderr; `main` points fd 2 at a log file beforehand.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use manage::config::Config;
use manage::job::definition::{Builtin, BuiltinSchedule, JobContext};
use manage::registry::Registry;

fn noop(_ctx: &mut JobContext) -> anyhow::Result<()> {
    Ok(())
}

/// A leaked internal no-op job: `Builtin` holds `&'static` data, and a
/// benchmark makes a bounded number of them.
pub fn noop_job(name: &str, schedule: BuiltinSchedule) -> &'static Builtin {
    Box::leak(Box::new(Builtin {
        name: Box::leak(name.to_string().into_boxed_str()),
        app: "bench",
        description: "benchmark no-op",
        schedule,
        internal: true,
        timeout_secs: 120,
        trigger_next: &[],
        on_success: &[],
        on_failure: &[],
        overlap: manage::Overlap::Wait,
        runs_on: &[],
        notify: None,
        expect_success_within_secs: None,
        warn_after_secs: None,
        default_notify_on_success: false,
        delivers_mail: false,
        options: &[],
        should_run: None,
        run: noop,
    }))
}

/// A `times` schedule from owned strings.
pub fn leak_times(times: Vec<String>) -> BuiltinSchedule {
    let leaked: Vec<&'static str> = times
        .into_iter()
        .map(|t| &*Box::leak(t.into_boxed_str()))
        .collect();
    BuiltinSchedule::Times(Box::leak(leaked.into_boxed_slice()))
}

/// The built-in jobs `Config::load` must know: the shipped ones plus ours.
pub fn builtin_jobs(extra: &[&'static Builtin]) -> Vec<(&'static str, &'static [&'static str])> {
    let mut jobs = Registry::builtin_jobs();
    jobs.extend(extra.iter().map(|b| (b.name, b.trigger_next)));
    jobs
}

pub struct Runners {
    threads: Vec<JoinHandle<anyhow::Result<bool>>>,
}

impl Runners {
    /// Start `count` runners, each with its own registry, and wait until each
    /// is registered and listening.
    pub fn start(
        count: usize,
        config: &Config,
        extra: &[&'static Builtin],
        probe: &mut postgres::Client,
    ) -> anyhow::Result<Runners> {
        // As `manage scheduled_jobs_runner` is (process::orphans).
        let _ = manage::process::become_subreaper();
        let mut threads = Vec::new();
        for i in 0..count {
            let config = config.clone();
            let registry = Registry::new(Some(&config)).with_builtins(extra.iter().copied());
            let options = manage::runner::Options {
                once: false,
                // The first runner migrated and synced; the schema is fresh anyway.
                no_migrate: i > 0,
                log_format: manage::runner::LogFormat::Human,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("runner-{i}"))
                    .spawn(move || manage::runner::run(config, registry, options))
                    .context("starting a runner thread")?,
            );
            // One at a time: concurrent start-up syncs would only queue on the lock.
            wait_until(
                Duration::from_secs(60),
                "the runner to start listening",
                || {
                    let listening: i64 = probe
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND application_name = $1 \
                           AND query LIKE 'LISTEN%'",
                            &[&manage::runner::APPLICATION_NAME],
                        )?
                        .try_get(0)?;
                    Ok(listening > i as i64)
                },
            )?;
            if let Some(t) = threads.iter().find(|t| t.is_finished()) {
                anyhow::bail!("a runner stopped at start-up ({:?})", t.thread().name());
            }
        }
        // Let the start-up pass (agenda, first sleep) settle.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Runners { threads })
    }

    /// SIGTERM to ourselves; every in-process runner finishes and returns.
    pub fn stop(self) -> anyhow::Result<()> {
        // SAFETY: kill with our own pid and a valid signal number; the runners'
        // signal_hook handlers turn it into an event, so it does not kill us.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
        if rc != 0 {
            anyhow::bail!("kill(SIGTERM): {}", std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for thread in self.threads {
            while !thread.is_finished() {
                if Instant::now() > deadline {
                    anyhow::bail!("an in-process runner did not stop within 60 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            match thread.join() {
                Ok(result) => {
                    result.context("an in-process runner failed")?;
                }
                Err(_) => anyhow::bail!("an in-process runner panicked"),
            }
        }
        Ok(())
    }
}

/// Poll `done` every 20 ms until it says yes.
pub fn wait_until(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        crate::check_abort()?;
        if done()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {} s waiting for {what}", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
