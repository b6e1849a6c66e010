//! SQL jobs (§12) through the real runner: notices as the output, an error
//! that rolls everything back and says why, a statement timeout, should_run,
//! trigger_next, and `manage NAME` in the foreground.

use std::time::Duration;

use crate::harness::{wait_for, RunRecord, TestDb};

const RUNNER: &str =
    "[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n";

/// Migrate `jobs`, make `due` due now, and run the runner once.
fn run_once(db: &TestDb, jobs: &str, due: &[&str]) -> crate::harness::Run {
    let config = format!("{RUNNER}{jobs}");
    db.manage().config(&config).arg("migrate").ok();
    let names: Vec<String> = due.iter().map(|j| format!("'{j}'")).collect();
    db.client()
        .batch_execute(&format!(
            "UPDATE manage.jobs SET next_run = now() WHERE name IN ({})",
            names.join(", ")
        ))
        .unwrap();
    db.manage()
        .config(&config)
        .args(["scheduled_jobs_runner", "--once"])
        .run()
}

fn runs(db: &TestDb, job: &str) -> Vec<RunRecord> {
    crate::harness::runs(&db.url, job)
}

#[test]
fn an_sql_job_runs_in_one_transaction_and_its_notices_are_the_output() {
    let db = TestDb::new();
    let jobs = "[jobs.tidy]\nsql = \"\"\"\nCREATE TABLE public.tidied (x int);\n\
        DO $$ BEGIN RAISE NOTICE 'app %', current_setting('application_name'); \
        RAISE WARNING 'careful'; RAISE NOTICE 'done'; END $$;\n\"\"\"\ninterval = \"01:00:00\"\n";
    let run = run_once(&db, jobs, &["tidy"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let done = runs(&db, "tidy");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, "succeeded");
    assert_eq!(
        done[0].output,
        "NOTICE: app manage job tidy\nWARNING: careful\nNOTICE: done\n"
    );
    assert_eq!(
        db.value("SELECT to_regclass('public.tidied') IS NOT NULL"),
        "t"
    );
    assert!(
        run.stderr.contains("Job tidy succeeded in "),
        "{}",
        run.stderr
    );
    let shown = db.manage().args(["jobs", "show", "tidy", "--json"]).json();
    assert_eq!(shown["kind"], "sql");
    assert_eq!(shown["retries"], 0);
}

#[test]
fn an_error_after_a_partial_write_commits_nothing_and_ends_the_output_with_error_detail_hint() {
    let db = TestDb::new();
    let jobs = "[jobs.half]\nsql = \"\"\"\nCREATE TABLE public.half (x int);\n\
        INSERT INTO public.half VALUES (1);\n\
        DO $$ BEGIN RAISE NOTICE 'wrote one'; \
        RAISE EXCEPTION 'boom' USING DETAIL = 'the detail', HINT = 'the hint'; END $$;\n\"\"\"\n\
        interval = \"01:00:00\"\n";
    let run = run_once(&db, jobs, &["half"]);
    assert_eq!(run.code, 1, "a failed run decides --once's exit code");
    let done = runs(&db, "half");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, "failed");
    assert_eq!(
        done[0].output,
        "NOTICE: wrote one\nERROR: boom\nDETAIL: the detail\nHINT: the hint"
    );
    assert_eq!(
        db.value("SELECT to_regclass('public.half') IS NULL"),
        "t",
        "nothing of a failed run is committed"
    );
    assert!(run.stderr.contains("Job half failed in "), "{}", run.stderr);
    assert!(run.stderr.contains("(failed)"), "{}", run.stderr);
}

#[test]
fn a_statement_past_the_timeout_is_cancelled_and_the_run_timed_out() {
    let db = TestDb::new();
    let jobs = "[jobs.slow]\nsql = \"CREATE TABLE public.slow (x int); SELECT pg_sleep(30)\"\n\
        timeout = \"00:01\"\ninterval = \"01:00:00\"\n";
    let started = std::time::Instant::now();
    run_once(&db, jobs, &["slow"]);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the timeout stopped it"
    );
    let done = runs(&db, "slow");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, "timed_out");
    assert_eq!(done[0].output, "Timeout of 1 seconds expired.");
    assert_eq!(db.value("SELECT to_regclass('public.slow') IS NULL"), "t");
}

#[test]
fn should_run_skips_an_sql_job_and_trigger_next_follows_one() {
    let db = TestDb::new();
    let jobs = "[jobs.quiet]\nsql = \"CREATE TABLE public.quiet (x int)\"\n\
        should_run = \"SELECT false\"\ninterval = \"01:00:00\"\n\
        [jobs.first]\nsql = \"DO $$ BEGIN RAISE NOTICE 'first'; END $$\"\n\
        trigger_next = [\"second\"]\ninterval = \"01:00:00\"\n\
        [jobs.second]\ncommand = \"echo second\"\n";
    let run = run_once(&db, jobs, &["quiet", "first"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(runs(&db, "quiet").is_empty(), "a skip is not a run");
    assert_eq!(
        db.value("SELECT last_skip IS NOT NULL FROM manage.jobs WHERE name = 'quiet'"),
        "t"
    );
    assert_eq!(db.value("SELECT to_regclass('public.quiet') IS NULL"), "t");
    let first = runs(&db, "first");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].output, "NOTICE: first\n");
    let second = runs(&db, "second");
    assert_eq!(second.len(), 1, "trigger_next ran the next job");
    assert_eq!(second[0].output, "second\n");
}

#[test]
fn manage_name_runs_an_sql_job_in_the_foreground() {
    let db = TestDb::new();
    let config = "[jobs.hello]\nsql = \"DO $$ BEGIN RAISE NOTICE 'hello'; END $$\"\n\
        [jobs.broken]\nsql = \"CREATE TABLE public.broken (x int); SELECT 1/0\"\n";
    db.manage().config(config).arg("migrate").ok();
    let hello = db.manage().config(config).arg("hello").run();
    assert_eq!(hello.code, 0, "{}", hello.stderr);
    assert_eq!(hello.stdout, "NOTICE: hello\n");
    let broken = db.manage().config(config).arg("broken").run();
    assert_eq!(broken.code, 1);
    assert!(
        broken.stderr.contains("ERROR: division by zero"),
        "{}",
        broken.stderr
    );
    assert_eq!(db.value("SELECT to_regclass('public.broken') IS NULL"), "t");
    assert!(
        runs(&db, "hello").is_empty(),
        "a one-off run has no history row"
    );
}

#[test]
fn a_job_needs_exactly_one_of_command_and_sql() {
    let db = TestDb::new();
    db.manage()
        .config("[jobs.both]\ncommand = \"true\"\nsql = \"SELECT 1\"\n")
        .arg("migrate")
        .run()
        .assert_bad_input(&["jobs.both", "command", "sql"]);
    db.manage()
        .config("[jobs.neither]\ninterval = \"01:00\"\n")
        .arg("migrate")
        .run()
        .assert_bad_input(&["jobs.neither.command", "sql"]);
    db.manage()
        .config("[jobs.blank]\nsql = \" \"\n")
        .arg("migrate")
        .run()
        .assert_bad_input(&["jobs.blank.sql", "empty"]);
    assert_eq!(db.value("SELECT count(*) FROM manage.jobs"), "0");
}

#[test]
fn a_running_sql_job_names_its_connection_after_the_job() {
    let db = TestDb::new();
    let config =
        format!("{RUNNER}[jobs.sleepy]\nsql = \"SELECT pg_sleep(3)\"\ninterval = \"01:00:00\"\n");
    db.manage().config(&config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'sleepy'")
        .unwrap();
    let runner = db
        .manage()
        .config(&config)
        .arg("scheduled_jobs_runner")
        .spawn();
    wait_for(Duration::from_secs(10), "the job's backend", || {
        db.value(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'manage job sleepy' AND query LIKE '%pg_sleep%'",
            db.name
        )) == "1"
    });
    wait_for(Duration::from_secs(15), "the run to end", || {
        runs(&db, "sleepy").iter().any(|r| r.state == "succeeded")
    });
    runner.stop();
}

/// A runner with `config`, on a database with `job` due now; waits until the
/// job's statement runs.
fn runner_in_statement(db: &TestDb, config: &str, job: &str) -> crate::harness::Background {
    db.manage().config(config).arg("migrate").ok();
    db.client()
        .batch_execute(&format!(
            "UPDATE manage.jobs SET next_run = now() WHERE name = '{job}'"
        ))
        .unwrap();
    let runner = db
        .manage()
        .config(config)
        .arg("scheduled_jobs_runner")
        .spawn();
    wait_for(Duration::from_secs(10), "the job's statement", || {
        backends(db, job) == "1"
    });
    runner
}

fn backends(db: &TestDb, job: &str) -> String {
    db.value(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
         AND application_name = 'manage job {job}' AND query LIKE '%pg_sleep%'",
        db.name
    ))
}

#[test]
fn a_runner_killed_mid_statement_leaves_nothing_committed_and_the_run_interrupted() {
    let db = TestDb::new();
    let config = format!(
        "{RUNNER}[jobs.long]\nsql = \"CREATE TABLE public.long (x int); SELECT pg_sleep(60)\"\n\
         interval = \"01:00:00\"\n"
    );
    let mut runner = runner_in_statement(&db, &config, "long");
    runner.signal(libc::SIGKILL);
    runner.wait_exit(Duration::from_secs(5));
    wait_for(
        Duration::from_secs(10),
        "the backend to notice its client is gone",
        || backends(&db, "long") == "0",
    );
    assert_eq!(db.value("SELECT to_regclass('public.long') IS NULL"), "t");
    let second = db
        .manage()
        .config(&config)
        .arg("scheduled_jobs_runner")
        .spawn();
    wait_for(
        Duration::from_secs(15),
        "the run recorded interrupted",
        || runs(&db, "long").iter().any(|r| r.state == "interrupted"),
    );
    second.stop();
    assert_eq!(db.value("SELECT to_regclass('public.long') IS NULL"), "t");
}

#[test]
fn shutdown_cancels_an_sql_job_past_the_grace_and_records_it_interrupted() {
    let db = TestDb::new();
    let config = "[runner]\nshutdown_grace = \"00:01\"\n\
        [jobs.long]\nsql = \"CREATE TABLE public.long (x int); SELECT pg_sleep(60)\"\n\
        interval = \"01:00:00\"\n";
    let runner = runner_in_statement(&db, config, "long");
    let started = std::time::Instant::now();
    runner.stop();
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "the statement was cancelled, not waited for"
    );
    let done = runs(&db, "long");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, "interrupted");
    assert!(
        done[0]
            .output
            .contains("Interrupted: the runner was shut down"),
        "{}",
        done[0].output
    );
    assert_eq!(db.value("SELECT to_regclass('public.long') IS NULL"), "t");
}

#[test]
fn an_sql_job_on_a_kept_connection_sees_nothing_the_previous_run_left_in_the_session() {
    let db = TestDb::new();
    // One worker: `clean` runs after `dirty` (its trigger_next), on the SQL
    // connection `dirty` used, which is kept between runs.
    // (run_once puts these lines under its own [runner] table.)
    let jobs = "max_parallel = 1\n\
        [jobs.dirty]\nsql = \"\"\"\nSET work_mem = '7MB';\nCREATE TEMP TABLE left_behind (x int);\n\
        PREPARE left_plan AS SELECT 1;\nSELECT pg_advisory_lock(4242);\n\"\"\"\n\
        interval = \"01:00:00\"\ntrigger_next = [\"clean\"]\n\
        [jobs.clean]\nsql = \"\"\"\nDO $$ BEGIN \
        RAISE NOTICE 'work_mem %', current_setting('work_mem'); \
        RAISE NOTICE 'temp %', (SELECT count(*) FROM pg_class WHERE relname = 'left_behind'); \
        RAISE NOTICE 'prepared %', (SELECT count(*) FROM pg_prepared_statements); \
        RAISE NOTICE 'locks %', (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242); \
        RAISE NOTICE 'app %', current_setting('application_name'); END $$;\n\"\"\"\n";
    let run = run_once(&db, jobs, &["dirty"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(runs(&db, "dirty")[0].state, "succeeded");
    let clean = runs(&db, "clean");
    assert_eq!(clean.len(), 1, "{}", run.stderr);
    assert_eq!(
        clean[0].output,
        "NOTICE: work_mem 4MB\nNOTICE: temp 0\nNOTICE: prepared 0\nNOTICE: locks 0\nNOTICE: app manage job clean\n"
    );
}
