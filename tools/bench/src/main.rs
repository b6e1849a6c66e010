//! `manage-bench`: the benchmark of `manage`.
//!
//! `cargo run --release -p manage-bench [-- --quick] [--json PATH]`
//!
//! It makes its own database (see `server`), builds and locates the `manage`
//! binary next to its own executable, and measures: CLI start-up,
//! the idle runner's footprint, trigger → start latency, start − due
//! lateness, throughput, scale (10,000 jobs, 1,000,000 history rows), the
//! peers (pg_cron) and failover (a primary stopped, its standby promoted).
//! It prints a table and a JSON document; it never fails on a missed target,
//! only on an error. See BENCHMARKS.md at the repository root for the results
//! and how to read them.
//!
//! Overhead: the benchmark sleeps, or blocks on a LISTEN connection, while it
//! waits; it polls the database at most every 20–100 ms, and reads /proc only
//! at the edges of the idle window, so on a 2-core machine it takes little
//! from what it measures.

mod inproc;
mod procs;
mod scenarios;
mod server;
mod stats;

use std::fs::File;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;
use serde_json::json;

use crate::server::Server;
use crate::stats::Figure;

/// Set by SIGINT: every wait loop checks it and the benchmark cleans up.
static ABORT: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// The terminal's stderr, kept aside while fd 2 goes to the runner log.
static PROGRESS: OnceLock<Mutex<File>> = OnceLock::new();

pub fn check_abort() -> anyhow::Result<()> {
    if ABORT.get().is_some_and(|f| f.load(Ordering::Relaxed)) {
        anyhow::bail!("interrupted");
    }
    Ok(())
}

/// A progress line for the person waiting (never part of the results).
pub fn say(message: &str) {
    match PROGRESS.get().and_then(|p| p.lock().ok()) {
        Some(mut out) => {
            let _ = writeln!(out, "bench: {message}");
        }
        None => eprintln!("bench: {message}"),
    }
}

/// What the command line asked for.
pub struct Options {
    pub quick: bool,
    pub json: Option<PathBuf>,
    pub keep: bool,
    pub manage: Option<PathBuf>,
    /// Scenario numbers to run (all when empty).
    pub only: Vec<u32>,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut options = Options {
        quick: false,
        json: None,
        keep: false,
        manage: None,
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--keep" => options.keep = true,
            "--json" => {
                options.json = Some(args.next().context("--json needs a PATH")?.into());
            }
            "--manage" => {
                options.manage = Some(args.next().context("--manage needs a PATH")?.into());
            }
            "--only" => {
                let list = args.next().context("--only needs a list such as 1,3")?;
                for n in list.split(',') {
                    options.only.push(
                        n.trim()
                            .parse()
                            .with_context(|| format!("--only: {n:?} is not a number"))?,
                    );
                }
            }
            "-h" | "--help" => {
                println!(
                    "manage-bench: the benchmark of manage\n\n\
                     usage: cargo run --release -p manage-bench -- [--quick] [--json PATH] [--keep] [--only 1,2,..] [--manage PATH]\n\n\
                     --quick        a short smoke run (fewer repetitions, smaller data)\n\
                     --json PATH    also write the JSON document to PATH\n\
                     --keep         leave the database (or embedded cluster) and work directory behind\n\
                     --only LIST    run only these scenarios (1 start-up, 2 idle, 3 trigger, 4 due, 5 throughput, 6 scale, 7 peers: pg_cron, 8 failover, 9 web page, 10 fleet, 11 cron fleet)\n\
                     --manage PATH  the manage binary (default: next to this executable)\n\n\
                     With DATABASE_URL set it creates (and drops) a database manage_bench_<pid> on that\n\
                     server; otherwise it runs the embedded cluster in a private temporary MANAGE_DATA_DIR."
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}; see --help"),
        }
    }
    Ok(options)
}

/// The `manage` binary: built first when we run under cargo, so that the
/// figures are of the same source as the library we link.
fn locate_manage(options: &Options) -> anyhow::Result<PathBuf> {
    if let Some(path) = &options.manage {
        return Ok(path.clone());
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let mut build = std::process::Command::new(cargo);
        // What `cargo run` sets for us would make this inner build look
        // different to cargo (build scripts rerun, crates rebuild, and the next
        // outer build rebuilds them again).
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "LD_LIBRARY_PATH",
                    "RUST_RECURSION_COUNT",
                ]
                .contains(&name)
            {
                build.env_remove(name);
            }
        }
        build
            .args(["build", "--quiet", "-p", "manage", "--bin", "manage"])
            .arg("--manifest-path")
            .arg(&manifest);
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        say("building the manage binary");
        let status = build.status().context("running cargo build")?;
        if !status.success() {
            anyhow::bail!("cargo build of the manage binary failed");
        }
    }
    let exe = std::env::current_exe().context("finding our own executable")?;
    let path = exe
        .parent()
        .context("our executable has no directory")?
        .join("manage");
    if !path.is_file() {
        anyhow::bail!(
            "no manage binary at {}: build it with `cargo build --release` or pass --manage PATH",
            path.display()
        );
    }
    Ok(path)
}

/// Point fd 2 at `log` (the in-process runners write their log lines to
/// stderr) and keep the terminal for progress lines.
fn redirect_stderr(log: &Path) -> anyhow::Result<()> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    // SAFETY: dup and dup2 on descriptors we own; the duplicate becomes a File
    // that owns it from here on.
    #[allow(unsafe_code)]
    unsafe {
        let saved = libc::dup(2);
        if saved < 0 {
            anyhow::bail!("dup(2): {}", std::io::Error::last_os_error());
        }
        if libc::dup2(file.as_raw_fd(), 2) < 0 {
            anyhow::bail!("dup2: {}", std::io::Error::last_os_error());
        }
        let _ = PROGRESS.set(Mutex::new(File::from_raw_fd(saved)));
    }
    Ok(())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn machine(server: &Server) -> serde_json::Value {
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem_kib = procs::status_field(&read("/proc/meminfo"), "MemTotal").unwrap_or(0);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let commit = std::process::Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_mib": mem_kib / 1024,
        "cpu": cpu,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "postgresql": server.version,
        "database": if server.is_embedded() { "embedded (private MANAGE_DATA_DIR, Unix socket)" } else { "external (DATABASE_URL)" },
        "commit": commit,
    })
}

/// The command that reproduces these figures (`--json`, `--keep` aside).
fn command_line(options: &Options) -> String {
    let mut command = String::from("cargo run --release -p manage-bench");
    let mut args = Vec::new();
    if !options.only.is_empty() {
        let list: Vec<String> = options.only.iter().map(u32::to_string).collect();
        args.push(format!("--only {}", list.join(",")));
    }
    if options.quick {
        args.push("--quick".into());
    }
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    command
}

fn main() {
    if let Err(e) = run() {
        say(&format!("error: {e:#}"));
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let options = parse_args()?;
    let abort = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&abort))
        .context("installing the SIGINT handler")?;
    let _ = ABORT.set(abort);
    if cfg!(debug_assertions) {
        say("warning: a debug build; the figures mean little (use --release)");
    }
    let manage = locate_manage(&options)?;

    let work = std::env::temp_dir().join(format!("manage-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let runner_log = work.join("runner.log");
    say(&format!(
        "work directory {}; in-process runner log {}",
        work.display(),
        runner_log.display()
    ));
    redirect_stderr(&runner_log)?;

    say("setting up the database");
    let mut server = Server::create(&work, options.keep)?;
    let started = std::time::Instant::now();
    let mut bench = scenarios::Bench {
        quick: options.quick,
        work: work.clone(),
        server,
        manage,
        figures: Vec::new(),
        notes: Vec::new(),
    };
    let result = scenarios::run_all(&mut bench, &options.only);
    server = bench.server;
    let figures: Vec<Figure> = bench.figures;
    let notes = bench.notes;

    let document = json!({
        "benchmark": "manage-bench",
        "quick": options.quick,
        "command": command_line(&options),
        "finished_at": chrono::Utc::now().to_rfc3339(),
        "duration_seconds": started.elapsed().as_secs_f64().round(),
        "machine": machine(&server),
        "figures": figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
        "notes": notes,
    });
    if options.keep {
        say(&format!(
            "--keep: the database stays ({}); work directory {}",
            server.url,
            work.display()
        ));
    }
    let cleanup = server.cleanup();
    // On failure the work directory (and its logs) stays for a post-mortem.
    if !options.keep && result.is_ok() && cleanup.is_ok() {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        say(&format!("work directory kept: {}", work.display()));
    }

    println!("{}", stats::table(&figures));
    for note in &notes {
        println!("- {note}");
    }
    println!();
    let text = serde_json::to_string_pretty(&document)?;
    println!("{text}");
    if let Some(path) = &options.json {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        say(&format!("JSON written to {}", path.display()));
    }
    result?;
    cleanup?;
    Ok(())
}
