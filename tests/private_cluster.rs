//! A PostgreSQL cluster of one's own, for the fault tests that stop and
//! restart the database: never the shared test cluster, so that restarting it
//! cannot break unrelated tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::harness::{
    as_server_user, chown, find_pg_bin, init_cluster, is_root, unprivileged_user,
};

static SERIAL: AtomicU32 = AtomicU32::new(0);

pub struct PrivateCluster {
    dir: PathBuf,
    data: PathBuf,
    /// conninfo of the cluster's `postgres` database (over its Unix socket).
    pub url: String,
    /// The port: of the socket's name, and of 127.0.0.1 when it listens there.
    pub port: u16,
    /// Server options beyond the socket and the speed-ups.
    options: String,
}

impl PrivateCluster {
    pub fn new() -> PrivateCluster {
        crate::harness::keep_orphans_unreaped();
        let cluster = PrivateCluster::init(5432, "-c listen_addresses=".into());
        cluster.start();
        cluster
    }

    /// A cluster that also listens on 127.0.0.1 (a free port) with TLS, using
    /// `cert`'s certificate and key, and whose database `tls_only` can only be
    /// reached over TLS — so a connection to it proves that TLS was used, and
    /// one that is refused proves that it was not.
    pub fn with_tls(cert: &crate::smtp::TestCert) -> PrivateCluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut cluster = PrivateCluster::init(port, String::new());
        let (crt, key) = (
            cluster.dir.join("server.crt"),
            cluster.dir.join("server.key"),
        );
        std::fs::copy(&cert.cert_file, &crt).unwrap();
        std::fs::copy(&cert.key_file, &key).unwrap();
        // PostgreSQL refuses a key that others can read.
        let owner_only =
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
        std::fs::set_permissions(&key, owner_only).unwrap();
        if is_root() {
            let (uid, gid) = unprivileged_user().unwrap();
            chown(&crt, uid, gid);
            chown(&key, uid, gid);
        }
        std::fs::write(
            cluster.data.join("pg_hba.conf"),
            "local     all      all                trust\n\
             hostssl   tls_only all 127.0.0.1/32   trust\n\
             hostnossl tls_only all 127.0.0.1/32   reject\n\
             host      all      all 127.0.0.1/32   trust\n",
        )
        .unwrap();
        cluster.options = format!(
            "-c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            crt.display(),
            key.display()
        );
        cluster.start();
        cluster
            .client()
            .batch_execute("CREATE DATABASE tls_only")
            .unwrap();
        cluster
    }

    fn init(port: u16, options: String) -> PrivateCluster {
        // Short: the socket path must fit in 107 bytes.
        let dir = std::env::temp_dir().join(format!(
            "manage-fault-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::SeqCst)
        ));
        let data = init_cluster(&dir).unwrap();
        PrivateCluster {
            url: format!(
                "host={} port={port} user=postgres dbname=postgres",
                dir.display()
            ),
            dir,
            data,
            port,
            options,
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        // The speed-ups first: a cluster's own options (a replicated pair's
        // synchronous_commit) come later and win.
        let options = format!(
            "-k {} -p {} -c fsync=off -c synchronous_commit=off {}",
            self.dir.display(),
            self.port,
            self.options
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

    /// A conninfo over TCP to 127.0.0.1 (a cluster that listens there).
    pub fn tcp_url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stop at once, as a crash would: no shutdown checkpoint, no goodbye
    /// to the clients (`pg_ctl stop -m immediate`).
    pub fn crash(&self) {
        self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
    }

    /// Promote a standby and wait until it accepts writes.
    pub fn promote(&self) {
        self.pg_ctl(&["-w", "promote"]);
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
        crate::harness::forget_client(&self.url);
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

/// A free TCP port on 127.0.0.1 (free a moment ago).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A primary and a streaming standby of it, both on 127.0.0.1: the standby
/// made by `pg_basebackup -R` from the running primary, so that it follows
/// it as any replica would (§19's failover, for real).
pub struct ReplicatedPair {
    pub primary: PrivateCluster,
    pub standby: PrivateCluster,
}

impl ReplicatedPair {
    /// With `synchronous`, the primary waits for the standby at every commit
    /// (`synchronous_standby_names = '*'`, `synchronous_commit = on`). Either
    /// way the primary's own commits are flushed before they are answered
    /// (`synchronous_commit = on`), as in production: what the standby lacks
    /// is then only what replication had not sent yet.
    pub fn new(synchronous: bool) -> ReplicatedPair {
        crate::harness::keep_orphans_unreaped();
        let listen = "-c listen_addresses=127.0.0.1 -c synchronous_commit=on -c wal_sender_timeout=5s -c wal_receiver_status_interval=1s";
        let mut options = listen.to_string();
        if synchronous {
            options.push_str(" -c synchronous_standby_names=*");
        }
        let primary = PrivateCluster::init(free_port(), options);
        primary.start();
        let standby_port = free_port();
        let mut standby = PrivateCluster::init(standby_port, listen.to_string());
        // Not initdb's cluster but a copy of the primary's.
        std::fs::remove_dir_all(&standby.data).unwrap();
        let out = as_server_user(
            Command::new(find_pg_bin("pg_basebackup"))
                .arg("-D")
                .arg(&standby.data)
                .args([
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                ])
                .arg("-p")
                .arg(primary.port.to_string()),
        )
        .current_dir(&standby.dir)
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        standby.options = listen.to_string();
        standby.start();
        let pair = ReplicatedPair { primary, standby };
        crate::harness::wait_for(
            std::time::Duration::from_secs(20),
            "the standby to stream from the primary",
            || {
                pair.primary
                    .value("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                    == "1"
            },
        );
        pair
    }

    /// Both hosts, primary first, as an application would list them.
    pub fn url(&self, parameters: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?{parameters}",
            self.primary.port, self.standby.port
        )
    }
}
