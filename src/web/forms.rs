//! The forms of the web page, and how a sent form becomes the typed input of
//! an operation: through the value parsers of the command line's flags
//! (`crate::input`), so that a bad value is refused with the text `jobs
//! configure` prints.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::BadInput;
use crate::input;
use crate::job::Job;
use crate::ops::Pending;
use crate::schedule::{self, Schedule};
use crate::store::ConfigChange;
use crate::webhook::Webhook;

// Every form also carries the CSRF token, which `security::CheckedForm`
// checks before any of these is parsed (the fields it ignores): none of
// them has a `csrf` field.

/// A form that is a button and nothing more (hold, reset failure).
#[derive(Debug, Deserialize)]
pub struct ButtonForm {}

/// The run-now form: an optional delay, as `run-now --in`.
#[derive(Debug, Deserialize)]
pub struct RunNowForm {
    pub delay: Option<String>,
}

impl RunNowForm {
    /// Seconds from now; 0 when no delay was given.
    pub fn delay_secs(&self) -> anyhow::Result<u32> {
        match self.delay.as_deref().map(str::trim) {
            None | Some("") => Ok(0),
            Some(text) => input::parse_duration_arg(text).map_err(|p| refused("run in", text, p)),
        }
    }
}

/// The release form: what to do with the pending jobs.
#[derive(Debug, Deserialize)]
pub struct ReleaseForm {
    #[serde(default)]
    pub pending: String,
}

impl ReleaseForm {
    pub fn pending(&self) -> anyhow::Result<Pending> {
        match self.pending.as_str() {
            "run" => Ok(Pending::Run),
            "reschedule" => Ok(Pending::Reschedule),
            // The refusal of `jobs release` without --pending.
            _ => Err(BadInput::new(crate::ops::RELEASE_NEEDS_PENDING).into()),
        }
    }
}

/// The configuration form of a job page: every field as text, as shown and
/// as sent back. A checkbox that is not ticked is not sent at all; a text
/// field that is not sent (a script's partial form) leaves its setting alone.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConfigForm {
    pub enabled: Option<String>,
    pub notify_on_success: Option<String>,
    pub override_times: Option<String>,
    pub override_interval: Option<String>,
    pub override_cron: Option<String>,
    pub clear_override: Option<String>,
    pub timezone: Option<String>,
    pub start_deadline: Option<String>,
    pub retries: Option<String>,
    pub retry_delay: Option<String>,
    pub alert_after: Option<String>,
    pub runs_on: Option<String>,
    pub jitter: Option<String>,
    pub pause_until: Option<String>,
    pub overlap: Option<String>,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub notify: Option<String>,
    pub expect_success_within: Option<String>,
    pub warn_after: Option<String>,
}

/// `invalid value 'X' for FIELD: PROBLEM`, as clap words a refused flag value.
fn refused(field: &str, text: &str, problem: String) -> anyhow::Error {
    BadInput::new(format!("invalid value '{text}' for {field}: {problem}")).into()
}

impl ConfigForm {
    /// The form as a job's configuration fills it.
    pub fn from_job(job: &Job) -> Self {
        let times = job
            .override_times
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| {
                schedule::normalize_times(t.clone())
                    .into_iter()
                    .map(schedule::format_time)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let tick = |on: bool| on.then(|| "on".to_string());
        ConfigForm {
            enabled: tick(job.enabled),
            notify_on_success: tick(job.notify_on_success),
            override_times: Some(times),
            override_interval: Some(
                job.override_interval_seconds
                    .and_then(|s| u32::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .map(schedule::format_duration)
                    .unwrap_or_default(),
            ),
            override_cron: Some(job.override_cron.clone().unwrap_or_default()),
            clear_override: None,
            timezone: Some(job.override_timezone.clone().unwrap_or_default()),
            start_deadline: Some(
                job.override_start_deadline_seconds
                    .and_then(|s| u32::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .map(schedule::format_duration)
                    .unwrap_or_default(),
            ),
            retries: Some(job.retries().to_string()),
            retry_delay: Some(schedule::format_duration(job.retry_delay_seconds())),
            alert_after: Some(job.alert_after().to_string()),
            runs_on: Some(job.runs_on().join(",")),
            jitter: Some(match job.jitter_seconds() {
                0 => String::new(),
                secs => schedule::format_duration(secs),
            }),
            pause_until: Some(
                job.paused_at(chrono::Utc::now())
                    .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            ),
            overlap: Some(job.overlap().to_string()),
            on_success: Some(job.on_success().join(",")),
            on_failure: Some(job.on_failure().join(",")),
            notify: Some(job.notify().map(|list| list.join(",")).unwrap_or_default()),
            expect_success_within: Some(
                job.expect_success_within_seconds()
                    .map(schedule::format_duration)
                    .unwrap_or_default(),
            ),
            warn_after: Some(
                job.warn_after_seconds()
                    .map(schedule::format_duration)
                    .unwrap_or_default(),
            ),
        }
    }

    /// The change this form asks of `job`: only the fields that differ from
    /// what the page showed, each parsed as its `jobs configure` flag is.
    /// `webhooks`: the configured ones, which a `notify` list may name.
    pub fn change(
        &self,
        job: &Job,
        webhooks: &BTreeMap<String, Webhook>,
    ) -> anyhow::Result<ConfigChange> {
        let shown = ConfigForm::from_job(job);
        let mut change = ConfigChange::default();
        if self.enabled.is_some() != job.enabled {
            change.enabled = Some(self.enabled.is_some());
        }
        if self.notify_on_success.is_some() != job.notify_on_success {
            change.notify_on_success = Some(self.notify_on_success.is_some());
        }
        // A field not sent counts as shown: unchanged.
        let sent = |field: &Option<String>, shown: &Option<String>| -> String {
            field
                .as_deref()
                .or(shown.as_deref())
                .unwrap_or("")
                .trim()
                .to_string()
        };
        let shown_text = |field: &Option<String>| field.clone().unwrap_or_default();
        let times = &sent(&self.override_times, &shown.override_times);
        let interval = &sent(&self.override_interval, &shown.override_interval);
        let cron = &sent(&self.override_cron, &shown.override_cron);
        if self.clear_override.is_some() {
            if job.override_schedule().is_some() {
                change.override_schedule = Some(None);
            }
        } else if *times != shown_text(&shown.override_times)
            || *interval != shown_text(&shown.override_interval)
            || *cron != shown_text(&shown.override_cron)
        {
            let given = [times, interval, cron]
                .iter()
                .filter(|t| !t.is_empty())
                .count();
            if given > 1 {
                return Err(BadInput::new(
                    "override times, override interval and override cron: expected at most one \
                     of them (a schedule is one of times, interval or cron)",
                )
                .into());
            }
            change.override_schedule = Some(if !times.is_empty() {
                Some(Schedule::Times(
                    input::parse_times_arg(times)
                        .map_err(|p| refused("override times", times, p))?
                        .0,
                ))
            } else if !interval.is_empty() {
                Some(Schedule::Interval(
                    input::parse_duration_arg(interval)
                        .map_err(|p| refused("override interval", interval, p))?,
                ))
            } else if !cron.is_empty() {
                Some(Schedule::Cron(
                    input::parse_cron_arg(cron).map_err(|p| refused("override cron", cron, p))?,
                ))
            } else {
                None
            });
        }
        let zone = &sent(&self.timezone, &shown.timezone);
        if *zone != shown_text(&shown.timezone) {
            change.timezone = Some(if zone.is_empty() {
                None
            } else {
                Some(input::parse_zone_arg(zone).map_err(|p| refused("time zone", zone, p))?)
            });
        }
        let deadline = &sent(&self.start_deadline, &shown.start_deadline);
        if *deadline != shown_text(&shown.start_deadline) {
            change.start_deadline = Some(if deadline.is_empty() {
                None
            } else {
                Some(
                    input::parse_duration_arg(deadline)
                        .map_err(|p| refused("start deadline", deadline, p))?,
                )
            });
        }
        let retries = &sent(&self.retries, &shown.retries);
        if *retries != shown_text(&shown.retries) {
            let wanted =
                input::parse_retries_arg(retries).map_err(|p| refused("retries", retries, p))?;
            change.retries = (wanted != job.retries()).then_some(wanted);
        }
        let delay = &sent(&self.retry_delay, &shown.retry_delay);
        if *delay != shown_text(&shown.retry_delay) {
            let wanted =
                input::parse_duration_arg(delay).map_err(|p| refused("retry delay", delay, p))?;
            // "00:30" for "00:00:30" is no change.
            change.retry_delay_secs = (wanted != job.retry_delay_seconds()).then_some(wanted);
        }
        let alert_after = &sent(&self.alert_after, &shown.alert_after);
        if *alert_after != shown_text(&shown.alert_after) {
            let wanted = input::parse_alert_after_arg(alert_after)
                .map_err(|p| refused("alert after", alert_after, p))?;
            change.alert_after = (wanted != job.alert_after()).then_some(wanted);
        }
        let runs_on = &sent(&self.runs_on, &shown.runs_on);
        if *runs_on != shown_text(&shown.runs_on) {
            let wanted = input::parse_tags_arg(runs_on)
                .map_err(|p| refused("runs on", runs_on, p))?
                .0;
            change.runs_on = (wanted != job.runs_on()).then_some(Some(wanted));
        }
        let jitter = &sent(&self.jitter, &shown.jitter);
        if *jitter != shown_text(&shown.jitter) {
            // Emptied: back to the declared jitter, as --clear-jitter.
            change.jitter_secs = if jitter.is_empty() {
                Some(None)
            } else {
                let wanted =
                    input::parse_duration_arg(jitter).map_err(|p| refused("jitter", jitter, p))?;
                (wanted != job.jitter_seconds()).then_some(Some(wanted))
            };
        }
        let notify = &sent(&self.notify, &shown.notify);
        if *notify != shown_text(&shown.notify) {
            // Emptied: back to the declared list or the global recipient,
            // as --clear-notify.
            change.notify = Some(if notify.is_empty() {
                None
            } else {
                Some(
                    crate::config::notify_arg(notify, webhooks)
                        .map_err(|p| refused("notify", notify, p))?,
                )
            });
        }
        // Emptied: back to the declared value, as the --clear- flags.
        let duration = |text: &str, field: &str| -> anyhow::Result<Option<u32>> {
            if text.is_empty() {
                return Ok(None);
            }
            input::parse_duration_arg(text)
                .map(Some)
                .map_err(|p| refused(field, text, p))
        };
        let expect = &sent(&self.expect_success_within, &shown.expect_success_within);
        if *expect != shown_text(&shown.expect_success_within) {
            let wanted = duration(expect, "expect success within")?;
            change.expect_success_within_secs =
                (wanted != job.expect_success_within_seconds()).then_some(wanted);
        }
        let warn_after = &sent(&self.warn_after, &shown.warn_after);
        if *warn_after != shown_text(&shown.warn_after) {
            let wanted = duration(warn_after, "warn after")?;
            change.warn_after_secs = (wanted != job.warn_after_seconds()).then_some(wanted);
        }
        let pause = &sent(&self.pause_until, &shown.pause_until);
        if *pause != shown_text(&shown.pause_until) {
            // Emptied: resume, as --resume.
            change.pause = if pause.is_empty() {
                Some(None)
            } else {
                Some(Some(
                    input::parse_until_arg(pause).map_err(|p| refused("pause until", pause, p))?,
                ))
            };
        }
        let overlap = &sent(&self.overlap, &shown.overlap);
        if *overlap != shown_text(&shown.overlap) {
            // Emptied: back to the declared policy, as --clear-overlap.
            change.overlap = if overlap.is_empty() {
                Some(None)
            } else {
                let wanted = input::parse_overlap_arg(overlap)
                    .map_err(|p| refused("overlap", overlap, p))?;
                (wanted != job.overlap()).then_some(Some(wanted))
            };
        }
        let chains = [
            (
                &self.on_success,
                "on success",
                &shown.on_success,
                job.on_success(),
                &mut change.on_success,
            ),
            (
                &self.on_failure,
                "on failure",
                &shown.on_failure,
                job.on_failure(),
                &mut change.on_failure,
            ),
        ];
        for (field, label, shown_list, current, slot) in chains {
            let list = &sent(field, shown_list);
            if *list != shown_text(shown_list) {
                let wanted = input::parse_job_list_arg(list)
                    .map_err(|p| refused(label, list, p))?
                    .0;
                *slot = (wanted != current).then_some(Some(wanted));
            }
        }
        Ok(change)
    }
}
