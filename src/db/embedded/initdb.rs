//! Creating the cluster: the data directory, `initdb`, the `manage.conf`
//! it includes (rewritten by every start), and the `manage` database.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use super::tools::{run_tool, server_bin_dir, tool_command};
use super::user::ServerUser;
use super::{connection_config, io_err, pg_dir, EmbeddedError, DB_NAME, DB_USER, PORT};

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

pub(super) fn write_file_as(
    path: &Path,
    contents: &str,
    user: &ServerUser,
) -> Result<(), EmbeddedError> {
    fs::write(path, contents).map_err(io_err(format!("write {}", path.display())))?;
    if user.switch {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(io_err(format!("chown {}", path.display())))?;
    }
    Ok(())
}

/// Creates `data_dir` if missing: parents with the default mode (so an
/// unprivileged server can traverse them), the directory itself 0700.
/// Returns whether it was created.
pub(super) fn create_data_dir(data_dir: &Path) -> Result<bool, EmbeddedError> {
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

pub(super) fn create_cluster(data_dir: &Path, user: &ServerUser) -> Result<(), EmbeddedError> {
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
pub(super) fn ensure_database(socket_dir: &Path) -> Result<(), EmbeddedError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: panics are the failure report
mod tests {
    use super::*;

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
}
