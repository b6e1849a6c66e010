//! manage as a library (§22): the example application, `examples/app`, is
//! the whole command line with two jobs of its own, and its runner runs both
//! — the internal one on its connection, the other as a child of its own
//! binary — against a real PostgreSQL.

use crate::harness::{example_app, runs, Manage, TestDb};

fn app(db: &TestDb) -> Manage {
    db.manage().program(example_app())
}

#[test]
fn the_example_application_lists_its_own_jobs_beside_the_shipped_ones() {
    let db = TestDb::new();
    app(&db).arg("migrate").ok();
    let list = app(&db).args(["jobs", "list", "--json"]).json();
    let mut names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "count_jobs",
            "greet",
            "purge_job_history",
            "send_queued_mail"
        ]
    );
    let count = list
        .as_array()
        .unwrap()
        .iter()
        .find(|job| job["name"] == "count_jobs")
        .unwrap();
    assert_eq!(count["app"], "example");
    assert_eq!(count["description"], "Count the defined jobs");
    assert_eq!(count["kind"], "internal");
    let help = app(&db).arg("--help").ok();
    assert!(help.stdout.contains("Usage: app "), "{}", help.stdout);
    assert!(help.stdout.contains("greet"), "{}", help.stdout);
    assert!(
        help.stdout.contains("scheduled_jobs_runner"),
        "{}",
        help.stdout
    );
}

#[test]
fn the_example_applications_runner_runs_its_internal_job_and_its_child_job() {
    let db = TestDb::new();
    app(&db).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'count_jobs'")
        .unwrap();
    // count_jobs triggers greet: both run in one --once pass.
    let run = app(&db).args(["scheduled_jobs_runner", "--once"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let counted = runs(&db.url, "count_jobs");
    assert_eq!(counted.len(), 1, "{}", run.stderr);
    assert_eq!(counted[0].state, "succeeded");
    assert_eq!(counted[0].output, "4 jobs are defined\n");
    assert!(
        counted[0].pgid.is_none(),
        "an internal job starts no process"
    );
    let greeted = runs(&db.url, "greet");
    assert_eq!(greeted.len(), 1, "{}", run.stderr);
    assert_eq!(greeted[0].state, "succeeded", "{}", run.stderr);
    // A child of the application's own binary, which knows its run.
    assert_eq!(
        greeted[0].output,
        format!("hello from run {}\n", greeted[0].id)
    );
    assert!(greeted[0].pgid.is_some(), "run as a child process");
    // By hand, the same job: no run, the output on stdout.
    let by_hand = app(&db).arg("greet").ok();
    assert_eq!(by_hand.stdout, "hello, by hand\n");
}
