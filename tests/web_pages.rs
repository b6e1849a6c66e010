//! The web page, part two (§23), over HTTP: the run strips and the summary
//! line, the filters of the frontpage and of `/runs`, the audit page, the
//! identity a trusted proxy sends, the live script under the
//! Content-Security-Policy, and `--read-only` on every new page.

use crate::harness::TestDb;
use crate::web::{csrf, get, post, setup, WebServer, JOBS};

fn start(db: &TestDb) -> WebServer {
    WebServer::start(db, JOBS, &[], &[])
}

/// The table row of `job` on the frontpage.
fn row<'a>(page: &'a str, job: &str) -> &'a str {
    let marker = format!("<a href=\"/jobs/{job}\">{job}</a>");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no row for {job}"));
    let end = page[start..]
        .find("</tr>")
        .map_or(page.len(), |e| e + start);
    &page[start..end]
}

/// The rows of the jobs table, by the job each links.
fn listed(page: &str) -> Vec<String> {
    let table = &page[page.find("<table class=\"jobs\"").expect("the jobs table")..];
    let table = &table[..table.find("</table>").expect("its end")];
    table
        .match_indices("<th scope=\"row\"><a href=\"/jobs/")
        .map(|(i, m)| {
            let rest = &table[i + m.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

fn insert_runs(db: &TestDb, sql: &str) {
    db.client().batch_execute(sql).unwrap();
}

#[test]
fn the_frontpage_shows_each_jobs_last_thirty_runs_as_linked_marks_with_state_and_runtime() {
    let db = setup();
    // 32 runs of poll, a minute apart, every fifth failed; the newest is 1.
    insert_runs(
        &db,
        "INSERT INTO manage.runs (job, state, started_at, finished_at, runtime_seconds, output) \
         SELECT 'poll', CASE WHEN i % 5 = 0 THEN 'failed' ELSE 'succeeded' END, \
                timestamptz '2026-03-01 12:00:00+00' - make_interval(mins => i), \
                timestamptz '2026-03-01 12:00:00+00' - make_interval(mins => i) + interval '1.5 s', \
                1.5, 'run ' || i \
         FROM generate_series(1, 32) i",
    );
    let web = start(&db);
    let page = get(&web.url("/")).body;
    let poll = row(&page, "poll");
    assert_eq!(poll.matches("<a href=\"/runs/").count(), 30, "{poll}");
    assert_eq!(poll.matches("<rect class=\"bad\"").count(), 6, "{poll}");
    assert_eq!(poll.matches("<rect class=\"ok\"").count(), 24, "{poll}");
    let id = |i: i64| {
        db.value(&format!(
            "SELECT id FROM manage.runs WHERE output = 'run {i}'"
        ))
    };
    // The two oldest are left out; the newest is the last mark (on the right).
    assert!(!poll.contains(&format!("href=\"/runs/{}\"", id(32))));
    assert!(!poll.contains(&format!("href=\"/runs/{}\"", id(31))));
    let newest = format!("href=\"/runs/{}\"", id(1));
    let oldest = format!("href=\"/runs/{}\"", id(30));
    assert!(poll.find(&oldest).unwrap() < poll.find(&newest).unwrap());
    // Its start and runtime on hover, in the display zone (UTC here).
    assert!(
        poll.contains(&format!(
            "<title>Run {}: failed, started 2026-03-01 11:55:00 UTC, runtime 1.5 s</title>",
            id(5)
        )),
        "{poll}"
    );
    assert!(poll.contains("<svg class=\"strip\""));
    // A job that never ran says so.
    assert!(row(&page, "nightly").contains("no runs"));
}

#[test]
fn the_summary_line_counts_the_failing_running_overdue_and_paused_jobs_and_the_runners() {
    let db = setup();
    let web = start(&db);
    let page = get(&web.url("/")).body;
    assert!(
        page.contains(">0 failing</a>, <a href=\"/?state=running\">0 running</a>"),
        "{page}"
    );
    assert!(page.contains("0 runners connected"), "{page}");
    insert_runs(
        &db,
        "INSERT INTO manage.runs (job, state, started_at, finished_at, output) \
         VALUES ('poll', 'failed', now() - interval '1 h', now() - interval '1 h', 'x'); \
         UPDATE manage.jobs SET last_state = 'failed' WHERE name = 'poll'; \
         UPDATE manage.jobs SET next_run = now() - interval '1 h' WHERE name = 'nightly'; \
         UPDATE manage.jobs SET paused_until = now() + interval '1 day' WHERE name = 'by_hand'",
    );
    let page = get(&web.url("/")).body;
    let summary = &page[page.find("<p class=\"summary\"").expect("the summary")..];
    let summary = &summary[..summary.find("</p>").unwrap()];
    let jobs: usize = db
        .value("SELECT count(*) FROM manage.jobs WHERE NOT removed")
        .parse()
        .unwrap();
    assert_eq!(
        summary,
        format!(
            "<p class=\"summary\" id=\"summary\" data-live>{jobs} jobs: \
             <a href=\"/?state=failed\" class=\"count-bad\">1 failing</a>, \
             <a href=\"/?state=running\">0 running</a>, \
             <a href=\"/?state=overdue\" class=\"count-bad\">1 overdue</a>, \
             <a href=\"/?state=paused\">1 paused</a> · 0 runners connected"
        )
    );
    // Each count is the filter of the jobs it counts.
    assert_eq!(listed(&get(&web.url("/?state=failed")).body), ["poll"]);
    assert_eq!(listed(&get(&web.url("/?state=overdue")).body), ["nightly"]);
    assert_eq!(listed(&get(&web.url("/?state=paused")).body), ["by_hand"]);
    assert!(listed(&get(&web.url("/?state=running")).body).is_empty());
}

#[test]
fn the_frontpage_filters_by_text_state_and_app_and_keeps_the_filter_in_its_form() {
    let db = setup();
    db.manage()
        .config(JOBS)
        .args(["jobs", "configure", "nightly", "--enabled", "false"])
        .ok();
    let web = start(&db);
    let all = listed(&get(&web.url("/")).body);
    assert!(all.len() >= 4, "{all:?}");
    // Part of a name or of a description, any case.
    assert_eq!(listed(&get(&web.url("/?q=POLL")).body), ["poll"]);
    assert_eq!(listed(&get(&web.url("/?q=search+index")).body), ["by_hand"]);
    assert_eq!(listed(&get(&web.url("/?app=invoices")).body), ["poll"]);
    assert_eq!(listed(&get(&web.url("/?state=disabled")).body), ["nightly"]);
    assert!(listed(&get(&web.url("/?q=poll&state=disabled")).body).is_empty());
    // Empty fields (what the untouched form sends) are no filter.
    assert_eq!(listed(&get(&web.url("/?q=&state=&app=")).body), all);
    // The form shows the filter it was sent.
    let page = get(&web.url("/?q=bank&state=failed&app=invoices")).body;
    assert!(page.contains("name=\"q\" value=\"bank\""), "{page}");
    assert!(page.contains("<option value=\"failed\" selected>failed</option>"));
    assert!(page.contains("<option value=\"invoices\" selected>invoices</option>"));
    assert!(page.contains("0 of "), "{page}");
    assert!(page.contains("No job matches the filter."));
}

#[test]
fn a_filter_with_markup_and_quotes_is_shown_escaped() {
    let db = setup();
    let web = start(&db);
    let q = "<script>alert(\"x\")</script>' onfocus='bad";
    let url = format!("/?q={}&app={}", url_encode(q), url_encode("\"><b>app</b>"));
    let reply = get(&web.url(&url));
    assert_eq!(reply.status, 200);
    let page = reply.body;
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<b>app</b>"));
    assert!(
        page.contains("value=\"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;' onfocus='bad\"")
    );
    assert!(page.contains("&quot;&gt;&lt;b&gt;app&lt;/b&gt;"));
    // The links the page makes carry the filter encoded.
    let runs = get(&web.url(&format!("/runs?job=poll&state=failed&x={}", url_encode(q))));
    assert_eq!(runs.status, 200);
    assert!(!runs.body.contains("<script>alert"));
}

fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[test]
fn a_bad_filter_value_is_refused_with_400_and_its_text() {
    let db = setup();
    let web = start(&db);
    for (path, text) in [
        (
            "/?state=broken",
            "state &quot;broken&quot;: expected one of failed, running, overdue, paused, disabled",
        ),
        (
            "/runs?state=overdue",
            "state &quot;overdue&quot;: expected one of running, succeeded, failed, timed_out, interrupted",
        ),
        ("/runs?page=0", "page &quot;0&quot;: "),
        ("/audit?page=x", "page &quot;x&quot;: "),
        (
            "/runs?job=nope",
            "there is no job &quot;nope&quot;; expected one of the names `manage jobs list` shows",
        ),
        (
            "/audit?job=nope",
            "there is no job &quot;nope&quot;; expected one of the names `manage jobs list` shows",
        ),
    ] {
        let reply = get(&web.url(path));
        assert_eq!(reply.status, 400, "{path}");
        assert!(reply.body.contains(text), "{path}: {}", reply.body);
    }
}

#[test]
fn runs_lists_the_history_of_all_jobs_filtered_and_paged_with_the_filter_kept() {
    let db = setup();
    insert_runs(
        &db,
        "INSERT INTO manage.runs (job, state, started_at, finished_at, output) \
         SELECT CASE WHEN i % 2 = 0 THEN 'poll' ELSE 'nightly' END, \
                CASE WHEN i % 3 = 0 THEN 'failed' ELSE 'succeeded' END, \
                now() - make_interval(mins => i), now() - make_interval(mins => i), '<i>run ' || i || '</i>' \
         FROM generate_series(1, 120) i",
    );
    let web = start(&db);
    let first = get(&web.url("/runs")).body;
    assert_eq!(first.matches("<td><a href=\"/runs/").count(), 50);
    assert!(first.contains("<a href=\"/jobs/nightly\">nightly</a>"));
    assert!(first.contains("&lt;i&gt;run 1&lt;/i&gt;"));
    assert!(first.contains("href=\"/runs?page=2\" rel=\"next\""));
    // poll's failures: i even and a multiple of 3, 20 of them.
    let page = get(&web.url("/runs?job=poll&state=failed")).body;
    assert_eq!(page.matches("<td><a href=\"/runs/").count(), 20);
    assert!(!page.contains("<a href=\"/jobs/nightly\">"));
    assert!(!page.contains("rel=\"next\""));
    // nightly's successes: 60 odd i, 40 not a multiple of 3; paged at 50.
    let page = get(&web.url("/runs?job=nightly&state=succeeded")).body;
    assert_eq!(page.matches("<td><a href=\"/runs/").count(), 40);
    let page = get(&web.url("/runs?state=succeeded")).body;
    assert!(
        page.contains("href=\"/runs?state=succeeded&amp;page=2\" rel=\"next\""),
        "{page}"
    );
    let second = get(&web.url("/runs?state=succeeded&page=2")).body;
    assert_eq!(second.matches("<td><a href=\"/runs/").count(), 30);
    assert!(second.contains("href=\"/runs?state=succeeded\" rel=\"prev\""));
    assert!(second.contains("<option value=\"succeeded\" selected>"));
    assert!(!second.contains(">failed</strong>"));
}

#[test]
fn the_audit_page_shows_the_rows_of_jobs_audit_filtered_by_job() {
    let db = setup();
    let manage = || db.manage().config(JOBS);
    manage()
        .args([
            "jobs",
            "configure",
            "poll",
            "--override-interval",
            "00:30:00",
        ])
        .ok();
    manage().args(["jobs", "hold"]).ok();
    manage().args(["jobs", "release", "--pending", "run"]).ok();
    let web = start(&db);
    let rows = manage().args(["jobs", "audit", "--json"]).json();
    let rows = rows.as_array().unwrap();
    let page = get(&web.url("/audit")).body;
    let table = &page[page
        .find("<table class=\"audit\"")
        .expect("the audit table")..];
    // One table row per audit row, newest first, the same ones.
    assert_eq!(table.matches("<tr>").count(), rows.len() + 1);
    assert!(table.contains("<th scope=\"col\">Job</th>"));
    let mut at = 0;
    for row in rows {
        let details = row["details"].as_str().unwrap();
        let details = details
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let found = table[at..]
            .find(&format!("<td>{details}</td>"))
            .unwrap_or_else(|| panic!("{details} not in order in {table}"));
        at += found + 1;
    }
    assert!(table.contains("override_interval: none → 00:30:00"));
    assert!(table.contains("<td>hold</td>"));
    // Filtered by job: only poll's rows, and the filter kept in the form.
    let poll = manage().args(["jobs", "audit", "poll", "--json"]).json();
    let page = get(&web.url("/audit?job=poll")).body;
    let table = &page[page.find("<table class=\"audit\"").unwrap()..];
    assert_eq!(
        table.matches("<tr>").count(),
        poll.as_array().unwrap().len() + 1
    );
    assert!(!table.contains("<td>hold</td>"));
    assert!(page.contains("name=\"job\" value=\"poll\""));
    // The job page links there.
    assert!(get(&web.url("/jobs/poll"))
        .body
        .contains("<a href=\"/audit?job=poll\">"));
}

const PROXIED: &str = "[web]\ntrusted_proxy_header = \"X-Forwarded-User\"\n";

fn proxied_config(proxies: &str) -> String {
    format!("{JOBS}{PROXIED}trusted_proxies = {proxies}\n")
}

fn hold_as(web: &WebServer, user: &str) -> u16 {
    let page = get(&web.url("/")).body;
    let token = csrf(&page);
    ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .post(&web.url("/hold"))
        .set("X-Forwarded-User", user)
        .send_form(&[("csrf", &token)])
        .map_or_else(
            |e| match e {
                ureq::Error::Status(status, _) => status,
                other => panic!("{other}"),
            },
            |r| r.status(),
        )
}

fn last_actor(db: &TestDb, config: &str) -> String {
    let rows = db
        .manage()
        .config(config)
        .args(["jobs", "audit", "--json"])
        .json();
    rows[0]["actor"].as_str().unwrap().to_string()
}

#[test]
fn a_trusted_proxys_user_header_is_the_audit_actor() {
    let db = setup();
    let config = proxied_config("[\"10.0.0.0/8\", \"127.0.0.1/32\"]");
    let web = WebServer::start(&db, &config, &[], &[]);
    assert_eq!(hold_as(&web, "alice@example.org"), 303);
    assert_eq!(last_actor(&db, &config), "web:alice@example.org");
    let page = ureq::get(&web.url("/audit"))
        .set("X-Forwarded-User", "<alice>")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(page.contains("Signed in as &lt;alice&gt;"), "{page}");
    assert!(page.contains("<td>web:alice@example.org</td>"));
    // Without the header, the address as before.
    let token = csrf(&get(&web.url("/")).body);
    assert_eq!(
        post(
            &web.url("/release"),
            &[("csrf", &token), ("pending", "run")]
        )
        .status,
        303
    );
    assert_eq!(last_actor(&db, &config), "web:127.0.0.1");
}

#[test]
fn the_user_header_from_an_untrusted_address_is_ignored() {
    let db = setup();
    let config = proxied_config("[\"10.0.0.0/8\", \"::1/128\"]");
    let web = WebServer::start(&db, &config, &[], &[]);
    assert_eq!(hold_as(&web, "mallory"), 303);
    assert_eq!(last_actor(&db, &config), "web:127.0.0.1");
    let page = ureq::get(&web.url("/"))
        .set("X-Forwarded-User", "mallory")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(!page.contains("mallory"));
    // And without trusted_proxy_header configured at all.
    let db = setup();
    let web = WebServer::start(&db, JOBS, &[], &[]);
    assert_eq!(hold_as(&web, "mallory"), 303);
    assert_eq!(last_actor(&db, JOBS), "web:127.0.0.1");
}

#[test]
fn the_live_script_is_a_file_the_content_security_policy_allows_and_nothing_inline() {
    let db = setup();
    let web = start(&db);
    let script = get(&web.url("/static/live.js"));
    assert_eq!(script.status, 200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(script.body.contains("data-live"));
    for path in ["/", "/jobs/poll", "/runs", "/audit"] {
        let page = get(&web.url(path));
        let csp = page.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        // One script, by its address, empty; no inline handler.
        assert_eq!(page.body.matches("<script").count(), 1, "{path}");
        assert!(page
            .body
            .contains("<script src=\"/static/live.js\" defer></script>"));
        assert!(!page.body.contains(" onclick="));
    }
    // The parts it refreshes are marked, each with its id.
    let front = get(&web.url("/")).body;
    assert!(front.contains("<table class=\"jobs\" id=\"jobs\" data-live>"));
    let job = get(&web.url("/jobs/poll")).body;
    assert!(job.contains("id=\"history\" data-live"));
    assert!(job.contains("id=\"audit\" data-live"));
}

#[test]
fn read_only_offers_no_change_on_the_new_pages_and_refuses_their_posts() {
    let db = setup();
    let web = WebServer::start(&db, JOBS, &["--read-only"], &[]);
    for path in [
        "/?q=poll",
        "/?state=failed",
        "/runs",
        "/runs?job=poll",
        "/audit",
        "/audit?job=poll",
    ] {
        let reply = get(&web.url(path));
        assert_eq!(reply.status, 200, "{path}");
        assert!(!reply.body.contains("<button"), "{path}");
        assert!(!reply.body.contains("method=\"post\""), "{path}");
        assert!(!reply.body.contains("name=\"csrf\""), "{path}");
    }
    for path in ["/runs", "/audit", "/?q=poll"] {
        assert_eq!(post(&web.url(path), &[("csrf", "x")]).status, 403, "{path}");
    }
    let rows = db
        .manage()
        .config(JOBS)
        .args(["jobs", "audit", "--json"])
        .json();
    assert!(rows
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["action"] == "sync"));
}

#[test]
fn the_frontpage_lists_a_hundred_jobs_a_page_and_keeps_the_filter_in_its_page_links() {
    let db = TestDb::new();
    // 250 jobs, every other one in app "b": 125 of them, two pages.
    let mut config = String::from("timezone = \"UTC\"\n");
    for i in 0..250 {
        let app = if i % 2 == 0 { "a" } else { "b" };
        config.push_str(&format!(
            "[jobs.job_{i:03}]\ncommand = \"true\"\napp = \"{app}\"\n"
        ));
    }
    db.manage().config(&config).arg("migrate").ok();
    // With the built-in jobs: three pages, the last one short.
    let total: usize = db
        .value("SELECT count(*) FROM manage.jobs WHERE NOT removed")
        .parse()
        .unwrap();
    assert!((201..300).contains(&total), "{total}");
    let web = WebServer::start(&db, &config, &[], &[]);
    let first = get(&web.url("/")).body;
    let names = listed(&first);
    assert_eq!(names.len(), 100, "{names:?}");
    assert!(
        first.contains(&format!("1–100 of {total} shown")),
        "{first}"
    );
    assert!(first.contains("href=\"/?page=2\""), "{first}");
    assert!(!first.contains("rel=\"prev\""), "{first}");
    // The summary line still counts every job.
    assert!(first.contains(&format!("{total} jobs: ")), "{first}");
    let third = get(&web.url("/?page=3")).body;
    assert_eq!(listed(&third).len(), total - 200);
    assert!(
        third.contains(&format!("201–{total} of {total} shown")),
        "{third}"
    );
    // Every job once over the three pages.
    let mut all: Vec<String> = [first.as_str(), &get(&web.url("/?page=2")).body, &third]
        .iter()
        .flat_map(|page| listed(page))
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total);
    assert!(third.contains("href=\"/?page=2\" rel=\"prev\""), "{third}");
    assert!(!third.contains("rel=\"next\""), "{third}");
    // Filtered: the filter rides along in the page links.
    let b = get(&web.url("/?app=b")).body;
    assert_eq!(listed(&b).len(), 100);
    assert!(
        b.contains(&format!("1–100 of 125 (of {total} jobs) shown")),
        "{b}"
    );
    assert!(b.contains("href=\"/?app=b&amp;page=2\""), "{b}");
    let b2 = get(&web.url("/?app=b&page=2")).body;
    let rest = listed(&b2);
    assert_eq!(rest.len(), 25, "{rest:?}");
    assert!(
        rest.iter().all(|n| n.ends_with(['1', '3', '5', '7', '9'])),
        "{rest:?}"
    );
    assert!(b2.contains("href=\"/?app=b\" rel=\"prev\""), "{b2}");
    // A bad page is refused as on /runs.
    assert_eq!(get(&web.url("/?page=0")).status, 400);
}
