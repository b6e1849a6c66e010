//! §19's poolers, with a real PgBouncer in front of a private cluster: the
//! runner refuses transaction pooling (it needs LISTEN and a session lock),
//! the CLI works through it, `MANAGE_RUNNER_DATABASE_URL` lets the runner go
//! round it, and session pooling is fine for everyone. Skipped, with a note,
//! where there is no `pgbouncer` binary (CI installs Debian's package).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use crate::harness::{as_server_user, chown, is_root, runs, unprivileged_user, wait_for, Manage};
use crate::private_cluster::{free_port, PrivateCluster};

const CONFIG: &str =
    "[runner]\nheartbeat = \"00:01\"\ncut_off = \"00:02\"\ndead_after = \"00:03\"\n\
    [jobs.tick]\ncommand = \"echo tick\"\ninterval = \"00:01\"\n\
    [jobs.by_hand]\ncommand = \"echo by hand\"\n";

const NEEDS_A_SESSION: &str = "error: the runner needs a session of its own (LISTEN and a session lock): connect it directly or through session pooling";

/// A PgBouncer on 127.0.0.1 in front of `cluster`, with trust
/// authentication; stopped when dropped.
struct Pgbouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn pgbouncer_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| candidate.is_file())
}

impl Pgbouncer {
    /// None (and a note) when PgBouncer is not installed.
    fn start(cluster: &PrivateCluster, pool_mode: &str) -> Option<Pgbouncer> {
        let Some(binary) = pgbouncer_binary() else {
            eprintln!("skipped: no pgbouncer binary (apt-get install pgbouncer)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // PgBouncer refuses to run as root: as the cluster's user.
        if is_root() {
            let (uid, gid) = unprivileged_user().unwrap();
            chown(dir.path(), uid, gid);
        }
        let port = free_port();
        std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        let ini = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &ini,
            format!(
                "[databases]\n\
                 postgres = host={socket} port={cluster_port} dbname=postgres\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {users}\n\
                 pool_mode = {pool_mode}\n\
                 default_pool_size = 5\n\
                 ignore_startup_parameters = extra_float_digits\n\
                 logfile = {log}\n",
                socket = cluster.socket_dir().display(),
                cluster_port = cluster.port,
                users = dir.path().join("users.txt").display(),
                log = dir.path().join("pgbouncer.log").display(),
            ),
        )
        .unwrap();
        let child = as_server_user(Command::new(binary).arg(&ini))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let bouncer = Pgbouncer {
            child,
            port,
            _dir: dir,
        };
        wait_for(Duration::from_secs(10), "pgbouncer to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(bouncer)
    }

    fn url(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn manage(url: &str) -> Manage {
    Manage::new().env("DATABASE_URL", url).config(CONFIG)
}

fn succeeded_runs(url: &str, job: &str) -> usize {
    runs(url, job)
        .iter()
        .filter(|r| r.state == "succeeded")
        .count()
}

#[test]
fn a_runner_through_transaction_pooling_refuses_to_start() {
    let cluster = PrivateCluster::new();
    let Some(bouncer) = Pgbouncer::start(&cluster, "transaction") else {
        return;
    };
    // Migrations go through it: they need no session of their own.
    manage(&bouncer.url()).arg("migrate").ok();
    let refused = manage(&bouncer.url()).arg("scheduled_jobs_runner").run();
    refused.assert_bad_input(&[]);
    assert_eq!(
        refused.stderr.lines().find(|l| l.starts_with("error: ")),
        Some(NEEDS_A_SESSION),
        "{}",
        refused.stderr
    );
    assert_eq!(
        cluster.value("SELECT count(*) FROM manage.runners"),
        "0",
        "refused before it registered"
    );
}

#[test]
fn the_cli_works_through_transaction_pooling_and_the_runner_goes_round_it() {
    let cluster = PrivateCluster::new();
    let Some(bouncer) = Pgbouncer::start(&cluster, "transaction") else {
        return;
    };
    manage(&bouncer.url()).arg("migrate").ok();
    // The runner's own URL bypasses the pooler everything else uses.
    let runner = manage(&bouncer.url())
        .env("MANAGE_RUNNER_DATABASE_URL", &cluster.url)
        .arg("scheduled_jobs_runner")
        .spawn();
    wait_for(Duration::from_secs(15), "runs", || {
        succeeded_runs(&cluster.url, "tick") >= 2
    });
    for _ in 0..3 {
        let list = manage(&bouncer.url()).args(["jobs", "list"]).run();
        assert_eq!(list.code, 0, "{}{}", list.stdout, list.stderr);
        assert!(list.stdout.contains("tick"), "{}", list.stdout);
        assert!(list.stdout.contains("by_hand"), "{}", list.stdout);
    }
    let status = manage(&bouncer.url())
        .args(["jobs", "list", "--json"])
        .run();
    assert_eq!(status.code, 0, "{}", status.stderr);
    // run-now: the NOTIFY that ends the wait cannot come through a pooler
    // in transaction mode; the wait looks every second instead.
    let started = std::time::Instant::now();
    let run_now = manage(&bouncer.url())
        .args(["jobs", "run-now", "by_hand", "--wait"])
        .run();
    assert_eq!(run_now.code, 0, "{}{}", run_now.stdout, run_now.stderr);
    assert!(run_now.stdout.contains("by hand"), "{}", run_now.stdout);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let plain = manage(&bouncer.url())
        .args(["jobs", "run-now", "by_hand"])
        .run();
    assert_eq!(plain.code, 0, "{}{}", plain.stdout, plain.stderr);
    wait_for(Duration::from_secs(10), "the second by_hand run", || {
        succeeded_runs(&cluster.url, "by_hand") >= 2
    });
    // The web page too.
    let listen = format!("127.0.0.1:{}", free_port());
    let _web = manage(&bouncer.url())
        .args(["web", "--listen", &listen])
        .spawn();
    wait_for(Duration::from_secs(20), "manage web to listen", || {
        std::net::TcpStream::connect(&listen).is_ok()
    });
    for _ in 0..3 {
        let page = crate::web::get(&format!("http://{listen}/"));
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("by_hand"), "{}", page.body);
    }
    runner.stop();
}

#[test]
fn a_runner_through_session_pooling_works() {
    let cluster = PrivateCluster::new();
    let Some(bouncer) = Pgbouncer::start(&cluster, "session") else {
        return;
    };
    let runner = manage(&bouncer.url()).arg("scheduled_jobs_runner").spawn();
    wait_for(Duration::from_secs(15), "runs through the pooler", || {
        runner.log().contains("Runner ") && succeeded_runs(&cluster.url, "tick") >= 2
    });
    let run_now = manage(&bouncer.url())
        .args(["jobs", "run-now", "by_hand", "--wait"])
        .run();
    assert_eq!(run_now.code, 0, "{}{}", run_now.stdout, run_now.stderr);
    runner.stop();
}
