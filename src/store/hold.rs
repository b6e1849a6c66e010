//! `manage.hold`: the one-row switch that holds every job.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use postgres::GenericClient;

use super::{db_now, drop_run_requests, due_jobs, notify_runners, set_next_run};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub held: bool,
    pub since: Option<DateTime<Utc>>,
    /// When the hold ends by itself (`jobs hold --until`); None: until released.
    pub until: Option<DateTime<Utc>>,
}

impl Hold {
    /// The `held`, `held_since` and `held_until` columns of `manage.hold`.
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(Hold {
            held: row.try_get("held")?,
            since: row.try_get("held_since")?,
            until: row.try_get("held_until")?,
        })
    }
}

pub fn hold(client: &mut impl GenericClient) -> Result<Hold, postgres::Error> {
    let row =
        client.query_typed_one("SELECT held, held_since, held_until FROM manage.hold", &[])?;
    Hold::from_row(&row)
}

/// The facts above `jobs list` that one statement gives.
#[derive(Debug, Clone, Copy)]
pub struct Overview {
    /// The database's now.
    pub now: DateTime<Utc>,
    pub hold: Hold,
    /// When the last run finished, over all jobs.
    pub last_run: Option<DateTime<Utc>>,
}

pub fn overview(client: &mut impl GenericClient) -> Result<Overview, postgres::Error> {
    let row = client.query_typed_one(
        "SELECT clock_timestamp() AS now, h.held, h.held_since, h.held_until, \
                (SELECT max(last_run) FROM manage.jobs) AS last_run \
         FROM manage.hold h",
        &[],
    )?;
    Ok(Overview {
        now: row.try_get("now")?,
        hold: Hold::from_row(&row)?,
        last_run: row.try_get("last_run")?,
    })
}

/// Hold every job (in the caller's transaction), until `until` or until
/// released; a hold already in place keeps its start and takes the new end.
/// Returns the hold as it was.
pub fn set_hold(
    client: &mut impl GenericClient,
    until: Option<DateTime<Utc>>,
) -> Result<Hold, postgres::Error> {
    let tx = client;
    let before = Hold::from_row(&tx.query_typed_one(
        "SELECT held, held_since, held_until FROM manage.hold FOR UPDATE",
        &[],
    )?)?;
    tx.execute_typed(
        "UPDATE manage.hold SET held = true, held_since = coalesce(held_since, clock_timestamp()), \
         held_until = $1",
        typed![&until],
    )?;
    notify_runners(tx)?;
    Ok(before)
}

/// Whether a hold with an end has reached it (`jobs hold --until`), with
/// the hold row locked for the caller's release.
pub fn hold_ended_for_update(client: &mut impl GenericClient) -> Result<bool, postgres::Error> {
    client
        .query_typed_one(
            "SELECT held AND held_until <= clock_timestamp() AS ended FROM manage.hold FOR UPDATE",
            &[],
        )?
        .try_get::<_, Option<bool>>("ended")
        .map(|ended| ended.unwrap_or(false))
}

/// End the hold. With `reschedule`, every due job (run-now requests made
/// during the hold included) moves to its next slot as if it had just run.
/// Returns whether jobs were held, and the jobs rescheduled. In the caller's
/// transaction.
pub fn release_hold(
    client: &mut impl GenericClient,
    reschedule: bool,
    tz: Tz,
) -> anyhow::Result<(bool, Vec<String>)> {
    let tx = client;
    let was_held: bool = tx
        .query_typed_one("SELECT held FROM manage.hold FOR UPDATE", &[])?
        .try_get("held")?;
    let mut moved = Vec::new();
    if reschedule {
        let now = db_now(tx)?;
        // Extra runs that came due during the hold are pending too: dropped
        // first, or the next run would come straight back to them.
        super::drop_due_extra_runs(tx)?;
        for row in due_jobs(tx)? {
            // "As if it had just run": the interval counts from now, times
            // take the next slot after now.
            let next = row.next_run_after(now, false, tz);
            set_next_run(tx, &row.name, next)?;
            moved.push(row.name);
        }
        // Run-now requests on jobs still running are pending too: dropped.
        drop_run_requests(tx)?;
    }
    tx.execute_typed(
        "UPDATE manage.hold SET held = false, held_since = NULL, held_until = NULL",
        &[],
    )?;
    notify_runners(tx)?;
    Ok((was_held, moved))
}
