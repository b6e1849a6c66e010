//! Job flow (§21): `jobs run-now NAME -- ARG…` gives one run arguments (and
//! `manage.trigger_job(name, delay, args)` from SQL), `run-now --at` adds an
//! extra run at an instant (`--cancel-at` removes one), and `jobs hold
//! --until` ends by itself as `release --pending reschedule` does.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::harness::{example_app, runs, wait_for, TestDb};

const JOBS: &str = r#"
timezone = "UTC"

[jobs.echo]
command = 'printf "[%s]\n" "$@"; echo "one=$1 two=$2 count=$#"'

[jobs.lookup]
sql = "SELECT 1"

[jobs.hourly]
command = "true"
interval = "01:00:00"
"#;

/// An argument with spaces, quotes and a `;`: spliced into a shell string it
/// would run `echo INJECTED`.
const TRICKY: &str = r#"it's "quoted"; echo INJECTED"#;

/// Every job's next run, as one text.
const NEXT_RUNS: &str = "SELECT string_agg(name || '=' || coalesce(next_run::text, '-') \
     || coalesce(requested_run::text, '-'), ',' ORDER BY name) FROM manage.jobs";

fn instant(value: &serde_json::Value) -> DateTime<Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A job object's `extra_runs`, as instants.
fn extra_runs(job: &serde_json::Value) -> Vec<DateTime<Utc>> {
    job["extra_runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no extra_runs in {job}"))
        .iter()
        .map(instant)
        .collect()
}

fn show(db: &TestDb, name: &str) -> serde_json::Value {
    db.job_json(JOBS, name)
}

/// The runner, once: it runs what is due, and succeeds.
fn run_once(db: &TestDb) -> crate::harness::Run {
    let run = db
        .manage()
        .config(JOBS)
        .args(["scheduled_jobs_runner", "--once", "--no-migrate"])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    run
}

/// `count` runners in the background.
fn start_runners(db: &TestDb, count: usize) -> Vec<crate::harness::Background> {
    (0..count)
        .map(|_| {
            db.manage()
                .config(JOBS)
                .args(["scheduled_jobs_runner", "--no-migrate"])
                .spawn()
        })
        .collect()
}

fn audit_details(db: &TestDb, action: &str) -> Vec<String> {
    db.query_strings(&format!(
        "SELECT details FROM manage.audit WHERE action = '{action}' ORDER BY id"
    ))
    .into_iter()
    .map(|row| row.join(""))
    .collect()
}

#[test]
fn run_now_arguments_reach_a_declared_shell_job_as_its_positional_parameters() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--", "hello world", TRICKY])
        .ok();
    let run = run_once(&db);
    let echoed = runs(&db.url, "echo");
    assert_eq!(echoed.len(), 1, "{}", run.stderr);
    assert_eq!(echoed[0].state, "succeeded");
    assert_eq!(
        echoed[0].output,
        format!("[hello world]\n[{TRICKY}]\none=hello world two={TRICKY} count=2\n")
    );
    // Recorded with the run: history, output, and the audit.
    let history = db
        .manage()
        .config(JOBS)
        .args(["jobs", "history", "echo", "--json"])
        .json();
    assert_eq!(
        history[0]["args"],
        serde_json::json!(["hello world", TRICKY])
    );
    let id = echoed[0].id.to_string();
    let output = db
        .manage()
        .config(JOBS)
        .args(["jobs", "output", &id, "--json"])
        .json();
    assert_eq!(output["args"], serde_json::json!(["hello world", TRICKY]));
    let text = db.manage().config(JOBS).args(["jobs", "output", &id]).ok();
    assert_eq!(
        text.stdout.lines().next(),
        Some(r#"Arguments: "hello world" "it's \"quoted\"; echo INJECTED""#)
    );
    assert_eq!(
        audit_details(&db, "run-now"),
        vec![format!(
            "run requested now with args: [\"hello world\", {TRICKY:?}]"
        )]
    );
    // A run without arguments has an empty array.
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo"])
        .ok();
    run_once(&db);
    let history = db
        .manage()
        .config(JOBS)
        .args(["jobs", "history", "echo", "--json"])
        .json();
    assert_eq!(history[0]["args"], serde_json::json!([]));
    assert_eq!(runs(&db.url, "echo")[1].output, "[]\none= two= count=0\n");
}

#[test]
fn run_now_arguments_reach_a_built_in_job_as_manage_name_args() {
    let db = TestDb::new();
    let app = || db.manage().program(example_app());
    app().arg("migrate").ok();
    app()
        .args(["jobs", "run-now", "greet", "--", "one", "two words"])
        .ok();
    let run = app()
        .args(["scheduled_jobs_runner", "--once", "--no-migrate"])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let greeted = runs(&db.url, "greet");
    assert_eq!(greeted.len(), 1, "{}", run.stderr);
    assert_eq!(
        greeted[0].output,
        format!(
            "hello from run {}\nargument: one\nargument: two words\n",
            greeted[0].id
        )
    );
    // By hand, the same arguments.
    let by_hand = app().args(["greet", "one", "two words"]).ok();
    assert_eq!(
        by_hand.stdout,
        "hello, by hand\nargument: one\nargument: two words\n"
    );
}

#[test]
fn arguments_are_refused_for_internal_and_sql_jobs() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    let before = db.value(NEXT_RUNS);
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "purge_job_history", "--", "x"])
        .run()
        .assert_bad_input(&["purge_job_history", "internal job and takes no arguments"]);
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "lookup", "--wait", "--", "x"])
        .run()
        .assert_bad_input(&["lookup", "SQL job and takes no arguments"]);
    // Nothing changed.
    assert_eq!(db.value("SELECT count(*) FROM manage.extra_runs"), "0");
    assert!(audit_details(&db, "run-now").is_empty());
    assert_eq!(db.value(NEXT_RUNS), before);
    // From SQL: an exception.
    let error = db
        .client()
        .batch_execute("SELECT manage.trigger_job('lookup', interval '0', ARRAY['x'])")
        .unwrap_err();
    let message = error.as_db_error().unwrap().message().to_string();
    assert_eq!(
        message,
        "manage.trigger_job: job \"lookup\" takes no arguments (it is an SQL job)"
    );
}

#[test]
fn trigger_job_from_sql_passes_arguments_to_the_run() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db.client()
        .batch_execute("SELECT manage.trigger_job('echo', interval '0', ARRAY['a', 'b c'])")
        .unwrap();
    // The two-argument form still works, and an empty array means none.
    db.client()
        .batch_execute("SELECT manage.trigger_job('hourly', interval '0', ARRAY[]::text[])")
        .unwrap();
    let run = run_once(&db);
    let echoed = runs(&db.url, "echo");
    assert_eq!(echoed.len(), 1, "{}", run.stderr);
    assert_eq!(echoed[0].output, "[a]\n[b c]\none=a two=b c count=2\n");
    assert_eq!(runs(&db.url, "hourly").len(), 1);
    assert_eq!(
        db.value("SELECT args::text FROM manage.runs WHERE job = 'echo'"),
        r#"{a,"b c"}"#
    );
}

#[test]
fn extra_runs_at_two_instants_each_run_once_with_two_runners() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    let runners = start_runners(&db, 2);
    let now = Utc::now();
    let first =
        (now + chrono::Duration::seconds(3)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let second =
        (now + chrono::Duration::seconds(5)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let added = db
        .manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--at", &second, "--", "late"])
        .ok();
    assert!(
        added.stdout.contains("will run once more at"),
        "{}",
        added.stdout
    );
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--at", &first])
        .ok();
    let job = show(&db, "echo");
    let listed = extra_runs(&job);
    assert_eq!(
        listed,
        vec![
            instant(&first.clone().into()),
            instant(&second.clone().into())
        ]
    );
    assert_eq!(instant(&job["next_run"]), listed[0]);
    let text = db.manage().config(JOBS).args(["jobs", "show", "echo"]).ok();
    assert_eq!(
        text.stdout
            .lines()
            .filter(|l| l.starts_with("Extra run at:"))
            .count(),
        2,
        "{}",
        text.stdout
    );
    wait_for(Duration::from_secs(20), "both extra runs", || {
        runs(&db.url, "echo").len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let ran = runs(&db.url, "echo");
    assert_eq!(ran.len(), 2, "each extra run runs exactly once");
    // Each at its instant (not before), the second with its arguments.
    assert!(ran[0].started_at >= listed[0], "{:?}", ran[0].started_at);
    assert!(ran[1].started_at >= listed[1], "{:?}", ran[1].started_at);
    assert_eq!(ran[0].output, "[]\none= two= count=0\n");
    assert_eq!(ran[1].output, "[late]\none=late two= count=1\n");
    let job = show(&db, "echo");
    assert_eq!(job["extra_runs"], serde_json::json!([]));
    assert!(job["next_run"].is_null(), "{job}");
    for runner in runners {
        runner.stop();
    }
}

#[test]
fn cancel_at_removes_one_extra_run_and_refuses_an_instant_without_one() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    let later = |secs| {
        (Utc::now() + chrono::Duration::seconds(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let (first, second) = (later(3600), later(7200));
    for at in [&first, &second] {
        db.manage()
            .config(JOBS)
            .args(["jobs", "run-now", "echo", "--at", at])
            .ok();
    }
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--at", &first])
        .run()
        .assert_bad_input(&["already has an extra run at"]);
    let cancelled = db
        .manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--cancel-at", &first])
        .ok();
    assert!(
        cancelled
            .stdout
            .starts_with("Cancelled the extra run of job echo at "),
        "{}",
        cancelled.stdout
    );
    let job = show(&db, "echo");
    let listed = extra_runs(&job);
    assert_eq!(listed, vec![instant(&second.clone().into())]);
    assert_eq!(instant(&job["next_run"]), listed[0]);
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--cancel-at", &first])
        .run()
        .assert_bad_input(&["has no extra run at", "echo"]);
    // An instant that has passed is refused, not run.
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--at", "2020-01-01T00:00:00Z"])
        .run()
        .assert_bad_input(&["--at 2020-01-01T00:00:00.000+00:00 has passed"]);
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--at", "tomorrow"])
        .run()
        .assert_bad_input(&["\"tomorrow\" is not an RFC 3339 instant"]);
    assert_eq!(audit_details(&db, "cancel-at").len(), 1);
    assert_eq!(audit_details(&db, "run-now").len(), 2);
}

#[test]
fn hold_until_ends_by_itself_and_reschedules_what_became_due() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    // Two runners: the hold is released once, by one of them.
    let runners = start_runners(&db, 2);
    let held = db
        .manage()
        .config(JOBS)
        .args(["jobs", "hold", "--until", "00:04"])
        .ok();
    assert!(
        held.stdout.starts_with("All jobs are held until "),
        "{}",
        held.stdout
    );
    let status = db
        .manage()
        .config(JOBS)
        .args(["jobs", "status", "--json"])
        .run();
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["held"], true);
    let until = instant(&status["held_until"]);
    let from_now = until - Utc::now();
    assert!(
        from_now > chrono::Duration::seconds(2) && from_now <= chrono::Duration::seconds(4),
        "{until}"
    );
    let text = db.manage().config(JOBS).args(["jobs", "status"]).run();
    assert!(text.stdout.contains(", until "), "{}", text.stdout);
    // Due during the hold: a slot, a run-now, and a run-now with arguments.
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'hourly'")
        .unwrap();
    db.manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--", "x"])
        .ok();
    wait_for(Duration::from_secs(15), "the hold to end", || {
        db.value("SELECT held FROM manage.hold") == "f"
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        runs(&db.url, "hourly").is_empty(),
        "caught up after the hold"
    );
    assert!(runs(&db.url, "echo").is_empty(), "a pending request ran");
    let hourly = show(&db, "hourly");
    let next = instant(&hourly["next_run"]);
    assert!(next > Utc::now() + chrono::Duration::minutes(59), "{next}");
    let status: serde_json::Value = serde_json::from_str(
        &db.manage()
            .config(JOBS)
            .args(["jobs", "status", "--json"])
            .run()
            .stdout,
    )
    .unwrap();
    assert_eq!(status["held"], false);
    assert!(status["held_until"].is_null());
    let releases = db.query_strings(
        "SELECT actor, details FROM manage.audit WHERE action = 'release' ORDER BY id",
    );
    assert_eq!(releases.len(), 1, "released once");
    assert!(releases[0][0].starts_with("runner:"), "{releases:?}");
    assert!(
        releases[0][1].starts_with("held: true → false, pending: reschedule, rescheduled: "),
        "{releases:?}"
    );
    let holds = audit_details(&db, "hold");
    assert_eq!(holds.len(), 1);
    assert!(
        holds[0].starts_with("held: false → true, held_until: none → "),
        "{holds:?}"
    );
    for runner in runners {
        runner.stop();
    }
}

#[test]
fn hold_until_refuses_a_passed_instant_and_a_bad_value_and_changes_nothing() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db.manage()
        .config(JOBS)
        .args(["jobs", "hold", "--until", "2020-01-01T00:00:00Z"])
        .run()
        .assert_bad_input(&["--until 2020-01-01T00:00:00.000+00:00 has passed"]);
    db.manage()
        .config(JOBS)
        .args(["jobs", "hold", "--until", "soon"])
        .run()
        .assert_bad_input(&["\"soon\"", "neither an RFC 3339 instant nor a duration"]);
    db.manage()
        .config(JOBS)
        .args(["jobs", "hold", "--until", "00:00"])
        .run()
        .assert_bad_input(&["00:00"]);
    assert_eq!(db.value("SELECT held FROM manage.hold"), "f");
    assert!(audit_details(&db, "hold").is_empty());
    // A plain hold after one with an end removes the end.
    db.manage()
        .config(JOBS)
        .args(["jobs", "hold", "--until", "01:00:00"])
        .ok();
    let plain = db.manage().config(JOBS).args(["jobs", "hold"]).ok();
    assert!(
        plain.stdout.contains("The hold no longer ends by itself"),
        "{}",
        plain.stdout
    );
    assert_eq!(db.value("SELECT held_until IS NULL FROM manage.hold"), "t");
}

#[test]
fn run_now_wait_with_arguments_prints_that_runs_output() {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    let runner = start_runners(&db, 1).remove(0);
    wait_for(Duration::from_secs(15), "the runner to connect", || {
        db.value("SELECT count(*) FROM manage.runners WHERE stopped_at IS NULL") == "1"
    });
    let waited = db
        .manage()
        .config(JOBS)
        .args(["jobs", "run-now", "echo", "--wait", "--", "a", "b c"])
        .run();
    assert_eq!(waited.code, 0, "{}", waited.stderr);
    assert!(
        waited
            .stdout
            .ends_with("[a]\n[b c]\none=a two=b c count=2\n"),
        "{}",
        waited.stdout
    );
    runner.stop();
}
