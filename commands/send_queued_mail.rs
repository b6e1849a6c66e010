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
//! Its own failures are not mailed (the runner sees to that): they show as a
//! failed run in `jobs list` and as errors in `mail queue`.

use std::collections::HashSet;

use anyhow::Context as _;

use crate::job::builder::Job;
use crate::job::definition::{JobContext, ShouldRun};
use crate::mail::{DeliveryError, Outgoing, Transport};
use crate::store::{self, QueuedMail};

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
    n.smtp_url.is_some() || n.sendmail.is_some()
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

fn send_all(ctx: &mut JobContext) -> anyhow::Result<()> {
    let queue = store::queued_mails(ctx.client)?;
    if queue.is_empty() {
        writeln!(ctx.out, "No mail is queued")?;
        return Ok(());
    }
    let transport = Transport::from_config(&ctx.config.notifications)
        .map_err(anyhow::Error::msg)?
        .context(
            "mail is queued but no mail transport is configured \
             (set notifications.smtp_url, SMTP_URL or notifications.sendmail)",
        )?;
    let mailer = match transport.mailer() {
        Ok(mailer) => mailer,
        Err(e) => {
            let ids: Vec<i64> = queue.iter().map(|m| m.id).collect();
            store::mail_failed(ctx.client, &ids, &e.to_string())?;
            return finish(ctx, queue.len(), 0, Some(e.to_string()));
        }
    };
    let mut tried: HashSet<i64> = HashSet::new();
    let mut sent = 0;
    let mut batch = queue;
    // Mail queued while we send (a sender that found our lock taken left it
    // to us) is picked up by another pass; each mail is tried once per run.
    while !batch.is_empty() {
        tried.extend(batch.iter().map(|m| m.id));
        for (index, mail) in batch.iter().enumerate() {
            let outgoing = Outgoing {
                sender: &mail.sender,
                recipient: &mail.recipient,
                subject: &mail.subject,
                body: &mail.body,
                headers: &mail.headers,
                message_id: message_id(mail),
            };
            match mailer.send(&outgoing) {
                Ok(answer) => {
                    store::mail_sent(ctx.client, mail.id)?;
                    sent += 1;
                    writeln!(
                        ctx.out,
                        "Sent mail {} to {}: {} (server said: {answer})",
                        mail.id, mail.recipient, mail.subject
                    )?;
                }
                Err(DeliveryError::Rejected(error)) => {
                    store::mail_failed(ctx.client, &[mail.id], &error)?;
                    writeln!(
                        ctx.out,
                        "Could not send mail {} to {}: {error}",
                        mail.id, mail.recipient
                    )?;
                }
                Err(DeliveryError::Connection(error)) => {
                    // Every mail not yet sent was held up by this failure.
                    let ids: Vec<i64> = batch[index..].iter().map(|m| m.id).collect();
                    store::mail_failed(ctx.client, &ids, &error)?;
                    return finish(ctx, tried.len(), sent, Some(error));
                }
            }
        }
        batch = store::queued_mails(ctx.client)?
            .into_iter()
            .filter(|m| !tried.contains(&m.id))
            .collect();
    }
    finish(ctx, tried.len(), sent, None)
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
