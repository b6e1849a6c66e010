//! The HTML of the web page, as maud templates: compile-checked, and every
//! value interpolated is escaped. Plain server-rendered HTML that works
//! without JavaScript; the stylesheet (`style.css`) makes it readable on a
//! phone. The words are those of the command line (`jobs list`, `jobs show`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup, DOCTYPE};

use crate::job::{Job, RunState};
use crate::schedule::{self, Schedule};
use crate::store::{self, AuditRow, RunRow};
use crate::view::health::{banner, list_schedule, overview};
use crate::view::text;

use super::forms::ConfigForm;
use super::job_location;

/// What every page needs to know about the server.
pub struct Page<'a> {
    pub tz: Tz,
    pub csrf: &'a str,
    pub read_only: bool,
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
            }
            body {
                header.top {
                    a href="/" { "manage" }
                    span.zone { "Times in " (page.tz.name()) }
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

/// The frontpage's facts.
pub struct FrontView {
    pub banner: Vec<String>,
    pub held: bool,
    pub no_runner: bool,
    pub jobs: Vec<Job>,
}

impl FrontView {
    pub fn load(client: &mut postgres::Client, tz: Tz) -> anyhow::Result<Self> {
        let jobs = store::listed_jobs(client)?;
        let overview = overview(client)?;
        Ok(FrontView {
            banner: banner(&overview, tz),
            held: overview.hold.held,
            no_runner: overview.runners.is_empty(),
            jobs,
        })
    }
}

pub fn frontpage(page: &Page, view: &FrontView) -> Markup {
    let tz = page.tz;
    layout(
        page,
        "Scheduled jobs",
        html! {
            h1 { "Scheduled jobs" }
            section.banners aria-label="Runners and hold" {
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
            div.scroll {
                table.jobs {
                    thead {
                        tr {
                            th scope="col" { "Name" }
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
                                td { (job.description) }
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
            @if view.jobs.is_empty() {
                p { "No jobs yet: run " code { "manage migrate" } "." }
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
                    dl.facts {
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
                        ol.upcoming {
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
            (history_table(&view.history, tz))
            nav.pages aria-label="History pages" {
                @if view.page > 1 {
                    a href=(format!("{location}?page={}", view.page - 1)) rel="prev" { "‹ Newer" }
                }
                span { "Page " (view.page) }
                @if more {
                    a href=(format!("{location}?page={}", view.page + 1)) rel="next" { "Older ›" }
                }
            }
            h2 { "Recent changes" }
            (audit_table(&view.audit, tz))
        },
    )
}

fn history_table(runs: &[RunRow], tz: Tz) -> Markup {
    html! {
        @if runs.is_empty() {
            p { "(no runs)" }
        } @else {
            div.scroll {
                table.history {
                    thead {
                        tr {
                            th scope="col" { "Run" }
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

fn audit_table(rows: &[AuditRow], tz: Tz) -> Markup {
    html! {
        @if rows.is_empty() {
            p { "(no changes)" }
        } @else {
            div.scroll {
                table.audit {
                    thead {
                        tr {
                            th scope="col" { "Time" }
                            th scope="col" { "Actor" }
                            th scope="col" { "Action" }
                            th scope="col" { "Details" }
                        }
                    }
                    tbody {
                        @for row in rows {
                            tr {
                                td { (text::human_time(row.at, tz)) }
                                td { (row.actor) }
                                td { (row.action) }
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
