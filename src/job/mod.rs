//! A job and its runs: the states a run goes through, what each ending means,
//! and the rules that move a job from one run to the next — its effective
//! schedule, its next run after a run or a skip, whether it is due, whether it
//! is failing. Every part of `manage` that asks one of these questions asks it
//! here, so a reader finds "how is the next run computed?" in one place:
//! [`Job::next_run_after`] (the rules) on top of [`crate::schedule`] (the
//! arithmetic).
//!
//! The zone a job's times and cron slots are read in ([`Job::zone`]) and its
//! start deadline ([`Job::missed_start_deadline`], §11) are rules of the same
//! kind: the operator's value, else the declared one, else the default, decided
//! here once for the runner, the CLI and sync alike.
//!
//! Two shapes of a job exist, on purpose: [`definition::JobDef`] is what the
//! code or the configuration file defines, [`Job`] is what the database holds
//! (the definition as last synced, plus the operator's configuration and the
//! scheduling state). `registry::sync` compares the two, in one place.
//!
//! The lifecycle of a run: the runner claims a due job, which writes a
//! `Running` row and marks the job running (`store::claim`); the first phase
//! may skip it (the row is deleted: skips are not runs; the job keeps the
//! reason and the claim's id for `run-now --wait`); otherwise it ends as
//! one of the [`Finished`] states and is recorded with the job's next run
//! ([`Job::next_run_after`]), or, when its runner died, another runner records
//! it `Interrupted`.

pub mod builder;
pub mod definition;

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use postgres::types::{accepts, to_sql_checked, FromSql, IsNull, ToSql, Type};

use crate::schedule::{self, Schedule};

/// The state of a run in the history. Stored as text; this is the one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Claimed and not finished: the job is running (or its runner died).
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Interrupted,
}

impl RunState {
    pub const ALL: [RunState; 5] = [
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::TimedOut,
        RunState::Interrupted,
    ];

    /// The name in the database, the JSON and every listing.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::TimedOut => "timed_out",
            RunState::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A finished run that did not succeed (`--failed`, the `!` in `jobs
    /// list`, an unhealthy `jobs status`).
    pub fn is_failure(self) -> bool {
        !matches!(self, RunState::Running | RunState::Succeeded)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RunState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A text column that maps to an enum by its `as_str`/`parse`: the one
/// mapping, both ways. A value this program does not know is an error,
/// never a guess.
macro_rules! text_enum_sql {
    ($type:ty, $what:literal) => {
        impl ToSql for $type {
            fn to_sql(
                &self,
                ty: &Type,
                out: &mut bytes::BytesMut,
            ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }

            accepts!(TEXT, VARCHAR);
            to_sql_checked!();
        }

        impl<'a> FromSql<'a> for $type {
            fn from_sql(
                ty: &Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let text = <&str as FromSql>::from_sql(ty, raw)?;
                <$type>::parse(text)
                    .ok_or_else(|| format!(concat!("unknown ", $what, " \"{}\""), text).into())
            }

            accepts!(TEXT, VARCHAR);
        }
    };
}

text_enum_sql!(RunState, "run state");

/// How a run ended: the states a run can finish in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Succeeded,
    Failed,
    TimedOut,
    Interrupted,
}

impl Finished {
    pub fn state(self) -> RunState {
        match self {
            Finished::Succeeded => RunState::Succeeded,
            Finished::Failed => RunState::Failed,
            Finished::TimedOut => RunState::TimedOut,
            Finished::Interrupted => RunState::Interrupted,
        }
    }
}

/// What happened to a run, as far as a notification is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
    Interrupted,
    /// The job could not be started and has been disabled.
    InternalError,
}

/// A run that is over, before it is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub finished: Finished,
    pub output: String,
    /// The job could not even be started: it is disabled (§4.5).
    pub disable: bool,
}

impl Ended {
    pub fn new(finished: Finished, output: String) -> Self {
        Ended {
            finished,
            output,
            disable: false,
        }
    }

    /// The job cannot be started (no `sh`, no working directory, the
    /// `manage` binary gone): a failure that disables it. (A job this runner
    /// does not define is not one: it waits for a runner that does, §17.)
    pub fn cannot_start(output: String) -> Self {
        Ended {
            finished: Finished::Failed,
            output,
            disable: true,
        }
    }

    pub fn state(&self) -> RunState {
        self.finished.state()
    }

    pub fn outcome(&self) -> Outcome {
        if self.disable {
            return Outcome::InternalError;
        }
        match self.finished {
            Finished::Succeeded => Outcome::Succeeded,
            Finished::Failed => Outcome::Failed,
            Finished::TimedOut => Outcome::TimedOut,
            Finished::Interrupted => Outcome::Interrupted,
        }
    }
}

/// A job as the database holds it: the definition as last synced, the
/// operator's configuration, and its scheduling state.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub name: String,
    pub app: String,
    pub description: String,
    pub internal: bool,
    pub timeout_seconds: i32,
    pub builtin_times: Option<Vec<NaiveTime>>,
    pub builtin_interval_seconds: Option<i32>,
    pub builtin_cron: Option<String>,
    /// The zone the definition declares for its times and cron slots.
    pub builtin_timezone: Option<String>,
    pub builtin_start_deadline_seconds: Option<i32>,
    /// The rest of the definition (`definition::Definition`), as JSON.
    pub definition: serde_json::Value,
    pub enabled: bool,
    pub notify_on_success: bool,
    pub override_times: Option<Vec<NaiveTime>>,
    pub override_interval_seconds: Option<i32>,
    pub override_cron: Option<String>,
    /// The operator's zone for this job (`jobs configure --timezone`).
    pub override_timezone: Option<String>,
    pub override_start_deadline_seconds: Option<i32>,
    pub next_run: Option<DateTime<Utc>>,
    /// The due time a run-now request (or a `trigger_next`) set: while
    /// `next_run` equals it, the due run is a request, exempt from the start
    /// deadline (§11).
    pub requested_run: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_state: Option<RunState>,
    pub last_skip: Option<DateTime<Utc>>,
    /// The run in progress, while the job runs.
    pub running_run: Option<i64>,
    /// A run-now request arrived while the job was running.
    pub run_requested: bool,
    pub removed: bool,
    /// Retries as the code or file defines them (§13), and the operator's
    /// overrides (`jobs configure --retries/--retry-delay`).
    pub builtin_retries: i32,
    pub builtin_retry_delay_seconds: i32,
    pub override_retries: Option<i32>,
    pub override_retry_delay_seconds: Option<i32>,
    /// The attempt number of the job's next claimed run: 1, or K+1 while a
    /// retry after attempt K is pending.
    pub next_attempt: i32,
    /// Alerts (§14): failure mails start at the N-th consecutive failure,
    /// as declared and as the operator overrides it.
    pub builtin_alert_after: i32,
    pub override_alert_after: Option<i32>,
    /// Failed runs (a retry series counts once) since the last success.
    pub consecutive_failures: i32,
    /// A failure mail was queued during the current streak: the success that
    /// ends it queues a recovery mail.
    pub alert_mailed: bool,
    /// When the last successful run finished, and how long the last run took
    /// (kept with the job, so that purging the history loses neither).
    pub last_success: Option<DateTime<Utc>>,
    pub last_runtime_seconds: Option<f64>,
    /// Runner pools (§19): the tags a runner needs to take this job, as
    /// declared and as the operator overrides them (None: no override).
    pub builtin_runs_on: Vec<String>,
    pub override_runs_on: Option<Vec<String>>,
    /// Jitter (§21), in seconds, as declared and as the operator overrides it.
    pub builtin_jitter_seconds: i32,
    pub override_jitter_seconds: Option<i32>,
    /// Paused until this instant (§21): it runs again from its first slot
    /// after it. A passed instant means nothing.
    pub paused_until: Option<DateTime<Utc>>,
    /// Who its alerts go to (§20), as declared and as the operator
    /// overrides it; `None` in both: the global recipient.
    pub builtin_notify: Option<Vec<String>>,
    pub override_notify: Option<Vec<String>>,
    /// The extra runs pending at an instant (§21: `run-now --at`), earliest
    /// first; read only by the statements that show jobs (empty elsewhere).
    pub extra_runs: Vec<DateTime<Utc>>,
    /// What a slot that comes while it runs does (§21), as declared and as
    /// the operator overrides it.
    pub builtin_overlap: Overlap,
    pub override_overlap: Option<Overlap>,
    /// With `skip` or `replace`, the slot the run in progress meets while it
    /// lasts ([`Job::slot_while_running`]); written once the run is claimed.
    pub overlap_slot: Option<DateTime<Utc>>,
    /// The run in progress that a runner has asked its owner to stop for a
    /// new one (`replace`).
    pub replace_run: Option<i64>,
    /// Chains on outcome (§21): the jobs scheduled when a run (or its retry
    /// series) ends in success or in failure, as declared and as the
    /// operator overrides them (None: no override).
    pub builtin_on_success: Vec<String>,
    pub override_on_success: Option<Vec<String>>,
    pub builtin_on_failure: Vec<String>,
    pub override_on_failure: Option<Vec<String>>,
    /// The dead-man alert (§20), in seconds, as declared and as the operator
    /// overrides it; when its effective value last changed; and when its
    /// alert last went out.
    pub builtin_expect_success_within_seconds: Option<i32>,
    pub override_expect_success_within_seconds: Option<i32>,
    pub expect_success_since: Option<DateTime<Utc>>,
    pub overdue_alerted_at: Option<DateTime<Utc>>,
    /// The slow-run warning (§20), in seconds, as declared and as the
    /// operator overrides it.
    pub builtin_warn_after_seconds: Option<i32>,
    pub override_warn_after_seconds: Option<i32>,
}

/// The overlap policy (§21): what a slot of the schedule that comes while
/// the job is still running does. Stored as text; this is the one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// The slot waits: the job runs right after the current run (as before
    /// the policy existed).
    #[default]
    Wait,
    /// The slot is skipped (`Skipping job NAME: still running`).
    Skip,
    /// The current run is stopped, recorded `interrupted`, and the new one
    /// starts once it is recorded.
    Replace,
}

impl Overlap {
    pub const ALL: [Overlap; 3] = [Overlap::Wait, Overlap::Skip, Overlap::Replace];

    /// The name in the file, on the command line, in the database and the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Wait => "wait",
            Overlap::Skip => "skip",
            Overlap::Replace => "replace",
        }
    }

    pub fn parse(text: &str) -> Option<Overlap> {
        Overlap::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// What a bad value is told it should have been.
    pub const EXPECTED: &'static str = "expected wait, skip or replace";
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

text_enum_sql!(Overlap, "overlap policy");

/// The text that ends a run stopped for a new one (`overlap = "replace"`).
pub const REPLACED: &str = "Interrupted: replaced by a new run";

/// The range of `alert_after` (§14).
pub const MIN_ALERT_AFTER: i32 = 1;
pub const MAX_ALERT_AFTER: i32 = 1000;

/// The failure streak after a recorded result, and the mail it calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub consecutive_failures: i32,
    pub alert_mailed: bool,
    pub mail: AlertMail,
}

/// Which mail a result calls for under the alert rule (§14). A success mail
/// (notify-on-success) is decided apart, and a recovery mail replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertMail {
    None,
    /// The run (or series) failed and the streak has reached `alert_after`.
    Failure,
    /// The run succeeded after this many failed runs, one of them mailed.
    Recovery {
        failed_runs: u32,
    },
}

/// The longest wait before a retry (§13): 24 hours.
pub const MAX_RETRY_WAIT_SECS: i64 = 24 * 3600;

/// What kind of job this is, as every listing and the JSON `kind` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A built-in job run in the runner's own process.
    Internal,
    /// A child process: a built-in `manage NAME` or a declared `sh -c`.
    Process,
    /// A declared `sql` job, run on one of the runner's connections (§12).
    Sql,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Internal => "internal",
            Kind::Process => "process",
            Kind::Sql => "sql",
        }
    }
}

/// A pending retry (§13): the `number`-th of `of`, at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub number: u32,
    pub of: u32,
    pub at: DateTime<Utc>,
}

/// Where a job goes after a run: its next run, the attempt number that run
/// gets, and the retry it is, if it is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterRun {
    pub next_run: Option<DateTime<Utc>>,
    pub next_attempt: i32,
    pub retry: Option<Retry>,
}

impl Job {
    pub fn builtin_schedule(&self) -> Option<Schedule> {
        schedule_from_columns(
            self.builtin_times.as_ref(),
            self.builtin_interval_seconds,
            self.builtin_cron.as_deref(),
        )
    }

    pub fn override_schedule(&self) -> Option<Schedule> {
        schedule_from_columns(
            self.override_times.as_ref(),
            self.override_interval_seconds,
            self.override_cron.as_deref(),
        )
    }

    /// The zone its times and cron slots are wall-clock times in (§11): the
    /// operator's, else the declared one, else the configured zone. A stored
    /// name this build does not know falls back to the configured zone
    /// rather than stopping the job.
    pub fn zone(&self, configured: Tz) -> Tz {
        self.override_timezone
            .as_deref()
            .or(self.builtin_timezone.as_deref())
            .and_then(|name| schedule::parse_zone(name).ok())
            .unwrap_or(configured)
    }

    /// The start deadline in seconds (§11): the operator's, else the declared one.
    pub fn start_deadline(&self) -> Option<u32> {
        self.override_start_deadline_seconds
            .or(self.builtin_start_deadline_seconds)
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| *s > 0)
    }

    /// How long past its start deadline the due run is when claimed at
    /// `now`, in whole seconds (at least 1); `None` when it is in time, the
    /// job has no deadline, or the run was requested (run-now is never past
    /// its deadline).
    pub fn missed_start_deadline(&self, now: DateTime<Utc>) -> Option<u32> {
        let deadline = i64::from(self.start_deadline()?);
        let due = self.next_run?;
        if self.requested_run == Some(due) {
            return None;
        }
        let late_ms = (now - due).num_milliseconds() - deadline * 1000;
        if late_ms <= 0 {
            return None;
        }
        u32::try_from(((late_ms + 999) / 1000).max(1)).ok()
    }

    /// The override when set, else the built-in schedule.
    pub fn effective_schedule(&self) -> Option<Schedule> {
        self.override_schedule().or_else(|| self.builtin_schedule())
    }

    /// Set (or clear) the operator's override; one equal to the built-in
    /// schedule is stored as no override (§2).
    pub fn set_override(&mut self, wanted: Option<Schedule>) {
        let kept = schedule::normalize_override(self.builtin_schedule().as_ref(), wanted);
        (
            self.override_times,
            self.override_interval_seconds,
            self.override_cron,
        ) = schedule_columns(kept.as_ref());
    }

    /// The effective number of retries after a failed run (§13).
    pub fn retries(&self) -> u32 {
        self.override_retries
            .unwrap_or(self.builtin_retries)
            .clamp(0, 100)
            .unsigned_abs()
    }

    /// The effective delay before the first retry, in seconds.
    pub fn retry_delay_seconds(&self) -> u32 {
        self.override_retry_delay_seconds
            .unwrap_or(self.builtin_retry_delay_seconds)
            .max(1)
            .unsigned_abs()
    }

    /// The end of the job's pause, while it lasts at `now`.
    pub fn paused_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.paused_until.filter(|until| *until > now)
    }

    /// The effective jitter in seconds (§21; 0: none).
    pub fn jitter_seconds(&self) -> u32 {
        u32::try_from(
            self.override_jitter_seconds
                .unwrap_or(self.builtin_jitter_seconds),
        )
        .unwrap_or(0)
    }

    fn jitter(&self) -> schedule::Jitter<'_> {
        schedule::Jitter {
            name: &self.name,
            secs: self.jitter_seconds(),
        }
    }

    /// The job's own recipients (§20), if it has any: the override, else
    /// the declared `notify`; `None`: the global recipient applies.
    pub fn notify(&self) -> Option<&[String]> {
        self.override_notify
            .as_deref()
            .or(self.builtin_notify.as_deref())
    }

    /// The effective overlap policy (§21).
    pub fn overlap(&self) -> Overlap {
        self.override_overlap.unwrap_or(self.builtin_overlap)
    }

    /// The slot a run of this job that started (or whose slot was skipped)
    /// at `at` meets while it lasts, for `skip` and `replace`: the schedule
    /// counted as if the run had ended at `at` — for an interval, `at` plus
    /// the interval (while it overruns, the interval is the period between
    /// starts); for times and cron, the first slot after `at`. None for
    /// `wait` (the next run is decided when the run ends, as always) and
    /// for a job that cannot run.
    pub fn slot_while_running(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if self.overlap() == Overlap::Wait {
            return None;
        }
        self.next_run_from(Some(at), None, at, tz)
    }

    /// A `replace` job's slot came while the run that ends at `at` went on.
    fn slot_came_during_run(&self, at: DateTime<Utc>) -> bool {
        self.overlap() == Overlap::Replace
            && self.running()
            && self.overlap_slot.is_some_and(|slot| slot <= at)
    }

    /// The run `run_id` was stopped for a new one (`replace`): its end is
    /// not the end of a series — no chain, no mail, the streak unchanged;
    /// the run that replaces it is the one whose outcome counts.
    pub fn replaced(&self, run_id: i64) -> bool {
        self.replace_run == Some(run_id) && self.running_run == Some(run_id)
    }

    /// The effective `on_success` chain (§21).
    pub fn on_success(&self) -> &[String] {
        self.override_on_success
            .as_deref()
            .unwrap_or(&self.builtin_on_success)
    }

    /// The effective `on_failure` chain (§21).
    pub fn on_failure(&self) -> &[String] {
        self.override_on_failure
            .as_deref()
            .unwrap_or(&self.builtin_on_failure)
    }

    /// Every job a run of this one may schedule: its `trigger_next` (from
    /// the definition as synced) and both chains (§21), for the cycle check.
    pub fn scheduled_after_any(&self) -> impl Iterator<Item = &str> {
        self.trigger_next()
            .chain(self.on_success().iter().map(String::as_str))
            .chain(self.on_failure().iter().map(String::as_str))
    }

    /// The definition's `trigger_next`, as synced.
    pub fn trigger_next(&self) -> impl Iterator<Item = &str> {
        self.definition
            .get("trigger_next")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
    }

    /// The jobs a run that ended `state` schedules at once beside its
    /// `trigger_next` (§21): `on_success` for a success, `on_failure` for
    /// every other ending (failed, timed out, interrupted, and a job that
    /// could not be started) — but only once the series is over: none
    /// while a retry is to come.
    pub fn chained(&self, state: RunState, retrying: bool) -> &[String] {
        match state {
            _ if retrying => &[],
            RunState::Running => &[],
            RunState::Succeeded => self.on_success(),
            _ => self.on_failure(),
        }
    }

    /// The effective `expect_success_within` (§20), in seconds.
    pub fn expect_success_within_seconds(&self) -> Option<u32> {
        self.override_expect_success_within_seconds
            .or(self.builtin_expect_success_within_seconds)
            .and_then(|s| u32::try_from(s).ok())
    }

    /// The effective `warn_after` (§20), in seconds.
    pub fn warn_after_seconds(&self) -> Option<u32> {
        self.override_warn_after_seconds
            .or(self.builtin_warn_after_seconds)
            .and_then(|s| u32::try_from(s).ok())
    }

    /// Since when the job has been silent for the dead-man alert (§20): its
    /// last success, or when the expectation took effect if that is later.
    pub fn silent_since(&self) -> Option<DateTime<Utc>> {
        self.last_success.max(self.expect_success_since)
    }

    /// Overdue for the dead-man alert (§20) at `now`: it expects a success
    /// within D and has not had one for longer than that. The SQL of
    /// `store::dead_man_alerts` says the same.
    pub fn overdue_since_success(&self, now: DateTime<Utc>) -> bool {
        match (self.expect_success_within_seconds(), self.silent_since()) {
            (Some(within), Some(since)) if !self.removed => {
                now - since > chrono::Duration::seconds(i64::from(within))
            }
            _ => false,
        }
    }

    /// The dead-man alert went out for the current silence: the next
    /// success sends the recovery mail (§20).
    pub fn dead_man_alerted(&self) -> bool {
        match (self.overdue_alerted_at, self.silent_since()) {
            (Some(alerted), Some(since)) => alerted >= since,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// The effective `runs_on` (§19): the tags a runner needs to take it.
    pub fn runs_on(&self) -> &[String] {
        self.override_runs_on
            .as_deref()
            .unwrap_or(&self.builtin_runs_on)
    }

    /// The effective `alert_after` (§14): failure mails are queued from this
    /// many consecutive failures on.
    pub fn alert_after(&self) -> u32 {
        self.override_alert_after
            .unwrap_or(self.builtin_alert_after)
            .clamp(MIN_ALERT_AFTER, MAX_ALERT_AFTER)
            .unsigned_abs()
    }

    /// What a recorded result does to the failure streak and its mails (§14).
    /// `state` ends a run; `retrying` says a retry of its series is to come,
    /// so the series has not ended and nothing is counted yet. `mail_possible`
    /// is false when nothing would be mailed anyway (no recipient, or the
    /// mail deliverer's own runs): the streak is still counted, but no mail is
    /// marked as queued.
    pub fn alert_after_run(&self, state: RunState, retrying: bool, mail_possible: bool) -> Alert {
        let streak = self.consecutive_failures.max(0);
        if retrying {
            return Alert {
                consecutive_failures: streak,
                alert_mailed: self.alert_mailed,
                mail: AlertMail::None,
            };
        }
        if state.is_failure() {
            let failures = streak.saturating_add(1);
            let due = mail_possible && failures.unsigned_abs() >= self.alert_after();
            Alert {
                consecutive_failures: failures,
                alert_mailed: self.alert_mailed || due,
                mail: if due {
                    AlertMail::Failure
                } else {
                    AlertMail::None
                },
            }
        } else {
            // A dead-man alert (§20) is ended by the success like a mailed
            // failure streak, and its recovery mail says how many of the
            // silent time's runs failed (perhaps none: disabled, skipped).
            let recovered =
                mail_possible && ((self.alert_mailed && streak > 0) || self.dead_man_alerted());
            Alert {
                consecutive_failures: 0,
                alert_mailed: false,
                mail: if recovered {
                    AlertMail::Recovery {
                        failed_runs: streak.unsigned_abs(),
                    }
                } else {
                    AlertMail::None
                },
            }
        }
    }

    /// An SQL job whose statements run outside a transaction block (§18).
    pub fn sql_autocommit(&self) -> bool {
        self.definition
            .get("sql_autocommit")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    /// Internal, process or SQL (the JSON `kind`).
    pub fn kind(&self) -> Kind {
        if self.internal {
            Kind::Internal
        } else if self.definition.get("sql").is_some_and(|v| v.is_string()) {
            Kind::Sql
        } else {
            Kind::Process
        }
    }

    /// The retry rule (§13), for run number `attempt` of a series that
    /// ended `state` at `at`: a failure with retries left runs again at
    /// `at + retry_delay × 2^(k−1)` for the k-th retry (at most 24 h later),
    /// or at the regular next slot when that comes first — either way as
    /// the next attempt. A success, the last attempt's failure, or a job
    /// that cannot run any more ends the series: the regular schedule goes
    /// on from this run, and the next run is attempt 1 again.
    ///
    /// With `overlap = "replace"` (§21), a slot that came while the run
    /// went on — whether the run was stopped for it or ended first — is
    /// owed: the job runs again at once, as attempt 1. The new slot
    /// supersedes a pending retry series (the operator asked for the newest
    /// slot to win), so no retry of this run is scheduled.
    pub fn after_run(&self, attempt: i32, state: RunState, at: DateTime<Utc>, tz: Tz) -> AfterRun {
        self.after_run_started(attempt, state, at, at, tz)
    }

    /// [`Job::after_run`] for a run that started at `started`: with
    /// `overlap = "wait"` a slot that came while it ran waits for it and
    /// runs right after it ([`Job::next_run_after_run`]).
    pub fn after_run_started(
        &self,
        attempt: i32,
        state: RunState,
        started: DateTime<Utc>,
        at: DateTime<Utc>,
        tz: Tz,
    ) -> AfterRun {
        if self.slot_came_during_run(at) {
            return AfterRun {
                next_run: self.schedulable().then_some(at),
                next_attempt: 1,
                retry: None,
            };
        }
        let regular = self.next_run_after_run(started, at, tz);
        let attempt = attempt.max(1);
        let retries = self.retries();
        let k = attempt.unsigned_abs();
        if !self.schedulable() || !state.is_failure() || k > retries {
            return AfterRun {
                next_run: regular,
                next_attempt: 1,
                retry: None,
            };
        }
        let wait = retry_wait_seconds(self.retry_delay_seconds(), k);
        let retry_at = at + chrono::Duration::seconds(wait);
        let next_run = match regular {
            Some(slot) if slot < retry_at => slot,
            _ => retry_at,
        };
        AfterRun {
            next_run: Some(next_run),
            next_attempt: attempt.saturating_add(1),
            retry: Some(Retry {
                number: k,
                of: retries,
                at: next_run,
            }),
        }
    }

    /// The next run once a run that started at `started` ended at `at`
    /// (§21, `overlap = "wait"`): a slot of a times or cron schedule that
    /// came while it ran is not lost — it waited for the run, which ends
    /// now, so the job runs again at once (once, however many slots
    /// passed). An interval counts from the end of the run (§3), so none
    /// can come during it. Otherwise [`Job::next_run_after`].
    ///
    /// Whatever the policy, a jittered slot that came before a run started
    /// less than a gap late is owed too, and runs at once
    /// ([`schedule::next_slot_passed_while_late`]); `next_run` is still the
    /// run's due instant here, as the claim leaves it.
    pub fn next_run_after_run(
        &self,
        started: DateTime<Utc>,
        at: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        let regular = self.next_run_after(at, false, tz);
        let effective = self.effective_schedule();
        let paused = self.paused_until.is_some_and(|until| until > at);
        if let (Some(schedule), Some(due), Some(_), false) =
            (&effective, self.next_run, regular, paused)
        {
            if schedule::next_slot_passed_while_late(
                schedule,
                due,
                started,
                self.zone(tz),
                self.jitter(),
            ) {
                return Some(at);
            }
        }
        let counts_from_the_end = matches!(effective, Some(Schedule::Interval(_)));
        if self.overlap() != Overlap::Wait || counts_from_the_end || regular.is_none() {
            return regular;
        }
        match self.next_run_from(Some(started), None, started, tz) {
            Some(slot) if slot <= at => Some(at),
            _ => regular,
        }
    }

    /// Whether it may run at all: enabled and still defined.
    pub fn schedulable(&self) -> bool {
        self.enabled && !self.removed
    }

    pub fn running(&self) -> bool {
        self.running_run.is_some()
    }

    /// Due (§4.1): enabled, not removed, next run reached, not held, not
    /// already running. `store::claim` states the same rule in SQL for the
    /// claim; this is its reading for everything else.
    pub fn is_due(&self, now: DateTime<Utc>, held: bool) -> bool {
        self.schedulable() && !held && !self.running() && self.next_run.is_some_and(|n| n <= now)
    }

    /// Overdue (§10): enabled, not held, not running, and its next run more
    /// than a minute in the past.
    pub fn is_overdue(&self, now: DateTime<Utc>, held: bool) -> bool {
        const OVERDUE_AFTER_SECS: i64 = 60;
        self.enabled
            && !held
            && !self.running()
            && self
                .next_run
                .is_some_and(|next| (now - next).num_seconds() > OVERDUE_AFTER_SECS)
    }

    /// An enabled job whose last run did not succeed.
    pub fn is_failing(&self) -> bool {
        self.enabled && self.last_state.is_some_and(RunState::is_failure)
    }

    /// When this job should run next, as of `now`, given its history: none
    /// when disabled, removed or manual-only. Configuration changes and sync
    /// use it.
    pub fn next_run(&self, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.next_run_from(self.last_run, self.last_skip, now, tz)
    }

    /// The next run once this job ran (or, with `skipped`, was skipped) and
    /// ended at `at`. A requested run goes first: at once when one arrived
    /// meanwhile; else by the schedule, counting from `at`. The runner's
    /// record and skip, and `release --pending reschedule` ("as if it had
    /// just run"), all use it.
    pub fn next_run_after(
        &self,
        at: DateTime<Utc>,
        skipped: bool,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        if !self.schedulable() {
            return None;
        }
        if self.run_requested {
            return Some(at);
        }
        if skipped {
            self.next_run_from(self.last_run, Some(at), at, tz)
        } else {
            self.next_run_from(Some(at), None, at, tz)
        }
    }

    fn next_run_from(
        &self,
        last_run: Option<DateTime<Utc>>,
        last_skip: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        if !self.schedulable() {
            return None;
        }
        let effective = self.effective_schedule()?;
        // Paused: the schedule goes on as if the job had just run when the
        // pause ends, so no slot of the pause is caught up (§21).
        let (last_run, last_skip, now) = match self.paused_until {
            Some(until) if until > now => (Some(until), None, until),
            _ => (last_run, last_skip, now),
        };
        Some(schedule::next_run_jittered(
            &effective,
            last_run,
            last_skip,
            now,
            self.zone(tz),
            self.jitter(),
        ))
    }

    /// The next `count` runs of the effective schedule (`jobs next`), enabled
    /// or not: after the instant `after` as if the job had just run then, or
    /// from now as the runner would — an interval counting from the last run.
    /// Empty for a manual-only job.
    pub fn upcoming_runs(
        &self,
        after: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        count: usize,
        tz: Tz,
    ) -> Vec<DateTime<Utc>> {
        let Some(effective) = self.effective_schedule() else {
            return Vec::new();
        };
        let tz = self.zone(tz);
        let jitter = self.jitter();
        match (after, &effective) {
            (Some(after), _) => schedule::runs_after_jittered(&effective, after, count, tz, jitter),
            (None, Schedule::Times(_) | Schedule::Cron(_)) => {
                schedule::runs_after_jittered(&effective, now, count, tz, jitter)
            }
            (None, Schedule::Interval(_)) => {
                if count == 0 {
                    return Vec::new();
                }
                let first = schedule::next_run_jittered(
                    &effective,
                    self.last_run,
                    self.last_skip,
                    now,
                    tz,
                    jitter,
                );
                let mut runs = vec![first];
                runs.extend(schedule::runs_after_jittered(
                    &effective,
                    first,
                    count - 1,
                    tz,
                    jitter,
                ));
                runs
            }
        }
    }
}

/// A stored cron expression that no longer parses (written by another
/// version) reads as no schedule rather than a guess.
/// The wait before the k-th retry: `delay × 2^(k−1)` seconds, at most 24 h.
pub fn retry_wait_seconds(delay_seconds: u32, k: u32) -> i64 {
    // 2^20 seconds is already past the cap, whatever the delay.
    let shift = k.saturating_sub(1).min(20);
    i64::from(delay_seconds)
        .saturating_mul(1_i64 << shift)
        .min(MAX_RETRY_WAIT_SECS)
}

fn schedule_from_columns(
    times: Option<&Vec<NaiveTime>>,
    interval: Option<i32>,
    cron: Option<&str>,
) -> Option<Schedule> {
    match (times, interval, cron) {
        (Some(t), _, _) if !t.is_empty() => {
            Some(Schedule::Times(schedule::normalize_times(t.clone())))
        }
        (_, Some(i), _) if i > 0 => Some(Schedule::Interval(i.unsigned_abs())),
        (_, _, Some(c)) => schedule::parse_cron(c).ok().map(Schedule::Cron),
        _ => None,
    }
}

/// A schedule as the (times, interval seconds, cron) columns it is stored in.
pub type ScheduleColumns = (Option<Vec<NaiveTime>>, Option<i32>, Option<String>);

/// A schedule as the columns it is stored in.
pub fn schedule_columns(s: Option<&Schedule>) -> ScheduleColumns {
    match s {
        None => (None, None, None),
        Some(Schedule::Times(t)) => (Some(t.clone()), None, None),
        Some(Schedule::Interval(i)) => (None, Some(i32::try_from(*i).unwrap_or(i32::MAX)), None),
        Some(Schedule::Cron(c)) => (None, None, Some(c.as_str().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn job() -> Job {
        Job {
            name: "j".into(),
            app: "local".into(),
            description: "J".into(),
            internal: false,
            timeout_seconds: 120,
            builtin_times: None,
            builtin_interval_seconds: Some(600),
            builtin_cron: None,
            builtin_timezone: None,
            builtin_start_deadline_seconds: None,
            definition: serde_json::Value::Null,
            enabled: true,
            notify_on_success: false,
            override_times: None,
            override_interval_seconds: None,
            override_cron: None,
            override_timezone: None,
            override_start_deadline_seconds: None,
            next_run: None,
            requested_run: None,
            last_run: None,
            last_state: None,
            last_skip: None,
            running_run: None,
            run_requested: false,
            removed: false,
            builtin_retries: 0,
            builtin_retry_delay_seconds: 30,
            override_retries: None,
            override_retry_delay_seconds: None,
            next_attempt: 1,
            builtin_alert_after: 1,
            override_alert_after: None,
            builtin_runs_on: Vec::new(),
            override_runs_on: None,
            builtin_jitter_seconds: 0,
            override_jitter_seconds: None,
            paused_until: None,
            builtin_notify: None,
            override_notify: None,
            extra_runs: Vec::new(),
            builtin_overlap: Overlap::Wait,
            override_overlap: None,
            overlap_slot: None,
            replace_run: None,
            builtin_on_success: Vec::new(),
            override_on_success: None,
            builtin_on_failure: Vec::new(),
            override_on_failure: None,
            builtin_expect_success_within_seconds: None,
            override_expect_success_within_seconds: None,
            expect_success_since: None,
            overdue_alerted_at: None,
            builtin_warn_after_seconds: None,
            override_warn_after_seconds: None,
            consecutive_failures: 0,
            alert_mailed: false,
            last_success: None,
            last_runtime_seconds: None,
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, h, m, 0)
            .single()
            .expect("valid instant")
    }

    #[test]
    fn every_state_maps_to_its_name_and_back() {
        for state in RunState::ALL {
            assert_eq!(RunState::parse(state.as_str()), Some(state));
        }
        assert_eq!(RunState::parse("skipped"), None);
        let names: Vec<_> = RunState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            ["running", "succeeded", "failed", "timed_out", "interrupted"]
        );
    }

    #[test]
    fn a_failure_is_every_finished_state_but_succeeded() {
        let failures: Vec<_> = RunState::ALL
            .into_iter()
            .filter(|s| s.is_failure())
            .collect();
        assert_eq!(
            failures,
            [RunState::Failed, RunState::TimedOut, RunState::Interrupted]
        );
    }

    #[test]
    fn an_ending_maps_to_its_state_and_outcome() {
        let ended = Ended::new(Finished::TimedOut, String::new());
        assert_eq!(ended.state(), RunState::TimedOut);
        assert_eq!(ended.outcome(), Outcome::TimedOut);
        let broken = Ended::cannot_start("no sh".into());
        assert_eq!(broken.state(), RunState::Failed);
        assert_eq!(broken.outcome(), Outcome::InternalError);
    }

    #[test]
    fn a_requested_run_goes_first() {
        let mut j = job();
        j.run_requested = true;
        assert_eq!(j.next_run_after(at(10, 0), false, Tz::UTC), Some(at(10, 0)));
        j.enabled = false;
        assert_eq!(j.next_run_after(at(10, 0), false, Tz::UTC), None);
    }

    #[test]
    fn with_wait_a_times_slot_that_came_during_the_run_runs_right_after_it() {
        let mut j = job();
        j.builtin_interval_seconds = None;
        let slot = |h, m| NaiveTime::from_hms_opt(h, m, 0).expect("a time");
        j.builtin_times = Some(vec![slot(10, 0), slot(10, 5), slot(12, 0)]);
        // Started at the 10:00 slot, ended at 10:07: 10:05 came meanwhile,
        // and waited for it — once, at the end of the run.
        assert_eq!(
            j.next_run_after_run(at(10, 0), at(10, 7), Tz::UTC),
            Some(at(10, 7))
        );
        let after = j.after_run_started(1, RunState::Succeeded, at(10, 0), at(10, 7), Tz::UTC);
        assert_eq!(after.next_run, Some(at(10, 7)));
        // Ended before the next slot: the schedule as always.
        assert_eq!(
            j.next_run_after_run(at(10, 0), at(10, 3), Tz::UTC),
            Some(at(10, 5))
        );
        // The slot that waited has run (10:07 to 10:08): no other came.
        assert_eq!(
            j.next_run_after_run(at(10, 7), at(10, 8), Tz::UTC),
            Some(at(12, 0))
        );
        // skip and replace deal with such a slot themselves; a disabled job
        // has none.
        j.builtin_overlap = Overlap::Skip;
        assert_eq!(
            j.next_run_after_run(at(10, 0), at(10, 7), Tz::UTC),
            Some(at(12, 0))
        );
        j.builtin_overlap = Overlap::Wait;
        j.enabled = false;
        assert_eq!(j.next_run_after_run(at(10, 0), at(10, 7), Tz::UTC), None);
    }

    #[test]
    fn a_late_run_keeps_the_next_slot_its_jitter_brought_before_the_start() {
        let mut j = job();
        j.name = "fleet_job_0042".into();
        j.builtin_interval_seconds = None;
        j.builtin_cron = Some("* * * * *".into());
        j.builtin_jitter_seconds = 60;
        let name = j.name.clone();
        let jitter = schedule::Jitter {
            name: &name,
            secs: 60,
        };
        // Two neighbouring minutes whose delays bring them within 5 s.
        let (this, next) = (0..24 * 60)
            .map(|m| at(0, 0) + chrono::Duration::minutes(m))
            .map(|slot| (slot, slot + chrono::Duration::minutes(1)))
            .find(|(a, b)| jitter.apply(*b) - jitter.apply(*a) < chrono::Duration::seconds(5))
            .expect("a close pair in a day");
        let (due, next_due) = (jitter.apply(this), jitter.apply(next));
        j.next_run = Some(due);
        // Started just after the next slot's delayed instant, a few seconds
        // late: that slot is owed, at once, whatever the overlap policy.
        let started = next_due + chrono::Duration::milliseconds(100);
        let ended = started + chrono::Duration::milliseconds(20);
        for overlap in [Overlap::Wait, Overlap::Skip, Overlap::Replace] {
            j.builtin_overlap = overlap;
            assert_eq!(
                j.next_run_after_run(started, ended, Tz::UTC),
                Some(ended),
                "{overlap:?}"
            );
        }
        j.builtin_overlap = Overlap::Wait;
        // The owed run (its due instant is no slot) goes on to the slot after.
        let mut owed = j.clone();
        owed.next_run = Some(ended);
        let after_owed = ended + chrono::Duration::milliseconds(30);
        assert_eq!(
            owed.next_run_after_run(ended, after_owed, Tz::UTC),
            Some(jitter.apply(next + chrono::Duration::minutes(1)))
        );
        // Started on time: the next slot is simply next.
        assert_eq!(j.next_run_after_run(due, due, Tz::UTC), Some(next_due));
        // Paused meanwhile: the pause decides.
        j.paused_until = Some(at(23, 0) + chrono::Duration::hours(2));
        assert_ne!(j.next_run_after_run(started, ended, Tz::UTC), Some(ended));
    }

    #[test]
    fn with_wait_an_interval_still_counts_from_the_end_of_a_long_run() {
        let j = job();
        // 600 s interval; a run of 15 minutes.
        assert_eq!(
            j.next_run_after_run(at(10, 0), at(10, 15), Tz::UTC),
            Some(at(10, 25))
        );
    }

    #[test]
    fn an_interval_counts_from_the_end_of_the_run_or_the_skip() {
        let mut j = job();
        j.last_run = Some(at(9, 0));
        assert_eq!(
            j.next_run_after(at(10, 0), false, Tz::UTC),
            Some(at(10, 10))
        );
        assert_eq!(j.next_run_after(at(10, 0), true, Tz::UTC), Some(at(10, 10)));
        assert_eq!(j.next_run(at(9, 5), Tz::UTC), Some(at(9, 10)));
    }

    #[test]
    fn a_removed_or_manual_job_has_no_next_run() {
        let mut j = job();
        j.removed = true;
        assert_eq!(j.next_run(at(9, 0), Tz::UTC), None);
        let mut m = job();
        m.builtin_interval_seconds = None;
        assert_eq!(m.next_run(at(9, 0), Tz::UTC), None);
        assert!(m.upcoming_runs(None, at(9, 0), 3, Tz::UTC).is_empty());
    }

    #[test]
    fn a_job_is_silent_too_long_only_past_its_expectation_counted_from_the_later_of_success_and_setting(
    ) {
        let mut j = job();
        assert!(!j.overdue_since_success(at(12, 0)), "no expectation, never");
        j.builtin_expect_success_within_seconds = Some(3600);
        j.expect_success_since = Some(at(9, 0));
        assert!(
            !j.overdue_since_success(at(10, 0)),
            "exactly D is not longer than D"
        );
        assert!(j.overdue_since_success(at(10, 1)));
        // A success after the setting counts from the success; one before
        // it does not shorten the grace the setting gives.
        j.last_success = Some(at(9, 30));
        assert!(!j.overdue_since_success(at(10, 1)));
        assert!(j.overdue_since_success(at(10, 31)));
        j.last_success = Some(at(8, 0));
        assert!(!j.overdue_since_success(at(9, 59)));
        // The operator's value wins over the declared one.
        j.override_expect_success_within_seconds = Some(60);
        assert!(j.overdue_since_success(at(9, 2)));
        j.removed = true;
        assert!(
            !j.overdue_since_success(at(12, 0)),
            "a removed job is never overdue"
        );
    }

    #[test]
    fn the_dead_man_alert_belongs_to_one_silence_and_its_success_mails_the_recovery() {
        let mut j = job();
        j.builtin_expect_success_within_seconds = Some(60);
        j.expect_success_since = Some(at(9, 0));
        assert!(!j.dead_man_alerted());
        j.overdue_alerted_at = Some(at(9, 2));
        assert!(j.dead_man_alerted());
        // Not failing (disabled, skipped): the recovery still goes out,
        // counting no failed runs.
        let after = j.alert_after_run(RunState::Succeeded, false, true);
        assert_eq!(after.mail, AlertMail::Recovery { failed_runs: 0 });
        assert_eq!(
            j.alert_after_run(RunState::Succeeded, false, false).mail,
            AlertMail::None,
            "nobody to mail"
        );
        // A success after the alert starts a new silence: the old alert is
        // not this one's.
        j.last_success = Some(at(9, 5));
        assert!(!j.dead_man_alerted());
        assert_eq!(
            j.alert_after_run(RunState::Succeeded, false, true).mail,
            AlertMail::None
        );
    }

    #[test]
    fn due_overdue_and_failing_follow_the_spec() {
        let mut j = job();
        j.next_run = Some(at(9, 0));
        assert!(j.is_due(at(9, 0), false));
        assert!(!j.is_due(at(8, 59), false));
        assert!(!j.is_due(at(9, 0), true));
        assert!(!j.is_overdue(at(9, 1), false));
        assert!(j.is_overdue(at(9, 2), false));
        j.running_run = Some(1);
        assert!(!j.is_due(at(9, 0), false));
        assert!(!j.is_overdue(at(10, 0), false));
        j.last_state = Some(RunState::Interrupted);
        assert!(j.is_failing());
        j.last_state = Some(RunState::Succeeded);
        assert!(!j.is_failing());
    }

    #[test]
    fn upcoming_interval_runs_count_from_the_last_run_and_after_from_the_instant() {
        let mut j = job();
        j.last_run = Some(at(9, 0));
        assert_eq!(
            j.upcoming_runs(None, at(9, 3), 3, Tz::UTC),
            [at(9, 10), at(9, 20), at(9, 30)]
        );
        assert_eq!(
            j.upcoming_runs(Some(at(12, 0)), at(9, 3), 2, Tz::UTC),
            [at(12, 10), at(12, 20)]
        );
    }

    #[test]
    fn an_override_equal_to_the_builtin_schedule_is_no_override() {
        let mut j = job();
        j.set_override(Some(Schedule::Interval(600)));
        assert_eq!(j.override_interval_seconds, None);
        j.set_override(Some(Schedule::Interval(60)));
        assert_eq!(j.override_interval_seconds, Some(60));
        assert_eq!(j.effective_schedule(), Some(Schedule::Interval(60)));
        j.set_override(None);
        assert_eq!(j.effective_schedule(), Some(Schedule::Interval(600)));
    }

    #[test]
    fn the_zone_is_the_operators_else_the_declared_else_the_configured() {
        let mut j = job();
        assert_eq!(j.zone(Tz::UTC), Tz::UTC);
        j.builtin_timezone = Some("America/New_York".into());
        assert_eq!(j.zone(Tz::UTC), Tz::America__New_York);
        j.override_timezone = Some("Asia/Tokyo".into());
        assert_eq!(j.zone(Tz::UTC), Tz::Asia__Tokyo);
        j.override_timezone = Some("Nowhere/Else".into());
        assert_eq!(j.zone(Tz::UTC), Tz::UTC);
    }

    #[test]
    fn times_and_cron_slots_are_read_in_the_jobs_zone() {
        let mut j = job();
        j.builtin_interval_seconds = None;
        j.builtin_cron = Some("0 9 * * *".into());
        j.builtin_timezone = Some("America/New_York".into());
        // 09:00 in New York in November is 14:00 UTC.
        assert_eq!(
            j.next_run(at(10, 0), Tz::Europe__Stockholm),
            Some(at(14, 0))
        );
        assert_eq!(
            j.upcoming_runs(None, at(10, 0), 1, Tz::Europe__Stockholm),
            [at(14, 0)]
        );
    }

    #[test]
    fn a_scheduled_run_past_its_deadline_is_missed_and_a_requested_one_never() {
        let mut j = job();
        j.next_run = Some(at(9, 0));
        assert_eq!(j.missed_start_deadline(at(12, 0)), None);
        j.builtin_start_deadline_seconds = Some(600);
        assert_eq!(j.missed_start_deadline(at(9, 10)), None);
        assert_eq!(j.missed_start_deadline(at(9, 15)), Some(300));
        j.override_start_deadline_seconds = Some(3600);
        assert_eq!(j.missed_start_deadline(at(9, 15)), None);
        assert_eq!(j.missed_start_deadline(at(10, 1)), Some(60));
        j.requested_run = Some(at(9, 0));
        assert_eq!(j.missed_start_deadline(at(12, 0)), None);
    }
    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    #[test]
    fn a_failure_with_retries_left_runs_again_after_a_doubling_delay() {
        let mut j = job();
        j.builtin_retries = 3;
        j.builtin_retry_delay_seconds = 30;
        let end = at(10, 0);
        for (attempt, wait) in [(1, 30), (2, 60), (3, 120)] {
            let after = j.after_run(attempt, RunState::Failed, end, Tz::UTC);
            assert_eq!(after.next_run, Some(end + secs(wait)));
            assert_eq!(after.next_attempt, attempt + 1);
            assert_eq!(
                after.retry,
                Some(Retry {
                    number: attempt.unsigned_abs(),
                    of: 3,
                    at: end + secs(wait)
                })
            );
        }
        for state in [RunState::TimedOut, RunState::Interrupted] {
            assert!(j.after_run(1, state, end, Tz::UTC).retry.is_some());
        }
    }

    #[test]
    fn the_last_attempt_or_a_success_ends_the_series_on_the_regular_schedule() {
        let mut j = job();
        j.builtin_retries = 2;
        let end = at(10, 0);
        let last = j.after_run(3, RunState::Failed, end, Tz::UTC);
        assert_eq!(last.retry, None);
        assert_eq!(last.next_attempt, 1);
        assert_eq!(last.next_run, Some(at(10, 10)));
        let success = j.after_run(2, RunState::Succeeded, end, Tz::UTC);
        assert_eq!(success.retry, None);
        assert_eq!(success.next_attempt, 1);
        assert_eq!(success.next_run, Some(at(10, 10)));
        j.builtin_retries = 0;
        assert_eq!(j.after_run(1, RunState::Failed, end, Tz::UTC).retry, None);
    }

    #[test]
    fn the_regular_slot_wins_when_it_comes_first_and_is_still_the_next_attempt() {
        let mut j = job();
        j.builtin_retries = 5;
        j.builtin_retry_delay_seconds = 900;
        let after = j.after_run(1, RunState::Failed, at(10, 0), Tz::UTC);
        assert_eq!(after.next_run, Some(at(10, 10)));
        assert_eq!(after.next_attempt, 2);
        assert_eq!(after.retry.map(|r| r.at), Some(at(10, 10)));
    }

    #[test]
    fn a_retry_waits_at_most_a_day_and_overrides_win() {
        assert_eq!(retry_wait_seconds(30, 1), 30);
        assert_eq!(retry_wait_seconds(30, 4), 240);
        assert_eq!(retry_wait_seconds(3600, 10), MAX_RETRY_WAIT_SECS);
        assert_eq!(retry_wait_seconds(1, 100), MAX_RETRY_WAIT_SECS);
        let mut j = job();
        j.builtin_interval_seconds = None;
        j.builtin_retries = 1;
        j.override_retries = Some(100);
        j.override_retry_delay_seconds = Some(7200);
        assert_eq!(j.retries(), 100);
        let after = j.after_run(99, RunState::Failed, at(10, 0), Tz::UTC);
        assert_eq!(after.next_run, Some(at(10, 0) + secs(MAX_RETRY_WAIT_SECS)));
        j.enabled = false;
        assert_eq!(
            j.after_run(1, RunState::Failed, at(10, 0), Tz::UTC)
                .next_run,
            None
        );
    }

    #[test]
    fn failures_mail_from_the_alert_after_th_in_a_row_and_a_success_recovers() {
        let mut j = job();
        j.builtin_alert_after = 3;
        let mut mails = Vec::new();
        for _ in 0..4 {
            let a = j.alert_after_run(RunState::Failed, false, true);
            mails.push(a.mail);
            (j.consecutive_failures, j.alert_mailed) = (a.consecutive_failures, a.alert_mailed);
        }
        assert_eq!(
            mails,
            [
                AlertMail::None,
                AlertMail::None,
                AlertMail::Failure,
                AlertMail::Failure
            ]
        );
        assert_eq!(j.consecutive_failures, 4);
        let back = j.alert_after_run(RunState::Succeeded, false, true);
        assert_eq!(back.mail, AlertMail::Recovery { failed_runs: 4 });
        assert_eq!((back.consecutive_failures, back.alert_mailed), (0, false));
    }

    #[test]
    fn a_streak_below_alert_after_ends_without_a_recovery_mail() {
        let mut j = job();
        j.override_alert_after = Some(5);
        j.builtin_alert_after = 1;
        assert_eq!(j.alert_after(), 5, "the operator's value wins");
        j.consecutive_failures = 2;
        let back = j.alert_after_run(RunState::Succeeded, false, true);
        assert_eq!(back.mail, AlertMail::None);
        assert_eq!(back.consecutive_failures, 0);
    }

    #[test]
    fn a_retry_to_come_counts_nothing_yet_and_timeouts_count_as_failures() {
        let mut j = job();
        j.consecutive_failures = 1;
        let pending = j.alert_after_run(RunState::Failed, true, true);
        assert_eq!(
            (pending.consecutive_failures, pending.mail),
            (1, AlertMail::None)
        );
        for state in [RunState::TimedOut, RunState::Interrupted] {
            let a = j.alert_after_run(state, false, true);
            assert_eq!((a.consecutive_failures, a.mail), (2, AlertMail::Failure));
        }
    }

    #[test]
    fn a_skip_or_replace_run_meets_the_slot_counted_from_its_start_and_wait_none() {
        let mut j = job();
        assert_eq!(j.slot_while_running(at(9, 0), Tz::UTC), None);
        j.builtin_overlap = Overlap::Skip;
        assert_eq!(j.slot_while_running(at(9, 0), Tz::UTC), Some(at(9, 10)));
        j.override_overlap = Some(Overlap::Wait);
        assert_eq!(j.slot_while_running(at(9, 0), Tz::UTC), None);
        j.override_overlap = Some(Overlap::Replace);
        j.builtin_interval_seconds = None;
        j.builtin_times = Some(vec![NaiveTime::from_hms_opt(9, 30, 0).expect("a time")]);
        assert_eq!(j.slot_while_running(at(9, 0), Tz::UTC), Some(at(9, 30)));
        j.enabled = false;
        assert_eq!(j.slot_while_running(at(9, 0), Tz::UTC), None);
    }

    #[test]
    fn a_replace_slot_that_came_runs_at_once_as_a_new_series() {
        let mut j = job();
        j.builtin_overlap = Overlap::Replace;
        j.builtin_retries = 3;
        j.running_run = Some(7);
        j.overlap_slot = Some(at(9, 10));
        let after = j.after_run(2, RunState::Interrupted, at(9, 10), Tz::UTC);
        assert_eq!(
            after,
            AfterRun {
                next_run: Some(at(9, 10)),
                next_attempt: 1,
                retry: None
            }
        );
        // Ended before its slot: the schedule and the retries as always.
        let early = j.after_run(1, RunState::Failed, at(9, 5), Tz::UTC);
        assert_eq!(early.next_attempt, 2);
        j.replace_run = Some(7);
        assert!(j.replaced(7));
        assert!(!j.replaced(8));
    }

    #[test]
    fn chains_fire_on_their_outcome_once_the_series_is_over() {
        let mut j = job();
        j.builtin_on_success = vec!["report".into()];
        j.builtin_on_failure = vec!["page".into()];
        assert_eq!(j.chained(RunState::Succeeded, false), ["report"]);
        for state in [RunState::Failed, RunState::TimedOut, RunState::Interrupted] {
            assert_eq!(j.chained(state, false), ["page"]);
            assert!(j.chained(state, true).is_empty());
        }
        j.override_on_failure = Some(Vec::new());
        assert!(j.chained(RunState::Failed, false).is_empty());
        assert_eq!(
            Overlap::ALL.map(Overlap::as_str),
            ["wait", "skip", "replace"]
        );
        assert_eq!(Overlap::parse("replace"), Some(Overlap::Replace));
        assert_eq!(Overlap::parse("kill"), None);
    }

    #[test]
    fn with_no_one_to_mail_the_streak_is_counted_but_no_mail_is_marked() {
        let j = job();
        let a = j.alert_after_run(RunState::Failed, false, false);
        assert_eq!(
            (a.consecutive_failures, a.alert_mailed, a.mail),
            (1, false, AlertMail::None)
        );
    }
}
