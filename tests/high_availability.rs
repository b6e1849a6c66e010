//! §19 for real: a primary and a streaming standby on 127.0.0.1, a runner
//! on a two-host URL, the primary crashed and the standby promoted. The runs
//! go on on the new primary, nothing overlaps, nothing is left `running`,
//! and with synchronous replication no slot runs twice.

use std::time::{Duration, Instant};

use crate::harness::{runs, wait_for, Background, Manage, RunRecord};
use crate::private_cluster::ReplicatedPair;

/// Liveness shrunk as in `resilience.rs`, a job every second, and one that
/// runs only when asked.
const CONFIG: &str =
    "[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n\
    [jobs.tick]\ncommand = \"echo tick\"\ninterval = \"00:01\"\n\
    [jobs.by_hand]\ncommand = \"echo by hand\"\n";

/// The URL's `connect_timeout`, in seconds.
const CONNECT_TIMEOUT: u64 = 2;

fn url(pair: &ReplicatedPair) -> String {
    pair.url(&format!(
        "target_session_attrs=read-write&connect_timeout={CONNECT_TIMEOUT}"
    ))
}

fn manage(url: &str) -> Manage {
    Manage::new().env("DATABASE_URL", url).config(CONFIG)
}

fn succeeded(url: &str, job: &str) -> Vec<RunRecord> {
    runs(url, job)
        .into_iter()
        .filter(|r| r.state == "succeeded")
        .collect()
}

/// What a failover test measured.
struct Failover {
    pair: ReplicatedPair,
    log: String,
    /// From the promotion's end to the end of the first run on the new primary.
    back_after: Duration,
    /// `jobs run-now by_hand --wait` after the failover.
    run_now_took: Duration,
}

/// Run `tick` through the two-host URL, crash the primary, promote the
/// standby, and watch the runner carry on; then one `run-now --wait`.
fn fail_over(synchronous: bool) -> Failover {
    let pair = ReplicatedPair::new(synchronous);
    let url = url(&pair);
    manage(&url).arg("migrate").ok();
    let runner: Background = manage(&url).arg("scheduled_jobs_runner").spawn();
    wait_for(Duration::from_secs(15), "three runs on the primary", || {
        succeeded(&pair.primary.url, "tick").len() >= 3
    });

    pair.primary.crash();
    pair.standby.promote();
    let promoted = Instant::now();
    let promoted_at = chrono::Utc::now();
    wait_for(
        Duration::from_secs(CONNECT_TIMEOUT + 15),
        "a run on the new primary",
        || {
            succeeded(&pair.standby.url, "tick")
                .iter()
                .any(|r| r.started_at > promoted_at)
        },
    );
    let back_after = promoted.elapsed();

    let asked = Instant::now();
    let run_now = manage(&url)
        .args(["jobs", "run-now", "by_hand", "--wait"])
        .run();
    let run_now_took = asked.elapsed();
    assert_eq!(run_now.code, 0, "{}{}", run_now.stdout, run_now.stderr);
    assert!(run_now.stdout.contains("by hand"), "{}", run_now.stdout);

    wait_for(
        Duration::from_secs(10),
        "more runs on the new primary",
        || {
            succeeded(&pair.standby.url, "tick")
                .iter()
                .filter(|r| r.started_at > promoted_at)
                .count()
                >= 3
        },
    );
    let log = runner.stop();
    eprintln!(
        "failover (synchronous: {synchronous}): first run on the new primary {back_after:?} after the promotion; run-now --wait took {run_now_took:?}"
    );
    Failover {
        pair,
        log,
        back_after,
        run_now_took,
    }
}

/// The checks both tests share, on the new primary.
fn assert_went_on(failover: &Failover) {
    let Failover {
        pair,
        log,
        back_after,
        run_now_took,
    } = failover;
    // connect_timeout + 5 s of the promise, and a second for the job's slot.
    assert!(
        *back_after <= Duration::from_secs(CONNECT_TIMEOUT + 5 + 1),
        "back on the new primary after {back_after:?}:\n{log}"
    );
    assert!(
        *run_now_took <= Duration::from_secs(5),
        "run-now --wait took {run_now_took:?}"
    );
    assert!(log.contains("Reconnected to the database"), "{log}");
    assert!(!log.contains("read-only transaction"), "{log}");
    let new_primary = &pair.standby;
    assert_eq!(
        new_primary.value("SELECT count(*) FROM manage.runs WHERE state = 'running'"),
        "0",
        "nothing left running:\n{log}"
    );
    // Interval jobs are rescheduled from the end of their last run: two runs
    // closer than that overlapped, or ran one slot twice.
    let all = succeeded(&new_primary.url, "tick");
    for pair in all.windows(2) {
        let previous_end = pair[0].finished_at.unwrap();
        assert!(
            pair[1].started_at >= previous_end + chrono::Duration::milliseconds(999),
            "run {} started {:?} after run {} ended:\n{log}",
            pair[1].id,
            pair[1].started_at - previous_end,
            pair[0].id,
        );
    }
}

#[test]
fn a_runner_on_a_two_host_url_goes_on_on_the_promoted_standby() {
    let failover = fail_over(false);
    assert_went_on(&failover);
}

#[test]
fn with_synchronous_replication_no_run_is_repeated_across_a_failover() {
    let failover = fail_over(true);
    assert_went_on(&failover);
    // Every slot once: nothing the old primary ran comes back to run again,
    // so nothing is recorded interrupted either (at most one claim whose
    // answer was lost in the crash, which never ran).
    let interrupted = failover
        .pair
        .standby
        .value("SELECT count(*) FROM manage.runs WHERE state = 'interrupted'");
    assert!(
        interrupted == "0" || interrupted == "1",
        "{interrupted} interrupted:\n{}",
        failover.log
    );
}

#[test]
fn a_runner_on_a_standby_says_so_and_starts_once_it_is_promoted() {
    let pair = ReplicatedPair::new(false);
    manage(&url(&pair)).arg("migrate").ok();
    let standby_only = pair.standby.tcp_url();
    let host = format!("127.0.0.1:{}", pair.standby.port);

    let list = manage(&standby_only).args(["jobs", "list"]).run();
    assert_eq!(list.code, 1, "{}{}", list.stdout, list.stderr);
    assert_eq!(
        list.stderr.trim_end(),
        format!("error: the database at {host} is a read-only standby: list the primary, or add target_session_attrs=read-write")
    );

    let runner = manage(&standby_only)
        .arg("scheduled_jobs_runner")
        .arg("--no-migrate")
        .spawn();
    let line = format!("The database at {host} is read-only (a standby); reconnecting");
    wait_for(Duration::from_secs(10), "the read-only line", || {
        runner.log().contains(&line)
    });
    pair.standby.promote();
    wait_for(Duration::from_secs(15), "the runner to start", || {
        runner.log().contains("Runner ")
    });
    wait_for(Duration::from_secs(10), "a run", || {
        !succeeded(&pair.standby.url, "tick").is_empty()
    });
    let log = runner.stop();
    assert!(!log.contains("read-only transaction"), "{log}");
}

#[test]
fn a_connection_that_turns_read_only_is_a_lost_one_and_the_runner_comes_back() {
    let cluster = crate::private_cluster::PrivateCluster::new();
    manage(&cluster.url).arg("migrate").ok();
    let runner = manage(&cluster.url).arg("scheduled_jobs_runner").spawn();
    wait_for(Duration::from_secs(10), "a run", || {
        !succeeded(&cluster.url, "tick").is_empty()
    });
    cluster.set_read_only(true);
    wait_for(Duration::from_secs(10), "the read-only line", || {
        runner
            .log()
            .contains("is read-only (a standby); reconnecting")
    });
    cluster.set_read_only(false);
    let before = succeeded(&cluster.url, "tick").len();
    wait_for(Duration::from_secs(10), "runs again", || {
        succeeded(&cluster.url, "tick").len() >= before + 2
    });
    let log = runner.stop();
    assert!(!log.contains("read-only transaction"), "{log}");
    assert_eq!(
        cluster.value("SELECT count(*) FROM manage.runs WHERE state = 'running'"),
        "0",
        "{log}"
    );
}
