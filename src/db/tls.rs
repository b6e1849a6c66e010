//! TLS to PostgreSQL: libpq's `sslmode` and `sslrootcert`, over rustls.
//!
//! The `postgres` crate knows only `disable`, `prefer` and `require`, refuses
//! `verify-ca`, `verify-full` and any key it does not know (`sslrootcert`),
//! and verifies nothing itself: that is the TLS connector's job. So the two
//! settings are cut out of the conninfo (URL or `key=value`) before the crate
//! parses the rest, and they decide the connector:
//!
//! | sslmode | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it; without if the handshake fails | not checked |
//! | `require` | always | not checked (checked like `verify-ca` when `sslrootcert` is given, as libpq does) |
//! | `verify-ca` | always | signed by a trusted CA |
//! | `verify-full` | always | signed by a trusted CA and issued for the host name |
//!
//! The trusted CAs are the system's, or those in the `sslrootcert` file
//! (`sslrootcert=system` names the system's explicitly and, as in libpq,
//! makes `verify-full` the default and anything weaker an error).
//!
//! A Unix socket never carries TLS (PostgreSQL refuses it there, and libpq
//! does not ask): when every host is a socket directory the connection is
//! made without a TLS connector at all, so it costs not even the one round
//! trip of asking. The embedded cluster is always such a connection.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use postgres::config::{Host, SslMode as PgSslMode};
use postgres::{Client, NoTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`, the modes it has that mean something over rustls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const NAMES: &'static str = "disable, prefer, require, verify-ca or verify-full";

    fn parse(text: &str) -> Result<SslMode, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode \"{other}\" is not supported: expected {}",
                    SslMode::NAMES
                ))
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        })
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The system's store (rustls-native-certs).
    System,
    /// A PEM file of one or more CA certificates (`sslrootcert=PATH`).
    File(PathBuf),
}

impl fmt::Display for Roots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Roots::System => f.write_str("the system's CA certificates"),
            Roots::File(path) => write!(f, "the CA certificates of {}", path.display()),
        }
    }
}

/// The TLS half of a conninfo.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tls {
    pub mode: SslMode,
    /// `sslrootcert`, when given.
    pub root_cert: Option<Roots>,
}

impl Tls {
    /// No TLS: for the embedded cluster, always on a Unix socket.
    pub fn disabled() -> Tls {
        Tls {
            mode: SslMode::Disable,
            root_cert: None,
        }
    }

    /// What is checked of the server's certificate.
    fn check(&self) -> Check {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Check::ChainAndName,
            (SslMode::VerifyCa, _) => Check::Chain,
            // libpq: "if a root CA file exists, require behaves like verify-ca".
            (SslMode::Require, Some(_)) => Check::Chain,
            _ => Check::Nothing,
        }
    }

    fn roots(&self) -> Roots {
        self.root_cert.clone().unwrap_or(Roots::System)
    }
}

/// Split a conninfo into what `postgres::Config` parses and the TLS settings.
/// The error is one sentence about the conninfo, without its password.
pub fn parse(conninfo: &str) -> Result<(postgres::Config, Tls), String> {
    let (rest, tls) = split(conninfo)?;
    let mut config: postgres::Config = rest
        .parse()
        .map_err(|e: postgres::Error| super::describe_error(&e))?;
    config.ssl_mode(match tls.mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
    });
    Ok((config, tls))
}

/// Cut `sslmode` and `sslrootcert` out of a conninfo, URL or `key=value`;
/// the rest is returned as written, for `postgres::Config` to parse.
fn split(conninfo: &str) -> Result<(String, Tls), String> {
    let is_url = ["postgres://", "postgresql://"]
        .iter()
        .any(|prefix| conninfo.starts_with(prefix));
    let (rest, settings) = if is_url {
        split_url(conninfo)?
    } else {
        split_key_values(conninfo)?
    };
    let mut tls = Tls::default();
    let mut mode = None;
    // Later settings win, as in libpq.
    for (key, value) in settings {
        match key {
            Setting::Mode => mode = Some(SslMode::parse(&value)?),
            Setting::RootCert if value == "system" => tls.root_cert = Some(Roots::System),
            Setting::RootCert => tls.root_cert = Some(Roots::File(PathBuf::from(value))),
        }
    }
    tls.mode = match (mode, &tls.root_cert) {
        // libpq 16: the system's roots are only worth naming for a full check.
        (None, Some(Roots::System)) => SslMode::VerifyFull,
        (Some(weak), Some(Roots::System)) if weak != SslMode::VerifyFull => {
            return Err(
                "sslrootcert=system needs sslmode verify-full (or no sslmode at all)".into(),
            )
        }
        (mode, _) => mode.unwrap_or_default(),
    };
    Ok((rest, tls))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Mode,
    RootCert,
}

fn setting(key: &str) -> Option<Setting> {
    match key {
        "sslmode" => Some(Setting::Mode),
        "sslrootcert" => Some(Setting::RootCert),
        _ => None,
    }
}

/// `postgresql://user:pw@host/db?a=b&sslmode=…`: the query's parameters,
/// percent-encoded, after the first `?` that follows the credentials (a
/// password may hold a `?`, like the `postgres` crate's own parser allows).
fn split_url(url: &str) -> Result<(String, Vec<(Setting, String)>), String> {
    let after_credentials = url.find('@').map_or(0, |at| at + 1);
    let Some(question) = url[after_credentials..].find('?') else {
        return Ok((url.to_string(), Vec::new()));
    };
    let (head, query) = url.split_at(after_credentials + question);
    let decode = |text: &str| {
        percent_decode_str(text)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| format!("the URL parameter \"{text}\" is not valid UTF-8"))
    };
    let mut kept = Vec::new();
    let mut settings = Vec::new();
    for parameter in query[1..].split('&') {
        let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        match setting(&decode(key)?) {
            Some(which) => settings.push((which, decode(value)?)),
            None => kept.push(parameter),
        }
    }
    let rest = if kept.is_empty() {
        head.to_string()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Ok((rest, settings))
}

/// `host=h sslmode='verify-full' …`: libpq's key/value syntax (spaces around
/// `=`, single quotes, backslash escapes). The other pairs are kept as
/// written, byte for byte.
fn split_key_values(conninfo: &str) -> Result<(String, Vec<(Setting, String)>), String> {
    let mut rest = String::with_capacity(conninfo.len());
    let mut settings = Vec::new();
    let mut chars = conninfo.char_indices().peekable();
    let mut kept_from = 0;
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            // Not ours to judge: the `postgres` crate says what is wrong.
            return Ok((conninfo.to_string(), Vec::new()));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut value = String::new();
        let mut closed = !quoted;
        while let Some((_, c)) = chars.next_if(|(_, c)| quoted || !c.is_whitespace()) {
            match c {
                '\'' if quoted => {
                    closed = true;
                    break;
                }
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                c => value.push(c),
            }
        }
        if !closed {
            return Ok((conninfo.to_string(), Vec::new()));
        }
        if let Some(which) = setting(&key) {
            // The pair goes with the blanks after it.
            while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
            rest.push_str(&conninfo[kept_from..start]);
            kept_from = chars.peek().map_or(conninfo.len(), |&(i, _)| i);
            settings.push((which, value));
        }
    }
    rest.push_str(&conninfo[kept_from..]);
    Ok((rest, settings))
}

/// Connect with the TLS the settings ask for. The error is one line.
pub fn connect(config: &postgres::Config, tls: &Tls) -> Result<Client, String> {
    // Its socket noted, so that a silent connection can be closed (§18).
    super::socket::connecting(|| connect_noted(config, tls))
}

fn connect_noted(config: &postgres::Config, tls: &Tls) -> Result<Client, String> {
    let all_sockets = config.get_hostaddrs().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|host| matches!(host, Host::Unix(_)));
    if tls.mode == SslMode::Disable || all_sockets {
        let mut plain = config.clone();
        plain.ssl_mode(PgSslMode::Disable);
        return plain.connect(NoTls).map_err(|e| super::describe_error(&e));
    }
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(tls)?);
    match config.connect(connector) {
        Ok(client) => Ok(client),
        // libpq's prefer: "first try an SSL connection; if that fails, try a
        // non-SSL connection". A server that refuses the handshake (or that
        // rustls cannot talk to) is still reachable in the clear.
        Err(e) if tls.mode == SslMode::Prefer && is_tls_failure(&e) => {
            let mut plain = config.clone();
            plain.ssl_mode(PgSslMode::Disable);
            plain.connect(NoTls).map_err(|e| super::describe_error(&e))
        }
        Err(e) => Err(describe(&e, tls)),
    }
}

/// Cancel the statement a connection is running (an SQL job stopped at
/// shutdown), with the TLS its connection used; best effort, the error is
/// one line.
pub fn cancel(
    token: &postgres::CancelToken,
    config: &postgres::Config,
    tls: &Tls,
) -> Result<(), String> {
    let all_sockets = config.get_hostaddrs().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|host| matches!(host, Host::Unix(_)));
    if tls.mode == SslMode::Disable || all_sockets {
        return token
            .cancel_query(NoTls)
            .map_err(|e| super::describe_error(&e));
    }
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(tls)?);
    token
        .cancel_query(connector)
        .or_else(|_| token.cancel_query(NoTls))
        .map_err(|e| super::describe_error(&e))
}

/// Whether connecting failed in the TLS handshake (rather than, say, at the
/// server's authentication).
fn is_tls_failure(error: &postgres::Error) -> bool {
    handshake_error(error).is_some()
        || (error.as_db_error().is_none() && error.to_string().contains("TLS"))
}

/// The handshake's own error, somewhere in the chain (`postgres::Error`
/// has no public kind to ask instead).
fn handshake_error(error: &postgres::Error) -> Option<&rustls::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let inner = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if inner.is_some() {
            return inner;
        }
        source = cause.source();
    }
    None
}

/// One line for a failed connection. rustls calls a certificate from an
/// unknown CA `UnknownIssuer`; the operator needs to hear which CAs were
/// trusted and how to trust another.
fn describe(error: &postgres::Error, tls: &Tls) -> String {
    match handshake_error(error) {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => format!(
            "error performing TLS handshake: the server's certificate is not signed by any of {} (sslmode={}; set sslrootcert to the CA that signed it)",
            tls.roots(),
            tls.mode
        ),
        _ => super::describe_error(error),
    }
}

/// The rustls configuration for these settings: ring, the safe default
/// protocol versions, and our verifier.
fn client_config(tls: &Tls) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let check = tls.check();
    let roots = match check {
        Check::Nothing => Arc::new(RootCertStore::empty()),
        Check::Chain | Check::ChainAndName => Arc::new(load_roots(&tls.roots())?),
    };
    let verifier = Verifier {
        check,
        roots,
        provider: provider.clone(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("setting up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {} holds no usable PEM certificate",
                    path.display()
                ));
            }
        }
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                return Err(format!(
                    "no system CA certificates were found{why}; set sslrootcert to the server's CA file"
                ));
            }
        }
    }
    Ok(store)
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// `prefer`, `require`: encryption only, as libpq does.
    Nothing,
    /// `verify-ca`: the chain to a trusted CA, not the host name.
    Chain,
    /// `verify-full`: the chain and the host name.
    ChainAndName,
}

/// One verifier for every mode, so that `verify-ca` can check the chain
/// without the name (rustls's own verifier always checks both). The
/// handshake's signatures are checked in every mode.
#[derive(Debug)]
struct Verifier {
    check: Check,
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.check == Check::ChainAndName {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: SslMode, root_cert: Option<Roots>) -> Tls {
        Tls { mode, root_cert }
    }

    #[test]
    fn urls_lose_only_the_tls_parameters() {
        assert_eq!(
            split("postgresql://u:p@db.example.org/app?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca%20file.pem")
                .unwrap(),
            (
                "postgresql://u:p@db.example.org/app?application_name=x".to_string(),
                tls(SslMode::VerifyFull, Some(Roots::File("/etc/ca file.pem".into())))
            )
        );
        assert_eq!(
            split("postgres://db/app?sslmode=require").unwrap(),
            ("postgres://db/app".to_string(), tls(SslMode::Require, None))
        );
        // A '?' in the password is not the query.
        assert_eq!(
            split("postgres://u:p?x@db/app").unwrap(),
            ("postgres://u:p?x@db/app".to_string(), Tls::default())
        );
    }

    #[test]
    fn key_values_lose_only_the_tls_pairs() {
        assert_eq!(
            split("host=db sslmode = 'verify-ca' dbname=app sslrootcert='/ca dir/ca.pem' user=u")
                .unwrap(),
            (
                "host=db dbname=app user=u".to_string(),
                tls(
                    SslMode::VerifyCa,
                    Some(Roots::File("/ca dir/ca.pem".into()))
                )
            )
        );
        assert_eq!(
            split("password='it\\'s' host=/run/postgresql").unwrap(),
            (
                "password='it\\'s' host=/run/postgresql".to_string(),
                Tls::default()
            )
        );
        // The last setting wins, as in libpq.
        assert_eq!(
            split("sslmode=disable sslmode=require").unwrap().1.mode,
            SslMode::Require
        );
    }

    #[test]
    fn modes_follow_libpq() {
        assert!(split("sslmode=allow")
            .unwrap_err()
            .contains("expected disable, prefer, require, verify-ca or verify-full"));
        assert_eq!(
            split("sslrootcert=system").unwrap().1,
            tls(SslMode::VerifyFull, Some(Roots::System))
        );
        assert!(split("sslrootcert=system sslmode=require").is_err());
        // require with a CA file checks the chain, as libpq does.
        assert_eq!(
            tls(SslMode::Require, Some(Roots::File("ca.pem".into()))).check(),
            Check::Chain
        );
        assert_eq!(tls(SslMode::Require, None).check(), Check::Nothing);
        assert_eq!(tls(SslMode::VerifyFull, None).check(), Check::ChainAndName);
    }

    #[test]
    fn the_postgres_crate_gets_a_mode_it_knows() {
        let (config, tls) = parse("host=db sslmode=verify-full").unwrap();
        assert_eq!(config.get_ssl_mode(), PgSslMode::Require);
        assert_eq!(tls.mode, SslMode::VerifyFull);
        let (config, _) = parse("postgresql://db/app").unwrap();
        assert_eq!(config.get_ssl_mode(), PgSslMode::Prefer);
    }
}
