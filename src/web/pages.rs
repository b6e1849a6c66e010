//! The HTML of the web page, as maud templates: compile-checked, and every
//! value interpolated is escaped. Plain server-rendered HTML that works
//! without JavaScript; the stylesheet (`style.css`) makes it readable on a
//! phone. The words are those of the command line (`jobs list`, `jobs show`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, DOCTYPE};

use crate::job::{Job, RunState};
use crate::schedule::{self, Schedule};
use crate::store::{self, AuditRow, RunRow, StripRun};
use crate::view::health::{banner, list_schedule, overview};
use crate::view::text;

use super::filters::{AuditFilter, JobFilter, JobState, RunFilter};
use super::forms::ConfigForm;
use super::job_location;

/// Runs in a job's strip on the frontpage (§23).
pub const STRIP_RUNS: u32 = 30;

/// What every page needs to know about the server.
pub struct Page<'a> {
    pub tz: Tz,
    pub csrf: &'a str,
    pub read_only: bool,
    /// The user a trusted proxy named (§23), if any.
    pub user: Option<&'a str>,
}

fn layout(page: &Page, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · manage" }
                link rel="stylesheet" href="/static/style.css";
                // Refreshes the tables marked data-live (§23); the page is
                // whole without it.
                script src="/static/live.js" defer {}
            }
            body {
                header.top {
                    a.home href="/" { "manage" }
                    nav aria-label="Pages" {
                        a href="/" { "Jobs" }
                        a href="/runs" { "Runs" }
                        a href="/audit" { "Audit" }
                    }
                    span.zone { "Times in " (page.tz.name()) }
                    @if let Some(user) = page.user {
                        span.user { "Signed in as " (user) }
                    }
                    @if page.read_only {
                        span.readonly { "read-only" }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn csrf_field(page: &Page) -> Markup {
    html! { input type="hidden" name="csrf" value=(page.csrf); }
}

fn time_opt(instant: Option<DateTime<Utc>>, tz: Tz, none: &str) -> String {
    text::human_time_opt(instant, tz, none)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn error_page(page: &Page, status: axum::http::StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    layout(
        page,
        title,
        html! {
            h1 { (status.as_u16()) " " (title) }
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the jobs" } }
        },
    )
}

/// The counts of the frontpage's summary line (§23), over all jobs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub jobs: usize,
    pub failing: usize,
    pub running: usize,
    pub overdue: usize,
    pub paused: usize,
    pub runners: usize,
}

/// The jobs on one page of the frontpage (§23: with 1,000 jobs it must
/// answer in 50 ms; its strips and rows cost about 0.15 ms a job).
pub const FRONT_PAGE: u32 = 100;

/// The frontpage's facts.
pub struct FrontView {
    pub banner: Vec<String>,
    pub held: bool,
    pub no_runner: bool,
    pub summary: Summary,
    pub filter: JobFilter,
    /// The apps of all jobs, for the filter's choice.
    pub apps: Vec<String>,
    /// How many jobs the filter keeps, and how many pages of them there are.
    pub kept: usize,
    pub pages: u32,
    /// The jobs the filter keeps on its page.
    pub jobs: Vec<Job>,
    /// Their newest runs, newest first.
    pub strips: std::collections::HashMap<String, Vec<StripRun>>,
}

impl FrontView {
    pub fn load(client: &mut postgres::Client, tz: Tz, filter: JobFilter) -> anyhow::Result<Self> {
        let all = store::listed_jobs(client)?;
        let overview = overview(client)?;
        let (now, held) = (overview.now, overview.hold.held);
        let count = |state: JobState| all.iter().filter(|j| state.holds(j, now, held)).count();
        let summary = Summary {
            jobs: all.len(),
            failing: count(JobState::Failed),
            running: count(JobState::Running),
            overdue: count(JobState::Overdue),
            paused: count(JobState::Paused),
            runners: overview.runners.len(),
        };
        let mut apps: Vec<String> = all.iter().map(|j| j.app.clone()).collect();
        apps.sort();
        apps.dedup();
        let kept: Vec<Job> = all
            .into_iter()
            .filter(|j| filter.keeps(j, now, held))
            .collect();
        // A page at a time: a fleet's frontpage stays small and fast (§23).
        let per_page = FRONT_PAGE as usize;
        let pages = kept.len().div_ceil(per_page).max(1) as u32;
        let count = kept.len();
        let skip = (filter.page.max(1) as usize - 1).saturating_mul(per_page);
        let jobs: Vec<Job> = kept.into_iter().skip(skip).take(per_page).collect();
        let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        let strips = store::recent_runs(client, &names, STRIP_RUNS)?;
        Ok(FrontView {
            banner: banner(&overview, tz),
            held,
            no_runner: overview.runners.is_empty(),
            summary,
            filter,
            apps,
            kept: count,
            pages,
            jobs,
            strips,
        })
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "12 jobs: 1 failing, 0 running, 2 overdue, 0 paused · 1 runner connected",
/// each count a link to the jobs it counts.
fn summary_line(view: &FrontView) -> Markup {
    let s = &view.summary;
    let counts = [
        (JobState::Failed, s.failing, "failing"),
        (JobState::Running, s.running, "running"),
        (JobState::Overdue, s.overdue, "overdue"),
        (JobState::Paused, s.paused, "paused"),
    ];
    html! {
        p.summary id="summary" data-live {
            (plural(s.jobs, "job", "jobs")) ": "
            @for (i, (state, n, word)) in counts.iter().enumerate() {
                @if i > 0 { ", " }
                a href=(JobFilter::default().with_state(*state))
                    class=[(*n > 0 && *state != JobState::Paused).then_some("count-bad")] {
                    (n) " " (word)
                }
            }
            " · " (plural(s.runners, "runner", "runners")) " connected"
        }
    }
}

/// A filter's text field.
fn search_field(id: &str, label: &str, value: &str, placeholder: &str) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            input type="search" id=(id) name=(id) value=(value) placeholder=(placeholder)
                autocomplete="off" spellcheck="false";
        }
    }
}

/// A filter's choice: "any" (the empty value), then `choices`.
fn choice_field<'a>(
    id: &str,
    label: &str,
    chosen: &str,
    choices: impl IntoIterator<Item = &'a str>,
) -> Markup {
    html! {
        div.field {
            label for=(id) { (label) }
            select id=(id) name=(id) {
                option value="" selected[chosen.is_empty()] { "any" }
                @for choice in choices {
                    option value=(choice) selected[chosen == choice] { (choice) }
                }
            }
        }
    }
}

fn filter_form(view: &FrontView) -> Markup {
    let f = &view.filter;
    html! {
        form.filter method="get" action="/" role="search" {
            (search_field("q", "Find", &f.q, "name or description"))
            (choice_field("state", "State", f.state.map_or("", JobState::as_str), JobState::ALL.map(JobState::as_str)))
            // An app no job has (yet) is shown as chosen all the same.
            @let unknown = (!f.app.is_empty() && !view.apps.contains(&f.app)).then_some(f.app.as_str());
            (choice_field("app", "App", &f.app, view.apps.iter().map(String::as_str).chain(unknown)))
            // An input, not a button: a filter changes nothing, and is
            // offered on a read-only page too (which shows no buttons, §16).
            input.submit type="submit" value="Filter";
            @if !f.is_empty() {
                a.clear href="/" { "Show all jobs" }
            }
        }
    }
}

/// The strip's geometry: a mark every `STEP` px, `HEIGHT` px high.
const STEP: u32 = 8;
const HEIGHT: u32 = 18;

/// The colour class of a run's mark and its geometry but `x`: a failure
/// stands taller than a success, so that the strip reads without colour too.
fn mark(state: RunState) -> &'static str {
    match state {
        RunState::Succeeded => "ok\" y=\"8\" width=\"6\" height=\"10",
        RunState::Running => "running\" y=\"4\" width=\"6\" height=\"14",
        RunState::Failed => "bad\" y=\"0\" width=\"6\" height=\"18",
        RunState::TimedOut => "late\" y=\"0\" width=\"6\" height=\"18",
        RunState::Interrupted => "cut\" y=\"0\" width=\"6\" height=\"18",
    }
}

/// `n` with at least two digits, as `{:02}` writes it.
fn push_two(out: &mut String, n: u32) {
    if n < 10 {
        out.push('0');
    }
    push_number(out, n.into());
}

fn push_number(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|d| char::from(*d)));
}

/// `text::seconds`, without the float formatter where rounding to tenths
/// is plain (anything not within a hair of a tie).
fn push_seconds(out: &mut String, secs: f64) {
    let tenths = secs * 10.0;
    if secs >= 0.0 && tenths < 1e15 && ((tenths.fract() - 0.5).abs() > 1e-6) {
        let tenths = tenths.round() as u64;
        push_number(out, tenths / 10);
        out.push('.');
        push_number(out, tenths % 10);
        out.push_str(" s");
    } else {
        out.push_str(&text::seconds(secs));
    }
}

/// A job's newest runs as marks, oldest on the left, each a link to its run
/// with its start and runtime as its title (shown on hover): plain SVG.
///
/// Written straight into one string rather than through the template: the
/// frontpage of 1,000 jobs has 30,000 marks, and this is most of its time
/// (BENCHMARKS.md, scenario 9). Nothing in a mark comes from a user but the
/// zone's abbreviation, which is escaped; the rest is numbers and state names.
fn strip(runs: &[StripRun], tz: Tz) -> Markup {
    use chrono::{Datelike as _, Offset as _, Timelike as _};
    use std::fmt::Write as _;
    if runs.is_empty() {
        return html! { span.none { "no runs" } };
    }
    let width = STEP * STRIP_RUNS;
    let offset = STRIP_RUNS.saturating_sub(runs.len() as u32);
    let mut out = String::with_capacity(200 * runs.len() + 200);
    let _ = write!(
        out,
        "<svg class=\"strip\" xmlns=\"http://www.w3.org/2000/svg\" role=\"group\" \
         aria-label=\"the last {} runs\" width=\"{width}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {width} {HEIGHT}\">",
        runs.len()
    );
    // The zone's abbreviation (as `human_time` writes it), looked up again
    // only when the offset changes.
    let mut zone: Option<(chrono::FixedOffset, String)> = None;
    for (i, run) in runs.iter().rev().enumerate() {
        let local = run.started_at.with_timezone(&tz);
        let fixed = local.offset().fix();
        if zone.as_ref().is_none_or(|(at, _)| *at != fixed) {
            let mut name = String::new();
            let _ = write!(maud::Escaper::new(&mut name), "{}", local.format("%Z"));
            zone = Some((fixed, name));
        }
        let id = run.id.unsigned_abs();
        out.push_str("<a href=\"/runs/");
        push_number(&mut out, id);
        out.push_str("\"><title>Run ");
        push_number(&mut out, id);
        out.push_str(": ");
        out.push_str(run.state.as_str());
        out.push_str(", started ");
        push_number(&mut out, local.year().unsigned_abs().into());
        for (separator, part) in [
            ('-', local.month()),
            ('-', local.day()),
            (' ', local.hour()),
            (':', local.minute()),
            (':', local.second()),
        ] {
            out.push(separator);
            push_two(&mut out, part);
        }
        out.push(' ');
        out.push_str(zone.as_ref().map_or("", |(_, name)| name.as_str()));
        out.push_str(", runtime ");
        match run.runtime_seconds {
            Some(secs) => push_seconds(&mut out, secs),
            None => out.push('-'),
        }
        out.push_str("</title><rect class=\"");
        out.push_str(mark(run.state));
        out.push_str("\" x=\"");
        push_number(&mut out, ((offset + i as u32) * STEP).into());
        out.push_str("\"></rect></a>");
    }
    out.push_str("</svg>");
    maud::PreEscaped(out)
}

pub fn frontpage(page: &Page, view: &FrontView) -> Markup {
    let tz = page.tz;
    layout(
        page,
        "Scheduled jobs",
        html! {
            h1 { "Scheduled jobs" }
            section.banners aria-label="Runners and hold" {
                (summary_line(view))
                @for line in &view.banner {
                    @let warn = line.starts_with("warning")
                        || (line.starts_with("Runner:") && view.no_runner)
                        || (line.starts_with("Hold:") && view.held);
                    p class=(if warn { "banner warn" } else { "banner" }) { (line) }
                }
            }
            @if !page.read_only {
                @if view.held {
                    form.release method="post" action="/release" {
                        (csrf_field(page))
                        fieldset {
                            legend { "Release the hold: the jobs that became due during it…" }
                            label {
                                input type="radio" name="pending" value="run" required;
                                " run now"
                            }
                            label {
                                input type="radio" name="pending" value="reschedule";
                                " move to their next slot"
                            }
                            button type="submit" { "Release" }
                        }
                    }
                } @else {
                    form.hold method="post" action="/hold" {
                        (csrf_field(page))
                        button type="submit" { "Hold all jobs" }
                    }
                }
            }
            h2 { "Jobs" }
            (filter_form(view))
            @if view.pages > 1 {
                @let first = (view.filter.page.max(1) - 1) as usize * FRONT_PAGE as usize;
                p.shown {
                    @if view.jobs.is_empty() {
                        "None of " (view.kept) " on page " (view.filter.page)
                    } @else {
                        (first + 1) "–" (first + view.jobs.len()) " of " (view.kept)
                    }
                    @if !view.filter.is_empty() {
                        " (of " (plural(view.summary.jobs, "job", "jobs")) ")"
                    }
                    " shown"
                }
            } @else if !view.filter.is_empty() {
                p.shown { (view.jobs.len()) " of " (plural(view.summary.jobs, "job", "jobs")) " shown" }
            }
            div.scroll tabindex="0" role="region" aria-label="Jobs" {
                table.jobs id="jobs" data-live {
                    thead {
                        tr {
                            th scope="col" { "Name" }
                            th scope="col" { "Recent runs" }
                            th scope="col" { "Description" }
                            th scope="col" { "App" }
                            th scope="col" { "Enabled" }
                            th scope="col" { "Schedule" }
                            th scope="col" { "Next run" }
                            th scope="col" { "Last run" }
                            th scope="col" { "Last status" }
                            th scope="col" { "Last skipped" }
                        }
                    }
                    tbody {
                        @for job in &view.jobs {
                            @let failed = job.last_state.is_some_and(RunState::is_failure);
                            @let status = if job.running() {
                                RunState::Running.to_string()
                            } else {
                                job.last_state.map_or_else(|| "-".into(), |s| s.to_string())
                            };
                            tr class=[failed.then_some("failed")] {
                                th scope="row" {
                                    a href=(job_location(&job.name)) { (job.name) }
                                }
                                td.strip { (strip(view.strips.get(&job.name).map_or(&[][..], Vec::as_slice), tz)) }
                                td.desc { (job.description) }
                                td { (job.app) }
                                td { (yes_no(job.enabled)) }
                                td { (list_schedule(job, tz)) }
                                td { (time_opt(job.next_run, tz, "-")) }
                                td { (time_opt(job.last_run, tz, "never")) }
                                td {
                                    @if failed { strong.failed { "! " (status) } } @else { (status) }
                                }
                                td { (time_opt(job.last_skip, tz, "-")) }
                            }
                        }
                    }
                }
            }
            @if view.pages > 1 {
                (pages_nav_between("Job pages", view.filter.page.max(1), view.filter.page < view.pages, ("‹ Previous", "Next ›"), |n| view.filter.page_location(n)))
            }
            @if view.summary.jobs == 0 {
                p { "No jobs yet: run " code { "manage migrate" } "." }
            } @else if view.kept == 0 {
                p { "No job matches the filter." }
            }
        },
    )
}

/// A job page's facts.
pub struct JobView {
    pub job: Job,
    pub now: DateTime<Utc>,
    pub upcoming: Vec<DateTime<Utc>>,
    pub history: Vec<RunRow>,
    pub page: u32,
    pub per_page: u32,
    pub audit: Vec<AuditRow>,
    pub form: ConfigForm,
    pub error: Option<String>,
}

impl JobView {
    /// None when there is no such job, or it is removed.
    pub fn load(
        client: &mut postgres::Client,
        tz: Tz,
        name: &str,
        page: u32,
        per_page: u32,
        audit_rows: u32,
    ) -> anyhow::Result<Option<Self>> {
        let Some(job) = store::job(client, name)?.filter(|row| !row.removed) else {
            return Ok(None);
        };
        let now = store::db_now(client)?;
        let upcoming = if job.effective_schedule().is_some() {
            job.upcoming_runs(None, now, 5, tz)
        } else {
            Vec::new()
        };
        let history = store::history_page(
            client,
            &store::HistoryFilter {
                job: Some(name),
                failed: false,
            },
            page,
            per_page,
        )?;
        let audit = store::audit_page(client, Some(name), 1, audit_rows)?;
        let form = ConfigForm::from_job(&job);
        Ok(Some(JobView {
            job,
            now,
            upcoming,
            history,
            page,
            per_page,
            audit,
            form,
            error: None,
        }))
    }
}

fn describe(s: Option<Schedule>) -> String {
    s.map_or_else(|| "none".to_string(), |s| s.describe())
}

fn text_field(id: &str, label: &str, value: &str, hint: &str) -> Markup {
    placeholder_field(id, label, value, hint, "")
}

/// A text field; `placeholder` shows what applies while it is empty.
fn placeholder_field(id: &str, label: &str, value: &str, hint: &str, placeholder: &str) -> Markup {
    let hint_id = format!("{id}-hint");
    html! {
        div.field {
            label for=(id) { (label) }
            input type="text" id=(id) name=(id) value=(value) aria-describedby=(hint_id)
                placeholder=[(!placeholder.is_empty()).then_some(placeholder)]
                autocomplete="off" spellcheck="false";
            small id=(hint_id) { (hint) }
        }
    }
}

fn check_field(id: &str, label: &str, checked: bool) -> Markup {
    html! {
        div.field.check {
            input type="checkbox" id=(id) name=(id) checked[checked];
            label for=(id) { (label) }
        }
    }
}

fn config_form(page: &Page, view: &JobView) -> Markup {
    let job = &view.job;
    let form = &view.form;
    let zone_hint = format!(
        "An IANA zone, e.g. America/New_York; empty for the {} ({})",
        if job.builtin_timezone.is_some() {
            "declared zone"
        } else {
            "configured zone"
        },
        job.builtin_timezone
            .clone()
            .unwrap_or_else(|| page.tz.name().to_string())
    );
    let deadline_hint = match job.builtin_start_deadline_seconds {
        Some(s) if s > 0 => format!(
            "MM:SS or HH:MM:SS; empty for the declared deadline ({})",
            schedule::format_duration(s.unsigned_abs())
        ),
        _ => "MM:SS or HH:MM:SS; empty for none".to_string(),
    };
    html! {
        form.config method="post" action=(format!("{}/configure", job_location(&job.name))) {
            (csrf_field(page))
            fieldset {
                legend { "Configuration" }
                (check_field("enabled", "Enabled", form.enabled.is_some()))
                (check_field("notify_on_success", "Notify on success (when the run printed output)", form.notify_on_success.is_some()))
            }
            fieldset {
                legend { "Override schedule" }
                p.note { "One of the three; all empty for the built-in schedule: " (describe(job.builtin_schedule())) "." }
                (text_field("override_times", "Override times", form.override_times.as_deref().unwrap_or(""), "HH:MM[:SS], comma-separated"))
                (text_field("override_interval", "Override interval", form.override_interval.as_deref().unwrap_or(""), "MM:SS or HH:MM:SS"))
                (text_field("override_cron", "Override cron expression", form.override_cron.as_deref().unwrap_or(""), "e.g. 0 9 * * MON-FRI, or @daily"))
                (check_field("clear_override", "Clear the override (back to the built-in schedule)", form.clear_override.is_some()))
            }
            fieldset {
                legend { "Time zone, deadline, retries, alerts" }
                (placeholder_field("timezone", "Time zone", form.timezone.as_deref().unwrap_or(""), &zone_hint, job.zone(page.tz).name()))
                (text_field("start_deadline", "Start deadline", form.start_deadline.as_deref().unwrap_or(""), &deadline_hint))
                (text_field("retries", "Retries", form.retries.as_deref().unwrap_or(""), "0 to 100"))
                (text_field("retry_delay", "Retry delay", form.retry_delay.as_deref().unwrap_or(""), "MM:SS or HH:MM:SS, doubling for each next retry"))
                (text_field("alert_after", "Alert after", form.alert_after.as_deref().unwrap_or(""), "Mail failures from the N-th in a row on: 1 to 1000"))
            }
            fieldset {
                legend { "Runners, jitter, pause" }
                (text_field("runs_on", "Runs on runners with tags", form.runs_on.as_deref().unwrap_or(""), "TAG,…; empty: any runner"))
                (text_field("jitter", "Jitter", form.jitter.as_deref().unwrap_or(""), "MM:SS or HH:MM:SS after each slot, at most the gap between slots; empty: the declared one"))
                (text_field("pause_until", "Paused until", form.pause_until.as_deref().unwrap_or(""), "an RFC 3339 instant, or HH:MM:SS from now; empty: not paused"))
            }
            fieldset {
                legend { "Overlap and chains" }
                (text_field("overlap", "Overlap", form.overlap.as_deref().unwrap_or(""), "wait, skip or replace: what a slot that comes during a run does; empty: the declared one"))
                (text_field("on_success", "On success", form.on_success.as_deref().unwrap_or(""), "JOB,… scheduled when a run (after its retries) succeeds; empty: none"))
                (text_field("on_failure", "On failure", form.on_failure.as_deref().unwrap_or(""), "JOB,… scheduled when a run (after its retries) fails; empty: none"))
            }
            fieldset {
                legend { "Alerts" }
                (text_field("notify", "Notify", form.notify.as_deref().unwrap_or(""), "ADDRESS or webhook:NAME, comma-separated, instead of notifications.email; empty: the declared list, else notifications.email"))
                (text_field("expect_success_within", "Expect success within", form.expect_success_within.as_deref().unwrap_or(""), "MM:SS or HH:MM:SS: one alert when the job has not succeeded for this long; empty: the declared one"))
                (text_field("warn_after", "Warn after", form.warn_after.as_deref().unwrap_or(""), "MM:SS or HH:MM:SS, less than the timeout: one alert when a run is still going after this long; empty: the declared one"))
            }
            button type="submit" { "Save" }
        }
    }
}

pub fn job_page(page: &Page, view: &JobView) -> Markup {
    let tz = page.tz;
    let job = &view.job;
    let origin = if job.override_schedule().is_some() {
        " (override)"
    } else {
        ""
    };
    let mut facts: Vec<(&str, String)> = vec![
        ("Description", job.description.clone()),
        ("App", job.app.clone()),
        ("Kind", text::kind(job)),
        ("Enabled", yes_no(job.enabled).into()),
        (
            "Effective schedule",
            format!("{}{origin}", describe(job.effective_schedule())),
        ),
        ("Built-in schedule", describe(job.builtin_schedule())),
        ("Override", describe(job.override_schedule())),
        ("Time zone", job.zone(tz).name().to_string()),
        (
            "Start deadline",
            job.start_deadline()
                .map_or_else(|| "none".into(), schedule::format_duration),
        ),
        ("Next run", text::next_run(job, tz, view.now)),
        ("Last run", time_opt(job.last_run, tz, "never")),
        (
            "Last status",
            job.last_state.map_or_else(|| "-".into(), |s| s.to_string()),
        ),
        ("Last skipped", time_opt(job.last_skip, tz, "never")),
        ("Running", yes_no(job.running()).into()),
        ("Retries", text::retries(job)),
        ("Alert after", text::alert_after(job)),
        ("Overlap", text::overlap(job)),
        (
            "On success",
            text::chain(job.on_success(), job.override_on_success.is_some()),
        ),
        (
            "On failure",
            text::chain(job.on_failure(), job.override_on_failure.is_some()),
        ),
        ("Consecutive failures", job.consecutive_failures.to_string()),
    ];
    if let Some(transaction) = text::transaction(job) {
        facts.insert(3, ("Transaction", transaction.into()));
    }
    text::insert_extra_runs(&mut facts, job, tz, view.now);
    let location = job_location(&job.name);
    let more = view.history.len() as u32 == view.per_page;
    layout(
        page,
        &format!("Job {}", job.name),
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href="/" { "Jobs" } " › " (job.name) }
            h1 { "Job " (job.name) }
            @if let Some(error) = &view.error {
                p.error role="alert" id="error" { (error) }
            }
            div.job-top {
                div.summary {
                    dl.facts id="facts" data-live {
                        @for (label, value) in &facts {
                            dt { (label) }
                            dd { (value) }
                        }
                    }
                    @if !page.read_only {
                        div.actions {
                            form.run-now method="post" action=(format!("{location}/run-now")) {
                                (csrf_field(page))
                                button type="submit" { "Run now" }
                                label for="delay" { "or in" }
                                input type="text" id="delay" name="delay" size="8" placeholder="MM:SS"
                                    autocomplete="off" spellcheck="false";
                            }
                            form method="post" action=(format!("{location}/reset-failure")) {
                                (csrf_field(page))
                                button.secondary type="submit" { "Reset failure" }
                            }
                        }
                    }
                    h2 { "Next runs" }
                    @if view.upcoming.is_empty() {
                        p { "None: the job has no schedule; it runs only when started by hand." }
                    } @else {
                        @if !job.enabled {
                            p { "The job is disabled; if it were enabled it would run at:" }
                        }
                        ol.upcoming id="upcoming" data-live {
                            @for at in &view.upcoming {
                                li { (text::human_time(*at, tz)) }
                            }
                        }
                    }
                }
                @if !page.read_only {
                    div.settings { (config_form(page, view)) }
                }
            }
            h2 { "History" }
            (history_table(&view.history, tz, false))
            (pages_nav("History pages", view.page, more, |n| format!("{location}?page={n}")))
            h2 { "Recent changes" }
            (audit_table(&view.audit, tz, false))
            p { a href=(AuditFilter { job: job.name.clone(), page: 1 }.page_location(1)) { "All changes to " (job.name) } }
        },
    )
}

/// Runs, newest first; `with_job`: with the job of each (the history of all jobs).
fn history_table(runs: &[RunRow], tz: Tz, with_job: bool) -> Markup {
    html! {
        @if runs.is_empty() {
            p id="history" data-live { "(no runs)" }
        } @else {
            div.scroll tabindex="0" role="region" aria-label="Runs" {
                table.history id="history" data-live {
                    thead {
                        tr {
                            th scope="col" { "Run" }
                            @if with_job { th scope="col" { "Job" } }
                            th scope="col" { "Started" }
                            th scope="col" { "State" }
                            th scope="col" { "Attempt" }
                            th scope="col" { "Runtime" }
                            th scope="col" { "Output" }
                        }
                    }
                    tbody {
                        @for run in runs {
                            @let failed = run.state.is_failure();
                            tr class=[failed.then_some("failed")] {
                                td { a href=(format!("/runs/{}", run.id)) { (run.id) } }
                                @if with_job { td { a href=(job_location(&run.job)) { (run.job) } } }
                                td { (text::human_time(run.started_at, tz)) }
                                td { @if failed { strong.failed { "! " (run.state) } } @else { (run.state) } }
                                td { (run.attempt) }
                                td { (run.runtime_seconds.map_or_else(|| "-".into(), text::seconds)) }
                                td.output { (run.output_first_line()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Audit rows, newest first; `with_job`: with the job of each, as `jobs audit`.
fn audit_table(rows: &[AuditRow], tz: Tz, with_job: bool) -> Markup {
    html! {
        @if rows.is_empty() {
            p id="audit" data-live { "(no changes)" }
        } @else {
            div.scroll tabindex="0" role="region" aria-label="Changes" {
                table.audit id="audit" data-live {
                    thead {
                        tr {
                            th scope="col" { "Time" }
                            th scope="col" { "Actor" }
                            th scope="col" { "Action" }
                            @if with_job { th scope="col" { "Job" } }
                            th scope="col" { "Details" }
                        }
                    }
                    tbody {
                        @for row in rows {
                            tr {
                                td { (text::human_time(row.at, tz)) }
                                td { (row.actor) }
                                td { (row.action) }
                                @if with_job {
                                    td {
                                        @match &row.job {
                                            Some(job) => a href=(AuditFilter { job: job.clone(), page: 1 }.page_location(1)) { (job) },
                                            None => "-",
                                        }
                                    }
                                }
                                td { (row.details) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn run_page(page: &Page, run: &RunRow) -> Markup {
    let tz = page.tz;
    let failed = run.state.is_failure();
    layout(
        page,
        &format!("Run {}", run.id),
        html! {
            nav.crumbs aria-label="Breadcrumb" {
                a href="/" { "Jobs" } " › "
                a href=(job_location(&run.job)) { (run.job) } " › "
                "run " (run.id)
            }
            h1 { "Run " (run.id) " of " (run.job) }
            dl.facts {
                dt { "State" }
                dd { @if failed { strong.failed { "! " (run.state) } } @else { (run.state) } }
                dt { "Attempt" } dd { (run.attempt) }
                dt { "Started" } dd { (text::human_time(run.started_at, tz)) }
                dt { "Finished" } dd { (time_opt(run.finished_at, tz, "-")) }
                dt { "Runtime" } dd { (run.runtime_seconds.map_or_else(|| "-".into(), text::seconds)) }
            }
            h2 { "Output" }
            @if run.output.is_empty() {
                p { "(no output)" }
            } @else {
                pre.output { (run.output) }
            }
        },
    )
}

/// Previous and next links of a paged list, its filter kept.
fn pages_nav(label: &str, page: u32, more: bool, at: impl Fn(u32) -> String) -> Markup {
    pages_nav_between(label, page, more, ("‹ Newer", "Older ›"), at)
}

/// Links to the page before and after `page` (the latter when there are
/// `more`), with the words given for them.
fn pages_nav_between(
    label: &str,
    page: u32,
    more: bool,
    (before, after): (&str, &str),
    at: impl Fn(u32) -> String,
) -> Markup {
    html! {
        nav.pages aria-label=(label) {
            @if page > 1 {
                a href=(at(page - 1)) rel="prev" { (before) }
            }
            span { "Page " (page) }
            @if more {
                a href=(at(page + 1)) rel="next" { (after) }
            }
        }
    }
}

/// `/runs`: the history of all jobs, filtered (§23).
pub fn runs_page(page: &Page, filter: &RunFilter, runs: &[RunRow], per_page: u32) -> Markup {
    let more = runs.len() as u32 == per_page;
    layout(
        page,
        "Runs",
        html! {
            h1 { "Runs" }
            form.filter method="get" action="/runs" role="search" {
                (search_field("job", "Job", &filter.job, "a job's name"))
                (choice_field("state", "State", filter.state.map_or("", RunState::as_str), RunState::ALL.map(RunState::as_str)))
                input.submit type="submit" value="Filter";
                @if filter.state.is_some() || !filter.job.is_empty() {
                    a.clear href="/runs" { "Show all runs" }
                }
            }
            (history_table(runs, page.tz, true))
            (pages_nav("Run pages", filter.page, more, |n| filter.page_location(n)))
        },
    )
}

/// `/audit`: the rows of `jobs audit`, filtered by job (§23).
pub fn audit_page(page: &Page, filter: &AuditFilter, rows: &[AuditRow], per_page: u32) -> Markup {
    let more = rows.len() as u32 == per_page;
    layout(
        page,
        "Audit",
        html! {
            h1 { "Audit" }
            form.filter method="get" action="/audit" role="search" {
                (search_field("job", "Job", &filter.job, "a job's name"))
                input.submit type="submit" value="Filter";
                @if !filter.job.is_empty() {
                    a.clear href="/audit" { "Show all changes" }
                }
            }
            (audit_table(rows, page.tz, true))
            (pages_nav("Audit pages", filter.page, more, |n| filter.page_location(n)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strips_titles_say_the_start_as_human_time_does_across_a_dst_change() {
        let zone: Tz = "Europe/Berlin".parse().unwrap();
        let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
        let runs = [
            StripRun {
                id: 7,
                state: RunState::Succeeded,
                started_at: at("2026-03-29T01:30:00Z"),
                runtime_seconds: Some(0.25),
            },
            StripRun {
                id: 6,
                state: RunState::TimedOut,
                started_at: at("2026-03-29T00:30:00Z"),
                runtime_seconds: None,
            },
        ];
        let svg = strip(&runs, zone).into_string();
        for run in &runs {
            let title = format!(
                "<title>Run {}: {}, started {}, runtime {}</title>",
                run.id,
                run.state,
                text::human_time(run.started_at, zone),
                run.runtime_seconds
                    .map_or_else(|| "-".into(), text::seconds)
            );
            assert!(svg.contains(&title), "{title} not in {svg}");
        }
        assert!(svg.contains("started 2026-03-29 01:30:00 CET"));
        assert!(svg.contains("started 2026-03-29 03:30:00 CEST"));
        // Oldest on the left, right-aligned: run 6 then run 7 in the last two places.
        let six = svg.find("/runs/6").unwrap();
        let seven = svg.find("/runs/7").unwrap();
        assert!(six < seven);
        assert!(svg.contains("<rect class=\"late\" y=\"0\" width=\"6\" height=\"18\" x=\"224\">"));
        assert!(svg.contains("<rect class=\"ok\" y=\"8\" width=\"6\" height=\"10\" x=\"232\">"));
        assert_eq!(
            strip(&[], zone).into_string(),
            "<span class=\"none\">no runs</span>"
        );
    }

    #[test]
    fn a_runtime_is_written_as_text_seconds_writes_it() {
        for secs in [
            0.0,
            0.04,
            0.05,
            0.15,
            0.25,
            0.35,
            1.5,
            1.449_999,
            9.95,
            59.96,
            123_456.789,
            1e20,
        ] {
            let mut out = String::new();
            push_seconds(&mut out, secs);
            assert_eq!(out, text::seconds(secs), "{secs}");
        }
        let mut out = String::new();
        push_number(&mut out, 0);
        push_two(&mut out, 7);
        push_two(&mut out, 12);
        push_number(&mut out, u64::MAX);
        assert_eq!(out, format!("00712{}", u64::MAX));
    }
}
