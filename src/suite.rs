//! The whole command line with an application's own jobs (§22): [`Suite`].

use crate::job::builder::Job;
use crate::job::definition::Builtin;

/// The whole `manage` command line with an application's own jobs beside the
/// shipped ones: the runner, `jobs …`, the web page, `manage NAME` for every
/// job, completions and the man page (§7, §22).
///
/// ```no_run
/// manage::Suite::new()
///     .job(manage::Job::new("say_hello", |ctx| {
///         writeln!(ctx.out, "hello")?;
///         Ok(())
///     }))
///     .main()
/// ```
pub struct Suite {
    jobs: Vec<Job>,
}

impl Default for Suite {
    fn default() -> Self {
        Suite::new()
    }
}

impl Suite {
    /// The shipped jobs (`purge_job_history`, `send_queued_mail`), and no other.
    pub fn new() -> Suite {
        Suite {
            jobs: crate::commands::jobs(),
        }
    }

    /// Add a job.
    pub fn job(mut self, job: Job) -> Suite {
        self.jobs.push(job);
        self
    }

    /// Check the jobs, then parse the command line, run the command, print
    /// its error once and exit with its code (§7). Never returns.
    pub fn main(self) -> ! {
        crate::process::restore_default_sigpipe();
        // A bug must still end as one line, not a backtrace.
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!(
                "{}",
                crate::runner::stderr_line(
                    crate::runner::Level::Error,
                    &format!("internal error: {message}{place} (please report this bug)")
                )
            );
        }));
        let result = self.builtins().and_then(|jobs| crate::cli::run(&jobs));
        let code = match result {
            Ok(()) => 0,
            Err(error) => {
                let code = crate::error::exit_code(&error);
                if error.downcast_ref::<crate::error::Exit>().is_none() {
                    eprintln!(
                        "{}",
                        crate::runner::stderr_line(
                            crate::runner::Level::Error,
                            &crate::error::describe(&error)
                        )
                    );
                }
                code
            }
        };
        std::process::exit(i32::from(code));
    }

    /// The jobs as the crate runs them, once each is known to be sound and
    /// no two share a name.
    fn builtins(self) -> anyhow::Result<Vec<&'static Builtin>> {
        let mut seen = std::collections::BTreeSet::new();
        for job in &self.jobs {
            if let Some(problem) = job.problem() {
                return crate::error::bad_input(problem);
            }
            if !seen.insert(job.name().to_string()) {
                return crate::error::bad_input(format!(
                    "job {}: two jobs have this name; give each its own",
                    job.name()
                ));
            }
        }
        Ok(self.jobs.into_iter().map(Job::into_builtin).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::builder::Context;
    use std::time::Duration;

    fn nothing(_: &mut Context) -> anyhow::Result<()> {
        Ok(())
    }

    fn problem_of(job: Job) -> String {
        match (Suite { jobs: vec![job] }).builtins() {
            Ok(_) => String::new(),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_job_built_in_a_chain_becomes_the_definition_the_crate_runs() {
        let job = Job::new("nightly_report", nothing)
            .app("reports")
            .description("Nightly report")
            .times(&["16:00", "04:00"])
            .internal(true)
            .timeout(Duration::from_secs(90))
            .trigger_next(&["send_queued_mail"])
            .on_success(&["purge_job_history"])
            .on_failure(&["page_someone"])
            .overlap(crate::job::Overlap::Skip)
            .notify_on_success(true)
            .option("days", "N", "How many days", 30);
        let builtin = job.into_builtin();
        assert_eq!(builtin.on_success, ["purge_job_history"]);
        assert_eq!(builtin.on_failure, ["page_someone"]);
        assert_eq!(builtin.overlap, crate::job::Overlap::Skip);
        // The cycle check sees every job it may schedule.
        assert_eq!(
            crate::registry::Registry::jobs_of(&[builtin]),
            [(
                "nightly_report",
                &["send_queued_mail", "purge_job_history", "page_someone"][..]
            )]
        );
        assert_eq!(builtin.name, "nightly_report");
        assert_eq!(builtin.app, "reports");
        assert_eq!(builtin.description, "Nightly report");
        assert!(builtin.internal);
        assert_eq!(builtin.timeout_secs, 90);
        assert_eq!(builtin.trigger_next, ["send_queued_mail"]);
        assert!(builtin.default_notify_on_success);
        assert_eq!(builtin.options.len(), 1);
        assert_eq!(
            builtin.schedule(),
            Some(crate::schedule::Schedule::Times(
                crate::schedule::normalize_times(vec![
                    crate::schedule::parse_time_of_day("04:00").unwrap(),
                    crate::schedule::parse_time_of_day("16:00").unwrap(),
                ])
            ))
        );
    }

    #[test]
    fn without_a_description_the_name_is_shown_and_the_defaults_are_the_specs() {
        let builtin = Job::new("tidy", nothing).into_builtin();
        assert_eq!(builtin.description, "tidy");
        assert_eq!(builtin.app, "app");
        assert!(!builtin.internal);
        assert_eq!(builtin.timeout_secs, crate::config::DEFAULT_TIMEOUT_SECS);
        assert!(builtin.schedule().is_none());
    }

    #[test]
    fn a_bad_job_is_refused_with_its_name_and_what_was_expected() {
        assert!(problem_of(Job::new("Bad", nothing)).contains("\"Bad\" is not a valid job name"));
        assert!(problem_of(Job::new("jobs", nothing)).contains("name of a manage command"));
        assert!(problem_of(Job::new("t", nothing).times(&["25:00"])).starts_with("job t: "));
        assert!(problem_of(Job::new("t", nothing).times(&[])).contains("at least one time"));
        assert!(problem_of(Job::new("t", nothing).interval("00:00")).starts_with("job t: "));
        assert!(problem_of(Job::new("t", nothing).cron("61 * * * *")).starts_with("job t: "));
        assert!(problem_of(Job::new("t", nothing).timeout(Duration::ZERO))
            .contains("at least one second"));
        assert!(problem_of(Job::new("t", nothing).option("Days", "N", "", 1)).contains("\"Days\""));
        assert_eq!(problem_of(Job::new("t", nothing).interval("00:05:00")), "");
        let twice = Suite::new()
            .job(Job::new("t", nothing))
            .job(Job::new("t", nothing));
        assert!(
            format!("{:#}", twice.builtins().err().unwrap()).contains("two jobs have this name")
        );
        let shadow = Suite::new().job(Job::new("purge_job_history", nothing));
        assert!(shadow.builtins().is_err(), "a shipped job's name is taken");
    }
}
