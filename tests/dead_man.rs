//! Dead-man alerts and slow-run warnings (§20) end to end: real runners
//! with a one-second heartbeat, mail to a real SMTP server (tests/smtp.rs),
//! a webhook to a real HTTP receiver (tests/receiver.rs), `jobs status` and
//! `manage metrics` read as a user reads them.

use std::time::Duration;

use crate::harness::{wait_for, Background, TestDb};
use crate::receiver::{hmac_hex, Receiver};
use crate::smtp::SmtpServer;

const RUNNER: &str =
    "[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n";
const RECIPIENT: &str = "ops@example.com";
const SECRET: &str = "dead-man-s3cret";

/// Fast runner timings, mail to `port`, then `jobs`.
fn config(port: u16, jobs: &str) -> String {
    format!(
        "{RUNNER}[notifications]\nemail = \"{RECIPIENT}\"\nsender = \"jobs@example.com\"\n\
         smtp_url = \"smtp://127.0.0.1:{port}\"\n{jobs}"
    )
}

fn runner(db: &TestDb, config: &str) -> Background {
    db.manage()
        .config(config)
        .arg("scheduled_jobs_runner")
        .spawn()
}

fn overdue_mails(server: &SmtpServer, subject: &str) -> usize {
    server.subjects().iter().filter(|s| *s == subject).count()
}

#[test]
fn a_job_failing_every_second_sends_one_overdue_alert_and_its_next_success_a_recovery() {
    let server = SmtpServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ok");
    // alert_after keeps the failure mails out of the way: only the
    // dead-man alert and the recovery are mailed.
    let config = config(
        server.port,
        &format!(
            "[jobs.flaky]\ncommand = \"test -e '{}'\"\ndescription = \"Flaky job\"\n\
             interval = \"00:01\"\nalert_after = 1000\nexpect_success_within = \"00:03\"\n",
            flag.display()
        ),
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    let runner = runner(&db, &config);
    let subject = "Scheduled job 'Flaky job' has not succeeded for 00:00:03";
    wait_for(Duration::from_secs(20), "the overdue alert", || {
        overdue_mails(&server, subject) >= 1
    });
    let mail = server
        .received()
        .into_iter()
        .find(|m| m.header("Subject").as_deref() == Some(subject))
        .unwrap();
    let body = mail.body();
    assert!(body.contains("Last success: never\n"), "{body}");
    assert!(
        body.contains(" (failed)\n"),
        "the last run and its state: {body}"
    );
    assert!(
        body.contains("Not running because: failing since "),
        "{body}"
    );
    assert!(body.contains("\nNext run: 20"), "{body}");
    // It goes on failing: no second alert for the same silence.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        overdue_mails(&server, subject),
        1,
        "{:#?}",
        server.subjects()
    );
    assert_eq!(db.job_json(&config, "flaky")["overdue"], true);

    std::fs::write(&flag, "").unwrap();
    let mails = server.wait_for(2);
    let recovery = &mails[1];
    assert_eq!(
        recovery.header("Subject").as_deref(),
        Some("Scheduled job 'Flaky job' recovered")
    );
    assert!(
        recovery.body().starts_with("Succeeded after "),
        "{}",
        recovery.body()
    );
    assert!(recovery.body().contains("\nState: succeeded\n"));
    let job = db.job_json(&config, "flaky");
    assert_eq!(job["overdue"], false);
    assert_eq!(job["consecutive_failures"], 0);
    runner.stop();
    assert_eq!(
        server.subjects(),
        [subject, "Scheduled job 'Flaky job' recovered"],
        "one alert, one recovery"
    );
}

#[test]
fn a_disabled_job_is_overdue_in_status_metrics_mail_and_webhook_and_the_mail_says_disabled() {
    let server = SmtpServer::plain();
    let receiver = Receiver::new();
    let config = config(
        server.port,
        &format!(
            "[notifications.webhooks.ops]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n\
             [jobs.nightly]\ncommand = \"true\"\ndescription = \"Nightly export\"\n\
             interval = \"01:00:00\"\nexpect_success_within = \"00:02\"\n\
             notify = [\"{RECIPIENT}\", \"webhook:ops\"]\n",
            receiver.url("/hooks/ops")
        ),
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    db.manage()
        .config(&config)
        .args(["jobs", "configure", "nightly", "--enabled", "false"])
        .ok();
    let job = db.job_json(&config, "nightly");
    assert_eq!(job["expect_success_within"], "00:00:02");
    assert_eq!(job["warn_after"], serde_json::Value::Null);
    assert_eq!(
        job["overdue"], false,
        "not yet: the setting just took effect"
    );

    let runner = runner(&db, &config);
    let subject = "Scheduled job 'Nightly export' has not succeeded for 00:00:02";
    wait_for(Duration::from_secs(20), "the overdue alert", || {
        overdue_mails(&server, subject) >= 1
    });
    let body = server.received()[0].body();
    assert!(body.contains("Not running because: disabled\n"), "{body}");
    assert!(
        body.contains("Last success: never\nLast run: never\nNext run: none\n"),
        "{body}"
    );

    let requests = receiver.wait_for(1);
    assert_eq!(requests.len(), 1, "{requests:#?}");
    let request = &requests[0];
    let raw = String::from_utf8(request.body.clone()).unwrap();
    let signature = request.header("X-Manage-Signature").unwrap();
    eprintln!("---- the overdue payload as received ----\n{raw}\nX-Manage-Signature: {signature}");
    assert_eq!(
        signature,
        format!("sha256={}", hmac_hex(SECRET, &request.body))
    );
    let payload = request.json();
    assert_eq!(payload["event"], "overdue");
    assert_eq!(payload["job"], "nightly");
    assert_eq!(payload["run_id"], serde_json::Value::Null);
    assert_eq!(payload["text"], subject);
    assert!(payload["output"].as_str().unwrap().contains("disabled"));

    let status = db
        .manage()
        .config(&config)
        .args(["jobs", "status", "--json"])
        .run();
    assert_eq!(status.code, 1, "{}", status.stdout);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["overdue"], serde_json::json!(["nightly"]));
    assert_eq!(status["healthy"], false);
    let problem = status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .find(|p| p.starts_with("Job nightly is overdue"))
        .unwrap_or_else(|| panic!("{status}"))
        .to_string();
    assert_eq!(
        problem,
        "Job nightly is overdue: it has not succeeded for 00:00:02 (last success: never)."
    );
    let text = db.manage().config(&config).args(["jobs", "status"]).run();
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains("Overdue:  nightly"), "{}", text.stdout);
    assert!(text.stdout.contains(&problem), "{}", text.stdout);

    let metrics = db.manage().config(&config).arg("metrics").ok().stdout;
    assert!(
        metrics.contains("# TYPE manage_job_overdue gauge\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("manage_job_overdue{job=\"nightly\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("manage_job_overdue{job=\"send_queued_mail\"} 0\n"),
        "{metrics}"
    );
    runner.stop();
}

#[test]
fn two_runners_send_exactly_one_overdue_mail() {
    let server = SmtpServer::plain();
    let config = config(
        server.port,
        "[jobs.held_back]\ncommand = \"true\"\ndescription = \"Held back\"\n\
         interval = \"01:00:00\"\nexpect_success_within = \"00:02\"\n",
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    db.manage()
        .config(&config)
        .args(["jobs", "configure", "held_back", "--enabled", "false"])
        .ok();
    let first = runner(&db, &config);
    let second = runner(&db, &config);
    let subject = "Scheduled job 'Held back' has not succeeded for 00:00:02";
    wait_for(Duration::from_secs(20), "the overdue alert", || {
        overdue_mails(&server, subject) >= 1
    });
    // Several heartbeats of both runners later, still one.
    std::thread::sleep(Duration::from_secs(4));
    first.stop();
    second.stop();
    assert_eq!(server.subjects(), [subject]);
    assert_eq!(
        db.value("SELECT count(*) FROM manage.mail_queue WHERE subject LIKE '%has not succeeded%'"),
        "0",
        "delivered, and queued once"
    );
}

#[test]
fn a_run_still_going_after_warn_after_sends_one_alert_with_its_output_so_far_and_succeeds() {
    let server = SmtpServer::plain();
    let config = config(
        server.port,
        "[jobs.slow]\ncommand = \"echo first part; sleep 4; echo second part\"\n\
         description = \"Slow export\"\ninterval = \"01:00:00\"\ntimeout = \"00:30\"\n\
         warn_after = \"00:02\"\n",
    );
    let db = TestDb::new();
    let run = db.run_once(&config, &["slow"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("Job slow is still running after 00:00:02"),
        "{}",
        run.stderr
    );
    let mails = server.wait_for(1);
    assert_eq!(
        server.subjects(),
        ["Scheduled job 'Slow export' is still running after 00:00:02"]
    );
    let body = mails[0].body();
    assert!(body.contains("Output so far:\nfirst part\n"), "{body}");
    assert!(!body.contains("second part"), "{body}");
    assert!(body.contains("\nStarted: 20"), "{body}");
    assert!(body.contains("\nHost: "), "{body}");
    let row = &db.query_strings(
        "SELECT state, output, slow_warned::text FROM manage.runs WHERE job = 'slow'",
    )[0];
    assert_eq!(row[0], "succeeded", "the run was not touched");
    assert_eq!(row[1], "first part\nsecond part\n");
    assert_eq!(row[2], "true");
    assert_eq!(db.job_json(&config, "slow")["warn_after"], "00:00:02");
}

#[test]
fn bad_dead_man_and_slow_run_settings_are_refused_and_change_nothing() {
    let db = TestDb::new();
    let jobs = "[jobs.x]\ncommand = \"true\"\ninterval = \"01:00:00\"\ntimeout = \"00:05\"\n";
    db.manage().config(jobs).arg("migrate").ok();
    db.manage()
        .config(&format!("{jobs}warn_after = \"00:05\"\n"))
        .args(["jobs", "list"])
        .run()
        .assert_bad_input(&["jobs.x.warn_after", "00:00:05", "timeout"]);
    db.manage()
        .config(&format!("{jobs}expect_success_within = \"soon\"\n"))
        .args(["jobs", "list"])
        .run()
        .assert_bad_input(&["jobs.x.expect_success_within", "soon"]);
    db.manage()
        .config(&format!("{jobs}expect_success_within = \"00:00\"\n"))
        .args(["jobs", "list"])
        .run()
        .assert_bad_input(&["jobs.x.expect_success_within"]);
    db.manage()
        .config("[jobs.q]\nsql = \"SELECT 1\"\nwarn_after = \"00:05\"\n")
        .args(["jobs", "list"])
        .run()
        .assert_bad_input(&["jobs.q.warn_after", "command"]);
    let sql_job = format!("{jobs}[jobs.q]\nsql = \"SELECT 1\"\n");
    db.manage().config(&sql_job).arg("migrate").ok();
    db.manage()
        .config(&sql_job)
        .args(["jobs", "configure", "q", "--warn-after", "00:01"])
        .run()
        .assert_bad_input(&["--warn-after", "job q", "SQL"]);
    let before = db.job_json(jobs, "x");
    db.manage()
        .config(jobs)
        .args(["jobs", "configure", "x", "--warn-after", "00:10"])
        .run()
        .assert_bad_input(&["--warn-after", "x", "00:00:10", "timeout"]);
    db.manage()
        .config(jobs)
        .args(["jobs", "configure", "x", "--expect-success-within", "00:00"])
        .run()
        .assert_bad_input(&["--expect-success-within"]);
    db.manage()
        .config(jobs)
        .args(["jobs", "configure", "x", "--expect-success-within", "-5"])
        .run()
        .assert_bad_input(&["--expect-success-within"]);
    let after = db.job_json(jobs, "x");
    assert_eq!(before, after, "nothing changed");
    // A good value is the operator's, shown and audited; clearing returns
    // to the declared (none).
    let set = db
        .manage()
        .config(jobs)
        .args([
            "jobs",
            "configure",
            "x",
            "--expect-success-within",
            "01:00:00",
            "--warn-after",
            "00:03",
        ])
        .ok();
    assert!(
        set.stdout
            .contains("Expect success in:  01:00:00 (override)\n"),
        "{}",
        set.stdout
    );
    assert!(set
        .stdout
        .contains("Warn after:         00:00:03 (override)\n"));
    let audit = db
        .manage()
        .config(jobs)
        .args(["jobs", "audit", "x"])
        .ok()
        .stdout;
    assert!(
        audit.contains("expect_success_within: none → 01:00:00")
            && audit.contains("warn_after: none → 00:00:03"),
        "{audit}"
    );
    db.manage()
        .config(jobs)
        .args([
            "jobs",
            "configure",
            "x",
            "--clear-expect-success-within",
            "--clear-warn-after",
        ])
        .ok();
    let cleared = db.job_json(jobs, "x");
    assert_eq!(cleared["expect_success_within"], serde_json::Value::Null);
    assert_eq!(cleared["warn_after"], serde_json::Value::Null);
}
