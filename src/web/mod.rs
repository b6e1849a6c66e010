//! `manage web` (§16, §23): the frontpage, a page per job and per run, the
//! history of all jobs (`/runs`), the audit (`/audit`), `/healthz`,
//! `/metrics` and `/api/`, served with axum on a small tokio runtime.
//!
//! The database work of a request runs on tokio's blocking pool with the same
//! synchronous `postgres` client the command line uses, one connection per
//! request taken from a small pool, so the page calls exactly the functions
//! the commands call: [`crate::ops`] for every change (with the value
//! parsers of the command line's flags, [`crate::input`]), [`crate::view`]
//! for what it shows. No SQL and no rule lives here.
//!
//! Safe by default (`security.rs`): without a token only loopback may listen
//! (checked before we get here) and only loopback host names are answered;
//! with one, every request must carry it (Bearer, or Basic with the token as
//! the password so that a browser can sign in). Every form carries a
//! per-process CSRF token, checked before the form is parsed
//! (`security::CheckedForm`), and every POST must come from our own origin; a GET
//! never changes anything; `--read-only` shows no form and refuses every
//! POST. Every response has a strict Content-Security-Policy (no inline
//! script or style: the one stylesheet is `/static/style.css`, the one script
//! `/static/live.js`, which refreshes the tables and which the pages do not
//! need). maud escapes everything it interpolates (`pages.rs`).

mod filters;
mod forms;
mod pages;
mod security;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::config::Config;
use crate::error::BadInput;
use crate::ops::{self, Actor};
use crate::store;

use filters::{AuditFilter, JobFilter, RawQuery, RunFilter};
use forms::{ButtonForm, ConfigForm, ReleaseForm, RunNowForm};
use security::{CheckedForm, Who};

/// How `manage web` connects to the database (`pg_stat_activity` shows it).
pub const APPLICATION_NAME: &str = "manage web";

/// Idle connections kept for the next requests.
const POOL_SIZE: usize = 4;

/// Runs per page of a job's history, as `jobs show`.
const HISTORY_PAGE: u32 = 15;

/// Audit rows on a job's page.
const AUDIT_ROWS: u32 = 10;

/// Runs per page of `/runs`.
const RUNS_PAGE: u32 = 50;

/// The stylesheet and the script, the page's only other resources.
const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("live.js");

/// What `manage web` was told on its command line.
pub struct Options {
    pub listen: SocketAddr,
    pub read_only: bool,
    pub token: Option<String>,
}

/// What every request shares.
struct Web {
    config: Config,
    read_only: bool,
    token: Option<String>,
    /// The CSRF token of this process: random, embedded in every form.
    csrf: String,
    pool: Mutex<Vec<postgres::Client>>,
}

type Shared = Arc<Web>;

impl Web {
    fn take_client(&self) -> anyhow::Result<postgres::Client> {
        let idle = self
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match idle {
            Some(client) if !client.is_closed() => Ok(client),
            _ => Ok(crate::db::connect(&self.config, APPLICATION_NAME)?.0),
        }
    }

    fn give_back(&self, client: postgres::Client) {
        if client.is_closed() {
            return;
        }
        let mut pool = self
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if pool.len() < POOL_SIZE {
            pool.push(client);
        }
    }

    /// Run `work` with a connection on the blocking pool.
    async fn db<T, F>(self: &Arc<Self>, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut postgres::Client, &Config) -> anyhow::Result<T> + Send + 'static,
    {
        let web = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut client = web.take_client()?;
            let result = work(&mut client, &web.config);
            web.give_back(client);
            result
        })
        .await
        .map_err(|e| anyhow::anyhow!("the request's worker stopped: {e}"))?
    }

    fn page(&self) -> pages::Page<'_> {
        self.page_for(None)
    }

    /// The page as `who` sees it: with the user a trusted proxy named.
    fn page_for<'a>(&'a self, who: Option<&'a Who>) -> pages::Page<'a> {
        pages::Page {
            tz: self.config.timezone,
            csrf: &self.csrf,
            read_only: self.read_only,
            user: who.and_then(|w| w.user.as_deref()),
        }
    }
}

/// Serve until SIGTERM or SIGINT.
pub fn serve(config: Config, options: Options) -> anyhow::Result<()> {
    // Reach the database once before listening: a wrong URL is an error at
    // start, not a page of errors later.
    let (client, target) = crate::db::connect(&config, APPLICATION_NAME)?;
    if let Some(notice) = target.notice() {
        eprintln!("{notice}");
    }
    let web = Arc::new(Web {
        config,
        read_only: options.read_only,
        token: options.token,
        csrf: security::random_token()?,
        pool: Mutex::new(vec![client]),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()?;
    // The pooled clients must be dropped outside the runtime: the
    // synchronous client blocks on its own runtime when it closes.
    let pool_owner = Arc::clone(&web);
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
        let address = listener.local_addr()?;
        let mode = if web.read_only { " (read-only)" } else { "" };
        eprintln!("web: listening on http://{address}/{mode}");
        axum::serve(
            listener,
            app(web).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop_signal())
        .await?;
        eprintln!("web: stopped");
        Ok(())
    });
    drop(runtime);
    pool_owner
        .pool
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    served
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn app(web: Shared) -> Router {
    Router::new()
        .route("/", get(frontpage))
        .route("/hold", post(hold))
        .route("/release", post(release))
        .route("/jobs/{name}", get(job_page))
        .route("/jobs/{name}/configure", post(configure))
        .route("/jobs/{name}/run-now", post(run_now))
        .route("/jobs/{name}/reset-failure", post(reset_failure))
        .route("/runs", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/audit", get(audit_page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/jobs", get(api_jobs))
        .route("/api/jobs/{name}", get(api_job))
        .route("/static/style.css", get(stylesheet))
        .route("/static/live.js", get(script))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&web),
            security::guard,
        ))
        .layer(middleware::map_response(security::security_headers))
        .with_state(web)
}

// ---------------------------------------------------------------------------
// Errors.

fn client_ip(address: SocketAddr) -> IpAddr {
    address.ip().to_canonical()
}

fn log_action(address: SocketAddr, action: &str, job: Option<&str>) {
    match job {
        Some(job) => eprintln!("web: {} {action} {job}", client_ip(address)),
        None => eprintln!("web: {} {action}", client_ip(address)),
    }
}

fn error_response(web: &Web, error: &anyhow::Error) -> Response {
    let (status, message) = match error.downcast_ref::<BadInput>() {
        Some(bad) => (StatusCode::BAD_REQUEST, bad.0.clone()),
        None => {
            let message = crate::error::describe(error);
            eprintln!("web: error: {message}");
            (StatusCode::INTERNAL_SERVER_ERROR, message)
        }
    };
    (status, pages::error_page(&web.page(), status, &message)).into_response()
}

fn not_found_page(web: &Web, what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        pages::error_page(&web.page(), StatusCode::NOT_FOUND, what),
    )
        .into_response()
}

async fn not_found(State(web): State<Shared>) -> Response {
    not_found_page(&web, "there is no such page")
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(mut text) => {
            text.push('\n');
            (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    json_response(status, &serde_json::json!({ "error": message }))
}

// ---------------------------------------------------------------------------
// Pages.

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    static_file("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", SCRIPT)
}

/// A filter's job: none when empty; an unknown one is bad input, as for
/// `jobs history NAME` and `jobs audit NAME` (a removed job's runs and rows
/// can still be read).
fn known_job<'a>(client: &mut postgres::Client, job: &'a str) -> anyhow::Result<Option<&'a str>> {
    if job.is_empty() {
        return Ok(None);
    }
    if !store::job_exists(client, job)? {
        return ops::no_such_job(job);
    }
    Ok(Some(job))
}

/// The query of a filtered page; a value that is no filter is bad input (400).
fn filter_query(
    query: Result<Query<RawQuery>, axum::extract::rejection::QueryRejection>,
) -> anyhow::Result<RawQuery> {
    match query {
        Ok(Query(raw)) => Ok(raw),
        Err(rejection) => {
            Err(BadInput::new(format!("the query: {}", rejection.body_text())).into())
        }
    }
}

async fn frontpage(
    State(web): State<Shared>,
    who: Who,
    query: Result<Query<RawQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let filter = match filter_query(query).and_then(|raw| JobFilter::parse(&raw)) {
        Ok(filter) => filter,
        Err(e) => return error_response(&web, &e),
    };
    let view = web
        .db(|client, config| pages::FrontView::load(client, config.timezone, filter))
        .await;
    match view {
        Ok(view) => pages::frontpage(&web.page_for(Some(&who)), &view).into_response(),
        Err(e) => error_response(&web, &e),
    }
}

async fn runs_page(
    State(web): State<Shared>,
    who: Who,
    query: Result<Query<RawQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let filter = match filter_query(query).and_then(|raw| RunFilter::parse(&raw)) {
        Ok(filter) => filter,
        Err(e) => return error_response(&web, &e),
    };
    let wanted = filter.clone();
    let runs = web
        .db(move |client, _| {
            let job = known_job(client, &wanted.job)?;
            Ok(store::runs_page(
                client,
                &store::HistoryFilter { job, failed: false },
                wanted.state,
                wanted.page,
                RUNS_PAGE,
            )?)
        })
        .await;
    match runs {
        Ok(runs) => {
            pages::runs_page(&web.page_for(Some(&who)), &filter, &runs, RUNS_PAGE).into_response()
        }
        Err(e) => error_response(&web, &e),
    }
}

async fn audit_page(
    State(web): State<Shared>,
    who: Who,
    query: Result<Query<RawQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let filter = match filter_query(query).and_then(|raw| AuditFilter::parse(&raw)) {
        Ok(filter) => filter,
        Err(e) => return error_response(&web, &e),
    };
    let wanted = filter.clone();
    let rows = web
        .db(move |client, _| {
            let job = known_job(client, &wanted.job)?;
            Ok(store::audit_page(
                client,
                job,
                wanted.page,
                store::AUDIT_PAGE,
            )?)
        })
        .await;
    match rows {
        Ok(rows) => pages::audit_page(&web.page_for(Some(&who)), &filter, &rows, store::AUDIT_PAGE)
            .into_response(),
        Err(e) => error_response(&web, &e),
    }
}

#[derive(serde::Deserialize)]
struct PageQuery {
    page: Option<String>,
}

/// `?page=N`: as `--page`, 1 or more.
fn page_number(query: &PageQuery) -> Result<u32, String> {
    match query.page.as_deref() {
        None | Some("") => Ok(1),
        Some(text) => crate::input::parse_page(text),
    }
}

/// The job page, with an error (HTTP 400) and the configuration form as it
/// was sent, when a change was refused.
async fn show_job(
    web: &Shared,
    who: &Who,
    name: String,
    page: u32,
    refused: Option<(String, Option<ConfigForm>)>,
) -> Response {
    let status = if refused.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let view = web
        .db(move |client, config| {
            pages::JobView::load(
                client,
                config.timezone,
                &name,
                page,
                HISTORY_PAGE,
                AUDIT_ROWS,
            )
        })
        .await;
    match view {
        Ok(Some(mut view)) => {
            if let Some((error, form)) = refused {
                view.error = Some(error);
                if let Some(form) = form {
                    view.form = form;
                }
            }
            (status, pages::job_page(&web.page_for(Some(who)), &view)).into_response()
        }
        Ok(None) => not_found_page(web, "there is no such job (or it has been removed)"),
        Err(e) => error_response(web, &e),
    }
}

async fn job_page(
    State(web): State<Shared>,
    who: Who,
    Path(name): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    match page_number(&query) {
        Ok(page) => show_job(&web, &who, name, page, None).await,
        Err(problem) => error_response(
            &web,
            &BadInput::new(format!(
                "page \"{}\": {problem}",
                query.page.unwrap_or_default()
            ))
            .into(),
        ),
    }
}

async fn run_page(State(web): State<Shared>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return not_found_page(&web, "there is no such run");
    };
    match web.db(move |client, _| Ok(store::run(client, id)?)).await {
        Ok(Some(run)) => pages::run_page(&web.page(), &run).into_response(),
        Ok(None) => not_found_page(&web, "there is no such run"),
        Err(e) => error_response(&web, &e),
    }
}

// ---------------------------------------------------------------------------
// Changes: each one the function its `jobs` command calls.

async fn hold(
    State(web): State<Shared>,
    who: Who,
    CheckedForm(ButtonForm {}): CheckedForm<ButtonForm>,
) -> Response {
    let actor = who.actor();
    match web
        .db(move |client, config| ops::hold(client, None, config.timezone, &actor))
        .await
    {
        Ok(_) => {
            log_action(who.address, "hold", None);
            Redirect::to("/").into_response()
        }
        Err(e) => error_response(&web, &e),
    }
}

async fn release(
    State(web): State<Shared>,
    who: Who,
    CheckedForm(form): CheckedForm<ReleaseForm>,
) -> Response {
    let pending = match form.pending() {
        Ok(pending) => pending,
        Err(e) => return error_response(&web, &e),
    };
    let actor = who.actor();
    let result = web
        .db(move |client, config| ops::release(client, pending, config.timezone, &actor))
        .await;
    match result {
        Ok(_) => {
            log_action(who.address, "release", None);
            Redirect::to("/").into_response()
        }
        Err(e) => error_response(&web, &e),
    }
}

/// Whether the job exists and is not removed (a change to any other is a 404).
async fn job_exists(web: &Shared, name: &str) -> anyhow::Result<bool> {
    let name = name.to_string();
    web.db(move |client, _| Ok(store::job(client, &name)?.is_some_and(|row| !row.removed)))
        .await
}

/// What a path segment must encode: a job name is `[a-z][a-z0-9_]*`, so
/// none of it in practice, but a name comes from the database all the same.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'-')
    .remove(b'.');

fn job_location(name: &str) -> String {
    format!(
        "/jobs/{}",
        percent_encoding::utf8_percent_encode(name, SEGMENT)
    )
}

/// A change to one job (its form's CSRF token already checked): the job,
/// then `change`; refused input shows the job page again with the error (400).
async fn job_change<F>(
    web: Shared,
    who: Who,
    name: String,
    action: &'static str,
    form: Option<ConfigForm>,
    change: F,
) -> Response
where
    F: FnOnce(&mut postgres::Client, &Config, &Actor) -> anyhow::Result<()> + Send + 'static,
{
    match job_exists(&web, &name).await {
        Ok(true) => {}
        Ok(false) => return not_found_page(&web, "there is no such job (or it has been removed)"),
        Err(e) => return error_response(&web, &e),
    }
    let actor = who.actor();
    match web
        .db(move |client, config| change(client, config, &actor))
        .await
    {
        Ok(()) => {
            log_action(who.address, action, Some(&name));
            Redirect::to(&job_location(&name)).into_response()
        }
        Err(e) => match e.downcast_ref::<BadInput>() {
            Some(bad) => show_job(&web, &who, name, 1, Some((bad.0.clone(), form))).await,
            None => error_response(&web, &e),
        },
    }
}

async fn configure(
    State(web): State<Shared>,
    who: Who,
    Path(name): Path<String>,
    CheckedForm(form): CheckedForm<ConfigForm>,
) -> Response {
    let sent = form.clone();
    let job = name.clone();
    job_change(
        web,
        who,
        name,
        "configure",
        Some(sent),
        move |client, config, actor| {
            let row = ops::existing_job(client, &job)?;
            let change = form.change(&row, &config.notifications.webhooks)?;
            if change != store::ConfigChange::default() {
                ops::configure(client, &job, &change, config.timezone, actor)?;
            }
            Ok(())
        },
    )
    .await
}

async fn run_now(
    State(web): State<Shared>,
    who: Who,
    Path(name): Path<String>,
    CheckedForm(form): CheckedForm<RunNowForm>,
) -> Response {
    let job = name.clone();
    job_change(web, who, name, "run-now", None, move |client, _, actor| {
        let delay = form.delay_secs()?;
        ops::run_now(client, &job, delay, &[], actor).map(|_| ())
    })
    .await
}

async fn reset_failure(
    State(web): State<Shared>,
    who: Who,
    Path(name): Path<String>,
    CheckedForm(ButtonForm {}): CheckedForm<ButtonForm>,
) -> Response {
    let job = name.clone();
    job_change(
        web,
        who,
        name,
        "reset-failure",
        None,
        move |client, _, actor| ops::reset_failure(client, &job, actor).map(|_| ()),
    )
    .await
}

// ---------------------------------------------------------------------------
// For programs: health, metrics, JSON.

async fn healthz(State(web): State<Shared>) -> Response {
    let result = web
        .db(|client, config| {
            let health = crate::view::health::health(client, config.timezone)?;
            Ok((
                health.healthy(),
                crate::view::health::status_json(&health, config.timezone),
            ))
        })
        .await;
    match result {
        Ok((true, value)) => json_response(StatusCode::OK, &value),
        Ok((false, value)) => json_response(StatusCode::SERVICE_UNAVAILABLE, &value),
        Err(e) => json_error(StatusCode::SERVICE_UNAVAILABLE, &crate::error::describe(&e)),
    }
}

/// §15's Prometheus text, as `manage metrics` prints it.
async fn metrics(State(web): State<Shared>) -> Response {
    match web.db(|client, _| crate::metrics::render(client)).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("# error: {}\n", crate::error::describe(&e)),
        )
            .into_response(),
    }
}

async fn api_jobs(State(web): State<Shared>) -> Response {
    let result = web
        .db(|client, config| {
            let rows = store::listed_jobs(client)?;
            Ok(serde_json::Value::from(
                rows.iter()
                    .map(|row| {
                        crate::view::json::job_json(
                            row,
                            config.timezone,
                            config.notifications.email.as_deref(),
                        )
                    })
                    .collect::<Vec<_>>(),
            ))
        })
        .await;
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &crate::error::describe(&e),
        ),
    }
}

async fn api_job(State(web): State<Shared>, Path(name): Path<String>) -> Response {
    let result = web
        .db(move |client, config| {
            let tz = config.timezone;
            let Some(row) = store::job(client, &name)?.filter(|row| !row.removed) else {
                return Ok(None);
            };
            let history = store::history_page(
                client,
                &store::HistoryFilter {
                    job: Some(&name),
                    failed: false,
                },
                1,
                HISTORY_PAGE,
            )?;
            let mut value =
                crate::view::json::job_json(&row, tz, config.notifications.email.as_deref());
            value["history"] = serde_json::Value::from(
                history
                    .iter()
                    .map(|run| crate::view::json::run_json(run, tz, false))
                    .collect::<Vec<_>>(),
            );
            Ok(Some(value))
        })
        .await;
    match result {
        Ok(Some(value)) => json_response(StatusCode::OK, &value),
        Ok(None) => json_error(StatusCode::NOT_FOUND, "there is no such job"),
        Err(e) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &crate::error::describe(&e),
        ),
    }
}
