//! Scenario 8: failover (§19). A real primary and a real streaming standby of
//! it (`pg_basebackup -R`), both on 127.0.0.1 with free ports, and `manage
//! scheduled_jobs_runner` given both hosts:
//! `postgresql://127.0.0.1:P1,127.0.0.1:P2/postgres?target_session_attrs=read-write&connect_timeout=2`,
//! with one declared job due every second (`command = "true"`, `interval =
//! "00:01"`). Once it runs on the primary (and the standby has replayed
//! runs), the primary is stopped as a crash would (`pg_ctl stop -m
//! immediate`) and the standby promoted (`pg_ctl promote -w`). The figure is
//! the time from promote returning — and from promote starting — to the
//! `started_at` of the first run on the new primary (the first with a
//! `started_at` after promote started: nothing can be written there
//! before), polled every 20 ms over a connection to the standby opened
//! before the crash. Both ends are this machine's clock (the database's
//! `now()` and the bench's wall clock). Each repetition makes a fresh pair.
//! The promise it is checked against: back within `connect_timeout` + 5 s
//! of the new primary accepting writes, 7 s here.
//!
//! PostgreSQL refuses to run as root: when the bench is root (CI), initdb,
//! pg_basebackup and pg_ctl run as `postgres` (or `nobody`) and the clusters'
//! directories belong to that user.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::Bench;
use crate::inproc::wait_until;
use crate::stats::{Figure, Target};

/// `connect_timeout` in the runner's URL, seconds.
const CONNECT_TIMEOUT: u64 = 2;
const JOB: &str = "failover_tick";

/// The user the server binaries run as when we are root: (uid, gid).
fn server_user() -> anyhow::Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, name]).output().ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())?
        };
        if let (Some(uid), Some(gid)) = (id("-u"), id("-g")) {
            return Ok(Some((uid, gid)));
        }
    }
    anyhow::bail!("running as root, the failover scenario needs a postgres or nobody user")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One PostgreSQL cluster of the pair, listening on 127.0.0.1:`port` (and a
/// socket in `dir`); stopped and removed when dropped.
struct Cluster {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    keep: bool,
}

impl Cluster {
    /// An empty directory for a cluster, owned by the server user.
    fn prepare(
        dir: PathBuf,
        bin: &Path,
        user: Option<(u32, u32)>,
        keep: bool,
    ) -> anyhow::Result<Cluster> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", dir.display()))?;
        }
        Ok(Cluster {
            data: dir.join("data"),
            dir,
            port: free_port()?,
            bin: bin.to_path_buf(),
            user,
            keep,
        })
    }

    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command.current_dir(&self.dir).stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn check(mut command: Command, what: &str) -> anyhow::Result<()> {
        let out = command
            .output()
            .with_context(|| format!("running {what}"))?;
        anyhow::ensure!(
            out.status.success(),
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let mut command = self.tool("initdb");
        command.arg("-D").arg(&self.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        Cluster::check(command, "initdb")
    }

    /// A copy of the running `primary`, set up to stream from it.
    fn basebackup(&self, primary: &Cluster) -> anyhow::Result<()> {
        let mut command = self.tool("pg_basebackup");
        command
            .arg("-D")
            .arg(&self.data)
            .args([
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .arg("-p")
            .arg(primary.port.to_string());
        Cluster::check(command, "pg_basebackup")
    }

    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let options = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c wal_receiver_status_interval=1s",
            self.dir.display(),
            self.port
        );
        let mut command = self.tool("pg_ctl");
        command
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("-o")
            .arg(options)
            .args(args);
        Cluster::check(command, &format!("pg_ctl {}", args.join(" ")))
    }

    fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn connect(&self) -> anyhow::Result<postgres::Client> {
        crate::server::connect(&self.url())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill with the pid of our own child and a valid signal.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(self.0.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn count_runs(client: &mut postgres::Client) -> anyhow::Result<i64> {
    let exists: bool = client
        .query_one("SELECT to_regclass('manage.runs') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT count(*) FROM manage.runs WHERE job = $1", &[&JOB])?
        .try_get(0)?)
}

/// What one failover measured, in ms.
struct Failover {
    /// promote returned → the first run's started_at on the new primary.
    from_return: f64,
    /// promote started → the same.
    from_start: f64,
    /// How long `pg_ctl promote -w` took.
    promote: f64,
    /// promote returned → the runner's first session on the new primary.
    reconnect: f64,
}

/// One failover; `phase` (0..1 s) is how long after a run on the primary the
/// crash comes, so that the repetitions do not all meet the job's schedule at
/// the same point of its second.
fn once(
    bench: &Bench,
    rep: usize,
    phase: Duration,
    bin: &Path,
    user: Option<(u32, u32)>,
) -> anyhow::Result<Failover> {
    let keep = bench.server.keep;
    // Short paths: a socket's must fit in 107 bytes.
    let primary = Cluster::prepare(bench.work.join(format!("fo{rep}p")), bin, user, keep)?;
    primary.initdb()?;
    primary.pg_ctl(&["-w", "start"])?;
    let standby = Cluster::prepare(bench.work.join(format!("fo{rep}s")), bin, user, keep)?;
    standby.basebackup(&primary)?;
    standby.pg_ctl(&["-w", "start"])?;
    let mut on_primary = primary.connect()?;
    wait_until(Duration::from_secs(30), "the standby to stream", || {
        let n: i64 = on_primary
            .query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                &[],
            )?
            .try_get(0)?;
        Ok(n == 1)
    })?;

    let file = bench.work.join("failover.toml");
    super::write_config(
        &file,
        4,
        &[format!(
            "[jobs.{JOB}]\ncommand = \"true\"\ninterval = \"00:01\"\n"
        )],
    )?;
    let url = format!(
        "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write&connect_timeout={CONNECT_TIMEOUT}",
        primary.port, standby.port
    );
    let mut manage = bench.manage(Some(&file));
    manage
        .env
        .retain(|(k, _)| k != "DATABASE_URL" && k != "MANAGE_DATA_DIR");
    manage.env.push(("DATABASE_URL".into(), url));
    // Never an embedded cluster, whatever happens.
    manage.env.push((
        "MANAGE_DATA_DIR".into(),
        bench.work.join("failover-no-cluster").display().to_string(),
    ));
    let log = bench.work.join(format!("failover-runner-{rep}.log"));
    let runner = Runner(manage.runner(&[], &log)?);

    // Runs on the primary, and replayed on the standby.
    wait_until(Duration::from_secs(60), "runs on the primary", || {
        Ok(count_runs(&mut on_primary)? >= 3)
    })?;
    let seen = count_runs(&mut on_primary)?;
    wait_until(
        Duration::from_secs(10),
        "the next run on the primary",
        || Ok(count_runs(&mut on_primary)? > seen),
    )?;
    std::thread::sleep(phase);
    let mut on_standby = standby.connect()?;
    wait_until(Duration::from_secs(30), "the runs on the standby", || {
        Ok(count_runs(&mut on_standby)? >= 2)
    })?;
    drop(on_primary);

    primary.pg_ctl(&["-w", "-m", "immediate", "stop"])?;
    let started = chrono::Utc::now();
    let t0 = Instant::now();
    standby.pg_ctl(&["-w", "promote"])?;
    let returned = chrono::Utc::now();
    let promote_ms = t0.elapsed().as_secs_f64() * 1000.0;

    let limit = Instant::now() + Duration::from_secs(60);
    let first: chrono::DateTime<chrono::Utc> = loop {
        crate::check_abort()?;
        let row = on_standby.query_one(
            "SELECT min(started_at) FROM manage.runs WHERE job = $1 AND started_at > $2",
            &[&JOB, &started],
        )?;
        if let Some(first) = row.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(0)? {
            break first;
        }
        anyhow::ensure!(
            Instant::now() < limit,
            "no run on the new primary within 60 s of the promotion (runner log: {})",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Its sessions that are alive now are on a server that takes writes
    // (target_session_attrs=read-write drops any other): the first began
    // when it was back.
    let back: chrono::DateTime<chrono::Utc> = on_standby
        .query_one(
            "SELECT min(backend_start) FROM pg_stat_activity WHERE application_name = $1 AND backend_start > $2",
            &[&manage::runner::APPLICATION_NAME, &started],
        )?
        .try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(0)?
        .context("the runner ran a job on the new primary but has no session there")?;
    drop(runner);
    let ms = |to: chrono::DateTime<chrono::Utc>, from: chrono::DateTime<chrono::Utc>| {
        (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
    };
    Ok(Failover {
        from_return: ms(first, returned),
        from_start: ms(first, started),
        promote: promote_ms,
        reconnect: ms(back, returned),
    })
}

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let bin = manage::db::embedded::find_server_bin_dir(
        std::env::var_os("PATH").as_deref(),
        Path::new("/usr/lib/postgresql"),
    )
    .context("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql")?;
    // PATH may hold links to some of the server's tools only
    // (/usr/local/bin/pg_ctl): pg_basebackup is beside the real pg_ctl.
    let bin = std::fs::canonicalize(bin.join("pg_ctl"))
        .context("resolving pg_ctl")?
        .parent()
        .context("pg_ctl has no directory")?
        .to_path_buf();
    let user = server_user()?;
    let reps = bench.pick(5, 3);
    let mut all = Vec::new();
    for rep in 0..reps {
        crate::check_abort()?;
        let phase = Duration::from_secs_f64(rep as f64 / reps as f64);
        let f =
            once(bench, rep, phase, &bin, user).with_context(|| format!("failover {}", rep + 1))?;
        crate::say(&format!(
            "  failover {}: first run {:.0} ms after promote returned ({:.0} ms after it started; promote took {:.0} ms; runner back {:.0} ms after promote returned)",
            rep + 1, f.from_return, f.from_start, f.promote, f.reconnect
        ));
        all.push(f);
    }
    let from_return: Vec<f64> = all.iter().map(|f| f.from_return).collect();
    let from_start: Vec<f64> = all.iter().map(|f| f.from_start).collect();
    let promote: Vec<f64> = all.iter().map(|f| f.promote).collect();
    let reconnect: Vec<f64> = all.iter().map(|f| f.reconnect).collect();
    let promise = (CONNECT_TIMEOUT * 1000 + 5000) as f64;
    let how = format!(
        "a fresh primary + pg_basebackup -R standby on 127.0.0.1 each time; the runner's URL lists both, target_session_attrs=read-write&connect_timeout={CONNECT_TIMEOUT}; a job every 1 s, so up to 1 s of it is the wait for the next due second (the crash comes 0, 1/n, 2/n .. s after a run); pg_ctl stop -m immediate on the primary, then pg_ctl promote -w; the first manage.runs started_at on the new primary; {reps} failovers"
    );
    bench.push(
        Figure::distribution(
            "failover.promoted_to_first_run",
            "failover: promote returned → first run on the new primary",
            "ms",
            &from_return,
        )
        .target(Target::at_most(promise, "max"))
        .note(format!(
            "§19: within connect_timeout + 5 s = {} s of the new primary accepting writes; {how}",
            promise / 1000.0
        )),
    );
    bench.push(
        Figure::distribution(
            "failover.promote_to_first_run",
            "failover: promote started → first run on the new primary",
            "ms",
            &from_start,
        )
        .note("the same runs, from just before pg_ctl promote -w (the primary already stopped)"),
    );
    bench.push(
        Figure::distribution(
            "failover.promoted_to_reconnect",
            "failover: promote returned → runner's first session on the new primary",
            "ms",
            &reconnect,
        )
        .note("min(backend_start) of the runner's sessions (application_name) alive on the new primary once it ran a job there; negative when it connected while pg_ctl was still polling"),
    );
    bench.push(
        Figure::distribution(
            "failover.promote",
            "failover: pg_ctl promote -w",
            "ms",
            &promote,
        )
        .note("how long promotion itself took (PostgreSQL's part)"),
    );
    Ok(())
}
