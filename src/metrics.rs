//! The Prometheus text format (0.0.4) of §15: what `manage metrics` prints
//! and the web page serves at `/metrics`. Both call [`render`].

use std::fmt::Write;

use postgres::GenericClient;

use crate::job::RunState;
use crate::store::{self, GlobalFigures, JobFigures};

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Read the figures (two statements) and render them.
pub fn render(client: &mut impl GenericClient) -> anyhow::Result<String> {
    let jobs = store::job_figures(client)?;
    let globals = store::global_figures(client)?;
    Ok(format(&jobs, &globals))
}

/// The finished states every job reports a `manage_job_runs_total` for,
/// zeros included, so that a rate over a state that never happened is 0
/// rather than absent.
const FINISHED: [RunState; 4] = [
    RunState::Succeeded,
    RunState::Failed,
    RunState::TimedOut,
    RunState::Interrupted,
];

/// One family: its `# HELP` and `# TYPE` lines, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, text)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(text));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// A label value as the text format wants it: backslash, double quote and
/// line feed escaped.
fn escape_label(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A sample value: integers without a fraction, other numbers as Rust
/// writes them (never in exponent form), NaN and infinities by name.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

fn seconds(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// A per-job gauge; jobs for which `value` gives nothing have no sample.
fn job_gauge(
    out: &mut String,
    jobs: &[JobFigures],
    name: &str,
    help: &str,
    value: impl Fn(&JobFigures) -> Option<f64>,
) {
    let mut family = Family::new(out, name, "gauge", help);
    for job in jobs {
        if let Some(v) = value(job) {
            family.sample(name, &[("job", &job.name)], v);
        }
    }
}

/// The text of §15, every family with `# HELP` and `# TYPE`.
pub fn format(jobs: &[JobFigures], globals: &GlobalFigures) -> String {
    let mut out = String::with_capacity(256 + jobs.len() * 900);
    job_gauge(
        &mut out,
        jobs,
        "manage_job_enabled",
        "Whether the job is enabled (1) or disabled (0).",
        |j| Some(flag(j.enabled)),
    );
    job_gauge(
        &mut out,
        jobs,
        "manage_job_running",
        "Whether the job is running now (1) or not (0).",
        |j| Some(flag(j.running)),
    );
    job_gauge(
        &mut out,
        jobs,
        "manage_job_next_run_timestamp_seconds",
        "When the job runs next, in seconds since the epoch; absent when it has no next run.",
        |j| j.next_run.map(seconds),
    );
    job_gauge(
        &mut out,
        jobs,
        "manage_job_last_run_timestamp_seconds",
        "When the job's last run finished, in seconds since the epoch.",
        |j| j.last_run.map(seconds),
    );
    job_gauge(
        &mut out,
        jobs,
        "manage_job_last_success_timestamp_seconds",
        "When the job's last successful run finished, in seconds since the epoch.",
        |j| j.last_success.map(seconds),
    );
    job_gauge(
        &mut out,
        jobs,
        "manage_job_last_duration_seconds",
        "How long the job's last run took, in seconds.",
        |j| j.last_runtime_seconds,
    );
    job_gauge(
        &mut out,
        jobs,
        "manage_job_consecutive_failures",
        "Failed runs (a retry series counts once) since the job's last success.",
        |j| Some(f64::from(j.consecutive_failures)),
    );
    job_gauge(
        &mut out,
        jobs,
        "manage_job_overdue",
        "Whether the job has not succeeded within its expect_success_within (1) or has (0).",
        |j| Some(flag(j.overdue)),
    );

    let name = "manage_job_runs_total";
    let mut family = Family::new(
        &mut out,
        name,
        "counter",
        "Runs recorded since the job was created, by final state; purging the history does not lower it.",
    );
    for job in jobs {
        for state in FINISHED {
            let n = job.runs.get(state.as_str()).copied().unwrap_or(0);
            family.sample(
                name,
                &[("job", &job.name), ("state", state.as_str())],
                n as f64,
            );
        }
        // A state this build does not know (a newer version's) still counts.
        for (state, n) in &job.runs {
            if !FINISHED.iter().any(|s| s.as_str() == state) {
                family.sample(name, &[("job", &job.name), ("state", state)], *n as f64);
            }
        }
    }

    let name = "manage_jobs_held";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Whether all jobs are held (1) or not (0).",
    )
    .sample(name, &[], flag(globals.held));
    let name = "manage_runners";
    Family::new(&mut out, name, "gauge", "Runners connected now.").sample(
        name,
        &[],
        globals.runners.len() as f64,
    );
    let name = "manage_runner_heartbeat_age_seconds";
    let mut family = Family::new(
        &mut out,
        name,
        "gauge",
        "Seconds since each connected runner's last heartbeat.",
    );
    for runner in &globals.runners {
        family.sample(
            name,
            &[("host", &runner.host), ("pid", &runner.pid.to_string())],
            runner.heartbeat_age_seconds,
        );
    }
    let name = "manage_mail_queue_length";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Notification mails waiting to be sent.",
    )
    .sample(name, &[], globals.mail_queue_length as f64);
    let name = "manage_mail_queue_oldest_age_seconds";
    Family::new(
        &mut out,
        name,
        "gauge",
        "Seconds the oldest waiting mail has been queued; 0 when none waits.",
    )
    .sample(name, &[], globals.mail_queue_oldest_age_seconds);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    fn job(name: &str) -> JobFigures {
        JobFigures {
            name: name.into(),
            enabled: true,
            running: false,
            next_run: None,
            last_run: None,
            last_success: None,
            last_runtime_seconds: None,
            consecutive_failures: 0,
            overdue: false,
            runs: BTreeMap::new(),
        }
    }

    fn globals() -> GlobalFigures {
        GlobalFigures {
            held: false,
            runners: vec![],
            mail_queue_length: 0,
            mail_queue_oldest_age_seconds: 0.0,
        }
    }

    #[test]
    fn every_family_has_help_and_type_even_with_no_samples() {
        let text = format(&[], &globals());
        for family in [
            "manage_job_enabled",
            "manage_job_running",
            "manage_job_next_run_timestamp_seconds",
            "manage_job_last_run_timestamp_seconds",
            "manage_job_last_success_timestamp_seconds",
            "manage_job_last_duration_seconds",
            "manage_job_consecutive_failures",
            "manage_job_overdue",
            "manage_job_runs_total",
            "manage_jobs_held",
            "manage_runners",
            "manage_runner_heartbeat_age_seconds",
            "manage_mail_queue_length",
            "manage_mail_queue_oldest_age_seconds",
        ] {
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
            let kind = if family == "manage_job_runs_total" {
                "counter"
            } else {
                "gauge"
            };
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "{family}"
            );
        }
    }

    #[test]
    fn samples_carry_escaped_labels_and_plain_numbers() {
        let mut a = job("we\"ird\\name\n");
        a.next_run = Some(
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 27, 3, 7, 0)
                .single()
                .expect("valid"),
        );
        a.last_runtime_seconds = Some(1.25);
        a.runs.insert("failed".into(), 3);
        let mut g = globals();
        g.runners.push(store::RunnerFigures {
            host: "web1".into(),
            pid: 42,
            heartbeat_age_seconds: 2.5,
        });
        let text = format(&[a], &g);
        assert!(text.contains(
            "manage_job_next_run_timestamp_seconds{job=\"we\\\"ird\\\\name\\n\"} 1795748820\n"
        ));
        assert!(
            text.contains("manage_job_last_duration_seconds{job=\"we\\\"ird\\\\name\\n\"} 1.25\n")
        );
        assert!(text
            .contains("manage_job_runs_total{job=\"we\\\"ird\\\\name\\n\",state=\"failed\"} 3\n"));
        assert!(text.contains(
            "manage_job_runs_total{job=\"we\\\"ird\\\\name\\n\",state=\"succeeded\"} 0\n"
        ));
        assert!(!text.contains("manage_job_last_run_timestamp_seconds{"));
        assert!(
            text.contains("manage_runner_heartbeat_age_seconds{host=\"web1\",pid=\"42\"} 2.5\n")
        );
        assert!(text.contains("manage_runners 1\n"));
    }
}
