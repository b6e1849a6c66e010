//! The read commands: `jobs next`, `jobs list`, `jobs show`,
//! `list_unscheduled_commands` — JSON fields and types, exact times across DST,
//! and the human tables (snapshots with times redacted).

use serde_json::Value;

use crate::harness::TestDb;

const JOBS: &str = "timezone = \"Europe/Stockholm\"\n\
[jobs.nightly]\ncommand = \"true\"\ndescription = \"Nightly report\"\ntimes = [\"02:30\"]\n\
[jobs.poll]\ncommand = \"true\"\ndescription = \"Poll the bank\"\ninterval = \"01:00:00\"\napp = \"invoices\"\n\
[jobs.by_hand]\ncommand = \"true\"\ndescription = \"Rebuild the search index\"\napp = \"search\"\n";

fn setup() -> TestDb {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db
}

fn next(db: &TestDb, name: &str, extra: &[&str]) -> Vec<String> {
    let json = db
        .manage()
        .config(JOBS)
        .args(["jobs", "next", name, "--json"])
        .args(extra)
        .json();
    json.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn next_lists_a_daily_time_across_the_stockholm_spring_forward() {
    let db = setup();
    assert_eq!(
        next(
            &db,
            "nightly",
            &["--after", "2026-03-27T12:00:00+01:00", "--count", "4"]
        ),
        [
            "2026-03-28T02:30:00.000+01:00",
            "2026-03-29T03:00:00.000+02:00",
            "2026-03-30T02:30:00.000+02:00",
            "2026-03-31T02:30:00.000+02:00",
        ]
    );
    let human = db
        .manage()
        .config(JOBS)
        .args([
            "jobs",
            "next",
            "nightly",
            "--after",
            "2026-03-27T12:00:00+01:00",
            "--count",
            "3",
        ])
        .ok();
    assert_eq!(
        human.stdout,
        "2026-03-28 02:30:00 CET\n2026-03-29 03:00:00 CEST\n2026-03-30 02:30:00 CEST\n"
    );
}

#[test]
fn next_runs_once_in_the_fall_back_fold() {
    let db = setup();
    let config = JOBS.replace("02:30", "02:30:00");
    let json = db
        .manage()
        .config(&config)
        .args([
            "jobs",
            "next",
            "nightly",
            "--json",
            "--count",
            "3",
            "--after",
            "2026-10-24T12:00:00Z",
        ])
        .json();
    assert_eq!(
        json,
        serde_json::json!([
            "2026-10-25T02:30:00.000+02:00",
            "2026-10-26T02:30:00.000+01:00",
            "2026-10-27T02:30:00.000+01:00"
        ])
    );
}

#[test]
fn next_accepts_after_in_any_offset() {
    let db = setup();
    // The same instant written three ways gives the same answer.
    let expected = next(
        &db,
        "nightly",
        &["--after", "2026-06-01T00:00:00Z", "--count", "2"],
    );
    assert_eq!(
        expected,
        [
            "2026-06-01T02:30:00.000+02:00",
            "2026-06-02T02:30:00.000+02:00"
        ]
    );
    for after in [
        "2026-06-01T02:00:00+02:00",
        "2026-05-31T20:00:00-04:00",
        "2026-06-01T05:30:00+05:30",
    ] {
        assert_eq!(
            next(&db, "nightly", &["--after", after, "--count", "2"]),
            expected,
            "{after}"
        );
    }
}

#[test]
fn next_for_an_interval_counts_from_after() {
    let db = setup();
    assert_eq!(
        next(
            &db,
            "poll",
            &["--after", "2026-03-29T00:30:00+01:00", "--count", "3"]
        ),
        [
            "2026-03-29T01:30:00.000+01:00",
            "2026-03-29T03:30:00.000+02:00",
            "2026-03-29T04:30:00.000+02:00",
        ],
        "an interval is elapsed time: one hour after 01:30 CET is 03:30 CEST"
    );
    assert_eq!(next(&db, "poll", &[]).len(), 5, "the default count is 5");
}

#[test]
fn next_for_a_disabled_job_lists_what_it_would_do_and_says_so() {
    let db = setup();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET enabled = false, next_run = NULL WHERE name = 'nightly'",
        )
        .unwrap();
    let run = db
        .manage()
        .config(JOBS)
        .args([
            "jobs",
            "next",
            "nightly",
            "--after",
            "2026-06-01T00:00:00Z",
            "--count",
            "1",
        ])
        .ok();
    assert_eq!(
        run.stdout,
        "Job nightly is disabled; if it were enabled it would run at:\n2026-06-01 02:30:00 CEST\n"
    );
}

#[test]
fn next_rejects_bad_count_after_and_names() {
    let db = setup();
    let run = |args: &[&str]| {
        db.manage()
            .config(JOBS)
            .args(["jobs", "next"])
            .args(args)
            .run()
    };
    run(&["nightly", "--count", "0"]).assert_bad_input(&["0", "--count"]);
    run(&["nightly", "--count", "1001"]).assert_bad_input(&["1001", "--count"]);
    run(&["nightly", "--count", "x"]).assert_bad_input(&["x", "--count"]);
    // Every refusal states the range, far out or negative.
    for count in ["0", "70000", "-1", "99999999999"] {
        run(&["nightly", "--count", count]).assert_bad_input(&[count, "--count", "from 1 to 1000"]);
    }
    run(&["nightly", "--after", "yesterday"]).assert_bad_input(&["\"yesterday\"", "RFC 3339"]);
    run(&["nightly", "--after", "2026-13-01T00:00:00Z"])
        .assert_bad_input(&["2026-13-01", "RFC 3339"]);
    run(&["nosuch"]).assert_bad_input(&["\"nosuch\""]);
    db.client()
        .batch_execute("UPDATE manage.jobs SET removed = true WHERE name = 'poll'")
        .unwrap();
    run(&["poll"]).assert_bad_input(&["\"poll\"", "removed"]);
}

fn assert_job_object(job: &Value) {
    let object = job.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "name",
            "app",
            "description",
            "enabled",
            "notify_on_success",
            "internal",
            "kind",
            "timeout_seconds",
            "retries",
            "retry_delay",
            "alert_after",
            "runs_on",
            "jitter",
            "paused_until",
            "extra_runs",
            "notify",
            "overlap",
            "on_success",
            "on_failure",
            "expect_success_within",
            "overdue",
            "warn_after",
            "consecutive_failures",
            "builtin_times",
            "builtin_interval",
            "override_times",
            "override_interval",
            "builtin_cron",
            "override_cron",
            "timezone",
            "start_deadline",
            "next_run",
            "last_run",
            "last_state",
            "last_skip",
            "running",
        ]
    );
    for key in ["builtin_cron", "override_cron", "start_deadline"] {
        assert!(job[key].is_null() || job[key].is_string(), "{key}");
    }
    assert!(job["timezone"].is_string());
    assert!(["internal", "process", "sql"].contains(&job["kind"].as_str().unwrap()));
    assert!(job["name"].is_string() && job["app"].is_string() && job["description"].is_string());
    assert!(
        job["enabled"].is_boolean()
            && job["notify_on_success"].is_boolean()
            && job["internal"].is_boolean()
    );
    assert!(job["running"].is_boolean());
    assert!(job["timeout_seconds"].is_u64());
    assert!(job["retries"].is_u64() && job["retry_delay"].is_string());
    assert!(["internal", "process", "sql"].contains(&job["kind"].as_str().unwrap()));
    for key in ["builtin_times", "override_times"] {
        assert!(
            job[key].is_null()
                || job[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|t| t.as_str().unwrap().len() == 8)
        );
    }
    for key in ["next_run", "last_run", "last_skip"] {
        assert!(
            job[key].is_null()
                || chrono::DateTime::parse_from_rfc3339(job[key].as_str().unwrap()).is_ok()
        );
    }
}

#[test]
fn list_json_has_the_job_fields_sorted_by_next_run_unscheduled_last() {
    let db = setup();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET next_run = '2030-01-01T00:00:00Z' WHERE name = 'nightly';
             UPDATE manage.jobs SET next_run = '2029-01-01T00:00:00Z' WHERE name = 'poll';
             UPDATE manage.jobs SET next_run = '2031-01-01T00:00:00Z' WHERE name IN ('purge_job_history', 'send_queued_mail');",
        )
        .unwrap();
    let list = db
        .manage()
        .config(JOBS)
        .args(["jobs", "list", "--json"])
        .json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "poll",
            "nightly",
            "purge_job_history",
            "send_queued_mail",
            "by_hand"
        ]
    );
    for job in list.as_array().unwrap() {
        assert_job_object(job);
    }
    let poll = &list[0];
    assert_eq!(poll["builtin_interval"], "01:00:00");
    assert_eq!(poll["builtin_times"], Value::Null);
    assert_eq!(poll["next_run"], "2029-01-01T01:00:00.000+01:00");
    assert_eq!(poll["timeout_seconds"], 120);
    assert_eq!(poll["app"], "invoices");
    assert_eq!(list[1]["builtin_times"], serde_json::json!(["02:30:00"]));
    assert_eq!(list[4]["next_run"], Value::Null);
}

#[test]
fn show_json_is_a_job_object_with_a_history_page_of_15() {
    let db = setup();
    let mut client = db.client();
    for i in 0..20 {
        let started = chrono::DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::hours(i);
        crate::harness::insert_run(
            &mut client,
            "poll",
            if i % 2 == 0 { "succeeded" } else { "failed" },
            started,
            Some(started + chrono::Duration::milliseconds(1234)),
            &format!("line one of {i}\nline two"),
        );
    }
    let show = db
        .manage()
        .config(JOBS)
        .args(["jobs", "show", "poll", "--json"])
        .json();
    let mut job = show.clone();
    let history = job.as_object_mut().unwrap().remove("history").unwrap();
    assert_job_object(&job);
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 15);
    let first = history[0].as_object().unwrap();
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "job",
            "state",
            "started_at",
            "finished_at",
            "runtime_seconds",
            "attempt",
            "args",
            "output_first_line"
        ]
    );
    assert!(history[0]["id"].is_i64());
    assert_eq!(history[0]["output_first_line"], "line one of 19");
    assert_eq!(history[0]["started_at"], "2026-11-02T06:00:00.000+01:00");
    assert_eq!(history[0]["runtime_seconds"], 1.234);
    let page2 = db
        .manage()
        .config(JOBS)
        .args(["jobs", "show", "poll", "--json", "--page", "2"])
        .json();
    assert_eq!(page2["history"].as_array().unwrap().len(), 5);
    let page9 = db
        .manage()
        .config(JOBS)
        .args(["jobs", "show", "poll", "--json", "--page", "9"])
        .json();
    assert_eq!(
        page9["history"],
        serde_json::json!([]),
        "a page past the end is empty"
    );
    db.manage()
        .config(JOBS)
        .args(["jobs", "show", "poll", "--page", "0"])
        .run()
        .assert_bad_input(&["0", "--page"]);
    db.manage()
        .config(JOBS)
        .args(["jobs", "show", "nosuch"])
        .run()
        .assert_bad_input(&["\"nosuch\""]);
}

#[test]
fn list_unscheduled_commands_groups_manual_jobs_by_app() {
    let db = setup();
    let json = db
        .manage()
        .config(JOBS)
        .args(["list_unscheduled_commands", "--json"])
        .json();
    assert_eq!(
        json,
        serde_json::json!([{"name": "by_hand", "app": "search", "description": "Rebuild the search index"}])
    );
    let human = db
        .manage()
        .config(JOBS)
        .arg("list_unscheduled_commands")
        .ok();
    assert_eq!(
        human.stdout,
        "[search]\n    by_hand                        Rebuild the search index\n"
    );
}

#[test]
fn list_and_show_human_output_has_no_escape_codes_and_a_stable_layout() {
    let db = setup();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET last_state = 'failed', last_run = now() - interval '1 hour' WHERE name = 'poll';
             UPDATE manage.jobs SET next_run = '2030-01-01T00:00:00Z' WHERE name = 'nightly';
             UPDATE manage.jobs SET next_run = '2029-01-01T00:00:00Z' WHERE name = 'poll';
             UPDATE manage.jobs SET next_run = '2031-01-01T00:00:00Z' WHERE name = 'purge_job_history';
             UPDATE manage.jobs SET next_run = '2032-01-01T00:00:00Z' WHERE name = 'send_queued_mail';",
        )
        .unwrap();
    let list = db.manage().config(JOBS).args(["jobs", "list"]).ok();
    assert!(!list.stdout.contains('\x1b'));
    // Times and relative times change from run to run; the layout must not.
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [A-Z]{3,4}", "[TIME]");
    settings.add_filter(r"\((in |)[0-9][0-9a-z ]*( ago|)\)", "([RELATIVE])");
    settings.bind(|| {
        insta::assert_snapshot!("jobs_list", list.stdout);
        let show = db.manage().config(JOBS).args(["jobs", "show", "poll"]).ok();
        assert!(!show.stdout.contains('\x1b'));
        insta::assert_snapshot!("jobs_show", show.stdout);
    });
}

#[test]
fn an_unmigrated_database_gets_a_hint_not_a_bare_sql_error() {
    let db = TestDb::new();
    db.client()
        .batch_execute("DROP SCHEMA manage CASCADE")
        .unwrap();
    let run = db.manage().args(["jobs", "list"]).run();
    assert_eq!(run.code, 1);
    let line = run
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap();
    assert!(line.contains("run `manage migrate` first"), "{line}");
}
