//! A PostgreSQL cluster of one's own, for the fault tests that stop and
//! restart the database: never the shared test cluster, so that restarting it
//! cannot break unrelated tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::harness::{as_server_user, find_pg_bin, init_cluster};

static SERIAL: AtomicU32 = AtomicU32::new(0);

pub struct PrivateCluster {
    dir: PathBuf,
    data: PathBuf,
    /// conninfo of the cluster's `postgres` database.
    pub url: String,
}

impl PrivateCluster {
    pub fn new() -> PrivateCluster {
        // Short: the socket path must fit in 107 bytes.
        let dir = std::env::temp_dir().join(format!(
            "manage-fault-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::SeqCst)
        ));
        let data = init_cluster(&dir).unwrap();
        let cluster = PrivateCluster {
            url: format!(
                "host={} port=5432 user=postgres dbname=postgres",
                dir.display()
            ),
            dir,
            data,
        };
        cluster.start();
        cluster
    }

    fn pg_ctl(&self, args: &[&str]) {
        let options = format!(
            "-k {} -c listen_addresses= -c fsync=off -c synchronous_commit=off",
            self.dir.display()
        );
        let out = as_server_user(
            Command::new(find_pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .arg("-o")
                .arg(options)
                .args(args),
        )
        .current_dir(&self.dir)
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        self.pg_ctl(&["-w", "start"]);
    }

    pub fn stop(&self) {
        self.pg_ctl(&["-w", "-m", "fast", "stop"]);
    }

    pub fn restart(&self) {
        self.pg_ctl(&["-w", "-m", "fast", "restart"]);
    }

    /// The directory of its Unix socket (the `host=` of a conninfo).
    pub fn socket_dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Refuse (or accept again) writes, as a standby (or a promoted one) does.
    pub fn set_read_only(&self, read_only: bool) {
        let sql = if read_only {
            "ALTER SYSTEM SET default_transaction_read_only = on"
        } else {
            "ALTER SYSTEM RESET default_transaction_read_only"
        };
        let mut client = self.client();
        client.batch_execute(sql).unwrap();
        client.batch_execute("SELECT pg_reload_conf()").unwrap();
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).unwrap()
    }

    pub fn value(&self, sql: &str) -> String {
        let mut client = self.client();
        for message in client.simple_query(sql).unwrap() {
            if let postgres::SimpleQueryMessage::Row(row) = message {
                return row.get(0).unwrap_or("NULL").to_string();
            }
        }
        panic!("no row from {sql}")
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = as_server_user(
            Command::new(find_pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-w", "-m", "immediate", "stop"]),
        )
        .current_dir(&self.dir)
        .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
