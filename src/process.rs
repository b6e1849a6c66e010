//! Processes and signals: the one place `manage` uses `unsafe`.

/// Let a closed stdout end the process quietly, as it does for every Unix
/// tool (`manage jobs list | head`). Rust ignores SIGPIPE by default, which
/// turns the closed pipe into an error on every later print.
pub fn restore_default_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL has no preconditions; it
    // runs at start-up before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
