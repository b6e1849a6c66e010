//! The words and times that the command line and the web page both show:
//! instants in the configured zone (`2026-11-27 03:07:00 CET`) and as RFC 3339
//! with milliseconds for JSON, how far away an instant is, durations with one
//! decimal, and a job's retries, alert and transaction lines. Pure: no
//! terminal, no HTML, so both interfaces word a fact the same way.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// `YYYY-MM-DD HH:MM:SS ZONE` in the configured zone.
pub fn human_time(instant: DateTime<Utc>, tz: Tz) -> String {
    instant
        .with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// `human_time`, or `none` when there is no instant.
pub fn human_time_opt(instant: Option<DateTime<Utc>>, tz: Tz, none: &str) -> String {
    instant.map_or_else(|| none.to_string(), |i| human_time(i, tz))
}

/// RFC 3339 with milliseconds and the zone's offset at that instant.
pub fn json_time(instant: DateTime<Utc>, tz: Tz) -> String {
    crate::schedule::json_instant(instant, tz)
}

pub fn json_time_opt(instant: Option<DateTime<Utc>>, tz: Tz) -> serde_json::Value {
    instant.map_or(serde_json::Value::Null, |i| json_time(i, tz).into())
}

/// Who a job's alerts go to (§20): its own list with `(override)` when the
/// operator set it, else the global recipient.
pub fn notify(job: &crate::job::Job, global: Option<&str>) -> String {
    match job.notify() {
        Some([]) => "nobody".to_string(),
        Some(list) => {
            let origin = origin(job.override_notify.is_some());
            format!("{}{origin}", list.join(", "))
        }
        None => match global {
            Some(email) => format!("{email} (notifications.email)"),
            None => "nobody (no notifications.email)".to_string(),
        },
    }
}

/// The effective recipients of a job's alerts (§20), for JSON.
pub fn notify_list(job: &crate::job::Job, global: Option<&str>) -> Vec<String> {
    match job.notify() {
        Some(list) => list.to_vec(),
        None => global.map(|e| vec![e.to_string()]).unwrap_or_default(),
    }
}

/// The runners a job runs on (§19): `any runner`, or `runners with tags
/// gpu, eu`, and whether the operator set it.
pub fn runs_on(job: &crate::job::Job) -> String {
    let tags = job.runs_on();
    let what = if tags.is_empty() {
        "any runner".to_string()
    } else {
        format!("runners with tags {}", tags.join(", "))
    };
    let origin = origin(job.override_runs_on.is_some());
    format!("{what}{origin}")
}

/// A `(override)` mark when the operator set the value shown.
fn origin(overridden: bool) -> &'static str {
    if overridden {
        " (override)"
    } else {
        ""
    }
}

/// A job's overlap policy (§21), with what it means and whether the
/// operator set it.
pub fn overlap(job: &crate::job::Job) -> String {
    let policy = job.overlap();
    let what = match policy {
        crate::job::Overlap::Wait => "a slot that comes during a run waits for it to end",
        crate::job::Overlap::Skip => "a slot that comes during a run is skipped",
        crate::job::Overlap::Replace => {
            "a slot that comes during a run stops it and starts a new one"
        }
    };
    format!("{policy}{}: {what}", origin(job.override_overlap.is_some()))
}

/// A chain on outcome (§21): the jobs it schedules, or `none`.
pub fn chain(jobs: &[String], overridden: bool) -> String {
    let what = if jobs.is_empty() {
        "none".to_string()
    } else {
        jobs.join(", ")
    };
    format!("{what}{}", origin(overridden))
}

/// An optional duration setting (§20) as people read it: `none`, or
/// `HH:MM:SS`, with `(override)` when the operator set it.
fn duration_setting(secs: Option<u32>, overridden: bool) -> String {
    let what = secs.map_or_else(|| "none".to_string(), crate::schedule::format_duration);
    let origin = origin(overridden);
    format!("{what}{origin}")
}

/// A job's dead-man silence (§20), `expect_success_within`.
pub fn expect_success_within(job: &crate::job::Job) -> String {
    duration_setting(
        job.expect_success_within_seconds(),
        job.override_expect_success_within_seconds.is_some(),
    )
}

/// A job's slow-run warning (§20), `warn_after`.
pub fn warn_after(job: &crate::job::Job) -> String {
    duration_setting(
        job.warn_after_seconds(),
        job.override_warn_after_seconds.is_some(),
    )
}

/// A job's jitter (§21): `none`, or `up to 00:05:00 after each slot`, and
/// whether the operator set it.
pub fn jitter(job: &crate::job::Job) -> String {
    let secs = job.jitter_seconds();
    let what = if secs == 0 {
        "none".to_string()
    } else {
        format!(
            "up to {} after each slot",
            crate::schedule::format_duration(secs)
        )
    };
    let origin = origin(job.override_jitter_seconds.is_some());
    format!("{what}{origin}")
}

/// A job's `alert_after` as people read it, with `(override)` when the
/// operator set it.
pub fn alert_after(job: &crate::job::Job) -> String {
    let n = job.alert_after();
    let what = if n == 1 {
        "every failure is mailed".to_string()
    } else {
        format!("failures are mailed from the {} in a row on", ordinal(n))
    };
    let origin = origin(job.override_alert_after.is_some());
    format!("{n}{origin}: {what}")
}

/// 1st, 2nd, 3rd, 4th, 11th, 21st…
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// How a job runs, as `jobs show` and the job page say it: where, and within
/// what timeout.
pub fn kind(job: &crate::job::Job) -> String {
    let timeout = crate::schedule::format_duration(job.timeout_seconds.max(1).unsigned_abs());
    match job.kind() {
        crate::job::Kind::Internal => "internal (runs in the runner's process)".to_string(),
        crate::job::Kind::Process => format!("child process, timeout {timeout}"),
        crate::job::Kind::Sql => {
            format!("sql (runs in the runner, on a connection of its own), timeout {timeout}")
        }
    }
}

/// A job's next run as `jobs show` and the job page say it: the time and how
/// far away it is, or why there is none.
pub fn next_run(job: &crate::job::Job, tz: Tz, now: DateTime<Utc>) -> String {
    match job.next_run {
        Some(next) => format!("{} ({})", human_time(next, tz), relative(next, now)),
        None if !job.enabled => "none (disabled)".into(),
        None => "none (no schedule)".into(),
    }
}

/// Put a job's pending `run-now --at` runs (§21) right after its "Next
/// run" line, one `Extra run at` line each, as `jobs show` and the job page
/// list them.
pub fn insert_extra_runs(
    facts: &mut Vec<(&str, String)>,
    job: &crate::job::Job,
    tz: Tz,
    now: DateTime<Utc>,
) {
    let after = facts
        .iter()
        .position(|(label, _)| *label == "Next run")
        .map_or(facts.len(), |i| i + 1);
    for (i, at) in job.extra_runs.iter().enumerate() {
        let line = format!("{} ({})", human_time(*at, tz), relative(*at, now));
        facts.insert(after + i, ("Extra run at", line));
    }
}

/// What an SQL job's run commits (§18); None for other jobs.
pub fn transaction(job: &crate::job::Job) -> Option<&'static str> {
    match job.kind() {
        crate::job::Kind::Sql if job.sql_autocommit() => Some("none (sql_autocommit)"),
        crate::job::Kind::Sql => Some("one per run (nothing of a failed run is committed)"),
        _ => None,
    }
}

/// A job's retries as people read them: `none`, or `3, first after 00:30
/// (doubling)`, with `(override)` when the operator set them.
pub fn retries(job: &crate::job::Job) -> String {
    let origin =
        origin(job.override_retries.is_some() || job.override_retry_delay_seconds.is_some());
    match job.retries() {
        0 => format!("none{origin}"),
        n => format!(
            "{n}, first after {} (doubling){origin}",
            crate::schedule::format_duration(job.retry_delay_seconds())
        ),
    }
}

/// Seconds with one decimal: `1.2 s`.
pub fn seconds(secs: f64) -> String {
    format!("{secs:.1} s")
}

/// "in 4 min", "3 h ago": how far `instant` is from `now`, roughly.
pub fn relative(instant: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = (instant - now).num_seconds();
    let span = delta.unsigned_abs();
    if span == 0 {
        return "now".into();
    }
    let text = if span < 60 {
        format!("{span} s")
    } else if span < 3600 {
        format!("{} min", span / 60)
    } else if span < 48 * 3600 {
        let (h, m) = (span / 3600, span % 3600 / 60);
        if m == 0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        }
    } else {
        format!("{} days", span / 86400)
    };
    if delta >= 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn human_and_json_times_use_the_configured_zone() {
        let t = Utc.with_ymd_and_hms(2026, 11, 27, 2, 7, 0).unwrap()
            + chrono::Duration::milliseconds(123);
        let tz = chrono_tz::Europe::Stockholm;
        assert_eq!(human_time(t, tz), "2026-11-27 03:07:00 CET");
        assert_eq!(json_time(t, tz), "2026-11-27T03:07:00.123+01:00");
        assert_eq!(json_time(t, Tz::UTC), "2026-11-27T02:07:00.123+00:00");
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        assert_eq!(
            relative(now + chrono::Duration::seconds(240), now),
            "in 4 min"
        );
        assert_eq!(
            relative(now - chrono::Duration::seconds(3 * 3600), now),
            "3 h ago"
        );
        assert_eq!(
            relative(now + chrono::Duration::seconds(5400), now),
            "in 1 h 30 min"
        );
        assert_eq!(seconds(1.234), "1.2 s");
    }
}
