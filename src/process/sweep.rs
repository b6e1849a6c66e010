//! Finding a run's processes by their mark (§18), wherever they went.
//!
//! A process group names a run's processes only while they stay in it and
//! while its leader lives: a grandchild may leave with `setsid`, and the
//! leader of a dead runner's run is gone (the parent-death signal killed it),
//! after which the group id proves nothing. So every process a run starts
//! carries the run's mark in its environment — `MANAGE_RUN_ID` and a random
//! `MANAGE_RUN_TOKEN` — and inherits it into everything it starts, as Jenkins
//! marks a build's processes with `BUILD_ID`. The token is the proof: it is
//! random per run, so a process that carries it is the run's, and one without
//! it is never touched.
//!
//! The environment a process started with is `/proc/PID/environ`, readable
//! by its owner and root: a runner sees exactly the processes it may kill.

use std::path::Path;

/// The environment variables that mark a run's processes.
pub const RUN_ID_VAR: &str = "MANAGE_RUN_ID";
pub const RUN_TOKEN_VAR: &str = "MANAGE_RUN_TOKEN";

/// A run's mark, as its processes carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMark {
    pub run_id: i64,
    /// Random per run; recorded with the run, never shown.
    pub token: String,
}

impl RunMark {
    /// The environment entries that carry the mark.
    pub fn env(&self) -> [(String, String); 2] {
        [
            (RUN_ID_VAR.to_string(), self.run_id.to_string()),
            (RUN_TOKEN_VAR.to_string(), self.token.clone()),
        ]
    }
}

/// Whether an `environ` image (`KEY=VALUE` entries, each ended by NUL)
/// holds `MANAGE_RUN_TOKEN=token` exactly.
fn carries(environ: &[u8], token: &str) -> bool {
    let wanted = format!("{RUN_TOKEN_VAR}={token}");
    environ
        .split(|&b| b == 0)
        .any(|entry| entry == wanted.as_bytes())
}

/// The live processes (other than this one) whose environment carries
/// `token`. Processes this user may not read are not this runner's to kill.
pub fn marked_processes(token: &str) -> Vec<i32> {
    marked_in(Path::new("/proc"), token, std::process::id() as i32)
}

fn marked_in(proc_dir: &Path, token: &str, me: i32) -> Vec<i32> {
    // An empty token would match nothing useful and everything careless.
    if token.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(proc_dir) else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid > 1 && pid != me)
        .filter(|pid| {
            std::fs::read(proc_dir.join(pid.to_string()).join("environ"))
                .is_ok_and(|environ| carries(&environ, token))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Kill (SIGKILL) every process that carries `token`, again and again until
/// a pass finds none — a process may fork between the scan and its kill —
/// and return the pids killed. A zombie's environment reads empty, so the
/// dead are not counted twice.
pub fn kill_marked(token: &str) -> Vec<i32> {
    const PASSES: usize = 20;
    let mut killed = Vec::new();
    for _ in 0..PASSES {
        let found = marked_processes(token);
        if found.is_empty() {
            break;
        }
        for pid in found {
            let sent = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            if sent.is_ok() && !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        // Let the kernel tear them down before looking again.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_entry_marks_a_process() {
        let environ = b"PATH=/bin\0MANAGE_RUN_ID=7\0MANAGE_RUN_TOKEN=abc-123\0";
        assert!(carries(environ, "abc-123"));
        assert!(!carries(environ, "abc"), "a prefix is not the token");
        assert!(!carries(environ, "abc-1234"));
        assert!(!carries(b"X_MANAGE_RUN_TOKEN=abc-123\0", "abc-123"));
        assert!(!carries(b"OTHER=MANAGE_RUN_TOKEN=abc-123\0", "abc-123"));
        assert!(!carries(b"", "abc-123"));
    }

    #[test]
    fn a_marked_process_is_found_and_killed_and_an_unmarked_one_is_left() {
        use std::process::Command;
        let token = format!(
            "test-{}-{:?}",
            std::process::id(),
            std::time::Instant::now()
        );
        let mut marked = Command::new("sleep")
            .arg("600")
            .env(RUN_TOKEN_VAR, &token)
            .spawn()
            .unwrap();
        let mut decoy = Command::new("sleep")
            .arg("600")
            .env(RUN_TOKEN_VAR, format!("{token}x"))
            .spawn()
            .unwrap();
        // exec has happened once the environment is the child's own.
        let pid = marked.id() as i32;
        for _ in 0..200 {
            if marked_processes(&token) == vec![pid] {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(marked_processes(&token), vec![pid]);
        assert_eq!(kill_marked(&token), vec![pid]);
        assert!(
            marked.wait().unwrap().code().is_none(),
            "killed by a signal"
        );
        assert!(decoy.try_wait().unwrap().is_none(), "the decoy lives");
        assert!(marked_processes("").is_empty());
        decoy.kill().unwrap();
        decoy.wait().unwrap();
    }
}
