//! Webhooks (§20): the payload an alert posts, its signature, and posting it
//! (ureq, rustls).
//!
//! A webhook alert goes through the mail queue: the record transaction queues
//! a row with the recipient `webhook:NAME` and the JSON payload as its body,
//! so that it is as durable as a mail and delivered by the same sender under
//! the same lock (never twice). Only the webhook's *name* is queued: its URL,
//! secret and format are read from the configuration when it is sent, so a
//! secret never reaches the database, and a URL fixed in the file applies to
//! what is already queued.
//!
//! The body is composed once, at queue time, and a JSON webhook receives
//! those exact bytes (signed as they are); a Slack webhook receives a `text`
//! made from the payload's `text` and `output` when it is sent.
//!
//! A webhook URL may itself be a secret (Slack's carry their token in the
//! path), so no error or output shows more of it than scheme, host and port
//! ([`Webhook::target`]).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

/// How long a receiver has to answer before the delivery counts as failed.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a run's output a payload carries.
pub const MAX_PAYLOAD_OUTPUT: usize = 64 * 1024;

/// How many lines of output a Slack message shows.
const SLACK_OUTPUT_LINES: usize = 20;

/// The prefix that makes a recipient (in `notify`, in the queue) a webhook.
pub const RECIPIENT_PREFIX: &str = "webhook:";

/// The signature header, `sha256=HEX`.
pub const SIGNATURE_HEADER: &str = "X-Manage-Signature";

/// What a receiver is sent (`format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// The payload of §20 as it is.
    #[default]
    Json,
    /// `{"text": …}`, for Slack's incoming webhooks and the chats that copy them.
    Slack,
}

impl Format {
    pub fn parse(text: &str) -> Result<Format, String> {
        match text {
            "json" => Ok(Format::Json),
            "slack" => Ok(Format::Slack),
            other => Err(format!(
                "\"{other}\" is not a webhook format: expected \"json\" or \"slack\""
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
        }
    }
}

/// One `[notifications.webhooks.NAME]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub secret: Option<String>,
    pub format: Format,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("target", &self.target())
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("format", &self.format)
            .finish()
    }
}

/// A webhook URL: http or https with a host. The problem quotes only what
/// [`Webhook::target`] would show.
pub fn check_url(text: &str) -> Result<(), String> {
    let expected = "expected an http:// or https:// URL with a host";
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(url) => Err(format!(
            "\"{}\" is not a webhook URL: {expected}",
            target_of(&url)
        )),
        Err(_) => Err(format!("not a webhook URL: {expected}")),
    }
}

fn target_of(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => format!("{}:", url.scheme()),
    }
}

impl Webhook {
    /// Scheme, host and port: what may be shown of the URL.
    pub fn target(&self) -> String {
        url::Url::parse(&self.url).map_or_else(|_| "(invalid URL)".into(), |u| target_of(&u))
    }
}

/// What an alert is about (`event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Failed,
    Completed,
    Recovered,
    Overdue,
    Slow,
    Exception,
    Test,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Failed => "failed",
            Event::Completed => "completed",
            Event::Recovered => "recovered",
            Event::Overdue => "overdue",
            Event::Slow => "slow",
            Event::Exception => "exception",
            Event::Test => "test",
        }
    }
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The JSON payload of §20, in its order. Fields a `test` event has no
/// value for are null.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub event: Event,
    pub job: Option<String>,
    pub description: Option<String>,
    pub host: String,
    pub run_id: Option<i64>,
    pub state: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    pub started_at: Option<DateTime<Utc>>,
    pub runtime_seconds: Option<f64>,
    pub output: String,
    pub text: String,
}

fn rfc3339<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        None => s.serialize_none(),
    }
}

/// The first `max` bytes of `text`, cut at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Payload {
    /// The body a JSON webhook receives (and the queue keeps).
    pub fn to_body(&self) -> String {
        let mut payload = self.clone();
        payload.output = truncate(&self.output, MAX_PAYLOAD_OUTPUT).to_string();
        // A struct of strings, numbers and options always serialises.
        serde_json::to_string(&payload).unwrap_or_else(|_| "{}".into())
    }

    /// The `test` event of `manage check --send-test-mail`.
    pub fn test(host: &str) -> Payload {
        Payload {
            event: Event::Test,
            job: None,
            description: None,
            host: host.to_string(),
            run_id: None,
            state: None,
            started_at: Some(Utc::now()),
            runtime_seconds: None,
            output: String::new(),
            text: format!("manage test webhook from {host}"),
        }
    }
}

/// What a webhook of `format` is sent for a queued JSON `body`.
pub fn body_for(format: Format, body: &str) -> String {
    match format {
        Format::Json => body.to_string(),
        Format::Slack => {
            let payload: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let field = |name: &str| payload.get(name).and_then(|v| v.as_str()).unwrap_or("");
            serde_json::json!({ "text": slack_text(field("text"), field("output")) }).to_string()
        }
    }
}

/// The subject, then the first lines of the output in a code block.
fn slack_text(subject: &str, output: &str) -> String {
    let lines: Vec<&str> = output.lines().take(SLACK_OUTPUT_LINES).collect();
    if lines.is_empty() {
        return subject.to_string();
    }
    // Three backticks inside would close the block early.
    let shown = lines.join("\n").replace("```", "`\u{200b}``");
    format!("{subject}\n```\n{shown}\n```")
}

/// `sha256=HEX`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: new_from_slice cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Why a webhook was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The receiver could not be reached or did not answer in time: the
    /// others queued for it this pass would fare no better.
    #[error("{0}")]
    Unreachable(String),
    /// It answered, but not with a 2xx.
    #[error("{0}")]
    Refused(String),
}

/// POST `body` (queued JSON) to `hook`; Ok: the 2xx status.
pub fn post(hook: &Webhook, body: &str) -> Result<u16, PostError> {
    let sent = body_for(hook.format, body);
    let agent = ureq::AgentBuilder::new()
        .timeout(WEBHOOK_TIMEOUT)
        .redirects(0)
        .user_agent(concat!("manage/", env!("CARGO_PKG_VERSION")))
        .build();
    let mut request = agent
        .post(&hook.url)
        .set("Content-Type", "application/json");
    if let Some(secret) = &hook.secret {
        request = request.set(SIGNATURE_HEADER, &signature(secret, sent.as_bytes()));
    }
    match request.send_bytes(sent.as_bytes()) {
        Ok(response) if (200..300).contains(&response.status()) => Ok(response.status()),
        Ok(response) => Err(PostError::Refused(format!(
            "{} answered {} {}",
            hook.target(),
            response.status(),
            response.status_text()
        ))),
        Err(ureq::Error::Status(code, response)) => Err(PostError::Refused(format!(
            "{} answered {code} {}",
            hook.target(),
            response.status_text()
        ))),
        Err(ureq::Error::Transport(transport)) => {
            // Transport's own Display quotes the whole URL: compose without it.
            let mut text = transport.kind().to_string();
            if let Some(message) = transport.message() {
                text = format!("{text}: {message}");
            }
            let mut source = std::error::Error::source(&transport);
            while let Some(cause) = source {
                let more = cause.to_string();
                if !text.contains(&more) {
                    text = format!("{text}: {more}");
                }
                source = cause.source();
            }
            let text = text.replace(hook.url.as_str(), &hook.target());
            Err(PostError::Unreachable(format!(
                "{}: {}",
                hook.target(),
                text.replace(['\r', '\n'], " ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_is_the_subject_and_twenty_lines_in_a_code_block() {
        let output: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let text = slack_text("Scheduled job 'x' failed", &output);
        assert!(text.starts_with("Scheduled job 'x' failed\n```\nline 1\n"));
        assert!(text.ends_with("line 20\n```"), "{text}");
        assert_eq!(slack_text("s", ""), "s");
    }

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn output_is_cut_at_a_character_boundary() {
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("abc", 5), "abc");
    }

    #[test]
    fn urls_are_checked_and_shown_without_path_or_login() {
        assert!(check_url("https://hooks.example.org/services/T/B/xyz").is_ok());
        let e = check_url("ftp://u:pw@h/secret").unwrap_err();
        assert!(!e.contains("secret") && !e.contains("pw"), "{e}");
        let hook = Webhook {
            url: "https://u:pw@hooks.example.org:8443/T/secret".into(),
            secret: None,
            format: Format::Json,
        };
        assert_eq!(hook.target(), "https://hooks.example.org:8443");
    }
}
