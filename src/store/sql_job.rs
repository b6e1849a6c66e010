//! An SQL job's transaction (§12): the user's SQL, run as given — that is
//! the feature — inside one transaction whose `statement_timeout` is the
//! job's timeout. `set_config(…, true)` is `SET LOCAL` with a parameter: it
//! ends with the transaction, committed or not, so the connection comes out
//! as it went in.

/// Run `sql` in one transaction, with `statement_timeout` = `timeout_secs`
/// when given (a one-off `manage NAME` has no timeout, §10): committed when
/// every statement succeeds, rolled back on the first error (the
/// transaction is dropped unfinished).
pub fn run_sql_job(
    client: &mut postgres::Client,
    sql: &str,
    timeout_secs: Option<u32>,
) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    if let Some(secs) = timeout_secs {
        let timeout_ms = (u64::from(secs.max(1)) * 1000).to_string();
        tx.execute_typed(
            "SELECT set_config('statement_timeout', $1, true)",
            typed![&timeout_ms],
        )?;
    }
    tx.batch_execute(sql)?;
    tx.commit()
}
