//! Operations: the systemd unit, the sd_notify protocol, the root warning,
//! shell completions and the man page.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::harness::{is_root, Manage, TestDb, MANAGE};

const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tools/systemd/manage-scheduled-jobs.service"
);

#[test]
fn the_systemd_unit_is_valid_and_has_the_promised_settings() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "Type=notify",
        "After=network-online.target postgresql.service",
        "Requires=postgresql.service",
        "Restart=always",
        "RestartSec=30",
        "User=manage",
        "KillMode=control-group",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "WatchdogSec=60",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed, so the unit was not verified");
        return;
    };
    // Verify a copy whose ExecStart= names a binary that exists here.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("manage-scheduled-jobs.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/manage", MANAGE)).unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_debian_package_unit_runs_the_packaged_binary_as_manage() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tools/debian/manage-scheduled-jobs.service"
    ))
    .unwrap();
    let template = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "ExecStart=/usr/bin/manage scheduled_jobs_runner",
        "User=manage",
        "Environment=MANAGE_CONFIG=/etc/manage/manage.toml",
        "Environment=MANAGE_DATA_DIR=/var/lib/manage",
        "ReadWritePaths=/var/lib/manage",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "the packaged unit lacks {line}"
        );
    }
    // The template's settings, but for the paths and the hard dependency on a
    // local PostgreSQL (a package cannot know where the database is).
    let differs = [
        "Requires=",
        "WorkingDirectory=",
        "ExecStart=",
        "ReadWritePaths=",
    ];
    for line in template
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if !differs.iter().any(|d| line.starts_with(d)) {
            assert!(
                unit.lines().any(|l| l == line),
                "the packaged unit lacks {line}"
            );
        }
    }
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed, so the unit was not verified");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("manage-scheduled-jobs.service");
    std::fs::write(&copy, unit.replace("/usr/bin/manage", MANAGE)).unwrap();
    // Its man page is the package's, not installed here.
    let out = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    let paths = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

/// Receive datagrams until `until` matches one, at most `limit`.
fn receive_until(
    socket: &UnixDatagram,
    limit: Duration,
    seen: &mut Vec<String>,
    until: impl Fn(&str) -> bool,
) {
    let deadline = Instant::now() + limit;
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buffer) {
            let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
            let done = until(&message);
            seen.push(message);
            if done {
                return;
            }
        }
    }
    panic!("timed out; messages so far: {seen:?}");
}

#[test]
fn the_runner_speaks_sd_notify_ready_status_watchdog_and_stopping() {
    let db = TestDb::new();
    let config = "[jobs.tick]\ncommand = \"true\"\ninterval = \"00:01\"\n";
    db.manage().config(config).arg("migrate").ok();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let runner = db
        .manage()
        .config(config)
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "1000000")
        .env("JOURNAL_STREAM", "8:1234")
        .arg("scheduled_jobs_runner")
        .spawn();
    let mut seen = Vec::new();
    receive_until(&socket, Duration::from_secs(10), &mut seen, |m| {
        m.contains("READY=1")
    });
    assert!(
        seen.last().unwrap().starts_with("READY=1\nSTATUS="),
        "{seen:?}"
    );
    receive_until(&socket, Duration::from_secs(5), &mut seen, |m| {
        m.starts_with("STATUS=Sleeping until ")
    });
    receive_until(&socket, Duration::from_secs(5), &mut seen, |m| {
        m.starts_with("STATUS=Running 1 job(s)")
    });
    // Half of WATCHDOG_USEC: at least two pings in 1.5 s.
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        receive_until(&socket, Duration::from_secs(2), &mut seen, |m| {
            m == "WATCHDOG=1"
        });
        pings += 1;
    }
    assert!(pings >= 2, "{seen:?}");
    runner.signal(libc::SIGTERM);
    receive_until(&socket, Duration::from_secs(10), &mut seen, |m| {
        m.starts_with("STOPPING=1")
    });
    let log = runner.stop();
    // Under the journal: no timestamps at the start of lines.
    assert!(
        log.lines().any(|l| l.starts_with("Running job tick")),
        "{log}"
    );
}

#[test]
fn a_runner_started_as_root_warns() {
    let db = TestDb::new();
    let run = db.manage().args(["scheduled_jobs_runner", "--once"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let warned = run
        .stderr
        .lines()
        .any(|l| l == "warning: running as root; run the runner as an unprivileged user");
    assert_eq!(warned, is_root(), "{}", run.stderr);
}

#[test]
fn completions_and_man_page_are_generated_with_the_job_commands() {
    let config = "[jobs.clean_tmp]\ncommand = \"true\"\ndescription = \"Clean temporary files\"\n";
    for shell in ["bash", "zsh", "fish"] {
        let run = Manage::new()
            .config(config)
            .args(["completions", shell])
            .ok();
        for name in [
            "scheduled_jobs_runner",
            "purge_job_history",
            "clean_tmp",
            "configure",
        ] {
            assert!(run.stdout.contains(name), "{shell} completions lack {name}");
        }
    }
    let bash = Manage::new()
        .config(config)
        .args(["completions", "bash"])
        .ok();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("manage.bash");
    std::fs::write(&script, &bash.stdout).unwrap();
    let check = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(check.success(), "the bash completions are not valid bash");

    let man = Manage::new().config(config).arg("man").ok();
    assert!(
        man.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        &man.stdout[..80]
    );
    assert!(man.stdout.contains(".TH manage 1"));
    for name in ["scheduled_jobs_runner", "purge_job_history", "clean_tmp"] {
        assert!(man.stdout.contains(name), "the man page lacks {name}");
    }
    Manage::new()
        .args(["completions", "tcsh"])
        .run()
        .assert_bad_input(&["tcsh"]);
    let help = Manage::new().arg("--help").ok();
    assert!(
        help.stdout.contains("completions") && help.stdout.contains("  man "),
        "{}",
        help.stdout
    );
}

/// Three jobs made due at once: one succeeds, one fails, one is skipped.
const LOGGED_JOBS: &str = "[jobs.good]\ncommand = \"echo fine\"\ninterval = \"01:00:00\"\n\
                           [jobs.bad]\ncommand = \"exit 3\"\ninterval = \"01:00:00\"\n\
                           [jobs.idle]\ncommand = \"echo never\"\ninterval = \"01:00:00\"\n\
                           should_run = \"SELECT false\"\n";

/// Run `--once` over LOGGED_JOBS with `configure` applied to the command,
/// and parse every stderr line as one JSON object.
fn json_log_of_one_pass(configure: impl Fn(Manage) -> Manage) -> Vec<serde_json::Value> {
    let db = TestDb::new();
    db.manage().config(LOGGED_JOBS).arg("migrate").ok();
    db.client()
        .batch_execute(
            "UPDATE manage.jobs SET next_run = now() WHERE name IN ('good', 'bad', 'idle')",
        )
        .unwrap();
    let run = configure(
        db.manage()
            .config(LOGGED_JOBS)
            .env("MANAGE_TIMEZONE", "Europe/Berlin")
            .args(["scheduled_jobs_runner", "--once"]),
    )
    .run();
    assert_eq!(run.code, 1, "one job failed:\n{}", run.stderr);
    let log: Vec<serde_json::Value> = run
        .stderr
        .lines()
        // Every line, the command line's own root warning included (§18).
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{}", run.stderr));
            let ts = value["ts"]
                .as_str()
                .unwrap_or_else(|| panic!("no ts: {line}"));
            let parsed = chrono::DateTime::parse_from_rfc3339(ts).expect("ts is RFC 3339");
            assert_eq!(ts.len(), "2026-11-27T16:52:17.123+01:00".len(), "{ts}");
            assert!(
                [3600, 7200].contains(&parsed.offset().local_minus_utc()),
                "ts in the configured zone: {ts}"
            );
            assert!(
                ["info", "warn", "error"].contains(&value["level"].as_str().unwrap_or("")),
                "{line}"
            );
            assert!(value["msg"].is_string(), "{line}");
            value
        })
        .collect();
    if is_root() {
        let warning = entry(&log, "running as root");
        assert_eq!(warning["level"], "warn", "{warning}");
    }
    log
}

#[test]
fn a_json_runner_that_cannot_start_says_why_in_json_too() {
    // A configuration error: the last line is the error, as a JSON entry
    // of level error (before, a plain `error: …` line).
    let broken = Manage::new()
        .config("[runner]\nmax_parallel = \"many\"\n")
        .args(["scheduled_jobs_runner", "--log-format", "json"])
        .run();
    {
        let (run, code, says) = (&broken, 2, "max_parallel");
        assert_eq!(run.code, code, "{}", run.stderr);
        let lines: Vec<serde_json::Value> = run
            .stderr
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{}", run.stderr))
            })
            .collect();
        let last = lines.last().expect("an error line");
        assert_eq!(last["level"], "error", "{last}");
        let msg = last["msg"].as_str().expect("msg");
        assert!(msg.contains(says) && !msg.starts_with("error:"), "{msg}");
        assert!(last["ts"].is_string(), "{last}");
    }
}

/// The one entry whose `msg` starts with `prefix`.
fn entry<'a>(log: &'a [serde_json::Value], prefix: &str) -> &'a serde_json::Value {
    let found: Vec<_> = log
        .iter()
        .filter(|e| e["msg"].as_str().unwrap().starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "one {prefix:?} entry in {log:#?}");
    found[0]
}

fn assert_json_log(log: &[serde_json::Value]) {
    let started = entry(log, "Runner ");
    assert_eq!(started["level"], "info");
    assert!(started.get("job").is_none(), "{started}");

    let running = entry(log, "Running job good");
    assert_eq!(running["job"], "good");
    assert_eq!(running["state"], "running");
    let run_id = running["run_id"].as_i64().expect("run_id is an integer");
    assert!(running.get("duration_seconds").is_none(), "{running}");

    let good = entry(log, "Job good succeeded in ");
    assert_eq!(good["level"], "info");
    assert_eq!(good["job"], "good");
    assert_eq!(good["run_id"], run_id);
    assert_eq!(good["state"], "succeeded");
    let secs = good["duration_seconds"].as_f64().expect("a number");
    assert!((0.0..10.0).contains(&secs), "{good}");
    // The human line's text, the duration with one decimal.
    assert_eq!(
        good["msg"],
        format!("Job good succeeded in {secs:.1} s"),
        "{good}"
    );

    let bad = entry(log, "Job bad failed in ");
    assert_eq!(bad["level"], "warn");
    assert_eq!(bad["state"], "failed");
    assert!(
        bad["run_id"].is_i64() && bad["duration_seconds"].is_f64(),
        "{bad}"
    );

    let idle = entry(log, "Skipping job idle: ");
    assert_eq!(idle["job"], "idle");
    assert_eq!(idle["state"], "skipped");
    assert!(idle["run_id"].is_i64(), "{idle}");

    let disabled = entry(log, "notifications are disabled");
    assert_eq!(disabled["level"], "warn");
}

#[test]
fn the_runner_logs_one_json_object_per_line_with_log_format_json() {
    let log = json_log_of_one_pass(|m| m.args(["--log-format", "json"]));
    assert_json_log(&log);
}

#[test]
fn manage_log_format_json_in_the_environment_does_the_same_and_the_flag_beats_it() {
    // Under the journal too: JOURNAL_STREAM only drops the human timestamps.
    let log = json_log_of_one_pass(|m| {
        m.env("MANAGE_LOG_FORMAT", "json")
            .env("JOURNAL_STREAM", "8:1234")
    });
    assert_json_log(&log);

    let db = TestDb::new();
    let human = db
        .manage()
        .env("MANAGE_LOG_FORMAT", "json")
        .args(["scheduled_jobs_runner", "--once", "--log-format", "human"])
        .ok();
    assert!(
        human
            .stderr
            .lines()
            .any(|l| l.contains(" Runner ") && !l.starts_with('{')),
        "{}",
        human.stderr
    );
}

#[test]
fn a_bad_log_format_is_bad_input_naming_the_value_and_the_choices() {
    for run in [
        Manage::new()
            .args(["scheduled_jobs_runner", "--log-format", "xml"])
            .run(),
        Manage::new()
            .env("MANAGE_LOG_FORMAT", "xml")
            .arg("scheduled_jobs_runner")
            .run(),
    ] {
        run.assert_bad_input(&["xml", "human", "json"]);
    }
}
