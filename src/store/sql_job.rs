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
    run_sql_job_as(client, sql, timeout_secs, None)
}

/// `run_sql_job` on a connection kept between runs: `application_name`,
/// when given, names the session from the run's first statement on (and a
/// `DISCARD ALL` after the run puts the connection's own back).
pub fn run_sql_job_as(
    client: &mut postgres::Client,
    sql: &str,
    timeout_secs: Option<u32>,
    application_name: Option<&str>,
) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    // A runner that dies mid-statement must not leave its transaction
    // running until the statement ends: from PostgreSQL 14 the server
    // checks the client is still there every second and rolls back when it
    // is gone. (The version filter keeps set_config from being called on
    // older servers, which do not know the setting.) One statement sets
    // everything: each is a round trip.
    let timeout_ms = timeout_secs.map(|secs| (u64::from(secs.max(1)) * 1000).to_string());
    tx.execute_typed(
        "SELECT set_config('client_connection_check_interval', '1000', true) \
                    FROM (SELECT 1) one WHERE current_setting('server_version_num')::int >= 140000 \
         UNION ALL SELECT set_config('statement_timeout', $1, true) WHERE $1 IS NOT NULL \
         UNION ALL SELECT set_config('application_name', $2, false) WHERE $2 IS NOT NULL",
        typed![&timeout_ms, &application_name],
    )?;
    tx.batch_execute(sql)?;
    tx.commit()
}
