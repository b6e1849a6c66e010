//! Connecting to PostgreSQL: the configured database, or else the embedded
//! default cluster (see `embedded`). Also where database errors are turned into
//! the one line a user reads.

pub mod embedded;
pub mod migrate;
pub mod socket;
pub mod tls;

use anyhow::Context;
use postgres::Client;

use crate::config::Config;

/// `application_name` of every connection `manage` makes, unless it says otherwise.
pub const APPLICATION_NAME: &str = "manage";

/// Where the connection went, for messages and for child processes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A configured URL (`--database-url`, `DATABASE_URL`, `database_url`).
    Url(String),
    /// The embedded default cluster.
    Embedded(embedded::Embedded),
}

impl Target {
    /// The line a program prints once per invocation about where its
    /// database is: for the embedded cluster only (§10). This module never
    /// prints; the CLI and the runner's log do.
    pub fn notice(&self) -> Option<String> {
        match self {
            Target::Url(_) => None,
            Target::Embedded(cluster) => Some(cluster.describe()),
        }
    }

    /// How to open more connections to the same database: the conninfo
    /// and its TLS settings (`sslmode`, `sslrootcert`).
    pub fn connection_config(&self) -> anyhow::Result<(postgres::Config, tls::Tls)> {
        match self {
            Target::Url(url) => {
                tls::parse(url).map_err(|e| anyhow::anyhow!("the database URL is not valid: {e}"))
            }
            Target::Embedded(cluster) => Ok((cluster.connection_config(), tls::Tls::disabled())),
        }
    }

    /// The `DATABASE_URL` a child `manage NAME` is given, so that it reaches
    /// the same database without looking for (or announcing) the embedded one.
    pub fn url_for_children(&self) -> String {
        match self {
            Target::Url(url) => url.clone(),
            Target::Embedded(cluster) => format!(
                "host={} port={} user={} dbname={}",
                cluster.socket_dir.display(),
                embedded::PORT,
                embedded::DB_USER,
                embedded::DB_NAME
            ),
        }
    }

    /// Open another connection with this application name.
    pub fn connect(&self, application_name: &str) -> anyhow::Result<Client> {
        let (config, tls) = self.connection_config()?;
        connect_config(config, &tls, application_name)
            .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))
    }

    /// A connection whose notices go to `notices`, each as one line (an
    /// SQL job's output, §12).
    pub fn connect_with_notices(
        &self,
        application_name: &str,
        notices: NoticeSink,
    ) -> anyhow::Result<Client> {
        let (mut config, tls) = self.connection_config()?;
        config.notice_callback(move |notice| notices(notice_line(&notice)));
        connect_config(config, &tls, application_name)
            .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))
    }
}

/// A way to cancel what a connection runs, from another thread.
pub struct Canceller {
    token: postgres::CancelToken,
    config: postgres::Config,
    tls: tls::Tls,
}

impl Canceller {
    pub fn new(target: &Target, client: &Client) -> anyhow::Result<Canceller> {
        let (config, tls) = target.connection_config()?;
        Ok(Canceller {
            token: client.cancel_token(),
            config,
            tls,
        })
    }

    /// Cancel the statement in flight (best effort: an error is one line).
    pub fn cancel(&self) -> Result<(), String> {
        tls::cancel(&self.token, &self.config, &self.tls)
    }
}

/// Where a connection's notices go, one `SEVERITY: message` line each.
pub type NoticeSink = std::sync::Arc<dyn Fn(String) + Send + Sync>;

/// A notice as an SQL job's output shows it (§12): `NOTICE: message`.
pub fn notice_line(notice: &postgres::error::DbError) -> String {
    format!("{}: {}", severity(notice), notice.message())
}

/// The severity in English whatever the server's `lc_messages` (the
/// non-localised field, sent since PostgreSQL 9.6), else as sent.
fn severity(error: &postgres::error::DbError) -> String {
    error
        .parsed_severity()
        .map_or_else(|| error.severity().to_string(), |s| s.to_string())
}

/// An SQL error as an SQL job's output ends (§12): `ERROR: message`, then
/// `DETAIL: …` and `HINT: …` lines when the server sent them. An error with
/// no server message (a lost connection) is one `ERROR:` line too.
pub fn error_lines(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", severity(db), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("\nDETAIL: {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("\nHINT: {hint}"));
            }
            text
        }
        None => format!("ERROR: {}", describe_error(error)),
    }
}

/// The statement was cancelled: by `statement_timeout` in an SQL job.
pub fn is_query_canceled(error: &postgres::Error) -> bool {
    error.code() == Some(&postgres::error::SqlState::QUERY_CANCELED)
}

/// Connect as `application_name`. With no database configured this starts (or
/// creates) the embedded cluster; [`Target::notice`] is what to say about it.
pub fn connect(config: &Config, application_name: &str) -> anyhow::Result<(Client, Target)> {
    match &config.database_url {
        Some(url) => {
            let client = connect_url(url, application_name)?;
            Ok((client, Target::Url(url.clone())))
        }
        None => {
            let dir = embedded::data_dir_from_env();
            let cluster = embedded::ensure_running(&dir)?;
            // The fast path costs one connection and no process: only when it
            // fails do we ask pg_ctl to start the server.
            // A socket: no TLS (see tls.rs).
            let plain = tls::Tls::disabled();
            let (client, cluster) =
                match connect_config(cluster.connection_config(), &plain, application_name) {
                    Ok(client) => (client, cluster),
                    Err(_) => {
                        let cluster = embedded::start(&dir)?;
                        let client =
                            connect_config(cluster.connection_config(), &plain, application_name)
                                .map_err(|e| {
                                anyhow::anyhow!(
                                    "cannot connect to the embedded database in {}: {e}",
                                    cluster.pg_dir.display()
                                )
                            })?;
                        (client, cluster)
                    }
                };
            Ok((client, Target::Embedded(cluster)))
        }
    }
}

/// Connect to a URL; the error names the host and database, never the password.
pub fn connect_url(url: &str, application_name: &str) -> anyhow::Result<Client> {
    let (config, tls) = tls::parse(url)
        .map_err(|e| crate::error::BadInput::new(format!("the database URL is not valid: {e}")))?;
    let place = describe_target(&config);
    connect_config(config, &tls, application_name)
        .map_err(|e| anyhow::anyhow!("cannot connect to the database {place}: {e}"))
}

/// Connect; the error is the one line of [`describe_error`] (or of TLS set-up).
fn connect_config(
    mut config: postgres::Config,
    tls: &tls::Tls,
    application_name: &str,
) -> Result<Client, String> {
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    notice_silence(&mut config);
    tls::connect(&config, tls)
}

/// A database that stops answering without an error must count as lost
/// (§17): on every connection, keepalive probes after 5 s of silence (every
/// 2 s, 3 of them) and a TCP user timeout of 10 s on unacknowledged data, so
/// the kernel ends a dead connection well within the runner's 20 s cut-off.
/// What the URL sets itself (`keepalives_idle`, `tcp_user_timeout`, …) stays.
/// A peer that acknowledges but never answers (a frozen proxy) is the
/// runner's guard's to handle; no socket option can tell.
fn notice_silence(config: &mut postgres::Config) {
    use std::time::Duration;
    /// tokio-postgres's default idle time: the URL did not choose one.
    const LIBRARY_DEFAULT_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
    if !config.get_keepalives() {
        return;
    }
    if config.get_keepalives_idle() == LIBRARY_DEFAULT_IDLE {
        config.keepalives_idle(Duration::from_secs(5));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(2));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(10));
    }
}

/// `host:port/dbname`, without user or password.
fn describe_target(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("(default)")
    )
}

/// One line for a database error: the server's message when there is one.
pub fn describe_error(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text.replace('\n', " ")
        }
    }
}

/// Apply migrations and sync the registry in one transaction under the
/// migration lock; returns (migrations applied, sync lines). The sync lines
/// are audited in `actor`'s name.
pub fn migrate_and_sync(
    client: &mut Client,
    registry: &crate::registry::Registry,
    config: &Config,
    actor: &crate::ops::Actor,
) -> anyhow::Result<(Vec<&'static str>, Vec<String>)> {
    let mut tx = client
        .transaction()
        .context("starting the migration transaction")?;
    let applied = migrate::apply(&mut tx)?;
    let lines = crate::registry::sync(&mut tx, registry, config.timezone, actor)?;
    if !lines.is_empty() {
        crate::store::notify_runners(&mut tx)?;
    }
    tx.commit().context("committing migrations")?;
    Ok((applied, lines))
}
