//! What a job is defined as: a job written in Rust ([`Builtin`], one file
//! under `commands/`) or declared in the configuration file
//! (`config::DeclaredJob`). Both give their keys as one
//! [`JobSettings`], so a key means the same either way, and are seen
//! through one shape, [`JobDef`].
//!
//! A built-in job's own command-line options are described here as plain data
//! ([`JobOption`]) and turned into clap arguments by the CLI, so that the core
//! never depends on the command line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use super::Job;
use crate::config::{Config, DeclaredAction, DeclaredJob, JobSettings};
use crate::schedule::{self, Schedule};

/// What a job's function is given (§22): a database connection, the run's
/// id, its arguments and where to write its output.
///
/// An internal job runs in the runner's process and writes only to `out`
/// (never to the process's stdout): what it writes is the run's output.
pub struct JobContext<'a> {
    /// A connection to the scheduler's database: the runner's own for an
    /// internal job, the job's own when it runs as `manage NAME`.
    pub client: &'a mut postgres::Client,
    /// This run's id in `manage.runs` when the runner runs the job (a child
    /// reads it from `MANAGE_RUN_ID`); None when it is run by hand.
    pub run_id: Option<i64>,
    /// The arguments given to this one run (§21: `jobs run-now NAME -- ARG…`);
    /// empty when none were given.
    pub args: &'a [String],
    /// Where the job writes its output: the run's output under the runner,
    /// stdout when run by hand.
    pub out: &'a mut dyn Write,
    /// `manage`'s own configuration, for the shipped jobs.
    pub(crate) config: &'a Config,
    /// The values of the job's own options (`manage NAME --LONG N`); the
    /// runner gives none.
    pub(crate) options: &'a JobArgs,
}

impl JobContext<'_> {
    /// The value given for the job's option `--long` (see `Job::option`),
    /// when one was given.
    pub fn option(&self, long: &str) -> Option<u32> {
        self.options.get(long)
    }
}

/// The schedule a built-in job is written with.
#[derive(Debug, Clone, Copy)]
pub enum BuiltinSchedule {
    Manual,
    Times(&'static [&'static str]),
    Interval(&'static str),
    /// A cron expression (§11), in the configured zone.
    Cron(&'static str),
}

/// One option of a built-in job: `--LONG N`, a whole number in `0..=max`.
#[derive(Debug, Clone, Copy)]
pub struct JobOption {
    /// The long flag, without dashes.
    pub long: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    pub max: u32,
}

/// The values given for a job's options, by long flag.
#[doc(hidden)]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobArgs(BTreeMap<&'static str, u32>);

impl JobArgs {
    pub fn set(&mut self, long: &'static str, value: u32) {
        self.0.insert(long, value);
    }

    pub fn get(&self, long: &str) -> Option<u32> {
        self.0.get(long).copied()
    }
}

/// What the first phase (should_run) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShouldRun {
    Run,
    /// Nothing to do, and why: the runner logs it and `run-now --wait`
    /// prints it (`Skipped: <reason>`), so it reads as a sentence.
    Skip(String),
}

/// A job written in Rust, one file under `commands/`.
pub struct Builtin {
    pub name: &'static str,
    pub app: &'static str,
    pub description: &'static str,
    pub schedule: BuiltinSchedule,
    /// Run in the runner's own process (true) or as `manage NAME` (false).
    pub internal: bool,
    pub timeout_secs: u32,
    pub trigger_next: &'static [&'static str],
    /// The jobs scheduled when a run (or its retry series) succeeds, or
    /// fails (§21).
    pub on_success: &'static [&'static str],
    pub on_failure: &'static [&'static str],
    /// What a slot that comes while it runs does (§21).
    pub overlap: super::Overlap,
    /// The tags a runner needs to take it (§19).
    pub runs_on: &'static [&'static str],
    /// Who its alerts go to (§20) instead of `notifications.email`.
    pub notify: Option<&'static [&'static str]>,
    /// The dead-man alert's silence and the slow-run warning, in seconds (§20).
    pub expect_success_within_secs: Option<u32>,
    pub warn_after_secs: Option<u32>,
    pub default_notify_on_success: bool,
    /// This job delivers the mail queue: it is triggered whenever a mail is
    /// queued, and its own failures are never mailed (that would loop).
    pub delivers_mail: bool,
    /// The job's own command-line options (`manage NAME --help` shows them).
    pub options: &'static [JobOption],
    /// The cheap first phase: whether there is anything to do.
    pub should_run: Option<fn(&mut JobContext) -> anyhow::Result<ShouldRun>>,
    /// The job itself.
    pub run: fn(&mut JobContext) -> anyhow::Result<()>,
}

impl Builtin {
    /// The parsed built-in schedule. The strings are ours, so a bad one is a bug
    /// caught by the registry's tests, not a user error.
    pub fn schedule(&self) -> Option<Schedule> {
        match self.schedule {
            BuiltinSchedule::Manual => None,
            BuiltinSchedule::Times(times) => {
                let parsed: Vec<_> = times
                    .iter()
                    .filter_map(|t| schedule::parse_time_of_day(t).ok())
                    .collect();
                Some(Schedule::Times(schedule::normalize_times(parsed)))
            }
            BuiltinSchedule::Interval(i) => {
                schedule::parse_duration(i).ok().map(Schedule::Interval)
            }
            BuiltinSchedule::Cron(expr) => schedule::parse_cron(expr).ok().map(Schedule::Cron),
        }
    }

    /// Its keys, as a declared job gives them; what it does not set is the
    /// default every job has.
    pub fn settings(&self) -> JobSettings {
        JobSettings {
            app: self.app.to_string(),
            description: self.description.to_string(),
            schedule: self.schedule(),
            timeout_secs: self.timeout_secs,
            trigger_next: self.trigger_next.iter().map(|s| s.to_string()).collect(),
            runs_on: self.runs_on.iter().map(|s| s.to_string()).collect(),
            on_success: self.on_success.iter().map(|s| s.to_string()).collect(),
            on_failure: self.on_failure.iter().map(|s| s.to_string()).collect(),
            overlap: self.overlap,
            notify: self
                .notify
                .map(|list| list.iter().map(|s| s.to_string()).collect()),
            expect_success_within_secs: self.expect_success_within_secs,
            warn_after_secs: self.warn_after_secs,
            notify_on_success: self.default_notify_on_success,
            ..JobSettings::new(self.name)
        }
    }
}

/// How a job is run.
#[derive(Clone)]
pub enum JobKind {
    Builtin(&'static Builtin),
    Declared(Box<DeclaredJob>),
}

/// One job as the code or the configuration file defines it.
#[derive(Clone)]
pub struct JobDef {
    pub name: String,
    pub app: String,
    pub description: String,
    pub schedule: Option<Schedule>,
    /// The declared zone's IANA name; none means the configured zone.
    pub timezone: Option<String>,
    /// The declared start deadline in seconds.
    pub start_deadline: Option<u32>,
    pub internal: bool,
    pub timeout_secs: u32,
    pub trigger_next: Vec<String>,
    pub default_notify_on_success: bool,
    pub delivers_mail: bool,
    /// Retries after a failure and the first delay (§13); built-in jobs
    /// have none.
    pub retries: u32,
    pub retry_delay_secs: u32,
    /// Failure mails start at this many consecutive failures (§14).
    pub alert_after: u32,
    /// The tags a runner needs to take it (§19).
    pub runs_on: Vec<String>,
    /// Each slot delayed by up to this many seconds (§21).
    pub jitter_secs: u32,
    /// Who its alerts go to (§20); `None`: the global recipient.
    pub notify: Option<Vec<String>>,
    /// The overlap policy and the chains on outcome (§21).
    pub overlap: super::Overlap,
    pub on_success: Vec<String>,
    pub on_failure: Vec<String>,
    /// The dead-man alert's silence, in seconds (§20).
    pub expect_success_within_secs: Option<u32>,
    /// The slow-run warning, in seconds (§20).
    pub warn_after_secs: Option<u32>,
    pub kind: JobKind,
}

/// The part of a definition that has no column of its own; stored as JSON so
/// that sync can tell when it changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
struct Definition {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    sql: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    should_run: Option<String>,
    #[serde(default)]
    trigger_next: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    working_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    env: BTreeMap<String, String>,
    /// Absent unless set, so that the definitions stored before the key
    /// existed do not all read as changed.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    sql_autocommit: bool,
}

impl JobDef {
    pub fn from_builtin(builtin: &'static Builtin) -> Self {
        let settings = builtin.settings();
        JobDef::new(
            builtin.name,
            &settings,
            builtin.internal,
            builtin.delivers_mail,
            JobKind::Builtin(builtin),
        )
    }

    pub fn from_declared(job: &DeclaredJob) -> Self {
        let kind = JobKind::Declared(Box::new(job.clone()));
        JobDef::new(&job.name, &job.settings, false, false, kind)
    }

    /// Where the two kinds of job meet: the same settings, whoever wrote them.
    fn new(
        name: &str,
        settings: &JobSettings,
        internal: bool,
        delivers_mail: bool,
        kind: JobKind,
    ) -> Self {
        JobDef {
            name: name.to_string(),
            app: settings.app.clone(),
            description: settings.description.clone(),
            schedule: settings.schedule.clone(),
            timezone: settings.timezone.map(|z| z.name().to_string()),
            start_deadline: settings.start_deadline_secs,
            internal,
            timeout_secs: settings.timeout_secs,
            trigger_next: settings.trigger_next.clone(),
            default_notify_on_success: settings.notify_on_success,
            delivers_mail,
            retries: settings.retries,
            retry_delay_secs: settings.retry_delay_secs,
            alert_after: settings.alert_after,
            runs_on: settings.runs_on.clone(),
            jitter_secs: settings.jitter_secs,
            notify: settings.notify.clone(),
            overlap: settings.overlap,
            on_success: settings.on_success.clone(),
            on_failure: settings.on_failure.clone(),
            expect_success_within_secs: settings.expect_success_within_secs,
            warn_after_secs: settings.warn_after_secs,
            kind,
        }
    }

    /// The definition's columns-less part, as stored in `jobs.definition`.
    pub fn definition_json(&self) -> serde_json::Value {
        let definition = match &self.kind {
            JobKind::Builtin(_) => Definition {
                trigger_next: self.trigger_next.clone(),
                ..Definition::default()
            },
            JobKind::Declared(job) => Definition {
                command: match &job.action {
                    DeclaredAction::Command(c) => Some(c.clone()),
                    DeclaredAction::Sql(_) => None,
                },
                sql: match &job.action {
                    DeclaredAction::Sql(q) => Some(q.clone()),
                    DeclaredAction::Command(_) => None,
                },
                should_run: job.settings.should_run.clone(),
                trigger_next: job.settings.trigger_next.clone(),
                working_dir: Some(job.working_dir.clone()),
                env: job.env.clone(),
                sql_autocommit: job.sql_autocommit,
            },
        };
        serde_json::to_value(definition).unwrap_or(serde_json::Value::Null)
    }

    /// The cron expression as written (its text is shown, so a rewrite that
    /// matches the same slots is still a change to sync).
    fn cron_text(&self) -> Option<&str> {
        match &self.schedule {
            Some(Schedule::Cron(c)) => Some(c.as_str()),
            _ => None,
        }
    }

    /// Whether the database's copy of this job's definition is out of date
    /// (§10: any change to what the code or file defines). The operator's
    /// configuration is not part of it.
    pub fn differs_from(&self, stored: &Job) -> bool {
        stored.app != self.app
            || stored.description != self.description
            || stored.internal != self.internal
            || i64::from(stored.timeout_seconds) != i64::from(self.timeout_secs)
            || stored.builtin_schedule() != self.schedule
            || stored.builtin_cron.as_deref() != self.cron_text()
            || stored.builtin_timezone != self.timezone
            || stored.builtin_start_deadline_seconds.map(i64::from)
                != self.start_deadline.map(i64::from)
            || stored.definition != self.definition_json()
            || i64::from(stored.builtin_retries) != i64::from(self.retries)
            || i64::from(stored.builtin_retry_delay_seconds) != i64::from(self.retry_delay_secs)
            || i64::from(stored.builtin_alert_after) != i64::from(self.alert_after)
            || stored.builtin_runs_on != self.runs_on
            || i64::from(stored.builtin_jitter_seconds) != i64::from(self.jitter_secs)
            || stored.builtin_notify != self.notify
            || stored.builtin_overlap != self.overlap
            || stored.builtin_on_success != self.on_success
            || stored.builtin_on_failure != self.on_failure
            || stored.builtin_expect_success_within_seconds.map(i64::from)
                != self.expect_success_within_secs.map(i64::from)
            || stored.builtin_warn_after_seconds.map(i64::from)
                != self.warn_after_secs.map(i64::from)
    }

    /// Whether an SQL job's statements run outside a transaction block (§18).
    pub fn sql_autocommit(&self) -> bool {
        matches!(&self.kind, JobKind::Declared(job) if job.sql_autocommit)
    }

    /// The declared SQL, for an SQL job (§12).
    pub fn sql(&self) -> Option<&str> {
        match &self.kind {
            JobKind::Declared(job) => match &job.action {
                DeclaredAction::Sql(q) => Some(q),
                DeclaredAction::Command(_) => None,
            },
            JobKind::Builtin(_) => None,
        }
    }
}
