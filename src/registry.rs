//! The job registry: what a job is, and the one list of every job `manage` knows —
//! the built-in jobs of `commands/` plus the jobs declared in the configuration
//! file. `sync` (in `store`) writes this list into the database.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use crate::config::{Config, DeclaredJob};
use crate::schedule::{self, Schedule};

/// What a job function gets: the database, the configuration and where to
/// write its output. Internal jobs never write to the process's stdout.
pub struct JobContext<'a> {
    pub client: &'a mut postgres::Client,
    pub config: &'a Config,
    pub out: &'a mut dyn Write,
}

/// The schedule a built-in job is written with.
#[derive(Debug, Clone, Copy)]
pub enum BuiltinSchedule {
    Manual,
    Times(&'static [&'static str]),
    Interval(&'static str),
}

/// A job written in Rust, one file under `commands/`.
pub struct Builtin {
    pub name: &'static str,
    pub app: &'static str,
    pub description: &'static str,
    pub schedule: BuiltinSchedule,
    /// Run in the runner's own process (true) or as `manage NAME` (false).
    pub internal: bool,
    pub timeout_secs: u32,
    pub trigger_next: &'static [&'static str],
    pub default_notify_on_success: bool,
    /// The job's own command-line arguments (`manage NAME --help` shows them).
    pub args: fn(clap::Command) -> clap::Command,
    /// The cheap first phase: `Ok(false)` means there is nothing to do.
    pub should_run: Option<fn(&mut JobContext) -> anyhow::Result<bool>>,
    /// The job itself. The runner passes the matches of no arguments.
    pub run: fn(&mut JobContext, &clap::ArgMatches) -> anyhow::Result<()>,
}

impl Builtin {
    /// The job's arguments as the runner gives them: none, so every default.
    pub fn default_matches(&self) -> anyhow::Result<clap::ArgMatches> {
        Ok((self.args)(clap::Command::new(self.name)).try_get_matches_from([self.name])?)
    }

    /// The parsed built-in schedule. The strings are ours, so a bad one is a bug
    /// caught by the registry's tests, not a user error.
    pub fn schedule(&self) -> Option<Schedule> {
        match self.schedule {
            BuiltinSchedule::Manual => None,
            BuiltinSchedule::Times(times) => {
                let parsed: Vec<_> = times
                    .iter()
                    .filter_map(|t| schedule::parse_time_of_day(t).ok())
                    .collect();
                Some(Schedule::Times(schedule::normalize_times(parsed)))
            }
            BuiltinSchedule::Interval(i) => {
                schedule::parse_duration(i).ok().map(Schedule::Interval)
            }
        }
    }
}

/// How a job is run.
#[derive(Clone)]
pub enum JobKind {
    Builtin(&'static Builtin),
    Declared(Box<DeclaredJob>),
}

/// One job as the registry defines it.
#[derive(Clone)]
pub struct JobDef {
    pub name: String,
    pub app: String,
    pub description: String,
    pub schedule: Option<Schedule>,
    pub internal: bool,
    pub timeout_secs: u32,
    pub trigger_next: Vec<String>,
    pub default_notify_on_success: bool,
    pub kind: JobKind,
}

/// The part of a definition that has no column of its own; stored as JSON so
/// that sync can tell when it changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub struct Definition {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub should_run: Option<String>,
    #[serde(default)]
    pub trigger_next: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub working_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub env: BTreeMap<String, String>,
}

impl JobDef {
    fn from_builtin(builtin: &'static Builtin) -> Self {
        JobDef {
            name: builtin.name.to_string(),
            app: builtin.app.to_string(),
            description: builtin.description.to_string(),
            schedule: builtin.schedule(),
            internal: builtin.internal,
            timeout_secs: builtin.timeout_secs,
            trigger_next: builtin.trigger_next.iter().map(|s| s.to_string()).collect(),
            default_notify_on_success: builtin.default_notify_on_success,
            kind: JobKind::Builtin(builtin),
        }
    }

    fn from_declared(job: &DeclaredJob) -> Self {
        JobDef {
            name: job.name.clone(),
            app: job.app.clone(),
            description: job.description.clone(),
            schedule: job.schedule.clone(),
            internal: false,
            timeout_secs: job.timeout_secs,
            trigger_next: job.trigger_next.clone(),
            default_notify_on_success: job.notify_on_success,
            kind: JobKind::Declared(Box::new(job.clone())),
        }
    }

    pub fn definition(&self) -> Definition {
        match &self.kind {
            JobKind::Builtin(_) => Definition {
                trigger_next: self.trigger_next.clone(),
                ..Definition::default()
            },
            JobKind::Declared(job) => Definition {
                command: Some(job.command.clone()),
                should_run: job.should_run.clone(),
                trigger_next: job.trigger_next.clone(),
                working_dir: Some(job.working_dir.clone()),
                env: job.env.clone(),
            },
        }
    }
}

/// Every job: built-in first, then declared, each sorted by name.
pub struct Registry {
    jobs: BTreeMap<String, JobDef>,
}

impl Registry {
    pub fn new(config: Option<&Config>) -> Self {
        let mut jobs = BTreeMap::new();
        for builtin in crate::commands::BUILTINS {
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

    pub fn builtin_names() -> Vec<&'static str> {
        crate::commands::BUILTINS.iter().map(|b| b.name).collect()
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
pub fn sync(
    tx: &mut postgres::Transaction,
    registry: &Registry,
    tz: chrono_tz::Tz,
) -> anyhow::Result<Vec<String>> {
    use crate::store;

    let existing: BTreeMap<String, store::JobRow> = store::all_jobs(tx)?
        .into_iter()
        .map(|row| (row.name.clone(), row))
        .collect();
    let mut changes: Vec<(String, String)> = Vec::new();
    for def in registry.jobs() {
        let (builtin_times, builtin_interval_seconds) =
            store::schedule_columns(def.schedule.as_ref());
        let defined = store::DefinedJob {
            name: &def.name,
            app: &def.app,
            description: &def.description,
            internal: def.internal,
            timeout_seconds: i32::try_from(def.timeout_secs)?,
            builtin_times,
            builtin_interval_seconds,
            definition: serde_json::to_value(def.definition())?,
        };
        let line = match existing.get(&def.name) {
            None => {
                store::insert_job(tx, &defined, def.default_notify_on_success)?;
                Some("Created")
            }
            Some(row) if row.removed => {
                store::update_definition(tx, &defined, false)?;
                Some("Revived")
            }
            Some(row) => {
                let changed = row.app != defined.app
                    || row.description != defined.description
                    || row.internal != defined.internal
                    || row.timeout_seconds != defined.timeout_seconds
                    || row.builtin_schedule() != def.schedule
                    || row.definition != defined.definition;
                if changed {
                    store::update_definition(tx, &defined, false)?;
                    Some("Updated")
                } else {
                    None
                }
            }
        };
        if let Some(verb) = line {
            // An override that now equals the built-in schedule is no override.
            if let Some(row) = existing.get(&def.name) {
                let kept =
                    schedule::normalize_override(def.schedule.as_ref(), row.override_schedule());
                if kept.is_none() && row.override_schedule().is_some() {
                    store::set_override(tx, &def.name, None)?;
                }
            }
            let schedule_changed = existing
                .get(&def.name)
                .is_none_or(|row| row.removed || row.builtin_schedule() != def.schedule);
            if schedule_changed {
                store::reschedule(tx, &def.name, tz)?;
            }
            changes.push((
                def.name.clone(),
                format!("{verb} scheduled job {}", def.name),
            ));
        }
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
    Ok(changes.into_iter().map(|(_, line)| line).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_schedule_parses_and_names_are_valid() {
        for builtin in crate::commands::BUILTINS {
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
            }
        }
    }
}
