//! The errors that decide `manage`'s exit code.
//!
//! Everything else travels as `anyhow::Error` and exits 1; these two are the
//! exceptions callers (and `main`) must be able to recognise.

use std::fmt;

/// Bad usage or bad input: printed as one `error:` line, exit code 2, and the
/// database is left untouched (callers raise it before they write anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

impl BadInput {
    pub fn new(message: impl Into<String>) -> Self {
        BadInput(message.into())
    }
}

/// Leave with this exit code; whatever needed saying has been said already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Shorthand for returning a [`BadInput`] from a function that returns `anyhow::Result`.
pub fn bad_input<T>(message: impl Into<String>) -> anyhow::Result<T> {
    Err(BadInput::new(message).into())
}

/// The exit code for an error that reached `main`.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(exit) = error.downcast_ref::<Exit>() {
        exit.0
    } else if error.downcast_ref::<BadInput>().is_some()
        || error.downcast_ref::<crate::config::ConfigError>().is_some()
    {
        2
    } else {
        1
    }
}

/// The one line `main` prints for an error. A database that has not been
/// migrated gets a hint instead of PostgreSQL's bare "relation does not exist".
pub fn describe(error: &anyhow::Error) -> String {
    for cause in error.chain() {
        let Some(db) = cause
            .downcast_ref::<postgres::Error>()
            .and_then(postgres::Error::as_db_error)
        else {
            continue;
        };
        let missing = [
            postgres::error::SqlState::UNDEFINED_TABLE,
            postgres::error::SqlState::INVALID_SCHEMA_NAME,
            postgres::error::SqlState::UNDEFINED_FUNCTION,
            postgres::error::SqlState::UNDEFINED_COLUMN,
        ];
        if missing.contains(db.code()) && db.message().contains("manage.") {
            return format!(
                "the database is not migrated ({}): run `manage migrate` first",
                db.message()
            );
        }
    }
    format!("{error:#}")
}
