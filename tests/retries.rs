//! Retries (§13) through the real runner: attempts and their spacing, one
//! mail only at the end of a failed series, a success ending a series early,
//! the log line, and the operator's `jobs configure --retries/--retry-delay`.

use std::time::Duration;

use crate::harness::{wait_for, Background, RunRecord, TestDb};

const RUNNER: &str =
    "[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n";

fn runs(db: &TestDb, job: &str) -> Vec<RunRecord> {
    crate::harness::runs(&db.url, job)
}

fn finished(db: &TestDb, job: &str) -> Vec<RunRecord> {
    runs(db, job)
        .into_iter()
        .filter(|r| r.state != "running")
        .collect()
}

fn attempts(db: &TestDb, job: &str) -> Vec<String> {
    db.query_strings(&format!(
        "SELECT attempt FROM manage.runs WHERE job = '{job}' AND state <> 'running' ORDER BY id"
    ))
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

/// Sync `config` (after the fast runner timings), make `job` due now, start a runner.
fn start(config: &str, job: &str) -> (TestDb, Background) {
    let db = TestDb::new();
    let config = format!("{RUNNER}{config}");
    db.manage().config(&config).arg("migrate").ok();
    db.client()
        .batch_execute(&format!(
            "UPDATE manage.jobs SET next_run = now() WHERE name = '{job}'"
        ))
        .unwrap();
    let runner = db
        .manage()
        .config(&config)
        .arg("scheduled_jobs_runner")
        .spawn();
    (db, runner)
}

#[test]
fn a_failing_job_is_retried_with_doubling_delays_and_each_run_records_its_attempt() {
    let (db, runner) = start(
        "[notifications]\nemail = \"ops@example.com\"\n\
         [jobs.flaky]\ncommand = \"echo nope; exit 1\"\ninterval = \"01:00:00\"\n\
         retries = 2\nretry_delay = \"00:01\"\n",
        "flaky",
    );
    wait_for(Duration::from_secs(20), "three runs of flaky", || {
        finished(&db, "flaky").len() >= 3
    });
    // Nothing more comes: the series is over, the regular schedule is an hour away.
    std::thread::sleep(Duration::from_millis(1500));
    let log = runner.stop();
    let done = finished(&db, "flaky");
    assert_eq!(done.len(), 3, "two retries, then the schedule");
    assert!(done.iter().all(|r| r.state == "failed"));
    assert_eq!(attempts(&db, "flaky"), ["1", "2", "3"]);
    for (pair, wait_ms) in done.windows(2).zip([1000, 2000]) {
        let gap = pair[1].started_at - pair[0].finished_at.unwrap();
        assert!(
            gap >= chrono::Duration::milliseconds(wait_ms),
            "retry started {gap:?} after the failure, expected at least {wait_ms} ms"
        );
    }
    assert_eq!(
        db.value(
            "SELECT next_run > now() + interval '50 minutes' AND next_attempt = 1 \
             FROM manage.jobs WHERE name = 'flaky'"
        ),
        "t",
        "the regular schedule goes on from the last attempt"
    );
    // Only the series' final failure queues a mail.
    let mailed = db.query_strings(
        "SELECT run_id FROM manage.mail_queue WHERE subject LIKE '%flaky%' ORDER BY id",
    );
    assert_eq!(
        mailed,
        [[done[2].id.to_string()]],
        "one mail, for the last attempt"
    );
    for k in 1..=2 {
        assert!(
            log.lines().any(|l| l.contains("Job flaky failed in ")
                && l.contains(&format!(" s (failed); retry {k} of 2 at "))),
            "no log line for retry {k}:\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("Job flaky failed in ") && l.ends_with(" s (failed)")),
        "the final failure has the plain line:\n{log}"
    );
    let shown = db.manage().args(["jobs", "show", "flaky", "--json"]).json();
    assert_eq!(shown["retries"], 2);
    assert_eq!(shown["kind"], "process");
    let attempts: Vec<i64> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(attempts, [3, 2, 1], "history is newest first");
    let human = db.manage().args(["jobs", "show", "flaky"]).ok();
    assert!(human.stdout.contains("Retries:"), "{}", human.stdout);
    assert!(human.stdout.contains("Attempt"), "{}", human.stdout);
}

#[test]
fn a_success_ends_the_series_early() {
    let (db, runner) = start(
        "[jobs.second_time]\ncommand = \"test -f marker || { touch marker; exit 1; }\"\n\
         interval = \"01:00:00\"\nretries = 3\nretry_delay = \"00:01\"\n",
        "second_time",
    );
    wait_for(Duration::from_secs(15), "two runs", || {
        finished(&db, "second_time").len() >= 2
    });
    std::thread::sleep(Duration::from_millis(2500));
    runner.stop();
    let done = finished(&db, "second_time");
    let states: Vec<&str> = done.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(
        states,
        ["failed", "succeeded"],
        "no retry after the success"
    );
    assert_eq!(attempts(&db, "second_time"), ["1", "2"]);
    assert_eq!(
        db.value(
            "SELECT next_run > now() + interval '50 minutes' AND next_attempt = 1 \
             FROM manage.jobs WHERE name = 'second_time'"
        ),
        "t"
    );
}

#[test]
fn a_failed_sql_job_is_retried_too() {
    let (db, runner) = start(
        "[jobs.sql_flaky]\nsql = \"SELECT 1/0\"\ninterval = \"01:00:00\"\n\
         retries = 1\nretry_delay = \"00:01\"\n",
        "sql_flaky",
    );
    wait_for(Duration::from_secs(15), "two runs", || {
        finished(&db, "sql_flaky").len() >= 2
    });
    runner.stop();
    assert_eq!(attempts(&db, "sql_flaky"), ["1", "2"]);
    assert!(finished(&db, "sql_flaky")
        .iter()
        .all(|r| r.output == "ERROR: division by zero"));
}

#[test]
fn jobs_configure_sets_retries_and_refuses_bad_values() {
    let db = TestDb::new();
    let config = "[jobs.plain]\ncommand = \"true\"\ninterval = \"01:00:00\"\n";
    db.manage().config(config).arg("migrate").ok();
    db.manage()
        .config(config)
        .args(["jobs", "configure", "plain", "--retries", "101"])
        .run()
        .assert_bad_input(&["\"101\"", "0 to 100"]);
    db.manage()
        .config(config)
        .args(["jobs", "configure", "plain", "--retry-delay", "00:00"])
        .run()
        .assert_bad_input(&["\"00:00\""]);
    assert_eq!(
        db.value("SELECT override_retries IS NULL FROM manage.jobs WHERE name = 'plain'"),
        "t",
        "nothing changed"
    );
    let out = db
        .manage()
        .config(config)
        .args([
            "jobs",
            "configure",
            "plain",
            "--retries",
            "4",
            "--retry-delay",
            "02:00",
        ])
        .ok();
    assert!(
        out.stdout
            .contains("Retries:            4, first after 00:02:00 (doubling) (override)"),
        "{}",
        out.stdout
    );
    let shown = db
        .manage()
        .config(config)
        .args(["jobs", "show", "plain", "--json"])
        .json();
    assert_eq!(shown["retries"], 4);
    // A sync keeps the operator's choice.
    db.manage().config(config).arg("migrate").ok();
    assert_eq!(
        db.value("SELECT override_retries FROM manage.jobs WHERE name = 'plain'"),
        "4"
    );
    db.manage()
        .config("[jobs.plain]\ncommand = \"true\"\nretries = 101\n")
        .arg("migrate")
        .run()
        .assert_bad_input(&["jobs.plain.retries", "101", "0 to 100"]);
}

#[test]
fn a_hold_keeps_a_pending_retry_waiting_and_release_runs_it_as_the_next_attempt() {
    let (db, runner) = start(
        "[jobs.held]\ncommand = \"exit 1\"\ninterval = \"01:00:00\"\n\
         retries = 1\nretry_delay = \"00:02\"\n",
        "held",
    );
    wait_for(Duration::from_secs(10), "the first run", || {
        finished(&db, "held").len() == 1
    });
    db.manage().args(["jobs", "hold"]).ok();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(finished(&db, "held").len(), 1, "nothing runs during a hold");
    assert_eq!(
        db.value("SELECT next_attempt FROM manage.jobs WHERE name = 'held'"),
        "2"
    );
    db.manage()
        .args(["jobs", "release", "--pending", "run"])
        .ok();
    wait_for(Duration::from_secs(10), "the retry", || {
        finished(&db, "held").len() == 2
    });
    runner.stop();
    assert_eq!(attempts(&db, "held"), ["1", "2"]);
}

#[test]
fn an_interrupted_run_is_retried_and_the_log_says_when() {
    let db = TestDb::new();
    let config = format!(
        "{RUNNER}[jobs.victim]\ncommand = \"sleep 6\"\ninterval = \"01:00:00\"\n\
         retries = 1\nretry_delay = \"00:01\"\ntimeout = \"00:03\"\n"
    );
    db.manage().config(&config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'victim'")
        .unwrap();
    let mut first = db
        .manage()
        .config(&config)
        .arg("scheduled_jobs_runner")
        .spawn();
    wait_for(Duration::from_secs(10), "the run to start", || {
        runs(&db, "victim").len() == 1
    });
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    let second = db
        .manage()
        .config(&config)
        .arg("scheduled_jobs_runner")
        .spawn();
    wait_for(Duration::from_secs(25), "the retry to time out", || {
        finished(&db, "victim").len() == 2
    });
    let log = second.stop();
    let states: Vec<String> = finished(&db, "victim")
        .into_iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, ["interrupted", "timed_out"]);
    assert_eq!(attempts(&db, "victim"), ["1", "2"]);
    assert!(
        log.lines().any(|l| l.contains("Job victim failed in ")
            && l.contains("(interrupted); retry 1 of 1 at ")),
        "{log}"
    );
}
