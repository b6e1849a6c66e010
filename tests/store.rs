//! The store's statements against a real database, one behaviour each: the
//! claim, the one-statement record and its guard, the dead-runner rule with
//! its parameter, the run-state mapping, the history filter, the mail queue.
//! The runner's tests exercise the same statements end to end; these pin down
//! what each statement itself promises.

use std::time::Duration;

use chrono::Utc;
use chrono_tz::Tz;
use manage::job::{Job, RunState};
use manage::schedule::Schedule;
use manage::store::{self, Claimant, Prepared};
use postgres::Client;

use crate::harness::TestDb;

const JOBS: &str = "[jobs.a]\ncommand = \"true\"\ninterval = \"01:00:00\"\n\
                    [jobs.b]\ncommand = \"true\"\ninterval = \"01:00:00\"\n\
                    [jobs.c]\ncommand = \"true\"\ninterval = \"01:00:00\"\n";

/// A database with jobs a, b and c; a and c due, b in an hour.
fn setup() -> (TestDb, Client) {
    let db = TestDb::new();
    db.manage().config(JOBS).arg("migrate").ok();
    let mut client = db.client();
    client
        .batch_execute(
            "UPDATE manage.jobs SET next_run = clock_timestamp() - interval '1 second' \
             WHERE name IN ('a', 'c'); \
             UPDATE manage.jobs SET next_run = clock_timestamp() + interval '1 hour' WHERE name = 'b'",
        )
        .unwrap();
    (db, client)
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn job(client: &mut Client, name: &str) -> Job {
    store::job(client, name).unwrap().unwrap()
}

#[test]
fn a_claim_takes_each_due_job_it_defines_once_and_marks_it_running() {
    let (_db, mut client) = setup();
    let defined = names(&["a", "b"]);
    let (runner_id, _) = store::register_runner(&mut client, "testhost", 1, &[], &defined).unwrap();
    let claimant = Claimant {
        runner_id,
        host: "testhost",
        tags: &[],
    };
    let mut prepared = Prepared::default();
    let claimed = store::claim_due(&mut client, &mut prepared, &claimant, 10).unwrap();
    assert_eq!(claimed.len(), 1, "only a: b is not due, c not defined here");
    assert_eq!(claimed[0].job.name, "a");
    assert_eq!(job(&mut client, "a").running_run, Some(claimed[0].run_id));
    let run = store::run(&mut client, claimed[0].run_id).unwrap().unwrap();
    assert_eq!(run.state, RunState::Running);
    assert!(store::claim_due(&mut client, &mut prepared, &claimant, 10)
        .unwrap()
        .is_empty());
}

#[test]
fn a_claim_with_its_agenda_leaves_out_what_it_claimed() {
    let (_db, mut client) = setup();
    let defined = names(&["a", "b", "c"]);
    let (runner_id, _) = store::register_runner(&mut client, "testhost", 1, &[], &defined).unwrap();
    let claimant = Claimant {
        runner_id,
        host: "testhost",
        tags: &[],
    };
    let b_next = job(&mut client, "b").next_run;
    let mut prepared = Prepared::default();
    // One of the two due jobs: the agenda still has the other, due now.
    let (claimed, agenda) =
        store::claim_due_with_agenda(&mut client, &mut prepared, &claimant, 1).unwrap();
    let agenda = agenda.expect("the statement answers the agenda");
    assert_eq!(claimed.len(), 1);
    let first = claimed[0].job.name.clone();
    assert!(first == "a" || first == "c", "{first}");
    assert!(agenda.next_due.is_some_and(|d| d <= agenda.db_now));
    assert!(!agenda.held);
    // The other: what is left is b's next run, in an hour.
    let (claimed, agenda) =
        store::claim_due_with_agenda(&mut client, &mut prepared, &claimant, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_ne!(claimed[0].job.name, first);
    assert_ne!(claimed[0].job.name, "b");
    assert_eq!(agenda.unwrap().next_due, b_next);
    // Nothing due: no run, the same agenda.
    let (claimed, agenda) =
        store::claim_due_with_agenda(&mut client, &mut prepared, &claimant, 10).unwrap();
    assert!(claimed.is_empty());
    assert_eq!(agenda.unwrap().next_due, b_next);
    // Held: nothing is claimed, and the agenda says so.
    store::set_hold(&mut client, None).unwrap();
    client
        .batch_execute("UPDATE manage.jobs SET next_run = clock_timestamp() WHERE name = 'b'")
        .unwrap();
    let (claimed, agenda) =
        store::claim_due_with_agenda(&mut client, &mut prepared, &claimant, 10).unwrap();
    assert!(claimed.is_empty());
    assert!(agenda.unwrap().held);
}

#[test]
fn a_hold_stops_every_claim_until_the_release() {
    let (_db, mut client) = setup();
    let defined = names(&["a", "b", "c"]);
    let (runner_id, _) = store::register_runner(&mut client, "testhost", 1, &[], &defined).unwrap();
    let claimant = Claimant {
        runner_id,
        host: "testhost",
        tags: &[],
    };
    let mut prepared = Prepared::default();
    assert!(!store::set_hold(&mut client, None).unwrap().held);
    assert!(store::claim_due(&mut client, &mut prepared, &claimant, 10)
        .unwrap()
        .is_empty());
    let (was_held, moved) = store::release_hold(&mut client, false, Tz::UTC).unwrap();
    assert!(was_held && moved.is_empty());
    let claimed = store::claim_due(&mut client, &mut prepared, &claimant, 10).unwrap();
    let mut claimed: Vec<_> = claimed.iter().map(|c| c.job.name.as_str()).collect();
    claimed.sort();
    assert_eq!(claimed, ["a", "c"]);
}

#[test]
fn the_one_statement_record_ends_the_run_and_reschedules_while_the_configuration_holds() {
    let (_db, mut client) = setup();
    let defined = names(&["a"]);
    let (runner_id, _) = store::register_runner(&mut client, "testhost", 1, &[], &defined).unwrap();
    let claimant = Claimant {
        runner_id,
        host: "testhost",
        tags: &[],
    };
    let mut prepared = Prepared::default();
    let claimed = store::claim_due(&mut client, &mut prepared, &claimant, 1).unwrap();
    let first = &claimed[0];
    let finished_at = Utc::now();
    let next_run = finished_at + chrono::Duration::hours(1);
    let record = |run: &store::Claimed, client: &mut Client, prepared: &mut Prepared| {
        store::record_fast(
            client,
            prepared,
            &store::FastRecord {
                run_id: run.run_id,
                state: RunState::Succeeded,
                finished_at,
                runtime_seconds: 0.5,
                output: "done\n",
                next_run: Some(next_run),
                job: &run.job,
                streak: run.job.alert_after_run(RunState::Succeeded, false, false),
                claim: None,
                wake_before: finished_at,
            },
        )
        .unwrap()
    };
    assert!(record(first, &mut client, &mut prepared).is_some());
    let a = job(&mut client, "a");
    assert_eq!(a.last_state, Some(RunState::Succeeded));
    assert_eq!(a.running_run, None);
    assert_eq!(
        a.last_success.map(|t| t.timestamp_millis()),
        Some(finished_at.timestamp_millis()),
        "the success is kept with the job"
    );
    assert_eq!(a.last_runtime_seconds, Some(0.5));
    assert_eq!(a.consecutive_failures, 0);
    assert_eq!(
        a.next_run.map(|t| t.timestamp_millis()),
        Some(next_run.timestamp_millis())
    );
    let run = store::run(&mut client, first.run_id).unwrap().unwrap();
    assert_eq!(
        (run.state, run.output.as_str()),
        (RunState::Succeeded, "done\n")
    );

    // Claimed again, then reconfigured while it runs: the statement writes
    // nothing, and the caller takes the general path.
    store::set_next_run(
        &mut client,
        "a",
        Some(Utc::now() - chrono::Duration::seconds(1)),
    )
    .unwrap();
    let second = store::claim_due(&mut client, &mut prepared, &claimant, 1).unwrap();
    store::set_override(&mut client, "a", Some(&Schedule::Interval(60))).unwrap();
    assert!(record(&second[0], &mut client, &mut prepared).is_none());
    let run = store::run(&mut client, second[0].run_id).unwrap().unwrap();
    assert_eq!(run.state, RunState::Running, "nothing was written");
}

/// The payloads of the notifications `listener` received before `marker`,
/// which another session sends now: notifications arrive in commit order, so
/// whatever was committed before is in the list, with no waiting on a clock.
fn notifications_before_marker(listener: &mut Client, other: &mut Client) -> Vec<String> {
    use postgres::fallible_iterator::FallibleIterator;
    other
        .batch_execute("SELECT pg_notify('manage_scheduled_jobs', 'marker')")
        .unwrap();
    let mut seen = Vec::new();
    let mut notifications = listener.notifications();
    let mut iter = notifications.blocking_iter();
    while let Some(n) = iter.next().unwrap() {
        if n.payload() == "marker" {
            return seen;
        }
        seen.push(n.payload().to_string());
    }
    panic!("the listener's connection closed");
}

#[test]
fn the_one_statement_record_notifies_only_when_someone_must_learn_of_it() {
    let (db, mut client) = setup();
    let mut listener = db.client();
    store::listen(&mut listener).unwrap();
    let mut other = db.client();
    let defined = names(&["a"]);
    let (runner_id, _) = store::register_runner(&mut client, "testhost", 1, &[], &defined).unwrap();
    let claimant = Claimant {
        runner_id,
        host: "testhost",
        tags: &[],
    };
    let mut prepared = Prepared::default();
    let record = |run: &store::Claimed, client: &mut Client, prepared: &mut Prepared, hours| {
        let finished_at = Utc::now();
        store::record_fast(
            client,
            prepared,
            &store::FastRecord {
                run_id: run.run_id,
                state: RunState::Succeeded,
                finished_at,
                runtime_seconds: 0.5,
                output: "",
                next_run: Some(finished_at + chrono::Duration::hours(hours)),
                job: &run.job,
                streak: run.job.alert_after_run(RunState::Succeeded, false, false),
                claim: None,
                wake_before: finished_at + chrono::Duration::seconds(10),
            },
        )
        .unwrap()
        .expect("recorded")
    };
    // A scheduled run whose next run is an hour away: no one needs to know.
    let claimed = store::claim_due(&mut client, &mut prepared, &claimant, 1).unwrap();
    assert!(notifications_before_marker(&mut listener, &mut other).is_empty());
    record(&claimed[0], &mut client, &mut prepared, 1);
    assert_eq!(
        notifications_before_marker(&mut listener, &mut other),
        Vec::<String>::new(),
        "no NOTIFY for a run no one waits on"
    );

    // A requested run (run-now, trigger_next): a `run-now --wait` may be waiting.
    store::trigger_job(&mut other, "a", 0, &[]).unwrap();
    assert_eq!(
        notifications_before_marker(&mut listener, &mut other),
        ["a"]
    );
    let claimed = store::claim_due(&mut client, &mut prepared, &claimant, 1).unwrap();
    assert_eq!(claimed.len(), 1);
    record(&claimed[0], &mut client, &mut prepared, 1);
    assert_eq!(
        notifications_before_marker(&mut listener, &mut other),
        [""],
        "the record of a requested run NOTIFYs"
    );

    // A run-now that arrived during the run: the next run is at once.
    store::set_next_run(
        &mut client,
        "a",
        Some(Utc::now() - chrono::Duration::seconds(1)),
    )
    .unwrap();
    let claimed = store::claim_due(&mut client, &mut prepared, &claimant, 1).unwrap();
    store::trigger_job(&mut other, "a", 0, &[]).unwrap();
    assert_eq!(
        notifications_before_marker(&mut listener, &mut other),
        ["a"]
    );
    record(&claimed[0], &mut client, &mut prepared, 1);
    assert_eq!(notifications_before_marker(&mut listener, &mut other), [""]);

    // A scheduled run whose next run is sooner than a heartbeat: other
    // runners would sleep past it.
    store::set_next_run(
        &mut client,
        "a",
        Some(Utc::now() - chrono::Duration::seconds(1)),
    )
    .unwrap();
    let claimed = store::claim_due(&mut client, &mut prepared, &claimant, 1).unwrap();
    assert_eq!(claimed.len(), 1);
    record(&claimed[0], &mut client, &mut prepared, 0);
    assert_eq!(notifications_before_marker(&mut listener, &mut other), [""]);
}

#[test]
fn a_run_is_finished_once() {
    let (_db, mut client) = setup();
    let defined = names(&["a"]);
    let (runner_id, _) = store::register_runner(&mut client, "testhost", 1, &[], &defined).unwrap();
    let claimant = Claimant {
        runner_id,
        host: "testhost",
        tags: &[],
    };
    let claimed = store::claim_due(&mut client, &mut Prepared::default(), &claimant, 1).unwrap();
    let id = claimed[0].run_id;
    let finish = |client: &mut Client, state| {
        store::finish_run(client, id, state, Utc::now(), 1.0, "")
            .unwrap()
            .is_some()
    };
    assert!(finish(&mut client, RunState::Interrupted));
    assert!(
        !finish(&mut client, RunState::Succeeded),
        "already recorded"
    );
    let run = store::run(&mut client, id).unwrap().unwrap();
    assert_eq!(run.state, RunState::Interrupted);
}

#[test]
fn a_run_is_orphaned_once_its_runner_lost_its_lock_and_is_silent_for_dead_after() {
    let (db, mut client) = setup();
    let mut runner = db.client();
    let defined = names(&["a"]);
    let (runner_id, _) = store::register_runner(&mut runner, "testhost", 1, &[], &defined).unwrap();
    let claimant = Claimant {
        runner_id,
        host: "testhost",
        tags: &[],
    };
    let claimed = store::claim_due(&mut runner, &mut Prepared::default(), &claimant, 1).unwrap();
    let orphans = |client: &mut Client, dead_after| {
        store::orphan_runs(client, dead_after)
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>()
    };
    assert!(
        orphans(&mut client, Duration::ZERO).is_empty(),
        "its session still holds the lock"
    );
    drop(runner);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        orphans(&mut client, Duration::from_secs(3600)).is_empty(),
        "its heartbeat is recent"
    );
    assert_eq!(orphans(&mut client, Duration::ZERO), [claimed[0].run_id]);
}

#[test]
fn an_unknown_run_state_in_the_database_is_an_error_not_a_guess() {
    let (_db, mut client) = setup();
    client
        .batch_execute("UPDATE manage.jobs SET last_state = 'exploded' WHERE name = 'a'")
        .unwrap();
    let error = store::job(&mut client, "a").unwrap_err();
    assert!(
        format!("{error:?}").contains("unknown run state \\\"exploded\\\""),
        "{error:?}"
    );
}

#[test]
fn the_failed_history_is_every_finished_state_but_succeeded() {
    let (_db, mut client) = setup();
    let start = Utc::now() - chrono::Duration::hours(1);
    for state in RunState::ALL {
        let finished = (state != RunState::Running).then_some(start);
        crate::harness::insert_run(&mut client, "a", state.as_str(), start, finished, "");
    }
    let page = store::history_page(
        &mut client,
        &store::HistoryFilter {
            job: Some("a"),
            failed: true,
        },
        1,
        50,
    )
    .unwrap();
    let mut states: Vec<RunState> = page.iter().map(|r| r.state).collect();
    states.sort_by_key(|s| s.as_str());
    assert_eq!(
        states,
        [RunState::Failed, RunState::Interrupted, RunState::TimedOut]
    );
}

#[test]
fn a_queued_mail_keeps_its_headers_and_counts_its_failed_attempts() {
    let (_db, mut client) = setup();
    let mail = manage::mail::Mail {
        subject: "Scheduled job 'A' failed".into(),
        body: "boom\n".into(),
        headers: vec![("Auto-Submitted".into(), "auto-generated".into())],
    };
    store::queue_mail(&mut client, "ops@example.com", "manage@host", &mail, None).unwrap();
    let queued = store::queued_mails(&mut client).unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].headers, mail.headers);
    assert_eq!(queued[0].attempts, 0);
    store::mail_failed(&mut client, &[queued[0].id], "connection refused").unwrap();
    let again = store::queued_mails(&mut client).unwrap();
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("connection refused"));
    store::mail_sent(&mut client, again[0].id).unwrap();
    assert_eq!(store::mail_queue_len(&mut client).unwrap(), 0);
}

#[test]
fn a_claim_takes_one_due_extra_run_with_its_arguments_and_a_given_back_claim_returns_them() {
    let (_db, mut client) = setup();
    let defined = names(&["b"]);
    let (runner_id, _) = store::register_runner(&mut client, "testhost", 1, &[], &defined).unwrap();
    let claimant = Claimant {
        runner_id,
        host: "testhost",
        tags: &[],
    };
    // b is due in an hour: its two extra runs with arguments, one due now,
    // bring it forward (the trigger of migration 0019).
    store::trigger_job(&mut client, "b", 0, &names(&["x", "y z"])).unwrap();
    store::trigger_job(&mut client, "b", 3600, &names(&["later"])).unwrap();
    let mut prepared = Prepared::default();
    let claimed = store::claim_due(&mut client, &mut prepared, &claimant, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].args, names(&["x", "y z"]));
    let run = store::run(&mut client, claimed[0].run_id).unwrap().unwrap();
    assert_eq!(run.args, names(&["x", "y z"]));
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM manage.extra_runs WHERE job = 'b'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "only the due one was taken");
    // Given back, the run's arguments are pending again, and due.
    assert!(store::release_claim(&mut client, claimed[0].run_id, "b").unwrap());
    let claimed = store::claim_due(&mut client, &mut prepared, &claimant, 10).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].args, names(&["x", "y z"]));
}

/// The jobs each runner defines, as `manage.runner_jobs` holds them.
fn runner_jobs(client: &mut Client, runner_id: i64) -> Vec<String> {
    client
        .query(
            "SELECT job FROM manage.runner_jobs WHERE runner_id = $1 ORDER BY job",
            &[&runner_id],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn a_runners_list_of_jobs_goes_when_it_is_gone_and_comes_back_when_it_rejoins() {
    let (db, mut client) = setup();
    let mut first = db.client();
    let defined = names(&["a", "c"]);
    let (first_id, _) = store::register_runner(&mut first, "testhost", 1, &[], &defined).unwrap();
    assert_eq!(runner_jobs(&mut client, first_id), names(&["a", "c"]));
    // Its session ends (the connection is lost); another runner registers.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let mut second = db.client();
    let (second_id, _) =
        store::register_runner(&mut second, "testhost", 2, &[], &names(&["b"])).unwrap();
    assert!(
        runner_jobs(&mut client, first_id).is_empty(),
        "a runner that is not connected keeps no list"
    );
    // The first comes back: its list again, and it claims by it.
    let mut first = db.client();
    store::rejoin(&mut first, first_id, "testhost", 1, &[], &defined).unwrap();
    assert_eq!(runner_jobs(&mut client, first_id), names(&["a", "c"]));
    let claimant = Claimant {
        runner_id: first_id,
        host: "testhost",
        tags: &[],
    };
    let claimed = store::claim_due(&mut first, &mut Prepared::default(), &claimant, 10).unwrap();
    let mut jobs: Vec<String> = claimed.iter().map(|c| c.job.name.clone()).collect();
    jobs.sort();
    assert_eq!(jobs, names(&["a", "c"]));
    assert_eq!(runner_jobs(&mut client, second_id), names(&["b"]));
    // A runner that stops leaves no list behind.
    store::runner_stopped(&mut second, second_id).unwrap();
    assert!(runner_jobs(&mut client, second_id).is_empty());
}
