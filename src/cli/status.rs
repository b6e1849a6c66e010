//! Looking back and checking health: `jobs history`, `jobs output`,
//! `jobs status` and `manage check`.

use serde_json::Value;

use crate::cli::common::{self, connect, print_history_table, run_json};
use crate::cli::render::{self, print_json};
use crate::cli::Context;
use crate::error::{bad_input, Exit};
use crate::store::{self, HistoryFilter};
use crate::view::health::{health, status_json};

/// Runs per page of `jobs history`.
pub const HISTORY_PAGE: u32 = 50;

pub fn history(
    ctx: &Context,
    name: Option<&str>,
    failed: bool,
    page: u32,
    json: bool,
) -> anyhow::Result<()> {
    let tz = ctx.config.timezone;
    let mut client = connect(ctx)?;
    if let Some(name) = name {
        // Removed jobs keep their history, and it can still be read.
        if !store::job_exists(&mut client, name)? {
            return common::no_such_job(name);
        }
    }
    let runs = store::history_page(
        &mut client,
        &HistoryFilter { job: name, failed },
        page,
        HISTORY_PAGE,
    )?;
    if json {
        return print_json(&Value::from(
            runs.iter()
                .map(|r| run_json(r, tz, false))
                .collect::<Vec<_>>(),
        ));
    }
    print_history_table(&runs, tz, true);
    Ok(())
}

pub fn output(ctx: &Context, run_id: i64, json: bool) -> anyhow::Result<()> {
    let mut client = connect(ctx)?;
    let Some(run) = store::run(&mut client, run_id)? else {
        return bad_input(format!(
            "there is no run {run_id}; expected a run id that `manage jobs history` shows"
        ));
    };
    if json {
        return print_json(&run_json(&run, ctx.config.timezone, true));
    }
    if !run.args.is_empty() {
        // The run's arguments (§21), each quoted, so that spaces show.
        let quoted: Vec<String> = run.args.iter().map(|a| format!("{a:?}")).collect();
        println!("Arguments: {}", quoted.join(" "));
    }
    print!("{}", render::job_output(&run.output));
    if !run.output.is_empty() && !run.output.ends_with('\n') {
        println!();
    }
    Ok(())
}

/// The `Held:` line of `jobs status`: no, or yes with since and until.
fn held_text(hold: store::Hold, tz: chrono_tz::Tz) -> String {
    if !hold.held {
        return "no".into();
    }
    let mut text = String::from("yes");
    if let Some(since) = hold.since {
        text.push_str(&format!(", since {}", render::human_time(since, tz)));
    }
    if let Some(end) = hold.until {
        text.push_str(&format!(", until {}", render::human_time(end, tz)));
    }
    text
}

pub fn status(ctx: &Context, json: bool) -> anyhow::Result<()> {
    let tz = ctx.config.timezone;
    let mut client = connect(ctx)?;
    let health = health(&mut client, tz)?;
    let healthy = health.problems.is_empty();
    if json {
        print_json(&status_json(&health, tz))?;
    } else {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        println!("Healthy:  {}", if healthy { "yes" } else { "no" });
        if health.overview.runners.is_empty() {
            println!("Runners:  none connected");
        }
        for runner in &health.overview.runners {
            let tags = if runner.tags.is_empty() {
                String::new()
            } else {
                format!(", tags {}", runner.tags.join(", "))
            };
            println!(
                "Runner:   {} (pid {}) since {}, version {}{tags}",
                runner.host,
                runner.pid,
                render::human_time(runner.started_at, tz),
                runner.version.as_deref().unwrap_or("unknown"),
            );
        }
        println!("Held:     {}", held_text(health.overview.hold, tz));
        println!(
            "Last run: {}",
            render::human_time_opt(health.overview.last_run, tz, "none yet")
        );
        println!("Running:  {}", list(health.running.clone()));
        println!("Overdue:  {}", list(health.overdue_names.clone()));
        println!(
            "Failing:  {}",
            list(health.failing.iter().map(|(n, _)| n.clone()).collect())
        );
        if !healthy {
            println!();
            println!("Problems:");
            for problem in &health.problems {
                println!("  - {problem}");
            }
        }
    }
    if healthy {
        Ok(())
    } else {
        Err(Exit(1).into())
    }
}

/// `manage check`: one line per thing checked; exit 0 when all is well, 1 on a
/// problem. A configuration error never gets here: it exits 2 first.
pub fn check(ctx: &Context, send_test_mail: bool) -> anyhow::Result<()> {
    let mut problems = 0;
    let declared = ctx.config.jobs.len();
    match &ctx.config.file {
        Some(file) => println!(
            "ok: configuration {} ({declared} declared jobs)",
            file.display()
        ),
        None => println!("ok: configuration (no file; defaults and environment)"),
    }
    println!("ok: time zone {}", ctx.config.timezone.name());
    match crate::cli::connect_db(&ctx.config, crate::db::APPLICATION_NAME) {
        Err(e) => {
            println!("problem: database unreachable: {e:#}");
            problems += 1;
        }
        Ok((mut client, _)) => {
            let version: String =
                crate::store::server_version(&mut client).unwrap_or_else(|_| "unknown".into());
            println!("ok: database reachable (PostgreSQL {version})");
            match crate::db::migrate::pending(&mut client) {
                Ok(pending) if pending.is_empty() => {
                    println!(
                        "ok: migrations: all {} applied",
                        crate::db::migrate::MIGRATIONS.len()
                    )
                }
                Ok(pending) => {
                    println!(
                        "problem: migrations pending: {} (run `manage migrate`)",
                        pending.join(", ")
                    );
                    problems += 1;
                }
                Err(e) => {
                    println!("problem: migration state unknown: {e:#}");
                    problems += 1;
                }
            }
        }
    }
    let n = &ctx.config.notifications;
    // The transport is described with its password hidden.
    match crate::mail::Transport::from_config(n) {
        Ok(None) => println!(
            "warning: no mail transport configured (set notifications.smtp_url, SMTP_URL or notifications.sendmail)"
        ),
        Ok(Some(transport)) => println!("ok: mail transport {}", transport.describe()),
        Err(e) => {
            println!("problem: mail transport: {e}");
            problems += 1;
        }
    }
    for (name, hook) in &n.webhooks {
        let signed = if hook.secret.is_some() {
            ", signed"
        } else {
            ""
        };
        println!(
            "ok: webhook {name}: {} ({}{signed})",
            hook.target(),
            hook.format.as_str()
        );
    }
    if n.email.is_none() {
        println!("warning: notifications are disabled: no recipient (set notifications.email or SCHEDULED_JOBS_EMAIL)");
    }
    if send_test_mail {
        // With webhooks only, there is no mail to test.
        let mail_configured = n.email.is_some() || n.smtp_url.is_some() || n.sendmail.is_some();
        if mail_configured || n.webhooks.is_empty() {
            match crate::cli::mail_cmd::send_test_mail(ctx) {
                Ok(line) => println!("ok: {line}"),
                Err(problem) => {
                    println!("problem: {problem}");
                    problems += 1;
                }
            }
        }
        for (name, result) in crate::cli::mail_cmd::post_test_webhooks(ctx) {
            match result {
                Ok(status) => println!("ok: Webhook {name}: answered {status}"),
                Err(problem) => {
                    println!("problem: Webhook {name}: failed: {problem}");
                    problems += 1;
                }
            }
        }
    }
    if problems == 0 {
        Ok(())
    } else {
        Err(Exit(1).into())
    }
}
