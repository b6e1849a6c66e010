//! The scenarios of the brief (and 7, the peers; 8, failover; 9, the web page; 10, the fleet; 11, the cron fleet), one module each, run in order against the
//! benchmark's database. Each starts from an empty schema (`Server::reset`).

mod cron_fleet;
mod failover;
mod fleet;
mod idle;
mod latency;
mod peers;
mod scale;
mod startup;
mod throughput;
mod web;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::procs::Manage;
use crate::server::Server;
use crate::stats::Figure;

pub struct Bench {
    pub quick: bool,
    pub work: PathBuf,
    pub server: Server,
    pub manage: PathBuf,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Bench {
    /// Full or quick: the number of repetitions (or the size) to use.
    pub fn pick(&self, full: usize, quick: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// The `manage` binary against our database, with this configuration file.
    pub fn manage(&self, config: Option<&Path>) -> Manage {
        let mut env = vec![("DATABASE_URL".to_string(), self.server.url.clone())];
        if let Some(file) = config {
            env.push(("MANAGE_CONFIG".into(), file.display().to_string()));
        }
        if let Some(dir) = self.server.data_dir() {
            // Never the user's own cluster, whatever happens.
            env.push(("MANAGE_DATA_DIR".into(), dir.display().to_string()));
        }
        Manage {
            binary: self.manage.clone(),
            env,
            cwd: self.work.clone(),
        }
    }

    pub fn push(&mut self, figure: Figure) {
        crate::say(&format!("  {}: {}", figure.label, headline(&figure)));
        self.figures.push(figure);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }
}

fn headline(f: &Figure) -> String {
    match (&f.summary, f.value) {
        (Some(s), _) => format!(
            "median {} p99 {} {} (n={})",
            crate::stats::number(s.median),
            crate::stats::number(s.p99),
            f.unit,
            s.n
        ),
        (None, Some(v)) => format!("{} {}", crate::stats::number(v), f.unit),
        (None, None) => "no data".into(),
    }
}

/// Write a `manage.toml`: `[runner]` settings and the given job tables.
pub fn write_config(path: &Path, max_parallel: u32, jobs: &[String]) -> anyhow::Result<()> {
    let mut text = format!("[runner]\nmax_parallel = {max_parallel}\n\n");
    for job in jobs {
        text.push_str(job);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn run_all(bench: &mut Bench, only: &[u32]) -> anyhow::Result<()> {
    let wanted = |n: u32| only.is_empty() || only.contains(&n);
    if wanted(1) {
        crate::say("1. start-up of manage jobs list and manage --help");
        startup::run(bench).context("scenario 1 (start-up)")?;
    }
    if wanted(2) {
        crate::say("2. the idle runner");
        idle::run(bench).context("scenario 2 (idle runner)")?;
    }
    if wanted(3) {
        crate::say("3. trigger -> start");
        latency::trigger(bench).context("scenario 3 (trigger -> start)")?;
    }
    if wanted(4) {
        crate::say("4. start - due");
        latency::due(bench).context("scenario 4 (start - due)")?;
        latency::due_children(bench).context("scenario 4 (start - due, child jobs)")?;
    }
    if wanted(5) {
        crate::say("5. throughput");
        throughput::run(bench).context("scenario 5 (throughput)")?;
    }
    if wanted(6) {
        crate::say("6. scale");
        scale::run(bench).context("scenario 6 (scale)")?;
    }
    if wanted(7) {
        crate::say("7. peers: manage beside pg_cron");
        peers::run(bench).context("scenario 7 (peers)")?;
    }
    if wanted(8) {
        crate::say("8. failover: primary stopped, standby promoted");
        failover::run(bench).context("scenario 8 (failover)")?;
    }
    if wanted(9) {
        crate::say("9. the web page: every page with 1,000 jobs and 1,000,000 runs");
        web::run(bench).context("scenario 9 (web page)")?;
    }
    if wanted(10) {
        crate::say("10. fleet: 1, 2, 4, 8 runners on one database");
        fleet::run(bench).context("scenario 10 (fleet)")?;
    }
    if wanted(11) {
        crate::say("11. cron fleet: 10,000 cron jobs on 8 runners for 10 minutes");
        cron_fleet::run(bench).context("scenario 11 (cron fleet)")?;
    }
    Ok(())
}
