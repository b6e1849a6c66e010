//! Host identity: the short host name that runs and mails are labelled with,
//! and whether we run as root.
//!
//! Both come from `nix`'s safe wrappers, so the raw libc calls behind them
//! are that maintained crate's to get right, not ours.

/// The short host name: up to the first dot, `localhost` when the system
/// will not say.  The runner records it with each run (to find its own
/// process groups after a crash) and mail uses it in its greeting and sender.
pub fn short_host_name() -> String {
    let Ok(name) = nix::unistd::gethostname() else {
        return "localhost".into();
    };
    let name = name.to_string_lossy();
    name.split('.').next().unwrap_or("localhost").to_string()
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
}
