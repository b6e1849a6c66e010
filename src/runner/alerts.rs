//! Which mail a recorded result queues (§6, §13, §14), and queuing it.
//!
//! The streak rule itself is `Job::alert_after_run`; this is where the
//! runner's facts meet it: is there anyone to mail, is the job the mail
//! deliverer, is a retry to come, was the job disabled; and who it goes to
//! (§20): the job's own `notify` list, else `notifications.email`, each a
//! mail address or a `webhook:NAME`, queued one row each.

use super::record::Record;
use super::Shared;
use crate::job::{Alert, AlertMail, Job, Outcome, RunState};
use crate::mail;
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
    let sender = shared
        .config
        .notifications
        .sender
        .clone()
        .unwrap_or_else(|| format!("manage@{}", shared.host));
    for recipient in &recipients {
        if recipient.starts_with(webhook::RECIPIENT_PREFIX) {
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
            store::queue_webhook(
                tx,
                recipient,
                &composed.subject,
                &payload.to_body(),
                r.run_id,
            )?;
        } else {
            store::queue_mail(tx, recipient, &sender, &composed, Some(r.run_id))?;
        }
    }
    if let Some(mailer) = shared.registry.mailer() {
        store::schedule_now(tx, &mailer.name)?;
    }
    Ok(())
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
