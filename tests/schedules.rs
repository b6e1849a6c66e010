//! §11: cron schedules, a time zone per job and start deadlines, through the
//! real binary: the declaration, `jobs configure`, `jobs show`/`next`/`list`,
//! and the runner.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use serde_json::Value;

use crate::harness::{wait_for, Manage, TestDb};

/// Runner timings short enough for tests (§10: values carried from configuration).
const FAST: &str = "[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n";

const JOBS: &str = "timezone = \"Europe/Stockholm\"\n\
    [jobs.report]\ncommand = \"echo report\"\ncron = \"30 2 * * *\"\ntimezone = \"America/New_York\"\n\
    [jobs.tick]\ncommand = \"true\"\ninterval = \"01:00:00\"\n";

fn setup() -> TestDb {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db
}

fn manage(db: &TestDb) -> Manage {
    db.manage().config(JOBS)
}

fn show(db: &TestDb, name: &str) -> Value {
    manage(db).args(["jobs", "show", name, "--json"]).json()
}

fn db_now(db: &TestDb) -> DateTime<Utc> {
    db.client()
        .query_one("SELECT clock_timestamp()", &[])
        .unwrap()
        .get(0)
}

/// Everything a command could change in the jobs table.
fn jobs_state(db: &TestDb) -> String {
    db.value("SELECT string_agg(row_to_json(j)::text, ',' ORDER BY name) FROM manage.jobs j")
}

#[test]
fn a_declared_cron_job_in_another_zone_runs_at_its_slot() {
    let db = TestDb::new();
    let now = db_now(&db);
    let slot = now + chrono::Duration::seconds(3);
    // The slot is written in Tokyo time; the installation's zone is UTC.
    let config = format!(
        "timezone = \"UTC\"\n{FAST}[jobs.at_slot]\ncommand = \"echo slot\"\ncron = \"{} * * *\"\n\
         timezone = \"Asia/Tokyo\"\n",
        slot.with_timezone(&chrono_tz::Asia::Tokyo)
            .format("%S %M %H")
    );
    db.manage().config(&config).arg("migrate").ok();
    let runner = db
        .manage()
        .config(&config)
        .arg("scheduled_jobs_runner")
        .spawn();
    wait_for(Duration::from_secs(15), "the cron slot's run", || {
        crate::harness::runs(&db.url, "at_slot")
            .iter()
            .any(|r| r.state != "running")
    });
    runner.stop();
    let runs = crate::harness::runs(&db.url, "at_slot");
    let late = runs[0].started_at - slot.with_nanosecond(0).unwrap();
    assert!(late >= chrono::Duration::zero(), "started {late:?} early");
    assert!(late < chrono::Duration::seconds(1), "started {late:?} late");
    assert_eq!(runs[0].output, "slot\n");
}

#[test]
fn jobs_next_of_a_new_york_cron_job_prints_display_zone_times_across_its_dst_day() {
    let db = setup();
    // New York springs forward on 2026-03-08: 02:30 does not exist that day
    // and runs at 03:00 EDT, the first instant after the gap; Stockholm is
    // still on CET.
    let run = manage(&db)
        .args([
            "jobs",
            "next",
            "report",
            "--count",
            "3",
            "--after",
            "2026-03-07T12:00:00Z",
        ])
        .ok();
    assert_eq!(
        run.stdout,
        "Slots in America/New_York, shown in Europe/Stockholm:\n\
         2026-03-08 08:00:00 CET\n\
         2026-03-09 07:30:00 CET\n\
         2026-03-10 07:30:00 CET\n"
    );
    let json = manage(&db)
        .args([
            "jobs",
            "next",
            "report",
            "--count",
            "2",
            "--after",
            "2026-03-07T12:00:00Z",
            "--json",
        ])
        .json();
    assert_eq!(
        json,
        serde_json::json!([
            "2026-03-08T08:00:00.000+01:00",
            "2026-03-09T07:30:00.000+01:00"
        ])
    );
}

#[test]
fn show_and_list_show_the_cron_schedule_zone_and_deadline() {
    let db = setup();
    let job = show(&db, "report");
    assert_eq!(job["builtin_cron"], "30 2 * * *");
    assert_eq!(job["override_cron"], Value::Null);
    assert_eq!(job["builtin_times"], Value::Null);
    assert_eq!(job["timezone"], "America/New_York");
    assert_eq!(job["start_deadline"], Value::Null);
    assert_eq!(job["kind"], "process");
    let tick = show(&db, "tick");
    assert_eq!(tick["timezone"], "Europe/Stockholm");
    assert_eq!(tick["builtin_cron"], Value::Null);
    let human = manage(&db).args(["jobs", "show", "report"]).ok().stdout;
    for line in [
        "Built-in schedule:    cron 30 2 * * *",
        "Override:             none",
        "Effective schedule:   cron 30 2 * * *",
        "Time zone:            America/New_York (declared)",
        "Start deadline:       none",
    ] {
        assert!(human.contains(line), "{line:?} not in:\n{human}");
    }
    let list = manage(&db).args(["jobs", "list"]).ok().stdout;
    assert!(
        list.contains("cron 30 2 * * * (America/New_York)"),
        "{list}"
    );
}

#[test]
fn configure_override_cron_timezone_and_start_deadline_and_clear_them() {
    let db = setup();
    manage(&db)
        .args([
            "jobs",
            "configure",
            "tick",
            "--override-cron",
            "0 9 * * MON-FRI",
            "--timezone",
            "Asia/Tokyo",
            "--start-deadline",
            "05:00",
        ])
        .ok();
    let job = show(&db, "tick");
    assert_eq!(job["override_cron"], "0 9 * * MON-FRI");
    assert_eq!(job["override_interval"], Value::Null);
    assert_eq!(job["builtin_interval"], "01:00:00");
    assert_eq!(job["timezone"], "Asia/Tokyo");
    assert_eq!(job["start_deadline"], "00:05:00");
    // The next run is a weekday 09:00 in Tokyo (00:00 UTC).
    let next = DateTime::parse_from_rfc3339(job["next_run"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono_tz::Asia::Tokyo);
    assert_eq!(next.format("%H:%M:%S").to_string(), "09:00:00");
    assert!(!["Sat", "Sun"].contains(&next.format("%a").to_string().as_str()));

    // The declared zone is back with --clear-timezone; the configured one
    // for a job that declares none.
    manage(&db)
        .args(["jobs", "configure", "report", "--timezone", "Asia/Tokyo"])
        .ok();
    assert_eq!(show(&db, "report")["timezone"], "Asia/Tokyo");
    manage(&db)
        .args(["jobs", "configure", "report", "--clear-timezone"])
        .ok();
    assert_eq!(show(&db, "report")["timezone"], "America/New_York");

    let out = manage(&db)
        .args([
            "jobs",
            "configure",
            "tick",
            "--clear-override",
            "--clear-timezone",
            "--clear-start-deadline",
        ])
        .ok()
        .stdout;
    assert!(out.contains("Effective schedule: every 01:00:00"), "{out}");
    let job = show(&db, "tick");
    assert_eq!(job["override_cron"], Value::Null);
    assert_eq!(job["timezone"], "Europe/Stockholm");
    assert_eq!(job["start_deadline"], Value::Null);
}

#[test]
fn configure_rejects_bad_cron_zone_and_deadline_and_changes_nothing() {
    let db = setup();
    let before = jobs_state(&db);
    let configure = |args: &[&str]| {
        manage(&db)
            .args(["jobs", "configure", "tick"])
            .args(args)
            .run()
    };
    configure(&["--override-cron", "0 0 30 2 *"])
        .assert_bad_input(&["\"0 0 30 2 *\"", "never matches"]);
    configure(&["--override-cron", "61 * * * *"])
        .assert_bad_input(&["\"61 * * * *\"", "minute field \"61\""]);
    configure(&["--override-cron", "0 0 * * FUNDAY"])
        .assert_bad_input(&["day-of-week field \"FUNDAY\""]);
    configure(&["--override-cron", "* * *"]).assert_bad_input(&["\"* * *\"", "found 3"]);
    configure(&["--timezone", "Mars/Olympus"]).assert_bad_input(&["\"Mars/Olympus\"", "IANA"]);
    configure(&["--start-deadline", "00:00"]).assert_bad_input(&["\"00:00\"", "duration"]);
    configure(&["--override-cron", "@daily", "--override-interval", "05:00"])
        .assert_bad_input(&["--override-cron"]);
    assert_eq!(jobs_state(&db), before, "nothing may change on bad input");
}

#[test]
fn declared_cron_errors_name_the_key_and_two_schedules_name_both() {
    for (toml, needles) in [
        (
            "[jobs.x]\ncommand = \"true\"\ncron = \"0 0 30 2 *\"\n",
            &["jobs.x.cron", "never matches"][..],
        ),
        (
            "[jobs.x]\ncommand = \"true\"\ncron = \"0 25 * * *\"\n",
            &["jobs.x.cron", "hour field \"25\""][..],
        ),
        (
            "[jobs.x]\ncommand = \"true\"\ncron = \"@daily\"\ninterval = \"05:00\"\n",
            &["jobs.x", "both interval and cron"][..],
        ),
        (
            "[jobs.x]\ncommand = \"true\"\ntimezone = \"Europe/Nowhere\"\n",
            &["jobs.x.timezone", "\"Europe/Nowhere\""][..],
        ),
        (
            "[jobs.x]\ncommand = \"true\"\nstart_deadline = \"1 hour\"\n",
            &["jobs.x.start_deadline", "\"1 hour\""][..],
        ),
    ] {
        let db = TestDb::new();
        db.manage()
            .config(toml)
            .arg("migrate")
            .run()
            .assert_bad_input(needles);
        assert_eq!(db.value("SELECT count(*) FROM manage.jobs"), "0");
    }
}

const LATE: &str = "timezone = \"UTC\"\n[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n\
    [jobs.late]\ncommand = \"echo ran\"\ncron = \"0 0 1 1 *\"\nstart_deadline = \"00:01\"\n";

#[test]
fn a_job_held_past_its_start_deadline_is_skipped_and_rescheduled_but_run_now_still_runs() {
    let db = TestDb::new();
    let late = || db.manage().config(LATE);
    late().arg("migrate").ok();
    late().args(["jobs", "hold"]).ok();
    // A slot twenty seconds ago, missed while the jobs were held.
    db.client()
        .execute(
            "UPDATE manage.jobs SET next_run = clock_timestamp() - interval '20 seconds' WHERE name = 'late'",
            &[],
        )
        .unwrap();
    late().args(["jobs", "release", "--pending", "run"]).ok();
    let runner = late().arg("scheduled_jobs_runner").spawn();
    wait_for(Duration::from_secs(10), "the skip", || {
        db.value("SELECT last_skip IS NOT NULL FROM manage.jobs WHERE name = 'late'") == "t"
    });
    let job = late().args(["jobs", "show", "late", "--json"]).json();
    assert!(job["last_skip"].is_string());
    assert!(job["last_run"].is_null(), "the late run did not run");
    // Rescheduled to its first slot after now: next New Year.
    let next = DateTime::parse_from_rfc3339(job["next_run"].as_str().unwrap()).unwrap();
    assert_eq!(next.format("%m-%d %H:%M:%S").to_string(), "01-01 00:00:00");
    assert!(crate::harness::runs(&db.url, "late").is_empty());

    // A run-now request is never past its deadline, even when held longer.
    late().args(["jobs", "hold"]).ok();
    late().args(["jobs", "run-now", "late"]).ok();
    std::thread::sleep(Duration::from_millis(2500));
    late().args(["jobs", "release", "--pending", "run"]).ok();
    wait_for(Duration::from_secs(10), "the requested run", || {
        crate::harness::runs(&db.url, "late")
            .iter()
            .any(|r| r.state == "succeeded")
    });
    let log = runner.stop();
    let skipped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Skipping job late: missed its start deadline by 00:00:"))
        .collect();
    assert_eq!(skipped.len(), 1, "{log}");
    assert!(log.contains("Running job late"), "{log}");
}

#[test]
fn sync_updates_and_reschedules_a_changed_cron_or_zone_and_is_silent_otherwise() {
    let db = setup();
    let before = show(&db, "report")["next_run"].clone();
    let again = manage(&db).arg("migrate").ok();
    assert!(!again.stdout.contains("report"), "{}", again.stdout);

    // Sync with `config`: the job is updated; its JSON and its next run's
    // wall-clock time in Tokyo.
    let resync = |config: &str| {
        let run = db.manage().config(config).arg("migrate").ok();
        assert!(
            run.stdout.contains("Updated scheduled job report"),
            "{}",
            run.stdout
        );
        let job = db
            .manage()
            .config(config)
            .args(["jobs", "show", "report", "--json"])
            .json();
        let next = DateTime::parse_from_rfc3339(job["next_run"].as_str().unwrap())
            .unwrap()
            .with_timezone(&chrono_tz::Asia::Tokyo);
        (job, next.format("%H:%M:%S").to_string())
    };

    let moved = JOBS.replace("America/New_York", "Asia/Tokyo");
    let (job, next) = resync(&moved);
    assert_eq!(job["timezone"], "Asia/Tokyo");
    assert_eq!(next, "02:30:00");
    assert_ne!(job["next_run"], before);

    let rewritten = moved.replace("30 2 * * *", "0 4 * * *");
    let (job, next) = resync(&rewritten);
    assert_eq!(job["builtin_cron"], "0 4 * * *");
    assert_eq!(next, "04:00:00");
}

#[test]
fn without_a_start_deadline_a_job_held_past_its_slot_runs_once_on_release() {
    let config = LATE.replace("start_deadline = \"00:01\"\n", "");
    let db = TestDb::new();
    let late = || db.manage().config(&config);
    late().arg("migrate").ok();
    late().args(["jobs", "hold"]).ok();
    db.client()
        .execute(
            "UPDATE manage.jobs SET next_run = clock_timestamp() - interval '20 seconds' WHERE name = 'late'",
            &[],
        )
        .unwrap();
    late().args(["jobs", "release", "--pending", "run"]).ok();
    let runner = late().arg("scheduled_jobs_runner").spawn();
    wait_for(Duration::from_secs(10), "the catch-up run", || {
        crate::harness::runs(&db.url, "late")
            .iter()
            .any(|r| r.state == "succeeded")
    });
    std::thread::sleep(Duration::from_secs(1));
    let log = runner.stop();
    assert_eq!(crate::harness::runs(&db.url, "late").len(), 1, "{log}");
    assert!(!log.contains("missed its start deadline"), "{log}");
}
