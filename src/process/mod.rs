//! Child processes and signals: the one place `manage` uses `unsafe` (here
//! and in `spawn`, which starts the children).
//!
//! A child-process job runs in a process group of its own (so that a timeout
//! or a shutdown reaches its grandchildren too), with stdin from /dev/null and
//! stdout and stderr through *one* pipe (so their lines stay in the order they
//! were written). The wait is a pidfd poll with a deadline, not a sleep loop.
//! When the direct child exits the run is over, and whatever is left of its
//! group is killed. Direct children also get a parent-death signal, so a runner
//! killed with -9 does not leave them running unnoticed; grandchildren are
//! found later through the process group recorded with the run.
//!
//! A group id alone names nothing for long: after a reboot, on another machine
//! or once pids wrap around, the same number is a stranger's group. So the
//! group is recorded with a [`GroupIdentity`] — machine, boot and the leader's
//! start time — and a leftover group is killed only when all three still match.
//! The catch: the leader is the direct child, which the parent-death signal
//! has killed, so the grandchildren are provably the run's only until whoever
//! adopted the dead leader reaps it. Where that is at once (systemd or tini as
//! init) they are left alone, and logged; under the systemd unit its
//! `KillMode=control-group` has killed them with the runner anyway.

mod orphans;
mod spawn;
mod sweep;

pub use orphans::{become_subreaper, reap as reap_orphans, TOOLS};
pub use sweep::{kill_marked, marked_processes, RunMark, RUN_ID_VAR, RUN_TOKEN_VAR};

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Let a closed stdout end the process quietly, as it does for every Unix
/// tool (`manage jobs list | head`). Rust ignores SIGPIPE by default, which
/// turns the closed pipe into an error on every later print.
pub fn restore_default_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL has no preconditions; it
    // runs at start-up before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The SIGKILL that follows SIGTERM at a timeout comes this much later.
pub const KILL_AFTER: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_remove: Vec<String>,
    pub working_dir: Option<PathBuf>,
    pub timeout: Duration,
    /// Keep at most this many bytes of output.
    pub max_output: usize,
    /// The run's mark, put into the child's environment; every process
    /// left carrying it is killed when the run ends.
    pub mark: Option<RunMark>,
}

/// How the direct child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signalled(i32),
    /// The timeout expired and the group was killed.
    TimedOut,
    /// Killed on request (shutdown, lost database).
    Stopped,
}

/// A finished child: how it ended and what it wrote (capped).
#[derive(Debug, Clone)]
pub struct Finished {
    pub ending: Ending,
    pub output: Vec<u8>,
    /// Bytes written past the cap.
    pub dropped: u64,
}

/// Output collected by the reader thread, shared so that a reader stuck on a
/// pipe some escaped grandchild still holds can be abandoned.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: u64,
}

/// A handle to stop a running child from another thread.
#[derive(Clone, Default)]
pub struct StopHandle {
    pgid: Arc<Mutex<Option<i32>>>,
    requested: Arc<std::sync::atomic::AtomicBool>,
    reason: Arc<Mutex<Option<String>>>,
    /// What stops a run that is not a process (an SQL job cancels its
    /// statement).
    on_stop: StopAction,
}

type StopAction = Arc<Mutex<Option<Box<dyn Fn() + Send>>>>;

impl StopHandle {
    /// Stop a run that is not a child process with `action` (called at
    /// most once per `stop`, from the thread that stops it).
    pub fn on_stop(&self, action: impl Fn() + Send + 'static) {
        if let Ok(mut slot) = self.on_stop.lock() {
            *slot = Some(Box::new(action));
        }
    }

    /// Whether a stop was asked for.
    pub fn stopped(&self) -> bool {
        self.stop_requested()
    }

    /// Kill the child's whole group now (SIGKILL); `reason` ends its output.
    pub fn stop(&self, reason: &str) {
        if let Ok(action) = self.on_stop.lock() {
            if let Some(action) = action.as_ref() {
                action();
            }
        }
        if let Ok(mut r) = self.reason.lock() {
            r.get_or_insert_with(|| reason.to_string());
        }
        self.requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Ok(guard) = self.pgid.lock() {
            if let Some(pgid) = *guard {
                kill_group(pgid, libc::SIGKILL);
            }
        }
    }

    fn stop_requested(&self) -> bool {
        self.requested.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Why the child was stopped, if it was.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }
}

/// Send `signal` to a process group; a group that is gone is no error.
pub fn kill_group(pgid: i32, signal: i32) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg has no memory-safety preconditions; pgid > 1 so we never
    // signal "every process" or our own group by accident.
    #[allow(unsafe_code)]
    unsafe {
        libc::killpg(pgid, signal);
    }
}

/// Whether any process of the group is still alive.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::killpg(pgid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A process group as recorded with its run, or as seen now: enough to prove
/// later that a group with this id is still the one the run started.
///
/// The leader's start time is the proof that the id was never reused: while
/// the leader exists — running, or a zombie not yet reaped — its pid, and so
/// the group id, cannot go to anyone else. Once the leader is gone nothing in
/// /proc tells the run's grandchildren from a stranger's group that got the
/// id after a wrap-around, so such a group is not provably the run's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupIdentity {
    pub pgid: i32,
    /// `/etc/machine-id` of the host the group lives on.
    pub machine_id: Option<String>,
    /// `/proc/sys/kernel/random/boot_id` of the boot the group lives in.
    pub boot_id: Option<String>,
    /// When the leader (pid = pgid) started, in clock ticks since boot.
    pub leader_start: Option<u64>,
}

/// Why a live group is not provably the one recorded with a run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotProven {
    /// The run recorded no such fact: it started before they were recorded,
    /// or its host could not tell.
    #[error("the run recorded no {0}")]
    Unrecorded(&'static str),
    /// This host cannot tell its own machine or boot id.
    #[error("this host cannot tell its {0}")]
    Unknown(&'static str),
    /// The run started on another machine (perhaps one with the same name).
    #[error("it was recorded on another machine")]
    OtherMachine,
    /// The machine has rebooted since the run started.
    #[error("it was recorded in another boot")]
    OtherBoot,
    /// The leader has exited and been reaped: the id may be anyone's now.
    #[error("its leader process is gone")]
    LeaderGone,
    /// A process with the leader's pid exists, but not the one recorded.
    #[error("its leader process is not the one the run started")]
    OtherLeader,
}

impl GroupIdentity {
    /// Group `pgid` as it is now, on this machine in this boot.
    pub fn observe(pgid: i32) -> GroupIdentity {
        GroupIdentity {
            pgid,
            machine_id: crate::host::machine_id().map(str::to_string),
            boot_id: crate::host::boot_id().map(str::to_string),
            leader_start: start_time(pgid),
        }
    }

    /// Ok when the group with this id is, now, provably the one recorded in
    /// `self`; otherwise why not.
    pub fn still_the_same(&self) -> Result<(), NotProven> {
        self.proven_by(&GroupIdentity::observe(self.pgid))
    }

    /// Ok when `now`, observed for the same id, proves the group recorded in
    /// `self`; anything missing proves nothing.
    fn proven_by(&self, now: &GroupIdentity) -> Result<(), NotProven> {
        fn same<T: PartialEq>(
            recorded: &Option<T>,
            now: &Option<T>,
            what: &'static str,
            differs: NotProven,
            unknown: NotProven,
        ) -> Result<(), NotProven> {
            match (recorded, now) {
                (None, _) => Err(NotProven::Unrecorded(what)),
                (Some(_), None) => Err(unknown),
                (Some(r), Some(n)) if r == n => Ok(()),
                (Some(_), Some(_)) => Err(differs),
            }
        }
        same(
            &self.machine_id,
            &now.machine_id,
            "machine id",
            NotProven::OtherMachine,
            NotProven::Unknown("machine id"),
        )?;
        same(
            &self.boot_id,
            &now.boot_id,
            "boot id",
            NotProven::OtherBoot,
            NotProven::Unknown("boot id"),
        )?;
        same(
            &self.leader_start,
            &now.leader_start,
            "leader start time",
            NotProven::OtherLeader,
            NotProven::LeaderGone,
        )
    }
}

/// When process `pid` started, in clock ticks since boot; None when there is
/// no such process (a zombie still has one).
fn start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 (`starttime`) of a `/proc/PID/stat` line. The command name, field
/// 2, is in parentheses and may itself hold spaces and parentheses, so the
/// fields are counted from the *last* `)`: field 3 is the first after it.
fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// A pipe whose both ends close on exec; std dups the write end onto the
/// child's stdout and stderr, which clears the flag on those copies only.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    #[allow(unsafe_code)]
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pidfd for the child, to poll on its exit with a timeout.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: the raw syscall takes a pid and flags and returns a new fd or -1.
    #[allow(unsafe_code)]
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a non-negative return is a descriptor we now own.
    #[allow(unsafe_code)]
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Wait until the child exits or `timeout` passes; Ok(Some(status)) on exit.
fn wait_until(
    child: &mut spawn::Spawned,
    pidfd: Option<&OwnedFd>,
    timeout: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match pidfd {
            Some(fd) => {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = left.as_millis().min(i32::MAX as u128) as i32;
                // SAFETY: one valid pollfd, count 1.
                #[allow(unsafe_code)]
                unsafe {
                    libc::poll(&mut pfd, 1, ms.max(1));
                }
            }
            // Kernels before 5.3 have no pidfd: fall back to short sleeps.
            None => std::thread::sleep(left.min(Duration::from_millis(20))),
        }
    }
}

/// A call made once while a child is still running after `after`, with
/// what it has written so far (the slow-run warning of §20); the child is
/// not touched.
pub struct SlowWarning<'a> {
    pub after: Duration,
    pub warn: &'a mut dyn FnMut(&[u8]),
}

/// Spawn the child; `started(group)` is called as soon as it runs (the caller
/// records the group with the run). Blocks until the run is over.
pub fn run_child(
    spec: &ChildSpec,
    stop: &StopHandle,
    started: impl FnOnce(&GroupIdentity),
) -> std::io::Result<Finished> {
    run_child_watched(spec, stop, started, None)
}

/// [`run_child`], with a slow-run warning when one is asked for and comes
/// before the timeout.
pub fn run_child_watched(
    spec: &ChildSpec,
    stop: &StopHandle,
    started: impl FnOnce(&GroupIdentity),
    slow: Option<SlowWarning>,
) -> std::io::Result<Finished> {
    let (read_end, write_end) = pipe()?;
    let mut env = spec.env.clone();
    if let Some(mark) = &spec.mark {
        env.extend(mark.env());
    }
    let mut child = spawn::spawn(&spawn::Spawn {
        program: &spec.program,
        args: &spec.args,
        env: spawn::child_env(&spec.env_remove, &env),
        working_dir: spec.working_dir.as_deref(),
        output: write_end.as_raw_fd(),
    })?;
    // The child has its copies; ours goes, so that EOF can arrive.
    drop(write_end);
    let pgid = child.id() as i32;
    if let Ok(mut guard) = stop.pgid.lock() {
        *guard = Some(pgid);
    }
    if stop.stop_requested() {
        kill_group(pgid, libc::SIGKILL);
    }
    // Not yet waited for, the child is at least a zombie: its start time is
    // there to read even if it has already exited.
    let identity = GroupIdentity::observe(pgid);
    started(&identity);

    let captured = Arc::new(Mutex::new(Captured::default()));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    {
        let captured = Arc::clone(&captured);
        let cap = spec.max_output;
        let mut reader = std::fs::File::from(read_end);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 64 * 1024];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Ok(mut c) = captured.lock() {
                            let room = cap.saturating_sub(c.bytes.len());
                            let keep = room.min(n);
                            c.bytes.extend_from_slice(&buffer[..keep]);
                            c.dropped += (n - keep) as u64;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = done_tx.send(());
        });
    }

    let pidfd = pidfd_open(pgid);
    let waiting_since = Instant::now();
    let mut exited = None;
    if let Some(slow) = slow.filter(|s| s.after < spec.timeout) {
        exited = wait_until(&mut child, pidfd.as_ref(), slow.after)?;
        if exited.is_none() {
            let so_far = captured.lock().map(|c| c.bytes.clone()).unwrap_or_default();
            (slow.warn)(&so_far);
        }
    }
    let status = match exited {
        Some(status) => Some(status),
        None => match wait_until(
            &mut child,
            pidfd.as_ref(),
            spec.timeout.saturating_sub(waiting_since.elapsed()),
        )? {
            Some(status) => Some(status),
            None => {
                kill_group(pgid, libc::SIGTERM);
                match wait_until(&mut child, pidfd.as_ref(), KILL_AFTER)? {
                    Some(_) => None,
                    None => {
                        kill_group(pgid, libc::SIGKILL);
                        child.wait()?;
                        None
                    }
                }
            }
        },
    };
    // The run ends with the direct child; what is left of its group goes now,
    // and then whatever left the group but still carries the run's mark
    // (unless no process of ours can: see `orphans`).
    kill_group(pgid, libc::SIGKILL);
    if let Some(mark) = &spec.mark {
        orphans::sweep_after_run(&mark.token, identity.leader_start);
    }
    if let Ok(mut guard) = stop.pgid.lock() {
        *guard = None;
    }
    // A grandchild that escaped the group may still hold the pipe open: give
    // the reader a moment, then take what it has.
    let _ = done_rx.recv_timeout(Duration::from_secs(2));
    let (output, dropped) = match captured.lock() {
        Ok(mut c) => (std::mem::take(&mut c.bytes), c.dropped),
        Err(_) => (Vec::new(), 0),
    };
    let ending = match status {
        None => Ending::TimedOut,
        Some(_) if stop.stop_requested() => Ending::Stopped,
        Some(status) => match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(signal)) => Ending::Signalled(signal),
            (None, None) => Ending::Exited(-1),
        },
    };
    Ok(Finished {
        ending,
        output,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Finished {
        let spec = ChildSpec {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
            env_remove: vec![],
            working_dir: None,
            timeout,
            max_output: 1 << 20,
            mark: None,
        };
        run_child(&spec, &StopHandle::default(), |_| {}).unwrap()
    }

    /// A `/proc/PID/stat` line of `sleep` started at tick `start`, named `name`.
    fn stat_line(name: &str, start: u64) -> String {
        format!(
            "4242 ({name}) S 4200 4242 4200 0 -1 4194304 87 0 0 0 0 0 0 0 20 0 1 0 {start} \
             2273280 160 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
        )
    }

    #[test]
    fn the_start_time_is_field_22_of_the_stat_line() {
        assert_eq!(parse_start_time(&stat_line("sleep", 295378)), Some(295378));
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        assert_eq!(
            parse_start_time(&stat_line("a) S 1 2 (b", 77)),
            Some(77),
            "fields are counted from the last parenthesis"
        );
        assert_eq!(parse_start_time(&stat_line(") )", 78)), Some(78));
    }

    #[test]
    fn a_stat_line_cut_short_or_garbled_has_no_start_time() {
        assert_eq!(parse_start_time("4242 (sleep) S 4200 4242"), None);
        assert_eq!(parse_start_time("4242 sleep S"), None);
        assert_eq!(parse_start_time(""), None);
        let garbled = stat_line("sleep", 1).replace(" 1 2273280", " x 2273280");
        assert_eq!(parse_start_time(&garbled), None);
    }

    #[test]
    fn a_live_process_has_a_start_time_and_a_missing_one_none() {
        let me = std::process::id() as i32;
        let started = start_time(me).unwrap();
        assert_eq!(start_time(me), Some(started));
        assert_eq!(start_time(0), None);
        // Above any pid_max (2^22): no such process.
        assert_eq!(start_time(i32::MAX), None);
    }

    fn recorded() -> GroupIdentity {
        GroupIdentity {
            pgid: 4242,
            machine_id: Some("machine".into()),
            boot_id: Some("boot".into()),
            leader_start: Some(295378),
        }
    }

    #[test]
    fn a_group_is_the_runs_only_when_machine_boot_and_leader_start_all_match() {
        let run = recorded();
        assert_eq!(run.proven_by(&recorded()), Ok(()));
        let other = |change: fn(&mut GroupIdentity)| {
            let mut now = recorded();
            change(&mut now);
            run.proven_by(&now)
        };
        assert_eq!(
            other(|g| g.machine_id = Some("elsewhere".into())),
            Err(NotProven::OtherMachine)
        );
        assert_eq!(
            other(|g| g.boot_id = Some("rebooted".into())),
            Err(NotProven::OtherBoot)
        );
        assert_eq!(
            other(|g| g.leader_start = Some(295379)),
            Err(NotProven::OtherLeader)
        );
        assert_eq!(other(|g| g.leader_start = None), Err(NotProven::LeaderGone));
        assert_eq!(
            other(|g| g.machine_id = None),
            Err(NotProven::Unknown("machine id"))
        );
        assert_eq!(
            other(|g| g.boot_id = None),
            Err(NotProven::Unknown("boot id"))
        );
    }

    #[test]
    fn a_run_that_recorded_nothing_proves_nothing() {
        let now = recorded();
        let before_the_upgrade = GroupIdentity {
            pgid: 4242,
            ..GroupIdentity::default()
        };
        assert_eq!(
            before_the_upgrade.proven_by(&now),
            Err(NotProven::Unrecorded("machine id"))
        );
        let no_start = GroupIdentity {
            leader_start: None,
            ..recorded()
        };
        assert_eq!(
            no_start.proven_by(&now),
            Err(NotProven::Unrecorded("leader start time"))
        );
    }

    #[test]
    fn a_child_is_observed_with_this_hosts_identity_as_it_starts() {
        let spec = ChildSpec {
            program: "sh".into(),
            args: vec!["-c".into(), "exit 0".into()],
            env: vec![],
            env_remove: vec![],
            working_dir: None,
            timeout: Duration::from_secs(10),
            max_output: 1000,
            mark: None,
        };
        let mut seen = None;
        run_child(&spec, &StopHandle::default(), |group| {
            seen = Some((group.clone(), group.still_the_same()));
        })
        .unwrap();
        let (group, then) = seen.unwrap();
        assert_eq!(group.boot_id.as_deref(), crate::host::boot_id());
        assert_eq!(group.machine_id.as_deref(), crate::host::machine_id());
        assert!(group.leader_start.is_some(), "{group:?}");
        if group.machine_id.is_some() {
            assert_eq!(then, Ok(()), "the group, just started, is provably itself");
            // Reaped, the leader proves nothing (its pid may even be another's).
            assert!(
                matches!(
                    group.still_the_same(),
                    Err(NotProven::LeaderGone | NotProven::OtherLeader)
                ),
                "{:?}",
                group.still_the_same()
            );
        }
    }

    #[test]
    fn stdout_and_stderr_arrive_in_order_through_one_pipe() {
        let f = sh(
            "echo one; echo two >&2; echo three",
            Duration::from_secs(10),
        );
        assert_eq!(f.ending, Ending::Exited(0));
        assert_eq!(String::from_utf8_lossy(&f.output), "one\ntwo\nthree\n");
    }

    #[test]
    fn exit_codes_and_signals_are_reported() {
        assert_eq!(
            sh("exit 3", Duration::from_secs(10)).ending,
            Ending::Exited(3)
        );
        assert_eq!(
            sh("kill -9 $$", Duration::from_secs(10)).ending,
            Ending::Signalled(9)
        );
    }

    #[test]
    fn a_timeout_kills_the_whole_group_grandchildren_included() {
        let start = Instant::now();
        let f = sh(
            "sleep 1000 & echo $!; sleep 1000",
            Duration::from_millis(300),
        );
        assert_eq!(f.ending, Ending::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
        let grandchild: i32 = String::from_utf8_lossy(&f.output).trim().parse().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !std::path::Path::new(&format!("/proc/{grandchild}/cmdline")).exists()
                || std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
                    .unwrap_or_default()
                    .contains(") Z")
        );
    }

    #[test]
    fn a_grandchild_that_left_the_group_dies_with_the_run_by_its_mark() {
        let token = format!("unit-{}", std::process::id());
        let spec = ChildSpec {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                "setsid sleep 1000 & echo $!; echo \"id=$MANAGE_RUN_ID\"".into(),
            ],
            env: vec![],
            env_remove: vec![],
            working_dir: None,
            timeout: Duration::from_secs(10),
            max_output: 1000,
            mark: Some(RunMark {
                run_id: 42,
                token: token.clone(),
            }),
        };
        let start = Instant::now();
        let f = run_child(&spec, &StopHandle::default(), |_| {}).unwrap();
        assert_eq!(f.ending, Ending::Exited(0));
        let out = String::from_utf8_lossy(&f.output).into_owned();
        assert!(out.contains("id=42\n"), "{out}");
        assert!(marked_processes(&token).is_empty(), "{out}");
        // The escaped grandchild held the pipe: killed, it let the reader end
        // at once rather than after its two seconds' grace.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let grandchild: i32 = out.lines().next().unwrap().trim().parse().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z"), "{stat}");
    }

    #[test]
    fn output_past_the_cap_is_counted_not_kept() {
        let spec = ChildSpec {
            program: "sh".into(),
            args: vec!["-c".into(), "head -c 5000 /dev/zero".into()],
            env: vec![],
            env_remove: vec![],
            working_dir: None,
            timeout: Duration::from_secs(10),
            max_output: 1000,
            mark: None,
        };
        let f = run_child(&spec, &StopHandle::default(), |_| {}).unwrap();
        assert_eq!(f.output.len(), 1000);
        assert_eq!(f.dropped, 4000);
    }

    #[test]
    fn the_child_leads_its_own_group_with_no_signal_blocked_and_sigpipe_not_ignored() {
        // The test process ignores SIGPIPE (as every Rust program does): the
        // child must not inherit that, nor any blocked signal. `exec`: the
        // shell blocks every signal while it waits for a child of its own.
        let f = sh(
            "read -r _ _ _ _ pgrp _ < /proc/$$/stat; echo \"pgrp=$((pgrp == $$))\"; \
             exec grep -E '^Sig(Blk|Ign)' /proc/self/status",
            Duration::from_secs(10),
        );
        let out = String::from_utf8_lossy(&f.output);
        assert_eq!(f.ending, Ending::Exited(0), "{out}");
        assert!(out.contains("pgrp=1"), "{out}");
        assert!(out.contains("SigBlk:\t0000000000000000"), "{out}");
        let ignored = out
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:\t"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
            .unwrap();
        assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
    }

    #[test]
    fn a_program_that_does_not_exist_or_a_missing_directory_cannot_be_started() {
        let mut spec = ChildSpec {
            program: "no-such-program-anywhere".into(),
            args: vec![],
            env: vec![],
            env_remove: vec![],
            working_dir: None,
            timeout: Duration::from_secs(10),
            max_output: 1000,
            mark: None,
        };
        let e = run_child(&spec, &StopHandle::default(), |_| {}).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        spec.program = "sh".into();
        spec.working_dir = Some("/no/such/directory".into());
        let e = run_child(&spec, &StopHandle::default(), |_| {}).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }
}
