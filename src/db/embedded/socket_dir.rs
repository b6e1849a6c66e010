//! Where the server's Unix socket lives: in the cluster directory when the
//! path is short enough, else in a private directory under `/tmp`.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::user::ServerUser;
use super::{io_err, pg_dir, EmbeddedError, SOCKET_FILE};

/// Longest Unix socket path: `sun_path` is 108 bytes including the NUL.
pub const MAX_SOCKET_PATH: usize = 107;

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
pub(super) fn private_dir_ok(meta: &fs::Metadata, uid: u32) -> bool {
    meta.file_type().is_dir() && meta.uid() == uid && meta.mode() & 0o077 == 0
}

/// Creates (or checks) the short socket directory under /tmp.
pub(super) fn prepare_socket_dir(dir: &Path, user: &ServerUser) -> Result<(), EmbeddedError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: panics are the failure report
mod tests {
    use super::*;

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
}
