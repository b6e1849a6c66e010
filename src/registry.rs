//! The job registry: the one list of every job `manage` knows — the built-in
//! jobs of `commands/` plus the jobs declared in the configuration file — and
//! `sync`, which writes that list into the database. What a job *is* lives in
//! `crate::job`.

use std::collections::BTreeMap;

use crate::config::Config;
use crate::job::definition::{Builtin, JobDef};
use crate::job::Job;
use crate::ops::Actor;
use crate::schedule;
use crate::store;

/// Every job: built-in first, then declared, each sorted by name.
pub struct Registry {
    jobs: BTreeMap<String, JobDef>,
}

impl Registry {
    /// The shipped jobs and those `config` declares.
    pub fn new(config: Option<&Config>) -> Self {
        Registry::of(crate::commands::builtins(), config)
    }

    /// These jobs written in Rust (a `Suite`'s) and those `config` declares.
    pub fn of(builtins: &[&'static Builtin], config: Option<&Config>) -> Self {
        let mut jobs = BTreeMap::new();
        for builtin in builtins {
            jobs.insert(builtin.name.to_string(), JobDef::from_builtin(builtin));
        }
        if let Some(config) = config {
            for job in config.jobs.values() {
                jobs.insert(job.name.clone(), JobDef::from_declared(job));
            }
        }
        Registry { jobs }
    }

    /// Add jobs written in Rust beyond the shipped ones: for programs that
    /// link this library (the benchmark registers synthetic jobs this way).
    pub fn with_builtins(mut self, extra: impl IntoIterator<Item = &'static Builtin>) -> Self {
        for builtin in extra {
            self.jobs
                .insert(builtin.name.to_string(), JobDef::from_builtin(builtin));
        }
        self
    }

    /// The shipped built-in jobs as `Config::load` must know them: each
    /// name with the jobs it triggers.
    pub fn builtin_jobs() -> Vec<(&'static str, &'static [&'static str])> {
        Registry::jobs_of(crate::commands::builtins())
    }

    /// Jobs written in Rust as `Config::load` must know them: each name
    /// with every job it may schedule (trigger_next, on_success and
    /// on_failure, §21), for the cycle check.
    pub fn jobs_of(builtins: &[&'static Builtin]) -> Vec<(&'static str, &'static [&'static str])> {
        builtins
            .iter()
            .map(|b| {
                if b.on_success.is_empty() && b.on_failure.is_empty() {
                    return (b.name, b.trigger_next);
                }
                // Built-in jobs are made once per process (and their data is
                // already 'static), so joining the lists leaks a few names once.
                let all: Vec<&'static str> = [b.trigger_next, b.on_success, b.on_failure].concat();
                (b.name, &*Box::leak(all.into_boxed_slice()))
            })
            .collect()
    }

    /// The job that delivers the mail queue, triggered whenever a mail is queued.
    pub fn mailer(&self) -> Option<&JobDef> {
        self.jobs.values().find(|job| job.delivers_mail)
    }

    pub fn get(&self, name: &str) -> Option<&JobDef> {
        self.jobs.get(name)
    }

    pub fn jobs(&self) -> impl Iterator<Item = &JobDef> {
        self.jobs.values()
    }
}

/// Write the registry into the database (inside the caller's transaction):
/// create new jobs, update changed ones (operator configuration and history
/// kept), mark vanished ones removed, revive returning ones. Returns the lines
/// to print, one per change, in name order; unchanged jobs print nothing.
/// Each line is also an audit row (§16) in `actor`'s name.
pub fn sync(
    tx: &mut postgres::Transaction,
    registry: &Registry,
    tz: chrono_tz::Tz,
    actor: &Actor,
) -> anyhow::Result<Vec<String>> {
    let existing: BTreeMap<String, Job> = store::all_jobs(tx)?
        .into_iter()
        .map(|row| (row.name.clone(), row))
        .collect();
    let mut changes: Vec<(String, String)> = Vec::new();
    for def in registry.jobs() {
        let stored = existing.get(&def.name);
        let verb = match stored {
            None => "Created",
            Some(row) if row.removed => "Revived",
            Some(row) if def.differs_from(row) => "Updated",
            Some(_) => continue,
        };
        store::write_definition(tx, def)?;
        if let Some(row) = stored {
            // An override that now equals the built-in schedule is no override.
            let kept = schedule::normalize_override(def.schedule.as_ref(), row.override_schedule());
            if kept.is_none() && row.override_schedule().is_some() {
                store::set_override(tx, &def.name, None)?;
            }
        }
        // A declared zone moves the slots as much as a new schedule does.
        let schedule_changed = stored.is_none_or(|row| {
            row.removed
                || row.builtin_schedule() != def.schedule
                || row.builtin_timezone != def.timezone
        });
        if schedule_changed {
            store::reschedule(tx, &def.name, tz)?;
        }
        changes.push((
            def.name.clone(),
            format!("{verb} scheduled job {}", def.name),
        ));
    }
    for row in existing.values() {
        if !row.removed && registry.get(&row.name).is_none() {
            store::mark_removed(tx, &row.name)?;
            changes.push((
                row.name.clone(),
                format!("Removed scheduled job {}", row.name),
            ));
        }
    }
    changes.sort();
    for (name, line) in &changes {
        store::record_audit(tx, actor.as_str(), "sync", Some(name), line)?;
    }
    Ok(changes.into_iter().map(|(_, line)| line).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::job::definition::BuiltinSchedule;

    #[test]
    fn every_builtin_schedule_parses_and_names_are_valid() {
        for builtin in crate::commands::builtins() {
            crate::config::check_job_name(builtin.name).unwrap();
            match builtin.schedule {
                BuiltinSchedule::Manual => assert!(builtin.schedule().is_none()),
                BuiltinSchedule::Times(times) => {
                    for t in times {
                        schedule::parse_time_of_day(t).unwrap();
                    }
                }
                BuiltinSchedule::Interval(i) => {
                    schedule::parse_duration(i).unwrap();
                }
                BuiltinSchedule::Cron(expr) => {
                    schedule::parse_cron(expr).unwrap();
                }
            }
        }
    }
}
