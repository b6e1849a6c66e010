//! `manage NAME`: run one job now, in the foreground, as cron would — its output
//! to stdout/stderr, exit 0 or 1, no history row, even when the job is disabled
//! (running it by hand is the operator's explicit act).

use std::process::{Command, Stdio};

use anyhow::Context as _;
use clap::ArgMatches;

use crate::cli::Context;
use crate::error::Exit;
use crate::job::definition::{JobArgs, JobContext, JobKind};

pub fn run(ctx: &Context, name: &str, matches: &ArgMatches) -> anyhow::Result<()> {
    let Some(job) = ctx.registry.get(name) else {
        return crate::error::bad_input(format!("\"{name}\" is not a job"));
    };
    match &job.kind {
        JobKind::Builtin(builtin) => {
            let (mut client, _) = crate::cli::connect_db(&ctx.config, &format!("manage {name}"))?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut args = JobArgs::default();
            for option in builtin.options {
                if let Some(value) = matches.get_one::<u32>(option.long) {
                    args.set(option.long, *value);
                }
            }
            // A child of the runner knows its run by its mark (§18).
            let run_id = std::env::var(crate::process::RUN_ID_VAR)
                .ok()
                .and_then(|id| id.parse().ok());
            let free: Vec<String> = matches
                .get_many::<String>(crate::cli::JOB_ARGS)
                .map(|values| values.cloned().collect())
                .unwrap_or_default();
            let mut job_ctx = JobContext {
                client: &mut client,
                run_id,
                args: &free,
                out: &mut out,
                config: &ctx.config,
                options: &args,
            };
            (builtin.run)(&mut job_ctx)
        }
        JobKind::Declared(declared) if declared.command().is_none() => {
            // An SQL job (§12): notices on stdout as they come, the error on
            // stderr, in one transaction without the runner's timeout (§10).
            let app = format!("manage job {name}");
            let (first, target) = crate::cli::connect_db(&ctx.config, &app)?;
            drop(first);
            let print: crate::db::NoticeSink =
                std::sync::Arc::new(|line: String| println!("{line}"));
            let mut client = target.connect_with_notices(&app, print)?;
            let sql = job.sql().unwrap_or_default();
            match crate::store::run_sql_job(&mut client, sql, job.sql_autocommit()) {
                Ok(()) => Ok(()),
                Err(crate::store::SqlFailure::Db(e)) => {
                    eprintln!("{}", crate::db::error_lines(&e));
                    Err(Exit(1).into())
                }
                Err(e) => Err(e.into()),
            }
        }
        JobKind::Declared(declared) => {
            // should_run and timeout belong to the runner; working_dir and env
            // are part of what the command means, so they apply here too.
            let status = Command::new("sh")
                .arg("-c")
                .arg(declared.command().unwrap_or_default())
                .current_dir(&declared.working_dir)
                .envs(&declared.env)
                .stdin(Stdio::inherit())
                .status()
                .with_context(|| {
                    format!(
                        "cannot start job {name} (sh -c in {})",
                        declared.working_dir.display()
                    )
                })?;
            if status.success() {
                Ok(())
            } else {
                Err(Exit(1).into())
            }
        }
    }
}
