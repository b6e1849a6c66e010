//! The configuration: `manage.toml` plus environment variables, validated into
//! one [`Config`].
//!
//! The file is read as a plain TOML table and walked by hand rather than through
//! serde's derive: every problem must be reported as one line naming the file,
//! the exact key (`jobs.backup.interval`) and what was expected, and serde's
//! errors name neither reliably. Precedence is command-line flag, then
//! environment, then file, then default; the flags are applied by the caller
//! (`--database-url`), the environment here.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;

pub use crate::mail::NotificationConfig;
use crate::schedule::{self, Schedule};
use crate::timings::Timings;

/// Default timeout of a child-process job.
pub const DEFAULT_TIMEOUT_SECS: u32 = 120;
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// The most days of history that can be kept (`history_retention_days`,
/// `purge_job_history --keep-days`): about 2,700 years, well inside
/// PostgreSQL's timestamps, so the cut-off `now() - N days` always exists.
pub const MAX_RETENTION_DAYS: u32 = 1_000_000;
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_MAX_PARALLEL: u32 = 4;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u32 = 30;

/// Why a NUL byte is refused: PostgreSQL's text cannot hold one, nor can a
/// command line or an environment variable, so it can only be a mistake.
const NUL_PROBLEM: &str =
    "contains a NUL byte (\\0), which no job, database or mail setting can hold; remove it";

/// The jobs written in Rust, as the configuration must know them: each name
/// with the jobs it triggers.
pub type BuiltinJobs<'a> = [(&'a str, &'a [&'a str])];

/// A configuration problem: exit code 2. The message already names where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Where the configuration comes from, as the command line and environment say.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--config PATH` (or `MANAGE_CONFIG`).
    pub config_path: Option<PathBuf>,
    /// The environment, as (name, value) pairs; usually `std::env::vars_os()`.
    pub env: BTreeMap<String, OsString>,
    /// The current directory, for `./manage.toml` and relative paths.
    pub cwd: PathBuf,
}

impl Sources {
    /// The process's own environment and current directory.
    pub fn from_process(config_path: Option<PathBuf>) -> Self {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v)))
            .collect();
        Sources {
            config_path,
            env,
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        }
    }

    /// An environment variable that is set and not empty. A NUL byte (which a
    /// real environment cannot carry, but a `Sources` built by hand can) is
    /// refused like one in the file.
    fn var(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.env.get(name).map(|v| v.to_string_lossy().into_owned()) {
            Some(v) if v.contains('\0') => Err(ConfigError(format!("{name}: {NUL_PROBLEM}"))),
            Some(v) if !v.is_empty() => Ok(Some(v)),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    pub max_parallel: u32,
    pub shutdown_grace_secs: u32,
    pub timings: Timings,
}

/// What a declared job does: a shell command run as a child process, or SQL
/// run on one of the runner's connections (§12). Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclaredAction {
    Command(String),
    Sql(String),
}

/// The default retries of a job (§13): none.
pub const DEFAULT_RETRIES: u32 = 0;
/// The default delay before the first retry: 30 seconds.
pub const DEFAULT_RETRY_DELAY_SECS: u32 = 30;
/// The most retries a job may have.
pub const MAX_RETRIES: u32 = 100;
/// The default `alert_after` (§14): every failure mails.
pub const DEFAULT_ALERT_AFTER: u32 = 1;

/// A job declared in the configuration file's `[jobs.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredJob {
    pub name: String,
    pub action: DeclaredAction,
    /// Runs again after a failure, up to this many times (§13).
    pub retries: u32,
    pub retry_delay_secs: u32,
    /// Failure mails start at this many consecutive failures (§14).
    pub alert_after: u32,
    pub description: String,
    pub app: String,
    pub schedule: Option<Schedule>,
    /// The zone its times and cron slots are read in (§11), when not the configured one.
    pub timezone: Option<Tz>,
    /// Seconds after its due time past which a scheduled run is skipped (§11).
    pub start_deadline_secs: Option<u32>,
    pub timeout_secs: u32,
    pub should_run: Option<String>,
    pub trigger_next: Vec<String>,
    pub notify_on_success: bool,
    pub working_dir: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl DeclaredJob {
    /// The shell command, for a job that has one (not an SQL job).
    pub fn command(&self) -> Option<&str> {
        match &self.action {
            DeclaredAction::Command(c) => Some(c),
            DeclaredAction::Sql(_) => None,
        }
    }
}

/// `[web]`: the page `manage web` serves (§16).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebConfig {
    /// `listen`: the address and port; `--listen` beats it.
    pub listen: Option<std::net::SocketAddr>,
    /// `token` (env `MANAGE_WEB_TOKEN`): with one, every request must carry it.
    pub token: Option<String>,
}

/// Where `manage web` listens: `ADDR:PORT` (`127.0.0.1:8000`, `[::1]:8000`),
/// or `HOST:PORT` for a name the system resolves (`localhost:8000`).
pub fn parse_listen(text: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    let expected = "expected ADDR:PORT, e.g. 127.0.0.1:8000, [::1]:8000 or localhost:8000";
    let text = text.trim();
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    // Only a name with a port is worth asking the resolver about.
    if !text.contains(':') {
        return Err(expected.to_string());
    }
    text.to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| expected.to_string())
}

/// Everything `manage` needs to know, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    pub database_url: Option<String>,
    pub timezone: Tz,
    pub history_retention_days: u32,
    pub max_output_bytes: u64,
    pub runner: RunnerConfig,
    pub notifications: NotificationConfig,
    pub web: WebConfig,
    pub jobs: BTreeMap<String, DeclaredJob>,
}

impl Config {
    /// Read and validate. `builtins` are the jobs written in Rust, each with
    /// its `trigger_next`: a declared job may neither take one of their names,
    /// nor trigger an unknown job, nor close a cycle through them. `commands`
    /// are the names of the command line's own commands (`jobs`, `metrics`,
    /// `help`, …), which no declared job may take either: the command line
    /// passes them in, read off its clap definition, so that a new command is
    /// reserved the day it is added (see `cli::command_names`).
    pub fn load(
        sources: &Sources,
        builtins: &BuiltinJobs,
        commands: &[String],
    ) -> Result<Config, ConfigError> {
        let file = match &sources.config_path {
            Some(path) => Some(sources.cwd.join(path)),
            None => {
                let default = sources.cwd.join("manage.toml");
                default.is_file().then_some(default)
            }
        };
        let (table, label) = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!(
                        "{}: cannot read the configuration file: {e}",
                        path.display()
                    ))
                })?;
                let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                    let message = e.message().trim().replace('\n', " ");
                    let line = e
                        .span()
                        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                    match line {
                        Some(line) => ConfigError(format!(
                            "{}: line {line}: invalid TOML: {message}",
                            path.display()
                        )),
                        None => ConfigError(format!("{}: invalid TOML: {message}", path.display())),
                    }
                })?;
                (table, path.display().to_string())
            }
            None => (toml::Table::new(), String::from("(no configuration file)")),
        };
        let base_dir = file
            .as_ref()
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| sources.cwd.clone());
        let reader = Reader {
            label: &label,
            commands,
        };
        reader.reject_nul(&table, "")?;
        reader.config(&table, sources, file.clone(), &base_dir, builtins)
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> Option<&Path> {
        self.file.as_deref().and_then(Path::parent)
    }
}

/// Walks the TOML table; `label` is the file name used in every message.
struct Reader<'a> {
    label: &'a str,
    /// The command line's own commands: names no job may take.
    commands: &'a [String],
}

type Res<T> = Result<T, ConfigError>;

impl Reader<'_> {
    fn err(&self, key: &str, problem: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!("{}: {key}: {problem}", self.label))
    }

    /// Refuse a NUL byte anywhere, in a key or a string, before anything else
    /// reads the table: one walk covers every key, present and future.
    fn reject_nul(&self, table: &toml::Table, prefix: &str) -> Res<()> {
        for (key, value) in table {
            let full = join_key(prefix, key);
            if key.contains('\0') {
                return Err(self.err(&full, NUL_PROBLEM));
            }
            self.reject_nul_in(value, &full)?;
        }
        Ok(())
    }

    fn reject_nul_in(&self, value: &toml::Value, full: &str) -> Res<()> {
        match value {
            toml::Value::String(s) if s.contains('\0') => Err(self.err(full, NUL_PROBLEM)),
            // An array's items are named by the array's key, as elsewhere.
            toml::Value::Array(items) => items
                .iter()
                .try_for_each(|item| self.reject_nul_in(item, full)),
            toml::Value::Table(t) => self.reject_nul(t, full),
            _ => Ok(()),
        }
    }

    fn check_keys(&self, table: &toml::Table, prefix: &str, allowed: &[&str]) -> Res<()> {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                let full = join_key(prefix, key);
                return Err(self.err(
                    &full,
                    format!("unknown key; expected one of: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn string(&self, table: &toml::Table, key: &str, full: &str) -> Res<Option<String>> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(
                full,
                format!("expected a string, found {}", describe(other)),
            )),
        }
    }

    fn boolean(&self, table: &toml::Table, key: &str, full: &str) -> Res<Option<bool>> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(
                full,
                format!("expected true or false, found {}", describe(other)),
            )),
        }
    }

    fn integer(
        &self,
        table: &toml::Table,
        key: &str,
        full: &str,
        min: i64,
        max: i64,
    ) -> Res<Option<i64>> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(i)) if (min..=max).contains(i) => Ok(Some(*i)),
            Some(toml::Value::Integer(i)) => Err(self.err(
                full,
                format!("{i} is out of range: expected an integer from {min} to {max}"),
            )),
            Some(other) => Err(self.err(
                full,
                format!("expected an integer, found {}", describe(other)),
            )),
        }
    }

    fn duration(&self, table: &toml::Table, key: &str, full: &str) -> Res<Option<u32>> {
        match self.string(table, key, full)? {
            None => Ok(None),
            Some(s) => schedule::parse_duration(&s)
                .map(Some)
                .map_err(|e| self.err(full, e)),
        }
    }

    fn table<'t>(
        &self,
        table: &'t toml::Table,
        key: &str,
        full: &str,
    ) -> Res<Option<&'t toml::Table>> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(other) => {
                Err(self.err(full, format!("expected a table, found {}", describe(other))))
            }
        }
    }

    fn string_array(&self, table: &toml::Table, key: &str, full: &str) -> Res<Option<Vec<String>>> {
        match table.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(self.err(
                        full,
                        format!(
                            "expected an array of strings, found {} in it",
                            describe(other)
                        ),
                    )),
                })
                .collect::<Res<Vec<_>>>()
                .map(Some),
            Some(other) => Err(self.err(
                full,
                format!("expected an array of strings, found {}", describe(other)),
            )),
        }
    }

    fn config(
        &self,
        table: &toml::Table,
        sources: &Sources,
        file: Option<PathBuf>,
        base_dir: &Path,
        builtins: &BuiltinJobs,
    ) -> Res<Config> {
        self.check_keys(
            table,
            "",
            &[
                "database_url",
                "timezone",
                "history_retention_days",
                "max_output_bytes",
                "runner",
                "notifications",
                "web",
                "jobs",
            ],
        )?;

        let database_url =
            sources
                .var("DATABASE_URL")?
                .or(self.string(table, "database_url", "database_url")?);

        let timezone = match sources.var("MANAGE_TIMEZONE")? {
            Some(name) => schedule::parse_zone(&name)
                .map_err(|e| ConfigError(format!("MANAGE_TIMEZONE: {e}")))?,
            None => match self.string(table, "timezone", "timezone")? {
                Some(name) => schedule::parse_zone(&name).map_err(|e| self.err("timezone", e))?,
                None => system_zone(sources.var("TZ").ok().flatten().as_deref()),
            },
        };

        let history_retention_days = self
            .integer(
                table,
                "history_retention_days",
                "history_retention_days",
                1,
                i64::from(MAX_RETENTION_DAYS),
            )?
            .map_or(DEFAULT_RETENTION_DAYS, |d| d as u32);
        let max_output_bytes = self
            .integer(table, "max_output_bytes", "max_output_bytes", 1, 1 << 30)?
            .map_or(DEFAULT_MAX_OUTPUT_BYTES, |b| b as u64);

        let runner = match self.table(table, "runner", "runner")? {
            None => RunnerConfig {
                max_parallel: DEFAULT_MAX_PARALLEL,
                shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
                timings: Timings::default(),
            },
            Some(runner) => {
                self.check_keys(
                    runner,
                    "runner",
                    &[
                        "max_parallel",
                        "shutdown_grace",
                        "heartbeat",
                        "cut_off",
                        "dead_after",
                        "idle_close",
                    ],
                )?;
                let defaults = Timings::default();
                let seconds = |key: &str, default: std::time::Duration| -> Res<_> {
                    Ok(self
                        .duration(runner, key, &format!("runner.{key}"))?
                        .map_or(default, |s| std::time::Duration::from_secs(u64::from(s))))
                };
                let timings = Timings {
                    heartbeat: seconds("heartbeat", defaults.heartbeat)?,
                    cut_off: seconds("cut_off", defaults.cut_off)?,
                    dead_after: seconds("dead_after", defaults.dead_after)?,
                    idle_close: seconds("idle_close", defaults.idle_close)?,
                    ..defaults
                };
                timings
                    .check()
                    .map_err(|problem| self.err("runner.cut_off", problem))?;
                RunnerConfig {
                    max_parallel: self
                        .integer(runner, "max_parallel", "runner.max_parallel", 1, 1024)?
                        .map_or(DEFAULT_MAX_PARALLEL, |n| n as u32),
                    shutdown_grace_secs: self
                        .duration(runner, "shutdown_grace", "runner.shutdown_grace")?
                        .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
                    timings,
                }
            }
        };

        let mut notifications = NotificationConfig::default();
        if let Some(n) = self.table(table, "notifications", "notifications")? {
            self.check_keys(
                n,
                "notifications",
                &["email", "sender", "smtp_url", "smtp_ca_file", "sendmail"],
            )?;
            notifications.email = self.string(n, "email", "notifications.email")?;
            notifications.sender = self.string(n, "sender", "notifications.sender")?;
            notifications.smtp_url = self.string(n, "smtp_url", "notifications.smtp_url")?;
            notifications.smtp_ca_file = self
                .string(n, "smtp_ca_file", "notifications.smtp_ca_file")?
                .map(|p| base_dir.join(p));
            notifications.sendmail = self
                .string(n, "sendmail", "notifications.sendmail")?
                .map(|p| base_dir.join(p));
        }
        if let Some(email) = sources.var("SCHEDULED_JOBS_EMAIL")? {
            notifications.email = Some(email);
        }
        if let Some(sender) = sources.var("SCHEDULED_JOBS_EMAIL_SENDER")? {
            notifications.sender = Some(sender);
        }
        if let Some(url) = sources.var("SMTP_URL")? {
            notifications.smtp_url = Some(url);
        }
        notifications.email = notifications.email.filter(|e| !e.trim().is_empty());
        // Named as the environment variable when that is where the value came from.
        crate::mail::check_settings(&notifications).map_err(|p| {
            match p.env.filter(|var| matches!(sources.var(var), Ok(Some(_)))) {
                Some(var) => ConfigError(format!("{var}: {}", p.problem)),
                None => self.err(&format!("notifications.{}", p.key), p.problem),
            }
        })?;

        let mut web = WebConfig::default();
        if let Some(w) = self.table(table, "web", "web")? {
            self.check_keys(w, "web", &["listen", "token"])?;
            web.listen = self
                .string(w, "listen", "web.listen")?
                .map(|text| {
                    parse_listen(&text)
                        .map_err(|problem| self.err("web.listen", format!("\"{text}\": {problem}")))
                })
                .transpose()?;
            web.token = self.string(w, "token", "web.token")?;
        }
        if let Some(token) = sources.var("MANAGE_WEB_TOKEN")? {
            web.token = Some(token);
        }
        web.token = web.token.filter(|t| !t.trim().is_empty());

        let mut jobs = BTreeMap::new();
        if let Some(declared) = self.table(table, "jobs", "jobs")? {
            for (name, value) in declared {
                let key = format!("jobs.{name}");
                let job_table = match value {
                    toml::Value::Table(t) => t,
                    other => {
                        return Err(
                            self.err(&key, format!("expected a table, found {}", describe(other)))
                        )
                    }
                };
                let job = self.declared_job(name, job_table, base_dir, builtins)?;
                jobs.insert(name.clone(), job);
            }
            // trigger_next may name any job, declared or built-in, but no unknown one.
            for job in jobs.values() {
                for target in &job.trigger_next {
                    if !jobs.contains_key(target)
                        && !builtins.iter().any(|(b, _)| *b == target.as_str())
                    {
                        return Err(self.err(
                            &format!("jobs.{}.trigger_next", job.name),
                            format!("\"{target}\" is not a known job"),
                        ));
                    }
                }
            }
            self.reject_trigger_cycle(&jobs, builtins)?;
        }

        Ok(Config {
            file,
            database_url,
            timezone,
            history_retention_days,
            max_output_bytes,
            runner,
            notifications,
            web,
            jobs,
        })
    }

    /// A job that triggers itself, directly or through others, would run
    /// forever: refused, naming the cycle. Built-in jobs' `trigger_next`
    /// count too: a cycle may pass through one.
    fn reject_trigger_cycle(
        &self,
        jobs: &BTreeMap<String, DeclaredJob>,
        builtins: &BuiltinJobs,
    ) -> Res<()> {
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, trigger_next) in builtins {
            edges.insert(name, trigger_next.to_vec());
        }
        for job in jobs.values() {
            edges.insert(
                &job.name,
                job.trigger_next.iter().map(String::as_str).collect(),
            );
        }
        let Some(cycle) = find_cycle(&edges) else {
            return Ok(());
        };
        // Named after a job of the file: the first of the cycle's declared jobs.
        let start = cycle
            .iter()
            .position(|name| jobs.contains_key(*name))
            .unwrap_or(0);
        let mut path: Vec<&str> = cycle[start..]
            .iter()
            .chain(&cycle[..start])
            .copied()
            .collect();
        path.push(path[0]);
        Err(self.err(
            &format!("jobs.{}.trigger_next", path[0]),
            format!(
                "{} is a cycle: a job may not trigger itself, directly or through others",
                path.join(" → ")
            ),
        ))
    }

    fn declared_job(
        &self,
        name: &str,
        table: &toml::Table,
        base_dir: &Path,
        builtins: &BuiltinJobs,
    ) -> Res<DeclaredJob> {
        let key = format!("jobs.{name}");
        if let Err(problem) = check_job_name(name) {
            return Err(self.err(&key, problem));
        }
        if self.commands.iter().any(|command| command == name) {
            return Err(self.err(
                &key,
                format!("\"{name}\" is the name of a manage command and cannot be a job name"),
            ));
        }
        if builtins.iter().any(|(b, _)| *b == name) {
            return Err(self.err(
                &key,
                format!("\"{name}\" is the name of a built-in job; choose another name"),
            ));
        }
        self.check_keys(
            table,
            &key,
            &[
                "command",
                "sql",
                "retries",
                "retry_delay",
                "alert_after",
                "description",
                "times",
                "interval",
                "cron",
                "timezone",
                "start_deadline",
                "timeout",
                "should_run",
                "trigger_next",
                "notify_on_success",
                "app",
                "working_dir",
                "env",
            ],
        )?;
        let k = |field: &str| format!("{key}.{field}");
        let command = self.string(table, "command", &k("command"))?;
        let sql = self.string(table, "sql", &k("sql"))?;
        let action = match (command, sql) {
            (Some(_), Some(_)) => {
                return Err(self.err(&key, "both command and sql are set; give one or the other"))
            }
            (None, None) => {
                return Err(self.err(
                    &k("command"),
                    "missing: every declared job needs a command or sql",
                ))
            }
            (Some(c), None) if c.trim().is_empty() => {
                return Err(self.err(&k("command"), "must not be empty"))
            }
            (None, Some(q)) if q.trim().is_empty() => {
                return Err(self.err(&k("sql"), "must not be empty"))
            }
            (Some(c), None) => DeclaredAction::Command(c),
            (None, Some(q)) => DeclaredAction::Sql(q),
        };
        let retries = self
            .integer(table, "retries", &k("retries"), 0, i64::from(MAX_RETRIES))?
            .map_or(DEFAULT_RETRIES, |n| {
                u32::try_from(n).unwrap_or(DEFAULT_RETRIES)
            });
        let retry_delay_secs = self
            .duration(table, "retry_delay", &k("retry_delay"))?
            .unwrap_or(DEFAULT_RETRY_DELAY_SECS);
        let alert_after = self
            .integer(
                table,
                "alert_after",
                &k("alert_after"),
                i64::from(crate::job::MIN_ALERT_AFTER),
                i64::from(crate::job::MAX_ALERT_AFTER),
            )?
            .map_or(DEFAULT_ALERT_AFTER, |n| {
                u32::try_from(n).unwrap_or(DEFAULT_ALERT_AFTER)
            });
        let times = match table.get("times") {
            None => None,
            Some(toml::Value::Array(items)) => {
                let mut times = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        toml::Value::String(s) => times.push(
                            schedule::parse_time_of_day(s).map_err(|e| self.err(&k("times"), e))?,
                        ),
                        other => {
                            return Err(self.err(
                                &k("times"),
                                format!(
                                    "expected an array of \"HH:MM\" strings, found {} in it",
                                    describe(other)
                                ),
                            ))
                        }
                    }
                }
                if times.is_empty() {
                    return Err(self.err(&k("times"), "expected at least one time of day"));
                }
                Some(schedule::normalize_times(times))
            }
            Some(other) => {
                return Err(self.err(
                    &k("times"),
                    format!(
                        "expected an array of \"HH:MM\" strings, found {}",
                        describe(other)
                    ),
                ))
            }
        };
        let interval = self.duration(table, "interval", &k("interval"))?;
        let cron = match self.string(table, "cron", &k("cron"))? {
            Some(expr) => Some(schedule::parse_cron(&expr).map_err(|e| self.err(&k("cron"), e))?),
            None => None,
        };
        let given: Vec<&str> = [
            ("times", times.is_some()),
            ("interval", interval.is_some()),
            ("cron", cron.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if given.len() > 1 {
            return Err(self.err(
                &key,
                format!(
                    "both {} are set; give only one of times, interval and cron",
                    given.join(" and ")
                ),
            ));
        }
        let schedule = match (times, interval, cron) {
            (Some(t), _, _) => Some(Schedule::Times(t)),
            (_, Some(i), _) => Some(Schedule::Interval(i)),
            (_, _, Some(c)) => Some(Schedule::Cron(c)),
            _ => None,
        };
        let timezone = match self.string(table, "timezone", &k("timezone"))? {
            Some(name) => {
                Some(schedule::parse_zone(&name).map_err(|e| self.err(&k("timezone"), e))?)
            }
            None => None,
        };
        let start_deadline_secs = self.duration(table, "start_deadline", &k("start_deadline"))?;
        let timeout_secs = self
            .duration(table, "timeout", &k("timeout"))?
            .unwrap_or(DEFAULT_TIMEOUT_SECS);
        let app = self
            .string(table, "app", &k("app"))?
            .unwrap_or_else(|| "local".into());
        if app.trim().is_empty() {
            return Err(self.err(&k("app"), "must not be empty"));
        }
        let description = self
            .string(table, "description", &k("description"))?
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| name.to_string());
        let working_dir = match self.string(table, "working_dir", &k("working_dir"))? {
            Some(dir) => base_dir.join(dir),
            None => base_dir.to_path_buf(),
        };
        let mut env = BTreeMap::new();
        if let Some(vars) = self.table(table, "env", &k("env"))? {
            for (var, value) in vars {
                // A name with `=` would be split differently by the child's
                // libc; an empty one cannot be set at all.
                let var_key = join_key(&k("env"), var);
                if var.is_empty() {
                    return Err(
                        self.err(&var_key, "an environment variable name must not be empty")
                    );
                }
                if var.contains('=') {
                    return Err(self.err(
                        &var_key,
                        "an environment variable name must not contain \"=\"",
                    ));
                }
                match value {
                    toml::Value::String(s) => {
                        env.insert(var.clone(), s.clone());
                    }
                    other => {
                        return Err(self.err(
                            &var_key,
                            format!("expected a string, found {}", describe(other)),
                        ))
                    }
                }
            }
        }
        let trigger_next = self
            .string_array(table, "trigger_next", &k("trigger_next"))?
            .unwrap_or_default();
        Ok(DeclaredJob {
            name: name.to_string(),
            action,
            retries,
            retry_delay_secs,
            alert_after,
            description,
            app,
            schedule,
            timezone,
            start_deadline_secs,
            timeout_secs,
            should_run: self
                .string(table, "should_run", &k("should_run"))?
                .filter(|q| !q.trim().is_empty()),
            trigger_next,
            notify_on_success: self
                .boolean(table, "notify_on_success", &k("notify_on_success"))?
                .unwrap_or(false),
            working_dir,
            env,
        })
    }
}

/// A job name is `[a-z][a-z0-9_]{0,99}`. (That it is not one of `manage`'s
/// commands is checked where the commands are known: `Config::load`.)
pub fn check_job_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 100
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
    if !valid {
        return Err(format!(
            "\"{name}\" is not a valid job name: expected a lowercase letter followed by up to 99 lowercase letters, digits or underscores"
        ));
    }
    Ok(())
}

/// `prefix.key`, with the key quoted as TOML would when it is not a bare key
/// (`jobs.backup.env."A=B"`), so that the message names it unambiguously.
fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        toml::Value::String(key.to_string()).to_string()
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// A cycle in a graph of job → jobs it triggers, as the jobs on it in order
/// (each triggers the next, the last the first); `None` when there is none.
/// Nodes are visited in name order, so the answer is the same every time.
fn find_cycle<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        marks.insert(node, Mark::OnPath);
        path.push(node);
        for &next in edges.get(node).into_iter().flatten() {
            match marks.get(next) {
                Some(Mark::OnPath) => {
                    let from = path.iter().position(|n| *n == next).unwrap_or(0);
                    return Some(path[from..].to_vec());
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(cycle) = visit(next, edges, marks, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for &node in edges.keys() {
        if !marks.contains_key(node) {
            let mut path = Vec::new();
            if let Some(cycle) = visit(node, edges, &mut marks, &mut path) {
                return Some(cycle);
            }
        }
    }
    None
}

fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string \"{s}\""),
        toml::Value::Integer(i) => format!("the integer {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("the boolean {b}"),
        toml::Value::Datetime(d) => format!("the date-time {d}"),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

/// The system's zone when none is configured: `TZ`, then /etc/localtime, then UTC.
/// An unusable `TZ` (a POSIX rule string, say) is passed over rather than fatal:
/// it is the machine's setting, not ours.
fn system_zone(tz_env: Option<&str>) -> Tz {
    if let Some(tz) = tz_env {
        let name = tz.trim_start_matches(':');
        let name = name.rsplit_once("zoneinfo/").map_or(name, |(_, n)| n);
        if let Ok(zone) = schedule::parse_zone(name) {
            return zone;
        }
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let target = target.to_string_lossy();
        if let Some((_, name)) = target.rsplit_once("zoneinfo/") {
            if let Ok(zone) = schedule::parse_zone(name) {
                return zone;
            }
        }
    }
    if let Ok(name) = std::fs::read_to_string("/etc/timezone") {
        if let Ok(zone) = schedule::parse_zone(name.trim()) {
            return zone;
        }
    }
    Tz::UTC
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(env: &[(&str, &str)]) -> Sources {
        Sources {
            config_path: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), OsString::from(v)))
                .collect(),
            cwd: PathBuf::from("/nonexistent-manage-test-dir"),
        }
    }

    #[test]
    fn the_example_configuration_loads_and_its_commented_runner_keys_too() {
        let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manage.example.toml");
        let builtins: &BuiltinJobs = &[("purge_job_history", &[]), ("send_queued_mail", &[])];
        let load = |path: &Path| {
            Config::load(
                &Sources {
                    config_path: Some(path.to_path_buf()),
                    ..sources(&[])
                },
                builtins,
                &[],
            )
        };
        let config = load(&example).unwrap();
        assert_eq!(config.runner.timings, Timings::default());
        // Every `# key = value` of [runner] uncommented: the documented
        // defaults are accepted and are the defaults.
        let text = std::fs::read_to_string(&example).unwrap();
        let mut in_runner = false;
        let uncommented: String = text
            .lines()
            .map(|line| {
                if line.starts_with('[') {
                    in_runner = line == "[runner]";
                }
                match line.strip_prefix("# ") {
                    Some(rest) if in_runner && rest.contains(" = ") => format!("{rest}\n"),
                    _ => format!("{line}\n"),
                }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manage.toml");
        std::fs::write(&path, uncommented).unwrap();
        let config = load(&path).unwrap();
        assert_eq!(config.runner.timings, Timings::default());
        assert_eq!(config.runner.max_parallel, DEFAULT_MAX_PARALLEL);
    }

    #[test]
    fn job_names_follow_the_pattern() {
        assert!(check_job_name("fetch_payments2").is_ok());
        assert!(check_job_name("Fetch").is_err());
        assert!(check_job_name("2fetch").is_err());
        assert!(check_job_name("").is_err());
        assert!(check_job_name(&"a".repeat(100)).is_ok());
        assert!(check_job_name(&"a".repeat(101)).is_err());
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let config = Config::load(&sources(&[("TZ", "Europe/Stockholm")]), &[], &[]).unwrap();
        assert_eq!(config.timezone, chrono_tz::Europe::Stockholm);
        assert_eq!(config.history_retention_days, 90);
        assert_eq!(config.max_output_bytes, 1 << 20);
        assert_eq!(config.runner.max_parallel, 4);
        assert_eq!(config.runner.shutdown_grace_secs, 30);
        assert!(config.database_url.is_none());
    }

    #[test]
    fn manage_timezone_beats_tz() {
        let config = Config::load(
            &sources(&[
                ("TZ", "Europe/Stockholm"),
                ("MANAGE_TIMEZONE", "America/New_York"),
            ]),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(config.timezone, chrono_tz::America::New_York);
    }

    #[test]
    fn a_nul_byte_in_an_environment_override_names_the_variable() {
        let error =
            Config::load(&sources(&[("SCHEDULED_JOBS_EMAIL", "ops\0@x")]), &[], &[]).unwrap_err();
        assert!(error.0.starts_with("SCHEDULED_JOBS_EMAIL: "), "{error}");
        assert!(error.0.contains("NUL"), "{error}");
        let error =
            Config::load(&sources(&[("DATABASE_URL", "host=/tmp\0")]), &[], &[]).unwrap_err();
        assert!(error.0.starts_with("DATABASE_URL: "), "{error}");
    }

    #[test]
    fn cycles_are_found_in_name_order_and_chains_are_not_cycles() {
        let graph = |edges: &[(&'static str, &[&'static str])]| -> BTreeMap<&str, Vec<&str>> {
            edges.iter().map(|(k, v)| (*k, v.to_vec())).collect()
        };
        assert_eq!(find_cycle(&graph(&[("a", &["a"])])), Some(vec!["a"]));
        assert_eq!(
            find_cycle(&graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])),
            Some(vec!["a", "b", "c"])
        );
        // A diamond and a chain into an unknown (built-in) job are no cycle.
        assert_eq!(
            find_cycle(&graph(&[
                ("a", &["b", "c"]),
                ("b", &["d"]),
                ("c", &["d"]),
                ("d", &["builtin"]),
            ])),
            None
        );
        // A cycle reached through a job that is not on it.
        assert_eq!(
            find_cycle(&graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"])])),
            Some(vec!["b", "c"])
        );
    }

    #[test]
    fn keys_that_are_not_bare_are_quoted_in_messages() {
        assert_eq!(join_key("jobs.a.env", "PATH"), "jobs.a.env.PATH");
        assert_eq!(join_key("jobs.a.env", "A=B"), "jobs.a.env.\"A=B\"");
        assert_eq!(join_key("jobs.a.env", ""), "jobs.a.env.\"\"");
        assert_eq!(join_key("", "runner"), "runner");
    }

    #[test]
    fn a_posix_tz_string_falls_through_to_the_system_zone() {
        // Not an error: TZ belongs to the machine.
        assert!(Config::load(&sources(&[("TZ", "CET-1CEST")]), &[], &[]).is_ok());
    }
}
