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
        Ok(self.connect_at(application_name)?.0)
    }

    /// Open another connection, and say which server it reached (`HOST`
    /// of the runner's messages, §19: one of several hosts).
    pub fn connect_at(&self, application_name: &str) -> anyhow::Result<(Client, String)> {
        let (config, tls) = self.connection_config()?;
        connect_config(config, &tls, application_name)
            .map_err(|e| e.into_anyhow(|e| format!("cannot connect to the database: {e}")))
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
            .map(|(client, _)| client)
            .map_err(|e| e.into_anyhow(|e| format!("cannot connect to the database: {e}")))
    }
}

/// The server a connection reached is in recovery: a standby, which takes
/// no writes (§19). Only the primary is worth talking to, so this is an
/// error of its own, not a connection with a surprise in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the database at {host} is a read-only standby: list the primary, or add target_session_attrs=read-write")]
pub struct Standby {
    /// `host:port` (or the socket directory) of the server.
    pub host: String,
}

impl Standby {
    /// What the runner logs: for it a standby is a lost connection.
    pub fn runner_line(host: &str) -> String {
        format!("The database at {host} is read-only (a standby); reconnecting")
    }
}

/// A read-only server refused a write (SQLSTATE 25006): the connection's
/// server became, or is, a standby (or refuses writes for another reason).
/// For the runner that is a lost connection, never a job's failure.
pub fn is_read_only(error: &postgres::Error) -> bool {
    error.code() == Some(&postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
}

/// Why a connection was not made.
#[derive(Debug)]
enum ConnectError {
    /// The server is a standby.
    Standby(Standby),
    /// Anything else, as one line.
    Failed(String),
}

impl ConnectError {
    /// As an error for the caller: a standby as itself (its own message and
    /// type), anything else inside `context`.
    fn into_anyhow(self, context: impl FnOnce(String) -> String) -> anyhow::Error {
        match self {
            ConnectError::Standby(standby) => standby.into(),
            ConnectError::Failed(e) => anyhow::anyhow!(context(e)),
        }
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
    let (client, target, _) = connect_at(config, application_name)?;
    Ok((client, target))
}

/// [`connect`], and which server it reached (`host:port`).
pub fn connect_at(
    config: &Config,
    application_name: &str,
) -> anyhow::Result<(Client, Target, String)> {
    match &config.database_url {
        Some(url) => {
            let (client, host) = connect_url_at(url, application_name)?;
            Ok((client, Target::Url(url.clone()), host))
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
                    Ok((client, _)) => (client, cluster),
                    Err(_) => {
                        let cluster = embedded::start(&dir)?;
                        let (client, _) =
                            connect_config(cluster.connection_config(), &plain, application_name)
                                .map_err(|e| {
                                e.into_anyhow(|e| {
                                    format!(
                                        "cannot connect to the embedded database in {}: {e}",
                                        cluster.pg_dir.display()
                                    )
                                })
                            })?;
                        (client, cluster)
                    }
                };
            let host = cluster.socket_dir.display().to_string();
            Ok((client, Target::Embedded(cluster), host))
        }
    }
}

/// Connect to a URL; the error names the host and database, never the password.
pub fn connect_url(url: &str, application_name: &str) -> anyhow::Result<Client> {
    Ok(connect_url_at(url, application_name)?.0)
}

/// [`connect_url`], and which server it reached (`host:port`).
fn connect_url_at(url: &str, application_name: &str) -> anyhow::Result<(Client, String)> {
    let (config, tls) = tls::parse(url)
        .map_err(|e| crate::error::BadInput::new(format!("the database URL is not valid: {e}")))?;
    let place = describe_target(&config);
    connect_config(config, &tls, application_name)
        .map_err(|e| e.into_anyhow(|e| format!("cannot connect to the database {place}: {e}")))
}

/// Connect, to a server that is not in recovery; returns the client and the
/// server it reached. The error is the one line of [`describe_error`] (or of
/// TLS set-up), or [`Standby`].
///
/// Several hosts are the `postgres` crate's to try, in order, as libpq does:
/// each gets its own `connect_timeout` for the TCP connection, so a dead
/// first host costs at most that, and `target_session_attrs=read-write`
/// passes over a host whose sessions are read-only. Which host answered the
/// crate does not say, so the server is asked, in the same round trip as
/// whether it is in recovery.
fn connect_config(
    mut config: postgres::Config,
    tls: &tls::Tls,
    application_name: &str,
) -> Result<(Client, String), ConnectError> {
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    notice_silence(&mut config);
    let mut client = tls::connect(&config, tls).map_err(ConnectError::Failed)?;
    // Simple-query protocol: nothing prepared, so a transaction-mode pooler
    // can hand the next statement to any server.
    let rows = client
        .simple_query(
            "SELECT pg_is_in_recovery()::text, host(inet_server_addr()), inet_server_port()::text",
        )
        .map_err(|e| ConnectError::Failed(describe_error(&e)))?;
    let row = rows.iter().find_map(|message| match message {
        postgres::SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    });
    let in_recovery = row.and_then(|r| r.get(0)) == Some("true");
    let host = server_label(
        &config,
        row.and_then(|r| r.get(1)),
        row.and_then(|r| r.get(2)).and_then(|p| p.parse().ok()),
    );
    if in_recovery {
        return Err(ConnectError::Standby(Standby { host }));
    }
    Ok((client, host))
}

/// `host:port` of the server a connection reached: the configured host when
/// there is one, else the address the server says it was reached at (TCP),
/// else the socket directory with that port, else the list.
fn server_label(config: &postgres::Config, address: Option<&str>, port: Option<u16>) -> String {
    let hosts = config.get_hosts();
    let ports = config.get_ports();
    let port_of = |i: usize| {
        ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432)
    };
    let name = |host: &postgres::config::Host| match host {
        postgres::config::Host::Tcp(h) => h.clone(),
        postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    if let [host] = hosts {
        return format!("{}:{}", name(host), port_of(0));
    }
    if let (Some(address), Some(port)) = (address, port) {
        return format!("{address}:{port}");
    }
    // A Unix socket: the one socket directory with that port, if only one.
    let sockets: Vec<String> = hosts
        .iter()
        .enumerate()
        .filter(|(i, h)| {
            matches!(h, postgres::config::Host::Unix(_)) && port.is_none_or(|p| port_of(*i) == p)
        })
        .map(|(i, h)| format!("{}:{}", name(h), port_of(i)))
        .collect();
    match <[String; 1]>::try_from(sockets) {
        Ok([one]) => one,
        Err(_) => describe_hosts(config),
    }
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

/// `host:port/dbname` (`host1:port1,host2:port2/dbname` for several
/// hosts), without user or password.
fn describe_target(config: &postgres::Config) -> String {
    format!(
        "{}/{}",
        describe_hosts(config),
        config.get_dbname().unwrap_or("(default)")
    )
}

/// Every host with its port: `host1:port1,host2:port2`. A single port is
/// every host's, as in libpq.
fn describe_hosts(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            };
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect::<Vec<_>>()
        .join(",")
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

/// Whether `client` goes through a pooler in transaction mode: its backend
/// is not its own between transactions (§19). The runner needs a session of
/// its own (LISTEN, a session advisory lock), so it asks before anything.
///
/// A backend pid that changes between two transactions says so, but a pooler
/// with one idle server hands the same one back, so a second connection holds
/// a transaction open meanwhile: through such a pooler it is given the
/// server the first just released (or the first is given another), and
/// either way the two see a backend twice. Directly, or through session
/// pooling, each connection keeps its backend and no other gets it.
pub fn shares_its_backend(target: &Target, client: &mut Client) -> anyhow::Result<bool> {
    let first = backend_pid(client)?;
    let mut other = target.connect(APPLICATION_NAME)?;
    other
        .simple_query("BEGIN")
        .context("checking for a connection pooler")?;
    let others = backend_pid(&mut other)?;
    let second = backend_pid(client)?;
    other
        .simple_query("COMMIT")
        .context("checking for a connection pooler")?;
    Ok(first != second || others == first)
}

/// `pg_backend_pid()` by the simple-query protocol (nothing prepared).
fn backend_pid(client: &mut Client) -> anyhow::Result<String> {
    client
        .simple_query("SELECT pg_backend_pid()::text")
        .context("checking for a connection pooler")?
        .iter()
        .find_map(|message| match message {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("checking for a connection pooler: no backend pid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(conninfo: &str) -> postgres::Config {
        tls::parse(conninfo).unwrap().0
    }

    #[test]
    fn every_host_is_named_with_its_port_and_never_the_password() {
        let url =
            config("postgresql://u:secret@db1:5432,db2:5433/app?target_session_attrs=read-write");
        assert_eq!(describe_target(&url), "db1:5432,db2:5433/app");
        let pairs = config("host=db1,db2 port=5433 dbname=app password=secret");
        assert_eq!(describe_target(&pairs), "db1:5433,db2:5433/app");
    }

    #[test]
    fn the_server_reached_is_the_one_host_or_the_address_it_answered_on() {
        let one = config("postgresql://db1:5433/app");
        assert_eq!(server_label(&one, Some("10.0.0.1"), Some(5433)), "db1:5433");
        let two = config("postgresql://db1,db2:5433/app");
        assert_eq!(
            server_label(&two, Some("10.0.0.2"), Some(5433)),
            "10.0.0.2:5433"
        );
        let sockets = config("host=/run/a,/run/b port=5432,5433");
        assert_eq!(server_label(&sockets, None, Some(5433)), "/run/b:5433");
        let same_port = config("host=/run/a,/run/b port=5432");
        assert_eq!(
            server_label(&same_port, None, Some(5432)),
            "/run/a:5432,/run/b:5432"
        );
    }
}
