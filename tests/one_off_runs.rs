//! `manage NAME`: one job now, in the foreground, as cron would.

use crate::harness::TestDb;

#[test]
fn a_declared_job_runs_in_its_working_dir_with_its_env() {
    let db = TestDb::new();
    std::fs::create_dir(db.home().join("work")).unwrap();
    let config = "[jobs.hello]\ncommand = \"echo \\\"$GREETING from $(basename \\\"$PWD\\\")\\\"; echo oops >&2\"\nworking_dir = \"work\"\n[jobs.hello.env]\nGREETING = \"hi\"\n";
    let run = db.manage().config(config).arg("hello").run();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, "hi from work\n");
    assert!(run.stderr.contains("oops"));
    assert_eq!(
        db.value("SELECT count(*) FROM manage.runs"),
        "0",
        "no history row"
    );
}

#[test]
fn working_dir_defaults_to_the_directory_of_the_configuration_file() {
    let db = TestDb::new();
    let manage = db.manage().config("[jobs.where]\ncommand = \"pwd\"\n");
    let expected = manage
        .config_path()
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let run = manage.current_dir(other.path()).arg("where").ok();
    assert_eq!(run.stdout.trim(), expected.to_str().unwrap());
}

#[test]
fn a_failing_declared_job_exits_1() {
    let db = TestDb::new();
    let run = db
        .manage()
        .config("[jobs.broken]\ncommand = \"echo failing; exit 3\"\n")
        .arg("broken")
        .run();
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout, "failing\n");
}

#[test]
fn a_disabled_job_still_runs_by_hand() {
    let db = TestDb::new();
    let config = "[jobs.hello]\ncommand = \"echo hello\"\ninterval = \"05:00\"\n";
    db.manage().config(config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET enabled = false WHERE name = 'hello'")
        .unwrap();
    assert_eq!(
        db.manage().config(config).arg("hello").ok().stdout,
        "hello\n"
    );
}

#[test]
fn purge_job_history_removes_old_runs_and_keeps_running_ones() {
    let db = TestDb::new();
    db.manage().arg("migrate").ok();
    db.client()
        .batch_execute(
            "INSERT INTO manage.runs (job, state, started_at, finished_at) \
               SELECT 'send_queued_mail', 'succeeded', now() - interval '100 days', now() - interval '100 days' FROM generate_series(1, 12000);
             INSERT INTO manage.runs (job, state, started_at, finished_at) VALUES \
               ('send_queued_mail', 'failed', now() - interval '10 days', now() - interval '10 days'), \
               ('send_queued_mail', 'succeeded', now() - interval '1 hour', now() - interval '1 hour');
             INSERT INTO manage.runs (job, state, started_at) VALUES ('send_queued_mail', 'running', now() - interval '200 days');",
        )
        .unwrap();
    let run = db.manage().arg("purge_job_history").ok();
    assert_eq!(
        run.stdout,
        "Removed 12000 runs older than 90 days from the job history\n"
    );
    assert_eq!(db.value("SELECT count(*) FROM manage.runs"), "3");
    let run = db
        .manage()
        .args(["purge_job_history", "--keep-days", "5"])
        .ok();
    assert_eq!(
        run.stdout,
        "Removed 1 run older than 5 days from the job history\n"
    );
    let run = db
        .manage()
        .args(["purge_job_history", "--keep-days", "0"])
        .ok();
    assert_eq!(
        run.stdout,
        "Removed 1 run older than 0 days from the job history\n"
    );
    assert_eq!(db.value("SELECT state FROM manage.runs"), "running");
}

#[test]
fn purge_job_history_rejects_a_bad_keep_days() {
    let db = TestDb::new();
    for bad in ["-1", "many"] {
        db.manage()
            .args(["purge_job_history", &format!("--keep-days={bad}")])
            .run()
            .assert_bad_input(&[&format!("'{bad}'"), "--keep-days"]);
    }
}

#[test]
fn keep_days_out_of_range_names_the_flag_and_the_range() {
    let db = TestDb::new();
    db.manage().arg("migrate").ok();
    db.client()
        .batch_execute(
            "INSERT INTO manage.runs (job, state, started_at, finished_at, output) \
             VALUES ('purge_job_history', 'succeeded', now() - interval '400 days', \
                     now() - interval '400 days', '')",
        )
        .unwrap();
    for days in ["4294967295", "2147483647", "1000001", "-1", "x"] {
        db.manage()
            .args(["purge_job_history", "--keep-days", days])
            .run()
            .assert_bad_input(&[days, "--keep-days", "from 0 to 1000000"]);
    }
    assert_eq!(
        db.value("SELECT count(*) FROM manage.runs"),
        "1",
        "nothing removed"
    );
    // The top of the range still works, and says so.
    let run = db
        .manage()
        .args(["purge_job_history", "--keep-days", "1000000"])
        .ok();
    assert!(run.stdout.contains("Removed 0 runs"), "{}", run.stdout);
    let help = db
        .manage()
        .args(["purge_job_history", "--help"])
        .ok()
        .stdout;
    assert!(help.contains("0 to 1000000"), "{help}");
}
