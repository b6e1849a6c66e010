//! The migration runner: the plain `.sql` files of `migrations/`, embedded at
//! build time, applied in order in one transaction under an advisory lock.
//!
//! Sixty lines rather than a crate: the lock is the point. Several runners may
//! start at once against one database; the transaction-level advisory lock
//! makes the second wait and then find nothing to do, and the caller syncs the
//! registry inside the same transaction, under the same lock.

use postgres::Transaction;

use crate::store::MIGRATION_LOCK;

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Apply every pending migration; returns the names applied. The caller owns
/// the transaction (and commits it after syncing).
pub fn apply(tx: &mut Transaction) -> anyhow::Result<Vec<&'static str>> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    // Quiet "already exists" notices: they are expected on every run but the first.
    tx.batch_execute(
        "SET LOCAL client_min_messages = warning;
         CREATE SCHEMA IF NOT EXISTS manage;
         CREATE TABLE IF NOT EXISTS manage.schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM manage.schema_migrations", &[])?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut names = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        tx.batch_execute(sql).map_err(|e| {
            anyhow::anyhow!("migration {name} failed: {}", crate::db::describe_error(&e))
        })?;
        tx.execute(
            "INSERT INTO manage.schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )?;
        names.push(*name);
    }
    Ok(names)
}

/// The migrations not yet applied to this database (for `manage check`).
pub fn pending(client: &mut postgres::Client) -> anyhow::Result<Vec<&'static str>> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('manage.schema_migrations') IS NOT NULL",
            &[],
        )?
        .try_get(0)?;
    let applied: Vec<i32> = if exists {
        client
            .query("SELECT version FROM manage.schema_migrations", &[])?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    Ok(MIGRATIONS
        .iter()
        .filter(|(v, _, _)| !applied.contains(v))
        .map(|(_, name, _)| *name)
        .collect())
}
