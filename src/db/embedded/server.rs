//! Starting, stopping and reporting on the cluster: the cheap fast path of
//! every invocation, the locked slow path that creates and starts, and
//! `pg_ctl stop`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::initdb::{
    create_cluster, create_data_dir, ensure_database, settings_conf, write_file_as,
};
use super::socket_dir::{prepare_socket_dir, private_dir_ok, socket_dir_for};
use super::tools::{run_tool, server_bin_dir, tool_command};
use super::user::{check_reachable, server_user, ServerUser};
use super::{io_err, pg_dir, Embedded, EmbeddedError, SOCKET_FILE};

/// What [`status`] found.  The caller formats it: `running (pid N) in DIR`
/// (exit 0), `not running` or `not created` (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `postmaster.pid` names a live process.
    Running {
        /// The postmaster's process id.
        pid: u32,
    },
    /// The cluster exists but no live postmaster is recorded.
    NotRunning,
    /// There is no cluster in `<data_dir>/pg`.
    NotCreated,
}

fn pid_alive(pid: u32) -> bool {
    // 0 and anything past i32::MAX would make kill() address a process
    // group or every process; such a pid file is garbage.
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // No signal: kill only checks that the pid exists and that we may signal it.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        // A postmaster that exited but is not yet reaped (its parent is init,
        // which may be slow to reap in containers) still answers kill(); on
        // Linux /proc tells the difference at the cost of one read.
        Ok(()) => !is_zombie(pid),
        // EPERM: it exists but belongs to another user (we are not root).
        Err(errno) => errno == nix::errno::Errno::EPERM,
    }
}

/// Whether /proc says `pid` is a zombie; false when /proc cannot tell.
fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_proc_state(&stat))
        == Some('Z')
}

/// The state letter of a `/proc/PID/stat` line; the command name in
/// parentheses may itself contain spaces and parentheses, hence `rfind`.
fn parse_proc_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Parses the first line of `postmaster.pid`.
fn parse_pid_file(text: &str) -> Option<u32> {
    text.lines().next()?.trim().parse().ok()
}

/// Whether the cluster exists and runs, from `postmaster.pid` and a
/// `kill(pid, 0)`: no process is spawned.  A pid reused by an unrelated
/// process reads as running, as with `pg_ctl status`.  A cluster we may not
/// read reads as not created.
pub fn status(data_dir: &Path) -> Status {
    let pg = pg_dir(data_dir);
    if !pg.join("PG_VERSION").is_file() {
        return Status::NotCreated;
    }
    match fs::read_to_string(pg.join("postmaster.pid"))
        .ok()
        .as_deref()
        .and_then(parse_pid_file)
    {
        Some(pid) if pid_alive(pid) => Status::Running { pid },
        _ => Status::NotRunning,
    }
}

/// The fast path: the socket file exists, so the caller should just connect.
/// A stat or two; no process, no connection.
fn fast_path(data_dir: &Path) -> Option<Embedded> {
    let data_dir = fs::canonicalize(data_dir).ok()?;
    let pg = pg_dir(&data_dir);
    let socket_dir = socket_dir_for(&data_dir);
    if socket_dir != pg {
        // A socket in /tmp is only ours if its directory is private to the
        // cluster's owner; otherwise let the slow path complain.
        let owner = fs::metadata(&pg).ok()?.uid();
        let meta = fs::symlink_metadata(&socket_dir).ok()?;
        if !private_dir_ok(&meta, owner) {
            return None;
        }
    }
    fs::symlink_metadata(socket_dir.join(SOCKET_FILE)).ok()?;
    Some(Embedded {
        data_dir,
        pg_dir: pg,
        socket_dir,
        created: false,
        started: false,
    })
}

/// Makes sure the cluster exists and runs, and says how to reach it.
///
/// When the socket file exists this returns at once without spawning or
/// connecting; if the caller's connection then fails it calls [`start`].
/// Otherwise this is [`start`].
pub fn ensure_running(data_dir: &Path) -> Result<Embedded, EmbeddedError> {
    match fast_path(data_dir) {
        Some(embedded) => Ok(embedded),
        None => start(data_dir),
    }
}

/// Holds an exclusive lock on `<data_dir>/embedded.lock` until dropped, so
/// concurrent invocations create and start the cluster once.
fn lock_data_dir(data_dir: &Path, user: &ServerUser) -> Result<File, EmbeddedError> {
    let path = data_dir.join("embedded.lock");
    let what = format!("lock {}", path.display());
    let file = match OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => file,
        // Someone else's lock file: a read-only descriptor locks just as well.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            File::open(&path).map_err(io_err(what.clone()))?
        }
        Err(e) => return Err(io_err(what)(e)),
    };
    if user.switch {
        // So the cluster's owner can take the lock when it runs `manage` itself.
        std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("chown {}", path.display())))?;
    }
    file.lock().map_err(io_err(what))?;
    Ok(file)
}

/// The slow path: creates the cluster if needed, starts it unless it runs,
/// and makes sure the `manage` database exists.  Callers use it when their
/// connection after [`ensure_running`] failed; a stale socket or
/// `postmaster.pid` from a crash is left for `pg_ctl start` (and the
/// postmaster's lock-file logic) to clean up.  If the server already runs,
/// nothing is started and the caller's next connection error is the real one.
pub fn start(data_dir: &Path) -> Result<Embedded, EmbeddedError> {
    let created_data_dir = create_data_dir(data_dir)?;
    let data_dir =
        fs::canonicalize(data_dir).map_err(io_err(format!("resolve {}", data_dir.display())))?;
    let user = server_user(&data_dir)?;
    if user.switch && created_data_dir {
        std::os::unix::fs::chown(&data_dir, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("chown {}", data_dir.display())))?;
    }
    check_reachable(&data_dir, &user)?;
    let _lock = lock_data_dir(&data_dir, &user)?;

    let pg = pg_dir(&data_dir);
    let socket_dir = socket_dir_for(&data_dir);
    let mut embedded = Embedded {
        data_dir: data_dir.clone(),
        pg_dir: pg.clone(),
        socket_dir: socket_dir.clone(),
        created: false,
        started: false,
    };

    let status_now = status(&data_dir);
    if status_now == Status::NotCreated {
        create_cluster(&data_dir, &user)?;
        embedded.created = true;
    }
    if !matches!(status_now, Status::Running { .. }) {
        if socket_dir != pg {
            prepare_socket_dir(&socket_dir, &user)?;
        }
        write_file_as(&pg.join("manage.conf"), &settings_conf(&socket_dir), &user)?;
        pg_ctl_start(&data_dir, &user)?;
        embedded.started = true;
    }
    // Also on an already-running cluster: heals one whose creation stopped
    // between initdb and CREATE DATABASE, which the fast path cannot see.
    ensure_database(&socket_dir)?;
    Ok(embedded)
}

fn pg_ctl_start(data_dir: &Path, user: &ServerUser) -> Result<(), EmbeddedError> {
    let pg = pg_dir(data_dir);
    let log = pg.join("server.log");
    let bin = server_bin_dir()?;
    let mut cmd = tool_command(&bin.join("pg_ctl"), user, data_dir);
    // With -l the postmaster's output goes to the log, so capturing pg_ctl's
    // own output cannot keep our pipes open after it exits.
    cmd.arg("-D")
        .arg(&pg)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "start"]);
    run_tool(cmd, format!("pg_ctl -D {} start", pg.display())).map_err(|e| match e {
        EmbeddedError::Tool {
            what,
            status,
            mut output,
        } => {
            if let Some(tail) = log_tail(&log, 4096) {
                output.push_str(&format!(
                    "\n--- end of {} ---\n{}",
                    log.display(),
                    tail.trim_end()
                ));
            }
            EmbeddedError::Tool {
                what,
                status,
                output,
            }
        }
        other => other,
    })?;
    Ok(())
}

/// The last `max` bytes of the server log, cut at a line start, for errors.
fn log_tail(log: &Path, max: u64) -> Option<String> {
    let mut file = File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max))).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let text = if len > max {
        text.split_once('\n')
            .map_or(text.as_str(), |(_, rest)| rest)
            .to_owned()
    } else {
        text
    };
    Some(text)
}

/// How long `stop` waits for the postmaster process to exit after
/// `pg_ctl stop` has returned.
const STOP_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Stops the cluster (`pg_ctl -m fast -w stop`, as the server user) when it
/// runs.  Returns whether it was running.
pub fn stop(data_dir: &Path) -> Result<bool, EmbeddedError> {
    let Status::Running { pid } = status(data_dir) else {
        return Ok(false);
    };
    let user = server_user(data_dir)?;
    let pg = pg_dir(data_dir);
    let bin = server_bin_dir()?;
    let mut cmd = tool_command(&bin.join("pg_ctl"), &user, data_dir);
    cmd.arg("-D").arg(&pg).args(["-m", "fast", "-w", "stop"]);
    run_tool(cmd, format!("pg_ctl -D {} stop", pg.display()))?;
    // `pg_ctl -w` returns once postmaster.pid is gone, which the postmaster
    // removes a moment before it exits: wait (bounded) for the process
    // itself, so that "stopped" means no postmaster is left.
    let deadline = std::time::Instant::now() + STOP_EXIT_WAIT;
    while pid_alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: panics are the failure report
mod tests {
    use super::super::socket_dir::MAX_SOCKET_PATH;
    use super::super::tools::SPAWNED;
    use super::super::user::current_euid;
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    #[test]
    fn pid_file_and_liveness() {
        assert_eq!(parse_pid_file("1234\n/var/lib/x\n"), Some(1234));
        assert_eq!(parse_pid_file(""), None);
        assert_eq!(parse_pid_file("junk\n"), None);
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0), "0 would address our process group");
        assert!(!pid_alive(u32::MAX), "negative pids address process groups");
        // init is alive; as non-root kill() says EPERM, which counts as alive.
        assert!(pid_alive(1));
        assert_eq!(parse_proc_state("42 (a) b) Z 1 2"), Some('Z'));
        assert_eq!(parse_proc_state("42 (postgres) S 1 2"), Some('S'));
        assert_eq!(parse_proc_state("garbage"), None);
    }

    #[test]
    fn status_of_missing_and_stale() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(status(tmp.path()), Status::NotCreated);
        let pg = pg_dir(tmp.path());
        fs::create_dir(&pg).unwrap();
        fs::write(pg.join("PG_VERSION"), "15\n").unwrap();
        assert_eq!(status(tmp.path()), Status::NotRunning);
        // A pid that cannot exist (above the kernel's pid_max limit of 2^22).
        fs::write(pg.join("postmaster.pid"), "99999999\n").unwrap();
        assert_eq!(status(tmp.path()), Status::NotRunning);
        fs::write(
            pg.join("postmaster.pid"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        assert_eq!(
            status(tmp.path()),
            Status::Running {
                pid: std::process::id()
            }
        );
    }

    #[test]
    fn unreachable_dir_is_reported() {
        if current_euid() != 0 {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let data = tmp.path().join("data");
        let _guard = ClusterGuard {
            data_dir: data.clone(),
        };
        let e = start(&data).unwrap_err();
        match &e {
            EmbeddedError::Unusable { path, reason } => {
                assert_eq!(path, &fs::canonicalize(tmp.path()).unwrap());
                assert!(reason.contains("cannot enter"), "{reason}");
            }
            other => panic!("unexpected {other}"),
        }
        assert_eq!(status(&data), Status::NotCreated);
    }

    /// Stops a cluster and removes its /tmp socket dir however the test ends.
    struct ClusterGuard {
        data_dir: PathBuf,
    }

    impl Drop for ClusterGuard {
        fn drop(&mut self) {
            if stop(&self.data_dir).is_err() {
                // Last resort so no server outlives the test: SIGQUIT the postmaster.
                if let Status::Running { pid } = status(&self.data_dir) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGQUIT,
                    );
                }
            }
            if let Ok(canon) = fs::canonicalize(&self.data_dir) {
                let sock = socket_dir_for(&canon);
                if sock != pg_dir(&canon) {
                    let _ = fs::remove_dir_all(sock);
                }
            }
        }
    }

    /// A temp dir the server user can traverse (as root the server runs as
    /// `postgres`; tempfile's default mode depends on the umask).
    fn reachable_tempdir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        tmp
    }

    fn proc_stat_fields(pid: u32) -> (i64, i64) {
        // Fields after the ")" of the command name: state ppid pgrp session ...
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        (f[2].parse().unwrap(), f[3].parse().unwrap())
    }

    fn end_to_end(data_dir: &Path) {
        let _guard = ClusterGuard {
            data_dir: data_dir.to_path_buf(),
        };
        assert_eq!(status(data_dir), Status::NotCreated);

        let first = ensure_running(data_dir).unwrap();
        assert!(first.created && first.started, "{first:?}");
        assert_eq!(first.pg_dir, pg_dir(&fs::canonicalize(data_dir).unwrap()));
        assert!(first.socket_dir.join(SOCKET_FILE).as_os_str().len() <= MAX_SOCKET_PATH);
        assert!(first.describe().ends_with(" (created)"));

        let mut client = first.connection_config().connect(postgres::NoTls).unwrap();
        let row = client.query_one("SELECT 1", &[]).unwrap();
        assert_eq!(row.get::<_, i32>(0), 1);
        let db: String = client
            .query_one("SELECT current_database()", &[])
            .unwrap()
            .get(0);
        assert_eq!(db, "manage");
        // Never on TCP.
        let listen: String = client
            .query_one("SHOW listen_addresses", &[])
            .unwrap()
            .get(0);
        assert_eq!(listen, "");
        drop(client);

        let pid = match status(data_dir) {
            Status::Running { pid } => pid,
            other => panic!("status {other:?}"),
        };
        // Detached: neither our process group nor our session.
        let (pgrp, session) = proc_stat_fields(pid);
        let (my_pgrp, my_session) = proc_stat_fields(std::process::id());
        assert_ne!(pgrp, my_pgrp);
        assert_ne!(session, my_session);
        if current_euid() == 0 {
            let owner = fs::metadata(pg_dir(data_dir)).unwrap().uid();
            assert_ne!(owner, 0);
            assert_eq!(fs::metadata(data_dir).unwrap().uid(), owner);
            assert_eq!(fs::metadata(&first.socket_dir).unwrap().uid(), owner);
        }

        // Fast path: nothing created or started, no process spawned.
        let before = SPAWNED.with(|n| n.get());
        let second = ensure_running(data_dir).unwrap();
        assert_eq!(
            SPAWNED.with(|n| n.get()),
            before,
            "fast path spawned a process"
        );
        assert!(!second.created && !second.started, "{second:?}");
        assert_eq!(second.socket_dir, first.socket_dir);
        assert_eq!(
            second.describe(),
            format!("using the embedded database in {}", first.pg_dir.display())
        );

        // The slow path on a running cluster starts nothing.
        let again = start(data_dir).unwrap();
        assert!(!again.created && !again.started);

        assert!(stop(data_dir).unwrap());
        assert_eq!(status(data_dir), Status::NotRunning);
        assert!(!stop(data_dir).unwrap());
        assert!(!pid_alive(pid), "postmaster {pid} still alive after stop");

        // Restart an existing cluster: started, not created.
        let third = ensure_running(data_dir).unwrap();
        assert!(!third.created && third.started, "{third:?}");
        third.connection_config().connect(postgres::NoTls).unwrap();
        assert!(stop(data_dir).unwrap());
    }

    /// Pids whose parent is `ppid`, from /proc.
    fn children_of(ppid: u32) -> Vec<u32> {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| {
                fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat[stat.rfind(')').unwrap() + 2..]
                        .split_whitespace()
                        .nth(1)
                        == Some(&ppid.to_string())
                })
            })
            .collect()
    }

    /// Waits (bounded) until none of `pids` exists, zombies included: only
    /// then will a new postmaster accept the stale lock files.
    fn wait_gone(pids: &[u32]) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while pids
            .iter()
            .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{pids:?} never went away"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// After a crash the socket file and postmaster.pid stay behind: the
    /// fast path trusts the socket, the caller's connection fails, and
    /// `start` recovers by trusting `pg_ctl start`.
    #[test]
    fn crash_leaves_stale_socket_and_start_recovers() {
        let tmp = reachable_tempdir();
        let data = tmp.path().join("data");
        let _guard = ClusterGuard {
            data_dir: data.clone(),
        };
        let first = ensure_running(&data).unwrap();
        let Status::Running { pid } = status(&data) else {
            panic!("not running")
        };
        let mut pids = children_of(pid);
        pids.push(pid);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        wait_gone(&pids);
        assert!(
            first.socket_dir.join(SOCKET_FILE).exists(),
            "socket not stale"
        );
        assert!(pg_dir(&data).join("postmaster.pid").exists());
        assert_eq!(status(&data), Status::NotRunning);

        let fast = ensure_running(&data).unwrap();
        assert!(!fast.started, "the fast path trusts the stale socket");
        assert!(fast.connection_config().connect(postgres::NoTls).is_err());

        let slow = start(&data).unwrap();
        assert!(slow.started && !slow.created, "{slow:?}");
        let mut client = slow.connection_config().connect(postgres::NoTls).unwrap();
        client.batch_execute("SELECT 1").unwrap();
    }

    #[test]
    fn end_to_end_short_path() {
        let tmp = reachable_tempdir();
        let data = tmp.path().join("data");
        let would_be = fs::canonicalize(tmp.path()).unwrap().join("data");
        assert_eq!(
            socket_dir_for(&would_be),
            pg_dir(&would_be),
            "socket in pg/"
        );
        end_to_end(&data);
    }

    #[test]
    fn end_to_end_long_path() {
        let tmp = reachable_tempdir();
        let data = tmp
            .path()
            .join("d".repeat(60))
            .join("e".repeat(60))
            .join("data");
        let canon_parent = fs::canonicalize(tmp.path()).unwrap();
        let would_be = canon_parent
            .join("d".repeat(60))
            .join("e".repeat(60))
            .join("data");
        assert!(pg_dir(&would_be).join(SOCKET_FILE).as_os_str().len() > MAX_SOCKET_PATH);
        end_to_end(&data);
    }
}
