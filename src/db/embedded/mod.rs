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
//!
//! The files follow those concerns: `tools.rs` finds the server binaries and
//! runs them, `user.rs` decides who runs them, `socket_dir.rs` where the
//! socket goes, `initdb.rs` creates the cluster and its `manage` database,
//! and `server.rs` starts, stops and reports on it.  This file keeps what
//! they all share: the names, the errors, [`Embedded`] and where the data
//! directory is.

mod initdb;
mod server;
mod socket_dir;
mod tools;
mod user;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};

pub use initdb::settings_conf;
pub use server::{ensure_running, start, status, stop, Status};
pub use socket_dir::{socket_dir_for, MAX_SOCKET_PATH};
pub use tools::{find_server_bin_dir, PG_LIB_ROOT};
pub use user::{choose_server_user, ServerUser, UserEntry};
use user::{current_euid, lookup_user_by_uid};

/// The role and database the cluster is created with and `manage` uses.
pub const DB_USER: &str = "manage";
/// The database `manage` keeps its tables in.
pub const DB_NAME: &str = "manage";
/// The port only names the socket file (`.s.PGSQL.5432`): nothing listens on TCP.
pub const PORT: u16 = 5432;
/// The socket file's name inside the socket directory, derived from [`PORT`].
pub const SOCKET_FILE: &str = ".s.PGSQL.5432";

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: panics are the failure report
mod tests {
    use super::*;

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
}
