//! `manage mail queue`: the mails waiting to be sent; and the test mail of
//! `manage check --send-test-mail`, which goes straight to the transport, and
//! its `test` event to every webhook (§20), posted directly too.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::common::connect;
use crate::cli::render::{self, print_json};
use crate::cli::Context;
use crate::mail::{self, Outgoing, Transport};
use crate::store;
use crate::webhook;

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// The mails waiting in the queue, oldest first: recipient, subject,
    /// queued at, attempts, last error
    Queue {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
}

pub fn run(ctx: &Context, command: MailCommand) -> anyhow::Result<()> {
    match command {
        MailCommand::Queue { json } => queue(ctx, json),
    }
}

fn queue(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let tz = ctx.config.timezone;
    let mut client = connect(ctx)?;
    let mails = store::queued_mails(&mut client)?;
    if json {
        return print_json(&Value::from(
            mails
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id,
                        "recipient": m.recipient,
                        "subject": m.subject,
                        "queued_at": render::json_time(m.queued_at, tz),
                        "attempts": m.attempts,
                        "last_error": m.last_error,
                    })
                })
                .collect::<Vec<_>>(),
        ));
    }
    if mails.is_empty() {
        println!("No mail is queued.");
        return Ok(());
    }
    let mut table = render::table(&[
        "RECIPIENT",
        "SUBJECT",
        "QUEUED AT",
        "ATTEMPTS",
        "LAST ERROR",
    ]);
    for m in &mails {
        let error = m
            .last_error
            .as_deref()
            .map_or(String::new(), |e| e.replace(['\r', '\n'], " "));
        table.add_row(vec![
            render::alert_cell(&m.recipient, false),
            render::alert_cell(&m.subject, false),
            render::alert_cell(render::human_time(m.queued_at, tz), false),
            render::alert_cell(m.attempts, m.attempts > 0),
            render::alert_cell(error, m.last_error.is_some()),
        ]);
    }
    render::print_table(&table);
    Ok(())
}

/// Send `manage test mail` to the recipient, now, not through the queue.
/// Ok: what the server answered; Err: the problem, in a sentence.
pub fn send_test_mail(ctx: &Context) -> Result<String, String> {
    let n = &ctx.config.notifications;
    let Some(recipient) = &n.email else {
        return Err(
            "cannot send a test mail: no recipient (set notifications.email or SCHEDULED_JOBS_EMAIL)"
                .into(),
        );
    };
    let Some(transport) = Transport::from_config(n)? else {
        return Err(
            "cannot send a test mail: no mail transport (set notifications.smtp_url, SMTP_URL or notifications.sendmail)"
                .into(),
        );
    };
    let host = crate::host::short_host_name();
    let sender = n.sender.clone().unwrap_or_else(|| format!("manage@{host}"));
    let body = format!(
        "This is a test mail from manage on {host}, sent by `manage check --send-test-mail`.\n\
         Notifications of failed scheduled jobs will reach this address.\n"
    );
    let headers = mail::auto_headers();
    let mailer = transport
        .mailer()
        .map_err(|e| format!("test mail to {recipient} not sent: {e}"))?;
    let domain = sender.rsplit_once('@').map_or("localhost", |(_, d)| d);
    mailer
        .send(&Outgoing {
            sender: &sender,
            recipient,
            subject: "manage test mail",
            body: &body,
            headers: &headers,
            message_id: format!(
                "<manage.test.{}@{}>",
                chrono::Utc::now().timestamp_micros(),
                domain.trim_end_matches('>')
            ),
        })
        .map(|answer| format!("test mail sent to {recipient} (server said: {answer})"))
        .map_err(|e| format!("test mail to {recipient} not sent: {e}"))
}

/// Post the `test` event to every webhook, now, not through the queue: each
/// name with the status it answered, or the problem.
pub fn post_test_webhooks(ctx: &Context) -> Vec<(String, Result<u16, String>)> {
    let host = crate::host::short_host_name();
    let body = webhook::Payload::test(&host).to_body();
    ctx.config
        .notifications
        .webhooks
        .iter()
        .map(|(name, hook)| {
            (
                name.clone(),
                webhook::post(hook, &body).map_err(|e| e.to_string()),
            )
        })
        .collect()
}
