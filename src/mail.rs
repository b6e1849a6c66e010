//! Composing notification mails, and delivering them (lettre).
//!
//! Composing is pure: the runner's record transaction queues what [`compose`]
//! returns, so the subject, body and headers of §6 are decided in one place.
//! Delivery ([`Transport`], [`Mailer`]) is used by `send_queued_mail` and by
//! `manage check --send-test-mail`; it knows nothing of the queue.
//!
//! The transport is an SMTP URL or a sendmail program. The URL is parsed here,
//! once, and checked when the configuration is loaded, so a bad one is a
//! configuration error and never a failed run. It may carry a password, which
//! must never reach a log line, an error or `manage check`: everything shown of
//! it goes through [`SmtpUrl::redacted`] or [`redact_url`].
//!
//! A delivery error is one of two kinds, because the queue treats them
//! differently: a *connection* failure (the server cannot be reached, TLS
//! fails, the login is refused) means nothing more can be sent now, so the
//! sender stops; a *rejection* concerns one mail (a 5xx for its recipient, an
//! invalid address), which keeps its error while the sender goes on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::header::{ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Message, SendmailTransport, SmtpTransport, Transport as _};

pub use crate::job::Outcome;

/// The `[notifications]` settings (§6): mail's own, so that the
/// configuration depends on mail and not the other way round.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotificationConfig {
    pub email: Option<String>,
    pub sender: Option<String>,
    pub smtp_url: Option<String>,
    /// A CA certificate (PEM) the SMTP connection trusts besides the system's.
    pub smtp_ca_file: Option<PathBuf>,
    pub sendmail: Option<PathBuf>,
    /// `[notifications.webhooks.NAME]` (§20), by name.
    pub webhooks: std::collections::BTreeMap<String, crate::webhook::Webhook>,
}

/// A mail ready for the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub subject: String,
    pub body: String,
    /// Header name and value pairs.
    pub headers: Vec<(String, String)>,
}

/// The facts a notification reports.
pub struct RunFacts<'a> {
    pub job: &'a str,
    pub description: &'a str,
    pub host: &'a str,
    pub started_at: DateTime<Utc>,
    pub runtime_seconds: f64,
    pub state: crate::job::RunState,
    pub output: &'a str,
}

/// Headers that keep vacation responders and the like from answering.
pub fn auto_headers() -> Vec<(String, String)> {
    vec![
        ("Auto-Submitted".into(), "auto-generated".into()),
        ("X-Auto-Response-Suppress".into(), "All".into()),
    ]
}

/// A header value on one line: CR and LF (and other controls) cannot start a
/// new header, whatever a job's description contains.
pub fn header_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Whether a run of this outcome is mailed at all.
pub fn wanted(outcome: Outcome, notify_on_success: bool, output: &str) -> bool {
    match outcome {
        Outcome::Succeeded => notify_on_success && !output.trim().is_empty(),
        _ => true,
    }
}

pub fn compose(outcome: Outcome, facts: &RunFacts, tz: Tz) -> Mail {
    let description = header_safe(facts.description);
    let subject = match outcome {
        Outcome::Succeeded => format!("Scheduled job '{description}' completed"),
        Outcome::Failed | Outcome::TimedOut => format!("Scheduled job '{description}' failed"),
        Outcome::Interrupted => format!("Scheduled job '{description}' was interrupted"),
        Outcome::InternalError => "Exception running scheduled job".to_string(),
    };
    Mail {
        subject,
        body: run_body(facts, tz),
        headers: auto_headers(),
    }
}

/// The mail of a success that ends a failure streak during which a failure
/// mail went out (§14).
pub fn compose_recovery(failed_runs: u32, facts: &RunFacts, tz: Tz) -> Mail {
    let description = header_safe(facts.description);
    Mail {
        subject: format!("Scheduled job '{description}' recovered"),
        body: format!(
            "Succeeded after {failed_runs} failed runs.\n\n{}",
            run_body(facts, tz)
        ),
        headers: auto_headers(),
    }
}

/// What a dead-man alert (§20) reports: how long the job has been silent,
/// its last success and run, its next run, and why it is not running.
pub struct OverdueFacts<'a> {
    pub job: &'a str,
    pub description: &'a str,
    pub host: &'a str,
    pub within_secs: u32,
    pub last_success: Option<DateTime<Utc>>,
    pub last_run: Option<DateTime<Utc>>,
    pub last_state: Option<crate::job::RunState>,
    pub next_run: Option<DateTime<Utc>>,
    /// Why it is not running, each a phrase (`disabled`, `paused until …`);
    /// empty when nothing is known to stop it.
    pub reasons: &'a [String],
}

/// The dead-man alert (§20): subject `Scheduled job '<description>' has not
/// succeeded for DURATION`.
pub fn compose_overdue(facts: &OverdueFacts, tz: Tz) -> Mail {
    let description = header_safe(facts.description);
    let within = crate::schedule::format_duration(facts.within_secs);
    let instant = |t: Option<DateTime<Utc>>, none: &str| {
        t.map_or_else(
            || none.to_string(),
            |t| crate::schedule::human_instant(t, tz),
        )
    };
    let last_run = match (facts.last_run, facts.last_state) {
        (Some(at), Some(state)) => format!("{} ({state})", instant(Some(at), "")),
        (Some(at), None) => instant(Some(at), ""),
        (None, _) => "never".to_string(),
    };
    let why = if facts.reasons.is_empty() {
        "unknown".to_string()
    } else {
        facts.reasons.join("; ")
    };
    Mail {
        subject: format!("Scheduled job '{description}' has not succeeded for {within}"),
        body: format!(
            "Job {} ({}) has not succeeded for {within}.\n\n\
             Last success: {}\nLast run: {last_run}\nNext run: {}\nNot running because: {why}\n\n\
             Job: {} ({})\nHost: {}\n",
            facts.job,
            facts.description,
            instant(facts.last_success, "never"),
            instant(facts.next_run, "none"),
            facts.job,
            facts.description,
            facts.host,
        ),
        headers: auto_headers(),
    }
}

/// The most of a run's output so far that a slow-run warning carries (§20).
pub const MAX_SLOW_OUTPUT: usize = 4 * 1024;

/// What a slow-run warning (§20) reports.
pub struct SlowFacts<'a> {
    pub job: &'a str,
    pub description: &'a str,
    pub host: &'a str,
    pub started_at: DateTime<Utc>,
    pub after_secs: u32,
    /// The output so far, at most [`MAX_SLOW_OUTPUT`] bytes.
    pub output: &'a str,
}

/// The slow-run warning (§20): subject `Scheduled job '<description>' is
/// still running after DURATION`; the run itself goes on.
pub fn compose_slow(facts: &SlowFacts, tz: Tz) -> Mail {
    let description = header_safe(facts.description);
    let after = crate::schedule::format_duration(facts.after_secs);
    let output = if facts.output.is_empty() {
        "(no output)"
    } else {
        facts.output.trim_end_matches('\n')
    };
    Mail {
        subject: format!("Scheduled job '{description}' is still running after {after}"),
        body: format!(
            "Job {} ({}) is still running after {after}; it goes on, and its timeout still applies.\n\n\
             Started: {}\nHost: {}\n\nOutput so far:\n{output}\n",
            facts.job,
            facts.description,
            crate::schedule::human_instant(facts.started_at, tz),
            facts.host,
        ),
        headers: auto_headers(),
    }
}

/// The usual fields (§6): the output, then job, host, start, runtime, state.
fn run_body(facts: &RunFacts, tz: Tz) -> String {
    let output = if facts.output.is_empty() {
        "(no output)"
    } else {
        facts.output.trim_end_matches('\n')
    };
    format!(
        "{output}\n\nJob: {} ({})\nHost: {}\nStarted: {}\nRuntime: {:.1} s\nState: {}\n",
        facts.job,
        facts.description,
        facts.host,
        crate::schedule::human_instant(facts.started_at, tz),
        facts.runtime_seconds,
        facts.state,
    )
}

// ---- the transport ----

/// How long one SMTP exchange may take before the server counts as unreachable
/// (well inside `send_queued_mail`'s two-minute timeout).
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: no TLS at all.
    Plain,
    /// `smtp://…?tls=starttls`: STARTTLS, required (never a silent fallback).
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Tls,
}

/// A parsed `notifications.smtp_url` (`SMTP_URL`).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub security: Security,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    password: Option<String>,
}

impl std::fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

const URL_EXPECTED: &str =
    "expected smtp://host[:port] or smtps://host[:port], optionally user:password@ before the host and ?tls=starttls after an smtp:// URL";

impl SmtpUrl {
    /// Parse `smtp://[user:pass@]host[:port][?tls=starttls]` or
    /// `smtps://[user:pass@]host[:port]`. Default ports: 25 and 465.
    /// The error quotes the URL with its password hidden.
    pub fn parse(text: &str) -> Result<SmtpUrl, String> {
        let bad = |why: &str| {
            format!(
                "\"{}\" is not a valid SMTP URL: {why}",
                redact_url(text.trim())
            )
        };
        let url = url::Url::parse(text.trim()).map_err(|_| bad(URL_EXPECTED))?;
        let mut security = match url.scheme() {
            "smtp" => Security::Plain,
            "smtps" => Security::Tls,
            _ => return Err(bad(URL_EXPECTED)),
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(bad(&format!("no host; {URL_EXPECTED}"))),
        };
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err(bad(&format!("unexpected path; {URL_EXPECTED}")));
        }
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref(), security) {
                ("tls", "starttls", Security::Plain | Security::StartTls) => {
                    security = Security::StartTls
                }
                ("tls", _, Security::Tls) => {
                    return Err(bad(
                        "smtps:// is TLS already; tls=starttls goes with smtp:// only",
                    ))
                }
                ("tls", other, _) => {
                    return Err(bad(&format!(
                        "tls={other} is not supported; expected tls=starttls"
                    )))
                }
                (other, _, _) => {
                    return Err(bad(&format!(
                        "unknown parameter \"{other}\"; the only one is tls=starttls"
                    )))
                }
            }
        }
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| bad("the user or password is not valid UTF-8"))
        };
        let user = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url.password().map(decode).transpose()?;
        if password.is_some() && user.is_none() {
            return Err(bad("a password needs a user name before it"));
        }
        let port = url.port().unwrap_or(match security {
            Security::Tls => 465,
            Security::Plain | Security::StartTls => 25,
        });
        Ok(SmtpUrl {
            security,
            host,
            port,
            user,
            password,
        })
    }

    /// The URL as it may be shown: `smtp://user:***@host:587?tls=starttls`.
    pub fn redacted(&self) -> String {
        let scheme = match self.security {
            Security::Tls => "smtps",
            Security::Plain | Security::StartTls => "smtp",
        };
        let login = match (&self.user, &self.password) {
            (Some(user), Some(_)) => format!("{user}:***@"),
            (Some(user), None) => format!("{user}@"),
            _ => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let query = if self.security == Security::StartTls {
            "?tls=starttls"
        } else {
            ""
        };
        format!("{scheme}://{login}{host}:{}{query}", self.port)
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(byte) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Hide the password of a URL that may not even parse: whatever lies between
/// the `:` after the user and the last `@` of the authority becomes `***`.
pub fn redact_url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text.to_string();
    };
    let Some(colon) = authority[..at].find(':') else {
        return text.to_string();
    };
    format!(
        "{}{}:***{}",
        &text[..scheme_end + 3],
        &authority[..colon],
        &rest[at..]
    )
}

/// A recipient or sender that lettre can send to.
pub fn check_address(text: &str) -> Result<(), String> {
    text.parse::<Mailbox>()
        .map(|_| ())
        .map_err(|e| format!("\"{text}\" is not a valid mail address: {e}"))
}

/// A notification setting that cannot work: the configuration names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    /// The key under `[notifications]`.
    pub key: &'static str,
    /// The environment variable that may have set it instead.
    pub env: Option<&'static str>,
    pub problem: String,
}

/// Check the notification settings when the configuration is loaded, so that
/// a bad URL or address is a configuration error (exit 2), not a failed run.
pub fn check_settings(n: &NotificationConfig) -> Result<(), SettingProblem> {
    let problem = |key, env, problem: String| SettingProblem { key, env, problem };
    if let Some(email) = &n.email {
        email.parse::<Mailbox>().map_err(|e| {
            problem(
                "email",
                Some("SCHEDULED_JOBS_EMAIL"),
                format!("\"{email}\" is not a valid mail address: {e}"),
            )
        })?;
    }
    if let Some(sender) = &n.sender {
        sender.parse::<Mailbox>().map_err(|e| {
            problem(
                "sender",
                Some("SCHEDULED_JOBS_EMAIL_SENDER"),
                format!("\"{sender}\" is not a valid mail address: {e}"),
            )
        })?;
    }
    let url = match &n.smtp_url {
        Some(text) => {
            Some(SmtpUrl::parse(text).map_err(|e| problem("smtp_url", Some("SMTP_URL"), e))?)
        }
        None => None,
    };
    if url.is_some() && n.sendmail.is_some() {
        return Err(problem(
            "sendmail",
            None,
            "both an SMTP URL (notifications.smtp_url or SMTP_URL) and sendmail are set; give one or the other".into(),
        ));
    }
    if let Some(ca) = &n.smtp_ca_file {
        match &url {
            Some(url) if url.security != Security::Plain => {}
            _ => {
                return Err(problem(
                    "smtp_ca_file",
                    None,
                    "is only used with TLS: an smtps:// URL or an smtp:// URL with ?tls=starttls"
                        .into(),
                ))
            }
        }
        if !ca.is_file() {
            return Err(problem(
                "smtp_ca_file",
                None,
                format!("{} is not a readable file", ca.display()),
            ));
        }
    }
    Ok(())
}

/// Where mail goes: an SMTP server or a local sendmail program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Smtp {
        url: SmtpUrl,
        /// A CA certificate (PEM) trusted besides the system's roots.
        ca_file: Option<PathBuf>,
    },
    Sendmail(PathBuf),
}

impl Transport {
    /// The configured transport, if any. The settings were checked at load
    /// time, so an error here only means a configuration built by hand.
    pub fn from_config(n: &NotificationConfig) -> Result<Option<Transport>, String> {
        if let Some(text) = &n.smtp_url {
            return Ok(Some(Transport::Smtp {
                url: SmtpUrl::parse(text)?,
                ca_file: n.smtp_ca_file.clone(),
            }));
        }
        Ok(n.sendmail.clone().map(Transport::Sendmail))
    }

    /// What `manage check` says about it, without the password.
    pub fn describe(&self) -> String {
        match self {
            Transport::Smtp { url, ca_file } => {
                let security = match url.security {
                    Security::Plain => "no TLS",
                    Security::StartTls => "STARTTLS required",
                    Security::Tls => "implicit TLS",
                };
                let ca = ca_file
                    .as_ref()
                    .map(|f| format!(", trusting the CA in {}", f.display()))
                    .unwrap_or_default();
                format!("SMTP {} ({security}{ca})", url.redacted())
            }
            Transport::Sendmail(path) => format!("sendmail {}", path.display()),
        }
    }

    /// Ready a mailer. Nothing is contacted yet; a CA file that cannot be
    /// read or parsed is a connection failure (nothing can be sent).
    pub fn mailer(&self) -> Result<Mailer, DeliveryError> {
        match self {
            Transport::Smtp { url, ca_file } => {
                let tls = |host: &str| -> Result<TlsParameters, DeliveryError> {
                    let mut builder = TlsParameters::builder(host.to_string());
                    if let Some(file) = ca_file {
                        let pem = std::fs::read(file).map_err(|e| {
                            DeliveryError::Connection(format!(
                                "cannot read the CA file {}: {e}",
                                file.display()
                            ))
                        })?;
                        let cert = Certificate::from_pem(&pem).map_err(|e| {
                            DeliveryError::Connection(format!(
                                "the CA file {} holds no usable PEM certificate: {e}",
                                file.display()
                            ))
                        })?;
                        builder = builder.add_root_certificate(cert);
                    }
                    builder.build_rustls().map_err(|e| {
                        DeliveryError::Connection(format!("setting up TLS: {}", chain(&e)))
                    })
                };
                let builder = SmtpTransport::builder_dangerous(&url.host).port(url.port);
                let builder = match url.security {
                    Security::Plain => builder.tls(Tls::None),
                    Security::StartTls => builder.tls(Tls::Required(tls(&url.host)?)),
                    Security::Tls => builder.tls(Tls::Wrapper(tls(&url.host)?)),
                };
                let mut builder = builder
                    .hello_name(ClientId::Domain(crate::host::short_host_name()))
                    .timeout(Some(SMTP_TIMEOUT));
                if let Some(user) = &url.user {
                    builder = builder.credentials(Credentials::new(
                        user.clone(),
                        url.password.clone().unwrap_or_default(),
                    ));
                }
                Ok(Mailer {
                    inner: MailerInner::Smtp(Box::new(builder.build())),
                    secret: url.password.clone().filter(|p| !p.is_empty()),
                })
            }
            Transport::Sendmail(path) => {
                if !is_executable(path) {
                    return Err(DeliveryError::Connection(format!(
                        "the sendmail program {} does not exist or is not executable",
                        path.display()
                    )));
                }
                Ok(Mailer {
                    inner: MailerInner::Sendmail(SendmailTransport::new_with_command(path)),
                    secret: None,
                })
            }
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why a mail was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The server could not be reached or would not talk to us (connection,
    /// TLS, login): nothing more can be sent now.
    #[error("{0}")]
    Connection(String),
    /// This mail was refused (its recipient, its addresses); others may go.
    #[error("{0}")]
    Rejected(String),
}

/// One mail to send, from the queue or composed on the spot.
pub struct Outgoing<'a> {
    pub sender: &'a str,
    pub recipient: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
    pub headers: &'a [(String, String)],
    /// A stable Message-ID, so a mail sent twice (the server accepted it but
    /// the queue could not forget it) is recognisably the same mail.
    pub message_id: String,
}

/// A ready transport; see [`Transport::mailer`].
pub struct Mailer {
    inner: MailerInner,
    /// The SMTP password, scrubbed from every error just in case.
    secret: Option<String>,
}

enum MailerInner {
    Smtp(Box<SmtpTransport>),
    Sendmail(SendmailTransport),
}

/// Headers lettre writes itself: a stored header may not replace them.
const OWN_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

impl Mailer {
    /// Send one mail; on success, what the server answered
    /// (`250 2.0.0 Ok: queued as …`).
    pub fn send(&self, mail: &Outgoing) -> Result<String, DeliveryError> {
        let result = match &self.inner {
            // lettre ends the DATA with CRLF . CRLF whatever the message ends
            // with, so a body's own final line end would arrive as an extra
            // blank line: leave it to the framing.
            MailerInner::Smtp(smtp) => smtp
                .send(&build_message(mail, trim_final_line_end(mail.body))?)
                .map(|response| {
                    let text = response.message().collect::<Vec<_>>().join(" ");
                    format!("{} {text}", response.code()).trim_end().to_string()
                })
                .map_err(|e| {
                    // A reply code means the server spoke, about this mail —
                    // unless it is closing the session (421) or refused the
                    // login (530, 534, 535, 538), which stops every mail.
                    let refused_session = e.status().is_some_and(|code| {
                        matches!(
                            code.to_string().as_str(),
                            "421" | "530" | "534" | "535" | "538"
                        )
                    });
                    let text = chain(&e);
                    if e.status().is_some() && !refused_session {
                        DeliveryError::Rejected(text)
                    } else {
                        DeliveryError::Connection(text)
                    }
                }),
            MailerInner::Sendmail(sendmail) => sendmail
                .send(&build_message(mail, mail.body)?)
                .map(|()| "accepted by sendmail".to_string())
                .map_err(|e| DeliveryError::Rejected(chain(&e))),
        };
        result.map_err(|e| self.scrub(e))
    }

    fn scrub(&self, error: DeliveryError) -> DeliveryError {
        let Some(secret) = &self.secret else {
            return error;
        };
        match error {
            DeliveryError::Connection(m) => DeliveryError::Connection(m.replace(secret, "***")),
            DeliveryError::Rejected(m) => DeliveryError::Rejected(m.replace(secret, "***")),
        }
    }
}

fn trim_final_line_end(body: &str) -> &str {
    body.strip_suffix("\r\n")
        .or_else(|| body.strip_suffix('\n'))
        .unwrap_or(body)
}

fn build_message(mail: &Outgoing, body: &str) -> Result<Message, DeliveryError> {
    let address = |what: &str, text: &str| {
        text.parse::<Mailbox>().map_err(|e| {
            DeliveryError::Rejected(format!(
                "the {what} \"{text}\" is not a valid mail address: {e}"
            ))
        })
    };
    let mut builder = Message::builder()
        .from(address("sender", mail.sender)?)
        .to(address("recipient", mail.recipient)?)
        .subject(header_safe(mail.subject))
        .message_id(Some(header_safe(&mail.message_id)))
        .header(MIME_VERSION_1_0)
        .header(ContentType::TEXT_PLAIN);
    for (name, value) in mail.headers {
        if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        let name = HeaderName::new_from_ascii(name.clone()).map_err(|_| {
            DeliveryError::Rejected(format!("\"{name}\" is not a valid header name"))
        })?;
        builder = builder.raw_header(HeaderValue::new(name, header_safe(value)));
    }
    builder
        .body(body.to_string())
        .map_err(|e| DeliveryError::Rejected(format!("cannot build the mail: {e}")))
}

/// An error and its causes on one line, without repeating a cause that the
/// message already quotes.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn facts(output: &str) -> RunFacts<'_> {
        RunFacts {
            job: "backup",
            description: "Nightly backup",
            host: "db1",
            started_at: Utc.with_ymd_and_hms(2026, 11, 27, 2, 7, 0).unwrap(),
            runtime_seconds: 1.25,
            state: crate::job::RunState::Failed,
            output,
        }
    }

    #[test]
    fn a_failure_mail_has_the_subject_body_and_headers_of_the_spec() {
        let mail = compose(
            Outcome::Failed,
            &facts("Exit code 3\nboom\n"),
            chrono_tz::Europe::Stockholm,
        );
        assert_eq!(mail.subject, "Scheduled job 'Nightly backup' failed");
        assert_eq!(
            mail.body,
            "Exit code 3\nboom\n\nJob: backup (Nightly backup)\nHost: db1\nStarted: 2026-11-27 03:07:00 CET\nRuntime: 1.2 s\nState: failed\n"
        );
        assert_eq!(mail.headers, auto_headers());
    }

    #[test]
    fn subjects_for_every_outcome() {
        let tz = Tz::UTC;
        assert_eq!(
            compose(Outcome::Succeeded, &facts("x"), tz).subject,
            "Scheduled job 'Nightly backup' completed"
        );
        assert_eq!(
            compose(Outcome::Interrupted, &facts("x"), tz).subject,
            "Scheduled job 'Nightly backup' was interrupted"
        );
        assert_eq!(
            compose(Outcome::InternalError, &facts("x"), tz).subject,
            "Exception running scheduled job"
        );
        assert!(compose(Outcome::Failed, &facts(""), tz)
            .body
            .starts_with("(no output)\n\nJob: "));
    }

    #[test]
    fn success_is_mailed_only_with_notify_and_output() {
        assert!(wanted(Outcome::Succeeded, true, "hello"));
        assert!(!wanted(Outcome::Succeeded, true, ""));
        assert!(!wanted(Outcome::Succeeded, false, "hello"));
        assert!(wanted(Outcome::Failed, false, ""));
    }

    #[test]
    fn smtp_urls_plain_starttls_and_implicit_tls() {
        let url = SmtpUrl::parse("smtp://localhost:25").unwrap();
        assert_eq!(
            (url.security, url.host.as_str(), url.port),
            (Security::Plain, "localhost", 25)
        );
        let url = SmtpUrl::parse("smtp://user:p%40ss@mail.example.com:587?tls=starttls").unwrap();
        assert_eq!(url.security, Security::StartTls);
        assert_eq!(url.user.as_deref(), Some("user"));
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        assert_eq!(
            url.redacted(),
            "smtp://user:***@mail.example.com:587?tls=starttls"
        );
        assert!(!format!("{url:?}").contains("p@ss"));
        let url = SmtpUrl::parse("smtps://mail.example.com").unwrap();
        assert_eq!((url.security, url.port), (Security::Tls, 465));
        assert_eq!(SmtpUrl::parse("smtp://h").unwrap().port, 25);
    }

    #[test]
    fn bad_smtp_urls_say_what_is_expected_without_the_password() {
        let e = SmtpUrl::parse("ftp://x").unwrap_err();
        assert_eq!(
            e,
            format!("\"ftp://x\" is not a valid SMTP URL: {URL_EXPECTED}")
        );
        for bad in [
            "smtp://u:secret@h?tls=maybe",
            "smtps://u:secret@h?tls=starttls",
            "smtp://u:secret@h/path",
            "smtp://u:secret@h?x=1",
            "not a url secret",
        ] {
            let e = SmtpUrl::parse(bad).unwrap_err();
            assert!(e.contains("is not a valid SMTP URL"), "{e}");
            assert!(!e.contains("secret") || bad == "not a url secret", "{e}");
        }
        assert_eq!(redact_url("smtp://u:pw@h:1?x"), "smtp://u:***@h:1?x");
        assert_eq!(redact_url("smtp://h:1"), "smtp://h:1");
    }

    #[test]
    fn a_stored_header_or_subject_with_newlines_stays_one_header() {
        let headers = vec![
            (
                "Auto-Submitted".to_string(),
                "auto\r\nBcc: x@example.com".to_string(),
            ),
            ("To".to_string(), "other@example.com".to_string()),
        ];
        let mail = Outgoing {
            sender: "manage@db1",
            recipient: "ops@example.com",
            subject: "a\r\nX-Injected: yes",
            body: "body\n",
            headers: &headers,
            message_id: "<1@db1>".into(),
        };
        let raw = String::from_utf8(build_message(&mail, mail.body).unwrap().formatted()).unwrap();
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(
            !head
                .lines()
                .any(|l| l.starts_with("X-Injected") || l.starts_with("Bcc")),
            "{raw}"
        );
        assert!(
            head.contains("To: ops@example.com") && !head.contains("other@"),
            "{raw}"
        );
        assert!(
            head.contains("Auto-Submitted: auto  Bcc: x@example.com"),
            "{raw}"
        );
    }

    #[test]
    fn a_description_with_newlines_cannot_add_a_header() {
        let mut f = facts("x");
        f.description = "evil\r\nBcc: victim@example.com";
        let mail = compose(Outcome::Failed, &f, Tz::UTC);
        assert!(!mail.subject.contains('\n') && !mail.subject.contains('\r'));
    }
}
