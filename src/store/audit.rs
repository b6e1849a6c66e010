//! `manage.audit`: the audit trail (§16). Rows are written by the operations
//! (`crate::ops`) and by the sync, inside the transaction of the change they
//! record; read newest first by `jobs audit` and the web page; purged by age
//! with the history.

use chrono::{DateTime, Utc};
use postgres::GenericClient;

/// Rows per page of `jobs audit` and of the web page's `/audit`, as `jobs history`.
pub const AUDIT_PAGE: u32 = 50;

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `cli:USER@HOST`, `web:ADDR` or `runner:HOST`.
    pub actor: String,
    /// `configure`, `hold`, `release`, `run-now`, `reset-failure` or `sync`.
    pub action: String,
    /// The job the change was made to; none for hold and release.
    pub job: Option<String>,
    /// What changed: `key: old → new` pairs, or the sync line.
    pub details: String,
}

impl AuditRow {
    fn from_row(row: &postgres::Row) -> Result<Self, postgres::Error> {
        Ok(AuditRow {
            id: row.try_get("id")?,
            at: row.try_get("at")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            job: row.try_get("job")?,
            details: row.try_get("details")?,
        })
    }
}

/// Record one change (in the caller's transaction, where the change is one).
pub fn record_audit(
    client: &mut impl GenericClient,
    actor: &str,
    action: &str,
    job: Option<&str>,
    details: &str,
) -> Result<(), postgres::Error> {
    client.execute_typed(
        "INSERT INTO manage.audit (actor, action, job, details) VALUES ($1, $2, $3, $4)",
        typed![&actor, &action, &job, &details],
    )?;
    Ok(())
}

/// One page of the audit trail, newest first; only one job's rows with `job`.
pub fn audit_page(
    client: &mut impl GenericClient,
    job: Option<&str>,
    page: u32,
    per_page: u32,
) -> Result<Vec<AuditRow>, postgres::Error> {
    let offset = i64::from(page.saturating_sub(1)) * i64::from(per_page);
    let limit = i64::from(per_page);
    let rows = client.query_typed(
        "SELECT id, at, actor, action, job, details FROM manage.audit \
         WHERE ($1::text IS NULL OR job = $1) ORDER BY id DESC LIMIT $2 OFFSET $3",
        typed![&job, &limit, &offset],
    )?;
    rows.iter().map(AuditRow::from_row).collect()
}

/// Whether any audit row is older than `days` days.
pub fn audit_older_than_exists(client: &mut impl GenericClient, days: u32) -> anyhow::Result<bool> {
    let days = i32::try_from(days)?;
    Ok(client
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM manage.audit \
             WHERE at < now() - make_interval(days => $1)) AS found",
            typed![&days],
        )?
        .try_get("found")?)
}

/// Delete at most `batch` audit rows older than `days` days; how many went.
pub fn purge_audit_batch(
    client: &mut impl GenericClient,
    days: u32,
    batch: i64,
) -> anyhow::Result<u64> {
    let days = i32::try_from(days)?;
    Ok(client.execute_typed(
        "DELETE FROM manage.audit WHERE id IN (\
             SELECT id FROM manage.audit \
             WHERE at < clock_timestamp() - make_interval(days => $1) \
             ORDER BY at LIMIT $2)",
        typed![&days, &batch],
    )?)
}
