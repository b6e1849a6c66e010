//! Job flow (§21) through the real runner: the overlap policy (`wait`,
//! `skip`, `replace`, the last across two runners) and the chains on
//! outcome (`on_success`, `on_failure`, after a retry series), with their
//! configuration errors in the file and through `jobs configure`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::harness::{wait_for, Background, RunRecord, TestDb};

/// Fast timings, and a short grace so that stopping a runner does not wait
/// for a `sleep 30` to end.
const RUNNER: &str =
    "[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n\
                      shutdown_grace = \"00:01\"\n";

const REPLACED: &str = "Interrupted: replaced by a new run";

fn finished(db: &TestDb, job: &str) -> Vec<RunRecord> {
    crate::harness::runs(&db.url, job)
        .into_iter()
        .filter(|r| r.state != "running")
        .collect()
}

/// Sync `config` (after the fast runner timings) and make `due` due now.
fn migrate(config: &str, due: &[&str]) -> (TestDb, String) {
    let db = TestDb::new();
    let config = format!("{RUNNER}{config}");
    db.manage().config(&config).arg("migrate").ok();
    for job in due {
        db.client()
            .batch_execute(&format!(
                "UPDATE manage.jobs SET next_run = now() WHERE name = '{job}'"
            ))
            .unwrap();
    }
    (db, config)
}

fn runner(db: &TestDb, config: &str, args: &[&str]) -> Background {
    db.manage()
        .config(config)
        .arg("scheduled_jobs_runner")
        .args(args)
        .spawn()
}

/// A run as `jobs history --json` shows it: start, end (while it runs, none), state.
type Shown = (DateTime<Utc>, Option<DateTime<Utc>>, String);

/// The runs of `job` from `jobs history --json`, oldest first.
fn history(db: &TestDb, config: &str, job: &str) -> Vec<Shown> {
    let value = db
        .manage()
        .config(config)
        .args(["jobs", "history", job, "--json"])
        .json();
    let time = |v: &serde_json::Value| {
        v.as_str()
            .map(|t| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc))
    };
    let mut runs: Vec<_> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                time(&run["started_at"]).unwrap(),
                time(&run["finished_at"]),
                run["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    runs.sort_by_key(|r| r.0);
    runs
}

/// No run started before the one before it had finished.
fn assert_never_overlapping(runs: &[Shown]) {
    for pair in runs.windows(2) {
        let end = pair[0].1.expect("an earlier run has finished");
        assert!(
            pair[1].0 >= end,
            "a run started at {} while the one before it ran until {end}",
            pair[1].0
        );
    }
}

#[test]
fn with_skip_the_slots_that_come_while_the_job_runs_are_skipped_and_logged() {
    let (db, config) = migrate(
        "[jobs.slow]\ncommand = \"sleep 3\"\ninterval = \"00:01\"\noverlap = \"skip\"\n",
        &["slow"],
    );
    let runner = runner(&db, &config, &[]);
    wait_for(Duration::from_secs(20), "a run of slow to finish", || {
        !finished(&db, "slow").is_empty()
    });
    let log = runner.stop();
    let skips = log
        .lines()
        .filter(|l| l.ends_with("Skipping job slow: still running"))
        .count();
    assert!(skips >= 2, "a slot a second while it ran 3 s:\n{log}");
    let runs = history(&db, &config, "slow");
    assert_never_overlapping(&runs);
    assert!(runs.iter().all(|r| r.2 == "succeeded"), "{runs:?}");
}

#[test]
fn with_wait_a_job_that_outlives_its_interval_is_neither_skipped_nor_stopped() {
    let (db, config) = migrate(
        "[jobs.slow]\ncommand = \"sleep 2\"\ninterval = \"00:01\"\n",
        &["slow"],
    );
    let runner = runner(&db, &config, &[]);
    wait_for(Duration::from_secs(20), "two runs of slow", || {
        finished(&db, "slow").len() >= 2
    });
    let log = runner.stop();
    assert!(!log.contains("still running"), "{log}");
    assert!(!log.contains("Replacing"), "{log}");
    let runs = history(&db, &config, "slow");
    assert_never_overlapping(&runs);
    assert!(runs.iter().all(|r| r.2 == "succeeded"), "{runs:?}");
    // The interval still counts from the end of the run (§3).
    let gap = runs[1].0 - runs[0].1.unwrap();
    assert!(gap >= chrono::Duration::milliseconds(1000), "{gap:?}");
}

#[test]
fn with_wait_a_time_of_day_that_passes_during_the_run_runs_right_after_it() {
    // Two slots two seconds apart, and a run of four: the second slot comes
    // while the first run goes on, waits for it, and runs once right after
    // it (§21) — not a day later.
    let now = Utc::now();
    let slot = |secs| (now + chrono::Duration::seconds(secs)).format("%H:%M:%S");
    let (db, config) = migrate(
        &format!(
            "[jobs.slow]\ncommand = \"sleep 4\"\ntimezone = \"UTC\"\n\
             times = [\"{}\", \"{}\"]\n",
            slot(3),
            slot(5)
        ),
        &[],
    );
    let runner = runner(&db, &config, &[]);
    wait_for(Duration::from_secs(30), "two runs of slow", || {
        finished(&db, "slow").len() >= 2
    });
    let log = runner.stop();
    let runs = history(&db, &config, "slow");
    assert_eq!(runs.len(), 2, "{runs:?}\n{log}");
    assert_never_overlapping(&runs);
    let gap = runs[1].0 - runs[0].1.unwrap();
    assert!(
        gap < chrono::Duration::milliseconds(1500),
        "the waiting slot started {gap:?} after the run it waited for\n{log}"
    );
    assert!(!log.contains("still running"), "{log}");
}

#[test]
fn with_replace_the_running_run_is_interrupted_and_the_new_one_starts_after_it() {
    let (db, config) = migrate(
        "[jobs.long]\ncommand = \"echo started; sleep 30\"\ninterval = \"00:02\"\n\
         overlap = \"replace\"\n",
        &["long"],
    );
    let runner = runner(&db, &config, &[]);
    wait_for(Duration::from_secs(30), "two replaced runs of long", || {
        finished(&db, "long").len() >= 2
    });
    // A replaced run is no failure of its own: no streak (the run that the
    // runner's stop interrupts next is one).
    assert_eq!(
        db.value("SELECT consecutive_failures FROM manage.jobs WHERE name = 'long'"),
        "0"
    );
    let log = runner.stop();
    assert!(
        log.contains("Replacing job long: a new slot came while run"),
        "{log}"
    );
    let done = finished(&db, "long");
    for run in &done[..2] {
        assert_eq!(run.state, "interrupted");
        assert_eq!(run.output, format!("started\n{REPLACED}"));
        let ran = run.finished_at.unwrap() - run.started_at;
        assert!(
            ran < chrono::Duration::seconds(10),
            "stopped at its next slot, 2 s in, not at the end: {ran:?}"
        );
    }
    assert_never_overlapping(&history(&db, &config, "long"));
}

#[test]
fn with_replace_another_runner_sees_the_slot_and_the_owner_stops_its_run() {
    let (db, config) = migrate(
        "[jobs.long]\ncommand = \"echo started; sleep 30\"\ninterval = \"00:03\"\n\
         overlap = \"replace\"\nruns_on = [\"first\"]\n",
        &["long"],
    );
    let first = runner(&db, &config, &["--tag", "first"]);
    wait_for(
        Duration::from_secs(20),
        "long to run on the first runner",
        || {
            crate::harness::runs(&db.url, "long")
                .iter()
                .any(|r| r.state == "running")
        },
    );
    // From now on only the second runner may take the job, or act on its
    // slot: the first one only owns the run in progress.
    db.manage()
        .config(&config)
        .args(["jobs", "configure", "long", "--runs-on", "second"])
        .ok();
    let second = runner(&db, &config, &["--tag", "second"]);
    wait_for(
        Duration::from_secs(30),
        "a run of long on the second runner",
        || {
            let runs = crate::harness::runs(&db.url, "long");
            runs.len() >= 2 && runs[0].state != "running"
        },
    );
    let second_log = second.stop();
    let first_log = first.stop();
    let runs = crate::harness::runs(&db.url, "long");
    assert_eq!(runs[0].state, "interrupted", "{first_log}");
    assert_eq!(runs[0].output, format!("started\n{REPLACED}"));
    assert_ne!(
        runs[0].runner_id, runs[1].runner_id,
        "the new run is the other runner's"
    );
    assert!(runs[1].started_at >= runs[0].finished_at.unwrap());
    assert!(
        second_log.contains("Replacing job long"),
        "the second runner saw the slot:\n{second_log}"
    );
    assert!(
        first_log.contains(&format!("Stopping run {} for a new run", runs[0].id)),
        "the first runner stopped its run:\n{first_log}"
    );
    assert_never_overlapping(&history(&db, &config, "long"));
}

#[test]
fn on_success_and_on_failure_fire_on_their_outcome_only_after_the_retry_series() {
    let (db, config) = migrate(
        "[jobs.good]\ncommand = \"true\"\non_success = [\"good_next\"]\non_failure = [\"good_failed\"]\n\
         [jobs.bad]\ncommand = \"exit 1\"\nretries = 1\nretry_delay = \"00:01\"\n\
         on_success = [\"bad_succeeded\"]\non_failure = [\"bad_next\"]\n\
         [jobs.good_next]\ncommand = \"true\"\n[jobs.good_failed]\ncommand = \"true\"\n\
         [jobs.bad_succeeded]\ncommand = \"true\"\n[jobs.bad_next]\ncommand = \"true\"\n",
        &["good", "bad"],
    );
    let runner = runner(&db, &config, &[]);
    wait_for(
        Duration::from_secs(20),
        "bad's series and its chain",
        || !finished(&db, "bad_next").is_empty() && !finished(&db, "good_next").is_empty(),
    );
    std::thread::sleep(Duration::from_millis(1000));
    runner.stop();
    let count = |job: &str| finished(&db, job).len();
    assert_eq!(count("good_next"), 1);
    assert_eq!(count("good_failed"), 0);
    assert_eq!(count("bad_succeeded"), 0);
    assert_eq!(count("bad_next"), 1, "once, for the series");
    let bad = finished(&db, "bad");
    assert_eq!(bad.len(), 2, "the run and its retry");
    assert!(
        finished(&db, "bad_next")[0].started_at >= bad[1].finished_at.unwrap(),
        "on_failure waits for the last retry"
    );
}

#[test]
fn a_chain_cycle_in_the_file_is_a_configuration_error() {
    let db = TestDb::new();
    let run = db
        .manage()
        .config(
            "[jobs.a]\ncommand = \"true\"\non_success = [\"b\"]\n\
             [jobs.b]\ncommand = \"true\"\non_failure = [\"a\"]\n",
        )
        .arg("migrate")
        .run();
    run.assert_bad_input(&[
        "jobs.a.on_success",
        "a → b → a is a cycle: a job may not trigger itself, directly or through others",
    ]);
}

#[test]
fn jobs_configure_sets_and_clears_overlap_and_chains_and_refuses_a_cycle() {
    let config =
        "[jobs.a]\ncommand = \"true\"\n[jobs.b]\ncommand = \"true\"\non_failure = [\"a\"]\n\
                  [jobs.c]\ncommand = \"true\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    let show = |job: &str| db.job_json(config, job);
    assert_eq!(show("a")["overlap"], "wait");
    assert_eq!(show("b")["on_failure"], serde_json::json!(["a"]));
    let configure = |args: &[&str]| {
        db.manage()
            .config(config)
            .args(["jobs", "configure", "a"])
            .args(args)
            .run()
    };
    configure(&["--on-success", "b"]).assert_bad_input(&[
        "job a: a → b → a is a cycle: a job may not trigger itself, directly or through others",
    ]);
    configure(&["--on-failure", "nosuchjob"])
        .assert_bad_input(&["--on-failure for job a: \"nosuchjob\" is not a known job"]);
    configure(&["--overlap", "kill"])
        .assert_bad_input(&["\"kill\" is not an overlap policy: expected wait, skip or replace"]);
    let unchanged = show("a");
    assert_eq!(unchanged["on_success"], serde_json::json!([]));
    assert_eq!(unchanged["on_failure"], serde_json::json!([]));
    assert_eq!(
        db.value("SELECT count(*) FROM manage.audit WHERE job = 'a' AND action = 'configure'"),
        "0"
    );

    let out = configure(&["--overlap", "skip", "--on-failure", "c,c"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(
            "Overlap:            skip (override): a slot that comes during a run is skipped"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("On failure:         c (override)"),
        "{}",
        out.stdout
    );
    let configured = show("a");
    assert_eq!(configured["overlap"], "skip");
    assert_eq!(configured["on_failure"], serde_json::json!(["c"]));
    let text = db.manage().config(config).args(["jobs", "show", "a"]).ok();
    assert!(text.stdout.contains("On failure"), "{}", text.stdout);
    let audit = db.value(
        "SELECT details FROM manage.audit WHERE job = 'a' AND action = 'configure' ORDER BY id DESC LIMIT 1",
    );
    assert!(audit.contains("overlap: wait → skip"), "{audit}");
    assert!(audit.contains("on_failure: [] → [c]"), "{audit}");

    let cleared = configure(&["--clear-overlap", "--clear-on-failure"]);
    assert_eq!(cleared.code, 0, "{}", cleared.stderr);
    let back = show("a");
    assert_eq!(back["overlap"], "wait");
    assert_eq!(back["on_failure"], serde_json::json!([]));
}

#[test]
fn with_replace_an_sql_job_has_its_statement_cancelled_for_the_new_run() {
    let (db, config) = migrate(
        "[jobs.query]\nsql = \"SELECT pg_sleep(30)\"\ninterval = \"00:02\"\noverlap = \"replace\"\n",
        &["query"],
    );
    let runner = runner(&db, &config, &[]);
    wait_for(Duration::from_secs(30), "a replaced run of query", || {
        !finished(&db, "query").is_empty()
    });
    runner.stop();
    let done = finished(&db, "query");
    assert_eq!(done[0].state, "interrupted");
    assert_eq!(done[0].output, REPLACED);
    assert_never_overlapping(&history(&db, &config, "query"));
}
