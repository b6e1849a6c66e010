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
//! So when the runner's main thread has no child that may carry a run's mark,
//! no process of the finished run is left anywhere, and the sweep is not
//! needed. A child of the main thread carries no mark when its environment
//! holds no `MANAGE_RUN_TOKEN` (the embedded cluster's postmaster, adopted when
//! `pg_ctl` exits): it is remembered, and never read again. Any doubt — not a
//! subreaper, a list that cannot be read, an environment that cannot — means
//! the full sweep, as before.
//!
//! Adopted processes must be reaped by us, or they stay zombies: a dead child
//! of the main thread is waited for here. The runner's only other children
//! of its own are the tools of the embedded cluster (`pg_ctl`, `initdb`),
//! which std waits for: [`TOOLS`] is held around them, and nothing is reaped
//! (and the list is not trusted) while it is.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::sweep::RUN_TOKEN_VAR;

static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// The main thread's children read as carrying no mark, by pid. A child's pid
/// cannot be reused before it is reaped, and only [`reap`] reaps them.
static UNMARKED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

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

/// The state letter of `/proc/PID/stat` (after the command's parenthesis).
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether the environment of `pid` reads, and holds no run mark.
fn carries_no_mark(pid: i32) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    // An exiting process reads empty: that proves nothing.
    if environ.is_empty() {
        return false;
    }
    let key = format!("{RUN_TOKEN_VAR}=");
    !environ
        .split(|&b| b == 0)
        .any(|entry| entry.starts_with(key.as_bytes()))
}

/// Reap the dead among the adopted; true when every child of the main thread
/// is known to carry no run mark (so no run of ours left a process behind).
/// False whenever that is not certain.
pub fn reap() -> bool {
    if !SUBREAPER.load(Ordering::SeqCst) {
        return false;
    }
    let Ok(_tools) = TOOLS.try_lock() else {
        return false;
    };
    let Ok(mut unmarked) = UNMARKED.lock() else {
        return false;
    };
    let Some(children) = main_thread_children() else {
        return false;
    };
    let known = unmarked.get_or_insert_with(HashSet::new);
    known.retain(|pid| children.contains(pid));
    let mut clean = true;
    for pid in children {
        if state(pid) == Some('Z') {
            // SAFETY: waitpid on a dead child of ours that nothing else waits
            // for (no tool runs: TOOLS is held).
            #[allow(unsafe_code)]
            let reaped = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            if reaped == pid {
                known.remove(&pid);
                continue;
            }
        }
        if known.contains(&pid) {
            continue;
        }
        if carries_no_mark(pid) {
            known.insert(pid);
        } else {
            clean = false;
        }
    }
    clean
}

/// The sweep after a run's leader was reaped and its group killed: every
/// process that carries `token` is killed, unless no process of ours can.
pub fn sweep_after_run(token: &str) {
    if reap() {
        return;
    }
    super::kill_marked(token);
    // What the sweep killed may be ours to reap, once the kernel is done.
    reap();
}
