//! The web page in a real browser: Debian's chromium driven over WebDriver
//! (fantoccini) by a chromedriver this test starts on a free port. Hold and
//! release, change an override through the form and see the next runs move,
//! Run now with a runner running and see the run and its output, a bad time
//! refused with its error — and screenshots of the frontpage and a job page
//! under target/screenshots/ for a person to look at.
//!
//! The second test drives the pages of §23 — the run strips, the filters,
//! a live refresh that picks up a run started meanwhile, `/runs`, `/audit`
//! with the user a trusted proxy names — and checks every page with axe-core
//! (vendored under tests/vendor/axe-core) in the light and the dark colour
//! scheme, with screenshots of each in both.
//!
//! Skipped, saying so, only when chromedriver is not installed (CI installs it).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::harness::{wait_for, TestDb};
use crate::web::{free_port, WebServer};

const JOBS: &str = "timezone = \"UTC\"\n\
[jobs.greet]\ncommand = \"echo 'hello from greet'; echo '<b>not bold</b>'\"\ndescription = \"Greet the operators\"\ninterval = \"01:00:00\"\napp = \"demo\"\n\
[jobs.poll]\ncommand = \"true\"\ndescription = \"Poll the bank for payments\"\ninterval = \"01:00:00\"\napp = \"invoices\"\n\
[jobs.nightly]\ncommand = \"false\"\ndescription = \"Nightly report\"\ntimes = [\"02:30\"]\napp = \"reports\"\n";

fn chromedriver() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("chromedriver"))
        .find(|p| p.is_file())
}

fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn body(client: &Client) -> String {
    text_of(client, "body").await
}

/// Wait until the page's text satisfies `done`: a click that submits a form
/// returns before the next page has loaded.
async fn wait_page(client: &Client, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(element) = client.find(Locator::Css("body")).await {
            if let Ok(text) = element.text().await {
                if done(&text) {
                    return text;
                }
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn set_field(client: &Client, id: &str, value: &str) {
    let field = client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no field {id}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn next_runs(client: &Client) -> Vec<String> {
    let mut runs = Vec::new();
    for item in client
        .find_all(Locator::Css("ol.upcoming li"))
        .await
        .unwrap()
    {
        runs.push(item.text().await.unwrap());
    }
    runs
}

async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

/// chromedriver on a free port, or None (said on stderr) when it is not installed.
fn start_driver(test: &str) -> Option<(Driver, u16)> {
    let Some(driver_path) = chromedriver() else {
        // Straight to stderr, past the test harness's capture, so that the
        // skip is seen in a plain `cargo test`.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "browser::{test}: SKIPPED: chromedriver is not installed \
             (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = free_port();
    let driver = Driver(
        Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver"),
    );
    wait_for(Duration::from_secs(30), "chromedriver to listen", || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Some((driver, port))
}

/// A headless chromium session through the chromedriver on `port`.
async fn browser(port: u16) -> Client {
    let mut options = serde_json::json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            "--hide-scrollbars",
        ]
    });
    if let Some(binary) = chromium() {
        options["binary"] = serde_json::Value::from(binary.display().to_string());
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_page_works_in_a_real_browser() {
    let Some((driver, port)) = start_driver("the_page_works_in_a_real_browser") else {
        return;
    };
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    let web = WebServer::start(&db, JOBS, &[], &[]);
    let runner = db
        .manage()
        .config(JOBS)
        .arg("scheduled_jobs_runner")
        .spawn();

    runtime().block_on(async {
        let client = browser(port).await;

        // The frontpage: banners, the jobs, each a link.
        client.goto(&web.url("/")).await.unwrap();
        wait_for(Duration::from_secs(20), "the runner on the banner", || {
            frontpage_sees_the_runner(&web)
        });
        client.refresh().await.unwrap();
        let page = body(&client).await;
        assert!(page.contains("Scheduled jobs"), "{page}");
        assert!(page.contains("greet") && page.contains("Poll the bank for payments"));

        // Hold, then release with the pending choice.
        click(&client, "form.hold button").await;
        wait_page(&client, "the hold", |page| {
            page.contains("jobs are held since")
        })
        .await;
        click(&client, "input[name=pending][value=reschedule]").await;
        click(&client, "form.release button").await;
        wait_page(&client, "the release", |page| {
            page.contains("jobs are not held")
        })
        .await;
        save_screenshot(&client, "frontpage.png").await;

        // A job: change its override through the form, see the next runs move.
        client
            .find(Locator::LinkText("poll"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_page(&client, "the job page", |page| {
            page.contains("Job poll") && page.contains("Recent changes")
        })
        .await;
        let before = next_runs(&client).await;
        assert_eq!(before.len(), 5);
        set_field(&client, "override_interval", "00:10:00").await;
        click(&client, "form.config button[type=submit]").await;
        wait_page(&client, "the saved override", |page| {
            page.contains("every 00:10:00 (override)") && page.contains("Recent changes")
        })
        .await;
        assert_eq!(client.current_url().await.unwrap().path(), "/jobs/poll");
        let after = next_runs(&client).await;
        assert_eq!(after.len(), 5);
        assert_ne!(before, after);
        let page = body(&client).await;
        assert!(page.contains("every 00:10:00 (override)"), "{page}");
        assert!(
            page.contains("override_interval: none → 00:10:00"),
            "{page}"
        );

        // A bad time: refused with the command's text, nothing changed.
        set_field(&client, "override_interval", "").await;
        set_field(&client, "override_times", "25:00").await;
        click(&client, "form.config button[type=submit]").await;
        wait_page(&client, "the refusal", |page| {
            page.contains("is not a valid time")
        })
        .await;
        let error = text_of(&client, "p.error").await;
        assert!(
            error.contains("\"25:00\" is not a valid time of day"),
            "{error}"
        );
        assert!(body(&client).await.contains("every 00:10:00 (override)"));

        // Run now with the runner running: the run appears, with its output.
        client.goto(&web.url("/jobs/greet")).await.unwrap();
        click(&client, "form[action$='/run-now'] button").await;
        wait_page(&client, "the run-now audit row", |page| {
            page.contains("run requested now")
        })
        .await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            client.goto(&web.url("/jobs/greet")).await.unwrap();
            let page = body(&client).await;
            if page.contains("succeeded") && page.contains("hello from greet") {
                break;
            }
            assert!(Instant::now() < deadline, "no run appeared:\n{page}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // The whole page in one picture: the window as tall as the page
        // (plus the browser's own chrome), form, next runs, history, changes.
        let height = client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(1500);
        let height = u32::try_from(height).unwrap_or(1500) + 150;
        client.set_window_size(1280, height).await.unwrap();
        client.goto(&web.url("/jobs/greet")).await.unwrap();
        wait_page(&client, "the job page", |page| {
            page.contains("Recent changes")
        })
        .await;
        save_screenshot(&client, "job.png").await;
        client
            .find(Locator::Css("table.history a"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_page(&client, "the run page", |page| page.contains(" of greet")).await;
        let output = text_of(&client, "pre.output").await;
        assert_eq!(output, "hello from greet\n<b>not bold</b>".trim_end());

        // On a phone.
        client.set_window_size(390, 844).await.unwrap();
        client.goto(&web.url("/")).await.unwrap();
        wait_page(&client, "the frontpage", |page| {
            page.contains("Scheduled jobs")
        })
        .await;
        save_screenshot(&client, "frontpage-phone.png").await;

        client.close().await.unwrap();
    });
    drop(driver);
    runner.stop();
}

/// Whether the frontpage (fetched over plain HTTP) sees the runner yet.
fn frontpage_sees_the_runner(web: &WebServer) -> bool {
    crate::web::get(&web.url("/")).body.contains("connected on")
}

/// axe-core, vendored (tests/vendor/axe-core/README.md).
const AXE: &str = include_str!("vendor/axe-core/axe.min.js");

/// The jobs of the second test, with a proxy that signs its users in.
fn proxied_jobs() -> String {
    format!(
        "{JOBS}[web]\ntrusted_proxy_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]\n"
    )
}

/// A Chrome DevTools command through chromedriver (`goog/cdp/execute`).
async fn cdp(client: &Client, port: u16, cmd: &str, params: serde_json::Value) {
    let session = client.session_id().await.unwrap().expect("a session id");
    let url = format!("http://127.0.0.1:{port}/session/{session}/goog/cdp/execute");
    let body = serde_json::json!({ "cmd": cmd, "params": params });
    ureq::post(&url)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
}

async fn color_scheme(client: &Client, port: u16, scheme: &str) {
    cdp(
        client,
        port,
        "Emulation.setEmulatedMedia",
        serde_json::json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
    )
    .await;
    let applied = client
        .execute(
            &format!("return window.matchMedia('(prefers-color-scheme: {scheme})').matches;"),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        applied,
        serde_json::Value::Bool(true),
        "{scheme} not applied"
    );
}

/// axe-core's WCAG 2 A and AA rules on the page: every violation, described.
async fn axe_violations(client: &Client) -> Vec<String> {
    let loaded = client
        .execute(&format!("{AXE}\n;return typeof window.axe;"), vec![])
        .await
        .unwrap();
    assert_eq!(loaded, "object", "axe-core did not load");
    let result = client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             axe.run(document, { runOnly: { type: 'tag', \
                 values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } })\
               .then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' — ' + \
                   v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + \
                   (n.failureSummary || '').replace(/\\s+/g, ' ')).join(' | '))))\
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    result
        .as_array()
        .unwrap_or_else(|| panic!("axe gave {result}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

async fn current_value(client: &Client, id: &str) -> String {
    client
        .execute(
            &format!("return document.getElementById('{id}').value;"),
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn script_number(client: &Client, script: &str) -> f64 {
    client
        .execute(script, vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// Wait, without reloading the page, until its text satisfies `done`.
async fn wait_live(client: &Client, what: &str, done: impl Fn(&str) -> bool) -> String {
    wait_page(client, what, done).await
}

#[test]
fn the_pages_of_part_two_work_in_a_real_browser_and_pass_axe_light_and_dark() {
    let Some((driver, port)) =
        start_driver("the_pages_of_part_two_work_in_a_real_browser_and_pass_axe_light_and_dark")
    else {
        return;
    };
    let jobs = proxied_jobs();
    let db = TestDb::new();
    db.manage().config(&jobs).arg("migrate").ok();
    let web = WebServer::start(&db, &jobs, &[], &[]);
    let runner = db
        .manage()
        .config(&jobs)
        .arg("scheduled_jobs_runner")
        .spawn();
    wait_for(Duration::from_secs(20), "the runner on the banner", || {
        frontpage_sees_the_runner(&web)
    });
    let cli = || db.manage().config(&jobs);

    runtime().block_on(async {
        let client = browser(port).await;
        // What a proxy in front of the page would add to every request.
        cdp(&client, port, "Network.enable", serde_json::json!({})).await;
        cdp(
            &client,
            port,
            "Network.setExtraHTTPHeaders",
            serde_json::json!({ "headers": { "X-Forwarded-User": "alice" } }),
        )
        .await;

        // A run of greet, started on its page: its mark on the frontpage.
        client.goto(&web.url("/jobs/greet")).await.unwrap();
        assert!(body(&client).await.contains("Signed in as alice"));
        click(&client, "form[action$='/run-now'] button").await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            client.goto(&web.url("/")).await.unwrap();
            if client
                .find(Locator::Css("tr:has(a[href='/jobs/greet']) svg.strip a rect.ok"))
                .await
                .is_ok()
            {
                break;
            }
            assert!(Instant::now() < deadline, "no mark for greet's run");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let summary = text_of(&client, "p.summary").await;
        assert!(summary.ends_with("· 1 runner connected"), "{summary}");
        assert!(summary.contains("0 failing, 0 running"), "{summary}");
        let title = client
            .execute(
                "return document.querySelector(\"tr:has(a[href='/jobs/greet']) svg.strip a title\").textContent;",
                vec![],
            )
            .await
            .unwrap();
        let title = title.as_str().unwrap_or_default();
        assert!(title.contains(": succeeded, started "), "{title}");
        assert!(title.contains(", runtime "), "{title}");
        click(&client, "tr:has(a[href='/jobs/greet']) svg.strip a").await;
        wait_page(&client, "the run page from its mark", |page| {
            page.contains(" of greet") && page.contains("hello from greet")
        })
        .await;

        // The filter form: a GET, its filter in the URL, kept in the form.
        client.goto(&web.url("/")).await.unwrap();
        set_field(&client, "q", "bank").await;
        click(&client, "form.filter input[type=submit]").await;
        wait_page(&client, "the filtered jobs", |page| page.contains("1 of ")).await;
        let url = client.current_url().await.unwrap();
        assert_eq!(url.path(), "/");
        assert!(url.query().unwrap_or("").contains("q=bank"), "{url}");
        assert_eq!(current_value(&client, "q").await, "bank");
        let names = client
            .find_all(Locator::Css("table.jobs tbody th a"))
            .await
            .unwrap();
        assert_eq!(names.len(), 1);
        assert_eq!(names[0].text().await.unwrap(), "poll");
        client
            .find(Locator::Css("#app option[value=reports]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        set_field(&client, "q", "").await;
        click(&client, "form.filter input[type=submit]").await;
        wait_page(&client, "the jobs of app reports", |page| {
            page.contains("Nightly report") && !page.contains("Poll the bank")
        })
        .await;
        click(&client, "form.filter a.clear").await;
        wait_page(&client, "all the jobs", |page| {
            page.contains("Nightly report") && page.contains("Poll the bank")
        })
        .await;

        // Live: a run started meanwhile shows up without a reload, and the
        // scroll position and a half-filled field stay as they were.
        client.set_window_size(1280, 500).await.unwrap();
        client.goto(&web.url("/")).await.unwrap();
        client
            .execute("window.notReloaded = true; window.scrollTo(0, 120);", vec![])
            .await
            .unwrap();
        set_field(&client, "q", "half typ").await;
        let scrolled = script_number(&client, "return window.scrollY;").await;
        assert!(scrolled > 0.0, "the page does not scroll at 500 px");
        cli().args(["jobs", "run-now", "nightly"]).ok();
        wait_live(&client, "nightly's failure on the live frontpage", |page| {
            page.contains("! failed")
        })
        .await;
        assert_eq!(
            client
                .execute("return window.notReloaded === true;", vec![])
                .await
                .unwrap(),
            serde_json::Value::Bool(true),
            "the page was reloaded"
        );
        assert_eq!(current_value(&client, "q").await, "half typ");
        assert_eq!(
            script_number(&client, "return window.scrollY;").await,
            scrolled
        );
        let summary = text_of(&client, "p.summary").await;
        assert!(summary.contains("1 failing"), "{summary}");

        // The same on a job page: its history grows, its form is kept.
        client.goto(&web.url("/jobs/poll")).await.unwrap();
        client
            .execute("window.notReloaded = true;", vec![])
            .await
            .unwrap();
        assert!(body(&client).await.contains("(no runs)"));
        set_field(&client, "override_interval", "00:1").await;
        cli().args(["jobs", "run-now", "poll"]).ok();
        wait_live(&client, "poll's run on the live job page", |page| {
            page.contains("succeeded") && !page.contains("(no runs)")
        })
        .await;
        assert_eq!(current_value(&client, "override_interval").await, "00:1");
        assert_eq!(
            client
                .execute("return window.notReloaded === true;", vec![])
                .await
                .unwrap(),
            serde_json::Value::Bool(true)
        );

        // /runs, filtered through its form.
        client.set_window_size(1280, 1000).await.unwrap();
        client.goto(&web.url("/runs")).await.unwrap();
        set_field(&client, "job", "nightly").await;
        click(&client, "form.filter input[type=submit]").await;
        wait_page(&client, "nightly's runs", |page| {
            page.contains("failed") && !page.contains("hello from greet")
        })
        .await;
        let url = client.current_url().await.unwrap();
        assert_eq!(url.query(), Some("job=nightly&state="));
        let jobs_listed = client
            .find_all(Locator::Css("table.history tbody tr"))
            .await
            .unwrap();
        assert_eq!(jobs_listed.len(), 1);

        // /audit: the page's run-now, by the proxy's user.
        client.goto(&web.url("/audit?job=greet")).await.unwrap();
        let audit = text_of(&client, "table.audit tbody").await;
        assert!(audit.contains("web:alice run-now greet"), "{audit}");
        assert!(!audit.contains("nightly"), "{audit}");
        let cli_audit = cli().args(["jobs", "audit", "greet", "--json"]).json();
        assert_eq!(cli_audit[0]["actor"], "web:alice");

        // Keyboard: Tab reaches the first link, with a visible focus.
        client.goto(&web.url("/")).await.unwrap();
        client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .send_keys("\u{E004}")
            .await
            .unwrap();
        let focus = client
            .execute(
                "const e = document.activeElement; const s = getComputedStyle(e); \
                 return [e.tagName, s.outlineStyle, s.outlineWidth];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(focus[0], "A", "{focus}");
        assert_ne!(focus[1], "none", "no visible focus: {focus}");

        // Every page, light and dark: axe finds nothing, and a screenshot.
        // (The synchronous client on a thread of its own, off this runtime.)
        let run_id = std::thread::scope(|scope| {
            scope
                .spawn(|| db.value("SELECT max(id) FROM manage.runs WHERE job = 'greet'"))
                .join()
                .unwrap()
        });
        let pages = [
            ("frontpage", "/".to_string()),
            ("job", "/jobs/greet".to_string()),
            ("run", format!("/runs/{run_id}")),
            ("runs", "/runs".to_string()),
            ("audit", "/audit".to_string()),
        ];
        for scheme in ["light", "dark"] {
            color_scheme(&client, port, scheme).await;
            for (name, path) in &pages {
                client.set_window_size(1280, 1000).await.unwrap();
                client.goto(&web.url(path)).await.unwrap();
                let violations = axe_violations(&client).await;
                assert!(
                    violations.is_empty(),
                    "{path} in {scheme}: {violations:#?}"
                );
                save_screenshot(&client, &format!("{name}-{scheme}.png")).await;
                // At 390 px: nothing wider than the screen but the tables'
                // own scrolling boxes.
                client.set_window_size(390, 844).await.unwrap();
                client.goto(&web.url(path)).await.unwrap();
                let width = script_number(
                    &client,
                    "return document.documentElement.scrollWidth;",
                )
                .await;
                let inner = script_number(&client, "return window.innerWidth;").await;
                assert!(width <= inner, "{path} is {width} px wide at {inner} px");
                let violations = axe_violations(&client).await;
                assert!(
                    violations.is_empty(),
                    "{path} in {scheme} at 390 px: {violations:#?}"
                );
                save_screenshot(&client, &format!("{name}-{scheme}-phone.png")).await;
            }
        }

        client.close().await.unwrap();
    });
    drop(driver);
    runner.stop();
}
