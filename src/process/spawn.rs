//! Starting a child-process job without copying the runner: `clone` with
//! `CLONE_VM | CLONE_VFORK`, as glibc's `posix_spawn` does, plus the two
//! things `posix_spawn` cannot do — the parent-death signal and the check
//! that the parent is still there.
//!
//! Why not `std::process::Command`: with a `pre_exec` hook (which the
//! parent-death signal needs) it falls back to `fork`, and `fork` copies the
//! page tables of a runner with dozens of threads, stops them all for the
//! TLB shootdowns, takes every malloc lock, and makes the child's `execve`
//! tear the copy down again. In a burst of `sh -c true` runs at
//! max_parallel 32 that was 40 % of the runner's CPU (`perf`: `_Fork` 18 %,
//! `execve` 20 %), and more workers made every run dearer.
//!
//! The child shares our memory and runs on a stack we lend it while the
//! calling thread is suspended, until it has exec'd or exited. So it only
//! makes system calls on data prepared beforehand: no allocation, no locks.
//! Every signal is blocked around the `clone`, so no handler of ours runs in
//! the child; the child sets every caught signal (and SIGPIPE) back to its
//! default and clears its mask before `execve`, as `Command` does.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

/// What to start: the program (looked up in the child's `PATH` when it has
/// no slash), its arguments, its whole environment, its directory, and the
/// descriptor that becomes its stdout and stderr (stdin is /dev/null). It
/// becomes the leader of a new process group.
pub struct Spawn<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    pub env: Vec<(OsString, OsString)>,
    pub working_dir: Option<&'a Path>,
    pub output: RawFd,
}

/// A started child, reaped with `try_wait` or `wait`.
#[derive(Debug)]
pub struct Spawned {
    pid: i32,
    status: Option<ExitStatus>,
}

/// What the child reads (and the one thing it writes: why it failed).
struct Plan {
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    dir: Option<CString>,
    stdin: RawFd,
    output: RawFd,
    parent: libc::pid_t,
    /// The errno of the step that failed in the child; 0 when it exec'd.
    failed: AtomicI32,
}

const STACK_SIZE: usize = 64 * 1024;

fn cstring(bytes: &[u8]) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a NUL byte in the command, an argument or the environment",
        )
    })
}

/// The program's path: as given when it has a slash, else the first
/// executable file of that name in `path` (the child's `PATH`).
fn resolve(program: &Path, path: Option<&OsStr>) -> std::io::Result<PathBuf> {
    if program.as_os_str().as_bytes().contains(&b'/') {
        return Ok(program.to_path_buf());
    }
    let default = OsStr::new("/usr/local/bin:/usr/bin:/bin");
    for dir in std::env::split_paths(path.unwrap_or(default)) {
        let candidate = if dir.as_os_str().is_empty() {
            PathBuf::from(".").join(program)
        } else {
            dir.join(program)
        };
        let Ok(c) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: access reads a NUL-terminated path we own.
        #[allow(unsafe_code)]
        let executable = unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0;
        if executable && candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::ENOENT))
}

/// A descriptor at 3 or above (close-on-exec), so that the child's dup2
/// onto 0, 1 and 2 never overwrites one it still has to copy.
fn above_stdio(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl duplicates a descriptor we own.
    #[allow(unsafe_code)]
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nobody else owns.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Start the child; Err when it could not be started at all (no such
/// program, a working directory that does not exist, …), with the reason the
/// child's failed step gave.
pub fn spawn(spec: &Spawn) -> std::io::Result<Spawned> {
    let path_var = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str());
    let path = cstring(resolve(spec.program, path_var)?.as_os_str().as_bytes())?;
    // argv[0] is the program as given, as `Command` passes it.
    let mut args = vec![cstring(spec.program.as_os_str().as_bytes())?];
    for arg in spec.args {
        args.push(cstring(arg.as_bytes())?);
    }
    let mut env = Vec::with_capacity(spec.env.len());
    for (key, value) in &spec.env {
        let mut pair = key.as_bytes().to_vec();
        pair.push(b'=');
        pair.extend_from_slice(value.as_bytes());
        env.push(cstring(&pair)?);
    }
    let dir = spec
        .working_dir
        .map(|d| cstring(d.as_os_str().as_bytes()))
        .transpose()?;
    let devnull = above_stdio(OwnedFd::from(std::fs::File::open("/dev/null")?))?;
    // The output descriptor is borrowed: keep a copy above 2 for the child.
    // SAFETY: fcntl duplicates a descriptor the caller keeps open throughout.
    #[allow(unsafe_code)]
    let output = unsafe { libc::fcntl(spec.output, libc::F_DUPFD_CLOEXEC, 3) };
    if output < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nobody else owns.
    #[allow(unsafe_code)]
    let output = unsafe { OwnedFd::from_raw_fd(output) };

    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let plan = Plan {
        path,
        argv,
        envp,
        dir,
        stdin: devnull.as_raw_fd(),
        output: output.as_raw_fd(),
        // SAFETY: getpid has no preconditions.
        #[allow(unsafe_code)]
        parent: unsafe { libc::getpid() },
        failed: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; STACK_SIZE];
    // SAFETY: the stack grows down on every Linux target we build for: its
    // top, 16-byte aligned, is the child's initial stack pointer. The plan
    // and the stack outlive the child's use of them: CLONE_VFORK suspends
    // this thread until the child has exec'd or exited. Every signal is
    // blocked around the clone (see the module's note) and the mask is
    // restored right after.
    #[allow(unsafe_code)]
    let pid = unsafe {
        let top = stack.as_mut_ptr().add(STACK_SIZE);
        let top = top.sub(top as usize % 16);
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut saved: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
        let pid = libc::clone(
            child_main,
            top.cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            std::ptr::from_ref(&plan).cast_mut().cast(),
        );
        let clone_error = std::io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut());
        if pid < 0 {
            return Err(clone_error);
        }
        pid
    };
    drop(stack);
    let mut spawned = Spawned { pid, status: None };
    let failed = plan.failed.load(Ordering::SeqCst);
    if failed != 0 {
        // It exited at once with 127: reap it, and say why.
        let _ = spawned.wait();
        return Err(std::io::Error::from_raw_os_error(failed));
    }
    Ok(spawned)
}

/// The child, on the lent stack, sharing our memory: system calls only.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the plan `spawn` passed, alive while we run; every
    // call below is a plain system call wrapper on data prepared for it.
    #[allow(unsafe_code)]
    unsafe {
        let plan = &*(arg as *const Plan);
        let fail = |plan: &Plan| -> ! {
            plan.failed
                .store((*libc::__errno_location()).max(1), Ordering::SeqCst);
            libc::_exit(127)
        };
        // Default dispositions for whatever the runner catches, and SIGPIPE
        // (Rust programs ignore it; the job should not inherit that).
        for signal in 1..65 {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if signal == libc::SIGPIPE
                || (old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN)
            {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
        if libc::setpgid(0, 0) != 0 {
            fail(plan);
        }
        // If the runner dies, so does its direct child; if it died before
        // this line, the child is an orphan already: stop at once.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != plan.parent {
            libc::_exit(1);
        }
        if libc::dup2(plan.stdin, 0) < 0
            || libc::dup2(plan.output, 1) < 0
            || libc::dup2(plan.output, 2) < 0
        {
            fail(plan);
        }
        if let Some(dir) = &plan.dir {
            if libc::chdir(dir.as_ptr()) != 0 {
                fail(plan);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(plan.path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
        fail(plan)
    }
}

impl Spawned {
    pub fn id(&self) -> u32 {
        self.pid as u32
    }

    fn reap(&mut self, flags: libc::c_int) -> std::io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        loop {
            let mut raw = 0;
            // SAFETY: waitpid on our own child, writing into a local.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::waitpid(self.pid, &mut raw, flags) };
            if rc == 0 {
                return Ok(None);
            }
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let status = ExitStatus::from_raw(raw);
            self.status = Some(status);
            return Ok(Some(status));
        }
    }

    /// The exit status if the child has exited (and is now reaped).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.reap(libc::WNOHANG)
    }

    /// Wait for the child to exit.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.reap(0)? {
                return Ok(status);
            }
        }
    }
}

/// The environment a child gets: ours, less `remove`, plus `add` (which wins).
pub fn child_env(remove: &[String], add: &[(String, String)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            !remove.iter().any(|r| k == r.as_str()) && !add.iter().any(|(a, _)| k == a.as_str())
        })
        .collect();
    env.extend(
        add.iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_name_is_found_in_path_and_a_missing_one_is_not_found() {
        let sh = resolve(Path::new("sh"), None).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        let missing = resolve(Path::new("no-such-program-here"), None).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(
            resolve(Path::new("./x"), None).unwrap(),
            PathBuf::from("./x")
        );
    }

    #[test]
    fn the_environment_drops_what_is_removed_and_the_added_value_wins() {
        let env = child_env(
            &["HOME".to_string()],
            &[("PATH".to_string(), "/x".to_string())],
        );
        assert!(!env.iter().any(|(k, _)| k == "HOME"));
        let paths: Vec<_> = env.iter().filter(|(k, _)| k == "PATH").collect();
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].1, "/x");
    }
}
