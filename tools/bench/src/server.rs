//! The database the benchmark runs against, made for the occasion and removed
//! afterwards: with `DATABASE_URL` a fresh database `manage_bench_<pid>` on
//! that server; otherwise the embedded default cluster under a private
//! `MANAGE_DATA_DIR` in the work directory, so a user's own cluster is never
//! touched. Every scenario starts from an empty `manage` schema.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use postgres::{Client, NoTls};

use manage::config::{Config, Sources};
use manage::registry::Registry;

pub enum Kind {
    /// A database created on the server `DATABASE_URL` names.
    External { admin_url: String, dbname: String },
    /// The embedded cluster in this data directory.
    Embedded { data_dir: PathBuf },
}

pub struct Server {
    pub kind: Kind,
    /// What `manage` is given as `DATABASE_URL`.
    pub url: String,
    pub version: String,
    cleaned: bool,
    pub keep: bool,
}

impl Server {
    /// Make the database. `work` is the benchmark's private directory.
    pub fn create(work: &Path, keep: bool) -> anyhow::Result<Server> {
        let (kind, url) = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
            Some(admin_url) => {
                let dbname = format!("manage_bench_{}", std::process::id());
                let mut admin = connect(&admin_url).context("connecting to DATABASE_URL")?;
                admin
                    .batch_execute(&format!("CREATE DATABASE {dbname}"))
                    .with_context(|| format!("creating the database {dbname}"))?;
                let url = with_dbname(&admin_url, &dbname)?;
                (Kind::External { admin_url, dbname }, url)
            }
            None => return Server::embedded(work.join("data"), keep),
        };
        Server::finish(kind, url, keep)
    }

    /// An embedded cluster of our own in `data_dir` (stopped at cleanup).
    pub fn embedded(data_dir: PathBuf, keep: bool) -> anyhow::Result<Server> {
        let cluster =
            manage::db::embedded::start(&data_dir).context("creating the embedded cluster")?;
        let url = manage::db::Target::Embedded(cluster).url_for_children();
        Server::finish(Kind::Embedded { data_dir }, url, keep)
    }

    /// Stop and start an embedded cluster again (for settings that need it).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if let Kind::Embedded { data_dir } = &self.kind {
            manage::db::embedded::stop(data_dir).context("stopping the cluster")?;
            let cluster = manage::db::embedded::start(data_dir).context("starting the cluster")?;
            self.url = manage::db::Target::Embedded(cluster).url_for_children();
        }
        Ok(())
    }

    fn finish(kind: Kind, url: String, keep: bool) -> anyhow::Result<Server> {
        let mut server = Server {
            kind,
            url,
            version: String::new(),
            cleaned: false,
            keep,
        };
        let mut client = server.connect()?;
        server.version = client
            .query_one("SHOW server_version", &[])?
            .try_get::<_, String>(0)?;
        Ok(server)
    }

    pub fn is_embedded(&self) -> bool {
        matches!(self.kind, Kind::Embedded { .. })
    }

    pub fn data_dir(&self) -> Option<&Path> {
        match &self.kind {
            Kind::Embedded { data_dir } => Some(data_dir),
            Kind::External { .. } => None,
        }
    }

    pub fn connect(&self) -> anyhow::Result<Client> {
        connect(&self.url)
    }

    /// An empty database: the `manage` schema dropped, migrated afresh and the
    /// registry synced into it (jobs created and scheduled).
    pub fn reset(&self, config: &Config, registry: &Registry) -> anyhow::Result<Client> {
        let mut client = self.connect()?;
        client
            .batch_execute(
                "DROP SCHEMA IF EXISTS manage CASCADE; DROP TABLE IF EXISTS public.bench_due;",
            )
            .context("dropping the manage schema")?;
        manage::db::migrate_and_sync(&mut client, registry, config, &manage::ops::Actor::cli())
            .context("migrating and syncing")?;
        Ok(client)
    }

    /// The configuration `manage` would load with this file (or none) and
    /// this database; the time zone is UTC so that `times` are easy to write.
    pub fn config(
        &self,
        file: Option<&Path>,
        cwd: &Path,
        builtins: &manage::config::BuiltinJobs,
    ) -> anyhow::Result<Config> {
        let mut env = std::collections::BTreeMap::new();
        env.insert("DATABASE_URL".to_string(), self.url.clone().into());
        env.insert("MANAGE_TIMEZONE".to_string(), "UTC".into());
        let sources = Sources {
            config_path: file.map(Path::to_path_buf),
            env,
            cwd: cwd.to_path_buf(),
        };
        Config::load(&sources, builtins, &manage::cli::command_names())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Drop the database or stop the cluster (unless `--keep`).
    pub fn cleanup(&mut self) -> anyhow::Result<()> {
        if self.cleaned || self.keep {
            return Ok(());
        }
        self.cleaned = true;
        match &self.kind {
            Kind::External { admin_url, dbname } => {
                let mut admin = connect(admin_url)?;
                // In-process runners leave their LISTEN connections behind.
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"))
                    .with_context(|| format!("dropping the database {dbname}"))?;
            }
            Kind::Embedded { data_dir } => {
                manage::db::embedded::stop(data_dir).context("stopping the embedded cluster")?;
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("bench: cleanup failed: {e:#}");
        }
    }
}

pub fn connect(url: &str) -> anyhow::Result<Client> {
    let mut config: postgres::Config = url.parse().context("parsing the database URL")?;
    config.application_name("manage-bench");
    config
        .connect(NoTls)
        .with_context(|| "connecting to the benchmark database".to_string())
}

/// The same server, another database: a URL gets a new path, a `key=value`
/// connection string a trailing `dbname=` (the last one wins).
fn with_dbname(url: &str, dbname: &str) -> anyhow::Result<String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut parsed = url::Url::parse(url).context("parsing DATABASE_URL")?;
        parsed.set_path(&format!("/{dbname}"));
        Ok(parsed.to_string())
    } else {
        Ok(format!("{url} dbname={dbname}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_on_the_same_server() {
        assert_eq!(
            with_dbname("postgres://u:p@h:5433/app?sslmode=disable", "b").expect("url"),
            "postgres://u:p@h:5433/b?sslmode=disable"
        );
        assert_eq!(
            with_dbname("host=/tmp user=u dbname=app", "b").expect("conninfo"),
            "host=/tmp user=u dbname=app dbname=b"
        );
    }
}
