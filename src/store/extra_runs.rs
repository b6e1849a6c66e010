//! `manage.extra_runs`: runs requested at an instant (§21: `run-now --at`)
//! or with arguments (`run-now -- ARG…`, which `manage.trigger_job` writes:
//! `jobs::trigger_job`). The claim takes them (`claim.rs`); a trigger keeps
//! each job's next run no later than its earliest one (migration 0019).

use chrono::{DateTime, Utc};
use postgres::GenericClient;

/// Add an extra run of `name` at `at` (with `args`), listed by `jobs show`;
/// false when one is already pending at that instant. Wakes the runners.
pub fn add_extra_run(
    client: &mut impl GenericClient,
    name: &str,
    at: DateTime<Utc>,
    args: &[String],
) -> Result<bool, postgres::Error> {
    let added = client.execute_typed(
        "INSERT INTO manage.extra_runs (job, at, args, listed) \
         SELECT $1, $2, $3, true \
         WHERE NOT EXISTS (SELECT 1 FROM manage.extra_runs WHERE job = $1 AND at = $2 AND listed)",
        typed![&name, &at, &args],
    )? > 0;
    if added {
        touch_next_run(client, name)?;
    }
    Ok(added)
}

/// Remove the listed extra run of `name` at `at`; false when there is none.
/// The job's next run is its schedule's again (`reschedule` by the caller).
pub fn cancel_extra_run(
    client: &mut impl GenericClient,
    name: &str,
    at: DateTime<Utc>,
) -> Result<bool, postgres::Error> {
    Ok(client.execute_typed(
        "DELETE FROM manage.extra_runs WHERE job = $1 AND at = $2 AND listed",
        typed![&name, &at],
    )? > 0)
}

/// Drop every extra run that is due now: they are pending like any due job
/// when a hold ends with `--pending reschedule` (§10).
pub fn drop_due_extra_runs(client: &mut impl GenericClient) -> Result<(), postgres::Error> {
    client.execute_typed(
        "DELETE FROM manage.extra_runs WHERE at <= clock_timestamp()",
        &[],
    )?;
    Ok(())
}

/// Let the trigger bring the job's next run forward to its earliest extra
/// run, and wake the runners.
fn touch_next_run(client: &mut impl GenericClient, name: &str) -> Result<(), postgres::Error> {
    client.execute_typed(
        "UPDATE manage.jobs SET next_run = next_run WHERE name = $1",
        typed![&name],
    )?;
    super::notify_runners(client)
}
