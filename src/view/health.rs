//! The health of the scheduler — runners, hold, last run, running, overdue
//! and failing jobs — for `jobs status`, the banners above `jobs list`, and
//! the web page's banners and `/healthz`. A leaf like `json.rs`: no command
//! here, only the facts and their one wording.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

use crate::job::Job;
use crate::schedule::Schedule;
use crate::store;
use crate::view::text;

/// A due job that no live runner can take (§19) is a problem after this long.
const UNTAKEN_AFTER_SECS: i64 = 60;

/// A last run longer ago than this is worth a warning above `jobs list`.
const STALE_LAST_RUN_SECS: i64 = 6 * 3600;

/// The facts above `jobs list` and in `jobs status`.
pub struct Overview {
    pub now: DateTime<Utc>,
    pub runners: Vec<store::RunnerRow>,
    pub hold: store::Hold,
    pub last_run: Option<DateTime<Utc>>,
}

pub fn overview(client: &mut postgres::Client) -> anyhow::Result<Overview> {
    let store::Overview {
        now,
        hold,
        last_run,
    } = store::overview(client)?;
    Ok(Overview {
        now,
        runners: store::connected_runners(client)?,
        hold,
        last_run,
    })
}

/// The facts of `jobs status`, and the banners of `jobs list`.
pub struct Health {
    pub overview: Overview,
    pub running: Vec<String>,
    /// Every overdue job, in the order of the jobs table: those past their
    /// next run by over a minute (§10) and those that have not succeeded within their
    /// `expect_success_within` (§20), each once.
    pub overdue_names: Vec<String>,
    pub failing: Vec<(String, String)>,
    pub problems: Vec<String>,
}

pub fn health(client: &mut postgres::Client, tz: Tz) -> anyhow::Result<Health> {
    let overview = overview(client)?;
    let rows = store::listed_jobs(client)?;
    let running: Vec<String> = rows
        .iter()
        .filter(|r| r.running())
        .map(|r| r.name.clone())
        .collect();
    let overdue: Vec<(String, DateTime<Utc>)> = if overview.hold.held {
        Vec::new()
    } else {
        rows.iter()
            .filter(|r| r.is_overdue(overview.now, false))
            .filter_map(|r| Some((r.name.clone(), r.next_run?)))
            .collect()
    };
    let silent: Vec<&Job> = rows
        .iter()
        .filter(|r| r.overdue_since_success(overview.now))
        .collect();
    let overdue_names: Vec<String> = rows
        .iter()
        .filter(|r| {
            overdue.iter().any(|(n, _)| *n == r.name) || silent.iter().any(|s| s.name == r.name)
        })
        .map(|r| r.name.clone())
        .collect();
    let failing: Vec<(String, String)> = rows
        .iter()
        .filter(|r| r.is_failing())
        .filter_map(|r| Some((r.name.clone(), r.last_state?.to_string())))
        .collect();
    let mut problems = Vec::new();
    if overview.runners.is_empty() {
        problems.push("No runner is connected.".to_string());
    }
    if overview.hold.held {
        let until = overview.hold.until.map_or_else(String::new, |end| {
            format!(" until {}", text::human_time(end, tz))
        });
        problems.push(match overview.hold.since {
            Some(since) => format!(
                "Jobs are held since {}{until}.",
                text::human_time(since, tz)
            ),
            None => format!("Jobs are held{until}."),
        });
    }
    for (name, next) in &overdue {
        problems.push(format!(
            "Job {name} is overdue: it was due at {}.",
            text::human_time(*next, tz)
        ));
    }
    for job in &silent {
        problems.push(silent_problem(job, tz));
    }
    if !overview.hold.held {
        for job in &rows {
            if let Some(tags) = untaken(job, &overview) {
                problems.push(format!(
                    "{} is due but no live runner has tags {}",
                    job.name,
                    tags.join(", ")
                ));
            }
        }
    }
    for (name, state) in &failing {
        problems.push(format!(
            "Job {name} did not succeed: its last run ended {state}."
        ));
    }
    Ok(Health {
        overview,
        running,
        overdue_names,
        failing,
        problems,
    })
}

/// The problem line of a job overdue for its dead-man alert (§20).
fn silent_problem(job: &Job, tz: Tz) -> String {
    let within = job
        .expect_success_within_seconds()
        .map_or_else(String::new, crate::schedule::format_duration);
    let last = text::human_time_opt(job.last_success, tz, "never");
    format!(
        "Job {} is overdue: it has not succeeded for {within} (last success: {last}).",
        job.name
    )
}

/// The tags of a job that has been due for a minute and that no live runner
/// has all of (§19); None when some runner can take it, or when it needs no
/// tags (then "No runner is connected" says it all).
fn untaken<'a>(job: &'a Job, overview: &Overview) -> Option<&'a [String]> {
    let tags = job.runs_on();
    let due_since = job.next_run?;
    let waiting = job.enabled && !job.removed && !job.running();
    let long = (overview.now - due_since).num_seconds() >= UNTAKEN_AFTER_SECS;
    let takers = overview
        .runners
        .iter()
        .any(|r| tags.iter().all(|t| r.tags.contains(t)));
    (!tags.is_empty() && waiting && long && !takers).then_some(tags)
}

impl Health {
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The status object of `jobs status --json` and `/healthz`.
pub fn status_json(health: &Health, tz: Tz) -> Value {
    let names = |v: &[String]| Value::from(v.to_vec());
    json!({
        "healthy": health.healthy(),
        "held": health.overview.hold.held,
        "held_until": text::json_time_opt(
            health.overview.hold.until.filter(|_| health.overview.hold.held),
            tz
        ),
        "runners": health.overview.runners.iter().map(|r| json!({
            "host": r.host,
            "pid": r.pid,
            "started_at": text::json_time(r.started_at, tz),
            "tags": r.tags,
            "version": r.version,
        })).collect::<Vec<_>>(),
        "last_run": text::json_time_opt(health.overview.last_run, tz),
        "running": names(&health.running),
        "overdue": names(&health.overdue_names),
        "failing": names(&health.failing.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()),
        "problems": health.problems,
    })
}

/// The banner lines above `jobs list` and on the web page's frontpage.
pub fn banner(overview: &Overview, tz: Tz) -> Vec<String> {
    let mut lines = Vec::new();
    if overview.runners.is_empty() {
        lines.push("Runner:   no runner is connected".to_string());
    } else {
        for runner in &overview.runners {
            lines.push(format!(
                "Runner:   connected on {} (pid {}) since {}",
                runner.host,
                runner.pid,
                text::human_time(runner.started_at, tz)
            ));
        }
    }
    let until = overview.hold.until.map_or_else(String::new, |end| {
        format!(" until {}", text::human_time(end, tz))
    });
    lines.push(match (overview.hold.held, overview.hold.since) {
        (true, Some(since)) => format!(
            "Hold:     jobs are held since {}{until}",
            text::human_time(since, tz)
        ),
        (true, None) => format!("Hold:     jobs are held{until}"),
        (false, _) => "Hold:     jobs are not held".to_string(),
    });
    match overview.last_run {
        None => lines.push("Last run: no job has run yet".to_string()),
        Some(last) => {
            lines.push(format!(
                "Last run: {} ({})",
                text::human_time(last, tz),
                text::relative(last, overview.now)
            ));
            if (overview.now - last).num_seconds() > STALE_LAST_RUN_SECS {
                lines.push("warning: the last job ran over 6 hours ago".to_string());
            }
        }
    }
    lines
}

/// The effective schedule for `jobs list`, with the job's zone when its
/// wall-clock slots are read in another zone than the display's.
pub fn list_schedule(row: &Job, tz: Tz) -> String {
    let Some(effective) = row.effective_schedule() else {
        return "-".into();
    };
    let zone = row.zone(tz);
    match effective {
        Schedule::Interval(_) => effective.describe(),
        _ if zone != tz => format!("{} ({})", effective.describe(), zone.name()),
        _ => effective.describe(),
    }
}
