//! Host identity: the short host name that runs and mails are labelled with,
//! the machine and boot a process group lives in, and whether we run as root.
//!
//! The name and the user come from `nix`'s safe wrappers, so the raw libc
//! calls behind them are that maintained crate's to get right, not ours. The
//! machine and boot ids are what recovery trusts, not the name: two hosts may
//! share a short name, and a pid means nothing across a reboot (§17).

use std::path::Path;
use std::sync::OnceLock;

/// The short host name: up to the first dot, `localhost` when the system
/// will not say.  The runner records it with each run (so a person can see
/// where it ran) and mail uses it in its greeting and sender.
pub fn short_host_name() -> String {
    let Ok(name) = nix::unistd::gethostname() else {
        return "localhost".into();
    };
    let name = name.to_string_lossy();
    name.split('.').next().unwrap_or("localhost").to_string()
}

/// This machine's id (`/etc/machine-id`, or D-Bus's copy where systemd is
/// absent); None when neither can be read.
pub fn machine_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| {
        read_id(&[
            Path::new("/etc/machine-id"),
            Path::new("/var/lib/dbus/machine-id"),
        ])
    })
    .as_deref()
}

/// The id the kernel draws afresh at every boot; None when it cannot be read.
pub fn boot_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| read_id(&[Path::new("/proc/sys/kernel/random/boot_id")]))
        .as_deref()
}

/// The first of `paths` that holds an id, trimmed. An empty file or systemd's
/// `uninitialized` (a first boot not yet committed) is no id: it would be
/// shared with every other machine in the same state.
fn read_id(paths: &[&Path]) -> Option<String> {
    paths.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        let id = text.trim();
        (!id.is_empty() && id != "uninitialized").then(|| id.to_string())
    })
}

/// The name of the effective user, as the audit trail names a person at the
/// command line (`cli:USER@HOST`); `$USER`, then the uid, when the user
/// database does not know it (a container's arbitrary uid).
pub fn user_name() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| uid.to_string()),
    }
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_name_is_short() {
        assert!(!short_host_name().contains('.'));
    }

    #[test]
    fn an_id_is_the_first_readable_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let empty = dir.path().join("empty");
        let uninitialized = dir.path().join("uninitialized");
        let good = dir.path().join("good");
        std::fs::write(&empty, "\n").unwrap();
        std::fs::write(&uninitialized, "uninitialized\n").unwrap();
        std::fs::write(&good, "3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(
            read_id(&[&missing, &empty, &uninitialized, &good]).as_deref(),
            Some("3d1219c7c4c5404aaa1f6d2a48adfda4")
        );
        assert_eq!(read_id(&[&missing, &empty]), None);
    }

    #[test]
    fn the_machine_and_boot_ids_are_read_once_and_trimmed() {
        // Containers may lack /etc/machine-id; the boot id is the kernel's.
        if let Some(id) = machine_id() {
            assert_eq!(id, id.trim());
            assert!(!id.is_empty());
        }
        let boot = boot_id().expect("/proc/sys/kernel/random/boot_id");
        assert_eq!(boot.len(), 36, "{boot:?}");
        assert!(std::ptr::eq(boot, boot_id().unwrap()));
    }
}
