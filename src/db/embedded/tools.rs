//! The PostgreSQL server tools (`initdb`, `pg_ctl`): finding them on PATH
//! or under `/usr/lib/postgresql/*/bin`, and running one as the server user.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::user::ServerUser;
use super::{io_err, EmbeddedError};

/// Where Debian-style systems install the server binaries, one dir per version.
pub const PG_LIB_ROOT: &str = "/usr/lib/postgresql";

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

pub(super) fn server_bin_dir() -> Result<PathBuf, EmbeddedError> {
    find_server_bin_dir(std::env::var_os("PATH").as_deref(), Path::new(PG_LIB_ROOT))
        .ok_or(EmbeddedError::BinariesNotFound)
}

#[cfg(test)]
thread_local! {
    /// Processes spawned by this thread, so tests can prove the fast path spawns none.
    pub(super) static SPAWNED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A command for a PostgreSQL tool, run as the server user.
pub(super) fn tool_command(program: &Path, user: &ServerUser, cwd: &Path) -> Command {
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
pub(super) fn run_tool(mut cmd: Command, what: String) -> Result<String, EmbeddedError> {
    #[cfg(test)]
    SPAWNED.with(|n| n.set(n.get() + 1));
    // A runner's reaper of adopted processes leaves our child alone meanwhile.
    let out = {
        let _tool = crate::process::TOOLS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cmd.output().map_err(io_err(format!("running {what}")))?
    };
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: panics are the failure report
mod tests {
    use super::super::user::{current_euid, lookup_user_by_name};
    use super::*;
    use std::os::unix::fs::PermissionsExt;

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
}
