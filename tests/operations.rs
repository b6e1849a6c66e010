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
