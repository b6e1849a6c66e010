//! Pause until (§21): `jobs configure NAME --pause-until INSTANT|DURATION`
//! keeps a job from running until then, and its schedule goes on from its
//! first slot after that instant, with no catch-up run; `--resume` ends it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::harness::{wait_for, TestDb};

const JOBS: &str = r#"
timezone = "UTC"

[jobs.tick]
command = "true"
interval = "00:01"

[jobs.daily]
command = "true"
times = ["04:30"]
"#;

/// `jobs show NAME --json`.
fn show(db: &TestDb, name: &str) -> serde_json::Value {
    db.job_json(JOBS, name)
}

fn instant(value: &serde_json::Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn runs(db: &TestDb) -> i64 {
    db.client()
        .query_one("SELECT count(*) FROM manage.runs WHERE job = 'tick'", &[])
        .unwrap()
        .get(0)
}

#[test]
fn a_paused_job_does_not_run_until_then_and_resumes_on_its_schedule() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    let runner = db
        .manage()
        .config(JOBS)
        .args(["scheduled_jobs_runner", "--no-migrate"])
        .spawn();
    wait_for(Duration::from_secs(15), "tick to run", || runs(&db) >= 1);
    let paused = db
        .manage()
        .config(JOBS)
        .args(["jobs", "configure", "tick", "--pause-until", "01:00:00"])
        .ok();
    assert!(paused.stdout.contains("Paused until:"), "{}", paused.stdout);
    let job = show(&db, "tick");
    let until = instant(&job["paused_until"]);
    let from_now = until - Utc::now();
    assert!(
        from_now > chrono::Duration::minutes(59) && from_now <= chrono::Duration::hours(1),
        "{until}"
    );
    // Its first slot after the pause, as if it had just run then.
    assert_eq!(
        instant(&job["next_run"]),
        until + chrono::Duration::seconds(1)
    );
    let before = runs(&db);
    std::thread::sleep(Duration::from_secs(3));
    assert!(runs(&db) <= before + 1, "ran while paused");
    let during = runs(&db);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&db), during, "ran while paused");

    db.manage()
        .config(JOBS)
        .args(["jobs", "configure", "tick", "--resume"])
        .ok();
    let job = show(&db, "tick");
    assert!(job["paused_until"].is_null(), "{job}");
    wait_for(Duration::from_secs(15), "tick to run again", || {
        runs(&db) > during
    });
    runner.stop();

    let audit = db
        .manage()
        .config(JOBS)
        .args(["jobs", "audit", "tick", "--json"])
        .json();
    assert!(
        audit.to_string().contains("paused_until: none → "),
        "{audit}"
    );
}

#[test]
fn a_paused_daily_job_goes_on_from_its_first_slot_after_the_pause() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db.manage()
        .config(JOBS)
        .args([
            "jobs",
            "configure",
            "daily",
            "--pause-until",
            "2099-06-10T12:00:00Z",
        ])
        .ok();
    let job = show(&db, "daily");
    assert_eq!(job["paused_until"], "2099-06-10T12:00:00.000+00:00");
    // 04:30 on the 10th is before the end of the pause: no catch-up, the 11th.
    assert_eq!(job["next_run"], "2099-06-11T04:30:00.000+00:00");
}

#[test]
fn a_pause_in_the_past_or_unreadable_is_refused_and_changes_nothing() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    let before = show(&db, "daily");
    db.manage()
        .config(JOBS)
        .args([
            "jobs",
            "configure",
            "daily",
            "--pause-until",
            "2020-01-01T00:00:00Z",
        ])
        .run()
        .assert_bad_input(&["--pause-until", "daily", "2020-01-01", "passed"]);
    db.manage()
        .config(JOBS)
        .args(["jobs", "configure", "daily", "--pause-until", "monday"])
        .run()
        .assert_bad_input(&["\"monday\"", "RFC 3339", "duration"]);
    let after = show(&db, "daily");
    assert_eq!(before, after);
}
