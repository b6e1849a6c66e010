//! The configuration: `manage.toml` plus environment variables, validated into
//! one [`Config`].
//!
//! The file is read by serde into the structs of [`file`], each key's value by
//! its function in `keys`; serde_path_to_error names the key of a value
//! that is refused, so that every problem is one line naming the file, the
//! exact key (`jobs.backup.interval`) and what was expected. What depends on
//! more than one key, or on the environment and the built-in jobs, is checked
//! here, after that. Precedence is command-line flag, then environment, then
//! file, then default; the flags are applied by the caller (`--database-url`),
//! the environment here.

mod file;
mod keys;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;

pub use crate::mail::NotificationConfig;
use crate::schedule::{self, Schedule};
use crate::timings::Timings;
use crate::webhook::Webhook;

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

/// The names of `manage`'s own commands: no job may take one of them.
pub const RESERVED_NAMES: &[&str] = &[
    "jobs",
    "db",
    "migrate",
    "check",
    "mail",
    "help",
    "completions",
    "man",
    "scheduled_jobs_runner",
    "list_unscheduled_commands",
    "metrics",
    "web",
];

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

impl ConfigError {
    /// A problem with `key` of the file `label`.
    fn at(label: &str, key: &str, problem: impl std::fmt::Display) -> Self {
        ConfigError(format!("{label}: {key}: {problem}"))
    }
}

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
    /// `runner.database_url` (env `MANAGE_RUNNER_DATABASE_URL`): where the
    /// runner connects instead of `database_url`, e.g. past a
    /// transaction-mode pooler the CLI and the web page use (§19).
    pub database_url: Option<String>,
    pub max_parallel: u32,
    /// `runner.tags` (env `MANAGE_RUNNER_TAGS`, `--tag`): this runner takes
    /// only jobs whose `runs_on` it has every tag of (§19).
    pub tags: Vec<String>,
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

/// What a job is, whichever way it is defined: the keys a `[jobs.NAME]`
/// table shares with a job written in Rust, each meaning the same for both.
/// A key that every kind of job can have belongs here, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// One line, shown everywhere the job is listed.
    pub description: String,
    pub app: String,
    /// None: run only when asked.
    pub schedule: Option<Schedule>,
    /// The zone its times and cron slots are read in (§11), when not the configured one.
    pub timezone: Option<Tz>,
    /// Seconds after its due time past which a scheduled run is skipped (§11).
    pub start_deadline_secs: Option<u32>,
    pub timeout_secs: u32,
    /// Runs again after a failure, up to this many times (§13).
    pub retries: u32,
    pub retry_delay_secs: u32,
    /// Failure mails start at this many consecutive failures (§14).
    pub alert_after: u32,
    /// The SQL query of the cheap first phase (§4), for a declared job.
    pub should_run: Option<String>,
    pub trigger_next: Vec<String>,
    /// The tags a runner needs to take this job (§19); empty: any runner.
    pub runs_on: Vec<String>,
    /// Each slot delayed by a pseudo-random offset below this (§21); 0: none.
    pub jitter_secs: u32,
    /// Who this job's alerts go to (§20), instead of `notifications.email`:
    /// mail addresses and `webhook:NAME`s. `None`: the global recipient.
    pub notify: Option<Vec<String>>,
    /// The dead-man alert (§20): overdue when it has not succeeded for this
    /// many seconds. `None`: never overdue for that reason.
    pub expect_success_within_secs: Option<u32>,
    /// The slow-run warning (§20): one alert when a run is still going after
    /// this many seconds.
    pub warn_after_secs: Option<u32>,
    /// The initial value of the operator's *notify on success*.
    pub notify_on_success: bool,
    /// What a slot that comes while the job runs does (§21).
    pub overlap: crate::job::Overlap,
    /// The jobs scheduled at once when a run (or its retry series) ends in
    /// success, or in failure (§21); `trigger_next` is for any outcome.
    pub on_success: Vec<String>,
    pub on_failure: Vec<String>,
}

impl JobSettings {
    /// A job that sets nothing but its name: described by it, in app
    /// `local`, run only when asked, with the default timeout, no retries and
    /// a mail for every failure.
    pub fn new(name: &str) -> Self {
        JobSettings {
            description: name.to_string(),
            app: "local".into(),
            schedule: None,
            timezone: None,
            start_deadline_secs: None,
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            retries: DEFAULT_RETRIES,
            retry_delay_secs: DEFAULT_RETRY_DELAY_SECS,
            alert_after: DEFAULT_ALERT_AFTER,
            should_run: None,
            trigger_next: Vec::new(),
            runs_on: Vec::new(),
            jitter_secs: 0,
            notify: None,
            expect_success_within_secs: None,
            warn_after_secs: None,
            notify_on_success: false,
            overlap: crate::job::Overlap::Wait,
            on_success: Vec::new(),
            on_failure: Vec::new(),
        }
    }
}

/// A job declared in the configuration file's `[jobs.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredJob {
    pub name: String,
    pub action: DeclaredAction,
    pub settings: JobSettings,
    pub working_dir: PathBuf,
    pub env: BTreeMap<String, String>,
    /// An SQL job's statements run as sent, outside a transaction block
    /// (§18), so that they may COMMIT in steps.
    pub sql_autocommit: bool,
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
    /// `trusted_proxy_header` (§23): the header a trusted proxy names the
    /// signed-in user with, e.g. `X-Forwarded-User`.
    pub trusted_proxy_header: Option<String>,
    /// `trusted_proxies`: the addresses whose `trusted_proxy_header` is believed.
    pub trusted_proxies: Vec<Cidr>,
}

/// A block of addresses, `ADDR/BITS` (`127.0.0.1/32`, `fd00::/8`); a bare
/// address is the block of that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: std::net::IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let problem = || {
            format!("\"{text}\" is not an address block: expected ADDR/BITS, e.g. 127.0.0.1/32 or ::1/128")
        };
        let (address, bits) = match text.trim().split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text.trim(), None),
        };
        let network: std::net::IpAddr = address.parse().map_err(|_| problem())?;
        let most = if network.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => most,
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= most)
                .ok_or_else(problem)?,
        };
        Ok(Cidr { network, bits })
    }

    /// Whether `address` is in the block (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        fn masked(value: u128, width: u32, bits: u8) -> u128 {
            let bits = u32::from(bits);
            if bits == 0 {
                0
            } else {
                value >> (width - bits)
            }
        }
        match (self.network, address.to_canonical()) {
            (std::net::IpAddr::V4(net), std::net::IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), 32, self.bits)
                    == masked(u128::from(u32::from(ip)), 32, self.bits)
            }
            (std::net::IpAddr::V6(net), std::net::IpAddr::V6(ip)) => {
                masked(u128::from(net), 128, self.bits) == masked(u128::from(ip), 128, self.bits)
            }
            _ => false,
        }
    }
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
    /// nor trigger an unknown job, nor close a cycle through them.
    pub fn load(sources: &Sources, builtins: &BuiltinJobs) -> Result<Config, ConfigError> {
        let file = match &sources.config_path {
            Some(path) => Some(sources.cwd.join(path)),
            None => {
                let default = sources.cwd.join("manage.toml");
                default.is_file().then_some(default)
            }
        };
        let label = match &file {
            Some(path) => path.display().to_string(),
            None => String::from("(no configuration file)"),
        };
        let raw = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("{label}: cannot read the configuration file: {e}"))
                })?;
                file::parse(&text).map_err(|error| match error {
                    // A job named like a built-in one is told so first, as
                    // whatever else is wrong in it is beside the point.
                    file::FileError::Key {
                        job: Some(name), ..
                    } if is_builtin(builtins, &name) => {
                        ConfigError::at(&label, &format!("jobs.{name}"), builtin_clash(&name))
                    }
                    other => other.message(&label),
                })?
            }
            None => file::RawFile::default(),
        };
        let base_dir = file
            .as_ref()
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| sources.cwd.clone());
        let at = |key: &str, problem: String| ConfigError::at(&label, key, problem);

        let database_url = sources.var("DATABASE_URL")?.or(raw.database_url);
        let timezone = match sources.var("MANAGE_TIMEZONE")? {
            Some(name) => schedule::parse_zone(&name)
                .map_err(|e| ConfigError(format!("MANAGE_TIMEZONE: {e}")))?,
            None => match raw.timezone {
                Some(value) => keys::zone_of(value).map_err(|e| at("timezone", e))?,
                None => system_zone(sources.var("TZ").ok().flatten().as_deref()),
            },
        };
        let raw_runner = raw.runner.unwrap_or_default();
        let runner_database_url = sources
            .var("MANAGE_RUNNER_DATABASE_URL")?
            .or_else(|| raw_runner.database_url.clone());
        let mut runner = runner_config(raw_runner).map_err(|e| at("runner.cut_off", e))?;
        runner.database_url = runner_database_url;
        if let Some(list) = sources.var("MANAGE_RUNNER_TAGS")? {
            runner.tags =
                parse_tags(&list).map_err(|e| ConfigError(format!("MANAGE_RUNNER_TAGS: {e}")))?;
        }
        let notifications = notifications(
            raw.notifications.unwrap_or_default(),
            sources,
            &base_dir,
            &label,
        )?;

        let web = raw.web.unwrap_or_default();
        let web = WebConfig {
            listen: web.listen,
            token: sources
                .var("MANAGE_WEB_TOKEN")?
                .or(web.token)
                .filter(|t| !t.trim().is_empty()),
            trusted_proxy_header: web.trusted_proxy_header,
            trusted_proxies: web.trusted_proxies.unwrap_or_default(),
        };
        match (&web.trusted_proxy_header, web.trusted_proxies.is_empty()) {
            (Some(_), true) => {
                return Err(at(
                    "web.trusted_proxy_header",
                    "needs web.trusted_proxies, the addresses of the proxies that set it".into(),
                ))
            }
            (None, false) => {
                return Err(at(
                    "web.trusted_proxies",
                    "needs web.trusted_proxy_header, the header those proxies name the user in"
                        .into(),
                ))
            }
            _ => {}
        }

        let mut jobs = BTreeMap::new();
        for (keys::JobName(name), keys::Table(job)) in raw.jobs.unwrap_or_default() {
            let mut job = declared_job(name, job, &base_dir, builtins)
                .map_err(|(key, problem)| at(&key, problem))?;
            if let Some(list) = &job.settings.notify {
                let checked = check_notify(list, &notifications.webhooks)
                    .map_err(|e| at(&format!("jobs.{}.notify", job.name), e))?;
                job.settings.notify = Some(checked);
            }
            jobs.insert(job.name.clone(), job);
        }
        check_triggers(&jobs, builtins).map_err(|(key, problem)| at(&key, problem))?;

        Ok(Config {
            file,
            database_url,
            timezone,
            history_retention_days: raw.history_retention_days.unwrap_or(DEFAULT_RETENTION_DAYS),
            max_output_bytes: raw
                .max_output_bytes
                .map_or(DEFAULT_MAX_OUTPUT_BYTES, u64::from),
            runner,
            notifications,
            web,
            jobs,
        })
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> Option<&Path> {
        self.file.as_deref().and_then(Path::parent)
    }
}

/// A jitter must fit between two slots (§21): at most the schedule's
/// shortest gap, so that delaying never reorders or merges runs.
pub fn check_jitter(jitter_secs: u32, schedule: Option<&Schedule>, tz: Tz) -> Result<(), String> {
    let Some(schedule) = schedule else {
        return if jitter_secs == 0 {
            Ok(())
        } else {
            Err("applies to a job with a schedule (times, interval or cron) only".into())
        };
    };
    match schedule::shortest_gap(schedule, tz) {
        Some(gap) if jitter_secs > gap => Err(format!(
            "{} is more than the shortest gap between the job's slots ({}): expected at most that",
            schedule::format_duration(jitter_secs),
            schedule::format_duration(gap)
        )),
        _ => Ok(()),
    }
}

/// A slow-run warning (§20) must come before the timeout: at the timeout
/// the run is stopped, so a warning at or after it could never be sent.
pub fn check_warn_after(warn_after_secs: u32, timeout_secs: u32) -> Result<(), String> {
    if warn_after_secs >= timeout_secs {
        return Err(format!(
            "{} is not shorter than the job's timeout ({}): expected less than the timeout, \
             which stops the run",
            schedule::format_duration(warn_after_secs),
            schedule::format_duration(timeout_secs)
        ));
    }
    Ok(())
}

/// A runner tag (§19): 1 to 63 letters, digits, `_`, `-` or `.`, so that a
/// comma-separated list (`--runs-on gpu,eu`, `MANAGE_RUNNER_TAGS`) and the
/// problem texts can hold it as it is.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let fits = !tag.is_empty()
        && tag.len() <= 63
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if fits {
        Ok(())
    } else {
        Err(format!(
            "{tag:?} is not a tag: expected 1 to 63 letters, digits, '_', '-' or '.'"
        ))
    }
}

/// A comma-separated list of tags (`gpu,eu`; spaces around a tag are
/// ignored, an empty list is no tags), in order without repeats.
pub fn parse_tags(list: &str) -> Result<Vec<String>, String> {
    if !list.contains(|c: char| !c.is_whitespace() && c != ',') {
        return Ok(Vec::new());
    }
    checked_tags(list.split(',').map(|tag| tag.trim().to_string()))
}

/// Tags each checked by [`check_tag`], in order without repeats: what
/// `runner.tags`, `runs_on`, `--tag` and a comma list all become.
pub fn checked_tags(tags: impl IntoIterator<Item = String>) -> Result<Vec<String>, String> {
    checked_list(tags, check_tag)
}

/// `items` each checked by `check`, in order without repeats.
pub fn checked_list(
    items: impl IntoIterator<Item = String>,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, String> {
    let mut unique: Vec<String> = Vec::new();
    for item in items {
        check(&item)?;
        if !unique.contains(&item) {
            unique.push(item);
        }
    }
    Ok(unique)
}

/// `[runner]`, or the problem with its timings together.
fn runner_config(raw: file::RawRunner) -> Result<RunnerConfig, String> {
    let defaults = Timings::default();
    let seconds = |key: Option<u32>, default| {
        key.map_or(default, |s| std::time::Duration::from_secs(u64::from(s)))
    };
    let timings = Timings {
        heartbeat: seconds(raw.heartbeat, defaults.heartbeat),
        cut_off: seconds(raw.cut_off, defaults.cut_off),
        dead_after: seconds(raw.dead_after, defaults.dead_after),
        idle_close: seconds(raw.idle_close, defaults.idle_close),
        ..defaults
    };
    timings.check()?;
    Ok(RunnerConfig {
        database_url: raw.database_url,
        max_parallel: raw.max_parallel.unwrap_or(DEFAULT_MAX_PARALLEL),
        tags: raw.tags.unwrap_or_default(),
        shutdown_grace_secs: raw.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
        timings,
    })
}

/// `[notifications]` with the environment's overrides, checked together; a
/// problem is named after the variable when that is where the value came from.
fn notifications(
    raw: file::RawNotifications,
    sources: &Sources,
    base_dir: &Path,
    label: &str,
) -> Result<NotificationConfig, ConfigError> {
    let notifications = NotificationConfig {
        email: sources
            .var("SCHEDULED_JOBS_EMAIL")?
            .or(raw.email)
            .filter(|e| !e.trim().is_empty()),
        sender: sources.var("SCHEDULED_JOBS_EMAIL_SENDER")?.or(raw.sender),
        smtp_url: sources.var("SMTP_URL")?.or(raw.smtp_url),
        smtp_ca_file: raw.smtp_ca_file.map(|p| base_dir.join(p)),
        sendmail: raw.sendmail.map(|p| base_dir.join(p)),
        webhooks: webhooks(raw.webhooks.unwrap_or_default())
            .map_err(|(key, problem)| ConfigError::at(label, &key, problem))?,
    };
    crate::mail::check_settings(&notifications).map_err(|p| {
        match p.env.filter(|var| matches!(sources.var(var), Ok(Some(_)))) {
            Some(var) => ConfigError(format!("{var}: {}", p.problem)),
            None => ConfigError::at(label, &format!("notifications.{}", p.key), p.problem),
        }
    })?;
    Ok(notifications)
}

/// `[notifications.webhooks.NAME]` (§20): a name a `notify` list can hold
/// as `webhook:NAME`, and an http(s) URL.
fn webhooks(
    raw: BTreeMap<String, keys::Table<file::RawWebhook>>,
) -> Result<BTreeMap<String, Webhook>, KeyProblem> {
    let mut hooks = BTreeMap::new();
    for (name, keys::Table(hook)) in raw {
        let key = join_key("notifications.webhooks", &name);
        check_tag(&name).map_err(|_| {
            (
                key.clone(),
                format!("{name:?} is not a webhook name: expected 1 to 63 letters, digits, '_', '-' or '.'"),
            )
        })?;
        let k = |field: &str| format!("{key}.{field}");
        let url = match hook.url {
            Some(url) => url,
            None => return Err((k("url"), "missing: every webhook needs a url".into())),
        };
        crate::webhook::check_url(&url).map_err(|e| (k("url"), e))?;
        let format = match hook.format {
            Some(text) => crate::webhook::Format::parse(&text).map_err(|e| (k("format"), e))?,
            None => crate::webhook::Format::Json,
        };
        let secret = hook.secret.filter(|s| !s.is_empty());
        hooks.insert(
            name,
            Webhook {
                url,
                secret,
                format,
            },
        );
    }
    Ok(hooks)
}

/// A `--notify` list as the command line and the web form take it:
/// comma-separated, blanks dropped, checked as [`check_notify`] checks.
pub fn notify_arg(text: &str, webhooks: &BTreeMap<String, Webhook>) -> Result<Vec<String>, String> {
    let items: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(String::from)
        .collect();
    check_notify(&items, webhooks)
}

/// A job's `notify` (§20): mail addresses and `webhook:NAME`s of configured
/// webhooks, in order without repeats; the problem names the first bad one.
pub fn check_notify(
    list: &[String],
    webhooks: &BTreeMap<String, Webhook>,
) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for item in list.iter().map(|i| i.trim()) {
        if let Some(name) = item.strip_prefix(crate::webhook::RECIPIENT_PREFIX) {
            if !webhooks.contains_key(name) {
                let known: Vec<&str> = webhooks.keys().map(String::as_str).collect();
                return Err(if known.is_empty() {
                    format!("no webhook \"{name}\": no [notifications.webhooks] are configured")
                } else {
                    format!(
                        "no webhook \"{name}\": expected one of the [notifications.webhooks] names: {}",
                        known.join(", ")
                    )
                });
            }
        } else {
            crate::mail::check_address(item)
                .map_err(|e| format!("{e}; expected a mail address or webhook:NAME"))?;
        }
        if !out.iter().any(|o| o == item) {
            out.push(item.to_string());
        }
    }
    Ok(out)
}

/// A problem of a declared job: the key and what is wrong with it.
type KeyProblem = (String, String);

fn is_builtin(builtins: &BuiltinJobs, name: &str) -> bool {
    builtins.iter().any(|(b, _)| *b == name)
}

fn builtin_clash(name: &str) -> String {
    format!("\"{name}\" is the name of a built-in job; choose another name")
}

/// A `[jobs.NAME]` table whose keys are each fine, checked as a whole.
fn declared_job(
    name: String,
    raw: file::RawJob,
    base_dir: &Path,
    builtins: &BuiltinJobs,
) -> Result<DeclaredJob, KeyProblem> {
    let key = format!("jobs.{name}");
    let k = |field: &str| format!("{key}.{field}");
    if is_builtin(builtins, &name) {
        return Err((key, builtin_clash(&name)));
    }
    let action = match (raw.command, raw.sql) {
        (Some(_), Some(_)) => {
            return Err((
                key,
                "both command and sql are set; give one or the other".into(),
            ))
        }
        (None, None) => {
            return Err((
                k("command"),
                "missing: every declared job needs a command or sql".into(),
            ))
        }
        (Some(c), None) if c.trim().is_empty() => {
            return Err((k("command"), "must not be empty".into()))
        }
        (None, Some(q)) if q.trim().is_empty() => {
            return Err((k("sql"), "must not be empty".into()))
        }
        (Some(c), None) => DeclaredAction::Command(c),
        (None, Some(q)) => DeclaredAction::Sql(q),
    };
    match &action {
        DeclaredAction::Command(_) if raw.sql_autocommit.is_some() => {
            return Err((
                k("sql_autocommit"),
                "applies to a job with sql only; this one has a command".into(),
            ))
        }
        // One transaction (§18): a statement that ends it would commit
        // the first half of a run that then fails.
        DeclaredAction::Sql(q) if raw.sql_autocommit != Some(true) => {
            if let Some(statement) = crate::sql_text::first_transaction_control(q) {
                return Err((
                    k("sql"),
                    format!(
                        "{statement} is a transaction-control statement, and an SQL job runs in one \
                         transaction (nothing of a failed run is committed); remove it, or set \
                         sql_autocommit = true for a job that must commit in steps"
                    ),
                ));
            }
        }
        _ => {}
    }
    let given: Vec<&str> = [
        ("times", raw.times.is_some()),
        ("interval", raw.interval.is_some()),
        ("cron", raw.cron.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if given.len() > 1 {
        return Err((
            key,
            format!(
                "both {} are set; give only one of times, interval and cron",
                given.join(" and ")
            ),
        ));
    }
    let defaults = JobSettings::new(&name);
    let settings = JobSettings {
        description: raw
            .description
            .filter(|d| !d.trim().is_empty())
            .unwrap_or(defaults.description),
        app: raw.app.unwrap_or(defaults.app),
        schedule: (raw.times.map(Schedule::Times))
            .or(raw.interval.map(Schedule::Interval))
            .or(raw.cron.map(Schedule::Cron)),
        timezone: raw.timezone,
        start_deadline_secs: raw.start_deadline,
        timeout_secs: raw.timeout.unwrap_or(defaults.timeout_secs),
        retries: raw.retries.unwrap_or(defaults.retries),
        retry_delay_secs: raw.retry_delay.unwrap_or(defaults.retry_delay_secs),
        alert_after: raw.alert_after.unwrap_or(defaults.alert_after),
        should_run: raw.should_run.filter(|q| !q.trim().is_empty()),
        trigger_next: raw.trigger_next.unwrap_or_default(),
        runs_on: raw.runs_on.unwrap_or_default(),
        jitter_secs: raw.jitter.unwrap_or(0),
        notify: raw.notify,
        expect_success_within_secs: raw.expect_success_within,
        warn_after_secs: raw.warn_after,
        notify_on_success: raw.notify_on_success.unwrap_or(defaults.notify_on_success),
        overlap: raw.overlap.unwrap_or_default(),
        on_success: raw.on_success.unwrap_or_default(),
        on_failure: raw.on_failure.unwrap_or_default(),
    };
    if settings.warn_after_secs.is_some() && matches!(action, DeclaredAction::Sql(_)) {
        return Err((
            k("warn_after"),
            "applies to a job with a command only; an SQL job's timeout cancels it".into(),
        ));
    }
    if let Some(warn_after) = settings.warn_after_secs {
        check_warn_after(warn_after, settings.timeout_secs)
            .map_err(|problem| (k("warn_after"), problem))?;
    }
    if let Some(jitter) = raw.jitter {
        check_jitter(
            jitter,
            settings.schedule.as_ref(),
            settings.timezone.unwrap_or(Tz::UTC),
        )
        .map_err(|problem| (k("jitter"), problem))?;
    }
    Ok(DeclaredJob {
        action,
        settings,
        working_dir: match raw.working_dir {
            Some(dir) => base_dir.join(dir),
            None => base_dir.to_path_buf(),
        },
        env: raw
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|(keys::EnvName(var), keys::Text(value))| (var, value))
            .collect(),
        sql_autocommit: raw.sql_autocommit.unwrap_or(false),
        name,
    })
}

/// trigger_next, on_success and on_failure may name any job, declared or
/// built-in, but no unknown one; and a job that triggers itself, directly or
/// through others and through any of the three lists, would run forever:
/// refused, naming the cycle and the key of its first step. Built-in jobs'
/// lists count too: a cycle may pass through one.
fn check_triggers(
    jobs: &BTreeMap<String, DeclaredJob>,
    builtins: &BuiltinJobs,
) -> Result<(), KeyProblem> {
    for job in jobs.values() {
        for (key, targets) in chain_lists(&job.settings) {
            for target in targets {
                if !jobs.contains_key(target) && !is_builtin(builtins, target) {
                    return Err((
                        format!("jobs.{}.{key}", job.name),
                        format!("\"{target}\" is not a known job"),
                    ));
                }
            }
        }
    }
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, triggers) in builtins {
        edges.insert(name, triggers.to_vec());
    }
    for job in jobs.values() {
        let targets = chain_lists(&job.settings)
            .into_iter()
            .flat_map(|(_, targets)| targets.iter().map(String::as_str))
            .collect();
        edges.insert(&job.name, targets);
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
    // The key of the cycle's first step: the list of path[0] naming path[1].
    let key = jobs
        .get(path[0])
        .and_then(|job| {
            chain_lists(&job.settings)
                .into_iter()
                .find(|(_, targets)| targets.iter().any(|t| t == path[1]))
        })
        .map_or("trigger_next", |(key, _)| key);
    Err((format!("jobs.{}.{key}", path[0]), cycle_problem(&path)))
}

/// A job's three lists of jobs to schedule after a run, by key (§21).
pub fn chain_lists(settings: &JobSettings) -> [(&'static str, &[String]); 3] {
    [
        ("trigger_next", &settings.trigger_next),
        ("on_success", &settings.on_success),
        ("on_failure", &settings.on_failure),
    ]
}

/// The problem with a cycle, `path` going round it (its first job again at
/// the end), as the file and `jobs configure` both say it (§17).
pub fn cycle_problem(path: &[&str]) -> String {
    format!(
        "{} is a cycle: a job may not trigger itself, directly or through others",
        path.join(" → ")
    )
}

/// A cycle through the graph of job → the jobs it schedules, as the path
/// round it (its first job again at the end); `None` when there is none.
pub fn cycle_in<'a>(edges: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    let mut path = find_cycle(edges)?;
    path.push(path[0]);
    Some(path)
}

/// A job name is `[a-z][a-z0-9_]{0,99}` and is not one of `manage`'s commands.
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
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "\"{name}\" is the name of a manage command and cannot be a job name"
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
mod messages_tests;

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
        assert!(config.runner.database_url.is_some());
    }

    /// The example file with the commented `# key = value` lines that `wanted`
    /// picks (it sees every line, in order) uncommented, loaded.
    fn load_example_uncommenting(mut wanted: impl FnMut(&str) -> bool) -> Config {
        let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("manage.example.toml");
        let builtins: &BuiltinJobs = &[("purge_job_history", &[]), ("send_queued_mail", &[])];
        let text = std::fs::read_to_string(&example).unwrap();
        let uncommented: String = text
            .lines()
            .map(|line| {
                let keep = wanted(line);
                match line.strip_prefix("# ") {
                    Some(rest) if keep => format!("{rest}\n"),
                    _ => format!("{line}\n"),
                }
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manage.toml");
        std::fs::write(&path, uncommented).unwrap();
        Config::load(
            &Sources {
                config_path: Some(path),
                ..sources(&[])
            },
            builtins,
        )
        .unwrap()
    }

    #[test]
    fn the_examples_commented_webhooks_notify_and_dead_man_settings_load() {
        let mut in_hooks = false;
        let config = load_example_uncommenting(|line| {
            if line.starts_with("# [") {
                in_hooks = line.starts_with("# [notifications.webhooks.");
            } else if !line.starts_with("# ") {
                in_hooks = false;
            }
            in_hooks
                || [
                    "# notify = ",
                    "# expect_success_within = ",
                    "# warn_after = ",
                ]
                .iter()
                .any(|key| line.starts_with(key))
        });
        let hooks: Vec<&str> = config
            .notifications
            .webhooks
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(hooks, ["chat", "pager"]);
        assert_eq!(
            config.jobs["refresh_exchange_rates"].settings.notify,
            Some(vec!["ops@example.com".into(), "webhook:chat".into()])
        );
        let settings = &config.jobs["refresh_exchange_rates"].settings;
        assert_eq!(settings.expect_success_within_secs, Some(26 * 3600));
        assert_eq!(settings.warn_after_secs, Some(180));
    }

    #[test]
    fn the_examples_commented_trusted_proxy_keys_load() {
        let config = load_example_uncommenting(|line| line.starts_with("# trusted_prox"));
        assert_eq!(
            config.web.trusted_proxy_header.as_deref(),
            Some("X-Forwarded-User")
        );
        assert_eq!(
            config.web.trusted_proxies,
            [
                Cidr::parse("127.0.0.1/32").unwrap(),
                Cidr::parse("::1/128").unwrap()
            ]
        );
    }

    #[test]
    fn the_runner_has_a_database_url_of_its_own_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manage.toml");
        std::fs::write(
            &path,
            "database_url = \"host=/pooler\"\n[runner]\ndatabase_url = \"host=/direct\"\n",
        )
        .unwrap();
        let load = |env: &[(&str, &str)]| {
            Config::load(
                &Sources {
                    config_path: Some(path.clone()),
                    ..sources(env)
                },
                &[],
            )
            .unwrap()
        };
        let config = load(&[]);
        assert_eq!(config.database_url.as_deref(), Some("host=/pooler"));
        assert_eq!(config.runner.database_url.as_deref(), Some("host=/direct"));
        let config = load(&[("MANAGE_RUNNER_DATABASE_URL", "host=/env")]);
        assert_eq!(config.database_url.as_deref(), Some("host=/pooler"));
        assert_eq!(config.runner.database_url.as_deref(), Some("host=/env"));
        assert!(Config::load(&sources(&[]), &[])
            .unwrap()
            .runner
            .database_url
            .is_none());
    }

    #[test]
    fn job_names_follow_the_pattern_and_avoid_commands() {
        assert!(check_job_name("fetch_payments2").is_ok());
        assert!(check_job_name("Fetch").is_err());
        assert!(check_job_name("2fetch").is_err());
        assert!(check_job_name("").is_err());
        assert!(check_job_name(&"a".repeat(100)).is_ok());
        assert!(check_job_name(&"a".repeat(101)).is_err());
        assert!(check_job_name("jobs").is_err());
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let config = Config::load(&sources(&[("TZ", "Europe/Stockholm")]), &[]).unwrap();
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
        )
        .unwrap();
        assert_eq!(config.timezone, chrono_tz::America::New_York);
    }

    #[test]
    fn a_nul_byte_in_an_environment_override_names_the_variable() {
        let error =
            Config::load(&sources(&[("SCHEDULED_JOBS_EMAIL", "ops\0@x")]), &[]).unwrap_err();
        assert!(error.0.starts_with("SCHEDULED_JOBS_EMAIL: "), "{error}");
        assert!(error.0.contains("NUL"), "{error}");
        let error = Config::load(&sources(&[("DATABASE_URL", "host=/tmp\0")]), &[]).unwrap_err();
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
        assert!(Config::load(&sources(&[("TZ", "CET-1CEST")]), &[]).is_ok());
    }

    #[test]
    fn an_address_block_holds_the_addresses_under_its_mask() {
        let block = |text: &str| Cidr::parse(text).unwrap();
        let ip = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
        assert!(block("127.0.0.1/32").contains(ip("127.0.0.1")));
        assert!(!block("127.0.0.1/32").contains(ip("127.0.0.2")));
        assert!(block("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!block("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(block("0.0.0.0/0").contains(ip("192.0.2.1")));
        assert!(block("127.0.0.1").contains(ip("::ffff:127.0.0.1")));
        assert!(block("::1/128").contains(ip("::1")));
        assert!(!block("::1/128").contains(ip("127.0.0.1")));
        assert!(block("fd00::/8").contains(ip("fd12:3456::1")));
        assert!(!block("fd00::/8").contains(ip("fe80::1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "10.0.0.0/-1",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
