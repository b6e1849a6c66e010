//! The shape of `manage.toml`: a struct per table, read by serde. Every key
//! is optional, an unknown one is refused, and each value is read by its
//! function in [`keys`], so what a key accepts is written once. A field's
//! place in its struct is its place in the "expected one of" list of an
//! unknown key. What depends on more than one key (command or sql, one
//! schedule, the jobs trigger_next names) is `Config::load`'s, after this.

use std::net::SocketAddr;

use chrono::NaiveTime;
use chrono_tz::Tz;
use serde::Deserialize;
use serde_path_to_error::Segment;

use super::keys::{self, Env, JobName, Table};
use super::{join_key, ConfigError, NUL_PROBLEM};
use crate::schedule::Cron;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawFile {
    #[serde(deserialize_with = "keys::text")]
    pub database_url: Option<String>,
    /// Read only when `MANAGE_TIMEZONE` does not override it (with
    /// [`keys::zone_of`]): a file's zone that is never used was never refused.
    pub timezone: Option<toml::Value>,
    #[serde(deserialize_with = "keys::retention_days")]
    pub history_retention_days: Option<u32>,
    #[serde(deserialize_with = "keys::output_bytes")]
    pub max_output_bytes: Option<u32>,
    #[serde(deserialize_with = "keys::table")]
    pub runner: Option<RawRunner>,
    #[serde(deserialize_with = "keys::table")]
    pub notifications: Option<RawNotifications>,
    #[serde(deserialize_with = "keys::table")]
    pub web: Option<RawWeb>,
    #[serde(deserialize_with = "keys::table")]
    pub jobs: Option<std::collections::BTreeMap<JobName, Table<RawJob>>>,
}

/// `[runner]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRunner {
    #[serde(deserialize_with = "keys::max_parallel")]
    pub max_parallel: Option<u32>,
    #[serde(deserialize_with = "keys::duration")]
    pub shutdown_grace: Option<u32>,
    #[serde(deserialize_with = "keys::duration")]
    pub heartbeat: Option<u32>,
    #[serde(deserialize_with = "keys::duration")]
    pub cut_off: Option<u32>,
    #[serde(deserialize_with = "keys::duration")]
    pub dead_after: Option<u32>,
    #[serde(deserialize_with = "keys::duration")]
    pub idle_close: Option<u32>,
    #[serde(deserialize_with = "keys::text")]
    pub database_url: Option<String>,
    #[serde(deserialize_with = "keys::tags")]
    pub tags: Option<Vec<String>>,
}

/// `[notifications]`; the addresses and URL are checked with their
/// environment overrides, by `mail::check_settings`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNotifications {
    #[serde(deserialize_with = "keys::text")]
    pub email: Option<String>,
    #[serde(deserialize_with = "keys::text")]
    pub sender: Option<String>,
    #[serde(deserialize_with = "keys::text")]
    pub smtp_url: Option<String>,
    #[serde(deserialize_with = "keys::text")]
    pub smtp_ca_file: Option<String>,
    #[serde(deserialize_with = "keys::text")]
    pub sendmail: Option<String>,
    #[serde(deserialize_with = "keys::table")]
    pub webhooks: Option<std::collections::BTreeMap<String, Table<RawWebhook>>>,
}

/// `[notifications.webhooks.NAME]` (§20).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWebhook {
    #[serde(deserialize_with = "keys::text")]
    pub url: Option<String>,
    #[serde(deserialize_with = "keys::text")]
    pub secret: Option<String>,
    #[serde(deserialize_with = "keys::text")]
    pub format: Option<String>,
}

/// `[web]` (§16).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWeb {
    #[serde(deserialize_with = "keys::listen")]
    pub listen: Option<SocketAddr>,
    #[serde(deserialize_with = "keys::text")]
    pub token: Option<String>,
    #[serde(deserialize_with = "keys::header_name")]
    pub trusted_proxy_header: Option<String>,
    #[serde(deserialize_with = "keys::cidrs")]
    pub trusted_proxies: Option<Vec<super::Cidr>>,
}

/// `[jobs.NAME]`: what the job does (command or sql, and how), then the
/// keys of [`super::JobSettings`], which a job written in Rust has too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawJob {
    #[serde(deserialize_with = "keys::text")]
    pub command: Option<String>,
    #[serde(deserialize_with = "keys::text")]
    pub sql: Option<String>,
    #[serde(deserialize_with = "keys::flag")]
    pub sql_autocommit: Option<bool>,
    #[serde(deserialize_with = "keys::retries")]
    pub retries: Option<u32>,
    #[serde(deserialize_with = "keys::duration")]
    pub retry_delay: Option<u32>,
    #[serde(deserialize_with = "keys::alert_after")]
    pub alert_after: Option<u32>,
    #[serde(deserialize_with = "keys::text")]
    pub description: Option<String>,
    #[serde(deserialize_with = "keys::times")]
    pub times: Option<Vec<NaiveTime>>,
    #[serde(deserialize_with = "keys::duration")]
    pub interval: Option<u32>,
    #[serde(deserialize_with = "keys::cron")]
    pub cron: Option<Cron>,
    #[serde(deserialize_with = "keys::zone")]
    pub timezone: Option<Tz>,
    #[serde(deserialize_with = "keys::duration")]
    pub start_deadline: Option<u32>,
    #[serde(deserialize_with = "keys::duration")]
    pub timeout: Option<u32>,
    #[serde(deserialize_with = "keys::text")]
    pub should_run: Option<String>,
    #[serde(deserialize_with = "keys::strings")]
    pub trigger_next: Option<Vec<String>>,
    #[serde(deserialize_with = "keys::strings")]
    pub on_success: Option<Vec<String>>,
    #[serde(deserialize_with = "keys::strings")]
    pub on_failure: Option<Vec<String>>,
    #[serde(deserialize_with = "keys::overlap")]
    pub overlap: Option<crate::job::Overlap>,
    #[serde(deserialize_with = "keys::tags")]
    pub runs_on: Option<Vec<String>>,
    #[serde(deserialize_with = "keys::duration")]
    pub jitter: Option<u32>,
    #[serde(deserialize_with = "keys::flag")]
    pub notify_on_success: Option<bool>,
    #[serde(deserialize_with = "keys::strings")]
    pub notify: Option<Vec<String>>,
    #[serde(deserialize_with = "keys::duration")]
    pub expect_success_within: Option<u32>,
    #[serde(deserialize_with = "keys::duration")]
    pub warn_after: Option<u32>,
    #[serde(deserialize_with = "keys::app")]
    pub app: Option<String>,
    #[serde(deserialize_with = "keys::text")]
    pub working_dir: Option<String>,
    #[serde(deserialize_with = "keys::table")]
    pub env: Option<Env>,
}

/// A problem with the file: where and what.
#[derive(Debug)]
pub(super) enum FileError {
    /// TOML itself refused it, on this line when known.
    Toml {
        line: Option<usize>,
        message: String,
    },
    /// A key's value was refused; `job` is the `[jobs.NAME]` it is in.
    Key {
        key: String,
        job: Option<String>,
        problem: String,
    },
}

impl FileError {
    /// The one line that names the file, the key and the problem.
    pub fn message(self, label: &str) -> ConfigError {
        match self {
            FileError::Toml {
                line: Some(line),
                message,
            } => ConfigError(format!("{label}: line {line}: invalid TOML: {message}")),
            FileError::Toml {
                line: None,
                message,
            } => ConfigError(format!("{label}: invalid TOML: {message}")),
            FileError::Key { key, problem, .. } => ConfigError::at(label, &key, problem),
        }
    }
}

/// The dotted key, each part quoted as TOML would when it is not bare
/// (`jobs.backup.env."A=B"`) — except a job's name, which is shown as
/// written: a bad one is the problem, and the problem quotes it.
fn key_text(path: &[String]) -> String {
    let mut text = String::new();
    for (depth, part) in path.iter().enumerate() {
        text = if depth == 1 && path[0] == "jobs" {
            format!("{text}.{part}")
        } else {
            join_key(&text, part)
        };
    }
    text
}

/// Read the file's text. TOML's own refusals (syntax, a number out of range)
/// come first and by line, then a NUL byte anywhere, then each key's.
pub(super) fn parse(text: &str) -> Result<RawFile, FileError> {
    let toml_error = |e: toml::de::Error| FileError::Toml {
        line: e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
        message: e.message().trim().replace('\n', " "),
    };
    // As a plain table first, for what TOML refuses, and for one walk that
    // finds a NUL byte in every key and string, present and future.
    let table: toml::Table = text.parse().map_err(toml_error)?;
    if let Some(key) = first_nul(&table, "") {
        return Err(FileError::Key {
            key,
            job: None,
            problem: NUL_PROBLEM.into(),
        });
    }
    let deserializer = toml::Deserializer::parse(text).map_err(toml_error)?;
    serde_path_to_error::deserialize(deserializer)
        .map(|Table(file)| file)
        .map_err(|e| {
            let path: Vec<String> = e
                .path()
                .iter()
                .filter_map(|segment| match segment {
                    Segment::Map { key } => Some(key.clone()),
                    _ => None,
                })
                .collect();
            FileError::Key {
                key: key_text(&path),
                job: match path.as_slice() {
                    [jobs, name, ..] if jobs == "jobs" => Some(name.clone()),
                    _ => None,
                },
                problem: e.inner().message().to_string(),
            }
        })
}

/// The key of the first NUL byte (PostgreSQL's text, a command line and an
/// environment cannot hold one) in a key or a string. An array's items are
/// named by the array's key, as elsewhere.
fn first_nul(table: &toml::Table, prefix: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let full = join_key(prefix, key);
        if key.contains('\0') {
            return Some(full);
        }
        nul_in(value, &full)
    })
}

fn nul_in(value: &toml::Value, key: &str) -> Option<String> {
    match value {
        toml::Value::String(s) if s.contains('\0') => Some(key.to_string()),
        toml::Value::Array(items) => items.iter().find_map(|item| nul_in(item, key)),
        toml::Value::Table(t) => first_nul(t, key),
        _ => None,
    }
}
