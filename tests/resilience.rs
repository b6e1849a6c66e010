//! Faults: runners killed mid-run, signals, a database that restarts or goes
//! away, several runners. Nothing lost, nothing doubled. The tests that stop
//! or restart PostgreSQL use a private cluster of their own.

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use manage::process::GroupIdentity;

use crate::harness::{
    process_running, runs, wait_for, Background, Manage, RunRecord as Run, TestDb,
};
use crate::private_cluster::PrivateCluster;
use crate::relay::Relay;

/// A marker that makes a test's `sleep` processes findable (and unique).
fn marker(test: u32) -> String {
    format!(
        "{}.{test}{}",
        7000 + std::process::id() % 1000,
        std::process::id() % 7
    )
}

fn finished(url: &str, job: &str) -> Vec<Run> {
    runs(url, job)
        .into_iter()
        .filter(|r| r.state != "running")
        .collect()
}

fn running_with_pgid(url: &str, job: &str) -> Option<Run> {
    runs(url, job)
        .into_iter()
        .find(|r| r.state == "running" && r.pgid.is_some())
}

/// The `[runner]` liveness timings these tests use (`crate::timings`):
/// heartbeat 1 s, cut-off 2 s, dead after 3 s — the defaults' 10/20/30 s
/// shrunk, so that no test sleeps through half a minute.
const FAST_LIVENESS: &str =
    "[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n";
const HEARTBEAT: Duration = Duration::from_secs(1);
const CUT_OFF: Duration = Duration::from_secs(2);
const DEAD_AFTER: Duration = Duration::from_secs(3);

fn manage_on(url: &str) -> Manage {
    Manage::new().env("DATABASE_URL", url)
}

fn runner_on(url: &str, config: &str) -> Background {
    manage_on(url)
        .config(config)
        .arg("scheduled_jobs_runner")
        .spawn()
}

/// The job's `sleep {marker}` child is gone within the cut-off (and a margin)
/// of `lost`, when the database went away or fell silent.
fn assert_child_killed_within_the_cut_off(lost: Instant, sleep: &str, runner: &Background) {
    wait_for(Duration::from_secs(30), "the child killed", || {
        !process_running(&format!("sleep {sleep}"))
    });
    let killed_after = lost.elapsed();
    assert!(
        killed_after <= CUT_OFF + Duration::from_secs(2),
        "killed {killed_after:?} after the database was lost: {}",
        runner.log()
    );
}

fn due_now(url: &str, job: &str) {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .execute(
            "UPDATE manage.jobs SET next_run = now() WHERE name = $1",
            &[&job],
        )
        .unwrap();
}

fn kill9(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

#[test]
fn a_runner_killed_mid_run_is_recorded_interrupted_by_the_next_runner() {
    let sleep = marker(1);
    let config = format!(
        "{FAST_LIVENESS}[notifications]\nemail = \"ops@example.com\"\n\
         [jobs.long]\ncommand = \"echo started; sleep {sleep} & wait\"\ndescription = \"Long job\"\ninterval = \"01:00:00\"\n"
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    due_now(&db.url, "long");
    let first = runner_on(&db.url, &config);
    wait_for(Duration::from_secs(10), "the run to start", || {
        running_with_pgid(&db.url, "long").is_some()
    });
    wait_for(Duration::from_secs(5), "the child to run", || {
        process_running(&format!("sleep {sleep}"))
    });
    kill9(first.pid());
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        process_running(&format!("sleep {sleep}")),
        "the grandchild outlives the runner until recovery"
    );

    let second = runner_on(&db.url, &config);
    wait_for(
        Duration::from_secs(50),
        "the run recorded interrupted",
        || {
            finished(&db.url, "long")
                .iter()
                .any(|r| r.state == "interrupted")
        },
    );
    let log = second.stop();
    let run = &finished(&db.url, "long")[0];
    // What the dead runner had captured died with it; the reason remains.
    assert!(run.output.starts_with("Interrupted: "), "{:?}", run.output);
    assert!(
        !process_running(&format!("sleep {sleep}")),
        "the leftover process group is gone"
    );
    assert!(
        log.contains("leftover process") && log.contains("found by the run's mark"),
        "{log}"
    );
    let mails = db.query_strings("SELECT subject FROM manage.mail_queue WHERE run_id IS NOT NULL");
    assert_eq!(
        mails,
        vec![vec!["Scheduled job 'Long job' was interrupted".to_string()]]
    );
    assert_eq!(
        db.value("SELECT count(*) FROM manage.runs WHERE state = 'running'"),
        "0"
    );
}

/// A process of the test's own that looks like a run's as much as it can
/// without its token: the same command line pattern, `MANAGE_RUN_ID` of the
/// run, a token that differs by one character. It must never be touched.
fn decoy(sleep: &str, run_id: i64, token_like: &str) -> std::process::Child {
    std::process::Command::new("sleep")
        .arg(sleep)
        .env("MANAGE_RUN_ID", run_id.to_string())
        .env("MANAGE_RUN_TOKEN", format!("{token_like}0"))
        .process_group(0)
        .spawn()
        .expect("starting the decoy")
}

fn run_token(url: &str, run_id: i64) -> String {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    client
        .query_one("SELECT token FROM manage.runs WHERE id = $1", &[&run_id])
        .unwrap()
        .get(0)
}

/// The environment of the live process whose command line is `sleep NEEDLE`.
fn environment_of(needle: &str) -> Option<String> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let line = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (line.trim_end() == format!("sleep {needle}")).then(|| {
                String::from_utf8_lossy(
                    &std::fs::read(entry.path().join("environ")).unwrap_or_default(),
                )
                .replace('\0', "\n")
            })
        })
}

#[test]
fn a_killed_runners_grandchildren_are_killed_by_the_runs_mark_even_after_setsid_and_a_decoy_lives()
{
    let (in_group, escaped, stranger) = (marker(61), marker(62), marker(63));
    let config = format!(
        "{FAST_LIVENESS}[jobs.long]\ncommand = \"setsid sleep {escaped} & sleep {in_group} & wait\"\n\
         interval = \"01:00:00\"\n"
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    due_now(&db.url, "long");
    let first = runner_on(&db.url, &config);
    wait_for(Duration::from_secs(10), "the run to start", || {
        running_with_pgid(&db.url, "long").is_some()
    });
    wait_for(Duration::from_secs(5), "both grandchildren to run", || {
        process_running(&format!("sleep {in_group}"))
            && process_running(&format!("sleep {escaped}"))
    });
    let run = running_with_pgid(&db.url, "long").unwrap();
    let token = run_token(&db.url, run.id);
    // Every process of the run carries the mark; the token is random per run.
    let environment = environment_of(&escaped).expect("the escaped grandchild's environment");
    assert!(
        environment.contains(&format!("\nMANAGE_RUN_ID={}\n", run.id)),
        "{environment}"
    );
    assert!(
        environment.contains(&format!("\nMANAGE_RUN_TOKEN={token}\n")),
        "{environment}"
    );
    assert!(token.len() >= 32, "{token}");
    let mut decoy = decoy(&stranger, run.id, &token);

    kill9(first.pid());
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        process_running(&format!("sleep {in_group}"))
            && process_running(&format!("sleep {escaped}")),
        "the grandchildren outlive the runner (its child, their group's leader, died with it)"
    );

    let second = runner_on(&db.url, &config);
    wait_for(
        Duration::from_secs(50),
        "the run recorded interrupted",
        || {
            finished(&db.url, "long")
                .iter()
                .any(|r| r.state == "interrupted")
        },
    );
    // Killed before the run was recorded.
    assert!(
        !process_running(&format!("sleep {in_group}")),
        "the grandchild in the group lives"
    );
    assert!(
        !process_running(&format!("sleep {escaped}")),
        "the grandchild that left with setsid lives"
    );
    let log = second.stop();
    assert!(
        log.contains(&format!("Killed 2 leftover processes of run {}", run.id))
            && log.contains("found by the run's mark"),
        "{log}"
    );
    assert!(!log.contains("alone, not provably"), "{log}");
    assert!(
        decoy.try_wait().unwrap().is_none(),
        "the decoy without the token was killed:\n{log}"
    );
    let _ = decoy.kill();
    let _ = decoy.wait();
}

#[test]
fn no_process_of_a_child_run_outlives_its_normal_end_or_its_timeout() {
    let (after_success, after_timeout, stranger) = (marker(64), marker(65), marker(66));
    let config = format!(
        "[jobs.quick]\ncommand = \"setsid sleep {after_success} & echo started\"\ninterval = \"01:00:00\"\n\
         [jobs.slow]\ncommand = \"setsid sleep {after_timeout} & sleep 600\"\ninterval = \"01:00:00\"\ntimeout = \"00:01\"\n"
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    let mut decoy = decoy(&stranger, 1, "");
    due_now(&db.url, "quick");
    due_now(&db.url, "slow");
    let started = Instant::now();
    let runner = runner_on(&db.url, &config);
    wait_for(Duration::from_secs(30), "both runs recorded", || {
        finished(&db.url, "quick").len() == 1 && finished(&db.url, "slow").len() == 1
    });
    let log = runner.stop();
    assert_eq!(finished(&db.url, "quick")[0].state, "succeeded", "{log}");
    assert_eq!(finished(&db.url, "slow")[0].state, "timed_out", "{log}");
    assert!(started.elapsed() < Duration::from_secs(20), "{log}");
    assert!(
        !process_running(&format!("sleep {after_success}")),
        "left after a success:\n{log}"
    );
    assert!(
        !process_running(&format!("sleep {after_timeout}")),
        "left after a timeout:\n{log}"
    );
    assert!(
        decoy.try_wait().unwrap().is_none(),
        "the decoy was killed:\n{log}"
    );
    let _ = decoy.kill();
    let _ = decoy.wait();
}

/// The children of `pid` (every thread's) and their state letters.
fn children_of(pid: i32) -> Vec<(i32, char)> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.filter_map(Result::ok) {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in list
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                .unwrap_or('?');
            found.push((child, state));
        }
    }
    found
}

/// The runner adopts what its runs leave behind when their parent exits (a
/// subreaper, so that the sweep after a run knows when there is nothing to
/// find): the grandchild that left with `setsid` becomes its child when its
/// parent exits, is killed when the run ends, and is reaped, as is an
/// orphaned process that exits on its own while its run goes on. No zombie stays behind, and the runner's children afterwards are
/// the children of running runs only.
#[test]
fn a_runs_adopted_grandchildren_are_killed_at_its_end_and_reaped() {
    let escaped = marker(67);
    // Orphaned at once (its subshell exits), it dies on its own half a
    // second later: a zombie child of the runner until reaped.
    let daemon_ms = 500 + std::process::id() % 97;
    let config = format!(
        "[jobs.escapes]\ncommand = \"setsid sleep {escaped} & sleep 1\"\ninterval = \"01:00:00\"\n\
         [jobs.daemon]\ncommand = \"(sleep 0.{daemon_ms} &) ; sleep 2\"\ninterval = \"01:00:00\"\n\
         [jobs.waits]\ncommand = \"sleep 4\"\ninterval = \"01:00:00\"\n"
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    for job in ["escapes", "daemon", "waits"] {
        due_now(&db.url, job);
    }
    let runner = runner_on(&db.url, &config);
    let pid = runner.pid();
    wait_for(Duration::from_secs(30), "the three runs recorded", || {
        ["escapes", "daemon", "waits"]
            .iter()
            .all(|job| finished(&db.url, job).len() == 1)
    });
    wait_for(
        Duration::from_secs(15),
        "no child of the runner left",
        || children_of(pid).is_empty(),
    );
    let log = runner.stop();
    for job in ["escapes", "daemon", "waits"] {
        assert_eq!(finished(&db.url, job)[0].state, "succeeded", "{job}: {log}");
    }
    assert!(
        !process_running(&format!("sleep {escaped}")),
        "the escaped grandchild outlived its run:\n{log}"
    );
}

/// A process group of the test's own, unrelated to any run: a `sleep` that
/// leads a group of its own. Killed when dropped.
struct Stranger(std::process::Child);

impl Stranger {
    fn start(sleep: &str) -> Stranger {
        let child = std::process::Command::new("sleep")
            .arg(sleep)
            .process_group(0)
            .spawn()
            .expect("starting sleep");
        Stranger(child)
    }

    fn pgid(&self) -> i32 {
        self.0.id() as i32
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A runner that starts up recovers the `running` row of a dead runner on this
/// host whose recorded process group is the live group of a stranger, as this
/// machine and boot see it now with `differ` applied. The stranger must
/// survive, the run must be `interrupted`, and the log must say why the group
/// was left alone (`reason`, when this machine has a machine id to compare).
fn recovery_leaves_the_stranger_alone(test: u32, differ: fn(&mut GroupIdentity), reason: &str) {
    let config =
        format!("{FAST_LIVENESS}[jobs.victim]\ncommand = \"true\"\ninterval = \"01:00:00\"\n");
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    let mut stranger = Stranger::start(&marker(test));
    let mut recorded = GroupIdentity::observe(stranger.pgid());
    assert!(recorded.leader_start.is_some(), "{recorded:?}");
    differ(&mut recorded);
    let host = manage::host::short_host_name();
    let leader_start = recorded.leader_start.map(|t| t as i64);
    let mut client = db.client();
    // Dead: nobody holds its lock and its heartbeat is an hour old.
    let runner_id: i64 = client
        .query_one(
            "INSERT INTO manage.runners (host, pid, started_at, heartbeat) \
             VALUES ($1, 1, now() - interval '2 hours', now() - interval '1 hour') RETURNING id",
            &[&host],
        )
        .unwrap()
        .get(0);
    let run_id: i64 = client
        .query_one(
            "INSERT INTO manage.runs (job, state, started_at, runner_id, host, pgid, \
                                      machine_id, boot_id, leader_start) \
             VALUES ('victim', 'running', now() - interval '1 hour', $1, $2, $3, $4, $5, $6) \
             RETURNING id",
            &[
                &runner_id,
                &host,
                &recorded.pgid,
                &recorded.machine_id,
                &recorded.boot_id,
                &leader_start,
            ],
        )
        .unwrap()
        .get(0);
    client
        .execute(
            "UPDATE manage.jobs SET running_run = $1 WHERE name = 'victim'",
            &[&run_id],
        )
        .unwrap();

    let runner = runner_on(&db.url, &config);
    wait_for(
        Duration::from_secs(20),
        "the run recorded interrupted",
        || {
            runs(&db.url, "victim")
                .iter()
                .any(|r| r.id == run_id && r.state == "interrupted")
        },
    );
    let log = runner.stop();
    assert!(stranger.alive(), "the stranger's group was killed:\n{log}");
    let pgid = stranger.pgid();
    assert!(
        log.contains(&format!(
            "Left the process group {pgid} of run {run_id} alone"
        )),
        "{log}"
    );
    if manage::host::machine_id().is_some() {
        assert!(log.contains(reason), "{log}");
    }
    assert!(!log.contains("Killed the leftover process group"), "{log}");
}

#[test]
fn recovery_leaves_alone_a_live_group_recorded_in_another_boot() {
    recovery_leaves_the_stranger_alone(
        5,
        |g| g.boot_id = Some("7c1e3a52-0000-4000-8000-000000000000".into()),
        "it was recorded in another boot",
    );
}

#[test]
fn recovery_leaves_alone_a_live_group_whose_leader_started_at_another_time() {
    // The run's leader started earlier; its pid now leads the stranger's group.
    recovery_leaves_the_stranger_alone(
        6,
        |g| g.leader_start = g.leader_start.map(|t| t.saturating_sub(100)),
        "its leader process is not the one the run started",
    );
}

#[test]
fn recovery_leaves_alone_a_live_group_recorded_on_another_machine_of_the_same_name() {
    recovery_leaves_the_stranger_alone(
        7,
        |g| g.machine_id = Some("0123456789abcdef0123456789abcdef".into()),
        "it was recorded on another machine",
    );
}

#[test]
fn recovery_leaves_alone_a_live_group_of_a_run_recorded_before_its_identity_was() {
    recovery_leaves_the_stranger_alone(
        8,
        |g| {
            g.machine_id = None;
            g.boot_id = None;
            g.leader_start = None;
        },
        "the run recorded no machine id",
    );
}

#[test]
fn a_live_runner_notices_a_dead_runners_run_within_dead_after_and_a_heartbeat() {
    let sleep = marker(2);
    let config = format!(
        "{FAST_LIVENESS}[jobs.long]\ncommand = \"sleep {sleep}\"\ninterval = \"01:00:00\"\n"
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    let a = runner_on(&db.url, &config);
    let b = runner_on(&db.url, &config);
    wait_for(Duration::from_secs(10), "both runners up", || {
        a.log().contains("Sleeping") && b.log().contains("Sleeping")
    });
    due_now(&db.url, "long");
    wait_for(Duration::from_secs(10), "the run to start", || {
        running_with_pgid(&db.url, "long").is_some()
    });
    let run = running_with_pgid(&db.url, "long").unwrap();
    let pid: i32 = db
        .value(&format!(
            "SELECT pid FROM manage.runners WHERE id = {}",
            run.runner_id.unwrap()
        ))
        .parse()
        .unwrap();
    let (victim, survivor) = if pid == a.pid() { (a, b) } else { (b, a) };
    let killed = Instant::now();
    kill9(victim.pid());
    drop(victim);
    wait_for(
        Duration::from_secs(45),
        "the survivor to record the run",
        || {
            finished(&db.url, "long")
                .iter()
                .any(|r| r.state == "interrupted")
        },
    );
    let noticed = killed.elapsed();
    survivor.stop();
    // Dead `dead_after` after its last heartbeat (at most one heartbeat
    // before the kill), noticed at the survivor's next heartbeat.
    assert!(
        noticed <= DEAD_AFTER + HEARTBEAT + Duration::from_secs(1),
        "noticed after {noticed:?}"
    );
    assert!(
        noticed >= DEAD_AFTER - HEARTBEAT,
        "declared dead before {DEAD_AFTER:?} without a heartbeat: {noticed:?}"
    );
    assert!(!process_running(&format!("sleep {sleep}")));
}

#[test]
fn sigterm_and_sigint_let_a_running_job_finish_and_exit_0() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let config = "[runner]\nshutdown_grace = \"00:10\"\n[jobs.brief]\ncommand = \"sleep 1; echo done\"\ninterval = \"01:00:00\"\n";
        let db = TestDb::new();
        db.manage().config(config).arg("migrate").ok();
        due_now(&db.url, "brief");
        let mut runner = runner_on(&db.url, config);
        wait_for(Duration::from_secs(10), "the run to start", || {
            running_with_pgid(&db.url, "brief").is_some()
        });
        let asked = Instant::now();
        runner.signal(signal);
        assert_eq!(
            runner.wait_exit(Duration::from_secs(10)),
            Some(0),
            "{}",
            runner.log()
        );
        assert!(asked.elapsed() < Duration::from_secs(5));
        let done = finished(&db.url, "brief");
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].state, "succeeded", "signal {signal}");
        assert_eq!(done[0].output, "done\n");
    }
}

#[test]
fn a_job_that_outlives_the_shutdown_grace_is_killed_and_recorded_interrupted() {
    let sleep = marker(3);
    let config = format!(
        "[runner]\nshutdown_grace = \"00:01\"\n[jobs.stubborn]\ncommand = \"echo begun; sleep {sleep}\"\ninterval = \"01:00:00\"\n"
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    due_now(&db.url, "stubborn");
    let mut runner = runner_on(&db.url, &config);
    wait_for(Duration::from_secs(10), "the run to start", || {
        running_with_pgid(&db.url, "stubborn").is_some()
    });
    let asked = Instant::now();
    runner.signal(libc::SIGTERM);
    assert_eq!(
        runner.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        runner.log()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "{:?}",
        asked.elapsed()
    );
    let done = finished(&db.url, "stubborn");
    assert_eq!(done.len(), 1, "{}", runner.log());
    assert_eq!(done[0].state, "interrupted");
    assert!(
        done[0].output.starts_with("begun\n"),
        "{:?}",
        done[0].output
    );
    let last = done[0].output.lines().last().unwrap();
    assert!(last.starts_with("Interrupted: "), "{last}");
    assert!(!process_running(&format!("sleep {sleep}")));
}

#[test]
fn the_runner_rides_through_database_restarts_while_a_job_runs_and_while_it_sleeps() {
    let cluster = PrivateCluster::new();
    let config = "[jobs.through]\ncommand = \"sleep 2; echo survived\"\ninterval = \"01:00:00\"\n[jobs.later]\ncommand = \"echo later\"\n";
    manage_on(&cluster.url).config(config).arg("migrate").ok();
    due_now(&cluster.url, "through");
    let runner = runner_on(&cluster.url, config);
    wait_for(Duration::from_secs(10), "the run to start", || {
        running_with_pgid(&cluster.url, "through").is_some()
    });
    cluster.restart();
    wait_for(
        Duration::from_secs(20),
        "the run recorded after the restart",
        || !finished(&cluster.url, "through").is_empty(),
    );
    let done = finished(&cluster.url, "through");
    assert_eq!(done[0].state, "succeeded", "{}", runner.log());
    assert_eq!(done[0].output, "survived\n");

    // Asleep now: restart again, then a trigger must still wake it.
    std::thread::sleep(Duration::from_millis(500));
    cluster.restart();
    wait_for(Duration::from_secs(20), "the runner to reconnect", || {
        runner
            .log()
            .matches("Listening for notifications again")
            .count()
            >= 2
    });
    cluster
        .client()
        .execute("SELECT manage.trigger_job('later')", &[])
        .unwrap();
    wait_for(Duration::from_secs(10), "the triggered run", || {
        !finished(&cluster.url, "later").is_empty()
    });
    let log = runner.stop();
    assert!(
        log.contains("Lost the database") || log.contains("LISTEN connection failed"),
        "{log}"
    );
    assert_eq!(
        cluster.value("SELECT count(*) FROM manage.runs WHERE state = 'running'"),
        "0"
    );
}

#[test]
fn a_run_that_ends_while_the_database_is_away_is_logged_as_finished_then_as_recorded() {
    let cluster = PrivateCluster::new();
    let config = "[jobs.late]\ncommand = \"sleep 1; echo done\"\ninterval = \"01:00:00\"\n";
    manage_on(&cluster.url).config(config).arg("migrate").ok();
    due_now(&cluster.url, "late");
    let runner = runner_on(&cluster.url, config);
    wait_for(Duration::from_secs(10), "the run to start", || {
        running_with_pgid(&cluster.url, "late").is_some()
    });
    cluster.stop();
    wait_for(Duration::from_secs(10), "the run to end unrecorded", || {
        runner
            .log()
            .contains("recording it once the database is back")
    });
    assert!(
        !runner.log().contains("Job late succeeded"),
        "a success is logged only once recorded:\n{}",
        runner.log()
    );
    cluster.start();
    wait_for(Duration::from_secs(30), "the run recorded", || {
        runner.log().contains("Job late succeeded in ")
    });
    let log = runner.stop();
    let waiting = log
        .lines()
        .position(|l| {
            l.contains("Job late finished in ")
                && l.ends_with(" s (succeeded); recording it once the database is back")
        })
        .unwrap_or_else(|| panic!("{log}"));
    let recorded = log
        .lines()
        .position(|l| l.contains("Job late succeeded in "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(waiting < recorded, "{log}");
    assert_eq!(log.matches("Job late succeeded in ").count(), 1, "{log}");
    assert_eq!(finished(&cluster.url, "late")[0].state, "succeeded");
}

#[test]
fn an_unreachable_database_at_start_up_is_retried() {
    let cluster = PrivateCluster::new();
    let config = "[jobs.first]\ncommand = \"echo first\"\n";
    manage_on(&cluster.url).config(config).arg("migrate").ok();
    cluster.stop();
    let runner = runner_on(&cluster.url, config);
    wait_for(Duration::from_secs(10), "retries", || {
        runner.log().matches("retrying in").count() >= 2
    });
    cluster.start();
    wait_for(Duration::from_secs(20), "the runner to start", || {
        runner.log().contains("Runner ")
    });
    manage_on(&cluster.url)
        .config(config)
        .args(["jobs", "run-now", "first"])
        .ok();
    wait_for(Duration::from_secs(10), "the run", || {
        !finished(&cluster.url, "first").is_empty()
    });
    let log = runner.stop();
    assert!(
        log.contains("retrying in 0.5 s") && log.contains("retrying in 1.0 s"),
        "{log}"
    );
}

#[test]
fn a_database_gone_for_longer_than_the_cut_off_gets_the_child_killed_and_recorded_interrupted() {
    let sleep = marker(4);
    let cluster = PrivateCluster::new();
    let config = format!(
        "{FAST_LIVENESS}[jobs.cutoff]\ncommand = \"echo begun; sleep {sleep}\"\ninterval = \"01:00:00\"\n"
    );
    manage_on(&cluster.url).config(&config).arg("migrate").ok();
    due_now(&cluster.url, "cutoff");
    let runner = runner_on(&cluster.url, &config);
    wait_for(Duration::from_secs(10), "the run to start", || {
        running_with_pgid(&cluster.url, "cutoff").is_some()
    });
    let stopped = Instant::now();
    cluster.stop();
    assert_child_killed_within_the_cut_off(stopped, &sleep, &runner);
    std::thread::sleep(Duration::from_secs(2));
    cluster.start();
    wait_for(Duration::from_secs(20), "the run recorded", || {
        !finished(&cluster.url, "cutoff").is_empty()
    });
    let log = runner.stop();
    let all = runs(&cluster.url, "cutoff");
    assert_eq!(all.len(), 1, "no second copy ran: {all:?}");
    assert_eq!(all[0].state, "interrupted");
    assert!(all[0].output.starts_with("begun\n"), "{:?}", all[0].output);
    assert!(
        all[0]
            .output
            .contains("Interrupted: the runner lost its database"),
        "{:?}",
        all[0].output
    );
    assert!(log.contains("Cut off from the database for 2 s"), "{log}");
}

#[test]
fn three_runners_with_one_killed_never_overlap_nor_run_a_slot_twice() {
    let mut config = format!("{FAST_LIVENESS}max_parallel = 2\n");
    for i in 0..8 {
        config.push_str(&format!(
            "[jobs.s{i}]\ncommand = \"sleep 0.1\"\ninterval = \"00:01\"\n"
        ));
    }
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    let runners: Vec<Background> = (0..3).map(|_| runner_on(&db.url, &config)).collect();
    std::thread::sleep(Duration::from_secs(8));
    let mut runners = runners.into_iter();
    let victim = runners.next().unwrap();
    kill9(victim.pid());
    drop(victim);
    // Long enough for the victim to be declared dead and its runs recovered
    // (twice what that takes), and for the jobs to run on.
    std::thread::sleep(2 * (DEAD_AFTER + HEARTBEAT));
    for runner in runners {
        runner.stop();
    }
    assert_eq!(
        db.value("SELECT count(*) FROM manage.runs WHERE state = 'running'"),
        "0",
        "nothing left running"
    );
    for i in 0..8 {
        let all = runs(&db.url, &format!("s{i}"));
        assert!(all.len() >= 10, "s{i} ran {} times", all.len());
        for pair in all.windows(2) {
            let previous_end = pair[0].finished_at.unwrap();
            assert!(
                pair[1].started_at >= previous_end + chrono::Duration::milliseconds(999),
                "s{i}: run {} started {:?} after run {} ({}) ended",
                pair[1].id,
                pair[1].started_at - previous_end,
                pair[0].id,
                pair[0].state
            );
        }
    }
}

#[test]
fn a_url_with_several_hosts_follows_a_failover_to_the_read_write_one() {
    let primary = PrivateCluster::new();
    let standby = PrivateCluster::new();
    let config = "[jobs.after_failover]\ncommand = \"echo on the new primary\"\n";
    for cluster in [&primary, &standby] {
        manage_on(&cluster.url).config(config).arg("migrate").ok();
    }
    standby.set_read_only(true);
    let url = format!(
        "host={},{} port=5432 user=postgres dbname=postgres target_session_attrs=read-write",
        primary.socket_dir().display(),
        standby.socket_dir().display()
    );
    let runner = runner_on(&url, config);
    wait_for(Duration::from_secs(10), "the runner to start", || {
        runner.log().contains("Runner ")
    });
    assert_eq!(primary.value("SELECT count(*) FROM manage.runners"), "1");
    assert_eq!(standby.value("SELECT count(*) FROM manage.runners"), "0");

    // The failover: the standby is promoted, the primary goes away.
    standby.set_read_only(false);
    primary.stop();
    wait_for(Duration::from_secs(30), "the runner to reconnect", || {
        runner.log().contains("Reconnected to the database")
    });
    standby
        .client()
        .execute("SELECT manage.trigger_job('after_failover')", &[])
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the run on the new primary",
        || !finished(&standby.url, "after_failover").is_empty(),
    );
    let log = runner.stop();
    let done = finished(&standby.url, "after_failover");
    assert_eq!(done[0].state, "succeeded", "{log}");
    assert_eq!(done[0].output, "on the new primary\n");
}

#[test]
fn a_record_that_fails_on_a_lock_timeout_is_retried_until_it_is_written() {
    let config = "[jobs.locked]\ncommand = \"sleep 1; echo done\"\ninterval = \"01:00:00\"\n";
    let db = TestDb::new();
    // Every session of the runner gives up on a lock after 200 ms, as a
    // database configured with a lock_timeout does.
    db.client()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET lock_timeout = '200ms'",
            db.name
        ))
        .unwrap();
    db.manage().config(config).arg("migrate").ok();
    due_now(&db.url, "locked");
    let runner = runner_on(&db.url, config);
    wait_for(Duration::from_secs(10), "the run to start", || {
        running_with_pgid(&db.url, "locked").is_some()
    });
    // An application transaction holds the job's row while the run ends.
    let mut app = db.client();
    let mut tx = app.transaction().unwrap();
    tx.execute(
        "SELECT 1 FROM manage.jobs WHERE name = 'locked' FOR UPDATE",
        &[],
    )
    .unwrap();
    wait_for(Duration::from_secs(10), "a failed try to record", || {
        runner.log().contains("Error recording the run")
    });
    std::thread::sleep(Duration::from_millis(1500));
    tx.commit().unwrap();
    wait_for(Duration::from_secs(15), "the run recorded", || {
        !finished(&db.url, "locked").is_empty()
    });
    let log = runner.stop();
    let done = finished(&db.url, "locked");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, "succeeded", "{log}");
    assert_eq!(done[0].output, "done\n");
    assert!(
        log.contains(
            "Error recording the run: canceling statement due to lock timeout; retrying in"
        ),
        "{log}"
    );
    assert_eq!(
        db.value("SELECT last_state FROM manage.jobs WHERE name = 'locked'"),
        "succeeded"
    );
    assert_eq!(
        db.value("SELECT count(*) FROM manage.runs WHERE state = 'running'"),
        "0"
    );
}

#[test]
fn a_database_that_stops_answering_gets_the_child_killed_at_the_cut_off_and_sigterm_still_ends_the_runner(
) {
    let sleep = marker(5);
    let config = format!(
        "{FAST_LIVENESS}shutdown_grace = \"00:01\"\n\
         [jobs.silent]\ncommand = \"echo begun; sleep {sleep}\"\ninterval = \"01:00:00\"\n"
    );
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    due_now(&db.url, "silent");
    let relay = Relay::to(&db.url);
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        relay.port, db.name
    );
    let mut runner = runner_on(&url, &config);
    wait_for(Duration::from_secs(10), "the child to run", || {
        running_with_pgid(&db.url, "silent").is_some() && process_running(&format!("sleep {sleep}"))
    });
    let frozen = Instant::now();
    relay.freeze();
    assert_child_killed_within_the_cut_off(frozen, &sleep, &runner);
    assert!(
        runner.log().contains("Cut off from the database for 2 s"),
        "{}",
        runner.log()
    );
    let asked = Instant::now();
    runner.signal(libc::SIGTERM);
    assert_eq!(
        runner.wait_exit(Duration::from_secs(15)),
        Some(0),
        "{}",
        runner.log()
    );
    // shutdown_grace (1 s) + 5 s, §17.
    assert!(
        asked.elapsed() <= Duration::from_secs(6),
        "exited {:?} after SIGTERM: {}",
        asked.elapsed(),
        runner.log()
    );
}

#[test]
fn a_silent_connection_is_noticed_at_the_cut_off_and_the_runner_is_back_within_5_s_of_the_database_answering(
) {
    let config = format!("{FAST_LIVENESS}[jobs.later]\ncommand = \"echo later\"\n");
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    let relay = Relay::to(&db.url);
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname={}",
        relay.port, db.name
    );
    let runner = runner_on(&url, &config);
    wait_for(Duration::from_secs(10), "the runner to start", || {
        runner.log().contains("Runner ") && runner.log().contains(" started on ")
    });
    // Past a heartbeat, so that the silence begins after a contact.
    std::thread::sleep(HEARTBEAT + Duration::from_millis(200));
    let frozen = Instant::now();
    relay.freeze();
    let until = Instant::now() + Duration::from_secs(20);
    while !runner.log().contains("Lost the database connection: ") {
        assert!(
            Instant::now() < until,
            "the loss not noticed:\n{}",
            runner.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let noticed = frozen.elapsed();
    // The cut-off (2 s here, 20 s by default) counts from the last contact.
    assert!(
        noticed <= CUT_OFF + Duration::from_secs(1),
        "noticed {noticed:?} after the database fell silent:\n{}",
        runner.log()
    );
    assert!(
        runner.log().contains("The database has not answered for "),
        "{}",
        runner.log()
    );
    // Silent for a while longer: the reconnection attempts wait on it too.
    std::thread::sleep(Duration::from_secs(4));
    let listening_before = runner
        .log()
        .matches("Listening for notifications again")
        .count();
    let thawed = Instant::now();
    relay.thaw();
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let log = runner.log();
        if log.contains("Reconnected to the database")
            && log.matches("Listening for notifications again").count() > listening_before
        {
            break;
        }
        assert!(Instant::now() < until, "not back and listening:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = thawed.elapsed();
    assert!(
        back <= Duration::from_secs(5),
        "back {back:?} after the database answered again:\n{}",
        runner.log()
    );
    // LISTEN works again: a trigger wakes it.
    db.client()
        .execute("SELECT manage.trigger_job('later')", &[])
        .unwrap();
    wait_for(Duration::from_secs(10), "the triggered run", || {
        !finished(&db.url, "later").is_empty()
    });
    drop(runner.stop());
}

#[test]
fn an_idle_runner_closes_its_worker_connections_and_keeps_two() {
    let mut config = format!("{FAST_LIVENESS}idle_close = \"00:02\"\nmax_parallel = 3\n");
    for i in 0..3 {
        config.push_str(&format!(
            "[jobs.busy{i}]\ncommand = \"sleep 1\"\ninterval = \"01:00:00\"\n"
        ));
    }
    let db = TestDb::new();
    db.manage().config(&config).arg("migrate").ok();
    db.client()
        .batch_execute("UPDATE manage.jobs SET next_run = now() WHERE name LIKE 'busy%'")
        .unwrap();
    let runner = runner_on(&db.url, &config);
    let connections = || -> usize {
        db.value(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'manage scheduled_jobs_runner'",
            db.name
        ))
        .parse()
        .unwrap()
    };
    wait_for(Duration::from_secs(10), "three jobs at once", || {
        connections() >= 5
    });
    wait_for(Duration::from_secs(10), "the runs recorded", || {
        (0..3).all(|i| !finished(&db.url, &format!("busy{i}")).is_empty())
    });
    // Unused for idle_close, noticed at the next heartbeat.
    wait_for(
        Duration::from_secs(2) + 3 * HEARTBEAT,
        "the worker connections closed",
        || connections() <= 2,
    );
    runner.stop();
}
