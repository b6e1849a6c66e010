//! The operator's controls and health: `jobs configure`, `run-now` (and
//! `manage.trigger_job` from SQL), `reset-failure`, `hold`/`release`,
//! `jobs history`, `jobs output` and `jobs status` — their effect on the
//! database, what they print, the NOTIFYs that wake the runners, and the
//! bad-input catalogue (exit 2, one `error:` line, nothing changed).

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, Utc};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use serde_json::{json, Value};

use crate::harness::{Manage, Run, TestDb};

/// UTC keeps the arithmetic of "the next slot" readable; the time-zone rules
/// themselves are tested in read_commands.rs.
const JOBS: &str = "timezone = \"UTC\"\n\
[jobs.poll]\ncommand = \"true\"\ndescription = \"Poll the bank\"\ninterval = \"01:00:00\"\napp = \"invoices\"\n\
[jobs.nightly]\ncommand = \"true\"\ndescription = \"Nightly report\"\ntimes = [\"02:30\", \"14:30\"]\n\
[jobs.later]\ncommand = \"true\"\ndescription = \"Not due yet\"\ninterval = \"00:30:00\"\n\
[jobs.by_hand]\ncommand = \"true\"\ndescription = \"Rebuild the search index\"\napp = \"search\"\n";

const CHANNEL: &str = "manage_scheduled_jobs";

fn setup() -> TestDb {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    db
}

fn manage(db: &TestDb) -> Manage {
    db.manage().config(JOBS)
}

fn jobs(db: &TestDb, args: &[&str]) -> Run {
    manage(db).arg("jobs").args(args).run()
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

fn instant(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a time: {value}")),
    )
    .unwrap()
    .to_utc()
}

fn next_run(db: &TestDb, name: &str) -> Option<DateTime<Utc>> {
    db.client()
        .query_one("SELECT next_run FROM manage.jobs WHERE name = $1", &[&name])
        .unwrap()
        .get(0)
}

/// `actual` is within `slack` seconds of `expected`.
fn assert_near(actual: DateTime<Utc>, expected: DateTime<Utc>, slack: i64, what: &str) {
    let off = (actual - expected).num_milliseconds().abs();
    assert!(
        off <= slack * 1000,
        "{what}: {actual} is {off} ms away from {expected}"
    );
}

/// The first of the daily UTC `times` strictly after `now`.
fn next_slot(times: &[&str], now: DateTime<Utc>) -> DateTime<Utc> {
    let mut candidates: Vec<DateTime<Utc>> = Vec::new();
    for day in 0..2 {
        let date = now.date_naive() + chrono::Duration::days(day);
        for t in times {
            let t = NaiveTime::parse_from_str(t, "%H:%M:%S").unwrap();
            candidates.push(date.and_time(t).and_utc());
        }
    }
    candidates.sort();
    candidates.into_iter().find(|c| *c > now).unwrap()
}

/// Everything a command could change: the jobs, the run count, the hold.
fn state(db: &TestDb) -> (String, String, String) {
    (
        db.value("SELECT json_agg(j ORDER BY name)::text FROM manage.jobs j"),
        db.value("SELECT count(*) FROM manage.runs"),
        db.value("SELECT row_to_json(h)::text FROM manage.hold h"),
    )
}

fn insert_run(
    client: &mut Client,
    job: &str,
    state: &str,
    started_at: DateTime<Utc>,
    output: &str,
) -> i64 {
    let finished_at =
        (state != "running").then(|| started_at + chrono::Duration::milliseconds(1234));
    crate::harness::insert_run(client, job, state, started_at, finished_at, output)
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// Register a runner as the runner does: a row, and the advisory lock
/// (class, id) held by a session that stays open as long as the client lives.
fn connect_runner(db: &TestDb, host: &str, pid: i32) -> Client {
    let mut client = db.client();
    let id: i64 = client
        .query_one(
            "INSERT INTO manage.runners (host, pid) VALUES ($1, $2) RETURNING id",
            &[&host, &pid],
        )
        .unwrap()
        .get(0);
    client
        .execute(
            "SELECT pg_advisory_lock($1, $2::bigint::int)",
            &[&manage::store::RUNNER_LOCK_CLASS, &id],
        )
        .unwrap();
    client
}

fn listener(db: &TestDb) -> Client {
    let mut client = db.client();
    client.batch_execute(&format!("LISTEN {CHANNEL}")).unwrap();
    client
}

/// The next notification on the channel within `secs`, if any.
fn notification(client: &mut Client, secs: u64) -> Option<postgres::Notification> {
    client
        .notifications()
        .timeout_iter(Duration::from_secs(secs))
        .next()
        .unwrap()
}

fn status_json(db: &TestDb) -> (i32, Value) {
    let run = jobs(db, &["status", "--json"]);
    let value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status is not JSON ({e}):\n{}\n{}", run.stdout, run.stderr));
    (run.code, value)
}

// ---------------------------------------------------------------- configure

#[test]
fn configure_disabling_clears_next_run_and_enabling_schedules_afresh() {
    let db = setup();
    let run = jobs(&db, &["configure", "poll", "--enabled", "false"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("Next run:           none (disabled)"),
        "{}",
        run.stdout
    );
    let job = show(&db, "poll");
    assert_eq!(job["enabled"], false);
    assert_eq!(job["next_run"], Value::Null);
    assert_eq!(
        db.value("SELECT next_run IS NULL FROM manage.jobs WHERE name = 'poll'"),
        "t"
    );

    // Enabling computes the next run anew: an interval job that never ran
    // runs one interval from now.
    let before = db_now(&db);
    jobs(&db, &["configure", "poll", "--enabled", "true"]);
    let job = show(&db, "poll");
    assert_eq!(job["enabled"], true);
    assert_near(
        instant(&job["next_run"]),
        before + chrono::Duration::hours(1),
        5,
        "next run after enabling an interval job",
    );

    jobs(&db, &["configure", "nightly", "--enabled", "false"]);
    assert_eq!(show(&db, "nightly")["next_run"], Value::Null);
    let before = db_now(&db);
    jobs(&db, &["configure", "nightly", "--enabled", "true"]);
    assert_eq!(
        instant(&show(&db, "nightly")["next_run"]),
        next_slot(&["02:30:00", "14:30:00"], before),
        "a times job is scheduled at its next slot"
    );
}

#[test]
fn configure_override_times_are_sorted_deduplicated_and_replace_the_schedule() {
    let db = setup();
    let before = db_now(&db);
    let run = manage(&db)
        .args([
            "jobs",
            "configure",
            "poll",
            "--override-times",
            "04:00,01:30,04:00",
        ])
        .ok();
    let job = show(&db, "poll");
    assert_eq!(job["override_times"], json!(["01:30:00", "04:00:00"]));
    assert_eq!(job["override_interval"], Value::Null);
    assert_eq!(
        job["builtin_interval"], "01:00:00",
        "the built-in schedule is kept"
    );
    assert_eq!(
        db.value("SELECT override_times::text FROM manage.jobs WHERE name = 'poll'"),
        "{01:30:00,04:00:00}"
    );
    let next = instant(&job["next_run"]);
    assert_eq!(next, next_slot(&["01:30:00", "04:00:00"], before));
    assert!(
        run.stdout
            .contains("Effective schedule: 01:30:00, 04:00:00 (override)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!(
            "Next run:           {}",
            next.format("%Y-%m-%d %H:%M:%S UTC")
        )),
        "{}",
        run.stdout
    );
}

#[test]
fn configure_override_interval_replaces_the_schedule_and_clear_override_restores_it() {
    let db = setup();
    let before = db_now(&db);
    let run = manage(&db)
        .args([
            "jobs",
            "configure",
            "nightly",
            "--override-interval",
            "10:00",
        ])
        .ok();
    let job = show(&db, "nightly");
    assert_eq!(job["override_interval"], "00:10:00");
    assert_eq!(job["override_times"], Value::Null);
    assert_eq!(
        db.value("SELECT override_interval_seconds FROM manage.jobs WHERE name = 'nightly'"),
        "600"
    );
    assert_near(
        instant(&job["next_run"]),
        before + chrono::Duration::seconds(600),
        5,
        "an interval override reschedules at once",
    );
    assert!(
        run.stdout
            .contains("Effective schedule: every 00:10:00 (override)"),
        "{}",
        run.stdout
    );

    let before = db_now(&db);
    let run = manage(&db)
        .args(["jobs", "configure", "nightly", "--clear-override"])
        .ok();
    let job = show(&db, "nightly");
    assert_eq!(job["override_interval"], Value::Null);
    assert_eq!(job["override_times"], Value::Null);
    assert_eq!(
        db.value("SELECT override_times IS NULL AND override_interval_seconds IS NULL FROM manage.jobs WHERE name = 'nightly'"),
        "t"
    );
    assert_eq!(
        instant(&job["next_run"]),
        next_slot(&["02:30:00", "14:30:00"], before)
    );
    assert!(
        run.stdout
            .contains("Effective schedule: 02:30:00, 14:30:00\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn configure_an_override_equal_to_the_builtin_schedule_is_stored_as_none() {
    let db = setup();
    // 60:00 is 01:00:00 written another way.
    manage(&db)
        .args(["jobs", "configure", "poll", "--override-interval", "60:00"])
        .ok();
    assert_eq!(show(&db, "poll")["override_interval"], Value::Null);
    assert_eq!(
        db.value("SELECT override_interval_seconds IS NULL FROM manage.jobs WHERE name = 'poll'"),
        "t"
    );
    // The same set of times, in another order, with seconds and a duplicate.
    manage(&db)
        .args([
            "jobs",
            "configure",
            "nightly",
            "--override-times",
            "14:30,02:30:00,14:30:00",
        ])
        .ok();
    assert_eq!(show(&db, "nightly")["override_times"], Value::Null);
    assert_eq!(
        db.value("SELECT override_times IS NULL FROM manage.jobs WHERE name = 'nightly'"),
        "t"
    );
    // A set override goes away when set to the built-in schedule.
    manage(&db)
        .args(["jobs", "configure", "poll", "--override-interval", "30:00"])
        .ok();
    assert_eq!(show(&db, "poll")["override_interval"], "00:30:00");
    manage(&db)
        .args([
            "jobs",
            "configure",
            "poll",
            "--override-interval",
            "01:00:00",
        ])
        .ok();
    assert_eq!(show(&db, "poll")["override_interval"], Value::Null);
}

#[test]
fn configure_notify_on_success_is_stored() {
    let db = setup();
    assert_eq!(show(&db, "poll")["notify_on_success"], false);
    let run = manage(&db)
        .args(["jobs", "configure", "poll", "--notify-on-success", "true"])
        .ok();
    assert!(
        run.stdout.contains("Notify on success:  yes"),
        "{}",
        run.stdout
    );
    assert_eq!(show(&db, "poll")["notify_on_success"], true);
    assert_eq!(
        db.value("SELECT notify_on_success FROM manage.jobs WHERE name = 'poll'"),
        "t"
    );
    manage(&db)
        .args(["jobs", "configure", "poll", "--notify-on-success", "false"])
        .ok();
    assert_eq!(show(&db, "poll")["notify_on_success"], false);
}

#[test]
fn configure_prints_the_effective_schedule_and_the_next_run() {
    let db = setup();
    let run = manage(&db)
        .args(["jobs", "configure", "poll", "--notify-on-success", "true"])
        .ok();
    let next = instant(&show(&db, "poll")["next_run"]);
    let expected_next = format!(
        "Next run:           {} (in ",
        next.format("%Y-%m-%d %H:%M:%S UTC")
    );
    assert!(
        run.stdout.contains("Effective schedule: every 01:00:00\n"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&expected_next), "{}", run.stdout);
    assert!(!run.stdout.contains('\x1b'));
}

#[test]
fn configure_and_run_now_wake_the_runners_with_a_notify() {
    let db = setup();
    let mut listen = listener(&db);
    manage(&db)
        .args(["jobs", "configure", "poll", "--override-interval", "05:00"])
        .ok();
    let n = notification(&mut listen, 5).expect("configure sends a NOTIFY");
    assert_eq!(n.channel(), CHANNEL);
    while notification(&mut listen, 0).is_some() {}

    manage(&db).args(["jobs", "run-now", "poll"]).ok();
    let n = notification(&mut listen, 5).expect("run-now sends a NOTIFY");
    assert_eq!(n.channel(), CHANNEL);
}

#[test]
fn configure_with_no_options_off_a_terminal_is_nothing_to_change() {
    let db = setup();
    let before = state(&db);
    jobs(&db, &["configure", "poll"]).assert_bad_input(&["nothing to change", "poll"]);
    assert_eq!(state(&db), before);
}

// ------------------------------------------------------------------ run-now

#[test]
fn run_now_makes_the_job_due_now_by_the_database_clock() {
    let db = setup();
    let before = db_now(&db);
    let run = manage(&db).args(["jobs", "run-now", "poll"]).ok();
    let next = next_run(&db, "poll").unwrap();
    assert_near(next, before, 3, "run-now");
    assert!(next >= before, "run-now uses the database clock");
    assert!(
        run.stdout.contains("Job poll will run at"),
        "{}",
        run.stdout
    );
    // A manual-only job can be run now too.
    manage(&db).args(["jobs", "run-now", "by_hand"]).ok();
    assert_near(next_run(&db, "by_hand").unwrap(), before, 5, "manual job");
}

#[test]
fn run_now_in_delays_the_run() {
    let db = setup();
    let before = db_now(&db);
    manage(&db)
        .args(["jobs", "run-now", "nightly", "--in", "10:00"])
        .ok();
    assert_near(
        next_run(&db, "nightly").unwrap(),
        before + chrono::Duration::seconds(600),
        3,
        "run-now --in 10:00",
    );
    manage(&db)
        .args(["jobs", "run-now", "nightly", "--in", "1:00:00"])
        .ok();
    assert_near(
        next_run(&db, "nightly").unwrap(),
        before + chrono::Duration::seconds(3600),
        5,
        "run-now --in 1:00:00",
    );
}

#[test]
fn run_now_while_running_requests_one_more_run_and_keeps_next_run() {
    let db = setup();
    let mut client = db.client();
    let id = insert_run(&mut client, "poll", "running", db_now(&db), "");
    client
        .execute(
            "UPDATE manage.jobs SET running_run = $1 WHERE name = 'poll'",
            &[&id],
        )
        .unwrap();
    let next_before = next_run(&db, "poll");
    let run = manage(&db).args(["jobs", "run-now", "poll"]).ok();
    assert_eq!(
        db.value("SELECT run_requested FROM manage.jobs WHERE name = 'poll'"),
        "t"
    );
    assert_eq!(next_run(&db, "poll"), next_before);
    assert!(run.stdout.contains("is running"), "{}", run.stdout);
    assert_eq!(show(&db, "poll")["running"], true);
    // Several requests during one run are one more run, not several.
    manage(&db).args(["jobs", "run-now", "poll"]).ok();
    assert_eq!(
        db.value("SELECT run_requested FROM manage.jobs WHERE name = 'poll'"),
        "t"
    );
    assert_eq!(next_run(&db, "poll"), next_before);
}

#[test]
fn run_now_refuses_a_disabled_job() {
    let db = setup();
    manage(&db)
        .args(["jobs", "configure", "poll", "--enabled", "false"])
        .ok();
    let before = state(&db);
    jobs(&db, &["run-now", "poll"]).assert_bad_input(&["\"poll\"", "disabled"]);
    jobs(&db, &["run-now", "poll", "--wait"]).assert_bad_input(&["\"poll\"", "disabled"]);
    assert_eq!(state(&db), before);
}

#[test]
fn run_now_wait_without_a_connected_runner_fails_at_once() {
    let db = setup();
    // A runner row whose lock nobody holds is not a connected runner.
    db.client()
        .batch_execute("INSERT INTO manage.runners (host, pid) VALUES ('gone', 1)")
        .unwrap();
    let started = Instant::now();
    let run = jobs(&db, &["run-now", "poll", "--wait"]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "it did not fail at once"
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("no runner is connected"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));
}

// ------------------------------------------------------ trigger_job from SQL

#[test]
fn trigger_job_from_sql_has_the_run_now_semantics() {
    let db = setup();
    let mut client = db.client();
    let before = db_now(&db);
    client
        .execute("SELECT manage.trigger_job('poll')", &[])
        .unwrap();
    assert_near(next_run(&db, "poll").unwrap(), before, 3, "trigger_job");
    client
        .execute(
            "SELECT manage.trigger_job('nightly', interval '5 minutes')",
            &[],
        )
        .unwrap();
    assert_near(
        next_run(&db, "nightly").unwrap(),
        before + chrono::Duration::seconds(300),
        3,
        "trigger_job with a delay",
    );

    // Running: a request, next run left alone.
    let id = insert_run(&mut client, "later", "running", db_now(&db), "");
    client
        .execute(
            "UPDATE manage.jobs SET running_run = $1 WHERE name = 'later'",
            &[&id],
        )
        .unwrap();
    let later_next = next_run(&db, "later");
    client
        .execute("SELECT manage.trigger_job('later')", &[])
        .unwrap();
    assert_eq!(next_run(&db, "later"), later_next);
    assert_eq!(
        db.value("SELECT run_requested FROM manage.jobs WHERE name = 'later'"),
        "t"
    );

    // A negative delay, and unknown, removed and disabled jobs raise an SQL error.
    assert!(client
        .execute(
            "SELECT manage.trigger_job('poll', interval '-1 minute')",
            &[]
        )
        .is_err());
    let error = client
        .execute("SELECT manage.trigger_job('nosuch')", &[])
        .unwrap_err();
    assert!(error.as_db_error().is_some(), "{error:?}");
    assert!(
        error.as_db_error().unwrap().message().contains("nosuch"),
        "{error:?}"
    );
    client
        .batch_execute("UPDATE manage.jobs SET removed = true WHERE name = 'by_hand'")
        .unwrap();
    assert!(client
        .execute("SELECT manage.trigger_job('by_hand')", &[])
        .is_err());
    client
        .batch_execute(
            "UPDATE manage.jobs SET enabled = false, next_run = NULL WHERE name = 'poll'",
        )
        .unwrap();
    assert!(client
        .execute("SELECT manage.trigger_job('poll')", &[])
        .is_err());
    assert_eq!(next_run(&db, "poll"), None);
}

#[test]
fn trigger_job_notifies_only_when_the_callers_transaction_commits() {
    let db = setup();
    let mut listen = listener(&db);
    let mut caller = db.client();
    let next_before = next_run(&db, "poll");

    let mut tx = caller.transaction().unwrap();
    tx.execute("SELECT manage.trigger_job('poll')", &[])
        .unwrap();
    assert!(
        notification(&mut listen, 1).is_none(),
        "a NOTIFY escaped an open transaction"
    );
    assert_eq!(
        next_run(&db, "poll"),
        next_before,
        "uncommitted change visible"
    );
    tx.commit().unwrap();
    let n = notification(&mut listen, 5).expect("a NOTIFY once committed");
    assert_eq!(n.channel(), CHANNEL);
    assert_ne!(next_run(&db, "poll"), next_before);
    while notification(&mut listen, 0).is_some() {}

    let next_before = next_run(&db, "nightly");
    let mut tx = caller.transaction().unwrap();
    tx.execute("SELECT manage.trigger_job('nightly')", &[])
        .unwrap();
    tx.rollback().unwrap();
    assert!(
        notification(&mut listen, 2).is_none(),
        "a rolled-back trigger woke the runners"
    );
    assert_eq!(next_run(&db, "nightly"), next_before);
}

// ------------------------------------------------------------ reset-failure

#[test]
fn reset_failure_clears_last_run_and_last_state() {
    let db = setup();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET last_state = 'failed', last_run = now() - interval '1 hour' WHERE name = 'poll'",
        )
        .unwrap();
    assert_eq!(show(&db, "poll")["last_state"], "failed");
    manage(&db).args(["jobs", "reset-failure", "poll"]).ok();
    let job = show(&db, "poll");
    assert_eq!(job["last_run"], Value::Null);
    assert_eq!(job["last_state"], Value::Null);
    assert_eq!(
        db.value(
            "SELECT last_run IS NULL AND last_state IS NULL FROM manage.jobs WHERE name = 'poll'"
        ),
        "t"
    );
}

// ------------------------------------------------------------- hold/release

#[test]
fn hold_sets_the_hold_and_release_needs_a_valid_pending() {
    let db = setup();
    manage(&db).args(["jobs", "hold"]).ok();
    assert_eq!(db.value("SELECT held FROM manage.hold"), "t");
    assert_eq!(
        db.value("SELECT held_since IS NOT NULL FROM manage.hold"),
        "t"
    );
    // Holding twice is fine and keeps the first time.
    let since = db.value("SELECT held_since FROM manage.hold");
    manage(&db).args(["jobs", "hold"]).ok();
    assert_eq!(db.value("SELECT held_since FROM manage.hold"), since);

    let before = state(&db);
    jobs(&db, &["release"]).assert_bad_input(&["--pending"]);
    jobs(&db, &["release", "--pending", "bogus"]).assert_bad_input(&["bogus", "--pending"]);
    assert_eq!(state(&db), before);
    assert_eq!(db.value("SELECT held FROM manage.hold"), "t");

    manage(&db)
        .args(["jobs", "release", "--pending", "run"])
        .ok();
    assert_eq!(db.value("SELECT held FROM manage.hold"), "f");
}

#[test]
fn hold_and_release_wake_the_runners() {
    let db = setup();
    let mut listen = listener(&db);
    manage(&db).args(["jobs", "hold"]).ok();
    assert!(
        notification(&mut listen, 5).is_some(),
        "hold sends a NOTIFY"
    );
    while notification(&mut listen, 0).is_some() {}
    manage(&db)
        .args(["jobs", "release", "--pending", "run"])
        .ok();
    assert!(
        notification(&mut listen, 5).is_some(),
        "release sends a NOTIFY"
    );
}

#[test]
fn release_with_run_leaves_due_jobs_due() {
    let db = setup();
    manage(&db).args(["jobs", "hold"]).ok();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET next_run = now() - interval '10 minutes' WHERE name IN ('poll', 'nightly')",
        )
        .unwrap();
    let poll = next_run(&db, "poll");
    let nightly = next_run(&db, "nightly");
    let later = next_run(&db, "later");
    let run = manage(&db)
        .args(["jobs", "release", "--pending", "run"])
        .ok();
    assert_eq!(db.value("SELECT held FROM manage.hold"), "f");
    assert_eq!(next_run(&db, "poll"), poll);
    assert_eq!(next_run(&db, "nightly"), nightly);
    assert_eq!(next_run(&db, "later"), later);
    assert!(run.stdout.contains("nightly, poll"), "{}", run.stdout);
}

#[test]
fn release_with_reschedule_pushes_due_jobs_to_their_next_slot() {
    let db = setup();
    manage(&db).args(["jobs", "hold"]).ok();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET next_run = now() - interval '10 minutes' WHERE name = 'nightly'",
        )
        .unwrap();
    // A run-now request made during the hold is pending like any due job.
    let run = manage(&db).args(["jobs", "run-now", "poll"]).ok();
    assert!(run.stdout.contains("held"), "{}", run.stdout);
    let later = next_run(&db, "later");
    let by_hand = next_run(&db, "by_hand");
    let before = db_now(&db);
    let run = manage(&db)
        .args(["jobs", "release", "--pending", "reschedule"])
        .ok();
    assert_eq!(db.value("SELECT held FROM manage.hold"), "f");
    // As if they had just run: an interval job one interval from now, a
    // times job at its next slot strictly after now.
    assert_near(
        next_run(&db, "poll").unwrap(),
        before + chrono::Duration::hours(1),
        5,
        "interval job after reschedule",
    );
    let nightly = next_run(&db, "nightly").unwrap();
    assert!(nightly > before);
    assert_eq!(nightly, next_slot(&["02:30:00", "14:30:00"], before));
    // Jobs that were not due are left alone.
    assert_eq!(next_run(&db, "later"), later);
    assert_eq!(next_run(&db, "by_hand"), by_hand);
    assert!(run.stdout.contains("nightly, poll"), "{}", run.stdout);
    // No runs were invented.
    assert_eq!(db.value("SELECT count(*) FROM manage.runs"), "0");
}

#[test]
fn release_with_reschedule_drops_a_run_now_request_on_a_job_still_running() {
    let db = setup();
    let mut client = db.client();
    let id = insert_run(&mut client, "poll", "running", db_now(&db), "");
    client
        .execute(
            "UPDATE manage.jobs SET running_run = $1 WHERE name = 'poll'",
            &[&id],
        )
        .unwrap();
    manage(&db).args(["jobs", "hold"]).ok();
    manage(&db).args(["jobs", "run-now", "poll"]).ok();
    assert_eq!(
        db.value("SELECT run_requested FROM manage.jobs WHERE name = 'poll'"),
        "t"
    );
    manage(&db)
        .args(["jobs", "release", "--pending", "reschedule"])
        .ok();
    assert_eq!(
        db.value("SELECT run_requested FROM manage.jobs WHERE name = 'poll'"),
        "f",
        "the request made during the hold is pending like a due job: reschedule drops it"
    );
}

// ------------------------------------------------------------------ history

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn history_pages_50_runs_newest_first() {
    let db = setup();
    let mut client = db.client();
    let base = at("2026-11-01T10:00:00Z");
    let mut all = Vec::new();
    for i in 0..60 {
        let job = if i % 3 == 0 { "nightly" } else { "poll" };
        all.push(insert_run(
            &mut client,
            job,
            "succeeded",
            base + chrono::Duration::minutes(i),
            &format!("run {i}"),
        ));
    }
    all.reverse();
    let page1 = manage(&db).args(["jobs", "history", "--json"]).json();
    assert_eq!(ids(&page1), all[..50]);
    let page2 = manage(&db)
        .args(["jobs", "history", "--json", "--page", "2"])
        .json();
    assert_eq!(ids(&page2), all[50..]);
    let page3 = manage(&db)
        .args(["jobs", "history", "--json", "--page", "3"])
        .json();
    assert_eq!(page3, json!([]), "a page past the end is empty");
    let first = page1[0].as_object().unwrap();
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
    assert_eq!(page1[0]["started_at"], "2026-11-01T10:59:00.000+00:00");
    assert_eq!(page1[0]["finished_at"], "2026-11-01T10:59:01.234+00:00");
    assert_eq!(page1[0]["runtime_seconds"], 1.234);
    assert_eq!(page1[0]["output_first_line"], "run 59");
    assert_eq!(page1[0]["job"], "poll");

    // The NAME filter.
    let nightly = manage(&db)
        .args(["jobs", "history", "nightly", "--json"])
        .json();
    assert_eq!(nightly.as_array().unwrap().len(), 20);
    assert!(nightly
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["job"] == "nightly"));
    let started: Vec<DateTime<Utc>> = nightly
        .as_array()
        .unwrap()
        .iter()
        .map(|r| instant(&r["started_at"]))
        .collect();
    assert!(started.windows(2).all(|w| w[0] > w[1]), "newest first");

    let run = jobs(&db, &["history"]);
    assert_eq!(run.code, 0);
    assert!(!run.stdout.contains('\x1b'));
    assert_eq!(
        run.stdout.lines().filter(|l| l.contains("run ")).count(),
        50
    );
}

#[test]
fn history_failed_is_every_finished_state_but_succeeded() {
    let db = setup();
    let mut client = db.client();
    let base = at("2026-11-01T10:00:00Z");
    let mut expected = Vec::new();
    for (i, state) in ["succeeded", "failed", "timed_out", "interrupted", "running"]
        .into_iter()
        .enumerate()
    {
        let id = insert_run(
            &mut client,
            "poll",
            state,
            base + chrono::Duration::minutes(i as i64),
            state,
        );
        if state != "succeeded" && state != "running" {
            expected.push(id);
        }
    }
    let nightly_failed = insert_run(&mut client, "nightly", "failed", base, "x");
    expected.reverse();
    let failed = manage(&db)
        .args(["jobs", "history", "poll", "--failed", "--json"])
        .json();
    assert_eq!(ids(&failed), expected);
    let states: Vec<&str> = failed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["interrupted", "timed_out", "failed"]);
    let all_failed = manage(&db)
        .args(["jobs", "history", "--failed", "--json"])
        .json();
    let mut with_nightly = expected.clone();
    with_nightly.push(nightly_failed);
    assert_eq!(ids(&all_failed), with_nightly);
    // A running run has no end yet.
    let everything = manage(&db).args(["jobs", "history", "--json"]).json();
    let running = &everything[0];
    assert_eq!(running["state"], "running");
    assert_eq!(running["finished_at"], Value::Null);
}

#[test]
fn history_rejects_unknown_jobs_and_page_0() {
    let db = setup();
    let before = state(&db);
    jobs(&db, &["history", "nosuch"]).assert_bad_input(&["\"nosuch\""]);
    jobs(&db, &["history", "--page", "0"]).assert_bad_input(&["0", "--page"]);
    jobs(&db, &["history", "poll", "--failed", "--page", "0"]).assert_bad_input(&["0", "--page"]);
    assert_eq!(state(&db), before);
    assert_eq!(
        manage(&db)
            .args(["jobs", "history", "poll", "--json", "--page", "7"])
            .json(),
        json!([])
    );
}

#[test]
fn numbers_out_of_range_name_the_flag_and_the_range() {
    let db = setup();
    let before = state(&db);
    for page in ["4294967296", "-1", "x"] {
        jobs(&db, &["history", "--page", page]).assert_bad_input(&[
            page,
            "--page",
            "from 1 to 4294967295",
        ]);
        jobs(&db, &["show", "poll", "--page", page]).assert_bad_input(&[
            page,
            "--page",
            "from 1 to 4294967295",
        ]);
    }
    for id in ["0", "-1", "9223372036854775808"] {
        jobs(&db, &["output", id]).assert_bad_input(&[
            id,
            "RUN_ID",
            "from 1 to 9223372036854775807",
        ]);
    }
    assert_eq!(state(&db), before);
    // The range is in the help.
    let help = manage(&db).args(["jobs", "history", "--help"]).ok().stdout;
    assert!(help.contains("1 or more"), "{help}");
}

/// Every numeric argument of the command line, with a value past the top of
/// its range; `poll` stands for the job a command needs.
const NUMERIC_ARGUMENTS: &[(&[&str], &str)] = &[
    (&["jobs", "show", "poll", "--page"], "4294967296"),
    (&["jobs", "history", "--page"], "4294967296"),
    (&["jobs", "audit", "--page"], "4294967296"),
    (&["jobs", "output"], "9223372036854775808"),
    (&["jobs", "next", "poll", "--count"], "1001"),
    (&["jobs", "configure", "poll", "--retries"], "101"),
    (&["jobs", "configure", "poll", "--alert-after"], "1001"),
    (
        &["jobs", "configure", "poll", "--override-interval"],
        "8784:00:01",
    ),
    (
        &["jobs", "configure", "poll", "--start-deadline"],
        "8784:00:01",
    ),
    (
        &["jobs", "configure", "poll", "--retry-delay"],
        "8784:00:01",
    ),
    (&["jobs", "configure", "poll", "--jitter"], "8784:00:01"),
    (
        &["jobs", "configure", "poll", "--expect-success-within"],
        "8784:00:01",
    ),
    (&["jobs", "configure", "poll", "--warn-after"], "8784:00:01"),
    (&["jobs", "run-now", "poll", "--in"], "8784:00:01"),
    (&["jobs", "run-now", "poll", "--timeout"], "8784:00:01"),
    (&["purge_job_history", "--keep-days"], "1000001"),
];

/// The numeric arguments the command line defines, as `(command path,
/// --flag or VALUE_NAME)`: read off the clap definition, so that a numeric
/// flag added tomorrow fails the test below until it is in the list.
fn numeric_arguments_of_the_command_line() -> std::collections::BTreeSet<(String, String)> {
    use std::any::TypeId;
    fn walk(
        command: &clap::Command,
        path: &str,
        found: &mut std::collections::BTreeSet<(String, String)>,
    ) {
        let numbers = [
            TypeId::of::<u16>(),
            TypeId::of::<u32>(),
            TypeId::of::<u64>(),
            TypeId::of::<i32>(),
            TypeId::of::<i64>(),
            TypeId::of::<usize>(),
        ];
        for arg in command.get_arguments() {
            let parsed = arg.get_value_parser().type_id();
            if numbers.iter().any(|number| parsed == *number) {
                let name = arg.get_long().map_or_else(
                    || arg.get_value_names().unwrap_or_default().join(" "),
                    |long| format!("--{long}"),
                );
                found.insert((path.to_string(), name));
            }
        }
        for sub in command.get_subcommands() {
            let path = format!("{path} {}", sub.get_name()).trim().to_string();
            walk(sub, &path, found);
        }
    }
    let mut found = std::collections::BTreeSet::new();
    let registry = manage::registry::Registry::new(None);
    walk(&manage::cli::command(&registry), "", &mut found);
    found
}

#[test]
fn a_negative_number_gets_the_same_error_as_any_out_of_range_value() {
    let db = setup();
    let before = state(&db);
    let error_line = |args: &[&str], value: &str| {
        let run = manage(&db).args(args).arg(value).run();
        run.assert_bad_input(&[value]);
        let line = run.stderr.lines().find(|l| l.starts_with("error: "));
        line.unwrap_or_default().to_string()
    };
    let mut tested = std::collections::BTreeSet::new();
    for (args, too_big) in NUMERIC_ARGUMENTS {
        let negative = error_line(args, "-1");
        let positive = error_line(args, too_big);
        // The same sentence naming the flag and its range; only the value differs.
        assert_eq!(negative, positive.replace(too_big, "-1"), "{args:?}");
        let (command, flag): (Vec<&str>, Vec<&str>) = args
            .iter()
            .filter(|a| **a != "poll")
            .partition(|a| !a.starts_with("--"));
        let flag = flag.first().map_or("RUN_ID".to_string(), |f| f.to_string());
        tested.insert((command.join(" "), flag));
    }
    assert_eq!(tested, numeric_arguments_of_the_command_line());
    assert_eq!(state(&db), before, "nothing changed");
}

#[test]
fn history_and_output_of_a_removed_job_still_work() {
    let db = setup();
    let mut client = db.client();
    let id = insert_run(
        &mut client,
        "poll",
        "failed",
        at("2026-11-01T10:00:00Z"),
        "Exit code 1\nsomething broke",
    );
    client
        .batch_execute("UPDATE manage.jobs SET removed = true, next_run = NULL WHERE name = 'poll'")
        .unwrap();
    let history = manage(&db)
        .args(["jobs", "history", "poll", "--json"])
        .json();
    assert_eq!(ids(&history), [id]);
    let output = manage(&db).args(["jobs", "output", &id.to_string()]).ok();
    assert_eq!(output.stdout, "Exit code 1\nsomething broke\n");
    jobs(&db, &["show", "poll"]).assert_bad_input(&["\"poll\"", "removed"]);
}

/// What a job may print that a terminal would act on: clear the screen,
/// colour, ring the bell, return the carriage, set the window title.
const HOSTILE: &str = "\x1b[2J\x1b[31mred\x07\r\nsecond\tline\x1b]0;owned\x07\n";

#[test]
fn job_output_on_a_terminal_shows_control_characters_escaped() {
    let db = setup();
    let id = insert_run(
        &mut db.client(),
        "poll",
        "failed",
        at("2026-11-01T10:00:00Z"),
        HOSTILE,
    );
    let on_terminal = |args: &[&str]| {
        // NO_COLOR: our own colour codes are not what is being tested.
        let run = manage(&db)
            .env("NO_COLOR", "1")
            .args(args)
            .run_on_terminal();
        assert_eq!(run.code, 0, "{run:?}");
        assert!(
            !run.stdout.contains(['\x1b', '\x07', '\r']),
            "raw control characters reached the terminal: {:?}",
            run.stdout
        );
        run.stdout
    };
    let output = on_terminal(&["jobs", "output", &id.to_string()]);
    assert_eq!(
        output,
        "\\x1b[2J\\x1b[31mred\\x07\\x0d\nsecond\tline\\x1b]0;owned\\x07\n"
    );
    for args in [&["jobs", "history"][..], &["jobs", "show", "poll"]] {
        let table = on_terminal(args);
        assert!(table.contains("\\x1b[2J\\x1b[31mred\\x07"), "{table}");
    }
}

#[test]
fn job_output_piped_or_in_json_is_exact() {
    let db = setup();
    let id = insert_run(
        &mut db.client(),
        "poll",
        "failed",
        at("2026-11-01T10:00:00Z"),
        HOSTILE,
    );
    let id_text = id.to_string();
    assert_eq!(
        manage(&db).args(["jobs", "output", &id_text]).ok().stdout,
        HOSTILE
    );
    let value = manage(&db)
        .args(["jobs", "output", &id_text, "--json"])
        .json();
    assert_eq!(value["output"], HOSTILE);
    assert_eq!(value["output_first_line"], "\x1b[2J\x1b[31mred\x07");
    let table = manage(&db).args(["jobs", "history"]).ok().stdout;
    assert!(table.contains("\x1b[2J\x1b[31mred\x07"), "{table:?}");
    let history = manage(&db).args(["jobs", "history", "--json"]).json();
    let first_line = history[0]["output_first_line"].as_str().unwrap();
    assert!(
        first_line.starts_with("\x1b[2J\x1b[31mred\x07"),
        "{first_line:?}"
    );
}

#[test]
fn output_prints_the_whole_output_and_json_adds_it_to_the_run() {
    let db = setup();
    let mut client = db.client();
    let text = "first line\nsecond line\n\nfourth line";
    let id = insert_run(
        &mut client,
        "poll",
        "succeeded",
        at("2026-11-01T10:00:00Z"),
        text,
    );
    let run = manage(&db).args(["jobs", "output", &id.to_string()]).ok();
    assert_eq!(run.stdout, format!("{text}\n"));
    let value = manage(&db)
        .args(["jobs", "output", &id.to_string(), "--json"])
        .json();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
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
            "output_first_line",
            "output"
        ]
    );
    assert_eq!(value["id"], id);
    assert_eq!(value["job"], "poll");
    assert_eq!(value["output"], text);
    assert_eq!(value["output_first_line"], "first line");

    let before = state(&db);
    jobs(&db, &["output", "999999"]).assert_bad_input(&["999999"]);
    jobs(&db, &["output", "999999", "--json"]).assert_bad_input(&["999999"]);
    jobs(&db, &["output", "abc"]).assert_bad_input(&["abc"]);
    assert_eq!(state(&db), before);
}

// ------------------------------------------------------------------- status

#[test]
fn status_json_has_the_status_fields_and_types() {
    let db = setup();
    let _runner = connect_runner(&db, "testhost", 4242);
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET last_state = 'succeeded', last_run = now() - interval '5 minutes' WHERE name = 'poll'",
        )
        .unwrap();
    let (code, status) = status_json(&db);
    assert_eq!(code, 0, "{status}");
    let keys: Vec<&str> = status
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "healthy",
            "held",
            "held_until",
            "runners",
            "last_run",
            "running",
            "overdue",
            "failing",
            "problems"
        ]
    );
    assert_eq!(status["healthy"], true);
    assert_eq!(status["held"], false);
    let runners = status["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 1);
    let runner_keys: Vec<&str> = runners[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        runner_keys,
        ["host", "pid", "started_at", "tags", "version"]
    );
    assert_eq!(runners[0]["host"], "testhost");
    assert_eq!(runners[0]["pid"], 4242);
    // A row written as an older runner writes it: no tags, no version.
    assert_eq!(runners[0]["tags"], serde_json::json!([]));
    assert!(runners[0]["version"].is_null(), "{}", runners[0]);
    assert_near(
        instant(&runners[0]["started_at"]),
        db_now(&db),
        30,
        "runner started_at",
    );
    assert!(status["last_run"].is_string());
    assert_near(
        instant(&status["last_run"]),
        db_now(&db) - chrono::Duration::minutes(5),
        30,
        "last_run",
    );
    assert_eq!(status["running"], json!([]));
    assert_eq!(status["overdue"], json!([]));
    assert_eq!(status["failing"], json!([]));
    assert_eq!(status["problems"], json!([]));

    // Running jobs are listed by name; running is not unhealthy.
    let mut client = db.client();
    let id = insert_run(&mut client, "nightly", "running", db_now(&db), "");
    client
        .execute(
            "UPDATE manage.jobs SET running_run = $1 WHERE name = 'nightly'",
            &[&id],
        )
        .unwrap();
    let (code, status) = status_json(&db);
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["running"], json!(["nightly"]));
}

#[test]
fn status_is_healthy_when_a_runner_holds_its_lock_and_nothing_else_is_wrong() {
    let db = setup();
    let _runner = connect_runner(&db, "testhost", 4242);
    let (code, status) = status_json(&db);
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["healthy"], true);
    assert_eq!(status["problems"], json!([]));
    assert_eq!(status["last_run"], Value::Null);
    let human = jobs(&db, &["status"]);
    assert_eq!(human.code, 0);
    assert!(
        human.stdout.starts_with("Healthy:  yes\n"),
        "{}",
        human.stdout
    );
}

#[test]
fn status_is_unhealthy_without_a_connected_runner() {
    let db = setup();
    let (code, status) = status_json(&db);
    assert_eq!(code, 1, "{status}");
    assert_eq!(status["healthy"], false);
    assert_eq!(status["runners"], json!([]));
    assert_eq!(status["problems"].as_array().unwrap().len(), 1, "{status}");
    assert!(status["problems"][0].as_str().unwrap().contains("runner"));

    // A runner row whose lock is not held does not count.
    db.client()
        .batch_execute("INSERT INTO manage.runners (host, pid) VALUES ('stale', 7)")
        .unwrap();
    let (code, status) = status_json(&db);
    assert_eq!(code, 1);
    assert_eq!(status["runners"], json!([]));

    // Nor does a runner whose session went away.
    let runner = connect_runner(&db, "testhost", 4242);
    assert_eq!(status_json(&db).0, 0);
    drop(runner);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, status) = status_json(&db);
        if code == 1 {
            assert_eq!(status["runners"], json!([]));
            break;
        }
        assert!(Instant::now() < deadline, "a gone runner still counts");
        std::thread::sleep(Duration::from_millis(100));
    }
    let human = jobs(&db, &["status"]);
    assert_eq!(human.code, 1);
    assert!(
        human.stdout.contains("Runners:  none connected"),
        "{}",
        human.stdout
    );
}

#[test]
fn status_is_unhealthy_while_held() {
    let db = setup();
    let _runner = connect_runner(&db, "testhost", 4242);
    manage(&db).args(["jobs", "hold"]).ok();
    let (code, status) = status_json(&db);
    assert_eq!(code, 1, "{status}");
    assert_eq!(status["healthy"], false);
    assert_eq!(status["held"], true);
    assert_eq!(status["problems"].as_array().unwrap().len(), 1, "{status}");
    assert!(status["problems"][0].as_str().unwrap().contains("held"));
}

#[test]
fn status_is_unhealthy_with_an_overdue_job() {
    let db = setup();
    let _runner = connect_runner(&db, "testhost", 4242);
    // Due 30 s ago: not yet overdue (a runner may be just starting it).
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET next_run = now() - interval '30 seconds' WHERE name = 'poll'",
        )
        .unwrap();
    assert_eq!(status_json(&db).0, 0);
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET next_run = now() - interval '2 minutes' WHERE name = 'poll'",
        )
        .unwrap();
    let (code, status) = status_json(&db);
    assert_eq!(code, 1, "{status}");
    assert_eq!(status["overdue"], json!(["poll"]));
    assert_eq!(status["problems"].as_array().unwrap().len(), 1, "{status}");
    assert!(status["problems"][0].as_str().unwrap().contains("poll"));

    // Not overdue while it is running…
    let mut client = db.client();
    let id = insert_run(&mut client, "poll", "running", db_now(&db), "");
    client
        .execute(
            "UPDATE manage.jobs SET running_run = $1 WHERE name = 'poll'",
            &[&id],
        )
        .unwrap();
    assert_eq!(status_json(&db).1["overdue"], json!([]));
    client
        .batch_execute("UPDATE manage.jobs SET running_run = NULL WHERE name = 'poll'")
        .unwrap();
    // …nor when disabled.
    client
        .batch_execute("UPDATE manage.jobs SET enabled = false WHERE name = 'poll'")
        .unwrap();
    assert_eq!(status_json(&db).0, 0);
    client
        .batch_execute("UPDATE manage.jobs SET enabled = true WHERE name = 'poll'")
        .unwrap();
    // …nor while held (that is its own problem).
    manage(&db).args(["jobs", "hold"]).ok();
    let (_, status) = status_json(&db);
    assert_eq!(status["overdue"], json!([]));
    assert_eq!(status["problems"].as_array().unwrap().len(), 1, "{status}");
}

#[test]
fn status_is_unhealthy_when_an_enabled_jobs_last_run_did_not_succeed() {
    let db = setup();
    let _runner = connect_runner(&db, "testhost", 4242);
    for state in ["failed", "timed_out", "interrupted"] {
        db.client()
            .execute(
                "UPDATE manage.jobs SET last_state = $1, last_run = now() WHERE name = 'poll'",
                &[&state],
            )
            .unwrap();
        let (code, status) = status_json(&db);
        assert_eq!(code, 1, "{state}: {status}");
        assert_eq!(status["failing"], json!(["poll"]));
        assert_eq!(status["problems"].as_array().unwrap().len(), 1, "{status}");
        assert!(status["problems"][0].as_str().unwrap().contains("poll"));
    }
    // A disabled job's failure is not a problem.
    manage(&db)
        .args(["jobs", "configure", "poll", "--enabled", "false"])
        .ok();
    let (code, status) = status_json(&db);
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["failing"], json!([]));
    // Nor one that was reset.
    manage(&db)
        .args(["jobs", "configure", "poll", "--enabled", "true"])
        .ok();
    assert_eq!(status_json(&db).0, 1);
    manage(&db).args(["jobs", "reset-failure", "poll"]).ok();
    assert_eq!(status_json(&db).0, 0);
}

// ---------------------------------------------------------------- bad input

#[test]
fn unknown_removed_and_invalid_job_names_are_rejected_without_changing_anything() {
    let db = setup();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET removed = true, next_run = NULL WHERE name = 'by_hand'",
        )
        .unwrap();
    let before = state(&db);
    let show_before = show(&db, "poll");
    let commands: [&[&str]; 4] = [
        &["show"],
        &["configure", "--enabled", "false"],
        &["run-now"],
        &["reset-failure"],
    ];
    for command in commands {
        for (name, needle) in [
            ("nosuch", "\"nosuch\""),
            ("by_hand", "removed"),
            ("Bad-Name!", "\"Bad-Name!\""),
        ] {
            let mut args = vec!["jobs", command[0], name];
            args.extend_from_slice(&command[1..]);
            let run = manage(&db).args(&args).run();
            run.assert_bad_input(&[needle]);
            if name == "by_hand" {
                assert!(run.stderr.contains("\"by_hand\""), "{}", run.stderr);
            }
            assert_eq!(state(&db), before, "{args:?} changed the database");
        }
    }
    jobs(&db, &["run-now", "nosuch", "--wait"]).assert_bad_input(&["\"nosuch\""]);
    assert_eq!(show(&db, "poll"), show_before);
    assert_eq!(state(&db), before);
}

#[test]
fn bad_schedule_values_are_rejected_without_changing_anything() {
    let db = setup();
    let before = state(&db);
    let show_before = show(&db, "poll");
    let configure = |args: &[&str]| {
        manage(&db)
            .args(["jobs", "configure", "poll"])
            .args(args)
            .run()
    };
    configure(&["--override-times", "25:00"]).assert_bad_input(&["25:00", "--override-times"]);
    configure(&["--override-times", "02:30,25:00"]).assert_bad_input(&["25:00"]);
    configure(&["--override-times", ""]).assert_bad_input(&["--override-times"]);
    configure(&["--override-times", "02:30,"]).assert_bad_input(&["02:30,"]);
    for bad in ["00:00", "12:60", "1:2:3:4", "0:00:00", "8784:00:01", "ten"] {
        configure(&["--override-interval", bad]).assert_bad_input(&[bad, "--override-interval"]);
    }
    configure(&["--override-times", "02:30", "--override-interval", "10:00"])
        .assert_bad_input(&["--override-times", "--override-interval"]);
    configure(&["--override-times", "02:30", "--clear-override"])
        .assert_bad_input(&["--override-times", "--clear-override"]);
    configure(&["--override-interval", "10:00", "--clear-override"])
        .assert_bad_input(&["--override-interval", "--clear-override"]);
    configure(&["--enabled", "maybe"]).assert_bad_input(&["maybe", "--enabled"]);
    configure(&["--notify-on-success", "perhaps"]).assert_bad_input(&["perhaps"]);
    // A bad value beside good ones changes nothing either.
    configure(&["--enabled", "false", "--override-interval", "12:60"]).assert_bad_input(&["12:60"]);
    assert_eq!(show(&db, "poll"), show_before);
    assert_eq!(state(&db), before);
}

#[test]
fn bad_delays_pages_and_run_ids_are_rejected_without_changing_anything() {
    let db = setup();
    let mut client = db.client();
    insert_run(
        &mut client,
        "poll",
        "failed",
        at("2026-11-01T10:00:00Z"),
        "x",
    );
    let before = state(&db);
    let show_before = show(&db, "poll");
    for bad in ["soon", "00:00", "10", "1:2:3:4", "-01:00", ""] {
        let run = manage(&db)
            .args(["jobs", "run-now", "poll", &format!("--in={bad}")])
            .run();
        run.assert_bad_input(&[bad]);
        assert!(run.stderr.contains("--in"), "{}", run.stderr);
    }
    jobs(&db, &["run-now", "poll", "--timeout", "10:00"]).assert_bad_input(&["--wait"]);
    jobs(&db, &["run-now", "poll", "--wait", "--timeout", "00:00"]).assert_bad_input(&["00:00"]);
    jobs(&db, &["show", "poll", "--page", "0"]).assert_bad_input(&["0", "--page"]);
    jobs(&db, &["history", "--page", "0"]).assert_bad_input(&["0", "--page"]);
    jobs(&db, &["output", "424242"]).assert_bad_input(&["424242"]);
    jobs(&db, &["output", "-1"]).assert_bad_input(&["-1"]);
    assert_eq!(show(&db, "poll"), show_before);
    assert_eq!(state(&db), before);
}

// ---------------------------------------------------------------- snapshots

#[test]
fn show_history_and_status_human_output_is_stable_and_plain() {
    let db = setup();
    let mut client = db.client();
    let base = at("2026-11-01T10:00:00Z");
    insert_run(
        &mut client,
        "poll",
        "succeeded",
        base,
        "Fetched 3 payments\nall fine",
    );
    insert_run(
        &mut client,
        "nightly",
        "succeeded",
        base + chrono::Duration::minutes(30),
        "",
    );
    insert_run(
        &mut client,
        "poll",
        "failed",
        base + chrono::Duration::hours(1),
        "Exit code 1\nconnection refused",
    );
    insert_run(
        &mut client,
        "poll",
        "timed_out",
        base + chrono::Duration::hours(2),
        "waiting\nTimeout of 120 seconds expired.",
    );
    client
        .batch_execute(
            "UPDATE manage.jobs SET last_state = 'timed_out', last_run = now() - interval '1 hour' WHERE name = 'poll';
             UPDATE manage.jobs SET override_interval_seconds = 1800, next_run = now() + interval '20 minutes' WHERE name = 'poll';",
        )
        .unwrap();
    let _runner = connect_runner(&db, "testhost", 4242);

    let show = manage(&db).args(["jobs", "show", "poll"]).ok();
    let history = manage(&db).args(["jobs", "history"]).ok();
    let status = jobs(&db, &["status"]);
    assert_eq!(status.code, 1, "poll's last run failed: {status:?}");
    for out in [&show.stdout, &history.stdout, &status.stdout] {
        assert!(!out.contains('\x1b'), "escape codes off a terminal:\n{out}");
    }
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} [A-Z]{3,4}", "[TIME]");
    settings.add_filter(r"\((in |)[0-9][0-9a-z ]*( ago|)\)", "([RELATIVE])");
    settings.bind(|| {
        insta::assert_snapshot!("jobs_show_with_history", show.stdout);
        insta::assert_snapshot!("jobs_history", history.stdout);
        insta::assert_snapshot!("jobs_status", status.stdout);
    });
}

#[test]
fn a_terminal_that_reports_no_width_gets_tables_eighty_wide_or_columns() {
    let db = setup();
    for (minute, output) in [
        (0, "first line of a long output that goes on and on"),
        (1, "ok"),
    ] {
        insert_run(
            &mut db.client(),
            "poll",
            "succeeded",
            at("2026-11-01T10:00:00Z") + chrono::Duration::minutes(minute),
            output,
        );
    }
    // (reported columns, COLUMNS, the width the lines must keep within)
    for (columns, env, width) in [(0, None, 80), (0, Some("100"), 100), (72, None, 72)] {
        let mut command = manage(&db).env("NO_COLOR", "1").env_remove("COLUMNS");
        if let Some(value) = env {
            command = command.env("COLUMNS", value);
        }
        let run = command
            .args(["jobs", "history"])
            .run_on_terminal_of_size(columns);
        assert_eq!(run.code, 0, "{run:?}");
        let header = run.stdout.lines().next().unwrap_or_default();
        // Whole words, not one letter a column.
        let words: Vec<&str> = header.split_whitespace().collect();
        assert_eq!(
            words,
            ["Id", "Started", "Job", "State", "Attempt", "Runtime", "Output"],
            "{}",
            run.stdout
        );
        for line in run.stdout.lines() {
            assert!(
                line.chars().count() <= width,
                "a line wider than {width}: {line:?}\n{}",
                run.stdout
            );
        }
        assert!(run.stdout.contains("succeeded"), "{}", run.stdout);
    }
}
