//! `manage`: a PostgreSQL-backed job scheduler and command suite, as a
//! library for an application's own `manage` (§22 of the SPEC).
//!
//! Every job is a command (`manage NAME`) and `manage scheduled_jobs_runner`
//! runs them all on their schedules, exactly once across any number of
//! runners. An application links this crate, describes its own jobs written
//! in Rust as [`Job`] values, and hands them to a [`Suite`], whose
//! [`main`](Suite::main) is the whole command line: the runner, `jobs …`,
//! `migrate`, the web page, completions and the man page, with the
//! application's jobs beside the shipped ones (and the jobs its
//! `manage.toml` declares).
//!
//! ```no_run
//! use std::io::Write as _;
//!
//! use manage::{Context, Job, ShouldRun, Suite};
//!
//! /// Runs in the runner's own process, on its connection.
//! fn expire_sessions(ctx: &mut Context) -> anyhow::Result<()> {
//!     let gone = ctx
//!         .client
//!         .execute("DELETE FROM sessions WHERE expires_at < now()", &[])?;
//!     writeln!(ctx.out, "expired {gone} sessions")?;
//!     Ok(())
//! }
//!
//! /// Runs as a child process (`myapp build_sitemap`), under its timeout.
//! fn build_sitemap(ctx: &mut Context) -> anyhow::Result<()> {
//!     writeln!(ctx.out, "sitemap of run {:?} written", ctx.run_id)?;
//!     Ok(())
//! }
//!
//! fn main() {
//!     Suite::new()
//!         .job(
//!             Job::new("expire_sessions", expire_sessions)
//!                 .app("accounts")
//!                 .description("Expire old sessions")
//!                 .interval("00:10:00")
//!                 .internal(true),
//!         )
//!         .job(
//!             Job::new("build_sitemap", build_sitemap)
//!                 .app("site")
//!                 .times(&["04:30"])
//!                 .timeout(std::time::Duration::from_secs(600))
//!                 .should_run(|_| Ok(ShouldRun::Run)),
//!         )
//!         .main()
//! }
//! ```
//!
//! Inside, data flows one way: the command line (`cli`) turns arguments into
//! a validated configuration and a command; the core (`schedule`, `registry`,
//! `store`, `runner`) does the work against PostgreSQL and never prints.
//! The modules below the public items are the crate's own: they are
//! reachable (the integration tests and the benchmark use them) but are no
//! interface, and may change in any release.

#![warn(missing_docs)]

mod suite;

pub use job::builder::{Context, Job, RunFn, ShouldRunFn};
pub use job::definition::ShouldRun;
pub use job::Overlap;
pub use suite::Suite;

#[doc(hidden)]
pub mod cli;
#[path = "../commands/mod.rs"]
pub(crate) mod commands;
#[doc(hidden)]
pub mod config;
pub(crate) mod cron;
#[doc(hidden)]
pub mod db;
pub(crate) mod error;
#[doc(hidden)]
pub mod host;
pub(crate) mod input;
#[doc(hidden)]
pub mod job;
#[doc(hidden)]
pub mod mail;
pub(crate) mod metrics;
#[doc(hidden)]
pub mod ops;
#[doc(hidden)]
pub mod process;
#[doc(hidden)]
pub mod registry;
#[doc(hidden)]
pub mod runner;
#[doc(hidden)]
pub mod schedule;
pub(crate) mod sql_text;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod timings;
pub(crate) mod view;
pub(crate) mod web;
#[doc(hidden)]
pub mod webhook;
