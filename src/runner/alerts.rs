//! Which mail a recorded result queues (§6, §13, §14), and queuing it.
//!
//! The streak rule itself is `Job::alert_after_run`; this is where the
//! runner's facts meet it: is there anyone to mail, is the job the mail
//! deliverer, is a retry to come, was the job disabled; and who it goes to
//! (§20): the job's own `notify` list, else `notifications.email`, each a
//! mail address or a `webhook:NAME`, queued one row each.

use super::log::Entry;
use super::record::Record;
use super::Shared;
use crate::job::{Alert, AlertMail, Job, Outcome, RunState};
use crate::mail;
use crate::schedule;
use crate::store;
use crate::webhook;

/// The mail a result calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mail {
    None,
    /// The usual mail of the run's outcome: failed, completed, interrupted,
    /// or the internal error that disabled the job.
    Run(Outcome),
    /// The success that ends a mailed failure streak.
    Recovered {
        failed_runs: u32,
    },
}

/// What recording a result does to the job's streak, and the mail to queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    /// The streak to write; `None` when the job's row is unknown.
    pub streak: Option<Alert>,
    pub mail: Mail,
}

/// Who the alerts of `job` go to: its own `notify` (§20) when it has one,
/// else the global recipient.
fn recipients(shared: &Shared, row: Option<&Job>) -> Vec<String> {
    match row.and_then(Job::notify) {
        Some(list) => list.to_vec(),
        None => shared.config.notifications.email.iter().cloned().collect(),
    }
}

/// Whether any mail could be queued for this job's runs: it has a recipient
/// and is not the mail deliverer (a mail about failing to send mail would
/// loop).
fn mail_possible(shared: &Shared, job: &str, row: Option<&Job>) -> bool {
    !recipients(shared, row).is_empty()
        && !shared.registry.get(job).is_some_and(|d| d.delivers_mail)
}

/// Decide for result `r` of `job` (its row before the result, or `None` when
/// the row is gone); `retrying` says a retry of its series is to come.
pub fn decide(shared: &Shared, r: &Record, job: Option<&Job>, retrying: bool) -> Notice {
    let possible = mail_possible(shared, r.job, job);
    let Some(job) = job else {
        let wanted = possible && !retrying && mail::wanted(r.outcome, false, r.output);
        return Notice {
            streak: None,
            mail: if wanted {
                Mail::Run(r.outcome)
            } else {
                Mail::None
            },
        };
    };
    let mut streak = job.alert_after_run(r.state, retrying, possible);
    let mail = if retrying {
        Mail::None
    } else if r.disable {
        // A job disabled by an internal error runs no more: its mail goes
        // out whatever the streak, and counts as the streak's alert.
        streak.alert_mailed |= possible;
        if possible {
            Mail::Run(Outcome::InternalError)
        } else {
            Mail::None
        }
    } else {
        match streak.mail {
            AlertMail::Failure => Mail::Run(r.outcome),
            AlertMail::Recovery { failed_runs } => Mail::Recovered { failed_runs },
            AlertMail::None
                if possible
                    && r.state == RunState::Succeeded
                    && mail::wanted(r.outcome, job.notify_on_success, r.output) =>
            {
                Mail::Run(r.outcome)
            }
            AlertMail::None => Mail::None,
        }
    };
    Notice {
        streak: Some(streak),
        mail,
    }
}

/// Queue the mail decided, one row per recipient (a webhook's row holds
/// its JSON payload), and trigger the mail deliverer to send them. `row` is
/// the job before the result, for its `notify`.
pub fn queue(
    shared: &Shared,
    tx: &mut postgres::Transaction,
    r: &Record,
    row: Option<&Job>,
    wanted: Mail,
) -> Result<(), postgres::Error> {
    let recipients = recipients(shared, row);
    if recipients.is_empty() {
        return Ok(());
    }
    let facts = mail::RunFacts {
        job: r.job,
        description: r.description,
        host: &shared.host,
        started_at: r.started_at,
        runtime_seconds: r.runtime_seconds,
        state: r.state,
        output: r.output,
    };
    let tz = shared.config.timezone;
    let (composed, event) = match wanted {
        Mail::None => return Ok(()),
        Mail::Run(outcome) => (mail::compose(outcome, &facts, tz), event_of(outcome)),
        Mail::Recovered { failed_runs } => (
            mail::compose_recovery(failed_runs, &facts, tz),
            webhook::Event::Recovered,
        ),
    };
    let payload = webhook::Payload {
        event,
        job: Some(r.job.to_string()),
        description: Some(r.description.to_string()),
        host: shared.host.clone(),
        run_id: Some(r.run_id),
        state: Some(r.state.to_string()),
        started_at: Some(r.started_at),
        runtime_seconds: Some(r.runtime_seconds),
        output: r.output.to_string(),
        text: composed.subject.clone(),
    };
    queue_to(shared, tx, &recipients, &composed, &payload)
}

/// Queue one alert to each recipient — a mail, or for a `webhook:NAME` the
/// JSON `payload` — and trigger the mail deliverer to send them.
fn queue_to(
    shared: &Shared,
    tx: &mut postgres::Transaction,
    recipients: &[String],
    composed: &mail::Mail,
    payload: &webhook::Payload,
) -> Result<(), postgres::Error> {
    let sender = shared
        .config
        .notifications
        .sender
        .clone()
        .unwrap_or_else(|| format!("manage@{}", shared.host));
    for recipient in recipients {
        if recipient.starts_with(webhook::RECIPIENT_PREFIX) {
            store::queue_webhook(
                tx,
                recipient,
                &composed.subject,
                &payload.to_body(),
                payload.run_id,
            )?;
        } else {
            store::queue_mail(tx, recipient, &sender, composed, payload.run_id)?;
        }
    }
    if let Some(mailer) = shared.registry.mailer() {
        store::schedule_now(tx, &mailer.name)?;
        // The runners learn of the deliverer's new next run at once (in
        // the record transaction this NOTIFY is its own, merged into one).
        store::notify_runners(tx)?;
    }
    Ok(())
}

/// [`queue_to`] the recipients of `job`'s alerts.
fn queue_for(
    shared: &Shared,
    tx: &mut postgres::Transaction,
    job: &Job,
    composed: &mail::Mail,
    payload: &webhook::Payload,
) -> Result<(), postgres::Error> {
    queue_to(
        shared,
        tx,
        &recipients(shared, Some(job)),
        composed,
        payload,
    )
}

/// The slow-run warning (§20) of run `run_id` of `job`, still going after
/// `warn_after_secs`, with `output` written so far: marked on the run
/// (`store::mark_slow_warned`, once per run) and queued in one transaction.
/// Only the runner that owns the run calls it: it alone has the output.
pub fn slow(
    shared: &Shared,
    client: &mut postgres::Client,
    job: &Job,
    run_id: i64,
    started_at: chrono::DateTime<chrono::Utc>,
    warn_after_secs: u32,
    output: &str,
) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    if !store::mark_slow_warned(&mut tx, run_id)? {
        return tx.commit();
    }
    let after = schedule::format_duration(warn_after_secs);
    shared.log.event(
        Entry::warn(format!("Job {} is still running after {after}", job.name))
            .job(&job.name)
            .run_id(run_id),
    );
    if mail_possible(shared, &job.name, Some(job)) {
        let output = webhook::truncate(output, mail::MAX_SLOW_OUTPUT);
        let composed = mail::compose_slow(
            &mail::SlowFacts {
                job: &job.name,
                description: &job.description,
                host: &shared.host,
                started_at,
                after_secs: warn_after_secs,
                output,
            },
            shared.config.timezone,
        );
        let now = store::db_now(&mut tx)?;
        let payload = webhook::Payload {
            run_id: Some(run_id),
            state: Some(RunState::Running.to_string()),
            started_at: Some(started_at),
            runtime_seconds: Some((now - started_at).num_milliseconds() as f64 / 1000.0),
            output: output.to_string(),
            ..job_payload(shared, webhook::Event::Slow, job, &composed)
        };
        queue_for(shared, &mut tx, job, &composed, &payload)?;
    }
    tx.commit()
}

/// The dead-man check (§20), on a heartbeat that saw one due: in one
/// transaction, mark the alerts sent (`store::take_dead_man_alerts`, which
/// makes them once-only across runners) and queue them.
pub fn dead_man(shared: &Shared, client: &mut postgres::Client) -> Result<(), postgres::Error> {
    let tz = shared.config.timezone;
    let mut tx = client.transaction()?;
    let jobs = store::take_dead_man_alerts(&mut tx)?;
    if jobs.is_empty() {
        return tx.commit();
    }
    let now = store::db_now(&mut tx)?;
    let hold = store::hold(&mut tx)?;
    let runners = store::connected_runners(&mut tx)?;
    for job in &jobs {
        let Some(within_secs) = job.expect_success_within_seconds() else {
            continue;
        };
        let mut reasons = Vec::new();
        if !job.enabled {
            reasons.push("disabled".to_string());
        }
        if hold.held {
            reasons.push(match hold.since {
                Some(since) => format!("held since {}", schedule::human_instant(since, tz)),
                None => "held".to_string(),
            });
        }
        if let Some(until) = job.paused_at(now) {
            reasons.push(format!(
                "paused until {}",
                schedule::human_instant(until, tz)
            ));
        }
        let tags = job.runs_on();
        if !tags.is_empty()
            && !runners
                .iter()
                .any(|r| tags.iter().all(|t| r.tags.contains(t)))
        {
            reasons.push(format!("no live runner has tags {}", tags.join(", ")));
        }
        if job.consecutive_failures > 0 {
            let since = store::failing_since(&mut tx, &job.name, job.last_success)?;
            reasons.push(match since {
                Some(since) => format!(
                    "failing since {} ({} failed runs)",
                    schedule::human_instant(since, tz),
                    job.consecutive_failures
                ),
                None => format!("failing ({} failed runs)", job.consecutive_failures),
            });
        }
        if let Some(skip) = job.last_skip {
            reasons.push(format!("skipped at {}", schedule::human_instant(skip, tz)));
        }
        let composed = mail::compose_overdue(
            &mail::OverdueFacts {
                job: &job.name,
                description: &job.description,
                host: &shared.host,
                within_secs,
                last_success: job.last_success,
                last_run: job.last_run,
                last_state: job.last_state,
                next_run: job.next_run,
                reasons: &reasons,
            },
            tz,
        );
        shared.log.event(
            Entry::warn(format!(
                "Job {} is overdue: it has not succeeded for {}",
                job.name,
                schedule::format_duration(within_secs)
            ))
            .job(&job.name),
        );
        if !mail_possible(shared, &job.name, Some(job)) {
            continue;
        }
        let payload = webhook::Payload {
            state: job.last_state.map(|s| s.to_string()),
            output: composed.body.clone(),
            ..job_payload(shared, webhook::Event::Overdue, job, &composed)
        };
        queue_for(shared, &mut tx, job, &composed, &payload)?;
    }
    tx.commit()
}

/// The payload of an alert about `job` rather than one finished run (§20):
/// no run, state, start or runtime until the caller says otherwise.
fn job_payload(
    shared: &Shared,
    event: webhook::Event,
    job: &Job,
    composed: &mail::Mail,
) -> webhook::Payload {
    webhook::Payload {
        event,
        job: Some(job.name.clone()),
        description: Some(job.description.clone()),
        host: shared.host.clone(),
        run_id: None,
        state: None,
        started_at: None,
        runtime_seconds: None,
        output: String::new(),
        text: composed.subject.clone(),
    }
}

/// The webhook `event` of a run's usual mail (§20). An interrupted run is a
/// failure like any other that does not end in success (§14).
fn event_of(outcome: Outcome) -> webhook::Event {
    match outcome {
        Outcome::Succeeded => webhook::Event::Completed,
        Outcome::Failed | Outcome::TimedOut | Outcome::Interrupted => webhook::Event::Failed,
        Outcome::InternalError => webhook::Event::Exception,
    }
}
