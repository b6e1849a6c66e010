//! Scenario 1: the wall time of a fresh `manage jobs list` (50 jobs) and
//! `manage --help` process — what a person or a monitoring script pays.

use std::path::{Path, PathBuf};

use manage::registry::Registry;

use super::Bench;
use crate::stats::{Figure, Target};

/// A configuration file declaring `count` jobs, all scheduled in the future:
/// half daily times, half intervals of an hour or more (with the two
/// shipped built-ins, 48 makes the 50 jobs of the brief).
pub fn fifty_jobs_config(bench: &Bench, count: usize) -> anyhow::Result<PathBuf> {
    let path = bench.work.join("fifty.toml");
    let jobs: Vec<String> = (1..=count)
        .map(|i| {
            let schedule = if i % 2 == 0 {
                format!("times = [\"{:02}:{:02}\", \"{:02}:30\"]", i % 24, i % 60, (i + 12) % 24)
            } else {
                format!("interval = \"{:02}:00:00\"", 1 + i % 12)
            };
            format!(
                "[jobs.app_job_{i:02}]\ncommand = \"true\"\ndescription = \"Application job number {i}\"\n{schedule}\n"
            )
        })
        .collect();
    super::write_config(&path, 4, &jobs)?;
    Ok(path)
}

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let file = fifty_jobs_config(bench, 48)?;
    prepare(bench, &file)?;
    let manage = bench.manage(Some(&file));
    let listed = manage.check(&["jobs", "list", "--json"])?;
    let count = serde_json::from_str::<serde_json::Value>(&listed)?
        .as_array()
        .map_or(0, Vec::len);
    anyhow::ensure!(count == 50, "expected 50 jobs, jobs list shows {count}");

    let reps = bench.pick(60, 10);
    let samples = manage.time(&["jobs", "list"], 3, reps)?;
    bench.push(
        Figure::distribution(
            "startup.jobs_list",
            "manage jobs list (50 jobs)",
            "ms",
            &samples,
        )
        .target(Target::at_most(5.0, "median"))
        .note("fresh process, DATABASE_URL set, manage.toml with 48 declared jobs"),
    );
    let samples = manage.time(&["--help"], 3, bench.pick(100, 20))?;
    bench.push(
        Figure::distribution("startup.help", "manage --help", "ms", &samples)
            .target(Target::at_most(2.0, "median"))
            .note("fresh process, same manage.toml (its 48 jobs are listed as commands)"),
    );
    if let Some(dir) = bench.server.data_dir() {
        // The default experience: no DATABASE_URL, the embedded cluster found
        // through MANAGE_DATA_DIR (fast path: a stat, then connect).
        let mut embedded = manage.clone();
        embedded.env = vec![
            ("MANAGE_CONFIG".into(), file.display().to_string()),
            ("MANAGE_DATA_DIR".into(), dir.display().to_string()),
        ];
        let samples = embedded.time(&["jobs", "list"], 3, reps)?;
        bench.push(
            Figure::distribution(
                "startup.jobs_list_embedded",
                "manage jobs list (50 jobs, embedded discovery)",
                "ms",
                &samples,
            )
            .note("no DATABASE_URL: the embedded cluster's fast path (stat + connect)"),
        );
    }
    // The floor: what spawning and reaping any process costs here.
    let mut samples = Vec::new();
    for _ in 0..bench.pick(100, 20) {
        let start = std::time::Instant::now();
        std::process::Command::new("true").status()?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    bench.push(
        Figure::distribution("startup.floor", "process floor (/bin/true)", "ms", &samples)
            .note("spawning and reaping any process: the floor under the two figures above"),
    );
    Ok(())
}

/// The database as a deployment with this file has it after `manage migrate`.
fn prepare(bench: &Bench, file: &Path) -> anyhow::Result<()> {
    let config = bench
        .server
        .config(Some(file), &bench.work, &Registry::builtin_jobs())?;
    let registry = Registry::new(Some(&config));
    bench.server.reset(&config, &registry)?;
    Ok(())
}
