//! Runner pools by tag (§19): a job with `runs_on` runs only on a runner
//! that has every tag it requires, exactly once, and `jobs status` names a
//! due job that no live runner can take.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{wait_for, Manage, TestDb};

const JOBS: &str = r#"
[jobs.gpu_job]
command = "echo gpu"
interval = "00:01"
runs_on = ["gpu"]

[jobs.eu_job]
command = "echo eu"
interval = "00:01"
runs_on = ["eu"]

[jobs.gpu_eu_job]
command = "echo both"
interval = "00:01"
runs_on = ["gpu", "eu"]

[jobs.any_job]
command = "echo any"
interval = "00:01"
"#;

fn manage(db: &TestDb) -> Manage {
    db.manage().config(JOBS)
}

/// `jobs status --json`, healthy (exit 0) or not (exit 1).
fn status_json(db: &TestDb) -> Value {
    let run = manage(db).args(["jobs", "status", "--json"]).run();
    assert!([0, 1].contains(&run.code), "{run:?}");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// (job, tags of the runner that ran it) for every finished run.
fn runs_by_runner(db: &TestDb) -> Vec<(String, Vec<String>)> {
    db.client()
        .query(
            "SELECT r.job, w.tags FROM manage.runs r JOIN manage.runners w ON w.id = r.runner_id \
             WHERE r.state <> 'running' ORDER BY r.id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[test]
fn a_job_runs_only_on_a_runner_with_every_tag_it_requires() {
    let db = TestDb::new();
    manage(&db).arg("migrate").ok();
    let gpu = manage(&db)
        .args(["scheduled_jobs_runner", "--no-migrate", "--tag", "gpu"])
        .spawn();
    let eu = manage(&db)
        .env("MANAGE_RUNNER_TAGS", "eu")
        .args(["scheduled_jobs_runner", "--no-migrate"])
        .spawn();
    let both = manage(&db)
        .config(&format!("{JOBS}\n[runner]\ntags = [\"eu\", \"gpu\"]\n"))
        .args(["scheduled_jobs_runner", "--no-migrate"])
        .spawn();

    let mut status = Value::Null;
    wait_for(
        Duration::from_secs(30),
        "three runners and runs of every job",
        || {
            status = status_json(&db);
            let done = runs_by_runner(&db);
            let every = ["gpu_job", "eu_job", "gpu_eu_job", "any_job"]
                .iter()
                .all(|job| done.iter().filter(|(j, _)| j == job).count() >= 3);
            status["runners"].as_array().map_or(0, Vec::len) == 3 && every
        },
    );
    for runner in [gpu, eu, both] {
        runner.stop();
    }

    for (job, tags) in runs_by_runner(&db) {
        let required: &[&str] = match job.as_str() {
            "gpu_job" => &["gpu"],
            "eu_job" => &["eu"],
            "gpu_eu_job" => &["gpu", "eu"],
            _ => &[],
        };
        assert!(
            required.iter().all(|t| tags.iter().any(|have| have == t)),
            "{job} ran on a runner with tags {tags:?}"
        );
    }
    // Never two runs of one job at once, with three runners claiming.
    let overlaps: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM manage.runs a JOIN manage.runs b ON a.job = b.job AND a.id < b.id \
             AND tstzrange(a.started_at, a.finished_at) && tstzrange(b.started_at, b.finished_at)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(overlaps, 0);

    let mut tags: Vec<Value> = status["runners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tags"].clone())
        .collect();
    tags.sort_by_key(|t| t.to_string());
    assert_eq!(
        tags,
        [
            serde_json::json!(["eu", "gpu"]),
            serde_json::json!(["eu"]),
            serde_json::json!(["gpu"])
        ]
    );
    let version = env!("CARGO_PKG_VERSION");
    for runner in status["runners"].as_array().unwrap() {
        assert_eq!(runner["version"], version, "{runner}");
    }
    let show = manage(&db)
        .args(["jobs", "show", "gpu_eu_job", "--json"])
        .json();
    assert_eq!(show["runs_on"], serde_json::json!(["gpu", "eu"]));
}

#[test]
fn a_due_job_no_live_runner_can_take_is_a_problem_after_a_minute() {
    let db = TestDb::new();
    manage(&db).arg("migrate").ok();
    let runner = manage(&db)
        .args(["scheduled_jobs_runner", "--no-migrate", "--tag", "gpu"])
        .spawn();
    let configured = manage(&db)
        .args(["jobs", "configure", "gpu_job", "--runs-on", "gpu,eu"])
        .ok();
    assert!(
        configured
            .stdout
            .contains("Runs on:            runners with tags gpu, eu (override)"),
        "{}",
        configured.stdout
    );
    wait_for(Duration::from_secs(10), "the runner to connect", || {
        runner.log().contains("with tags gpu")
    });
    // Due for two minutes: no live runner has both tags.
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET next_run = now() - interval '2 minutes' WHERE name = 'gpu_job'",
        )
        .unwrap();
    let status = manage(&db).args(["jobs", "status"]).run();
    assert_eq!(status.code, 1, "{status:?}");
    assert!(
        status
            .stdout
            .contains("gpu_job is due but no live runner has tags gpu, eu"),
        "{}",
        status.stdout
    );
    assert!(
        status
            .stdout
            .contains(&format!("version {}, tags gpu", env!("CARGO_PKG_VERSION"))),
        "{}",
        status.stdout
    );
    let json = status_json(&db);
    assert!(
        json["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "gpu_job is due but no live runner has tags gpu, eu"),
        "{json}"
    );
    // Back to the declared tags: the runner takes it, and the problem is gone.
    manage(&db)
        .args(["jobs", "configure", "gpu_job", "--clear-runs-on"])
        .ok();
    wait_for(Duration::from_secs(15), "gpu_job to run", || {
        runs_by_runner(&db).iter().any(|(job, _)| job == "gpu_job")
    });
    let json = status_json(&db);
    assert!(
        !json["problems"]
            .to_string()
            .contains("no live runner has tags"),
        "{json}"
    );
    runner.stop();
}

#[test]
fn bad_tags_are_refused_naming_the_value() {
    let db = TestDb::new();
    Manage::new()
        .args(["scheduled_jobs_runner", "--tag", "g p u"])
        .run()
        .assert_bad_input(&["g p u", "tag"]);
    Manage::new()
        .config("[runner]\ntags = [\"ok\", \"not ok\"]\n")
        .arg("scheduled_jobs_runner")
        .run()
        .assert_bad_input(&["runner.tags", "not ok"]);
    Manage::new()
        .config("[jobs.x]\ncommand = \"true\"\nruns_on = \"gpu\"\n")
        .args(["jobs", "list"])
        .run()
        .assert_bad_input(&["jobs.x.runs_on", "array"]);
    manage(&db).arg("migrate").ok();
    manage(&db)
        .args(["jobs", "configure", "gpu_job", "--runs-on", "gpu,,eu"])
        .run()
        .assert_bad_input(&["--runs-on", "tag"]);
}
