//! The private, embedded PostgreSQL cluster `manage` uses when no database
//! URL is configured.
//!
//! This module owns everything about that cluster: where it lives
//! (`$MANAGE_DATA_DIR/pg`), creating it with `initdb`, starting and stopping
//! it with `pg_ctl`, choosing the Unix socket directory, and — when `manage`
//! runs as root — which unprivileged user the server runs as.  It returns
//! values and errors and never prints: the caller owns stdout/stderr.
//!
//! Why it is shaped so:
//!
//! * Every `manage` invocation goes through [`ensure_running`], so its common
//!   case must be cheap.  When the socket file exists it returns at once,
//!   without spawning a process and without connecting: the caller's own
//!   connection is the liveness test.  Only when that connection fails does
//!   the caller take the slow path, [`start`], which trusts `pg_ctl start` to
//!   sort out a stale socket or `postmaster.pid` left by a crash.
//! * The server never listens on TCP (another PostgreSQL may own port 5432
//!   on the machine); it listens only on a Unix socket.  A socket path is
//!   limited to 107 bytes, so a long data directory gets its socket in a
//!   short per-cluster directory under `/tmp` ([`socket_dir_for`]).
//! * Settings that depend on where the cluster lives are kept in a separate
//!   `manage.conf` that [`start`] rewrites on every start, so a cluster whose
//!   data directory was moved still puts its socket where we look for it.
//! * PostgreSQL refuses to run as root, so as root every tool runs as the
//!   cluster's owner (see [`ServerUser`]), and the directories it needs are
//!   chowned to that user.
//! * Creation and start are serialised by a lock file in the data directory,
//!   so two invocations racing on a fresh machine do not both run `initdb`.

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The role and database the cluster is created with and `manage` uses.
pub const DB_USER: &str = "manage";
/// The database `manage` keeps its tables in.
pub const DB_NAME: &str = "manage";
/// The port only names the socket file (`.s.PGSQL.5432`): nothing listens on TCP.
pub const PORT: u16 = 5432;
/// The socket file's name inside the socket directory, derived from [`PORT`].
pub const SOCKET_FILE: &str = ".s.PGSQL.5432";
/// Longest Unix socket path: `sun_path` is 108 bytes including the NUL.
pub const MAX_SOCKET_PATH: usize = 107;
/// Where Debian-style systems install the server binaries, one dir per version.
pub const PG_LIB_ROOT: &str = "/usr/lib/postgresql";

/// Errors the caller reports (and, for some, acts on).
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// Neither PATH nor `/usr/lib/postgresql/*/bin` holds `initdb` and `pg_ctl`.
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) found on PATH or under \
         /usr/lib/postgresql/*/bin: install the PostgreSQL server package, or set DATABASE_URL"
    )]
    BinariesNotFound,
    /// Running as root with neither a non-root data directory owner nor a `postgres` user.
    #[error(
        "running as root, the embedded database needs an unprivileged user: create the user \
         postgres, or set MANAGE_DATA_DIR to a directory owned by an unprivileged user"
    )]
    NoUnprivilegedUser,
    /// A directory or file is in a state this module will not work with; `reason` says why.
    #[error("{}: {reason}", path.display())]
    Unusable {
        /// The offending path.
        path: PathBuf,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// `initdb` or `pg_ctl` failed; `output` is what it printed (and the server log's tail).
    #[error("{what} failed ({status}):\n{output}")]
    Tool {
        /// Which step, e.g. `initdb -D /var/lib/manage/pg`.
        what: String,
        /// The exit status as text.
        status: String,
        /// Captured stdout and stderr of the tool.
        output: String,
    },
    /// A file-system operation (or spawning a tool) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Connecting to the cluster or creating the `manage` database failed.
    #[error("{what}: {detail}")]
    Database {
        /// What was being done.
        what: String,
        /// The error and its causes, flattened (the driver's own Display is terse).
        detail: String,
        /// The driver's error.
        #[source]
        source: postgres::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> EmbeddedError {
    let what = what.into();
    move |source| EmbeddedError::Io { what, source }
}

/// What [`ensure_running`] / [`start`] found or did, and how to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embedded {
    /// `MANAGE_DATA_DIR`, canonicalised.
    pub data_dir: PathBuf,
    /// The cluster's directory, `<data_dir>/pg`.
    pub pg_dir: PathBuf,
    /// The directory holding the server's Unix socket.
    pub socket_dir: PathBuf,
    /// `initdb` ran during this call.
    pub created: bool,
    /// `pg_ctl start` ran during this call.
    pub started: bool,
}

impl Embedded {
    /// How to reach the cluster: over its Unix socket, as `manage`, database `manage`.
    pub fn connection_config(&self) -> postgres::Config {
        connection_config(&self.socket_dir, DB_NAME)
    }

    /// The one line the caller prints to stderr on each invocation.
    /// A created cluster was also started; only the more telling word is shown.
    pub fn describe(&self) -> String {
        let what = if self.created {
            " (created)"
        } else if self.started {
            " (started)"
        } else {
            ""
        };
        format!(
            "using the embedded database in {}{what}",
            self.pg_dir.display()
        )
    }
}

fn connection_config(socket_dir: &Path, dbname: &str) -> postgres::Config {
    let mut config = postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(PORT)
        .user(DB_USER)
        .dbname(dbname);
    config
}

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

/// The cluster directory inside a data directory.
pub fn pg_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pg")
}

// ---------------------------------------------------------------------------
// Data directory

/// The data directory: `MANAGE_DATA_DIR` when set and non-empty; as root
/// `/var/lib/manage` (a root home is not reachable by the unprivileged
/// server); else `~/.local/share/manage`.  Without a home it falls back to a
/// path relative to the working directory rather than failing: the caller
/// still gets a usable answer and the path shows in every message.
pub fn default_data_dir(
    env_manage_data_dir: Option<OsString>,
    home: Option<PathBuf>,
    is_root: bool,
) -> PathBuf {
    if let Some(dir) = env_manage_data_dir.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if is_root {
        return PathBuf::from("/var/lib/manage");
    }
    let rel = Path::new(".local/share/manage");
    match home.filter(|h| !h.as_os_str().is_empty()) {
        Some(home) => home.join(rel),
        None => rel.to_path_buf(),
    }
}

/// [`default_data_dir`] fed from the process environment (`HOME`, falling
/// back to the passwd entry's home directory).
pub fn data_dir_from_env() -> PathBuf {
    let uid = current_euid();
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| lookup_user_by_uid(uid).ok().flatten().map(|u| u.home));
    default_data_dir(std::env::var_os("MANAGE_DATA_DIR"), home, uid == 0)
}

// ---------------------------------------------------------------------------
// Socket directory

/// FNV-1a, 64 bit: tiny and, unlike `DefaultHasher`, guaranteed stable across
/// Rust releases — the hash names a directory that must not move on upgrade.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Where the socket of the cluster in `canonical_data_dir` lives: `<dir>/pg`
/// when `<dir>/pg/.s.PGSQL.5432` fits in [`MAX_SOCKET_PATH`] bytes, else
/// `/tmp/manage-<16 hex digits of a hash of the path>`.  Pure.
pub fn socket_dir_for(canonical_data_dir: &Path) -> PathBuf {
    let pg = pg_dir(canonical_data_dir);
    if pg.join(SOCKET_FILE).as_os_str().len() <= MAX_SOCKET_PATH {
        pg
    } else {
        let hash = fnv1a64(canonical_data_dir.as_os_str().as_bytes());
        PathBuf::from(format!("/tmp/manage-{hash:016x}"))
    }
}

/// Whether a directory outside the cluster is safe to trust for the socket:
/// a real directory (not a symlink someone planted in /tmp), owned by the
/// server's uid and closed to everybody else.
fn private_dir_ok(meta: &fs::Metadata, uid: u32) -> bool {
    meta.file_type().is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0
}

/// Creates (or checks) the short socket directory under /tmp.
fn prepare_socket_dir(dir: &Path, user: &ServerUser) -> Result<(), EmbeddedError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            if user.switch {
                std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
                    .map_err(io_err(format!("chown {}", dir.display())))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta =
                fs::symlink_metadata(dir).map_err(io_err(format!("stat {}", dir.display())))?;
            if private_dir_ok(&meta, user.uid) {
                Ok(())
            } else {
                Err(EmbeddedError::Unusable {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "the socket directory must be a directory owned by {} with mode 0700; \
                         remove it and retry",
                        user.name
                    ),
                })
            }
        }
        Err(e) => Err(io_err(format!("create {}", dir.display()))(e)),
    }
}

// ---------------------------------------------------------------------------
// Binaries

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

fn has_server_tools(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"))
}

/// A version directory name as numbers (`"9.6"` → `[9, 6]`), or `None` for
/// names that are not versions, so they are skipped rather than mis-sorted.
fn parse_version(name: &OsStr) -> Option<Vec<u32>> {
    let name = name.to_str()?;
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The directory holding `initdb` and `pg_ctl`: the first PATH entry that
/// has both (both from one directory, so they are of one version), else the
/// highest-versioned `<lib_root>/<version>/bin` that has both.  Takes PATH
/// and the root as arguments so tests can steer it.
pub fn find_server_bin_dir(path_var: Option<&OsStr>, lib_root: &Path) -> Option<PathBuf> {
    if let Some(path_var) = path_var {
        for dir in std::env::split_paths(path_var) {
            if !dir.as_os_str().is_empty() && has_server_tools(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(lib_root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((parse_version(&entry.file_name())?, entry.path().join("bin"))))
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions
        .into_iter()
        .map(|(_, bin)| bin)
        .find(|bin| has_server_tools(bin))
}

fn server_bin_dir() -> Result<PathBuf, EmbeddedError> {
    find_server_bin_dir(std::env::var_os("PATH").as_deref(), Path::new(PG_LIB_ROOT))
        .ok_or(EmbeddedError::BinariesNotFound)
}

// ---------------------------------------------------------------------------
// Users

/// A passwd entry, as far as this module needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory.
    pub home: PathBuf,
}

/// Who the PostgreSQL tools run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUser {
    /// Login name (for messages).
    pub name: String,
    /// User id the tools run as.
    pub uid: u32,
    /// Group id the tools run as.
    pub gid: u32,
    /// `HOME` for the tools.
    pub home: PathBuf,
    /// Whether we must switch to this user (we are root) or already are it.
    pub switch: bool,
}

impl ServerUser {
    fn from_entry(entry: UserEntry, switch: bool) -> Self {
        ServerUser {
            name: entry.name,
            uid: entry.uid,
            gid: entry.gid,
            home: entry.home,
            switch,
        }
    }
}

fn current_euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

impl From<nix::unistd::User> for UserEntry {
    fn from(user: nix::unistd::User) -> Self {
        UserEntry {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        }
    }
}

/// The passwd entry named `name` (getpwnam_r); `Ok(None)` when there is none.
fn lookup_user_by_name(name: &str) -> io::Result<Option<UserEntry>> {
    Ok(nix::unistd::User::from_name(name)?.map(UserEntry::from))
}

/// The passwd entry of `uid` (getpwuid_r); `Ok(None)` when there is none.
fn lookup_user_by_uid(uid: u32) -> io::Result<Option<UserEntry>> {
    Ok(nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))?.map(UserEntry::from))
}

/// Chooses who runs the server.  Not root: ourselves.  Root: the first
/// non-root owner among `owners` (the cluster dir, then the data dir — the
/// cluster dir first because a cluster can only be run by its owner), else
/// the `postgres` user.  Lookups are passed in so the rule is testable.
pub fn choose_server_user(
    euid: u32,
    owners: &[Option<u32>],
    by_uid: impl Fn(u32) -> Option<UserEntry>,
    postgres_user: impl FnOnce() -> Option<UserEntry>,
) -> Result<ServerUser, EmbeddedError> {
    if euid != 0 {
        let entry = by_uid(euid).unwrap_or_else(|| UserEntry {
            name: euid.to_string(),
            uid: euid,
            gid: u32::MAX, // unused: we do not switch
            home: std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default(),
        });
        return Ok(ServerUser::from_entry(entry, false));
    }
    if let Some(owner) = owners.iter().flatten().copied().find(|&uid| uid != 0) {
        // initdb and postgres look their own user up; an owner without a
        // passwd entry would fail there with a worse message.
        return by_uid(owner)
            .map(|e| ServerUser::from_entry(e, true))
            .ok_or(EmbeddedError::NoUnprivilegedUser);
    }
    postgres_user()
        .filter(|e| e.uid != 0)
        .map(|e| ServerUser::from_entry(e, true))
        .ok_or(EmbeddedError::NoUnprivilegedUser)
}

fn owner_of(path: &Path) -> Option<u32> {
    fs::metadata(path).ok().map(|m| m.uid())
}

fn server_user(data_dir: &Path) -> Result<ServerUser, EmbeddedError> {
    choose_server_user(
        current_euid(),
        &[owner_of(&pg_dir(data_dir)), owner_of(data_dir)],
        |uid| lookup_user_by_uid(uid).ok().flatten(),
        || lookup_user_by_name("postgres").ok().flatten(),
    )
}

/// Whether `user` (with only its primary group: supplementary groups are
/// dropped when we switch) may enter `dir`, judged from mode bits.
fn can_enter(meta: &fs::Metadata, user: &ServerUser) -> bool {
    let mode = meta.mode();
    if meta.uid() == user.uid {
        mode & 0o100 != 0
    } else if meta.gid() == user.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// As root, the server user must be able to walk down to the cluster; a
/// 0700 root home on the way is the classic failure, and initdb's message
/// for it does not say what to do.  (ACLs are not considered.)
fn check_reachable(dir: &Path, user: &ServerUser) -> Result<(), EmbeddedError> {
    if !user.switch {
        return Ok(());
    }
    for ancestor in dir.ancestors() {
        let meta =
            fs::metadata(ancestor).map_err(io_err(format!("stat {}", ancestor.display())))?;
        if !can_enter(&meta, user) {
            return Err(EmbeddedError::Unusable {
                path: ancestor.to_path_buf(),
                reason: format!(
                    "the embedded database runs as the user {}, who cannot enter this directory \
                     (owner uid {}, mode {:04o}): set MANAGE_DATA_DIR to a directory that user \
                     can reach",
                    user.name,
                    meta.uid(),
                    meta.mode() & 0o7777
                ),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Running tools

#[cfg(test)]
thread_local! {
    /// Processes spawned by this thread, so tests can prove the fast path spawns none.
    static SPAWNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A command for a PostgreSQL tool, run as the server user.
fn tool_command(program: &Path, user: &ServerUser, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    // Our PG* variables (PGDATA, PGPORT, PGHOST, ...) describe the database
    // the user points *clients* at, not this cluster.
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"PG") {
            cmd.env_remove(&key);
        }
    }
    // The tools resolve their own path from the working directory, which
    // must be readable by the server user (root's cwd often is not).
    cmd.current_dir(cwd);
    if user.switch {
        // std sets the gid before the uid and, when a uid is given without
        // explicit groups, calls setgroups(0) first: root's supplementary
        // groups are dropped without any unsafe pre_exec of ours (the test
        // `switched_command_drops_root_groups` checks this).
        cmd.uid(user.uid).gid(user.gid);
        cmd.env("HOME", &user.home)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
    }
    // Its own process group: a Ctrl-C or hangup aimed at our terminal's
    // group must not reach pg_ctl (which itself setsid()s the postmaster).
    cmd.process_group(0);
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs a tool to completion, capturing its output; a failure carries it.
fn run_tool(mut cmd: Command, what: String) -> Result<String, EmbeddedError> {
    #[cfg(test)]
    SPAWNED.with(|n| n.set(n.get() + 1));
    let out = cmd.output().map_err(io_err(format!("running {what}")))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(EmbeddedError::Tool {
            what,
            status: out.status.to_string(),
            output: text.trim_end().to_owned(),
        })
    }
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

// ---------------------------------------------------------------------------
// Settings

/// A postgresql.conf string literal.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The contents of `manage.conf`: the settings that follow the cluster's
/// location, rewritten by every start.  `unix_socket_permissions = 0700`:
/// only the server user may connect, and root, who may run `manage` against
/// a cluster owned by `postgres`, passes anyway (root bypasses file
/// permissions, as it does for the 0700 directories around the socket).
pub fn settings_conf(socket_dir: &Path) -> String {
    format!(
        "# Written by manage on every start; edits here are lost.\n\
         listen_addresses = ''\n\
         port = {PORT}\n\
         unix_socket_directories = {}\n\
         unix_socket_permissions = 0700\n",
        conf_quote(&socket_dir.to_string_lossy())
    )
}

const INCLUDE_LINE: &str = "include_if_exists = 'manage.conf'";

fn write_file_as(path: &Path, contents: &str, user: &ServerUser) -> Result<(), EmbeddedError> {
    fs::write(path, contents).map_err(io_err(format!("write {}", path.display())))?;
    if user.switch {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("chown {}", path.display())))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Status

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

/// The state letter of a /proc/<pid>/stat line; the command name in
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

// ---------------------------------------------------------------------------
// Fast path, start, stop

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

/// Creates `data_dir` if missing: parents with the default mode (so an
/// unprivileged server can traverse them), the directory itself 0700.
/// Returns whether it was created.
fn create_data_dir(data_dir: &Path) -> Result<bool, EmbeddedError> {
    if data_dir.is_dir() {
        return Ok(false);
    }
    if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
    }
    match DirBuilder::new().mode(0o700).create(data_dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && data_dir.is_dir() => Ok(false),
        Err(e) => Err(io_err(format!("create {}", data_dir.display()))(e)),
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

fn create_cluster(data_dir: &Path, user: &ServerUser) -> Result<(), EmbeddedError> {
    let pg = pg_dir(data_dir);
    match DirBuilder::new().mode(0o700).create(&pg) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // initdb accepts an empty directory; anything else is not ours to wipe.
            let mut entries =
                fs::read_dir(&pg).map_err(io_err(format!("read {}", pg.display())))?;
            if entries.next().is_some() {
                return Err(EmbeddedError::Unusable {
                    path: pg,
                    reason: "exists but holds no PostgreSQL cluster (no PG_VERSION): \
                             move it away and retry"
                        .to_owned(),
                });
            }
        }
        Err(e) => return Err(io_err(format!("create {}", pg.display()))(e)),
    }
    if user.switch {
        std::os::unix::fs::chown(&pg, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("chown {}", pg.display())))?;
    }
    let bin = server_bin_dir()?;
    let mut cmd = tool_command(&bin.join("initdb"), user, data_dir);
    cmd.arg("-D")
        .arg(&pg)
        .args(["-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-locale"]);
    run_tool(cmd, format!("initdb -D {}", pg.display()))?;

    let conf = pg.join("postgresql.conf");
    let mut text = fs::read_to_string(&conf).map_err(io_err(format!("read {}", conf.display())))?;
    text.push_str("\n# Added by manage: location-dependent settings, rewritten on every start.\n");
    text.push_str(INCLUDE_LINE);
    text.push('\n');
    write_file_as(&conf, &text, user)
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

fn db_error(what: &str, source: postgres::Error) -> EmbeddedError {
    let mut detail = source.to_string();
    let mut cause = std::error::Error::source(&source);
    while let Some(c) = cause {
        detail.push_str(": ");
        detail.push_str(&c.to_string());
        cause = c.source();
    }
    EmbeddedError::Database {
        what: what.to_owned(),
        detail,
        source,
    }
}

/// Creates the `manage` database unless it exists, connecting to `postgres`.
fn ensure_database(socket_dir: &Path) -> Result<(), EmbeddedError> {
    let what = "connecting to the embedded database";
    let mut client = connection_config(socket_dir, "postgres")
        .connect(postgres::NoTls)
        .map_err(|e| db_error(what, e))?;
    let what = "creating the database manage";
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DB_NAME])
        .map_err(|e| db_error(what, e))?
        .is_some();
    if !exists {
        match client.batch_execute("CREATE DATABASE manage") {
            Ok(()) => {}
            // Created meanwhile by someone not holding our lock: fine.
            Err(e) if e.code() == Some(&postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(db_error(what, e)),
        }
    }
    Ok(())
}

/// Stops the cluster (`pg_ctl -m fast -w stop`, as the server user) when it
/// runs.  Returns whether it was running.
pub fn stop(data_dir: &Path) -> Result<bool, EmbeddedError> {
    if !matches!(status(data_dir), Status::Running { .. }) {
        return Ok(false);
    }
    let user = server_user(data_dir)?;
    let pg = pg_dir(data_dir);
    let bin = server_bin_dir()?;
    let mut cmd = tool_command(&bin.join("pg_ctl"), &user, data_dir);
    cmd.arg("-D").arg(&pg).args(["-m", "fast", "-w", "stop"]);
    run_tool(cmd, format!("pg_ctl -D {} stop", pg.display()))?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: panics are the failure report
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(name: &str, uid: u32) -> UserEntry {
        UserEntry {
            name: name.to_owned(),
            uid,
            gid: uid,
            home: PathBuf::from(format!("/home/{name}")),
        }
    }

    #[test]
    fn default_data_dir_rules() {
        let home = Some(PathBuf::from("/home/ann"));
        assert_eq!(
            default_data_dir(Some("/srv/m".into()), home.clone(), true),
            PathBuf::from("/srv/m")
        );
        assert_eq!(
            default_data_dir(Some("/srv/m".into()), home.clone(), false),
            PathBuf::from("/srv/m")
        );
        assert_eq!(
            default_data_dir(None, home.clone(), false),
            PathBuf::from("/home/ann/.local/share/manage")
        );
        // An empty variable counts as unset.
        assert_eq!(
            default_data_dir(Some("".into()), home.clone(), false),
            PathBuf::from("/home/ann/.local/share/manage")
        );
        assert_eq!(
            default_data_dir(None, Some("/root".into()), true),
            PathBuf::from("/var/lib/manage")
        );
        assert_eq!(
            default_data_dir(None, None, false),
            PathBuf::from(".local/share/manage")
        );
    }

    #[test]
    fn fnv_is_the_standard_fnv1a64() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn socket_dir_short_path_is_the_cluster_dir() {
        let dir = Path::new("/var/lib/manage");
        assert_eq!(socket_dir_for(dir), PathBuf::from("/var/lib/manage/pg"));
    }

    #[test]
    fn socket_dir_boundary_is_107_bytes() {
        // "/" + name + "/pg/.s.PGSQL.5432" (17 bytes) == 107 exactly.
        let fits = PathBuf::from(format!("/{}", "a".repeat(107 - 1 - 17)));
        assert_eq!(pg_dir(&fits).join(SOCKET_FILE).as_os_str().len(), 107);
        assert_eq!(socket_dir_for(&fits), pg_dir(&fits));
        let over = PathBuf::from(format!("/{}", "a".repeat(107 - 17)));
        assert_ne!(socket_dir_for(&over), pg_dir(&over));
    }

    #[test]
    fn socket_dir_long_path_is_short_and_stable() {
        let long = PathBuf::from(format!("/srv/{}", "x".repeat(200)));
        let dir = socket_dir_for(&long);
        let s = dir.to_str().unwrap_or_default();
        assert!(s.starts_with("/tmp/manage-"), "{s}");
        let hex = &s["/tmp/manage-".len()..];
        assert_eq!(hex.len(), 16);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(dir.join(SOCKET_FILE).as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(socket_dir_for(&long), dir, "deterministic");
        let other = PathBuf::from(format!("/srv/{}", "y".repeat(200)));
        assert_ne!(socket_dir_for(&other), dir);
    }

    #[test]
    fn version_parsing_and_order() {
        assert_eq!(parse_version(OsStr::new("15")), Some(vec![15]));
        assert_eq!(parse_version(OsStr::new("9.6")), Some(vec![9, 6]));
        assert_eq!(parse_version(OsStr::new("common")), None);
    }

    fn fake_tools(dir: &Path, names: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        for name in names {
            let p = dir.join(name);
            fs::write(&p, "#!/bin/sh\n").unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn binary_lookup_order() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("lib");
        fake_tools(&lib.join("9.6/bin"), &["initdb", "pg_ctl"]);
        fake_tools(&lib.join("10/bin"), &["initdb", "pg_ctl"]);
        fake_tools(&lib.join("16/bin"), &["initdb"]); // incomplete: skipped
        fake_tools(&lib.join("common/bin"), &["initdb", "pg_ctl"]); // not a version
                                                                    // Highest complete version, numerically (10 > 9.6).
        assert_eq!(find_server_bin_dir(None, &lib), Some(lib.join("10/bin")));
        fake_tools(&lib.join("15/bin"), &["initdb", "pg_ctl"]);
        assert_eq!(find_server_bin_dir(None, &lib), Some(lib.join("15/bin")));

        // PATH wins over the library root; only a dir with both tools counts.
        let only_initdb = tmp.path().join("p1");
        let both = tmp.path().join("p2");
        fake_tools(&only_initdb, &["initdb"]);
        fake_tools(&both, &["initdb", "pg_ctl"]);
        let path = std::env::join_paths([&only_initdb, &both]).unwrap();
        assert_eq!(find_server_bin_dir(Some(&path), &lib), Some(both.clone()));

        // Non-executable files do not count.
        fs::set_permissions(both.join("pg_ctl"), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            find_server_bin_dir(Some(&path), &lib),
            Some(lib.join("15/bin"))
        );

        assert_eq!(
            find_server_bin_dir(Some(&path), &tmp.path().join("none")),
            None
        );
    }

    #[test]
    fn server_user_rules() {
        let users = |uid: u32| match uid {
            1000 => Some(entry("ann", 1000)),
            101 => Some(entry("postgres", 101)),
            _ => None,
        };
        // Not root: ourselves, no switch.
        let u = choose_server_user(1000, &[Some(101)], users, || None).unwrap();
        assert_eq!((u.uid, u.switch), (1000, false));
        // Root, non-root owner of the cluster dir wins.
        let u = choose_server_user(0, &[Some(1000), Some(0)], users, || {
            Some(entry("postgres", 101))
        })
        .unwrap();
        assert_eq!((u.name.as_str(), u.switch), ("ann", true));
        // Root, cluster missing, data dir owned by ann.
        let u = choose_server_user(0, &[None, Some(1000)], users, || None).unwrap();
        assert_eq!(u.name, "ann");
        // Root, everything root-owned: postgres.
        let u = choose_server_user(0, &[None, Some(0)], users, || Some(entry("postgres", 101)))
            .unwrap();
        assert_eq!((u.name.as_str(), u.uid), ("postgres", 101));
        // Root, nobody: the documented error.
        let e = choose_server_user(0, &[None, Some(0)], users, || None).unwrap_err();
        assert!(matches!(e, EmbeddedError::NoUnprivilegedUser));
        assert_eq!(
            e.to_string(),
            "running as root, the embedded database needs an unprivileged user: create the user \
             postgres, or set MANAGE_DATA_DIR to a directory owned by an unprivileged user"
        );
        // Root, owner uid without a passwd entry: same error, not a doomed initdb.
        let e = choose_server_user(0, &[Some(4242)], users, || Some(entry("postgres", 101)))
            .unwrap_err();
        assert!(matches!(e, EmbeddedError::NoUnprivilegedUser));
    }

    #[test]
    fn settings_quote_paths() {
        let conf = settings_conf(Path::new("/tmp/it's"));
        assert!(
            conf.contains("unix_socket_directories = '/tmp/it''s'\n"),
            "{conf}"
        );
        assert!(conf.contains("listen_addresses = ''\n"));
        assert!(conf.contains("unix_socket_permissions = 0700\n"));
        assert_eq!(conf_quote(r"a\b"), r"'a\\b'");
    }

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
    fn describe_lines() {
        let mut e = Embedded {
            data_dir: "/d".into(),
            pg_dir: "/d/pg".into(),
            socket_dir: "/d/pg".into(),
            created: false,
            started: false,
        };
        assert_eq!(e.describe(), "using the embedded database in /d/pg");
        e.started = true;
        assert_eq!(
            e.describe(),
            "using the embedded database in /d/pg (started)"
        );
        e.created = true;
        assert_eq!(
            e.describe(),
            "using the embedded database in /d/pg (created)"
        );
        let c = e.connection_config();
        assert_eq!(c.get_user(), Some("manage"));
        assert_eq!(c.get_dbname(), Some("manage"));
        assert_eq!(c.get_ports(), &[5432]);
        assert_eq!(
            c.get_hosts(),
            &[postgres::config::Host::Unix(PathBuf::from("/d/pg"))]
        );
    }

    #[test]
    fn switched_command_drops_root_groups() {
        if current_euid() != 0 {
            return; // only root can switch users
        }
        let pg_user = lookup_user_by_name("postgres")
            .unwrap()
            .expect("a postgres user");
        let user = ServerUser::from_entry(pg_user.clone(), true);
        let mut cmd = tool_command(Path::new("/bin/cat"), &user, Path::new("/"));
        cmd.arg("/proc/self/status");
        let out = run_tool(cmd, "cat".into()).unwrap();
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                .unwrap()
        };
        let uid = pg_user.uid.to_string();
        let gid = pg_user.gid.to_string();
        assert_eq!(
            field("Uid:"),
            vec![uid.clone(), uid.clone(), uid.clone(), uid]
        );
        assert_eq!(
            field("Gid:"),
            vec![gid.clone(), gid.clone(), gid.clone(), gid]
        );
        assert!(
            field("Groups:").is_empty(),
            "supplementary groups left: {out}"
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
