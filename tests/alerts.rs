//! Alerts (§14) and metrics (§15) end to end: jobs run by the real runner,
//! mails delivered to a real SMTP server (tests/smtp.rs), `manage metrics`
//! read with a real parser of the Prometheus text format (prometheus-parse)
//! and checked against `jobs list --json`.

use std::collections::HashMap;
use std::path::Path;

use crate::harness::TestDb;
use crate::smtp::SmtpServer;

const RECIPIENT: &str = "ops@example.com";

fn config(port: u16, jobs: &str) -> String {
    format!(
        "[notifications]\nemail = \"{RECIPIENT}\"\nsender = \"jobs@example.com\"\n\
         smtp_url = \"smtp://127.0.0.1:{port}\"\n{jobs}"
    )
}

/// A job that fails until `flag` exists.
fn flaky(flag: &Path, extra: &str) -> String {
    format!(
        "[jobs.flaky]\ncommand = \"test -e '{}'\"\ndescription = \"Flaky job\"\n\
         interval = \"01:00:00\"\n{extra}",
        flag.display()
    )
}

/// Make `job` due and run the runner once (which also delivers the mail the
/// run queued, through the send_queued_mail it triggers).
fn run_due(db: &TestDb, config: &str, job: &str) {
    db.client()
        .execute(
            "UPDATE manage.jobs SET next_run = now() WHERE name = $1",
            &[&job],
        )
        .unwrap();
    db.manage()
        .config(config)
        .args(["scheduled_jobs_runner", "--once"])
        .run();
}

#[test]
fn failures_mail_from_the_alert_after_th_on_and_the_success_after_them_mails_a_recovery() {
    let server = SmtpServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ok");
    let config = config(server.port, &flaky(&flag, "alert_after = 3\n"));
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();

    let mut seen = Vec::new();
    for n in 1..=4 {
        run_due(&db, &config, "flaky");
        let job = db.job_json(&config, "flaky");
        assert_eq!(job["consecutive_failures"], n, "after failure {n}");
        assert_eq!(job["alert_after"], 3);
        seen.push(server.subjects().len());
    }
    assert_eq!(
        seen,
        [0, 0, 1, 2],
        "no mail before the 3rd failure, one per failure from then on"
    );
    assert_eq!(
        server.subjects(),
        ["Scheduled job 'Flaky job' failed"; 2],
        "{:#?}",
        server.received()
    );

    std::fs::write(&flag, "").unwrap();
    run_due(&db, &config, "flaky");
    let mails = server.wait_for(3);
    assert_eq!(mails.len(), 3, "exactly one recovery mail: {mails:#?}");
    let recovery = &mails[2];
    assert_eq!(
        recovery.header("Subject").as_deref(),
        Some("Scheduled job 'Flaky job' recovered")
    );
    assert!(
        recovery
            .body()
            .starts_with("Succeeded after 4 failed runs.\n"),
        "{}",
        recovery.body()
    );
    assert!(recovery.body().contains("\nJob: flaky (Flaky job)\n"));
    assert!(recovery.body().contains("\nState: succeeded\n"));
    assert_eq!(db.job_json(&config, "flaky")["consecutive_failures"], 0);

    // A second success mails nothing more.
    run_due(&db, &config, "flaky");
    assert_eq!(server.received().len(), 3);
}

#[test]
fn a_streak_that_never_reached_alert_after_ends_without_a_recovery_mail() {
    let server = SmtpServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ok");
    let config = config(server.port, &flaky(&flag, "alert_after = 5\n"));
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    run_due(&db, &config, "flaky");
    run_due(&db, &config, "flaky");
    assert_eq!(db.job_json(&config, "flaky")["consecutive_failures"], 2);
    std::fs::write(&flag, "").unwrap();
    run_due(&db, &config, "flaky");
    assert_eq!(db.job_json(&config, "flaky")["consecutive_failures"], 0);
    assert!(server.received().is_empty(), "{:#?}", server.received());
    assert_eq!(db.value("SELECT count(*) FROM manage.mail_queue"), "0");
}

#[test]
fn a_retry_series_counts_as_one_failure() {
    let server = SmtpServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("ok");
    let config = config(
        server.port,
        &flaky(&flag, "retries = 2\nretry_delay = \"00:01\"\n"),
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    for attempt in 1..=3 {
        run_due(&db, &config, "flaky");
        let expected = if attempt < 3 { 0 } else { 1 };
        assert_eq!(
            db.job_json(&config, "flaky")["consecutive_failures"],
            expected,
            "after attempt {attempt}"
        );
    }
    assert_eq!(server.subjects(), ["Scheduled job 'Flaky job' failed"]);
}

/// What an operator may do while a retry waits (§18): none of it ends the
/// failure streak, which only a success or `reset-failure` does.
#[derive(Debug, Clone, Copy)]
enum Interruption {
    /// A new schedule (`jobs configure --override-interval`, then back).
    Reschedule,
    /// Any other setting (`jobs configure --retry-delay`).
    Configure,
    /// A hold during which the retry comes due, released with `--pending reschedule`.
    HoldAndRelease,
}

impl Interruption {
    /// Do it to `flaky`, whose retry is pending; `turn` alternates the value set.
    fn apply(self, db: &TestDb, config: &str, turn: usize) {
        let jobs = |args: &[&str]| db.manage().config(config).arg("jobs").args(args).ok();
        match self {
            Interruption::Reschedule if turn.is_multiple_of(2) => {
                jobs(&["configure", "flaky", "--override-interval", "02:00:00"]);
            }
            Interruption::Reschedule => {
                jobs(&["configure", "flaky", "--clear-override"]);
            }
            Interruption::Configure => {
                let delay = if turn.is_multiple_of(2) {
                    "00:20:00"
                } else {
                    "00:10:00"
                };
                jobs(&["configure", "flaky", "--retry-delay", delay]);
            }
            Interruption::HoldAndRelease => {
                jobs(&["hold"]);
                db.client()
                    .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'flaky'")
                    .unwrap();
                let released = jobs(&["release", "--pending", "reschedule"]);
                assert!(
                    released.stdout.contains("flaky"),
                    "the pending retry is rescheduled: {}",
                    released.stdout
                );
            }
        }
    }
}

/// `consecutive_failures` of `job` as `jobs list --json` shows it.
fn listed_streak(db: &TestDb, config: &str, job: &str) -> serde_json::Value {
    let list = db
        .manage()
        .config(config)
        .args(["jobs", "list", "--json"])
        .json();
    list.as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == job)
        .unwrap_or_else(|| panic!("{job} in {list:#}"))["consecutive_failures"]
        .clone()
}

#[test]
fn what_the_operator_does_during_a_retry_delay_never_ends_the_failure_streak() {
    for interruption in [
        Interruption::Reschedule,
        Interruption::Configure,
        Interruption::HoldAndRelease,
    ] {
        let server = SmtpServer::plain();
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("ok");
        let config = config(
            server.port,
            &flaky(
                &flag,
                "retries = 1\nretry_delay = \"00:10:00\"\nalert_after = 2\n",
            ),
        );
        let db = TestDb::new();
        db.manage().config(&config).arg("migrate").ok();
        let pending_retry =
            || db.value("SELECT next_attempt FROM manage.jobs WHERE name = 'flaky'") == "2";
        let mut turn = 0;
        // Each failed series: attempt 1, the operator during its retry
        // delay, attempt 2. (streak after it, mails by then)
        for (streak, mails) in [(1, 0), (2, 1)] {
            run_due(&db, &config, "flaky");
            assert!(pending_retry(), "{interruption:?}: a retry waits");
            assert_eq!(
                listed_streak(&db, &config, "flaky"),
                streak - 1,
                "{interruption:?}: during the retry delay of series {streak}"
            );
            interruption.apply(&db, &config, turn);
            turn += 1;
            assert_eq!(
                listed_streak(&db, &config, "flaky"),
                streak - 1,
                "{interruption:?}: right after the operator, in series {streak}"
            );
            run_due(&db, &config, "flaky");
            assert_eq!(
                listed_streak(&db, &config, "flaky"),
                streak,
                "{interruption:?}: after series {streak}"
            );
            assert_eq!(
                server.subjects(),
                vec!["Scheduled job 'Flaky job' failed".to_string(); mails],
                "{interruption:?}: mails after series {streak}"
            );
        }
        // A failure mail went out: a retried, then interrupted, run keeps
        // that alert, and the success ending the streak mails the recovery.
        run_due(&db, &config, "flaky");
        assert!(pending_retry(), "{interruption:?}: a third series waits");
        interruption.apply(&db, &config, turn);
        assert_eq!(
            db.value("SELECT alert_mailed FROM manage.jobs WHERE name = 'flaky'"),
            "t",
            "{interruption:?}: the streak's alert is kept"
        );
        assert_eq!(listed_streak(&db, &config, "flaky"), 2, "{interruption:?}");
        std::fs::write(&flag, "").unwrap();
        run_due(&db, &config, "flaky");
        assert_eq!(listed_streak(&db, &config, "flaky"), 0, "{interruption:?}");
        let mails = server.wait_for(2);
        assert_eq!(mails.len(), 2, "{interruption:?}: {mails:#?}");
        assert_eq!(
            mails[1].header("Subject").as_deref(),
            Some("Scheduled job 'Flaky job' recovered"),
            "{interruption:?}"
        );
        assert!(
            mails[1]
                .body()
                .starts_with("Succeeded after 2 failed runs.\n"),
            "{interruption:?}: {}",
            mails[1].body()
        );
        // The run after the operator was still its series' next attempt.
        let attempts: Vec<String> = db
            .query_strings("SELECT attempt FROM manage.runs WHERE job = 'flaky' ORDER BY id")
            .into_iter()
            .map(|row| row[0].clone())
            .collect();
        assert_eq!(attempts, ["1", "2", "1", "2", "1", "2"], "{interruption:?}");
    }
}

#[test]
fn configure_sets_alert_after_and_refuses_numbers_out_of_range() {
    let db = TestDb::new();
    db.manage().arg("migrate").ok();
    let run = db
        .manage()
        .args([
            "jobs",
            "configure",
            "purge_job_history",
            "--alert-after",
            "4",
        ])
        .ok();
    assert!(
        run.stdout.contains("Alert after:        4 (override)"),
        "{}",
        run.stdout
    );
    let shown = db.manage().args(["jobs", "show", "purge_job_history"]).ok();
    assert!(shown.stdout.contains("Alert after"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains("Consecutive failures"),
        "{}",
        shown.stdout
    );
    for bad in ["0", "1001", "x"] {
        db.manage()
            .args([
                "jobs",
                "configure",
                "purge_job_history",
                "--alert-after",
                bad,
            ])
            .run()
            .assert_bad_input(&["--alert-after", bad, "1 to 1000"]);
    }
    assert_eq!(
        db.value("SELECT override_alert_after FROM manage.jobs WHERE name = 'purge_job_history'"),
        "4",
        "nothing changed by the refused values"
    );
}

#[test]
fn a_declared_alert_after_out_of_range_is_a_configuration_error() {
    let db = TestDb::new();
    let run = db
        .manage()
        .config("[jobs.x]\ncommand = \"true\"\nalert_after = 0\n")
        .args(["jobs", "list"])
        .run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("jobs.x.alert_after"), "{}", run.stderr);
}

/// `manage metrics`, parsed: (family, labels) → value.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

fn metrics(db: &TestDb, config: &str) -> (String, Samples) {
    let run = db.manage().config(config).arg("metrics").ok();
    let lines = run.stdout.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the text format parses");
    let mut samples = Samples::new();
    for s in scrape.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            other => panic!("unexpected sample {other:?}"),
        };
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        samples.insert((s.metric, labels), value);
    }
    (run.stdout, samples)
}

fn job_label(job: &str) -> Vec<(String, String)> {
    vec![("job".into(), job.into())]
}

fn runs_label(job: &str, state: &str) -> Vec<(String, String)> {
    vec![("job".into(), job.into()), ("state".into(), state.into())]
}

fn rfc3339_seconds(value: &serde_json::Value) -> Option<f64> {
    value.as_str().map(|t| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap()
            .timestamp_millis() as f64
            / 1000.0
    })
}

#[test]
fn metrics_parse_match_jobs_list_and_survive_a_purge() {
    let config = "[jobs.good]\ncommand = \"true\"\ninterval = \"01:00:00\"\n\
                  [jobs.bad]\ncommand = \"exit 1\"\ninterval = \"01:00:00\"\n\
                  [jobs.idle]\ncommand = \"true\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    for _ in 0..2 {
        run_due(&db, config, "good");
        run_due(&db, config, "bad");
    }
    db.manage()
        .config(config)
        .args(["jobs", "configure", "idle", "--enabled", "false"])
        .ok();
    let (text, samples) = metrics(&db, config);
    eprintln!("---- manage metrics ----\n{text}");
    for family in [
        "manage_job_enabled",
        "manage_job_running",
        "manage_job_next_run_timestamp_seconds",
        "manage_job_last_run_timestamp_seconds",
        "manage_job_last_success_timestamp_seconds",
        "manage_job_last_duration_seconds",
        "manage_job_consecutive_failures",
        "manage_job_runs_total",
        "manage_jobs_held",
        "manage_runners",
        "manage_runner_heartbeat_age_seconds",
        "manage_mail_queue_length",
        "manage_mail_queue_oldest_age_seconds",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }

    let list = db
        .manage()
        .config(config)
        .args(["jobs", "list", "--json"])
        .json();
    let list = list.as_array().unwrap();
    assert!(
        list.len() >= 4,
        "the three declared jobs and the built-in ones"
    );
    for job in list {
        let name = job["name"].as_str().unwrap();
        let get = |family: &str| samples.get(&(family.to_string(), job_label(name))).copied();
        let enabled = if job["enabled"].as_bool().unwrap() {
            1.0
        } else {
            0.0
        };
        assert_eq!(get("manage_job_enabled"), Some(enabled), "{name}");
        let running = if job["running"].as_bool().unwrap() {
            1.0
        } else {
            0.0
        };
        assert_eq!(get("manage_job_running"), Some(running), "{name}");
        assert_eq!(
            get("manage_job_next_run_timestamp_seconds"),
            rfc3339_seconds(&job["next_run"]),
            "{name}: absent exactly when there is no next run"
        );
        assert_eq!(
            get("manage_job_last_run_timestamp_seconds"),
            rfc3339_seconds(&job["last_run"]),
            "{name}"
        );
        assert_eq!(
            get("manage_job_consecutive_failures"),
            job["consecutive_failures"].as_f64(),
            "{name}"
        );
    }
    let value = |family: &str, labels: Vec<(String, String)>| {
        samples.get(&(family.to_string(), labels)).copied()
    };
    assert_eq!(
        value("manage_job_consecutive_failures", job_label("bad")),
        Some(2.0)
    );
    assert_eq!(
        value("manage_job_runs_total", runs_label("bad", "failed")),
        Some(2.0)
    );
    assert_eq!(
        value("manage_job_runs_total", runs_label("bad", "succeeded")),
        Some(0.0)
    );
    assert_eq!(
        value("manage_job_runs_total", runs_label("good", "succeeded")),
        Some(2.0)
    );
    assert_eq!(
        value(
            "manage_job_last_success_timestamp_seconds",
            job_label("bad")
        ),
        None
    );
    assert!(value(
        "manage_job_last_success_timestamp_seconds",
        job_label("good")
    )
    .is_some());
    assert!(value("manage_job_last_duration_seconds", job_label("good")).is_some());
    assert_eq!(
        value("manage_job_next_run_timestamp_seconds", job_label("idle")),
        None
    );
    assert_eq!(value("manage_jobs_held", vec![]), Some(0.0));
    assert_eq!(
        value("manage_runners", vec![]),
        Some(0.0),
        "no runner is connected now"
    );
    assert_eq!(value("manage_mail_queue_length", vec![]), Some(0.0));

    // Purge every finished run: the counters and the last success stay.
    db.manage()
        .config(config)
        .args(["purge_job_history", "--keep-days", "0"])
        .ok();
    assert_eq!(
        db.value("SELECT count(*) FROM manage.runs WHERE job IN ('good', 'bad')"),
        "0"
    );
    let (_, after) = metrics(&db, config);
    for (job, state, n) in [("bad", "failed", 2.0), ("good", "succeeded", 2.0)] {
        assert_eq!(
            after.get(&("manage_job_runs_total".to_string(), runs_label(job, state))),
            Some(&n),
            "{job} {state} after the purge"
        );
    }
    assert_eq!(
        after.get(&(
            "manage_job_last_success_timestamp_seconds".to_string(),
            job_label("good")
        )),
        samples.get(&(
            "manage_job_last_success_timestamp_seconds".to_string(),
            job_label("good")
        ))
    );
    // And a run after the purge adds to the purged ones.
    run_due(&db, config, "bad");
    let (_, later) = metrics(&db, config);
    assert_eq!(
        later.get(&(
            "manage_job_runs_total".to_string(),
            runs_label("bad", "failed")
        )),
        Some(&3.0)
    );
}

#[test]
fn metrics_count_a_connected_runner_and_a_waiting_mail() {
    let db = TestDb::new();
    db.manage().arg("migrate").ok();
    db.client()
        .batch_execute(
            "INSERT INTO manage.mail_queue (recipient, sender, subject, body, queued_at) \
             VALUES ('a@example.com', 'b@example.com', 's', 'b', now() - interval '90 seconds')",
        )
        .unwrap();
    let runner = db.manage().arg("scheduled_jobs_runner").spawn();
    crate::harness::wait_for(
        std::time::Duration::from_secs(20),
        "the runner to connect",
        || db.value("SELECT count(*) FROM manage.runners WHERE stopped_at IS NULL") != "0",
    );
    let (text, samples) = metrics(&db, "");
    runner.stop();
    assert_eq!(
        samples.get(&("manage_runners".to_string(), vec![])),
        Some(&1.0),
        "{text}"
    );
    let pid = runner_pid_label(&samples);
    assert!(pid.is_some(), "a heartbeat age per runner: {text}");
    assert_eq!(
        samples.get(&("manage_mail_queue_length".to_string(), vec![])),
        Some(&1.0)
    );
    let age = samples[&("manage_mail_queue_oldest_age_seconds".to_string(), vec![])];
    assert!((90.0..600.0).contains(&age), "{age}");
}

fn runner_pid_label(samples: &Samples) -> Option<String> {
    samples.keys().find_map(|(family, labels)| {
        (family == "manage_runner_heartbeat_age_seconds")
            .then(|| {
                labels
                    .iter()
                    .find(|(k, _)| k == "pid")
                    .map(|(_, v)| v.clone())
            })
            .flatten()
    })
}

#[test]
fn runs_total_counts_history_written_directly_and_a_deletion_does_not_lower_it() {
    // Runs inserted with a finished state (history written by a tool) count
    // as recorded ones do; a run still running does not, until it is
    // recorded; deleting runs by hand lowers nothing.
    let config = "[jobs.tool]\ncommand = \"true\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    db.client()
        .batch_execute(
            "INSERT INTO manage.runs (job, state, started_at, finished_at, runtime_seconds, output) \
             SELECT 'tool', CASE WHEN i % 3 = 0 THEN 'failed' ELSE 'succeeded' END, \
                    now() - make_interval(mins => i), now() - make_interval(mins => i), 0.1, '' \
             FROM generate_series(1, 9) i; \
             INSERT INTO manage.runs (job, state, started_at) VALUES ('tool', 'running', now())",
        )
        .unwrap();
    let count = |samples: &Samples, state| {
        samples
            .get(&(
                "manage_job_runs_total".to_string(),
                runs_label("tool", state),
            ))
            .copied()
    };
    let (_, before) = metrics(&db, config);
    assert_eq!(count(&before, "succeeded"), Some(6.0));
    assert_eq!(count(&before, "failed"), Some(3.0));
    assert_eq!(count(&before, "running"), None);
    db.client()
        .batch_execute(
            "UPDATE manage.runs SET state = 'timed_out', finished_at = now() WHERE state = 'running'; \
             DELETE FROM manage.runs WHERE state = 'succeeded'",
        )
        .unwrap();
    let (_, after) = metrics(&db, config);
    assert_eq!(count(&after, "succeeded"), Some(6.0));
    assert_eq!(count(&after, "failed"), Some(3.0));
    assert_eq!(count(&after, "timed_out"), Some(1.0));
}
