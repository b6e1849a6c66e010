//! Whether a finished run can have left a process behind, without reading
//! every process's environment.
//!
//! The sweep after a child run (§18) reads `/proc/PID/environ` of every
//! process on the machine: in a burst of `sh -c true` runs that was a third
//! of the runner's own CPU, and it grows with the processes alive, so more
//! workers made every run dearer (`perf`, BENCHMARKS.md round 8).
//!
//! A runner is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a process whose
//! parent dies is given to the nearest living ancestor that is one, so every
//! process a run started and that outlived its parent becomes a child of the
//! runner — of its main thread, the first live thread the kernel finds. The
//! run leader is reaped only after the kernel has handed its children over.
//! So after a run, only the main thread's children can be what it left, and
//! only those that started no earlier than its leader (a process older than
//! the run cannot carry its token). When none of those is in doubt, no process
//! of the finished run is left anywhere, and the sweep is not needed. In doubt
//! is one that carries the run's token, and one whose environment does not
//! read as another run's: a process in the middle of `execve` reads empty, or
//! as a fragment without the token, so a missing token proves nothing. Any
//! doubt — not a subreaper, a list that cannot be read — means the full sweep,
//! repeated a few milliseconds apart while the doubt lasts (a full sweep alone
//! would pass a process in `execve` by).
//!
//! Adopted processes must be reaped by us, or they stay zombies: a dead child
//! of the main thread is waited for here. The runner's only other children
//! of its own are the tools of the embedded cluster (`pg_ctl`, `initdb`),
//! which std waits for: [`TOOLS`] is held around them, and nothing is reaped
//! (and the list is not trusted) while it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::sweep::RUN_TOKEN_VAR;

static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// Held while a tool of the embedded cluster runs (spawned and waited for by
/// std): its child is ours, not an orphan to reap.
pub static TOOLS: Mutex<()> = Mutex::new(());

/// Make this process a child subreaper (the runner, once at start).
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with an integer argument changes only this process.
    #[allow(unsafe_code)]
    let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    SUBREAPER.store(true, Ordering::SeqCst);
    Ok(())
}

/// The children of this process's main thread.
fn main_thread_children() -> Option<Vec<i32>> {
    let me = std::process::id();
    let text = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).ok()?;
    text.split_whitespace().map(|p| p.parse().ok()).collect()
}

/// The state letter and the start time (clock ticks since boot) of
/// `/proc/PID/stat`, counted after the command's closing parenthesis.
fn state_and_start(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

/// What the environment of a child says about run marks.
#[derive(PartialEq, Eq)]
enum Mark {
    /// It reads, and holds none (which proves nothing during `execve`).
    None,
    /// It holds `token`'s.
    Ours,
    /// It holds another run's.
    Other,
    /// It reads empty (an `execve` under way, or an exit) or not at all.
    Unknown,
}

fn mark_of(pid: i32, token: &str) -> Mark {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return Mark::Unknown;
    };
    if environ.is_empty() {
        return Mark::Unknown;
    }
    let key = format!("{RUN_TOKEN_VAR}=");
    let ours = format!("{RUN_TOKEN_VAR}={token}");
    let mut mark = Mark::None;
    for entry in environ.split(|&b| b == 0) {
        if entry == ours.as_bytes() {
            return Mark::Ours;
        }
        if entry.starts_with(key.as_bytes()) {
            mark = Mark::Other;
        }
    }
    mark
}

/// What [`reap_for`] found among the main thread's children.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// None of them can be a process of the run.
    Clean,
    /// One carries the run's token, or may: sweep.
    Doubt,
}

/// Reap the dead among the adopted, and say whether one of the rest may be a
/// process of the run with `token` whose leader started at `since` (clock
/// ticks since boot); `None`: no run, only reaping.
fn reap_for(run: Option<(&str, u64)>) -> Found {
    if !SUBREAPER.load(Ordering::SeqCst) {
        return Found::Doubt;
    }
    let Ok(_tools) = TOOLS.try_lock() else {
        return Found::Doubt;
    };
    let Some(children) = main_thread_children() else {
        return Found::Doubt;
    };
    let mut found = Found::Clean;
    for pid in children {
        let Some((state, start)) = state_and_start(pid) else {
            // Gone between the list and now, or unreadable.
            found = Found::Doubt;
            continue;
        };
        if state == 'Z' {
            // SAFETY: waitpid on a dead child of ours that nothing else waits
            // for (no tool runs: TOOLS is held).
            #[allow(unsafe_code)]
            let reaped = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            if reaped != pid {
                found = Found::Doubt;
            }
            continue;
        }
        let Some((token, since)) = run else { continue };
        if start < since {
            continue;
        }
        // Another run's process carries its own token, and so does all it
        // starts: none of them is this run's.
        if mark_of(pid, token) != Mark::Other {
            found = Found::Doubt;
        }
    }
    found
}

/// Reap the adopted processes that have died (at a heartbeat).
pub fn reap() {
    let _ = reap_for(None);
}

/// The sweep after a run's leader (started at `leader_start`, clock ticks
/// since boot) was reaped and its group killed: every process that carries
/// `token` is killed, unless no process of ours can; while one of ours is in
/// doubt, again every 5 ms for at most 20 rounds.
pub fn sweep_after_run(token: &str, leader_start: Option<u64>) {
    let Some(since) = leader_start.filter(|_| SUBREAPER.load(Ordering::SeqCst)) else {
        super::kill_marked(token);
        return;
    };
    for _ in 0..20 {
        if reap_for(Some((token, since))) == Found::Clean {
            return;
        }
        super::kill_marked(token);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
