//! `send_queued_mail`: delivers the mail queue.
//!
//! A child process, so that a hung mail server is cut off by its timeout.
//! Whoever sends holds a session advisory lock: a second sender (the runner's
//! run and an operator's `manage send_queued_mail` at the same moment) finds
//! it taken and leaves, so no mail is sent twice. A mail leaves the queue only
//! once the server has accepted it; until then it keeps its attempts and last
//! error, for `manage mail queue`. The first connection failure ends the pass
//! (the server is down; the next run tries again), while a mail the server
//! refuses keeps its error and the others still go.
//!
//! Webhook alerts (§20) are rows of the same queue (recipient
//! `webhook:NAME`), so they are delivered under the same lock and kept by
//! the same rules: a 2xx answer removes one, anything else or no answer in
//! time counts an attempt and keeps it for the next run. A receiver that
//! does not answer holds up only its own deliveries, and mail that cannot be
//! sent holds up no webhook.
//!
//! Its own failures are not mailed (the runner sees to that): they show as a
//! failed run in `jobs list` and as errors in `mail queue`.

use std::collections::{HashMap, HashSet};

use crate::job::builder::Job;
use crate::job::definition::{JobContext, ShouldRun};
use crate::mail::{DeliveryError, Mailer, Outgoing, Transport};
use crate::store::{self, QueuedMail};
use crate::webhook::{self, PostError};

/// The job, registered as an application registers its own (§22).
pub fn job() -> Job {
    Job::new("send_queued_mail", run)
        .app("mail")
        .description("Send queued mail")
        .interval("00:05:00")
        .timeout(std::time::Duration::from_secs(120))
        .should_run(should_run)
        .delivers_mail()
}

fn transport_configured(ctx: &JobContext) -> bool {
    let n = &ctx.config.notifications;
    n.smtp_url.is_some() || n.sendmail.is_some() || !n.webhooks.is_empty()
}

fn should_run(ctx: &mut JobContext) -> anyhow::Result<ShouldRun> {
    Ok(if !transport_configured(ctx) {
        ShouldRun::Skip("no mail transport is configured".into())
    } else if store::mail_queue_len(ctx.client)? == 0 {
        ShouldRun::Skip("the mail queue is empty".into())
    } else {
        ShouldRun::Run
    })
}

fn run(ctx: &mut JobContext) -> anyhow::Result<()> {
    if !store::try_lock_mail_sender(ctx.client)? {
        writeln!(
            ctx.out,
            "Another sender is at work on the mail queue; leaving it to that one"
        )?;
        return Ok(());
    }
    let result = send_all(ctx);
    // The lock also ends with the session; releasing it is only tidiness.
    let _ = store::unlock_mail_sender(ctx.client);
    result
}

/// A Message-ID that stays the same for one queued mail, however often it is
/// tried.
fn message_id(mail: &QueuedMail) -> String {
    let domain = mail
        .sender
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('>'))
        .filter(|d| !d.is_empty())
        .unwrap_or("localhost");
    format!(
        "<manage.{}.{}@{domain}>",
        mail.id,
        mail.queued_at.timestamp_micros()
    )
}

/// The mail transport, readied on the first mail of a pass; or why none
/// can be sent this pass.
enum MailState {
    Untried,
    Ready(Mailer),
    Down(String),
}

fn send_all(ctx: &mut JobContext) -> anyhow::Result<()> {
    let queue = store::queued_mails(ctx.client)?;
    if queue.is_empty() {
        writeln!(ctx.out, "No mail is queued")?;
        return Ok(());
    }
    let mut mail = MailState::Untried;
    // Webhooks that did not answer this pass: the rest queued for them wait
    // for the next one rather than each waiting out the timeout.
    let mut unreachable: HashMap<String, String> = HashMap::new();
    let mut tried: HashSet<i64> = HashSet::new();
    let mut sent = 0;
    let mut batch = queue;
    // Mail queued while we send (a sender that found our lock taken left it
    // to us) is picked up by another pass; each mail is tried once per run.
    while !batch.is_empty() {
        tried.extend(batch.iter().map(|m| m.id));
        for queued in &batch {
            let delivered = match queued.recipient.strip_prefix(webhook::RECIPIENT_PREFIX) {
                Some(name) => send_webhook(ctx, queued, name, &mut unreachable)?,
                None => send_mail(ctx, queued, &mut mail)?,
            };
            if delivered {
                store::mail_sent(ctx.client, queued.id)?;
                sent += 1;
            }
        }
        batch = store::queued_mails(ctx.client)?
            .into_iter()
            .filter(|m| !tried.contains(&m.id))
            .collect();
    }
    let cut_off = match mail {
        MailState::Down(error) => Some(error),
        _ => None,
    };
    finish(ctx, tried.len(), sent, cut_off)
}

/// Send one queued mail; Ok(true) once the server took it. A failure is
/// counted on the row.
fn send_mail(
    ctx: &mut JobContext,
    queued: &QueuedMail,
    state: &mut MailState,
) -> anyhow::Result<bool> {
    if let MailState::Untried = state {
        *state =
            match Transport::from_config(&ctx.config.notifications).map_err(anyhow::Error::msg)? {
                None => MailState::Down(
                    "mail is queued but no mail transport is configured \
                 (set notifications.smtp_url, SMTP_URL or notifications.sendmail)"
                        .into(),
                ),
                Some(transport) => match transport.mailer() {
                    Ok(mailer) => MailState::Ready(mailer),
                    Err(e) => MailState::Down(e.to_string()),
                },
            };
    }
    let mailer = match state {
        MailState::Ready(mailer) => mailer,
        MailState::Down(error) => {
            // Held up by the failure that stopped mail this pass.
            store::mail_failed(ctx.client, &[queued.id], error)?;
            return Ok(false);
        }
        MailState::Untried => return Ok(false),
    };
    let outgoing = Outgoing {
        sender: &queued.sender,
        recipient: &queued.recipient,
        subject: &queued.subject,
        body: &queued.body,
        headers: &queued.headers,
        message_id: message_id(queued),
    };
    match mailer.send(&outgoing) {
        Ok(answer) => {
            writeln!(
                ctx.out,
                "Sent mail {} to {}: {} (server said: {answer})",
                queued.id, queued.recipient, queued.subject
            )?;
            Ok(true)
        }
        Err(DeliveryError::Rejected(error)) => {
            store::mail_failed(ctx.client, &[queued.id], &error)?;
            writeln!(
                ctx.out,
                "Could not send mail {} to {}: {error}",
                queued.id, queued.recipient
            )?;
            Ok(false)
        }
        Err(DeliveryError::Connection(error)) => {
            // Every mail not yet sent this pass is held up by this failure.
            store::mail_failed(ctx.client, &[queued.id], &error)?;
            *state = MailState::Down(error);
            Ok(false)
        }
    }
}

/// Post one queued webhook alert (§20); Ok(true) on a 2xx. Its URL, secret
/// and format are the configuration's, by name, now.
fn send_webhook(
    ctx: &mut JobContext,
    queued: &QueuedMail,
    name: &str,
    unreachable: &mut HashMap<String, String>,
) -> anyhow::Result<bool> {
    let error = match (
        ctx.config.notifications.webhooks.get(name),
        unreachable.get(name),
    ) {
        (None, _) => format!(
            "no webhook \"{name}\" is configured ([notifications.webhooks.{name}]); it stays queued"
        ),
        (Some(_), Some(error)) => error.clone(),
        (Some(hook), None) => match webhook::post(hook, &queued.body) {
            Ok(status) => {
                writeln!(
                    ctx.out,
                    "Delivered {} to {}: {} (answered {status})",
                    queued.id, queued.recipient, queued.subject
                )?;
                return Ok(true);
            }
            Err(PostError::Refused(error)) => error,
            Err(PostError::Unreachable(error)) => {
                unreachable.insert(name.to_string(), error.clone());
                error
            }
        },
    };
    store::mail_failed(ctx.client, &[queued.id], &error)?;
    writeln!(
        ctx.out,
        "Could not deliver {} to {}: {error}",
        queued.id, queued.recipient
    )?;
    Ok(false)
}

/// The summary line, and the run's result: a failure while anything is left.
fn finish(
    ctx: &mut JobContext,
    total: usize,
    sent: usize,
    cut_off: Option<String>,
) -> anyhow::Result<()> {
    if let Some(error) = &cut_off {
        writeln!(ctx.out, "Stopped: cannot reach the mail transport: {error}")?;
    }
    let left = total - sent;
    writeln!(
        ctx.out,
        "Sent {sent} of {total} queued mails; {left} left in the queue"
    )?;
    if left == 0 {
        Ok(())
    } else {
        anyhow::bail!("{left} of {total} queued mails could not be sent; they stay queued")
    }
}
