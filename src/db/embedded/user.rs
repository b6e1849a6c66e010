//! Who runs the server: ourselves, or — since PostgreSQL refuses to run as
//! root — an unprivileged user chosen when `manage` runs as root.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{io_err, pg_dir, EmbeddedError};

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
    pub(super) fn from_entry(entry: UserEntry, switch: bool) -> Self {
        ServerUser {
            name: entry.name,
            uid: entry.uid,
            gid: entry.gid,
            home: entry.home,
            switch,
        }
    }
}

pub(super) fn current_euid() -> u32 {
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
pub(super) fn lookup_user_by_name(name: &str) -> io::Result<Option<UserEntry>> {
    Ok(nix::unistd::User::from_name(name)?.map(UserEntry::from))
}

/// The passwd entry of `uid` (getpwuid_r); `Ok(None)` when there is none.
pub(super) fn lookup_user_by_uid(uid: u32) -> io::Result<Option<UserEntry>> {
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

pub(super) fn server_user(data_dir: &Path) -> Result<ServerUser, EmbeddedError> {
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
pub(super) fn check_reachable(dir: &Path, user: &ServerUser) -> Result<(), EmbeddedError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: panics are the failure report
mod tests {
    use super::*;

    fn entry(name: &str, uid: u32) -> UserEntry {
        UserEntry {
            name: name.to_owned(),
            uid,
            gid: uid,
            home: PathBuf::from(format!("/home/{name}")),
        }
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
}
