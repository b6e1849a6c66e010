//! The runner: real `manage scheduled_jobs_runner` processes against the
//! test cluster, observed through the database and `--json`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::harness::{wait_for, Background, RunRecord as Run, TestDb};

fn runs(db: &TestDb, job: &str) -> Vec<Run> {
    crate::harness::runs(&db.url, job)
}

/// A log line `…<prefix>N.N<suffix>`: a duration with one decimal (§10).
fn has_result_line(log: &str, prefix: &str, suffix: &str) -> bool {
    log.lines().any(|line| {
        line.split_once(prefix)
            .and_then(|(_, rest)| rest.strip_suffix(suffix))
            .and_then(|number| number.split_once('.'))
            .is_some_and(|(whole, tenth)| {
                !whole.is_empty()
                    && whole.chars().all(|c| c.is_ascii_digit())
                    && tenth.len() == 1
                    && tenth.chars().all(|c| c.is_ascii_digit())
            })
    })
}

fn finished(db: &TestDb, job: &str) -> Vec<Run> {
    runs(db, job)
        .into_iter()
        .filter(|r| r.state != "running")
        .collect()
}

fn wait_finished(db: &TestDb, job: &str, count: usize, limit: Duration) -> Vec<Run> {
    wait_for(limit, &format!("{count} finished runs of {job}"), || {
        finished(db, job).len() >= count
    });
    finished(db, job)
}

/// A database with `config` synced, and a runner on it.
fn start(config: &str) -> (TestDb, Background) {
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    let runner = db
        .manage()
        .config(config)
        .arg("scheduled_jobs_runner")
        .spawn();
    (db, runner)
}

fn runner(db: &TestDb, config: &str) -> Background {
    db.manage()
        .config(config)
        .arg("scheduled_jobs_runner")
        .spawn()
}

#[test]
fn an_interval_job_repeats_from_the_end_of_its_last_run() {
    let (db, runner) = start("[jobs.tick]\ncommand = \"echo tick\"\ninterval = \"00:01\"\n");
    let done = wait_finished(&db, "tick", 3, Duration::from_secs(15));
    let log = runner.stop();
    for pair in done.windows(2) {
        let gap = pair[1].started_at - pair[0].finished_at.unwrap();
        assert!(
            gap >= chrono::Duration::milliseconds(1000),
            "started {gap:?} after the previous run ended"
        );
        assert!(
            gap < chrono::Duration::milliseconds(2000),
            "started {gap:?} after the previous run ended"
        );
    }
    assert!(done
        .iter()
        .all(|r| r.state == "succeeded" && r.output == "tick\n"));
    assert!(log.contains("Running job tick"), "{log}");
    assert!(
        has_result_line(&log, "Job tick succeeded in ", " s"),
        "{log}"
    );
    assert!(log.contains("Sleeping "), "{log}");
}

#[test]
fn a_times_job_runs_at_its_time_and_not_before() {
    let db = TestDb::new();
    let now: DateTime<Utc> = db.value("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')").parse().unwrap();
    let slot = now + chrono::Duration::seconds(3);
    let config = format!(
        "timezone = \"UTC\"\n[jobs.at_time]\ncommand = \"true\"\ntimes = [\"{}\"]\n",
        slot.format("%H:%M:%S")
    );
    db.manage().config(&config).arg("migrate").ok();
    let runner = runner(&db, &config);
    let done = wait_finished(&db, "at_time", 1, Duration::from_secs(15));
    runner.stop();
    let late = done[0].started_at - slot;
    assert!(late >= chrono::Duration::zero(), "started {late:?} early");
    assert!(late < chrono::Duration::seconds(1), "started {late:?} late");
}

#[test]
fn should_run_false_skips_without_a_history_row() {
    let (db, runner) = start("[jobs.nothing]\ncommand = \"echo ran\"\ninterval = \"00:01\"\nshould_run = \"SELECT false\"\n");
    wait_for(Duration::from_secs(10), "a skip", || {
        !db.value("SELECT coalesce(last_skip::text, '') FROM manage.jobs WHERE name = 'nothing'")
            .is_empty()
    });
    let log = runner.stop();
    assert!(log.contains("Skipping job nothing"), "{log}");
    assert_eq!(runs(&db, "nothing").len(), 0, "skips are not history rows");
    let job = db.manage().config("[jobs.nothing]\ncommand = \"echo ran\"\ninterval = \"00:01\"\nshould_run = \"SELECT false\"\n")
        .args(["jobs", "show", "nothing", "--json"]).json();
    assert!(job["last_skip"].is_string());
    assert!(job["last_run"].is_null());
}

#[test]
fn a_failing_check_runs_the_job_with_the_error_heading_its_output() {
    let (db, runner) = start("[jobs.checked]\ncommand = \"echo body\"\ninterval = \"00:01\"\nshould_run = \"SELECT 1/0 = 1\"\n");
    let done = wait_finished(&db, "checked", 1, Duration::from_secs(10));
    runner.stop();
    assert!(
        done[0]
            .output
            .starts_with("should_run failed: division by zero\n\nbody\n"),
        "{:?}",
        done[0].output
    );
    assert_eq!(done[0].state, "succeeded");
}

#[test]
fn exit_codes_and_signals_are_reported_in_the_output() {
    let config = "[jobs.three]\ncommand = \"echo out; exit 3\"\ninterval = \"01:00:00\"\n\
                  [jobs.killed]\ncommand = \"echo before; kill -9 $$\"\ninterval = \"01:00:00\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name IN ('three', 'killed')")
        .unwrap();
    let runner = runner(&db, config);
    let three = wait_finished(&db, "three", 1, Duration::from_secs(10));
    let killed = wait_finished(&db, "killed", 1, Duration::from_secs(10));
    let log = runner.stop();
    assert_eq!(three[0].state, "failed");
    assert_eq!(three[0].output, "Exit code 3\nout\n");
    assert_eq!(killed[0].state, "failed");
    assert_eq!(killed[0].output, "Killed by signal 9\nbefore\n");
    assert!(
        has_result_line(&log, "Job three failed in ", " s (failed)"),
        "{log}"
    );
}

#[test]
fn a_timeout_kills_the_whole_group_and_nothing_survives() {
    let marker = format!(
        "{}.{}",
        1000 + std::process::id() % 1000,
        Instant::now().elapsed().subsec_nanos() % 1000
    );
    let config = format!(
        "[jobs.slow]\ncommand = \"echo started; sh -c 'sleep {marker} & sleep {marker}'\"\ninterval = \"01:00:00\"\ntimeout = \"00:01\"\n"
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now()")
        .unwrap();
    let runner = runner(&db, &config);
    let done = wait_finished(&db, "slow", 1, Duration::from_secs(20));
    runner.stop();
    assert_eq!(done[0].state, "timed_out");
    assert_eq!(done[0].output, "started\nTimeout of 1 seconds expired.");
    let runtime = done[0].finished_at.unwrap() - done[0].started_at;
    assert!(runtime < chrono::Duration::seconds(5), "{runtime:?}");
    let survivors = std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {marker}")])
        .output()
        .unwrap();
    assert!(
        survivors.stdout.is_empty(),
        "processes survived: {}",
        String::from_utf8_lossy(&survivors.stdout)
    );
}

#[test]
fn output_is_stored_as_text_capped_with_a_line_saying_how_much_was_dropped() {
    let config = "[jobs.binary]\ncommand = \"printf 'a\\\\000b\\\\377c'\"\ninterval = \"01:00:00\"\n\
                  [jobs.big]\ncommand = \"head -c 5242880 /dev/zero | tr '\\\\000' x\"\ninterval = \"01:00:00\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name IN ('binary', 'big')")
        .unwrap();
    let runner = runner(&db, config);
    let binary = wait_finished(&db, "binary", 1, Duration::from_secs(10));
    let big = wait_finished(&db, "big", 1, Duration::from_secs(20));
    runner.stop();
    assert_eq!(binary[0].output, "ab\u{fffd}c");
    let expected = format!(
        "{}\n[output truncated: {} bytes not stored]\n",
        "x".repeat(1 << 20),
        5 * (1 << 20) - (1 << 20)
    );
    assert!(
        big[0].output == expected,
        "the big output is {} bytes, ends {:?}",
        big[0].output.len(),
        &big[0].output[big[0].output.len() - 60..]
    );
}

#[test]
fn trigger_next_runs_the_next_job_right_after() {
    let config = "[jobs.first]\ncommand = \"echo first\"\ninterval = \"01:00:00\"\ntrigger_next = [\"second\"]\n\
                  [jobs.second]\ncommand = \"echo second\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'first'")
        .unwrap();
    let runner = runner(&db, config);
    let second = wait_finished(&db, "second", 1, Duration::from_secs(10));
    runner.stop();
    let first = finished(&db, "first");
    assert!(second[0].started_at >= first[0].finished_at.unwrap());
    assert!(second[0].started_at - first[0].finished_at.unwrap() < chrono::Duration::seconds(1));
}

#[test]
fn a_job_that_cannot_be_started_is_disabled_and_mailed() {
    let config = "[notifications]\nemail = \"ops@example.com\"\n\
                  [jobs.nowhere]\ncommand = \"true\"\nworking_dir = \"no-such-directory\"\ninterval = \"01:00:00\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'nowhere'")
        .unwrap();
    let runner = runner(&db, config);
    let done = wait_finished(&db, "nowhere", 1, Duration::from_secs(10));
    wait_for(Duration::from_secs(5), "the job disabled", || {
        db.value("SELECT enabled::text FROM manage.jobs WHERE name = 'nowhere'") == "false"
    });
    runner.stop();
    assert_eq!(done[0].state, "failed");
    assert!(
        done[0].output.starts_with("Internal error: "),
        "{}",
        done[0].output
    );
    assert!(
        done[0].output.ends_with("Job has been disabled"),
        "{}",
        done[0].output
    );
    assert_eq!(
        db.value("SELECT coalesce(next_run::text, 'none') FROM manage.jobs WHERE name = 'nowhere'"),
        "none"
    );
    assert_eq!(
        db.value("SELECT subject FROM manage.mail_queue WHERE run_id IS NOT NULL"),
        "Exception running scheduled job"
    );
}

#[test]
fn notification_mails_are_queued_for_failures_and_for_successes_with_output_only() {
    let config = "[notifications]\nemail = \"ops@example.com\"\nsender = \"jobs@example.com\"\n\
                  [jobs.bad]\ncommand = \"echo oops; exit 1\"\ndescription = \"Bad job\"\ninterval = \"01:00:00\"\n\
                  [jobs.chatty]\ncommand = \"echo hello\"\ndescription = \"Chatty job\"\ninterval = \"01:00:00\"\nnotify_on_success = true\n\
                  [jobs.quiet]\ncommand = \"true\"\ninterval = \"01:00:00\"\nnotify_on_success = true\n\
                  [jobs.unasked]\ncommand = \"echo hi\"\ninterval = \"01:00:00\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name IN ('bad', 'chatty', 'quiet', 'unasked')")
        .unwrap();
    let runner = runner(&db, config);
    for job in ["bad", "chatty", "quiet", "unasked"] {
        wait_finished(&db, job, 1, Duration::from_secs(10));
    }
    runner.stop();
    let mails = db.query_strings(
        "SELECT r.job, m.recipient, m.sender, m.subject, m.body, m.headers::text FROM manage.mail_queue m JOIN manage.runs r ON r.id = m.run_id ORDER BY r.job",
    );
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert_eq!(mails[0][0], "bad");
    assert_eq!(mails[0][1], "ops@example.com");
    assert_eq!(mails[0][2], "jobs@example.com");
    assert_eq!(mails[0][3], "Scheduled job 'Bad job' failed");
    let body = &mails[0][4];
    assert!(
        body.starts_with("Exit code 1\noops\n\nJob: bad (Bad job)\nHost: "),
        "{body}"
    );
    assert!(
        body.contains("\nStarted: ")
            && body.contains("\nRuntime: ")
            && body.ends_with("\nState: failed\n"),
        "{body}"
    );
    assert!(mails[0][5].contains("\"Auto-Submitted\": \"auto-generated\""));
    assert!(mails[0][5].contains("\"X-Auto-Response-Suppress\": \"All\""));
    assert_eq!(mails[1][3], "Scheduled job 'Chatty job' completed");
}

#[test]
fn hold_stops_everything_and_release_runs_or_reschedules_pending_jobs() {
    let config = "[jobs.held]\ncommand = \"echo ran\"\ninterval = \"01:00:00\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    db.manage().args(["jobs", "hold"]).ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'held'")
        .unwrap();
    let runner = runner(&db, config);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(runs(&db, "held").len(), 0, "nothing runs while held");
    db.manage()
        .args(["jobs", "release", "--pending", "reschedule"])
        .ok();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        runs(&db, "held").len(),
        0,
        "a rescheduled job does not run now"
    );
    db.manage().args(["jobs", "hold"]).ok();
    db.manage()
        .config(config)
        .args(["jobs", "run-now", "held"])
        .ok();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        runs(&db, "held").len(),
        0,
        "run-now during a hold waits for the release"
    );
    let released = Instant::now();
    db.manage()
        .args(["jobs", "release", "--pending", "run"])
        .ok();
    wait_finished(&db, "held", 1, Duration::from_secs(5));
    assert!(
        released.elapsed() < Duration::from_secs(3),
        "the release is seen at once"
    );
    runner.stop();
}

#[test]
fn run_now_during_a_run_makes_exactly_one_more_run() {
    let config = "[jobs.slowish]\ncommand = \"sleep 1.5; echo done\"\n";
    let (db, runner) = start(config);
    db.manage()
        .config(config)
        .args(["jobs", "run-now", "slowish"])
        .ok();
    wait_for(Duration::from_secs(5), "the run to start", || {
        runs(&db, "slowish").len() == 1
    });
    for _ in 0..3 {
        let out = db
            .manage()
            .config(config)
            .args(["jobs", "run-now", "slowish"])
            .ok();
        assert!(
            out.stdout.contains("is running; it will run once more"),
            "{}",
            out.stdout
        );
    }
    wait_finished(&db, "slowish", 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(2500));
    runner.stop();
    assert_eq!(
        finished(&db, "slowish").len(),
        2,
        "several requests during one run make one more run"
    );
}

#[test]
fn once_runs_what_is_due_including_triggered_jobs_and_exits_with_the_result() {
    let good = "[jobs.a]\ncommand = \"echo a\"\ninterval = \"01:00:00\"\ntrigger_next = [\"b\"]\n[jobs.b]\ncommand = \"echo b\"\n";
    let db = TestDb::new();
    db.manage().config(good).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'a'")
        .unwrap();
    let run = db
        .manage()
        .config(good)
        .args(["scheduled_jobs_runner", "--once"])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(finished(&db, "a").len(), 1);
    assert_eq!(finished(&db, "b").len(), 1, "triggered jobs run too");

    let bad = "[jobs.a]\ncommand = \"exit 1\"\ninterval = \"01:00:00\"\n";
    let db = TestDb::new();
    db.manage().config(bad).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'a'")
        .unwrap();
    let run = db
        .manage()
        .config(bad)
        .args(["scheduled_jobs_runner", "--once"])
        .run();
    assert_eq!(run.code, 1, "{}", run.stderr);
}

#[test]
fn run_now_wait_prints_the_output_and_exits_with_the_result() {
    let config = "[jobs.hello]\ncommand = \"echo hello from the job\"\n[jobs.fails]\ncommand = \"echo bad; exit 4\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    let no_runner = db
        .manage()
        .config(config)
        .args(["jobs", "run-now", "hello", "--wait"])
        .run();
    assert_eq!(no_runner.code, 1);
    assert!(
        no_runner.stderr.contains("no runner is connected"),
        "{}",
        no_runner.stderr
    );
    assert_eq!(runs(&db, "hello").len(), 0, "nothing was scheduled");

    let runner = runner(&db, config);
    wait_for(Duration::from_secs(10), "the runner to connect", || {
        runner.log().contains("Runner ") || runner.log().contains("error")
    });
    assert!(runner.log().contains("Runner "), "{}", runner.log());
    let ok = db
        .manage()
        .config(config)
        .args(["jobs", "run-now", "hello", "--wait"])
        .run();
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("hello from the job\n"), "{}", ok.stdout);
    let failed = db
        .manage()
        .config(config)
        .args(["jobs", "run-now", "fails", "--wait"])
        .run();
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stdout.contains("Exit code 4\nbad\n"),
        "{}",
        failed.stdout
    );
    runner.stop();
}

#[test]
fn trigger_job_from_sql_wakes_a_sleeping_runner() {
    let config = "[jobs.by_sql]\ncommand = \"true\"\n";
    let (db, runner) = start(config);
    wait_for(Duration::from_secs(10), "the runner to sleep", || {
        runner.log().contains("Sleeping ")
    });
    let triggered: DateTime<Utc> = db
        .client()
        .query_one(
            "SELECT manage.trigger_job('by_sql'), clock_timestamp()",
            &[],
        )
        .unwrap()
        .get(1);
    let done = wait_finished(&db, "by_sql", 1, Duration::from_secs(5));
    runner.stop();
    let latency = done[0].started_at - triggered;
    assert!(
        latency < chrono::Duration::milliseconds(500),
        "started {latency:?} after the trigger"
    );
}

#[test]
fn two_runners_never_overlap_a_job_nor_run_a_slot_twice() {
    let mut config = String::from("[runner]\nmax_parallel = 3\n");
    for i in 0..6 {
        config.push_str(&format!(
            "[jobs.j{i}]\ncommand = \"sleep 0.0{i}\"\ninterval = \"00:01\"\n"
        ));
    }
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    let a = runner(&db, &config);
    let b = runner(&db, &config);
    std::thread::sleep(Duration::from_secs(10));
    a.stop();
    b.stop();
    for i in 0..6 {
        let all = runs(&db, &format!("j{i}"));
        assert!(all.len() >= 5, "j{i} ran {} times", all.len());
        assert!(all.iter().all(|r| r.state == "succeeded"), "{all:?}");
        for pair in all.windows(2) {
            assert!(
                pair[1].started_at
                    >= pair[0].finished_at.unwrap() + chrono::Duration::milliseconds(999),
                "j{i}: run {} started {:?} after run {} ended",
                pair[1].id,
                pair[1].started_at - pair[0].finished_at.unwrap(),
                pair[0].id
            );
        }
    }
    let runners = db.value("SELECT count(DISTINCT runner_id) FROM manage.runs");
    assert_eq!(runners, "2", "both runners did work");
}

#[test]
fn a_long_job_does_not_block_a_short_one() {
    let config = "[jobs.long]\ncommand = \"sleep 4\"\ninterval = \"01:00:00\"\n[jobs.short]\ncommand = \"true\"\ninterval = \"00:01\"\n";
    let db = TestDb::new();
    db.manage().config(config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name = 'long'")
        .unwrap();
    let runner = runner(&db, config);
    wait_finished(&db, "short", 2, Duration::from_secs(4));
    assert_eq!(
        finished(&db, "long").len(),
        0,
        "the long job is still running"
    );
    runner.stop();
}

#[test]
fn run_now_wait_timeout_gives_up_with_exit_1_and_the_run_goes_on() {
    let config = "[jobs.slow_wait]\ncommand = \"sleep 3; echo finally\"\n";
    let (db, runner) = start(config);
    wait_for(Duration::from_secs(10), "the runner to start", || {
        runner.log().contains("Sleeping ")
    });
    let started = Instant::now();
    let out = db
        .manage()
        .config(config)
        .args([
            "jobs",
            "run-now",
            "slow_wait",
            "--wait",
            "--timeout",
            "00:01",
        ])
        .run();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    assert!(
        out.stderr.contains("the run of job slow_wait goes on"),
        "{}",
        out.stderr
    );
    let done = wait_finished(&db, "slow_wait", 1, Duration::from_secs(10));
    runner.stop();
    assert_eq!(done[0].state, "succeeded");
    assert_eq!(done[0].output, "finally\n");
}

#[test]
fn a_runner_never_claims_a_job_it_does_not_define_and_the_job_waits_for_one_that_does() {
    // A rolling deploy: the old runner is up (started with --no-migrate, as
    // the README says), `manage migrate` brings the new configuration with
    // job c, and c is due before any runner that defines it is up.
    let old = "[jobs.a]\ncommand = \"true\"\ninterval = \"01:00:00\"\n";
    let new = format!("{old}[jobs.c]\ncommand = \"echo c\"\ninterval = \"00:01\"\n");
    let db = TestDb::new();
    db.manage().config(old).arg("migrate").ok();
    let old_runner = db
        .manage()
        .config(old)
        .args(["scheduled_jobs_runner", "--no-migrate"])
        .spawn();
    wait_for(Duration::from_secs(10), "the old runner to sleep", || {
        old_runner.log().contains("Sleeping ")
    });
    db.manage().config(&new).arg("migrate").ok();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET next_run = now() WHERE name = 'c'; \
             SELECT pg_notify('manage_scheduled_jobs', '')",
        )
        .unwrap();
    let cpu_before = old_runner.cpu_seconds();
    std::thread::sleep(Duration::from_secs(2));
    let spent = old_runner.cpu_seconds() - cpu_before;
    assert_eq!(runs(&db, "c").len(), 0, "{}", old_runner.log());
    assert_eq!(
        db.value("SELECT (enabled AND next_run <= now() AND running_run IS NULL)::text FROM manage.jobs WHERE name = 'c'"),
        "true",
        "c stays due and enabled:\n{}",
        old_runner.log()
    );
    assert!(
        spent < 0.3,
        "the old runner spent {spent:.2} s of CPU in 2 s: it spins on a job it cannot claim\n{}",
        old_runner.log()
    );

    let new_runner = db
        .manage()
        .config(&new)
        .args(["scheduled_jobs_runner", "--no-migrate"])
        .spawn();
    let new_pid = new_runner.pid();
    let done = wait_finished(&db, "c", 3, Duration::from_secs(15));
    let old_log = old_runner.stop();
    new_runner.stop();
    let new_id: i64 = db
        .value(&format!(
            "SELECT id FROM manage.runners WHERE pid = {new_pid}"
        ))
        .parse()
        .unwrap();
    assert!(
        done.iter()
            .all(|r| r.runner_id == Some(new_id) && r.state == "succeeded"),
        "{done:?}"
    );
    assert_eq!(
        db.value("SELECT enabled::text FROM manage.jobs WHERE name = 'c'"),
        "true"
    );
    assert!(!old_log.contains("Job c"), "{old_log}");
}

#[test]
fn run_now_wait_on_a_skipped_run_returns_at_once_saying_why() {
    let config = "[jobs.on_demand]\ncommand = \"echo worked\"\n\
                  should_run = \"SELECT EXISTS (SELECT 1 FROM work_items)\"\n";
    let db = TestDb::new();
    db.client()
        .batch_execute("CREATE TABLE work_items (id int)")
        .unwrap();
    db.manage().config(config).arg("migrate").ok();
    let runner = runner(&db, config);
    wait_for(Duration::from_secs(10), "the runner to sleep", || {
        runner.log().contains("Sleeping ")
    });
    let wait = |job: &str| {
        let started = Instant::now();
        let out = db
            .manage()
            .config(config)
            .args(["jobs", "run-now", job, "--wait", "--timeout", "00:10"])
            .run();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        out
    };
    let skipped = |stdout: &str| -> Vec<String> {
        stdout
            .lines()
            .filter(|l| l.starts_with("Skipped:"))
            .map(str::to_string)
            .collect()
    };

    let nothing = wait("on_demand");
    assert_eq!(nothing.code, 0, "{nothing:?}");
    assert_eq!(
        skipped(&nothing.stdout),
        ["Skipped: should_run returned false"],
        "{nothing:?}"
    );

    let no_transport = wait("send_queued_mail");
    assert_eq!(no_transport.code, 0, "{no_transport:?}");
    assert_eq!(
        skipped(&no_transport.stdout),
        ["Skipped: no mail transport is configured"],
        "{no_transport:?}"
    );

    // The skip before this request is not taken for this one.
    db.client()
        .batch_execute("INSERT INTO work_items VALUES (1)")
        .unwrap();
    let worked = wait("on_demand");
    assert_eq!(worked.code, 0, "{worked:?}");
    assert!(skipped(&worked.stdout).is_empty(), "{worked:?}");
    assert!(worked.stdout.contains("worked\n"), "{worked:?}");

    let log = runner.stop();
    assert!(
        log.contains("Skipping job on_demand: should_run returned false"),
        "{log}"
    );
    assert!(
        log.contains("Skipping job send_queued_mail: no mail transport is configured"),
        "{log}"
    );
}
