//! SQL jobs (§12) through the real runner: notices as the output, an error
//! that rolls everything back and says why, a statement timeout, should_run,
//! trigger_next, and `manage NAME` in the foreground.

use std::time::Duration;

use crate::harness::{wait_for, RunRecord, TestDb};

const RUNNER: &str =
    "[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n";

/// Migrate `jobs`, make `due` due now, and run the runner once.
fn run_once(db: &TestDb, jobs: &str, due: &[&str]) -> crate::harness::Run {
    db.run_once(&format!("{RUNNER}{jobs}"), due)
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

#[test]
fn a_job_that_switches_its_statement_timeout_off_is_still_timed_out_by_the_runner() {
    let db = TestDb::new();
    let jobs = "[jobs.sneaky]\nsql = \"SET statement_timeout = 0; SELECT pg_sleep(20)\"\n\
        timeout = \"00:02\"\ninterval = \"01:00:00\"\n";
    let started = std::time::Instant::now();
    let run = run_once(&db, jobs, &["sneaky"]);
    let done = runs(&db, "sneaky");
    assert_eq!(done.len(), 1, "{}", run.stderr);
    assert_eq!(done[0].state, "timed_out", "{}", run.stderr);
    assert_eq!(done[0].output, "Timeout of 2 seconds expired.");
    let took = (done[0].finished_at.unwrap() - done[0].started_at)
        .to_std()
        .unwrap();
    assert!(
        took < Duration::from_secs(2 + 6),
        "recorded {took:?} after it started"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{}",
        run.stderr
    );
}

#[test]
fn a_statement_that_ignores_its_cancel_has_its_connection_closed_5_s_later() {
    let db = TestDb::new();
    // PL/pgSQL may catch the cancel (query_canceled) and go on: only
    // closing the connection ends it. (Without the server's own timeout, the
    // runner's cancel is the only one: a second one landing in the handler
    // would not be caught.)
    let jobs = "[jobs.stubborn]\nsql = \"\"\"\n\
        SET statement_timeout = 0;\n\
        DO $$ BEGIN LOOP BEGIN PERFORM pg_sleep(30); \
        EXCEPTION WHEN query_canceled THEN RAISE NOTICE 'ignored the cancel'; END; END LOOP; END $$\n\
        \"\"\"\ntimeout = \"00:01\"\ninterval = \"01:00:00\"\n";
    let run = run_once(&db, jobs, &["stubborn"]);
    let done = runs(&db, "stubborn");
    assert_eq!(done.len(), 1, "{}", run.stderr);
    assert_eq!(done[0].state, "timed_out", "{}", run.stderr);
    // Cancelled more than once (the server's statement_timeout too), the
    // statement went on each time; what it wrote so far is the output.
    let output = &done[0].output;
    let (notices, end) = output
        .split_once("The statement")
        .unwrap_or_else(|| panic!("{output}"));
    assert!(
        notices.starts_with("NOTICE: ignored the cancel\n"),
        "{output}"
    );
    assert!(
        notices.lines().all(|l| l == "NOTICE: ignored the cancel"),
        "{output}"
    );
    assert_eq!(
        end,
        " had not ended 5s after its cancel; its connection was closed.\n\
         Timeout of 1 seconds expired."
    );
    let took = (done[0].finished_at.unwrap() - done[0].started_at)
        .to_std()
        .unwrap();
    assert!(
        took < Duration::from_secs(1 + 6),
        "recorded {took:?} after it started"
    );
    wait_for(Duration::from_secs(10), "its backend gone", || {
        db.value(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'manage job stubborn'",
        ) == "0"
    });
}

#[test]
fn a_transaction_control_statement_in_an_sql_job_is_a_configuration_error() {
    for (sql, statement) in [
        (
            "INSERT INTO t VALUES (10); COMMIT; INSERT INTO t VALUES (11)",
            "COMMIT",
        ),
        ("begin; SELECT 1", "BEGIN"),
        ("SELECT 1; Start Transaction", "START TRANSACTION"),
        ("SELECT 1; savepoint a", "SAVEPOINT"),
        ("SELECT 1; ROLLBACK", "ROLLBACK"),
        ("SELECT 1; end", "END"),
        ("SELECT 1; prepare transaction 'x'", "PREPARE TRANSACTION"),
    ] {
        let db = TestDb::new();
        let toml = format!("[jobs.steps]\nsql = \"{sql}\"\ninterval = \"01:00:00\"\n");
        let run = db.manage().config(&toml).arg("migrate").run();
        run.assert_bad_input(&[
            ".toml",
            "jobs.steps.sql",
            &format!("{statement} is a transaction-control statement"),
            "sql_autocommit = true",
        ]);
        assert_eq!(db.value("SELECT count(*) FROM manage.jobs"), "0");
    }
    // Inside quotes, dollar quotes and comments it is text, not a statement.
    let db = TestDb::new();
    let toml = "[jobs.fine]\nsql = \"\"\"\nSELECT 'COMMIT'; -- COMMIT\n\
        DO $$ BEGIN RAISE NOTICE 'x'; END $$; /* ROLLBACK; */ SELECT \\\"end\\\" FROM (SELECT 1 AS \\\"end\\\") e\n\
        \"\"\"\ninterval = \"01:00:00\"\n";
    let run = db.manage().config(toml).arg("migrate").run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    // sql_autocommit is an SQL job's key.
    let db = TestDb::new();
    db.manage()
        .config("[jobs.sh]\ncommand = \"true\"\nsql_autocommit = true\n")
        .arg("migrate")
        .run()
        .assert_bad_input(&["jobs.sh.sql_autocommit", "sql only"]);
}

#[test]
fn a_failed_run_commits_nothing_and_with_sql_autocommit_its_committed_steps_stay() {
    let db = TestDb::new();
    db.client()
        .batch_execute(
            "CREATE TABLE public.steps (x int); \
             CREATE PROCEDURE public.in_batches() LANGUAGE plpgsql AS $$ \
             BEGIN INSERT INTO public.steps VALUES (1); COMMIT; INSERT INTO public.steps VALUES (2); COMMIT; END $$",
        )
        .unwrap();
    let jobs = "[jobs.batches]\nsql = \"CALL public.in_batches()\"\nsql_autocommit = true\ninterval = \"01:00:00\"\n\
        [jobs.steps]\nsql = \"INSERT INTO public.steps VALUES (10); COMMIT; INSERT INTO public.steps VALUES (11); SELECT 1/0\"\n\
        sql_autocommit = true\ninterval = \"01:00:00\"\n\
        [jobs.plain]\nsql = \"SELECT 1\"\n";
    let run = run_once(&db, jobs, &["batches", "steps"]);
    assert_eq!(runs(&db, "batches")[0].state, "succeeded", "{}", run.stderr);
    let steps = runs(&db, "steps");
    assert_eq!(steps[0].state, "failed", "{}", run.stderr);
    assert_eq!(
        steps[0].output,
        "WARNING: there is no transaction in progress\nERROR: division by zero"
    );
    assert_eq!(
        db.value("SELECT string_agg(x::text, ',' ORDER BY x) FROM public.steps"),
        "1,2,10,11",
        "each statement of an sql_autocommit job commits as it ends"
    );
    let show = db.manage().args(["jobs", "show", "steps"]).ok();
    assert!(show.stdout.contains("Transaction:"), "{}", show.stdout);
    assert!(
        show.stdout
            .lines()
            .any(|l| l.starts_with("Transaction") && l.ends_with("none (sql_autocommit)")),
        "{}",
        show.stdout
    );
    let show = db.manage().args(["jobs", "show", "plain"]).ok();
    assert!(
        show.stdout.lines().any(|l| l.starts_with("Transaction")
            && l.ends_with("one per run (nothing of a failed run is committed)")),
        "{}",
        show.stdout
    );
}
