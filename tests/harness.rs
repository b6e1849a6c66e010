//! The test harness: one throwaway PostgreSQL cluster per test run, one
//! database per test (cloned from a migrated template), and a builder that runs
//! the real `manage` binary and reads what it printed.
//!
//! The cluster is a child of a thread that lives as long as the test process,
//! with the parent-death signal set, so it dies with the run even when a test
//! panics or the run is interrupted. As root, PostgreSQL refuses to run, so the
//! cluster runs as `postgres` (or `nobody`) in a directory chowned to it.
//! `TEST_DATABASE_URL` switches to an existing server instead.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

pub const MANAGE: &str = env!("CARGO_BIN_EXE_manage");

/// The example application (`examples/app`), which `cargo test` and
/// `cargo nextest run` build beside the test binary (`target/*/examples/`).
pub fn example_app() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/PROFILE/deps/TEST");
    let app = profile_dir.join("examples").join("app");
    assert!(
        app.is_file(),
        "{} is missing: build it with `cargo build --example app` (cargo test does)",
        app.display()
    );
    app
}

/// Connection parameters of the server the tests use.
#[derive(Clone, Debug)]
struct Server {
    /// `key=value` conninfo without dbname.
    params: String,
    template: String,
}

struct Cluster {
    server: Server,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid() == 0
    }
}

/// (uid, gid, home) of the unprivileged user a root test run uses.
pub fn unprivileged_user() -> Option<(u32, u32)> {
    for name in ["postgres", "nobody"] {
        let out = Command::new("id").args(["-u", name]).output().ok()?;
        if !out.status.success() {
            continue;
        }
        let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        let out = Command::new("id").args(["-g", name]).output().ok()?;
        let gid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        return Some((uid, gid));
    }
    None
}

pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

pub fn find_pg_bin(name: &str) -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        std::cmp::Reverse(
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    for v in versions {
        let candidate = v.join("bin").join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("cannot find the PostgreSQL binary {name}: install the PostgreSQL server package or set TEST_DATABASE_URL");
}

pub fn as_server_user(command: &mut Command) -> &mut Command {
    if is_root() {
        let (uid, gid) = unprivileged_user()
            .expect("running as root, the test cluster needs a postgres or nobody user");
        command.uid(uid).gid(gid);
    }
    command
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove the directories of earlier runs whose process is gone.
fn clean_stale(base: &Path) {
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name
                .strip_prefix("manage-test-")
                .and_then(|p| p.parse::<u32>().ok())
            {
                if !pid_alive(pid) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

/// A fresh cluster in `dir/data` (made anew, owned by the server user),
/// initialised for tests: trust auth, superuser `postgres`, no fsync at init.
pub fn init_cluster(dir: &Path) -> Result<PathBuf, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{e:?}"))?;
    if is_root() {
        let (uid, gid) = unprivileged_user().ok_or("no unprivileged user for the test cluster")?;
        chown(dir, uid, gid);
    }
    let data = dir.join("data");
    let out = as_server_user(
        Command::new(find_pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]),
    )
    .output()
    .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(data)
}

fn start_cluster() -> Result<Server, String> {
    let base = std::env::temp_dir();
    clean_stale(&base);
    let dir = base.join(format!("manage-test-{}", std::process::id()));
    let data = init_cluster(&dir)?;
    let postgres = find_pg_bin("postgres");
    let socket_dir = dir.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    // The thread that forks the server must outlive it: the parent-death
    // signal fires when the forking *thread* exits.
    std::thread::spawn(move || {
        let mut command = Command::new(postgres);
        command
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&socket_dir)
            .args([
                "-c",
                "listen_addresses=",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
            ])
            .args([
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=64MB",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(socket_dir.join("server.log"))
                    .map(Stdio::from)
                    .unwrap_or(Stdio::null()),
            );
        as_server_user(&mut command);
        // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
                Ok(())
            });
        }
        match command.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(format!("starting postgres: {e}")));
            }
        }
    });
    rx.recv().map_err(|e| format!("{e:?}"))??;
    let params = format!("host={} port=5432 user=postgres", dir.display());
    wait_for_server(&params)?;
    Ok(Server {
        params,
        template: String::new(),
    })
}

fn wait_for_server(params: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Client::connect(&format!("{params} dbname=postgres"), NoTls) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("the test cluster did not start: {e}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `key=value` parameters (without dbname) of a URL.
fn params_of_url(url: &str) -> String {
    let config: postgres::Config = url
        .parse()
        .expect("TEST_DATABASE_URL is not a valid PostgreSQL URL");
    let mut params = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        match host {
            postgres::config::Host::Tcp(h) => params.push(format!("host={h}")),
            postgres::config::Host::Unix(p) => params.push(format!("host={}", p.display())),
        }
    }
    if let Some(port) = config.get_ports().first() {
        params.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        params.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        params.push(format!("password='{}'", String::from_utf8_lossy(password)));
    }
    params.join(" ")
}

/// Adopt the orphans of this test process's children and never reap them.
/// A runner killed with -9 takes its job's direct child — the group leader —
/// with it (the parent-death signal), and recovery can prove the group left
/// behind is the run's only while that leader is not yet reaped (§17). Who
/// adopts it otherwise, and how soon it is reaped, depends on the machine the
/// tests run on; this makes every test independent of it (and of which test
/// happened to run first).
pub fn keep_orphans_unreaped() {
    // SAFETY: PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
}

fn cluster() -> &'static Server {
    let result = CLUSTER.get_or_init(|| {
        keep_orphans_unreaped();
        let mut server = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Server {
                params: params_of_url(&url),
                template: String::new(),
            },
            _ => start_cluster()?,
        };
        server.template = format!("manage_template_{}", std::process::id());
        let mut admin = Client::connect(&format!("{} dbname=postgres", server.params), NoTls)
            .map_err(|e| format!("{e:?}"))?;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {}", server.template))
            .map_err(|e| format!("{e:?}"))?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", server.template))
            .map_err(|e| format!("{e:?}"))?;
        let mut client = Client::connect(
            &format!("{} dbname={}", server.params, server.template),
            NoTls,
        )
        .map_err(|e| format!("{e:?}"))?;
        let mut tx = client.transaction().map_err(|e| format!("{e:?}"))?;
        manage::db::migrate::apply(&mut tx).map_err(|e| format!("{e:?}"))?;
        tx.commit().map_err(|e| format!("{e:?}"))?;
        Ok(Cluster { server })
    });
    match result {
        Ok(cluster) => &cluster.server,
        Err(e) => panic!("test cluster: {e}"),
    }
}

/// A database of one's own: migrated (no jobs synced yet), dropped afterwards.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
    /// Where `manage()` writes the configuration file and runs: one place per
    /// database, so that paths relative to the file stay the same across runs.
    home: tempfile::TempDir,
}

impl TestDb {
    pub fn new() -> TestDb {
        let server = cluster();
        let name = format!(
            "manage_t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = format!("{} dbname=postgres", server.params);
        let mut client = Client::connect(&admin, NoTls).expect("connecting to the test cluster");
        client
            .batch_execute(&format!(
                "CREATE DATABASE {name} TEMPLATE {} STRATEGY FILE_COPY",
                server.template
            ))
            .expect("creating a test database");
        TestDb {
            url: format!("{} dbname={name}", server.params),
            name,
            admin,
            home: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connecting to the test database")
    }

    /// The rows of a query, each column as text (NULL as "NULL").
    pub fn query_strings(&self, sql: &str) -> Vec<Vec<String>> {
        with_client(&self.url, |client| client.simple_query(sql))
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("NULL").to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// One value as text.
    pub fn value(&self, sql: &str) -> String {
        self.query_strings(sql)
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .unwrap_or_else(|| panic!("no row from {sql}"))
    }

    /// Migrate `config`, make the jobs `due` due now, and run the runner
    /// once (it runs them, then the send_queued_mail their alerts triggered).
    pub fn run_once(&self, config: &str, due: &[&str]) -> Run {
        self.manage().config(config).arg("migrate").ok();
        let names: Vec<String> = due.iter().map(|j| format!("'{j}'")).collect();
        self.client()
            .batch_execute(&format!(
                "UPDATE manage.jobs SET next_run = now() WHERE name IN ({})",
                names.join(", ")
            ))
            .unwrap();
        self.manage()
            .config(config)
            .args(["scheduled_jobs_runner", "--once"])
            .run()
    }

    /// `jobs show NAME --json` under `config`.
    pub fn job_json(&self, config: &str, name: &str) -> serde_json::Value {
        self.manage()
            .config(config)
            .args(["jobs", "show", name, "--json"])
            .json()
    }

    /// How many mails and webhook deliveries are queued.
    pub fn queue_len(&self) -> i64 {
        self.value("SELECT count(*) FROM manage.mail_queue")
            .parse()
            .unwrap()
    }

    /// A runner of `manage` against this database.
    pub fn manage(&self) -> Manage {
        let mut manage = Manage::new().env("DATABASE_URL", &self.url);
        manage.home = self.home.path().to_path_buf();
        manage
    }

    /// The directory `manage()` runs in and writes its configuration file to.
    pub fn home(&self) -> &Path {
        self.home.path()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        forget_client(&self.url);
        if let Ok(mut client) = Client::connect(&self.admin, NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A builder for one run of the real binary, reading like the command line.
pub struct Manage {
    /// The binary: `manage`, or an application's own (`examples/app`).
    program: PathBuf,
    args: Vec<OsString>,
    env: BTreeMap<String, OsString>,
    config: Option<String>,
    /// Keeps the default home alive.
    _own: tempfile::TempDir,
    /// Where the configuration file is written (and the default cwd).
    home: PathBuf,
    cwd: Option<PathBuf>,
    serial: u32,
}

/// Environment variables `manage` reads: cleared so that the caller's
/// environment cannot leak into a test.
const MANAGE_VARS: &[&str] = &[
    "DATABASE_URL",
    "MANAGE_CONFIG",
    "MANAGE_TIMEZONE",
    "MANAGE_DATA_DIR",
    "TZ",
    "SCHEDULED_JOBS_EMAIL",
    "SCHEDULED_JOBS_EMAIL_SENDER",
    "SMTP_URL",
    "NO_COLOR",
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "MANAGE_LOG_FORMAT",
    "MANAGE_WEB_TOKEN",
];

impl Manage {
    pub fn new() -> Manage {
        let own = tempfile::tempdir().expect("temp dir");
        let mut env = BTreeMap::new();
        env.insert("TZ".to_string(), OsString::from("UTC"));
        // Never create an embedded cluster by accident in the user's home.
        env.insert(
            "MANAGE_DATA_DIR".to_string(),
            own.path().join("no-embedded-cluster").into_os_string(),
        );
        Manage {
            program: PathBuf::from(MANAGE),
            args: Vec::new(),
            env,
            config: None,
            home: own.path().to_path_buf(),
            _own: own,
            cwd: None,
            serial: COUNTER.fetch_add(1, Ordering::SeqCst),
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Self {
        self.env.insert(key.to_string(), value.into());
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.remove(key);
        self
    }

    /// Write `text` as the configuration file and point `--config` at it.
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.to_string());
        self
    }

    /// The directory the command runs in (a fresh temp dir by default).
    pub fn dir(&self) -> &Path {
        self.cwd.as_deref().unwrap_or(&self.home)
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Each run writes its own file (a runner still reading its file must not
    /// see it change), never `manage.toml`, so no run finds another's file as
    /// `./manage.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.home.join(format!("config-{}.toml", self.serial))
    }

    /// Run `program` instead of `manage`: an application built on the library.
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        for var in MANAGE_VARS {
            command.env_remove(var);
        }
        command.envs(&self.env);
        if let Some(text) = &self.config {
            let path = self.config_path();
            std::fs::write(&path, text).expect("writing the test configuration");
            command.env("MANAGE_CONFIG", &path);
        }
        command.args(&self.args).current_dir(self.dir());
        command
    }

    pub fn run(self) -> Run {
        let mut command = self.command();
        command.stdin(Stdio::null());
        let output = command.output().expect("running manage");
        Run::from(output)
    }

    /// Run with stdout on a pseudo-terminal (120 columns), as a person at a
    /// terminal would; stderr is captured as usual. The terminal turns each
    /// `\n` into `\r\n`; `stdout` has them turned back.
    pub fn run_on_terminal(self) -> Run {
        self.run_on_terminal_of_size(120)
    }

    /// [`Manage::run_on_terminal`] on a pseudo-terminal that reports
    /// `columns` columns (0: a terminal that does not know its size).
    pub fn run_on_terminal_of_size(self, columns: u16) -> Run {
        use std::io::Read as _;
        use std::os::fd::{FromRawFd as _, OwnedFd};
        let (mut master, slave) = {
            let (mut master, mut slave) = (-1, -1);
            let size = libc::winsize {
                ws_row: 50,
                ws_col: columns,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: openpty writes two descriptors into the out-pointers;
            // the name and termios pointers may be null.
            #[allow(unsafe_code)]
            let rc = unsafe {
                libc::openpty(
                    &mut master,
                    &mut slave,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    &size,
                )
            };
            assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
            // SAFETY: both descriptors are fresh and owned by nothing else.
            #[allow(unsafe_code)]
            unsafe {
                (
                    std::fs::File::from_raw_fd(master),
                    OwnedFd::from_raw_fd(slave),
                )
            }
        };
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(slave))
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("running manage");
        // Our copy of the terminal's end went into the child: reading ends
        // (EIO) once the child's copies are closed.
        drop(command);
        let mut stdout = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => stdout.extend_from_slice(&buf[..n]),
            }
        }
        let mut stderr = Vec::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_end(&mut stderr)
            .expect("reading stderr");
        let status = child.wait().expect("waiting for manage");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).replace("\r\n", "\n"),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Run and insist on exit 0.
    pub fn ok(self) -> Run {
        let description = format!("{:?}", self.args);
        let run = self.run();
        assert_eq!(
            run.code, 0,
            "manage {description} failed:\nstdout: {}\nstderr: {}",
            run.stdout, run.stderr
        );
        run
    }

    /// Run and parse stdout as JSON, insisting on exit 0.
    pub fn json(self) -> serde_json::Value {
        let run = self.ok();
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout))
    }
}

/// What one run printed and how it ended.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Assert exit 2 with exactly one `error:` line that contains each of `needles`.
    pub fn assert_bad_input(&self, needles: &[&str]) {
        assert_eq!(
            self.code, 2,
            "expected exit 2, got {}:\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        );
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected one error line, stderr was:\n{}",
            self.stderr
        );
        for needle in needles {
            assert!(
                errors[0].contains(needle),
                "error line {:?} does not contain {needle:?}",
                errors[0]
            );
        }
        assert!(
            !self.stderr.contains("panicked"),
            "a panic reached the user:\n{}",
            self.stderr
        );
    }
}

/// A `manage scheduled_jobs_runner` running in the background; stopped (and
/// killed if need be) when dropped. Its stderr goes to a file for `log()`.
pub struct Background {
    pub child: std::process::Child,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
    /// The home of the Manage that started it (its configuration file).
    _home: tempfile::TempDir,
}

impl Manage {
    /// Start the command in the background (a runner, usually).
    pub fn spawn(self) -> Background {
        let dir = tempfile::tempdir().expect("temp dir");
        let log_path = dir.path().join("stderr.log");
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("stdout.log")).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()));
        let child = command.spawn().expect("spawning manage");
        Background {
            child,
            log_path,
            _dir: dir,
            _home: self._own,
        }
    }
}

impl Background {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The CPU time the process has used so far (user + system), from
    /// /proc: how a test tells a sleeping loop from a spinning one.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("reading /proc/PID/stat");
        // The fields after the command name, which is in parentheses.
        let (_, fields) = stat.rsplit_once(") ").expect("a stat line");
        let fields: Vec<&str> = fields.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        #[allow(unsafe_code)]
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        ticks as f64 / per_second as f64
    }

    /// Send a signal.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Wait for the process to exit, at most `limit`; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait; panics with the log if it does not stop in time.
    pub fn stop(mut self) -> String {
        self.signal(libc::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(40));
        let log = self.log();
        assert_eq!(code, Some(0), "the runner did not stop cleanly:\n{log}");
        log
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Wait until `condition` holds, checking every 50 ms, at most `limit`.
pub fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One finished or running run, as a runner recorded it.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub id: i64,
    pub state: String,
    pub output: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub runner_id: Option<i64>,
    pub pgid: Option<i32>,
}

/// Every run of `job` in the database at `url`, oldest first.
pub fn runs(url: &str, job: &str) -> Vec<RunRecord> {
    with_client(url, |client| {
        client.query(
            "SELECT id, state, output, started_at, finished_at, runner_id, pgid FROM manage.runs WHERE job = $1 ORDER BY started_at, id",
            &[&job],
        )
    })
    .iter()
    .map(|r| RunRecord {
        id: r.get(0),
        state: r.get(1),
        output: r.get(2),
        started_at: r.get(3),
        finished_at: r.get(4),
        runner_id: r.get(5),
        pgid: r.get(6),
    })
    .collect()
}

/// The tests' polling connections, one per database URL (each test's
/// database, each private cluster): `wait_for` asks every 50 ms, and a new
/// connection — a forked backend — per question was most of what eight tests
/// at once cost this machine. Closed when the database goes (`forget_client`).
static CLIENTS: std::sync::Mutex<
    BTreeMap<String, std::sync::Arc<std::sync::Mutex<Option<Client>>>>,
> = std::sync::Mutex::new(BTreeMap::new());

fn client_slot(url: &str) -> std::sync::Arc<std::sync::Mutex<Option<Client>>> {
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    std::sync::Arc::clone(clients.entry(url.to_string()).or_default())
}

/// Close the polling connection to `url` (its database is going away).
pub fn forget_client(url: &str) {
    let slot = CLIENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(url);
    drop(slot);
}

/// `query` on the polling connection to `url`, opened on first use and
/// opened again once when it fails (a test restarted its cluster).
pub fn with_client<T>(url: &str, query: impl Fn(&mut Client) -> Result<T, postgres::Error>) -> T {
    let slot = client_slot(url);
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    let mut last_error = None;
    for _ in 0..2 {
        if slot.as_ref().is_none_or(Client::is_closed) {
            *slot = Some(Client::connect(url, NoTls).expect("connecting"));
        }
        let Some(client) = slot.as_mut() else {
            continue;
        };
        match query(client) {
            Ok(value) => return value,
            Err(e) => {
                *slot = None;
                last_error = Some(e);
            }
        }
    }
    panic!("query on {url}: {last_error:?}")
}

/// Whether a process whose command line contains `needle` exists (as
/// `pgrep -f`, without starting a process to ask).
pub fn process_running(needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
            && std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
                let line: Vec<u8> = cmdline
                    .iter()
                    .map(|&b| if b == 0 { b' ' } else { b })
                    .collect();
                String::from_utf8_lossy(&line).contains(needle)
            })
    })
}

/// A finished (or, without `finished_at`, running) run written straight into
/// the history, as an importer would: for tests of what reads history.
pub fn insert_run(
    client: &mut Client,
    job: &str,
    state: &str,
    started_at: chrono::DateTime<chrono::Utc>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
    output: &str,
) -> i64 {
    let runtime = finished_at.map(|f| (f - started_at).num_milliseconds() as f64 / 1000.0);
    client
        .query_one(
            "INSERT INTO manage.runs (job, state, started_at, finished_at, runtime_seconds, output, host) \
             VALUES ($1, $2, $3, $4, $5, $6, 'testhost') RETURNING id",
            &[&job, &state, &started_at, &finished_at, &runtime, &output],
        )
        .unwrap()
        .get(0)
}
