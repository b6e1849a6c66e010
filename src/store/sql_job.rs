//! An SQL job's statements (§12, §18): the user's SQL, run as given — that
//! is the feature — in one of two ways.
//!
//! - **One transaction** (the default): nothing of a failed run is
//!   committed. The configuration refuses transaction-control statements in
//!   such a job's text (`crate::sql_text`), so the text cannot end the
//!   transaction early. `set_config(…, true)` is `SET LOCAL` with a
//!   parameter: it ends with the transaction, committed or not.
//! - **`sql_autocommit`**: each statement is sent on its own, outside a
//!   transaction block, so that a procedure may COMMIT in steps (a statement
//!   in a multi-statement query string would run in an implicit block, where
//!   `CALL` of a procedure that commits fails). Its settings are the
//!   session's; the runner's `DISCARD ALL` after the run resets them.
//!
//! `statement_timeout` is set to the job's timeout either way, but it is not
//! what enforces the timeout: the job may `SET statement_timeout = 0`. The
//! runner cancels the statement itself (see `runner::worker`), and says so
//! through `expired`, which is read before each statement and before the
//! commit: a run past its timeout starts no statement and commits nothing.

use std::sync::atomic::{AtomicBool, Ordering};

/// How to run one SQL job's text.
pub struct SqlRun<'a> {
    pub sql: &'a str,
    /// `statement_timeout`, when given (a one-off `manage NAME` has none, §10).
    pub timeout_secs: Option<u32>,
    /// Names the session from the run's first statement on.
    pub application_name: Option<&'a str>,
    /// Each statement on its own, outside a transaction block.
    pub autocommit: bool,
    /// Set by the runner once the job's timeout has expired.
    pub expired: &'a AtomicBool,
}

/// What a run past its timeout ends with, when no statement was cancelled
/// (the timeout came between two statements, or just before the commit).
#[derive(Debug, thiserror::Error)]
#[error("the job's timeout expired")]
pub struct Expired;

/// Why a run ended without success.
#[derive(Debug, thiserror::Error)]
pub enum SqlFailure {
    #[error(transparent)]
    Db(#[from] postgres::Error),
    #[error(transparent)]
    Expired(#[from] Expired),
}

/// Run `sql` in one transaction, with no timeout: `manage NAME` by hand.
pub fn run_sql_job(
    client: &mut postgres::Client,
    sql: &str,
    autocommit: bool,
) -> Result<(), SqlFailure> {
    let expired = AtomicBool::new(false);
    run_sql(
        client,
        &SqlRun {
            sql,
            timeout_secs: None,
            application_name: None,
            autocommit,
            expired: &expired,
        },
    )
}

/// Run one SQL job as `run` says: committed when every statement succeeds,
/// rolled back on the first error (the transaction is dropped unfinished).
pub fn run_sql(client: &mut postgres::Client, run: &SqlRun) -> Result<(), SqlFailure> {
    let check_expired = || -> Result<(), SqlFailure> {
        if run.expired.load(Ordering::SeqCst) {
            Err(Expired.into())
        } else {
            Ok(())
        }
    };
    // A runner that dies mid-statement must not leave its transaction
    // running until the statement ends: from PostgreSQL 14 the server
    // checks the client is still there every second and rolls back when it
    // is gone. (The version filter keeps set_config from being called on
    // older servers, which do not know the setting.) One statement sets
    // everything: each is a round trip.
    let timeout_ms = run
        .timeout_secs
        .map(|secs| (u64::from(secs.max(1)) * 1000).to_string());
    let local = !run.autocommit;
    let settings = "SELECT set_config('client_connection_check_interval', '1000', $3) \
                    FROM (SELECT 1) one WHERE current_setting('server_version_num')::int >= 140000 \
         UNION ALL SELECT set_config('statement_timeout', $1, $3) WHERE $1 IS NOT NULL \
         UNION ALL SELECT set_config('application_name', $2, false) WHERE $2 IS NOT NULL";
    let params = typed![&timeout_ms, &run.application_name, &local];
    if run.autocommit {
        client.execute_typed(settings, params)?;
        for statement in crate::sql_text::statements(run.sql) {
            check_expired()?;
            client.batch_execute(statement.text)?;
        }
        return Ok(());
    }
    let mut tx = client.transaction()?;
    tx.execute_typed(settings, params)?;
    tx.batch_execute(run.sql)?;
    // Past its timeout, a run commits nothing, even if its statement ended
    // just before the cancel could reach it.
    check_expired()?;
    tx.commit()?;
    Ok(())
}

/// This connection's backend process id.
pub fn backend_pid(client: &mut postgres::Client) -> Result<i32, postgres::Error> {
    client
        .query_typed_one("SELECT pg_backend_pid()", &[])?
        .try_get(0)
}

/// Close another session from the server's side (an SQL job whose
/// statement outlived its cancel, §18).
pub fn terminate_backend(client: &mut postgres::Client, pid: i32) -> Result<(), postgres::Error> {
    client.execute_typed("SELECT pg_terminate_backend($1)", typed![&pid])?;
    Ok(())
}
