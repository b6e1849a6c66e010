//! `send_queued_mail`: delivers the mail queue.
//!
//! A child process, so that a hung mail server is cut off by its timeout.
//! Delivery over SMTP arrives with the notifications work; until then it
//! reports what is waiting and that nothing can be sent.

use clap::{ArgMatches, Command};

use crate::registry::{Builtin, BuiltinSchedule, JobContext};
use crate::store;

pub static JOB: Builtin = Builtin {
    name: "send_queued_mail",
    app: "mail",
    description: "Send queued mail",
    schedule: BuiltinSchedule::Interval("00:05:00"),
    internal: false,
    timeout_secs: 120,
    trigger_next: &[],
    default_notify_on_success: false,
    args: |command: Command| command,
    should_run: Some(should_run),
    run,
};

fn transport_configured(ctx: &JobContext) -> bool {
    let n = &ctx.config.notifications;
    n.smtp_url.is_some() || n.sendmail.is_some()
}

fn should_run(ctx: &mut JobContext) -> anyhow::Result<bool> {
    Ok(transport_configured(ctx) && store::mail_queue_len(ctx.client)? > 0)
}

fn run(ctx: &mut JobContext, _matches: &ArgMatches) -> anyhow::Result<()> {
    let queued = store::mail_queue_len(ctx.client)?;
    if queued == 0 {
        writeln!(ctx.out, "No mail is queued")?;
        return Ok(());
    }
    anyhow::bail!("{queued} mails are queued, but this build of manage cannot deliver mail yet")
}
