//! `manage`: parse, dispatch, print the error once, exit with its code.

fn main() {
    manage::process::restore_default_sigpipe();
    // A bug must still end as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error: {message}{place} (please report this bug)");
    }));
    let code = match manage::cli::run() {
        Ok(()) => 0,
        Err(error) => {
            let code = manage::error::exit_code(&error);
            if error.downcast_ref::<manage::error::Exit>().is_none() {
                eprintln!("error: {}", manage::error::describe(&error));
            }
            code
        }
    };
    std::process::exit(i32::from(code));
}
