//! `manage jobs audit`: the audit trail (§16), newest first — who changed
//! what, from the command line, the web page or a sync.

use chrono_tz::Tz;
use serde_json::{json, Value};

use crate::cli::common::{connect, no_such_job};
use crate::cli::render::{self, print_json};
use crate::cli::Context;
use crate::store::{self, AuditRow};

/// The audit object of `jobs audit --json`.
pub fn audit_json(row: &AuditRow, tz: Tz) -> Value {
    json!({
        "at": render::json_time(row.at, tz),
        "actor": row.actor,
        "action": row.action,
        "job": row.job,
        "details": row.details,
    })
}

pub fn audit(ctx: &Context, name: Option<&str>, page: u32, json: bool) -> anyhow::Result<()> {
    let tz = ctx.config.timezone;
    let mut client = connect(ctx)?;
    if let Some(name) = name {
        // As `jobs history NAME`: a removed job's rows can still be read.
        if !store::job_exists(&mut client, name)? {
            return no_such_job(name);
        }
    }
    let rows = store::audit_page(&mut client, name, page, store::AUDIT_PAGE)?;
    if json {
        return print_json(&Value::from(
            rows.iter().map(|r| audit_json(r, tz)).collect::<Vec<_>>(),
        ));
    }
    if rows.is_empty() {
        println!("(no changes)");
        return Ok(());
    }
    let mut table = render::table(&["Time", "Actor", "Action", "Job", "Details"]);
    for row in &rows {
        table.add_row(vec![
            render::human_time(row.at, tz),
            row.actor.clone(),
            row.action.clone(),
            row.job.clone().unwrap_or_else(|| "-".into()),
            render::escape_controls(&row.details).into_owned(),
        ]);
    }
    render::print_table(&table);
    Ok(())
}
