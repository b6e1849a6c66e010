//! A job written in Rust (§22), as an application describes it: [`Job`],
//! handed to a `Suite` (`crate::Suite`) that turns a list of them into the
//! whole `manage` command line.
//!
//! A job is a value built in a few chained calls — its name and function,
//! then what differs from the defaults — and is registered exactly as the
//! shipped jobs under `commands/` are: `Suite::new()` starts with those, and
//! each `.job(…)` adds one. Nothing is checked while the value is built, so
//! the chain never returns a `Result`; `Suite::main` checks every job first
//! and refuses a bad one with an `error:` line and exit code 2, before any
//! command runs, as it refuses a bad configuration file.
//!
//! A job lives as long as the program: its definition is handed to the rest
//! of the crate as `&'static` (leaked once, at start-up), the way the shipped
//! jobs are statics.

use std::time::Duration;

use crate::job::definition::{Builtin, BuiltinSchedule, JobContext, JobOption, ShouldRun};

/// What a job's function is given: see [`JobContext`].
pub type Context<'a> = JobContext<'a>;

/// A job's function: it succeeds or fails with an error (the run's
/// output ends with `error: …`, and the run is `failed`).
pub type RunFn = fn(&mut Context) -> anyhow::Result<()>;

/// A job's cheap first phase (`should_run`): whether there is anything to do.
pub type ShouldRunFn = fn(&mut Context) -> anyhow::Result<ShouldRun>;

/// A job written in Rust, ready to register with `Suite::job`.
///
/// The defaults are the SPEC's (§2): app `"app"`, no description (the name
/// is shown), no schedule (run only by hand, `run-now` or `trigger_next`),
/// run as a child process (`manage NAME`), timeout 30 minutes.
///
/// ```
/// use manage::{Job, ShouldRun};
///
/// let job = Job::new("refresh_totals", |ctx| {
///     ctx.client.batch_execute("SELECT 1")?;
///     writeln!(ctx.out, "refreshed")?;
///     Ok(())
/// })
/// .app("reports")
/// .description("Refresh the daily totals")
/// .interval("00:15:00")
/// .internal(true)
/// .timeout(std::time::Duration::from_secs(120))
/// .should_run(|_ctx| Ok(ShouldRun::Run))
/// .trigger_next(&["send_report"]);
/// assert_eq!(job.name(), "refresh_totals");
/// ```
#[derive(Clone)]
pub struct Job {
    name: String,
    app: String,
    description: String,
    schedule: Schedule,
    internal: bool,
    timeout: Duration,
    trigger_next: Vec<String>,
    on_success: Vec<String>,
    on_failure: Vec<String>,
    overlap: super::Overlap,
    runs_on: Vec<String>,
    notify: Option<Vec<String>>,
    expect_success_within: Option<Duration>,
    warn_after: Option<Duration>,
    notify_on_success: bool,
    delivers_mail: bool,
    options: Vec<JobOption>,
    should_run: Option<ShouldRunFn>,
    run: RunFn,
}

/// A job's schedule as written; parsed when the suite starts.
#[derive(Clone, Debug)]
enum Schedule {
    Manual,
    Times(Vec<String>),
    Interval(String),
    Cron(String),
}

impl Job {
    /// A job named `name` (`[a-z][a-z0-9_]*`, at most 100 characters, not a
    /// command's name) that runs `run`.
    pub fn new(name: &str, run: RunFn) -> Job {
        Job {
            name: name.to_string(),
            app: "app".to_string(),
            description: String::new(),
            schedule: Schedule::Manual,
            internal: false,
            timeout: Duration::from_secs(u64::from(crate::config::DEFAULT_TIMEOUT_SECS)),
            trigger_next: Vec::new(),
            on_success: Vec::new(),
            on_failure: Vec::new(),
            overlap: super::Overlap::Wait,
            runs_on: Vec::new(),
            notify: None,
            expect_success_within: None,
            warn_after: None,
            notify_on_success: false,
            delivers_mail: false,
            options: Vec::new(),
            should_run: None,
            run,
        }
    }

    /// The job's name, as `manage NAME` runs it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The application it belongs to (shown by `jobs list`, filtered on by the web page).
    pub fn app(mut self, app: &str) -> Job {
        self.app = app.to_string();
        self
    }

    /// What the job does, in a few words: the subject of its mails.
    pub fn description(mut self, description: &str) -> Job {
        self.description = description.to_string();
        self
    }

    /// Run at these times of day (`"HH:MM"`), in the configured time zone.
    pub fn times(mut self, times: &[&str]) -> Job {
        self.schedule = Schedule::Times(times.iter().map(|t| t.to_string()).collect());
        self
    }

    /// Run every `interval` (`"HH:MM[:SS]"`), counted from the last run.
    pub fn interval(mut self, interval: &str) -> Job {
        self.schedule = Schedule::Interval(interval.to_string());
        self
    }

    /// Run on a cron expression's slots (§11), in the configured time zone.
    pub fn cron(mut self, expression: &str) -> Job {
        self.schedule = Schedule::Cron(expression.to_string());
        self
    }

    /// Run inside the runner's process, on its connection (true), or as the
    /// child process `manage NAME` (false, the default).
    pub fn internal(mut self, internal: bool) -> Job {
        self.internal = internal;
        self
    }

    /// How long a run may take before it is stopped and recorded `timed_out`
    /// (whole seconds, at least one).
    pub fn timeout(mut self, timeout: Duration) -> Job {
        self.timeout = timeout;
        self
    }

    /// The cheap first phase: when it says [`ShouldRun::Skip`], the slot is
    /// skipped and nothing is recorded as a run.
    pub fn should_run(mut self, should_run: ShouldRunFn) -> Job {
        self.should_run = Some(should_run);
        self
    }

    /// The jobs to schedule at once when a run of this one ends, whatever
    /// its outcome.
    pub fn trigger_next(mut self, jobs: &[&str]) -> Job {
        self.trigger_next = jobs.iter().map(|j| j.to_string()).collect();
        self
    }

    /// The jobs to schedule at once when a run of this one succeeds (after
    /// its retries, if it has any; §21).
    pub fn on_success(mut self, jobs: &[&str]) -> Job {
        self.on_success = jobs.iter().map(|j| j.to_string()).collect();
        self
    }

    /// The jobs to schedule at once when a run of this one fails, times
    /// out or is interrupted — once its last retry has (§21).
    pub fn on_failure(mut self, jobs: &[&str]) -> Job {
        self.on_failure = jobs.iter().map(|j| j.to_string()).collect();
        self
    }

    /// What a slot that comes while the job still runs does (§21): wait
    /// for the run (the default), be skipped, or replace the run. The
    /// operator may change it with `jobs configure --overlap`.
    pub fn overlap(mut self, overlap: super::Overlap) -> Job {
        self.overlap = overlap;
        self
    }

    /// Run only on runners that have every one of these tags (§19: a
    /// runner's `--tag`, `runner.tags`); the operator may change it with
    /// `jobs configure --runs-on`.
    pub fn runs_on(mut self, tags: &[&str]) -> Job {
        self.runs_on = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    /// Send this job's alerts to these instead of `notifications.email`
    /// (§20): mail addresses and `webhook:NAME`s of configured webhooks; an
    /// empty list is nobody. The operator may change it with `jobs
    /// configure --notify`.
    pub fn notify(mut self, recipients: &[&str]) -> Job {
        self.notify = Some(recipients.iter().map(|r| r.to_string()).collect());
        self
    }

    /// The dead-man alert (§20): one alert when the job has not succeeded
    /// for longer than this, whatever the reason (failing, skipped,
    /// disabled, held, no runner); the next success sends a recovery.
    /// Whole seconds, at least one.
    pub fn expect_success_within(mut self, within: Duration) -> Job {
        self.expect_success_within = Some(within);
        self
    }

    /// The slow-run warning (§20): one alert when a run is still going
    /// after this long, with its output so far; the run goes on. Whole
    /// seconds, at least one, less than the timeout.
    pub fn warn_after(mut self, after: Duration) -> Job {
        self.warn_after = Some(after);
        self
    }

    /// Mail a success too, not only failures (the default is false; the
    /// operator may change it with `jobs configure`).
    pub fn notify_on_success(mut self, notify: bool) -> Job {
        self.notify_on_success = notify;
        self
    }

    /// An option of `manage NAME`: `--LONG N`, a whole number from 0 to
    /// `max`, read in the job with [`JobContext::option`].
    pub fn option(
        mut self,
        long: &'static str,
        value_name: &'static str,
        help: &'static str,
        max: u32,
    ) -> Job {
        self.options.push(JobOption {
            long,
            value_name,
            help,
            max,
        });
        self
    }

    /// This job delivers the mail queue: triggered whenever a mail is
    /// queued, its own failures never mailed. One shipped job is.
    pub(crate) fn delivers_mail(mut self) -> Job {
        self.delivers_mail = true;
        self
    }

    /// What is wrong with this job, if anything: the `error:` text.
    pub(crate) fn problem(&self) -> Option<String> {
        let named = |problem: String| Some(format!("job {}: {problem}", self.name));
        if let Err(problem) = crate::config::check_job_name(&self.name) {
            return Some(problem);
        }
        if let Err(problem) = self.parsed_schedule() {
            return named(problem);
        }
        for tag in &self.runs_on {
            if let Err(problem) = crate::config::check_tag(tag) {
                return named(format!("runs_on: {problem}"));
            }
        }
        if self.timeout < Duration::from_secs(1) {
            return named("a timeout must be at least one second".into());
        }
        if self
            .expect_success_within
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            return named("expect_success_within must be at least one second".into());
        }
        if let Some(after) = self.warn_after {
            if after < Duration::from_secs(1) {
                return named("warn_after must be at least one second".into());
            }
            // An internal job has no timeout that stops it (§2).
            if !self.internal {
                if let Err(problem) =
                    crate::config::check_warn_after(seconds(after), seconds(self.timeout))
                {
                    return named(format!("warn_after: {problem}"));
                }
            }
        }
        for recipient in self.notify.iter().flatten() {
            if !recipient.starts_with(crate::webhook::RECIPIENT_PREFIX) {
                if let Err(problem) = crate::mail::check_address(recipient) {
                    return named(format!(
                        "notify: {problem}; expected a mail address or webhook:NAME"
                    ));
                }
            }
        }
        for option in &self.options {
            let valid = !option.long.is_empty()
                && option
                    .long
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return named(format!(
                    "\"{}\" is not an option name: expected lowercase letters, digits and dashes",
                    option.long
                ));
            }
        }
        None
    }

    fn parsed_schedule(&self) -> Result<(), String> {
        match &self.schedule {
            Schedule::Manual => Ok(()),
            Schedule::Times(times) if times.is_empty() => {
                Err("expected at least one time of day".into())
            }
            Schedule::Times(times) => times
                .iter()
                .try_for_each(|t| crate::schedule::parse_time_of_day(t).map(drop))
                .map_err(|e| e.to_string()),
            Schedule::Interval(i) => crate::schedule::parse_duration(i)
                .map(drop)
                .map_err(|e| e.to_string()),
            Schedule::Cron(expr) => crate::schedule::parse_cron(expr)
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }

    /// The job as the rest of the crate knows jobs written in Rust.
    pub(crate) fn into_builtin(self) -> &'static Builtin {
        fn leak(s: String) -> &'static str {
            Box::leak(s.into_boxed_str())
        }
        fn leak_all(items: Vec<String>) -> &'static [&'static str] {
            Box::leak(
                items
                    .into_iter()
                    .map(leak)
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )
        }
        let schedule = match self.schedule {
            Schedule::Manual => BuiltinSchedule::Manual,
            Schedule::Times(times) => BuiltinSchedule::Times(leak_all(times)),
            Schedule::Interval(i) => BuiltinSchedule::Interval(leak(i)),
            Schedule::Cron(expr) => BuiltinSchedule::Cron(leak(expr)),
        };
        let description = if self.description.is_empty() {
            self.name.clone()
        } else {
            self.description
        };
        Box::leak(Box::new(Builtin {
            name: leak(self.name),
            app: leak(self.app),
            description: leak(description),
            schedule,
            internal: self.internal,
            timeout_secs: seconds(self.timeout),
            trigger_next: leak_all(self.trigger_next),
            on_success: leak_all(self.on_success),
            on_failure: leak_all(self.on_failure),
            overlap: self.overlap,
            runs_on: leak_all(self.runs_on),
            notify: self.notify.map(leak_all),
            expect_success_within_secs: self.expect_success_within.map(seconds),
            warn_after_secs: self.warn_after.map(seconds),
            default_notify_on_success: self.notify_on_success,
            delivers_mail: self.delivers_mail,
            options: Box::leak(self.options.into_boxed_slice()),
            should_run: self.should_run,
            run: self.run,
        }))
    }
}

/// Whole seconds of a duration, as the settings keep them.
fn seconds(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop(_: &mut JobContext) -> anyhow::Result<()> {
        Ok(())
    }

    #[test]
    fn notify_expect_success_within_and_warn_after_reach_the_jobs_settings() {
        let job = Job::new("backup", noop)
            .timeout(Duration::from_secs(600))
            .notify(&["dba@example.com", "webhook:chat"])
            .expect_success_within(Duration::from_secs(26 * 3600))
            .warn_after(Duration::from_secs(300));
        assert_eq!(job.problem(), None);
        let settings = job.into_builtin().settings();
        assert_eq!(
            settings.notify,
            Some(vec!["dba@example.com".into(), "webhook:chat".into()])
        );
        assert_eq!(settings.expect_success_within_secs, Some(26 * 3600));
        assert_eq!(settings.warn_after_secs, Some(300));
    }

    #[test]
    fn a_warning_not_before_the_timeout_or_a_bad_address_is_a_problem() {
        let late = Job::new("backup", noop)
            .timeout(Duration::from_secs(60))
            .warn_after(Duration::from_secs(60));
        let problem = late.problem().unwrap_or_default();
        assert!(
            problem.starts_with("job backup: warn_after: 00:01:00"),
            "{problem}"
        );
        let bad = Job::new("backup", noop).notify(&["not an address"]);
        let problem = bad.problem().unwrap_or_default();
        assert!(problem.contains("notify: "), "{problem}");
        assert!(
            problem.contains("expected a mail address or webhook:NAME"),
            "{problem}"
        );
    }
}
