//! The operator's controls: `jobs configure`, `run-now`, `reset-failure`,
//! `hold` and `release`. Every change is one transaction that also wakes the
//! runners (NOTIFY is transactional: they see it only once it is committed).

use std::io::IsTerminal;

use clap::{Args, ValueEnum};

use crate::cli::common::{connect, existing_job, report_trigger};
use crate::cli::render;
use crate::cli::Context;
use crate::error::{bad_input, Exit};
use crate::input::{
    parse_alert_after_arg, parse_cron_arg, parse_duration_arg, parse_instant_arg,
    parse_job_list_arg, parse_overlap_arg, parse_retries_arg, parse_tags_arg, parse_times_arg,
    parse_until_arg, parse_zone_arg, JobList, TagList, TimesList, Until,
};
use crate::job::Job;
use crate::ops::{self, Actor};
use crate::schedule::{self, Schedule};
use crate::store::{self, ConfigChange};

#[derive(Debug, Args)]
pub struct ConfigureArgs {
    name: String,
    /// Enable or disable the job (true/false)
    #[arg(long, value_name = "BOOL", value_parser = clap::builder::BoolishValueParser::new())]
    enabled: Option<bool>,
    /// Also mail on success when the run printed output (true/false)
    #[arg(long, value_name = "BOOL", value_parser = clap::builder::BoolishValueParser::new())]
    notify_on_success: Option<bool>,
    /// Daily times replacing the built-in schedule: "HH:MM[:SS],…"
    #[arg(long, value_name = "TIMES", value_parser = parse_times_arg,
          conflicts_with_all = ["override_interval", "override_cron", "clear_override"])]
    override_times: Option<TimesList>,
    /// An interval replacing the built-in schedule: MM:SS or HH:MM:SS
    #[arg(long, value_name = "INTERVAL", value_parser = parse_duration_arg,
          allow_negative_numbers = true, conflicts_with_all = ["override_cron", "clear_override"])]
    override_interval: Option<u32>,
    /// A cron expression replacing the built-in schedule: "MIN HOUR DOM MON DOW", 6 fields with seconds, or @daily etc.
    #[arg(long, value_name = "EXPR", value_parser = parse_cron_arg,
          conflicts_with = "clear_override")]
    override_cron: Option<schedule::Cron>,
    /// Go back to the built-in schedule
    #[arg(long)]
    clear_override: bool,
    /// The IANA zone the job's times and cron slots are read in, e.g. America/New_York
    #[arg(long, value_name = "ZONE", value_parser = parse_zone_arg,
          conflicts_with = "clear_timezone")]
    timezone: Option<chrono_tz::Tz>,
    /// Go back to the declared zone, else the configured one
    #[arg(long)]
    clear_timezone: bool,
    /// Skip a scheduled run not started this long after its due time: MM:SS or HH:MM:SS
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg,
          allow_negative_numbers = true, conflicts_with = "clear_start_deadline")]
    start_deadline: Option<u32>,
    /// Remove the deadline set with --start-deadline (the declared one, if any, applies again)
    #[arg(long)]
    clear_start_deadline: bool,
    /// Run a failed job again up to N times (0-100), overriding the file
    #[arg(long, value_name = "N", value_parser = parse_retries_arg, allow_negative_numbers = true)]
    retries: Option<u32>,
    /// Wait before the first retry, doubling for each next one: MM:SS or HH:MM:SS
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg,
          allow_negative_numbers = true)]
    retry_delay: Option<u32>,
    /// Mail failures only from the N-th consecutive failure on (1-1000), overriding the file
    #[arg(long, value_name = "N", value_parser = parse_alert_after_arg,
          allow_negative_numbers = true)]
    alert_after: Option<u32>,
    /// Run only on runners that have all these tags: "TAG,…" (empty: any runner), overriding the file
    #[arg(long, value_name = "TAGS", value_parser = parse_tags_arg,
          conflicts_with = "clear_runs_on")]
    runs_on: Option<TagList>,
    /// Remove the tags set with --runs-on (the declared runs_on, if any, applies again)
    #[arg(long)]
    clear_runs_on: bool,
    /// Delay each slot by a pseudo-random offset below this (MM:SS or HH:MM:SS), at most the shortest gap between slots
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg,
          allow_negative_numbers = true, conflicts_with = "clear_jitter")]
    jitter: Option<u32>,
    /// Remove the jitter set with --jitter (the declared one, if any, applies again)
    #[arg(long)]
    clear_jitter: bool,
    /// Do not run the job until this RFC 3339 instant, or for this long (HH:MM:SS or MM:SS); then its schedule goes on from its first slot after it
    #[arg(long, value_name = "INSTANT|DURATION", value_parser = parse_until_arg,
          allow_negative_numbers = true, conflicts_with = "resume")]
    pause_until: Option<Until>,
    /// End a pause set with --pause-until now
    #[arg(long)]
    resume: bool,
    /// Send this job's alerts to these instead of notifications.email: "ADDRESS|webhook:NAME,…" (empty: nobody), overriding the file
    #[arg(long, value_name = "LIST", conflicts_with = "clear_notify")]
    notify: Option<String>,
    /// Remove the recipients set with --notify (the declared notify, else notifications.email, applies again)
    #[arg(long)]
    clear_notify: bool,
    /// What a slot that comes while the job still runs does: wait (run right after it), skip (that slot), or replace (stop the run and start a new one)
    #[arg(long, value_name = "POLICY", value_parser = parse_overlap_arg,
          conflicts_with = "clear_overlap")]
    overlap: Option<crate::job::Overlap>,
    /// Remove the policy set with --overlap (the declared overlap, else wait, applies again)
    #[arg(long)]
    clear_overlap: bool,
    /// Schedule these jobs at once when a run (after its last retry) succeeds: "JOB,…" (empty: none), overriding the file
    #[arg(long, value_name = "LIST", value_parser = parse_job_list_arg,
          conflicts_with = "clear_on_success")]
    on_success: Option<JobList>,
    /// Remove the jobs set with --on-success (the declared on_success, if any, applies again)
    #[arg(long)]
    clear_on_success: bool,
    /// Schedule these jobs at once when a run (after its last retry) fails, times out or is interrupted: "JOB,…" (empty: none), overriding the file
    #[arg(long, value_name = "LIST", value_parser = parse_job_list_arg,
          conflicts_with = "clear_on_failure")]
    on_failure: Option<JobList>,
    /// Remove the jobs set with --on-failure (the declared on_failure, if any, applies again)
    #[arg(long)]
    clear_on_failure: bool,
    /// Alert once when the job has not succeeded for this long (MM:SS or HH:MM:SS), whatever the reason, overriding the file
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg,
          allow_negative_numbers = true, conflicts_with = "clear_expect_success_within")]
    expect_success_within: Option<u32>,
    /// Remove the value set with --expect-success-within (the declared one, if any, applies again)
    #[arg(long)]
    clear_expect_success_within: bool,
    /// Alert once when a run is still going after this long (MM:SS or HH:MM:SS, less than the timeout), overriding the file
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg,
          allow_negative_numbers = true, conflicts_with = "clear_warn_after")]
    warn_after: Option<u32>,
    /// Remove the value set with --warn-after (the declared one, if any, applies again)
    #[arg(long)]
    clear_warn_after: bool,
}

#[derive(Debug, Args)]
pub struct RunNowArgs {
    name: String,
    /// Run after this delay (MM:SS or HH:MM:SS) instead of now
    #[arg(long = "in", value_name = "DURATION", value_parser = parse_duration_arg,
          allow_negative_numbers = true)]
    delay: Option<u32>,
    /// Wait for that run and exit with its result, printing its output
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long (the run goes on)
    // Checked by `run_now` rather than by clap's `requires`, whose error
    // spans two lines and does not name the option.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg,
          allow_negative_numbers = true)]
    timeout: Option<u32>,
    /// One extra run at this RFC 3339 instant, besides the schedule (several may be pending)
    #[arg(long, value_name = "INSTANT", value_parser = parse_instant_arg)]
    at: Option<chrono::DateTime<chrono::Utc>>,
    /// Cancel the pending extra run at this RFC 3339 instant (as `jobs show` lists it)
    #[arg(long, value_name = "INSTANT", value_parser = parse_instant_arg)]
    cancel_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Arguments for that one run, after `--`: `manage NAME ARG…` for a built-in job, "$@" for a
    /// declared shell job (refused for internal and SQL jobs)
    #[arg(last = true, value_name = "ARG")]
    args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pending {
    /// Run the pending jobs now
    Run,
    /// Move each pending job to its next slot, as if it had just run
    Reschedule,
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The effective schedule and the next run, after a change.
fn print_schedule(row: &Job, ctx: &Context, now: chrono::DateTime<chrono::Utc>) {
    let tz = ctx.config.timezone;
    let effective = row.effective_schedule().map_or_else(
        || "none (runs only when started by hand)".into(),
        |s| s.describe(),
    );
    let origin = if row.override_schedule().is_some() {
        " (override)"
    } else {
        ""
    };
    println!("Effective schedule: {effective}{origin}");
    println!("Time zone:          {}", row.zone(tz).name());
    if let Some(deadline) = row.start_deadline() {
        println!(
            "Start deadline:     {}",
            schedule::format_duration(deadline)
        );
    }
    match row.next_run {
        Some(next) => println!(
            "Next run:           {} ({})",
            render::human_time(next, tz),
            render::relative(next, now)
        ),
        None if !row.enabled => println!("Next run:           none (disabled)"),
        None => println!("Next run:           none"),
    }
}

/// A flag that sets a value and its `--clear-` twin (clap refuses both at
/// once), as a `ConfigChange` field: set, cleared (`Some(None)`), or untouched.
fn set_or_clear<T>(value: Option<T>, clear: bool) -> Option<Option<T>> {
    match value {
        Some(value) => Some(Some(value)),
        None => clear.then_some(None),
    }
}

pub fn configure(ctx: &Context, args: ConfigureArgs) -> anyhow::Result<()> {
    // Each setting and its --clear- form conflict (clap refuses both), so
    // one of them at most is given.
    let mut change = ConfigChange {
        enabled: args.enabled,
        notify_on_success: args.notify_on_success,
        override_schedule: None,
        timezone: set_or_clear(args.timezone, args.clear_timezone),
        start_deadline: set_or_clear(args.start_deadline, args.clear_start_deadline),
        retries: args.retries,
        retry_delay_secs: args.retry_delay,
        alert_after: args.alert_after,
        runs_on: set_or_clear(args.runs_on.map(|tags| tags.0), args.clear_runs_on),
        jitter_secs: set_or_clear(args.jitter, args.clear_jitter),
        pause: set_or_clear(args.pause_until, args.resume),
        notify: None,
        overlap: set_or_clear(args.overlap, args.clear_overlap),
        on_success: set_or_clear(args.on_success.map(|l| l.0), args.clear_on_success),
        on_failure: set_or_clear(args.on_failure.map(|l| l.0), args.clear_on_failure),
        expect_success_within_secs: set_or_clear(
            args.expect_success_within,
            args.clear_expect_success_within,
        ),
        warn_after_secs: set_or_clear(args.warn_after, args.clear_warn_after),
    };
    if let Some(list) = &args.notify {
        match crate::config::notify_arg(list, &ctx.config.notifications.webhooks) {
            Ok(checked) => change.notify = Some(Some(checked)),
            Err(e) => return bad_input(format!("--notify: {e}")),
        }
    }
    if args.clear_notify {
        change.notify = Some(None);
    }
    if let Some(times) = args.override_times {
        change.override_schedule = Some(Some(Schedule::Times(times.0)));
    }
    if let Some(interval) = args.override_interval {
        change.override_schedule = Some(Some(Schedule::Interval(interval)));
    }
    if let Some(cron) = args.override_cron {
        change.override_schedule = Some(Some(Schedule::Cron(cron)));
    }
    if args.clear_override {
        change.override_schedule = Some(None);
    }
    let interactive = change == ConfigChange::default();
    if interactive && !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return bad_input(format!(
            "nothing to change for job \"{}\": expected at least one of --enabled, --notify-on-success, \
             --override-times, --override-interval, --override-cron, --clear-override, --timezone, \
             --clear-timezone, --start-deadline, --clear-start-deadline, --retries, --retry-delay, \
             --alert-after, --runs-on, --clear-runs-on, --jitter, --clear-jitter, --pause-until, --resume, \
             --notify, --clear-notify, --overlap, --clear-overlap, --on-success, --clear-on-success, \
             --on-failure, --clear-on-failure, --expect-success-within, --clear-expect-success-within, \
             --warn-after, --clear-warn-after",
            args.name
        ));
    }
    let mut client = connect(ctx)?;
    let row = existing_job(&mut client, &args.name)?;
    if interactive {
        change = ask(&row)?;
    }
    let row = ops::configure(
        &mut client,
        &args.name,
        &change,
        ctx.config.timezone,
        &Actor::cli(),
    )?;
    let now = store::db_now(&mut client)?;
    println!("Configured job {}", row.name);
    println!("Enabled:            {}", yes_no(row.enabled));
    println!("Notify on success:  {}", yes_no(row.notify_on_success));
    println!("Retries:            {}", render::retries(&row));
    println!("Alert after:        {}", render::alert_after(&row));
    println!("Runs on:            {}", render::runs_on(&row));
    println!("Jitter:             {}", render::jitter(&row));
    println!("Overlap:            {}", render::overlap(&row));
    println!(
        "On success:         {}",
        render::chain(row.on_success(), row.override_on_success.is_some())
    );
    println!(
        "On failure:         {}",
        render::chain(row.on_failure(), row.override_on_failure.is_some())
    );
    println!(
        "Expect success in:  {}",
        render::expect_success_within(&row)
    );
    println!("Warn after:         {}", render::warn_after(&row));
    if let Some(until) = row.paused_at(now) {
        println!(
            "Paused until:       {}",
            render::human_time(until, ctx.config.timezone)
        );
    }
    println!(
        "Notify:             {}",
        render::notify(&row, ctx.config.notifications.email.as_deref())
    );
    print_schedule(&row, ctx, now);
    Ok(())
}

/// Ask for every field, current values as defaults. Nothing is written until
/// every answer is in, so Ctrl-C changes nothing.
fn ask(row: &Job) -> anyhow::Result<ConfigChange> {
    use dialoguer::{Confirm, Input};

    let interrupted = |e: dialoguer::Error| -> anyhow::Error {
        // dialoguer hides the cursor while it reads keys; give it back.
        let _ = dialoguer::console::Term::stderr().show_cursor();
        eprintln!();
        match e {
            dialoguer::Error::IO(io) if io.kind() == std::io::ErrorKind::Interrupted => {
                eprintln!("interrupted: nothing was changed");
                Exit(130).into()
            }
            dialoguer::Error::IO(io) => anyhow::anyhow!("reading the answers: {io}"),
        }
    };
    eprintln!(
        "Configuring job {} ({}); Ctrl-C leaves it unchanged.",
        row.name, row.description
    );
    let builtin = row
        .builtin_schedule()
        .map_or_else(|| "none".into(), |s| s.describe());
    eprintln!("Built-in schedule: {builtin}");
    let enabled = Confirm::new()
        .with_prompt("Enabled?")
        .default(row.enabled)
        .interact()
        .map_err(interrupted)?;
    let notify = Confirm::new()
        .with_prompt("Notify on success (when the run printed output)?")
        .default(row.notify_on_success)
        .interact()
        .map_err(interrupted)?;
    let current_times = match &row.override_times {
        Some(t) if !t.is_empty() => t
            .iter()
            .map(|t| schedule::format_time(*t))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    let times: String = Input::new()
        .with_prompt("Override times (HH:MM[:SS],…; empty for none)")
        .with_initial_text(current_times)
        .allow_empty(true)
        .validate_with(|text: &String| -> Result<(), String> {
            if text.trim().is_empty() {
                Ok(())
            } else {
                parse_times_arg(text).map(|_| ())
            }
        })
        .interact_text()
        .map_err(interrupted)?;
    let override_schedule = if !times.trim().is_empty() {
        Some(Schedule::Times(
            parse_times_arg(&times).map_err(anyhow::Error::msg)?.0,
        ))
    } else {
        let current_interval = row
            .override_interval_seconds
            .map_or_else(String::new, |s| schedule::format_duration(s.max(1) as u32));
        let interval: String = Input::new()
            .with_prompt("Override interval (MM:SS or HH:MM:SS; empty for none)")
            .with_initial_text(current_interval)
            .allow_empty(true)
            .validate_with(|text: &String| -> Result<(), String> {
                if text.trim().is_empty() {
                    Ok(())
                } else {
                    parse_duration_arg(text.trim()).map(|_| ())
                }
            })
            .interact_text()
            .map_err(interrupted)?;
        if interval.trim().is_empty() {
            let cron: String = Input::new()
                .with_prompt("Override cron expression (e.g. 0 9 * * MON-FRI; empty for none)")
                .with_initial_text(row.override_cron.clone().unwrap_or_default())
                .allow_empty(true)
                .validate_with(|text: &String| -> Result<(), String> {
                    if text.trim().is_empty() {
                        Ok(())
                    } else {
                        parse_cron_arg(text).map(|_| ())
                    }
                })
                .interact_text()
                .map_err(interrupted)?;
            if cron.trim().is_empty() {
                None
            } else {
                Some(Schedule::Cron(
                    parse_cron_arg(&cron).map_err(anyhow::Error::msg)?,
                ))
            }
        } else {
            Some(Schedule::Interval(
                parse_duration_arg(interval.trim()).map_err(anyhow::Error::msg)?,
            ))
        }
    };
    Ok(ConfigChange {
        enabled: Some(enabled),
        notify_on_success: Some(notify),
        override_schedule: Some(override_schedule),
        timezone: None,
        start_deadline: None,
        retries: None,
        retry_delay_secs: None,
        alert_after: None,
        runs_on: None,
        jitter_secs: None,
        pause: None,
        notify: None,
        overlap: None,
        on_success: None,
        on_failure: None,
        expect_success_within_secs: None,
        warn_after_secs: None,
    })
}

pub fn run_now(ctx: &Context, args: RunNowArgs) -> anyhow::Result<()> {
    if args.timeout.is_some() && !args.wait {
        return bad_input("--timeout only bounds a wait: expected it together with --wait");
    }
    // Checked here rather than by clap's `conflicts_with`, whose error
    // spans two lines.
    if args.at.is_some() && (args.delay.is_some() || args.wait) {
        return bad_input(
            "--at schedules an extra run at an instant: expected it without --in and --wait",
        );
    }
    if args.cancel_at.is_some()
        && (args.at.is_some() || args.delay.is_some() || args.wait || !args.args.is_empty())
    {
        return bad_input(
            "--cancel-at removes a pending extra run: expected it without --at, --in, --wait and arguments",
        );
    }
    let mut client = connect(ctx)?;
    let tz = ctx.config.timezone;
    if let Some(at) = args.cancel_at {
        let row = ops::cancel_at(&mut client, &args.name, at, tz, &Actor::cli())?;
        println!(
            "Cancelled the extra run of job {} at {}",
            row.name,
            render::human_time(at, tz)
        );
        return Ok(());
    }
    let row = existing_job(&mut client, &args.name)?;
    ops::can_run_now(&row)?;
    ops::can_take_args(&row, &args.args)?;
    if let Some(at) = args.at {
        ops::run_at(&mut client, &row.name, at, &args.args, tz, &Actor::cli())?;
        println!(
            "Job {} will run once more at {}",
            row.name,
            render::human_time(at, tz)
        );
        return Ok(());
    }
    if args.wait {
        return super::wait::run_now_and_wait(
            ctx,
            &mut client,
            &row,
            args.delay.unwrap_or(0),
            &args.args,
            args.timeout,
        );
    }
    ops::run_now(
        &mut client,
        &row.name,
        args.delay.unwrap_or(0),
        &args.args,
        &Actor::cli(),
    )?;
    report_trigger(ctx, &mut client, &row.name)
}

pub fn reset_failure(ctx: &Context, name: &str) -> anyhow::Result<()> {
    let mut client = connect(ctx)?;
    let row = ops::reset_failure(&mut client, name, &Actor::cli())?;
    println!("Cleared the last run and last state of job {}", row.name);
    Ok(())
}

pub fn hold(ctx: &Context, until: Option<Until>) -> anyhow::Result<()> {
    let mut client = connect(ctx)?;
    let tz = ctx.config.timezone;
    let before = ops::hold(&mut client, until, tz, &Actor::cli())?;
    let after = store::hold(&mut client)?;
    if before.held {
        println!(
            "All jobs were already held (since {})",
            render::human_time_opt(before.since, tz, "an unknown time")
        );
    }
    match after.until {
        Some(end) => println!(
            "All jobs are held until {}: then the hold ends by itself, pending jobs moved to their next slot",
            render::human_time(end, tz)
        ),
        None if !before.held => {
            println!("All jobs are held: the runners start nothing until `manage jobs release`")
        }
        None if before.until.is_some() => {
            println!("The hold no longer ends by itself: it lasts until `manage jobs release`")
        }
        None => {}
    }
    Ok(())
}

pub fn release(ctx: &Context, pending: Option<Pending>) -> anyhow::Result<()> {
    let Some(pending) = pending else {
        return bad_input(ops::RELEASE_NEEDS_PENDING);
    };
    let mut client = connect(ctx)?;
    let pending = match pending {
        Pending::Run => ops::Pending::Run,
        Pending::Reschedule => ops::Pending::Reschedule,
    };
    let released = ops::release(&mut client, pending, ctx.config.timezone, &Actor::cli())?;
    if !released.was_held {
        println!("Jobs were not held");
    } else {
        println!("Released the hold");
    }
    if !released.run_now.is_empty() {
        println!("Pending jobs run now: {}", released.run_now.join(", "));
    }
    if !released.rescheduled.is_empty() {
        println!(
            "Rescheduled pending jobs: {}",
            released.rescheduled.join(", ")
        );
    }
    Ok(())
}
