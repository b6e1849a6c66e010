//! The job and run objects of §7's JSON, for `jobs list/show/history/output
//! --json` and the web page's `/api/` (which must print the same objects).
//! A leaf: it uses no command, so both interfaces print the same objects
//! without either reaching into the other.

use chrono::Utc;
use chrono_tz::Tz;
use serde_json::{json, Value};

use crate::job::{Job, RunState};
use crate::schedule;
use crate::store::RunRow;
use crate::view::text;

/// The job object of §7. `jobs list --json` serialises these straight from
/// the rows (at 10,000 jobs, a `serde_json::Value` per job first doubled its
/// time); only `jobs show` makes one into a `Value`, to add its history.
#[derive(serde::Serialize)]
pub struct JobJson<'a> {
    name: &'a str,
    app: &'a str,
    description: &'a str,
    enabled: bool,
    notify_on_success: bool,
    internal: bool,
    /// "internal", "process" or "sql".
    kind: &'static str,
    timeout_seconds: i32,
    retries: u32,
    retry_delay: String,
    alert_after: u32,
    /// The tags a runner needs to take the job (§19); empty: any runner.
    runs_on: &'a [String],
    /// Each slot delayed by up to this (§21): `HH:MM:SS`, or null for none.
    jitter: Option<String>,
    /// The end of the job's pause while it lasts (§21), else null.
    paused_until: Value,
    /// The extra runs pending at an instant (§21: `run-now --at`), earliest first.
    extra_runs: Vec<String>,
    /// Who its alerts go to (§20): its own `notify`, else the global address.
    notify: Vec<String>,
    /// The overlap policy (§21): "wait", "skip" or "replace".
    overlap: &'static str,
    /// The jobs scheduled when a run (or its series) succeeds or fails (§21).
    on_success: &'a [String],
    on_failure: &'a [String],
    /// The dead-man alert's silence (§20): `HH:MM:SS`, or null for none.
    expect_success_within: Option<String>,
    /// Whether it has not succeeded within that (§20).
    overdue: bool,
    /// The slow-run warning (§20): `HH:MM:SS`, or null for none.
    warn_after: Option<String>,
    consecutive_failures: i32,
    builtin_times: Option<Vec<String>>,
    builtin_interval: Option<String>,
    override_times: Option<Vec<String>>,
    override_interval: Option<String>,
    builtin_cron: Option<&'a str>,
    override_cron: Option<&'a str>,
    timezone: &'static str,
    start_deadline: Option<String>,
    next_run: Option<String>,
    last_run: Option<String>,
    last_state: Option<RunState>,
    last_skip: Option<String>,
    running: bool,
}

fn times_strings(times: &Option<Vec<chrono::NaiveTime>>) -> Option<Vec<String>> {
    match times {
        Some(t) if !t.is_empty() => Some(
            schedule::normalize_times(t.clone())
                .into_iter()
                .map(schedule::format_time)
                .collect(),
        ),
        _ => None,
    }
}

fn interval_string(secs: Option<i32>) -> Option<String> {
    secs.filter(|s| *s > 0)
        .map(|s| schedule::format_duration(s as u32))
}

impl<'a> JobJson<'a> {
    /// `global`: `notifications.email`, the recipient of a job without `notify`.
    pub fn new(row: &'a Job, tz: Tz, global: Option<&str>) -> Self {
        let time = |t: Option<chrono::DateTime<Utc>>| t.map(|t| text::json_time(t, tz));
        JobJson {
            name: &row.name,
            app: &row.app,
            description: &row.description,
            enabled: row.enabled,
            notify_on_success: row.notify_on_success,
            internal: row.internal,
            kind: row.kind().as_str(),
            timeout_seconds: row.timeout_seconds,
            retries: row.retries(),
            retry_delay: schedule::format_duration(row.retry_delay_seconds()),
            alert_after: row.alert_after(),
            runs_on: row.runs_on(),
            jitter: (row.jitter_seconds() > 0)
                .then(|| schedule::format_duration(row.jitter_seconds())),
            paused_until: text::json_time_opt(row.paused_at(chrono::Utc::now()), tz),
            extra_runs: row
                .extra_runs
                .iter()
                .map(|at| text::json_time(*at, tz))
                .collect(),
            notify: text::notify_list(row, global),
            overlap: row.overlap().as_str(),
            on_success: row.on_success(),
            on_failure: row.on_failure(),
            expect_success_within: row
                .expect_success_within_seconds()
                .map(schedule::format_duration),
            overdue: row.overdue_since_success(chrono::Utc::now()),
            warn_after: row.warn_after_seconds().map(schedule::format_duration),
            consecutive_failures: row.consecutive_failures,
            builtin_times: times_strings(&row.builtin_times),
            builtin_interval: interval_string(row.builtin_interval_seconds),
            override_times: times_strings(&row.override_times),
            override_interval: interval_string(row.override_interval_seconds),
            builtin_cron: row.builtin_cron.as_deref(),
            override_cron: row.override_cron.as_deref(),
            timezone: row.zone(tz).name(),
            start_deadline: row.start_deadline().map(schedule::format_duration),
            next_run: time(row.next_run),
            last_run: time(row.last_run),
            last_state: row.last_state,
            last_skip: time(row.last_skip),
            running: row.running(),
        }
    }
}

/// The job object of §7 as a value (for `jobs show`, which adds `history`).
pub fn job_json(row: &Job, tz: Tz, global: Option<&str>) -> Value {
    serde_json::to_value(JobJson::new(row, tz, global)).unwrap_or(Value::Null)
}

/// The run object of §7; `with_output` adds the whole output.
pub fn run_json(run: &RunRow, tz: Tz, with_output: bool) -> Value {
    let mut value = json!({
        "id": run.id,
        "job": run.job,
        "state": run.state,
        "started_at": text::json_time(run.started_at, tz),
        "finished_at": text::json_time_opt(run.finished_at, tz),
        "runtime_seconds": run.runtime_seconds,
        "attempt": run.attempt,
        "args": run.args,
        "output_first_line": run.output_first_line(),
    });
    if with_output {
        value["output"] = Value::from(run.output.clone());
    }
    value
}
