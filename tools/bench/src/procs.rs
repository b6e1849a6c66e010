//! Child processes: the `manage` binary timed as a fresh process, and what
//! /proc says about a running one (memory, CPU, context switches).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context as _;

/// How to run the `manage` binary against the benchmark's database.
#[derive(Clone)]
pub struct Manage {
    pub binary: PathBuf,
    /// Environment for every invocation (DATABASE_URL, MANAGE_CONFIG, ...).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

impl Manage {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.binary);
        command.args(args).current_dir(&self.cwd);
        for name in [
            "DATABASE_URL",
            "MANAGE_CONFIG",
            "MANAGE_DATA_DIR",
            "NO_COLOR",
        ] {
            command.env_remove(name);
        }
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    /// `manage scheduled_jobs_runner ARGS` started in the background, its
    /// log (stderr) to `log`.
    pub fn runner(&self, args: &[&str], log: &Path) -> anyhow::Result<std::process::Child> {
        let stderr =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        self.command(&[&["scheduled_jobs_runner"], args].concat())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting manage scheduled_jobs_runner")
    }

    /// Run once and check that it succeeded; returns its stdout.
    pub fn check(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} {}", self.binary.display(), args.join(" ")))?;
        if !output.status.success() {
            anyhow::bail!(
                "manage {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Wall time in ms of `reps` fresh processes (after `warmup` untimed
    /// ones): spawn to exit, output to /dev/null.
    pub fn time(&self, args: &[&str], warmup: usize, reps: usize) -> anyhow::Result<Vec<f64>> {
        self.check(args)?;
        let mut samples = Vec::with_capacity(reps);
        for i in 0..warmup + reps {
            crate::check_abort()?;
            let start = Instant::now();
            let status = self
                .command(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("spawning manage")?;
            let elapsed = start.elapsed();
            if !status.success() {
                anyhow::bail!("manage {} failed: {status}", args.join(" "));
            }
            if i >= warmup {
                samples.push(elapsed.as_secs_f64() * 1000.0);
            }
        }
        Ok(samples)
    }
}

/// A process's counters summed over all its threads.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub voluntary: u64,
    pub involuntary: u64,
    /// Time on CPU, from schedstat (ns); falls back to utime+stime ticks.
    pub cpu_ns: u64,
    pub threads: usize,
    /// (thread id, thread name, voluntary + involuntary switches).
    pub per_thread: Vec<(u32, String, u64)>,
}

impl Counters {
    /// Switches per thread name between `before` and `self`, busiest first.
    pub fn per_thread_since(&self, before: &Counters) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .per_thread
            .iter()
            .map(|(tid, name, n)| {
                let was = before
                    .per_thread
                    .iter()
                    .find(|(t, _, _)| t == tid)
                    .map_or(0, |(_, _, n)| *n);
                (name.clone(), n.saturating_sub(was))
            })
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }
}

pub fn counters(pid: u32) -> anyhow::Result<Counters> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let mut c = Counters::default();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let task = entry?.path();
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue; // the thread ended meanwhile
        };
        c.threads += 1;
        let voluntary = status_field(&status, "voluntary_ctxt_switches").unwrap_or(0);
        let involuntary = status_field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
        c.voluntary += voluntary;
        c.involuntary += involuntary;
        let tid = task
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        c.per_thread
            .push((tid, name.trim().to_string(), voluntary + involuntary));
        c.cpu_ns += cpu_ns(&task).unwrap_or(0);
    }
    Ok(c)
}

fn cpu_ns(task: &Path) -> Option<u64> {
    if let Ok(schedstat) = std::fs::read_to_string(task.join("schedstat")) {
        return schedstat.split_whitespace().next()?.parse().ok();
    }
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    // utime and stime are fields 14 and 15 (1-based), 11 and 12 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}

/// A `Name:   123 kB`-style field of /proc/PID/status, as a number.
pub fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// (VmRSS, VmHWM) in KiB.
pub fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok((
        status_field(&status, "VmRSS").unwrap_or(0),
        status_field(&status, "VmHWM").unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tmanage\nVmRSS:\t    5120 kB\nvoluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(status_field(status, "VmRSS"), Some(5120));
        assert_eq!(status_field(status, "voluntary_ctxt_switches"), Some(42));
        assert_eq!(status_field(status, "nonvoluntary_ctxt_switches"), Some(3));
    }
}
