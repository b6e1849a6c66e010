//! The web page in a real browser: Debian's chromium driven over WebDriver
//! (fantoccini) by a chromedriver this test starts on a free port. Hold and
//! release, change an override through the form and see the next runs move,
//! Run now with a runner running and see the run and its output, a bad time
//! refused with its error — and screenshots of the frontpage and a job page
//! under target/screenshots/ for a person to look at.
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

#[test]
fn the_page_works_in_a_real_browser() {
    let Some(driver_path) = chromedriver() else {
        // Straight to stderr, past the test harness's capture, so that the
        // skip is seen in a plain `cargo test`.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "browser::the_page_works_in_a_real_browser: SKIPPED: chromedriver is not installed \
             (apt-get install chromium chromium-driver)"
        );
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

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
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
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session");

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
