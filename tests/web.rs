//! `manage web` (§16) over HTTP: every path, its status codes and headers,
//! the token, the CSRF token and the origin check, `--read-only`, escaping,
//! and the changes the page makes — the same operations as the `jobs`
//! commands, with the same error texts and the same audit rows. `manage web`
//! runs as a real child process on a free port.

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{wait_for, Background, Manage, TestDb};

pub const JOBS: &str = "timezone = \"UTC\"\n\
[jobs.poll]\ncommand = \"echo '<b>polled</b>'\"\ndescription = \"Poll <the> bank & more\"\ninterval = \"01:00:00\"\napp = \"invoices\"\n\
[jobs.nightly]\ncommand = \"true\"\ndescription = \"Nightly report\"\ntimes = [\"02:30\"]\n\
[jobs.by_hand]\ncommand = \"true\"\ndescription = \"Rebuild the search index\"\n";

pub fn setup() -> TestDb {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `manage web` running in the background on a free loopback port.
pub struct WebServer {
    pub process: Background,
    pub base: String,
}

impl WebServer {
    pub fn start(db: &TestDb, config: &str, args: &[&str], env: &[(&str, &str)]) -> WebServer {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut manage = db
            .manage()
            .config(config)
            .args(["web", "--listen", &listen])
            .args(args);
        for (key, value) in env {
            manage = manage.env(key, *value);
        }
        let process = manage.spawn();
        wait_for(Duration::from_secs(20), "manage web to listen", || {
            TcpStream::connect(&listen).is_ok()
        });
        WebServer {
            process,
            base: format!("http://{listen}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// One answer: status, headers (names lower-case), body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(Duration::from_secs(30))
        .build()
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("HTTP request failed: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|name| {
            let value = response.header(&name).unwrap_or("").to_string();
            (name.to_lowercase(), value)
        })
        .collect();
    let body = response.into_string().expect("a text body");
    Reply {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call())
}

fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().get(url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    reply(request.call())
}

pub fn post(url: &str, form: &[(&str, &str)]) -> Reply {
    reply(agent().post(url).send_form(form))
}

fn post_with(url: &str, headers: &[(&str, &str)], form: &[(&str, &str)]) -> Reply {
    let mut request = agent().post(url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    reply(request.send_form(form))
}

/// A POST with exactly this body and these headers (a `Content-Type` only
/// when given): what a script or another site may send, not what a form sends.
fn post_raw(url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut request = agent().post(url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    reply(request.send_string(body))
}

/// The CSRF token of the forms on a page.
pub fn csrf(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a form with a CSRF token") + marker.len();
    let end = page[start..].find('"').expect("the end of the token") + start;
    page[start..end].to_string()
}

fn manage(db: &TestDb) -> Manage {
    db.manage().config(JOBS)
}

fn show(db: &TestDb, name: &str) -> Value {
    manage(db).args(["jobs", "show", name, "--json"]).json()
}

fn audit(db: &TestDb) -> Value {
    manage(db).args(["jobs", "audit", "--json"]).json()
}

fn held(db: &TestDb) -> bool {
    db.value("SELECT held FROM manage.hold") == "t"
}

fn start(db: &TestDb) -> WebServer {
    WebServer::start(db, JOBS, &[], &[])
}

#[test]
fn every_response_carries_the_security_headers() {
    let db = setup();
    let web = start(&db);
    for path in [
        "/",
        "/jobs/poll",
        "/healthz",
        "/api/jobs",
        "/nowhere",
        "/static/style.css",
        "/static/live.js",
        "/runs",
        "/audit",
    ] {
        let reply = get(&web.url(path));
        assert_eq!(
            reply.header("content-security-policy"),
            Some(
                "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
                 img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            ),
            "{path}"
        );
        assert_eq!(
            reply.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            reply.header("referrer-policy"),
            Some("same-origin"),
            "{path}"
        );
    }
    let css = get(&web.url("/static/style.css"));
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
}

#[test]
fn the_frontpage_shows_the_banners_the_hold_button_and_every_job_as_a_link() {
    let db = setup();
    let web = start(&db);
    let page = get(&web.url("/"));
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.body.contains("no runner is connected"),
        "{}",
        page.body
    );
    assert!(page.body.contains("jobs are not held"));
    assert!(page.body.contains("Hold all jobs"));
    for name in ["poll", "nightly", "by_hand", "purge_job_history"] {
        assert!(
            page.body
                .contains(&format!("<a href=\"/jobs/{name}\">{name}</a>")),
            "{name} is not linked"
        );
    }
    // Escaped, never raw.
    assert!(page.body.contains("Poll &lt;the&gt; bank &amp; more"));
    assert!(!page.body.contains("<the>"));
    // No inline script (the one script is a file, §23), no inline style.
    assert_eq!(page.body.matches("<script").count(), 1);
    assert!(page
        .body
        .contains("<script src=\"/static/live.js\" defer></script>"));
    assert!(!page.body.contains("style="));
}

#[test]
fn unknown_jobs_runs_and_paths_are_404() {
    let db = setup();
    let web = start(&db);
    assert_eq!(get(&web.url("/jobs/nope")).status, 404);
    assert_eq!(get(&web.url("/runs/999999")).status, 404);
    assert_eq!(get(&web.url("/runs/x")).status, 404);
    assert_eq!(get(&web.url("/nowhere")).status, 404);
    let api = get(&web.url("/api/jobs/nope"));
    assert_eq!(api.status, 404);
    assert!(api.json()["error"].is_string());
    let token = csrf(&get(&web.url("/")).body);
    let reply = post(&web.url("/jobs/nope/run-now"), &[("csrf", &token)]);
    assert_eq!(reply.status, 404);
    // A removed job is gone from the page too.
    db.manage()
        .config("timezone = \"UTC\"\n")
        .arg("migrate")
        .ok();
    assert_eq!(get(&web.url("/jobs/poll")).status, 404);
}

#[test]
fn the_api_serves_what_jobs_list_and_jobs_show_print() {
    let db = setup();
    let web = start(&db);
    let list = get(&web.url("/api/jobs"));
    assert_eq!(list.status, 200);
    assert_eq!(list.header("content-type"), Some("application/json"));
    assert_eq!(
        list.json(),
        manage(&db).args(["jobs", "list", "--json"]).json()
    );
    let one = get(&web.url("/api/jobs/poll"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json(), show(&db, "poll"));
}

#[test]
fn healthz_is_jobs_status_json_with_503_when_unhealthy_and_200_when_healthy() {
    let db = setup();
    let web = start(&db);
    let reply = get(&web.url("/healthz"));
    assert_eq!(reply.status, 503);
    let status = manage(&db).args(["jobs", "status", "--json"]).run();
    assert_eq!(status.code, 1);
    let expected: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(reply.json(), expected);
    assert_eq!(reply.json()["healthy"], false);

    let runner = manage(&db).arg("scheduled_jobs_runner").spawn();
    wait_for(Duration::from_secs(20), "a healthy status", || {
        get(&web.url("/healthz")).status == 200
    });
    let reply = get(&web.url("/healthz"));
    assert_eq!(reply.json()["healthy"], true);
    assert_eq!(reply.json()["runners"].as_array().map(Vec::len), Some(1));
    runner.stop();
}

#[test]
fn metrics_is_what_manage_metrics_prints_in_the_prometheus_text_format() {
    let db = setup();
    let web = start(&db);
    let reply = get(&web.url("/metrics"));
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        reply.header("content-type")
    );
    let cli = manage(&db).arg("metrics").ok().stdout;
    let families = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(families(&reply.body), families(&cli));
    assert!(reply.body.contains("manage_jobs_held 0"), "{}", reply.body);
}

#[test]
fn hold_and_release_on_the_page_are_the_commands_with_an_audit_row_and_a_log_line() {
    let db = setup();
    let web = start(&db);
    let token = csrf(&get(&web.url("/")).body);
    let reply = post(&web.url("/hold"), &[("csrf", &token)]);
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/"));
    assert!(held(&db));
    let page = get(&web.url("/")).body;
    assert!(page.contains("jobs are held since"));
    assert!(page.contains("name=\"pending\" value=\"run\""));
    assert!(page.contains("name=\"pending\" value=\"reschedule\""));
    assert!(!page.contains("Hold all jobs"));

    // Release without a choice: the command's refusal, nothing changed.
    let reply = post(&web.url("/release"), &[("csrf", &token)]);
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("release needs --pending"),
        "{}",
        reply.body
    );
    assert!(held(&db));

    let reply = post(
        &web.url("/release"),
        &[("csrf", &token), ("pending", "run")],
    );
    assert_eq!(reply.status, 303);
    assert!(!held(&db));

    let rows = audit(&db);
    assert_eq!(rows[0]["action"], "release");
    assert_eq!(rows[0]["actor"], "web:127.0.0.1");
    assert_eq!(rows[0]["job"], Value::Null);
    assert!(rows[0]["details"]
        .as_str()
        .unwrap()
        .contains("held: true → false"));
    assert_eq!(rows[1]["action"], "hold");
    assert_eq!(rows[1]["actor"], "web:127.0.0.1");
    assert_eq!(rows[1]["details"], "held: false → true");
    let log = web.process.log();
    assert!(log.contains("web: 127.0.0.1 hold\n"), "{log}");
    assert!(log.contains("web: 127.0.0.1 release\n"), "{log}");
}

#[test]
fn a_post_without_the_csrf_token_or_from_another_origin_is_403_and_changes_nothing() {
    let db = setup();
    let web = start(&db);
    let token = csrf(&get(&web.url("/")).body);
    assert_eq!(post(&web.url("/hold"), &[]).status, 403);
    assert_eq!(post(&web.url("/hold"), &[("csrf", "0123")]).status, 403);
    let evil = post_with(
        &web.url("/hold"),
        &[("Origin", "http://evil.example")],
        &[("csrf", &token)],
    );
    assert_eq!(evil.status, 403);
    let evil = post_with(
        &web.url("/jobs/poll/run-now"),
        &[("Referer", "http://evil.example/page")],
        &[("csrf", &token)],
    );
    assert_eq!(evil.status, 403);
    assert!(!held(&db));
    assert_eq!(
        db.value("SELECT count(*) FROM manage.audit WHERE actor LIKE 'web:%'"),
        "0"
    );
    // From the page's own origin it is accepted.
    let own = post_with(
        &web.url("/hold"),
        &[("Origin", &web.base)],
        &[("csrf", &token)],
    );
    assert_eq!(own.status, 303);
    assert!(held(&db));
}

/// Every form the page posts to.
const POST_PATHS: [&str; 5] = [
    "/hold",
    "/release",
    "/jobs/poll/run-now",
    "/jobs/poll/configure",
    "/jobs/poll/reset-failure",
];

#[test]
fn a_post_without_the_csrf_token_is_403_whatever_its_content_type_or_body() {
    let db = setup();
    let web = start(&db);
    let token = csrf(&get(&web.url("/")).body);
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let json = ("Content-Type", "application/json");
    let wrong = "csrf=0123";
    for path in POST_PATHS {
        let url = web.url(path);
        let refusals = [
            ("an empty body without a type", post_raw(&url, &[], "")),
            ("an empty form", post_raw(&url, &[form], "")),
            ("a JSON body", post_raw(&url, &[json], "{}")),
            ("a body without a type", post_raw(&url, &[], "pending=run")),
            ("a wrong token", post_raw(&url, &[form], wrong)),
            ("a wrong token as JSON", post_raw(&url, &[json], wrong)),
            (
                "the token in JSON",
                post_raw(&url, &[json], &format!("{{\"csrf\":\"{token}\"}}")),
            ),
        ];
        for (what, reply) in refusals {
            assert_eq!(reply.status, 403, "{path} with {what}: {}", reply.body);
            assert!(
                reply
                    .body
                    .contains("security token is missing or out of date"),
                "{path} with {what}: {}",
                reply.body
            );
        }
    }
    assert!(!held(&db));
    assert_eq!(
        db.value("SELECT count(*) FROM manage.audit WHERE actor LIKE 'web:%'"),
        "0"
    );
    // The right token passes, whatever the type; the form proper is read
    // only then, and keeps its own refusal (415: not a form).
    let not_a_form = post_raw(&web.url("/hold"), &[json], &format!("csrf={token}"));
    assert_eq!(not_a_form.status, 415, "{}", not_a_form.body);
    assert!(!held(&db));
    // A form with the token still works.
    let hold = post_raw(&web.url("/hold"), &[form], &format!("csrf={token}"));
    assert_eq!(hold.status, 303, "{}", hold.body);
    assert!(held(&db));
}

#[test]
fn with_a_token_a_post_without_credentials_is_401_before_its_body_is_looked_at() {
    let db = setup();
    let web = WebServer::start(&db, JOBS, &[], &[("MANAGE_WEB_TOKEN", "s3cret")]);
    let bearer = ("Authorization", "Bearer s3cret");
    let token = csrf(&get_with(&web.url("/"), &[bearer]).body);
    let json = ("Content-Type", "application/json");
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    for path in POST_PATHS {
        let url = web.url(path);
        for (what, reply) in [
            ("an empty body", post_raw(&url, &[], "")),
            ("a JSON body", post_raw(&url, &[json], "{}")),
            ("a wrong token", post_raw(&url, &[form], "csrf=0123")),
            (
                "the token",
                post_raw(&url, &[form], &format!("csrf={token}")),
            ),
            (
                "a wrong password",
                post_raw(&url, &[form, ("Authorization", "Bearer nope")], ""),
            ),
        ] {
            assert_eq!(reply.status, 401, "{path} with {what}: {}", reply.body);
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Basic realm=\"manage\""),
                "{path} with {what}"
            );
        }
        // Signed in, the CSRF token comes next.
        let reply = post_raw(&url, &[bearer, json], "{}");
        assert_eq!(reply.status, 403, "{path} signed in: {}", reply.body);
    }
    assert!(!held(&db));
    let hold = post_raw(&web.url("/hold"), &[bearer, form], &format!("csrf={token}"));
    assert_eq!(hold.status, 303, "{}", hold.body);
    assert!(held(&db));
}

#[test]
fn a_get_never_changes_anything() {
    let db = setup();
    let web = start(&db);
    for path in [
        "/hold",
        "/release",
        "/jobs/poll/run-now",
        "/jobs/poll/configure",
        "/jobs/poll/reset-failure",
    ] {
        let reply = get(&web.url(path));
        assert!(
            reply.status == 405 || reply.status == 404,
            "{path}: {}",
            reply.status
        );
    }
    assert!(!held(&db));
    assert_eq!(
        db.value("SELECT count(*) FROM manage.audit WHERE action <> 'sync'"),
        "0"
    );
}

#[test]
fn the_form_changes_the_configuration_as_jobs_configure_does_and_the_next_runs_follow() {
    let db = setup();
    let web = start(&db);
    let page = get(&web.url("/jobs/poll")).body;
    for field in [
        "enabled",
        "notify_on_success",
        "override_times",
        "override_interval",
        "override_cron",
        "clear_override",
        "timezone",
        "start_deadline",
        "retries",
        "retry_delay",
    ] {
        assert!(
            page.contains(&format!("<label for=\"{field}\"")),
            "no label for {field}"
        );
    }
    assert!(page.contains("Run now") && page.contains("Reset failure") && page.contains("Save"));
    let token = csrf(&page);
    let reply = post(
        &web.url("/jobs/poll/configure"),
        &[
            ("csrf", &token),
            ("enabled", "on"),
            ("override_times", "09:00, 17:30"),
            ("timezone", "America/New_York"),
            ("start_deadline", "10:00"),
            ("retries", "2"),
            ("retry_delay", "01:00"),
            ("alert_after", "3"),
        ],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(reply.header("location"), Some("/jobs/poll"));
    let job = show(&db, "poll");
    assert_eq!(
        job["override_times"],
        serde_json::json!(["09:00:00", "17:30:00"])
    );
    assert_eq!(job["timezone"], "America/New_York");
    assert_eq!(job["start_deadline"], "00:10:00");
    assert_eq!(job["retries"], 2);
    assert_eq!(job["alert_after"], 3);
    assert_eq!(job["notify_on_success"], false);
    // The page's next runs are the command's.
    let next: Vec<String> = manage(&db)
        .args(["jobs", "next", "poll", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(next.len(), 5);
    let page = get(&web.url("/jobs/poll")).body;
    let human = manage(&db).args(["jobs", "next", "poll"]).ok().stdout;
    for line in human.lines().filter(|l| l.starts_with("20")) {
        assert!(
            page.contains(&format!("<li>{line}</li>")),
            "{line} not on the page"
        );
    }
    // The audit row says what changed, old → new.
    let rows = audit(&db);
    assert_eq!(rows[0]["action"], "configure");
    assert_eq!(rows[0]["actor"], "web:127.0.0.1");
    assert_eq!(rows[0]["job"], "poll");
    assert_eq!(
        rows[0]["details"],
        "override_times: none → 09:00:00,17:30:00, timezone: UTC → America/New_York, \
         start_deadline: none → 00:10:00, retries: 0 → 2, retry_delay: 00:00:30 → 00:01:00, \
         alert_after: 1 → 3"
    );
    assert!(web
        .process
        .log()
        .contains("web: 127.0.0.1 configure poll\n"));
    assert!(page.contains("override_times: none → 09:00:00,17:30:00"));

    // Unticking enabled disables; clearing the override goes back to the built-in.
    let reply = post(
        &web.url("/jobs/poll/configure"),
        &[
            ("csrf", &token),
            ("override_times", "09:00:00,17:30:00"),
            ("clear_override", "on"),
            ("timezone", "America/New_York"),
            ("start_deadline", "00:10:00"),
            ("retries", "2"),
            ("retry_delay", "00:01:00"),
            ("alert_after", "3"),
        ],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    let job = show(&db, "poll");
    assert_eq!(job["enabled"], false);
    assert_eq!(job["override_times"], Value::Null);
    assert_eq!(job["next_run"], Value::Null);
    assert_eq!(
        audit(&db)[0]["details"],
        "enabled: true → false, override_times: 09:00:00,17:30:00 → none"
    );
}

#[test]
fn a_bad_value_is_refused_with_the_commands_text_and_nothing_changes() {
    let db = setup();
    let web = start(&db);
    let before = show(&db, "poll");
    let token = csrf(&get(&web.url("/jobs/poll")).body);
    let cli = manage(&db)
        .args(["jobs", "configure", "poll", "--override-times", "25:00"])
        .run();
    cli.assert_bad_input(&["25:00"]);
    let problem = cli
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .and_then(|l| l.split_once("': "))
        .map(|(_, p)| p.to_string())
        .unwrap();
    for (field, value, cli_flag) in [
        ("override_times", "25:00", "--override-times"),
        ("override_interval", "00:00", "--override-interval"),
        ("override_cron", "0 0 30 2 *", "--override-cron"),
        ("timezone", "Mars/Olympus", "--timezone"),
        ("retries", "101", "--retries"),
        ("alert_after", "0", "--alert-after"),
    ] {
        let mut form = vec![
            ("csrf", token.as_str()),
            ("enabled", "on"),
            ("retry_delay", "00:00:30"),
        ];
        if field != "retries" {
            form.push(("retries", "0"));
        }
        form.push((field, value));
        let reply = post(&web.url("/jobs/poll/configure"), &form);
        assert_eq!(reply.status, 400, "{field}");
        assert!(reply.body.contains("role=\"alert\""), "{field}");
        // The form is shown again with what was typed.
        assert!(
            reply
                .body
                .contains(&format!("value=\"{}\"", value.replace('\'', "&#39;"))),
            "{field}"
        );
        // The same text as the command's refusal of the same value.
        let cli = manage(&db)
            .args(["jobs", "configure", "poll", cli_flag, value])
            .run();
        assert_eq!(cli.code, 2, "{cli_flag}");
        let cli_problem = cli
            .stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .and_then(|l| l.split_once("': "))
            .map(|(_, p)| p.to_string())
            .unwrap();
        let escaped = cli_problem
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            reply.body.contains(&escaped),
            "{field}: {cli_problem}\n{}",
            reply.body
        );
    }
    assert!(!problem.is_empty());
    let two = post(
        &web.url("/jobs/poll/configure"),
        &[
            ("csrf", &token),
            ("enabled", "on"),
            ("override_times", "09:00"),
            ("override_interval", "01:00"),
            ("retries", "0"),
            ("retry_delay", "00:30"),
        ],
    );
    assert_eq!(two.status, 400);
    assert_eq!(show(&db, "poll"), before);
    assert_eq!(
        db.value("SELECT count(*) FROM manage.audit WHERE action = 'configure'"),
        "0"
    );
}

#[test]
fn run_now_and_reset_failure_on_the_page_are_the_commands() {
    let db = setup();
    let web = start(&db);
    let token = csrf(&get(&web.url("/jobs/nightly")).body);
    let reply = post(&web.url("/jobs/nightly/run-now"), &[("csrf", &token)]);
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/jobs/nightly"));
    assert_eq!(
        db.value("SELECT next_run <= clock_timestamp() FROM manage.jobs WHERE name = 'nightly'"),
        "t"
    );
    assert_eq!(audit(&db)[0]["action"], "run-now");
    // With a delay, as `run-now --in`; a bad one is the command's refusal.
    let reply = post(
        &web.url("/jobs/nightly/run-now"),
        &[("csrf", &token), ("delay", "10:00")],
    );
    assert_eq!(reply.status, 303);
    assert_eq!(audit(&db)[0]["details"], "run requested in 00:10:00");
    let reply = post(
        &web.url("/jobs/nightly/run-now"),
        &[("csrf", &token), ("delay", "00:00")],
    );
    assert_eq!(reply.status, 400);
    let cli = manage(&db)
        .args(["jobs", "run-now", "nightly", "--in", "00:00"])
        .run();
    let problem = cli
        .stderr
        .lines()
        .next()
        .unwrap()
        .split_once("': ")
        .unwrap()
        .1
        .to_string();
    assert!(
        reply.body.contains(&problem.replace('"', "&quot;")),
        "{problem}\n{}",
        reply.body
    );
    assert!(web
        .process
        .log()
        .contains("web: 127.0.0.1 run-now nightly\n"));

    // A disabled job: the command's refusal, 400, nothing requested.
    manage(&db)
        .args(["jobs", "configure", "poll", "--enabled", "false"])
        .ok();
    let reply = post(&web.url("/jobs/poll/run-now"), &[("csrf", &token)]);
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .body
            .contains("job &quot;poll&quot; is disabled: a disabled job never runs"),
        "{}",
        reply.body
    );
    // The form beside the refusal shows the job as it is.
    assert!(
        reply
            .body
            .contains("name=\"retry_delay\" value=\"00:00:30\""),
        "{}",
        reply.body
    );

    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET last_run = now(), last_state = 'failed' WHERE name = 'nightly'",
        )
        .unwrap();
    let reply = post(&web.url("/jobs/nightly/reset-failure"), &[("csrf", &token)]);
    assert_eq!(reply.status, 303);
    let job = show(&db, "nightly");
    assert_eq!(job["last_state"], Value::Null);
    assert_eq!(job["last_run"], Value::Null);
    let row = &audit(&db)[0];
    assert_eq!(row["action"], "reset-failure");
    assert_eq!(row["details"], "last_state: failed → none");
}

#[test]
fn a_run_page_shows_the_whole_output_escaped() {
    let db = setup();
    let web = start(&db);
    let id: i64 = db
        .client()
        .query_one(
            "INSERT INTO manage.runs (job, state, started_at, finished_at, runtime_seconds, output) \
             VALUES ('poll', 'failed', now(), now(), 0.5, E'first <line>\\nsecond & last') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    let page = get(&web.url(&format!("/runs/{id}")));
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("first &lt;line&gt;\nsecond &amp; last"),
        "{}",
        page.body
    );
    let job = get(&web.url("/jobs/poll")).body;
    assert!(job.contains(&format!("<a href=\"/runs/{id}\">{id}</a>")));
    assert!(job.contains("first &lt;line&gt;"));
    assert!(!job.contains("second &amp; last"));
}

#[test]
fn the_history_is_paged_fifteen_at_a_time() {
    let db = setup();
    let web = start(&db);
    db.client()
        .batch_execute(
            "INSERT INTO manage.runs (job, state, started_at, finished_at, output) \
             SELECT 'poll', 'succeeded', now() - make_interval(mins => i), now() - make_interval(mins => i), 'run ' || i \
             FROM generate_series(1, 20) i",
        )
        .unwrap();
    let first = get(&web.url("/jobs/poll")).body;
    assert_eq!(first.matches("<a href=\"/runs/").count(), 15);
    assert!(first.contains("href=\"/jobs/poll?page=2\""));
    let second = get(&web.url("/jobs/poll?page=2")).body;
    assert_eq!(second.matches("<a href=\"/runs/").count(), 5);
    assert_eq!(get(&web.url("/jobs/poll?page=0")).status, 400);
}

#[test]
fn with_a_token_every_request_needs_it_as_bearer_or_basic_password() {
    let db = setup();
    let web = WebServer::start(&db, JOBS, &[], &[("MANAGE_WEB_TOKEN", "s3cret")]);
    for path in ["/", "/healthz", "/api/jobs", "/static/style.css"] {
        let reply = get(&web.url(path));
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Basic realm=\"manage\"")
        );
    }
    let wrong = get_with(&web.url("/"), &[("Authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 401);
    let bearer = get_with(&web.url("/"), &[("Authorization", "Bearer s3cret")]);
    assert_eq!(bearer.status, 200);
    // "operator:s3cret"
    let basic = get_with(
        &web.url("/"),
        &[("Authorization", "Basic b3BlcmF0b3I6czNjcmV0")],
    );
    assert_eq!(basic.status, 200);
    let hold = post_with(&web.url("/hold"), &[], &[("csrf", &csrf(&bearer.body))]);
    assert_eq!(hold.status, 401);
    assert!(!held(&db));
}

#[test]
fn without_a_token_only_a_loopback_address_may_be_listened_on() {
    let db = setup();
    let run = manage(&db).args(["web", "--listen", "0.0.0.0:8000"]).run();
    run.assert_bad_input(&["0.0.0.0:8000", "loopback", "token"]);
    let run = manage(&db).args(["web", "--listen", "nowhere"]).run();
    run.assert_bad_input(&["nowhere", "ADDR:PORT"]);
    let config = format!("{JOBS}[web]\nlisten = \"0.0.0.0:8000\"\n");
    db.manage()
        .config(&config)
        .args(["web"])
        .run()
        .assert_bad_input(&["0.0.0.0:8000"]);
    // With a token, any address.
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let mut web = manage(&db)
        .env("MANAGE_WEB_TOKEN", "s3cret")
        .args(["web", "--listen", &listen])
        .spawn();
    wait_for(Duration::from_secs(20), "manage web to listen", || {
        TcpStream::connect(format!("127.0.0.1:{port}")).is_ok()
    });
    assert_eq!(web.wait_exit(Duration::from_millis(100)), None);
}

#[test]
fn without_a_token_a_request_for_another_host_name_is_refused() {
    // DNS rebinding: a foreign name resolved to 127.0.0.1.
    let db = setup();
    let web = start(&db);
    let reply = get_with(&web.url("/"), &[("Host", "evil.example:8000")]);
    assert_eq!(reply.status, 403);
    let port = web.base.rsplit(':').next().unwrap().to_string();
    let reply = get_with(&web.url("/"), &[("Host", &format!("localhost:{port}"))]);
    assert_eq!(reply.status, 200);
}

#[test]
fn listen_takes_localhost_by_name() {
    let db = setup();
    let port = free_port();
    let listen = format!("localhost:{port}");
    let _web = manage(&db).args(["web", "--listen", &listen]).spawn();
    let url = format!("http://{listen}/healthz");
    wait_for(Duration::from_secs(20), "manage web on localhost", || {
        matches!(
            agent().get(&url).call(),
            Ok(_) | Err(ureq::Error::Status(..))
        )
    });
}

#[test]
fn the_web_keys_are_checked_like_every_key() {
    let db = setup();
    let run = db
        .manage()
        .config("[web]\nport = 8000\n")
        .args(["jobs", "list"])
        .run();
    run.assert_bad_input(&["web.port"]);
    let run = db
        .manage()
        .config("[web]\nlisten = \"localhost\"\n")
        .args(["jobs", "list"])
        .run();
    run.assert_bad_input(&["web.listen", "ADDR:PORT"]);
}

#[test]
fn read_only_shows_no_form_and_refuses_every_post() {
    let db = setup();
    let web = WebServer::start(&db, JOBS, &["--read-only"], &[]);
    for path in ["/", "/jobs/poll"] {
        let page = get(&web.url(path)).body;
        assert!(!page.contains("<button"), "{path}");
        assert!(!page.contains("method=\"post\""), "{path}");
    }
    for path in [
        "/hold",
        "/release",
        "/jobs/poll/run-now",
        "/jobs/poll/configure",
        "/jobs/poll/reset-failure",
    ] {
        assert_eq!(post(&web.url(path), &[("csrf", "x")]).status, 403, "{path}");
    }
    assert!(!held(&db));
}

#[test]
fn jobs_audit_lists_cli_and_page_changes_newest_first() {
    let db = setup();
    let web = start(&db);
    manage(&db)
        .args([
            "jobs",
            "configure",
            "poll",
            "--override-interval",
            "00:30:00",
        ])
        .ok();
    let token = csrf(&get(&web.url("/jobs/poll")).body);
    let reply = post(
        &web.url("/jobs/poll/configure"),
        &[
            ("csrf", &token),
            ("enabled", "on"),
            ("override_interval", "00:45:00"),
            ("retries", "0"),
            ("retry_delay", "00:00:30"),
        ],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    let rows = manage(&db).args(["jobs", "audit", "poll", "--json"]).json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let user = nix_user();
    let host = short_host();
    assert_eq!(rows[0]["actor"], "web:127.0.0.1");
    assert_eq!(rows[0]["details"], "override_interval: 00:30:00 → 00:45:00");
    assert_eq!(rows[1]["actor"], format!("cli:{user}@{host}"));
    assert_eq!(rows[1]["action"], "configure");
    assert_eq!(rows[1]["details"], "override_interval: none → 00:30:00");
    assert_eq!(rows[2]["action"], "sync");
    assert_eq!(rows[2]["details"], "Created scheduled job poll");
    for row in rows {
        let at = row["at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
        assert!(at.ends_with("+00:00") && at.contains('.'), "{at}");
        assert_eq!(row.as_object().unwrap().len(), 5);
    }
    let table = manage(&db).args(["jobs", "audit"]).ok().stdout;
    assert!(
        table.contains("Actor") && table.contains("web:127.0.0.1"),
        "{table}"
    );
    // The page shows the job's recent changes too.
    let page = get(&web.url("/jobs/poll")).body;
    assert!(page.contains("override_interval: 00:30:00 → 00:45:00"));
    // As `jobs history NAME`: an unknown name and page 0 are bad input.
    manage(&db)
        .args(["jobs", "audit", "nope"])
        .run()
        .assert_bad_input(&["nope"]);
    manage(&db)
        .args(["jobs", "audit", "--page", "0"])
        .run()
        .assert_bad_input(&["--page"]);
    assert_eq!(
        manage(&db)
            .args(["jobs", "audit", "--page", "9", "--json"])
            .json(),
        Value::Array(vec![])
    );
}

#[test]
fn every_change_from_the_command_line_is_audited_with_its_actor() {
    let db = setup();
    for args in [
        &["jobs", "hold"][..],
        &["jobs", "release", "--pending", "reschedule"],
        &["jobs", "run-now", "poll"],
        &["jobs", "reset-failure", "poll"],
        &["jobs", "configure", "poll", "--enabled", "false"],
    ] {
        manage(&db).args(args).ok();
    }
    // Refused input is not a change: no row.
    manage(&db)
        .args(["jobs", "run-now", "poll"])
        .run()
        .assert_bad_input(&["disabled"]);
    let rows = audit(&db);
    let actor = format!("cli:{}@{}", nix_user(), short_host());
    let recent: Vec<(String, String, Value)> = rows.as_array().unwrap()[..5]
        .iter()
        .map(|r| {
            assert_eq!(r["actor"], actor.as_str());
            (
                r["action"].as_str().unwrap().to_string(),
                r["details"].as_str().unwrap().to_string(),
                r["job"].clone(),
            )
        })
        .collect();
    assert_eq!(
        recent,
        vec![
            (
                "configure".into(),
                "enabled: true → false".into(),
                Value::from("poll")
            ),
            (
                "reset-failure".into(),
                "last_state: none → none".into(),
                Value::from("poll")
            ),
            (
                "run-now".into(),
                "run requested now".into(),
                Value::from("poll")
            ),
            (
                "release".into(),
                "held: true → false, pending: reschedule".into(),
                Value::Null
            ),
            ("hold".into(), "held: false → true".into(), Value::Null),
        ]
    );
    assert_eq!(rows[5]["action"], "sync");
}

fn nix_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn short_host() -> String {
    let out = std::process::Command::new("hostname").output().unwrap();
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    name.split('.').next().unwrap_or("localhost").to_string()
}

#[test]
fn sync_lines_are_audited_by_migrate_and_by_the_runner() {
    let db = setup();
    let rows = audit(&db);
    let rows = rows.as_array().unwrap();
    assert!(rows.iter().all(|r| r["action"] == "sync"));
    assert!(rows
        .iter()
        .any(|r| r["details"] == "Created scheduled job nightly" && r["job"] == "nightly"));
    assert!(rows[0]["actor"].as_str().unwrap().starts_with("cli:"));
    // The runner's own sync at start-up: a job removed from the file.
    let config = "timezone = \"UTC\"\n[jobs.poll]\ncommand = \"true\"\ninterval = \"01:00:00\"\n";
    let runner = db
        .manage()
        .config(config)
        .arg("scheduled_jobs_runner")
        .spawn();
    wait_for(Duration::from_secs(20), "the runner's sync", || {
        db.value("SELECT count(*) FROM manage.audit WHERE actor LIKE 'runner:%'") != "0"
    });
    runner.stop();
    let row = db.query_strings(
        "SELECT actor, details FROM manage.audit WHERE job = 'nightly' ORDER BY id DESC LIMIT 1",
    );
    assert_eq!(row[0][0], format!("runner:{}", short_host()));
    assert_eq!(row[0][1], "Removed scheduled job nightly");
}

#[test]
fn purge_job_history_removes_audit_rows_older_than_the_retention() {
    let db = setup();
    db.client()
        .batch_execute(
            "INSERT INTO manage.audit (at, actor, action, job, details) VALUES \
             (now() - interval '100 days', 'cli:old@host', 'hold', NULL, 'held: false → true'), \
             (now() - interval '1 day', 'cli:new@host', 'hold', NULL, 'held: false → true')",
        )
        .unwrap();
    manage(&db).arg("purge_job_history").ok();
    assert_eq!(
        db.value("SELECT count(*) FROM manage.audit WHERE actor = 'cli:old@host'"),
        "0"
    );
    assert_eq!(
        db.value("SELECT count(*) FROM manage.audit WHERE actor = 'cli:new@host'"),
        "1"
    );
}

/// The job page of `job` labels each of `fields`; its form's CSRF token.
fn labelled_form(web: &WebServer, job: &str, fields: &[&str]) -> String {
    let page = get(&web.url(&format!("/jobs/{job}"))).body;
    for field in fields {
        assert!(
            page.contains(&format!("<label for=\"{field}\"")),
            "no label for {field}"
        );
    }
    csrf(&page)
}

#[test]
fn the_form_sets_runs_on_jitter_and_a_pause_as_jobs_configure_does() {
    let db = setup();
    let web = start(&db);
    let token = labelled_form(&web, "poll", &["runs_on", "jitter", "pause_until"]);
    let reply = post(
        &web.url("/jobs/poll/configure"),
        &[
            ("csrf", &token),
            ("enabled", "on"),
            ("runs_on", "gpu, eu"),
            ("jitter", "05:00"),
            ("pause_until", "2099-01-01T00:00:00Z"),
        ],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    let job = show(&db, "poll");
    assert_eq!(job["runs_on"], serde_json::json!(["gpu", "eu"]));
    assert_eq!(job["jitter"], "00:05:00");
    assert_eq!(job["paused_until"], "2099-01-01T00:00:00.000+00:00");
    // The page shows them back, and sending it unchanged changes nothing.
    let page = get(&web.url("/jobs/poll")).body;
    assert!(page.contains("value=\"gpu,eu\""), "runs_on not shown");
    assert!(
        page.contains("value=\"2099-01-01T00:00:00Z\""),
        "pause not shown"
    );
    let token = csrf(&page);
    let same = post(
        &web.url("/jobs/poll/configure"),
        &[
            ("csrf", &token),
            ("enabled", "on"),
            ("runs_on", "gpu,eu"),
            ("jitter", "00:05:00"),
            ("pause_until", "2099-01-01T00:00:00Z"),
        ],
    );
    assert_eq!(same.status, 303, "{}", same.body);
    assert_eq!(show(&db, "poll"), job);
    // Emptied: any runner, the declared jitter (none), not paused.
    let reply = post(
        &web.url("/jobs/poll/configure"),
        &[
            ("csrf", &token),
            ("enabled", "on"),
            ("runs_on", ""),
            ("jitter", ""),
            ("pause_until", ""),
        ],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    let job = show(&db, "poll");
    assert_eq!(job["runs_on"], serde_json::json!([]));
    assert!(job["jitter"].is_null(), "{job}");
    assert!(job["paused_until"].is_null(), "{job}");
    // A jitter wider than the hour between runs is refused, as on the command line.
    let reply = post(
        &web.url("/jobs/poll/configure"),
        &[("csrf", &token), ("enabled", "on"), ("jitter", "02:00:00")],
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
}

#[test]
fn the_form_sets_overlap_and_chains_as_jobs_configure_does_and_refuses_a_cycle() {
    let db = setup();
    let web = start(&db);
    let token = labelled_form(&web, "poll", &["overlap", "on_success", "on_failure"]);
    let reply = post(
        &web.url("/jobs/poll/configure"),
        &[
            ("csrf", &token),
            ("enabled", "on"),
            ("overlap", "replace"),
            ("on_success", "nightly, by_hand"),
            ("on_failure", "by_hand"),
        ],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    let job = show(&db, "poll");
    assert_eq!(job["overlap"], "replace");
    assert_eq!(job["on_success"], serde_json::json!(["nightly", "by_hand"]));
    assert_eq!(job["on_failure"], serde_json::json!(["by_hand"]));
    // by_hand → poll would close a cycle: refused with the command line's text.
    let token = labelled_form(&web, "by_hand", &["on_failure"]);
    let reply = post(
        &web.url("/jobs/by_hand/configure"),
        &[("csrf", &token), ("enabled", "on"), ("on_failure", "poll")],
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("is a cycle"), "{}", reply.body);
    assert_eq!(show(&db, "by_hand")["on_failure"], serde_json::json!([]));
    // An emptied overlap goes back to the declared one.
    let token = labelled_form(&web, "poll", &["overlap"]);
    let reply = post(
        &web.url("/jobs/poll/configure"),
        &[("csrf", &token), ("enabled", "on"), ("overlap", "")],
    );
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(show(&db, "poll")["overlap"], "wait");
}

/// Post the job form of `poll` (enabled) with `fields` besides its token.
fn configure_poll(web: &WebServer, token: &str, fields: &[(&str, &str)]) -> Reply {
    let mut form = vec![("csrf", token), ("enabled", "on")];
    form.extend_from_slice(fields);
    post(&web.url("/jobs/poll/configure"), &form)
}

#[test]
fn the_form_sets_notify_expect_success_within_and_warn_after_as_jobs_configure_does() {
    let db = setup();
    let web = start(&db);
    let page = get(&web.url("/jobs/poll")).body;
    for field in ["notify", "expect_success_within", "warn_after"] {
        assert!(page.contains(&format!("<label for=\"{field}\"")), "{field}");
    }
    let token = csrf(&page);
    let set = [
        ("notify", "ops@example.org, dev@example.org"),
        ("expect_success_within", "02:00:00"),
        ("warn_after", "01:00"),
    ];
    let reply = configure_poll(&web, &token, &set);
    assert_eq!(reply.status, 303, "{}", reply.body);
    let job = show(&db, "poll");
    let recipients = serde_json::json!(["ops@example.org", "dev@example.org"]);
    assert_eq!(job["notify"], recipients);
    assert_eq!(job["expect_success_within"], "02:00:00");
    assert_eq!(job["warn_after"], "00:01:00");
    // Shown back; sent back as shown it changes nothing.
    let page = get(&web.url("/jobs/poll")).body;
    assert!(page.contains("value=\"ops@example.org,dev@example.org\""));
    let token = csrf(&page);
    let shown = [
        ("notify", "ops@example.org,dev@example.org"),
        ("expect_success_within", "02:00:00"),
        ("warn_after", "00:01:00"),
    ];
    assert_eq!(configure_poll(&web, &token, &shown).status, 303);
    assert_eq!(show(&db, "poll"), job);
    // Refused as on the command line, and nothing changes: an unknown
    // webhook, a warning not before the timeout.
    for (field, value, needle) in [
        (
            "notify",
            "webhook:chat",
            "no [notifications.webhooks] are configured",
        ),
        ("warn_after", "05:00", "timeout"),
    ] {
        let reply = configure_poll(&web, &token, &[(field, value)]);
        assert_eq!(reply.status, 400, "{field}: {}", reply.body);
        assert!(reply.body.contains(needle), "{field}: {}", reply.body);
        assert_eq!(show(&db, "poll"), job);
    }
    // Emptied: the declared values (none) and the global recipient.
    let emptied = [
        ("notify", ""),
        ("expect_success_within", ""),
        ("warn_after", ""),
    ];
    assert_eq!(configure_poll(&web, &token, &emptied).status, 303);
    let job = show(&db, "poll");
    assert!(job["expect_success_within"].is_null(), "{job}");
    assert!(job["warn_after"].is_null(), "{job}");
    assert_eq!(
        db.value("SELECT override_notify IS NULL FROM manage.jobs WHERE name = 'poll'"),
        "t"
    );
}
