//! The command line: clap definitions, dispatch, and the human/JSON rendering.
//!
//! The static commands are a clap derive; the jobs are added at run time, one
//! subcommand each, from the registry — which needs the configuration file, so
//! `--config` is found by a small pre-scan before clap parses anything. A broken
//! configuration must not hide `--help`: the help is printed with the built-in
//! jobs only, after a warning.

mod audit;
mod common;
mod control;
mod db_cmd;
mod jobs;
mod mail_cmd;
pub mod render;
mod run_job;
mod status;
mod wait;
mod web_cmd;

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{Config, ConfigError, Sources};
use crate::input::parse_tag_arg;
use crate::job::definition::{JobDef, JobKind};
use crate::registry::Registry;

#[derive(Debug, Parser)]
#[command(
    name = "manage",
    version,
    about = "A PostgreSQL-backed job scheduler and command suite",
    long_about = "A PostgreSQL-backed job scheduler and command suite.\n\n\
                  Every job is also a command: `manage NAME` runs it once, now. \
                  `manage scheduled_jobs_runner` runs every job on its schedule.",
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// The configuration file [default: ./manage.toml when present]
    // Empty counts as unset (like an empty DATABASE_URL), so the parser must
    // let an empty value through: clap's PathBuf parser refuses one, and an
    // exported-but-empty MANAGE_CONFIG would end every command in a usage error.
    #[arg(long, global = true, value_name = "PATH", env = "MANAGE_CONFIG",
          value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from))]
    pub config: Option<PathBuf>,

    /// The database to use [default: the embedded cluster under MANAGE_DATA_DIR]
    ///
    /// A libpq URL or key=value conninfo. Several hosts, for failover:
    /// postgresql://db1,db2/app?target_session_attrs=read-write&connect_timeout=5
    /// (or host=db1,db2 port=5432,5433). The runner connects to
    /// MANAGE_RUNNER_DATABASE_URL (runner.database_url) instead when it is set,
    /// e.g. directly while everything else goes through a transaction-mode pooler.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The shells `manage completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// How the runner writes its log (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event (timestamped unless the journal is the reader)
    #[default]
    Human,
    /// One JSON object per line: ts, level, msg, and job, run_id, state, duration_seconds
    Json,
}

impl From<LogFormat> for crate::runner::LogFormat {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Human => crate::runner::LogFormat::Human,
            LogFormat::Json => crate::runner::LogFormat::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every job on its schedule (the daemon; run it under systemd)
    #[command(
        name = "scheduled_jobs_runner",
        after_help = "Environment:\n  MANAGE_RUNNER_DATABASE_URL  The runner's database, instead of DATABASE_URL \
                      (runner.database_url): the runner needs a session of its own (LISTEN, \
                      a session lock), so it cannot go through a transaction-mode pooler"
    )]
    ScheduledJobsRunner {
        /// Run everything that is due, wait for it, and exit (0 if every run succeeded)
        #[arg(long)]
        once: bool,
        /// Do not apply migrations and sync the registry at start-up
        #[arg(long)]
        no_migrate: bool,
        /// How the log on stderr is written: human lines, or one JSON object per line
        #[arg(long, value_name = "FORMAT", env = "MANAGE_LOG_FORMAT", default_value = "human",
              value_parser = one_of::<LogFormat>())]
        log_format: LogFormat,
        /// Take only jobs whose runs_on this runner has every tag of; repeatable
        /// [env: MANAGE_RUNNER_TAGS, comma-separated; file: runner.tags]
        #[arg(long = "tag", value_name = "TAG", value_parser = parse_tag_arg)]
        tags: Vec<String>,
    },
    /// Apply database migrations and sync the job registry into the database
    Migrate,
    /// Inspect and control the scheduled jobs
    Jobs {
        #[command(subcommand)]
        command: jobs::JobsCommand,
    },
    /// List the commands that are not scheduled (manual-only jobs), by app
    #[command(name = "list_unscheduled_commands")]
    ListUnscheduledCommands {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration, the database and its migration state
    Check {
        /// Also send a test mail directly (not through the queue), and post a test event to every webhook
        #[arg(long)]
        send_test_mail: bool,
    },
    /// Print the scheduler's metrics in the Prometheus text format
    Metrics,
    /// The mail queue of the notifications
    Mail {
        #[command(subcommand)]
        command: mail_cmd::MailCommand,
    },
    /// Print shell completions (bash, zsh or fish), job commands included
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff), job commands included
    Man,
    /// Serve the web page: the jobs, their configuration, run now, hold and release
    #[command(
        long_about = "Serve the web page: the jobs, their configuration, run now, hold and \
        release, /healthz, /metrics and /api/jobs; each job's last 30 runs, filters \
        (/?q=TEXT&state=STATE&app=APP), the history of all jobs (/runs) and the audit \
        (/audit).\n\n\
        Without a token it listens only on a loopback address. With a token ([web] token in \
        the file, or the environment variable MANAGE_WEB_TOKEN) every request must carry it: \
        `Authorization: Bearer TOKEN`, or HTTP Basic with the token as the password. Behind a \
        proxy that signs its users in, [web] trusted_proxy_header and trusted_proxies name \
        the header and the addresses it is believed from (audit actor web:USER)."
    )]
    Web(web_cmd::WebArgs),
    /// The embedded default database cluster
    Db {
        #[command(subcommand)]
        command: db_cmd::DbCommand,
    },
}

/// Find `--config PATH` / `--config=PATH` before clap runs (it decides which
/// job subcommands exist). Stops at `--`, like clap. An empty path is no path.
fn prescan_config(args: &[OsString]) -> Option<PathBuf> {
    prescan_config_arg(args).filter(|path| !path.as_os_str().is_empty())
}

fn prescan_config_arg(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--" {
            break;
        }
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(value) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(value));
        }
    }
    None
}

pub use crate::input::number_in;

/// The value parser of a flag with a fixed set of values: like clap's own
/// (the values in `--help`, the completions and the man page), but a refusal
/// is one line naming the value and every choice (`error: invalid value 'xml'
/// for '--log-format <FORMAT>': expected one of human, json`), exit 2.
pub fn one_of<E: clap::ValueEnum + Clone + Send + Sync + 'static>() -> OneOf<E> {
    OneOf(std::marker::PhantomData)
}

#[derive(Clone)]
pub struct OneOf<E>(std::marker::PhantomData<E>);

impl<E: clap::ValueEnum + Clone + Send + Sync + 'static> clap::builder::TypedValueParser
    for OneOf<E>
{
    type Value = E;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<E, clap::Error> {
        let text = value.to_string_lossy();
        E::from_str(&text, false).map_err(|_| {
            let names: Vec<String> = self
                .possible_values()
                .into_iter()
                .flatten()
                .map(|v| v.get_name().to_string())
                .collect();
            let arg = arg.map_or_else(String::new, |a| format!(" for '{a}'"));
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "invalid value '{text}'{arg}: expected one of {}\n",
                    names.join(", ")
                ),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            E::value_variants()
                .iter()
                .filter_map(clap::ValueEnum::to_possible_value),
        ))
    }
}

/// The clap id of a built-in job's free arguments (`manage NAME ARG…`).
pub(crate) const JOB_ARGS: &str = "args";

/// The clap command for one job: its description, and for built-in jobs their
/// own arguments.
fn job_command(job: &JobDef) -> clap::Command {
    let kind = match &job.kind {
        JobKind::Builtin(_) => "built-in job",
        JobKind::Declared(_) if job.sql().is_some() => "declared SQL job",
        JobKind::Declared(_) => "declared job",
    };
    let command = clap::Command::new(job.name.clone())
        .about(format!("{} [{kind}, app {}]", job.description, job.app))
        .long_about(format!(
            "{}\n\nRuns the job once, now, in the foreground ({kind}, app {}). \
             The runner records history; this does not.",
            job.description, job.app
        ));
    match &job.kind {
        JobKind::Builtin(builtin) => builtin.options.iter().fold(
            // What `jobs run-now NAME -- ARG…` gives one run (§21), after the
            // job's own options.
            command.arg(
                clap::Arg::new(JOB_ARGS)
                    .value_name("ARG")
                    .num_args(0..)
                    .trailing_var_arg(true)
                    .allow_hyphen_values(true)
                    .help("Arguments for this run, given to the job as they are"),
            ),
            |command, option| {
                command.arg(
                    clap::Arg::new(option.long)
                        .long(option.long)
                        .value_name(option.value_name)
                        .value_parser(number_in(0, option.max))
                        .allow_negative_numbers(true)
                        .help(format!("{}; 0 to {}", option.help, option.max)),
                )
            },
        ),
        JobKind::Declared(_) => command,
    }
}

/// The whole command line definition, job subcommands included.
pub fn command(registry: &Registry) -> clap::Command {
    let mut command = Cli::command();
    for job in registry.jobs() {
        command = command.subcommand(job_command(job));
    }
    command
}

/// The names of `manage`'s own commands — every static subcommand, its
/// aliases, and the `help` clap adds — read off the clap definition. No
/// declared job may take one (it would shadow the command: `manage metrics`
/// running a job); `config::RESERVED_NAMES` is the list the core checks
/// (it knows no clap), and a test holds it to this one, so that a command
/// added tomorrow cannot be forgotten there.
#[cfg(test)]
fn command_names() -> Vec<String> {
    let mut command = Cli::command();
    // Building adds the generated `help` subcommand.
    command.build();
    command
        .get_subcommands()
        .flat_map(|sub| std::iter::once(sub.get_name()).chain(sub.get_all_aliases()))
        .map(str::to_string)
        .collect()
}

/// What every command needs once the arguments are parsed.
pub struct Context {
    pub config: Config,
    pub registry: Registry,
}

/// Connect as `application_name`, saying on stderr where the database is
/// when it is the embedded one (§10: once per invocation).
pub fn connect_db(
    config: &Config,
    application_name: &str,
) -> anyhow::Result<(postgres::Client, crate::db::Target)> {
    let (client, target) = crate::db::connect(config, application_name)?;
    if let Some(notice) = target.notice() {
        eprintln!("{notice}");
    }
    Ok((client, target))
}

/// The whole command line, with `builtins` as the jobs written in Rust.
pub fn run(builtins: &[&'static crate::job::definition::Builtin]) -> anyhow::Result<()> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let config_path = prescan_config(&args).or_else(|| {
        std::env::var_os("MANAGE_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let sources = Sources::from_process(config_path);
    let loaded: Result<Config, ConfigError> = Config::load(&sources, &Registry::jobs_of(builtins));
    let registry = Registry::of(builtins, loaded.as_ref().ok());

    let matches = match command(&registry).try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(error) => {
            use clap::error::ErrorKind;
            let informational = matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            );
            if informational {
                if let Err(problem) = &loaded {
                    eprintln!("warning: {problem}; declared jobs are not listed");
                }
            } else if let Err(problem) = &loaded {
                // The configuration is the real problem (an unknown subcommand
                // may well be a declared job the broken file hides).
                return Err(problem.clone().into());
            }
            error.exit();
        }
    };

    if let Some((name, job_matches)) = matches.subcommand() {
        if registry.get(name).is_some() {
            let mut config = loaded?;
            apply_flags(&mut config, &matches);
            let ctx = Context { config, registry };
            return run_job::run(&ctx, name, job_matches);
        }
    }

    let cli = Cli::from_arg_matches(&matches).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Command::ScheduledJobsRunner {
        log_format: LogFormat::Json,
        ..
    } = &cli.command
    {
        // Before the configuration's error, if any, is reported.
        crate::runner::set_stderr_json(
            loaded
                .as_ref()
                .map_or(chrono_tz::Tz::UTC, |config| config.timezone),
        );
    }
    match &cli.command {
        // The embedded cluster is found through MANAGE_DATA_DIR alone.
        Command::Db { command } => return db_cmd::run(command),
        // Generated from the same definition as --help, jobs included; like
        // --help they need no database.
        Command::Completions { shell } => {
            if let Err(problem) = &loaded {
                eprintln!("warning: {problem}; declared jobs are not listed");
            }
            return completions(&registry, *shell);
        }
        Command::Man => {
            if let Err(problem) = &loaded {
                eprintln!("warning: {problem}; declared jobs are not listed");
            }
            return man(&registry);
        }
        _ => {}
    }
    let mut config = loaded?;
    apply_flags(&mut config, &matches);
    let ctx = Context { config, registry };
    match cli.command {
        Command::ScheduledJobsRunner {
            once,
            no_migrate,
            log_format,
            tags,
        } => {
            if crate::host::is_root() {
                eprintln!(
                    "{}",
                    crate::runner::stderr_line(
                        crate::runner::Level::Warn,
                        "running as root; run the runner as an unprivileged user"
                    )
                );
            }
            let options = crate::runner::Options {
                once,
                no_migrate,
                log_format: log_format.into(),
            };
            let mut config = ctx.config;
            if !tags.is_empty() {
                // The flag beats the environment and the file; each tag was
                // checked by its value parser.
                config.runner.tags =
                    crate::config::checked_tags(tags).map_err(crate::error::BadInput::new)?;
            }
            // A run's processes that outlive their parent come to us, so
            // that the sweep after a run knows when there is nothing to find
            // (process::orphans); without it, every sweep reads all of /proc.
            let _ = crate::process::become_subreaper();
            let all_succeeded = crate::runner::run(config, ctx.registry, options)?;
            // Only --once reports the runs' result; the daemon exits 0 when told to stop.
            if once && !all_succeeded {
                Err(crate::error::Exit(1).into())
            } else {
                Ok(())
            }
        }
        Command::Migrate => migrate(&ctx),
        Command::Jobs { command } => jobs::run(&ctx, command),
        Command::ListUnscheduledCommands { json } => jobs::list_unscheduled(&ctx, json),
        Command::Check { send_test_mail } => status::check(&ctx, send_test_mail),
        Command::Mail { command } => mail_cmd::run(&ctx, command),
        Command::Web(args) => web_cmd::run(ctx, args),
        Command::Metrics => {
            let mut client = common::connect(&ctx)?;
            let text = crate::metrics::render(&mut client)?;
            std::io::stdout().lock().write_all(text.as_bytes())?;
            Ok(())
        }
        Command::Db { .. } | Command::Completions { .. } | Command::Man => Ok(()),
    }
}

fn completions(registry: &Registry, shell: Shell) -> anyhow::Result<()> {
    let mut command = command(registry);
    let mut out = std::io::stdout();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut command, "manage", &mut out);
    Ok(())
}

/// One roff page: the top-level page followed by a section per command.
fn man(registry: &Registry) -> anyhow::Result<()> {
    let command = command(registry);
    let mut out = std::io::stdout().lock();
    clap_mangen::Man::new(command.clone()).render(&mut out)?;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let page = clap_mangen::Man::new(sub.clone().name(format!("manage-{}", sub.get_name())));
        out.write_all(b".SH \"")?;
        out.write_all(format!("manage {}", sub.get_name()).as_bytes())?;
        out.write_all(b"\"\n")?;
        page.render_description_section(&mut out)?;
        page.render_options_section(&mut out)?;
        page.render_subcommands_section(&mut out)?;
    }
    Ok(())
}

/// The command-line flag beats environment and file.
fn apply_flags(config: &mut Config, matches: &ArgMatches) {
    if let Some(url) = matches.get_one::<String>("database_url") {
        if !url.is_empty() {
            config.database_url = Some(url.clone());
        }
    }
}

fn migrate(ctx: &Context) -> anyhow::Result<()> {
    let (mut client, _) = connect_db(&ctx.config, crate::db::APPLICATION_NAME)?;
    let (applied, lines) = crate::db::migrate_and_sync(
        &mut client,
        &ctx.registry,
        &ctx.config,
        &crate::ops::Actor::cli(),
    )?;
    for name in applied {
        eprintln!("Applied migration {name}");
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        command(&Registry::new(None)).debug_assert();
    }

    /// A declared job named like a command would shadow it (release: the job
    /// runs instead of the command; debug: clap panics on the duplicate).
    #[test]
    fn every_command_name_is_refused_as_a_job_name() {
        let names = command_names();
        for expected in [
            "metrics",
            "help",
            "jobs",
            "web",
            "db",
            "scheduled_jobs_runner",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected}: {names:?}");
        }
        for name in &names {
            assert!(
                crate::config::RESERVED_NAMES.contains(&name.as_str()),
                "the command {name} is missing from config::RESERVED_NAMES"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        for name in &names {
            let path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, format!("[jobs.{name}]\ncommand = \"true\"\n")).unwrap();
            let sources = Sources {
                config_path: Some(path),
                env: Default::default(),
                cwd: dir.path().to_path_buf(),
            };
            let error = Config::load(&sources, &Registry::builtin_jobs()).unwrap_err();
            assert!(
                error.0.contains(&format!(
                    "jobs.{name}: \"{name}\" is the name of a manage command"
                )),
                "{error}"
            );
        }
    }

    #[test]
    fn prescan_finds_both_spellings_of_config() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            prescan_config(&args(&["manage", "--config", "x.toml", "jobs"])),
            Some(PathBuf::from("x.toml"))
        );
        assert_eq!(
            prescan_config(&args(&["manage", "jobs", "--config=y.toml"])),
            Some(PathBuf::from("y.toml"))
        );
        assert_eq!(
            prescan_config(&args(&["manage", "--", "--config", "z"])),
            None
        );
        assert_eq!(prescan_config(&args(&["manage", "--config="])), None);
    }

    #[test]
    fn numbers_out_of_range_state_the_range() {
        let page = number_in(1u32, u32::MAX);
        assert_eq!(page("1"), Ok(1));
        assert_eq!(page("4294967295"), Ok(u32::MAX));
        for bad in ["0", "-1", "4294967296", "x", ""] {
            assert_eq!(
                page(bad),
                Err("expected a whole number from 1 to 4294967295".into()),
                "{bad}"
            );
        }
    }
}
