//! Scenario 9: the web page (§23) — 1,000 jobs and 1,000,000 runs (the data
//! of scenario 6), 10,000 audit rows, and `manage web` serving every page:
//! each timed from the request to the last byte of the answer on a fresh
//! connection, the median of several requests. The target is 50 ms a page.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use manage::registry::Registry;

use super::Bench;
use crate::inproc;
use crate::stats::{Figure, Target};

/// One GET on a fresh connection: (ms to the last byte, status, body bytes).
fn get(address: &str, path: &str) -> anyhow::Result<(f64, u16, usize)> {
    let start = Instant::now();
    let mut stream =
        TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(64)]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in {head:?}"))?;
    Ok((ms, status, answer.len()))
}

fn free_address() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.to_string())
}

pub fn run(bench: &mut Bench) -> anyhow::Result<()> {
    let jobs = bench.pick(1_000, 1_000) as i64;
    let runs = bench.pick(1_000_000, 100_000) as i64;
    let config = bench
        .server
        .config(None, &bench.work, &inproc::builtin_jobs(&[]))?;
    let registry = Registry::new(Some(&config));
    let mut client = bench.server.reset(&config, &registry)?;
    super::scale::write_jobs_and_runs(bench, &mut client, jobs, runs)?;
    client.execute(
        "INSERT INTO manage.audit (at, actor, action, job, details) \
         SELECT now() - make_interval(secs => i), 'cli:bench@host', 'configure', \
                format('scale_job_%s', lpad((1 + i % $1::bigint)::text, 5, '0')), \
                'retries: 0 → 1' \
         FROM generate_series(1, 10000) i",
        &[&jobs],
    )?;
    client.batch_execute("VACUUM ANALYZE manage.audit")?;
    let run_id: i64 = client
        .query_one("SELECT max(id) FROM manage.runs", &[])?
        .try_get(0)?;

    let address = free_address()?;
    let mut web = bench
        .manage(None)
        .command(&["web", "--listen", &address])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting manage web")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(&address).is_err() {
        if Instant::now() > deadline {
            let _ = web.kill();
            anyhow::bail!("manage web did not listen on {address}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let reps = bench.pick(15, 5);
    let pages = [
        ("web.front", "/".to_string()),
        ("web.front_q", "/?q=scale_job_0004".to_string()),
        ("web.front_failed", "/?state=failed".to_string()),
        ("web.job", "/jobs/scale_job_00042".to_string()),
        (
            "web.job_page_20",
            "/jobs/scale_job_00042?page=20".to_string(),
        ),
        ("web.runs", "/runs".to_string()),
        ("web.runs_page_200", "/runs?page=200".to_string()),
        ("web.runs_failed", "/runs?state=failed".to_string()),
        ("web.runs_running", "/runs?state=running".to_string()),
        (
            "web.runs_job_failed",
            "/runs?job=scale_job_00042&state=failed".to_string(),
        ),
        ("web.run", format!("/runs/{run_id}")),
        ("web.audit", "/audit".to_string()),
        ("web.audit_job", "/audit?job=scale_job_00042".to_string()),
        ("web.api_jobs", "/api/jobs".to_string()),
        ("web.healthz", "/healthz".to_string()),
        ("web.metrics", "/metrics".to_string()),
    ];
    let result = (|| -> anyhow::Result<()> {
        for (key, path) in &pages {
            // Two untimed: the pool's connections, the caches.
            let (_, status, bytes) = get(&address, path)?;
            anyhow::ensure!(
                status == 200 || (*key == "web.healthz" && status == 503),
                "GET {path}: HTTP {status}"
            );
            get(&address, path)?;
            let mut samples = Vec::with_capacity(reps);
            for _ in 0..reps {
                samples.push(get(&address, path)?.0);
            }
            bench.push(
                Figure::distribution(key, &format!("GET {path}"), "ms", &samples)
                    .target(Target::at_most(50.0, "median"))
                    .note(format!(
                        "{jobs} jobs, {runs} runs, 10000 audit rows; to the last byte of {bytes} bytes"
                    )),
            );
        }
        Ok(())
    })();
    let _ = web.kill();
    let _ = web.wait();
    result
}
